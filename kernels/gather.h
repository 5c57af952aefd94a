/*
 * gather.h — row gathers of the CUDA backend (kernels/gather.cu): the prefill picks' last
 * rows (residual stream and last down projection) brought together so that one final
 * norm and one LM-head GEMM serve every sampled prompt of a step, instead of one GEMM
 * over the whole LM head per prompt.
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_GATHER_H
#define ETX_KERNELS_GATHER_H

#include <stdint.h>

#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// For i < n: rows dst_row0 + i of a and of b (f32, width wide) = their rows idx[i]
// (idx: device, n entries, each < dst_row0: sources and destinations never overlap).
// b may be NULL: a alone.
void etx_gather_rows2(float* a, float* b, const int32_t* idx, int n, int dst_row0, int width, void* stream);

// The napkin math of etx_gather_rows2 (cost.h): two rows read and two written per index.
EtxCost etx_gather_rows2_cost(int n, int width);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_GATHER_H
