/*
 * f32_matrix.c — batch-invariant float32 matrix products for decode (see f32_matrix.h for
 * the summation order every output follows).
 *
 * Kernel: one weight row against G inputs at once (G <= 3), 4 eight-wide accumulators per
 * input (12 registers for G = 3): each 8-float piece of the row is loaded once and
 * multiply-added into the G inputs' accumulators. Each accumulator still advances block
 * by block in the order the one-input kernel uses, so grouping inputs changes nothing in
 * any output's arithmetic — only how often W is read.
 *
 * Memory traffic: W (rows * cols * 4 bytes) is read from memory once per call, whatever n:
 * rows are taken in tiles of F32_TILE_ROWS, and a tile (<= 4 * cols floats, L1/L2) is
 * swept against all n inputs before the next one. x (n * cols floats) is re-read from
 * cache once per tile and input group.
 */
#include "f32_matrix.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define F32M_AVX2 1
#endif

// Below this many multiply-adds a product runs on one thread (as matmul in cpu_ops.c).
#define F32M_PARALLEL_MIN (1 << 16)
// inputs per register tile, and weight rows per cache tile
#define F32_GROUP 3
#define F32_TILE_ROWS 4

// ---------------------------------------------------------------------------
// plain C

// the horizontal sum of the 32 running sums s (f32_matrix.h)
float f32_reduce32(const float* s) {
    float t[8], u[4];
    for (int l = 0; l < 8; l++) {
        float lo = s[l] + s[8 + l], hi = s[16 + l] + s[24 + l];
        t[l] = lo + hi;
    }
    for (int l = 0; l < 4; l++) u[l] = t[l] + t[4 + l];
    float even = u[0] + u[2], odd = u[1] + u[3];
    return even + odd;
}

// w . x in the fixed order: s[i mod 32] = fma(w[i], x[i], s[i mod 32]), zero padding
static float dot_scalar(const float* w, const float* x, int cols) {
    float s[32] = {0};
    for (int i0 = 0; i0 < cols; i0 += 32)
        for (int l = 0; l < 32; l++) {
            int i = i0 + l;
            float wi = i < cols ? w[i] : 0.0f, xi = i < cols ? x[i] : 0.0f;
            s[l] = fmaf(wi, xi, s[l]);
        }
    return f32_reduce32(s);
}

void f32_matvec_rows_scalar(float* y, const float* x, const float* W, int cols, int r0, int r1) {
    for (int r = r0; r < r1; r++) y[r - r0] = dot_scalar(W + (size_t)r * cols, x, cols);
}

void f32_matmat_rows_scalar(float* y, int ldy, const float* x, int ldx, int n, const float* W, int cols, int r0,
                            int r1) {
    for (int b = 0; b < n; b++)
        f32_matvec_rows_scalar(y + (size_t)b * ldy, x + (size_t)b * ldx, W, cols, r0, r1);
}

// ---------------------------------------------------------------------------
// AVX2 + FMA

#ifdef F32M_AVX2
// reduce32 on four accumulators holding s[0..7], s[8..15], s[16..23], s[24..31]
static inline float hsum_avx2(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// y[g * ldy] = w . x[g * ldx] for g < G: the row's 8-float pieces are loaded once and
// multiply-added into each input's own 4 accumulators
static inline __attribute__((always_inline)) void dots_avx2(float* y, int ldy, const float* w, const float* x,
                                                            int ldx, int G, int cols) {
    __m256 a[F32_GROUP][4];
    for (int g = 0; g < G; g++)
        for (int j = 0; j < 4; j++) a[g][j] = _mm256_setzero_ps();
    int nb = cols / 32;
    for (int k = 0; k < nb; k++) {
        const float* wk = w + 32 * k;
        const float* xk = x + 32 * k;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256 wv = _mm256_loadu_ps(wk + 8 * j);
#pragma GCC unroll 3
            for (int g = 0; g < G; g++)
                a[g][j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xk + (size_t)g * ldx + 8 * j), a[g][j]);
        }
    }
    int rem = cols - 32 * nb;
    if (rem) { // last partial block, zero-padded: masked lanes load 0 and touch no memory
        const float* wk = w + 32 * nb;
        const float* xk = x + 32 * nb;
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (int j = 0; j < 4; j++) {
            __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8 * j), lane);
            __m256 wv = _mm256_maskload_ps(wk + 8 * j, mask);
            for (int g = 0; g < G; g++)
                a[g][j] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(xk + (size_t)g * ldx + 8 * j, mask), a[g][j]);
        }
    }
    for (int g = 0; g < G; g++) y[(size_t)g * ldy] = hsum_avx2(a[g][0], a[g][1], a[g][2], a[g][3]);
}
#endif

void f32_matvec_rows(float* y, const float* x, const float* W, int cols, int r0, int r1) {
#ifdef F32M_AVX2
    for (int r = r0; r < r1; r++) dots_avx2(y + (r - r0), 0, W + (size_t)r * cols, x, 0, 1, cols);
#else
    f32_matvec_rows_scalar(y, x, W, cols, r0, r1);
#endif
}

void f32_matmat_rows(float* y, int ldy, const float* x, int ldx, int n, const float* W, int cols, int r0, int r1) {
#ifdef F32M_AVX2
    for (int t0 = r0; t0 < r1; t0 += F32_TILE_ROWS) {
        int t1 = t0 + F32_TILE_ROWS < r1 ? t0 + F32_TILE_ROWS : r1;
        int b = 0;
        for (; b + F32_GROUP <= n; b += F32_GROUP)
            for (int r = t0; r < t1; r++)
                dots_avx2(y + (size_t)b * ldy + (r - r0), ldy, W + (size_t)r * cols, x + (size_t)b * ldx, ldx,
                          F32_GROUP, cols);
        for (int r = t0; r < t1 && n - b == 2; r++)
            dots_avx2(y + (size_t)b * ldy + (r - r0), ldy, W + (size_t)r * cols, x + (size_t)b * ldx, ldx, 2, cols);
        for (int r = t0; r < t1 && n - b == 1; r++)
            dots_avx2(y + (size_t)b * ldy + (r - r0), ldy, W + (size_t)r * cols, x + (size_t)b * ldx, ldx, 1, cols);
    }
#else
    f32_matmat_rows_scalar(y, ldy, x, ldx, n, W, cols, r0, r1);
#endif
}

// ---------------------------------------------------------------------------
// threaded: output rows split in slices of 16 (a slice's bits do not depend on the split)

void f32_matmat(float* y, int ldy, const float* x, int ldx, int n, const float* W, int rows, int cols) {
    long work = (long)n * rows * cols;
    #pragma omp parallel if (work >= F32M_PARALLEL_MIN)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int per = ((rows + nt - 1) / nt + 15) / 16 * 16;
        int r0 = t * per, r1 = r0 + per < rows ? r0 + per : rows;
        if (r0 < r1) {
            if (n == 1) f32_matvec_rows(y + r0, x, W, cols, r0, r1);
            else f32_matmat_rows(y + r0, ldy, x, ldx, n, W, cols, r0, r1);
        }
    }
}

void f32_matvec(float* y, const float* x, const float* W, int rows, int cols) {
    f32_matmat(y, rows, x, cols, 1, W, rows, cols);
}
