"""The oracle: any registered score machine (:mod:`ablate.oracle.theories`) behind the denoiser interface
``x0_hat = D(x_t, alpha_bar, labels)``, with the input checks every machine shares.

The ELS family is a softmax-weighted average of values over keys with logits
``(a * <query, Q_j> - a^2 * ||Q_j||^2 / 2) / b2 (+ log count_j + position bias)``,
where ``a = sqrt(alpha_bar)``, ``b2 = 1 - alpha_bar``, computed by streaming
log-sum-exp over key chunks (:mod:`ablate.oracle.softmax`, :mod:`ablate.oracle.engine`).
"""
from __future__ import annotations

import copy
import dataclasses
import warnings

import torch

from ablate.oracle.config import OracleConfig, PatchSchedule
from ablate.oracle.engine import Engine
from ablate.oracle.patches import Group

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
        need = config.theory.min_images
        if len(train_images) < need:
            why = "a covariance, so " if need == 2 else ""  # divided by N - 1
            raise ValueError(f"machine {config.machine!r} needs {why}at least {need} training images; got "
                             f"{len(train_images)}")
        self._check_patch_sizes(config)
        self.engine = Engine(config, self.images, self.spatial)  # the shared softmax and every cache

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
        other = copy.copy(self)
        other.config = config
        other.engine = self.engine.with_config(config)  # shallow: the caches are shared
        return other

    def release(self) -> int:
        """Free the key cache this machine shares with its ``with_knobs`` copies (:meth:`Engine.release`):
        a league runs its machines one after another, so each holds its cache only while it runs. The
        answers do not change; the next call rebuilds what it needs. Returns the bytes freed."""
        return self.engine.release()

    @property
    def chunk_bytes(self) -> int:
        """The tile size in use (:attr:`Engine.chunk_bytes`)."""
        return self.engine.chunk_bytes

    @property
    def truncation_bound(self) -> float:
        """The certified bound on the largest change pruning made to the last ``denoise`` call's ``x0_hat``."""
        return self.engine.truncation_bound

    # ------------------------------------------------------------------ planning
    def plan(self, alpha_bars, batch: int, labels: torch.Tensor | None = None, timing: bool = True,
             what: str = "this job", budget: int | None = None):
        """Estimate a job of one ``batch``-sized call per noise level of ``alpha_bars`` (a sample's steps),
        and refuse it (``MemoryError``, saying what to change) when its memory estimate exceeds ``budget``
        (default: ``ABLATE_MEMORY_BUDGET``, else what the machine has available). A job over budget only by
        its key cache runs instead, with this machine's ``cache_bytes`` lowered until it fits (a warning says
        so). Returns the :class:`~ablate.oracle.plan.Estimate`; ``timing=False`` checks memory only (cheap; no
        seconds)."""
        from ablate.oracle import plan

        calls = plan.sample_calls(self, batch, alpha_bars, labels)
        est = plan.estimate(self, calls, timing=timing)
        limit = plan.memory_budget(budget)
        cache = est.parts.get("key cache", 0)
        before = self.config.cache_bytes
        if limit is not None and est.peak_bytes > limit and est.peak_bytes - cache < limit:
            # the key cache is a speed-up, not a need: shrink it until the job fits (sets that do not fit are
            # streamed: slower, the same answer)
            room = max(min(cache, before) - (est.peak_bytes - limit), 0)
            for _ in range(12):
                self._set_cache_bytes(int(room))
                est = plan.estimate(self, calls, timing=timing)
                if est.peak_bytes <= limit or room == 0:
                    break
                room //= 2
        try:
            plan.check_memory(est, limit, what)
        except MemoryError:  # refused: the machine stays as it was
            self._set_cache_bytes(before)
            raise
        if self.config.cache_bytes != before:  # it fits now: say what it cost
            warnings.warn(f"{what}: {limit / 2**30:.2f} GiB is available, so the key cache of this machine goes "
                          f"from {before / 2**30:.2f} to {self.config.cache_bytes / 2**30:.2f} GiB (slower, the "
                          "same answer)", stacklevel=2)
        return est

    def _set_cache_bytes(self, cache_bytes: int) -> None:
        """This machine's key-cache budget, in its config and its engine's (a ``with_knobs`` copy keeps its own)."""
        self.config = dataclasses.replace(self.config, cache_bytes=cache_bytes)
        self.engine.config = self.config

    # ------------------------------------------------------------------ interface
    def denoise(self, x_t: torch.Tensor, alpha_bar: float | torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior mean of the clean image. x_t ``[B, C, H, W]`` (``[B, C, L]`` for signals); alpha_bar a
        float or ``[B]`` in (0, 1); labels ``[B]`` for class-conditional machines. Returns x_t's shape.
        Afterwards ``truncation_bound`` holds the certified bound on the largest change any entry of this call's
        ``x0_hat`` took from keys skipped by pruning (``prune_tol``; 0 when none was skipped)."""
        x, ab, labels = self._validate(x_t, alpha_bar, labels)
        self.engine.truncation_bound = 0.0
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
        a = ab.sqrt().to(self.dtype)  # a and b2 from float64 alpha_bar: b2 keeps its digits near 1
        b2 = (1.0 - ab).to(self.dtype)
        return self.config.theory.denoise(self.engine, x, a, b2, self.extent(k), images, label)

    def extent(self, k: int) -> tuple[int, int]:
        """The patch ``(kh, kw)`` of patch size ``k``: ``k x k`` on images, ``1 x k`` on signals (held as
        images of height 1, theory section 11)."""
        return (1, k) if self.spatial == 1 else (k, k)

    def groups(self, k: tuple[int, int]) -> list[Group]:
        """The pixel groups of the shared-key path for patch extent ``k`` (:meth:`Engine.groups`)."""
        return self.engine.groups(k)

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
