/*
 * serve_engine.c — the engine thread of `etx serve` (serve.h): the only thread that
 * calls the engine. Each turn it takes the queued jobs and submits them (a prompt's n
 * choices as one sample group sharing its KV blocks, n = 1 as a plain request, so that
 * a greedy choice is bit for bit `etx generate`'s), computes echo's prompt
 * log-probabilities, cancels jobs whose client went away, runs one engine step, and
 * publishes every choice's new tokens (decoded, stop strings looked for after each token,
 * trace records copied) under Server.mu, waking the HTTP threads that wait on the job.
 * A choice that ends releases its engine request at once (its KV blocks back to the pool).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "serve.h"

// splitmix64: the random stream of a request that gives no seed.
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

int serve_enqueue_locked(Server* s, ServeJob* j) {
    if (s->draining || s->stop) return 503;
    // the queue is full when what is admitted already fills the batch and the queue
    // (a job larger than that still runs when nothing else is admitted)
    if (s->pending > 0 && s->pending + j->n_choices > s->cfg.max_batch + s->cfg.max_queue) return 429;
    if (j->key == UINT64_MAX) j->key = mix64(s->next_key++);
    snprintf(j->id, sizeof j->id, "%s-%llx%04llx", j->kind == SERVE_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)(mix64(s->next_key++) & 0xFFFFFFFFFFULL), (unsigned long long)(s->next_id++ & 0xFFFF));
    j->http_ref = j->engine_ref = 1;
    j->next = NULL;
    if (s->queue_tail) s->queue_tail->next = j;
    else s->queue_head = j;
    s->queue_tail = j;
    s->pending += j->n_choices;
    s->queued += j->n_choices;
    s->jobs++;
    pthread_cond_signal(&s->work);
    return 0;
}

static void job_free_locked(Server* s, ServeJob* j) {
    serve_job_free(j);
    s->jobs--;
}

void serve_http_release_locked(Server* s, ServeJob* j) {
    j->http_ref = 0;
    if (j->n_done < j->n_choices) {
        j->cancelled = 1;
        pthread_cond_signal(&s->work);
    }
    if (!j->engine_ref) job_free_locked(s, j);
}

// Marks choice c finished (Server.mu held).
static void finish_locked(Server* s, ServeJob* j, ServeChoice* c, const char* finish) {
    if (c->done) return;
    c->done = 1;
    c->finish = finish;
    j->n_done++;
    s->pending--;
    pthread_cond_broadcast(&j->cv);
}

// Log-probabilities of every prompt token under the tokens before it, and the k most
// likely tokens at each position, from the logits of all positions (one forward pass
// outside the batch; echo with logprobs).
static etx_status echo_logprobs(Server* s, const int32_t* ids, int n, int k, ServeEcho* out) {
    const int V = s->info.vocab_size;
    float* logits = malloc((size_t)n * V * sizeof(float));
    if (!logits) return etx_error(ETX_ERR_NOMEM, "echo: no memory for the prompt's logits");
    etx_status st = etx_engine_logits(s->e, ids, n, 1, logits);
    if (st.code != ETX_OK) {
        free(logits);
        return st;
    }
    out->lp = xcalloc((size_t)n, sizeof *out->lp);
    out->top = xmalloc((size_t)(n * (k > 0 ? k : 1)) * sizeof *out->top);
    out->top_lp = xmalloc((size_t)(n * (k > 0 ? k : 1)) * sizeof *out->top_lp);
    out->lp[0] = NAN;
    for (int i = 0; i < n * k; i++) out->top[i] = -1, out->top_lp[i] = NAN;
    for (int i = 1; i < n; i++) {
        const float* row = logits + (size_t)(i - 1) * V; // predicts token i
        double mx = -INFINITY, z = 0;
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
        const double lz = mx + log(z);
        out->lp[i] = (float)((double)row[ids[i]] - lz);
        int32_t* top = out->top + (size_t)i * k;
        float* tlp = out->top_lp + (size_t)i * k;
        for (int v = 0; v < V; v++) { // insertion into the k best (ties: the lower id first)
            int at = k;
            while (at > 0 && (top[at - 1] < 0 || row[v] > row[top[at - 1]])) at--;
            if (at == k) continue;
            for (int q = k - 1; q > at; q--) top[q] = top[q - 1];
            top[at] = v;
        }
        for (int q = 0; q < k; q++)
            if (top[q] >= 0) tlp[q] = (float)((double)row[top[q]] - lz);
    }
    free(logits);
    return etx_ok();
}

// Submits job j's choices (engine thread, Server.mu not held).
static void start_job(Server* s, ServeJob* j) {
    pthread_mutex_lock(&s->mu);
    const int cancelled = j->cancelled;
    pthread_mutex_unlock(&s->mu);
    etx_status st = etx_ok();
    ServeEcho* echo = NULL;
    if (!cancelled && j->echo && j->logprobs >= 0) {
        echo = xcalloc((size_t)j->n_prompts, sizeof *echo);
        for (int p = 0; p < j->n_prompts && st.code == ETX_OK; p++)
            st = echo_logprobs(s, j->prompts[p], j->n_prompt[p], j->logprobs, &echo[p]);
    }
    for (int p = 0; p < j->n_prompts && st.code == ETX_OK && !cancelled && j->max_tokens > 0; p++) {
        etx_request req = {.prompt = j->prompts[p], .n_prompt = j->n_prompt[p], .policy = j->policy,
                           .max_tokens = j->max_tokens, .ignore_eos = j->ignore_eos, .key = j->key};
        int* ids = xmalloc((size_t)j->n * sizeof *ids);
        st = j->n == 1 ? etx_engine_submit(s->e, &req, ids) : etx_engine_submit_samples(s->e, &req, j->n, ids);
        if (st.code == ETX_OK)
            for (int i = 0; i < j->n; i++) j->choices[p * j->n + i].req = ids[i];
        free(ids);
    }
    // the job leaves "queued" as the engine's counts take it in, in one step under the
    // lock: /health never sees it in neither (a CI run under load once read 0 running and
    // 0 queued between the two, while the job's first step ran)
    etx_engine_stats es;
    memset(&es, 0, sizeof es);
    etx_engine_get_stats(s->e, &es);
    pthread_mutex_lock(&s->mu);
    s->queued -= j->n_choices;
    s->eng_running = es.requests_running;
    s->eng_waiting = es.requests_waiting;
    j->echo_lp = echo;
    for (int c = 0; c < j->n_choices; c++) {
        ServeChoice* ch = &j->choices[c];
        if (st.code != ETX_OK) {
            snprintf(ch->error, sizeof ch->error, "%s", st.message);
            j->failed = 1;
            finish_locked(s, j, ch, "error");
        } else if (cancelled) {
            finish_locked(s, j, ch, "cancelled");
        } else if (j->max_tokens == 0) {
            finish_locked(s, j, ch, "length");
        } else {
            s->submitted++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (st.code != ETX_OK) // a prompt's group may have been submitted before another failed
        for (int c = 0; c < j->n_choices; c++)
            if (j->choices[c].req >= 0) {
                etx_engine_cancel(s->e, j->choices[c].req);
                etx_engine_release(s->e, j->choices[c].req);
                j->choices[c].req = -1;
            }
}

static void grow(ServeChoice* c, int n) {
    if (n <= c->cap) return;
    c->cap = n > 2 * c->cap ? n : 2 * c->cap;
    c->tokens = xrealloc(c->tokens, (size_t)c->cap * sizeof *c->tokens);
    c->recs = xrealloc(c->recs, (size_t)c->cap * sizeof *c->recs);
    c->ends = xrealloc(c->ends, (size_t)c->cap * sizeof *c->ends);
}

// Ends choice c's engine request (engine thread).
static void release_choice(Server* s, ServeChoice* c, int cancel) {
    if (c->req < 0) return;
    if (cancel) etx_engine_cancel(s->e, c->req);
    etx_engine_release(s->e, c->req);
    c->req = -1;
    pthread_mutex_lock(&s->mu);
    s->submitted--;
    pthread_mutex_unlock(&s->mu);
}

// Publishes choice c's new tokens after a step; ends it when its request ended or a stop
// string appeared.
static void update_choice(Server* s, ServeJob* j, ServeChoice* c) {
    etx_request_state rs;
    const etx_trace_record* recs = NULL;
    int n_recs = 0;
    if (etx_engine_request_state(s->e, c->req, &rs).code != ETX_OK) return;
    if (etx_engine_trace(s->e, c->req, &recs, &n_recs).code != ETX_OK) n_recs = 0;
    pthread_mutex_lock(&s->mu);
    grow(c, rs.n_tokens);
    for (int i = c->n_tokens; i < rs.n_tokens && c->slot.stop_at < 0; i++) {
        slot_decode_stops(&c->slot, s->m, rs.tokens, i + 1, (const char* const*)j->stops, j->n_stops);
        c->tokens[i] = rs.tokens[i];
        if (i < n_recs) c->recs[i] = recs[i];
        c->ends[i] = c->slot.len;
        c->n_tokens = i + 1;
        c->n_recs = i < n_recs ? i + 1 : c->n_recs;
    }
    c->n_out = c->n_tokens;
    c->out_len = c->slot.len;
    const char* finish = NULL;
    if (c->slot.stop_at >= 0) {
        finish = "stop";
        c->out_len = (size_t)c->slot.stop_at;
        // the tokens that reach into the output (the one completing the stop string too
        // when part of it is text before the stop string)
        int keep = 0;
        while (keep < c->n_tokens && (keep == 0 ? 0 : c->ends[keep - 1]) < c->out_len) keep++;
        c->n_out = keep;
    } else if (rs.phase == ETX_REQ_DONE_STOP) {
        finish = "stop"; // the last token is the stop token: not part of the output
        c->n_out = c->n_tokens - 1;
        c->out_len = c->n_out > 0 ? c->ends[c->n_out - 1] : 0;
    } else if (rs.phase == ETX_REQ_DONE_LENGTH || rs.phase == ETX_REQ_DONE_LOW_CONFIDENCE) {
        finish = "length";
    } else if (rs.phase == ETX_REQ_FAILED) {
        finish = "error";
        snprintf(c->error, sizeof c->error, "%s", rs.error);
        j->failed = 1;
    }
    if (finish) finish_locked(s, j, c, finish);
    else pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&s->mu);
    if (finish) release_choice(s, c, c->slot.stop_at >= 0);
}

// Every running choice fails with the engine's error (a failed step).
static void fail_all(Server* s, ServeJob* running, etx_status st) {
    for (ServeJob* j = running; j; j = j->next)
        for (int c = 0; c < j->n_choices; c++) {
            ServeChoice* ch = &j->choices[c];
            if (ch->done) continue;
            pthread_mutex_lock(&s->mu);
            snprintf(ch->error, sizeof ch->error, "%s", st.message);
            j->failed = 1;
            finish_locked(s, j, ch, "error");
            pthread_mutex_unlock(&s->mu);
            release_choice(s, ch, 1);
        }
}

void* serve_engine_main(void* arg) {
    Server* s = arg;
    ServeJob* running = NULL; // jobs the engine side holds, linked through next
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->queue_head && !running && !s->stop) pthread_cond_wait(&s->work, &s->mu);
        if (!s->queue_head && !running && s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        ServeJob* q = s->queue_head;
        s->queue_head = s->queue_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        while (q) { // start the new jobs, appended to running in arrival order
            ServeJob* next = q->next;
            start_job(s, q);
            q->next = NULL;
            ServeJob** tail = &running;
            while (*tail) tail = &(*tail)->next;
            *tail = q;
            q = next;
        }
        int live = 0;
        for (ServeJob* j = running; j; j = j->next) {
            pthread_mutex_lock(&s->mu);
            const int cancel = j->cancelled || s->abort;
            pthread_mutex_unlock(&s->mu);
            for (int c = 0; c < j->n_choices; c++) {
                ServeChoice* ch = &j->choices[c];
                if (ch->done) continue;
                if (!cancel) {
                    live++;
                    continue;
                }
                pthread_mutex_lock(&s->mu);
                finish_locked(s, j, ch, "cancelled");
                pthread_mutex_unlock(&s->mu);
                release_choice(s, ch, 1);
            }
        }
        if (live) {
            etx_status st = etx_engine_step(s->e, NULL);
            if (st.code != ETX_OK) fail_all(s, running, st);
            else
                for (ServeJob* j = running; j; j = j->next)
                    for (int c = 0; c < j->n_choices; c++)
                        if (!j->choices[c].done && j->choices[c].req >= 0) update_choice(s, j, &j->choices[c]);
        }
        etx_engine_stats es;
        memset(&es, 0, sizeof es);
        etx_engine_get_stats(s->e, &es);
        // jobs whose choices all ended leave the engine side
        pthread_mutex_lock(&s->mu);
        s->kv_blocks_used = es.kv_blocks_used;
        s->eng_running = es.requests_running;
        s->eng_waiting = es.requests_waiting;
        for (ServeJob** pj = &running; *pj;) {
            ServeJob* j = *pj;
            if (j->n_done < j->n_choices) {
                pj = &j->next;
                continue;
            }
            *pj = j->next;
            j->engine_ref = 0;
            if (!j->http_ref) job_free_locked(s, j);
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}
