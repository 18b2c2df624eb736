"""The checkpoints a study in ``studies/`` still needs: for every trial that is not complete (running when its
worker was killed, or queued as a retry), the newest checkpoint of each of its attempts' runs (``final.ckpt``
when training had finished, else ``last.ckpt``). Print them, one per line, for ``git add -f``:

    git add -f $(python studies/keep.py)
"""
from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from ablate.sweep.context import attempt_checkpoints

SWEEPS = Path(__file__).parent / "sweeps"


def needed() -> list[Path]:
    out = []
    for db in sorted(SWEEPS.glob("*.db")):
        url = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(url):
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            for t in study.get_trials(deepcopy=False):
                if t.state not in (TrialState.RUNNING, TrialState.WAITING):
                    continue
                knobs = t.params or t.system_attrs.get("fixed_params", {})
                for folder in attempt_checkpoints(SWEEPS / summary.study_name, t, knobs):
                    best = next((folder / n for n in ("final.ckpt", "last.ckpt") if (folder / n).is_file()), None)
                    if best is not None:
                        out.append(best)
    return out


if __name__ == "__main__":
    print("\n".join(str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p) for p in needed()))
