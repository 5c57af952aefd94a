/*
 * test_cuda_backend.c — the CUDA backend (host/cuda/) end to end through its
 * BackendOps, under the SIMT emulator (test_cuda_backend_emu) and natively
 * (test_cuda_backend_gpu, which exits 77 = skipped without a GPU).
 *
 *   1. logits() against the CPU forward (cpu_forward, float32) on the tiny Hugging Face
 *      fixture models (GQA; tied embeddings; llama3 RoPE scaling; head_dim 16 and 48, run
 *      with padded heads), on tiny Qwen2 (Q/K/V biases, head_dim 16) and Qwen3 (QK-norm,
 *      head_dim 24) models, from their HF directories and f32 GGUFs (padded heads too),
 *      and on the default model (SmolLM2, head_dim 64, a short prompt).
 *      Tolerance, per row: max_v |got - want| <= LOGIT_TOL * max_v |want|. The backend
 *      rounds every weight and every GEMM input (normed activations, attention output,
 *      swiglu output) and the K/V cache to bf16 (8 significant bits: relative error up to
 *      2^-9 = 0.2% each); those errors add up over the layers, so a few tenths of a percent
 *      to a few percent of the largest logit is the expected size. Measured (emulator,
 *      printed to stderr): 0.022 (tiny-llama-gqa), 0.021 (tied), 0.016 (llama3 RoPE),
 *      0.014 (tiny-qwen2), 0.0088 (tiny-qwen3), 0.011 / 0.0083 (their GGUFs), 0.0088
 *      (SmolLM2); with the sqrt(hdp/hd) q scale left in wq under QK-norm (undone by the
 *      norm) tiny-qwen3 gives 0.77; captured scores 0.014 .. 0.023. LOGIT_TOL = 0.05 is about 2x the
 *      worst (a real bug, e.g. a missed copy-on-write copy, gives 0.5 and more).
 *   2. step() on a hand-built plan (a prompt in two prefill chunks, other prompts, decode
 *      rows of several sequences with shuffled, non-consecutive block ids, a copy-on-write
 *      block copy for a forked sequence, and a decode batch whose picks are not in row
 *      order with an unsampled row): each pick's logits row (downloaded through the
 *      test-only accessor) equals logits() of the same tokens within STEP_TOL (the two
 *      paths differ only in decode vs prefill attention, whose float sums are ordered
 *      differently: a flipped bf16 rounding of an attention output moves the logits by
 *      about 1e-3 of their scale), and each greedy token is the argmax of its row. Entropix
 *      picks with tracing: the trace's entropy, varentropy and log-probability match
 *      logit_metrics on the downloaded row (rel 1e-4 + 1e-5: the vocab pass sums in double
 *      in another order), and the token is sampler_pick's for the decision entropix_decide
 *      makes from the traced metrics. With tracing, each pick's captured last-layer scores
 *      match the CPU forward's (LOGIT_TOL of the largest score) and the traced attention
 *      metrics equal host attn_metrics on those scores (rel 1e-5 plus small floors).
 *      The same plan on tiny-qwen3 (entropix, tracing) and tiny-qwen2 (greedy, padded).
 *      The same plan with decode batches padded to powers of two (ETX_CUDA_GRAPHS=1: the
 *      batches the CUDA graphs replay, recorded and replayed by the emulator as by a GPU).
 *   3. d2h_bytes grows by exactly 4 bytes per pick without tracing (the int32 token) and
 *      by 4 + sizeof(etx_trace_record) per pick with it.
 *   4. create fails cleanly, with a message, for a K/V pool that cannot fit and for an
 *      unsupported head_dim; the backend is registered under its name.
 */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_forward.h"
#include "cuda/cuda_backend.h"
#include "device.h"
#include "gemm.h"
#include "policy/metrics.h"
#include "policy/sampler.h"
#include "check_etx.h"
#include "check_device.h"
#include "check_logits.h"
#include "check_main.h"
#include "test_rng.h"

#define LOGIT_TOL 0.05 // of the row's max |logit|, backend vs float32 CPU (header comment)
#define STEP_TOL 0.01  // of the row's max |logit|, step() vs logits() (header comment)

static const BackendOps* ops(void) {
    const BackendOps* o = etx_cuda_backend();
    ck_assert_msg(o != NULL, "no CUDA backend registered");
    return o;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull; // test_rng.h
static int32_t rand_token(int vocab) { return rng_below(&rng_state, vocab); }


static int32_t argmax(const float* x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static BackendConfig make_cfg(int max_batch, int max_seq_len, int max_chunk, int kv_blocks, int bs, int trace) {
    BackendConfig c = {max_batch, max_seq_len, max_chunk, kv_blocks, bs, trace, 0, 0, 1};
    return c;
}

// ----------------------------------------------------------------------------
// 1. logits vs the CPU forward

static double check_model_logits(const etx_model* m, const char* name, int n, int max_chunk) {
    const int V = m->cfg.vocab_size;
    int32_t* ids = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) ids[i] = rand_token(V);
    float* want = malloc((size_t)n * V * sizeof(float));
    float* got = malloc((size_t)n * V * sizeof(float));
    float* last = malloc((size_t)V * sizeof(float));
    cpu_reference_logits(m, ids, n, want);

    CudaBackend* b;
    BackendConfig cfg = make_cfg(2, n + 8, max_chunk, 4, 16, 0);
    CK_OK(ops()->create(m, &cfg, &b));
    CK_OK(ops()->logits(b, ids, n, 1, got));
    CK_OK(ops()->logits(b, ids, n, 0, last));
    const double all = rel_diff(got, want, n, V);
    const double lst = rel_diff(last, want + (size_t)(n - 1) * V, 1, V);
    fprintf(stderr, "%s: %s logits vs CPU float32, %d tokens (chunks of %d): max |diff| / max |logit| = %.4g (all "
                    "positions), %.4g (last)\n",
            ops()->name, name, n, max_chunk, all, lst);
    ck_assert_msg(all <= LOGIT_TOL && lst <= LOGIT_TOL, "%s: relative logit error %.4g / %.4g > %.3g", name, all, lst,
                  LOGIT_TOL);
    ops()->destroy(b);
    free(ids);
    free(want);
    free(got);
    free(last);
    return all > lst ? all : lst;
}

static void load_fixture(etx_model* m, const char* name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", ETX_FIXTURES, name);
    CK_OK(hf_model_load(path, m));
}

// The backend's whole forward with each tensor-core GEMM kernel: the emulator's default
// thread-per-output twin, gemm_tc_kernel itself, and the tiled kernel (with the slice
// split wherever the backend's workspace allows it: qkv, o and down of a 40-row chunk)
// give the same logits to the bit, with SwiGLU as the gate/up epilogue on every path and,
// with the split, the norms after the O and down projections done by their reduce (the
// plan's norm_next: the next layer's attention norm, the MLP norm, the final norm; a
// wrong layer's weight there changes the logits). test_gemm holds the kernels to each
// other on their own; this holds the backend's use of them (workspace, epilogues, row
// offsets, which norm weight). Emulator only: on a GPU there is no twin, and
// the kernels' agreement is test_gemm's.
START_TEST(test_logits_gemm_kernels) {
#ifdef ETX_NATIVE_CUDA
    return;
#else
    etx_model m;
    load_fixture(&m, "tiny-llama-gqa");
    const int n = 40, V = m.cfg.vocab_size;
    int32_t ids[40];
    for (int i = 0; i < n; i++) ids[i] = rand_token(V);
    float* ref = malloc((size_t)n * V * sizeof(float));
    float* got = malloc((size_t)n * V * sizeof(float));
    for (int variant = 0; variant < 4; variant++) {
        etx_gemm_use_warp_kernel(variant > 0);
        etx_gemm_tc_force_kernel(variant == 0 ? -1 : variant > 1); // gemm_tc_kernel, then tiled
        CudaBackend* b;
        // one 40-row chunk; a workspace for 48 decode rows (the slices split), then for 2 (too
        // small for 40 rows: the tiled kernel's own epilogues, SwiGLU included)
        BackendConfig cfg = make_cfg(variant == 3 ? 2 : 48, n + 8, n, 4, 16, 0);
        CK_OK(ops()->create(&m, &cfg, &b));
        CK_OK(ops()->logits(b, ids, n, 1, variant == 0 ? ref : got));
        ops()->destroy(b);
        if (variant == 0) continue;
        for (int i = 0; i < n * V; i++)
            ck_assert_msg(memcmp(&ref[i], &got[i], sizeof(float)) == 0,
                          "%s: logit [%d, %d] = %.9g, the twin gives %.9g",
                          variant == 1 ? "gemm_tc_kernel" : variant == 2 ? "tiled, slices split" : "tiled",
                          i / V, i % V, got[i], ref[i]);
    }
    etx_gemm_tc_force_kernel(-1);
    etx_gemm_use_warp_kernel(0);
    free(ref);
    free(got);
    model_free_contents(&m);
#endif
}
END_TEST

START_TEST(test_logits_fixtures) {
    const char* names[] = {"tiny-llama-gqa", "tiny-llama-tied", "tiny-llama3-rope"};
    for (int i = 0; i < 3; i++) {
        etx_model m;
        load_fixture(&m, names[i]);
        check_model_logits(&m, names[i], 21, 8); // 3 chunks, the last partial
        model_free_contents(&m);
    }
}
END_TEST

// Qwen2 (Q/K/V biases, head_dim 16) and Qwen3 (QK-norm, explicit head_dim 24): both run
// with heads padded to 64, so the bias padding, the QK-norm's RMS over the real elements
// and the q scale moved into q_norm (cuda_weights.c) are all on the path. From the Hugging
// Face directories and from the f32 GGUFs (stored in the rotate-half layout, loaded
// without the Llama un-permutation).
START_TEST(test_logits_qwen) {
    const char* names[] = {"tiny-qwen2", "tiny-qwen3", "tiny-qwen2.gguf", "tiny-qwen3.gguf"};
    for (int i = 0; i < 4; i++) {
        etx_model m;
        if (strstr(names[i], ".gguf")) {
            char path[1024];
            snprintf(path, sizeof path, "%s/models/%s", ETX_FIXTURES, names[i]);
            CK_OK(gguf_model_load(path, &m));
        } else {
            load_fixture(&m, names[i]);
        }
        ck_assert_int_eq(m.cfg.qkv_bias, i % 2 == 0);
        ck_assert_int_eq(m.cfg.qk_norm, i % 2 == 1);
        check_model_logits(&m, names[i], 21, 8); // 3 chunks, the last partial
        model_free_contents(&m);
    }
}
END_TEST

START_TEST(test_logits_default_model) {
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0) {
#ifdef ETX_NATIVE_CUDA // a GPU machine may have no copy of it (no internet there): say so, go on
        fprintf(stderr, "test_cuda_backend: SKIPPED the SmolLM2 check: %s is missing\n", ETX_DEFAULT_MODEL);
        return;
#else // CI fetches it: its absence is a failure there
        ck_abort_msg("default model missing: %s (fetch it with the models/ script)", ETX_DEFAULT_MODEL);
#endif
    }
    etx_model m;
    CK_OK(gguf_model_load(ETX_DEFAULT_MODEL, &m));
    check_model_logits(&m, "SmolLM2-135M", 6, 4); // two chunks
    model_free_contents(&m);
}
END_TEST

// ----------------------------------------------------------------------------
// 2, 3. step() on a hand-built plan

#define BS 4       // positions per block
#define MAX_SEQ 48
#define MAX_TOK 16 // tokens a test sequence holds

typedef struct {
    int32_t tok[MAX_TOK]; // prompt, then generated tokens
    int n;                // tokens known
    int blocks[MAX_SEQ / BS];
    int n_blocks;
} Seq;

static BackendWork work_of(Seq* s, int pos0, int n, int decode, int pick) {
    BackendWork w = {decode, s->blocks, (pos0 + n + BS - 1) / BS, pos0, n, s->tok + pos0, pick};
    return w;
}

// logits() of the sequence's first n tokens, last position
static void ref_logits(const BackendOps* o, CudaBackend* b, const Seq* s, int n, float* out) {
    CK_OK(o->logits(b, s->tok, n, 0, out));
}

typedef struct {
    const etx_model* m;
    CudaBackend* b;
    const etx_policy* pol;
    int trace;
    Sampler smp;
    double worst;      // step vs logits, max relative diff
    double worst_scores; // captured scores vs the CPU's, max relative diff
    int n_checked;     // picks checked
    long long d2h;     // d2h_bytes after the last step
} Harness;

// |got - want| <= rel |want| + floor
static void check_close(const char* what, int p, double got, double want, double rel, double floor) {
    ck_assert_msg(isfinite(got) && fabs(got - want) <= rel * fabs(want) + floor, "pick %d %s: got %.9g, want %.9g", p,
                  what, got, want);
}

// Pick p's captured last-layer scores (device, n_pos positions) against the CPU forward's
// over the same tokens (bf16 tolerance, as the logits), and the traced attention metrics
// against host attn_metrics on the captured scores (AM_REL: the device twin sums in
// another order; floors as tests/kernels/test_sampling_kernels.c).
#define AM_REL 1e-5
static double check_scores(const Harness* h, const float* dev, const BackendPick* pk, const Seq* seq, int n_pos,
                           int p) {
    const etx_model* m = h->m;
    const int H = m->cfg.n_heads;
    float* packed = malloc((size_t)H * n_pos * sizeof(float));
    float* scratch = malloc((size_t)(H + 1) * n_pos * sizeof(float));
    float* cpu = malloc((size_t)H * n_pos * sizeof(float));
    for (int hh = 0; hh < H; hh++)
        memcpy(packed + (size_t)hh * n_pos, dev + ((size_t)p * H + hh) * MAX_SEQ, (size_t)n_pos * sizeof(float));
    KVCache kv;
    CpuRunState s;
    CK_OK(build_kv_cache(&kv, &m->cfg, n_pos));
    CK_OK(build_cpu_run_state(&s, &m->cfg));
    s.last_scores = cpu;
    CK_OK(cpu_forward(m, &s, &kv, seq->tok, n_pos, NULL, 0));
    ck_assert_int_eq(s.last_scores_len, n_pos);
    double d = 0, scale = 0;
    for (size_t i = 0; i < (size_t)H * n_pos; i++) {
        d = fmax(d, fabs((double)packed[i] - cpu[i]));
        scale = fmax(scale, fabs((double)cpu[i]));
    }
    const double rel = d / fmax(scale, 1e-30);
    ck_assert_msg(rel <= LOGIT_TOL, "pick %d: captured scores differ from the CPU's by %.4g of the max", p, rel);
    const int window = pk->policy->kind == ETX_POLICY_ENTROPIX ? pk->policy->entropix.attn_window : 0;
    const AttnMetrics am = attn_metrics(packed, H, n_pos, window, scratch);
    check_close("attn_entropy", p, pk->trace.attn_entropy, am.attn_entropy, AM_REL, 1e-6);
    check_close("attn_varentropy", p, pk->trace.attn_varentropy, am.attn_varentropy, AM_REL, 1e-9);
    check_close("agreement", p, pk->trace.agreement, am.agreement, AM_REL, 1e-12);
    check_close("interaction", p, pk->trace.interaction, am.interaction, AM_REL, 1e-9);
    free_cpu_run_state(&s);
    free_kv_cache(&kv);
    free(packed);
    free(scratch);
    free(cpu);
    return rel;
}

static PolicyMetrics trace_metrics(const etx_trace_record* t) {
    // the trace keeps no logit max or sigma: callers decide greedy or entropix picks only
    PolicyMetrics m = {t->entropy,  t->varentropy, t->attn_entropy, t->attn_varentropy, t->agreement, t->interaction,
                       0.0f,        0.0f};
    return m;
}

// Runs the step, then checks every pick against logits() of its sequence's tokens.
static void run_and_check(Harness* h, BackendStep* st, Seq* const* pick_seq, const int* pick_n) {
    const BackendOps* o = ops();
    const int V = h->m->cfg.vocab_size;
    CK_OK(o->step(h->b, st));
    const long long d2h = o->d2h_bytes(h->b);
    const long long per = 4 + (h->trace ? (long long)sizeof(etx_trace_record) : 0);
    ck_assert_msg(d2h - h->d2h == per * st->n_picks, "d2h_bytes grew by %lld for %d picks (want %lld each)",
                  d2h - h->d2h, st->n_picks, per);
    h->d2h = d2h;
    float* got = malloc((size_t)st->n_picks * V * sizeof(float));
    float* want = malloc((size_t)V * sizeof(float));
    CK_OK(cuda_backend_test_logits(h->b, got, st->n_picks));
    float* scores = NULL;
    if (h->trace) {
        scores = malloc((size_t)st->n_picks * h->m->cfg.n_heads * MAX_SEQ * sizeof(float));
        CK_OK(cuda_backend_test_scores(h->b, scores, st->n_picks));
    }
    for (int p = 0; p < st->n_picks; p++) {
        const float* row = got + (size_t)p * V;
        ref_logits(o, h->b, pick_seq[p], pick_n[p], want);
        const double d = rel_diff(row, want, 1, V);
        ck_assert_msg(d <= STEP_TOL, "pick %d (%d tokens): step logits differ from logits() by %.4g of the max", p,
                      pick_n[p], d);
        h->worst = fmax(h->worst, d);
        const BackendPick* pk = &st->picks[p];
        ck_assert_msg(pk->token >= 0 && pk->token < V, "pick %d: token %d", p, pk->token);
        if (pk->policy->kind == ETX_POLICY_GREEDY)
            ck_assert_msg(pk->token == argmax(row, V), "pick %d: greedy token %d, argmax %d", p, pk->token,
                          argmax(row, V));
        if (h->trace) {
            const etx_trace_record* t = &pk->trace;
            const LogitMetrics lm = logit_metrics(row, V);
            ck_assert_int_eq(t->request_id, pk->request_id);
            ck_assert_int_eq(t->step, (int)pk->step);
            ck_assert_int_eq(t->token, pk->token);
            ck_assert_msg(fabs(t->entropy - lm.entropy) <= 1e-4 * fabs(lm.entropy) + 1e-5, "entropy %.9g vs %.9g",
                          t->entropy, lm.entropy);
            ck_assert_msg(fabs(t->varentropy - lm.varentropy) <= 1e-4 * fabs(lm.varentropy) + 1e-5,
                          "varentropy %.9g vs %.9g", t->varentropy, lm.varentropy);
            const double lp = row[pk->token] - lm.log_z;
            ck_assert_msg(fabs(t->logprob - lp) <= 1e-4 * fabs(lp) + 1e-5, "logprob %.9g vs %.9g", t->logprob, lp);
            ck_assert_msg(isfinite(t->attn_entropy) && t->attn_entropy >= 0 &&
                              t->attn_entropy <= log2((double)pick_n[p]) + 1e-4,
                          "attn_entropy %g over %d positions", t->attn_entropy, pick_n[p]);
            h->worst_scores = fmax(h->worst_scores, check_scores(h, scores, pk, pick_seq[p], pick_n[p], p));
            if (pk->policy->kind == ETX_POLICY_ENTROPIX) {
                const PolicyMetrics pm = trace_metrics(t);
                const PolicyDecision dec = entropix_decide(&pk->policy->entropix, &pm, pk->prev_token, pk->pause_token);
                ck_assert_int_eq((int)t->branch, (int)dec.branch);
                const int32_t want_tok = sampler_pick(&h->smp, row, &dec, pk->policy->seed, pk->key, pk->step);
                ck_assert_msg(pk->token == want_tok, "pick %d: entropix token %d, sampler_pick %d", p, pk->token,
                              want_tok);
            }
        }
        h->n_checked++;
    }
    free(got);
    free(want);
    free(scores);
}

static BackendPick make_pick(const Harness* h, const Seq* s, int n_prompt, int request_id) {
    BackendPick p;
    memset(&p, 0, sizeof p);
    p.policy = h->pol;
    p.key = 0x1234567ull * (uint64_t)(request_id + 1);
    p.step = (uint32_t)(s->n - n_prompt);
    p.prev_token = s->tok[s->n - 1];
    p.pause_token = 2;
    p.request_id = request_id;
    return p;
}

// The plan (block size 4, shuffled ids; max_chunk 8, so a step's prefill groups hold 8
// rows): A = 11-token prompt in chunks of 8 and 3; B = 6 (step 1: two groups), C = 5
// (step 2: C and A's second chunk in one group); D forks A after its prompt (shares A's two full blocks, copies the third);
// then a decode batch A, B, C, D (picks in row order), then B, A, D (picks 1, 0, none).
static void run_plan(const etx_model* m, const etx_policy* pol, int trace, int pad) {
    const BackendOps* o = ops();
    const int V = m->cfg.vocab_size;
    Harness h = {.m = m, .pol = pol, .trace = trace};
    build_sampler(&h.smp, V);
    BackendConfig cfg = make_cfg(4, MAX_SEQ, 8, 40, BS, trace);
    if (pad) setenv("ETX_CUDA_GRAPHS", "1", 1);
    CK_OK(o->create(m, &cfg, &h.b));
    if (pad) unsetenv("ETX_CUDA_GRAPHS");
    ck_assert_int_eq(h.b->pad_decode, pad || etx_dev_graphs_available());
    if (pad == 2) etx_dev_test_fail_next_capture(); // the first decode graph's capture fails
    ck_assert_int_eq((int)o->d2h_bytes(h.b), 0);
    Seq A = {.n = 11, .blocks = {17, 3, 25, 38}, .n_blocks = 4};
    Seq B = {.n = 6, .blocks = {9, 30}, .n_blocks = 2};
    Seq C = {.n = 5, .blocks = {33, 1, 14}, .n_blocks = 3};
    Seq D;
    for (int i = 0; i < MAX_TOK; i++) {
        A.tok[i] = rand_token(V);
        B.tok[i] = rand_token(V);
        C.tok[i] = rand_token(V);
    }
    const int nA = A.n, nB = B.n, nC = C.n;

    // step 1: A's first chunk (not sampled), B's prompt
    BackendWork w1[2] = {work_of(&A, 0, 8, 0, -1), work_of(&B, 0, nB, 0, 0)};
    BackendPick p1[1] = {make_pick(&h, &B, nB, 1)};
    BackendStep s1 = {NULL, 0, w1, 2, p1, 1};
    Seq* q1[1] = {&B};
    int n1[1] = {nB};
    run_and_check(&h, &s1, q1, n1);
    B.tok[B.n++] = p1[0].token;

    // step 2: C's prompt (pick 0) before A's last chunk (pick 1)
    BackendWork w2[2] = {work_of(&C, 0, nC, 0, 0), work_of(&A, 8, 3, 0, 1)};
    BackendPick p2[2] = {make_pick(&h, &C, nC, 2), make_pick(&h, &A, nA, 0)};
    BackendStep s2 = {NULL, 0, w2, 2, p2, 2};
    Seq* q2[2] = {&C, &A};
    int n2[2] = {nC, nA};
    run_and_check(&h, &s2, q2, n2);
    C.tok[C.n++] = p2[0].token;
    A.tok[A.n++] = p2[1].token;
    // D: A's prompt with another first token; A's third block (positions 8..10) copied
    D = A;
    D.tok[nA] = (A.tok[nA] + 1) % V;
    D.blocks[2] = 7;
    D.blocks[3] = 22;
    BlockCopy cow[1] = {{25, 7}};

    // step 3: decode A, B, C, D, picks 0..3 in row order, after the copy
    BackendWork w3[4] = {work_of(&A, A.n - 1, 1, 1, 0), work_of(&B, B.n - 1, 1, 1, 1), work_of(&C, C.n - 1, 1, 1, 2),
                        work_of(&D, D.n - 1, 1, 1, 3)};
    BackendPick p3[4] = {make_pick(&h, &A, nA, 0), make_pick(&h, &B, nB, 1), make_pick(&h, &C, nC, 2),
                        make_pick(&h, &D, nA, 3)};
    BackendStep s3 = {cow, 1, w3, 4, p3, 4};
    Seq* q3[4] = {&A, &B, &C, &D};
    int n3[4] = {A.n, B.n, C.n, D.n};
    run_and_check(&h, &s3, q3, n3);
    A.tok[A.n++] = p3[0].token;
    B.tok[B.n++] = p3[1].token;
    D.tok[D.n++] = p3[3].token;

    // step 4: decode B (pick 1), A (pick 0), D (not sampled): staging path
    BackendWork w4[3] = {work_of(&B, B.n - 1, 1, 1, 1), work_of(&A, A.n - 1, 1, 1, 0), work_of(&D, D.n - 1, 1, 1, -1)};
    BackendPick p4[2] = {make_pick(&h, &A, nA, 0), make_pick(&h, &B, nB, 1)};
    BackendStep s4 = {NULL, 0, w4, 3, p4, 2};
    Seq* q4[2] = {&A, &B};
    int n4[2] = {A.n, B.n};
    run_and_check(&h, &s4, q4, n4);

    // D's unsampled row still appended its position: a decode row of D now sees it
    D.tok[D.n++] = p4[0].token; // any token: position D.n - 1 is the next input
    BackendWork w5[1] = {work_of(&D, D.n - 1, 1, 1, 0)};
    BackendPick p5[1] = {make_pick(&h, &D, nA, 3)};
    BackendStep s5 = {NULL, 0, w5, 1, p5, 1};
    Seq* q5[1] = {&D};
    int n5[1] = {D.n};
    run_and_check(&h, &s5, q5, n5);

    fprintf(stderr,
            "%s: step() plan (%s%s%s): %d picks, max |step - logits()| / max |logit| = %.4g, captured scores vs CPU "
            "%.4g of the max, d2h %lld bytes\n",
            o->name, pol->kind == ETX_POLICY_GREEDY ? "greedy" : "entropix", trace ? ", trace" : "", h.b->pad_decode ? ", padded decode batches" : "", h.n_checked,
            h.worst, h.worst_scores, h.d2h);
    ck_assert_int_eq(h.n_checked, 10);
    // graphs: captured and kept (use_graphs stays on), or after a failed capture none
    if (pad == 1) {
        ck_assert_int_eq(h.b->use_graphs, 1);
        ck_assert_int_eq(h.b->capture_failures, 0);
        ck_assert_ptr_nonnull(h.b->graphs[4]); // steps 3 and 4: 4 padded rows, captured once
    }
    if (pad == 2) {
        ck_assert_int_eq(h.b->use_graphs, 0);
        ck_assert_int_eq(h.b->capture_failures, 1);
        ck_assert_ptr_null(h.b->graphs[4]);
    }
    o->destroy(h.b);
    free_sampler(&h.smp);
}

START_TEST(test_step_greedy) {
    etx_model m;
    load_fixture(&m, "tiny-llama-gqa");
    etx_policy pol = etx_policy_default(ETX_POLICY_GREEDY);
    run_plan(&m, &pol, 0, 0);
    model_free_contents(&m);
}
END_TEST

START_TEST(test_step_entropix_trace) {
    etx_model m;
    load_fixture(&m, "tiny-llama3-rope");
    etx_policy pol = etx_policy_default(ETX_POLICY_ENTROPIX);
    pol.seed = 42;
    run_plan(&m, &pol, 1, 0);
    model_free_contents(&m);
}
END_TEST

// The same plan on Qwen: qwen3 (QK-norm) with entropix and tracing (captured scores vs
// the CPU's), qwen2 (biases) greedy with padded decode batches.
START_TEST(test_step_qwen) {
    etx_model m;
    load_fixture(&m, "tiny-qwen3");
    etx_policy pol = etx_policy_default(ETX_POLICY_ENTROPIX);
    pol.seed = 7;
    run_plan(&m, &pol, 1, 0);
    model_free_contents(&m);
    load_fixture(&m, "tiny-qwen2");
    pol = etx_policy_default(ETX_POLICY_GREEDY);
    run_plan(&m, &pol, 0, 1);
    model_free_contents(&m);
}
END_TEST

START_TEST(test_step_greedy_trace) {
    etx_model m;
    load_fixture(&m, "tiny-llama-tied");
    etx_policy pol = etx_policy_default(ETX_POLICY_GREEDY);
    run_plan(&m, &pol, 1, 0);
    model_free_contents(&m);
}
END_TEST

// Decode batches padded to powers of two (what the CUDA graphs replay natively; eager
// under the emulator): the 3-row batch runs with a padding row, which must change nothing.
START_TEST(test_step_padded) {
    etx_model m;
    load_fixture(&m, "tiny-llama-gqa");
    etx_policy pol = etx_policy_default(ETX_POLICY_ENTROPIX);
    pol.seed = 7;
    run_plan(&m, &pol, 1, 1);
    model_free_contents(&m);
}
END_TEST

// Graph mode whose first capture fails (injected, as a launch or cuBLAS failure inside
// it would): the step's result stands (it came from the warm-up), the backend falls back
// to eager decode with one message, and every later step still matches the CPU. Before,
// a failure inside the capture exited the program (CUDA_CHECK), and the emulator never
// captured at all.
START_TEST(test_step_graph_capture_fails) {
    etx_model m;
    load_fixture(&m, "tiny-llama-gqa");
    etx_policy pol = etx_policy_default(ETX_POLICY_ENTROPIX);
    pol.seed = 9;
    run_plan(&m, &pol, 1, 2);
    model_free_contents(&m);
}
END_TEST

// The engine on this backend with graphs (ETX_CUDA_GRAPHS=1: padded decode batches,
// and a decode-only step's sampling inside the graph over greedy padding picks) and
// without: the same tokens and trace records, bit for bit, through one-step calls and
// multi-step ones, with and without tracing (which turns the attention signals on for
// every pick). Greedy, sampling with top_k 20 and dslider start alone: 3 picks padded to
// 4, no attention signals, no fallback kernel. Sampling with top_k 0 (the fallback
// kernel) and entropix (the signals) join after a few steps: 5 picks padded to 8; then,
// as requests end, 4 picks and 3 padded to 4 with the fallback, and 2. The emulator
// records and replays graphs as a GPU does (device.h), so a padding pick that reached a
// real pick's policy or state, or a 4-row graph of the first phase replayed where the
// fallback or the signals are needed (a key too coarse), changes a token or a record.
enum { GR_REQS = 5, GR_MAX = 16 };
static const int gr_len[GR_REQS] = {16, 16, 6, 10, 8}; // greedy, top_k 20, dslider | top_k 0, entropix

static void run_engine_graphs(const etx_model* m, int graphs, int steps_per_sync, int trace,
                              int32_t tokens[GR_REQS][GR_MAX], etx_trace_record recs[GR_REQS][GR_MAX]) {
    setenv("ETX_CUDA_GRAPHS", graphs ? "1" : "0", 1);
    etx_engine_options o = etx_engine_options_default();
    o.device = ETX_DEVICE_CUDA;
    o.max_seq_len = 64;
    o.max_batch = 8;
    o.trace = trace;
    o.steps_per_sync = steps_per_sync;
    etx_engine* e = NULL;
    CK_OK(etx_engine_create(m, &o, &e));
    unsetenv("ETX_CUDA_GRAPHS");
    etx_policy pols[GR_REQS] = {etx_policy_default(ETX_POLICY_GREEDY), etx_policy_default(ETX_POLICY_SAMPLE),
                                etx_policy_default(ETX_POLICY_DSLIDER), etx_policy_default(ETX_POLICY_SAMPLE),
                                etx_policy_default(ETX_POLICY_ENTROPIX)};
    pols[1].top_k = 20, pols[1].temperature = 0.9f;
    pols[3].top_k = 0; // beyond the candidates: the fallback kernel
    pols[4].entropix.pause_token = 3;
    int ids[GR_REQS];
    for (int r = 0; r < GR_REQS; r++) {
        if (r == 3) // the first three alone for a few steps (prefill, then decode-only steps)
            for (int k = 0; k < 3; k++) {
                int active = 0;
                CK_OK(etx_engine_step(e, &active));
            }
        int32_t prompt[12];
        for (int i = 0; i < 5 + r; i++) prompt[i] = 2 + (i * 11 + r * 5) % (m->cfg.vocab_size - 2);
        pols[r].seed = 40 + r;
        etx_request q = {.prompt = prompt, .n_prompt = 5 + r, .policy = pols[r], .max_tokens = gr_len[r],
                         .ignore_eos = 1};
        CK_OK(etx_engine_submit(e, &q, &ids[r]));
    }
    CK_OK(etx_engine_run(e));
    for (int r = 0; r < GR_REQS; r++) {
        etx_request_state st;
        CK_OK(etx_engine_request_state(e, ids[r], &st));
        ck_assert_int_eq(st.n_tokens, gr_len[r]);
        memcpy(tokens[r], st.tokens, (size_t)gr_len[r] * sizeof(int32_t));
        if (!trace) continue;
        const etx_trace_record* tr = NULL;
        int n = 0;
        CK_OK(etx_engine_trace(e, ids[r], &tr, &n));
        ck_assert_int_eq(n, gr_len[r]);
        memcpy(recs[r], tr, (size_t)n * sizeof *tr);
    }
    etx_engine_free(e);
}

START_TEST(test_engine_graphs_same_tokens) {
    etx_model m;
    load_fixture(&m, "tiny-llama-gqa");
    static int32_t t0[GR_REQS][GR_MAX], t1[GR_REQS][GR_MAX];
    static etx_trace_record r0[GR_REQS][GR_MAX], r1[GR_REQS][GR_MAX];
    for (int trace = 0; trace <= 1; trace++)
        for (int sps = 1; sps <= 4; sps += 3) { // one step per call, and 4
            run_engine_graphs(&m, 0, sps, trace, t0, r0);
            run_engine_graphs(&m, 1, sps, trace, t1, r1);
            for (int r = 0; r < GR_REQS; r++)
                for (int i = 0; i < gr_len[r]; i++) {
                    ck_assert_msg(t0[r][i] == t1[r][i],
                                  "trace %d, steps_per_sync %d: request %d token %d: %d without graphs, %d with", trace,
                                  sps, r, i, t0[r][i], t1[r][i]);
                    ck_assert_msg(!trace || memcmp(&r0[r][i], &r1[r][i], sizeof r0[r][i]) == 0,
                                  "steps_per_sync %d: request %d token %d: the trace records differ", sps, r, i);
                }
        }
    model_free_contents(&m);
}
END_TEST

// ----------------------------------------------------------------------------
// 4. clean failures, registration

START_TEST(test_create_failures) {
    const BackendOps* o = ops();
#ifdef ETX_SIMT
    ck_assert_str_eq(o->name, "cuda (SIMT emulator)");
#else
    ck_assert_str_eq(o->name, "cuda");
#endif
    ck_assert_int_eq(o->available(), 1);
    ck_assert_ptr_nonnull(o->device_name());
    etx_model m;
    load_fixture(&m, "tiny-llama-gqa");
    CudaBackend* b = (CudaBackend*)&m; // must be reset to NULL on failure
    BackendConfig cfg = make_cfg(4, 64, 16, INT_MAX / 2, 512, 0);
    etx_status s = o->create(&m, &cfg, &b);
    ck_assert_int_eq(s.code, ETX_ERR_NOMEM);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(s.message, "MiB") && strstr(s.message, "K/V"), "message: %s", s.message);
    fprintf(stderr, "huge K/V pool: %s\n", s.message);

    etx_model odd = m;
    odd.cfg.head_dim = 130;
    cfg = make_cfg(4, 64, 16, 8, 16, 0);
    s = o->create(&odd, &cfg, &b);
    ck_assert_int_eq(s.code, ETX_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(s.message, "head_dim 130") != NULL, "message: %s", s.message);

    cfg = make_cfg(0, 64, 16, 8, 16, 0);
    s = o->create(&m, &cfg, &b);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);

    // a bad plan is refused before anything runs
    cfg = make_cfg(2, 16, 8, 8, 4, 0);
    CK_OK(o->create(&m, &cfg, &b));
    int32_t toks[4] = {1, 2, 3, 4};
    int ids[1] = {8}; // out of range (8 blocks)
    BackendWork w = {0, ids, 1, 0, 4, toks, -1};
    BackendStep st = {NULL, 0, &w, 1, NULL, 0};
    s = o->step(b, &st);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq((int)o->d2h_bytes(b), 0);
    o->destroy(b);
    model_free_contents(&m);
}
END_TEST


// The automatic KV pool on a device (BackendOps.kv_budget through cuda_kv_budget_for,
// with made-up free memory): bf16 blocks, budget = free - the rest of the plan - the
// headroom, so a 141 GB card holds every slot at full context; the engine's old rule
// (f32-sized blocks, at most 2 GiB of host RAM) gave a Llama-3.2-1B-shaped model 512 of
// the 4096 blocks 32 slots of 8192 positions need, about 1 GiB of bf16.
START_TEST(test_kv_budget) {
    etx_model m;
    load_fixture(&m, "tiny-llama-gqa");
    const ModelConfig* c = &m.cfg;
    const int hdp = c->head_dim <= 64 ? 64 : 128;
    BackendConfig cfg = make_cfg(32, 256, 128, 1, 16, 0);
    double block = 0, budget = 0, block2 = 0, budget2 = 0;
    const double GB = 1e9;
    cuda_kv_budget_for(&m, &cfg, 141 * GB, 141 * GB, &block, &budget);
    ck_assert_double_eq(block, 2.0 * c->n_layers * 16 * c->n_kv_heads * hdp * 2); // bf16 K and V
    // the budget falls by exactly what free memory falls by, and the rest of the plan and
    // the headroom (nothing natively, under the emulator none) come off it
    cuda_kv_budget_for(&m, &cfg, 100 * GB, 141 * GB, &block2, &budget2);
    ck_assert_double_eq(block2, block);
    ck_assert_double_eq_tol(budget - budget2, 41 * GB, 1.0);
    ck_assert(budget < 141 * GB);
    ck_assert(budget > 141 * GB - 4 * GB); // weights of a tiny model; headroom at most ~3.3 GB
    // nothing free: no budget (the engine still asks for two contexts; create refuses them)
    cuda_kv_budget_for(&m, &cfg, 0, 141 * GB, &block2, &budget2);
    ck_assert_double_eq(budget2, 0);
    // the whole rule, on a Llama-3.2-1B shape (16 layers, 8 KV heads of 64), 32 x 8192
    etx_model big = m;
    big.cfg.n_layers = 16, big.cfg.n_kv_heads = 8, big.cfg.n_heads = 32, big.cfg.head_dim = 64;
    big.cfg.dim = 2048, big.cfg.hidden_dim = 8192, big.cfg.vocab_size = 128256;
    cfg = make_cfg(32, 8192, 128, 1, 64, 0);
    cuda_kv_budget_for(&big, &cfg, 141 * GB, 141 * GB, &block, &budget);
    ck_assert_double_eq(block, 2.0 * 16 * 64 * 8 * 64 * 2); // 2 MiB
    ck_assert_int_eq(kv_blocks_auto(8192, 64, 32, budget, block), 4096);
    // and on a card with 6 GB free the budget binds
    cuda_kv_budget_for(&big, &cfg, 6 * GB, 80 * GB, &block, &budget);
    const int n = kv_blocks_auto(8192, 64, 32, budget, block);
    ck_assert_int_lt(n, 4096);
    ck_assert_int_ge(n, 256);
    fprintf(stderr, "KV budget: Llama-3.2-1B shape, 6 of 80 GB free: %d blocks of 2 MiB\n", n);
    model_free_contents(&m);
}
END_TEST

static Suite* cuda_backend_suite(void) {
    Suite* s = suite_create("cuda_backend");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, test_create_failures);
    tcase_add_test(tc, test_logits_fixtures);
    tcase_add_test(tc, test_logits_qwen);
    tcase_add_test(tc, test_logits_gemm_kernels);
    tcase_add_test(tc, test_step_greedy);
    tcase_add_test(tc, test_step_entropix_trace);
    tcase_add_test(tc, test_step_greedy_trace);
    tcase_add_test(tc, test_step_padded);
    tcase_add_test(tc, test_step_qwen);
    tcase_add_test(tc, test_step_graph_capture_fails);
    tcase_add_test(tc, test_engine_graphs_same_tokens);
    tcase_add_test(tc, test_kv_budget);
    tcase_add_test(tc, test_logits_default_model);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    char dev_name[256];
    if (!check_device_present(dev_name, sizeof dev_name)) { // asked in a child: see check_device.h
        fprintf(stderr, "no CUDA device: skipped\n");
        return CHECK_SKIPPED;
    }
    return check_run_suite(cuda_backend_suite());
}
