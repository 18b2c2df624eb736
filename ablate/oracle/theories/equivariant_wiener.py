"""The equivariant Wiener filter (theory section 9): the Wiener filter of the shift-averaged covariance,
diagonal in Fourier space: ``m + F^-1[a S (a^2 S + b2 I)^-1 F(x - a m)]`` with the cross power spectrum ``S``."""
from __future__ import annotations

import torch

from ablate.oracle.registry import register_theory
from ablate.oracle.statistics import statistics


@register_theory("equivariant_wiener", order=60, min_images=2,
                 summary="equivariant Wiener: the shift-averaged Gaussian posterior mean")
def denoise(engine, x, a, b2, k, images, label):
    st = statistics(engine, images, label, spectral_only=True)
    B, C, H, W = x.shape
    a, b2 = a.double(), b2.double()
    m = st.channel_mean[None, :, None, None]
    X = torch.fft.fft2(x.double() - a[:, None, None, None] * m).permute(0, 2, 3, 1)[..., None]  # [B, H, W, C, 1]
    S = st.spectrum[None]  # [1, H, W, C, C]
    eye = torch.eye(C, dtype=S.dtype, device=S.device)
    A = (a * a)[:, None, None, None, None] * S + b2[:, None, None, None, None] * eye
    out = a[:, None, None, None, None] * (S @ torch.linalg.solve(A, X))  # [B, H, W, C, 1]
    y = torch.fft.ifft2(out[..., 0].permute(0, 3, 1, 2)).real
    return (m + y).to(x.dtype)
