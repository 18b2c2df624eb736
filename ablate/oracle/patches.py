"""Patch extraction and the key positions of each machine (theory sections 2, 4, 5).

Shapes: images ``[n, C, H, W]``; a patch is flattened channel-major to
``D = C * k * k`` numbers; positions are flat pixel indices ``i * W + j``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


def pad(x: torch.Tensor, d: int, boundary: str) -> torch.Tensor:
    """Pad ``[n, C, H, W]`` by ``d`` on each side with zeros or circularly."""
    if d == 0:
        return x
    if boundary == "circular":
        return F.pad(x, (d, d, d, d), mode="circular")
    return F.pad(x, (d, d, d, d), mode="constant", value=0.0)


def rectangle(positions: torch.Tensor, width: int) -> tuple[int, int, int, int] | None:
    """``(r0, r1, c0, c1)`` when the flat ``positions [P]`` are exactly the rows ``r0..r1-1`` times the
    columns ``c0..c1-1`` in row-major order (every key-position group of the shared-key ELS is one), else
    None."""
    if len(positions) == 0:
        return None
    pos = positions.cpu()
    r, c = pos // width, pos % width
    r0, r1, c0, c1 = int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1
    if (r1 - r0) * (c1 - c0) != len(pos):
        return None
    expect = (torch.arange(r0, r1)[:, None] * width + torch.arange(c0, c1)[None]).flatten()
    return (r0, r1, c0, c1) if torch.equal(pos, expect) else None


def patches_at(padded: torch.Tensor, k: int, positions: torch.Tensor, width: int,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Patches ``[n, P, C*k*k]`` centred on flat ``positions`` ``[P]`` of an image of width ``width``.

    ``padded`` is the image padded by ``k // 2`` (see :func:`pad`); the patch
    centred on pixel ``(i, j)`` starts at ``(i, j)`` of the padded image.
    ``out``: a ``[n * P, C*k*k]`` destination with unit column stride (e.g. the
    first columns of a wider buffer), filled and returned instead. Positions
    that form a rectangle are copied as one strided slice (no gather, no
    temporary).
    """
    n, C, Hp, Wp = padded.shape
    D = C * k * k
    padded = padded.contiguous()
    s0, s1, s2, s3 = padded.stride()
    view = padded.as_strided((n, Hp - k + 1, Wp - k + 1, C, k, k), (s0, s2, s3, s1, s2, s3))
    rect = rectangle(positions, width)
    if rect is None:
        rows, cols = positions // width, positions % width
        src = view[:, rows, cols].reshape(n, len(positions), D)
        return src if out is None else out.copy_(src.reshape(-1, D))
    r0, r1, c0, c1 = rect
    src = view[:, r0:r1, c0:c1]  # [n, h, w, C, k, k], a view
    if out is None:
        return src.reshape(n, len(positions), D)
    if out.shape != (n * len(positions), D) or out.stride(1) != 1:
        raise ValueError(f"out must be [{n * len(positions)}, {D}] with unit column stride, got "
                         f"{tuple(out.shape)} with strides {out.stride()}")
    rs, h, w = out.stride(0), r1 - r0, c1 - c0
    out.as_strided((n, h, w, C, k, k), (h * w * rs, w * rs, rs, k * k, k, 1), out.storage_offset()).copy_(src)
    return out


def shape_columns(offsets: Sequence[tuple[int, int]], channels: int) -> tuple[int, torch.Tensor]:
    """A patch *shape* (theory section 9: the offsets ``(di, dj)`` around the centre that a patch keeps; it
    must hold ``(0, 0)``) as the odd bounding square ``k`` it lies in and the columns ``[C * len(offsets)]``
    (ascending) it keeps of the flattened channel-major ``C*k*k`` patch. The full ``k x k`` square of offsets
    gives every column: that patch is the square one of sections 2-5."""
    offsets = sorted(set((int(i), int(j)) for i, j in offsets))
    if (0, 0) not in offsets:
        raise ValueError(f"a patch shape must contain its centre (0, 0); got offsets {offsets}")
    d = max(max(abs(i), abs(j)) for i, j in offsets)
    k = 2 * d + 1
    within = torch.tensor([(i + d) * k + (j + d) for i, j in offsets])
    return k, (torch.arange(channels)[:, None] * k * k + within[None]).flatten()


def boundary_classes(size: int, d: int) -> torch.Tensor:
    """Row (or column) class of each coordinate, theory section 4: ``i`` if ``i < d``,
    ``i - size`` if ``i >= size - d``, else the interior class (encoded as ``size``)."""
    i = torch.arange(size)
    return torch.where(i < d, i, torch.where(i >= size - d, i - size, torch.full_like(i, size)))


@dataclass(frozen=True)
class Group:
    """Queries at pixels ``query_pos`` share the key positions ``key_pos`` (flat indices)."""

    query_pos: torch.Tensor
    key_pos: torch.Tensor


def shared_key_groups(height: int, width: int, k: int, boundary: str, stride: int = 1) -> list[Group]:
    """Key-position groups of the ELS machine without knobs, or with ``stride`` alone.

    circular: one group: every pixel sees the patches lying fully inside the
    training images. zeros: one group per (row class, column class); a pixel
    sees the zero-padded patches at positions of its own class. ``stride`` s > 1
    (theory section 5) splits them by ``(row mod s, column mod s)``; with
    ``circular`` the keys are then the circularly padded patches at every
    position of the class, as for the other knobs.
    """
    d = k // 2
    everything = torch.arange(height * width)
    rows, cols = everything // width, everything % width
    if boundary == "circular":
        if stride == 1:
            inside = (rows >= d) & (rows < height - d) & (cols >= d) & (cols < width - d)
            return [Group(everything, everything[inside])]
        code = torch.zeros_like(everything)
    else:
        rc, cc = boundary_classes(height, d)[rows], boundary_classes(width, d)[cols]
        code = (rc + height) * (3 * width) + (cc + width)
    if stride > 1:
        code = (code * stride + rows % stride) * stride + cols % stride
    groups = []
    for value in torch.unique(code):
        pos = everything[code == value]
        groups.append(Group(pos, pos))
    return groups


@dataclass(frozen=True)
class Offset:
    """One relative key position: pixels ``query_pos`` take keys at ``key_pos`` with logit ``bias``."""

    query_pos: torch.Tensor
    key_pos: torch.Tensor
    bias: torch.Tensor  # [P], additive logit, e.g. -|p' - p|^2 / (2 sigma^2)


def offset_table(height: int, width: int, k: int, boundary: str, shift_radius: int | None,
                 stride: int, bandwidth: float | None, local_only: bool = False) -> list[Offset]:
    """Per-pixel key positions of the position-aware machines (LS and ELS with knobs, theory section 5).

    Keys are the (zero- or circularly-) padded training patches at every
    position ``p'``; pixel ``p`` keeps those with the same boundary class
    (zeros), ``|p' - p|_inf <= shift_radius``, ``p' = p (mod stride)``, and adds
    ``-|p' - p|^2 / (2 bandwidth^2)`` to their logits; distances are on the
    torus for ``circular``. ``local_only`` gives the LS machine (``p' = p``).
    """
    d = k // 2
    everything = torch.arange(height * width)
    rows, cols = everything // width, everything % width
    circular = boundary == "circular"
    if not circular:
        rclass, cclass = boundary_classes(height, d), boundary_classes(width, d)
    if local_only:
        shifts = [(0, 0)]
    elif circular:
        shifts = [(di, dj) for di in range(height) for dj in range(width)]
    else:
        shifts = [(di, dj) for di in range(-height + 1, height) for dj in range(-width + 1, width)]
    table = []
    for di, dj in shifts:
        r2, c2 = rows + di, cols + dj
        if circular:
            r2, c2 = r2 % height, c2 % width
            dr = torch.minimum((r2 - rows) % height, (rows - r2) % height)
            dc = torch.minimum((c2 - cols) % width, (cols - c2) % width)
            ok = torch.ones_like(rows, dtype=torch.bool)
        else:
            ok = (r2 >= 0) & (r2 < height) & (c2 >= 0) & (c2 < width)
            r2, c2 = r2.clamp(0, height - 1), c2.clamp(0, width - 1)
            ok &= (rclass[r2] == rclass[rows]) & (cclass[c2] == cclass[cols])
            dr, dc = (r2 - rows).abs(), (c2 - cols).abs()
        if shift_radius is not None:
            ok &= torch.maximum(dr, dc) <= shift_radius
        if stride > 1:
            ok &= ((r2 - rows) % stride == 0) & ((c2 - cols) % stride == 0)
        if not ok.any():
            continue
        bias = torch.zeros(int(ok.sum()), dtype=torch.float64)
        if bandwidth is not None:
            bias = -(dr[ok] ** 2 + dc[ok] ** 2).double() / (2.0 * bandwidth**2)
        table.append(Offset(everything[ok], (r2 * width + c2)[ok], bias))
    return table
