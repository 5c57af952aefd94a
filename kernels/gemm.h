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
// aligned (cudaMalloc gives 256; row offsets of such a matrix keep it). w must be
// read-only memory (etx_dev_mark_readonly, device.h): on tensor cores the kernel loads
// its first weights before its grid-dependency wait, while the kernel before it may still
// run (the emulator aborts a load from memory not so marked).
void etx_gemm_bf16(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, void* stream);
// The same with a workspace: with ws_bytes >= etx_gemm_tc_workspace_bytes(n, out), a call
// whose tiled-kernel grid would be too small splits each tile's 8 or 16 slices over up to 8
// blocks, the slice sums going through ws, then adds them in order (the same bits).
void etx_gemm_bf16_ws(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                      size_t ws_bytes, void* stream);

// y = x · W^T + bias (bias: (out) f32): the same sum as etx_gemm_bf16_ws, with bias[o]
// added to it in the epilogue (one f32 addition: the bits of the sum stored and then
// bias added, as etx_qkv_prep adds Qwen2's Q/K/V biases). One launch on every path.
void etx_gemm_bf16_bias(float* y, const etx_bf16* x, const etx_bf16* w, const float* bias, int n, int in, int out,
                        float* ws, size_t ws_bytes, void* stream);

// y += x · W^T: the same sum as etx_gemm_bf16_ws, added to y (one f32 addition, y + s).
// The residual stream takes the O and down projections this way (issue 15 item 6): the
// bits the norm kernel's residual add x + delta gave, without delta written and read back.
void etx_gemm_bf16_add(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                       size_t ws_bytes, void* stream);
// Its napkin math: etx_gemm_cost's with y read as well as written.
EtxCost etx_gemm_add_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);

// y += x · W^T, then the norm before the next projection: xb = bf16(rmsnorm(y) * gamma), as
// etx_rmsnorm_residual (norm.h) writes it from the updated y (y: (n, out) f32, the
// residual stream; gamma: (out) f32; xb: (n, out) bf16). At large batch the O and down
// projections split their slices over blocks and finish in a reduce launch, which then
// also normalises (one block per row, the norm kernel's order: rmsnorm.cuh): the norm's
// own launch goes. Where etx_gemm_add_rmsnorm_fuses does not hold (no split, the CUDA-core
// path, unaligned rows), etx_gemm_bf16_add and then etx_rmsnorm_residual. The same bits in
// y and xb either way.
void etx_gemm_bf16_add_rmsnorm(float* y, const etx_bf16* x, const etx_bf16* w, const float* gamma, float eps,
                               etx_bf16* xb, int n, int in, int out, float* ws, size_t ws_bytes, void* stream);
// Whether such a call of n rows with a workspace of ws_bytes saves the norm's launch on a
// card with tensor cores: in % 8 == 0, out % 4 == 0, the tiled kernel with its slices
// split (etx_gemm_tc_takes_tiled). Asks no device (the plan and the cost model use it).
int etx_gemm_add_rmsnorm_fuses(int n, int in, int out, size_t ws_bytes);
// The napkin math of the fused call (etx_gemm_add_cost's, plus xb written and gamma read);
// where it does not fuse, etx_gemm_add_cost's and etx_rmsnorm_cost's summed.
EtxCost etx_gemm_add_rmsnorm_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);

// Normalise, then project (the RMSNorm before a projection, folded into it):
//   xn = bf16(rmsnorm(x) * gamma), as etx_rmsnorm_residual (norm.h) writes it with no delta;
//   y = xn · W^T (+ bias: NULL or (out) f32, as etx_gemm_bf16_bias)  (f32, etx_gemm_bf16's sum)
//   or, _swiglu, h = SwiGLU as etx_gemm_bf16_swiglu.
// x: (n, in) f32, the residual stream (only read); gamma: (in) f32; xb: (n, in) bf16
// scratch, written only when the call takes two launches. One launch when
// etx_gemm_rmsnorm_fuses(n, in, out) and the device has tensor cores (each block of the
// one-tile tensor-core kernel normalises its rows into shared memory, in the norm
// kernel's order: rmsnorm.cuh); else etx_rmsnorm_residual into xb, then the GEMM on xb.
// The same bits either way, so a row's result does not depend on which one its call took.
void etx_gemm_bf16_rmsnorm(float* y, const float* x, const float* gamma, float eps, etx_bf16* xb, const etx_bf16* w,
                           const float* bias, int n, int in, int out, float* ws, size_t ws_bytes, void* stream);
void etx_gemm_bf16_rmsnorm_swiglu(etx_bf16* h, const float* x, const float* gamma, float eps, etx_bf16* xb,
                                  const etx_bf16* w, int n, int in, int out, float* ws, size_t ws_bytes, void* stream);
// Whether such a call of n rows is one launch on a card with tensor cores (and under the
// emulator): in % 8 == 0, the tensor-core path, n <= 4 and the rows within 32 KB of shared
// memory as bf16 (n in <= 16384). Asks no device (the launch plan and the cost model use it).
int etx_gemm_rmsnorm_fuses(int n, int in, int out);
// The napkin math of the fused launch: the GEMM's, with x read as f32 (each block reading
// its rows twice from L2) and the norm's weight; _swiglu's output when swiglu.
EtxCost etx_gemm_rmsnorm_cost(int n, int in, int out, double l2_bytes, int swiglu, int sms);

// The napkin math of etx_gemm_bf16_ws with a workspace of ws_bytes (cost.h): on tensor
// cores etx_gemm_tc_cost's; on CUDA cores the weights read once per tile of rows, from
// DRAM (a matrix larger than l2_bytes / 2 is assumed to miss L2 on every tile; a smaller
// one is read once), x read and y written once, 2 n in out FLOPs.
EtxCost etx_gemm_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);

// The MLP's gate/up projection with SwiGLU applied to its output, w's rows interleaving
// the units' gate and up rows (row 2u: gate of unit u, 2u + 1: its up; out = 2 hidden):
//   h[r, u] = bf16(silu(y[r, 2u]) * y[r, 2u + 1]),  y = x · W^T summed as etx_gemm_bf16 sums it,
// h: (n, out / 2) bf16. The same bits as etx_gemm_bf16 into f32 then etx_swiglu. On tensor
// cores one launch (the product is the kernel's epilogue, y never reaches memory); on the
// CUDA-core path (etx_gemm_swiglu_needs_scratch) y goes to the workspace, which must hold
// (n, out) f32, and etx_swiglu runs after; on tensor cores the workspace serves the slice
// split as in etx_gemm_bf16_ws (it may be NULL). out must be even.
void etx_gemm_bf16_swiglu(etx_bf16* h, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                          size_t ws_bytes, void* stream);
// Whether etx_gemm_bf16_swiglu of that `in` takes the CUDA-core path and needs n x out floats of workspace.
int etx_gemm_swiglu_needs_scratch(int in);
// Its napkin math: the GEMM's, with h written as bf16 (tensor cores), or the GEMM's plus
// etx_swiglu's (CUDA cores: two launches).
EtxCost etx_gemm_swiglu_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);

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

// The tensor-core kernels (in % 8 == 0, x and w 16-byte aligned, sm_80+). Each output
// sums its k in chunks of 32, the chunks in 8 contiguous slices, 16 from 128 chunks on
// (in >= 4096) (each slice's chunks in order, two mma.sync m16n8k16 per chunk), then the
// slice sums in order: fixed by `in`.
// ws (may be NULL): as etx_gemm_bf16_ws's.
void etx_gemm_tc_bf16(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                      size_t ws_bytes, void* stream);
// The same with the SwiGLU epilogue (etx_gemm_bf16_swiglu's tensor-core path).
void etx_gemm_tc_bf16_swiglu(etx_bf16* h, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                             size_t ws_bytes, void* stream);
// y = x W^T + bias on tensor cores (etx_gemm_bf16_bias's path).
void etx_gemm_tc_bf16_bias(float* y, const etx_bf16* x, const etx_bf16* w, const float* bias, int n, int in, int out,
                           float* ws, size_t ws_bytes, void* stream);
// y += x W^T on tensor cores (etx_gemm_bf16_add's path) and its napkin math.
void etx_gemm_tc_bf16_add(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                          size_t ws_bytes, void* stream);
EtxCost etx_gemm_tc_add_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);
// The fused norm on tensor cores (etx_gemm_bf16_rmsnorm's one launch): y f32 (n, out), or h
// bf16 (n, out / 2) when swiglu; aborts unless etx_gemm_tc_rmsnorm_fuses holds and x, gamma
// are 16-byte aligned. _fuses: the rule (n <= 4, the one-tile kernel, n in 2 bytes within
// 32 KB of shared memory); _cost: its napkin math.
void etx_gemm_tc_rmsnorm(void* y, int swiglu, const float* x, const float* gamma, float eps, const etx_bf16* w,
                         const float* bias, int n, int in, int out, void* stream);
int etx_gemm_tc_rmsnorm_fuses(int n, int in, int out, size_t ws_bytes);
EtxCost etx_gemm_tc_rmsnorm_cost(int n, int in, int out, double l2_bytes, int swiglu, int sms);
// etx_gemm_bf16_add_rmsnorm's fused path (aborts unless _fuses holds, ws is non-NULL and y,
// ws, gamma are 16-byte and xb 8-byte aligned); _fuses: the rule; _cost: its napkin math.
void etx_gemm_tc_bf16_add_rmsnorm(float* y, const etx_bf16* x, const etx_bf16* w, const float* gamma, float eps,
                                  etx_bf16* xb, int n, int in, int out, float* ws, size_t ws_bytes, void* stream);
int etx_gemm_tc_add_rmsnorm_fuses(int n, int in, int out, size_t ws_bytes);
EtxCost etx_gemm_tc_add_rmsnorm_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);
// The next tensor-core GEMM call on this thread also asks L2 to prefetch [p, p + bytes)
// (p 16-byte aligned, bytes a multiple of 16, inside one read-only allocation: the
// weights of a projection a few launches ahead): gemm_tc_kernel's blocks split it and
// issue it after their own first weight loads (kernels/cuda_common.cuh etx_l2_prefetch).
// Taken by that call whichever kernel it runs (the tiled kernel drops it); bytes 0
// clears it. The CUDA backend's plan sets it where a small projection leaves DRAM idle
// (host/cuda/cuda_plan.c, CudaOp.pf_*). Changes no output.
void etx_gemm_prefetch_next(const void* p, size_t bytes);
// Warps per block of gemm_tc_kernel for every call (8 or 16; 0: the rule, 16 when the
// one-tile kernel's grid has no more tiles than the device has SMs). Tests: the same bits.
void etx_gemm_tc_force_warps(int w);
// Bytes of workspace that let a call of n rows and `out` columns split its slices: the 16
// slice sums of every output, f32.
size_t etx_gemm_tc_workspace_bytes(int n, int out);
// Its napkin math: W once from DRAM when n <= out (blocks launched row tiles first; else W
// once per group of etx_gemm_tc_tile_rows(n) rows unless it stays in L2), x once unless
// the launch order sweeps it and it misses L2, y once, the mma's FLOPs (padded to 16
// columns x 8 rows) on tensor cores; _swiglu_: h written as bf16 instead of y.
EtxCost etx_gemm_tc_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);
EtxCost etx_gemm_tc_swiglu_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms);
// Rows per block of the tensor-core kernel (8, 16 or 32): which rows share a block only.
int etx_gemm_tc_tile_rows(int n);
// Whether a call of n rows and `out` columns with a workspace of ws_bytes takes the tiled
// kernel (gemm_tc.cu: 128 columns x 64, 128 or 256 rows per block, operands staged in
// shared memory; for n > 32 when that grid, split over up to 8 blocks per tile as the
// workspace allows, has >= 64 blocks); etx_gemm_tc_force_kernel(0 | 1) forces gemm_tc_kernel or
// the tiled one for every call (-1: back to that rule; tests), as ETX_GEMM_TILED=0 | 1
// in the environment does (the A/B switch of benchmarks/gpu_check.sh). Same bits either way.
int etx_gemm_tc_takes_tiled(int n, int out, size_t ws_bytes);
// Forces the tiled kernel's blocks per tile (1, 2, 4 or 8; 0: the rule above) wherever the
// workspace allows the split (tests).
void etx_gemm_tc_force_split(int z);
void etx_gemm_tc_force_kernel(int k);
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
