/*
 * gemm_tc.cu — y (n, out) f32 = x (n, in) bf16 · W^T, W (out, in) bf16, on tensor cores
 * (mma.sync m16n8k16, bf16 in, f32 accumulate; sm_80 and later): the projections of the
 * CUDA backend when in % 8 == 0 (gemm.cu dispatches; gemm.h says when).
 *
 * Math: y[r, o] = sum_k w[o, k] x[r, k]. Epilogues: y stored (f32); y added to (y += the
 * sum: the residual stream taking the O and down projections, so no delta buffer and no
 * add in the next norm); or, for the MLP's gate/up projection whose weight rows
 * interleave gate and up units (2u, 2u + 1), h[r, u] = bf16(silu(y[r, 2u]) y[r, 2u + 1])
 * (swiglu.cuh): the f32 gate/up activations never reach memory and the stand-alone SwiGLU
 * launch goes (issue 15 item 6). Prologue (at most 4 rows): x normalised by the block
 * itself from the f32 residual stream, in norm.cu's order (rmsnorm.cuh), so the norm
 * before a projection needs no launch of its own at batch 1.
 *
 * The weights are the mma's A operand (16 output columns x 16 k, row-major as W is
 * stored) and the rows of x its B operand (16 k x 8 rows, "col" = x's rows as stored): the
 * "swap AB" form of a skinny GEMM, so a batch of one row wastes 7 of the mma's 8 columns
 * but reads every weight once, which is what the decode step pays for.
 *
 * Batch invariance by construction. Each output's sum has one shape, fixed by `in` alone:
 *   - k runs in chunks of 32 (chunk c = k 32c .. 32c + 31; past `in` the values are 0),
 *     and the chunks in S contiguous slices of P = ceil(chunks / S) (slice v: chunks
 *     v P .. v P + P - 1, the last ones possibly short or empty), S = tc_slices(in): 8,
 *     or 16 when there are at least 128 chunks (in >= 4096);
 *   - a slice's partial starts at 0 and adds its chunks in order, each chunk two mma's
 *     of 16 products;
 *   - the output is 0 + p_0 + p_1 + ... + p_(S-1), added in slice order.
 *   Here warp w computes slices w, w + WARPS, ... of every output of its block's tile (16
 *   warps with 16 slices, one each, for a narrow projection at small batches, whose few
 *   tiles need the warps; else 8 warps, one or two slices each) and one thread adds the S
 *   partials; gemm_tc_tiled_kernel (large batches) has each warp run all S slices of its
 *   own outputs in turn. Same operations, same order, same bits.
 *   Which rows share the mma's 8 columns, how many tiles a block has (MT x NT below) and
 *   where a row sits in them change nothing in that sequence: the tensor core computes
 *   each D[m][n] from row m of A, column n of B and C[m][n] alone. So a row's bits do not
 *   depend on n or on the other rows (tests/kernels/test_gemm.c holds that on the GPU).
 * What the GPU's tensor core does inside one mma (the order and the rounding of its 16
 * additions) is not specified by NVIDIA; measurements (Fasi, Higham, Mikaitis, Pranesh,
 * "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021) found exact products and
 * additions that truncate rather than round. So the kernel and its CPU twin agree within
 * a bound on a GPU (test_gemm.c derives it), and bit for bit under the emulator, whose
 * mma adds the 16 products one by one in k order, rounding to nearest (simt.h).
 *
 * The k order inside a chunk. Lane (g, t) (g = lane / 4, t = lane % 4) loads 16 bytes —
 * k 32c + 8t .. 32c + 8t + 7 — of each weight row it serves (g and g + 8 of the tile) and
 * of each x row (g of the n-tile), and gives the first 4 to the chunk's first mma and the
 * last 4 to its second. The mma's logical k (PTX's fragment layout: lane (g, t) holds k
 * 2t, 2t + 1, 2t + 8, 2t + 9) therefore maps to memory k as, for mma s in {0, 1}:
 *   logical 2t + e      -> 32c + 8t + 4s + e        (e in {0, 1})
 *   logical 8 + 2t + e  -> 32c + 8t + 4s + 2 + e
 * A and B take the same map, so each product pairs w[o, k] with x[r, k]; the emulator's
 * twin below and test_gemm's stated order follow the map.
 *
 * Traffic: the blocks are launched row tiles first when x is smaller than W (n <= out:
 * decode and small prefill chunks), so the blocks sharing a weight tile run together: W
 * comes from DRAM once (at any n up to out, not once per row tile as in column-first
 * order, which at batch 256 re-read the 67 MB gate/up matrix 8 times, more than L2 holds)
 * and x (n x in bf16, <= 4 MB at batch 256 of 8192) is re-read from L2; when x is larger,
 * column tiles first, x once and W re-read per row tile. y written once (f32, or bf16
 * for one of each two columns with the SwiGLU epilogue). Each warp's 16-byte
 * loads of one chunk land on 16 B x (2 MT + NT) rows, full 32-byte sectors per pair of
 * lanes. A warp keeps up to D of its chunks' loads in flight (D = 8 at n <= 8: 8 x 48 B
 * per lane, 12 KB per warp; a block of 16 warps, one per SM, as the o and down projections
 * have at batch 1, has 192 KB in flight). No shared-memory staging: each block's
 * warps read disjoint k ranges, so nothing in a block is read twice; across blocks x and W
 * tiles are re-read from L2 (the cost at large n: 2 (MT 16 + NT 8) bytes per 16 MT 8 NT
 * multiply-adds of a chunk's k, 16 FLOP/byte from L2 at MT = 2, NT = 4). The D chunks go
 * in two half-rounds of registers, each refilled as soon as it has been multiplied, so a
 * slice longer than one round (the down projection's 32 chunks) keeps loads outstanding
 * without a gap between rounds (126 registers at n <= 8: two blocks per SM).
 * L2 prefetch (etx_gemm_prefetch_next): a call may carry a range of a later projection's
 * weights; each block asks L2 for its share right after its own first weight loads
 * (tc_prefetch_share; sm_90: cp.async.bulk.prefetch.L2, which the TMA unit issues without
 * registers or load slots), so at batch 1, where a block's loads are one DRAM round trip
 * and the bandwidth is idle most of the kernel, the next projection's weights stream in
 * meanwhile (host/cuda/cuda_plan.c sizes it). No output depends on it.
 * Measured on an H200 (benchmarks/results/gpu-tc-h200-2026-12-04.md): 142 TFLOP/s at
 * 4096^3 (cuBLAS ~790, the CUDA-core kernel 13); at batch 1 a Llama-3.2-1B layer's four
 * GEMMs take 44 us against 25 us at the card's bandwidth.
 *
 * Twin: host/cpu/f32_matrix.c f32_matmat (tolerance), and under the emulator
 * gemm_tc_twin_kernel below (the same operations in the same order, a thread per output;
 * the engine suites run it, test_gemm holds the warp kernel to it bit for bit).
 */
#include <stdint.h>
#include <string.h>

#include "cuda_common.cuh"
#include "device.h"
#include "gemm.h"
#include "async_copy.cuh"
#include "mma.cuh"
#include "norm.h"
#include "rmsnorm.cuh"
#include "swiglu.cuh"

#define TC_MAX_SLICES 16 // slices of k per output, at most (tc_slices)
#define TC_WARPS 8       // warps per block of the tiled kernel and of gemm_tc_kernel (16 when wide)
#define TC_CHUNK 32

// Slices of an output's sum: 8, or 16 from 128 chunks (in >= 4096: the down projection of
// a 1B model, every projection of an 8B), a function of `in` alone. More slices let more
// warps share a long sum at batch 1 (a 16-warp block per column tile); fewer keep the
// slice sums that a split tile passes through the workspace at large batch (16 x n x out
// floats written and read) at half: the projections with in = 2048 are the narrow ones
// that split at batch 256.
static __host__ __device__ __forceinline__ int tc_slices(int in) {
    return (in + TC_CHUNK - 1) / TC_CHUNK >= 128 ? 16 : 8;
}

// Chunks per slice: slice v (v < tc_slices(in)) is chunks v per .. v per + per - 1 (those
// < the chunk count); a function of `in` alone.
static __host__ __device__ __forceinline__ int tc_slice_chunks(int in) {
    const int chunks = (in + TC_CHUNK - 1) / TC_CHUNK, sl = tc_slices(in);
    return (chunks + sl - 1) / sl;
}

// 8 bf16 as 4 registers of 2: .x = k 0,1; .y = k 2,3; .z = k 4,5; .w = k 6,7.
struct alignas(16) tc_u32x4 {
    uint32_t x, y, z, w;
};

static __device__ __forceinline__ tc_u32x4 tc_load(const __nv_bfloat16* p, bool ok) {
    if (!ok) return tc_u32x4{0, 0, 0, 0};
    return *reinterpret_cast<const tc_u32x4*>(p);
}


// Block b of the grid (linear, x fastest) prefetches its share of [pf, pf + pf_bytes)
// into L2 (etx_l2_prefetch): the range in 16-byte units split evenly over the blocks.
// pf_bytes < 2^32 (etx_gemm_prefetch_next checks).
static __device__ __forceinline__ void tc_prefetch_share(const char* pf, unsigned pf_bytes) {
    if (pf_bytes == 0) return;
    const unsigned nb = gridDim.x * gridDim.y, b = blockIdx.y * gridDim.x + blockIdx.x;
    const unsigned units = pf_bytes / 16, per = (units + nb - 1) / nb;
    const unsigned lo = min(b * per, units), hi = min(lo + per, units);
    etx_l2_prefetch(pf + 16 * (size_t)lo, 16 * (hi - lo));
}

// Block tile (bc, br): columns o0 = 16 MT bc .. + 16 MT - 1, rows r0 = 8 NT br .. + 8 NT - 1;
// rows_fast: (bc, br) = (blockIdx.y, blockIdx.x), the row tiles of a column block launched
// one after another (decode: each weight tile is read from DRAM once and the others hit
// L2), else (blockIdx.x, blockIdx.y). Lane (g, t) loads weight rows o0 + 16 i + g and
// o0 + 16 i + g + 8 (i < MT) and x rows r0 + 8 j + g (j < NT), clamped to the last valid
// one (not written). part: the warps' partial tiles, element (row jr, column m) at
// jr * 16 MT + m. Epilogues: y f32 (n, out), stored, or added to (acc_y: y += x W^T, the
// residual stream taking the O and down projections); SWIGLU: y is h, bf16 (n, out / 2),
// and h[r, o / 2] = silu_mul(y[r, o], y[r, o + 1]) for even o (W's rows interleave gate
// and up).
// NORM (MT = NT = 1, at most TC_NORM_ROWS rows a call): x is the f32 residual stream, and
// the block first normalises its rows into dynamic shared memory, bf16 (rows x in), in
// rmsnorm.cuh's canonical order with the norm's weight gamma: the same bits as the
// stand-alone norm (norm.cu) writing xb, so the fused and unfused paths agree on every
// row. Each block re-reads its rows (in 4 bytes each, twice: the sum of squares, then the
// scaled copy; from L2) and gamma: the redundant work that makes this worth it only for a
// few rows (gemm_tc_rmsnorm_fuses).
// Registers: at most 128 a thread for the one- and two-tile kernels (ptxas, sm_90: no
// spills), so that two 8-warp blocks or one 16-warp block fit an SM; the 8-tile kernel
// (17..32 rows) takes ~230, one block per SM.
template <int MT, int NT, bool SWIGLU, bool NORM, int SLICES, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, (MT * NT <= 2 && WARPS == 8) ? 2 : 1)
    gemm_tc_kernel(void* __restrict__ y, const void* __restrict__ xv, const __nv_bfloat16* __restrict__ w,
                   const float* __restrict__ gamma, float eps, int n, int in, int out, int rows_fast, int acc_y,
                   const float* __restrict__ bias, const char* __restrict__ pf, unsigned pf_bytes) {
    static_assert(!NORM || (MT == 1 && NT == 1), "the fused norm is for the one-tile (n <= 8) kernel");
    static_assert(SLICES % WARPS == 0, "a warp runs whole slices");
    constexpr int TM = 16 * MT, TN = 8 * NT, THREADS = WARPS * 32;
    constexpr int SPW = SLICES / WARPS; // slices per warp: warp w runs slices w, w + WARPS, ...
    __shared__ float part[WARPS][TN * TM];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int o0 = (rows_fast ? blockIdx.y : blockIdx.x) * TM, r0 = (rows_fast ? blockIdx.x : blockIdx.y) * TN;
    const __nv_bfloat16* wa[MT][2];
    for (int i = 0; i < MT; i++)
        for (int h = 0; h < 2; h++) wa[i][h] = w + (size_t)min(o0 + 16 * i + 8 * h + g, out - 1) * in + 8 * t;
    // The warp's slices advance together, chunk offset j = 0 .. per - 1 within each (slice
    // s's chunk (w + WARPS s) per + j), in half-rounds of H offsets and two register
    // buffers: while one half-round is multiplied the next one's loads are in flight, so a
    // long slice (the down projection: 16 chunks at in = 8192) keeps loads outstanding with
    // no gap between rounds. Each slice's chunks still go in order into its own accumulator.
    // D chunks in flight per warp at most, whatever the slices per warp.
    constexpr int D = MT * NT == 1 ? 8 : MT * NT == 2 ? 4 : 2;
    constexpr int H = D / 2 / SPW > 0 ? D / 2 / SPW : 1;
    const int chunks = (in + TC_CHUNK - 1) / TC_CHUNK, per = tc_slice_chunks(in);
    int base[SPW]; // slice s's first chunk
    for (int sl = 0; sl < SPW; sl++) base[sl] = (warp + WARPS * sl) * per;
    auto chunk_ok = [&](int sl, int j) { return j < per && base[sl] + j < chunks; };
    tc_u32x4 av0[H][SPW][MT][2], av1[H][SPW][MT][2], bv0[H][SPW][NT], bv1[H][SPW][NT];
    auto load_w = [&](tc_u32x4(&av)[H][SPW][MT][2], int j0) {
        for (int u = 0; u < H; u++)
            for (int sl = 0; sl < SPW; sl++) {
                const int k = TC_CHUNK * (base[sl] + j0 + u);
                const bool ok = chunk_ok(sl, j0 + u) && k + 8 * t < in; // in % 8 == 0: a lane's 8 all in or out
                for (int i = 0; i < MT; i++)
                    for (int h = 0; h < 2; h++) av[u][sl][i][h] = tc_load(wa[i][h] + k, ok);
            }
    };
    // The first two half-rounds' weights are loaded before the grid-dependency wait: no
    // kernel writes the weights (the backend marks them read-only, etx_dev_mark_readonly),
    // so with programmatic dependent launch their DRAM latency overlaps the kernel before
    // this one (the one that produces x), which is most of a small projection's time at
    // batch 1: at in = 2048 a warp's whole share is these two. x is read only after the wait.
    load_w(av0, 0);
    load_w(av1, H);
    // then this block's share of the launch's L2 prefetch (pf: weights of a later
    // projection, read-only like w, so before the wait too), after its own loads
    tc_prefetch_share(pf, pf_bytes);
    ETX_PDL_ENTRY();
    const __nv_bfloat16* xb[NT];
    if (NORM) {
        // rows r0 .. r0 + nr - 1 normalised into xs (bf16, nr x in); lanes past them read
        // the last one, as the unfused kernel's clamped rows do
        ETX_DYNAMIC_SMEM(__nv_bfloat16, xs);
        __shared__ float red[32], inv_s[TN];
        const int nr = min(TN, n - r0);
        etx_rms_rows_to_bf16(xs, static_cast<const float*>(xv) + (size_t)r0 * in, gamma, nr, in, eps, red, inv_s);
        for (int j = 0; j < NT; j++) xb[j] = xs + (size_t)min(8 * j + g, nr - 1) * in + 8 * t;
    } else {
        const __nv_bfloat16* x = static_cast<const __nv_bfloat16*>(xv);
        for (int j = 0; j < NT; j++) xb[j] = x + (size_t)min(r0 + 8 * j + g, n - 1) * in + 8 * t;
    }
    auto load_x = [&](tc_u32x4(&bv)[H][SPW][NT], int j0) {
        for (int u = 0; u < H; u++)
            for (int sl = 0; sl < SPW; sl++) {
                const int k = TC_CHUNK * (base[sl] + j0 + u);
                const bool ok = chunk_ok(sl, j0 + u) && k + 8 * t < in;
                for (int j = 0; j < NT; j++) bv[u][sl][j] = tc_load(xb[j] + k, ok);
            }
    };
    float acc[SPW][MT][NT][4];
    for (int sl = 0; sl < SPW; sl++)
        for (int i = 0; i < MT; i++)
            for (int j = 0; j < NT; j++)
                for (int e = 0; e < 4; e++) acc[sl][i][j][e] = 0.0f;
    auto multiply = [&](const tc_u32x4(&av)[H][SPW][MT][2], const tc_u32x4(&bv)[H][SPW][NT], int j0) {
        for (int u = 0; u < H; u++)
            for (int sl = 0; sl < SPW; sl++) {
                if (!chunk_ok(sl, j0 + u)) continue; // warp-uniform
                for (int i = 0; i < MT; i++) {
                    const uint32_t a0[4] = {av[u][sl][i][0].x, av[u][sl][i][1].x, av[u][sl][i][0].y, av[u][sl][i][1].y};
                    const uint32_t a1[4] = {av[u][sl][i][0].z, av[u][sl][i][1].z, av[u][sl][i][0].w, av[u][sl][i][1].w};
                    for (int j = 0; j < NT; j++) {
                        const uint32_t b0[2] = {bv[u][sl][j].x, bv[u][sl][j].y}, b1[2] = {bv[u][sl][j].z, bv[u][sl][j].w};
                        etx_mma_bf16_16816(acc[sl][i][j], a0, b0); // k 8t + 0..3
                        etx_mma_bf16_16816(acc[sl][i][j], a1, b1); // k 8t + 4..7
                    }
                }
            }
    };
    load_x(bv0, 0);
    load_x(bv1, H);
    for (int j0 = 0; j0 < per; j0 += 2 * H) { // buffer 0 holds offsets j0.., buffer 1 j0 + H..
        multiply(av0, bv0, j0);
        if (j0 + 2 * H < per) load_w(av0, j0 + 2 * H), load_x(bv0, j0 + 2 * H);
        if (j0 + H >= per) break;
        multiply(av1, bv1, j0 + H);
        if (j0 + 3 * H < per) load_w(av1, j0 + 3 * H), load_x(bv1, j0 + 3 * H);
    }
    // The SLICES slice sums added in slice order, WARPS at a time: round sl puts slice
    // WARPS sl + v (warp v's acc[sl]) in part[v], and the threads add part[0..WARPS-1] to
    // their outputs' running sums. C fragment: acc[.][i][j][e] is column 16 i + g + 8 (e / 2),
    // row 8 j + 2 t + e % 2.
    constexpr int NQ = (TN * TM / (SWIGLU ? 2 : 1) + THREADS - 1) / THREADS; // outputs (units) per thread
    float run[NQ], run_up[NQ];
    for (int k = 0; k < NQ; k++) run[k] = 0.0f, run_up[k] = 0.0f;
    for (int sl = 0; sl < SPW; sl++) {
        for (int i = 0; i < MT; i++)
            for (int j = 0; j < NT; j++)
                for (int e = 0; e < 4; e++)
                    part[warp][(8 * j + 2 * t + e % 2) * TM + 16 * i + g + 8 * (e / 2)] = acc[sl][i][j][e];
        __syncthreads();
        for (int k = 0; k < NQ; k++) {
            const int q = threadIdx.x + k * THREADS;
            if (SWIGLU) { // unit q: gate in column 2u, up in 2u + 1 of its row
                if (q >= TN * TM / 2) continue;
                const int jr = q / (TM / 2), m = 2 * (q % (TM / 2));
                for (int v = 0; v < WARPS; v++) run[k] += part[v][jr * TM + m];
                for (int v = 0; v < WARPS; v++) run_up[k] += part[v][jr * TM + m + 1];
            } else {
                if (q >= TN * TM) continue;
                for (int v = 0; v < WARPS; v++) run[k] += part[v][q];
            }
        }
        __syncthreads(); // part is rewritten by the next round
    }
    for (int k = 0; k < NQ; k++) {
        const int q = threadIdx.x + k * THREADS;
        if (SWIGLU) {
            if (q >= TN * TM / 2) continue;
            const int jr = q / (TM / 2), m = 2 * (q % (TM / 2));
            if (r0 + jr >= n || o0 + m >= out) continue; // out is even: o0 + m + 1 < out too
            static_cast<__nv_bfloat16*>(y)[(size_t)(r0 + jr) * (out / 2) + (o0 + m) / 2] =
                etx_silu_mul_bf16(run[k], run_up[k]);
        } else {
            if (q >= TN * TM) continue;
            const int jr = q / TM, m = q % TM;
            if (r0 + jr >= n || o0 + m >= out) continue;
            etx_gemm_out(static_cast<float*>(y) + (size_t)(r0 + jr) * out + o0 + m, run[k], acc_y, bias, o0 + m);
        }
    }
}

// -- large batches: the tiled kernel ------------------------------------------------
//
// Block tile: TT_BM = 128 output columns (weight rows) x BN = 32 NT rows of x; 8 warps as
// 2 (columns) x 4 (rows), warp (wc, wr) owning columns 64 wc .. + 63 (4 m-tiles) and rows
// NT 8 wr .. + 8 NT - 1 (NT n-tiles) of it, every output's whole sum: the warp runs the 8
// slices one after another (acc restarted at each slice start, added to `total` at its
// end), chunk after chunk in order, the same two mma's per chunk as gemm_tc_kernel and the
// same k map (a lane's 16 bytes at k 8t of the chunk, first half to the first mma) — so
// the same bits. The chunks stream through TT_STAGES stages of shared memory filled by
// cp.async (each stage: the tile's 128 weight rows and BN x rows, 64 bytes of k each),
// loaded TT_STAGES - 1 chunks ahead of the one being multiplied (dynamic shared memory:
// 3 x (128 + BN) x 64 bytes, 36 or 48 KB); the first stages'
// weights are requested before the grid-dependency wait, as gemm_tc_kernel's first round.
//
// BN = 256 (NT = 8, more than 128 rows): the running totals of a warp's 64 x 64 outputs
// (128 per thread) no longer fit in registers beside the slice accumulators, so they live
// in shared memory (128 KB: thread q's total (i, j, e) at ((i NT + j) 4 + e) 256 + q, the
// 256 threads on consecutive words), read and written once per slice end and at the
// epilogue: 200 KB of dynamic shared memory in all, which the launcher allows with
// cudaFuncSetAttribute once per device. The sum's order is unchanged (total + slice).
//
// Traffic: per chunk a block loads (128 + BN) x 64 bytes from L2 for 128 BN 32 2 FLOPs:
// 43.7 FLOP per L2 byte at BN = 64, 64 at BN = 128, 85.3 at BN = 256 (gemm_tc_kernel: 16), and every
// operand byte in shared memory is read by 2 (x) or 4 (W) warps. Shared memory reads are
// LDS.128 by quarter-warps over 128 contiguous bytes (2 rows of 64): no bank conflicts;
// cp.async stores likewise. 204 registers a thread (ptxas, sm_90): one block per SM,
// whose 3-stage pipeline is what hides latency. The slice split below aims at
// TT_MIN_BLOCKS blocks, about one per SM of an H100. Used when the grid, so split, has at
// least TT_USE_BLOCKS blocks (n > 32): with fewer, fatter blocks leave too many SMs idle,
// where gemm_tc_kernel's 16-column tiles do not; from half the card on, its 3-5x less L2
// traffic than gemm_tc_kernel's (16 FLOPs per L2 byte) outweighs the idle SMs (the cost
// model: a 1536-wide projection at 64 rows, 96 blocks, 2.1 us against 5.9).
#define TT_BM 128
#define TT_STAGES 3
#define TT_MIN_BLOCKS 128
#define TT_USE_BLOCKS 64
#define TT_MAX_SPLIT 8 // blocks per tile at most (each runs whole slices: 8 divides 8 and 16)

// Slice split (narrow outputs, gridDim.z = Z > 1, Z <= 8): block z runs slices
// S z / Z .. S (z + 1) / Z - 1 (S = tc_slices(in)) of its tile and stores each slice's sum in
// ws[slice] ((S, n, out) f32) instead of adding it to the total; gemm_slices_reduce_kernel
// then forms 0 + p_0 + ... + p_(S-1) in order (the
// same additions, so the same bits) and the epilogue. Z blocks per tile instead of one is
// what gives a 2048-wide projection at batch 256 (16 x 2 tiles) enough blocks.
template <int NT, bool SWIGLU>
__global__ void __launch_bounds__(TC_WARPS * 32, 1)
    gemm_tc_tiled_kernel(void* __restrict__ y, float* __restrict__ ws, const __nv_bfloat16* __restrict__ x,
                         const __nv_bfloat16* __restrict__ w, int n, int in, int out, int rows_fast, int acc_y,
                         const float* __restrict__ bias) {
    constexpr int MT = 4, BN = 32 * NT;
    // the stages, in dynamic shared memory (tt_smem_bytes: 36 or 48 KB, within the default
    // limit): static arrays of every instantiation would sit in the emulator's shared
    // section, which it copies at every switch between resident blocks of any kernel
    ETX_DYNAMIC_SMEM(__nv_bfloat16, smem);
    __nv_bfloat16 (*sw)[TT_BM * TC_CHUNK] = reinterpret_cast<__nv_bfloat16 (*)[TT_BM * TC_CHUNK]>(smem); // [row][k]
    __nv_bfloat16 (*sx)[BN * TC_CHUNK] =
        reinterpret_cast<__nv_bfloat16 (*)[BN * TC_CHUNK]>(smem + TT_STAGES * TT_BM * TC_CHUNK);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int wc = warp % 2, wr = warp / 2;
    const int o0 = (rows_fast ? blockIdx.y : blockIdx.x) * TT_BM, r0 = (rows_fast ? blockIdx.x : blockIdx.y) * BN;
    const int chunks = (in + TC_CHUNK - 1) / TC_CHUNK, per = tc_slice_chunks(in);
    const int n_slices = tc_slices(in);
    const int split = gridDim.z, s_lo = blockIdx.z * (n_slices / split), s_hi = s_lo + n_slices / split;
    const int cb = min(chunks, s_lo * per), ce = min(chunks, s_hi * per); // this block's chunks

    // stage s <- chunk c: thread q copies 16-byte pieces q, q + 256, ... (piece p: row p / 4,
    // k 8 (p % 4) of the chunk); rows past out / n repeat the last (never written), k past
    // `in` is zero-filled
    // pieces [p0, p1): the weight rows' are 0 .. 4 TT_BM - 1, x's the rest
    auto load_pieces = [&](int s, int c, int p0, int p1) {
        for (int p = p0 + threadIdx.x; p < p1; p += TC_WARPS * 32) {
            const int row = p / 4, k = TC_CHUNK * c + 8 * (p % 4);
            const bool is_w = row < TT_BM;
            const __nv_bfloat16* src = is_w ? w + (size_t)min(o0 + row, out - 1) * in
                                            : x + (size_t)min(r0 + row - TT_BM, n - 1) * in;
            __nv_bfloat16* dst = is_w ? &sw[s][row * TC_CHUNK + 8 * (p % 4)] : &sx[s][(row - TT_BM) * TC_CHUNK + 8 * (p % 4)];
            etx_cp_async16(dst, k < in ? src + k : src, k < in ? 16 : 0);
        }
    };
    auto load = [&](int s, int c) { load_pieces(s, c, 0, (TT_BM + BN) * 4); };
    // the running totals: registers, or (STOT: BN = 256) shared memory after the stages
    constexpr bool STOT = NT > 4;
    float acc[MT][NT][4], total[STOT ? 1 : MT][STOT ? 1 : NT][4];
    float* tot_s = reinterpret_cast<float*>(smem + TT_STAGES * (TT_BM + BN) * TC_CHUNK);
    auto tot = [&](int i, int j, int e) -> float& {
        return STOT ? tot_s[((i * NT + j) * 4 + e) * (TC_WARPS * 32) + threadIdx.x] : total[STOT ? 0 : i][STOT ? 0 : j][e];
    };
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f, tot(i, j, e) = 0.0f;
    // C fragment: acc[i][j][e] (and total) is output column frag_col(i, e), row frag_row(j, e)
    auto frag_col = [&](int i, int e) { return o0 + 64 * wc + 16 * i + g + 8 * (e / 2); };
    auto frag_row = [&](int j, int e) { return r0 + 8 * NT * wr + 8 * j + 2 * t + e % 2; };
    // slice v ends: total += its sum (one block per tile) or ws[v] = its sum (split); the
    // next slice starts from 0
    auto close_slice = [&](int v) {
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    if (split == 1) {
                        tot(i, j, e) += acc[i][j][e];
                    } else {
                        const int col = frag_col(i, e), row = frag_row(j, e);
                        if (row < n && col < out) ws[((size_t)v * n + row) * out + col] = acc[i][j][e];
                    }
                    acc[i][j][e] = 0.0f;
                }
    };
    // The first stages' weights are requested before the grid-dependency wait (read-only
    // memory: their latency overlaps the kernel before this one), x's after it; stage s's
    // copies then complete with commit group s (group 0 also holds the later stages' weights)
    for (int s = 0; s < TT_STAGES - 1; s++)
        if (cb + s < ce) load_pieces(s, cb + s, 0, TT_BM * 4);
    ETX_PDL_ENTRY();
    for (int s = 0; s < TT_STAGES - 1; s++) {
        if (cb + s < ce) load_pieces(s, cb + s, TT_BM * 4, (TT_BM + BN) * 4);
        etx_cp_async_commit();
    }
    for (int c = cb; c < ce; c++) {
        const int stage = (c - cb) % TT_STAGES;
        etx_cp_async_wait<TT_STAGES - 2>(); // this thread's copies of chunk c have landed
        __syncthreads();                    // everyone's; and the stage loaded next is no longer read
        if (c + TT_STAGES - 1 < ce) load((c - cb + TT_STAGES - 1) % TT_STAGES, c + TT_STAGES - 1);
        etx_cp_async_commit();
        if (c > cb && c % per == 0) close_slice(c / per - 1);
        const __nv_bfloat16* cw = sw[stage];
        const __nv_bfloat16* cx = sx[stage];
        tc_u32x4 bv[NT];
#pragma unroll
        for (int j = 0; j < NT; j++)
            bv[j] = *reinterpret_cast<const tc_u32x4*>(&cx[(NT * 8 * wr + 8 * j + g) * TC_CHUNK + 8 * t]);
#pragma unroll
        for (int i = 0; i < MT; i++) {
            const int row = 64 * wc + 16 * i + g;
            const tc_u32x4 a_lo = *reinterpret_cast<const tc_u32x4*>(&cw[row * TC_CHUNK + 8 * t]);
            const tc_u32x4 a_hi = *reinterpret_cast<const tc_u32x4*>(&cw[(row + 8) * TC_CHUNK + 8 * t]);
            const uint32_t a0[4] = {a_lo.x, a_hi.x, a_lo.y, a_hi.y}; // k 8t + 0..3
            const uint32_t a1[4] = {a_lo.z, a_hi.z, a_lo.w, a_hi.w}; // k 8t + 4..7
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const uint32_t b0[2] = {bv[j].x, bv[j].y}, b1[2] = {bv[j].z, bv[j].w};
                etx_mma_bf16_16816(acc[i][j], a0, b0);
                etx_mma_bf16_16816(acc[i][j], a1, b1);
            }
        }
    }
    // the slice of the last chunk ends, then each empty slice of the range adds its 0 (as
    // gemm_tc_kernel's sum adds an empty warp's 0)
    for (int v = cb < ce ? (ce - 1) / per : s_lo; v < s_hi; v++) close_slice(v);
    if (split > 1) return; // gemm_slices_reduce_kernel finishes
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = frag_col(i, e), row = frag_row(j, e);
                const float v = tot(i, j, e);
                if (SWIGLU) { // gate in column 2u (even g), up in 2u + 1: lane + 4 holds it
                    const float up = __shfl_down_sync(0xffffffffu, v, 4);
                    if (g % 2 == 0 && row < n && col < out)
                        static_cast<__nv_bfloat16*>(y)[(size_t)row * (out / 2) + col / 2] = etx_silu_mul_bf16(v, up);
                } else if (row < n && col < out) {
                    etx_gemm_out(static_cast<float*>(y) + (size_t)row * out + col, v, acc_y, bias, col);
                }
            }
}

// y[r, o] = 0 + ws[0][r][o] + ... + ws[7][r][o] in slice order (SWIGLU: h[r, u] from the
// sums of columns 2u and 2u + 1); a thread per output (per unit), consecutive threads on
// consecutive columns. Traffic: 8 n out 4 bytes read (from L2: the tiled kernel just wrote
// them), the output written.
template <bool SWIGLU>
__global__ void gemm_slices_reduce_kernel(void* __restrict__ y, const float* __restrict__ ws, int n, int out,
                                          int n_slices, int acc_y, const float* __restrict__ bias) {
    ETX_PDL_ENTRY();
    const int per_row = SWIGLU ? out / 2 : out;
    const long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= (long long)n * per_row) return;
    const int r = (int)(q / per_row), o = (int)(q % per_row) * (SWIGLU ? 2 : 1);
    float s = 0.0f, u = 0.0f;
    for (int v = 0; v < n_slices; v++) s += ws[((size_t)v * n + r) * out + o];
    if (SWIGLU) {
        for (int v = 0; v < n_slices; v++) u += ws[((size_t)v * n + r) * out + o + 1];
        static_cast<__nv_bfloat16*>(y)[(size_t)r * per_row + o / 2] = etx_silu_mul_bf16(s, u);
    } else {
        etx_gemm_out(static_cast<float*>(y) + (size_t)r * out + o, s, acc_y, bias, o);
    }
}

// The split residual projection's reduce with the norm after it folded in (the norm's
// launch gone at large batch, where the O and down projections split):
//   x[r] += 0 + ws[0][r] + ... + ws[S-1][r]   (gemm_slices_reduce_kernel's sums and add:
//                                              the same bits in x)
//   xb[r] = bf16(gamma * (x[r] * inv)),  inv = rsqrt(mean(x[r]^2) + eps)
// with x[r]'s sum of squares in rmsnorm.cuh's canonical order: a block per row of
// T = etx_rms_threads(out) threads, thread q owning the float4s q, q + T, ... of the row
// and adding their squares in that order, then etx_block_sum, as the stand-alone norm's
// vector path does (norm.cu): xb gets the bits that kernel would write. Needs out % 4 == 0
// and 16-byte aligned x, ws, gamma (8-byte xb): tc_add_norm_rule and the caller check.
// Traffic per row: the S slice sums (from L2: the tiled kernel just wrote them), x read and
// written, xb written, gamma (L2); the stand-alone norm's second read of x is gone.
__global__ void gemm_slices_reduce_norm_kernel(float* __restrict__ x, __nv_bfloat16* __restrict__ xb,
                                               const float* __restrict__ ws, const float* __restrict__ gamma,
                                               float eps, int n, int out, int n_slices) {
    ETX_PDL_ENTRY();
    __shared__ float red[32];
    const int r = blockIdx.x, T = blockDim.x;
    etx_f32x4* x4 = reinterpret_cast<etx_f32x4*>(x + (size_t)r * out);
    float ss = 0.0f;
    for (int i = threadIdx.x; i < out / 4; i += T) {
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int v = 0; v < n_slices; v++) {
            const etx_f32x4 p = *reinterpret_cast<const etx_f32x4*>(ws + ((size_t)v * n + r) * out + 4 * i);
            for (int j = 0; j < 4; j++) s[j] += p.v[j];
        }
        etx_f32x4 a = x4[i];
        for (int j = 0; j < 4; j++) a.v[j] += s[j]; // etx_gemm_out's y + s
        x4[i] = a;
        ss = etx_rms_add_squares(ss, a);
    }
    ss = etx_block_sum(ss, red);
    const float inv = etx_rms_inv(ss, out, eps);
    const etx_f32x4* g4 = reinterpret_cast<const etx_f32x4*>(gamma);
    __nv_bfloat16* xr = xb + (size_t)r * out;
    for (int i = threadIdx.x; i < out / 4; i += T) {
        const etx_f32x4 a = x4[i], g = g4[i]; // a: this thread's own store above
        for (int j = 0; j < 4; j++) xr[4 * i + j] = etx_rms_apply(g.v[j], a.v[j], inv);
    }
}

#ifdef ETX_SIMT
// The emulator's twin of gemm_tc_kernel: a thread per output (o, r), doing the warp
// kernel's additions in its order (slice v's chunks in order, v = 0..7; in each chunk the
// emulated mma's 16 logical k of mma 0 then of mma 1, mapped to memory k as stated above;
// then the 8 partials in warp order), with no fiber switch per mma.
static __device__ float tc_twin_sum(const __nv_bfloat16* wr, const __nv_bfloat16* xr, int in) {
    const int chunks = (in + TC_CHUNK - 1) / TC_CHUNK, per = tc_slice_chunks(in);
    float s = 0.0f;
    for (int v = 0; v < tc_slices(in); v++) {
        float acc = 0.0f;
        for (int c = v * per; c < chunks && c < (v + 1) * per; c++)
            for (int m = 0; m < 2; m++)
                for (int kk = 0; kk < 16; kk++) {
                    const int t = (kk % 8) / 2, e = kk % 2;
                    const int k = TC_CHUNK * c + 8 * t + 4 * m + 2 * (kk / 8) + e;
                    const float p = k < in ? __bfloat162float(wr[k]) * __bfloat162float(xr[k]) : 0.0f;
                    acc = acc + p;
                }
        s += acc;
    }
    return s;
}

// SWIGLU: a thread per unit u (columns 2u, 2u + 1), the epilogue of the warp kernel.
// NORM: x is the f32 residual stream; each block normalises row r into dynamic shared
// memory (bf16, in elements) as the warp kernel does (rmsnorm.cuh: 128 threads playing the
// canonical partials), then the threads read it from there.
template <bool SWIGLU, bool NORM>
__global__ void gemm_tc_twin_kernel(void* __restrict__ y, const void* __restrict__ xv,
                                    const __nv_bfloat16* __restrict__ w, const float* __restrict__ gamma, float eps,
                                    int n, int in, int out, int acc_y, const float* __restrict__ bias,
                                    const char* __restrict__ pf, unsigned pf_bytes) {
    tc_prefetch_share(pf, pf_bytes); // the warp kernel's prefetch, so the engine suites check its ranges
    ETX_PDL_ENTRY();
    const int o = (blockIdx.x * blockDim.x + threadIdx.x) * (SWIGLU ? 2 : 1);
    for (int r = blockIdx.y; r < n; r += gridDim.y) {
        const __nv_bfloat16* xr;
        if (NORM) { // every thread of the block takes part (barriers), in range or not
            ETX_DYNAMIC_SMEM(__nv_bfloat16, xs);
            __shared__ float red[32], inv_s[1];
            etx_rms_rows_to_bf16(xs, static_cast<const float*>(xv) + (size_t)r * in, gamma, 1, in, eps, red, inv_s);
            xr = xs;
        } else {
            xr = static_cast<const __nv_bfloat16*>(xv) + (size_t)r * in;
        }
        if (o < out) {
            const float s = tc_twin_sum(w + (size_t)o * in, xr, in);
            if (SWIGLU)
                static_cast<__nv_bfloat16*>(y)[(size_t)r * (out / 2) + o / 2] =
                    etx_silu_mul_bf16(s, tc_twin_sum(w + (size_t)(o + 1) * in, xr, in));
            else
                etx_gemm_out(static_cast<float*>(y) + (size_t)r * out + o, s, acc_y, bias, o);
        }
        if (NORM) __syncthreads(); // xs is rewritten for the next row
    }
}
static int g_tc_warp_kernel = 0; // etx_gemm_use_warp_kernel (gemm.cu) sets both kernels' switch
extern "C" void etx_gemm_tc_use_warp_kernel(int on) { g_tc_warp_kernel = on; }
#endif

// Tiles per block by n: one 16 x 8 tile up to 8 rows (the decode batch; every weight
// read once), 16 x 16 up to 16, then 32 x 32. Only which rows share a block changes.
extern "C" int etx_gemm_tc_tile_rows(int n) { return n <= 8 ? 8 : n <= 16 ? 16 : 32; }
static int tc_tile_cols(int n) { return n <= 16 ? 16 : 32; }

// Which operand the launch order sweeps: the row tiles of a column block launched
// together (rows fastest) when x is the smaller of x and W, so W streams from DRAM once
// and x is re-read from L2 (decode; small prefill chunks); else the column tiles of a row
// block (large prefill chunks: W re-read, x once). Launch order only: no output changes.
static int tc_rows_fast(int n, int out) { return n <= out; }

// The L2 prefetch a call carries (etx_gemm_prefetch_next): set by the caller for its next
// tensor-core call on this thread, taken (and cleared) by that call. gemm_tc_kernel (and
// its twin) split it over their blocks; the tiled kernel, whose calls are bandwidth-bound,
// drops it.
typedef struct {
    const char* p;
    unsigned bytes;
} TcPrefetch;
static thread_local TcPrefetch t_prefetch = {NULL, 0};
static TcPrefetch tc_take_prefetch(void) {
    const TcPrefetch pf = t_prefetch;
    t_prefetch.p = NULL, t_prefetch.bytes = 0;
    return pf;
}
extern "C" void etx_gemm_prefetch_next(const void* p, size_t bytes) {
    if (bytes && (!p || ((uintptr_t)p % 16) != 0 || bytes % 16 != 0 || bytes >= (1ull << 32))) {
        fprintf(stderr, "[etx] etx_gemm_prefetch_next: %zu bytes at %p (16-byte aligned pieces, under 4 GB)\n", bytes,
                p);
        abort();
    }
    t_prefetch.p = bytes ? static_cast<const char*>(p) : NULL;
    t_prefetch.bytes = (unsigned)bytes;
}

// The fused norm of a call (NULL: x is bf16 and already normalised).
typedef struct {
    const float* x;     // (n, in) f32, the residual stream
    const float* gamma; // (in) the norm's weight
    float eps;
} TcNorm;

// The norm after a residual projection, folded into its split reduce (NULL: none):
// xb = bf16(rmsnorm(y) * gamma) once y += x W^T is complete (tc_add_norm_rule).
typedef struct {
    const float* gamma;  // (out) the next norm's weight
    float eps;
    __nv_bfloat16* xb;   // (n, out) bf16, the next projection's input
} TcNormAfter;

template <int MT, int NT, bool SWIGLU, bool NORM, int SLICES, int WARPS>
static void launch_tc_warps(void* y, const void* x, const __nv_bfloat16* w, const TcNorm* nm, int n, int in, int out,
                            int acc_y, const float* bias, TcPrefetch pf, cudaStream_t st) {
    const int tiles_c = etx_ceil_div(out, 16 * MT), tiles_r = etx_ceil_div(n, 8 * NT), rows_fast = tc_rows_fast(n, out);
    if ((rows_fast ? tiles_c : tiles_r) > 65535) { // gridDim.y
        fprintf(stderr, "[etx] etx_gemm_tc: %d rows x %d columns (at most 65535 tiles in gridDim.y)\n", n, out);
        abort();
    }
    const dim3 grid = rows_fast ? dim3(tiles_r, tiles_c) : dim3(tiles_c, tiles_r);
    // NORM: the block's normalised rows, bf16 (tc_norm_rule keeps them within TC_NORM_SMEM)
    const size_t smem = NORM ? (size_t)min(n, 8 * NT) * in * sizeof(__nv_bfloat16) : 0;
    ETX_LAUNCH((gemm_tc_kernel<MT, NT, SWIGLU, NORM, SLICES, WARPS>), grid, WARPS * 32, smem, st, y, x, w,
               nm ? nm->gamma : NULL, nm ? nm->eps : 0.0f, n, in, out, rows_fast, acc_y, bias, pf.p, pf.bytes);
    CUDA_CHECK_LAUNCH();
}

// 16 warps a block (one slice each) for sums of 16 slices (in >= 4096) when the one-tile
// kernel's grid has no more tiles than the card has SMs (the down projection at batch 1:
// 128 tiles): one block per SM either way, and twice the warps, so twice the loads in
// flight, where the 8-warp block left the card half idle (the H200 measured it at 55 % of
// its bandwidth); else 8 (more tiles: two 8-warp blocks per SM fit, no second wave of
// 16-warp blocks).
static int tc_wide(int n, int in, int out, int sms) {
    return tc_slices(in) == 16 && etx_gemm_tc_tile_rows(n) == 8 &&
           (long long)etx_ceil_div(out, 16) * etx_ceil_div(n, 8) <= sms;
}
static int g_tc_warps = 0; // etx_gemm_tc_force_warps: 0 auto
extern "C" void etx_gemm_tc_force_warps(int w) { g_tc_warps = w == 8 || w == 16 ? w : 0; }
// The warps per block asked for: etx_gemm_tc_force_warps, else ETX_TC_WARPS=8 | 16 in the
// environment (unset, empty or auto: 0, the rule), read once per process: the A/B switch
// of benchmarks/gpu_check.sh. The question it settles: a 16-warp block holds all of an
// SM's registers, so no block of the next kernel can be resident beside it before it
// ends, and programmatic dependent launch cannot start that kernel's weight loads early
// (the QKV projection after the down projection); 8-warp blocks leave room for one.
static int tc_warps_wanted(void) {
    static int env = -1;
    if (g_tc_warps) return g_tc_warps;
    if (env < 0) {
        const char* e = getenv("ETX_TC_WARPS");
        if (!e || !*e || strcmp(e, "auto") == 0) env = 0;
        else if (strcmp(e, "8") == 0 || strcmp(e, "16") == 0) env = atoi(e);
        else {
            fprintf(stderr, "[etx] ETX_TC_WARPS=%s: expected 8, 16 or auto\n", e);
            exit(EXIT_FAILURE);
        }
    }
    return env;
}

template <int MT, int NT, bool SWIGLU, bool NORM>
static void launch_tc(void* y, const void* x, const __nv_bfloat16* w, const TcNorm* nm, int n, int in, int out,
                      int acc_y, const float* bias, TcPrefetch pf, cudaStream_t st) {
    if (tc_slices(in) == 8) {
        launch_tc_warps<MT, NT, SWIGLU, NORM, 8, TC_WARPS>(y, x, w, nm, n, in, out, acc_y, bias, pf, st);
        return;
    }
    const int wanted = tc_warps_wanted();
    if (MT == 1 && NT == 1 && (wanted ? wanted == 16 : tc_wide(n, in, out, etx_dev_sm_count()))) {
        launch_tc_warps<1, 1, SWIGLU, NORM, 16, 16>(y, x, w, nm, n, in, out, acc_y, bias, pf, st);
        return;
    }
    launch_tc_warps<MT, NT, SWIGLU, NORM, 16, TC_WARPS>(y, x, w, nm, n, in, out, acc_y, bias, pf, st);
}

// Which kernel a call takes: g_tc_kernel -1 (auto: the tiled kernel for n > 32 when its
// grid, slices split over up to 8 blocks per tile if a workspace allows, reaches
// TT_USE_BLOCKS blocks), 0 gemm_tc_kernel, 1 the tiled one (tests; with the split the
// workspace allows).
static int g_tc_kernel = -1;
extern "C" void etx_gemm_tc_force_kernel(int k) { g_tc_kernel = k < 0 ? -1 : k > 0; }
// x rows per block / 32: 2 (64 rows) up to 64 rows, 4 (128) up to 128, else 8 (256) — the
// largest whose grid, split over at most TT_MAX_SPLIT blocks a tile, still reaches
// TT_MIN_BLOCKS (a narrow projection at large n: 1536 columns are 12 tiles of 128, which
// 256-row tiles would leave at 96 blocks and 128-row tiles bring to 192).
static long long tt_tiles_nt(int n, int out, int nt) {
    return (long long)etx_ceil_div(out, TT_BM) * etx_ceil_div(n, 32 * nt);
}
static int tt_nt(int n, int out) {
    int nt = n <= 64 ? 2 : n <= 128 ? 4 : 8;
    while (nt > 2 && tt_tiles_nt(n, out, nt) * TT_MAX_SPLIT < TT_MIN_BLOCKS) nt /= 2;
    return nt;
}
static long long tt_tiles(int n, int out) { return tt_tiles_nt(n, out, tt_nt(n, out)); }
// Blocks per tile for the tiled kernel: 1, or 2, 4, 8 until the grid has TT_MIN_BLOCKS,
// when the workspace holds the 8 slice sums.
static int g_tc_split = 0; // etx_gemm_tc_force_split: 0 auto
extern "C" void etx_gemm_tc_force_split(int z) { g_tc_split = z == 1 || z == 2 || z == 4 || z == 8 ? z : 0; }
static int tt_split(int n, int out, size_t ws_bytes) {
    if (ws_bytes < (size_t)TC_MAX_SLICES * n * out * sizeof(float)) return 1;
    if (g_tc_split) return g_tc_split;
    int z = 1;
    while (z < TT_MAX_SPLIT && tt_tiles(n, out) * z < TT_MIN_BLOCKS) z *= 2;
    return z;
}
// ETX_GEMM_TILED=0 | 1 (unset or auto: the rule), read once per process.
static int tc_env_kernel(void) {
    static int env = -2;
    if (env == -2) {
        const char* e = getenv("ETX_GEMM_TILED");
        if (!e || !*e || strcmp(e, "auto") == 0) env = -1;
        else if (strcmp(e, "0") == 0 || strcmp(e, "1") == 0) env = e[0] - '0';
        else {
            fprintf(stderr, "[etx] ETX_GEMM_TILED=%s: expected 0, 1 or auto\n", e);
            exit(EXIT_FAILURE);
        }
    }
    return env;
}
static int tc_use_tiled(int n, int out, size_t ws_bytes) {
    if (g_tc_kernel >= 0) return g_tc_kernel;
    if (tc_env_kernel() >= 0) return tc_env_kernel();
    if (n <= 32) return 0;
    return tt_tiles(n, out) * tt_split(n, out, ws_bytes) >= TT_USE_BLOCKS;
}
extern "C" int etx_gemm_tc_takes_tiled(int n, int out, size_t ws_bytes) { return tc_use_tiled(n, out, ws_bytes); }
extern "C" size_t etx_gemm_tc_workspace_bytes(int n, int out) {
    return (size_t)TC_MAX_SLICES * n * out * sizeof(float);
}

// Dynamic shared memory of the tiled kernel: the stages, and with NT = 8 the totals.
static size_t tt_smem_bytes(int nt) {
    const size_t stages = (size_t)TT_STAGES * (TT_BM + 32 * nt) * TC_CHUNK * sizeof(__nv_bfloat16);
    return nt > 4 ? stages + (size_t)TT_BM * 32 * nt * sizeof(float) : stages;
}
// A kernel asking for more than 48 KB of dynamic shared memory must say so first
// (cudaFuncSetAttribute, per device: each device has its own copy of the function's
// attributes); done once per (kernel variant, device), outside any stream capture (the
// decode step's graph is captured after a warm-up run that does it).
static void tt_allow_smem(const void* kernel, int variant, size_t bytes) {
    static int done[2][64];
    int dev = -1;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev >= 0 && dev < 64 && done[variant][dev]) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    if (dev >= 0 && dev < 64) done[variant][dev] = 1;
}

template <int NT, bool SWIGLU>
static void launch_tiled(void* y, const __nv_bfloat16* x, const __nv_bfloat16* w, const TcNormAfter* na, int n,
                         int in, int out, float* ws, size_t ws_bytes, int acc_y, const float* bias, cudaStream_t st) {
    const int tiles_c = etx_ceil_div(out, TT_BM), tiles_r = etx_ceil_div(n, 32 * NT), rows_fast = tc_rows_fast(n, out);
    if ((rows_fast ? tiles_c : tiles_r) > 65535) { // gridDim.y
        fprintf(stderr, "[etx] etx_gemm_tc: %d rows x %d columns (at most 65535 tiles in gridDim.y)\n", n, out);
        abort();
    }
    const int split = ws ? tt_split(n, out, ws_bytes) : 1;
    const dim3 grid = rows_fast ? dim3(tiles_r, tiles_c, split) : dim3(tiles_c, tiles_r, split);
    const size_t smem = tt_smem_bytes(NT); // <= 48 KB, but 200 KB with the totals (NT = 8)
    if (smem > 48 * 1024) tt_allow_smem((const void*)gemm_tc_tiled_kernel<NT, SWIGLU>, SWIGLU, smem);
    ETX_LAUNCH((gemm_tc_tiled_kernel<NT, SWIGLU>), grid, TC_WARPS * 32, smem, st, y, ws, x, w, n, in, out, rows_fast,
               acc_y, bias);
    CUDA_CHECK_LAUNCH();
    if (na) { // tc_add_norm_rule held (gemm_tc_run): split > 1, and the caller's y += x W^T
        ETX_LAUNCH(gemm_slices_reduce_norm_kernel, (unsigned)n, etx_rms_threads(out), 0, st, static_cast<float*>(y),
                   na->xb, (const float*)ws, na->gamma, na->eps, n, out, tc_slices(in));
        CUDA_CHECK_LAUNCH();
    } else if (split > 1) {
        const long long outs = (long long)n * (SWIGLU ? out / 2 : out);
        ETX_LAUNCH(gemm_slices_reduce_kernel<SWIGLU>, (unsigned)((outs + 255) / 256), 256, 0, st, y, (const float*)ws,
                   n, out, tc_slices(in), acc_y, bias);
        CUDA_CHECK_LAUNCH();
    }
}

// At most this many rows take the fused norm (NORM): each block normalises all of its
// rows itself, so the redundant reads grow with n (see tc_cost).
#define TC_NORM_ROWS 4
// ... and only while its normalised rows fit 32 KB of dynamic shared memory: with the
// block's static 8.5 KB (the partial tiles of 16 warps, the norm's reductions) the total
// stays under the 48 KB a block gets without cudaFuncSetAttribute (in = 4096 at 4 rows).
#define TC_NORM_SMEM (32 * 1024)
// The GPU's rule (the cost model's too): the one-tile kernel, whose block holds the
// normalised rows in at most TC_NORM_SMEM of shared memory.
static int tc_norm_rule(int n, int in, int out, size_t ws_bytes) {
    return n >= 1 && n <= TC_NORM_ROWS && in % 8 == 0 && etx_gemm_tc_tile_rows(n) == 8 &&
           !tc_use_tiled(n, out, ws_bytes) && (size_t)n * in * sizeof(__nv_bfloat16) <= TC_NORM_SMEM;
}
extern "C" int etx_gemm_tc_rmsnorm_fuses(int n, int in, int out, size_t ws_bytes) {
    return tc_norm_rule(n, in, out, ws_bytes);
}

// The norm after a residual projection rides on its split reduce (gemm_slices_reduce_norm_kernel)
// when there is one: the tiled kernel with its slices split over blocks (large batches:
// the O and down projections of a 1B model from 33 rows on), and rows of float4s. Else
// the norm stays a launch of its own.
static int tc_add_norm_rule(int n, int in, int out, size_t ws_bytes) {
    return n >= 1 && in % 8 == 0 && out % 4 == 0 && tc_use_tiled(n, out, ws_bytes) && tt_split(n, out, ws_bytes) > 1;
}
extern "C" int etx_gemm_tc_add_rmsnorm_fuses(int n, int in, int out, size_t ws_bytes) {
    return tc_add_norm_rule(n, in, out, ws_bytes);
}

// x: bf16 (nm NULL) or the f32 rows to normalise (nm; only where tc_norm_rule holds).
// na: the norm after the projection, in its split reduce (only where tc_add_norm_rule holds).
template <bool SWIGLU>
static void gemm_tc_run(void* y, const void* x, const etx_bf16* w, const TcNorm* nm, const TcNormAfter* na, int n,
                        int in, int out, float* ws, size_t ws_bytes, int acc_y, const float* bias, void* stream) {
    cudaStream_t st = (cudaStream_t)stream;
    const TcPrefetch pf = tc_take_prefetch(); // this call's, whichever kernel it takes (only gemm_tc_kernel has one)
    const __nv_bfloat16* xb = static_cast<const __nv_bfloat16*>(x);
    const __nv_bfloat16* wb = reinterpret_cast<const __nv_bfloat16*>(w);
#ifdef ETX_SIMT
    if (!g_tc_warp_kernel) {
        const int per = SWIGLU ? 2 : 1; // columns per thread
        const dim3 grid(etx_ceil_div(out, 128 * per), min(n, 65535));
        if (nm)
            ETX_LAUNCH((gemm_tc_twin_kernel<SWIGLU, true>), grid, 128, (size_t)in * sizeof(__nv_bfloat16), st, y, x,
                       wb, nm->gamma, nm->eps, n, in, out, acc_y, bias, pf.p, pf.bytes);
        else
            ETX_LAUNCH((gemm_tc_twin_kernel<SWIGLU, false>), grid, 128, 0, st, y, x, wb, (const float*)NULL, 0.0f, n,
                       in, out, acc_y, bias, pf.p, pf.bytes);
        CUDA_CHECK_LAUNCH();
        // the twin has no split reduce: the norm after it is the stand-alone kernel (the
        // same bits; one launch more than the plan counts, which the engine suites' twin
        // path does not check: test_cuda_plan counts calls of at most 32 rows)
        if (na)
            etx_rmsnorm_residual(reinterpret_cast<etx_bf16*>(na->xb), static_cast<float*>(y), NULL, na->gamma, n, out,
                                 na->eps, stream);
        return;
    }
#endif
    if (na && !tc_add_norm_rule(n, in, out, ws ? ws_bytes : 0)) {
        fprintf(stderr, "[etx] etx_gemm_tc: %d rows x %d columns take no split reduce to fold the norm into\n", n, out);
        abort();
    }
    if (nm) {
        launch_tc<1, 1, SWIGLU, true>(y, x, wb, nm, n, in, out, acc_y, bias, pf, st);
        return;
    }
    if (tc_use_tiled(n, out, ws ? ws_bytes : 0)) {
        switch (tt_nt(n, out)) {
        case 2: launch_tiled<2, SWIGLU>(y, xb, wb, na, n, in, out, ws, ws_bytes, acc_y, bias, st); break;
        case 4: launch_tiled<4, SWIGLU>(y, xb, wb, na, n, in, out, ws, ws_bytes, acc_y, bias, st); break;
        default: launch_tiled<8, SWIGLU>(y, xb, wb, na, n, in, out, ws, ws_bytes, acc_y, bias, st); break;
        }
        return;
    }
    switch (etx_gemm_tc_tile_rows(n)) {
    case 8: launch_tc<1, 1, SWIGLU, false>(y, xb, wb, NULL, n, in, out, acc_y, bias, pf, st); break;
    case 16: launch_tc<1, 2, SWIGLU, false>(y, xb, wb, NULL, n, in, out, acc_y, bias, pf, st); break;
    default: launch_tc<2, 4, SWIGLU, false>(y, xb, wb, NULL, n, in, out, acc_y, bias, pf, st); break;
    }
}

extern "C" void etx_gemm_tc_bf16(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out, float* ws,
                                 size_t ws_bytes, void* stream) {
    gemm_tc_run<false>(y, x, w, NULL, NULL, n, in, out, ws, ws_bytes, 0, NULL, stream);
}

extern "C" void etx_gemm_tc_bf16_bias(float* y, const etx_bf16* x, const etx_bf16* w, const float* bias, int n,
                                      int in, int out, float* ws, size_t ws_bytes, void* stream) {
    gemm_tc_run<false>(y, x, w, NULL, NULL, n, in, out, ws, ws_bytes, 0, bias, stream);
}

extern "C" void etx_gemm_tc_bf16_add(float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out,
                                     float* ws, size_t ws_bytes, void* stream) {
    gemm_tc_run<false>(y, x, w, NULL, NULL, n, in, out, ws, ws_bytes, 1, NULL, stream);
}

extern "C" void etx_gemm_tc_bf16_swiglu(etx_bf16* h, const etx_bf16* x, const etx_bf16* w, int n, int in, int out,
                                        float* ws, size_t ws_bytes, void* stream) {
    gemm_tc_run<true>(h, x, w, NULL, NULL, n, in, out, ws, ws_bytes, 0, NULL, stream);
}

extern "C" void etx_gemm_tc_rmsnorm(void* y, int swiglu, const float* x, const float* gamma, float eps,
                                    const etx_bf16* w, const float* bias, int n, int in, int out, void* stream) {
    if (!tc_norm_rule(n, in, out, 0) || ((uintptr_t)x % 16) != 0 || ((uintptr_t)gamma % 16) != 0) {
        fprintf(stderr, "[etx] etx_gemm_tc_rmsnorm: %d rows of %d (x %p, gamma %p) do not take the fused norm\n", n,
                in, (const void*)x, (const void*)gamma);
        abort();
    }
    const TcNorm nm = {x, gamma, eps};
    if (swiglu) gemm_tc_run<true>(y, x, w, &nm, NULL, n, in, out, NULL, 0, 0, NULL, stream);
    else gemm_tc_run<false>(y, x, w, &nm, NULL, n, in, out, NULL, 0, 0, bias, stream);
}

extern "C" void etx_gemm_tc_bf16_add_rmsnorm(float* y, const etx_bf16* x, const etx_bf16* w, const float* gamma,
                                             float eps, etx_bf16* xb, int n, int in, int out, float* ws,
                                             size_t ws_bytes, void* stream) {
    if (!ws || !tc_add_norm_rule(n, in, out, ws_bytes) || ((uintptr_t)y % 16) != 0 || ((uintptr_t)ws % 16) != 0 ||
        ((uintptr_t)gamma % 16) != 0 || ((uintptr_t)xb % 8) != 0) {
        fprintf(stderr, "[etx] etx_gemm_tc_bf16_add_rmsnorm: %d rows x %d columns (ws %zu bytes, y %p, gamma %p, xb %p) "
                        "do not take the norm in the split reduce\n", n, out, ws ? ws_bytes : (size_t)0, (void*)y,
                (const void*)gamma, (void*)xb);
        abort();
    }
    const TcNormAfter na = {gamma, eps, reinterpret_cast<__nv_bfloat16*>(xb)};
    gemm_tc_run<false>(y, x, w, NULL, &na, n, in, out, ws, ws_bytes, 1, NULL, stream);
}

// The napkin math of one tensor-core call; y_bytes_per_out: bytes moved per output (4
// for f32 stored, 8 added to, 1 for the SwiGLU epilogue's one bf16 per two columns); norm:
// the fused norm (tc_norm_rule holds).
static EtxCost tc_cost(int n, int in, int out, double l2_bytes, double y_bytes_per_out, size_t ws_bytes, int norm,
                       int sms) {
    EtxCost c = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (n <= 0 || out <= 0) return c;
    const int tiled = tc_use_tiled(n, out, ws_bytes);
    const int rows = tiled ? 32 * tt_nt(n, out) : etx_gemm_tc_tile_rows(n), cols = tiled ? TT_BM : tc_tile_cols(n);
    const int tiles_r = etx_ceil_div(n, rows), tiles_c = etx_ceil_div(out, cols);
    const double wbytes = (double)out * in * 2, xbytes = (double)n * in * (norm ? 4 : 2);
    // the operand the launch order sweeps is re-read once per tile of the other: from L2
    // when it fits in half of it, else from DRAM; the other is read once
    if (tc_rows_fast(n, out))
        c.bytes = wbytes + xbytes * (xbytes > l2_bytes / 2 ? tiles_c : 1);
    else
        c.bytes = xbytes + wbytes * (wbytes > l2_bytes / 2 ? tiles_r : 1);
    c.bytes += (double)n * out * y_bytes_per_out + (norm ? (double)in * 4 : 0); // + the norm's weight
    c.ctas = c.busy = (double)tiles_c * tiles_r;
    c.launches = 1;
    c.tensor = 1;
    if (tiled) {
        // every block multiplies its whole tile (clamped rows and columns included), and
        // loads its tile's weight and x rows once per chunk through shared memory; a split
        // adds the 8 slice sums written and read back (L2) and the reduce launch
        const int split = tt_split(n, out, ws_bytes);
        c.per_sm = 1; // 204 registers a thread: one block of 8 warps per SM, cp.async-pipelined
        c.flops = 2.0 * tiles_c * cols * (double)tiles_r * rows * in;
        c.l2 = (double)tiles_c * tiles_r * (cols + rows) * in * 2;
        if (split > 1) {
            c.ctas = c.busy = c.ctas * split;
            c.l2 += 2.0 * tc_slices(in) * n * out * 4;
            c.launches = 2;
        }
        return c;
    }
    // 16-warp blocks (tc_wide): one per SM has the 16 warps of loads in flight that the
    // model's default asks of two 8-warp blocks
    const int wanted = tc_warps_wanted();
    if (tc_slices(in) == 16 && (wanted ? wanted == 16 && etx_gemm_tc_tile_rows(n) == 8 : tc_wide(n, in, out, sms)))
        c.per_sm = 1;
    // the mma's work, padded columns included (8 per n-tile, 16 per m-tile)
    c.flops = 2.0 * (double)etx_ceil_div(n, 8) * 8 * in * ((double)etx_ceil_div(out, 16) * 16);
    // L2: each block loads its weight tile's rows (cols of them) and its x rows (at most n
    // distinct: rows past n repeat the last one, which the lanes' loads coalesce) over all
    // of k; nothing is staged or shared between warps, so that is the block's whole traffic
    c.l2 = (double)tiles_c * tiles_r * cols * in * 2 + (double)tiles_c * n * in * 2;
    // the fused norm: each block reads its rows twice (f32: the sum of squares, then the
    // scaled copy into shared memory) and the norm's weight, and its warps read x from
    // shared memory instead of L2
    if (norm) c.l2 = (double)tiles_c * cols * in * 2 + (double)tiles_c * (2.0 * n * in * 4 + (double)in * 4);
    return c;
}

extern "C" EtxCost etx_gemm_tc_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    return tc_cost(n, in, out, l2_bytes, 4, ws_bytes, 0, sms);
}

extern "C" EtxCost etx_gemm_tc_add_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    return tc_cost(n, in, out, l2_bytes, 8, ws_bytes, 0, sms); // y read and written
}

// With the norm after it in the split reduce: xb written (bf16) and the norm's weight read
// besides; the reduce's re-read of its own x row is from L1. What goes: the stand-alone
// norm's launch and its read of x (cuda_plan.c drops that op).
extern "C" EtxCost etx_gemm_tc_add_rmsnorm_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    EtxCost c = tc_cost(n, in, out, l2_bytes, 8, ws_bytes, 0, sms);
    c.bytes += (double)n * out * 2 + (double)out * 4;
    c.flops += 4.0 * n * out; // the squares and the scaled copy
    return c;
}

extern "C" EtxCost etx_gemm_tc_rmsnorm_cost(int n, int in, int out, double l2_bytes, int swiglu, int sms) {
    return tc_cost(n, in, out, l2_bytes, swiglu ? 1 : 4, 0, 1, sms);
}

extern "C" EtxCost etx_gemm_tc_swiglu_cost(int n, int in, int out, double l2_bytes, size_t ws_bytes, int sms) {
    return tc_cost(n, in, out, l2_bytes, 1, ws_bytes, 0, sms); // bf16 per two columns
}
