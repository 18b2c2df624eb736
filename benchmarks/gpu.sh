#!/usr/bin/env bash
# The GPU figures of the README in one run (#20): the oracle on the GPU against the CPU (deviation), seconds
# per step at N = 4,500 and at 60,000 training images, and a short training run of the GPU preset. Finishes
# in under 8 minutes on one H100 (the timeout stops it at 8). Extra arguments go to benchmarks/gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
exec timeout 480 "$PY" benchmarks/gpu.py "$@"
