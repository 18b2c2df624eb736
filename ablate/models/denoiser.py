"""A trained backbone behind the same denoiser interface as the oracle (``ablate.sampling.Denoiser``).

The backbone predicts the noise; the denoiser returns the clean-image estimate
``x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab)`` (theory section 1), clipped to
the data range [-1, 1] by default, as every machine's output is.
"""
from __future__ import annotations

import torch
from torch import nn


class NetworkDenoiser:
    """``x0_hat = D(x_t, alpha_bar[, labels])`` from a noise-predicting backbone.

    x_t ``[B, C, H, W]``; alpha_bar a float or ``[B]`` in (0, 1); labels ``[B]``
    or None. Runs without gradients, in the backbone's mode-independent eval state.
    """

    def __init__(self, backbone: nn.Module, clip: bool = True) -> None:
        self.backbone = backbone
        self.clip = clip

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @torch.no_grad()
    def denoise(self, x_t: torch.Tensor, alpha_bar: float | torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            dtype = next(self.backbone.parameters()).dtype
            x = x_t.to(self.device, dtype)
            ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=self.device)
            ab = ab.expand(len(x)) if ab.dim() == 0 else ab
            if labels is not None:
                labels = torch.as_tensor(labels, device=self.device).long().expand(len(x))
            eps = self.backbone(x, ab.to(dtype), labels)
            x0 = x0_from_eps(x, eps, ab)
            return (x0.clamp(-1.0, 1.0) if self.clip else x0).to(x_t.dtype)
        finally:
            self.backbone.train(was_training)

    __call__ = denoise


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """``(x_t - sqrt(1 - ab) eps) / sqrt(ab)``, alpha_bar ``[B]`` broadcast per image."""
    ab = alpha_bar.to(x_t.dtype).view(-1, 1, 1, 1)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
