/*
 * test_forward.c — checks the CPU forward pass (cpu_forward.c, cpu_ops.c).
 *
 *   - self-consistency on a small model with hand-made random weights: logits of a whole
 *     sequence = chunked prefill = one token at a time; argument errors leave the cache
 *     untouched; the captured last-layer attention rows are probability distributions;
 *     the llama3 RoPE frequencies follow transformers' formula.
 *   - against Hugging Face transformers: tiny LlamaForCausalLM directories under
 *     fixtures/models/ (written by tests/scripts/gen_hf_fixtures.py), the logits of every
 *     position of several token sequences under fixtures/forward/hf/.
 *   - against llama.cpp: the default GGUF model (ETX_DEFAULT_MODEL), last-position logits
 *     and 32-token greedy continuations of several prompts under fixtures/forward/llamacpp/
 *     (written by tests/scripts/gen_llamacpp_fixtures.py).
 */
#include <cJSON.h>
#include <check.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "cpu_forward.h"

// ----------------------------------------------------------------------------
// a small model with random weights, built by hand

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
// uniform in [-1, 1)
static float frand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float* rand_tensor(size_t n, float scale) {
    float* p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static float* norm_weight(int d) {
    float* p = malloc((size_t)d * sizeof(float));
    for (int i = 0; i < d; i++) p[i] = 1.0f + 0.1f * frand();
    return p;
}

static void build_random_model(etx_model* m, int llama3) {
    memset(m, 0, sizeof *m);
    ModelConfig* c = &m->cfg;
    c->dim = 48;
    c->hidden_dim = 96;
    c->n_layers = 2;
    c->n_heads = 6;
    c->n_kv_heads = 2;
    c->head_dim = 8;
    c->vocab_size = 67;
    c->max_seq_len = 64;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if (llama3) {
        c->rope_llama3 = 1;
        c->rope_factor = 8.0f;
        c->rope_low_freq_factor = 1.0f;
        c->rope_high_freq_factor = 4.0f;
        c->rope_original_max_pos = 16;
    }
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    m->w.token_embedding = rand_tensor((size_t)c->vocab_size * c->dim, 1.0f);
    m->w.layers = calloc((size_t)c->n_layers, sizeof(LayerWeights));
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights* L = &m->w.layers[l];
        float s = 1.0f / sqrtf((float)c->dim);
        L->attn_norm = norm_weight(c->dim);
        L->ffn_norm = norm_weight(c->dim);
        L->wq = rand_tensor((size_t)qd * c->dim, 2.0f * s);
        L->wk = rand_tensor((size_t)kvd * c->dim, 2.0f * s);
        L->wv = rand_tensor((size_t)kvd * c->dim, s);
        L->wo = rand_tensor((size_t)c->dim * qd, s);
        L->w_gate = rand_tensor((size_t)c->hidden_dim * c->dim, s);
        L->w_up = rand_tensor((size_t)c->hidden_dim * c->dim, s);
        L->w_down = rand_tensor((size_t)c->dim * c->hidden_dim, 1.0f / sqrtf((float)c->hidden_dim));
    }
    m->w.final_norm = norm_weight(c->dim);
    m->w.lm_head = rand_tensor((size_t)c->vocab_size * c->dim, 1.0f / sqrtf((float)c->dim));
}

static void free_random_model(etx_model* m) {
    free(m->w.token_embedding);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        LayerWeights* L = &m->w.layers[l];
        free(L->attn_norm), free(L->ffn_norm), free(L->wq), free(L->wk), free(L->wv), free(L->wo);
        free(L->w_gate), free(L->w_up), free(L->w_down);
    }
    free(m->w.layers);
    free(m->w.final_norm);
    free(m->w.lm_head);
}

#define CK_OK(expr)                                                     \
    do {                                                                \
        etx_status _s = (expr);                                         \
        ck_assert_msg(_s.code == ETX_OK, "%s: %s", #expr, _s.message);  \
    } while (0)

static float max_abs_diff(const float* a, const float* b, size_t n) {
    float d = 0.0f;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

// all-positions logits of ids computed three ways: one call, chunks of 3, token by token
static void check_consistency(int llama3) {
    etx_model m;
    build_random_model(&m, llama3);
    int V = m.cfg.vocab_size, n = 40;
    int32_t ids[40];
    for (int i = 0; i < n; i++) ids[i] = (i * 37 + 11) % V;

    float* whole = malloc((size_t)n * V * sizeof(float));
    float* chunked = malloc((size_t)n * V * sizeof(float));
    float* stepped = malloc((size_t)n * V * sizeof(float));
    float* last = malloc((size_t)V * sizeof(float));
    KVCache kv;
    CpuRunState s;

    CK_OK(build_kv_cache(&kv, &m.cfg, 0));
    CK_OK(build_cpu_run_state_chunked(&s, &m.cfg, 64));
    CK_OK(cpu_forward(&m, &s, &kv, ids, n, whole, 1));
    ck_assert_int_eq(kv.pos, n);
    free_cpu_run_state(&s);
    free_kv_cache(&kv);

    CK_OK(build_kv_cache(&kv, &m.cfg, 0));
    CK_OK(build_cpu_run_state_chunked(&s, &m.cfg, 3));
    CK_OK(cpu_forward(&m, &s, &kv, ids, 25, chunked, 1));
    CK_OK(cpu_forward(&m, &s, &kv, ids + 25, n - 25, chunked + (size_t)25 * V, 1));
    // last-position-only output equals the last row of the all-positions output
    kv_cache_reset(&kv);
    CK_OK(cpu_forward(&m, &s, &kv, ids, n, last, 0));
    ck_assert_float_le(max_abs_diff(last, chunked + (size_t)(n - 1) * V, (size_t)V), 1e-5f);
    free_cpu_run_state(&s);
    free_kv_cache(&kv);

    CK_OK(build_kv_cache(&kv, &m.cfg, n));
    CK_OK(build_cpu_run_state(&s, &m.cfg));
    for (int i = 0; i < n; i++) CK_OK(cpu_forward(&m, &s, &kv, ids + i, 1, stepped + (size_t)i * V, 0));

    float scale = 0.0f;
    for (size_t i = 0; i < (size_t)n * V; i++) scale = fmaxf(scale, fabsf(whole[i]));
    ck_assert_float_gt(scale, 0.5f); // logits are not all ~0
    ck_assert_float_le(max_abs_diff(whole, chunked, (size_t)n * V), 1e-5f * scale);
    ck_assert_float_le(max_abs_diff(whole, stepped, (size_t)n * V), 1e-5f * scale);

    // the context is full: one more token is refused and nothing changes
    etx_status st = cpu_forward(&m, &s, &kv, ids, 1, last, 0);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(st.message, "exceed"));
    ck_assert_int_eq(kv.pos, n);

    free(whole), free(chunked), free(stepped), free(last);
    free_cpu_run_state(&s);
    free_kv_cache(&kv);
    free_random_model(&m);
}

START_TEST(test_consistency_default_rope) { check_consistency(0); }
END_TEST

START_TEST(test_consistency_llama3_rope) { check_consistency(1); }
END_TEST

START_TEST(test_bad_tokens) {
    etx_model m;
    build_random_model(&m, 0);
    KVCache kv;
    CpuRunState s;
    CK_OK(build_kv_cache(&kv, &m.cfg, 0));
    CK_OK(build_cpu_run_state(&s, &m.cfg));
    float* logits = malloc((size_t)m.cfg.vocab_size * sizeof(float));
    int32_t ids[3] = {1, 67, 2};
    etx_status st = cpu_forward(&m, &s, &kv, ids, 3, logits, 0);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(st.message, "token id 67 at index 1"));
    ck_assert_int_eq(kv.pos, 0);
    ids[1] = -1;
    ck_assert_int_eq(cpu_forward(&m, &s, &kv, ids, 3, logits, 0).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(cpu_forward(&m, &s, &kv, ids, 0, logits, 0).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(kv.pos, 0);
    // more tokens than the context in one call
    int32_t many[65] = {0};
    st = cpu_forward(&m, &s, &kv, many, 65, logits, 0);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(kv.pos, 0);
    // the cache grows in chunks, never past max_seq_len
    CK_OK(cpu_forward(&m, &s, &kv, many, 5, NULL, 0));
    ck_assert_int_eq(kv.pos, 5);
    ck_assert_int_le(kv.capacity, kv.max_seq_len);
    free(logits);
    free_cpu_run_state(&s);
    free_kv_cache(&kv);
    free_random_model(&m);
}
END_TEST

START_TEST(test_kv_cache_grows_in_chunks) {
    ModelConfig c = {0};
    c.n_layers = 2, c.n_kv_heads = 2, c.head_dim = 4, c.max_seq_len = 131072;
    KVCache kv;
    CK_OK(build_kv_cache(&kv, &c, 0));
    ck_assert_int_eq(kv.max_seq_len, 131072);
    ck_assert_int_eq(kv.capacity, 0);
    CK_OK(kv_cache_reserve(&kv, 10));
    ck_assert_int_eq(kv.capacity, KV_CACHE_CHUNK);
    kv.k[1][(size_t)9 * kv.kv_dim] = 42.0f; // survives growth
    CK_OK(kv_cache_reserve(&kv, KV_CACHE_CHUNK + 1));
    ck_assert_int_eq(kv.capacity, 2 * KV_CACHE_CHUNK);
    ck_assert_float_eq(kv.k[1][(size_t)9 * kv.kv_dim], 42.0f);
    ck_assert_int_eq(kv_cache_reserve(&kv, 131073).code, ETX_ERR_INVALID_ARG);
    free_kv_cache(&kv);
}
END_TEST

START_TEST(test_last_attention_capture) {
    etx_model m;
    build_random_model(&m, 0);
    int H = m.cfg.n_heads, n = 13;
    KVCache kv;
    CpuRunState s;
    CK_OK(build_kv_cache(&kv, &m.cfg, 0));
    CK_OK(build_cpu_run_state_chunked(&s, &m.cfg, 4));
    float* attn = malloc((size_t)H * m.cfg.max_seq_len * sizeof(float));
    float* logits = malloc((size_t)m.cfg.vocab_size * sizeof(float));
    int32_t ids[13];
    for (int i = 0; i < n; i++) ids[i] = (i * 7 + 3) % m.cfg.vocab_size;
    CK_OK(cpu_forward(&m, &s, &kv, ids, n, logits, 0)); // off: nothing written
    ck_assert_int_eq(s.last_attn_len, 0);
    s.last_attn = attn;
    CK_OK(cpu_forward(&m, &s, &kv, ids, 1, logits, 0));
    ck_assert_int_eq(s.last_attn_len, n + 1);
    for (int h = 0; h < H; h++) {
        double sum = 0.0;
        for (int t = 0; t < n + 1; t++) {
            float p = attn[(size_t)h * (n + 1) + t];
            ck_assert(p >= 0.0f && p <= 1.0f);
            sum += p;
        }
        ck_assert_double_eq_tol(sum, 1.0, 1e-5);
    }
    // a prefill: the row is the last token's, over all its positions
    kv_cache_reset(&kv);
    CK_OK(cpu_forward(&m, &s, &kv, ids, n, logits, 0));
    ck_assert_int_eq(s.last_attn_len, n);
    float first_row[16];
    memcpy(first_row, attn, (size_t)n * sizeof(float));
    // the same positions decoded one at a time give the same probabilities
    kv_cache_reset(&kv);
    for (int i = 0; i < n; i++) CK_OK(cpu_forward(&m, &s, &kv, ids + i, 1, NULL, 0));
    ck_assert_float_le(max_abs_diff(first_row, attn, (size_t)n), 1e-6f);
    free(attn), free(logits);
    free_cpu_run_state(&s);
    free_kv_cache(&kv);
    free_random_model(&m);
}
END_TEST

// transformers' _compute_llama3_parameters, evaluated by hand for head_dim 8, theta 1e4,
// factor 8, low 1, high 4, original 16: inv_freq {1, 0.1, 0.01, 0.001}, wavelens
// 2pi*{1, 10, 100, 1000}; low_freq_wavelen 16, high_freq_wavelen 4 -> the first is
// blended (4 <= 2pi <= 16), the others divided by 8.
START_TEST(test_llama3_inv_freq) {
    ModelConfig c = {0};
    c.head_dim = 8, c.rope_theta = 10000.0f, c.rope_llama3 = 1, c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f, c.rope_original_max_pos = 16;
    float f[4];
    rope_inv_freq(f, &c);
    double smooth = (16.0 / (2 * M_PI) - 1.0) / 3.0;
    ck_assert_float_eq_tol(f[0], (float)((1 - smooth) / 8 + smooth), 1e-6f);
    ck_assert_float_eq_tol(f[1], 0.1f / 8, 1e-8f);
    ck_assert_float_eq_tol(f[2], 0.01f / 8, 1e-9f);
    ck_assert_float_eq_tol(f[3], 0.001f / 8, 1e-10f);
    c.rope_llama3 = 0; // plain: theta^(-2i/hd)
    rope_inv_freq(f, &c);
    ck_assert_float_eq_tol(f[0], 1.0f, 1e-7f);
    ck_assert_float_eq_tol(f[3], 0.001f, 1e-9f);
}
END_TEST


// ----------------------------------------------------------------------------
// fixtures: JSON metadata and little-endian float32 logits

static cJSON* load_json(const char* path) {
    char* text;
    size_t len;
    etx_status st = etx_read_file(path, &text, &len);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    cJSON* j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s: bad JSON", path);
    return j;
}

static float* load_floats(const char* path, size_t n) {
    char* data;
    size_t len;
    etx_status st = etx_read_file(path, &data, &len);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    ck_assert_msg(len == n * sizeof(float), "%s: %zu bytes, expected %zu", path, len, n * sizeof(float));
    float* f = malloc(len);
    memcpy(f, data, len); // x86/ARM little-endian, as written
    free(data);
    return f;
}

static int32_t* json_ids(const cJSON* arr, int* n) {
    *n = cJSON_GetArraySize(arr);
    int32_t* ids = malloc((size_t)*n * sizeof(int32_t));
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

// ----------------------------------------------------------------------------
// against Hugging Face transformers (float32, eager attention)
//
// Tolerance, per position: max_v |etx - ref| <= 1e-4 * max(1, max_v |ref|). Both sides
// compute in float32 with the same formulas; what differs is summation order (BLAS
// blocking, SIMD reductions) and libm's exp/cos/sin, i.e. a few ulps per op, which
// after a few layers is ~1e-6 of the row scale. 1e-4 leaves a wide margin, yet any real
// mistake (RoPE pairing, llama3 scaling, GQA mapping, a norm epsilon) is >= 1e-2.

static double hf_worst_rel = 0.0; // largest diff / row scale seen, reported at the end

static double compare_rows(const float* got, const float* ref, int n, int V, const char* what) {
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        const float* g = got + (size_t)i * V;
        const float* r = ref + (size_t)i * V;
        double scale = 1.0, diff = 0.0;
        for (int v = 0; v < V; v++) scale = fmax(scale, fabs(r[v]));
        for (int v = 0; v < V; v++) diff = fmax(diff, fabs((double)g[v] - r[v]));
        ck_assert_msg(diff <= 1e-4 * scale, "%s: position %d: max |diff| %.3g > 1e-4 * %.3g", what, i, diff, scale);
        worst = fmax(worst, diff / scale);
    }
    return worst;
}

static void check_hf_model(const char* name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/forward/hf/%s.json", ETX_FIXTURES, name);
    cJSON* meta = load_json(path);
    snprintf(path, sizeof path, "%s/%s", ETX_FIXTURES,
             cJSON_GetObjectItemCaseSensitive(meta, "model")->valuestring);
    etx_model m;
    etx_status st = hf_model_load(path, &m);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    int V = m.cfg.vocab_size;
    const cJSON* c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(meta, "cases")) {
        int n;
        int32_t* ids = json_ids(cJSON_GetObjectItemCaseSensitive(c, "ids"), &n);
        const cJSON* shape = cJSON_GetObjectItemCaseSensitive(c, "shape");
        ck_assert_int_eq((int)cJSON_GetArrayItem(shape, 0)->valuedouble, n);
        ck_assert_int_eq((int)cJSON_GetArrayItem(shape, 1)->valuedouble, V);
        snprintf(path, sizeof path, "%s/forward/hf/%s", ETX_FIXTURES,
                 cJSON_GetObjectItemCaseSensitive(c, "logits")->valuestring);
        float* ref = load_floats(path, (size_t)n * V);
        float* got = malloc((size_t)n * V * sizeof(float));
        char what[256];

        // prefill, in chunks of 32 tokens, every position's logits
        KVCache kv;
        CpuRunState s;
        CK_OK(build_kv_cache(&kv, &m.cfg, 0));
        CK_OK(build_cpu_run_state_chunked(&s, &m.cfg, 32));
        CK_OK(cpu_forward(&m, &s, &kv, ids, n, got, 1));
        snprintf(what, sizeof what, "%s, %d tokens, prefill", name, n);
        double w = compare_rows(got, ref, n, V, what);
        hf_worst_rel = fmax(hf_worst_rel, w);

        // decode: one token at a time through the cache
        kv_cache_reset(&kv);
        for (int i = 0; i < n; i++) CK_OK(cpu_forward(&m, &s, &kv, ids + i, 1, got + (size_t)i * V, 0));
        snprintf(what, sizeof what, "%s, %d tokens, decode", name, n);
        w = compare_rows(got, ref, n, V, what);
        hf_worst_rel = fmax(hf_worst_rel, w);
        fprintf(stderr, "transformers %s n=%d: worst max|diff|/row scale so far %.3g\n", name, n, hf_worst_rel);

        free_cpu_run_state(&s);
        free_kv_cache(&kv);
        free(ref), free(got), free(ids);
    }
    model_free_contents(&m);
    cJSON_Delete(meta);
}

START_TEST(test_hf_gqa) { check_hf_model("tiny-llama-gqa"); }
END_TEST

START_TEST(test_hf_tied_bf16) { check_hf_model("tiny-llama-tied"); }
END_TEST

START_TEST(test_hf_llama3_rope_sharded) { check_hf_model("tiny-llama3-rope"); }
END_TEST

// ----------------------------------------------------------------------------

static Suite* forward_suite(void) {
    Suite* s = suite_create("forward");
    TCase* tc = tcase_create("synthetic");
    tcase_add_test(tc, test_consistency_default_rope);
    tcase_add_test(tc, test_consistency_llama3_rope);
    tcase_add_test(tc, test_bad_tokens);
    tcase_add_test(tc, test_kv_cache_grows_in_chunks);
    tcase_add_test(tc, test_last_attention_capture);
    tcase_add_test(tc, test_llama3_inv_freq);
    suite_add_tcase(s, tc);

    tc = tcase_create("transformers");
    tcase_add_test(tc, test_hf_gqa);
    tcase_add_test(tc, test_hf_tied_bf16);
    tcase_add_test(tc, test_hf_llama3_rope_sharded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    cpu_set_threads(2);
    SRunner* sr = srunner_create(forward_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
