"""Sweep workers: run a study's queued trials, one process each, with heartbeats, a claim lock and a W&B
run per trial.

* The whole search space is checked before any trial is queued
  (:func:`~ablate.sweep.context.validate_space`); the trials are queued in the study
  (:func:`~ablate.sweep.storage.create_study`) and workers claim the waiting ones under a
  lock (:func:`claim`), a retried trial (its worker was killed) first.
* Tracking: every trial is a W&B run (offline unless a key is configured) in a
  group named after the study, closed in a ``finally`` whatever happens.
"""
from __future__ import annotations

import contextlib
import gc
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import TrialState

from ablate import tracking
from ablate.data import load_dataset
from ablate.metrics import build_suite
from ablate.sweep.claims import storage_lock
from ablate.sweep.condition import resolve
from ablate.sweep.context import TrialContext, attempt_checkpoints, merged_knobs, trial_tag, validate_space
from ablate.sweep.definition import SweepDefinition
from ablate.sweep.kinds import trial_kind
from ablate.sweep.report import knob_text
from ablate.sweep.storage import (counts, create_study, default_storage, load_existing, make_sampler, open_storage, out_dir,
                                  pareto, run_command, sqlite_path, sweeps_dir)
from ablate.threads import ENV, default_threads


def status_lines(definition: SweepDefinition, url: str) -> list[str]:
    """What ``python -m ablate.sweep status`` prints: the study that holds this definition's condition (a
    design study with a fit set: its fit part, then its held-out part, one study per rule it was predicted
    with), each with its counts and one line per trial: complete (its objectives), running (since when, on
    which worker, and the training step of its newest checkpoint), queued (a retry says of which trial),
    failed (the error, and the retry that replaced it); then the Pareto front. Raises ``ValueError`` for a
    definition never run (or run under another condition), writing nothing."""

    resolved = None
    if definition.kind == "design" and (definition.fit or definition.joins):
        names = []
        with contextlib.suppress(ValueError):  # the fit part, as the design study runs it
            if definition.fit:
                names.append(load_existing(definition.subset(list(definition.fit), "-fit", {"role": "fit"}),
                                           url)[0].name)
        path = sqlite_path(url)
        joined = definition.joins is not None and (path is None or path.exists())  # a grid predicted by another's rule
        storage = open_storage(url) if names or joined else None
        if storage is not None:
            pattern = re.compile(re.escape(definition.name) + r"(-v\d+)?")
            names += sorted(s.study_name for s in optuna.get_all_study_summaries(storage)
                            if pattern.fullmatch(s.study_name))
        if not names:
            load_existing(definition, url)  # never run: the message that names the command
    else:
        resolved, _ = load_existing(definition, url)
        storage, names = open_storage(url), [resolved.name]
    lines = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        lines.append(f"{name} ({url}): " + ", ".join(f"{v} {k}" for k, v in counts(study).items() if v))
        if len(lines) == 1:
            lines.append("  objectives: " + ", ".join(f"{n} ({d})" for n, d in definition.objectives.items()))
            lines.append(f"  fixed: {knob_text(definition.fixed) or 'none'}; {definition.seeds} seeds, "
                         f"{definition.steps} steps")
        retried = {t.system_attrs.get("failed_trial"): t.number for t in trials if "failed_trial" in t.system_attrs}
        objectives = study.user_attrs.get("objectives", list(definition.objectives))
        for t in trials:
            knobs = t.params or t.system_attrs.get("fixed_params", {})  # a queued trial's knobs are its enqueued ones
            lines.append(f"  trial {t.number} {knob_text(knobs) or '(no knobs)'}: "
                         + _trial_state(t, objectives, sweeps_dir() / name, retried))
    if resolved is not None:
        front = pareto(optuna.load_study(study_name=resolved.name, storage=storage))
        lines += [f"  pareto trial {t.number}: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(definition.objectives,
                                                                                        t.values))
                  + f"  {knob_text(t.params)}" for t in front]
    if any(" running since " in line for line in lines):
        lines.append("  (a killed worker's trial shows as running until the next run marks it stale and retries it)")
    return lines


def _trial_state(t, objectives: list[str], folder: Path, retried: dict) -> str:
    if t.state == TrialState.COMPLETE:
        took = (t.datetime_complete - t.datetime_start).total_seconds() / 60
        values = ", ".join(f"{n}={v:.4g}" for n, v in zip(objectives, t.values or []))
        return f"complete in {took:.1f} min; {values}"
    if t.state == TrialState.RUNNING:
        steps = [int(p.stem[4:]) for f in attempt_checkpoints(folder, t, t.params) for p in f.glob("step*.ckpt")
                 if p.stem[4:].isdigit()]
        return (f"running since {t.datetime_start:%Y-%m-%d %H:%M} on {t.user_attrs.get('worker', '?')}"
                + (f", training checkpointed at step {max(steps)}" if steps else ""))
    if t.state == TrialState.WAITING:
        of = t.system_attrs.get("failed_trial")
        return "queued" + (f" (the retry of trial {of})" if of is not None else "")
    if t.state == TrialState.FAIL:
        error = str(t.user_attrs.get("error", "no error recorded: its worker stopped (killed, or out of memory)"))
        again = retried.get(t.number)
        return f"failed: {error.splitlines()[0][:300]}" + (f"; retried as trial {again}" if again is not None else "")
    return t.state.name.lower()


def knobs_of(definition: SweepDefinition, trial: optuna.Trial) -> dict[str, Any]:
    """The fixed knobs, then the suggested ones; a suggested ``arch`` brings that architecture's knobs."""
    return merged_knobs(definition, {p.name: p.suggest(trial) for p in definition.space})


def trial_costs(definition: SweepDefinition, image_shape: tuple[int, ...], say=print) -> Callable[[dict], float]:
    """For a grid of costed trials (a kind with ``cost``, :mod:`ablate.sweep.kinds`: the ones that train): each
    point's estimated seconds, measured on this machine before it runs (one estimate per distinct knob set,
    printed once)."""
    estimate = trial_kind(definition.kind).cost
    seen: dict[tuple, float] = {}

    def cost(point: dict[str, Any]) -> float:
        knobs = merged_knobs(definition, point)
        key = tuple(sorted((k, repr(v)) for k, v in knobs.items()))
        if key not in seen:
            if not seen:
                say("queueing the longest training first:", flush=True)
            seen[key] = estimate(definition, knobs, image_shape)
            say(f"  {', '.join(f'{k}={v}' for k, v in point.items())}: training about {seen[key] / 60:.0f} min "
                "on this process's threads", flush=True)
        return seen[key]
    return cost


def wandb_run(definition: SweepDefinition, name: str, job_type: str, config: dict[str, Any] | None = None):
    """A W&B run in the study's group (offline unless a key is configured), or None when disabled."""
    mode = tracking.resolve_mode("auto")
    if mode == "disabled":
        return None
    import wandb

    folder = out_dir(definition) / "wandb_dirs"
    folder.mkdir(parents=True, exist_ok=True)
    return wandb.init(project="ablate", group=definition.name, name=f"{definition.name}-{name}", job_type=job_type,
                      dir=str(folder), mode=mode, config=config, reinit="finish_previous",
                      settings=wandb.Settings(silent=True))


def objective_fn(definition: SweepDefinition, ctx: TrialContext):
    def objective(trial: optuna.Trial):
        import wandb

        knobs = knobs_of(definition, trial)
        tag = trial_tag(trial.number, knobs)
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        run = None
        failed = True
        try:
            run = wandb_run(definition, tag, f"{definition.kind}-trial",
                            {**knobs, "trial": trial.number, "study": definition.name})
            result = trial_kind(definition.kind).run(ctx, knobs, tag, trial)
            values = [float(result[name]) for name in definition.objectives]
            for key, value in result.items():
                if isinstance(value, (int, float, str)) or value is None:
                    trial.set_user_attr(key, value)
            if run is not None:
                pictures = {"samples": wandb.Image(result["grid"])} if result.get("grid") else {}
                if result.get("samples_html"):  # a token model: its texts beside every machine's (an HTML table)
                    pictures["samples"] = wandb.Html(Path(result["samples_html"]).read_text(encoding="utf-8"))
                run.log({**{k: v for k, v in result.items() if isinstance(v, float)}, **pictures})
                run.summary.update({name: v for name, v in zip(definition.objectives, values)})
            failed = False
            return values
        except optuna.TrialPruned:
            failed = False
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            raise
        finally:
            if run is not None:
                run.finish(exit_code=1 if failed else 0)
    return objective


@contextlib.contextmanager
def _heartbeat(storage: RDBStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every ``heartbeat_interval`` s while the body runs (what Optuna's own loop does)."""
    interval = storage.get_heartbeat_interval()
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def claim(study: optuna.Study, url: str, name: str) -> tuple[optuna.Trial | None, dict[str, int]]:
    """Pop a waiting trial, or none, holding the study's claim lock: a worker never creates a trial outside the
    queue. (``study.ask`` makes a new trial when the queue is empty, so a worker that counted a waiting trial
    and lost it to another before asking added one more than requested.) Stale trials are failed (and retried
    as waiting copies) first. The lock (a database connection on PostgreSQL) is taken only when a trial is
    waiting, not on every poll of a worker that waits for others. Returns the trial and the counts last seen."""
    fail_stale_trials(study)
    c = counts(study)
    if not c["waiting"]:
        return None, c
    with storage_lock(url, f"{name}:claim"):
        c = counts(study)  # again under the lock: another worker may have taken it meanwhile
        if not c["waiting"]:
            return None, c
        return pop_waiting(study), c


def pop_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Take a waiting trial as ``study.ask`` does (set it running; ``None`` if another worker took them all),
    but retries first: the copy of a trial whose worker died resumes from that trial's checkpoints, so it
    goes before trials not started (``ask`` would take them in number order, the retries last)."""
    storage = study._storage
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    for t in sorted(waiting, key=lambda t: ("failed_trial" not in t.system_attrs, t.number)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def run_claimed(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial,
                objective: Callable) -> optuna.trial.FrozenTrial:
    """Run a claimed trial with its heartbeat and record the outcome: complete, pruned or failed (an error is a
    failed trial, never a crashed worker; Ctrl-C fails the trial and stops). ``storage``: the study's storage."""
    values, state = None, TrialState.COMPLETE
    with _heartbeat(storage, trial._trial_id):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception:
            state = TrialState.FAIL
        except KeyboardInterrupt:
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-finite values: Optuna fails the trial and says so in a warning
        # skip_if_finished: a worker whose heartbeat lapsed finds its trial failed (and retried) by another
        frozen = study.tell(trial, values if state == TrialState.COMPLETE else None, state=state,
                            skip_if_finished=True)
    gc.collect()
    return frozen


def work(definition: SweepDefinition, url: str, heartbeat: int = 10, poll: float = 1.0) -> None:
    """One worker: claim waiting trials until none is waiting and none is running elsewhere.
    A trial whose worker died goes stale after ``3 * heartbeat`` s and comes back as a waiting copy.
    Proposals are seeded by each trial's number, so workers need no index of their own."""
    storage = open_storage(url, heartbeat)
    try:
        definition = resolve(definition, storage, create=False)
    except LookupError:
        raise ValueError(f"no study {definition.name!r} in {url} to work on; start it with: "
                         f"{run_command(definition)} --storage {url}") from None
    study = optuna.load_study(study_name=definition.name, storage=storage, sampler=make_sampler(definition))
    ctx = TrialContext.build(definition, out_dir(definition))
    objective = objective_fn(definition, ctx)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = list(definition.objectives)

    def progress(t: optuna.trial.FrozenTrial) -> None:
        took = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
        shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values)) if t.values else \
            t.user_attrs.get("error", t.state.name.lower())
        print(f"trial {t.number} {t.state.name.lower()} in {took:.1f} s: {shown}  {t.params}", flush=True)

    while True:
        trial, c = claim(study, url, definition.name)
        if trial is not None:
            progress(run_claimed(study, storage, trial, objective))
        elif c["running"]:
            time.sleep(poll)  # another worker is busy, or died and its trial will go stale
        else:
            return


def worker_command(definition: SweepDefinition, url: str, heartbeat: int) -> list[str]:
    return [sys.executable, "-m", "ablate.sweep", "worker", str(definition.path), "--storage", url,
            "--heartbeat", str(heartbeat),
            *(["--dataset", definition.dataset] if definition.dataset else [])]


def run_sweep(definition: SweepDefinition, storage: str | None = None, workers: int = 1, trials: int | None = None,
              heartbeat: int = 10, progress: bool = True, new_version: bool = False) -> optuna.Study:
    """Check every corner of the space, create the study once (a new version with ``new_version`` when the
    definition changed), then run ``workers`` local worker processes (or work in this process). Raises a
    ``ValueError`` (the CLI then exits non-zero) when no trial completed and some failed."""
    url = storage or default_storage(definition)
    shape = load_dataset(definition.data).shape
    validate_space(definition, shape)
    store = open_storage(url, heartbeat)
    say = print if progress else (lambda *a, **k: None)
    cost = None
    if definition.sampler == "grid" and trial_kind(definition.kind).cost is not None:
        cost = trial_costs(definition, shape, say)
    with storage_lock(url, definition.name):  # one process at a time resolves, creates and tops up the queue
        definition = resolve(definition, store, create=True, new_version=new_version)
        study = create_study(definition, store, trials, cost)
    c = counts(study)
    say(f"study {definition.name!r} in {url}: {c['complete']} complete, {c['waiting']} queued, "
        f"{c['running']} running, {c['fail']} failed", flush=True)
    start = time.perf_counter()
    if workers <= 1:
        work(definition, url, heartbeat)
    else:
        if definition.path is None:
            raise ValueError("several workers need a definition file (load it with load_definition)")
        build_suite(definition.data)  # train and cache the classifier once, not in every worker at once
        env = {**os.environ, ENV: str(default_threads(workers))}  # the workers share the cores
        procs = [subprocess.Popen(worker_command(definition, url, heartbeat), env=env) for _ in range(workers)]
        for p in procs:
            p.wait()
    c = counts(study)
    say(f"done in {time.perf_counter() - start:.0f} s: {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed", flush=True)
    log_summary(definition, study)
    if c["fail"] and not c["complete"] and not c["pruned"]:
        first = next(t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL)
        raise ValueError(f"every trial of {definition.name!r} failed ({c['fail']}); the first: "
                         f"{first.user_attrs.get('error', 'no error recorded')}")
    return study


def log_summary(definition: SweepDefinition, study: optuna.Study) -> None:
    """The Pareto front as a W&B table in a summary run of the study's group."""
    front = pareto(study)
    run = wandb_run(definition, "summary", "sweep-summary") if front else None
    if run is None:
        return
    import wandb

    try:
        cols = ["trial", *definition.objectives, *sorted(front[0].params)]
        table = wandb.Table(columns=cols)
        for t in front:
            table.add_data(t.number, *t.values, *[t.params[k] for k in sorted(front[0].params)])
        run.log({"pareto_front": table})
        run.summary.update({"complete": counts(study)["complete"], "pareto_size": len(front)})
    finally:
        run.finish()
