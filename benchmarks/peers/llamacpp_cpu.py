#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) beside `etx bench` on the CPU: the same GGUF, the
same thread count, the same work, at the same batch sizes, in alternating rounds so the
machine's drift hits both.

Work (what `etx bench` runs): B prompts of L ids (prompt b, position i: 1000 +
(37 i + 101 b) mod (V - 1000)); then G greedy tokens each (EOS ignored).
  prefill tok/s = B L / T1, T1 = evaluating every prompt and taking each first token;
  decode tok/s  = B (G - 1) / (T - T1), one forward of B rows per further token.
llama.cpp runs through llama-cpp-python's low-level API, as its batched examples do: one
context with n_seq_max = B and a unified KV cache, the prompts submitted together as one
batch of sequences (split at n_batch tokens), then one llama_decode of B tokens (one per
sequence, each with its logits) per step; greedy by numpy argmax of each row. Medians of
R repeats after one warm-up, the KV cache cleared before each. etx: `etx bench -b LIST -r R
--policy greedy,entropix`; greedy is compared with llama.cpp's greedy, etx's entropix row
shows what the adaptive policy costs on top.

usage: python3 benchmarks/peers/llamacpp_cpu.py [--etx build-rel/etx] [-t 2] [-l 128] [-g 64]
           [-b 1,8,32] [-r 3] [--rounds 2] [--gguf PATH] [--md FILE]
needs: pip install llama-cpp-python numpy
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers_common as pc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LlamaCppBatched:
    """One llama.cpp context for up to B sequences, driven through the low-level API."""

    def __init__(self, lc, gguf, threads, max_batch, n_ctx):
        self.lc = lc
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(gguf.encode(), lc.llama_model_default_params())
        if not self.model:
            sys.exit("llama.cpp could not load %s" % gguf)
        cp = lc.llama_context_default_params()
        cp.n_ctx, cp.n_seq_max = n_ctx, max_batch
        cp.n_batch = cp.n_ubatch = 512
        cp.n_threads = cp.n_threads_batch = threads
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            sys.exit("llama.cpp could not create a context (n_ctx %d, %d sequences)" % (n_ctx, max_batch))
        self.n_batch = lc.llama_n_batch(self.ctx)
        self.vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.batch = lc.llama_batch_init(self.n_batch, 0, max_batch)

    def decode(self, entries):
        """entries: (token, position, sequence, wants logits); returns their logits rows."""
        lc, b = self.lc, self.batch
        rows = []
        for start in range(0, len(entries), self.n_batch):
            part = entries[start:start + self.n_batch]
            b.n_tokens = len(part)
            for i, (tok, pos, seq, out) in enumerate(part):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, out
                b.seq_id[i][0] = seq
            rc = lc.llama_decode(self.ctx, b)
            if rc != 0:
                sys.exit("llama_decode failed (%d)" % rc)
            rows += [np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, i), shape=(self.vocab,))
                     for i, e in enumerate(part) if e[3]]
        return rows

    def run(self, B, L, G):
        """(T1, T) for B prompts: every first token, and all G tokens."""
        self.lc.llama_memory_clear(self.lc.llama_get_memory(self.ctx), True)
        v = self.vocab
        t0 = time.perf_counter()
        rows = self.decode([(ids[i], i, b, i == L - 1)
                            for b, ids in enumerate(pc.prompt_ids(B, L, v)) for i in range(L)])
        toks = [int(r.argmax()) for r in rows]
        t1 = time.perf_counter()
        for j in range(1, G):
            rows = self.decode([(toks[b], L + j - 1, b, True) for b in range(B)])
            toks = [int(r.argmax()) for r in rows]
        return t1 - t0, time.perf_counter() - t0


def llamacpp_round(eng, a, B):
    pre, dec = [], []
    for r in range(a.r + 1):  # the first is the warm-up
        t1, t = eng.run(B, a.l, a.g)
        if r:
            pre.append(B * a.l / t1)
            dec.append(B * (a.g - 1) / (t - t1))
    return statistics.median(pre), statistics.median(dec)


def etx_round(a):
    js = pc.run_etx_bench(a.etx, a.gguf, "cpu", a.batches, a.l, a.g, a.r, "greedy,entropix", ["-t", str(a.t)],
                          quiet=True)
    return js, {(r["batch"], r["policy"]): r for r in js["results"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", type=int, default=2, help="threads, both engines")
    ap.add_argument("-l", type=int, default=128, help="prompt tokens")
    ap.add_argument("-g", type=int, default=64, help="generated tokens (>= 2)")
    ap.add_argument("-b", default="1,8,32", help="batch sizes (prompts run together)")
    ap.add_argument("-r", type=int, default=3, help="timed repeats per round (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of llama.cpp then etx")
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--etx", help="etx binary (without it only llama.cpp runs)")
    ap.add_argument("--md", help="also write the markdown to this file")
    a = ap.parse_args()
    try:
        batches = a.batches = [int(x) for x in a.b.split(",")]
    except ValueError:
        ap.error("-b: integers separated by commas, got %r" % a.b)
    if a.t < 1 or a.l < 1 or a.g < 2 or a.r < 1 or a.rounds < 1 or min(batches) < 1:
        ap.error("need -t >= 1, -l >= 1, -g >= 2, -r >= 1, --rounds >= 1, batches >= 1")
    if not os.path.exists(a.gguf):
        sys.exit("no model at %s (models/fetch_default_model.sh fetches it)" % a.gguf)
    import llama_cpp
    # llama.cpp logs every load to stderr; keep only the script's output
    quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p())
    eng = LlamaCppBatched(llama_cpp, a.gguf, a.t, max(batches), max(batches) * (a.l + a.g) + 64)
    lines = ["llama.cpp via llama-cpp-python %s vs etx, %s, %d threads, prompt %d, generate %d, batches %s, "
             "medians of %d after a warm-up, %d alternating rounds"
             % (llama_cpp.__version__, os.path.basename(a.gguf), a.t, a.l, a.g, a.b, a.r, a.rounds), "",
             "| round | batch | engine | prefill tok/s | decode tok/s |", "|---|---:|---|---:|---:|"]
    ratios = {}  # (batch, what) -> [ratio per round]
    hw = None
    for k in range(1, a.rounds + 1):
        base = {}
        for B in batches:
            base[B] = llamacpp_round(eng, a, B)
            lines.append("| %d | %d | llama.cpp (greedy) | %.1f | %.2f |" % (k, B, base[B][0], base[B][1]))
            print(lines[-1], flush=True)
        if not a.etx:
            continue
        js, rows = etx_round(a)
        hw = js["hardware"]
        for B in batches:
            g, e = rows[(B, "greedy")], rows[(B, "entropix")]
            lines.append("| %d | %d | etx greedy | %.1f | %.2f |" % (k, B, g["prefill_tok_s"], g["decode_tok_s"]))
            lines.append("| %d | %d | etx entropix | %.1f | %.2f |" % (k, B, e["prefill_tok_s"], e["decode_tok_s"]))
            print("\n".join(lines[-2:]), flush=True)
            lp, ld = base[B]
            ratios.setdefault((B, "prefill"), []).append(g["prefill_tok_s"] / lp)
            ratios.setdefault((B, "decode"), []).append(g["decode_tok_s"] / ld)
            ratios.setdefault((B, "decode_entropix"), []).append(e["decode_tok_s"] / ld)
    if a.etx:
        lines += ["", "etx / llama.cpp (median over rounds; each ratio within one round):", "",
                  "| batch | prefill (greedy) | decode (greedy vs greedy) | decode (etx entropix vs llama.cpp greedy) |",
                  "|---:|---:|---:|---:|"]
        for B in batches:
            lines.append("| %d | %.2fx | %.2fx | %.2fx |" % (B, statistics.median(ratios[(B, "prefill")]),
                                                         statistics.median(ratios[(B, "decode")]),
                                                         statistics.median(ratios[(B, "decode_entropix")])))
        lines += ["", "machine floor measured by etx bench: %.1f GB/s (%s), %.1f GFLOP/s (%s)"
                  % (hw["mem_bandwidth_bytes_s"] / 1e9, hw["bandwidth_method"], hw["gemm_flops_s"] / 1e9,
                     hw["gemm_method"])]
    text = "\n".join(lines)
    print("\n" + text)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
