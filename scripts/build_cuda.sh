#!/usr/bin/env bash
# Builds tuneserve with `--features cuda` on a machine without a GPU (or a CUDA
# install): CUDA 13.0's compiler and headers come from the Python package
# registry into a throwaway venv, and the CUDA libraries the binary links to
# are link-time stubs made from the symbols the build references (the binary
# loads the real ones, from the GPU machine's driver and PyTorch install, when
# it starts). Prints the binary's path and size.
#
#   scripts/build_cuda.sh            # release build: target-cuda/release/tuneserve,
#                                    # stripped copy target-cuda/tuneserve-cuda
#   scripts/build_cuda.sh --check    # `cargo check --all-targets` only (what CI runs)
#
# Versions are CUDA 13.0's, the GPU machines' driver: PTX from a newer nvcc or
# nvvm carries a `.version` that 13.0's driver refuses. nvvm is pinned too
# (unpinned, pip brings a newer one with the 13.0 nvcc). CUDA_COMPUTE_CAP=90
# (H100/H200) unless set; CUDA_VENV (default /opt/cuda13) and CARGO_TARGET_DIR
# (default target-cuda, apart from the CPU build's target/) can be moved.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
case "${1:-}" in
  --check) mode=check ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

VENV=${CUDA_VENV:-/opt/cuda13}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda}
PACKAGES=(
  "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88"
  "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85"
)

started=$SECONDS
if [ ! -f "$VENV/bin/nvcc-installed" ]; then
  echo "== installing CUDA 13.0's nvcc, headers and runtime into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
  touch "$VENV/bin/nvcc-installed"
fi
CUDA=$(echo "$VENV"/lib/python3*/site-packages/nvidia/cu13)
[ -x "$CUDA/bin/nvcc" ] || { echo "no nvcc under $CUDA" >&2; exit 1; }
echo "== CUDA toolkit: $CUDA ($(( SECONDS - started )) s)"

# nvcc from the venv; candle-kernels compiles for this compute capability;
# cudarc finds its link directories (lib, lib/stubs) under CUDA_HOME.
export PATH="$CUDA/bin:$PATH" CUDA_HOME="$CUDA"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
unset NVCC_CCBIN # an empty value makes nvcc fail
mkdir -p "$CUDA/lib/stubs"
ln -sf libcudart.so.13 "$CUDA/lib/libcudart.so" # -lcudart (candle-kernels' static kernels)
nvcc --version | tail -n 2

if [ "$mode" = check ]; then
  echo "== cargo check --release --features cuda --all-targets"
  time nice -n "${NICE:-0}" cargo check --release --locked --features cuda --all-targets
  echo "CUDA check passed in $(( SECONDS - started )) s"
  exit 0
fi

echo "== cargo build --release --features cuda --lib (everything but the final link)"
time nice -n "${NICE:-0}" cargo build --release --locked --features cuda --lib

# One stub library per CUDA library the objects call into, with every symbol
# they reference and the real library's soname, so the binary asks for the
# real one at run time. libcudart is the real one from the venv.
echo "== link-time stubs for the CUDA driver, cuBLAS, cuBLASLt, cuRAND and NVRTC"
symbols=$(for f in "$CARGO_TARGET_DIR"/release/deps/*.rlib; do nm -u "$f" 2>/dev/null; done |
  awk '$1 == "U" { print $2 }' | sort -u)
make_stub() { # library soname pattern
  local lib=$1 soname=$2 pattern=$3 src
  src=$(mktemp --suffix=.c)
  # Every stub returns 0 (success); a created cuRAND generator gets a handle.
  echo "$symbols" | grep -E "$pattern" | grep -vx curandCreateGenerator |
    sed 's/.*/int &(void) { return 0; }/' >"$src"
  if echo "$symbols" | grep -qx curandCreateGenerator && [ "$lib" = libcurand.so ]; then
    echo 'int curandCreateGenerator(void **g, int t) { (void)t; *g = (void *)1; return 0; }' >>"$src"
  fi
  echo "   $soname: $(wc -l <"$src") symbols"
  cc -shared -fPIC -o "$CUDA/lib/stubs/$lib" -Wl,-soname,"$soname" "$src"
  rm -f "$src"
}
make_stub libcuda.so libcuda.so.1 '^cu[A-Z]'
make_stub libcublas.so libcublas.so.13 '^cublas([A-Z]|_)' # not cublasLt
make_stub libcublasLt.so libcublasLt.so.13 '^cublasLt'
make_stub libcurand.so libcurand.so.10 '^curand'
make_stub libnvrtc.so libnvrtc.so.13 '^nvrtc'

echo "== cargo build --release --features cuda (the binary)"
time nice -n "${NICE:-0}" cargo build --release --locked --features cuda --bin tuneserve
bin="$CARGO_TARGET_DIR/release/tuneserve"
stripped="$CARGO_TARGET_DIR/tuneserve-cuda"
strip -o "$stripped" "$bin"
echo "== needs at run time (resolved on the GPU machine):"
readelf -d "$bin" | awk '/NEEDED/ { print "   " $NF }'
echo "built in $(( SECONDS - started )) s"
echo "binary: $bin ($(du -h "$bin" | cut -f1))"
echo "stripped: $stripped ($(du -h "$stripped" | cut -f1))"
