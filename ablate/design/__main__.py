"""``python -m ablate.design``: studies that go beyond one sweep.

    python -m ablate.design design-before-training                    # sweeps/design_before_training.yaml, every dataset
    python -m ablate.design design-before-training --dataset fingers  # one of them
    python -m ablate.design design-before-training --report-only      # redraw the report from the studies
    python -m ablate.design design-before-training --rule rule.yaml   # predict the held-out grid with this rule
    python -m ablate.design repredict --dataset mnist5k                # fit the attention term, re-predict, no training
    python -m ablate.design predict-text sweeps/text_words.yaml        # text: predicted machines against the trained sweep
    python -m ablate.design fit-rule resnet.json:17 unet.json:22 attn.json:22:attention --out rule.yaml
    python -m ablate.design describe runs/pipe                         # any network: measured geometry, predicted machine
    python -m ablate.design describe mypkg.nets:build net.prediction_type=epsilon net.time_input=sigma data.name=digits

With a fit set (``fit:`` in the definition) the rule is fitted on those architectures' calibrations
first and written to runs/sweeps/<name>/rule-<dataset>.yaml; the others are the held-out grid. A
fit-rule MEMBER is CALIBRATION.json:RF (RF: the receptive field the rule scales, the convolutional
path's), with :attention for an attention network. Re-running resumes: finished architectures are kept, interrupted ones are run again. The
report goes to runs/sweeps/<name>/report.md and report.html, one for the whole file: --dataset runs only
that dataset, and the report still shows every other dataset that has results; every trial is in the Optuna
study (runs/sweeps/<name>-<dataset>.db unless --storage says otherwise) and in W&B.
"""
from __future__ import annotations

import argparse
import sys

DEFAULT = "sweeps/design_before_training.yaml"


def parse_members(specs: list[str]):
    """``CALIBRATION.json:RF[:attention]`` -> fit members (named by the file) and where each came from."""
    from pathlib import Path

    from ablate.evaluation.calibrate import Calibration
    from ablate.design.mapping import FitMember

    members, sources = [], {}
    for spec in specs:
        parts = spec.rsplit(":", 2) if spec.endswith(":attention") else spec.rsplit(":", 1)
        if len(parts) < 2 or not parts[1].isdigit() or (len(parts) == 3 and parts[2] != "attention"):
            raise ValueError(f"fit-rule member {spec!r} must be CALIBRATION.json:RF or CALIBRATION.json:RF:attention "
                             "(RF: the receptive field in pixels)")
        cal = Calibration.load(parts[0])
        name = Path(parts[0]).name.removesuffix(".json")
        members.append(FitMember(name, tuple(cal.ks), tuple(cal.alpha_bars), int(parts[1]), len(parts) == 3))
        sources[name] = parts[0]
    return members, sources


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ablate.design", description=__doc__.splitlines()[0],
                                epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("design-before-training", help="predict with the oracle, train, compare")
    d.add_argument("--definition", default=DEFAULT, help=f"the study file (default: {DEFAULT})")
    d.add_argument("--dataset", action="append", help="only this dataset of the file (repeatable)")
    d.add_argument("--storage", help="one database URL for every dataset's study (default: SQLite files)")
    d.add_argument("--workers", type=int, default=1, help="local worker processes per dataset")
    d.add_argument("--report-only", action="store_true", help="compare and report the trials done so far")
    d.add_argument("--rule", help="a rule file (fit-rule) to predict the held-out grid with; default: fit it on "
                   "the definition's fit set")
    r = sub.add_parser("repredict", help="re-predict a study's trained rows with another rule, without training")
    r.add_argument("--definition", default=DEFAULT, help=f"the study file (default: {DEFAULT})")
    r.add_argument("--dataset", required=True, help="the study's dataset")
    r.add_argument("--rule", help="a rule file; default: the study's rule with attention_weight fitted on its fit set")
    t = sub.add_parser("predict-text", help="text: each token architecture's predicted machine against its trained "
                       "network, from a train sweep's completed trials")
    t.add_argument("sweep", help="a train sweep of token models (sweeps/text_words.yaml)")
    t.add_argument("--dataset", help="which of its datasets")
    f = sub.add_parser("fit-rule", help="fit the mapping rule's constants to calibrations (evaluate.py's JSONs)")
    f.add_argument("members", nargs="+", metavar="CALIBRATION.json:RF[:attention]",
                   help="one calibrated network each: its calibration JSON and receptive field")
    f.add_argument("--out", help="write the rule file here (default: print it)")
    g = sub.add_parser("describe", help="probe any network's geometry and print the machine the rule predicts")
    g.add_argument("model", help="ablate checkpoint, diffusers folder, TorchScript file or package.module:factory")
    g.add_argument("items", nargs="*", metavar="key=value", help="net.* (declaration) and data.* (image shape)")
    g.add_argument("--steps", type=int, default=20, help="sampler steps for the k schedule (default 20)")
    g.add_argument("--json", action="store_true", help="print JSON instead of text")
    for sp in (d, r, t, f, g):
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

            from ablate.design.describe import describe_network, format_description

            d = describe_network(a.model, a.items, steps=a.steps)
            print(json.dumps(d, indent=1) if a.json else format_description(d))
        elif a.command == "design-before-training":
            if a.workers < 1:
                raise ValueError(f"--workers={a.workers} must be >= 1")
            from ablate.design.study import definitions, run_design_study
            from ablate.design.text_study import is_text, run_text_design_study

            if is_text(definitions(a.definition, a.dataset)[0]):  # token data: the text study (nothing to fit)
                if a.rule is not None:
                    raise ValueError("--rule: a token architecture's machine has no rule constant to give")
                result = run_text_design_study(a.definition, a.dataset, a.storage, a.workers, a.report_only)
            else:
                result = run_design_study(a.definition, a.dataset, a.storage, a.workers, a.report_only, rule=a.rule)
            print(f"report: {result.report.get('html', result.report.get('md'))} ({result.seconds:.0f} s)")
        elif a.command == "predict-text":
            from ablate.design.text import predict_text

            print(f"report: {predict_text(a.sweep, a.dataset)}")
        elif a.command == "repredict":
            from ablate.design.attention import repredict_study

            result = repredict_study(a.definition, a.dataset, a.rule)
            print(f"report: {result.report} ({result.seconds:.0f} s)")
        else:
            from ablate.design.rule_file import fit_rule_file

            members, sources = parse_members(a.members)
            rule = fit_rule_file(members, sources)
            if a.out:
                print(f"rule: {rule.rule}\nwritten to {rule.save(a.out)}")
            else:
                import yaml

                print(yaml.safe_dump(rule.to_dict(), sort_keys=False, width=120), end="")
    except ValueError as err:
        sys.exit(f"ablate.design: {err}")


if __name__ == "__main__":
    main()
