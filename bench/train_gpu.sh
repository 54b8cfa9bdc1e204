#!/usr/bin/env bash
# GPU training benchmark, for a machine with one CUDA GPU (under 8 minutes on an H100):
# the step comparison at EPIC-100 scale, then 15 full epochs at EPIC-100 scale (goal: <= 60 s).
# Run from the repository root with the project's venv: bash bench/train_gpu.sh [OUT_DIR]
set -euo pipefail
out="${1:-bench/out}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 420 "$py" bench/train.py --scale 1 --device cuda --steps 100 --epochs 15 \
    --json "$out/train_gpu.json"
