/*
 * swiglu.cu — out[r, u] = bf16(silu(g) * up), g = gu[r, 2u], up = gu[r, 2u + 1],
 * silu(g) = g / (1 + exp(-g)): the gate/up projection's activation when that projection
 * runs on CUDA cores (etx_gemm_bf16_swiglu's two-launch path; on tensor cores the GEMM
 * applies the same expression, swiglu.cuh, in its epilogue and this kernel does not run).
 * gu's rows interleave gate and up unit by unit, as the backend stores w_gate / w_up.
 *
 * Grid (column blocks, rows): consecutive threads on consecutive units of one row (each
 * reads one 8-byte (gate, up) pair, coalesced; no index division). Traffic: n_rows *
 * hidden * (8 read + 2 written) bytes.
 *
 * Twin: host/cpu/cpu_ops.c swiglu; test: tests/kernels/test_layer_kernels.c test_swiglu
 * (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "swiglu.cuh"
#include "swiglu.h"

#define SWIGLU_THREADS 256

// block (b, r), thread x: unit i = b * blockDim.x + x of row r
__global__ void swiglu_kernel(__nv_bfloat16* __restrict__ out, const float* __restrict__ gu, int hidden) {
    ETX_PDL_ENTRY();
    int r = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= hidden) return;
    const float* pair = gu + (size_t)r * 2 * hidden + 2 * (size_t)i;
    out[(size_t)r * hidden + i] = etx_silu_mul_bf16(pair[0], pair[1]);
}

extern "C" void etx_swiglu(etx_bf16* out, const float* gu, int n_rows, int hidden, void* stream) {
    if (n_rows <= 0 || hidden <= 0) return;
    if (n_rows > 65535) { // gridDim.y
        fprintf(stderr, "[etx] etx_swiglu: %d rows (at most 65535 per call)\n", n_rows);
        abort();
    }
    dim3 grid(etx_ceil_div(hidden, SWIGLU_THREADS), n_rows);
    ETX_LAUNCH(swiglu_kernel, grid, SWIGLU_THREADS, 0, (cudaStream_t)stream, reinterpret_cast<__nv_bfloat16*>(out), gu,
               hidden);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_swiglu_cost(int n_rows, int hidden) {
    const double ctas = (double)etx_ceil_div(hidden, SWIGLU_THREADS) * n_rows;
    EtxCost c = {(double)n_rows * hidden * (8 + 2), 5.0 * n_rows * hidden, ctas, ctas, 1, 0, 0, 0, 0};
    return c;
}
