#!/usr/bin/env python3
"""hf_generate.py — prefill and decode speed of Hugging Face transformers `generate` (greedy)
on the model `tests/scripts/gpu_llama1b.py make DIR` writes, at batch 1 and batch N, the
same work `etx bench --policy greedy` does:

  prompts   B prompts of L token ids, prompt b position i = 1000 + (37 i + 101 b) mod (V - 1000);
            all the same length, so no padding (the attention mask is all ones)
  generate  greedy (do_sample=False), use_cache=True (transformers' DynamicCache),
            min_new_tokens = max_new_tokens, so EOS never ends a row early; the model loads
            with transformers' default attention (sdpa), no torch.compile, no static cache
  timing    one warm-up, then R repeats; each repeat times generate with max_new_tokens=1
            (T1: prefill + first token) and with max_new_tokens=G (T), the device
            synchronised around each; prefill tok/s = B L / T1, decode tok/s =
            B (G - 1) / (T - T1), ms/step = (T - T1) / (G - 1) * 1000; medians printed

With --etx PATH the script then runs `etx bench --policy greedy` on the same model and
work and prints the ratios etx / hf for prefill and decode tok/s.

usage: python3 benchmarks/peers/hf_generate.py --model DIR [--device cuda|cpu]
           [--dtype bf16|f32] [-l 128] [-g 64] [-r 3] [--batch-n 64] [--etx BIN] [--md FILE]
needs: pip install torch transformers safetensors numpy
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers_common as pc  # noqa: E402


def main():
    a = pc.parse_args(__doc__, "greedy")
    import torch
    torch.manual_seed(0)
    model = pc.load_model(a)
    vocab = model.config.vocab_size
    eos = model.config.eos_token_id
    pad = eos[0] if isinstance(eos, (list, tuple)) else (eos if eos is not None else 0)
    rows = []
    for b in pc.batches(a):
        ids = torch.tensor(pc.prompt_ids(b, a.l, vocab), device=a.device)
        mask = torch.ones_like(ids)

        def gen(n):
            with torch.inference_mode():
                return model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                      max_new_tokens=n, min_new_tokens=n, use_cache=True,
                                      pad_token_id=pad, temperature=None, top_p=None, top_k=None)

        gen(1)  # warm-up
        out = gen(a.g)
        assert out.shape == (b, a.l + a.g), out.shape
        samples = []
        for _ in range(a.r):
            t1, _ = pc.timed(a.device, lambda: gen(1))
            t, out = pc.timed(a.device, lambda: gen(a.g))
            samples.append(pc.rates(b, a.l, a.g, t1, t))
            print("hf generate batch %d: T1 %.4f s, T %.4f s" % (b, t1, t), flush=True)
        print("hf generate batch %d: row 0 generated %s" % (b, out[0, a.l:a.l + 8].tolist()), flush=True)
        rows.append(pc.median_row("hf generate (greedy)", b, samples))
    pc.report(a, rows, "greedy", "hf")


if __name__ == "__main__":
    main()
