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

// Which kernel a call with in % 8 == 0 takes: the tensor-core kernel (gemm_tc.cu) on
// sm_80 and later and under the emulator, else the CUDA-core kernel (gemm.cu). Fixed for
// a process and device, so the batch-invariance contract holds within a run; the two
// paths differ in the last bits. ETX_GEMM=cuda-cores (or tensor-cores, or auto) in the
// environment overrides; etx_gemm_force_path(0 | 1) overrides that (-1: back to auto;
// tests and benchmarks). Every other call (in % 8 != 0) takes the CUDA-core kernel's
// scalar path.
int etx_gemm_uses_tensor_cores(void);
void etx_gemm_force_path(int path);

// The tensor-core kernel itself (in % 8 == 0, x and w 16-byte aligned, sm_80+). Each
// output sums its k in chunks of 32 split over 8 warps (warp w: chunks w, w + 8, ...),
// two mma.sync m16n8k16 per chunk, then the 8 warp sums in warp order: fixed by `in`.
void etx_gemm_tc_bf16(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, void* stream);
// Its napkin math: W once per group of etx_gemm_tc_tile_rows(n) rows (once when it stays
// in L2), x and y once, the mma's FLOPs (padded to 16 columns x 8 rows) on tensor cores.
EtxCost etx_gemm_tc_cost(int n, int in, int out, double l2_bytes);
// Rows per block of the tensor-core kernel (8, 16 or 32): which rows share a block only.
int etx_gemm_tc_tile_rows(int n);
#ifdef ETX_SIMT
void etx_gemm_tc_use_warp_kernel(int on); // etx_gemm_use_warp_kernel sets it too
#endif

// Under the emulator etx_gemm_bf16 runs a thread-per-column twin of the warp kernel by
// default (the same operations in the same order, without the warp's fiber switches);
// on = 1 runs the warp kernel itself (test_gemm compares the two bit for bit); the same
// for the tensor-core kernel's twin. Natively the warp kernels always run and this does
// nothing.
void etx_gemm_use_warp_kernel(int on);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_GEMM_H
