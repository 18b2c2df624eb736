"""A trained ablate backbone behind the same denoiser interface as the oracle (``ablate.sampling.Denoiser``).

An ablate backbone predicts the noise and reads ``alpha_bar`` itself: it is the simplest case of a
declared network (:class:`~ablate.models.foreign.ForeignDenoiser` with ``epsilon`` prediction and
``alpha_bar`` time input), so one wrapper serves ablate's networks and users' alike. The denoiser returns
``x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab)`` (theory section 1), clipped to the data range [-1, 1]
by default, as every machine's output is.
"""
from __future__ import annotations

import torch
from torch import nn

from ablate.models.foreign import ForeignDenoiser, TimeMap, x0_from_prediction


class NetworkDenoiser(ForeignDenoiser):
    """``x0_hat = D(x_t, alpha_bar[, labels])`` from a noise-predicting ablate backbone
    (``backbone(x_t, alpha_bar, labels) -> eps_hat``).

    x_t ``[B, C, H, W]``; alpha_bar a float or ``[B]`` in (0, 1); labels ``[B]`` or None. Runs without
    gradients, in the backbone's mode-independent eval state.
    """

    def __init__(self, backbone: nn.Module, clip: bool = True) -> None:
        super().__init__(backbone, "epsilon", TimeMap("alpha_bar", "cosine"), clip, class_labels=True)

    @property
    def backbone(self) -> nn.Module:
        return self.module


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """``(x_t - sqrt(1 - ab) eps) / sqrt(ab)``, alpha_bar ``[B]`` broadcast per image."""
    return x0_from_prediction(x_t, eps, alpha_bar, "epsilon")
