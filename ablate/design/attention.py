"""The rule's attention term (issue #32): a local machine mixed with a global one, fitted on the fit set, and
trained rows re-predicted with it without training them again.

The calibration sees an attention network as a local machine (its per-step outputs are best explained by ELS
at about its plain UNet's patch), yet its samples are more coherent than that machine's. The mapping rule's
``attention_weight`` ``w`` (:class:`~ablate.design.mapping.MappingRule`) gives attention networks the machine
``(1 - w) * ELS_k + w * ELS_K`` (theory ``els_mixture``). Fitting ``w`` (:func:`fit_attention_weight`):

* the fit set's attention networks are predicted with each ``w`` of :data:`WEIGHTS` (the rule's other constants
  as fitted), at the study's seeds;
* ``w`` minimises the mean over them of ``|predicted - trained|`` summed over coherence and artefact rate (the
  two figures the gap is in); ties go to the smaller ``w``. Only fit rows are read.

Re-prediction (:func:`repredict`): a trained row's figures and samples are in its study, so a new rule needs
no training to be scored on it. Every row whose machine the new rule changes is predicted again from the
study's seeds; its ``prediction_r2`` is recomputed against the trained samples saved with the row.

    python -m ablate.design repredict --dataset mnist5k          # fit w on the fit set, re-predict, report
    python -m ablate.design repredict --dataset mnist5k --rule R # re-predict with the rule file R
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ablate.design.baselines import level_error
from ablate.design.compare import Comparison, compare
from ablate.design.kind import build, default_device, predict
from ablate.design.mapping import MappingRule, predict_oracle
from ablate.design.rule_file import RuleFile, current_commit, load_rule, save_or_keep
from ablate.design.statistics import value_of
from ablate.design.study import dataset_comparison, definitions, joining, part, study_dir
from ablate.metrics import pairwise_agreement
from ablate.oracle.theories.els_mixture import WEIGHTS
from ablate.sweep.context import TrialContext
from ablate.sweep.definition import SweepDefinition, dataset_names, load_definition
from ablate.sweep.storage import default_storage, out_dir, sweeps_dir

FITTED = ("coherence", "artefact_rate")  # the levels w is fitted to
SHOWN = ("coherence", "artefact_rate", "novelty", "memorisation_rate")


@dataclass(frozen=True)
class AttentionFit:
    """``weight``: the fitted ``w``; ``table``: per candidate ``w``, each attention fit row's predicted figures
    and the loss (mean over rows of the summed absolute level errors)."""

    weight: float
    table: list[dict[str, Any]]
    rows: tuple[str, ...]  # the fit set's attention networks it was fitted on


def knobs_for(definition: SweepDefinition, rule: MappingRule, arch: str) -> dict[str, Any]:
    """A design trial's knobs for ``arch`` predicted with ``rule``."""
    return {**definition.fixed, **rule.knobs(), **definition.architectures[arch]}


def fit_attention_weight(definition: SweepDefinition, fit_rows: Sequence[dict[str, Any]], rule: MappingRule,
                         device: str | None = None, weights: Sequence[float] = WEIGHTS,
                         progress: bool = False) -> AttentionFit:
    """``w`` fitted on the attention rows of ``fit_rows`` (trained figures as their trials measured them) of
    the fit part ``definition``; ``rule``'s other constants are kept."""
    attn = [r for r in fit_rows if r.get("attention")]
    if not attn:
        raise ValueError("the fit set has no attention network (a network with global mixing over a local "
                         "convolutional path): attention_weight has nothing to be fitted to")
    for r in attn:
        missing = [m for m in FITTED if math.isnan(value_of(r, m))]
        if missing:
            raise ValueError(f"fit row {r['arch']!r} has no trained {', '.join(missing)}; complete its trial first")
    device = device or default_device()
    ctx = TrialContext.build(definition, out_dir(definition))
    table = []
    for w in weights:
        candidate = replace(rule, attention_weight=float(w))
        entry: dict[str, Any] = {"weight": float(w), "rows": {}}
        losses = []
        for r in attn:
            figures, _ = predict(ctx, knobs_for(definition, candidate, r["arch"]), device)
            entry["rows"][r["arch"]] = {m: figures[f"predicted_{m}"] for m in FITTED}
            losses.append(sum(abs(figures[f"predicted_{m}"] - value_of(r, m)) for m in FITTED))
        entry["loss"] = float(np.mean(losses))
        table.append(entry)
        if progress:
            print(f"attention_weight {w:.2f}: loss {entry['loss']:.3f} " + " ".join(
                f"{a}: coherence {f['coherence']:.2f}, artefact rate {f['artefact_rate']:.2f}"
                for a, f in entry["rows"].items()), flush=True)
    best = min(table, key=lambda e: (round(e["loss"], 9), e["weight"]))
    return AttentionFit(best["weight"], table, tuple(r["arch"] for r in attn))


def changed(definition: SweepDefinition, arch: str, shape: Sequence[int], old: MappingRule, new: MappingRule) -> bool:
    """Whether ``new`` predicts ``arch`` with another machine than ``old`` does."""
    model = build(definition, {**definition.fixed, **definition.architectures[arch]})["train"].model
    return (predict_oracle(model, shape, old, definition.steps).oracle
            != predict_oracle(model, shape, new, definition.steps).oracle)


def repredict(definition: SweepDefinition, rows: Sequence[dict[str, Any]], old: MappingRule, new: MappingRule,
              device: str | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """``rows`` (a study's comparison rows) with every row whose machine ``new`` changes predicted again
    (``predicted_*``, ``prediction_r2`` against the trained samples saved with the row, ``prediction_seconds``)
    and marked ``repredicted``; the others as they were. Rows of grids that join the study are predicted with
    their own grid's definition (the same data, seeds and budget)."""
    device = device or default_device()
    contexts: dict[str, tuple[SweepDefinition, TrialContext]] = {}
    out = []
    for r in rows:
        d = grid_definition(definition, r)
        shape = contexts[d.name][1].data.shape if d.name in contexts else None
        if shape is None:
            contexts[d.name] = (d, TrialContext.build(d, out_dir(d)))
            shape = contexts[d.name][1].data.shape
        if r["arch"] not in d.architectures or not changed(d, r["arch"], shape, old, new):
            out.append(dict(r))
            continue
        start = time.perf_counter()
        figures, samples = predict(contexts[d.name][1], knobs_for(d, new, r["arch"]), device)
        row = {**r, **figures, "repredicted": True,
               **{f"before_{k}": r[k] for k in r if k.startswith("predicted_") or k == "prediction_r2"}}
        if r.get("samples_path"):
            trained = torch.load(sweeps_dir() / r["samples_path"], weights_only=True)["trained"]
            row["prediction_r2"] = float(pairwise_agreement(samples, trained[:len(samples)])["r2"].median())
        row["prediction_seconds"] = time.perf_counter() - start
        out.append(row)
        if progress:
            print(f"{r.get('label', r['arch'])}: " + ", ".join(
                f"{m} {r.get(f'predicted_{m}', float('nan')):.2f} -> {row[f'predicted_{m}']:.2f} "
                f"(trained {value_of(r, m):.2f})" for m in FITTED), flush=True)
    return out


def grid_definition(study: SweepDefinition, row: dict[str, Any]) -> SweepDefinition:
    """The definition a row came from: the study's, or that of the grid that joins it (``row["grid"]``) for
    the study's dataset."""
    grid = row.get("grid")
    if not grid or grid == study.name.removesuffix(f"-{study.dataset}") or study.path is None:
        return study
    for path in joining(study.path):
        for ds in dataset_names(path) or [None]:
            d = load_definition(path, ds)
            if (d.joins is not None and d.joins[1] == study.dataset and d.data.n == row.get("n")
                    and d.name.removesuffix(f"-{d.dataset}") == grid):
                return d
    raise ValueError(f"row {row['arch']!r} comes from grid {grid!r}, which does not join {study.path} for "
                     f"{study.dataset}")


@dataclass(frozen=True)
class Reprediction:
    """A study's rows predicted with another rule: ``before`` and ``after`` comparisons over the same rows."""

    rule: RuleFile
    fit: AttentionFit | None
    before: Comparison
    after: Comparison
    seconds: float
    report: Path | None = None


def repredict_study(path: str | Path, dataset: str, rule: str | Path | None = None, device: str | None = None,
                    progress: bool = True, weights: Sequence[float] = WEIGHTS) -> Reprediction:
    """Re-predict a design study's rows for ``dataset`` with a new rule: the rule file ``rule``, or (None) the
    study's fitted rule with ``attention_weight`` fitted on its fit set (:func:`fit_attention_weight`; written
    to ``runs/sweeps/<name>/rule-<dataset>-attention.yaml``). The rows and their figures are cached in
    ``repredicted-<dataset>.json`` by the rule; the report is ``repredicted-<dataset>.md``."""
    start = time.perf_counter()
    (d,) = definitions(path, [dataset])
    if d.joins is not None:
        raise ValueError(f"{path} joins {d.joins[0]}: re-predict that study (its rows include this grid's)")
    folder = study_dir(path)
    main, before = dataset_comparison(d, default_storage(d), None, folder, True, 1, False, path)
    if before.rule is None:
        raise ValueError(f"{path} ({dataset}) has no fitted rule to start from; run its fit set first")
    old = load_rule(before.rule["path"])
    cache = folder / f"repredicted-{dataset}.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    fit = None
    if rule is not None:
        new = load_rule(rule)
    else:
        if cached.get("fitted_from") == old.rule.knobs() and cached.get("fit"):  # the fit is kept with its rule
            fit = AttentionFit(cached["fit"]["weight"], cached["fit"]["table"], tuple(cached["fit"]["rows"]))
        else:
            fit_part = part(d, list(d.fit), "-fit", {"role": "fit"}, folder, True)
            fit = fit_attention_weight(fit_part, [r for r in before.rows if r.get("role") == "fit"], old.rule, device,
                                       weights, progress)
        new, _ = save_or_keep(RuleFile(replace(old.rule, attention_weight=fit.weight), old.fit_set, current_commit(),
                                       datetime.now(timezone.utc).isoformat(timespec="seconds"), dict(old.sources)),
                              folder / f"rule-{dataset}-attention.yaml")
    key = {"rule": new.rule.knobs(), "rows": sorted(f"{r.get('grid')}/{r['arch']}/{r.get('n')}" for r in before.rows)}
    if cached.get("key") == key:
        rows = cached["rows"]
    else:
        rows = repredict(d, before.rows, old.rule, new.rule, device, progress)
    fit_data = None if fit is None else {"weight": fit.weight, "rows": list(fit.rows), "table": fit.table}
    cache.write_text(json.dumps({"key": key, "fitted_from": old.rule.knobs(), "fit": fit_data, "rows": rows},
                                indent=1, default=str))
    after = compare(main.name, rows, new.to_dict() | {"path": str(new.path)}, None)
    result = Reprediction(new, fit, before, after, time.perf_counter() - start)
    report = folder / f"repredicted-{dataset}.md"
    report.write_text("\n".join(reprediction_lines(result, fit_data)) + "\n")
    return replace(result, report=report)


def level(rows: Sequence[dict[str, Any]], metric: str):
    return level_error([value_of(r, f"predicted_{metric}") for r in rows], [value_of(r, metric) for r in rows], metric)


def reprediction_lines(result: Reprediction, fit: dict[str, Any] | None) -> list[str]:
    """The re-prediction as Markdown: the rule, the weight's fit, each changed row before and after, and the
    held-out rho and level error before and after over the same rows."""
    rule = result.rule.rule
    lines = [f"# Re-predicted without retraining: {result.after.study}", "",
             f"Rule: `{rule.knobs()}` ({result.rule.path}). Rows whose machine the rule changes were predicted "
             "again from the study's seeds; every trained figure is the trial's, unchanged.", ""]
    if fit is not None:
        lines += [f"**`attention_weight` fitted on the fit set's attention networks ({', '.join(fit['rows'])}) "
                  f"only:** w = {fit['weight']:.2f} (loss: mean over them of |predicted - trained| summed over "
                  "coherence and artefact rate).", "", "| w | loss | " + " | ".join(
                      f"{a} coherence / artefact rate" for a in fit["rows"]) + " |",
                  "|---|---|" + "---|" * len(fit["rows"])]
        for e in fit["table"]:
            lines.append(f"| {e['weight']:.1f} | {e['loss']:.3f} | " + " | ".join(
                f"{e['rows'][a]['coherence']:.2f} / {e['rows'][a]['artefact_rate']:.2f}" for a in fit["rows"]) + " |")
        lines.append("")
    changed_rows = [r for r in result.after.rows if r.get("repredicted")]
    lines += ["| architecture | grid | role | " + " | ".join(f"{m}: before -> after (trained)" for m in SHOWN)
              + " | r² pred. vs trained: before -> after |", "|---|---|---|" + "---|" * (len(SHOWN) + 1)]
    for r in changed_rows:
        cells = [f"{value_of(r, f'before_predicted_{m}'):.2f} -> {value_of(r, f'predicted_{m}'):.2f} "
                 f"({value_of(r, m):.2f})" for m in SHOWN]
        r2 = (f"{value_of(r, 'before_prediction_r2'):.2f} -> {value_of(r, 'prediction_r2'):.2f}"
              if "before_prediction_r2" in r else "(fit row)")
        lines.append(f"| {r.get('label', r['arch'])} | {r.get('grid')} | {r.get('role', 'held_out')} | "
                     + " | ".join(cells) + f" | {r2} |")
    lines += ["", "Held-out rows, the same rows before and after (Spearman rho with bootstrap 95% interval; "
              "MAE of the level with its interval):", "",
              "| metric | rho before | rho after | MAE before | MAE after |", "|---|---|---|---|---|"]
    held_b = [r for r in result.before.rows if r.get("role", "held_out") != "fit" and "predicted_coherence" in r]
    held_a = [r for r in result.after.rows if r.get("role", "held_out") != "fit" and "predicted_coherence" in r]
    for m in SHOWN:
        b, a = result.before.correlations.get(m), result.after.correlations.get(m)
        if b is None or a is None:
            continue
        lb, la = level(held_b, m), level(held_a, m)
        lines.append(f"| {m} | {b.rho:.2f} [{b.low:.2f}, {b.high:.2f}] | {a.rho:.2f} [{a.low:.2f}, {a.high:.2f}] | "
                     f"{lb.mae:.3f} [{lb.low:.3f}, {lb.high:.3f}] | {la.mae:.3f} [{la.low:.3f}, {la.high:.3f}] |")
    lines += ["", f"{len(changed_rows)} rows re-predicted in {result.seconds:.0f} s."]
    return lines
