#!/usr/bin/env python3
"""gen_hf_fixtures.py — builds the tiny Hugging Face Llama models under
tests/fixtures/models/ and records transformers' logits for them under
tests/fixtures/forward/hf/ (read by tests/cpu/test_forward.c).

Reference: transformers' LlamaForCausalLM, float32, attn_implementation="eager", CPU.
Each model has fixed pseudo-random weights (torch.manual_seed), scaled so activations
are O(1) and logits spread over several units. Models:

  tiny-llama-gqa     4 query / 2 KV heads, untied LM head, float32, one safetensors file
  tiny-llama-tied    tied embeddings, 6 / 3 heads, 3 layers, saved in bfloat16 (the
                     reference runs in float32 on exactly the bf16 values)
  tiny-llama3-rope   rope_scaling llama3 (factor 8, low 1, high 4, original 32),
                     head_dim 48 != hidden/heads, float32 sharded into 2 files with
                     model.safetensors.index.json; sequences run past position 32
  tiny-llama-tp      8 query / 4 KV heads, 192 hidden units, vocabulary 330: splits
                     evenly over 2 and 4 tensor-parallel shards but for the LM head
                     (83 + 83 + 83 + 81 ids), for tests/cuda/test_tp.c

`--only NAME` builds that model alone (the others' files stay as committed).

Each directory also gets a tokenizer.json: a byte-level BPE (Llama-3 style pre-tokenizer
regex, byte-level alphabet, Llama-3 special tokens) trained with the `tokenizers` library
on a paragraph of text to exactly the model's vocabulary size. config.json is written in
the classic layout of Llama 3.x checkpoints (rope_theta and rope_scaling at the top), and
the logits are computed after reloading each directory from disk with from_pretrained,
so the fixture is what transformers makes of the files as they are.

Output: forward/hf/<model>.json lists, per case, the token ids, the logits file and its
shape; <model>_<i>.bin holds the logits of every position, (n, vocab) little-endian
float32, row-major.

With --gguf, it also runs transformers on the default GGUF model (SmolLM2-135M-Instruct
Q4_1, loaded by transformers' own GGUF reader, which dequantizes to float32 and undoes
the Q/K permutation) for some of the prompts of forward/llamacpp/smollm2.json (same token
ids): forward/hf/smollm2-gguf.json + .bin hold the last-position logits and a 32-token
greedy continuation with its top-2 margins. This is the tight float32 reference for the
real model (the llama.cpp fixtures differ from float32 by llama.cpp's 8-bit activations).
It needs `pip install gguf accelerate` as well, and the llama.cpp fixtures first.

Setup that worked (Python 3.11, CPU only):
    python3 -m venv /tmp/hfenv
    /tmp/hfenv/bin/pip install torch transformers safetensors tokenizers numpy
(the PyPI torch wheel pulls the CUDA runtime packages; it imports and runs fine on a
machine without a GPU). Then, from the repository root:
    /tmp/hfenv/bin/python tests/scripts/gen_hf_fixtures.py [--gguf]
"""
import copy
import json
import os
import shutil
import sys

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
MODELS = os.path.join(ROOT, "fixtures", "models")
OUT = os.path.join(ROOT, "fixtures", "forward", "hf")

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEXT = """The quick brown fox jumps over the lazy dog. A language model reads a sequence of
tokens and predicts the next one: it embeds each token, mixes information across positions
with attention, transforms every position with a small network, and finally scores every
word of its vocabulary. Rotary position embeddings rotate pairs of query and key features by
an angle that grows with the position, so that attention scores depend on the distance
between tokens. Grouped-query attention lets several query heads share one key/value head,
which shrinks the cache of keys and values kept while generating. Numbers such as 3.14159,
2718 and 1,000,000 appear in text too; so do names like Ada Lovelace, Alan Turing and Grace
Hopper, and punctuation -- commas, semicolons; colons: and (parentheses) [brackets] {braces}.
Entropy measures how unsure the model is; varentropy measures how that uncertainty varies.
"""

CONFIGS = [
    dict(name="tiny-llama-gqa", seed=1, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=320,
         tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=128,
         rope_scaling=None, dtype="float32", shard=None, lengths=[12, 27, 40]),
    dict(name="tiny-llama-tied", seed=2, hidden_size=96, intermediate_size=192, num_hidden_layers=3,
         num_attention_heads=6, num_key_value_heads=3, head_dim=16, vocab_size=352,
         tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-6, max_position_embeddings=128,
         rope_scaling=None, dtype="bfloat16", shard=None, lengths=[10, 33]),
    dict(name="tiny-llama3-rope", seed=3, hidden_size=128, intermediate_size=192, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, head_dim=48, vocab_size=384,
         tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=256,
         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                           original_max_position_embeddings=32),
         dtype="float32", shard="800KB", lengths=[16, 40, 70]),
    dict(name="tiny-llama-tp", seed=4, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
         num_attention_heads=8, num_key_value_heads=4, head_dim=16, vocab_size=330,
         tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=128,
         rope_scaling=None, dtype="float32", shard=None, lengths=[12, 30]),
]


def build_tokenizer(vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT] * 4, trainer=trainer)
    if tok.get_vocab_size() != vocab_size:
        sys.exit(f"tokenizer has {tok.get_vocab_size()} tokens, wanted {vocab_size}: add text")
    return tok


def init_weights(model, cfg):
    g = torch.Generator().manual_seed(cfg["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:  # tied: also the LM head, so keep logits O(several)
                p.copy_((0.3 if cfg["tie_word_embeddings"] else 1.0) * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[1]
                scale = 1.0 / fan_in ** 0.5
                if name.endswith(("q_proj.weight", "k_proj.weight")):
                    scale *= 2.0  # sharper attention than uniform
                if name.endswith("lm_head.weight"):
                    scale *= 3.0  # logits spread over several units
                p.copy_(scale * torch.randn(p.shape, generator=g))
        if cfg["dtype"] == "bfloat16":  # the reference runs on exactly the stored values
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))


def classic_config(cfg, tok):
    """config.json as Llama 3.x checkpoints ship it."""
    c = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
             hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
             num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
             num_key_value_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"],
             vocab_size=cfg["vocab_size"], max_position_embeddings=cfg["max_position_embeddings"],
             rms_norm_eps=cfg["rms_norm_eps"], rope_theta=cfg["rope_theta"], rope_scaling=cfg["rope_scaling"],
             tie_word_embeddings=cfg["tie_word_embeddings"], attention_bias=False, mlp_bias=False,
             bos_token_id=tok.token_to_id("<|begin_of_text|>"),
             eos_token_id=[tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")],
             torch_dtype=cfg["dtype"], initializer_range=0.02, attention_dropout=0.0, pretraining_tp=1,
             use_cache=True)
    if cfg["rope_scaling"] is None:
        del c["rope_scaling"]
    return c


def make_model(cfg):
    d = os.path.join(MODELS, cfg["name"])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tok = build_tokenizer(cfg["vocab_size"])
    tok.save(os.path.join(d, "tokenizer.json"))
    conf = classic_config(cfg, tok)
    torch.manual_seed(cfg["seed"])
    model = LlamaForCausalLM(LlamaConfig(**{k: copy.deepcopy(v) for k, v in conf.items() if k != "torch_dtype"}))
    init_weights(model, cfg)
    if cfg["dtype"] == "bfloat16":
        model = model.to(torch.bfloat16)
    kw = dict(safe_serialization=True)
    if cfg["shard"]:
        kw["max_shard_size"] = cfg["shard"]
    model.save_pretrained(d, **kw)
    for f in os.listdir(d):  # keep only the weights, the index, and our own files
        if f.startswith("generation_config"):
            os.remove(os.path.join(d, f))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    return d, tok


def sequences(cfg, tok):
    g = np.random.default_rng(cfg["seed"] + 100)
    V = cfg["vocab_size"]
    out = []
    for i, n in enumerate(cfg["lengths"]):
        if i == 0:  # real text through the tokenizer, BOS first
            ids = [tok.token_to_id("<|begin_of_text|>")] + tok.encode(TEXT).ids
            ids = ids[:n]
        else:  # ids spread over the whole vocabulary
            ids = [int(x) for x in g.integers(0, V, size=n)]
        out.append(ids)
    return out


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    for cfg in CONFIGS:
        if only and cfg["name"] != only:
            continue
        d, tok = make_model(cfg)
        model = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        # what transformers made of the files is what we meant
        rope = model.model.rotary_emb
        assert rope.rope_type == ("llama3" if cfg["rope_scaling"] else "default"), rope.rope_type
        assert model.config._attn_implementation == "eager"
        tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        assert tied == cfg["tie_word_embeddings"]
        assert model.model.layers[0].self_attn.head_dim == cfg["head_dim"]
        cases = []
        for i, ids in enumerate(sequences(cfg, tok)):
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].to(torch.float32).numpy()
            fn = f"{cfg['name']}_{i}.bin"
            logits.astype("<f4").tofile(os.path.join(OUT, fn))
            cases.append(dict(ids=ids, logits=fn, shape=list(logits.shape),
                              max_abs=float(np.abs(logits).max()), std=float(logits.std())))
            print(f"{cfg['name']} case {i}: n={len(ids)} max|logit|={np.abs(logits).max():.3f} "
                  f"std={logits.std():.3f}")
        meta = dict(model="models/" + cfg["name"], generator="tests/scripts/gen_hf_fixtures.py",
                    reference=f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
                              "float32, eager attention, CPU",
                    cases=cases)
        with open(os.path.join(OUT, cfg["name"] + ".json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")


GGUF_CASES = ["plain", "code", "numbers", "chat_capital", "chat_haiku", "long"]


def gguf_main():
    from transformers import AutoModelForCausalLM
    cache = os.path.join(os.path.dirname(ROOT), "models", "cache")
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(cache, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    src = json.load(open(os.path.join(ROOT, "fixtures", "forward", "llamacpp", "smollm2.json")))
    cases = []
    for c in src["cases"]:
        if c["name"] not in GGUF_CASES:
            continue
        with torch.no_grad():
            out = model(torch.tensor([c["ids"]]), use_cache=True)
            logits = out.logits[0, -1].to(torch.float32)
            fn = f"smollm2-gguf_{c['name']}.bin"
            logits.numpy().astype("<f4").tofile(os.path.join(OUT, fn))
            past, gen, margins = out.past_key_values, [], []
            for _ in range(32):
                top2 = torch.topk(logits, 2)
                tok = int(torch.argmax(logits))  # first index of the max, like the C test
                gen.append(tok)
                margins.append(float(top2.values[0] - top2.values[1]))
                out = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[0, -1].to(torch.float32)
        print(f"gguf {c['name']}: min margin {min(margins):.5f}")
        cases.append(dict(name=c["name"], ids=c["ids"], logits=fn, vocab=int(logits.shape[0]), greedy=gen,
                          margins=[round(m, 6) for m in margins], min_margin=round(min(margins), 6)))
    meta = dict(model=name, generator="tests/scripts/gen_hf_fixtures.py --gguf",
                reference=f"transformers {__import__('transformers').__version__} GGUF loader (dequantized to "
                          f"float32), torch {torch.__version__}, eager attention, CPU",
                cases=cases)
    with open(os.path.join(OUT, "smollm2-gguf.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if "--gguf" in sys.argv:
        torch.set_num_threads(2)
        gguf_main()
    else:
        main()
