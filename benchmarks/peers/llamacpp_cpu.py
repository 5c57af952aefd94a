#!/usr/bin/env python3
"""Prefill and decode speed of llama.cpp (through llama-cpp-python) on the default model,
the same work bench_cpu_decode does: a PROMPT_LEN-token prompt of ids cycling through the
vocabulary (1000 + 37 i mod (V - 1000)), then GEN_LEN greedy tokens one at a time,
REPEATS times after one warm-up, medians printed. Run it beside
`build-rel/bench_cpu_decode -t T -l L -g G` on the same machine and compare the ratios.

usage: python3 benchmarks/peers/llamacpp_cpu.py [-t 2] [-l 128] [-g 64] [-r 3] [--gguf PATH]
needs: pip install llama-cpp-python numpy
"""
import argparse
import os
import statistics
import time

import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-l", type=int, default=128)
    ap.add_argument("-g", type=int, default=64)
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = ap.parse_args()
    llm = Llama(model_path=a.gguf, n_ctx=a.l + a.g + 8, n_threads=a.t, n_threads_batch=a.t, n_batch=512,
                verbose=False)
    v = llm.n_vocab()
    prompt = [1000 + (i * 37) % (v - 1000) for i in range(a.l)]
    pre, dec = [], []
    for r in range(a.r + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t1 = time.perf_counter()
        for _ in range(a.g - 1):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t2 = time.perf_counter()
        if r:
            pre.append(a.l / (t1 - t0))
            dec.append((a.g - 1) / (t2 - t1))
    print(f"llama.cpp (llama-cpp-python) {os.path.basename(a.gguf)}, threads {a.t}, prompt {a.l}, generate {a.g}")
    print(f"prefill {statistics.median(pre):.1f} tok/s (median)\ndecode  {statistics.median(dec):.2f} tok/s (median)")


if __name__ == "__main__":
    main()
