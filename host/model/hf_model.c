/*
 * hf_model.c — loads a Hugging Face directory of a Llama, Qwen2 or Qwen3 model into an
 * etx_model (model.h): config.json for the architecture (model_type, else architectures)
 * and hyper-parameters, model.safetensors (or the shards named by
 * model.safetensors.index.json) for the weights, converted from bf16/f16/f32 to
 * float32 (a NaN or infinite weight is an error naming the tensor and element), and
 * tokenizer.json for the tokenizer. Safetensors weights are already in
 * the layout model.h wants: nn.Linear (out, in), Q/K rows in rotate-half order.
 *
 * Per architecture, as transformers builds the model from the same config:
 *   llama  LlamaForCausalLM; attention_bias / mlp_bias true (biases on every projection,
 *          o_proj and the MLP included) are refused rather than ignored.
 *   qwen2  Qwen2ForCausalLM: q/k/v_proj always have biases (o_proj none);
 *          use_sliding_window true is refused.
 *   qwen3  Qwen3ForCausalLM: self_attn.q_norm / k_norm (head_dim) on every layer,
 *          head_dim 128 when config.json omits it (transformers' default);
 *          attention_bias true (o_proj bias too) and use_sliding_window true refused.
 * Any layer_types entry other than full_attention (transformers 5) is refused too.
 */
#include <cJSON.h>
#include <math.h>
#include <string.h>

#include "model/model.h"
#include "model/safetensors.h"

// ---------------------------------------------------------------------------
// config.json

typedef struct {
    const char* path;
    const cJSON* root;
} Config;

// A JSON number that is an integer in [0, INT32_MAX].
static int json_int(const cJSON* v) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    return d >= 0.0 && d <= 2147483647.0 && floor(d) == d;
}

// Integer field (def >= 0 when optional); a JSON null counts as absent.
static etx_status cfg_int(const Config* c, const cJSON* obj, const char* key, long def, int* out) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return etx_error(ETX_ERR_FORMAT, "%s: missing \"%s\"", c->path, key);
        *out = (int)def;
        return etx_ok();
    }
    if (!json_int(v))
        return etx_error(ETX_ERR_FORMAT, "%s: \"%s\" is not a non-negative integer", c->path, key);
    *out = (int)v->valuedouble;
    return etx_ok();
}

static etx_status cfg_float(const Config* c, const cJSON* obj, const char* key, double def, float* out) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return etx_error(ETX_ERR_FORMAT, "%s: missing \"%s\"", c->path, key);
        *out = (float)def;
        return etx_ok();
    }
    if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= 3.0e38))
        return etx_error(ETX_ERR_FORMAT, "%s: \"%s\" is not a finite float32 number", c->path, key);
    *out = (float)v->valuedouble;
    return etx_ok();
}

static int str_is(const cJSON* v, const char* s) { return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0; }

// The architecture: model_type (what transformers' AutoConfig goes by), else the first
// known entry of architectures. Anything else is refused, naming both fields.
static etx_status read_arch(const Config* c, ModelArch* arch) {
    static const struct {
        const char* model_type;
        const char* class_name;
        ModelArch arch;
    } known[] = {
        {"llama", "LlamaForCausalLM", MODEL_ARCH_LLAMA},
        {"qwen2", "Qwen2ForCausalLM", MODEL_ARCH_QWEN2},
        {"qwen3", "Qwen3ForCausalLM", MODEL_ARCH_QWEN3},
    };
    const size_t n_known = sizeof known / sizeof known[0];
    const cJSON* mt = cJSON_GetObjectItemCaseSensitive(c->root, "model_type");
    const cJSON* archs = cJSON_GetObjectItemCaseSensitive(c->root, "architectures");
    for (size_t i = 0; i < n_known; i++)
        if (str_is(mt, known[i].model_type)) {
            *arch = known[i].arch;
            return etx_ok();
        }
    const cJSON* a;
    cJSON_ArrayForEach(a, archs) {
        for (size_t i = 0; i < n_known; i++)
            if (str_is(a, known[i].class_name)) {
                *arch = known[i].arch;
                return etx_ok();
            }
    }
    const cJSON* first = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    return etx_error(ETX_ERR_UNSUPPORTED,
                     "%s: model_type %.64s (architectures %.64s) is not supported: etx runs llama, qwen2 and qwen3 "
                     "(LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
                     c->path, cJSON_IsString(mt) ? mt->valuestring : "(missing)",
                     cJSON_IsString(first) ? first->valuestring : "(missing)");
}

// A boolean field that must not be true: etx would compute another model.
static etx_status refuse_true(const Config* c, const char* key, ModelArch arch, const char* why) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (cJSON_IsTrue(v))
        return etx_error(ETX_ERR_UNSUPPORTED, "%s: \"%s\" true is not supported for %s (%s)", c->path, key,
                         model_arch_name(arch), why);
    return etx_ok();
}

// transformers 5 configs list each layer's attention kind; only full attention is run.
static etx_status check_layer_types(const Config* c) {
    const cJSON* types = cJSON_GetObjectItemCaseSensitive(c->root, "layer_types");
    if (!types || cJSON_IsNull(types)) return etx_ok();
    if (!cJSON_IsArray(types)) return etx_error(ETX_ERR_FORMAT, "%s: \"layer_types\" is not a list", c->path);
    int i = 0;
    const cJSON* t;
    cJSON_ArrayForEach(t, types) {
        if (!str_is(t, "full_attention"))
            return etx_error(ETX_ERR_UNSUPPORTED,
                             "%s: \"layer_types\"[%d] is %.64s: only full_attention layers are supported", c->path, i,
                             cJSON_IsString(t) ? t->valuestring : "not a string");
        i++;
    }
    return etx_ok();
}

// What the architecture adds to the Llama layer, and the options etx refuses for it.
static etx_status read_arch_parts(const Config* c, ModelConfig* m) {
    ETX_TRY(check_layer_types(c));
    switch (m->arch) {
    case MODEL_ARCH_LLAMA:
        ETX_TRY(refuse_true(c, "attention_bias", m->arch, "biases on every attention projection"));
        ETX_TRY(refuse_true(c, "mlp_bias", m->arch, "biases on the MLP projections"));
        break;
    case MODEL_ARCH_QWEN2:
        m->qkv_bias = 1; // transformers' Qwen2Attention: q/k/v_proj bias=True, whatever the config says
        ETX_TRY(refuse_true(c, "use_sliding_window", m->arch, "sliding-window attention"));
        break;
    case MODEL_ARCH_QWEN3:
        m->qk_norm = 1;
        ETX_TRY(refuse_true(c, "attention_bias", m->arch, "biases on every attention projection, o_proj included"));
        ETX_TRY(refuse_true(c, "use_sliding_window", m->arch, "sliding-window attention"));
        break;
    }
    return etx_ok();
}

// RoPE: checkpoints written before transformers 5 give rope_theta and rope_scaling at
// the top; transformers 5 writes one rope_parameters object holding rope_theta, rope_type
// and the scaling parameters. Both are read (the top-level fields first), so that a model
// saved by either loads with its own base rather than the default.
static etx_status read_rope(const Config* c, ModelConfig* m) {
    const char* key = "rope_scaling";
    const cJSON* rs = cJSON_GetObjectItemCaseSensitive(c->root, key);
    const cJSON* rp = cJSON_GetObjectItemCaseSensitive(c->root, "rope_parameters");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return etx_error(ETX_ERR_FORMAT, "%s: \"rope_parameters\" is not an object", c->path);
    const cJSON* theta = cJSON_GetObjectItemCaseSensitive(c->root, "rope_theta");
    if ((!theta || cJSON_IsNull(theta)) && cJSON_IsObject(rp)) {
        ETX_TRY(cfg_float(c, rp, "rope_theta", 10000.0, &m->rope_theta));
    } else {
        ETX_TRY(cfg_float(c, c->root, "rope_theta", 10000.0, &m->rope_theta));
    }
    if ((!rs || cJSON_IsNull(rs)) && cJSON_IsObject(rp)) {
        rs = rp;
        key = "rope_parameters";
    }
    if (!rs || cJSON_IsNull(rs)) return etx_ok();
    if (!cJSON_IsObject(rs)) return etx_error(ETX_ERR_FORMAT, "%s: \"%s\" is not an object", c->path, key);
    const cJSON* type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!type) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (str_is(type, "default")) return etx_ok();
    if (!str_is(type, "llama3"))
        return etx_error(ETX_ERR_UNSUPPORTED, "%s: %s type %.64s is not supported (only default and llama3)", c->path,
                         key, cJSON_IsString(type) ? type->valuestring : "(missing)");
    m->rope_llama3 = 1;
    ETX_TRY(cfg_float(c, rs, "factor", -1, &m->rope_factor));
    ETX_TRY(cfg_float(c, rs, "low_freq_factor", -1, &m->rope_low_freq_factor));
    ETX_TRY(cfg_float(c, rs, "high_freq_factor", -1, &m->rope_high_freq_factor));
    return cfg_int(c, rs, "original_max_position_embeddings", -1, &m->rope_original_max_pos);
}

static etx_status read_config(const Config* c, ModelConfig* m) {
    const cJSON* r = c->root;
    ETX_TRY(read_arch(c, &m->arch));
    ETX_TRY(read_arch_parts(c, m));
    const int qwen = m->arch != MODEL_ARCH_LLAMA;
    ETX_TRY(cfg_int(c, r, "hidden_size", -1, &m->dim));
    ETX_TRY(cfg_int(c, r, "intermediate_size", -1, &m->hidden_dim));
    ETX_TRY(cfg_int(c, r, "num_hidden_layers", -1, &m->n_layers));
    ETX_TRY(cfg_int(c, r, "num_attention_heads", -1, &m->n_heads));
    ETX_TRY(cfg_int(c, r, "num_key_value_heads", m->n_heads, &m->n_kv_heads));
    // transformers' defaults when head_dim is absent: Qwen3Config 128, the others dim / n_heads
    const int hd_default = m->arch == MODEL_ARCH_QWEN3 ? 128 : m->n_heads > 0 ? m->dim / m->n_heads : 0;
    ETX_TRY(cfg_int(c, r, "head_dim", hd_default, &m->head_dim));
    ETX_TRY(cfg_int(c, r, "vocab_size", -1, &m->vocab_size));
    ETX_TRY(cfg_int(c, r, "max_position_embeddings", qwen ? 32768 : 2048, &m->max_seq_len));
    ETX_TRY(cfg_float(c, r, "rms_norm_eps", 1e-6, &m->norm_eps));
    ETX_TRY(read_rope(c, m));
    const cJSON* tie = cJSON_GetObjectItemCaseSensitive(r, "tie_word_embeddings");
    m->tied_embeddings = cJSON_IsTrue(tie);
    return model_config_validate(m, c->path);
}

// bos_token_id (int or null) and eos_token_id (int, list of ints, or null).
static etx_status read_special_ids(const Config* c, int* bos, int* eos, int* n_eos) {
    *bos = -1;
    *n_eos = 0;
    const cJSON* b = cJSON_GetObjectItemCaseSensitive(c->root, "bos_token_id");
    if (b && !cJSON_IsNull(b)) ETX_TRY(cfg_int(c, c->root, "bos_token_id", -1, bos));
    const cJSON* e = cJSON_GetObjectItemCaseSensitive(c->root, "eos_token_id");
    if (!e || cJSON_IsNull(e)) return etx_ok();
    if (cJSON_IsNumber(e)) return cfg_int(c, c->root, "eos_token_id", -1, &eos[(*n_eos)++]);
    if (!cJSON_IsArray(e)) return etx_error(ETX_ERR_FORMAT, "%s: \"eos_token_id\" is not an integer or list", c->path);
    const cJSON* x;
    cJSON_ArrayForEach(x, e) {
        if (!json_int(x))
            return etx_error(ETX_ERR_FORMAT, "%s: \"eos_token_id\" holds a non-integer", c->path);
        if (*n_eos < 8) eos[(*n_eos)++] = (int)x->valuedouble;
    }
    return etx_ok();
}

// ---------------------------------------------------------------------------
// weights

// Loads tensor `name`, which must have shape (d0) or (d0, d1) (d1 = 0: a vector).
static etx_status load_tensor(const STCheckpoint* ck, const char* name, uint64_t d0, uint64_t d1, float** out) {
    const STTensor* t;
    const STFile* f;
    ETX_TRY(st_checkpoint_find(ck, name, &t, &f));
    if (!t) return etx_error(ETX_ERR_FORMAT, "%s: missing tensor %s", ck->dir, name);
    int nd = d1 ? 2 : 1;
    if (t->n_dims != nd || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        // "[a]", "[a, b]" or "[a, b, ...]" (a vector's second size is not printed)
        char have[64] = "", want[48];
        if (t->n_dims > 0) snprintf(have, sizeof have, "%llu", (unsigned long long)t->shape[0]);
        if (t->n_dims > 1)
            snprintf(have + strlen(have), sizeof have - strlen(have), ", %llu%s", (unsigned long long)t->shape[1],
                     t->n_dims > 2 ? ", ..." : "");
        if (d1)
            snprintf(want, sizeof want, "%llu, %llu", (unsigned long long)d0, (unsigned long long)d1);
        else
            snprintf(want, sizeof want, "%llu", (unsigned long long)d0);
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%s]", f->path, name, have, want);
    }
    if (t->dtype == ST_OTHER)
        return etx_error(ETX_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (only F32, F16, BF16)", f->path, name,
                         t->dtype_name);
    etx_status st = model_alloc_tensor(out, (size_t)t->n_elems, name);
    if (st.code != ETX_OK) return etx_error_wrap(st, "%s", f->path);
    st_to_f32(t, *out);
    const size_t bad = model_first_nonfinite(*out, (size_t)t->n_elems);
    if (bad < (size_t)t->n_elems) return model_nonfinite_error(f->path, name, (*out)[bad], bad, (size_t)(d1 ? d1 : d0));
    return etx_ok();
}

// A vector the architecture adds to the Llama layer (a bias, a QK-norm weight): a missing
// one is an error that says which part of which architecture wanted it.
static etx_status load_part(const STCheckpoint* ck, const ModelConfig* c, const char* name, uint64_t d0, float** out,
                            const char* part) {
    const STTensor* t;
    const STFile* f;
    ETX_TRY(st_checkpoint_find(ck, name, &t, &f));
    if (!t)
        return etx_error(ETX_ERR_FORMAT, "%s: missing tensor %s (a %s model has %s)", ck->dir, name,
                         model_arch_name(c->arch), part);
    return load_tensor(ck, name, d0, 0, out);
}

static etx_status load_layer(const STCheckpoint* ck, const ModelConfig* c, int l, LayerWeights* L) {
    uint64_t dim = (uint64_t)c->dim, ff = (uint64_t)c->hidden_dim, hd = (uint64_t)c->head_dim;
    uint64_t q = (uint64_t)c->n_heads * hd, kv = (uint64_t)c->n_kv_heads * hd;
    char name[128];
#define LOAD(suffix, d0, d1, dst)                                                     \
    snprintf(name, sizeof name, "model.layers.%d." suffix ".weight", l);              \
    ETX_TRY(load_tensor(ck, name, d0, d1, dst))
    LOAD("input_layernorm", dim, 0, &L->attn_norm);
    LOAD("self_attn.q_proj", q, dim, &L->wq);
    LOAD("self_attn.k_proj", kv, dim, &L->wk);
    LOAD("self_attn.v_proj", kv, dim, &L->wv);
    LOAD("self_attn.o_proj", dim, q, &L->wo);
    LOAD("post_attention_layernorm", dim, 0, &L->ffn_norm);
    LOAD("mlp.gate_proj", ff, dim, &L->w_gate);
    LOAD("mlp.up_proj", ff, dim, &L->w_up);
    LOAD("mlp.down_proj", dim, ff, &L->w_down);
#undef LOAD
    // the architecture's additions (model.h)
#define LOAD_PART(suffix, d0, dst, part)                                 \
    snprintf(name, sizeof name, "model.layers.%d." suffix, l);           \
    ETX_TRY(load_part(ck, c, name, d0, dst, part))
    if (c->qkv_bias) {
        LOAD_PART("self_attn.q_proj.bias", q, &L->bq, "Q/K/V projection biases");
        LOAD_PART("self_attn.k_proj.bias", kv, &L->bk, "Q/K/V projection biases");
        LOAD_PART("self_attn.v_proj.bias", kv, &L->bv, "Q/K/V projection biases");
    }
    if (c->qk_norm) {
        LOAD_PART("self_attn.q_norm.weight", hd, &L->q_norm, "per-head Q/K RMSNorm weights of head_dim");
        LOAD_PART("self_attn.k_norm.weight", hd, &L->k_norm, "per-head Q/K RMSNorm weights of head_dim");
    }
#undef LOAD_PART
    return etx_ok();
}

static etx_status load_weights(const STCheckpoint* ck, etx_model* m) {
    const ModelConfig* c = &m->cfg;
    ModelWeights* w = &m->w;
    uint64_t dim = (uint64_t)c->dim, vocab = (uint64_t)c->vocab_size;
    ETX_TRY(load_tensor(ck, "model.embed_tokens.weight", vocab, dim, &w->token_embedding));
    w->layers = xcalloc((size_t)c->n_layers, sizeof(LayerWeights));
    for (int l = 0; l < c->n_layers; l++) ETX_TRY(load_layer(ck, c, l, &w->layers[l]));
    ETX_TRY(load_tensor(ck, "model.norm.weight", dim, 0, &w->final_norm));
    if (c->tied_embeddings) {
        w->lm_head = w->token_embedding;
        return etx_ok();
    }
    const STTensor* t;
    const STFile* f;
    ETX_TRY(st_checkpoint_find(ck, "lm_head.weight", &t, &f));
    if (!t)
        return etx_error(ETX_ERR_FORMAT,
                         "%s: missing tensor lm_head.weight (config.json has tie_word_embeddings false)", ck->dir);
    return load_tensor(ck, "lm_head.weight", vocab, dim, &w->lm_head);
}

// ---------------------------------------------------------------------------

static char* join_path(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static etx_status parse_config(const char* dir, etx_model* m, int* bos, int* eos, int* n_eos) {
    char* path = join_path(dir, "config.json");
    char* text;
    size_t len;
    etx_status st = etx_read_file_max(path, ETX_JSON_FILE_MAX, &text, &len);
    if (st.code != ETX_OK) {
        free(path);
        return st;
    }
    cJSON* root = cJSON_ParseWithLength(text, len);
    free(text);
    Config c = {path, root};
    if (!cJSON_IsObject(root)) st = etx_error(ETX_ERR_FORMAT, "%s: not a JSON object", path);
    if (st.code == ETX_OK) st = read_config(&c, &m->cfg);
    if (st.code == ETX_OK) st = read_special_ids(&c, bos, eos, n_eos);
    cJSON_Delete(root);
    free(path);
    return st;
}

static etx_status load_all(const char* dir, etx_model* m) {
    int bos = -1, eos[8] = {0}, n_eos = 0;
    ETX_TRY(parse_config(dir, m, &bos, eos, &n_eos));
    STCheckpoint ck;
    ETX_TRY(st_checkpoint_open(dir, &ck));
    etx_status st = load_weights(&ck, m);
    st_checkpoint_close(&ck);
    ETX_TRY(st);
    char* tok_path = join_path(dir, "tokenizer.json");
    st = tokenizer_load_json(tok_path, &m->tok);
    free(tok_path);
    ETX_TRY(st);
    if (tokenizer_n_vocab(m->tok) > m->cfg.vocab_size)
        return etx_error(ETX_ERR_FORMAT, "%s: tokenizer.json has %d tokens, more than vocab_size %d", dir,
                         tokenizer_n_vocab(m->tok), m->cfg.vocab_size);
    model_set_special_tokens(m, bos, eos, n_eos);
    return etx_ok();
}

etx_status hf_model_load(const char* dir, etx_model* m) {
    memset(m, 0, sizeof *m);
    m->bos_id = -1;
    etx_status st = load_all(dir, m);
    if (st.code != ETX_OK) {
        model_free_contents(m);
        return st;
    }
    m->format = "safetensors"; // m->path is the caller's (etx_model_load sets it)
    return etx_ok();
}

etx_status hf_model_read_config(const char* dir, ModelConfig* out) {
    etx_model tmp;
    memset(&tmp, 0, sizeof tmp);
    int bos = -1, eos[8] = {0}, n_eos = 0;
    ETX_TRY(parse_config(dir, &tmp, &bos, eos, &n_eos));
    *out = tmp.cfg;
    return etx_ok();
}
