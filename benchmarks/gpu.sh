#!/usr/bin/env bash
# Every GPU measurement of benchmarks/RESULTS.md in one go: sets itself up (a venv with the
# project), prints the GPU, then runs benchmarks/gpu_bench.py. Well inside 10 minutes on one
# NVIDIA H200. Smoke-test the script itself on a CPU with: benchmarks/gpu.sh --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import torch, nstvideo" >/dev/null 2>&1; then
  if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
  . .venv/bin/activate
  python -c "import torch" >/dev/null 2>&1 || python -m pip install -q torch torchvision
  python -m pip install -q -e .
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python benchmarks/gpu_bench.py "$@" 2>&1 | tee benchmarks/gpu_last_run.txt
