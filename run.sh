#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh          create .venv on first use, then run the main job on the embedded default data:
#                     train the quick CPU preset (train.py), then evaluate it against the oracle (evaluate.py)
#   ./run.sh test     create .venv on first use, then run the test suite (what CI runs)
# Extra arguments go to train.py (key=value overrides) or to pytest (e.g. `./run.sh test -m slow`);
# `./run.sh preview` draws the oracle machines side by side without any training.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
STAMP=.venv/.installed
WANT="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "setting up .venv (first run only) ..." >&2
  "$PY" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -c constraints.txt -e '.[dev]'
  echo "$WANT" > "$STAMP"
fi
job="${1:-main}"
[ $# -gt 0 ] && shift
case "$job" in
  main)
    # progress goes to the terminal; the run keeps its own clean log (runs/train/<name>/train.log)
    ckpt="$(.venv/bin/python train.py "$@" | tee /dev/stderr | tail -n 1)"   # pipefail: a failed training stops here
    exec .venv/bin/python evaluate.py "$ckpt" ;;
  preview) exec .venv/bin/python -m ablate.preview "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: ./run.sh [main|test|preview] [args...]" >&2; exit 2 ;;
esac
