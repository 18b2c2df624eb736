"""The Wiener filter (theory section 9): the posterior mean under a Gaussian with the data's mean and
covariance, ``mu + U diag(a lambda / (a^2 lambda + b2)) U^T (x - a mu)``."""
from __future__ import annotations

from ablate.oracle.registry import register_theory
from ablate.oracle.statistics import statistics


@register_theory("wiener", order=50, min_images=2, summary="Wiener: the Gaussian posterior mean")
def denoise(engine, x, a, b2, k, images, label):
    st = statistics(engine, images, label)
    B = len(x)
    a, b2 = a.double()[:, None], b2.double()[:, None]
    y = (x.double().reshape(B, -1) - a * st.mean) @ st.eigenvectors
    gain = a * st.eigenvalues / (a * a * st.eigenvalues + b2)
    return (st.mean + (y * gain) @ st.eigenvectors.T).reshape(x.shape).to(x.dtype)

