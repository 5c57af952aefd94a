/*
 * async_copy.cuh — cp.async (sm_80+): 16 bytes from global to shared memory without a
 * register round trip, in commit groups a thread waits for; what lets a kernel load the
 * next stage of its operands while it computes on the current one (gemm_tc.cu's tiled
 * kernel). Under the emulator a copy lands only when its group is waited for
 * (tests/simt/simt.h, cp_async16), so a stage read too early is wrong there too.
 */
#ifndef ETX_KERNELS_ASYNC_COPY_CUH
#define ETX_KERNELS_ASYNC_COPY_CUH

#include "cuda_common.cuh"

// Copies src_bytes (0 or 16) of src to the 16-byte-aligned dst, zero-filling the rest.
// src must be a valid address even when src_bytes is 0.
static __device__ __forceinline__ void etx_cp_async16(void* dst_smem, const void* src, int src_bytes) {
#ifdef ETX_SIMT
    simt::cp_async16(dst_smem, src, src_bytes);
#else
    const unsigned dst = (unsigned)__cvta_generic_to_shared(dst_smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
#endif
}

// Closes the thread's current group of copies.
static __device__ __forceinline__ void etx_cp_async_commit() {
#ifdef ETX_SIMT
    simt::cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most N of the thread's most recent committed groups are still in flight.
template <int N> static __device__ __forceinline__ void etx_cp_async_wait() {
#ifdef ETX_SIMT
    simt::cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

#endif // ETX_KERNELS_ASYNC_COPY_CUH
