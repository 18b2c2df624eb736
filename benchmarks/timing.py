"""Shared by the benchmark scripts: the median wall time of repeated calls."""
from __future__ import annotations

import statistics
import time


def timed(fn, reps: int):
    """Call ``fn`` ``reps`` times; return the median seconds and the last result."""
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out
