/*
 * test_scheduler.c — the continuous-batching scheduler on its own (no model): admission
 * up to the batch and the pool, aligned prefill chunks within the step's token budget,
 * preemption of the newest sequence when blocks run out and exact replay afterwards,
 * failure of what can never fit, and a long random simulation in which every sequence
 * ends with exactly the tokens it asked for.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "test_rng.h"
#include "engine/scheduler.h"

// A simulated request: a prompt of n_prompt tokens that wants `want` generated tokens.
typedef struct {
    SchedSeq s;
    int want;
    int generated;
    int sampled_at[4096]; // position whose logits produced each generated token
} Sim;

static void sim_init(Sim* x, int id, int n_prompt, int want) {
    memset(x, 0, sizeof *x);
    x->s.id = id;
    x->s.order = id;
    x->s.n_prompt = n_prompt;
    x->s.n_known = n_prompt;
    x->s.state = SEQ_WAITING;
    block_table_init(&x->s.table);
    x->want = want;
}

// What the engine does after a plan: commit, then every sampled work yields a token;
// a sequence that has all its tokens finishes.
static void sim_execute(BlockManager* bm, SchedPlan* p) {
    sched_commit(p);
    for (int i = 0; i < p->n_work; i++) {
        SchedWork* w = &p->work[i];
        Sim* x = (Sim*)w->seq;
        ck_assert_int_eq(w->seq->n_computed, w->pos0 + w->n);
        ck_assert_int_eq(w->seq->table.n_pos, w->seq->n_computed);
        if (!w->sample) continue;
        x->sampled_at[x->generated++] = w->pos0 + w->n - 1;
        x->s.n_known++;
        if (x->generated == x->want) sched_finish(bm, &x->s);
    }
}

static int blocks_in_use(const BlockManager* bm) { return bm->n_blocks - bm->n_free; }

START_TEST(config_is_validated) {
    SchedConfig c = {4, 64, 128, NULL, NULL};
    ck_assert_int_eq(sched_config_validate(&c).code, ETX_ERR_INVALID_ARG); // budget below the chunk
    c = (SchedConfig){0, 256, 128, NULL, NULL};
    ck_assert_int_eq(sched_config_validate(&c).code, ETX_ERR_INVALID_ARG);
    c = (SchedConfig){4, 256, 0, NULL, NULL};
    ck_assert_int_eq(sched_config_validate(&c).code, ETX_ERR_INVALID_ARG);
    c = (SchedConfig){4, 256, 128, NULL, NULL};
    ck_assert_int_eq(sched_config_validate(&c).code, ETX_OK);
}
END_TEST

START_TEST(admission_stops_at_max_batch_in_submission_order) {
    BlockManager bm;
    ck_assert_int_eq(build_block_manager(&bm, 100, 4).code, ETX_OK);
    SchedConfig cfg = {2, 64, 8, NULL, NULL};
    Sim x[5];
    SchedSeq* seqs[5];
    for (int i = 0; i < 5; i++) sim_init(&x[i], i, 3, 2), seqs[i] = &x[4 - i].s; // any order in the list
    SchedPlan p;
    build_sched_plan(&p);
    sched_plan_step(&bm, &cfg, seqs, 5, &p);
    ck_assert_int_eq(p.n_work, 2);
    ck_assert_ptr_eq(p.work[0].seq, &x[0].s);
    ck_assert_ptr_eq(p.work[1].seq, &x[1].s);
    ck_assert_int_eq(p.work[0].kind, WORK_PREFILL);
    ck_assert_int_eq(p.work[0].n, 3);
    ck_assert_int_eq(p.work[0].sample, 1);
    ck_assert_int_eq(x[2].s.state, SEQ_WAITING);
    sim_execute(&bm, &p);
    // step 2: the two running sequences decode; the batch is still full
    sched_plan_step(&bm, &cfg, seqs, 5, &p);
    ck_assert_int_eq(p.n_work, 2);
    ck_assert_int_eq(p.work[0].kind, WORK_DECODE);
    ck_assert_int_eq(p.work[0].pos0, 3);
    sim_execute(&bm, &p); // x0 and x1 have their 2 tokens now
    ck_assert_int_eq(x[0].s.state, SEQ_FINISHED);
    sched_plan_step(&bm, &cfg, seqs, 5, &p);
    ck_assert_int_eq(p.n_work, 2);
    ck_assert_ptr_eq(p.work[0].seq, &x[2].s);
    ck_assert_ptr_eq(p.work[1].seq, &x[3].s);
    free_sched_plan(&p);
    for (int i = 0; i < 5; i++) block_table_release(&bm, &x[i].s.table);
    ck_assert_int_eq(blocks_in_use(&bm), 0);
    free_block_manager(&bm);
}
END_TEST

START_TEST(prefill_chunks_are_aligned_and_budgeted) {
    BlockManager bm;
    ck_assert_int_eq(build_block_manager(&bm, 1000, 16).code, ETX_OK);
    SchedConfig cfg = {8, 130, 128, NULL, NULL}; // room for one chunk and two decode rows a step
    Sim a, b, c;
    sim_init(&a, 0, 300, 1);
    sim_init(&b, 1, 5, 3);
    sim_init(&c, 2, 200, 1);
    SchedSeq* seqs[] = {&a.s, &b.s, &c.s};
    SchedPlan p;
    build_sched_plan(&p);
    int steps = 0, chunks_a[8], n_chunks_a = 0;
    while (a.s.state != SEQ_FINISHED || b.s.state != SEQ_FINISHED || c.s.state != SEQ_FINISHED) {
        sched_plan_step(&bm, &cfg, seqs, 3, &p);
        ck_assert_int_gt(p.n_work, 0);
        int tokens = 0;
        for (int i = 0; i < p.n_work; i++) {
            SchedWork* w = &p.work[i];
            tokens += w->n;
            if (w->kind == WORK_PREFILL) {
                ck_assert_int_eq(w->pos0 % cfg.chunk, 0); // aligned
                ck_assert_int_le(w->pos0 + w->n, w->seq->n_prompt);
                ck_assert_int_eq(w->sample, w->pos0 + w->n == w->seq->n_prompt);
                if (w->seq == &a.s) chunks_a[n_chunks_a++] = w->n;
            }
        }
        ck_assert_int_le(tokens, cfg.max_step_tokens);
        sim_execute(&bm, &p);
        ck_assert_int_lt(++steps, 50);
    }
    ck_assert_int_eq(n_chunks_a, 3);
    ck_assert_int_eq(chunks_a[0], 128);
    ck_assert_int_eq(chunks_a[1], 128);
    ck_assert_int_eq(chunks_a[2], 44);
    ck_assert_int_eq(b.generated, 3);
    ck_assert_int_eq(b.sampled_at[0], 4);
    ck_assert_int_eq(b.sampled_at[2], 6);
    free_sched_plan(&p);
    ck_assert_int_eq(blocks_in_use(&bm), 0);
    free_block_manager(&bm);
}
END_TEST

START_TEST(preemption_takes_the_newest_and_replays_exactly) {
    BlockManager bm;
    ck_assert_int_eq(build_block_manager(&bm, 6, 4).code, ETX_OK); // 24 positions in all
    SchedConfig cfg = {4, 64, 8, NULL, NULL};
    Sim a, b;
    sim_init(&a, 0, 6, 12); // needs 18 positions in the end (5 blocks)
    sim_init(&b, 1, 5, 2);  // 7 positions (2 blocks)
    SchedSeq* seqs[] = {&a.s, &b.s};
    SchedPlan p;
    build_sched_plan(&p);
    int preempted_b = 0, steps = 0, replay_rows = 0;
    while (a.s.state != SEQ_FINISHED || b.s.state != SEQ_FINISHED) {
        sched_plan_step(&bm, &cfg, seqs, 2, &p);
        ck_assert_int_eq(p.n_failed, 0);
        for (int i = 0; i < p.n_preempted; i++) {
            ck_assert_ptr_eq(p.preempted[i], &b.s); // never the older one
            ck_assert_int_eq(b.s.n_computed, 0);
            ck_assert_int_eq(b.s.table.n_ids, 0);
            preempted_b++;
        }
        for (int i = 0; i < p.n_work; i++)
            if (p.work[i].kind == WORK_DECODE && !p.work[i].sample) replay_rows++;
        ck_assert_int_le(blocks_in_use(&bm), 6);
        sim_execute(&bm, &p);
        ck_assert_int_lt(++steps, 100);
    }
    (void)preempted_b;
    // every token came from the position right after the previous one: nothing skipped
    for (int i = 0; i < a.want; i++) ck_assert_int_eq(a.sampled_at[i], a.s.n_prompt - 1 + i);
    for (int i = 0; i < b.want; i++) ck_assert_int_eq(b.sampled_at[i], b.s.n_prompt - 1 + i);
    ck_assert_int_eq(a.s.n_preemptions, 0);
    free_sched_plan(&p);
    ck_assert_int_eq(blocks_in_use(&bm), 0);
    free_block_manager(&bm);
}
END_TEST

// A pool so small that the second sequence must be preempted mid-generation, and its
// recomputation replays its generated tokens without sampling them again.
START_TEST(preempted_sequence_recomputes_prompt_then_replays_tokens) {
    BlockManager bm;
    ck_assert_int_eq(build_block_manager(&bm, 5, 2).code, ETX_OK); // 10 positions
    SchedConfig cfg = {2, 16, 4, NULL, NULL};
    Sim a, b;
    sim_init(&a, 0, 2, 7); // grows to 9 positions: forces b out
    sim_init(&b, 1, 3, 4);
    SchedSeq* seqs[] = {&a.s, &b.s};
    SchedPlan p;
    build_sched_plan(&p);
    int b_preempted_at_known = -1, replayed = 0, steps = 0;
    while (a.s.state != SEQ_FINISHED || b.s.state != SEQ_FINISHED) {
        sched_plan_step(&bm, &cfg, seqs, 2, &p);
        if (p.n_preempted) b_preempted_at_known = b.s.n_known;
        for (int i = 0; i < p.n_work; i++) {
            SchedWork* w = &p.work[i];
            if (w->seq == &b.s && b_preempted_at_known > 0 && w->kind == WORK_DECODE && !w->sample) replayed++;
        }
        sim_execute(&bm, &p);
        ck_assert_int_lt(++steps, 100);
    }
    ck_assert_int_gt(b.s.n_preemptions, 0);
    ck_assert_int_gt(b_preempted_at_known, b.s.n_prompt); // it had generated something
    // the generated tokens before the preemption, except the last (its next input), are replayed
    ck_assert_int_eq(replayed, b_preempted_at_known - b.s.n_prompt - 1);
    for (int i = 0; i < b.want; i++) ck_assert_int_eq(b.sampled_at[i], b.s.n_prompt - 1 + i);
    free_sched_plan(&p);
    free_block_manager(&bm);
}
END_TEST

START_TEST(what_never_fits_fails_and_the_rest_runs) {
    BlockManager bm;
    ck_assert_int_eq(build_block_manager(&bm, 4, 4).code, ETX_OK); // 16 positions
    SchedConfig cfg = {4, 64, 8, NULL, NULL};
    Sim big, small;
    sim_init(&big, 0, 16, 1); // 16 + 1 positions: 5 blocks
    sim_init(&small, 1, 3, 1);
    SchedSeq* seqs[] = {&big.s, &small.s};
    SchedPlan p;
    build_sched_plan(&p);
    sched_plan_step(&bm, &cfg, seqs, 2, &p);
    ck_assert_int_eq(p.n_failed, 1);
    ck_assert_ptr_eq(p.failed[0], &big.s);
    ck_assert_int_eq(p.n_work, 1);
    ck_assert_ptr_eq(p.work[0].seq, &small.s);
    sim_execute(&bm, &p);
    ck_assert_int_eq(small.s.state, SEQ_FINISHED);
    free_sched_plan(&p);
    ck_assert_int_eq(blocks_in_use(&bm), 0);
    free_block_manager(&bm);
}
END_TEST

// Many sequences arriving over time into a tight pool: every one ends with exactly its
// tokens, each sampled from the position after the previous one, blocks are never over
// committed, and when nothing is left every block is free again.
START_TEST(random_simulation_loses_nothing) {
    enum { N = 60 };
    static Sim x[N];
    SchedSeq* seqs[N];
    uint64_t rng = rng_seed(12345);
#define RND(n) rng_below(&rng, n)
    BlockManager bm;
    ck_assert_int_eq(build_block_manager(&bm, 40, 8).code, ETX_OK); // 320 positions
    SchedConfig cfg = {6, 48, 16, NULL, NULL};
    for (int i = 0; i < N; i++) {
        int n_prompt = 1 + RND(90);
        sim_init(&x[i], i, n_prompt, 1 + RND(60));
    }
    SchedPlan p;
    build_sched_plan(&p);
    int arrived = 0, steps = 0, finished = 0;
    long preemptions = 0;
    while (finished < N) {
        if (arrived < N && RND(3) == 0) arrived += 1 + RND(4);
        if (arrived > N) arrived = N;
        int n = 0;
        for (int i = 0; i < arrived; i++) seqs[n++] = &x[i].s;
        sched_plan_step(&bm, &cfg, seqs, n, &p);
        ck_assert_int_eq(p.n_failed, 0); // 90 + 60 positions always fit 320
        preemptions += p.n_preempted;
        int running = 0;
        for (int i = 0; i < arrived; i++) running += x[i].s.state == SEQ_RUNNING;
        ck_assert_int_le(running, cfg.max_batch);
        ck_assert_int_ge(bm.n_free, 0);
        int unfinished = 0;
        for (int i = 0; i < arrived; i++) unfinished += x[i].s.state != SEQ_FINISHED;
        if (unfinished) ck_assert_int_gt(p.n_work, 0); // something always makes progress
        sim_execute(&bm, &p);
        finished = 0;
        for (int i = 0; i < N; i++) finished += x[i].s.state == SEQ_FINISHED;
        ck_assert_int_lt(++steps, 20000);
    }
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(x[i].generated, x[i].want);
        for (int t = 0; t < x[i].want; t++) ck_assert_int_eq(x[i].sampled_at[t], x[i].s.n_prompt - 1 + t);
    }
    ck_assert_int_gt(preemptions, 0); // the pool was tight enough to exercise preemption
    ck_assert_int_eq(blocks_in_use(&bm), 0);
    free_sched_plan(&p);
    free_block_manager(&bm);
#undef RND
}
END_TEST

int main(void) {
    Suite* s = suite_create("scheduler");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, config_is_validated);
    tcase_add_test(tc, admission_stops_at_max_batch_in_submission_order);
    tcase_add_test(tc, prefill_chunks_are_aligned_and_budgeted);
    tcase_add_test(tc, preemption_takes_the_newest_and_replays_exactly);
    tcase_add_test(tc, preempted_sequence_recomputes_prompt_then_replays_tokens);
    tcase_add_test(tc, what_never_fits_fails_and_the_rest_runs);
    tcase_add_test(tc, random_simulation_loses_nothing);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
