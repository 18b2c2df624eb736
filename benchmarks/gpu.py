"""The oracle's GPU path against its CPU path, and the GPU's speed, in one run (``benchmarks/gpu.sh``).

1. **Deviation**: ELS (k = 5, both boundaries) on ``--device`` against the same machine on the CPU, float32,
   and both against the CPU in float64, at three noise levels (max abs difference of ``x0_hat``).
   Then every machine (``ablate.oracle.config.MACHINES``) on the device against the CPU at N = 500.
2. **Speed**: warm seconds per step at N = ``--n`` mnist5k digits (28x28), batch ``--batch``, on the CPU and
   on ``--device`` (with the device's default tiles and with the CPU's 4 MiB tiles).
3. **Training**: ``--train-steps`` steps of the GPU preset ``configs/mnist5k_resnet_gpu.yaml`` on ``--device``:
   images per second.
4. **Paper scale**: a warm step at ``--big`` training images (mnist5k's 4,500 training digits repeated to
   that count, each copy jittered; 60,000 is the paper's MNIST scale).
5. **A whole sample**: 20-step DDIM at N = ``--n`` on both, cold (the slowest part on the CPU, so last).

Each section's header carries the seconds since the start (the script must end inside gpu.sh's 8 minutes).

    python benchmarks/gpu.py                                   # on a GPU (the figures for the README)
    python benchmarks/gpu.py --device cpu --n 200 --big 1000 --train-steps 20   # a smoke test anywhere
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)

from ablate.data import DataConfig, load_dataset
from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle.config import CPU_TILE_BYTES, MACHINES
from ablate.sampling import sample

LEVELS = (0.9, 0.5, 0.1)  # alpha_bar: low, middle, high noise


START = time.perf_counter()


def header(text: str) -> None:
    print(f"\n[{time.perf_counter() - START:.0f} s] {text}", flush=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_seconds(oracle, x0, eps, device: str, reps: int) -> float:
    times = []
    for ab in LEVELS:
        x = (ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps).to(device)
        oracle.denoise(x, ab)  # builds the key sets
        sync(device)

        def once():
            out = oracle.denoise(x, ab)
            sync(device)
            return out

        times.append(timed(once, reps)[0])
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--n", type=int, default=4500, help="training digits for the deviation and the first speed")
    p.add_argument("--big", type=int, default=60000, help="training images of the paper-scale speed figure")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=500)
    a = p.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device (for a smoke test: --device cpu)")
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    print(f"device {a.device} ({name}), torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    data = load_dataset(DataConfig(name="mnist5k", n=a.n, balanced=False))
    g = torch.Generator().manual_seed(0)
    x0 = data.heldout[: a.batch]
    eps = torch.randn(x0.shape, generator=g)

    header("1. deviation of x0_hat, ELS k = 5, float32 (max abs over the batch)")
    for boundary in ("zeros", "circular"):
        cfg = OracleConfig(machine="els", patch_size=5, boundary=boundary)
        on_device = build_oracle(cfg, data.train, device=a.device)
        cpu = build_oracle(cfg, data.train)
        f64 = build_oracle(OracleConfig(machine="els", patch_size=5, boundary=boundary, dtype="float64"),
                           data.train.double())
        for ab in LEVELS:
            x = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps
            d = on_device.denoise(x.to(a.device), ab).cpu()
            c, r = cpu.denoise(x, ab), f64.denoise(x.double(), ab)
            print(f"  {boundary:8} ab={ab}: device vs CPU {float((d - c).abs().max()):.2e}; vs float64: device "
                  f"{float((d.double() - r).abs().max()):.2e}, CPU {float((c.double() - r).abs().max()):.2e}",
                  flush=True)

    header(f"1b. every machine on {a.device} against the CPU, float32, N = 500, ab = 0.5, both boundaries "
          "(max abs difference of x0_hat)")
    small = data.train[:500]
    x = 0.5 ** 0.5 * x0[:4] + 0.5 ** 0.5 * eps[:4]
    for machine in MACHINES:
        devs = []
        for boundary in ("zeros", "circular"):
            cfg = OracleConfig(machine=machine, patch_size=5, boundary=boundary)
            try:
                d = build_oracle(cfg, small, device=a.device).denoise(x.to(a.device), 0.5).cpu()
            except Exception as error:  # a broken machine on the device is a finding, not the end of the run
                devs.append(f"{boundary} FAILED: {type(error).__name__}: {str(error).splitlines()[0][:120]}")
                continue
            c = build_oracle(cfg, small).denoise(x, 0.5)
            devs.append(f"{boundary} {float((d - c).abs().max()):.2e}")
        print(f"  {machine:26} " + ", ".join(devs), flush=True)

    header(f"2. warm seconds per step, batch {a.batch}, median over {a.reps} reps and the levels {LEVELS}")
    cfg = OracleConfig(machine="els", patch_size=5, boundary="zeros")
    cpu_s = step_seconds(build_oracle(cfg, data.train), x0, eps, "cpu", a.reps)
    dev_s = step_seconds(build_oracle(cfg, data.train, device=a.device), x0, eps, a.device, a.reps)
    small_tiles = OracleConfig(machine="els", patch_size=5, boundary="zeros", chunk_bytes=CPU_TILE_BYTES)
    old_s = step_seconds(build_oracle(small_tiles, data.train, device=a.device), x0, eps, a.device, a.reps)
    print(f"  N = {len(data.train):,}: CPU {cpu_s:.3f} s, {a.device} {dev_s:.4f} s ({cpu_s / dev_s:.1f}x); {a.device} "
          f"with the CPU's 4 MiB tiles {old_s:.4f} s", flush=True)

    header(f"3. training, configs/mnist5k_resnet_gpu.yaml, {a.train_steps} steps on {a.device}")
    from ablate.training import load_config, run

    with tempfile.TemporaryDirectory() as out:
        config = load_config("configs/mnist5k_resnet_gpu.yaml", [
            f"max_steps={a.train_steps}", f"accelerator={'gpu' if a.device.startswith('cuda') else 'cpu'}",
            "agreement_every=null", "progress=false", "wandb.mode=disabled", f"out={out}", "name=gpu-bench",
            "sample_seeds=4", "sample_steps=4"])
        start = time.perf_counter()
        result = run(config)
        seconds = time.perf_counter() - start
    print(f"  {a.train_steps} steps of batch {config.batch_size}: {result.images_per_second:,.0f} images/s while "
          f"training, {seconds:.1f} s with start-up; final loss {result.final_loss:.4f}")

    header(f"4. a warm step at N = {a.big:,}, ELS k = 5 zeros, batch {a.batch}")
    full = load_dataset(DataConfig(name="mnist5k", balanced=False)).train
    repeats = -(-a.big // len(full))
    # the digits repeated, each copy jittered by up to 1e-3 so that deduplication cannot merge the copies:
    # the cost of N distinct training images
    jitter = (torch.rand(repeats * len(full), *full.shape[1:], generator=g) - 0.5) * 2e-3
    big = (full.repeat(repeats, 1, 1, 1) + jitter).clamp(-1, 1)[: a.big]
    cfg_big = OracleConfig(machine="els", patch_size=5, boundary="zeros", cache_bytes=16 * 2**30)
    big_s = step_seconds(build_oracle(cfg_big, big, device=a.device), x0, eps, a.device, a.reps)
    print(f"  N = {a.big:,} (mnist5k's digits repeated {repeats}x, each copy jittered by 1e-3 so none merge): "
          f"{a.device} {big_s:.3f} s per step", flush=True)

    header(f"5. a whole 20-step DDIM sample, ELS k = 5 zeros, N = {len(data.train):,}, {a.batch} seeds, cold")
    seeds = list(range(a.batch))
    shape = tuple(x0.shape[1:])
    start = time.perf_counter()
    on_cpu = sample(build_oracle(cfg, data.train), seeds, shape, steps=20).samples
    cpu_full = time.perf_counter() - start
    start = time.perf_counter()
    on_dev = sample(build_oracle(cfg, data.train, device=a.device), seeds, shape, steps=20, device=a.device).samples
    sync(a.device)
    dev_full = time.perf_counter() - start
    print(f"  full 20-step DDIM sample, {a.batch} seeds, N = {len(data.train):,}, cold (key sets built inside): "
          f"CPU {cpu_full:.1f} s, {a.device} {dev_full:.2f} s ({cpu_full / dev_full:.1f}x); samples differ by "
          f"{float((on_dev.cpu() - on_cpu).abs().max()):.2e} (max abs)", flush=True)


if __name__ == "__main__":
    main()
