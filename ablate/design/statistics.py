"""The statistics of the design study: Spearman's rho with a bootstrap interval over architectures and seeds
(:func:`bootstrap_rho`) and the seed-noise ceiling of a rate's rho (:func:`ceiling_rho`), shared by the
oracle's comparison (:mod:`ablate.design.compare`) and the free baselines (:mod:`ablate.design.baselines`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

BAR = 0.8  # the bar on fingers: rho >= 0.8 for artefact rate and for coherence
# metrics that are fractions or means of per-sample values in [0, 1]: their seeds are resampled binomially
UNIT = ("coherence", "artefact_rate", "conditional_artefact_rate", "memorisation_rate", "accuracy")
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Correlation:
    metric: str
    rho: float  # NaN when either side is constant across the grid (no ranking to compare)
    p_value: float
    n: int
    low: float = float("nan")   # bootstrap 95% interval (architectures and seeds resampled)
    high: float = float("nan")
    ceiling: float = float("nan")  # median rho of a perfect predictor at these seed counts (rates only)
    ceiling_at_bar: float = float("nan")  # the fraction of its draws with rho >= BAR

    @property
    def meets_bar(self) -> bool:
        return not math.isnan(self.rho) and self.rho >= BAR


def spearman(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho (ties get average ranks) and its two-sided p-value; NaN for fewer than 3 pairs or
    a constant side."""
    from scipy.stats import spearmanr

    pairs = [(p, m) for p, m in zip(predicted, measured) if not (math.isnan(p) or math.isnan(m))]
    if len(pairs) < 3 or len({p for p, _ in pairs}) < 2 or len({m for _, m in pairs}) < 2:
        return float("nan"), float("nan")
    result = spearmanr([p for p, _ in pairs], [m for _, m in pairs])
    return float(result.statistic), float(result.pvalue)


def row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of ``x, y [B, n]`` (average ranks; NaN for a constant row)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / np.where(den > 0, den, 1), np.nan)


def redraw(rng: np.random.Generator, rates: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Each rate redrawn as ``Binomial(n, rate) / n`` (resampling its ``n`` seeds); kept where ``n`` is not a
    positive count."""
    ok = np.isfinite(n) & (n > 0)
    drawn = rng.binomial(np.where(ok, n, 1).astype(np.int64), np.clip(rates, 0.0, 1.0)) / np.where(ok, n, 1)
    return np.where(ok, drawn, rates)


def bootstrap_rho(predicted: Sequence[float], measured: Sequence[float], n_predicted: Sequence[float] | None = None,
                  n_measured: Sequence[float] | None = None, draws: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile interval for Spearman's rho: architectures drawn with replacement, and, where the
    sample counts ``n_*`` are given (a rate or a mean of per-sample values in [0, 1] over that many seeds),
    each figure redrawn as ``Binomial(n, value) / n``, which is resampling its seeds (for a mean of values
    in [0, 1] it is the widest such spread). Draws with a constant side are left out; NaN when fewer than
    half the draws have a rho, or for fewer than 3 architectures."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    keep = ~(np.isnan(p) | np.isnan(m))
    if keep.sum() < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, keep.sum(), size=(draws, int(keep.sum())))
    ps, ms = p[keep][idx], m[keep][idx]
    for values, counts in ((ps, n_predicted), (ms, n_measured)):
        if counts is not None:
            values[...] = redraw(rng, values, np.asarray(counts, float)[keep][idx])
    rho = row_spearman(ps, ms)
    rho = rho[~np.isnan(rho)]
    if len(rho) < draws / 2:
        return float("nan"), float("nan")
    return float(np.percentile(rho, 2.5)), float(np.percentile(rho, 97.5))


def ceiling_rho(measured: Sequence[float], n_predicted: Sequence[float], n_measured: Sequence[float],
                draws: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """What seed noise alone leaves of a rate's ranking: a *perfect* predictor (its rates are the measured
    ones) is drawn as ``Binomial(n_predicted, rate) / n_predicted`` against the measurement redrawn as
    ``Binomial(n_measured, rate) / n_measured``; returns the median of Spearman's rho over the draws and the
    fraction of draws with rho >= ``BAR``. Near-tied rates (a spread of a few standard errors) give a ceiling
    under 1: no predictor at these seed counts can be expected to rank them. NaN for fewer than 3 rates;
    draws with a constant side count as rho 0."""
    m = np.asarray(measured, float)
    npred, nmeas = np.asarray(n_predicted, float), np.asarray(n_measured, float)
    keep = ~np.isnan(m) & np.isfinite(npred) & (npred > 0) & np.isfinite(nmeas) & (nmeas > 0)
    if keep.sum() < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    rate = np.broadcast_to(m[keep], (draws, int(keep.sum())))
    rho = np.nan_to_num(row_spearman(redraw(rng, rate, npred[keep]), redraw(rng, rate, nmeas[keep])), nan=0.0)
    return float(np.median(rho)), float((rho >= BAR).mean())


def value_of(row: dict[str, Any], key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def seed_counts(rows: Sequence[Mapping[str, Any]], metric: str) -> list[float] | None:
    """How many samples each row's measured ``metric`` is a rate over (None for a metric that is not one)."""
    if metric not in UNIT:
        return None
    return [value_of(r, "measure_seeds") if "measure_seeds" in r else value_of(r, "prediction_seeds") for r in rows]


def correlation(rows: Sequence[Mapping[str, Any]], predicted: Sequence[float], metric: str,
                noisy_prediction: bool = False,
                counts: tuple[Sequence[float], Sequence[float]] | None = None) -> Correlation:
    """Spearman rho of ``predicted`` against the rows' measured ``metric`` with the bootstrap interval and the
    seed-noise ceiling: a noiseless predictor (a descriptor) unless ``noisy_prediction`` (the oracle's rates are
    over ``prediction_seeds``). ``counts``: (predicted, measured) sample counts where a rate is over other
    samples than the seeds (the wrong-count rate among hands) or where the metric is a rate ``UNIT`` does not
    list (the text metrics); ``(None, measured)``: an exact prediction."""
    measured = [value_of(r, metric) for r in rows]
    rho, p = spearman(predicted, measured)
    if counts is not None:  # a prediction without a count (a descriptor) is exact: not redrawn
        n_pred, n_meas = (None if counts[0] is None else list(counts[0])), list(counts[1])
    else:
        n_meas = seed_counts(rows, metric)
        n_pred = [value_of(r, "prediction_seeds") for r in rows] if noisy_prediction and n_meas is not None else None
    low, high = bootstrap_rho(predicted, measured, n_pred, n_meas)
    paired = [i for i, (a, b) in enumerate(zip(predicted, measured)) if not (math.isnan(a) or math.isnan(b))]
    ceiling = (float("nan"), float("nan"))
    if n_meas is not None:
        ceiling = ceiling_rho([measured[i] for i in paired], [n_pred[i] for i in paired] if n_pred else
                              [1e12] * len(paired), [n_meas[i] for i in paired])
    return Correlation(metric, rho, p, len(paired), low, high, *ceiling)
