/*
 * test_batching.c — continuous batching on the default model (SmolLM2, GGUF Q4_1):
 * batch invariance (64 requests with mixed prompts, lengths and policies give the same
 * tokens and trace records at batch 1, 7 and 64), preemption (a pool too small for the
 * load preempts and recomputes, and the tokens do not change), a request that can never
 * fit fails with a reason while the others complete, and the engine's counters.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etx/etx.h"

static etx_model* g_model;
static const int32_t BASE[] = {504, 3575, 282, 4649, 314, 253, 1345, 28, 284, 260, 1789, 5248, 30, 1076, 6614, 281};
#define N_BASE ((int)(sizeof BASE / sizeof BASE[0]))
#define N_REQ 64
#define MAX_TOK 6

typedef struct {
    int32_t prompt[320];
    int n_prompt;
    etx_policy policy;
    int max_tokens;
} Job;

// Job i: a prompt of varying length (one of them longer than two prefill chunks), and a
// policy that cycles through greedy, sampling with several settings and entropix.
static Job make_job(int i) {
    Job j;
    j.n_prompt = i == 5 ? 300 : 3 + (i * 7) % 40;
    for (int t = 0; t < j.n_prompt; t++) j.prompt[t] = BASE[(t + i) % N_BASE] + (t / N_BASE) % 5;
    switch (i % 4) {
    case 0: j.policy = etx_policy_default(ETX_POLICY_GREEDY); break;
    case 1:
        j.policy = etx_policy_default(ETX_POLICY_SAMPLE);
        j.policy.temperature = 0.7f + 0.1f * (float)(i % 5);
        j.policy.top_k = i % 3 ? 40 : 0;
        j.policy.top_p = 0.9f;
        break;
    case 2:
        j.policy = etx_policy_default(ETX_POLICY_SAMPLE);
        j.policy.min_p = 0.05f;
        break;
    default: j.policy = etx_policy_default(ETX_POLICY_ENTROPIX); break;
    }
    j.policy.seed = 1000 + (uint64_t)i;
    j.max_tokens = MAX_TOK + i % 3;
    return j;
}

typedef struct {
    int32_t tokens[N_REQ][16];
    int n[N_REQ];
    etx_request_phase phase[N_REQ];
    etx_trace_record trace[N_REQ][16];
    etx_engine_stats stats;
} Results;

static etx_engine* new_engine(int max_batch, int block_size, int blocks, int trace) {
    etx_engine_options o = etx_engine_options_default();
    o.device = ETX_DEVICE_CPU;
    o.max_seq_len = 512;
    o.max_batch = max_batch;
    o.kv_block_size = block_size;
    o.kv_blocks = blocks;
    o.trace = trace;
    etx_engine* e = NULL;
    etx_status s = etx_engine_create(g_model, &o, &e);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    return e;
}

// Runs the first n jobs through one engine and collects their tokens and traces.
static void run_jobs(int n, int max_batch, int block_size, int blocks, Results* out) {
    etx_engine* e = new_engine(max_batch, block_size, blocks, 1);
    int ids[N_REQ];
    for (int i = 0; i < n; i++) {
        Job j = make_job(i);
        etx_request r = {.prompt = j.prompt, .n_prompt = j.n_prompt, .policy = j.policy, .max_tokens = j.max_tokens,
                         .key = (uint64_t)i};
        etx_status s = etx_engine_submit(e, &r, &ids[i]);
        ck_assert_msg(s.code == ETX_OK, "job %d: %s", i, s.message);
    }
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    for (int i = 0; i < n; i++) {
        etx_request_state st;
        ck_assert_int_eq(etx_engine_request_state(e, ids[i], &st).code, ETX_OK);
        ck_assert_msg(st.phase == ETX_REQ_DONE_STOP || st.phase == ETX_REQ_DONE_LENGTH, "job %d: phase %d (%s)", i,
                      st.phase, st.error);
        out->n[i] = st.n_tokens;
        out->phase[i] = st.phase;
        memcpy(out->tokens[i], st.tokens, (size_t)st.n_tokens * sizeof(int32_t));
        const etx_trace_record* tr;
        int nt;
        ck_assert_int_eq(etx_engine_trace(e, ids[i], &tr, &nt).code, ETX_OK);
        ck_assert_int_eq(nt, st.n_tokens);
        memcpy(out->trace[i], tr, (size_t)nt * sizeof *tr);
    }
    ck_assert_int_eq(etx_engine_get_stats(e, &out->stats).code, ETX_OK);
    etx_engine_free(e);
}

static void assert_same(const Results* a, const Results* b, int n, const char* what) {
    for (int i = 0; i < n; i++) {
        ck_assert_msg(a->n[i] == b->n[i], "%s: job %d has %d tokens vs %d", what, i, a->n[i], b->n[i]);
        ck_assert_int_eq(a->phase[i], b->phase[i]);
        for (int t = 0; t < a->n[i]; t++) {
            ck_assert_msg(a->tokens[i][t] == b->tokens[i][t], "%s: job %d token %d: %d vs %d", what, i, t,
                          a->tokens[i][t], b->tokens[i][t]);
            // trace records: the same metrics to the bit (every row is computed alike)
            ck_assert_msg(memcmp(&a->trace[i][t], &b->trace[i][t], sizeof(etx_trace_record)) == 0,
                          "%s: job %d trace record %d differs", what, i, t);
        }
    }
}

START_TEST(batch_invariance_at_1_7_and_64) {
    static Results alone, seven, all;
    run_jobs(N_REQ, 1, 0, 0, &alone);
    run_jobs(N_REQ, 7, 0, 0, &seven);
    run_jobs(N_REQ, 64, 0, 0, &all);
    assert_same(&alone, &seven, N_REQ, "batch 7 vs 1");
    assert_same(&alone, &all, N_REQ, "batch 64 vs 1");
    ck_assert_int_eq(alone.stats.max_batch, 1);
    ck_assert_int_eq(all.stats.max_batch, 64);
    // batching: 64 requests of at most 8 tokens take far fewer steps than one at a time
    ck_assert_int_lt(all.stats.steps * 4, alone.stats.steps);
    ck_assert_int_eq(all.stats.preemptions, 0);
}
END_TEST

START_TEST(preemption_recomputes_without_changing_tokens) {
    static Results roomy, tight;
    const int n = 12;
    run_jobs(n, 12, 16, 0, &roomy);
    // 12 blocks of 16 positions: job 5 alone needs 19 blocks for its 300-token prompt, so
    // give it room for that and little more; everything else must wait or be preempted
    run_jobs(n, 12, 16, 22, &tight);
    assert_same(&roomy, &tight, n, "tight pool vs roomy");
    ck_assert_int_eq(roomy.stats.preemptions, 0);
    ck_assert_int_gt(tight.stats.preemptions, 0);
    ck_assert_int_le(tight.stats.kv_blocks_peak, 22);
    // recomputation shows up as extra work
    ck_assert_int_gt(tight.stats.prefill_tokens + tight.stats.decode_rows,
                     roomy.stats.prefill_tokens + roomy.stats.decode_rows);
}
END_TEST

START_TEST(a_request_that_cannot_fit_fails_and_others_finish) {
    etx_engine* e = new_engine(4, 16, 3, 0); // 48 positions in all
    Job small = make_job(0), big = make_job(5);
    etx_request rs = {.prompt = small.prompt, .n_prompt = small.n_prompt, .policy = small.policy, .max_tokens = 4};
    etx_request rb = {.prompt = big.prompt, .n_prompt = big.n_prompt, .policy = big.policy, .max_tokens = 4};
    int id_s, id_b, id_s2;
    ck_assert_int_eq(etx_engine_submit(e, &rs, &id_s).code, ETX_OK);
    ck_assert_int_eq(etx_engine_submit(e, &rb, &id_b).code, ETX_OK);
    ck_assert_int_eq(etx_engine_submit(e, &rs, &id_s2).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_request_state st;
    ck_assert_int_eq(etx_engine_request_state(e, id_b, &st).code, ETX_OK);
    ck_assert_int_eq(st.phase, ETX_REQ_FAILED);
    ck_assert_msg(strstr(st.error, "KV blocks") && strstr(st.error, "kv_blocks"), "message: %s", st.error);
    ck_assert_int_eq(etx_engine_request_state(e, id_s, &st).code, ETX_OK);
    ck_assert_int_eq(st.phase, ETX_REQ_DONE_LENGTH);
    ck_assert_int_eq(st.n_tokens, 4);
    ck_assert_int_eq(etx_engine_request_state(e, id_s2, &st).code, ETX_OK);
    ck_assert_int_eq(st.phase, ETX_REQ_DONE_LENGTH);
    etx_engine_free(e);
}
END_TEST

START_TEST(engine_batching_options_are_checked) {
    etx_engine_options o = etx_engine_options_default();
    o.device = ETX_DEVICE_CPU;
    etx_engine* e = NULL;
    o.kv_block_size = 1000;
    etx_status s = etx_engine_create(g_model, &o, &e);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "kv_block_size"), "%s", s.message);
    o.kv_block_size = 0;
    o.max_batch = -2;
    s = etx_engine_create(g_model, &o, &e);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "max_batch"), "%s", s.message);
    o.max_batch = 0;
    o.kv_blocks = -1;
    ck_assert_int_eq(etx_engine_create(g_model, &o, &e).code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_null(e);
}
END_TEST

int main(void) {
    etx_status s = etx_model_load(ETX_DEFAULT_MODEL, &g_model);
    if (s.code != ETX_OK) {
        fprintf(stderr, "test_batching: %s (run models/fetch_default_model.sh)\n", s.message);
        return EXIT_FAILURE;
    }
    Suite* su = suite_create("batching");
    TCase* tc = tcase_create("core");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, batch_invariance_at_1_7_and_64);
    tcase_add_test(tc, preemption_recomputes_without_changing_tokens);
    tcase_add_test(tc, a_request_that_cannot_fit_fails_and_others_finish);
    tcase_add_test(tc, engine_batching_options_are_checked);
    suite_add_tcase(su, tc);
    SRunner* sr = srunner_create(su);
    // no fork: the model was loaded (with OpenMP threads) before the tests, and libgomp's
    // thread pool does not survive fork() — a forked test would wait for it forever
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    etx_model_free(g_model);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
