#!/usr/bin/env bash
# Builds etx with AddressSanitizer + UndefinedBehaviorSanitizer and runs every test
# suite with ctest. Installs missing build dependencies and fetches the default model
# (the GGUF tests need it) first. CI runs exactly this (see .ci/run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
"$root/models/fetch_default_model.sh"
build="$root/build-asan"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DETX_SANITIZE=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j1
