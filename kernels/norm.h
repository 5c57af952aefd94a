/*
 * norm.h — RMSNorm fused with the residual add (kernels/norm.cu): the op before every
 * GEMM block of a layer (attention, MLP) and before the LM head. It folds the previous
 * block's output into the f32 residual stream and emits the bf16 GEMM input in one pass.
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_NORM_H
#define ETX_KERNELS_NORM_H

#include <stdint.h>

#include "bf16.h" // etx_bf16 (hostdev/)
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// For each row r < n_rows:
//   if delta: x[r] += delta[r]      (x updated in place: the residual stream)
//   out[r] = bf16(x[r] * rsqrt(mean(x[r]^2) + eps) * w)
// x, delta: (n_rows, dim) f32; w: (dim) f32; out: (n_rows, dim) bf16. delta may be NULL.
void etx_rmsnorm_residual(etx_bf16* out, float* x, const float* delta, const float* w, int n_rows, int dim, float eps,
                          void* stream);

// The napkin math of etx_rmsnorm_residual (cost.h): per row x read and (with delta)
// delta read and x written, the bf16 output written; w once; ~4 FLOPs per element.
EtxCost etx_rmsnorm_cost(int n_rows, int dim, int with_delta);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_NORM_H
