"""The data statistics the rival theories of theory section 9 are built on, in float64: mean, covariance
(its eigendecomposition) and the cross power spectrum of a training set (:class:`Statistics`), and what the
PCA-locality theories cut from them: the binarised Wiener-gain mask (:func:`pca_mask`) and the equivariant
gain's patch shape (:func:`pca_shape`). Covariance and spectrum are divided by ``N - 1``."""
from __future__ import annotations

from dataclasses import dataclass

import torch

DIAGONAL_FLOOR = 1e-6  # a gain diagonal below this (a pixel constant over the training set) is taken as 1


@dataclass
class Statistics:
    """Float64 statistics of a training set ``[N, C, H, W]``: mean ``[D]``, covariance eigenvalues ``[D]``
    (clamped at 0) and eigenvectors ``[D, D]`` (``Sigma = U diag(lambda) U^T``, divided by ``N - 1``; None
    for the machines that need only the spectrum), the per-channel mean ``[C]`` and the cross power spectrum
    ``S [H, W, C, C]`` (complex)."""

    mean: torch.Tensor
    eigenvalues: torch.Tensor | None
    eigenvectors: torch.Tensor | None
    channel_mean: torch.Tensor
    spectrum: torch.Tensor

    @classmethod
    def of(cls, images: torch.Tensor, spectral_only: bool = False) -> "Statistics":
        N, C, H, W = images.shape
        if N < 2:
            raise ValueError(f"a covariance needs at least 2 training images; got {N}")
        z = images.double().reshape(N, -1)
        mean = z.mean(0)
        lam = U = None
        if not spectral_only:
            centred = z - mean
            lam, U = torch.linalg.eigh(centred.T @ centred / (N - 1))
            lam = lam.clamp(min=0.0)
        m = images.double().mean(dim=(0, 2, 3))
        Y = torch.fft.fft2(images.double() - m[None, :, None, None])  # [N, C, H, W]
        S = torch.einsum("nchw,ndhw->hwcd", Y, Y.conj()) / ((N - 1) * H * W)
        return cls(mean, lam, U, m, S)


def statistics(engine, images: torch.Tensor, label: int, spectral_only: bool = False) -> Statistics:
    """The statistics of ``images`` (one class: ``label``), kept by the engine; the spectral machines' lack the
    eigendecomposition, so the cache keeps the two kinds apart."""
    return engine.cached(("statistics", label, spectral_only), lambda: Statistics.of(images, spectral_only))


def pca_mask(st: Statistics, a: float, b2: float, tau: float) -> torch.Tensor:
    """``M [D, D]`` in float64: ``M[m, p] = 1`` where ``|G[m, p] / G[m, m]| >= tau * max``, the Wiener gain
    ``G = U diag(a^2 lambda / (a^2 lambda + b2)) U^T`` (a diagonal entry below 1e-6 taken as 1)."""
    lam, U = st.eigenvalues, st.eigenvectors
    G = (U * (a * a * lam / (a * a * lam + b2))) @ U.T
    d = G.diagonal().clone()
    d[d < DIAGONAL_FLOOR] = 1.0
    R = (G / d[:, None]).abs()
    return (R >= tau * R.max()).double()


def gain_kernel(st: Statistics, a: float, b2: float) -> torch.Tensor:
    """The equivariant Wiener gain as a circular convolution kernel, float64 ``g [H, W, C, C]``:
    ``g = F^-1[a^2 S (a^2 S + b2 I)^-1]``; ``g[i, j, c, c']`` carries input channel ``c'`` at offset ``(i, j)``
    (mod ``H, W``) to output channel ``c``. Even in the offset (``S(-f) = S(f)^H``)."""
    S = st.spectrum
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    G = a * a * S @ torch.linalg.inv(a * a * S + b2 * eye)
    return torch.fft.ifft2(G, dim=(0, 1)).real


def pca_shape(st: Statistics, a: float, b2: float, tau: float) -> tuple[tuple[int, int], ...]:
    """Equivariant PCA locality's patch shape ``Omega`` (theory section 9): the offsets ``(di, dj)`` where
    ``|g_{cc'}(di, dj) / g_{cc}(0)| >= tau * max`` for some channel pair (a centre value below 1e-6 taken
    as 1), float64; offsets are taken in the centred window ``|di| <= (H - 1) // 2``, ``|dj| <= (W - 1) // 2``
    (on even sizes the Nyquist offset ``H / 2``, its own mirror image, is left out), so the bounding rectangle
    fits the image. Always holds the centre."""
    g = gain_kernel(st, a, b2)
    H, W, C, _ = g.shape
    centre = g[0, 0].diagonal().clone()
    centre[centre < DIAGONAL_FLOOR] = 1.0
    R = (g / centre[None, None, :, None]).abs()
    keep = (R >= tau * R.max()).flatten(2).any(-1)  # [H, W]
    keep[0, 0] = True
    rows = [i if i <= (H - 1) // 2 else i - H for i in range(H)]
    cols = [j if j <= (W - 1) // 2 else j - W for j in range(W)]
    return tuple(sorted((rows[i], cols[j]) for i, j in torch.nonzero(keep).tolist()
                        if abs(rows[i]) <= (H - 1) // 2 and abs(cols[j]) <= (W - 1) // 2))
