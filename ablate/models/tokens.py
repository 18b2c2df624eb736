"""Token denoisers for masked diffusion (theory section 12): ``logits = f(x_t, alpha)``, x_t int64 ``[B, L]`` (the
mask token is id ``V``), alpha ``[B]`` the survival probability, logits ``[B, V, L]``; softmax over ``V`` gives
``x0_hat``, the discrete machines' output (:class:`TokenNetworkDenoiser`).

* ``token_resnet``: token embeddings, then ``depth`` residual 3-tap Conv1d layers (the noise-level embedding
  added before each; ``zeros`` or ``circular`` padding), a 1x1 read-out: local and shift-equivariant, receptive
  field ``2 depth + 1`` tokens: the discrete ELS machine's architecture.
* ``token_transformer`` with ``window = w``: ``depth`` pre-norm transformer layers whose attention sees the
  positions within ``w`` of each query (``2 w + 1`` per layer), with a learned bias per head and relative
  offset and no absolute positions: local and equivariant, receptive field ``2 w depth + 1``.
* ``token_transformer`` with ``window`` unset: full attention with learned absolute position embeddings:
  neither local nor equivariant.
"""
from __future__ import annotations

import torch
from torch import nn

from ablate.models.config import BackboneConfig
from ablate.models.layers import NoiseEmbedding, ResBlock

ALPHA_EPS = 1e-6  # alpha is clamped into [eps, 1 - eps] for the noise-level embedding (a log-odds)


class TokenResNet(nn.Module):
    def __init__(self, config: BackboneConfig, vocab_size: int, length: int | None = None) -> None:
        super().__init__()
        self.config, self.V = config, vocab_size
        w = config.width
        self.tokens = nn.Embedding(vocab_size + 1, w)  # + the mask token
        self.embed = NoiseEmbedding(config.emb_dim)
        self.blocks = nn.ModuleList(ResBlock(w, config.emb_dim, config.padding, dims=1) for _ in range(config.depth))
        self.out = nn.Conv1d(w, vocab_size, 1)

    def forward(self, x_t: torch.Tensor, alpha: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(alpha.clamp(ALPHA_EPS, 1 - ALPHA_EPS))
        h = self.tokens(x_t).transpose(1, 2)  # [B, w, L]
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(h))

    def receptive_field(self) -> int:
        return 2 * self.config.depth + 1


class TokenTransformer(nn.Module):
    def __init__(self, config: BackboneConfig, vocab_size: int, length: int | None = None) -> None:
        super().__init__()
        self.config, self.V = config, vocab_size
        w = config.width
        self.window = config.window
        self.tokens = nn.Embedding(vocab_size + 1, w)
        self.embed = NoiseEmbedding(config.emb_dim)
        self.cond = nn.Linear(config.emb_dim, w)
        self.length = length or 64
        self.positions = nn.Parameter(torch.zeros(self.length, w)) if self.window is None else None
        self.layers = nn.ModuleList(_Layer(w, config.heads, self.window) for _ in range(config.depth))
        self.norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, vocab_size)

    def forward(self, x_t: torch.Tensor, alpha: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        L = x_t.shape[1]
        h = self.tokens(x_t) + self.cond(self.embed(alpha.clamp(ALPHA_EPS, 1 - ALPHA_EPS)))[:, None]  # [B, L, w]
        if self.positions is not None:
            if L > self.length:
                raise ValueError(f"this full-attention transformer was built for sequences of at most {self.length} "
                                 f"tokens; got {L}")
            h = h + self.positions[:L]
        for layer in self.layers:
            h = layer(h)
        return self.out(self.norm(h)).transpose(1, 2)  # [B, V, L]

    def receptive_field(self) -> int | None:
        """Tokens one output sees: ``2 w depth + 1`` with a window, None (global) without."""
        return None if self.window is None else 2 * self.window * self.config.depth + 1


class _Layer(nn.Module):
    """Pre-norm attention (windowed: a learned bias per head and offset, nothing outside the window) and MLP."""

    def __init__(self, width: int, heads: int, window: int | None) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.bias = nn.Parameter(torch.zeros(heads, 2 * window + 1)) if window is not None else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, L, C = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if self.window is not None:
            offset = torch.arange(L, device=h.device)[None, :] - torch.arange(L, device=h.device)[:, None]  # j - i
            inside = offset.abs() <= self.window
            bias = self.bias[:, (offset.clamp(-self.window, self.window) + self.window)]  # [heads, L, L]
            mask = torch.where(inside, bias, torch.full_like(bias, float("-inf")))[None]
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h + self.proj(out.transpose(1, 2).reshape(B, L, C))
        return h + self.mlp(self.norm2(h))


class TokenNetworkDenoiser:
    """A token network behind the discrete machines' interface: ``denoise(x_t [B, L], alpha) -> x0_hat [B, V, L]``
    (softmax of its logits; at an observed position the one-hot of the observed token, as every machine's)."""

    def __init__(self, backbone: nn.Module) -> None:
        self.module = backbone
        self.V = backbone.V

    @property
    def vocab_size(self) -> int:
        return self.V

    @torch.no_grad()
    def denoise(self, x_t: torch.Tensor, alpha: float | torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        was = self.module.training
        self.module.eval()
        try:
            device = next(self.module.parameters()).device
            x = x_t.to(device)
            a = torch.as_tensor(alpha, dtype=torch.float32, device=device).flatten()
            a = a.expand(len(x)) if a.numel() == 1 else a
            probs = torch.softmax(self.module(x, a).float(), dim=1)
            observed = x < self.V
            onehot = nn.functional.one_hot(x.clamp(max=self.V - 1), self.V).transpose(1, 2).float()
            return torch.where(observed[:, None], onehot, probs)
        finally:
            self.module.train(was)
