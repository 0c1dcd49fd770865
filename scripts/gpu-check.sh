#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: configures and builds the CUDA backend (Hopper, sm_90a, unless
# CUDA_ARCH says otherwise), runs every kernel check (tests/cuda/kernel_check.cpp: CUDA kernel
# vs its CPU twin, plus a micro-benchmark) and the training-step check (tests/cuda/step_check.cpp:
# the CUDA step against the CPU step for every base format, a 200-step run, the memory budget,
# activation offload), then the benchmarks (scripts/bench.sh: axl-bench and PyTorch + PEFT in
# the same call, and axl-bench's per-op profile of the nf4 batch-4 steps), and prints a short
# table last.
#   scripts/gpu-check.sh [build-dir] [--checks-only]   (default build-gpu; AXL_CHECK_SEED=N
#                                                       repeats a run)
# Logs go to $OUT (the device machine) or the build directory: gpu-check.log (kernels),
# gpu-check.log.step, axl_bench.log, peft_bench.log, bench.out (with the ratios), profile.log.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-gpu"
checks_only=0
for arg in "$@"; do
  case "$arg" in
    --checks-only) checks_only=1 ;;
    *) build="$arg" ;;
  esac
done
arch="${CUDA_ARCH:-90a}"
jobs="$(nproc)"
out="${OUT:-$build}"
log="$out/gpu-check.log"
mkdir -p "$build" "$out"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
# Tests on (the checks live in tests/), examples off: only the check and bench targets are built.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAXL_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" -DAXL_BUILD_TESTS=ON -DAXL_BUILD_EXAMPLES=OFF >/dev/null
start=$SECONDS
targets=(axl_kernel_check axl_step_check)
[ "$checks_only" -eq 1 ] || targets+=(axl_bench)
cmake --build "$build" -j"$jobs" --target "${targets[@]}" >/dev/null
echo "built ${targets[*]} in $((SECONDS - start)) s"

set +e
"$build/tests/axl_step_check" > "$log.step" 2>&1
step_status=$?
"$build/tests/axl_kernel_check" 2>&1 | tee "$log"
kernel_status=${PIPESTATUS[0]}
echo "---- training step check (CUDA vs CPU) ----"
cat "$log.step"
bench_status=-
if [ "$checks_only" -eq 0 ]; then
  echo "---- benchmarks ----"
  OUT="$out" "$root/scripts/bench.sh" "$build/bench/axl_bench" 2>&1 | tee "$out/bench.out"
  bench_status=${PIPESTATUS[0]}
  "$build/bench/axl_bench" --models 1b,8b --bases nf4 --batches 4 --steps 3 --warmup 1 --profile 1 \
      > "$out/profile.log" 2>&1
  cat "$out/profile.log"
fi
set -e

printf '\n%-28s %s\n' "check" "exit status"
printf '%-28s %s\n' "kernels vs CPU" "$kernel_status" "training step vs CPU" "$step_status" \
       "benchmarks" "$bench_status"
grep -E "passed, .* failed" "$log" | tail -1 || true
if [ "$checks_only" -eq 0 ]; then
  echo
  grep -E "^(1b|8b) +(nf4|bf16) +[0-9]" "$out/axl_bench.log" | awk '{printf "axl %-3s %-4s batch %s: %7s tokens/s  peak %6s GiB  MFU %s\n", $1, $2, $3, $6, $7, $9}' || true
  grep -A20 "^ratios" "$out/bench.out" || true
fi
[ "$kernel_status" -eq 0 ] && [ "$step_status" -eq 0 ] && { [ "$bench_status" = "-" ] || [ "$bench_status" -eq 0 ]; }
