"""The paper's minimal convolutional ResNet: purely local and (with circular padding) exactly
equivariant to every shift. ``resnet1d`` is the same network on signals (Conv1d)."""
from __future__ import annotations

import torch
from torch import nn

from ablate.models.config import BackboneConfig
from ablate.models.layers import NoiseEmbedding, ResBlock, conv


class ResNet(nn.Module):
    """``eps_hat = f(x_t, alpha_bar[, label])``: up-projection 3x3 conv, ``depth`` residual 3x3
    layers with the embedding added before each, down-projection 3x3 conv, no normalisation
    by default. x_t ``[B, C, H, W]`` (``[B, C, L]`` for ``resnet1d``: 3-sample convs), alpha_bar ``[B]``,
    labels ``[B]`` or None."""

    def __init__(self, config: BackboneConfig, channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.config = config
        w, p, dims = config.width, config.padding, config.dims
        self.embed = NoiseEmbedding(config.emb_dim, num_classes)
        self.inp = conv(channels, w, 3, p, dims)
        self.blocks = nn.ModuleList(ResBlock(w, config.emb_dim, p, config.norm, config.groups, dims)
                                    for _ in range(config.depth))
        self.out = conv(w, channels, 3, p, dims)

    def forward(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(alpha_bar, labels)
        h = self.inp(x_t)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(h))

    def receptive_field(self) -> int:
        """Side of the input square (signals: length of the window) one output pixel depends on: ``depth + 2``
        3x3 convs."""
        return 1 + 2 * (self.config.depth + 2)
