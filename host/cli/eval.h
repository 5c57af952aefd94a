/*
 * eval.h — pieces of `etx eval` and `etx sweep` (internal to the command line): the ranks
 * of a data-parallel run (eval_par.c), the resume scan of an output file (eval_io.c),
 * and eval.c's data reader, request runner and rank merge, which sweep.c shares.
 */
#ifndef ETX_CLI_EVAL_H
#define ETX_CLI_EVAL_H

#include <stddef.h>

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

// The ids (canonical keys, eval.c's id_key) of an existing output file, for resume.
// A last line without its newline or that is not JSON is a truncated write: it is left
// out and *good_len is the length to keep (the caller truncates the file there);
// *dropped is set. Missing file: no ids, *good_len 0. Returns 0, or -1 (errno) when the
// file exists but cannot be read.
typedef struct {
    char** keys;
    int n;
    size_t good_len;
    int dropped;      // 1 when a truncated last line was dropped
    int bad_lines;    // unparseable lines before the last (kept, ignored)
} EvalDone;
// A line with a "combo" number (a sweep's) is keyed eval_combo_key(combo, id key).
int eval_done_read(const char* path, EvalDone* d);
int eval_done_has(const EvalDone* d, const char* key);
void eval_done_free(EvalDone* d);
// "c<combo>|<key>", malloc'ed: a sweep job's resume key.
char* eval_combo_key(int combo, const char* key);


// ----------------------------------------------------------------------------
// the shared pieces of eval.c, used by `etx eval` and `etx sweep` (sweep.c)

#include <cJSON.h>
#include <stdio.h>

#include "etx/etx.h"

typedef struct {
    const char* command; // "eval" | "sweep", for messages
    const char* model;
    const char* data;
    const char* out;
    const char* task;
    const char* on_bad;
    const char* device;
    int limit, batch, max_tokens, threads, ctx, progress;
    etx_policy policy;
} EvalArgs;

typedef struct {
    int line;        // 1-based line in the data file
    cJSON* root;     // the parsed line (owns the strings below)
    const cJSON* id;
    char* key;       // canonical id ("s:abc", "n:12")
    const char* reference; // or NULL
    int32_t* ids;    // prompt tokens
    int n_ids;
} Item;

typedef struct {
    double tokens, scored, strict, flexible, done;
    double branches[ETX_BRANCH_COUNT];
} Totals;
#define TOTALS_N (5 + ETX_BRANCH_COUNT)

// One request to run: a data line (index in items) under a policy (NULL: the args'),
// for combination `combo` of a sweep (-1 for eval: no "combo" field in its line).
// Its random key is the data line's index (line - 1), whatever the policy or batch.
typedef struct {
    int item;
    int combo;
    const etx_policy* policy;
} EvalJob;

typedef struct {
    char** lines;   // (n_mine) result line of each of this rank's requests
    int n_written;  // lines already written (one process: written as a prefix completes)
    FILE* f;        // the output file (one process), else NULL
} Writer;

// Adds the counts of the result lines in path[0..good_len) to t[combo] (t[0] for lines
// without "combo"): tokens, branches, scores, done. Returns 0, or -1 when unreadable.
int eval_done_totals(const char* path, size_t good_len, int n_combos, Totals* t);
// Reads the data file: the first a->limit good lines (0: all). Bad lines are reported
// (rank 0) and counted in *n_bad. Returns 0, or -1 when the file cannot be read.
int eval_read_items(const EvalArgs* a, const EvalPar* par, const etx_model* m, int ctx, Item** out, int* n_out,
                    int* n_bad);
void eval_free_items(Item* items, int n);
// Runs jobs[0..n) through the engine, at most a->batch at once, filling w->lines[j]
// (the result line of job j) and writing each finished prefix to w->f when it is set.
// t[max(combo, 0)] gets each result's counts; busy (or NULL) gets, per combination, the
// seconds of engine steps attributed to it (each step's time split equally over the
// requests in it).
int eval_run_jobs(const EvalArgs* a, const EvalPar* par, const etx_model* m, etx_engine* e, const Item* items,
                  const EvalJob* jobs, int n, Writer* w, Totals* t, double* busy);
// Opens the output (one process) after done's last good line, runs this rank's jobs
// (n_mine of them), and under MPI has rank 0 write every rank's lines in job order
// (n_jobs in all). Errors are reported; returns 0 when every rank succeeded.
int eval_run_and_write(const EvalArgs* a, const EvalPar* par, const etx_model* m, etx_engine* e, const Item* items,
                       const EvalJob* jobs, int n_mine, int n_jobs, const EvalDone* done, Totals* t, double* busy);
// Opens an output for appending after done's last good line ("wb" when there is none).
FILE* eval_open_output(const char* path, const EvalDone* done);
// Rank 0 writes the gathered lines of every rank in job order (job j ran on rank j % size).
int eval_merge_write(const EvalArgs* a, const EvalPar* par, const EvalDone* done, const char* all, const size_t* lens,
                     int n_jobs);

#endif // ETX_CLI_EVAL_H
