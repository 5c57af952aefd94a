#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) beside `etx bench` on the CPU: the same GGUF, the
same thread count, the same work, in alternating rounds so the machine's drift hits both.

Work (what `etx bench --batch 1` runs): a prompt of L ids, position i = 1000 +
37 i mod (V - 1000); then G greedy tokens, one at a time (EOS ignored).
  prefill tok/s = L / T1, T1 = evaluating the prompt and taking the first token;
  decode tok/s  = (G - 1) / (T - T1), the remaining tokens one forward each.
llama.cpp: medians of R repeats after one warm-up, llama_cpp.Llama.eval on one sequence
(its high-level API has no batched decode, so batch 1 only). etx: `etx bench -b 1 -r R
--policy greedy,entropix` (also medians of R after a warm-up), greedy compared with
llama.cpp's greedy; etx's entropix row shows what the adaptive policy costs on top.

usage: python3 benchmarks/peers/llamacpp_cpu.py [--etx build-rel/etx] [-t 2] [-l 128] [-g 64]
           [-r 3] [--rounds 2] [--gguf PATH] [--md FILE]
needs: pip install llama-cpp-python numpy
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def llamacpp_round(llm, a):
    v = llm.n_vocab()
    prompt = [1000 + (i * 37) % (v - 1000) for i in range(a.l)]
    pre, dec = [], []
    for r in range(a.r + 1):  # the first is the warm-up
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
    return statistics.median(pre), statistics.median(dec)


def etx_round(a):
    fd, path = tempfile.mkstemp(prefix="etx_bench_", suffix=".json")
    os.close(fd)
    cmd = [a.etx, "bench", "-m", a.gguf, "--device", "cpu", "-t", str(a.t), "-b", "1", "-l", str(a.l),
           "-g", str(a.g), "-r", str(a.r), "--policy", "greedy,entropix", "--json", path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        js = json.load(f)
    os.remove(path)
    by = {r["policy"]: r for r in js["results"]}
    return js, by["greedy"], by["entropix"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", type=int, default=2, help="threads, both engines")
    ap.add_argument("-l", type=int, default=128, help="prompt tokens")
    ap.add_argument("-g", type=int, default=64, help="generated tokens (>= 2)")
    ap.add_argument("-r", type=int, default=3, help="timed repeats per round (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of llama.cpp then etx")
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--etx", help="etx binary (without it only llama.cpp runs)")
    ap.add_argument("--md", help="also write the markdown to this file")
    a = ap.parse_args()
    if a.t < 1 or a.l < 1 or a.g < 2 or a.r < 1 or a.rounds < 1:
        ap.error("need -t >= 1, -l >= 1, -g >= 2, -r >= 1, --rounds >= 1")
    if not os.path.exists(a.gguf):
        sys.exit("no model at %s (models/fetch_default_model.sh fetches it)" % a.gguf)
    import llama_cpp
    from llama_cpp import Llama
    llm = Llama(model_path=a.gguf, n_ctx=a.l + a.g + 8, n_threads=a.t, n_threads_batch=a.t, n_batch=512,
                verbose=False)
    lines = ["llama.cpp via llama-cpp-python %s vs etx, %s, %d threads, prompt %d, generate %d, medians of %d "
             "after a warm-up, %d alternating rounds" % (llama_cpp.__version__, os.path.basename(a.gguf), a.t,
                                                         a.l, a.g, a.r, a.rounds), "",
             "| round | engine | prefill tok/s | decode tok/s |", "|---|---|---:|---:|"]
    ratios = {"prefill": [], "decode": [], "decode_entropix": []}
    hw = None
    for k in range(1, a.rounds + 1):
        lp, ld = llamacpp_round(llm, a)
        lines.append("| %d | llama.cpp (greedy) | %.1f | %.2f |" % (k, lp, ld))
        print(lines[-1], flush=True)
        if not a.etx:
            continue
        js, g, e = etx_round(a)
        hw = js["hardware"]
        lines.append("| %d | etx greedy | %.1f | %.2f |" % (k, g["prefill_tok_s"], g["decode_tok_s"]))
        lines.append("| %d | etx entropix | %.1f | %.2f |" % (k, e["prefill_tok_s"], e["decode_tok_s"]))
        print("\n".join(lines[-2:]), flush=True)
        ratios["prefill"].append(g["prefill_tok_s"] / lp)
        ratios["decode"].append(g["decode_tok_s"] / ld)
        ratios["decode_entropix"].append(e["decode_tok_s"] / ld)
    if a.etx:
        lines += ["", "etx / llama.cpp (median over rounds; each ratio within one round):",
                  "- prefill (greedy): %.2fx" % statistics.median(ratios["prefill"]),
                  "- decode (greedy vs greedy): %.2fx" % statistics.median(ratios["decode"]),
                  "- decode (etx entropix vs llama.cpp greedy): %.2fx" % statistics.median(ratios["decode_entropix"]),
                  "", "machine floor measured by etx bench: %.1f GB/s (%s), %.1f GFLOP/s (%s)"
                  % (hw["mem_bandwidth_bytes_s"] / 1e9, hw["bandwidth_method"], hw["gemm_flops_s"] / 1e9,
                     hw["gemm_method"])]
    text = "\n".join(lines)
    print("\n" + text)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
