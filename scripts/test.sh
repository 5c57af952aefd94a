#!/usr/bin/env bash
# Builds etx with AddressSanitizer + UndefinedBehaviorSanitizer and runs every test
# suite with ctest, after a short pass of the libFuzzer targets (tests/fuzz) built with
# clang. Installs missing build dependencies and fetches the default model (the GGUF
# tests need it) first. CI runs exactly this (see .ci/run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
"$root/models/fetch_default_model.sh"
build="$root/build-asan"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DETX_SANITIZE=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

# The fuzz pass (tests/fuzz, tests/README.md "Fuzzing"): a clang build of the libFuzzer
# targets; each replays its seeds and regression inputs, then fuzzes for 30 s, and prints
# one line (run_fuzz: fuzz_<name>: ok, N executions ...). It runs before ctest so that
# ctest's summary stays the last thing printed; a failure fails the script after ctest.
fuzz_ok=1
if command -v clang >/dev/null 2>&1; then
  fuzz="$root/build-fuzz"
  CC=clang CXX=clang++ cmake -S "$root" -B "$fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DETX_FUZZ=ON \
    -DETX_SANITIZE=ON -DCMAKE_CUDA_COMPILER=OFF >/dev/null
  cmake --build "$fuzz" -j"$(nproc)" --target fuzz_all
  rm -rf "$fuzz/fuzz-seeds" # regenerated from the fixtures by the first run_fuzz.sh
  for src in "$root"/tests/fuzz/fuzz_*.c; do
    "$root/tests/fuzz/run_fuzz.sh" "$fuzz" "$(basename "$src" .c)" 30 || fuzz_ok=0
  done
else
  echo "test.sh: clang not found: fuzz pass skipped (scripts/install_deps.sh installs it)"
fi

cd "$build"
ctest_rc=0
ctest --output-on-failure -j1 || ctest_rc=$?
if [ $fuzz_ok -eq 0 ]; then
  echo "test.sh: the fuzz pass failed (run_fuzz lines above; inputs in build-fuzz/fuzz-artifacts/)"
  exit 1
fi
exit $ctest_rc
