"""Optuna storage: where a sweep's study lives and how it is created, loaded and counted.

* Storage: SQLite under ``runs/sweeps/`` by default; any SQLAlchemy URL
  (``postgresql://user@host/db``) for several workers on several machines.
  Heartbeats (``heartbeat_interval``) mark a killed worker's trial stale; the
  ``RetryHeartbeatStaleTrialCallback`` puts a copy of it back in the queue.
* Exact counts: the study is created once, and the requested trials are
  enqueued as WAITING trials up front; workers only claim waiting trials
  (:mod:`ablate.sweep.workers`), so ``N`` requested trials give exactly ``N``
  completed ones however many workers run, die or restart. Re-running tops the
  queue up to ``N``; it never duplicates the study.
* Records: a study holds one experimental condition (:mod:`ablate.sweep.condition`): a
  changed definition is refused or, with ``--new-version``, gets a study of its own.
  Looking (``status``, ``report``) never writes.
"""
from __future__ import annotations

import contextlib
import itertools
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ablate.paths import runs_root
from ablate.sweep.claims import PerTrialSeed, storage_lock
from ablate.sweep.condition import condition, resolve
from ablate.sweep.definition import SweepDefinition
from ablate.sweep.kinds import trial_kind

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def sweeps_dir() -> Path:
    """``<runs root>/sweeps`` (``--runs`` / ``ABLATE_RUNS``; default ``runs/sweeps``)."""
    return runs_root() / "sweeps"


def out_dir(definition: SweepDefinition) -> Path:
    return sweeps_dir() / definition.name


def default_storage(definition: SweepDefinition) -> str:
    return f"sqlite:///{(sweeps_dir() / f'{definition.name}.db').as_posix()}"


def run_command(definition: SweepDefinition) -> str:
    """The command that starts (or resumes) this definition's study (its kind's, or ``ablate.sweep run``)."""
    command = trial_kind(definition.kind).command
    if command is not None:
        return command(definition)
    where = definition.path or "<definition>"
    return f"python -m ablate.sweep run {where}" + (f" --dataset {definition.dataset}" if definition.dataset else "")


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def open_storage(url: str, heartbeat: int = 10, retries: int = 3) -> RDBStorage:
    """The Optuna storage at ``url``. Creating its tables is done by one process at a time (two ``run``s on a
    fresh SQLite file raced to create them); an existing SQLite file is opened without a lock (or a write)."""
    path = sqlite_path(url)
    fresh = path is None or not path.exists()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in use
    try:
        with storage_lock(url, "tables") if fresh else contextlib.nullcontext():
            return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries))
    except ValueError:
        raise
    except Exception as err:  # SQLAlchemy raises many kinds for a bad URL or an unreachable server
        raise ValueError(f"cannot open study storage {url!r}: {type(err).__name__}: {str(err).splitlines()[0]}") from err


def make_sampler(definition: SweepDefinition) -> optuna.samplers.BaseSampler:
    """The definition's sampler, seeded per trial from the definition's seed and the trial's number
    (:class:`~ablate.sweep.claims.PerTrialSeed`): every worker, run and resumption proposes new knobs for a new
    trial, and the same study history gives the same proposals. A grid's points are queued, never repeated."""
    seed = definition.sampler_seed
    if definition.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid() for p in definition.space}, seed=seed)
    kinds = {"nsga2": lambda s: optuna.samplers.NSGAIISampler(seed=s),
             "random": lambda s: optuna.samplers.RandomSampler(seed=s),
             "tpe": lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True)}
    return PerTrialSeed(kinds[definition.sampler], seed)


def create_study(definition: SweepDefinition, storage: RDBStorage, trials: int | None = None,
                 cost: Callable[[dict[str, Any]], float] | None = None) -> optuna.Study:
    """Create (or load) the study and enqueue trials until ``trials`` are done, queued or running. ``cost``
    (grid sampler): the estimated seconds of a grid point's trial; the points are queued most expensive first,
    so that the last trial to finish is a short one and no worker waits alone on a long one (workers take the
    oldest queued trial)."""
    study = optuna.create_study(study_name=definition.name, storage=storage, directions=definition.directions,
                                sampler=make_sampler(definition), load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_warmup_steps=1) if definition.prune else None)
    names = list(definition.objectives)
    existing = study.user_attrs.get("objectives")
    if existing is not None and existing != names:
        raise ValueError(f"study {definition.name!r} in this storage optimises {existing}, but the definition "
                         f"says {names}; use another storage or name")
    study.set_user_attr("objectives", names)
    study.set_user_attr("kind", definition.kind)
    study.set_user_attr("condition", condition(definition))
    wanted = trials or definition.trials
    live = [t for t in study.get_trials(deepcopy=False)
            if t.state in DONE or t.state in (TrialState.WAITING, TrialState.RUNNING)]
    missing = max(0, wanted - len(live))
    if definition.sampler == "grid":  # the grid sampler takes enqueued trials only with every knob set
        seen = {tuple(sorted(t.params.items())) for t in live}
        names = [p.name for p in definition.space]
        points = [dict(zip(names, values)) for values in itertools.product(*(p.grid() for p in definition.space))]
        points = [p for p in points if tuple(sorted(p.items())) not in seen][:missing]
        if cost is not None:
            points.sort(key=cost, reverse=True)
        for point in points:
            study.enqueue_trial(point, skip_if_exists=False)
    else:
        for _ in range(missing):
            study.enqueue_trial({}, skip_if_exists=False)
    return study


def load_existing(definition: SweepDefinition, url: str) -> tuple[SweepDefinition, optuna.Study]:
    """The study that holds this definition's condition (and the definition under its name), for looking:
    nothing is created, not even an empty SQLite file. A clear error if it was never run."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ValueError(f"{definition.name!r} has not been run yet (no {path}); start it with: "
                         f"{run_command(definition)}")
    storage = open_storage(url)
    try:
        resolved = resolve(definition, storage, create=False)
    except LookupError:
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
        raise ValueError(f"no study {definition.name!r} in {url} (it holds: {', '.join(names) or 'none'}); "
                         f"start it with: {run_command(definition)}") from None
    return resolved, optuna.load_study(study_name=resolved.name, storage=storage)



def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def pareto(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.best_trials if len(study.directions) > 1 else ([study.best_trial] if counts(study)["complete"] else [])
