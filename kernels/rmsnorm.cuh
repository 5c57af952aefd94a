/*
 * rmsnorm.cuh — the RMSNorm arithmetic, in one place for the two kernels that compute it:
 * the stand-alone norm (norm.cu, one block per row) and the tensor-core GEMM that
 * normalises its own input rows (gemm_tc.cu, issue 15 item 6: the norm before a
 * projection folded into it at small batches). Both must give the same bits, since a row
 * is normalised by one or the other depending on how many rows share the call, and the
 * CUDA backend's batch invariance needs every row's bits independent of that.
 *
 * The canonical order of a row's sum of squares (dim % 4 == 0, 16-byte aligned rows: the
 * stand-alone kernel's vector path):
 *   - T = etx_rms_threads(dim) partials; partial v adds the squares of the float4s
 *     v, v + T, v + 2T, ... in order, each float4's 4 elements in order, from 0;
 *   - the partials of each group of 32 (v / 32) summed by etx_warp_sum (reduce.cuh);
 *   - the T / 32 group sums added in order, from 0 (etx_block_sum's order).
 * Then inv = rsqrt(ss / dim + eps) and out[i] = bf16(w[i] * (x[i] * inv)).
 * The stand-alone kernel runs T threads, one partial each; etx_rms_inv_row lets a block of
 * any multiple of 32 threads play the T partials, so a GEMM block of 256 threads gets the
 * same bits for every dim.
 */
#ifndef ETX_RMSNORM_CUH
#define ETX_RMSNORM_CUH

#include "cuda_common.cuh"
#include "reduce.cuh"

struct alignas(16) etx_f32x4 {
    float v[4];
};

// Partials of the canonical sum (threads per row of the stand-alone kernel).
static __host__ __device__ __forceinline__ int etx_rms_threads(int dim) {
    return dim >= 4096 ? 512 : dim >= 1024 ? 256 : 128;
}

// One float4's squares added to a partial, in element order.
static __device__ __forceinline__ float etx_rms_add_squares(float ss, const etx_f32x4& a) {
    for (int j = 0; j < 4; j++) ss += a.v[j] * a.v[j];
    return ss;
}

// The scale of a row from its sum of squares.
static __device__ __forceinline__ float etx_rms_inv(float ss, int dim, float eps) {
    return rsqrtf(ss / (float)dim + eps);
}

// One normalised element: bf16(w * (x * inv)).
static __device__ __forceinline__ __nv_bfloat16 etx_rms_apply(float w, float x, float inv) {
    return __float2bfloat16(w * (x * inv));
}

// inv of row xr (dim % 4 == 0, 16-byte aligned) in the canonical order, the block's
// threads playing its T partials (thread q: partials q, q + blockDim.x, ...; blockDim.x a
// multiple of 32). Every thread gets it. red: 32 floats of shared memory (T / 32 <= 16
// used); two barriers, red reusable after. Reads dim * 4 bytes (from L2 when the row was
// just written).
static __device__ __forceinline__ float etx_rms_inv_row(const float* __restrict__ xr, int dim, float eps, float* red) {
    const int T = etx_rms_threads(dim), lane = threadIdx.x % 32;
    const etx_f32x4* x4 = reinterpret_cast<const etx_f32x4*>(xr);
    for (int v0 = 0; v0 < T; v0 += blockDim.x) {
        const int v = v0 + threadIdx.x;
        if (v >= T) break; // warp-uniform: T, v0 and blockDim.x are multiples of 32
        float ss = 0.0f;
        for (int i = v; i < dim / 4; i += T) ss = etx_rms_add_squares(ss, x4[i]);
        ss = etx_warp_sum(ss);
        if (lane == 0) red[v / 32] = ss;
    }
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < T / 32; w++) s += red[w];
    __syncthreads(); // red may be reused by the caller
    return etx_rms_inv(s, dim, eps);
}

// Rows 0 .. nr - 1 of x (f32, dim apart; dim % 4 == 0, 16-byte aligned) normalised with the
// weight w into xs (bf16, nr x dim, shared memory) by the whole block, each row's scale
// in the canonical order: the bits norm.cu writes to xb. red: 32 floats, inv_s: nr floats
// of shared memory. Every thread of the block calls it (barriers); xs is ready on return.
static __device__ __forceinline__ void etx_rms_rows_to_bf16(__nv_bfloat16* xs, const float* __restrict__ x,
                                                            const float* __restrict__ w, int nr, int dim, float eps,
                                                            float* red, float* inv_s) {
    for (int j = 0; j < nr; j++) {
        const float inv = etx_rms_inv_row(x + (size_t)j * dim, dim, eps, red);
        if (threadIdx.x == 0) inv_s[j] = inv;
    }
    __syncthreads();
    for (int q = threadIdx.x; q < nr * dim; q += blockDim.x) {
        const int j = q / dim, k = q % dim;
        xs[q] = etx_rms_apply(w[k], x[(size_t)j * dim + k], inv_s[j]);
    }
    __syncthreads();
}

#endif // ETX_RMSNORM_CUH
