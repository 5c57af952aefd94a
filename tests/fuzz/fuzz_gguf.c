/*
 * fuzz_gguf.c — libFuzzer target: GGUF files (host/model/gguf.c) and the Llama model
 * loader over them (host/model/gguf_model.c).
 *
 * The input is a whole .gguf file. gguf_open parses the header, the metadata and the
 * tensor table; when it accepts the file, every key goes through every typed getter
 * (each must succeed or return an error), every tensor's data must lie inside the file
 * and its first row is dequantized, and then gguf_model_load reads the file as a model:
 * hyper-parameters, tensor shapes, dequantized weights, RoPE scaling, the tokenizer from
 * the tokenizer.ggml.* metadata. Seeds: the .gguf files of tests/fixtures/loader and the default
 * model's header and tensor table, whole and truncated (tests/scripts/gen_fuzz_corpus.py).
 */
#include <stdint.h>
#include <string.h>

#include "model/dequant.h"
#include "model/gguf.h"
#include "model/model.h"
#include "util.h"

// Each getter on one key: must not crash; a string's bytes must be readable.
static void exercise_key(const GGUFFile* f, const GGUFKV* kv) {
    int64_t i;
    double d;
    const char* s;
    size_t len;
    volatile unsigned char sink = 0;
    gguf_get_int(f, kv->key, &i);
    gguf_get_float(f, kv->key, &d);
    if (gguf_get_string(f, kv->key, &s, &len).code == ETX_OK && len > 0) {
        FUZZ_CHECK((const uint8_t*)s >= f->map && (const uint8_t*)s + len <= f->map + f->size);
        sink ^= (unsigned char)s[0] ^ (unsigned char)s[len - 1];
    }
    char* dup = NULL;
    if (gguf_get_string_dup(f, kv->key, &dup).code == ETX_OK) free(dup);
    const char** strs = NULL;
    size_t* lens = NULL;
    uint64_t n = 0;
    if (gguf_get_string_array(f, kv->key, &strs, &lens, &n).code == ETX_OK) {
        for (uint64_t k = 0; k < n; k++) {
            FUZZ_CHECK((const uint8_t*)strs[k] >= f->map && lens[k] <= f->size &&
                       (const uint8_t*)strs[k] + lens[k] <= f->map + f->size);
            if (lens[k]) sink ^= (unsigned char)strs[k][lens[k] - 1];
        }
        free((void*)strs);
        free(lens);
    }
    int32_t* ints = NULL;
    if (gguf_get_int_array(f, kv->key, &ints, &n).code == ETX_OK) free(ints);
    (void)sink;
}

// A tensor the parser accepted: its bytes inside the data section; its first row decodes.
static void exercise_tensor(const GGUFFile* f, const GGUFTensor* t) {
    const uint8_t* p = t->data;
    FUZZ_CHECK(p >= f->map + f->data_offset && p <= f->map + f->size);
    FUZZ_CHECK(t->n_bytes <= (uint64_t)(f->map + f->size - p));
    const GGMLTypeInfo* ti = ggml_type_info(t->type);
    FUZZ_CHECK(ti && ti->supported && t->ne[0] % (uint64_t)ti->block_elems == 0);
    if (t->ne[0] > 4096) return; // a long row costs time, not coverage
    float row[4096];
    dequantize_row(t->type, p, row, (size_t)t->ne[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const char* path = fuzz_file(data, size);
    GGUFFile f;
    if (gguf_open(path, &f).code != ETX_OK) return 0;
    FUZZ_CHECK(f.data_offset <= f.size);
    for (uint64_t i = 0; i < f.n_kv; i++) exercise_key(&f, &f.kv[i]);
    for (uint64_t i = 0; i < f.n_tensors; i++) exercise_tensor(&f, &f.tensors[i]);
    gguf_close(&f);
    etx_model m;
    if (gguf_model_load(path, &m).code == ETX_OK) {
        FUZZ_CHECK(m.tok && tokenizer_n_vocab(m.tok) == m.cfg.vocab_size);
        model_free_contents(&m);
    }
    return 0;
}
