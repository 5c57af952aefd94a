/*
 * gemm.cu — y (n, out) f32 = x (n, in) bf16 · W^T, W (out, in) bf16: every projection of
 * the CUDA backend, decode and prefill alike.
 *
 * Batch invariance by construction. Each output y[r, o] is summed in one order that
 * depends only on `in`, never on n or on which other rows share the call:
 *   - lane l of the warp that owns column o takes the 8-element pieces l, l + 32, l + 64,
 *     ... of the row (16-byte loads), and accumulates x[r, k] * w[o, k] into its partial
 *     with fmaf, piece after piece, element after element (no reassociation: fmaf is one
 *     correctly rounded operation on the host, the emulator and the device alike);
 *   - the 32 partials go to shared memory and are added in lane order 0..31 by one lane.
 * A row is computed by the same sequence of operations whether it is alone, one of 7 or
 * one of 256 rows, whether it is a decode token or a prefill position, so a request's
 * tokens do not depend on its batch (README, DESIGN §5). Row tiles of R = 1, 4 or 16 rows
 * (picked by n) only choose how many rows share a weight load; rows past n in the last
 * tile load the tile's last valid row and are not written. When `in` is not a multiple
 * of 8 every call takes a scalar path (lane l on elements l, l + 32, ...): the path too
 * is fixed by `in` alone (a multiple of 8 needs 16-byte aligned x and W, checked). cuBLAS is not used: it picks its kernel (and split-K) by the
 * shape, so its rows are not batch-invariant.
 *
 * Traffic: each weight row is read once per tile of R rows (out * in * 2 * ceil(n / R)
 * bytes; at n = 1 that is the weights once, the decode floor); x rows are re-read from
 * L1/L2 by every column's warp. Compute: n * out * in FMAs on CUDA cores — at batch 1
 * the kernel is bound by the weights' bandwidth, at batch 256 by FMA throughput (about
 * 10x below tensor cores: the large-batch cost the performance issue takes up with a
 * tensor-core kernel of the same fixed K order).
 *
 * Twin: host/cpu/f32_matrix.c f32_matmat on the same bf16 values as floats; tests:
 * tests/kernels/test_gemm.c gemm_matches_cpu, gemm_rows_are_batch_invariant (docs/ops.md).
 */
#include <stdint.h>

#include "cuda_common.cuh"
#include "gemm.h"

#define GEMM_WARPS 4     // warps per block
#define GEMM_MAX_TILE 16 // rows per tile, the largest

// Output columns per warp, one after another: 1 unless the matrix has enough columns to
// fill the GPU with fewer blocks (4 from 16384 columns: the fused gate/up, LM heads). It
// changes which warp computes a column, never how.
static int gemm_cols_per_warp(int out) { return out >= 16384 ? 4 : 1; }

struct alignas(16) gemm_bf16x8 {
    __nv_bfloat16 v[8];
};

// Block (b, t), warp w: columns o = (b * GEMM_WARPS + w) * cols + c, c < cols,
// of rows t * R .. t * R + R - 1 (those < n). VEC: 16-byte loads (in % 8 == 0, aligned).
// red: per warp, the R x 32 lane partials of one column (row stride 33: the reading lane
// walks a row while the others walk theirs, on distinct banks).
template <int R, bool VEC>
__global__ void __launch_bounds__(GEMM_WARPS * 32)
    gemm_rows_kernel(float* __restrict__ y, const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                     int n, int in, int out, int cols) {
    __shared__ float red[GEMM_WARPS][R][33];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r0 = blockIdx.y * R;
    const __nv_bfloat16* xr[R];
    for (int j = 0; j < R; j++) xr[j] = x + (size_t)min(r0 + j, n - 1) * in; // past n: the last row again
    for (int c = 0; c < cols; c++) {
        const int o = (blockIdx.x * GEMM_WARPS + warp) * cols + c;
        if (o >= out) break; // warp-uniform
        const __nv_bfloat16* wr = w + (size_t)o * in;
        float acc[R];
        for (int j = 0; j < R; j++) acc[j] = 0.0f;
        if (VEC) {
            for (int k = 8 * lane; k < in; k += 8 * 32) {
                const gemm_bf16x8 w8 = *reinterpret_cast<const gemm_bf16x8*>(wr + k);
                float wf[8];
                for (int e = 0; e < 8; e++) wf[e] = __bfloat162float(w8.v[e]);
                for (int j = 0; j < R; j++) {
                    const gemm_bf16x8 x8 = *reinterpret_cast<const gemm_bf16x8*>(xr[j] + k);
                    for (int e = 0; e < 8; e++) acc[j] = fmaf(wf[e], __bfloat162float(x8.v[e]), acc[j]);
                }
            }
        } else {
            for (int k = lane; k < in; k += 32) {
                const float wf = __bfloat162float(wr[k]);
                for (int j = 0; j < R; j++) acc[j] = fmaf(wf, __bfloat162float(xr[j][k]), acc[j]);
            }
        }
        for (int j = 0; j < R; j++) red[warp][j][lane] = acc[j];
        __syncwarp();
        if (lane < R && r0 + lane < n) {
            float s = 0.0f;
            for (int l = 0; l < 32; l++) s += red[warp][lane][l];
            y[(size_t)(r0 + lane) * out + o] = s;
        }
        __syncwarp(); // the next column overwrites red
    }
}

template <int R>
static void launch_rows(float* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int n, int in, int out, bool vec,
                        cudaStream_t st) {
    const int cols = gemm_cols_per_warp(out);
    dim3 grid(etx_ceil_div(out, GEMM_WARPS * cols), etx_ceil_div(n, R));
    if (vec)
        ETX_LAUNCH((gemm_rows_kernel<R, true>), grid, GEMM_WARPS * 32, 0, st, y, x, w, n, in, out, cols);
    else
        ETX_LAUNCH((gemm_rows_kernel<R, false>), grid, GEMM_WARPS * 32, 0, st, y, x, w, n, in, out, cols);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_gemm_cost(int n, int in, int out, double l2_bytes) {
    EtxCost c = {0, 0, 0, 0, 0, 0};
    if (n <= 0 || out <= 0) return c;
    const int tile = etx_gemm_tile_rows(n), tiles = etx_ceil_div(n, tile);
    const double w = (double)out * in * 2;
    c.bytes = w * (w > l2_bytes / 2 ? tiles : 1) + (double)n * in * 2 + (double)n * out * 4;
    c.flops = 2.0 * n * in * out;
    c.ctas = c.busy = (double)etx_ceil_div(out, GEMM_WARPS * gemm_cols_per_warp(out)) * tiles;
    c.launches = 1;
    return c;
}

extern "C" int etx_gemm_tile_rows(int n) { return n <= 1 ? 1 : n <= 4 ? 4 : GEMM_MAX_TILE; }

extern "C" void etx_gemm_bf16(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, void* stream) {
    if (n <= 0 || out <= 0) return;
    cudaStream_t st = (cudaStream_t)stream;
    if (in <= 0) {
        CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n * out * sizeof(float), st));
        return;
    }
    if (etx_ceil_div(n, GEMM_MAX_TILE) > 65535) { // gridDim.y
        fprintf(stderr, "[etx] etx_gemm_bf16: %d rows (at most %d per call)\n", n, 65535 * GEMM_MAX_TILE);
        abort();
    }
    const __nv_bfloat16* xb = reinterpret_cast<const __nv_bfloat16*>(x);
    const __nv_bfloat16* wb = reinterpret_cast<const __nv_bfloat16*>(w);
    // the path (and so the order of a row's sum) is fixed by `in` alone; 16-byte loads need
    // every row 16-byte aligned, which in % 8 == 0 gives from aligned bases
    const bool vec = in % 8 == 0;
    if (vec && (((uintptr_t)x % 16) != 0 || ((uintptr_t)w % 16) != 0)) {
        fprintf(stderr, "[etx] etx_gemm_bf16: x %p or w %p not 16-byte aligned (in %d)\n", (const void*)x,
                (const void*)w, in);
        abort();
    }
    switch (etx_gemm_tile_rows(n)) {
    case 1: launch_rows<1>(y, xb, wb, n, in, out, vec, st); break;
    case 4: launch_rows<4>(y, xb, wb, n, in, out, vec, st); break;
    default: launch_rows<GEMM_MAX_TILE>(y, xb, wb, n, in, out, vec, st); break;
    }
}
