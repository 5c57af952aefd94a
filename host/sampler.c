/*
 * sampler.c — greedy and filtered sampling over one row of logits (CPU reference).
 * See sampler.h for the order of the filters.
 */
#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "common.h"
#include "philox.h"

void build_sampler(Sampler* s, int vocab_size) {
    s->vocab_size = vocab_size;
    s->cand = xmalloc((size_t)vocab_size * sizeof(Candidate));
}

void free_sampler(Sampler* s) {
    free(s->cand);
    s->cand = NULL;
}

int32_t sample_argmax(const float* logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

float logprob_of(const float* logits, int n, int i) {
    // log p_i = z_i - (m + log sum exp(z - m)), m = max z
    float m = -INFINITY;
    for (int j = 0; j < n; j++)
        if (logits[j] > m) m = logits[j];
    double sum = 0.0;
    for (int j = 0; j < n; j++) sum += exp((double)logits[j] - m);
    return (float)((double)logits[i] - m - log(sum));
}

float sample_uniform(const etx_policy* policy, uint64_t key, uint32_t step) {
    return philox_uniform(policy->seed, key, step, 0);
}

// Descending probability, ties by ascending id, so the order (and the draw) is
// deterministic.
static int cmp_desc(const void* a, const void* b) {
    const Candidate* x = a;
    const Candidate* y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

static double mass(const Candidate* c, int k) {
    double sum = 0.0;
    for (int i = 0; i < k; i++) sum += c[i].p;
    return sum;
}

int32_t sample_next(Sampler* s, const etx_policy* policy, const float* logits, float u, float* logprob) {
    const int n = s->vocab_size;
    int32_t chosen;
    if (policy->kind == ETX_POLICY_GREEDY) {
        chosen = sample_argmax(logits, n);
        if (logprob) *logprob = logprob_of(logits, n, chosen);
        return chosen;
    }
    // temperature softmax, unnormalised: p_i = exp((z_i - max z) / T)
    Candidate* c = s->cand;
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > m) m = logits[i];
    const float inv_t = 1.0f / policy->temperature;
    for (int i = 0; i < n; i++) {
        c[i].p = expf((logits[i] - m) * inv_t);
        c[i].id = i;
    }
    int k = n; // candidates kept: c[0..k)
    if ((policy->top_k > 0 && policy->top_k < n) || policy->top_p < 1.0f)
        qsort(c, (size_t)n, sizeof(Candidate), cmp_desc);
    if (policy->top_k > 0 && policy->top_k < k) k = policy->top_k;
    if (policy->top_p < 1.0f) {
        // smallest prefix (most likely first) whose share of the kept mass reaches top_p
        const double target = (double)policy->top_p * mass(c, k);
        double cum = 0.0;
        for (int i = 0; i < k; i++) {
            cum += c[i].p;
            if (cum >= target) {
                k = i + 1;
                break;
            }
        }
    }
    if (policy->min_p > 0.0f) {
        // keep p_i >= min_p * p_max (the ratio is unchanged by renormalisation)
        float pmax = 0.0f;
        for (int i = 0; i < k; i++)
            if (c[i].p > pmax) pmax = c[i].p;
        const float thr = policy->min_p * pmax;
        int w = 0;
        for (int i = 0; i < k; i++)
            if (c[i].p >= thr) c[w++] = c[i];
        k = w;
    }
    // one draw: the first candidate whose cumulative mass exceeds u * (kept mass)
    const double target = (double)u * mass(c, k);
    double cum = 0.0;
    chosen = c[k - 1].id;
    for (int i = 0; i < k; i++) {
        cum += c[i].p;
        if (cum > target) {
            chosen = c[i].id;
            break;
        }
    }
    if (logprob) *logprob = logprob_of(logits, n, chosen);
    return chosen;
}
