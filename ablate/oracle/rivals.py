"""The rival theories of theory section 9, behind the same ``denoise(x_t, alpha_bar)`` as the ELS family.

Each returns ``x0_hat`` for queries ``x [B, C, H, W]`` (the oracle's dtype) at ``a = sqrt(alpha_bar)``,
``b2 = 1 - alpha_bar`` (``[B]``) over ``images [N, C, H, W]`` (one class when conditional). The data
statistics (mean, covariance and its eigendecomposition, the power spectrum) are computed once per training
set (and class) in float64 and kept by the machine (:class:`Statistics`).

* ``wiener``: ``mu + U diag(a lambda / (a^2 lambda + b2)) U^T (x - a mu)``.
* ``equivariant_wiener``: ``m + F^-1[a S (a^2 S + b2 I)^-1 F(x - a m)]`` with the cross power spectrum ``S``.
* ``pca_locality`` (Lukoianov et al.): the Wiener gain's rows normalised by their diagonal and binarised at
  ``tau * max`` (float64), then, per output entry ``p``, a softmax over **all** N images (streamed, exact) of
  ``-sum_m M[m, p] (x[m] - a z_j[m])^2 / (2 b2 T)``, averaging ``z_j[p]``.
* ``equivariant_pca_locality``: the ELS machine (boundary and knobs as configured) with a patch *shape*
  ``Omega`` cut from the equivariant Wiener gain's kernel ``g = F^-1[a^2 S (a^2 S + b2 I)^-1]`` the same way
  (:func:`pca_shape`).
* ``nearest``: the training image with the largest IS logit.
* ``scfdm``: IS averaged over ``num_noise`` inputs ``x + smoothing_std * eps_m``; the ``eps_m`` (one image
  each, shared by the batch) come from a generator seeded with ``noise_seed`` at every call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ablate.oracle.patches import shape_columns
from ablate.oracle.softmax import StreamingSoftmax

if TYPE_CHECKING:
    from ablate.oracle.machines import Oracle

# the machines built on the covariance or the power spectrum (both divided by N - 1)
COVARIANCE = ("wiener", "equivariant_wiener", "pca_locality", "equivariant_pca_locality")
SPECTRAL = ("equivariant_wiener", "equivariant_pca_locality")  # they need the spectrum only
DIAGONAL_FLOOR = 1e-6  # a gain diagonal below this (a pixel constant over the training set) is taken as 1
MASK_CACHE = 64  # masks (or shapes) kept per machine (one per noise level and class; a sampler visits about 20)


def check_covariance(machine: str, n: int) -> None:
    """A covariance (divided by ``N - 1``) needs at least two images."""
    if machine in COVARIANCE and n < 2:
        raise ValueError(f"machine {machine!r} needs a covariance, so at least 2 training images; got {n}")


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
    def of(cls, images: torch.Tensor, needs: str) -> "Statistics":
        N, C, H, W = images.shape
        check_covariance(needs, N)
        z = images.double().reshape(N, -1)
        mean = z.mean(0)
        lam = U = None
        if needs not in SPECTRAL:
            centred = z - mean
            lam, U = torch.linalg.eigh(centred.T @ centred / (N - 1))
            lam = lam.clamp(min=0.0)
        m = images.double().mean(dim=(0, 2, 3))
        Y = torch.fft.fft2(images.double() - m[None, :, None, None])  # [N, C, H, W]
        S = torch.einsum("nchw,ndhw->hwcd", Y, Y.conj()) / ((N - 1) * H * W)
        return cls(mean, lam, U, m, S)


def stats(oracle: "Oracle", images: torch.Tensor, label: int) -> Statistics:
    """The machine's statistics of ``images`` (one class: ``label``), cached; the spectral machines' lack the
    eigendecomposition, so the cache keeps the two kinds apart (copies made by ``with_knobs`` share it)."""
    machine = oracle.config.machine
    key = (label, machine in SPECTRAL)
    cache = oracle._rival_stats
    if key not in cache:
        cache[key] = Statistics.of(images, machine)
    return cache[key]


def wiener(st: Statistics, x: torch.Tensor, a: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    B = len(x)
    a, b2 = a.double()[:, None], b2.double()[:, None]
    y = (x.double().reshape(B, -1) - a * st.mean) @ st.eigenvectors
    gain = a * st.eigenvalues / (a * a * st.eigenvalues + b2)
    return (st.mean + (y * gain) @ st.eigenvectors.T).reshape(x.shape).to(x.dtype)


def equivariant_wiener(st: Statistics, x: torch.Tensor, a: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
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


def nearest(oracle: "Oracle", x: torch.Tensor, a: torch.Tensor, b2: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The training image with the largest IS logit ``(a <x, z> - a^2 |z|^2 / 2) / b2`` (ties: the first)."""
    B = len(x)
    q = x.reshape(B, -1)
    best = torch.full((B,), float("-inf"), dtype=x.dtype, device=x.device)
    index = torch.zeros(B, dtype=torch.long, device=x.device)
    rows = oracle._chunk_rows(max(q.shape[1], B))
    for s in range(0, len(images), rows):
        z = images[s:s + rows].reshape(-1, q.shape[1])
        logits = ((a / b2)[:, None] * (q @ z.T) - (a * a / (2 * b2))[:, None] * (z * z).sum(1))
        value, arg = logits.max(dim=1)
        better = value > best
        best = torch.where(better, value, best)
        index = torch.where(better, arg + s, index)
    return images[index].to(x.dtype)


def scfdm(oracle: "Oracle", x: torch.Tensor, a: torch.Tensor, b2: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    cfg = oracle.config
    sigma, M = float(cfg.knob("smoothing_std")), int(cfg.knob("num_noise"))
    g = torch.Generator().manual_seed(int(cfg.knob("noise_seed")))
    eps = torch.randn((M,) + tuple(x.shape[1:]), generator=g, dtype=torch.float64).to(x.device, x.dtype)
    total = torch.zeros_like(x)
    for m in range(M):
        total += oracle._ideal(x + sigma * eps[m], a, b2, images)
    return total / M


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


def equivariant_pca_locality(oracle: "Oracle", st: Statistics, x: torch.Tensor, a: torch.Tensor,
                             b2: torch.Tensor, images: torch.Tensor, label: int) -> torch.Tensor:
    """ELS with the patch ``Omega = pca_shape(...)`` of each query's noise level (one shape per level,
    kept in the machine's mask cache)."""
    tau = float(oracle.config.knob("mask_threshold"))
    out = torch.empty_like(x)
    shape = lambda av, bv: shape_columns(pca_shape(st, av, bv, tau), x.shape[1])  # noqa: E731
    for sel, _, _, (k, cols) in by_level(oracle, a, b2, ("shape", label, tau), shape):
        out[sel] = oracle._local(x[sel], a[sel], b2[sel], k, images, label, cols.to(x.device))
    return out


def by_level(oracle: "Oracle", a: torch.Tensor, b2: torch.Tensor, key: tuple, build):
    """For each noise level of the batch: the queries at it (``sel``), its ``a`` and ``b2``, and what
    ``build(a, b2)`` makes for it (a mask, a patch shape), cached in the machine under ``key + (a,)`` (the
    oldest of :data:`MASK_CACHE` entries makes room)."""
    cache = oracle._rival_masks
    for ab in torch.unique(a):
        sel = torch.nonzero(a == ab).flatten()
        av, bv = float(ab), float(b2[sel[0]])
        if key + (av,) not in cache:
            if len(cache) >= MASK_CACHE:
                cache.pop(next(iter(cache)))
            cache[key + (av,)] = build(av, bv)
        yield sel, av, bv, cache[key + (av,)]


def pca_locality(oracle: "Oracle", st: Statistics, x: torch.Tensor, a: torch.Tensor, b2: torch.Tensor,
                 images: torch.Tensor, label: int) -> torch.Tensor:
    cfg = oracle.config
    tau, T = float(cfg.knob("mask_threshold")), float(cfg.knob("temperature"))
    D = x[0].numel()
    out = torch.empty_like(x)
    mask_of = lambda av, bv: pca_mask(st, av, bv, tau).to(x.device, x.dtype)  # noqa: E731
    for sel, av, bv, mask in by_level(oracle, a, b2, ("mask", label, tau), mask_of):
        q = x[sel].reshape(len(sel), D)
        state = StreamingSoftmax((D, len(sel)), 1, x.dtype, x.device)
        rows = max(1, oracle.chunk_bytes // (max(len(sel), 1) * D * x.element_size()))
        for s in range(0, len(images), rows):
            z = images[s:s + rows].reshape(-1, D)
            d2 = (q[:, None, :] - av * z[None, :, :]) ** 2  # [b, n, D]
            logits = -(d2 @ mask) / (2 * bv * T)  # [b, n, D]: entry p sums over the m with M[m, p] = 1
            state.add(logits.permute(2, 0, 1).contiguous(), z.T[:, :, None].contiguous())
        out[sel] = state.result()[..., 0].T.reshape(len(sel), *x.shape[1:])
    return out


def denoise(oracle: "Oracle", x: torch.Tensor, a: torch.Tensor, b2: torch.Tensor, images: torch.Tensor,
            label: int) -> torch.Tensor:
    """``x0_hat`` of the oracle's rival machine (see the module docstring)."""
    machine = oracle.config.machine
    if machine == "nearest":
        return nearest(oracle, x, a, b2, images)
    if machine == "scfdm":
        return scfdm(oracle, x, a, b2, images)
    st = stats(oracle, images, label)
    if machine == "wiener":
        return wiener(st, x, a, b2)
    if machine == "equivariant_wiener":
        return equivariant_wiener(st, x, a, b2)
    if machine == "equivariant_pca_locality":
        return equivariant_pca_locality(oracle, st, x, a, b2, images, label)
    return pca_locality(oracle, st, x, a, b2, images, label)
