/*
 * gather.cu — a[dst_row0 + i] = a[idx[i]], b[dst_row0 + i] = b[idx[i]] for i < n (gather.h;
 * b may be NULL).
 *
 * Block i copies the two rows of index i, consecutive threads on consecutive floats
 * (coalesced), 16 bytes at a time when width % 4 == 0. Traffic: n * width * 4 * 2 bytes
 * read and as many written. A copy: the destination rows hold the sources' bits exactly,
 * so what is computed from them (the final norm, the LM head) is bit for bit what the
 * source rows would give (batch invariance, docs/design.md §5).
 *
 * Twin: memcpy of the rows; test: tests/kernels/test_layer_kernels.c test_gather_rows
 * (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "gather.h"

#define GATHER_THREADS 256

struct alignas(16) gather_f32x4 {
    float v[4];
};

// block i: index i; VEC: width % 4 == 0, 16-byte accesses
template <bool VEC>
__global__ void gather_rows2_kernel(float* __restrict__ a, float* __restrict__ b, const int32_t* __restrict__ idx,
                                    int dst_row0, int width) {
    ETX_PDL_ENTRY();
    const int i = blockIdx.x;
    const size_t src = (size_t)idx[i] * width, dst = (size_t)(dst_row0 + i) * width;
    if (VEC) {
        for (int k = threadIdx.x; k < width / 4; k += blockDim.x) {
            reinterpret_cast<gather_f32x4*>(a + dst)[k] = reinterpret_cast<const gather_f32x4*>(a + src)[k];
            if (b) reinterpret_cast<gather_f32x4*>(b + dst)[k] = reinterpret_cast<const gather_f32x4*>(b + src)[k];
        }
    } else {
        for (int k = threadIdx.x; k < width; k += blockDim.x) {
            a[dst + k] = a[src + k];
            if (b) b[dst + k] = b[src + k];
        }
    }
}

extern "C" void etx_gather_rows2(float* a, float* b, const int32_t* idx, int n, int dst_row0, int width,
                                 void* stream) {
    if (n <= 0 || width <= 0) return;
    if (width % 4 == 0)
        ETX_LAUNCH(gather_rows2_kernel<true>, n, GATHER_THREADS, 0, (cudaStream_t)stream, a, b, idx, dst_row0, width);
    else
        ETX_LAUNCH(gather_rows2_kernel<false>, n, GATHER_THREADS, 0, (cudaStream_t)stream, a, b, idx, dst_row0, width);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_gather_rows2_cost(int n, int width) {
    EtxCost c = {(double)n * width * 4 * 4, 0, (double)n, (double)n, 1, 0, 0, 0, 0};
    return c;
}
