"""A training checkpoint with its typed run config (the file format and safe reading: :mod:`ablate.models.checkpoint`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.config import build_config
from ablate.models import NetworkDenoiser
from ablate.models.tokens import TokenNetworkDenoiser
from ablate.models.checkpoint import backbone_from_checkpoint, read_checkpoint
from ablate.training.config import TrainConfig


@dataclass(frozen=True)
class TrainedModel:
    """A backbone rebuilt from a checkpoint (EMA weights when the run kept them), with its run's config.
    ``image_shape`` is ``(C, H, W)``; ``num_classes`` is None for unconditional models."""

    config: TrainConfig
    backbone: nn.Module
    image_shape: tuple[int, int, int]
    num_classes: int | None
    step: int
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)  # the checkpoint's meta (a token model's vocab, ...)

    @property
    def tokens(self) -> bool:
        """A masked-diffusion denoiser of token sequences (``image_shape`` is then ``(L,)``)."""
        return self.config.model.tokens

    def denoiser(self, clip: bool = True) -> NetworkDenoiser | TokenNetworkDenoiser:
        if self.tokens:
            return TokenNetworkDenoiser(self.backbone)
        return NetworkDenoiser(self.backbone, clip=clip)


def config_of(ckpt: dict[str, Any]) -> TrainConfig:
    return build_config(TrainConfig, ckpt["ablate"]["config"])


# what a resumed run may not change: the data, the network, the loss and the noise it draws
PROTECTED = ("data", "model", "optim", "noise_schedule", "t_min", "conditional", "label_dropout", "batch_size",
             "epoch_images", "seed")


def resume_differences(saved: TrainConfig, now: TrainConfig) -> list[str]:
    """``key: saved -> now`` for every protected setting a resumed run would change."""
    from ablate.config import differences, to_dict

    a, b = to_dict(saved), to_dict(now)
    return [line for key in PROTECTED for line in differences(a[key], b[key], key)]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> TrainedModel:
    """Rebuild the trained backbone from the checkpoint alone (its own config and shapes)."""
    ckpt = read_checkpoint(path)
    config = config_of(ckpt)
    meta = ckpt["ablate"]["meta"]
    backbone, _ = backbone_from_checkpoint(ckpt, path, device, ema)
    return TrainedModel(config, backbone, tuple(meta["image_shape"]), meta["num_classes"],
                        int(ckpt.get("global_step", 0)), Path(path), dict(meta))
