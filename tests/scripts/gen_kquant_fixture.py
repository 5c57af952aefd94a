#!/usr/bin/env python3
"""gen_kquant_fixture.py — writes tests/fixtures/loader/tiny_kquant.gguf: a 2-layer Llama
(dim 256, 4 heads of 64, 2 KV heads, FFN 512, vocab 288) whose matrices are stored the way
llama.cpp's Q4_K_M mix stores them (Q4_K, Q6_K for attn_v / ffn_down / output) plus one
Q5_K, one Q5_0 and one Q8_0 matrix, norms in F32. The tokenizer and its metadata are
copied from tiny.gguf. Read by tests/cpu/test_quant_matvec.c (memory held ~ file size,
decode on the blocks vs float32, prefill unchanged).

    pip install numpy gguf
    python3 tests/scripts/gen_kquant_fixture.py

gguf-py cannot quantize K-quants, so the weights are random blocks written directly in
ggml's layouts (random codes and sub-block scales, f16 super-block scales chosen so the
weights are ~0.01-0.1): random weights, quantized by construction. Deterministic.
"""
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "loader")
rng = np.random.default_rng(20261203)

DIM, FF, LAYERS, HEADS, KV_HEADS = 256, 512, 2, 4, 2
HD = DIM // HEADS

# (elements, bytes) per block
BLOCK = {Q.Q4_K: (256, 144), Q.Q5_K: (256, 176), Q.Q6_K: (256, 210), Q.Q5_0: (32, 22), Q.Q8_0: (32, 34)}


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_blocks(qtype, rows, cols):
    """rows x cols weights as random blocks of qtype: (rows, row_bytes) uint8."""
    be, bb = BLOCK[qtype]
    nb = rows * (cols // be)
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    if qtype in (Q.Q4_K, Q.Q5_K):  # f16 d, f16 dmin, u8 scales[12], ...: w = d*sc*q - dmin*m
        d = rng.uniform(2e-5, 1e-4, size=nb)
        qmax = 15 if qtype == Q.Q4_K else 31
        raw[:, 0:2] = f16_bytes(d).reshape(nb, 2)
        raw[:, 2:4] = f16_bytes(d * qmax / 2).reshape(nb, 2)  # centres d*sc*q about d*sc*qmax/2
        # scales: 6-bit scale and min of equal size per sub-block, so the mean is ~0
        sc = rng.integers(16, 64, size=(nb, 8)).astype(np.uint8)
        packed = np.zeros((nb, 12), dtype=np.uint8)
        for j in range(8):
            if j < 4:
                packed[:, j] = sc[:, j]
                packed[:, j + 4] = sc[:, j]
            else:
                packed[:, j + 4] = (sc[:, j] & 0xF) | ((sc[:, j] & 0xF) << 4)
                packed[:, j - 4] |= (sc[:, j] >> 4) << 6
                packed[:, j] |= (sc[:, j] >> 4) << 6
        raw[:, 4:16] = packed
    elif qtype == Q.Q6_K:  # ql[128], qh[64], i8 scales[16], f16 d: w = d*sc*(q-32)
        raw[:, 192:208] = rng.integers(-64, 64, size=(nb, 16)).astype(np.int8).view(np.uint8)
        raw[:, 208:210] = f16_bytes(rng.uniform(2e-5, 5e-5, size=nb)).reshape(nb, 2)
    elif qtype == Q.Q5_0:  # f16 d, qh[4], qs[16]: w = (q-16)*d
        raw[:, 0:2] = f16_bytes(rng.uniform(1e-3, 5e-3, size=nb)).reshape(nb, 2)
    else:  # Q8_0: f16 d, i8 qs[32]: w = q*d
        raw[:, 0:2] = f16_bytes(rng.uniform(1e-4, 5e-4, size=nb)).reshape(nb, 2)
    return raw.reshape(rows, (cols // be) * bb)


def main():
    src = gguf.GGUFReader(os.path.join(OUT, "tiny.gguf"))
    fields = src.fields
    tokens = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in fields["tokenizer.ggml.tokens"].data]
    merges = [bytes(fields["tokenizer.ggml.merges"].parts[i]).decode("utf-8")
              for i in fields["tokenizer.ggml.merges"].data]
    token_type = [int(fields["tokenizer.ggml.token_type"].parts[i][0]) for i in fields["tokenizer.ggml.token_type"].data]
    pre = bytes(fields["tokenizer.ggml.pre"].parts[fields["tokenizer.ggml.pre"].data[0]]).decode("utf-8")
    vocab = len(tokens)

    w = gguf.GGUFWriter(os.path.join(OUT, "tiny_kquant.gguf"), "llama")
    w.add_name("tiny-kquant")
    w.add_context_length(256)
    w.add_embedding_length(DIM)
    w.add_feed_forward_length(FF)
    w.add_block_count(LAYERS)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(token_type)
    w.add_token_merges(merges)
    for key, add in (("tokenizer.ggml.bos_token_id", w.add_bos_token_id),
                     ("tokenizer.ggml.eos_token_id", w.add_eos_token_id)):
        if key in fields:
            add(int(fields[key].parts[fields[key].data[0]][0]))

    def matrix(name, qtype, rows, cols):
        w.add_tensor(name, random_blocks(qtype, rows, cols), raw_dtype=qtype)

    def norm(name):
        w.add_tensor(name, rng.uniform(0.8, 1.2, size=DIM).astype(np.float32))

    matrix("token_embd.weight", Q.Q4_K, vocab, DIM)
    for l in range(LAYERS):
        p = f"blk.{l}."
        norm(p + "attn_norm.weight")
        matrix(p + "attn_q.weight", Q.Q4_K, DIM, DIM)
        matrix(p + "attn_k.weight", Q.Q5_0 if l == 1 else Q.Q4_K, KV_HEADS * HD, DIM)
        matrix(p + "attn_v.weight", Q.Q6_K, KV_HEADS * HD, DIM)
        matrix(p + "attn_output.weight", Q.Q8_0 if l == 1 else Q.Q4_K, DIM, DIM)
        norm(p + "ffn_norm.weight")
        matrix(p + "ffn_gate.weight", Q.Q4_K, FF, DIM)
        matrix(p + "ffn_up.weight", Q.Q4_K, FF, DIM)
        matrix(p + "ffn_down.weight", Q.Q5_K if l == 1 else Q.Q6_K, DIM, FF)
    norm("output_norm.weight")
    matrix("output.weight", Q.Q6_K, vocab, DIM)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
