/*
 * quant_matrix.c — decode products over block-quantized weights (see quant_matrix.h):
 * one token (quant_matvec) and a batch of n tokens (quant_matmat) whose rows equal the
 * one-token product bit for bit. Formats (dequant.c): 32 elements per block, element
 * j < 16 from the low nibble of qs[j], element j + 16 from its high nibble (Q8_0: qs[j]
 * itself).
 *   Q4_0  f16 d; u8 qs[16]      w = (nibble - 8) * d
 *   Q4_1  f16 d, m; u8 qs[16]   w = nibble * d + m
 *   Q8_0  f16 d; i8 qs[32]      w = q * d
 * Each w is rounded exactly as dequant.c rounds it (a product, then a sum: no fused
 * multiply-add inside w), then w . x is accumulated in f32_matrix.h's fixed order (32
 * running sums, one per position in the block, advanced by fused multiply-adds, then a
 * fixed reduction tree). Every path here — AVX2 one-token (w kept in registers), AVX2
 * batched (w dequantized once into a small float buffer, then f32_matmat_rows against
 * all n inputs), and the plain C twins — computes the same w and the same order, so all
 * give identical bits; only the summation order differs from the float32 sgemm path.
 *
 * Memory traffic: a rows x cols product reads rows * cols / 32 blocks (Q4_1: 20 bytes,
 * Q4_0: 18, Q8_0: 34 per 32 weights) once per call, whatever n, plus x (n * cols floats,
 * cache-resident); float32 would read 128 bytes per 32 weights.
 */
#include "cpu/quant_matrix.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/dequant.h"
#include "cpu/f32_matrix.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QM_AVX2 1
#endif

// Below this many multiply-adds a product runs on one thread (as matmul in cpu_ops.c).
#define QMATVEC_PARALLEL_MIN (1 << 16)
// weight rows dequantized at a time by the batched AVX2 product (a float buffer of
// QM_TILE_ROWS * cols, L1/L2-resident while it is swept against the n inputs)
#define QM_TILE_ROWS 6

int quant_matrix_supported(uint32_t type) {
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1;
}

static float half_at(const uint8_t* p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

// ---------------------------------------------------------------------------
// plain C

// the 32 weights of one block, w = q * d (+ m) rounded after each operation
static void block_dequant_scalar(int type, const uint8_t* b, float* w) {
    float d = half_at(b);
    if (type == GGML_TYPE_Q8_0) {
        const int8_t* qs = (const int8_t*)(b + 2);
        for (int j = 0; j < 32; j++) w[j] = (float)qs[j] * d;
    } else if (type == GGML_TYPE_Q4_0) {
        const uint8_t* qs = b + 2;
        for (int j = 0; j < 16; j++) {
            w[j] = (float)((qs[j] & 0xf) - 8) * d;
            w[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
    } else { // Q4_1: separate statements, so no compiler may fuse the product and the sum
        float m = half_at(b + 2);
        const uint8_t* qs = b + 4;
        for (int j = 0; j < 16; j++) {
            float p0 = (float)(qs[j] & 0xf) * d, p1 = (float)(qs[j] >> 4) * d;
            w[j] = p0 + m;
            w[j + 16] = p1 + m;
        }
    }
}

static int block_size(int type) { return type == GGML_TYPE_Q4_1 ? 20 : type == GGML_TYPE_Q4_0 ? 18 : 34; }

// sum_j w_j x_j over one row of nb blocks, in f32_matrix.h's order
static float row_dot_scalar(int type, const uint8_t* b, const float* x, int nb) {
    float s[32] = {0}, w[32];
    for (int k = 0; k < nb; k++, x += 32, b += block_size(type)) {
        block_dequant_scalar(type, b, w);
        for (int l = 0; l < 32; l++) s[l] = fmaf(w[l], x[l], s[l]);
    }
    return f32_reduce32(s);
}

// y[r - r0] = dequant(W)[r] . x, plain C
void quant_matvec_rows_scalar(float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
    int nb = W->cols / 32;
    for (int r = r0; r < r1; r++)
        y[r - r0] = row_dot_scalar(W->type, (const uint8_t*)W->blocks + (size_t)r * W->row_bytes, x, nb);
}

// y[b * ldy + r - r0] = dequant(W)[r] . x[b], plain C
void quant_matmat_rows_scalar(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0,
                              int r1) {
    for (int b = 0; b < n; b++) quant_matvec_rows_scalar(y + (size_t)b * ldy, x + (size_t)b * ldx, W, r0, r1);
}

// ---------------------------------------------------------------------------
// AVX2 + FMA

#ifdef QM_AVX2
// f16 -> f32 (exact, as fp16_to_fp32)
static inline float half_fast(const uint8_t* p) {
#ifdef __F16C__
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
#else
    return half_at(p);
#endif
}

// 8 signed/unsigned bytes widened to 8 floats
static inline __m256 u8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 i8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// the block at b as 4 x 8 floats q[0..3] (elements 0-7, 8-15, 16-23, 24-31),
// w = q * d (+ m) with a separate multiply and add
#define BLOCK_DEQUANT_AVX2(type, b, q)                                                              \
    do {                                                                                            \
        __m256 d_ = _mm256_set1_ps(half_fast(b));                                                   \
        if ((type) == GGML_TYPE_Q8_0) {                                                             \
            q[0] = i8_to_ps(_mm_loadl_epi64((const __m128i*)((b) + 2)));                            \
            q[1] = i8_to_ps(_mm_loadl_epi64((const __m128i*)((b) + 10)));                           \
            q[2] = i8_to_ps(_mm_loadl_epi64((const __m128i*)((b) + 18)));                           \
            q[3] = i8_to_ps(_mm_loadl_epi64((const __m128i*)((b) + 26)));                           \
        } else {                                                                                    \
            const __m128i lo_mask_ = _mm_set1_epi8(0x0f);                                           \
            __m128i qs_ = _mm_loadu_si128((const __m128i*)((b) + ((type) == GGML_TYPE_Q4_1 ? 4 : 2))); \
            __m128i lo_ = _mm_and_si128(qs_, lo_mask_);                                             \
            __m128i hi_ = _mm_and_si128(_mm_srli_epi16(qs_, 4), lo_mask_);                          \
            if ((type) == GGML_TYPE_Q4_0) { /* nibble - 8 in [-8, 7]: signed bytes */               \
                lo_ = _mm_sub_epi8(lo_, _mm_set1_epi8(8));                                          \
                hi_ = _mm_sub_epi8(hi_, _mm_set1_epi8(8));                                          \
                q[0] = i8_to_ps(lo_);                                                               \
                q[1] = i8_to_ps(_mm_srli_si128(lo_, 8));                                            \
                q[2] = i8_to_ps(hi_);                                                               \
                q[3] = i8_to_ps(_mm_srli_si128(hi_, 8));                                            \
            } else {                                                                                \
                q[0] = u8_to_ps(lo_);                                                               \
                q[1] = u8_to_ps(_mm_srli_si128(lo_, 8));                                            \
                q[2] = u8_to_ps(hi_);                                                               \
                q[3] = u8_to_ps(_mm_srli_si128(hi_, 8));                                            \
            }                                                                                       \
        }                                                                                           \
        q[0] = _mm256_mul_ps(q[0], d_);                                                             \
        q[1] = _mm256_mul_ps(q[1], d_);                                                             \
        q[2] = _mm256_mul_ps(q[2], d_);                                                             \
        q[3] = _mm256_mul_ps(q[3], d_);                                                             \
        if ((type) == GGML_TYPE_Q4_1) {                                                             \
            __m256 m_ = _mm256_set1_ps(half_fast((b) + 2));                                         \
            q[0] = _mm256_add_ps(q[0], m_);                                                         \
            q[1] = _mm256_add_ps(q[1], m_);                                                         \
            q[2] = _mm256_add_ps(q[2], m_);                                                         \
            q[3] = _mm256_add_ps(q[3], m_);                                                         \
        }                                                                                           \
    } while (0)

// sum_j w_j x_j over one row of nb blocks: one fused multiply-add chain per quarter of the
// block (lanes = the 32 running sums of f32_matrix.h), then its reduction tree
static inline __attribute__((always_inline)) float row_dot_avx2(int type, const uint8_t* b, const float* x, int nb) {
    const int bsize = type == GGML_TYPE_Q4_1 ? 20 : type == GGML_TYPE_Q4_0 ? 18 : 34;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int k = 0; k < nb; k++, x += 32, b += bsize) {
        __m256 q[4];
        BLOCK_DEQUANT_AVX2(type, b, q);
        a0 = _mm256_fmadd_ps(q[0], _mm256_loadu_ps(x), a0);
        a1 = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(x + 8), a1);
        a2 = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(x + 16), a2);
        a3 = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(x + 24), a3);
    }
    __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// rows [r0, r1) of W dequantized into w: (r1 - r0, cols)
static inline __attribute__((always_inline)) void dequant_rows_avx2(int type, const QuantMatrix* W, int r0, int r1,
                                                                    float* w) {
    const int bsize = type == GGML_TYPE_Q4_1 ? 20 : type == GGML_TYPE_Q4_0 ? 18 : 34;
    int nb = W->cols / 32;
    for (int r = r0; r < r1; r++) {
        const uint8_t* b = (const uint8_t*)W->blocks + (size_t)r * W->row_bytes;
        for (int k = 0; k < nb; k++, b += bsize, w += 32) {
            __m256 q[4];
            BLOCK_DEQUANT_AVX2(type, b, q);
            _mm256_store_ps(w, q[0]);
            _mm256_store_ps(w + 8, q[1]);
            _mm256_store_ps(w + 16, q[2]);
            _mm256_store_ps(w + 24, q[3]);
        }
    }
}

static void dequant_rows(const QuantMatrix* W, int r0, int r1, float* w) {
    if (W->type == GGML_TYPE_Q4_1) dequant_rows_avx2(GGML_TYPE_Q4_1, W, r0, r1, w);
    else if (W->type == GGML_TYPE_Q4_0) dequant_rows_avx2(GGML_TYPE_Q4_0, W, r0, r1, w);
    else dequant_rows_avx2(GGML_TYPE_Q8_0, W, r0, r1, w);
}
#endif

// y[r - r0] = dequant(W)[r] . x on this thread
void quant_matvec_rows(float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
#ifdef QM_AVX2
    int nb = W->cols / 32;
    const uint8_t* b = (const uint8_t*)W->blocks + (size_t)r0 * W->row_bytes;
    // one loop per type, so each is compiled with its format fixed
    if (W->type == GGML_TYPE_Q4_1)
        for (int r = r0; r < r1; r++, b += W->row_bytes) y[r - r0] = row_dot_avx2(GGML_TYPE_Q4_1, b, x, nb);
    else if (W->type == GGML_TYPE_Q4_0)
        for (int r = r0; r < r1; r++, b += W->row_bytes) y[r - r0] = row_dot_avx2(GGML_TYPE_Q4_0, b, x, nb);
    else
        for (int r = r0; r < r1; r++, b += W->row_bytes) y[r - r0] = row_dot_avx2(GGML_TYPE_Q8_0, b, x, nb);
#else
    quant_matvec_rows_scalar(y, x, W, r0, r1);
#endif
}

// y[b * ldy + r - r0] = dequant(W)[r] . x[b] on this thread: QM_TILE_ROWS rows at a time
// are dequantized once into a float buffer, then multiplied with all n inputs by
// f32_matmat_rows (same w, same order as quant_matvec_rows)
void quant_matmat_rows(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0, int r1) {
#ifdef QM_AVX2
    float* w = n > 1 ? aligned_alloc(32, (size_t)QM_TILE_ROWS * W->cols * sizeof(float)) : NULL;
    if (!w) { // one input (or no memory): the one-token kernel per input gives the same bits
        for (int b = 0; b < n; b++) quant_matvec_rows(y + (size_t)b * ldy, x + (size_t)b * ldx, W, r0, r1);
        return;
    }
    for (int t0 = r0; t0 < r1; t0 += QM_TILE_ROWS) {
        int t1 = t0 + QM_TILE_ROWS < r1 ? t0 + QM_TILE_ROWS : r1;
        dequant_rows(W, t0, t1, w);
        f32_matmat_rows(y + (t0 - r0), ldy, x, ldx, n, w, W->cols, 0, t1 - t0);
    }
    free(w);
#else
    quant_matmat_rows_scalar(y, ldy, x, ldx, n, W, r0, r1);
#endif
}

// ---------------------------------------------------------------------------
// threaded: output rows split over the OpenMP threads in slices of 16 (a row's bits do
// not depend on the split)

void quant_matmat(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W) {
    long work = (long)n * W->rows * W->cols;
    #pragma omp parallel if (work >= QMATVEC_PARALLEL_MIN)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int per = ((W->rows + nt - 1) / nt + 15) / 16 * 16;
        int r0 = t * per, r1 = r0 + per < W->rows ? r0 + per : W->rows;
        if (r0 < r1) quant_matmat_rows(y + r0, ldy, x, ldx, n, W, r0, r1);
    }
}

void quant_matvec(float* y, const float* x, const QuantMatrix* W) { quant_matmat(y, W->rows, x, W->cols, 1, W); }
