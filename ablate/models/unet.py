"""A convolutional UNet (max-pool down, transposed-conv up, skip connections), optionally with
self-attention at the lower resolutions (the paper's case where locality breaks). ``unet1d`` and
``unet_attn1d`` are the same networks on signals (Conv1d, pooling by 2 along the axis)."""
from __future__ import annotations

import torch
from torch import nn

from ablate.models.config import BackboneConfig
from ablate.models.layers import CONV, CONV_TRANSPOSE, MAX_POOL, NoiseEmbedding, ResBlock, SelfAttention, conv

BLOCKS_PER_STAGE = 2  # residual 3x3 layers per stage, on the way down and on the way up


class Stage(nn.Module):
    """A 1x1 projection to ``width`` (when the input has another width), ``BLOCKS_PER_STAGE``
    residual blocks and, optionally, self-attention."""

    def __init__(self, c_in: int, width: int, config: BackboneConfig, attention: bool) -> None:
        super().__init__()
        self.proj = CONV[config.dims](c_in, width, 1) if c_in != width else nn.Identity()
        self.blocks = nn.ModuleList(ResBlock(width, config.emb_dim, config.padding, config.norm, config.groups,
                                             config.dims) for _ in range(BLOCKS_PER_STAGE))
        self.attn = SelfAttention(width, config.heads) if attention else None

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.proj(h)
        for block in self.blocks:
            h = block(h, emb)
        return self.attn(h) if self.attn is not None else h


class UNet(nn.Module):
    """``eps_hat = f(x_t, alpha_bar[, label])`` with ``D = depth`` down/up stages.

    Level 0 is the input resolution; level ``l`` has ``stage_widths[l]``
    channels at ``H / 2**l``. Down: stem conv, then at each level a stage whose
    output is kept as a skip, max-pool. Bottom: a stage at level D. Up: a
    2x2 stride-2 transposed conv, concatenation with the skip, a stage. Output:
    a 3x3 conv. With ``attention``, stages at levels >= 1 end in self-attention.
    Shifts by multiples of ``2**D`` commute with the network (circular padding).
    """

    def __init__(self, config: BackboneConfig, channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.attention = config.attention
        w, D, p, dims = config.widths, config.depth, config.padding, config.dims
        self.embed = NoiseEmbedding(config.emb_dim, num_classes)
        self.stem = conv(channels, w[0], 3, p, dims)
        self.down = nn.ModuleList(Stage(w[max(level - 1, 0)], w[level], config, self.attention and level > 0)
                                  for level in range(D + 1))  # level D is the bottom
        self.upsample = nn.ModuleList(CONV_TRANSPOSE[dims](w[level + 1], w[level], 2, stride=2) for level in range(D))
        self.up = nn.ModuleList(Stage(2 * w[level], w[level], config, self.attention and level > 0)
                                for level in range(D))
        self.pool = MAX_POOL[dims](2)
        self.out = conv(w[0], channels, 3, p, dims)

    def forward(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(alpha_bar, labels)
        h = self.stem(x_t)
        skips = []
        for level, stage in enumerate(self.down):
            if level > 0:
                h = self.pool(h)
            h = stage(h, emb)
            skips.append(h)
        for level in reversed(range(self.config.depth)):
            h = self.upsample[level](h)
            h = self.up[level](torch.cat([h, skips[level]], dim=1), emb)
        return self.out(nn.functional.silu(h))

    def receptive_field(self) -> int | None:
        """Largest side (over output positions) of the input square an output pixel depends on;
        ``None`` (global) with attention. Computed by walking the layer graph backwards with
        exact 1-D dependency intervals: a 3x3 conv widens by 1 on each side, max-pool maps a
        coarse interval ``[lo, hi]`` to ``[2 lo, 2 hi + 1]``, the transposed conv maps a fine
        interval to ``[lo // 2, hi // 2]``, and a concatenation takes the union."""
        if self.attention:
            return None
        D = self.config.depth

        def down_out(level: int, lo: int, hi: int) -> tuple[int, int]:
            lo, hi = lo - BLOCKS_PER_STAGE, hi + BLOCKS_PER_STAGE
            if level == 0:
                return lo - 1, hi + 1  # the stem
            return down_out(level - 1, 2 * lo, 2 * hi + 1)

        def up_out(level: int, lo: int, hi: int) -> tuple[int, int]:
            lo, hi = lo - BLOCKS_PER_STAGE, hi + BLOCKS_PER_STAGE
            skip = down_out(level, lo, hi)
            coarse = (lo // 2, hi // 2)
            deep = down_out(D, *coarse) if level + 1 == D else up_out(level + 1, *coarse)
            return min(skip[0], deep[0]), max(skip[1], deep[1])

        spans = [up_out(0, o - 1, o + 1) for o in range(2**D, 2 * 2**D)]  # the out conv, every phase
        return max(hi - lo + 1 for lo, hi in spans)
