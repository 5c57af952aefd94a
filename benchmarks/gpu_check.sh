#!/bin/bash
# gpu_check.sh — one prepared run on a GPU machine (CUDA toolkit, CMake, Python with torch
# and transformers; no internet): builds etx for the card it finds, runs the GPU tests
# (the quick kernel suites under compute-sanitizer), compares etx's CUDA logits with
# transformers' on a Llama-3.2-1B-shaped model with fixed random weights, benchmarks
# decode (batch 1, 8, 64; greedy vs entropix; fraction of the bandwidth floor), and prints
# a short table last, also written to $OUT/gpu_check.md (or ./gpu_check.md).
#
#     benchmarks/gpu_check.sh            # from the repository root
#
# Build: in place when the machine has etx's libraries (pkg-config finds libpcre2-8,
# libcjson, openblas, check); otherwise it uses gpu-bundle/, prepared on a development
# machine by benchmarks/gpu_prepare.sh (the programs and the shared libraries they need),
# since a machine with no internet cannot install them.
# Budget: under 8 minutes on an H100 (each stage has its own time limit).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT}
LOG="$OUT/gpu_check.log"
MD="$OUT/gpu_check.md"
: > "$LOG"
T0=$(date +%s)
say() { echo "gpu_check: $*" | tee -a "$LOG"; }
status=()
record() { status+=("| $1 | $2 | $3 |"); }

# -- the card, the driver, the commit
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || cat gpu-bundle/COMMIT 2>/dev/null || echo unknown)
say "card ${CARD:-none} (sm_${CAP:-?}), driver ${DRIVER:-?}, commit $COMMIT, $(date -u +%Y-%m-%dT%H:%MZ)"
[ -z "$CARD" ] && { say "no GPU found (nvidia-smi)"; exit 1; }

# -- build
BUILD=gpu-bundle
RUNENV=()
if pkg-config --exists libpcre2-8 libcjson openblas check 2>/dev/null; then
    say "building in place for sm_$CAP"
    BUILD=build-gpu-here
    if timeout 300 cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$CAP" >> "$LOG" 2>&1 &&
       timeout 300 cmake --build $BUILD -j"$(nproc)" >> "$LOG" 2>&1; then
        record build "in place, sm_$CAP" ok
    else
        say "build failed (see $LOG)"; record build "in place" FAIL; BUILD=gpu-bundle
    fi
fi
if [ "$BUILD" = gpu-bundle ]; then
    if [ -x gpu-bundle/etx ]; then
        say "using the prepared gpu-bundle/ (sm_$(cat gpu-bundle/ARCH), commit $(cat gpu-bundle/COMMIT))"
        # its libraries for etx's programs only (python3 and its torch keep the system's)
        RUNENV=(env "LD_LIBRARY_PATH=$ROOT/gpu-bundle/deps${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
        # the suites find their fixtures under the directory they were built in
        SRC=$(cat gpu-bundle/SRCDIR)
        if [ "$SRC" != "$ROOT" ] && [ ! -e "$SRC" ]; then mkdir -p "$(dirname "$SRC")" && ln -s "$ROOT" "$SRC"; fi
        record build "prepared (gpu_prepare.sh, sm_$(cat gpu-bundle/ARCH))" ok
    else
        say "no libraries to build with and no gpu-bundle/: run benchmarks/gpu_prepare.sh first"
        exit 1
    fi
fi
ETX="$ROOT/$BUILD/etx"
cat > /tmp/etx-run <<EOS
#!/bin/bash
exec ${RUNENV[*]} "$ETX" "\$@"
EOS
chmod +x /tmp/etx-run

# -- GPU tests (native variants of the emulated kernel suites)
for t in test_selftest_gpu test_layer_kernels_gpu test_sampling_kernels_gpu test_cuda_backend_gpu test_cuda_engine_gpu; do
    [ -x "$BUILD/$t" ] || { record "$t" "not built" SKIP; continue; }
    ( cd $BUILD && timeout 240 "${RUNENV[@]}" ./$t >> "$LOG" 2>&1 ); rc=$?
    case $rc in 0) r=ok ;; 77) r=SKIP ;; *) r="FAIL ($rc)" ;; esac
    say "$t: $r"; record "$t" native "$r"
done
if command -v compute-sanitizer > /dev/null; then
    for t in test_selftest_gpu test_layer_kernels_gpu; do
        [ -x "$BUILD/$t" ] || continue
        ( cd $BUILD && CK_FORK=no timeout 150 "${RUNENV[@]}" compute-sanitizer --tool memcheck --error-exitcode 9 ./$t \
            >> "$LOG" 2>&1 ); rc=$?
        case $rc in 0) r=clean ;; 124) r="timed out" ;; *) r="FAIL ($rc)" ;; esac
        say "$t under compute-sanitizer memcheck: $r"; record "$t" "compute-sanitizer memcheck" "$r"
    done
fi

# -- end-to-end logits against transformers on the GPU
MODEL=/tmp/etx-llama1b-random
if timeout 180 python3 tests/scripts/gpu_llama1b.py make $MODEL >> "$LOG" 2>&1; then
    timeout 180 python3 tests/scripts/gpu_llama1b.py compare $MODEL /tmp/etx-run 2>&1 | tee -a "$LOG" | tail -1 > /tmp/gpu_cmp.txt
    cmp=$(cat /tmp/gpu_cmp.txt)
    record "logits vs transformers (bf16)" "Llama-3.2-1B shape, random weights" "${cmp#gpu_llama1b: }"
    # generation end to end, entropix, with the device->host byte count
    /tmp/etx-run generate -m $MODEL --device cuda -p "The capital of France is" -n 32 --policy entropix --stats \
        > /dev/null 2> /tmp/gpu_gen.txt; rc=$?
    cat /tmp/gpu_gen.txt >> "$LOG"
    record "etx generate --device cuda --policy entropix" "32 tokens" "exit $rc; $(grep -o '[0-9.]* per generated token' /tmp/gpu_gen.txt)"
else
    say "could not build the random Llama model with transformers (see $LOG)"
    record "logits vs transformers" "model creation" FAIL
fi

# -- decode benchmark
if [ -x "$BUILD/bench_gpu_decode" ] && [ -d $MODEL ]; then
    timeout 200 "${RUNENV[@]}" "$BUILD/bench_gpu_decode" -m $MODEL -b 1,8,64 -g 64 -r 3 --md /tmp/gpu_bench.md >> "$LOG" 2>&1 \
        || say "bench_gpu_decode failed or timed out (see $LOG)"
fi

# -- the table
{
    echo "# gpu_check: ${CARD} (driver ${DRIVER}), commit ${COMMIT}, $(date -u +%Y-%m-%d)"
    echo
    echo "| check | what | result |"
    echo "|---|---|---|"
    printf '%s\n' "${status[@]}"
    echo
    [ -f /tmp/gpu_bench.md ] && cat /tmp/gpu_bench.md
    echo
    echo "total $(( $(date +%s) - T0 )) s; full log: gpu_check.log"
} > "$MD"
cat "$MD"
