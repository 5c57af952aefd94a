/*
 * dequant.c — ggml block formats to float32 (see dequant.h for the list).
 *
 * Block layouts (little-endian, packed):
 *   Q4_0  f16 d; u8 qs[16]                 x = (nibble - 8) * d
 *   Q4_1  f16 d, m; u8 qs[16]              x = nibble * d + m
 *   Q5_0  f16 d; u8 qh[4]; u8 qs[16]       x = ((nibble | bit5 << 4) - 16) * d
 *   Q5_1  f16 d, m; u8 qh[4]; u8 qs[16]    x = (nibble | bit5 << 4) * d + m
 *   Q8_0  f16 d; i8 qs[32]                 x = q * d
 * In the 32-element formats, element j < 16 is the low nibble of qs[j] and element
 * j + 16 its high nibble; the fifth bit of element j is bit j of the 32-bit qh.
 *
 *   Q4_K  f16 d, dmin; u8 scales[12]; u8 qs[128]            (256 elements)
 *   Q5_K  f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
 *         8 sub-blocks of 32 with 6-bit scale and min each, packed in scales[12];
 *         x = d * scale * q - dmin * min. Elements come in 4 chunks of 64: the low
 *         nibbles of 32 bytes of qs (sub-block 2c), then their high nibbles (2c + 1).
 *         Q5_K's fifth bit for chunk c comes from qh[l] bit 2c (low) and 2c + 1 (high).
 *   Q6_K  u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
 *         16 sub-blocks of 16, x = d * scale * (q - 32), q = 4 low bits from ql and
 *         2 high bits from qh; two halves of 128 elements, each from 64 bytes of ql
 *         and 32 of qh, in four quarters of 32 (see dequant_q6_k).
 */
#include "model/dequant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h" // etx_bf16_to_f32

#define T(name, be, bb, sup) {name, be, bb, sup}
static const GGMLTypeInfo TYPES[] = {
    [0] = T("F32", 1, 4, 1),     [1] = T("F16", 1, 2, 1),     [2] = T("Q4_0", 32, 18, 1),
    [3] = T("Q4_1", 32, 20, 1),  [6] = T("Q5_0", 32, 22, 1),  [7] = T("Q5_1", 32, 24, 1),
    [8] = T("Q8_0", 32, 34, 1),  [9] = T("Q8_1", 32, 36, 0),  [10] = T("Q2_K", 256, 84, 0),
    [11] = T("Q3_K", 256, 110, 0), [12] = T("Q4_K", 256, 144, 1), [13] = T("Q5_K", 256, 176, 1),
    [14] = T("Q6_K", 256, 210, 1), [15] = T("Q8_K", 256, 292, 0), [16] = T("IQ2_XXS", 0, 0, 0),
    [17] = T("IQ2_XS", 0, 0, 0), [18] = T("IQ3_XXS", 0, 0, 0), [19] = T("IQ1_S", 0, 0, 0),
    [20] = T("IQ4_NL", 0, 0, 0), [21] = T("IQ3_S", 0, 0, 0),  [22] = T("IQ2_S", 0, 0, 0),
    [23] = T("IQ4_XS", 0, 0, 0), [24] = T("I8", 1, 1, 0),     [25] = T("I16", 1, 2, 0),
    [26] = T("I32", 1, 4, 0),    [27] = T("I64", 1, 8, 0),    [28] = T("F64", 1, 8, 0),
    [29] = T("IQ1_M", 0, 0, 0),  [30] = T("BF16", 1, 2, 1),   [34] = T("TQ1_0", 0, 0, 0),
    [35] = T("TQ2_0", 0, 0, 0),  [39] = T("MXFP4", 0, 0, 0),
};
#undef T

const GGMLTypeInfo* ggml_type_info(uint32_t type) {
    if (type >= sizeof TYPES / sizeof TYPES[0] || TYPES[type].name == NULL) return NULL;
    return &TYPES[type];
}

static uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd32(const uint8_t* p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

float fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); // inf / nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13); // normal: rebias 15 -> 127
    } else if (man == 0) {
        bits = sign; // zero
    } else {
        // subnormal: value = man * 2^-24; normalise the mantissa
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while ((man & 0x400) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float bf16_to_fp32(uint16_t h) { return etx_bf16_to_f32(h); }

static void dequant_q4_0(const uint8_t* b, float* y) {
    float d = fp16_to_fp32(rd16(b));
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = ((qs[j] & 0xf) - 8) * d;
        y[j + 16] = ((qs[j] >> 4) - 8) * d;
    }
}

static void dequant_q4_1(const uint8_t* b, float* y) {
    float d = fp16_to_fp32(rd16(b)), m = fp16_to_fp32(rd16(b + 2));
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (qs[j] & 0xf) * d + m;
        y[j + 16] = (qs[j] >> 4) * d + m;
    }
}

// 5-bit values of a Q5_0/Q5_1 block: 16 nibbles pairs plus 32 fifth bits.
static void unpack_q5(const uint8_t* qh4, const uint8_t* qs, int* q) {
    uint32_t qh = rd32(qh4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

static void dequant_q5_0(const uint8_t* b, float* y) {
    float d = fp16_to_fp32(rd16(b));
    int q[32];
    unpack_q5(b + 2, b + 6, q);
    for (int j = 0; j < 32; j++) y[j] = (q[j] - 16) * d;
}

static void dequant_q5_1(const uint8_t* b, float* y) {
    float d = fp16_to_fp32(rd16(b)), m = fp16_to_fp32(rd16(b + 2));
    int q[32];
    unpack_q5(b + 4, b + 8, q);
    for (int j = 0; j < 32; j++) y[j] = q[j] * d + m;
}

static void dequant_q8_0(const uint8_t* b, float* y) {
    float d = fp16_to_fp32(rd16(b));
    for (int j = 0; j < 32; j++) y[j] = (int8_t)b[2 + j] * d;
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. The first four
// sub-blocks use the low 6 bits of bytes 0..3 (scale) and 4..7 (min); the last four
// combine a nibble of bytes 8..11 with the top 2 bits of bytes 0..3 / 4..7.
static void k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K and Q5_K share everything but the fifth bit (qh == NULL for Q4_K).
static void dequant_k45(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
    float d = fp16_to_fp32(rd16(b)), dmin = fp16_to_fp32(rd16(b + 2));
    const uint8_t* scales = b + 4;
    for (int c = 0; c < 4; c++) {
        int sc0, m0, sc1, m1;
        k_scale_min(scales, 2 * c, &sc0, &m0);
        k_scale_min(scales, 2 * c + 1, &sc1, &m1);
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0xf, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            y[64 * c + l] = d * sc0 * lo - dmin * m0;
            y[64 * c + 32 + l] = d * sc1 * hi - dmin * m1;
        }
    }
}

static void dequant_q4_k(const uint8_t* b, float* y) { dequant_k45(b, NULL, b + 16, y); }

static void dequant_q5_k(const uint8_t* b, float* y) { dequant_k45(b, b + 16, b + 48, y); }

static void dequant_q6_k(const uint8_t* b, float* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = (const int8_t*)(b + 192);
    float d = fp16_to_fp32(rd16(b + 208));
    for (int half = 0; half < 2; half++) {
        for (int l = 0; l < 32; l++) {
            int s = l / 16;
            int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[s] * q1;
            y[l + 32] = d * sc[s + 2] * q2;
            y[l + 64] = d * sc[s + 4] * q3;
            y[l + 96] = d * sc[s + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

typedef void (*BlockFn)(const uint8_t* block, float* y);

static BlockFn block_fn(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return dequant_q4_0;
    case GGML_TYPE_Q4_1: return dequant_q4_1;
    case GGML_TYPE_Q5_0: return dequant_q5_0;
    case GGML_TYPE_Q5_1: return dequant_q5_1;
    case GGML_TYPE_Q8_0: return dequant_q8_0;
    case GGML_TYPE_Q4_K: return dequant_q4_k;
    case GGML_TYPE_Q5_K: return dequant_q5_k;
    case GGML_TYPE_Q6_K: return dequant_q6_k;
    default: return NULL;
    }
}

void dequantize_row(uint32_t type, const void* src, float* dst, size_t n) {
    const uint8_t* p = src;
    if (type == GGML_TYPE_F32) {
        memcpy(dst, p, n * sizeof(float));
        return;
    }
    if (type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = rd16(p + 2 * i);
            dst[i] = type == GGML_TYPE_F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
        }
        return;
    }
    const GGMLTypeInfo* ti = ggml_type_info(type);
    BlockFn fn = block_fn(type);
    if (!ti || !fn) {
        fprintf(stderr, "etx: internal error: dequantize_row called with unsupported type %u\n", type);
        abort();
    }
    size_t nb = n / (size_t)ti->block_elems;
    for (size_t i = 0; i < nb; i++) fn(p + i * (size_t)ti->block_bytes, dst + i * (size_t)ti->block_elems);
}
