/*
 * test_f32_matrix.c — checks the batch-invariant float32 decode products (f32_matrix.c).
 *
 * For random W (rows 1, 7, 33, 577; cols 32, 64, 576, 1536, plus 5, 45 and 100 for the
 * zero-padded last block) and n = 1, 2, 3, 8, 31, 64 inputs with row strides ldx > cols
 * and ldy > rows:
 *   - every row of the batched product (f32_matmat_rows, f32_matmat) equals the one-row
 *     product f32_matvec_rows of that input bit for bit (memcmp);
 *   - the plain C twins equal the AVX2 code bit for bit (same order, fmaf);
 *   - the threaded products on 1 and 2 OpenMP threads give identical bits;
 *   - the padding of x (NaN) is never read and the padding of y never written;
 *   - each value is within the forward error bound of float32 summation of a
 *     double-precision reference: every product w_i x_i goes through at most
 *     ceil(cols/32) fused multiply-adds plus 5 additions (f32_matrix.h), so
 *     |y - ref| <= g * sum_i |w_i x_i| with g = (ceil(cols/32) + 5) u / (1 - (...) u),
 *     u = 2^-24 (Higham, Accuracy and Stability, 2nd ed., section 4.2).
 */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/f32_matrix.h"
#include "test_rng.h"
#include "check_main.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static const int N_LIST[] = {1, 2, 3, 8, 31, 64};
#define N_COUNT 6
#define N_MAX 64
#define Y_SENTINEL -12345.0f

static double worst_bound_ratio = 0.0; // max |y - ref| / bound seen

static void check_shape(int rows, int cols) {
    int ldx = cols + 3, ldy = rows + 5;
    float* W = malloc((size_t)rows * cols * sizeof(float));
    float* x = malloc((size_t)N_MAX * ldx * sizeof(float));
    float* one = malloc((size_t)N_MAX * rows * sizeof(float)); // one-row products, (N_MAX, rows)
    float* y = malloc((size_t)N_MAX * ldy * sizeof(float));
    float* ys = malloc((size_t)rows * sizeof(float));
    for (size_t i = 0; i < (size_t)rows * cols; i++) W[i] = rng_frand(&rng_state);
    for (int b = 0; b < N_MAX; b++)
        for (int i = 0; i < ldx; i++) x[(size_t)b * ldx + i] = i < cols ? rng_frand(&rng_state) : NAN;
    size_t row_bytes = (size_t)rows * sizeof(float);

    // one-row products (AVX2 when compiled for it), the scalar twin, and the reference
    double g = (double)((cols + 31) / 32 + 5) * 0x1p-24;
    g = g / (1.0 - g);
    for (int b = 0; b < N_MAX; b++) {
        const float* xb = x + (size_t)b * ldx;
        f32_matvec_rows(one + (size_t)b * rows, xb, W, cols, 0, rows);
        f32_matvec_rows_scalar(ys, xb, W, cols, 0, rows);
        ck_assert_msg(memcmp(ys, one + (size_t)b * rows, row_bytes) == 0, "%dx%d input %d: scalar twin differs",
                      rows, cols, b);
        for (int r = 0; r < rows; r++) {
            double ref = 0.0, scale = 0.0;
            for (int i = 0; i < cols; i++) {
                double p = (double)W[(size_t)r * cols + i] * xb[i];
                ref += p;
                scale += fabs(p);
            }
            double err = fabs((double)one[(size_t)b * rows + r] - ref);
            ck_assert_msg(err <= g * scale, "%dx%d input %d row %d: %.9g vs reference %.17g (bound %.3g)", rows,
                          cols, b, r, one[(size_t)b * rows + r], ref, g * scale);
            if (scale > 0) worst_bound_ratio = fmax(worst_bound_ratio, err / (g * scale));
        }
    }

    for (int t = 0; t < N_COUNT; t++) {
        int n = N_LIST[t];
        // kernel on this thread, its scalar twin, and threaded on 1 and 2 threads
        for (int variant = 0; variant < 4; variant++) {
            for (size_t i = 0; i < (size_t)N_MAX * ldy; i++) y[i] = Y_SENTINEL;
            if (variant == 0) f32_matmat_rows(y, ldy, x, ldx, n, W, cols, 0, rows);
            else if (variant == 1) f32_matmat_rows_scalar(y, ldy, x, ldx, n, W, cols, 0, rows);
            else {
                omp_set_num_threads(variant - 1);
                f32_matmat(y, ldy, x, ldx, n, W, rows, cols);
                omp_set_num_threads(2);
            }
            for (int b = 0; b < N_MAX; b++) {
                ck_assert_msg(b >= n || memcmp(y + (size_t)b * ldy, one + (size_t)b * rows, row_bytes) == 0,
                              "%dx%d n=%d variant %d: batched row %d differs from its one-row product", rows, cols,
                              n, variant, b);
                for (int r = b < n ? rows : 0; r < ldy; r++)
                    ck_assert_msg(y[(size_t)b * ldy + r] == Y_SENTINEL, "%dx%d n=%d variant %d: wrote y[%d, %d]",
                                  rows, cols, n, variant, b, r);
            }
        }
        if (n == 1) { // the matvec wrapper, on 1 and 2 threads
            for (int nt = 1; nt <= 2; nt++) {
                omp_set_num_threads(nt);
                f32_matvec(ys, x, W, rows, cols);
                ck_assert_msg(memcmp(ys, one, row_bytes) == 0, "%dx%d: f32_matvec on %d threads differs", rows,
                              cols, nt);
            }
            omp_set_num_threads(2);
        }
    }
    free(W), free(x), free(one), free(y), free(ys);
}

static void check_cols(int cols) {
    static const int rows_list[] = {1, 7, 33, 577};
    for (int a = 0; a < 4; a++) check_shape(rows_list[a], cols);
    fprintf(stderr, "f32 cols %d: worst |y - double reference| / error bound (this test) %.3g\n", cols,
            worst_bound_ratio);
}

START_TEST(test_cols_32) { check_cols(32); }
END_TEST
START_TEST(test_cols_64) { check_cols(64); }
END_TEST
START_TEST(test_cols_576) { check_cols(576); }
END_TEST
START_TEST(test_cols_1536) { check_cols(1536); }
END_TEST
START_TEST(test_cols_partial_block) {
    check_cols(5);
    check_cols(45);
    check_cols(100);
}
END_TEST

// the order is the documented one: a row whose exact sum is lost by a different order
START_TEST(test_fixed_order) {
    // w . x = 1e8 * 1 (lane 0) + 1 * 1 (lane 1) - 1e8 * 1 (lane 0 again, next block) + ...
    // lane 0: fma(1e8,1,0) = 1e8, then fma(-1e8,1,1e8) = 0; lane 1: 1 + 1 = 2; sum = 2.
    // Summed left to right in float32 it would give 1e8 + 1 = 1e8 (1 lost), then 0 + 1 = 1.
    float w[64] = {0}, x[64], y = 0.0f, ys = 0.0f;
    for (int i = 0; i < 64; i++) x[i] = 1.0f;
    w[0] = 1e8f, w[1] = 1.0f, w[32] = -1e8f, w[33] = 1.0f;
    f32_matvec_rows(&y, x, w, 64, 0, 1);
    f32_matvec_rows_scalar(&ys, x, w, 64, 0, 1);
    ck_assert_msg(y == 2.0f && ys == 2.0f, "got %.9g (scalar %.9g), want 2", y, ys);
}
END_TEST

int main(void) {
    Suite* su = suite_create("f32_matrix");
    TCase* tc = tcase_create("products");
    tcase_add_test(tc, test_fixed_order);
    tcase_add_test(tc, test_cols_32);
    tcase_add_test(tc, test_cols_64);
    tcase_add_test(tc, test_cols_576);
    tcase_add_test(tc, test_cols_1536);
    tcase_add_test(tc, test_cols_partial_block);
    suite_add_tcase(su, tc);
    return check_run_suite(su);
}
