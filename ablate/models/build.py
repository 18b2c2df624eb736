"""Building ablate's backbones by name (:data:`REGISTRY`) and what an architecture means for the oracle
(:class:`Geometry`, :func:`describe`)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from ablate.models.config import BackboneConfig
from ablate.models.resnet import ResNet
from ablate.models.tokens import TokenResNet, TokenTransformer
from ablate.models.unet import UNet


def _diffusers_unet(config: BackboneConfig, channels: int, num_classes: int | None = None) -> nn.Module:
    from ablate.models.diffusers_unet import DiffusersUNet  # imports diffusers (a few seconds) only when used

    return DiffusersUNet(config, channels, num_classes)


def _module(config: BackboneConfig, channels: int, num_classes: int | None = None) -> nn.Module:
    from ablate.models.module_backbone import ModuleBackbone

    return ModuleBackbone(config, channels, num_classes)


REGISTRY = {"token_resnet": TokenResNet, "token_transformer": TokenTransformer, "resnet": ResNet, "unet": UNet, "unet_attn": UNet, "resnet1d": ResNet, "unet1d": UNet, "unet_attn1d": UNet,
            "diffusers_unet": _diffusers_unet, "module": _module}


def build_backbone(config: BackboneConfig, channels: int, num_classes: int | None = None,
                   length: int | None = None) -> nn.Module:
    """The backbone named by ``config.name`` for images of ``channels`` channels (a token backbone: ``channels``
    is the vocabulary size ``V`` and ``length`` the sequence length)."""
    if not isinstance(config, BackboneConfig):
        raise ValueError(f"config must be a BackboneConfig, got {type(config).__name__}")
    if channels < 1:
        raise ValueError(f"channels={channels} must be >= 1")
    if config.tokens:
        if num_classes is not None:
            raise ValueError(f"{config.name} is unconditional; drop conditional=true")
        return REGISTRY[config.name](config, channels, length)
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
    local_receptive_field: int | None


def describe(config: BackboneConfig) -> Geometry:
    """ablate's analytic figures for its own backbones; the probes' measurement for ``diffusers_unet`` and
    ``module`` (a stride of None, no shift commuting, maps to 1: the rule then has nothing to restrict)."""
    if config.name in ("diffusers_unet", "module"):
        g = build_backbone(config, channels=1).geometry()  # type: ignore[operator]
        return Geometry(g.receptive_field, g.stride or 1, g.padding, g.local_receptive_field)
    net = build_backbone(config, channels=1)
    plain = "unet1d" if config.dims == 1 else "unet"
    local = build_backbone(replace(config, name=plain), channels=1) if config.attention else net
    return Geometry(net.receptive_field(), config.stride, config.padding,  # type: ignore[operator]
                    local.receptive_field())  # type: ignore[operator]
