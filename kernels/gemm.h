/*
 * gemm.h — the projections of the CUDA backend (kernels/gemm.cu): every linear layer of
 * a step (fused QKV, O, fused gate/up, down, LM head), decode and prefill, is
 * y = x · W^T with bf16 inputs and f32 accumulation and output, by one hand-written
 * kernel whose every row is summed in an order fixed by `in` alone (not by the number of
 * rows, nor by the other rows): the CUDA backend's batch invariance rests on it.
 * The same kernel runs natively and under the SIMT emulator.
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_GEMM_H
#define ETX_KERNELS_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h" // etx_bf16 (hostdev/)
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// y[r, o] = sum_i float(x[r, i]) * float(w[o, i])  (f32 accumulation, fixed order)
// x: (n, in) bf16; w: (out, in) bf16 (row-major, as nn.Linear.weight); y: (n, out) f32.
// n == 0 does nothing; in == 0 gives zeros. When in % 8 == 0, x and w must be 16-byte
// aligned (cudaMalloc gives 256; row offsets of such a matrix keep it).
void etx_gemm_bf16(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, void* stream);

// The napkin math of etx_gemm_bf16 (cost.h): the weights read once per tile of rows, from
// DRAM (a matrix larger than l2_bytes / 2 is assumed to miss L2 on every tile; a smaller
// one is read once), x read and y written once, 2 n in out FLOPs on CUDA cores.
EtxCost etx_gemm_cost(int n, int in, int out, double l2_bytes);

// Rows per tile the kernel uses for a call of n rows (1, 4, 8 or 16): how many rows share
// a weight load, nothing else (tests: the result of a row does not depend on it).
int etx_gemm_tile_rows(int n);

// Under the emulator etx_gemm_bf16 runs a thread-per-column twin of the warp kernel by
// default (the same operations in the same order, without the warp's fiber switches);
// on = 1 runs the warp kernel itself (test_gemm compares the two bit for bit). Natively
// the warp kernel always runs and this does nothing.
void etx_gemm_use_warp_kernel(int on);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_GEMM_H
