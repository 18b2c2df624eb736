"""The score machines of ``docs/theory.md``: IS, LS, ELS (and its partial-equivariance
family) and ES, each returning the posterior mean of the clean image ``x0_hat``.

Every machine is a softmax-weighted average of values over keys with logits
``(a * <query, Q_j> - a^2 * ||Q_j||^2 / 2) / b2 (+ log count_j + position bias)``,
where ``a = sqrt(alpha_bar)``, ``b2 = 1 - alpha_bar``, computed by streaming
log-sum-exp over key chunks (:mod:`ablate.oracle.softmax`).
"""
from __future__ import annotations

import copy
import dataclasses

import torch

from ablate.oracle import rivals
from ablate.oracle.config import CPU_TILE_BYTES, DEVICE_TILE_BYTES, RIVALS, OracleConfig, PatchSchedule
from ablate.oracle.keys import KeySet, augment_queries, build_key_set, centre_index, select_columns, stream_keys
from ablate.oracle.patches import Group, half, offset_table, pad, patches_at, shared_key_groups
from ablate.oracle.prune import dense_softmax, pruned_group_softmax
from ablate.oracle.softmax import StreamingSoftmax, exp_shifted_

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRUNE_MIN_KEYS = 16384  # smaller key sets are cheaper to visit densely than to cluster
PRUNE_MAX_B2 = 0.1  # above this noise level the bounds almost never skip a cluster (measured on MNIST)


def _check_finite(name: str, t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values; all values must be finite")


class Oracle:
    """A training-free denoiser ``x0_hat = D(x_t, alpha_bar)`` over a fixed training set.

    Build it with :func:`ablate.oracle.build_oracle`. ``train_images`` is float
    ``[N, C, H, W]`` (images) or ``[N, C, L]`` (signals, theory section 11) in [-1, 1];
    ``train_labels`` int ``[N]`` enables class-conditional denoising. Signals are held as
    images of height 1 with ``1 x k`` patches, so every machine, boundary and knob is the
    same code; ``denoise`` takes and returns the caller's rank.
    """

    def __init__(self, config: OracleConfig, train_images: torch.Tensor,
                 train_labels: torch.Tensor | None = None, device: str | torch.device | None = None) -> None:
        if not isinstance(train_images, torch.Tensor) or train_images.dim() not in (3, 4):
            raise ValueError("train_images must be a float tensor [N, C, H, W] (images) or [N, C, L] (signals); got "
                             f"{type(train_images).__name__} of shape {tuple(getattr(train_images, 'shape', ()))}")
        self.spatial = train_images.dim() - 2  # 1: signals, 2: images
        if len(train_images) == 0:
            raise ValueError("train_images is empty; the oracle needs at least one training image")
        if not train_images.is_floating_point():
            raise ValueError(f"train_images has dtype {train_images.dtype}; give float images scaled to [-1, 1] "
                             "(for uint8 0..255: images.float() / 127.5 - 1)")
        _check_finite("train_images", train_images)
        low, high = float(train_images.min()), float(train_images.max())
        if low < -1 - 1e-4 or high > 1 + 1e-4:
            raise ValueError(f"train_images lie in [{low:g}, {high:g}] but every machine assumes data in [-1, 1] "
                             "(the forward process of theory section 1); rescale them, e.g. x / 127.5 - 1 for 0..255 "
                             "or 2 x - 1 for 0..1")
        self.config = config
        self.truncation_bound = 0.0  # set by every denoise call (see there)
        self.device = torch.device(device) if device is not None else train_images.device
        self.dtype = _DTYPES[config.dtype]
        self.images = train_images.to(self.device, self.dtype).contiguous()
        if self.spatial == 1:
            self.images = self.images[:, :, None, :]  # [N, C, 1, L]
        _, self.C, self.H, self.W = self.images.shape
        if train_labels is not None:
            train_labels = torch.as_tensor(train_labels).to(self.device)
            if train_labels.is_floating_point() and not torch.equal(train_labels, train_labels.round()):
                raise ValueError("train_labels must be whole class numbers; got fractional values")
            train_labels = train_labels.long()
            if train_labels.shape != (len(train_images),):
                raise ValueError(f"train_labels must have shape [{len(train_images)}], got {tuple(train_labels.shape)}")
        self.labels = train_labels
        rivals.check_covariance(config.machine, len(train_images))
        self._check_patch_sizes(config)
        # ((extent, shape columns), label, group) -> key set, least recently used first
        self._keysets: dict[tuple, KeySet] = {}
        self._cache_used = [0]  # bytes of all cached key sets (a list: shared with with_patch_size copies)
        self._pad_cache: list = [None, None]  # [(extent, label), padded images]: shared the same way
        self._groups: dict[tuple, list[Group]] = {}  # (extent (kh, kw), boundary, stride) -> pixel groups
        self._offsets: dict[tuple, list] = {}  # (extent, LS?) -> per-offset key positions
        self._rival_stats: dict = {}  # (label, spectral only?) -> rivals.Statistics (float64, see rivals.stats)
        # ("mask" or "shape", label, tau, a) -> a PCA-locality mask or patch shape, oldest first
        self._rival_masks: dict = {}

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one datum: ``(C, H, W)`` or ``(C, L)``."""
        return (self.C, self.W) if self.spatial == 1 else (self.C, self.H, self.W)

    def _check_patch_sizes(self, config: OracleConfig) -> None:
        config.check_image_size(*self.data_shape[1:])

    def with_patch_size(self, patch_size: int | PatchSchedule) -> "Oracle":
        """The same machine with another patch size or schedule, sharing this one's training images and
        caches (extracted, deduplicated keys; pixel groups), so trying many k costs the extraction once."""
        return self.with_knobs(patch_size=patch_size)

    def with_knobs(self, **changes) -> "Oracle":
        """The same machine with other config values (``patch_size``, PCA locality's ``mask_threshold``, ...),
        sharing this one's training images and caches (key sets, pixel groups, data statistics, masks: every
        cache is keyed by what it depends on), so a calibration over many values builds each once."""
        config = dataclasses.replace(self.config, **changes)
        self._check_patch_sizes(config)
        other = copy.copy(self)  # shallow: the cache dicts are shared
        other.config = config
        return other

    @property
    def chunk_bytes(self) -> int:
        """The tile size in use: the config's, or by device (:data:`~ablate.oracle.config.CPU_TILE_BYTES`,
        :data:`~ablate.oracle.config.DEVICE_TILE_BYTES`)."""
        if self.config.chunk_bytes is not None:
            return self.config.chunk_bytes
        return CPU_TILE_BYTES if self.device.type == "cpu" else DEVICE_TILE_BYTES

    # ------------------------------------------------------------------ planning
    def plan(self, alpha_bars, batch: int, labels: torch.Tensor | None = None, timing: bool = True,
             what: str = "this job", budget: int | None = None):
        """Estimate a job of one ``batch``-sized call per noise level of ``alpha_bars`` (a sample's steps),
        and refuse it (``MemoryError``, saying what to change) when its memory estimate exceeds ``budget``
        (default: ``ABLATE_MEMORY_BUDGET``, else what the machine has available). Returns the
        :class:`~ablate.oracle.plan.Estimate`; ``timing=False`` checks memory only (cheap; no seconds)."""
        from ablate.oracle import plan

        est = plan.estimate(self, plan.sample_calls(self, batch, alpha_bars, labels), timing=timing)
        plan.check_memory(est, budget, what)
        return est

    # ------------------------------------------------------------------ interface
    def denoise(self, x_t: torch.Tensor, alpha_bar: float | torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior mean of the clean image. x_t ``[B, C, H, W]`` (``[B, C, L]`` for signals); alpha_bar a
        float or ``[B]`` in (0, 1); labels ``[B]`` for class-conditional machines. Returns x_t's shape.
        Afterwards ``truncation_bound`` holds the certified bound on the largest change any entry of this call's
        ``x0_hat`` took from keys skipped by pruning (``prune_tol``; 0 when none was skipped)."""
        x, ab, labels = self._validate(x_t, alpha_bar, labels)
        self.truncation_bound = 0.0
        out = torch.empty_like(x)
        ks = torch.tensor([self.config.schedule().k_at(float(a)) for a in ab], device=self.device)
        lab = labels if labels is not None else torch.full((len(x),), -1, device=self.device)
        for key in torch.unique(torch.stack([ks, lab]), dim=1).T:
            k, label = int(key[0]), int(key[1])
            sel = torch.nonzero((ks == k) & (lab == label)).flatten()
            images = self.images if label < 0 else self.images[self.labels == label]
            out[sel] = self._denoise(x[sel], ab[sel], k, images, label)
        return out.reshape(x_t.shape).to(x_t.dtype)

    __call__ = denoise

    # ------------------------------------------------------------------ dispatch
    def _denoise(self, x, ab, k, images, label):
        machine = self.config.machine
        a = ab.sqrt().to(self.dtype)  # a and b2 from float64 alpha_bar: b2 keeps its digits near 1
        b2 = (1.0 - ab).to(self.dtype)
        if machine == "ideal":
            return self._ideal(x, a, b2, images)
        if machine in RIVALS:
            return rivals.denoise(self, x, a, b2, images, label)
        if machine == "es":
            return self._equivariant(x, a, b2, images)
        return self._local(x, a, b2, self.extent(k), images, label)

    def extent(self, k: int) -> tuple[int, int]:
        """The patch ``(kh, kw)`` of patch size ``k``: ``k x k`` on images, ``1 x k`` on signals (held as
        images of height 1, theory section 11)."""
        return (1, k) if self.spatial == 1 else (k, k)

    def _local(self, x, a, b2, k, images, label, cols=None):
        """LS, or ELS with its knobs, over patches of extent ``k = (kh, kw)`` or, for a shaped patch, their
        columns ``cols`` (:func:`ablate.oracle.patches.shape_columns`)."""
        cfg = self.config
        if cfg.machine == "ls" or cfg.shift_radius is not None or cfg.position_bandwidth is not None:
            return self._position_aware(x, a, b2, k, images, cfg.machine == "ls", cols)
        return self._shared_keys(x, a, b2, k, images, label, cols)

    def _chunk_rows(self, width: int) -> int:
        return max(1, self.chunk_bytes // (width * self.images.element_size()))

    def _ideal(self, x, a, b2, images):
        """IS: one key per training image, compared and averaged as whole images."""
        B = len(x)
        q = x.reshape(B, -1)
        state = StreamingSoftmax((B,), q.shape[1], self.dtype, self.device)
        s1, s2 = (a / b2)[:, None], (a * a / (2 * b2))[:, None]
        rows = self._chunk_rows(max(q.shape[1], B))
        for s in range(0, len(images), rows):
            z = images[s:s + rows].reshape(-1, q.shape[1])
            state.add(s1 * (q @ z.T) - s2 * (z * z).sum(1), z)
        return state.result().reshape(x.shape)

    def _equivariant(self, x, a, b2, images):
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

    def _query_patches(self, x, k, boundary, cols=None):
        """Every pixel's patch of x (its columns ``cols`` for a shaped patch): ``[B, H*W, D]``."""
        everywhere = torch.arange(self.H * self.W, device=self.device)
        return select_columns(patches_at(pad(x, half(k), boundary), k, everywhere, self.W), cols)

    def _shared_keys(self, x, a, b2, k, images, label, cols=None):
        """ELS without knobs or with stride alone: the pixels of a group share one key set (one GEMM for all
        seeds)."""
        B = len(x)
        boundary = self.config.boundary
        q_all = self._query_patches(x, k, boundary, cols)
        patch = (k, None if cols is None else tuple(cols.tolist()))  # what a cached key set was cut with
        out = torch.empty(B, self.H * self.W, self.C, dtype=self.dtype, device=self.device)
        groups = self.groups(k)
        for gi, group in enumerate(groups):
            qpos = group.query_pos.to(self.device)
            q = q_all[:, qpos].reshape(-1, q_all.shape[-1])  # [B * P, D], batch-major
            s1 = (a / b2).repeat_interleave(len(qpos))
            s2 = (a * a / (2 * b2)).repeat_interleave(len(qpos))
            keyset = self._keyset(patch, cols, images, label, gi, group)
            tile = self._chunk_rows(1)  # logits per tile
            if (keyset is not None and self.config.prune_tol > 0 and len(keyset.keys) >= PRUNE_MIN_KEYS
                    and float(b2.max()) <= PRUNE_MAX_B2):
                res, bound = pruned_group_softmax(q, s1, s2, keyset, self.config.prune_tol, tile)
                self.truncation_bound = max(self.truncation_bound, bound)
            else:
                rows = max(1, tile // min(len(q), 1024))
                chunks = keyset.chunks(rows) if keyset is not None else stream_keys(
                    self._padded(k, label, images), k, group.key_pos.to(self.device), self.W, rows, cols)
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
        if key not in self._groups:
            self._groups[key] = shared_key_groups(self.H, self.W, k, self.config.boundary, self.config.stride)
        return self._groups[key]

    def _keyset(self, patch, cols, images, label, gi, group) -> KeySet | None:
        """The cached, deduplicated keys of a group, or None: stream them. ``patch`` = ``(k, shape)`` names
        the patch the keys are cut with (``cols`` of the ``k x k`` square; None: all of it). A set is built
        when it fits in ``cache_bytes`` with the oracle's other cached sets, after evicting the least recently
        used sets of other patches if need be (a sampler visits one k for a few steps, then moves on; the
        sets of the patch in use are never evicted for each other)."""
        k = patch[0]
        cache_key = (patch, label, gi)
        keyset = self._keysets.pop(cache_key, None)
        if keyset is not None:
            self._keysets[cache_key] = keyset  # most recently used last
            return keyset
        # what building the set takes per key before deduplication (an upper bound on what it keeps):
        # the buffer (key, squared norm, log count: D + 2 numbers), the centre value (C numbers), and
        # about four int64 (hash, sort order, group, first occurrence)
        D = self.C * k[0] * k[1] if cols is None else len(cols)
        size = len(images) * len(group.key_pos) * ((D + 2 + self.C) * self.images.element_size() + 32)
        budget = self.config.cache_bytes
        in_use = sum(s.nbytes for key, s in self._keysets.items() if key[:2] == (patch, label))
        if in_use + size > budget:
            return None
        for old in [key for key in self._keysets if key[:2] != (patch, label)]:  # least recently used first
            if self._cache_used[0] + size <= budget:
                break
            self._cache_used[0] -= self._keysets.pop(old).nbytes
        keyset = build_key_set(self._padded(k, label, images), k, group.key_pos.to(self.device), self.W,
                               self._chunk_rows(D), cols)
        self._cache_used[0] += keyset.nbytes
        self._keysets[cache_key] = keyset
        return keyset

    def _padded(self, k, label, images):
        """The training images (of one class) padded for patch size k: ``[N, C, H + 2d, W + 2d]``; the last
        one is kept, as every pixel group of a step extracts from it."""
        if self._pad_cache[0] != (k, label):
            self._pad_cache[:] = [(k, label), pad(images, half(k), self.config.boundary)]
        return self._pad_cache[1]

    def _position_aware(self, x, a, b2, k, images, local_only, cols=None):
        """LS and ELS with knobs: pixel p sees the keys at its own positions p' (one batched GEMM
        per relative offset p' - p), plus a per-offset logit bias. ``cols``: a shaped patch's columns."""
        cfg = self.config
        B, HW, D = len(x), self.H * self.W, self.C * k[0] * k[1] if cols is None else len(cols)
        table = self._offsets.get((k, local_only))
        if table is None:
            table = offset_table(self.H, self.W, k, cfg.boundary, cfg.shift_radius, cfg.stride,
                                 cfg.position_bandwidth, local_only)
            table = [(o.query_pos.to(self.device), o.key_pos.to(self.device), o.bias.to(self.device, self.dtype))
                     for o in table]
            self._offsets[(k, local_only)] = table
        q = self._query_patches(x, k, cfg.boundary, cols).transpose(0, 1)  # [HW, B, D]
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

    # ------------------------------------------------------------------ validation
    def _validate(self, x_t, alpha_bar, labels):
        what = "[B, C, L] (this oracle holds signals)" if self.spatial == 1 else "[B, C, H, W]"
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != self.spatial + 2:
            raise ValueError(f"x_t must be a tensor {what}; got shape {tuple(getattr(x_t, 'shape', ()))}")
        if tuple(x_t.shape[1:]) != self.data_shape:
            raise ValueError(f"x_t has per-item shape {tuple(x_t.shape[1:])} but the training data are "
                             f"{self.data_shape}; they must match")
        if len(x_t) == 0:
            raise ValueError("x_t is an empty batch; pass at least one image")
        if not x_t.is_floating_point():
            raise ValueError(f"x_t has dtype {x_t.dtype}; a noisy image is a float tensor (x_t = a x_0 + b eps)")
        _check_finite("x_t", x_t)
        if isinstance(alpha_bar, (str, bytes)):
            raise ValueError(f"alpha_bar must be a number or a [B] tensor in (0, 1), got the string {alpha_bar!r}")
        try:
            ab = torch.as_tensor(alpha_bar, dtype=torch.float64).to(self.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"alpha_bar must be a number or a [B] tensor in (0, 1), got {alpha_bar!r}") from err
        if ab.dim() == 0:
            ab = ab.expand(len(x_t))
        if ab.shape != (len(x_t),):
            raise ValueError(f"alpha_bar must be a float or a [B] = [{len(x_t)}] tensor, got shape {tuple(ab.shape)}")
        if not torch.isfinite(ab).all() or (ab <= 0).any() or (ab >= 1).any():
            raise ValueError(f"alpha_bar must lie in the open interval (0, 1); got {ab.tolist()}")
        if labels is not None:
            if self.labels is None:
                raise ValueError("labels were given to denoise() but the oracle was built without "
                                 "train_labels; pass labels to build_oracle for conditional use")
            labels = torch.as_tensor(labels).to(self.device)
            if labels.is_floating_point() and not torch.equal(labels, labels.round()):
                raise ValueError(f"labels must be whole class numbers, got {labels.tolist()}")
            labels = labels.long()
            if labels.dim() == 0:
                labels = labels.expand(len(x_t))
            if labels.shape != (len(x_t),):
                raise ValueError(f"labels must have shape [{len(x_t)}], got {tuple(labels.shape)}")
            known = set(torch.unique(self.labels).tolist())
            unknown = set(labels.tolist()) - known
            if unknown:
                raise ValueError(f"labels {sorted(unknown)} have no training images; allowed: {sorted(known)}")
        return x_t.to(self.device, self.dtype).reshape(len(x_t), self.C, self.H, self.W), ab, labels
