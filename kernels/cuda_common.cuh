/*
 * cuda_common.cuh — what every kernel file includes first: the CUDA runtime (nvcc) or
 * the SIMT emulator (ETX_SIMT, tests/simt/simt.h), an error check that names the call,
 * file and line, and one launch macro that works in both.
 *
 *     ETX_LAUNCH(my_kernel, grid, block, smem_bytes, stream, arg1, arg2, ...);
 *
 * nvcc: cudaLaunchKernelEx of my_kernel(args...) on the stream, with programmatic
 * dependent launch (PDL) allowed on sm_90 and later (below). Emulator: the blocks run on
 * the calling thread (in a seeded random order, a few interleaved), the threads of a
 * block as fibers; on a stream being captured the launch is recorded into the graph. A
 * template kernel with several parameters needs parentheses or an alias, since the macro
 * splits on commas: ETX_LAUNCH((my_kernel<64, float>), ...).
 *
 * Programmatic dependent launch. Every kernel launched with ETX_LAUNCH begins with
 *
 *     ETX_PDL_ENTRY();   // first statement: nothing before it reads or writes device memory
 *
 * (one exception: loads from allocations marked read-only, etx_dev_mark_readonly — model
 * weights, which no kernel writes — may come before it; gemm_tc_kernel prefetches its
 * first weights there)
 * which waits until the grid launched before it on the stream has finished and its writes
 * are visible (griddepcontrol.wait), then lets the next grid be launched
 * (griddepcontrol.launch_dependents). With PDL allowed, the hardware launches a kernel
 * once every block of the previous one has started, so its launch and block setup overlap
 * the previous kernel's last wave instead of following it (about one launch gap per
 * kernel node of a decode step's graph; the cost model's `pdl_launch_s`). The cost of
 * forgetting the entry is a data race on real hardware, so the emulator makes it an
 * error: a thread of an ETX_LAUNCH kernel that returns without ETX_PDL_ENTRY, or that
 * loads or stores device memory (a cudaMalloc allocation) before it, other than a load
 * from read-only memory, aborts the launch
 * with the kernel's name (tests/simt/simt.cpp, "grid dependencies"; the loads and stores
 * are seen in the kernel files the race detector instruments, which CMakeLists.txt makes
 * every kernel file). ETX_PDL=0 in the environment launches without the attribute (then
 * ETX_PDL_ENTRY does nothing): the A/B switch of benchmarks/gpu_check.sh.
 */
#ifndef ETX_CUDA_COMMON_CUH
#define ETX_CUDA_COMMON_CUH

#include <stdio.h>
#include <stdlib.h>

#ifdef ETX_SIMT
#include "simt.h"
// The arguments are evaluated at the launch and kept by value (a launch recorded by
// stream capture runs later, at cudaGraphLaunch, with the values of the launch, as on a
// GPU); the kernel's address identifies it for the lazy-loading rule.
#define ETX_LAUNCH(kernel, grid, block, smem, stream, ...)                                                       \
    simt::launch_kernel((grid), (block), (smem), (cudaStream_t)(stream), &kernel, #kernel, __VA_ARGS__)
#define ETX_PDL_ENTRY() simt::grid_dependency_entry()
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <utility>

// 1 when launches on the current device may use programmatic dependent launch: sm_90 or
// later and ETX_PDL is not 0 (kernels/device.cu).
extern "C" int etx_dev_pdl_enabled(void);

// The launch behind ETX_LAUNCH: the kernel's parameters converted as <<<>>> converts
// them (cudaLaunchKernelEx's template), errors left for CUDA_CHECK_LAUNCH
// (cudaGetLastError) as with <<<>>>.
template <typename... Params, typename... Args>
static inline void etx_launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                                     cudaStream_t stream, Args&&... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = etx_dev_pdl_enabled() ? 1 : 0;
    (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}
#define ETX_LAUNCH(kernel, grid, block, smem, stream, ...) \
    etx_launch_kernel(kernel, dim3(grid), dim3(block), (size_t)(smem), (cudaStream_t)(stream), __VA_ARGS__)

// griddepcontrol is PTX ISA 7.8, sm_90; on older targets (and without PDL) the kernel
// simply starts after the previous one, as always.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define ETX_PDL_ENTRY() asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;" ::: "memory")
#else
#define ETX_PDL_ENTRY() ((void)0)
#endif
#endif

#ifndef ETX_SIMT
// Dynamic shared memory (the launch's smem bytes, 16-byte aligned), inside a kernel:
//     ETX_DYNAMIC_SMEM(float, buf);   // float* buf
// One byte array for every kernel, so kernels of different element types don't clash;
// the emulator defines the same macro in tests/simt/simt.h.
#define ETX_DYNAMIC_SMEM(type, name)                              \
    extern __shared__ __align__(16) unsigned char etx_dyn_smem_[]; \
    type* name = reinterpret_cast<type*>(etx_dyn_smem_)
#endif

// Checks a runtime call (kernel launches, copies, frees): its failure means a bug or a dead
// device, so outside a graph capture it aborts with the call, file and line (the host side
// turns recoverable errors, such as out of memory, into etx_status before they reach
// here). Inside a capture (etx_dev_capture_begin .. _end, kernels/device.h) the failure
// is the capture's instead: etx_dev_note_error records the first one, the capture ends
// with no graph and the caller runs without it, so a failure there — a kernel that lazy
// loading cannot load while capturing, cuBLAS refusing to be captured — never exits.
extern "C" int etx_dev_note_error(const char* what, const char* file, int line, const char* why);
#define CUDA_CHECK(call)                                                                      \
    do {                                                                                      \
        cudaError_t err_ = (call);                                                            \
        if (err_ != cudaSuccess && !etx_dev_note_error(#call, __FILE__, __LINE__,              \
                                                       cudaGetErrorString(err_))) {            \
            fprintf(stderr, "[CUDA ERROR] %s at %s:%d: %s\n", #call, __FILE__, __LINE__,       \
                    cudaGetErrorString(err_));                                                \
            exit(EXIT_FAILURE);                                                               \
        }                                                                                     \
    } while (0)

// Checks the last launch (asynchronous errors surface at the next synchronisation).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

static inline int etx_ceil_div(int a, int b) { return (a + b - 1) / b; }

// Asks L2 to fetch [p, p + bytes) from DRAM (p 16-byte aligned, bytes a multiple of 16,
// read-only memory), returning nothing to the SM: the weights of a projection a few
// launches ahead, requested by a kernel whose own loads leave DRAM idle (a small
// projection at batch 1 waits mostly on latency), so that projection later reads them
// from L2. Called by every thread of the block (the pieces spread over them).
// sm_90: cp.async.bulk.prefetch.L2 (the TMA unit's prefetch: no registers, no load
// slots of the issuing warps), 16 KB a piece; sm_80-89: prefetch.global.L2, a 128-byte
// line a piece; the emulator checks the range (simt::detail::check_l2_prefetch).
#define ETX_L2_PIECE (16 * 1024)
// bytes < 2^32 (a block's share); blockDim.y == 1.
static __device__ __forceinline__ void etx_l2_prefetch(const char* p, unsigned bytes) {
    if (bytes == 0) return;
#ifdef ETX_SIMT
    if (threadIdx.x == 0) simt::detail::check_l2_prefetch(p, (size_t)bytes);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    for (unsigned off = threadIdx.x * ETX_L2_PIECE; off < bytes; off += blockDim.x * ETX_L2_PIECE) {
        const unsigned n = bytes - off < ETX_L2_PIECE ? bytes - off : ETX_L2_PIECE;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + off), "r"(n) : "memory");
    }
#elif defined(__CUDA_ARCH__)
    for (unsigned off = threadIdx.x * 128; off < bytes; off += blockDim.x * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off) : "memory");
#endif
}

// A GEMM epilogue's f32 output: stored, or (acc_y) added to what is there — y + s, one
// rounding: the residual stream taking a projection (etx_gemm_bf16_add), the same bits
// as the norm kernel's residual add x + delta had when the projection wrote delta.
// With a per-column bias added to a stored sum (bias: NULL, or (out) f32; column o):
// s + bias[o], one f32 addition,
// the bits a separate bias add after the store gives (qkv_prep.cu's qkv += bias: Qwen2's
// Q/K/V biases in the QKV projection's epilogue). Never with acc_y.
static __device__ __forceinline__ void etx_gemm_out(float* p, float s, int acc_y, const float* bias, int o) {
    if (acc_y) *p += s;
    else *p = bias ? s + bias[o] : s;
}

#endif // ETX_CUDA_COMMON_CUH
