/*
 * test_gemm.c — etx_gemm_bf16 (kernels/gemm.cu), y (n, out) f32 = x (n, in) bf16 · W^T,
 * W (out, in) bf16, against its CPU twin, the CPU backend's f32 product
 * (host/cpu/f32_matrix.c: f32_matmat), and against the summation order gemm.cu states,
 * under the SIMT emulator (_emu) and on a GPU (_gpu): the same kernel runs in both.
 *
 * Inputs: x and W uniform in [-1, 1), rounded to bf16; the twin gets the same values as
 * floats (bf16 -> f32 is exact). Shapes: 1 x 1 x 1; odd sizes everywhere (in not a
 * multiple of 8 takes the scalar path); n below, at and above the tiles of 1, 4, 8 and 16
 * rows; out across blocks of 16 columns; n, in and out all different, so that a
 * transposed operand or a wrong leading dimension cannot pass; in up to 1024 (and one of
 * 4104, for the tensor-core kernels' 16-slice order, which the exact check below holds); the
 * default model's projections (576 -> 1536). Every value of y is checked, and guard
 * values past y must stay.
 *
 * Tolerance against the twin (gemm_matches_cpu), per output y[r, o], with
 * S = sum_i |x_ri w_oi|:
 *   - bf16 rounding of the inputs: a bf16 has 8 significant bits, so the product of two
 *     is exact in f32 (16 bits <= 24; no underflow at these magnitudes). Neither side
 *     rounds a product: only additions round.
 *   - f32 accumulation: a sum of `in` terms computed in f32, in any order, is within
 *     gamma(in, u) S of the exact sum, gamma(n, u) = n u / (1 - n u) (Higham, "Accuracy
 *     and Stability of Numerical Algorithms", 2nd ed., section 4.2), u = 2^-24 for each
 *     side (both round to nearest: the twin in f32_matrix's blocked order, the kernel in
 *     its own).
 *   So |y_kernel - y_twin| <= 2 gamma(in, 2^-24) S. S is summed in double from the same
 *   products (exact) and is itself within in 2^-53 S of the true S, which the bound does
 *   not need to cover (factor 1 + 1e-13). This catches a missing or doubled term: one
 *   term is on average S / in, above the bound (2 in 2^-24 S) for in < 2900; the shapes
 *   keep in <= 1024 but one, whose every bit the stated order checks instead.
 * Exactness (gemm_matches_cpu): the kernel sums in the order gemm.cu states (lane l of
 *   32 takes the 8-element pieces l, l + 32, ... when in % 8 == 0, else the elements
 *   l, l + 32, ...; each product, exact for bf16 inputs, added with one rounding; the 32
 *   partials added in lane order), and every step is one correctly rounded IEEE operation
 *   on the host, the emulator and a GPU: so y must equal that order computed here, bit
 *   for bit, on both backends. Under the emulator both kernels are held to it: the
 *   thread-per-column twin the engine suites run and the warp kernel itself.
 * Batch invariance (gemm_rows_are_batch_invariant): a row's bits do not depend on the
 *   number of rows in the call nor on its place among them: rows of calls of 1 .. 64 rows
 *   (every tile size, partial last tiles) equal the same rows of one 64-row call.
 *
 * Both paths (etx_gemm_force_path): every check above runs on the CUDA-core kernel
 * (gemm.cu) and on the tensor-core kernel (gemm_tc.cu, taken when in % 8 == 0). The
 * tensor-core kernel's stated order (chunks of 32 k split over 8 warps, in each chunk two
 * mma's adding 16 products each in the k map gemm_tc.cu states, then the 8 warp sums in
 * order) is what the emulator computes, so under the emulator it is held to that order
 * bit for bit. On a GPU the tensor core's own additions are not specified; there it is
 * held to a bound instead, from the measured model of Fasi, Higham, Mikaitis and Pranesh
 * ("Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021): products exact, the 17
 * addends of one mma (C and 16 products) aligned and summed with truncation. Each addend
 * then loses less than 2^-23 of the largest addend's magnitude and the result is
 * truncated once more, so one mma errs by at most 18 2^-23 (|C| + sum |p|) <= 18 2^-23 S.
 * A slice chains M = 2 ceil(ceil(in / 32) / V) mma's (V = 8 slices, 16 from 128 chunks),
 * and the V slice sums are added with rounding to nearest: |y_gpu - exact| <=
 * (18 2^-23 M + gamma(V, 2^-24)) S; the twin adds its gamma(in, 2^-24) S. For in = 1024
 * that is 3.5e-5 S + 6.1e-5 S, against the S / in = 9.8e-4 S of one missing term.
 *
 * Edge cases (gemm_edge_cases): n == 0 and out == 0 write nothing; in == 0 gives y = 0
 * (the empty sum). Error path (gemm_row_limit): more than 65535 x 16 rows does not fit the
 * grid's y dimension and aborts with a message.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/f32_matrix.h"
#include "device.h"
#include "gemm.h"
#include "norm.h"
#include "swiglu.h"
#include "check_device.h"
#include "check_main.h"
#include "test_rng.h"

#define GUARD_F32 -12345.0f
#define N_GUARD 64 // floats past y that must keep GUARD_F32

static void* dev_alloc(size_t bytes) {
    void* d = etx_dev_malloc(bytes);
    ck_assert_ptr_nonnull(d);
    return d;
}

// a device copy of bytes (>= 0) bytes at h; 16 bytes more, so that an empty operand
// (n, in or out 0) is still a valid pointer
static void* dev_copy_of(const void* h, size_t bytes) {
    void* d = dev_alloc(bytes + 16);
    if (bytes) etx_dev_upload(d, h, bytes);
    return d;
}

// n values uniform in [-1, 1), rounded to bf16
static etx_bf16* random_bf16(uint64_t* rng, size_t n) {
    etx_bf16* v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < n; i++) v[i] = etx_bf16_from_f32(rng_frand(rng));
    return v;
}

static float* to_f32(const etx_bf16* v, size_t n) {
    float* f = malloc(n * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < n; i++) f[i] = etx_bf16_to_f32(v[i]);
    return f;
}

// y (n, out) of the kernel, read back with N_GUARD guard values past it checked; with_ws:
// through etx_gemm_bf16_ws with a workspace that allows the slice split (NaN-filled, so a
// slice sum the kernel fails to write shows)
static float* run_gemm_with(const etx_bf16* x, const etx_bf16* w, int n, int in, int out, int with_ws) {
    const size_t ny = (size_t)n * out, ws_bytes = with_ws ? etx_gemm_tc_workspace_bytes(n, out) : 0;
    float* y = malloc((ny + N_GUARD) * sizeof *y);
    ck_assert_ptr_nonnull(y);
    for (size_t i = 0; i < ny + N_GUARD; i++) y[i] = GUARD_F32;
    etx_bf16* dx = dev_copy_of(x, (size_t)n * in * sizeof *x);
    etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
    etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w); // as the backend's weights (gemm.h)
    float* dy = dev_copy_of(y, (ny + N_GUARD) * sizeof *y);
    float* ws = with_ws ? dev_alloc(ws_bytes) : NULL;
    if (ws) etx_dev_memset(ws, 0xff, ws_bytes);
    if (ws) etx_gemm_bf16_ws(dy, dx, dw, n, in, out, ws, ws_bytes, NULL);
    else etx_gemm_bf16(dy, dx, dw, n, in, out, NULL);
    etx_dev_sync();
    etx_dev_download(y, dy, (ny + N_GUARD) * sizeof *y);
    for (int g = 0; g < N_GUARD; g++)
        ck_assert_msg(y[ny + g] == GUARD_F32, "n %d in %d out %d: guard %d past y overwritten", n, in, out, g);
    etx_dev_free(dx), etx_dev_free(dw), etx_dev_free(dy);
    if (ws) etx_dev_free(ws);
    return y;
}
static float* run_gemm(const etx_bf16* x, const etx_bf16* w, int n, int in, int out) {
    return run_gemm_with(x, w, n, in, out, 0);
}
static float* run_gemm_ws(const etx_bf16* x, const etx_bf16* w, int n, int in, int out) {
    return run_gemm_with(x, w, n, in, out, 1);
}

// y[r, o] in the order gemm.cu states: lane partials (fmaf chains over the lane's
// pieces), then the 32 partials in lane order
static float stated_order(const float* xr, const float* wo, int in) {
    float part[32];
    for (int l = 0; l < 32; l++) {
        float acc = 0.0f;
        if (in % 8 == 0) {
            for (int k = 8 * l; k < in; k += 8 * 32)
                for (int e = 0; e < 8; e++) acc = fmaf(wo[k + e], xr[k + e], acc);
        } else {
            for (int k = l; k < in; k += 32) acc = fmaf(wo[k], xr[k], acc);
        }
        part[l] = acc;
    }
    float s = 0.0f;
    for (int l = 0; l < 32; l++) s += part[l];
    return s;
}

// The same in the tensor-core kernels' order (gemm_tc.cu): the chunks of 32 k in V
// contiguous slices of P = ceil(chunks / V) (V = 8, or 16 from 128 chunks on: in >= 4096);
// slice v sums chunks vP .. vP + P - 1 in order,
// each chunk two emulated mma's, each adding its 16 logical k in order (logical kk of mma m
// is memory k 32c + 8t + 4m + 2 (kk / 8) + e, with t = (kk % 8) / 2 and e = kk % 2; past
// `in` the product is 0); then 0 + the V slice sums in order.
static int tc_slices_of(int in) { return (in + 31) / 32 >= 128 ? 16 : 8; }
static float stated_order_tc(const float* xr, const float* wo, int in) {
    const int chunks = (in + 31) / 32, V = tc_slices_of(in), per = (chunks + V - 1) / V;
    float s = 0.0f;
    for (int v = 0; v < V; v++) {
        float acc = 0.0f;
        for (int c = v * per; c < chunks && c < (v + 1) * per; c++)
            for (int m = 0; m < 2; m++)
                for (int kk = 0; kk < 16; kk++) {
                    const int k = 32 * c + 8 * ((kk % 8) / 2) + 4 * m + 2 * (kk / 8) + kk % 2;
                    const float p = k < in ? wo[k] * xr[k] : 0.0f; // exact
                    acc = acc + p;
                }
        s += acc;
    }
    return s;
}

static double gamma_n(int n, double u) { return n * u / (1.0 - n * u); }

// whether the call of this shape took the tensor-core kernel
static int takes_tc(int in) { return in % 8 == 0 && etx_gemm_uses_tensor_cores(); }

#ifdef ETX_NATIVE_CUDA
static const int g_native = 1;
#else
static const int g_native = 0;
#endif

static void check_shape(uint64_t* rng, int n, int in, int out) {
    etx_bf16* x = random_bf16(rng, (size_t)n * in);
    etx_bf16* w = random_bf16(rng, (size_t)out * in);
    float *xf = to_f32(x, (size_t)n * in), *wf = to_f32(w, (size_t)out * in);
    float* twin = malloc((size_t)n * out * sizeof *twin);
    ck_assert_ptr_nonnull(twin);
    f32_matmat(twin, out, xf, in, n, wf, out, in);
    float* y = run_gemm(x, w, n, in, out);

    const int tc = takes_tc(in);
    // the twin's rounding plus the kernel's: its own order rounds like the twin's, except
    // the tensor core on a GPU (the bound in the header)
    const int V = tc_slices_of(in), mmas = 2 * (((in + 31) / 32 + V - 1) / V);
    const double rel = gamma_n(in, 0x1p-24) + (tc && g_native ? 18.0 * 0x1p-23 * mmas + gamma_n(V, 0x1p-24)
                                                              : gamma_n(in, 0x1p-24));
    double worst = 0.0; // largest |y - twin| / S, reported on failure
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            const float* xr = xf + (size_t)r * in;
            const float* wo = wf + (size_t)o * in;
            double s_abs = 0.0;
            for (int i = 0; i < in; i++) s_abs += fabs((double)xr[i] * wo[i]);
            const float ordered = tc ? stated_order_tc(xr, wo, in) : stated_order(xr, wo, in);
            const float got = y[(size_t)r * out + o], want = twin[(size_t)r * out + o];
            const double err = fabs((double)got - want);
            if (s_abs > 0.0 && err / s_abs > worst) worst = err / s_abs;
            if (!(err <= rel * s_abs))
                ck_abort_msg("n %d in %d out %d: y[%d, %d] = %.9g, CPU %.9g: |diff| %.3g > %.3g (sum |x w| %.6g)", n,
                             in, out, r, o, got, want, err, rel * s_abs, s_abs);
            if (!(tc && g_native) && memcmp(&got, &ordered, sizeof got) != 0)
                ck_abort_msg("n %d in %d out %d (%s): y[%d, %d] = %.9g, the stated order gives %.9g", n, in, out,
                             tc ? "tensor cores" : "CUDA cores", r, o, got, ordered);
        }
    printf("gemm %s n %4d in %4d out %4d: max |y - cpu| / sum|x w| = %.3g (bound %.3g)\n", tc ? "tc  " : "simt", n,
           in, out, worst, rel);
    free(x), free(w), free(xf), free(wf), free(twin), free(y);
}

START_TEST(gemm_matches_cpu) {
    static const int shapes[][3] = {
        // n, in, out
        {1, 1, 1},     {1, 64, 128},  {3, 17, 5},    {8, 96, 130},  {9, 33, 129},
        {13, 257, 67}, {2, 1024, 96}, {17, 40, 300}, {64, 128, 31}, {5, 576, 1536}, {4, 264, 33},
        {16, 64, 17},  {40, 1032, 70}, {33, 8, 47}, {130, 264, 300}, {70, 96, 130},
        {1, 4104, 40}, // 129 chunks: 16 slices (16-warp blocks on tensor cores)
    };
    for (int path = 0; path < 2; path++) { // CUDA cores, then tensor cores
        etx_gemm_force_path(path);
        if (path == 1 && !etx_gemm_uses_tensor_cores()) continue; // a GPU before sm_80
        for (int warp = 0; warp < 2; warp++) { // the emulator's twin, then the warp kernel itself
            etx_gemm_use_warp_kernel(warp);
            // on tensor cores both kernels, whatever the size: gemm_tc_kernel, then the tiled one
            for (int tiled = 0; tiled < (path == 1 && (warp == 1 || g_native) ? 2 : 1); tiled++) {
                etx_gemm_tc_force_kernel(path == 1 ? tiled : -1);
                uint64_t rng = rng_seed(11);
                for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
                    check_shape(&rng, shapes[k][0], shapes[k][1], shapes[k][2]);
            }
        }
    }
    etx_gemm_tc_force_kernel(-1);
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

// The two tensor-core kernels (gemm_tc_kernel and the tiled one) give the same bits for
// every output, and a row alone in a call of either equals that row in a call of 150 rows
// of the other: the order of the sum is the same in both (gemm_tc.cu). On a GPU this is
// the check that holds them together (there is no stated order to compare with).
START_TEST(gemm_tc_kernels_agree) {
    if (!etx_gemm_uses_tensor_cores()) return;
    etx_gemm_force_path(1);
    etx_gemm_use_warp_kernel(1);
    // in, out; 4104: 129 chunks, 16 slices of 9 (the last short), and 16-warp blocks; 2048
    // columns: enough tiles for the 256-row tile (shared-memory totals) at 150 rows
    static const int shapes[][2] = {{2048, 256}, {264, 130}, {40, 64}, {1032, 48}, {4104, 32}, {40, 2048}};
    uint64_t rng = rng_seed(19);
    const int N = 150;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int in = shapes[k][0], out = shapes[k][1];
        etx_bf16* x = random_bf16(&rng, (size_t)N * in);
        etx_bf16* w = random_bf16(&rng, (size_t)out * in);
        etx_gemm_tc_force_kernel(0);
        float* skinny = run_gemm(x, w, N, in, out);
        etx_gemm_tc_force_kernel(1);
        float* tiled = run_gemm(x, w, N, in, out);
        for (int i = 0; i < N * out; i++)
            if (memcmp(&skinny[i], &tiled[i], sizeof(float)) != 0)
                ck_abort_msg("in %d out %d: y[%d, %d] = %.9g (gemm_tc_kernel), %.9g (tiled)", in, out, i / out, i % out,
                             skinny[i], tiled[i]);
        for (int z = 2; z <= 8; z *= 2) { // each tile's slices over z blocks, summed by the reduce kernel
            etx_gemm_tc_force_split(z);
            float* split = run_gemm_ws(x, w, N, in, out);
            for (int i = 0; i < N * out; i++)
                if (memcmp(&skinny[i], &split[i], sizeof(float)) != 0)
                    ck_abort_msg("in %d out %d: y[%d, %d] = %.9g (gemm_tc_kernel), %.9g (tiled, slices over %d blocks)",
                                 in, out, i / out, i % out, skinny[i], split[i], z);
            free(split);
        }
        etx_gemm_tc_force_split(0);
        static const int calls[][2] = {{1, 0}, {5, 77}, {33, 100}, {64, 86}, {129, 21}};
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++)
            for (int kernel = 0; kernel < 2; kernel++)
                for (int warps = 8; warps <= 16; warps += 8) { // gemm_tc_kernel's blocks of 8 and of 16 warps
                    const int n = calls[c][0], r0 = calls[c][1];
                    if (warps == 16 && (kernel || n > 8)) continue; // 16 warps: the one-tile kernel only
                    etx_gemm_tc_force_kernel(kernel);
                    etx_gemm_tc_force_warps(warps);
                    float* part = run_gemm(x + (size_t)r0 * in, w, n, in, out);
                    etx_gemm_tc_force_warps(0);
                    const float* all = kernel ? skinny : tiled; // the other kernel's call of N rows
                    ck_assert_msg(memcmp(part, all + (size_t)r0 * out, (size_t)n * out * sizeof(float)) == 0,
                                  "in %d out %d: rows %d.. alone (%s, %d warps) differ from those rows of %d (%s)", in,
                                  out, r0, kernel ? "tiled" : "gemm_tc_kernel", warps, N,
                                  kernel ? "gemm_tc_kernel" : "tiled");
                    free(part);
                }
        free(x), free(w), free(skinny), free(tiled);
    }
    etx_gemm_tc_force_kernel(-1);
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

// rows of calls of n rows, starting at row r0 of X, equal rows r0 .. r0 + n - 1 of one call
// over all of X, to the bit: every tile size (1, 4, 16) and partial last tiles, both paths
START_TEST(gemm_rows_are_batch_invariant) {
    static const int ins[] = {576, 100};
    static const int calls[][2] = {{1, 0}, {1, 23}, {1, 63}, {3, 5}, {4, 0}, {5, 40}, {7, 9}, {8, 50}, {16, 16}, {11, 3}, {37, 27}};
    const int N = 64, out = 70;
    uint64_t rng = rng_seed(13);
    for (size_t a = 0; a < 4 * sizeof ins / sizeof ins[0]; a++) {
        etx_gemm_use_warp_kernel(a % 2); // each shape on the emulator's twin and the warp kernel,
        etx_gemm_force_path(a / 2 % 2);  // on CUDA cores and tensor cores
        const int in = ins[a / 4];
        etx_bf16* x = random_bf16(&rng, (size_t)N * in);
        etx_bf16* w = random_bf16(&rng, (size_t)out * in);
        float* all = run_gemm(x, w, N, in, out);
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
            const int n = calls[c][0], r0 = calls[c][1];
            float* part = run_gemm(x + (size_t)r0 * in, w, n, in, out);
            for (int i = 0; i < n * out; i++)
                if (memcmp(&part[i], &all[(size_t)r0 * out + i], sizeof(float)) != 0)
                    ck_abort_msg("in %d (%s): row %d col %d alone in a call of %d rows (tile %d) = %.9g, in a call "
                                 "of %d rows (tile %d) = %.9g",
                                 in, takes_tc(in) ? "tensor cores" : "CUDA cores", r0 + i / out, i % out, n,
                                 takes_tc(in) ? etx_gemm_tc_tile_rows(n) : etx_gemm_tile_rows(n), part[i], N,
                                 takes_tc(in) ? etx_gemm_tc_tile_rows(N) : etx_gemm_tile_rows(N),
                                 all[(size_t)r0 * out + i]);
            free(part);
        }
        free(all), free(x), free(w);
    }
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

// h (n, out / 2) bf16 of etx_gemm_bf16_swiglu (scratch given when its path needs one)
static etx_bf16* run_gemm_swiglu(const etx_bf16* x, const etx_bf16* w, int n, int in, int out) {
    const size_t nh = (size_t)n * (out / 2);
    etx_bf16* h = malloc((nh + N_GUARD) * sizeof *h);
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < nh + N_GUARD; i++) h[i] = (etx_bf16)0xA5A5;
    etx_bf16* dx = dev_copy_of(x, (size_t)n * in * sizeof *x);
    etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
    etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w); // as the backend's weights (gemm.h)
    etx_bf16* dh = dev_copy_of(h, (nh + N_GUARD) * sizeof *h);
    // a workspace for the CUDA-core path's f32 gate/up, or the tiled kernel's slice sums
    const size_t ws_bytes = etx_gemm_tc_workspace_bytes(n, out);
    float* scratch = dev_alloc(ws_bytes);
    etx_dev_memset(scratch, 0xff, ws_bytes);
    etx_gemm_bf16_swiglu(dh, dx, dw, n, in, out, scratch, ws_bytes, NULL);
    etx_dev_sync();
    etx_dev_download(h, dh, (nh + N_GUARD) * sizeof *h);
    for (int g = 0; g < N_GUARD; g++)
        ck_assert_msg(h[nh + g] == (etx_bf16)0xA5A5, "n %d in %d out %d: guard %d past h overwritten", n, in, out, g);
    etx_dev_free(dx), etx_dev_free(dw), etx_dev_free(dh), etx_dev_free(scratch);
    return h;
}

// The gate/up projection with SwiGLU as its epilogue (etx_gemm_bf16_swiglu), on both paths
// and (emulator) both the twin and the warp kernel: every unit's bf16 equals, to the bit,
// etx_gemm_bf16 into f32 followed by the stand-alone etx_swiglu, which test_layer_kernels
// holds to the CPU; it is near silu(g) u of the CPU's f32 product (bf16 rounding and the
// device's expf); and a row's bits do not depend on the call's other rows.
START_TEST(gemm_swiglu_epilogue) {
    static const int shapes[][3] = {
        // n, in, out (even: gate/up pairs)
        {1, 64, 32}, {5, 96, 130}, {17, 40, 300}, {40, 1032, 70}, {64, 128, 30}, {3, 17, 10}, {9, 2048, 64},
        {133, 264, 260},
    };
    for (int variant = 0; variant < 5; variant++) {
        // CUDA cores (twin, warp kernel), tensor cores (twin, gemm_tc_kernel, tiled)
        const int path = variant >= 2, warp = variant == 1 || variant >= 3, tiled = variant == 4;
        etx_gemm_force_path(path);
        if (path == 1 && !etx_gemm_uses_tensor_cores()) continue;
        if (g_native && variant == 2) continue; // no twin on a GPU
        etx_gemm_use_warp_kernel(warp);
        etx_gemm_tc_force_kernel(path ? tiled : -1);
        {
            uint64_t rng = rng_seed(17);
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
                const int n = shapes[k][0], in = shapes[k][1], out = shapes[k][2], hid = out / 2;
                etx_bf16* x = random_bf16(&rng, (size_t)n * in);
                etx_bf16* w = random_bf16(&rng, (size_t)out * in);
                etx_bf16* h = run_gemm_swiglu(x, w, n, in, out);
                // the two-launch reference: y in f32, then etx_swiglu over the interleaved pairs
                float* y = run_gemm(x, w, n, in, out);
                float* dy = dev_copy_of(y, (size_t)n * out * sizeof *y);
                etx_bf16* dref = dev_alloc((size_t)n * hid * sizeof(etx_bf16));
                etx_swiglu(dref, dy, n, hid, NULL);
                etx_dev_sync();
                etx_bf16* ref = malloc((size_t)n * hid * sizeof *ref);
                ck_assert_ptr_nonnull(ref);
                etx_dev_download(ref, dref, (size_t)n * hid * sizeof *ref);
                for (int i = 0; i < n * hid; i++) {
                    if (h[i] != ref[i])
                        ck_abort_msg("n %d in %d out %d (%s, %s): h[%d, %d] = 0x%04x, gemm + swiglu give 0x%04x", n, in,
                                     out, takes_tc(in) ? "tensor cores" : "CUDA cores",
                                     tiled ? "tiled kernel" : warp ? "warp kernel" : "twin", i / hid, i % hid, h[i], ref[i]);
                    const float g = y[(size_t)(i / hid) * out + 2 * (i % hid)], u = y[(size_t)(i / hid) * out + 2 * (i % hid) + 1];
                    const double want = (double)g / (1.0 + exp(-(double)g)) * u, got = etx_bf16_to_f32(h[i]);
                    ck_assert_msg(fabs(got - want) <= 0x1p-7 * fabs(want) + 1e-30,
                                  "n %d in %d out %d: h[%d] = %.7g, silu(g) u = %.7g", n, in, out, i, got, want);
                }
                // batch invariance: rows 1 .. n - 1 alone give the same bits
                if (n > 1) {
                    etx_bf16* part = run_gemm_swiglu(x + in, w, n - 1, in, out);
                    ck_assert_msg(memcmp(part, h + hid, (size_t)(n - 1) * hid * sizeof *part) == 0,
                                  "n %d in %d out %d: rows 1.. alone differ from the same rows in the call", n, in, out);
                    free(part);
                }
                etx_dev_free(dy), etx_dev_free(dref);
                free(x), free(w), free(h), free(y), free(ref);
            }
        }
    }
    etx_gemm_tc_force_kernel(-1);
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

// etx_gemm_bf16_add (y += x W^T, the residual stream taking the O and down projections):
// every output equals y0 + (etx_gemm_bf16's output) in one f32 addition, to the bit, on
// both paths, the twins and warp kernels, the tiled kernel and its slice split.
// The epilogue tests' six kernel variants: CUDA cores (0 twin, 1 warp kernel), tensor
// cores (2 twin, 3 gemm_tc_kernel, 4 tiled with one block per tile: the tiled epilogue, 5
// tiled split over 4 blocks: the reduce's epilogue). Forces them; 0 when this build or
// device has no such variant (no twin on a GPU, no tensor cores).
static int epilogue_variant(int variant) {
    const int path = variant >= 2, warp = variant == 1 || variant >= 3, tiled = variant >= 4;
    etx_gemm_force_path(path);
    if (path == 1 && !etx_gemm_uses_tensor_cores()) return 0;
    if (g_native && variant == 2) return 0; // no twin on a GPU
    etx_gemm_use_warp_kernel(warp);
    etx_gemm_tc_force_kernel(path ? tiled : -1);
    etx_gemm_tc_force_split(variant == 5 ? 4 : 1);
    return 1;
}

START_TEST(gemm_add_epilogue) {
    static const int shapes[][3] = {{1, 64, 32}, {5, 96, 130}, {40, 1032, 70}, {133, 264, 300}, {3, 17, 10}};
    for (int variant = 0; variant < 6; variant++) {
        if (!epilogue_variant(variant)) continue;
        uint64_t rng = rng_seed(23);
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const int n = shapes[k][0], in = shapes[k][1], out = shapes[k][2];
            const size_t ny = (size_t)n * out, ws_bytes = etx_gemm_tc_workspace_bytes(n, out);
            etx_bf16* x = random_bf16(&rng, (size_t)n * in);
            etx_bf16* w = random_bf16(&rng, (size_t)out * in);
            float* y0 = malloc((ny + N_GUARD) * sizeof *y0);
            ck_assert_ptr_nonnull(y0);
            for (size_t i = 0; i < ny; i++) y0[i] = 4.0f * rng_frand(&rng);
            for (int g = 0; g < N_GUARD; g++) y0[ny + g] = GUARD_F32;
            float* y = run_gemm_ws(x, w, n, in, out); // x W^T alone, the same path
            etx_bf16* dx = dev_copy_of(x, (size_t)n * in * sizeof *x);
            etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
            etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w);
            float* dy = dev_copy_of(y0, (ny + N_GUARD) * sizeof *y0);
            float* ws = dev_alloc(ws_bytes);
            etx_dev_memset(ws, 0xff, ws_bytes);
            etx_gemm_bf16_add(dy, dx, dw, n, in, out, ws, ws_bytes, NULL);
            etx_dev_sync();
            float* got = malloc((ny + N_GUARD) * sizeof *got);
            ck_assert_ptr_nonnull(got);
            etx_dev_download(got, dy, (ny + N_GUARD) * sizeof *got);
            for (size_t i = 0; i < ny; i++) {
                const float want = y0[i] + y[i];
                if (memcmp(&got[i], &want, sizeof want) != 0)
                    ck_abort_msg("n %d in %d out %d (variant %d): y[%zu] = %.9g, y0 + x W^T = %.9g", n, in, out,
                                 variant, i, got[i], want);
            }
            for (int g = 0; g < N_GUARD; g++) ck_assert_msg(got[ny + g] == GUARD_F32, "guard %d past y overwritten", g);
            etx_dev_free(dx), etx_dev_free(dw), etx_dev_free(dy), etx_dev_free(ws);
            free(x), free(w), free(y0), free(y), free(got);
        }
    }
    etx_gemm_tc_force_split(0);
    etx_gemm_tc_force_kernel(-1);
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

// etx_gemm_bf16_bias (qwen2's Q/K/V biases in the QKV projection's epilogue): every
// output equals (etx_gemm_bf16's output) + bias[o] in one f32 addition, to the bit, on both
// paths, the twins and warp kernels, the tiled kernel with and without its split; and with
// the folded norm (etx_gemm_bf16_rmsnorm with a bias: one launch at <= 4 rows, the two
// launches above that) it equals the norm, the GEMM and the bias.
START_TEST(gemm_bias_epilogue) {
    static const int shapes[][3] = {{1, 64, 32}, {5, 96, 130}, {40, 1032, 70}, {133, 264, 300}, {3, 17, 10}};
    for (int variant = 0; variant < 6; variant++) {
        if (!epilogue_variant(variant)) continue;
        uint64_t rng = rng_seed(43);
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const int n = shapes[k][0], in = shapes[k][1], out = shapes[k][2];
            const size_t ny = (size_t)n * out, ws_bytes = etx_gemm_tc_workspace_bytes(n, out);
            etx_bf16* x = random_bf16(&rng, (size_t)n * in);
            etx_bf16* w = random_bf16(&rng, (size_t)out * in);
            float* bias = malloc((size_t)out * sizeof *bias);
            ck_assert_ptr_nonnull(bias);
            for (int o = 0; o < out; o++) bias[o] = 2.0f * rng_frand(&rng);
            float* y = run_gemm_ws(x, w, n, in, out); // x W^T alone, the same path
            etx_bf16* dx = dev_copy_of(x, (size_t)n * in * sizeof *x);
            etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
            etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w);
            float* db = dev_copy_of(bias, (size_t)out * sizeof *bias);
            float* dy = dev_alloc((ny + N_GUARD) * sizeof(float));
            float* guard = malloc((ny + N_GUARD) * sizeof *guard);
            ck_assert_ptr_nonnull(guard);
            for (size_t i = 0; i < ny + N_GUARD; i++) guard[i] = GUARD_F32;
            etx_dev_upload(dy, guard, (ny + N_GUARD) * sizeof *guard);
            float* ws = dev_alloc(ws_bytes);
            etx_dev_memset(ws, 0xff, ws_bytes);
            etx_gemm_bf16_bias(dy, dx, dw, db, n, in, out, ws, ws_bytes, NULL);
            etx_dev_sync();
            float* got = malloc((ny + N_GUARD) * sizeof *got);
            ck_assert_ptr_nonnull(got);
            etx_dev_download(got, dy, (ny + N_GUARD) * sizeof *got);
            for (size_t i = 0; i < ny; i++) {
                const float want = y[i] + bias[i % out];
                if (memcmp(&got[i], &want, sizeof want) != 0)
                    ck_abort_msg("n %d in %d out %d (variant %d): y[%zu] = %.9g, x W^T + b = %.9g", n, in, out,
                                 variant, i, got[i], want);
            }
            for (int g = 0; g < N_GUARD; g++) ck_assert_msg(got[ny + g] == GUARD_F32, "guard %d past y overwritten", g);
            etx_dev_free(dx), etx_dev_free(dw), etx_dev_free(db), etx_dev_free(dy), etx_dev_free(ws);
            free(x), free(w), free(bias), free(y), free(got), free(guard);
        }
    }
    etx_gemm_tc_force_split(0);
    etx_gemm_tc_force_kernel(-1);
    // with the folded norm: y = rmsnorm(x) W^T + b against the norm, the GEMM, then + b
    for (int warp = g_native; warp < 2; warp++) {
        etx_gemm_use_warp_kernel(warp);
        for (int path = 0; path < 2; path++) {
            etx_gemm_force_path(path);
            if (path == 1 && !etx_gemm_uses_tensor_cores()) continue;
            static const int ns[] = {1, 4, 6};
            uint64_t rng = rng_seed(47);
            for (int t = 0; t < 3; t++) {
                const int n = ns[t], in = 576, out = 96;
                float* xf = malloc((size_t)n * in * sizeof *xf);
                float* gamma = malloc((size_t)in * sizeof *gamma);
                float* bias = malloc((size_t)out * sizeof *bias);
                ck_assert(xf && gamma && bias);
                for (int i = 0; i < n * in; i++) xf[i] = 3.0f * rng_frand(&rng);
                for (int i = 0; i < in; i++) gamma[i] = 1.0f + 0.5f * rng_frand(&rng);
                for (int o = 0; o < out; o++) bias[o] = rng_frand(&rng);
                etx_bf16* w = random_bf16(&rng, (size_t)out * in);
                float* dx = dev_copy_of(xf, (size_t)n * in * sizeof *xf);
                float* dg = dev_copy_of(gamma, (size_t)in * sizeof *gamma);
                float* db = dev_copy_of(bias, (size_t)out * sizeof *bias);
                etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
                etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w);
                etx_bf16* dxb = dev_alloc((size_t)n * in * sizeof(etx_bf16));
                float* dref = dev_alloc((size_t)n * out * sizeof(float));
                float* dy = dev_alloc((size_t)n * out * sizeof(float));
                etx_rmsnorm_residual(dxb, dx, NULL, dg, n, in, 1e-5f, NULL);
                etx_gemm_bf16(dref, dxb, dw, n, in, out, NULL);
                etx_gemm_bf16_rmsnorm(dy, dx, dg, 1e-5f, dxb, dw, db, n, in, out, NULL, 0, NULL);
                etx_dev_sync();
                float* ref = malloc((size_t)n * out * sizeof *ref);
                float* got = malloc((size_t)n * out * sizeof *got);
                ck_assert(ref && got);
                etx_dev_download(ref, dref, (size_t)n * out * sizeof *ref);
                etx_dev_download(got, dy, (size_t)n * out * sizeof *got);
                for (int i = 0; i < n * out; i++) {
                    const float want = ref[i] + bias[i % out];
                    ck_assert_msg(memcmp(&got[i], &want, sizeof want) == 0,
                                  "norm + gemm + bias, n %d (path %d, warp %d): y[%d] = %.9g, want %.9g", n, path, warp,
                                  i, got[i], want);
                }
                etx_dev_free(dx), etx_dev_free(dg), etx_dev_free(db), etx_dev_free(dw), etx_dev_free(dxb);
                etx_dev_free(dref), etx_dev_free(dy);
                free(xf), free(gamma), free(bias), free(w), free(ref), free(got);
            }
        }
    }
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

// The norm folded into the projection (etx_gemm_bf16_rmsnorm, _swiglu): for every shape,
// the output equals, to the bit, the stand-alone norm (etx_rmsnorm_residual, which
// test_layer_kernels holds to the CPU) into xb followed by the GEMM on xb. Rows 1..4 take
// one launch (each block normalises its rows in the norm's canonical order, rmsnorm.cuh),
// which leaves xb as it was (checked: a guard pattern stays) and, under the emulator, is
// one kernel; more rows, or rows too long for the block's shared memory, take the two
// launches. Dims across the norm's three partial counts (128, 256, 512 partials: dim <
// 1024, < 4096, >= 4096). Under the emulator both the twin and the warp kernel.
static void check_rmsnorm_gemm(uint64_t* rng, int n, int in, int out, int swiglu) {
    const size_t nx = (size_t)n * in, ny = (size_t)n * (swiglu ? out / 2 : out);
    const size_t ybytes = ny * (swiglu ? sizeof(etx_bf16) : sizeof(float)), ws_bytes = (size_t)n * out * sizeof(float);
    float* x = malloc(nx * sizeof *x);
    float* gamma = malloc((size_t)in * sizeof *gamma);
    ck_assert(x && gamma);
    for (size_t i = 0; i < nx; i++) x[i] = 3.0f * rng_frand(rng);
    for (int i = 0; i < in; i++) gamma[i] = 1.0f + 0.5f * rng_frand(rng);
    etx_bf16* w = random_bf16(rng, (size_t)out * in);
    float* dx = dev_copy_of(x, nx * sizeof *x);
    float* dg = dev_copy_of(gamma, (size_t)in * sizeof *gamma);
    etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
    etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w);
    etx_bf16* dxb = dev_alloc(nx * sizeof(etx_bf16) + 16);
    void* dy = dev_alloc(ybytes + 16);
    void* dref = dev_alloc(ybytes + 16);
    float* ws = dev_alloc(ws_bytes + 16);
    const float eps = 1e-5f;
    // the reference: two launches
    etx_rmsnorm_residual(dxb, dx, NULL, dg, n, in, eps, NULL);
    if (swiglu) etx_gemm_bf16_swiglu(dref, dxb, dw, n, in, out, ws, ws_bytes, NULL);
    else etx_gemm_bf16_ws(dref, dxb, dw, n, in, out, ws, ws_bytes, NULL);
    // the call under test, xb filled with a pattern the fused path must leave
    etx_dev_memset(dxb, 0x5a, nx * sizeof(etx_bf16));
    etx_dev_sync();
    const long long before = etx_dev_kernel_launches();
    if (swiglu) etx_gemm_bf16_rmsnorm_swiglu(dy, dx, dg, eps, dxb, dw, n, in, out, ws, ws_bytes, NULL);
    else etx_gemm_bf16_rmsnorm(dy, dx, dg, eps, dxb, dw, NULL, n, in, out, ws, ws_bytes, NULL);
    etx_dev_sync();
    const long long launches = etx_dev_kernel_launches() - before;
    const int fused = etx_gemm_rmsnorm_fuses(n, in, out);
    if (before >= 0) ck_assert_msg(launches == (fused ? 1 : 2), "n %d in %d: %lld launches", n, in, launches);
    unsigned char* got = malloc(ybytes + 1);
    unsigned char* ref = malloc(ybytes + 1);
    etx_bf16* xb = malloc(nx * sizeof *xb);
    ck_assert(got && ref && xb);
    etx_dev_download(got, dy, ybytes);
    etx_dev_download(ref, dref, ybytes);
    etx_dev_download(xb, dxb, nx * sizeof *xb);
    if (memcmp(got, ref, ybytes) != 0) {
        for (size_t i = 0; i < ny; i++) {
            const size_t sz = swiglu ? sizeof(etx_bf16) : sizeof(float);
            if (memcmp(got + i * sz, ref + i * sz, sz) != 0)
                ck_abort_msg("n %d in %d out %d %s (%s): output %zu (row %zu) differs from norm + gemm", n, in, out,
                             swiglu ? "swiglu" : "f32", fused ? "fused" : "two launches", i,
                             i / (swiglu ? out / 2 : out));
        }
    }
    if (fused)
        for (size_t i = 0; i < nx; i++) ck_assert_msg(xb[i] == (etx_bf16)0x5a5a, "n %d in %d: fused, yet xb[%zu] written", n, in, i);
    etx_dev_free(dx), etx_dev_free(dg), etx_dev_free(dw), etx_dev_free(dxb), etx_dev_free(dy), etx_dev_free(dref);
    etx_dev_free(ws);
    free(x), free(gamma), free(w), free(got), free(ref), free(xb);
}

START_TEST(gemm_rmsnorm_fused) {
    if (!etx_gemm_uses_tensor_cores()) return;
    etx_gemm_force_path(1);
    static const int shapes[][3] = {
        // n, in, out
        {1, 64, 32}, {2, 576, 96}, {3, 1032, 48}, {4, 2048, 64}, {1, 4096, 32}, {4, 4096, 16}, {2, 8192, 16},
        {4, 8192, 16}, /* too long for shared memory: two launches */ {5, 576, 64}, {9, 1032, 32},
    };
    for (int warp = 0; warp < 2; warp++) {
        if (g_native && !warp) continue; // no twin on a GPU
        etx_gemm_use_warp_kernel(warp);
        uint64_t rng = rng_seed(29);
        // a wrong order of the sum of squares moves inv by an ulp or so, which changes a bf16
        // of xb only now and then: several draws of x per shape make that show
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
            for (int rep = 0; rep < 6; rep++) check_rmsnorm_gemm(&rng, shapes[k][0], shapes[k][1], shapes[k][2], rep % 2);
    }
    // captured in a graph and replayed (as the decode step runs), the fused call gives what
    // it gives eagerly
    {
        const int n = 3, in = 576, out = 64;
        uint64_t rng = rng_seed(31);
        float* x = malloc((size_t)n * in * sizeof *x);
        float* gamma = malloc((size_t)in * sizeof *gamma);
        ck_assert(x && gamma);
        for (int i = 0; i < n * in; i++) x[i] = 3.0f * rng_frand(&rng);
        for (int i = 0; i < in; i++) gamma[i] = 1.0f + 0.5f * rng_frand(&rng);
        etx_bf16* w = random_bf16(&rng, (size_t)out * in);
        float* dx = dev_copy_of(x, (size_t)n * in * sizeof *x);
        float* dg = dev_copy_of(gamma, (size_t)in * sizeof *gamma);
        etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
        etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w);
        etx_bf16* dxb = dev_alloc((size_t)n * in * sizeof(etx_bf16));
        float* dy = dev_alloc((size_t)n * out * sizeof(float));
        float* dy2 = dev_alloc((size_t)n * out * sizeof(float));
        void* st = etx_dev_stream_create();
        for (int warp = g_native; warp < 2; warp++) {
            etx_gemm_use_warp_kernel(warp);
            etx_gemm_bf16_rmsnorm(dy, dx, dg, 1e-5f, dxb, dw, NULL, n, in, out, NULL, 0, st);
            etx_dev_stream_sync(st);
            etx_dev_memset(dy2, 0xff, (size_t)n * out * sizeof(float));
            ck_assert(etx_dev_capture_begin(st));
            etx_gemm_bf16_rmsnorm(dy2, dx, dg, 1e-5f, dxb, dw, NULL, n, in, out, NULL, 0, st);
            void* g = etx_dev_capture_end(st);
            ck_assert_msg(g != NULL, "capture failed: %s", etx_dev_capture_error());
            etx_dev_graph_launch(g, st);
            etx_dev_graph_launch(g, st); // twice: a replay leaves nothing behind that changes the next
            etx_dev_stream_sync(st);
            float* a = malloc((size_t)n * out * sizeof *a);
            float* b = malloc((size_t)n * out * sizeof *b);
            ck_assert(a && b);
            etx_dev_download(a, dy, (size_t)n * out * sizeof *a);
            etx_dev_download(b, dy2, (size_t)n * out * sizeof *b);
            for (int i = 0; i < n * out; i++)
                ck_assert_msg(memcmp(&a[i], &b[i], sizeof a[i]) == 0, "%s: y[%d] = %.9g eagerly, %.9g from a graph",
                              warp ? "warp kernel" : "twin", i, a[i], b[i]);
            free(a), free(b);
            etx_dev_graph_destroy(g);
        }
        etx_dev_stream_destroy(st);
        etx_dev_free(dx), etx_dev_free(dg), etx_dev_free(dw), etx_dev_free(dxb), etx_dev_free(dy), etx_dev_free(dy2);
        free(x), free(gamma), free(w);
    }
    ck_assert(etx_gemm_rmsnorm_fuses(4, 4096, 64) && !etx_gemm_rmsnorm_fuses(4, 8192, 64));
    ck_assert(!etx_gemm_rmsnorm_fuses(5, 64, 64) && !etx_gemm_rmsnorm_fuses(2, 100, 64));
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

// The residual add with the next norm in the split reduce (etx_gemm_bf16_add_rmsnorm):
// y and xb equal, to the bit, etx_gemm_bf16_add on the same path followed by the
// stand-alone norm (etx_rmsnorm_residual, held to the CPU by test_layer_kernels). Widths
// across the norm's three partial counts (out 256: 128 partials, 1024: 256, 4096: 512),
// sums of 8 and of 16 slices (in 4104), splits of 2, 4 and 8 blocks a tile, row counts
// that leave the last tile short; the fused call is one launch fewer under the emulator,
// and where nothing splits (split forced to 1, or no workspace) it takes the two launches
// with the same bits. The twin path (emulator default) runs the twin and the norm.
static void check_add_rmsnorm(uint64_t* rng, int n, int in, int out, int split, int with_ws) {
    const size_t nx = (size_t)n * in, ny = (size_t)n * out;
    const size_t ws_bytes = with_ws ? etx_gemm_tc_workspace_bytes(n, out) : 0;
    float* y0 = malloc(ny * sizeof *y0);
    float* gamma = malloc((size_t)out * sizeof *gamma);
    ck_assert(y0 && gamma);
    for (size_t i = 0; i < ny; i++) y0[i] = 3.0f * rng_frand(rng);
    for (int i = 0; i < out; i++) gamma[i] = 1.0f + 0.5f * rng_frand(rng);
    etx_bf16* x = random_bf16(rng, nx);
    etx_bf16* w = random_bf16(rng, (size_t)out * in);
    etx_bf16* dx = dev_copy_of(x, nx * sizeof *x);
    etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
    etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w);
    float* dg = dev_copy_of(gamma, (size_t)out * sizeof *gamma);
    float* dy = dev_copy_of(y0, ny * sizeof *y0);
    float* dyr = dev_copy_of(y0, ny * sizeof *y0);
    etx_bf16* dxb = dev_alloc(ny * sizeof(etx_bf16) + 16);
    etx_bf16* dxbr = dev_alloc(ny * sizeof(etx_bf16) + 16);
    float* ws = with_ws ? dev_alloc(ws_bytes) : NULL;
    const float eps = 1e-5f;
    etx_gemm_tc_force_split(split);
    // the reference: the add, then the norm's own launch
    if (ws) etx_dev_memset(ws, 0xff, ws_bytes);
    etx_gemm_bf16_add(dyr, dx, dw, n, in, out, ws, ws_bytes, NULL);
    etx_rmsnorm_residual(dxbr, dyr, NULL, dg, n, out, eps, NULL);
    if (ws) etx_dev_memset(ws, 0xff, ws_bytes);
    etx_dev_sync();
    const long long before = etx_dev_kernel_launches();
    etx_gemm_bf16_add_rmsnorm(dy, dx, dw, dg, eps, dxb, n, in, out, ws, ws_bytes, NULL);
    etx_dev_sync();
    const long long launches = etx_dev_kernel_launches() - before;
    const int fused = etx_gemm_add_rmsnorm_fuses(n, in, out, ws_bytes) && etx_gemm_uses_tensor_cores();
    if (before >= 0) {
        // fused: the tiled kernel and the reduce; else the GEMM (1, or 2 with a split) + the norm
        const long long want = fused ? 2 : (etx_gemm_tc_takes_tiled(n, out, ws_bytes) && split > 1 ? 3 : 2);
        ck_assert_msg(launches == want, "n %d in %d out %d split %d: %lld launches, want %lld", n, in, out, split,
                      launches, want);
    }
    float* got = malloc(ny * sizeof *got);
    float* ref = malloc(ny * sizeof *ref);
    etx_bf16* xb = malloc(ny * sizeof *xb);
    etx_bf16* xbr = malloc(ny * sizeof *xbr);
    ck_assert(got && ref && xb && xbr);
    etx_dev_download(got, dy, ny * sizeof *got);
    etx_dev_download(ref, dyr, ny * sizeof *ref);
    etx_dev_download(xb, dxb, ny * sizeof *xb);
    etx_dev_download(xbr, dxbr, ny * sizeof *xbr);
    for (size_t i = 0; i < ny; i++) {
        ck_assert_msg(memcmp(&got[i], &ref[i], sizeof got[i]) == 0,
                      "n %d in %d out %d split %d (%s): y[%zu] = %.9g, add then norm gives %.9g", n, in, out, split,
                      fused ? "fused" : "two launches", i, got[i], ref[i]);
        ck_assert_msg(xb[i] == xbr[i], "n %d in %d out %d split %d (%s): xb[%zu] (row %zu) = %04x, the norm gives %04x",
                      n, in, out, split, fused ? "fused" : "two launches", i, i / out, xb[i], xbr[i]);
    }
    etx_dev_free(dx), etx_dev_free(dw), etx_dev_free(dg), etx_dev_free(dy), etx_dev_free(dyr), etx_dev_free(dxb);
    etx_dev_free(dxbr);
    if (ws) etx_dev_free(ws);
    free(y0), free(gamma), free(x), free(w), free(got), free(ref), free(xb), free(xbr);
}

START_TEST(gemm_add_rmsnorm_fused) {
    if (!etx_gemm_uses_tensor_cores()) return;
    etx_gemm_force_path(1);
    static const int shapes[][3] = {
        // n, in, out
        {33, 72, 256}, {40, 264, 1024}, {70, 136, 256}, {35, 4104, 256}, {33, 40, 4096},
    };
    for (int warp = g_native; warp < 2; warp++) {
        etx_gemm_use_warp_kernel(warp);
        etx_gemm_tc_force_kernel(warp ? 1 : -1); // the tiled kernel, whose split has the reduce
        uint64_t rng = rng_seed(37);
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const int n = shapes[k][0], in = shapes[k][1], out = shapes[k][2];
            // a wrong order of the sum of squares shows only now and then in xb: several draws
            for (int rep = 0; rep < 3; rep++) check_add_rmsnorm(&rng, n, in, out, 2 << (rep % 3), 1);
            if (k == 0) check_add_rmsnorm(&rng, n, in, out, 1, 1), check_add_rmsnorm(&rng, n, in, out, 0, 0);
        }
    }
    // the rule: a split tiled call of float4 rows
    etx_gemm_tc_force_kernel(1);
    etx_gemm_tc_force_split(4);
    ck_assert(etx_gemm_add_rmsnorm_fuses(40, 64, 256, etx_gemm_tc_workspace_bytes(40, 256)));
    ck_assert(!etx_gemm_add_rmsnorm_fuses(40, 64, 256, 0));          // no workspace: no split
    ck_assert(!etx_gemm_add_rmsnorm_fuses(40, 64, 258, etx_gemm_tc_workspace_bytes(40, 258))); // out % 4
    ck_assert(!etx_gemm_add_rmsnorm_fuses(40, 60, 256, etx_gemm_tc_workspace_bytes(40, 256))); // CUDA cores
    etx_gemm_tc_force_kernel(-1);
    etx_gemm_tc_force_split(0);
    // auto: batch 256 of a 1B model's O projection splits; batch 8 does not
    ck_assert(etx_gemm_add_rmsnorm_fuses(256, 2048, 2048, etx_gemm_tc_workspace_bytes(256, 2048)));
    ck_assert(!etx_gemm_add_rmsnorm_fuses(8, 2048, 2048, etx_gemm_tc_workspace_bytes(8, 2048)));
    etx_gemm_tc_force_split(0);
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
}
END_TEST

START_TEST(gemm_edge_cases) {
    uint64_t rng = rng_seed(12);
    const int n = 3, in = 16, out = 5;
    etx_bf16* x = random_bf16(&rng, (size_t)n * in);
    etx_bf16* w = random_bf16(&rng, (size_t)out * in);
    // n == 0 and out == 0: nothing written (run_gemm checks the guards from y[0] on)
    free(run_gemm(x, w, 0, in, out));
    free(run_gemm(x, w, n, in, 0));
    // in == 0: every output is the empty sum
    float* y = run_gemm(x, w, n, 0, out);
    for (int i = 0; i < n * out; i++) ck_assert_msg(y[i] == 0.0f, "in 0: y[%d] = %g", i, y[i]);
    free(y), free(x), free(w);
}
END_TEST

// An L2 prefetch riding on a call (etx_gemm_prefetch_next) changes no output: y equals
// the call without it, to the bit, for the twin and gemm_tc_kernel (8 and 16 warps), the
// f32, add and SwiGLU epilogues and the folded norm; the prefetch is taken by that call
// (the next one carries none: under the emulator an out-of-range pending prefetch would
// abort it); ranges of any length split over the blocks, down to one 16-byte piece.
// Under the emulator every block's share is checked to lie in read-only device memory.
START_TEST(gemm_prefetch_changes_nothing) {
    if (!etx_gemm_uses_tensor_cores()) return;
    etx_gemm_force_path(1);
    uint64_t rng = rng_seed(41);
    const int n = 3, in = 4104, out = 48; // 16 slices: the 16-warp variant too
    const size_t pfb = (size_t)1 << 20;
    etx_bf16* x = random_bf16(&rng, (size_t)n * in);
    etx_bf16* w = random_bf16(&rng, (size_t)out * in);
    etx_bf16* next = random_bf16(&rng, pfb / 2); // a later projection's weights
    etx_bf16* dx = dev_copy_of(x, (size_t)n * in * sizeof *x);
    etx_bf16* dw = dev_copy_of(w, (size_t)out * in * sizeof *w);
    etx_dev_mark_readonly(dw, (size_t)out * in * sizeof *w);
    etx_bf16* dn = dev_copy_of(next, pfb);
    etx_dev_mark_readonly(dn, pfb);
    float* ref = dev_alloc((size_t)n * out * sizeof(float));
    float* got = dev_alloc((size_t)n * out * sizeof(float));
    float* h = malloc((size_t)n * out * sizeof *h);
    float* g = malloc((size_t)n * out * sizeof *g);
    ck_assert(h && g);
    static const size_t lens[] = {16, 4096 + 16, (size_t)1 << 20};
    for (int variant = g_native; variant < 4; variant++) { // twin, 8 warps, 16 warps, 16 warps + add
        etx_gemm_use_warp_kernel(variant > 0);
        etx_gemm_tc_force_warps(variant >= 2 ? 16 : 8);
        for (int k = 0; k < 3; k++) {
            etx_dev_memset(ref, 0, (size_t)n * out * sizeof(float));
            etx_dev_memset(got, 0, (size_t)n * out * sizeof(float));
            if (variant == 3) etx_gemm_bf16_add(ref, dx, dw, n, in, out, NULL, 0, NULL);
            else etx_gemm_bf16(ref, dx, dw, n, in, out, NULL);
            etx_gemm_prefetch_next((const char*)dn + pfb - lens[k], lens[k]); // the end of the range: a share past it would show
            if (variant == 3) etx_gemm_bf16_add(got, dx, dw, n, in, out, NULL, 0, NULL);
            else etx_gemm_bf16(got, dx, dw, n, in, out, NULL);
            etx_dev_sync();
            etx_dev_download(h, ref, (size_t)n * out * sizeof *h);
            etx_dev_download(g, got, (size_t)n * out * sizeof *g);
            ck_assert_msg(memcmp(h, g, (size_t)n * out * sizeof *h) == 0, "variant %d, %zu bytes prefetched: y changed",
                          variant, lens[k]);
        }
    }
    // SwiGLU and the folded norm carry one too
    {
        float* xf = malloc((size_t)n * in * sizeof *xf);
        float* gamma = malloc((size_t)in * sizeof *gamma);
        ck_assert(xf && gamma);
        for (int i = 0; i < n * in; i++) xf[i] = rng_frand(&rng);
        for (int i = 0; i < in; i++) gamma[i] = 1.0f + 0.25f * rng_frand(&rng);
        float* dxf = dev_copy_of(xf, (size_t)n * in * sizeof *xf);
        float* dg = dev_copy_of(gamma, (size_t)in * sizeof *gamma);
        etx_bf16* dxb = dev_alloc((size_t)n * in * sizeof(etx_bf16));
        etx_bf16* h1 = dev_alloc((size_t)n * out / 2 * sizeof(etx_bf16));
        etx_bf16* h2 = dev_alloc((size_t)n * out / 2 * sizeof(etx_bf16));
        etx_gemm_use_warp_kernel(1);
        etx_gemm_tc_force_warps(0);
        const int in2 = 2048; // the folded norm's rows fit shared memory
        etx_gemm_bf16_rmsnorm_swiglu(h1, dxf, dg, 1e-5f, dxb, dw, n, in2, out, NULL, 0, NULL);
        etx_gemm_prefetch_next(dn, pfb);
        etx_gemm_bf16_rmsnorm_swiglu(h2, dxf, dg, 1e-5f, dxb, dw, n, in2, out, NULL, 0, NULL);
        etx_dev_sync();
        etx_bf16 a[3 * 24], b2[3 * 24];
        etx_dev_download(a, h1, sizeof a);
        etx_dev_download(b2, h2, sizeof b2);
        ck_assert_msg(memcmp(a, b2, sizeof a) == 0, "norm + SwiGLU with a prefetch: h changed");
        etx_dev_free(dxf), etx_dev_free(dg), etx_dev_free(dxb), etx_dev_free(h1), etx_dev_free(h2);
        free(xf), free(gamma);
    }
    etx_gemm_tc_force_warps(0);
    etx_gemm_use_warp_kernel(0);
    etx_gemm_force_path(-1);
    etx_dev_free(dx), etx_dev_free(dw), etx_dev_free(dn), etx_dev_free(ref), etx_dev_free(got);
    free(x), free(w), free(next), free(h), free(g);
}
END_TEST

// A prefetch range that is not 16-byte pieces aborts naming the call, before any launch.
START_TEST(gemm_prefetch_misaligned) {
    etx_bf16* d = dev_alloc(4096);
    etx_gemm_prefetch_next((const char*)d + 8, 64);
    ck_abort_msg("etx_gemm_prefetch_next took a range 8 bytes into a 16-byte piece"); // not reached
}
END_TEST

// Under the emulator: a prefetch past the end of its (read-only) allocation aborts at
// the launch that carries it, as an illegal address would natively; so does one of
// memory nobody marked read-only (the prefetch runs before the grid-dependency wait).
START_TEST(gemm_prefetch_out_of_range) {
#ifdef ETX_NATIVE_CUDA
    raise(SIGABRT); // the check is the emulator's; natively an illegal address is a sticky error
#else
    etx_gemm_force_path(1);
    etx_gemm_use_warp_kernel(1);
    const int n = 1, in = 64, out = 32;
    etx_bf16* dx = dev_alloc((size_t)n * in * sizeof(etx_bf16));
    etx_bf16* dw = dev_alloc((size_t)out * in * sizeof(etx_bf16));
    etx_dev_memset(dx, 0, (size_t)n * in * sizeof(etx_bf16));
    etx_dev_memset(dw, 0, (size_t)out * in * sizeof(etx_bf16));
    etx_dev_mark_readonly(dw, (size_t)out * in * sizeof(etx_bf16));
    float* dy = dev_alloc((size_t)n * out * sizeof(float));
    etx_gemm_prefetch_next(dw, (size_t)out * in * sizeof(etx_bf16) + 16); // one piece past w
    etx_gemm_bf16(dy, dx, dw, n, in, out, NULL);
    etx_dev_sync();
    ck_abort_msg("a prefetch past its allocation ran"); // not reached
#endif
}
END_TEST

// 65535 * 16 + 1 rows: one more row tile than gridDim.y allows; aborts before any launch
START_TEST(gemm_row_limit) {
    const int n = 65535 * 16 + 1, in = 1, out = 1;
    etx_bf16* dx = dev_alloc((size_t)n * in * sizeof *dx);
    etx_bf16* dw = dev_alloc((size_t)out * in * sizeof *dw);
    float* dy = dev_alloc((size_t)n * out * sizeof *dy);
    etx_dev_memset(dx, 0, (size_t)n * in * sizeof *dx);
    etx_dev_memset(dw, 0, (size_t)out * in * sizeof *dw);
    etx_gemm_bf16(dy, dx, dw, n, in, out, NULL);
    ck_abort_msg("etx_gemm_bf16 with %d rows returned", n); // not reached: it aborts
}
END_TEST

static Suite* gemm_suite(void) {
    Suite* s = suite_create("gemm");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, gemm_matches_cpu);
    tcase_add_test(tc, gemm_rows_are_batch_invariant);
    tcase_add_test(tc, gemm_tc_kernels_agree);
    tcase_add_test(tc, gemm_swiglu_epilogue);
    tcase_add_test(tc, gemm_add_epilogue);
    tcase_add_test(tc, gemm_bias_epilogue);
    tcase_add_test(tc, gemm_rmsnorm_fused);
    tcase_add_test(tc, gemm_add_rmsnorm_fused);
    tcase_add_test(tc, gemm_edge_cases);
    tcase_add_test_raise_signal(tc, gemm_row_limit, SIGABRT);
    tcase_add_test(tc, gemm_prefetch_changes_nothing);
    tcase_add_test_raise_signal(tc, gemm_prefetch_misaligned, SIGABRT);
    tcase_add_test_raise_signal(tc, gemm_prefetch_out_of_range, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    char dev_name[256];
    if (!check_device_present(dev_name, sizeof dev_name)) { // asked in a child: see check_device.h
        fprintf(stderr, "test_gemm: no CUDA device: skipped\n");
        return CHECK_SKIPPED;
    }
    return check_run_suite(gemm_suite());
}
