/*
 * api.c — the model half of the public API: loading (dispatch to the safetensors or
 * GGUF loader by what the path is), model info, the default context length, tokenization
 * and chat formatting.
 * The engine half lives in engine.c.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

// GGUF files start with the bytes "GGUF".
static int file_has_gguf_magic(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

etx_status model_read_config(const char* path, ModelConfig* out) {
    struct stat st;
    if (!path || stat(path, &st) != 0) return etx_error(ETX_ERR_IO, "cannot open model %s", path ? path : "(none)");
    if (S_ISDIR(st.st_mode)) return hf_model_read_config(path, out);
    if (file_has_gguf_magic(path)) return gguf_model_read_config(path, out);
    return etx_error(ETX_ERR_FORMAT, "%s is neither a Hugging Face model directory nor a GGUF file (no GGUF magic)",
                     path);
}

etx_status etx_model_load(const char* path, etx_model** out) {
    *out = NULL;
    if (!path || !*path) return etx_error(ETX_ERR_INVALID_ARG, "no model path given");
    struct stat st;
    if (stat(path, &st) != 0) return etx_error(ETX_ERR_IO, "cannot open model %s: %s", path, strerror(errno));
    etx_model* m = xcalloc(1, sizeof(etx_model));
    etx_status s;
    if (S_ISDIR(st.st_mode)) {
        s = hf_model_load(path, m);
    } else if (file_has_gguf_magic(path)) {
        s = gguf_model_load(path, m);
    } else {
        s = etx_error(ETX_ERR_FORMAT,
                      "%s is neither a Hugging Face model directory nor a GGUF file (no GGUF magic)", path);
    }
    if (s.code != ETX_OK) {
        free(m);
        return s;
    }
    m->path = xstrdup(path);
    *out = m;
    return etx_ok();
}

void etx_model_free(etx_model* m) {
    if (!m) return;
    model_free_contents(m);
    free(m->path);
    free(m);
}

etx_status etx_model_get_info(const etx_model* m, etx_model_info* info) {
    memset(info, 0, sizeof *info);
    const ModelConfig* c = &m->cfg;
    info->vocab_size = c->vocab_size;
    info->dim = c->dim;
    info->hidden_dim = c->hidden_dim;
    info->n_layers = c->n_layers;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->max_seq_len = c->max_seq_len;
    info->bos_id = m->bos_id;
    info->n_eos = m->n_eos;
    for (int i = 0; i < m->n_eos && i < 8; i++) info->eos_ids[i] = m->eos_ids[i];
    info->tied_embeddings = c->tied_embeddings;
    // Llama 3 tokenizers prepend <|begin_of_text|>; ChatML models (SmolLM2) use no BOS.
    info->add_bos = m->bos_id >= 0 && m->chat == CHAT_LLAMA3;
    info->arch = model_arch_name(c->arch);
    info->format = m->format ? m->format : "unknown";
    info->chat_template = chat_template_name(m->chat);
    const long long d = c->dim, qd = (long long)c->n_heads * c->head_dim, kvd = (long long)c->n_kv_heads * c->head_dim;
    long long layer = d * (qd + 2 * kvd) + qd * d + 3 * d * c->hidden_dim + 2 * d;
    if (c->qkv_bias) layer += qd + 2 * kvd;
    if (c->qk_norm) layer += 2LL * c->head_dim;
    info->n_params = c->n_layers * layer + (long long)c->vocab_size * d * (c->tied_embeddings ? 1 : 2) + d;
    info->weight_bytes = model_weight_bytes_held(m);
    return etx_ok();
}

int etx_default_context(const etx_model* m) {
    const int ctx = m->cfg.max_seq_len;
    return ctx < ETX_DEFAULT_CONTEXT_MAX ? ctx : ETX_DEFAULT_CONTEXT_MAX;
}

etx_status etx_tokenize(const etx_model* m, const char* text, size_t len, int add_bos, int32_t** ids,
                        int* n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (add_bos && m->bos_id < 0)
        return etx_error(ETX_ERR_INVALID_ARG, "a BOS token was asked for, but model %s has none", m->path);
    int32_t* body = NULL;
    int n = 0;
    ETX_TRY(tokenizer_encode(m->tok, text, len, &body, &n));
    if (!add_bos) {
        *ids = body;
        *n_ids = n;
        return etx_ok();
    }
    int32_t* all = xmalloc(((size_t)n + 1) * sizeof(int32_t));
    all[0] = m->bos_id;
    if (n) memcpy(all + 1, body, (size_t)n * sizeof(int32_t));
    free(body);
    *ids = all;
    *n_ids = n + 1;
    return etx_ok();
}

etx_status etx_token_bytes(const etx_model* m, int32_t id, const char** bytes, size_t* len) {
    const char* b = tokenizer_token_bytes(m->tok, id, len);
    if (!b) return etx_error(ETX_ERR_INVALID_ARG, "token id %d is outside the vocabulary (0..%d)", id,
                             tokenizer_n_vocab(m->tok) - 1);
    *bytes = b;
    return etx_ok();
}

etx_status etx_chat_format(const etx_model* m, const etx_chat_message* messages, int n,
                           int add_generation_prompt, char** text) {
    *text = NULL;
    if (m->chat == CHAT_NONE)
        return etx_error(ETX_ERR_UNSUPPORTED,
                         "model %s has no chat template etx knows (Llama 3 headers or ChatML)", m->path);
    return chat_template_apply(m->chat, messages, n, add_generation_prompt, text);
}
