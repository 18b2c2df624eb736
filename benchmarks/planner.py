"""The run planner against the clock: planned and measured seconds of oracle jobs, in one run.

For single cold and warm steps over boundary x k x N x batch x noise, a full 20-step DDIM sample with the
rising patch schedule, and a calibration over several candidates, prints the planner's estimate
(:mod:`ablate.oracle.plan`, made before the job), the measured wall time and their ratio. The issue's bar:
every ratio within a factor of 2.

    python benchmarks/planner.py                          # N = 1,000 (about 20 minutes on 2 cores)
    python benchmarks/planner.py --ns 400 --skip-jobs     # a quick look: single steps only
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from oracle import NOISE, SCHEDULE, digits  # benchmarks/oracle.py (the script's folder is on sys.path)

from ablate.evaluation.calibrate import calibrate
from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle.config import cosine_alpha_bar
from ablate.sampling import sample
from ablate.sampling.schedulers import own_grid


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Network:
    """A stand-in network for the calibration: an ELS machine of fixed k (any denoiser would do)."""

    def __init__(self, oracle):
        self.oracle = oracle

    def denoise(self, x_t, alpha_bar, labels=None):
        return self.oracle.denoise(x_t, alpha_bar, labels)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ns", default="1000")
    p.add_argument("--ks", default="3,9,15")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--boundaries", default="zeros,circular")
    p.add_argument("--skip-jobs", action="store_true", help="single steps only")
    a = p.parse_args()
    print(f"planner against the clock, torch threads {torch.get_num_threads()}", flush=True)
    print(f"{'job':44} {'planned s':>9} {'measured s':>10} {'ratio':>6}", flush=True)
    ratios = []

    def row(name, planned, measured):
        ratios.append(measured / planned)
        print(f"{name:44} {planned:9.3f} {measured:10.3f} {measured / planned:6.2f}", flush=True)

    for n in map(int, a.ns.split(",")):
        train = digits(n, 28)
        queries = digits(5000, 28)[-8:].transpose(2, 3)
        for boundary in a.boundaries.split(","):
            for k in map(int, a.ks.split(",")):
                for batch in map(int, a.batches.split(",")):
                    for level in ("low", "high"):
                        ab = cosine_alpha_bar(NOISE[level])
                        x = ab ** 0.5 * queries[:batch] + (1 - ab) ** 0.5 * torch.randn(batch, 1, 28, 28)
                        o = build_oracle(OracleConfig(patch_size=k, boundary=boundary), train)
                        cold_plan = o.plan([ab], batch).seconds
                        cold = clock(lambda: o.denoise(x, ab))
                        warm_plan = o.plan([ab], batch).seconds
                        warm = statistics.median(clock(lambda: o.denoise(x, ab)) for _ in range(3))
                        name = f"{boundary} k={k} N={n} B={batch} {level}"
                        row(name + " cold", cold_plan, cold)
                        row(name + " warm", warm_plan, warm)
        if a.skip_jobs:
            continue
        for boundary in a.boundaries.split(","):
            o = build_oracle(OracleConfig(patch_size=SCHEDULE, boundary=boundary), train)
            ab, _ = own_grid("cosine", 20)
            planned = o.plan(ab.tolist(), 8).seconds
            row(f"20-step DDIM, 8 seeds, k 3->15, {boundary}, N={n}", planned,
                clock(lambda: sample(o, range(8), (1, 28, 28), steps=20)))
            net = Network(build_oracle(OracleConfig(patch_size=7, boundary=boundary), train))
            o = build_oracle(OracleConfig(patch_size=3, boundary=boundary), train)
            cands = [3, 5, 9]
            traj_ab = ab.tolist()
            network_plan = net.oracle.plan(traj_ab, 4).seconds
            planned = network_plan + sum(o.with_patch_size(c).plan(traj_ab, 4).seconds for c in cands)
            row(f"calibration, 4 seeds, k in {cands}, {boundary}, N={n}", planned,
                clock(lambda: calibrate(net, o, cands, range(4), (1, 28, 28), steps=20)))
    print(f"{len(ratios)} jobs; measured/planned median {statistics.median(ratios):.2f}, range "
          f"{min(ratios):.2f}-{max(ratios):.2f}; {sum(not 0.5 <= r <= 2 for r in ratios)} outside a factor of 2",
          flush=True)


if __name__ == "__main__":
    main()
