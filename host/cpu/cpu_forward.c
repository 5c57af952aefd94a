/*
 * cpu_forward.c — the CPU forward pass of the Llama, Qwen2 and Qwen3 architectures
 * (model.h): KV cache and run-state lifetimes, and cpu_forward() (embedding → layers of
 * attention + SwiGLU MLP → final norm → LM head), processing long inputs in chunks of
 * CpuRunState.max_chunk tokens.
 */
#include "cpu/cpu_forward.h"

#include "cpu/f32_matrix.h"

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

etx_status build_cpu_run_state_rows(CpuRunState* s, const ModelConfig* c, int max_chunk, int max_rows) {
    memset(s, 0, sizeof *s);
    if (max_chunk <= 0) max_chunk = CPU_DEFAULT_CHUNK;
    if (max_rows < max_chunk) max_rows = max_chunk;
    if (c->head_dim <= 0 || c->head_dim % 2 != 0)
        return etx_error(ETX_ERR_UNSUPPORTED, "cpu forward: head_dim must be even (got %d)", c->head_dim);
    s->max_chunk = max_chunk;
    s->max_rows = max_rows;
    s->att_rows = c->n_heads;
    size_t ch = (size_t)max_rows, kv_dim = (size_t)c->n_kv_heads * c->head_dim, qdim = (size_t)c->n_heads * c->head_dim, half = (size_t)c->head_dim / 2;
    etx_status st = etx_ok();
    if (st.code == ETX_OK) st = alloc_floats(&s->x, ch * c->dim, "x");
    if (st.code == ETX_OK) st = alloc_floats(&s->xb, ch * c->dim, "xb");
    if (st.code == ETX_OK) st = alloc_floats(&s->q, ch * qdim, "q");
    if (st.code == ETX_OK) st = alloc_floats(&s->knew, ch * kv_dim, "knew");
    if (st.code == ETX_OK) st = alloc_floats(&s->vnew, ch * kv_dim, "vnew");
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

etx_status build_cpu_run_state_chunked(CpuRunState* s, const ModelConfig* c, int max_chunk) {
    return build_cpu_run_state_rows(s, c, max_chunk, max_chunk);
}

etx_status build_cpu_run_state(CpuRunState* s, const ModelConfig* c) {
    return build_cpu_run_state_chunked(s, c, CPU_DEFAULT_CHUNK);
}

void free_cpu_run_state(CpuRunState* s) {
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->knew);
    free(s->vnew);
    free(s->att_out);
    free(s->hb);
    free(s->hb2);
    free(s->inv_freq);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->att);
    free(s->wtmp);
    memset(s, 0, sizeof *s);
}

// Attention scratch of one thread: rows * (ATT_BLOCK + 2) floats, rows = max(max_rows,
// n_heads) (attention_head's rows are a chunk's tokens, or a group of heads).
static size_t att_scratch_per_thread(const CpuRunState* s) {
    int rows = s->max_rows > s->att_rows ? s->max_rows : s->att_rows;
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

// Floats of the prefill tile wtmp (CpuRunState) for model m: 0 when every matrix is
// float32; else the largest layer matrix, or with head (a chunk that wants every row's
// logits) the LM head's vocab x dim when that is larger and held only as blocks. Each
// matrix is dequantized whole, so its product is the float32 path's very sgemm call (a
// tile of rows would change OpenBLAS's blocking, hence the bits).
static size_t wtmp_floats(const etx_model* m, int head) {
    const ModelConfig* c = &m->cfg;
    int kept = 0;
    for (int l = 0; l < c->n_layers && !kept; l++) {
        const LayerWeights* L = &m->w.layers[l];
        kept = !L->wq || !L->wk || !L->wv || !L->wo || !L->w_gate || !L->w_up || !L->w_down;
    }
    size_t qd = (size_t)c->n_heads * c->head_dim, wide = qd > (size_t)c->hidden_dim ? qd : (size_t)c->hidden_dim;
    size_t n = kept ? wide * (size_t)c->dim : 0, n_head = (size_t)c->vocab_size * c->dim;
    return head && !m->w.lm_head && n_head > n ? n_head : n;
}

// Makes wtmp at least wtmp_floats(m, head) floats.
static etx_status reserve_wtmp(CpuRunState* s, const etx_model* m, int head) {
    size_t n = wtmp_floats(m, head);
    if (n <= s->wtmp_len) return etx_ok();
    free(s->wtmp);
    s->wtmp_len = 0;
    s->wtmp = malloc(n * sizeof(float));
    if (!s->wtmp)
        return etx_error(ETX_ERR_NOMEM, "cpu forward: out of memory for the prefill weight tile (%zu MiB)",
                         n * sizeof(float) >> 20);
    s->wtmp_len = n;
    return etx_ok();
}

// Gives back a tile grown for the LM head (all-logits prefill) once the call is done.
static void shrink_wtmp(CpuRunState* s, const etx_model* m) {
    if (s->wtmp_len <= wtmp_floats(m, 0)) return;
    free(s->wtmp);
    s->wtmp = NULL;
    s->wtmp_len = 0;
}

// ----------------------------------------------------------------------------
// forward

// x[i] += y[i]
static void add_inplace(float* x, const float* y, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

// How the rows of one call relate: a chunk of one sequence (consecutive positions), or
// decode rows of as many sequences.
typedef enum { ROWS_CHUNK = 0, ROWS_DECODE } RowsKind;

// y = x W^T. A chunk uses sgemm (one token: W's compact twin when it has one, ~6x less
// memory traffic; W kept only as blocks: dequantized whole into s->wtmp first, so the
// sgemm sees the same float32 weights); decode rows use the batch-invariant products,
// row by row identical to the one-token product whatever the number of rows.
static void linear(CpuRunState* s, float* y, int ldy, const float* x, const float* W, const QuantMatrix* Wq, int n,
                   int in, int out, RowsKind kind) {
    if (kind == ROWS_DECODE) {
        if (Wq->blocks)
            quant_matmat(y, ldy, x, in, n, Wq);
        else
            f32_matmat(y, ldy, x, in, n, W, out, in);
    } else if (n == 1 && Wq->blocks) {
        quant_matvec(y, x, Wq);
    } else if (W) {
        matmul(y, ldy, x, W, n, in, out);
    } else { // reserve_wtmp made the tile large enough for W
        model_weight_rows(NULL, Wq, in, 0, out, s->wtmp);
        matmul(y, ldy, x, s->wtmp, n, in, out);
    }
}

KVSeq kv_seq_of_cache(const KVCache* kv) {
    static const int first_block = 0;
    KVSeq s = {kv->k, kv->v, &first_block, 1 << 30, kv->pos};
    return s;
}

// Row of position p in a layer's storage.
static inline float* kv_row(float* base, const KVSeq* kv, int p, int kv_dim) {
    size_t row = (size_t)kv->ids[p / kv->block_size] * kv->block_size + (size_t)(p % kv->block_size);
    return base + row * kv_dim;
}

// Attention reads a sequence in segments that never cross a block.
static int seg_len_of(const KVSeq* kv) { return kv->block_size < ATT_BLOCK ? kv->block_size : ATT_BLOCK; }

// kseg/vseg[j] = rows of positions j*seg .. of layer l, for positions < T.
static void kv_segments(const KVSeq* kv, int l, int T, int kv_dim, const float** kseg, const float** vseg) {
    int seg = seg_len_of(kv);
    for (int j = 0; j * seg < T; j++) {
        kseg[j] = kv_row(kv->k[l], kv, j * seg, kv_dim);
        vseg[j] = kv_row(kv->v[l], kv, j * seg, kv_dim);
    }
}

// scores[h, t] = scale * q_h . k_t for t < T (the last layer's capture for the attention
// metrics): one matrix-vector product per head and segment.
static void capture_scores(const ModelConfig* c, const float* q, const float** kseg, int seg, int T, float scale,
                           float* scores) {
    int hd = c->head_dim, kv_dim = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;
    #pragma omp parallel for
    for (int h = 0; h < c->n_heads; h++) {
        float* sr = scores + (size_t)h * T;
        int col = (h / group) * hd;
        for (int t0 = 0; t0 < T; t0 += seg) {
            int nb = T - t0 < seg ? T - t0 : seg;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, nb, hd, scale, kseg[t0 / seg] + col, kv_dim, q + (size_t)h * hd, 1,
                        0.0f, sr + t0, 1);
        }
    }
}

// Causal GQA attention of one chunk (n queries of one sequence at positions kv->pos..,
// whose keys are already stored) or of n decode rows (one query each, sequence r at
// kv[r].pos):
//   att_out[i, h] = sum_{t <= pos(i)} softmax_t(q[i,h] . k[t,g] / sqrt(hd)) v[t,g],  g = h / group.
// One query token: one task per KV head, its query heads as the rows of one product (each
// cached key is read once). Several tokens of a chunk: one task per query head, its n
// queries as rows. scores (per sequence, may be NULL): the last query's pre-softmax
// scaled scores (n_heads, pos + 1).
static etx_status attention(const ModelConfig* c, CpuRunState* s, const KVSeq* kv, int n_kv, int l, int n,
                            RowsKind kind, float* const* scores) {
    int hd = c->head_dim, n_heads = c->n_heads, kv_dim = c->n_kv_heads * hd, qdim = n_heads * hd;
    int group = n_heads / c->n_kv_heads;
    float scale = (float)pow((double)hd, -0.5); // transformers: head_dim ** -0.5
    size_t per = att_scratch_per_thread(s);
    // segment pointers of every sequence of the call
    int max_segs = 0;
    for (int r = 0; r < n_kv; r++) {
        int T = kv[r].pos + (kind == ROWS_CHUNK ? n : 1);
        int ns = (T + seg_len_of(&kv[r]) - 1) / seg_len_of(&kv[r]);
        if (ns > max_segs) max_segs = ns;
    }
    const float** segs = malloc((size_t)n_kv * 2 * max_segs * sizeof(float*));
    if (!segs) return etx_error(ETX_ERR_NOMEM, "cpu forward: out of memory for attention segments");
    for (int r = 0; r < n_kv; r++) {
        int T = kv[r].pos + (kind == ROWS_CHUNK ? n : 1);
        kv_segments(&kv[r], l, T, kv_dim, segs + (size_t)r * 2 * max_segs, segs + ((size_t)r * 2 + 1) * max_segs);
    }
    int one_token = kind == ROWS_DECODE || n == 1;
    int tasks = one_token ? n * c->n_kv_heads : n_heads;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < tasks; task++) {
        float* scratch = s->att + (size_t)omp_get_thread_num() * per;
        if (one_token) { // row r, heads g*group .. g*group+group-1 are adjacent in q and att_out
            int r = task / c->n_kv_heads, g = task % c->n_kv_heads;
            const KVSeq* sq = &kv[kind == ROWS_DECODE ? r : 0];
            const float** ks = segs + (size_t)(kind == ROWS_DECODE ? r : 0) * 2 * max_segs;
            size_t qoff = (size_t)r * qdim + (size_t)g * group * hd;
            attention_head(s->att_out + qoff, hd, s->q + qoff, hd, ks, ks + max_segs, seg_len_of(sq), g * hd, kv_dim,
                           group, group, sq->pos, hd, scale, scratch);
        } else {
            int h = task;
            attention_head(s->att_out + (size_t)h * hd, qdim, s->q + (size_t)h * hd, qdim, segs, segs + max_segs,
                           seg_len_of(kv), (h / group) * hd, kv_dim, n, 1, kv->pos, hd, scale, scratch);
        }
    }
    // the captured rows are recomputed here rather than taken from the blocked loop
    // above, which never holds a whole row
    if (scores)
        for (int r = 0; r < n_kv; r++) {
            if (!scores[r]) continue;
            int last = kind == ROWS_DECODE ? r : n - 1;
            int T = kv[r].pos + (kind == ROWS_CHUNK ? n : 1);
            capture_scores(c, s->q + (size_t)last * qdim, segs + (size_t)r * 2 * max_segs, seg_len_of(&kv[r]), T,
                           scale, scores[r]);
        }
    free(segs);
    return etx_ok();
}

// n rows through the model: a chunk of one sequence (kind ROWS_CHUNK, kv[0], positions
// kv[0].pos + i) or decode rows (ROWS_DECODE, row r at kv[r].pos). Keys and values go
// into the sequences' blocks; positions are not advanced here. logits: NULL, or for a
// chunk the last row (or every row with all_logits), for decode rows every row.
static etx_status forward_rows(const etx_model* m, CpuRunState* s, const KVSeq* kv, const int32_t* tokens, int n,
                               RowsKind kind, float* logits, int all_logits, float* const* scores) {
    const ModelConfig* c = &m->cfg;
    int dim = c->dim, hd = c->head_dim, half = hd / 2, hidden = c->hidden_dim;
    int qdim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int n_kv = kind == ROWS_DECODE ? n : 1;
    int par = n > 1; // row loops are only worth threads with several rows

    // embedding: x[i] = token_embedding[tokens[i]]; RoPE tables of each row's position
    for (int i = 0; i < n; i++) {
        model_weight_rows(m->w.token_embedding, &m->w.token_embedding_q, dim, tokens[i], tokens[i] + 1,
                          s->x + (size_t)i * dim);
        int pos = kind == ROWS_DECODE ? kv[i].pos : kv->pos + i;
        rope_tables(s->rope_cos + (size_t)i * half, s->rope_sin + (size_t)i * half, s->inv_freq, half, pos, 1);
    }

    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights* L = &m->w.layers[l];

        // attention block: x += Wo attn(rope(Wq xn), rope(Wk xn), Wv xn), xn = rmsnorm(x);
        // qwen2 adds bq/bk/bv to the projections, qwen3 RMS-norms q and k per head before rope
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++)
            rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->attn_norm, dim, c->norm_eps);
        linear(s, s->q, qdim, s->xb, L->wq, &L->wq_q, n, dim, qdim, kind);
        linear(s, s->knew, kv_dim, s->xb, L->wk, &L->wk_q, n, dim, kv_dim, kind);
        linear(s, s->vnew, kv_dim, s->xb, L->wv, &L->wv_q, n, dim, kv_dim, kind);
        if (c->qkv_bias) { // qwen2: Wq xn + bq, ...
            add_bias_rows(s->q, qdim, L->bq, n, qdim);
            add_bias_rows(s->knew, kv_dim, L->bk, n, kv_dim);
            add_bias_rows(s->vnew, kv_dim, L->bv, n, kv_dim);
        }
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++) {
            const float* cs = s->rope_cos + (size_t)i * half;
            const float* sn = s->rope_sin + (size_t)i * half;
            if (c->qk_norm) { // qwen3: each head of q and k RMS-normed, then rotated
                rmsnorm_heads(s->q + (size_t)i * qdim, L->q_norm, c->n_heads, hd, c->norm_eps);
                rmsnorm_heads(s->knew + (size_t)i * kv_dim, L->k_norm, c->n_kv_heads, hd, c->norm_eps);
            }
            for (int h = 0; h < c->n_heads; h++) rope_apply(s->q + (size_t)i * qdim + (size_t)h * hd, cs, sn, half);
            for (int h = 0; h < c->n_kv_heads; h++)
                rope_apply(s->knew + (size_t)i * kv_dim + (size_t)h * hd, cs, sn, half);
            // append to the cache: row i's key and value at its position
            const KVSeq* sq = kind == ROWS_DECODE ? &kv[i] : kv;
            int pos = kind == ROWS_DECODE ? sq->pos : sq->pos + i;
            memcpy(kv_row(sq->k[l], sq, pos, kv_dim), s->knew + (size_t)i * kv_dim, (size_t)kv_dim * sizeof(float));
            memcpy(kv_row(sq->v[l], sq, pos, kv_dim), s->vnew + (size_t)i * kv_dim, (size_t)kv_dim * sizeof(float));
        }
        int last_layer = scores && l == c->n_layers - 1;
        ETX_TRY(attention(c, s, kv, n_kv, l, n, kind, last_layer ? scores : NULL));
        linear(s, s->xb, dim, s->att_out, L->wo, &L->wo_q, n, qdim, dim, kind);
        add_inplace(s->x, s->xb, (size_t)n * dim);

        // MLP block: x += Wdown (silu(Wgate xn) * Wup xn), xn = rmsnorm(x)
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++)
            rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, L->ffn_norm, dim, c->norm_eps);
        linear(s, s->hb, hidden, s->xb, L->w_gate, &L->w_gate_q, n, dim, hidden, kind);
        linear(s, s->hb2, hidden, s->xb, L->w_up, &L->w_up_q, n, dim, hidden, kind);
        #pragma omp parallel for if (par)
        for (int i = 0; i < n; i++) swiglu(s->hb + (size_t)i * hidden, s->hb2 + (size_t)i * hidden, hidden);
        linear(s, s->xb, dim, s->hb, L->w_down, &L->w_down_q, n, hidden, dim, kind);
        add_inplace(s->x, s->xb, (size_t)n * dim);
    }

    // final norm and LM head, for every row or only the last one
    if (!logits) return etx_ok();
    int first = kind == ROWS_DECODE || all_logits ? 0 : n - 1, rows = n - first;
    #pragma omp parallel for if (rows > 1)
    for (int i = first; i < n; i++)
        rmsnorm(s->xb + (size_t)i * dim, s->x + (size_t)i * dim, m->w.final_norm, dim, c->norm_eps);
    linear(s, logits, c->vocab_size, s->xb + (size_t)first * dim, m->w.lm_head, &m->w.lm_head_q, rows, dim,
           c->vocab_size, kind);
    return etx_ok();
}

static etx_status check_tokens(const ModelConfig* c, const int32_t* tokens, int n) {
    if (n <= 0) return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: need at least one token (got %d)", n);
    if (!tokens) return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: tokens is NULL");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: token id %d at index %d is out of range [0, %d)",
                             tokens[i], i, c->vocab_size);
    return etx_ok();
}

etx_status cpu_forward(const etx_model* m, CpuRunState* s, KVCache* kv, const int32_t* tokens, int n,
                       float* logits, int all_logits) {
    const ModelConfig* c = &m->cfg;
    ETX_TRY(check_tokens(c, tokens, n));
    if (kv->n_layers != c->n_layers || kv->kv_dim != c->n_kv_heads * c->head_dim)
        return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: kv cache was built for another model shape");
    if ((long)kv->pos + n > kv->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "cpu forward: %d tokens at position %d exceed the context of %d positions", n, kv->pos,
                         kv->max_seq_len);
    // all allocation happens before any work, so a failure leaves the cache untouched
    ETX_TRY(kv_cache_reserve(kv, kv->pos + n));
    ETX_TRY(reserve_att(s));
    ETX_TRY(reserve_wtmp(s, m, logits && all_logits && n > 1));

    for (int done = 0; done < n;) {
        int len = n - done < s->max_chunk ? n - done : s->max_chunk;
        int last = done + len == n;
        float* out = NULL;
        if (logits && all_logits) out = logits + (size_t)done * c->vocab_size;
        else if (logits && last) out = logits;
        float* capture = last && s->last_scores ? s->last_scores : NULL;
        float* probs = last && s->last_attn ? s->last_attn : NULL;
        float* scores = capture ? capture : probs; // probabilities start as scores
        KVSeq sq = kv_seq_of_cache(kv);
        ETX_TRY(forward_rows(m, s, &sq, tokens + done, len, ROWS_CHUNK, out, all_logits, scores ? &scores : NULL));
        kv->pos += len;
        if (probs) {
            if (capture) memcpy(probs, capture, (size_t)c->n_heads * kv->pos * sizeof(float));
            for (int h = 0; h < c->n_heads; h++) softmax(probs + (size_t)h * kv->pos, kv->pos);
            s->last_attn_len = kv->pos;
        }
        if (capture) s->last_scores_len = kv->pos;
        done += len;
    }
    shrink_wtmp(s, m);
    return etx_ok();
}

etx_status cpu_forward_chunk(const etx_model* m, CpuRunState* s, const KVSeq* kv, const int32_t* tokens, int n,
                             float* logits, float* scores) {
    ETX_TRY(check_tokens(&m->cfg, tokens, n));
    if (n > s->max_rows)
        return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: a chunk of %d tokens exceeds the run state's %d rows", n,
                         s->max_rows);
    ETX_TRY(reserve_att(s));
    ETX_TRY(reserve_wtmp(s, m, 0));
    return forward_rows(m, s, kv, tokens, n, ROWS_CHUNK, logits, 0, scores ? &scores : NULL);
}

etx_status cpu_forward_decode(const etx_model* m, CpuRunState* s, const KVSeq* kv, const int32_t* tokens, int n,
                              float* logits, float* const* scores) {
    ETX_TRY(check_tokens(&m->cfg, tokens, n));
    if (n > s->max_rows)
        return etx_error(ETX_ERR_INVALID_ARG, "cpu forward: %d decode rows exceed the run state's %d rows", n,
                         s->max_rows);
    ETX_TRY(reserve_att(s));
    return forward_rows(m, s, kv, tokens, n, ROWS_DECODE, logits, 0, scores);
}

static long long matrix_bytes(const QuantMatrix* q, long long rows, long long cols) {
    return q->blocks ? (long long)q->rows * (long long)q->row_bytes : rows * cols * (long long)sizeof(float);
}

long long cpu_decode_weight_bytes(const etx_model* m) {
    const ModelConfig* c = &m->cfg;
    const long long dim = c->dim, hid = c->hidden_dim, qd = (long long)c->n_heads * c->head_dim,
                    kvd = (long long)c->n_kv_heads * c->head_dim;
    long long t = (long long)sizeof(float) * dim; // final norm
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights* L = &m->w.layers[l];
        t += 2 * (long long)sizeof(float) * dim; // attention and FFN norms
        if (c->qkv_bias) t += (long long)sizeof(float) * (qd + 2 * kvd);
        if (c->qk_norm) t += 2 * (long long)sizeof(float) * c->head_dim;
        t += matrix_bytes(&L->wq_q, qd, dim) + matrix_bytes(&L->wk_q, kvd, dim) + matrix_bytes(&L->wv_q, kvd, dim);
        t += matrix_bytes(&L->wo_q, dim, qd);
        t += matrix_bytes(&L->w_gate_q, hid, dim) + matrix_bytes(&L->w_up_q, hid, dim) + matrix_bytes(&L->w_down_q, dim, hid);
    }
    return t + matrix_bytes(&m->w.lm_head_q, c->vocab_size, dim);
}
