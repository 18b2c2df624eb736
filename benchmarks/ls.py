"""LS (the local score machine) by box sums against the patch path, in one run.

LS gives each pixel a softmax over the training patches at its own position. The patch path
(``Engine.position_aware``, ``local_only``) cuts every training image's ``H W`` patches of ``k^2`` numbers on
every call and runs one batched GEMM; the box-sum path (``Engine.local_box``, what ``machine="ls"`` runs)
reads the same logits off integral images of ``sum_c x z`` and ``sum_c z^2``, a few passes per image whatever
``k``. Prints, per patch size and batch, the median seconds of one call of each (``--reps``), their ratio and
the largest difference of their outputs (float32; the tests check float64 against the brute force).

    python benchmarks/ls.py                  # N = 4,500 digits at 28x28 (the paper-like preset's data)
    python benchmarks/ls.py --n 500 --reps 2 # a quick look
"""
from __future__ import annotations

import argparse
import statistics

import torch
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)

from ablate.data import load_dataset
from ablate.oracle import OracleConfig, build_oracle


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=None, help="training digits (default: all 4,500 of mnist5k)")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--ks", default="5,11,21")
    p.add_argument("--batches", default="2,8")
    p.add_argument("--boundary", default="zeros", choices=["zeros", "circular"])
    p.add_argument("--alpha-bar", type=float, default=0.5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train = load_dataset("mnist5k", n=a.n, image_size=a.image_size).train
    o = build_oracle(OracleConfig(machine="ls", patch_size=3, boundary=a.boundary), train)
    ab = torch.tensor(a.alpha_bar, dtype=torch.float64)
    print(f"LS, {len(train)} images {tuple(train.shape[1:])}, {a.boundary}, alpha_bar {a.alpha_bar}, "
          f"{a.threads} thread(s), median of {a.reps}")
    print(f"{'k':>3} {'batch':>5} {'patches (s)':>12} {'box sums (s)':>13} {'ratio':>7} {'max |diff|':>11}")
    ratios = []
    for k in (int(v) for v in a.ks.split(",")):
        for batch in (int(v) for v in a.batches.split(",")):
            x = torch.randn(batch, *train.shape[1:], generator=torch.Generator().manual_seed(k + batch))
            a_, b2 = torch.full((batch,), float(ab.sqrt())), torch.full((batch,), float(1 - ab))
            slow_t, slow = timed(lambda: o.engine.position_aware(x, a_, b2, (k, k), o.images, local_only=True),
                                 a.reps)
            fast_t, fast = timed(lambda: o.engine.local_box(x, a_, b2, (k, k), o.images), a.reps)
            ratios.append(slow_t / fast_t)
            print(f"{k:>3} {batch:>5} {slow_t:>12.3f} {fast_t:>13.4f} {slow_t / fast_t:>6.1f}x "
                  f"{float((slow - fast).abs().max()):>11.2e}", flush=True)
    print(f"median speed-up {statistics.median(ratios):.1f}x (min {min(ratios):.1f}x, max {max(ratios):.1f}x)")


if __name__ == "__main__":
    main()
