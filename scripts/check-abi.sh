#!/usr/bin/env bash
# check-abi.sh: the ABI checks of libaxl (ABI.md, "What CI checks").
#
#   scripts/check-abi.sh symbols    LIBAXL_SO  the exported symbols are exactly abi/axl.symbols,
#                                              all axl_*, versioned, and declared in include/axl.h
#   scripts/check-abi.sh abidiff    LIBAXL_SO  no incompatible change against abi/libaxl.abi
#                                              (LIBAXL_SO must carry DWARF, i.e. built with -g)
#   scripts/check-abi.sh constants             every AXL_* constant of abi/baseline/axl.h keeps its
#                                              value in include/axl.h
#   scripts/check-abi.sh old-client LIBAXL_SO  tests/abi/old_client.c, compiled against the frozen
#                                              abi/baseline/axl.h, runs against LIBAXL_SO
#   scripts/check-abi.sh all        LIBAXL_SO  all four (LIBAXL_SO with DWARF)
#
#   scripts/check-abi.sh --update LIBAXL_SO    rewrites abi/axl.symbols and abi/libaxl.abi from
#                                              LIBAXL_SO (with DWARF) after a deliberate change
#   scripts/check-abi.sh --update --new-baseline LIBAXL_SO
#                                              also freezes include/axl.h as abi/baseline/axl.h:
#                                              only when the ABI major (AXL_ABI_VERSION) changes
#
# The ctest tests labelled "abi" run these on the build's libaxl.so and on its DWARF twin.
# Needs nm, a C compiler ($CC, default cc) and, for abidiff, abidw/abidiff (Debian package
# abigail-tools, installed here with apt-get when missing and running as root).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
symbols_file="$root/abi/axl.symbols"
abi_file="$root/abi/libaxl.abi"
baseline_header="$root/abi/baseline/axl.h"
header="$root/include/axl.h"

usage() {
    sed -n '2,/^set -e/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

fail() {
    echo "check-abi: FAILED: $*" >&2
    exit 1
}

note() { echo "check-abi: $*"; }

# Defined dynamic symbols of a library as "TYPE NAME@@VERSION", the version node itself excluded.
defined_symbols() {
    nm -D --defined-only "$1" | awk '$2 != "A" { print $2, $3 }'
}

exported_functions() {
    nm -D --defined-only "$1" | awk '$2 == "T" { print $3 }' | LC_ALL=C sort
}

# Functions declared with AXL_API in a header, one name a line.
declared_functions() {
    tr '\n' ' ' < "$1" | grep -o 'AXL_API [^;]*;' | grep -o 'AXL_CALL  *axl_[a-z0-9_]*' |
        awk '{ print $2 }' | LC_ALL=C sort
}

committed_symbols() {
    grep -v '^#' "$symbols_file" | grep -v '^$'
}

need_library() {
    [ -n "${1:-}" ] || usage
    [ -f "$1" ] || fail "no library at $1 (build the 'axl' target first)"
}

need_debug_info() {
    readelf -S "$1" | grep -q '\.debug_info' ||
        fail "$1 has no DWARF; abidw/abidiff need it. Use the build's DWARF twin (target axl_abi_twin," \
             "built with the tests) or a build configured with -DCMAKE_BUILD_TYPE=RelWithDebInfo"
}

need_abigail() {
    if command -v abidw >/dev/null && command -v abidiff >/dev/null; then return; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        note "installing abigail-tools (abidw, abidiff)"
        apt-get install -y abigail-tools >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && apt-get install -y abigail-tools >/dev/null 2>&1; } ||
            fail "could not install abigail-tools"
    else
        fail "abidw/abidiff not found: install abigail-tools (Debian/Ubuntu) or libabigail"
    fi
}

check_symbols() {
    local lib="$1" bad actual declared
    need_library "$lib"
    [ -f "$symbols_file" ] || fail "$symbols_file is missing; create it with: $0 --update <libaxl.so>"

    bad="$(defined_symbols "$lib" | awk '$1 != "T" || $2 !~ /^axl_[a-z0-9_]+@@AXL_[0-9]+$/')" || true
    [ -z "$bad" ] || fail "libaxl exports symbols outside the C API (only versioned axl_* functions" \
        "may be exported; check cmake/axl.map and -fvisibility=hidden):"$'\n'"$bad"

    actual="$(exported_functions "$lib")"
    if ! diff -u --label "abi/axl.symbols (committed)" --label "$lib (built)" \
            <(committed_symbols) <(echo "$actual") >&2; then
        fail "the exported symbols differ from abi/axl.symbols. Lines with '-' are symbols that" \
             "disappeared: removing or renaming a function breaks every client, restore it. Lines" \
             "with '+' are new symbols: if deliberate, declare them in include/axl.h and record them" \
             "with: $0 --update <libaxl.so with DWARF>"
    fi

    declared="$(declared_functions "$header")"
    if ! diff -u --label "declared in include/axl.h" --label "exported by $lib" \
            <(echo "$declared") <(echo "$actual" | sed 's/@@.*//') >&2; then
        fail "include/axl.h and the library disagree on the API functions ('-': declared but not" \
             "exported, so clients fail to link; '+': exported but not declared)"
    fi
    note "symbols OK: $(echo "$actual" | wc -l) functions, all in abi/axl.symbols and include/axl.h"
}

check_abidiff() {
    local lib="$1" report rc=0
    need_library "$lib"
    need_debug_info "$lib"
    need_abigail
    [ -f "$abi_file" ] || fail "$abi_file is missing; create it with: $0 --update <libaxl.so>"
    report="$(abidiff --exported-interfaces-only "$abi_file" "$lib" 2>&1)" || rc=$?
    [ -z "$report" ] || echo "$report"
    (( (rc & 3) == 0 )) || fail "abidiff could not compare (exit $rc)"
    (( (rc & 8) == 0 )) || fail "abidiff found incompatible changes (removed functions or types that" \
                                 "changed incompatibly) against abi/libaxl.abi"
    local unexplained
    unexplained="$(echo "$report" | awk -f "$root/abi/allowed-changes.awk")" ||
        fail "changes against abi/libaxl.abi that the ABI rules forbid (published signatures and" \
             "struct layouts never change; structs only grow at the end):"$'\n'"$unexplained"
    note "abidiff OK against abi/libaxl.abi"
}

# "NAME VALUE" for every object-like #define AXL_* of a header; the library version and the
# export macros are not constants of the ABI.
header_constants() {
    awk '/^[ \t]*#[ \t]*define[ \t]+AXL_[A-Z0-9_]+[ \t]/ {
            line = $0
            sub(/^[ \t]*#[ \t]*define[ \t]+/, "", line)
            name = line; sub(/[ \t].*$/, "", name)
            value = line; sub(/^[A-Z0-9_]+[ \t]+/, "", value)
            sub(/[ \t]*\/[*\/].*$/, "", value); sub(/[ \t]+$/, "", value)
            if (name ~ /^AXL_(VERSION_[A-Z]+|API|CALL|H)$/ || value == "") next
            print name, value
         }' "$1" | LC_ALL=C sort -u
}

check_constants() {
    local missing="" name value current
    [ -f "$baseline_header" ] || fail "$baseline_header is missing"
    while read -r name value; do
        current="$(header_constants "$header" | awk -v n="$name" '$1 == n { $1 = ""; sub(/^ /, ""); print }')"
        if [ -z "$current" ]; then
            missing+="  $name (was $value) is gone"$'\n'
        elif [ "$current" != "$value" ]; then
            missing+="  $name was $value, is now $current"$'\n'
        fi
    done < <(header_constants "$baseline_header")
    [ -z "$missing" ] || fail "constants of the published header changed (status codes, stages," \
        "backends, formats and parameter IDs are stable forever; add new values instead):"$'\n'"$missing"
    note "constants OK: every constant of abi/baseline/axl.h keeps its value"
}

check_old_client() {
    local lib="$1" cc="${CC:-cc}" dir
    need_library "$lib"
    lib="$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
    dir="$scratch_dir/old-client"
    mkdir "$dir"
    # Only abi/baseline is on the include path: the client sees the header it was written for.
    "$cc" -std=c99 -Wall -Wextra -pedantic -Werror -I "$root/abi/baseline" -I "$root/examples" \
        "$root/tests/abi/old_client.c" -o "$dir/old_client" "$lib" -Wl,-rpath,"$(dirname "$lib")" \
        -Wl,-z,now -lm ||
        fail "tests/abi/old_client.c does not build against abi/baseline/axl.h and $lib (a baseline function missing from the library fails the link)"
    (cd "$dir" && ./old_client) || fail "the old client (built against abi/baseline/axl.h) failed against $lib"
    note "old client OK: built against abi/baseline/axl.h, ran against $lib"
}

update() {
    local lib="$1" new_baseline="$2"
    need_library "$lib"
    need_debug_info "$lib"
    need_abigail
    {
        echo "# Exported functions of libaxl.so.<ABI major> with their version node (cmake/axl.map)."
        echo "# Checked by scripts/check-abi.sh symbols; regenerate after a deliberate addition with"
        echo "# scripts/check-abi.sh --update <libaxl.so with DWARF>. Never remove a line within one ABI major."
        exported_functions "$lib"
    } > "$symbols_file"
    # Exported interfaces and the public types they use (the handles stay opaque), as abidiff
    # reads the new library.
    abidw --headers-dir "$root/include" --drop-private-types --exported-interfaces-only \
          --no-corpus-path --no-comp-dir-path \
          --short-locs "$lib" > "$abi_file.tmp"
    mv "$abi_file.tmp" "$abi_file"
    if [ "$new_baseline" = 1 ]; then
        mkdir -p "$(dirname "$baseline_header")"
        cp "$header" "$baseline_header"
        note "froze include/axl.h as abi/baseline/axl.h; review tests/abi/struct_layout.c for the new layouts"
    fi
    note "wrote abi/axl.symbols ($(committed_symbols | wc -l) functions) and abi/libaxl.abi; review with git diff"
}

scratch_dir="$(mktemp -d "${TMPDIR:-/tmp}/axl-check-abi.XXXXXX")"
trap 'rm -rf "$scratch_dir"' EXIT

do_update=0
new_baseline=0
while [ $# -gt 0 ]; do
    case "$1" in
        --update) do_update=1; shift ;;
        --new-baseline) new_baseline=1; shift ;;
        -h|--help) usage ;;
        *) break ;;
    esac
done

if [ "$do_update" = 1 ]; then
    [ $# -eq 1 ] || usage
    update "$1" "$new_baseline"
    exit 0
fi
[ "$new_baseline" = 0 ] || usage
[ $# -ge 1 ] || usage
case "$1" in
    symbols) check_symbols "${2:-}" ;;
    abidiff) check_abidiff "${2:-}" ;;
    constants) check_constants ;;
    old-client) check_old_client "${2:-}" ;;
    all)
        check_symbols "${2:-}"
        check_abidiff "${2:-}"
        check_constants
        check_old_client "${2:-}"
        ;;
    *) usage ;;
esac
