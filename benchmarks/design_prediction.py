"""The prediction phase of a design-before-training study, timed again with the current code.

For every completed trial of the dataset's study (``python -m ablate.design design-before-training``),
runs the oracle prediction again (same mapping rule, seeds and metrics) and prints its seconds next to
the seconds the trial recorded and the trial's training seconds, the predicted figures then and now,
and the cost ratio (prediction / training) of the whole grid both ways. Training is not repeated.

    python benchmarks/design_prediction.py --dataset fingers
"""
from __future__ import annotations

import argparse

from optuna.trial import TrialState

from ablate.design.study import definitions
from ablate.design.kind import default_device, predict
from ablate.sweep import storage, workers
from ablate.sweep.definition import ARCH
from ablate.sweep.context import TrialContext

FIGURES = ("artefact_rate", "coherence", "novelty")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--definition", default="sweeps/design_before_training.yaml")
    p.add_argument("--dataset", required=True)
    a = p.parse_args()
    (d,) = definitions(a.definition, [a.dataset])
    d, study = storage.load_existing(d, storage.default_storage(d))
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not trials:
        raise SystemExit(f"study {d.name!r} has no completed trial")
    from ablate.oracle.fused import kernel

    kernel()  # built before anything is timed, as the study does
    ctx = TrialContext.build(d, storage.out_dir(d))
    device = default_device()
    print(f"{d.name}: {len(trials)} architectures, {d.seeds} seeds, device {device}")
    print(f"{'architecture':20} {'train s':>8} {'then s':>7} {'now s':>7} " +
          " ".join(f"{m + ' then/now':>24}" for m in FIGURES), flush=True)
    train = then = now = 0.0
    for t in trials:
        arch = t.params.get(ARCH, f"trial{t.number}")
        knobs = workers.knobs_of(d, t)  # a finished trial answers its own suggestions
        figures, _ = predict(ctx, knobs, device)
        u = t.user_attrs
        train += u["train_seconds"]
        then += u["prediction_seconds"]
        now += figures["prediction_seconds"]
        cells = " ".join(f"{u.get('predicted_' + m, float('nan')):11.3f}/{figures.get('predicted_' + m, float('nan')):<12.3f}"
                         for m in FIGURES)
        print(f"{arch:20} {u['train_seconds']:8.1f} {u['prediction_seconds']:7.1f} {figures['prediction_seconds']:7.1f} "
              f"{cells}", flush=True)
    print(f"prediction / training: then {then:.0f} / {train:.0f} s = {then / train:.3f}; "
          f"now {now:.0f} / {train:.0f} s = {now / train:.3f}")


if __name__ == "__main__":
    main()
