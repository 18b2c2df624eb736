"""A sweep is data: ``sweeps/<name>.yaml`` says what is searched, what is scored and how.

    name: oracle_patch_schedule
    kind: oracle                      # oracle (no training) | train (train, then evaluate) | design
    data: {name: mnist5k, n: 200, image_size: 14}
    fixed: {machine: els, boundary: zeros}          # settings every trial shares
    space:                                          # what the sampler searches
      k_min: {int: [1, 7], step: 2}
      k_max: {int: [5, 15], step: 2}
      shape: {float: [0.3, 3.0], log: true}
      boundary: {choice: [zeros, circular]}
    objectives: {coherence: maximize, artefact_rate: minimize, novelty: maximize}
    sampler: {name: nsga2, seed: 0}                 # tpe | nsga2 | random | grid
    trials: 24
    seeds: 16                                       # fixed seeds every trial samples
    steps: 20

``architectures`` (train and design sweeps) names whole architectures, each a
mapping of knobs; the sweep then searches the implicit knob ``arch`` over their
names (with ``sampler: grid``, every architecture once). ``datasets`` (instead of
``data``) names several datasets; ``load_definition(path, dataset=...)`` picks
one, and the study is named ``<name>-<dataset>``. A ``design`` trial
(``ablate.design``) predicts an architecture's samples with the oracle, then
trains it and measures the same figures. ``fit`` (design sweeps) lists the architectures the
mapping rule is fitted on; the others are the held-out grid that tests it.

Every problem (an unknown key, an empty range, an unknown objective or knob)
is found by :func:`load_definition` before any trial runs, and named.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ablate.config import build_config, to_dict
from ablate.data import DataConfig
from ablate.sweep.kinds import ARCH, TrialKind, kind_names, trial_kind

SAMPLERS = ("tpe", "nsga2", "random", "grid")
DIRECTIONS = ("maximize", "minimize")
# what a trial reports and which knobs it takes are its kind's (ablate.sweep.kinds): oracle, train, design, ...
TOP_KEYS = ("name", "kind", "description", "data", "datasets", "architectures", "fit", "joins", "fixed", "space",
            "objectives", "sampler", "trials", "seeds", "steps", "prune")


@dataclass(frozen=True)
class Param:
    """One searched knob: ``int`` / ``float`` ranges (``log``, ``step``) or a ``choice`` list."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def to_raw(self) -> dict[str, Any]:
        """What the definition's ``space`` says for this knob (what :func:`_param` reads)."""
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def grid(self) -> list:
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise ValueError(f"the grid sampler needs int or choice knobs; {self.name!r} is a float range")


@dataclass(frozen=True)
class SweepDefinition:
    name: str
    kind: str
    data: DataConfig
    fixed: dict[str, Any]
    space: tuple[Param, ...]
    objectives: dict[str, str]
    sampler: str = "tpe"
    sampler_seed: int | None = 0
    trials: int = 20
    seeds: int = 16
    steps: int = 20
    prune: bool = False
    description: str = ""
    architectures: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: str | None = None  # the key of ``datasets`` this definition was made for
    fit: tuple[str, ...] = ()  # design: the architectures the mapping rule is fitted on (the rest are held out)
    # design: (definition file, its dataset) whose fitted rule predicts this one's rows and whose report they join
    # as held-out rows (``joins`` in the file; not part of the condition: where rows are reported, not what runs)
    joins: tuple[str, str] | None = field(default=None, compare=False)
    path: Path | None = field(default=None, compare=False)

    def subset(self, names: Sequence[str], suffix: str, fixed: Mapping[str, Any] | None = None,
               folder: str | Path | None = None) -> "SweepDefinition":
        """The same sweep over the architectures ``names`` only, as study ``<name><suffix>`` (its own Optuna
        study: a grid over other architectures is another grid), with ``fixed`` knobs added. With ``folder``,
        the subset is also written there as a definition file (``<name><suffix>.yaml``), which it then names as
        its ``path``: worker processes load their definition from a file."""
        missing = [n for n in names if n not in self.architectures]
        if missing or not names:
            raise ValueError(f"{self.name}: no architectures {missing or list(names)}; it has {list(self.architectures)}")
        raw = self.to_raw()
        raw.update(name=self.name + suffix, architectures={n: self.architectures[n] for n in names},
                   fixed={**self.fixed, **(fixed or {})}, fit=[n for n in self.fit if n in names] or None)
        if raw["fit"] is None or len(raw["fit"]) == len(names):
            del raw["fit"]  # a subset is all fit or all held out: the split is the parent's
        raw.pop("trials", None)
        if self.sampler != "grid":
            raw["trials"] = self.trials
        subset = parse_definition(raw, where=f"{self.name} ({suffix.strip('-') or 'subset'})")
        if folder is None:
            return subset
        path = Path(folder) / f"{subset.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return dataclasses.replace(subset, path=path)

    def to_raw(self) -> dict[str, Any]:
        """The definition as plain data that :func:`parse_definition` reads back (one dataset, ``data``)."""
        raw: dict[str, Any] = {"name": self.name, "kind": self.kind, "description": self.description,
                               "data": to_dict(self.data), "fixed": dict(self.fixed),
                               "space": {p.name: p.to_raw() for p in self.space if p.name != ARCH},
                               "objectives": dict(self.objectives),
                               "sampler": {"name": self.sampler, "seed": self.sampler_seed}, "trials": self.trials,
                               "seeds": self.seeds, "steps": self.steps, "prune": self.prune}
        if self.architectures:
            raw["architectures"] = {n: dict(k) for n, k in self.architectures.items()}
        if self.fit:
            raw["fit"] = list(self.fit)
        return raw

    @property
    def directions(self) -> list[str]:
        return list(self.objectives.values())


def _near(word: str, allowed) -> str:
    near = difflib.get_close_matches(str(word), list(allowed), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: space.{name} must be a mapping like {{int: [1, 7]}}, "
                         f"{{float: [0.1, 3], log: true}} or {{choice: [a, b]}}; got {spec!r}")
    kinds = [k for k in ("int", "float", "choice") if k in spec]
    extra = set(spec) - {"int", "float", "choice", "log", "step"}
    if len(kinds) != 1 or extra:
        raise ValueError(f"{where}: space.{name} must have exactly one of int/float/choice (plus log, step); "
                         f"got keys {sorted(spec)}")
    kind = kinds[0]
    if kind == "choice":
        choices = spec["choice"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: space.{name}.choice is empty; list at least one value")
        return Param(name, "choice", choices=tuple(choices))
    bounds = spec[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)):
        raise ValueError(f"{where}: space.{name}.{kind} must be [low, high]; got {bounds!r}")
    low, high = bounds
    if low >= high:
        raise ValueError(f"{where}: space.{name} has an empty range [{low}, {high}]; low must be below high")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ValueError(f"{where}: space.{name} is log-scaled, so its range must be positive; got [{low}, {high}]")
    return Param(name, kind, float(low) if kind == "float" else int(low), float(high) if kind == "float" else int(high),
                 log, spec.get("step"))


def _architectures(raw: Any, kind: TrialKind, where: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        if kind.architectures == "required":
            raise ValueError(f"{where}: a {kind.name} sweep needs 'architectures': a mapping of names to knobs")
        return {}
    if kind.architectures == "no":
        raise ValueError(f"{where}: 'architectures' belong to sweeps whose trials train (train, design), not "
                         f"{kind.name} sweeps")
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{where}: architectures must map at least one name to its knobs, "
                         f"e.g. {{resnet_d2: {{name: resnet, depth: 2}}}}")
    out = {}
    for name, knobs in raw.items():
        if not isinstance(knobs, Mapping):
            raise ValueError(f"{where}: architectures.{name} must be a mapping of knobs; got {knobs!r}")
        for knob in knobs:
            if knob not in kind.knobs or knob == ARCH:
                raise ValueError(f"{where}: architectures.{name} has unknown {kind.name} knob {knob!r}"
                                 f"{_near(knob, kind.knobs)}; allowed: {', '.join(kind.knobs)}")
        out[str(name)] = dict(knobs)
    return out


def _overlapping(kind: TrialKind, named: set[str]) -> tuple[str, list[str]] | None:
    """A named knob whose config key contains another named knob's (``k`` sets ``oracle.patch_size``, ``k_min``
    sets ``oracle.patch_size.k_min``): both would set the same thing."""
    for whole in sorted(named):
        parts = sorted(n for n in named if n != whole and kind.knobs[n].startswith(kind.knobs[whole] + "."))
        if parts:
            return whole, parts
    return None


def _dataset(raw: Mapping[str, Any], dataset: str | None, where: str) -> tuple[Any, str | None]:
    """The ``data`` mapping to use, and the dataset key when the definition names several."""
    if "datasets" not in raw:
        if dataset is not None:
            raise ValueError(f"{where}: dataset={dataset!r} was asked for, but the definition has no 'datasets'")
        return raw.get("data") or {}, None
    if "data" in raw:
        raise ValueError(f"{where}: give either 'data' or 'datasets', not both")
    sets = raw["datasets"]
    if not isinstance(sets, Mapping) or not sets:
        raise ValueError(f"{where}: datasets must map at least one name to a data config")
    if dataset is None:
        if len(sets) > 1:
            raise ValueError(f"{where}: the definition names several datasets ({', '.join(sets)}); choose one "
                             f"(--dataset NAME)")
        dataset = next(iter(sets))
    if dataset not in sets:
        raise ValueError(f"{where}: no dataset {dataset!r}{_near(dataset, sets)}; it names: {', '.join(sets)}")
    return sets[dataset], str(dataset)


def dataset_names(path: str | Path) -> list[str]:
    """The keys of a definition's ``datasets`` (empty for a single-``data`` definition)."""
    raw = yaml.safe_load(Path(path).read_text())
    return list((raw or {}).get("datasets") or {}) if isinstance(raw, Mapping) else []


def parse_definition(raw: Mapping[str, Any], where: str = "sweep", dataset: str | None = None) -> SweepDefinition:
    """Validate plain data and build the definition; every error names the key and what is allowed.
    ``dataset`` picks one of ``datasets`` (the study is then named ``<name>-<dataset>``)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a sweep definition must be a mapping of keys")
    for key in raw:
        if key not in TOP_KEYS:
            raise ValueError(f"{where}: unknown key {key!r}{_near(key, TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}")
    for key in ("name", "kind", "objectives"):
        if key not in raw:
            raise ValueError(f"{where}: missing required key {key!r}")
    if raw["kind"] not in kind_names():
        raise ValueError(f"{where}: kind={raw['kind']!r} is not allowed; choose one of {', '.join(kind_names())}")
    kind = trial_kind(raw["kind"])
    knobs = kind.knobs
    fixed = dict(raw.get("fixed") or {})
    space = tuple(_param(n, s, where) for n, s in (raw.get("space") or {}).items())
    architectures = _architectures(raw.get("architectures"), kind, where)
    if architectures:
        if any(p.name == ARCH for p in space):
            raise ValueError(f"{where}: 'arch' is searched over the names in 'architectures'; do not list it in space")
        space += (Param(ARCH, "choice", choices=tuple(architectures)),)
    for name in list(fixed) + [p.name for p in space if p.name != ARCH]:
        if name not in knobs:
            raise ValueError(f"{where}: unknown {kind.name} knob {name!r}{_near(name, knobs)}; allowed: "
                             f"{', '.join(knobs)}")
    named = set(fixed) | {p.name for p in space if p.name != ARCH}
    overlap = _overlapping(kind, named)
    if overlap is not None:
        whole, parts = overlap
        what = knobs[whole].rsplit(".", 1)[-1].replace("_", " ")
        raise ValueError(f"{where}: {whole!r} and {parts} both set the {what} ({knobs[whole]}); keep one of them")
    both = set(fixed) & {p.name for p in space}
    if both:
        raise ValueError(f"{where}: {sorted(both)} are both fixed and searched; keep each in one place")
    objectives = raw["objectives"]
    if not isinstance(objectives, Mapping) or not objectives:
        raise ValueError(f"{where}: objectives must map at least one metric to maximize/minimize")
    objectives = {kind.spellings.get(k, k): v for k, v in objectives.items()}
    for name, direction in objectives.items():
        if name not in kind.objectives:
            raise ValueError(f"{where}: unknown objective {name!r}{_near(name, kind.objectives)}; "
                             f"{'an' if kind.name[0] in 'aeiou' else 'a'} {kind.name} trial reports: "
                             f"{', '.join(kind.objectives)}")
        if direction not in DIRECTIONS:
            raise ValueError(f"{where}: objective {name!r} has direction {direction!r}; choose maximize or minimize")
    sampler = dict(raw.get("sampler") or {"name": "tpe"})
    if sampler.get("name") not in SAMPLERS:
        raise ValueError(f"{where}: sampler {sampler.get('name')!r} is not allowed; choose one of {', '.join(SAMPLERS)}")
    if set(sampler) - {"name", "seed"}:
        raise ValueError(f"{where}: sampler takes name and seed only; got {sorted(sampler)}")
    if "trials" not in raw and sampler["name"] != "grid":
        raise ValueError(f"{where}: missing required key 'trials' (only a grid sweep may leave it out: it runs "
                         "every point once)")
    if sampler["name"] == "grid":
        for p in space:
            p.grid()  # raises for float ranges
    trials = raw["trials"] if "trials" in raw else math.prod(len(p.grid()) for p in space)
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"{where}: trials must be a positive integer; got {trials!r}")
    prune = bool(raw.get("prune", False))
    if prune and (not kind.prunable or len(objectives) != 1):
        raise ValueError(f"{where}: prune needs a train sweep with exactly one objective (Optuna cannot prune "
                         f"multi-objective studies); got kind={kind.name!r} with {len(objectives)} objectives")
    data_raw, dataset = _dataset(raw, dataset, where)
    data = build_config(DataConfig, data_raw, f"datasets.{dataset}." if dataset else "data.")
    definition = SweepDefinition(
        name=f"{raw['name']}-{dataset}" if dataset else str(raw["name"]), kind=kind.name, data=data, fixed=fixed,
        space=space, objectives=dict(objectives), sampler=sampler["name"], sampler_seed=sampler.get("seed", 0),
        trials=trials, seeds=int(raw.get("seeds", 16)), steps=int(raw.get("steps", 20)), prune=prune,
        description=str(raw.get("description", "")), architectures=architectures, dataset=dataset,
        fit=_fit_set(raw.get("fit"), architectures, kind, where), joins=_joins(raw, dataset, kind, where))
    if definition.seeds < 1 or definition.steps < 1:
        raise ValueError(f"{where}: seeds and steps must be >= 1")
    for name, knobs in architectures.items():  # each architecture's configs, built before any trial runs
        try:
            kind.build(definition, {**fixed, **knobs})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: architectures.{name}: {err}") from err
    return definition


def _fit_set(raw: Any, architectures: dict[str, Any], kind: TrialKind, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not kind.fit:
        raise ValueError(f"{where}: 'fit' (the architectures the mapping rule is fitted on) belongs to design sweeps")
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
        raise ValueError(f"{where}: fit must list architecture names; got {raw!r}")
    unknown = [n for n in raw if n not in architectures]
    if unknown:
        raise ValueError(f"{where}: fit names {unknown}, which are not in architectures ({', '.join(architectures)})")
    if len(set(raw)) == len(architectures):
        raise ValueError(f"{where}: every architecture is in the fit set; hold at least one out (the held-out grid "
                         "is what tests the rule)")
    return tuple(dict.fromkeys(raw))


def _joins(raw: Mapping[str, Any], dataset: str | None, kind: TrialKind, where: str) -> tuple[str, str] | None:
    """``joins: {definition: FILE, datasets: {THIS: THAT, ...}}``: this definition's held-out rows are predicted
    with the rule FILE fitted for its dataset THAT and reported with FILE's rows (a second grid of the same
    study, chosen later). FILE is relative to this file's folder; every dataset of this file names one."""
    joins = raw.get("joins")
    if joins is None:
        return None
    if not kind.fit:
        raise ValueError(f"{where}: 'joins' (the design study whose rule and report this grid joins) belongs to "
                         "design sweeps")
    if raw.get("fit"):
        raise ValueError(f"{where}: a grid that joins another study is predicted with that study's rule; it has no "
                         "fit set of its own (remove 'fit' or 'joins')")
    if not isinstance(joins, Mapping) or set(joins) != {"definition", "datasets"} \
            or not isinstance(joins["definition"], str) or not isinstance(joins["datasets"], Mapping):
        raise ValueError(f"{where}: joins must be {{definition: FILE, datasets: {{THIS_DATASET: ITS_DATASET}}}}; "
                         f"got {joins!r}")
    mine = list(raw.get("datasets") or {}) or [None]
    missing = [d for d in mine if d not in joins["datasets"]]
    if missing or set(joins["datasets"]) - set(mine):
        raise ValueError(f"{where}: joins.datasets must map each dataset of this file ({', '.join(map(str, mine))}) "
                         f"to one of {joins['definition']}'s; got {dict(joins['datasets'])}")
    return str(joins["definition"]), str(joins["datasets"][dataset])


def load_definition(path: str | Path, dataset: str | None = None) -> SweepDefinition:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read sweep definition {str(path)!r}: {err}") from err
    d = parse_definition(raw, where=str(path), dataset=dataset)
    joins = None if d.joins is None else (str(path.parent / d.joins[0]), d.joins[1])
    if joins is not None and not Path(joins[0]).is_file():
        raise ValueError(f"{path}: joins.definition {d.joins[0]!r} is not a file next to it ({joins[0]})")
    return SweepDefinition(**{**d.__dict__, "path": path, "joins": joins})
