"""Key sets of the shared-key ELS path: extracted once, deduplicated, kept; or streamed.

A key chunk is ``(augmented keys [n, D + 2], values [n, C])``: training
patches with ``||Q_j||^2`` and ``log`` of how many identical patches the row
stands for appended (``+log(count)`` in the logit is exact): with queries
``[s1 q, -s2, 1]`` (:func:`augment_queries`) one GEMM gives the logits
``s1 <q, k> - s2 ||k||^2 + log count``; and their centre pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ablate.oracle.patches import Extent, extent, half, pad, patches_at

KeyChunk = tuple[torch.Tensor, torch.Tensor]


def augment_queries(q: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``[s1 q, -s2, 1]`` ``[Q, D + 2]`` for queries ``q`` ``[Q, D]`` and per-query scales ``[Q]``."""
    return torch.cat([s1[:, None] * q, -s2[:, None], torch.ones_like(s2)[:, None]], dim=1)


def centre_index(channels: int, k: int | Extent, cols: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the centre pixel's channels in a flattened ``C*kh*kw`` patch (extent ``k``), or in its
    columns ``cols`` (ascending, a shaped patch: :func:`ablate.oracle.patches.shape_columns`)."""
    kh, kw = extent(k)
    centre = torch.arange(channels) * kh * kw + (kh // 2) * kw + kw // 2
    return centre if cols is None else torch.searchsorted(cols.cpu(), centre)


def select_columns(patches: torch.Tensor, cols: torch.Tensor | None) -> torch.Tensor:
    """The columns ``cols`` of patches ``[..., C*kh*kw]`` (all of them when None: the full rectangle)."""
    return patches if cols is None else patches.index_select(-1, cols.to(patches.device))


@dataclass
class KeySet:
    """Deduplicated keys of one group in one buffer, sorted so that chunks are contiguous slices.

    ``augmented [n, D + 2]`` holds each key, its squared norm and the log of how many identical training
    patches it stands for; ``keys``, ``sq_norms`` and ``log_counts`` are views of it.
    """

    augmented: torch.Tensor   # [n, D + 2]
    values: torch.Tensor      # [n, C] centre pixels

    @property
    def keys(self) -> torch.Tensor:  # [n, D]
        return self.augmented[:, :-2]

    @property
    def sq_norms(self) -> torch.Tensor:  # [n]
        return self.augmented[:, -2]

    @property
    def log_counts(self) -> torch.Tensor:  # [n]
        return self.augmented[:, -1]

    @property
    def nbytes(self) -> int:
        return self.augmented.nbytes + self.values.nbytes

    def reorder(self, order: torch.Tensor) -> None:
        """Permute the keys (rows) in place of the buffers: ``order [n]``."""
        self.augmented = self.augmented.index_select(0, order)
        self.values = self.values.index_select(0, order)

    def chunks(self, rows: int) -> Iterator[KeyChunk]:
        for s in range(0, len(self.augmented), rows):
            yield self.augmented[s:s + rows], self.values[s:s + rows]


def extract_keys(images: torch.Tensor, k: int | Extent, boundary: str, positions: torch.Tensor,
                 width: int) -> torch.Tensor:
    """Training patches ``[n * P, D]`` at flat ``positions`` of every image ``[n, C, H, W]``."""
    kh, kw = extent(k)
    padded = pad(images, half(k), boundary)
    return patches_at(padded, k, positions, width).reshape(-1, images.shape[1] * kh * kw)


def row_hashes(x: torch.Tensor) -> torch.Tensor:
    """A 64-bit hash ``[n]`` of each row of ``x [n, D]``: the bit patterns of two float32 products with
    fixed random vectors (``x @ r`` for ``r [D, 2]``: one skinny GEMM, far cheaper than touching every
    element with integer ops) packed into one int64. Equal rows hash equal (should a row's product ever
    depend on where the row sits, equal rows would only stay apart: less merging, never a wrong one);
    different rows collide only if both products round to the same floats."""
    r = torch.randn(x.shape[1], 2, generator=torch.Generator().manual_seed(0x5EED)).to(x.device, torch.float32)
    h = (x.to(torch.float32) @ r).view(torch.int32).to(torch.int64)  # [n, 2]
    return (h[:, 0] << 32) | (h[:, 1] & 0xFFFFFFFF)


def group_rows(x: torch.Tensor, hashes: torch.Tensor | None = None,
               chunk_rows: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(first [u], inverse [n], counts [u])`` for the rows of ``x [n, D]`` that are bitwise equal: the
    index of each distinct row's first occurrence, each row's group and the group sizes (``-0.0`` and
    ``0.0`` stay apart, which only merges less).

    On the CPU the rows are grouped by a 64-bit hash (:func:`row_hashes`, or ``hashes`` computed already;
    sorting 8-byte hashes is far faster than sorting the rows as raw bytes, and than
    ``torch.unique(dim=0)``, which sorts column by column), then every row that merged is checked bit for
    bit against its group's first row, ``chunk_rows`` at a time; if any differs (a hash collision), the rows are grouped
    again by their raw bytes. Exact either way. Elsewhere ``torch.unique`` groups them."""
    n = len(x)
    if x.device.type != "cpu":
        _, inverse, counts = torch.unique(x, dim=0, return_inverse=True, return_counts=True)
        first = torch.full((len(counts),), n, dtype=torch.int64, device=x.device).scatter_reduce_(
            0, inverse, torch.arange(n, device=x.device), "amin")
        return first, inverse, counts
    hashes = row_hashes(x) if hashes is None else hashes
    _, first, inverse, counts = np.unique(hashes.numpy(), return_index=True, return_inverse=True,
                                          return_counts=True)
    first, inverse, counts = torch.from_numpy(first), torch.from_numpy(inverse.reshape(-1)), torch.from_numpy(counts)
    rep = first.index_select(0, inverse)  # each row's group representative (its first row)
    merged = torch.nonzero(rep != torch.arange(n)).flatten()  # the rows that merged into another one
    bits = torch.int32 if x.element_size() == 4 else torch.int64
    for r in range(0, len(merged), chunk_rows):
        rows = merged[r:r + chunk_rows]
        if not torch.equal(x.index_select(0, rows).view(bits), x.index_select(0, rep[rows]).view(bits)):
            return _group_bytes(x)  # a hash collision: group by raw bytes
    return first, inverse, counts


def _group_bytes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`group_rows` by sorting the rows as raw bytes (NumPy): the exact fallback."""
    a = np.ascontiguousarray(x.numpy())
    rows = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(rows, return_index=True, return_inverse=True, return_counts=True)
    return torch.from_numpy(first), torch.from_numpy(inverse.reshape(-1)), torch.from_numpy(counts)


def build_key_set(padded: torch.Tensor, k: int | Extent, positions: torch.Tensor, width: int,
                  chunk_rows: int, cols: torch.Tensor | None = None) -> KeySet:
    """Extract every key of the group from the padded training images ``[N, C, H + 2d, W + 2d]`` (see
    :func:`ablate.oracle.patches.pad`) and merge identical ones (counts enter as ``+log(count)``). ``cols``:
    the columns a shaped patch keeps of its ``kh x kw`` extent (None: all; ``D`` is then ``len(cols)``).

    The keys are copied straight into one ``[n, D + 2]`` buffer, a few images at a time (hashed as they
    come, on the CPU), merged over the whole group at once by :func:`group_rows`, and the distinct rows
    moved to the front of the same buffer in order (no second buffer)."""
    C = padded.shape[1]
    full = C * extent(k)[0] * extent(k)[1]
    D = full if cols is None else len(cols)
    per_image = len(positions)
    step = max(1, chunk_rows // max(per_image, 1))
    n = len(padded) * per_image
    buf = torch.empty(n, D + 2, dtype=padded.dtype, device=padded.device)
    hashes = torch.empty(n, dtype=torch.int64) if padded.device.type == "cpu" else None
    for s in range(0, len(padded), step):
        rows = slice(s * per_image, min(s + step, len(padded)) * per_image)
        if cols is None:
            patches_at(padded[s:s + step], k, positions, width, out=buf[rows, :D])
        else:
            part = patches_at(padded[s:s + step], k, positions, width).reshape(-1, full)
            buf[rows, :D] = select_columns(part, cols)
        if hashes is not None:
            hashes[rows] = row_hashes(buf[rows, :D])  # while the keys are in cache
    chunk = max(1, chunk_rows)
    first, _, counts = group_rows(buf[:, :D], hashes, chunk)
    if len(first) < n:
        # first occurrences in ascending order: row i moves to i from first[i] >= i, so chunks copied
        # front to back never read a row already overwritten
        first, order = torch.sort(first.to(buf.device))
        counts = counts.to(buf.device)[order]
        for r in range(0, len(first), chunk):
            src = first[r:r + chunk]
            buf[r:r + len(src), :D] = buf[:, :D].index_select(0, src)
        buf = buf[:len(first)]
        if len(first) < n // 2:  # give the tail back when it is most of the buffer
            buf = buf.clone()
    for r in range(0, len(buf), chunk):  # squared norms in chunks: no [n, D] temporary
        block = buf[r:r + chunk, :D]
        buf[r:r + chunk, D] = (block * block).sum(1)
    buf[:, D + 1] = counts.to(buf.device, buf.dtype).log()
    return KeySet(buf, buf[:, centre_index(C, k, cols).to(buf.device)].contiguous())


def stream_keys(padded: torch.Tensor, k: int | Extent, positions: torch.Tensor, width: int,
                chunk_rows: int, cols: torch.Tensor | None = None) -> Iterator[KeyChunk]:
    """The same keys without caching or merging, a few images at a time (bounded memory); ``padded`` and
    ``cols`` as for :func:`build_key_set`."""
    C = padded.shape[1]
    full = C * extent(k)[0] * extent(k)[1]
    D = full if cols is None else len(cols)
    step = max(1, chunk_rows // max(len(positions), 1))
    centre = centre_index(C, k, cols).to(padded.device)
    for s in range(0, len(padded), step):
        part = padded[s:s + step]
        buf = torch.empty(len(part) * len(positions), D + 2, dtype=padded.dtype, device=padded.device)
        if cols is None:
            keys = patches_at(part, k, positions, width, out=buf[:, :D])
        else:
            keys = buf[:, :D]
            keys.copy_(select_columns(patches_at(part, k, positions, width).reshape(-1, full), cols))
        buf[:, D] = (keys * keys).sum(1)
        buf[:, D + 1] = 0.0
        yield buf, keys[:, centre]
