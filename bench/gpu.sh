#!/usr/bin/env bash
# Every GPU figure in one run, for a machine with one CUDA GPU (under 8 minutes): extraction of
# ViT-B/16 (fp16, random weights) with each decoder (CPU Pillow workers; --decode gpu: nvJPEG
# and tensor resize on the device), the training step and 15 epochs at EPIC-100 scale, the
# stacked grid (seeds as one model vs one by one) and every method's step cost; then
# bench/RESULTS.md is written again with the GPU sections beside the CPU ones in bench/out.
# Run from the repository root: bash bench/gpu.sh [OUT_DIR]   (sets up .venv if needed)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-bench/out}"
mkdir -p "$out"
[ -x .venv/bin/python ] || bash scripts/setup-env.sh
py="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
w=$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))
# extraction: one round per layout (a lent GPU machine runs nothing else)
timeout 100 "$py" bench/extract.py --model ViT-B-16-quickgelu --device cuda --precision fp16 \
    --videos 8 --frames 600 --workers "$w" --batch-size 256 --layouts jpeg,tar,mp4 --rounds 1 \
    --json "$out/extract_gpu.json"
timeout 80 "$py" bench/extract.py --model ViT-B-16-quickgelu --device cuda --precision fp16 \
    --videos 8 --frames 600 --workers "$w" --batch-size 256 --layouts jpeg,tar --decode gpu --rounds 1 \
    --json "$out/extract_gpu_decode.json"
timeout 150 "$py" bench/train.py --scale 1 --device cuda --steps 100 --epochs 15 --compile \
    --json "$out/train_gpu.json"
timeout 90 "$py" bench/grid.py --segments 4000 --frames 32 --seeds 2 --epochs 3 --stack 8 \
    --json "$out/grid_gpu.json"
timeout 80 "$py" bench/methods.py --towers ViT-B-16-quickgelu --device cuda --classes 300 \
    --batches 32,128 --json "$out/methods_gpu.json"
"$py" bench/report.py "$out" > bench/RESULTS.md
echo "wrote bench/RESULTS.md"
