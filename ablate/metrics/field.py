"""The agreement figures of the field's analytic-diffusion codebases, as their code computes them
(``docs/theory.md`` section 13), so that ablate's rows can be pasted into their tables.

* **R^2** (``calculate_r2_score`` of the Analytic Diffusion Studio's ``generate.py`` comparison and of GoldDiff's
  ``services/evaluation.py``): per sample ``1 - sum((x - y)^2) / (D var(y))`` with ``var`` the *unbiased*
  variance of the reference ``y``'s ``D`` values (``torch.var``; a constant reference counts as variance 1),
  then the **mean** over samples. ``y`` is the trained network. It differs from ablate's ``R2`` (theory
  section 7: ``SS_tot`` is the biased sum, ``D var / (D - 1)`` here, and ablate reports medians).
* **MSE**, **L1**: the mean over samples of each sample's mean squared (absolute) difference.
* GoldDiff scores images mapped to [0, 1] by its ``postprocess``, ``((x + 1) / 2).clamp(0, 1)``
  (:func:`to_unit`); the Studio scores the raw ``x0_hat`` in [-1, 1]. R^2 is the same either way unless the
  clamp bites; MSE is a quarter on [0, 1].
"""
from __future__ import annotations

import torch


def _flat(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.dim() < 2 or len(x) == 0:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must be the same non-empty batch [N, ...]")
    return x.detach().reshape(len(x), -1).double().cpu(), y.detach().reshape(len(y), -1).double().cpu()


def field_r2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Their R^2 of predictions ``x`` against the reference ``y`` (``[N, ...]`` each), mean over the N samples."""
    x, y = _flat(x, y)
    var = torch.var(y, dim=1)
    var = torch.where(var == 0, torch.ones_like(var), var)
    return float((1 - ((x - y) ** 2).sum(1) / (var * x.shape[1])).mean())


def field_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = _flat(x, y)
    return float(((x - y) ** 2).mean(1).mean())


def field_l1(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = _flat(x, y)
    return float((x - y).abs().mean(1).mean())


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """GoldDiff's ``postprocess``: images in [-1, 1] to [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)
