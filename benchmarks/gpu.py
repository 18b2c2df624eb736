"""The oracle's GPU path against its CPU path, and the GPU's speed, in one run (``benchmarks/gpu.sh``).

1. **Deviation**: ELS (k = 5, both boundaries) on ``--device`` against the same machine on the CPU, float32,
   and both against the CPU in float64, at three noise levels (max abs difference of ``x0_hat``).
2. **Speed**: warm seconds per step on ``--device`` at N = ``--n`` mnist5k digits (28x28) and at ``--big``
   training images (mnist5k's 4,500 training digits repeated to that count; 60,000 is the paper's MNIST
   scale), batch ``--batch``; the CPU figure at N = ``--n`` in the same run for the ratio.
3. **Training**: ``--train-steps`` steps of the GPU preset ``configs/mnist5k_resnet_gpu.yaml`` on ``--device``:
   images per second.

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

LEVELS = (0.9, 0.5, 0.1)  # alpha_bar: low, middle, high noise


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

    print("\n1. deviation of x0_hat, ELS k = 5, float32 (max abs over the batch)")
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

    print(f"\n2. warm seconds per step, batch {a.batch}, median over {a.reps} reps and the levels {LEVELS}")
    cfg = OracleConfig(machine="els", patch_size=5, boundary="zeros")
    cpu_s = step_seconds(build_oracle(cfg, data.train), x0, eps, "cpu", a.reps)
    dev_s = step_seconds(build_oracle(cfg, data.train, device=a.device), x0, eps, a.device, a.reps)
    print(f"  N = {len(data.train):,}: CPU {cpu_s:.3f} s, {a.device} {dev_s:.4f} s ({cpu_s / dev_s:.1f}x)", flush=True)
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

    print(f"\n3. training, configs/mnist5k_resnet_gpu.yaml, {a.train_steps} steps on {a.device}")
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


if __name__ == "__main__":
    main()
