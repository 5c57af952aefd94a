/*
 * gemm.h — the projections of the CUDA backend (kernels/gemm.cu): every linear layer of
 * a step (fused QKV, O, fused gate/up, down, LM head) is y = x · W^T with bf16 inputs
 * and f32 accumulation and output. Natively this is one cublasGemmEx call; under the
 * SIMT emulator (ETX_SIMT, no cuBLAS) a plain register-tiled kernel computes the same
 * product, summing each output over `in` in 1 to 4 pieces (split-K: 1 for n = 1, 2 for
 * n <= 4, 3 for n <= 16, else 4), each in index order, then the pieces in order: as with
 * cuBLAS, a row's bits depend on the call's row count.
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_GEMM_H
#define ETX_KERNELS_GEMM_H

#include <stdint.h>

#include "bf16.h" // etx_bf16 (hostdev/)

#ifdef __cplusplus
extern "C" {
#endif

// A GEMM context (natively a cuBLAS handle with its own workspace), one per backend;
// NULL when it cannot be created (no device, cuBLAS failed to initialise). The
// emulator's is a dummy.
void* etx_gemm_create(void);
void etx_gemm_destroy(void* gemm);

// y[r, o] = sum_i float(x[r, i]) * float(w[o, i])  (f32 accumulation)
// x: (n, in) bf16; w: (out, in) bf16 (row-major, as nn.Linear.weight); y: (n, out) f32.
// n == 0 does nothing.
void etx_gemm_bf16(void* gemm, float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, void* stream);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_GEMM_H
