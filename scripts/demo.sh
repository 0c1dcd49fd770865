#!/usr/bin/env bash
# The main job on its embedded default: build, then fine-tune on a small model and dataset
# that the example writes itself (into build/demo/axl-demo), no download needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target finetune
mkdir -p "$root/build/demo"
cd "$root/build/demo"
exec "$root/build/examples/finetune" "$@"
