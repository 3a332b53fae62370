#!/usr/bin/env bash
# One command on a GPU machine (prepared for one H100/H200, about 8 minutes): the CUDA tests, the
# paper model's throughput against the GPU's bf16 matmul rate, whether the data pipeline keeps up,
# and a 5-minute training run printing held-out exact match. Run from the repository root:
#   bash benchmarks/gpu_check.sh            (after `make setup`; torch must see a CUDA GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
echo "== CUDA tests"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/core/test_model.py -k cuda
echo "== paper model: throughput, data pipeline, 5-minute training"
timeout 420 "$PY" benchmarks/gpu_check.py --seconds "${SECONDS_TRAIN:-300}"
