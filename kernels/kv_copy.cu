/*
 * kv_copy.cu — pools[p][dst_i] = pools[p][src_i], whole blocks, for every pool p and
 * copy i (kv_copy.h).
 *
 * Block (p, i) of the grid copies block src_i of pool p into block dst_i: consecutive
 * threads on consecutive 16-byte words (8 bf16), coalesced, when block_elems % 8 == 0
 * (every etx cache block: block_size x n_kv_heads x hdp, hdp 64 or 128), else one bf16
 * per thread. Traffic: n x n_pools x block_elems x 2 bytes read and as many written; at
 * 3 TB/s a Llama-3.2-1B block (64 positions x 512 values, 32 pools) takes ~1.4 us of
 * bandwidth for the 2 MB it moves, where the 32 device copies it replaces each cost a
 * launch. A copy: the destination holds the source's bits, so attention over it gives
 * what the shared block gave (batch invariance: docs/design.md §5).
 *
 * Twin: memcpy of the blocks; test: tests/kernels/test_layer_kernels.c
 * test_kv_copy_blocks (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "kv_copy.h"

#define KV_COPY_THREADS 256

struct alignas(16) kv_copy_word {
    uint32_t v[4];
};

// block (p, i): pool p (blockIdx.x), copy i (blockIdx.y); VEC: block_elems % 8 == 0
template <bool VEC>
__global__ void kv_copy_blocks_kernel(etx_bf16* const* __restrict__ pools, const int32_t* __restrict__ pairs,
                                      size_t block_elems) {
    ETX_PDL_ENTRY();
    etx_bf16* pool = pools[blockIdx.x];
    const int i = blockIdx.y;
    const etx_bf16* src = pool + (size_t)pairs[2 * i] * block_elems;
    etx_bf16* dst = pool + (size_t)pairs[2 * i + 1] * block_elems;
    if (VEC) {
        const size_t words = block_elems / 8;
        for (size_t k = threadIdx.x; k < words; k += blockDim.x)
            reinterpret_cast<kv_copy_word*>(dst)[k] = reinterpret_cast<const kv_copy_word*>(src)[k];
    } else {
        for (size_t k = threadIdx.x; k < block_elems; k += blockDim.x) dst[k] = src[k];
    }
}

extern "C" void etx_kv_copy_blocks(etx_bf16* const* pools, int n_pools, const int32_t* pairs, int n,
                                   size_t block_elems, void* stream) {
    if (n <= 0 || n_pools <= 0 || block_elems == 0) return;
    const dim3 grid((unsigned)n_pools, (unsigned)n);
    if (block_elems % 8 == 0)
        ETX_LAUNCH(kv_copy_blocks_kernel<true>, grid, KV_COPY_THREADS, 0, (cudaStream_t)stream, pools, pairs,
                   block_elems);
    else
        ETX_LAUNCH(kv_copy_blocks_kernel<false>, grid, KV_COPY_THREADS, 0, (cudaStream_t)stream, pools, pairs,
                   block_elems);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_kv_copy_blocks_cost(int n, int n_pools, size_t block_elems) {
    const double ctas = (double)n * n_pools;
    EtxCost c = {ctas * (double)block_elems * 2 * 2, 0, ctas, ctas, 1, 0, 0, 0, 0};
    return c;
}
