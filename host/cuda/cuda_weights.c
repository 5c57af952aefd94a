/*
 * cuda_weights.c — the model on the device for the CUDA backend: f32 weights (rows of a
 * matrix kept as quantized blocks come from model_weight_rows) converted to bf16 on the host
 * (round to nearest even), the fused projections ([wq; wk; wv] and
 * [w_gate; w_up]) with heads padded to the kernels' head_dim (cuda_backend.h), f32 norms,
 * the padded RoPE frequencies, and the per-layer paged K/V pools.
 */
#include <math.h>
#include <string.h>

#include "bf16.h"
#include "cpu/cpu_ops.h"
#include "cuda/cuda_backend.h"
#include "device.h"

etx_status cuda_alloc(CudaBackend* b, void** p, size_t bytes, const char* what) {
    *p = NULL;
    if (bytes == 0) return etx_ok();
    *p = etx_dev_malloc(bytes);
    if (!*p)
        return etx_error(ETX_ERR_NOMEM,
                         "CUDA backend: out of device memory for %s (%zu bytes asked, %zu already allocated on %s)",
                         what, bytes, b->dev_bytes, etx_dev_name());
    b->dev_bytes += bytes;
    return etx_ok();
}

// Where element j of a head of hd elements sits in a padded head of hdp (rotate-half
// pairs (j, j + hd/2) land on (j', j' + hdp/2)).
static int pad_index(int j, int hd, int hdp) { return j < hd / 2 ? j : hdp / 2 + j - hd / 2; }

// dst rows [row0 ..) of a (.., cols) bf16 host matrix <- rows from0 .. from0 + rows - 1 of
// src (.., cols) f32 * scale (src NULL: its rows dequantized from the kept blocks q,
// model_weight_rows); with heads (hd > 0), row h * hd + j of the slice goes to
// row0 + h * hdp + pad_index(j). A tensor-parallel shard takes its heads, hidden units
// or vocabulary ids as such a slice (from0 > 0).
static void put_rows(etx_bf16* dst, int row0, const float* src, const QuantMatrix* q, int from0, int rows, int cols,
                     float scale, int hd, int hdp) {
    float* buf = src ? NULL : xmalloc((size_t)cols * sizeof(float));
    for (int r = 0; r < rows; r++) {
        const int to = row0 + (hd > 0 ? (r / hd) * hdp + pad_index(r % hd, hd, hdp) : r);
        const float* s = src ? src + (size_t)(from0 + r) * cols : buf;
        if (!src) model_weight_rows(NULL, q, cols, from0 + r, from0 + r + 1, buf);
        etx_bf16* d = dst + (size_t)to * cols;
        for (int c = 0; c < cols; c++) d[c] = etx_bf16_from_f32(s[c] * scale);
    }
    free(buf);
}

// dst (n_heads heads of hdp, zeroed) <- src (n_heads heads of hd) * scale, element j of a
// head at pad_index(j).
static void put_vec(float* dst, const float* src, int n_heads, float scale, int hd, int hdp) {
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < hd; j++) dst[(size_t)h * hdp + pad_index(j, hd, hdp)] = src[(size_t)h * hd + j] * scale;
}

// Uploads host bf16 (n elements) into new device memory.
static etx_status upload_bf16(CudaBackend* b, etx_bf16** out, const etx_bf16* h, size_t n, const char* what) {
    ETX_TRY(cuda_alloc(b, (void**)out, n * sizeof(etx_bf16), what));
    etx_dev_upload(*out, h, n * sizeof(etx_bf16));
    etx_dev_mark_readonly(*out, n * sizeof(etx_bf16)); // GEMMs load weights before their grid-dependency wait
    return etx_ok();
}

static etx_status upload_f32(CudaBackend* b, float** out, const float* h, size_t n, const char* what) {
    ETX_TRY(cuda_alloc(b, (void**)out, n * sizeof(float), what));
    etx_dev_upload(*out, h, n * sizeof(float));
    etx_dev_mark_readonly(*out, n * sizeof(float));
    return etx_ok();
}

static etx_status upload_layer(CudaBackend* b, const LayerWeights* w, CudaLayer* L, etx_bf16* tmp) {
    const ModelConfig* c = &b->m->cfg;
    const int dim = b->dim, hid = b->hidden, hd = b->hd, hdp = b->hdp;
    ETX_TRY(upload_f32(b, &L->attn_norm, w->attn_norm, dim, "attn_norm"));
    ETX_TRY(upload_f32(b, &L->ffn_norm, w->ffn_norm, dim, "ffn_norm"));
    // [wq; wk; wv], (qkv_dim, dim), heads padded; q scaled by s = sqrt(hdp / hd) so that the
    // kernels' hdp^-0.5 q.k is the model's hd^-0.5 q.k. Without QK-norm, s is folded into
    // wq and bq: s (Wq x + bq) = (s Wq) x + s bq. With QK-norm it cannot be: the norm of a
    // head, n(q)_j = w_j q_j / sqrt(sum_i q_i^2 / hd + eps) (the sum over the hd real
    // elements, padding lanes being zero, hence / hd and not / hdp: etx_qkv_prep), gives
    // n(s q) = n(q) up to eps, i.e. undoes the scale. So then wq and bq are unscaled and s
    // goes into the norm's weights: s n(q) = (s w) q / sqrt(...); k is never scaled.
    memset(tmp, 0, (size_t)b->qkv_dim * dim * sizeof(etx_bf16));
    // (a tensor-parallel shard: its heads h0 .. h0 + nh - 1 and KV heads kvh0 .. + nkv - 1)
    const int nh = b->shape.n_heads, nkv = b->shape.n_kv_heads;
    const float s = sqrtf((float)hdp / (float)hd);
    const float qscale = c->qk_norm ? 1.0f : s;
    put_rows(tmp, 0, w->wq, &w->wq_q, b->h0 * hd, nh * hd, dim, qscale, hd, hdp);
    put_rows(tmp, b->q_dim, w->wk, &w->wk_q, b->kvh0 * hd, nkv * hd, dim, 1.0f, hd, hdp);
    put_rows(tmp, b->q_dim + b->kv_dim, w->wv, &w->wv_q, b->kvh0 * hd, nkv * hd, dim, 1.0f, hd, hdp);
    ETX_TRY(upload_bf16(b, &L->wqkv, tmp, (size_t)b->qkv_dim * dim, "wqkv"));
    if (c->qkv_bias) { // [bq * qscale; bk; bv], padded like wqkv's rows
        float* bias = xcalloc((size_t)b->qkv_dim, sizeof(float));
        put_vec(bias, w->bq + (size_t)b->h0 * hd, nh, qscale, hd, hdp);
        put_vec(bias + b->q_dim, w->bk + (size_t)b->kvh0 * hd, nkv, 1.0f, hd, hdp);
        put_vec(bias + b->q_dim + b->kv_dim, w->bv + (size_t)b->kvh0 * hd, nkv, 1.0f, hd, hdp);
        etx_status st = upload_f32(b, &L->bqkv, bias, (size_t)b->qkv_dim, "bqkv");
        free(bias);
        ETX_TRY(st);
    }
    if (c->qk_norm) { // (hdp) each, padding zero; q's carries s (above)
        float qn[128] = {0}, kn[128] = {0};
        put_vec(qn, w->q_norm, 1, s, hd, hdp);
        put_vec(kn, w->k_norm, 1, 1.0f, hd, hdp);
        ETX_TRY(upload_f32(b, &L->q_norm, qn, (size_t)hdp, "q_norm"));
        ETX_TRY(upload_f32(b, &L->k_norm, kn, (size_t)hdp, "k_norm"));
    }
    // wo (dim, q_dim): column h * hd + j -> h * hdp + pad_index(j) (a shard: the columns of
    // its heads, so its product is a partial sum over them, all-reduced across shards)
    memset(tmp, 0, (size_t)dim * b->q_dim * sizeof(etx_bf16));
    const int qd = c->n_heads * hd, k0 = b->h0 * hd, kn = nh * hd;
    float* row = xmalloc((size_t)(qd > c->hidden_dim ? qd : c->hidden_dim) * sizeof(float));
    for (int r = 0; r < dim; r++) {
        model_weight_rows(w->wo, &w->wo_q, qd, r, r + 1, row);
        for (int k = 0; k < kn; k++)
            tmp[(size_t)r * b->q_dim + (k / hd) * hdp + pad_index(k % hd, hd, hdp)] = etx_bf16_from_f32(row[k0 + k]);
    }
    ETX_TRY(upload_bf16(b, &L->wo, tmp, (size_t)dim * b->q_dim, "wo"));
    // w_gate and w_up rows and w_down columns of the shard's hidden units f0 .. f0 + hid - 1;
    // gate and up interleaved unit by unit (row 2u: gate of unit u, 2u + 1: its up), the
    // layout etx_gemm_bf16_swiglu pairs in its epilogue
    put_rows(tmp, 0, w->w_gate, &w->w_gate_q, b->f0, hid, dim, 1.0f, 0, 0);
    put_rows(tmp, hid, w->w_up, &w->w_up_q, b->f0, hid, dim, 1.0f, 0, 0);
    etx_bf16* pairs = xmalloc((size_t)2 * hid * dim * sizeof(etx_bf16));
    for (int u = 0; u < hid; u++) {
        memcpy(pairs + (size_t)(2 * u) * dim, tmp + (size_t)u * dim, (size_t)dim * sizeof(etx_bf16));
        memcpy(pairs + (size_t)(2 * u + 1) * dim, tmp + (size_t)(hid + u) * dim, (size_t)dim * sizeof(etx_bf16));
    }
    etx_status gu_st = upload_bf16(b, &L->wgu, pairs, (size_t)2 * hid * dim, "w_gate_up");
    free(pairs);
    ETX_TRY(gu_st);
    for (int r = 0; r < dim; r++) {
        model_weight_rows(w->w_down, &w->w_down_q, c->hidden_dim, r, r + 1, row);
        for (int k = 0; k < hid; k++) tmp[(size_t)r * hid + k] = etx_bf16_from_f32(row[b->f0 + k]);
    }
    free(row);
    ETX_TRY(upload_bf16(b, &L->wdown, tmp, (size_t)dim * hid, "w_down"));
    return etx_ok();
}

etx_status cuda_upload_model(CudaBackend* b) {
    const etx_model* m = b->m;
    const ModelConfig* c = &m->cfg;
    const int dim = b->dim;
    const size_t bytes0 = b->dev_bytes;
    b->layers = xcalloc((size_t)b->n_layers, sizeof(CudaLayer));
    // one host staging buffer as large as the largest matrix
    size_t big = (size_t)b->vocab_all * dim;
    const size_t per_layer[4] = {(size_t)b->qkv_dim * dim, (size_t)dim * b->q_dim, (size_t)2 * b->hidden * dim,
                                 (size_t)dim * b->hidden};
    for (int i = 0; i < 4; i++)
        if (per_layer[i] > big) big = per_layer[i];
    etx_bf16* tmp = malloc(big * sizeof(etx_bf16));
    if (!tmp) return etx_error(ETX_ERR_NOMEM, "CUDA backend: no host memory to stage the weights (%zu bytes)", big * 2);
    etx_status st = etx_ok();
    for (int l = 0; l < b->n_layers && st.code == ETX_OK; l++) st = upload_layer(b, &m->w.layers[l], &b->layers[l], tmp);
    if (st.code == ETX_OK) {
        // every shard holds the whole table (a lookup reads a few rows)
        put_rows(tmp, 0, m->w.token_embedding, &m->w.token_embedding_q, 0, b->vocab_all, dim, 1.0f, 0, 0);
        st = upload_bf16(b, &b->emb, tmp, (size_t)b->vocab_all * dim, "token_embedding");
    }
    if (st.code == ETX_OK) {
        if (c->tied_embeddings && b->tp == 1) {
            b->lm_head = b->emb; // tied: uploaded once
        } else { // untied, or a shard's rows vocab0 .. vocab0 + vocab - 1
            const float* src = c->tied_embeddings ? m->w.token_embedding : m->w.lm_head;
            const QuantMatrix* q = c->tied_embeddings ? &m->w.token_embedding_q : &m->w.lm_head_q;
            put_rows(tmp, 0, src, q, b->vocab0, b->vocab, dim, 1.0f, 0, 0);
            st = upload_bf16(b, &b->lm_head, tmp, (size_t)b->vocab * dim, "lm_head");
        }
    }
    free(tmp);
    if (st.code == ETX_OK) st = upload_f32(b, &b->final_norm, m->w.final_norm, dim, "final_norm");
    // what a decode step reads: everything so far but an embedding table that is not the LM head
    b->weight_bytes =
        b->dev_bytes - bytes0 - (b->lm_head != b->emb ? (size_t)b->vocab_all * dim * sizeof(etx_bf16) : 0);
    if (st.code == ETX_OK) { // RoPE frequencies of the real pairs at the padded pairs' slots
        float* f = xcalloc((size_t)b->hd / 2, sizeof(float));
        float* fp = xcalloc((size_t)b->hdp / 2, sizeof(float));
        rope_inv_freq(f, c);
        memcpy(fp, f, (size_t)b->hd / 2 * sizeof(float));
        st = upload_f32(b, &b->inv_freq, fp, (size_t)b->hdp / 2, "inv_freq");
        free(f);
        free(fp);
    }
    if (st.code == ETX_OK && m->n_eos > 0) {
        int32_t ids[8];
        for (int i = 0; i < m->n_eos; i++) ids[i] = m->eos_ids[i];
        b->n_eos = m->n_eos;
        ETX_TRY(cuda_alloc(b, (void**)&b->eos_ids, (size_t)m->n_eos * sizeof(int32_t), "eos_ids"));
        etx_dev_upload(b->eos_ids, ids, (size_t)m->n_eos * sizeof(int32_t));
    }
    return st;
}

void cuda_free_model(CudaBackend* b) {
    if (b->layers) {
        for (int l = 0; l < b->n_layers; l++) {
            CudaLayer* L = &b->layers[l];
            etx_dev_free(L->attn_norm);
            etx_dev_free(L->ffn_norm);
            etx_dev_free(L->wqkv);
            etx_dev_free(L->bqkv);
            etx_dev_free(L->q_norm);
            etx_dev_free(L->k_norm);
            etx_dev_free(L->wo);
            etx_dev_free(L->wgu);
            etx_dev_free(L->wdown);
        }
        cuda_free_kv(b, b->layers);
        free(b->layers);
        b->layers = NULL;
    }
    if (b->lm_head != b->emb) etx_dev_free(b->lm_head);
    etx_dev_free(b->emb);
    etx_dev_free(b->final_norm);
    etx_dev_free(b->inv_freq);
    etx_dev_free(b->eos_ids);
    b->lm_head = b->emb = NULL;
    b->final_norm = b->inv_freq = NULL;
    b->eos_ids = NULL;
}

etx_status cuda_alloc_kv(CudaBackend* b, CudaLayer* kv, int n_blocks) {
    const size_t bytes = (size_t)n_blocks * b->cfg.kv_block_size * b->kv_dim * sizeof(etx_bf16);
    for (int l = 0; l < b->n_layers; l++) {
        ETX_TRY(cuda_alloc(b, (void**)&kv[l].k_pool, bytes, "K cache pool"));
        ETX_TRY(cuda_alloc(b, (void**)&kv[l].v_pool, bytes, "V cache pool"));
    }
    return etx_ok();
}

void cuda_free_kv(CudaBackend* b, CudaLayer* kv) {
    for (int l = 0; l < b->n_layers; l++) {
        etx_dev_free(kv[l].k_pool);
        etx_dev_free(kv[l].v_pool);
        kv[l].k_pool = kv[l].v_pool = NULL;
    }
}
