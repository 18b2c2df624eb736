"""Oracle speed and exactness against the straightforward streaming formulation, in one run.

Prints, for each boundary and patch size, the median seconds of one denoising
step (batch of seeds) for the oracle and for the baseline
(:func:`ablate.oracle.baseline.straightforward_els`: one seed at a time, one
GEMM per key chunk, then exp and weighted sum), their ratio and the max abs
deviation, and the ratio against the same baseline with the oracle's clamp
before ``exp`` (``clamped``: how much of the speed-up is that one fix); then
a full DDIM sample with a rising patch-size schedule, timed and compared the
same way (also step by step on the baseline's inputs, and both against a
float64 computation of each step); then (``--rss``) the peak RSS of one k=27 step in a
fresh process.

``--grid`` instead times single steps over boundary x k x N x batch x noise level (every combination of
``--grid-boundaries``, ``--grid-ks``, ``--grid-ns``, ``--grid-batches``, ``--grid-noise``): the warm step
(median of ``--reps``), the cold first step of a fresh oracle (key extraction included), the baseline on the
same input, both ratios and the max abs deviation (where it exceeds 1e-4, both against the baseline computed
in float64, to tell which of the two is off), one line per cell, then a summary.

    python benchmarks/oracle.py                    # N = 5000, 28x28 (the issue's setting; long)
    python benchmarks/oracle.py --n 500 --reps 3   # a quick look
    python benchmarks/oracle.py --grid             # the speed grid (zeros/circular x k 3-15 x N x batch x noise)
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)

from ablate.data import DataConfig, load_dataset
from ablate.oracle import OracleConfig, PatchSchedule, build_oracle
from ablate.oracle.config import cosine_alpha_bar
from ablate.oracle.baseline import straightforward_els
from ablate.sampling import sample
from ablate.sampling.schedules import cosine

SCHEDULE = PatchSchedule("power", k_min=3, k_max=15, shape=1.0)
# the grid's noise levels: the cosine schedule at t = 0.1, 0.5, 0.9 (alpha_bar 0.976, 0.504, 0.024)
NOISE = {"low": 0.1, "mid": 0.5, "high": 0.9}


def noise_for(k: int) -> float:
    """The noise level at which the rising schedule uses k (the median of its grid points)."""
    grid = cosine(torch.arange(20, 0, -1, dtype=torch.float64) / 20).tolist()
    hits = [a for a in grid if SCHEDULE.k_at(a) == k] or [min(grid, key=lambda a: abs(SCHEDULE.k_at(a) - k))]
    return statistics.median(hits)


class Baseline:
    """The straightforward formulation behind the denoiser interface, following the same schedule; it keeps
    every step's input and output (``calls``) so that the oracle can be checked along the same trajectory."""

    def __init__(self, train, boundary, clamp=False):
        self.train, self.boundary, self.clamp = train, boundary, clamp
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def denoise(self, x_t, alpha_bar, labels=None):
        ab = float(alpha_bar[0])
        out = straightforward_els(x_t, ab, self.train, SCHEDULE.k_at(ab), self.boundary, clamp=self.clamp)
        self.calls.append((x_t.clone(), alpha_bar.clone(), out))
        return out


def digits(n: int, image_size: int) -> torch.Tensor:
    """``n`` class-balanced mnist5k digits (all 5,000 for n >= 5,000)."""
    size = image_size if image_size != 28 else None
    if n >= 5000:
        return load_dataset(DataConfig(name="mnist5k", image_size=size, heldout_fraction=0.0)).train
    return load_dataset(DataConfig(name="mnist5k", n=n, image_size=size)).train


def grid(a) -> None:
    """The speed grid: one line per cell, then a summary of the cells below 10x."""
    queries = digits(5000, a.image_size)[-8:].transpose(2, 3)  # transposed digits: never a training image
    print(f"speed grid, mnist5k {a.image_size}x{a.image_size}, torch threads {torch.get_num_threads()}, "
          f"oracle warm = median of {a.reps}, baseline = median of {a.baseline_reps}", flush=True)
    print(f"{'boundary':9} {'k':>3} {'N':>5} {'B':>2} {'noise':5} {'warm s':>8} {'cold s':>8} {'base s':>8} "
          f"{'warm x':>7} {'cold x':>7} {'max|dev|':>9}", flush=True)
    rows = []
    for n in map(int, a.grid_ns.split(",")):
        train = digits(n, a.image_size)
        for boundary in a.grid_boundaries.split(","):
            for k in map(int, a.grid_ks.split(",")):
                for batch in map(int, a.grid_batches.split(",")):
                    for level in a.grid_noise.split(","):
                        ab = cosine_alpha_bar(NOISE[level])
                        g = torch.Generator().manual_seed(batch * 1000 + k)
                        x0 = queries[:batch]
                        x_t = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=g)
                        oracle = build_oracle(OracleConfig(patch_size=k, boundary=boundary), train)
                        cold, _ = timed(lambda: oracle.denoise(x_t, ab), 1)
                        warm, out = timed(lambda: oracle.denoise(x_t, ab), a.reps)
                        base, ref = timed(lambda: straightforward_els(x_t, ab, train, k, boundary), a.baseline_reps)
                        dev = (out - ref).abs().max().item()
                        f64 = ""
                        if dev > 1e-4:  # which of the two is off? both against the baseline in float64
                            truth = straightforward_els(x_t.double(), ab, train.double(), k, boundary)
                            f64 = (f"  against float64: oracle {(out.double() - truth).abs().max().item():.1e}, "
                                   f"baseline {(ref.double() - truth).abs().max().item():.1e}")
                        rows.append((boundary, k, n, batch, level, warm, cold, base, dev))
                        print(f"{boundary:9} {k:3d} {n:5d} {batch:2d} {level:5} {warm:8.3f} {cold:8.3f} {base:8.3f} "
                              f"{base / warm:7.1f} {base / cold:7.1f} {dev:9.1e}{f64}", flush=True)
    slow = [r for r in rows if r[7] / r[5] < 10]
    print(f"{len(rows)} cells; warm ratio median {statistics.median(r[7] / r[5] for r in rows):.1f}x, "
          f"min {min(r[7] / r[5] for r in rows):.1f}x; cold ratio median "
          f"{statistics.median(r[7] / r[6] for r in rows):.1f}x; max|dev| {max(r[8] for r in rows):.1e}; "
          f"{len(slow)} warm cells under 10x", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ks", default="3,5,7,11,15")
    p.add_argument("--boundaries", default="zeros,circular")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each oracle step (median)")
    p.add_argument("--baseline-reps", type=int, default=1)
    p.add_argument("--skip-steps", action="store_true")
    p.add_argument("--skip-sample", action="store_true")
    p.add_argument("--skip-clamped", action="store_true", help="leave out the clamped baseline (saves time)")
    p.add_argument("--skip-f64", action="store_true", help="leave out the float64 reference of the sample's steps")
    p.add_argument("--rss", action="store_true", help="also measure peak RSS of a k=27 step (fresh process)")
    p.add_argument("--cache-mb", type=int, default=None, help="key-cache budget of the --rss step (default: 3 GiB)")
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--grid", action="store_true", help="time the speed grid instead (see the module docstring)")
    p.add_argument("--grid-boundaries", default="zeros,circular")
    p.add_argument("--grid-ks", default="3,5,9,15")
    p.add_argument("--grid-ns", default="400,5000")
    p.add_argument("--grid-batches", default="1,2,8")
    p.add_argument("--grid-noise", default="low,mid,high")
    a = p.parse_args()
    if a.grid:
        return grid(a)
    full = DataConfig(name="mnist5k", image_size=a.image_size if a.image_size != 28 else None, heldout_fraction=0.0)
    everything = load_dataset(full).train  # all 5,000 digits, class-balanced subsets below that
    train = everything if a.n >= len(everything) else load_dataset(
        DataConfig(name="mnist5k", n=a.n, image_size=full.image_size)).train
    x0 = everything[-a.batch:].transpose(2, 3)  # transposed digits: realistic strokes, never a training image
    g = torch.Generator().manual_seed(0)
    if a.rss_child:
        import resource
        cache = {} if a.cache_mb is None else {"cache_bytes": a.cache_mb * 2**20}
        o = build_oracle(OracleConfig(patch_size=27, boundary="zeros", **cache), train)
        o.denoise(0.5 ** 0.5 * x0 + 0.5 ** 0.5 * torch.randn(x0.shape, generator=g), 0.5)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    print(f"mnist5k N={len(train)} {a.image_size}x{a.image_size}, batch {a.batch}, torch threads "
          f"{torch.get_num_threads()}", flush=True)
    if not a.skip_steps:
        print(f"{'boundary':9} {'k':>3} {'alpha_bar':>9} {'oracle s':>9} {'first s':>8} {'baseline s':>10} "
              f"{'ratio':>6} {'max|dev|':>9} {'clamped s':>9} {'ratio':>6}", flush=True)
        for boundary in a.boundaries.split(","):
            for k in map(int, a.ks.split(",")):
                ab = noise_for(k)
                x_t = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=g)
                oracle = build_oracle(OracleConfig(patch_size=k, boundary=boundary), train)
                first, _ = timed(lambda: oracle.denoise(x_t, ab), 1)  # includes key extraction/dedup/clustering
                t_or, out = timed(lambda: oracle.denoise(x_t, ab), a.reps)
                t_bl, ref = timed(lambda: straightforward_els(x_t, ab, train, k, boundary), a.baseline_reps)
                t_cl = float("nan") if a.skip_clamped else timed(
                    lambda: straightforward_els(x_t, ab, train, k, boundary, clamp=True), a.baseline_reps)[0]
                print(f"{boundary:9} {k:3d} {ab:9.4f} {t_or:9.2f} {first:8.2f} {t_bl:10.2f} {t_bl / t_or:6.1f} "
                      f"{(out - ref).abs().max().item():9.1e} {t_cl:9.2f} {t_cl / t_or:6.1f}", flush=True)
    if not a.skip_sample:
        seeds = list(range(a.batch))
        shape = tuple(train.shape[1:])
        for boundary in a.boundaries.split(","):
            oracle = build_oracle(OracleConfig(patch_size=SCHEDULE, boundary=boundary), train)
            t_or, fast = timed(lambda: sample(oracle, seeds, shape, steps=20).samples, 1)
            baseline = Baseline(train, boundary)
            t_bl, ref = timed(lambda: sample(baseline, seeds, shape, steps=20).samples, 1)
            # float32 rounding differs between the two (batched GEMMs, merged keys); at low noise the sampler
            # amplifies such differences from step to step, so also compare each step on the same input
            mine = [oracle.denoise(x_t, ab) for x_t, ab, _ in baseline.calls]
            along = max((m - out).abs().max().item() for m, (_, _, out) in zip(mine, baseline.calls))
            exact = ""
            if not a.skip_f64:  # which of the two float32 computations lies nearer the float64 answer?
                ref64 = build_oracle(OracleConfig(patch_size=SCHEDULE, boundary=boundary, dtype="float64"), train)
                err_or = err_bl = 0.0
                for m, (x_t, ab, out) in zip(mine, baseline.calls):
                    truth = ref64.denoise(x_t.double(), ab.double())
                    err_or = max(err_or, (m.double() - truth).abs().max().item())
                    err_bl = max(err_bl, (out.double() - truth).abs().max().item())
                exact = f"; per step against float64: oracle {err_or:.1e}, baseline {err_bl:.1e}"
            clamped = ""
            if not a.skip_clamped:
                t_cl, _ = timed(lambda: sample(Baseline(train, boundary, clamp=True), seeds, shape, steps=20).samples, 1)
                clamped = f", clamped baseline {t_cl:.1f} s, ratio {t_cl / t_or:.1f}x"
            print(f"20-step DDIM, {len(seeds)} seeds, k 3->15, {boundary}: oracle {t_or:.1f} s (cold, incl. key "
                  f"preparation), baseline {t_bl:.1f} s, ratio {t_bl / t_or:.1f}x, max|dev| "
                  f"{(fast - ref).abs().max().item():.1e} (per step, on the baseline's inputs: {along:.1e}"
                  f"{exact}){clamped}", flush=True)
    if a.rss:
        child = [sys.executable, __file__, "--rss-child", "--n", str(a.n), "--batch", str(a.batch),
                 "--image-size", str(a.image_size)] + ([] if a.cache_mb is None else ["--cache-mb", str(a.cache_mb)])
        start = time.perf_counter()
        out = subprocess.run(child, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        base = subprocess.run([sys.executable, "-c", "import resource, torch, ablate.oracle, ablate.data;"
                               "from ablate.data import DataConfig, load_dataset; load_dataset('mnist5k');"
                               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
                              capture_output=True, text=True, check=True)
        budget = "3072" if a.cache_mb is None else str(a.cache_mb)
        print(f"peak RSS, k=27 zeros step, N={a.n}, key-cache budget {budget} MB: {float(out.stdout):.0f} MB "
              f"(interpreter + torch + data alone: {float(base.stdout):.0f} MB; {seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
