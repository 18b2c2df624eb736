"""The theory registry: every score machine is one file in :mod:`ablate.oracle.theories`, registered once.

A theory declares its name, its denoising function, its own knobs (a frozen dataclass whose defaults are the
theory's) and what the rest of ablate needs to know about it: whether it takes a patch size and the
partial-equivariance knobs, what a calibration tunes, how many training images it needs, the prefix of its
figures and how the planner costs it. The oracle config, the oracle's dispatch, evaluation's league and
calibration, the sweeps' knobs and every "unknown machine" message read this registry; none of them names a
theory.

    @register_theory("nearest", order=80, cost="whole_image")
    def denoise(engine, x, a, b2, k, images, label):
        ...  # x0_hat [B, C, H, W]

Adding a theory is one file in ``ablate/oracle/theories/`` (every module there is imported when the registry
is first read) plus its test.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

COSTS = ("whole_image", "every_shift", "statistics", "patches")


@dataclass(frozen=True)
class Theory:
    """One registered score machine.

    denoise: ``(engine, x [B, C, H, W], a [B], b2 [B], k (kh, kw), images [N, C, H, W], label) -> x0_hat``,
    with ``a = sqrt(alpha_bar)``, ``b2 = 1 - alpha_bar`` in the engine's dtype, ``k`` the patch extent of the
    config's schedule at these noise levels and ``label`` the class (-1: unconditional); see
    :class:`~ablate.oracle.engine.Engine` for the shared softmax and caches.
    knobs: the theory's own knobs, a frozen dataclass (``None``: none); its defaults are the theory's.
    patch: it takes ``patch_size`` (a k per noise level). patch_knobs: it takes ``stride``, ``shift_radius``
    and ``position_bandwidth`` (theory section 5). calibrate: what evaluation tunes per step to a network
    (``"patch_size"``, or the name of one of its knobs, tried over ``candidates``; None: nothing).
    min_images: the fewest training images it accepts (a covariance needs 2). figure: the prefix of its
    figures in sweeps and reports (default: its name). cost: how :mod:`ablate.oracle.plan` estimates it.
    order: its place in the league (lower first). keys_inside: its circular keys lie inside the training
    images, so its largest patch is the image side (ELS), not ``2 m - 1``. own_position: each pixel sees the
    patches at its own position only (LS; the planner costs its per-offset path).
    """

    name: str
    denoise: Callable[..., Any]
    knobs: type | None = None
    patch: bool = False
    patch_knobs: bool = False
    calibrate: str | None = None
    candidates: tuple[float, ...] = ()
    min_images: int = 1
    figure: str | None = None
    cost: Literal["whole_image", "every_shift", "statistics", "patches"] = "statistics"
    order: int = 100
    keys_inside: bool = False
    own_position: bool = False
    league: bool = True
    tokens: str | None = None  # its discrete counterpart (theory section 12): the key set of ablate.oracle.tokens
    summary: str = ""

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.knobs)) if self.knobs is not None else ()

    @property
    def figure_prefix(self) -> str:
        return self.figure or self.name

    def make_knobs(self, values: Mapping[str, Any]) -> Any:
        """The theory's knob dataclass from ``values`` (its defaults for the rest); a knob of another theory is
        an error that names the theories it belongs to."""
        values = dict(values)
        for name in values:
            if name not in self.knob_names:
                owners = [t.name for t in all_theories().values() if name in t.knob_names]
                if owners:
                    raise ValueError(f"{name} applies to machine {' or '.join(map(repr, owners))} only, got "
                                     f"machine={self.name!r}")
                near = difflib.get_close_matches(name, knob_names(), n=1)
                raise ValueError(f"unknown oracle knob {name!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                                 + f"; machine {self.name!r} takes " + (", ".join(self.knob_names) or "no knobs of "
                                                                         "its own"))
        if self.knobs is None:
            return None
        return self.knobs(**values)


_THEORIES: dict[str, Theory] = {}
_loaded = [False]


def register_theory(name: str, **declaration: Any) -> Callable[[Callable], Callable]:
    """Decorator: register ``denoise`` as the theory ``name`` (see :class:`Theory` for ``declaration``)."""
    def wrap(denoise: Callable) -> Callable:
        if name in _THEORIES and _THEORIES[name].denoise is not denoise:
            raise ValueError(f"theory {name!r} is registered twice")
        theory = Theory(name, denoise, **declaration)
        if theory.cost not in COSTS:
            raise ValueError(f"theory {name!r}: cost={theory.cost!r}; allowed: {', '.join(COSTS)}")
        _THEORIES[name] = theory
        return denoise
    return wrap


def _load() -> None:
    if not _loaded[0]:
        _loaded[0] = True
        import ablate.oracle.theories as package

        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{package.__name__}.{module.name}")


def all_theories() -> dict[str, Theory]:
    """Every registered theory, in league order."""
    _load()
    return dict(sorted(_THEORIES.items(), key=lambda item: (item[1].order, item[0])))


def theory(name: Any) -> Theory:
    """The theory ``name``; an unknown name is an error listing every registered one."""
    known = all_theories()
    if name not in known:
        near = difflib.get_close_matches(str(name), list(known), n=1)
        raise ValueError(f"machine={name!r} is not allowed; choose one of {', '.join(map(repr, known))}"
                         + (f" (did you mean {near[0]!r}?)" if near else ""))
    return known[name]


def machine_names() -> tuple[str, ...]:
    return tuple(all_theories())


def knob_names() -> tuple[str, ...]:
    """Every theory's own knob names (each once, in league order)."""
    return tuple(dict.fromkeys(n for t in all_theories().values() for n in t.knob_names))
