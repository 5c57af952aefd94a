#!/bin/bash
# gpu_check.sh — one prepared run on a GPU machine (CUDA toolkit, CMake, Python with torch
# and transformers; no internet): builds etx for the card it finds, runs the GPU tests,
# compares etx's CUDA logits with transformers' on a Llama-3.2-1B-shaped model with fixed
# random weights, benchmarks it (`etx bench`: batch 1/8/64/256, greedy vs entropix,
# fraction of the bandwidth floor, policy share), runs the peers on the same model and
# work (transformers `generate`, a reference-style entropix loop in PyTorch;
# benchmarks/peers/), then the kernel suites under compute-sanitizer, and prints a short
# table last, also written to $OUT/gpu_check.md (or ./gpu_check.md); JSON and markdown of
# each benchmark land beside it.
#
#     benchmarks/gpu_check.sh            # from the repository root
#
# Build: in place when the machine has etx's libraries (pkg-config finds libpcre2-8,
# libcjson, openblas, check); otherwise it uses gpu-bundle/, prepared on a development
# machine by benchmarks/gpu_prepare.sh (the programs and the shared libraries they need),
# since a machine with no internet cannot install them.
# GPU_CHECK_TINY=1 runs everything on a 2-layer model of the same architecture (smoke run).
# Stages: GPU_CHECK_STAGES (comma-separated; default all) picks among tests, logits,
# invariance, multigpu (--tp 2 and --gpus all, 2+ GPUs only), bench, gemm_ab (etx bench with ETX_GEMM=cuda-cores beside tensor-cores, same
# script), pdl_tiled_ab (etx bench with ETX_PREFETCH=0, ETX_PDL=0, ETX_GEMM_TILED=0,
# ETX_FUSE=0 and ETX_TC_WARPS=8, each beside the default), graphs_ab (etx bench with ETX_CUDA_GRAPHS=0 beside the default: what the decode
# graphs, with the sampling inside them, buy), profile (cost model vs per-op times), ncu (Nsight Compute on the vocabulary pass,
# attention and the GEMMs of a short generate), peers, sanitizer; GPU_CHECK_TESTS replaces
# the list of native suites the tests stage runs; GPU_CHECK_GEMM_PATHS the ETX_GEMM values
# gemm_ab runs (default "tensor-cores cuda-cores").
# Budget: GPU_CHECK_BUDGET seconds in all (default 540, inside a 10-minute call): every
# stage gets at most its own limit and what is left of the budget (less a reserve for the
# table), in order of importance; a stage with too little time left is recorded as
# skipped, never silently dropped.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT}
LOG="$OUT/gpu_check.log"
MD="$OUT/gpu_check.md"
: > "$LOG"
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-540}
say() { echo "gpu_check: $*" | tee -a "$LOG"; }
# seconds a stage may take: min(its own limit, what is left of the budget - 10); 0 = none
limit() { local left=$(( T0 + BUDGET - 10 - $(date +%s) )); [ "$left" -lt "$1" ] && echo $(( left > 0 ? left : 0 )) || echo "$1"; }
# true when at least $1 seconds are left for a stage (else records it as skipped)
has_time() { [ "$(limit "$1")" -ge "$1" ] && return 0; record "$2" "not run" "SKIP (budget: $(limit 100000) s left)"; return 1; }
status=()
record() { status+=("| $1 | $2 | $3 |"); }
STAGES=",${GPU_CHECK_STAGES:-tests,logits,invariance,multigpu,bench,pdl_tiled_ab,gemm_ab,graphs_ab,profile,ncu,peers,sanitizer},"
want() { [[ "$STAGES" == *",$1,"* ]]; }

# -- the card, the driver, the commit
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
# ETX_COMMIT: the commit as the caller knows it (on a lent machine the copied .git was seen
# to name an older commit than the files it came with)
COMMIT=${ETX_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || cat gpu-bundle/COMMIT 2>/dev/null || echo unknown)}
say "card ${CARD:-none} (sm_${CAP:-?}), driver ${DRIVER:-?}, commit $COMMIT, $(date -u +%Y-%m-%dT%H:%MZ)"
[ -z "$CARD" ] && { say "no GPU found (nvidia-smi)"; exit 1; }

# -- build (a packed bundle, as carried to a lent machine, is unpacked first)
if [ -f build-gpu-carry/bundle.tar.xz ] && [ ! -x gpu-bundle/etx ]; then
    tar -xJf build-gpu-carry/bundle.tar.xz && say "unpacked build-gpu-carry/bundle.tar.xz"
fi
BUILD=gpu-bundle
RUNENV=()
if pkg-config --exists libpcre2-8 libcjson openblas check 2>/dev/null; then
    say "building in place for sm_$CAP"
    BUILD=build-gpu-here
    if timeout "$(limit 240)" cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$CAP" >> "$LOG" 2>&1 &&
       timeout "$(limit 240)" cmake --build $BUILD -j"$(nproc)" >> "$LOG" 2>&1; then
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
        if [ "$(cat gpu-bundle/COMMIT)" = "$COMMIT" ]; then
            record build "prepared (gpu_prepare.sh, sm_$(cat gpu-bundle/ARCH))" ok
        else # the programs are older (or newer) than the scripts and fixtures beside them
            say "WARNING: gpu-bundle/ was built at $(cat gpu-bundle/COMMIT), the tree is at $COMMIT: rerun gpu_prepare.sh"
            record build "prepared at $(cat gpu-bundle/COMMIT), tree at $COMMIT" "STALE: rerun gpu_prepare.sh"
        fi
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
TESTS=${GPU_CHECK_TESTS:-test_selftest_gpu test_exact_math_gpu test_gemm_gpu test_layer_kernels_gpu test_sampling_kernels_gpu
         test_cuda_backend_gpu test_advance_gpu test_engine_gpu test_nonfinite_gpu test_samples_gpu test_tp_gpu}
want tests || TESTS=
for t in $TESTS; do
    [ -x "$BUILD/$t" ] || { record "$t" "not built" SKIP; continue; }
    has_time 20 "$t" || continue
    ( cd $BUILD && timeout "$(limit 150)" "${RUNENV[@]}" ./$t >> "$LOG" 2>&1 ); rc=$?
    case $rc in 0) r=ok ;; 77) r=SKIP ;; *) r="FAIL ($rc)" ;; esac
    say "$t: $r"; record "$t" native "$r"
done
# -- batch invariance on the GPU (docs/design.md §5: by construction, tested under the
#    emulator): the same 16 greedy and 16 entropix requests through etx eval on the default
#    model at --batch 1, --batch 8 and (when mpirun is there) mpirun -np 2 --batch 8, all
#    at --ctx 4096 with prompts of up to ~1500 tokens (many 64-position attention splits),
#    tokens and completions compared line by line with --batch 1; then the native suite
DEFAULT_MODEL=models/cache/SmolLM2-135M-Instruct.Q4_1.gguf
INV_DATA=/tmp/gpu_inv_data.jsonl
# invariance_stage MODEL DESCRIPTION: the stage above on one model. The default model is
# 98 MB, over what travels to a lent machine (64 MiB), so there the stage runs after the
# logits check, on the random Llama model transformers writes (same tokenizer family).
invariance_stage() {
    # 16 prompts: request i joins 1 + i % 12 of the GSM8K sample's questions (1 to 12
    # questions: ~100 to ~1500 tokens)
    python3 - tests/fixtures/eval/gsm8k_sample.jsonl > $INV_DATA <<'EOP'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
qs = [r.get("prompt", r.get("question", "")) for r in rows]
for i in range(16):
    parts = [qs[(i + k) % len(qs)] for k in range(1 + i % 12)]
    print(json.dumps({"id": i, "prompt": "\n\n".join(parts)}))
EOP
    inv_rc=0
    runs="b1 b8"
    command -v mpirun > /dev/null 2>&1 && runs="$runs mpi"
    for pol in greedy entropix; do
        for run in $runs; do
            out=/tmp/gpu_inv_${pol}_$run.jsonl
            rm -f $out $out.run.json
            case $run in
            b1) pre=(); post=(); b=1 ;;
            b8) pre=(); post=(); b=8 ;;
            # two ranks on the lent machine's one GPU: --share-gpus says that is meant
            mpi) pre=(mpirun --allow-run-as-root --oversubscribe -np 2); post=(--share-gpus); b=8 ;;
            esac
            timeout "$(limit 120)" "${pre[@]}" /tmp/etx-run eval -m "$1" --data $INV_DATA --out $out \
                --batch $b --ctx 4096 -n 64 --policy $pol --device cuda "${post[@]}" >> "$LOG" 2>&1 || inv_rc=$?
        done
    done
    if [ $inv_rc != 0 ]; then
        r="FAIL (etx eval exit $inv_rc)"
    else
        r=$(python3 - $runs <<'EOP'
import json, sys
out = []
for pol in ("greedy", "entropix"):
    base = [json.loads(l) for l in open(f"/tmp/gpu_inv_{pol}_b1.jsonl") if l.strip()]
    for run in sys.argv[2:]:
        other = [json.loads(l) for l in open(f"/tmp/gpu_inv_{pol}_{run}.jsonl") if l.strip()]
        key = lambda x: (x["completion"], x["tokens"])
        nd = sum(1 for x, y in zip(sorted(base, key=lambda x: x["id"]), sorted(other, key=lambda x: x["id"]))
                 if key(x) != key(y)) + abs(len(base) - len(other))
        out.append(f"{pol} {run}: " + ("identical" if nd == 0 else f"DIFFER {nd}/16"))
print("; ".join(out))
EOP
)
    fi
    say "batch invariance vs --batch 1: $r"; record "batch invariance: eval --batch 1 vs 8 vs mpirun" "$2, greedy + entropix, ctx 4096, prompts to ~1500 tokens" "$r"
}
if want invariance && [ -f "$DEFAULT_MODEL" ]; then
    has_time 90 "batch invariance: eval --batch 1 vs 8 vs mpirun" && invariance_stage "$DEFAULT_MODEL" "default model"
    INV_DONE=1
else
    INV_DONE=0
fi
t=test_batching_gpu
if want tests && [ -x "$BUILD/$t" ] && has_time 20 "$t"; then
    ( cd $BUILD && timeout "$(limit 150)" "${RUNENV[@]}" ./$t >> "$LOG" 2>&1 ); rc=$?
    case $rc in 0) r=ok ;; 77) r=SKIP ;; *) r="FAIL ($rc)" ;; esac
    say "$t: $r"; record "$t" "native: batch invariance suite" "$r"
fi

# -- end-to-end logits against transformers on the GPU
MODEL=/tmp/etx-llama1b-random
MODEL_OK=0  # the benchmarks need the model: only when transformers wrote it here, now
rm -rf $MODEL
# GPU_CHECK_TINY=1: the 2-layer model of the same architecture instead (a quick smoke run)
TINY=$([ "${GPU_CHECK_TINY:-0}" = 1 ] && echo --tiny)
SHAPE=$([ -n "$TINY" ] && echo "tiny 2-layer Llama 3" || echo "Llama-3.2-1B shape")
if has_time 60 "logits vs transformers" && timeout "$(limit 150)" python3 tests/scripts/gpu_llama1b.py make $MODEL $TINY >> "$LOG" 2>&1; then
    MODEL_OK=1
    want logits && timeout "$(limit 150)" python3 tests/scripts/gpu_llama1b.py compare $MODEL /tmp/etx-run 2>&1 | tee -a "$LOG" | tail -1 > /tmp/gpu_cmp.txt
    cmp=$(cat /tmp/gpu_cmp.txt 2>/dev/null)
    want logits && record "logits vs transformers (bf16)" "$SHAPE, random weights" "${cmp#gpu_llama1b: }"
    # generation end to end, entropix, with the device->host byte count
    timeout "$(limit 60)" /tmp/etx-run generate -m $MODEL --device cuda -p "The capital of France is" -n 32 --policy entropix --stats \
        > /dev/null 2> /tmp/gpu_gen.txt; rc=$?
    cat /tmp/gpu_gen.txt >> "$LOG"
    record "etx generate --device cuda --policy entropix" "32 tokens" "exit $rc; $(grep -o '[0-9.]* per generated token' /tmp/gpu_gen.txt)"
else
    say "could not build the random Llama model with transformers (see $LOG)"
    record "logits vs transformers" "model creation" FAIL
fi

if want invariance && [ $INV_DONE = 0 ]; then
    if [ $MODEL_OK = 1 ]; then
        has_time 90 "batch invariance: eval --batch 1 vs 8 vs mpirun" && invariance_stage $MODEL "$SHAPE random model (no $DEFAULT_MODEL here)"
    else
        record "batch invariance: eval --batch 1 vs 8 vs mpirun" "no model" "SKIP: no $DEFAULT_MODEL and no random model"
    fi
fi

# -- several GPUs (issue "Multi-GPU"): --gpus and --tp on the random model (32/8 heads: TP 2, 4, 8 divide it), only where the
#    machine has 2 or more GPUs (the lent machines have had one: then recorded as skipped,
#    nothing claimed). --tp 2 greedy tokens against one device's; --gpus all output
#    byte-identical to one device's. test_tp_gpu (tests stage) skips itself likewise.
NGPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if want multigpu; then
    if [ "$NGPU" -lt 2 ]; then
        record "several GPUs: --tp 2, --gpus all" "$NGPU GPU" "SKIP: needs 2 GPUs (NCCL path not exercised here)"
    elif [ $MODEL_OK != 1 ]; then
        record "several GPUs: --tp 2, --gpus all" "$NGPU GPUs" "SKIP: no model (see the logits row)"
    elif has_time 60 "several GPUs: --tp 2, --gpus all"; then
        cp tests/fixtures/eval/gsm8k_sample.jsonl /tmp/gpu_mg.jsonl
        mg() { timeout "$(limit 60)" /tmp/etx-run eval -m "$MODEL" --device cuda --data /tmp/gpu_mg.jsonl -n 48 \
               --policy greedy --batch 8 "$@" >> "$LOG" 2>&1; }
        rm -f /tmp/gpu_mg_*.jsonl
        mg --out /tmp/gpu_mg_one.jsonl; r1=$?
        mg --out /tmp/gpu_mg_tp2.jsonl --tp 2; r2=$?
        mg --out /tmp/gpu_mg_all.jsonl --gpus all; r3=$?
        same() { cmp -s /tmp/gpu_mg_one.jsonl "$1" && echo identical || echo DIFFER; }
        r="exits $r1/$r2/$r3; --tp 2 vs one device: $(same /tmp/gpu_mg_tp2.jsonl) (greedy; equal where margins allow); --gpus all: $(same /tmp/gpu_mg_all.jsonl)"
        say "several GPUs: $r"; record "several GPUs: --tp 2, --gpus all" "$NGPU GPUs, $SHAPE random model, the 5 sample prompts" "$r"
    fi
fi

# -- benchmarks (issue 6 / DESIGN "Performance"): etx bench, then the peers on the same work
BENCH_MD=/tmp/gpu_bench.md
: > $BENCH_MD
[ $MODEL_OK = 1 ] || record "benchmarks (etx bench, peers)" "not run" "SKIP: no model (see the logits row)"
if want bench && [ $MODEL_OK = 1 ] && has_time 60 "etx bench"; then
    # 240 s: at batch 256 the prefill (32768 tokens per run on CUDA-core GEMMs) took the first
    # H200 run past 150 s
    timeout "$(limit 240)" /tmp/etx-run bench -m $MODEL --device cuda --batch 1,8,64,256 -l 128 -g 64 -r 3 \
        --policy greedy,entropix --json "$OUT/etx_bench_gpu.json" > /tmp/gpu_etx_bench.txt 2>> "$LOG"; BENCH_RC=$?
    cat /tmp/gpu_etx_bench.txt >> "$LOG"
    record "etx bench --device cuda" "$SHAPE, batch 1/8/64/256, L 128, G 64" "exit $BENCH_RC"
    { echo "## etx bench"; echo; cat /tmp/gpu_etx_bench.txt; echo; } >> $BENCH_MD
fi
# -- the cost model against the GPU (docs/commands.md, bench --plan): predicted per-op
#    times of a decode step beside the measured ones (ETX_CUDA_PROFILE=1: each op timed
#    with events, graphs off), same model, batches 1 and 64, L 128, G 64
# -- the GEMM paths side by side (kernels/gemm.h, ETX_GEMM): the same bench, greedy, on
#    CUDA cores then tensor cores, in this script (a ratio, not two sessions' numbers)
if want gemm_ab && [ $MODEL_OK = 1 ] && has_time 60 "gemm paths"; then
    { echo "## GEMM paths: ETX_GEMM=cuda-cores vs tensor-cores (etx bench, greedy, -r 1)"; echo; } >> $BENCH_MD
    for path in ${GPU_CHECK_GEMM_PATHS:-tensor-cores cuda-cores}; do
        has_time 30 "gemm path $path" || continue
        bs=1,8,64,256; [ $path = cuda-cores ] && bs=1,8,64 # CUDA-core prefill at 256 rows is slow
        ETX_GEMM=$path timeout "$(limit 150)" /tmp/etx-run bench -m $MODEL --device cuda --batch $bs -l 128 -g 64 -r 1 \
            --policy greedy --json "$OUT/etx_bench_$path.json" > /tmp/gpu_bench_$path.txt 2>> "$LOG"; rc=$?
        cat /tmp/gpu_bench_$path.txt >> "$LOG"
        record "etx bench, ETX_GEMM=$path" "$SHAPE, batch $bs, L 128, G 64, greedy" "exit $rc"
        { echo "### ETX_GEMM=$path"; echo; cat /tmp/gpu_bench_$path.txt; echo; } >> $BENCH_MD
    done
fi
# -- programmatic dependent launch and the tiled GEMM on and off (kernels/cuda_common.cuh,
#    kernels/gemm.h): the same bench, greedy, in this script; the cost model assumes 0.7 us
#    per kernel with PDL against 1.5 without, and the tiled kernel at 64 FLOPs per L2 byte
#    against gemm_tc_kernel's 16: these ratios check both (the bits are the same either way)
if want pdl_tiled_ab && [ $MODEL_OK = 1 ] && has_time 60 "PDL / tiled GEMM"; then
    { echo "## ETX_PDL=0, ETX_GEMM_TILED=0, ETX_FUSE=0, ETX_TC_WARPS=8 and ETX_PREFETCH=0 beside the default (etx bench, greedy, -r 1)"; echo; } >> $BENCH_MD
    for v in default ETX_PREFETCH=0 ETX_PDL=0 ETX_GEMM_TILED=0 ETX_FUSE=0 ETX_TC_WARPS=8; do
        has_time 30 "$v" || continue
        tag=${v//=/}
        env $( [ $v = default ] || echo $v ) timeout "$(limit 120)" /tmp/etx-run bench -m $MODEL --device cuda \
            --batch 1,64,256 -l 128 -g 64 -r 1 --policy greedy --json "$OUT/etx_bench_ab_$tag.json" \
            > /tmp/gpu_bench_ab_$tag.txt 2>> "$LOG"; rc=$?
        cat /tmp/gpu_bench_ab_$tag.txt >> "$LOG"
        record "etx bench, $v" "$SHAPE, batch 1/64/256, L 128, G 64, greedy" "exit $rc"
        { echo "### $v"; echo; cat /tmp/gpu_bench_ab_$tag.txt; echo; } >> $BENCH_MD
    done
fi
# -- decode graphs on and off (host/cuda/cuda_backend.h "Decode graphs": padded decode
#    batches captured with their sampling), the same bench in this script, entropix too
#    (its signals are in the graph)
if want graphs_ab && [ $MODEL_OK = 1 ] && has_time 60 "graphs on/off"; then
    { echo "## Decode graphs: ETX_CUDA_GRAPHS=1 (default) vs 0 (etx bench, -r 1)"; echo; } >> $BENCH_MD
    for g in 1 0; do
        has_time 30 "graphs $g" || continue
        ETX_CUDA_GRAPHS=$g timeout "$(limit 150)" /tmp/etx-run bench -m $MODEL --device cuda --batch 1,8,64 -l 128 -g 64 -r 1 \
            --policy greedy,entropix --json "$OUT/etx_bench_graphs$g.json" > /tmp/gpu_bench_graphs$g.txt 2>> "$LOG"; rc=$?
        cat /tmp/gpu_bench_graphs$g.txt >> "$LOG"
        record "etx bench, ETX_CUDA_GRAPHS=$g" "$SHAPE, batch 1/8/64, L 128, G 64, greedy and entropix" "exit $rc"
        { echo "### ETX_CUDA_GRAPHS=$g"; echo; cat /tmp/gpu_bench_graphs$g.txt; echo; } >> $BENCH_MD
    done
fi
# -- Nsight Compute on one short generate: the vocabulary pass, attention and GEMM
#    kernels' own times and limiters (graphs off so each launch is its own kernel)
if want ncu && [ $MODEL_OK = 1 ] && command -v ncu > /dev/null && has_time 60 "ncu"; then
    # the vocabulary pass of the prefill and of 3 decode steps; then attention and the
    # GEMMs of a decode step (past the prefill's 16 layers)
    n=0
    # GPU_CHECK_NCU: the selections, space-separated REGEX:SKIP:COUNT[:full]
    for sel in ${GPU_CHECK_NCU:-"vocab_pass_kernel:0:4" "attn_rows|attn_merge|gemm_tc_kernel|gemm_tc_tiled_kernel:110:12" "vocab_pass_kernel:2:1:full"}; do
        n=$((n + 1))
        has_time 30 "ncu $n" || continue
        IFS=: read -r re skip count how <<< "$sel"
        # "full": where the time goes inside the kernel (instruction mix, stalls by source line)
        sections=(--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats)
        [ "$how" = full ] && sections+=(--section InstructionStats --section SourceCounters --section ComputeWorkloadAnalysis)
        ETX_CUDA_GRAPHS=0 timeout "$(limit 90)" "${RUNENV[@]}" ncu --clock-control none \
            --kernel-name regex:"$re" --launch-skip "$skip" --launch-count "$count" "${sections[@]}" \
            "$ETX" generate -m $MODEL --device cuda -p "The capital of France is" -n 8 --policy entropix \
            > "$OUT/ncu_generate_$n.txt" 2>&1; rc=$?
        record "ncu $n: $re" "generate -n 8, entropix, graphs off, skip $skip, count $count" "exit $rc: ncu_generate_$n.txt"
    done
fi
if want profile && [ $MODEL_OK = 1 ] && has_time 60 "cost model vs profile"; then
    PCARD=h100
    case "$CARD" in *H200*) PCARD=h200 ;; esac
    timeout "$(limit 30)" /tmp/etx-run bench --plan -m $MODEL --card $PCARD --batch 1,64 -l 128 -g 64 \
        --policy greedy,entropix > "$OUT/cost_model_plan.md" 2>> "$LOG"; prc=$?
    ETX_CUDA_PROFILE=1 timeout "$(limit 120)" /tmp/etx-run bench -m $MODEL --device cuda --batch 1,64 -l 128 -g 64 \
        -r 1 --warmup 0 --policy greedy,entropix > /dev/null 2> "$OUT/cost_model_profile.md"; mrc=$?
    record "cost model vs profile" "$SHAPE, batch 1 and 64 ($PCARD datasheet)" "plan exit $prc, profile exit $mrc: $OUT/cost_model_{plan,profile}.md"
    { echo "## cost model (prediction)"; echo; cat "$OUT/cost_model_plan.md"; echo;
      echo "## per-op profile (measured, ETX_CUDA_PROFILE=1)"; echo; grep '^|\|^\[etx\] CUDA profile' "$OUT/cost_model_profile.md"; echo; } >> $BENCH_MD
fi
# the peers compare with the etx bench run above (same batches, L, G, R, both policies)
# when it finished, and otherwise run etx bench themselves
ETX_SIDE=(--etx /tmp/etx-run)
[ "${BENCH_RC:-1}" = 0 ] && [ -f "$OUT/etx_bench_gpu.json" ] && ETX_SIDE=(--etx-json "$OUT/etx_bench_gpu.json")
for peer in hf_generate entropix_ref; do
    [ $MODEL_OK = 1 ] && want peers || break
    has_time 60 "peer $peer" || continue
    # the peer's own numbers, etx's beside them, the ratios last
    PYTHONUNBUFFERED=1 timeout "$(limit 150)" python3 benchmarks/peers/$peer.py --model $MODEL --device cuda \
        --dtype bf16 -l 128 -g 64 -r 3 --batch-n 64 "${ETX_SIDE[@]}" --md "$OUT/peer_$peer.md" >> "$LOG" 2>&1; rc=$?
    record "peer: $peer.py vs etx" "batch 1 and 64, L 128, G 64" "exit $rc"
    [ -f "$OUT/peer_$peer.md" ] && { echo "## $peer"; echo; cat "$OUT/peer_$peer.md"; echo; } >> $BENCH_MD
done

# -- last: the kernel suites under compute-sanitizer (slow; what time is left)
if want sanitizer && command -v compute-sanitizer > /dev/null; then
    # memcheck on the quick suites; racecheck on those whose kernels share memory
    # (attention, vocabulary pass, policy)
    for run in memcheck:test_selftest_gpu memcheck:test_layer_kernels_gpu racecheck:test_layer_kernels_gpu \
               racecheck:test_sampling_kernels_gpu; do
        tool=${run%%:*} t=${run#*:}
        [ -x "$BUILD/$t" ] || continue
        has_time 30 "$t under compute-sanitizer $tool" || continue
        # --report-api-errors no: the suites make failing API calls on purpose (a launch
        # of 2048 threads, a failure inside a capture); memcheck is here for the kernels
        api=(); [ $tool = memcheck ] && api=(--report-api-errors no)
        ( cd $BUILD && CK_FORK=no timeout "$(limit 150)" "${RUNENV[@]}" compute-sanitizer --tool $tool "${api[@]}" --error-exitcode 9 \
            ./$t >> "$LOG" 2>&1 ); rc=$?
        case $rc in 0) r=clean ;; 124) r="timed out" ;; *) r="FAIL ($rc)" ;; esac
        say "$t under compute-sanitizer $tool: $r"; record "$t" "compute-sanitizer $tool" "$r"
    done
fi

# -- the table
{
    echo "# gpu_check: ${CARD} (driver ${DRIVER}), commit ${COMMIT}, $(date -u +%Y-%m-%d)"
    echo
    echo "| check | what | result |"
    echo "|---|---|---|"
    printf '%s\n' "${status[@]}"
    echo
    cat $BENCH_MD
    echo
    echo "total $(( $(date +%s) - T0 )) s; full log: gpu_check.log"
} > "$MD"
cat "$MD"
