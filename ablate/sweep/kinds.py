"""The registry of trial kinds: what a sweep definition's ``kind`` runs, and how a kind checks its knobs before
any trial runs.

``oracle`` and ``train`` are the sweep machinery's own (:mod:`ablate.sweep.trials`). Other packages add theirs
without the sweep importing them: ``design`` lives in :mod:`ablate.study` and registers through the
``ablate.trial_kinds`` entry point (``pyproject.toml``), loaded the first time a kind is asked for that is not
registered yet. So imports run one way: the study package imports the sweep machinery, never the reverse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

ENTRY_POINTS = "ablate.trial_kinds"  # each entry: a function that calls register_trial_kind


@dataclass(frozen=True)
class TrialKind:
    """``run(ctx, knobs, tag, trial=None) -> figures``; ``check(knobs)`` raises ``ValueError`` for knobs the
    trial would refuse (None: nothing beyond the sweep's own checks); ``trains``: the trial trains the backbone
    its knobs describe (a grid of such trials is queued longest first)."""

    run: Callable[..., dict[str, Any]]
    check: Callable[[dict[str, Any]], Any] | None = None
    trains: bool = False


_KINDS: dict[str, TrialKind] = {}
_loaded: list[bool] = [False]


def register_trial_kind(name: str, run: Callable[..., dict[str, Any]],
                        check: Callable[[dict[str, Any]], Any] | None = None, trains: bool = False) -> None:
    _KINDS[name] = TrialKind(run, check, trains)


def trial_kind(name: str) -> TrialKind:
    """The registered kind ``name`` (the entry points are loaded once, when a name is first missing)."""
    if name not in _KINDS and not _loaded[0]:
        _loaded[0] = True
        from importlib.metadata import entry_points

        import ablate.sweep.trials  # noqa: F401  (registers the sweep's own kinds)

        for entry in entry_points(group=ENTRY_POINTS):
            entry.load()()
    if name not in _KINDS:
        raise ValueError(f"no trial kind {name!r} is registered (registered: {', '.join(sorted(_KINDS))}); a "
                         f"package adds one through the {ENTRY_POINTS!r} entry point: is ablate installed "
                         "(pip install -e .)?")
    return _KINDS[name]
