/*
 * rope.cuh — the RoPE arithmetic (Hugging Face rotate-half), in one place for the two
 * kernels that apply it: rope.cu (prefill rows, with the KV append) and attention.cu's
 * decode variant (RoPE and the append inside the attention launch). A row's q and k must
 * get the same bits from either, since which one runs depends on whether the row is
 * decoded or prefilled, and a recomputed row must match its first computation.
 *
 *   angle i of position p: a = (float)p * inv_freq[i]; (cos a, sin a) by cosf / sinf
 *   pair (x1, x2) = (x[i], x[i + half]):  y1 = x1 c - x2 s,  y2 = x2 c + x1 s
 */
#ifndef ETX_ROPE_CUH
#define ETX_ROPE_CUH

#include "cuda_common.cuh"

// cos and sin of angle i at position pos.
static __device__ __forceinline__ void etx_rope_angle(int pos, float inv_freq_i, float* c, float* s) {
    const float a = (float)pos * inv_freq_i;
    *c = cosf(a);
    *s = sinf(a);
}

// One rotation pair.
static __device__ __forceinline__ void etx_rope_rotate(float x1, float x2, float c, float s, float* y1, float* y2) {
    *y1 = x1 * c - x2 * s;
    *y2 = x2 * c + x1 * s;
}

#endif // ETX_ROPE_CUH
