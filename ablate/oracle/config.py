"""Typed, frozen configuration of a score machine (``docs/theory.md`` sections 3-5)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from ablate.config import check_choice, check_float, check_int

Machine = Literal["ideal", "ls", "els", "es", "wiener", "equivariant_wiener", "pca_locality",
                  "equivariant_pca_locality", "nearest", "scfdm"]
Boundary = Literal["circular", "zeros"]
# theory section 9 (ablate.oracle.rivals)
RIVALS = ("wiener", "equivariant_wiener", "pca_locality", "equivariant_pca_locality", "nearest", "scfdm")
MACHINES = ("ideal", "ls", "els", "es") + RIVALS
# the knobs of the rival theories, and the machines they apply to
RIVAL_KNOBS = {"mask_threshold": ("pca_locality", "equivariant_pca_locality"), "temperature": ("pca_locality",),
               "smoothing_std": ("scfdm",), "num_noise": ("scfdm",), "noise_seed": ("scfdm",)}
BOUNDARIES = ("circular", "zeros")
# the machines that take the partial-equivariance knobs of theory section 5 (ELS with a square or a data patch)
PATCH_KNOB_MACHINES = ("els", "equivariant_pca_locality")
# chunk_bytes=None: one tile of logits on the CPU stays in cache; on a GPU a tile is large, so that a step is a
# few large GEMMs rather than thousands of small ones (ELS k = 5, N = 1,000, batch 8: 27-34 thousand torch
# calls per step with 4 MiB tiles, 0.9-3 thousand with 256 MiB; on an H200 the 4 MiB tiles ran 1.9x slower
# than 16 CPU cores)
CPU_TILE_BYTES = 4 * 2**20
DEVICE_TILE_BYTES = 256 * 2**20


def nearest_odd(value: float) -> int:
    """The odd integer nearest ``value`` (ties go up), at least 1."""
    return max(1, 2 * int(math.floor((value - 1.0) / 2.0 + 0.5)) + 1)


def cosine_alpha_bar(t: float) -> float:
    """The paper's cosine schedule, ``alpha_bar(t) = cos(t / 1.008 * pi / 2)^2``."""
    return math.cos(t / 1.008 * math.pi / 2.0) ** 2


@dataclass(frozen=True)
class PatchSchedule:
    """Patch size as a function of the noise level.

    kind ``list``: ``ks[i]`` is used at noise level ``alpha_bars[i]`` (lowest
    noise first); ``alpha_bars`` defaults to the cosine grid of a ``len(ks)``-step
    sampler, ``t_i = i / T`` for ``i = 1..T``, so a calibrated schedule of one k per
    step is just ``PatchSchedule.from_list([...])``. A query at another noise
    level takes the entry nearest in log signal-to-noise ratio.

    kind ``power``: ``k = nearest_odd(k_min + (k_max - k_min) * (1 - alpha_bar) ** shape)``,
    rising from ``k_min`` at low noise to ``k_max`` at high noise; ``shape`` < 1
    grows early, > 1 late. Independent of the sampler's schedule.
    """

    kind: Literal["list", "power"]
    ks: tuple[int, ...] = ()
    alpha_bars: tuple[float, ...] = ()
    k_min: int = 3
    k_max: int = 15
    shape: float = 1.0

    def __post_init__(self) -> None:
        check_choice("schedule kind", self.kind, ("list", "power"))
        if self.kind == "list":
            if not self.ks:
                raise ValueError("a 'list' patch schedule needs at least one k")
            for k in self.ks:
                check_int("schedule k", k, low=1, odd=True)
            if self.alpha_bars and len(self.alpha_bars) != len(self.ks):
                raise ValueError(f"schedule has {len(self.ks)} ks but {len(self.alpha_bars)} alpha_bars; "
                                 "they must pair one to one")
            for ab in self.alpha_bars:
                check_float("schedule alpha_bar", ab, low=0.0, high=1.0, low_open=True, high_open=True)
        else:
            check_int("k_min", self.k_min, low=1, odd=True)
            check_int("k_max", self.k_max, low=self.k_min, odd=True)
            check_float("shape", self.shape, low=0.0, low_open=True)

    @classmethod
    def from_list(cls, ks: Sequence[int], alpha_bars: Sequence[float] | None = None) -> "PatchSchedule":
        for k in ks:
            if isinstance(k, bool) or not isinstance(k, (int, float)) or float(k) != int(k):
                raise ValueError(f"schedule k={k!r} must be a whole odd number (1, 3, 5, ...)")
        ks = tuple(int(k) for k in ks)
        if alpha_bars is None:
            T = len(ks)
            alpha_bars = [cosine_alpha_bar(i / T) for i in range(1, T + 1)]
        return cls(kind="list", ks=ks, alpha_bars=tuple(float(a) for a in alpha_bars))

    @classmethod
    def load(cls, path: str | Path) -> "PatchSchedule":
        """Read ``{"k": [...], "alpha_bar": [...]}`` (or a bare list of ks) from JSON."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read patch schedule {str(path)!r}: {err}") from err
        if isinstance(data, list):
            return cls.from_list(data)
        if not isinstance(data, dict) or "k" not in data:
            raise ValueError(f"{path}: expected a list of ks or an object with key 'k'")
        return cls.from_list(data["k"], data.get("alpha_bar"))

    def save(self, path: str | Path, steps: int = 20) -> None:
        grid = self.alpha_bars or tuple(cosine_alpha_bar(i / steps) for i in range(1, steps + 1))
        Path(path).write_text(json.dumps({"k": [self.k_at(a) for a in grid], "alpha_bar": list(grid)}, indent=1))

    def k_at(self, alpha_bar: float) -> int:
        if self.kind == "power":
            return min(self.k_max, nearest_odd(self.k_min + (self.k_max - self.k_min) * (1 - alpha_bar) ** self.shape))
        logsnr = math.log(alpha_bar / (1 - alpha_bar))
        i = min(range(len(self.ks)), key=lambda j: abs(math.log(self.alpha_bars[j] / (1 - self.alpha_bars[j])) - logsnr))
        return self.ks[i]

    def all_ks(self) -> tuple[int, ...]:
        if self.kind == "list":
            return tuple(sorted(set(self.ks)))
        return tuple(range(self.k_min, self.k_max + 1, 2))


@dataclass(frozen=True)
class OracleConfig:
    """A score machine and its knobs.

    machine: ``ideal`` (IS), ``ls``, ``els`` or ``es``, or a rival theory of section 9 (:data:`RIVALS`).
    patch_size: odd k, or a :class:`PatchSchedule` (used by ``ls`` and ``els`` only; the others compare whole
    images or, ``equivariant_pca_locality``, take their patch shape from the data). boundary: ``circular`` or
    ``zeros`` (``ls``, ``els``, ``equivariant_pca_locality``; ``es`` is circular by definition).
    shift_radius / stride / position_bandwidth: the partial-equivariance knobs of theory section 5
    (``els`` and ``equivariant_pca_locality``).
    dtype: ``float32`` or ``float64``. chunk_bytes: the size of one tile of logits
    or keys; None (the default) takes :data:`CPU_TILE_BYTES` on the CPU (a few MB keeps tiles in cache) and
    :data:`DEVICE_TILE_BYTES` on a GPU (few, large GEMMs: a step is otherwise thousands of small kernels). cache_bytes: the budget for key sets that are extracted,
    deduplicated and kept between calls, all pixel groups and patch sizes together (zero-boundary ELS
    with k = 27 on 28x28 has 729 groups); to make room for the patch size in use, the least recently used
    sets of other patch sizes are evicted; groups that still do not fit are streamed from the training
    images on every call (memory then stays bounded by ``16 * chunk_bytes``). prune_tol: keys
    whose total softmax weight is provably below this are skipped, and each call reports the certified
    bound on what that changed (``Oracle.truncation_bound``, at most ``2 * prune_tol``; 0, the default, disables it: once
    ``exp`` stays on its fast path (:mod:`ablate.oracle.softmax`) the dense pass costs about what the
    pruned one does at low noise, N = 5,000, while clustering the keys costs 100+ s per patch size).
    """

    machine: Machine = "els"
    patch_size: int | PatchSchedule = 5
    boundary: Boundary = "zeros"
    shift_radius: int | None = None
    stride: int = 1
    position_bandwidth: float | None = None
    dtype: Literal["float32", "float64"] = "float32"
    chunk_bytes: int | None = None
    cache_bytes: int = 3 * 2**30
    prune_tol: float = 0.0
    mask_threshold: float | None = None  # PCA locality's tau (None: 0.02)
    temperature: float | None = None  # PCA locality's T (None: 1)
    smoothing_std: float | None = None  # SCFDM's sigma_s (None: 0.1)
    num_noise: int | None = None  # SCFDM's M (None: 8)
    noise_seed: int | None = None  # SCFDM's generator seed (None: 0): the same input gives the same output

    DEFAULTS = {"mask_threshold": 0.02, "temperature": 1.0, "smoothing_std": 0.1, "num_noise": 8, "noise_seed": 0}

    def knob(self, name: str):
        """A rival machine's knob, its default when unset."""
        value = getattr(self, name)
        return self.DEFAULTS[name] if value is None else value

    def __post_init__(self) -> None:
        check_choice("machine", self.machine, MACHINES)
        for name, machines in RIVAL_KNOBS.items():
            if getattr(self, name) is not None and self.machine not in machines:
                raise ValueError(f"{name} applies to machine {' or '.join(map(repr, machines))} only, got machine="
                                 f"{self.machine!r}")
        if self.mask_threshold is not None:
            check_float("mask_threshold", self.mask_threshold, low=0.0, high=1.0, low_open=True)
        if self.temperature is not None:
            check_float("temperature", self.temperature, low=0.0, low_open=True)
        if self.smoothing_std is not None:
            check_float("smoothing_std", self.smoothing_std, low=0.0)
        if self.num_noise is not None:
            check_int("num_noise", self.num_noise, low=1)
        if self.noise_seed is not None:
            check_int("noise_seed", self.noise_seed, low=0)
        check_choice("boundary", self.boundary, BOUNDARIES)
        check_choice("dtype", self.dtype, ("float32", "float64"))
        if isinstance(self.patch_size, PatchSchedule):
            pass
        else:
            check_int("patch_size", self.patch_size, low=1, odd=True)
        check_int("stride", self.stride, low=1)
        if self.shift_radius is not None:
            check_int("shift_radius", self.shift_radius, low=0)
        if self.position_bandwidth is not None:
            check_float("position_bandwidth", self.position_bandwidth, low=0.0, low_open=True)
        if self.chunk_bytes is not None:
            check_int("chunk_bytes", self.chunk_bytes, low=2**16)
        check_int("cache_bytes", self.cache_bytes, low=0)
        check_float("prune_tol", self.prune_tol, low=0.0, high=1e-2)
        if self.has_knobs and self.machine not in PATCH_KNOB_MACHINES:
            raise ValueError(f"shift_radius/stride/position_bandwidth apply to machine "
                             f"{' or '.join(map(repr, PATCH_KNOB_MACHINES))} only, got machine={self.machine!r} "
                             "(LS is ELS with shift_radius=0)")

    @property
    def has_knobs(self) -> bool:
        return self.shift_radius is not None or self.stride > 1 or self.position_bandwidth is not None

    def schedule(self) -> PatchSchedule:
        if isinstance(self.patch_size, PatchSchedule):
            return self.patch_size
        return PatchSchedule(kind="power", k_min=self.patch_size, k_max=self.patch_size)

    def check_image_size(self, *spatial: int) -> None:
        """Every patch size of the schedule fits images of size ``(H, W)`` or signals of length ``(L,)`` (the
        oracle's own check, usable before any training data is loaded: a sweep validates its whole space
        with it)."""
        kmax = self.max_patch_size(*spatial)
        if self.machine in ("ls", "els"):
            for k in self.schedule().all_ks():
                if k > kmax:
                    what = f"{spatial[0]}-sample signals" if len(spatial) == 1 else f"{spatial[0]}x{spatial[1]} images"
                    raise ValueError(f"patch size {k} is too large for machine {self.machine!r} with boundary "
                                     f"{self.boundary!r} on {what}; allowed: odd k <= {kmax}")

    def max_patch_size(self, *spatial: int) -> int:
        """Largest k the machine allows on ``(H, W)`` images or ``(L,)`` signals (theory sections 4 and 11):
        the largest odd k up to the smallest side for circular ELS (its keys lie inside the training data),
        else ``2 m - 1`` (a zero-padded patch as wide as the data seen from its edge)."""
        if len(spatial) not in (1, 2):
            raise ValueError(f"data have 1 (signals) or 2 (images) spatial axes, got {len(spatial)}")
        m = min(spatial)
        if self.machine == "els" and self.boundary == "circular":
            return m if m % 2 else m - 1
        return 2 * m - 1
