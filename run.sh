#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh          create .venv on first use, then run the main job on the embedded default data
#   ./run.sh test     create .venv on first use, then run the test suite (what CI runs)
# Extra arguments go to the job (see `./run.sh main --help`) or to pytest (e.g. `./run.sh test -m slow`).
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
  main) exec .venv/bin/python -m ablate.preview "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: ./run.sh [main|test] [args...]" >&2; exit 2 ;;
esac
