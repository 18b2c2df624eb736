"""LS, the local score machine (theory section 4): each pixel's value from a softmax over the patches of the
training images at the same position only (locality without equivariance)."""
from __future__ import annotations

from ablate.oracle.registry import register_theory


@register_theory("ls", tokens="position",
                 order=20, patch=True, calibrate="patch_size", cost="patches",
                 own_position=True, summary="LS: patches at the pixel's own position")
def denoise(engine, x, a, b2, k, images, label):
    return engine.local(x, a, b2, k, images, label, local_only=True)
