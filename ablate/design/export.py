"""``report.json``: the design study as plain data for users' own tools (and for checking the report's claims).

Schema::

    {"datasets": {NAME: {"study": str,
                         "rows": [ROW, ...],
                         "summary": {...}}}}

Each ROW: ``architecture`` (rows along the data-size axis share it and differ in ``n``), ``role`` (``fit`` or
``held_out``), ``grid`` (the definition it came from), ``n`` (training-set size), ``receptive_field`` (the local
one, the convolutional path's; null where there is none), ``parameters``, ``depth``, ``stride``, ``predicted`` and
``trained`` (the same keys: ``coherence``, ``artefact_rate``, ``novelty``, ``memorisation``, ``fidelity`` and,
on ``fingers``, ``conditional_artefact_rate``), ``seeds`` (``predicted``, ``trained``: how many samples each side
scored), ``agreement`` (calibrated ELS ``r`` and ``r2``, the prediction's per-seed ``r2`` with the trained
samples) and ``seconds`` (``prediction``, ``training``). The summary holds the oracle's held-out rho per metric,
the free baselines, the level errors, the data-size axis, the per-seed figures and the cost, as the report
prints them. NaN is written as null.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from ablate.design.compare import Comparison
from ablate.design.statistics import Correlation, value_of

METRICS = {"coherence": "coherence", "artefact_rate": "artefact_rate", "novelty": "novelty",
           "memorisation": "memorisation_rate", "fidelity": "fidelity",
           "conditional_artefact_rate": "conditional_artefact_rate"}


def clean(value: Any) -> Any:
    """JSON-safe: NaN and inf as None, dataclasses as dicts, tuples as lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    return str(value)


def row_data(r: dict[str, Any]) -> dict[str, Any]:
    predicted = {k: value_of(r, f"predicted_{m}") for k, m in METRICS.items() if f"predicted_{m}" in r}
    trained = {k: value_of(r, m) for k, m in METRICS.items() if m in r}
    return {"architecture": r["arch"], "role": r.get("role", "held_out"), "grid": r.get("grid"), "n": r.get("n"),
            "receptive_field": r.get("local_receptive_field"), "parameters": r.get("parameters"),
            "depth": r.get("depth"), "stride": r.get("stride"), "predicted": predicted, "trained": trained,
            "seeds": {"predicted": r.get("prediction_seeds"), "trained": r.get("measure_seeds")},
            "agreement": {"els_r": value_of(r, "els_r"), "els_r2": value_of(r, "els_r2"),
                          "prediction_r2": value_of(r, "prediction_r2")},
            "seconds": {"prediction": value_of(r, "prediction_seconds"), "training": value_of(r, "train_seconds")}}


def _rho(c: Correlation) -> dict[str, Any]:
    return {"rho": c.rho, "low": c.low, "high": c.high, "n": c.n, "ceiling": c.ceiling}


def summary(c: Comparison) -> dict[str, Any]:
    out: dict[str, Any] = {"headline": c.headline, "oracle": {m: _rho(k) for m, k in c.correlations.items()},
                           "grids": {g: {m: _rho(k) for m, k in cs.items()} for g, cs in c.grids.items()}}
    b = c.baselines
    if b is not None:
        out["free"] = {m: {d: _rho(k) for d, k in ds.items()} for m, ds in b.free.items()}
        out["regression"] = {m: _rho(k) for m, k in b.regression.items()}
        out["best_free"] = {m: {"name": name, **_rho(k)} for m, (name, k) in b.best.items()}
        out["partial_given_receptive_field"] = {m: {"rho": v[0], "low": v[1], "high": v[2]}
                                                for m, v in b.partial.items()}
        out["levels"] = {"oracle": b.levels, "oracle_bias_corrected": b.corrected, "regression": b.regression_levels}
    out["data_size_axis"] = {a: {m: {k: _rho(v) for k, v in parts.items()} for m, parts in ms.items()}
                             for a, ms in c.axis.items()}
    out["per_seed"] = c.per_seed
    held, charged = c.held_out_cost
    out["cost"] = {"prediction_over_training_held_out": held, "with_fit_training_charged": charged,
                   "prediction_over_training_all_rows": c.cost_ratio}
    return out


def report_data(comparisons: list[Comparison]) -> dict[str, Any]:
    return clean({"datasets": {c.dataset or c.study: {"study": c.study, "rows": [row_data(r) for r in c.rows],
                                                      "summary": summary(c)} for c in comparisons}})
