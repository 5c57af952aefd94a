/*
 * policy_learned.h — the learned policy's decision, shared by the CPU (host/cpu/cpu_backend.c)
 * and the device (kernels/policy_step.cu) so both take the same action from the same step:
 *
 *   learned_features: the step's feature vector (etx.h lists it: the six entropix signals,
 *                     the top-4 log-probabilities, the token confidence, ln(1 + step),
 *                     "the previous token is the pause token");
 *   learned_logits:   the network, (x - mean) / scale clamped to +-ETX_LEARNED_CLIP, then
 *                     up to two ReLU layers and a linear output layer, one logit per action;
 *   learned_decide:   the action (the softmax's draw at Philox counter word 1 =
 *                     LEARNED_ACTION_DRAW, or the most likely action) and the
 *                     PolicyDecision it stands for, with the action and its log-probability.
 *
 * Math: z = W_out relu(W_2 relu(W_1 x' + b_1) + b_2) + b_out, p = softmax(z) over the
 * actions allowed (the pause action is masked right after a pause token, as entropix's
 * tree never pauses twice in a row), a ~ p (inverse CDF of one uniform) or argmax z;
 * log p(a) = z_a - max z - ln sum_j e^{z_j - max z}.
 *
 * Exactness: float arithmetic in a fixed order (each unit's sum from input 0 up, then the
 * bias), no contraction into FMAs (-ffp-contract=off / -fmad=false, as for all policy
 * math), etx_expf / etx_logf (exact_math.h) for the exponentials and logarithms, IEEE
 * division: the same bits on the host and the device. Cost: ~5.5k multiply-adds per
 * sequence at the largest shape (13-64-64-8), negligible beside the vocabulary pass.
 *
 * Header-only plain C99 (ETX_HD marks functions __host__ __device__ under nvcc).
 */
#ifndef ETX_POLICY_LEARNED_H
#define ETX_POLICY_LEARNED_H

#include "policy_math.h"

// The Philox draw index of the action (counter word 1): far above any token draw's
// (0 .. n_samples - 1 <= 64), so the action's uniform is never a token's.
#define LEARNED_ACTION_DRAW 0x80000000u

// The feature vector of a step (etx.h, ETX_LEARNED_FEATURES): m its signals; cand the
// sorted candidates (at least ETX_CONFIDENCE_TOP_K of them, or all of a smaller
// vocabulary), log_z the row's log-partition; step the token's index; prev_pause 1 when
// the previous token is the pause token. The log-probabilities and the confidence are
// the trace record's (policy_trace_record), so a trainer reads the same values.
static inline ETX_HD void learned_features(const PolicyMetrics* m, const PolicyCandidate* cand, int n_cand,
                                           float log_z, int step, int prev_pause, float* x) {
    x[0] = m->entropy;
    x[1] = m->varentropy;
    x[2] = m->attn_entropy;
    x[3] = m->attn_varentropy;
    x[4] = m->agreement;
    x[5] = m->interaction;
    for (int j = 0; j < 4; j++) x[6 + j] = j < n_cand ? cand[j].logit - log_z : 0.0f;
    x[10] = policy_token_confidence(cand, n_cand, log_z);
    x[11] = etx_logf(1.0f + (float)step);
    x[12] = prev_pause ? 1.0f : 0.0f;
}

// z[0..n_actions): the network's logits for the features x.
static inline ETX_HD void learned_logits(const etx_learned_net* net, const float* x, float* z) {
    float a[ETX_LEARNED_MAX_HIDDEN], b[ETX_LEARNED_MAX_HIDDEN];
    float* in = a;
    float* out = b;
    for (int i = 0; i < ETX_LEARNED_FEATURES; i++)
        in[i] = policy_clampf((x[i] - net->mean[i]) / net->scale[i], -ETX_LEARNED_CLIP, ETX_LEARNED_CLIP);
    int n_in = ETX_LEARNED_FEATURES;
    const float* w = net->w;
    for (int l = 0; l <= net->n_layers; l++) {
        const int last = l == net->n_layers;
        const int n_out = last ? net->n_actions : net->hidden[l];
        float* dst = last ? z : out;
        for (int o = 0; o < n_out; o++) {
            float s = 0.0f;
            for (int i = 0; i < n_in; i++) s += w[o * n_in + i] * in[i];
            s += w[n_out * n_in + o];
            dst[o] = last ? s : (s > 0.0f ? s : 0.0f); // ReLU (NaN -> 0)
        }
        w += n_out * (n_in + 1);
        n_in = n_out;
        float* t = in;
        in = out;
        out = t;
    }
}

// The decision of learned policy p (its network net) at one step: the features (see
// learned_features), the network, the action and what it does. prev_token / pause_token
// as for entropix_decide (pause_token < 0: the model has none, and the network has no
// pause action: etx_learned_register and the engine check). key / step: the Philox
// stream of the action draw.
static inline ETX_HD PolicyDecision learned_decide(const etx_policy* p, const etx_learned_net* net,
                                                   const PolicyMetrics* m, const PolicyCandidate* cand, int n_cand,
                                                   float log_z, uint64_t key, uint32_t step, int32_t prev_token,
                                                   int32_t pause_token) {
    float x[ETX_LEARNED_FEATURES], z[ETX_LEARNED_MAX_ACTIONS], w[ETX_LEARNED_MAX_ACTIONS];
    const int after_pause = pause_token >= 0 && prev_token == pause_token;
    learned_features(m, cand, n_cand, log_z, (int)step, after_pause, x);
    learned_logits(net, x, z);
    const int n = net->n_actions;
    // the allowed actions' largest logit (a NaN logit never wins, and weighs 0 below)
    int best = -1;
    for (int j = 0; j < n; j++) {
        if (after_pause && net->actions[j].kind == ETX_ACTION_PAUSE) continue;
        if (best < 0 || z[j] > z[best] || !(z[best] == z[best])) best = j;
    }
    if (best < 0) best = 0; // not reached: registration keeps a non-pause action
    const float z_max = z[best];
    float total = 0.0f;
    for (int j = 0; j < n; j++) {
        const int allowed = !(after_pause && net->actions[j].kind == ETX_ACTION_PAUSE);
        w[j] = allowed ? etx_expf(z[j] - z_max) : 0.0f;
        if (!(w[j] >= 0.0f)) w[j] = 0.0f; // NaN
        total += w[j];
    }
    int a = best;
    if (!net->choose_argmax) {
        const float target = philox_uniform(p->seed, key, step, LEARNED_ACTION_DRAW) * total;
        float cum = 0.0f;
        for (int j = 0; j < n; j++) {
            cum += w[j];
            if (cum > target) {
                a = j;
                break;
            }
        }
    }
    PolicyDecision d;
    d.forced_token = -1;
    d.argmax = 0;
    d.temperature = 1.0f;
    d.top_k = 0;
    d.top_p = 1.0f;
    d.min_p = 0.0f;
    d.min_logit = -INFINITY;
    d.n_samples = 1;
    d.action = a;
    d.action_logprob = (z[a] - z_max) - etx_logf(total);
    const etx_learned_action* act = &net->actions[a];
    switch (act->kind) {
    case ETX_ACTION_ARGMAX:
        d.branch = ETX_BRANCH_ARGMAX;
        d.argmax = 1;
        break;
    case ETX_ACTION_PAUSE:
        d.branch = ETX_BRANCH_PAUSE;
        d.forced_token = pause_token;
        break;
    case ETX_ACTION_ADAPTIVE: entropix_adaptive(&p->entropix, m, &d); break;
    default: // ETX_ACTION_SAMPLE
        d.branch = ETX_BRANCH_SAMPLE;
        d.temperature = act->temperature;
        d.top_k = act->top_k;
        d.top_p = act->top_p;
        d.min_p = act->min_p;
        break;
    }
    if (!(d.temperature > 1e-6f)) d.temperature = 1e-6f;
    return d;
}

#endif // ETX_POLICY_LEARNED_H
