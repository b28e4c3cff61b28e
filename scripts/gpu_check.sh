#!/usr/bin/env bash
# The GPU check of the CUDA build (README → GPU): model and trainer parity on
# the GPU, a service walkthrough, speed against PyTorch on the same GPU.
#
# Made on the CPU machine, run on the GPU machine, which needs no Rust, no
# network and nothing of the repository: `bundle` gathers what the run needs
# (the stripped CUDA binary, the parity fixture, 64 training rows, the
# reference scripts, this script and gpu_check.py, libcudart 13.0 and
# fallback stubs) into one folder; that folder's copy of this script runs it.
#
#   scripts/gpu_check.sh bundle [DIR] [--binary PATH]   # here (default DIR
#                                     target-cuda/gpu-check, binary
#                                     target-cuda/tuneserve-cuda from build_cuda.sh)
#   DIR/gpu_check.sh run [--device cuda:0] [--out DIR]  # there: one run, under 8 minutes
#   scripts/gpu_check.sh dry-run      # here: bundle the CPU build, run every step on
#                                     # `cpu` (tiny speed shapes; the GPU's code path
#                                     # forced with TUNESERVE_COMPOSED_OPS=1)
#
# On the GPU machine the CUDA libraries come from the NVIDIA driver (libcuda)
# and the PyTorch install (cuBLAS 13, cuBLASLt, NVRTC, cuRAND under
# site-packages/nvidia); libcudart 13.0 comes with the bundle, and a cuRAND or
# NVRTC the install lacks is replaced by the bundle's stub (tuneserve draws no
# random numbers on the GPU and compiles no kernels at run time: candle only
# opens both when it opens the device).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "gpu_check: $*" >&2; exit 1; }

bundle() { # DIR BINARY [CUDA-LIB-DIR]
  local dir=$1 binary=$2 cuda_lib=${3:-} repo
  repo=$(cd "$here/.." && pwd)
  [ -x "$binary" ] || die "no binary at $binary (scripts/build_cuda.sh makes it)"
  rm -rf "$dir" && mkdir -p "$dir"/{bin,lib/fallback,fixtures,reference}
  strip -o "$dir/bin/tuneserve" "$binary"
  cp "$here/gpu_check.sh" "$here/gpu_check.py" "$dir/"
  cp "$repo/reference/hf_bench.py" "$repo/reference/cpu_guard.py" "$dir/reference/"
  cp -r "$repo/tests/fixtures/gpt2-tiny-parity" "$repo/tests/fixtures/gpt2-tiny-lora" "$dir/fixtures/"
  head -n 36 "$repo/tests/fixtures/tweets/train.jsonl" >"$dir/fixtures/train36.jsonl"
  head -n 64 "$repo/tests/fixtures/tweets/train.jsonl" >"$dir/fixtures/train64.jsonl"
  if [ -n "$cuda_lib" ]; then
    cp -L "$cuda_lib/libcudart.so.13" "$dir/lib/"
    cp "$cuda_lib/stubs/libcurand.so" "$dir/lib/fallback/libcurand.so.10"
    cp "$cuda_lib/stubs/libnvrtc.so" "$dir/lib/fallback/libnvrtc.so.13"
  fi
  echo "bundle: $dir ($(du -sh "$dir" | cut -f1); binary $(du -h "$dir/bin/tuneserve" | cut -f1))"
}

# The folder holding library $1: Python's site-packages (PyTorch's NVIDIA
# wheels, either layout), then the dynamic linker's cache.
find_lib() {
  local name=$1 site
  for site in $("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))'); do
    [ -d "$site/nvidia" ] || continue
    local hit
    hit=$(find "$site/nvidia" -name "$name" 2>/dev/null | head -n 1)
    [ -n "$hit" ] && { dirname "$hit"; return; }
  done
  ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n { print $NF; exit }' | xargs -r dirname
}

# LD_LIBRARY_PATH for the binary: real libraries first, the bundle's last.
library_path() {
  local dirs=() lib dir
  for lib in libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13 libcurand.so.10 libcudart.so.13; do
    dir=$(find_lib "$lib")
    if [ -n "$dir" ]; then
      echo "   $lib: $dir" >&2
      dirs+=("$dir")
    else
      case $lib in
        libcublas*) die "$lib not found (PyTorch's nvidia-cublas wheel, CUDA 13, provides it)" ;;
        *) echo "   $lib: not installed; the bundle's" >&2 ;;
      esac
    fi
  done
  dirs+=("$here/lib" "$here/lib/fallback")
  local IFS=:
  echo "${dirs[*]}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

run_check() { # [--device D] [--out DIR] [--quick] [--steps 1,2,3,4]
  local device=cuda:0 out="$here/results" extra=()
  while [ $# -gt 0 ]; do
    case $1 in
      --device) device=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --quick) extra+=(--quick); shift ;;
      --steps) extra+=(--steps "$2"); shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  PYTHON=${PYTHON:-$(command -v python3)}
  "$PYTHON" -c 'import torch, transformers, safetensors' 2>/dev/null ||
    die "$PYTHON lacks torch, transformers or safetensors (set PYTHON=...)"
  if [ "$device" != cpu ]; then
    echo "== libraries"
    export LD_LIBRARY_PATH
    LD_LIBRARY_PATH=$(library_path)
    if ldd "$here/bin/tuneserve" | grep -q "not found"; then
      ldd "$here/bin/tuneserve" | grep "not found" >&2
      die "the binary's libraries are missing (above)"
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  fi
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  "$PYTHON" "$here/gpu_check.py" --bundle "$here" --device "$device" --out "$out" "${extra[@]}"
}

case "${1:-}" in
  bundle)
    shift
    dir="$here/../target-cuda/gpu-check" binary="$here/../target-cuda/tuneserve-cuda"
    [ $# -gt 0 ] && [ "${1#--}" = "$1" ] && { dir=$1; shift; }
    [ "${1:-}" = --binary ] && binary=$2
    cuda_lib=$(echo "${CUDA_VENV:-/opt/cuda13}"/lib/python3*/site-packages/nvidia/cu13/lib)
    [ -f "$cuda_lib/stubs/libcurand.so" ] || die "no link stubs in $cuda_lib/stubs: run scripts/build_cuda.sh first"
    bundle "$dir" "$binary" "$cuda_lib"
    echo "copy it to the GPU machine and run: $dir/gpu_check.sh run --device cuda:0"
    ;;
  run)
    shift
    run_check "$@"
    ;;
  dry-run)
    dir=$(mktemp -d)/gpu-check
    bin="${CARGO_TARGET_DIR:-$here/../target}/release/tuneserve"
    bundle "$dir" "$bin"
    started=$SECONDS
    TUNESERVE_COMPOSED_OPS=1 "$dir/gpu_check.sh" run --device cpu --quick --out "$dir/results"
    echo "dry run took $(( SECONDS - started )) s; bundle and results in $dir"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
