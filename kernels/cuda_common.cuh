/*
 * cuda_common.cuh — what every kernel file includes first: the CUDA runtime (nvcc) or
 * the SIMT emulator (ETX_SIMT, tests/simt/simt.h), an error check that names the call,
 * file and line, and one launch macro that works in both.
 *
 *     ETX_LAUNCH(my_kernel, grid, block, smem_bytes, stream, arg1, arg2, ...);
 *
 * nvcc: my_kernel<<<grid, block, smem_bytes, stream>>>(args...). Emulator: the blocks
 * run on the calling thread (in a seeded random order, a few interleaved), the threads of
 * a block as fibers; on a stream being captured the launch is recorded into the graph. A
 * template kernel with several parameters needs parentheses or an alias, since the macro
 * splits on commas: ETX_LAUNCH((my_kernel<64, float>), ...).
 */
#ifndef ETX_CUDA_COMMON_CUH
#define ETX_CUDA_COMMON_CUH

#include <stdio.h>
#include <stdlib.h>

#ifdef ETX_SIMT
#include "simt.h"
// The arguments are captured by value (a launch recorded by stream capture runs later,
// at cudaGraphLaunch); the kernel's address identifies it for the lazy-loading rule.
#define ETX_LAUNCH(kernel, grid, block, smem, stream, ...)                                          \
    simt::launch((grid), (block), (smem), (cudaStream_t)(stream), reinterpret_cast<const void*>(&kernel), \
                 [=]() { kernel(__VA_ARGS__); })
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define ETX_LAUNCH(kernel, grid, block, smem, stream, ...) \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
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

#endif // ETX_CUDA_COMMON_CUH
