"""The text design study (issue #29, theory section 12): a ``kind: design`` sweep on token data.

Each architecture is predicted before it is trained (its discrete machine, :func:`~ablate.design.text.predict_tokens`:
ELS at its padding's boundary with the window its receptive field covers; nothing is fitted, so there is no fit
set), then trained, and the two compared (:func:`~ablate.design.text.run_text_design_trial`). Per dataset the
report gives, for every text metric, Spearman's rho of predicted against trained over the architectures with a
bootstrap interval (architectures and seeds resampled) beside the **free descriptors'** (receptive field, parameter
count; a global network counts as the largest window, ``2L - 1``), each in a direction fixed before any result
(:data:`DIRECTION`), the levels' mean absolute error, and seed by seed the predicted machine's token agreement with
the trained network beside the free bigram model's. Datasets of the same data at several sizes (``n``) are pooled
into a **data-size axis**, where ``n`` is a free descriptor too.

    python -m ablate.design design-before-training --definition sweeps/design_text.yaml [--dataset D]
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ablate.data import TOKENS, load_dataset
from ablate.design.compare import rows_of
from ablate.design.plots import save
from ablate.design.statistics import Correlation, correlation, value_of
from ablate.design.study import DesignResult, completed, definitions, study_dir
from ablate.metrics.text import TEXT_METRICS
from ablate.models import build_backbone
from ablate.sweep.definition import SweepDefinition
from ablate.sweep.storage import default_storage
from ablate.sweep.train_kind import train_config
from ablate.sweep.workers import wandb_run
from ablate.viz import pyplot

FREE = ("receptive_field", "parameters")  # free descriptors of a token architecture (and ``n`` across sizes)
ROW_KEY = {"receptive_field": "local_receptive_field", "parameters": "parameters", "n": "n"}
# a descriptor's sign per metric, fixed before any result, as the image study's (validity for coherence,
# creativity for novelty): a wider view is more global (more valid, less creative, more memorising, fewer
# artefacts); more data: more valid and creative, less memorising, fewer artefacts
DIRECTION = {"validity": 1.0, "creativity": -1.0, "memorisation": 1.0, "artefact_rate": -1.0}
N_DIRECTION = {"validity": 1.0, "creativity": 1.0, "memorisation": -1.0, "artefact_rate": -1.0}
LEAGUE = ("els_zeros", "els_circular", "ls_zeros", "ls_circular", "ideal", "unigram", "bigram")
BOOTSTRAP = 2000


def is_text(definition: SweepDefinition) -> bool:
    """Whether a design definition's data are token sequences (this module's study, not the image one)."""
    return definition.data.name in TOKENS


def annotate(rows: list[dict[str, Any]], d: SweepDefinition, n_train: int) -> list[dict[str, Any]]:
    """Each row with its dataset, training-set size ``n`` and parameter count (free to know)."""
    data = load_dataset(d.data)
    for r in rows:
        model = train_config(d, {**d.fixed, **d.architectures.get(r["arch"], {})}).model
        backbone = build_backbone(model, data.vocab_size, None, data.shape[0])
        r.update(dataset=d.dataset or d.data.name, data=d.data.name, n=n_train,
                 parameters=int(sum(p.numel() for p in backbone.parameters())))
    return rows


def correlations(rows: Sequence[dict[str, Any]], descriptors: Sequence[str]) -> dict[str, dict[str, Correlation]]:
    """``{metric: {"oracle" | descriptor: Correlation}}`` over ``rows``: the predicted machine's rates, then each
    free descriptor as a ranking in its fixed direction."""
    out: dict[str, dict[str, Correlation]] = {}
    for m in TEXT_METRICS:
        # the trained rates are over ``measure_seeds`` texts, the oracle's over ``prediction_seeds``; a descriptor
        # is exact (the shared bootstrap resamples architectures and redraws each rate from its seeds)
        measured = [value_of(r, "measure_seeds") for r in rows]
        out[m] = {"oracle": correlation(rows, [value_of(r, f"predicted_{m}") for r in rows], m, True,
                                        ([value_of(r, "prediction_seeds") for r in rows], measured))}
        for f in descriptors:
            sign = (N_DIRECTION if f == "n" else DIRECTION)[m]
            out[m][f] = correlation(rows, [sign * value_of(r, ROW_KEY[f]) for r in rows], m, False,
                                    (None, measured))
    return out


def mae(rows: Sequence[dict[str, Any]], metric: str, seed: int = 0) -> tuple[float, float, float]:
    """Mean absolute error of the predicted level, with a bootstrap 95% interval over architectures."""
    e = np.array([abs(value_of(r, f"predicted_{metric}") - value_of(r, metric)) for r in rows])
    e = e[~np.isnan(e)]
    if not len(e):
        return (float("nan"),) * 3
    draws = e[np.random.default_rng(seed).integers(0, len(e), (BOOTSTRAP, len(e)))].mean(1)
    return float(e.mean()), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def _ci(c: Correlation) -> str:
    if math.isnan(c.rho):
        return "undefined"
    return f"{c.rho:.2f} [{c.low:.2f}, {c.high:.2f}]" if not math.isnan(c.low) else f"{c.rho:.2f}"


def _num(r: dict[str, Any], key: str, fmt: str = ".3f") -> str:
    v = value_of(r, key)
    return "-" if math.isnan(v) else format(v, fmt)


def closest(r: dict[str, Any]) -> str:
    """The league machine (calibrated per step) closest to the trained network, with its agreement."""
    found = [(value_of(r, f"{m}_agreement"), m) for m in LEAGUE if not math.isnan(value_of(r, f"{m}_agreement"))]
    if not found:
        return "-"
    a, m = max(found)
    return f"{m} {a:.3f}"


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    head = ("| architecture | receptive field | parameters | predicted machine | validity pred. / trained | creativity "
            "| memorisation | text artefact | agreement, same seed (95% CI) | bigram's | oracle - bigram | closest "
            "calibrated machine | chance | predict s / train s |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r.get("label", r["arch"]), "global" if r.get("global") else str(r.get("receptive_field")),
                 f"{r.get('parameters', 0):,}", r.get("predicted_machine", "-")]
        cells += [f"{_num(r, 'predicted_' + m)} / {_num(r, m)}" for m in TEXT_METRICS]
        for key in ("prediction_agreement", "bigram_prediction_agreement", "prediction_gain"):
            cells.append(f"{_num(r, key)} [{_num(r, key + '_low')}, {_num(r, key + '_high')}]")
        cells += [closest(r), _num(r, "chance_agreement"),
                  f"{_num(r, 'prediction_seconds', '.0f')} / {_num(r, 'train_seconds', '.0f')}"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def section(title: str, rows: Sequence[dict[str, Any]], descriptors: Sequence[str]) -> list[str]:
    """A set of rows' report: the table, each metric's rho (oracle and free), the levels' error, the per-seed
    summary."""
    corr = correlations(rows, descriptors)
    out = [f"## {title}", "", *table(rows), "",
           f"Spearman's rho over the {len(rows)} architectures, trained metric against each predictor (95% bootstrap "
           "interval, architectures and seeds resampled; a descriptor ranks in its direction fixed before any result, so a "
           "negative rho means it ranks the other way round):",
           "", "| metric | oracle (predicted machine) | " + " | ".join(descriptors) + " | oracle's MAE of the level |",
           "|---|---|" + "---|" * len(descriptors) + "---|"]
    for m in TEXT_METRICS:
        err = mae(rows, m)
        out.append(f"| {m} | {_ci(corr[m]['oracle'])} | " + " | ".join(_ci(corr[m][f]) for f in descriptors)
                   + f" | {err[0]:.3f} [{err[1]:.3f}, {err[2]:.3f}] |")
    gains = [r for r in rows if not math.isnan(value_of(r, "prediction_gain"))]
    above = sum(value_of(r, "prediction_gain_low") > 0 for r in gains)
    below = sum(value_of(r, "prediction_gain_high") < 0 for r in gains)
    if gains:
        agree = [value_of(r, "prediction_agreement") for r in gains]
        out += ["", f"Seed by seed: the predicted machine writes {min(agree):.2f}-{max(agree):.2f} of the trained "
                f"network's symbols; above the free bigram model's agreement (interval of the difference above 0) for "
                f"{above} of {len(gains)} architectures, below it for {below}."]
    return out + [""]


def scatter(groups: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: Path) -> Path:
    """One panel per text metric: predicted (x) against trained (y), one colour per dataset, the diagonal."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(TEXT_METRICS), figsize=(4.0 * len(TEXT_METRICS), 3.9), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes[0], TEXT_METRICS):
        for (name, rows), colour in zip(groups, colours):
            xs = [value_of(r, f"predicted_{m}") for r in rows]
            ys = [value_of(r, m) for r in rows]
            ax.scatter(xs, ys, s=26, color=colour, label=name, zorder=3)
            for x, y, r in zip(xs, ys, rows):
                ax.annotate(r["arch"], (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
        ax.plot([0, 1], [0, 1], ":", color="0.5", lw=0.8)
        ax.set_xlabel(f"predicted {m} (no training)")
        ax.set_ylabel(f"trained {m}")
        ax.set_title(m)
    axes[0][0].legend(fontsize=7)
    return save(plt, fig, path)


def write_text_report(groups: Sequence[tuple[SweepDefinition, list[dict[str, Any]]]], folder: Path) -> dict[str, Path]:
    """``report.md`` (and ``report.json``, ``scatter.png``) in ``folder``: each dataset's section, then each
    data-size axis (datasets of the same data at several ``n``) pooled."""
    name = groups[0][0].name.removesuffix(f"-{groups[0][0].dataset}") if groups[0][0].dataset else groups[0][0].name
    lines = [f"# {name}: text design before training", "",
             "Each architecture's discrete machine (ELS at its padding's boundary, window = its receptive field; a "
             "global network, the largest window) is predicted with no training and nothing fitted, from the study's "
             "seeds; then the architecture is trained and unmasks the same seeds with the same randomness.", ""]
    for d, rows in groups:
        lines += section(f"{d.dataset or d.data.name} (n = {rows[0]['n']:,})", rows, FREE)
    by_data: dict[str, list[dict[str, Any]]] = {}
    for _, rows in groups:
        for r in rows:
            by_data.setdefault(r["data"], []).append(r)
    for data, rows in by_data.items():
        if len({r["n"] for r in rows}) > 1:
            for r in rows:
                r["label"] = f"{r['arch']} n={r['n']}"
            lines += section(f"{data}: the data-size axis (n = {', '.join(f'{n:,}' for n in sorted({r['n'] for r in rows}))}, "
                             "pooled)", rows, FREE + ("n",))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"md": folder / "report.md", "json": folder / "report.json",
             "scatter": scatter([(d.dataset or d.data.name, rows) for d, rows in groups], folder / "scatter.png")}
    lines += ["![predicted against trained](scatter.png)", ""]
    paths["md"].write_text("\n".join(lines))
    keep = lambda v: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)  # noqa: E731
    paths["json"].write_text(json.dumps({d.dataset or d.data.name: [{k: keep(v) for k, v in r.items()} for r in rows]
                                         for d, rows in groups}, indent=1))
    return paths


def run_text_design_study(path: str | Path, datasets: list[str] | None = None, storage: str | None = None,
                          workers: int = 1, report_only: bool = False, progress: bool = True) -> DesignResult:
    """Run (or resume; ``report_only``: only load) each asked dataset's study, then write the report of every
    dataset of the file that has results (one not run yet is left out, and said so)."""
    start = time.perf_counter()
    asked = {d.dataset for d in definitions(path, datasets)}
    groups = []
    for d in definitions(path, None):
        if d.fit:
            raise ValueError(f"{path}: fit={list(d.fit)}; a token architecture's machine has no constant to fit "
                             "(theory section 12): drop fit")
        run = d.dataset in asked and not report_only
        try:
            main, done = completed(d, storage or default_storage(d), not run, workers, progress, path)
        except ValueError as err:
            if d.dataset in asked:
                raise
            if progress:
                print(f"report: {d.dataset} left out ({err})", flush=True)
            continue
        data = load_dataset(d.data)
        groups.append((main, annotate(rows_of(done, list(d.architectures)), d, len(data.train))))
    if not groups:
        raise ValueError(f"{path}: no dataset has a completed trial yet")
    report = write_text_report(groups, study_dir(path))
    for d, rows in groups:
        if d.dataset in asked and not report_only:
            log_to_wandb(d, rows, report)
    return DesignResult([], report, time.perf_counter() - start)


def log_to_wandb(definition: SweepDefinition, rows: list[dict[str, Any]], report: dict[str, Path]) -> None:
    """The rows and the scatter as a run in the study's W&B group."""
    run = wandb_run(definition, "design-report", "design-report")
    if run is None:
        return
    import wandb

    try:
        keys = ["arch", "receptive_field", "parameters", "prediction_agreement", "bigram_prediction_agreement",
                *(k for m in TEXT_METRICS for k in (f"predicted_{m}", m))]
        table_ = wandb.Table(columns=keys)
        for r in rows:
            table_.add_data(*[r.get(k) for k in keys])
        run.log({"architectures": table_, "scatter": wandb.Image(str(report["scatter"]))})
        run.save(str(report["md"]), base_path=str(report["md"].parent), policy="now")
    finally:
        run.finish()
