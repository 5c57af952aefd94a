/*
 * eval_par.c — data-parallel `etx eval`: the rank and size of this process and the few
 * collectives the merge needs, over MPI when etx is built with it (ETX_HAVE_MPI) and
 * launched by mpirun; a single process otherwise, with the same calls as no-ops.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

#ifdef ETX_HAVE_MPI
#include <mpi.h>
#endif

static int launched_by_mpi(void) {
    const char* vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (int i = 0; i < 3; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

void eval_par_init(EvalPar* p, int* argc, char*** argv) {
    p->rank = 0;
    p->size = 1;
    p->mpi = 0;
#ifdef ETX_HAVE_MPI
    if (!launched_by_mpi()) return;
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &p->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &p->size);
    p->mpi = 1;
#else
    (void)argc, (void)argv, (void)launched_by_mpi;
#endif
}

void eval_par_finalize(EvalPar* p) {
#ifdef ETX_HAVE_MPI
    if (p->mpi) MPI_Finalize();
#endif
    p->mpi = 0;
}

int eval_par_all_ok(const EvalPar* p, int ok) {
    int all = ok != 0;
#ifdef ETX_HAVE_MPI
    if (p->mpi) MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
#endif
    return all;
}

void eval_par_sum(const EvalPar* p, double* v, int n) {
#ifdef ETX_HAVE_MPI
    if (p->mpi) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)p, (void)v, (void)n;
#endif
}

int eval_par_gather(const EvalPar* p, const char* buf, size_t len, char** all, size_t* lens) {
    *all = NULL;
    if (!p->mpi) {
        *all = malloc(len + 1);
        if (!*all) return -1;
        memcpy(*all, buf, len);
        lens[0] = len;
        return 0;
    }
#ifdef ETX_HAVE_MPI
    int ok = len <= INT_MAX;
    if (!eval_par_all_ok(p, ok)) return -1;
    int n = (int)len;
    int* counts = p->rank == 0 ? calloc((size_t)p->size, sizeof(int)) : NULL;
    int* displs = p->rank == 0 ? calloc((size_t)p->size, sizeof(int)) : NULL;
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    long total = 0;
    if (p->rank == 0) {
        for (int r = 0; r < p->size; r++) displs[r] = (int)total, total += counts[r], lens[r] = (size_t)counts[r];
        *all = malloc((size_t)total + 1);
    }
    MPI_Gatherv(buf, n, MPI_CHAR, *all, counts, displs, MPI_CHAR, 0, MPI_COMM_WORLD);
    free(counts);
    free(displs);
    return 0;
#else
    return -1;
#endif
}
