/*
 * check_logits.h — what the device suites share to check logits: the reference (the CPU
 * float32 forward, host/cpu/cpu_forward.h, itself checked against transformers by
 * tests/cpu/test_forward.c) and the comparison, the largest difference in a row relative
 * to the row's largest |logit|, worst over the rows (every compared logit must be finite).
 * test_cuda_backend.c and test_tp.c state their tolerances in it.
 */
#ifndef ETX_TESTS_CHECK_LOGITS_H
#define ETX_TESTS_CHECK_LOGITS_H

#include <check.h>
#include <math.h>
#include <stddef.h>

#include "check_etx.h"
#include "cpu/cpu_forward.h"

// want (n, vocab) <- the CPU float32 forward's logits of every position of ids[0..n)
static inline void cpu_reference_logits(const etx_model* m, const int32_t* ids, int n, float* want) {
    KVCache kv;
    CpuRunState s;
    CK_OK(build_kv_cache(&kv, &m->cfg, n));
    CK_OK(build_cpu_run_state(&s, &m->cfg));
    CK_OK(cpu_forward(m, &s, &kv, ids, n, want, 1));
    free_cpu_run_state(&s);
    free_kv_cache(&kv);
}

// max over rows of max_v |a - b| / max_v |b|
static inline double rel_diff(const float* a, const float* b, int rows, int vocab) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double d = 0, s = 0;
        for (int v = 0; v < vocab; v++) {
            const size_t i = (size_t)r * vocab + v;
            ck_assert_msg(isfinite(a[i]), "row %d logit %d not finite", r, v);
            d = fmax(d, fabs((double)a[i] - b[i]));
            s = fmax(s, fabs((double)b[i]));
        }
        worst = fmax(worst, d / fmax(s, 1e-30));
    }
    return worst;
}

#endif // ETX_TESTS_CHECK_LOGITS_H
