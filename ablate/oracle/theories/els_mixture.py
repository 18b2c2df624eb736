"""A local machine mixed with a global one (issue #32's attention term): ``x0_hat = (1 - w) * ELS_k(x) + w *
ELS_K(x)``, where ``ELS_k`` is the ELS machine at the config's patch schedule and ``ELS_K`` the same machine
(boundary, stride) at the largest patch it allows on the data (``OracleConfig.max_patch_size``: every pixel
sees the whole image). ``w = global_weight``: 0 is ELS, 1 the global machine. It stands for a network whose
convolutional path is local but which also mixes globally (self-attention, GroupNorm statistics): the
design rule fits ``w`` on the fit set's attention networks (:mod:`ablate.design.attention`) over :data:`WEIGHTS`.
Not in ``evaluate.py``'s default league (it is the design rule's machine, not a published theory): ask for it
with ``machines=[..., els_mixture]``."""
from __future__ import annotations

from dataclasses import dataclass

from ablate.config import check_float
from ablate.oracle.registry import register_theory

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class MixtureKnobs:
    """global_weight: w in [0, 1], the global machine's share of the denoised estimate."""

    global_weight: float = 0.5

    def __post_init__(self) -> None:
        check_float("global_weight", self.global_weight, low=0.0, high=1.0)


@register_theory("els_mixture", order=200, knobs=MixtureKnobs, patch=True, patch_knobs=True, cost="patches",
                 keys_inside=True, figure="mix", league=False,
                 summary="ELS mixed with ELS at the largest patch (a local machine plus a global one)")
def denoise(engine, x, a, b2, k, images, label):
    w = float(engine.config.knobs.global_weight)
    spatial = (engine.W,) if engine.spatial == 1 else (engine.H, engine.W)
    big = engine.extent(engine.config.max_patch_size(*spatial))
    local = engine.local(x, a, b2, k, images, label) if w < 1.0 else None
    whole = engine.local(x, a, b2, big, images, label) if w > 0.0 else None
    if whole is None:
        return local
    return whole if local is None else (1.0 - w) * local + w * whole
