/*
 * prefix_cache.h — prompt sharing across requests: an index of the KV blocks of prompt
 * chunks already computed, so that a later request whose prompt starts with the same
 * tokens (the 8-shot GSM8K prefix, a system prompt) takes those blocks instead of
 * computing them again.
 *
 * Unit: one prefill chunk. The scheduler computes a prompt in chunks aligned to multiples
 * of the chunk length (scheduler.h), and a chunk's keys and values are a function of the
 * tokens up to its end *and of the chunk's own rows* (the CPU's prefill GEMM may order
 * its sums by the number of rows). So an entry is a whole chunk of chunk-length rows,
 * keyed by its tokens and by the entry of the chunk before it (a chain from position 0),
 * and a request takes it only where it would itself compute that same full chunk: the
 * blocks it takes hold the very bits it would have written, and its tokens stay those of
 * a run without the cache (batch invariance, docs/design.md §5). Chunks must be a whole
 * number of blocks; otherwise the cache stays empty.
 *
 * References: the cache holds one reference on each block of each live entry, so a
 * prompt's blocks outlive its request. When the pool runs short, the scheduler asks for
 * blocks back (prefix_cache_reclaim): entries whose blocks only the cache holds are
 * evicted, least recently used first. Evicted entries keep their slot (ids are never
 * reused), so a chain never points at another prompt's chunk; an entry whose parent was
 * evicted can no longer be reached and goes in its turn.
 */
#ifndef ETX_PREFIX_CACHE_H
#define ETX_PREFIX_CACHE_H

#include <stdint.h>

#include "engine/kv_blocks.h"

typedef struct {
    int parent;        // the entry of the chunk before, -1 for the first chunk
    uint64_t hash;     // FNV-1a of tokens (a quick filter; tokens are compared in full)
    int32_t* tokens;   // (chunk) this chunk's tokens; NULL once evicted
    int* blocks;       // (per) its blocks, one reference each held by the cache
    long last_use;     // cache clock at the last insert or hit (LRU)
    int live;          // 0: evicted
} PrefixEntry;

typedef struct {
    int chunk;         // positions per entry (the prefill chunk); 0: the cache is off
    int per;           // blocks per entry (chunk / block size)
    PrefixEntry* e;    // (n) every entry ever inserted, in insertion order
    int n, cap;
    int n_live_blocks; // blocks referenced by live entries
    long clock;        // advanced by every insert and hit
} PrefixCache;

// An empty cache for chunks of chunk positions in blocks of block_size; off (nothing is
// ever inserted) when enabled is 0 or chunk is not a multiple of block_size.
void build_prefix_cache(PrefixCache* c, int enabled, int chunk, int block_size);
// Lets go of every block (bm: the manager they came from) and frees the cache.
void free_prefix_cache(PrefixCache* c, BlockManager* bm);

// The live entry that follows `parent` (-1: the first chunk) with these chunk tokens, or
// -1. A hit bumps the entry's recency.
int prefix_cache_find(PrefixCache* c, int parent, const int32_t* tokens);

// Records a computed chunk: its tokens and blocks (one reference taken on each), after
// entry `parent` (-1: the first chunk; it must be live). Returns the entry id; when the
// same chunk after the same parent is already there, that entry (nothing taken). -1 when
// the cache is off or parent is not live.
int prefix_cache_insert(PrefixCache* c, BlockManager* bm, int parent, const int32_t* tokens, const int* blocks);

// Evicts least recently used entries whose every block only the cache holds (refcount
// 1) until the pool has `need` free blocks or nothing more can go; entries a request
// still shares stay. Returns the blocks freed.
int prefix_cache_reclaim(PrefixCache* c, BlockManager* bm, int need);

// Blocks that only the cache holds (reclaimable now).
int prefix_cache_idle_blocks(const PrefixCache* c, const BlockManager* bm);

#endif // ETX_PREFIX_CACHE_H
