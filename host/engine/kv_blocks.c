/*
 * kv_blocks.c — the paged KV cache's block allocator (a free stack plus reference
 * counts) and per-sequence block tables with fork, copy-on-write and truncation.
 * See kv_blocks.h for the contract and the invariants.
 */
#include "engine/kv_blocks.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "common.h"

// ----------------------------------------------------------------------------
// block manager

etx_status build_block_manager(BlockManager* bm, int n_blocks, int block_size) {
    memset(bm, 0, sizeof *bm);
    if (n_blocks < 1)
        return etx_error(ETX_ERR_INVALID_ARG, "kv blocks: n_blocks must be at least 1 (got %d)", n_blocks);
    if (block_size < 1)
        return etx_error(ETX_ERR_INVALID_ARG, "kv blocks: block_size must be at least 1 (got %d)", block_size);
    int* refcount = calloc((size_t)n_blocks, sizeof(int));
    int* free_ids = malloc((size_t)n_blocks * sizeof(int));
    if (!refcount || !free_ids) {
        free(refcount), free(free_ids);
        return etx_error(ETX_ERR_NOMEM, "kv blocks: out of memory for the bookkeeping of %d blocks", n_blocks);
    }
    // the top of the stack is the end of the array: lowest id there, so ids come out in order
    for (int i = 0; i < n_blocks; i++) free_ids[i] = n_blocks - 1 - i;
    bm->n_blocks = n_blocks;
    bm->block_size = block_size;
    bm->refcount = refcount;
    bm->free_ids = free_ids;
    bm->n_free = n_blocks;
    return etx_ok();
}

void free_block_manager(BlockManager* bm) {
    free(bm->refcount);
    free(bm->free_ids);
    memset(bm, 0, sizeof *bm);
}

int block_alloc(BlockManager* bm) {
    if (bm->n_free == 0) return -1;
    int id = bm->free_ids[--bm->n_free];
    ETX_ASSERT(id >= 0 && id < bm->n_blocks && bm->refcount[id] == 0);
    bm->refcount[id] = 1;
    return id;
}

void block_ref(BlockManager* bm, int id) {
    ETX_ASSERT(id >= 0 && id < bm->n_blocks && bm->refcount[id] > 0 && bm->refcount[id] < INT_MAX);
    bm->refcount[id]++;
}

void block_unref(BlockManager* bm, int id) {
    ETX_ASSERT(id >= 0 && id < bm->n_blocks && bm->refcount[id] > 0);
    if (--bm->refcount[id] == 0) {
        ETX_ASSERT(bm->n_free < bm->n_blocks);
        bm->free_ids[bm->n_free++] = id;
    }
}

int block_manager_used(const BlockManager* bm) { return bm->n_blocks - bm->n_free; }

// ----------------------------------------------------------------------------
// block tables

// Blocks needed to hold n_pos positions.
static long long blocks_for(const BlockManager* bm, long long n_pos) {
    return (n_pos + bm->block_size - 1) / bm->block_size;
}

// A table holds at least the blocks of its written positions, all allocated.
static void table_check(const BlockManager* bm, const BlockTable* t) {
    ETX_ASSERT(t->n_pos >= 0 && t->n_ids >= blocks_for(bm, t->n_pos) && t->n_ids <= t->cap);
}

static void table_reserve(BlockTable* t, int n_ids) {
    if (n_ids <= t->cap) return;
    long long cap = 2LL * t->cap;
    if (cap < n_ids) cap = n_ids;
    if (cap < 4) cap = 4;
    if (cap > INT_MAX) cap = INT_MAX;
    t->ids = xrealloc(t->ids, (size_t)cap * sizeof(int));
    t->cap = (int)cap;
}

void block_table_init(BlockTable* t) { memset(t, 0, sizeof *t); }

void block_table_release(BlockManager* bm, BlockTable* t) {
    for (int i = t->n_ids - 1; i >= 0; i--) block_unref(bm, t->ids[i]);
    free(t->ids);
    block_table_init(t);
}

// What appending n_new (> 0) positions takes: blocks to add at the end, and whether the
// block of the first new position must be copied first.
static void append_plan(const BlockManager* bm, const BlockTable* t, int n_new, long long* n_add, int* cow) {
    int first = t->n_pos / bm->block_size;  // block of position n_pos
    // the block exists (the last one is partial, or was prepared before) and is shared
    *cow = first < t->n_ids && bm->refcount[t->ids[first]] > 1;
    long long want = blocks_for(bm, (long long)t->n_pos + n_new);
    *n_add = want > t->n_ids ? want - t->n_ids : 0;
}

int block_table_blocks_needed(const BlockManager* bm, const BlockTable* t, int n_new) {
    if (n_new <= 0) return 0;
    long long n_add;
    int cow;
    append_plan(bm, t, n_new, &n_add, &cow);
    return n_add + cow > INT_MAX ? INT_MAX : (int)(n_add + cow);
}

etx_status block_table_prepare(BlockManager* bm, BlockTable* t, int n_new, BlockCopy* copy, int* n_copies) {
    if (!copy || !n_copies) return etx_error(ETX_ERR_INVALID_ARG, "kv blocks: prepare needs copy and n_copies");
    *n_copies = 0;
    if (n_new < 0) return etx_error(ETX_ERR_INVALID_ARG, "kv blocks: cannot append %d positions", n_new);
    if (n_new > INT_MAX - t->n_pos)
        return etx_error(ETX_ERR_INVALID_ARG, "kv blocks: %d positions after %d exceed %d", n_new, t->n_pos,
                         INT_MAX);
    table_check(bm, t);
    if (n_new == 0) return etx_ok();

    long long n_add;
    int cow;
    append_plan(bm, t, n_new, &n_add, &cow);  // n_add fits an int: n_pos + n_new <= INT_MAX
    if (n_add + cow > bm->n_free)
        return etx_error(ETX_ERR_NOMEM,
                         "kv blocks: appending %d positions after %d needs %d blocks (%d new, %d copy-on-write), "
                         "%d of %d are free",
                         n_new, t->n_pos, (int)n_add + cow, (int)n_add, cow, bm->n_free, bm->n_blocks);

    int first = t->n_pos / bm->block_size;
    // blocks after the one holding position n_pos were prepared by this table, never shared
    for (int i = first + 1; i < t->n_ids; i++) ETX_ASSERT(bm->refcount[t->ids[i]] == 1);
    if (cow) {
        int old = t->ids[first], fresh = block_alloc(bm);
        ETX_ASSERT(fresh >= 0);
        copy->src = old;
        copy->dst = fresh;
        *n_copies = 1;
        t->ids[first] = fresh;
        block_unref(bm, old);  // still held by another table: refcount was > 1
    }
    table_reserve(t, t->n_ids + (int)n_add);
    for (int i = 0; i < n_add; i++) {
        int id = block_alloc(bm);
        ETX_ASSERT(id >= 0);
        t->ids[t->n_ids++] = id;
    }
    return etx_ok();
}

void block_table_commit(BlockTable* t, int n_new) {
    ETX_ASSERT(n_new >= 0 && n_new <= INT_MAX - t->n_pos);
    ETX_ASSERT(n_new == 0 || t->n_ids > 0);
    t->n_pos += n_new;
}

void block_table_append_shared(BlockManager* bm, BlockTable* t, const int* ids, int n) {
    table_check(bm, t);
    ETX_ASSERT(n >= 0 && t->n_pos % bm->block_size == 0 && t->n_ids == t->n_pos / bm->block_size);
    table_reserve(t, t->n_ids + n);
    for (int i = 0; i < n; i++) {
        block_ref(bm, ids[i]);
        t->ids[t->n_ids++] = ids[i];
    }
    t->n_pos += n * bm->block_size;
}

void block_table_fork(BlockManager* bm, const BlockTable* src, BlockTable* dst) {
    ETX_ASSERT(src != dst && dst->n_ids == 0 && dst->n_pos == 0);
    table_check(bm, src);
    int n = (int)blocks_for(bm, src->n_pos);
    table_reserve(dst, n);
    for (int i = 0; i < n; i++) {
        block_ref(bm, src->ids[i]);
        dst->ids[i] = src->ids[i];
    }
    dst->n_ids = n;
    dst->n_pos = src->n_pos;
}

void block_table_truncate(BlockManager* bm, BlockTable* t, int n_pos) {
    ETX_ASSERT(n_pos >= 0 && n_pos <= t->n_pos);
    table_check(bm, t);
    int keep = (int)blocks_for(bm, n_pos);
    for (int i = t->n_ids - 1; i >= keep; i--) block_unref(bm, t->ids[i]);
    t->n_ids = keep;
    t->n_pos = n_pos;
}

int kv_blocks_auto(int ctx, int block_size, int max_batch, double budget_bytes, double block_bytes) {
    const double per_ctx = (double)((ctx + block_size - 1) / block_size);
    double blocks = per_ctx * max_batch;
    const double cap = block_bytes > 0 && budget_bytes > 0 ? floor(budget_bytes / block_bytes) : 0;
    if (cap < blocks) blocks = cap;
    if (blocks < 2 * per_ctx) blocks = 2 * per_ctx;
    return blocks > INT_MAX ? INT_MAX : (int)blocks;
}
