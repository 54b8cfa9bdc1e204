#!/usr/bin/env bash
# GPU extraction benchmark, for a machine with one CUDA GPU (under 8 minutes): ViT-B-16 with
# QuickGELU, random weights, fp16, generated EPIC-layout JPEG folders with hand crops, 8 decode
# workers; end-to-end frames/s vs the bare encoder on the same number of frames (goal >= 0.9).
# Run from the repository root with the project's venv: bash bench/extract_gpu.sh [OUT_DIR]
set -euo pipefail
out="${1:-bench/out}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 450 "$py" bench/extract.py --model ViT-B-16-quickgelu --device cuda --precision fp16 \
    --videos 16 --frames 600 --workers 8 --batch-size 256 --layouts jpeg \
    --json "$out/extract_gpu.json"
