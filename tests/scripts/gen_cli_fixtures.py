#!/usr/bin/env python3
"""Regenerates tests/fixtures/cli/generate_smollm2.json: what `etx generate` must print,
greedy, for a few prompts on the default model (SmolLM2-135M-Instruct Q4_1 GGUF), as
llama.cpp (through llama-cpp-python) generates it.

For each case: the prompt is rendered (plain text, or the GGUF's own Jinja chat template
with jinja2 for --chat), tokenized by llama.cpp (special tokens parsed, no BOS: the GGUF
says add_bos_token = false), then generated greedily (argmax of llama.cpp's logits) until
an end-of-generation token or n tokens. The expected stdout is the detokenized text of
the generated tokens without the final end token, plus a newline, which is what
`etx generate` prints. The script also records, for every step, the margin between
llama.cpp's top-2 logits, so a failing comparison can be told apart from a near tie
(llama.cpp quantizes activations to 8 bits in its Q4_1 dot products; etx runs float32).

usage: python3 tests/scripts/gen_cli_fixtures.py [--gguf models/cache/SmolLM2-135M-Instruct.Q4_1.gguf]
needs: pip install llama-cpp-python==0.3.36 jinja2 gguf numpy
"""
import argparse
import json
import os

import gguf
import jinja2
import numpy as np
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CASES = [
    {"mode": "prompt", "text": "The capital of France is", "n": 24},
    {"mode": "prompt", "text": "def fibonacci(n):\n", "n": 32},
    {"mode": "prompt", "text": "Once upon a time, in a small village,", "n": 32},
    {"mode": "chat", "text": "What is the capital of France?", "n": 32},
    {"mode": "chat", "text": "Write a short poem about the sea.", "n": 32},
    {"mode": "chat", "text": "List three primary colors.", "n": 32},
]


def chat_template(path):
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/cli/generate_smollm2.json"))
    args = ap.parse_args()
    tmpl = jinja2.Environment().from_string(chat_template(args.gguf))
    llm = Llama(model_path=args.gguf, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    eog = {i for i in range(llm.n_vocab()) if llm._model.token_is_eog(i)} if hasattr(llm._model, "token_is_eog") else set()
    eog |= {llm.token_eos()}
    out = []
    for case in CASES:
        if case["mode"] == "chat":
            text = tmpl.render(messages=[{"role": "user", "content": case["text"]}], add_generation_prompt=True)
        else:
            text = case["text"]
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        gen, margins = [], []
        for _ in range(case["n"]):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.sort(logits)[-2:]
            margins.append(float(top2[1] - top2[0]))
            tok = int(np.argmax(logits))
            gen.append(tok)
            if tok in eog:
                break
            llm.eval([tok])
        stopped = gen[-1] in eog
        body = gen[:-1] if stopped else gen
        expect = llm.detokenize(body).decode("utf-8", errors="replace") + "\n"
        out.append({**case, "prompt_ids": ids, "tokens": gen, "stopped": stopped, "expected_stdout": expect,
                    "min_top2_margin": min(margins)})
        print(f"{case['mode']:6} {case['text'][:40]!r:44} {len(gen):3} tokens, min top-2 margin {min(margins):.3f}")
    with open(args.out, "w") as f:
        json.dump({"model": os.path.basename(args.gguf), "generator": "llama-cpp-python 0.3.36, greedy",
                   "cases": out}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
