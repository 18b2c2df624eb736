"""Equivariant PCA locality (theory section 9): the ELS machine (boundary and partial-equivariance knobs as
configured) with a patch *shape* ``Omega`` cut from the equivariant Wiener gain's kernel
``g = F^-1[a^2 S (a^2 S + b2 I)^-1]`` at ``mask_threshold * max`` (:func:`ablate.oracle.statistics.pca_shape`),
one shape per noise level."""
from __future__ import annotations

from dataclasses import dataclass

from ablate.config import check_float
from ablate.oracle.patches import shape_columns
from ablate.oracle.registry import register_theory
from ablate.oracle.statistics import pca_shape, statistics
from ablate.oracle.theories.pca_locality import MASK_THRESHOLDS


@dataclass(frozen=True)
class EquivariantPCALocalityKnobs:
    """mask_threshold: tau, the fraction of the largest normalised gain that an offset must reach to belong to
    the patch."""

    mask_threshold: float = 0.02

    def __post_init__(self) -> None:
        check_float("mask_threshold", self.mask_threshold, low=0.0, high=1.0, low_open=True)


@register_theory("equivariant_pca_locality", order=80, knobs=EquivariantPCALocalityKnobs, patch_knobs=True,
                 calibrate="mask_threshold", candidates=MASK_THRESHOLDS, min_images=2,
                 summary="equivariant PCA locality: ELS with a patch shape cut from the Wiener gain")
def denoise(engine, x, a, b2, k, images, label):
    tau = float(engine.config.knobs.mask_threshold)
    st = statistics(engine, images, label, spectral_only=True)
    out = x.new_empty(x.shape)
    shape = lambda av, bv: shape_columns(pca_shape(st, av, bv, tau), x.shape[1])  # noqa: E731
    for sel, _, _, (extent, cols) in engine.by_level(a, b2, ("pca_shape", label, tau), shape):
        out[sel] = engine.local(x[sel], a[sel], b2[sel], extent, images, label, cols.to(x.device))
    return out
