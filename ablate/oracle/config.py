"""Typed, frozen configuration of a score machine (``docs/theory.md`` sections 3-5)."""
from __future__ import annotations

import json
import math
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from ablate.config import check_choice, check_float, check_int
from ablate.oracle.registry import Theory, knob_names, machine_names, theory

Boundary = Literal["circular", "zeros"]
BOUNDARIES = ("circular", "zeros")
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


_UNSET = object()


@dataclass(frozen=True, init=False)
class OracleConfig:
    """A score machine and its knobs.

    machine: a registered theory (:func:`ablate.oracle.registry.machine_names`: ``ideal`` (IS), ``ls``, ``els``,
    ``es`` and the rival theories of section 9). patch_size: odd k, or a :class:`PatchSchedule` (or the mapping
    of one, ``{kind: power, k_min: 3, k_max: 11}``), used by the machines that take a patch (``ls``, ``els``); the
    others compare whole images or, ``equivariant_pca_locality``, take their patch shape from the data.
    boundary: ``circular`` or ``zeros`` (the patch machines; ``es`` is circular by definition).
    shift_radius / stride / position_bandwidth: the partial-equivariance knobs of theory section 5 (the theories
    that declare ``patch_knobs``: ``els`` and ``equivariant_pca_locality``).
    knobs: the theory's own knobs (its knob dataclass, e.g. PCA locality's ``mask_threshold`` and
    ``temperature``); they may also be given by name, ``OracleConfig(machine="pca_locality",
    mask_threshold=0.05)``, and are read by name, ``config.mask_threshold``.
    vocab_size: ``V`` for the token machines of theory section 12 (``ideal``, ``ls``, ``els`` over int64
    sequences, the mask id ``V``; :mod:`ablate.oracle.tokens`); None for images and signals. smoothing: ``s`` of
    section 12, added to every token's count (``>= 0``; token machines only).
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

    machine: str = "els"
    patch_size: int | PatchSchedule = 5
    boundary: Boundary = "zeros"
    shift_radius: int | None = None
    stride: int = 1
    position_bandwidth: float | None = None
    dtype: Literal["float32", "float64"] = "float32"
    chunk_bytes: int | None = None
    cache_bytes: int = 3 * 2**30
    prune_tol: float = 0.0
    knobs: Any = None
    vocab_size: int | None = None
    smoothing: float = 1.0

    def __init__(self, machine: str = "els", patch_size: int | PatchSchedule | Mapping[str, Any] = 5,
                 boundary: str = "zeros", shift_radius: int | None = None, stride: int = 1,
                 position_bandwidth: float | None = None, dtype: str = "float32", chunk_bytes: int | None = None,
                 cache_bytes: int = 3 * 2**30, prune_tol: float = 0.0, knobs: Any = None,
                 vocab_size: int | None = None, smoothing: float = 1.0, **theory_knobs: Any) -> None:
        spec = theory(machine)
        if isinstance(patch_size, Mapping):
            patch_size = _schedule(patch_size)
        values = dict(locals())
        for name in ("machine", "patch_size", "boundary", "shift_radius", "stride", "position_bandwidth", "dtype",
                     "chunk_bytes", "cache_bytes", "prune_tol", "vocab_size", "smoothing"):
            object.__setattr__(self, name, values[name])
        object.__setattr__(self, "knobs", spec.make_knobs({**_given(knobs), **theory_knobs}))
        self.__post_init__()

    @classmethod
    def absorb_unknown(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """For :func:`~ablate.config.build_config`: a theory's knobs given by name (``mask_threshold: 0.05``)
        move into ``knobs``."""
        values = dict(values)
        fields = {f.name for f in dataclasses.fields(cls)}
        own = {k: values.pop(k) for k in list(values) if k not in fields and k in knob_names()}
        if own:
            values["knobs"] = {**_given(values.get("knobs")), **own}
        return values

    def __getattr__(self, name: str) -> Any:
        """A theory knob by name (``config.mask_threshold``)."""
        if name.startswith("__"):
            raise AttributeError(name)
        knobs = self.__dict__.get("knobs")
        if knobs is not None and name in {f.name for f in dataclasses.fields(knobs)}:
            return getattr(knobs, name)
        raise AttributeError(f"OracleConfig has no setting {name!r}")

    @property
    def theory(self) -> Theory:
        return theory(self.machine)

    def knob(self, name: str):
        """One of the theory's own knobs (its default when not given)."""
        if name not in self.theory.knob_names:
            raise ValueError(f"machine {self.machine!r} has no knob {name!r}; it takes "
                             + (", ".join(self.theory.knob_names) or "none"))
        return getattr(self.knobs, name)

    def __post_init__(self) -> None:
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
        check_float("smoothing", self.smoothing, low=0.0)
        if self.vocab_size is not None:
            check_int("vocab_size", self.vocab_size, low=2)
            if self.theory.tokens is None:
                takes = [t for t in machine_names() if theory(t).tokens is not None]
                raise ValueError(f"machine {self.machine!r} has no discrete counterpart; token machines (vocab_size "
                                 f"set): {', '.join(map(repr, takes))}")
            if self.has_knobs:
                raise ValueError("shift_radius/stride/position_bandwidth apply to image and signal machines; token "
                                 "machines (vocab_size set) take patch_size, boundary and smoothing")
        elif self.smoothing != 1.0:
            raise ValueError(f"smoothing={self.smoothing} applies to token machines only; set vocab_size (V) too")
        if self.has_knobs and not self.theory.patch_knobs:
            takes = [t for t in machine_names() if theory(t).patch_knobs]
            raise ValueError(f"shift_radius/stride/position_bandwidth apply to machine "
                             f"{', '.join(map(repr, takes[:-1]))} or {takes[-1]!r} only, got machine={self.machine!r} "
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
        if self.theory.patch:
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
        if self.theory.keys_inside and self.boundary == "circular":
            return m if m % 2 else m - 1
        return 2 * m - 1


def _given(knobs: Any) -> dict[str, Any]:
    """The knob values a config was given: a mapping, or those of a knob dataclass that differ from its
    defaults (so that a config of another machine carries over only what was set)."""
    if knobs is None:
        return {}
    if isinstance(knobs, Mapping):
        return dict(knobs)
    if dataclasses.is_dataclass(knobs):
        default = type(knobs)()
        return {f.name: getattr(knobs, f.name) for f in dataclasses.fields(knobs)
                if getattr(knobs, f.name) != getattr(default, f.name)}
    raise ValueError(f"knobs must be a mapping of a theory's knobs, got {knobs!r}")


def _schedule(values: Mapping[str, Any]) -> PatchSchedule:
    """A :class:`PatchSchedule` from plain data (``kind`` defaults to ``power``; a ``list`` takes ``ks``)."""
    values = dict(values)
    kind = values.pop("kind", "list" if "ks" in values else "power")
    unknown = set(values) - {"ks", "alpha_bars", "k_min", "k_max", "shape"}
    if unknown:
        raise ValueError(f"patch_size: unknown schedule keys {sorted(unknown)}; allowed: kind, ks, alpha_bars, "
                         "k_min, k_max, shape")
    if kind == "list":
        return PatchSchedule.from_list(values.get("ks", ()), values.get("alpha_bars"))
    return PatchSchedule(kind=kind, **{k: (float(v) if k == "shape" else v) for k, v in values.items()})
