/*
 * gemm.cu — y (n, out) f32 = x (n, in) bf16 · W^T, W (out, in) bf16: every projection of
 * the CUDA backend, decode and prefill alike.
 *
 * Batch invariance by construction. Each output y[r, o] is summed in one order that
 * depends only on `in`, never on n or on which other rows share the call:
 *   - lane l of the warp that owns column o takes the 8-element pieces l, l + 32, l + 64,
 *     ... of the row (16-byte loads), and adds x[r, k] * w[o, k] to its partial, piece
 *     after piece, element after element. The product of two bf16 values (8 significant
 *     bits each) is exact in f32, so acc + w x rounds once whether the compiler fuses it
 *     into an FMA (nvcc) or not (the emulator, -ffp-contract=off): the same bits either
 *     way, and no reassociation happens (no fast-math);
 *   - the 32 partials go to shared memory and are added in lane order 0..31 by one lane.
 * A row is computed by the same sequence of operations whether it is alone, one of 7 or
 * one of 256 rows, whether it is a decode token or a prefill position, so a request's
 * tokens do not depend on its batch (README, DESIGN §5). Row tiles of R = 1, 4, 8 or 16 rows
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
#include <string.h>

#include "cuda_common.cuh"
#include "device.h"
#include "gemm.h"
#include "norm.h"
#include "swiglu.h"

#define GEMM_WARPS 4     // warps per block
#define GEMM_MAX_TILE 16 // rows per tile, the largest

// Output columns per warp, C, computed together (each weight row's pieces loaded side by
// side, x loaded once for all C): natively 2 at one row, 1 with more (a warp per column
// keeps enough blocks to fill the GPU); under the emulator, where each column group costs
// two rounds of fiber switches (__syncwarp), C x R = 16 (R = 1, 4) or 32 (R = 16).
// C changes which warp computes a column and what it loads alongside, never a column's
// order of operations.
#define GEMM_COLS_GPU(R) ((R) == 1 ? 2 : 1)
#ifdef ETX_SIMT
#define GEMM_COLS(R) ((R) >= 8 ? 32 / (R) / 2 : 16 / (R))
#else
#define GEMM_COLS(R) GEMM_COLS_GPU(R)
#endif

struct alignas(16) gemm_bf16x8 {
    __nv_bfloat16 v[8];
};

// Block (b, t), warp w: columns o = (b * GEMM_WARPS + w) * C + c, c < C (those < out),
// of rows t * R .. t * R + R - 1 (those < n). VEC: 16-byte loads (in % 8 == 0, aligned).
// acc[c][j]: the lane's partial of (column c, row j); red: per warp, the C R x 32 lane
// partials (row stride 33: the reading lane walks a row while the others walk theirs, on
// distinct banks); lane c R + j then adds row (c, j) of red in lane order.
template <int R, int C, bool VEC>
__global__ void __launch_bounds__(GEMM_WARPS * 32)
    gemm_rows_kernel(float* __restrict__ y, const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                     int n, int in, int out, int acc_y, const float* __restrict__ bias) {
    ETX_PDL_ENTRY();
    __shared__ float red[GEMM_WARPS][C * R][33];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r0 = blockIdx.y * R, o0 = (blockIdx.x * GEMM_WARPS + warp) * C;
    if (o0 >= out) return; // warp-uniform
    const __nv_bfloat16* xr[R];
    for (int j = 0; j < R; j++) xr[j] = x + (size_t)min(r0 + j, n - 1) * in; // past n: the last row again
    const __nv_bfloat16* wr[C];
    for (int c = 0; c < C; c++) wr[c] = w + (size_t)min(o0 + c, out - 1) * in; // past out: the last column again
    float acc[C][R];
    for (int c = 0; c < C; c++)
        for (int j = 0; j < R; j++) acc[c][j] = 0.0f;
    if (VEC) {
        for (int k = 8 * lane; k < in; k += 8 * 32) {
            float wf[C][8];
            for (int c = 0; c < C; c++) {
                const gemm_bf16x8 w8 = *reinterpret_cast<const gemm_bf16x8*>(wr[c] + k);
                for (int e = 0; e < 8; e++) wf[c][e] = __bfloat162float(w8.v[e]);
            }
            for (int j = 0; j < R; j++) {
                const gemm_bf16x8 x8 = *reinterpret_cast<const gemm_bf16x8*>(xr[j] + k);
                float xf[8];
                for (int e = 0; e < 8; e++) xf[e] = __bfloat162float(x8.v[e]);
                for (int c = 0; c < C; c++)
                    for (int e = 0; e < 8; e++) acc[c][j] += wf[c][e] * xf[e];
            }
        }
    } else {
        for (int k = lane; k < in; k += 32)
            for (int j = 0; j < R; j++) {
                const float xf = __bfloat162float(xr[j][k]);
                for (int c = 0; c < C; c++) acc[c][j] += __bfloat162float(wr[c][k]) * xf;
            }
    }
    for (int c = 0; c < C; c++)
        for (int j = 0; j < R; j++) red[warp][c * R + j][lane] = acc[c][j];
    __syncwarp();
    const int c = lane / R, j = lane % R;
    if (lane < C * R && o0 + c < out && r0 + j < n) {
        float s = 0.0f;
        for (int l = 0; l < 32; l++) s += red[warp][lane][l];
        etx_gemm_out(y + (size_t)(r0 + j) * out + o0 + c, s, acc_y, bias, o0 + c);
    }
}

#ifdef ETX_SIMT
// The emulator's twin of gemm_rows_kernel: a thread per column o of a tile of R rows, doing
// exactly the warp's operations in exactly its order — for each lane l, the partial over
// l's pieces (8-element pieces l, l + 32, ... when in % 8 == 0, else elements l, l + 32,
// ...), then the 32 partials added in lane order — one thread after another, with no
// __syncwarp (each costs a round of fiber switches under the emulator, which made the
// engine suites several times slower). test_gemm runs both under the emulator and holds
// them to the same bits (etx_gemm_use_warp_kernel); natively only the warp kernel exists.
template <int R>
__global__ void gemm_twin_kernel(float* __restrict__ y, const __nv_bfloat16* __restrict__ x,
                                 const __nv_bfloat16* __restrict__ w, int n, int in, int out, int acc_y,
                                 const float* __restrict__ bias) {
    ETX_PDL_ENTRY();
    const int o = blockIdx.x * blockDim.x + threadIdx.x, r0 = blockIdx.y * R;
    if (o >= out) return;
    const int nr = min(R, n - r0), piece = in % 8 == 0 ? 8 : 1;
    const __nv_bfloat16* wr = w + (size_t)o * in;
    float s[R];
    for (int j = 0; j < R; j++) s[j] = 0.0f;
    for (int l = 0; l < 32; l++) {
        float acc[R];
        for (int j = 0; j < nr; j++) acc[j] = 0.0f;
        for (int k = piece * l; k < in; k += piece * 32)
            for (int e = 0; e < piece; e++) {
                const float wf = __bfloat162float(wr[k + e]);
                for (int j = 0; j < nr; j++) acc[j] += wf * __bfloat162float(x[(size_t)(r0 + j) * in + k + e]);
            }
        for (int j = 0; j < nr; j++) s[j] += acc[j];
    }
    for (int j = 0; j < nr; j++) etx_gemm_out(y + (size_t)(r0 + j) * out + o, s[j], acc_y, bias, o);
}
static int g_gemm_warp_kernel = 0; // etx_gemm_use_warp_kernel
#endif

template <int R>
static void launch_rows(float* y, const __nv_bfloat16* x, const __nv_bfloat16* w, int n, int in, int out, bool vec,
                        int acc_y, const float* bias, cudaStream_t st) {
#ifdef ETX_SIMT
    if (!g_gemm_warp_kernel) {
        ETX_LAUNCH(gemm_twin_kernel<R>, dim3(etx_ceil_div(out, 128), etx_ceil_div(n, R)), 128, 0, st, y, x, w, n, in,
                   out, acc_y, bias);
        CUDA_CHECK_LAUNCH();
        return;
    }
#endif
    constexpr int C = GEMM_COLS(R);
    dim3 grid(etx_ceil_div(out, GEMM_WARPS * C), etx_ceil_div(n, R));
    if (vec)
        ETX_LAUNCH((gemm_rows_kernel<R, C, true>), grid, GEMM_WARPS * 32, 0, st, y, x, w, n, in, out, acc_y, bias);
    else
        ETX_LAUNCH((gemm_rows_kernel<R, C, false>), grid, GEMM_WARPS * 32, 0, st, y, x, w, n, in, out, acc_y, bias);
    CUDA_CHECK_LAUNCH();
}

// The path of a call with in % 8 == 0: tensor cores (gemm_tc.cu) or this file's kernel.
// g_gemm_path: -1 auto (ETX_GEMM, then the device), 0 CUDA cores, 1 tensor cores.
static int g_gemm_path = -1;
extern "C" void etx_gemm_force_path(int path) { g_gemm_path = path < 0 ? -1 : path > 0; }

// ETX_GEMM=cuda-cores | tensor-cores | auto (unset): read once per process.
static int gemm_env_path(void) {
    static int env = -2;
    if (env == -2) {
        const char* e = getenv("ETX_GEMM");
        if (!e || !*e || strcmp(e, "auto") == 0) env = -1;
        else if (strcmp(e, "cuda-cores") == 0) env = 0;
        else if (strcmp(e, "tensor-cores") == 0) env = 1;
        else {
            fprintf(stderr, "[etx] ETX_GEMM=%s: expected cuda-cores, tensor-cores or auto\n", e);
            exit(EXIT_FAILURE);
        }
    }
    return env;
}

// The path asked for: etx_gemm_force_path's, else ETX_GEMM's (-1: auto).
static int gemm_wanted_path(void) { return g_gemm_path >= 0 ? g_gemm_path : gemm_env_path(); }

extern "C" EtxCost etx_gemm_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    // the path etx_gemm_bf16 takes on a card of sm_80 or later (every card the model knows)
    if (in % 8 == 0 && gemm_wanted_path() != 0)
        return etx_gemm_tc_cost(n, in, out, l2_bytes, ws_bytes, sms);
    EtxCost c = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (n <= 0 || out <= 0) return c;
    const int tile = etx_gemm_tile_rows(n), tiles = etx_ceil_div(n, tile);
    const double w = (double)out * in * 2;
    c.bytes = w * (w > l2_bytes / 2 ? tiles : 1) + (double)n * in * 2 + (double)n * out * 4;
    c.flops = 2.0 * n * in * out;
    // the GPU's grid, whichever build asks (the cost model predicts a GPU)
    const int cols = GEMM_COLS_GPU(tile);
    c.ctas = c.busy = (double)etx_ceil_div(out, GEMM_WARPS * cols) * tiles;
    c.launches = 1;
    return c;
}

extern "C" void etx_gemm_use_warp_kernel(int on) {
#ifdef ETX_SIMT
    g_gemm_warp_kernel = on;
    etx_gemm_tc_use_warp_kernel(on);
#else
    (void)on;
#endif
}

extern "C" int etx_gemm_uses_tensor_cores(void) {
    const int want = gemm_wanted_path(); // -1: auto
    if (want == 0) return 0;
#ifdef ETX_SIMT
    return 1; // the emulator has mma.sync
#else
    // sm_80 or later has mma.sync m16n8k16 with bf16; asked per device, since a process
    // may drive several
    const int major = etx_dev_cc_major();
    if (major >= 8) return 1;
    if (want == 1 && g_gemm_path < 0) { // asked for by ETX_GEMM, and impossible
        fprintf(stderr, "[etx] ETX_GEMM=tensor-cores: the device is sm_%d0 (mma.sync bf16 needs sm_80)\n", major);
        exit(EXIT_FAILURE);
    }
    return 0;
#endif
}

extern "C" int etx_gemm_tile_rows(int n) { return n <= 1 ? 1 : n <= 4 ? 4 : n <= 8 ? 8 : GEMM_MAX_TILE; }

// 16-byte loads need x and w 16-byte aligned (in % 8 == 0 keeps every row so): aborts,
// naming the caller, when they are not.
static void check_aligned(const char* who, const etx_bf16* x, const etx_bf16* w, int in) {
    if (((uintptr_t)x % 16) != 0 || ((uintptr_t)w % 16) != 0) {
        fprintf(stderr, "[etx] %s: x %p or w %p not 16-byte aligned (in %d)\n", who, (const void*)x, (const void*)w,
                in);
        abort();
    }
}

extern "C" void etx_gemm_bf16(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, void* stream) {
    etx_gemm_bf16_ws(y, x, w, n, in, out, NULL, 0, stream);
}

// y = x W^T (+ bias) (acc_y 0) or y += x W^T (acc_y 1), on the path `in` fixes.
static void gemm_run(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                     size_t ws_bytes, int acc_y, const float* bias, void* stream) {
    if (n <= 0 || out <= 0) return;
    cudaStream_t st = (cudaStream_t)stream;
    if (in <= 0) {
        if (bias) { // the empty sum plus the bias, row by row
            for (int r = 0; r < n; r++)
                CUDA_CHECK(cudaMemcpyAsync(y + (size_t)r * out, bias, (size_t)out * sizeof(float),
                                           cudaMemcpyDeviceToDevice, st));
        } else if (!acc_y) {
            CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n * out * sizeof(float), st));
        }
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
    if (vec) check_aligned("etx_gemm_bf16", x, w, in);
    if (vec && etx_gemm_uses_tensor_cores()) {
        if (acc_y) etx_gemm_tc_bf16_add(y, x, w, n, in, out, ws, ws_bytes, stream);
        else if (bias) etx_gemm_tc_bf16_bias(y, x, w, bias, n, in, out, ws, ws_bytes, stream);
        else etx_gemm_tc_bf16(y, x, w, n, in, out, ws, ws_bytes, stream);
        return;
    }
    switch (etx_gemm_tile_rows(n)) {
    case 1: launch_rows<1>(y, xb, wb, n, in, out, vec, acc_y, bias, st); break;
    case 4: launch_rows<4>(y, xb, wb, n, in, out, vec, acc_y, bias, st); break;
    case 8: launch_rows<8>(y, xb, wb, n, in, out, vec, acc_y, bias, st); break;
    default: launch_rows<GEMM_MAX_TILE>(y, xb, wb, n, in, out, vec, acc_y, bias, st); break;
    }
}

extern "C" void etx_gemm_bf16_ws(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                                 size_t ws_bytes, void* stream) {
    gemm_run(y, x, w, n, in, out, ws, ws_bytes, 0, NULL, stream);
}

extern "C" void etx_gemm_bf16_bias(float* y, const etx_bf16* x, const etx_bf16* w, const float* bias, int n, int in,
                                   int out, float* ws, size_t ws_bytes, void* stream) {
    gemm_run(y, x, w, n, in, out, ws, ws_bytes, 0, bias, stream);
}

extern "C" void etx_gemm_bf16_add(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                                  size_t ws_bytes, void* stream) {
    gemm_run(y, x, w, n, in, out, ws, ws_bytes, 1, NULL, stream);
}

extern "C" EtxCost etx_gemm_add_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    if (in % 8 == 0 && gemm_wanted_path() != 0) return etx_gemm_tc_add_cost(n, in, out, l2_bytes, ws_bytes, sms);
    EtxCost c = etx_gemm_cost(n, in, out, l2_bytes, ws_bytes, sms);
    c.bytes += (double)n * out * 4; // y read before it is added to
    return c;
}

// The residual add, then the next norm: one reduce launch does both where the call splits
// (etx_gemm_add_rmsnorm_fuses), else the add-GEMM and the stand-alone norm. The reduce's
// sums and add are gemm_slices_reduce_kernel's and its norm is norm.cu's order
// (rmsnorm.cuh), which needs float4 rows: anything unaligned takes the two launches.
extern "C" int etx_gemm_add_rmsnorm_fuses(int n, int in, int out, size_t ws_bytes) {
    return in % 8 == 0 && gemm_wanted_path() != 0 && etx_gemm_tc_add_rmsnorm_fuses(n, in, out, ws_bytes);
}

extern "C" void etx_gemm_bf16_add_rmsnorm(float* y, const etx_bf16* x, const etx_bf16* w, const float* gamma,
                                          float eps, etx_bf16* xb, int n, int in, int out, float* ws,
                                          size_t ws_bytes, void* stream) {
    if (n <= 0 || out <= 0) return;
    if (ws && etx_gemm_add_rmsnorm_fuses(n, in, out, ws_bytes) && etx_gemm_uses_tensor_cores() &&
        ((uintptr_t)y % 16) == 0 && ((uintptr_t)ws % 16) == 0 && ((uintptr_t)gamma % 16) == 0 &&
        ((uintptr_t)xb % 8) == 0) {
        check_aligned("etx_gemm_bf16_add_rmsnorm", x, w, in);
        etx_gemm_tc_bf16_add_rmsnorm(y, x, w, gamma, eps, xb, n, in, out, ws, ws_bytes, stream);
        return;
    }
    gemm_run(y, x, w, n, in, out, ws, ws_bytes, 1, NULL, stream);
    etx_rmsnorm_residual(xb, y, NULL, gamma, n, out, eps, stream); // with no delta y is only read
}

extern "C" EtxCost etx_gemm_add_rmsnorm_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    if (etx_gemm_add_rmsnorm_fuses(n, in, out, ws_bytes))
        return etx_gemm_tc_add_rmsnorm_cost(n, in, out, l2_bytes, ws_bytes, sms);
    EtxCost c = etx_gemm_add_cost(n, in, out, l2_bytes, ws_bytes, sms);
    const EtxCost a = etx_rmsnorm_cost(n, out, 0);
    c.bytes += a.bytes, c.flops += a.flops, c.ctas += a.ctas, c.busy += a.busy, c.launches += a.launches;
    return c;
}

// The gate/up projection with SwiGLU: one tensor-core launch with the epilogue, or (the
// CUDA-core path) the plain GEMM into scratch and etx_swiglu after it. Either way each sum
// and the product are the ones etx_gemm_bf16 + etx_swiglu give on that path.
extern "C" int etx_gemm_swiglu_needs_scratch(int in) { return !(in % 8 == 0 && etx_gemm_uses_tensor_cores()); }

extern "C" void etx_gemm_bf16_swiglu(etx_bf16* h, const etx_bf16* x, const etx_bf16* w, int n, int in, int out,
                                     float* ws, size_t ws_bytes, void* stream) {
    if (n <= 0 || out <= 0) return;
    if (out % 2 != 0) {
        fprintf(stderr, "[etx] etx_gemm_bf16_swiglu: %d columns (gate/up pairs need an even count)\n", out);
        abort();
    }
    if (!etx_gemm_swiglu_needs_scratch(in) && in > 0) {
        check_aligned("etx_gemm_bf16_swiglu", x, w, in);
        etx_gemm_tc_bf16_swiglu(h, x, w, n, in, out, ws, ws_bytes, stream);
        return;
    }
    if (!ws || ws_bytes < (size_t)n * out * sizeof(float)) {
        fprintf(stderr, "[etx] etx_gemm_bf16_swiglu: the CUDA-core path (in %d) needs a workspace of %d x %d floats "
                        "and got %zu bytes\n", in, n, out, ws ? ws_bytes : (size_t)0);
        abort();
    }
    etx_gemm_bf16(ws, x, w, n, in, out, stream);
    etx_swiglu(h, ws, n, out / 2, stream);
}

extern "C" EtxCost etx_gemm_swiglu_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    if (in % 8 == 0 && gemm_wanted_path() != 0) return etx_gemm_tc_swiglu_cost(n, in, out, l2_bytes, ws_bytes, sms);
    EtxCost c = etx_gemm_cost(n, in, out, l2_bytes, 0, sms);
    const EtxCost a = etx_swiglu_cost(n, out / 2);
    c.bytes += a.bytes, c.flops += a.flops, c.ctas += a.ctas, c.busy += a.busy, c.launches += a.launches;
    return c;
}

// Normalise, then project: one launch when the tensor-core kernel can normalise its own
// rows (etx_gemm_rmsnorm_fuses, on a device with tensor cores), else the stand-alone norm
// into xb and the GEMM on xb. The fused kernel's norm is the stand-alone kernel's
// arithmetic in its order (rmsnorm.cuh), so both give the same bits; that order is the
// norm's vector path, which needs 16-byte rows: anything else takes the two launches.
static void gemm_rmsnorm_run(void* y, int swiglu, const float* x, const float* gamma, float eps, etx_bf16* xb,
                             const etx_bf16* w, const float* bias, int n, int in, int out, float* ws, size_t ws_bytes,
                             void* stream) {
    if (n <= 0 || out <= 0) return;
    if (etx_gemm_rmsnorm_fuses(n, in, out) && etx_gemm_uses_tensor_cores() && ((uintptr_t)x % 16) == 0 &&
        ((uintptr_t)gamma % 16) == 0 && ((uintptr_t)w % 16) == 0) {
        etx_gemm_tc_rmsnorm(y, swiglu, x, gamma, eps, w, bias, n, in, out, stream);
        return;
    }
    etx_rmsnorm_residual(xb, (float*)x, NULL, gamma, n, in, eps, stream); // with no delta x is only read
    if (swiglu) etx_gemm_bf16_swiglu((etx_bf16*)y, xb, w, n, in, out, ws, ws_bytes, stream);
    else gemm_run((float*)y, xb, w, n, in, out, ws, ws_bytes, 0, bias, stream);
}

extern "C" int etx_gemm_rmsnorm_fuses(int n, int in, int out) {
    // the path etx_gemm_bf16 takes on sm_80 and later (and under the emulator): the cost
    // model and the plan ask it without a device
    return in % 8 == 0 && gemm_wanted_path() != 0 && etx_gemm_tc_rmsnorm_fuses(n, in, out, 0);
}

extern "C" void etx_gemm_bf16_rmsnorm(float* y, const float* x, const float* gamma, float eps, etx_bf16* xb,
                                      const etx_bf16* w, const float* bias, int n, int in, int out, float* ws,
                                      size_t ws_bytes, void* stream) {
    gemm_rmsnorm_run(y, 0, x, gamma, eps, xb, w, bias, n, in, out, ws, ws_bytes, stream);
}

extern "C" void etx_gemm_bf16_rmsnorm_swiglu(etx_bf16* h, const float* x, const float* gamma, float eps, etx_bf16* xb,
                                             const etx_bf16* w, int n, int in, int out, float* ws, size_t ws_bytes,
                                             void* stream) {
    gemm_rmsnorm_run(h, 1, x, gamma, eps, xb, w, NULL, n, in, out, ws, ws_bytes, stream);
}

extern "C" EtxCost etx_gemm_rmsnorm_cost(int n, int in, int out, double l2_bytes, int swiglu, int sms) {
    return etx_gemm_tc_rmsnorm_cost(n, in, out, l2_bytes, swiglu, sms);
}
