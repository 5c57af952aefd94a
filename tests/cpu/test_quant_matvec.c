/*
 * test_quant_matvec.c — checks the one-token and batched products over compact weights
 * (quant_matrix.c) and the GGUF loader's compact twins (gguf_model.c).
 *
 *   - for Q8_0, Q4_0, Q4_1 and Q5_0 blocks with random scales and codes, rows 1, 7, 33,
 *     577, cols 32, 64, 576, 1536, and for Q4_K, Q5_K and Q6_K super-blocks (random codes,
 *     6-bit / 8-bit sub-block scales and f16 super-scales) rows 1, 7, 33, 577, cols 256,
 *     512, 1536, 2816; n = 1, 2, 3, 8, 31, 64 inputs (row strides ldx > cols, ldy > rows):
 *       every row of the batched product (quant_matmat_rows, quant_matmat) equals the
 *       one-token product quant_matvec_rows of that input bit for bit (memcmp);
 *       the plain C twins equal the AVX2 code bit for bit (same weights, same order);
 *       the threaded products on 1, 2 and 3 OpenMP threads give identical bits;
 *       x's padding (NaN) is never read, y's padding never written;
 *       each value is within the forward error bound of float32 summation of a double
 *       reference on dequantize_row's weights: each product w_i x_i goes through at most
 *       cols/32 fused multiply-adds plus 5 additions (f32_matrix.h), so
 *       |y - ref| <= g * sum_i |w_i x_i|, g = (cols/32 + 5) u / (1 - (cols/32 + 5) u),
 *       u = 2^-24 (Higham, Accuracy and Stability, 2nd ed., section 4.2).
 *   - quant_dequant_rows (rows r0.. into an unaligned buffer) equals dequantize_row bit for
 *     bit;
 *   - the compact product equals f32_matvec_rows on the dequantized rows bit for bit.
 *   - the default GGUF model: every layer matrix and the LM head are held only as their
 *     blocks (no float32 copy; test_loader checks rows of them against gguf-py, Q/K
 *     un-permuted), and a decode step with them gives the same logits as the float32
 *     path on copies made by model_weight_rows within 1e-4 of the row scale, with the
 *     same argmax; and prefill (every position's logits) and a decode step give the same
 *     bits on blocks alone as with float32 copies beside them (prefill's arithmetic is
 *     unchanged by holding only the blocks).
 *   - 8-bit activations (act_q8, Q4_K / Q5_K / Q6_K; rows 1, 7, 33, 577, cols 256 and
 *     2816, inputs with 100x outliers): the same bit-for-bit checks (batched = one-token,
 *     plain C = AVX2, 1-3 threads, padding); every value against a double reference on
 *     the rounded inputs and against the float32-input product within the rounding bound
 *     (check_q8_reference states both); quant_act_row's codes, scale, bsums and its NaN /
 *     inf / zero blocks (test_act_row); act_q8 ignored by the other types.
 *   - tiny_kquant.gguf (Q4_K, Q5_K, Q6_K, Q5_0, Q8_0 matrices, a Q4_K_M-like mix): every
 *     matrix kept in its file type, the K-quants with act_q8 set by the loader; weights
 *     held == the file's tensor data bytes, between 95% and 100% of the file's size;
 *     with float32 inputs (model_set_act_q8 0) decode and prefill checked as for the
 *     default model; with 8-bit inputs the same argmax as the float32 path.
 */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_forward.h"
#include "model/dequant.h"
#include "model/gguf.h"
#include "cpu/f32_matrix.h"
#include "cpu/quant_matrix.h"
#include "test_rng.h"
#include "check_etx.h"
#include "check_main.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;

// a finite f16 of either sign with magnitude about 2^-10 .. 2^-1 (scales and minimums)
static uint16_t rand_half(void) {
    uint32_t exp = 5 + rng_next_u32(&rng_state) % 10, man = rng_next_u32(&rng_state) & 0x3ff, sign = rng_next_u32(&rng_state) & 1;
    return (uint16_t)(sign << 15 | exp << 10 | man);
}

static int block_bytes(int type) { return ggml_type_info((uint32_t)type)->block_bytes; }

static int block_elems(int type) { return ggml_type_info((uint32_t)type)->block_elems; }

// a (rows, cols) matrix of random blocks of the given type: random bytes (codes, the
// K-quants' sub-block scales and minimums: every bit pattern is a valid one), then valid
// f16 scales where the format has them (Q4_1, Q4_K, Q5_K: d and m / dmin at bytes 0 and 2;
// Q6_K: d at byte 208; the others: d at byte 0)
static QuantMatrix rand_matrix(int type, int rows, int cols) {
    QuantMatrix q = {type, rows, cols, NULL, (size_t)(cols / block_elems(type) * block_bytes(type)), 0};
    uint8_t* b = malloc(q.row_bytes * rows);
    for (size_t i = 0; i < q.row_bytes * rows; i++) b[i] = (uint8_t)rng_next_u32(&rng_state);
    int halves = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K ? 2 : 1;
    int at = type == GGML_TYPE_Q6_K ? 208 : 0;
    for (size_t k = 0; k < q.row_bytes * rows / block_bytes(type); k++)
        for (int h = 0; h < halves; h++) {
            uint16_t v = rand_half();
            memcpy(b + k * block_bytes(type) + at + 2 * h, &v, 2);
        }
    q.blocks = b;
    return q;
}

// ----------------------------------------------------------------------------
// 8-bit activations (act_q8)

static double worst_q8_ratio = 0.0, worst_quant_ratio = 0.0;

static double half_d(const uint8_t* p) { return (double)fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8))); }

// The 256 weights of a K-quant super-block in exact (double) arithmetic, written from the
// GGUF layouts independently of quant_matrix.c: w[i] = a[i] - m[i], a[i] = d sc q_i
// (Q6_K: d sc (q_i - 32)), m[i] = dmin m_j (Q6_K: 0).
static void exact_kquant(int type, const uint8_t* b, double* a, double* m) {
    if (type == GGML_TYPE_Q6_K) {
        double d = half_d(b + 208);
        for (int i = 0; i < 256; i++) {
            int h = i / 128, k = i % 128 / 32, l = i % 32;
            int lo = b[64 * h + 32 * (k % 2) + l], hi = b[128 + 32 * h + l];
            int q = ((k < 2 ? lo & 15 : lo >> 4) | ((hi >> (2 * k)) & 3) << 4) - 32;
            a[i] = d * (int8_t)b[192 + i / 16] * q;
            m[i] = 0.0;
        }
        return;
    }
    int five = type == GGML_TYPE_Q5_K;
    double d = half_d(b), dmin = half_d(b + 2);
    const uint8_t* sc = b + 4;
    const uint8_t* qs = b + (five ? 48 : 16);
    for (int i = 0; i < 256; i++) {
        int j = i / 32, l = i % 32, s, mn;
        if (j < 4) s = sc[j] & 63, mn = sc[j + 4] & 63;
        else s = (sc[j + 4] & 15) | (sc[j - 4] >> 6) << 4, mn = (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
        int q = j % 2 ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 15;
        if (five) q |= ((b[16 + l] >> j) & 1) << 4;
        a[i] = d * s * q;
        m[i] = dmin * mn;
    }
}

// y (the one-token product of x on q, act_q8 set) against:
//   - the double reference on x rounded as quant_act_row rounds it: sum_i w_i d_b q_i over
//     the exact weights. Each of 8 lanes takes, per super-block, four float32 operations
//     on exact integer sums of its elements (the conversion counts as one) and one
//     addition to its running sum; the 8 lanes are then added in a tree of depth 3. So
//     every term goes through at most nb + 4 + 3 roundings: |y - ref| <= g * S,
//     g = (nb + 7) u / (1 - (nb + 7) u), S = sum_i (|a_i| + |m_i|) |d_b q_i| (Higham 3.1).
//   - the float32-activation product yf = w . x within its own bound gf * sum |w_i x_i|
//     (dequant.c's weights w, check_shape's g): the rounding of x moves the product by at
//     most sum_b (d_b / 2) (1 + 2^-20) sum_{i in b} |w_i| (|x_i - d_b q_i| <= d_b / 2 up to
//     the rounding of x_i * 127 / max and of d_b), so |y - yf| <= that + g S + gf F.
// The exact weights must match dequant.c's (each within 2 u of its value: d sc is
// rounded once there, then the product, then the difference).
static void check_q8_reference(const QuantMatrix* q, const float* w, const float* x, const float* y) {
    const int cols = q->cols, nb = cols / 256, bb = block_bytes(q->type);
    const char* tn = ggml_type_info((uint32_t)q->type)->name;
    QuantAct* act = malloc((size_t)nb * sizeof(QuantAct));
    quant_act_row(x, cols, act);
    double* a = malloc(256 * sizeof(double));
    double* m = malloc(256 * sizeof(double));
    double g = (double)(nb + 7) * 0x1p-24, gf = (double)(cols / 32 + 5) * 0x1p-24;
    g = g / (1.0 - g), gf = gf / (1.0 - gf);
    for (int r = 0; r < q->rows; r++) {
        double ref = 0.0, S = 0.0, F = 0.0, yf = 0.0, shift = 0.0;
        int bad_w = -1; // first element whose exact weight is not dequant.c's (asserted once per row)
        for (int k = 0; k < nb; k++) {
            exact_kquant(q->type, (const uint8_t*)q->blocks + (size_t)r * q->row_bytes + (size_t)k * bb, a, m);
            double wsum = 0.0;
            for (int l = 0; l < 256; l++) {
                int i = 256 * k + l;
                double wi = a[l] - m[l], xr = (double)act[k].d * act[k].q[l], wf = w[(size_t)r * cols + i];
                if (bad_w < 0 && !(fabs(wf - wi) <= 0x1p-23 * (fabs(a[l]) + fabs(m[l])) + 1e-30)) bad_w = i;
                ref += wi * xr;
                S += (fabs(a[l]) + fabs(m[l])) * fabs(xr);
                yf += wf * x[i];
                F += fabs(wf * x[i]);
                wsum += fabs(wi);
            }
            shift += (double)act[k].d * 0.5 * (1.0 + 0x1p-20) * wsum;
        }
        ck_assert_msg(bad_w < 0, "%s row %d element %d: exact weight differs from dequant.c's", tn, r, bad_w);
        double err = fabs((double)y[r] - ref);
        ck_assert_msg(err <= g * S + 1e-30, "%s row %d: %.9g vs reference on the rounded x %.17g (bound %.3g)", tn, r,
                      y[r], ref, g * S);
        worst_q8_ratio = fmax(worst_q8_ratio, err / (g * S + 1e-30));
        double dq = fabs((double)y[r] - yf), bq = shift + g * S + gf * F;
        ck_assert_msg(dq <= bq, "%s row %d: %.9g vs float32-x %.9g: moved %.3g > bound %.3g", tn, r, y[r], yf, dq, bq);
        worst_quant_ratio = fmax(worst_quant_ratio, dq / bq);
    }
    free(act), free(a), free(m);
}

// quant_act_row: codes in [-127, 127], the block's largest |x| coded as +-127, |x - d q|
// <= d / 2 (up to the rounding of d and of x * 127 / max), bsums the sums of 16 codes; a
// zero block has d 0 and zero codes; a block holding a NaN or an infinity has d NaN (so
// every product with it is NaN, as with float32 x), the blocks beside it are unaffected.
START_TEST(test_act_row) {
    enum { NB = 6 };
    float x[NB * 256];
    for (int i = 0; i < NB * 256; i++) x[i] = rng_frand(&rng_state) * (float)(1 << (i / 256 * 3));
    for (int i = 256; i < 512; i++) x[i] = 0.0f;   // block 1: zeros
    x[3 * 256 + 7] = NAN;                          // block 3: a NaN
    x[4 * 256 + 200] = -INFINITY;                  // block 4: an infinity
    x[5 * 256 + 9] = 1e6f;                         // block 5: an outlier
    QuantAct a[NB];
    quant_act_row(x, NB * 256, a);
    for (int k = 0; k < NB; k++) {
        if (k == 3 || k == 4) {
            ck_assert_msg(isnan(a[k].d), "block %d holds a NaN / inf: d = %g", k, a[k].d);
            continue;
        }
        if (k == 1) {
            ck_assert(a[k].d == 0.0f);
            for (int l = 0; l < 256; l++) ck_assert_int_eq(a[k].q[l], 0);
            for (int g = 0; g < 16; g++) ck_assert_int_eq(a[k].bsums[g], 0);
            continue;
        }
        float amax = 0.0f;
        for (int l = 0; l < 256; l++) amax = fmaxf(amax, fabsf(x[256 * k + l]));
        ck_assert_msg(a[k].d == amax / 127.0f, "block %d: d %g for max %g", k, a[k].d, amax);
        int top = 0;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                int i = 16 * g + l, qv = a[k].q[i];
                ck_assert(qv >= -127 && qv <= 127);
                double e = fabs((double)x[256 * k + i] - (double)a[k].d * qv);
                ck_assert_msg(e <= (double)a[k].d * 0.5 * (1.0 + 0x1p-20), "block %d element %d: %g coded %d x %g", k,
                              i, x[256 * k + i], qv, a[k].d);
                top |= fabsf(x[256 * k + i]) == amax && abs(qv) == 127;
                sum += qv;
            }
            ck_assert_int_eq(a[k].bsums[g], sum);
        }
        ck_assert_msg(top, "block %d: its largest |x| is not coded as +-127", k);
    }
    // a NaN reaches the product as NaN
    QuantMatrix q = rand_matrix(GGML_TYPE_Q4_K, 3, NB * 256);
    q.act_q8 = 1;
    float y[3];
    quant_matvec_rows(y, x, &q, 0, 3);
    for (int r = 0; r < 3; r++) ck_assert_msg(isnan(y[r]), "row %d: %g from an input holding a NaN", r, y[r]);
    free(q.blocks);
}
END_TEST

// act_q8 is ignored by the types without an 8-bit kernel (their float32 products, same bits)
START_TEST(test_act_q8_other_types) {
    static const int types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0};
    for (int t = 0; t < 4; t++) {
        ck_assert(!quant_matrix_q8_capable(types[t]));
        QuantMatrix q = rand_matrix(types[t], 17, 512);
        float x[512], y0[17], y1[17];
        for (int i = 0; i < 512; i++) x[i] = rng_frand(&rng_state);
        quant_matvec(y0, x, &q);
        q.act_q8 = 1;
        quant_matvec(y1, x, &q);
        ck_assert(memcmp(y0, y1, sizeof y0) == 0);
        free(q.blocks);
    }
}
END_TEST

static const int N_LIST[] = {1, 2, 3, 8, 31, 64};
#define N_COUNT 6
#define N_MAX 64
#define Y_SENTINEL -12345.0f

static double worst_bound_ratio = 0.0; // max |y - ref| / bound seen in this test

// one (rows, cols) matrix of the type against N_MAX inputs: see the file comment; act_q8
// 1: the 8-bit-activation products, checked against check_q8_reference instead
static void check_shape(int type, int rows, int cols, int act_q8) {
    const char* tn = ggml_type_info((uint32_t)type)->name;
    int ldx = cols + 3, ldy = rows + 5;
    QuantMatrix q = rand_matrix(type, rows, cols);
    q.act_q8 = act_q8;
    float* w = malloc((size_t)rows * cols * sizeof(float));       // dequant.c's weights
    float* x = malloc((size_t)N_MAX * ldx * sizeof(float));
    float* one = malloc((size_t)N_MAX * rows * sizeof(float));    // one-token products, (N_MAX, rows)
    float* y = malloc((size_t)N_MAX * ldy * sizeof(float));
    float* ys = malloc((size_t)rows * sizeof(float));
    for (int r = 0; r < rows; r++)
        dequantize_row((uint32_t)type, (const uint8_t*)q.blocks + (size_t)r * q.row_bytes, w + (size_t)r * cols,
                       (size_t)cols);
    // quant_dequant_rows (model_weight_rows' dequantization), from a row offset into an
    // unaligned buffer: dequantize_row's values bit for bit
    float* wq = malloc(((size_t)rows * cols + 1) * sizeof(float));
    int r0 = rows / 3;
    quant_dequant_rows(&q, r0, rows, wq + 1);
    ck_assert_msg(memcmp(wq + 1, w + (size_t)r0 * cols, (size_t)(rows - r0) * cols * sizeof(float)) == 0,
                  "%s %dx%d: quant_dequant_rows differs from dequantize_row", tn, rows, cols);
    free(wq);
    for (int b = 0; b < N_MAX; b++)
        for (int i = 0; i < ldx; i++) x[(size_t)b * ldx + i] = i < cols ? rng_frand(&rng_state) : NAN;
    if (act_q8) // outliers, as real hidden states have: one input value in 17 is 100x larger
        for (size_t i = 0; i < (size_t)N_MAX * ldx; i += 17)
            if (i % (size_t)ldx < (size_t)cols) x[i] *= 100.0f;
    size_t row_bytes = (size_t)rows * sizeof(float);

    // one-token products (AVX2 when compiled for it), the plain C twin, the reference
    double g = (double)(cols / 32 + 5) * 0x1p-24;
    g = g / (1.0 - g);
    for (int b = 0; b < N_MAX; b++) {
        const float* xb = x + (size_t)b * ldx;
        quant_matvec_rows(one + (size_t)b * rows, xb, &q, 0, rows);
        quant_matvec_rows_scalar(ys, xb, &q, 0, rows);
        ck_assert_msg(memcmp(ys, one + (size_t)b * rows, row_bytes) == 0, "%s %dx%d input %d: plain C differs", tn,
                      rows, cols, b);
        if (act_q8) { // the reference on 8 of the inputs (each input's bits are checked below)
            if (b % 8 == 0) check_q8_reference(&q, w, xb, one + (size_t)b * rows);
            continue;
        }
        for (int r = 0; r < rows; r++) {
            double ref = 0.0, scale = 0.0;
            for (int i = 0; i < cols; i++) {
                double p = (double)w[(size_t)r * cols + i] * xb[i];
                ref += p;
                scale += fabs(p);
            }
            ck_assert(scale > 0.0);
            double err = fabs((double)one[(size_t)b * rows + r] - ref);
            ck_assert_msg(err <= g * scale, "%s %dx%d input %d row %d: %.9g vs reference %.17g (bound %.3g)", tn,
                          rows, cols, b, r, one[(size_t)b * rows + r], ref, g * scale);
            worst_bound_ratio = fmax(worst_bound_ratio, err / (g * scale));
        }
    }

    for (int t = 0; t < N_COUNT; t++) {
        int n = N_LIST[t];
        // batched kernel on this thread, its plain C twin, threaded on 1, 2 and 3 threads
        for (int variant = 0; variant < 5; variant++) {
            for (size_t i = 0; i < (size_t)N_MAX * ldy; i++) y[i] = Y_SENTINEL;
            if (variant == 0) quant_matmat_rows(y, ldy, x, ldx, n, &q, 0, rows);
            else if (variant == 1) quant_matmat_rows_scalar(y, ldy, x, ldx, n, &q, 0, rows);
            else {
                omp_set_num_threads(variant - 1);
                quant_matmat(y, ldy, x, ldx, n, &q);
                omp_set_num_threads(2);
            }
            for (int b = 0; b < N_MAX; b++) {
                ck_assert_msg(b >= n || memcmp(y + (size_t)b * ldy, one + (size_t)b * rows, row_bytes) == 0,
                              "%s %dx%d n=%d variant %d: batched row %d differs from its one-token product", tn,
                              rows, cols, n, variant, b);
                for (int r = b < n ? rows : 0; r < ldy; r++)
                    ck_assert_msg(y[(size_t)b * ldy + r] == Y_SENTINEL, "%s %dx%d n=%d variant %d: wrote y[%d, %d]",
                                  tn, rows, cols, n, variant, b, r);
            }
        }
        if (n == 1) // the matvec wrapper, on 1, 2 and 3 threads
            for (int nt = 1; nt <= 3; nt++) {
                omp_set_num_threads(nt);
                quant_matvec(ys, x, &q);
                omp_set_num_threads(2);
                ck_assert_msg(memcmp(ys, one, row_bytes) == 0, "%s %dx%d: quant_matvec on %d threads differs", tn,
                              rows, cols, nt);
            }
    }
    free(q.blocks), free(w), free(x), free(one), free(y), free(ys);
}

static void check_type(int type) {
    static const int rows_list[] = {1, 7, 33, 577}, cols_list[] = {32, 64, 576, 1536},
                     kcols_list[] = {256, 512, 1536, 2816};
    worst_bound_ratio = 0.0;
    for (int c = 0; c < 4; c++)
        for (int a = 0; a < 4; a++)
            check_shape(type, rows_list[a], block_elems(type) == 256 ? kcols_list[c] : cols_list[c], 0);
    fprintf(stderr, "%s: worst |compact - double reference| / error bound %.3g\n", ggml_type_info((uint32_t)type)->name,
            worst_bound_ratio);
    if (!quant_matrix_q8_capable(type)) return;
    worst_q8_ratio = worst_quant_ratio = 0.0;
    for (int c = 0; c < 4; c += 3) // one super-block and eleven (the reference is slow under ASan)
        for (int a = 0; a < 4; a++) check_shape(type, rows_list[a], kcols_list[c], 1);
    fprintf(stderr,
            "%s 8-bit activations: worst |product - double reference on the rounded x| / bound %.3g, "
            "worst |product - float32-x product| / rounding bound %.3g\n",
            ggml_type_info((uint32_t)type)->name, worst_q8_ratio, worst_quant_ratio);
}

START_TEST(test_q8_0) { check_type(GGML_TYPE_Q8_0); }
END_TEST

START_TEST(test_q4_0) { check_type(GGML_TYPE_Q4_0); }
END_TEST

START_TEST(test_q4_1) { check_type(GGML_TYPE_Q4_1); }
END_TEST

START_TEST(test_q5_0) { check_type(GGML_TYPE_Q5_0); }
END_TEST

START_TEST(test_q4_k) { check_type(GGML_TYPE_Q4_K); }
END_TEST

START_TEST(test_q5_k) { check_type(GGML_TYPE_Q5_K); }
END_TEST

START_TEST(test_q6_k) { check_type(GGML_TYPE_Q6_K); }
END_TEST

// a product big enough to run on several threads: slices agree with one thread exactly
START_TEST(test_threaded_slices) {
    QuantMatrix q = rand_matrix(GGML_TYPE_Q4_1, 1000, 576);
    float* x = malloc(576 * sizeof(float));
    float* y1 = malloc(1000 * sizeof(float));
    float* y2 = malloc(1000 * sizeof(float));
    for (int i = 0; i < 576; i++) x[i] = rng_frand(&rng_state);
    quant_matvec_rows(y1, x, &q, 0, 1000);
    quant_matvec(y2, x, &q);
    for (int r = 0; r < 1000; r++) ck_assert_msg(y1[r] == y2[r], "row %d: %.9g vs %.9g", r, y2[r], y1[r]);
    free(q.blocks), free(x), free(y1), free(y2);
}
END_TEST

// the compact product follows f32_matrix.h's order: equal bits to f32_matvec_rows on the
// dequantized rows (so a model's float32 and compact decode paths differ only in w)
START_TEST(test_same_order_as_f32) {
    static const int types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
                                GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    for (int t = 0; t < 7; t++) {
        QuantMatrix q = rand_matrix(types[t], 33, 1536);
        float* w = malloc((size_t)33 * 1536 * sizeof(float));
        float x[1536], yq[33], yf[33];
        for (int i = 0; i < 1536; i++) x[i] = rng_frand(&rng_state);
        for (int r = 0; r < 33; r++)
            dequantize_row((uint32_t)types[t], (const uint8_t*)q.blocks + (size_t)r * q.row_bytes, w + r * 1536,
                           1536);
        quant_matvec_rows(yq, x, &q, 0, 33);
        f32_matvec_rows(yf, x, w, 1536, 0, 33);
        ck_assert_msg(memcmp(yq, yf, sizeof yq) == 0, "%s: compact and float32 products differ",
                      ggml_type_info((uint32_t)types[t])->name);
        free(q.blocks), free(w);
    }
}
END_TEST

// ----------------------------------------------------------------------------
// the default GGUF model's twins

// the matrix is held only as its blocks (no float32 copy), of the expected shape
static void check_twin(const QuantMatrix* q, const float* W, int rows, int cols, const char* what) {
    ck_assert_msg(q->blocks != NULL, "%s: no compact twin", what);
    ck_assert_msg(W == NULL, "%s: a float32 copy is kept beside the blocks", what);
    ck_assert_msg(q->rows == rows && q->cols == cols, "%s: twin is %dx%d, expected %dx%d", what, q->rows, q->cols, rows,
                  cols);
}

// a float32 copy of a kept matrix (model_weight_rows), for the float32 path
static float* dense(const QuantMatrix* q) {
    float* w = malloc((size_t)q->rows * q->cols * sizeof(float));
    model_weight_rows(NULL, q, q->cols, 0, q->rows, w);
    return w;
}

// every layer matrix and the LM head held only as blocks of the expected shapes
static void check_all_twins(const etx_model* m) {
    const ModelConfig* c = &m->cfg;
    int dim = c->dim, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, ff = c->hidden_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights* L = &m->w.layers[l];
        check_twin(&L->wq_q, L->wq, q, dim, "wq");
        check_twin(&L->wk_q, L->wk, kv, dim, "wk");
        check_twin(&L->wv_q, L->wv, kv, dim, "wv");
        check_twin(&L->wo_q, L->wo, dim, q, "wo");
        check_twin(&L->w_gate_q, L->w_gate, ff, dim, "w_gate");
        check_twin(&L->w_up_q, L->w_up, ff, dim, "w_up");
        check_twin(&L->w_down_q, L->w_down, dim, ff, "w_down");
    }
    check_twin(&m->w.lm_head_q, m->w.lm_head, c->vocab_size, dim, "lm_head");
    check_twin(&m->w.token_embedding_q, m->w.token_embedding, c->vocab_size, dim, "token_embedding");
}

// The layer matrices of l as an array of 7 twins / 7 float pointers.
#define LAYER_TWINS(L) {&(L)->wq_q, &(L)->wk_q, &(L)->wv_q, &(L)->wo_q, &(L)->w_gate_q, &(L)->w_up_q, &(L)->w_down_q}
#define LAYER_FLOATS(L) {&(L)->wq, &(L)->wk, &(L)->wv, &(L)->wo, &(L)->w_gate, &(L)->w_up, &(L)->w_down}

// Gives every matrix of m a float32 copy (model_weight_rows) beside its blocks: the model
// as the loader held it before matrices kept only their blocks.
static void add_float_copies(etx_model* m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        LayerWeights* L = &m->w.layers[l];
        QuantMatrix* t[7] = LAYER_TWINS(L);
        float** f[7] = LAYER_FLOATS(L);
        for (int i = 0; i < 7; i++) *f[i] = dense(t[i]);
    }
    m->w.lm_head = dense(&m->w.lm_head_q);
}

static void drop_float_copies(etx_model* m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        LayerWeights* L = &m->w.layers[l];
        float** f[7] = LAYER_FLOATS(L);
        for (int i = 0; i < 7; i++) free(*f[i]), *f[i] = NULL;
    }
    free(m->w.lm_head);
    m->w.lm_head = m->w.token_embedding;
}

// Hides (hide 1) or restores (hide 0) the blocks of every matrix, saved in saved.
static void hide_twins(etx_model* m, QuantMatrix* saved, int hide) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        LayerWeights* L = &m->w.layers[l];
        QuantMatrix* t[7] = LAYER_TWINS(L);
        for (int i = 0; i < 7; i++) {
            if (hide) saved[l * 7 + i] = *t[i], t[i]->blocks = NULL;
            else *t[i] = saved[l * 7 + i];
        }
    }
    if (hide) saved[m->cfg.n_layers * 7] = m->w.lm_head_q, m->w.lm_head_q.blocks = NULL;
    else m->w.lm_head_q = saved[m->cfg.n_layers * 7];
}

// n decode steps of prompt on the blocks vs the float32 path (float32 copies, blocks
// hidden): last logits within rel (> 0; 0: not checked) of the row scale, same argmax, not
// all identical.
static void decode_vs_float32(etx_model* m, const int32_t* prompt, int n, const char* what, double rel) {
    const ModelConfig* c = &m->cfg;
    int V = c->vocab_size;
    float* a = malloc((size_t)V * sizeof(float));
    float* b = malloc((size_t)V * sizeof(float));
    QuantMatrix* saved = malloc(((size_t)c->n_layers * 7 + 1) * sizeof(QuantMatrix));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) add_float_copies(m), hide_twins(m, saved, 1);
        KVCache cache;
        CpuRunState s;
        CK_OK(build_kv_cache(&cache, c, 64));
        CK_OK(build_cpu_run_state(&s, c));
        float* out = pass == 0 ? a : b;
        for (int i = 0; i < n; i++) CK_OK(cpu_forward(m, &s, &cache, prompt + i, 1, out, 0));
        free_cpu_run_state(&s);
        free_kv_cache(&cache);
        if (pass == 1) hide_twins(m, saved, 0), drop_float_copies(m);
    }
    free(saved);
    double scale = 0.0, worst = 0.0, differs = 0.0;
    int am = 0, bm = 0;
    for (int v = 0; v < V; v++) {
        scale = fmax(scale, fabs(b[v]));
        worst = fmax(worst, fabs((double)a[v] - b[v]));
        differs += a[v] != b[v];
        am = a[v] > a[am] ? v : am;
        bm = b[v] > b[bm] ? v : bm;
    }
    fprintf(stderr, "%s: decode, %d steps: max |blocks - float32| %.3g (row scale %.3g), %.0f of %d logits differ\n",
            what, n, worst, scale, differs, V);
    ck_assert_msg(scale > 0.0, "%s: all logits are zero", what);
    ck_assert_msg(rel == 0.0 || worst <= rel * scale, "%s: max |diff| %.3g > %g * %.3g", what, worst, rel, scale);
    ck_assert_msg(differs > 0, "%s: the blocks gave bit-identical logits: is the compact path used at all?", what);
    ck_assert_int_eq(am, bm);
    free(a), free(b);
}

// Prefill (a chunk of T tokens, every position's logits) on a model that keeps only the
// blocks dequantizes each matrix whole into the run state's tile and multiplies with
// sgemm: the same bits as on the model as the loader used to hold it (float32 copies
// beside the blocks). Then one decode step each: the blocks, bit for bit too.
static void prefill_unchanged(etx_model* m, int T, const char* what) {
    const ModelConfig* c = &m->cfg;
    const int V = c->vocab_size;
    int32_t* prompt = malloc((size_t)(T + 1) * sizeof(int32_t));
    for (int i = 0; i < T + 1; i++) prompt[i] = (int32_t)(1 + (rng_next_u32(&rng_state) % (uint32_t)(V - 1)));
    float* out[2];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) add_float_copies(m);
        out[pass] = malloc((size_t)(T + 1) * V * sizeof(float));
        KVCache cache;
        CpuRunState s;
        CK_OK(build_kv_cache(&cache, c, 64));
        CK_OK(build_cpu_run_state(&s, c));
        CK_OK(cpu_forward(m, &s, &cache, prompt, T, out[pass], 1));
        CK_OK(cpu_forward(m, &s, &cache, prompt + T, 1, out[pass] + (size_t)T * V, 0));
        // a prefill tile of the largest layer matrix only for the blocks-only model (the LM
        // head's, grown for the all-logits chunk, was given back)
        size_t qd = (size_t)c->n_heads * c->head_dim, wide = qd > (size_t)c->hidden_dim ? qd : (size_t)c->hidden_dim;
        ck_assert_msg(s.wtmp_len == (pass == 0 ? wide * c->dim : 0), "%s: prefill tile of %zu floats", what,
                      s.wtmp_len);
        free_cpu_run_state(&s);
        free_kv_cache(&cache);
    }
    drop_float_copies(m);
    for (int i = 0; i <= T; i++)
        ck_assert_msg(memcmp(out[0] + (size_t)i * V, out[1] + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                      "%s: position %d: logits differ between blocks-only and float32 copies", what, i);
    free(out[0]), free(out[1]), free(prompt);
}

START_TEST(test_gguf_twins) {
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0)
        ck_abort_msg("default model missing: %s (fetch it with the models/ script)", ETX_DEFAULT_MODEL);
    etx_model m;
    CK_OK(gguf_model_load(ETX_DEFAULT_MODEL, &m));
    check_all_twins(&m);
    int32_t prompt[5] = {1, 504, 3458, 282, 253};
    decode_vs_float32(&m, prompt, 5, "SmolLM2 Q4_1", 1e-4);
    model_free_contents(&m);
}
END_TEST

START_TEST(test_gguf_prefill_unchanged) {
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0)
        ck_abort_msg("default model missing: %s (fetch it with the models/ script)", ETX_DEFAULT_MODEL);
    etx_model m;
    CK_OK(gguf_model_load(ETX_DEFAULT_MODEL, &m));
    prefill_unchanged(&m, 40, "SmolLM2 Q4_1");
    model_free_contents(&m);
}
END_TEST

// tiny_kquant.gguf (tests/scripts/gen_kquant_fixture.py): Q4_K, Q5_K, Q6_K, Q5_0 and Q8_0
// matrices, as in a Q4_K_M mix. Every matrix keeps its blocks in its file type; the
// weights held are exactly the tensor data of the file (norms are F32 there and here, the
// rest are the file's blocks), which is at most the file's size and, the metadata being
// small, at least 95% of it; decode on the blocks matches float32, prefill is unchanged.
#define KQUANT ETX_FIXTURES "/loader/tiny_kquant.gguf"

START_TEST(test_kquant_model) {
    etx_model m;
    CK_OK(gguf_model_load(KQUANT, &m));
    check_all_twins(&m);
    static const int types[2][7] = {
        {GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K},
        {GGML_TYPE_Q4_K, GGML_TYPE_Q5_0, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K}};
    ck_assert_int_eq(m.cfg.n_layers, 2);
    for (int l = 0; l < 2; l++) {
        LayerWeights* L = &m.w.layers[l];
        QuantMatrix* t[7] = LAYER_TWINS(L);
        for (int i = 0; i < 7; i++)
            ck_assert_msg(t[i]->type == types[l][i], "layer %d matrix %d: type %d, expected %d", l, i, t[i]->type,
                          types[l][i]);
    }
    ck_assert_int_eq(m.w.lm_head_q.type, GGML_TYPE_Q6_K);
    ck_assert_int_eq(m.w.token_embedding_q.type, GGML_TYPE_Q4_K);

    GGUFFile f;
    CK_OK(gguf_open(KQUANT, &f));
    long long data = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++) data += (long long)f.tensors[i].n_bytes;
    long long file = (long long)f.size, held = model_weight_bytes_held(&m);
    gguf_close(&f);
    fprintf(stderr, "tiny_kquant: weights held %lld bytes, tensor data %lld, file %lld\n", held, data, file);
    ck_assert_msg(held == data, "held %lld bytes, the file's tensors are %lld", held, data);
    ck_assert_msg(held <= file && held >= file / 100 * 95, "held %lld bytes vs file %lld", held, file);

    // the loader gives the K-quant matrices 8-bit activations (unless ETX_EXACT_PRODUCTS)
    for (int l = 0; l < 2; l++) {
        LayerWeights* L = &m.w.layers[l];
        QuantMatrix* t[7] = LAYER_TWINS(L);
        for (int i = 0; i < 7; i++) ck_assert_int_eq(t[i]->act_q8, quant_matrix_act_q8_default(t[i]->type));
    }
    ck_assert_int_eq(m.w.lm_head_q.act_q8, quant_matrix_act_q8_default(GGML_TYPE_Q6_K));

    int32_t prompt[6] = {1, 40, 77, 150, 201, 287};
    model_set_act_q8(&m, 0); // the float32-activation products: float32 arithmetic, checked as for SmolLM2
    decode_vs_float32(&m, prompt, 6, "tiny_kquant", 1e-4);
    prefill_unchanged(&m, 40, "tiny_kquant");
    // 8-bit activations: the same argmax, different bits; their per-product error is
    // bounded in check_q8_reference, the whole model's is checked against llama.cpp (which
    // rounds the same way) in test_forward_qwen, so no model-level tolerance is claimed here
    model_set_act_q8(&m, 1);
    decode_vs_float32(&m, prompt, 6, "tiny_kquant 8-bit activations", 0.0);
    model_free_contents(&m);
}
END_TEST

int main(void) {
    Suite* su = suite_create("quant_matvec");
    TCase* tc = tcase_create("kernel");
    tcase_add_test(tc, test_q8_0);
    tcase_add_test(tc, test_q4_0);
    tcase_add_test(tc, test_q4_1);
    tcase_add_test(tc, test_q5_0);
    tcase_add_test(tc, test_q4_k);
    tcase_add_test(tc, test_q5_k);
    tcase_add_test(tc, test_q6_k);
    tcase_add_test(tc, test_threaded_slices);
    tcase_add_test(tc, test_act_row);
    tcase_add_test(tc, test_act_q8_other_types);
    tcase_add_test(tc, test_same_order_as_f32);
    suite_add_tcase(su, tc);
    TCase* tg = tcase_create("gguf");
    tcase_add_test(tg, test_gguf_twins);
    tcase_add_test(tg, test_gguf_prefill_unchanged);
    tcase_add_test(tg, test_kquant_model);
    suite_add_tcase(su, tg);
    return check_run_suite(su);
}
