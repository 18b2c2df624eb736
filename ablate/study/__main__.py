"""``python -m ablate.study``: studies that go beyond one sweep.

    python -m ablate.study design-before-training                    # sweeps/design_before_training.yaml, every dataset
    python -m ablate.study design-before-training --dataset fingers  # one of them
    python -m ablate.study design-before-training --report-only      # redraw the report from the studies
    python -m ablate.study fit-mapping runs/.../final.calibration-els-zeros-20steps.json --receptive-field 17
    python -m ablate.study describe runs/pipe                         # any network: measured geometry, predicted machine
    python -m ablate.study describe mypkg.nets:build net.prediction_type=epsilon net.time_input=sigma data.name=digits

Re-running resumes: finished architectures are kept, interrupted ones are run again. The
report goes to runs/sweeps/<name>/report.md and report.html; every trial is in the Optuna
study (runs/sweeps/<name>-<dataset>.db unless --storage says otherwise) and in W&B.
"""
from __future__ import annotations

import argparse
import sys

DEFAULT = "sweeps/design_before_training.yaml"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ablate.study", description=__doc__.splitlines()[0],
                                epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("design-before-training", help="predict with the oracle, train, compare")
    d.add_argument("--definition", default=DEFAULT, help=f"the study file (default: {DEFAULT})")
    d.add_argument("--dataset", action="append", help="only this dataset of the file (repeatable)")
    d.add_argument("--storage", help="one database URL for every dataset's study (default: SQLite files)")
    d.add_argument("--workers", type=int, default=1, help="local worker processes per dataset")
    d.add_argument("--report-only", action="store_true", help="compare and report the trials done so far")
    f = sub.add_parser("fit-mapping", help="fit the mapping rule's constants to one calibration JSON")
    f.add_argument("calibration", help="a calibration JSON written by evaluate.py")
    f.add_argument("--receptive-field", type=int, required=True, help="the calibrated network's receptive field")
    g = sub.add_parser("describe", help="probe any network's geometry and print the machine the rule predicts")
    g.add_argument("model", help="ablate checkpoint, diffusers folder, TorchScript file or package.module:factory")
    g.add_argument("items", nargs="*", metavar="key=value", help="net.* (declaration) and data.* (image shape)")
    g.add_argument("--steps", type=int, default=20, help="sampler steps for the k schedule (default 20)")
    g.add_argument("--json", action="store_true", help="print JSON instead of text")
    for sp in (d, f, g):
        sp.add_argument("--runs", help="root of everything written (default: $ABLATE_RUNS, else runs/)")
        sp.add_argument("--threads", type=int, help="CPU threads (default: $ABLATE_THREADS, else all cores; "
                        "with --workers W, cores // W each)")
    a = p.parse_args(argv)
    try:
        from ablate.threads import apply_threads

        apply_threads(a.threads, getattr(a, "workers", 1))
        from ablate.paths import set_runs_root

        set_runs_root(a.runs)
        if a.command == "describe":
            import json

            from ablate.study.describe import describe_network, format_description

            d = describe_network(a.model, a.items, steps=a.steps)
            print(json.dumps(d, indent=1) if a.json else format_description(d))
        elif a.command == "design-before-training":
            if a.workers < 1:
                raise ValueError(f"--workers={a.workers} must be >= 1")
            from ablate.study.run import run_design_study

            result = run_design_study(a.definition, a.dataset, a.storage, a.workers, a.report_only)
            print(f"report: {result.report['html']} ({result.seconds:.0f} s)")
        else:
            from ablate.evaluation.calibrate import Calibration
            from ablate.study.mapping import fit_mapping, schedule_error

            cal = Calibration.load(a.calibration)
            rule = fit_mapping(cal.ks, cal.alpha_bars, a.receptive_field)
            print(f"rf_fraction: {rule.rf_fraction:.3f}\nshape: {rule.shape}\nk_low: {rule.k_low}\n"
                  f"rms error in k: {schedule_error(cal.ks, cal.alpha_bars, rule, a.receptive_field):.2f}")
    except ValueError as err:
        sys.exit(f"ablate.study: {err}")


if __name__ == "__main__":
    main()
