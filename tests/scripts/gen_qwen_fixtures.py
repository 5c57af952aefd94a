#!/usr/bin/env python3
"""gen_qwen_fixtures.py — builds the tiny Hugging Face Qwen2 and Qwen3 models under
tests/fixtures/models/, records transformers' logits for them under
tests/fixtures/forward/hf/ (read by tests/cpu/test_forward.c, as the Llama ones of
gen_hf_fixtures.py), and converts each to GGUF with llama.cpp's own converter.

Reference: transformers' Qwen2ForCausalLM / Qwen3ForCausalLM, float32,
attn_implementation="eager", CPU, after reloading each directory from disk with
from_pretrained (the fixture is what transformers makes of the files as they are).
Fixed pseudo-random weights (torch.Generator seeds), scaled so activations are O(1) and
logits spread over several units. Models:

  tiny-qwen2   Qwen2ForCausalLM: 4 query / 2 KV heads, head_dim 16 = hidden/heads, Q/K/V
               biases (random, 0.5 scale: without them the logits move by 2.8, far
               outside the tolerance), untied
               LM head, rope_theta 1e6, float32; vocab_size 320 over a 300-token tokenizer
               (padded embedding rows, as real Qwen checkpoints have); config.json in the
               layout Qwen2.5 checkpoints ship (top-level rope_theta, use_sliding_window
               false, max_window_layers).
  tiny-qwen3   Qwen3ForCausalLM: 4 query / 2 KV heads, head_dim 24 != hidden/heads (16),
               q_norm / k_norm weights 1 + 0.3 N(0,1) (so the weights matter, not only
               the normalisation), tied embeddings, rope_theta 5e5, saved in bfloat16 (the
               reference runs in float32 on exactly the bf16 values); config.json as
               transformers 5 writes it (rope_parameters instead of rope_theta).

The tokenizers are byte-level BPEs (Llama-3 pre-tokenizer regex, which etx already
reads: these fixtures test the architectures, the Qwen tokenizer has its own suite)
with the Qwen special tokens <|endoftext|>, <|im_start|>, <|im_end|>, trained with
`tokenizers` on gen_hf_fixtures.py's paragraph.

Output: forward/hf/<model>.json lists, per case, the token ids, the logits file and its
shape; <model>_<i>.bin holds the logits of every position, (n, vocab) little-endian
float32, row-major (same format as the Llama fixtures).

GGUF (with --llama-cpp DIR, DIR = llama.cpp's source tree, e.g. vendor/llama.cpp of the
llama-cpp-python 0.3.36 sdist: `pip download llama-cpp-python==0.3.36 --no-deps
--no-binary :all:`): each directory is converted by llama.cpp's convert_hf_to_gguf.py,
run in-process from DIR with its own gguf-py, to models/<model>.gguf (--outtype f32: the
GGUF holds exactly the values transformers ran, so the same reference logits apply at
the same tolerance). What the converter does to Q and K (for qwen2/qwen3: nothing, they
stay in rotate-half order, unlike llama's permutation) is then its decision, not ours.
Each is also converted with --outtype q8_0 to models/<model>.q8_0.gguf (matrices in Q8_0
blocks, which etx keeps for its quantized decode products; norms and biases F32), and
transformers' own GGUF reader (dequantized to float32; needs `pip install gguf
accelerate`) gives the reference for it: forward/hf/<model>-q8_0.json + .bin, same ids.
One thing is patched: the converter names the pre-tokenizer by hashing the tokenizer's
output on a test string and refuses tokenizers it does not know; ours is a Llama-3
split, so get_vocab_base_pre answers "llama-bpe" (what llama.cpp calls that split).

Setup that worked (Python 3.11, CPU only):
    python3 -m venv /tmp/hfenv
    /tmp/hfenv/bin/pip install torch transformers safetensors tokenizers numpy sentencepiece \
        gguf accelerate
(the converter imports sentencepiece before it falls back to the BPE vocabulary; its
gguf-py comes from DIR; transformers' GGUF reader needs gguf and accelerate).
Then, from the repository root:
    /tmp/hfenv/bin/python tests/scripts/gen_qwen_fixtures.py [--llama-cpp DIR]
With transformers 5.24.0 and torch 2.15.0 a second run rewrites every file bit for bit.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_hf_fixtures import LLAMA3_SPLIT, TEXT  # noqa: E402  (the same paragraph and split)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
MODELS = os.path.join(ROOT, "fixtures", "models")
OUT = os.path.join(ROOT, "fixtures", "forward", "hf")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CONFIGS = [
    dict(name="tiny-qwen2", arch="qwen2", seed=21, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=320, tokenizer_size=300,
         tie_word_embeddings=False, rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=128,
         dtype="float32", lengths=[12, 33, 70]),
    dict(name="tiny-qwen3", arch="qwen3", seed=22, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, head_dim=24, vocab_size=288, tokenizer_size=288,
         tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-6, max_position_embeddings=128,
         dtype="bfloat16", lengths=[10, 40, 64]),
]


def build_tokenizer(size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT] * 4, trainer=trainer)
    if tok.get_vocab_size() != size:
        sys.exit(f"tokenizer has {tok.get_vocab_size()} tokens, wanted {size}: add text")
    return tok


def init_weights(model, cfg):
    g = torch.Generator().manual_seed(cfg["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
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


def hf_config(cfg, tok):
    common = dict(hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
                  num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
                  num_key_value_heads=cfg["num_key_value_heads"], vocab_size=cfg["vocab_size"],
                  max_position_embeddings=cfg["max_position_embeddings"], rms_norm_eps=cfg["rms_norm_eps"],
                  tie_word_embeddings=cfg["tie_word_embeddings"], hidden_act="silu",
                  bos_token_id=tok.token_to_id("<|endoftext|>"), eos_token_id=tok.token_to_id("<|im_end|>"))
    if cfg["arch"] == "qwen2":
        return Qwen2Config(rope_theta=cfg["rope_theta"], **common)
    return Qwen3Config(rope_theta=cfg["rope_theta"], head_dim=cfg["head_dim"], attention_bias=False, **common)


def qwen25_style_config(cfg, tok):
    """config.json as Qwen2.5 checkpoints ship it (written by transformers 4)."""
    return dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", attention_dropout=0.0,
                bos_token_id=tok.token_to_id("<|endoftext|>"), eos_token_id=tok.token_to_id("<|im_end|>"),
                hidden_act="silu", hidden_size=cfg["hidden_size"], initializer_range=0.02,
                intermediate_size=cfg["intermediate_size"], max_position_embeddings=cfg["max_position_embeddings"],
                max_window_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
                num_hidden_layers=cfg["num_hidden_layers"], num_key_value_heads=cfg["num_key_value_heads"],
                rms_norm_eps=cfg["rms_norm_eps"], rope_scaling=None, rope_theta=cfg["rope_theta"],
                sliding_window=cfg["max_position_embeddings"], tie_word_embeddings=cfg["tie_word_embeddings"],
                torch_dtype=cfg["dtype"], use_cache=True, use_sliding_window=False, vocab_size=cfg["vocab_size"])


def make_model(cfg):
    d = os.path.join(MODELS, cfg["name"])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tok = build_tokenizer(cfg["tokenizer_size"])
    tok.save(os.path.join(d, "tokenizer.json"))
    # for AutoTokenizer (llama.cpp's converter): take tokenizer.json as it is
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(dict(tokenizer_class="PreTrainedTokenizerFast", eos_token="<|im_end|>", pad_token="<|endoftext|>",
                       model_max_length=cfg["max_position_embeddings"]), f, indent=2)
        f.write("\n")
    conf = hf_config(cfg, tok)
    model = (Qwen2ForCausalLM if cfg["arch"] == "qwen2" else Qwen3ForCausalLM)(conf)
    init_weights(model, cfg)
    if cfg["dtype"] == "bfloat16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    for f in os.listdir(d):  # keep only the weights, the config, and our own files
        if f.startswith("generation_config"):
            os.remove(os.path.join(d, f))
    if cfg["arch"] == "qwen2":  # else: config.json as transformers 5 wrote it
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(qwen25_style_config(cfg, tok), f, indent=2)
            f.write("\n")
    return d, tok


def sequences(cfg, tok):
    g = np.random.default_rng(cfg["seed"] + 100)
    out = []
    for i, n in enumerate(cfg["lengths"]):
        if i == 0:  # real text through the tokenizer (Qwen adds no BOS)
            ids = tok.encode(TEXT).ids[:n]
        else:  # ids spread over the whole vocabulary, padded rows included
            ids = [int(x) for x in g.integers(0, cfg["vocab_size"], size=n)]
        out.append(ids)
    return out


def check_loaded(model, cfg):
    """What transformers made of the files is what we meant."""
    c = model.config
    assert type(model).__name__ == ("Qwen2ForCausalLM" if cfg["arch"] == "qwen2" else "Qwen3ForCausalLM")
    assert c._attn_implementation == "eager"
    assert c.rope_parameters["rope_type"] == "default" and c.rope_parameters["rope_theta"] == cfg["rope_theta"]
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tied == cfg["tie_word_embeddings"]
    attn = model.model.layers[0].self_attn
    assert attn.head_dim == cfg["head_dim"]
    assert all(l.self_attn.sliding_window is None for l in model.model.layers)
    if cfg["arch"] == "qwen2":
        assert attn.q_proj.bias is not None and attn.o_proj.bias is None
        assert float(attn.k_proj.bias.detach().abs().max()) > 0.5
    else:
        assert attn.q_proj.bias is None and attn.q_norm.weight.shape == (cfg["head_dim"],)
        assert float((attn.k_norm.weight.detach() - 1).abs().max()) > 0.3


def reference(cfg, d, tok):
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    check_loaded(model, cfg)
    cases = []
    for i, ids in enumerate(sequences(cfg, tok)):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].to(torch.float32).numpy()
        fn = f"{cfg['name']}_{i}.bin"
        logits.astype("<f4").tofile(os.path.join(OUT, fn))
        cases.append(dict(ids=ids, logits=fn, shape=list(logits.shape),
                          max_abs=float(np.abs(logits).max()), std=float(logits.std())))
        print(f"{cfg['name']} case {i}: n={len(ids)} max|logit|={np.abs(logits).max():.3f} std={logits.std():.3f}")
    meta = dict(model="models/" + cfg["name"], generator="tests/scripts/gen_qwen_fixtures.py",
                reference=f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
                          "float32, eager attention, CPU",
                cases=cases)
    with open(os.path.join(OUT, cfg["name"] + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def convert_gguf(llama_cpp, d, out, outtype):
    """llama.cpp's convert_hf_to_gguf.py on directory d (--outtype f32 or q8_0), in this process."""
    if llama_cpp not in sys.path:
        sys.path.insert(0, llama_cpp)
    import convert_hf_to_gguf  # noqa: E402  (puts llama.cpp's gguf-py on sys.path itself)
    from conversion.base import TextModel  # noqa: E402
    TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"  # see the docstring
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", d, "--outtype", outtype, "--outfile", out]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


def gguf_reference(cfg, tok, gguf_name, hf_dir):
    """transformers on a GGUF file (its own GGUF reader dequantizes to float32), same ids."""
    kw = {}
    if cfg["arch"] == "qwen3":
        # transformers 5.24's GGUF reader maps no qwen3.attention.key_length, so its config
        # would have Qwen3Config's default head_dim 128 and the weights would not fit: the
        # hyper-parameters come from the directory the GGUF was converted from, the weights
        # from the GGUF
        kw["config"] = AutoConfig.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=gguf_name, dtype=torch.float32,
                                                 attn_implementation="eager", **kw)
    model.eval()
    check_loaded(model, cfg)
    name = gguf_name[:-len(".gguf")].replace(".", "-")  # tiny-qwen2.q8_0.gguf -> tiny-qwen2-q8_0
    cases = []
    for i, ids in enumerate(sequences(cfg, tok)):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].to(torch.float32).numpy()
        fn = f"{name}_{i}.bin"
        logits.astype("<f4").tofile(os.path.join(OUT, fn))
        cases.append(dict(ids=ids, logits=fn, shape=list(logits.shape),
                          max_abs=float(np.abs(logits).max()), std=float(logits.std())))
        print(f"{name} case {i}: n={len(ids)} max|logit|={np.abs(logits).max():.3f}")
    meta = dict(model="models/" + gguf_name, generator="tests/scripts/gen_qwen_fixtures.py --llama-cpp",
                reference=f"transformers {__import__('transformers').__version__} GGUF loader (dequantized to "
                          f"float32), torch {torch.__version__}, eager attention, CPU",
                cases=cases)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", help="llama.cpp source tree: also convert each model to GGUF with its converter")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    for cfg in CONFIGS:
        d, tok = make_model(cfg)
        reference(cfg, d, tok)
        if args.llama_cpp:
            convert_gguf(os.path.abspath(args.llama_cpp), d, os.path.join(MODELS, cfg["name"] + ".gguf"), "f32")
            q8 = cfg["name"] + ".q8_0.gguf"
            convert_gguf(os.path.abspath(args.llama_cpp), d, os.path.join(MODELS, q8), "q8_0")
            gguf_reference(cfg, tok, q8, d)


if __name__ == "__main__":
    main()
