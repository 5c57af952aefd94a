/*
 * serve.h — `etx serve`: an OpenAI-compatible HTTP server in front of one continuously
 * batched engine (docs/serve.md). Internal to the command line.
 *
 * Three parts, one concern each:
 *   serve_req.c    an HTTP body (JSON) -> a ServeJob: every field checked, errors that
 *                  name the field (HTTP 400/404), the policy the request asks for;
 *   serve_engine.c the engine thread: it alone touches the engine; it takes queued jobs,
 *                  submits one engine request per choice, steps, decodes every choice's
 *                  tokens (stop strings), cancels jobs whose client went away, and
 *                  wakes the HTTP threads waiting on a job;
 *   serve_http.c   libmicrohttpd (one thread per connection): routes, body limit, API key,
 *                  admission (429 beyond the queue), and the responses (serve_resp.c:
 *                  the OpenAI JSON, whole or as server-sent events).
 *
 * Locking: one mutex (Server.mu) guards the queue, every job's published state (choice
 * text, tokens, trace records, finish) and the counters. The engine step runs without it.
 * A job is freed when both sides let go of it: the HTTP side (its connection ended) and
 * the engine side (every choice's engine request released).
 */
#ifndef ETX_SERVE_H
#define ETX_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/batch_run.h"
#include "etx/etx.h"

#define SERVE_MAX_STOPS 16     // "stop" strings (OpenAI allows 4; lm-eval adds EOS to a task's)
#define SERVE_MAX_STOP_LEN 256 // bytes per stop string
#define SERVE_MAX_PROMPTS 64   // prompts in one /v1/completions request

typedef struct {
    const char* host;       // address to bind (default 127.0.0.1)
    int port;               // 0: any free port
    const char* api_key;    // NULL: none required
    const char* model_name; // the id /v1/models lists and requests must name
    int max_batch;          // the engine's batch
    int max_queue;          // engine requests waiting beyond the batch before 429
    size_t max_body;        // bytes of a request body before 413
    int max_tokens;         // largest max_tokens a request may ask for
    int max_n;              // choices per request (n x prompts)
    int ctx;                // the engine's context (prompt + generated per request)
    const char* policy_dir; // where "policy_file" names are looked up (NULL: refused)
    etx_policy policy;      // the policy of a request that names none and gives no temperature
    double drain_s;         // seconds SIGINT/SIGTERM waits for in-flight requests
} ServeConfig;

typedef enum { SERVE_COMPLETION, SERVE_CHAT } ServeKind;

// One choice: one engine request (or none: an echo with max_tokens 0).
typedef struct {
    int prompt;       // index of its prompt in the job
    int sample;       // its index among the prompt's n samples
    int req;          // engine request id; -1 before submit and after release
    Slot slot;        // decoded bytes, stop strings (cli/batch_run.h)
    int32_t* tokens;  // (n_tokens) generated tokens so far (engine thread copies them)
    etx_trace_record* recs; // (n_recs) their trace records
    size_t* ends;     // (n_tokens) byte offset in slot.text where token i ends
    int n_tokens, n_recs, cap;
    int done;         // 1: finished; finish says how
    const char* finish; // "stop" | "length" | "error"
    int n_out;        // tokens that belong to the output (the stop token / EOS left out)
    size_t out_len;   // bytes of slot.text that belong to the output
    char error[ETX_MSG_LEN];
    // streaming (HTTP thread only)
    size_t sent;      // bytes of the output already sent
    int tokens_sent;  // tokens whose logprobs were sent
    int started;      // the first chunk (chat: the role) was sent
    int closed;       // the chunk with finish_reason was sent
} ServeChoice;

// Echo's prompt log-probabilities (engine thread, before the choices run).
typedef struct {
    float* lp;        // (n) log p of prompt token i given tokens < i; lp[0] unused
    int32_t* top;     // (n * k) the k most likely tokens at each position (-1: none)
    float* top_lp;    // (n * k)
} ServeEcho;

typedef struct ServeJob {
    // the request (serve_req.c; read-only once queued)
    ServeKind kind;
    int stream, include_usage;
    int n_prompts;
    int32_t** prompts;  // (n_prompts) token ids
    int* n_prompt;      // (n_prompts)
    int n;              // samples per prompt
    int max_tokens;     // 0 only with echo
    etx_policy policy;
    uint64_t key;       // the random stream (etx_request.key)
    int logprobs;       // -1: none; else the top alternatives per token (0..ETX_TRACE_TOP)
    int echo;
    int trace;          // per-token trace records in the response
    int ignore_eos;
    char* stops[SERVE_MAX_STOPS];
    int n_stops;
    char id[48];        // "cmpl-..." / "chatcmpl-..."
    long long created;  // Unix seconds
    // published state (Server.mu)
    ServeChoice* choices; // (n_choices) prompt-major: choice = prompt * n + sample
    int n_choices;
    ServeEcho* echo_lp;   // (n_prompts) when echo and logprobs, else NULL
    int n_done;           // choices finished
    int failed;           // an engine error: every choice "error"
    int cancelled;        // the client went away: the engine thread cancels the job
    int http_ref, engine_ref; // the sides still holding the job
    pthread_cond_t cv;    // signalled whenever the job's state changes
    struct ServeJob* next; // queue / running list link
} ServeJob;

typedef struct {
    ServeConfig cfg;
    const etx_model* m;
    etx_model_info info;
    etx_engine* e;
    pthread_mutex_t mu;
    pthread_cond_t work;   // the engine thread waits here for jobs
    ServeJob* queue_head;  // jobs waiting for the engine thread
    ServeJob* queue_tail;
    int pending;           // engine requests admitted and not finished (queue included)
    int submitted;         // choices submitted to the engine and not yet released
    int queued;            // choices in the queue, not yet submitted
    int eng_running;       // the engine's requests_running / requests_waiting and
    int eng_waiting;       // kv_blocks_used after the last step (for /health)
    int kv_blocks_used;
    int jobs;              // jobs alive (either side holds them)
    int draining;          // SIGINT/SIGTERM: new requests refused (503)
    int stop;              // the engine thread exits once idle
    int abort;             // the drain timed out: every job is cancelled
    uint64_t next_key;     // the stream of a request without "seed"
    long long next_id;
} Server;

// serve_req.c: parses body[0..len) of a request to `kind` into *out (a fresh job, not yet
// queued). On a refusal returns the HTTP status (400, 404) and fills msg and param (the
// field, "" when none); 0 on success.
int serve_parse_request(const Server* s, ServeKind kind, const char* body, size_t len, ServeJob** out, char* msg,
                        size_t msg_cap, char* param, size_t param_cap);
void serve_job_free(ServeJob* j);

// serve_engine.c
void* serve_engine_main(void* server);
// Queues a job (Server.mu held by the caller): 0, or 429 when the queue is full, 503
// when draining.
int serve_enqueue_locked(Server* s, ServeJob* j);
// The HTTP side lets go of j (Server.mu held): a job not finished is cancelled.
void serve_http_release_locked(Server* s, ServeJob* j);

// serve_resp.c (Server.mu held: they read the job's published state)
// The whole response of a finished job (malloc'ed JSON).
char* serve_response_json(const Server* s, const ServeJob* j);
// Server-sent events for what is new in j since the last call (appended to *buf, a
// malloc'ed string, *len bytes): text deltas that cannot be the start of a stop string,
// the finishing chunk of each choice, the usage chunk, "data: [DONE]". Returns 1 once
// everything, [DONE] included, has been produced.
int serve_stream_events(const Server* s, ServeJob* j, char** buf, size_t* len);
// {"error": {"message", "type", "param", "code"}} (malloc'ed).
char* serve_error_json(int status, const char* msg, const char* param);

// serve_http.c: runs the server until SIGINT/SIGTERM and the drain; returns the exit code.
int serve_run(Server* s);

#endif // ETX_SERVE_H
