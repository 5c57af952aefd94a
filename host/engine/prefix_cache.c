/*
 * prefix_cache.c — the index of computed prompt chunks (prefix_cache.h). Plain arrays and
 * linear scans: a few thousand entries at most in an evaluation (problems x chunks), each
 * compared by hash first.
 */
#include "engine/prefix_cache.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

static uint64_t hash_tokens(const int32_t* t, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)t[i];
        for (int b = 0; b < 4; b++) h = (h ^ ((v >> (8 * b)) & 0xFF)) * 1099511628211ull;
    }
    return h;
}

void build_prefix_cache(PrefixCache* c, int enabled, int chunk, int block_size) {
    memset(c, 0, sizeof *c);
    if (!enabled || block_size < 1 || chunk < block_size || chunk % block_size) return;
    c->chunk = chunk;
    c->per = chunk / block_size;
}

static void evict(PrefixCache* c, BlockManager* bm, PrefixEntry* x) {
    for (int i = 0; i < c->per; i++) block_unref(bm, x->blocks[i]);
    c->n_live_blocks -= c->per;
    free(x->tokens);
    free(x->blocks);
    x->tokens = NULL;
    x->blocks = NULL;
    x->live = 0;
}

void free_prefix_cache(PrefixCache* c, BlockManager* bm) {
    for (int i = 0; i < c->n; i++)
        if (c->e[i].live) evict(c, bm, &c->e[i]);
    free(c->e);
    memset(c, 0, sizeof *c);
}

int prefix_cache_find(PrefixCache* c, int parent, const int32_t* tokens) {
    if (!c->chunk || (parent >= 0 && !c->e[parent].live)) return -1;
    const uint64_t h = hash_tokens(tokens, c->chunk);
    for (int i = 0; i < c->n; i++) {
        PrefixEntry* x = &c->e[i];
        if (!x->live || x->parent != parent || x->hash != h) continue;
        if (memcmp(x->tokens, tokens, (size_t)c->chunk * sizeof(int32_t)) != 0) continue;
        x->last_use = ++c->clock;
        return i;
    }
    return -1;
}

int prefix_cache_insert(PrefixCache* c, BlockManager* bm, int parent, const int32_t* tokens, const int* blocks) {
    if (!c->chunk || (parent >= 0 && (parent >= c->n || !c->e[parent].live))) return -1;
    const int have = prefix_cache_find(c, parent, tokens);
    if (have >= 0) return have;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->e = xrealloc(c->e, (size_t)c->cap * sizeof(PrefixEntry));
    }
    PrefixEntry* x = &c->e[c->n];
    x->parent = parent;
    x->hash = hash_tokens(tokens, c->chunk);
    x->tokens = xmalloc((size_t)c->chunk * sizeof(int32_t));
    memcpy(x->tokens, tokens, (size_t)c->chunk * sizeof(int32_t));
    x->blocks = xmalloc((size_t)c->per * sizeof(int));
    for (int i = 0; i < c->per; i++) {
        x->blocks[i] = blocks[i];
        block_ref(bm, blocks[i]);
    }
    c->n_live_blocks += c->per;
    x->last_use = ++c->clock;
    x->live = 1;
    return c->n++;
}

// 1 when every block of x is held by the cache alone.
static int idle(const PrefixCache* c, const BlockManager* bm, const PrefixEntry* x) {
    for (int i = 0; i < c->per; i++)
        if (bm->refcount[x->blocks[i]] != 1) return 0;
    return 1;
}

int prefix_cache_reclaim(PrefixCache* c, BlockManager* bm, int need) {
    int freed = 0;
    while (bm->n_free < need) {
        PrefixEntry* lru = NULL;
        for (int i = 0; i < c->n; i++) {
            PrefixEntry* x = &c->e[i];
            if (x->live && idle(c, bm, x) && (!lru || x->last_use < lru->last_use)) lru = x;
        }
        if (!lru) break;
        evict(c, bm, lru);
        freed += c->per;
    }
    return freed;
}

int prefix_cache_idle_blocks(const PrefixCache* c, const BlockManager* bm) {
    int n = 0;
    for (int i = 0; i < c->n; i++) {
        const PrefixEntry* x = &c->e[i];
        if (!x->live) continue;
        for (int k = 0; k < c->per; k++) n += bm->refcount[x->blocks[k]] == 1;
    }
    return n;
}
