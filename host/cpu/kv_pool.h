/*
 * kv_pool.h — the CPU backend's storage for the paged KV cache: per layer one K pool and
 * one V pool of n_blocks blocks, each block block_size rows of kv_dim floats (the layout
 * of kernels/README.md "Paged KV cache", in float32). Which block holds which position of
 * a sequence is the business of its BlockTable (kv_blocks.h); this module only stores
 * rows, copies whole blocks (copy-on-write) and finds the row of a position.
 */
#ifndef ETX_KV_POOL_H
#define ETX_KV_POOL_H

#include <stddef.h>

#include "etx/etx.h"
#include "engine/kv_blocks.h"

typedef struct {
    int n_layers, kv_dim, n_blocks, block_size;
    float** k;   // (n_layers) each (n_blocks, block_size, kv_dim)
    float** v;   // (n_layers) each (n_blocks, block_size, kv_dim)
} KVPool;

// Every argument >= 1 (ETX_ERR_INVALID_ARG otherwise). Storage is zeroed. A pool whose
// size overflows size_t, or that cannot be allocated, is ETX_ERR_NOMEM with a message
// naming the layer, K or V, and the size; nothing stays allocated then.
etx_status build_kv_pool(KVPool* p, int n_layers, int kv_dim, int n_blocks, int block_size);
void free_kv_pool(KVPool* p);

// Copies block src into block dst, every layer, K and V: block_size * kv_dim floats per
// layer and pool, read once and written once (2 * bytes_per_block of traffic in all).
void kv_pool_copy_block(KVPool* p, int src, int dst);

// The kv_dim floats of position pos of table t in layer `layer`: block t->ids[pos /
// block_size], row pos % block_size. pos must lie in a block the table holds (written, or
// prepared by block_table_prepare).
float* kv_pool_k_row(const KVPool* p, int layer, const BlockTable* t, int pos);
float* kv_pool_v_row(const KVPool* p, int layer, const BlockTable* t, int pos);

// Bytes one block takes over all layers, K and V: 2 * n_layers * block_size * kv_dim *
// sizeof(float). 0 when an argument is below 1, SIZE_MAX when the product overflows.
size_t kv_pool_bytes_per_block(int n_layers, int kv_dim, int block_size);

#endif // ETX_KV_POOL_H
