/*
 * kv_pool.c — float32 K/V block pools of the CPU backend: building them (checked
 * allocation, one buffer per layer and pool), block copies, and position -> row lookup
 * through a block table.
 */
#include "cpu/kv_pool.h"

#include <stdint.h>
#include <string.h>

#include "common.h"

// a * b into *out; 0 when it overflows size_t
static int mul_ok(size_t a, size_t b, size_t* out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

size_t kv_pool_bytes_per_block(int n_layers, int kv_dim, int block_size) {
    if (n_layers < 1 || kv_dim < 1 || block_size < 1) return 0;
    size_t n = 2 * sizeof(float);
    if (!mul_ok(n, (size_t)n_layers, &n) || !mul_ok(n, (size_t)kv_dim, &n) || !mul_ok(n, (size_t)block_size, &n))
        return SIZE_MAX;
    return n;
}

etx_status build_kv_pool(KVPool* p, int n_layers, int kv_dim, int n_blocks, int block_size) {
    memset(p, 0, sizeof *p);
    if (n_layers < 1 || kv_dim < 1 || n_blocks < 1 || block_size < 1)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "kv pool: n_layers, kv_dim, n_blocks and block_size must be at least 1 (got %d, %d, %d, %d)",
                         n_layers, kv_dim, n_blocks, block_size);
    size_t floats, bytes;  // per layer and pool
    if (!mul_ok((size_t)n_blocks, (size_t)block_size, &floats) || !mul_ok(floats, (size_t)kv_dim, &floats) ||
        !mul_ok(floats, sizeof(float), &bytes))
        return etx_error(ETX_ERR_NOMEM, "kv pool: %d blocks of %d positions x %d floats overflow the address space",
                         n_blocks, block_size, kv_dim);
    p->n_layers = n_layers;
    p->kv_dim = kv_dim;
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->k = xcalloc((size_t)n_layers, sizeof(float*));
    p->v = xcalloc((size_t)n_layers, sizeof(float*));
    for (int l = 0; l < n_layers; l++) {
        p->k[l] = calloc(floats, sizeof(float));
        p->v[l] = p->k[l] ? calloc(floats, sizeof(float)) : NULL;
        if (!p->v[l]) {
            const char* which = p->k[l] ? "V" : "K";
            free_kv_pool(p);
            return etx_error(ETX_ERR_NOMEM,
                             "kv pool: out of memory for layer %d %s (%d blocks of %d positions x %d floats, %zu MiB)",
                             l, which, n_blocks, block_size, kv_dim, bytes >> 20);
        }
    }
    return etx_ok();
}

void free_kv_pool(KVPool* p) {
    for (int l = 0; l < p->n_layers; l++) {
        if (p->k) free(p->k[l]);
        if (p->v) free(p->v[l]);
    }
    free(p->k);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void kv_pool_copy_block(KVPool* p, int src, int dst) {
    ETX_ASSERT(src >= 0 && src < p->n_blocks && dst >= 0 && dst < p->n_blocks);
    if (src == dst) return;
    size_t n = (size_t)p->block_size * p->kv_dim;  // floats per block
    for (int l = 0; l < p->n_layers; l++) {
        memcpy(p->k[l] + (size_t)dst * n, p->k[l] + (size_t)src * n, n * sizeof(float));
        memcpy(p->v[l] + (size_t)dst * n, p->v[l] + (size_t)src * n, n * sizeof(float));
    }
}

// Offset in floats of position pos's row within one layer's pool.
static size_t row_offset(const KVPool* p, int layer, const BlockTable* t, int pos) {
    ETX_ASSERT(layer >= 0 && layer < p->n_layers);
    ETX_ASSERT(pos >= 0 && pos / p->block_size < t->n_ids);
    int id = t->ids[pos / p->block_size];
    ETX_ASSERT(id >= 0 && id < p->n_blocks);
    return ((size_t)id * p->block_size + (size_t)(pos % p->block_size)) * p->kv_dim;
}

float* kv_pool_k_row(const KVPool* p, int layer, const BlockTable* t, int pos) {
    size_t off = row_offset(p, layer, t, pos);  // checks layer before p->k[layer] is read
    return p->k[layer] + off;
}

float* kv_pool_v_row(const KVPool* p, int layer, const BlockTable* t, int pos) {
    size_t off = row_offset(p, layer, t, pos);
    return p->v[layer] + off;
}
