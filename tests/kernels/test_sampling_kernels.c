/*
 * test_sampling_kernels.c — the sampling kernels (kernels/vocab_pass.cu,
 * kernels/attn_metrics.cu, kernels/policy_step.cu) against their CPU twins, under the SIMT
 * emulator (_emu) and on a GPU (_gpu, skipped without one).
 *
 *   - vocab pass: rows of 100, 1000, 32000 and 49152 logits of several shapes (random,
 *     ties, -inf entries, moderately and extremely peaked, flat, all -inf, +0/-0 mixes,
 *     increasing order, large offset) against logit_metrics (max exactly; H, V, log Z
 *     with the tolerance of tests/policy/test_metrics.c, see VP_* below) and sampler_candidates
 *     (the same ids and logits in the same order, for k = ETX_TOPK and runtime k = 27, 64);
 *     log-probabilities equal logit - log Z exactly; one block per row, and rows split
 *     over 16 blocks (chunks of 2000, kept whole and radix-selected; chunks of 3072,
 *     streamed through the threshold list) and over 63 blocks (3 rows of 128256), each
 *     split run twice on the same scratch. The statistics of rows of 50000 logits are the
 *     same floats alone, in a batch of 64 and in one block (test_vocab_pass_batch_invariant).
 *   - attention metrics: random scores, 9 and 32 heads, 1, 7 and 300 valid positions
 *     (NaN beyond them: they must never be read), window 0 and 4096, against attn_metrics.
 *   - policy step: for greedy, sample (temperature / top_k / top_p / min_p settings,
 *     top_k 0 and top_k > ETX_TOPK through the exact fallback) and entropix (parameters
 *     forcing each branch: argmax, pause, helv, lehv, hehv, adaptive best-of-5, and hehv
 *     with top_k 0 through the fallback), over 17 x 24 (seed, key, step) at vocab 1000,
 *     and at vocab 100 (no fallback: every list fits), 4096 and 32000: the token is
 *     sampler_pick's (host/policy/sampler.c), the trace record and the done flag are the
 *     ones host/engine/engine.c makes when it accepts a token. The metrics the decision reads are the device's
 *     own (downloaded), so the comparison isolates the decision and the pick, which must
 *     be exact.
 *   - non-finite rows: NaN, +inf, -inf at the start, middle or end of a row (one block, or
 *     split over several), all -inf, and NaN attention signals: the vocab pass's flag
 *     against logits_nonfinite, and the policy step's fault code, done flag and record
 *     against policy_input_fault (the CPU backend's pick_token).
 *   - row maps: each sequence's logits and scores read through a row map from a larger
 *     buffer (NaN in the rows no sequence owns) give, bit for bit, what the contiguous
 *     rows give: statistics, candidates, tokens (with the fallback), traces, signals.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn_metrics.h"
#include "device.h"
#include "policy/metrics.h"
#include "policy_step.h"
#include "policy_dslider.h"
#include "policy_learned.h"
#include "policy/sampler.h"
#include "vocab_pass.h"
#include "check_device.h"
#include "check_main.h"
#include "test_rng.h"

// ----------------------------------------------------------------------------
// helpers

// Wall-clock milliseconds (for the timings the GPU build prints; nothing asserts them).
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void* dev_put(const void* host, size_t bytes) {
    void* d = etx_dev_malloc(bytes);
    ck_assert_ptr_nonnull(d);
    etx_dev_upload(d, host, bytes);
    return d;
}

static void* xcalloc_t(size_t n, size_t size) {
    void* p = calloc(n, size);
    ck_assert_ptr_nonnull(p);
    return p;
}

// |got - want| <= rel |want| + floor; equal infinities pass.
static void check_close(const char* what, int row, double got, double want, double rel, double floor) {
    if (isinf(want) && got == want) return;
    ck_assert_msg(isfinite(got) && fabs(got - want) <= rel * fabs(want) + floor, "%s (row %d): got %.9g, want %.9g",
                  what, row, got, want);
}

// ----------------------------------------------------------------------------
// vocabulary pass

// Tolerance on H, V, log Z: both sides accumulate in double and round to float once, so
// they differ by the float rounding (6e-8 relative) plus the order of double additions;
// 1e-5 relative catches any definitional slip (the brief's figure; the observed gap is
// ~1e-7). The absolute floor 1e-12 only matters for ROW_VERY_PEAKED: its entropy
// (~1e-13 bits) is ln z - E[x - max] with z = 1 + tiny, a cancellation whose absolute
// error (~1e-16 per double operation, times the magnitudes involved) does not shrink
// with H; without the floor that row differs by ~1e-16 bits, i.e. by 55% relative.
#define VP_REL 1e-5
#define VP_FLOOR 1e-12

enum { ROW_RANDOM, ROW_TIES, ROW_NEG_INF, ROW_PEAKED, ROW_VERY_PEAKED, ROW_FLAT, ROW_ALL_NEG_INF, ROW_ZEROS,
       ROW_INCREASING, ROW_OFFSET, ROW_KINDS };

static void fill_row(float* x, int n, int kind, uint64_t* rng) {
    for (int i = 0; i < n; i++) {
        const double g = rng_normal(rng);
        switch (kind) {
        case ROW_RANDOM: x[i] = (float)(3.0 * g); break;
        case ROW_TIES: x[i] = (float)(floor(2.0 * g) / 2.0); break; // few distinct values
        case ROW_NEG_INF: x[i] = rng_uniform(rng) < 0.3 ? -INFINITY : (float)(2.0 * g); break;
        case ROW_PEAKED: x[i] = (float)g; break;
        case ROW_VERY_PEAKED: x[i] = (float)g; break;
        case ROW_FLAT: x[i] = 1.5f; break;
        case ROW_ALL_NEG_INF: x[i] = -INFINITY; break;
        case ROW_ZEROS: { // +0, -0 and 1 only: +0 and -0 tie, the lower id first
            const uint64_t r = rng_next_u64(rng) % 3;
            x[i] = r == 0 ? 0.0f : (r == 1 ? -0.0f : 1.0f);
            break;
        }
        case ROW_INCREASING: x[i] = (float)i * 1e-3f; break; // every tile beats the list
        case ROW_OFFSET: x[i] = (float)(1e4 + 4.0 * g); break;
        }
    }
    if (kind == ROW_PEAKED) x[n / 3] = 12.0f;      // H still well above the floor
    if (kind == ROW_VERY_PEAKED) x[n / 2] = 45.0f; // H ~ n e^-45: below it
}

// Runs the vocab pass on ROW_KINDS rows of n logits with runtime k and checks them;
// split: with scratch (rows of 16384+ logits are spread over several blocks), run twice
// on the same scratch (its counters must be reset); else one block per row.
static void check_vocab_pass_rows(int rows, int n, int k, uint64_t seed, int split) {
    uint64_t rng = rng_seed(seed);
    float* x = xcalloc_t((size_t)rows * n, sizeof(float));
    for (int r = 0; r < rows; r++) fill_row(x + (size_t)r * n, n, r, &rng);
    float* d_x = dev_put(x, (size_t)rows * n * sizeof(float));
    EtxVocabStats* d_stats = etx_dev_malloc(rows * sizeof(EtxVocabStats));
    PolicyCandidate* d_cand = etx_dev_malloc((size_t)rows * ETX_TOPK * sizeof(PolicyCandidate));
    float* d_lp = etx_dev_malloc((size_t)rows * ETX_TOPK * sizeof(float));
    void* d_scratch = split ? etx_dev_malloc(etx_vocab_pass_scratch_bytes(rows)) : NULL;
    for (int run = 0; run < (split ? 2 : 1); run++) {
        etx_dev_memset(d_cand, 0xff, (size_t)rows * ETX_TOPK * sizeof(PolicyCandidate));
        etx_dev_memset(d_stats, 0xff, rows * sizeof(EtxVocabStats));
        etx_vocab_pass(d_x, NULL, rows, n, k, d_stats, d_cand, d_lp, d_scratch, NULL);
    }
    etx_dev_sync();
    EtxVocabStats stats[ROW_KINDS];
    PolicyCandidate* cand = xcalloc_t((size_t)rows * ETX_TOPK, sizeof(PolicyCandidate));
    float* lp = xcalloc_t((size_t)rows * ETX_TOPK, sizeof(float));
    etx_dev_download(stats, d_stats, (size_t)rows * sizeof(EtxVocabStats)); // rows <= ROW_KINDS
    etx_dev_download(cand, d_cand, (size_t)rows * ETX_TOPK * sizeof(PolicyCandidate));
    etx_dev_download(lp, d_lp, (size_t)rows * ETX_TOPK * sizeof(float));

    Sampler smp;
    build_sampler(&smp, n);
    const int n_out = k < n ? (k < ETX_TOPK ? k : ETX_TOPK) : (n < ETX_TOPK ? n : ETX_TOPK);
    for (int r = 0; r < rows; r++) {
        const float* row = x + (size_t)r * n;
        const LogitMetrics lm = logit_metrics(row, n);
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = row[i] > mx ? row[i] : mx;
        ck_assert_msg(stats[r].max == mx, "max (n %d, row %d): got %g, want %g", n, r, stats[r].max, mx);
        check_close("entropy", r, stats[r].entropy, lm.entropy, VP_REL, VP_FLOOR);
        check_close("varentropy", r, stats[r].varentropy, lm.varentropy, VP_REL, VP_FLOOR);
        check_close("log_z", r, stats[r].log_z, lm.log_z, VP_REL, VP_FLOOR);
        check_close("sigma", r, stats[r].sigma, lm.sigma, VP_REL, VP_FLOOR);
        ck_assert_msg(lm.max == mx, "logit_metrics max (n %d, row %d): %g, want %g", n, r, lm.max, mx);
        const int nc = sampler_candidates(&smp, row, n_out);
        ck_assert_int_eq(nc, n_out);
        for (int j = 0; j < n_out; j++) {
            const PolicyCandidate* g = &cand[(size_t)r * ETX_TOPK + j];
            ck_assert_msg(g->id == smp.cand[j].id && memcmp(&g->logit, &smp.cand[j].logit, sizeof(float)) == 0,
                          "candidate %d (n %d, k %d, row %d): got id %d logit %g, want id %d logit %g", j, n, k, r,
                          g->id, g->logit, smp.cand[j].id, smp.cand[j].logit);
            const float want_lp = g->logit - stats[r].log_z;
            const float got_lp = lp[(size_t)r * ETX_TOPK + j];
            // the same bits, or both NaN: a NaN's sign is not the arithmetic's to choose (the
            // H200 writes 0x7fffffff where x86 writes 0xffc00000; the first GPU run failed here)
            ck_assert_msg(memcmp(&got_lp, &want_lp, sizeof(float)) == 0 || (isnan(got_lp) && isnan(want_lp)),
                          "logprob %d (row %d): got %g, want %g", j, r, lp[(size_t)r * ETX_TOPK + j], want_lp);
        }
        // nothing is written past n_out (the buffer was filled with 0xff bytes)
        if (n_out < ETX_TOPK) ck_assert_int_eq(cand[(size_t)r * ETX_TOPK + n_out].id, -1);
    }
    free_sampler(&smp);
    free(x);
    free(cand);
    free(lp);
    etx_dev_free(d_x);
    etx_dev_free(d_stats);
    etx_dev_free(d_cand);
    etx_dev_free(d_lp);
    if (d_scratch) etx_dev_free(d_scratch);
}

static void check_vocab_pass(int n, int k, uint64_t seed, int split) {
    check_vocab_pass_rows(ROW_KINDS, n, k, seed, split);
}

START_TEST(test_vocab_pass_small) {
    check_vocab_pass(100, ETX_TOPK, 11, 0); // the whole row fits the list
    check_vocab_pass(1000, ETX_TOPK, 12, 0);
    check_vocab_pass(1000, 27, 13, 1); // runtime k below the cap; too small to split
}
END_TEST

START_TEST(test_vocab_pass_large) {
    check_vocab_pass(32000, ETX_TOPK, 21, 0); // one block per row
    check_vocab_pass(32000, ETX_TOPK, 23, 1); // 16 blocks per row, each chunk whole in the buffer
    check_vocab_pass(49152, ETX_TOPK, 22, 1); // 16 blocks per row, chunks of 3072 streamed
    check_vocab_pass(49152, 64, 24, 0);
    // a batch of 3 rows of Llama 3's vocabulary: 63 blocks per row (the most a small batch
    // gets), the last one selecting the top K of 63 x 128 keys
    check_vocab_pass_rows(3, 128256, ETX_TOPK, 25, 1);
}
END_TEST

// The statistics do not depend on the batch: the device sums aligned 256-logit segments
// in f32 and merges them in double (kernels/vocab_pass.cu, "Statistics"), so a batch
// that splits a row over another number of blocks only reorders double merges, which
// round to the same floats. Rows of 50000 logits (no split is a multiple of 256):
// alone (25 blocks), in a batch of 64 (4 blocks each) and without scratch (1 block).
// ROW_VERY_PEAKED is left out of the bitwise check: its entropy (~1e-13 bits) is
// log(1 + 1e-15) - c, whose double rounding moves it by percents (see VP_FLOOR); it is
// checked within VP_FLOOR instead. Catches segments that follow the chunk instead of the
// row (their f32 sums then differ by a few 1e-7: float ulps).
START_TEST(test_vocab_pass_batch_invariant) {
    enum { N = 50000, BATCH = 64 };
    uint64_t rng = rng_seed(31);
    float* x = xcalloc_t((size_t)BATCH * N, sizeof(float));
    for (int r = 0; r < BATCH; r++) fill_row(x + (size_t)r * N, N, r % ROW_KINDS, &rng);
    float* d_x = dev_put(x, (size_t)BATCH * N * sizeof(float));
    EtxVocabStats* d_stats = etx_dev_malloc(BATCH * sizeof(EtxVocabStats));
    PolicyCandidate* d_cand = etx_dev_malloc((size_t)BATCH * ETX_TOPK * sizeof(PolicyCandidate));
    void* d_scratch = etx_dev_malloc(etx_vocab_pass_scratch_bytes(BATCH));
    EtxVocabStats st[3][BATCH];
    for (int run = 0; run < 3; run++) {
        const int rows = run == 0 ? ROW_KINDS : BATCH; // run 0: the first rows alone (one launch each)
        if (run == 0) {
            for (int r = 0; r < rows; r++)
                etx_vocab_pass(d_x + (size_t)r * N, NULL, 1, N, ETX_TOPK, d_stats + r, d_cand, NULL, d_scratch, NULL);
        } else {
            etx_vocab_pass(d_x, NULL, rows, N, ETX_TOPK, d_stats, d_cand, NULL, run == 1 ? d_scratch : NULL, NULL);
        }
        etx_dev_sync();
        etx_dev_download(st[run], d_stats, rows * sizeof(EtxVocabStats));
    }
    for (int r = 0; r < ROW_KINDS; r++) {
        for (int run = 1; run < 3; run++) {
            const EtxVocabStats *a = &st[0][r], *b = &st[run][r];
            ck_assert_msg(a->max == b->max && a->nonfinite == b->nonfinite, "row %d run %d: max or flag", r, run);
            if (r == ROW_VERY_PEAKED) {
                ck_assert(fabs(a->entropy - b->entropy) <= VP_FLOOR && fabs(a->varentropy - b->varentropy) <= VP_FLOOR);
                continue;
            }
            ck_assert_msg(memcmp(&a->entropy, &b->entropy, sizeof(float)) == 0 &&
                              memcmp(&a->varentropy, &b->varentropy, sizeof(float)) == 0 &&
                              memcmp(&a->log_z, &b->log_z, sizeof(float)) == 0 &&
                              memcmp(&a->sigma, &b->sigma, sizeof(float)) == 0,
                          "row %d: alone H %.9g V %.9g log Z %.9g sigma %.9g; run %d (%s): %.9g %.9g %.9g %.9g", r,
                          a->entropy, a->varentropy, a->log_z, a->sigma, run, run == 1 ? "batch 64" : "one block",
                          b->entropy, b->varentropy, b->log_z, b->sigma);
        }
    }
    free(x);
    etx_dev_free(d_x);
    etx_dev_free(d_stats);
    etx_dev_free(d_cand);
    etx_dev_free(d_scratch);
}
END_TEST

// ----------------------------------------------------------------------------
// attention metrics

// Tolerance: double inside on both sides, P rounded the same way, only the order of
// additions differs; 1e-5 relative as for the logits, with test_metrics.c's floors
// (entropy 1e-6 bits, varentropy 1e-9: a variance over heads that can itself be ~1e-9,
// agreement 1e-12, interaction 1e-9) for the values that are (near) zero, e.g. one position.
#define AM_REL 1e-5

static void check_attn_lengths(int n_heads, int window, int n_seqs, const int32_t* n_pos, int max_ctx) {
    int32_t win[8];
    uint64_t rng = rng_seed(1000 + (uint64_t)n_heads * 7 + (uint64_t)window);
    float* scores = xcalloc_t((size_t)n_seqs * n_heads * max_ctx, sizeof(float));
    for (int s = 0; s < n_seqs; s++) {
        win[s] = window;
        for (int h = 0; h < n_heads; h++)
            for (int t = 0; t < max_ctx; t++)
                scores[((size_t)s * n_heads + h) * max_ctx + t] =
                    t < n_pos[s] ? (float)(2.5 * rng_normal(&rng) + 0.3 * h) : NAN;
    }
    float* d_scores = dev_put(scores, (size_t)n_seqs * n_heads * max_ctx * sizeof(float));
    int32_t* d_pos = dev_put(n_pos, n_seqs * sizeof(int32_t));
    int32_t* d_win = dev_put(win, n_seqs * sizeof(int32_t));
    EtxAttnStats* d_out = etx_dev_malloc(n_seqs * sizeof(EtxAttnStats));
    const size_t scratch_bytes = etx_attn_metrics_scratch_bytes(n_seqs, n_heads, max_ctx);
    void* d_scratch = etx_dev_malloc(scratch_bytes);
    etx_dev_memset(d_scratch, 0xff, scratch_bytes); // stale contents must not matter
    etx_dev_sync();
    const double t0 = now_ms();
    etx_attn_metrics(d_scores, NULL, n_seqs, n_heads, max_ctx, d_pos, window ? d_win : NULL, d_out, d_scratch, NULL);
    etx_dev_sync();
#ifdef ETX_NATIVE_CUDA
    fprintf(stderr, "%s, attention metrics, %d sequences x %d heads, max_ctx %d, window %d: %.3f ms\n",
            etx_dev_name(), n_seqs, n_heads, max_ctx, window, now_ms() - t0);
#else
    (void)t0;
#endif
    EtxAttnStats out[8];
    etx_dev_download(out, d_out, n_seqs * sizeof(EtxAttnStats));

    float* packed = xcalloc_t((size_t)n_heads * max_ctx, sizeof(float));
    float* scratch = xcalloc_t((size_t)(n_heads + 1) * max_ctx, sizeof(float));
    for (int s = 0; s < n_seqs; s++) {
        for (int h = 0; h < n_heads; h++)
            memcpy(packed + (size_t)h * n_pos[s], scores + ((size_t)s * n_heads + h) * max_ctx,
                   (size_t)n_pos[s] * sizeof(float));
        const AttnMetrics want = attn_metrics(packed, n_heads, n_pos[s], window, scratch);
        const int tag = n_heads * 100000 + window * 10 + s;
        check_close("attn_entropy", tag, out[s].attn_entropy, want.attn_entropy, AM_REL, 1e-6);
        check_close("attn_varentropy", tag, out[s].attn_varentropy, want.attn_varentropy, AM_REL, 1e-9);
        check_close("agreement", tag, out[s].agreement, want.agreement, AM_REL, 1e-12);
        check_close("interaction", tag, out[s].interaction, want.interaction, AM_REL, 1e-9);
    }
    free(packed);
    free(scratch);
    free(scores);
    etx_dev_free(d_scores);
    etx_dev_free(d_pos);
    etx_dev_free(d_win);
    etx_dev_free(d_out);
    etx_dev_free(d_scratch);
}

// Lengths 1, 7, 300 (scores beyond them NaN, never to be read).
static void check_attn(int n_heads, int window) {
    const int32_t n_pos[3] = {1, 7, 300};
    check_attn_lengths(n_heads, window, 3, n_pos, 320);
}

START_TEST(test_attn_metrics) {
    check_attn(9, 0);
    check_attn(9, 4096);
    check_attn(32, 0);
    check_attn(32, 4096);
}
END_TEST

// The window filled exactly (no zero slots, clipped log) and overfilled (the window
// becomes n_pos); one sequence of 4096 positions; ETX_ATTN_MAX_HEADS heads; a sequence
// with no position (zeros).
START_TEST(test_attn_metrics_edges) {
    const int32_t full[3] = {4096, 4100, 0};
    check_attn_lengths(9, 4096, 3, full, 4100);
    const int32_t one_long[1] = {4096}; // batch 1, a Llama-3-8B-like last layer
    check_attn_lengths(32, 0, 1, one_long, 4096);
    const int32_t few[2] = {3, 40};
    check_attn_lengths(ETX_ATTN_MAX_HEADS, 0, 2, few, 40);
    check_attn_lengths(ETX_ATTN_MAX_HEADS, 64, 2, few, 40);
}
END_TEST

// ----------------------------------------------------------------------------
// policy step

// The policy settings the test cycles through; *_FB ones need the exact fallback.
// PC_SAMPLE_NSIGMA: top-nσ with n 0.5 and top_k 0 (its floor ends the kept prefix inside
// the top-K list: no fallback); _NSIGMA_FB: n 3 keeps several hundred tokens of a random
// row; _EDT: the entropy-based temperature with top_k 40 and top-nσ 1.
enum { PC_GREEDY, PC_SAMPLE_PLAIN_FB, PC_SAMPLE_K40, PC_SAMPLE_TOP_P_FB, PC_SAMPLE_MIN_P_FB, PC_SAMPLE_K200_FB,
       PC_SAMPLE_KCAP_ALL, PC_SAMPLE_K5_HOT, PC_SAMPLE_K_VOCAB_FB, PC_SAMPLE_NSIGMA, PC_SAMPLE_NSIGMA_FB,
       PC_SAMPLE_EDT, PC_ENTROPIX_DEFAULT, PC_ENTROPIX_ARGMAX,
       PC_ENTROPIX_PAUSE, PC_ENTROPIX_HELV, PC_ENTROPIX_LEHV, PC_ENTROPIX_HEHV, PC_ENTROPIX_ADAPTIVE,
       PC_ENTROPIX_HEHV_K0_FB, PC_LEARNED_DRAW, PC_LEARNED_AFTER_PAUSE, PC_LEARNED_ARGMAX_FB, PC_COUNT };

#define PAUSE_TOKEN 7

// A learned network with random weights (registered: its id), the features' rough
// scales as mean / scale so that every action has a fair share: 2 hidden layers of 64 and
// the four action kinds, drawn (PC_LEARNED_DRAW, _AFTER_PAUSE); one hidden layer, the
// most likely action, and a sample action with top_k 0 that needs the fallback
// (PC_LEARNED_ARGMAX_FB).
static uint32_t learned_net(int argmax_fb) {
    static uint32_t ids[2];
    if (ids[argmax_fb]) return ids[argmax_fb];
    etx_learned_net* n = xcalloc_t(1, sizeof *n);
    uint64_t rng = rng_seed(argmax_fb ? 77 : 78);
    n->n_layers = argmax_fb ? 1 : 2;
    n->hidden[0] = argmax_fb ? 9 : 64;
    n->hidden[1] = 64;
    n->choose_argmax = argmax_fb;
    n->n_actions = 4;
    n->actions[0] = (etx_learned_action){.kind = ETX_ACTION_ARGMAX};
    n->actions[1] = (etx_learned_action){.kind = ETX_ACTION_SAMPLE, .temperature = 0.8f, .top_k = argmax_fb ? 0 : 40,
                                         .top_p = 0.9f, .min_p = 0.0f};
    n->actions[2] = (etx_learned_action){.kind = argmax_fb ? ETX_ACTION_SAMPLE : ETX_ACTION_PAUSE,
                                         .temperature = 1.5f, .top_k = 3, .top_p = 1.0f, .min_p = 0.0f};
    n->actions[3] = (etx_learned_action){.kind = ETX_ACTION_ADAPTIVE};
    const float mean[ETX_LEARNED_FEATURES] = {5, 10, 2, 1, 0.5f, 2.5f, -3, -4, -5, -6, 7, 7, 0.5f};
    const float scale[ETX_LEARNED_FEATURES] = {2, 10, 1, 0.5f, 0.3f, 1.5f, 2, 2, 2, 2, 2, 1, 0.5f};
    memcpy(n->mean, mean, sizeof mean);
    memcpy(n->scale, scale, sizeof scale);
    for (int i = 0; i < ETX_LEARNED_MAX_WEIGHTS; i++) n->w[i] = (float)(rng_uniform(&rng) - 0.5);
    ck_assert_int_eq(etx_learned_register(n, &ids[argmax_fb]).code, ETX_OK);
    free(n);
    return ids[argmax_fb];
}

static etx_policy make_policy(int pc, int vocab, uint64_t seed) {
    etx_policy p = etx_policy_default(ETX_POLICY_SAMPLE);
    etx_entropix_params* e = &p.entropix;
    switch (pc) {
    case PC_GREEDY: p = etx_policy_default(ETX_POLICY_GREEDY); break;
    case PC_SAMPLE_PLAIN_FB: break; // T 1, top_k 0: the whole vocabulary
    case PC_SAMPLE_K40: p.temperature = 0.7f, p.top_k = 40; break;
    case PC_SAMPLE_TOP_P_FB: p.temperature = 1.3f, p.top_p = 0.9f; break;
    case PC_SAMPLE_MIN_P_FB: p.temperature = 0.8f, p.min_p = 0.05f; break;
    case PC_SAMPLE_K200_FB: p.top_k = 200; break;
    case PC_SAMPLE_KCAP_ALL: p.temperature = 0.5f, p.top_k = ETX_TOPK, p.top_p = 0.95f, p.min_p = 0.02f; break;
    case PC_SAMPLE_K5_HOT: p.temperature = 2.0f, p.top_k = 5, p.top_p = 0.5f; break;
    case PC_SAMPLE_K_VOCAB_FB: p.temperature = 0.9f, p.top_k = vocab + 5; break;
    case PC_SAMPLE_NSIGMA: p.top_n_sigma = 0.5f; break;
    case PC_SAMPLE_NSIGMA_FB: p.temperature = 1.5f, p.top_n_sigma = 3.0f, p.top_p = 0.95f; break;
    case PC_SAMPLE_EDT: p.temperature = 1.2f, p.top_k = 40, p.edt_theta = 1.0f, p.top_n_sigma = 1.0f; break;
    case PC_LEARNED_DRAW:
    case PC_LEARNED_AFTER_PAUSE:
    case PC_LEARNED_ARGMAX_FB:
        p = etx_policy_default(ETX_POLICY_LEARNED);
        p.learned = learned_net(pc == PC_LEARNED_ARGMAX_FB);
        p.entropix.pause_token = PAUSE_TOKEN;
        break;
    default: {
        p = etx_policy_default(ETX_POLICY_ENTROPIX);
        e = &p.entropix;
        e->pause_token = PAUSE_TOKEN;
        // thresholds that force a branch whatever H, V >= 0 are
        switch (pc) {
        case PC_ENTROPIX_ARGMAX: e->low_ent_thresh = 1e9f, e->low_vent_thresh = 1e9f; break;
        case PC_ENTROPIX_PAUSE:
        case PC_ENTROPIX_HELV:
            e->low_ent_thresh = -1.0f, e->high_ent_thresh = -1.0f, e->low_vent_thresh = 1e9f;
            break;
        case PC_ENTROPIX_LEHV:
            e->low_ent_thresh = -1.0f, e->low_vent_thresh = -1.0f, e->high_ent_thresh = 1e9f;
            e->high_vent_thresh = -1.0f;
            break;
        case PC_ENTROPIX_HEHV:
        case PC_ENTROPIX_HEHV_K0_FB:
            e->low_ent_thresh = -1.0f, e->low_vent_thresh = -1.0f, e->high_ent_thresh = -1.0f;
            e->med_ent_thresh = -1.0f, e->high_vent_thresh = -1.0f;
            if (pc == PC_ENTROPIX_HEHV_K0_FB) e->top_k = 0;
            break;
        case PC_ENTROPIX_ADAPTIVE:
            e->low_ent_thresh = -1.0f, e->low_vent_thresh = -1.0f, e->high_ent_thresh = 1e9f;
            e->high_vent_thresh = 1e9f;
            e->ada_top_k_int = 0.6f; // with IS up to 5: top_k up to the clip at 100
            e->n_adaptive_samples = 5;
            break;
        default: break; // the reference's parameters on the rows' own metrics
        }
    }
    }
    p.seed = seed;
    return p;
}

// The branch each forced setting must reach (-1: not forced).
static int forced_branch(int pc) {
    switch (pc) {
    case PC_ENTROPIX_ARGMAX: return ETX_BRANCH_ARGMAX;
    case PC_ENTROPIX_PAUSE: return ETX_BRANCH_PAUSE;
    case PC_ENTROPIX_HELV: return ETX_BRANCH_HELV;
    case PC_ENTROPIX_LEHV: return ETX_BRANCH_LEHV;
    case PC_ENTROPIX_HEHV:
    case PC_ENTROPIX_HEHV_K0_FB: return ETX_BRANCH_HEHV;
    case PC_ENTROPIX_ADAPTIVE: return ETX_BRANCH_ADAPTIVE;
    default: return -1;
    }
}

// engine.c: is_stop_token, then the length limits
static int expected_done(const EtxSeqState* st, const int32_t* stop_ids, const int32_t* eos, int n_eos, int32_t tok) {
    for (int i = 0; i < st->n_stop; i++)
        if (stop_ids[st->stop_offset + i] == tok) return ETX_REQ_DONE_STOP;
    if (!st->ignore_eos)
        for (int i = 0; i < n_eos; i++)
            if (eos[i] == tok) return ETX_REQ_DONE_STOP;
    const int n_tokens = st->step + 1;
    if (n_tokens >= st->max_tokens || st->n_prompt + n_tokens >= st->max_seq_len) return ETX_REQ_DONE_LENGTH;
    return 0;
}

#define CK_FIELD_EQ(f) \
    ck_assert_msg(memcmp(&got->f, &want->f, sizeof want->f) == 0, "seq %d (setting %d): trace " #f " differs", s, pc)

// n_seqs sequences (setting i % PC_COUNT) over random rows of `vocab` logits: the device
// step against sampler_pick + engine.c, with (seed, key, step) varying per sequence.
static void check_policy_step(int vocab, int reps, uint64_t seed0) {
    const int n_seqs = PC_COUNT * reps;
    uint64_t rng = rng_seed(seed0);
    float* x = xcalloc_t((size_t)n_seqs * vocab, sizeof(float));
    for (int s = 0; s < n_seqs; s++) {
        const int kind = (s / PC_COUNT) % 3 == 2 ? ROW_TIES : ROW_RANDOM;
        fill_row(x + (size_t)s * vocab, vocab, kind, &rng);
    }
    float* d_x = dev_put(x, (size_t)n_seqs * vocab * sizeof(float));
    EtxVocabStats* d_stats = etx_dev_malloc(n_seqs * sizeof(EtxVocabStats));
    PolicyCandidate* d_cand = etx_dev_malloc((size_t)n_seqs * ETX_TOPK * sizeof(PolicyCandidate));
    void* d_vp_scratch = etx_dev_malloc(etx_vocab_pass_scratch_bytes(n_seqs));
    etx_dev_sync();
    const double t0 = now_ms();
    etx_vocab_pass(d_x, NULL, n_seqs, vocab, ETX_TOPK, d_stats, d_cand, NULL, d_vp_scratch, NULL);
    etx_dev_sync();
    const double t_vocab = now_ms() - t0;
    EtxVocabStats* stats = xcalloc_t(n_seqs, sizeof(EtxVocabStats));
    etx_dev_download(stats, d_stats, n_seqs * sizeof(EtxVocabStats));

    // per sequence: attention metrics, policy, state
    EtxAttnStats* attn = xcalloc_t(n_seqs, sizeof(EtxAttnStats));
    etx_policy* pol = xcalloc_t(n_seqs, sizeof(etx_policy));
    EtxSeqState* st = xcalloc_t(n_seqs, sizeof(EtxSeqState));
    for (int s = 0; s < n_seqs; s++) {
        const int pc = s % PC_COUNT;
        attn[s].attn_entropy = (float)(4.0 * rng_uniform(&rng));
        attn[s].attn_varentropy = (float)(2.0 * rng_uniform(&rng));
        attn[s].agreement = (float)rng_uniform(&rng);
        attn[s].interaction = (float)(5.0 * rng_uniform(&rng));
        pol[s] = make_policy(pc, vocab, rng_next_u64(&rng));
        st[s].key = rng_next_u64(&rng);
        st[s].request_id = 100 + s;
        st[s].step = (int32_t)(rng_next_u64(&rng) % 5000);
        st[s].prev_token = pc == PC_ENTROPIX_HELV || pc == PC_LEARNED_AFTER_PAUSE ? PAUSE_TOKEN
                                                                                  : (int32_t)(PAUSE_TOKEN + 1 + s % 50);
        st[s].pause_token = PAUSE_TOKEN;
        st[s].max_tokens = 1 << 20;
        st[s].n_prompt = 10;
        st[s].max_seq_len = 1 << 20;
    }

    // the CPU reference: the decision (hostdev/policy_math.h) and the token (sampler_pick)
    Sampler smp;
    build_sampler(&smp, vocab);
    int32_t* want_tok = xcalloc_t(n_seqs, sizeof(int32_t));
    PolicyDecision* want_d = xcalloc_t(n_seqs, sizeof(PolicyDecision));
    PolicyMetrics* want_m = xcalloc_t(n_seqs, sizeof(PolicyMetrics));
    int learned_actions[3][ETX_LEARNED_MAX_ACTIONS] = {{0}}; // per learned setting, how often each action
    for (int s = 0; s < n_seqs; s++) {
        const int pc = s % PC_COUNT;
        const PolicyMetrics m = {stats[s].entropy,        stats[s].varentropy, attn[s].attn_entropy,
                                 attn[s].attn_varentropy, attn[s].agreement,  attn[s].interaction,
                                 stats[s].max,            stats[s].sigma};
        want_m[s] = m;
        if (pol[s].kind == ETX_POLICY_LEARNED) { // the features from the CPU's own sort
            const int n_cand = sampler_candidates(&smp, x + (size_t)s * vocab, ETX_CONFIDENCE_TOP_K);
            want_d[s] = learned_decide(&pol[s], etx_learned_get(pol[s].learned), &m, smp.cand, n_cand, stats[s].log_z,
                                       st[s].key, (uint32_t)st[s].step, st[s].prev_token, st[s].pause_token);
            learned_actions[pc - PC_LEARNED_DRAW][want_d[s].action]++;
            if (pc == PC_LEARNED_AFTER_PAUSE) ck_assert_int_ne(want_d[s].branch, ETX_BRANCH_PAUSE);
        } else {
            want_d[s] = pol[s].kind == ETX_POLICY_ENTROPIX
                            ? entropix_decide(&pol[s].entropix, &m, st[s].prev_token, st[s].pause_token)
                            : policy_decision_simple(&pol[s], &m);
        }
        if (forced_branch(pc) >= 0)
            ck_assert_msg((int)want_d[s].branch == forced_branch(pc), "setting %d reached branch %d", pc,
                          (int)want_d[s].branch);
        if (pc == PC_ENTROPIX_ADAPTIVE) ck_assert_int_eq(want_d[s].n_samples, 5);
        want_tok[s] = sampler_pick(&smp, x + (size_t)s * vocab, &want_d[s], pol[s].seed, st[s].key,
                                   (uint32_t)st[s].step);
    }

    // stop conditions: by index, a stop id that is the token, an EOS that is the token
    // (ignored or not), max_tokens reached, the context full
    int32_t eos[8], n_eos = 0;
    int32_t* stop_ids = xcalloc_t((size_t)n_seqs * 2, sizeof(int32_t));
    int n_stop_ids = 0;
    for (int s = 0; s < n_seqs; s++) {
        const int sel = (s / PC_COUNT + s) % 6;
        switch (sel) {
        case 1: // a stop list holding the token (after another id)
            st[s].stop_offset = n_stop_ids;
            st[s].n_stop = 2;
            stop_ids[n_stop_ids++] = (want_tok[s] + 1) % vocab;
            stop_ids[n_stop_ids++] = want_tok[s];
            break;
        case 2: st[s].max_tokens = st[s].step + 1; break;
        case 3: st[s].max_seq_len = st[s].n_prompt + st[s].step + 1; break;
        case 4:
        case 5:
            if (n_eos < 8) eos[n_eos++] = want_tok[s];
            st[s].ignore_eos = sel == 5;
            break;
        default: // a stop list without the token
            st[s].stop_offset = n_stop_ids;
            st[s].n_stop = 1;
            stop_ids[n_stop_ids++] = (want_tok[s] + 3) % vocab;
            break;
        }
    }

    // the device step
    EtxAttnStats* d_attn = dev_put(attn, n_seqs * sizeof(EtxAttnStats));
    etx_policy* d_pol = dev_put(pol, n_seqs * sizeof(etx_policy));
    EtxSeqState* d_st = dev_put(st, n_seqs * sizeof(EtxSeqState));
    int32_t* d_stop = dev_put(stop_ids, (size_t)n_seqs * 2 * sizeof(int32_t));
    int32_t* d_eos = dev_put(eos, sizeof eos);
    const size_t scratch_bytes = etx_policy_scratch_bytes(n_seqs, vocab);
    void* d_scratch = etx_dev_malloc(scratch_bytes);
    int32_t* d_tok = etx_dev_malloc(n_seqs * sizeof(int32_t));
    int32_t* d_done = etx_dev_malloc(n_seqs * sizeof(int32_t));
    etx_trace_record* d_trace = etx_dev_malloc(n_seqs * sizeof(etx_trace_record));
    etx_dev_memset(d_scratch, 0xab, scratch_bytes); // stale contents must not matter
    etx_dev_memset(d_tok, 0xff, n_seqs * sizeof(int32_t));
    // the registered networks, id i at i - 1 (as the CUDA backend uploads them)
    const uint32_t n_nets = etx_learned_count();
    etx_learned_net* d_nets = etx_dev_malloc(n_nets * sizeof(etx_learned_net));
    for (uint32_t i = 0; i < n_nets; i++) etx_dev_upload(d_nets + i, etx_learned_get(i + 1), sizeof(etx_learned_net));
    EtxPolicyArgs a = {.n_seqs = n_seqs, .vocab = vocab, .logits = d_x, .stats = d_stats, .cand = d_cand,
                       .n_cand = vocab < ETX_TOPK ? vocab : ETX_TOPK, .attn = d_attn, .policies = d_pol,
                       .states = d_st, .stop_ids = d_stop, .eos_ids = d_eos, .n_eos = n_eos,
                       .scratch = d_scratch, .tokens = d_tok, .done = d_done, .trace = d_trace, .nets = d_nets};
    etx_dev_sync();
    const double t1 = now_ms();
    etx_policy_step(&a, NULL);
    etx_dev_sync();
    const double t_policy = now_ms() - t1;
    int32_t* tok = xcalloc_t(n_seqs, sizeof(int32_t));
    int32_t* done = xcalloc_t(n_seqs, sizeof(int32_t));
    etx_trace_record* trace = xcalloc_t(n_seqs, sizeof(etx_trace_record));
    etx_dev_download(tok, d_tok, n_seqs * sizeof(int32_t));
    etx_dev_download(done, d_done, n_seqs * sizeof(int32_t));
    etx_dev_download(trace, d_trace, n_seqs * sizeof(etx_trace_record));

    int outcomes[4] = {0, 0, 0, 0};
    int fallbacks = 0, adaptive_top_k = 0;
    for (int s = 0; s < n_seqs; s++) {
        const int pc = s % PC_COUNT;
        const PolicyDecision* d = &want_d[s];
        const int need = (d->top_k <= 0 || d->top_k >= vocab) ? vocab : d->top_k;
        if (d->forced_token < 0 && !d->argmax && need > a.n_cand) fallbacks++;
        if (pc == PC_ENTROPIX_ADAPTIVE && d->top_k > adaptive_top_k) adaptive_top_k = d->top_k;
        ck_assert_msg(tok[s] == want_tok[s], "seq %d (setting %d, vocab %d, step %d): token %d, sampler_pick %d", s,
                      pc, vocab, st[s].step, tok[s], want_tok[s]);
        const int want_done = expected_done(&st[s], stop_ids, eos, n_eos, want_tok[s]);
        ck_assert_msg(done[s] == want_done, "seq %d: done %d, want %d", s, done[s], want_done);
        outcomes[want_done]++;
        // engine.c's record, from the same metrics and log Z
        etx_trace_record w;
        memset(&w, 0, sizeof w);
        w.request_id = st[s].request_id;
        w.step = st[s].step;
        w.token = want_tok[s];
        w.logprob = x[(size_t)s * vocab + want_tok[s]] - stats[s].log_z;
        w.entropy = want_m[s].entropy;
        w.varentropy = want_m[s].varentropy;
        w.attn_entropy = want_m[s].attn_entropy;
        w.attn_varentropy = want_m[s].attn_varentropy;
        w.agreement = want_m[s].agreement;
        w.interaction = want_m[s].interaction;
        w.branch = d->branch;
        w.temperature = d->temperature;
        w.top_k = d->top_k;
        w.top_p = d->top_p;
        w.min_p = d->min_p;
        w.action = d->action;
        w.action_logprob = d->action_logprob;
        const etx_trace_record* got = &trace[s];
        const etx_trace_record* want = &w;
        CK_FIELD_EQ(request_id);
        CK_FIELD_EQ(step);
        CK_FIELD_EQ(token);
        CK_FIELD_EQ(logprob);
        CK_FIELD_EQ(entropy);
        CK_FIELD_EQ(varentropy);
        CK_FIELD_EQ(attn_entropy);
        CK_FIELD_EQ(attn_varentropy);
        CK_FIELD_EQ(agreement);
        CK_FIELD_EQ(interaction);
        CK_FIELD_EQ(branch);
        CK_FIELD_EQ(temperature);
        CK_FIELD_EQ(top_k);
        CK_FIELD_EQ(top_p);
        CK_FIELD_EQ(min_p);
        CK_FIELD_EQ(action);
        CK_FIELD_EQ(action_logprob);
    }
#ifdef ETX_NATIVE_CUDA
    fprintf(stderr, "%s, vocab %d, %d sequences (%d through the fallback): vocab pass %.3f ms, policy step %.3f ms\n",
            etx_dev_name(), vocab, n_seqs, fallbacks, t_vocab, t_policy);
#else
    (void)t_vocab, (void)t_policy;
#endif
    // the settings really exercised what they are named after
    ck_assert_int_gt(outcomes[0], 0);
    ck_assert_int_gt(outcomes[ETX_REQ_DONE_STOP], 0);
    ck_assert_int_gt(outcomes[ETX_REQ_DONE_LENGTH], 0);
    if (vocab > ETX_TOPK) ck_assert_int_ge(fallbacks, 6 * reps);
    if (reps >= 8) ck_assert_int_eq(adaptive_top_k, 100); // the clip's top, served by the list
    if (reps >= 8) { // the learned settings took more than one action each; never a pause after one
        for (int k = 0; k < 3; k++) {
            int kinds = 0;
            for (int j = 0; j < ETX_LEARNED_MAX_ACTIONS; j++) kinds += learned_actions[k][j] > 0;
            ck_assert_msg(kinds >= 2, "learned setting %d took one action only", k);
        }
        ck_assert_int_eq(learned_actions[PC_LEARNED_AFTER_PAUSE - PC_LEARNED_DRAW][2], 0);
    }

    // without a trace pointer: the same tokens, nothing else needed
    a.trace = NULL;
    etx_dev_memset(d_tok, 0xff, n_seqs * sizeof(int32_t));
    etx_policy_step(&a, NULL);
    etx_dev_sync();
    etx_dev_download(tok, d_tok, n_seqs * sizeof(int32_t));
    for (int s = 0; s < n_seqs; s++) ck_assert_int_eq(tok[s], want_tok[s]);

    free_sampler(&smp);
    free(x);
    free(stats);
    free(attn);
    free(pol);
    free(st);
    free(want_tok);
    free(want_d);
    free(want_m);
    free(stop_ids);
    free(tok);
    free(done);
    free(trace);
    etx_dev_free(d_x);
    etx_dev_free(d_stats);
    etx_dev_free(d_cand);
    etx_dev_free(d_attn);
    etx_dev_free(d_pol);
    etx_dev_free(d_st);
    etx_dev_free(d_stop);
    etx_dev_free(d_eos);
    etx_dev_free(d_scratch);
    etx_dev_free(d_tok);
    etx_dev_free(d_done);
    etx_dev_free(d_trace);
    etx_dev_free(d_vp_scratch);
    etx_dev_free(d_nets);
}

START_TEST(test_policy_vocab_1000) { check_policy_step(1000, 24, 501); }
END_TEST

START_TEST(test_policy_vocab_100) { check_policy_step(100, 4, 502); } // every list fits: no fallback
END_TEST

START_TEST(test_policy_vocab_4096) { check_policy_step(4096, 2, 503); }
END_TEST

START_TEST(test_policy_vocab_32000) { check_policy_step(32000, 1, 504); } // fallback sorts 2^15 keys
END_TEST

START_TEST(test_policy_vocab_128256) { check_policy_step(128256, 1, 505); } // Llama 3: 2^17 keys
END_TEST

// ----------------------------------------------------------------------------
// dslider: a policy with state

// DS_SETTINGS settings of the dslider policy, chosen so that each path runs: the
// reference's coefficients (outlier nearly always), the inlier path (outlier score pushed
// below 0: argmax or the entropy-matched draw), the outlier path with the Dirichlet
// trusted (the mix's argmax) or never (a draw from the Dirichlet sample), the Dirichlet's
// mean instead of a draw, and a small support.
enum { DS_DEFAULT, DS_INLIER, DS_TRUST, DS_DRAW, DS_MEAN, DS_SMALL, DS_SETTINGS };

static etx_policy dslider_setting(int k, uint64_t seed) {
    etx_policy p = etx_policy_default(ETX_POLICY_DSLIDER);
    p.seed = seed;
    etx_dslider_params* d = &p.dslider;
    switch (k) {
    case DS_INLIER: d->outlier_bias = -1e6f, d->argmax_bias = 0.9f; break;
    case DS_TRUST: d->dirichlet_bias = 1e6f; break;
    case DS_DRAW: d->dirichlet_bias = -1e6f; break;
    case DS_MEAN: d->dirichlet_wild = 0, d->dirichlet_bias = -1e6f; break;
    case DS_SMALL: d->support = 8, d->outlier_topk = 3, d->target_entropy_inv_temp = 1.0f; break;
    default: break;
    }
    return p;
}

// n_seqs sequences (setting s % DS_SETTINGS) run `steps` steps, each on fresh random rows:
// the device's token, trace record and state after every step against the CPU's
// dslider_decide + policy_trace_record on its own sorted candidates, bit for bit; the
// states carried across steps on both sides (the device's never leave it).
static void check_dslider(int vocab, int reps, int steps, uint64_t seed0) {
    const int n_seqs = DS_SETTINGS * reps;
    uint64_t rng = rng_seed(seed0);
    etx_policy* pol = xcalloc_t(n_seqs, sizeof(etx_policy));
    EtxSeqState* st = xcalloc_t(n_seqs, sizeof(EtxSeqState));
    DSliderState* want_ds = xcalloc_t(n_seqs, sizeof(DSliderState));
    DSliderState* got_ds = xcalloc_t(n_seqs, sizeof(DSliderState));
    for (int s = 0; s < n_seqs; s++) {
        pol[s] = dslider_setting(s % DS_SETTINGS, rng_next_u64(&rng));
        ck_assert_int_eq(etx_policy_validate(&pol[s]).code, ETX_OK);
        st[s] = (EtxSeqState){.key = rng_next_u64(&rng), .request_id = 300 + s, .step = 0, .prev_token = 1,
                              .pause_token = -1, .max_tokens = 1 << 20, .n_prompt = 10, .max_seq_len = 1 << 20};
    }
    float* x = xcalloc_t((size_t)n_seqs * vocab, sizeof(float));
    float* d_x = etx_dev_malloc((size_t)n_seqs * vocab * sizeof(float));
    EtxVocabStats* d_stats = etx_dev_malloc(n_seqs * sizeof(EtxVocabStats));
    PolicyCandidate* d_cand = etx_dev_malloc((size_t)n_seqs * ETX_TOPK * sizeof(PolicyCandidate));
    void* d_vp_scratch = etx_dev_malloc(etx_vocab_pass_scratch_bytes(n_seqs));
    etx_policy* d_pol = dev_put(pol, n_seqs * sizeof(etx_policy));
    EtxSeqState* d_st = etx_dev_malloc(n_seqs * sizeof(EtxSeqState));
    DSliderState* d_ds = dev_put(want_ds, n_seqs * sizeof(DSliderState)); // zero: not initialised
    const int32_t eos = vocab - 1;
    int32_t* d_eos = dev_put(&eos, sizeof eos);
    void* d_scratch = etx_dev_malloc(etx_policy_scratch_bytes(n_seqs, vocab));
    int32_t* d_tok = etx_dev_malloc(n_seqs * sizeof(int32_t));
    int32_t* d_done = etx_dev_malloc(n_seqs * sizeof(int32_t));
    etx_trace_record* d_trace = etx_dev_malloc(n_seqs * sizeof(etx_trace_record));
    EtxVocabStats* stats = xcalloc_t(n_seqs, sizeof(EtxVocabStats));
    int32_t* tok = xcalloc_t(n_seqs, sizeof(int32_t));
    etx_trace_record* trace = xcalloc_t(n_seqs, sizeof(etx_trace_record));
    Sampler smp;
    build_sampler(&smp, vocab);
    int branches[DS_SETTINGS][ETX_BRANCH_COUNT] = {{0}};
    for (int t = 0; t < steps; t++) {
        for (int s = 0; s < n_seqs; s++) {
            // peaked rows now and then, so the inlier setting meets low top-k entropies
            const int kind = (s + t) % 4 == 3 ? ROW_PEAKED : (s + t) % 4 == 2 ? ROW_TIES : ROW_RANDOM;
            fill_row(x + (size_t)s * vocab, vocab, kind, &rng);
            st[s].step = t;
        }
        etx_dev_upload(d_x, x, (size_t)n_seqs * vocab * sizeof(float));
        etx_dev_upload(d_st, st, n_seqs * sizeof(EtxSeqState));
        etx_vocab_pass(d_x, NULL, n_seqs, vocab, ETX_TOPK, d_stats, d_cand, NULL, d_vp_scratch, NULL);
        EtxPolicyArgs a = {.n_seqs = n_seqs, .vocab = vocab, .logits = d_x, .stats = d_stats, .cand = d_cand,
                           .n_cand = vocab < ETX_TOPK ? vocab : ETX_TOPK, .attn = NULL, .policies = d_pol,
                           .states = d_st, .stop_ids = NULL, .eos_ids = d_eos, .n_eos = 1, .scratch = d_scratch,
                           .tokens = d_tok, .done = d_done, .trace = d_trace, .ds = d_ds};
        etx_policy_step(&a, NULL);
        etx_dev_sync();
        etx_dev_download(stats, d_stats, n_seqs * sizeof(EtxVocabStats));
        etx_dev_download(tok, d_tok, n_seqs * sizeof(int32_t));
        etx_dev_download(trace, d_trace, n_seqs * sizeof(etx_trace_record));
        etx_dev_download(got_ds, d_ds, n_seqs * sizeof(DSliderState));
        for (int s = 0; s < n_seqs; s++) {
            const float* row = x + (size_t)s * vocab;
            const PolicyMetrics m = {stats[s].entropy, stats[s].varentropy, 0, 0, 0, 0, stats[s].max, stats[s].sigma};
            const int n_cand = sampler_candidates(&smp, row, ETX_DSLIDER_CANDIDATES);
            const PolicyDecision d = dslider_decide(&pol[s], &want_ds[s], &m, smp.cand, n_cand, stats[s].log_z,
                                                    st[s].key, (uint32_t)t);
            ck_assert_int_ge(d.forced_token, 0);
            branches[s % DS_SETTINGS][d.branch]++;
            etx_trace_record w;
            memset(&w, 0, sizeof w);
            policy_trace_record(&w, st[s].request_id, t, d.forced_token, row[d.forced_token] - stats[s].log_z,
                                smp.cand, n_cand, stats[s].log_z, &m, &d);
            ck_assert_msg(tok[s] == d.forced_token, "dslider seq %d (setting %d, vocab %d) step %d: token %d, CPU %d",
                          s, s % DS_SETTINGS, vocab, t, tok[s], d.forced_token);
            ck_assert_msg(memcmp(&got_ds[s], &want_ds[s], sizeof(DSliderState)) == 0,
                          "dslider seq %d (setting %d, vocab %d) step %d: the device's state differs from the CPU's "
                          "(EMA of T %.9g vs %.9g, alpha[0] %.9g vs %.9g)",
                          s, s % DS_SETTINGS, vocab, t, (double)got_ds[s].temp, (double)want_ds[s].temp,
                          (double)got_ds[s].alpha[0], (double)want_ds[s].alpha[0]);
            const etx_trace_record* got = &trace[s];
            const etx_trace_record* want = &w;
            const int pc = s % DS_SETTINGS; // (CK_FIELD_EQ names the setting)
            CK_FIELD_EQ(token);
            CK_FIELD_EQ(logprob);
            CK_FIELD_EQ(branch);
            CK_FIELD_EQ(temperature);
            CK_FIELD_EQ(top_k);
            CK_FIELD_EQ(confidence);
            CK_FIELD_EQ(action);
            // the state is a state: finite, initialised, alpha in its bounds
            ck_assert_int_eq(want_ds[s].initialized, 1);
            ck_assert(isfinite(want_ds[s].temp) && isfinite(want_ds[s].dir_ent) && isfinite(want_ds[s].tc_var_naked));
            for (int i = 0; i < pol[s].dslider.support && i < n_cand; i++)
                ck_assert(want_ds[s].alpha[i] >= DS_MIN_ALPHA && want_ds[s].alpha[i] <= DS_MAX_ALPHA);
        }
    }
    // each setting took the path it is named after
    ck_assert_int_gt(branches[DS_INLIER][ETX_BRANCH_INLIER] + branches[DS_INLIER][ETX_BRANCH_ARGMAX], 0);
    ck_assert_int_eq(branches[DS_INLIER][ETX_BRANCH_OUTLIER] + branches[DS_INLIER][ETX_BRANCH_DIRICHLET], 0);
    ck_assert_int_eq(branches[DS_TRUST][ETX_BRANCH_DIRICHLET], steps * reps);
    ck_assert_int_eq(branches[DS_DRAW][ETX_BRANCH_OUTLIER], steps * reps);
    ck_assert_int_eq(branches[DS_MEAN][ETX_BRANCH_OUTLIER], steps * reps);
    if (reps * steps >= 12) ck_assert_int_gt(branches[DS_INLIER][ETX_BRANCH_INLIER], 0);
    free_sampler(&smp);
    free(pol);
    free(st);
    free(want_ds);
    free(got_ds);
    free(x);
    free(stats);
    free(tok);
    free(trace);
    void* dev[] = {d_x, d_stats, d_cand, d_vp_scratch, d_pol, d_st, d_ds, d_eos, d_scratch, d_tok, d_done, d_trace};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) etx_dev_free(dev[i]);
}

START_TEST(test_policy_dslider) {
    check_dslider(1000, 3, 6, 601);
    check_dslider(50, 2, 4, 602); // fewer tokens than the candidate list
}
END_TEST

START_TEST(test_policy_dslider_128256) { check_dslider(128256, 1, 3, 603); }
END_TEST

// ----------------------------------------------------------------------------
// non-finite logits and signals

// Rows of n logits, each with its own damage (none; NaN, +inf or -inf early, in the
// middle or as the last logit, so that with a split row every part's flag is merged;
// all -inf), three policies each (greedy, sample with top_k 0 through the fallback,
// entropix), and for entropix rows also attention signals with a NaN: the vocab pass's
// flag is logits_nonfinite's (metrics.h), and the policy step's token slot, done flag
// and trace record are what cpu_backend.c's pick_token gives: the fault's code,
// ETX_REQ_FAILED and policy_fault_record when policy_input_fault says so, else
// sampler_pick's token.
enum { NF_CLEAN, NF_NAN_FIRST, NF_POS_INF_MID, NF_NEG_INF_LAST, NF_NAN_LAST, NF_ALL_NEG_INF, NF_KINDS };

static void check_nonfinite(int n, int split) {
    const int n_seqs = NF_KINDS * 4; // kind x (greedy, sample, entropix, entropix with NaN attention)
    uint64_t rng = rng_seed(900 + (uint64_t)n);
    float* x = xcalloc_t((size_t)n_seqs * n, sizeof(float));
    etx_policy* pol = xcalloc_t(n_seqs, sizeof(etx_policy));
    EtxSeqState* st = xcalloc_t(n_seqs, sizeof(EtxSeqState));
    EtxAttnStats* attn = xcalloc_t(n_seqs, sizeof(EtxAttnStats));
    for (int s = 0; s < n_seqs; s++) {
        const int kind = s / 4, variant = s % 4;
        float* row = x + (size_t)s * n;
        fill_row(row, n, ROW_RANDOM, &rng);
        switch (kind) {
        case NF_NAN_FIRST: row[3] = NAN; break;
        case NF_POS_INF_MID: row[n / 2 + 1] = INFINITY; break;
        case NF_NEG_INF_LAST: row[n - 1] = -INFINITY; break;
        case NF_NAN_LAST: row[n - 1] = NAN; break;
        case NF_ALL_NEG_INF: fill_row(row, n, ROW_ALL_NEG_INF, &rng); break;
        default: break;
        }
        pol[s] = etx_policy_default(variant == 0 ? ETX_POLICY_GREEDY
                                                 : variant == 1 ? ETX_POLICY_SAMPLE : ETX_POLICY_ENTROPIX);
        pol[s].entropix.pause_token = PAUSE_TOKEN;
        pol[s].seed = 5 + (uint64_t)s;
        attn[s] = (EtxAttnStats){1.5f, 0.3f, 0.01f, 2.0f};
        if (variant == 3) attn[s].agreement = NAN;
        st[s] = (EtxSeqState){.key = 1000 + (uint64_t)s, .request_id = s, .step = 3, .prev_token = 9,
                              .pause_token = PAUSE_TOKEN, .max_tokens = 100, .n_prompt = 5, .max_seq_len = 1000};
    }
    float* d_x = dev_put(x, (size_t)n_seqs * n * sizeof(float));
    EtxVocabStats* d_stats = etx_dev_malloc(n_seqs * sizeof(EtxVocabStats));
    PolicyCandidate* d_cand = etx_dev_malloc((size_t)n_seqs * ETX_TOPK * sizeof(PolicyCandidate));
    void* d_vp = split ? etx_dev_malloc(etx_vocab_pass_scratch_bytes(n_seqs)) : NULL;
    etx_dev_memset(d_stats, 0xff, n_seqs * sizeof(EtxVocabStats)); // a stale flag must not survive
    etx_vocab_pass(d_x, NULL, n_seqs, n, ETX_TOPK, d_stats, d_cand, NULL, d_vp, NULL);
    EtxAttnStats* d_attn = dev_put(attn, n_seqs * sizeof(EtxAttnStats));
    etx_policy* d_pol = dev_put(pol, n_seqs * sizeof(etx_policy));
    EtxSeqState* d_st = dev_put(st, n_seqs * sizeof(EtxSeqState));
    const int32_t eos = 1;
    int32_t* d_eos = dev_put(&eos, sizeof eos);
    void* d_scratch = etx_dev_malloc(etx_policy_scratch_bytes(n_seqs, n));
    int32_t* d_tok = etx_dev_malloc(n_seqs * sizeof(int32_t));
    int32_t* d_done = etx_dev_malloc(n_seqs * sizeof(int32_t));
    etx_trace_record* d_trace = etx_dev_malloc(n_seqs * sizeof(etx_trace_record));
    EtxPolicyArgs a = {.n_seqs = n_seqs, .vocab = n, .logits = d_x, .stats = d_stats, .cand = d_cand,
                       .n_cand = n < ETX_TOPK ? n : ETX_TOPK, .attn = d_attn, .policies = d_pol, .states = d_st,
                       .stop_ids = NULL, .eos_ids = d_eos, .n_eos = 1, .scratch = d_scratch, .tokens = d_tok,
                       .done = d_done, .trace = d_trace};
    etx_policy_step(&a, NULL);
    etx_dev_sync();
    EtxVocabStats* stats = xcalloc_t(n_seqs, sizeof(EtxVocabStats));
    int32_t* tok = xcalloc_t(n_seqs, sizeof(int32_t));
    int32_t* done = xcalloc_t(n_seqs, sizeof(int32_t));
    etx_trace_record* trace = xcalloc_t(n_seqs, sizeof(etx_trace_record));
    etx_dev_download(stats, d_stats, n_seqs * sizeof(EtxVocabStats));
    etx_dev_download(tok, d_tok, n_seqs * sizeof(int32_t));
    etx_dev_download(done, d_done, n_seqs * sizeof(int32_t));
    etx_dev_download(trace, d_trace, n_seqs * sizeof(etx_trace_record));
    Sampler smp;
    build_sampler(&smp, n);
    int faults = 0;
    for (int s = 0; s < n_seqs; s++) {
        const float* row = x + (size_t)s * n;
        const int flag = logits_nonfinite(row, n);
        ck_assert_msg(stats[s].nonfinite == flag, "n %d row %d: flag %d, logits_nonfinite %d", n, s,
                      stats[s].nonfinite, flag);
        const int is_entropix = pol[s].kind == ETX_POLICY_ENTROPIX;
        const PolicyMetrics m = {stats[s].entropy, stats[s].varentropy, attn[s].attn_entropy,
                                 attn[s].attn_varentropy, attn[s].agreement, attn[s].interaction,
                                 stats[s].max, stats[s].sigma};
        const int fault = policy_input_fault(flag, &m, policy_signals_used(&pol[s]));
        if (fault) {
            faults++;
            etx_trace_record w;
            memset(&w, 0, sizeof w);
            policy_fault_record(&w, st[s].request_id, st[s].step, fault);
            ck_assert_msg(tok[s] == policy_fault_token(fault), "n %d row %d: token %d, fault %d", n, s, tok[s], fault);
            ck_assert_int_eq(done[s], ETX_REQ_FAILED);
            ck_assert_msg(memcmp(&trace[s], &w, sizeof w) == 0, "n %d row %d: fault record differs", n, s);
        } else {
            const PolicyDecision d = is_entropix ? entropix_decide(&pol[s].entropix, &m, st[s].prev_token,
                                                                   st[s].pause_token)
                                                 : policy_decision_simple(&pol[s], &m);
            const int32_t want = sampler_pick(&smp, row, &d, pol[s].seed, st[s].key, (uint32_t)st[s].step);
            ck_assert_msg(tok[s] == want, "n %d row %d: token %d, sampler_pick %d", n, s, tok[s], want);
        }
    }
    ck_assert_int_eq(faults, (NF_KINDS - 1) * 4 + 1); // every damaged row, and the clean row's NaN attention
    free_sampler(&smp);
    free(x), free(pol), free(st), free(attn), free(stats), free(tok), free(done), free(trace);
    etx_dev_free(d_x), etx_dev_free(d_stats), etx_dev_free(d_cand), etx_dev_free(d_attn), etx_dev_free(d_pol);
    etx_dev_free(d_st), etx_dev_free(d_eos), etx_dev_free(d_scratch), etx_dev_free(d_tok), etx_dev_free(d_done);
    etx_dev_free(d_trace);
    if (d_vp) etx_dev_free(d_vp);
}

START_TEST(test_nonfinite_rows) {
    check_nonfinite(100, 0);
    check_nonfinite(1000, 1); // too small to split
    check_nonfinite(32000, 1); // 4 blocks per row... of 24 rows: the split is vp_split's choice
    check_nonfinite(32000, 0);
}
END_TEST

// ----------------------------------------------------------------------------
// row maps: sequence s's logits and scores read at row row_of[s] of larger buffers (how
// the CUDA backend reads the rows where the forward wrote them) give exactly what the
// same rows give contiguous: statistics, candidates, attention signals, tokens, traces.

enum { RM_SEQS = 5, RM_ROWS = 12 };
static const int32_t RM_ROW_OF[RM_SEQS] = {10, 3, 7, 0, 11};

// a (RM_ROWS, width) buffer holding row s of src (RM_SEQS, width) at row RM_ROW_OF[s],
// NaN elsewhere (never read)
static float* spread_rows(const float* src, size_t width) {
    float* y = xcalloc_t((size_t)RM_ROWS * width, sizeof(float));
    for (size_t i = 0; i < (size_t)RM_ROWS * width; i++) y[i] = NAN;
    for (int s = 0; s < RM_SEQS; s++) memcpy(y + RM_ROW_OF[s] * width, src + s * width, width * sizeof(float));
    return y;
}

// the vocabulary pass and the policy over logits (contiguous, or spread with the map)
static void rm_sample(const float* x, const int32_t* row_of, int vocab, const etx_policy* pol, const EtxSeqState* st,
                      EtxVocabStats* stats, PolicyCandidate* cand, int32_t* tok, etx_trace_record* trace) {
    const int n = RM_SEQS, rows = row_of ? RM_ROWS : RM_SEQS;
    float* d_x = dev_put(x, (size_t)rows * vocab * sizeof(float));
    int32_t* d_map = row_of ? dev_put(row_of, n * sizeof(int32_t)) : NULL;
    EtxVocabStats* d_stats = etx_dev_malloc(n * sizeof(EtxVocabStats));
    PolicyCandidate* d_cand = etx_dev_malloc((size_t)n * ETX_TOPK * sizeof(PolicyCandidate));
    void* d_vp = etx_dev_malloc(etx_vocab_pass_scratch_bytes(n));
    etx_vocab_pass(d_x, d_map, n, vocab, ETX_TOPK, d_stats, d_cand, NULL, d_vp, NULL);
    etx_policy* d_pol = dev_put(pol, n * sizeof(etx_policy));
    EtxSeqState* d_st = dev_put(st, n * sizeof(EtxSeqState));
    const int32_t eos = 1;
    int32_t* d_eos = dev_put(&eos, sizeof eos);
    void* d_scratch = etx_dev_malloc(etx_policy_scratch_bytes(n, vocab));
    int32_t* d_tok = etx_dev_malloc(n * sizeof(int32_t));
    int32_t* d_done = etx_dev_malloc(n * sizeof(int32_t));
    etx_trace_record* d_trace = etx_dev_malloc(n * sizeof(etx_trace_record));
    EtxPolicyArgs a = {.n_seqs = n, .vocab = vocab, .logits = d_x, .logit_row = d_map, .stats = d_stats,
                       .cand = d_cand, .n_cand = ETX_TOPK, .attn = NULL, .policies = d_pol, .states = d_st,
                       .stop_ids = NULL, .eos_ids = d_eos, .n_eos = 1, .scratch = d_scratch, .tokens = d_tok,
                       .done = d_done, .trace = d_trace};
    etx_policy_step(&a, NULL);
    etx_dev_sync();
    etx_dev_download(stats, d_stats, n * sizeof(EtxVocabStats));
    etx_dev_download(cand, d_cand, (size_t)n * ETX_TOPK * sizeof(PolicyCandidate));
    etx_dev_download(tok, d_tok, n * sizeof(int32_t));
    etx_dev_download(trace, d_trace, n * sizeof(etx_trace_record));
    etx_dev_free(d_x), etx_dev_free(d_stats), etx_dev_free(d_cand), etx_dev_free(d_vp), etx_dev_free(d_pol);
    etx_dev_free(d_st), etx_dev_free(d_eos), etx_dev_free(d_scratch), etx_dev_free(d_tok), etx_dev_free(d_done);
    etx_dev_free(d_trace);
    if (d_map) etx_dev_free(d_map);
}

static void rm_metrics(const float* sc, const int32_t* row_of, int n_heads, int max_ctx, const int32_t* n_pos,
                       EtxAttnStats* out) {
    const int n = RM_SEQS, rows = row_of ? RM_ROWS : RM_SEQS;
    float* d_sc = dev_put(sc, (size_t)rows * n_heads * max_ctx * sizeof(float));
    int32_t* d_map = row_of ? dev_put(row_of, n * sizeof(int32_t)) : NULL;
    int32_t* d_pos = dev_put(n_pos, n * sizeof(int32_t));
    EtxAttnStats* d_out = etx_dev_malloc(n * sizeof(EtxAttnStats));
    void* d_scratch = etx_dev_malloc(etx_attn_metrics_scratch_bytes(n, n_heads, max_ctx));
    etx_attn_metrics(d_sc, d_map, n, n_heads, max_ctx, d_pos, NULL, d_out, d_scratch, NULL);
    etx_dev_sync();
    etx_dev_download(out, d_out, n * sizeof(EtxAttnStats));
    etx_dev_free(d_sc), etx_dev_free(d_pos), etx_dev_free(d_out), etx_dev_free(d_scratch);
    if (d_map) etx_dev_free(d_map);
}

START_TEST(test_row_maps) {
    uint64_t rng = rng_seed(808);
    const int vocab = 1000, n_heads = 9, max_ctx = 40;
    float* x = xcalloc_t((size_t)RM_SEQS * vocab, sizeof(float));
    etx_policy pol[RM_SEQS];
    EtxSeqState st[RM_SEQS];
    for (int s = 0; s < RM_SEQS; s++) {
        fill_row(x + (size_t)s * vocab, vocab, ROW_RANDOM, &rng);
        pol[s] = etx_policy_default(ETX_POLICY_SAMPLE);
        pol[s].seed = 77 + (uint64_t)s;
        pol[s].top_k = s % 2 ? 0 : 40; // top_k 0: the fallback kernel reads the whole row
        st[s] = (EtxSeqState){.key = 500 + (uint64_t)s, .request_id = s, .step = 2, .prev_token = 9,
                              .pause_token = PAUSE_TOKEN, .max_tokens = 100, .n_prompt = 5, .max_seq_len = 1000};
    }
    float* y = spread_rows(x, vocab);
    EtxVocabStats st_a[RM_SEQS], st_b[RM_SEQS];
    PolicyCandidate* ca = xcalloc_t((size_t)RM_SEQS * ETX_TOPK, sizeof(PolicyCandidate));
    PolicyCandidate* cb = xcalloc_t((size_t)RM_SEQS * ETX_TOPK, sizeof(PolicyCandidate));
    int32_t ta[RM_SEQS], tb[RM_SEQS];
    etx_trace_record ra[RM_SEQS], rb[RM_SEQS];
    rm_sample(x, NULL, vocab, pol, st, st_a, ca, ta, ra);
    rm_sample(y, RM_ROW_OF, vocab, pol, st, st_b, cb, tb, rb);
    ck_assert_msg(memcmp(st_a, st_b, sizeof st_a) == 0, "vocab pass statistics differ with a row map");
    ck_assert_msg(memcmp(ca, cb, (size_t)RM_SEQS * ETX_TOPK * sizeof(PolicyCandidate)) == 0,
                  "candidates differ with a row map");
    ck_assert_msg(memcmp(ta, tb, sizeof ta) == 0, "tokens differ with a row map");
    ck_assert_msg(memcmp(ra, rb, sizeof ra) == 0, "trace records differ with a row map");
    const size_t w = (size_t)n_heads * max_ctx;
    float* sc = xcalloc_t((size_t)RM_SEQS * w, sizeof(float));
    for (size_t i = 0; i < (size_t)RM_SEQS * w; i++) sc[i] = (float)(4.0 * rng_frand(&rng));
    float* sy = spread_rows(sc, w);
    const int32_t n_pos[RM_SEQS] = {1, 40, 17, 3, 28};
    EtxAttnStats ma[RM_SEQS], mb[RM_SEQS];
    rm_metrics(sc, NULL, n_heads, max_ctx, n_pos, ma);
    rm_metrics(sy, RM_ROW_OF, n_heads, max_ctx, n_pos, mb);
    ck_assert_msg(memcmp(ma, mb, sizeof ma) == 0, "attention signals differ with a row map");
    free(x), free(y), free(ca), free(cb), free(sc), free(sy);
}
END_TEST

// ----------------------------------------------------------------------------

static Suite* sampling_suite(void) {
    Suite* s = suite_create("sampling_kernels");
    TCase* tc = tcase_create("vocab pass");
    tcase_add_test(tc, test_vocab_pass_small);
    tcase_add_test(tc, test_vocab_pass_large);
    tcase_add_test(tc, test_vocab_pass_batch_invariant);
    suite_add_tcase(s, tc);
    tc = tcase_create("attention metrics");
    tcase_add_test(tc, test_attn_metrics);
    tcase_add_test(tc, test_attn_metrics_edges);
    suite_add_tcase(s, tc);
    tc = tcase_create("policy step");
    tcase_add_test(tc, test_policy_vocab_1000);
    tcase_add_test(tc, test_policy_vocab_100);
    tcase_add_test(tc, test_policy_vocab_4096);
    tcase_add_test(tc, test_policy_vocab_32000);
    tcase_add_test(tc, test_policy_vocab_128256);
    tcase_add_test(tc, test_policy_dslider);
    tcase_add_test(tc, test_policy_dslider_128256);
    suite_add_tcase(s, tc);
    tc = tcase_create("non-finite");
    tcase_add_test(tc, test_nonfinite_rows);
    suite_add_tcase(s, tc);
    tc = tcase_create("row maps");
    tcase_add_test(tc, test_row_maps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    char dev_name[256];
    if (!check_device_present(dev_name, sizeof dev_name)) { // asked in a child: see check_device.h
        printf("test_sampling_kernels: no device (%s); skipped\n", "etx_dev_available() == 0");
        return CHECK_SKIPPED;
    }
    return check_run_suite(sampling_suite());
}
