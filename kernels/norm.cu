/*
 * norm.cu — RMSNorm fused with the residual add:
 *   x[r] += delta[r] (optional);  out[r] = bf16(x[r] * rsqrt(mean(x[r]^2) + eps) * w)
 *
 * One block per row, etx_rms_threads(dim) threads. Pass 1 reads x (and delta), writes the sum back, and reduces the
 * sum of squares (warp shuffles, then one value per warp through shared memory); pass 2
 * re-reads x (now in L1/L2) and writes bf16. With dim % 4 == 0 and 16-byte aligned
 * pointers, every access is a 16-byte vector (8 bytes for the bf16 output).
 * The vector path sums in rmsnorm.cuh's canonical order, which gemm_tc.cu's fused norm
 * reproduces bit for bit. Traffic per row: dim * (4 x + 4 delta + 4 x written + 2 out) bytes, w from L2.
 *
 * Twin: host/cpu/cpu_ops.c rmsnorm; test: tests/kernels/test_layer_kernels.c test_rmsnorm
 * (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "norm.h"
#include "reduce.cuh"
#include "rmsnorm.cuh" // the arithmetic and order, shared with gemm_tc.cu's fused norm

typedef etx_f32x4 f32x4;
struct alignas(8) bf16x4 {
    __nv_bfloat16 v[4];
};

// block r: row r. VEC: dim % 4 == 0 and aligned pointers, 16-byte accesses.
// blockDim.x: a multiple of 32.
template <bool VEC>
__global__ void rmsnorm_residual_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ x,
                                        const float* __restrict__ delta, const float* __restrict__ w, int dim,
                                        float eps) {
    ETX_PDL_ENTRY();
    __shared__ float red[32];
    int r = blockIdx.x;
    float* xr = x + (size_t)r * dim;
    const float* dr = delta ? delta + (size_t)r * dim : NULL;
    __nv_bfloat16* orow = out + (size_t)r * dim;
    float ss = 0.0f;
    if (VEC) {
        f32x4* x4 = reinterpret_cast<f32x4*>(xr);
        const f32x4* d4 = reinterpret_cast<const f32x4*>(dr);
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
            f32x4 a = x4[i];
            if (dr) {
                f32x4 b = d4[i];
                for (int j = 0; j < 4; j++) a.v[j] += b.v[j];
                x4[i] = a;
            }
            ss = etx_rms_add_squares(ss, a);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float a = xr[i];
            if (dr) {
                a += dr[i];
                xr[i] = a;
            }
            ss += a * a;
        }
    }
    ss = etx_block_sum(ss, red); // every thread gets it; red: 32 floats
    float inv = etx_rms_inv(ss, dim, eps);
    if (VEC) {
        const f32x4* x4 = reinterpret_cast<const f32x4*>(xr);
        const f32x4* w4 = reinterpret_cast<const f32x4*>(w);
        bf16x4* o4 = reinterpret_cast<bf16x4*>(orow);
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
            f32x4 a = x4[i], b = w4[i];
            bf16x4 o;
            for (int j = 0; j < 4; j++) o.v[j] = etx_rms_apply(b.v[j], a.v[j], inv);
            o4[i] = o;
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = etx_rms_apply(w[i], xr[i], inv);
    }
}

extern "C" void etx_rmsnorm_residual(etx_bf16* out, float* x, const float* delta, const float* w, int n_rows, int dim,
                                     float eps, void* stream) {
    if (n_rows <= 0) return;
    __nv_bfloat16* o = reinterpret_cast<__nv_bfloat16*>(out);
    // the vector path's threads are the canonical order's partials (rmsnorm.cuh)
    int threads = etx_rms_threads(dim);
    uintptr_t align = (uintptr_t)x | (uintptr_t)delta | (uintptr_t)w;
    bool vec = dim % 4 == 0 && (align & 15) == 0 && ((uintptr_t)out & 7) == 0;
    if (vec)
        ETX_LAUNCH(rmsnorm_residual_kernel<true>, n_rows, threads, 0, (cudaStream_t)stream, o, x, delta, w, dim, eps);
    else
        ETX_LAUNCH(rmsnorm_residual_kernel<false>, n_rows, threads, 0, (cudaStream_t)stream, o, x, delta, w, dim, eps);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_rmsnorm_cost(int n_rows, int dim, int with_delta) {
    EtxCost c = {(double)n_rows * dim * (4 + (with_delta ? 8 : 0) + 2) + (double)dim * 4, 4.0 * n_rows * dim,
                 (double)n_rows, (double)n_rows, 1, 0, 0, 0, 0};
    return c;
}
