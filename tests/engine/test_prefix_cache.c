/*
 * test_prefix_cache.c — the index of computed prompt chunks (host/engine/prefix_cache.c)
 * against a block manager: chains keyed by parent and tokens, references taken and given
 * back, least-recently-used eviction of idle entries only, evicted parents cutting their
 * chains, and the cache off when a chunk is not whole blocks. Also block_table_append_shared.
 */
#include <check.h>
#include <stdlib.h>

#include "check_main.h"
#include "engine/kv_blocks.h"
#include "engine/prefix_cache.h"

#define CHUNK 8
#define BS 4

static void tokens_for(int32_t* t, int seed) {
    for (int i = 0; i < CHUNK; i++) t[i] = seed * 100 + i;
}

START_TEST(chains_find_and_insert) {
    BlockManager bm;
    ck_assert_int_eq(build_block_manager(&bm, 16, BS).code, 0);
    PrefixCache c;
    build_prefix_cache(&c, 1, CHUNK, BS);
    ck_assert_int_eq(c.per, 2);
    int32_t a[CHUNK], b[CHUNK];
    tokens_for(a, 1);
    tokens_for(b, 2);
    int blk[2] = {block_alloc(&bm), block_alloc(&bm)};
    ck_assert_int_eq(prefix_cache_find(&c, -1, a), -1);
    const int e0 = prefix_cache_insert(&c, &bm, -1, a, blk);
    ck_assert_int_eq(e0, 0);
    ck_assert_int_eq(bm.refcount[blk[0]], 2); // the table's and the cache's
    // the same chunk after the same parent: the existing entry, nothing taken
    int other[2] = {block_alloc(&bm), block_alloc(&bm)};
    ck_assert_int_eq(prefix_cache_insert(&c, &bm, -1, a, other), e0);
    ck_assert_int_eq(bm.refcount[other[0]], 1);
    // a chain: b after a; b alone (after no parent) is another key
    int blk2[2] = {block_alloc(&bm), block_alloc(&bm)};
    const int e1 = prefix_cache_insert(&c, &bm, e0, b, blk2);
    ck_assert_int_eq(prefix_cache_find(&c, e0, b), e1);
    ck_assert_int_eq(prefix_cache_find(&c, -1, b), -1);
    ck_assert_int_eq(prefix_cache_find(&c, e1, b), -1);
    int32_t a2[CHUNK];
    tokens_for(a2, 1);
    a2[CHUNK - 1]++; // one token differs
    ck_assert_int_eq(prefix_cache_find(&c, -1, a2), -1);
    // the tables let go: only the cache holds e0 and e1's blocks now
    for (int i = 0; i < 2; i++) block_unref(&bm, blk[i]), block_unref(&bm, blk2[i]), block_unref(&bm, other[i]);
    ck_assert_int_eq(prefix_cache_idle_blocks(&c, &bm), 4);
    ck_assert_int_eq(block_manager_used(&bm), 4);
    free_prefix_cache(&c, &bm);
    ck_assert_int_eq(block_manager_used(&bm), 0);
    free_block_manager(&bm);
}
END_TEST

START_TEST(reclaim_evicts_idle_entries_least_recent_first) {
    BlockManager bm;
    build_block_manager(&bm, 8, BS);
    PrefixCache c;
    build_prefix_cache(&c, 1, CHUNK, BS);
    int32_t t[3][CHUNK];
    int blk[3][2], id[3];
    for (int k = 0; k < 3; k++) {
        tokens_for(t[k], k + 1);
        blk[k][0] = block_alloc(&bm);
        blk[k][1] = block_alloc(&bm);
        id[k] = prefix_cache_insert(&c, &bm, -1, t[k], blk[k]);
        block_unref(&bm, blk[k][0]);
        block_unref(&bm, blk[k][1]);
    }
    ck_assert_int_eq(bm.n_free, 2);
    block_ref(&bm, blk[1][0]);                      // a request still shares entry 1
    ck_assert_int_eq(prefix_cache_find(&c, -1, t[0]), id[0]); // entry 0 used again: 2 is the oldest idle
    ck_assert_int_eq(prefix_cache_reclaim(&c, &bm, 4), 2);
    ck_assert_int_eq(prefix_cache_find(&c, -1, t[2]), -1);
    ck_assert_int_ge(prefix_cache_find(&c, -1, t[0]), 0);
    // asking for more than the idle entries give: entry 0 goes, entry 1 (shared) stays
    ck_assert_int_eq(prefix_cache_reclaim(&c, &bm, 8), 2);
    ck_assert_int_eq(prefix_cache_find(&c, -1, t[1]), id[1]);
    ck_assert_int_eq(bm.n_free, 6);
    // nothing more can go while the request holds it
    ck_assert_int_eq(prefix_cache_reclaim(&c, &bm, 8), 0);
    block_unref(&bm, blk[1][0]);
    ck_assert_int_eq(prefix_cache_reclaim(&c, &bm, 8), 2);
    ck_assert_int_eq(bm.n_free, 8);
    free_prefix_cache(&c, &bm);
    free_block_manager(&bm);
}
END_TEST

START_TEST(evicted_parent_cuts_the_chain_and_ids_are_not_reused) {
    BlockManager bm;
    build_block_manager(&bm, 8, BS);
    PrefixCache c;
    build_prefix_cache(&c, 1, CHUNK, BS);
    int32_t a[CHUNK], b[CHUNK];
    tokens_for(a, 1);
    tokens_for(b, 2);
    int x[2] = {block_alloc(&bm), block_alloc(&bm)}, y[2] = {block_alloc(&bm), block_alloc(&bm)};
    const int ea = prefix_cache_insert(&c, &bm, -1, a, x);
    const int eb = prefix_cache_insert(&c, &bm, ea, b, y);
    block_unref(&bm, x[0]), block_unref(&bm, x[1]); // a idle; b still held by a table
    ck_assert_int_eq(prefix_cache_reclaim(&c, &bm, bm.n_free + 2), 2);
    ck_assert_int_eq(prefix_cache_find(&c, -1, a), -1);
    ck_assert_int_eq(prefix_cache_find(&c, ea, b), -1); // unreachable after its evicted parent
    // a new first chunk gets a new id; nothing can be inserted after the dead entry
    int z[2] = {block_alloc(&bm), block_alloc(&bm)};
    const int ea2 = prefix_cache_insert(&c, &bm, -1, a, z);
    ck_assert_int_ne(ea2, ea);
    ck_assert_int_ne(ea2, eb);
    ck_assert_int_eq(prefix_cache_insert(&c, &bm, ea, b, y), -1);
    free_prefix_cache(&c, &bm);
    for (int i = 0; i < 2; i++) block_unref(&bm, y[i]), block_unref(&bm, z[i]);
    ck_assert_int_eq(block_manager_used(&bm), 0);
    free_block_manager(&bm);
}
END_TEST

START_TEST(off_when_chunks_are_not_whole_blocks) {
    BlockManager bm;
    build_block_manager(&bm, 8, 3);
    PrefixCache c;
    build_prefix_cache(&c, 1, CHUNK, 3); // 8 is not a multiple of 3
    int32_t a[CHUNK];
    tokens_for(a, 1);
    int blk[3] = {block_alloc(&bm), block_alloc(&bm), block_alloc(&bm)};
    ck_assert_int_eq(prefix_cache_insert(&c, &bm, -1, a, blk), -1);
    ck_assert_int_eq(prefix_cache_find(&c, -1, a), -1);
    free_prefix_cache(&c, &bm);
    build_prefix_cache(&c, 0, CHUNK, 4); // disabled
    ck_assert_int_eq(c.chunk, 0);
    free_prefix_cache(&c, &bm);
    free_block_manager(&bm);
}
END_TEST

START_TEST(append_shared_blocks_to_a_table) {
    BlockManager bm;
    build_block_manager(&bm, 8, BS);
    BlockTable src, dst;
    block_table_init(&src);
    block_table_init(&dst);
    BlockCopy cp;
    int n_cp;
    ck_assert_int_eq(block_table_prepare(&bm, &src, 8, &cp, &n_cp).code, 0);
    block_table_commit(&src, 8);
    block_table_append_shared(&bm, &dst, src.ids, 2);
    ck_assert_int_eq(dst.n_pos, 8);
    ck_assert_int_eq(dst.n_ids, 2);
    ck_assert_int_eq(bm.refcount[src.ids[0]], 2);
    // the next write after shared full blocks takes a new block, no copy
    ck_assert_int_eq(block_table_prepare(&bm, &dst, 1, &cp, &n_cp).code, 0);
    ck_assert_int_eq(n_cp, 0);
    block_table_commit(&dst, 1);
    block_table_release(&bm, &src);
    block_table_release(&bm, &dst);
    ck_assert_int_eq(block_manager_used(&bm), 0);
    free_block_manager(&bm);
}
END_TEST

int main(void) {
    Suite* s = suite_create("prefix_cache");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, chains_find_and_insert);
    tcase_add_test(tc, reclaim_evicts_idle_entries_least_recent_first);
    tcase_add_test(tc, evicted_parent_cuts_the_chain_and_ids_are_not_reused);
    tcase_add_test(tc, off_when_chunks_are_not_whole_blocks);
    tcase_add_test(tc, append_shared_blocks_to_a_table);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
