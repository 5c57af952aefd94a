/*
 * model.c — helpers shared by both loaders: checked allocation of weight buffers,
 * float32 rows of a weight whichever form it is held in (model_weight_rows) and the
 * bytes held, freeing a model's contents, validating hyper-parameters, picking the special
 * tokens (BOS, EOS, end-of-turn) and chat template from the tokenizer; and the one check
 * by which a backend refuses an architecture part it cannot compute
 * (model_check_features).
 */
#include "model/model.h"

#include <stdint.h>
#include <string.h>


etx_status model_alloc_tensor(float** out, size_t n, const char* name) {
    *out = NULL;
    if (n == 0 || n > SIZE_MAX / sizeof(float))
        return etx_error(ETX_ERR_INVALID_ARG, "tensor %s: invalid element count %zu", name, n);
    float* p = calloc(n, sizeof(float));
    if (!p)
        return etx_error(ETX_ERR_NOMEM, "tensor %s: out of memory allocating %zu floats (%zu MiB)",
                         name, n, n * sizeof(float) >> 20);
    *out = p;
    return etx_ok();
}

// Blocks of 256 through etx_floats_nonfinite; only a block that holds a bad float is
// searched element by element.
size_t model_first_nonfinite(const float* x, size_t n) {
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        const size_t m = n - i0 < 256 ? n - i0 : 256;
        if (!etx_floats_nonfinite(x + i0, m)) continue;
        for (size_t i = 0; i < m; i++)
            if (etx_floats_nonfinite(x + i0 + i, 1)) return i0 + i;
    }
    return n;
}

etx_status model_nonfinite_error(const char* file, const char* tensor, float v, size_t index, size_t cols) {
    const char* what = v != v ? "NaN" : v > 0 ? "+inf" : "-inf";
    return etx_error(ETX_ERR_FORMAT,
                     "%s: tensor %s holds a non-finite weight (%s) at element %zu (row %zu, column %zu); the model "
                     "cannot produce usable logits",
                     file, tensor, what, index, cols ? index / cols : 0, cols ? index % cols : index);
}

void model_weight_rows(const float* w, const QuantMatrix* q, int cols, int r0, int r1, float* dst) {
    if (w) {
        memcpy(dst, w + (size_t)r0 * cols, (size_t)(r1 - r0) * cols * sizeof(float));
        return;
    }
    // quant_dequant_rows gives dequantize_row's values (test_quant_matvec checks it), faster
#pragma omp parallel for schedule(static) if ((long)(r1 - r0) * cols >= (1L << 18))
    for (int r = r0; r < r1; r++) quant_dequant_rows(q, r, r + 1, dst + (size_t)(r - r0) * cols);
}

// a matrix of rows x cols held as float32 w and/or blocks q
void model_set_act_q8(etx_model* m, int on) {
    ModelWeights* w = &m->w;
    for (int l = 0; w->layers && l < m->cfg.n_layers; l++) {
        LayerWeights* L = &w->layers[l];
        QuantMatrix* q[] = {&L->wq_q, &L->wk_q, &L->wv_q, &L->wo_q, &L->w_gate_q, &L->w_up_q, &L->w_down_q};
        for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i]->act_q8 = on && quant_matrix_q8_capable(q[i]->type);
    }
    w->lm_head_q.act_q8 = on && quant_matrix_q8_capable(w->lm_head_q.type);
    w->token_embedding_q.act_q8 = on && quant_matrix_q8_capable(w->token_embedding_q.type);
}

static long long matrix_bytes_held(const float* w, const QuantMatrix* q, long long rows, long long cols) {
    long long t = w ? rows * cols * (long long)sizeof(float) : 0;
    return t + (q->blocks ? (long long)q->rows * (long long)q->row_bytes : 0);
}

long long model_weight_bytes_held(const etx_model* m) {
    const ModelConfig* c = &m->cfg;
    const ModelWeights* w = &m->w;
    const long long dim = c->dim, hid = c->hidden_dim, qd = (long long)c->n_heads * c->head_dim,
                    kvd = (long long)c->n_kv_heads * c->head_dim, V = c->vocab_size;
    long long t = w->final_norm ? dim * (long long)sizeof(float) : 0;
    t += matrix_bytes_held(w->token_embedding, &w->token_embedding_q, V, dim);
    if (!c->tied_embeddings) t += matrix_bytes_held(w->lm_head, &w->lm_head_q, V, dim);
    for (int l = 0; w->layers && l < c->n_layers; l++) {
        const LayerWeights* L = &w->layers[l];
        t += (L->attn_norm ? dim * (long long)sizeof(float) : 0) + (L->ffn_norm ? dim * (long long)sizeof(float) : 0);
        t += matrix_bytes_held(L->wq, &L->wq_q, qd, dim) + matrix_bytes_held(L->wk, &L->wk_q, kvd, dim);
        t += matrix_bytes_held(L->wv, &L->wv_q, kvd, dim) + matrix_bytes_held(L->wo, &L->wo_q, dim, qd);
        t += matrix_bytes_held(L->w_gate, &L->w_gate_q, hid, dim) + matrix_bytes_held(L->w_up, &L->w_up_q, hid, dim);
        t += matrix_bytes_held(L->w_down, &L->w_down_q, dim, hid);
    }
    return t;
}

void model_free_contents(etx_model* m) {
    if (!m) return;
    ModelWeights* w = &m->w;
    if (w->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            LayerWeights* L = &w->layers[l];
            free(L->attn_norm);
            free(L->wq);
            free(L->wk);
            free(L->wv);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->q_norm);
            free(L->k_norm);
            free(L->wo);
            free(L->ffn_norm);
            free(L->w_gate);
            free(L->w_up);
            free(L->w_down);
            QuantMatrix* q[] = {&L->wq_q, &L->wk_q, &L->wv_q, &L->wo_q, &L->w_gate_q, &L->w_up_q, &L->w_down_q};
            for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) free(q[i]->blocks);
        }
        free(w->layers);
    }
    if (w->lm_head != w->token_embedding) free(w->lm_head);
    if (w->lm_head_q.blocks != w->token_embedding_q.blocks) free(w->lm_head_q.blocks);
    free(w->token_embedding_q.blocks);
    free(w->token_embedding);
    free(w->final_norm);
    if (m->tok) tokenizer_free(m->tok);
    free(m->path);
    memset(m, 0, sizeof *m);
    m->bos_id = -1;
}

// Sizes above this are treated as corrupt rather than as huge models.
#define MAX_DIM (1 << 20)
#define MAX_VOCAB (1 << 23)
#define MAX_LAYERS 4096

static etx_status check_range(const char* source, const char* what, long v, long lo, long hi) {
    if (v < lo || v > hi)
        return etx_error(ETX_ERR_FORMAT, "%s: %s = %ld is out of range [%ld, %ld]", source, what, v, lo, hi);
    return etx_ok();
}

// Bytes of float32 weights a config needs (the CPU backend holds every weight as float32).
static double model_weight_bytes(const ModelConfig* c) {
    const double d = c->dim, q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    double layer = 2.0 * d + q * d + 2.0 * kv * d + d * q + 3.0 * d * c->hidden_dim;
    if (c->qkv_bias) layer += q + 2.0 * kv;
    if (c->qk_norm) layer += 2.0 * c->head_dim;
    const double embed = (double)c->vocab_size * d * (c->tied_embeddings ? 1.0 : 2.0);
    return 4.0 * (c->n_layers * layer + embed + d);
}

// Refuses, before any weight is read, a model whose float32 weights cannot fit in the
// memory available now: otherwise the allocations may succeed (overcommit) and the
// process be killed while the weights are converted.
// need > 0: the bytes the loader will hold instead (quantized blocks kept as they are).
static etx_status model_check_memory(const ModelConfig* c, const char* source, double need) {
    const int f32 = need <= 0.0;
    if (f32) need = model_weight_bytes(c);
    const double avail = available_memory_bytes();
    if (avail > 0 && need > avail)
        return etx_error(ETX_ERR_NOMEM, "%s: the CPU backend holds weights as %s: this model needs %.1f GiB, and %.1f GiB "
                                        "of memory is available",
                         source, f32 ? "float32" : "float32 or quantized blocks", need / (1 << 30),
                         avail / (1 << 30));
    return etx_ok();
}

etx_status model_config_validate(const ModelConfig* c, const char* source) {
    return model_config_validate_bytes(c, source, 0.0);
}

etx_status model_config_validate_bytes(const ModelConfig* c, const char* source, double weight_bytes) {
    ETX_TRY(check_range(source, "dim", c->dim, 1, MAX_DIM));
    ETX_TRY(check_range(source, "hidden_dim", c->hidden_dim, 1, MAX_DIM));
    ETX_TRY(check_range(source, "n_layers", c->n_layers, 1, MAX_LAYERS));
    ETX_TRY(check_range(source, "n_heads", c->n_heads, 1, MAX_DIM));
    ETX_TRY(check_range(source, "n_kv_heads", c->n_kv_heads, 1, c->n_heads));
    ETX_TRY(check_range(source, "head_dim", c->head_dim, 2, MAX_DIM));
    ETX_TRY(check_range(source, "vocab_size", c->vocab_size, 1, MAX_VOCAB));
    ETX_TRY(check_range(source, "max_seq_len", c->max_seq_len, 1, 1L << 30));
    if (c->n_heads % c->n_kv_heads != 0)
        return etx_error(ETX_ERR_FORMAT, "%s: n_heads (%d) is not a multiple of n_kv_heads (%d)", source,
                         c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return etx_error(ETX_ERR_FORMAT, "%s: head_dim (%d) must be even for RoPE", source, c->head_dim);
    if ((long)c->n_heads * c->head_dim > MAX_DIM)
        return etx_error(ETX_ERR_FORMAT, "%s: n_heads * head_dim = %ld is too large", source,
                         (long)c->n_heads * c->head_dim);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return etx_error(ETX_ERR_FORMAT, "%s: norm_eps = %g is out of range (0, 1)", source, c->norm_eps);
    if (!(c->rope_theta > 0.0f))
        return etx_error(ETX_ERR_FORMAT, "%s: rope_theta = %g must be positive", source, c->rope_theta);
    if (c->rope_llama3) {
        if (!(c->rope_factor > 0.0f) || !(c->rope_low_freq_factor > 0.0f) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_pos <= 0)
            return etx_error(ETX_ERR_FORMAT,
                             "%s: invalid llama3 rope_scaling (factor %g, low_freq_factor %g, "
                             "high_freq_factor %g, original_max_position_embeddings %d)",
                             source, c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                             c->rope_original_max_pos);
    }
    return model_check_memory(c, source, weight_bytes);
}

const char* model_arch_name(ModelArch a) {
    switch (a) {
    case MODEL_ARCH_LLAMA: return "llama";
    case MODEL_ARCH_QWEN2: return "qwen2";
    case MODEL_ARCH_QWEN3: return "qwen3";
    }
    return "unknown";
}

etx_status model_check_features(const etx_model* m, unsigned supported, const char* backend) {
    const ModelConfig* c = &m->cfg;
    const char* what = NULL;
    if (c->qkv_bias && !(supported & MODEL_FEATURE_QKV_BIAS))
        what = "biases on the Q/K/V projections";
    else if (c->qk_norm && !(supported & MODEL_FEATURE_QK_NORM))
        what = "per-head RMSNorm of Q and K (QK-norm)";
    if (!what) return etx_ok();
    return etx_error(ETX_ERR_UNSUPPORTED,
                     "%s: the %s architecture of this model uses %s, which this backend does not compute yet; "
                     "run it with --device cpu",
                     backend, model_arch_name(c->arch), what);
}

static void add_eos(etx_model* m, int id) {
    if (id < 0 || (m->tok && id >= tokenizer_n_vocab(m->tok))) return;
    for (int i = 0; i < m->n_eos; i++)
        if (m->eos_ids[i] == id) return;
    if (m->n_eos < (int)(sizeof m->eos_ids / sizeof m->eos_ids[0])) m->eos_ids[m->n_eos++] = id;
}

void model_set_special_tokens(etx_model* m, int bos_id, const int* eos_ids, int n_eos) {
    int nv = m->tok ? tokenizer_n_vocab(m->tok) : m->cfg.vocab_size;
    m->bos_id = (bos_id >= 0 && bos_id < nv) ? bos_id : -1;
    m->n_eos = 0;
    for (int i = 0; i < n_eos; i++) add_eos(m, eos_ids[i]);
    if (m->tok) {
        // end-of-turn and end-of-text tokens of the families etx loads (Llama 3, ChatML /
        // SmolLM2), as llama.cpp and the models' generation configs stop on them
        static const char* const end_of_turn[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>",
                                                  "<|endoftext|>"};
        for (size_t i = 0; i < sizeof end_of_turn / sizeof end_of_turn[0]; i++)
            add_eos(m, tokenizer_find(m->tok, end_of_turn[i]));
        m->chat = chat_template_detect(m->tok);
    } else {
        m->chat = CHAT_NONE;
    }
}
