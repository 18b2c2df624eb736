"""Cost of one denoising step per theory at N = 4,500 mnist5k digits, 28x28, against ELS in the same run.

Each machine is built over the same training set and denoises the same batch of noisy images at three noise
levels (warm: statistics, masks, patch shapes and key sets built by a first call at each level; the very
first call, which builds the statistics, is timed separately). Medians over
``--reps``; the ratio is the machine's warm time over ELS's (k = 5, zero boundary, the default path).

    python benchmarks/rivals.py [--batch 8] [--reps 3] [--n 4500] [--machines els,equivariant_pca_locality]
"""
from __future__ import annotations

import argparse
import time

import torch
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)

from ablate.data import DataConfig, load_dataset
from ablate.oracle import MACHINES, OracleConfig, build_oracle

LEVELS = (0.9, 0.5, 0.1)  # alpha_bar: low, middle, high noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--machines", default=",".join(MACHINES), help="comma-separated (ELS is always run: the base)")
    a = p.parse_args()
    chosen = ["els"] + [m for m in a.machines.split(",") if m != "els"]
    for m in chosen:
        if m not in MACHINES:
            p.error(f"unknown machine {m!r}; choose from {', '.join(MACHINES)}")
    data = load_dataset(DataConfig(name="mnist5k", n=a.n))
    g = torch.Generator().manual_seed(0)
    x0 = data.heldout[: a.batch]
    eps = torch.randn(x0.shape, generator=g)
    print(f"N = {len(data.train)}, {tuple(data.shape)}, batch {a.batch}, torch threads {torch.get_num_threads()}")
    rows = []
    for machine in chosen:
        kw = {"patch_size": 5} if machine in ("ls", "els") else {}
        oracle = build_oracle(OracleConfig(machine=machine, **kw), data.train)
        start = time.perf_counter()
        oracle.denoise(0.5 ** 0.5 * x0 + 0.5 ** 0.5 * eps, 0.5)  # builds statistics, masks, key sets
        cold = time.perf_counter() - start
        warm = []
        for ab in LEVELS:
            x = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps
            oracle.denoise(x, ab)  # equivariant PCA locality cuts a new patch shape (and key set) per level
            seconds, _ = timed(lambda: oracle.denoise(x, ab), a.reps)
            warm.append(seconds)
        rows.append((machine, cold, warm))
        print(f"{machine:19} first call {cold:7.2f} s; warm per step " +
              "  ".join(f"ab={ab}: {s:7.3f} s" for ab, s in zip(LEVELS, warm)), flush=True)
    els = dict((m, w) for m, _, w in rows)["els"]
    print("\nwarm cost against ELS (k = 5), median over the three noise levels:")
    for machine, _, warm in rows:
        ratio = sorted(w / e for w, e in zip(warm, els))[1]
        print(f"  {machine:19} {ratio:9.4f} x ELS")


if __name__ == "__main__":
    main()
