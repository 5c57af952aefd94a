/*
 * policy.c — defaults and validation of the per-request sampling policy (etx_policy).
 */
#include <math.h>

#include "common.h"

etx_policy etx_policy_default(etx_policy_kind kind) {
    etx_policy p;
    p.kind = kind;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 0;
    return p;
}

etx_status etx_policy_validate(const etx_policy* p) {
    if (p->kind != ETX_POLICY_GREEDY && p->kind != ETX_POLICY_SAMPLE)
        return etx_error(ETX_ERR_INVALID_ARG, "policy: unknown kind %d", (int)p->kind);
    if (!(p->temperature > 0.0f) || !isfinite(p->temperature))
        return etx_error(ETX_ERR_INVALID_ARG, "policy: temperature must be a finite number > 0 (got %g)",
                         (double)p->temperature);
    if (p->top_k < 0)
        return etx_error(ETX_ERR_INVALID_ARG, "policy: top-k must be >= 0 (got %d; 0 turns it off)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return etx_error(ETX_ERR_INVALID_ARG, "policy: top-p must be in (0, 1] (got %g; 1 turns it off)",
                         (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return etx_error(ETX_ERR_INVALID_ARG, "policy: min-p must be in [0, 1) (got %g; 0 turns it off)",
                         (double)p->min_p);
    return etx_ok();
}
