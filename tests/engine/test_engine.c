/*
 * test_engine.c — the engine through the public API on the default model (SmolLM2):
 * request validation with messages that name the problem, nothing queued lost after a
 * rejection, stop tokens, max tokens, context exhaustion, release, cancel, seeded
 * determinism, batch independence (a request's tokens are the same alone and among
 * others), entropix traces and its pause token. Built once per backend like
 * test_batching.c (test_engine_cpu, test_engine_emu: CUDA under the SIMT emulator,
 * test_engine_gpu: exit 77 without a GPU or without the default model there).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "check_etx.h"
#include "check_main.h"
#include "engine/backend.h"
#include "etx/etx.h"

#if defined(ETX_TEST_BACKEND_EMU) || defined(ETX_TEST_BACKEND_GPU)
static const etx_device DEVICE = ETX_DEVICE_CUDA;
#else
static const etx_device DEVICE = ETX_DEVICE_CPU;
#endif

static etx_model* g_model;
static const int32_t PROMPT[] = {504, 3575, 282, 4649, 314, 253, 1345, 28, 284, 260};
#define N_PROMPT ((int)(sizeof PROMPT / sizeof PROMPT[0]))

static etx_engine* new_engine(int ctx) {
    etx_engine_options o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = ctx;
    etx_engine* e = NULL;
    etx_status s = etx_engine_create(g_model, &o, &e);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    return e;
}

static etx_request base_request(etx_policy pol, int max_tokens) {
    etx_request r = {.prompt = PROMPT, .n_prompt = N_PROMPT, .policy = pol, .max_tokens = max_tokens};
    return r;
}

// Runs one request alone and copies its tokens into out; returns the count.
static int run_alone(etx_request req, int32_t* out) {
    etx_engine* e = new_engine(256);
    int id;
    ck_assert_int_eq(etx_engine_submit(e, &req, &id).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_request_state st;
    ck_assert_int_eq(etx_engine_request_state(e, id, &st).code, ETX_OK);
    memcpy(out, st.tokens, (size_t)st.n_tokens * sizeof(int32_t));
    int n = st.n_tokens;
    etx_engine_free(e);
    return n;
}

START_TEST(submit_rejects_bad_requests_and_keeps_the_rest) {
    etx_engine* e = new_engine(16);
    int good;
    etx_request ok = base_request(etx_policy_default(ETX_POLICY_GREEDY), 3);
    ck_assert_int_eq(etx_engine_submit(e, &ok, &good).code, ETX_OK);

    int32_t long_prompt[16] = {0};
    etx_request r = ok;
    r.prompt = long_prompt;
    r.n_prompt = 16;
    int id = 123;
    etx_status s = etx_engine_submit(e, &r, &id);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "16 tokens") && strstr(s.message, "context"), "%s", s.message);
    ck_assert_int_eq(id, -1);

    r = ok;
    int32_t bad_tok[2] = {5, 49152};
    r.prompt = bad_tok;
    r.n_prompt = 2;
    s = etx_engine_submit(e, &r, &id);
    ck_assert_msg(s.code == ETX_ERR_INVALID_ARG && strstr(s.message, "49152") && strstr(s.message, "position 1"),
                  "%s", s.message);

    r = ok;
    r.n_prompt = 0;
    ck_assert_int_eq(etx_engine_submit(e, &r, &id).code, ETX_ERR_INVALID_ARG);
    r = ok;
    r.max_tokens = 0;
    ck_assert_ptr_nonnull(strstr(etx_engine_submit(e, &r, &id).message, "max_tokens"));
    r = ok;
    r.policy = etx_policy_default(ETX_POLICY_SAMPLE);
    r.policy.top_p = 0.0f;
    ck_assert_ptr_nonnull(strstr(etx_engine_submit(e, &r, &id).message, "top_p"));

    // the request accepted first is untouched and completes
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_request_state st;
    ck_assert_int_eq(etx_engine_request_state(e, good, &st).code, ETX_OK);
    ck_assert(st.phase == ETX_REQ_DONE_LENGTH || st.phase == ETX_REQ_DONE_STOP);
    ck_assert_int_ge(st.n_tokens, 1);
    etx_engine_free(e);
}
END_TEST

START_TEST(max_tokens_stop_tokens_and_context) {
    int32_t a[32];
    etx_request req = base_request(etx_policy_default(ETX_POLICY_GREEDY), 12);
    req.ignore_eos = 1;
    int n = run_alone(req, a);
    ck_assert_int_eq(n, 12);

    // stopping on the 6th token's id ends at its first occurrence, the token included
    int32_t stop = a[5];
    int first = 0;
    while (a[first] != stop) first++;
    req.stop_tokens = &stop;
    req.n_stop = 1;
    etx_engine* e = new_engine(256);
    int id;
    ck_assert_int_eq(etx_engine_submit(e, &req, &id).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_request_state st;
    etx_engine_request_state(e, id, &st);
    ck_assert_int_eq(st.phase, ETX_REQ_DONE_STOP);
    ck_assert_int_eq(st.n_tokens, first + 1);
    ck_assert_int_eq(st.tokens[first], stop);
    for (int i = 0; i < st.n_tokens; i++) ck_assert_int_eq(st.tokens[i], a[i]);
    etx_engine_free(e);

    // a context of prompt + 4 positions ends the request after 4 tokens
    e = new_engine(N_PROMPT + 4);
    req = base_request(etx_policy_default(ETX_POLICY_GREEDY), 100);
    req.ignore_eos = 1;
    ck_assert_int_eq(etx_engine_submit(e, &req, &id).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_engine_request_state(e, id, &st);
    ck_assert_int_eq(st.phase, ETX_REQ_DONE_LENGTH);
    ck_assert_int_eq(st.n_tokens, 4);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(st.tokens[i], a[i]);
    etx_engine_free(e);
}
END_TEST

START_TEST(greedy_first_token_is_argmax_of_logits) {
    etx_engine* e = new_engine(64);
    etx_model_info info;
    etx_model_get_info(g_model, &info);
    float* logits = malloc((size_t)info.vocab_size * sizeof(float));
    ck_assert_int_eq(etx_engine_logits(e, PROMPT, N_PROMPT, 0, logits).code, ETX_OK);
    int best = 0;
    for (int i = 1; i < info.vocab_size; i++)
        if (logits[i] > logits[best]) best = i;
    int32_t a[4];
    etx_request req = base_request(etx_policy_default(ETX_POLICY_GREEDY), 1);
    ck_assert_int_eq(run_alone(req, a), 1);
    ck_assert_int_eq(a[0], best);
    free(logits);
    etx_engine_free(e);
}
END_TEST

START_TEST(seeded_sampling_repeats_and_is_batch_independent) {
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.temperature = 1.2f;
    pol.top_p = 0.95f;
    pol.seed = 77;
    etx_request req = base_request(pol, 16);
    req.ignore_eos = 1;
    req.key = 5;
    int32_t alone[16], again[16];
    ck_assert_int_eq(run_alone(req, alone), 16);
    ck_assert_int_eq(run_alone(req, again), 16);
    for (int i = 0; i < 16; i++) ck_assert_int_eq(alone[i], again[i]);

    // the same request among others (different prompts, policies, lengths), submitted third
    etx_engine* e = new_engine(256);
    int ids[4];
    etx_request other = base_request(etx_policy_default(ETX_POLICY_SAMPLE), 7);
    other.prompt = PROMPT + 3;
    other.n_prompt = N_PROMPT - 3;
    other.key = 9;
    ck_assert_int_eq(etx_engine_submit(e, &other, &ids[0]).code, ETX_OK);
    etx_request greedy = base_request(etx_policy_default(ETX_POLICY_GREEDY), 20);
    ck_assert_int_eq(etx_engine_submit(e, &greedy, &ids[1]).code, ETX_OK);
    ck_assert_int_eq(etx_engine_submit(e, &req, &ids[2]).code, ETX_OK);
    other.policy.seed = 77;
    ck_assert_int_eq(etx_engine_submit(e, &other, &ids[3]).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_request_state st;
    etx_engine_request_state(e, ids[2], &st);
    ck_assert_int_eq(st.n_tokens, 16);
    for (int i = 0; i < 16; i++) ck_assert_int_eq(st.tokens[i], alone[i]);

    // another seed gives another continuation
    req.policy.seed = 78;
    int32_t other_seed[16];
    run_alone(req, other_seed);
    int diff = 0;
    for (int i = 0; i < 16; i++) diff += other_seed[i] != alone[i];
    ck_assert_int_gt(diff, 0);
    etx_engine_free(e);
}
END_TEST

START_TEST(release_and_unknown_ids) {
    etx_engine* e = new_engine(64);
    etx_request req = base_request(etx_policy_default(ETX_POLICY_GREEDY), 2);
    int a, b;
    ck_assert_int_eq(etx_engine_submit(e, &req, &a).code, ETX_OK);
    ck_assert_int_eq(etx_engine_submit(e, &req, &b).code, ETX_OK);
    ck_assert_int_ne(a, b);
    etx_status s = etx_engine_release(e, a);
    ck_assert_int_eq(s.code, ETX_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(s.message, "not finished"));
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    ck_assert_int_eq(etx_engine_release(e, a).code, ETX_OK);
    etx_request_state st;
    ck_assert_int_eq(etx_engine_request_state(e, a, &st).code, ETX_ERR_STATE);
    ck_assert_int_eq(etx_engine_request_state(e, b, &st).code, ETX_OK);
    ck_assert_int_eq(st.n_tokens, 2);
    ck_assert_int_eq(etx_engine_release(e, 999).code, ETX_ERR_STATE);
    etx_engine_free(e);
}
END_TEST

START_TEST(cancel_ends_a_running_request) {
    // one token per etx_engine_step (a CUDA engine would otherwise run up to 8 decode
    // steps per call), so the cancel lands after exactly two tokens
    etx_engine_options o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = 64;
    o.steps_per_sync = 1;
    etx_engine* e = NULL;
    CK_OK(etx_engine_create(g_model, &o, &e));
    etx_request req = base_request(etx_policy_default(ETX_POLICY_GREEDY), 8);
    int a, b;
    ck_assert_int_eq(etx_engine_submit(e, &req, &a).code, ETX_OK);
    ck_assert_int_eq(etx_engine_submit(e, &req, &b).code, ETX_OK);
    int active = 0;
    ck_assert_int_eq(etx_engine_step(e, &active).code, ETX_OK);
    ck_assert_int_eq(etx_engine_step(e, &active).code, ETX_OK);
    ck_assert_int_eq(active, 2);
    ck_assert_int_eq(etx_engine_cancel(e, a).code, ETX_OK);
    etx_request_state st;
    ck_assert_int_eq(etx_engine_request_state(e, a, &st).code, ETX_OK);
    ck_assert_int_eq(st.phase, ETX_REQ_DONE_STOP);
    ck_assert_int_eq(st.n_tokens, 2); // tokens so far are kept
    ck_assert_int_eq(etx_engine_release(e, a).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK); // the other one goes on
    ck_assert_int_eq(etx_engine_request_state(e, b, &st).code, ETX_OK);
    ck_assert_int_eq(st.n_tokens, 8);
    ck_assert_int_eq(etx_engine_cancel(e, b).code, ETX_OK); // finished: left as it is
    ck_assert_int_eq(etx_engine_request_state(e, b, &st).code, ETX_OK);
    ck_assert_int_eq(st.phase, ETX_REQ_DONE_LENGTH);
    ck_assert_int_eq(etx_engine_cancel(e, 999).code, ETX_ERR_STATE);
    etx_engine_free(e);
}
END_TEST

START_TEST(engine_options_are_checked) {
    etx_engine_options o = etx_engine_options_default();
    etx_engine* e = NULL;
    etx_status s;
    if (DEVICE == ETX_DEVICE_CPU) { // this suite's CPU build links no CUDA backend
        o.device = ETX_DEVICE_CUDA;
        s = etx_engine_create(g_model, &o, &e);
        ck_assert_int_eq(s.code, ETX_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(s.message, "cuda"));
    }
    o.device = (etx_device)7;
    s = etx_engine_create(g_model, &o, &e);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(s.message, "unknown device"));
    o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = 1 << 20;
    s = etx_engine_create(g_model, &o, &e);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(s.message, "context length"));
    ck_assert_ptr_null(e);
}
END_TEST

static etx_engine* new_tracing_engine(void) {
    etx_engine_options o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = 256;
    o.trace = 1;
    etx_engine* e = NULL;
    etx_status s = etx_engine_create(g_model, &o, &e);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    return e;
}

START_TEST(entropix_is_batch_independent_and_traced) {
    etx_policy pol = etx_policy_default(ETX_POLICY_ENTROPIX);
    pol.seed = 11;
    etx_request req = base_request(pol, 24);
    req.ignore_eos = 1;
    req.key = 2;
    int32_t alone[24];
    ck_assert_int_eq(run_alone(req, alone), 24);

    etx_engine* e = new_tracing_engine();
    int ids[3];
    etx_request other = base_request(etx_policy_default(ETX_POLICY_SAMPLE), 9);
    other.prompt = PROMPT + 2;
    other.n_prompt = N_PROMPT - 2;
    ck_assert_int_eq(etx_engine_submit(e, &other, &ids[0]).code, ETX_OK);
    ck_assert_int_eq(etx_engine_submit(e, &req, &ids[1]).code, ETX_OK);
    etx_request greedy = base_request(etx_policy_default(ETX_POLICY_GREEDY), 30);
    ck_assert_int_eq(etx_engine_submit(e, &greedy, &ids[2]).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_request_state st;
    etx_engine_request_state(e, ids[1], &st);
    ck_assert_int_eq(st.n_tokens, 24);
    for (int i = 0; i < 24; i++) ck_assert_int_eq(st.tokens[i], alone[i]);

    // one trace record per token, with sane signals; tracing does not change the tokens
    const etx_trace_record* tr;
    int n;
    ck_assert_int_eq(etx_engine_trace(e, ids[1], &tr, &n).code, ETX_OK);
    ck_assert_int_eq(n, 24);
    int seen[ETX_BRANCH_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(tr[i].step, i);
        ck_assert_int_eq(tr[i].token, alone[i]);
        ck_assert_int_eq(tr[i].request_id, ids[1]);
        ck_assert(tr[i].logprob <= 0.0f && isfinite(tr[i].logprob));
        ck_assert(tr[i].entropy >= 0.0f && tr[i].entropy <= 15.6f); // log2(49152) = 15.58
        ck_assert(tr[i].varentropy >= 0.0f && isfinite(tr[i].varentropy));
        ck_assert(tr[i].attn_entropy >= 0.0f && tr[i].attn_entropy <= log2f((float)(N_PROMPT + i + 1)) + 1e-4f);
        ck_assert(tr[i].attn_varentropy >= 0.0f && tr[i].agreement >= 0.0f && tr[i].interaction >= 0.0f);
        ck_assert(tr[i].branch >= ETX_BRANCH_ARGMAX && tr[i].branch < ETX_BRANCH_COUNT);
        seen[tr[i].branch]++;
    }
    int branches = 0;
    for (int b = 0; b < ETX_BRANCH_COUNT; b++) branches += seen[b] > 0;
    ck_assert_msg(branches >= 2, "only one branch taken in 24 entropix tokens");
    // greedy requests are traced too, as greedy
    ck_assert_int_eq(etx_engine_trace(e, ids[2], &tr, &n).code, ETX_OK);
    ck_assert_int_eq(tr[0].branch, ETX_BRANCH_GREEDY);
    etx_engine_free(e);

    // tracing off: asking for a trace is an error
    e = new_engine(64);
    int id;
    ck_assert_int_eq(etx_engine_submit(e, &req, &id).code, ETX_OK);
    ck_assert_int_eq(etx_engine_trace(e, id, &tr, &n).code, ETX_ERR_STATE);
    etx_engine_free(e);
}
END_TEST

// Thresholds that put every step in HELV: the pause token (the model's " ..." = 4563)
// alternates with resampled tokens.
START_TEST(entropix_pause_token_from_the_tokenizer) {
    etx_policy pol = etx_policy_default(ETX_POLICY_ENTROPIX);
    pol.entropix.low_ent_thresh = 0.0f;
    pol.entropix.high_ent_thresh = 0.0f;
    pol.entropix.low_vent_thresh = 1e6f;
    etx_request req = base_request(pol, 6);
    req.ignore_eos = 1;
    int32_t t[6];
    ck_assert_int_eq(run_alone(req, t), 6);
    ck_assert_int_eq(t[0], 4563);
    ck_assert_int_ne(t[1], 4563);
    ck_assert_int_eq(t[2], 4563);
    ck_assert_int_eq(t[4], 4563);
    // an explicit pause token wins; one outside the vocabulary is refused
    req.policy.entropix.pause_token = 30;
    ck_assert_int_eq(run_alone(req, t), 6);
    ck_assert_int_eq(t[0], 30);
    etx_engine* e = new_engine(64);
    int id;
    req.policy.entropix.pause_token = 49152;
    etx_status s = etx_engine_submit(e, &req, &id);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(s.message, "pause"));
    etx_engine_free(e);
}
END_TEST

int main(void) {
    const BackendOps* ops = NULL;
    if (backend_pick(DEVICE, &ops).code != ETX_OK) {
        fprintf(stderr, "test_engine: no CUDA device: skipped\n");
        return CHECK_SKIPPED;
    }
#ifdef ETX_TEST_BACKEND_GPU
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0) { // a GPU machine may have no copy (no internet there)
        fprintf(stderr, "test_engine: %s is missing: skipped\n", ETX_DEFAULT_MODEL);
        return CHECK_SKIPPED;
    }
#endif
    fprintf(stderr, "test_engine: backend %s\n", ops->name);
    etx_status s = etx_model_load(ETX_DEFAULT_MODEL, &g_model);
    if (s.code != ETX_OK) {
        fprintf(stderr, "test_engine: cannot load the default model (run models/fetch_default_model.sh): %s\n",
                s.message);
        return EXIT_FAILURE;
    }
    Suite* su = suite_create("engine");
    TCase* tc = tcase_create("engine");
    tcase_add_test(tc, submit_rejects_bad_requests_and_keeps_the_rest);
    tcase_add_test(tc, max_tokens_stop_tokens_and_context);
    tcase_add_test(tc, greedy_first_token_is_argmax_of_logits);
    // ~140 of the suite's ~200 decode steps: minutes of SmolLM2 under the emulator with the
    // sanitizers. On that backend test_batching_emu checks batch independence (sampling,
    // entropix, traces to the bit) on the tiny model instead; the CPU and a GPU run both.
    if (!ops->emulated) tcase_add_test(tc, seeded_sampling_repeats_and_is_batch_independent);
    tcase_add_test(tc, release_and_unknown_ids);
    tcase_add_test(tc, cancel_ends_a_running_request);
    tcase_add_test(tc, engine_options_are_checked);
    if (!ops->emulated) tcase_add_test(tc, entropix_is_batch_independent_and_traced);
    tcase_add_test(tc, entropix_pause_token_from_the_tokenizer);
    suite_add_tcase(su, tc);
    const int rc = check_run_suite_nofork(su);
    etx_model_free(g_model);
    return rc;
}
