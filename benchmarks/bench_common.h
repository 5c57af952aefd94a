/*
 * bench_common.h — what the benchmark programs share: a monotonic clock and a double
 * comparator for medians. (Batched decode against the hardware floor is `etx bench`,
 * host/cli/bench.c.)
 */
#ifndef ETX_BENCH_COMMON_H
#define ETX_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "etx/etx.h"

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

#endif // ETX_BENCH_COMMON_H
