"""Architecture -> oracle: the rule that predicts a network's machine before it is trained.

Theory (Kamb & Ganguli; ``docs/theory.md`` sections 4-6) says which machine a
convolutional denoiser becomes; this module turns an architecture into that machine:

* **padding -> boundary.** Zero padding tells the network where the border is: the
  boundary-aware ELS (``zeros``). Circular padding keeps exact equivariance: circular ELS.
* **down-sampling -> stride.** A UNet with ``D`` pooling stages commutes only with shifts by
  multiples of ``2**D`` (``BackboneConfig.stride``): the ELS with ``stride = 2**D``.
* **receptive field -> patch-size schedule.** A calibrated network uses a patch that grows
  with the noise level, from 3 pixels at low noise to a fraction of its receptive field at
  high noise (theory section 6, and every calibration in this project). The rule is the
  ``power`` family of :class:`~ablate.oracle.PatchSchedule`::

      k(alpha_bar) = nearest_odd(k_low + (k_top - k_low) * (1 - alpha_bar) ** shape)
      k_top        = min(nearest_odd(rf_fraction * receptive_field), largest k the machine allows)

  ``rf_fraction`` and ``shape`` are fitted on a declared fit set of calibrated models
  (:func:`fit_rule`), and then scaled by each architecture's receptive field. The
  project's defaults come from the quick preset's calibration (ResNet, 6 layers, receptive
  field 17; calibrated k = 11, 11, 11, 9, 9, 9, 9, 7, 7, 5, 5, 5, 5, 5, 3, 3, 3, 3, 3, 3 from
  high to low noise): ``rf_fraction = 0.65``, ``shape = 1.5`` (root-mean-square error 0.63 in k;
  ``python -m ablate.design fit-rule`` refits them to any calibrations).
* **attention -> its convolutional path** (``attention="local"``, the default). Self-attention
  gives every pixel the whole image in theory, but the paper found a *local* ELS machine still
  explains most of an attention UNet's output (median r about 0.77 against 0.94-0.96 without
  attention; theory section 7): what attention adds is not a larger patch. So the rule maps an
  attention UNet to the machine of its convolutional path alone (the residual attention layers
  taken as the identity: :attr:`~ablate.models.Geometry.local_receptive_field`), i.e. to its
  plain UNet's machine; the oracle cannot tell the two apart, which is the part of attention the
  theory does not cover. ``attention="global"`` (the rule's first version) takes the largest
  patch the machine allows instead. On both studies' data it over-predicted coherence (oracle 0.95
  and 1.00 against trained 0.72 and 0.59 on ``mnist5k`` and ``fingers``): at the quick budget
  the trained attention UNet stays close to local. ``attention="fitted"`` (what a fit set with an
  attention UNet produces, :func:`fit_rule`) replaces the argument with a measurement: attention
  networks get their own ``rf_fraction`` and ``shape``, fitted on the calibrated attention UNets of
  the fit set and applied to their convolutional path's receptive field.
* **attention -> a local machine mixed with a global one** (``attention_weight = w``, issue #32). The
  calibration sees an attention UNet as a local machine, but its samples are more coherent than that
  machine's (``mnist5k``: 0.71 against 0.52 in-sample). With ``w`` set, an attention network's machine is
  ``(1 - w) * ELS_k + w * ELS_K`` (theory ``els_mixture``: its local schedule as above, plus the same machine
  at the largest patch it allows); ``w`` is fitted on the fit set's attention networks' trained coherence and
  artefact rate (:func:`ablate.design.attention.fit_attention_weight`), never on a held-out row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ablate.config import build_config, check_float, check_int
from ablate.models import BackboneConfig, Geometry, describe
from ablate.oracle import OracleConfig, PatchSchedule, nearest_odd
from ablate.oracle.config import cosine_alpha_bar

ATTENTION_RULES = ("local", "global", "fitted")


@dataclass(frozen=True)
class MappingRule:
    """The constants of the rule above (fitted with :func:`fit_rule` on a declared fit set; a rule file,
    :mod:`ablate.design.rule_file`, keeps them with where they came from). ``attention="fitted"``: an attention
    UNet has constants of its own (``attention_rf_fraction``, ``attention_shape``, scaling its convolutional
    path's receptive field), fitted on the calibrated attention UNets of the fit set."""

    rf_fraction: float = 0.65
    shape: float = 1.5
    k_low: int = 3
    attention: str = "local"  # "local": its convolutional path; "global": the largest k; "fitted": its own constants
    attention_rf_fraction: float | None = None
    attention_shape: float | None = None
    attention_weight: float | None = None  # the global machine's share for attention networks (None: none)

    def __post_init__(self) -> None:
        check_float("rf_fraction", self.rf_fraction, low=0.0, high=4.0, low_open=True)
        check_float("shape", self.shape, low=0.0, high=20.0, low_open=True)
        check_int("k_low", self.k_low, low=1, odd=True)
        if self.attention not in ATTENTION_RULES:
            raise ValueError(f"attention_rule={self.attention!r}; allowed: {', '.join(ATTENTION_RULES)}")
        own = (self.attention_rf_fraction, self.attention_shape)
        if self.attention == "fitted":
            if None in own:
                raise ValueError("attention_rule='fitted' needs attention_rf_fraction and attention_shape (the "
                                 "constants fit_rule finds on the fit set's attention UNets)")
            check_float("attention_rf_fraction", self.attention_rf_fraction, low=0.0, high=4.0, low_open=True)
            check_float("attention_shape", self.attention_shape, low=0.0, high=20.0, low_open=True)
        elif own != (None, None):
            raise ValueError(f"attention_rf_fraction/attention_shape apply to attention_rule='fitted' only; got "
                             f"attention_rule={self.attention!r}")
        if self.attention_weight is not None:
            if self.attention == "global":
                raise ValueError("attention_weight mixes an attention network's local machine with the global one; "
                                 "attention_rule='global' is already global: use 'local' or 'fitted'")
            check_float("attention_weight", self.attention_weight, low=0.0, high=1.0)

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any]) -> "MappingRule":
        d = cls()
        own = {k: float(knobs[k]) for k in ("attention_rf_fraction", "attention_shape", "attention_weight")
               if knobs.get(k) is not None}
        return cls(rf_fraction=float(knobs.get("rf_fraction", d.rf_fraction)),
                   shape=float(knobs.get("shape", d.shape)), k_low=int(knobs.get("k_low", d.k_low)),
                   attention=str(knobs.get("attention_rule", d.attention)), **own)

    def knobs(self) -> dict[str, Any]:
        """The rule as the study's knobs (what :meth:`from_knobs` reads)."""
        out: dict[str, Any] = {"rf_fraction": self.rf_fraction, "shape": self.shape, "k_low": self.k_low,
                               "attention_rule": self.attention}
        if self.attention == "fitted":
            out |= {"attention_rf_fraction": self.attention_rf_fraction, "attention_shape": self.attention_shape}
        if self.attention_weight is not None:  # absent when unset: the committed studies' conditions stay the same
            out["attention_weight"] = self.attention_weight
        return out

    def receptive_field(self, geometry: Geometry) -> int | None:
        """The receptive field the rule scales (None: global, the largest patch the machine allows)."""
        return geometry.receptive_field if self.attention == "global" else geometry.local_receptive_field

    def constants(self, attention: bool) -> tuple[float, float]:
        """``(rf_fraction, shape)`` for a network with (``attention``, :func:`is_attention`) or without global
        mixing: an attention network's own under ``attention="fitted"``, else the convolutional ones."""
        if self.attention == "fitted" and attention:
            return float(self.attention_rf_fraction), float(self.attention_shape)  # type: ignore[arg-type]
        return self.rf_fraction, self.shape

    def k_top(self, receptive_field: int | None, allowed: int, rf_fraction: float | None = None) -> int:
        """The high-noise patch size for a receptive field (None: global) under the machine's limit."""
        if receptive_field is None:
            return allowed
        fraction = self.rf_fraction if rf_fraction is None else rf_fraction
        return max(self.k_low, min(allowed, nearest_odd(fraction * receptive_field)))


def is_attention(geometry: Geometry) -> bool:
    """A network whose full receptive field is global but whose convolutional path's is not: attention, or
    any other global mixing the geometry shows (a diffusers UNet's GroupNorm statistics). The rule's
    attention constants apply to all of them: a geometry cannot tell the two kinds of mixing apart."""
    return geometry.receptive_field is None and geometry.local_receptive_field is not None


@dataclass(frozen=True)
class Prediction:
    """What the rule says about one architecture: its geometry and the oracle that stands for it."""

    geometry: Geometry
    oracle: OracleConfig
    ks: tuple[int, ...]  # the patch size at each step of a ``steps``-step cosine DDIM, high noise first
    mapped_receptive_field: int | None  # what the rule scaled (None: global)

    def describe(self) -> dict[str, Any]:
        return {"receptive_field": self.geometry.receptive_field,
                "local_receptive_field": self.geometry.local_receptive_field,
                "mapped_receptive_field": self.mapped_receptive_field,
                "stride": self.geometry.stride, "boundary": self.oracle.boundary, "k_schedule": " ".join(map(str, self.ks))}


def step_alpha_bars(steps: int) -> list[float]:
    """alpha_bar at each step of the cosine DDIM grid ``t_i = i / T``, high noise first (theory section 6)."""
    return [cosine_alpha_bar(i / steps) for i in range(steps, 0, -1)]


def predict_oracle(model: BackboneConfig | Mapping[str, Any], image_shape: Sequence[int], rule: MappingRule,
                   steps: int = 20) -> Prediction:
    """The ELS machine the rule assigns to the architecture ``model`` (a :class:`~ablate.models.BackboneConfig`,
    or its keys as plain data: ``{"name": "unet", "depth": 2, "attention": True}``) on images ``[C, H, W]`` (or
    signals ``[C, L]``: the patch sizes are then lengths)."""
    if not isinstance(model, BackboneConfig):
        model = build_config(BackboneConfig, model, "model.")
    model.check_image_size(*image_shape[1:])
    return predict_from_geometry(describe(model), image_shape, rule, steps)


def predict_from_geometry(geometry: Geometry, image_shape: Sequence[int], rule: MappingRule,
                          steps: int = 20) -> Prediction:
    """The ELS machine the rule assigns to a network of ``geometry`` (analytic, or measured by
    :func:`ablate.models.probe_network` for any network) on images ``[C, H, W]`` (or signals ``[C, L]``)."""
    boundary = geometry.padding
    allowed = OracleConfig(machine="els", boundary=boundary).max_patch_size(*image_shape[1:])
    mapped = rule.receptive_field(geometry)
    fraction, shape = rule.constants(is_attention(geometry))
    top = rule.k_top(mapped, allowed, fraction)
    low = min(rule.k_low, top)
    schedule = PatchSchedule("power", k_min=low, k_max=top, shape=shape)
    mixed = {"machine": "els_mixture", "global_weight": rule.attention_weight} \
        if rule.attention_weight is not None and is_attention(geometry) else {"machine": "els"}
    oracle = OracleConfig(boundary=boundary, patch_size=schedule, stride=geometry.stride, **mixed)
    return Prediction(geometry, oracle, tuple(schedule.k_at(a) for a in step_alpha_bars(steps)), mapped)


def predict_token_oracle(model: BackboneConfig | Mapping[str, Any], length: int, vocab_size: int,
                         smoothing: float = 1.0) -> tuple[Geometry, OracleConfig]:
    """The discrete machine theory section 12 assigns a token denoiser before it is trained: ELS at its padding's
    boundary with the window its receptive field covers (odd, at most what the machine allows on ``length``
    tokens; a global network, full attention, gets the largest). No constant is fitted: the text studies'
    calibrations found this window at the first, mostly masked steps for every convolutional denoiser."""
    if not isinstance(model, BackboneConfig):
        model = build_config(BackboneConfig, model, "model.")
    if not model.tokens:
        raise ValueError(f"model {model.name!r} denoises images or signals; predict_oracle maps it")
    geometry = describe(model)
    allowed = OracleConfig(machine="els", boundary=model.padding).max_patch_size(length)
    k = allowed if geometry.receptive_field is None else min(geometry.receptive_field, allowed)
    k -= 1 - k % 2
    return geometry, OracleConfig(machine="els", boundary=model.padding, patch_size=k, vocab_size=vocab_size,
                                  smoothing=smoothing)


@dataclass(frozen=True)
class FitMember:
    """One calibrated network of a fit set: its calibrated ``ks`` at ``alpha_bars`` (high noise first), the
    receptive field the rule scales (its convolutional path's), whether it has attention, and the largest
    patch its machine allows on its images (the rule's schedule is capped there too)."""

    name: str
    ks: tuple[int, ...]
    alpha_bars: tuple[float, ...]
    receptive_field: int
    attention: bool = False
    allowed: int = 10**6

    def __post_init__(self) -> None:
        if len(self.ks) != len(self.alpha_bars) or not self.ks:
            raise ValueError(f"fit member {self.name!r}: one calibrated k per noise level is needed; got "
                             f"{len(self.ks)} ks and {len(self.alpha_bars)} levels")
        check_int(f"{self.name}: receptive_field", self.receptive_field, low=1)


FRACTIONS = np.round(np.arange(0.05, 4.0001, 0.01), 2)   # rf_fraction's grid
SHAPES = np.round(np.arange(0.1, 8.0001, 0.1), 1)        # shape's grid


def _odd(v: np.ndarray) -> np.ndarray:
    """:func:`~ablate.oracle.nearest_odd`, element-wise."""
    return np.maximum(1, 2 * np.floor((v - 1.0) / 2.0 + 0.5).astype(np.int64) + 1)


def _squared_errors(members: Sequence[FitMember], k_low: int) -> np.ndarray:
    """Summed squared error in k over ``members`` for every (rf_fraction, shape) of the grids ``[F, S]``."""
    total = np.zeros((len(FRACTIONS), len(SHAPES)))
    for m in members:
        top = np.minimum(m.allowed, np.maximum(k_low, _odd(FRACTIONS * m.receptive_field)))  # [F]
        low = np.minimum(k_low, top)
        frac = (1.0 - np.asarray(m.alpha_bars))[None, :] ** SHAPES[:, None]                 # [S, T]
        k = np.minimum(top[:, None, None], _odd(low[:, None, None] + (top - low)[:, None, None] * frac[None]))
        total += ((k - np.asarray(m.ks)[None, None, :]) ** 2).sum(-1)
    return total


def _best(members: Sequence[FitMember], k_low: int) -> tuple[float, float]:
    """The least-squares pair. Patch sizes are odd integers, so a whole interval of fractions fits equally
    well: take the tied fraction nearest the middle of the tied ones (the choice that moves least when a
    held-out receptive field rounds differently), then the smallest tied shape."""
    err = _squared_errors(members, k_low)
    tied = err <= err.min() + 1e-9
    fractions = np.flatnonzero(tied.any(1))
    i = fractions[np.argmin(np.abs(FRACTIONS[fractions] - np.median(FRACTIONS[fractions])))]
    return float(FRACTIONS[i]), float(SHAPES[np.flatnonzero(tied[i])[0]])


def fit_rule(members: Sequence[FitMember], k_low: int = 3) -> MappingRule:
    """The rule's constants fitted on a fit set: ``rf_fraction`` and ``shape`` minimise the summed squared
    error in k over the convolutional members (one pair for all of them, each scaled by its receptive
    field), on the grids :data:`FRACTIONS` x :data:`SHAPES`; with attention members, their own pair the
    same way (``attention="fitted"``). Without attention members the attention rule stays ``local``."""
    conv = [m for m in members if not m.attention]
    attn = [m for m in members if m.attention]
    if not conv:
        raise ValueError("the fit set has no network without attention; the rule's convolutional constants need "
                         "at least one (e.g. the quick-preset ResNet)")
    fraction, shape = _best(conv, k_low)
    if not attn:
        return MappingRule(fraction, shape, k_low)
    a_fraction, a_shape = _best(attn, k_low)
    return MappingRule(fraction, shape, k_low, "fitted", a_fraction, a_shape)


def member_error(member: FitMember, rule: MappingRule) -> float:
    """Root-mean-square error in k of the rule's schedule for one fit member."""
    fraction, shape = rule.constants(member.attention)
    top = rule.k_top(member.receptive_field, member.allowed, fraction)
    schedule = PatchSchedule("power", k_min=min(rule.k_low, top), k_max=top, shape=shape)
    return math.sqrt(sum((schedule.k_at(a) - k) ** 2 for k, a in zip(member.ks, member.alpha_bars)) / len(member.ks))
