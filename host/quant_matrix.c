/*
 * quant_matrix.c — one-token matrix-vector product over block-quantized weights (see
 * quant_matrix.h). Formats (dequant.c): 32 elements per block, element j < 16 from the
 * low nibble of qs[j], element j + 16 from its high nibble (Q8_0: qs[j] itself).
 *   Q4_0  f16 d; u8 qs[16]      w = (nibble - 8) * d
 *   Q4_1  f16 d, m; u8 qs[16]   w = nibble * d + m
 *   Q8_0  f16 d; i8 qs[32]      w = q * d
 * Each w is rounded exactly as dequant.c rounds it (a product, then a sum: no fused
 * multiply-add inside w); only the accumulation of w * x differs from the float32 path
 * (order, and fused multiply-adds).
 *
 * Memory traffic: a rows x cols product reads rows * cols / 32 blocks (Q4_1: 20 bytes,
 * Q4_0: 18, Q8_0: 34 per 32 weights) once, plus x (cols floats, cache-resident); float32
 * would read 128 bytes per 32 weights.
 */
#include "quant_matrix.h"

#include <omp.h>
#include <string.h>

#include "dequant.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QM_AVX2 1
#endif

// Below this many multiply-adds a product runs on one thread (as matmul in cpu_ops.c).
#define QMATVEC_PARALLEL_MIN (1 << 16)

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

// sum_j w_j x_j over one row of nb blocks, w as dequant.c computes it
static float row_dot_scalar(int type, const uint8_t* b, const float* x, int nb) {
    float acc = 0.0f;
    for (int k = 0; k < nb; k++, x += 32) {
        if (type == GGML_TYPE_Q4_1) {
            float d = half_at(b), m = half_at(b + 2);
            const uint8_t* qs = b + 4;
            for (int j = 0; j < 16; j++) {
                float w0 = (qs[j] & 0xf) * d + m, w1 = (qs[j] >> 4) * d + m;
                acc += w0 * x[j];
                acc += w1 * x[j + 16];
            }
            b += 20;
        } else if (type == GGML_TYPE_Q4_0) {
            float d = half_at(b);
            const uint8_t* qs = b + 2;
            for (int j = 0; j < 16; j++) {
                float w0 = ((qs[j] & 0xf) - 8) * d, w1 = ((qs[j] >> 4) - 8) * d;
                acc += w0 * x[j];
                acc += w1 * x[j + 16];
            }
            b += 18;
        } else { // Q8_0
            float d = half_at(b);
            const int8_t* qs = (const int8_t*)(b + 2);
            for (int j = 0; j < 32; j++) {
                float w = qs[j] * d;
                acc += w * x[j];
            }
            b += 34;
        }
    }
    return acc;
}

// y[r - r0] = dequant(W)[r] . x, plain C
void quant_matvec_rows_scalar(float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
    int nb = W->cols / 32;
    for (int r = r0; r < r1; r++)
        y[r - r0] = row_dot_scalar(W->type, (const uint8_t*)W->blocks + (size_t)r * W->row_bytes, x, nb);
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

// sum_j w_j x_j over one row of nb blocks; w = q * d (+ m) with separate multiply and add
static inline __attribute__((always_inline)) float row_dot_avx2(int type, const uint8_t* b, const float* x, int nb) {
    // four accumulators: one fused multiply-add chain per quarter of the block
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    const __m128i lo_mask = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    for (int k = 0; k < nb; k++, x += 32) {
        __m256 q0, q1, q2, q3; // elements 0-7, 8-15, 16-23, 24-31 as floats
        __m256 d, m = _mm256_setzero_ps();
        if (type == GGML_TYPE_Q8_0) {
            d = _mm256_set1_ps(half_fast(b));
            const uint8_t* qs = b + 2;
            q0 = i8_to_ps(_mm_loadl_epi64((const __m128i*)qs));
            q1 = i8_to_ps(_mm_loadl_epi64((const __m128i*)(qs + 8)));
            q2 = i8_to_ps(_mm_loadl_epi64((const __m128i*)(qs + 16)));
            q3 = i8_to_ps(_mm_loadl_epi64((const __m128i*)(qs + 24)));
            b += 34;
        } else {
            int off = type == GGML_TYPE_Q4_1 ? 4 : 2;
            d = _mm256_set1_ps(half_fast(b));
            if (type == GGML_TYPE_Q4_1) m = _mm256_set1_ps(half_fast(b + 2));
            __m128i qs = _mm_loadu_si128((const __m128i*)(b + off));
            __m128i lo = _mm_and_si128(qs, lo_mask);
            __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), lo_mask);
            if (type == GGML_TYPE_Q4_0) { // nibble - 8 in [-8, 7]: signed bytes
                lo = _mm_sub_epi8(lo, eight);
                hi = _mm_sub_epi8(hi, eight);
                q0 = i8_to_ps(lo);
                q1 = i8_to_ps(_mm_srli_si128(lo, 8));
                q2 = i8_to_ps(hi);
                q3 = i8_to_ps(_mm_srli_si128(hi, 8));
            } else {
                q0 = u8_to_ps(lo);
                q1 = u8_to_ps(_mm_srli_si128(lo, 8));
                q2 = u8_to_ps(hi);
                q3 = u8_to_ps(_mm_srli_si128(hi, 8));
            }
            b += type == GGML_TYPE_Q4_1 ? 20 : 18;
        }
        q0 = _mm256_mul_ps(q0, d);
        q1 = _mm256_mul_ps(q1, d);
        q2 = _mm256_mul_ps(q2, d);
        q3 = _mm256_mul_ps(q3, d);
        if (type == GGML_TYPE_Q4_1) {
            q0 = _mm256_add_ps(q0, m);
            q1 = _mm256_add_ps(q1, m);
            q2 = _mm256_add_ps(q2, m);
            q3 = _mm256_add_ps(q3, m);
        }
        a0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(x), a0);
        a1 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(x + 8), a1);
        a2 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(x + 16), a2);
        a3 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(x + 24), a3);
    }
    __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
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

// y = dequant(W) x, output rows split over the OpenMP threads in slices of 16
void quant_matvec(float* y, const float* x, const QuantMatrix* W) {
    long work = (long)W->rows * W->cols;
    #pragma omp parallel if (work >= QMATVEC_PARALLEL_MIN)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int per = ((W->rows + nt - 1) / nt + 15) / 16 * 16;
        int r0 = t * per, r1 = r0 + per < W->rows ? r0 + per : W->rows;
        if (r0 < r1) quant_matvec_rows(y + r0, x, W, r0, r1);
    }
}
