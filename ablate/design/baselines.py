"""What the architecture tells for free, set beside the oracle: free descriptors, a descriptor regression, the
oracle's partial rho given the receptive field, and the error of the levels.

A user who has not trained anything still knows each architecture's **free descriptors**
(:data:`DESCRIPTORS`: its local receptive field, parameter count, depth and stride) and the training-set size
``n``. Each ranks the grid in a direction fixed before any result (:data:`DIRECTION`: a wider or bigger network
is taken to be more global: more coherent, fewer local artefacts, less novel, more memorising). The
**descriptor regression** is a ridge regression of each measured figure on the standardised log-descriptors,
fitted on the fit set only (``RIDGE`` fixed in advance), so it predicts levels as well as ranks. Every
baseline's rho gets the oracle's bootstrap interval; the oracle's **partial** Spearman rho given the receptive
field says what it adds once the receptive field is known. The **levels**: mean absolute error of predicted
against trained figures with a bootstrap interval, raw and with a bias correction fitted on the fit set.

Rows are the design study's (:func:`ablate.design.compare.rows_of`); each carries ``parameters``, ``depth``, ``n`` and the
geometry (``local_receptive_field``, ``stride``) from :func:`descriptors_of`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ablate.design.statistics import (BOOTSTRAP, UNIT, Correlation, correlation, redraw, row_spearman, seed_counts,
                                      value_of)

DESCRIPTORS = ("receptive_field", "parameters", "depth", "stride")  # free: read off the architecture
FREE = DESCRIPTORS + ("n",)  # and the training-set size, free as well (the data-size axis)
ROW_KEY = {"receptive_field": "local_receptive_field", "parameters": "parameters", "depth": "depth",
           "stride": "stride", "n": "n"}
# the metrics compared (the report.json keys are these, memorisation_rate as "memorisation")
METRICS = ("coherence", "artefact_rate", "novelty", "memorisation_rate")
# a descriptor's sign per metric, fixed before any result: wider / bigger = more global
DIRECTION = {"coherence": 1.0, "artefact_rate": -1.0, "novelty": -1.0, "memorisation_rate": 1.0}
# more data = less memorisation, more novelty (the opposite of a wider view for these two)
N_DIRECTION = {"coherence": 1.0, "artefact_rate": -1.0, "novelty": 1.0, "memorisation_rate": -1.0}
RIDGE = 1.0  # the regression's penalty on standardised features, fixed in advance (3 fit rows, 4 features)


def descriptors_of(model, channels: int) -> dict[str, Any]:
    """``parameters`` (the backbone built from ``model``, a :class:`~ablate.models.BackboneConfig`) and
    ``depth`` (``model.depth``: residual layers of a ResNet, pooling stages of a UNet; a diffusers UNet's
    down blocks after the first)."""
    from ablate.models import build_backbone

    backbone = build_backbone(model, channels)
    depth = model.depth
    if model.name == "diffusers_unet":
        depth = len(model.options.get("block_out_channels", ())) - 1
    return {"parameters": int(sum(p.numel() for p in backbone.parameters())), "depth": int(depth)}


def _feature(row: Mapping[str, Any], descriptor: str) -> float:
    return value_of(row, ROW_KEY[descriptor])


def free_prediction(rows: Sequence[Mapping[str, Any]], descriptor: str, metric: str) -> list[float]:
    """The descriptor as a ranking of ``metric`` (its fixed direction applied)."""
    sign = (N_DIRECTION if descriptor == "n" else DIRECTION)[metric]
    return [sign * _feature(r, descriptor) for r in rows]


def _design(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``[rows, descriptors]``: the log of each descriptor (all are positive counts or sizes)."""
    return np.log(np.array([[max(_feature(r, d), 1e-9) for d in DESCRIPTORS] for r in rows], float))


def regression(fit: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], metric: str,
               ridge: float = RIDGE) -> list[float]:
    """Ridge regression of the fit rows' measured ``metric`` on their standardised log-descriptors (features
    constant over the fit set are dropped), predicting ``rows``; NaN for every row without a fit row to learn
    from. The intercept is the fit set's mean and is not penalised."""
    y = np.array([value_of(r, metric) for r in fit], float)
    keep = ~np.isnan(y) & ~np.isnan(_design(fit)).any(1) if len(fit) else np.zeros(0, bool)
    if not keep.any():
        return [float("nan")] * len(rows)
    X, y = _design(fit)[keep], y[keep]
    mean, std = X.mean(0), X.std(0)
    used = std > 1e-12
    Z = (X[:, used] - mean[used]) / std[used]
    coef = np.linalg.solve(Z.T @ Z + ridge * np.eye(Z.shape[1]), Z.T @ (y - y.mean())) if used.any() else np.zeros(0)
    Q = _design(rows)
    out = y.mean() + ((Q[:, used] - mean[used]) / std[used]) @ coef
    if metric in UNIT:
        out = np.clip(out, 0.0, 1.0)
    return [float(v) for v in out]


def partial_spearman(predicted: Sequence[float], measured: Sequence[float], control: Sequence[float]) -> float:
    """Spearman's rho of ``predicted`` and ``measured`` given ``control``: the partial correlation of their ranks,
    ``(r_pm - r_pc r_mc) / sqrt((1 - r_pc^2)(1 - r_mc^2))``; NaN when a side is constant or ``control`` ranks
    either perfectly."""
    p, m, c = (np.asarray(v, float) for v in (predicted, measured, control))
    keep = ~(np.isnan(p) | np.isnan(m) | np.isnan(c))
    if keep.sum() < 4:
        return float("nan")
    return float(_partial(p[keep][None], m[keep][None], c[keep][None])[0])


def _partial(p: np.ndarray, m: np.ndarray, c: np.ndarray) -> np.ndarray:
    r_pm, r_pc, r_mc = row_spearman(p, m), row_spearman(p, c), row_spearman(m, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt((1 - r_pc ** 2) * (1 - r_mc ** 2))
        return np.where(den > 1e-12, (r_pm - r_pc * r_mc) / np.where(den > 1e-12, den, 1), np.nan)


def bootstrap_partial(predicted: Sequence[float], measured: Sequence[float], control: Sequence[float],
                      n_predicted: Sequence[float] | None = None, n_measured: Sequence[float] | None = None,
                      draws: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile interval of :func:`partial_spearman`, resampled as :func:`~ablate.design.compare.bootstrap_rho`
    resamples rho (architectures with replacement, rates redrawn binomially from their seed counts)."""
    p, m, c = (np.asarray(v, float) for v in (predicted, measured, control))
    keep = ~(np.isnan(p) | np.isnan(m) | np.isnan(c))
    if keep.sum() < 4:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, keep.sum(), size=(draws, int(keep.sum())))
    ps, ms, cs = p[keep][idx], m[keep][idx], c[keep][idx]
    for values, counts in ((ps, n_predicted), (ms, n_measured)):
        if counts is not None:
            values[...] = redraw(rng, values, np.asarray(counts, float)[keep][idx])
    rho = _partial(ps, ms, cs)
    rho = rho[~np.isnan(rho)]
    if len(rho) < draws / 2:
        return float("nan"), float("nan")
    return float(np.percentile(rho, 2.5)), float(np.percentile(rho, 97.5))


@dataclass(frozen=True)
class LevelError:
    """Mean absolute error of predicted against trained levels over ``n`` rows, with a bootstrap 95% interval
    (rows resampled; rates redrawn from their seed counts on both sides)."""

    metric: str
    mae: float
    low: float
    high: float
    n: int
    bias: float  # mean of trained - predicted


def level_error(predicted: Sequence[float], measured: Sequence[float], metric: str,
                n_predicted: Sequence[float] | None = None, n_measured: Sequence[float] | None = None,
                draws: int = BOOTSTRAP, seed: int = 0) -> LevelError:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    keep = ~(np.isnan(p) | np.isnan(m))
    if not keep.any():
        return LevelError(metric, float("nan"), float("nan"), float("nan"), 0, float("nan"))
    mae, bias = float(np.abs(p[keep] - m[keep]).mean()), float((m[keep] - p[keep]).mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, keep.sum(), size=(draws, int(keep.sum())))
    ps, ms = p[keep][idx], m[keep][idx]
    if metric in UNIT:
        for values, counts in ((ps, n_predicted), (ms, n_measured)):
            if counts is not None:
                values[...] = redraw(rng, values, np.asarray(counts, float)[keep][idx])
    errors = np.abs(ps - ms).mean(1)
    return LevelError(metric, mae, float(np.percentile(errors, 2.5)), float(np.percentile(errors, 97.5)),
                      int(keep.sum()), bias)


@dataclass(frozen=True)
class Baselines:
    """One dataset's held-out rows against what is free. ``free[metric][descriptor]``: each descriptor's rho;
    ``regression[metric]``: the descriptor regression's rho; ``best[metric]``: the free ranking with the
    highest rho (descriptor or regression); ``partial[metric]``: the oracle's partial rho given the receptive
    field, with its interval; ``levels[metric]``: the oracle's MAE, ``corrected``: after the fit set's bias,
    ``regression_levels``: the regression's."""

    free: dict[str, dict[str, Correlation]]
    regression: dict[str, Correlation]
    best: dict[str, tuple[str, Correlation]]
    partial: dict[str, tuple[float, float, float]]
    levels: dict[str, LevelError]
    corrected: dict[str, LevelError]
    regression_levels: dict[str, LevelError]


def baselines(fit: Sequence[Mapping[str, Any]], held: Sequence[Mapping[str, Any]]) -> Baselines:
    """Every free baseline on the held-out rows ``held`` (the regression and the bias correction learn from
    ``fit`` only)."""
    free, reg, best, partial, levels, corrected, reg_levels = {}, {}, {}, {}, {}, {}, {}
    rf = [_feature(r, "receptive_field") for r in held]
    for metric in METRICS:
        if not any(f"predicted_{metric}" in r for r in held):
            continue
        counts = seed_counts(held, metric)
        n_pred = [value_of(r, "prediction_seeds") for r in held] if counts is not None else None
        free[metric] = {d: correlation(held, free_prediction(held, d, metric), metric) for d in FREE}
        fitted = regression(fit, held, metric)
        reg[metric] = correlation(held, fitted, metric)
        candidates = [(d, c) for d, c in free[metric].items() if d != "n"] + [("regression", reg[metric])]
        ranked = [(d, c) for d, c in candidates if not math.isnan(c.rho)]
        best[metric] = max(ranked, key=lambda dc: dc[1].rho) if ranked else ("none", reg[metric])
        oracle = [value_of(r, f"predicted_{metric}") for r in held]
        measured = [value_of(r, metric) for r in held]
        partial[metric] = (partial_spearman(oracle, measured, rf), *bootstrap_partial(oracle, measured, rf, n_pred,
                                                                                      counts))
        levels[metric] = level_error(oracle, measured, metric, n_pred, counts)
        shift = [value_of(r, metric) - value_of(r, f"predicted_{metric}") for r in fit]
        shift = [s for s in shift if not math.isnan(s)]
        bias = sum(shift) / len(shift) if shift else 0.0
        moved = [min(max(o + bias, 0.0), 1.0) if metric in UNIT else o + bias for o in oracle]
        corrected[metric] = level_error(moved, measured, metric, n_pred, counts)
        reg_levels[metric] = level_error(fitted, measured, metric, None, counts)
    return Baselines(free, reg, best, partial, levels, corrected, reg_levels)


def axis_correlations(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("novelty", "memorisation_rate")
                      ) -> dict[str, dict[str, dict[str, Correlation]]]:
    """The data-size axis: for each architecture trained at 3 or more training-set sizes, per metric, the
    oracle's rho along ``n`` and the free ranking by ``n``'s (``{arch: {metric: {"oracle": .., "n": ..}}}``)."""
    by_arch: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_arch.setdefault(str(r["arch"]), []).append(r)
    out = {}
    for arch, members in by_arch.items():
        members = sorted(members, key=lambda r: value_of(r, "n"))
        if len({value_of(r, "n") for r in members}) < 3:
            continue
        out[arch] = {m: {"oracle": correlation(members, [value_of(r, f"predicted_{m}") for r in members], m, True),
                         "n": correlation(members, free_prediction(members, "n", m), m)}
                     for m in metrics if any(f"predicted_{m}" in r for r in members)}
    return out
