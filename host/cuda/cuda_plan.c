/*
 * cuda_plan.c — the launch plan of a CUDA backend step and its cost model (cuda_plan.h).
 * Plain C: builds lists of ops and sums the kernels' own napkin math; launches nothing.
 */
#include "cuda/cuda_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_metrics.h"
#include "embed.h"
#include "gather.h"
#include "gemm.h"
#include "model/model.h"
#include "norm.h"
#include "policy_step.h"
#include "qkv_prep.h"
#include "rope.h"
#include "vocab_pass.h"

static CudaOp op(CudaOpKind kind, int layer, int which, int row0, int n) {
    CudaOp o = {kind, layer, which, row0, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    return o;
}

// An A/B switch of the plan in the environment (benchmarks/gpu_check.sh): unset, empty or
// 1 on, 0 off, anything else an error naming the variable; read once per process (*cache:
// -1 until then).
static int env_switch(const char* name, int* cache) {
    if (*cache < 0) {
        const char* e = getenv(name);
        if (!e || !*e || strcmp(e, "1") == 0) *cache = 1;
        else if (strcmp(e, "0") == 0) *cache = 0;
        else {
            fprintf(stderr, "[etx] %s=%s: expected 0 or 1\n", name, e);
            exit(EXIT_FAILURE);
        }
    }
    return *cache;
}

// ETX_FUSE=0: the norms, RoPE and the KV append as their own launches (the plan of before
// issue 15 item 6's fusions, with the residual still added by the O and down
// projections): the same bits, an A/B switch for speed.
static int plan_fuses(void) {
    static int on = -1;
    return env_switch("ETX_FUSE", &on);
}

// A norm and the projection that reads it: one op when the norm adds nothing (residual 0)
// and the GEMM can normalise its own rows (etx_gemm_rmsnorm_fuses), else the norm, then
// the GEMM on xb. Returns the ops written.
static int norm_gemm(const CudaDims* d, int layer, CudaNorm norm, int residual, CudaWeight w, int row0, int n,
                     CudaOp* ops) {
    int in = 0, out = 0;
    cuda_gemm_shape(d, w, &in, &out);
    if (!residual && plan_fuses() && etx_gemm_rmsnorm_fuses(n, in, out)) {
        ops[0] = op(CUDA_OP_GEMM, layer, w, row0, n);
        ops[0].norm = 1 + norm;
        return 1;
    }
    ops[0] = op(CUDA_OP_NORM, layer, norm, row0, n);
    ops[0].residual = residual;
    ops[1] = op(CUDA_OP_GEMM, layer, w, row0, n);
    return 2;
}

// The norm after a residual projection g (norm, before projection `next` of n_next rows)
// done by g's split reduce (etx_gemm_add_rmsnorm_fuses: large batches) unless the next
// projection normalises its own rows (a few rows) or nothing splits: sets g->norm_next
// and returns 1 when it is (the caller then plans the next GEMM alone, on xb).
static int fold_next_norm(const CudaDims* d, CudaOp* g, CudaNorm norm, CudaWeight next, int n_next) {
    int in = 0, out = 0, nin = 0, nout = 0;
    if (!g->residual || !plan_fuses() || n_next <= 0) return 0;
    cuda_gemm_shape(d, (CudaWeight)g->which, &in, &out);
    cuda_gemm_shape(d, next, &nin, &nout);
    if (etx_gemm_rmsnorm_fuses(n_next, nin, nout)) return 0;
    if (!etx_gemm_add_rmsnorm_fuses(g->n, in, out, cuda_plan_ws_bytes(d, g->n, 0))) return 0;
    g->norm_next = 1 + norm;
    return 1;
}

int cuda_plan_head(const CudaDims* d, int row0, int n, CudaOp* ops) {
    if (n <= 0) return 0;
    // without fused_residual the final norm adds the last layer's down projection
    return norm_gemm(d, -1, CUDA_NORM_FINAL, !d->fused_residual, CUDA_W_LM_HEAD, row0, n, ops);
}

int cuda_plan_gathered_head(const CudaDims* d, int row0, int n, CudaOp* ops) {
    if (n <= 0) return 0;
    ops[0] = op(CUDA_OP_GATHER, -1, 0, row0, n);
    return 1 + cuda_plan_head(d, row0, n, ops + 1);
}

int cuda_plan_forward(const CudaDims* d, int n, int decode, int capture, int head_row0, int head_n, CudaOp* ops) {
    int k = 0;
    ops[k++] = op(CUDA_OP_EMBED, -1, 0, 0, n);
    const int fr = d->fused_residual; // the O and down projections add into x themselves
    decode = decode && plan_fuses();
    int xb_ready = 0; // the projection before normalised x into xb in its reduce (norm_next)
    for (int l = 0; l < d->n_layers; l++) {
        // layer 0 starts from the embedding alone
        if (xb_ready) ops[k++] = op(CUDA_OP_GEMM, l, CUDA_W_QKV, 0, n);
        else k += norm_gemm(d, l, CUDA_NORM_ATTN, !fr && l > 0, CUDA_W_QKV, 0, n, ops + k);
        // Q/K/V biases alone (qwen2): added by the QKV GEMM's epilogue; with QK-norm (qwen3)
        // the prep kernel does both, the norm needing the biased heads
        if (d->qkv_bias && !d->qk_norm && plan_fuses()) ops[k - 1].bias = 1;
        else if (d->qkv_bias || d->qk_norm) ops[k++] = op(CUDA_OP_QKV_PREP, l, 0, 0, n);
        // decode rows (each its own sequence): RoPE and the append in the attention launch
        if (!decode) ops[k++] = op(CUDA_OP_ROPE_KV, l, 0, 0, n);
        ops[k] = op(CUDA_OP_ATTN, l, decode, 0, n);
        ops[k++].capture = capture && l == d->n_layers - 1;
        ops[k] = op(CUDA_OP_GEMM, l, CUDA_W_O, 0, n);
        ops[k].residual = fr;
        xb_ready = fold_next_norm(d, &ops[k++], CUDA_NORM_FFN, CUDA_W_GATE_UP, n);
        if (xb_ready) ops[k++] = op(CUDA_OP_GEMM, l, CUDA_W_GATE_UP, 0, n);
        else k += norm_gemm(d, l, CUDA_NORM_FFN, !fr, CUDA_W_GATE_UP, 0, n, ops + k);
        ops[k] = op(CUDA_OP_GEMM, l, CUDA_W_DOWN, 0, n);
        ops[k].residual = fr;
        // the next layer's attention norm, or the final norm when the head's rows are among
        // these (the reduce normalises all n rows; the head reads its own)
        if (l + 1 < d->n_layers) xb_ready = fold_next_norm(d, &ops[k], CUDA_NORM_ATTN, CUDA_W_QKV, n);
        else xb_ready = head_n > 0 && head_row0 >= 0 && head_row0 + head_n <= n &&
                        fold_next_norm(d, &ops[k], CUDA_NORM_FINAL, CUDA_W_LM_HEAD, head_n);
        k++;
    }
    if (xb_ready) ops[k++] = op(CUDA_OP_GEMM, -1, CUDA_W_LM_HEAD, head_row0, head_n);
    else k += cuda_plan_head(d, head_row0, head_n, ops + k);
    cuda_plan_prefetch(d, ops, k);
    return k;
}

// ETX_PREFETCH=0: no L2 prefetch (cuda_plan_prefetch).
static int plan_prefetches(void) {
    static int on = -1;
    return env_switch("ETX_PREFETCH", &on);
}

static size_t gemm_weight_bytes(const CudaDims* d, CudaWeight w) {
    int in = 0, out = 0;
    cuda_gemm_shape(d, w, &in, &out);
    return (size_t)in * out * 2;
}

void cuda_plan_prefetch(const CudaDims* d, CudaOp* ops, int n_ops) {
    if (!plan_prefetches() || !d->fused_residual) return;
    // the card as far as a GEMM's napkin math needs it: its SMs (the fill) and L2 (whether
    // x is re-read from DRAM: not at the few rows that prefetch)
    CudaCard card;
    memset(&card, 0, sizeof card);
    card.sms = d->sms > 0 ? d->sms : 132;
    card.l2_bytes = 50e6;
    int j = -1;      // the GEMM whose weights are prefetched next
    size_t joff = 0; // ... from this byte on
    for (int i = 0; i < n_ops; i++) {
        CudaOp* o = &ops[i];
        if (o->kind != CUDA_OP_GEMM) continue;
        if (j <= i) { // the next GEMM after this one
            j = i + 1, joff = 0;
            while (j < n_ops && ops[j].kind != CUDA_OP_GEMM) j++;
        }
        int in = 0, out = 0;
        cuda_gemm_shape(d, (CudaWeight)o->which, &in, &out);
        // gemm_tc_kernel's calls only (the one-tile kernel at <= 8 rows, tensor cores)
        if (j >= n_ops || o->n > 8 || in % 8 != 0 || !etx_gemm_cost(1, 64, 16, 0, 0, card.sms).tensor) continue;
        const EtxCost c = cuda_op_cost(d, o, 1, &card);
        const double per_sm = c.per_sm > 0 ? c.per_sm : 2.0, fill = c.busy / (per_sm * card.sms);
        if (fill >= 1.0 || fill <= 0.0) continue;
        double idle = c.bytes * (1.0 / fill - 1.0); // c.bytes: own DRAM bytes, less what L2 holds
        if (idle > (double)CUDA_PF_MAX) idle = (double)CUDA_PF_MAX;
        const size_t wb = gemm_weight_bytes(d, (CudaWeight)ops[j].which);
        size_t take = (size_t)idle;
        if (take > wb - joff) take = wb - joff;
        take &= ~(size_t)15;
        if (take == 0) continue;
        o->pf_which = ops[j].which, o->pf_layer = ops[j].layer, o->pf_off = joff, o->pf_bytes = take;
        ops[j].prefetched += take;
        joff += take;
        if (joff >= wb) { // that matrix is all asked for: the next GEMM's
            joff = 0;
            do j++;
            while (j < n_ops && ops[j].kind != CUDA_OP_GEMM);
        }
    }
}

int cuda_plan_sampling(const CudaDims* d, int np, int metrics, int fallback, CudaOp* ops) {
    (void)d;
    int k = 0;
    if (np <= 0) return 0;
    ops[k++] = op(CUDA_OP_VOCAB, -1, 0, 0, np);
    if (metrics) ops[k++] = op(CUDA_OP_METRICS, -1, 0, 0, np);
    ops[k] = op(CUDA_OP_POLICY, -1, fallback != 0, 0, np);
    ops[k++].capture = metrics; // the policy reads the attention signals
    
    return k;
}

void cuda_gemm_shape(const CudaDims* d, CudaWeight w, int* in, int* out) {
    switch (w) {
    case CUDA_W_QKV: *in = d->dim, *out = d->qkv_dim; break;
    case CUDA_W_O: *in = d->q_dim, *out = d->dim; break;
    case CUDA_W_GATE_UP: *in = d->dim, *out = 2 * d->hidden; break;
    case CUDA_W_DOWN: *in = d->hidden, *out = d->dim; break;
    default: *in = d->dim, *out = d->vocab; break;
    }
}

size_t cuda_plan_ws_bytes(const CudaDims* d, int n, int core_swiglu) {
    return d->gemm_ws_bytes ? d->gemm_ws_bytes : cuda_gemm_ws_bytes(d, n, n, core_swiglu);
}

size_t cuda_gemm_ws_bytes(const CudaDims* d, int max_rows, int max_batch, int core_swiglu) {
    const size_t split = etx_gemm_tc_workspace_bytes(max_batch, d->qkv_dim > d->dim ? d->qkv_dim : d->dim);
    const size_t gu = core_swiglu ? (size_t)max_rows * 2 * d->hidden * sizeof(float) : 0;
    return split > gu ? split : gu;
}

const char* cuda_op_name(const CudaOp* o, char* buf, size_t size) {
    static const char* gemm[] = {"gemm qkv", "gemm o", "gemm gate/up + swiglu", "gemm down", "gemm lm head",
                                 // the norm folded in (CudaOp.norm)
                                 "norm + gemm qkv", "?", "norm + gemm gate/up + swiglu", "?", "norm + gemm lm head",
                                 // the next norm in the split reduce (CudaOp.norm_next)
                                 "?", "gemm o + norm", "?", "gemm down + norm", "?",
                                 // the Q/K/V biases in the epilogue (CudaOp.bias)
                                 "gemm qkv + bias", "norm + gemm qkv + bias"};
    static const char* norm[] = {"norm attn", "norm ffn", "norm final"};
    const char* what = "?";
    switch (o->kind) {
    case CUDA_OP_EMBED: what = "embed"; break;
    case CUDA_OP_NORM: what = norm[o->which]; break;
    case CUDA_OP_GEMM: what = o->bias ? gemm[15 + (o->norm != 0)] : gemm[o->which + (o->norm ? 5 : o->norm_next ? 10 : 0)]; break;
    case CUDA_OP_QKV_PREP: what = "qkv bias + qk norm"; break;
    case CUDA_OP_ROPE_KV: what = "rope + kv append"; break;
    case CUDA_OP_ATTN:
        what = o->which ? (o->capture ? "rope + attention + capture" : "rope + attention")
                        : (o->capture ? "attention + capture" : "attention");
        break;
    case CUDA_OP_VOCAB: what = "vocab pass"; break;
    case CUDA_OP_METRICS: what = "attention metrics"; break;
    case CUDA_OP_POLICY: what = "policy"; break;
    case CUDA_OP_GATHER: what = "gather head rows"; break;
    }
    if (o->layer >= 0)
        snprintf(buf, size, "L%d %s", o->layer, what);
    else
        snprintf(buf, size, "%s", what);
    return buf;
}

CudaDims cuda_dims_for(const etx_model* m, int max_seq_len, int block_size) {
    const ModelConfig* c = &m->cfg;
    CudaDims d;
    memset(&d, 0, sizeof d);
    d.dim = c->dim, d.hidden = c->hidden_dim, d.vocab = c->vocab_size, d.n_layers = c->n_layers;
    d.n_heads = c->n_heads, d.n_kv_heads = c->n_kv_heads, d.hd = c->head_dim;
    d.hdp = c->head_dim <= 64 ? 64 : 128;
    d.q_dim = d.n_heads * d.hdp, d.kv_dim = d.n_kv_heads * d.hdp, d.qkv_dim = d.q_dim + 2 * d.kv_dim;
    d.max_seq_len = max_seq_len, d.block_size = block_size;
    d.tied = m->w.lm_head == m->w.token_embedding;
    d.qkv_bias = c->qkv_bias != 0, d.qk_norm = c->qk_norm != 0;
    d.fused_residual = 1; // one GPU (a tensor-parallel backend clears it for its shards' plan)
    d.sms = 0;            // no device: the plan's 132 (cuda_predict_decode_step: the card's)
    return d;
}

// -- cost model

// Datasheet figures (NVIDIA H100 and H200 SXM product briefs): DRAM bandwidth, dense
// FP32 (CUDA cores) and BF16 (tensor cores, without sparsity) throughput, SMs, L2.
// Two figures are not on a datasheet:
//   - the L2 load bandwidth, 8.9 TB/s: calibrated from etx's own tensor-core GEMM on an
//     H200 (142 TFLOP/s at 4096^3, benchmarks/results/gpu-tc-h200-2026-12-04.md, where
//     the kernel loads 1 byte from L2 per 16 FLOPs: gemm_tc.cu); the H100 has the same
//     GH100 L2 and is given the same figure (an assumption);
//   - the launch cost: ~1.5 us per kernel node of a replayed graph (an assumption that
//     session 9's H200 profile agrees with in size), and 0.7 us with programmatic
//     dependent launch, whose launch and block setup overlap the previous kernel's tail
//     (an assumption: benchmarks/gpu_check.sh's bench stage measures ETX_PDL=0 beside the
//     default, which settles it).
const CudaCard cuda_cards[] = {
    {"h100",
     "H100 SXM (datasheet: 3.35 TB/s, 67 TFLOP/s f32, 989 TFLOP/s bf16, 132 SMs, 50 MB L2; L2 loads 8.9 TB/s, "
     "calibrated on an H200)",
     3.35e12, 67e12, 989e12, 132, 50e6, 8.9e12, 1.5e-6, 0.7e-6},
    {"h200",
     "H200 SXM (datasheet: 4.8 TB/s, 67 TFLOP/s f32, 989 TFLOP/s bf16, 132 SMs, 50 MB L2; L2 loads 8.9 TB/s, "
     "calibrated)",
     4.8e12, 67e12, 989e12, 132, 50e6, 8.9e12, 1.5e-6, 0.7e-6},
};
const int cuda_n_cards = (int)(sizeof cuda_cards / sizeof cuda_cards[0]);

const CudaCard* cuda_card_find(const char* name) {
    for (int i = 0; i < cuda_n_cards; i++)
        if (strcmp(cuda_cards[i].name, name) == 0) return &cuda_cards[i];
    return NULL;
}

static EtxAttnShape attn_shape(const CudaDims* d) {
    EtxAttnShape s = {d->n_heads, d->n_kv_heads, d->hdp, d->block_size,
                      (d->max_seq_len + d->block_size - 1) / d->block_size};
    return s;
}

EtxCost cuda_op_cost(const CudaDims* d, const CudaOp* o, int len, const CudaCard* card) {
    int in = 0, out = 0;
    switch (o->kind) {
    case CUDA_OP_EMBED: return etx_embed_cost(o->n, d->dim);
    case CUDA_OP_NORM: return etx_rmsnorm_cost(o->n, d->dim, o->residual);
    case CUDA_OP_GEMM:
        cuda_gemm_shape(d, (CudaWeight)o->which, &in, &out);
    {   // the backend's workspace when built for batches of o->n (cuda_gemm_ws_bytes), on the
        // path the model assumes (tensor cores unless ETX_GEMM=cuda-cores or in % 8 != 0)
        const size_t ws = cuda_plan_ws_bytes(d, o->n, !etx_gemm_cost(1, d->dim, 16, 0, 0, card->sms).tensor);
        const int sms = card->sms;
        EtxCost c;
        if (o->norm_next) c = etx_gemm_add_rmsnorm_cost(o->n, in, out, card->l2_bytes, ws, sms);
        else if (o->norm) c = etx_gemm_rmsnorm_cost(o->n, in, out, card->l2_bytes, o->which == CUDA_W_GATE_UP, sms);
        else if (o->which == CUDA_W_GATE_UP) c = etx_gemm_swiglu_cost(o->n, in, out, card->l2_bytes, ws, sms);
        else if (o->residual) c = etx_gemm_add_cost(o->n, in, out, card->l2_bytes, ws, sms);
        else c = etx_gemm_cost(o->n, in, out, card->l2_bytes, ws, sms);
        // the L2 prefetch: weights an earlier launch asked for come from L2 (its loads are
        // counted in c.l2 already); this launch's own request for a later one
        c.bytes -= (double)o->prefetched;
        c.pf = (double)o->pf_bytes;
        if (o->bias) c.bytes += (double)out * 4; // the bias, read by every block (from L2 after the first)
        return c;
    }
    case CUDA_OP_QKV_PREP: return etx_qkv_prep_cost(o->n, d->qkv_bias, d->qk_norm, attn_shape(d));
    case CUDA_OP_ROPE_KV: return etx_rope_kv_append_cost(o->n, attn_shape(d));
    case CUDA_OP_ATTN:
        if (o->which) return etx_attn_rows_rope_cost(o->n, len, d->max_seq_len, attn_shape(d), o->capture, card->sms);
        return etx_attn_rows_cost(o->n, len, d->max_seq_len, attn_shape(d), o->capture, card->sms);
    case CUDA_OP_VOCAB: return etx_vocab_pass_cost(o->n, d->vocab, ETX_TOPK);
    case CUDA_OP_METRICS: return etx_attn_metrics_cost(o->n, d->n_heads, len, d->max_seq_len);
    case CUDA_OP_POLICY: return etx_policy_step_cost(o->n, o->which);
    case CUDA_OP_GATHER: { // x alone with fused_residual (delta holds nothing then)
        EtxCost c = etx_gather_rows2_cost(o->n, d->dim);
        if (d->fused_residual) c.bytes /= 2;
        return c;
    }
    }
    EtxCost zero = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    return zero;
}

double cuda_card_launch_s(const CudaCard* card) {
    const char* e = getenv("ETX_PDL");
    return e && strcmp(e, "0") == 0 ? card->launch_s : card->launch_pdl_s;
}

double cuda_cost_seconds(const EtxCost* c, const CudaCard* card) {
    const double t_mem = c->bytes / card->bandwidth, t_l2 = c->l2 / card->l2_bandwidth;
    const double t_math = c->flops / (c->tensor ? card->tensor_flops : card->fp32_flops);
    const double per_sm = c->per_sm > 0 ? c->per_sm : 2.0;
    double fill = c->busy / (per_sm * card->sms); // working blocks per "per_sm per SM"
    if (fill > 1.0) fill = 1.0;
    if (fill <= 0.0) fill = 1.0 / (per_sm * card->sms);
    double t = t_mem > t_math ? t_mem : t_math;
    if (t_l2 > t) t = t_l2;
    // an L2 prefetch (c->pf) streams while the grid waits on its own loads' latency: it
    // costs time only once the DRAM bytes together take longer than the grid does
    t /= fill;
    if (c->pf > 0 && (c->bytes + c->pf) / card->bandwidth > t) t = (c->bytes + c->pf) / card->bandwidth;
    return c->launches * cuda_card_launch_s(card) + t;
}

double cuda_floor_bytes(const CudaDims* d, int n, int len) {
    const double per_layer = (double)d->qkv_dim * d->dim + (double)d->dim * d->q_dim + 3.0 * d->hidden * d->dim;
    const double weights = (d->n_layers * per_layer + (double)d->vocab * d->dim) * 2;
    const double kv = 2.0 * d->n_layers * (double)n * len * d->kv_dim * 2;
    const double logits = 2.0 * n * (double)d->vocab * 4;
    return weights + kv + logits;
}

int cuda_predict_decode_step(const CudaDims* d, int n, int len, int metrics, const CudaCard* card,
                             CudaStepPrediction* out) {
    if (d->n_layers > 128) return -1;
    memset(out, 0, sizeof *out);
    CudaDims dc = *d; // planned for the card's SMs unless the dims are a backend's
    if (dc.sms <= 0) dc.sms = card->sms;
    d = &dc;
    int k = cuda_plan_forward(d, n, 1, metrics, 0, n, out->ops);
    k += cuda_plan_sampling(d, n, metrics, 0, out->ops + k); // greedy / entropix: within the candidates
    out->n_ops = k;
    for (int i = 0; i < k; i++) {
        out->cost[i] = cuda_op_cost(d, &out->ops[i], len, card);
        out->seconds[i] = cuda_cost_seconds(&out->cost[i], card);
        out->total_s += out->seconds[i];
        out->launches += out->cost[i].launches;
    }
    out->floor_s = cuda_floor_bytes(d, n, len) / card->bandwidth;
    return 0;
}
