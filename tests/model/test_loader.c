/*
 * test_loader.c — the model loaders: the GGUF reader (every metadata type, alignment),
 * dequantization of every ggml type etx reads against gguf-py's dequantize, the GGUF and
 * Hugging Face Llama loaders on the same tiny model (exact agreement, which also checks
 * the Q/K un-permutation against llama.cpp's converter), sharded safetensors with
 * bf16/f16/f32, tied embeddings and llama3 RoPE scaling (also as GGUF's rope_freqs
 * tensor), the Qwen2 / Qwen3 fixtures (a missing bias or QK-norm weight, a wrong shape,
 * an unknown model_type, sliding-window options: errors naming the tensor or field),
 * and the default model.
 *
 * Corruption tests copy a good fixture to a temporary file, damage it (truncate, flip
 * the magic, push an offset past the end, change a shape, drop a tensor, unknown dtype
 * or ggml type, absurd counts and lengths, a NaN or infinite weight) and check that loading returns an error
 * whose message names the file and the tensor or key — never a crash (the suite runs
 * under ASan and UBSan). Fixtures: tests/scripts/gen_loader_fixtures.py.
 */
#include <cJSON.h>
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/dequant.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "check_etx.h"
#include "check_main.h"
#include "test_rng.h"

#define FIX ETX_FIXTURES "/loader/"

// ---------------------------------------------------------------------------
// helpers

// Temporary directory for damaged copies: made before the tests and removed after them
// by the parent process (an unchecked fixture), so a failing test leaves nothing behind.
// Tests that copy a model directory into it empty it first.
static char g_tmp[256];

static void tmp_setup(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/etx_test_loader_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("test_loader: mkdtemp");
        exit(EXIT_FAILURE);
    }
}

// Empties the directory (it holds plain files only).
static void tmp_clear(void) {
    DIR* d = opendir(g_tmp);
    if (d) {
        struct dirent* e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", g_tmp, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
}

static void tmp_teardown(void) {
    tmp_clear();
    rmdir(g_tmp);
}

static char* tmp_path(const char* name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

static unsigned char* slurp(const char* path, size_t* n) {
    char* data;
    CK_OK(etx_read_file(path, &data, n));
    return (unsigned char*)data;
}

static void spit(const char* path, const void* data, size_t n) {
    FILE* f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void copy_file(const char* from, const char* to) {
    size_t n;
    unsigned char* d = slurp(from, &n);
    spit(to, d, n);
    free(d);
}

// The call failed, and its message names what it should (any of up to two strings).
static void expect_error(etx_status st, const char* name1, const char* name2) {
    ck_assert_msg(st.code != ETX_OK, "expected an error mentioning %s", name1);
    ck_assert_msg(strlen(st.message) > 0, "empty error message");
    if (name1) ck_assert_msg(strstr(st.message, name1), "message \"%s\" does not name %s", st.message, name1);
    if (name2) ck_assert_msg(strstr(st.message, name2), "message \"%s\" does not name %s", st.message, name2);
}

static void put_u32(unsigned char* p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char* p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char* p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Offset of the GGUF string s (its u64 length prefix) in buf.
static size_t find_gguf_str(const unsigned char* buf, size_t n, const char* s) {
    size_t len = strlen(s);
    for (size_t i = 0; i + 8 + len <= n; i++) {
        if (memcmp(buf + i + 8, s, len) != 0) continue;
        int ok = 1;
        for (int b = 0; b < 8; b++) ok &= buf[i + b] == (unsigned char)(len >> (8 * b));
        if (ok) return i;
    }
    ck_abort_msg("string %s not found in the GGUF file", s);
    return 0;
}

// Where a tensor info's fields are, given its name.
typedef struct {
    size_t ne;     // ne[0]
    size_t type;   // u32 ggml type
    size_t offset; // u64 data offset
} InfoPos;

static InfoPos tensor_info_pos(const unsigned char* buf, size_t n, const char* name) {
    size_t p = find_gguf_str(buf, n, name) + 8 + strlen(name);
    uint32_t nd = get_u32(buf + p);
    InfoPos ip = {p + 4, p + 4 + 8 * nd, p + 8 + 8 * nd};
    return ip;
}

// Position of a metadata value (just after its u32 type) for a key.
static size_t kv_value_pos(const unsigned char* buf, size_t n, const char* key) {
    return find_gguf_str(buf, n, key) + 8 + strlen(key) + 4;
}

static int float_arrays_equal(const float* a, const float* b, size_t n, size_t* where) {
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            *where = i;
            return 0;
        }
    }
    return 1;
}

// ---------------------------------------------------------------------------
// GGUF reader and dequantization

START_TEST(gguf_metadata_all_types) {
    GGUFFile f;
    etx_status st = gguf_open(FIX "types.gguf", &f);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    ck_assert_uint_eq(f.version, 3);
    ck_assert_uint_eq(f.alignment, 64);
    ck_assert_uint_eq(f.data_offset % 64, 0);
    int64_t v;
    const struct {
        const char* key;
        int64_t want;
    } ints[] = {{"test.u8", 200},          {"test.i8", -100},        {"test.u16", 60000},
                {"test.i16", -30000},      {"test.u32", 4000000000}, {"test.i32", -2000000000},
                {"test.u64", 10000000000}, {"test.i64", -10000000000}, {"test.bool", 1}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        st = gguf_get_int(&f, ints[i].key, &v);
        ck_assert_msg(st.code == ETX_OK, "%s", st.message);
        ck_assert_msg(v == ints[i].want, "%s = %lld", ints[i].key, (long long)v);
    }
    double d;
    ck_assert_int_eq(gguf_get_float(&f, "test.f32", &d).code, ETX_OK);
    ck_assert(d == 1.5);
    ck_assert_int_eq(gguf_get_float(&f, "test.f64", &d).code, ETX_OK);
    ck_assert(d == -2.25);
    char* s;
    ck_assert_int_eq(gguf_get_string_dup(&f, "test.str", &s).code, ETX_OK);
    ck_assert_str_eq(s, "hello, gguf");
    free(s);
    int32_t* arr;
    uint64_t n;
    ck_assert_int_eq(gguf_get_int_array(&f, "test.arr_i32", &arr, &n).code, ETX_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert(arr[0] == 1 && arr[1] == -2 && arr[2] == 3);
    free(arr);
    const char** strs;
    size_t* lens;
    ck_assert_int_eq(gguf_get_string_array(&f, "test.arr_str", &strs, &lens, &n).code, ETX_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert(lens[0] == 1 && strs[0][0] == 'a' && lens[1] == 2 && memcmp(strs[1], "bc", 2) == 0 && lens[2] == 0);
    free(strs);
    free(lens);
    // errors name the file and the key
    expect_error(gguf_get_int(&f, "test.missing", &v), "types.gguf", "test.missing");
    expect_error(gguf_get_int(&f, "test.str", &v), "types.gguf", "test.str");
    expect_error(gguf_get_int_array(&f, "test.arr_f32", &arr, &n), "types.gguf", "test.arr_f32");
    expect_error(gguf_get_string_array(&f, "test.arr_i32", &strs, &lens, &n), "types.gguf", "test.arr_i32");
    const GGUFTensor* t = gguf_find_tensor(&f, "vec.F32");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->n_dims, 1);
    ck_assert_uint_eq(t->ne[0], 5);
    gguf_close(&f);
}
END_TEST

START_TEST(dequant_matches_gguf_py) {
    static const char* const types[] = {"F32",  "F16",  "BF16", "Q4_0", "Q4_1", "Q5_0",
                                        "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};
    GGUFFile f;
    CK_OK(gguf_open(FIX "types.gguf", &f));
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char qn[32], rn[32];
        snprintf(qn, sizeof qn, "q.%s", types[k]);
        snprintf(rn, sizeof rn, "ref.%s", types[k]);
        const GGUFTensor* q = gguf_find_tensor(&f, qn);
        const GGUFTensor* r = gguf_find_tensor(&f, rn);
        ck_assert_msg(q && r, "%s missing", qn);
        ck_assert_str_eq(ggml_type_info(q->type)->name, types[k]);
        ck_assert_uint_eq(q->n_elems, r->n_elems);
        float* got = malloc(q->n_elems * sizeof(float));
        float* want = malloc(r->n_elems * sizeof(float));
        dequantize_row(q->type, q->data, got, q->n_elems);
        dequantize_row(GGML_TYPE_F32, r->data, want, r->n_elems);
        for (uint64_t i = 0; i < q->n_elems; i++)
            ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-9f,
                          "%s element %llu: %.9g vs gguf-py %.9g", types[k], (unsigned long long)i, got[i],
                          want[i]);
        free(got);
        free(want);
    }
    gguf_close(&f);
}
END_TEST

START_TEST(fp16_bf16_known_values) {
    ck_assert(fp16_to_fp32(0x3c00) == 1.0f);
    ck_assert(fp16_to_fp32(0xc000) == -2.0f);
    ck_assert(fp16_to_fp32(0x7bff) == 65504.0f);
    ck_assert(fp16_to_fp32(0x0001) == ldexpf(1.0f, -24)); // smallest subnormal
    ck_assert(fp16_to_fp32(0x03ff) == ldexpf(1023.0f, -24)); // largest subnormal
    ck_assert(fp16_to_fp32(0x0400) == ldexpf(1.0f, -14));
    ck_assert(signbit(fp16_to_fp32(0x8000)) && fp16_to_fp32(0x8000) == 0.0f);
    ck_assert(isinf(fp16_to_fp32(0x7c00)) && fp16_to_fp32(0x7c00) > 0);
    ck_assert(isnan(fp16_to_fp32(0x7e00)));
    ck_assert(bf16_to_fp32(0x3f80) == 1.0f);
    ck_assert(bf16_to_fp32(0xc0a0) == -5.0f);
    ck_assert_ptr_null(ggml_type_info(4));   // removed type ids
    ck_assert_ptr_null(ggml_type_info(1000));
    ck_assert_int_eq(ggml_type_info(GGML_TYPE_Q6_K)->block_bytes, 210);
}
END_TEST

// ---------------------------------------------------------------------------
// loaders on the tiny model

static void load_gguf_ok(const char* path, etx_model* m) {
    etx_status st = gguf_model_load(path, m);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
}

static void load_hf_ok(const char* dir, etx_model* m) {
    CK_OK(hf_model_load(dir, m));
}

static void check_tiny_config(const ModelConfig* c) {
    ck_assert_int_eq(c->dim, 64);
    ck_assert_int_eq(c->hidden_dim, 96);
    ck_assert_int_eq(c->n_layers, 2);
    ck_assert_int_eq(c->n_heads, 4);
    ck_assert_int_eq(c->n_kv_heads, 2);
    ck_assert_int_eq(c->head_dim, 16);
    ck_assert_int_eq(c->vocab_size, 288);
    ck_assert_int_eq(c->max_seq_len, 256);
    ck_assert(fabsf(c->norm_eps - 1e-5f) < 1e-10f);
    ck_assert(c->rope_theta == 100000.0f);
}

// Calls fn(name, a, b, n) for each weight pair of two models with the same config.
typedef void (*PairFn)(const char* name, const float* a, const float* b, size_t n);

// fn on one matrix of both models as float32, through model_weight_rows (a GGUF matrix
// may be held only as its quantized blocks)
static void matrix_pair(PairFn fn, const char* name, const float* a, const QuantMatrix* qa, const float* b,
                        const QuantMatrix* qb, size_t rows, size_t cols) {
    float* da = malloc(rows * cols * sizeof(float));
    float* db = malloc(rows * cols * sizeof(float));
    model_weight_rows(a, qa, (int)cols, 0, (int)rows, da);
    model_weight_rows(b, qb, (int)cols, 0, (int)rows, db);
    fn(name, da, db, rows * cols);
    free(da);
    free(db);
}

static void for_each_weight(const etx_model* a, const etx_model* b, PairFn fn) {
    const ModelConfig* c = &a->cfg;
    size_t dim = (size_t)c->dim, ff = (size_t)c->hidden_dim, hd = (size_t)c->head_dim;
    size_t q = (size_t)c->n_heads * hd, kv = (size_t)c->n_kv_heads * hd, V = (size_t)c->vocab_size;
#define PAIR(name, wa, wb, rows, cols) matrix_pair(fn, name, wa, &wa##_q, wb, &wb##_q, rows, cols)
    PAIR("token_embedding", a->w.token_embedding, b->w.token_embedding, V, dim);
    fn("final_norm", a->w.final_norm, b->w.final_norm, dim);
    PAIR("lm_head", a->w.lm_head, b->w.lm_head, V, dim);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *x = &a->w.layers[l], *y = &b->w.layers[l];
        fn("attn_norm", x->attn_norm, y->attn_norm, dim);
        PAIR("wq", x->wq, y->wq, q, dim);
        PAIR("wk", x->wk, y->wk, kv, dim);
        PAIR("wv", x->wv, y->wv, kv, dim);
        PAIR("wo", x->wo, y->wo, dim, q);
        fn("ffn_norm", x->ffn_norm, y->ffn_norm, dim);
        PAIR("w_gate", x->w_gate, y->w_gate, ff, dim);
        PAIR("w_up", x->w_up, y->w_up, ff, dim);
        PAIR("w_down", x->w_down, y->w_down, dim, ff);
    }
#undef PAIR
}

static void expect_exact(const char* name, const float* a, const float* b, size_t n) {
    size_t at = 0;
    ck_assert_msg(float_arrays_equal(a, b, n, &at), "%s differs at %zu: %.9g vs %.9g", name, at, a[at], b[at]);
}

// bf16 / f16 rounding of the same values: relative error below 2^-8.
static void expect_close(const char* name, const float* a, const float* b, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= fabsf(b[i]) * (1.0f / 256) + 1e-7f, "%s differs at %zu: %.9g vs %.9g",
                      name, i, a[i], b[i]);
}

START_TEST(gguf_tiny_matches_hf_exactly) {
    etx_model g, h;
    load_gguf_ok(FIX "tiny.gguf", &g);
    load_hf_ok(FIX "tiny_hf", &h);
    check_tiny_config(&g.cfg);
    check_tiny_config(&h.cfg);
    ck_assert_str_eq(g.format, "gguf");
    ck_assert_str_eq(h.format, "safetensors");
    ck_assert_int_eq(g.cfg.tied_embeddings, 0);
    ck_assert_int_eq(h.cfg.tied_embeddings, 0);
    ck_assert_int_eq(g.cfg.rope_llama3, 0);
    ck_assert_int_eq(g.bos_id, 1);
    ck_assert_int_eq(h.bos_id, 1);
    // eos 2 is <|im_end|>, counted once; <|endoftext|> (0) ends text too
    ck_assert_int_eq(g.n_eos, 2);
    ck_assert(g.eos_ids[0] == 2 && g.eos_ids[1] == 0);
    ck_assert_int_eq(h.n_eos, 2);
    ck_assert_int_eq(g.chat, CHAT_CHATML);
    ck_assert_int_eq(tokenizer_n_vocab(g.tok), 288);
    ck_assert_int_eq(tokenizer_n_vocab(h.tok), 288);
    // every weight, including the un-permuted Q and K, equals the HF layout exactly
    for_each_weight(&g, &h, expect_exact);
    ck_assert(g.w.lm_head != g.w.token_embedding || g.w.lm_head_q.blocks != g.w.token_embedding_q.blocks);
    model_free_contents(&g);
    model_free_contents(&h);
}
END_TEST

START_TEST(hf_sharded_bf16_tied_llama3) {
    etx_model s, h;
    load_hf_ok(FIX "tiny_hf_sharded", &s);
    load_hf_ok(FIX "tiny_hf", &h);
    check_tiny_config(&s.cfg);
    ck_assert_int_eq(s.cfg.tied_embeddings, 1);
    ck_assert_ptr_eq(s.w.lm_head, s.w.token_embedding);
    ck_assert_int_eq(s.cfg.rope_llama3, 1);
    ck_assert(s.cfg.rope_factor == 8.0f && s.cfg.rope_low_freq_factor == 1.0f && s.cfg.rope_high_freq_factor == 4.0f);
    ck_assert_int_eq(s.cfg.rope_original_max_pos, 64);
    ck_assert_int_eq(s.n_eos, 2);
    ck_assert(s.eos_ids[0] == 2 && s.eos_ids[1] == 0);
    // point the reference's lm_head at its embedding so the tied comparison holds
    float* saved = h.w.lm_head;
    h.w.lm_head = h.w.token_embedding;
    for_each_weight(&s, &h, expect_close);
    h.w.lm_head = saved;
    model_free_contents(&s);
    model_free_contents(&h);
}
END_TEST

START_TEST(safetensors_reader) {
    STFile f;
    etx_status st = st_open(FIX "tiny_hf/model.safetensors", &f);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    ck_assert_int_eq(f.n_tensors, 1 + 9 * 2 + 2);
    const STTensor* t = st_find(&f, "model.layers.1.mlp.down_proj.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ST_F32);
    ck_assert_int_eq(t->n_dims, 2);
    ck_assert_uint_eq(t->shape[0], 64);
    ck_assert_uint_eq(t->shape[1], 96);
    ck_assert_uint_eq(t->end - t->begin, 64 * 96 * 4);
    ck_assert_ptr_null(st_find(&f, "nope"));
    st_close(&f);
    STCheckpoint c;
    st = st_checkpoint_open(FIX "tiny_hf_sharded", &c);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    ck_assert_int_eq(c.n_files, 2);
    const STFile* sf;
    ck_assert_int_eq(st_checkpoint_find(&c, "model.norm.weight", &t, &sf).code, ETX_OK);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(sf->path, "model-00002-of-00002"));
    ck_assert_int_eq(st_checkpoint_find(&c, "lm_head.weight", &t, &sf).code, ETX_OK);
    ck_assert_ptr_null(t);
    st_checkpoint_close(&c);
}
END_TEST

// rope_freqs.weight (llama3 scaling as llama.cpp stores it) gives the same parameters as
// the Hugging Face config it came from; a tensor no llama3 setting produces is refused.
START_TEST(gguf_llama3_rope_freqs) {
    etx_model g, s;
    load_gguf_ok(FIX "tiny_llama3.gguf", &g);
    load_hf_ok(FIX "tiny_hf_sharded", &s);
    ck_assert_int_eq(g.cfg.rope_llama3, 1);
    ck_assert(g.cfg.rope_factor == s.cfg.rope_factor);
    ck_assert(g.cfg.rope_low_freq_factor == s.cfg.rope_low_freq_factor);
    ck_assert(g.cfg.rope_high_freq_factor == s.cfg.rope_high_freq_factor);
    ck_assert_int_eq(g.cfg.rope_original_max_pos, s.cfg.rope_original_max_pos);
    model_free_contents(&g);
    model_free_contents(&s);
    GGUFFile f;
    ck_assert_int_eq(gguf_open(FIX "tiny_llama3.gguf", &f).code, ETX_OK);
    size_t at = (size_t)((const unsigned char*)gguf_find_tensor(&f, "rope_freqs.weight")->data - f.map);
    gguf_close(&f);
    size_t n;
    unsigned char* buf = slurp(FIX "tiny_llama3.gguf", &n);
    const float bad[2] = {3.0f, 0.5f};
    const char* path = tmp_path("bad.gguf");
    for (int i = 0; i < 2; i++) {
        memcpy(buf + at + 4, &bad[i], 4); // the second divisor
        spit(path, buf, n);
        etx_model m;
        etx_status st = gguf_model_load(path, &m);
        expect_error(st, "bad.gguf", "rope_freqs.weight");
        ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    }
    free(buf);
}
END_TEST

// ---------------------------------------------------------------------------
// GGUF corruption

// Copies tiny.gguf into the temp dir; returns its bytes (caller frees) and path.
static unsigned char* tiny_copy(size_t* n, const char** path) {
    *path = tmp_path("bad.gguf");
    return slurp(FIX "tiny.gguf", n);
}

static etx_status load_patched(const char* path, const unsigned char* buf, size_t n) {
    spit(path, buf, n);
    etx_model m;
    etx_status st = gguf_model_load(path, &m);
    if (st.code == ETX_OK) model_free_contents(&m);
    return st;
}

START_TEST(gguf_truncated_everywhere) {
    size_t n;
    const char* path;
    unsigned char* buf = tiny_copy(&n, &path);
    GGUFFile f;
    ck_assert_int_eq(gguf_open(FIX "tiny.gguf", &f).code, ETX_OK);
    size_t header_end = (size_t)f.data_offset;
    gguf_close(&f);
    // every 7th length through the header, then a few through the data
    for (size_t len = 0; len < n; len += len < header_end ? 7 : 4099) {
        etx_status st = load_patched(path, buf, len);
        expect_error(st, "bad.gguf", NULL);
    }
    // a cut inside the tensor infos names the tensor being read
    InfoPos ip = tensor_info_pos(buf, n, "blk.1.ffn_up.weight");
    expect_error(load_patched(path, buf, ip.type + 2), "bad.gguf", "blk.1.ffn_up.weight");
    // and inside the metadata, the key
    size_t kp = kv_value_pos(buf, n, "tokenizer.ggml.merges");
    expect_error(load_patched(path, buf, kp + 100), "bad.gguf", "tokenizer.ggml.merges");
    free(buf);
}
END_TEST

START_TEST(gguf_bad_header) {
    size_t n;
    const char* path;
    unsigned char* buf = tiny_copy(&n, &path);
    buf[0] = 'X';
    expect_error(load_patched(path, buf, n), "bad.gguf", "magic");
    buf[0] = 'G';
    put_u32(buf + 4, 1);
    expect_error(load_patched(path, buf, n), "bad.gguf", "version 1");
    put_u32(buf + 4, 0x03000000); // big-endian file
    expect_error(load_patched(path, buf, n), "bad.gguf", "version");
    put_u32(buf + 4, 2); // version 2 has the same layout: accepted
    spit(path, buf, n);
    etx_model m;
    load_gguf_ok(path, &m);
    model_free_contents(&m);
    put_u32(buf + 4, 3);
    put_u64(buf + 8, UINT64_C(1) << 60); // tensor count
    expect_error(load_patched(path, buf, n), "bad.gguf", "tensor count");
    put_u64(buf + 8, 0);
    put_u64(buf + 16, UINT64_C(0xffffffffffffffff)); // metadata count
    expect_error(load_patched(path, buf, n), "bad.gguf", "metadata count");
    free(buf);
}
END_TEST

START_TEST(gguf_bad_metadata) {
    size_t n;
    const char* path;
    unsigned char* orig = tiny_copy(&n, &path);
    unsigned char* buf = malloc(n);
    // absurd key length
    memcpy(buf, orig, n);
    size_t k = find_gguf_str(buf, n, "llama.block_count");
    put_u64(buf + k, UINT64_C(1) << 62);
    expect_error(load_patched(path, buf, n), "bad.gguf", "length");
    // absurd string value length
    memcpy(buf, orig, n);
    size_t v = kv_value_pos(buf, n, "general.name");
    put_u64(buf + v, UINT64_C(1) << 40);
    expect_error(load_patched(path, buf, n), "bad.gguf", "general.name");
    // absurd array count
    memcpy(buf, orig, n);
    v = kv_value_pos(buf, n, "tokenizer.ggml.tokens");
    put_u64(buf + v + 4, UINT64_C(1) << 59);
    expect_error(load_patched(path, buf, n), "bad.gguf", "tokenizer.ggml.tokens");
    // unknown value type
    memcpy(buf, orig, n);
    v = kv_value_pos(buf, n, "llama.context_length");
    put_u32(buf + v - 4, 99);
    expect_error(load_patched(path, buf, n), "bad.gguf", "llama.context_length");
    // nested array
    memcpy(buf, orig, n);
    v = kv_value_pos(buf, n, "tokenizer.ggml.token_type");
    put_u32(buf + v, GGUF_ARRAY);
    expect_error(load_patched(path, buf, n), "bad.gguf", "tokenizer.ggml.token_type");
    // wrong value type for a number the loader needs
    memcpy(buf, orig, n);
    v = kv_value_pos(buf, n, "llama.block_count");
    put_u32(buf + v - 4, GGUF_FLOAT32);
    expect_error(load_patched(path, buf, n), "bad.gguf", "llama.block_count");
    // architecture other than llama
    memcpy(buf, orig, n);
    v = kv_value_pos(buf, n, "general.architecture");
    memcpy(buf + v + 8, "gemma", 5);
    etx_status st = load_patched(path, buf, n);
    expect_error(st, "bad.gguf", "'gemma'");
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    // a llama file relabelled qwen2: the qwen2.* keys are missing
    memcpy(buf + v + 8, "qwen2", 5);
    st = load_patched(path, buf, n);
    expect_error(st, "bad.gguf", "qwen2.embedding_length");
    // a tokenizer other than byte-level BPE
    memcpy(buf, orig, n);
    v = kv_value_pos(buf, n, "tokenizer.ggml.model");
    memcpy(buf + v + 8, "t5sp", 4);
    expect_error(load_patched(path, buf, n), "bad.gguf", "tokenizer.ggml.model");
    // alignment not a power of two: rename llama.block_count (same length, u32) and set 3
    memcpy(buf, orig, n);
    k = find_gguf_str(buf, n, "llama.block_count");
    memcpy(buf + k + 8, "general.alignment", 17);
    put_u32(buf + k + 8 + 17 + 4, 3);
    expect_error(load_patched(path, buf, n), "bad.gguf", "general.alignment");
    free(buf);
    free(orig);
}
END_TEST

START_TEST(gguf_bad_tensors) {
    size_t n;
    const char* path;
    unsigned char* orig = tiny_copy(&n, &path);
    unsigned char* buf = malloc(n);
    InfoPos ip;
    // data offset beyond the end of the file
    memcpy(buf, orig, n);
    ip = tensor_info_pos(buf, n, "blk.1.ffn_down.weight");
    put_u64(buf + ip.offset, (uint64_t)n * 4 & ~UINT64_C(63));
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.1.ffn_down.weight");
    // offset near 2^64 (overflow of offset + size)
    put_u64(buf + ip.offset, UINT64_C(0xffffffffffffffc0));
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.1.ffn_down.weight");
    // misaligned offset
    memcpy(buf, orig, n);
    put_u64(buf + ip.offset, 1);
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.1.ffn_down.weight");
    // a shape too large for the data
    memcpy(buf, orig, n);
    ip = tensor_info_pos(buf, n, "output.weight");
    put_u64(buf + ip.ne + 8, 100000);
    expect_error(load_patched(path, buf, n), "bad.gguf", "output.weight");
    // a shape that fits the data but not the model
    memcpy(buf, orig, n);
    ip = tensor_info_pos(buf, n, "blk.0.attn_v.weight");
    put_u64(buf + ip.ne + 8, 16);
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.0.attn_v.weight");
    // a row length that is not a whole number of blocks
    memcpy(buf, orig, n);
    ip = tensor_info_pos(buf, n, "blk.0.attn_q.weight");
    put_u64(buf + ip.ne, 63);
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.0.attn_q.weight");
    // zero dimension, too many dimensions
    memcpy(buf, orig, n);
    put_u64(buf + ip.ne, 0);
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.0.attn_q.weight");
    memcpy(buf, orig, n);
    put_u32(buf + ip.ne - 4, 9);
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.0.attn_q.weight");
    // unknown and unsupported ggml types
    memcpy(buf, orig, n);
    ip = tensor_info_pos(buf, n, "blk.1.attn_k.weight");
    put_u32(buf + ip.type, 99);
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.1.attn_k.weight");
    put_u32(buf + ip.type, 16);
    etx_status st = load_patched(path, buf, n);
    expect_error(st, "blk.1.attn_k.weight", "IQ2_XXS");
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    // a tensor missing (renamed)
    memcpy(buf, orig, n);
    size_t k = find_gguf_str(buf, n, "blk.1.attn_k.weight");
    buf[k + 8 + 11] = 'X';
    expect_error(load_patched(path, buf, n), "bad.gguf", "blk.1.attn_k.weight");
    free(buf);
    free(orig);
}
END_TEST

START_TEST(gguf_no_output_means_tied) {
    size_t n;
    const char* path;
    unsigned char* buf = tiny_copy(&n, &path);
    size_t k = find_gguf_str(buf, n, "output.weight");
    buf[k + 8 + 5] = 'X'; // "outpuX.weight": ignored
    spit(path, buf, n);
    etx_model m;
    load_gguf_ok(path, &m);
    ck_assert_int_eq(m.cfg.tied_embeddings, 1);
    ck_assert_ptr_eq(m.w.lm_head, m.w.token_embedding);
    model_free_contents(&m);
    free(buf);
}
END_TEST

// Deterministic single-byte corruptions anywhere in the GGUF header: each load either
// fails cleanly or succeeds; ASan/UBSan catch anything else.
START_TEST(gguf_random_byte_flips) {
    size_t n;
    const char* path;
    unsigned char* orig = tiny_copy(&n, &path);
    GGUFFile f;
    ck_assert_int_eq(gguf_open(FIX "tiny.gguf", &f).code, ETX_OK);
    size_t header_end = (size_t)f.data_offset;
    gguf_close(&f);
    unsigned char* buf = malloc(n);
    uint64_t rng = 88172645463325252ull; // test_rng.h
    for (int i = 0; i < 300; i++) {
        memcpy(buf, orig, n);
        for (int k = 0; k < 1 + i % 3; k++) {
            const uint64_t x = rng_next_u64(&rng);
            buf[x % header_end] ^= (unsigned char)(1u << (x >> 32) % 8);
        }
        etx_status st = load_patched(path, buf, n);
        if (st.code != ETX_OK)
            ck_assert_msg(strstr(st.message, "bad.gguf"), "message \"%s\" does not name the file", st.message);
    }
    free(buf);
    free(orig);
}
END_TEST

// Every F32/F16/BF16 tensor and every Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 tensor of tiny.gguf, one at
// a time, gets a NaN or infinity at row 1 (row 0 of a vector): a float element, or the
// scale of the row's first block (every element of the block then NaN / inf). The load
// fails naming the file, the tensor, the value and the element in the file's layout (the
// stored row, also for the permuted Q and K).
START_TEST(gguf_nonfinite_weights_are_refused) {
    size_t n;
    const char* path;
    unsigned char* orig = tiny_copy(&n, &path);
    GGUFFile f;
    CK_OK(gguf_open(FIX "tiny.gguf", &f));
    unsigned char* buf = malloc(n);
    int damaged = 0;
    for (uint64_t t = 0; t < f.n_tensors; t++) {
        const GGUFTensor* T = &f.tensors[t];
        const uint64_t ne0 = T->ne[0], row = T->ne[1] > 1 ? 1 : 0;
        const GGMLTypeInfo* ti = ggml_type_info(T->type);
        const size_t at = (size_t)(f.data_offset + T->offset) + (size_t)(row * ne0 / ti->block_elems * ti->block_bytes);
        memcpy(buf, orig, n);
        size_t col = 0;
        const char* value = "NaN";
        switch (T->type) {
        case GGML_TYPE_F32: {
            col = 3;
            const float inf = -INFINITY;
            memcpy(buf + at + 4 * col, &inf, 4);
            value = "-inf";
            break;
        }
        case GGML_TYPE_F16: col = 5, buf[at + 2 * col] = 0x00, buf[at + 2 * col + 1] = 0x7e; break; // NaN
        case GGML_TYPE_BF16: col = 2, buf[at + 2 * col] = 0x80, buf[at + 2 * col + 1] = 0x7f; break; // +inf
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_0:
        case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q8_0: buf[at] = 0x00, buf[at + 1] = 0x7e; break; // the block's scale d: NaN
        default: continue;
        }
        if (T->type == GGML_TYPE_BF16) value = "+inf";
        damaged++;
        etx_status st = load_patched(path, buf, n);
        char want[160];
        snprintf(want, sizeof want, "(%s) at element %llu (row %llu, column %zu)", value,
                 (unsigned long long)(row * ne0 + col), (unsigned long long)row, col);
        expect_error(st, "bad.gguf", T->name);
        ck_assert_msg(strstr(st.message, want), "message \"%s\" lacks \"%s\"", st.message, want);
    }
    ck_assert_int_ge(damaged, 10);
    gguf_close(&f);
    free(buf);
    free(orig);
}
END_TEST

// ---------------------------------------------------------------------------
// safetensors / Hugging Face corruption

// Copies tiny_hf (or tiny_hf_sharded) into the temp dir.
static void copy_hf_dir(const char* src, const char* const* files, int n) {
    tmp_clear();
    char from[512];
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        copy_file(from, tmp_path(files[i]));
    }
}

static void copy_tiny_hf(void) {
    static const char* const files[] = {"config.json", "tokenizer.json", "model.safetensors"};
    copy_hf_dir(FIX "tiny_hf", files, 3);
}

static void copy_tiny_sharded(void) {
    static const char* const files[] = {"config.json", "tokenizer.json", "model.safetensors.index.json",
                                        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    copy_hf_dir(FIX "tiny_hf_sharded", files, 5);
}

// Rewrites tmp/model.safetensors with its header passed through edit().
typedef void (*HeaderEdit)(cJSON* header);

static void rewrite_header_of(const char* src, const char* name, HeaderEdit edit) {
    size_t n;
    unsigned char* buf = slurp(src, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    cJSON* h = cJSON_ParseWithLength((const char*)buf + 8, (size_t)hl);
    ck_assert_ptr_nonnull(h);
    edit(h);
    char* text = cJSON_PrintUnformatted(h);
    size_t tl = strlen(text), data = n - 8 - (size_t)hl;
    unsigned char* out = malloc(8 + tl + data);
    put_u64(out, tl);
    memcpy(out + 8, text, tl);
    memcpy(out + 8 + tl, buf + 8 + hl, data);
    spit(tmp_path(name), out, 8 + tl + data);
    free(out);
    free(text);
    cJSON_Delete(h);
    free(buf);
}

static void rewrite_header(const char* name, HeaderEdit edit) {
    rewrite_header_of(FIX "tiny_hf/model.safetensors", name, edit);
}

static cJSON* entry(cJSON* h, const char* name) {
    cJSON* e = cJSON_GetObjectItemCaseSensitive(h, name);
    ck_assert_ptr_nonnull(e);
    return e;
}

static void set_offsets(cJSON* h, const char* name, double b, double e) {
    cJSON* o = entry(entry(h, name), "data_offsets");
    cJSON_SetNumberValue(cJSON_GetArrayItem(o, 0), b);
    cJSON_SetNumberValue(cJSON_GetArrayItem(o, 1), e);
}

#define VICTIM "model.layers.1.mlp.up_proj.weight"

static void edit_drop(cJSON* h) { cJSON_DeleteItemFromObject(h, VICTIM); }
static void edit_drop_lm_head(cJSON* h) { cJSON_DeleteItemFromObject(h, "lm_head.weight"); }
static void edit_dtype(cJSON* h) { cJSON_ReplaceItemInObject(entry(h, VICTIM), "dtype", cJSON_CreateString("F33")); }
static void edit_dtype_i32(cJSON* h) {
    cJSON_ReplaceItemInObject(entry(h, VICTIM), "dtype", cJSON_CreateString("I32"));
}
static void edit_beyond(cJSON* h) { set_offsets(h, VICTIM, 0, 1e9); }
static void edit_reversed(cJSON* h) { set_offsets(h, VICTIM, 400, 0); }
static void edit_negative(cJSON* h) { set_offsets(h, VICTIM, -4, 100); }
static void edit_fraction(cJSON* h) { set_offsets(h, VICTIM, 0.5, 100); }
static void edit_no_offsets(cJSON* h) { cJSON_DeleteItemFromObject(entry(h, VICTIM), "data_offsets"); }

static void edit_shape(cJSON* h) {
    cJSON* s = entry(entry(h, VICTIM), "shape");
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 0), 97); // bytes no longer match
}

static void edit_shape_consistent(cJSON* h) {
    // [96, 64] -> [64, 96]: same bytes, wrong shape for the model
    cJSON* s = entry(entry(h, VICTIM), "shape");
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 0), 64);
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 1), 96);
}

static void edit_huge_shape(cJSON* h) {
    cJSON* s = entry(entry(h, VICTIM), "shape");
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 0), 4e15);
    cJSON_SetNumberValue(cJSON_GetArrayItem(s, 1), 4e15);
}

static void expect_hf_error(HeaderEdit edit, const char* name1, const char* name2) {
    copy_tiny_hf();
    rewrite_header("model.safetensors", edit);
    etx_model m;
    etx_status st = hf_model_load(g_tmp, &m);
    if (st.code == ETX_OK) model_free_contents(&m);
    expect_error(st, name1, name2);
}

START_TEST(safetensors_bad_headers) {
    expect_hf_error(edit_drop, g_tmp, VICTIM);
    expect_hf_error(edit_dtype, "model.safetensors", VICTIM);
    expect_hf_error(edit_dtype_i32, "model.safetensors", VICTIM);
    expect_hf_error(edit_beyond, "model.safetensors", VICTIM);
    expect_hf_error(edit_reversed, "model.safetensors", VICTIM);
    expect_hf_error(edit_negative, "model.safetensors", VICTIM);
    expect_hf_error(edit_fraction, "model.safetensors", VICTIM);
    expect_hf_error(edit_no_offsets, "model.safetensors", VICTIM);
    expect_hf_error(edit_shape, "model.safetensors", VICTIM);
    expect_hf_error(edit_shape_consistent, "model.safetensors", VICTIM);
    expect_hf_error(edit_huge_shape, "model.safetensors", VICTIM);
    expect_hf_error(edit_drop_lm_head, g_tmp, "lm_head.weight");
}
END_TEST

// A float32 NaN in a matrix and +inf in a norm of tiny_hf: the load fails naming the
// file, the tensor, the value and the element (row, column of the stored tensor).
static void expect_hf_nonfinite(const char* name, size_t index, float v, const char* want) {
    copy_tiny_hf();
    size_t n;
    unsigned char* buf = slurp(FIX "tiny_hf/model.safetensors", &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    cJSON* h = cJSON_ParseWithLength((const char*)buf + 8, (size_t)hl);
    ck_assert_ptr_nonnull(h);
    const cJSON* e = entry(h, name);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring, "F32");
    const size_t begin = (size_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), 0)->valuedouble;
    cJSON_Delete(h);
    memcpy(buf + 8 + hl + begin + 4 * index, &v, 4);
    spit(tmp_path("model.safetensors"), buf, n);
    free(buf);
    etx_model m;
    etx_status st = hf_model_load(g_tmp, &m);
    if (st.code == ETX_OK) model_free_contents(&m);
    expect_error(st, "model.safetensors", name);
    ck_assert_msg(strstr(st.message, want), "message \"%s\" lacks \"%s\"", st.message, want);
}

START_TEST(hf_nonfinite_weights_are_refused) {
    // up_proj is (96, 64): element 2 * 64 + 5 is row 2, column 5
    expect_hf_nonfinite(VICTIM, 2 * 64 + 5, NAN, "(NaN) at element 133 (row 2, column 5)");
    expect_hf_nonfinite("model.norm.weight", 17, INFINITY, "(+inf) at element 17 (row 0, column 17)");
}
END_TEST

START_TEST(safetensors_truncated_and_bad_length) {
    size_t n;
    unsigned char* buf = slurp(FIX "tiny_hf/model.safetensors", &n);
    const char* p = tmp_path("t.safetensors");
    STFile f;
    for (size_t len = 0; len < n; len += len < 2000 ? 13 : 7919) {
        spit(p, buf, len);
        etx_status st = st_open(p, &f);
        if (st.code == ETX_OK) st_close(&f);
        expect_error(st, "t.safetensors", NULL);
    }
    // cut in the data: the tensors past the end are named
    spit(p, buf, n - 10);
    expect_error(st_open(p, &f), "t.safetensors", "data_offsets");
    put_u64(buf, UINT64_C(1) << 40); // header length past the end
    spit(p, buf, n);
    expect_error(st_open(p, &f), "t.safetensors", "header length");
    put_u64(buf, 2);
    memcpy(buf + 8, "[]", 2); // not an object
    spit(p, buf, n);
    expect_error(st_open(p, &f), "t.safetensors", "JSON object");
    free(buf);
}
END_TEST

static void write_text(const char* name, const char* text) { spit(tmp_path(name), text, strlen(text)); }

// Rewrites tmp/config.json from the fixture with one field replaced (value as JSON).
static void patch_config(const char* src_dir, const char* key, const char* json_value) {
    char from[512];
    snprintf(from, sizeof from, "%s/config.json", src_dir);
    size_t n;
    unsigned char* buf = slurp(from, &n);
    cJSON* c = cJSON_ParseWithLength((const char*)buf, n);
    ck_assert_ptr_nonnull(c);
    cJSON_DeleteItemFromObject(c, key);
    if (json_value) cJSON_AddItemToObject(c, key, cJSON_Parse(json_value));
    char* text = cJSON_Print(c);
    write_text("config.json", text);
    free(text);
    cJSON_Delete(c);
    free(buf);
}

static etx_status load_tmp_hf(void) {
    etx_model m;
    etx_status st = hf_model_load(g_tmp, &m);
    if (st.code == ETX_OK) model_free_contents(&m);
    return st;
}

// A config whose float32 weights (here ~10^5 TiB) cannot fit in memory is refused before
// any tensor is read, naming the need.
START_TEST(hf_model_too_big_for_memory) {
    copy_tiny_hf();
    patch_config(FIX "tiny_hf", "num_hidden_layers", "4096");
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", g_tmp);
    size_t n;
    unsigned char* buf = slurp(cfg, &n);
    cJSON* c = cJSON_ParseWithLength((const char*)buf, n);
    cJSON_ReplaceItemInObject(c, "intermediate_size", cJSON_CreateNumber(1048576));
    char* text = cJSON_Print(c);
    write_text("config.json", text);
    free(text);
    cJSON_Delete(c);
    free(buf);
    etx_status st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_ERR_NOMEM);
    expect_error(st, "config.json", "GiB");
}
END_TEST

START_TEST(hf_bad_config) {
    copy_tiny_hf();
    patch_config(FIX "tiny_hf", "architectures", "[\"MistralForCausalLM\"]");
    etx_status st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_OK); // model_type llama still says llama
    patch_config(FIX "tiny_hf", "model_type", "\"mistral\"");
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", g_tmp);
    // both fields now say mistral
    size_t n;
    unsigned char* buf = slurp(cfg, &n);
    cJSON* c = cJSON_ParseWithLength((const char*)buf, n);
    cJSON_ReplaceItemInObject(c, "architectures", cJSON_Parse("[\"MistralForCausalLM\"]"));
    char* text = cJSON_Print(c);
    write_text("config.json", text);
    free(text);
    cJSON_Delete(c);
    free(buf);
    st = load_tmp_hf();
    expect_error(st, "config.json", "MistralForCausalLM");
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    patch_config(FIX "tiny_hf", "hidden_size", NULL);
    expect_error(load_tmp_hf(), "config.json", "hidden_size");
    patch_config(FIX "tiny_hf", "num_key_value_heads", "3");
    expect_error(load_tmp_hf(), "config.json", "n_kv_heads");
    patch_config(FIX "tiny_hf", "num_attention_heads", "-4");
    expect_error(load_tmp_hf(), "config.json", "num_attention_heads");
    patch_config(FIX "tiny_hf", "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}");
    st = load_tmp_hf();
    expect_error(st, "config.json", "yarn");
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    patch_config(FIX "tiny_hf", "rope_scaling", "{\"type\": \"llama3\", \"factor\": 4.0}");
    expect_error(load_tmp_hf(), "config.json", "low_freq_factor");
    patch_config(FIX "tiny_hf", "vocab_size", "300"); // embedding has 288 rows
    expect_error(load_tmp_hf(), "model.safetensors", "model.embed_tokens.weight");
    patch_config(FIX "tiny_hf", "eos_token_id", "[2, \"x\"]");
    expect_error(load_tmp_hf(), "config.json", "eos_token_id");
    write_text("config.json", "{\"hidden_size\": ");
    expect_error(load_tmp_hf(), "config.json", NULL);
    unlink(tmp_path("config.json"));
    expect_error(load_tmp_hf(), "config.json", NULL);
}
END_TEST

// Qwen2 / Qwen3 directories with a part of their architecture missing or malformed, and
// configurations etx would compute wrongly: errors name the tensor or field.
static void copy_tiny_qwen(const char* name) {
    static const char* const files[] = {"config.json", "tokenizer.json", "model.safetensors"};
    char dir[256];
    snprintf(dir, sizeof dir, "%s/models/%s", ETX_FIXTURES, name);
    copy_hf_dir(dir, files, 3);
}

static void edit_drop_k_bias(cJSON* h) { cJSON_DeleteItemFromObject(h, "model.layers.1.self_attn.k_proj.bias"); }
static void edit_drop_k_norm(cJSON* h) { cJSON_DeleteItemFromObject(h, "model.layers.0.self_attn.k_norm.weight"); }
static void edit_q_norm_shape(cJSON* h) { // [24] -> [2, 12]: same bytes, not head_dim
    cJSON* e = entry(h, "model.layers.1.self_attn.q_norm.weight");
    cJSON_ReplaceItemInObject(e, "shape", cJSON_Parse("[2, 12]"));
}
static void edit_q_bias_shape(cJSON* h) { // [64] -> [32, 2]: same bytes, not n_heads * head_dim
    cJSON* e = entry(h, "model.layers.0.self_attn.q_proj.bias");
    cJSON_ReplaceItemInObject(e, "shape", cJSON_Parse("[32, 2]"));
}

static void expect_qwen_error(const char* model, HeaderEdit edit, const char* name1, const char* name2) {
    char src[256];
    snprintf(src, sizeof src, "%s/models/%s/model.safetensors", ETX_FIXTURES, model);
    copy_tiny_qwen(model);
    rewrite_header_of(src, "model.safetensors", edit);
    expect_error(load_tmp_hf(), name1, name2);
}

START_TEST(hf_qwen_bad_parts) {
    etx_model m;
    // the fixtures load, as what they are
    load_hf_ok(ETX_FIXTURES "/models/tiny-qwen2", &m);
    ck_assert_int_eq(m.cfg.arch, MODEL_ARCH_QWEN2);
    ck_assert(m.cfg.qkv_bias && !m.cfg.qk_norm && !m.cfg.tied_embeddings);
    ck_assert_float_eq(m.cfg.rope_theta, 1e6f); // classic top-level rope_theta
    ck_assert_ptr_nonnull(m.w.layers[1].bv);
    model_free_contents(&m);
    load_hf_ok(ETX_FIXTURES "/models/tiny-qwen3", &m);
    ck_assert_int_eq(m.cfg.arch, MODEL_ARCH_QWEN3);
    ck_assert(!m.cfg.qkv_bias && m.cfg.qk_norm && m.cfg.tied_embeddings);
    ck_assert_int_eq(m.cfg.head_dim, 24);      // explicit, != 64 / 4
    ck_assert_float_eq(m.cfg.rope_theta, 5e5f); // from transformers 5's rope_parameters
    ck_assert_ptr_null(m.w.layers[0].bq);
    model_free_contents(&m);

    expect_qwen_error("tiny-qwen2", edit_drop_k_bias, "model.layers.1.self_attn.k_proj.bias", "qwen2");
    expect_qwen_error("tiny-qwen2", edit_q_bias_shape, "model.layers.0.self_attn.q_proj.bias", "[32, 2]");
    expect_qwen_error("tiny-qwen3", edit_drop_k_norm, "model.layers.0.self_attn.k_norm.weight", "qwen3");
    expect_qwen_error("tiny-qwen3", edit_q_norm_shape, "model.layers.1.self_attn.q_norm.weight", "expected [24]");

    // a Llama directory labelled qwen2: no biases
    copy_tiny_hf();
    patch_config(FIX "tiny_hf", "model_type", "\"qwen2\"");
    expect_error(load_tmp_hf(), "model.layers.0.self_attn.q_proj.bias", "Q/K/V projection biases");

    // unknown model_type, and nothing known in architectures either
    copy_tiny_qwen("tiny-qwen2");
    char from[256];
    snprintf(from, sizeof from, "%s/models/tiny-qwen2", ETX_FIXTURES);
    patch_config(from, "model_type", "\"qwen2_moe\"");
    etx_status st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_OK); // architectures still says Qwen2ForCausalLM
    patch_config(from, "architectures", "[\"Qwen2MoeForCausalLM\"]");
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", g_tmp);
    size_t n;
    unsigned char* buf = slurp(cfg, &n);
    cJSON* c = cJSON_ParseWithLength((const char*)buf, n);
    cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("qwen2_moe"));
    char* text = cJSON_Print(c);
    write_text("config.json", text);
    free(text);
    cJSON_Delete(c);
    free(buf);
    st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "model_type qwen2_moe", "Qwen2MoeForCausalLM");

    // options that would make transformers compute something else
    patch_config(from, "use_sliding_window", "true");
    st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "config.json", "use_sliding_window");
    patch_config(from, "layer_types", "[\"full_attention\", \"sliding_attention\"]");
    st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "layer_types\"[1]", "sliding_attention");
    copy_tiny_hf();
    patch_config(FIX "tiny_hf", "attention_bias", "true");
    st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "attention_bias", "llama");
    // transformers 5's rope_parameters: a scaling etx does not run is refused there too
    copy_tiny_qwen("tiny-qwen3");
    snprintf(from, sizeof from, "%s/models/tiny-qwen3", ETX_FIXTURES);
    patch_config(from, "rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 1e6, \"factor\": 4.0}");
    st = load_tmp_hf();
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "rope_parameters", "yarn");
    // qwen3 without head_dim: transformers' default 128, which these weights do not have
    patch_config(from, "head_dim", NULL);
    expect_error(load_tmp_hf(), "model.layers.0.self_attn.q_proj.weight", "expected [512, 64]");
}
END_TEST

// model_check_features: a backend that lacks a part the model uses refuses it, naming the
// backend, the architecture and the part; etx_model_get_info names the architecture.
START_TEST(model_features_and_info) {
    etx_model m;
    etx_model_info info;
    load_hf_ok(ETX_FIXTURES "/models/tiny-qwen2", &m);
    CK_OK(model_check_features(&m, MODEL_FEATURE_QKV_BIAS, "test backend"));
    etx_status st = model_check_features(&m, MODEL_FEATURE_QK_NORM, "test backend");
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "test backend: the qwen2 architecture", "biases on the Q/K/V projections");
    CK_OK(etx_model_get_info(&m, &info));
    ck_assert_str_eq(info.arch, "qwen2");
    model_free_contents(&m);
    load_hf_ok(ETX_FIXTURES "/models/tiny-qwen3", &m);
    CK_OK(model_check_features(&m, MODEL_FEATURE_QK_NORM, "test backend"));
    st = model_check_features(&m, MODEL_FEATURE_QKV_BIAS, "test backend");
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "qwen3", "QK-norm");
    CK_OK(etx_model_get_info(&m, &info));
    ck_assert_str_eq(info.arch, "qwen3");
    model_free_contents(&m);
    load_hf_ok(FIX "tiny_hf", &m); // plain Llama: every backend runs it
    CK_OK(model_check_features(&m, 0, "test backend"));
    CK_OK(etx_model_get_info(&m, &info));
    ck_assert_str_eq(info.arch, "llama");
    model_free_contents(&m);
}
END_TEST

// The same for the GGUF files (llama.cpp's converter's names: attn_q.bias, attn_q_norm).
START_TEST(gguf_qwen_bad_parts) {
    const char* path = tmp_path("bad.gguf");
    size_t n;
    unsigned char* buf = slurp(ETX_FIXTURES "/models/tiny-qwen2.gguf", &n);
    etx_model m;
    load_gguf_ok(ETX_FIXTURES "/models/tiny-qwen2.gguf", &m);
    ck_assert(m.cfg.arch == MODEL_ARCH_QWEN2 && m.cfg.qkv_bias && !m.cfg.tied_embeddings);
    ck_assert_float_eq(m.cfg.rope_theta, 1e6f);
    model_free_contents(&m);
    size_t k = find_gguf_str(buf, n, "blk.1.attn_v.bias");
    buf[k + 8 + 16] = 'X'; // "blk.1.attn_v.biaX"
    expect_error(load_patched(path, buf, n), "blk.1.attn_v.bias", "qwen2");
    // the same file relabelled qwen3 (every "qwen2" of the header): its biases are not
    // part of qwen3 and are refused, not ignored
    free(buf);
    buf = slurp(ETX_FIXTURES "/models/tiny-qwen2.gguf", &n);
    GGUFFile f;
    CK_OK(gguf_open(ETX_FIXTURES "/models/tiny-qwen2.gguf", &f));
    const size_t header_end = (size_t)f.data_offset;
    gguf_close(&f);
    for (size_t i = 0; i + 5 <= header_end; i++)
        if (memcmp(buf + i, "qwen2", 5) == 0) buf[i + 4] = '3';
    etx_status st = load_patched(path, buf, n);
    ck_assert_int_eq(st.code, ETX_ERR_UNSUPPORTED);
    expect_error(st, "tensor blk.0.attn_q.bias", "qwen3");
    free(buf);

    buf = slurp(ETX_FIXTURES "/models/tiny-qwen3.gguf", &n);
    load_gguf_ok(ETX_FIXTURES "/models/tiny-qwen3.gguf", &m);
    ck_assert(m.cfg.arch == MODEL_ARCH_QWEN3 && m.cfg.qk_norm && m.cfg.tied_embeddings);
    ck_assert_int_eq(m.cfg.head_dim, 24);
    model_free_contents(&m);
    unsigned char* orig = malloc(n);
    memcpy(orig, buf, n);
    InfoPos ip = tensor_info_pos(buf, n, "blk.1.attn_q_norm.weight");
    put_u64(buf + ip.ne, 12); // fits the data, not head_dim
    expect_error(load_patched(path, buf, n), "blk.1.attn_q_norm.weight", "expected [24, 1]");
    memcpy(buf, orig, n);
    k = find_gguf_str(buf, n, "blk.0.attn_k_norm.weight");
    buf[k + 8 + 12] = 'X'; // "blk.0.attn_kXnorm.weight"
    expect_error(load_patched(path, buf, n), "blk.0.attn_k_norm.weight", "qwen3");
    free(orig);
    free(buf);
}
END_TEST

START_TEST(hf_bad_shards) {
    copy_tiny_sharded();
    etx_model m;
    load_hf_ok(g_tmp, &m); // the copy loads
    model_free_contents(&m);
    // tie_word_embeddings false without lm_head.weight
    patch_config(FIX "tiny_hf_sharded", "tie_word_embeddings", "false");
    expect_error(load_tmp_hf(), g_tmp, "lm_head.weight");
    patch_config(FIX "tiny_hf_sharded", "tie_word_embeddings", "true");
    // a shard missing
    unlink(tmp_path("model-00002-of-00002.safetensors"));
    expect_error(load_tmp_hf(), "model.safetensors.index.json", "model-00002-of-00002.safetensors");
    copy_tiny_sharded();
    // the index places a tensor in the wrong shard
    size_t n;
    unsigned char* buf = slurp(FIX "tiny_hf_sharded/model.safetensors.index.json", &n);
    cJSON* idx = cJSON_ParseWithLength((const char*)buf, n);
    cJSON* wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    cJSON_ReplaceItemInObject(wm, "model.norm.weight", cJSON_CreateString("model-00001-of-00002.safetensors"));
    char* text = cJSON_Print(idx);
    write_text("model.safetensors.index.json", text);
    free(text);
    expect_error(load_tmp_hf(), "model-00001-of-00002.safetensors", "model.norm.weight");
    // a shard name escaping the directory
    cJSON_ReplaceItemInObject(wm, "model.norm.weight", cJSON_CreateString("../model.safetensors"));
    text = cJSON_Print(idx);
    write_text("model.safetensors.index.json", text);
    free(text);
    expect_error(load_tmp_hf(), "model.safetensors.index.json", "../model.safetensors");
    cJSON_Delete(idx);
    free(buf);
    write_text("model.safetensors.index.json", "{\"metadata\": {}}");
    expect_error(load_tmp_hf(), "model.safetensors.index.json", "weight_map");
    // no weights at all
    unlink(tmp_path("model.safetensors.index.json"));
    expect_error(load_tmp_hf(), g_tmp, "model.safetensors");
}
END_TEST

// ---------------------------------------------------------------------------
// the default model (fetched by CI; skipped when absent)

// Rows (indices in key rows_key) of a weight with row length n equal the reference tensor.
static void expect_rows(const GGUFFile* f, const char* rows_key, const char* tensor, const float* w,
                        const QuantMatrix* q, size_t n) {
    int32_t* rows;
    uint64_t nr;
    ck_assert_int_eq(gguf_get_int_array(f, rows_key, &rows, &nr).code, ETX_OK);
    const GGUFTensor* t = gguf_find_tensor(f, tensor);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->n_elems, nr * n);
    float* got = malloc(n * sizeof(float));
    for (uint64_t r = 0; r < nr; r++) {
        const float* want = (const float*)t->data + r * n;
        size_t at = 0;
        model_weight_rows(w, q, (int)n, rows[r], rows[r] + 1, got);
        ck_assert_msg(float_arrays_equal(got, want, n, &at), "%s row %d differs at %zu", tensor, rows[r], at);
    }
    free(got);
    free(rows);
}

START_TEST(default_model_smollm2) {
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0) {
        fprintf(stderr, "test_loader: %s not present, skipping the default-model test\n", ETX_DEFAULT_MODEL);
        return;
    }
    etx_model m;
    load_gguf_ok(ETX_DEFAULT_MODEL, &m);
    const ModelConfig* c = &m.cfg;
    ck_assert_int_eq(c->dim, 576);
    ck_assert_int_eq(c->hidden_dim, 1536);
    ck_assert_int_eq(c->n_layers, 30);
    ck_assert_int_eq(c->n_heads, 9);
    ck_assert_int_eq(c->n_kv_heads, 3);
    ck_assert_int_eq(c->head_dim, 64);
    ck_assert_int_eq(c->vocab_size, 49152);
    ck_assert_int_eq(c->max_seq_len, 8192);
    ck_assert(c->rope_theta == 100000.0f);
    ck_assert(fabsf(c->norm_eps - 1e-5f) < 1e-10f);
    ck_assert_int_eq(c->tied_embeddings, 1);
    ck_assert_ptr_eq(m.w.lm_head, m.w.token_embedding);
    ck_assert_int_eq(m.bos_id, 1);
    ck_assert_int_eq(m.n_eos, 2); // <|im_end|>, <|endoftext|>
    ck_assert(m.eos_ids[0] == 2 && m.eos_ids[1] == 0);
    ck_assert_int_eq(m.chat, CHAT_CHATML);
    // rows of token_embd (Q8_0), ffn_down (Q4_1) and attn_q (Q4_1, un-permuted to HF
    // order) against gguf-py's dequantization
    GGUFFile f;
    CK_OK(gguf_open(FIX "smollm2_rows.gguf", &f));
    expect_rows(&f, "rows", "token_embd_rows", m.w.token_embedding, &m.w.token_embedding_q, 576);
    expect_rows(&f, "down_rows", "ffn_down_rows", m.w.layers[0].w_down, &m.w.layers[0].w_down_q, 1536);
    expect_rows(&f, "q_rows", "attn_q_hf_rows", m.w.layers[0].wq, &m.w.layers[0].wq_q, 576);
    gguf_close(&f);
    model_free_contents(&m);
}
END_TEST

int main(void) {
    Suite* s = suite_create("loader");
    TCase* tc = tcase_create("loader");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, gguf_metadata_all_types);
    tcase_add_test(tc, dequant_matches_gguf_py);
    tcase_add_test(tc, fp16_bf16_known_values);
    tcase_add_test(tc, gguf_tiny_matches_hf_exactly);
    tcase_add_test(tc, hf_sharded_bf16_tied_llama3);
    tcase_add_test(tc, safetensors_reader);
    tcase_add_test(tc, gguf_llama3_rope_freqs);
    tcase_add_test(tc, gguf_truncated_everywhere);
    tcase_add_test(tc, gguf_bad_header);
    tcase_add_test(tc, gguf_bad_metadata);
    tcase_add_test(tc, gguf_bad_tensors);
    tcase_add_test(tc, gguf_no_output_means_tied);
    tcase_add_test(tc, gguf_random_byte_flips);
    tcase_add_test(tc, gguf_nonfinite_weights_are_refused);
    tcase_add_test(tc, hf_nonfinite_weights_are_refused);
    tcase_add_test(tc, safetensors_bad_headers);
    tcase_add_test(tc, safetensors_truncated_and_bad_length);
    tcase_add_test(tc, hf_bad_config);
    tcase_add_test(tc, hf_model_too_big_for_memory);
    tcase_add_test(tc, hf_bad_shards);
    tcase_add_test(tc, hf_qwen_bad_parts);
    tcase_add_test(tc, gguf_qwen_bad_parts);
    tcase_add_test(tc, model_features_and_info);
    tcase_add_test(tc, default_model_smollm2);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
