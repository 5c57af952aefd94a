/*
 * fixtures.c — loads the tokenizers and the model some fuzz targets run against
 * (fixtures.h). SmolLM2's tokenizer is built from the GGUF metadata directly (the
 * tokens, merges and token types arrays) rather than through the model loader, which
 * would also dequantize ~100 MB of weights the tokenizer does not need.
 */
#include "fixtures.h"

#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "model/gguf.h"

static Tokenizer* toks[FIXTURE_N_TOKENIZERS];
static const char* tok0_source;
static etx_model* tiny;

static void die(const char* what, const char* path, etx_status st) {
    fprintf(stderr, "fuzz: cannot load %s %s: %s\n", what, path, st.message);
    abort();
}

// Tokenizer of a GGUF file from its tokenizer.ggml.* arrays (SmolLM pre-tokenizer).
static Tokenizer* tokenizer_from_gguf(const char* path) {
    GGUFFile f;
    etx_status st = gguf_open(path, &f);
    if (st.code != ETX_OK) die("GGUF", path, st);
    const char** tokens = NULL;
    const char** merge_src = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    uint64_t n_vocab = 0, n_merges = 0;
    st = gguf_get_string_array(&f, "tokenizer.ggml.tokens", &tokens, &token_lens, &n_vocab);
    if (st.code == ETX_OK)
        st = gguf_get_string_array(&f, "tokenizer.ggml.merges", &merge_src, &merge_lens, &n_merges);
    if (st.code != ETX_OK) die("the tokenizer arrays of", path, st);
    int32_t* types = NULL;
    uint64_t n_types = 0;
    int* special = xcalloc((size_t)n_vocab, sizeof(int));
    if (gguf_get_int_array(&f, "tokenizer.ggml.token_type", &types, &n_types).code == ETX_OK && n_types == n_vocab)
        for (uint64_t i = 0; i < n_vocab; i++) special[i] = types[i] == 3 || types[i] == 4; // control, user-defined
    // the merges as NUL-terminated strings
    char** merges = xcalloc((size_t)n_merges + 1, sizeof(char*));
    for (uint64_t i = 0; i < n_merges; i++) {
        merges[i] = xmalloc(merge_lens[i] + 1);
        memcpy(merges[i], merge_src[i], merge_lens[i]);
        merges[i][merge_lens[i]] = '\0';
    }
    TokenizerSpec spec = {.n_vocab = (int)n_vocab, .tokens = tokens, .token_lens = token_lens, .special = special,
                          .n_merges = (int)n_merges, .merges = (const char* const*)merges, .pretok = PRETOK_SMOLLM};
    Tokenizer* t = NULL;
    st = tokenizer_build(&spec, &t);
    if (st.code != ETX_OK) die("the tokenizer of", path, st);
    for (uint64_t i = 0; i < n_merges; i++) free(merges[i]);
    free(merges);
    free(special);
    free(types);
    free((void*)tokens);
    free(token_lens);
    free((void*)merge_src);
    free(merge_lens);
    gguf_close(&f);
    return t;
}

static Tokenizer* tokenizer_from_json(const char* path) {
    Tokenizer* t = NULL;
    etx_status st = tokenizer_load_json(path, &t);
    if (st.code != ETX_OK) die("tokenizer", path, st);
    return t;
}

static void load_tokenizers(void) {
    if (toks[0]) return;
    struct stat sb;
    tok0_source = stat(ETX_DEFAULT_MODEL, &sb) == 0 ? ETX_DEFAULT_MODEL : ETX_FIXTURES "/loader/tiny.gguf";
    toks[0] = tokenizer_from_gguf(tok0_source);
    toks[1] = tokenizer_from_json(ETX_FIXTURES "/tokenizer/added/tokenizer.json");
    toks[2] = tokenizer_from_json(ETX_FIXTURES "/models/tiny-llama3-rope/tokenizer.json");
}

const Tokenizer* fixture_tokenizer(int i) {
    load_tokenizers();
    return toks[i];
}

const char* fixture_tokenizer0_source(void) {
    load_tokenizers();
    return tok0_source;
}

const etx_model* fixture_tiny_model(void) {
    if (!tiny) {
        const char* path = ETX_FIXTURES "/loader/tiny.gguf";
        etx_status st = etx_model_load(path, &tiny);
        if (st.code != ETX_OK) die("model", path, st);
    }
    return tiny;
}
