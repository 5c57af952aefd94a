/*
 * test_cpu_backend.c — the CPU backend through its operations table (engine/backend.h),
 * below the engine: a hand-built step (a prefill chunk that samples, a decode row that
 * samples) picks the argmax of the backend's own logits for greedy picks; several decode
 * steps in one call give the tokens of the same steps one at a time; a malformed step
 * (block id out of range, a pick made twice or by nobody, rows beyond the chunk, a
 * multi-step call whose rows are not decode rows) is refused with a message naming the
 * problem, and nothing runs. The engine's own suites (tests/engine/) cover the rest.
 */
#include <check.h>
#include <string.h>

#include "check_etx.h"
#include "check_main.h"
#include "engine/backend.h"
#include "policy/sampler.h"

#define TINY ETX_FIXTURES "/models/tiny-llama-gqa"

static etx_model* g_m;
static const BackendOps* g_ops;

static Backend* create(int trace) {
    BackendConfig c = {.max_batch = 4, .max_seq_len = 64, .max_chunk = 16, .kv_blocks = 32, .kv_block_size = 4,
                       .trace = trace, .n_threads = 1};
    Backend* b = NULL;
    CK_OK(g_ops->create(g_m, &c, &b));
    ck_assert_ptr_nonnull(b);
    return b;
}

static const int32_t PROMPT[] = {5, 17, 42, 99, 120, 7};
static const int BLOCKS_A[] = {0, 1, 2, 3, 4, 5, 6, 7}; // 32 positions
static const int BLOCKS_B[] = {8, 9, 10, 11, 12, 13, 14, 15};

START_TEST(greedy_picks_are_the_argmax_of_the_logits) {
    Backend* b = create(1);
    etx_policy greedy = etx_policy_default(ETX_POLICY_GREEDY);
    // sequence A: its 6-token prompt as one chunk; sequence B: the same prompt, then a
    // decode row at position 6 with the token A picks
    BackendWork w[2] = {{0, BLOCKS_A, 8, 0, 6, PROMPT, 0}, {0, BLOCKS_B, 8, 0, 6, PROMPT, -1}};
    BackendPick p[1] = {{.policy = &greedy, .key = 1, .step = 0, .prev_token = 7, .pause_token = -1, .request_id = 3}};
    BackendStep s = {NULL, 0, w, 2, p, 1};
    CK_OK(g_ops->step(b, &s));
    float logits[320];
    CK_OK(g_ops->logits(b, PROMPT, 6, 0, logits));
    ck_assert_int_eq(p[0].token, sample_argmax(logits, 320));
    ck_assert_int_eq(p[0].trace.request_id, 3);
    ck_assert_int_eq(p[0].trace.token, p[0].token);
    ck_assert_int_eq(p[0].trace.branch, ETX_BRANCH_GREEDY);

    int32_t next = p[0].token, seq[7];
    memcpy(seq, PROMPT, sizeof PROMPT);
    seq[6] = next;
    BackendWork d = {1, BLOCKS_B, 8, 6, 1, &next, 0};
    BackendPick q = {.policy = &greedy, .key = 2, .step = 1, .prev_token = next, .pause_token = -1};
    BackendStep s2 = {NULL, 0, &d, 1, &q, 1};
    CK_OK(g_ops->step(b, &s2));
    CK_OK(g_ops->logits(b, seq, 7, 0, logits));
    ck_assert_int_eq(q.token, sample_argmax(logits, 320));
    g_ops->destroy(b);
}
END_TEST

START_TEST(several_decode_steps_equal_single_steps) {
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.seed = 9;
    int32_t one[5][2], many[5 * 2];
    for (int mode = 0; mode < 2; mode++) {
        Backend* b = create(0);
        BackendWork pre[2] = {{0, BLOCKS_A, 8, 0, 6, PROMPT, -1}, {0, BLOCKS_B, 8, 0, 4, PROMPT, -1}};
        BackendStep s0 = {NULL, 0, pre, 2, NULL, 0};
        CK_OK(g_ops->step(b, &s0));
        int32_t in[2] = {11, 12};
        BackendWork w[2] = {{1, BLOCKS_A, 8, 6, 1, &in[0], 0}, {1, BLOCKS_B, 8, 4, 1, &in[1], 1}};
        BackendPick p[2] = {{.policy = &pol, .key = 0, .step = 0, .prev_token = 11, .pause_token = -1},
                            {.policy = &pol, .key = 1, .step = 0, .prev_token = 12, .pause_token = -1}};
        BackendStep s = {NULL, 0, w, 2, p, 2};
        if (mode == 1) {
            CK_OK(g_ops->decode_steps(b, &s, 5, many, NULL));
        } else {
            for (int j = 0; j < 5; j++) {
                CK_OK(g_ops->step(b, &s));
                for (int i = 0; i < 2; i++) {
                    one[j][i] = in[i] = p[i].token;
                    w[i].pos0++;
                    p[i].prev_token = p[i].token;
                    p[i].step++;
                }
            }
        }
        g_ops->destroy(b);
    }
    for (int j = 0; j < 5; j++)
        for (int i = 0; i < 2; i++)
            ck_assert_msg(one[j][i] == many[j * 2 + i], "step %d row %d: %d vs %d", j, i, one[j][i], many[j * 2 + i]);
}
END_TEST

static void expect_refused(Backend* b, BackendStep* s, const char* what) {
    etx_status st = g_ops->step(b, s);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(st.message, what), "expected '%s' in: %s", what, st.message);
}

START_TEST(malformed_steps_are_refused) {
    Backend* b = create(0);
    etx_policy greedy = etx_policy_default(ETX_POLICY_GREEDY);
    BackendPick p[2] = {{.policy = &greedy, .pause_token = -1}, {.policy = &greedy, .pause_token = -1}};
    const int bad_blocks[] = {0, 99};
    BackendWork w = {0, bad_blocks, 2, 0, 6, PROMPT, -1};
    BackendStep s = {NULL, 0, &w, 1, p, 0};
    expect_refused(b, &s, "block id 99");
    BackendWork two[2] = {{0, BLOCKS_A, 8, 0, 6, PROMPT, 0}, {0, BLOCKS_B, 8, 0, 6, PROMPT, 0}};
    s = (BackendStep){NULL, 0, two, 2, p, 2};
    expect_refused(b, &s, "repeated");
    two[1].pick = -1;
    expect_refused(b, &s, "2 picks but 1 works sample");
    int32_t many[40] = {0};
    BackendWork big = {0, BLOCKS_A, 8, 0, 20, many, -1}; // max_chunk is 16
    s = (BackendStep){NULL, 0, &big, 1, p, 0};
    expect_refused(b, &s, "max_chunk 16");
    BackendWork few = {0, BLOCKS_A, 1, 0, 6, PROMPT, -1}; // 6 positions need 2 blocks of 4
    s = (BackendStep){NULL, 0, &few, 1, p, 0};
    expect_refused(b, &s, "2 needed");
    BackendWork pre = {0, BLOCKS_A, 8, 0, 6, PROMPT, 0};
    s = (BackendStep){NULL, 0, &pre, 1, p, 1};
    int32_t tokens[4];
    etx_status st = g_ops->decode_steps(b, &s, 2, tokens, NULL);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(st.message, "not decode row"), "%s", st.message);
    g_ops->destroy(b);
}
END_TEST

START_TEST(the_table_describes_the_cpu) {
    ck_assert_str_eq(g_ops->name, "cpu");
    ck_assert_int_eq(g_ops->emulated, 0);
    ck_assert_int_eq(g_ops->device, ETX_DEVICE_CPU);
    ck_assert_int_eq(g_ops->steps_per_sync, 1);
    ck_assert_int_eq(g_ops->available(), 1);
    const BackendOps* picked = NULL;
    CK_OK(backend_pick(ETX_DEVICE_CPU, &picked));
    ck_assert_ptr_eq(picked, g_ops);
    CK_OK(backend_pick(ETX_DEVICE_AUTO, &picked)); // this suite links no CUDA backend
    ck_assert_ptr_eq(picked, g_ops);
    ck_assert_int_eq(backend_pick(ETX_DEVICE_CUDA, &picked).code, ETX_ERR_UNSUPPORTED);
    ck_assert_int_eq(backend_pick((etx_device)7, &picked).code, ETX_ERR_INVALID_ARG);
    Backend* b = create(0);
    long long wb = 0, kvb = 0, db = -1;
    g_ops->sizes(b, &wb, &kvb, &db);
    ck_assert_int_gt(wb, 0);
    ck_assert_int_eq(kvb, 2LL * 2 * 2 * 16 * 4); // K and V, 2 layers, 2 KV heads of 16 floats
    ck_assert_int_eq(db, 0);
    ck_assert_int_eq(g_ops->d2h_bytes(b), 0);
    g_ops->destroy(b);
}
END_TEST

int main(void) {
    etx_status s = etx_model_load(TINY, &g_m);
    if (s.code != ETX_OK) {
        fprintf(stderr, "test_cpu_backend: %s\n", s.message);
        return 1;
    }
    g_ops = etx_cpu_backend();
    Suite* su = suite_create("cpu_backend");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, greedy_picks_are_the_argmax_of_the_logits);
    tcase_add_test(tc, several_decode_steps_equal_single_steps);
    tcase_add_test(tc, malformed_steps_are_refused);
    tcase_add_test(tc, the_table_describes_the_cpu);
    suite_add_tcase(su, tc);
    const int rc = check_run_suite_nofork(su); // the model was loaded first
    etx_model_free(g_m);
    return rc;
}
