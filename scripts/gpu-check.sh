#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: configures and builds the CUDA backend (Hopper, sm_90a, unless
# CUDA_ARCH says otherwise), runs every kernel check (tests/cuda/kernel_check.cpp: CUDA kernel
# vs its CPU twin, plus a micro-benchmark) and prints the results table last.
#   scripts/gpu-check.sh [build-dir]      (default build-gpu; AXL_CHECK_SEED=N repeats a run)
# The full log is also written to $OUT/gpu-check.log when OUT is set (the device machine).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-gpu}"
arch="${CUDA_ARCH:-90a}"
jobs="$(nproc)"
log="${OUT:-$build}/gpu-check.log"
mkdir -p "$build" "$(dirname "$log")"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
# Tests on (the check lives in tests/), examples off: only the check target is built.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAXL_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" -DAXL_BUILD_TESTS=ON -DAXL_BUILD_EXAMPLES=OFF >/dev/null
start=$SECONDS
cmake --build "$build" -j"$jobs" --target axl_kernel_check >/dev/null
echo "built axl_kernel_check in $((SECONDS - start)) s"

set +e
"$build/tests/axl_kernel_check" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo "kernel checks exit status: $status (log: $log)"
exit "$status"
