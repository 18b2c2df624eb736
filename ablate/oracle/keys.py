"""Key sets of the shared-key ELS path: extracted once, deduplicated, kept; or streamed.

A key chunk is ``(keys [n, D], values [n, C], sq_norms [n], log_counts [n])``:
training patches, their centre pixels, ``||Q_j||^2`` and ``log`` of how many
identical patches the row stands for (``+log(count)`` in the logit is exact).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ablate.oracle.patches import pad, patches_at

KeyChunk = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


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

    def chunks(self, rows: int) -> Iterator[KeyChunk]:
        for s in range(0, len(self.keys), rows):
            e = s + rows
            yield self.keys[s:e], self.values[s:e], self.sq_norms[s:e], self.log_counts[s:e]


def extract_keys(images: torch.Tensor, k: int, boundary: str, positions: torch.Tensor,
                 width: int) -> torch.Tensor:
    """Training patches ``[n * P, D]`` at flat ``positions`` of every image ``[n, C, H, W]``."""
    padded = pad(images, k // 2, boundary)
    return patches_at(padded, k, positions, width).reshape(-1, images.shape[1] * k * k)


def build_key_set(images: torch.Tensor, k: int, boundary: str, positions: torch.Tensor, width: int,
                  chunk_rows: int) -> KeySet:
    """Extract every key of the group and merge identical ones (counts enter as ``+log(count)``)."""
    C = images.shape[1]
    per_image = len(positions)
    step = max(1, chunk_rows // max(per_image, 1))
    uniq, counts = [], []
    for s in range(0, len(images), step):  # dedup per chunk first keeps the peak small
        u, c = torch.unique(extract_keys(images[s:s + step], k, boundary, positions, width),
                            dim=0, return_counts=True)
        uniq.append(u)
        counts.append(c)
    keys = torch.cat(uniq)
    counts = torch.cat(counts)
    if len(uniq) > 1:
        keys, inverse = torch.unique(keys, dim=0, return_inverse=True)
        counts = torch.zeros(len(keys), dtype=counts.dtype).index_add_(0, inverse, counts)
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
        yield keys, keys[:, centre], (keys * keys).sum(1), torch.zeros(len(keys), dtype=keys.dtype)
