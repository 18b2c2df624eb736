"""Streaming (online) softmax-weighted mean over key chunks: never all logits at once.

For each query q the state is the running maximum logit ``m[q]``, the
normaliser ``l[q] = sum_j exp(logit_qj - m[q])`` and the numerator
``acc[q] = sum_j exp(logit_qj - m[q]) * value_j``; adding a chunk rescales the
old state by ``exp(m_old - m_new)``. The result is ``acc / l``.

Shifted logits are clamped at ``EXP_FLOOR`` before ``exp``: on x86 CPUs torch's
``exp`` leaves its vectorised path for arguments whose result underflows
(below about -87 in float32, -708 in float64) and costs 10 to 40 times more per
element (measured on this project's 2-core machine: 17-56 ns against 1.5-3 ns).
At low noise almost every logit is that far below the maximum. A clamped term
weighs ``exp(floor)`` instead of nothing: at most ``exp(-80) = 1.8e-35`` of the
largest term, so even 10^12 keys move a weighted mean by under 1e-22.
"""
from __future__ import annotations

import torch

from ablate.oracle.fused import fold_

EXP_FLOOR = {torch.float32: -80.0, torch.float64: -700.0, torch.float16: -15.0, torch.bfloat16: -80.0}


def exp_shifted_(logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``exp(logits - shift)`` in place, with the difference clamped at ``EXP_FLOOR`` (see above)."""
    return logits.sub_(shift).clamp_(min=EXP_FLOOR.get(logits.dtype, -80.0)).exp_()


class StreamingSoftmax:
    """State for queries laid out as ``shape`` (e.g. ``[Q]`` or ``[HW, B]``), values of ``channels`` numbers."""

    def __init__(self, shape: tuple[int, ...], channels: int, dtype: torch.dtype, device: torch.device) -> None:
        self.m = torch.full(shape, float("-inf"), dtype=dtype, device=device)
        self.l = torch.zeros(shape, dtype=dtype, device=device)
        self.acc = torch.zeros(shape + (channels,), dtype=dtype, device=device)

    def add(self, logits: torch.Tensor, values: torch.Tensor, index: torch.Tensor | slice | None = None) -> None:
        """Fold in one chunk.

        logits: ``[*q, n]`` for the queries ``index`` of the state (all when None; a slice or an index
        tensor); overwritten (the exponentials are computed in place to save memory passes).
        values: ``[n, C]`` shared by every query, or ``[P, n, C]`` with logits
        ``[P, B, n]`` (one key set per pixel, batched matmul).
        On the CPU, 2-D logits for all queries or a slice of them go through the fused kernel of
        :mod:`ablate.oracle.fused` when it is built (two passes over the tile instead of seven).
        """
        if logits.dim() == 2 and (index is None or (isinstance(index, slice) and index.step in (None, 1))):
            sl = slice(None) if index is None else index
            if fold_(logits, values, self.m[sl], self.l[sl], self.acc[sl], EXP_FLOOR.get(logits.dtype, -80.0)):
                return
        m_old = self.m if index is None else self.m[index]
        m_new = torch.maximum(m_old, logits.amax(dim=-1))
        m_new = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        scale = torch.exp(m_old - m_new)
        p = exp_shifted_(logits, m_new.unsqueeze(-1))  # in place: the chunk's logits are consumed
        l_new = (self.l if index is None else self.l[index]) * scale + p.sum(dim=-1)
        a_old = self.acc if index is None else self.acc[index]
        a_new = a_old * scale.unsqueeze(-1) + torch.matmul(p, values)
        if index is None:
            self.m, self.l, self.acc = m_new, l_new, a_new
        else:
            self.m[index], self.l[index], self.acc[index] = m_new, l_new, a_new

    def result(self) -> torch.Tensor:
        """The weighted means ``[*shape, C]``."""
        return self.acc / self.l.unsqueeze(-1)
