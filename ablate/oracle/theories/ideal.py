"""IS, the ideal score machine (theory section 3): the posterior mean over whole training images. It
memorises: at small noise it returns the nearest training image."""
from __future__ import annotations

from ablate.oracle.registry import register_theory


@register_theory("ideal", tokens="whole", order=10, figure="is", cost="whole_image",
                 summary="IS: softmax over whole training images (memorises)")
def denoise(engine, x, a, b2, k, images, label):
    return engine.ideal(x, a, b2, images)
