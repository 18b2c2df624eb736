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

  ``rf_fraction`` and ``shape`` are fitted **once**, on one calibrated model
  (:func:`fit_mapping`), and then scaled by each architecture's receptive field. The
  project's defaults come from the quick preset's calibration (ResNet, 6 layers, receptive
  field 17; calibrated k = 11, 11, 11, 9, 9, 9, 9, 7, 7, 5, 5, 5, 5, 5, 3, 3, 3, 3, 3, 3 from
  high to low noise): ``rf_fraction = 0.65``, ``shape = 1.5`` (root-mean-square error 0.63 in k;
  ``python -m ablate.study fit-mapping`` refits them to any calibration).
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
  the trained attention UNet stays close to local.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ablate.config import check_float, check_int
from ablate.models import Geometry, backbone_config, describe
from ablate.oracle import OracleConfig, PatchSchedule, nearest_odd
from ablate.oracle.config import cosine_alpha_bar

ATTENTION_RULES = ("local", "global")


@dataclass(frozen=True)
class MappingRule:
    """The constants of the rule above (fitted once with :func:`fit_mapping`)."""

    rf_fraction: float = 0.65
    shape: float = 1.5
    k_low: int = 3
    attention: str = "local"  # "local": an attention UNet maps to its convolutional path; "global": the largest k

    def __post_init__(self) -> None:
        check_float("rf_fraction", self.rf_fraction, low=0.0, high=4.0, low_open=True)
        check_float("shape", self.shape, low=0.0, high=20.0, low_open=True)
        check_int("k_low", self.k_low, low=1, odd=True)
        if self.attention not in ATTENTION_RULES:
            raise ValueError(f"attention_rule={self.attention!r}; allowed: {', '.join(ATTENTION_RULES)}")

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any]) -> "MappingRule":
        d = cls()
        return cls(rf_fraction=float(knobs.get("rf_fraction", d.rf_fraction)),
                   shape=float(knobs.get("shape", d.shape)), k_low=int(knobs.get("k_low", d.k_low)),
                   attention=str(knobs.get("attention_rule", d.attention)))

    def receptive_field(self, geometry: Geometry) -> int | None:
        """The receptive field the rule scales (None: global, the largest patch the machine allows)."""
        return geometry.local_receptive_field if self.attention == "local" else geometry.receptive_field

    def k_top(self, receptive_field: int | None, allowed: int) -> int:
        """The high-noise patch size for a receptive field (None: global) under the machine's limit."""
        if receptive_field is None:
            return allowed
        return max(self.k_low, min(allowed, nearest_odd(self.rf_fraction * receptive_field)))


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


def predict_oracle(knobs: Mapping[str, Any], image_shape: Sequence[int], rule: MappingRule,
                   steps: int = 20) -> Prediction:
    """The ELS machine the rule assigns to the architecture ``knobs`` on images ``[C, H, W]`` (or signals
    ``[C, L]``: the patch sizes are then lengths)."""
    model = backbone_config(knobs)
    model.check_image_size(*image_shape[1:])
    return predict_from_geometry(describe(model), image_shape, rule, steps)


def predict_from_geometry(geometry: Geometry, image_shape: Sequence[int], rule: MappingRule,
                          steps: int = 20) -> Prediction:
    """The ELS machine the rule assigns to a network of ``geometry`` (analytic, or measured by
    :func:`ablate.models.probe_network` for any network) on images ``[C, H, W]`` (or signals ``[C, L]``)."""
    boundary = geometry.padding
    allowed = OracleConfig(machine="els", boundary=boundary).max_patch_size(*image_shape[1:])
    mapped = rule.receptive_field(geometry)
    top = rule.k_top(mapped, allowed)
    low = min(rule.k_low, top)
    schedule = PatchSchedule("power", k_min=low, k_max=top, shape=rule.shape)
    oracle = OracleConfig(machine="els", boundary=boundary, patch_size=schedule, stride=geometry.stride)
    return Prediction(geometry, oracle, tuple(schedule.k_at(a) for a in step_alpha_bars(steps)), mapped)


def fit_mapping(ks: Sequence[int], alpha_bars: Sequence[float], receptive_field: int, k_low: int = 3,
                allowed: int = 10**6) -> MappingRule:
    """Fit ``rf_fraction`` and ``shape`` to one calibration (``ks`` at ``alpha_bars``): the pair whose
    schedule has the least squared error in k, searched on a fine grid (ties: the smaller fraction)."""
    if len(ks) != len(alpha_bars) or not ks:
        raise ValueError(f"a calibration needs one k per noise level; got {len(ks)} ks and {len(alpha_bars)} levels")
    check_int("receptive_field", receptive_field, low=1)
    best: tuple[float, float, float] | None = None
    for top in range(max(k_low, 1), 2 * receptive_field + 2, 2):
        for shape in (round(0.1 * i, 1) for i in range(1, 81)):
            schedule = PatchSchedule("power", k_min=min(k_low, top), k_max=min(top, allowed), shape=shape)
            err = sum((schedule.k_at(a) - k) ** 2 for k, a in zip(ks, alpha_bars))
            if best is None or err < best[0] - 1e-12:
                best = (err, min(top / receptive_field, 4.0), shape)
    assert best is not None
    return MappingRule(best[1], best[2], k_low)


def schedule_error(ks: Sequence[int], alpha_bars: Sequence[float], rule: MappingRule, receptive_field: int) -> float:
    """Root-mean-square error in k of the rule's schedule against a calibration."""
    top = rule.k_top(receptive_field, 10**6)
    schedule = PatchSchedule("power", k_min=min(rule.k_low, top), k_max=top, shape=rule.shape)
    return math.sqrt(sum((schedule.k_at(a) - k) ** 2 for k, a in zip(ks, alpha_bars)) / len(ks))
