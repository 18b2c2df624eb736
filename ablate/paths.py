"""Where ablate writes: everything under one root, ``runs/`` in the working directory by default.

``--runs DIR`` on every entry point, or ``ABLATE_RUNS``, moves the whole tree: training runs (``train/``),
evaluations of foreign networks (``evaluate/``), sweeps and their databases, grids and W&B folders
(``sweeps/``), the reference classifiers' cache (``classifiers/``) and previews (``preview/``).
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "ABLATE_RUNS"


def runs_root() -> Path:
    return Path(os.environ.get(ENV) or "runs")


def set_runs_root(path: str | Path | None) -> None:
    """Use ``path`` as the root in this process and the processes it starts (None: leave it)."""
    if path is not None:
        os.environ[ENV] = str(path)
