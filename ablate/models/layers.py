"""Building blocks shared by the backbones: padded convs, the noise-level embedding, residual blocks,
self-attention. Shapes: feature maps ``[B, width, H, W]`` (``dims = 2``) or ``[B, width, L]`` (``dims = 1``,
signals: the same blocks with Conv1d), embeddings ``[B, emb_dim]``."""
from __future__ import annotations

import math

import torch
from torch import nn


CONV = {1: nn.Conv1d, 2: nn.Conv2d}
CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}


def conv(c_in: int, c_out: int, k: int, padding: str, dims: int = 2) -> nn.Module:
    """A ``k x k`` conv (``k`` wide for ``dims = 1``) that keeps the size, padded with zeros or circularly."""
    return CONV[dims](c_in, c_out, k, padding=k // 2, padding_mode=padding)


def norm(kind: str, width: int, groups: int) -> nn.Module:
    return nn.GroupNorm(groups, width) if kind == "group" else nn.Identity()


class NoiseEmbedding(nn.Module):
    """The noise level (and optionally a class) as a vector ``[B, emb_dim]``.

    The network sees the log signal-to-noise ratio ``lambda = log(ab / (1 - ab))``
    rather than a time ``t``, so one trained network serves any noise schedule:
    sinusoids of ``lambda`` at geometric frequencies, then a two-layer MLP.
    ``num_classes`` adds a learned class embedding; label ``-1`` (or ``None``)
    is the unconditional (null) class.
    """

    LOGSNR_RANGE = 20.0

    def __init__(self, emb_dim: int, num_classes: int | None = None) -> None:
        super().__init__()
        half = emb_dim // 2
        freqs = torch.exp(torch.linspace(math.log(1 / self.LOGSNR_RANGE), math.log(10.0), half))
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.num_classes = num_classes
        self.classes = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

    def forward(self, alpha_bar: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        ab = alpha_bar.to(self.freqs.dtype)
        logsnr = (torch.log(ab) - torch.log1p(-ab)).clamp(-self.LOGSNR_RANGE, self.LOGSNR_RANGE)
        args = logsnr[:, None] * self.freqs[None]
        emb = self.mlp(torch.cat([torch.sin(args), torch.cos(args)], dim=1))
        if self.classes is not None:
            if labels is None:
                labels = torch.full_like(alpha_bar, -1, dtype=torch.long)
            labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
            emb = emb + self.classes(labels)
        return emb


class ResBlock(nn.Module):
    """``h + conv3x3(silu(norm(h + W emb)))``: the embedding is added before the conv (paper's ResNet)."""

    def __init__(self, width: int, emb_dim: int, padding: str, norm_kind: str = "none", groups: int = 8,
                 dims: int = 2) -> None:
        super().__init__()
        self.emb = nn.Linear(emb_dim, width)
        self.norm = norm(norm_kind, width, groups)
        self.conv = conv(width, width, 3, padding, dims)
        self.dims = dims

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        e = self.emb(emb)[(...,) + (None,) * self.dims]
        return h + self.conv(nn.functional.silu(self.norm(h + e)))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all positions of ``[B, width, H, W]`` or ``[B, width, L]`` (no
    positional embedding: it stays equivariant to shifts, but it is global, not local)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(h.flatten(2).transpose(1, 2))  # [B, positions, C]
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return h + out.transpose(1, 2).reshape(h.shape)
