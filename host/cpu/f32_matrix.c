/*
 * f32_matrix.c — batch-invariant float32 matrix products for decode (see f32_matrix.h for
 * the summation order every output follows).
 *
 * Kernels: one row at a time for n = 1 (dot1_avx2: 4 eight-wide accumulators, lanes = the
 * 32 running sums); for n > 1 a register tile of 3 weight rows x 3 inputs (tile_avx2):
 * for one quarter of the blocks at a time its 9 accumulators advance block by block, each
 * 8-float piece of W and of x loaded once and used 3 times; blocks go in chunks of
 * F32_KCHUNK (2 KB of each row), so the 4 quarter passes find them in L1. Every
 * accumulator still sees exactly the fused multiply-adds, in the order, of the one-row
 * kernel, so tiling changes nothing in any output's arithmetic — only how often W and x
 * are read.
 *
 * Memory traffic: W (rows * cols * 4 bytes) is read from memory once per call, whatever n:
 * rows are taken in tiles of F32_TILE_ROWS, and a tile (F32_TILE_ROWS * cols floats,
 * L1/L2) is swept against all n inputs before the next one. x (n * cols floats) is re-read
 * from cache once per row tile.
 */
#include "cpu/f32_matrix.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define F32M_AVX2 1
#endif

// Below this many multiply-adds a product runs on one thread (as matmul in cpu_ops.c).
#define F32M_PARALLEL_MIN (1 << 16)
// weight rows and inputs per register tile (TR x TG accumulators, <= 3 x 4; 3 x 3 was at
// least as fast as 3 x 4 and 2 x 4 on the shared 2-core EPYC dev machine, whose timings are
// noisy), blocks per L1 chunk, weight rows per cache tile (a multiple of F32_TR).
// Overridable with -D for tuning; the results' bits do not depend on them.
#ifndef F32_TR
#define F32_TR 3
#endif
#ifndef F32_TG
#define F32_TG 3
#endif
#ifndef F32_KCHUNK
#define F32_KCHUNK 16
#endif
#ifndef F32_TILE_ROWS
#define F32_TILE_ROWS 6
#endif

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

// y[r] = w[r] . x for r < R (w[r] at w + r * cols): the matrix-vector kernel, one row at
// a time, its 4 accumulators advancing together
static inline __attribute__((always_inline)) void dot1_avx2(float* y, const float* w, const float* x, int cols) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int nb = cols / 32;
    for (int k = 0; k < nb; k++, w += 32, x += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_loadu_ps(x), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8), _mm256_loadu_ps(x + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 16), _mm256_loadu_ps(x + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 24), _mm256_loadu_ps(x + 24), a3);
    }
    int rem = cols - 32 * nb;
    if (rem) { // last partial block, zero-padded: masked lanes load 0 and touch no memory
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane);
        __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8), lane);
        __m256i m2 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 16), lane);
        __m256i m3 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 24), lane);
        a0 = _mm256_fmadd_ps(_mm256_maskload_ps(w, m0), _mm256_maskload_ps(x, m0), a0);
        a1 = _mm256_fmadd_ps(_mm256_maskload_ps(w + 8, m1), _mm256_maskload_ps(x + 8, m1), a1);
        a2 = _mm256_fmadd_ps(_mm256_maskload_ps(w + 16, m2), _mm256_maskload_ps(x + 16, m2), a2);
        a3 = _mm256_fmadd_ps(_mm256_maskload_ps(w + 24, m3), _mm256_maskload_ps(x + 24, m3), a3);
    }
    *y = hsum_avx2(a0, a1, a2, a3);
}

// y[g * ldy + r] = w[r] . x[g] for r < R <= F32_TR, g < G <= F32_TG (w[r] at w + r * cols,
// x[g] at x + g * ldx). Register tile: for one quarter j of a chunk of blocks at a time,
// the R x G accumulators of lanes 8j..8j+7 advance block by block; each 8-float piece of W
// and of x is loaded once per tile and used G (resp. R) times (R + G loads per R G
// multiply-adds). Every accumulator sees exactly the fused multiply-adds, in the order, of
// dot1_avx2 (the chunking only pauses it).
static inline __attribute__((always_inline)) void tile_avx2(float* y, int ldy, const float* w, int cols,
                                                            const float* x, int ldx, int R, int G) {
    __m256 part[F32_TR][F32_TG][4]; // [r][g][quarter]: the accumulators between chunks
    int nb = cols / 32, rem = cols - 32 * nb;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int r = 0; r < R; r++)
        for (int g = 0; g < G; g++)
            for (int j = 0; j < 4; j++) part[r][g][j] = _mm256_setzero_ps();
    // blocks in chunks of F32_KCHUNK, so that the tile's pieces of W and x stay in L1
    // across the 4 quarter passes
    for (int k0 = 0; k0 < nb; k0 += F32_KCHUNK) {
        int k1 = k0 + F32_KCHUNK < nb ? k0 + F32_KCHUNK : nb;
        for (int j = 0; j < 4; j++) {
            __m256 acc[F32_TR][F32_TG], wv[F32_TR];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) acc[r][g] = part[r][g][j];
            const float* wj = w + 32 * k0 + 8 * j;
            const float* xj = x + 32 * k0 + 8 * j;
            for (int k = k0; k < k1; k++, wj += 32, xj += 32) {
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) wv[r] = _mm256_loadu_ps(wj + (size_t)r * cols);
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) {
                    __m256 xg = _mm256_loadu_ps(xj + (size_t)g * ldx);
#pragma GCC unroll 4
                    for (int r = 0; r < R; r++) acc[r][g] = _mm256_fmadd_ps(wv[r], xg, acc[r][g]);
                }
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) part[r][g][j] = acc[r][g];
        }
    }
    if (rem) { // last partial block, zero-padded: masked lanes load 0 and touch no memory
        for (int j = 0; j < 4; j++) {
            __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8 * j), lane);
            const float* wj = w + 32 * nb + 8 * j;
            const float* xj = x + 32 * nb + 8 * j;
            for (int g = 0; g < G; g++) {
                __m256 xg = _mm256_maskload_ps(xj + (size_t)g * ldx, mask);
                for (int r = 0; r < R; r++)
                    part[r][g][j] =
                        _mm256_fmadd_ps(_mm256_maskload_ps(wj + (size_t)r * cols, mask), xg, part[r][g][j]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int g = 0; g < G; g++)
            y[(size_t)g * ldy + r] = hsum_avx2(part[r][g][0], part[r][g][1], part[r][g][2], part[r][g][3]);
}

// tile_avx2 with R <= F32_TR and G <= F32_TG known at compile time
static void tile_dispatch(float* y, int ldy, const float* w, int cols, const float* x, int ldx, int R, int G) {
#define TILE_CASE(R_, G_) \
    case R_ * 8 + G_: if (R_ <= F32_TR && G_ <= F32_TG) tile_avx2(y, ldy, w, cols, x, ldx, R_, G_); break;
    switch (R * 8 + G) {
        TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(1, 3) TILE_CASE(1, 4)
        TILE_CASE(2, 1) TILE_CASE(2, 2) TILE_CASE(2, 3) TILE_CASE(2, 4)
        TILE_CASE(3, 1) TILE_CASE(3, 2) TILE_CASE(3, 3) TILE_CASE(3, 4)
    }
#undef TILE_CASE
}
#endif

void f32_matvec_rows(float* y, const float* x, const float* W, int cols, int r0, int r1) {
#ifdef F32M_AVX2
    for (int r = r0; r < r1; r++) dot1_avx2(y + (r - r0), W + (size_t)r * cols, x, cols);
#else
    f32_matvec_rows_scalar(y, x, W, cols, r0, r1);
#endif
}

void f32_matmat_rows(float* y, int ldy, const float* x, int ldx, int n, const float* W, int cols, int r0, int r1) {
#ifdef F32M_AVX2
    // a cache tile of rows is swept against all n inputs, in register tiles of 3 x 3
    for (int t0 = r0; t0 < r1; t0 += F32_TILE_ROWS) {
        int t1 = t0 + F32_TILE_ROWS < r1 ? t0 + F32_TILE_ROWS : r1;
        for (int b = 0; b < n; b += F32_TG) {
            int G = n - b < F32_TG ? n - b : F32_TG;
            for (int r = t0; r < t1; r += F32_TR) {
                int R = t1 - r < F32_TR ? t1 - r : F32_TR;
                tile_dispatch(y + (size_t)b * ldy + (r - r0), ldy, W + (size_t)r * cols, cols, x + (size_t)b * ldx,
                              ldx, R, G);
            }
        }
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
