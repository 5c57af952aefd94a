/*
 * engine.c — the engine half of the public API: requests, each with its own prompt,
 * policy and limits, advanced together by a continuous-batching scheduler over a paged
 * KV cache.
 *
 * A step (etx_engine_step): the scheduler (scheduler.h) plans which sequences run and on
 * which tokens, preempting the newest when the KV pool (kv_blocks.h, kv_pool.h) runs out;
 * the engine performs the plan's copy-on-write copies, runs each prefill chunk
 * (cpu_forward_chunk) and all decode rows as one batch (cpu_forward_decode), commits the
 * positions, then picks each sampled sequence's next token. A request's tokens depend only
 * on its own prompt, policy, seed and key: every row is computed identically at any batch
 * size, and a preempted request is recomputed bit for bit.
 *
 * Per sampled token: (entropix or tracing) the step's metrics: entropy and varentropy of
 * the logits, the last layer's attention metrics -> the policy's decision
 * (hostdev/policy_math.h) -> the pick (sampler.c) -> stop checks -> trace record.
 */
#include <string.h>

#include "common.h"
#include "cpu/cpu_forward.h"
#include "engine/backend.h"
#include "engine/kv_blocks.h"
#include "cpu/kv_pool.h"
#include "policy/metrics.h"
#include "model/model.h"
#include "policy_math.h"
#include "policy/sampler.h"
#include "engine/scheduler.h"

typedef struct {
    SchedSeq seq;      // the scheduler's view: state, KV block table, positions computed
    int id;
    etx_request_phase phase;
    int32_t* prompt;   // (n_prompt)
    int n_prompt;
    etx_policy policy;
    int max_tokens;
    int32_t* stop;     // (n_stop) extra stop ids
    int n_stop;
    int ignore_eos;
    uint64_t key;      // random stream (with policy.seed)
    int32_t pause_token; // entropix: resolved pause token id
    int32_t* tokens;   // (cap_tokens) generated so far
    int n_tokens;
    int cap_tokens;
    etx_trace_record* trace; // (cap_tokens) one per generated token, when tracing
    char error[ETX_MSG_LEN];
} Request;

// A sequence whose next token is picked at the end of the step, and where its logits are.
typedef struct {
    Request* r;
    int slot;          // row of logits / scores
    int n_pos;         // positions cached once this step's work is committed
} Pick;

struct etx_engine {
    const etx_model* model;
    etx_engine_options opts;
    int max_seq_len;   // per-request context
    CpuRunState run;   // scratch of one forward call
    Sampler sampler;
    BlockManager bm;   // the KV pool's blocks
    KVPool pool;       // their storage
    SchedConfig sched;
    SchedPlan plan;
    float* logits;     // (max_batch, vocab_size) one row per sampled sequence of a step
    float* scores;     // (max_batch, n_heads, max_seq_len) last layer's scores, when needed
    float* scratch;    // ((n_heads + 1) * max_seq_len) for attn_metrics
    SchedSeq** seqs;   // (cap_reqs) unfinished requests' sequences, for the scheduler
    int32_t* row_tokens; // (max_batch) a decode batch's inputs
    KVSeq* row_kv;       // (max_batch)
    float** row_scores;  // (max_batch)
    Pick* picks;         // (max_batch)
    int32_t pause_token; // the model's " ..." token, or -1
    const DeviceBackendOps* dev_ops; // the CUDA backend when it runs the steps, else NULL
    DeviceBackend* dev;
    DeviceWork* dwork;   // (max_batch) a step's work as the device backend takes it
    DevicePick* dpicks;  // (max_batch)
    Request** dpick_req; // (max_batch) the request of each device pick
    int32_t* ring_tokens;        // (steps_per_sync, max_batch) tokens of a multi-step call
    etx_trace_record* ring_trace; // (steps_per_sync, max_batch) their trace records (tracing)
    Request** reqs;    // (n_reqs) live requests, in submission order
    int n_reqs;
    int cap_reqs;
    int next_id;
    etx_engine_stats stats;
};

etx_engine_options etx_engine_options_default(void) {
    etx_engine_options o;
    o.device = ETX_DEVICE_AUTO;
    o.n_threads = 0;
    o.max_seq_len = 0;
    o.trace = 0;
    o.max_batch = 0;
    o.kv_block_size = 0;
    o.kv_blocks = 0;
    o.steps_per_sync = 0;
    return o;
}

// The entropix pause token: the model's single token for " ..." (Llama 3: 2564), or -1.
static int32_t find_pause_token(const etx_model* m) {
    int32_t* ids = NULL;
    int n = 0;
    int32_t id = -1;
    if (tokenizer_encode(m->tok, " ...", 4, &ids, &n).code == ETX_OK && n == 1) id = ids[0];
    free(ids);
    return id;
}

// The pool's size when the options leave it to the engine: every batch slot a full
// context, capped at min(2 GiB, a quarter of free memory), never below two contexts.
static int auto_kv_blocks(const ModelConfig* c, int ctx, int block_size, int max_batch) {
    long per_ctx = (ctx + block_size - 1) / block_size;
    double block_bytes = (double)kv_pool_bytes_per_block(c->n_layers, c->n_kv_heads * c->head_dim, block_size);
    double budget = 2.0 * 1024 * 1024 * 1024, avail = available_memory_bytes();
    if (avail > 0 && avail / 4 < budget) budget = avail / 4;
    long blocks = per_ctx * max_batch;
    long cap = (long)(budget / block_bytes);
    if (cap < 2 * per_ctx) cap = 2 * per_ctx;
    return (int)(blocks < cap ? blocks : cap);
}

etx_status etx_engine_create(const etx_model* model, const etx_engine_options* opts, etx_engine** out) {
    *out = NULL;
    etx_engine_options o = opts ? *opts : etx_engine_options_default();
    const DeviceBackendOps* dev_ops = NULL;
    ETX_TRY(device_backend_pick(o.device, &dev_ops));
    if (o.n_threads < 0) return etx_error(ETX_ERR_INVALID_ARG, "threads must be >= 0 (got %d)", o.n_threads);
    if (o.max_seq_len < 0) return etx_error(ETX_ERR_INVALID_ARG, "max_seq_len must be >= 0 (got %d)", o.max_seq_len);
    if (o.max_batch < 0 || o.max_batch > 4096)
        return etx_error(ETX_ERR_INVALID_ARG, "max_batch must be 1..4096, or 0 for the default (got %d)", o.max_batch);
    if (o.kv_block_size < 0 || o.kv_block_size > ATT_BLOCK)
        return etx_error(ETX_ERR_INVALID_ARG, "kv_block_size must be 1..%d, or 0 for the default (got %d)", ATT_BLOCK,
                         o.kv_block_size);
    if (o.kv_blocks < 0) return etx_error(ETX_ERR_INVALID_ARG, "kv_blocks must be >= 0 (got %d)", o.kv_blocks);
    if (o.steps_per_sync < 0 || o.steps_per_sync > 64)
        return etx_error(ETX_ERR_INVALID_ARG, "steps_per_sync must be 0..64 (got %d)", o.steps_per_sync);
    const ModelConfig* c = &model->cfg;
    const int model_ctx = c->max_seq_len;
    int ctx = o.max_seq_len ? o.max_seq_len : (model_ctx < 4096 ? model_ctx : 4096);
    if (ctx > model_ctx)
        return etx_error(ETX_ERR_INVALID_ARG, "max_seq_len %d exceeds the model's context length %d", ctx, model_ctx);
    if (!o.max_batch) o.max_batch = 32;
    if (!o.kv_block_size) o.kv_block_size = 64;
    if (!o.kv_blocks) o.kv_blocks = auto_kv_blocks(c, ctx, o.kv_block_size, o.max_batch);
    o.device = dev_ops ? ETX_DEVICE_CUDA : ETX_DEVICE_CPU;
    if (!o.steps_per_sync) o.steps_per_sync = 8;
    if (!dev_ops || !dev_ops->decode_steps) o.steps_per_sync = 1;

    etx_engine* e = xcalloc(1, sizeof(etx_engine));
    e->model = model;
    e->opts = o;
    e->max_seq_len = ctx;
    e->sched.max_batch = o.max_batch;
    e->sched.chunk = CPU_DEFAULT_CHUNK;
    e->sched.max_step_tokens = CPU_DEFAULT_CHUNK + o.max_batch;
    etx_status s = sched_config_validate(&e->sched);
    if (s.code == ETX_OK) s = build_block_manager(&e->bm, o.kv_blocks, o.kv_block_size);
    if (dev_ops) { // the device holds the KV pool, activations and logits
        DeviceBackendConfig dc = {o.max_batch, ctx, CPU_DEFAULT_CHUNK, o.kv_blocks, o.kv_block_size, o.trace};
        if (s.code == ETX_OK) s = dev_ops->create(model, &dc, &e->dev);
        if (s.code == ETX_OK) e->dev_ops = dev_ops;
    } else {
        if (s.code == ETX_OK)
            s = build_kv_pool(&e->pool, c->n_layers, c->n_kv_heads * c->head_dim, o.kv_blocks, o.kv_block_size);
        if (s.code == ETX_OK) s = build_cpu_run_state_rows(&e->run, c, CPU_DEFAULT_CHUNK, o.max_batch);
    }
    if (s.code != ETX_OK) {
        free_block_manager(&e->bm);
        free_kv_pool(&e->pool);
        free_cpu_run_state(&e->run);
        free(e);
        return s;
    }
    build_sched_plan(&e->plan);
    build_sampler(&e->sampler, c->vocab_size);
    const size_t nh = (size_t)c->n_heads, B = (size_t)o.max_batch;
    if (!e->dev_ops) {
        e->logits = xmalloc(B * (size_t)c->vocab_size * sizeof(float));
        e->scores = xmalloc(B * nh * (size_t)ctx * sizeof(float));
        e->scratch = xmalloc((nh + 1) * (size_t)ctx * sizeof(float));
    }
    e->ring_tokens = xmalloc((size_t)o.steps_per_sync * B * sizeof(int32_t));
    e->ring_trace = o.trace ? xmalloc((size_t)o.steps_per_sync * B * sizeof(etx_trace_record)) : NULL;
    e->dwork = xmalloc(B * sizeof(DeviceWork));
    e->dpicks = xmalloc(B * sizeof(DevicePick));
    e->dpick_req = xmalloc(B * sizeof(Request*));
    e->row_tokens = xmalloc(B * sizeof(int32_t));
    e->row_kv = xmalloc(B * sizeof(KVSeq));
    e->row_scores = xmalloc(B * sizeof(float*));
    e->picks = xmalloc(B * sizeof(Pick));
    e->pause_token = find_pause_token(model);
    e->stats.kv_blocks = o.kv_blocks;
    e->stats.kv_block_size = o.kv_block_size;
    e->stats.max_batch = o.max_batch;
    e->stats.steps_per_sync = o.steps_per_sync;
    cpu_set_threads(o.n_threads);
    *out = e;
    return etx_ok();
}

static void free_request(Request* r) {
    if (!r) return;
    free(r->prompt);
    free(r->stop);
    free(r->tokens);
    free(r->trace);
    free(r);
}

void etx_engine_free(etx_engine* e) {
    if (!e) return;
    for (int i = 0; i < e->n_reqs; i++) {
        block_table_release(&e->bm, &e->reqs[i]->seq.table);
        free_request(e->reqs[i]);
    }
    free(e->reqs);
    free(e->seqs);
    free(e->logits);
    free(e->scores);
    free(e->scratch);
    free(e->row_tokens);
    free(e->row_kv);
    free(e->row_scores);
    free(e->picks);
    free(e->dwork);
    free(e->ring_tokens);
    free(e->ring_trace);
    free(e->dpicks);
    free(e->dpick_req);
    if (e->dev_ops) e->dev_ops->destroy(e->dev);
    free_sched_plan(&e->plan);
    free_sampler(&e->sampler);
    free_cpu_run_state(&e->run);
    free_kv_pool(&e->pool);
    free_block_manager(&e->bm);
    free(e);
}

etx_status etx_engine_submit(etx_engine* e, const etx_request* req, int* id) {
    if (id) *id = -1;
    const int vocab = e->model->cfg.vocab_size;
    if (!req || !req->prompt || req->n_prompt < 1)
        return etx_error(ETX_ERR_INVALID_ARG, "request: the prompt is empty (at least one token is needed)");
    if (req->max_tokens < 1)
        return etx_error(ETX_ERR_INVALID_ARG, "request: max_tokens must be >= 1 (got %d)", req->max_tokens);
    if (req->n_prompt >= e->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "request: the prompt has %d tokens but the context holds %d; at most %d prompt tokens "
                         "fit (one position must stay free for generation)",
                         req->n_prompt, e->max_seq_len, e->max_seq_len - 1);
    for (int i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= vocab)
            return etx_error(ETX_ERR_INVALID_ARG, "request: prompt token %d at position %d is outside the vocabulary (0..%d)",
                             req->prompt[i], i, vocab - 1);
    if (req->n_stop < 0 || (req->n_stop > 0 && !req->stop_tokens))
        return etx_error(ETX_ERR_INVALID_ARG, "request: bad stop token list");
    for (int i = 0; i < req->n_stop; i++)
        if (req->stop_tokens[i] < 0 || req->stop_tokens[i] >= vocab)
            return etx_error(ETX_ERR_INVALID_ARG, "request: stop token %d is outside the vocabulary (0..%d)",
                             req->stop_tokens[i], vocab - 1);
    ETX_TRY(etx_policy_validate(&req->policy));
    int32_t pause = -1;
    if (req->policy.kind == ETX_POLICY_ENTROPIX) {
        pause = req->policy.entropix.pause_token >= 0 ? req->policy.entropix.pause_token : e->pause_token;
        if (pause < 0)
            return etx_error(ETX_ERR_INVALID_ARG, "request: the model has no single token for \" ...\"; set the "
                                                  "entropix pause_token explicitly");
        if (pause >= vocab)
            return etx_error(ETX_ERR_INVALID_ARG, "request: pause_token %d is outside the vocabulary (0..%d)", pause,
                             vocab - 1);
    }

    Request* r = xcalloc(1, sizeof(Request));
    r->id = e->next_id++;
    r->phase = ETX_REQ_QUEUED;
    r->n_prompt = req->n_prompt;
    r->prompt = xmalloc((size_t)req->n_prompt * sizeof(int32_t));
    memcpy(r->prompt, req->prompt, (size_t)req->n_prompt * sizeof(int32_t));
    r->policy = req->policy;
    r->max_tokens = req->max_tokens;
    r->n_stop = req->n_stop;
    if (req->n_stop) {
        r->stop = xmalloc((size_t)req->n_stop * sizeof(int32_t));
        memcpy(r->stop, req->stop_tokens, (size_t)req->n_stop * sizeof(int32_t));
    }
    r->ignore_eos = req->ignore_eos;
    r->key = req->key;
    r->pause_token = pause;
    r->seq.id = r->id;
    r->seq.order = r->id;
    r->seq.n_prompt = r->n_prompt;
    r->seq.n_known = r->n_prompt;
    r->seq.state = SEQ_WAITING;
    block_table_init(&r->seq.table);
    if (e->n_reqs == e->cap_reqs) {
        e->cap_reqs = e->cap_reqs ? 2 * e->cap_reqs : 8;
        e->reqs = xrealloc(e->reqs, (size_t)e->cap_reqs * sizeof(Request*));
        e->seqs = xrealloc(e->seqs, (size_t)e->cap_reqs * sizeof(SchedSeq*));
    }
    e->reqs[e->n_reqs++] = r;
    if (id) *id = r->id;
    return etx_ok();
}

static int is_finished(const Request* r) {
    return r->phase == ETX_REQ_DONE_STOP || r->phase == ETX_REQ_DONE_LENGTH || r->phase == ETX_REQ_FAILED;
}

static int is_stop_token(const etx_engine* e, const Request* r, int32_t tok) {
    for (int i = 0; i < r->n_stop; i++)
        if (r->stop[i] == tok) return 1;
    if (!r->ignore_eos)
        for (int i = 0; i < e->model->n_eos; i++)
            if (e->model->eos_ids[i] == tok) return 1;
    return 0;
}

// Ends a request; its KV blocks go back to the pool.
static void finish(etx_engine* e, Request* r, etx_request_phase phase) {
    r->phase = phase;
    sched_finish(&e->bm, &r->seq);
}

static void fail(etx_engine* e, Request* r, etx_status s) {
    snprintf(r->error, sizeof r->error, "%s", s.message);
    finish(e, r, ETX_REQ_FAILED);
}

static void append_token(Request* r, int32_t tok, int tracing) {
    if (r->n_tokens == r->cap_tokens) {
        r->cap_tokens = r->cap_tokens ? 2 * r->cap_tokens : 64;
        r->tokens = xrealloc(r->tokens, (size_t)r->cap_tokens * sizeof(int32_t));
        if (tracing) r->trace = xrealloc(r->trace, (size_t)r->cap_tokens * sizeof(etx_trace_record));
    }
    r->tokens[r->n_tokens++] = tok;
    r->seq.n_known = r->n_prompt + r->n_tokens;
}

// Token at position p of a request: the prompt, then what it generated.
static int32_t token_at(const Request* r, int p) { return p < r->n_prompt ? r->prompt[p] : r->tokens[p - r->n_prompt]; }

static int needs_metrics(const etx_engine* e, const Request* r) {
    return r->policy.kind == ETX_POLICY_ENTROPIX || e->opts.trace;
}

// The step's signals from the logits and the last layer's scores of the current token
// (n_pos positions, the current one included).
static PolicyMetrics step_metrics(etx_engine* e, const Request* r, const float* logits, const float* scores,
                                  int n_pos, float* log_z) {
    const ModelConfig* c = &e->model->cfg;
    LogitMetrics lm = logit_metrics(logits, c->vocab_size);
    const int window = r->policy.kind == ETX_POLICY_ENTROPIX ? r->policy.entropix.attn_window : 0;
    AttnMetrics am = attn_metrics(scores, c->n_heads, n_pos, window, e->scratch);
    *log_z = lm.log_z;
    PolicyMetrics m = {lm.entropy, lm.varentropy, am.attn_entropy, am.attn_varentropy, am.agreement, am.interaction};
    return m;
}

// Takes the next token (and its trace record) into r, then the stop checks.
static void accept_token(etx_engine* e, Request* r, int32_t tok, const etx_trace_record* rec) {
    append_token(r, tok, e->opts.trace);
    if (e->opts.trace) r->trace[r->n_tokens - 1] = *rec;
    if (is_stop_token(e, r, tok)) return finish(e, r, ETX_REQ_DONE_STOP);
    // the context is full when the next token would have no position left
    if (r->n_tokens >= r->max_tokens || r->n_prompt + r->n_tokens >= e->max_seq_len)
        return finish(e, r, ETX_REQ_DONE_LENGTH);
}

// The policy picks the next token of r from its row of logits (and scores) on the CPU.
static void pick_token(etx_engine* e, Request* r, const Pick* p) {
    const ModelConfig* c = &e->model->cfg;
    const float* logits = e->logits + (size_t)p->slot * c->vocab_size;
    const float* scores = e->scores + (size_t)p->slot * c->n_heads * e->max_seq_len;
    const int is_entropix = r->policy.kind == ETX_POLICY_ENTROPIX;
    PolicyMetrics m = {0, 0, 0, 0, 0, 0};
    float log_z = 0.0f;
    if (needs_metrics(e, r)) m = step_metrics(e, r, logits, scores, p->n_pos, &log_z);
    const int32_t prev = r->n_tokens > 0 ? r->tokens[r->n_tokens - 1] : r->prompt[r->n_prompt - 1];
    const PolicyDecision d =
        is_entropix ? entropix_decide(&r->policy.entropix, &m, prev, r->pause_token) : policy_decision_simple(&r->policy);
    const int32_t tok = sampler_pick(&e->sampler, logits, &d, r->policy.seed, r->key, (uint32_t)r->n_tokens);
    etx_trace_record t;
    memset(&t, 0, sizeof t);
    if (e->opts.trace) {
        t.request_id = r->id;
        t.step = r->n_tokens;
        t.token = tok;
        t.logprob = logits[tok] - log_z;
        t.entropy = m.entropy;
        t.varentropy = m.varentropy;
        t.attn_entropy = m.attn_entropy;
        t.attn_varentropy = m.attn_varentropy;
        t.agreement = m.agreement;
        t.interaction = m.interaction;
        t.branch = d.branch;
        t.temperature = d.temperature;
        t.top_k = d.top_k;
        t.top_p = d.top_p;
        t.min_p = d.min_p;
    }
    accept_token(e, r, tok, &t);
}

static KVSeq kv_view(const etx_engine* e, const Request* r) {
    KVSeq v = {e->pool.k, e->pool.v, r->seq.table.ids, e->pool.block_size, r->seq.n_computed};
    return v;
}

// Runs the plan's work; sampled sequences get a logits row each (and a scores row when
// their policy or the trace needs metrics). Returns how many picks are due.
static int run_plan(etx_engine* e) {
    const ModelConfig* c = &e->model->cfg;
    const size_t vocab = (size_t)c->vocab_size, score_row = (size_t)c->n_heads * e->max_seq_len;
    SchedPlan* plan = &e->plan;
    int n_picks = 0;
    for (int i = 0; i < plan->n_copies; i++) kv_pool_copy_block(&e->pool, plan->copies[i].src, plan->copies[i].dst);
    // prefill chunks, one sequence at a time
    for (int i = 0; i < plan->n_work; i++) {
        SchedWork* w = &plan->work[i];
        if (w->kind != WORK_PREFILL) continue;
        Request* r = (Request*)w->seq;
        KVSeq kv = kv_view(e, r);
        int slot = n_picks;
        float* logits = w->sample ? e->logits + (size_t)slot * vocab : NULL;
        float* scores = w->sample && needs_metrics(e, r) ? e->scores + (size_t)slot * score_row : NULL;
        etx_status s = cpu_forward_chunk(e->model, &e->run, &kv, r->prompt + w->pos0, w->n, logits, scores);
        if (s.code != ETX_OK) {
            fail(e, r, s);
            w->seq = NULL; // nothing to commit
            continue;
        }
        e->stats.prefill_tokens += w->n;
        if (w->sample) e->picks[n_picks++] = (Pick){r, slot, w->pos0 + w->n};
    }
    // decode rows, all sequences in one batch
    int n_rows = 0, first_slot = n_picks;
    for (int i = 0; i < plan->n_work; i++) {
        SchedWork* w = &plan->work[i];
        if (w->kind != WORK_DECODE || !w->seq) continue;
        Request* r = (Request*)w->seq;
        int slot = first_slot + n_rows;
        e->row_tokens[n_rows] = token_at(r, w->pos0);
        e->row_kv[n_rows] = kv_view(e, r);
        e->row_scores[n_rows] = w->sample && needs_metrics(e, r) ? e->scores + (size_t)slot * score_row : NULL;
        if (w->sample) e->picks[n_picks++] = (Pick){r, slot, w->pos0 + 1};
        n_rows++;
    }
    if (n_rows) {
        etx_status s = cpu_forward_decode(e->model, &e->run, e->row_kv, e->row_tokens, n_rows,
                                          e->logits + (size_t)first_slot * vocab, e->row_scores);
        if (s.code != ETX_OK) { // a batch-wide failure (out of memory): every row's request fails
            for (int i = 0; i < plan->n_work; i++) {
                SchedWork* w = &plan->work[i];
                if (w->kind != WORK_DECODE || !w->seq) continue;
                fail(e, (Request*)w->seq, s);
                w->seq = NULL;
            }
            return n_picks = 0;
        }
        e->stats.decode_rows += n_rows;
    }
    return n_picks;
}

// The plan's work on the device backend: it runs the forward passes and the policy and
// hands back each sampled sequence's token (and trace record). Returns the picks due.
// How many decode steps the device may run before the host looks again: steps_per_sync
// when the plan is nothing but a sampled decode row per running request, no request waits
// for admission, every request has that many tokens and positions left, and the pool
// gives every row that many positions (blocks taken now, committed after the call);
// otherwise 1.
static int multi_steps(etx_engine* e) {
    const SchedPlan* plan = &e->plan;
    int k = e->opts.steps_per_sync;
    if (k < 2 || plan->n_work == 0 || plan->n_failed || plan->n_preempted) return 1;
    for (int i = 0; i < e->n_reqs; i++)
        if (!is_finished(e->reqs[i]) && e->reqs[i]->seq.state == SEQ_WAITING) return 1;
    for (int i = 0; i < plan->n_work; i++) {
        const SchedWork* w = &plan->work[i];
        const Request* r = (const Request*)w->seq;
        if (w->kind != WORK_DECODE || !w->sample) return 1;
        int left = r->max_tokens - r->n_tokens;                // tokens it may still generate
        int room = e->max_seq_len - (r->n_prompt + r->n_tokens); // ... within the context
        if (left < k) k = left;
        if (room < k) k = room;
    }
    if (k < 2) return 1;
    for (int i = 0; i < plan->n_work; i++) { // positions pos0 .. pos0 + k - 1 for every row
        BlockCopy copy;
        int n_copies = 0;
        Request* r = (Request*)plan->work[i].seq;
        // the scheduler's prepare already made the last block private, so this one only
        // appends blocks and never records a copy
        if (block_table_prepare(&e->bm, &r->seq.table, k, &copy, &n_copies).code != ETX_OK || n_copies) return 1;
    }
    return k;
}

static int run_plan_device(etx_engine* e, int* k_out) {
    *k_out = 1;
    const int k = multi_steps(e); // first: it may grow the block tables the works point into
    SchedPlan* plan = &e->plan;
    int n_picks = 0, n_work = 0;
    for (int i = 0; i < plan->n_work; i++) {
        const SchedWork* w = &plan->work[i];
        Request* r = (Request*)w->seq;
        DeviceWork* d = &e->dwork[n_work++];
        d->decode = w->kind == WORK_DECODE;
        d->block_ids = r->seq.table.ids;
        d->n_block_ids = r->seq.table.n_ids;
        d->pos0 = w->pos0;
        d->n = w->n;
        d->tokens = w->pos0 < r->n_prompt ? r->prompt + w->pos0 : r->tokens + (w->pos0 - r->n_prompt);
        d->pick = -1;
        if (!w->sample) continue;
        d->pick = n_picks;
        DevicePick* p = &e->dpicks[n_picks];
        memset(p, 0, sizeof *p);
        p->policy = &r->policy;
        p->key = r->key;
        p->step = (uint32_t)r->n_tokens;
        p->prev_token = r->n_tokens > 0 ? r->tokens[r->n_tokens - 1] : r->prompt[r->n_prompt - 1];
        p->pause_token = r->pause_token;
        p->request_id = r->id;
        e->dpick_req[n_picks++] = r;
    }
    DeviceStep st = {plan->copies, plan->n_copies, e->dwork, n_work, e->dpicks, n_picks};
    etx_status s = k > 1 ? e->dev_ops->decode_steps(e->dev, &st, k, e->ring_tokens, e->ring_trace)
                         : e->dev_ops->step(e->dev, &st);
    if (s.code == ETX_OK && k > 1) {
        *k_out = k;
        e->stats.multi_steps++;
    }
    if (s.code != ETX_OK) { // the device failed the step: every request in it fails, nothing is committed
        for (int i = 0; i < plan->n_work; i++) {
            fail(e, (Request*)plan->work[i].seq, s);
            plan->work[i].seq = NULL;
        }
        return 0;
    }
    for (int i = 0; i < plan->n_work; i++) {
        if (plan->work[i].kind == WORK_DECODE) e->stats.decode_rows += k > 1 ? k : 1;
        else e->stats.prefill_tokens += plan->work[i].n;
    }
    return n_picks;
}

etx_status etx_engine_step(etx_engine* e, int* n_active) {
    int n = 0;
    for (int i = 0; i < e->n_reqs; i++)
        if (!is_finished(e->reqs[i])) e->seqs[n++] = &e->reqs[i]->seq;
    if (n > 0) {
        sched_plan_step(&e->bm, &e->sched, e->seqs, n, &e->plan);
        for (int i = 0; i < e->plan.n_failed; i++) {
            Request* r = (Request*)e->plan.failed[i];
            fail(e, r, etx_error(ETX_ERR_NOMEM,
                                 "request %d needs %d KV blocks of %d positions for its %d tokens; the pool holds %d "
                                 "(raise kv_blocks or lower max_seq_len)",
                                 r->id, sched_blocks_for(&e->bm, r->seq.n_known + 1), e->bm.block_size,
                                 r->seq.n_known + 1, e->bm.n_blocks));
        }
        e->stats.preemptions += e->plan.n_preempted;
        for (int i = 0; i < e->plan.n_work; i++) ((Request*)e->plan.work[i].seq)->phase = ETX_REQ_RUNNING;
        int k = 1;
        int n_picks = e->dev_ops ? run_plan_device(e, &k) : run_plan(e);
        sched_commit(&e->plan);
        if (k > 1) // the rows' other k - 1 positions are in the cache too
            for (int i = 0; i < e->plan.n_work; i++) {
                SchedSeq* q = e->plan.work[i].seq;
                if (!q) continue;
                block_table_commit(&q->table, k - 1);
                q->n_computed += k - 1;
            }
        int used = e->bm.n_blocks - e->bm.n_free;
        if (used > e->stats.kv_blocks_peak) e->stats.kv_blocks_peak = used;
        for (int i = 0; i < n_picks; i++) {
            Request* r = e->dev_ops ? e->dpick_req[i] : e->picks[i].r;
            if (is_finished(r)) continue;
            if (k > 1) // step j's token of pick i, in order, until a stop condition ends r
                for (int j = 0; j < k && !is_finished(r); j++)
                    accept_token(e, r, e->ring_tokens[(size_t)j * n_picks + i],
                                 e->ring_trace ? &e->ring_trace[(size_t)j * n_picks + i] : NULL);
            else if (e->dev_ops)
                accept_token(e, r, e->dpicks[i].token, &e->dpicks[i].trace);
            else
                pick_token(e, r, &e->picks[i]);
        }
        if (e->plan.n_work) e->stats.steps++;
    }
    int active = 0;
    for (int i = 0; i < e->n_reqs; i++) active += !is_finished(e->reqs[i]);
    if (n_active) *n_active = active;
    return etx_ok();
}

etx_status etx_engine_run(etx_engine* e) {
    int active = 1;
    while (active > 0) ETX_TRY(etx_engine_step(e, &active));
    return etx_ok();
}

static Request* find_request(const etx_engine* e, int id, int* index) {
    for (int i = 0; i < e->n_reqs; i++)
        if (e->reqs[i]->id == id) {
            if (index) *index = i;
            return e->reqs[i];
        }
    return NULL;
}

etx_status etx_engine_request_state(const etx_engine* e, int id, etx_request_state* st) {
    const Request* r = find_request(e, id, NULL);
    if (!r) return etx_error(ETX_ERR_STATE, "no request with id %d in this engine", id);
    st->phase = r->phase;
    st->tokens = r->tokens;
    st->n_tokens = r->n_tokens;
    st->error = r->error;
    return etx_ok();
}

etx_status etx_engine_trace(const etx_engine* e, int id, const etx_trace_record** records, int* n) {
    *records = NULL;
    *n = 0;
    if (!e->opts.trace) return etx_error(ETX_ERR_STATE, "tracing is off: create the engine with trace = 1");
    const Request* r = find_request(e, id, NULL);
    if (!r) return etx_error(ETX_ERR_STATE, "no request with id %d in this engine", id);
    *records = r->trace;
    *n = r->n_tokens;
    return etx_ok();
}

etx_status etx_engine_cancel(etx_engine* e, int id) {
    Request* r = find_request(e, id, NULL);
    if (!r) return etx_error(ETX_ERR_STATE, "no request with id %d in this engine", id);
    if (!is_finished(r)) finish(e, r, ETX_REQ_DONE_STOP);
    return etx_ok();
}

etx_status etx_engine_release(etx_engine* e, int id) {
    int index = -1;
    Request* r = find_request(e, id, &index);
    if (!r) return etx_error(ETX_ERR_STATE, "no request with id %d in this engine", id);
    if (!is_finished(r)) return etx_error(ETX_ERR_STATE, "request %d has not finished; it cannot be released yet", id);
    block_table_release(&e->bm, &r->seq.table);
    free_request(r);
    memmove(e->reqs + index, e->reqs + index + 1, (size_t)(e->n_reqs - index - 1) * sizeof(Request*));
    e->n_reqs--;
    return etx_ok();
}

etx_status etx_engine_get_stats(const etx_engine* e, etx_engine_stats* stats) {
    *stats = e->stats;
    stats->device = e->opts.device;
    stats->d2h_bytes = e->dev_ops ? e->dev_ops->d2h_bytes(e->dev) : 0;
    if (e->dev_ops) {
        e->dev_ops->sizes(e->dev, &stats->weight_bytes, &stats->kv_bytes_per_position, &stats->device_bytes);
    } else {
        const ModelConfig* c = &e->model->cfg;
        stats->weight_bytes = cpu_decode_weight_bytes(e->model);
        stats->kv_bytes_per_position = 2LL * c->n_layers * c->n_kv_heads * c->head_dim * (long long)sizeof(float);
        stats->device_bytes = 0;
    }
    snprintf(stats->device_name, sizeof stats->device_name, "%s",
             e->dev_ops ? e->dev_ops->device_name() : "cpu");
    return etx_ok();
}

etx_status etx_engine_logits(etx_engine* e, const int32_t* ids, int n, int all_positions, float* out) {
    const int vocab = e->model->cfg.vocab_size;
    if (!ids || n < 1) return etx_error(ETX_ERR_INVALID_ARG, "logits: no tokens given");
    if (n > e->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG, "logits: %d tokens exceed the context of %d", n, e->max_seq_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return etx_error(ETX_ERR_INVALID_ARG, "logits: token %d at position %d is outside the vocabulary (0..%d)",
                             ids[i], i, vocab - 1);
    if (e->dev_ops) return e->dev_ops->logits(e->dev, ids, n, all_positions, out);
    KVCache kv;
    ETX_TRY(build_kv_cache(&kv, &e->model->cfg, n));
    etx_status s = cpu_forward(e->model, &e->run, &kv, ids, n, out, all_positions);
    free_kv_cache(&kv);
    return s;
}
