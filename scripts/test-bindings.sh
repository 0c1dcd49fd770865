#!/usr/bin/env bash
# test-bindings.sh [BUILD_DIR]: runs the Rust, Go and C# binding test suites against libaxl.
#
# BUILD_DIR is a CMake build directory holding libaxl.so (not a sanitizer build: the test
# programs of the three languages do not load the sanitizer runtimes). Without it, libaxl is
# configured and built, CPU only, into build-bindings/. Missing toolchains are installed from
# Debian's packages with apt-get, and only when missing. Every suite runs; the script fails if
# any of them failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---- Toolchains --------------------------------------------------------------------------------
# Rust is not installed here: the crates need a recent rustc (offset_of!, 1.77), newer than
# Debian's; the machines carry rustup's.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need cmake cmake
need cc gcc
need go golang-go
need mcs mono-mcs
need mono mono-runtime
need nunit-console nunit-console
need pkg-config pkg-config
if command -v pkg-config >/dev/null 2>&1 && ! pkg-config --exists nunit; then missing+=(libnunit-cil-dev); fi
if ((${#missing[@]})); then
    [ "$(id -u)" -eq 0 ] || { echo "test-bindings: missing ${missing[*]}; install them (apt-get) or run as root" >&2; exit 1; }
    echo "test-bindings: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    pkg-config --exists nunit || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnunit-cil-dev >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "test-bindings: cargo not found (install Rust >= 1.77 with rustup)" >&2; exit 1; }

# ---- libaxl ------------------------------------------------------------------------------------
if (($# >= 1)); then
    build=$(cd "$1" && pwd)
else
    build=$root/build-bindings
    cmake -S "$root" -B "$build" -DAXL_CUDA=OFF -DAXL_BUILD_TESTS=OFF -DAXL_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$build" -j2 --target axl
fi
[ -e "$build/libaxl.so" ] || { echo "test-bindings: no libaxl.so in $build" >&2; exit 1; }
echo "test-bindings: libaxl from $build"

# ---- Suites ------------------------------------------------------------------------------------
rust_suite() {
    cd "$root/bindings/rust"
    AXL_LIB_DIR=$build cargo test --offline
}

go_suite() {
    cd "$root/bindings/go"
    CGO_LDFLAGS="-L$build -Wl,-rpath,$build" GOFLAGS=-mod=mod GOPROXY=off go test -count=1 ./...
}

csharp_suite() {
    local out
    out=$(mktemp -d)
    trap 'rm -rf "$out"' RETURN
    cc -I "$root/include" "$root/bindings/layout/axl_layout.c" -o "$out/axl_layout"
    "$out/axl_layout" >"$out/layout.txt"
    mcs -nologo -target:library -unsafe -out:"$out/Axl.dll" "$root"/bindings/csharp/Axl/*.cs
    mcs -nologo -target:library -pkg:nunit -r:"$out/Axl.dll" -out:"$out/Axl.Tests.dll" \
        "$root"/bindings/csharp/Axl.Tests/*.cs
    cd "$out"
    AXL_LAYOUT_FILE=$out/layout.txt LD_LIBRARY_PATH=$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
        nunit-console -nologo -labels Axl.Tests.dll
}

passed=0
failed=()
for suite in rust go csharp; do
    echo "== $suite"
    if ("${suite}_suite"); then
        passed=$((passed + 1))
    else
        failed+=("$suite")
        echo "== $suite: FAILED"
    fi
done
((${#failed[@]} == 0)) || echo "test-bindings: failed suites: ${failed[*]}"
echo "bindings: $passed passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
