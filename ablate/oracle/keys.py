"""Key sets of the shared-key ELS path: extracted once, deduplicated, kept; or streamed.

A key chunk is ``(augmented keys [n, D + 2], values [n, C])``: training
patches with ``||Q_j||^2`` and ``log`` of how many identical patches the row
stands for appended (``+log(count)`` in the logit is exact; see
:func:`augment_keys`), and their centre pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ablate.oracle.patches import pad, patches_at

KeyChunk = tuple[torch.Tensor, torch.Tensor]


def augment_keys(keys: torch.Tensor, sq_norms: torch.Tensor, log_counts: torch.Tensor) -> torch.Tensor:
    """``[keys, ||k||^2, log count]`` ``[n, D + 2]``: with queries ``[s1 q, -s2, 1]`` one GEMM gives
    the logits ``s1 <q, k> - s2 ||k||^2 + log count`` (``s1 = a / b2``, ``s2 = a^2 / (2 b2)``)."""
    return torch.cat([keys, sq_norms[:, None], log_counts[:, None]], dim=1)


def augment_queries(q: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``[s1 q, -s2, 1]`` ``[Q, D + 2]`` for queries ``q`` ``[Q, D]`` and per-query scales ``[Q]``."""
    return torch.cat([s1[:, None] * q, -s2[:, None], torch.ones_like(s2)[:, None]], dim=1)


def centre_index(channels: int, k: int) -> torch.Tensor:
    """Indices of the centre pixel's channels in a flattened ``C*k*k`` patch."""
    d = k // 2
    return torch.arange(channels) * k * k + d * k + d


@dataclass
class KeySet:
    """Deduplicated keys of one group, sorted so that chunks are contiguous slices."""

    keys: torch.Tensor        # [n, D]
    values: torch.Tensor      # [n, C]
    sq_norms: torch.Tensor    # [n]
    log_counts: torch.Tensor  # [n]

    def __post_init__(self) -> None:
        self.augmented = augment_keys(self.keys, self.sq_norms, self.log_counts)

    def chunks(self, rows: int) -> Iterator[KeyChunk]:
        for s in range(0, len(self.keys), rows):
            yield self.augmented[s:s + rows], self.values[s:s + rows]


def extract_keys(images: torch.Tensor, k: int, boundary: str, positions: torch.Tensor,
                 width: int) -> torch.Tensor:
    """Training patches ``[n * P, D]`` at flat ``positions`` of every image ``[n, C, H, W]``."""
    padded = pad(images, k // 2, boundary)
    return patches_at(padded, k, positions, width).reshape(-1, images.shape[1] * k * k)


def unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(unique rows [u, D], inverse [n], counts [u])`` of ``x [n, D]``: rows that are bitwise equal
    merge. On the CPU the rows are compared as raw bytes by NumPy (5x faster than ``torch.unique(dim=0)``,
    which sorts column by column); ``-0.0`` and ``0.0`` then stay apart, which only merges less."""
    if x.device.type != "cpu":
        uniq, inverse, counts = torch.unique(x, dim=0, return_inverse=True, return_counts=True)
        return uniq, inverse, counts
    a = np.ascontiguousarray(x.numpy())
    rows = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(rows, return_index=True, return_inverse=True, return_counts=True)
    return x[torch.from_numpy(first)], torch.from_numpy(inverse.reshape(-1)), torch.from_numpy(counts)


def build_key_set(images: torch.Tensor, k: int, boundary: str, positions: torch.Tensor, width: int,
                  chunk_rows: int) -> KeySet:
    """Extract every key of the group and merge identical ones (counts enter as ``+log(count)``)."""
    C = images.shape[1]
    per_image = len(positions)
    step = max(1, chunk_rows // max(per_image, 1))
    uniq, counts = [], []
    for s in range(0, len(images), step):  # dedup per chunk first keeps the peak small
        u, _, c = unique_rows(extract_keys(images[s:s + step], k, boundary, positions, width))
        uniq.append(u)
        counts.append(c)
    keys = torch.cat(uniq)
    counts = torch.cat(counts)
    if len(uniq) > 1:
        keys, inverse, _ = unique_rows(keys)
        counts = torch.zeros(len(keys), dtype=counts.dtype, device=counts.device).index_add_(0, inverse, counts)
    values = keys[:, centre_index(C, k)]
    return KeySet(keys.contiguous(), values.contiguous(), (keys * keys).sum(1),
                  counts.to(keys.dtype).log())


def stream_keys(images: torch.Tensor, k: int, boundary: str, positions: torch.Tensor, width: int,
                chunk_rows: int) -> Iterator[KeyChunk]:
    """The same keys without caching or merging, a few images at a time (bounded memory)."""
    C = images.shape[1]
    step = max(1, chunk_rows // max(len(positions), 1))
    centre = centre_index(C, k)
    for s in range(0, len(images), step):
        keys = extract_keys(images[s:s + step], k, boundary, positions, width)
        yield augment_keys(keys, (keys * keys).sum(1), torch.zeros(len(keys), dtype=keys.dtype)), keys[:, centre]
