/*
 * hf_model.c — loads a Hugging Face Llama directory into an etx_model (model.h):
 * config.json for the hyper-parameters, model.safetensors (or the shards named by
 * model.safetensors.index.json) for the weights, converted from bf16/f16/f32 to
 * float32 (a NaN or infinite weight is an error naming the tensor and element), and
 * tokenizer.json for the tokenizer. Safetensors weights are already in
 * the layout model.h wants: nn.Linear (out, in), Q/K rows in rotate-half order.
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

static etx_status check_arch(const Config* c) {
    const cJSON* archs = cJSON_GetObjectItemCaseSensitive(c->root, "architectures");
    const cJSON* a;
    cJSON_ArrayForEach(a, archs) if (str_is(a, "LlamaForCausalLM")) return etx_ok();
    const cJSON* mt = cJSON_GetObjectItemCaseSensitive(c->root, "model_type");
    if (str_is(mt, "llama")) return etx_ok();
    const cJSON* first = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char* name = cJSON_IsString(first) ? first->valuestring : cJSON_IsString(mt) ? mt->valuestring : "(none)";
    return etx_error(ETX_ERR_UNSUPPORTED, "%s: architecture %.64s is not supported (only LlamaForCausalLM)", c->path,
                     name);
}

static etx_status read_rope_scaling(const Config* c, ModelConfig* m) {
    const cJSON* rs = cJSON_GetObjectItemCaseSensitive(c->root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return etx_ok();
    if (!cJSON_IsObject(rs)) return etx_error(ETX_ERR_FORMAT, "%s: \"rope_scaling\" is not an object", c->path);
    const cJSON* type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!type) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (str_is(type, "default")) return etx_ok();
    if (!str_is(type, "llama3"))
        return etx_error(ETX_ERR_UNSUPPORTED, "%s: rope_scaling type %.64s is not supported (only llama3)", c->path,
                         cJSON_IsString(type) ? type->valuestring : "(missing)");
    m->rope_llama3 = 1;
    ETX_TRY(cfg_float(c, rs, "factor", -1, &m->rope_factor));
    ETX_TRY(cfg_float(c, rs, "low_freq_factor", -1, &m->rope_low_freq_factor));
    ETX_TRY(cfg_float(c, rs, "high_freq_factor", -1, &m->rope_high_freq_factor));
    return cfg_int(c, rs, "original_max_position_embeddings", -1, &m->rope_original_max_pos);
}

static etx_status read_config(const Config* c, ModelConfig* m) {
    const cJSON* r = c->root;
    ETX_TRY(check_arch(c));
    ETX_TRY(cfg_int(c, r, "hidden_size", -1, &m->dim));
    ETX_TRY(cfg_int(c, r, "intermediate_size", -1, &m->hidden_dim));
    ETX_TRY(cfg_int(c, r, "num_hidden_layers", -1, &m->n_layers));
    ETX_TRY(cfg_int(c, r, "num_attention_heads", -1, &m->n_heads));
    ETX_TRY(cfg_int(c, r, "num_key_value_heads", m->n_heads, &m->n_kv_heads));
    ETX_TRY(cfg_int(c, r, "head_dim", m->n_heads > 0 ? m->dim / m->n_heads : 0, &m->head_dim));
    ETX_TRY(cfg_int(c, r, "vocab_size", -1, &m->vocab_size));
    ETX_TRY(cfg_int(c, r, "max_position_embeddings", 2048, &m->max_seq_len));
    ETX_TRY(cfg_float(c, r, "rms_norm_eps", 1e-6, &m->norm_eps));
    ETX_TRY(cfg_float(c, r, "rope_theta", 10000.0, &m->rope_theta));
    ETX_TRY(read_rope_scaling(c, m));
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
    if (t->n_dims != nd || t->shape[0] != d0 || (d1 && t->shape[1] != d1))
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s has shape [%llu%s%llu%s], expected [%llu%s%llu]", f->path, name,
                         (unsigned long long)(t->n_dims > 0 ? t->shape[0] : 0), t->n_dims > 1 ? ", " : "",
                         (unsigned long long)(t->n_dims > 1 ? t->shape[1] : 0), t->n_dims > 2 ? ", ..." : "",
                         (unsigned long long)d0, d1 ? ", " : "", (unsigned long long)d1);
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
