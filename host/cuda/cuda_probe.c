/*
 * cuda_probe.c — what the GPU reaches, measured (BackendOps.measure): the floor a
 * benchmark compares a decode step or a prefill with.
 *
 *   bandwidth: a device-to-device copy of 1 GiB (quick: 16 MiB), bytes read + written
 *              over the time, median of 9 copies after a warm-up. Decode mostly reads;
 *              a copy is the usual stand-in for the achievable DRAM rate.
 *   GEMM:      y = x · W^T with bf16 inputs and f32 accumulation (etx_gemm_bf16, the
 *              projections' own call), n = in = out = 4096 (quick: 128), 2 n in out FLOPs,
 *              median of 9 after a warm-up.
 * Timed with the host clock around a synchronisation; each operation is long enough
 * (milliseconds natively) for that to be exact to a few percent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "device.h"
#include "gemm.h"

#define PROBE_REPS 9

static etx_status measure_copy(int quick, double* bandwidth) {
    const size_t bytes = quick ? (size_t)16 << 20 : (size_t)1 << 30;
    void* a = etx_dev_malloc(bytes);
    void* b = etx_dev_malloc(bytes);
    if (!a || !b) {
        etx_dev_free(a);
        etx_dev_free(b);
        return etx_error(ETX_ERR_NOMEM, "measuring bandwidth: no room for two %zu MiB device buffers", bytes >> 20);
    }
    etx_dev_memset(a, 1, bytes);
    etx_dev_copy(b, a, bytes); // warm-up
    etx_dev_sync();
    double t[PROBE_REPS];
    for (int i = 0; i < PROBE_REPS; i++) {
        const double t0 = etx_now_s();
        etx_dev_copy(i % 2 ? a : b, i % 2 ? b : a, bytes);
        etx_dev_sync();
        t[i] = etx_now_s() - t0;
    }
    qsort(t, PROBE_REPS, sizeof(double), etx_cmp_double);
    etx_dev_free(a);
    etx_dev_free(b);
    *bandwidth = 2.0 * (double)bytes / t[PROBE_REPS / 2];
    return etx_ok();
}

static etx_status measure_gemm(int quick, double* flops) {
    const int n = quick ? 128 : 4096;
    const size_t elems = (size_t)n * n;
    etx_bf16* x = etx_dev_malloc(elems * sizeof(etx_bf16));
    etx_bf16* w = etx_dev_malloc(elems * sizeof(etx_bf16));
    float* y = etx_dev_malloc(elems * sizeof(float));
    etx_status s = etx_ok();
    if (!x || !w || !y) {
        s = etx_error(ETX_ERR_NOMEM, "measuring GEMM: no room for %d x %d matrices", n, n);
    } else {
        etx_dev_memset(x, 0x3c, elems * sizeof(etx_bf16)); // 0x3c3c: a bf16 near 0.0115
        etx_dev_memset(w, 0x3c, elems * sizeof(etx_bf16));
        etx_dev_mark_readonly(w, elems * sizeof(etx_bf16)); // as weights are (gemm.h)
        etx_gemm_bf16(y, x, w, n, n, n, NULL); // warm-up
        etx_dev_sync();
        double t[PROBE_REPS];
        for (int i = 0; i < PROBE_REPS; i++) {
            const double t0 = etx_now_s();
            etx_gemm_bf16(y, x, w, n, n, n, NULL);
            etx_dev_sync();
            t[i] = etx_now_s() - t0;
        }
        qsort(t, PROBE_REPS, sizeof(double), etx_cmp_double);
        *flops = 2.0 * (double)n * n * n / t[PROBE_REPS / 2];
    }
    etx_dev_free(x);
    etx_dev_free(w);
    etx_dev_free(y);
    return s;
}

etx_status cuda_measure(int n_threads, int quick, etx_hw_limits* out) {
    memset(out, 0, sizeof *out);
    if (!etx_dev_available()) return etx_error(ETX_ERR_UNSUPPORTED, "no CUDA device to measure");
    ETX_TRY(measure_copy(quick, &out->mem_bandwidth));
    snprintf(out->bandwidth_method, sizeof out->bandwidth_method, "device-to-device copy of %s, read + written",
             quick ? "16 MiB" : "1 GiB");
    snprintf(out->gemm_method, sizeof out->gemm_method, "bf16 GEMM, f32 accumulate, %d^3", quick ? 128 : 4096);
    return measure_gemm(quick, &out->gemm_flops);
}
