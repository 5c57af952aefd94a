#!/usr/bin/env python3
"""gen_llamacpp_fixtures.py — records llama.cpp's outputs on the default GGUF model
(SmolLM2-135M-Instruct.Q4_1.gguf) under tests/fixtures/forward/llamacpp/, read by
tests/cpu/test_forward.c.

Reference: llama.cpp's CPU backend through llama-cpp-python. For each prompt:
  - the token ids from llama.cpp's own tokenizer (special tokens parsed, so the ChatML
    prompts hold <|im_start|>/<|im_end|> as single tokens; BOS as the model's metadata says),
  - the logits of the prompt's last position (<name>.bin, vocab little-endian float32),
  - a 32-token greedy continuation (argmax at each step, i.e. temperature 0, no EOS stop),
    with the top-1/top-2 logit margin of every step, so a near-tie is visible.

Choice of prompts: varied (plain text, code, a number series, a question, ChatML chats, a
long prompt that exceeds one 128-token prefill chunk), not picked for their outputs. Every
prompt's last-position logits are checked. The greedy continuations are compared token for
token only where they are well-conditioned: a case gets "greedy_checked": true when
llama.cpp's top-1/top-2 logit margin stays >= MARGIN_MIN at all 32 steps. That selection is
deliberate and is made here, from llama.cpp's margins alone: llama.cpp quantizes the
activations to 8 bits (Q8_1) for its Q4_1 dot products and keeps the KV cache in f16,
while etx computes in float32 on dequantized weights, so the two disagree by ~0.1 in a
typical logit and up to ~1 in the extreme ones (llama.cpp moves its own logits by up to
0.8 when only its KV cache type changes from f16 to f32). A continuation can therefore
flip at a step whose margin is a few tenths; the C test prints where the unchecked ones
diverge and the margins there. (etx itself matches transformers run on the dequantized
GGUF to ~5e-5, see gen_hf_fixtures.py --gguf.)

Setup: pip install llama-cpp-python numpy   (compiles llama.cpp; takes minutes)
Run from the repository root, with the model at models/cache/ (or pass its path):
    python3 tests/scripts/gen_llamacpp_fixtures.py [model.gguf]
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
REPO = os.path.dirname(ROOT)
OUT = os.path.join(ROOT, "fixtures", "forward", "llamacpp")
DEFAULT_MODEL = os.path.join(REPO, "models", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf")
N_GEN = 32
MARGIN_MIN = 0.1  # greedy compared token for token when llama.cpp's margins stay above this


def chatml(user, system="You are a helpful AI assistant named SmolLM, trained by Hugging Face"):
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


LONG = ("The history of computing is a story of abstraction. Early machines were programmed by "
        "rewiring panels and flipping switches; then came stored programs, assemblers that let people "
        "write mnemonics instead of numbers, and compilers that translated arithmetic formulas into "
        "machine code. Operating systems hid the details of disks and terminals, and networks tied "
        "machines together so that a file on one computer could be read from another across the world. "
        "Each layer let programmers think about bigger problems while trusting the layers below. Today "
        "a single line of code can start a computation spread over thousands of processors, yet the "
        "same principles remain: represent information carefully, break problems into parts, and test "
        "that each part does what it claims. In the next section we describe")

PROMPTS = [
    ("plain", "The capital of France is", False),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", False),
    ("numbers", "1, 1, 2, 3, 5, 8, 13, 21,", False),
    ("story", "Once upon a time, in a small village by the sea, there lived", False),
    ("chat_capital", chatml("What is the capital of France?"), True),
    ("chat_haiku", chatml("Write a haiku about the ocean."), True),
    ("long", LONG, False),
    ("question", "Q: What is 7 times 8?\nA:", False),
    ("colors", "The three primary colors are", False),
    ("chat_math", chatml("What is 2+2?"), True),
    ("chat_define", chatml("Give me a short definition of photosynthesis."), True),
    ("chat_nosystem", "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n", True),
]


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    os.makedirs(OUT, exist_ok=True)
    llm = Llama(model_path=model_path, n_ctx=1024, n_batch=512, n_threads=2, logits_all=True,
                verbose=False, seed=0)
    cases = []
    for name, text, chat in PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        last.astype("<f4").tofile(os.path.join(OUT, name + ".bin"))
        gen, margins = [], []
        logits = last
        for _ in range(N_GEN):
            order = np.argsort(-logits, kind="stable")
            tok = int(order[0])
            margins.append(float(logits[order[0]] - logits[order[1]]))
            gen.append(tok)
            llm.eval([tok])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        text_out = llm.detokenize(gen).decode("utf-8", errors="replace")
        print(f"{name}: {len(ids)} prompt tokens, min top-2 margin {min(margins):.4f}, -> {text_out!r}")
        cases.append(dict(name=name, chat=chat, ids=[int(i) for i in ids], logits=name + ".bin",
                          vocab=int(last.shape[0]), greedy=gen, margins=[round(m, 5) for m in margins],
                          min_margin=round(min(margins), 5), greedy_checked=min(margins) >= MARGIN_MIN,
                          greedy_text=text_out))
    meta = dict(model="SmolLM2-135M-Instruct.Q4_1.gguf", generator="tests/scripts/gen_llamacpp_fixtures.py",
                reference=f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, CPU, 2 threads",
                n_generated=N_GEN, margin_min=MARGIN_MIN, cases=cases)
    with open(os.path.join(OUT, "smollm2.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
