/*
 * cpu_backend.h — the CPU backend's parts beyond its operations table (etx_cpu_backend(),
 * engine/backend.h): the hardware probe it measures with (cpu_probe.c).
 */
#ifndef ETX_CPU_BACKEND_H
#define ETX_CPU_BACKEND_H

#include "etx/etx.h"

// The CPU's memory read bandwidth and the prefill GEMM's rate on n_threads threads (0 =
// every core), measured now; quick: small sizes (tests). BackendOps.measure.
etx_status cpu_measure(int n_threads, int quick, etx_hw_limits* out);

#endif // ETX_CPU_BACKEND_H
