"""Cost of one ELS denoising step on 1-D signals against 2-D images with the same number of keys, in one run.

2-D: ``N`` mnist5k digits at ``S x S`` (``N S^2`` keys per step). 1-D: ``pulses`` signals of ``L`` samples,
as many as give the same key count (``N S^2 / L`` signals). Two 1-D settings per 2-D patch ``k``: the same
``k`` (patches of ``k`` samples: ``k`` times fewer numbers per key) and the same patch *size*, ``k^2``
samples (the same numbers per key, so the same GEMM work per key). Both boundaries, warm steps (key sets
cached), medians over ``--reps`` at three noise levels; the ratio is the 1-D time over the 2-D time.

    python benchmarks/signals.py [--n 1000] [--size 14] [--length 64] [--batch 8] [--reps 3]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)

from ablate.data import DataConfig, load_dataset
from ablate.oracle import OracleConfig, build_oracle

LEVELS = (0.9, 0.5, 0.1)  # alpha_bar: low, middle, high noise


def step_seconds(train: torch.Tensor, k: int, boundary: str, batch: int, reps: int) -> float:
    """Median warm seconds of one step over the three noise levels."""
    oracle = build_oracle(OracleConfig(machine="els", patch_size=k, boundary=boundary), train)
    g = torch.Generator().manual_seed(0)
    x0 = train[torch.randperm(len(train), generator=g)[:batch]]
    eps = torch.randn(x0.shape, generator=g)
    times = []
    for ab in LEVELS:
        x = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps
        oracle.denoise(x, ab)  # builds and caches the key sets
        times.append(timed(lambda: oracle.denoise(x, ab), reps)[0])
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="2-D training images")
    p.add_argument("--size", type=int, default=14, help="2-D image side")
    p.add_argument("--length", type=int, default=64, help="1-D signal length")
    p.add_argument("--ks", default="3,5", help="2-D patch sizes (the 1-D ones follow: k and k^2)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    images = load_dataset(DataConfig(name="mnist5k", n=a.n, image_size=a.size, balanced=False)).train
    keys = a.n * a.size * a.size
    count = -(-keys // a.length)
    signals = load_dataset(DataConfig(name="pulses", count=int(count / 0.9) + 2, length=a.length)).train[:count]
    print(f"2-D: {a.n} images of {a.size}x{a.size}; 1-D: {len(signals)} signals of {a.length} samples; "
          f"{keys:,} vs {len(signals) * a.length:,} keys per step; batch {a.batch}, torch threads "
          f"{torch.get_num_threads()}; medians over {a.reps} reps and the levels {LEVELS}")
    print(f"{'boundary':9} {'2-D k':>5} {'2-D s/step':>11} {'1-D k':>5} {'1-D s/step':>11} {'1-D / 2-D':>10}")
    for boundary in ("zeros", "circular"):
        for k in (int(v) for v in a.ks.split(",")):
            two = step_seconds(images, k, boundary, a.batch, a.reps)
            for k1 in (k, k * k):
                if k1 > (a.length if boundary == "circular" else 2 * a.length - 1):
                    continue
                one = step_seconds(signals, k1, boundary, a.batch, a.reps)
                print(f"{boundary:9} {k:5} {two:11.4f} {k1:5} {one:11.4f} {one / two:10.3f}", flush=True)


if __name__ == "__main__":
    main()
