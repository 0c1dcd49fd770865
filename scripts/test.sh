#!/usr/bin/env bash
# Runs every test of axl from a fresh clone; safe to run again (each phase skips work already done).
#
#   scripts/test.sh [--sanitize] [--help]
#
# Phases (each one's time is printed, and a summary at the end):
#   deps      scripts/install-deps.sh: apt-get installs cmake, g++, libgtest-dev,
#             nlohmann-json3-dev, python3-venv when missing (nothing when present).
#   venv      .cache/oracle-venv with tests/oracle/requirements*.txt (torch, transformers, PEFT...),
#             created once; pip runs again only when the requirement files change (a stamp in the
#             venv holds their hash).
#   build     build/ (Release), -j$(nproc).
#   test      ctest in build/: unit, API, the PyTorch/PEFT oracle chain and whatever else is
#             registered. The venv's python reaches CMake as -DAXL_ORACLE_PYTHON.
#   sanitize  only with --sanitize or AXL_SANITIZE=1: build-asan/ with -DAXL_SANITIZE=ON
#             (ASan + UBSan, RelWithDebInfo), then ctest -L 'unit|api|oracle' there.
#             The Python side of the oracle is not repeated (it does not involve axl's code):
#             build-asan runs only oracle_axl, against the data the Release pass generated
#             (-DAXL_ORACLE_DATA), so the C++ that loads, trains and saves is checked under the
#             sanitizers on the same numbers.
#
# Environment: AXL_JOBS (build and ctest parallelism, default nproc), AXL_PIP_ARGS (extra pip
# arguments for the venv, e.g. "--index-url https://download.pytorch.org/whl/cpu"),
# AXL_SANITIZE_LABELS (ctest label regex of the sanitizer pass, default 'unit|api|oracle'),
# AXL_CMAKE_ARGS (extra configure arguments for both builds, e.g. "-DAXL_CUDA=OFF").
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
sanitize="${AXL_SANITIZE:-0}"
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
jobs="${AXL_JOBS:-$(nproc)}"
venv="$root/.cache/oracle-venv"

summary=()
phase_start=0
phase_name=""
begin_phase() {
  phase_name="$1"
  phase_start=$(date +%s.%N)
  echo "==== test.sh: $phase_name"
}
end_phase() {
  local seconds
  seconds=$(awk -v a="$phase_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  summary+=("$(printf '%-9s %8ss  %s' "$phase_name" "$seconds" "$1")")
  echo "==== test.sh: $phase_name: $1 in ${seconds}s"
  phase_name=""
}
print_summary() {
  local status=$?
  [ -n "$phase_name" ] && end_phase "FAILED"
  echo "==== test.sh summary"
  printf '  %s\n' "${summary[@]}"
  exit "$status"
}
trap print_summary EXIT

begin_phase deps
"$root/scripts/install-deps.sh"
end_phase ok

begin_phase venv
requirements=("$root"/tests/oracle/requirements*.txt)
want_hash=$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)
stamp="$venv/.axl-requirements.sha256"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_hash" ]; then
  pip_args=()
  for r in "${requirements[@]}"; do pip_args+=(-r "$r"); done
  # shellcheck disable=SC2086  # AXL_PIP_ARGS is a list of words
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check ${AXL_PIP_ARGS:-} "${pip_args[@]}"
  echo "$want_hash" > "$stamp"
  end_phase "installed ${requirements[*]##*/}"
else
  end_phase "up to date"
fi

begin_phase build
# shellcheck disable=SC2086  # AXL_CMAKE_ARGS is a list of words
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DAXL_BUILD_TESTS=ON -DAXL_ORACLE_PYTHON="$venv/bin/python" \
  ${AXL_CMAKE_ARGS:-} >/dev/null
cmake --build "$root/build" -j"$jobs"
end_phase ok

# A failing test phase does not stop the sanitizer pass; the script still exits nonzero.
failed=0
begin_phase test
if (cd "$root/build" && ctest --output-on-failure --no-tests=error -j"$jobs"); then
  end_phase ok
else
  end_phase FAILED
  failed=1
fi

if [ "$sanitize" = 1 ]; then
  begin_phase sanitize
  # shellcheck disable=SC2086
  cmake -S "$root" -B "$root/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAXL_SANITIZE=ON -DAXL_BUILD_TESTS=ON \
    -DAXL_ORACLE_PYTHON= -DAXL_ORACLE_DATA="$root/build/tests/oracle_data" ${AXL_CMAKE_ARGS:-} >/dev/null
  cmake --build "$root/build-asan" -j"$jobs"
  if (cd "$root/build-asan" &&
      ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
      UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
      ctest --output-on-failure --no-tests=error -j"$jobs" -L "${AXL_SANITIZE_LABELS:-unit|api|oracle}"); then
    end_phase ok
  else
    end_phase FAILED
    failed=1
  fi
fi
exit "$failed"
