/*
 * cpu_backend.c — the CPU backend: the engine's step (engine/backend.h) run on the host.
 *
 * A step: the block copies (kv_pool.c), each prefill chunk through cpu_forward_chunk, all
 * decode rows as one batch through cpu_forward_decode (every row reduced in a fixed
 * order, so a row's results do not depend on the batch), then for every pick the step's
 * signals (host/policy/metrics.c: entropy and varentropy of the logits, the last layer's
 * attention metrics), the policy's decision (hostdev/policy_math.h, the same header the
 * CUDA policy kernel compiles) and the draw (host/policy/sampler.c); a pick whose logits or
 * signals are not finite gets a fault code instead of a token (pick_token). The picks run in
 * parallel over OpenMP threads, each with its own sampler scratch; a pick's arithmetic is
 * all on one thread, so nothing depends on the spread. The backend owns the
 * float32 K/V pool for the engine's blocks, the scratch of one forward call, and one row
 * of logits (and last-layer scores) per pick.
 *
 * Several decode steps per call (decode_steps) run step() k times, each step's drawn
 * tokens the next one's inputs; on the CPU nothing is saved by it (there is no
 * synchronisation to amortise), so the default is one step per call.
 */
#include <omp.h>
#include <string.h>

#include "common.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_forward.h"
#include "cpu/kv_pool.h"
#include "engine/backend.h"
#include "policy/metrics.h"
#include "policy/sampler.h"
#include "policy_dslider.h"
#include "policy_learned.h"

_Static_assert(ETX_MAX_KV_BLOCK_SIZE <= ATT_BLOCK, "cpu_forward reads a KV block as one attention tile at most");

// The CPU's definition of the engine's opaque Backend.
typedef struct Backend CpuBackend;
struct Backend {
    const etx_model* m;
    BackendConfig cfg;
    KVPool pool;          // K/V storage of the engine's blocks, float32
    CpuRunState run;      // scratch of one forward call (chunks of cfg.max_chunk, max_batch rows)
    int n_pickers;        // threads the policy picks of a step are spread over
    Sampler* samplers;    // (n_pickers) candidate and weight scratch, one per picking thread
    float** scratches;    // (n_pickers) ((n_heads + 1) * max_seq_len) each, for attn_metrics
    float* logits;        // (max_batch, vocab) prefill picks' logits, row i = pick i
    const float** pick_logits; // (max_batch) where pick i's logits are (logits or dec_logits)
    float* scores;        // (max_batch, n_heads, max_seq_len) row i = pick i's last-layer scores
    int* pick_pos;        // (max_batch) positions pick i's token attended (its work's pos0 + n)
    int32_t* row_tokens;  // (max_batch) a decode batch's inputs
    KVSeq* row_kv;        // (max_batch)
    float** row_scores;   // (max_batch)
    float* dec_logits;    // (max_batch, vocab) decode rows' logits, in row order
    BackendWork* works;   // (max_batch) decode_steps: the rows advanced by one position
    BackendPick* picks;   // (max_batch) decode_steps: the picks advanced by one step
    int32_t* next_tok;    // (max_batch) decode_steps: the rows' next inputs
};

static int cpu_available(void) { return 1; }
static const char* cpu_device_name(void) { return "cpu"; }

static void cpu_destroy(CpuBackend* b) {
    if (!b) return;
    free_kv_pool(&b->pool);
    free_cpu_run_state(&b->run);
    for (int t = 0; b->samplers && t < b->n_pickers; t++) free_sampler(&b->samplers[t]);
    for (int t = 0; b->scratches && t < b->n_pickers; t++) free(b->scratches[t]);
    free(b->samplers);
    free(b->scratches);
    free(b->logits);
    free(b->scores);
    free(b->pick_pos);
    free(b->row_tokens);
    free(b->row_kv);
    free(b->row_scores);
    free(b->pick_logits);
    free(b->dec_logits);
    free(b->works);
    free(b->picks);
    free(b->next_tok);
    free(b);
}

static etx_status cpu_create(const etx_model* m, const BackendConfig* cfg, CpuBackend** out) {
    *out = NULL;
    const ModelConfig* c = &m->cfg;
    if (cfg->kv_block_size < 1 || cfg->kv_block_size > ETX_MAX_KV_BLOCK_SIZE)
        return etx_error(ETX_ERR_INVALID_ARG, "CPU backend: kv_block_size %d (1..%d)", cfg->kv_block_size,
                         ETX_MAX_KV_BLOCK_SIZE);
    CpuBackend* b = xcalloc(1, sizeof(CpuBackend));
    b->m = m;
    b->cfg = *cfg;
    etx_status s = build_kv_pool(&b->pool, c->n_layers, c->n_kv_heads * c->head_dim, cfg->kv_blocks, cfg->kv_block_size);
    if (s.code == ETX_OK) s = build_cpu_run_state_rows(&b->run, c, cfg->max_chunk, cfg->max_batch);
    if (s.code != ETX_OK) {
        cpu_destroy(b);
        return s;
    }
    const size_t B = (size_t)cfg->max_batch, V = (size_t)c->vocab_size, nh = (size_t)c->n_heads,
                 ctx = (size_t)cfg->max_seq_len;
    // one sampler and scratch per OpenMP thread: a step's picks run in parallel, each
    // pick's arithmetic alone on its thread, so its token and trace do not depend on how
    // the picks were spread
    b->n_pickers = omp_get_max_threads() > (int)B ? (int)B : omp_get_max_threads();
    if (b->n_pickers < 1) b->n_pickers = 1;
    b->samplers = xcalloc((size_t)b->n_pickers, sizeof *b->samplers);
    b->scratches = xcalloc((size_t)b->n_pickers, sizeof *b->scratches);
    for (int t = 0; t < b->n_pickers; t++) {
        build_sampler(&b->samplers[t], c->vocab_size);
        b->scratches[t] = xmalloc((nh + 1) * ctx * sizeof(float));
    }
    b->logits = xmalloc(B * V * sizeof(float));
    b->scores = xmalloc(B * nh * ctx * sizeof(float));
    b->pick_pos = xmalloc(B * sizeof(int));
    b->row_tokens = xmalloc(B * sizeof(int32_t));
    b->row_kv = xmalloc(B * sizeof(KVSeq));
    b->row_scores = xmalloc(B * sizeof(float*));
    b->pick_logits = xmalloc(B * sizeof(float*));
    b->dec_logits = xmalloc(B * V * sizeof(float));
    b->works = xmalloc(B * sizeof(BackendWork));
    b->picks = xmalloc(B * sizeof(BackendPick));
    b->next_tok = xmalloc(B * sizeof(int32_t));
    cpu_set_threads(cfg->n_threads);
    *out = b;
    return etx_ok();
}

// Whether pick p needs the last layer's attention scores (for the attention signals).
static int needs_metrics(const CpuBackend* b, const BackendPick* p) {
    return (policy_signals_used(p->policy) & POLICY_USES_ATTN_SIGNALS) || b->cfg.trace;
}

static KVSeq kv_view(const CpuBackend* b, const BackendWork* w) {
    KVSeq v = {b->pool.k, b->pool.v, w->block_ids, b->pool.block_size, w->pos0};
    return v;
}

// The forward passes of a step: prefill chunks one at a time, then every decode row in
// one batch. Pick p's logits: pick_logits[p] (row p of b->logits for a prefill chunk, the
// row's own row of dec_logits for a decode row); its scores, when it needs metrics: row p
// of b->scores.
static etx_status run_works(CpuBackend* b, const BackendStep* s) {
    const ModelConfig* c = &b->m->cfg;
    const size_t vocab = (size_t)c->vocab_size, score_row = (size_t)c->n_heads * b->cfg.max_seq_len;
    for (int i = 0; i < s->n_work; i++) {
        const BackendWork* w = &s->work[i];
        if (w->pick >= 0) b->pick_pos[w->pick] = w->pos0 + w->n;
        if (w->decode) continue;
        KVSeq kv = kv_view(b, w);
        const int p = w->pick;
        float* logits = p >= 0 ? b->logits + (size_t)p * vocab : NULL;
        if (p >= 0) b->pick_logits[p] = logits;
        float* scores = p >= 0 && needs_metrics(b, &s->picks[p]) ? b->scores + (size_t)p * score_row : NULL;
        ETX_TRY(cpu_forward_chunk(b->m, &b->run, &kv, w->tokens, w->n, logits, scores));
    }
    int n_rows = 0;
    for (int i = 0; i < s->n_work; i++) {
        const BackendWork* w = &s->work[i];
        if (!w->decode) continue;
        const int p = w->pick;
        b->row_tokens[n_rows] = w->tokens[0];
        b->row_kv[n_rows] = kv_view(b, w);
        b->row_scores[n_rows] = p >= 0 && needs_metrics(b, &s->picks[p]) ? b->scores + (size_t)p * score_row : NULL;
        if (p >= 0) b->pick_logits[p] = b->dec_logits + (size_t)n_rows * vocab;
        n_rows++;
    }
    if (!n_rows) return etx_ok();
    return cpu_forward_decode(b->m, &b->run, b->row_kv, b->row_tokens, n_rows, b->dec_logits, b->row_scores);
}

// The policy picks pick p's next token from its row of logits (and scores). Inputs that
// are not finite (policy_input_fault: a NaN or infinite logit, or a signal the policy reads)
// give no token: pk->token = policy_fault_token(fault), which the engine reports.
static void pick_token(CpuBackend* b, BackendPick* pk, int p, Sampler* sampler, float* scratch) {
    const ModelConfig* c = &b->m->cfg;
    const float* logits = b->pick_logits[p];
    const float* scores = b->scores + (size_t)p * c->n_heads * b->cfg.max_seq_len;
    const int is_entropix = pk->policy->kind == ETX_POLICY_ENTROPIX;
    const int uses = policy_signals_used(pk->policy);
    PolicyMetrics m = {0, 0, 0, 0, 0, 0, 0, 0};
    float log_z = 0.0f;
    memset(&pk->trace, 0, sizeof pk->trace);
    const int bad_logits = logits_nonfinite(logits, c->vocab_size);
    if (!bad_logits && (uses || b->cfg.trace)) {
        LogitMetrics lm = logit_metrics(logits, c->vocab_size);
        log_z = lm.log_z;
        m.entropy = lm.entropy, m.varentropy = lm.varentropy, m.logit_max = lm.max, m.logit_sigma = lm.sigma;
    }
    if (!bad_logits && needs_metrics(b, pk)) {
        const int window = policy_attn_window(pk->policy);
        AttnMetrics am = attn_metrics(scores, c->n_heads, b->pick_pos[p], window, scratch);
        m.attn_entropy = am.attn_entropy, m.attn_varentropy = am.attn_varentropy, m.agreement = am.agreement;
        m.interaction = am.interaction;
    }
    const int fault = policy_input_fault(bad_logits, &m, uses);
    if (fault) { // nothing is sorted or drawn from a row that is not all numbers
        pk->token = policy_fault_token(fault);
        if (b->cfg.trace) policy_fault_record(&pk->trace, pk->request_id, (int)pk->step, fault);
        return;
    }
    // the most likely candidates, as the device's vocabulary pass keeps them: the learned
    // policy's features and the trace's confidence and top tokens read them (gathered once,
    // and kept aside: sampler_pick reuses the sampler's list)
    const int learned = pk->policy->kind == ETX_POLICY_LEARNED;
    const int dslider = pk->policy->kind == ETX_POLICY_DSLIDER;
    PolicyCandidate top[ETX_DSLIDER_CANDIDATES]; // dslider reads 128, the rest 20
    int n_top = 0;
    if (learned || dslider || b->cfg.trace) {
        n_top = sampler_candidates(sampler, logits, dslider ? ETX_DSLIDER_CANDIDATES : ETX_CONFIDENCE_TOP_K);
        memcpy(top, sampler->cand, (size_t)n_top * sizeof top[0]);
    }
    PolicyDecision d;
    if (dslider) { // the token comes with the decision (forced_token), the state updated
        d = dslider_decide(pk->policy, pk->dslider, &m, top, n_top, log_z, pk->key, pk->step);
    } else if (learned) {
        d = learned_decide(pk->policy, etx_learned_get(pk->policy->learned), &m, top, n_top, log_z, pk->key, pk->step,
                           pk->prev_token, pk->pause_token);
    } else {
        d = is_entropix ? entropix_decide(&pk->policy->entropix, &m, pk->prev_token, pk->pause_token)
                        : policy_decision_simple(pk->policy, &m);
    }
    const int32_t tok = sampler_pick(sampler, logits, &d, pk->policy->seed, pk->key, pk->step);
    pk->token = tok;
    if (!b->cfg.trace) return;
    policy_trace_record(&pk->trace, pk->request_id, (int)pk->step, tok, logits[tok] - log_z, top, n_top, log_z, &m,
                        &d);
}

static etx_status cpu_step(CpuBackend* b, BackendStep* s) {
    ETX_TRY(backend_check_step("CPU backend", &b->cfg, b->m->cfg.vocab_size, s));
    for (int i = 0; i < s->n_copies; i++) kv_pool_copy_block(&b->pool, s->copies[i].src, s->copies[i].dst);
    ETX_TRY(run_works(b, s));
    // the picks in parallel (a vocabulary-wide pass or sort each): pick p on whichever
    // thread, with that thread's scratch
    const int np = s->n_picks, nt = np < b->n_pickers ? np : b->n_pickers;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int p = 0; p < np; p++) {
        const int t = omp_get_thread_num();
        pick_token(b, &s->picks[p], p, &b->samplers[t], b->scratches[t]);
    }
    return etx_ok();
}

// k steps of step(): after each, row i's drawn token is its input at the next position.
// A row whose pick faulted (a negative token slot) is fed token 0 from then on, so the
// step stays valid; the engine ends its request at the fault and discards the rest.
static etx_status cpu_decode_steps(CpuBackend* b, BackendStep* s, int k, int32_t* tokens, etx_trace_record* trace) {
    const BackendConfig* c = &b->cfg;
    ETX_TRY(backend_check_decode_steps("CPU backend", c, s, k));
    const int np = s->n_picks;
    memcpy(b->works, s->work, (size_t)np * sizeof(BackendWork)); // the caller's step stays as it was
    memcpy(b->picks, s->picks, (size_t)np * sizeof(BackendPick));
    BackendStep st = {s->copies, s->n_copies, b->works, np, b->picks, np};
    for (int j = 0; j < k; j++) {
        ETX_TRY(cpu_step(b, &st));
        st.n_copies = 0; // done before the first step
        for (int i = 0; i < np; i++) {
            BackendPick* pk = &b->picks[i];
            tokens[(size_t)j * np + i] = pk->token;
            if (c->trace) trace[(size_t)j * np + i] = pk->trace;
            b->next_tok[i] = pk->token >= 0 ? pk->token : 0;
            b->works[i].tokens = &b->next_tok[i];
            b->works[i].pos0++;
            pk->prev_token = b->next_tok[i];
            pk->step++;
        }
    }
    return etx_ok();
}

// Logits of ids in a private contiguous cache, prompt in chunks of max_chunk.
static etx_status cpu_logits(CpuBackend* b, const int32_t* ids, int n, int all_positions, float* out) {
    KVCache kv;
    ETX_TRY(build_kv_cache(&kv, &b->m->cfg, n));
    etx_status s = cpu_forward(b->m, &b->run, &kv, ids, n, out, all_positions);
    free_kv_cache(&kv);
    return s;
}

static long long cpu_d2h_bytes(const CpuBackend* b) { return 0; }

static void cpu_sizes(const CpuBackend* b, long long* weight_bytes, long long* kv_bytes_per_position,
                      long long* device_bytes) {
    const ModelConfig* c = &b->m->cfg;
    *weight_bytes = cpu_decode_weight_bytes(b->m);
    *kv_bytes_per_position = 2LL * c->n_layers * c->n_kv_heads * c->head_dim * (long long)sizeof(float);
    *device_bytes = 0;
}

// KV budget (BackendOps.kv_budget): f32 blocks (kv_pool.h), at most min(2 GiB, a quarter
// of the host's free memory).
static void cpu_kv_budget(const etx_model* m, const BackendConfig* cfg, double* block_bytes, double* budget_bytes) {
    const ModelConfig* c = &m->cfg;
    *block_bytes = (double)kv_pool_bytes_per_block(c->n_layers, c->n_kv_heads * c->head_dim, cfg->kv_block_size);
    double budget = 2.0 * 1024 * 1024 * 1024;
    const double avail = available_memory_bytes();
    if (avail > 0 && avail / 4 < budget) budget = avail / 4;
    *budget_bytes = budget;
}

static const BackendOps cpu_ops = {
    .name = "cpu",
    .emulated = 0,
    .device = ETX_DEVICE_CPU,
    .prefill_chunk = CPU_DEFAULT_CHUNK,
    .steps_per_sync = 1,
    .available = cpu_available,
    .device_name = cpu_device_name,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .step = cpu_step,
    .decode_steps = cpu_decode_steps,
    .logits = cpu_logits,
    .d2h_bytes = cpu_d2h_bytes,
    .sizes = cpu_sizes,
    .kv_budget = cpu_kv_budget,
    .measure = cpu_measure,
};

const BackendOps* etx_cpu_backend(void) { return &cpu_ops; }
