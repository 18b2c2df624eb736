"""The registry of trial kinds: what a sweep definition's ``kind`` runs, what it reports and which knobs it
takes. The sweep machinery names no kind; it reads them here.

A kind is one registered unit where it lives: ``oracle`` (:mod:`ablate.sweep.oracle_kind`), ``train``
(:mod:`ablate.sweep.train_kind`) and ``design`` (:mod:`ablate.design.kind`) each call
:func:`register_trial_kind` from a function named in ``pyproject.toml``'s ``ablate.trial_kinds`` entry points,
loaded the first time a kind is asked for. So imports run one way: the kinds import the sweep core, never
the reverse.

A kind declares its knobs as **aliases** of typed config keys, ``{"depth": "train.model.depth",
"k_max": "oracle.patch_size.k_max"}``: a trial's knobs become ``key=value`` overrides of those configs, built
with the same machinery as ``train.py`` (:func:`ablate.config.apply_overrides` and
:func:`ablate.config.build_config`; :func:`overrides`). A knob whose alias is ``"trial.<name>"`` is a setting
of the trial itself (how many seeds it measures, say), not of a config.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

ENTRY_POINTS = "ablate.trial_kinds"  # each entry: a function that calls register_trial_kind
ARCH = "arch"  # the implicit knob that names one of a definition's architectures (its knobs come with it)


@dataclass(frozen=True)
class TrialKind:
    """run: ``run(ctx, knobs, tag, trial=None) -> figures``. objectives: the figures a trial reports that a
    definition may optimise. knobs: alias -> dotted config key (see the module docstring). build:
    ``build(definition, knobs) -> {section: config}``, the typed configs a trial with ``knobs`` runs on (raises
    ``ValueError`` for knobs the trial would refuse; checking a search space's corners is building them).
    check: ``check(definition, knobs, data_shape)``, what building cannot see (that patch sizes or a backbone
    fit the data; None: nothing). cost: ``cost(definition, knobs, data_shape) -> seconds``, an estimate of a
    trial's run time on this machine, measured before it runs (a grid of costed trials is queued longest
    first; None: not costed). command: ``command(definition) -> str``, how a user starts this kind's
    study (None: ``python -m ablate.sweep run``). architectures: whether its definitions name whole
    architectures (``no``, ``optional``, ``required``). fit: its definitions split them into a fit set and a
    held-out grid. prunable: a one-objective study of it may prune hopeless trials. spellings: other names
    people use for an objective."""

    name: str
    run: Callable[..., dict[str, Any]]
    objectives: tuple[str, ...]
    knobs: Mapping[str, str]
    build: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    check: Callable[[Any, Mapping[str, Any], tuple[int, ...]], Any] | None = None
    cost: Callable[[Any, Mapping[str, Any], tuple[int, ...]], float] | None = None
    command: Callable[[Any], str] | None = None
    architectures: Literal["no", "optional", "required"] = "no"
    fit: bool = False
    prunable: bool = False
    spellings: Mapping[str, str] = field(default_factory=dict)


_KINDS: dict[str, TrialKind] = {}
_loaded: list[bool] = [False]


def register_trial_kind(kind: TrialKind) -> None:
    for knob, key in kind.knobs.items():
        if not isinstance(key, str) or "." not in key:
            raise ValueError(f"trial kind {kind.name!r}: knob {knob!r} must alias a dotted config key "
                             f"(section.key), got {key!r}")
    _KINDS[kind.name] = kind


def _load() -> None:
    if not _loaded[0]:
        _loaded[0] = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINTS):
            entry.load()()


def kind_names() -> tuple[str, ...]:
    _load()
    return tuple(sorted(_KINDS))


def trial_kind(name: str) -> TrialKind:
    """The registered kind ``name`` (the entry points are loaded once, when a kind is first asked for)."""
    if name not in _KINDS:
        _load()
    if name not in _KINDS:
        raise ValueError(f"no trial kind {name!r} is registered (registered: {', '.join(sorted(_KINDS))}); a "
                         f"package adds one through the {ENTRY_POINTS!r} entry point: is ablate installed "
                         "(pip install -e .)?")
    return _KINDS[name]


def overrides(kind: TrialKind, knobs: Mapping[str, Any]) -> dict[str, list[str]]:
    """The knobs as ``key=value`` overrides per config section (``{"train": ["model.depth=4"], ...}``), each
    value written as JSON (which YAML, and so :func:`~ablate.config.apply_overrides`, reads back as the same
    value). Knobs the kind does not know are an error naming the allowed ones."""
    out: dict[str, list[str]] = {}
    for knob, value in knobs.items():
        if knob == ARCH:
            continue  # a name; the architecture's own knobs are merged in already
        if knob not in kind.knobs:
            raise ValueError(f"unknown {kind.name} knob {knob!r}; allowed: {', '.join(kind.knobs)}")
        section, key = kind.knobs[knob].split(".", 1)
        out.setdefault(section, []).append(f"{key}={json.dumps(value)}")
    return out


def trial_settings(kind: TrialKind, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs that are settings of the trial itself (alias ``trial.<name>``), by that name."""
    return {kind.knobs[k].split(".", 1)[1]: v for k, v in knobs.items()
            if k in kind.knobs and kind.knobs[k].startswith("trial.")}
