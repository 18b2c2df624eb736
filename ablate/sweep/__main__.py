"""``python -m ablate.sweep``: run, resume and inspect sweeps defined in ``sweeps/*.yaml``.

    python -m ablate.sweep run sweeps/oracle_patch_schedule.yaml              # SQLite under runs/sweeps/
    python -m ablate.sweep run sweeps/X.yaml --workers 2 --trials 40
    python -m ablate.sweep run sweeps/X.yaml --storage postgresql://postgres@127.0.0.1/ablate
    python -m ablate.sweep run sweeps/X.yaml --new-version   # the definition changed: a new study beside the old
    python -m ablate.sweep resume sweeps/X.yaml          # finish the queued and interrupted trials
    python -m ablate.sweep status sweeps/X.yaml
    python -m ablate.sweep report sweeps/X.yaml          # static HTML: Pareto front, knobs, sample grids
    python -m ablate.sweep dashboard sweeps/X.yaml       # optuna-dashboard on http://127.0.0.1:8080
    python -m ablate.sweep worker sweeps/X.yaml --storage URL   # one more worker, on any machine
"""
from __future__ import annotations

import argparse
import sys

from ablate.sweep.definition import load_definition


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ablate.sweep", description=__doc__.splitlines()[0],
                                epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "resume", "status", "report", "dashboard", "worker"])
    p.add_argument("definition", help="sweeps/<name>.yaml")
    p.add_argument("--dataset", help="which of the definition's 'datasets' (when it names several)")
    p.add_argument("--storage", help="database URL (default: sqlite:///runs/sweeps/<name>.db)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (run, resume)")
    p.add_argument("--trials", type=int, help="completed trials wanted (default: the definition's)")
    p.add_argument("--heartbeat", type=int, default=10, help="seconds between worker heartbeats")
    p.add_argument("--runs", help="root of everything written: databases, grids, W&B, classifiers "
                   "(default: $ABLATE_RUNS, else runs/)")
    p.add_argument("--threads", type=int, help="CPU threads per process (default: $ABLATE_THREADS, else all "
                   "cores; with --workers W, cores // W each)")
    p.add_argument("--new-version", action="store_true",
                   help="run: the definition changed since its study ran; start <name>-vN beside it")
    p.add_argument("--out", help="report: the HTML file (default: runs/sweeps/<name>/report.html)")
    p.add_argument("--port", type=int, default=8080, help="dashboard port on 127.0.0.1")
    a = p.parse_args(argv)
    try:
        from ablate.threads import apply_threads

        apply_threads(a.threads, a.workers if a.command in ("run", "resume") else 1)  # workers inherit it
        from ablate.paths import set_runs_root

        set_runs_root(a.runs)
        definition = load_definition(a.definition, a.dataset)
        from ablate.sweep import storage, workers

        url = a.storage or storage.default_storage(definition)
        if a.command in ("run", "resume"):
            if a.workers < 1:
                raise ValueError(f"--workers={a.workers} must be >= 1")
            workers.run_sweep(definition, url, a.workers, a.trials, a.heartbeat, new_version=a.new_version)
        elif a.command == "worker":
            workers.work(definition, url, a.heartbeat)
        elif a.command == "status":
            print("\n".join(workers.status_lines(definition, url)))
        elif a.command == "report":
            from ablate.sweep.report import write_report
            print(write_report(definition, url, a.out))
        else:
            from optuna_dashboard import run_server
            print(f"optuna-dashboard on http://127.0.0.1:{a.port} (Ctrl-C stops it)", flush=True)
            storage.load_existing(definition, url)  # a clear error, and no empty database, for a study never run
            run_server(storage.open_storage(url, a.heartbeat), host="127.0.0.1", port=a.port)
    except ValueError as err:
        sys.exit(f"ablate.sweep: {err}")


if __name__ == "__main__":
    main()
