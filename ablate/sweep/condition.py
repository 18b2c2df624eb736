"""One experimental condition per study: a fingerprint of what defines it, stored with the study.

The condition is everything that makes two trials comparable: the kind, the data, the fixed knobs, the
searched space, the architectures, the objectives and their directions, the seeds, the sampler steps and
pruning. It is stored in the study (``user_attrs["condition"]``) when the study is created. Re-running a
changed definition never adds its trials to the old study: it is refused with the differences named, and
``--new-version`` starts ``<name>-v2`` (``-v3``, ...) beside it. A definition always finds the version
whose condition it matches, so ``status``, ``report`` and ``worker`` need no flag.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import optuna

from ablate.config import differences, to_dict
from ablate.sweep.definition import SweepDefinition


def condition(definition: SweepDefinition) -> dict[str, Any]:
    """The definition's condition as plain JSON data (tuples as lists, keys sorted)."""
    raw = {"kind": definition.kind, "data": to_dict(definition.data), "fixed": definition.fixed,
           "space": {p.name: {k: v for k, v in dataclasses.asdict(p).items() if k != "name"} for p in definition.space},
           "architectures": definition.architectures, "objectives": definition.objectives, "seeds": definition.seeds,
           "steps": definition.steps, "prune": definition.prune}
    return json.loads(json.dumps(raw, sort_keys=True, default=str))


def same(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether a stored condition is the wanted one. A data setting added to ablate after the study was made
    (absent from ``have``) matches when the definition leaves it at its default: the data are the same."""
    if have == want:
        return True
    from ablate.data import DataConfig

    defaults = json.loads(json.dumps(to_dict(DataConfig()), default=str))
    data = {k: v for k, v in (want.get("data") or {}).items()
            if k in (have.get("data") or {}) or k not in defaults or v != defaults[k]}
    return have == {**want, "data": data}


def versions(storage, base: str) -> list[str]:
    """The study names in ``storage`` that belong to definition ``base``, oldest first."""
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    found = [(1, n) for n in names if n == base]
    pattern = re.compile(re.escape(base) + r"-v(\d+)$")
    found += [(int(m.group(1)), n) for n in names if (m := pattern.match(n))]
    return [n for _, n in sorted(found)]


def stored_condition(storage, name: str) -> dict[str, Any] | None:
    study_id = storage.get_study_id_from_name(name)
    return storage.get_study_user_attrs(study_id).get("condition")


def resolve(definition: SweepDefinition, storage, create: bool, new_version: bool = False) -> SweepDefinition:
    """The definition under the name of the study that holds its condition.

    An existing version whose condition matches is used (a study made before conditions were stored is
    taken as matching and gets the condition when it is next opened for a run). None matching: with
    ``create`` and ``new_version``, the next free ``-vN``; with ``create`` and no study yet, the base name;
    otherwise a ``ValueError`` that names the differences and the way forward."""
    base = definition.name
    want = condition(definition)
    existing = versions(storage, base)
    for name in reversed(existing):
        have = stored_condition(storage, name)
        if have is None or same(have, want):
            return dataclasses.replace(definition, name=name)
    if not existing:
        if create:
            return definition
        raise LookupError(base)
    latest = existing[-1]
    if create and new_version:
        n = max([int(m.group(1)) for v in existing if (m := re.search(r"-v(\d+)$", v))] + [1]) + 1
        return dataclasses.replace(definition, name=f"{base}-v{n}")
    diff = differences(stored_condition(storage, latest), want)
    where = definition.path or base
    raise ValueError(f"study {latest!r} was run under another condition than {where} now defines, and a study "
                     f"holds one condition only (its trials would not be comparable). Changed: {'; '.join(diff)}. "
                     f"Start a new study beside it with: python -m ablate.sweep run {where} --new-version "
                     "(or restore the old definition, or use another --storage)")
