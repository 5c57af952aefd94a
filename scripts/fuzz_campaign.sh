#!/usr/bin/env bash
# fuzz_campaign.sh — the long fuzzing campaign over every libFuzzer target of tests/fuzz,
# one target after another, and its record under benchmarks/results/.
#
#     scripts/fuzz_campaign.sh [--runs N] [--max-time S] [--build DIR] [fuzz_<name> ...]
#
# Each target runs until N executions (default 10000000) or S seconds (default 0: no time
# limit), whichever comes first, under sanitizers (ASan + UBSan, clang: the build is
# configured here when DIR does not exist, CC=clang -DETX_FUZZ=ON -DETX_SANITIZE=ON),
# starting from the seeds (tests/scripts/gen_fuzz_corpus.py), the committed regression
# inputs and the corpus kept in DIR/fuzz-corpus from earlier runs. Writes
# benchmarks/results/fuzz-campaign-<UTC date>.md: per target the executions, seconds,
# executions per second, coverage, corpus size and crashes, with the commit and the
# machine; a target stopped by the time limit before N executions is marked so, with the
# executions it reached. Exit status 1 when any target crashed (its input is in
# DIR/fuzz-artifacts/). Runs under nice -n 10 (the machine is shared).
#
# Wall time: executions per second differ by two orders of magnitude between targets
# (fuzz_gguf loads whole tiny models; fuzz_gsm8k runs two regexes), so 10 million
# executions of every target takes days on two cores; --max-time bounds a run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=10000000
max_time=0
build="$root/build-fuzz"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --max-time) max_time="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DETX_FUZZ=ON \
    -DETX_SANITIZE=ON -DCMAKE_CUDA_COMPILER=OFF >/dev/null
fi
nice -n 10 cmake --build "$build" -j2 --target fuzz_all >/dev/null
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
rm -rf "$build/fuzz-seeds"
python3 "$root/tests/scripts/gen_fuzz_corpus.py" "$build/fuzz-seeds" >/dev/null

date_utc="$(date -u +%Y-%m-%d)"
# the commit the targets were built from (taken now: the tree may move while they run)
commit="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- host tests/fuzz || echo '+local changes')"
out="$root/benchmarks/results/fuzz-campaign-$date_utc.md"
rows=()
crashed=0
start_all=$(date +%s)
for t in "${targets[@]}"; do
  name="${t#fuzz_}"
  corpus="$build/fuzz-corpus/$t"
  mkdir -p "$corpus" "$build/fuzz-artifacts"
  dirs=("$corpus" "$build/fuzz-seeds/$t")
  [ -d "$root/tests/fuzz/regressions/$t" ] && dirs+=("$root/tests/fuzz/regressions/$t")
  flags=(-runs="$runs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
         "-artifact_prefix=$build/fuzz-artifacts/$t-")
  [ "$max_time" -gt 0 ] && flags+=("-max_total_time=$max_time")
  [ -f "$root/tests/fuzz/dict/$name.dict" ] && flags+=("-dict=$root/tests/fuzz/dict/$name.dict")
  [ "$t" = fuzz_eval_jsonl ] && flags+=(-close_fd_mask=2)
  log="$build/fuzz-artifacts/$t.campaign.log"
  echo "fuzz_campaign: $t (runs $runs, max time ${max_time}s)..." >&2
  t0=$(date +%s)
  set +e
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 "$build/$t" "${flags[@]}" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - t0 ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  units=$(ls "$corpus" | wc -l)
  crashes=0
  status="reached $runs"
  if [ $rc -ne 0 ]; then
    crashes=1
    crashed=1
    status="CRASH: $(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //')"
  elif [ "${execs:-0}" -lt "$runs" ]; then
    status="time limit (${max_time} s) before $runs"
  fi
  echo "fuzz_campaign: $t: ${execs:-?} executions, ${secs} s, ${rate:-?}/s, crashes $crashes ($status)" >&2
  rows+=("| $t | ${execs:-?} | $secs | ${rate:-?} | ${cov:-?} | $units | $crashes | $status |")
done
total_s=$(( $(date +%s) - start_all ))

cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
{
  echo "# Fuzzing campaign, $date_utc"
  echo
  echo "Command: \`scripts/fuzz_campaign.sh --runs $runs --max-time $max_time\` (one target at a time, nice -n 10)."
  echo "Commit $commit; $(clang --version | head -1); -fsanitize=fuzzer,address,undefined,float-cast-overflow"
  echo "(ETX_SANITIZE=ON); machine: $cpu, $(nproc) cores shared with other jobs; $total_s s in all."
  echo "Each target started from the generated seeds (tests/scripts/gen_fuzz_corpus.py), the"
  echo "regression inputs (tests/fuzz/regressions/) and the corpus of earlier runs in the build directory."
  echo
  echo "| target | executions | seconds | exec/s | coverage (edges) | corpus | crashes | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
} >"$out"
echo "fuzz_campaign: wrote $out" >&2
exit $crashed
