/*
 * cuda_forward.c — the layers of the CUDA backend over a set of token rows (one prefill
 * chunk of a sequence, or a decode batch of one row per sequence), as kernel launches:
 *
 *   embed -> per layer: rmsnorm(+ previous down output) -> gemm qkv -> rope + KV append
 *   -> attention (every row over its own positions; last-layer score capture when asked) -> gemm o
 *   -> rmsnorm(+ o output) -> gemm gate/up -> swiglu -> gemm down
 *   -> final rmsnorm(+ last down output) -> gemm LM head (only the rows that need logits).
 *
 * A step's prefill chunks of several sequences run as one set of rows (one GEMM per
 * projection), and a decode batch likewise: every row is a token at a position, and every
 * kernel computes a row the same way whatever the other rows are (etx_gemm_bf16's fixed
 * order, etx_attn_rows's fixed splits, per-row norms and RoPE), so a request's bits do not
 * depend on its batch, its prefill chunking or on being recomputed after preemption.
 * Everything stays on the device; the launches depend only on host values (row counts),
 * as CUDA graph capture needs for the decode batch.
 */
#include "cuda/cuda_backend.h"
#include "embed.h"
#include "gemm.h"
#include "norm.h"
#include "rope.h"
#include "swiglu.h"

void cuda_forward_rows(CudaBackend* b, const CudaRows* r) {
    const int n = r->n, dim = b->dim, last = b->n_layers - 1;
    void* st = b->stream;
    etx_embed(b->x, b->emb, r->d_tokens, n, dim, st);
    for (int l = 0; l < b->n_layers; l++) {
        const CudaLayer* L = &b->layers[l];
        const CudaLayer* kv = &r->kv[l];
        float* scores = l == last ? r->scores : NULL;
        etx_rmsnorm_residual(b->xb, b->x, l == 0 ? NULL : b->delta, L->attn_norm, n, dim, b->eps, st);
        etx_gemm_bf16(b->qkv, b->xb, L->wqkv, n, dim, b->qkv_dim, st);
        etx_rope_kv_append(b->q, kv->k_pool, kv->v_pool, b->qkv, r->d_row_seq, r->d_row_pos, r->d_table, b->inv_freq,
                           n, b->shape, st);
        etx_attn_rows(b->att, scores, r->d_cap_row, b->cfg.max_seq_len, b->q, kv->k_pool, kv->v_pool, r->d_table,
                      r->d_row_seq, r->d_row_pos, n, b->cfg.max_seq_len, b->attn_ws, b->attn_ws_rows, b->shape, st);
        etx_gemm_bf16(b->delta, b->att, L->wo, n, b->q_dim, dim, st);
        etx_rmsnorm_residual(b->xb, b->x, b->delta, L->ffn_norm, n, dim, b->eps, st);
        etx_gemm_bf16(b->gu, b->xb, L->wgu, n, dim, 2 * b->hidden, st);
        etx_swiglu(b->hb, b->gu, n, b->hidden, st);
        etx_gemm_bf16(b->delta, b->hb, L->wdown, n, b->hidden, dim, st);
    }
    if (r->logits) cuda_forward_head(b, r->head_first, n - r->head_first, r->logits);
}

void cuda_forward_head(CudaBackend* b, int row0, int n, float* logits) {
    const size_t off = (size_t)row0 * b->dim;
    etx_rmsnorm_residual(b->xb + off, b->x + off, b->delta + off, b->final_norm, n, b->dim, b->eps, b->stream);
    etx_gemm_bf16(logits, b->xb + off, b->lm_head, n, b->dim, b->vocab, b->stream);
}
