/*
 * kv_copy.h — the copy-on-write block copies of the CUDA backend's K/V cache
 * (kernels/kv_copy.cu): when a sequence is about to write into a block it shares (a
 * forked sample's partial last block, a cached prompt chunk), the block manager gives it
 * a fresh block and asks for the shared one's contents to be copied there first. Every
 * layer's K and V pool gets the same copies; one launch does them all, where the backend
 * used to issue 2 x n_layers device copies per block.
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_KV_COPY_H
#define ETX_KERNELS_KV_COPY_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h" // etx_bf16 (hostdev/)
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// For every pool p < n_pools and copy i < n: pools[p][dst_i * block_elems + e] =
// pools[p][src_i * block_elems + e] for e < block_elems, where pairs = (src_0, dst_0,
// src_1, dst_1, ...) (device, 2n entries). pools: device array of n_pools pool pointers.
// The copies run in parallel, so no dst may be another copy's src or dst (the block
// manager's copies always go into fresh, distinct blocks: kv_blocks.h).
void etx_kv_copy_blocks(etx_bf16* const* pools, int n_pools, const int32_t* pairs, int n, size_t block_elems,
                        void* stream);

// The napkin math of etx_kv_copy_blocks (cost.h): every block read once and written once.
EtxCost etx_kv_copy_blocks_cost(int n, int n_pools, size_t block_elems);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_KV_COPY_H
