/*
 * test_samples.c — sample groups (etx_engine_submit_samples) on one backend: one suite
 * built per backend (test_samples_cpu, test_samples_emu: CUDA under the SIMT emulator,
 * test_samples_gpu), on the tiny fixture model.
 *   - a sample's tokens and trace records depend only on (prompt, policy, seed, key,
 *     index): the same to the bit at batch 1, 3 and 16, in a group of 1 or of 4, and
 *     whether its prompt was shared or recomputed (a pool so tight that waiting samples
 *     give their shared blocks up and running ones are preempted);
 *   - samples draw from distinct streams (a group of 4 at temperature 1 is not 4 copies);
 *   - sharing: N = 8 samples of one prompt compute its P - 1 shared positions once
 *     (prefill_tokens, prefill_saved) and hold them once (peak blocks below 8 plain
 *     requests of the same prompt); every block is back in the pool after each run;
 *   - random cancels while groups wait, prefill and decode in a tight pool: the pool
 *     empties, the samples not cancelled keep their tokens;
 *   - bad input (n = 0, too many, no ids, a prompt the pool can never hold) is refused
 *     before anything is queued; a 1-token prompt needs no shared prefix;
 *   - prompt sharing across requests (the prefix cache): requests with a common 300-token
 *     prefix take its two full chunks from the first one, with the tokens and trace
 *     records of a run without the cache, also in a pool too small to keep them;
 *   - DeepConf's online stop: a request ends at the first token whose group confidence
 *     is below its threshold, with the unstopped run's tokens up to there, at one or
 *     eight decode steps per sync;
 *   - entropy-triggered branching: forks into branches on the top candidates, keeps the
 *     branch of best mean log-probability, within the token budget, the same tokens and
 *     events at any batch, steps per sync and pool size.
 * A shared block written by a sharer would change its siblings' tokens, which the
 * comparisons with the roomy (no sharing lost) and recomputed runs would catch.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "tiny_context.h"
#include "engine/backend.h"
#include "etx/etx.h"

#define TINY ETX_FIXTURES "/models/tiny-llama-gqa"

#if defined(ETX_TEST_BACKEND_EMU) || defined(ETX_TEST_BACKEND_GPU)
static const etx_device DEVICE = ETX_DEVICE_CUDA;
#else
static const etx_device DEVICE = ETX_DEVICE_CPU;
#endif

static etx_model* g_tiny;    // contexts of 128
static etx_model* g_tiny_1k; // the same weights with a context of 1024 (prompts past a CPU prefill chunk)

#define N_GROUPS 6
#define N_SAMP 4
#define MAX_TOK 6
#define MAX_IDS (N_GROUPS * 8)

typedef struct {
    int32_t prompt[300];
    int n_prompt;
    etx_policy policy;
} Group;

// Group g: prompts of 1, 2, 17, 40, 64 and 200 tokens (no prefix; a one-position prefix;
// partial blocks; a prefix that ends on a block boundary; one past a CPU prefill chunk),
// sampling at temperature 1, with filters, and entropix.
static Group make_group(int g) {
    static const int lens[N_GROUPS] = {1, 2, 17, 40, 65, 200};
    Group x;
    x.n_prompt = lens[g];
    for (int t = 0; t < x.n_prompt; t++) x.prompt[t] = (int32_t)(2 + (t * 29 + g * 13 + t / 5) % 318);
    if (g % 3 == 2) {
        x.policy = etx_policy_default(ETX_POLICY_ENTROPIX);
        x.policy.entropix.pause_token = 3; // the tiny model's
    } else {
        x.policy = etx_policy_default(ETX_POLICY_SAMPLE);
        if (g % 3 == 1) x.policy.top_k = 40, x.policy.top_p = 0.9f;
    }
    x.policy.seed = 77 + (uint64_t)g;
    return x;
}

typedef struct {
    int32_t tokens[MAX_IDS][16];
    int n[MAX_IDS];
    etx_trace_record trace[MAX_IDS][16];
    etx_engine_stats stats;
} Results;

typedef struct {
    int max_batch, block, blocks;
} Spec;

static etx_engine* new_engine(const etx_model* m, int ctx, Spec sp) {
    etx_engine_options o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = ctx;
    o.max_batch = sp.max_batch;
    o.kv_block_size = sp.block;
    o.kv_blocks = sp.blocks;
    o.trace = 1;
    etx_engine* e = NULL;
    etx_status s = etx_engine_create(m, &o, &e);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    return e;
}

static etx_request group_request(const Group* g, uint64_t key) {
    etx_request r = {.prompt = g->prompt, .n_prompt = g->n_prompt, .policy = g->policy, .max_tokens = MAX_TOK,
                     .ignore_eos = 1, .key = key};
    return r;
}

// Collects request ids[i]'s tokens and trace into out slot i; it must have finished.
static void collect(etx_engine* e, const int* ids, int n, Results* out) {
    for (int i = 0; i < n; i++) {
        etx_request_state st;
        ck_assert_int_eq(etx_engine_request_state(e, ids[i], &st).code, ETX_OK);
        ck_assert_msg(st.phase == ETX_REQ_DONE_LENGTH, "request %d: phase %d (%s)", ids[i], st.phase, st.error);
        out->n[i] = st.n_tokens;
        memcpy(out->tokens[i], st.tokens, (size_t)st.n_tokens * sizeof(int32_t));
        const etx_trace_record* tr;
        int nt;
        ck_assert_int_eq(etx_engine_trace(e, ids[i], &tr, &nt).code, ETX_OK);
        ck_assert_int_eq(nt, st.n_tokens);
        memcpy(out->trace[i], tr, (size_t)nt * sizeof *tr);
    }
    ck_assert_int_eq(etx_engine_get_stats(e, &out->stats).code, ETX_OK);
}

// Every group with n samples (slot g * N_SAMP + i holds sample i of group g), key 1000 + g.
static void run_groups(int n, Spec sp, Results* out) {
    etx_engine* e = new_engine(g_tiny_1k, 1024, sp);
    int ids[MAX_IDS];
    for (int g = 0; g < N_GROUPS; g++) {
        Group x = make_group(g);
        etx_request r = group_request(&x, 1000 + (uint64_t)g);
        etx_status s = etx_engine_submit_samples(e, &r, n, ids + g * N_SAMP);
        ck_assert_msg(s.code == ETX_OK, "group %d: %s", g, s.message);
    }
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    // every group's samples in their slots (a group of fewer than N_SAMP leaves gaps)
    for (int g = 0; g < N_GROUPS; g++) {
        Results one;
        collect(e, ids + g * N_SAMP, n, &one);
        for (int i = 0; i < n; i++) {
            out->n[g * N_SAMP + i] = one.n[i];
            memcpy(out->tokens[g * N_SAMP + i], one.tokens[i], sizeof one.tokens[i]);
            memcpy(out->trace[g * N_SAMP + i], one.trace[i], sizeof one.trace[i]);
        }
        out->stats = one.stats;
    }
    ck_assert_int_eq(out->stats.kv_blocks_used, 0); // every block back in the pool
    etx_engine_free(e);
}

static void assert_same(const Results* a, const Results* b, int n_samp, const char* what) {
    for (int g = 0; g < N_GROUPS; g++)
        for (int i = 0; i < n_samp; i++) {
            const int k = g * N_SAMP + i;
            ck_assert_msg(a->n[k] == b->n[k], "%s: group %d sample %d: %d vs %d tokens", what, g, i, a->n[k], b->n[k]);
            for (int t = 0; t < a->n[k]; t++) {
                ck_assert_msg(a->tokens[k][t] == b->tokens[k][t], "%s: group %d sample %d token %d: %d vs %d", what, g,
                              i, t, a->tokens[k][t], b->tokens[k][t]);
                etx_trace_record x = a->trace[k][t], y = b->trace[k][t];
                x.request_id = y.request_id = 0; // ids differ between engines
                ck_assert_msg(memcmp(&x, &y, sizeof x) == 0, "%s: group %d sample %d trace record %d differs", what,
                              g, i, t);
            }
        }
}

START_TEST(samples_are_independent_of_batch_group_size_and_sharing) {
    static Results b1, b3, b16, single, roomy4, tight;
    run_groups(N_SAMP, (Spec){1, 16, 0}, &b1);
    run_groups(N_SAMP, (Spec){3, 16, 0}, &b3);
    run_groups(N_SAMP, (Spec){16, 16, 0}, &b16);
    run_groups(1, (Spec){16, 16, 0}, &single);
    // blocks of 4 positions (the block size is part of the computation on the CPU: a
    // block is an attention tile), roomy, then a pool of 56: the 200-token prompt alone
    // holds 50, so waiting samples give their shared blocks up and growing ones are
    // preempted, then recompute
    run_groups(N_SAMP, (Spec){16, 4, 0}, &roomy4);
    run_groups(N_SAMP, (Spec){16, 4, 56}, &tight);
    assert_same(&b1, &b3, N_SAMP, "batch 3 vs 1");
    assert_same(&b1, &b16, N_SAMP, "batch 16 vs 1");
    assert_same(&b1, &single, 1, "sample 0 of 4 vs a group of 1");
    assert_same(&roomy4, &tight, N_SAMP, "a tight pool (recomputed prefixes) vs a roomy one");
    ck_assert_int_gt(tight.stats.preemptions, 0);
    ck_assert_int_le(tight.stats.kv_blocks_peak, 56);
    // recomputation (of prefixes given up, of preempted samples) shows as extra prefill
    ck_assert_int_gt(tight.stats.prefill_tokens, roomy4.stats.prefill_tokens);
    // distinct streams: in every group some two samples differ
    for (int g = 0; g < N_GROUPS; g++) {
        if (make_group(g).policy.kind == ETX_POLICY_ENTROPIX) continue; // may argmax throughout
        int differ = 0;
        for (int i = 1; i < N_SAMP && !differ; i++)
            differ = memcmp(b1.tokens[g * N_SAMP], b1.tokens[g * N_SAMP + i], MAX_TOK * sizeof(int32_t)) != 0;
        ck_assert_msg(differ, "group %d: all %d samples drew the same tokens", g, N_SAMP);
    }
    // the trace carries the token confidence: positive, finite
    for (int t = 0; t < MAX_TOK; t++) {
        const float c = b1.trace[3 * N_SAMP][t].confidence;
        ck_assert_msg(c > 0.0f && c < 100.0f, "confidence %g", (double)c);
    }
}
END_TEST

// N = 8 samples of a 100-token prompt at batch 8: the prefix's 99 positions are computed
// once and held once; 8 plain requests of the same prompt compute and hold them 8 times.
START_TEST(sharing_computes_and_holds_the_prompt_once) {
    Group x = make_group(4);
    x.n_prompt = 100;
    for (int t = 0; t < x.n_prompt; t++) x.prompt[t] = (int32_t)(2 + (t * 31) % 318);
    etx_request r = group_request(&x, 9);
    int ids[8];
    etx_engine_stats shared, plain;
    etx_engine* e = new_engine(g_tiny, 128, (Spec){8, 16, 0});
    ck_assert_int_eq(etx_engine_submit_samples(e, &r, 8, ids).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_engine_get_stats(e, &shared);
    etx_engine_free(e);
    e = new_engine(g_tiny, 128, (Spec){8, 16, 0});
    for (int i = 0; i < 8; i++) ck_assert_int_eq(etx_engine_submit(e, &r, &ids[i]).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_engine_get_stats(e, &plain);
    etx_engine_free(e);
    ck_assert_int_eq(shared.prefill_tokens, 99);
    ck_assert_int_eq(shared.prefill_saved, 7 * 99);
    ck_assert_int_eq(plain.prefill_tokens, 8 * 100);
    ck_assert_int_eq(plain.prefill_saved, 0);
    // shared: 6 full blocks of the prefix once (positions 0..95), then per sample its
    // copied partial block and the block its last generated positions reach (96..105)
    ck_assert_int_le(shared.kv_blocks_peak, 6 + 8 * 2);
    // unshared: every request's 7 blocks; the step's token budget (one 128-token chunk and
    // the decode rows) admits the prompts one per step, so the first finish before the
    // last arrive, yet at least 5 are resident at once
    ck_assert_int_ge(plain.kv_blocks_peak, 5 * 7);
    fprintf(stderr, "test_samples: peak KV blocks for 8 samples of a 100-token prompt: %d shared, %d unshared\n",
            shared.kv_blocks_peak, plain.kv_blocks_peak);
    ck_assert_int_eq(shared.kv_blocks_used, 0);
}
END_TEST

// Groups submitted over time into a tight pool, samples cancelled at random steps (while
// held, prefilling or decoding): the pool empties at the end, and every sample not
// cancelled has the tokens of the roomy, uncancelled run.
START_TEST(random_cancels_in_a_tight_pool) {
    static Results ref;
    run_groups(N_SAMP, (Spec){16, 16, 0}, &ref);
    uint64_t rng = 12345;
    for (int round = 0; round < 3; round++) {
        etx_engine* e = new_engine(g_tiny_1k, 1024, (Spec){5, 16, 18});
        int ids[MAX_IDS], cancelled[MAX_IDS] = {0}, submitted = 0, active = 1;
        while (active > 0 || submitted < N_GROUPS) {
            if (submitted < N_GROUPS && (rng >> 33) % 3 == 0) { // a group now and then
                Group x = make_group(submitted);
                etx_request r = group_request(&x, 1000 + (uint64_t)submitted);
                ck_assert_int_eq(etx_engine_submit_samples(e, &r, N_SAMP, ids + submitted * N_SAMP).code, ETX_OK);
                submitted++;
            }
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const int k = (int)((rng >> 33) % (uint64_t)(submitted * N_SAMP + 1));
            if (k < submitted * N_SAMP && (rng >> 20) % 4 == 0 && !cancelled[k]) {
                ck_assert_int_eq(etx_engine_cancel(e, ids[k]).code, ETX_OK);
                cancelled[k] = 1;
            }
            ck_assert_int_eq(etx_engine_step(e, &active).code, ETX_OK);
            etx_engine_stats st;
            etx_engine_get_stats(e, &st);
            ck_assert_int_le(st.kv_blocks_used, 18);
        }
        etx_engine_stats st;
        etx_engine_get_stats(e, &st);
        ck_assert_int_eq(st.kv_blocks_used, 0);
        for (int k = 0; k < N_GROUPS * N_SAMP; k++) {
            etx_request_state rs;
            ck_assert_int_eq(etx_engine_request_state(e, ids[k], &rs).code, ETX_OK);
            if (cancelled[k]) {
                ck_assert(rs.phase == ETX_REQ_DONE_STOP || rs.phase == ETX_REQ_DONE_LENGTH); // or ended before
                ck_assert_int_le(rs.n_tokens, ref.n[k]);
                if (rs.n_tokens) // cancelled before its first token: no tokens at all
                    ck_assert_int_eq(memcmp(rs.tokens, ref.tokens[k], (size_t)rs.n_tokens * sizeof(int32_t)), 0);
                continue;
            }
            ck_assert_msg(rs.phase == ETX_REQ_DONE_LENGTH, "round %d sample %d: phase %d (%s)", round, k, rs.phase,
                          rs.error);
            ck_assert_int_eq(rs.n_tokens, ref.n[k]);
            ck_assert_msg(memcmp(rs.tokens, ref.tokens[k], (size_t)rs.n_tokens * sizeof(int32_t)) == 0,
                          "round %d sample %d: tokens differ from the roomy run", round, k);
        }
        etx_engine_free(e);
    }
}
END_TEST

START_TEST(bad_groups_are_refused_and_one_token_prompts_need_no_prefix) {
    etx_engine* e = new_engine(g_tiny, 128, (Spec){4, 4, 3});
    Group x = make_group(0);
    etx_request r = group_request(&x, 5);
    int ids[8];
    etx_status s = etx_engine_submit_samples(e, &r, 0, ids);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "samples"), "%s", s.message);
    ck_assert_int_eq(etx_engine_submit_samples(e, &r, ETX_MAX_SAMPLES + 1, ids).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(etx_engine_submit_samples(e, &r, 2, NULL).code, ETX_ERR_INVALID_ARG);
    // 3 blocks of 4 positions: a 20-token prompt can never fit
    Group big = make_group(3);
    big.n_prompt = 20;
    etx_request rb = group_request(&big, 6);
    s = etx_engine_submit_samples(e, &rb, 2, ids);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "KV blocks"), "%s", s.message);
    ck_assert_int_eq(ids[0], -1);
    // nothing was queued by the refusals: a one-token group runs alone
    ck_assert_int_eq(etx_engine_submit_samples(e, &r, 3, ids).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    etx_engine_stats st;
    etx_engine_get_stats(e, &st);
    // the single prompt token is each sample's decode row, also when a sample is preempted
    // (2 of the 3 blocks are needed per sample) and replays it
    ck_assert_int_eq(st.prefill_tokens, 0);
    ck_assert_int_ge(st.decode_rows, 3 * MAX_TOK);
    ck_assert_int_gt(st.preemptions, 0);
    for (int i = 0; i < 3; i++) {
        etx_request_state rs;
        ck_assert_int_eq(etx_engine_request_state(e, ids[i], &rs).code, ETX_OK);
        ck_assert_int_eq(rs.phase, ETX_REQ_DONE_LENGTH);
        ck_assert_int_eq(etx_engine_release(e, ids[i]).code, ETX_OK);
    }
    etx_engine_free(e);
    // the keys: distinct per index, and a function of (key, index) alone
    ck_assert(etx_sample_key(5, 0) != etx_sample_key(5, 1));
    ck_assert(etx_sample_key(5, 0) != etx_sample_key(6, 0));
    ck_assert(etx_sample_key(5, 3) == etx_sample_key(5, 3));
}
END_TEST

// Prompt sharing across requests (the prefix cache): 10 requests whose prompts share
// their first 300 tokens (two full 128-token chunks) and differ after, submitted over
// time at batch 3: tokens and trace records equal a run with the cache off, to the bit;
// the two shared chunks are computed once (the requests after the first take them); with
// a pool too small to keep them, cached blocks are given back and the tokens still agree.
START_TEST(prefix_cache_shares_prompt_chunks_across_requests) {
    static Results res[3];
    static int32_t prompts[10][340];
    etx_engine_stats st[3];
    const int settings[3][2] = {{0, 0}, {-1, 0}, {0, 30}}; // prefix_cache, kv_blocks (blocks of 16)
    for (int run = 0; run < 3; run++) {
        etx_engine_options o = etx_engine_options_default();
        o.device = DEVICE;
        o.max_seq_len = 1024;
        o.max_batch = 3;
        o.kv_block_size = 16;
        o.kv_blocks = settings[run][1];
        o.prefix_cache = settings[run][0];
        o.trace = 1;
        etx_engine* e = NULL;
        ck_assert_int_eq(etx_engine_create(g_tiny_1k, &o, &e).code, ETX_OK);
        int ids[10], active = 1;
        for (int i = 0; i < 10 || active > 0; i++) {
            if (i < 10) { // one more request each step
                for (int t = 0; t < 340; t++) prompts[i][t] = (int32_t)(2 + (t < 300 ? t * 7 : t * 3 + i * 17) % 318);
                Group x = make_group(i % 3 == 1 ? 1 : 0);
                etx_request r = {.prompt = prompts[i], .n_prompt = 300 + 4 * i, .policy = x.policy,
                                 .max_tokens = MAX_TOK, .ignore_eos = 1, .key = 50 + (uint64_t)i};
                ck_assert_int_eq(etx_engine_submit(e, &r, &ids[i]).code, ETX_OK);
            }
            ck_assert_int_eq(etx_engine_step(e, &active).code, ETX_OK);
        }
        collect(e, ids, 10, &res[run]);
        st[run] = res[run].stats;
        ck_assert_int_eq(st[run].kv_blocks_used, 0);
        etx_engine_free(e);
    }
    for (int k = 0; k < 10; k++)
        for (int t = 0; t < MAX_TOK; t++) {
            ck_assert_msg(res[0].tokens[k][t] == res[1].tokens[k][t], "request %d token %d: cache on vs off", k, t);
            ck_assert_msg(res[2].tokens[k][t] == res[1].tokens[k][t], "request %d token %d: small pool vs off", k, t);
            etx_trace_record a = res[0].trace[k][t], b = res[1].trace[k][t];
            ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "request %d trace record %d: cache on vs off", k, t);
        }
    ck_assert_int_eq(st[1].prefill_saved, 0);
    ck_assert_int_eq(st[0].prefill_saved, 9 * 256); // every request after the first takes both chunks
    ck_assert_int_eq(st[0].prefill_tokens + st[0].prefill_saved, st[1].prefill_tokens);
    ck_assert_int_gt(st[0].kv_blocks_cached, 0);      // kept after the requests ended
    ck_assert_int_le(st[2].kv_blocks_peak, 30);
    fprintf(stderr, "test_samples: prefix cache: %ld prompt positions computed (%ld without it), %ld shared; "
            "small pool %ld shared\n", st[0].prefill_tokens, st[1].prefill_tokens, st[0].prefill_saved,
            st[2].prefill_saved);
}
END_TEST

// DeepConf online stop (etx_request.stop_confidence): a request ends at the first token
// that ends a full group (t >= window - 1) whose group confidence (etx_group_confidence
// over its trace's confidences) is below the threshold; its tokens are the unstopped
// run's up to there; several decode steps per sync end it at the same token; without
// tracing the request is refused. The threshold is set between the lowest partial group
// and the lowest full one when the two differ, so a stop on a partial group would fail.
START_TEST(online_stop_on_group_confidence) {
    Group x = make_group(3);
    etx_request r = group_request(&x, 21);
    r.max_tokens = 12;
    int ids[4];
    // the unstopped samples, and the threshold halfway through one's group confidences
    etx_engine* e = new_engine(g_tiny_1k, 1024, (Spec){4, 16, 0});
    ck_assert_int_eq(etx_engine_submit_samples(e, &r, 4, ids).code, ETX_OK);
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    static Results full;
    for (int i = 0; i < 4; i++) {
        etx_request_state st;
        const etx_trace_record* tr;
        int nt;
        etx_engine_request_state(e, ids[i], &st);
        etx_engine_trace(e, ids[i], &tr, &nt);
        full.n[i] = st.n_tokens;
        memcpy(full.tokens[i], st.tokens, (size_t)st.n_tokens * sizeof(int32_t));
        memcpy(full.trace[i], tr, (size_t)nt * sizeof *tr);
    }
    etx_engine_free(e);
    enum { W = 4 };
    float c[16];
    double g[4][16], lo = 1e30, hi = -1e30, lo_partial = 1e30;
    for (int i = 0; i < 4; i++)
        for (int t = 0; t < full.n[i]; t++) {
            c[t] = full.trace[i][t].confidence;
            g[i][t] = etx_group_confidence(c, t, W);
            if (t < W - 1) { // partial: no group
                if (g[i][t] < lo_partial) lo_partial = g[i][t];
                continue;
            }
            if (g[i][t] < lo) lo = g[i][t];
            if (g[i][t] > hi) hi = g[i][t];
        }
    ck_assert(hi > lo);
    // halfway between the lowest and highest full group; lower still when a partial group
    // sits below the lowest full one, so that only a (wrong) partial-group stop would fire
    // halfway between the lowest and highest full group (some samples stop); and when a
    // partial group sits below every full one, between the two (none may stop: a stop on
    // a partial group would)
    const float thrs[2] = {(float)((lo + hi) / 2), (float)((lo_partial + lo) / 2)};
    const int n_thr = lo_partial < lo && thrs[1] > 0.0f && (double)thrs[1] < lo ? 2 : 1;
    fprintf(stderr, "test_samples: online stop: full groups %.4g .. %.4g, lowest partial one %.4g: %d threshold(s)\n",
            lo, hi, lo_partial, n_thr);
    for (int k = 0; k < n_thr; k++)
        for (int sps = 1; sps <= 8; sps += 7) {
            const float thr = thrs[k];
            etx_engine_options o = etx_engine_options_default();
            o.device = DEVICE;
            o.max_seq_len = 1024;
            o.max_batch = 4;
            o.kv_block_size = 16;
            o.trace = 1;
            o.steps_per_sync = sps;
            ck_assert_int_eq(etx_engine_create(g_tiny_1k, &o, &e).code, ETX_OK);
            etx_request rs = r;
            rs.stop_confidence = thr;
            rs.confidence_window = W;
            ck_assert_int_eq(etx_engine_submit_samples(e, &rs, 4, ids).code, ETX_OK);
            ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
            int n_stopped = 0;
            for (int i = 0; i < 4; i++) {
                etx_request_state st;
                etx_engine_request_state(e, ids[i], &st);
                int want = full.n[i]; // the first full group below the threshold ends it
                for (int t = W - 1; t < full.n[i]; t++)
                    if (g[i][t] < (double)thr) {
                        want = t + 1;
                        break;
                    }
                ck_assert_msg(st.n_tokens == want, "threshold %g, steps/sync %d sample %d: %d tokens, want %d",
                              (double)thr, sps, i, st.n_tokens, want);
                ck_assert_int_eq(memcmp(st.tokens, full.tokens[i], (size_t)want * sizeof(int32_t)), 0);
                ck_assert_int_eq(st.phase, want < full.n[i] || g[i][want - 1] < (double)thr
                                               ? ETX_REQ_DONE_LOW_CONFIDENCE
                                               : ETX_REQ_DONE_LENGTH);
                n_stopped += st.phase == ETX_REQ_DONE_LOW_CONFIDENCE;
            }
            if (k == 0) ck_assert_int_gt(n_stopped, 0);
            else ck_assert_int_eq(n_stopped, 0);
            etx_engine_free(e);
        }
    // refused without tracing, and for a negative threshold
    etx_engine_options o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = 1024;
    ck_assert_int_eq(etx_engine_create(g_tiny_1k, &o, &e).code, ETX_OK);
    etx_request rs = r;
    rs.stop_confidence = 1.0f;
    etx_status s = etx_engine_submit(e, &rs, &ids[0]);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(s.message, "trace"), "%s", s.message);
    rs.stop_confidence = -1.0f;
    ck_assert_int_eq(etx_engine_submit(e, &rs, &ids[0]).code, ETX_ERR_INVALID_ARG);
    etx_engine_free(e);
}
END_TEST

// Entropy-triggered branching: thresholds of 0 fork at every token the budget allows.
// Each fork's kept branch is the one with the best mean log-probability, and its
// candidate is the request's token at the fork step; the budget caps the tokens spent;
// the tokens, events and trace records are the same at batch 1 and 6, at one or four
// decode steps per sync, and in a pool small enough to preempt; every block comes back.
typedef struct {
    int32_t tokens[MAX_IDS][32];
    int n[MAX_IDS];
    etx_branch_event ev[MAX_IDS][16];
    int n_ev[MAX_IDS], spent[MAX_IDS];
    etx_engine_stats stats;
} BranchResults;

static void run_branching(Spec sp, int sps, BranchResults* out) {
    etx_engine_options o = etx_engine_options_default();
    o.device = DEVICE;
    o.max_seq_len = 1024;
    o.max_batch = sp.max_batch;
    o.kv_block_size = sp.block;
    o.kv_blocks = sp.blocks;
    o.trace = 1;
    o.steps_per_sync = sps;
    etx_engine* e = NULL;
    ck_assert_int_eq(etx_engine_create(g_tiny_1k, &o, &e).code, ETX_OK);
    int ids[N_GROUPS];
    for (int g = 0; g < N_GROUPS; g++) {
        Group x = make_group(g);
        etx_request r = group_request(&x, 300 + (uint64_t)g);
        r.max_tokens = 14;
        r.branching = (etx_branching){.n_branches = 2 + g % 3, .entropy = 0.0f, .varentropy = 0.0f,
                                      .lookahead = 2 + g % 2, .max_branch_tokens = 20};
        ck_assert_int_eq(etx_engine_submit(e, &r, &ids[g]).code, ETX_OK);
    }
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    for (int g = 0; g < N_GROUPS; g++) {
        etx_request_state st;
        ck_assert_int_eq(etx_engine_request_state(e, ids[g], &st).code, ETX_OK);
        ck_assert_msg(st.phase == ETX_REQ_DONE_LENGTH, "request %d: phase %d (%s)", g, st.phase, st.error);
        out->n[g] = st.n_tokens;
        memcpy(out->tokens[g], st.tokens, (size_t)st.n_tokens * sizeof(int32_t));
        const etx_branch_event* ev;
        ck_assert_int_eq(etx_engine_branch_events(e, ids[g], &ev, &out->n_ev[g], &out->spent[g]).code, ETX_OK);
        ck_assert_int_le(out->n_ev[g], 16);
        memcpy(out->ev[g], ev, (size_t)out->n_ev[g] * sizeof *ev);
        const etx_trace_record* tr;
        int nt;
        ck_assert_int_eq(etx_engine_trace(e, ids[g], &tr, &nt).code, ETX_OK);
        ck_assert_int_eq(nt, st.n_tokens);
        for (int t = 0; t < nt; t++) {
            ck_assert_int_eq(tr[t].token, st.tokens[t]);
            ck_assert_int_eq(tr[t].request_id, ids[g]);
        }
    }
    ck_assert_int_eq(etx_engine_get_stats(e, &out->stats).code, ETX_OK);
    ck_assert_int_eq(out->stats.kv_blocks_used, 0);
    etx_engine_free(e);
}

START_TEST(entropy_branching_keeps_the_best_branch) {
    static BranchResults b1, b6, multi, tight;
    run_branching((Spec){1, 16, 0}, 1, &b1);
    run_branching((Spec){6, 16, 0}, 1, &b6);
    run_branching((Spec){6, 16, 0}, 4, &multi);
    run_branching((Spec){6, 4, 0}, 1, &tight); // blocks of 4 (the reference for the tight pool below)
    static BranchResults tight2;
    run_branching((Spec){6, 4, 70}, 1, &tight2);
    const BranchResults* others[3] = {&b6, &multi, NULL};
    for (int o = 0; o < 2; o++)
        for (int g = 0; g < N_GROUPS; g++) {
            ck_assert_int_eq(others[o]->n[g], b1.n[g]);
            ck_assert_int_eq(memcmp(others[o]->tokens[g], b1.tokens[g], (size_t)b1.n[g] * sizeof(int32_t)), 0);
            ck_assert_int_eq(others[o]->n_ev[g], b1.n_ev[g]);
            ck_assert_int_eq(memcmp(others[o]->ev[g], b1.ev[g], (size_t)b1.n_ev[g] * sizeof(etx_branch_event)), 0);
        }
    for (int g = 0; g < N_GROUPS; g++) {
        ck_assert_int_eq(tight2.n[g], tight.n[g]);
        ck_assert_int_eq(memcmp(tight2.tokens[g], tight.tokens[g], (size_t)tight.n[g] * sizeof(int32_t)), 0);
    }
    ck_assert_int_gt(tight2.stats.preemptions, 0);
    for (int g = 0; g < N_GROUPS; g++) {
        const Group x = make_group(g);
        const int nb = 2 + g % 3, m = 2 + g % 2;
        ck_assert_msg(b1.n_ev[g] >= 1, "request %d never forked", g);
        ck_assert_int_le(b1.spent[g], 20);                  // the budget
        ck_assert_int_gt(b1.spent[g] + nb * (m + 1), 20);   // ... and no fork it would have allowed was skipped
        int spent = 0;
        for (int k = 0; k < b1.n_ev[g]; k++) {
            const etx_branch_event* ev = &b1.ev[g][k];
            ck_assert_int_eq(ev->n_branches, nb);
            for (int j = 0; j < nb; j++) {
                spent += ev->tokens[j];
                ck_assert(ev->scores[j] <= ev->scores[ev->kept]);
                if (j < ev->kept) ck_assert(ev->scores[j] < ev->scores[ev->kept]); // ties to the more likely
                for (int i = 0; i < j; i++) ck_assert_int_ne(ev->candidates[i], ev->candidates[j]);
            }
            ck_assert_int_eq(b1.tokens[g][ev->step], ev->candidates[ev->kept]); // the kept branch's token
        }
        ck_assert_int_eq(spent, b1.spent[g]);
        (void)x;
    }
}
END_TEST

int main(void) {
    const BackendOps* ops = NULL;
    if (backend_pick(DEVICE, &ops).code != ETX_OK) {
        fprintf(stderr, "test_samples: the backend cannot run here: skipped\n");
        return CHECK_SKIPPED;
    }
    g_tiny = load_model_or_die("test_samples", TINY, "");
    g_tiny_1k = tiny_model_with_context(TINY, 1024);
    fprintf(stderr, "test_samples: backend %s\n", ops->name);
    Suite* su = suite_create("samples");
    TCase* tc = tcase_create("core");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, samples_are_independent_of_batch_group_size_and_sharing);
    tcase_add_test(tc, sharing_computes_and_holds_the_prompt_once);
    tcase_add_test(tc, random_cancels_in_a_tight_pool);
    tcase_add_test(tc, bad_groups_are_refused_and_one_token_prompts_need_no_prefix);
    tcase_add_test(tc, prefix_cache_shares_prompt_chunks_across_requests);
    tcase_add_test(tc, online_stop_on_group_confidence);
    tcase_add_test(tc, entropy_branching_keeps_the_best_branch);
    suite_add_tcase(su, tc);
    const int rc = check_run_suite_nofork(su);
    etx_model_free(g_tiny);
    etx_model_free(g_tiny_1k);
    return rc;
}
