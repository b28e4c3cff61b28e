#!/usr/bin/env bash
# CI step: `cargo check --features cuda` on a machine without a GPU, after
# installing CUDA 13.0's compiler and headers from the Python package registry
# (scripts/build_cuda.sh --check does both). Most of its time is candle's CUDA
# kernels compiling (README → GPU has the timing).
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/build_cuda.sh --check
