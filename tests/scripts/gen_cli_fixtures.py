#!/usr/bin/env python3
"""Regenerates tests/fixtures/cli/generate_smollm2.json: what `etx generate` must print,
greedy, for a few prompts (plain and --chat) on the default model.

References, none of them etx:
- the chat prompt is rendered with the GGUF's own Jinja chat template (jinja2);
- text <-> ids with Hugging Face `tokenizers` on tests/fixtures/tokenizer/smollm2/tokenizer.json
  (SmolLM2's vocabulary and pre-tokenizer; see tests/fixtures/tokenizer/README.md);
- the greedy continuation with Hugging Face transformers on the GGUF (its GGUF loader
  dequantizes to float32, the arithmetic etx's CPU backend does), eager attention, until
  <|im_end|> (2) or <|endoftext|> (0) — the model's end tokens — or n tokens.
The expected stdout is the decoded text of the generated tokens without the final end
token, plus a newline. Each step's top-2 logit margin is recorded: all are far above the
~1e-4 float32 differences between etx and transformers, so equality is a fair test.
(llama.cpp is not used here: its Q4_1 path quantizes activations to 8 bits, moving logits
by up to ~1, which flips near ties; tests/cpu/test_forward.c covers llama.cpp with stated
tolerances.)

usage: python tests/scripts/gen_cli_fixtures.py
needs: pip install torch transformers gguf tokenizers jinja2 numpy accelerate
"""
import json
import os

import gguf
import jinja2
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
END_TOKENS = {0, 2}

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
    torch.set_num_threads(2)
    cache = os.path.join(ROOT, "models", "cache")
    tmpl = jinja2.Environment().from_string(chat_template(os.path.join(cache, NAME)))
    tok = Tokenizer.from_file(os.path.join(ROOT, "tests/fixtures/tokenizer/smollm2/tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(cache, gguf_file=NAME, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    out = []
    for case in CASES:
        if case["mode"] == "chat":
            text = tmpl.render(messages=[{"role": "user", "content": case["text"]}], add_generation_prompt=True)
        else:
            text = case["text"]
        ids = tok.encode(text, add_special_tokens=False).ids
        gen, margins = [], []
        with torch.no_grad():
            res = model(torch.tensor([ids]), use_cache=True)
            for _ in range(case["n"]):
                logits = res.logits[0, -1]
                top2 = torch.topk(logits, 2).values
                margins.append(float(top2[0] - top2[1]))
                t = int(torch.argmax(logits))
                gen.append(t)
                if t in END_TOKENS:
                    break
                res = model(torch.tensor([[t]]), past_key_values=res.past_key_values, use_cache=True)
        stopped = gen[-1] in END_TOKENS
        body = gen[:-1] if stopped else gen
        expect = tok.decode(body, skip_special_tokens=False) + "\n"
        out.append({**case, "prompt_ids": ids, "tokens": gen, "stopped": stopped, "expected_stdout": expect,
                    "min_top2_margin": round(min(margins), 6)})
        print(f"{case['mode']:6} {case['text'][:40]!r:44} {len(gen):3} tokens, min top-2 margin {min(margins):.4f}")
    with open(os.path.join(ROOT, "tests/fixtures/cli/generate_smollm2.json"), "w") as f:
        json.dump({"model": NAME, "generator": "tests/scripts/gen_cli_fixtures.py",
                   "reference": f"transformers {__import__('transformers').__version__} GGUF loader (float32), "
                                f"tokenizers {__import__('tokenizers').__version__}, jinja2 chat template",
                   "cases": out}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
