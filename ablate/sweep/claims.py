"""Proposals that never replay, and study creation and queueing that are safe under concurrency.

* :class:`PerTrialSeed`: the definition's sampler, re-made for every trial with a seed derived from the
  definition's seed and the trial's *number*. Trial numbers are unique in a study however many workers or
  runs claim them, so a resumed, topped-up or concurrent study never replays the first proposals of an
  earlier run (a worker seeded once, from the definition's seed plus its index, did), while the same study
  history and trial number give the same proposal (reproducible).
* :func:`storage_lock`: one process at a time creates the tables, the study and its queue: an exclusive
  ``flock`` on ``<db>.lock`` beside a SQLite file, a session advisory lock on PostgreSQL. Inside it the
  queue is topped up from what exists, so two ``run`` commands started together queue exactly N trials.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.samplers import BaseSampler

SEED_STRIDE = 7919  # a prime: seeds of neighbouring trials are far apart


class PerTrialSeed(BaseSampler):
    """Delegates to ``make(seed)``, a new sampler per trial seeded with ``seed + SEED_STRIDE * trial.number``."""

    def __init__(self, make: Callable[[int | None], BaseSampler], seed: int | None) -> None:
        self._make, self._seed = make, seed
        self._current = make(seed)

    def _for(self, number: int) -> BaseSampler:
        return self._make(None if self._seed is None else self._seed + SEED_STRIDE * number)

    def before_trial(self, study: optuna.Study, trial) -> None:
        self._current = self._for(trial.number)
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._current.reseed_rng()


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def storage_lock(url: str, name: str) -> Iterator[None]:
    """Hold an exclusive lock called ``name`` on the database ``url`` (SQLite: ``<db>.<name>.lock`` beside it;
    PostgreSQL: an advisory lock; other databases: none). Different names never wait for each other."""
    if url.startswith("sqlite:///"):
        import fcntl

        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f"{path.name}.{hashlib.sha1(name.encode()).hexdigest()[:8]}.lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if url.startswith(("postgresql", "postgres")):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            try:
                conn = engine.connect()
            except Exception as err:  # an unreachable server, a bad URL, a missing database
                raise ValueError(f"cannot open study storage {url!r}: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0]}") from err
            with conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key(name)})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(name)})
        finally:
            engine.dispose()
        return
    yield
