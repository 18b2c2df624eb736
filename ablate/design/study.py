"""``run_design_study``: run (or resume) every dataset's study, compare, report, log to W&B.

With a fit set (``fit`` in the definition) a dataset's study has two parts, each its own Optuna study:

1. ``<name>-<dataset>-fit``: the fit architectures, trained and calibrated (no prediction);
2. the rule fitted on their calibrations (:func:`~ablate.design.mapping.fit_rule`), written to
   ``runs/sweeps/<name>/rule-<dataset>.yaml`` with the commit (:mod:`ablate.design.rule_file`), and the fit
   rows predicted with it (in-sample, kept in ``fit-predictions-<dataset>.json``);
3. ``<name>-<dataset>``: the held-out architectures, predicted with that rule, then trained and measured.

``rule=FILE`` skips 1-2: the held-out grid is predicted with that file's rule (refit and re-score).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import TrialState

from ablate.data import TOKENS, load_dataset
from ablate.design.baselines import descriptors_of
from ablate.design.compare import Comparison, compare, rows_of
from ablate.design.kind import build, default_device, predict
from ablate.design.mapping import FitMember
from ablate.design.report import COLUMNS, verdict, write_report
from ablate.design.rule_file import RuleFile, fit_rule_file, load_rule, save_or_keep
from ablate.design.seeds import per_seed_figures
from ablate.oracle.fused import kernel
from ablate.sweep.context import TrialContext
from ablate.sweep.definition import SweepDefinition, dataset_names, load_definition
from ablate.sweep.storage import default_storage, load_existing, open_storage, out_dir, run_command, sweeps_dir
from ablate.sweep.workers import run_sweep, wandb_run


@dataclass(frozen=True)
class DesignResult:
    comparisons: list[Comparison]
    report: dict[str, Path]
    seconds: float


def definitions(path: str | Path, datasets: list[str] | None = None) -> list[SweepDefinition]:
    """One definition per dataset the file names (or the ones asked for), validated up front."""
    names = datasets or dataset_names(path) or [None]
    defs = [load_definition(path, name) for name in names]
    for d in defs:
        if d.kind != "design":
            raise ValueError(f"{path}: kind={d.kind!r}; the design study needs kind: design")
    return defs


def study_dir(path: str | Path) -> Path:
    return sweeps_dir() / str(yaml.safe_load(Path(path).read_text())["name"])


def part(definition: SweepDefinition, names: list[str], suffix: str, fixed: dict[str, Any], folder: Path,
         report_only: bool) -> SweepDefinition:
    """The fit or held-out study of a definition. Run, it is a definition file of its own in ``folder`` (worker
    processes load it); only looked at (``report_only``), nothing is written and its messages name the user's
    file and dataset."""
    if report_only:
        return dataclasses.replace(definition.subset(names, suffix, fixed), path=definition.path,
                                   dataset=definition.dataset)
    return definition.subset(names, suffix, fixed, folder)


def completed(definition: SweepDefinition, url: str, report_only: bool, workers: int, progress: bool,
              path: str | Path) -> tuple[SweepDefinition, list]:
    """Run (or, ``report_only``, load) one study; its completed trials."""

    if report_only:
        definition, study = load_existing(definition, url)
    else:
        study = run_sweep(definition, url, workers=workers, progress=progress)
        definition = dataclasses.replace(definition, name=study.study_name)  # the version that holds this condition
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        live = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
        if live:  # looked at while it runs, or after it was stopped

            raise ValueError(f"study {definition.name!r} has no completed trial yet ({live} running or queued); "
                             f"it is still running or was stopped: resume it with {run_command(definition)}")
        raise ValueError(f"study {definition.name!r} has no completed trial; see `python -m ablate.sweep status "
                         f"{path}{' --dataset ' + definition.dataset if definition.dataset else ''}` for the errors")
    return definition, done


def check_fit_set(definition: SweepDefinition, fit_def: SweepDefinition, rows: list[dict[str, Any]], url: str,
                  report_only: bool) -> None:
    """The rule is fitted on the whole declared fit set or not at all: a fit architecture without a completed
    trial (still running, between sessions, or failed) stops the study with what is missing, before any rule
    is fitted or written."""

    missing = [n for n in definition.fit if n not in {r["arch"] for r in rows}]
    if not missing:
        return
    states = {}
    if report_only:
        import optuna

        trials = optuna.load_study(study_name=fit_def.name, storage=open_storage(url)).get_trials(deepcopy=False)
        for t in sorted(trials, key=lambda t: t.number):
            states[t.params.get("arch")] = t.state.name.lower()
    what = ", ".join(f"{n} ({states.get(n, 'not started')})" for n in missing) if report_only else ", ".join(missing)
    how = (f"the study is still running or was stopped: resume it with {run_command(definition)}"
           if report_only else f"their trials failed: see python -m ablate.sweep status {fit_def.path} for the errors")
    raise ValueError(f"{fit_def.name}: the rule is fitted on the whole fit set ({', '.join(definition.fit)}), and "
                     f"{what} {'has' if len(missing) == 1 else 'have'} no completed trial yet; {how}")


def fit_members(rows: list[dict[str, Any]]):
    """The fit set's calibrations as :class:`~ablate.design.mapping.FitMember`s (from its trials' figures)."""

    members = []
    for r in rows:
        try:
            ks = tuple(int(k) for k in str(r["els_k"]).split())
            abs_ = tuple(float(a) for a in str(r["els_alpha_bar"]).split())
            members.append(FitMember(r["arch"], ks, abs_, int(r["local_receptive_field"]), bool(r.get("attention")),
                                     int(r.get("allowed_k") or 10**6)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"fit row {r.get('arch')!r} lacks its calibration or geometry ({err}); re-run its "
                             "trial with this version of ablate") from err
    return members


def predict_fit_rows(definition: SweepDefinition, rows: list[dict[str, Any]], rule: RuleFile, out: Path,
                     device: str) -> list[dict[str, Any]]:
    """The fit rows predicted with the rule fitted on them (in-sample), cached in ``out`` by the rule."""

    key = rule.rule.knobs()
    if out.exists():
        cached = json.loads(out.read_text())
        if cached.get("rule") == key and set(cached.get("rows", {})) >= {r["arch"] for r in rows}:
            return [{**r, **cached["rows"][r["arch"]]} for r in rows]
    ctx = TrialContext.build(definition, out_dir(definition))
    figures = {}
    for r in rows:
        knobs = {**definition.fixed, **key, **definition.architectures[r["arch"]]}
        figures[r["arch"]], _ = predict(ctx, knobs, device)
    out.write_text(json.dumps({"rule": key, "rows": figures}, indent=1))
    return [{**r, **figures[r["arch"]]} for r in rows]


def joined_rule(d: SweepDefinition) -> RuleFile:
    """The rule a grid that ``joins`` another study is predicted with: that study's, fitted for the joined
    dataset (``runs/sweeps/<its name>/rule-<dataset>.yaml``)."""
    path = study_dir(d.joins[0]) / f"rule-{d.joins[1]}.yaml"
    if not path.is_file():
        raise ValueError(f"{d.path or d.name} joins {d.joins[0]} (dataset {d.joins[1]}), whose rule {path} does not "
                         "exist yet: run that study's fit set first (python -m ablate.design design-before-training "
                         f"--definition {d.joins[0]} --dataset {d.joins[1]})")
    return load_rule(path)


def joining(path: str | Path) -> list[Path]:
    """The design definitions beside ``path`` (same folder) whose ``joins`` names it: their rows join its report."""
    path = Path(path).resolve()
    found = []
    for other in sorted(path.parent.glob("*.yaml")):
        try:
            raw = yaml.safe_load(other.read_text())
        except (OSError, yaml.YAMLError):
            continue
        joins = raw.get("joins") if isinstance(raw, dict) else None
        if isinstance(joins, dict) and isinstance(joins.get("definition"), str) \
                and (other.parent / joins["definition"]).resolve() == path:
            found.append(other)
    return found


def dataset_comparison(d: SweepDefinition, url: str, given: RuleFile | None, folder: Path, report_only: bool,
                       workers: int, progress: bool, path: str | Path) -> tuple[SweepDefinition, Comparison]:
    """One dataset's study run (or, ``report_only``, loaded) and compared: the held-out definition that holds it
    and its comparison (fit rows first, predicted in-sample, when the definition has a fit set)."""

    tag = d.dataset or "data"
    fit_rows: list[dict[str, Any]] = []
    rule_file = given if given is not None or d.joins is None else joined_rule(d)
    if d.fit and given is None:
        fit_def, fit_done = completed(part(d, d.fit, "-fit", {"role": "fit"}, folder, report_only), url,
                                      report_only, workers, progress, path)
        fit_rows = rows_of(fit_done, list(d.fit))
        check_fit_set(d, fit_def, fit_rows, url, report_only)
        rule_path = folder / f"rule-{tag}.yaml"
        if report_only and rule_path.exists():
            rule_file = load_rule(rule_path)
        else:
            rule_file, written = save_or_keep(
                fit_rule_file(fit_members(fit_rows), {n: f"study {fit_def.name}" for n in d.fit}), rule_path)
            if progress:
                print(f"rule fitted on {', '.join(d.fit)}: {rule_file.rule} -> {rule_path}" if written else
                      f"rule unchanged since {rule_file.fitted} (commit {rule_file.commit}): {rule_path}",
                      flush=True)
        fit_rows = predict_fit_rows(fit_def, fit_rows, rule_file, folder / f"fit-predictions-{tag}.json",
                                    default_device())
    held = [n for n in d.architectures if n not in d.fit]
    main = d if rule_file is None else part(d, held, "", rule_file.rule.knobs(), folder, report_only)
    main, done = completed(main, url, report_only, workers, progress, path)
    channels = load_dataset(d.data).shape[0]
    rows = annotate(fit_rows, d, None, channels) + annotate(rows_of(done, held), d, main.name, channels)
    per_seed = None
    if d.joins is None:  # a study's report: its own rows and those of every grid that joins it
        rows += joined_rows(d, path, channels, progress)
        label(rows)
        per_seed = cached_per_seed(d, rows, folder / f"per-seed-{tag}.json")
    c = compare(main.name, rows, rule_file.to_dict() | {"path": str(rule_file.path)} if rule_file is not None
                else None, per_seed)
    return main, dataclasses.replace(c, dataset=d.dataset)


def annotate(rows: list[dict[str, Any]], d: SweepDefinition, study: str | None, channels: int) -> list[dict[str, Any]]:
    """Each row with what is free to know about it (:func:`~ablate.design.baselines.descriptors_of`, the
    training-set size ``n``), the grid (definition) it came from, and its saved samples (``samples_path``,
    relative to the runs' ``sweeps/`` folder) when ``study`` saved any."""
    for r in rows:
        model = build(d, {**d.fixed, **d.architectures.get(r["arch"], {})})["train"].model
        r.update(grid=d.name.removesuffix(f"-{d.dataset}") if d.dataset else d.name, n=d.data.n,
                 **descriptors_of(model, channels))
        if study is not None and (sweeps_dir() / study / "samples" / f"trial{r['trial']:04d}-{r['arch']}.pt").is_file():
            r["samples_path"] = f"{study}/samples/trial{r['trial']:04d}-{r['arch']}.pt"
    return rows


def label(rows: list[dict[str, Any]]) -> None:
    """``label``: the architecture's name, with ``n=`` where the same architecture was trained on several sizes."""
    sizes: dict[str, set] = {}
    for r in rows:
        sizes.setdefault(r["arch"], set()).add(r.get("n"))
    for r in rows:
        r["label"] = r["arch"] if len(sizes[r["arch"]]) == 1 else f"{r['arch']} n={r.get('n')}"


def joined_rows(d: SweepDefinition, path: str | Path, channels: int, progress: bool) -> list[dict[str, Any]]:
    """The held-out rows of every grid that joins ``d`` (:func:`joining`) for ``d``'s dataset, as they stand:
    predicted with ``d``'s rule by those grids' trials; a grid not run yet is left out (and said so)."""
    rows: list[dict[str, Any]] = []
    for other in joining(path):
        for ds in dataset_names(other) or [None]:
            jd = load_definition(other, ds)
            if jd.joins is None or jd.joins[1] != d.dataset:
                continue
            try:
                rule = joined_rule(jd)
                main, done = completed(part(jd, list(jd.architectures), "", rule.rule.knobs(), study_dir(other), True),
                                       default_storage(jd), True, 1, False, other)
            except (ValueError, LookupError) as err:
                if progress:
                    print(f"report: {jd.name} left out ({err})", flush=True)
                continue
            rows += annotate(rows_of(done, list(jd.architectures)), jd, main.name, channels)
    return rows


def cached_per_seed(d: SweepDefinition, rows: list[dict[str, Any]], cache: Path) -> dict[str, Any] | None:
    """:func:`~ablate.design.seeds.per_seed_figures` of the rows, kept in ``cache`` for the set of samples it
    was computed from (the detector of a digit dataset is a trained classifier: the committed figures are
    what the report shows, recomputed when a row is added)."""
    files = sorted(r["samples_path"] for r in rows if r.get("role", "held_out") != "fit" and r.get("samples_path"))
    if not files:
        return None
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("rows") == files:
            return cached
    figures = per_seed_figures(rows, TrialContext.build(d, out_dir(d)).suite.detector, sweeps_dir())
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(figures, indent=1))
    return figures


def run_design_study(path: str | Path, datasets: list[str] | None = None, storage: str | None = None,
                     workers: int = 1, report_only: bool = False, progress: bool = True,
                     rule: str | Path | None = None) -> DesignResult:
    """Run every dataset's study to completion (finished trials are kept: re-running resumes), then
    compare predicted with measured figures and write the report to ``runs/sweeps/<name>/``.
    ``datasets``: only these datasets are run; the report (one for the whole file) still shows every other
    dataset of the file that has results, as they stand, so running one dataset never drops another from it.
    ``storage``: one database URL for all datasets (default: a SQLite file per dataset). ``rule``: a rule
    file to predict the asked datasets' held-out grids with (default: fit it on the definition's fit set)."""

    start = time.perf_counter()
    comparisons, resolved = [], []
    defs = definitions(path, datasets)
    if defs[0].data.name in TOKENS:
        raise ValueError(f"{path} holds token data ({defs[0].data.name}): its study is ablate.design.text_study."
                         "run_text_design_study (python -m ablate.design design-before-training picks it)")
    given = load_rule(rule) if rule is not None else None
    folder = study_dir(path)
    if defs[0].joins is not None and given is not None:
        raise ValueError(f"{path} joins {defs[0].joins[0]} and is predicted with its rule; drop --rule")
    if not report_only:
        kernel()  # build the oracle's fused CPU kernel once per machine (cached) before any timed prediction
    if defs[0].joins is not None:  # a grid that joins another study: run it, then redraw that study's report
        if not report_only:
            for d in defs:
                main, c = dataset_comparison(d, storage or default_storage(d), None, folder, False, workers, progress,
                                             path)
                if progress:
                    print(f"{main.name}:", *verdict(c), sep="\n", flush=True)
        joined = run_design_study(defs[0].joins[0], None, None, 1, True, progress)
        return DesignResult(joined.comparisons, joined.report, time.perf_counter() - start)
    asked = {d.dataset for d in defs}
    shown = []  # every dataset of the file, in its order: the asked ones run, the others as they stand
    for d in defs if datasets is None else definitions(path, None):
        url = storage or default_storage(d)
        if d.dataset in asked:
            main, c = dataset_comparison(d, url, given, folder, report_only, workers, progress, path)
            comparisons.append(c)
            resolved.append(main)
            if progress:
                print(f"{main.name}:", *verdict(c), sep="\n", flush=True)
        else:
            try:  # its own rule file, nothing run; a dataset never run is left out of the report
                main, c = dataset_comparison(d, url, None, folder, True, 1, False, path)
            except ValueError as err:
                if progress:
                    print(f"report: {d.dataset} left out ({err})", flush=True)
                continue
        shown.append(c)
    report = write_report(shown, sweeps_dir(), folder)
    for d, c in zip(resolved, comparisons):
        log_to_wandb(d, c, report)
    return DesignResult(comparisons, report, time.perf_counter() - start)


def log_to_wandb(definition: SweepDefinition, c: Comparison, report: dict[str, Path]) -> None:
    """The table, the pictures and each metric's rho as a run in the study's W&B group."""

    run = wandb_run(definition, "design-report", "design-report")
    if run is None:
        return
    import wandb

    try:
        keys = [k for k, _, _ in COLUMNS]
        table = wandb.Table(columns=keys)
        for r in c.rows:
            table.add_data(*[r.get(k) if not isinstance(r.get(k), (dict, list)) else str(r.get(k)) for k in keys])
        images = {k.split("/", 1)[1]: wandb.Image(str(p)) for k, p in report.items() if k.startswith(f"{c.study}/")}
        run.log({"architectures": table, **images})
        run.summary.update({**{f"spearman/{m}": corr.rho for m, corr in c.correlations.items()},
                            "prediction_seconds": c.prediction_seconds, "train_seconds": c.train_seconds,
                            "cost_ratio": c.cost_ratio})
        run.save(str(report["html"]), base_path=str(report["html"].parent), policy="now")
    finally:
        run.finish()
