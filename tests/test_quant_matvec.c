/*
 * test_quant_matvec.c — checks the one-token product over compact weights
 * (quant_matrix.c) and the GGUF loader's compact twins (gguf_model.c).
 *
 *   - for Q8_0, Q4_0 and Q4_1 blocks with random scales and codes, rows 1, 7, 33 and
 *     cols 32, 64, 576: the compact product (SIMD path and plain C path) equals
 *     dequantize_row followed by a float32 dot product within 1e-5 of the row scale
 *     sum_i |w_i x_i| (only the summation order differs); the threaded product equals the
 *     single-thread one exactly.
 *   - the default GGUF model: every layer matrix and the LM head have a twin whose
 *     dequantized rows equal the float32 copy bit for bit (so the Q/K un-permute moved
 *     whole rows of blocks correctly), and a decode step with the twins gives the same
 *     logits as without them within 1e-4 of the row scale, with the same argmax.
 */
#include <check.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "cpu_forward.h"
#include "dequant.h"
#include "quant_matrix.h"

#define CK_OK(expr)                                                 \
    do {                                                            \
        etx_status st_ = (expr);                                    \
        ck_assert_msg(st_.code == ETX_OK, "%s", st_.message);       \
    } while (0)

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
// uniform in [-1, 1)
static float frand(void) { return (float)(next_u32() * (1.0 / 4294967296.0)) * 2.0f - 1.0f; }

// a finite f16 of either sign with magnitude about 2^-10 .. 2^-1 (scales and minimums)
static uint16_t rand_half(void) {
    uint32_t exp = 5 + next_u32() % 10, man = next_u32() & 0x3ff, sign = next_u32() & 1;
    return (uint16_t)(sign << 15 | exp << 10 | man);
}

static int block_bytes(int type) { return ggml_type_info((uint32_t)type)->block_bytes; }

// a (rows, cols) matrix of random blocks of the given type
static QuantMatrix rand_matrix(int type, int rows, int cols) {
    QuantMatrix q = {type, rows, cols, NULL, (size_t)(cols / 32 * block_bytes(type))};
    uint8_t* b = malloc(q.row_bytes * rows);
    for (size_t i = 0; i < q.row_bytes * rows; i++) b[i] = (uint8_t)next_u32();
    int halves = type == GGML_TYPE_Q4_1 ? 2 : 1;
    for (size_t k = 0; k < q.row_bytes * rows / block_bytes(type); k++)
        for (int h = 0; h < halves; h++) {
            uint16_t v = rand_half();
            memcpy(b + k * block_bytes(type) + 2 * h, &v, 2);
        }
    q.blocks = b;
    return q;
}

static double worst_rel = 0.0;

// compact product (both paths, and threaded) vs dequantize-then-dot
static void check_type(int type) {
    static const int rows_list[] = {1, 7, 33}, cols_list[] = {32, 64, 576};
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++) {
            int rows = rows_list[a], cols = cols_list[c];
            QuantMatrix q = rand_matrix(type, rows, cols);
            float* x = malloc((size_t)cols * sizeof(float));
            float* w = malloc((size_t)cols * sizeof(float));
            float* y_simd = malloc((size_t)rows * sizeof(float));
            float* y_scalar = malloc((size_t)rows * sizeof(float));
            float* y_par = malloc((size_t)rows * sizeof(float));
            for (int i = 0; i < cols; i++) x[i] = frand();
            quant_matvec_rows(y_simd, x, &q, 0, rows);
            quant_matvec_rows_scalar(y_scalar, x, &q, 0, rows);
            quant_matvec(y_par, x, &q);
            for (int r = 0; r < rows; r++) {
                dequantize_row((uint32_t)type, (const uint8_t*)q.blocks + (size_t)r * q.row_bytes, w, (size_t)cols);
                float ref = 0.0f;
                double scale = 0.0;
                for (int i = 0; i < cols; i++) {
                    ref += w[i] * x[i];
                    scale += fabs((double)w[i] * x[i]);
                }
                ck_assert(scale > 0.0);
                double ds = fabs((double)y_simd[r] - ref), dc = fabs((double)y_scalar[r] - ref);
                ck_assert_msg(ds <= 1e-5 * scale && dc <= 1e-5 * scale,
                              "%s %dx%d row %d: simd %.9g scalar %.9g reference %.9g (row scale %.3g)",
                              ggml_type_info((uint32_t)type)->name, rows, cols, r, y_simd[r], y_scalar[r], ref, scale);
                ck_assert_msg(y_par[r] == y_simd[r], "%s %dx%d row %d: threaded %.9g vs one thread %.9g",
                              ggml_type_info((uint32_t)type)->name, rows, cols, r, y_par[r], y_simd[r]);
                worst_rel = fmax(worst_rel, fmax(ds, dc) / scale);
            }
            free(q.blocks), free(x), free(w), free(y_simd), free(y_scalar), free(y_par);
        }
    fprintf(stderr, "%s: worst |compact - dequantized| / row scale so far %.3g\n", ggml_type_info((uint32_t)type)->name,
            worst_rel);
}

START_TEST(test_q8_0) { check_type(GGML_TYPE_Q8_0); }
END_TEST

START_TEST(test_q4_0) { check_type(GGML_TYPE_Q4_0); }
END_TEST

START_TEST(test_q4_1) { check_type(GGML_TYPE_Q4_1); }
END_TEST

// a product big enough to run on several threads: slices agree with one thread exactly
START_TEST(test_threaded_slices) {
    QuantMatrix q = rand_matrix(GGML_TYPE_Q4_1, 1000, 576);
    float* x = malloc(576 * sizeof(float));
    float* y1 = malloc(1000 * sizeof(float));
    float* y2 = malloc(1000 * sizeof(float));
    for (int i = 0; i < 576; i++) x[i] = frand();
    quant_matvec_rows(y1, x, &q, 0, 1000);
    quant_matvec(y2, x, &q);
    for (int r = 0; r < 1000; r++) ck_assert_msg(y1[r] == y2[r], "row %d: %.9g vs %.9g", r, y2[r], y1[r]);
    free(q.blocks), free(x), free(y1), free(y2);
}
END_TEST

// ----------------------------------------------------------------------------
// the default GGUF model's twins

// dequantized rows of the twin == the float32 copy, bit for bit
static void check_twin(const QuantMatrix* q, const float* W, int rows, int cols, const char* what) {
    ck_assert_msg(q->blocks != NULL, "%s: no compact twin", what);
    ck_assert_msg(q->rows == rows && q->cols == cols, "%s: twin is %dx%d, expected %dx%d", what, q->rows, q->cols, rows,
                  cols);
    float* w = malloc((size_t)cols * sizeof(float));
    for (int r = 0; r < rows; r++) {
        dequantize_row((uint32_t)q->type, (const uint8_t*)q->blocks + (size_t)r * q->row_bytes, w, (size_t)cols);
        ck_assert_msg(memcmp(w, W + (size_t)r * cols, (size_t)cols * sizeof(float)) == 0, "%s: row %d differs", what,
                      r);
    }
    free(w);
}

START_TEST(test_gguf_twins) {
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0)
        ck_abort_msg("default model missing: %s (fetch it with the models/ script)", ETX_DEFAULT_MODEL);
    etx_model m;
    CK_OK(gguf_model_load(ETX_DEFAULT_MODEL, &m));
    const ModelConfig* c = &m.cfg;
    int dim = c->dim, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, ff = c->hidden_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights* L = &m.w.layers[l];
        check_twin(&L->wq_q, L->wq, q, dim, "wq");
        check_twin(&L->wk_q, L->wk, kv, dim, "wk");
        check_twin(&L->wv_q, L->wv, kv, dim, "wv");
        check_twin(&L->wo_q, L->wo, dim, q, "wo");
        check_twin(&L->w_gate_q, L->w_gate, ff, dim, "w_gate");
        check_twin(&L->w_up_q, L->w_up, ff, dim, "w_up");
        check_twin(&L->w_down_q, L->w_down, dim, ff, "w_down");
    }
    check_twin(&m.w.lm_head_q, m.w.lm_head, c->vocab_size, dim, "lm_head");

    // decode with the twins vs the float32 path (twins hidden)
    int V = c->vocab_size;
    int32_t prompt[5] = {1, 504, 3458, 282, 253};
    float* a = malloc((size_t)V * sizeof(float));
    float* b = malloc((size_t)V * sizeof(float));
    double worst = 0.0, differs = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        QuantMatrix saved_head = m.w.lm_head_q;
        QuantMatrix* saved = malloc((size_t)c->n_layers * 7 * sizeof(QuantMatrix));
        if (pass == 1) { // hide every twin: matmul on the float32 copies
            for (int l = 0; l < c->n_layers; l++) {
                LayerWeights* L = &m.w.layers[l];
                QuantMatrix* t[7] = {&L->wq_q, &L->wk_q, &L->wv_q, &L->wo_q, &L->w_gate_q, &L->w_up_q, &L->w_down_q};
                for (int i = 0; i < 7; i++) saved[l * 7 + i] = *t[i], t[i]->blocks = NULL;
            }
            m.w.lm_head_q.blocks = NULL;
        }
        KVCache cache;
        CpuRunState s;
        CK_OK(build_kv_cache(&cache, c, 64));
        CK_OK(build_cpu_run_state(&s, c));
        float* out = pass == 0 ? a : b;
        for (int i = 0; i < 5; i++) CK_OK(cpu_forward(&m, &s, &cache, prompt + i, 1, out, 0));
        free_cpu_run_state(&s);
        free_kv_cache(&cache);
        if (pass == 1) {
            for (int l = 0; l < c->n_layers; l++) {
                LayerWeights* L = &m.w.layers[l];
                QuantMatrix* t[7] = {&L->wq_q, &L->wk_q, &L->wv_q, &L->wo_q, &L->w_gate_q, &L->w_up_q, &L->w_down_q};
                for (int i = 0; i < 7; i++) *t[i] = saved[l * 7 + i];
            }
            m.w.lm_head_q = saved_head;
        }
        free(saved);
    }
    double scale = 1.0;
    int am = 0, bm = 0;
    for (int v = 0; v < V; v++) {
        scale = fmax(scale, fabs(b[v]));
        worst = fmax(worst, fabs((double)a[v] - b[v]));
        differs += a[v] != b[v];
        am = a[v] > a[am] ? v : am;
        bm = b[v] > b[bm] ? v : bm;
    }
    fprintf(stderr, "decode, 5 steps: max |twins - float32| %.3g (row scale %.3g), %.0f of %d logits differ\n", worst,
            scale, differs, V);
    ck_assert_msg(worst <= 1e-4 * scale, "max |diff| %.3g > 1e-4 * %.3g", worst, scale);
    ck_assert_msg(differs > 0, "the twins gave bit-identical logits: is the compact path used at all?");
    ck_assert_int_eq(am, bm);
    free(a), free(b);
    model_free_contents(&m);
}
END_TEST

int main(void) {
    Suite* su = suite_create("quant_matvec");
    TCase* tc = tcase_create("kernel");
    tcase_add_test(tc, test_q8_0);
    tcase_add_test(tc, test_q4_0);
    tcase_add_test(tc, test_q4_1);
    tcase_add_test(tc, test_threaded_slices);
    suite_add_tcase(su, tc);
    TCase* tg = tcase_create("gguf");
    tcase_add_test(tg, test_gguf_twins);
    suite_add_tcase(su, tg);
    SRunner* sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
