#!/usr/bin/env python3
"""entropix_ref.py — speed of a reference-style entropix v1 generation loop in PyTorch on the
model `tests/scripts/gpu_llama1b.py make DIR` writes, at batch 1 and batch N: the work
`etx bench --policy entropix` does, done the way the reference does it (entropix `e55e9a3`;
its signals, tree, constants and quirks as docs/entropix.md §1, §2, §3 and §6 describe them).
Written for this benchmark from that description, not copied from entropix.

The loop. Prefill the prompt with a KV cache (transformers' DynamicCache), first token =
argmax of the last position (the reference does not run the sampler there; docs/entropix.md §6.11). Then per token:
one forward of the model on the last token with the cache; from its logits the entropy H
(bits) and varentropy V (bits^2) (docs/entropix.md §1.1); from the last layer's attention the attention
entropy A_H, varentropy A_V (population variance over heads), agreement AG and interaction
strength IS (docs/entropix.md §1.2); the v1 decision tree with the reference's default
constants (docs/entropix.md §2, §3; the JAX thresholds: HELV H > 5, HEHV H > 3, as etx uses); the base `_sample` (temperature,
min-p, top-k, top-p) and the adaptive branch's best of 5 draws. One host synchronisation per
token, as in the reference (whose Python `if` on the metric tensors syncs): here the branch
of every row is copied to the host once per step (`.tolist()`), which also counts them.

Attention scores. The reference's metrics read the last layer's *pre-softmax* scaled scores
q.k/sqrt(d) (GQA keys repeated to all heads). transformers' `output_attentions` only gives
the post-softmax probabilities, from which the scores (needed for IS) cannot be recovered,
so the model runs with attn_implementation="eager" and this script wraps transformers'
eager attention function: for the last layer, at decode, it computes q.k^T * scaling itself
(one extra [B, H, 1, n] product per step, small beside the layer) and keeps it, then calls
the unchanged eager attention. If a transformers version does not route attention through
that function, the script falls back to output_attentions=True and takes ln P as the
scores (P = softmax(s) over the valid positions gives A_H, A_V and AG exactly; IS becomes
mean |ln P|, optillm's substitute, not the reference's mean |s|), and says so.
Metrics are over the valid (causal) positions, as etx computes them by default;
--attn-window W pads the scores with zeros to W slots first, as the reference's 4096-slot
cache does (docs/entropix.md §6.6; etx: --attn-window).

Sampler (the reference's, docs/entropix.md §6.1-§6.4): p = softmax(x / T); min-p drops p < min_p max(p) (the reference computes
that mask but samples from the unmasked p; applied here as etx applies it, same work);
top-k; the reference's ascending-order top-p mask (c_j - p_j > top_p, the inverted nucleus,
kept as the reference has it); draws by the exponential race argmax p/q, q ~ Exp(1) (exact,
as JAX; the torch port's uniform q is not), torch.Generator seeded 1337. The adaptive branch
scores each of its 5 draws by log_softmax(x)[tok] plus the reference's token-independent
confidence term and keeps the best.

Batch. The reference runs batch 1. For the batch of N prompts every row decides for itself:
metrics and decisions are computed for all rows at once (batched tensor ops), the branch
vector crosses to the host once per step, and each branch that has rows samples them as
one sub-batch with per-row temperature / top-p / top-k / min-p. This is the batched form a
reference-style PyTorch loop would take; one sync per row per step would measure Python,
not the sampler.

Timing as hf_generate.py: one warm-up, R repeats of (G = 1 run: T1 = prefill + first token;
G run: T); prefill tok/s = B L / T1, decode tok/s = B (G - 1) / (T - T1), ms/step =
(T - T1) / (G - 1) * 1000; medians. Branch counts of the last repeat are printed per batch.
With --etx PATH the script then runs `etx bench --policy entropix` on the same work.

usage: python3 benchmarks/peers/entropix_ref.py --model DIR [--device cuda|cpu]
           [--dtype bf16|f32] [-l 128] [-g 64] [-r 3] [--batch-n 64] [--attn-window W]
           [--etx BIN] [--md FILE]
needs: pip install torch transformers safetensors numpy
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers_common as pc  # noqa: E402

LN2 = 0.69314718056

# SamplerConfig defaults, entropix v1 (docs/entropix.md §3)
T0, TOP_P0, TOP_K0, MIN_P0 = 0.666, 0.90, 27, 0.03
LOW_ENT, LOW_VENT, MED_ENT, HIGH_ENT, HIGH_VENT = 0.1, 0.1, 3.0, 5.0, 5.0
HELV_AE_OFF, HELV_AE_COEF = 1.3, 0.2
LEHV_IS_OFF, LEHV_IS_COEF = 1.2, 0.3
HEHV_AE_COEF, HEHV_AV_OFF, HEHV_AV_COEF = 0.2, 2.0, 0.5
N_ADAPTIVE = 5
ADA_TEMP_LOGITS, ADA_TEMP_ATTN, ADA_TEMP_AGREE, ADA_TOP_P = 0.3, 0.2, 0.2, 0.1
ADA_TOP_K_INT, ADA_TOP_K_AGREE, ADA_MIN_P = 0.3, 0.2, 0.5
ADA_S_LE, ADA_S_AE, ADA_S_LV, ADA_S_AV, ADA_S_AG, ADA_S_IS = 0.1, 0.2, 0.3, 0.4, 0.5, 0.6
PAUSE = 2564  # " ..." in the Llama 3 vocabulary
BRANCHES = ("lelv", "helv", "lehv", "hehv", "adaptive")
K_MAX = 100  # the largest top-k any branch can ask for (adaptive clips to 100)


class Capture:
    """The last layer's pre-softmax scaled scores at decode, from the wrapped eager attention."""
    layer = -1
    scores = None
    probs = None  # the fallback's post-softmax probabilities
    hooked = False


def hook_attention(model):
    from transformers.models.llama import modeling_llama as ml
    orig = ml.eager_attention_forward
    Capture.layer = model.config.num_hidden_layers - 1

    def eager_with_scores(module, query, key, value, attention_mask, *args, **kw):
        Capture.hooked = True
        if getattr(module, "layer_idx", None) == Capture.layer and query.shape[2] == 1:
            scaling = kw.get("scaling", getattr(module, "scaling", query.shape[-1] ** -0.5))
            k = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)  # GQA: head h reads h // n_rep
            Capture.scores = (query @ k.transpose(2, 3)).float() * scaling  # [B, H, 1, n]
        return orig(module, query, key, value, attention_mask, *args, **kw)

    ml.eager_attention_forward = eager_with_scores


def logit_metrics(x):
    """x [B, V] float32 -> H bits [B], V bits^2 [B], log_softmax [B, V]."""
    import torch
    lp = torch.log_softmax(x, dim=-1)
    p = lp.exp()
    h = -(p * lp).sum(-1) / LN2
    v = (p * (lp / LN2 + h[:, None]) ** 2).sum(-1)
    return h, v, lp


def attn_metrics(s, window):
    """s [B, H, n] pre-softmax scaled scores -> A_H, A_V, AG, IS, each [B]."""
    import torch
    if window > s.shape[-1]:
        s = torch.nn.functional.pad(s, (0, window - s.shape[-1]))  # the reference's unfilled slots
    p = torch.softmax(s, dim=-1)
    ent = -(p * torch.log2(p.clamp(1e-10, 1.0))).sum(-1)  # [B, H]
    a_h = ent.mean(-1)
    a_v = ent.var(-1, unbiased=False)
    ag = (p - p.mean(1, keepdim=True)).abs().mean((1, 2))
    i_s = s.abs().mean((1, 2))
    return a_h, a_v, ag, i_s


def sample(x, temp, top_p, top_k, min_p, draws, gen):
    """The base _sample on rows x [n, V] with per-row parameters [n] -> token ids [n, draws]."""
    import torch
    p = torch.softmax(x / temp[:, None], dim=-1)
    pmax = p.max(-1, keepdim=True).values
    p = torch.where(p < min_p[:, None] * pmax, torch.zeros_like(p), p)
    k = min(K_MAX, x.shape[-1])
    vals, idx = torch.topk(p, k, dim=-1)  # descending
    cols = torch.arange(k, device=x.device)
    vals = torch.where(cols[None, :] < top_k[:, None], vals, torch.zeros_like(vals))
    asc = vals.flip(-1)  # the reference's ascending order
    c = asc.cumsum(-1)
    asc = torch.where(c - asc > top_p[:, None], torch.zeros_like(asc), asc)
    probs = (asc / asc.sum(-1, keepdim=True)).flip(-1)  # back to descending, matching idx
    q = torch.empty((x.shape[0], draws, k), device=x.device).exponential_(1.0, generator=gen)
    pick = (probs[:, None, :] / q).argmax(-1)  # [n, draws]
    return idx.gather(1, pick)


def decide(h, v):
    """Branch index per row (BRANCHES order), first match wins."""
    import torch
    lelv = (h < LOW_ENT) & (v < LOW_VENT)
    helv = (h > HIGH_ENT) & (v < LOW_VENT)
    lehv = (h < HIGH_ENT) & (v > HIGH_VENT)
    hehv = (h > MED_ENT) & (v > HIGH_VENT)
    b = torch.full_like(h, 4, dtype=torch.long)
    for i, m in reversed(list(enumerate((lelv, helv, lehv, hehv)))):
        b = torch.where(m, torch.full_like(b, i), b)
    return b


def policy_step(x, prev, window, gen, counts, first=None):
    """x [B, V] logits of the step, prev [B] the previous tokens -> next tokens [B]."""
    import torch
    x = x.float()
    h, v, lp = logit_metrics(x)
    if Capture.hooked and Capture.scores is not None:
        s = Capture.scores[:, :, 0, :]
    else:  # fallback (see the header): ln P from output_attentions
        s = Capture.probs[:, :, 0, :].float().clamp_min(1e-30).log()
    a_h, a_v, ag, i_s = attn_metrics(s, window)
    br = decide(h, v)
    rows = br.tolist()  # the host synchronisation of the step
    if first is not None:
        first.update(H=h[0].item(), V=v[0].item(), A_H=a_h[0].item(), A_V=a_v[0].item(), AG=ag[0].item(),
                     IS=i_s[0].item(), branch=BRANCHES[rows[0]])
    out = x.argmax(-1)  # LELV rows keep this
    dev = x.device
    for bi in range(1, 5):
        sel = [r for r, b in enumerate(rows) if b == bi]
        counts[BRANCHES[bi]] += len(sel)
        if not sel:
            continue
        ix = torch.tensor(sel, device=dev)
        xs = x[ix]
        n = len(sel)
        ones = torch.ones(n, device=dev)
        if bi == 1:  # HELV: the pause token unless the previous token was one, else resample
            t = torch.clamp(T0 * (HELV_AE_OFF + HELV_AE_COEF * a_h[ix]), max=1.5)
            tok = sample(xs, t, TOP_P0 * ones, torch.full((n,), TOP_K0, device=dev), MIN_P0 * ones, 1, gen)[:, 0]
            tok = torch.where(prev[ix] != PAUSE, torch.full_like(tok, PAUSE), tok)
        elif bi == 2:  # LEHV
            t = torch.clamp(T0 * (LEHV_IS_OFF + LEHV_IS_COEF * i_s[ix]), max=1.5)
            k = torch.clamp((TOP_K0 * (1 + 0.5 * (1 - ag[ix]))).floor(), 5, K_MAX)
            tok = sample(xs, t, TOP_P0 * ones, k, MIN_P0 * ones, 1, gen)[:, 0]
        elif bi == 3:  # HEHV
            t = torch.clamp(T0 * (HEHV_AV_OFF + HEHV_AV_COEF * a_v[ix]), min=2.0)
            tp = torch.clamp(TOP_P0 - HEHV_AE_COEF * a_h[ix], min=0.5)
            tok = sample(xs, t, tp, torch.full((n,), TOP_K0, device=dev), MIN_P0 * ones, 1, gen)[:, 0]
        else:  # adaptive best-of-N
            hh, vv, ah, av, agr, ist = h[ix], v[ix], a_h[ix], a_v[ix], ag[ix], i_s[ix]
            u_log, u_att = hh + vv, ah + av
            t = T0 * (1 + ADA_TEMP_LOGITS * u_log + ADA_TEMP_ATTN * u_att - ADA_TEMP_AGREE * agr)
            tp = torch.clamp(TOP_P0 * (1 + ADA_TOP_P * av), 0.1, 1.0)
            k = torch.clamp(torch.round(TOP_K0 * (1 + ADA_TOP_K_INT * ist - ADA_TOP_K_AGREE * agr)), 1, K_MAX)
            mp = torch.clamp(MIN_P0 * (1 - ADA_MIN_P * u_log), 0.01, 0.5)
            cand = sample(xs, t, tp, k, mp, N_ADAPTIVE, gen)  # [n, 5]
            conf = ((1 - hh) * ADA_S_LE + (1 - ah) * ADA_S_AE + (1 - vv) * ADA_S_LV + (1 - av) * ADA_S_AV
                    + agr * ADA_S_AG + ist * ADA_S_IS)
            score = lp[ix].gather(1, cand) + conf[:, None]
            tok = cand.gather(1, score.argmax(-1, keepdim=True))[:, 0]
        out[ix] = tok
    counts["lelv"] += sum(1 for b in rows if b == 0)
    return out


_PARAMS = {}


def forward_params(model):
    import inspect
    if id(model) not in _PARAMS:
        _PARAMS[id(model)] = set(inspect.signature(model.forward).parameters)
    return _PARAMS[id(model)]


def forward(model, ids, cache, fallback):
    """One forward with the KV cache -> (logits of the last position [B, V], the cache)."""
    params = forward_params(model)
    # transformers >= 5.2x calls the cache `cache` (past_key_values deprecated); older: past_key_values
    kw = {"cache" if "cache" in params else "past_key_values": cache, "use_cache": True}
    kw["logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep"] = 1
    if fallback:
        kw["output_attentions"] = True
    out = model(input_ids=ids, **kw)
    if fallback:
        Capture.probs = out.attentions[-1]
    return out.logits[:, -1], (out.cache if "cache" in out else out.past_key_values)


def generate(model, ids, g, window, gen, counts, fallback, first=None):
    import torch
    with torch.inference_mode():
        Capture.scores = None
        logits, cache = forward(model, ids, None, fallback)
        tok = logits.argmax(-1)  # the reference's first token: argmax of the prefill
        toks = [tok]
        tok.tolist()  # the host sees the first token, as the reference prints it
        for step in range(g - 1):
            Capture.scores = None
            logits, cache = forward(model, tok[:, None], cache, fallback)
            tok = policy_step(logits, tok, window, gen, counts, first if step == 0 else None)
            toks.append(tok)
        return torch.stack(toks, 1)


def main():
    a = pc.parse_args(__doc__, "entropix", lambda ap: ap.add_argument(
        "--attn-window", type=int, default=0,
        help="attention metrics over W slots, the unfilled ones scoring 0 (the reference: 4096); 0 = valid positions"))
    window = a.attn_window
    import torch
    model = pc.load_model(a, attn_implementation="eager")
    hook_attention(model)
    vocab = model.config.vocab_size
    gen = torch.Generator(device=a.device)
    gen.manual_seed(1337)
    # probe: does the eager wrapper see the attention calls?
    with torch.inference_mode():
        forward(model, torch.tensor([[1000, 1001]], device=a.device), None, False)
    fallback = not Capture.hooked
    if fallback:
        print("entropix_ref: transformers does not call eager_attention_forward here; falling back to "
              "output_attentions (ln P as scores; IS = mean |ln P|)", file=sys.stderr)
    print("entropix_ref: attention metrics over %s" % ("the valid positions" if window == 0 else
                                                       "a %d-slot window (zero scores)" % window))
    rows = []
    for b in pc.batches(a):
        ids = torch.tensor(pc.prompt_ids(b, a.l, vocab), device=a.device)
        counts = {k: 0 for k in BRANCHES}
        generate(model, ids, 1, window, gen, counts, fallback)  # warm-up
        first = {}
        generate(model, ids, a.g, window, gen, counts, fallback, first)
        print("entropix_ref batch %d: first policy step, row 0: H %.3f bits (log2 V = %.3f), V %.4f bits^2, "
              "A_H %.3f bits, A_V %.5f, AG %.3g, IS %.4f -> %s"
              % (b, first["H"], math.log2(vocab), first["V"], first["A_H"], first["A_V"], first["AG"], first["IS"],
                 first["branch"]), flush=True)
        samples = []
        for _ in range(a.r):
            counts = {k: 0 for k in BRANCHES}
            t1, _ = pc.timed(a.device, lambda: generate(model, ids, 1, window, gen, counts, fallback))
            t, out = pc.timed(a.device, lambda: generate(model, ids, a.g, window, gen, counts, fallback))
            samples.append(pc.rates(b, a.l, a.g, t1, t))
            print("entropix_ref batch %d: T1 %.4f s, T %.4f s" % (b, t1, t), flush=True)
        assert out.shape == (b, a.g), out.shape
        print("entropix_ref batch %d: row 0 generated %s" % (b, out[0, :8].tolist()), flush=True)
        row = pc.median_row("entropix_ref (torch)", b, samples)
        row["note"] = "branches (last repeat, %d decisions) %s" % (
            b * (a.g - 1), " ".join("%s %d" % kv for kv in counts.items()))
        rows.append(row)
    pc.report(a, rows, "entropix", "entropix_ref")


if __name__ == "__main__":
    main()
