"""The shared machinery of every score machine: the training set in the oracle's dtype and device, the
streaming softmax over whole images (IS, :meth:`Engine.ideal`), over every circular shift (ES,
:meth:`Engine.equivariant`) and over patches (the ELS family, :meth:`Engine.local`), and the caches they
keep between calls (deduplicated key sets, pixel groups, padded images, per-offset tables, and the data
statistics and per-level masks of the rival theories, :meth:`Engine.cached`).

A theory (:mod:`ablate.oracle.theories`) is handed the engine explicitly and computes with these public
methods; copies made for other knobs (:meth:`Engine.with_config`) share every cache, each keyed by what it
depends on. Shapes: queries ``x [B, C, H, W]`` (signals are held as ``[B, C, 1, L]``), ``a = sqrt(alpha_bar)``
and ``b2 = 1 - alpha_bar`` ``[B]`` in the engine's dtype, ``images [N, C, H, W]`` (one class when conditional).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Hashable

import torch

from ablate.oracle.config import CPU_TILE_BYTES, DEVICE_TILE_BYTES, OracleConfig
from ablate.oracle.keys import KeySet, augment_queries, build_key_set, centre_index, select_columns, stream_keys
from ablate.oracle.patches import Group, half, offset_table, pad, patches_at, shared_key_groups
from ablate.oracle.prune import dense_softmax, pruned_group_softmax
from ablate.oracle.softmax import StreamingSoftmax, exp_shifted_

PRUNE_MIN_KEYS = 16384  # smaller key sets are cheaper to visit densely than to cluster
PRUNE_MAX_B2 = 0.1  # above this noise level the bounds almost never skip a cluster (measured on MNIST)
LEVEL_CACHE = 64  # per-level entries (a mask or patch shape per noise level and class) kept; a sampler visits ~20


def box_sums(t: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """The sums of ``t [..., Hp, Wp]`` over every ``kh x kw`` window (stride 1, no padding):
    ``[..., Hp - kh + 1, Wp - kw + 1]`` in ``t``'s dtype, read off float64 integral images (rounding ~1e-16
    of the image's total, whatever the window)."""
    c = torch.nn.functional.pad(t.double().cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    return (c[..., kh:, kw:] - c[..., :-kh, kw:] - c[..., kh:, :-kw] + c[..., :-kh, :-kw]).to(t.dtype)


class Engine:
    """The training set ``images [N, C, H, W]`` (already on ``device`` in ``dtype``; signals as ``H = 1``), the
    config whose boundary and knobs the patch machines follow, and the caches."""

    def __init__(self, config: OracleConfig, images: torch.Tensor, spatial: int) -> None:
        self.config = config
        self.images = images
        self.spatial = spatial  # 1: signals (held as images of height 1), 2: images
        self.device, self.dtype = images.device, images.dtype
        _, self.C, self.H, self.W = images.shape
        self.truncation_bound = 0.0  # the largest certified pruning bound since reset (see shared_keys)
        # ((extent, shape columns), label, group) -> key set, least recently used first
        self.keysets: dict[tuple, KeySet] = {}
        self.cache_used = [0]  # bytes of all cached key sets (a list: shared with with_config copies)
        self.pad_cache: list = [None, None]  # [(extent, label), padded images]: shared the same way
        self.group_cache: dict[tuple, list[Group]] = {}  # (extent (kh, kw), boundary, stride) -> pixel groups
        self.offset_cache: dict[tuple, list] = {}  # (extent, LS?) -> per-offset key positions
        self.store: dict[Hashable, Any] = {}  # a theory's own cached values (statistics), by its key
        self.levels: dict[Hashable, Any] = {}  # per-noise-level values (masks, shapes), oldest first

    def with_config(self, config: OracleConfig) -> "Engine":
        """The same engine under another config, sharing every cache (a shallow copy)."""
        other = copy.copy(self)
        other.config = config
        return other

    @property
    def chunk_bytes(self) -> int:
        """The tile size in use: the config's, or by device (:data:`~ablate.oracle.config.CPU_TILE_BYTES`,
        :data:`~ablate.oracle.config.DEVICE_TILE_BYTES`)."""
        if self.config.chunk_bytes is not None:
            return self.config.chunk_bytes
        return CPU_TILE_BYTES if self.device.type == "cpu" else DEVICE_TILE_BYTES

    def release(self) -> int:
        """Drop the cached key sets and the padded copy (shared with every ``with_config`` copy), the bulk of
        an oracle's memory beyond its training set; they are rebuilt on the next call. Returns the bytes of
        key sets dropped. Small caches (pixel groups, statistics, masks) stay."""
        freed = self.cache_used[0]
        self.keysets.clear()
        self.cache_used[0] = 0
        self.pad_cache[:] = [None, None]
        return freed

    def cached(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """A theory's value kept between calls (e.g. the statistics of a training set): ``build()`` once per
        ``key`` (name the theory and what the value depends on in the key)."""
        if key not in self.store:
            self.store[key] = build()
        return self.store[key]

    def by_level(self, a: torch.Tensor, b2: torch.Tensor, key: tuple, build: Callable[[float, float], Any]):
        """For each noise level of the batch: the queries at it (``sel``), its ``a`` and ``b2`` as floats, and
        what ``build(a, b2)`` makes for it (a mask, a patch shape), kept under ``key + (a,)`` (the oldest of
        :data:`LEVEL_CACHE` entries makes room)."""
        for ab in torch.unique(a):
            sel = torch.nonzero(a == ab).flatten()
            av, bv = float(ab), float(b2[sel[0]])
            if key + (av,) not in self.levels:
                if len(self.levels) >= LEVEL_CACHE:
                    self.levels.pop(next(iter(self.levels)))
                self.levels[key + (av,)] = build(av, bv)
            yield sel, av, bv, self.levels[key + (av,)]

    def extent(self, k: int) -> tuple[int, int]:
        """The patch ``(kh, kw)`` of patch size ``k``: ``k x k`` on images, ``1 x k`` on signals (held as
        images of height 1, theory section 11)."""
        return (1, k) if self.spatial == 1 else (k, k)

    def local(self, x, a, b2, k, images, label, cols=None, local_only: bool = False):
        """The ELS family over patches of extent ``k = (kh, kw)`` or, for a shaped patch, their columns ``cols``
        (:func:`ablate.oracle.patches.shape_columns`): LS (``local_only``: each pixel sees its own position's
        patches only), or ELS with this config's boundary and partial-equivariance knobs."""
        cfg = self.config
        if local_only and cols is None:
            return self.local_box(x, a, b2, k, images)
        if local_only or cfg.shift_radius is not None or cfg.position_bandwidth is not None:
            return self.position_aware(x, a, b2, k, images, local_only, cols)
        return self.shared_keys(x, a, b2, k, images, label, cols)

    def chunk_rows(self, width: int) -> int:
        return max(1, self.chunk_bytes // (width * self.images.element_size()))

    def ideal(self, x, a, b2, images):
        """IS: one key per training image, compared and averaged as whole images."""
        B = len(x)
        q = x.reshape(B, -1)
        state = StreamingSoftmax((B,), q.shape[1], self.dtype, self.device)
        s1, s2 = (a / b2)[:, None], (a * a / (2 * b2))[:, None]
        rows = self.chunk_rows(max(q.shape[1], B))
        for s in range(0, len(images), rows):
            z = images[s:s + rows].reshape(-1, q.shape[1])
            state.add(s1 * (q @ z.T) - s2 * (z * z).sum(1), z)
        return state.result().reshape(x.shape)

    def equivariant(self, x, a, b2, images):
        """ES: the IS machine over every circular shift of every training image, via FFT.

        For image z and shift s, <x, roll(z, s)> is the circular cross-correlation
        of x and z at s, and sum_s w_s roll(z, s) the circular convolution of w and z.
        """
        B, C, H, W = x.shape
        fx = torch.fft.rfft2(x)
        state_m = torch.full((B,), float("-inf"), dtype=self.dtype, device=self.device)
        state_l = torch.zeros(B, dtype=self.dtype, device=self.device)
        acc = torch.zeros(B, C, H, W, dtype=self.dtype, device=self.device)
        s1, s2 = (a / b2)[:, None, None, None], (a * a / (2 * b2))[:, None, None, None]
        step = max(1, self.chunk_bytes // (B * H * W * 16))
        for s in range(0, len(images), step):
            z = images[s:s + step]
            fz = torch.fft.rfft2(z)
            corr = torch.fft.irfft2((fx[:, None] * fz[None].conj()).sum(2), s=(H, W))  # [B, n, H, W]
            logits = s1 * corr - s2 * (z * z).sum((1, 2, 3))[None, :, None, None]
            m_new = torch.maximum(state_m, logits.amax(dim=(1, 2, 3)))
            scale = torch.exp(state_m - m_new)
            w = exp_shifted_(logits, m_new[:, None, None, None])
            state_l = state_l * scale + w.sum((1, 2, 3))
            fw = torch.fft.rfft2(w)  # [B, n, H, W/2+1]
            conv = torch.fft.irfft2((fw[:, :, None] * fz[None]).sum(1), s=(H, W))  # [B, C, H, W]
            acc = acc * scale[:, None, None, None] + conv
            state_m = m_new
        return acc / state_l[:, None, None, None]

    def query_patches(self, x, k, boundary, cols=None):
        """Every pixel's patch of x (its columns ``cols`` for a shaped patch): ``[B, H*W, D]``."""
        everywhere = torch.arange(self.H * self.W, device=self.device)
        return select_columns(patches_at(pad(x, half(k), boundary), k, everywhere, self.W), cols)

    def shared_keys(self, x, a, b2, k, images, label, cols=None):
        """ELS without knobs or with stride alone: the pixels of a group share one key set (one GEMM for all
        seeds)."""
        B = len(x)
        boundary = self.config.boundary
        q_all = self.query_patches(x, k, boundary, cols)
        patch = (k, None if cols is None else tuple(cols.tolist()))  # what a cached key set was cut with
        out = torch.empty(B, self.H * self.W, self.C, dtype=self.dtype, device=self.device)
        groups = self.groups(k)
        for gi, group in enumerate(groups):
            qpos = group.query_pos.to(self.device)
            q = q_all[:, qpos].reshape(-1, q_all.shape[-1])  # [B * P, D], batch-major
            s1 = (a / b2).repeat_interleave(len(qpos))
            s2 = (a * a / (2 * b2)).repeat_interleave(len(qpos))
            keyset = self.keyset(patch, cols, images, label, gi, group)
            tile = self.chunk_rows(1)  # logits per tile
            if (keyset is not None and self.config.prune_tol > 0 and len(keyset.keys) >= PRUNE_MIN_KEYS
                    and float(b2.max()) <= PRUNE_MAX_B2):
                res, bound = pruned_group_softmax(q, s1, s2, keyset, self.config.prune_tol, tile)
                self.truncation_bound = max(self.truncation_bound, bound)
            else:
                rows = max(1, tile // min(len(q), 1024))
                chunks = keyset.chunks(rows) if keyset is not None else stream_keys(
                    self.padded(k, label, images), k, group.key_pos.to(self.device), self.W, rows, cols)
                state = StreamingSoftmax((len(q),), self.C, self.dtype, self.device)
                dense_softmax(state, augment_queries(q, s1, s2), chunks, tile)
                res = state.result()
            out[:, qpos] = res.reshape(B, len(qpos), self.C)
        return out.permute(0, 2, 1).reshape(B, self.C, self.H, self.W)

    def groups(self, k: tuple[int, int]) -> list[Group]:
        """The pixel groups of the shared-key path for patch extent ``k`` (this config's boundary and
        stride; :func:`ablate.oracle.patches.shared_key_groups`), computed once and kept (copies made by
        :meth:`with_knobs` share them)."""
        key = (k, self.config.boundary, self.config.stride)
        if key not in self.group_cache:
            self.group_cache[key] = shared_key_groups(self.H, self.W, k, self.config.boundary, self.config.stride)
        return self.group_cache[key]

    def keyset(self, patch, cols, images, label, gi, group) -> KeySet | None:
        """The cached, deduplicated keys of a group, or None: stream them. ``patch`` = ``(k, shape)`` names
        the patch the keys are cut with (``cols`` of the ``k x k`` square; None: all of it). A set is built
        when it fits in ``cache_bytes`` with the oracle's other cached sets, after evicting the least recently
        used sets of other patches if need be (a sampler visits one k for a few steps, then moves on; the
        sets of the patch in use are never evicted for each other)."""
        k = patch[0]
        cache_key = (patch, label, gi)
        keyset = self.keysets.pop(cache_key, None)
        if keyset is not None:
            self.keysets[cache_key] = keyset  # most recently used last
            return keyset
        # what building the set takes per key before deduplication (an upper bound on what it keeps):
        # the buffer (key, squared norm, log count: D + 2 numbers), the centre value (C numbers), and
        # about four int64 (hash, sort order, group, first occurrence)
        D = self.C * k[0] * k[1] if cols is None else len(cols)
        size = len(images) * len(group.key_pos) * ((D + 2 + self.C) * self.images.element_size() + 32)
        budget = self.config.cache_bytes
        in_use = sum(s.nbytes for key, s in self.keysets.items() if key[:2] == (patch, label))
        if in_use + size > budget:
            return None
        for old in [key for key in self.keysets if key[:2] != (patch, label)]:  # least recently used first
            if self.cache_used[0] + size <= budget:
                break
            self.cache_used[0] -= self.keysets.pop(old).nbytes
        keyset = build_key_set(self.padded(k, label, images), k, group.key_pos.to(self.device), self.W,
                               self.chunk_rows(D), cols)
        self.cache_used[0] += keyset.nbytes
        self.keysets[cache_key] = keyset
        return keyset

    def padded(self, k, label, images):
        """The training images (of one class) padded for patch size k: ``[N, C, H + 2d, W + 2d]``; the last
        one is kept, as every pixel group of a step extracts from it."""
        if self.pad_cache[0] != (k, label):
            self.pad_cache[:] = [(k, label), pad(images, half(k), self.config.boundary)]
        return self.pad_cache[1]

    def local_box(self, x, a, b2, k, images):
        """LS over square or rectangular patches by box sums, without cutting a patch: pixel ``p``'s logit
        for image ``z`` is ``s1 <x_P, z_P> - s2 |z_P|^2`` over its patch ``P``, and both are sums over ``P``
        of per-pixel maps (``sum_c x z`` and ``sum_c z^2``, padded as the patches are), read off integral
        images. The cost per image is a few passes over the image whatever ``k`` (the patch path cuts
        ``N H W`` patches of ``k^2`` numbers on every call); the same answer (tests: the brute force)."""
        B, C, H, W = x.shape
        HW, (kh, kw), d = H * W, k, half(k)
        s1, s2 = (a / b2)[None, :, None], (a * a / (2 * b2))[None, :, None]
        state = StreamingSoftmax((HW, B), C, self.dtype, self.device)
        padded_pixels = (H + kh - 1) * (W + kw - 1)
        # images per tile: about (B + 1) padded float64 maps per image (the B cross maps and z^2, with their
        # integral images), times max(C, 2) for the product before its channel sum
        step = max(1, 16 * self.chunk_bytes // (8 * (B + 1) * padded_pixels * max(C, 2)))
        for s in range(0, len(images), step):
            z = images[s:s + step]  # [n, C, H, W]
            n = len(z)
            cross = (x[:, None] * z[None]).sum(2).reshape(B * n, 1, H, W)  # sum_c x z, per (query, image)
            dot = box_sums(pad(cross, d, self.config.boundary), kh, kw).reshape(B, n, HW)
            sq = box_sums(pad((z * z).sum(1, keepdim=True), d, self.config.boundary), kh, kw).reshape(n, HW)
            logits = s1 * dot.permute(2, 0, 1) - s2 * sq.T[:, None, :]  # [HW, B, n]
            state.add(logits, z.reshape(n, C, HW).permute(2, 0, 1))  # values: z at the pixel, [HW, n, C]
        return state.result().permute(1, 2, 0).reshape(B, C, H, W)

    def position_aware(self, x, a, b2, k, images, local_only, cols=None):
        """LS and ELS with knobs: pixel p sees the keys at its own positions p' (one batched GEMM
        per relative offset p' - p), plus a per-offset logit bias. ``cols``: a shaped patch's columns."""
        cfg = self.config
        B, HW, D = len(x), self.H * self.W, self.C * k[0] * k[1] if cols is None else len(cols)
        table = self.offset_cache.get((k, local_only))
        if table is None:
            table = offset_table(self.H, self.W, k, cfg.boundary, cfg.shift_radius, cfg.stride,
                                 cfg.position_bandwidth, local_only)
            table = [(o.query_pos.to(self.device), o.key_pos.to(self.device), o.bias.to(self.device, self.dtype))
                     for o in table]
            self.offset_cache[(k, local_only)] = table
        q = self.query_patches(x, k, cfg.boundary, cols).transpose(0, 1)  # [HW, B, D]
        s1, s2 = (a / b2)[None, :, None], (a * a / (2 * b2))[None, :, None]
        state = StreamingSoftmax((HW, B), self.C, self.dtype, self.device)
        everywhere = torch.arange(HW, device=self.device)
        centre = centre_index(self.C, k, cols).to(self.device)
        step = max(1, 16 * self.chunk_bytes // (HW * D * self.images.element_size()))
        for s in range(0, len(images), step):
            keys = select_columns(patches_at(pad(images[s:s + step], half(k), cfg.boundary), k, everywhere, self.W),
                                  cols)  # [n, HW, D]
            keys = keys.transpose(0, 1).contiguous()  # [HW, n, D]
            sq = (keys * keys).sum(-1)  # [HW, n]
            values = keys[..., centre]  # [HW, n, C]
            for qpos, kpos, bias in table:
                full = len(qpos) == HW
                qq = q if full else q[qpos]
                logits = s1 * torch.bmm(qq, keys[kpos].transpose(1, 2)) - s2 * sq[kpos][:, None, :] + bias[:, None, None]
                state.add(logits, values[kpos], None if full else qpos)
        return state.result().permute(1, 2, 0).reshape(B, self.C, self.H, self.W)
