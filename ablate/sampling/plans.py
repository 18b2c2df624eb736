"""Before and after a long sampling job: the planners' estimates (:mod:`ablate.oracle.plan`) and the
wall time beside them. Shared by ablate's own samplers (:mod:`ablate.sampling.sampler`) and the diffusers
schedulers' loop (:mod:`ablate.sampling.schedulers`)."""
from __future__ import annotations

import sys
import time
from typing import Sequence

import torch

from ablate.oracle.plan import format_seconds


def announce_plan(denoisers, alpha_bars: Sequence[float], batch: int, labels: torch.Tensor | None,
                  progress: bool, what: str):
    """Before a long job: for the denoisers that plan (the oracle: ``plan``, :mod:`ablate.oracle.plan`),
    refuse the job when its memory estimate exceeds the budget (always; cheap) and, with ``progress``,
    estimate its time and print it. Returns ``(estimate seconds or None, start time, what)`` for
    :func:`report_plan`."""
    seconds = None
    for d in denoisers:
        plan = getattr(d, "plan", None)
        if callable(plan):
            est = plan([float(a) for a in alpha_bars], batch, labels, timing=progress, what=what)
            seconds = (seconds or 0.0) + est.seconds
            if progress:
                print(f"{what}: planned {est}", file=sys.stderr, flush=True)
    return seconds, time.perf_counter(), what


def report_plan(planned) -> None:
    """After the job: its wall time beside the plan (with ``progress``, where one was made)."""
    seconds, start, what = planned
    if seconds is not None and seconds == seconds:  # NaN: no timing estimate was made
        took = time.perf_counter() - start
        print(f"{what}: took {format_seconds(took)} (planned {format_seconds(seconds)}, "
              f"{took / max(seconds, 1e-9):.2f}x)", file=sys.stderr, flush=True)
