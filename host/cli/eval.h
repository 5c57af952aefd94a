/*
 * eval.h — the pieces under `etx eval` and `etx sweep` (internal to the command line):
 * the ranks of a data-parallel run (eval_par.c), the resume scan of an output file
 * (eval_io.c), the options both commands share and the data file's requests
 * (eval_items.c). The batch runner that puts them together is batch_run.h.
 */
#ifndef ETX_CLI_EVAL_H
#define ETX_CLI_EVAL_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h" // CliEngineArgs (EVAL_ENGINE_ARGS)
#include "etx/etx.h"

// ----------------------------------------------------------------------------
// ranks (eval_par.c)

// The processes of one run: MPI ranks under mpirun (or srun with PMIx), else one.
typedef struct {
    int rank;
    int size;
    int mpi; // 1 when MPI_Init was called
} EvalPar;

// Calls MPI_Init only when launched by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMIX_RANK or
// PMI_RANK set) and etx was built with MPI; otherwise rank 0 of 1.
void eval_par_init(EvalPar* p, int* argc, char*** argv);
void eval_par_finalize(EvalPar* p);
// 1 when ok is nonzero on every rank.
int eval_par_all_ok(const EvalPar* p, int ok);
// Sums v[0..n) over the ranks (every rank gets the sums).
void eval_par_sum(const EvalPar* p, double* v, int n);
// Gathers each rank's buffer on rank 0: *all (malloc'ed, rank after rank) and lens[size]
// (rank 0 only). Returns 0, or -1 when the buffers do not fit an MPI count.
int eval_par_gather(const EvalPar* p, const char* buf, size_t len, char** all, size_t* lens);

// ----------------------------------------------------------------------------
// resume (eval_io.c)

// The ids (canonical keys, eval_id_key) of an existing output file, for resume.
// A last line without its newline that starts as a result line does ("{\"id\":", a
// sweep's "{\"combo\":") is a truncated write: it is left out, *dropped is set and
// good_len is the length to keep (the caller truncates the file there). Any other line
// that is not a result line of this run's kind makes the file not a result file.
// Missing file: no ids, good_len 0. n_combos: 0 for eval's lines, else a sweep's grid
// size (each line's "combo" must be below it).
// Returns 0; -1 (errno) when the file exists but cannot be read; -2 when it is not a
// result file (why says which line and why).
typedef struct {
    char** keys;      // (n) sorted
    int n;
    size_t good_len;
    int dropped;      // 1 when a truncated last line was dropped
    char why[160];    // with -2: "line 3 is not a result line of etx eval: no \"completion\" string"
} EvalDone;
// A sweep's line is keyed eval_combo_key(combo, id key).
int eval_done_read(const char* path, int n_combos, EvalDone* d);
int eval_done_has(const EvalDone* d, const char* key);
void eval_done_free(EvalDone* d);
// "c<combo>|<key>", malloc'ed: a sweep job's resume key.
char* eval_combo_key(int combo, const char* key);

// The counts of result lines, per combination of a sweep (one for eval).
// tokens: generated, every sample of a request counted; vote_ok: with --samples, the
// requests each vote method gets right over the same samples; pass1 / passn: the sum over
// scored requests of the fraction of their samples that are right (flexible) and of
// whether any is (with --samples; a single sample's are its score); prefill /
// prefill_saved: the engine's prompt positions computed and shared (etx_engine_stats;
// counted in combination 0 of a sweep, whose combinations share one engine);
// kv_peak_positions: the KV cache positions held at the engine's peak (kv_blocks_peak x
// kv_block_size), summed over the run's engines (each its own pool), combination 0 too.
typedef struct {
    double tokens, scored, strict, flexible, done;
    double pass1, passn, prefill, prefill_saved, kv_peak_positions;
    double vote_ok[3];    // with --samples: requests each vote method (VoteMethod order) got right (flexible)
    double branches[ETX_BRANCH_COUNT];
} Totals;
#define TOTALS_N (13 + ETX_BRANCH_COUNT) // doubles in a Totals, for eval_par_sum
_Static_assert(sizeof(Totals) == TOTALS_N * sizeof(double), "Totals is summed as a flat array of doubles");

// Adds the counts of the result lines in path[0..good_len) to t[combo] (t[0] for lines
// without "combo"): tokens, branches, scores, done. Returns 0, or -1 when unreadable.
int eval_done_totals(const char* path, size_t good_len, int n_combos, Totals* t);

// ----------------------------------------------------------------------------
// options and requests (eval_items.c)

// The options `etx eval` and `etx sweep` share (sweep's out is its completions file).
typedef struct {
    const char* command; // "eval" | "sweep", for messages
    const char* model;
    const char* data;
    const char* out;
    const char* task;    // NULL or "gsm8k"
    const char* on_bad;  // "skip" | "fail"
    const char* device;
    int limit, batch, max_tokens, threads, ctx, progress;
    int no_stop_strings; // --no-stop-strings: --task gsm8k scores, but the completion runs to EOS
                         // or --max-tokens (chat answers have blank lines inside them)
    int kv_blocks, kv_block_size; // --kv-blocks, --kv-block-size (0: the engine's default)
    int no_prefix_cache;          // --no-prefix-cache
    const char* gpu;              // --gpu N (NULL: by node-local rank)
    int share_gpus;               // --share-gpus
    const char* gpus;             // --gpus LIST|all (NULL: one device)
    int tp;                       // --tp N (0: one device)
    // N samples per request (batch_samples.c): --samples N (1: one plain request), the vote
    // over their answers, DeepConf's kept fraction, the group window and tail length of the
    // trace confidence, and which statistic of it weighs a sample
    int samples;
    const char* vote;      // majority | confidence | deepconf (default majority)
    float eta;             // deepconf: the most confident fraction kept (default 0.1)
    int conf_window, conf_tail; // default 64 and 64 tokens
    const char* conf_stat; // mean | lowest_group | bottom10 | tail (default bottom10)
    int online;            // DeepConf online: warm-up samples per request (0: off)
    etx_branching branching; // --branch B --branch-entropy H --branch-varentropy V --lookahead M --branch-budget T
    int trace;               // --trace: each result (each sample) carries its per-token records
} EvalArgs;

// The options of N samples per request, for eval and sweep (a: EvalArgs*).
#define EVAL_SAMPLE_OPTS(a)                                                                                        \
    {"--samples", NULL, OPT_INT, &(a)->samples, "N",                                                              \
     "samples per request, 1..4096: the prompt prefilled once and forked N ways, the answers voted (default 1)",  \
     0},                                                                                                           \
    {"--vote", NULL, OPT_STRING, &(a)->vote, "METHOD",                                                           \
     "majority | confidence (weighted by trace confidence) | deepconf (the --eta most confident, weighted); "     \
     "needs --task gsm8k (default majority)", 0},                                                                 \
    {"--eta", NULL, OPT_FLOAT, &(a)->eta, "F", "deepconf: fraction of the samples kept, in (0, 1] (default 0.1)", \
     0},                                                                                                           \
    {"--conf-window", NULL, OPT_INT, &(a)->conf_window, "N",                                                     \
     "tokens in a group of the trace confidence's sliding window (default 64)", 0},                               \
    {"--conf-stat", NULL, OPT_STRING, &(a)->conf_stat, "NAME",                                                   \
     "the trace confidence that weighs a sample: mean | lowest_group | bottom10 | tail (default bottom10)", 0},    \
    {"--online", NULL, OPT_INT, &(a)->online, "N",                                                                \
     "DeepConf online (--vote deepconf): N warm-up samples set a threshold at the (1 - eta) percentile of their "  \
     "lowest group confidence; the other samples stop when their group confidence falls below it (default 0: "  \
     "off)", 0},                                                                                                   \
    {"--branch", NULL, OPT_INT, &(a)->branching.n_branches, "B",                                                   \
     "entropy-triggered branching: fork into B (2..4) branches on the most likely tokens where H and V pass the "  \
     "thresholds, keep the best mean log-probability after the lookahead (default 0: off)", 0},                    \
    {"--branch-entropy", NULL, OPT_FLOAT, &(a)->branching.entropy, "H", "fork when the entropy exceeds H bits (default 2.5)", 0}, \
    {"--branch-varentropy", NULL, OPT_FLOAT, &(a)->branching.varentropy, "V",                                     \
     "... and the varentropy exceeds V bits^2 (default 0)", 0},                                                    \
    {"--lookahead", NULL, OPT_INT, &(a)->branching.lookahead, "M", "tokens each branch runs before scoring (default 8)", 0}, \
    {"--branch-budget", NULL, OPT_INT, &(a)->branching.max_branch_tokens, "T",                                    \
     "tokens all of a request's branches may take (default 256)", 0},                                              \
    {"--trace", NULL, OPT_FLAG, &(a)->trace, NULL,                                                                 \
     "each result line (each sample) carries its tokens' signals and actions as columns, \"trace\" "              \
     "(scripts/train_policy.py reads them)", 0}

// The TraceConfidence statistic named by --conf-stat: 0 mean, 1 lowest_group, 2 bottom10,
// 3 tail; -1 for an unknown name (eval_items.c).
int eval_conf_stat(const char* name);

// Defaults of the sample options (before parsing).
#define EVAL_SAMPLE_DEFAULTS .samples = 1, .vote = "majority", .eta = 0.1f, .conf_window = 64, .conf_tail = 64, \
                             .conf_stat = "bottom10",                                                          \
                             .branching = {.entropy = 2.5f, .lookahead = 8, .max_branch_tokens = 256}

// The engine options of a (the CliEngineArgs of cli.h).
#define EVAL_ENGINE_ARGS(a)                                                                                      \
    ((CliEngineArgs){.device = (a)->device, .threads = (a)->threads, .ctx = (a)->ctx, .batch = (a)->batch,    \
                     .kv_blocks = (a)->kv_blocks, .kv_block_size = (a)->kv_block_size,                        \
                     .no_prefix_cache = (a)->no_prefix_cache, .gpu = (a)->gpu, .share_gpus = (a)->share_gpus,   \
                     .gpus = (a)->gpus, .tp = (a)->tp})

// Checks --task, --on-bad-line, --batch, --max-tokens, --limit, the engine options
// (cli_engine_options: device, threads, context, KV pool) and that --data is a regular
// file, all before the model is loaded: 0, or -1 after printing "etx COMMAND: ..." (exit 2).
int eval_args_check(const EvalArgs* a);

// One good line of the data file.
typedef struct {
    int line;        // 1-based line in the data file
    cJSON* root;     // the parsed line (owns the strings below)
    const cJSON* id;
    char* key;       // canonical id ("s:abc", "n:12")
    uint64_t rkey;   // the request's random key: eval_request_key(key)
    const char* reference; // or NULL
    int32_t* ids;    // prompt tokens
    int n_ids;
} Item;

// "s:<string>" or "n:<integer>" (malloc'ed); NULL when id is neither a string nor an
// integer.
char* eval_id_key(const cJSON* id);
// The random key of the request with canonical id key: a 64-bit hash of it (FNV-1a,
// then splitmix64's finaliser), so it follows the id, not the line the id is on.
uint64_t eval_request_key(const char* key);
// Reads the data file: the first a->limit good lines (0: all), each prompt shorter than
// ctx tokens. Bad lines are reported (rank 0) and counted in *n_bad. Returns 0, or -1
// when the file cannot be read.
int eval_read_items(const EvalArgs* a, const EvalPar* par, const etx_model* m, int ctx, Item** out, int* n_out,
                    int* n_bad);
void eval_free_items(Item* items, int n);

// ----------------------------------------------------------------------------
// the output's guards (eval_guard.c; the rules are in its header comment)

// What the output of a run is, decided before anything is read.
typedef struct {
    int stream;  // 1: --out exists and is not a regular file (a pipe, /dev/stdout,
                 // /dev/null): written from its start, never read, locked or fingerprinted
    int lock_fd; // the output, open and under an exclusive flock for the run (-1: none)
    int created; // 1: the output did not exist before this run
    char* path;  // the output (when locked)
    char* run_path; // the fingerprint this run wrote over no results, or NULL
} EvalOutGuard;

// Refuses an --out that is the data file or a directory; detects a stream; with lock,
// creates a regular output when missing and takes its lock (another run holding it is
// refused). Returns 0, or the exit code after printing: 2 refused, 1 the output cannot
// be created. Release with eval_guard_close; refused = 1
// when the run did not go ahead: an output it created is removed while still empty,
// with the fingerprint it wrote.
int eval_guard_open(EvalOutGuard* g, const EvalArgs* a, int lock);
void eval_guard_close(EvalOutGuard* g, int refused);

// The fingerprint of a run (a JSON object; cJSON_Delete it): the model's and the data
// file's identity, the task, --max-tokens, --ctx, the random-key scheme and every
// combination's policy.
cJSON* eval_fingerprint(const EvalArgs* a, const char* model_path, const etx_policy* combos, int n_combos);
// With n_results > 0 and a fingerprint at run_path: 0 when it equals fp, else 2 after
// naming every field that changed (a resume of another run). Otherwise fp is written to
// run_path (a warning when results exist without one) and, over no results, recorded in
// g as this run's own. 1 on an I/O error.
int eval_fingerprint_check(EvalOutGuard* g, const char* command, const char* out, const char* run_path,
                           const cJSON* fp, int n_results);
// Writes text to path through "path.tmp" and a rename. 0, or -1 (errno).
int eval_write_atomic(const char* path, const char* text, size_t len);

#endif // ETX_CLI_EVAL_H
