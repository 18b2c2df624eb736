"""ES, the equivariant score machine (theory section 3): IS over every circular shift of every training
image (equivariance without locality), via FFT."""
from __future__ import annotations

from ablate.oracle.registry import register_theory


@register_theory("es", order=40, cost="every_shift", summary="ES: whole images at every circular shift")
def denoise(engine, x, a, b2, k, images, label):
    return engine.equivariant(x, a, b2, images)
