/*
 * test_batching.c — the engine on one backend, end to end: one suite built once per
 * backend (test_batching_cpu; test_batching_emu: CUDA under the SIMT emulator;
 * test_batching_gpu: CUDA on a GPU, exit 77 without one), so every backend is held to the
 * same contract:
 *   - batch invariance: requests with mixed prompts, lengths and policies (greedy, sample
 *     with several settings, top-nσ with the entropy-based temperature among them, entropix,
 *     a learned network) give the same tokens and the same trace records,
 *     to the bit, at every batch size; and at a context of 4096 (the tiny model with its
 *     context raised; prompts of up to 520 tokens, so attention runs over three of its
 *     256-position splits) at batch 1, 7 and 64;
 *   - preemption: a pool too small for the load preempts and recomputes without changing
 *     a token; a request that can never fit fails with a reason, the others finish;
 *   - several decode steps per synchronisation give the same tokens and trace records as
 *     one, stop tokens honoured at the same token;
 *   - what comes back: nothing on the CPU; on CUDA the tokens (4 bytes each) and, when
 *     tracing, the trace record, nothing else;
 *   - CUDA only: greedy tokens agree with the CPU backend on a real model.
 * The sizes follow the backend's speed: the default model (SmolLM2) and 64 requests on
 * the CPU and a GPU; the tiny fixture model and 12 requests under the emulator.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "tiny_context.h"
#include "engine/backend.h"
#include "etx/etx.h"

#define TINY ETX_FIXTURES "/models/tiny-llama-gqa"

// The backend under test and the sizes that suit it.
typedef struct {
    const char* name;
    etx_device device;
    const char* model;     // batch invariance and preemption run on it
    int n_req;             // requests of the invariance test
    int batches[3];        // ... run at these batch sizes (the last = n_req)
    int long_prompt;       // the length of job 5's prompt (more than two prefill chunks where it fits)
    int max_seq_len;
    int block, tight_blocks; // preemption: block size, and a pool that cannot hold the load
    int32_t pause_token;   // entropix pause token (-1: the model's " ...")
} Backend_case;

// on the tiny model: 12 requests, contexts of 128
#define TINY_SIZES TINY, 12, {1, 5, 12}, 60, 128, 4, 20, 3
// on the default model: 64 requests, one prompt of 300 tokens (three prefill chunks)
#define DEFAULT_SIZES ETX_DEFAULT_MODEL, 64, {1, 7, 64}, 300, 512, 16, 22, -1
#if defined(ETX_TEST_BACKEND_EMU)
static Backend_case BC = {"cuda (emulator)", ETX_DEVICE_CUDA, TINY_SIZES};
#elif defined(ETX_TEST_BACKEND_GPU)
static Backend_case BC = {"cuda", ETX_DEVICE_CUDA, DEFAULT_SIZES};
#else
static Backend_case BC = {"cpu", ETX_DEVICE_CPU, DEFAULT_SIZES};
#endif

static etx_model* g_model; // BC.model
static etx_model* g_tiny;  // the tiny fixture model (multi-step, limits)
static etx_model* g_tiny_4k; // the same weights with a context of 4096 (tiny_context.h)
static int g_vocab;
static const int32_t BASE[] = {504, 3575, 282, 4649, 314, 253, 1345, 28, 284, 260, 1789, 5248, 30, 1076, 6614, 281};
#define N_BASE ((int)(sizeof BASE / sizeof BASE[0]))
#define MAX_REQ 64
#define MAX_TOK 6

typedef struct {
    int32_t prompt[520];
    int n_prompt;
    etx_policy policy;
    int max_tokens;
    int ignore_eos;
} Job;

// A learned policy's network with fixed pseudo-random weights and all four action kinds
// (registered once; its id).
static uint32_t learned_net(void) {
    static uint32_t id;
    if (id) return id;
    static etx_learned_net n;
    n.n_actions = 4;
    n.actions[0] = (etx_learned_action){.kind = ETX_ACTION_ARGMAX};
    n.actions[1] = (etx_learned_action){.kind = ETX_ACTION_SAMPLE, .temperature = 0.9f, .top_k = 20, .top_p = 0.95f};
    n.actions[2] = (etx_learned_action){.kind = ETX_ACTION_PAUSE};
    n.actions[3] = (etx_learned_action){.kind = ETX_ACTION_ADAPTIVE};
    n.n_layers = 1;
    n.hidden[0] = 16;
    for (int i = 0; i < ETX_LEARNED_FEATURES; i++) n.mean[i] = 0.0f, n.scale[i] = 4.0f;
    uint32_t x = 12345u;
    for (int i = 0; i < ETX_LEARNED_MAX_WEIGHTS; i++) {
        x = x * 1664525u + 1013904223u;
        n.w[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
    }
    ck_assert_int_eq(etx_learned_register(&n, &id).code, ETX_OK);
    return id;
}

// Job i: a prompt of varying length (job 5 a long one), and a policy that cycles through
// greedy, sampling with several settings, entropix, learned and dslider.
static Job make_job(int i) {
    Job j;
    j.ignore_eos = 0;
    j.n_prompt = i == 5 ? BC.long_prompt : 3 + (i * 7) % 40;
    for (int t = 0; t < j.n_prompt; t++) j.prompt[t] = (BASE[(t + i) % N_BASE] + (t / N_BASE) % 5) % g_vocab;
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
        if (i % 8 == 2 && i >= 8) { // dslider: a state carried from step to step
            j.policy = etx_policy_default(ETX_POLICY_DSLIDER);
            j.policy.dslider.dirichlet_bias = i % 16 == 10 ? 1.2f : -1e6f;
        } else if (i % 8 == 6) { // the baselines that read the row's statistics
            j.policy.top_n_sigma = 1.5f;
            j.policy.edt_theta = 0.8f;
        } else {
            j.policy.min_p = 0.05f;
        }
        break;
    default:
        j.policy = etx_policy_default(i % 8 == 7 ? ETX_POLICY_LEARNED : ETX_POLICY_ENTROPIX);
        j.policy.entropix.pause_token = BC.pause_token;
        if (i % 8 == 7) j.policy.learned = learned_net();
        break;
    }
    j.policy.seed = 1000 + (uint64_t)i;
    j.max_tokens = MAX_TOK + i % 3;
    return j;
}

typedef struct {
    int32_t tokens[MAX_REQ][32];
    int n[MAX_REQ];
    etx_request_phase phase[MAX_REQ];
    etx_trace_record trace[MAX_REQ][32];
    etx_engine_stats stats;
} Results;

typedef struct {
    etx_device device;
    int max_seq_len, max_batch, block, blocks, trace, steps_per_sync;
} EngineSpec;

static etx_engine* new_engine(const etx_model* m, EngineSpec sp) {
    etx_engine_options o = etx_engine_options_default();
    o.device = sp.device;
    o.max_seq_len = sp.max_seq_len;
    o.max_batch = sp.max_batch;
    o.kv_block_size = sp.block;
    o.kv_blocks = sp.blocks;
    o.trace = sp.trace;
    o.steps_per_sync = sp.steps_per_sync;
    etx_engine* e = NULL;
    etx_status s = etx_engine_create(m, &o, &e);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    return e;
}

// Runs n requests (jobs[i], with key i; stop: an extra stop id or -1) through one engine
// and collects their tokens, phases, traces and the engine's counters.
static void run_requests(const etx_model* m, EngineSpec sp, const Job* jobs, int n, int32_t stop, Results* out) {
    etx_engine* e = new_engine(m, sp);
    int ids[MAX_REQ];
    for (int i = 0; i < n; i++) {
        etx_request r = {.prompt = jobs[i].prompt, .n_prompt = jobs[i].n_prompt, .policy = jobs[i].policy,
                         .max_tokens = jobs[i].max_tokens, .ignore_eos = jobs[i].ignore_eos, .key = (uint64_t)i,
                         .stop_tokens = &stop, .n_stop = stop >= 0};
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
        if (sp.trace) {
            const etx_trace_record* tr;
            int nt;
            ck_assert_int_eq(etx_engine_trace(e, ids[i], &tr, &nt).code, ETX_OK);
            ck_assert_int_eq(nt, st.n_tokens);
            memcpy(out->trace[i], tr, (size_t)nt * sizeof *tr);
        }
    }
    ck_assert_int_eq(etx_engine_get_stats(e, &out->stats).code, ETX_OK);
    etx_engine_free(e);
}

// The first n jobs on the main model, traced.
static void run_jobs(int n, int max_batch, int block, int blocks, Results* out) {
    static Job jobs[MAX_REQ];
    for (int i = 0; i < n; i++) jobs[i] = make_job(i);
    EngineSpec sp = {BC.device, BC.max_seq_len, max_batch, block, blocks, 1, 0};
    run_requests(g_model, sp, jobs, n, -1, out);
}

static void assert_same(const Results* a, const Results* b, int n, int traced, const char* what) {
    for (int i = 0; i < n; i++) {
        ck_assert_msg(a->n[i] == b->n[i], "%s: job %d has %d tokens vs %d", what, i, a->n[i], b->n[i]);
        ck_assert_int_eq(a->phase[i], b->phase[i]);
        for (int t = 0; t < a->n[i]; t++) {
            ck_assert_msg(a->tokens[i][t] == b->tokens[i][t], "%s: job %d token %d: %d vs %d", what, i, t,
                          a->tokens[i][t], b->tokens[i][t]);
            // trace records: the same metrics to the bit (every row is computed alike)
            if (traced)
                ck_assert_msg(memcmp(&a->trace[i][t], &b->trace[i][t], sizeof(etx_trace_record)) == 0,
                              "%s: job %d trace record %d differs", what, i, t);
        }
    }
}

START_TEST(batch_invariance) {
    static Results alone, some, all;
    const int n = BC.n_req;
    run_jobs(n, BC.batches[0], 0, 0, &alone);
    run_jobs(n, BC.batches[1], 0, 0, &some);
    run_jobs(n, BC.batches[2], 0, 0, &all);
    assert_same(&alone, &some, n, 1, "a middle batch vs 1");
    assert_same(&alone, &all, n, 1, "every request in one batch vs 1");
    ck_assert_int_eq(alone.stats.max_batch, BC.batches[0]);
    ck_assert_int_eq(all.stats.max_batch, BC.batches[2]);
    ck_assert_int_eq(all.stats.device, BC.device);
    // batching: n requests of at most 8 tokens take far fewer steps than one at a time
    ck_assert_int_lt(all.stats.steps * 4, alone.stats.steps);
    ck_assert_int_eq(all.stats.preemptions, 0);
}
END_TEST

// At a context of 4096, 64 requests at batch 1, 7 and 64: tokens and trace records to the
// bit. Jobs as make_job's (policies cycling) on the tiny model, two with prompts of 300 and
// 520 tokens (prefill chunks and attention splits of 256 positions crossed: 3 splits) and
// one of 250 tokens generating 12 (its decode rows cross the first split boundary).
#define LONG_N 64
START_TEST(batch_invariance_at_long_context) {
    static Job jobs[LONG_N];
    static Results res[3];
    static const int batches[3] = {1, 7, 64};
    for (int i = 0; i < LONG_N; i++) {
        jobs[i] = make_job(i);
        const int len = i == 0 ? 520 : i == 21 ? 300 : i == 10 ? 250 : jobs[i].n_prompt;
        if (len > (int)(sizeof jobs[i].prompt / sizeof jobs[i].prompt[0]))
            ck_abort_msg("job %d: prompt of %d tokens does not fit the job", i, len);
        jobs[i].n_prompt = len;
        for (int t = 0; t < len; t++) jobs[i].prompt[t] = (int32_t)(2 + (t * 37 + i * 11 + t / 7) % 318);
        if (jobs[i].policy.kind == ETX_POLICY_ENTROPIX || jobs[i].policy.kind == ETX_POLICY_LEARNED)
            jobs[i].policy.entropix.pause_token = 3; // the tiny model's
        if (i == 10) {
            jobs[i].max_tokens = 12;
            jobs[i].ignore_eos = 1;
        }
    }
    for (int b = 0; b < 3; b++)
        run_requests(g_tiny_4k, (EngineSpec){BC.device, 4096, batches[b], 16, 0, 1, 0}, jobs, LONG_N, -1, &res[b]);
    assert_same(&res[0], &res[1], LONG_N, 1, "ctx 4096: batch 7 vs 1");
    assert_same(&res[0], &res[2], LONG_N, 1, "ctx 4096: batch 64 vs 1");
    ck_assert_int_eq(res[2].stats.max_batch, 64);
    ck_assert_int_eq(res[2].stats.preemptions, 0);
    ck_assert_int_eq(res[0].n[10], 12);
}
END_TEST

START_TEST(preemption_recomputes_without_changing_tokens) {
    static Results roomy, tight;
    const int n = 12;
    run_jobs(n, 12, BC.block, 0, &roomy);
    // job 5's long prompt alone takes most of the tight pool; everything else must wait
    // or be preempted
    run_jobs(n, 12, BC.block, BC.tight_blocks, &tight);
    assert_same(&roomy, &tight, n, 1, "tight pool vs roomy");
    ck_assert_int_eq(roomy.stats.preemptions, 0);
    ck_assert_int_gt(tight.stats.preemptions, 0);
    ck_assert_int_le(tight.stats.kv_blocks_peak, BC.tight_blocks);
    // recomputation shows up as extra work
    ck_assert_int_gt(tight.stats.prefill_tokens + tight.stats.decode_rows,
                     roomy.stats.prefill_tokens + roomy.stats.decode_rows);
}
END_TEST

START_TEST(a_request_that_cannot_fit_fails_and_others_finish) {
    // 3 blocks of 4 positions: a 20-token prompt can never fit, 3-token ones can
    EngineSpec sp = {BC.device, 128, 4, 4, 3, 0, 0};
    etx_engine* e = new_engine(g_tiny, sp);
    int32_t big[20], small[3] = {5, 6, 7};
    for (int i = 0; i < 20; i++) big[i] = 2 + i;
    etx_request rs = {.prompt = small, .n_prompt = 3, .policy = etx_policy_default(ETX_POLICY_GREEDY),
                      .max_tokens = 4, .ignore_eos = 1};
    etx_request rb = rs;
    rb.prompt = big;
    rb.n_prompt = 20;
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

// n requests of policy kind, seed 11, max_tokens each, ignoring EOS, with distinct short
// prompts inside a vocabulary of `vocab`.
static void simple_jobs(Job* jobs, int n, int vocab, etx_policy_kind kind, int max_tokens) {
    for (int i = 0; i < n; i++) {
        jobs[i].n_prompt = 3 + (i * 5) % 23;
        for (int t = 0; t < jobs[i].n_prompt; t++)
            jobs[i].prompt[t] = (int32_t)((7 + i * 31 + t * 13) % (vocab - 2) + 2);
        jobs[i].policy = etx_policy_default(kind);
        jobs[i].policy.seed = 11;
        if (kind == ETX_POLICY_ENTROPIX || kind == ETX_POLICY_LEARNED) jobs[i].policy.entropix.pause_token = 3;
        jobs[i].max_tokens = max_tokens;
        jobs[i].ignore_eos = 1;
    }
}

// Entropix requests on the tiny model (vocabulary 320).
static void tiny_jobs(Job* jobs, int n, int max_tokens) { simple_jobs(jobs, n, 320, ETX_POLICY_ENTROPIX, max_tokens); }

// Several decode steps per synchronisation: the same tokens and trace records as one step
// per sync, stop tokens honoured at exactly the same token (the rest of the k steps is
// discarded), and the calls counted.
START_TEST(several_steps_per_sync_change_nothing) {
    static Job jobs[6];
    static Results one, eight;
    tiny_jobs(jobs, 6, 24);
    for (int i = 4; i < 6; i++) { // two dslider requests: their state lives on the device for k steps
        jobs[i].policy = etx_policy_default(ETX_POLICY_DSLIDER);
        jobs[i].policy.seed = 11 + (uint64_t)i;
        jobs[i].policy.dslider.support = 8 * i - 24;
    }
    int32_t stop_id = -1;
    for (int stop = 0; stop < 2; stop++) {
        // second round: request 0's 6th token of the first round becomes a stop id, so some
        // requests end in the middle of a k-step call
        const int32_t s = stop ? stop_id : -1;
        run_requests(g_tiny, (EngineSpec){BC.device, 128, 6, 4, 0, 1, 1}, jobs, 6, s, &one);
        run_requests(g_tiny, (EngineSpec){BC.device, 128, 6, 4, 0, 1, 8}, jobs, 6, s, &eight);
        ck_assert_int_eq(one.stats.multi_steps, 0);
        ck_assert_int_gt(eight.stats.multi_steps, 0);
        ck_assert_int_eq(eight.stats.steps_per_sync, 8);
        int stopped = 0;
        for (int i = 0; i < 6; i++) stopped += one.n[i] < 24;
        assert_same(&one, &eight, 6, 1, "8 steps per sync vs 1");
        if (stop) ck_assert_int_gt(stopped, 0); // the stop id did end some request early
        stop_id = one.tokens[0][5];
    }
}
END_TEST

// Only the tokens come back from a device, plus the trace record when tracing; nothing
// crosses on the CPU. The backend's default steps per sync: 1 on the CPU, 8 on CUDA.
START_TEST(what_comes_back) {
    static Job jobs[3];
    static Results plain, traced;
    tiny_jobs(jobs, 3, 5);
    EngineSpec sp = {BC.device, 128, 3, 16, 0, 0, 0};
    run_requests(g_tiny, sp, jobs, 3, -1, &plain);
    sp.trace = 1;
    run_requests(g_tiny, sp, jobs, 3, -1, &traced);
    assert_same(&plain, &traced, 3, 0, "traced vs plain");
    ck_assert_int_eq(plain.stats.device, BC.device);
    if (BC.device == ETX_DEVICE_CPU) {
        ck_assert_int_eq(plain.stats.d2h_bytes, 0);
        ck_assert_int_eq(traced.stats.d2h_bytes, 0);
        ck_assert_int_eq(plain.stats.steps_per_sync, 1);
        ck_assert_str_eq(plain.stats.device_name, "cpu");
    } else {
        ck_assert_int_eq(plain.stats.d2h_bytes, 3LL * 5 * 4);
        ck_assert_int_eq(traced.stats.d2h_bytes, 3LL * 5 * (4 + (long long)sizeof(etx_trace_record)));
        ck_assert_int_eq(plain.stats.steps_per_sync, 8);
    }
}
END_TEST

START_TEST(greedy_matches_the_cpu_backend) {
    // SmolLM2 (real weights: clear margins), 4 requests of 6 tokens: bf16 on the device vs
    // float32 on the CPU agree token for token here (checked margins are far above the
    // bf16 error of ~1 % of the logit spread measured by test_cuda_backend)
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0) { // a GPU machine may have no copy of it (no internet there)
        fprintf(stderr, "test_batching: SKIPPED greedy vs CPU: %s is missing\n", ETX_DEFAULT_MODEL);
        return;
    }
    etx_model* m = NULL;
    etx_status s = etx_model_load(ETX_DEFAULT_MODEL, &m);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    static Job jobs[4];
    static Results cpu, dev;
    etx_model_info info;
    etx_model_get_info(m, &info);
    simple_jobs(jobs, 4, info.vocab_size, ETX_POLICY_GREEDY, 6);
    run_requests(m, (EngineSpec){ETX_DEVICE_CPU, 128, 4, 16, 0, 0, 0}, jobs, 4, -1, &cpu);
    run_requests(m, (EngineSpec){BC.device, 128, 4, 16, 0, 0, 0}, jobs, 4, -1, &dev);
    ck_assert_int_eq(dev.stats.device, ETX_DEVICE_CUDA);
    ck_assert_int_eq(cpu.stats.device, ETX_DEVICE_CPU);
    assert_same(&cpu, &dev, 4, 0, "cuda vs cpu");
    etx_model_free(m);
}
END_TEST

START_TEST(engine_batching_options_are_checked) {
    etx_engine_options o = etx_engine_options_default();
    o.device = BC.device;
    etx_engine* e = NULL;
    o.kv_block_size = 1000;
    etx_status s = etx_engine_create(g_tiny, &o, &e);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "kv_block_size"), "%s", s.message);
    o.kv_block_size = 0;
    o.max_batch = -2;
    s = etx_engine_create(g_tiny, &o, &e);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "max_batch"), "%s", s.message);
    o.max_batch = 0;
    o.kv_blocks = -1;
    ck_assert_int_eq(etx_engine_create(g_tiny, &o, &e).code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_null(e);
}
END_TEST

int main(void) {
    const BackendOps* ops = NULL;
    if (backend_pick(BC.device, &ops).code != ETX_OK) {
        fprintf(stderr, "test_batching: backend %s cannot run here: skipped\n", BC.name);
        return CHECK_SKIPPED;
    }
#ifdef ETX_TEST_BACKEND_GPU
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0) { // a GPU machine may have no copy (no internet there)
        fprintf(stderr, "test_batching: %s is missing: the tiny model's sizes instead\n", ETX_DEFAULT_MODEL);
        BC = (Backend_case){"cuda", ETX_DEVICE_CUDA, TINY_SIZES};
    }
#endif
    g_model = load_model_or_die("test_batching", BC.model, " (run models/fetch_default_model.sh)");
    g_tiny = load_model_or_die("test_batching", TINY, " (run models/fetch_default_model.sh)");
    g_tiny_4k = tiny_model_with_context(TINY, 4096);
    etx_model_info info;
    etx_model_get_info(g_model, &info);
    g_vocab = info.vocab_size;
    fprintf(stderr, "test_batching: backend %s (%s)\n", BC.name, ops->name);

    Suite* su = suite_create("batching");
    TCase* tc = tcase_create("core");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, batch_invariance);
    tcase_add_test(tc, batch_invariance_at_long_context);
    tcase_add_test(tc, preemption_recomputes_without_changing_tokens);
    tcase_add_test(tc, a_request_that_cannot_fit_fails_and_others_finish);
    tcase_add_test(tc, several_steps_per_sync_change_nothing);
    tcase_add_test(tc, what_comes_back);
    if (BC.device != ETX_DEVICE_CPU) tcase_add_test(tc, greedy_matches_the_cpu_backend);
    tcase_add_test(tc, engine_batching_options_are_checked);
    suite_add_tcase(su, tc);
    const int rc = check_run_suite_nofork(su); // the models were loaded before the tests
    etx_model_free(g_model);
    etx_model_free(g_tiny);
    etx_model_free(g_tiny_4k);
    return rc;
}
