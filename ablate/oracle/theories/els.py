"""ELS, the equivariant local score machine (theory sections 4-5): each pixel's value from a softmax over
the patches at every position of every training image, with the config's boundary and, for partial
equivariance, ``stride``, ``shift_radius`` and ``position_bandwidth``."""
from __future__ import annotations

from ablate.oracle.registry import register_theory


@register_theory("els", tokens="every_position",
                 order=30, patch=True, patch_knobs=True, calibrate="patch_size", cost="patches",
                 keys_inside=True, summary="ELS: patches at every position (locality and equivariance)")
def denoise(engine, x, a, b2, k, images, label):
    return engine.local(x, a, b2, k, images, label)
