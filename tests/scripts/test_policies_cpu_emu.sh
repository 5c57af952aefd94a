#!/usr/bin/env bash
# test_policies_cpu_emu.sh BUILD_DIR SOURCE_DIR — the policies that carry more than a
# draw (learned: a network; dslider: a state from token to token; calibrated: entropix
# with thresholds from `etx calibrate`) run through `etx generate`, `etx eval` and
# `etx sweep` on the CPU (etx --device cpu) and on the emulated CUDA backend
# (etx_emu --device cuda), on the tiny fixture model: every run succeeds, writes a line
# per request whose trace has a record per token, with the branches (dslider) and
# actions (learned) the policy can take; a learned run takes several actions, a dslider
# run more than one branch.
#
# What this does not assert: equal tokens across the two backends. The CPU computes in
# float32, the device path with bf16 weights, so the logits differ by ~1 % of their
# spread, and a draw whose threshold falls between two close cumulative masses goes
# another way (a plain `--policy sample` run diverges as often: the measurements are in
# benchmarks/results/policies-cpu-vs-emu-2026-12-05.md). Given the same logits both
# backends make the same decision and leave the same dslider state bit for bit:
# tests/kernels/test_sampling_kernels.c. The script prints how many requests agree.
set -euo pipefail
build=$1
src=$2
etx=$build/etx
emu=$build/etx_emu
[ -x "$emu" ] || { echo "test_policies_cpu_emu: SKIPPED: no $emu (nvcc-less build)"; exit 0; }
python3 -c "import numpy" || { echo "python3 has no numpy (scripts/install_deps.sh installs it)"; exit 1; }
model=$src/tests/fixtures/models/tiny-llama-gqa
work=$(mktemp -d "$build/test_policies_cpu_emu.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
cat > data.jsonl <<'EOF'
{"id": 1, "prompt": "Question: A robe takes 2 bolts of blue fiber. How many bolts?\nAnswer:", "answer": "#### 2"}
{"id": 2, "prompt": "Question: What is 12 times 7?\nAnswer:", "answer": "#### 84"}
{"id": 3, "prompt": "Once upon a time, there was a little robot who", "answer": "#### 0"}
{"id": 4, "prompt": "The capital of France is", "answer": "#### 0"}
EOF
n_req=$(wc -l < data.jsonl)
common=(-m "$model" --data data.jsonl -n 8 --threads 2 --batch 4 --ctx 128)

# the policy files: a random learned network (every action kind, pause included), a
# calibrated entropix tree (quantiles of this model's signals on these prompts)
python3 "$src/scripts/train_policy.py" init --actions argmax,sample:0.9,adaptive,pause --random 1.0 --seed 5 \
    --out learned.json
"$etx" calibrate "${common[@]}" --device cpu --out calibrated.json --table calibrated.md 2>/dev/null
python3 -c 'import json; p = json.load(open("calibrated.json")); assert p["policy"] == "entropix", p'
printf '{"policy": "dslider", "grid": {"support": [8, 32], "seed": [3]}}\n' > grid.json

# check_lines FILE N KIND: N lines, a trace record per token, branches / actions in range
check_lines() {
    python3 - "$@" <<'PY'
import json, sys
path, n, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = [json.loads(l) for l in open(path)]
assert len(lines) == n, (path, len(lines), n)
allowed = {"dslider": {"argmax", "inlier", "dirichlet", "outlier"},
           "learned": {"argmax", "sample", "pause", "adaptive"},
           "entropix": {"argmax", "pause", "helv", "lehv", "hehv", "adaptive"}}[kind]
branches, actions = set(), set()
for r in lines:
    t = r["trace"]
    assert len(t["token"]) == r["tokens"] >= 1, (path, r["id"], len(t["token"]), r["tokens"])
    assert set(t["branch"]) <= allowed, (path, set(t["branch"]) - allowed)
    branches.update(t["branch"])
    actions.update(t["action"])
if kind == "learned":
    assert actions <= {0, 1, 2, 3} and len(actions) >= 2, (path, actions)
else:
    assert actions == {-1}, (path, actions)
if kind == "dslider":
    assert len(branches) >= 2, (path, branches)
PY
}
# agree A B: how many requests have the same tokens on both backends (printed, not asserted)
agree() {
    python3 - "$@" <<'PY'
import json, sys
def runs(path):  # (request, combination) -> tokens
    return {(r["id"], r.get("combo")): r["trace"]["token"] for r in map(json.loads, open(path))}
a, b = runs(sys.argv[1]), runs(sys.argv[2])
print(f"  {sys.argv[3]}: {sum(a[k] == b.get(k) for k in a)} of {len(a)} requests with the same tokens on both backends")
PY
}

for run in "dslider:--policy dslider --seed 4" "learned:--policy-file learned.json --seed 6 --pause-token 3" \
           "entropix:--policy-file calibrated.json --seed 7 --pause-token 3"; do
    kind=${run%%:*}
    pol=${run#*:}
    # shellcheck disable=SC2086
    "$etx" eval "${common[@]}" --device cpu $pol --trace --out "cpu_$kind.jsonl" 2>err.txt || { cat err.txt; exit 1; }
    # shellcheck disable=SC2086
    "$emu" eval "${common[@]}" --device cuda $pol --trace --out "emu_$kind.jsonl" 2>err.txt || { cat err.txt; exit 1; }
    check_lines "cpu_$kind.jsonl" "$n_req" "$kind"
    check_lines "emu_$kind.jsonl" "$n_req" "$kind"
    agree "cpu_$kind.jsonl" "emu_$kind.jsonl" "eval $kind"
done

"$etx" sweep "${common[@]}" --device cpu --grid grid.json --trace --out sweep_cpu 2>/dev/null
"$emu" sweep "${common[@]}" --device cuda --grid grid.json --trace --out sweep_emu 2>/dev/null
for d in sweep_cpu sweep_emu; do
    check_lines $d/completions.jsonl $((2 * n_req)) dslider
    [ "$(wc -l < $d/results.csv)" -eq 3 ] || { echo "$d/results.csv: not 2 rows"; exit 1; }
done
agree sweep_cpu/completions.jsonl sweep_emu/completions.jsonl "sweep dslider"

for dev in cpu cuda; do
    bin=$etx
    [ $dev = cuda ] && bin=$emu
    "$bin" generate -m "$model" -p "Question: what is 12 times 7? Answer:" -n 8 --threads 2 --device $dev \
        --policy dslider --seed 9 --ignore-eos --trace "gen_$dev.jsonl" > "gen_$dev.txt" 2>/dev/null
    [ "$(wc -l < "gen_$dev.jsonl")" -eq 8 ] || { echo "generate on $dev: not 8 trace records"; exit 1; }
done
echo "test_policies_cpu_emu: ok"
