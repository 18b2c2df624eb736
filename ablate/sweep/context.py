"""The sweep core's view of a trial: its context (the data and metric suite, built once per process), its
knobs (the fixed ones, an architecture's, the suggested ones), its name and checkpoints, and the check of a
whole search space before any trial is queued (each corner's configs built by its kind,
:mod:`ablate.sweep.kinds`)."""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import RetryFailedTrialCallback

from ablate.data import ImageDataset, load_dataset
from ablate.metrics import MetricSuite, build_suite
from ablate.models.checkpoint import read_checkpoint
from ablate.sweep.definition import ARCH, SweepDefinition
from ablate.sweep.kinds import trial_kind


@dataclass
class TrialContext:
    """Per-process state shared by the trials of a sweep: the data and the metric suite (built once)."""

    definition: SweepDefinition
    out_dir: Path
    data: ImageDataset
    suite: MetricSuite

    @classmethod
    def build(cls, definition: SweepDefinition, out_dir: Path) -> "TrialContext":
        data = load_dataset(definition.data)
        return cls(definition, out_dir, data, build_suite(data, definition.data))

    def seeds_and_labels(self, conditional: bool, count: int | None = None) -> tuple[list[int], torch.Tensor | None]:
        """Seeds ``0 .. count - 1`` (the definition's ``seeds`` by default) and, if conditional, a label each."""
        seeds = list(range(self.definition.seeds if count is None else count))
        if conditional and self.data.num_classes is None:
            raise ValueError(f"conditional=True needs labels; dataset {self.data.name!r} has none")
        return seeds, (torch.tensor(seeds) % self.data.num_classes if conditional else None)


def merged_knobs(definition: SweepDefinition, suggested: dict[str, Any]) -> dict[str, Any]:
    """The knobs of a trial with the ``suggested`` values: the fixed ones, an ``arch``'s own, then these."""
    return {**definition.fixed, **definition.architectures.get(suggested.get(ARCH), {}), **suggested}


def trial_tag(number: int, knobs: dict[str, Any]) -> str:
    """A trial's name (its run folder, W&B run, samples): ``trial0007`` or, with an architecture, ``trial0007-unet_2``."""
    return f"trial{number:04d}" + (f"-{knobs[ARCH]}" if ARCH in knobs else "")


def attempt_checkpoints(out_dir: Path, trial, knobs: dict[str, Any]) -> list[Path]:
    """The checkpoint folders of a trial's run and of its earlier attempts' runs (Optuna's ``retry_history``,
    kept by the heartbeat's retry), newest attempt first. ``trial``: a ``FrozenTrial``. A retry that continues
    an earlier attempt trains in that attempt's folder, so its own may not exist."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # retry_history: stable in use
        history = RetryFailedTrialCallback.retry_history(trial)
    return [Path(out_dir) / "runs" / trial_tag(n, knobs) / "checkpoints" for n in [trial.number, *reversed(history)]]


def interrupted_checkpoint(ctx: TrialContext, knobs: dict[str, Any], trial) -> tuple[Path, int] | None:
    """Where an earlier attempt of this trial stopped training (checkpoint, step), or None.

    A worker killed mid-training (a session that ends, a machine that goes away) leaves its trial running in
    the study; the heartbeat marks it stale and queues a copy (Optuna's ``retry_history`` lists the earlier
    attempts' numbers). That copy continues the latest attempt's run from its newest checkpoint that reads
    (``final.ckpt``, ``last.ckpt``, then ``step*.ckpt``, newest first: one cut short by the kill is skipped)
    instead of training from scratch; the resumed run draws the numbers the uninterrupted one would."""
    if trial is None:
        return None
    frozen = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number), None)
    for folder in attempt_checkpoints(ctx.out_dir, frozen, knobs)[1:] if frozen is not None else []:
        found = [folder / "final.ckpt", folder / "last.ckpt", *sorted(folder.glob("step*.ckpt"), reverse=True)]
        best, best_step = None, -1
        for path in (p for p in found if p.is_file()):
            try:
                step = int(read_checkpoint(path).get("global_step", 0))
            except ValueError:
                continue  # unreadable (cut short by the kill): an older one will do
            if step > best_step:
                best, best_step = path, step
        if best is not None:
            return best, best_step
    return None


def space_corners(definition: SweepDefinition) -> list[dict[str, Any]]:
    """Every combination of each searched knob's extremes (a range's ends, every choice), each with the fixed
    knobs and, for an ``arch``, that architecture's knobs: the knob sets a trial can meet at its limits."""
    values = []
    for p in definition.space:
        if p.kind == "choice":
            values.append(list(p.choices))
        elif p.kind == "int":
            grid = p.grid()
            values.append(sorted({grid[0], grid[-1]}))
        else:
            values.append([p.low, p.high])
    out = []
    for combo in itertools.product(*values):
        out.append(merged_knobs(definition, dict(zip((p.name for p in definition.space), combo))))
    return out


def check_trial_knobs(definition: SweepDefinition, knobs: dict[str, Any], data_shape: tuple[int, ...]) -> None:
    """Build what a trial with ``knobs`` builds, for data ``[C, H, W]`` (or signals ``[C, L]``), without running
    it: its kind's typed configs, and that they fit the data. Raises the same ``ValueError`` the trial would."""
    kind = trial_kind(definition.kind)
    kind.build(definition, knobs)
    if kind.check is not None:
        kind.check(definition, knobs, data_shape)


def validate_space(definition: SweepDefinition, image_shape: tuple[int, ...]) -> int:
    """Check every corner of the search space before any trial is queued (:func:`space_corners`); the error
    names the knob set and says what is wrong and allowed. Returns how many knob sets were checked."""
    corners = space_corners(definition)
    for knobs in corners:
        try:
            check_trial_knobs(definition, knobs, image_shape)
        except (TypeError, ValueError) as err:
            shown = ", ".join(f"{k}={v}" for k, v in knobs.items())
            raise ValueError(f"{definition.path or definition.name}: trials with {shown} would fail: {err}") from err
    return len(corners)
