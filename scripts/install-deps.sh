#!/usr/bin/env bash
# Installs the build and test dependencies that are missing (Debian/Ubuntu, as root or sudo).
# Does nothing when everything is present, so it is cheap to call from every script.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
[ -f /usr/include/nlohmann/json.hpp ] || need+=(nlohmann-json3-dev)
[ -d /usr/include/gtest ] || need+=(libgtest-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v valgrind >/dev/null || need+=(valgrind)
command -v abidiff >/dev/null || need+=(abigail-tools)
command -v flatc >/dev/null || need+=(flatbuffers-compiler libflatbuffers-dev)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
