/*
 * selftest.cu — kernels that exercise the CUDA subset the SIMT emulator provides (see
 * selftest.h for each launcher's contract). They are tests, not production kernels:
 * tiny inputs, one concern each, results checked on the host by
 * tests/kernels/test_selftest.c, natively and under the emulator.
 */
#include "cuda_common.cuh"
#include "mma.cuh"
#include "reduce.cuh"

#include "selftest.h"

#define FULL 0xffffffffu

// ----------------------------------------------------------------------------
// block reductions

// sums[b] = sum x[256b + t], tree reduction in static shared memory (256 floats read once,
// log2(256) barrier rounds); a __shared__ scalar broadcasts the total to every thread.
__global__ void block_sum_static_kernel(const float* __restrict__ x, int n, float* sums, float* all) {
    ETX_PDL_ENTRY();
    __shared__ float s[256];
    __shared__ float s_total;
    const int t = threadIdx.x;
    const int i = blockIdx.x * 256 + t;
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = 128; stride > 0; stride >>= 1) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) {
        s_total = s[0];
        sums[blockIdx.x] = s[0];
    }
    __syncthreads();
    all[i] = s_total;
}

// The same over blockDim.x threads, through dynamic shared memory (blockDim.x floats).
__global__ void block_sum_dynamic_kernel(const float* __restrict__ x, int n, float* sums) {
    ETX_PDL_ENTRY();
    ETX_DYNAMIC_SMEM(float, s);
    const int t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) sums[blockIdx.x] = s[0];
}

extern "C" void selftest_block_sum_static(const float* x, int n, int n_blocks, float* sums, float* all) {
    ETX_LAUNCH(block_sum_static_kernel, n_blocks, 256, 0, 0, x, n, sums, all);
    CUDA_CHECK_LAUNCH();
}

extern "C" void selftest_block_sum_dynamic(const float* x, int n, int n_blocks, int block, float* sums) {
    ETX_LAUNCH(block_sum_dynamic_kernel, n_blocks, block, (size_t)block * sizeof(float), 0, x, n, sums);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// warp shuffles: each field a different kind, width or type (integer values, exact in
// every type)

__global__ void shuffles_kernel(const int* __restrict__ in, long long* out) {
    ETX_PDL_ENTRY();
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    const int v = in[g];
    long long* o = out + (size_t)g * SELFTEST_SHFL_FIELDS;

    int a = v; // 0: xor butterfly sum (int)
    for (int m = 16; m > 0; m >>= 1) a += __shfl_xor_sync(FULL, a, m);
    o[0] = a;

    float b = (float)v; // 1: down tree (float); lane 0 holds the warp sum
    for (int d = 16; d > 0; d >>= 1) b += __shfl_down_sync(FULL, b, d);
    o[1] = (long long)b;

    unsigned c = (unsigned)v; // 2: inclusive scan with up (unsigned)
    for (int d = 1; d < 32; d <<= 1) {
        const unsigned y = __shfl_up_sync(FULL, c, d);
        if (lane >= d) c += y;
    }
    o[2] = c;

    const int src = in[g - lane] & 31; // 3: broadcast from a data-chosen lane (double)
    o[3] = (long long)__shfl_sync(FULL, (double)v, src);

    long long e = (long long)v << 33; // 4: xor sum within 16-lane segments (64-bit payload)
    for (int m = 8; m > 0; m >>= 1) e += __shfl_xor_sync(FULL, e, m, 16);
    o[4] = e;

    o[5] = __shfl_sync(FULL, v, 3, 8); // 5: lane 3 of each 8-lane segment

    unsigned long long f = (unsigned long long)v; // 6: down tree within 16-lane segments
    for (int d = 8; d > 0; d >>= 1) f += __shfl_down_sync(FULL, f, d, 16);
    o[6] = (long long)f;

    int h; // 7: two groups with their own masks in divergent branches
    if (lane < 16) h = v + __shfl_xor_sync(0x0000ffffu, v, 1);
    else h = v + __shfl_xor_sync(0xffff0000u, v, 2);
    o[7] = h;

    int k = v; // 8: inclusive scan within 8-lane segments (up never crosses a segment)
    for (int d = 1; d < 8; d <<= 1) {
        const int y = __shfl_up_sync(FULL, k, d, 8);
        if ((lane & 7) >= d) k += y;
    }
    o[8] = k;

    o[9] = __shfl_up_sync(FULL, v, 3, 8);    // 9: raw: lanes 0..2 of a segment keep their own
    o[10] = __shfl_xor_sync(FULL, v, 8, 8);  // 10: raw: only reads from earlier segments
}

extern "C" void selftest_shuffles(const int* in, int n_blocks, long long* out) {
    ETX_LAUNCH(shuffles_kernel, n_blocks, 64, 0, 0, in, out);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// votes and bit intrinsics

__global__ void votes_kernel(const int* __restrict__ in, unsigned* out) {
    ETX_PDL_ENTRY();
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    const int v = in[g];
    unsigned* o = out + (size_t)g * SELFTEST_VOTE_FIELDS;
    o[8] = __activemask(); // first, while the warp is converged
    o[0] = __ballot_sync(FULL, v & 1);
    o[1] = (unsigned)__any_sync(FULL, v > 90);
    if (lane < 16) o[2] = (unsigned)__all_sync(0x0000ffffu, v >= 0); // groups of 16 lanes
    else o[2] = (unsigned)__all_sync(0xffff0000u, v > 3);
    o[3] = (unsigned)__all_sync(FULL, lane != (in[g - lane] & 31));
    const unsigned b = __ballot_sync(FULL, lane % 3 == 0 && v > 20);
    o[4] = (unsigned)__popc(b);
    o[5] = (unsigned)__ffs((int)b);
    o[6] = (unsigned)__clz((int)b);
    if (lane < 16) o[7] = __ballot_sync(0x0000ffffu, v & 2);
    else o[7] = __ballot_sync(0xffff0000u, v & 4);
    o[9] = (unsigned)__syncthreads_count(v & 1);
    o[10] = __match_any_sync(FULL, v % 4);
    o[11] = __reduce_max_sync(FULL, (unsigned)v);
    o[12] = (unsigned)__reduce_min_sync(FULL, v - 50);
    o[13] = __reduce_or_sync(FULL, 1u << (v % 32));
    o[14] = __reduce_xor_sync(FULL, (unsigned)v);
    o[15] = (unsigned)__reduce_add_sync(FULL, v) + __reduce_and_sync(FULL, (unsigned)v | 0xf0u);
    o[16] = (unsigned)__syncthreads_and(v > 2);
    o[17] = (unsigned)__syncthreads_or(v > 97);
}

extern "C" void selftest_votes(const int* in, int n_blocks, unsigned* out) {
    ETX_LAUNCH(votes_kernel, n_blocks, 64, 0, 0, in, out);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// a partial warp: 100 threads, the last warp has 4 lanes

__global__ void partial_warp_kernel(const int* __restrict__ in, int* isum, float* fsum, unsigned* lanes) {
    ETX_PDL_ENTRY();
    __shared__ int s_i[4];
    __shared__ float s_f[4];
    const int t = threadIdx.x, lane = t & 31, w = t >> 5;
    const int g = blockIdx.x * blockDim.x + t;
    const int v = in[g];
    const unsigned mask = __ballot_sync(FULL, 1); // the lanes of this warp that exist
    const int n_lanes = __popc(mask);
    const int wi = __reduce_add_sync(mask, v);
    float f = (float)v; // xor butterfly over n_lanes lanes (a power of two: 32 or 4 here)
    for (int m = 16; m > 0; m >>= 1)
        if (m < n_lanes) f += __shfl_xor_sync(mask, f, m);
    lanes[2 * g] = mask;
    lanes[2 * g + 1] = __activemask();
    if (lane == 0) {
        s_i[w] = wi;
        s_f[w] = f;
    }
    __syncthreads();
    if (t == 0) {
        isum[blockIdx.x] = s_i[0] + s_i[1] + s_i[2] + s_i[3];
        fsum[blockIdx.x] = s_f[0] + s_f[1] + s_f[2] + s_f[3];
    }
}

extern "C" void selftest_partial_warp(const int* in, int n_blocks, int* isum, float* fsum, unsigned* lanes) {
    ETX_LAUNCH(partial_warp_kernel, n_blocks, 100, 0, 0, in, isum, fsum, lanes);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// a 3D block and a 2D grid

__global__ void block3d_kernel(int* out) {
    ETX_PDL_ENTRY();
    const int linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int n = blockDim.x * blockDim.y * blockDim.z;
    int* o = out + ((size_t)blockIdx.x * n + linear) * 4;
    o[0] = linear;
    o[1] = __shfl_sync(FULL, linear, ((linear & 31) + 1) & 31);
    o[2] = (int)__ballot_sync(FULL, threadIdx.y == 0);
    o[3] = blockIdx.x;
}

extern "C" void selftest_block3d(int n_blocks, int* out) {
    ETX_LAUNCH(block3d_kernel, n_blocks, dim3(8, 4, 3), 0, 0, out);
    CUDA_CHECK_LAUNCH();
}

__global__ void grid2d_kernel(int* out, int* meta) {
    ETX_PDL_ENTRY();
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    out[y * (gridDim.x * blockDim.x) + x] = 1000 * y + x;
    if (blockIdx.x == gridDim.x - 1 && blockIdx.y == gridDim.y - 1 && threadIdx.x == 0 && threadIdx.y == 0) {
        meta[0] = gridDim.x;
        meta[1] = gridDim.y;
        meta[2] = blockDim.x;
        meta[3] = blockDim.y;
    }
}

extern "C" void selftest_grid2d(int* out, int* meta) {
    ETX_LAUNCH(grid2d_kernel, dim3(5, 3), dim3(16, 8), 0, 0, out, meta);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// atomics

__global__ void atomics_kernel(const int* __restrict__ in, SelftestAtomics* a, int* slots, int* exch_old) {
    ETX_PDL_ENTRY();
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    const int v = in[g];
    atomicAdd(&a->isum, v);
    atomicAdd(&a->usum, (unsigned)v & 0xffu);
    atomicMax(&a->imax, v);
    atomicMin(&a->imin, v);
    atomicMax(&a->umax, (unsigned)(v + 1000));
    atomicMin(&a->umin, (unsigned)(v + 1000));
    int old = a->cas_max;
    while (old < v) {
        const int prev = atomicCAS(&a->cas_max, old, v);
        if (prev == old) break;
        old = prev;
    }
    const float fv = (float)v * 0.5f;
    unsigned ob = a->fmax_bits;
    while (__uint_as_float(ob) < fv) {
        const unsigned prev = atomicCAS(&a->fmax_bits, ob, __float_as_uint(fv));
        if (prev == ob) break;
        ob = prev;
    }
    slots[atomicAdd(&a->counter, 1)] = g + 1;
    exch_old[g] = atomicExch(&a->exch, g + 1);
    atomicAdd(&a->ullsum, (unsigned long long)(v + 1000) << 20);
    atomicAdd(&a->fsum, (float)v);
    if (g == 0) {
        const int probe = a->cas_probe;
        a->cas_ret[0] = atomicCAS(&a->cas_probe, probe + 1, 9); // fails: no write
        a->cas_ret[1] = atomicCAS(&a->cas_probe, probe, 8);
        a->ull_ret = atomicCAS(&a->ull_probe, a->ull_probe, 0x123456789abcdefull);
    }
}

extern "C" void selftest_atomics(const int* in, int n_blocks, SelftestAtomics* acc, int* slots, int* exch_old) {
    ETX_LAUNCH(atomics_kernel, n_blocks, 128, 0, 0, in, acc, slots, exch_old);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// bf16

__global__ void bf16_kernel(const float* __restrict__ in, int n, unsigned short* rn, unsigned short* def,
                            float* back, unsigned short* pair_bits, float* pair_back) {
    ETX_PDL_ENTRY();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const __nv_bfloat16 h = __float2bfloat16_rn(in[i]);
    rn[i] = __bfloat16_as_ushort(h);
    def[i] = __bfloat16_as_ushort(__float2bfloat16(in[i]));
    back[i] = __bfloat162float(h);
    if ((i & 1) == 0 && i + 1 < n) {
        const __nv_bfloat162 p = __floats2bfloat162_rn(in[i], in[i + 1]);
        pair_bits[i] = __bfloat16_as_ushort(__low2bfloat16(p));
        pair_bits[i + 1] = __bfloat16_as_ushort(__high2bfloat16(p));
        const float2 f = __bfloat1622float2(p);
        pair_back[i] = f.x;
        pair_back[i + 1] = f.y;
    }
}

extern "C" void selftest_bf16(const float* in, int n, unsigned short* rn, unsigned short* def, float* back,
                              unsigned short* pair_bits, float* pair_back) {
    ETX_LAUNCH(bf16_kernel, etx_ceil_div(n, 128), 128, 0, 0, in, n, rn, def, back, pair_bits, pair_back);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// math: one thread per input, every function of the subset (qualifiers exercised too)

static __device__ __noinline__ float negate_bits(float v) { return __int_as_float(__float_as_int(v) ^ (int)0x80000000); }
static __device__ __forceinline__ float square(float v) { return v * v; }

__global__ void __launch_bounds__(128) math_kernel(const float* __restrict__ x, const float* __restrict__ p,
                                                   const float* __restrict__ y, int n, float* __restrict__ out) {
    ETX_PDL_ENTRY();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float a = x[i], b = p[i], c = y[i];
    float* o = out + (size_t)i * SELFTEST_MATH_FIELDS;
    o[0] = expf(a);
    o[1] = exp2f(a);
    o[2] = __expf(a);
    o[3] = logf(b);
    o[4] = log2f(b);
    o[5] = __logf(b);
    o[6] = sqrtf(square(b));
    o[7] = rsqrtf(b);
    o[8] = __fdividef(a, b);
    o[9] = __frcp_rn(b);
    o[10] = fmaxf(a, c);
    o[11] = fminf(a, c) + (a < INFINITY ? 0.0f : 1.0f);
    o[12] = fabsf(a);
    o[13] = negate_bits(a);
    o[14] = (float)min((int)floorf(a), (int)floorf(c));
    o[15] = (float)max((unsigned)(a + 20.0f), (unsigned)(c + 20.0f));
    o[16] = max(a, c) - min(a, c) + (__uint_as_float(__float_as_uint(b)) - b);
}

extern "C" void selftest_math(const float* x, const float* p, const float* y, int n, float* out) {
    ETX_LAUNCH(math_kernel, etx_ceil_div(n, 128), 128, 0, 0, x, p, y, n, out);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// barrier cost, launch errors

__global__ void barrier_rounds_kernel(int rounds, int* out) {
    ETX_PDL_ENTRY();
    __shared__ int s[1024];
    const int t = threadIdx.x;
    s[t] = 0;
    __syncthreads();
    for (int r = 0; r < rounds; r++) {
        s[t] += 1;
        __syncthreads();
    }
    if (t == 0) {
        int sum = 0;
        for (int i = 0; i < (int)blockDim.x; i++) sum += s[i];
        out[0] = sum;
    }
}

extern "C" float selftest_barrier_rounds(int block, int rounds, int* out) {
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    CUDA_CHECK(cudaEventRecord(start));
    ETX_LAUNCH(barrier_rounds_kernel, 1, block, 0, 0, rounds, out);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    return ms;
}

__global__ void noop_kernel(int* out) {
    ETX_PDL_ENTRY();
    if (out && threadIdx.x == 0) out[0] = 1;
}

extern "C" int selftest_bad_launch(int* second_error) {
    ETX_LAUNCH(noop_kernel, 1, 2048, 0, 0, (int*)NULL);
    const int first = (int)cudaGetLastError();
    ETX_LAUNCH(noop_kernel, 1, 32, 0, 0, (int*)NULL);
    *second_error = (int)cudaGetLastError();
    return first;
}

extern "C" void selftest_copy_bounds(int* out) {
    void* d = NULL;
    char host[80] = {0};
    CUDA_CHECK(cudaMalloc(&d, 64));
    out[0] = (int)cudaMemcpy(host, d, 68, cudaMemcpyDeviceToHost);
    (void)cudaGetLastError(); // the failed call's error, cleared
    out[1] = (int)cudaMemcpy(d, host, 68, cudaMemcpyHostToDevice);
    (void)cudaGetLastError();
    out[2] = (int)cudaMemset(d, 0, 68);
    (void)cudaGetLastError();
    out[3] = (int)cudaMemcpy(host, d, 64, cudaMemcpyDeviceToHost);
    CUDA_CHECK(cudaFree(d));
}

// Lane (g, t) = (lane / 4, lane % 4) loads its fragments in PTX's layout (simt.h) and the
// warp runs one mma: what gemm_tc.cu relies on, checked against the hardware.
__global__ void mma_kernel(const uint32_t* a, const uint32_t* bt, const float* c, float* d) {
    ETX_PDL_ENTRY();
    const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    // a, bt: rows of 16 bf16 = 8 words; word w of row r holds columns 2w, 2w + 1
    const uint32_t af[4] = {a[g * 8 + t], a[(g + 8) * 8 + t], a[g * 8 + t + 4], a[(g + 8) * 8 + t + 4]};
    const uint32_t bf[2] = {bt[g * 8 + t], bt[g * 8 + t + 4]};
    float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
    etx_mma_bf16_16816(acc, af, bf); // kernels/mma.cuh, what gemm_tc.cu runs
    d[g * 8 + 2 * t] = acc[0];
    d[g * 8 + 2 * t + 1] = acc[1];
    d[(g + 8) * 8 + 2 * t] = acc[2];
    d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

extern "C" void selftest_mma(const uint16_t* a, const uint16_t* bt, const float* c, float* d) {
    uint32_t *da, *db;
    float *dc, *dd;
    CUDA_CHECK(cudaMalloc((void**)&da, 16 * 16 * 2));
    CUDA_CHECK(cudaMalloc((void**)&db, 8 * 16 * 2));
    CUDA_CHECK(cudaMalloc((void**)&dc, 16 * 8 * 4));
    CUDA_CHECK(cudaMalloc((void**)&dd, 16 * 8 * 4));
    CUDA_CHECK(cudaMemcpy(da, a, 16 * 16 * 2, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(db, bt, 8 * 16 * 2, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dc, c, 16 * 8 * 4, cudaMemcpyHostToDevice));
    ETX_LAUNCH(mma_kernel, 1, 32, 0, 0, da, db, dc, dd);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaMemcpy(d, dd, 16 * 8 * 4, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(da));
    CUDA_CHECK(cudaFree(db));
    CUDA_CHECK(cudaFree(dc));
    CUDA_CHECK(cudaFree(dd));
}

// ----------------------------------------------------------------------------
// bugs the emulator reports

__global__ void divergent_syncthreads_kernel(int mode, int* out) {
    ETX_PDL_ENTRY();
    if (mode == 0) {
        if (threadIdx.x < 16) __syncthreads();
    } else {
        if (threadIdx.x < 32) return;
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

extern "C" void selftest_divergent_syncthreads(int mode, int* out) {
    ETX_LAUNCH(divergent_syncthreads_kernel, 1, 64, 0, 0, mode, out);
    CUDA_CHECK_LAUNCH();
}

// mode 0: thread 0 reads out[0] before ETX_PDL_ENTRY; mode 1: thread 5 stores out[5]
// before it; mode 2: threads >= 32 return without the entry (the others have it); mode 3:
// every thread loads ro[threadIdx.x] (read-only memory) before it, which is allowed;
// mode 4: thread 7 stores into ro before it.
__global__ void grid_dependency_kernel(int mode, int* out, const int* ro) {
    if (mode == 3) {
        const int v = ro[threadIdx.x]; // weights-like memory: no kernel writes it
        ETX_PDL_ENTRY();
        out[threadIdx.x] = v;
        return;
    }
    if (mode == 4 && threadIdx.x == 7) const_cast<int*>(ro)[7] = 1; // the bug: read-only means read
    if (mode == 0 && threadIdx.x == 0) {
        const int v = out[0]; // the bug: the previous kernel may still be writing out
        ETX_PDL_ENTRY();
        out[1] = v;
        return;
    }
    if (mode == 1 && threadIdx.x == 5) out[5] = 1; // the bug, as a store
    if (mode == 2 && threadIdx.x >= 32) return;   // the bug: no entry at all
    ETX_PDL_ENTRY();
    out[threadIdx.x] = 2;
}

extern "C" void selftest_grid_dependency(int mode, int* out, const int* ro) {
    ETX_LAUNCH(grid_dependency_kernel, 1, 64, 0, 0, mode, out, ro);
    CUDA_CHECK_LAUNCH();
}

__global__ void mismatched_warp_ops_kernel(int* out) {
    ETX_PDL_ENTRY();
    const int lane = threadIdx.x & 31;
    if (lane < 16) out[threadIdx.x] = __shfl_xor_sync(FULL, lane, 1);
    else out[threadIdx.x] = (int)__ballot_sync(FULL, 1);
}

extern "C" void selftest_mismatched_warp_ops(int* out) {
    ETX_LAUNCH(mismatched_warp_ops_kernel, 1, 32, 0, 0, out);
    CUDA_CHECK_LAUNCH();
}

__global__ void deadlock_kernel(int* out) {
    ETX_PDL_ENTRY();
    if (threadIdx.x == 0) __syncthreads();
    else __syncwarp(FULL);
    out[threadIdx.x] = 1;
}

extern "C" void selftest_deadlock(int* out) {
    ETX_LAUNCH(deadlock_kernel, 1, 32, 0, 0, out);
    CUDA_CHECK_LAUNCH();
}

__global__ void shfl_outside_mask_kernel(int* out) {
    ETX_PDL_ENTRY();
    const int t = threadIdx.x;
    int v = t;
    if (t >= 32) v = __shfl_down_sync(0xffu, v, 16);
    out[t] = v;
}

extern "C" void selftest_shfl_outside_mask(int* out) {
    ETX_LAUNCH(shfl_outside_mask_kernel, 1, 40, 0, 0, out);
    CUDA_CHECK_LAUNCH();
}

__global__ void dynamic_smem_unwritten_kernel(int n, unsigned* out) {
    ETX_PDL_ENTRY();
    ETX_DYNAMIC_SMEM(unsigned, s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = s[i];
}

// 64 KB of dynamic shared memory: first without the attribute (the error), then with it.
// Returns the first launch's error; *second_error the second's.
extern "C" int selftest_big_dynamic_smem(unsigned* out, int* second_error) {
    const int n = 16 * 1024; // unsigned: 64 KB
    ETX_LAUNCH(dynamic_smem_unwritten_kernel, 1, 32, (size_t)n * sizeof(unsigned), 0, 32, out);
    const int first = (int)cudaGetLastError();
    CUDA_CHECK(cudaFuncSetAttribute(dynamic_smem_unwritten_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)(n * sizeof(unsigned))));
    ETX_LAUNCH(dynamic_smem_unwritten_kernel, 1, 32, (size_t)n * sizeof(unsigned), 0, 32, out);
    *second_error = (int)cudaGetLastError();
    CUDA_CHECK(cudaDeviceSynchronize());
    return first;
}

extern "C" void selftest_dynamic_smem_unwritten(int n, unsigned* out) {
    ETX_LAUNCH(dynamic_smem_unwritten_kernel, 1, 32, (size_t)n * sizeof(unsigned), 0, n, out);
    CUDA_CHECK_LAUNCH();
}

#ifdef ETX_SIMT
__global__ void call_on_fibers_kernel(void (*fn)(int)) {
    ETX_PDL_ENTRY();
    fn((int)threadIdx.x);
    __syncthreads();
    fn((int)threadIdx.x + 1000);
}

extern "C" void selftest_call_on_fibers(void (*fn)(int tid), int block) {
    ETX_LAUNCH(call_on_fibers_kernel, 1, block, 0, 0, fn);
    CUDA_CHECK_LAUNCH();
}
#endif

// ----------------------------------------------------------------------------
// scheduling: block and thread order, resident blocks (issue 14)

// Thread 0 of every block takes a ticket: order[ticket] = blockIdx.x, the order in which
// blocks started. Every thread takes a ticket of its block: torder[blockIdx.x * blockDim.x
// + ticket] = threadIdx.x, the order in which the block's threads got there.
__global__ void order_kernel(int* order, int* ticket, int* torder, int* tickets) {
    ETX_PDL_ENTRY();
    if (threadIdx.x == 0) order[atomicAdd(ticket, 1)] = blockIdx.x;
    torder[blockIdx.x * blockDim.x + atomicAdd(&tickets[blockIdx.x], 1)] = threadIdx.x;
}

extern "C" void selftest_order(int n_blocks, int block, int* order, int* ticket, int* torder, int* tickets) {
    ETX_LAUNCH(order_kernel, n_blocks, block, 0, 0, order, ticket, torder, tickets);
    CUDA_CHECK_LAUNCH();
}

// The bug: block b reads what block b - 1 wrote, as if blocks ran in order (a chain
// without any synchronisation between blocks). out[b] = out[b - 1] + 1 holds only when
// block b - 1 ran first. The fix (mode 1): each block computes its own value.
__global__ void block_chain_kernel(int mode, int* out) {
    ETX_PDL_ENTRY();
    const int b = blockIdx.x;
    if (threadIdx.x != 0) return;
    if (mode == 0) out[b] = b == 0 ? 1 : out[b - 1] + 1;
    else out[b] = b + 1;
}

extern "C" void selftest_block_chain(int mode, int n_blocks, int* out) {
    ETX_LAUNCH(block_chain_kernel, n_blocks, 32, 0, 0, mode, out);
    CUDA_CHECK_LAUNCH();
}

// Blocks resident together: each block keeps its id in a __shared__ scalar and an array
// across `rounds` barriers and counts the rounds where it found something else
// (bad[b]); a global counter of running blocks records the most seen at once (*max_live).
__global__ void resident_kernel(int rounds, int* live, int* max_live, int* bad) {
    ETX_PDL_ENTRY();
    __shared__ int s_id;
    __shared__ int s_arr[64];
    const int t = threadIdx.x;
    if (t == 0) {
        s_id = blockIdx.x;
        atomicMax(max_live, atomicAdd(live, 1) + 1);
    }
    s_arr[t] = blockIdx.x * 64 + t;
    __syncthreads();
    int wrong = 0;
    for (int r = 0; r < rounds; r++) {
        if (s_id != (int)blockIdx.x || s_arr[63 - t] != (int)blockIdx.x * 64 + 63 - t) wrong++;
        __syncthreads();
        if (t == 0) atomicMax(max_live, atomicAdd(live, 0));
    }
    if (wrong) atomicAdd(&bad[blockIdx.x], wrong);
    __syncthreads();
    if (t == 0) atomicSub(live, 1);
}

extern "C" void selftest_resident(int n_blocks, int rounds, int* live, int* max_live, int* bad) {
    ETX_LAUNCH(resident_kernel, n_blocks, 64, 0, 0, rounds, live, max_live, bad);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// shared-memory races (issue 14): each kernel has a wrong mode (0, a race the emulator's
// race detector must report) and a correct twin (1)

// The online-softmax update of kernels/attention.cu softmax_update, one warp per row of 32
// scores: every lane reads the row's running max m_s[row], the warp reduces (shuffles),
// then lane 0 writes m_s[row] and l_s[row]. Mode 0 writes without a __syncwarp after the
// reads: a write-after-read hazard (shuffles do not order memory; only __syncwarp does).
// Mode 1 has the __syncwarp. out (rows): the new max; sums (rows): the new sum.
__global__ void softmax_war_kernel(int mode, const float* __restrict__ x, int rows, float* out, float* sums) {
    ETX_PDL_ENTRY();
    __shared__ float s_s[4][32];
    __shared__ float m_s[4], l_s[4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        m_s[warp] = 0.0f;
        l_s[warp] = 1.0f;
    }
    s_s[warp][lane] = warp < rows ? x[warp * 32 + lane] : 0.0f;
    __syncthreads();
    const float sc = s_s[warp][lane];
    const float m_old = m_s[warp];
    const float m_new = fmaxf(m_old, etx_warp_max(sc));
    const float p = expf(sc - m_new);
    const float sum = etx_warp_sum(p);
    if (mode == 1) __syncwarp();
    if (lane == 0) {
        l_s[warp] = l_s[warp] * expf(m_old - m_new) + sum;
        m_s[warp] = m_new;
    }
    __syncthreads();
    if (lane == 0 && warp < rows) {
        out[warp] = m_s[warp];
        sums[warp] = l_s[warp];
    }
}

extern "C" void selftest_softmax_war(int mode, const float* x, int rows, float* out, float* sums) {
    ETX_LAUNCH(softmax_war_kernel, 1, 128, 0, 0, mode, x, rows, out, sums);
    CUDA_CHECK_LAUNCH();
}

// Warp 1 reads what warp 0 wrote to static shared memory: mode 0 without the
// __syncthreads between (read after write, or write after read, across warps), mode 1
// with it. out (64): out[t] = t + 32 for t < 32, t - 32 for the others.
__global__ void cross_warp_kernel(int mode, int* out) {
    ETX_PDL_ENTRY();
    __shared__ int s[64];
    const int t = threadIdx.x;
    s[t] = t;
    if (mode == 1) __syncthreads();
    out[t] = s[(t + 32) % 64];
}

extern "C" void selftest_cross_warp(int mode, int* out) {
    ETX_LAUNCH(cross_warp_kernel, 1, 64, 0, 0, mode, out);
    CUDA_CHECK_LAUNCH();
}

// The same within one warp, through dynamic shared memory: lane t reads lane t ^ 1's slot,
// mode 0 with no ordering, mode 1 after a __syncwarp.
__global__ void dynamic_race_kernel(int mode, int* out) {
    ETX_PDL_ENTRY();
    ETX_DYNAMIC_SMEM(int, s);
    const int t = threadIdx.x;
    s[t] = 10 * t;
    if (mode == 1) __syncwarp();
    out[t] = s[t ^ 1];
}

extern "C" void selftest_dynamic_race(int mode, int* out) {
    ETX_LAUNCH(dynamic_race_kernel, 1, 32, 32 * sizeof(int), 0, mode, out);
    CUDA_CHECK_LAUNCH();
}

// The bug kernels/vocab_pass.cu first had: the template's static lands outside the
// section, so resident blocks would share it. Emulator only (a GPU has no such problem).
template <class Get>
__device__ static int escaped_sum(Get get) {
    __shared__ int s[32];
    s[threadIdx.x] = get(threadIdx.x);
    __syncthreads();
    return s[(threadIdx.x + 1) % 32];
}

__global__ void escaped_shared_kernel(int* out) {
    ETX_PDL_ENTRY();
    out[threadIdx.x] = escaped_sum([&](int i) { return 3 * i; });
}

extern "C" void selftest_escaped_shared(int* out) {
    ETX_LAUNCH(escaped_shared_kernel, 2, 32, 0, 0, out);
    CUDA_CHECK_LAUNCH();
}

// ----------------------------------------------------------------------------
// stream capture and graphs (issue 14)

__global__ void add_one_kernel(int* x, int n) {
    ETX_PDL_ENTRY();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += 1;
}

__global__ void never_launched_kernel(int* x) {
    ETX_PDL_ENTRY();
    if (threadIdx.x == 0) x[0] = 42;
}

// r[0]: x[0] right after the capture (the launches were recorded, not run); r[1]: x[0]
// after two graph launches; r[2]: y[0] (a memset then a copy, recorded, replayed);
// r[3..5]: the errors of BeginCapture, EndCapture, Instantiate.
extern "C" void selftest_capture_replay(int* x, int* y, int* r) {
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    ETX_LAUNCH(add_one_kernel, 1, 32, 0, st, x, 1); // loads the kernel: x[0] = 1
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaStreamSynchronize(st));
    r[3] = (int)cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    ETX_LAUNCH(add_one_kernel, 1, 32, 0, st, x, 1);
    (void)cudaMemsetAsync(y, 0, sizeof(int), st);
    (void)cudaMemcpyAsync(y, x, sizeof(int), cudaMemcpyDeviceToDevice, st);
    cudaGraph_t g = NULL;
    r[4] = (int)cudaStreamEndCapture(st, &g);
    CUDA_CHECK(cudaMemcpy(&r[0], x, sizeof(int), cudaMemcpyDeviceToHost));
    cudaGraphExec_t e = NULL;
    r[5] = (int)cudaGraphInstantiate(&e, g, 0);
    CUDA_CHECK(cudaGraphLaunch(e, st));
    CUDA_CHECK(cudaGraphLaunch(e, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    CUDA_CHECK(cudaMemcpy(&r[1], x, sizeof(int), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(&r[2], y, sizeof(int), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaGraphExecDestroy(e));
    CUDA_CHECK(cudaGraphDestroy(g));
    CUDA_CHECK(cudaStreamDestroy(st));
}

// During a capture, one forbidden call (what: 0 cudaMalloc, 1 cudaFree, 2 cudaMemcpy,
// 3 cudaMemset, 4 cudaDeviceSynchronize, 5 cudaStreamSynchronize), or (6) the first
// launch of a kernel (lazy loading), or (7) nothing forbidden. r[0]: the call's error (or
// cudaGetLastError after the launch); r[1]: cudaStreamEndCapture's; r[2]: the graph is
// null (1) or not (0).
extern "C" void selftest_capture_forbidden(int what, int* x, int* r) {
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    ETX_LAUNCH(add_one_kernel, 1, 32, 0, st, x, 1);
    CUDA_CHECK_LAUNCH();
    void* p = NULL;
    if (what == 1) CUDA_CHECK(cudaMalloc(&p, 64));
    int host = 0;
    CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    ETX_LAUNCH(add_one_kernel, 1, 32, 0, st, x, 1);
    cudaError_t err = cudaSuccess;
    switch (what) {
    case 0: err = cudaMalloc(&p, 64); break;
    case 1: err = cudaFree(p); break;
    case 2: err = cudaMemcpy(&host, x, sizeof(int), cudaMemcpyDeviceToHost); break;
    case 3: err = cudaMemset(x, 0, sizeof(int)); break;
    case 4: err = cudaDeviceSynchronize(); break;
    case 5: err = cudaStreamSynchronize(st); break;
    case 6:
        ETX_LAUNCH(never_launched_kernel, 1, 32, 0, st, x);
        err = cudaGetLastError();
        break;
    default: break;
    }
    r[0] = (int)err;
    (void)cudaGetLastError();
    cudaGraph_t g = NULL;
    r[1] = (int)cudaStreamEndCapture(st, &g);
    r[2] = g == NULL;
    (void)cudaGetLastError();
    if (g) CUDA_CHECK(cudaGraphDestroy(g));
    if (p) CUDA_CHECK(cudaFree(p));
    CUDA_CHECK(cudaStreamDestroy(st));
}

// ----------------------------------------------------------------------------
// device math (issue 14): expf, logf, sinf and __expf of n inputs: out (n, 4)

__global__ void math_raw_kernel(const float* __restrict__ x, int n, float* out) {
    ETX_PDL_ENTRY();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[4 * i] = expf(x[i]);
    out[4 * i + 1] = logf(fabsf(x[i]) + 0.5f);
    out[4 * i + 2] = sinf(x[i]);
    out[4 * i + 3] = __expf(x[i]);
}

extern "C" void selftest_math_raw(const float* x, int n, float* out) {
    ETX_LAUNCH(math_raw_kernel, etx_ceil_div(n, 128), 128, 0, 0, x, n, out);
    CUDA_CHECK_LAUNCH();
}
