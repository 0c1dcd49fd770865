#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: configures and builds the CUDA backend (Hopper, sm_90a, unless
# CUDA_ARCH says otherwise), runs every kernel check (tests/cuda/kernel_check.cpp: CUDA kernel
# vs its CPU twin, plus a micro-benchmark) and the training-step check (tests/cuda/step_check.cpp:
# the CUDA step against the CPU step, a 200-step run, the memory budget), and prints a table last.
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
cmake --build "$build" -j"$jobs" --target axl_kernel_check axl_step_check >/dev/null
echo "built axl_kernel_check and axl_step_check in $((SECONDS - start)) s"

set +e
"$build/tests/axl_step_check" > "$log.step" 2>&1
step_status=$?
"$build/tests/axl_kernel_check" 2>&1 | tee "$log"
kernel_status=${PIPESTATUS[0]}
set -e
echo "---- training step check (CUDA vs CPU) ----"
cat "$log.step"
printf '\n%-28s %s\n' "check" "exit status"
printf '%-28s %s\n' "kernels vs CPU" "$kernel_status" "training step vs CPU" "$step_status"
[ "$kernel_status" -eq 0 ] && [ "$step_status" -eq 0 ]
