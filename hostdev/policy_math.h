/*
 * policy_math.h — the per-token policy math of etx, shared by the CPU reference and the
 * CUDA backend so both make the same decision from the same inputs:
 *
 *   - entropix_decide: the entropix v1 decision tree (docs/entropix.md §2, with the JAX
 *     thresholds of §6.10), from the step's metrics to a branch and the temperature / top-k /
 *     top-p / min-p / number of draws that branch uses;
 *   - (the learned policy's decision is policy_learned.h, on top of this file)
 *   - policy_decision_simple: the greedy and sample decisions, with the sample policy's
 *     top-nσ floor and entropy-based temperature (EDT) from the row's statistics;
 *   - policy_logit_floor + policy_filter + policy_draw: the filters and one categorical
 *     draw over candidates sorted by logit, most likely first;
 *   - policy_input_fault: whether a pick's inputs (its logits, the signals its policy
 *     reads) are finite; when they are not, no token is picked and the token slot carries
 *     a negative fault code (policy_fault_token) that the engine turns into a request error.
 *
 * The filters, in the order transformers applies its warpers: temperature, top-k, top-p
 * (the smallest prefix of most likely tokens whose mass reaches p), min-p (keep tokens
 * with p >= min_p * p_max; on a sorted list that is again a prefix). The draw is an inverse
 * CDF on one uniform. Arithmetic is float, in a fixed order, and the weights' exponential
 * is etx_expf (exact_math.h: the same bits on host and device, where expf is glibc's on
 * one and CUDA's on the other), so CPU and GPU agree bit for bit.
 *
 * Header-only plain C99 (ETX_HD marks functions __host__ __device__ under nvcc).
 */
#ifndef ETX_POLICY_MATH_H
#define ETX_POLICY_MATH_H

#include <math.h>
#include <stdint.h>

#include "etx/etx.h"
#include "exact_math.h"
#include "philox.h"

// The signals of one step (docs/entropix.md §1), and the two row statistics top-nσ reads.
typedef struct {
    float entropy;         // H, bits
    float varentropy;      // V, bits^2
    float attn_entropy;    // A_H, bits
    float attn_varentropy; // A_V
    float agreement;       // AG
    float interaction;     // IS
    float logit_max;       // the row's largest logit
    float logit_sigma;     // population standard deviation of the row's finite logits
} PolicyMetrics;

// What to do at one step.
typedef struct {
    etx_branch branch;
    int32_t forced_token; // >= 0: emit this token, no draw (the pause token); else -1
    int argmax;           // 1: take the most likely token, no draw
    float temperature;    // > 0
    int top_k;            // 0 = off
    float top_p;          // 1 = off
    float min_p;          // 0 = off
    float min_logit;      // top-nσ: candidates below this logit are dropped first; -inf = off
    int n_samples;        // draws; with more than one, the most likely draw wins
    int action;           // learned policy: the action taken (policy_learned.h); -1 otherwise
    float action_logprob; // learned policy: its log-probability; 0 otherwise
} PolicyDecision;

// A token and its logit; policy_filter expects them sorted by logit, descending, ties by
// ascending id.
typedef struct {
    float logit;
    int32_t id;
} PolicyCandidate;

// x clamped to [lo, hi]; NaN gives lo (so a clamped value is always a number).
static inline ETX_HD float policy_clampf(float x, float lo, float hi) {
    return !(x >= lo) ? lo : (x > hi ? hi : x);
}

// 1 when x is neither NaN nor +-inf (no isfinite: the same code as C, C++ and CUDA).
static inline ETX_HD int policy_finite(float x) { return fabsf(x) <= 3.40282347e+38f; }

// (int) x for a float that may be NaN, infinite or beyond int: clamped to [lo, hi] first
// (NaN -> lo), then truncated toward zero as a C cast does. lo, hi within +-2^24 so that
// they are exact floats.
static inline ETX_HD int policy_float_to_int(float x, int lo, int hi) {
    return (int)policy_clampf(x, (float)lo, (float)hi);
}

// Why a pick cannot be made from its inputs. The engine names the request and position.
typedef enum {
    POLICY_FAULT_NONE = 0,
    POLICY_FAULT_LOGITS = 1,      // a logit is NaN or +-inf
    POLICY_FAULT_LOGIT_SIGNALS = 2, // entropy or varentropy is not finite (finite logits
                                    // of absurd spread overflow float)
    POLICY_FAULT_ATTN_SIGNALS = 3,  // an attention signal is not finite
    POLICY_FAULT_COUNT
} PolicyFault;

// The token slot of a pick that faulted: -fault (so every id >= 0 stays a token).
static inline ETX_HD int32_t policy_fault_token(int fault) { return -(int32_t)fault; }
// The fault a token slot carries: 0 for a token id.
static inline ETX_HD int policy_token_fault(int32_t token) { return token < 0 ? (int)-token : POLICY_FAULT_NONE; }

// Which signals a policy reads, as a mask: the entropix tree reads all of them, dslider
// and the sample policy's top-nσ and EDT the logits' statistics, greedy and plain
// sampling nothing beyond the logits.
#define POLICY_USES_LOGIT_SIGNALS 1 // entropy, varentropy, max, sigma
#define POLICY_USES_ATTN_SIGNALS 2  // the last layer's attention signals
static inline ETX_HD int policy_signals_used(const etx_policy* p) {
    if (p->kind == ETX_POLICY_ENTROPIX || p->kind == ETX_POLICY_LEARNED)
        return POLICY_USES_LOGIT_SIGNALS | POLICY_USES_ATTN_SIGNALS;
    if (p->kind == ETX_POLICY_DSLIDER) return POLICY_USES_LOGIT_SIGNALS; // its naked entropy, varentropy
    if (p->kind == ETX_POLICY_SAMPLE && (p->top_n_sigma > 0.0f || p->edt_theta > 0.0f)) return POLICY_USES_LOGIT_SIGNALS;
    return 0;
}

// The window of a pick's attention signals: entropix's attn_window for the policies that
// read them by entropix's definitions (entropix, learned), 0 (the valid positions) otherwise.
static inline ETX_HD int policy_attn_window(const etx_policy* p) {
    return p->kind == ETX_POLICY_ENTROPIX || p->kind == ETX_POLICY_LEARNED ? p->entropix.attn_window : 0;
}

// The decision of a greedy or sample policy (entropix decisions come from entropix_decide):
// the policy's own filters, argmax for greedy, one draw for sample. m: the step's signals
// (read only by the sample policy's top-nσ and EDT: policy_signals_used).
//   top-nσ: min_logit = max - n σ (float, in this order), candidates below it dropped
//           before the other filters (a prefix of the sorted list, never empty);
//   EDT:    T = T0 N^(θ / H) = T0 e^(θ ln N / H), H = entropy (bits) * ln 2 in nats,
//           etx_logf / etx_expf so both backends get the same bits; H = 0 gives T = 0,
//           held at 1e-6 (argmax in effect), and T <= T0 always (N < 1).
static inline ETX_HD PolicyDecision policy_decision_simple(const etx_policy* p, const PolicyMetrics* m) {
    PolicyDecision d;
    const int sample = p->kind == ETX_POLICY_SAMPLE;
    d.branch = sample ? ETX_BRANCH_SAMPLE : ETX_BRANCH_GREEDY;
    d.forced_token = -1;
    d.argmax = !sample;
    d.temperature = p->temperature;
    d.top_k = p->top_k;
    d.top_p = p->top_p;
    d.min_p = p->min_p;
    d.min_logit = -INFINITY;
    d.n_samples = 1;
    d.action = -1;
    d.action_logprob = 0.0f;
    if (sample && p->top_n_sigma > 0.0f) d.min_logit = m->logit_max - p->top_n_sigma * m->logit_sigma;
    if (sample && p->edt_theta > 0.0f) {
        const float h_nats = m->entropy * 0.693147182f;
        d.temperature = p->temperature * etx_expf(p->edt_theta * etx_logf(p->edt_base) / h_nats);
        if (!(d.temperature > 1e-6f)) d.temperature = 1e-6f;
    }
    return d;
}

// Entropix's adaptive branch into d (the rest of d as the caller set it): T = T0 (1 + a
// (H+V) + b (A_H+A_V) - c AG), top_p, top_k, min_p from the signals (see entropix_decide),
// best of n_adaptive_samples draws. Also the learned policy's adaptive action.
static inline ETX_HD void entropix_adaptive(const etx_entropix_params* p, const PolicyMetrics* m, PolicyDecision* d) {
    const float H = m->entropy, V = m->varentropy;
    const float AH = m->attn_entropy, AV = m->attn_varentropy, AG = m->agreement, IS = m->interaction;
    d->branch = ETX_BRANCH_ADAPTIVE;
    const float u_logits = H + V, u_attn = AH + AV;
    d->temperature = p->temperature *
                     (1.0f + p->ada_temp_logits * u_logits + p->ada_temp_attn * u_attn - p->ada_temp_agree * AG);
    d->top_p = policy_clampf(p->top_p * (1.0f + p->ada_top_p * AV), 0.1f, 1.0f);
    d->top_k = policy_float_to_int(rintf((float)p->top_k * (1.0f + p->ada_top_k_int * IS - p->ada_top_k_agree * AG)),
                                   1, 100);
    d->min_p = policy_clampf(p->min_p * (1.0f - p->ada_min_p * u_logits), 0.01f, 0.5f);
    d->n_samples = p->n_adaptive_samples;
}

// Entropix v1 (docs/entropix.md §2). First matching branch wins:
//   LELV  H < low_ent and V < low_vent                -> argmax
//   HELV  H > high_ent and V < low_vent               -> the pause token, or after it a
//         resample at T = min(1.5, T0 (helv_off + helv_coef A_H))
//   LEHV  H < high_ent and V > high_vent              -> T = min(1.5, T0 (lehv_off + lehv_coef IS)),
//         top_k = max(5, int(top_k0 (1 + 0.5 (1 - AG))))
//   HEHV  H > med_ent and V > high_vent               -> T = max(2, T0 (hehv_off + hehv_coef A_V)),
//         top_p = max(0.5, top_p0 - hehv_ent_coef A_H)
//   else  adaptive: T = T0 (1 + a (H+V) + b (A_H+A_V) - c AG), top_p = clip(top_p0 (1 + d A_V), .1, 1),
//         top_k = clip(round(top_k0 (1 + e IS - f AG)), 1, 100),
//         min_p = clip(min_p0 (1 - g (H+V)), .01, .5), best of n_adaptive_samples draws
// prev_token: the token before this step (-1 at the first step); pause_token: the
// resolved pause id (>= 0). The temperature is kept above 1e-6 whatever the coefficients.
// Defined for any metrics, NaN and infinities included (every float -> int conversion is
// clamped first; NaN falls through the comparisons to the adaptive branch); the backends
// never act on such a decision, they stop the request first (policy_input_fault).
static inline ETX_HD PolicyDecision entropix_decide(const etx_entropix_params* p, const PolicyMetrics* m,
                                                    int32_t prev_token, int32_t pause_token) {
    const float H = m->entropy, V = m->varentropy;
    const float AH = m->attn_entropy, AV = m->attn_varentropy, AG = m->agreement, IS = m->interaction;
    PolicyDecision d;
    d.forced_token = -1;
    d.argmax = 0;
    d.temperature = p->temperature;
    d.top_k = p->top_k;
    d.top_p = p->top_p;
    d.min_p = p->min_p;
    d.min_logit = -INFINITY;
    d.n_samples = 1;
    d.action = -1;
    d.action_logprob = 0.0f;
    if (H < p->low_ent_thresh && V < p->low_vent_thresh) {
        d.branch = ETX_BRANCH_ARGMAX;
        d.argmax = 1;
    } else if (H > p->high_ent_thresh && V < p->low_vent_thresh) {
        if (prev_token != pause_token) {
            d.branch = ETX_BRANCH_PAUSE;
            d.forced_token = pause_token;
        } else {
            d.branch = ETX_BRANCH_HELV;
            d.temperature = fminf(1.5f, p->temperature * (p->helv_attn_ent_offset + p->helv_attn_ent_coef * AH));
        }
    } else if (H < p->high_ent_thresh && V > p->high_vent_thresh) {
        d.branch = ETX_BRANCH_LEHV;
        d.temperature =
            fminf(1.5f, p->temperature * (p->lehv_interaction_strength_offset + p->lehv_interaction_strength_coef * IS));
        // the cast bounded so that no AG makes it undefined (above 2^24 it means "all")
        const int k = policy_float_to_int((float)p->top_k * (1.0f + 0.5f * (1.0f - AG)), 5, 1 << 24);
        d.top_k = k > 5 ? k : 5;
    } else if (H > p->med_ent_thresh && V > p->high_vent_thresh) {
        d.branch = ETX_BRANCH_HEHV;
        d.temperature = fmaxf(2.0f, p->temperature * (p->hehv_attn_vent_offset + p->hehv_attn_vent_coef * AV));
        d.top_p = fmaxf(0.5f, p->top_p - p->hehv_attn_ent_coef * AH);
    } else {
        entropix_adaptive(p, m, &d);
    }
    if (!(d.temperature > 1e-6f)) d.temperature = 1e-6f;
    return d;
}

// Whether a pick may go ahead: logits_nonfinite is 1 when any logit of the row is NaN or
// +-inf (each backend scans its row: the CPU in pick_token, the device in the vocabulary
// pass); m: the step's signals; uses: the signals the policy reads (policy_signals_used),
// only those are checked (greedy and plain sampling read only the logits).
static inline ETX_HD int policy_input_fault(int logits_nonfinite, const PolicyMetrics* m, int uses) {
    if (logits_nonfinite) return POLICY_FAULT_LOGITS;
    if ((uses & POLICY_USES_LOGIT_SIGNALS) &&
        (!policy_finite(m->entropy) || !policy_finite(m->varentropy) || !policy_finite(m->logit_max) ||
         !policy_finite(m->logit_sigma)))
        return POLICY_FAULT_LOGIT_SIGNALS;
    if (!(uses & POLICY_USES_ATTN_SIGNALS)) return POLICY_FAULT_NONE;
    if (!policy_finite(m->attn_entropy) || !policy_finite(m->attn_varentropy) || !policy_finite(m->agreement) ||
        !policy_finite(m->interaction))
        return POLICY_FAULT_ATTN_SIGNALS;
    return POLICY_FAULT_NONE;
}

// How many of the n sorted candidates top-nσ keeps: the prefix whose logits are >=
// min_logit, at least 1 (min_logit = -inf: all n). Candidates are sorted, so this is the
// first index below the floor, found by bisection.
static inline ETX_HD int policy_logit_floor(const PolicyCandidate* c, int n, float min_logit) {
    if (n <= 1 || !(c[n - 1].logit < min_logit)) return n;
    int lo = 1, hi = n - 1; // c[lo - 1] passes (or lo = 1); c[hi] fails
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (c[mid].logit < min_logit) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

// The filters in three parts, so that a device can compute the weights in parallel and
// keep the order-dependent sums in one thread (kernels/policy_step.cu): how many
// candidates top-k keeps, the weight of candidate i, and the cut of the weights by top-p
// and min-p. policy_filter chains them, the same float operations in the same order.
static inline ETX_HD int policy_filter_top_k(int n, int top_k) { return top_k > 0 && top_k < n ? top_k : n; }

// w_i = exp((logit_i - logit_0) * inv_t), inv_t = 1.0f / T. The exponential is etx_expf
// (never expf: see exact_math.h).
static inline ETX_HD float policy_weight(const PolicyCandidate* c, int i, float inv_t) {
    return etx_expf((c[i].logit - c[0].logit) * inv_t);
}

// The kept prefix of k weights after top-p (the smallest prefix whose share of the total,
// summed from w[0] up, reaches top_p) and min-p (w[0] = 1 is the largest weight; the
// ratio is unchanged by renormalisation).
static inline ETX_HD int policy_filter_cut(const float* w, int k, float top_p, float min_p) {
    float total = 0.0f;
    for (int i = 0; i < k; i++) total += w[i];
    if (top_p < 1.0f) {
        const float target = top_p * total;
        float cum = 0.0f;
        for (int i = 0; i < k; i++) {
            cum += w[i];
            if (cum >= target) {
                k = i + 1;
                break;
            }
        }
    }
    if (min_p > 0.0f) {
        int keep = 1;
        while (keep < k && w[keep] >= min_p) keep++;
        k = keep;
    }
    return k;
}

// Weights w[i] = exp((logit_i - logit_0) / T) of the candidates the filters keep; returns
// how many are kept (a prefix of c, at least 1). c: n candidates sorted (see above).
static inline ETX_HD int policy_filter(const PolicyCandidate* c, int n, float temperature, int top_k, float top_p,
                                       float min_p, float* w) {
    const int k = policy_filter_top_k(n, top_k);
    const float inv_t = 1.0f / temperature;
    for (int i = 0; i < k; i++) w[i] = policy_weight(c, i, inv_t);
    return policy_filter_cut(w, k, top_p, min_p);
}

// Index of the first candidate whose cumulative weight exceeds u * (total weight).
static inline ETX_HD int policy_draw(const float* w, int k, float u) {
    float total = 0.0f;
    for (int i = 0; i < k; i++) total += w[i];
    const float target = u * total;
    float cum = 0.0f;
    for (int i = 0; i < k; i++) {
        cum += w[i];
        if (cum > target) return i;
    }
    return k - 1;
}

// Token confidence (DeepConf): C = -(1/k) sum_{j<k} (logit_j - log Z) over the k =
// min(ETX_CONFIDENCE_TOP_K, n) most likely candidates (sorted, most likely first), summed
// in float in candidate order: the same bits wherever cand and log_z are the same.
static inline ETX_HD float policy_token_confidence(const PolicyCandidate* cand, int n, float log_z) {
    const int k = n < ETX_CONFIDENCE_TOP_K ? n : ETX_CONFIDENCE_TOP_K;
    float sum = 0.0f;
    for (int j = 0; j < k; j++) sum += cand[j].logit - log_z;
    return k > 0 ? -sum / (float)k : 0.0f;
}

// The trace record of one picked token: who and when, the token and its log-probability
// (logit - log Z, computed by the caller), from the sorted candidates (at least the
// ETX_CONFIDENCE_TOP_K most likely, or all of a smaller vocabulary) its token confidence
// (policy_token_confidence) and the ETX_TRACE_TOP most likely tokens with their
// log-probabilities, the step's signals and the decision taken. Filled by this one function on the host
// (host/cpu/cpu_backend.c) and on the device (kernels/policy_step.cu), so both write the
// same fields the same way.
static inline ETX_HD void policy_trace_record(etx_trace_record* t, int request_id, int step, int32_t token,
                                              float logprob, const PolicyCandidate* cand, int n_cand, float log_z,
                                              const PolicyMetrics* m, const PolicyDecision* d) {
    t->confidence = policy_token_confidence(cand, n_cand, log_z);
    for (int j = 0; j < ETX_TRACE_TOP; j++) {
        t->top_tokens[j] = j < n_cand ? cand[j].id : -1;
        t->top_logprobs[j] = j < n_cand ? cand[j].logit - log_z : 0.0f;
    }
    t->request_id = request_id;
    t->step = step;
    t->token = token;
    t->logprob = logprob;
    t->entropy = m->entropy;
    t->varentropy = m->varentropy;
    t->attn_entropy = m->attn_entropy;
    t->attn_varentropy = m->attn_varentropy;
    t->agreement = m->agreement;
    t->interaction = m->interaction;
    t->branch = d->branch;
    t->temperature = d->temperature;
    t->top_k = d->top_k;
    t->top_p = d->top_p;
    t->min_p = d->min_p;
    t->action = d->action;
    t->action_logprob = d->action_logprob;
}

// The trace record of a pick that faulted (no token): who and when, token = the fault's
// code (policy_fault_token), everything else zero. The engine drops it with the request;
// written so that both backends leave the same bytes.
static inline ETX_HD void policy_fault_record(etx_trace_record* t, int request_id, int step, int fault) {
    t->request_id = request_id;
    t->step = step;
    t->token = policy_fault_token(fault);
    t->logprob = 0.0f;
    t->entropy = 0.0f;
    t->varentropy = 0.0f;
    t->attn_entropy = 0.0f;
    t->attn_varentropy = 0.0f;
    t->agreement = 0.0f;
    t->interaction = 0.0f;
    t->branch = ETX_BRANCH_GREEDY;
    t->temperature = 0.0f;
    t->top_k = 0;
    t->top_p = 0.0f;
    t->min_p = 0.0f;
    t->confidence = 0.0f;
    t->action = -1;
    t->action_logprob = 0.0f;
    for (int j = 0; j < ETX_TRACE_TOP; j++) {
        t->top_tokens[j] = -1;
        t->top_logprobs[j] = 0.0f;
    }
}

#endif // ETX_POLICY_MATH_H
