"""PCA locality (Lukoianov et al.; theory section 9): the Wiener gain's rows normalised by their diagonal
and binarised at ``mask_threshold * max`` (float64) give each output entry ``p`` the pixels it sees; then, per
``p``, a softmax over **all** N images (streamed, exact) of ``-sum_m M[m, p] (x[m] - a z_j[m])^2 / (2 b2 T)``
averages ``z_j[p]``."""
from __future__ import annotations

from dataclasses import dataclass

from ablate.config import check_float
from ablate.oracle.registry import register_theory
from ablate.oracle.softmax import StreamingSoftmax
from ablate.oracle.statistics import pca_mask, statistics

# the calibration's candidates for the mask threshold tau (shared by equivariant PCA locality)
MASK_THRESHOLDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


@dataclass(frozen=True)
class PCALocalityKnobs:
    """mask_threshold: tau, the fraction of the largest normalised gain that a pixel must reach to be seen.
    temperature: T, dividing the logits."""

    mask_threshold: float = 0.02
    temperature: float = 1.0

    def __post_init__(self) -> None:
        check_float("mask_threshold", self.mask_threshold, low=0.0, high=1.0, low_open=True)
        check_float("temperature", self.temperature, low=0.0, low_open=True)


@register_theory("pca_locality", order=70, knobs=PCALocalityKnobs, calibrate="mask_threshold",
                 candidates=MASK_THRESHOLDS, min_images=2,
                 summary="PCA locality: per-pixel masks from the Wiener gain, softmax over whole images")
def denoise(engine, x, a, b2, k, images, label):
    knobs = engine.config.knobs
    tau, T = float(knobs.mask_threshold), float(knobs.temperature)
    st = statistics(engine, images, label)
    D = x[0].numel()
    out = x.new_empty(x.shape)
    mask_of = lambda av, bv: pca_mask(st, av, bv, tau).to(x.device, x.dtype)  # noqa: E731
    for sel, av, bv, mask in engine.by_level(a, b2, ("pca_mask", label, tau), mask_of):
        q = x[sel].reshape(len(sel), D)
        state = StreamingSoftmax((D, len(sel)), 1, x.dtype, x.device)
        rows = max(1, engine.chunk_bytes // (max(len(sel), 1) * D * x.element_size()))
        for s in range(0, len(images), rows):
            z = images[s:s + rows].reshape(-1, D)
            d2 = (q[:, None, :] - av * z[None, :, :]) ** 2  # [b, n, D]
            logits = -(d2 @ mask) / (2 * bv * T)  # [b, n, D]: entry p sums over the m with M[m, p] = 1
            state.add(logits.permute(2, 0, 1).contiguous(), z.T[:, :, None].contiguous())
        out[sel] = state.result()[..., 0].T.reshape(len(sel), *x.shape[1:])
    return out
