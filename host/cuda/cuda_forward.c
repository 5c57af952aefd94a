/*
 * cuda_forward.c — the executor of the CUDA backend's launch plan (cuda_plan.h): the layers
 * over a set of token rows (prefill chunks, or a decode batch of one row per sequence) and
 * the sampling of the picks, op by op, as kernel launches:
 *
 *   embed -> per layer: rmsnorm -> gemm qkv
 *   -> (qwen: + biases, per-head RMSNorm of q and k) -> rope + KV append
 *   -> attention (every row over its own positions; last-layer score capture when asked;
 *      for a decode batch the rope and append are part of the attention launch)
 *   -> gemm o, added into the residual stream x
 *   -> rmsnorm -> gemm gate/up with SwiGLU as its epilogue -> gemm down, added into x
 *   -> final rmsnorm -> gemm LM head (only the rows that need logits).
 * Each rmsnorm is its own launch, or (a few rows: etx_gemm_rmsnorm_fuses) folded into the
 * GEMM after it, which then reads x itself. With tensor parallelism the O and down
 * projections write delta instead, all-reduced across the shards, and the next norm adds it
 * (CudaDims.fused_residual).
 *
 * A step's prefill chunks of several sequences run as one set of rows (one GEMM per
 * projection), and a decode batch likewise: every row is a token at a position, and every
 * kernel computes a row the same way whatever the other rows are (etx_gemm_bf16's fixed
 * order, etx_attn_rows's fixed splits, per-row norms and RoPE), so a request's bits do not
 * depend on its batch, its prefill chunking or on being recomputed after preemption.
 * Everything stays on the device; the launches depend only on host values (row counts),
 * as CUDA graph capture needs for the decode batch. What runs is the plan's ops and
 * nothing else, so the cost model, which walks the same plan, sees every launch.
 */
#include <stdio.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "device.h"
#include "embed.h"
#include "gather.h"
#include "gemm.h"
#include "norm.h"
#include "qkv_prep.h"
#include "rope.h"

// The weight, input and output of projection w of layer l (the LM head: rows from row0).
static void gemm_operands(CudaBackend* b, const CudaRows* r, const CudaOp* o, const etx_bf16** w, const etx_bf16** x,
                          float** y) {
    const CudaLayer* L = o->layer >= 0 ? &b->layers[o->layer] : NULL;
    switch ((CudaWeight)o->which) {
    case CUDA_W_QKV: *w = L->wqkv, *x = b->xb, *y = b->qkv; break;
    case CUDA_W_O: *w = L->wo, *x = b->att, *y = b->delta; break;
    case CUDA_W_GATE_UP: *w = L->wgu, *x = b->xb, *y = NULL; break; // etx_gemm_bf16_swiglu into hb
    case CUDA_W_DOWN: *w = L->wdown, *x = b->hb, *y = b->delta; break;
    case CUDA_W_LM_HEAD: *w = b->lm_head, *x = b->xb + (size_t)o->row0 * b->dim, *y = r->logits; break;
    }
}

// Weight matrix w of layer l (the LM head's: any l), as the GEMMs read it.
static const etx_bf16* weight_matrix(const CudaBackend* b, CudaWeight w, int l) {
    switch (w) {
    case CUDA_W_QKV: return b->layers[l].wqkv;
    case CUDA_W_O: return b->layers[l].wo;
    case CUDA_W_GATE_UP: return b->layers[l].wgu;
    case CUDA_W_DOWN: return b->layers[l].wdown;
    default: return b->lm_head;
    }
}

// The weight of a norm (the final one, or layer l's before attention or the MLP).
static const float* norm_weight(const CudaBackend* b, int l, CudaNorm which) {
    return which == CUDA_NORM_FINAL ? b->final_norm
           : which == CUDA_NORM_ATTN ? b->layers[l].attn_norm
                                     : b->layers[l].ffn_norm;
}

void cuda_run_op(CudaBackend* b, const CudaRows* r, const CudaOp* o) {
    void* st = b->stream;
    const int n = o->n, dim = b->dim;
    const size_t off = (size_t)o->row0 * dim;
    switch (o->kind) {
    case CUDA_OP_EMBED: etx_embed(b->x, b->emb, r->d_tokens, n, dim, st); break;
    case CUDA_OP_NORM: {
        const float* w = norm_weight(b, o->layer, (CudaNorm)o->which);
        etx_rmsnorm_residual(b->xb + off, b->x + off, o->residual ? b->delta + off : NULL, w, n, dim, b->eps, st);
        break;
    }
    case CUDA_OP_GEMM: {
        const etx_bf16 *w = NULL, *x = NULL;
        float* y = NULL;
        int in = 0, out = 0;
        gemm_operands(b, r, o, &w, &x, &y);
        cuda_gemm_shape(&b->dims, (CudaWeight)o->which, &in, &out);
        // the plan's L2 prefetch of a later projection's weights rides on this call (taken
        // by the tensor-core GEMM it makes; the plan sets it only for those)
        if (o->pf_bytes && etx_gemm_uses_tensor_cores())
            etx_gemm_prefetch_next((const char*)weight_matrix(b, (CudaWeight)o->pf_which, o->pf_layer) + o->pf_off,
                                   o->pf_bytes);
        if (o->norm) { // x's rows normalised by the GEMM itself (xb written only on its fallback)
            const float* gamma = norm_weight(b, o->layer, (CudaNorm)(o->norm - 1));
            if (o->which == CUDA_W_GATE_UP)
                etx_gemm_bf16_rmsnorm_swiglu(b->hb, b->x + off, gamma, b->eps, b->xb + off, w, n, in, out, b->gemm_ws,
                                             b->gemm_ws_bytes, st);
            else
                etx_gemm_bf16_rmsnorm(y, b->x + off, gamma, b->eps, b->xb + off, w,
                                      o->bias ? b->layers[o->layer].bqkv : NULL, n, in, out, b->gemm_ws,
                                      b->gemm_ws_bytes, st);
        } else if (o->which == CUDA_W_GATE_UP) { // SwiGLU in the GEMM's epilogue: hb = silu(gate) * up
            etx_gemm_bf16_swiglu(b->hb, x, w, n, in, out, b->gemm_ws, b->gemm_ws_bytes, st);
        } else if (o->residual && o->norm_next) { // x += y, then the next norm into xb (its reduce)
            const CudaNorm nn = (CudaNorm)(o->norm_next - 1);
            const float* gamma = norm_weight(b, nn == CUDA_NORM_ATTN ? o->layer + 1 : o->layer, nn);
            etx_gemm_bf16_add_rmsnorm(b->x + off, x, w, gamma, b->eps, b->xb + off, n, in, out, b->gemm_ws,
                                      b->gemm_ws_bytes, st);
        } else if (o->residual) { // the residual stream takes the projection: x += y
            etx_gemm_bf16_add(b->x + off, x, w, n, in, out, b->gemm_ws, b->gemm_ws_bytes, st);
        } else if (o->bias) { // the QKV projection with qwen2's biases in its epilogue
            etx_gemm_bf16_bias(y, x, w, b->layers[o->layer].bqkv, n, in, out, b->gemm_ws, b->gemm_ws_bytes, st);
        } else {
            etx_gemm_bf16_ws(y, x, w, n, in, out, b->gemm_ws, b->gemm_ws_bytes, st);
        }
        break;
    }
    case CUDA_OP_QKV_PREP: {
        const CudaLayer* L = &b->layers[o->layer];
        etx_qkv_prep(b->qkv, L->bqkv, L->q_norm, L->k_norm, n, b->hd, b->eps, b->shape, st);
        break;
    }
    case CUDA_OP_ROPE_KV: {
        const CudaLayer* kv = &r->kv[o->layer];
        etx_rope_kv_append(b->q, kv->k_pool, kv->v_pool, b->qkv, r->d_row_seq, r->d_row_pos, r->d_table, b->inv_freq,
                           n, b->shape, st);
        break;
    }
    case CUDA_OP_ATTN: {
        const CudaLayer* kv = &r->kv[o->layer];
        if (o->which) { // decode rows: RoPE of q and k, and the append, in the attention launch
            etx_attn_rows_rope(b->att, o->capture ? r->scores : NULL, r->d_cap_row, b->cfg.max_seq_len, b->qkv,
                               kv->k_pool, kv->v_pool, r->d_table, r->d_row_seq, r->d_row_pos, b->inv_freq, n,
                               b->cfg.max_seq_len, b->attn_ws, b->attn_ws_rows, b->shape, st);
            break;
        }
        etx_attn_rows(b->att, o->capture ? r->scores : NULL, r->d_cap_row, b->cfg.max_seq_len, b->q, kv->k_pool,
                      kv->v_pool, r->d_table, r->d_row_seq, r->d_row_pos, n, b->cfg.max_seq_len, b->attn_ws,
                      b->attn_ws_rows, b->shape, st);
        break;
    }
    case CUDA_OP_GATHER: // delta too when the final norm still adds it (no fused_residual)
        etx_gather_rows2(b->x, b->dims.fused_residual ? NULL : b->delta, b->d_head_rows, n, o->row0, dim, st);
        break;
    case CUDA_OP_VOCAB:
        etx_vocab_pass(b->logits, b->d_pick_row, n, b->vocab, ETX_TOPK, b->stats, b->cand, NULL, b->vp_scratch, st);
        break;
    case CUDA_OP_METRICS:
        etx_attn_metrics(b->scores, b->d_pick_row, n, b->m->cfg.n_heads, b->cfg.max_seq_len, b->d_n_pos, b->d_window, b->attn,
                         b->am_scratch, st);
        break;
    case CUDA_OP_POLICY: {
        EtxPolicyArgs a = {.n_seqs = n, .vocab = b->vocab, .logits = b->logits,
                           .logit_row = b->d_pick_row, .stats = b->stats, .cand = b->cand,
                           .n_cand = b->vocab < ETX_TOPK ? b->vocab : ETX_TOPK, .attn = o->capture ? b->attn : NULL,
                           .policies = b->d_policies, .states = b->d_states, .stop_ids = NULL, .eos_ids = b->eos_ids,
                           .n_eos = b->n_eos, .scratch = b->pol_scratch, .tokens = b->d_next, .done = b->d_done,
                           .trace = b->cfg.trace ? b->d_trace : NULL, .nets = b->d_nets, .ds = b->d_ds,
                           .no_fallback = !o->which};
        etx_policy_step(&a, st);
        break;
    }
    }
}

void cuda_exec_op(CudaBackend* b, const CudaRows* r, const CudaOp* o) {
    CudaProfile* p = b->prof;
    if (!p) {
        cuda_run_op(b, r, o);
        return;
    }
    etx_dev_event_record(p->ev0, b->stream);
    cuda_run_op(b, r, o);
    etx_dev_event_record(p->ev1, b->stream);
    const float ms = etx_dev_event_ms(p->ev0, p->ev1);
    char name[64];
    CudaOp summed = *o;
    summed.layer = -1;
    cuda_op_name(&summed, name, sizeof name);
    int i = 0;
    while (i < p->n && strcmp(p->rows[i].name, name)) i++;
    if (i == p->n) {
        if (p->n == 32) return;
        snprintf(p->rows[i].name, sizeof p->rows[i].name, "%s", name);
        p->rows[i].calls = 0, p->rows[i].ms = 0;
        p->n++;
    }
    p->rows[i].calls++;
    p->rows[i].ms += ms;
}

void cuda_profile_print(const CudaBackend* b) {
    const CudaProfile* p = b->prof;
    if (!p) return;
    double total = 0;
    for (int i = 0; i < p->n; i++) total += p->rows[i].ms;
    fprintf(stderr, "[etx] CUDA profile (ETX_CUDA_PROFILE=1, %s; each op timed alone, graphs off): ops summed over "
                    "the layers\n| op | calls | total ms | mean us | share |\n|---|---|---|---|---|\n",
            etx_dev_name());
    for (int i = 0; i < p->n; i++)
        fprintf(stderr, "| %s | %lld | %.3f | %.1f | %.1f%% |\n", p->rows[i].name, p->rows[i].calls, p->rows[i].ms,
                1e3 * p->rows[i].ms / (double)p->rows[i].calls, total > 0 ? 100.0 * p->rows[i].ms / total : 0.0);
    fprintf(stderr, "[etx] uploads: %s (%.0f KiB), which waited for the stream %lld times when full\n",
            b->stage ? "pinned staging arena" : "pageable (no arena)", (double)b->stage_cap / 1024.0, b->stage_waits);
}

void cuda_forward_rows(CudaBackend* b, const CudaRows* r) {
    CudaOp ops[CUDA_PLAN_OPS(b->n_layers)];
    const int head_n = r->logits ? r->n - r->head_first : 0;
    const int n_ops = cuda_plan_forward(&b->dims, r->n, r->decode, r->scores != NULL, r->head_first, head_n, ops);
    cuda_run_ops(b, r, ops, n_ops);
}

void cuda_forward_head(CudaBackend* b, int row0, int n, float* logits) {
    CudaOp ops[2];
    const CudaRows r = {.n = n, .logits = logits};
    const int n_ops = cuda_plan_head(&b->dims, row0, n, ops);
    cuda_run_ops(b, &r, ops, n_ops);
}

void cuda_forward_gathered_head(CudaBackend* b, int n, float* logits) {
    CudaOp ops[3];
    const CudaRows r = {.n = n, .logits = logits};
    const int n_ops = cuda_plan_gathered_head(&b->dims, b->max_rows, n, ops);
    cuda_run_ops(b, &r, ops, n_ops);
}

void cuda_sample(CudaBackend* b, int np, int metrics) {
    if (b->shards) { // tensor parallelism: the shards' parts merged first (cuda_tp.c)
        cuda_tp_sample(b, np, metrics);
        return;
    }
    CudaOp ops[4];
    const int n_ops = cuda_plan_sampling(&b->dims, np, metrics, b->fallback, ops);
    for (int i = 0; i < n_ops; i++) cuda_exec_op(b, NULL, &ops[i]);
}
