/*
 * engine.c — the engine half of the public API: a set of requests, each with its own
 * prompt, policy, limits and KV cache, advanced one token per step.
 *
 * The engine holds many requests from the start (DESIGN.md: batches from day one). On
 * the CPU backend a step runs the requests one after another; a request's tokens depend
 * only on its own prompt, policy, seed and key, never on its neighbours. The CUDA
 * backend (a later issue) replaces the per-request loop with batched kernels.
 *
 * Per token: forward pass -> (entropix or tracing) the step's metrics: entropy and
 * varentropy of the logits, the last layer's attention metrics -> the policy's decision
 * (kernels/policy_math.h) -> the pick (sampler.c) -> stop checks -> trace record.
 */
#include <string.h>

#include "common.h"
#include "cpu_forward.h"
#include "metrics.h"
#include "model.h"
#include "policy_math.h"
#include "sampler.h"

typedef struct {
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
    KVCache kv;        // built when the prompt is processed, freed when done
    int has_kv;
    char error[ETX_MSG_LEN];
} Request;

struct etx_engine {
    const etx_model* model;
    etx_engine_options opts;
    int max_seq_len;   // per-request context
    CpuRunState run;   // scratch shared by all requests (they run one after another)
    Sampler sampler;
    float* logits;     // (vocab_size)
    float* scores;     // (n_heads, max_seq_len) last layer's scores of the current token
    float* scratch;    // ((n_heads + 1) * max_seq_len) for attn_metrics
    int32_t pause_token; // the model's " ..." token, or -1
    Request** reqs;    // (n_reqs) live requests, in submission order
    int n_reqs;
    int cap_reqs;
    int next_id;
};

etx_engine_options etx_engine_options_default(void) {
    etx_engine_options o;
    o.device = ETX_DEVICE_AUTO;
    o.n_threads = 0;
    o.max_seq_len = 0;
    o.trace = 0;
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

etx_status etx_engine_create(const etx_model* model, const etx_engine_options* opts, etx_engine** out) {
    *out = NULL;
    etx_engine_options o = opts ? *opts : etx_engine_options_default();
    if (o.device == ETX_DEVICE_CUDA)
        return etx_error(ETX_ERR_UNSUPPORTED,
                         "device cuda: the CUDA backend is not part of this build yet; use --device cpu");
    if (o.device != ETX_DEVICE_AUTO && o.device != ETX_DEVICE_CPU)
        return etx_error(ETX_ERR_INVALID_ARG, "unknown device %d", (int)o.device);
    if (o.n_threads < 0) return etx_error(ETX_ERR_INVALID_ARG, "threads must be >= 0 (got %d)", o.n_threads);
    if (o.max_seq_len < 0) return etx_error(ETX_ERR_INVALID_ARG, "max_seq_len must be >= 0 (got %d)", o.max_seq_len);
    const int model_ctx = model->cfg.max_seq_len;
    int ctx = o.max_seq_len ? o.max_seq_len : (model_ctx < 4096 ? model_ctx : 4096);
    if (ctx > model_ctx)
        return etx_error(ETX_ERR_INVALID_ARG, "max_seq_len %d exceeds the model's context length %d", ctx, model_ctx);
    o.device = ETX_DEVICE_CPU;
    etx_engine* e = xcalloc(1, sizeof(etx_engine));
    e->model = model;
    e->opts = o;
    e->max_seq_len = ctx;
    etx_status s = build_cpu_run_state(&e->run, &model->cfg);
    if (s.code != ETX_OK) {
        free(e);
        return s;
    }
    build_sampler(&e->sampler, model->cfg.vocab_size);
    e->logits = xmalloc((size_t)model->cfg.vocab_size * sizeof(float));
    const size_t nh = (size_t)model->cfg.n_heads;
    e->scores = xmalloc(nh * (size_t)ctx * sizeof(float));
    e->scratch = xmalloc((nh + 1) * (size_t)ctx * sizeof(float));
    e->pause_token = find_pause_token(model);
    cpu_set_threads(o.n_threads);
    *out = e;
    return etx_ok();
}

static void free_request(Request* r) {
    if (!r) return;
    if (r->has_kv) free_kv_cache(&r->kv);
    free(r->prompt);
    free(r->stop);
    free(r->tokens);
    free(r->trace);
    free(r);
}

void etx_engine_free(etx_engine* e) {
    if (!e) return;
    for (int i = 0; i < e->n_reqs; i++) free_request(e->reqs[i]);
    free(e->reqs);
    free(e->logits);
    free(e->scores);
    free(e->scratch);
    free_sampler(&e->sampler);
    free_cpu_run_state(&e->run);
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
    if (e->n_reqs == e->cap_reqs) {
        e->cap_reqs = e->cap_reqs ? 2 * e->cap_reqs : 8;
        e->reqs = xrealloc(e->reqs, (size_t)e->cap_reqs * sizeof(Request*));
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

static void finish(Request* r, etx_request_phase phase) {
    r->phase = phase;
    if (r->has_kv) {
        free_kv_cache(&r->kv);
        r->has_kv = 0;
    }
}

static void fail(Request* r, etx_status s) {
    snprintf(r->error, sizeof r->error, "%s", s.message);
    finish(r, ETX_REQ_FAILED);
}

static void append_token(Request* r, int32_t tok, int tracing) {
    if (r->n_tokens == r->cap_tokens) {
        r->cap_tokens = r->cap_tokens ? 2 * r->cap_tokens : 64;
        r->tokens = xrealloc(r->tokens, (size_t)r->cap_tokens * sizeof(int32_t));
        if (tracing) r->trace = xrealloc(r->trace, (size_t)r->cap_tokens * sizeof(etx_trace_record));
    }
    r->tokens[r->n_tokens++] = tok;
}

// The step's signals from the logits and the last layer's scores of the current token.
static PolicyMetrics step_metrics(etx_engine* e, const Request* r, float* log_z) {
    const ModelConfig* c = &e->model->cfg;
    LogitMetrics lm = logit_metrics(e->logits, c->vocab_size);
    const int window = r->policy.kind == ETX_POLICY_ENTROPIX ? r->policy.entropix.attn_window : 0;
    AttnMetrics am = attn_metrics(e->scores, c->n_heads, r->kv.pos, window, e->scratch);
    *log_z = lm.log_z;
    PolicyMetrics m = {lm.entropy, lm.varentropy, am.attn_entropy, am.attn_varentropy, am.agreement, am.interaction};
    return m;
}

// One token for one request: the prompt (first time) or the last token through the
// model, then the policy picks the next token.
static void step_request(etx_engine* e, Request* r) {
    etx_status s;
    const int is_entropix = r->policy.kind == ETX_POLICY_ENTROPIX;
    const int tracing = e->opts.trace;
    const int need_metrics = is_entropix || tracing;
    e->run.last_scores = need_metrics ? e->scores : NULL;
    if (r->phase == ETX_REQ_QUEUED) {
        s = build_kv_cache(&r->kv, &e->model->cfg, e->max_seq_len);
        if (s.code != ETX_OK) return fail(r, s);
        r->has_kv = 1;
        s = cpu_forward(e->model, &e->run, &r->kv, r->prompt, r->n_prompt, e->logits, 0);
        r->phase = ETX_REQ_RUNNING;
    } else {
        s = cpu_forward(e->model, &e->run, &r->kv, &r->tokens[r->n_tokens - 1], 1, e->logits, 0);
    }
    e->run.last_scores = NULL;
    if (s.code != ETX_OK) return fail(r, s);

    PolicyMetrics m = {0, 0, 0, 0, 0, 0};
    float log_z = 0.0f;
    if (need_metrics) m = step_metrics(e, r, &log_z);
    const int32_t prev = r->n_tokens > 0 ? r->tokens[r->n_tokens - 1] : r->prompt[r->n_prompt - 1];
    const PolicyDecision d =
        is_entropix ? entropix_decide(&r->policy.entropix, &m, prev, r->pause_token) : policy_decision_simple(&r->policy);
    const int32_t tok = sampler_pick(&e->sampler, e->logits, &d, r->policy.seed, r->key, (uint32_t)r->n_tokens);
    append_token(r, tok, tracing);
    if (tracing) {
        etx_trace_record* t = &r->trace[r->n_tokens - 1];
        t->request_id = r->id;
        t->step = r->n_tokens - 1;
        t->token = tok;
        t->logprob = e->logits[tok] - log_z;
        t->entropy = m.entropy;
        t->varentropy = m.varentropy;
        t->attn_entropy = m.attn_entropy;
        t->attn_varentropy = m.attn_varentropy;
        t->agreement = m.agreement;
        t->interaction = m.interaction;
        t->branch = d.branch;
        t->temperature = d.temperature;
        t->top_k = d.top_k;
        t->top_p = d.top_p;
        t->min_p = d.min_p;
    }
    if (is_stop_token(e, r, tok)) return finish(r, ETX_REQ_DONE_STOP);
    // the context is full when the next token would have no position left
    if (r->n_tokens >= r->max_tokens || r->n_prompt + r->n_tokens >= e->max_seq_len)
        return finish(r, ETX_REQ_DONE_LENGTH);
}

etx_status etx_engine_step(etx_engine* e, int* n_active) {
    int active = 0;
    for (int i = 0; i < e->n_reqs; i++) {
        Request* r = e->reqs[i];
        if (is_finished(r)) continue;
        step_request(e, r);
        if (!is_finished(r)) active++;
    }
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
    if (!is_finished(r)) finish(r, ETX_REQ_DONE_STOP);
    return etx_ok();
}

etx_status etx_engine_release(etx_engine* e, int id) {
    int index = -1;
    Request* r = find_request(e, id, &index);
    if (!r) return etx_error(ETX_ERR_STATE, "no request with id %d in this engine", id);
    if (!is_finished(r)) return etx_error(ETX_ERR_STATE, "request %d has not finished; it cannot be released yet", id);
    free_request(r);
    memmove(e->reqs + index, e->reqs + index + 1, (size_t)(e->n_reqs - index - 1) * sizeof(Request*));
    e->n_reqs--;
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
    KVCache kv;
    ETX_TRY(build_kv_cache(&kv, &e->model->cfg, n));
    etx_status s = cpu_forward(e->model, &e->run, &kv, ids, n, out, all_positions);
    free_kv_cache(&kv);
    return s;
}
