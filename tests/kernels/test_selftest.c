/*
 * test_selftest.c — the SIMT emulator's semantics (tests/simt), through the kernels of
 * tests/simt/selftest.cu, checked against results computed here on the host. The same
 * source builds test_selftest_emu (emulator) and test_selftest_gpu (native, ETX_NATIVE_CUDA;
 * exits 77 = skipped without a GPU), so on a GPU machine it checks the emulator's model
 * against the hardware.
 *
 *   - block reductions through static and dynamic shared memory (and a __shared__ scalar),
 *     many blocks: integer-valued floats, so every sum is exact in any order;
 *   - warp shuffles of each kind (idx, up, down, xor), widths 32/16/8, types int, unsigned,
 *     float, double, long long, unsigned long long, two groups with their own masks: the
 *     host replays PTX shfl.sync's source-lane rule;
 *   - ballot / any / all with lane- and data-dependent predicates, __popc / __ffs / __clz,
 *     __activemask in converged code, __syncthreads_count/_and/_or, __match_any_sync,
 *     __reduce_{add,min,max,and,or,xor}_sync;
 *   - a block of 100 threads (a 4-lane last warp): ballot of the existing lanes,
 *     __reduce_add_sync, a guarded butterfly; a 3D block (8,4,3): linear ids and warps of
 *     32 consecutive linear ids; a 2D grid;
 *   - atomics from 50 blocks: add (int, unsigned, unsigned long long, float), max/min (int,
 *     unsigned), CAS loops (int, and float through unsigned bits), exch; return values;
 *   - bf16: round to nearest even at ties, overflow to inf, subnormals, signs, NaN;
 *   - math: expf exp2f logf log2f sqrtf rsqrtf and the __ intrinsics within the CUDA
 *     Programming Guide's ulp bounds (+1 for the reference's rounding) of double results;
 *     fmaxf fminf fabsf, bit casts, min/max overloads exactly;
 *   - launch errors (2048 threads per block) reported by cudaGetLastError;
 *   - copies and memsets that leave their allocation fail with cudaErrorInvalidValue;
 *   - one mma.sync m16n8k16 (bf16, f32 accumulate) in PTX's fragment layout, on small
 *     integers (exact in any order of addition), against A B + C;
 *   - a __syncthreads round over 256 threads: its cost, printed (not asserted: the CI
 *     machine is shared);
 *   - emulator only, in a child process whose stderr is read back: a divergent
 *     __syncthreads (both orders: return while others wait, wait after others returned),
 *     a deadlock (__syncthreads vs __syncwarp) and lanes disagreeing on the intrinsic abort
 *     with a message naming the block, the threads and the barrier; a shuffle reading
 *     outside its mask returns the poison value (SIMT_STRICT=1: aborts); unwritten
 *     dynamic shared memory reads as 0xff bytes; sanitized C code called on the fiber
 *     stacks (a longjmp included) draws no ASan warning (the fiber annotations work).
 *
 * Every comparison is exact: the inputs are small integers (sums far below 2^24) or bf16
 * conversions, which are exactly specified.
 */
#include <check.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "selftest.h"
#include "check_device.h"
#include "check_main.h"
#include "test_rng.h"

// ----------------------------------------------------------------------------
// helpers

static void* dev_alloc(size_t bytes) {
    void* d = etx_dev_malloc(bytes);
    ck_assert_ptr_nonnull(d);
    return d;
}

static void* dev_put(const void* host, size_t bytes) {
    void* d = dev_alloc(bytes);
    etx_dev_upload(d, host, bytes);
    return d;
}

static void* host_alloc(size_t bytes) {
    void* p = calloc(1, bytes);
    ck_assert_ptr_nonnull(p);
    return p;
}

// n ints in [lo, hi]
static int* random_ints(int n, int lo, int hi, uint64_t seed) {
    int* v = host_alloc((size_t)n * sizeof(int));
    uint64_t rng = rng_seed(seed);
    for (int i = 0; i < n; i++) v[i] = lo + rng_below(&rng, hi - lo + 1);
    return v;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ----------------------------------------------------------------------------
// block reductions

static void check_block_sums(const float* x, int n, int block, int n_blocks, const float* got) {
    for (int b = 0; b < n_blocks; b++) {
        float want = 0.0f; // integers below 2^24: exact in any order
        for (int t = 0; t < block; t++)
            if (b * block + t < n) want += x[b * block + t];
        ck_assert_msg(got[b] == want, "block %d (of %d threads): sum %g, want %g", b, block, got[b], want);
    }
}

static float* random_int_floats(int n, uint64_t seed) {
    int* iv = random_ints(n, -100, 100, seed);
    float* x = host_alloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = (float)iv[i];
    free(iv);
    return x;
}

START_TEST(test_block_sum_static) {
    const int n_blocks = 37, n = n_blocks * 256 - 100; // the last block partly past n
    float* x = random_int_floats(n, 1);
    float* dx = dev_put(x, (size_t)n * sizeof(float));
    float* dsums = dev_alloc(n_blocks * sizeof(float));
    float* dall = dev_alloc((size_t)n_blocks * 256 * sizeof(float));
    selftest_block_sum_static(dx, n, n_blocks, dsums, dall);
    float* sums = host_alloc(n_blocks * sizeof(float));
    float* all = host_alloc((size_t)n_blocks * 256 * sizeof(float));
    etx_dev_download(sums, dsums, n_blocks * sizeof(float));
    etx_dev_download(all, dall, (size_t)n_blocks * 256 * sizeof(float));
    check_block_sums(x, n, 256, n_blocks, sums);
    for (int i = 0; i < n_blocks * 256; i++)
        ck_assert_msg(all[i] == sums[i / 256], "thread %d read the __shared__ total %g, want %g", i, all[i],
                      sums[i / 256]);
    etx_dev_free(dx);
    etx_dev_free(dsums);
    etx_dev_free(dall);
    free(x);
    free(sums);
    free(all);
}
END_TEST

START_TEST(test_block_sum_dynamic) {
    const int blocks[] = {32, 128, 1024};
    for (int k = 0; k < 3; k++) {
        const int block = blocks[k], n_blocks = 9, n = n_blocks * block - 7;
        float* x = random_int_floats(n, 2 + k);
        float* dx = dev_put(x, (size_t)n * sizeof(float));
        float* dsums = dev_alloc(n_blocks * sizeof(float));
        selftest_block_sum_dynamic(dx, n, n_blocks, block, dsums);
        float sums[9];
        etx_dev_download(sums, dsums, sizeof sums);
        check_block_sums(x, n, block, n_blocks, sums);
        etx_dev_free(dx);
        etx_dev_free(dsums);
        free(x);
    }
}
END_TEST

// ----------------------------------------------------------------------------
// warp shuffles

enum { SH_IDX, SH_UP, SH_DOWN, SH_XOR };

// Source lane of PTX shfl.sync for a segment of `width` lanes (CUDA's width argument):
// out-of-segment sources give the caller's own lane.
static int shfl_src(int kind, int lane, int arg, int width) {
    const int segmask = (32 - width) & 31, b = arg & 31;
    const int min_lane = lane & segmask, max_lane = min_lane | (31 & ~segmask);
    int j;
    switch (kind) {
    case SH_UP: j = lane - b; return j >= min_lane ? j : lane;
    case SH_DOWN: j = lane + b; return j <= max_lane ? j : lane;
    case SH_XOR: j = lane ^ b; return j <= max_lane ? j : lane;
    default: return min_lane | (b & ~segmask);
    }
}

// One step over a warp's 32 values: v[l] = op(v[l], v[src(l)]) with op '+' (add=1) or
// replace (add=0).
static void warp_step(long long* v, int kind, int arg, int width, int add) {
    long long nv[32];
    for (int l = 0; l < 32; l++) {
        const long long y = v[shfl_src(kind, l, arg, width)];
        nv[l] = add ? v[l] + y : y;
    }
    memcpy(v, nv, sizeof nv);
}

START_TEST(test_shuffles) {
    const int n_blocks = 3, n = n_blocks * 64;
    int* in = random_ints(n, 0, 1000, 7);
    int* din = dev_put(in, (size_t)n * sizeof(int));
    long long* dout = dev_alloc((size_t)n * SELFTEST_SHFL_FIELDS * sizeof(long long));
    selftest_shuffles(din, n_blocks, dout);
    long long* out = host_alloc((size_t)n * SELFTEST_SHFL_FIELDS * sizeof(long long));
    etx_dev_download(out, dout, (size_t)n * SELFTEST_SHFL_FIELDS * sizeof(long long));

    for (int w0 = 0; w0 < n; w0 += 32) {
        long long want[SELFTEST_SHFL_FIELDS][32], v[32];
        // 0: xor butterfly
        for (int l = 0; l < 32; l++) v[l] = in[w0 + l];
        for (int m = 16; m > 0; m >>= 1) warp_step(v, SH_XOR, m, 32, 1);
        memcpy(want[0], v, sizeof v);
        // 1: down tree
        for (int l = 0; l < 32; l++) v[l] = in[w0 + l];
        for (int d = 16; d > 0; d >>= 1) warp_step(v, SH_DOWN, d, 32, 1);
        memcpy(want[1], v, sizeof v);
        // 2: inclusive scan (lanes below d keep their value)
        for (int l = 0; l < 32; l++) v[l] = in[w0 + l];
        for (int d = 1; d < 32; d <<= 1) {
            long long y[32];
            memcpy(y, v, sizeof v);
            warp_step(y, SH_UP, d, 32, 0);
            for (int l = d; l < 32; l++) v[l] += y[l];
        }
        memcpy(want[2], v, sizeof v);
        // 3: broadcast from lane in[w0] & 31
        for (int l = 0; l < 32; l++) want[3][l] = in[w0 + (in[w0] & 31)];
        // 4: xor within 16-lane segments, 64-bit payload
        for (int l = 0; l < 32; l++) v[l] = (long long)in[w0 + l] << 33;
        for (int m = 8; m > 0; m >>= 1) warp_step(v, SH_XOR, m, 16, 1);
        memcpy(want[4], v, sizeof v);
        // 5: lane 3 of each 8-lane segment
        for (int l = 0; l < 32; l++) want[5][l] = in[w0 + shfl_src(SH_IDX, l, 3, 8)];
        // 6: down tree within 16-lane segments
        for (int l = 0; l < 32; l++) v[l] = in[w0 + l];
        for (int d = 8; d > 0; d >>= 1) warp_step(v, SH_DOWN, d, 16, 1);
        memcpy(want[6], v, sizeof v);
        // 7: two groups: lanes < 16 xor 1, lanes >= 16 xor 2
        for (int l = 0; l < 32; l++) want[7][l] = in[w0 + l] + in[w0 + (l < 16 ? l ^ 1 : l ^ 2)];
        // 8: inclusive scan within 8-lane segments; the replayed up rule keeps lanes at a
        // segment start from reading the previous segment
        for (int l = 0; l < 32; l++) v[l] = in[w0 + l];
        for (int d = 1; d < 8; d <<= 1) {
            long long y[32];
            memcpy(y, v, sizeof v);
            warp_step(y, SH_UP, d, 8, 0);
            for (int l = 0; l < 32; l++)
                if ((l & 7) >= d) v[l] += y[l];
        }
        memcpy(want[8], v, sizeof v);
        // 9, 10: raw up by 3 and xor 8 in 8-lane segments
        for (int l = 0; l < 32; l++) {
            want[9][l] = in[w0 + ((l & 7) >= 3 ? l - 3 : l)];
            want[10][l] = in[w0 + ((l & 8) ? l ^ 8 : l)];
            ck_assert(want[9][l] == in[w0 + shfl_src(SH_UP, l, 3, 8)]);
            ck_assert(want[10][l] == in[w0 + shfl_src(SH_XOR, l, 8, 8)]);
        }
        for (int l = 0; l < 32; l++) {
            long long direct = 0; // the same from the definition
            for (int j = l & ~7; j <= l; j++) direct += in[w0 + j];
            ck_assert(want[8][l] == direct);
        }

        for (int f = 0; f < SELFTEST_SHFL_FIELDS; f++)
            for (int l = 0; l < 32; l++)
                ck_assert_msg(out[(size_t)(w0 + l) * SELFTEST_SHFL_FIELDS + f] == want[f][l],
                              "field %d, thread %d: got %lld, want %lld", f, w0 + l,
                              out[(size_t)(w0 + l) * SELFTEST_SHFL_FIELDS + f], want[f][l]);
    }
    // the scan and the butterfly are not trivially equal to the input
    ck_assert(out[1 * SELFTEST_SHFL_FIELDS + 2] == in[0] + in[1]);
    etx_dev_free(din);
    etx_dev_free(dout);
    free(in);
    free(out);
}
END_TEST

// ----------------------------------------------------------------------------
// votes

START_TEST(test_votes) {
    const int n_blocks = 4, n = n_blocks * 64;
    int* in = random_ints(n, 0, 100, 11);
    in[64 + 5] = 95; // warp 2 has a value > 90; make warp 3 have none
    for (int l = 0; l < 32; l++)
        if (in[96 + l] > 90) in[96 + l] = 90;
    for (int l = 16; l < 32; l++) // the upper half of warp 0 all > 3, of warp 1 not
        if (in[l] <= 3) in[l] = 4 + l;
    in[32 + 20] = 1;
    int* din = dev_put(in, (size_t)n * sizeof(int));
    unsigned* dout = dev_alloc((size_t)n * SELFTEST_VOTE_FIELDS * sizeof(unsigned));
    selftest_votes(din, n_blocks, dout);
    unsigned* out = host_alloc((size_t)n * SELFTEST_VOTE_FIELDS * sizeof(unsigned));
    etx_dev_download(out, dout, (size_t)n * SELFTEST_VOTE_FIELDS * sizeof(unsigned));

    int any_true = 0, any_false = 0, all_hi_true = 0, all_hi_false = 0, and_seen[2] = {0, 0}, or_seen[2] = {0, 0};
    for (int w0 = 0; w0 < n; w0 += 32) {
        unsigned ballot = 0, b3 = 0, lo = 0, hi = 0;
        int any = 0, all3 = 1, all_lo = 1, all_hi = 1;
        for (int l = 0; l < 32; l++) {
            const int v = in[w0 + l];
            if (v & 1) ballot |= 1u << l;
            if (v > 90) any = 1;
            if (l == (in[w0] & 31)) all3 = 0;
            if (l % 3 == 0 && v > 20) b3 |= 1u << l;
            if (l < 16 && (v & 2)) lo |= 1u << l;
            if (l >= 16 && (v & 4)) hi |= 1u << l;
            if (l < 16 && !(v >= 0)) all_lo = 0;
            if (l >= 16 && !(v > 3)) all_hi = 0;
        }
        all_hi_true |= all_hi;
        all_hi_false |= !all_hi;
        any_true |= any;
        any_false |= !any;
        const int b0 = w0 - w0 % 64; // the block's first thread
        unsigned count = 0, band = 1, bor = 0;
        for (int t = 0; t < 64; t++) {
            count += in[b0 + t] & 1;
            band &= in[b0 + t] > 2;
            bor |= in[b0 + t] > 97;
        }
        and_seen[band] = or_seen[bor] = 1;
        unsigned rmax = 0, ror = 0, rxor = 0, rand_ = 0xffffffffu;
        int rmin = 1 << 30, radd = 0;
        for (int l = 0; l < 32; l++) {
            const int v = in[w0 + l];
            rmax = (unsigned)v > rmax ? (unsigned)v : rmax;
            rmin = v - 50 < rmin ? v - 50 : rmin;
            ror |= 1u << (v % 32);
            rxor ^= (unsigned)v;
            rand_ &= (unsigned)v | 0xf0u;
            radd += v;
        }
        for (int l = 0; l < 32; l++) {
            const unsigned* o = out + (size_t)(w0 + l) * SELFTEST_VOTE_FIELDS;
            unsigned match = 0;
            for (int j = 0; j < 32; j++)
                if (in[w0 + j] % 4 == in[w0 + l] % 4) match |= 1u << j;
            const unsigned want[SELFTEST_VOTE_FIELDS] = {
                ballot, (unsigned)any, (unsigned)(l < 16 ? all_lo : all_hi), (unsigned)all3, (unsigned)__builtin_popcount(b3),
                (unsigned)__builtin_ffs((int)b3), b3 ? (unsigned)__builtin_clz(b3) : 32u,
                l < 16 ? lo : hi, 0xffffffffu, count, match, rmax, (unsigned)rmin, ror, rxor,
                (unsigned)radd + rand_, band, bor};
            for (int f = 0; f < SELFTEST_VOTE_FIELDS; f++)
                ck_assert_msg(o[f] == want[f], "field %d, thread %d: got 0x%08x, want 0x%08x", f, w0 + l, o[f],
                              want[f]);
        }
    }
    ck_assert(any_true && any_false); // both outcomes of __any_sync were exercised
    ck_assert(all_hi_true && all_hi_false); // and of the half-warp __all_sync
    ck_assert(and_seen[0] && and_seen[1] && or_seen[0] && or_seen[1]); // and of _and / _or
    etx_dev_free(din);
    etx_dev_free(dout);
    free(in);
    free(out);
}
END_TEST

// ----------------------------------------------------------------------------
// partial warp, 3D block, 2D grid

START_TEST(test_partial_warp) {
    const int n_blocks = 3, n = n_blocks * 100;
    int* in = random_ints(n, -50, 50, 13);
    int* din = dev_put(in, (size_t)n * sizeof(int));
    int* disum = dev_alloc(n_blocks * sizeof(int));
    float* dfsum = dev_alloc(n_blocks * sizeof(float));
    unsigned* dlanes = dev_alloc((size_t)n * 2 * sizeof(unsigned));
    selftest_partial_warp(din, n_blocks, disum, dfsum, dlanes);
    int isum[3];
    float fsum[3];
    unsigned* lanes = host_alloc((size_t)n * 2 * sizeof(unsigned));
    etx_dev_download(isum, disum, sizeof isum);
    etx_dev_download(fsum, dfsum, sizeof fsum);
    etx_dev_download(lanes, dlanes, (size_t)n * 2 * sizeof(unsigned));
    for (int b = 0; b < n_blocks; b++) {
        int want = 0;
        for (int t = 0; t < 100; t++) want += in[b * 100 + t];
        ck_assert_msg(isum[b] == want, "block %d: __reduce_add_sync sum %d, want %d", b, isum[b], want);
        ck_assert_msg(fsum[b] == (float)want, "block %d: butterfly sum %g, want %d", b, fsum[b], want);
        for (int t = 0; t < 100; t++) {
            const unsigned m = t < 96 ? 0xffffffffu : 0xfu;
            ck_assert_msg(lanes[2 * (b * 100 + t)] == m, "thread %d: ballot of existing lanes 0x%08x, want 0x%08x",
                          t, lanes[2 * (b * 100 + t)], m);
            ck_assert_msg(lanes[2 * (b * 100 + t) + 1] == m, "thread %d: __activemask 0x%08x, want 0x%08x", t,
                          lanes[2 * (b * 100 + t) + 1], m);
        }
    }
    etx_dev_free(din);
    etx_dev_free(disum);
    etx_dev_free(dfsum);
    etx_dev_free(dlanes);
    free(in);
    free(lanes);
}
END_TEST

START_TEST(test_block3d) {
    const int n_blocks = 2, nt = 8 * 4 * 3;
    int* dout = dev_alloc((size_t)n_blocks * nt * 4 * sizeof(int));
    selftest_block3d(n_blocks, dout);
    int* out = host_alloc((size_t)n_blocks * nt * 4 * sizeof(int));
    etx_dev_download(out, dout, (size_t)n_blocks * nt * 4 * sizeof(int));
    for (int b = 0; b < n_blocks; b++)
        for (int z = 0; z < 3; z++)
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 8; x++) {
                    const int lin = x + 8 * (y + 4 * z), w0 = lin & ~31;
                    const int* o = out + ((size_t)b * nt + lin) * 4;
                    unsigned ballot = 0; // threadIdx.y == 0 over linear ids w0..w0+31
                    for (int l = 0; l < 32; l++)
                        if (((w0 + l) / 8) % 4 == 0) ballot |= 1u << l;
                    ck_assert_int_eq(o[0], lin);
                    ck_assert_msg(o[1] == w0 + ((lin + 1) & 31), "thread (%d,%d,%d): lane+1 holds %d, want %d", x,
                                  y, z, o[1], w0 + ((lin + 1) & 31));
                    ck_assert_msg((unsigned)o[2] == ballot, "thread (%d,%d,%d): ballot 0x%08x, want 0x%08x", x, y,
                                  z, (unsigned)o[2], ballot);
                    ck_assert_int_eq(o[3], b);
                }
    etx_dev_free(dout);
    free(out);
}
END_TEST

START_TEST(test_grid2d) {
    int* dout = dev_alloc(80 * 24 * sizeof(int));
    int* dmeta = dev_alloc(4 * sizeof(int));
    etx_dev_memset(dout, 0xff, 80 * 24 * sizeof(int));
    selftest_grid2d(dout, dmeta);
    int* out = host_alloc(80 * 24 * sizeof(int));
    int meta[4];
    etx_dev_download(out, dout, 80 * 24 * sizeof(int));
    etx_dev_download(meta, dmeta, sizeof meta);
    for (int y = 0; y < 24; y++)
        for (int x = 0; x < 80; x++)
            ck_assert_msg(out[y * 80 + x] == 1000 * y + x, "(%d,%d): %d", x, y, out[y * 80 + x]);
    ck_assert_int_eq(meta[0], 5);
    ck_assert_int_eq(meta[1], 3);
    ck_assert_int_eq(meta[2], 16);
    ck_assert_int_eq(meta[3], 8);
    etx_dev_free(dout);
    etx_dev_free(dmeta);
    free(out);
}
END_TEST

// ----------------------------------------------------------------------------
// atomics

START_TEST(test_atomics) {
    const int n_blocks = 50, n = n_blocks * 128;
    int* in = random_ints(n, -1000, 1000, 17);
    SelftestAtomics a0 = {0};
    a0.imax = a0.cas_max = -2000000000;
    a0.imin = 2000000000;
    a0.umax = 0;
    a0.umin = 0xffffffffu;
    a0.fmax_bits = f32_bits(-INFINITY);
    a0.cas_probe = 5;
    a0.ull_probe = 0xfedcba9876543210ull;
    int* din = dev_put(in, (size_t)n * sizeof(int));
    SelftestAtomics* dacc = dev_put(&a0, sizeof a0);
    int* dslots = dev_alloc((size_t)n * sizeof(int));
    int* dexch = dev_alloc((size_t)n * sizeof(int));
    selftest_atomics(din, n_blocks, dacc, dslots, dexch);
    SelftestAtomics a;
    int* slots = host_alloc((size_t)n * sizeof(int));
    int* exch = host_alloc((size_t)n * sizeof(int));
    etx_dev_download(&a, dacc, sizeof a);
    etx_dev_download(slots, dslots, (size_t)n * sizeof(int));
    etx_dev_download(exch, dexch, (size_t)n * sizeof(int));

    int isum = 0, imax = -2000000000, imin = 2000000000;
    unsigned usum = 0;
    unsigned long long ullsum = 0;
    for (int g = 0; g < n; g++) {
        isum += in[g];
        usum += (unsigned)in[g] & 0xffu;
        imax = in[g] > imax ? in[g] : imax;
        imin = in[g] < imin ? in[g] : imin;
        ullsum += (unsigned long long)(in[g] + 1000) << 20;
    }
    ck_assert_int_eq(a.isum, isum);
    ck_assert_uint_eq(a.usum, usum);
    ck_assert_int_eq(a.imax, imax);
    ck_assert_int_eq(a.imin, imin);
    ck_assert_uint_eq(a.umax, (unsigned)(imax + 1000));
    ck_assert_uint_eq(a.umin, (unsigned)(imin + 1000));
    ck_assert_int_eq(a.cas_max, imax);
    ck_assert_msg(bits_f32(a.fmax_bits) == (float)imax * 0.5f, "CAS float max %g, want %g", bits_f32(a.fmax_bits),
                  (float)imax * 0.5f);
    ck_assert_int_eq(a.counter, n);
    ck_assert(a.ullsum == ullsum);
    ck_assert_int_eq(a.cas_ret[0], 5); // compare 6 != 5: returns 5, no write
    ck_assert_int_eq(a.cas_ret[1], 5); // compare 5: returns 5, writes 8
    ck_assert_int_eq(a.cas_probe, 8);
    ck_assert(a.ull_ret == 0xfedcba9876543210ull && a.ull_probe == 0x123456789abcdefull);
    ck_assert_msg(a.fsum == (float)isum, "float atomicAdd sum %g, want %d", a.fsum, isum); // |sum| < 2^24: exact
    // atomicAdd's return values are 0..n-1, each once: every slot holds a distinct thread
    // atomicExch's: the initial 0 and every g + 1 but the last written, each once
    char* seen = host_alloc((size_t)n + 1);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(slots[i] >= 1 && slots[i] <= n && !seen[slots[i]], "slot %d holds %d", i, slots[i]);
        seen[slots[i]] = 1;
    }
    memset(seen, 0, (size_t)n + 1);
    ck_assert(a.exch >= 1 && a.exch <= n);
    seen[a.exch] = 1;
    for (int g = 0; g < n; g++) {
        ck_assert_msg(exch[g] >= 0 && exch[g] <= n && !seen[exch[g]], "atomicExch returned %d to thread %d twice",
                      exch[g], g);
        seen[exch[g]] = 1;
    }
    free(seen);
    etx_dev_free(din);
    etx_dev_free(dacc);
    etx_dev_free(dslots);
    etx_dev_free(dexch);
    free(in);
    free(slots);
    free(exch);
}
END_TEST

// ----------------------------------------------------------------------------
// bf16

// float -> bf16 bits, round to nearest even; NaN -> 0x7fff (CUDA's canonical NaN)
static uint16_t ref_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    const uint32_t lower = u & 0xffffu, upper = u >> 16;
    if (lower > 0x8000u || (lower == 0x8000u && (upper & 1u))) return (uint16_t)(upper + 1u);
    return (uint16_t)upper;
}

START_TEST(test_bf16) {
    enum { N_FIXED = 26, N = 1026 };
    const float fixed[N_FIXED] = {
        1.0f, -1.0f, 0.0f, -0.0f,
        bits_f32(0x3f808000u), // 1 + 2^-8: a tie, even neighbour below -> 0x3f80
        bits_f32(0x3f818000u), // a tie, odd neighbour below -> up to 0x3f82
        bits_f32(0xbf818000u), // the same, negative
        bits_f32(0x3f808001u), // just above a tie -> up
        bits_f32(0x3f807fffu), // just below a tie -> down
        3.14159265f, -2.71828183f, 65504.0f, 1e30f, -1e-30f,
        3.4028235e38f,           // FLT_MAX -> rounds up to +inf
        bits_f32(0x7f7f7fffu),   // the largest that stays finite
        -3.4028235e38f,          // -> -inf
        1.17549435e-38f,         // FLT_MIN
        bits_f32(0x00000001u),   // smallest subnormal -> +0
        bits_f32(0x00018000u),   // subnormal tie, odd below -> up
        bits_f32(0x80008000u),   // negative subnormal tie, even below -> -0
        INFINITY, -INFINITY, NAN,
        bits_f32(0xffc00001u),   // negative quiet NaN with payload
        bits_f32(0x7f800001u),   // signalling NaN
    };
    float* in = host_alloc(N * sizeof(float));
    memcpy(in, fixed, sizeof fixed);
    uint64_t rng = rng_seed(19);
    for (int i = N_FIXED; i < N; i++) { // random bit patterns over every exponent
        uint32_t u = rng_next_u32(&rng);
        if ((u & 0x7f800000u) == 0x7f800000u) u ^= 0x40000000u; // keep them finite
        if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u;         // a quarter exact ties
        in[i] = bits_f32(u);
    }
    float* din = dev_put(in, N * sizeof(float));
    unsigned short *drn = dev_alloc(N * 2), *ddef = dev_alloc(N * 2), *dpb = dev_alloc(N * 2);
    float *dback = dev_alloc(N * 4), *dpback = dev_alloc(N * 4);
    selftest_bf16(din, N, drn, ddef, dback, dpb, dpback);
    unsigned short* rn = host_alloc(N * 2);
    unsigned short* def = host_alloc(N * 2);
    unsigned short* pb = host_alloc(N * 2);
    float* back = host_alloc(N * 4);
    float* pback = host_alloc(N * 4);
    etx_dev_download(rn, drn, N * 2);
    etx_dev_download(def, ddef, N * 2);
    etx_dev_download(pb, dpb, N * 2);
    etx_dev_download(back, dback, N * 4);
    etx_dev_download(pback, dpback, N * 4);
    for (int i = 0; i < N; i++) {
        const uint16_t want = ref_bf16(in[i]);
        if (isnan(in[i])) {
            // a NaN stays a NaN (CUDA's host code and this reference give 0x7fff; only NaN-ness
            // is required, the payload is the hardware's business)
            ck_assert_msg((rn[i] & 0x7f80u) == 0x7f80u && (rn[i] & 0x7fu), "NaN %d -> 0x%04x", i, rn[i]);
            ck_assert(isnan(back[i]) && isnan(pback[i]));
            continue;
        }
        ck_assert_msg(rn[i] == want, "in[%d] = %a (0x%08x): __float2bfloat16_rn 0x%04x, want 0x%04x", i, in[i],
                      f32_bits(in[i]), rn[i], want);
        ck_assert_msg(def[i] == want, "in[%d] = %a: __float2bfloat16 0x%04x, want 0x%04x", i, in[i], def[i], want);
        ck_assert_msg(pb[i] == want, "in[%d] = %a: __floats2bfloat162_rn 0x%04x, want 0x%04x", i, in[i], pb[i], want);
        ck_assert_msg(f32_bits(back[i]) == (uint32_t)want << 16, "in[%d]: round trip %a", i, back[i]);
        ck_assert_msg(f32_bits(pback[i]) == (uint32_t)want << 16, "in[%d]: pair round trip %a", i, pback[i]);
    }
    // spot checks of the reference itself
    ck_assert_uint_eq(ref_bf16(fixed[4]), 0x3f80u);
    ck_assert_uint_eq(ref_bf16(fixed[5]), 0x3f82u);
    ck_assert_uint_eq(ref_bf16(3.4028235e38f), 0x7f80u);
    etx_dev_free(din);
    etx_dev_free(drn);
    etx_dev_free(ddef);
    etx_dev_free(dpb);
    etx_dev_free(dback);
    etx_dev_free(dpback);
    free(in);
    free(rn);
    free(def);
    free(pb);
    free(back);
    free(pback);
}
END_TEST

// ----------------------------------------------------------------------------
// math

// distance in units in the last place between two finite floats of the same sign
static long ulp_diff(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = INT32_MIN - ia; // order negative floats below positive ones
    if (ib < 0) ib = INT32_MIN - ib;
    return labs((long)ia - (long)ib);
}

START_TEST(test_math) {
    enum { N = 500 };
    float x[N], p[N], y[N];
    uint64_t rng = rng_seed(23);
    for (int i = 0; i < N; i++) {
        x[i] = (float)(rng_uniform(&rng) * 20.0 - 10.0);     // [-10, 10)
        p[i] = (float)exp(rng_uniform(&rng) * 13.8 - 6.9);   // [1e-3, 1e3)
        y[i] = (float)(rng_uniform(&rng) * 20.0 - 10.0);
    }
    float *dx = dev_put(x, sizeof x), *dp = dev_put(p, sizeof p), *dy = dev_put(y, sizeof y);
    float* dout = dev_alloc((size_t)N * SELFTEST_MATH_FIELDS * sizeof(float));
    selftest_math(dx, dp, dy, N, dout);
    float* out = host_alloc((size_t)N * SELFTEST_MATH_FIELDS * sizeof(float));
    etx_dev_download(out, dout, (size_t)N * SELFTEST_MATH_FIELDS * sizeof(float));
    for (int i = 0; i < N; i++) {
        const float* o = out + (size_t)i * SELFTEST_MATH_FIELDS;
        const double a = x[i], b = p[i], c = y[i];
        // Maximum errors from the CUDA C Programming Guide's tables (the GPU is the looser
        // side; the emulator computes with the C library, within 1 ulp of these references,
        // which are double results rounded to float): expf, exp2f 2 ulp; logf, log2f 1 ulp;
        // sqrtf, __frcp_rn correctly rounded (0 ulp); rsqrtf 2 ulp; __expf 2 + floor(|1.173 x|)
        // ulp; __logf 3 ulp outside [0.5, 2], absolute 2^-21.41 inside; __fdividef 2 ulp.
        // The reference's own rounding adds at most 1 ulp: each bound below is the table's + 1.
        struct {
            const char* name;
            float got;
            double want;
            long ulps;
        } u[] = {
            {"expf", o[0], exp(a), 3},
            {"exp2f", o[1], exp2(a), 3},
            {"__expf", o[2], exp(a), 3 + (long)floor(fabs(1.173 * a))},
            {"logf", o[3], log(b), 2},
            {"log2f", o[4], log2(b), 2},
            {"sqrtf", o[6], b, 1}, // sqrtf(b*b): b*b is rounded, so within 1 ulp of b
            {"rsqrtf", o[7], 1.0 / sqrt(b), 3},
            {"__fdividef", o[8], a / b, 3},
            {"__frcp_rn", o[9], 1.0 / b, 0},
        };
        for (size_t k = 0; k < sizeof u / sizeof u[0]; k++) {
            const long tol = u[k].ulps;
            ck_assert_msg(ulp_diff(u[k].got, (float)u[k].want) <= tol, "%s at i=%d (x %a p %a): %a, want %a (%ld ulp)",
                          u[k].name, i, x[i], p[i], u[k].got, (float)u[k].want, ulp_diff(u[k].got, (float)u[k].want));
        }
        if (b >= 0.5 && b <= 2.0)
            ck_assert_msg(fabs(o[5] - log(b)) <= pow(2.0, -21.41), "__logf(%a) = %a", p[i], o[5]);
        else
            ck_assert_msg(ulp_diff(o[5], (float)log(b)) <= 4, "__logf(%a) = %a", p[i], o[5]);
        // exact ones
        ck_assert(o[10] == fmaxf(x[i], y[i]));
        ck_assert(o[11] == fminf(x[i], y[i]));
        ck_assert(o[12] == fabsf(x[i]));
        ck_assert(f32_bits(o[13]) == (f32_bits(x[i]) ^ 0x80000000u));
        ck_assert(o[14] == (float)(floor(a) < floor(c) ? floor(a) : floor(c)));
        const unsigned ua = (unsigned)(x[i] + 20.0f), uc = (unsigned)(y[i] + 20.0f);
        ck_assert(o[15] == (float)(ua > uc ? ua : uc));
        ck_assert(o[16] == fmaxf(x[i], y[i]) - fminf(x[i], y[i]));
    }
    etx_dev_free(dx);
    etx_dev_free(dp);
    etx_dev_free(dy);
    etx_dev_free(dout);
    free(out);
}
END_TEST

// ----------------------------------------------------------------------------
// launch errors, barrier cost

START_TEST(test_bad_launch) {
    int second = -1;
    const int first = selftest_bad_launch(&second);
    // 1 (cudaErrorInvalidValue): what the H200 with CUDA 13.0 answered (2026-12-04)
    ck_assert_msg(first == 1, "2048 threads per block: cudaGetLastError %d, want 1 (invalid argument)", first);
    ck_assert_int_eq(second, 0);
}
END_TEST

// More than 48 KB of dynamic shared memory needs the kernel's attribute raised first; on a
// GPU the launch without it fails (the emulator answers 1, invalid argument, and this test
// asks the GPU which error it gives), and succeeds with it.
START_TEST(test_big_dynamic_smem) {
    unsigned* d = dev_alloc(32 * sizeof(unsigned));
    int second = -1;
    const int first = selftest_big_dynamic_smem(d, &second);
    ck_assert_msg(first != 0, "64 KB of dynamic shared memory without the attribute: the launch succeeded");
    ck_assert_msg(first == 1, "64 KB of dynamic shared memory without the attribute: error %d, want 1", first);
    ck_assert_int_eq(second, 0);
    etx_dev_free(d);
}
END_TEST

// A copy or memset that leaves its allocation fails with cudaErrorInvalidValue (1) on the
// GPU and in the emulator (an H200 run found a test downloading more rows than it had
// allocated, which the emulator's plain memmove let pass).
START_TEST(test_copy_bounds) {
    int e[4];
    selftest_copy_bounds(e);
    ck_assert_msg(e[0] == 1 && e[1] == 1 && e[2] == 1, "past the allocation: D2H %d, H2D %d, memset %d, want 1", e[0],
                  e[1], e[2]);
    ck_assert_int_eq(e[3], 0);
}
END_TEST

// mma.sync m16n8k16 with small integers (every product and sum exact in f32, so every
// order of addition gives the same bits): D = A B + C in PTX's fragment layout, on the GPU
// and in the emulator. A wrong layout would move whole products.
START_TEST(test_mma_layout) {
    uint16_t a[16 * 16], bt[8 * 16];
    float c[16 * 8], d[16 * 8];
    uint64_t rng = 0x1234;
    float af[16][16], bf[16][8];
    for (int i = 0; i < 16 * 16; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        const float v = (float)((int)(rng >> 60) - 8); // -8 .. 7, exact in bf16
        uint32_t u;
        memcpy(&u, &v, 4);
        a[i] = (uint16_t)(u >> 16);
        af[i / 16][i % 16] = v;
    }
    for (int i = 0; i < 8 * 16; i++) { // bt[n][k] = B[k][n]
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        const float v = (float)((int)(rng >> 60) - 8);
        uint32_t u;
        memcpy(&u, &v, 4);
        bt[i] = (uint16_t)(u >> 16);
        bf[i % 16][i / 16] = v;
    }
    for (int i = 0; i < 16 * 8; i++) c[i] = (float)(i % 13) - 6.0f;
    selftest_mma(a, bt, c, d);
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
            float want = c[m * 8 + n];
            for (int k = 0; k < 16; k++) want += af[m][k] * bf[k][n];
            ck_assert_msg(d[m * 8 + n] == want, "D[%d][%d] = %g, want %g", m, n, d[m * 8 + n], want);
        }
}
END_TEST

// The driver does not survive fork(): once this process has used the device, a forked
// child's allocation fails (cudaErrorInitializationError), on the GPU and in the emulator.
// The reason the suites ask for the device in a child (check_device.h).
START_TEST(test_fork_after_init) {
    float* d = etx_dev_malloc(64);
    ck_assert_ptr_nonnull(d); // this process owns the device now
    fflush(NULL);
    const pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        float* c = etx_dev_malloc(64);
        _exit(c == NULL ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "an allocation in a child forked after the device was initialised succeeded (status %d)", status);
    etx_dev_free(d);
}
END_TEST

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

START_TEST(test_barrier_rounds) {
    const int blocks[] = {32, 256, 1024}, rounds = 500;
    int* dout = dev_alloc(sizeof(int));
    for (int k = 0; k < 3; k++) {
        selftest_barrier_rounds(blocks[k], 1, dout); // first use: fiber stacks are mapped
        etx_dev_sync();
        const double t0 = cpu_seconds();
        const float ms = selftest_barrier_rounds(blocks[k], rounds, dout);
        etx_dev_sync();
        const double t1 = cpu_seconds();
        int sum = 0;
        etx_dev_download(&sum, dout, sizeof sum);
        ck_assert_int_eq(sum, blocks[k] * rounds);
        ck_assert_msg(isfinite(ms) && ms >= 0.0f, "event time %g ms", ms);
        fprintf(stderr,
                "selftest [%s]: __syncthreads round over %4d threads: %.2f us (CPU time), %.3f us (events, wall)\n",
                etx_dev_name(), blocks[k], (t1 - t0) * 1e6 / rounds, ms * 1e3 / rounds);
    }
    etx_dev_free(dout);
}
END_TEST

// ----------------------------------------------------------------------------
// scheduling (issue 14): block and thread order, resident blocks

static int is_permutation(const int* v, int n) {
    char* seen = host_alloc((size_t)n);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        if (v[i] < 0 || v[i] >= n || seen[v[i]]) ok = 0;
        else seen[v[i]] = 1;
    }
    free(seen);
    return ok;
}

START_TEST(test_block_and_thread_order) {
    const int n_blocks = 64, block = 96;
    int* d = dev_alloc((size_t)(n_blocks + 1 + n_blocks * block + n_blocks) * sizeof(int));
    etx_dev_memset(d, 0, (size_t)(n_blocks + 1 + n_blocks * block + n_blocks) * sizeof(int));
    int *dorder = d, *dticket = d + n_blocks, *dtorder = d + n_blocks + 1, *dtickets = dtorder + n_blocks * block;
    selftest_order(n_blocks, block, dorder, dticket, dtorder, dtickets);
    int* order = host_alloc(n_blocks * sizeof(int));
    int* torder = host_alloc((size_t)n_blocks * block * sizeof(int));
    etx_dev_download(order, dorder, n_blocks * sizeof(int));
    etx_dev_download(torder, dtorder, (size_t)n_blocks * block * sizeof(int));
    ck_assert_msg(is_permutation(order, n_blocks), "the blocks' tickets are not a permutation");
    int in_order = 1, threads_in_order = 1;
    for (int b = 0; b < n_blocks; b++) {
        ck_assert_msg(is_permutation(torder + b * block, block), "block %d: the threads' tickets", b);
        if (order[b] != b) in_order = 0;
        for (int t = 0; t < block; t++)
            if (torder[b * block + t] != t) threads_in_order = 0;
    }
#ifndef ETX_NATIVE_CUDA
    // the emulator runs blocks, and the threads of a block, in a seeded random order
    ck_assert_msg(!in_order, "the blocks ran in grid order");
    ck_assert_msg(!threads_in_order, "the threads of every block ran in thread order");
#else
    (void)in_order;
    (void)threads_in_order;
#endif
    etx_dev_free(d);
    free(order);
    free(torder);
}
END_TEST

START_TEST(test_block_chain) {
    const int n_blocks = 40;
    int* d = dev_alloc(n_blocks * sizeof(int));
    int out[40];
    selftest_block_chain(1, n_blocks, d); // the correct twin
    etx_dev_download(out, d, sizeof out);
    for (int b = 0; b < n_blocks; b++) ck_assert_int_eq(out[b], b + 1);
#ifndef ETX_NATIVE_CUDA
    // the bug: block b reads block b-1's output, as if blocks ran in order; the emulator's
    // block order exposes it (a deterministic function of SIMT_SEED)
    etx_dev_memset(d, 0, n_blocks * sizeof(int));
    selftest_block_chain(0, n_blocks, d);
    etx_dev_download(out, d, sizeof out);
    int wrong = 0;
    for (int b = 0; b < n_blocks; b++) wrong += out[b] != b + 1;
    ck_assert_msg(wrong > 0, "a chain of blocks that assumes grid order came out right");
#endif
    etx_dev_free(d);
}
END_TEST

START_TEST(test_resident_blocks) {
    const int n_blocks = 24;
    int* d = dev_alloc((size_t)(n_blocks + 2) * sizeof(int));
    etx_dev_memset(d, 0, (size_t)(n_blocks + 2) * sizeof(int));
    selftest_resident(n_blocks, 20, d, d + 1, d + 2);
    int h[26];
    etx_dev_download(h, d, sizeof h);
    ck_assert_int_eq(h[0], 0); // every block left
    for (int b = 0; b < n_blocks; b++)
        ck_assert_msg(h[2 + b] == 0, "block %d saw another block's __shared__ data in %d rounds", b, h[2 + b]);
    // several blocks at once (the emulator: SIMT_RESIDENT, default 3; a GPU: many)
    ck_assert_msg(h[1] >= 2, "at most %d block(s) ran at once", h[1]);
    etx_dev_free(d);
}
END_TEST

// ----------------------------------------------------------------------------
// emulator only: bugs it must report

#ifndef ETX_NATIVE_CUDA
// Runs fn(arg) in a child process whose stderr is captured; returns that text and sets
// *sig to the signal that ended the child (0: it exited).
static const char* run_captured(void (*fn)(int), int arg, int* sig) {
    static char buf[16384];
    int p[2];
    ck_assert(pipe(p) == 0);
    fflush(stderr);
    const pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    size_t len = 0;
    char scratch[4096];
    for (;;) { // read it all (the child must not block on a full pipe)
        char* dst = len < sizeof buf - 1 ? buf + len : scratch;
        const size_t cap = len < sizeof buf - 1 ? sizeof buf - 1 - len : sizeof scratch;
        const ssize_t r = read(p[0], dst, cap);
        if (r <= 0) break;
        if (dst != scratch) len += (size_t)r;
    }
    buf[len] = 0;
    close(p[0]);
    int status = 0;
    ck_assert(waitpid(pid, &status, 0) == pid);
    *sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return buf;
}

static void expect_abort(void (*fn)(int), int arg, const char* const* needles, int n_needles) {
    int sig = 0;
    const char* err = run_captured(fn, arg, &sig);
    ck_assert_msg(sig == SIGABRT, "the child ended with signal %d, want SIGABRT; its stderr:\n%s", sig, err);
    for (int i = 0; i < n_needles; i++)
        ck_assert_msg(strstr(err, needles[i]) != NULL, "the message lacks \"%s\":\n%s", needles[i], err);
}

static void child_divergent(int mode) {
    int* d = dev_alloc(64 * sizeof(int));
    selftest_divergent_syncthreads(mode, d);
    etx_dev_sync();
}

static void child_deadlock(int unused) {
    (void)unused;
    int* d = dev_alloc(32 * sizeof(int));
    selftest_deadlock(d);
    etx_dev_sync();
}

static void child_mismatch(int unused) {
    (void)unused;
    int* d = dev_alloc(32 * sizeof(int));
    selftest_mismatched_warp_ops(d);
    etx_dev_sync();
}

static void child_strict_shfl(int unused) {
    (void)unused;
    setenv("SIMT_STRICT", "1", 1);
    int* d = dev_alloc(40 * sizeof(int));
    selftest_shfl_outside_mask(d);
    etx_dev_sync();
}

START_TEST(test_divergent_syncthreads_aborts) {
    // threads resume in a random order: which thread trips the check first, and so which
    // of the two messages comes, varies with SIMT_SEED
    const char* needles[] = {"divergent __syncthreads", "in block (0,0,0)", "SIMT_SEED=", "threads exited: "};
    expect_abort(child_divergent, 0, needles, 4);
    expect_abort(child_divergent, 1, needles, 4);
}
END_TEST

static void child_grid_dependency(int mode) {
    int* d = dev_alloc(64 * sizeof(int));
    int* ro = dev_alloc(64 * sizeof(int));
    etx_dev_mark_readonly(ro, 64 * sizeof(int));
    selftest_grid_dependency(mode, d, ro);
    etx_dev_sync();
}

// The rule that makes programmatic dependent launch safe on sm_90 (kernels/cuda_common.cuh):
// no device memory touched before ETX_PDL_ENTRY, and no thread without it. A serial
// emulator can never show the race itself, so it checks the rule.
START_TEST(test_grid_dependency_rule_aborts) {
    const char* reads[] = {"grid dependencies: thread 0 of kernel", "grid_dependency_kernel",
                           "reads device memory", "before ETX_PDL_ENTRY()"};
    expect_abort(child_grid_dependency, 0, reads, 4);
    const char* writes[] = {"grid dependencies: thread 5 of kernel", "writes device memory"};
    expect_abort(child_grid_dependency, 1, writes, 2);
    const char* missing[] = {"grid dependencies: thread ", "returned without ETX_PDL_ENTRY()"};
    expect_abort(child_grid_dependency, 2, missing, 2);
    const char* ro_write[] = {"grid dependencies: thread 7 of kernel", "writes device memory"};
    expect_abort(child_grid_dependency, 4, ro_write, 2);
    // loads from read-only memory (weights) may come first: the launch runs
    int sig = 0;
    const char* err = run_captured(child_grid_dependency, 3, &sig);
    ck_assert_msg(sig == 0, "a load of read-only memory before the entry: signal %d; its stderr:\n%s", sig, err);
}
END_TEST

START_TEST(test_deadlock_aborts) {
    const char* needles[] = {"deadlock", "in block (0,0,0)", "threads waiting at __syncthreads: 0\n",
                             "lanes 0xfffffffe wait at __syncwarp(mask 0xffffffff), for lanes 0x00000001"};
    expect_abort(child_deadlock, 0, needles, 4);
}
END_TEST

START_TEST(test_mismatched_warp_ops_abort) {
    const char* needles[] = {"lanes disagree on the warp intrinsic", "__shfl_xor_sync(mask 0xffffffff)",
                             "__ballot_sync"};
    expect_abort(child_mismatch, 0, needles, 3);
}
END_TEST

START_TEST(test_shfl_outside_mask_strict_aborts) {
    const char* needles[] = {"thread 32 (warp 1 lane 0)", "reads lane 16, which is outside the mask"};
    expect_abort(child_strict_shfl, 0, needles, 2);
}
END_TEST

// Sanitized C code on a fiber stack: locals, a deep call chain and a longjmp, whose
// __asan_handle_no_return checks that ASan knows the current stack. Without the
// emulator's fiber annotations ASan warns "ASan is ignoring requested
// __asan_handle_no_return ... False positive error reports may follow".
static jmp_buf fiber_jmp;
static volatile int fiber_sink;

static void fiber_deep(int d) {
    volatile char buf[96];
    memset((char*)buf, d, sizeof buf);
    fiber_sink += buf[d];
    if (d == 0) longjmp(fiber_jmp, 1);
    if (d > 0) fiber_deep(d - 1);
}

static void on_fiber(int tid) {
    char local[128];
    memset(local, tid & 0x7f, sizeof local);
    fiber_sink += local[tid % 128];
    if (setjmp(fiber_jmp) == 0) fiber_deep(6);
}

static void child_sanitized_on_fibers(int block) {
    selftest_call_on_fibers(on_fiber, block);
    etx_dev_sync();
    fputs("fibers done\n", stderr);
}

START_TEST(test_sanitized_code_on_fibers) {
    int sig = 0;
    const char* err = run_captured(child_sanitized_on_fibers, 256, &sig);
    ck_assert_msg(sig == 0 && strstr(err, "fibers done") != NULL, "signal %d; stderr:\n%s", sig, err);
    ck_assert_msg(strstr(err, "False positive") == NULL && strstr(err, "ERROR: AddressSanitizer") == NULL,
                  "ASan complained about the fiber stacks:\n%s", err);
}
END_TEST

// -- shared-memory races (issue 14): the wrong kernel aborts, its twin passes

static void child_softmax_war(int mode) {
    setenv("SIMT_RACECHECK", "1", 1); // the default; the suite may run under another
    float x[2 * 32];
    for (int i = 0; i < 64; i++) x[i] = (float)((i * 7) % 13) - 6.0f;
    float* dx = dev_put(x, sizeof x);
    float* dout = dev_alloc(4 * sizeof(float));
    selftest_softmax_war(mode, dx, 2, dout, dout + 2);
    etx_dev_sync();
}

static void child_cross_warp(int mode) {
    setenv("SIMT_RACECHECK", "1", 1); // the default; the suite may run under another
    int* d = dev_alloc(64 * sizeof(int));
    selftest_cross_warp(mode, d);
    etx_dev_sync();
}

static void child_dynamic_race(int mode) {
    setenv("SIMT_RACECHECK", "1", 1); // the default; the suite may run under another
    int* d = dev_alloc(32 * sizeof(int));
    selftest_dynamic_race(mode, d);
    etx_dev_sync();
}

static void child_escaped_shared(int unused) {
    (void)unused;
    setenv("SIMT_RACECHECK", "1", 1); // the check rides on the race detector's hooks
    int* d = dev_alloc(64 * sizeof(int));
    selftest_escaped_shared(d);
    etx_dev_sync();
}

START_TEST(test_escaped_shared_aborts) {
    const char* needles[] = {"outside the emulator's shared-memory section", "function template", "SIMT_SEED="};
    expect_abort(child_escaped_shared, 0, needles, 3);
}
END_TEST

START_TEST(test_race_softmax_war_aborts) {
    // the pattern of kernels/attention.cu softmax_update without the __syncwarp: lane 0
    // overwrites the running max that the other lanes read, ordered only by shuffles
    const char* needles[] = {"shared-memory race (write after read)", "writes static __shared__ memory",
                             "with no __syncthreads or __syncwarp between them", "SIMT_SEED="};
    expect_abort(child_softmax_war, 0, needles, 4);
}
END_TEST

START_TEST(test_race_softmax_syncwarp_passes) {
    float x[2 * 32];
    for (int i = 0; i < 64; i++) x[i] = (float)((i * 7) % 13) - 6.0f;
    float* dx = dev_put(x, sizeof x);
    float* dout = dev_alloc(4 * sizeof(float));
    selftest_softmax_war(1, dx, 2, dout, dout + 2);
    float out[4];
    etx_dev_download(out, dout, sizeof out);
    for (int r = 0; r < 2; r++) {
        float m = 0.0f;
        for (int i = 0; i < 32; i++) m = fmaxf(m, x[32 * r + i]);
        ck_assert_msg(out[r] == m, "row %d: max %g, want %g", r, out[r], m);
        double sum = exp(0.0 - m); // the old sum 1, rescaled
        for (int i = 0; i < 32; i++) sum += exp((double)x[32 * r + i] - m);
        ck_assert_msg(fabs(out[2 + r] - sum) <= 1e-5 * sum, "row %d: sum %g, want %g", r, out[2 + r], sum);
    }
    etx_dev_free(dx);
    etx_dev_free(dout);
}
END_TEST

START_TEST(test_race_cross_warp) {
    const char* needles[] = {"shared-memory race", "static __shared__ memory",
                             "with no __syncthreads between them"};
    expect_abort(child_cross_warp, 0, needles, 3);
    int* d = dev_alloc(64 * sizeof(int));
    selftest_cross_warp(1, d);
    int out[64];
    etx_dev_download(out, d, sizeof out);
    for (int t = 0; t < 64; t++) ck_assert_int_eq(out[t], (t + 32) % 64);
    etx_dev_free(d);
}
END_TEST

START_TEST(test_race_dynamic_smem) {
    const char* needles[] = {"shared-memory race", "dynamic shared memory",
                             "with no __syncthreads or __syncwarp between them"};
    expect_abort(child_dynamic_race, 0, needles, 3);
    int* d = dev_alloc(32 * sizeof(int));
    selftest_dynamic_race(1, d);
    int out[32];
    etx_dev_download(out, d, sizeof out);
    for (int t = 0; t < 32; t++) ck_assert_int_eq(out[t], 10 * (t ^ 1));
    etx_dev_free(d);
}
END_TEST

// -- stream capture (issue 14)

START_TEST(test_capture_replay) {
    int* d = dev_alloc(2 * sizeof(int));
    etx_dev_memset(d, 0, 2 * sizeof(int));
    int r[6] = {-1, -1, -1, -1, -1, -1};
    selftest_capture_replay(d, d + 1, r);
    ck_assert_msg(r[3] == 0 && r[4] == 0 && r[5] == 0, "begin %d, end %d, instantiate %d", r[3], r[4], r[5]);
    ck_assert_msg(r[0] == 1, "x after the capture: %d, want 1 (a captured launch does not run)", r[0]);
    ck_assert_msg(r[1] == 3, "x after two graph launches: %d, want 3", r[1]);
    ck_assert_msg(r[2] == 3, "y (memset, then a copy of x, replayed): %d, want 3", r[2]);
    etx_dev_free(d);
}
END_TEST

// -- pinned staging: a source rewritten before its stream is synchronised aborts

static void child_pinned_rewrite(int unused) {
    (void)unused;
    unsigned char* buf = etx_dev_host_alloc(64);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 7, 64);
    unsigned char* d = dev_alloc(64);
    etx_dev_upload_on(d, buf + 16, 32, NULL);
    buf[20] ^= 1;                // the host reuses the buffer while the copy may be pending
    etx_dev_stream_sync(NULL);   // on a GPU the device may have read the new byte
}

START_TEST(test_pinned_rewrite_aborts) {
    const char* needles[] = {"was rewritten before cudaStreamSynchronize", "asynchronous copy",
                             "had not been synchronised"};
    expect_abort(child_pinned_rewrite, 0, needles, 3);
}
END_TEST

START_TEST(test_pinned_reuse_after_sync_passes) {
    unsigned char* buf = etx_dev_host_alloc(64);
    ck_assert_ptr_nonnull(buf);
    unsigned char* d = dev_alloc(64);
    unsigned char got[64];
    for (int round = 0; round < 3; round++) { // the staging pattern: fill, send, sync, reuse
        memset(buf, round + 1, 64);
        etx_dev_upload_on(d, buf, 64, NULL);
        etx_dev_stream_sync(NULL);
        etx_dev_download(got, d, 64);
        for (int i = 0; i < 64; i++) ck_assert_int_eq(got[i], round + 1);
    }
    memset(buf, 9, 64); // a pending copy settled by cudaFreeHost is fine when untouched
    etx_dev_upload_on(d, buf, 64, NULL);
    etx_dev_host_free(buf);
    etx_dev_free(d);
}
END_TEST

START_TEST(test_capture_forbidden_calls) {
    static const char* what[] = {"cudaMalloc", "cudaFree", "cudaMemcpy", "cudaMemset", "cudaDeviceSynchronize",
                                 "cudaStreamSynchronize", "a kernel's first launch", "nothing forbidden"};
    int* d = dev_alloc(sizeof(int));
    for (int w = 0; w < 8; w++) {
        int r[3] = {-1, -1, -1};
        selftest_capture_forbidden(w, d, r);
        if (w < 7) {
            // cudaErrorStreamCaptureUnsupported, then cudaErrorStreamCaptureInvalidated, no graph
            ck_assert_msg(r[0] == 900 && r[1] == 901 && r[2] == 1, "%s during capture: error %d, end %d, graph null %d",
                          what[w], r[0], r[1], r[2]);
        } else {
            ck_assert_msg(r[0] == 0 && r[1] == 0 && r[2] == 0, "%s: error %d, end %d, graph null %d", what[w], r[0],
                          r[1], r[2]);
        }
    }
    etx_dev_free(d);
}
END_TEST

// -- device math (issue 14): perturbed within CUDA's bounds, deterministically

START_TEST(test_math_perturbed) {
    const int n = 4096;
    float* x = host_alloc(n * sizeof(float));
    uint64_t rng = rng_seed(77);
    for (int i = 0; i < n; i++) x[i] = (float)(rng_uniform(&rng) * 20.0 - 10.0);
    float* dx = dev_put(x, n * sizeof(float));
    float* dout = dev_alloc((size_t)n * 4 * sizeof(float));
    float* a = host_alloc((size_t)n * 4 * sizeof(float));
    float* b = host_alloc((size_t)n * 4 * sizeof(float));
    selftest_math_raw(dx, n, dout);
    etx_dev_download(a, dout, (size_t)n * 4 * sizeof(float));
    selftest_math_raw(dx, n, dout);
    etx_dev_download(b, dout, (size_t)n * 4 * sizeof(float));
    ck_assert_msg(memcmp(a, b, (size_t)n * 4 * sizeof(float)) == 0, "device math is not deterministic");
    int differ[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        const float host[4] = {expf(x[i]), logf(fabsf(x[i]) + 0.5f), sinf(x[i]), expf(x[i])};
        for (int k = 0; k < 4; k++) differ[k] += a[4 * i + k] != host[k];
        ck_assert_msg(ulp_diff(a[4 * i], (float)exp((double)x[i])) <= 3, "expf(%a) = %a", x[i], a[4 * i]);
        ck_assert_msg(ulp_diff(a[4 * i + 1], (float)log((double)(fabsf(x[i]) + 0.5f))) <= 2, "logf");
        ck_assert_msg(ulp_diff(a[4 * i + 2], (float)sin((double)x[i])) <= 3, "sinf(%a) = %a", x[i], a[4 * i + 2]);
    }
#if SIMT_PERTURB_MATH
    // a GPU's results are not the C library's: the emulator's are not either
    for (int k = 0; k < 4; k++)
        ck_assert_msg(differ[k] > n / 8, "function %d: only %d of %d results differ from the host's libm", k,
                      differ[k], n);
#endif
    fprintf(stderr, "selftest: device math differs from the host's libm in %d, %d, %d, %d of %d (expf logf sinf __expf)\n",
            differ[0], differ[1], differ[2], differ[3], n);
    etx_dev_free(dx);
    etx_dev_free(dout);
    free(x);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_shfl_outside_mask_poison) {
    unsetenv("SIMT_STRICT");
    int* d = dev_alloc(40 * sizeof(int));
    selftest_shfl_outside_mask(d);
    int out[40];
    etx_dev_download(out, d, sizeof out);
    for (int t = 0; t < 40; t++) {
        const unsigned want = t < 32 ? (unsigned)t : SELFTEST_SHFL_POISON32;
        ck_assert_msg((unsigned)out[t] == want, "thread %d: 0x%08x, want 0x%08x", t, (unsigned)out[t], want);
    }
    etx_dev_free(d);
}
END_TEST

START_TEST(test_dynamic_smem_unwritten) {
    const int n = 300;
    unsigned* d = dev_alloc(n * sizeof(unsigned));
    selftest_dynamic_smem_unwritten(n, d);
    unsigned out[300];
    etx_dev_download(out, d, sizeof out);
    for (int i = 0; i < n; i++) ck_assert_uint_eq(out[i], 0xffffffffu);
    etx_dev_free(d);
}
END_TEST
#endif

// ----------------------------------------------------------------------------

static Suite* selftest_suite(void) {
    Suite* s = suite_create("selftest");
    TCase* tc = tcase_create("semantics");
    tcase_add_test(tc, test_block_sum_static);
    tcase_add_test(tc, test_block_sum_dynamic);
    tcase_add_test(tc, test_shuffles);
    tcase_add_test(tc, test_votes);
    tcase_add_test(tc, test_partial_warp);
    tcase_add_test(tc, test_block3d);
    tcase_add_test(tc, test_grid2d);
    tcase_add_test(tc, test_atomics);
    tcase_add_test(tc, test_bf16);
    tcase_add_test(tc, test_math);
    tcase_add_test(tc, test_bad_launch);
    tcase_add_test(tc, test_big_dynamic_smem);
    tcase_add_test(tc, test_copy_bounds);
    tcase_add_test(tc, test_mma_layout);
    tcase_add_test(tc, test_fork_after_init);
    tcase_add_test(tc, test_barrier_rounds);
    tcase_add_test(tc, test_block_and_thread_order);
    tcase_add_test(tc, test_block_chain);
    tcase_add_test(tc, test_resident_blocks);
    suite_add_tcase(s, tc);
#ifndef ETX_NATIVE_CUDA
    tc = tcase_create("emulator checks");
    tcase_add_test(tc, test_divergent_syncthreads_aborts);
    tcase_add_test(tc, test_deadlock_aborts);
    tcase_add_test(tc, test_grid_dependency_rule_aborts);
    tcase_add_test(tc, test_mismatched_warp_ops_abort);
    tcase_add_test(tc, test_shfl_outside_mask_strict_aborts);
    tcase_add_test(tc, test_shfl_outside_mask_poison);
    tcase_add_test(tc, test_sanitized_code_on_fibers);
    tcase_add_test(tc, test_dynamic_smem_unwritten);
    tcase_add_test(tc, test_race_softmax_war_aborts);
    tcase_add_test(tc, test_escaped_shared_aborts);
    tcase_add_test(tc, test_race_softmax_syncwarp_passes);
    tcase_add_test(tc, test_race_cross_warp);
    tcase_add_test(tc, test_race_dynamic_smem);
    tcase_add_test(tc, test_capture_replay);
    tcase_add_test(tc, test_capture_forbidden_calls);
    tcase_add_test(tc, test_pinned_rewrite_aborts);
    tcase_add_test(tc, test_pinned_reuse_after_sync_passes);
    tcase_add_test(tc, test_math_perturbed);
    suite_add_tcase(s, tc);
#endif
    return s;
}

int main(void) {
    char dev_name[256];
    if (!check_device_present(dev_name, sizeof dev_name)) { // asked in a child: see check_device.h
        fprintf(stderr, "test_selftest: no device, skipped\n");
        return CHECK_SKIPPED;
    }
    fprintf(stderr, "test_selftest: device %s\n", dev_name);
    return check_run_suite(selftest_suite());
}
