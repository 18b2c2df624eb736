#!/usr/bin/env bash
# The paper-like preset on a GPU (issue #30): train configs/mnist5k_resnet_cpu.yaml (all 4,500 mnist5k digits at
# 28x28, ResNet 8x32, 12,000 steps) on the device, then the full league with the Studio's and GoldDiff's
# protocols, timing each part. The CPU's figures for the same preset are in the README ("Like for like").
# Under 10 minutes on one H100 is the aim (the timeouts stop each part). Extra arguments go to train.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-runs}/gpu_preset"
start=$(date +%s)
ckpt="$(timeout 360 "$PY" train.py configs/mnist5k_resnet_cpu.yaml accelerator=gpu progress=false out="$OUT" "$@" | tail -n 1)"
echo "training: $(( $(date +%s) - start )) s -> $ckpt"
mid=$(date +%s)
timeout 220 "$PY" evaluate.py "$ckpt" --device cuda --seeds 32 --samplers ddim --protocols studio,golddiff \
  --wandb disabled --quiet --out "$OUT/evaluation"
echo "league and protocols: $(( $(date +%s) - mid )) s"
