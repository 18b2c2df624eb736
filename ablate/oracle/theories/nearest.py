"""Nearest neighbour (theory section 9): the training image with the largest IS logit
``(a <x, z> - a^2 |z|^2 / 2) / b2`` (ties: the first); pure memorisation."""
from __future__ import annotations

import torch

from ablate.oracle.registry import register_theory


@register_theory("nearest", order=90, cost="whole_image", summary="nearest: the training image IS weighs most")
def denoise(engine, x, a, b2, k, images, label):
    B = len(x)
    q = x.reshape(B, -1)
    best = torch.full((B,), float("-inf"), dtype=x.dtype, device=x.device)
    index = torch.zeros(B, dtype=torch.long, device=x.device)
    rows = engine.chunk_rows(max(q.shape[1], B))
    for s in range(0, len(images), rows):
        z = images[s:s + rows].reshape(-1, q.shape[1])
        logits = ((a / b2)[:, None] * (q @ z.T) - (a * a / (2 * b2))[:, None] * (z * z).sum(1))
        value, arg = logits.max(dim=1)
        better = value > best
        best = torch.where(better, value, best)
        index = torch.where(better, arg + s, index)
    return images[index].to(x.dtype)
