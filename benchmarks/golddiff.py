"""GoldDiff against exact PCA locality, side by side in one run (issue #30): time per denoising step and how far the
golden subset moves the output, at N = 4,500 mnist5k digits (all of them), 28x28; with a checkpoint, also their
agreement with that network under GoldDiff's own protocol (128 samples of 10-step DDIM at batch 64).

1. **Per step.** The same 64 held-out digits, noised to each of the 10 levels of their DDIM (linear betas), are
   denoised by both machines (same mask threshold and temperature). Median seconds over ``--reps`` (warm: the
   statistics and each level's mask built by a first call), the ratio, the subset size GoldDiff softmaxes over,
   and GoldDiff's agreement with exact PCA locality on the same ``x_t``: their R^2 (exact PCA locality the
   reference) and the share of the output's squared norm that differs.
2. **Against a network** (``--checkpoint``): :func:`ablate.evaluation.protocols.golddiff` with both machines:
   MSE, r^2 on [0, 1], time per step and peak memory, and the network's own time.

    python benchmarks/golddiff.py [--reps 3] [--batch 64] [--checkpoint runs/train/NAME/checkpoints/final.ckpt]
"""
from __future__ import annotations

import argparse
import json

import torch
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)

from ablate.data import DataConfig, load_dataset
from ablate.metrics.field import field_r2
from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle.theories.golddiff import GoldDiffKnobs, subset_sizes
from ablate.sampling.field import field_scheduler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="training digits (default: all 4,500)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--checkpoint", default=None, help="a network trained on the same data: GoldDiff's protocol too")
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--json", default=None, help="also write the figures here")
    a = p.parse_args()
    data = load_dataset(DataConfig(name="mnist5k", n=a.n))
    N = len(data.train)
    g = torch.Generator().manual_seed(0)
    x0 = data.heldout[: a.batch]
    eps = torch.randn(x0.shape, generator=g)
    exact = build_oracle(OracleConfig(machine="pca_locality"), data.train)
    gold = build_oracle(OracleConfig(machine="golddiff"), data.train)
    knobs = GoldDiffKnobs()
    scheduler = field_scheduler()
    print(f"N = {N}, {tuple(data.shape)}, batch {len(x0)}, torch threads {torch.get_num_threads()}; "
          f"GoldDiff subset {knobs.subset_min:g}N..{knobs.subset_max:g}N, both tau = {knobs.mask_threshold}")
    print(f"{'t':>4} {'alpha_bar':>9} {'subset K':>8} {'exact s':>8} {'GoldDiff s':>10} {'speed-up':>8} "
          f"{'R^2 vs exact':>12} {'moved':>7}")
    rows = []
    for t in scheduler.timesteps.tolist():
        ab = float(scheduler.alphas_cumprod[t])
        x = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps
        exact.denoise(x[:1], ab)  # builds the statistics and this level's mask, for each machine
        gold.denoise(x[:1], ab)
        te, ye = timed(lambda: exact.denoise(x, ab), a.reps)
        tg, yg = timed(lambda: gold.denoise(x, ab), a.reps)
        K = subset_sizes(N, (1 - ab) ** 0.5, knobs.subset_min, knobs.subset_max)[2]
        moved = float(((yg - ye) ** 2).sum() / (ye ** 2).sum().clamp_min(1e-12))
        row = {"t": t, "alpha_bar": ab, "subset": K, "exact_s": te, "golddiff_s": tg, "speedup": te / tg,
               "r2_vs_exact": field_r2(yg, ye), "moved": moved}
        rows.append(row)
        print(f"{t:>4} {ab:>9.4f} {K:>8} {te:>8.3f} {tg:>10.3f} {te / tg:>7.1f}x {row['r2_vs_exact']:>12.4f} "
              f"{moved:>7.4f}")
    total_e, total_g = sum(r["exact_s"] for r in rows), sum(r["golddiff_s"] for r in rows)
    print(f"a 10-step trajectory of {len(x0)}: exact {total_e:.1f} s, GoldDiff {total_g:.1f} s "
          f"({total_e / total_g:.1f}x); mean R^2 vs exact {sum(r['r2_vs_exact'] for r in rows) / len(rows):.4f}")
    out = {"n": N, "batch": len(x0), "threads": torch.get_num_threads(), "steps": rows}
    if a.checkpoint:
        from ablate.evaluation.pipeline import checkpoint_subject
        from ablate.evaluation.protocols import golddiff

        subject = checkpoint_subject(a.checkpoint, data)
        result = golddiff(subject.network, {"pca_locality": exact, "golddiff": gold}, tuple(data.shape),
                          seed_offset=1000, samples=a.samples)
        n = result["network"]
        print(f"GoldDiff protocol against {a.checkpoint} ({a.samples} samples, batch 64, 10 steps; [0, 1] images):")
        print(f"{'machine':>13} {'MSE':>8} {'r^2':>7} {'s/step':>7} {'peak MiB':>8}")
        for name, m in result["machines"].items():
            print(f"{name:>13} {m['mse_score']:>8.5f} {m['r2_score']:>7.4f} {m['time_per_step_s']:>7.2f} "
                  f"{m['peak_memory_mib']:>8.0f}")
        print(f"{'network':>13} {'':>8} {'':>7} {n['time_per_step_s']:>7.3f} {n['peak_memory_mib']:>8.0f}")
        out["protocol"] = result
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
