"""diffusers' ``UNet2DModel`` as an ablate backbone (``model.name=diffusers_unet``), trained by ablate's stack.

Its config keys pass through (``model.block_out_channels=[32,64] model.layers_per_block=1 ...``; see
:data:`DEFAULTS` for what ablate sets when they are not given) and are checked against ``UNet2DModel``'s
signature. ``in_channels``/``out_channels`` come from the data, ``num_class_embeds`` from a conditional
run (one extra class: the null label). ``padding=circular`` switches every conv to circular padding.

Time: the UNet sees ``1000 * t`` where ``t`` is the cosine schedule's time of ``alpha_bar``
(``t = 1.008 * 2 / pi * arccos(sqrt(alpha_bar))``), a fixed reparametrisation of the noise level into
diffusers' usual timestep range, whatever schedule trains it; outside ablate the network is declared as
``net.time_input=continuous net.schedule=cosine net.time_scale=1000 net.prediction_type=epsilon``.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping

import torch
from torch import nn

from ablate.sampling import inverse_schedule

TIME_SCALE = 1000.0
DEFAULTS: dict[str, Any] = {"block_out_channels": (32, 64), "layers_per_block": 2, "add_attention": False}
SET_BY_ABLATE = ("in_channels", "out_channels", "num_class_embeds", "class_embed_type", "sample_size")


def unet_parameters() -> tuple[str, ...]:
    from diffusers import UNet2DModel

    return tuple(p for p in inspect.signature(UNet2DModel.__init__).parameters if p != "self")


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` completed with :data:`DEFAULTS` and block types (``DownBlock2D``/``UpBlock2D`` per width when
    not given), checked against ``UNet2DModel``'s signature and its own constraints."""
    allowed = unet_parameters()
    for key in options:
        if key in SET_BY_ABLATE:
            raise ValueError(f"model.{key} is set by ablate from the data and the run (channels, classes); drop it")
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=1)
            raise ValueError(f"model.{key} is not a UNet2DModel setting{f'; did you mean model.{near[0]}' if near else ''}. "
                             f"Allowed: {', '.join(p for p in allowed if p not in SET_BY_ABLATE)}")
    out = {**DEFAULTS, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}}
    widths = out["block_out_channels"]
    if not isinstance(widths, tuple) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f"model.block_out_channels must be a list of positive integers, got {widths!r}")
    out.setdefault("down_block_types", ("DownBlock2D",) * len(widths))
    out.setdefault("up_block_types", ("UpBlock2D",) * len(widths))
    for key in ("down_block_types", "up_block_types"):
        if len(out[key]) != len(widths):
            raise ValueError(f"model.{key} has {len(out[key])} blocks but block_out_channels {len(widths)}; give one "
                             "block type per width")
    groups = out.get("norm_num_groups", 32)
    if any(w % groups for w in widths):
        raise ValueError(f"block_out_channels {list(widths)} are not all divisible by norm_num_groups={groups} "
                         "(GroupNorm needs it); set model.norm_num_groups to a common divisor")
    return out


def levels(options: Mapping[str, Any]) -> int:
    return len(options.get("block_out_channels", DEFAULTS["block_out_channels"]))


class DiffusersUNet(nn.Module):
    """``eps_hat = f(x_t, alpha_bar[, label])`` through a ``UNet2DModel`` (``.unet``). x_t ``[B, C, H, W]``
    with sides divisible by ``2**(levels - 1)``; alpha_bar ``[B]``; labels ``[B]`` (-1: none) or None."""

    def __init__(self, config, channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.config = config
        self.num_classes = num_classes
        kwargs = check_options(config.options)
        if num_classes:
            kwargs["num_class_embeds"] = num_classes + 1
        self.unet = UNet2DModel(in_channels=channels, out_channels=channels, **kwargs)
        if config.padding == "circular":
            for m in self.unet.modules():
                if isinstance(m, nn.Conv2d):
                    m.padding_mode = "circular"
        self._geometry = None

    def forward(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        t = TIME_SCALE * inverse_schedule("cosine", alpha_bar.double())
        class_labels = None
        if self.num_classes:
            if labels is None:
                labels = torch.full((len(x_t),), -1, dtype=torch.long, device=x_t.device)
            class_labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return self.unet(x_t, t.to(x_t.dtype), class_labels=class_labels).sample

    def geometry(self):
        """The probes' :class:`~ablate.models.probe.ProbeResult` (measured once)."""
        if self._geometry is None:
            from ablate.models.probe import probe_network

            self._geometry = probe_network(self, lambda x, ab, labels=None: self(x, ab, labels),
                                           self.unet.config.in_channels, self.config.padding, self.config.stride)
        return self._geometry

    def receptive_field(self) -> int | None:
        """Measured (:mod:`ablate.models.probe`): None when the network mixes globally (GroupNorm, attention)."""
        return self.geometry().receptive_field
