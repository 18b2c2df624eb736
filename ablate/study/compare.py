"""Predicted against measured, across the grid of architectures: Spearman's rho per metric and the cost.

Input: the completed trials of a design study (one per architecture). Output: plain data
(:class:`Comparison`) that the report draws and prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from ablate.sweep.definition import ARCH, PREDICTED

BAR = 0.8  # the bar on fingers: rho >= 0.8 for artefact rate and for coherence
GATED = ("artefact_rate", "coherence")


@dataclass(frozen=True)
class Correlation:
    metric: str
    rho: float  # NaN when either side is constant across the grid (no ranking to compare)
    p_value: float
    n: int

    @property
    def meets_bar(self) -> bool:
        return not math.isnan(self.rho) and self.rho >= BAR


@dataclass(frozen=True)
class Comparison:
    study: str
    rows: list[dict[str, Any]]  # one per architecture: arch, geometry, predicted_* and measured figures
    correlations: dict[str, Correlation]
    prediction_seconds: float
    train_seconds: float

    @property
    def cost_ratio(self) -> float:
        """Prediction phase over training phase, in wall time (the issue's bar: at most 0.1)."""
        return self.prediction_seconds / self.train_seconds if self.train_seconds > 0 else float("nan")


def spearman(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho (ties get average ranks) and its two-sided p-value; NaN for fewer than 3 pairs or
    a constant side."""
    from scipy.stats import spearmanr

    pairs = [(p, m) for p, m in zip(predicted, measured) if not (math.isnan(p) or math.isnan(m))]
    if len(pairs) < 3 or len({p for p, _ in pairs}) < 2 or len({m for _, m in pairs}) < 2:
        return float("nan"), float("nan")
    result = spearmanr([p for p, _ in pairs], [m for _, m in pairs])
    return float(result.statistic), float(result.pvalue)


def rows_of(trials, order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per completed trial (Optuna ``FrozenTrial``s), architectures in ``order`` (then by number)."""
    rank = {name: i for i, name in enumerate(order)}
    rows = [{"arch": t.params.get(ARCH, f"trial{t.number}"), "trial": t.number, **t.user_attrs} for t in trials]
    return sorted(rows, key=lambda r: (rank.get(r["arch"], len(rank)), r["trial"]))


def compare(study_name: str, rows: list[dict[str, Any]]) -> Comparison:
    def value(row, key):
        v = row.get(key)
        return float(v) if isinstance(v, (int, float)) else float("nan")

    correlations = {}
    for metric in PREDICTED:
        if not any(f"predicted_{metric}" in r for r in rows):
            continue
        pred = [value(r, f"predicted_{metric}") for r in rows]
        meas = [value(r, metric) for r in rows]
        rho, p = spearman(pred, meas)
        correlations[metric] = Correlation(metric, rho, p, len(rows))
    return Comparison(study_name, rows, correlations,
                      sum(value(r, "prediction_seconds") for r in rows),
                      sum(value(r, "train_seconds") for r in rows))
