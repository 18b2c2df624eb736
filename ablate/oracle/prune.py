"""Exact pruning of keys that cannot matter (low noise), by cluster bounds.

Keys of a :class:`KeySet` are grouped into clusters with centre ``c`` and
radius ``R``. In distance form the logit of key j is
``-||q - a Q_j||^2 / (2 b2) + log count_j`` (plus a per-query constant), and by
the triangle inequality every key of a cluster lies at distance
``>= max(0, ||q - a c|| - a R)`` and some key at ``<= ||q - a c|| + a R``. A
cluster whose largest possible mass is below ``tol / M`` of a proven lower
bound on the partition function is skipped: the skipped weight is at most
``tol`` in total, so the weighted mean of values in [-1, 1] moves by at most
``2 * tol``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ablate.oracle.keys import KeySet, augment_queries
from ablate.oracle.softmax import StreamingSoftmax

DENSE_FRACTION = 0.5  # visit everything densely when bounds keep more than this share of pairs
QUERY_TILE = 256


@dataclass
class Clusters:
    centres: torch.Tensor      # [M, D]
    radii: torch.Tensor        # [M]
    log_mass: torch.Tensor     # [M] log of the summed counts
    bounds: list[tuple[int, int]]  # key row range of each cluster (keys sorted by cluster)


def _kmeans(points: torch.Tensor, m: int, iters: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    centres = points[torch.randperm(len(points), generator=g)[:m].to(points.device)].clone()
    for _ in range(iters):
        assign = _nearest(points, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=len(centres)).to(points.dtype)
        keep = counts > 0
        centres[keep] = sums[keep] / counts[keep, None]
    return centres


def _nearest(points: torch.Tensor, centres: torch.Tensor, rows: int = 65536) -> torch.Tensor:
    cn = (centres * centres).sum(1)
    return torch.cat([(cn - 2 * points[s:s + rows] @ centres.T).argmin(1) for s in range(0, len(points), rows)])


def cluster_keys(keyset: KeySet, size: int = 128) -> Clusters:
    """Sort ``keyset`` in place by k-means cluster (about ``size`` keys each) and return the clusters."""
    n = len(keyset.keys)
    m = max(1, min(4096, n // size))
    sample = keyset.keys[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:50 * m].to(keyset.keys.device)]
    centres = _kmeans(sample, m)
    assign = _nearest(keyset.keys, centres)
    order = torch.argsort(assign, stable=True)
    keyset.reorder(order)
    assign = assign[order]
    counts = torch.bincount(assign, minlength=m)
    ends = torch.cumsum(counts, 0).tolist()
    starts = [0] + ends[:-1]
    dist = (keyset.keys - centres[assign]).norm(dim=1)
    radii = torch.zeros(m, dtype=dist.dtype, device=dist.device).scatter_reduce_(0, assign, dist, "amax")
    mass = torch.zeros(m, dtype=dist.dtype, device=dist.device).index_add_(0, assign, keyset.log_counts.exp())
    keep = [i for i in range(m) if counts[i] > 0]
    return Clusters(centres[keep], radii[keep], mass[keep].log(), [(starts[i], ends[i]) for i in keep])


def pruned_group_softmax(q: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, keyset: KeySet, tol: float,
                         chunk_rows: int) -> tuple[torch.Tensor, float]:
    """Softmax-weighted centre values ``[Q, C]`` for queries ``q [Q, D]`` with logit scales
    ``s1 = a / b2``, ``s2 = a^2 / (2 b2)`` (per query), skipping provably negligible clusters; and the
    certified bound on what the skipping changed: the largest over queries of ``2 * sum(skipped upper
    masses) / exp(lower)`` (values lie in [-1, 1], so a skipped share ``w`` of the weight moves the mean by
    at most ``2 w``; 0 when nothing was skipped; at most ``2 * tol`` by construction)."""
    if not hasattr(keyset, "clusters"):
        keyset.clusters = cluster_keys(keyset)  # type: ignore[attr-defined]
    cl: Clusters = keyset.clusters  # type: ignore[attr-defined]
    a = 2 * s2 / s1       # sqrt(alpha_bar), recovered from the two scales
    inv2b2 = s1 / (2 * a)  # 1 / (2 b2)
    qn = (q * q).sum(1)
    # ||q - a c||^2 for every (query, cluster)
    dc2 = (qn[:, None] - 2 * a[:, None] * (q @ cl.centres.T) + (a * a)[:, None] * (cl.centres ** 2).sum(1)).clamp_min(0)
    dc = dc2.sqrt()
    near = (dc - a[:, None] * cl.radii).clamp_min(0)
    far = dc + a[:, None] * cl.radii
    upper = cl.log_mass - near * near * inv2b2[:, None]          # >= log of the cluster's total mass
    lower = (-(far * far) * inv2b2[:, None]).amax(1, keepdim=True)  # <= log of the partition function
    visit = upper >= lower - math.log(len(cl.bounds) / tol)
    qa = augment_queries(q, s1, s2)
    C = keyset.values.shape[1]
    if visit.float().mean() > DENSE_FRACTION:
        state = StreamingSoftmax((len(q),), C, q.dtype, q.device)
        dense_softmax(state, qa, keyset.chunks(max(1, chunk_rows // min(len(q), 1024))), chunk_rows)
        return state.result(), 0.0
    # the bound on the weight of what is skipped, relative to the partition function: a query visits every
    # cluster of its tile, so only clusters no query of the tile visits are skipped for it; the bound below
    # takes every cluster the query itself does not need, which is at least as large
    # Tiles of similar queries (sorted by nearest cluster) share most of the clusters they must visit.
    order = torch.argsort(dc.argmin(1))
    sizes = torch.tensor([e - s for s, e in cl.bounds], device=q.device)
    cluster_of_key = torch.repeat_interleave(torch.arange(len(sizes), device=q.device), sizes)
    out = torch.empty(len(q), C, dtype=q.dtype, device=q.device)
    for s in range(0, len(q), QUERY_TILE):
        tile = order[s:s + QUERY_TILE]
        chosen = visit[tile].any(0)[cluster_of_key]
        keys, values = keyset.augmented[chosen], keyset.values[chosen]
        state = StreamingSoftmax((len(tile),), C, q.dtype, q.device)
        dense_softmax(state, qa[tile], ((keys[r:r + chunk_rows // len(tile)], values[r:r + chunk_rows // len(tile)])
                                        for r in range(0, len(keys), max(1, chunk_rows // len(tile)))), chunk_rows)
        out[tile] = state.result()
    skipped = torch.where(visit, torch.full_like(upper, -math.inf), upper)
    bound = float((2 * torch.exp(torch.logsumexp(skipped.double(), 1) - lower[:, 0].double())).max())
    return out, bound


def dense_softmax(state: StreamingSoftmax, qa: torch.Tensor, chunks, tile_elems: int) -> None:
    """Fold every key chunk into ``state`` for augmented queries ``qa [Q, D + 2]``, in tiles of about
    ``tile_elems`` logits so that each tile stays in cache."""
    for keys, values in chunks:
        rows = max(1, tile_elems // max(len(keys), 1))
        for s in range(0, len(qa), rows):
            sl = slice(s, s + rows)
            state.add(qa[sl] @ keys.T, values, None if rows >= len(qa) else sl)
