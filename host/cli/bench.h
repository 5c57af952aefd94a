/*
 * bench.h — the pieces of `etx bench` (internal to the command line): what a bench
 * measures, from its options (bench.c parses them), and the timing: one engine run and
 * the rows of one batch size (bench_time.c). The method and every formula are in
 * bench.c's header comment.
 */
#ifndef ETX_CLI_BENCH_H
#define ETX_CLI_BENCH_H

#include <stdio.h>

#include "etx/etx.h"

#define BENCH_MAX_BATCHES 16
#define BENCH_MAX_POLICIES 3
#define BENCH_MAX_REPEATS 100

// The options of one `etx bench`, checked.
typedef struct {
    const char* model_path;
    int L, G;            // prompt and generated tokens per request
    int repeats, warmup; // timed runs per cell (the median reported), untimed runs first
    int threads;         // --threads (0: all cores)
    int quick_probe;     // measure the hardware on small sizes
    etx_engine_options eo; // device, threads, steps per sync
    etx_policy_kind kinds[BENCH_MAX_POLICIES];
    int n_kinds;
    int batches[BENCH_MAX_BATCHES];
    int n_batches;       // 0 until the device's default is chosen
    const char* json_path; // NULL, "-" (stdout) or FILE
    FILE* json;          // FILE.tmp, opened before any work, renamed over FILE at the end
    char json_tmp[4096];
    int plan;            // --plan: print the CUDA cost model's prediction, run nothing
    const char* card;    // --card (plan): a datasheet card, default h100
    const char* shape;   // --shape (plan): a named model shape instead of --model
    int gpus[64];        // --gpus: the devices (CLI_MAX_GPUS), one engine each; else eo.gpu
    int n_gpus;
    const char* gpus_arg; // --gpus as given (NULL: one device)
} BenchConfig;

// What every run of one bench shares.
typedef struct {
    const etx_model* m;
    etx_engine_options eo;
    int L, G, vocab;
    const int* gpus;     // (n_gpus) --gpus: the devices, one engine each, all timed together
    int n_gpus;          // 1 without --gpus
} BenchSetup;

// One run of B requests.
typedef struct {
    double t_first, t_end;  // seconds from submit to every first token / every last token
    long long peak_rss;     // bytes
    etx_engine_stats stats;
} RunResult;

// One row of the report: a batch size under a policy.
typedef struct {
    int batch;
    etx_policy_kind kind;
    double prefill_tok_s, decode_tok_s, ms_per_token;
    long long peak_rss, device_bytes;
    int n_gpus;          // devices it ran on at once (--gpus), each with `batch` requests; the
                         // tok/s are their sum, ms/token and the floors per device
    double policy_share; // NAN: no greedy baseline
    double decode_floor_ms, decode_floor_fraction, prefill_flops, prefill_peak_fraction;
    etx_engine_stats stats;
} BenchRow;

// One run of B requests with policy kind (bench.c's header comment); with n_gpus > 1, B
// requests on each device at once, an engine per device in a thread of its own, started
// together after every engine is created: t_first and t_end are the slowest device's.
etx_status bench_run(const BenchSetup* bs, int B, etx_policy_kind kind, RunResult* r);

// The rows of batch size B, one per policy of c (rows[0..c->n_kinds)): c->warmup untimed
// and c->repeats timed repeats, the policies alternating within each repeat so drift hits
// them alike; medians, floors and policy shares against the hardware figures hw.
etx_status bench_time_batch(const BenchSetup* bs, const BenchConfig* c, const etx_model_info* mi,
                            const etx_hw_limits* hw, int B, BenchRow* rows);

// `etx bench --plan` (bench_plan.c): the cost model's table for c; the exit code.
int bench_plan(const BenchConfig* c);

#endif // ETX_CLI_BENCH_H
