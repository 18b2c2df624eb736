"""Diffusion backbones (raw ``nn.Module``s, no Lightning) and the denoiser wrapper around them.

>>> net = build_backbone(BackboneConfig(name="resnet", depth=6, width=32), channels=1)
>>> eps_hat = net(x_t, alpha_bar)                       # [B, C, H, W], [B] -> [B, C, H, W]
>>> NetworkDenoiser(net).denoise(x_t, alpha_bar)        # x0_hat, the oracle's interface
>>> describe(BackboneConfig(name="unet", depth=2))      # receptive field and equivariance stride
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from ablate.models.config import BACKBONES, NORMS, PADDINGS, BackboneConfig, backbone_config
from ablate.models.denoiser import NetworkDenoiser, x0_from_eps
from ablate.models.resnet import ResNet
from ablate.models.unet import UNet

__all__ = ["BackboneConfig", "backbone_config", "BACKBONES", "PADDINGS", "NORMS", "build_backbone", "describe", "Geometry",
           "NetworkDenoiser", "x0_from_eps", "ResNet", "UNet"]

REGISTRY: dict[str, type[nn.Module]] = {"resnet": ResNet, "unet": UNet, "unet_attn": UNet}


def build_backbone(config: BackboneConfig, channels: int, num_classes: int | None = None) -> nn.Module:
    """The backbone named by ``config.name`` for images of ``channels`` channels."""
    if not isinstance(config, BackboneConfig):
        raise ValueError(f"config must be a BackboneConfig, got {type(config).__name__}")
    if channels < 1:
        raise ValueError(f"channels={channels} must be >= 1")
    return REGISTRY[config.name](config, channels, num_classes)


@dataclass(frozen=True)
class Geometry:
    """What an architecture means for the oracle: its theoretical receptive field (pixels per side;
    None = global, e.g. attention), its equivariance stride (1 = every shift), and the receptive
    field of its convolutional path alone (``local_receptive_field``: the attention layers, which are
    residual, taken as the identity; equal to ``receptive_field`` without attention)."""

    receptive_field: int | None
    stride: int
    padding: str
    local_receptive_field: int


def describe(config: BackboneConfig) -> Geometry:
    net = build_backbone(config, channels=1)
    local = build_backbone(replace(config, name="unet"), channels=1) if config.name == "unet_attn" else net
    return Geometry(net.receptive_field(), config.stride, config.padding,  # type: ignore[operator]
                    local.receptive_field())  # type: ignore[operator]
