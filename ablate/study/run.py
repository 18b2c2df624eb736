"""``run_design_study``: run (or resume) every dataset's study, compare, report, log to W&B."""
from __future__ import annotations

import dataclasses

import time
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import TrialState

from ablate.study.compare import Comparison, compare, rows_of
from ablate.study.report import COLUMNS, verdict, write_report
from ablate.sweep.definition import SweepDefinition, dataset_names, load_definition


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
    import yaml

    from ablate.sweep.study import sweeps_dir

    return sweeps_dir() / str(yaml.safe_load(Path(path).read_text())["name"])


def run_design_study(path: str | Path, datasets: list[str] | None = None, storage: str | None = None,
                     workers: int = 1, report_only: bool = False, progress: bool = True) -> DesignResult:
    """Run every dataset's study to completion (finished trials are kept: re-running resumes), then
    compare predicted with measured figures and write the report to ``runs/sweeps/<name>/``.
    ``storage``: one database URL for all datasets (default: a SQLite file per dataset)."""
    from ablate.sweep import study as studies

    start = time.perf_counter()
    comparisons, samples_dirs, resolved = [], {}, []
    defs = definitions(path, datasets)
    if not report_only:
        from ablate.oracle.fused import kernel
        kernel()  # build the oracle's fused CPU kernel once per machine (cached) before any timed prediction
    for d in defs:
        url = storage or studies.default_storage(d)
        if report_only:
            d, study = studies.load_existing(d, url)
        else:
            study = studies.run_sweep(d, url, workers=workers, progress=progress)
            d = dataclasses.replace(d, name=study.study_name)  # the version that holds this condition
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not done:
            raise ValueError(f"study {d.name!r} has no completed trial; see `python -m ablate.sweep status "
                             f"{path} --dataset {d.dataset}` for the errors")
        comparisons.append(compare(d.name, rows_of(done, list(d.architectures))))
        resolved.append(d)
        samples_dirs[d.name] = studies.out_dir(d) / "samples"
        if progress:
            print(f"{d.name}:", *verdict(comparisons[-1]), sep="\n", flush=True)
    report = write_report(comparisons, samples_dirs, study_dir(path))
    for d, c in zip(resolved, comparisons):
        log_to_wandb(d, c, report)
    return DesignResult(comparisons, report, time.perf_counter() - start)


def log_to_wandb(definition: SweepDefinition, c: Comparison, report: dict[str, Path]) -> None:
    """The table, the pictures and each metric's rho as a run in the study's W&B group."""
    from ablate.sweep.study import wandb_run

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
