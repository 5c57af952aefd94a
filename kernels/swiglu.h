/*
 * swiglu.h — the MLP's gated activation (kernels/swiglu.cu): from the fused gate/up GEMM
 * output to the bf16 input of the down projection, when that GEMM runs on CUDA cores
 * (on tensor cores the GEMM's epilogue does it: gemm.h etx_gemm_bf16_swiglu).
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_SWIGLU_H
#define ETX_KERNELS_SWIGLU_H

#include <stdint.h>

#include "bf16.h" // etx_bf16 (hostdev/)
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// out[r, i] = bf16(silu(g) * u), g = gu[r, 2i], u = gu[r, 2i + 1], silu(g) = g / (1 + exp(-g))
// gu: (n_rows, 2 hidden) f32, gate and up interleaved unit by unit (the backend's gate/up
// weight layout); out: (n_rows, hidden) bf16; n_rows <= 65535.
void etx_swiglu(etx_bf16* out, const float* gu, int n_rows, int hidden, void* stream);

// The napkin math of etx_swiglu (cost.h): gate and up read (f32), the product written
// (bf16); ~5 FLOPs and one exp per element.
EtxCost etx_swiglu_cost(int n_rows, int hidden);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_SWIGLU_H
