/*
 * reduce.cuh — the warp and block reductions the kernels share, in one place so that
 * every kernel sums in the same, stated order (the kernel tests compare some results
 * bit for bit, and batch invariance needs an order that does not depend on the data).
 *
 *   etx_warp_sum(v), etx_warp_max(v): xor butterfly over the 32 lanes of a full warp,
 *     offsets 16, 8, 4, 2, 1; every lane gets the result (the same bits in every lane:
 *     each step combines the same pair of values on both sides). float or double.
 *   etx_block_sum(v, red): etx_warp_sum in every warp, then every thread adds the warps'
 *     sums in warp order from `red` (32 floats of shared memory); blockDim.x a multiple
 *     of 32. Two barriers; `red` may be reused after it returns.
 *   etx_block_tree<N>(combine): the shared-memory tree over N (a power of two) slots the
 *     caller filled (then a barrier): for half = N/2 .. 1, thread t < half calls
 *     combine(dst = t, src = t + half), slot t absorbing slot t + half, a barrier after
 *     each level; the result is in slot 0. combine works on the caller's arrays, so a
 *     slot may be of any type or span several arrays (a structure of arrays).
 *     blockDim.x >= N/2.
 *
 * All of it is CUDA the SIMT emulator provides (kernels/README.md): full-mask
 * __shfl_xor_sync, __syncthreads reached by every thread of the block.
 */
#ifndef ETX_REDUCE_CUH
#define ETX_REDUCE_CUH

#include "cuda_common.cuh"

template <typename T>
__device__ __forceinline__ T etx_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float etx_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float etx_block_sum(float v, float* red) {
    v = etx_warp_sum(v);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = (blockDim.x + 31) / 32;
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < n_warps; w++) s += red[w];
    __syncthreads(); // red may be reused by the caller
    return s;
}

template <int N, typename Combine>
__device__ __forceinline__ void etx_block_tree(Combine combine) {
    const int t = threadIdx.x;
    for (int half = N / 2; half > 0; half >>= 1) {
        if (t < half) combine(t, t + half);
        __syncthreads();
    }
}

#endif // ETX_REDUCE_CUH
