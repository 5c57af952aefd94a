/*
 * test_nonfinite.c — a model whose output is not finite at some position stops only the
 * request at that position, with an error naming it (host/engine/engine.c, fail_pick),
 * on every backend: built once per backend like test_engine.c (test_nonfinite_cpu,
 * test_nonfinite_emu: CUDA under the SIMT emulator, test_nonfinite_gpu).
 *
 * The model is the tiny fixture tiny-llama-gqa (untied LM head), damaged in memory after
 * it loads, before an engine uploads it (the loaders refuse NaN weights in files:
 * tests/model/test_loader.c). Two damages:
 *   - one token's embedding row set to NaN: a sequence is fine until that token is its
 *     input, and every later pick of that sequence sees NaN logits. The token is chosen
 *     as the k-th greedy token of request A on the undamaged model (on this backend), so A
 *     generates k + 1 tokens and then fails at position n_prompt + k + 1, while request B,
 *     which never meets the token, must finish with the tokens it has alone;
 *   - one LM head row set to +inf: every pick's logits hold an infinity, so every request
 *     fails at its first pick (generated 0), traced or not, whatever the policy.
 * The batch runs with one decode step per call and with several (the multi-step path,
 * where the fault travels in the ring of tokens and the row runs on with token 0), and
 * after the failure a fresh request reuses the KV blocks the failed one left with NaN
 * in them and must still give B's tokens.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_etx.h"
#include "check_main.h"
#include "engine/backend.h"
#include "etx/etx.h"
#include "model/model.h"

#if defined(ETX_TEST_BACKEND_EMU) || defined(ETX_TEST_BACKEND_GPU)
static const etx_device DEVICE = ETX_DEVICE_CUDA;
#else
static const etx_device DEVICE = ETX_DEVICE_CPU;
#endif

#define TINY ETX_FIXTURES "/models/tiny-llama-gqa"
#define MAX_TOKENS 14

static const int32_t PROMPT_A[] = {17, 120, 33, 250, 61, 9};
static const int32_t PROMPT_B[] = {200, 45, 77, 131, 12};
#define N_A ((int)(sizeof PROMPT_A / sizeof PROMPT_A[0]))
#define N_B ((int)(sizeof PROMPT_B / sizeof PROMPT_B[0]))

static etx_model* load_tiny(void) {
    etx_model* m = NULL;
    CK_OK(etx_model_load(TINY, &m));
    ck_assert_int_eq(m->cfg.tied_embeddings, 0); // the damages below rely on an untied head
    return m;
}

// steps: steps_per_sync (1, or several decode steps per call); trace: keep trace records.
// A small pool of small blocks, so that a later request reuses a failed one's blocks.
static etx_engine* new_engine(const etx_model* m, int steps, int trace) {
    etx_engine_options o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = 64;
    o.max_batch = 4;
    o.kv_block_size = 8;
    o.kv_blocks = 16;
    o.steps_per_sync = steps;
    o.trace = trace;
    etx_engine* e = NULL;
    CK_OK(etx_engine_create(m, &o, &e));
    return e;
}

static etx_request greedy(const int32_t* prompt, int n) {
    etx_request r = {.prompt = prompt, .n_prompt = n, .policy = etx_policy_default(ETX_POLICY_GREEDY),
                     .max_tokens = MAX_TOKENS, .ignore_eos = 1};
    return r;
}

// Runs req alone on m; its tokens into out (MAX_TOKENS of them: greedy, ignore_eos).
static void run_alone(const etx_model* m, etx_request req, int32_t* out) {
    etx_engine* e = new_engine(m, 1, 0);
    int id;
    CK_OK(etx_engine_submit(e, &req, &id));
    CK_OK(etx_engine_run(e));
    etx_request_state st;
    CK_OK(etx_engine_request_state(e, id, &st));
    ck_assert_int_eq(st.phase, ETX_REQ_DONE_LENGTH);
    ck_assert_int_eq(st.n_tokens, MAX_TOKENS);
    memcpy(out, st.tokens, MAX_TOKENS * sizeof(int32_t));
    etx_engine_free(e);
}

static int contains(const int32_t* x, int n, int32_t t) {
    for (int i = 0; i < n; i++)
        if (x[i] == t) return 1;
    return 0;
}

// The request failed with a message naming it, the fault and the position.
static void expect_failed(const etx_engine* e, int id, const char* what, int n_prompt, int generated) {
    etx_request_state st;
    CK_OK(etx_engine_request_state(e, id, &st));
    ck_assert_msg(st.phase == ETX_REQ_FAILED, "request %d: phase %d (error '%s')", id, st.phase, st.error);
    ck_assert_int_eq(st.n_tokens, generated);
    char want[160];
    snprintf(want, sizeof want, "request %d: %s", id, what);
    ck_assert_msg(strstr(st.error, want), "message '%s' lacks '%s'", st.error, want);
    snprintf(want, sizeof want, "at position %d (prompt %d + generated %d)", n_prompt + generated, n_prompt,
             generated);
    ck_assert_msg(strstr(st.error, want), "message '%s' lacks '%s'", st.error, want);
}

static void expect_tokens(const etx_engine* e, int id, const int32_t* want, int n, const char* who) {
    etx_request_state st;
    CK_OK(etx_engine_request_state(e, id, &st));
    ck_assert_msg(st.phase == ETX_REQ_DONE_LENGTH, "%s: phase %d (error '%s')", who, st.phase, st.error);
    ck_assert_int_eq(st.n_tokens, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(st.tokens[i] == want[i], "%s: token %d is %d, alone %d", who, i, st.tokens[i], want[i]);
}

START_TEST(nan_embedding_fails_one_request_at_its_position) {
    etx_model* clean = load_tiny();
    int32_t a[MAX_TOKENS], b[MAX_TOKENS];
    run_alone(clean, greedy(PROMPT_A, N_A), a);
    run_alone(clean, greedy(PROMPT_B, N_B), b);
    etx_model_free(clean);
    // the poison: A's k-th token, which neither A's prompt and earlier tokens nor B meet
    int k = -1;
    for (int j = 1; j < MAX_TOKENS - 2 && k < 0; j++)
        if (!contains(PROMPT_A, N_A, a[j]) && !contains(a, j, a[j]) && !contains(PROMPT_B, N_B, a[j]) &&
            !contains(b, MAX_TOKENS, a[j]))
            k = j;
    ck_assert_msg(k >= 0, "no token of A's greedy run suits as the poison; change the prompts");
    const int32_t poison = a[k];
    fprintf(stderr, "test_nonfinite: poison token %d, A's token %d\n", poison, k);

    etx_model* m = load_tiny();
    const int dim = m->cfg.dim;
    for (int i = 0; i < dim; i++) m->w.token_embedding[(size_t)poison * dim + i] = NAN;
    for (int steps = 1; steps <= 4; steps += 3) {
        etx_engine* e = new_engine(m, steps, 0);
        etx_request ra = greedy(PROMPT_A, N_A), rb = greedy(PROMPT_B, N_B);
        int ida, idb;
        CK_OK(etx_engine_submit(e, &ra, &ida));
        CK_OK(etx_engine_submit(e, &rb, &idb));
        CK_OK(etx_engine_run(e)); // a request's failure is not the step's
        // A took its tokens up to the poison, then could not pick the next one
        expect_failed(e, ida, "non-finite logits", N_A, k + 1);
        etx_request_state st;
        CK_OK(etx_engine_request_state(e, ida, &st));
        for (int i = 0; i <= k; i++) ck_assert_int_eq(st.tokens[i], a[i]);
        expect_tokens(e, idb, b, MAX_TOKENS, "B beside the failing A");
        // a new request on the blocks A left behind
        CK_OK(etx_engine_release(e, ida));
        CK_OK(etx_engine_release(e, idb));
        int idc;
        CK_OK(etx_engine_submit(e, &rb, &idc));
        CK_OK(etx_engine_run(e));
        expect_tokens(e, idc, b, MAX_TOKENS, "B after the failed A");
        etx_engine_free(e);
    }
    etx_model_free(m);
}
END_TEST

START_TEST(infinite_lm_head_fails_every_request_at_its_first_pick) {
    etx_model* m = load_tiny();
    const int dim = m->cfg.dim;
    for (int i = 0; i < dim; i++) m->w.lm_head[(size_t)7 * dim + i] = i % 2 ? INFINITY : 1.0f;
    for (int trace = 0; trace <= 1; trace++) {
        etx_engine* e = new_engine(m, 0, trace);
        etx_request r[3] = {greedy(PROMPT_A, N_A), greedy(PROMPT_B, N_B), greedy(PROMPT_A, N_A)};
        r[1].policy = etx_policy_default(ETX_POLICY_SAMPLE);
        r[2].policy = etx_policy_default(ETX_POLICY_ENTROPIX);
        r[2].policy.entropix.pause_token = 3;
        int id[3];
        for (int i = 0; i < 3; i++) CK_OK(etx_engine_submit(e, &r[i], &id[i]));
        CK_OK(etx_engine_run(e));
        for (int i = 0; i < 3; i++) expect_failed(e, id[i], "non-finite logits", r[i].n_prompt, 0);
        if (trace) {
            const etx_trace_record* recs;
            int n;
            CK_OK(etx_engine_trace(e, id[2], &recs, &n));
            ck_assert_int_eq(n, 0); // no token, no record
        }
        etx_engine_free(e);
    }
    etx_model_free(m);
}
END_TEST

int main(void) {
    const BackendOps* ops = NULL;
    if (backend_pick(DEVICE, &ops).code != ETX_OK) {
        fprintf(stderr, "test_nonfinite: no CUDA device: skipped\n");
        return CHECK_SKIPPED;
    }
    fprintf(stderr, "test_nonfinite: backend %s\n", ops->name);
    Suite* su = suite_create("nonfinite");
    TCase* tc = tcase_create("nonfinite");
    tcase_add_test(tc, nan_embedding_fails_one_request_at_its_position);
    tcase_add_test(tc, infinite_lm_head_fails_every_request_at_its_first_pick);
    suite_add_tcase(su, tc);
    return check_run_suite_nofork(su);
}
