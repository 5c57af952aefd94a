/*
 * quant_matrix.c — decode products over block-quantized weights (see quant_matrix.h):
 * one token (quant_matvec) and a batch of n tokens (quant_matmat) whose rows equal the
 * one-token product bit for bit. Formats (dequant.c has the full layouts):
 *   Q4_0  f16 d; u8 qs[16]                 w = (nibble - 8) * d
 *   Q4_1  f16 d, m; u8 qs[16]              w = nibble * d + m
 *   Q5_0  f16 d; u8 qh[4]; u8 qs[16]       w = ((nibble | bit5 << 4) - 16) * d
 *   Q8_0  f16 d; i8 qs[32]                 w = q * d
 * (32 elements per block: element j < 16 from the low nibble of qs[j], element j + 16
 * from its high nibble, Q8_0: qs[j] itself; Q5_0's fifth bit of element j is bit j of qh)
 *   Q4_K  f16 d, dmin; u8 scales[12]; u8 qs[128]             w = (d * sc) * q - dmin * m
 *   Q5_K  f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]  the same with 5-bit q
 *   Q6_K  u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d         w = (d * sc) * (q - 32)
 * (256 elements per super-block; Q4_K/Q5_K: 8 sub-blocks of 32, each one 32-element
 * chunk of the row with its own 6-bit scale sc and min m; Q6_K: 16 sub-blocks of 16, so a
 * 32-element chunk has two scales.)
 * Each w is rounded exactly as dequant.c rounds it (each product and the difference
 * rounded on its own: no fused multiply-add inside w; d * sc is formed once per sub-block,
 * as dequant.c's left-to-right d * sc * q forms it first), then w . x is accumulated in
 * f32_matrix.h's fixed order (32 running sums, one per position modulo 32 along the row,
 * advanced by fused multiply-adds, then a fixed reduction tree). A 256-element
 * super-block is just 8 consecutive 32-element chunks of that order. Every path here —
 * AVX2 one-token (w kept in registers), AVX2 batched (w dequantized once into a small
 * float buffer, then f32_matmat_rows against all n inputs), and the plain C twins —
 * computes the same w and the same order, so all give identical bits; only the
 * summation order differs from the float32 sgemm path.
 *
 * Memory traffic: a rows x cols product reads its blocks once per call, whatever n
 * (bytes per weight: Q8_0 1.06, Q6_K 0.82, Q5_0 0.69, Q5_K 0.69, Q4_1 0.625, Q4_0 0.56,
 * Q4_K 0.56), plus x (n * cols floats, cache-resident); float32 would read 4.
 *
 * K-quants with act_q8 (the loader's default, quant_matrix.h) take the other arithmetic
 * of the "8-bit activations" sections below: x rounded to QuantAct blocks once per call
 * (1.14 bytes per input value), exact integer sums, a fixed float formula per lane. Napkin
 * math on AVX2: 32 weight-input products cost one vpmaddubsw, one vpmaddwd and one add
 * (plus the unpacking of the codes, shared by four inputs in the batched product), against
 * four FMAs and the float dequantization on the float32 path; one thread reaches ~15 G
 * weights/s for one token and ~25 G for a batch (benchmarks/cpu_kquant.c), still
 * compute-bound on two cores (~0.56 bytes per weight at 15 G/s is 8.4 GB/s per core).
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
    switch (type) {
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: return 1;
    default: return 0;
    }
}

int quant_matrix_q8_capable(int type) {
    return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K;
}

int quant_matrix_act_q8_default(int type) {
    const char* e = getenv("ETX_EXACT_PRODUCTS");
    if (e && *e && strcmp(e, "0") != 0) return 0;
    return quant_matrix_q8_capable(type);
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (scales: its 12
// bytes). Sub-blocks 0..3: low 6 bits of bytes j (scale) and j + 4 (min); 4..7: a nibble
// of byte j + 4 below the top 2 bits of byte j - 4 (scale) and of byte j (min).
static inline void k_scale_min(const uint8_t* scales, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

static float half_at(const uint8_t* p) { return fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8))); }

// a little-endian 32-bit field read with memcpy, to host order
static uint32_t le32(uint32_t v) {
    const uint8_t* p = (const uint8_t*)&v;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// ---------------------------------------------------------------------------
// plain C

// Q4_K (qh NULL) and Q5_K: the 256 weights of super-block b, w = (d * sc) * q - dmin * m
static void block_dequant_k45_scalar(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* w) {
    float d = half_at(b), dmin = half_at(b + 2);
    for (int j = 0; j < 8; j++) { // sub-block j: chunk j of 32, nibble j % 2 of qs[32 * (j / 2) ..]
        int sc, m;
        k_scale_min(b + 4, j, &sc, &m);
        float ds = d * (float)sc, dm = dmin * (float)m;
        const uint8_t* q = qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++) {
            int v = j % 2 ? q[l] >> 4 : q[l] & 0xf;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            float p = ds * (float)v; // separate statements: no fused multiply-add
            w[32 * j + l] = p - dm;
        }
    }
}

// Q6_K: the 256 weights of super-block b, w = (d * sc) * (q - 32); two halves of 128,
// quarter k (32 weights) of a half from ql[32 * (k % 2) + l] (nibble k / 2) and bits
// 2k, 2k + 1 of qh[l], sub-block scales 2k (l < 16) and 2k + 1
static void block_dequant_q6_k_scalar(const uint8_t* b, float* w) {
    float d = half_at(b + 208);
    for (int h = 0; h < 2; h++) {
        const uint8_t* ql = b + 64 * h;
        const uint8_t* qh = b + 128 + 32 * h;
        const int8_t* sc = (const int8_t*)(b + 192 + 8 * h);
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int lo = ql[32 * (k % 2) + l];
                int q = ((k < 2 ? lo & 0xf : lo >> 4) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                float ds = d * (float)sc[2 * k + l / 16];
                w[128 * h + 32 * k + l] = ds * (float)q;
            }
    }
}

// the block_elems weights of one block, each rounded as dequant.c rounds it
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
    } else if (type == GGML_TYPE_Q4_1) { // separate statements, so no compiler may fuse the product and the sum
        float m = half_at(b + 2);
        const uint8_t* qs = b + 4;
        for (int j = 0; j < 16; j++) {
            float p0 = (float)(qs[j] & 0xf) * d, p1 = (float)(qs[j] >> 4) * d;
            w[j] = p0 + m;
            w[j + 16] = p1 + m;
        }
    } else if (type == GGML_TYPE_Q5_0) {
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        qh = le32(qh);
        const uint8_t* qs = b + 6;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4), hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            w[j] = (float)(lo - 16) * d;
            w[j + 16] = (float)(hi - 16) * d;
        }
    } else if (type == GGML_TYPE_Q4_K) {
        block_dequant_k45_scalar(b, NULL, b + 16, w);
    } else if (type == GGML_TYPE_Q5_K) {
        block_dequant_k45_scalar(b, b + 16, b + 48, w);
    } else { // Q6_K
        block_dequant_q6_k_scalar(b, w);
    }
}

// sum_j w_j x_j over one row of nb blocks, in f32_matrix.h's order
static float row_dot_scalar(int type, const uint8_t* b, const float* x, int nb) {
    const GGMLTypeInfo* ti = ggml_type_info((uint32_t)type);
    const int be = ti->block_elems, bb = ti->block_bytes;
    float s[32] = {0}, w[256];
    for (int k = 0; k < nb; k++, x += be, b += bb) {
        block_dequant_scalar(type, b, w);
        for (int c = 0; c < be; c += 32)
            for (int l = 0; l < 32; l++) s[l] = fmaf(w[c + l], x[c + l], s[l]);
    }
    return f32_reduce32(s);
}

// y[r - r0] = dequant(W)[r] . x, plain C, float32 x
static void matvec_rows_exact_scalar(float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
    int nb = W->cols / ggml_type_info((uint32_t)W->type)->block_elems;
    for (int r = r0; r < r1; r++)
        y[r - r0] = row_dot_scalar(W->type, (const uint8_t*)W->blocks + (size_t)r * W->row_bytes, x, nb);
}

// y[b * ldy + r - r0] = dequant(W)[r] . x[b], plain C, float32 x
static void matmat_rows_exact_scalar(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0,
                                     int r1) {
    for (int b = 0; b < n; b++) matvec_rows_exact_scalar(y + (size_t)b * ldy, x + (size_t)b * ldx, W, r0, r1);
}

// ---------------------------------------------------------------------------
// 8-bit activations (act_q8): plain C. The integer sums are split into 8 lanes, lane j
// holding the elements 4j..4j+3 of every 32-element chunk of a super-block (the int32
// lanes of the AVX2 code's vpmaddwd, so both compute the same sums):
//   s1[j] = sum over the lane's elements of scale * code * q  (scale: Q4_K/Q5_K the
//           sub-block's 6-bit sc, Q6_K the 16-element group's 8-bit sc; code: 0..31 or
//           0..63, Q6_K's code is its q6 + 32)
//   s2[j] = mins[2j] bsums[2j] + mins[2j+1] bsums[2j+1]  (mins per 16-element group g:
//           Q4_K/Q5_K m of sub-block g / 2, Q6_K 32 sc_g, its -32 offset)
// then per lane four float32 operations in this order:
//   Q4_K / Q5_K: v = (d * (float)s1[j]) - (dmin * (float)s2[j]);  acc[j] += d_a * v
//   Q6_K:        v = d * (float)(s1[j] - s2[j]);                  acc[j] += d_a * v
// over a row's blocks left to right, and the row's value is the 8 lanes added in a fixed
// tree ((0+4) + (2+6)) + ((1+5) + (3+7)). The sums are exact (|s1[j]| < 2^26), so only
// the float32 operations round, the same way in every path.

void quant_act_row(const float* x, int cols, QuantAct* a) {
    for (int k = 0; k < cols / QACT_BLOCK; k++, x += QACT_BLOCK, a++) {
        float amax = 0.0f;
        int finite = 1;
        for (int i = 0; i < QACT_BLOCK; i++) {
            float v = fabsf(x[i]);
            if (!(v <= 3.4028235e38f)) finite = 0; // NaN or inf
            else if (v > amax) amax = v;
        }
        memset(a->bsums, 0, sizeof a->bsums);
        if (!finite || amax == 0.0f) { // all zero codes; a NaN scale makes every product NaN
            a->d = finite ? 0.0f : NAN;
            memset(a->q, 0, sizeof a->q);
            continue;
        }
        float id = 127.0f / amax;
        a->d = amax / 127.0f;
        for (int i = 0; i < QACT_BLOCK; i++) {
            float r = nearbyintf(x[i] * id);
            int q = r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
            a->q[i] = (int8_t)q;
            a->bsums[i / 16] = (int16_t)(a->bsums[i / 16] + q);
        }
    }
}

// the codes of one Q4_K / Q5_K (qh non-NULL) super-block, element order, in 0..31
static void codes_k45(const uint8_t* qh, const uint8_t* qs, uint8_t* c) {
    for (int j = 0; j < 8; j++) {
        const uint8_t* q = qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++) {
            int v = j % 2 ? q[l] >> 4 : q[l] & 0xf;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            c[32 * j + l] = (uint8_t)v;
        }
    }
}

// the int16 scale of each element's group and the mins of the 16 groups of one Q4_K /
// Q5_K / Q6_K super-block, as the formulas above take them
static void block_scales(int type, const uint8_t* b, int16_t* scale, int16_t* mins) {
    for (int g = 0; g < 16; g++) {
        int sc, m;
        if (type == GGML_TYPE_Q6_K) sc = (int8_t)b[192 + g], m = 32 * sc;
        else k_scale_min(b + 4, g / 2, &sc, &m);
        for (int l = 0; l < 16; l++) scale[16 * g + l] = (int16_t)sc;
        mins[g] = (int16_t)m;
    }
}

// one super-block of W against one QuantAct block, added to the 8 lane sums acc (plain C)
static void block_lanes_q8_scalar(int type, const uint8_t* b, const QuantAct* a, float* acc) {
    uint8_t c[256];
    int16_t scale[256], mins[16];
    if (type == GGML_TYPE_Q6_K) {
        for (int h = 0; h < 2; h++) {
            const uint8_t* ql = b + 64 * h;
            const uint8_t* qh = b + 128 + 32 * h;
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++) {
                    int lo = ql[32 * (k % 2) + l];
                    c[128 * h + 32 * k + l] = (uint8_t)((k < 2 ? lo & 0xf : lo >> 4) | (((qh[l] >> (2 * k)) & 3) << 4));
                }
        }
    } else {
        codes_k45(type == GGML_TYPE_Q5_K ? b + 16 : NULL, b + (type == GGML_TYPE_Q5_K ? 48 : 16), c);
    }
    block_scales(type, b, scale, mins);
    const float d = type == GGML_TYPE_Q6_K ? half_at(b + 208) : half_at(b), dmin = half_at(b + 2);
    for (int j = 0; j < 8; j++) {
        int32_t s1 = 0;
        for (int ch = 0; ch < 8; ch++)
            for (int e = 4 * j; e < 4 * j + 4; e++) {
                int i = 32 * ch + e;
                s1 += (int32_t)scale[i] * ((int32_t)c[i] * a->q[i]);
            }
        int32_t s2 = (int32_t)mins[2 * j] * a->bsums[2 * j] + (int32_t)mins[2 * j + 1] * a->bsums[2 * j + 1];
        float v;
        if (type == GGML_TYPE_Q6_K) {
            v = d * (float)(s1 - s2);
        } else {
            float p1 = d * (float)s1, p2 = dmin * (float)s2;
            v = p1 - p2;
        }
        float t = a->d * v;
        acc[j] += t;
    }
}

// the fixed reduction of the 8 lanes (the AVX2 code's horizontal sum)
static float reduce8_scalar(const float* a) {
    float b0 = a[0] + a[4], b1 = a[1] + a[5], b2 = a[2] + a[6], b3 = a[3] + a[7];
    float c0 = b0 + b2, c1 = b1 + b3;
    return c0 + c1;
}

// rows r0 <= r < r1 of W against n quantized inputs (act: n rows of nb blocks), plain C
static void matmat_rows_q8_scalar(float* y, int ldy, const QuantAct* act, int n, const QuantMatrix* W, int r0,
                                  int r1) {
    const int nb = W->cols / QACT_BLOCK, bb = ggml_type_info((uint32_t)W->type)->block_bytes;
    for (int r = r0; r < r1; r++) {
        const uint8_t* row = (const uint8_t*)W->blocks + (size_t)r * W->row_bytes;
        for (int b = 0; b < n; b++) {
            const QuantAct* a = act + (size_t)b * nb;
            float acc[8] = {0};
            for (int k = 0; k < nb; k++) block_lanes_q8_scalar(W->type, row + (size_t)k * bb, a + k, acc);
            y[(size_t)b * ldy + r - r0] = reduce8_scalar(acc);
        }
    }
}

// n inputs (x: (n, ldx)) quantized into a new array of n * cols / 256 blocks; NULL when out of memory
static QuantAct* quantize_inputs(const float* x, int ldx, int n, int cols) {
    QuantAct* act = malloc((size_t)n * (cols / QACT_BLOCK) * sizeof(QuantAct));
    if (act)
        for (int b = 0; b < n; b++) quant_act_row(x + (size_t)b * ldx, cols, act + (size_t)b * (cols / QACT_BLOCK));
    return act;
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
            _mm256_storeu_ps(w, q[0]);
            _mm256_storeu_ps(w + 8, q[1]);
            _mm256_storeu_ps(w + 16, q[2]);
            _mm256_storeu_ps(w + 24, q[3]);
        }
    }
}

// --- Q5_0 and the K-quants: each block is handed out as 32-element chunks of 4 x 8
// floats; emit() either multiplies a chunk into the 4 running-sum vectors (store 0, the
// one-token product) or stores it (store 1, the batched product's weight tile).

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE void emit(const int store, __m256 w0, __m256 w1, __m256 w2, __m256 w3, const float* x,
                               __m256* acc, float* out) {
    if (store) {
        _mm256_storeu_ps(out, w0);
        _mm256_storeu_ps(out + 8, w1);
        _mm256_storeu_ps(out + 16, w2);
        _mm256_storeu_ps(out + 24, w3);
    } else {
        acc[0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc[0]);
        acc[1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc[1]);
        acc[2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x + 16), acc[2]);
        acc[3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x + 24), acc[3]);
    }
}

// 32 bytes (unsigned: u 1, signed: u 0) widened to 4 x 8 floats, in order
static ALWAYS_INLINE void bytes_to_ps(const int u, __m256i v, __m256* f) {
    __m128i a = _mm256_castsi256_si128(v), b = _mm256_extracti128_si256(v, 1);
    if (u) {
        f[0] = u8_to_ps(a);
        f[1] = u8_to_ps(_mm_srli_si128(a, 8));
        f[2] = u8_to_ps(b);
        f[3] = u8_to_ps(_mm_srli_si128(b, 8));
    } else {
        f[0] = i8_to_ps(a);
        f[1] = i8_to_ps(_mm_srli_si128(a, 8));
        f[2] = i8_to_ps(b);
        f[3] = i8_to_ps(_mm_srli_si128(b, 8));
    }
}

// Q5_0 block (32 weights): w = (q - 16) * d
static ALWAYS_INLINE void block_q5_0(const int store, const uint8_t* b, const float* x, __m256* acc, float* out) {
    const __m256i lo_mask = _mm256_set1_epi8(0x0f);
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    __m128i qs = _mm_loadu_si128((const __m128i*)(b + 6));
    // elements 0..15: low nibbles, 16..31: high nibbles
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), lo_mask);
    // fifth bits: byte j of the vector gets byte j / 8 of qh, tested against bit j % 8
    const __m256i pick = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i hb = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), pick), bit);
    hb = _mm256_and_si256(_mm256_cmpeq_epi8(hb, bit), _mm256_set1_epi8(0x10));
    q = _mm256_sub_epi8(_mm256_or_si256(q, hb), _mm256_set1_epi8(16)); // in [-16, 15]
    __m256 f[4];
    bytes_to_ps(0, q, f);
    __m256 d = _mm256_set1_ps(half_fast(b));
    emit(store, _mm256_mul_ps(f[0], d), _mm256_mul_ps(f[1], d), _mm256_mul_ps(f[2], d), _mm256_mul_ps(f[3], d), x,
         acc, out);
}

// chunk c (0..3) of a Q4_K (five 0) / Q5_K super-block's codes as bytes: *lo the 32 codes
// of sub-block 2c, *hi of 2c + 1; Q5_K's fifth bits come from *qh (its 32 qh bytes,
// shifted on by 2 for the next chunk)
static ALWAYS_INLINE void k45_codes(const int five, const uint8_t* qs, int c, __m256i* qh, __m256i* lo, __m256i* hi) {
    const __m256i lo_mask = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m256i v = _mm256_loadu_si256((const __m256i*)(qs + 32 * c));
    *lo = _mm256_and_si256(v, lo_mask);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo_mask);
    if (five) {
        *lo = _mm256_or_si256(*lo, _mm256_slli_epi16(_mm256_and_si256(*qh, one), 4));
        *hi = _mm256_or_si256(*hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(*qh, 1), one), 4));
        *qh = _mm256_srli_epi16(*qh, 2);
    }
}

// quarter k (0..3) of one half of a Q6_K super-block: its 32 codes q6 + 32 in 0..63 as
// bytes, from the half's ql bytes (qla: 0..31, qlb: 32..63) and *qh (its 32 qh bytes,
// shifted on by 2 for the next quarter)
static ALWAYS_INLINE __m256i q6_codes(__m256i qla, __m256i qlb, __m256i* qh, int k) {
    const __m256i lo_mask = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3);
    __m256i ql = k % 2 ? qlb : qla;
    __m256i lo = k < 2 ? _mm256_and_si256(ql, lo_mask) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), lo_mask);
    __m256i u = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(*qh, three), 4));
    *qh = _mm256_srli_epi16(*qh, 2);
    return u;
}

// 32 unsigned codes of one Q4_K/Q5_K sub-block: w = ds * q - dm
static ALWAYS_INLINE void chunk_k45(const int store, __m256i q, float ds, float dm, const float* x, __m256* acc,
                                    float* out) {
    __m256 f[4];
    bytes_to_ps(1, q, f);
    __m256 vds = _mm256_set1_ps(ds), vdm = _mm256_set1_ps(dm);
    emit(store, _mm256_sub_ps(_mm256_mul_ps(f[0], vds), vdm), _mm256_sub_ps(_mm256_mul_ps(f[1], vds), vdm),
         _mm256_sub_ps(_mm256_mul_ps(f[2], vds), vdm), _mm256_sub_ps(_mm256_mul_ps(f[3], vds), vdm), x, acc, out);
}

// Q4_K (five 0) or Q5_K (five 1) super-block (256 weights)
static ALWAYS_INLINE void block_k45(const int store, const int five, const uint8_t* b, const float* x, __m256* acc,
                                    float* out) {
    float d = half_fast(b), dmin = half_fast(b + 2);
    const uint8_t* qs = b + (five ? 48 : 16);
    __m256i qh = five ? _mm256_loadu_si256((const __m256i*)(b + 16)) : _mm256_setzero_si256();
    float ds[8], dm[8]; // d * sc and dmin * m of the 8 sub-blocks, rounded as dequant.c rounds them
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k_scale_min(b + 4, j, &sc, &m);
        ds[j] = d * (float)sc;
        dm[j] = dmin * (float)m;
    }
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        k45_codes(five, qs, c, &qh, &lo, &hi);
        chunk_k45(store, lo, ds[2 * c], dm[2 * c], x + 64 * c, acc, out + 64 * c);
        chunk_k45(store, hi, ds[2 * c + 1], dm[2 * c + 1], x + 64 * c + 32, acc, out + 64 * c + 32);
    }
}

// Q6_K super-block (256 weights): w = (d * sc) * (q - 32)
static ALWAYS_INLINE void block_q6_k(const int store, const uint8_t* b, const float* x, __m256* acc, float* out) {
    const __m256i c32 = _mm256_set1_epi8(32);
    float d = half_fast(b + 208);
    for (int h = 0; h < 2; h++) {
        const int8_t* sc = (const int8_t*)(b + 192 + 8 * h);
        __m256i qla = _mm256_loadu_si256((const __m256i*)(b + 64 * h));
        __m256i qlb = _mm256_loadu_si256((const __m256i*)(b + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i*)(b + 128 + 32 * h));
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_sub_epi8(q6_codes(qla, qlb, &qh, k), c32); // in [-32, 31]
            __m256 f[4];
            bytes_to_ps(0, q, f);
            __m256 da = _mm256_set1_ps(d * (float)sc[2 * k]), db = _mm256_set1_ps(d * (float)sc[2 * k + 1]);
            int off = 128 * h + 32 * k;
            emit(store, _mm256_mul_ps(f[0], da), _mm256_mul_ps(f[1], da), _mm256_mul_ps(f[2], db),
                 _mm256_mul_ps(f[3], db), x + off, acc, out + off);
        }
    }
}

// one block of any of the four types above
static ALWAYS_INLINE void block_new(const int store, const int type, const uint8_t* b, const float* x, __m256* acc,
                                    float* out) {
    if (type == GGML_TYPE_Q5_0) block_q5_0(store, b, x, acc, out);
    else if (type == GGML_TYPE_Q4_K) block_k45(store, 0, b, x, acc, out);
    else if (type == GGML_TYPE_Q5_K) block_k45(store, 1, b, x, acc, out);
    else block_q6_k(store, b, x, acc, out);
}

// sum_j w_j x_j over one row of nb blocks (Q5_0 and the K-quants), same order as row_dot_avx2
static ALWAYS_INLINE float row_dot_new(const int type, const uint8_t* b, const float* x, int nb) {
    const int be = type == GGML_TYPE_Q5_0 ? 32 : 256;
    const int bb = type == GGML_TYPE_Q5_0 ? 22 : type == GGML_TYPE_Q4_K ? 144 : type == GGML_TYPE_Q5_K ? 176 : 210;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int k = 0; k < nb; k++, x += be, b += bb) block_new(0, type, b, x, acc, NULL);
    __m256 a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// y[r - r0] = dequant(W)[r] . x for one of the four types above
static void matvec_rows_new(const int type, float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
    int nb = W->cols / (type == GGML_TYPE_Q5_0 ? 32 : 256);
    const uint8_t* b = (const uint8_t*)W->blocks + (size_t)r0 * W->row_bytes;
    for (int r = r0; r < r1; r++, b += W->row_bytes) y[r - r0] = row_dot_new(type, b, x, nb);
}

// rows [r0, r1) of W (one of the four types above) dequantized into w: (r1 - r0, cols)
static void dequant_rows_new(const int type, const QuantMatrix* W, int r0, int r1, float* w) {
    const int be = type == GGML_TYPE_Q5_0 ? 32 : 256;
    const int bb = type == GGML_TYPE_Q5_0 ? 22 : type == GGML_TYPE_Q4_K ? 144 : type == GGML_TYPE_Q5_K ? 176 : 210;
    int nb = W->cols / be;
    for (int r = r0; r < r1; r++) {
        const uint8_t* b = (const uint8_t*)W->blocks + (size_t)r * W->row_bytes;
        for (int k = 0; k < nb; k++, b += bb, w += be) block_new(1, type, b, NULL, NULL, w);
    }
}

static void dequant_rows(const QuantMatrix* W, int r0, int r1, float* w) {
    switch (W->type) {
    case GGML_TYPE_Q4_1: dequant_rows_avx2(GGML_TYPE_Q4_1, W, r0, r1, w); break;
    case GGML_TYPE_Q4_0: dequant_rows_avx2(GGML_TYPE_Q4_0, W, r0, r1, w); break;
    case GGML_TYPE_Q8_0: dequant_rows_avx2(GGML_TYPE_Q8_0, W, r0, r1, w); break;
    case GGML_TYPE_Q5_0: dequant_rows_new(GGML_TYPE_Q5_0, W, r0, r1, w); break;
    case GGML_TYPE_Q4_K: dequant_rows_new(GGML_TYPE_Q4_K, W, r0, r1, w); break;
    case GGML_TYPE_Q5_K: dequant_rows_new(GGML_TYPE_Q5_K, W, r0, r1, w); break;
    default: dequant_rows_new(GGML_TYPE_Q6_K, W, r0, r1, w); break;
    }
}
#endif

#ifdef QM_AVX2
// --- 8-bit activations (act_q8): the integer lane sums with vpmaddubsw (unsigned codes x
// signed q, pairs added into int16: at most 2 * 63 * 127 = 16002, never saturating) and
// vpmaddwd (the int16 pair sums times the group's scale, pairs added into int32: int32
// lane j holds bytes 4j..4j+3 of each chunk, as block_lanes_q8_scalar splits them); the
// float formulas are the plain C ones lane by lane, so the bits are the same.

// the 8 scales and 8 mins of a Q4_K / Q5_K super-block (6 bits each, packed in its 12
// bytes at b + 4) as bytes sm[0..7] and sm[8..15]: k_scale_min's values, by word masks
static ALWAYS_INLINE void k45_scales(const uint8_t* b, uint8_t* sm) {
    uint32_t u[4];
    memcpy(u, b + 4, 12);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4); // mins 4..7
    uint32_t mins03 = u[1] & m6;                           // mins 0..3
    u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);        // scales 4..7
    u[2] = mins03;
    u[0] &= m6;                                            // scales 0..3
    memcpy(sm, u, 16);
}

// int16 per 16-element group: m of sub-block g / 2 (bytes m[0..7])
static ALWAYS_INLINE __m256i k45_mins(const uint8_t* m) {
    __m128i m8 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i*)m));
    return _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
}

// int16 per 16-element group: 32 sc_g of a Q6_K super-block
static ALWAYS_INLINE __m256i q6_mins(const uint8_t* b) {
    return _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(b + 192))), 5);
}

// acc += d_a * v lane by lane, v from the lane sums s1, s2 (the plain C formulas)
static ALWAYS_INLINE __m256 lanes_add(const int type, __m256i s1, __m256i s2, float d, float dmin, float ad,
                                      __m256 acc) {
    __m256 v;
    if (type == GGML_TYPE_Q6_K) {
        v = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_sub_epi32(s1, s2)));
    } else {
        __m256 p1 = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s1));
        __m256 p2 = _mm256_mul_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(s2));
        v = _mm256_sub_ps(p1, p2);
    }
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(ad), v));
}

// reduce8_scalar's tree
static ALWAYS_INLINE float reduce8(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Q4_K (five 0) / Q5_K (five 1) super-block b against a, added to the lanes of acc
static ALWAYS_INLINE __m256 block_q8_k45(const int five, const uint8_t* b, const QuantAct* a, __m256 acc) {
    const uint8_t* qs = b + (five ? 48 : 16);
    __m256i qh = five ? _mm256_loadu_si256((const __m256i*)(b + 16)) : _mm256_setzero_si256();
    uint8_t sm[16];
    k45_scales(b, sm);
    __m256i s1 = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        k45_codes(five, qs, c, &qh, &lo, &hi);
        __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i*)(a->q + 64 * c)));
        __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i*)(a->q + 64 * c + 32)));
        plo = _mm256_madd_epi16(plo, _mm256_set1_epi16(sm[2 * c]));
        phi = _mm256_madd_epi16(phi, _mm256_set1_epi16(sm[2 * c + 1]));
        s1 = _mm256_add_epi32(s1, _mm256_add_epi32(plo, phi));
    }
    __m256i s2 = _mm256_madd_epi16(k45_mins(sm + 8), _mm256_loadu_si256((const __m256i*)a->bsums));
    return lanes_add(GGML_TYPE_Q4_K, s1, s2, half_fast(b), half_fast(b + 2), a->d, acc);
}

// Q6_K super-block b against a, added to the lanes of acc
static ALWAYS_INLINE __m256 block_q8_q6_k(const uint8_t* b, const QuantAct* a, __m256 acc) {
    const int8_t* sc = (const int8_t*)(b + 192);
    __m256i s1 = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i qla = _mm256_loadu_si256((const __m256i*)(b + 64 * h));
        __m256i qlb = _mm256_loadu_si256((const __m256i*)(b + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i*)(b + 128 + 32 * h));
        for (int k = 0; k < 4; k++) {
            __m256i u = q6_codes(qla, qlb, &qh, k); // 0..63
            __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i*)(a->q + 128 * h + 32 * k)));
            // elements 0..15 of the chunk (low lane) have scale group 8h + 2k, 16..31 the next
            __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[8 * h + 2 * k + 1]), _mm_set1_epi16(sc[8 * h + 2 * k]));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p, scv));
        }
    }
    __m256i s2 = _mm256_madd_epi16(q6_mins(b), _mm256_loadu_si256((const __m256i*)a->bsums));
    return lanes_add(GGML_TYPE_Q6_K, s1, s2, half_fast(b + 208), 0.0f, a->d, acc);
}

// --- the batched product: each weight row is unpacked once into UnpackedBlocks (codes as
// bytes, the group scales as the int16 vectors vpmaddwd takes), then swept against the
// inputs four at a time, each code chunk loaded once for the four. Same lane sums, same
// float formulas, so row b equals the one-token product of input b bit for bit.
typedef struct {
    uint8_t codes[256] __attribute__((aligned(32))); // element order, 0..31 (Q4_K/Q5_K) or 0..63 (Q6_K)
    __m256i sc[8];  // chunk c (elements 32c..32c+31): the int16 scale of each vpmaddubsw lane's group
    __m256i mins;   // int16 per 16-element group g: Q4_K/Q5_K m_(g/2); Q6_K 32 sc_g (its -32 offset)
    float d, dmin;  // super-block scale and min scale (dmin unused for Q6_K)
} UnpackedBlock;

static ALWAYS_INLINE void unpack_block(const int type, const uint8_t* b, UnpackedBlock* u) {
    if (type == GGML_TYPE_Q6_K) {
        const int8_t* sc = (const int8_t*)(b + 192);
        for (int h = 0; h < 2; h++) {
            __m256i qla = _mm256_loadu_si256((const __m256i*)(b + 64 * h));
            __m256i qlb = _mm256_loadu_si256((const __m256i*)(b + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i*)(b + 128 + 32 * h));
            for (int k = 0; k < 4; k++) {
                _mm256_store_si256((__m256i*)(u->codes + 128 * h + 32 * k), q6_codes(qla, qlb, &qh, k));
                int g = 8 * h + 2 * k;
                u->sc[4 * h + k] = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
            }
        }
        u->mins = q6_mins(b);
        u->d = half_fast(b + 208);
        u->dmin = 0.0f;
        return;
    }
    const int five = type == GGML_TYPE_Q5_K;
    const uint8_t* qs = b + (five ? 48 : 16);
    __m256i qh = five ? _mm256_loadu_si256((const __m256i*)(b + 16)) : _mm256_setzero_si256();
    uint8_t sm[16];
    k45_scales(b, sm);
    for (int j = 0; j < 8; j++) u->sc[j] = _mm256_set1_epi16(sm[j]);
    u->mins = k45_mins(sm + 8);
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        k45_codes(five, qs, c, &qh, &lo, &hi);
        _mm256_store_si256((__m256i*)(u->codes + 64 * c), lo);
        _mm256_store_si256((__m256i*)(u->codes + 64 * c + 32), hi);
    }
    u->d = half_fast(b);
    u->dmin = half_fast(b + 2);
}

// NI (1..4) inputs against one unpacked block, added to their lane sums acc[0..NI)
static ALWAYS_INLINE void block_unpacked(const int type, const int NI, const UnpackedBlock* u,
                                         const QuantAct* const* a, __m256* acc) {
    __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int c = 0; c < 8; c++) {
        __m256i codes = _mm256_load_si256((const __m256i*)(u->codes + 32 * c));
        for (int i = 0; i < NI; i++) {
            __m256i p = _mm256_maddubs_epi16(codes, _mm256_loadu_si256((const __m256i*)(a[i]->q + 32 * c)));
            s[i] = _mm256_add_epi32(s[i], _mm256_madd_epi16(p, u->sc[c]));
        }
    }
    for (int i = 0; i < NI; i++) {
        __m256i s2 = _mm256_madd_epi16(u->mins, _mm256_loadu_si256((const __m256i*)a[i]->bsums));
        acc[i] = lanes_add(type, s[i], s2, u->d, u->dmin, a[i]->d, acc[i]);
    }
}

// rows r0 <= r < r1 of W (type fixed at compile time) against n quantized inputs: one
// input through the one-token kernels, more through the unpacked rows (u: nb blocks)
static ALWAYS_INLINE void matmat_rows_q8_type(const int type, float* y, int ldy, const QuantAct* act, int n,
                                              const QuantMatrix* W, int r0, int r1, UnpackedBlock* u) {
    const int nb = W->cols / QACT_BLOCK, bb = type == GGML_TYPE_Q4_K ? 144 : type == GGML_TYPE_Q5_K ? 176 : 210;
    for (int r = r0; r < r1; r++) {
        const uint8_t* row = (const uint8_t*)W->blocks + (size_t)r * W->row_bytes;
        if (n == 1) {
            __m256 acc = _mm256_setzero_ps();
            for (int k = 0; k < nb; k++) {
                const uint8_t* blk = row + (size_t)k * bb;
                acc = type == GGML_TYPE_Q6_K ? block_q8_q6_k(blk, act + k, acc)
                                             : block_q8_k45(type == GGML_TYPE_Q5_K, blk, act + k, acc);
            }
            y[r - r0] = reduce8(acc);
            continue;
        }
        for (int k = 0; k < nb; k++) unpack_block(type, row + (size_t)k * bb, u + k);
        for (int b0 = 0; b0 < n; b0 += 4) {
            const int ni = n - b0 < 4 ? n - b0 : 4;
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int k = 0; k < nb; k++) {
                const QuantAct* a[4];
                for (int i = 0; i < ni; i++) a[i] = act + (size_t)(b0 + i) * nb + k;
                if (ni == 4) block_unpacked(type, 4, u + k, a, acc);
                else if (ni == 3) block_unpacked(type, 3, u + k, a, acc);
                else if (ni == 2) block_unpacked(type, 2, u + k, a, acc);
                else block_unpacked(type, 1, u + k, a, acc);
            }
            for (int i = 0; i < ni; i++) y[(size_t)(b0 + i) * ldy + r - r0] = reduce8(acc[i]);
        }
    }
}
#endif

// rows r0 <= r < r1 of a q8-capable W against n quantized inputs (act: n * cols / 256
// blocks): AVX2 when compiled for it, otherwise the plain C twin (the same bits)
static void matmat_rows_q8(float* y, int ldy, const QuantAct* act, int n, const QuantMatrix* W, int r0, int r1) {
#ifdef QM_AVX2
    UnpackedBlock* u = n > 1 ? aligned_alloc(32, (size_t)(W->cols / QACT_BLOCK) * sizeof(UnpackedBlock)) : NULL;
    if (n > 1 && !u) { // no memory for the unpacked row: the one-token kernel per input, the same bits
        for (int b = 0; b < n; b++)
            matmat_rows_q8(y + (size_t)b * ldy, ldy, act + (size_t)b * (W->cols / QACT_BLOCK), 1, W, r0, r1);
        return;
    }
    if (W->type == GGML_TYPE_Q4_K) matmat_rows_q8_type(GGML_TYPE_Q4_K, y, ldy, act, n, W, r0, r1, u);
    else if (W->type == GGML_TYPE_Q5_K) matmat_rows_q8_type(GGML_TYPE_Q5_K, y, ldy, act, n, W, r0, r1, u);
    else matmat_rows_q8_type(GGML_TYPE_Q6_K, y, ldy, act, n, W, r0, r1, u);
    free(u);
#else
    matmat_rows_q8_scalar(y, ldy, act, n, W, r0, r1);
#endif
}

static int uses_q8(const QuantMatrix* W) { return W->act_q8 && quant_matrix_q8_capable(W->type); }

static void matvec_rows_exact(float* y, const float* x, const QuantMatrix* W, int r0, int r1);
static void matmat_rows_exact(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0, int r1);

// The public per-thread products: 8-bit activations when W asks for them (the inputs
// quantized here, on this thread), otherwise the float32 ones. Out of memory for the
// quantized inputs: y is NaN (never silently the other arithmetic).

// y rows r0..r1 of n outputs set to NaN (no memory for the quantized inputs)
static void fill_nan(float* y, int ldy, int n, int r0, int r1) {
    for (int b = 0; b < n; b++)
        for (int r = r0; r < r1; r++) y[(size_t)b * ldy + r - r0] = NAN;
}

// the inputs quantized on this thread, then the AVX2 (scalar 0) or plain C (scalar 1) product
static void matmat_rows_q8_of_x(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0,
                                int r1, int scalar) {
    QuantAct* act = quantize_inputs(x, ldx, n, W->cols);
    if (!act) fill_nan(y, ldy, n, r0, r1);
    else if (scalar) matmat_rows_q8_scalar(y, ldy, act, n, W, r0, r1);
    else matmat_rows_q8(y, ldy, act, n, W, r0, r1);
    free(act);
}

void quant_matvec_rows(float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
    quant_matmat_rows(y, 0, x, 0, 1, W, r0, r1);
}

void quant_matmat_rows(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0, int r1) {
    if (uses_q8(W)) matmat_rows_q8_of_x(y, ldy, x, ldx, n, W, r0, r1, 0);
    else if (n == 1) matvec_rows_exact(y, x, W, r0, r1);
    else matmat_rows_exact(y, ldy, x, ldx, n, W, r0, r1);
}

void quant_matvec_rows_scalar(float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
    quant_matmat_rows_scalar(y, 0, x, 0, 1, W, r0, r1);
}

void quant_matmat_rows_scalar(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0,
                              int r1) {
    if (uses_q8(W)) matmat_rows_q8_of_x(y, ldy, x, ldx, n, W, r0, r1, 1);
    else matmat_rows_exact_scalar(y, ldy, x, ldx, n, W, r0, r1);
}

// y[r - r0] = dequant(W)[r] . x on this thread, float32 x
static void matvec_rows_exact(float* y, const float* x, const QuantMatrix* W, int r0, int r1) {
#ifdef QM_AVX2
    int nb = W->cols / 32;
    const uint8_t* b = (const uint8_t*)W->blocks + (size_t)r0 * W->row_bytes;
    // one loop per type, so each is compiled with its format fixed
    if (W->type == GGML_TYPE_Q4_1)
        for (int r = r0; r < r1; r++, b += W->row_bytes) y[r - r0] = row_dot_avx2(GGML_TYPE_Q4_1, b, x, nb);
    else if (W->type == GGML_TYPE_Q4_0)
        for (int r = r0; r < r1; r++, b += W->row_bytes) y[r - r0] = row_dot_avx2(GGML_TYPE_Q4_0, b, x, nb);
    else if (W->type == GGML_TYPE_Q8_0)
        for (int r = r0; r < r1; r++, b += W->row_bytes) y[r - r0] = row_dot_avx2(GGML_TYPE_Q8_0, b, x, nb);
    else if (W->type == GGML_TYPE_Q5_0) matvec_rows_new(GGML_TYPE_Q5_0, y, x, W, r0, r1);
    else if (W->type == GGML_TYPE_Q4_K) matvec_rows_new(GGML_TYPE_Q4_K, y, x, W, r0, r1);
    else if (W->type == GGML_TYPE_Q5_K) matvec_rows_new(GGML_TYPE_Q5_K, y, x, W, r0, r1);
    else matvec_rows_new(GGML_TYPE_Q6_K, y, x, W, r0, r1);
#else
    matvec_rows_exact_scalar(y, x, W, r0, r1);
#endif
}

// y[b * ldy + r - r0] = dequant(W)[r] . x[b] on this thread: QM_TILE_ROWS rows at a time
// are dequantized once into a float buffer, then multiplied with all n inputs by
// f32_matmat_rows (same w, same order as matvec_rows_exact); float32 x
static void matmat_rows_exact(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0, int r1) {
#ifdef QM_AVX2
    float* w = n > 1 ? aligned_alloc(32, (size_t)QM_TILE_ROWS * W->cols * sizeof(float)) : NULL;
    if (!w) { // one input (or no memory): the one-token kernel per input gives the same bits
        for (int b = 0; b < n; b++) matvec_rows_exact(y + (size_t)b * ldy, x + (size_t)b * ldx, W, r0, r1);
        return;
    }
    for (int t0 = r0; t0 < r1; t0 += QM_TILE_ROWS) {
        int t1 = t0 + QM_TILE_ROWS < r1 ? t0 + QM_TILE_ROWS : r1;
        dequant_rows(W, t0, t1, w);
        f32_matmat_rows(y + (t0 - r0), ldy, x, ldx, n, w, W->cols, 0, t1 - t0);
    }
    free(w);
#else
    matmat_rows_exact_scalar(y, ldy, x, ldx, n, W, r0, r1);
#endif
}

// rows [r0, r1) of W as float32, (r1 - r0, cols) at w (any alignment): the AVX2
// dequantization the batched product uses, otherwise the plain C one; both give
// dequantize_row's values bit for bit (the tests compare them)
void quant_dequant_rows(const QuantMatrix* W, int r0, int r1, float* w) {
#ifdef QM_AVX2
    dequant_rows(W, r0, r1, w);
#else
    const GGMLTypeInfo* ti = ggml_type_info((uint32_t)W->type);
    int nb = W->cols / ti->block_elems;
    for (int r = r0; r < r1; r++) {
        const uint8_t* b = (const uint8_t*)W->blocks + (size_t)r * W->row_bytes;
        for (int k = 0; k < nb; k++, b += ti->block_bytes, w += ti->block_elems) block_dequant_scalar(W->type, b, w);
    }
#endif
}

// ---------------------------------------------------------------------------
// threaded: output rows split over the OpenMP threads in slices of 16 (a row's bits do
// not depend on the split)

void quant_matmat(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W) {
    long work = (long)n * W->rows * W->cols;
    const int q8 = uses_q8(W), nb = W->cols / QACT_BLOCK;
    // 8-bit activations: each input quantized once (by the threads, one input each in
    // turn), then every thread's slice of rows reads them all
    QuantAct* act = q8 ? malloc((size_t)n * nb * sizeof(QuantAct)) : NULL;
    if (q8 && !act) {
        fill_nan(y, ldy, n, 0, W->rows);
        return;
    }
    #pragma omp parallel if (work >= QMATVEC_PARALLEL_MIN)
    {
        if (q8) {
            #pragma omp for schedule(static)
            for (int b = 0; b < n; b++) quant_act_row(x + (size_t)b * ldx, W->cols, act + (size_t)b * nb);
        }
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int per = ((W->rows + nt - 1) / nt + 15) / 16 * 16;
        int r0 = t * per, r1 = r0 + per < W->rows ? r0 + per : W->rows;
        if (r0 < r1) {
            if (q8) matmat_rows_q8(y + r0, ldy, act, n, W, r0, r1);
            else quant_matmat_rows(y + r0, ldy, x, ldx, n, W, r0, r1);
        }
    }
    free(act);
}

void quant_matvec(float* y, const float* x, const QuantMatrix* W) { quant_matmat(y, W->rows, x, W->cols, 1, W); }
