/*
 * batch_run.h — the one batch runner behind `etx eval` and `etx sweep` (internal to the
 * command line). A run is a list of policy combinations × every good line of a JSONL
 * data file, through one engine, at most --batch requests at once; `etx eval` is the run
 * of one combination, `etx sweep` of a grid's.
 *
 *   batch_open:    the device option, the output's guards (eval_guard.c: not the data
 *                  file, locked, or a stream), the resume scan of the output (a torn
 *                  last line is reported, cut off and rerun; a file of other lines is
 *                  refused), the run's fingerprint (a resume of another run is
 *                  refused), the model, the context (--ctx or
 *                  etx_default_context), the data file (bad lines reported; with
 *                  --on-bad-line fail nothing runs), and the pending jobs
 *                  (combination-major, job j on rank j % size);
 *   batch_execute: the engine, this rank's jobs, the output written in job order
 *                  (appended as each prefix completes; under MPI rank 0 writes the
 *                  merged lines of every rank), the totals summed over the ranks;
 *   batch_close:   frees what batch_open made, whatever happened.
 *
 * A job's random key is its request's id hash (eval_request_key), whatever its line, combination, batch or rank,
 * so a combination's results equal `etx eval` with that policy and no result depends on
 * the batch size or the number of ranks.
 */
#ifndef ETX_CLI_BATCH_RUN_H
#define ETX_CLI_BATCH_RUN_H

#include "eval.h"

// What to run: every good data line under each of n_combos policies.
typedef struct {
    const etx_policy* combos; // (n_combos) the policy of each combination
    int n_combos;
    int tagged;               // 1: a sweep's lines: "combo": c first, resume keys name the
                              // combination; 0: eval's lines (n_combos must be 1)
    const char* run_path;     // where the run's fingerprint lives (eval: OUT.run.json,
                              // sweep: DIR/run.json); NULL: none (etx calibrate)
    // Called with each finished sample's trace records (up to a stop string), in the order
    // the jobs finish, before the request is released: `etx calibrate` collects the signals
    // through it. NULL: not called.
    void (*on_trace)(void* ctx, const etx_trace_record* recs, int n_recs);
    void* on_trace_ctx;
} BatchPlan;

// One request to run: a data line under a combination.
typedef struct {
    int item;  // index in the items
    int combo; // the combination; -1 for an untagged (eval) run
    const etx_policy* policy;
    int32_t pause; // the pause token the engine resolves for it (cli_pause_token), or -1
} BatchJob;

// A run between batch_open and batch_close.
typedef struct {
    const EvalArgs* a;
    const EvalPar* par;
    BatchPlan plan;
    etx_engine_options eo;
    EvalOutGuard guard; // a->out's lock, or that it is a stream
    EvalDone done;   // the resume scan of a->out
    etx_model* m;
    Item* items;     // (n_items) the good data lines
    int n_items;
    int n_bad;       // bad data lines skipped
    long n_total;    // jobs in all: n_combos * n_items
    int n_skipped;   // jobs already in a->out
    int n_pending;   // jobs left to run, all ranks
    BatchJob* mine;  // (n_mine) this rank's share of them, in job order
    int n_mine;
    int opened;      // 1 when batch_open succeeded (the run goes ahead)
} BatchRun;

// Everything before the engine (see the header comment). Returns 0, or the exit code
// after reporting (1: an error, 2: refused: the device name, an output that is the data
// file, locked by another run, not a result file or another run's, --on-bad-line fail).
// Call batch_close either way.
int batch_open(BatchRun* br, const EvalArgs* a, const EvalPar* par, const BatchPlan* plan);

// Creates the engine and runs this rank's jobs, writing a->out. Then, per combination
// c: t[c] += the counts of its new results; rate[c] (when rate is not NULL) = t[c].tokens
// over the engine time attributed to c on this rank (each step's time split equally
// over the requests in it); t and rate are then summed over the ranks. *secs: the wall
// time of the run. Returns 0, or 1 after reporting.
int batch_execute(BatchRun* br, Totals* t, double* rate, double* secs);

void batch_close(BatchRun* br);

// ----------------------------------------------------------------------------
// one request in flight (batch_request.c, for batch_run.c)

typedef struct {
    int item;      // index in the jobs, -1 = free slot
    int req;       // engine request id
    char* text;    // decoded bytes so far
    size_t len, cap;
    int n_seen;    // tokens already decoded
    int n_counted; // tokens already counted for the progress bar
    long stop_at;  // offset of the first stop string, -1 = none
    int stop_tokens; // tokens up to the one that completed the first stop string (0 = none)
    int n_forks;     // branching, once finished: forks, and tokens of the branches not kept
    int dropped_tokens;
    const etx_branch_event* forks; // (n_forks) the engine's, borrowed until the request is released
} Slot;

// Adds o's "branching" object: {"forks", "dropped_tokens", "tree"} (batch_request.c).
void batch_add_branching(cJSON* o, const Slot* s);
// Decodes tokens [s->n_seen, upto) of toks into s->text; stops: look for --task gsm8k's
// stop strings after each token.
void batch_slot_decode(Slot* s, const etx_model* m, const int32_t* toks, int upto, int stops);
// The same with any stop strings (stops[0..n_stops), empty ones ignored): `etx serve`'s
// "stop" field.
void slot_decode_stops(Slot* s, const etx_model* m, const int32_t* toks, int upto, const char* const* stops,
                       int n_stops);
// The output line of a finished request (with '\n'), malloc'ed; *t gets its counts.
char* batch_result_line(const EvalArgs* a, const Item* it, const BatchJob* jb, const Slot* s,
                        const etx_request_state* rs, const etx_trace_record* recs, int n_recs, Totals* t);

// What a finished request's result says, shared by the one-request and sample-group lines.
typedef struct {
    const char* finish;  // "stop" | "length" | "error" | "stop_string" | "low_confidence"
    int n_tokens;        // tokens up to the one that completed a stop string
    int n_recs;          // trace records of those tokens
    char* completion;    // valid UTF-8, cut before a stop string (malloc'ed; may hold NUL bytes)
    size_t completion_len;
} SampleView;
void batch_sample_view(const Slot* s, const etx_request_state* rs, int n_recs, SampleView* v);
// "branches": {name: count} of per[] (zero counts left out), added into t->branches.
void batch_add_branches(cJSON* o, const int* per, Totals* t);
// --trace: the records as one JSON object of columns (token, branch, action,
// action_logprob, after_pause, logprob, the six signals, confidence, temperature,
// top_logprobs; a value that is not finite as null), malloc'ed. after_pause[i]: 1 when
// the token before record i (prev0, the prompt's last, for the first) is pause (-1: none).
char* batch_trace_json(const etx_trace_record* recs, int n, int32_t prev0, int32_t pause);
// "etx CMD: id ID failed: ERROR" on stderr.
void batch_report_error(const EvalArgs* a, const Item* it, const char* error);
// o printed on one line with '\n' (malloc'ed); o is deleted.
char* batch_line_of(cJSON* o);
char* batch_utf8_clean(const char* text, size_t n, size_t* len);
char* batch_json_quote(const char* s, size_t n);

// ----------------------------------------------------------------------------
// a sample group's result (batch_samples.c)

// The result line of request it's n samples (--samples n, all finished): s, rs, recs and
// n_recs per sample, in sample order. Each sample's completion, tokens, finish, answers
// and trace confidence; the vote (a->vote over the flexible and the strict answers, each
// sample weighed by a->conf_stat of its trace confidence); the top-level completion is
// the flexible vote's winning sample's (sample 0's when none answered), "tokens" the sum
// over the samples, "score" the voted answers' and "pass" the samples' pass@1 and pass@n.
// threshold: --online's stop threshold (NAN without): samples that stopped on it, and
// warm-up samples whose lowest group confidence is below it, do not vote.
char* batch_group_line(const EvalArgs* a, const Item* it, const BatchJob* jb, const Slot* s,
                       const etx_request_state* rs, const etx_trace_record* const* recs, const int* n_recs, int n,
                       double threshold, Totals* t);

#endif // ETX_CLI_BATCH_RUN_H
