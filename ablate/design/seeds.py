"""Per seed: does the oracle, before training, say *which* seeds the trained network will spoil, and where?

The oracle and the network share their noise (the same seeds), so each seed has a predicted and a trained
sample. From the samples the design study saves for every held-out architecture (``[S, C, H, W]`` each, the
oracle's seeds):

* :func:`flag_agreement`: Cohen's kappa between the seeds the oracle flags as artefacts and the seeds the
  trained network's are flagged, with a bootstrap interval over seeds, against the kappa of **permuted seeds**
  (the oracle's flags against another seed's: same rates, no shared noise), pooled over architectures with
  the permutation inside each architecture so that rate differences between architectures give no credit;
* :func:`pooled_locations`: of the seeds where the network made an artefact, how often the oracle's touches
  it (hit rate) and the map IoU, pooled over seeds and architectures, with intervals and the same
  permuted-seed chance;
* :func:`mapping_gain`: the per-seed r^2 of this architecture's predicted samples with its trained ones,
  against the r^2 of the machines mapped for the *other* architectures of the grid with the same trained
  samples: how much the mapping adds over any machine of the grid.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ablate.metrics import location_scores, pairwise_agreement

BOOTSTRAP = 2000


def kappa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's kappa of boolean ``a, b [..., S]`` along the last axis (NaN where chance agreement is 1: both
    sides constant and equal)."""
    a, b = a.astype(float), b.astype(float)
    observed = (a == b).mean(-1)
    pa, pb = a.mean(-1), b.mean(-1)
    expected = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected < 1 - 1e-12, (observed - expected) / np.where(expected < 1 - 1e-12, 1 - expected, 1),
                        np.nan)


@dataclass(frozen=True)
class FlagAgreement:
    """Cohen's kappa of predicted against trained artefact flags over ``seeds`` seeds (``[low, high]``: bootstrap
    95% over seeds, within architecture), and the same kappa over permuted seeds: its mean and 97.5th percentile
    (``chance``, ``chance_high``). ``predicted_rate``, ``trained_rate``: the flagged fractions."""

    kappa: float
    low: float
    high: float
    chance: float
    chance_high: float
    seeds: int
    predicted_rate: float
    trained_rate: float
    p_value: float = float("nan")  # the fraction of permutations with a kappa at least the observed one

    @property
    def above_chance(self) -> bool:
        """The observed kappa beats 97.5% of the permuted seeds' (one-sided, 2.5%)."""
        return not math.isnan(self.kappa) and not math.isnan(self.chance_high) and self.kappa > self.chance_high


def flag_agreement(pairs: Sequence[tuple[np.ndarray, np.ndarray]], draws: int = BOOTSTRAP, seed: int = 0
                   ) -> FlagAgreement:
    """Kappa over every pair ``(predicted flags [S], trained flags [S])`` of one or more architectures, pooled;
    seeds are resampled and permuted within each pair."""
    pairs = [(np.asarray(p, bool), np.asarray(t, bool)) for p, t in pairs if len(p)]
    if not pairs:
        return FlagAgreement(*[float("nan")] * 5, 0, float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    p_all, t_all = np.concatenate([p for p, _ in pairs]), np.concatenate([t for _, t in pairs])
    k = float(kappa(p_all, t_all))
    boot_p, boot_t, perm_t = [], [], []
    for p, t in pairs:
        idx = rng.integers(0, len(p), size=(draws, len(p)))
        boot_p.append(p[idx])
        boot_t.append(t[idx])
        perm_t.append(np.stack([t[rng.permutation(len(t))] for _ in range(draws)]))
    boots = kappa(np.concatenate(boot_p, 1), np.concatenate(boot_t, 1))
    chance = kappa(np.broadcast_to(p_all, (draws, len(p_all))), np.concatenate(perm_t, 1))
    boots, chance = boots[~np.isnan(boots)], chance[~np.isnan(chance)]
    low, high = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if len(boots) else (math.nan,) * 2
    ch, ch_hi = (float(chance.mean()), float(np.percentile(chance, 97.5))) if len(chance) else (math.nan,) * 2
    p_value = float((chance >= k - 1e-12).mean()) if len(chance) and not math.isnan(k) else math.nan
    return FlagAgreement(k, low, high, ch, ch_hi, len(p_all), float(p_all.mean()), float(t_all.mean()), p_value)


@dataclass(frozen=True)
class PooledLocations:
    """Hit rate (of the seeds where the network made an artefact, the fraction the oracle's touches) and map
    IoU (over the seeds where either made one), pooled, each with a bootstrap 95% interval over seeds, and
    their permuted-seed chance (every mismatched pair of seeds within an architecture)."""

    hit_rate: float
    hit_low: float
    hit_high: float
    hit_chance: float
    iou: float
    iou_low: float
    iou_high: float
    iou_chance: float
    seeds: int  # seeds where the network made an artefact
    pairs: int  # seeds where either did


def pooled_locations(maps: Sequence[tuple[torch.Tensor, torch.Tensor]], tolerance: int = 1,
                     draws: int = BOOTSTRAP, seed: int = 0) -> PooledLocations:
    """``maps``: per architecture, the (predicted, trained) artefact maps ``[S, H, W]`` of the same seeds."""
    touch, ref_any, iou, either, c_touch, c_ref, c_iou, c_either = ([] for _ in range(8))
    for predicted, trained in maps:
        r, t, e, i = location_scores(predicted, trained, tolerance)
        ref_any.append(r.numpy())
        touch.append(t.numpy())
        either.append(e.numpy())
        iou.append(i.numpy())
        for s in range(1, len(predicted)):
            r, t, e, i = location_scores(predicted.roll(s, 0), trained, tolerance)
            c_ref.append(r.numpy())
            c_touch.append(t.numpy())
            c_either.append(e.numpy())
            c_iou.append(i.numpy())
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
    ref_any, touch, either, iou = cat(ref_any), cat(touch), cat(either), cat(iou)
    c_ref, c_touch, c_either, c_iou = cat(c_ref), cat(c_touch), cat(c_either), cat(c_iou)
    rng = np.random.default_rng(seed)

    def rate(values: np.ndarray) -> tuple[float, float, float]:
        if not len(values):
            return (math.nan,) * 3
        draws_ = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(1)
        return float(values.mean()), float(np.percentile(draws_, 2.5)), float(np.percentile(draws_, 97.5))

    hits = touch[ref_any].astype(float) if len(ref_any) else np.zeros(0)
    overlaps = iou[either] if len(either) else np.zeros(0)
    hit = rate(hits)
    ov = rate(overlaps)
    chance_hit = float(c_touch[c_ref].mean()) if c_ref.any() else math.nan
    chance_iou = float(c_iou[c_either].mean()) if c_either.any() else math.nan
    return PooledLocations(*hit, chance_hit, *ov, chance_iou, int(ref_any.sum()), int(either.sum()))


@dataclass(frozen=True)
class MappingGain:
    """For one architecture: the median per-seed r^2 of its own predicted samples with its trained ones
    (``own``), the median over the grid's other architectures of the same figure with their machines
    (``others``), and how many of those machines it beats (``beats`` of ``of``)."""

    own: float
    others: float
    beats: int
    of: int


def mapping_gain(samples: dict[str, dict[str, torch.Tensor]]) -> dict[str, MappingGain]:
    """``samples``: ``{arch: {"predicted": [S, ...], "trained": [S, ...]}}`` from the same seeds (one group:
    the same data and ``n``)."""
    out = {}
    names = list(samples)
    for a in names:
        trained = samples[a]["trained"]
        own = float(pairwise_agreement(samples[a]["predicted"], trained)["r2"].median())
        others = [float(pairwise_agreement(samples[b]["predicted"], trained)["r2"].median())
                  for b in names if b != a and samples[b]["predicted"].shape == trained.shape]
        out[a] = MappingGain(own, float(np.median(others)) if others else math.nan,
                             sum(own > o for o in others), len(others))
    return out


def per_seed_figures(rows: Sequence[dict], detector, root) -> dict:
    """The per-seed figures of the held-out rows that saved samples (``samples_path``, relative to ``root``):
    ``flags`` (pooled :class:`FlagAgreement` and one per row, by its ``label``), ``locations``
    (:class:`PooledLocations`, on datasets whose detector draws maps of extra parts) and ``mapping``
    (:class:`MappingGain` per row, within each training-set size). Plain data (JSON)."""
    held = [r for r in rows if r.get("role", "held_out") != "fit" and r.get("samples_path")]
    loaded = {}
    for r in held:
        s = torch.load(Path(root) / r["samples_path"], weights_only=True)
        loaded[r["label"]] = {"predicted": s["predicted"].float(), "trained": s["trained"].float(), "n": r.get("n")}
    flags = {label: (detector.flags(s["predicted"]).numpy(), detector.flags(s["trained"]).numpy())
             for label, s in loaded.items()}
    maps = [(detector.maps(s["predicted"]), detector.maps(s["trained"])) for s in loaded.values()]
    groups: dict = {}
    for label, s in loaded.items():
        groups.setdefault(s["n"], {})[label] = s
    mapping = {}
    for members in groups.values():
        mapping.update(mapping_gain(members))
    return {"rows": sorted(r["samples_path"] for r in held),
            "flags": {"pooled": asdict(flag_agreement(list(flags.values()))),
                      "by_arch": {label: asdict(flag_agreement([pair])) for label, pair in flags.items()}},
            "locations": asdict(pooled_locations(maps)) if maps else None,
            "mapping": {label: asdict(g) for label, g in mapping.items()}}
