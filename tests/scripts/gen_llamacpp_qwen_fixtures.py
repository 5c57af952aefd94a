#!/usr/bin/env python3
"""gen_llamacpp_qwen_fixtures.py — records llama.cpp's outputs on the evaluation model
(Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, models/fetch_eval_model.sh) and its 0.5B
sibling under tests/fixtures/forward/llamacpp/, read by tests/cpu/test_forward_qwen.c.

Reference: llama.cpp's CPU backend through llama-cpp-python (pinned below), 2 threads,
logits of every position (logits_all). For each prompt:
  - the token ids from llama.cpp's own tokenizer (special tokens parsed: the chat prompts
    hold <|im_start|>/<|im_end|> as single tokens),
  - for 4 of the prompts, a 32-token greedy continuation decoded one token at a time
    (argmax, no EOS stop), with llama.cpp's top-1/top-2 margin at every step,
  - then the whole sequence (prompt + continuation) evaluated at once, and for every
    position: the top-K logits and their ids (descending) and the row's max, mean,
    standard deviation and min over the whole vocabulary. A full row is 151936 floats
    (600 KB); K=20 keeps the fixture at ~70 KB per model.
  - the same sequences once more with llama.cpp's KV cache in f32 instead of f16: how far
    llama.cpp moves its own logits when only that changes (kv_f32_* in the JSON), one of
    the two error sources the C test's bounds must cover (the other is its 8-bit
    activations, Q8_K, in the Q4_K/Q6_K dot products; see the C test).

Prompts: GSM8K-style questions, a coding request and a greeting through the model's chat
template (Qwen2.5's default system message, as `etx generate --chat` renders it), code,
and plain text; not picked for their outputs.

Binary layout of <model>.topk.bin (little-endian), cases in JSON order, positions in
order: per position int32 ids[K], float32 logits[K], float32 stats[4] = max, mean, std, min.

Pinned: llama-cpp-python 0.3.36 (llama.cpp as vendored by it), numpy 2.x.
Setup: pip install llama-cpp-python==0.3.36 numpy   (compiles llama.cpp; takes minutes)
  - with --f32 (after the run above): the model dequantized to a float32 GGUF by llama.cpp's
    own quantize tool (5.8 GB, written to WORKDIR, not kept), run by llama.cpp with an f32
    KV cache on the same sequences: <model>.f32.topk.bin, and in the JSON how far it is
    from llama.cpp on the Q4_K_M file (q8k_*, per position q8k_pos_max/mean over the
    Q4_K_M run's top-K ids): the size of llama.cpp's activation
    quantization and f16 cache together, measured by llama.cpp alone.
Run from the repository root, with the models at models/cache/:
    python3 tests/scripts/gen_llamacpp_qwen_fixtures.py [1.5b] [0.5b]
    python3 tests/scripts/gen_llamacpp_qwen_fixtures.py --f32 /tmp/somewhere [1.5b]
"""
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
REPO = os.path.dirname(ROOT)
OUT = os.path.join(ROOT, "fixtures", "forward", "llamacpp")
CACHE = os.path.join(REPO, "models", "cache")
MODELS = {
    "1.5b": ("qwen25-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf"),
    "0.5b": ("qwen25-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct-AWQ.Q4_K_M.gguf"),
}
N_GEN = 32
K = 20
THREADS = 2
SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def chat(user, system=SYSTEM):
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


GSM = "Solve the problem step by step. End your answer with a line \"#### <number>\".\n\n"
PROMPTS = [  # name, text, greedy continuation recorded
    ("gsm_clips", chat(GSM + "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                       "clips in May. How many clips did Natalia sell altogether in April and May?"), True),
    ("gsm_babysit", chat(GSM + "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
                         "babysitting. How much did she earn?"), True),
    ("chat_code", chat("Write a Python function that checks whether a string is a palindrome."), True),
    ("code", "def quicksort(arr):\n    \"\"\"Sort a list of numbers in ascending order.\"\"\"\n", True),
    ("plain", "The history of computing is a story of abstraction. Early machines were programmed by "
              "rewiring panels and flipping switches; then came stored programs, assemblers, and compilers "
              "that translated arithmetic formulas into machine code. In the next section we describe", False),
    ("chat_hello", chat("Hello! Who are you?"), False),
    ("c_code", "#include <stdio.h>\n\nint main(void) {\n    for (int i = 0; i < 10; i++)\n", False),
]


def make(model_path, type_kv=None):
    kw = dict(model_path=model_path, n_ctx=1024, n_batch=512, n_threads=THREADS, n_threads_batch=THREADS,
              logits_all=True, verbose=False, seed=0)
    if type_kv is not None:
        kw.update(type_k=type_kv, type_v=type_kv)
    return Llama(**kw)


def all_rows(llm, ids):
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:llm.n_tokens], dtype=np.float32)


def run(tag):
    stem, fname = MODELS[tag]
    path = os.path.join(CACHE, fname)
    llm = make(path)
    vocab = llm.n_vocab()
    cases, blob = [], bytearray()
    seqs = []
    for name, text, greedy in PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        gen, margins = [], []
        if greedy:
            llm.reset()
            llm.eval(ids)
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            for _ in range(N_GEN):
                order = np.argsort(-logits, kind="stable")
                tok = int(order[0])
                margins.append(float(logits[order[0]] - logits[order[1]]))
                gen.append(tok)
                llm.eval([tok])
                logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        seq = list(ids) + gen
        seqs.append(seq)
        rows = all_rows(llm, seq)
        assert rows.shape == (len(seq), vocab)
        # the whole-sequence evaluation's own argmax along the continuation (teacher-forced)
        tf = [int(np.argmax(rows[len(ids) - 1 + i])) for i in range(len(gen))]
        for r in rows:
            top = np.argsort(-r, kind="stable")[:K]
            blob += top.astype("<i4").tobytes()
            blob += r[top].astype("<f4").tobytes()
            blob += np.array([r.max(), r.mean(dtype=np.float64), r.std(dtype=np.float64), r.min()],
                             dtype="<f4").tobytes()
        text_out = llm.detokenize(gen).decode("utf-8", errors="replace") if gen else ""
        print(f"{stem} {name}: {len(ids)} prompt tokens" +
              (f", min top-2 margin {min(margins):.4f}, teacher-forced argmax = decode: {tf == gen}, "
               f"-> {text_out!r}" if gen else ""), flush=True)
        cases.append(dict(name=name, ids=[int(i) for i in seq], n_prompt=len(ids), greedy=gen,
                          margins=[round(m, 5) for m in margins],
                          min_margin=round(min(margins), 5) if margins else None,
                          teacher_forced_same=(tf == gen) if gen else None, greedy_text=text_out))
    del llm

    # llama.cpp against itself: KV cache f32 instead of f16, same everything else
    llm32 = make(path, type_kv=0)  # GGML_TYPE_F32
    kv_max, kv_sum, kv_n, kv_top1 = 0.0, 0.0, 0, 0
    off = 0
    rec = 8 * K + 16
    for seq in seqs:
        rows = all_rows(llm32, seq)
        for r in rows:
            top = np.frombuffer(bytes(blob[off:off + 4 * K]), dtype="<i4")
            val = np.frombuffer(bytes(blob[off + 4 * K:off + 8 * K]), dtype="<f4")
            d = np.abs(r[top] - val)
            kv_max = max(kv_max, float(d.max()))
            kv_sum += float(d.mean())
            kv_n += 1
            kv_top1 += int(np.argmax(r)) == int(top[0])
            off += rec
    del llm32
    print(f"{stem}: KV f32 vs f16, over the top-{K}: max |diff| {kv_max:.4f}, mean {kv_sum / kv_n:.4f}, "
          f"argmax same {kv_top1}/{kv_n}", flush=True)

    with open(os.path.join(OUT, stem + ".topk.bin"), "wb") as f:
        f.write(blob)
    meta = dict(model=fname, generator="tests/scripts/gen_llamacpp_qwen_fixtures.py",
                reference=f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, CPU, {THREADS} threads, "
                          f"KV cache f16, numpy {np.__version__}",
                vocab=int(vocab), k=K, topk=stem + ".topk.bin",
                record="per position: int32 ids[k], float32 logits[k], float32 max, mean, std, min",
                n_generated=N_GEN, n_positions=sum(len(s) for s in seqs),
                kv_f32_max_diff=round(kv_max, 5), kv_f32_mean_diff=round(kv_sum / kv_n, 5),
                kv_f32_argmax_same=kv_top1, cases=cases)
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def make_f32(src, dst):
    """llama.cpp's own quantize tool, target F32: every Q4_K/Q6_K tensor dequantized to
    float32 by llama.cpp's dequantization, the metadata unchanged."""
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = 0  # LLAMA_FTYPE_ALL_F32
    p.allow_requantize = True
    p.nthread = THREADS
    assert llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p) == 0


def run_f32(tag, workdir):
    """llama.cpp on the dequantized model (float32 weights, so float32 activations: no Q8_K)
    with an f32 KV cache, on the sequences run() recorded: <stem>.f32.topk.bin, the same
    layout, and how far it is from llama.cpp on the quantized model (q8k_* in the JSON)."""
    stem, fname = MODELS[tag]
    dst = os.path.join(workdir, stem + ".f32.gguf")
    if not os.path.exists(dst):
        make_f32(os.path.join(CACHE, fname), dst)
    with open(os.path.join(OUT, stem + ".json")) as f:
        meta = json.load(f)
    with open(os.path.join(OUT, stem + ".topk.bin"), "rb") as f:
        ref = f.read()
    k = meta["k"]
    rec = 8 * k + 16
    llm = make(dst, type_kv=0)
    blob, off = bytearray(), 0
    dmax, dsum, n, top1, top5 = 0.0, 0.0, 0, 0, 0
    pos_max, pos_mean = [], []  # per position, over the Q4_K_M run's top-k ids
    for c in meta["cases"]:
        rows = all_rows(llm, c["ids"])
        for r in rows:
            top = np.argsort(-r, kind="stable")[:k]
            blob += top.astype("<i4").tobytes()
            blob += r[top].astype("<f4").tobytes()
            blob += np.array([r.max(), r.mean(dtype=np.float64), r.std(dtype=np.float64), r.min()],
                             dtype="<f4").tobytes()
            qid = np.frombuffer(ref[off:off + 4 * k], dtype="<i4")
            qval = np.frombuffer(ref[off + 4 * k:off + 8 * k], dtype="<f4")
            d = np.abs(r[qid] - qval)
            pos_max.append(round(float(d.max()), 5))
            pos_mean.append(round(float(d.mean()), 5))
            dmax = max(dmax, float(d.max()))
            dsum += float(d.mean())
            n += 1
            top1 += int(top[0]) == int(qid[0])
            top5 += len(set(top[:5].tolist()) & set(qid[:5].tolist()))
            off += rec
    with open(os.path.join(OUT, stem + ".f32.topk.bin"), "wb") as f:
        f.write(blob)
    meta.update(f32_topk=stem + ".f32.topk.bin",
                f32_reference="llama.cpp on the model dequantized to F32 by its quantize tool, KV cache f32",
                q8k_max_diff=round(dmax, 5), q8k_mean_diff=round(dsum / n, 5), q8k_argmax_same=top1,
                q8k_top5_mean=round(top5 / n, 4), q8k_pos_max=pos_max, q8k_pos_mean=pos_mean)
    print(f"{stem}: llama.cpp F32 vs Q4_K_M over the Q4_K_M top-{k}: max |diff| {dmax:.4f}, mean {dsum / n:.4f}, "
          f"argmax same {top1}/{n}, top-5 shared {top5 / n:.3f}", flush=True)
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    args = sys.argv[1:]
    if args[:1] == ["--f32"]:  # --f32 WORKDIR [tags]: after run(), the float32 reference
        for tag in args[2:] or ["1.5b"]:
            run_f32(tag, args[1])
        return
    for tag in args or ["1.5b", "0.5b"]:
        run(tag)


if __name__ == "__main__":
    main()
