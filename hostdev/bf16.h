/*
 * bf16.h — etx_bf16, the bfloat16 type of the C side of the CUDA backend, and its two
 * conversions.
 *
 * etx_bf16 is the 16 bits of a bfloat16 (the top half of a float32) in a uint16_t; device
 * code reinterprets the same bytes as __nv_bfloat16 (kernels/README.md, "Data layout").
 * Every kernel launcher header, the CUDA backend's host side and the tests take it from
 * here. The conversions are the host's (device code uses cuda_bf16.h's):
 *
 *   - etx_bf16_from_f32: round to nearest, ties to even, as __float2bfloat16_rn does;
 *     overflow goes to +-inf, and a NaN stays a NaN (quiet bit set);
 *   - etx_bf16_to_f32: exact (a bf16 is a float with the low 16 bits zero).
 *
 * Header-only plain C99, also valid C++ (the kernels include it through their headers).
 */
#ifndef ETX_BF16_H
#define ETX_BF16_H

#include <stdint.h>
#include <string.h>

typedef uint16_t etx_bf16; // bfloat16 bits

static inline etx_bf16 etx_bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (etx_bf16)((u >> 16) | 0x40); // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (etx_bf16)(u >> 16);
}

static inline float etx_bf16_to_f32(etx_bf16 h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif // ETX_BF16_H
