"""Patch extraction and the key positions of each machine (theory sections 2, 4, 5, 11).

Shapes: images ``[n, C, H, W]``; a patch is a ``kh x kw`` rectangle (its *extent*: ``k x k`` for images,
``1 x k`` for signals, which the oracle holds as images of height 1, theory section 11), flattened
channel-major to ``D = C * kh * kw`` numbers; positions are flat pixel indices ``i * W + j``. Functions take
the extent as a pair or, for the square, as one odd ``k``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


Extent = tuple[int, int]


def extent(k: int | Extent) -> Extent:
    """``(kh, kw)`` of a patch given as one odd ``k`` (the square) or as the pair."""
    return (int(k), int(k)) if isinstance(k, int) else (int(k[0]), int(k[1]))


def half(k: int | Extent) -> Extent:
    """The padding ``(kh // 2, kw // 2)`` a patch of extent ``k`` needs."""
    kh, kw = extent(k)
    return kh // 2, kw // 2


def pad(x: torch.Tensor, d: int | Extent, boundary: str) -> torch.Tensor:
    """Pad ``[n, C, H, W]`` by ``d`` (or ``(dh, dw)``: rows, columns) on each side with zeros or circularly."""
    dh, dw = extent(d)
    if dh == dw == 0:
        return x
    if boundary == "circular":
        return F.pad(x, (dw, dw, dh, dh), mode="circular")
    return F.pad(x, (dw, dw, dh, dh), mode="constant", value=0.0)


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


def patches_at(padded: torch.Tensor, k: int | Extent, positions: torch.Tensor, width: int,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Patches ``[n, P, C*kh*kw]`` centred on flat ``positions`` ``[P]`` of an image of width ``width``.

    ``padded`` is the image padded by :func:`half` of the extent ``k`` (see :func:`pad`); the patch
    centred on pixel ``(i, j)`` starts at ``(i, j)`` of the padded image.
    ``out``: a ``[n * P, C*kh*kw]`` destination with unit column stride (e.g. the
    first columns of a wider buffer), filled and returned instead. Positions
    that form a rectangle are copied as one strided slice (no gather, no
    temporary).
    """
    kh, kw = extent(k)
    n, C, Hp, Wp = padded.shape
    D = C * kh * kw
    padded = padded.contiguous()
    s0, s1, s2, s3 = padded.stride()
    view = padded.as_strided((n, Hp - kh + 1, Wp - kw + 1, C, kh, kw), (s0, s2, s3, s1, s2, s3))
    rect = rectangle(positions, width)
    if rect is None:
        rows, cols = positions // width, positions % width
        src = view[:, rows, cols].reshape(n, len(positions), D)
        return src if out is None else out.copy_(src.reshape(-1, D))
    r0, r1, c0, c1 = rect
    src = view[:, r0:r1, c0:c1]  # [n, h, w, C, kh, kw], a view
    if out is None:
        return src.reshape(n, len(positions), D)
    if out.shape != (n * len(positions), D) or out.stride(1) != 1:
        raise ValueError(f"out must be [{n * len(positions)}, {D}] with unit column stride, got "
                         f"{tuple(out.shape)} with strides {out.stride()}")
    rs, h, w = out.stride(0), r1 - r0, c1 - c0
    out.as_strided((n, h, w, C, kh, kw), (h * w * rs, w * rs, rs, kh * kw, kw, 1), out.storage_offset()).copy_(src)
    return out


def shape_columns(offsets: Sequence[tuple[int, int]], channels: int) -> tuple[Extent, torch.Tensor]:
    """A patch *shape* (theory section 9: the offsets ``(di, dj)`` around the centre that a patch keeps; it
    must hold ``(0, 0)``) as the odd bounding rectangle ``(kh, kw)`` it lies in (``kh = 2 max |di| + 1``,
    ``kw`` likewise) and the columns ``[C * len(offsets)]`` (ascending) it keeps of the flattened
    channel-major ``C*kh*kw`` patch. A full ``k x k`` square of offsets gives every column: that patch is the
    square one of sections 2-5."""
    offsets = sorted(set((int(i), int(j)) for i, j in offsets))
    if (0, 0) not in offsets:
        raise ValueError(f"a patch shape must contain its centre (0, 0); got offsets {offsets}")
    dh, dw = max(abs(i) for i, _ in offsets), max(abs(j) for _, j in offsets)
    kh, kw = 2 * dh + 1, 2 * dw + 1
    within = torch.tensor([(i + dh) * kw + (j + dw) for i, j in offsets])
    return (kh, kw), (torch.arange(channels)[:, None] * kh * kw + within[None]).flatten()


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


def shared_key_groups(height: int, width: int, k: int | Extent, boundary: str, stride: int = 1) -> list[Group]:
    """Key-position groups of the ELS machine without knobs, or with ``stride`` alone.

    circular: one group: every pixel sees the patches lying fully inside the
    training images. zeros: one group per (row class, column class); a pixel
    sees the zero-padded patches at positions of its own class. ``stride`` s > 1
    (theory section 5) splits them by ``(row mod s, column mod s)``; with
    ``circular`` the keys are then the circularly padded patches at every
    position of the class, as for the other knobs. ``k``: the patch extent (rows and columns have their
    own half-size ``d``).
    """
    dh, dw = half(k)
    everything = torch.arange(height * width)
    rows, cols = everything // width, everything % width
    if boundary == "circular":
        if stride == 1:
            inside = (rows >= dh) & (rows < height - dh) & (cols >= dw) & (cols < width - dw)
            return [Group(everything, everything[inside])]
        code = torch.zeros_like(everything)
    else:
        rc, cc = boundary_classes(height, dh)[rows], boundary_classes(width, dw)[cols]
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


def offset_table(height: int, width: int, k: int | Extent, boundary: str, shift_radius: int | None,
                 stride: int, bandwidth: float | None, local_only: bool = False) -> list[Offset]:
    """Per-pixel key positions of the position-aware machines (LS and ELS with knobs, theory section 5).

    Keys are the (zero- or circularly-) padded training patches at every
    position ``p'``; pixel ``p`` keeps those with the same boundary class
    (zeros), ``|p' - p|_inf <= shift_radius``, ``p' = p (mod stride)``, and adds
    ``-|p' - p|^2 / (2 bandwidth^2)`` to their logits; distances are on the
    torus for ``circular``. ``local_only`` gives the LS machine (``p' = p``). ``k``: the patch extent.
    """
    dh, dw = half(k)
    everything = torch.arange(height * width)
    rows, cols = everything // width, everything % width
    circular = boundary == "circular"
    if not circular:
        rclass, cclass = boundary_classes(height, dh), boundary_classes(width, dw)
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
