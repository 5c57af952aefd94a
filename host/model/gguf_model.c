/*
 * gguf_model.c — loads a GGUF file of the llama, qwen2 or qwen3 architecture
 * (general.architecture) into an etx_model (model.h): hyper-parameters from the
 * <arch>.* metadata, weights dequantized to float32 except matrices in a type
 * quant_matrix.h handles (Q8_0/Q4_0/Q4_1/Q5_0/Q4_K/Q5_K/Q6_K), which keep only their raw
 * blocks (model.h; a NaN or infinite weight, checked row by row as it is converted, is an
 * error naming tensor and element), and the byte-level BPE tokenizer from the
 * tokenizer.ggml.* metadata.
 *
 * GGUF lists dimensions innermost first, so a linear layer's weight (out, in) appears
 * as ne = [in, out] with rows of `in` contiguous elements — the same memory order as
 * model.h wants. For llama, llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel)
 * permutes the rows of attn_q and attn_k within each head for its interleaved-pair RoPE:
 * stored row 2i + j of a head holds Hugging Face row j * head_dim/2 + i (j = 0, 1).
 * unpermuted_row() undoes it at load. For qwen2 and qwen3 the converter stores Q and K
 * unpermuted (llama.cpp runs those with rotate-half "NEOX" RoPE, Hugging Face's own
 * order), so their rows are taken as they are; so are qwen2's attn_q/k/v.bias (no
 * permutation to undo) and qwen3's attn_q_norm / attn_k_norm (head_dim, one per layer).
 * A bias tensor the architecture does not have (llama.cpp's graphs would add it) is
 * refused rather than ignored.
 * Llama 3.1+ files carry their llama3 RoPE scaling as a rope_freqs.weight tensor, which
 * is mapped back to the four llama3 parameters (read_rope_freqs).
 */
#include <math.h>
#include <string.h>

#include "model/dequant.h"
#include "model/gguf.h"
#include "model/model.h"
#include "cpu/quant_matrix.h"

// ---------------------------------------------------------------------------
// hyper-parameters

// Reads an integer key (or def when absent and def >= 0) into an int, range-checked.
static etx_status get_int(const GGUFFile* f, const char* key, int64_t def, int* out) {
    int64_t v;
    if (def >= 0) {
        ETX_TRY(gguf_get_int_or(f, key, def, &v));
    } else {
        ETX_TRY(gguf_get_int(f, key, &v));
    }
    if (v < 0 || v > INT32_MAX)
        return etx_error(ETX_ERR_FORMAT, "%s: metadata key %s = %lld is out of range", f->path, key, (long long)v);
    *out = (int)v;
    return etx_ok();
}

// The hyper-parameter keys are "<general.architecture>.<name>"; key() spells one.
typedef struct {
    char prefix[8]; // "llama", "qwen2" or "qwen3"
    char buf[96];
} ArchKeys;

static const char* key(ArchKeys* k, const char* name) {
    snprintf(k->buf, sizeof k->buf, "%s.%s", k->prefix, name);
    return k->buf;
}

static etx_status read_arch(const GGUFFile* f, ModelConfig* c, ArchKeys* k) {
    static const struct {
        const char* name;
        ModelArch arch;
    } known[] = {{"llama", MODEL_ARCH_LLAMA}, {"qwen2", MODEL_ARCH_QWEN2}, {"qwen3", MODEL_ARCH_QWEN3}};
    const char* arch;
    size_t len;
    ETX_TRY(gguf_get_string(f, "general.architecture", &arch, &len));
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (len == strlen(known[i].name) && memcmp(arch, known[i].name, len) == 0) {
            c->arch = known[i].arch;
            c->qkv_bias = c->arch == MODEL_ARCH_QWEN2;
            c->qk_norm = c->arch == MODEL_ARCH_QWEN3;
            snprintf(k->prefix, sizeof k->prefix, "%s", known[i].name);
            return etx_ok();
        }
    return etx_error(ETX_ERR_UNSUPPORTED,
                     "%s: general.architecture '%.*s' is not supported (llama, qwen2 and qwen3 are)", f->path,
                     (int)(len > 64 ? 64 : len), arch);
}

// llama3 RoPE scaling is stored in GGUF as rope_freqs.weight: head_dim/2 divisors of the
// RoPE frequencies, derived from (factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings) — 1 for short wavelengths, `factor` for long ones and
// a smooth blend between. ModelConfig keeps those four numbers, so the loader looks for
// the common settings that reproduce the tensor (Llama 3.1: 8, 1, 4, 8192; Llama 3.2:
// 32, 1, 4, 8192) and reports any other tensor as unsupported.
static double llama3_divisor(double inv_freq, double factor, double low, double high, double orig) {
    double wavelen = 2.0 * M_PI / inv_freq;
    if (wavelen < orig / high) return 1.0;
    if (wavelen > orig / low) return factor;
    double smooth = (orig / wavelen - low) / (high - low);
    return 1.0 / ((1.0 - smooth) / factor + smooth);
}

static int llama3_matches(const float* div, int n, double theta, double factor, double low, double high,
                          double orig) {
    for (int i = 0; i < n; i++) {
        double inv_freq = 1.0 / pow(theta, (2.0 * i) / (2.0 * n));
        double want = llama3_divisor(inv_freq, factor, low, high, orig);
        if (fabs(div[i] - want) > 1e-4 * want) return 0;
    }
    return 1;
}

static int llama3_fit(const float* div, int n, ModelConfig* c) {
    double factor = 0.0;
    for (int i = 0; i < n; i++) factor = div[i] > factor ? div[i] : factor;
    static const double lows[] = {1, 2}, highs[] = {2, 4, 8};
    for (int k = 6; k <= 20; k++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 3; b++) {
                if (highs[b] <= lows[a] || !llama3_matches(div, n, c->rope_theta, factor, lows[a], highs[b],
                                                            (double)(1 << k)))
                    continue;
                c->rope_llama3 = 1;
                c->rope_factor = (float)factor;
                c->rope_low_freq_factor = (float)lows[a];
                c->rope_high_freq_factor = (float)highs[b];
                c->rope_original_max_pos = 1 << k;
                return 1;
            }
    return 0;
}

static etx_status read_rope_freqs(const GGUFFile* f, const GGUFTensor* t, ModelConfig* c) {
    int n = c->head_dim / 2;
    if (n < 1 || t->n_elems != (uint64_t)n)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor rope_freqs.weight has %llu elements, expected head_dim/2 = %d",
                         f->path, (unsigned long long)t->n_elems, n);
    float* div = xmalloc((size_t)n * sizeof(float));
    dequantize_row(t->type, t->data, div, (size_t)n);
    int ok = 1, all_one = 1;
    for (int i = 0; i < n; i++) {
        ok &= div[i] >= 1.0f && div[i] <= 1e6f; // also false for NaN
        all_one &= div[i] == 1.0f;
    }
    int fit = ok && (all_one || llama3_fit(div, n, c));
    free(div);
    if (!fit)
        return etx_error(ETX_ERR_UNSUPPORTED,
                         "%s: tensor rope_freqs.weight does not match llama3 RoPE scaling with any common "
                         "parameters; load the Hugging Face directory instead",
                         f->path);
    return etx_ok();
}

static etx_status read_rope_scaling(const GGUFFile* f, ModelConfig* c, ArchKeys* k) {
    const GGUFTensor* freqs = gguf_find_tensor(f, "rope_freqs.weight");
    if (freqs && c->arch != MODEL_ARCH_LLAMA)
        return etx_error(ETX_ERR_UNSUPPORTED, "%s: tensor rope_freqs.weight in a %s file is not supported", f->path,
                         k->prefix);
    if (freqs) ETX_TRY(read_rope_freqs(f, freqs, c));
    if (!gguf_find(f, key(k, "rope.scaling.type"))) return etx_ok();
    const char* type;
    size_t len;
    ETX_TRY(gguf_get_string(f, key(k, "rope.scaling.type"), &type, &len));
    if (len == 4 && memcmp(type, "none", 4) == 0) return etx_ok();
    if (freqs && len == 6 && memcmp(type, "llama3", 6) == 0) return etx_ok();
    return etx_error(ETX_ERR_UNSUPPORTED, "%s: metadata key %s = '%.*s' is not supported", f->path,
                     key(k, "rope.scaling.type"), (int)(len > 64 ? 64 : len), type);
}

static etx_status read_config(const GGUFFile* f, ModelConfig* c, ArchKeys* k) {
    ETX_TRY(read_arch(f, c, k));
    ETX_TRY(get_int(f, key(k, "embedding_length"), -1, &c->dim));
    ETX_TRY(get_int(f, key(k, "feed_forward_length"), -1, &c->hidden_dim));
    ETX_TRY(get_int(f, key(k, "block_count"), -1, &c->n_layers));
    ETX_TRY(get_int(f, key(k, "attention.head_count"), -1, &c->n_heads));
    ETX_TRY(get_int(f, key(k, "attention.head_count_kv"), c->n_heads, &c->n_kv_heads));
    ETX_TRY(get_int(f, key(k, "context_length"), 2048, &c->max_seq_len));
    int hd_default = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    ETX_TRY(get_int(f, key(k, "attention.key_length"), hd_default, &c->head_dim));
    int vdim, rope_dim;
    ETX_TRY(get_int(f, key(k, "attention.value_length"), c->head_dim, &vdim));
    ETX_TRY(get_int(f, key(k, "rope.dimension_count"), c->head_dim, &rope_dim));
    if (vdim != c->head_dim || rope_dim != c->head_dim)
        return etx_error(ETX_ERR_UNSUPPORTED,
                         "%s: key_length %d, value_length %d and rope.dimension_count %d differ (unsupported)",
                         f->path, c->head_dim, vdim, rope_dim);
    double eps, theta;
    ETX_TRY(gguf_get_float(f, key(k, "attention.layer_norm_rms_epsilon"), &eps));
    ETX_TRY(gguf_get_float_or(f, key(k, "rope.freq_base"), 10000.0, &theta));
    if (!(fabs(eps) <= 1.0 && fabs(theta) <= 3.0e38))
        return etx_error(ETX_ERR_FORMAT, "%s: layer_norm_rms_epsilon %g or rope.freq_base %g is out of range", f->path,
                         eps, theta);
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    ETX_TRY(read_rope_scaling(f, c, k));
    return etx_ok();
}

// ---------------------------------------------------------------------------
// weights

// Hugging Face row of stored row r in a Q/K weight with heads of hd rows.
static uint64_t unpermuted_row(uint64_t r, uint64_t hd) {
    uint64_t h = r / hd, k = r % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

static etx_status check_shape(const GGUFFile* f, const GGUFTensor* t, uint64_t ne0, uint64_t ne1) {
    uint64_t want[4] = {ne0, ne1 ? ne1 : 1, 1, 1};
    int ok = 1;
    for (int d = 0; d < 4; d++) ok &= t->ne[d] == want[d];
    if (!ok)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]",
                         f->path, t->name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                         (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (unsigned long long)ne0,
                         (unsigned long long)want[1]);
    return etx_ok();
}

// 1 when tensor t of ne0 x rows elements is held as its blocks (keep_blocks), not as float32.
static int blocks_kept(const GGUFTensor* t, uint64_t ne0, uint64_t rows) {
    return quant_matrix_supported(t->type) && ne0 <= INT32_MAX && rows <= INT32_MAX;
}

// Copies the raw blocks of a matrix that blocks_kept accepts into *q, rows in Hugging
// Face order (whole rows of blocks moved when head_rows > 0).
static etx_status keep_blocks(const GGUFFile* f, const GGUFTensor* t, uint64_t ne0, uint64_t rows, uint64_t row_bytes,
                              uint64_t head_rows, QuantMatrix* q) {
    uint8_t* dst = malloc((size_t)(rows * row_bytes));
    if (!dst)
        return etx_error(ETX_ERR_NOMEM, "%s: tensor %s: out of memory for its %llu MiB of quantized blocks", f->path,
                         t->name, (unsigned long long)(rows * row_bytes >> 20));
    const uint8_t* src = t->data;
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t to = head_rows ? unpermuted_row(r, head_rows) : r;
        memcpy(dst + to * row_bytes, src + r * row_bytes, (size_t)row_bytes);
    }
    q->type = (int)t->type;
    q->rows = (int)rows;
    q->cols = (int)ne0;
    q->blocks = dst;
    q->row_bytes = (size_t)row_bytes;
    q->act_q8 = quant_matrix_act_q8_default(q->type); // K-quants: 8-bit activations (quant_matrix.h)
    return etx_ok();
}

// Loads tensor `name` of GGUF shape [ne0, ne1] (ne1 = 0: a vector). head_rows > 0:
// un-permute rows within heads of that many rows. A matrix (q != NULL) in a type
// blocks_kept accepts keeps only its raw blocks in *q (*out NULL); anything else is
// dequantized into a new float32 buffer *out (*q zeroed).
static etx_status load_tensor(const GGUFFile* f, const char* name, uint64_t ne0, uint64_t ne1, uint64_t head_rows,
                              float** out, QuantMatrix* q) {
    const GGUFTensor* t = gguf_find_tensor(f, name);
    if (!t) return etx_error(ETX_ERR_FORMAT, "%s: missing tensor %s", f->path, name);
    ETX_TRY(check_shape(f, t, ne0, ne1));
    uint64_t rows = ne1 ? ne1 : 1;
    *out = NULL;
    if (q) memset(q, 0, sizeof *q);
    const int keep = q && blocks_kept(t, ne0, rows);
    if (!keep) {
        etx_status st = model_alloc_tensor(out, (size_t)(ne0 * rows), name);
        if (st.code != ETX_OK) return etx_error_wrap(st, "%s", f->path);
    }
    const GGMLTypeInfo* ti = ggml_type_info(t->type);
    uint64_t row_bytes = ne0 / (uint64_t)ti->block_elems * (uint64_t)ti->block_bytes;
    const uint8_t* src = t->data;
    float* w = *out;
    // rows are independent: spread big tensors over the OpenMP threads. Each row is
    // checked for NaN / inf right after its conversion, while it is in cache (a kept
    // matrix's rows are converted into a row buffer of the thread only for the check);
    // bad_row is the first stored row that has one (rows of the file's order).
    uint64_t bad_row = rows;
    int no_mem = 0;
#pragma omp parallel if (ne0 * rows >= (1u << 20))
    {
        float* row_buf = keep ? malloc((size_t)ne0 * sizeof(float)) : NULL;
        if (keep && !row_buf) {
#pragma omp atomic write
            no_mem = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < (int64_t)rows; r++) {
            if (keep && !row_buf) continue;
            uint64_t dst = head_rows ? unpermuted_row((uint64_t)r, head_rows) : (uint64_t)r;
            float* y = keep ? row_buf : w + dst * ne0;
            dequantize_row(t->type, src + (uint64_t)r * row_bytes, y, (size_t)ne0);
            if (model_first_nonfinite(y, (size_t)ne0) < ne0) {
#pragma omp critical(etx_gguf_bad_row)
                if ((uint64_t)r < bad_row) bad_row = (uint64_t)r;
            }
        }
        free(row_buf);
    }
    if (no_mem) return etx_error(ETX_ERR_NOMEM, "%s: tensor %s: out of memory for a row buffer", f->path, name);
    if (bad_row < rows) { // the element's index in the file's layout (stored row, column)
        float* row = keep ? xmalloc((size_t)ne0 * sizeof(float))
                          : w + (head_rows ? unpermuted_row(bad_row, head_rows) : bad_row) * ne0;
        if (keep) dequantize_row(t->type, src + bad_row * row_bytes, row, (size_t)ne0);
        const size_t col = model_first_nonfinite(row, (size_t)ne0);
        etx_status st = model_nonfinite_error(f->path, name, row[col], (size_t)(bad_row * ne0 + col), (size_t)ne0);
        if (keep) free(row);
        return st;
    }
    if (keep) return keep_blocks(f, t, ne0, rows, row_bytes, head_rows, q);
    return etx_ok();
}

// A vector the architecture adds to the Llama layer (a bias, a QK-norm weight): a missing
// one is an error that says which part of which architecture wanted it.
static etx_status load_part(const GGUFFile* f, const ModelConfig* c, const char* name, uint64_t ne0, float** out,
                            const char* part) {
    if (!gguf_find_tensor(f, name))
        return etx_error(ETX_ERR_FORMAT, "%s: missing tensor %s (a %s model has %s)", f->path, name,
                         model_arch_name(c->arch), part);
    return load_tensor(f, name, ne0, 0, 0, out, NULL);
}

// Bias tensors the architecture does not have would be ignored and the model run wrongly:
// llama.cpp's llama graph, for one, adds any attn_q/k/v/output bias it finds.
static etx_status refuse_extra_biases(const GGUFFile* f, const ModelConfig* c, int l) {
    static const char* const biases[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_output.bias",
                                         "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias"};
    char name[96];
    for (size_t i = c->qkv_bias ? 3 : 0; i < sizeof biases / sizeof biases[0]; i++) {
        snprintf(name, sizeof name, "blk.%d.%s", l, biases[i]);
        if (gguf_find_tensor(f, name))
            return etx_error(ETX_ERR_UNSUPPORTED, "%s: tensor %s is not part of the %s architecture etx runs", f->path,
                             name, model_arch_name(c->arch));
    }
    return etx_ok();
}

// Bytes of weights load_weights will hold for this file: float32 for tensors it converts,
// the blocks themselves for matrices it keeps (every 2-D tensor in a kept type; the
// loader's checks of names and shapes come later).
static double held_weight_bytes(const GGUFFile* f) {
    double t = 0.0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const GGUFTensor* g = &f->tensors[i];
        int matrix = g->n_dims == 2 && g->ne[1] > 1;
        t += matrix && blocks_kept(g, g->ne[0], g->ne[1]) ? (double)g->n_bytes : 4.0 * (double)g->n_elems;
    }
    return t;
}

static etx_status load_layer(const GGUFFile* f, const ModelConfig* c, int l, LayerWeights* L) {
    uint64_t dim = (uint64_t)c->dim, hd = (uint64_t)c->head_dim, ff = (uint64_t)c->hidden_dim;
    uint64_t q = (uint64_t)c->n_heads * hd, kv = (uint64_t)c->n_kv_heads * hd;
    // llama's Q/K rows are permuted in the file; qwen2's and qwen3's are not (see the top)
    uint64_t perm = c->arch == MODEL_ARCH_LLAMA ? hd : 0;
    ETX_TRY(refuse_extra_biases(f, c, l));
    char name[96];
#define LOAD(suffix, ne0, ne1, perm, dst, qdst)                            \
    snprintf(name, sizeof name, "blk.%d." suffix ".weight", l);            \
    ETX_TRY(load_tensor(f, name, ne0, ne1, perm, dst, qdst))
    LOAD("attn_norm", dim, 0, 0, &L->attn_norm, NULL);
    LOAD("attn_q", dim, q, perm, &L->wq, &L->wq_q);
    LOAD("attn_k", dim, kv, perm, &L->wk, &L->wk_q);
    LOAD("attn_v", dim, kv, 0, &L->wv, &L->wv_q);
    LOAD("attn_output", q, dim, 0, &L->wo, &L->wo_q);
    LOAD("ffn_norm", dim, 0, 0, &L->ffn_norm, NULL);
    LOAD("ffn_gate", dim, ff, 0, &L->w_gate, &L->w_gate_q);
    LOAD("ffn_up", dim, ff, 0, &L->w_up, &L->w_up_q);
    LOAD("ffn_down", ff, dim, 0, &L->w_down, &L->w_down_q);
#undef LOAD
#define LOAD_PART(suffix, ne0, dst, part)                                  \
    snprintf(name, sizeof name, "blk.%d." suffix, l);                      \
    ETX_TRY(load_part(f, c, name, ne0, dst, part))
    if (c->qkv_bias) {
        LOAD_PART("attn_q.bias", q, &L->bq, "Q/K/V projection biases");
        LOAD_PART("attn_k.bias", kv, &L->bk, "Q/K/V projection biases");
        LOAD_PART("attn_v.bias", kv, &L->bv, "Q/K/V projection biases");
    }
    if (c->qk_norm) {
        LOAD_PART("attn_q_norm.weight", hd, &L->q_norm, "per-head Q/K RMSNorm weights of head_dim");
        LOAD_PART("attn_k_norm.weight", hd, &L->k_norm, "per-head Q/K RMSNorm weights of head_dim");
    }
#undef LOAD_PART
    return etx_ok();
}

static etx_status load_weights(const GGUFFile* f, etx_model* m) {
    ModelConfig* c = &m->cfg;
    ModelWeights* w = &m->w;
    uint64_t dim = (uint64_t)c->dim, vocab = (uint64_t)c->vocab_size;
    c->tied_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
    ETX_TRY(load_tensor(f, "token_embd.weight", dim, vocab, 0, &w->token_embedding, &w->token_embedding_q));
    w->layers = xcalloc((size_t)c->n_layers, sizeof(LayerWeights));
    for (int l = 0; l < c->n_layers; l++) ETX_TRY(load_layer(f, c, l, &w->layers[l]));
    ETX_TRY(load_tensor(f, "output_norm.weight", dim, 0, 0, &w->final_norm, NULL));
    if (c->tied_embeddings) {
        w->lm_head = w->token_embedding;
        w->lm_head_q = w->token_embedding_q; // the same blocks (freed once)
        return etx_ok();
    }
    return load_tensor(f, "output.weight", dim, vocab, 0, &w->lm_head, &w->lm_head_q);
}

// ---------------------------------------------------------------------------
// tokenizer

// tokenizer.ggml.pre names the pre-tokenizer; absent means llama.cpp's default (GPT-2).
static etx_status pretok_kind(const GGUFFile* f, PretokKind* kind) {
    *kind = PRETOK_GPT2;
    if (!gguf_find(f, "tokenizer.ggml.pre")) return etx_ok();
    char* pre;
    ETX_TRY(gguf_get_string_dup(f, "tokenizer.ggml.pre", &pre));
    etx_status st = tokenizer_pretok_from_gguf(pre, kind);
    free(pre);
    if (st.code != ETX_OK) return etx_error_wrap(st, "%s: metadata key tokenizer.ggml.pre", f->path);
    return etx_ok();
}

// NUL-terminated copies of the merges, in one allocation (*buf) plus pointers (*out).
static void copy_merges(const char* const* s, const size_t* lens, uint64_t n, char** buf, char*** out) {
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += lens[i] + 1;
    *buf = xmalloc(total ? total : 1);
    *out = xmalloc((size_t)(n ? n : 1) * sizeof(char*));
    char* p = *buf;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(p, s[i], lens[i]);
        p[lens[i]] = '\0';
        (*out)[i] = p;
        p += lens[i] + 1;
    }
}

// token_type: 3 = control, 4 = user-defined; both are matched verbatim in text.
static etx_status special_flags(const GGUFFile* f, uint64_t n_vocab, int** special) {
    *special = NULL;
    if (!gguf_find(f, "tokenizer.ggml.token_type")) return etx_ok();
    int32_t* types;
    uint64_t n;
    ETX_TRY(gguf_get_int_array(f, "tokenizer.ggml.token_type", &types, &n));
    if (n != n_vocab) {
        free(types);
        return etx_error(ETX_ERR_FORMAT, "%s: metadata key tokenizer.ggml.token_type has %llu entries, expected %llu",
                         f->path, (unsigned long long)n, (unsigned long long)n_vocab);
    }
    int* sp = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    for (uint64_t i = 0; i < n; i++) sp[i] = types[i] == 3 || types[i] == 4;
    free(types);
    *special = sp;
    return etx_ok();
}

static etx_status check_tokenizer_model(const GGUFFile* f) {
    const char* s;
    size_t n;
    ETX_TRY(gguf_get_string(f, "tokenizer.ggml.model", &s, &n));
    if (n == 4 && memcmp(s, "gpt2", 4) == 0) return etx_ok();
    return etx_error(ETX_ERR_UNSUPPORTED,
                     "%s: metadata key tokenizer.ggml.model = '%.*s' is not supported (only gpt2 byte-level BPE)",
                     f->path, (int)(n > 64 ? 64 : n), s);
}

typedef struct {
    const char** tokens;
    size_t* token_lens;
    int* special;
    const char** merge_src;
    size_t* merge_lens;
    char* merge_buf;
    char** merges;
} TokArrays;

static void tok_arrays_free(TokArrays* a) {
    free(a->tokens);
    free(a->token_lens);
    free(a->special);
    free(a->merge_src);
    free(a->merge_lens);
    free(a->merge_buf);
    free(a->merges);
}

static etx_status build_tokenizer(const GGUFFile* f, TokArrays* a, etx_model* m) {
    ETX_TRY(check_tokenizer_model(f));
    uint64_t n_vocab, n_merges = 0;
    ETX_TRY(gguf_get_string_array(f, "tokenizer.ggml.tokens", &a->tokens, &a->token_lens, &n_vocab));
    if (n_vocab != (uint64_t)m->cfg.vocab_size)
        return etx_error(ETX_ERR_FORMAT,
                         "%s: metadata key tokenizer.ggml.tokens has %llu tokens, but token_embd.weight has %d rows",
                         f->path, (unsigned long long)n_vocab, m->cfg.vocab_size);
    ETX_TRY(special_flags(f, n_vocab, &a->special));
    if (gguf_find(f, "tokenizer.ggml.merges")) {
        ETX_TRY(gguf_get_string_array(f, "tokenizer.ggml.merges", &a->merge_src, &a->merge_lens, &n_merges));
        if (n_merges > INT32_MAX)
            return etx_error(ETX_ERR_FORMAT, "%s: too many merges in tokenizer.ggml.merges", f->path);
        copy_merges(a->merge_src, a->merge_lens, n_merges, &a->merge_buf, &a->merges);
    }
    TokenizerSpec spec = {0};
    spec.n_vocab = (int)n_vocab;
    spec.tokens = a->tokens;
    spec.token_lens = a->token_lens;
    spec.special = a->special;
    spec.n_merges = (int)n_merges;
    spec.merges = (const char* const*)a->merges;
    ETX_TRY(pretok_kind(f, &spec.pretok));
    etx_status st = tokenizer_build(&spec, &m->tok);
    if (st.code != ETX_OK) return etx_error_wrap(st, "%s: tokenizer", f->path);
    return etx_ok();
}

// Optional token id keys; -1 when absent.
static etx_status special_ids(const GGUFFile* f, etx_model* m) {
    int64_t bos, eos, eot, eom;
    ETX_TRY(gguf_get_int_or(f, "tokenizer.ggml.bos_token_id", -1, &bos));
    ETX_TRY(gguf_get_int_or(f, "tokenizer.ggml.eos_token_id", -1, &eos));
    ETX_TRY(gguf_get_int_or(f, "tokenizer.ggml.eot_token_id", -1, &eot));
    ETX_TRY(gguf_get_int_or(f, "tokenizer.ggml.eom_token_id", -1, &eom));
    int64_t ids[4] = {bos, eos, eot, eom};
    const char* keys[4] = {"bos_token_id", "eos_token_id", "eot_token_id", "eom_token_id"};
    for (int i = 0; i < 4; i++)
        if (ids[i] < -1 || ids[i] >= m->cfg.vocab_size)
            return etx_error(ETX_ERR_FORMAT, "%s: metadata key tokenizer.ggml.%s = %lld is outside the vocabulary",
                             f->path, keys[i], (long long)ids[i]);
    int eos_ids[3] = {(int)eos, (int)eot, (int)eom};
    model_set_special_tokens(m, (int)bos, eos_ids, 3);
    return etx_ok();
}

// ---------------------------------------------------------------------------

static etx_status load_all(const GGUFFile* f, etx_model* m) {
    ArchKeys k;
    ETX_TRY(read_config(f, &m->cfg, &k));
    const GGUFTensor* emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) return etx_error(ETX_ERR_FORMAT, "%s: missing tensor token_embd.weight", f->path);
    if (emb->ne[1] > INT32_MAX)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor token_embd.weight has too many rows", f->path);
    m->cfg.vocab_size = (int)emb->ne[1];
    int vocab_key;
    ETX_TRY(get_int(f, key(&k, "vocab_size"), m->cfg.vocab_size, &vocab_key));
    if (vocab_key != m->cfg.vocab_size)
        return etx_error(ETX_ERR_FORMAT, "%s: %s = %d but token_embd.weight has %d rows", f->path, key(&k, "vocab_size"),
                         vocab_key, m->cfg.vocab_size);
    ETX_TRY(model_config_validate_bytes(&m->cfg, f->path, held_weight_bytes(f)));
    ETX_TRY(load_weights(f, m));
    TokArrays a = {0};
    etx_status st = build_tokenizer(f, &a, m);
    tok_arrays_free(&a);
    ETX_TRY(st);
    return special_ids(f, m);
}

etx_status gguf_model_load(const char* path, etx_model* m) {
    memset(m, 0, sizeof *m);
    m->bos_id = -1;
    GGUFFile f;
    ETX_TRY(gguf_open(path, &f));
    etx_status st = load_all(&f, m);
    gguf_close(&f);
    if (st.code != ETX_OK) {
        model_free_contents(m);
        return st;
    }
    m->format = "gguf"; // m->path is the caller's (etx_model_load sets it)
    return etx_ok();
}

etx_status gguf_model_read_config(const char* path, ModelConfig* out) {
    GGUFFile f;
    ETX_TRY(gguf_open(path, &f));
    ArchKeys k;
    memset(&k, 0, sizeof k);
    memset(out, 0, sizeof *out);
    etx_status st = read_config(&f, out, &k);
    gguf_close(&f);
    return st;
}
