#!/usr/bin/env bash
# policies_cpu_vs_emu.sh [BUILD_DIR] — where the CPU (float32) and the emulated CUDA
# backend (device code, bf16 weights) part ways under sampling policies: the first three
# GSM8K sample prompts, 10 tokens, SmolLM2-135M, one eval per policy on each backend,
# then per request the first token that differs. The emulator is slow: ~15 minutes.
# Results: benchmarks/results/policies-cpu-vs-emu-2026-12-05.md.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-dev}
model=${ETX_MODEL:-$src/models/cache/SmolLM2-135M-Instruct.Q4_1.gguf}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
head -n 3 "$src/tests/fixtures/eval/gsm8k_sample.jsonl" > data.jsonl
common=(-m "$model" --data data.jsonl -n 10 --threads 1 --batch 3 --ctx 512)
python3 "$src/scripts/train_policy.py" init --actions argmax,sample:0.9,adaptive,pause --random 1.0 --seed 5 \
    --out learned.json
"$build/etx" calibrate "${common[@]}" --device cpu --out calibrated.json --table calibrated.md 2>/dev/null >/dev/null
for pol in "--policy-file learned.json --seed 6" "--policy-file calibrated.json --seed 7" "--policy dslider --seed 4" \
           "--policy sample --temperature 0.9 --seed 5"; do
    # shellcheck disable=SC2086
    "$build/etx" eval "${common[@]}" --device cpu $pol --trace --out cpu.jsonl 2>/dev/null
    s=$(date +%s)
    # shellcheck disable=SC2086
    "$build/etx_emu" eval "${common[@]}" --device cuda $pol --trace --out emu.jsonl 2>/dev/null
    echo "== $pol ($(($(date +%s) - s)) s on the emulator)"
    python3 - cpu.jsonl emu.jsonl <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
for x, y in zip(a, b):
    ta, tb = x["trace"]["token"], y["trace"]["token"]
    k = next((i for i, (p, q) in enumerate(zip(ta, tb)) if p != q), None)
    if ta == tb:
        print(x["id"], "same")
        continue
    la, lb = x["trace"]["top_logprobs"][k], y["trace"]["top_logprobs"][k]
    print(x["id"], f"first difference at token {k}: cpu {ta[k]} emu {tb[k]}; top-2 log-probabilities there "
          f"cpu {la[0]:.3f} {la[1]:.3f}, emu {lb[0]:.3f} {lb[1]:.3f}")
PY
    rm -f cpu.jsonl emu.jsonl
done
