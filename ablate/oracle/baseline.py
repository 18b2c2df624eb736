"""The straightforward streaming ELS: the speed and accuracy baseline of ``benchmarks/oracle.py``.

One seed at a time, for every group of pixels, the training patches are
extracted chunk by chunk (no cache, no deduplication, norms recomputed every
call), one GEMM per key chunk gives the logits, then exp and a weighted sum
with a running maximum. Exact; no pruning.

``clamp=True`` clamps the shifted logits before ``exp`` as the oracle does
(:mod:`ablate.oracle.softmax`): the same formulation without torch's slow
underflow path, so that the benchmark can show how much of the oracle's
speed-up is that one fix and how much the rest.
"""
from __future__ import annotations

import math

import torch

from ablate.oracle.keys import centre_index, extract_keys
from ablate.oracle.patches import pad, patches_at, shared_key_groups
from ablate.oracle.softmax import exp_shifted_


def straightforward_els(x_t: torch.Tensor, alpha_bar: float, train: torch.Tensor, k: int, boundary: str,
                        chunk_bytes: int = 4 * 2**20, clamp: bool = False) -> torch.Tensor:
    """ELS ``x0_hat`` ``[B, C, H, W]`` for ``x_t`` ``[B, C, H, W]`` at one scalar noise level."""
    B, C, H, W = x_t.shape
    a, b2 = math.sqrt(alpha_bar), 1.0 - alpha_bar
    D = C * k * k
    out = torch.empty(B, H * W, C, dtype=x_t.dtype)
    centre = centre_index(C, k)
    everything = torch.arange(H * W)
    for b in range(B):
        q_all = patches_at(pad(x_t[b:b + 1], k // 2, boundary), k, everything, W)[0]  # [HW, D]
        for group in shared_key_groups(H, W, k, boundary):
            q = q_all[group.query_pos]
            per_image = len(group.key_pos)
            step = max(1, chunk_bytes // (4 * per_image * (D + len(q))))
            m = torch.full((len(q),), -math.inf, dtype=x_t.dtype)
            l = torch.zeros(len(q), dtype=x_t.dtype)
            acc = torch.zeros(len(q), C, dtype=x_t.dtype)
            for s in range(0, len(train), step):
                keys = extract_keys(train[s:s + step], k, boundary, group.key_pos, W)
                logits = (a * (q @ keys.T) - 0.5 * a * a * (keys * keys).sum(1)) / b2
                m_new = torch.maximum(m, logits.amax(1))
                scale = torch.exp(m - m_new)
                p = exp_shifted_(logits, m_new[:, None]) if clamp else torch.exp(logits - m_new[:, None])
                l = l * scale + p.sum(1)
                acc = acc * scale[:, None] + p @ keys[:, centre]
                m = m_new
            out[b, group.query_pos] = acc / l[:, None]
    return out.permute(0, 2, 1).reshape(B, C, H, W)
