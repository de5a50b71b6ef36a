#!/usr/bin/env bash
# The training pipeline's GPU variants on one GPU, in under 8 minutes: straightforward vs fast for naive,
# amst_joint and amst_full at the CREMA-D shape (card name, samples/s, GPU utilisation, peak memory, host syncs in
# the batch loop), then bench/trainer.py's step and straightforward-vs-fast tables on the GPU.
# Uses .venv (made by `make venv` when missing) or $PYTHON. Results also go to $OUT (or ./bench-out) as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || make venv >/dev/null
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 300 "$PYTHON" bench/gpu_check.py --train 512 --batch-size 64 --repeats 2 --json "$OUT/gpu_check.json"
timeout 170 "$PYTHON" bench/trainer.py --shapes cremad --methods naive,amst_joint,amst_full --repeats 3 \
    --batches 3 --epoch-repeats 0 --pipeline-shapes avdigits --json "$OUT/trainer_gpu.json"
