/*
 * eval.h — pieces of `etx eval` (internal to the command line): the ranks of a
 * data-parallel run (eval_par.c) and the resume scan of an output file (eval_io.c).
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
int eval_done_read(const char* path, EvalDone* d);
int eval_done_has(const EvalDone* d, const char* key);
void eval_done_free(EvalDone* d);

#endif // ETX_CLI_EVAL_H
