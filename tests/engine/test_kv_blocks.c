/*
 * test_kv_blocks.c — checks the paged KV cache's block manager and block tables
 * (host/engine/kv_blocks.c) and the CPU block pool (host/cpu/kv_pool.c).
 *
 *   - manager: argument checks; allocation in id order until exhaustion (-1, state
 *     byte-identical), LIFO reuse of freed blocks, ref/unref counting.
 *   - tables: growth across block boundaries for block sizes 1, 4, 16 and appends of 1,
 *     bs-1, bs and 3*bs+2 positions from every offset in a block; prepare's all-or-nothing
 *     failure (manager and table byte-identical, message with needed and free counts);
 *     fork then append on both sides (the partial shared block copied once, full shared
 *     blocks never); fork of a fork; release of parent or child first; truncate; prepare
 *     twice before commit.
 *   - a seeded random sequence of 10^4 operations (append, fork, truncate, release, new
 *     table) for each of block sizes 1, 4, 16, against a model: refcounts are the number
 *     of table slots naming a block, blocks_needed and NOMEM are predicted from the model,
 *     and every value each table wrote reads back through its own table (copy-on-write
 *     done by kv_pool_copy_block).
 *   - KVPool: argument checks, NOMEM by overflow and by a failed allocation, bytes per
 *     block; rows land in the raw pool where the table says; copy_block copies every layer
 *     of K and V and nothing else; a write into a COW'd block leaves the other table's view.
 *
 * Every comparison is exact: values are small integers stored in float32, so there is
 * no tolerance anywhere.
 */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "check_etx.h"
#include "check_main.h"
#include "common.h"
#include "engine/kv_blocks.h"
#include "cpu/kv_pool.h"
#include "test_rng.h"

// The NOMEM test asks for a pool larger than any address space; ASan would report that
// request as an error instead of returning NULL as malloc does.
const char* __asan_default_options(void);
const char* __asan_default_options(void) { return "allocator_may_return_null=1"; }

// ck_assert* records a mark point (a write to Check's pipe) on every success; the loops
// that check every block or every stored value call into Check only when a check fails.
#define REQUIRE(cond, ...)                           \
    do {                                             \
        if (!(cond)) ck_assert_msg(cond, __VA_ARGS__); \
    } while (0)

// ----------------------------------------------------------------------------
// helpers

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The manager is self-consistent: refcounts >= 0, the free stack holds in-range ids with
// refcount 0, each once, and exactly the blocks with refcount 0.
static void check_manager(const BlockManager* bm) {
    ck_assert_int_ge(bm->n_free, 0);
    ck_assert_int_le(bm->n_free, bm->n_blocks);
    char* seen = xcalloc((size_t)bm->n_blocks, 1);
    for (int i = 0; i < bm->n_free; i++) {
        int id = bm->free_ids[i];
        REQUIRE(id >= 0 && id < bm->n_blocks, "free stack slot %d holds %d", i, id);
        REQUIRE(!seen[id], "block %d is on the free stack twice", id);
        REQUIRE(bm->refcount[id] == 0, "free block %d has refcount %d", id, bm->refcount[id]);
        seen[id] = 1;
    }
    int allocated = 0;
    for (int id = 0; id < bm->n_blocks; id++) {
        REQUIRE(bm->refcount[id] >= 0, "block %d refcount %d", id, bm->refcount[id]);
        if (bm->refcount[id] > 0) allocated++;
        else REQUIRE(seen[id], "block %d has refcount 0 but is not on the free stack", id);
    }
    ck_assert_int_eq(allocated + bm->n_free, bm->n_blocks);
    ck_assert_int_eq(block_manager_used(bm), allocated);
    free(seen);
}

// Every refcount equals the number of slots naming the block in the given tables (NULL
// entries skipped), and every table holds exactly ceil(n_pos / block_size) blocks.
static void check_refs(const BlockManager* bm, BlockTable* const* tables, int n_tables) {
    check_manager(bm);
    int* count = xcalloc((size_t)bm->n_blocks, sizeof(int));
    for (int i = 0; i < n_tables; i++) {
        const BlockTable* t = tables[i];
        if (!t) continue;
        REQUIRE(t->n_ids == ceil_div(t->n_pos, bm->block_size), "table %d: %d blocks for %d positions", i,
                      t->n_ids, t->n_pos);
        for (int j = 0; j < t->n_ids; j++) {
            REQUIRE(t->ids[j] >= 0 && t->ids[j] < bm->n_blocks, "table %d slot %d: block %d", i, j, t->ids[j]);
            count[t->ids[j]]++;
        }
    }
    for (int id = 0; id < bm->n_blocks; id++)
        REQUIRE(bm->refcount[id] == count[id], "block %d: refcount %d, held %d times", id, bm->refcount[id],
                      count[id]);
    free(count);
}

// A byte copy of a manager and one table, to show that a failed call changed nothing.
typedef struct {
    BlockManager bm;
    int* refcount;
    int* free_ids;
    BlockTable t;
    int* ids;
} Snapshot;

static Snapshot snapshot(const BlockManager* bm, const BlockTable* t) {
    Snapshot s = {.bm = *bm, .t = *t};
    s.refcount = xmalloc((size_t)bm->n_blocks * sizeof(int));
    s.free_ids = xmalloc((size_t)bm->n_blocks * sizeof(int));
    memcpy(s.refcount, bm->refcount, (size_t)bm->n_blocks * sizeof(int));
    memcpy(s.free_ids, bm->free_ids, (size_t)bm->n_blocks * sizeof(int));
    s.ids = xmalloc((size_t)(t->cap > 0 ? t->cap : 1) * sizeof(int));
    if (t->cap > 0) memcpy(s.ids, t->ids, (size_t)t->cap * sizeof(int));
    return s;
}

// Field by field, never memcmp of the structs: their padding bytes (after n_free, after
// n_pos) are not copied by a struct assignment, and CI's sanitized build once failed on
// them with every field equal.
static void check_unchanged(Snapshot* s, const BlockManager* bm, const BlockTable* t) {
    ck_assert(s->bm.n_blocks == bm->n_blocks && s->bm.block_size == bm->block_size);
    ck_assert(s->bm.refcount == bm->refcount && s->bm.free_ids == bm->free_ids);
    ck_assert_int_eq(s->bm.n_free, bm->n_free);
    ck_assert(memcmp(s->refcount, bm->refcount, (size_t)bm->n_blocks * sizeof(int)) == 0);
    ck_assert(memcmp(s->free_ids, bm->free_ids, (size_t)bm->n_blocks * sizeof(int)) == 0);
    ck_assert(s->t.ids == t->ids && s->t.cap == t->cap);
    ck_assert_int_eq(s->t.n_ids, t->n_ids);
    ck_assert_int_eq(s->t.n_pos, t->n_pos);
    if (t->cap > 0) ck_assert(memcmp(s->ids, t->ids, (size_t)t->cap * sizeof(int)) == 0);
    free(s->refcount), free(s->free_ids), free(s->ids);
}

// prepare + commit of n_new positions that must succeed; returns the copies recorded
// (0 or 1) and the copy in *cp.
static int append(BlockManager* bm, BlockTable* t, int n_new, BlockCopy* cp) {
    BlockCopy c = {-1, -1};
    int n_copies = -1;
    CK_OK(block_table_prepare(bm, t, n_new, &c, &n_copies));
    ck_assert(n_copies == 0 || n_copies == 1);
    block_table_commit(t, n_new);
    if (cp) *cp = c;
    return n_copies;
}

// ----------------------------------------------------------------------------
// block manager

START_TEST(test_manager_build) {
    BlockManager bm;
    const int bad[][2] = {{0, 4}, {-1, 4}, {8, 0}, {8, -3}, {INT_MIN, INT_MIN}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        etx_status st = build_block_manager(&bm, bad[i][0], bad[i][1]);
        ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
        ck_assert_msg(strstr(st.message, bad[i][0] < 1 ? "n_blocks" : "block_size"), "%s", st.message);
        ck_assert_ptr_null(bm.refcount);
        free_block_manager(&bm);  // safe on a failed build
    }
    CK_OK(build_block_manager(&bm, 5, 16));
    ck_assert_int_eq(bm.n_blocks, 5);
    ck_assert_int_eq(bm.block_size, 16);
    ck_assert_int_eq(bm.n_free, 5);
    ck_assert_int_eq(bm.free_ids[bm.n_free - 1], 0);  // lowest id on top
    check_manager(&bm);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(block_alloc(&bm), i);
    free_block_manager(&bm);
    ck_assert_ptr_null(bm.refcount);
}
END_TEST

START_TEST(test_alloc_exhaustion) {
    BlockManager bm;
    const int n = 7;
    CK_OK(build_block_manager(&bm, n, 4));
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(block_alloc(&bm), i);
        ck_assert_int_eq(bm.refcount[i], 1);
        check_manager(&bm);
    }
    ck_assert_int_eq(bm.n_free, 0);
    BlockTable empty;
    block_table_init(&empty);
    for (int k = 0; k < 3; k++) {
        Snapshot s = snapshot(&bm, &empty);
        ck_assert_int_eq(block_alloc(&bm), -1);
        check_unchanged(&s, &bm, &empty);
    }
    // freed blocks come back last-freed first
    block_unref(&bm, 5), block_unref(&bm, 2), block_unref(&bm, 4);
    ck_assert_int_eq(bm.n_free, 3);
    check_manager(&bm);
    ck_assert_int_eq(block_alloc(&bm), 4);
    ck_assert_int_eq(block_alloc(&bm), 2);
    ck_assert_int_eq(block_alloc(&bm), 5);
    ck_assert_int_eq(block_alloc(&bm), -1);
    // references: a block stays allocated until its last reference goes
    block_ref(&bm, 3), block_ref(&bm, 3);
    ck_assert_int_eq(bm.refcount[3], 3);
    block_unref(&bm, 3), block_unref(&bm, 3);
    ck_assert_int_eq(bm.refcount[3], 1);
    ck_assert_int_eq(bm.n_free, 0);
    block_unref(&bm, 3);
    ck_assert_int_eq(bm.n_free, 1);
    ck_assert_int_eq(bm.free_ids[0], 3);
    check_manager(&bm);
    ck_assert_int_eq(block_alloc(&bm), 3);
    // free everything, then the whole pool is handed out again, each block once
    for (int i = 0; i < n; i++) block_unref(&bm, i);
    ck_assert_int_eq(bm.n_free, n);
    check_manager(&bm);
    int seen[7] = {0};
    for (int i = 0; i < n; i++) {
        int id = block_alloc(&bm);
        ck_assert(id >= 0 && id < n && !seen[id]);
        seen[id] = 1;
    }
    ck_assert_int_eq(block_alloc(&bm), -1);
    check_manager(&bm);
    free_block_manager(&bm);
}
END_TEST

// ----------------------------------------------------------------------------
// block tables

// From each starting fill 0 .. 2*bs+1, one append of each size: blocks taken, blocks held.
START_TEST(test_table_growth) {
    const int sizes[] = {1, 4, 16};
    for (int si = 0; si < 3; si++) {
        const int bs = sizes[si];
        const int appends[] = {1, bs - 1, bs, 3 * bs + 2};
        BlockManager bm;
        CK_OK(build_block_manager(&bm, 64, bs));
        for (int start = 0; start <= 2 * bs + 1; start++)
            for (int ai = 0; ai < 4; ai++) {
                const int n_new = appends[ai];
                BlockTable t;
                block_table_init(&t);
                if (start > 0) append(&bm, &t, start, NULL);
                BlockTable* tabs[] = {&t};
                check_refs(&bm, tabs, 1);
                int need = block_table_blocks_needed(&bm, &t, n_new);
                ck_assert_int_eq(need, ceil_div(start + n_new, bs) - ceil_div(start, bs));
                int free_before = bm.n_free;
                int kept[64];
                int n_kept = t.n_ids;
                for (int j = 0; j < n_kept; j++) kept[j] = t.ids[j];
                ck_assert_int_eq(append(&bm, &t, n_new, NULL), 0);
                ck_assert_int_eq(free_before - bm.n_free, need);
                ck_assert_int_eq(t.n_pos, start + n_new);
                ck_assert_int_eq(t.n_ids, ceil_div(start + n_new, bs));
                for (int j = 0; j < n_kept; j++) ck_assert_int_eq(t.ids[j], kept[j]);  // old blocks stay
                for (int j = 0; j < t.n_ids; j++) ck_assert_int_eq(bm.refcount[t.ids[j]], 1);
                check_refs(&bm, tabs, 1);
                block_table_release(&bm, &t);
                ck_assert_int_eq(bm.n_free, bm.n_blocks);
                ck_assert_ptr_null(t.ids);
                ck_assert_int_eq(t.n_pos, 0);
            }
        // the four appends in a row: 1, bs-1, bs, 3bs+2 positions = 5bs+2 in all
        BlockTable t;
        block_table_init(&t);
        int total = 0;
        for (int ai = 0; ai < 4; ai++) {
            append(&bm, &t, appends[ai], NULL);
            total += appends[ai];
            ck_assert_int_eq(t.n_ids, ceil_div(total, bs));
        }
        ck_assert_int_eq(t.n_pos, 5 * bs + 2);
        ck_assert_int_eq(t.n_ids, bs == 1 ? 7 : 6);  // 7 blocks of 1; 5 full + 1 partial otherwise
        ck_assert_int_eq(bm.n_free, 64 - t.n_ids);
        block_table_release(&bm, &t);
        check_manager(&bm);
        ck_assert_int_eq(bm.n_free, 64);
        free_block_manager(&bm);
    }
}
END_TEST

START_TEST(test_prepare_nomem) {
    BlockManager bm;
    CK_OK(build_block_manager(&bm, 6, 4));
    BlockTable a, b, c;
    block_table_init(&a), block_table_init(&b), block_table_init(&c);
    append(&bm, &a, 10, NULL);  // 3 blocks, the last holding 2 positions
    block_table_fork(&bm, &a, &b);
    append(&bm, &c, 8, NULL);  // 2 blocks: 1 free left
    ck_assert_int_eq(bm.n_free, 1);
    BlockTable* tabs[] = {&a, &b, &c};
    check_refs(&bm, tabs, 3);

    // b needs a copy of its shared partial block and one new block: 2 > 1 free
    ck_assert_int_eq(block_table_blocks_needed(&bm, &b, 3), 2);
    Snapshot s = snapshot(&bm, &b);
    BlockCopy cp = {-7, -7};
    int n_copies = -7;
    etx_status st = block_table_prepare(&bm, &b, 3, &cp, &n_copies);
    ck_assert_int_eq(st.code, ETX_ERR_NOMEM);
    ck_assert_msg(strstr(st.message, "needs 2 blocks") && strstr(st.message, "1 of 6 are free"), "%s", st.message);
    ck_assert_int_eq(n_copies, 0);
    check_unchanged(&s, &bm, &b);
    check_refs(&bm, tabs, 3);

    // a large append of new blocks only
    ck_assert_int_eq(block_table_blocks_needed(&bm, &c, 100), 25);
    s = snapshot(&bm, &c);
    st = block_table_prepare(&bm, &c, 100, &cp, &n_copies);
    ck_assert_int_eq(st.code, ETX_ERR_NOMEM);
    ck_assert_msg(strstr(st.message, "needs 25 blocks") && strstr(st.message, "1 of 6 are free"), "%s",
                  st.message);
    check_unchanged(&s, &bm, &c);

    // bad arguments change nothing either
    s = snapshot(&bm, &b);
    ck_assert_int_eq(block_table_prepare(&bm, &b, -1, &cp, &n_copies).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(block_table_prepare(&bm, &b, INT_MAX - 9, &cp, &n_copies).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(block_table_prepare(&bm, &b, 1, NULL, &n_copies).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(block_table_prepare(&bm, &b, 1, &cp, NULL).code, ETX_ERR_INVALID_ARG);
    check_unchanged(&s, &bm, &b);
    ck_assert_int_eq(block_table_blocks_needed(&bm, &b, 0), 0);
    ck_assert_int_eq(block_table_blocks_needed(&bm, &b, -5), 0);

    // staying inside the partial block needs only the copy: exactly the one free block
    int shared = b.ids[2];
    ck_assert_int_eq(block_table_blocks_needed(&bm, &b, 2), 1);
    ck_assert_int_eq(append(&bm, &b, 2, &cp), 1);
    ck_assert_int_eq(cp.src, shared);
    ck_assert_int_eq(cp.dst, b.ids[2]);
    ck_assert_int_ne(b.ids[2], shared);
    ck_assert_int_eq(bm.n_free, 0);
    check_refs(&bm, tabs, 3);
    // a, now sole owner of its partial block, appends in place with nothing free
    ck_assert_int_eq(block_table_blocks_needed(&bm, &a, 2), 0);
    ck_assert_int_eq(append(&bm, &a, 2, NULL), 0);
    ck_assert_int_eq(a.ids[2], shared);
    // a zero-length append always succeeds
    ck_assert_int_eq(append(&bm, &c, 0, NULL), 0);
    check_refs(&bm, tabs, 3);
    block_table_release(&bm, &a), block_table_release(&bm, &b), block_table_release(&bm, &c);
    ck_assert_int_eq(bm.n_free, 6);
    check_manager(&bm);
    free_block_manager(&bm);
}
END_TEST

START_TEST(test_fork_cow) {
    const int bs = 4;
    BlockManager bm;
    CK_OK(build_block_manager(&bm, 32, bs));
    BlockTable p, c;
    block_table_init(&p), block_table_init(&c);
    append(&bm, &p, 6, NULL);  // b0 full, b1 holding 2 positions
    const int b0 = p.ids[0], b1 = p.ids[1];
    block_table_fork(&bm, &p, &c);
    BlockTable* tabs[] = {&p, &c};
    check_refs(&bm, tabs, 2);
    ck_assert_int_eq(c.n_pos, 6);
    ck_assert_int_eq(c.n_ids, 2);
    ck_assert_int_eq(c.ids[0], b0);
    ck_assert_int_eq(c.ids[1], b1);
    ck_assert_int_eq(bm.refcount[b0], 2);
    ck_assert_int_eq(bm.refcount[b1], 2);

    // the child's first write copies the partial block, once
    BlockCopy cp;
    ck_assert_int_eq(block_table_blocks_needed(&bm, &c, 1), 1);
    ck_assert_int_eq(append(&bm, &c, 1, &cp), 1);
    ck_assert_int_eq(cp.src, b1);
    ck_assert_int_eq(cp.dst, c.ids[1]);
    ck_assert_int_ne(c.ids[1], b1);
    ck_assert_int_eq(c.ids[0], b0);
    ck_assert_int_eq(bm.refcount[b0], 2);
    ck_assert_int_eq(bm.refcount[b1], 1);
    check_refs(&bm, tabs, 2);
    // the parent now owns b1 alone: no copy
    ck_assert_int_eq(block_table_blocks_needed(&bm, &p, 1), 0);
    ck_assert_int_eq(append(&bm, &p, 1, NULL), 0);
    ck_assert_int_eq(p.ids[1], b1);
    // long appends on both sides: no more copies, b0 stays shared, nothing else is
    for (int side = 0; side < 2; side++) {
        BlockTable* t = side ? &c : &p;
        ck_assert_int_eq(append(&bm, t, 3 * bs + 2, NULL), 0);
        ck_assert_int_eq(append(&bm, t, 1, NULL), 0);
        ck_assert_int_eq(t->n_pos, 22);
        ck_assert_int_eq(t->ids[0], b0);
    }
    ck_assert_int_eq(bm.refcount[b0], 2);
    for (int i = 1; i < p.n_ids; i++)
        for (int j = 1; j < c.n_ids; j++) ck_assert_int_ne(p.ids[i], c.ids[j]);
    check_refs(&bm, tabs, 2);
    block_table_release(&bm, &p), block_table_release(&bm, &c);

    // a fork at a block boundary: both sides append, nothing is ever copied
    append(&bm, &p, 2 * bs, NULL);
    block_table_fork(&bm, &p, &c);
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(append(&bm, &p, bs + 1, NULL), 0);
        ck_assert_int_eq(append(&bm, &c, 1, NULL), 0);
    }
    ck_assert_int_eq(bm.refcount[p.ids[0]], 2);
    ck_assert_int_eq(bm.refcount[p.ids[1]], 2);
    ck_assert_int_eq(c.ids[0], p.ids[0]);
    ck_assert_int_eq(c.ids[1], p.ids[1]);
    ck_assert_int_eq(bm.refcount[p.ids[2]], 1);
    ck_assert_int_eq(bm.refcount[c.ids[2]], 1);
    check_refs(&bm, tabs, 2);
    block_table_release(&bm, &p), block_table_release(&bm, &c);

    // a fork of an empty table is empty
    block_table_fork(&bm, &p, &c);
    ck_assert_int_eq(c.n_ids, 0);
    ck_assert_int_eq(c.n_pos, 0);
    block_table_release(&bm, &c);
    ck_assert_int_eq(bm.n_free, 32);
    check_manager(&bm);
    free_block_manager(&bm);
}
END_TEST

START_TEST(test_fork_of_fork) {
    const int bs = 4;
    BlockManager bm;
    CK_OK(build_block_manager(&bm, 16, bs));
    BlockTable p, c, g;
    block_table_init(&p), block_table_init(&c), block_table_init(&g);
    append(&bm, &p, 5, NULL);  // b0 full, b1 holding 1 position
    const int b0 = p.ids[0], b1 = p.ids[1];
    block_table_fork(&bm, &p, &c);
    block_table_fork(&bm, &c, &g);
    BlockTable* tabs[] = {&p, &c, &g};
    check_refs(&bm, tabs, 3);
    ck_assert_int_eq(bm.refcount[b0], 3);
    ck_assert_int_eq(bm.refcount[b1], 3);
    ck_assert_int_eq(g.n_pos, 5);
    BlockCopy cp;
    // two of the three sharers copy b1; the last one writes it in place
    ck_assert_int_eq(append(&bm, &g, 2, &cp), 1);
    ck_assert_int_eq(cp.src, b1);
    ck_assert_int_eq(bm.refcount[b1], 2);
    ck_assert_int_eq(append(&bm, &p, 1, &cp), 1);
    ck_assert_int_eq(cp.src, b1);
    ck_assert_int_eq(bm.refcount[b1], 1);
    ck_assert_int_eq(append(&bm, &c, 3, NULL), 0);
    ck_assert_int_eq(c.ids[1], b1);
    ck_assert_int_eq(bm.refcount[b0], 3);
    ck_assert(p.ids[1] != g.ids[1] && p.ids[1] != b1 && g.ids[1] != b1);
    check_refs(&bm, tabs, 3);
    // a fork of the grandchild, then every release in a mixed order
    BlockTable h;
    block_table_init(&h);
    block_table_fork(&bm, &g, &h);
    ck_assert_int_eq(bm.refcount[b0], 4);
    BlockTable* tabs4[] = {&p, &c, &g, &h};
    check_refs(&bm, tabs4, 4);
    block_table_release(&bm, &c);
    tabs4[1] = NULL;
    check_refs(&bm, tabs4, 4);
    block_table_release(&bm, &h);
    tabs4[3] = NULL;
    check_refs(&bm, tabs4, 4);
    block_table_release(&bm, &p);
    tabs4[0] = NULL;
    check_refs(&bm, tabs4, 4);
    ck_assert_int_eq(bm.refcount[b0], 1);
    block_table_release(&bm, &g);
    ck_assert_int_eq(bm.n_free, 16);
    check_manager(&bm);
    free_block_manager(&bm);
}
END_TEST

// Values written by parent and child survive the release of the other one, in either order.
START_TEST(test_release_order) {
    const int bs = 4, L = 2, D = 3;
    for (int parent_first = 0; parent_first < 2; parent_first++) {
        BlockManager bm;
        KVPool pool;
        CK_OK(build_block_manager(&bm, 12, bs));
        CK_OK(build_kv_pool(&pool, L, D, 12, bs));
        BlockTable p, c;
        block_table_init(&p), block_table_init(&c);
        append(&bm, &p, 6, NULL);
        for (int pos = 0; pos < 6; pos++)
            for (int l = 0; l < L; l++) kv_pool_k_row(&pool, l, &p, pos)[0] = (float)(100 * l + pos);
        block_table_fork(&bm, &p, &c);
        for (int side = 0; side < 2; side++) {
            BlockTable* t = side ? &c : &p;
            BlockCopy cp;
            int n_copies;
            CK_OK(block_table_prepare(&bm, t, 3, &cp, &n_copies));
            ck_assert_int_eq(n_copies, side == 0);  // the parent writes first and copies
            if (n_copies) kv_pool_copy_block(&pool, cp.src, cp.dst);
            for (int pos = 6; pos < 9; pos++)
                for (int l = 0; l < L; l++) kv_pool_k_row(&pool, l, t, pos)[0] = (float)(1000 * (side + 1) + pos);
            block_table_commit(t, 3);
        }
        BlockTable* gone = parent_first ? &p : &c;
        BlockTable* kept = parent_first ? &c : &p;
        int kept_side = parent_first ? 1 : 0;
        block_table_release(&bm, gone);
        BlockTable* tabs[] = {kept};
        check_refs(&bm, tabs, 1);
        for (int j = 0; j < kept->n_ids; j++) ck_assert_int_eq(bm.refcount[kept->ids[j]], 1);
        ck_assert_int_eq(bm.n_free, 12 - 3);
        // the freed blocks are reused by a new table; the survivor's values stay
        BlockTable n;
        block_table_init(&n);
        append(&bm, &n, 3 * bs, NULL);
        for (int pos = 0; pos < 3 * bs; pos++)
            for (int l = 0; l < L; l++) kv_pool_k_row(&pool, l, &n, pos)[0] = -1.0f;
        for (int pos = 0; pos < 9; pos++)
            for (int l = 0; l < L; l++) {
                float want = pos < 6 ? (float)(100 * l + pos) : (float)(1000 * (kept_side + 1) + pos);
                ck_assert_msg(kv_pool_k_row(&pool, l, kept, pos)[0] == want, "pos %d layer %d", pos, l);
            }
        block_table_release(&bm, &n);
        block_table_release(&bm, kept);
        ck_assert_int_eq(bm.n_free, 12);
        check_manager(&bm);
        free_kv_pool(&pool);
        free_block_manager(&bm);
    }
}
END_TEST

START_TEST(test_truncate) {
    const int bs = 4;
    BlockManager bm;
    CK_OK(build_block_manager(&bm, 16, bs));
    BlockTable t;
    block_table_init(&t);
    BlockTable* tabs[] = {&t};
    append(&bm, &t, 10, NULL);
    const int b0 = t.ids[0], b1 = t.ids[1];
    const int to[] = {10, 9, 8, 5, 4, 0};
    const int blocks[] = {3, 3, 2, 2, 1, 0};
    for (int i = 0; i < 6; i++) {
        block_table_truncate(&bm, &t, to[i]);
        ck_assert_int_eq(t.n_pos, to[i]);
        ck_assert_int_eq(t.n_ids, blocks[i]);
        ck_assert_int_eq(bm.n_free, 16 - blocks[i]);
        if (blocks[i] >= 1) ck_assert_int_eq(t.ids[0], b0);
        if (blocks[i] >= 2) ck_assert_int_eq(t.ids[1], b1);
        check_refs(&bm, tabs, 1);
    }
    // grows again after truncating to nothing
    ck_assert_int_eq(append(&bm, &t, 5, NULL), 0);
    ck_assert_int_eq(t.n_ids, 2);
    block_table_release(&bm, &t);

    // truncating a fork: shared blocks stay with the other table, the next write copies
    BlockTable p, c;
    block_table_init(&p), block_table_init(&c);
    append(&bm, &p, 10, NULL);
    const int p0 = p.ids[0], p1 = p.ids[1], p2 = p.ids[2];
    block_table_fork(&bm, &p, &c);
    BlockTable* tabs2[] = {&p, &c};
    block_table_truncate(&bm, &c, 6);
    ck_assert_int_eq(c.n_ids, 2);
    ck_assert_int_eq(bm.refcount[p2], 1);
    ck_assert_int_eq(bm.refcount[p1], 2);
    check_refs(&bm, tabs2, 2);
    BlockCopy cp;
    ck_assert_int_eq(append(&bm, &c, 1, &cp), 1);  // position 6 lies in shared p1
    ck_assert_int_eq(cp.src, p1);
    ck_assert_int_eq(cp.dst, c.ids[1]);
    ck_assert_int_eq(bm.refcount[p1], 1);
    // the parent drops back into the still-shared p0, then writes: a copy of p0
    block_table_truncate(&bm, &p, 3);
    ck_assert_int_eq(p.n_ids, 1);
    ck_assert_int_eq(bm.refcount[p0], 2);
    ck_assert_int_eq(append(&bm, &p, 1, &cp), 1);
    ck_assert_int_eq(cp.src, p0);
    ck_assert_int_eq(bm.refcount[p0], 1);
    ck_assert_int_eq(c.ids[0], p0);
    check_refs(&bm, tabs2, 2);
    // truncating to a block boundary inside shared blocks: the next append takes a new block
    block_table_release(&bm, &p), block_table_release(&bm, &c);
    append(&bm, &p, 12, NULL);
    block_table_fork(&bm, &p, &c);
    block_table_truncate(&bm, &c, 8);
    ck_assert_int_eq(block_table_blocks_needed(&bm, &c, 1), 1);
    ck_assert_int_eq(append(&bm, &c, 1, NULL), 0);
    ck_assert_int_ne(c.ids[2], p.ids[2]);
    check_refs(&bm, tabs2, 2);
    block_table_release(&bm, &p), block_table_release(&bm, &c);
    ck_assert_int_eq(bm.n_free, 16);
    check_manager(&bm);
    free_block_manager(&bm);
}
END_TEST

// prepare twice before commit takes only what is missing; truncate drops prepared blocks.
START_TEST(test_prepare_twice) {
    const int bs = 4;
    BlockManager bm;
    CK_OK(build_block_manager(&bm, 8, bs));
    BlockTable t;
    block_table_init(&t);
    BlockCopy cp;
    int n_copies;
    append(&bm, &t, 2, NULL);
    CK_OK(block_table_prepare(&bm, &t, 3, &cp, &n_copies));  // positions 2..4: one new block
    ck_assert_int_eq(t.n_ids, 2);
    ck_assert_int_eq(t.n_pos, 2);
    ck_assert_int_eq(bm.n_free, 6);
    ck_assert_int_eq(block_table_blocks_needed(&bm, &t, 3), 0);
    ck_assert_int_eq(block_table_blocks_needed(&bm, &t, 7), 1);
    CK_OK(block_table_prepare(&bm, &t, 7, &cp, &n_copies));  // positions 2..8: one more
    ck_assert_int_eq(n_copies, 0);
    ck_assert_int_eq(t.n_ids, 3);
    ck_assert_int_eq(bm.n_free, 5);
    // a fork now shares only the written block
    BlockTable c;
    block_table_init(&c);
    block_table_fork(&bm, &t, &c);
    ck_assert_int_eq(c.n_ids, 1);
    ck_assert_int_eq(c.n_pos, 2);
    ck_assert_int_eq(bm.refcount[t.ids[0]], 2);
    ck_assert_int_eq(bm.refcount[t.ids[1]], 1);
    ck_assert_int_eq(bm.refcount[t.ids[2]], 1);
    // prepare again: the shared partial block is copied, prepared blocks are kept
    int b1 = t.ids[1], b2 = t.ids[2];
    CK_OK(block_table_prepare(&bm, &t, 7, &cp, &n_copies));
    ck_assert_int_eq(n_copies, 1);
    ck_assert_int_eq(t.n_ids, 3);
    ck_assert_int_eq(t.ids[1], b1);
    ck_assert_int_eq(t.ids[2], b2);
    block_table_commit(&t, 5);
    ck_assert_int_eq(t.n_pos, 7);
    block_table_truncate(&bm, &t, 7);  // drops the block prepared for position 8
    ck_assert_int_eq(t.n_ids, 2);
    BlockTable* tabs[] = {&t, &c};
    check_refs(&bm, tabs, 2);
    block_table_release(&bm, &t), block_table_release(&bm, &c);
    ck_assert_int_eq(bm.n_free, 8);
    check_manager(&bm);
    free_block_manager(&bm);
}
END_TEST

// ----------------------------------------------------------------------------
// random operations against a model

#define R_TABLES 12
#define R_LAYERS 2
#define R_DIM 2

// The value of dimension d of layer l, K (kv 0) or V (kv 1), for token value x: distinct
// integers below 2^24, exact in float32.
static float rvalue(int x, int l, int kv, int d) { return (float)(x * 8 + l * 4 + kv * 2 + d); }

typedef struct {
    int live;
    BlockTable t;
    int* val;  // (cap) the token value written at each position, the model's view
    int cap;
} RTable;

static void rtable_check_values(const KVPool* pool, const RTable* r) {
    for (int pos = 0; pos < r->t.n_pos; pos++)
        for (int l = 0; l < R_LAYERS; l++) {
            const float* k = kv_pool_k_row(pool, l, &r->t, pos);
            const float* v = kv_pool_v_row(pool, l, &r->t, pos);
            for (int d = 0; d < R_DIM; d++) {
                REQUIRE(k[d] == rvalue(r->val[pos], l, 0, d), "K pos %d layer %d", pos, l);
                REQUIRE(v[d] == rvalue(r->val[pos], l, 1, d), "V pos %d layer %d", pos, l);
            }
        }
}

static void run_random(int bs, int n_blocks, uint64_t seed, int n_ops) {
    BlockManager bm;
    KVPool pool;
    CK_OK(build_block_manager(&bm, n_blocks, bs));
    CK_OK(build_kv_pool(&pool, R_LAYERS, R_DIM, n_blocks, bs));
    RTable r[R_TABLES];
    memset(r, 0, sizeof r);
    int next_value = 1;
    int n_append = 0, n_nomem = 0, n_copy = 0, n_fork = 0, n_trunc = 0, n_release = 0;
    uint64_t rng = rng_seed(seed);
    for (int op = 0; op < n_ops; op++) {
        int i = rng_below(&rng, R_TABLES), kind = rng_below(&rng, 100);
        RTable* a = &r[i];
        if (!a->live) {
            if (kind < 50) {  // a new empty table
                block_table_init(&a->t);
                a->live = 1;
            } else {  // a fork of some live table
                int j = rng_below(&rng, R_TABLES);
                if (!r[j].live) continue;
                block_table_init(&a->t);
                block_table_fork(&bm, &r[j].t, &a->t);
                a->cap = r[j].t.n_pos > 0 ? r[j].t.n_pos : 1;
                a->val = xrealloc(a->val, (size_t)a->cap * sizeof(int));
                for (int pos = 0; pos < r[j].t.n_pos; pos++) a->val[pos] = r[j].val[pos];
                a->live = 1;
                n_fork++;
            }
        } else if (kind < 55) {  // append
            const int choice[] = {1, bs - 1, bs, 3 * bs + 2, 1 + rng_below(&rng, 2 * bs)};
            int n_new = choice[rng_below(&rng, 5)];
            int n_pos = a->t.n_pos;
            // the model: blocks for the new positions, plus a copy when position n_pos
            // falls in a block that some other table also holds
            int cow = 0;
            if (n_pos % bs != 0 && n_new > 0) {
                int id = a->t.ids[n_pos / bs], holders = 0;
                for (int j = 0; j < R_TABLES; j++)
                    if (r[j].live)
                        for (int b = 0; b < r[j].t.n_ids; b++) holders += r[j].t.ids[b] == id;
                cow = holders > 1;
            }
            int need = (n_new > 0 ? ceil_div(n_pos + n_new, bs) - ceil_div(n_pos, bs) : 0) + cow;
            ck_assert_int_eq(block_table_blocks_needed(&bm, &a->t, n_new), need);
            BlockCopy cp = {-1, -1};
            int n_copies = -1, free_before = bm.n_free;
            if (need > bm.n_free) {
                Snapshot s = snapshot(&bm, &a->t);
                etx_status st = block_table_prepare(&bm, &a->t, n_new, &cp, &n_copies);
                ck_assert_int_eq(st.code, ETX_ERR_NOMEM);
                ck_assert_int_eq(n_copies, 0);
                check_unchanged(&s, &bm, &a->t);
                n_nomem++;
            } else {
                int old = cow ? a->t.ids[n_pos / bs] : -1;
                CK_OK(block_table_prepare(&bm, &a->t, n_new, &cp, &n_copies));
                ck_assert_int_eq(free_before - bm.n_free, need);
                ck_assert_int_eq(n_copies, cow);
                if (n_copies) {
                    ck_assert_int_eq(cp.src, old);
                    ck_assert_int_eq(cp.dst, a->t.ids[n_pos / bs]);
                    kv_pool_copy_block(&pool, cp.src, cp.dst);
                    n_copy++;
                }
                if (n_pos + n_new > a->cap) {
                    a->cap = 2 * (n_pos + n_new);
                    a->val = xrealloc(a->val, (size_t)a->cap * sizeof(int));
                }
                for (int pos = n_pos; pos < n_pos + n_new; pos++) {
                    int x = next_value++;
                    a->val[pos] = x;
                    for (int l = 0; l < R_LAYERS; l++) {
                        float* k = kv_pool_k_row(&pool, l, &a->t, pos);
                        float* v = kv_pool_v_row(&pool, l, &a->t, pos);
                        for (int d = 0; d < R_DIM; d++) k[d] = rvalue(x, l, 0, d), v[d] = rvalue(x, l, 1, d);
                    }
                }
                block_table_commit(&a->t, n_new);
                n_append++;
            }
        } else if (kind < 70) {  // truncate, mostly near the end
            int n_pos = a->t.n_pos;
            int to = rng_below(&rng, 2) ? n_pos - rng_below(&rng, bs + 2) : rng_below(&rng, n_pos + 1);
            if (to < 0) to = 0;
            block_table_truncate(&bm, &a->t, to);
            n_trunc++;
        } else if (kind < 85) {  // fork into a free slot
            int j = rng_below(&rng, R_TABLES);
            if (r[j].live) continue;
            block_table_init(&r[j].t);
            block_table_fork(&bm, &a->t, &r[j].t);
            r[j].cap = a->t.n_pos > 0 ? a->t.n_pos : 1;
            r[j].val = xrealloc(r[j].val, (size_t)r[j].cap * sizeof(int));
            for (int pos = 0; pos < a->t.n_pos; pos++) r[j].val[pos] = a->val[pos];
            r[j].live = 1;
            n_fork++;
        } else {  // release
            block_table_release(&bm, &a->t);
            a->live = 0;
            n_release++;
        }
        BlockTable* tabs[R_TABLES];
        for (int j = 0; j < R_TABLES; j++) tabs[j] = r[j].live ? &r[j].t : NULL;
        check_refs(&bm, tabs, R_TABLES);
        if (a->live) rtable_check_values(&pool, a);
        if (op % 64 == 0)
            for (int j = 0; j < R_TABLES; j++)
                if (r[j].live) rtable_check_values(&pool, &r[j]);
    }
    for (int j = 0; j < R_TABLES; j++) {
        if (r[j].live) {
            rtable_check_values(&pool, &r[j]);
            block_table_release(&bm, &r[j].t);
        }
        free(r[j].val);
    }
    ck_assert_int_eq(bm.n_free, n_blocks);
    check_manager(&bm);
    // every kind of event happened often enough for the run to mean something
    fprintf(stderr, "kv_blocks random (bs %d, %d blocks): %d appends, %d NOMEM, %d copies, %d forks, %d truncates, "
                    "%d releases\n", bs, n_blocks, n_append, n_nomem, n_copy, n_fork, n_trunc, n_release);
    ck_assert_int_ge(n_append, 500);
    ck_assert_int_ge(n_nomem, 50);
    if (bs == 1) ck_assert_int_eq(n_copy, 0);  // a block of one position is never partially filled
    else ck_assert_int_ge(n_copy, 50);
    ck_assert_int_ge(n_fork, 200);
    ck_assert_int_ge(n_trunc, 200);
    ck_assert_int_ge(n_release, 200);
    free_kv_pool(&pool);
    free_block_manager(&bm);
}

START_TEST(test_random_ops) {
    const int sizes[] = {1, 4, 16};
    const int blocks[] = {64, 48, 24};  // a few sequences' worth: the pool runs out now and then
    for (int i = 0; i < 3; i++) run_random(sizes[i], blocks[i], 0x5eed0000ull + (uint64_t)i, 10000);
}
END_TEST

// ----------------------------------------------------------------------------
// KVPool

START_TEST(test_pool_build) {
    KVPool p;
    const int bad[][4] = {{0, 8, 4, 4}, {2, 0, 4, 4}, {2, 8, 0, 4}, {2, 8, 4, 0}, {-1, 8, 4, 4}};
    for (int i = 0; i < 5; i++) {
        etx_status st = build_kv_pool(&p, bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
        ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
        ck_assert_msg(strstr(st.message, "kv pool"), "%s", st.message);
        ck_assert_ptr_null(p.k);
        free_kv_pool(&p);
    }
    // sizes past size_t
    etx_status st = build_kv_pool(&p, 2, INT_MAX, INT_MAX, INT_MAX);
    ck_assert_int_eq(st.code, ETX_ERR_NOMEM);
    ck_assert_msg(strstr(st.message, "overflow"), "%s", st.message);
    ck_assert_ptr_null(p.k);
    // 2^52 bytes per layer: no machine has them, the allocation fails and is named
    st = build_kv_pool(&p, 3, 1 << 20, 1 << 20, 1 << 10);
    ck_assert_int_eq(st.code, ETX_ERR_NOMEM);
    ck_assert_msg(strstr(st.message, "layer 0 K"), "%s", st.message);
    ck_assert_ptr_null(p.k);
    free_kv_pool(&p);

    CK_OK(build_kv_pool(&p, 3, 5, 7, 4));
    ck_assert_int_eq(p.n_layers, 3);
    ck_assert_int_eq(p.kv_dim, 5);
    ck_assert_int_eq(p.n_blocks, 7);
    ck_assert_int_eq(p.block_size, 4);
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 7 * 4 * 5; i++) ck_assert(p.k[l][i] == 0.0f && p.v[l][i] == 0.0f);
    free_kv_pool(&p);
    ck_assert_ptr_null(p.k);

    ck_assert_uint_eq(kv_pool_bytes_per_block(3, 5, 4), 2u * 3 * 5 * 4 * sizeof(float));
    ck_assert_uint_eq(kv_pool_bytes_per_block(16, 512, 16), 1u << 20);  // Llama 3.2 1B, 16 positions: 1 MiB
    ck_assert_uint_eq(kv_pool_bytes_per_block(0, 5, 4), 0);
    ck_assert_uint_eq(kv_pool_bytes_per_block(3, -5, 4), 0);
    ck_assert_uint_eq(kv_pool_bytes_per_block(INT_MAX, INT_MAX, INT_MAX), SIZE_MAX);
}
END_TEST

// Rows written through a table with scattered blocks land in the raw pool at
// (ids[pos / bs] * bs + pos % bs) * kv_dim; blocks the table does not hold stay zero.
START_TEST(test_pool_rows) {
    const int bs = 4, L = 3, D = 5, NB = 10;
    BlockManager bm;
    KVPool p;
    CK_OK(build_block_manager(&bm, NB, bs));
    CK_OK(build_kv_pool(&p, L, D, NB, bs));
    // scatter: another table takes blocks, then frees every other one
    int other[6];
    for (int i = 0; i < 6; i++) other[i] = block_alloc(&bm);
    for (int i = 0; i < 6; i += 2) block_unref(&bm, other[i]);
    BlockTable t;
    block_table_init(&t);
    append(&bm, &t, 3 * bs + 2, NULL);
    int n = t.n_pos, in_table[10] = {0}, contiguous = 1;
    for (int j = 0; j < t.n_ids; j++) in_table[t.ids[j]] = 1, contiguous &= j == 0 || t.ids[j] == t.ids[j - 1] + 1;
    ck_assert_msg(!contiguous, "the test wants a table with scattered blocks");
    for (int pos = 0; pos < n; pos++)
        for (int l = 0; l < L; l++)
            for (int d = 0; d < D; d++) {
                kv_pool_k_row(&p, l, &t, pos)[d] = (float)(1000 * l + 10 * pos + d + 1);
                kv_pool_v_row(&p, l, &t, pos)[d] = -(float)(1000 * l + 10 * pos + d + 1);
            }
    for (int pos = 0; pos < n; pos++)
        for (int l = 0; l < L; l++)
            for (int d = 0; d < D; d++) {
                size_t at = ((size_t)t.ids[pos / bs] * bs + (size_t)(pos % bs)) * D + (size_t)d;
                ck_assert(p.k[l][at] == (float)(1000 * l + 10 * pos + d + 1));
                ck_assert(p.v[l][at] == -(float)(1000 * l + 10 * pos + d + 1));
            }
    for (int id = 0; id < NB; id++)
        if (!in_table[id])
            for (int l = 0; l < L; l++)
                for (int i = 0; i < bs * D; i++)
                    ck_assert(p.k[l][(size_t)id * bs * D + i] == 0.0f && p.v[l][(size_t)id * bs * D + i] == 0.0f);
    // a prepared, uncommitted position has a row too
    BlockCopy cp;
    int n_copies;
    CK_OK(block_table_prepare(&bm, &t, 3, &cp, &n_copies));
    ck_assert_ptr_eq(kv_pool_k_row(&p, 1, &t, n + 2), p.k[1] + ((size_t)t.ids[(n + 2) / bs] * bs + (n + 2) % bs) * D);
    block_table_release(&bm, &t);
    for (int i = 1; i < 6; i += 2) block_unref(&bm, other[i]);
    ck_assert_int_eq(bm.n_free, NB);
    free_kv_pool(&p);
    free_block_manager(&bm);
}
END_TEST

START_TEST(test_pool_copy_block) {
    const int bs = 3, L = 4, D = 2, NB = 6, per = bs * D;
    KVPool p;
    CK_OK(build_kv_pool(&p, L, D, NB, bs));
    // each float holds its own (layer, K/V, index)
    for (int l = 0; l < L; l++)
        for (int i = 0; i < NB * per; i++) p.k[l][i] = (float)(l * 10000 + i), p.v[l][i] = -(float)(l * 10000 + i);
    kv_pool_copy_block(&p, 2, 5);
    kv_pool_copy_block(&p, 1, 1);  // onto itself: nothing
    for (int l = 0; l < L; l++)
        for (int b = 0; b < NB; b++)
            for (int i = 0; i < per; i++) {
                int from = b == 5 ? 2 : b;  // where block b's contents come from
                float want = (float)(l * 10000 + from * per + i);
                ck_assert_msg(p.k[l][b * per + i] == want, "K layer %d block %d [%d]", l, b, i);
                ck_assert_msg(p.v[l][b * per + i] == -want, "V layer %d block %d [%d]", l, b, i);
            }
    free_kv_pool(&p);
}
END_TEST

// A write into a copy-on-write block changes only the writer's view.
START_TEST(test_pool_cow_view) {
    const int bs = 4, L = 2, D = 3;
    BlockManager bm;
    KVPool p;
    CK_OK(build_block_manager(&bm, 8, bs));
    CK_OK(build_kv_pool(&p, L, D, 8, bs));
    BlockTable par, ch;
    block_table_init(&par), block_table_init(&ch);
    append(&bm, &par, 6, NULL);
    for (int pos = 0; pos < 6; pos++)
        for (int l = 0; l < L; l++)
            for (int d = 0; d < D; d++)
                kv_pool_k_row(&p, l, &par, pos)[d] = (float)(100 * pos + 10 * l + d),
                kv_pool_v_row(&p, l, &par, pos)[d] = (float)(5000 + 100 * pos + 10 * l + d);
    block_table_fork(&bm, &par, &ch);
    // shared rows are the same memory before the copy
    ck_assert_ptr_eq(kv_pool_k_row(&p, 1, &par, 5), kv_pool_k_row(&p, 1, &ch, 5));

    BlockCopy cp;
    int n_copies;
    CK_OK(block_table_prepare(&bm, &ch, 1, &cp, &n_copies));
    ck_assert_int_eq(n_copies, 1);
    kv_pool_copy_block(&p, cp.src, cp.dst);
    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++) kv_pool_k_row(&p, l, &ch, 6)[d] = -1.0f, kv_pool_v_row(&p, l, &ch, 6)[d] = -2.0f;
    block_table_commit(&ch, 1);
    CK_OK(block_table_prepare(&bm, &par, 1, &cp, &n_copies));
    ck_assert_int_eq(n_copies, 0);
    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++) kv_pool_k_row(&p, l, &par, 6)[d] = 7.0f, kv_pool_v_row(&p, l, &par, 6)[d] = 8.0f;
    block_table_commit(&par, 1);

    for (int pos = 0; pos < 7; pos++)
        for (int l = 0; l < L; l++)
            for (int d = 0; d < D; d++) {
                float k = (float)(100 * pos + 10 * l + d), v = (float)(5000 + 100 * pos + 10 * l + d);
                float pk = pos < 6 ? k : 7.0f, pv = pos < 6 ? v : 8.0f;
                float ck = pos < 6 ? k : -1.0f, cv = pos < 6 ? v : -2.0f;
                ck_assert_msg(kv_pool_k_row(&p, l, &par, pos)[d] == pk, "parent K pos %d", pos);
                ck_assert_msg(kv_pool_v_row(&p, l, &par, pos)[d] == pv, "parent V pos %d", pos);
                ck_assert_msg(kv_pool_k_row(&p, l, &ch, pos)[d] == ck, "child K pos %d", pos);
                ck_assert_msg(kv_pool_v_row(&p, l, &ch, pos)[d] == cv, "child V pos %d", pos);
            }
    // the full block is still one copy in memory; the partial one is two
    ck_assert_ptr_eq(kv_pool_k_row(&p, 0, &par, 3), kv_pool_k_row(&p, 0, &ch, 3));
    ck_assert_ptr_ne(kv_pool_k_row(&p, 0, &par, 4), kv_pool_k_row(&p, 0, &ch, 4));
    block_table_release(&bm, &par), block_table_release(&bm, &ch);
    ck_assert_int_eq(bm.n_free, 8);
    free_kv_pool(&p);
    free_block_manager(&bm);
}
END_TEST

// ----------------------------------------------------------------------------

// The automatic pool size (kv_blocks_auto): every slot a full context when the budget
// holds it, else what the budget holds, never below two contexts, never above INT_MAX.
START_TEST(test_auto_pool_size) {
    const double MiB = 1048576.0, GiB = 1024 * MiB;
    // 32 slots of 8192 positions in blocks of 64: 128 blocks a context, 4096 wanted
    ck_assert_int_eq(kv_blocks_auto(8192, 64, 32, 100 * GiB, 2 * MiB), 4096);
    ck_assert_int_eq(kv_blocks_auto(8192, 64, 32, 1 * GiB, 2 * MiB), 512);      // the budget's 512
    ck_assert_int_eq(kv_blocks_auto(8192, 64, 32, 1 * GiB + MiB, 2 * MiB), 512); // whole blocks only
    ck_assert_int_eq(kv_blocks_auto(8192, 64, 32, 10 * MiB, 2 * MiB), 256);     // two contexts at least
    ck_assert_int_eq(kv_blocks_auto(8192, 64, 32, 0, 2 * MiB), 256);            // nothing free
    ck_assert_int_eq(kv_blocks_auto(100, 64, 3, 100 * GiB, MiB), 6);            // a partial block per context
    ck_assert_int_eq(kv_blocks_auto(1 << 30, 1, 4096, 1e30, 1), INT_MAX);      // capped at INT_MAX
}
END_TEST

static Suite* kv_blocks_suite(void) {
    Suite* s = suite_create("kv_blocks");
    TCase* tc = tcase_create("blocks");
    tcase_add_test(tc, test_manager_build);
    tcase_add_test(tc, test_auto_pool_size);
    tcase_add_test(tc, test_alloc_exhaustion);
    tcase_add_test(tc, test_table_growth);
    tcase_add_test(tc, test_prepare_nomem);
    tcase_add_test(tc, test_fork_cow);
    tcase_add_test(tc, test_fork_of_fork);
    tcase_add_test(tc, test_release_order);
    tcase_add_test(tc, test_truncate);
    tcase_add_test(tc, test_prepare_twice);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, test_random_ops);
    tcase_set_timeout(tc, 600);
    suite_add_tcase(s, tc);

    tc = tcase_create("pool");
    tcase_add_test(tc, test_pool_build);
    tcase_add_test(tc, test_pool_rows);
    tcase_add_test(tc, test_pool_copy_block);
    tcase_add_test(tc, test_pool_cow_view);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return check_run_suite(kv_blocks_suite());
}
