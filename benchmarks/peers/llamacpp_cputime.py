#!/usr/bin/env python3
"""CPU seconds per decoded token, etx beside llama.cpp (llama-cpp-python), batch 1, on the
same GGUF and thread count: the comparison that survives a shared machine.

Wall-clock tok/s on a machine other jobs share (benchmarks/peers/llamacpp_cpu.py) moves
by 2x between rounds; the CPU time a process spends per token moves much less, since time
it is descheduled is not counted. Each engine decodes the same greedy continuation of the
same prompt:
  llama.cpp: the prompt evaluated, then G tokens one llama_eval each (argmax of the last
             row), process CPU time around the G evaluations only;
  etx:       `etx generate -t T -n G+1 --ignore-eos --stats`, whose stats line gives the
             process CPU time (every thread, CLOCK_PROCESS_CPUTIME_ID) of the G decode
             steps after the first token, per token.
Rounds alternate llama.cpp, etx, llama.cpp, etx, ... and the medians are reported, with
their ratio (etx / llama.cpp CPU seconds per token: below 1 etx is cheaper).

usage: python3 benchmarks/peers/llamacpp_cputime.py --etx build-dev/etx --gguf MODEL.gguf
           [-t 1] [-g 32] [--rounds 3] [--prompt TEXT] [--md FILE]
needs: pip install llama-cpp-python numpy
"""
import argparse
import ctypes
import re
import statistics
import subprocess
import sys
import time

import numpy as np


def llamacpp_round(llm, ids, gen):
    llm.reset()
    llm.eval(ids)
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    c0 = time.process_time()
    for _ in range(gen):
        llm.eval([tok])
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    return (time.process_time() - c0) / gen


def etx_round(etx, gguf, threads, gen, prompt):
    r = subprocess.run([etx, "generate", "-m", gguf, "-t", str(threads), "-n", str(gen + 1), "--ignore-eos",
                        "--stats", "-p", prompt], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    m = re.search(r"after the first in [0-9.]+ s \([0-9.]+ tok/s, ([0-9.]+) CPU s per token\)", r.stderr)
    if not m:
        sys.exit("etx --stats gave no CPU time per token:\n" + r.stderr)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--etx", required=True, help="etx binary")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("-t", type=int, default=1, help="threads, both engines")
    ap.add_argument("-g", type=int, default=32, help="decode steps timed")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", default="Write a short story about a lighthouse keeper who finds a message in a bottle.")
    ap.add_argument("--md", help="also write the markdown table to this file")
    a = ap.parse_args()

    import llama_cpp
    quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p())
    llm = llama_cpp.Llama(a.gguf, n_ctx=512, n_threads=a.t, n_threads_batch=a.t, verbose=False, logits_all=False)
    ids = llm.tokenize(a.prompt.encode(), add_bos=False)

    lc, ex = [], []
    for r in range(a.rounds):
        lc.append(llamacpp_round(llm, ids, a.g))
        ex.append(etx_round(a.etx, a.gguf, a.t, a.g, a.prompt))
        print("round %d: llama.cpp %.4f CPU s/token, etx %.4f" % (r + 1, lc[-1], ex[-1]), file=sys.stderr, flush=True)
    ml, me = statistics.median(lc), statistics.median(ex)
    lines = [
        "| engine | CPU s / token (rounds) | median | tokens per CPU second |",
        "|---|---|---:|---:|",
        "| llama.cpp | %s | %.4f | %.2f |" % (", ".join("%.4f" % v for v in lc), ml, 1 / ml),
        "| etx | %s | %.4f | %.2f |" % (", ".join("%.4f" % v for v in ex), me, 1 / me),
        "",
        "etx / llama.cpp CPU time per token: %.2f (threads %d, %d decode steps, %d rounds)" % (me / ml, a.t, a.g,
                                                                                              a.rounds),
    ]
    print("\n".join(lines))
    if a.md:
        with open(a.md, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
