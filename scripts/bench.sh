#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: axl-bench (bench/axl_bench.cpp) and its PyTorch + PEFT twin
# (bench/peft_bench.py) on the same shapes, one after the other, then the ratios
# (axl tokens/s over PyTorch eager and compiled, same model and batch; bf16 and nf4 axl bases
# against the bf16 PyTorch base).
#   scripts/bench.sh [axl_bench binary]   (default: build it in build-bench)
# Logs go to $OUT (the device machine) or build-bench/. AXL_BENCH_ARGS / PEFT_BENCH_ARGS pass flags.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/build-bench}"
mkdir -p "$out"
bench="${1:-}"
if [ -z "$bench" ]; then
  cmake -S "$root" -B "$root/build-bench" -DCMAKE_BUILD_TYPE=Release -DAXL_CUDA=ON \
        -DAXL_BUILD_TESTS=OFF -DAXL_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$root/build-bench" -j"$(nproc)" --target axl_bench >/dev/null || exit 1
  bench="$root/build-bench/bench/axl_bench"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$bench" ${AXL_BENCH_ARGS:-} 2>&1 | tee "$out/axl_bench.log"
PYTHONUNBUFFERED=1 python3 "$root/bench/peft_bench.py" ${PEFT_BENCH_ARGS:-} 2>&1 | grep -v Warning | tee "$out/peft_bench.log"
python3 - "$out/axl_bench.log" "$out/peft_bench.log" <<'PY'
import sys
def rows(path, key_col):
    out = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 10 and f[2].isdigit() and f[3].isdigit():
            out[(f[0], f[1], int(f[2]))] = float(f[5])
    return out
axl, peft = rows(sys.argv[1], 1), rows(sys.argv[2], 1)
print("\nratios (axl tokens/s / PyTorch tokens/s)")
print(f"{'model':<6} {'axl base':<8} {'batch':>5} {'vs eager':>9} {'vs compiled':>12}")
for (model, base, batch), tps in sorted(axl.items()):
    e, c = peft.get((model, "eager", batch)), peft.get((model, "compiled", batch))
    fmt = lambda x: f"{tps / x:.2f}x" if x else "-"
    print(f"{model:<6} {base:<8} {batch:5d} {fmt(e):>9} {fmt(c):>12}")
PY
