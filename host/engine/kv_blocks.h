/*
 * kv_blocks.h — the bookkeeping of the paged KV cache: which fixed-size blocks of the
 * pool are in use (BlockManager, a reference-counted allocator), and which blocks hold
 * the positions of one sequence (BlockTable). No keys or values live here: the CPU
 * storage is host/cpu/kv_pool.h, the CUDA backend keeps its own pools with the same layout,
 * and both follow the tables built here.
 *
 * Sharing: block_table_fork gives a second table the same blocks (one more reference
 * each), so sequences branching from a common prefix (best-of-N, entropix branching)
 * store the prefix once. A shared block is never written: block_table_prepare replaces a
 * shared, partially filled last block with a private copy (copy-on-write) and reports the
 * copy, which the backend performs before it writes the new positions. Full shared
 * blocks are never copied; they stay shared until every table lets go of them.
 *
 * One append, as the engine does it:
 *     BlockCopy cp; int n_cp;
 *     ETX_TRY(block_table_prepare(&bm, &t, n_new, &cp, &n_cp));   // may fail: ETX_ERR_NOMEM
 *     if (n_cp) kv_pool_copy_block(&pool, cp.src, cp.dst);          // every copy of the step first
 *     ... write positions t.n_pos .. t.n_pos + n_new - 1 (kv_pool_k_row / kv_pool_v_row) ...
 *     block_table_commit(&t, n_new);
 *
 * Invariants (checked by tests/engine/test_kv_blocks.c): a block's refcount is the number of
 * table slots (plus any block_ref the caller holds) naming it; n_free plus the number of
 * allocated blocks is n_blocks; the free stack holds each free block exactly once; a table
 * holds ceil(n_pos / block_size) blocks, plus the blocks prepared but not yet committed.
 */
#ifndef ETX_KV_BLOCKS_H
#define ETX_KV_BLOCKS_H

#include "etx/etx.h"

// ----------------------------------------------------------------------------
// block manager: a reference-counted allocator of block ids 0 .. n_blocks-1

typedef struct {
    int n_blocks;    // blocks in the pool
    int block_size;  // positions per block
    int* refcount;   // (n_blocks) 0 = free
    int* free_ids;   // (n_blocks) stack of free block ids, top at free_ids[n_free - 1]
                     // (lowest id on top at start, so a fresh pool hands out 0, 1, 2, ...)
    int n_free;      // free blocks, the stack's height
} BlockManager;

// n_blocks >= 1, block_size >= 1 (ETX_ERR_INVALID_ARG otherwise, bm left empty).
etx_status build_block_manager(BlockManager* bm, int n_blocks, int block_size);
void free_block_manager(BlockManager* bm);
// A free block, now with refcount 1; -1 when none is free (nothing changes then).
int block_alloc(BlockManager* bm);
// One more reference to an allocated block.
void block_ref(BlockManager* bm, int id);
// One reference fewer; at 0 the block goes back on top of the free stack (reused first).
void block_unref(BlockManager* bm, int id);
// Allocated blocks (n_blocks - n_free).
int block_manager_used(const BlockManager* bm);

// ----------------------------------------------------------------------------
// block table: the blocks of one sequence

typedef struct { int src, dst; } BlockCopy;  // copy block src's contents into dst

typedef struct {
    int* ids;        // (cap) block ids in position order: position p is in ids[p / block_size]
    int n_ids;       // blocks held
    int cap;         // room in ids
    int n_pos;       // positions written
} BlockTable;

// An empty table (no allocation).
void block_table_init(BlockTable* t);
// Unrefs every block and frees ids: the table is as after block_table_init.
void block_table_release(BlockManager* bm, BlockTable* t);

// Blocks that block_table_prepare would take from the pool to make positions
// n_pos .. n_pos+n_new-1 writable: new blocks at the end, plus one copy when the partially
// filled last block is shared. 0 for n_new <= 0.
int block_table_blocks_needed(const BlockManager* bm, const BlockTable* t, int n_new);

// Makes those positions writable: copy-on-write of a shared partial last block (allocates
// a new block, records the copy in *copy / *n_copies (0 or 1), unrefs the old one), then
// appends new blocks. The backend performs the recorded copy before any write of the
// same step (another table may write into the old block once it is no longer shared).
// All or nothing: when the pool lacks blocks nothing changes, *n_copies is 0 and the
// status is ETX_ERR_NOMEM with a message giving the needed and free counts.
// n_new < 0, a position count past INT_MAX, or a NULL copy/n_copies: ETX_ERR_INVALID_ARG.
// Calling it again before commit is harmless: blocks already prepared are reused.
etx_status block_table_prepare(BlockManager* bm, BlockTable* t, int n_new, BlockCopy* copy, int* n_copies);
// n_pos += n_new, once the backend has written the positions prepare made writable.
void block_table_commit(BlockTable* t, int n_new);

// dst (initialised, empty) shares every block holding src's n_pos positions (refcount++
// each) and takes src's n_pos. Blocks src prepared but has not committed hold nothing yet
// and are not shared.
void block_table_fork(BlockManager* bm, const BlockTable* src, BlockTable* dst);

// Appends n full blocks that hold the next n * block_size positions (another table's or
// the prefix cache's: one reference taken on each) and advances n_pos past them. t must
// end on a block boundary with nothing prepared (n_pos a multiple of block_size, n_ids
// = n_pos / block_size).
void block_table_append_shared(BlockManager* bm, BlockTable* t, const int* ids, int n);

// Forgets positions >= n_pos (0 <= n_pos <= t->n_pos): keeps the ceil(n_pos / block_size)
// blocks still needed, unrefs the rest. The kept last block may be shared; the next
// prepare copies it before writing.
void block_table_truncate(BlockManager* bm, BlockTable* t, int n_pos);

// The pool's size when the options leave it to the engine: every one of max_batch slots a
// full context of ctx positions (blocks of block_size), capped at what budget_bytes holds
// in blocks of block_bytes (the backend's storage: BackendOps.kv_budget), never below two
// full contexts (a pool that does not fit is then refused by the backend, with a
// message), nor above INT_MAX.
int kv_blocks_auto(int ctx, int block_size, int max_batch, double budget_bytes, double block_bytes);

#endif // ETX_KV_BLOCKS_H
