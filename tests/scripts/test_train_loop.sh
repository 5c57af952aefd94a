#!/usr/bin/env bash
# test_train_loop.sh BUILD_DIR SOURCE_DIR — the learned policy's loop end to end on the
# CPU with SmolLM2 (docs/policies.md, "Learned policy"): it checks the loop, not accuracy.
#   1. train_policy.py init: a first policy with random weights (state-dependent action
#      probabilities, with the pause action among them);
#   2. etx sweep over two seeds with --samples 2 --trace: the training data;
#   3. train_policy.py check: the action log-probabilities the script computes from the
#      trace's features equal the ones etx recorded (the features are the same on both
#      sides), within 1e-4;
#   4. train_policy.py train (policy gradient) writes a policy file etx accepts;
#   5. etx eval with it (--trace), and the check again on its results: every token has an
#      action of the trained network, recomputed within 1e-4;
#   6. behaviour cloning writes a policy file too, and a malformed results file is refused.
set -euo pipefail
build=$1
src=$2
etx=$build/etx
model=${ETX_MODEL:-$src/models/cache/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$model" ] || { echo "no model at $model (models/fetch_default_model.sh)"; exit 1; }
python3 -c "import numpy" || { echo "python3 has no numpy (scripts/install_deps.sh installs python3-numpy)"; exit 1; }
tp="python3 $src/scripts/train_policy.py"
work=$(mktemp -d "$build/test_train_loop.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
head -n 4 "$src/tests/fixtures/eval/gsm8k_sample.jsonl" > data.jsonl
common=(-m "$model" --data data.jsonl --task gsm8k -n 12 --threads 2 --batch 16 --ctx 1024)

$tp init --actions argmax,sample:0.9,adaptive,pause --random 1.0 --seed 3 --out explore.json
printf '{"grid": {"seed": [1, 2]}}\n' > grid.json
"$etx" sweep "${common[@]}" --policy-file explore.json --grid grid.json --samples 2 --trace --out sweep
n=$(wc -l < sweep/completions.jsonl)
[ "$n" -eq 8 ] || { echo "sweep wrote $n lines, want 8"; exit 1; }
$tp check --policy explore.json --results sweep/completions.jsonl --max-diff 1e-4

$tp train --policy explore.json --results sweep/completions.jsonl --out learned.json --epochs 3 --val-frac 0.5 \
    --hidden 8 --layers 2 --seed 1
python3 - <<'PY'
import json
p = json.load(open("learned.json"))
assert p["policy"] == "learned" and p["training"]["method"] == "pg", p.get("training")
assert len(p["learned"]["layers"]) == 3 and len(p["learned"]["actions"]) == 4
PY
"$etx" eval "${common[@]}" --policy-file learned.json --trace --out eval.jsonl --summary summary.json
$tp check --policy learned.json --results eval.jsonl --max-diff 1e-4
python3 - <<'PY'
import json
lines = [json.loads(l) for l in open("eval.jsonl")]
assert len(lines) == 4
for r in lines:
    acts = r["trace"]["action"]
    assert len(acts) == r["tokens"] and all(0 <= a < 4 for a in acts), r["trace"]["action"]
PY

$tp train --method bc --policy explore.json --results sweep/completions.jsonl --out bc.json --epochs 2 --val-frac 0
"$etx" eval "${common[@]}" --policy-file bc.json --limit 1 --out bc_eval.jsonl
head -c 100 data.jsonl > torn.jsonl
if $tp train --policy explore.json --results eval.jsonl torn.jsonl --out x.json 2>err.txt; then
    echo "a torn results file was accepted"; exit 1
fi
echo "test_train_loop: ok"
