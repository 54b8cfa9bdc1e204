#!/usr/bin/env bash
# GPU method-cost benchmark, for a machine with one CUDA GPU: every method's parameters, step
# time and peak memory (torch.cuda.max_memory_allocated) at C = 300, batches 32 and 128, with the
# tiny and the ViT-B/16 text towers; CoCoOp at 128, else 64, 32, 16 on out-of-memory (a few minutes).
# Run from the repository root with the project's venv: bash bench/methods_gpu.sh [OUT_DIR]
set -euo pipefail
out="${1:-bench/out}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
HF_HUB_OFFLINE=1 timeout 540 "$py" bench/methods.py --towers tiny,ViT-B-16-quickgelu --device cuda \
    --classes 300 --batches 32,128 --cocoop-batches 128,64,32,16 --json "$out/methods_gpu.json"
