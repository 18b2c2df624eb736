"""The LightningModule: eps-prediction MSE over continuous time (or, for token sequences, the masked-diffusion
cross-entropy), AdamW, EMA of weights.

It is *handed* its backbone (``ablate.models``); the loss follows the forward
process of ``docs/theory.md`` section 1: ``t ~ U(t_min, 1)``,
``x_t = sqrt(ab(t)) x_0 + sqrt(1 - ab(t)) eps``, loss ``||eps_hat - eps||^2``. For tokens (``meta`` holds
``vocab_size``; section 12): ``t ~ U(t_min, 1)``, each token kept with probability ``alpha(t)`` and otherwise
replaced by the mask id ``V``, loss the cross-entropy of the logits at the masked positions.
All training noise comes from the module's own generator, saved in every
checkpoint, so a resumed run draws the numbers the uninterrupted run would.
"""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ablate.models import NetworkDenoiser
from ablate.models.tokens import TokenNetworkDenoiser
from ablate.models.checkpoint import CHECKPOINT_FORMAT
from ablate.sampling import get_schedule, per_item
from ablate.training.config import TrainConfig



def mask_alpha(schedule: str, t: torch.Tensor) -> torch.Tensor:
    """alpha(t), the probability that a token survives, of the mask schedule ``schedule`` (section 12)."""
    if schedule == "linear":
        return 1.0 - t
    return torch.cos(torch.pi * t / 2)


class DiffusionModule(pl.LightningModule):
    """Trains ``backbone`` (``eps_hat = backbone(x_t, alpha_bar, labels)``) as a denoiser.

    ``meta`` is plain data saved in every checkpoint beside the weights
    (channels, image shape, number of classes), so the checkpoint alone rebuilds
    the network (:func:`ablate.training.load_checkpoint`).
    """

    def __init__(self, backbone: nn.Module, config: TrainConfig, meta: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.meta = meta
        decay = config.optim.ema_decay
        self.ema = AveragedModel(backbone, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True) \
            if decay is not None else None
        self.alpha_bar = get_schedule(config.noise_schedule)
        self.vocab_size: int | None = meta.get("vocab_size")
        self._generator: torch.Generator | None = None
        self._pending_generator_state: torch.Tensor | None = None
        self.recent_losses: deque[float] = deque(maxlen=100)
        self.wandb_id: str | None = None
        self.earlier_seconds = 0.0  # training seconds before this run resumed (saved in every checkpoint)
        self._fit_start: float | None = None

    # ------------------------------------------------------------------ sampling
    def denoiser(self) -> NetworkDenoiser | TokenNetworkDenoiser:
        """The network to sample from: the EMA weights when EMA is on."""
        net = self.ema.module if self.ema is not None else self.backbone
        return TokenNetworkDenoiser(net) if self.vocab_size is not None else NetworkDenoiser(net)

    # ------------------------------------------------------------------ noise
    def generator(self) -> torch.Generator:
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
            if self._pending_generator_state is not None:
                self._generator.set_state(self._pending_generator_state)
                self._pending_generator_state = None
        return self._generator

    def masked_loss(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Cross-entropy at the masked positions of ``x0`` int64 ``[B, L]`` masked at ``alpha(t)``."""
        B, V = len(x0), self.vocab_size
        t = self.config.t_min + (1 - self.config.t_min) * torch.rand(B, generator=generator, device=self.device,
                                                                      dtype=torch.float64)
        alpha = mask_alpha(self.config.noise_schedule, t)
        masked = torch.rand(x0.shape, generator=generator, device=self.device, dtype=torch.float64) >= alpha[:, None]
        x_t = torch.where(masked, torch.full_like(x0, V), x0)
        logits = self.backbone(x_t, alpha.float())
        if not masked.any():
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits.transpose(1, 2)[masked], x0[masked])

    def diffusion_loss(self, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.vocab_size is not None:
            return self.masked_loss(x0, generator)
        B = len(x0)
        cfg = self.config
        t = cfg.t_min + (1 - cfg.t_min) * torch.rand(B, generator=generator, device=self.device, dtype=torch.float64)
        ab = self.alpha_bar(t)
        eps = torch.randn(x0.shape, generator=generator, device=self.device, dtype=x0.dtype)
        abx = per_item(ab, x0)
        x_t = abx.sqrt() * x0 + (1 - abx).sqrt() * eps
        if cfg.conditional:
            drop = torch.rand(B, generator=generator, device=self.device) < cfg.label_dropout
            labels = torch.where(drop, torch.full_like(labels, -1), labels)
        else:
            labels = None
        return nn.functional.mse_loss(self.backbone(x_t, ab.to(x0.dtype), labels), eps)

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch, batch_idx):
        x0, labels = batch
        loss = self.diffusion_loss(x0, labels, self.generator())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {self.global_step}; "
                                     f"lower optim.lr (now {self.config.optim.lr}) or set optim.grad_clip")
        self.recent_losses.append(loss.item())
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.backbone)

    def validation_step(self, batch, batch_idx):
        x0, labels = batch
        g = torch.Generator(device=self.device).manual_seed(10_000 + batch_idx)  # same noise every validation
        self.log("val/loss", self.diffusion_loss(x0, labels, g), prog_bar=True, on_epoch=True, batch_size=len(x0))

    def configure_optimizers(self):
        o = self.config.optim
        opt = torch.optim.AdamW(self.backbone.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                weight_decay=o.weight_decay)
        total, warm, cosine = self.config.max_steps, o.warmup_steps, o.lr_schedule == "cosine"

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warm) / max(1, total - warm))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "interval": "step"}}

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()

    def train_seconds(self) -> float:
        """Seconds trained so far, over every run this one resumed."""
        now = 0.0 if self._fit_start is None else time.perf_counter() - self._fit_start
        return self.earlier_seconds + now

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ablate"] = {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "meta": dict(self.meta),
                                "generator": self.generator().get_state(), "wandb_id": self.wandb_id,
                                "train_seconds": self.train_seconds()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pending_generator_state = checkpoint["ablate"]["generator"]
        self._generator = None
        self.wandb_id = checkpoint["ablate"].get("wandb_id")
        self.earlier_seconds = float(checkpoint["ablate"].get("train_seconds", 0.0))
