#!/usr/bin/env bash
# run_fuzz.sh — runs one libFuzzer target of tests/fuzz for a bounded time: CI's fuzz pass
# (each target is a ctest test of the fuzz build, label "fuzz") and a quick local check.
#
#     tests/fuzz/run_fuzz.sh BUILD_DIR fuzz_<name> [SECONDS=30] [extra libFuzzer flags]
#
# First every seed (BUILD_DIR/fuzz-seeds/fuzz_<name>, made by
# tests/scripts/gen_fuzz_corpus.py when missing) and every committed regression input
# (tests/fuzz/regressions/fuzz_<name>/) runs once; then the target fuzzes for SECONDS with
# its dictionary (tests/fuzz/dict/<name>.dict), adding what it finds to
# BUILD_DIR/fuzz-corpus/fuzz_<name> (kept between runs). A crash, leak, sanitizer report,
# broken invariant or input slower than 10 s fails the run (exit 1); the input is saved
# as BUILD_DIR/fuzz-artifacts/fuzz_<name>-crash-<sha1> (copy it into regressions/ when
# fixed). Prints one summary line: executions, rate, corpus size, result.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "$1" && pwd)"
target="$2"
seconds="${3:-30}"
shift $(( $# < 3 ? $# : 3 ))
name="${target#fuzz_}"
bin="$build/$target"
[ -x "$bin" ] || { echo "run_fuzz: $bin is not built (cmake --build $build --target $target)" >&2; exit 2; }

seeds="$build/fuzz-seeds"
if [ ! -d "$seeds/$target" ]; then
  python3 "$root/tests/scripts/gen_fuzz_corpus.py" "$seeds" >/dev/null
fi
corpus="$build/fuzz-corpus/$target"
artifacts="$build/fuzz-artifacts"
mkdir -p "$corpus" "$artifacts" "$seeds/$target"
dirs=("$corpus" "$seeds/$target")
[ -d "$root/tests/fuzz/regressions/$target" ] && dirs+=("$root/tests/fuzz/regressions/$target")
flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "-artifact_prefix=$artifacts/$target-")
[ -f "$root/tests/fuzz/dict/$name.dict" ] && flags+=("-dict=$root/tests/fuzz/dict/$name.dict")
# the data-file reader reports every bad line on stderr, by design: keep libFuzzer's own output only
[ "$target" = fuzz_eval_jsonl ] && flags+=(-close_fd_mask=2)
if [ "$seconds" -gt 0 ]; then flags+=("-max_total_time=$seconds"); else flags+=(-runs=0); fi

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
log="$build/fuzz-artifacts/$target.log"
set +e
"$bin" "${flags[@]}" "$@" "${dirs[@]}" >"$log" 2>&1
rc=$?
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
units=$(ls "$corpus" | wc -l)
if [ $rc -eq 0 ]; then
  echo "run_fuzz: $target: ok, ${execs:-?} executions in ${secs:-?} s (${rate:-?}/s), corpus $units new inputs"
else
  echo "run_fuzz: $target: FAILED (exit $rc) after ${execs:-?} executions; log $log" >&2
  grep -E "^(==[0-9]+==|SUMMARY|fuzz: invariant|.*runtime error|artifact_prefix|Test unit written)" "$log" | head -20 >&2
  tail -40 "$log" >&2
  exit 1
fi
