/*
 * engine.c — the engine half of the public API: requests, each with its own prompt,
 * policy and limits, advanced together by a continuous-batching scheduler over a paged
 * KV cache, on one backend (engine/backend.h: the CPU's or CUDA's, chosen at create).
 *
 * A step (etx_engine_step): the scheduler (scheduler.h) plans which sequences run and on
 * which tokens, preempting the newest when the KV pool (kv_blocks.h) runs out; the engine
 * describes the plan to the backend (block copies, prefill chunks, decode rows, the
 * sequences to sample with their policies and random streams), the backend runs the
 * forward passes and the policy and hands back one token (and trace record) per sampled
 * sequence; the engine commits the positions, then accepts each token: stop checks,
 * lengths, the trace. When every request is decoding and has room, the backend may run
 * several decode steps per call (steps_per_sync) with the same result. A pick whose
 * logits (or the signals its policy reads) are not finite comes back as a fault code
 * instead of a token and fails that request alone, with a message naming the position.
 *
 * A request's tokens depend only on its own prompt, policy, seed and key: every backend
 * computes each row identically at any batch size, and a preempted request is recomputed
 * bit for bit (docs/design.md, "Batch invariance").
 */
#include <string.h>

#include "common.h"
#include "engine/backend.h"
#include "engine/kv_blocks.h"
#include "engine/prefix_cache.h"
#include "engine/scheduler.h"
#include "model/model.h"
#include "policy/learned.h"
#include "policy_dslider.h"
#include "policy_math.h"

typedef struct Request {
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
    DSliderState ds;   // dslider: the state after the last accepted token (zero before the first)
    float stop_confidence; // > 0: ends at the first token whose group confidence is below it
    int confidence_window;
    int32_t* tokens;   // (cap_tokens) generated so far
    int n_tokens;
    int cap_tokens;
    etx_trace_record* trace; // (cap_tokens) one per generated token, when tracing
    char error[ETX_MSG_LEN];
    // sample groups (etx_engine_submit_samples): the group's prefix is an internal
    // request (prefix_only, id -1, never sampled) that prefills the prompt but its last
    // token; its samples wait (held) until it is done, then each forks its block table
    int group;         // the group's number, or -1 outside a group
    int prefix_only;   // 1: the group's prefix (invisible to callers)
    int held;          // 1: a sample waiting for its group's prefix (not scheduled yet)
    // prompt sharing (prefix_cache.h): the cache entry of the last prompt chunk this
    // request's blocks are known to hold (-1: none), and the positions that chain covers
    // (-1: broken, nothing more is recorded for it)
    int cache_entry;
    int cache_pos;
    // entropy-triggered branching (etx_branching): a request that forked is `branching`
    // (not scheduled) while its branches run; a branch is an internal request whose
    // `parent` takes its tokens, trace and blocks if it scores best
    etx_branching br;
    int branching;
    struct Request* parent; // a branch's request, else NULL
    int branch_j;           // a branch's index in its fork
    int fork_step;          // while branching: the step of the fork
    etx_branch_event* events; // (n_events) the forks so far
    int n_events, cap_events;
    int branch_tokens;      // tokens its branches generated, kept and dropped
} Request;

struct etx_engine {
    const etx_model* model;
    etx_engine_options opts;
    int max_seq_len;   // per-request context
    const BackendOps* ops; // the backend that runs the steps
    Backend* be;
    BlockManager bm;   // the KV pool's blocks (their storage is the backend's)
    PrefixCache pc;    // prompt chunks kept for later requests
    SchedConfig sched;
    SchedPlan plan;
    SchedSeq** seqs;   // (cap_reqs) unfinished requests' sequences, for the scheduler
    BackendWork* works;  // (max_batch) a step's work as the backend takes it
    BackendPick* picks;  // (max_batch) the step's sampled sequences
    Request** pick_req;  // (max_batch) the request of each pick
    int32_t* ring_tokens;        // (steps_per_sync, max_batch) tokens of a multi-step call
    etx_trace_record* ring_trace; // (steps_per_sync, max_batch) their trace records (tracing)
    int32_t pause_token; // the model's " ..." token, or -1
    Request** reqs;    // (n_reqs) live requests, in submission order
    int n_reqs;
    int cap_reqs;
    int next_id;
    int next_group;    // sample groups submitted so far
    long n_orders;     // sequences queued so far (each one's scheduling order)
    etx_engine_stats stats;
};

// options.gpu against the backend's devices, made current (the KV pool is sized from its
// free memory before the backend is created). The CPU has one device: gpu must be 0.
static etx_status engine_select_device(const BackendOps* ops, int gpu) {
    const int n = ops->device_count ? ops->device_count() : 1;
    if (gpu < 0 || gpu >= n) {
        if (!ops->device_count)
            return etx_error(ETX_ERR_INVALID_ARG, "gpu %d: the %s backend has no devices to choose from (gpu must be 0)",
                             gpu, ops->name);
        return etx_error(ETX_ERR_INVALID_ARG, "gpu %d: %d CUDA device%s visible (0..%d)", gpu, n, n == 1 ? " is" : "s are",
                         n - 1);
    }
    if (ops->select_device && ops->select_device(gpu) != 0)
        return etx_error(ETX_ERR_UNSUPPORTED, "gpu %d: the device cannot be made current", gpu);
    return etx_ok();
}

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
    o.prefix_cache = 0;
    o.gpu = 0;
    o.tp = 0;
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
// context, capped at what the backend can hold in its own storage (BackendOps.kv_budget:
// f32 blocks in host RAM on the CPU, bf16 blocks in the device's free memory on CUDA),
// never below two contexts (kv_blocks_auto).
static int auto_kv_blocks(const BackendOps* ops, const etx_model* m, int ctx, const etx_engine_options* o) {
    BackendConfig bc = {o->max_batch, ctx,         ops->prefill_chunk, 0, o->kv_block_size,
                        o->trace,     o->n_threads, o->gpu,             o->tp > 1 ? o->tp : 1};
    double block_bytes = 0, budget = 0;
    ops->kv_budget(m, &bc, &block_bytes, &budget);
    return kv_blocks_auto(ctx, o->kv_block_size, o->max_batch, budget, block_bytes);
}

// The scheduler's reclaim hook: cached prompt blocks no request holds go back first.
static int engine_reclaim(void* ctx, BlockManager* bm, int need) {
    etx_engine* e = ctx;
    int freed = prefix_cache_reclaim(&e->pc, bm, need);
    // then branches that ended and wait for their siblings give their blocks up (the one
    // kept is recomputed by its request, bit for bit, like a preempted sequence)
    for (int i = e->n_reqs - 1; i >= 0 && bm->n_free < need; i--) {
        Request* c = e->reqs[i];
        if (!c->parent || c->seq.state != SEQ_FINISHED || c->phase == ETX_REQ_FAILED || !c->seq.table.n_ids) continue;
        const int before = bm->n_free;
        block_table_release(bm, &c->seq.table);
        c->seq.n_computed = 0;
        freed += bm->n_free - before;
    }
    return freed;
}

etx_status etx_engine_create(const etx_model* model, const etx_engine_options* opts, etx_engine** out) {
    *out = NULL;
    etx_engine_options o = opts ? *opts : etx_engine_options_default();
    const BackendOps* ops = NULL;
    ETX_TRY(backend_pick(o.device, &ops));
    if (o.n_threads < 0) return etx_error(ETX_ERR_INVALID_ARG, "threads must be >= 0 (got %d)", o.n_threads);
    if (o.max_seq_len < 0) return etx_error(ETX_ERR_INVALID_ARG, "max_seq_len must be >= 0 (got %d)", o.max_seq_len);
    if (o.max_batch < 0 || o.max_batch > 4096)
        return etx_error(ETX_ERR_INVALID_ARG, "max_batch must be 1..4096, or 0 for the default (got %d)", o.max_batch);
    if (o.kv_block_size < 0 || o.kv_block_size > ETX_MAX_KV_BLOCK_SIZE)
        return etx_error(ETX_ERR_INVALID_ARG, "kv_block_size must be 1..%d, or 0 for the default (got %d)",
                         ETX_MAX_KV_BLOCK_SIZE, o.kv_block_size);
    if (o.kv_blocks < 0) return etx_error(ETX_ERR_INVALID_ARG, "kv_blocks must be >= 0 (got %d)", o.kv_blocks);
    if (o.prefix_cache < -1 || o.prefix_cache > 0)
        return etx_error(ETX_ERR_INVALID_ARG, "prefix_cache must be 0 (on) or -1 (off) (got %d)", o.prefix_cache);
    if (o.steps_per_sync < 0 || o.steps_per_sync > 64)
        return etx_error(ETX_ERR_INVALID_ARG, "steps_per_sync must be 0..64 (got %d)", o.steps_per_sync);
    if (o.tp < 0 || o.tp > 64) return etx_error(ETX_ERR_INVALID_ARG, "tp must be 0..64 (got %d)", o.tp);
    if (o.tp > 1 && ops->device != ETX_DEVICE_CUDA)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "tensor parallelism (tp %d) splits a model across CUDA devices; the %s backend runs on one",
                         o.tp, ops->name);
    if (o.tp > 1) { // its devices gpu .. gpu + tp - 1
        const int n = ops->device_count ? ops->device_count() : 1;
        if (o.gpu < 0 || o.gpu + o.tp > n)
            return etx_error(ETX_ERR_INVALID_ARG, "tp %d from gpu %d needs devices %d..%d, but %d CUDA device%s visible",
                             o.tp, o.gpu, o.gpu, o.gpu + o.tp - 1, n, n == 1 ? " is" : "s are");
    }
    ETX_TRY(engine_select_device(ops, o.gpu));
    const ModelConfig* c = &model->cfg;
    const int model_ctx = c->max_seq_len;
    int ctx = o.max_seq_len ? o.max_seq_len : etx_default_context(model);
    if (ctx > model_ctx)
        return etx_error(ETX_ERR_INVALID_ARG, "max_seq_len %d exceeds the model's context length %d", ctx, model_ctx);
    if (!o.max_batch) o.max_batch = 32;
    if (!o.kv_block_size) o.kv_block_size = 64;
    if (!o.kv_blocks) o.kv_blocks = auto_kv_blocks(ops, model, ctx, &o);
    o.device = ops->device;
    if (!o.steps_per_sync) o.steps_per_sync = ops->steps_per_sync;

    etx_engine* e = xcalloc(1, sizeof(etx_engine));
    e->model = model;
    e->opts = o;
    e->max_seq_len = ctx;
    e->sched.max_batch = o.max_batch;
    e->sched.chunk = ops->prefill_chunk;
    e->sched.max_step_tokens = ops->prefill_chunk + o.max_batch;
    etx_status s = sched_config_validate(&e->sched);
    if (s.code == ETX_OK) s = build_block_manager(&e->bm, o.kv_blocks, o.kv_block_size);
    // the backend holds the KV storage, activations and logits
    BackendConfig bc = {o.max_batch, ctx,     ops->prefill_chunk, o.kv_blocks, o.kv_block_size,
                        o.trace,     o.n_threads, o.gpu,             o.tp > 1 ? o.tp : 1};
    if (s.code == ETX_OK) s = ops->create(model, &bc, &e->be);
    if (s.code != ETX_OK) {
        free_block_manager(&e->bm);
        free(e);
        return s;
    }
    e->ops = ops;
    build_prefix_cache(&e->pc, o.prefix_cache == 0, ops->prefill_chunk, o.kv_block_size);
    e->sched.reclaim = engine_reclaim;
    e->sched.reclaim_ctx = e;
    build_sched_plan(&e->plan);
    const size_t B = (size_t)o.max_batch;
    e->ring_tokens = xmalloc((size_t)o.steps_per_sync * B * sizeof(int32_t));
    e->ring_trace = o.trace ? xmalloc((size_t)o.steps_per_sync * B * sizeof(etx_trace_record)) : NULL;
    e->works = xmalloc(B * sizeof(BackendWork));
    e->picks = xmalloc(B * sizeof(BackendPick));
    e->pick_req = xmalloc(B * sizeof(Request*));
    e->pause_token = find_pause_token(model);
    e->stats.kv_blocks = o.kv_blocks;
    e->stats.kv_block_size = o.kv_block_size;
    e->stats.max_batch = o.max_batch;
    e->stats.steps_per_sync = o.steps_per_sync;
    *out = e;
    return etx_ok();
}

static void free_request(Request* r) {
    if (!r) return;
    free(r->events);
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
    free(e->works);
    free(e->picks);
    free(e->pick_req);
    free(e->ring_tokens);
    free(e->ring_trace);
    e->ops->destroy(e->be);
    free_prefix_cache(&e->pc, &e->bm);
    free_sched_plan(&e->plan);
    free_block_manager(&e->bm);
    free(e);
}

// Checks a request before anything is queued (a bad one changes nothing); *pause gets
// its resolved pause token (entropix), else -1.
static etx_status check_request(const etx_engine* e, const etx_request* req, int32_t* pause_out) {
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
    if (!(req->stop_confidence >= 0.0f) || req->stop_confidence > 3.0e38f)
        return etx_error(ETX_ERR_INVALID_ARG, "request: stop_confidence must be a number >= 0 (got %g)",
                         (double)req->stop_confidence);
    if (req->confidence_window < 0)
        return etx_error(ETX_ERR_INVALID_ARG, "request: confidence_window must be >= 0 (got %d)", req->confidence_window);
    const etx_branching* bb = &req->branching;
    if (bb->n_branches != 0) {
        if (bb->n_branches < 2 || bb->n_branches > ETX_TRACE_TOP)
            return etx_error(ETX_ERR_INVALID_ARG, "request: branching.n_branches must be 2..%d, or 0 for off (got %d)",
                             ETX_TRACE_TOP, bb->n_branches);
        if (bb->lookahead < 1 || bb->max_branch_tokens < 1)
            return etx_error(ETX_ERR_INVALID_ARG, "request: branching.lookahead and max_branch_tokens must be >= 1 "
                                                  "(got %d and %d)", bb->lookahead, bb->max_branch_tokens);
        if (!(bb->entropy >= 0.0f) || !(bb->varentropy >= 0.0f))
            return etx_error(ETX_ERR_INVALID_ARG, "request: branching thresholds must be numbers >= 0");
        if (!e->opts.trace)
            return etx_error(ETX_ERR_INVALID_ARG, "request: branching reads the trace records' signals and candidates; "
                                                  "create the engine with trace = 1");
        // a fork gives a token back and its branches continue from there: dslider's state
        // (its EMAs after that token) would have to be rewound and copied per branch
        if (req->policy.kind == ETX_POLICY_DSLIDER)
            return etx_error(ETX_ERR_INVALID_ARG, "request: branching does not apply to the dslider policy (its "
                                                  "per-request state cannot follow a fork)");
    }
    if (req->stop_confidence > 0.0f && !e->opts.trace)
        return etx_error(ETX_ERR_INVALID_ARG, "request: stop_confidence reads the trace records' confidences; create "
                                              "the engine with trace = 1");
    int32_t pause = -1;
    if (req->policy.kind == ETX_POLICY_ENTROPIX || req->policy.kind == ETX_POLICY_LEARNED) {
        pause = req->policy.entropix.pause_token >= 0 ? req->policy.entropix.pause_token : e->pause_token;
        // a learned network without a pause action needs no pause token (its feature
        // "after a pause" is then 0 throughout)
        const etx_learned_net* net = etx_learned_get(req->policy.learned);
        const int needs_pause = req->policy.kind == ETX_POLICY_ENTROPIX || !net || learned_has_pause(net);
        if (pause < 0 && needs_pause)
            return etx_error(ETX_ERR_INVALID_ARG, "request: the model has no single token for \" ...\"; set the "
                                                  "entropix pause_token explicitly");
        if (pause >= vocab)
            return etx_error(ETX_ERR_INVALID_ARG, "request: pause_token %d is outside the vocabulary (0..%d)", pause,
                             vocab - 1);
    }
    *pause_out = pause;
    return etx_ok();
}

// A new request from req (checked), queued after every other: id, scheduling order,
// prompt, policy and limits, its sequence waiting with the whole prompt to prefill.
static Request* add_request(etx_engine* e, const etx_request* req, int32_t pause, int id) {
    Request* r = xcalloc(1, sizeof(Request));
    r->id = id;
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
    r->stop_confidence = req->stop_confidence;
    r->confidence_window = req->confidence_window ? req->confidence_window : ETX_CONFIDENCE_WINDOW;
    r->br = req->branching;
    r->group = -1;
    r->cache_entry = -1;
    r->seq.id = r->id;
    r->seq.order = 8 * e->n_orders++; // room for a fork's branches (order + 1 + j) between requests
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
    return r;
}

etx_status etx_engine_submit(etx_engine* e, const etx_request* req, int* id) {
    if (id) *id = -1;
    int32_t pause = -1;
    ETX_TRY(check_request(e, req, &pause));
    Request* r = add_request(e, req, pause, e->next_id++);
    if (id) *id = r->id;
    return etx_ok();
}

double etx_group_confidence(const float* c, int t, int window) {
    if (t < 0) return 0.0;
    const int m = window < 1 ? 1 : (window < t + 1 ? window : t + 1);
    double sum = 0.0;
    for (int j = t - m + 1; j <= t; j++) sum += c[j];
    return sum / m;
}

uint64_t etx_sample_key(uint64_t key, int index) {
    // splitmix64 of the key offset by the index's own splitmix64: distinct indices give
    // unrelated streams, and (key, index) pairs collide only by a 64-bit accident
    uint64_t i = (uint64_t)(uint32_t)index + 0x9E3779B97F4A7C15ull;
    i = (i ^ (i >> 30)) * 0xBF58476D1CE4E5B9ull;
    i = (i ^ (i >> 27)) * 0x94D049BB133111EBull;
    uint64_t z = key + (i ^ (i >> 31)) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

etx_status etx_engine_submit_samples(etx_engine* e, const etx_request* req, int n, int* ids) {
    return etx_engine_submit_samples_at(e, req, 0, n, ids);
}

etx_status etx_engine_submit_samples_at(etx_engine* e, const etx_request* req, int first, int n, int* ids) {
    if (n < 1 || n > ETX_MAX_SAMPLES)
        return etx_error(ETX_ERR_INVALID_ARG, "request: samples must be 1..%d (got %d)", ETX_MAX_SAMPLES, n);
    if (first < 0 || first > ETX_MAX_SAMPLES - n)
        return etx_error(ETX_ERR_INVALID_ARG, "request: sample indices %d..%d are outside 0..%d", first, first + n - 1,
                         ETX_MAX_SAMPLES - 1);
    if (!ids) return etx_error(ETX_ERR_INVALID_ARG, "request: no room given for the %d sample ids", n);
    for (int i = 0; i < n; i++) ids[i] = -1;
    int32_t pause = -1;
    ETX_TRY(check_request(e, req, &pause));
    // one sample at a time must fit the pool: its prompt and first token (the samples
    // never need to be resident together; those that do not fit wait)
    const int need = sched_blocks_for(&e->bm, req->n_prompt + 1);
    if (need > e->bm.n_blocks)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "request: the prompt's %d tokens need %d KV blocks of %d positions; the pool holds %d "
                         "(raise kv_blocks or lower max_seq_len)",
                         req->n_prompt, need, e->bm.block_size, e->bm.n_blocks);
    const int group = e->next_group++;
    const int shared = req->n_prompt - 1; // positions the samples take from the prefix
    if (shared > 0) {
        Request* pre = add_request(e, req, pause, -1);
        pre->group = group;
        pre->prefix_only = 1;
        pre->seq.no_sample = 1;
        pre->seq.n_prompt = pre->seq.n_known = shared;
    }
    for (int i = 0; i < n; i++) {
        etx_request ri = *req;
        ri.key = etx_sample_key(req->key, first + i);
        Request* r = add_request(e, &ri, pause, e->next_id++);
        r->group = group;
        r->held = shared > 0;
        // the prompt's last token is the sample's first decode row (its own random
        // stream draws from its logits); the positions before it are the prefix's
        r->seq.n_prompt = shared;
        ids[i] = r->id;
    }
    return etx_ok();
}

static int is_finished(const Request* r) {
    return r->phase == ETX_REQ_DONE_STOP || r->phase == ETX_REQ_DONE_LENGTH || r->phase == ETX_REQ_FAILED ||
           r->phase == ETX_REQ_DONE_LOW_CONFIDENCE;
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
    if (r->parent && phase != ETX_REQ_FAILED) { // a branch keeps its blocks for its request
        r->seq.state = SEQ_FINISHED;
        return;
    }
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

// What a pick's fault code means, for the request's error message.
static const char* fault_what(int fault) {
    switch (fault) {
    case POLICY_FAULT_LOGITS: return "non-finite logits (NaN or infinity)";
    case POLICY_FAULT_LOGIT_SIGNALS: return "non-finite entropy or varentropy of the logits";
    case POLICY_FAULT_ATTN_SIGNALS: return "non-finite attention signals";
    default: return "an unknown pick fault";
    }
}

// A pick that came back without a token (its logits or signals not finite: engine/backend.h)
// fails its request, naming the position of the token that could not be picked.
static void fail_pick(etx_engine* e, Request* r, int fault) {
    snprintf(r->error, sizeof r->error,
             "request %d: %s for the token at position %d (prompt %d + generated %d); the model's output is not "
             "usable there",
             r->id, fault_what(fault), r->n_prompt + r->n_tokens, r->n_prompt, r->n_tokens);
    finish(e, r, ETX_REQ_FAILED);
}

static Request* add_request(etx_engine* e, const etx_request* req, int32_t pause, int id);

// Entropy-triggered branching: r has just drawn the token of record rec at an uncertain
// step t. It gives that token back and forks into n_branches branches, branch j taking
// rec's j-th most likely token as its token t: each shares r's blocks up to position
// n_known (the draw's token was not written yet; positions a multi-step call computed
// past it are dropped), continues `lookahead` tokens with its own stream
// etx_sample_key(key, 0x10000 + 8 fork + j), and waits to be admitted like any sequence.
static void fork_branches(etx_engine* e, Request* r, const etx_trace_record* rec) {
    const int t = r->n_tokens - 1;
    r->n_tokens = t;
    r->seq.n_known = r->n_prompt + t;
    if (r->seq.table.n_pos > r->seq.n_known) block_table_truncate(&e->bm, &r->seq.table, r->seq.n_known);
    r->seq.n_computed = r->seq.table.n_pos;
    int nb = 0;
    for (int j = 0; j < r->br.n_branches && rec->top_tokens[j] >= 0; j++) nb++;
    for (int j = 0; j < nb; j++) {
        etx_request q = {.prompt = r->prompt, .n_prompt = r->n_prompt, .policy = r->policy,
                         .max_tokens = t + 1 + r->br.lookahead < r->max_tokens ? t + 1 + r->br.lookahead : r->max_tokens,
                         .stop_tokens = r->stop, .n_stop = r->n_stop, .ignore_eos = r->ignore_eos,
                         .key = etx_sample_key(r->key, 0x10000 + 8 * r->n_events + j)};
        Request* c = add_request(e, &q, r->pause_token, -1);
        c->parent = r;
        c->branch_j = j;
        c->seq.order = r->seq.order + 1 + j; // older than every later request, ordered among themselves
        c->seq.n_prompt = r->seq.n_prompt;
        c->cache_pos = -1;           // its blocks are a fork's, not prompt chunks
        for (int k = 0; k < t; k++) {
            append_token(c, r->tokens[k], 1);
            c->trace[k] = r->trace[k];
        }
        append_token(c, rec->top_tokens[j], 1);
        c->trace[t] = *rec;
        c->trace[t].token = rec->top_tokens[j];
        c->trace[t].logprob = rec->top_logprobs[j];
        block_table_fork(&e->bm, &r->seq.table, &c->seq.table);
        c->seq.n_computed = c->seq.table.n_pos;
        if (is_stop_token(e, c, rec->top_tokens[j])) finish(e, c, ETX_REQ_DONE_STOP);
        else if (c->n_tokens >= c->max_tokens) finish(e, c, ETX_REQ_DONE_LENGTH);
    }
    block_table_release(&e->bm, &r->seq.table); // the branches hold the blocks now
    r->seq.n_computed = 0;
    r->cache_pos = -1;
    r->branching = 1;
    r->fork_step = t;
}

// Takes the next token (and its trace record) into r, then the stop checks; a fault code
// in place of the token fails r instead.
static void accept_token(etx_engine* e, Request* r, int32_t tok, const etx_trace_record* rec) {
    if (tok < 0) return fail_pick(e, r, policy_token_fault(tok));
    append_token(r, tok, e->opts.trace);
    if (e->opts.trace) r->trace[r->n_tokens - 1] = *rec;
    if (is_stop_token(e, r, tok)) return finish(e, r, ETX_REQ_DONE_STOP);
    if (r->br.n_branches && rec->entropy > r->br.entropy && rec->varentropy > r->br.varentropy &&
        r->branch_tokens + r->br.n_branches * (r->br.lookahead + 1) <= r->br.max_branch_tokens &&
        r->n_tokens < r->max_tokens && r->n_prompt + r->n_tokens < e->max_seq_len)
        return fork_branches(e, r, rec);
    // DeepConf online: the group confidence of the last window of tokens, once there is a
    // full one. Decided where the tokens land, so several decode steps per sync end it at
    // the same token as one
    if (r->stop_confidence > 0.0f && r->n_tokens >= r->confidence_window) { // etx_group_confidence's sum
        const int t = r->n_tokens - 1, m = r->confidence_window;
        double g = 0.0;
        for (int j = t - m + 1; j <= t; j++) g += r->trace[j].confidence;
        if (g / m < r->stop_confidence) return finish(e, r, ETX_REQ_DONE_LOW_CONFIDENCE);
    }
    // the context is full when the next token would have no position left
    if (r->n_tokens >= r->max_tokens || r->n_prompt + r->n_tokens >= e->max_seq_len)
        return finish(e, r, ETX_REQ_DONE_LENGTH);
}

// How many decode steps the backend may run before the host looks again: steps_per_sync
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

// The plan's work on the backend: it runs the forward passes and the policy and hands
// back each sampled sequence's token (and trace record), k steps of them when
// multi_steps allows. Returns the picks due; *k_out the steps run.
static int run_plan(etx_engine* e, int* k_out) {
    *k_out = 1;
    const int k = multi_steps(e); // first: it may grow the block tables the works point into
    SchedPlan* plan = &e->plan;
    int n_picks = 0;
    for (int i = 0; i < plan->n_work; i++) {
        const SchedWork* w = &plan->work[i];
        Request* r = (Request*)w->seq;
        BackendWork* d = &e->works[i];
        d->decode = w->kind == WORK_DECODE;
        d->block_ids = r->seq.table.ids;
        d->n_block_ids = r->seq.table.n_ids;
        d->pos0 = w->pos0;
        d->n = w->n;
        d->tokens = w->pos0 < r->n_prompt ? r->prompt + w->pos0 : r->tokens + (w->pos0 - r->n_prompt);
        d->pick = -1;
        if (!w->sample) continue;
        d->pick = n_picks;
        BackendPick* p = &e->picks[n_picks];
        memset(p, 0, sizeof *p);
        p->policy = &r->policy;
        p->key = r->key;
        p->step = (uint32_t)r->n_tokens;
        p->prev_token = r->n_tokens > 0 ? r->tokens[r->n_tokens - 1] : r->prompt[r->n_prompt - 1];
        p->pause_token = r->pause_token;
        p->request_id = r->id;
        p->dslider = r->policy.kind == ETX_POLICY_DSLIDER ? &r->ds : NULL;
        e->pick_req[n_picks++] = r;
    }
    BackendStep st = {plan->copies, plan->n_copies, e->works, plan->n_work, e->picks, n_picks};
    etx_status s = k > 1 ? e->ops->decode_steps(e->be, &st, k, e->ring_tokens, e->ring_trace)
                         : e->ops->step(e->be, &st);
    if (s.code == ETX_OK && k > 1) {
        *k_out = k;
        e->stats.multi_steps++;
    }
    if (s.code != ETX_OK) { // the backend failed the step: every request in it fails, nothing is committed
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

// Removes request index i from e->reqs and frees it (its blocks already released).
static void drop_request(etx_engine* e, int i) {
    free_request(e->reqs[i]);
    memmove(e->reqs + i, e->reqs + i + 1, (size_t)(e->n_reqs - i - 1) * sizeof(Request*));
    e->n_reqs--;
}

// After a step, each sample group's prefix that is done hands its positions to its held
// samples: every one forks the prefix's block table (full blocks shared, the partial last
// one copied on the sample's first write), its prompt but the last token now computed.
// Then the prefix lets go of its blocks and disappears. A prefix that failed fails its
// held samples with its message; one whose samples all ended (cancelled) is dropped.
static void settle_groups(etx_engine* e) {
    for (int i = 0; i < e->n_reqs; i++) {
        Request* pre = e->reqs[i];
        if (!pre->prefix_only) continue;
        const int failed = pre->phase == ETX_REQ_FAILED;
        const int done = !failed && pre->seq.state == SEQ_RUNNING && pre->seq.n_computed == pre->seq.n_prompt;
        int live = 0;
        for (int j = 0; j < e->n_reqs; j++) {
            Request* c = e->reqs[j];
            live += c->held && c->group == pre->group && !is_finished(c);
        }
        if (!failed && !done && live) continue;
        int forked = 0;
        for (int j = 0; j < e->n_reqs; j++) {
            Request* c = e->reqs[j];
            if (!c->held || c->group != pre->group) continue;
            c->held = 0;
            if (is_finished(c)) continue;
            if (failed) {
                snprintf(c->error, sizeof c->error, "%s", pre->error);
                finish(e, c, ETX_REQ_FAILED);
                continue;
            }
            block_table_fork(&e->bm, &pre->seq.table, &c->seq.table);
            c->seq.n_computed = c->seq.table.n_pos;
            if (forked++) e->stats.prefill_saved += c->seq.n_computed;
        }
        if (!failed) finish(e, pre, ETX_REQ_DONE_STOP);
        drop_request(e, i--);
    }
}

// A waiting request takes the prompt chunks the prefix cache holds for it, chunk after
// chunk from where its blocks end (a fresh or preempted request from position 0), while
// the next chunk would be a full one of its own prompt: the blocks hold what it would
// compute (prefix_cache.h). A forked sample (blocks not from chunks) takes none.
static void take_cached_prefix(etx_engine* e, Request* r) {
    SchedSeq* q = &r->seq;
    const int chunk = e->pc.chunk;
    if (!chunk) return;
    if (q->table.n_pos == 0) r->cache_entry = -1, r->cache_pos = 0;
    if (q->n_computed != q->table.n_pos || r->cache_pos != q->n_computed) return;
    while (q->n_computed + chunk <= q->n_prompt) {
        const int id = prefix_cache_find(&e->pc, r->cache_entry, r->prompt + q->n_computed);
        if (id < 0) break;
        block_table_append_shared(&e->bm, &q->table, e->pc.e[id].blocks, e->pc.per);
        q->n_computed += chunk;
        r->cache_entry = id;
        r->cache_pos += chunk;
        e->stats.prefill_saved += chunk;
    }
}

// After a step: every full, aligned prompt chunk computed in it goes into the prefix
// cache after its request's chain (the same chunk after the same chain already there is
// kept as it is; the request's chain follows it).
static void record_chunks(etx_engine* e) {
    const int chunk = e->pc.chunk;
    if (!chunk) return;
    for (int i = 0; i < e->plan.n_work; i++) {
        const SchedWork* w = &e->plan.work[i];
        if (!w->seq || w->kind != WORK_PREFILL || w->n != chunk || w->pos0 % chunk) continue;
        Request* r = (Request*)w->seq;
        if (r->cache_pos != w->pos0) continue; // its chain is broken (a forked sample's blocks)
        const int id = prefix_cache_insert(&e->pc, &e->bm, r->cache_entry, r->prompt + w->pos0,
                                           r->seq.table.ids + w->pos0 / e->bm.block_size);
        if (id < 0) {
            r->cache_pos = -1;
            continue;
        }
        r->cache_entry = id;
        r->cache_pos += chunk;
    }
}

// Frees every branch of r (their blocks back to the pool); returns index i (of r in
// e->reqs) moved down by the branches removed before it.
static int drop_branches(etx_engine* e, const Request* r, int i) {
    for (int j = 0; j < e->n_reqs; j++) {
        if (e->reqs[j]->parent != r) continue;
        block_table_release(&e->bm, &e->reqs[j]->seq.table);
        drop_request(e, j);
        if (j < i) i--;
        j--;
    }
    return i;
}

// After a step: a request whose branches have all ended keeps the best one (highest mean
// log-probability of its tokens from the fork on; ties to the more likely candidate):
// its tokens, trace and blocks become the request's, the fork goes in the request's
// events, and every branch is dropped. A branch that failed fails its request.
static void settle_branches(etx_engine* e) {
    for (int i = 0; i < e->n_reqs; i++) {
        Request* r = e->reqs[i];
        if (!r->branching) continue;
        int live = 0, failed = -1;
        Request* kids[ETX_TRACE_TOP] = {0};
        for (int j = 0; j < e->n_reqs; j++) {
            Request* c = e->reqs[j];
            if (c->parent != r) continue;
            kids[c->branch_j] = c;
            live += !is_finished(c);
            if (c->phase == ETX_REQ_FAILED) failed = j;
        }
        if (is_finished(r)) { // cancelled while its branches ran: they go, nothing is kept
            i = drop_branches(e, r, i);
            r->branching = 0;
            continue;
        }
        if (live && failed < 0) continue;
        const int t = r->fork_step;
        etx_branch_event ev;
        memset(&ev, 0, sizeof ev);
        ev.step = t;
        int best = -1;
        for (int j = 0; j < ETX_TRACE_TOP && kids[j]; j++) {
            Request* c = kids[j];
            double sum = 0.0;
            for (int k = t; k < c->n_tokens; k++) sum += c->trace[k].logprob;
            ev.candidates[j] = c->tokens[t];
            ev.tokens[j] = c->n_tokens - t;
            ev.scores[j] = (float)(sum / (c->n_tokens - t));
            ev.n_branches = j + 1;
            r->branch_tokens += c->n_tokens - t;
            if (best < 0 || ev.scores[j] > ev.scores[best]) best = j;
        }
        ev.kept = best;
        r->branching = 0;
        if (failed >= 0) {
            snprintf(r->error, sizeof r->error, "%s", e->reqs[failed]->error);
            r->phase = ETX_REQ_FAILED;
            r->seq.state = SEQ_FINISHED;
        } else {
            Request* c = kids[best];
            // the kept branch's tokens, trace and blocks become the request's
            int32_t* tk = r->tokens;
            etx_trace_record* tr = r->trace;
            r->tokens = c->tokens, c->tokens = tk;
            r->trace = c->trace, c->trace = tr;
            const int cap = r->cap_tokens;
            r->cap_tokens = c->cap_tokens, c->cap_tokens = cap;
            r->n_tokens = c->n_tokens;
            for (int k = 0; k < r->n_tokens; k++) r->trace[k].request_id = r->id;
            BlockTable tb = r->seq.table;
            r->seq.table = c->seq.table, c->seq.table = tb;
            r->seq.n_known = r->n_prompt + r->n_tokens;
            if (r->seq.table.n_pos > r->seq.n_known - 1) // positions past a multi-step's end go
                block_table_truncate(&e->bm, &r->seq.table, r->seq.n_known - 1);
            r->seq.n_computed = r->seq.table.n_pos;
            r->seq.state = SEQ_WAITING; // readmitted with its blocks, like a forked sample
            if (c->phase == ETX_REQ_DONE_STOP) finish(e, r, ETX_REQ_DONE_STOP);
            else if (r->n_tokens >= r->max_tokens || r->n_prompt + r->n_tokens >= e->max_seq_len)
                finish(e, r, ETX_REQ_DONE_LENGTH);
        }
        if (r->n_events == r->cap_events) {
            r->cap_events = r->cap_events ? 2 * r->cap_events : 4;
            r->events = xrealloc(r->events, (size_t)r->cap_events * sizeof *r->events);
        }
        r->events[r->n_events++] = ev;
        i = drop_branches(e, r, i);
    }
}

// Blocks the requests hold (the prefix cache's idle blocks left out).
static int blocks_in_use(const etx_engine* e) {
    return block_manager_used(&e->bm) - prefix_cache_idle_blocks(&e->pc, &e->bm);
}

etx_status etx_engine_step(etx_engine* e, int* n_active) {
    int n = 0;
    for (int i = 0; i < e->n_reqs; i++) {
        Request* r = e->reqs[i];
        if (is_finished(r) || r->held || r->branching) continue;
        if (r->seq.state == SEQ_WAITING) take_cached_prefix(e, r);
        e->seqs[n++] = &r->seq;
    }
    if (n > 0) {
        sched_plan_step(&e->bm, &e->sched, e->seqs, n, &e->plan);
        for (int i = 0; i < e->plan.n_failed; i++) {
            Request* r = (Request*)e->plan.failed[i];
            fail(e, r, etx_error(ETX_ERR_NOMEM,
                                 "request %d%s needs %d KV blocks of %d positions for its %d tokens; the pool holds %d "
                                 "(raise kv_blocks or lower max_seq_len)",
                                 r->id, r->prefix_only ? " (the shared prompt of a sample group)" : "",
                                 sched_blocks_for(&e->bm, r->seq.n_known + 1), e->bm.block_size,
                                 r->seq.n_known + 1, e->bm.n_blocks));
        }
        e->stats.preemptions += e->plan.n_preempted;
        for (int i = 0; i < e->plan.n_work; i++) ((Request*)e->plan.work[i].seq)->phase = ETX_REQ_RUNNING;
        int k = 1;
        int n_picks = run_plan(e, &k);
        sched_commit(&e->plan);
        record_chunks(e);
        if (k > 1) // the rows' other k - 1 positions are in the cache too
            for (int i = 0; i < e->plan.n_work; i++) {
                SchedSeq* q = e->plan.work[i].seq;
                if (!q) continue;
                block_table_commit(&q->table, k - 1);
                q->n_computed += k - 1;
            }
        int used = blocks_in_use(e);
        if (used > e->stats.kv_blocks_peak) e->stats.kv_blocks_peak = used;
        for (int i = 0; i < n_picks; i++) {
            Request* r = e->pick_req[i];
            if (is_finished(r)) continue;
            if (k > 1) // step j's token of pick i, in order, until a stop condition ends r
                for (int j = 0; j < k && !is_finished(r) && !r->branching; j++)
                    accept_token(e, r, e->ring_tokens[(size_t)j * n_picks + i],
                                 e->ring_trace ? &e->ring_trace[(size_t)j * n_picks + i] : NULL);
            else
                accept_token(e, r, e->picks[i].token, &e->picks[i].trace);
        }
        if (e->plan.n_work) e->stats.steps++;
        settle_groups(e);
    }
    settle_branches(e); // also when nothing ran: branches may all have ended at their fork
    int active = 0; // the callers' requests (a group's prefix is not one)
    for (int i = 0; i < e->n_reqs; i++)
        active += !is_finished(e->reqs[i]) && !e->reqs[i]->prefix_only && !e->reqs[i]->parent;
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
        if (e->reqs[i]->id == id && !e->reqs[i]->prefix_only && !e->reqs[i]->parent) {
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

etx_status etx_engine_branch_events(const etx_engine* e, int id, const etx_branch_event** events, int* n,
                                    int* n_spent) {
    *events = NULL;
    *n = 0;
    if (n_spent) *n_spent = 0;
    const Request* r = find_request(e, id, NULL);
    if (!r) return etx_error(ETX_ERR_STATE, "no request with id %d in this engine", id);
    *events = r->events;
    *n = r->n_events;
    if (n_spent) *n_spent = r->branch_tokens;
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
    drop_request(e, index);
    return etx_ok();
}

etx_status etx_engine_get_stats(const etx_engine* e, etx_engine_stats* stats) {
    *stats = e->stats;
    stats->device = e->opts.device;
    stats->kv_blocks_used = blocks_in_use(e);
    stats->kv_blocks_cached = prefix_cache_idle_blocks(&e->pc, &e->bm);
    stats->requests_running = stats->requests_waiting = 0;
    for (int i = 0; i < e->n_reqs; i++) {
        const Request* r = e->reqs[i];
        if (is_finished(r)) continue;
        if (r->seq.state == SEQ_RUNNING) stats->requests_running++;
        else stats->requests_waiting++;
    }
    stats->d2h_bytes = e->ops->d2h_bytes(e->be);
    e->ops->sizes(e->be, &stats->weight_bytes, &stats->kv_bytes_per_position, &stats->device_bytes);
    snprintf(stats->device_name, sizeof stats->device_name, "%s", e->ops->device_name());
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
    return e->ops->logits(e->be, ids, n, all_positions, out);
}
