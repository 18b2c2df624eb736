"""ELS-agreement: how well one set of images predicts another, pair by pair (theory section 7).

Per pair (e.g. the network's and the oracle's sample from the same seed), both
images flattened and mean-centred: Pearson ``r``, its square ``r2``, and the
coefficient of determination ``R2 = 1 - SS_res / SS_tot`` with the *target*
(the network) as reference. The paper's "r^2" is ``r2``; ``R2`` also punishes
offsets and scale errors, and can be negative.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric


FIGURES = ("r", "r2", "R2", "mse")


def pairwise_agreement(preds: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``r``, ``r2``, ``R2`` and ``mse`` ``[B]`` between ``preds[i]`` and ``target[i]`` (any ``[B, ...]`` shapes)."""
    p = preds.flatten(1).double()
    t = target.flatten(1).double()
    pc, tc = p - p.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    denom = (pc.norm(dim=1) * tc.norm(dim=1)).clamp_min(1e-300)
    r = (pc * tc).sum(1) / denom
    ss_tot = (tc * tc).sum(1).clamp_min(1e-300)
    return {"r": r, "r2": r * r, "R2": 1 - ((p - t) ** 2).sum(1) / ss_tot, "mse": ((p - t) ** 2).mean(1)}


class ELSAgreement(Metric):
    """Accumulates per-pair agreement; ``compute()`` gives medians and means of ``r``, ``r2``, ``R2``, ``mse``.

    ``update(preds, target)``: ``preds`` (the machine's samples) and ``target``
    (the network's samples from the same seeds), both ``[B, C, H, W]``.
    :meth:`per_sample` returns every pair's figures (for scatters and bootstraps).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in FIGURES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must have the same "
                             "shape: one prediction per target image")
        if preds.dim() < 2 or len(preds) == 0:
            raise ValueError(f"expected a non-empty batch [B, ...], got shape {tuple(preds.shape)}")
        if not (torch.isfinite(preds).all() and torch.isfinite(target).all()):
            raise ValueError("preds and target must be finite (no NaN or inf)")
        for name, value in pairwise_agreement(preds, target).items():
            getattr(self, name).append(value)

    def per_sample(self) -> dict[str, torch.Tensor]:
        if not self.r:
            raise ValueError("ELSAgreement has no samples; call update() before compute()")
        return {name: torch.cat(getattr(self, name)) if isinstance(getattr(self, name), list) else getattr(self, name)
                for name in FIGURES}

    def compute(self) -> dict[str, torch.Tensor]:
        values = self.per_sample()
        out = {}
        for name, v in values.items():
            out[f"median_{name}"] = v.median()
            out[f"mean_{name}"] = v.mean()
        return out
