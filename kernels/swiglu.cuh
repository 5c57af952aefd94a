/*
 * swiglu.cuh — the SwiGLU product of one hidden unit, as device code: the one expression
 * that both the stand-alone kernel (swiglu.cu) and the gate/up GEMM's epilogue
 * (gemm_tc.cu) evaluate, so the two give the same bits for the same gate and up sums.
 */
#ifndef ETX_KERNELS_SWIGLU_CUH
#define ETX_KERNELS_SWIGLU_CUH

#include "cuda_common.cuh"

// bf16(silu(g) * u), silu(g) = g / (1 + exp(-g)).
static __device__ __forceinline__ __nv_bfloat16 etx_silu_mul_bf16(float g, float u) {
    return __float2bfloat16(g / (1.0f + expf(-g)) * u);
}

#endif // ETX_KERNELS_SWIGLU_CUH
