"""Predicted against measured, across the grid of architectures: Spearman's rho per metric and the cost.

Input: the completed trials of a design study (one per architecture). Output: plain data
(:class:`Comparison`) that the report draws and prints. With a fit set (``fit`` in the definition),
the headline figures are the **held-out** rows', the architectures that played no part in fitting the
rule; the fit rows (predicted in-sample) and all rows are kept beside them. Each rho carries a bootstrap
95% interval over architectures and seeds (:func:`bootstrap_rho`), and a rate's rho its seed-noise ceiling:
what a perfect predictor would reach at the same seed counts (:func:`ceiling_rho`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ablate.design.baselines import Baselines, axis_correlations, baselines
from ablate.design.kind import PREDICTED
from ablate.design.statistics import (BAR, BOOTSTRAP, UNIT, Correlation, bootstrap_rho, ceiling_rho, correlation,
                                      spearman, value_of)
from ablate.sweep.definition import ARCH

__all__ = ["BAR", "BOOTSTRAP", "GATED", "UNIT", "Comparison", "Correlation", "bootstrap_rho", "ceiling_rho",
           "compare", "correlations_of", "rows_of", "spearman", "value_of"]

GATED = ("artefact_rate", "coherence")
ROLES = ("held_out", "fit")


@dataclass(frozen=True)
class Comparison:
    study: str
    rows: list[dict[str, Any]]  # one per architecture: arch, role, geometry, predicted_* and measured figures
    correlations: dict[str, Correlation]  # the headline: held-out rows where there is a fit set, else all
    prediction_seconds: float
    train_seconds: float
    by_role: dict[str, dict[str, Correlation]] = field(default_factory=dict)  # "held_out", "fit", "all"
    rule: dict[str, Any] | None = None  # the rule file's content (constants, fit set, commit)
    baselines: Baselines | None = None  # the free baselines on the held-out rows (rows with descriptors)
    axis: dict[str, Any] = field(default_factory=dict)  # the data-size axis (baselines.axis_correlations)
    per_seed: dict[str, Any] | None = None  # ablate.design.seeds.per_seed_figures of the held-out rows
    grids: dict[str, dict[str, Correlation]] = field(default_factory=dict)  # held-out rho per grid (several)
    dataset: str | None = None  # the definition's dataset key

    def seconds(self, role: str, key: str) -> float:
        """The sum of ``key`` (``prediction_seconds``, ``train_seconds``) over the rows of ``role``."""
        return total([r for r in self.rows if r.get("role", "held_out") == role], key)

    @property
    def held_out_cost(self) -> tuple[float, float]:
        """Prediction over training on the held-out rows alone, and the same with the fit set's training
        charged to the prediction (no rule, so no prediction, without it)."""
        predict, train, fit = (self.seconds("held_out", "prediction_seconds"), self.seconds("held_out", "train_seconds"),
                               self.seconds("fit", "train_seconds"))
        if train <= 0:
            return float("nan"), float("nan")
        return predict / train, (predict + fit) / train

    @property
    def cost_ratio(self) -> float:
        """Prediction phase over training phase, in wall time (the issue's bar: at most 0.1)."""
        return self.prediction_seconds / self.train_seconds if self.train_seconds > 0 else float("nan")

    @property
    def headline(self) -> str:
        return "held-out" if "held_out" in self.by_role and "fit" in self.by_role else "all"


def total(rows: Sequence[dict[str, Any]], key: str) -> float:
    """The sum of a figure over the rows that have it."""
    values = [value_of(r, key) for r in rows]
    return sum(v for v in values if not math.isnan(v))


def rows_of(trials, order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per completed trial (Optuna ``FrozenTrial``s), architectures in ``order`` (then by number)."""
    rank = {name: i for i, name in enumerate(order)}
    rows = [{"arch": t.params.get(ARCH, f"trial{t.number}"), "trial": t.number, **t.user_attrs} for t in trials]
    return sorted(rows, key=lambda r: (rank.get(r["arch"], len(rank)), r["trial"]))


def correlations_of(rows: list[dict[str, Any]]) -> dict[str, Correlation]:
    """The oracle's rho per predicted metric over ``rows`` (:func:`~ablate.design.statistics.correlation`)."""
    out = {}
    for metric in PREDICTED + ("conditional_artefact_rate",):
        if not any(f"predicted_{metric}" in r for r in rows):
            continue
        counts = None
        if metric == "conditional_artefact_rate":  # a rate over the samples that are hands
            counts = ([value_of(r, "predicted_hands") for r in rows], [value_of(r, "hands") for r in rows])
        out[metric] = correlation(rows, [value_of(r, f"predicted_{metric}") for r in rows], metric, True, counts)
    return out


def compare(study_name: str, rows: list[dict[str, Any]], rule: dict[str, Any] | None = None,
            per_seed: dict[str, Any] | None = None) -> Comparison:
    """Spearman's rho per metric over the predicted rows, by role (``fit`` rows are predicted with the rule
    fitted on them, in-sample; every other row is held out); where the rows carry their free descriptors
    (``parameters``), the free baselines and the data-size axis (:mod:`ablate.design.baselines`)."""

    predicted = [r for r in rows if any(k.startswith("predicted_") for k in r)]
    groups = {"all": predicted}
    for role in ROLES:
        members = [r for r in predicted if r.get("role", "held_out") == role]
        if members:
            groups[role] = members
    by_role = {g: correlations_of(members) for g, members in groups.items()}
    split = "fit" in groups and "held_out" in groups
    headline = by_role["held_out"] if split else by_role["all"]
    held = groups.get("held_out", []) if split else predicted
    free = baselines(groups.get("fit", []), held) if held and all("parameters" in r for r in rows) else None
    names = list(dict.fromkeys(r.get("grid") for r in held if r.get("grid")))
    grids = {g: correlations_of([r for r in held if r.get("grid") == g]) for g in names} if len(names) > 1 else {}
    return Comparison(study_name, rows, headline, total(rows, "prediction_seconds"), total(rows, "train_seconds"),
                      by_role, rule, free, axis_correlations([r for r in rows if "n" in r]) if free else {},
                      per_seed, grids)
