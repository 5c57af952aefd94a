#!/usr/bin/env python3
"""gpu_llama1b.py — for benchmarks/gpu_check.sh, on a GPU machine with torch and
transformers (no internet needed):

  make DIR             writes a Llama model of Llama-3.2-1B's shape (16 layers, dim 2048,
                       32 heads / 8 KV heads of 64, hidden 8192, vocab 128256, tied
                       embedding, llama3 RoPE scaling) with fixed random weights (seed 1234,
                       std 0.02 as transformers initialises), in bf16 safetensors, with the
                       committed Llama 3 tokenizer (tests/fixtures/tokenizer/llama3).
  make DIR --tiny      the same architecture, tokenizer and vocabulary at a size a CPU runs
                       (2 layers, dim 256, 4 heads / 2 KV heads of 64, hidden 512), for
                       testing the scripts that use the model (benchmarks/peers/); on the
                       GPU when there is one, else on the CPU.
  compare DIR ETX      runs transformers (bf16, on the GPU) and `ETX logits --device cuda
                       --all` on the same token ids and compares every position's logits.

The bf16 tolerance: both sides hold the same bf16 weights and accumulate in fp32, but
round activations to bf16 at different points (etx: GEMM inputs and the attention output;
transformers: every op's output), each rounding a relative error up to 2^-9. Over 16
layers that drifts the logits by about 1-3 % of their norm (an estimate, not yet measured
on a GPU), so per prompt we require the relative L2 error ||etx - hf|| / ||hf|| over all
positions <= 0.05, and the same top-1 token on >= 95 % of the positions whose HF top-2
margin exceeds 5 % of the row's standard deviation (near-ties may flip). The script
prints every figure it checks.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "torch_dtype": "bfloat16",
    "initializer_range": 0.02,
}

PROMPTS = [
    [128000, 791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13],
    [128000] + [(i * 7919) % 120000 + 100 for i in range(200)],
    [128000] + [(i * 104729) % 128000 for i in range(33)],
]


TINY = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64}


def make(out, tiny=False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1234)
    config = dict(CONFIG, **TINY) if tiny else CONFIG
    cfg = LlamaConfig(**{k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")})
    device = "cuda" if not tiny or torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    # the config as Llama-3.2-1B's own config.json spells it (rope_scaling, rope_theta),
    # whatever spelling this transformers version writes; it reads this one back too
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    tok = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "llama3")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, name), os.path.join(out, name))
    print(f"gpu_llama1b: wrote {out} ({sum(p.numel() for p in model.parameters()) / 1e9:.3f} B parameters)")


def compare(model_dir, etx):
    import torch
    from transformers import LlamaForCausalLM
    try:  # transformers >= 4.56 names it dtype; older ones torch_dtype
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="eager")
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, attn_implementation="eager")
    model = model.cuda().eval()
    worst_rel, worst_top1 = 0.0, 1.0
    ok = True
    for i, ids in enumerate(PROMPTS):
        with torch.no_grad():
            ref = model(torch.tensor([ids], device="cuda")).logits[0].float().cpu()
        out = f"/tmp/gpu_llama1b_{i}.f32"
        subprocess.run([etx, "logits", "-m", model_dir, "--device", "cuda", "--all", "--ids",
                        " ".join(map(str, ids)), "--out", out], check=True, stdout=subprocess.DEVNULL)
        with open(out, "rb") as f:
            raw = f.read()
        n, v = ref.shape
        got = torch.tensor(struct.unpack(f"<{n * v}f", raw)).view(n, v)
        rel = ((got - ref).norm() / ref.norm()).item()
        top2 = ref.topk(2, dim=-1).values
        margin = (top2[:, 0] - top2[:, 1]) / ref.std(dim=-1)
        clear = margin > 0.05
        same = (got.argmax(-1) == ref.argmax(-1))[clear].float().mean().item() if clear.any() else 1.0
        print(f"gpu_llama1b: prompt {i} ({n} tokens): rel L2 {rel:.4f}, max |diff| "
              f"{(got - ref).abs().max().item():.4f} (ref max |logit| {ref.abs().max().item():.3f}), "
              f"top-1 agreement {same:.3f} on {int(clear.sum())} clear positions")
        worst_rel, worst_top1 = max(worst_rel, rel), min(worst_top1, same)
        ok &= rel <= 0.05 and same >= 0.95
    print(f"gpu_llama1b: worst rel L2 {worst_rel:.4f} (<= 0.05), worst top-1 {worst_top1:.3f} (>= 0.95): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "make" and sys.argv[3] == "--tiny":
        make(sys.argv[2], tiny=True)
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__)
        sys.exit(2)
