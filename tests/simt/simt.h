/*
 * simt.h — a SIMT emulator: the subset of CUDA that etx's kernels use, implemented in
 * plain C++17 so every kernels/<name>.cu compiles with g++ (ETX_SIMT defined) and runs on the
 * CPU, in CI machines that have no GPU. kernels/README.md lists the subset and its rules.
 *
 * Execution model (tests/simt/simt.cpp):
 *   - simt::launch(grid, block, smem, stream, kernel, name, fn) runs the blocks in a seeded
 *     random order (SIMT_SEED), several of them resident at once (SIMT_RESIDENT, default
 *     3) and interleaved at __syncthreads: after a barrier completes, the scheduler may
 *     switch to another resident block. The threads of a block run as fibers (own stacks,
 *     cooperative switches), each calling fn() with its own threadIdx.
 *   - A fiber runs until it reaches a synchronisation point (__syncthreads, a warp
 *     intrinsic with a mask, __nanosleep) or returns. Between synchronisation points the
 *     runnable threads of a block resume in a seeded random order, reshuffled every pass.
 *   - Warp w of a block = linear thread ids 32w..32w+31 (x fastest, then y, then z); the
 *     last warp is partial when the block size is not a multiple of 32.
 *   - Divergence bugs abort with a message that names the launch, the block, the threads
 *     and the barrier: a __syncthreads that some thread of the block never reaches (it
 *     returned), warp intrinsics whose lanes disagree on the op or the mask, a deadlock.
 *     A shuffle that reads an exited lane or a lane outside its mask gets 0xdeadbeef
 *     bytes (undefined in CUDA) and a warning; SIMT_STRICT=1 makes it abort.
 *   - __shared__ is `static` in the section "simt_shared" (one copy per variable); the
 *     scheduler saves and restores the part of that section a launch has touched when it
 *     switches between resident blocks, so every block sees its own shared memory. Dynamic
 *     shared memory (ETX_DYNAMIC_SMEM) is one buffer per resident block, filled with 0xff
 *     bytes (float NaN) at every block start.
 *   - Shared-memory race detection (racecheck): the kernel files that use shared memory
 *     are compiled with AddressSanitizer's out-of-line checks, so every load and store
 *     calls the emulator (simt.cpp, "race detector"), which keeps a shadow per byte of
 *     shared memory and aborts when two threads of a block touch the same byte, at least
 *     one writing, with no __syncthreads (or, within a warp, __syncwarp) between.
 *   - Device math (expf, logf, sinf, rsqrtf, __expf, ...) returns results perturbed within
 *     CUDA's documented ulp bounds, deterministically (a hash of the argument), unless
 *     SIMT_PERTURB_MATH is defined to 0.
 *   - Device memory is host memory: cudaMalloc is an aligned malloc filled with 0xff bytes
 *     (a GPU does not zero it either: what relies on zeroed memory fails here), cudaMemcpy a memcpy.
 *     Every call is synchronous, except that a stream being captured (cudaStreamBeginCapture)
 *     records launches, copies and memsets into a graph that cudaGraphLaunch replays.
 *
 * One OS thread at a time may be inside launch (a mutex serialises launches).
 */
#ifndef ETX_SIMT_H
#define ETX_SIMT_H

// Standard headers first: the qualifier macros below (__noinline__ in particular) must
// not leak into library headers that use the same spelling as GCC attributes.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <tuple>
#include <utility>
#include <math.h>
#include <stdint.h>
#include <string.h>

// ----------------------------------------------------------------------------
// qualifiers

#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
// Every __shared__ variable lives in the section "simt_shared" (bounded by the linker's
// __start_simt_shared / __stop_simt_shared), which the scheduler swaps per resident block.
#define __shared__ static __attribute__((section("simt_shared")))
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __CUDA_ALIGN__(n) __attribute__((aligned(n)))
// __restrict__ is a GCC keyword already.

// Dynamic shared memory (nvcc: extern __shared__ bytes, see kernels/cuda_common.cuh):
// `ETX_DYNAMIC_SMEM(float, buf);` declares float* buf over the launch's smem bytes.
#define ETX_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::simt::dynamic_smem())

// ----------------------------------------------------------------------------
// vector types

struct uint3 {
    unsigned int x, y, z;
};
struct int3 {
    int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct __align__(8) int2 { int x, y; };
struct __align__(8) uint2 { unsigned int x, y; };
struct __align__(8) float2 { float x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(16) uint4 { unsigned int x, y, z, w; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(16) double2 { double x, y; };
struct __align__(4) ushort2 { unsigned short x, y; };
struct __align__(4) short2 { short x, y; };
struct __align__(4) char4 { signed char x, y, z, w; };
struct __align__(4) uchar4 { unsigned char x, y, z, w; };
struct float3 { float x, y, z; };
struct __align__(16) longlong2 { long long x, y; };

static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
static inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }
static inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
static inline ushort2 make_ushort2(unsigned short x, unsigned short y) { return ushort2{x, y}; }
static inline short2 make_short2(short x, short y) { return short2{x, y}; }
static inline char4 make_char4(signed char x, signed char y, signed char z, signed char w) { return char4{x, y, z, w}; }
static inline uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z, unsigned char w) {
    return uchar4{x, y, z, w};
}

// ----------------------------------------------------------------------------
// the emulator's state, read by the built-in variables

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace simt {

// One emulated thread (a fiber). Only the first fields are read by kernels.
// A cp.async of this thread not yet performed (kernels/async_copy.cuh).
struct AsyncCopy {
    unsigned char* dst;       // shared memory
    const unsigned char* src; // global memory
    int src_bytes;            // copied; the rest of the 16 zero-filled
    int group;                // its commit group (Thread::async_open until committed)
};

struct Thread {
    uint3 tid;        // threadIdx
    unsigned linear;  // x + y*bx + z*bx*by
    bool dep_entered; // has run ETX_PDL_ENTRY (grid_dependency_entry) in this block
    // cp.async emulation: the thread's pending copies and its open (uncommitted) group
    AsyncCopy async_pending[32];
    int async_n, async_open;
};

namespace detail {
extern Thread* g_thread;  // the running fiber
extern thread_local bool g_pre_entry; // g_thread has not run ETX_PDL_ENTRY in a launch that requires it
extern uint3 g_block_idx; // blockIdx of the running block
extern dim3 g_block_dim;  // blockDim of the launch
extern dim3 g_grid_dim;   // gridDim of the launch
extern unsigned char* g_dyn_smem;
extern const char* g_launch_name; // the next launch's kernel name (ETX_LAUNCH's spelling), or null
// A cp.async issued before the running thread's ETX_PDL_ENTRY: aborts unless src is
// read-only memory or not device memory (the launch is not an ETX_LAUNCH: nothing).
void check_async_source(const void* src);
// An L2 prefetch of [p, p + bytes) (etx_l2_prefetch, kernels/cuda_common.cuh): aborts
// unless p is 16-byte aligned, bytes a multiple of 16, and the range inside one device
// allocation marked read-only (the weights: a prefetch runs before the grid-dependency
// entry, and natively a range past an allocation is an illegal address). Moves nothing:
// the emulator has no cache.
void check_l2_prefetch(const void* p, size_t bytes);
extern uint3 g_tid; // g_thread->tid, copied at every switch to a fiber: threadIdx reads a
                    // global at a constant offset, which the race detector's hooks skip
static inline const uint3& thread_idx() { return g_tid; }
static inline const uint3& block_idx() { return g_block_idx; }
static inline const dim3& block_dim() { return g_block_dim; }
static inline const dim3& grid_dim() { return g_grid_dim; }

// Runs fn(ctx) once per thread of every block. `kernel` identifies the kernel (its
// address) for the lazy-loading rule of stream capture; null for anonymous launches.
// ctx_size: the bytes of *ctx (the kernel's captured arguments, which every thread reads
// before its first statement).
void launch(dim3 grid, dim3 block, size_t smem_bytes, const void* kernel, void (*fn)(void*), void* ctx,
            size_t ctx_size);
// Stream capture: whether a launch on `stream` is to be recorded instead of run, and the
// recording (a launch on a stream that is being captured becomes a node of its graph).
bool capturing(cudaStream_t stream);
void record_launch(cudaStream_t stream, const void* kernel, dim3 grid, dim3 block, size_t smem_bytes,
                   std::function<void()> run);

// Warp-intrinsic kinds (lanes of one op must agree on the kind and the mask).
enum WarpOp { W_NONE = 0, W_SYNC, W_SHFL_IDX, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_VOTE, W_MATCH, W_REDUCE, W_MMA };
enum ReduceOp { R_ADD = 0, R_MIN, R_MAX, R_AND, R_OR, R_XOR };
// The calling lane joins warp op `op` with `mask`, contributing `value`; returns its
// result (shuffle: the source lane's value; vote: the ballot of the group; match: the
// mask of lanes with equal value; reduce: the group's reduction). `arg` is the source
// lane / delta / xor mask / reduce op, `width` the shuffle segment width.
uint64_t warp_op(int op, unsigned mask, uint64_t value, int arg, int width);
unsigned activemask();
// Block barrier; pred is summed over the block (the return value).
int syncthreads(int pred);
void yield(); // __nanosleep: let the other fibers of the block run
// Kernel launches run so far (valid configurations; a graph replay counts its kernels).
unsigned long launches_run();
} // namespace detail

// Marks the device allocation holding [p, p + bytes) read-only: no kernel writes it while
// kernels that read it may run (weights), so a kernel may load from it before its
// ETX_PDL_ENTRY (the check below lets those loads through). 0, or -1 when the range is not
// inside one allocation. cudaFree forgets the mark.
int mark_readonly(const void* p, size_t bytes);

// ETX_PDL_ENTRY(): the emulated griddepcontrol.wait + launch_dependents. Launches run one
// after another here, so there is nothing to wait for; what the emulator checks is that
// the entry is there and first (simt.cpp, "grid dependencies"): a thread of an ETX_LAUNCH
// kernel that returns without it, or that touches device memory before it, aborts.
static inline void grid_dependency_entry() {
    detail::g_pre_entry = false; // first: the store below is checked by the hooks
    detail::g_thread->dep_entered = true;
}

// cp.async (kernels/async_copy.cuh). A copy is queued, not performed: it lands when the
// thread's cp.async.wait_group releases its group (the latest moment PTX allows), so a
// kernel that reads a stage before waiting for it, or lets another thread read it before
// a __syncthreads after the wait, reads stale bytes or trips the race detector instead of
// passing by luck. Performed here, in the kernel file's own (instrumented) code, so the
// race detector sees the stores as this thread's, at that moment. A copy never waited for
// is dropped at the thread's exit (its bytes are never defined).
static inline void cp_async16(void* dst_smem, const void* src_global, int src_bytes) {
    Thread* t = detail::g_thread;
    // natively the copy reads its source at some moment after issue: issued before the
    // grid-dependency entry, it races with the kernel before unless the source is read-only
    if (!t->dep_entered && src_bytes > 0) detail::check_async_source(src_global);
    if (t->async_n == 32) {
        fprintf(stderr, "simt: more than 32 cp.async pending in one thread\n");
        abort();
    }
    t->async_pending[t->async_n++] = AsyncCopy{static_cast<unsigned char*>(dst_smem),
                                               static_cast<const unsigned char*>(src_global), src_bytes, t->async_open};
}
static inline void cp_async_commit() { detail::g_thread->async_open++; }
// Completes every copy of the committed groups but the `allowed` most recent.
static inline void cp_async_wait(int allowed) {
    Thread* t = detail::g_thread;
    const int limit = t->async_open - allowed; // groups below it complete
    int kept = 0;
    for (int i = 0; i < t->async_n; i++) {
        const AsyncCopy c = t->async_pending[i];
        if (c.group < limit) {
            for (int b = 0; b < 16; b++) c.dst[b] = b < c.src_bytes ? c.src[b] : 0;
        } else {
            t->async_pending[kept++] = c;
        }
    }
    t->async_n = kept;
}

// Bytes of dynamic shared memory of the running launch (16-byte aligned; 0xff-filled at
// every block start).
static inline void* dynamic_smem() { return detail::g_dyn_smem; }

template <class F> static void invoke_fn(void* ctx) { (*static_cast<F*>(ctx))(); }

// Runs fn() as every thread of a grid of blocks (what ETX_LAUNCH becomes). On a stream
// that is being captured, a copy of fn is recorded instead and runs at cudaGraphLaunch.
// `name`: the kernel's name as written at the launch (messages), or null.
template <class F>
void launch(dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream, const void* kernel, const char* name,
            F&& fn) {
    using Fn = typename std::remove_reference<F>::type;
    if (stream && detail::capturing(stream)) {
        Fn copy = fn;
        detail::record_launch(stream, kernel, grid, block, smem_bytes, [=]() mutable {
            detail::g_launch_name = name;
            detail::launch(grid, block, smem_bytes, kernel, &invoke_fn<Fn>, (void*)&copy, sizeof copy);
        });
        return;
    }
    detail::g_launch_name = name;
    detail::launch(grid, block, smem_bytes, kernel, &invoke_fn<Fn>, (void*)&fn, sizeof fn);
}
// What ETX_LAUNCH becomes: the arguments are evaluated and converted to the kernel's
// parameter types here, at the launch, as CUDA does (a launch recorded by stream capture
// keeps these values; an argument expression such as p->field is not evaluated again at
// cudaGraphLaunch, when p may be gone).
template <typename... Params, typename... Args>
void launch_kernel(dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream, void (*kernel)(Params...),
                   const char* name, Args&&... args) {
    std::tuple<typename std::decay<Params>::type...> values(std::forward<Args>(args)...);
    launch(grid, block, smem_bytes, stream, reinterpret_cast<const void*>(kernel), name,
           [=]() { std::apply(kernel, values); });
}
template <class F> void launch(dim3 grid, dim3 block, size_t smem_bytes, F&& fn) {
    launch(grid, block, smem_bytes, (cudaStream_t)0, nullptr, nullptr, std::forward<F>(fn));
}

template <class To, class From> static inline To bitcast(const From& v) {
    static_assert(sizeof(To) == sizeof(From), "bitcast of different sizes");
    To t;
    std::memcpy(&t, &v, sizeof t);
    return t;
}

template <class T> static inline uint64_t to_u64(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp intrinsics move at most 8 bytes");
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> static inline T from_u64(uint64_t u) {
    T v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}

} // namespace simt

#define threadIdx (::simt::detail::thread_idx())
#define blockIdx (::simt::detail::block_idx())
#define blockDim (::simt::detail::block_dim())
#define gridDim (::simt::detail::grid_dim())
static constexpr int warpSize = 32;

// ----------------------------------------------------------------------------
// synchronisation

static inline void __syncthreads() { (void)::simt::detail::syncthreads(0); }
static inline int __syncthreads_count(int pred) { return ::simt::detail::syncthreads(pred != 0); }
static inline int __syncthreads_and(int pred) {
    return ::simt::detail::syncthreads(pred != 0) == (int)(blockDim.x * blockDim.y * blockDim.z);
}
static inline int __syncthreads_or(int pred) { return ::simt::detail::syncthreads(pred != 0) != 0; }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)::simt::detail::warp_op(::simt::detail::W_SYNC, mask, 0, 0, 32);
}
// One OS thread runs every fiber, and fibers switch only at calls into the emulator, so
// fences only have to stop the compiler from moving memory accesses.
static inline void __threadfence() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static inline void __nanosleep(unsigned) { ::simt::detail::yield(); }

// ----------------------------------------------------------------------------
// warp intrinsics

template <class T> static inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
    return ::simt::from_u64<T>(
        ::simt::detail::warp_op(::simt::detail::W_SHFL_IDX, mask, ::simt::to_u64(var), src_lane, width));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ::simt::from_u64<T>(
        ::simt::detail::warp_op(::simt::detail::W_SHFL_UP, mask, ::simt::to_u64(var), (int)delta, width));
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ::simt::from_u64<T>(
        ::simt::detail::warp_op(::simt::detail::W_SHFL_DOWN, mask, ::simt::to_u64(var), (int)delta, width));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    return ::simt::from_u64<T>(
        ::simt::detail::warp_op(::simt::detail::W_SHFL_XOR, mask, ::simt::to_u64(var), lane_mask, width));
}
// W_VOTE returns the ballot in the low 32 bits and the participating lanes in the high 32.
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_VOTE, mask, pred != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) {
    const uint64_t r = ::simt::detail::warp_op(::simt::detail::W_VOTE, mask, pred != 0, 0, 32);
    return (unsigned)r == (unsigned)(r >> 32);
}
static inline unsigned __activemask() { return ::simt::detail::activemask(); }
template <class T> static inline unsigned __match_any_sync(unsigned mask, T value) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_MATCH, mask, ::simt::to_u64(value), 0, 32);
}
static inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_REDUCE, mask, v, ::simt::detail::R_ADD, 32);
}
static inline int __reduce_add_sync(unsigned mask, int v) {
    return (int)__reduce_add_sync(mask, (unsigned)v);
}
static inline unsigned __reduce_and_sync(unsigned mask, unsigned v) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_REDUCE, mask, v, ::simt::detail::R_AND, 32);
}
static inline unsigned __reduce_or_sync(unsigned mask, unsigned v) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_REDUCE, mask, v, ::simt::detail::R_OR, 32);
}
static inline unsigned __reduce_xor_sync(unsigned mask, unsigned v) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_REDUCE, mask, v, ::simt::detail::R_XOR, 32);
}
static inline unsigned __reduce_min_sync(unsigned mask, unsigned v) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_REDUCE, mask, v, ::simt::detail::R_MIN, 32);
}
static inline unsigned __reduce_max_sync(unsigned mask, unsigned v) {
    return (unsigned)::simt::detail::warp_op(::simt::detail::W_REDUCE, mask, v, ::simt::detail::R_MAX, 32);
}
static inline int __reduce_min_sync(unsigned mask, int v) {
    return (int)(__reduce_min_sync(mask, (unsigned)v ^ 0x80000000u) ^ 0x80000000u);
}
static inline int __reduce_max_sync(unsigned mask, int v) {
    return (int)(__reduce_max_sync(mask, (unsigned)v ^ 0x80000000u) ^ 0x80000000u);
}

// ----------------------------------------------------------------------------
// tensor cores: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32

namespace simt {
// One lane's operands of the warp's D (16x8) = A (16x16) . B (16x8) + C, in PTX's fragment
// layout (groupID g = lane / 4, t = lane % 4; each 32-bit register holds two bf16, the
// lower column or row in the low half):
//   a[0] A[g][2t..2t+1]     a[1] A[g+8][2t..2t+1]   a[2] A[g][2t+8..2t+9]   a[3] A[g+8][2t+8..2t+9]
//   b[0] B[2t..2t+1][g]     b[1] B[2t+8..2t+9][g]
//   c/d[0..1] C[g][2t..2t+1]                         c/d[2..3] C[g+8][2t..2t+1]
struct MmaLane {
    const uint32_t* a;
    const uint32_t* b;
    const float* c;
    float* d;
};
} // namespace simt

// The emulated instruction: every lane of the warp must call it (the .aligned form), with
// the full mask. Each D[m][n] is C[m][n] plus the 16 products A[m][k] B[k][n] added one
// at a time in k order 0..15, each addition rounded to nearest f32 (a product of two
// bf16 is exact in f32). A GPU's tensor core adds them in an order and with a rounding of
// its own (not specified by NVIDIA), so emulated and native D agree within the bound
// kernels/gemm_tc.cu derives, not bit for bit. d may be c.
static inline void simt_mma_bf16_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    ::simt::MmaLane lane = {a, b, c, d};
    (void)::simt::detail::warp_op(::simt::detail::W_MMA, 0xffffffffu, (uint64_t)(uintptr_t)&lane, 0, 32);
}

// ----------------------------------------------------------------------------
// integer intrinsics

static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}

// min / max: CUDA's integer and floating overloads (mixed int/unsigned compares unsigned)
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline unsigned min(int a, unsigned b) { return min((unsigned)a, b); }
static inline unsigned max(int a, unsigned b) { return max((unsigned)a, b); }
static inline unsigned min(unsigned a, int b) { return min(a, (unsigned)b); }
static inline unsigned max(unsigned a, int b) { return max(a, (unsigned)b); }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin(a, b); }
static inline double max(float a, double b) { return fmax(a, b); }
static inline double min(double a, float b) { return fmin(a, b); }
static inline double max(double a, float b) { return fmax(a, b); }

// ----------------------------------------------------------------------------
// device math: CUDA's results, not the C library's. The CUDA C Programming Guide
// (appendix "Mathematical Functions") bounds each function's error in ulps; a GPU's
// result may be anywhere within that bound, and differs from glibc's. So, unless
// SIMT_PERTURB_MATH is 0, each function here returns a result perturbed within its bound,
// chosen by a hash of the argument bits (deterministic: the same argument always gives
// the same result, in every launch and every run). Code that expects device math to
// equal the host's libm bit for bit fails here as it would on a GPU. Exactly
// representable results (expf(0) = 1, logf(1) = 0, infinities, NaN) stay exact. IEEE
// operations (+ - * /, sqrtf, fmaf, the _rn intrinsics) are correctly rounded, as CUDA's.

#ifndef SIMT_PERTURB_MATH
#define SIMT_PERTURB_MATH 1
#endif

namespace simt {
namespace dmath {

// splitmix64 finaliser: the perturbation's hash
static inline uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static inline uint64_t key_f(float x, unsigned fn) { return mix(((uint64_t)fn << 32) | bitcast<uint32_t>(x)); }
static inline uint64_t key_d(double x, unsigned fn) { return mix(bitcast<uint64_t>(x) ^ ((uint64_t)fn << 56)); }

// A float within `ulps` ulps of the exact value d (computed in double, far more precise
// than a float ulp): one of the two floats around d, moved by up to ulps - 1 more ulps,
// never across zero or to infinity.
static inline float near_f(double d, uint64_t h, int ulps) {
    const float f = (float)d;
    if (!SIMT_PERTURB_MATH || d != d || (double)f == d || std::fabs(d) > (double)FLT_MAX) return f;
    float lo = f, hi = f;
    if ((double)f < d) hi = nextafterf(f, INFINITY);
    else lo = nextafterf(f, -INFINITY);
    float r = (h & 1) ? lo : hi;
    if (ulps > 1) {
        const int span = ulps - 1;
        int j = (int)((h >> 1) % (uint64_t)(2 * span + 1)) - span;
        for (; j != 0; j += j > 0 ? -1 : 1) {
            const float n = nextafterf(r, j > 0 ? INFINITY : -INFINITY);
            if (std::isinf(n) || (n > 0.0f) != (r > 0.0f) || n == 0.0f) break;
            r = n;
        }
    }
    return r;
}
// d + e with |e| <= abs_err (from the hash), rounded: the absolute-error bounds of the
// fast intrinsics (__logf on [0.5, 2], __sinf on [-pi, pi], ...)
static inline float near_abs_f(double d, uint64_t h, double abs_err) {
    if (!SIMT_PERTURB_MATH || d != d || std::isinf(d)) return (float)d;
    const double u = (double)(h >> 11) * (1.0 / 9007199254740992.0); // [0, 1)
    return (float)(d + (2.0 * u - 1.0) * abs_err);
}
// A double within 1 ulp of the exact value d (long double: 11 more bits)
static inline double near_d(long double d, uint64_t h) {
    const double f = (double)d;
    if (!SIMT_PERTURB_MATH || d != d || (long double)f == d || std::isinf(f)) return f;
    if ((long double)f < d) return (h & 1) ? f : nextafter(f, INFINITY);
    return (h & 1) ? f : nextafter(f, -INFINITY);
}

// ulp bounds: CUDA C Programming Guide, tables of single and double precision functions
static inline float expf_(float x) { return near_f(::exp((double)x), key_f(x, 1), 2); }
static inline float exp2f_(float x) { return near_f(::exp2((double)x), key_f(x, 2), 2); }
static inline float exp10f_(float x) { return near_f(::pow(10.0, (double)x), key_f(x, 3), 2); }
static inline float expm1f_(float x) { return near_f(::expm1((double)x), key_f(x, 4), 1); }
static inline float logf_(float x) { return near_f(::log((double)x), key_f(x, 5), 1); }
static inline float log2f_(float x) { return near_f(::log2((double)x), key_f(x, 6), 1); }
static inline float log10f_(float x) { return near_f(::log10((double)x), key_f(x, 7), 2); }
static inline float log1pf_(float x) { return near_f(::log1p((double)x), key_f(x, 8), 1); }
static inline float sinf_(float x) { return near_f(::sin((double)x), key_f(x, 9), 2); }
static inline float cosf_(float x) { return near_f(::cos((double)x), key_f(x, 10), 2); }
static inline float tanf_(float x) { return near_f(::tan((double)x), key_f(x, 11), 4); }
static inline float tanhf_(float x) { return near_f(::tanh((double)x), key_f(x, 12), 2); }
static inline float erff_(float x) { return near_f(::erf((double)x), key_f(x, 13), 2); }
static inline float rsqrtf_(float x) { return near_f(1.0 / ::sqrt((double)x), key_f(x, 14), 2); }
static inline float powf_(float x, float y) {
    return near_f(::pow((double)x, (double)y), mix(key_f(x, 15) ^ bitcast<uint32_t>(y)), 4);
}
// double: 1 ulp (exp, exp2, log, log2), 2 ulp (pow)
static inline double exp_(double x) { return near_d(::expl((long double)x), key_d(x, 16)); }
static inline double log_(double x) { return near_d(::logl((long double)x), key_d(x, 17)); }
static inline double exp2_(double x) { return near_d(::exp2l((long double)x), key_d(x, 18)); }
static inline double log2_(double x) { return near_d(::log2l((long double)x), key_d(x, 19)); }
// float arguments pick the float function, as CUDA's overloads do
static inline float exp_(float x) { return expf_(x); }
static inline float log_(float x) { return logf_(x); }
static inline float exp2_(float x) { return exp2f_(x); }
static inline float log2_(float x) { return log2f_(x); }
// the fast intrinsics: larger bounds, some absolute
static inline float fast_expf(float x) {
    return near_f(::exp((double)x), key_f(x, 20), 2 + (int)std::floor(std::fabs(1.173 * (double)x)));
}
static inline float fast_exp10f(float x) {
    return near_f(::pow(10.0, (double)x), key_f(x, 21), 2 + (int)std::floor(std::fabs(2.97 * (double)x)));
}
static inline float fast_logf(float x) {
    if (x >= 0.5f && x <= 2.0f) return near_abs_f(::log((double)x), key_f(x, 22), 0x1p-22);
    return near_f(::log((double)x), key_f(x, 22), 3);
}
static inline float fast_log2f(float x) {
    if (x >= 0.5f && x <= 2.0f) return near_abs_f(::log2((double)x), key_f(x, 23), 0x1p-23);
    return near_f(::log2((double)x), key_f(x, 23), 2);
}
static inline float fast_log10f(float x) {
    if (x >= 0.5f && x <= 2.0f) return near_abs_f(::log10((double)x), key_f(x, 24), 0x1p-25);
    return near_f(::log10((double)x), key_f(x, 24), 3);
}
static inline float fast_sinf(float x) { return near_abs_f(::sin((double)x), key_f(x, 25), 0x1p-22); }
static inline float fast_cosf(float x) { return near_abs_f(::cos((double)x), key_f(x, 26), 0x1p-22); }
static inline float fast_tanf(float x) { return fast_sinf(x) / fast_cosf(x); }
static inline void fast_sincosf(float x, float* s, float* c) {
    *s = fast_sinf(x);
    *c = fast_cosf(x);
}
static inline float fast_powf(float x, float y) { return fast_expf(y * fast_logf(x)); }
static inline float fast_fdividef(float a, float b) {
    return near_f((double)a / (double)b, mix(key_f(a, 27) ^ bitcast<uint32_t>(b)), 2);
}

} // namespace dmath
} // namespace simt

// The names kernels call. Function-like macros: the standard headers above have already
// declared the real functions, and only calls (a name followed by '(') are redirected.
#define expf(x) ::simt::dmath::expf_(x)
#define exp2f(x) ::simt::dmath::exp2f_(x)
#define exp10f(x) ::simt::dmath::exp10f_(x)
#define expm1f(x) ::simt::dmath::expm1f_(x)
#define logf(x) ::simt::dmath::logf_(x)
#define log2f(x) ::simt::dmath::log2f_(x)
#define log10f(x) ::simt::dmath::log10f_(x)
#define log1pf(x) ::simt::dmath::log1pf_(x)
#define sinf(x) ::simt::dmath::sinf_(x)
#define cosf(x) ::simt::dmath::cosf_(x)
#define tanf(x) ::simt::dmath::tanf_(x)
#define tanhf(x) ::simt::dmath::tanhf_(x)
#define erff(x) ::simt::dmath::erff_(x)
#define powf(x, y) ::simt::dmath::powf_(x, y)
#define exp(x) ::simt::dmath::exp_(x)
#define log(x) ::simt::dmath::log_(x)
#define exp2(x) ::simt::dmath::exp2_(x)
#define log2(x) ::simt::dmath::log2_(x)
static inline float rsqrtf(float x) { return ::simt::dmath::rsqrtf_(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// glibc declares these names itself (its internal aliases), so they are macros here
#define __expf(x) ::simt::dmath::fast_expf(x)
#define __exp10f(x) ::simt::dmath::fast_exp10f(x)
#define __logf(x) ::simt::dmath::fast_logf(x)
#define __log2f(x) ::simt::dmath::fast_log2f(x)
#define __log10f(x) ::simt::dmath::fast_log10f(x)
#define __powf(x, y) ::simt::dmath::fast_powf(x, y)
#define __sinf(x) ::simt::dmath::fast_sinf(x)
#define __cosf(x) ::simt::dmath::fast_cosf(x)
#define __sincosf(x, s, c) ::simt::dmath::fast_sincosf(x, s, c)
#define __tanf(x) ::simt::dmath::fast_tanf(x)
#define __fdividef(a, b) ::simt::dmath::fast_fdividef(a, b)
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
static inline int __float_as_int(float x) { return ::simt::bitcast<int>(x); }
static inline float __int_as_float(int x) { return ::simt::bitcast<float>(x); }
static inline unsigned __float_as_uint(float x) { return ::simt::bitcast<unsigned>(x); }
static inline float __uint_as_float(unsigned x) { return ::simt::bitcast<float>(x); }
static inline long long __double_as_longlong(double x) { return ::simt::bitcast<long long>(x); }
static inline double __longlong_as_double(long long x) { return ::simt::bitcast<double>(x); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
static inline unsigned __float2uint_rz(float x) { return (unsigned)x; }
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned x) { return (float)x; }
template <class T> static inline T __ldg(const T* p) { return *p; }

// ----------------------------------------------------------------------------
// atomics: every fiber runs on one OS thread and switches only inside the emulator, so
// a plain read-modify-write is atomic. CUDA's signatures and return values (the old value).

// The race detector (simt.cpp) sees the loads and stores of instrumented kernel code;
// atomics are compiled without that instrumentation (SIMT_NO_RACECHECK), so atomic
// accesses to shared memory never count as races.
#define SIMT_NO_RACECHECK __attribute__((no_sanitize_address, noinline))
#define SIMT_ATOMIC_RMW(name, T, expr)                 \
    SIMT_NO_RACECHECK static inline T name(T* address, T val) { \
        T old = *address;                              \
        *address = (expr);                             \
        return old;                                    \
    }
SIMT_ATOMIC_RMW(atomicAdd, int, old + val)
SIMT_ATOMIC_RMW(atomicAdd, unsigned, old + val)
SIMT_ATOMIC_RMW(atomicAdd, unsigned long long, old + val)
SIMT_ATOMIC_RMW(atomicAdd, float, old + val)
SIMT_ATOMIC_RMW(atomicAdd, double, old + val)
SIMT_ATOMIC_RMW(atomicSub, int, old - val)
SIMT_ATOMIC_RMW(atomicSub, unsigned, old - val)
SIMT_ATOMIC_RMW(atomicExch, int, val)
SIMT_ATOMIC_RMW(atomicExch, unsigned, val)
SIMT_ATOMIC_RMW(atomicExch, unsigned long long, val)
SIMT_ATOMIC_RMW(atomicExch, float, val)
SIMT_ATOMIC_RMW(atomicMax, int, old > val ? old : val)
SIMT_ATOMIC_RMW(atomicMax, unsigned, old > val ? old : val)
SIMT_ATOMIC_RMW(atomicMax, long long, old > val ? old : val)
SIMT_ATOMIC_RMW(atomicMax, unsigned long long, old > val ? old : val)
SIMT_ATOMIC_RMW(atomicMin, int, old < val ? old : val)
SIMT_ATOMIC_RMW(atomicMin, unsigned, old < val ? old : val)
SIMT_ATOMIC_RMW(atomicMin, long long, old < val ? old : val)
SIMT_ATOMIC_RMW(atomicMin, unsigned long long, old < val ? old : val)
SIMT_ATOMIC_RMW(atomicAnd, int, old & val)
SIMT_ATOMIC_RMW(atomicAnd, unsigned, old & val)
SIMT_ATOMIC_RMW(atomicAnd, unsigned long long, old & val)
SIMT_ATOMIC_RMW(atomicOr, int, old | val)
SIMT_ATOMIC_RMW(atomicOr, unsigned, old | val)
SIMT_ATOMIC_RMW(atomicOr, unsigned long long, old | val)
SIMT_ATOMIC_RMW(atomicXor, int, old ^ val)
SIMT_ATOMIC_RMW(atomicXor, unsigned, old ^ val)
SIMT_ATOMIC_RMW(atomicXor, unsigned long long, old ^ val)
SIMT_ATOMIC_RMW(atomicInc, unsigned, old >= val ? 0u : old + 1u)
SIMT_ATOMIC_RMW(atomicDec, unsigned, (old == 0u || old > val) ? val : old - 1u)
#undef SIMT_ATOMIC_RMW
#define SIMT_ATOMIC_CAS(T)                                        \
    SIMT_NO_RACECHECK static inline T atomicCAS(T* address, T compare, T val) { \
        T old = *address;                                         \
        if (old == compare) *address = val;                       \
        return old;                                               \
    }
SIMT_ATOMIC_CAS(int)
SIMT_ATOMIC_CAS(unsigned)
SIMT_ATOMIC_CAS(unsigned long long)
SIMT_ATOMIC_CAS(unsigned short)
#undef SIMT_ATOMIC_CAS

// ----------------------------------------------------------------------------
// bfloat16 (cuda_bf16.h): storage is the upper 16 bits of a float. float -> bf16 rounds
// to nearest, ties to even; NaN becomes the canonical 0x7fff, as in CUDA.

typedef struct __align__(2) {
    unsigned short x;
} __nv_bfloat16_raw;
typedef struct __align__(4) {
    unsigned short x, y;
} __nv_bfloat162_raw;

namespace simt {
static inline unsigned short f32_to_bf16_bits(float f) {
    const uint32_t u = bitcast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float bf16_bits_to_f32(unsigned short b) { return bitcast<float>((uint32_t)b << 16); }
// double -> float rounding toward odd keeps the second rounding (to bf16) correct
static inline unsigned short f64_to_bf16_bits(double d) {
    float f = (float)d;
    uint32_t u = bitcast<uint32_t>(f);
    if (d == d && (double)f != d) {
        if ((d > 0.0 && (double)f > d) || (d < 0.0 && (double)f < d)) u--;
        u |= 1u;
    }
    return f32_to_bf16_bits(bitcast<float>(u));
}
} // namespace simt

struct __align__(2) __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
    __nv_bfloat16(float f) : __x(::simt::f32_to_bf16_bits(f)) {}
    __nv_bfloat16(double d) : __x(::simt::f64_to_bf16_bits(d)) {}
    __nv_bfloat16(int v) : __x(::simt::f64_to_bf16_bits((double)v)) {}
    __nv_bfloat16(unsigned v) : __x(::simt::f64_to_bf16_bits((double)v)) {}
    operator float() const { return ::simt::bf16_bits_to_f32(__x); }
    operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
    __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) { __x = r.x; return *this; }
    __nv_bfloat16& operator=(float f) { __x = ::simt::f32_to_bf16_bits(f); return *this; }
    __nv_bfloat16& operator=(double d) { __x = ::simt::f64_to_bf16_bits(d); return *this; }
};
struct __align__(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
    __nv_bfloat162() = default;
    constexpr __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
    __nv_bfloat162(const __nv_bfloat162_raw& r) { x.__x = r.x; y.__x = r.y; }
    operator __nv_bfloat162_raw() const { return __nv_bfloat162_raw{x.__x, y.__x}; }
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
static inline __nv_bfloat16 __double2bfloat16(double d) { return __nv_bfloat16(d); }
static inline float __bfloat162float(__nv_bfloat16 h) { return ::simt::bf16_bits_to_f32(h.__x); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16(__nv_bfloat16_raw{u}); }
static inline short __bfloat16_as_short(__nv_bfloat16 h) { return (short)h.__x; }
static inline __nv_bfloat16 __short_as_bfloat16(short s) {
    return __nv_bfloat16(__nv_bfloat16_raw{(unsigned short)s});
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162(__nv_bfloat16(a), __nv_bfloat16(b));
}
static inline __nv_bfloat162 __float2bfloat162_rn(float a) { return __floats2bfloat162_rn(a, a); }
static inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
static inline float2 __bfloat1622float2(__nv_bfloat162 h) {
    return make_float2(__bfloat162float(h.x), __bfloat162float(h.y));
}
static inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
static inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 h) { return h.x; }
static inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 h) { return h.y; }
static inline float __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
static inline float __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }
// arithmetic: computed in float, rounded once to bf16 (as CUDA's host fallback)
static inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16((float)a + (float)b); }
static inline __nv_bfloat16 __hsub(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16((float)a - (float)b); }
static inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16((float)a * (float)b); }
static inline __nv_bfloat16 __hdiv(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16((float)a / (float)b); }
static inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __nv_bfloat16(fmaf((float)a, (float)b, (float)c));
}
static inline __nv_bfloat16 __hneg(__nv_bfloat16 a) { return __ushort_as_bfloat16((unsigned short)(a.__x ^ 0x8000u)); }
static inline __nv_bfloat16 __hmax(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16(fmaxf((float)a, (float)b)); }
static inline __nv_bfloat16 __hmin(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16(fminf((float)a, (float)b)); }
static inline __nv_bfloat16 operator+(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hadd(a, b); }
static inline __nv_bfloat16 operator-(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hsub(a, b); }
static inline __nv_bfloat16 operator*(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hmul(a, b); }
static inline __nv_bfloat16 operator/(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hdiv(a, b); }
static inline __nv_bfloat16 operator-(const __nv_bfloat16& a) { return __hneg(a); }
static inline __nv_bfloat16& operator+=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hadd(a, b); }
static inline __nv_bfloat16& operator-=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hsub(a, b); }
static inline __nv_bfloat16& operator*=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hmul(a, b); }
static inline __nv_bfloat16& operator/=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hdiv(a, b); }
static inline bool operator==(const __nv_bfloat16& a, const __nv_bfloat16& b) { return (float)a == (float)b; }
static inline bool operator!=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return (float)a != (float)b; }
static inline bool operator<(const __nv_bfloat16& a, const __nv_bfloat16& b) { return (float)a < (float)b; }
static inline bool operator>(const __nv_bfloat16& a, const __nv_bfloat16& b) { return (float)a > (float)b; }
static inline bool operator<=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return (float)a <= (float)b; }
static inline bool operator>=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return (float)a >= (float)b; }

// ----------------------------------------------------------------------------
// runtime API (cuda_runtime.h subset): device memory is host memory, calls are synchronous

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
    cudaErrorIllegalState = 401,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
// The fields of cudaDeviceProp that host code reads to size launches.
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int maxThreadsPerMultiProcessor;
    int multiProcessorCount;
    int l2CacheSize;
    int major, minor;
};

const char* cudaGetErrorString(cudaError_t err);
const char* cudaGetErrorName(cudaError_t err);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaMalloc(void** ptr, size_t size);
template <class T> static inline cudaError_t cudaMalloc(T** ptr, size_t size) { return cudaMalloc((void**)ptr, size); }
cudaError_t cudaMallocHost(void** ptr, size_t size);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void* ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream = 0);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
// events: wall-clock timestamps (every call is synchronous)
struct CUevent_st;
typedef struct CUevent_st* cudaEvent_t;
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
// graphs: stream capture records launches, async copies and memsets of the captured
// stream; cudaGraphLaunch replays them in order. While a capture is active on this
// thread (modes Global and ThreadLocal), the calls CUDA forbids during capture —
// cudaMalloc/cudaFree (and the Host forms), synchronous cudaMemcpy/cudaMemset,
// cudaDeviceSynchronize, cudaStreamSynchronize, cudaEventSynchronize — fail with
// cudaErrorStreamCaptureUnsupported and invalidate the capture (cudaStreamEndCapture
// then fails with cudaErrorStreamCaptureInvalidated and returns no graph). A kernel
// launched for the first time inside a capture fails the same way (lazy loading, as on
// drivers before 12.3): launch every kernel once before capturing it.
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};
struct CUgraph_st;
typedef struct CUgraph_st* cudaGraph_t;
struct CUgraphExec_st;
typedef struct CUgraphExec_st* cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
// Only cudaFuncAttributeMaxDynamicSharedMemorySize has an effect: as on a GPU, a launch
// with more than 48 KB of dynamic shared memory needs it set to at least that first.
namespace simt {
namespace detail {
void set_max_dynamic_smem(const void* kernel, int bytes);
}
} // namespace simt
template <class F> static inline cudaError_t cudaFuncSetAttribute(F* f, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || value > 227 * 1024) return cudaErrorInvalidValue;
        simt::detail::set_max_dynamic_smem(reinterpret_cast<const void*>(f), value);
    }
    return cudaSuccess;
}
template <class T>
static inline cudaError_t cudaMemcpyToSymbol(T& symbol, const void* src, size_t count, size_t offset = 0,
                                             cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
    std::memcpy((char*)&symbol + offset, src, count);
    return cudaSuccess;
}
template <class T>
static inline cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t count, size_t offset = 0,
                                               cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
    std::memcpy(dst, (const char*)&symbol + offset, count);
    return cudaSuccess;
}
template <class T> static inline cudaError_t cudaGetSymbolAddress(void** ptr, const T& symbol) {
    *ptr = (void*)&symbol;
    return cudaSuccess;
}

#endif // ETX_SIMT_H
