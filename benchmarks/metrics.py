"""Cost of each metric per 1,000 samples, on 256 samples of 28x28 mnist5k (N = 4,500 training digits).

The samples are held-out digits (the metrics' cost does not depend on where
images come from). Medians over ``--reps``. Baseline for the one search that
could dominate, fidelity's nearest training patch: the same exact search over
*every* deduplicated training patch (no ``max_keys`` cap), on the same run, with
the ratio and how much the figure moves.

    python benchmarks/metrics.py            # trains the 28x28 classifier on first use (about a minute)
"""
from __future__ import annotations

import argparse
import time

import torch
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)

from ablate.data import DataConfig
from ablate.metrics import ArtefactRate, Coherence, Fidelity, Novelty, build_suite, classifier_fid




def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    start = time.perf_counter()
    suite = build_suite(DataConfig(name="mnist5k"), progress=True)
    print(f"suite ready in {time.perf_counter() - start:.1f} s (classifier held-out accuracy "
          f"{suite.classifier.heldout_accuracy:.3f}); torch threads {torch.get_num_threads()}", flush=True)
    data = suite.data
    x = data.heldout[: a.samples]
    ref = data.heldout[a.samples:]
    per = 1000 / len(x)

    def run(metric_factory, *args):
        def go():
            m = metric_factory()
            m.update(*args)
            return m.compute()
        return go

    def fid():
        m = classifier_fid(suite.classifier)
        m.update(ref, real=True)
        m.update(x, real=False)
        return m.compute()

    build_fid = time.perf_counter()
    fidelity_metric = Fidelity(data.train, ref)
    build_fid = time.perf_counter() - build_fid
    build_nov = time.perf_counter()
    novelty_metric = Novelty(data.train)
    build_nov = time.perf_counter() - build_nov
    rows = {
        "coherence": run(lambda: Coherence(suite.classifier), x),
        "artefact_rate": run(lambda: ArtefactRate(suite.detector), x),
        "fid (vs held-out)": fid,
        "fidelity": lambda: (fidelity_metric.reset(), fidelity_metric.update(x), fidelity_metric.compute())[2],
        "novelty": lambda: (novelty_metric.reset(), novelty_metric.update(x), novelty_metric.compute())[2],
    }
    print(f"{len(x)} samples of 28x28; seconds per 1,000 samples (median of {a.reps}):", flush=True)
    total = 0.0
    for name, fn in rows.items():
        t, _ = timed(fn, a.reps)
        total += t
        print(f"  {name:18} {t * per:8.3f} s", flush=True)
    print(f"  {'all five':18} {total * per:8.3f} s   ({total:.2f} s for the {len(x)} samples)", flush=True)
    print(f"one-off set-up: fidelity keys {build_fid:.1f} s ({len(fidelity_metric.keys)} patches), "
          f"novelty spacing {build_nov:.1f} s", flush=True)
    capped = float(fidelity_metric.compute()["fidelity"])
    uncapped_metric = Fidelity(data.train, ref, max_keys=10**9)
    t_all, res = timed(lambda: (uncapped_metric.reset(), uncapped_metric.update(x), uncapped_metric.compute())[2], 1)
    t_cap, _ = timed(rows["fidelity"], 1)
    print(f"fidelity baseline, every unique training patch ({len(uncapped_metric.keys)}): {t_all * per:.2f} s per "
          f"1,000 vs {t_cap * per:.2f} s capped ({t_all / t_cap:.1f}x); fidelity {float(res['fidelity']):.3f} "
          f"uncapped vs {capped:.3f} capped", flush=True)


if __name__ == "__main__":
    main()
