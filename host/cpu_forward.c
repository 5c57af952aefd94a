/*
 * cpu_forward.c — the CPU Llama forward pass: KV cache and run-state lifetimes, and
 * cpu_forward() (embedding → layers of attention + SwiGLU MLP → final norm → LM head),
 * processing long inputs in chunks of CpuRunState.max_chunk tokens.
 */
#include "cpu_forward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

// ----------------------------------------------------------------------------
// KV cache

etx_status build_kv_cache(KVCache* kv, const ModelConfig* c, int max_seq_len) {
    memset(kv, 0, sizeof *kv);
    if (c->n_layers <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0)
        return etx_error(ETX_ERR_INVALID_ARG, "kv cache: bad model shape (layers %d, kv heads %d, head_dim %d)",
                         c->n_layers, c->n_kv_heads, c->head_dim);
    if (max_seq_len <= 0) max_seq_len = c->max_seq_len;
    if (max_seq_len <= 0)
        return etx_error(ETX_ERR_INVALID_ARG, "kv cache: max_seq_len must be positive (got %d)", max_seq_len);
    kv->n_layers = c->n_layers;
    kv->kv_dim = c->n_kv_heads * c->head_dim;
    kv->max_seq_len = max_seq_len;
    kv->k = xcalloc((size_t)c->n_layers, sizeof(float*));
    kv->v = xcalloc((size_t)c->n_layers, sizeof(float*));
    return etx_ok();
}

void free_kv_cache(KVCache* kv) {
    if (kv->k)
        for (int l = 0; l < kv->n_layers; l++) free(kv->k[l]);
    if (kv->v)
        for (int l = 0; l < kv->n_layers; l++) free(kv->v[l]);
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

etx_status kv_cache_reserve(KVCache* kv, int n_positions) {
    if (n_positions > kv->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG, "kv cache: %d positions exceed max_seq_len %d", n_positions,
                         kv->max_seq_len);
    if (n_positions <= kv->capacity) return etx_ok();
    // grow to the next multiple of the chunk, at least doubling, capped at max_seq_len
    long cap = ((long)n_positions + KV_CACHE_CHUNK - 1) / KV_CACHE_CHUNK * KV_CACHE_CHUNK;
    if (cap < 2L * kv->capacity) cap = 2L * kv->capacity;
    if (cap > kv->max_seq_len) cap = kv->max_seq_len;
    size_t bytes = (size_t)cap * kv->kv_dim * sizeof(float);
    for (int l = 0; l < kv->n_layers; l++) {
        float* k = realloc(kv->k[l], bytes);
        if (!k) return etx_error(ETX_ERR_NOMEM, "kv cache: out of memory growing to %ld positions", cap);
        kv->k[l] = k;
        float* v = realloc(kv->v[l], bytes);
        if (!v) return etx_error(ETX_ERR_NOMEM, "kv cache: out of memory growing to %ld positions", cap);
        kv->v[l] = v;
    }
    kv->capacity = (int)cap;
    return etx_ok();
}

void kv_cache_reset(KVCache* kv) { kv->pos = 0; }

// ----------------------------------------------------------------------------
// run state

static etx_status alloc_floats(float** p, size_t n, const char* name) {
    *p = malloc(n * sizeof(float));
    if (!*p) return etx_error(ETX_ERR_NOMEM, "cpu run state: out of memory for %s (%zu floats)", name, n);
    return etx_ok();
}

etx_status build_cpu_run_state_chunked(CpuRunState* s, const ModelConfig* c, int max_chunk) {
    memset(s, 0, sizeof *s);
    if (max_chunk <= 0) max_chunk = CPU_DEFAULT_CHUNK;
    if (c->head_dim <= 0 || c->head_dim % 2 != 0)
        return etx_error(ETX_ERR_UNSUPPORTED, "cpu forward: head_dim must be even (got %d)", c->head_dim);
    s->max_chunk = max_chunk;
    s->att_rows = c->n_heads;
    size_t ch = (size_t)max_chunk, qdim = (size_t)c->n_heads * c->head_dim, half = (size_t)c->head_dim / 2;
    etx_status st = etx_ok();
    if (st.code == ETX_OK) st = alloc_floats(&s->x, ch * c->dim, "x");
    if (st.code == ETX_OK) st = alloc_floats(&s->xb, ch * c->dim, "xb");
    if (st.code == ETX_OK) st = alloc_floats(&s->q, ch * qdim, "q");
    if (st.code == ETX_OK) st = alloc_floats(&s->att_out, ch * qdim, "att_out");
    if (st.code == ETX_OK) st = alloc_floats(&s->hb, ch * c->hidden_dim, "hb");
    if (st.code == ETX_OK) st = alloc_floats(&s->hb2, ch * c->hidden_dim, "hb2");
    if (st.code == ETX_OK) st = alloc_floats(&s->inv_freq, half, "inv_freq");
    if (st.code == ETX_OK) st = alloc_floats(&s->rope_cos, ch * half, "rope_cos");
    if (st.code == ETX_OK) st = alloc_floats(&s->rope_sin, ch * half, "rope_sin");
    if (st.code != ETX_OK) {
        free_cpu_run_state(s);
        return st;
    }
    rope_inv_freq(s->inv_freq, c);
    return etx_ok();
}

etx_status build_cpu_run_state(CpuRunState* s, const ModelConfig* c) {
    return build_cpu_run_state_chunked(s, c, CPU_DEFAULT_CHUNK);
}

void free_cpu_run_state(CpuRunState* s) {
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->att_out);
    free(s->hb);
    free(s->hb2);
    free(s->inv_freq);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->att);
    memset(s, 0, sizeof *s);
}

// Attention scratch of one thread: rows * (ATT_BLOCK + 2) floats, rows = max(max_chunk,
// n_heads) (attention_head's rows are a chunk's tokens, or a group of heads).
static size_t att_scratch_per_thread(const CpuRunState* s) {
    int rows = s->max_chunk > s->att_rows ? s->max_chunk : s->att_rows;
    return (size_t)rows * (ATT_BLOCK + 2);
}

// Makes one attention scratch area per OpenMP thread.
static etx_status reserve_att(CpuRunState* s) {
    int threads = omp_get_max_threads();
    if (threads <= s->att_threads) return etx_ok();
    float* att = realloc(s->att, (size_t)threads * att_scratch_per_thread(s) * sizeof(float));
    if (!att) return etx_error(ETX_ERR_NOMEM, "cpu forward: out of memory for attention scratch (%d threads)", threads);
    s->att = att;
    s->att_threads = threads;
    return etx_ok();
}

// ----------------------------------------------------------------------------
// forward

// x[i] += y[i]
static void add_inplace(float* x, const float* y, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

// y = x W^T (matmul), except that one token (n == 1) streams W's compact twin when it
// has one (quant_matvec: same values up to summation order, ~6x less memory traffic).
static void linear(float* y, int ldy, const float* x, const float* W, const QuantMatrix* Wq, int n, int in, int out) {
    if (n == 1 && Wq->blocks)
        quant_matvec(y, x, Wq);
    else
        matmul(y, ldy, x, W, n, in, out);
}

// Causal GQA attention of n queries at positions pos0.. over the cache rows 0..pos0+i:
// att_out[i, h] = sum_t softmax_t(q[i,h] . k[t,g] / sqrt(hd)) v[t,g], g = h / (n_heads / n_kv_heads).
// One decode token: one task per KV head, its query heads as the rows of one product (each
// cached key is read once). Several tokens: one task per query head, its n queries as rows.
// probs, scores (either may be NULL): the last query's probabilities and pre-softmax
// scaled scores, each (n_heads, pos0+n).
static void attention(const ModelConfig* c, CpuRunState* s, const float* kc, const float* vc, int pos0, int n,
                      float* probs, float* scores) {
    int hd = c->head_dim, n_heads = c->n_heads, kv_dim = c->n_kv_heads * hd, qdim = n_heads * hd;
    int group = n_heads / c->n_kv_heads;
    float scale = (float)pow((double)hd, -0.5); // transformers: head_dim ** -0.5
    size_t per = att_scratch_per_thread(s);
    int tasks = n == 1 ? c->n_kv_heads : n_heads;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < tasks; task++) {
        float* scratch = s->att + (size_t)omp_get_thread_num() * per;
        if (n == 1) { // heads g*group .. g*group+group-1 are adjacent in q and att_out
            int g = task;
            size_t off = (size_t)g * hd, qoff = (size_t)g * group * hd;
            attention_head(s->att_out + qoff, hd, s->q + qoff, hd, kc + off, vc + off, kv_dim, group, group, pos0,
                           hd, scale, scratch);
        } else {
            int h = task;
            size_t off = (size_t)(h / group) * hd;
            attention_head(s->att_out + (size_t)h * hd, qdim, s->q + (size_t)h * hd, qdim, kc + off, vc + off, kv_dim,
                           n, 1, pos0, hd, scale, scratch);
        }
    }
    // the captured rows are recomputed here, one matrix-vector product per head, rather
    // than taken from the blocked loop above, which never holds a whole row
    if (probs || scores) {
        int T = pos0 + n;
        #pragma omp parallel for
        for (int h = 0; h < n_heads; h++) {
            const float* q = s->q + (size_t)(n - 1) * qdim + (size_t)h * hd;
            const float* k = kc + (size_t)(h / group) * hd;
            if (!scores) {
                attention_probs(probs + (size_t)h * T, q, k, kv_dim, T, hd, scale);
                continue;
            }
            // scores[h, t] = scale * q . k[t], then probs[h] = softmax(scores[h])
            float* sr = scores + (size_t)h * T;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, T, hd, scale, k, kv_dim, q, 1, 0.0f, sr, 1);
            if (probs) {
                memcpy(probs + (size_t)h * T, sr, (size_t)T * sizeof(float));
                softmax(probs + (size_t)h * T, T);
            }
        }
    }
}

// One chunk of n <= max_chunk tokens at positions kv->pos..; the cache already has room.
// logits: NULL, or n rows (all_logits) / one row for the chunk's last token.
static void forward_chunk(const etx_model* m, CpuRunState* s, KVCache* kv, const int32_t* tokens, int n,
                          float* logits, int all_logits, int capture_attn) {
    const ModelConfig* c = &m->cfg;
    int dim = c->dim, hd = c->head_dim, half = hd / 2, hidden = c->hidden_dim;
    int qdim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int pos0 = kv->pos;
    int par = n > 1; // row loops are only worth threads with several rows

    // embedding: x[i] = token_embedding[tokens[i]]
    for (int i = 0; i < n; i++)
        memcpy(s->x + (size_t)i * dim, m->w.token_embedding + (size_t)tokens[i] * dim, (size_t)dim * sizeof(float));
    rope_tables(s->rope_cos, s->rope_sin, s->inv_freq, half, pos0, n);

    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights* L = &m->w.layers[l];
        float* kc = kv->k[l];
        float* vc = kv->v[l];
        float* knew = kc + (size_t)pos0 * kv_dim; // this chunk's rows of the cache
        float* vnew = vc + (size_t)pos0 * kv_dim;

        // attention block: x += Wo attn(rope(Wq xn), rope(Wk xn), Wv xn), xn = rmsnorm(x)
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++)
            rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->attn_norm, dim, c->norm_eps);
        linear(s->q, qdim, s->xb, L->wq, &L->wq_q, n, dim, qdim);
        linear(knew, kv_dim, s->xb, L->wk, &L->wk_q, n, dim, kv_dim);
        linear(vnew, kv_dim, s->xb, L->wv, &L->wv_q, n, dim, kv_dim);
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++) {
            const float* cs = s->rope_cos + (size_t)i * half;
            const float* sn = s->rope_sin + (size_t)i * half;
            for (int h = 0; h < c->n_heads; h++) rope_apply(s->q + (size_t)i * qdim + (size_t)h * hd, cs, sn, half);
            for (int h = 0; h < c->n_kv_heads; h++) rope_apply(knew + (size_t)i * kv_dim + (size_t)h * hd, cs, sn, half);
        }
        int last_layer = capture_attn && l == c->n_layers - 1;
        attention(c, s, kc, vc, pos0, n, last_layer ? s->last_attn : NULL, last_layer ? s->last_scores : NULL);
        linear(s->xb, dim, s->att_out, L->wo, &L->wo_q, n, qdim, dim);
        add_inplace(s->x, s->xb, (size_t)n * dim);

        // MLP block: x += Wdown (silu(Wgate xn) * Wup xn), xn = rmsnorm(x)
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++)
            rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->ffn_norm, dim, c->norm_eps);
        linear(s->hb, hidden, s->xb, L->w_gate, &L->w_gate_q, n, dim, hidden);
        linear(s->hb2, hidden, s->xb, L->w_up, &L->w_up_q, n, dim, hidden);
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++) swiglu(s->hb + (size_t)i * hidden, s->hb2 + (size_t)i * hidden, hidden);
        linear(s->xb, dim, s->hb, L->w_down, &L->w_down_q, n, hidden, dim);
        add_inplace(s->x, s->xb, (size_t)n * dim);
    }
    kv->pos += n;
    if (capture_attn && s->last_attn) s->last_attn_len = kv->pos;
    if (capture_attn && s->last_scores) s->last_scores_len = kv->pos;

    // final norm and LM head, for every row or only the last one
    if (!logits) return;
    int first = all_logits ? 0 : n - 1, rows = n - first;
    #pragma omp parallel for if (rows > 1)
    for (int i = first; i < n; i++)
        rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, m->w.final_norm, dim, c->norm_eps);
    linear(logits, c->vocab_size, s->xb + (size_t)first * dim, m->w.lm_head, &m->w.lm_head_q, rows, dim, c->vocab_size);
}

etx_status cpu_forward(const etx_model* m, CpuRunState* s, KVCache* kv, const int32_t* tokens, int n,
                       float* logits, int all_logits) {
    const ModelConfig* c = &m->cfg;
    if (n <= 0) return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: need at least one token (got %d)", n);
    if (!tokens) return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: tokens is NULL");
    if (kv->n_layers != c->n_layers || kv->kv_dim != c->n_kv_heads * c->head_dim)
        return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: kv cache was built for another model shape");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: token id %d at index %d is out of range [0, %d)",
                             tokens[i], i, c->vocab_size);
    if ((long)kv->pos + n > kv->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "cpu forward: %d tokens at position %d exceed the context of %d positions", n, kv->pos,
                         kv->max_seq_len);
    // all allocation happens before any work, so a failure leaves the cache untouched
    ETX_TRY(kv_cache_reserve(kv, kv->pos + n));
    ETX_TRY(reserve_att(s));

    for (int done = 0; done < n;) {
        int len = n - done < s->max_chunk ? n - done : s->max_chunk;
        int last = done + len == n;
        float* out = NULL;
        if (logits && all_logits) out = logits + (size_t)done * c->vocab_size;
        else if (logits && last) out = logits;
        forward_chunk(m, s, kv, tokens + done, len, out, all_logits,
                      last && (s->last_attn != NULL || s->last_scores != NULL));
        done += len;
    }
    return etx_ok();
}
