"""GoldDiff (Shang et al., ICML 2026; theory section 9): PCA locality over a time-dependent "golden subset" of the
training set, found coarse to fine, as its code (``shangxinyi/GoldDiff``, ``methods/ours.py`` and
``BaseDenoiser._get_knn_subset_and_distances``) defines it.

Per query ``x`` at noise level ``b = sqrt(1 - alpha_bar)`` (their ``noise_level``; ``l = 1 - b`` the locality):

1. ``k = ceil(subset_min N)``, ``m = ceil(subset_max N)`` (their ``k_min``, ``k_max``, here fractions of N; their
   CIFAR-10 config takes N/20 and N/10), with ``k <= m <= N``;
2. **pre-sample** ``n_pre = round(m + (N - m) l)`` training images uniformly at random (all of them near
   ``alpha_bar = 1``; ``m`` at the highest noise);
3. **coarse**: of those, the ``m`` nearest by ``|x_low - a z_low|^2`` on images average-pooled by ``downsample``
   (their ``low_res_dim`` rule: the largest divisor ``d`` of the side with ``4 <= d <= side / 2`` gives the
   pooled side, so 28 and 32 pool by 2);
4. **fine**: of those, the ``K = max(k, round(m - (m - k) l))`` nearest by ``|x - a z|^2`` at full resolution;
5. PCA locality (:mod:`ablate.oracle.theories.pca_locality`: the same binarised Wiener-gain mask, the same
   per-pixel logits) with the softmax over those ``K`` images only.

The pre-sampling is random in their code (the global generator); here each query's draw is seeded by ``seed``
and the query's own values, so the same ``x_t`` gets the same subset in any batch (same seed, same sample). With
``subset_min = subset_max = 1`` the subset is the whole training set and GoldDiff is exact PCA locality.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ablate.config import check_float, check_int
from ablate.oracle.registry import register_theory
from ablate.oracle.statistics import pca_mask, statistics
from ablate.oracle.theories.pca_locality import MASK_THRESHOLDS


@dataclass(frozen=True)
class GoldDiffKnobs:
    """mask_threshold, temperature: PCA locality's. subset_min, subset_max: the golden subset's bounds as fractions
    of the training set (their ``k_min``, ``k_max``: N/20 and N/10 on CIFAR-10). downsample: the coarse stage's pooling factor
    (None: their rule). seed: of the random pre-sampling."""

    mask_threshold: float = 0.02
    temperature: float = 1.0
    subset_min: float = 0.05
    subset_max: float = 0.10
    downsample: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_float("mask_threshold", self.mask_threshold, low=0.0, high=1.0, low_open=True)
        check_float("temperature", self.temperature, low=0.0, low_open=True)
        check_float("subset_min", self.subset_min, low=0.0, high=1.0, low_open=True)
        check_float("subset_max", self.subset_max, low=0.0, high=1.0, low_open=True)
        if self.subset_min > self.subset_max:
            raise ValueError(f"subset_min={self.subset_min} must be <= subset_max={self.subset_max} (the subset "
                             "shrinks from subset_max N at high noise to subset_min N at low noise)")
        if self.downsample is not None:
            check_int("downsample", self.downsample, low=1)
        check_int("seed", self.seed, low=0)


def pooled_side(side: int) -> int:
    """Their ``best_default``: the largest divisor of ``side`` in ``[4, side // 2]``, else the largest in
    ``[1, side // 2]``, else ``side``."""
    for low in (4, 1):
        divisors = [d for d in range(low, max(side // 2, 0) + 1) if side % d == 0]
        if divisors:
            return divisors[-1]
    return side


def subset_sizes(N: int, b: float, k_min: float, k_max: float) -> tuple[int, int, int]:
    """``(n_pre, m, K)`` of a query at noise ``b = sqrt(1 - alpha_bar)`` (module docstring, steps 1-4)."""
    k = min(N, max(1, math.ceil(k_min * N)))
    m = min(N, max(k, math.ceil(k_max * N)))
    locality = 1.0 - min(1.0, max(0.0, b))
    n_pre = min(N, max(m, int(round(m + (N - m) * locality))))
    K = max(k, int(round(m - (m - k) * locality)))
    return n_pre, m, min(K, m)


def query_seed(seed: int, q: torch.Tensor) -> int:
    """A query's pre-sampling seed: ``seed`` and its values (float64 sum and sum of squares, rounded)."""
    v = q.double()
    return (seed * 1_000_003 + int(round(float(v.sum()) * 1e4)) * 7_919 + int(round(float((v * v).sum()) * 1e4))) \
        % (2**63 - 1)


def golden_subset(q: torch.Tensor, a: float, b: float, images: torch.Tensor, knobs: GoldDiffKnobs,
                  factor: int) -> torch.Tensor:
    """Indices ``[K]`` of one query's golden subset (``q [C, H, W]``; ``images [N, C, H, W]``)."""
    N = len(images)
    n_pre, m, K = subset_sizes(N, b, knobs.subset_min, knobs.subset_max)
    g = torch.Generator().manual_seed(query_seed(knobs.seed, q))
    pre = torch.randperm(N, generator=g)[:n_pre].to(images.device)
    z = images[pre]
    if factor > 1:
        ql, zl = F.avg_pool2d(q[None], factor)[0], F.avg_pool2d(z, factor)
    else:
        ql, zl = q, z
    coarse = ((ql[None] - a * zl) ** 2).flatten(1).sum(1)
    near = pre[torch.topk(coarse, min(m, n_pre), largest=False).indices]
    fine = ((q[None] - a * images[near]) ** 2).flatten(1).sum(1)
    return near[torch.topk(fine, K, largest=False).indices]


@register_theory("golddiff", order=75, knobs=GoldDiffKnobs, calibrate="mask_threshold", candidates=MASK_THRESHOLDS,
                 min_images=2, summary="GoldDiff: PCA locality over a coarse-to-fine golden subset of the training set")
def denoise(engine, x, a, b2, k, images, label):
    knobs = engine.config.knobs
    tau, T = float(knobs.mask_threshold), float(knobs.temperature)
    st = statistics(engine, images, label)
    H = x.shape[-2]
    factor = knobs.downsample or (H // pooled_side(H) if x.dim() == 4 and x.shape[-1] == H else 1)
    out = x.new_empty(x.shape)
    D = x[0].numel()
    mask_of = lambda av, bv: pca_mask(st, av, bv, tau).to(x.device, x.dtype)  # noqa: E731
    for sel, av, bv, mask in engine.by_level(a, b2, ("pca_mask", label, tau), mask_of):
        # every query of a level has a subset of the same size K: one batched softmax over [b, K, D]
        chosen = torch.stack([golden_subset(x[i], av, math.sqrt(max(bv, 0.0)), images, knobs, factor)
                              for i in sel.tolist()])
        z = images[chosen].reshape(len(sel), chosen.shape[1], D)
        d2 = (x[sel].reshape(len(sel), 1, D) - av * z) ** 2  # [b, K, D]
        logits = -(d2 @ mask) / (2 * bv * T)  # [b, K, D]: entry p sums over the m with M[m, p] = 1
        out[sel] = (torch.softmax(logits, dim=1) * z).sum(1).reshape(len(sel), *x.shape[1:])
    return out
