#!/usr/bin/env python3
"""gen_loader_fixtures.py — writes the fixtures of tests/model/test_loader.c into
tests/fixtures/loader/, with writers etx did not write: the `gguf` package (GGUFWriter,
gguf.quants), the `safetensors` package and Hugging Face `tokenizers`.

    pip install numpy gguf safetensors tokenizers
    python3 tests/scripts/gen_loader_fixtures.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

Files:
  types.gguf          one tensor per ggml type etx reads ("q.<TYPE>", 3 x 256) and, beside
                      it, "ref.<TYPE>" (F32): what gguf-py's dequantize gives for it; plus
                      metadata of every value type and general.alignment = 64.
  tiny.gguf           a 2-layer Llama (dim 64, 4 heads, 2 KV heads, FFN 96, vocab 288), its
                      weights quantized to several types, Q/K rows permuted as llama.cpp's
                      convert_hf_to_gguf.py does, untied output, a byte-level BPE tokenizer.
  tiny_llama3.gguf    tiny.gguf plus rope_freqs.weight: llama3 RoPE scaling (factor 8,
                      low 1, high 4, original context 64) as llama.cpp's converter stores it.
  tiny_hf/            the same model as a Hugging Face directory: config.json,
                      model.safetensors (float32: exactly the values tiny.gguf dequantizes
                      to, in Hugging Face layout), tokenizer.json.
  tiny_hf_sharded/    the same weights rounded to bf16/f16/f32 (per tensor), in two shards
                      with model.safetensors.index.json, tied embeddings (no lm_head),
                      llama3 rope_scaling, eos_token_id as a list.
  smollm2_rows.gguf   (only with the model path) rows of the default model's token_embd
                      dequantized by gguf-py, to check etx's dequantization of the real file.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "loader")
rng = np.random.default_rng(1234)

# ---------------------------------------------------------------------------- types.gguf

# K-quant blocks: gguf-py cannot quantize these, so the blocks are random bytes with
# sane f16 scales in place; gguf-py's dequantize gives the reference values.
K_BLOCK = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}


def random_k_blocks(qtype, rows, cols):
    nb = cols // 256
    raw = rng.integers(0, 256, size=(rows, nb, K_BLOCK[qtype]), dtype=np.uint8)
    if qtype == Q.Q6_K:  # ... i8 scales[16], f16 d (last two bytes)
        d = rng.uniform(0.001, 0.01, size=(rows, nb)).astype(np.float16)
        raw[:, :, 208:210] = d.view(np.uint8).reshape(rows, nb, 2)
    else:  # f16 d, f16 dmin, ...
        dd = rng.uniform(0.001, 0.02, size=(rows, nb, 2)).astype(np.float16)
        raw[:, :, 0:4] = dd.view(np.uint8).reshape(rows, nb, 4)
    return raw.reshape(rows, nb * K_BLOCK[qtype])


def write_types():
    w = gguf.GGUFWriter(os.path.join(OUT, "types.gguf"), "llama")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 10000000000)
    w.add_int64("test.i64", -10000000000)
    w.add_float32("test.f32", 1.5)
    w.add_float64("test.f64", -2.25)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "hello, gguf")
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_str", ["a", "bc", ""])
    w.add_array("test.arr_f32", [0.5, 0.25])
    rows, cols = 3, 256
    for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        if qtype in K_BLOCK:
            data = random_k_blocks(qtype, rows, cols)
        else:
            data = quantize(x, qtype)
        ref = dequantize(data, qtype).astype(np.float32)
        assert ref.shape == (rows, cols)
        if qtype == Q.F32:
            w.add_tensor("q." + qtype.name, data)
        else:
            w.add_tensor("q." + qtype.name, data, raw_dtype=qtype)
        w.add_tensor("ref." + qtype.name, ref)
    w.add_tensor("vec.F32", np.arange(5, dtype=np.float32))
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

# ---------------------------------------------------------------------------- tokenizer


def bytes_to_unicode():
    # GPT-2's byte-level alphabet: printable bytes map to themselves, the rest to 256+
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
N_MERGES = 29  # vocab = 3 + 256 + 29 = 288


def make_vocab():
    b2u = bytes_to_unicode()
    tokens = SPECIALS + [b2u[b] for b in range(256)]
    text = "the cat sat on the mat. the theme then thinks that this is the thing there. " * 3
    words = [[b2u[b] for b in (" " + w if i else w).encode()] for i, w in enumerate(text.split(" ")) if w]
    merges = []
    while len(merges) < N_MERGES:  # a few rounds of plain BPE training
        counts = {}
        for wd in words:
            for a, b in zip(wd, wd[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        best = max(sorted(counts), key=lambda p: counts[p])
        merges.append(best)
        tokens.append(best[0] + best[1])
        for wd in words:
            i = 0
            while i < len(wd) - 1:
                if (wd[i], wd[i + 1]) == best:
                    wd[i:i + 2] = [best[0] + best[1]]
                i += 1
    return tokens, merges


def write_tokenizer_json(path, tokens, merges):
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tok.save(path)

# ---------------------------------------------------------------------------- tiny model

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS = 64, 96, 2, 4, 2
HEAD_DIM = DIM // HEADS

# tensor (Hugging Face name suffix, GGUF name suffix, shape (out, in), GGUF type)
LAYER_TENSORS = [
    ("input_layernorm", "attn_norm", (DIM,), Q.F32),
    ("self_attn.q_proj", "attn_q", (HEADS * HEAD_DIM, DIM), Q.Q4_1),
    ("self_attn.k_proj", "attn_k", (KV_HEADS * HEAD_DIM, DIM), Q.Q4_0),
    ("self_attn.v_proj", "attn_v", (KV_HEADS * HEAD_DIM, DIM), Q.Q5_0),
    ("self_attn.o_proj", "attn_output", (DIM, HEADS * HEAD_DIM), Q.Q5_1),
    ("post_attention_layernorm", "ffn_norm", (DIM,), Q.F32),
    ("mlp.gate_proj", "ffn_gate", (HIDDEN, DIM), Q.Q8_0),
    ("mlp.up_proj", "ffn_up", (HIDDEN, DIM), Q.F16),
    ("mlp.down_proj", "ffn_down", (DIM, HIDDEN), Q.BF16),
]


def llama_cpp_permute(w, n_head):
    # convert_hf_to_gguf.py's LlamaModel.permute: rotate-half rows -> interleaved pairs
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_tensors():
    """[(hf_name, gguf_name, hf_values (what etx must load), gguf_data, qtype)]"""
    out = []

    def add(hf, gg, shape, qtype, permute_heads=0):
        x = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if len(shape) == 1:
            x = 1.0 + x
        data = x if qtype == Q.F32 else quantize(x, qtype)
        ref = x if qtype == Q.F32 else dequantize(data, qtype).astype(np.float32)
        if permute_heads:  # quantization is per row, so permuting the quantized rows is exact
            data = llama_cpp_permute(data, permute_heads)
        out.append((hf, gg, ref, data, qtype))

    add("model.embed_tokens.weight", "token_embd.weight", (288, DIM), Q.Q8_0)
    for l in range(LAYERS):
        for hf, gg, shape, qtype in LAYER_TENSORS:
            heads = HEADS if gg == "attn_q" else KV_HEADS if gg == "attn_k" else 0
            add(f"model.layers.{l}.{hf}.weight", f"blk.{l}.{gg}.weight", shape, qtype, heads)
    add("model.norm.weight", "output_norm.weight", (DIM,), Q.F32)
    add("lm_head.weight", "output.weight", (288, DIM), Q.Q4_0)
    return out


def llama3_rope_divisors(theta, dim, factor, low, high, orig):
    # what llama.cpp's converter stores as rope_freqs.weight for rope_type llama3: the
    # divisor Hugging Face's _compute_llama3_parameters applies to each RoPE frequency
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / theta ** (i / dim)
        wavelen = 2 * np.pi / freq
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_tiny_gguf(tensors, tokens, merges, name="tiny.gguf", rope_freqs=None):
    w = gguf.GGUFWriter(os.path.join(OUT, name), "llama")
    w.add_name("etx tiny loader fixture")
    w.add_uint32("llama.context_length", 256)
    w.add_uint32("llama.embedding_length", DIM)
    w.add_uint32("llama.feed_forward_length", HIDDEN)
    w.add_uint32("llama.block_count", LAYERS)
    w.add_uint32("llama.attention.head_count", HEADS)
    w.add_uint32("llama.attention.head_count_kv", KV_HEADS)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32("llama.rope.freq_base", 100000.0)
    w.add_uint32("llama.rope.dimension_count", HEAD_DIM)
    w.add_uint32("llama.vocab_size", len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges([a + " " + b for a, b in merges])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for _, gg, _, data, qtype in tensors:
        if qtype == Q.F32:
            w.add_tensor(gg, data)
        else:
            w.add_tensor(gg, data, raw_dtype=qtype)
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", rope_freqs)
    finish(w)


def hf_config(**extra):
    c = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": DIM, "intermediate_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "vocab_size": 288, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    c.update(extra)
    return c


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_tiny_hf(tensors, tokens, merges):
    d = os.path.join(OUT, "tiny_hf")
    os.makedirs(d, exist_ok=True)
    save_file({hf: ref for hf, _, ref, _, _ in tensors}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})
    write_json(os.path.join(d, "config.json"), hf_config())
    write_tokenizer_json(os.path.join(d, "tokenizer.json"), tokens, merges)


def round_bf16(x):
    # float32 -> bfloat16 bits, round to nearest even (as torch does), kept as uint16
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def write_tiny_hf_sharded(tensors, tokens, merges):
    d = os.path.join(OUT, "tiny_hf_sharded")
    os.makedirs(d, exist_ok=True)
    shards = [{}, {}]
    weight_map = {}
    for i, (hf, _, ref, _, _) in enumerate(tensors):
        if hf == "lm_head.weight":
            continue  # tied
        kind = i % 3
        if kind == 0:
            v = ref.astype(np.float16)
        elif kind == 1:
            v = ref.astype(np.float32)
        else:
            v = round_bf16(ref)
        shard = 0 if i < len(tensors) // 2 else 1
        shards[shard][hf] = (v, kind)
        weight_map[hf] = f"model-0000{shard + 1}-of-00002.safetensors"
    for s, items in enumerate(shards):
        path = os.path.join(d, f"model-0000{s + 1}-of-00002.safetensors")
        save_file({k: v for k, (v, kind) in items.items()}, path, metadata={"format": "pt"})
        patch_bf16(path, [k for k, (v, kind) in items.items() if kind == 2])
    write_json(os.path.join(d, "model.safetensors.index.json"), {"metadata": {}, "weight_map": weight_map})
    write_json(os.path.join(d, "config.json"), hf_config(
        tie_word_embeddings=True, head_dim=HEAD_DIM, eos_token_id=[2, 0],
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}))
    write_tokenizer_json(os.path.join(d, "tokenizer.json"), tokens, merges)


def patch_bf16(path, names):
    # numpy has no bfloat16: the tensors were saved as U16 holding bf16 bits; relabel them
    # "BF16" in the header (same size, so every offset stays valid).
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    for k in names:
        assert header[k]["dtype"] == "U16"
        header[k]["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))
    assert len(text) == n
    with open(path, "wb") as f:
        f.write(raw[:8] + text + raw[8 + n:])

# ---------------------------------------------------------------------------- default model


def write_smollm2_rows(model_path):
    r = gguf.GGUFReader(model_path)
    tensors = {t.name: t for t in r.tensors}

    def rows_of(name, rows):
        t = tensors[name]
        return dequantize(np.asarray(t.data)[rows], t.tensor_type).astype(np.float32)

    w = gguf.GGUFWriter(os.path.join(OUT, "smollm2_rows.gguf"), "llama")
    w.add_string("source", os.path.basename(model_path))
    # token_embd (Q8_0) and ffn_down (Q4_1) rows as stored
    rows = [0, 1, 2, 100, 12345, 49151]
    w.add_array("rows", rows)
    w.add_tensor("token_embd_rows", rows_of("token_embd.weight", rows))
    down_rows = [0, 1, 575]
    w.add_array("down_rows", down_rows)
    w.add_tensor("ffn_down_rows", rows_of("blk.0.ffn_down.weight", down_rows))
    # attn_q (Q4_1) in Hugging Face order: undo llama_cpp_permute (9 heads of 64 rows)
    q = rows_of("blk.0.attn_q.weight", list(range(576)))
    q_hf = q.reshape(9, 32, 2, 576).swapaxes(1, 2).reshape(576, 576)
    assert np.array_equal(llama_cpp_permute(q_hf, 9), q)
    q_rows = [0, 1, 31, 32, 33, 63, 64, 575]
    w.add_array("q_rows", q_rows)
    w.add_tensor("attn_q_hf_rows", q_hf[q_rows])
    finish(w)


def main():
    os.makedirs(OUT, exist_ok=True)
    write_types()
    tokens, merges = make_vocab()
    tensors = tiny_tensors()
    write_tiny_gguf(tensors, tokens, merges)
    # the same model with llama3 RoPE scaling as tiny_hf_sharded's config has it
    write_tiny_gguf(tensors, tokens, merges, "tiny_llama3.gguf",
                    llama3_rope_divisors(100000.0, HEAD_DIM, 8.0, 1.0, 4.0, 64))
    write_tiny_hf(tensors, tokens, merges)
    write_tiny_hf_sharded(tensors, tokens, merges)
    if len(sys.argv) > 1:
        write_smollm2_rows(sys.argv[1])


if __name__ == "__main__":
    main()
