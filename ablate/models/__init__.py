"""Diffusion backbones (raw ``nn.Module``s, no Lightning) and the denoiser wrapper around them.

>>> net = build_backbone(BackboneConfig(name="resnet", depth=6, width=32), channels=1)
>>> eps_hat = net(x_t, alpha_bar)                       # [B, C, H, W], [B] -> [B, C, H, W]
>>> NetworkDenoiser(net).denoise(x_t, alpha_bar)        # x0_hat, the oracle's interface
>>> describe(BackboneConfig(name="unet", depth=2))      # receptive field and equivariance stride
>>> net = load_denoiser("runs/my_pipeline")              # any network: ablate .ckpt, diffusers folder, module:factory
>>> probe_network(net.module, net.raw, channels=1)       # its receptive field, stride, global mixing, measured
"""
from __future__ import annotations

from ablate.models.build import Geometry, build_backbone, describe
from ablate.models.config import BACKBONES, NORMS, PADDINGS, BackboneConfig
from ablate.models.denoiser import NetworkDenoiser, x0_from_eps
from ablate.models.foreign import ForeignDenoiser, NetworkSpec, TimeMap
from ablate.models.load import LoadedNetwork, load_denoiser
from ablate.models.probe import ProbeResult, probe_network
from ablate.models.resnet import ResNet
from ablate.models.unet import UNet

__all__ = ["BackboneConfig", "BACKBONES", "PADDINGS", "NORMS", "build_backbone", "describe", "Geometry",
           "NetworkDenoiser", "x0_from_eps", "ResNet", "UNet", "ForeignDenoiser", "NetworkSpec", "TimeMap",
           "LoadedNetwork", "load_denoiser", "ProbeResult", "probe_network"]
