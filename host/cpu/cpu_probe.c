/*
 * cpu_probe.c — the CPU backend's measure (etx_measure_hardware): the memory bandwidth
 * and GEMM rate the CPU reaches, measured in the calling process so a benchmark can state
 * its result as a fraction of the hardware's floor (etx bench).
 *
 *   bandwidth: every thread sums its slice of a 512 MiB buffer (quick: 32 MiB) of 64-bit
 *              words with eight independent accumulators (reads only, as decode reads
 *              its weights); bytes read over the time, median of 5 passes after a warm-up
 *              pass that also faults the pages in. The buffer is 16x this machine's L3
 *              (32 MiB), so the figure is DRAM's.
 *   GEMM:      the prefill's own product (cpu_ops.c matmul: OpenBLAS sgemm on per-thread
 *              slices of the output), x (512, 2048) times W^T (2048, 2048) (quick: 64,
 *              256, 256), 2 n in out FLOPs, median of 5 after a warm-up.
 */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu/cpu_ops.h"
#include "cpu/cpu_backend.h"

#define PROBE_REPS 5

// Sum of n words read by all threads; returned so the reads cannot be dropped.
static uint64_t read_pass(const uint64_t* p, size_t n) {
    uint64_t total = 0;
    #pragma omp parallel reduction(+ : total)
    {
        const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        const size_t per = (n / nt + 7) / 8 * 8, i0 = t * per, i1 = i0 + per < n ? i0 + per : n;
        uint64_t a[8] = {0};
        for (size_t i = i0; i + 8 <= i1; i += 8)
            for (int k = 0; k < 8; k++) a[k] += p[i + k];
        for (int k = 0; k < 8; k++) total += a[k];
    }
    return total;
}

static etx_status cpu_bandwidth(int quick, double* bandwidth) {
    const size_t bytes = quick ? (size_t)32 << 20 : (size_t)512 << 20, n = bytes / sizeof(uint64_t);
    uint64_t* p = malloc(bytes);
    if (!p) return etx_error(ETX_ERR_NOMEM, "measuring bandwidth: no room for a %zu MiB buffer", bytes >> 20);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) p[i] = i; // first touch by the threads that read it
    volatile uint64_t sink = read_pass(p, n); // warm-up
    double t[PROBE_REPS];
    for (int r = 0; r < PROBE_REPS; r++) {
        const double t0 = etx_now_s();
        sink += read_pass(p, n);
        t[r] = etx_now_s() - t0;
    }
    (void)sink;
    free(p);
    qsort(t, PROBE_REPS, sizeof(double), etx_cmp_double);
    *bandwidth = (double)bytes / t[PROBE_REPS / 2];
    return etx_ok();
}

static etx_status cpu_gemm(int quick, double* flops) {
    const int n = quick ? 64 : 512, in = quick ? 256 : 2048, out = quick ? 256 : 2048;
    float* x = malloc((size_t)n * in * sizeof(float));
    float* w = malloc((size_t)out * in * sizeof(float));
    float* y = malloc((size_t)n * out * sizeof(float));
    if (!x || !w || !y) {
        free(x);
        free(w);
        free(y);
        return etx_error(ETX_ERR_NOMEM, "measuring GEMM: no room for the matrices");
    }
    for (size_t i = 0; i < (size_t)n * in; i++) x[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)out * in; i++) w[i] = (float)(i % 5) * 0.01f;
    matmul(y, out, x, w, n, in, out); // warm-up
    double t[PROBE_REPS];
    for (int r = 0; r < PROBE_REPS; r++) {
        const double t0 = etx_now_s();
        matmul(y, out, x, w, n, in, out);
        t[r] = etx_now_s() - t0;
    }
    free(x);
    free(w);
    free(y);
    qsort(t, PROBE_REPS, sizeof(double), etx_cmp_double);
    *flops = 2.0 * n * in * (double)out / t[PROBE_REPS / 2];
    return etx_ok();
}

etx_status cpu_measure(int n_threads, int quick, etx_hw_limits* out) {
    memset(out, 0, sizeof *out);
    const int saved = cpu_get_threads(), nt = n_threads > 0 ? n_threads : omp_get_num_procs();
    cpu_set_threads(n_threads);
    etx_status s = cpu_bandwidth(quick, &out->mem_bandwidth);
    if (s.code == ETX_OK) s = cpu_gemm(quick, &out->gemm_flops);
    cpu_set_threads(saved);
    snprintf(out->bandwidth_method, sizeof out->bandwidth_method, "%d threads reading %s", nt,
             quick ? "32 MiB" : "512 MiB");
    snprintf(out->gemm_method, sizeof out->gemm_method, "f32 sgemm on %d threads, %s", nt,
             quick ? "64x256x256" : "512x2048x2048");
    return s;
}
