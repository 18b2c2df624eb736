"""How many CPU threads torch (and the oracle's OpenMP kernel) use: ``--threads N`` or ``ABLATE_THREADS``.

Two torch jobs that each spin on every core run 10-20x slower, not 2x; give each its share. Every entry point
(``train.py``, ``evaluate.py``, ``python -m ablate.sweep``, ``python -m ablate.design``, ``python -m
ablate.preview``) takes ``--threads``; without it ``ABLATE_THREADS`` decides, and without that torch's default
(all cores). ``ablate.sweep run --workers W`` gives each local worker ``cores // W`` threads unless told.
"""
from __future__ import annotations

import os

ENV = "ABLATE_THREADS"


def share(workers: int) -> int:
    """Threads per process when ``workers`` processes share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def default_threads(workers: int = 1) -> int | None:
    """Threads when none is asked for: ``$ABLATE_THREADS``, else ``cores // workers`` when several workers
    share the machine, else None (torch's default)."""
    raw = os.environ.get(ENV)
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{ENV}={raw!r} must be a positive integer") from None
    return share(workers) if workers > 1 else None


def apply_threads(threads: int | None = None, workers: int = 1) -> int | None:
    """Use ``threads`` (else :func:`default_threads` for ``workers`` processes on this machine) in this
    process and in the processes it starts. Returns the number applied, or None (torch's default stays)."""
    if threads is None:
        threads = default_threads(workers)
        if threads is None:
            return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be a positive integer")
    import torch

    for name in (ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    return threads
