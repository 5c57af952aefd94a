/*
 * metrics.h — the signals the entropix policy reads, computed on the CPU (the reference
 * for the CUDA kernels): entropy and varentropy of the next-token distribution, and the
 * last layer's attention metrics for the current token. Definitions: docs/entropix.md §1;
 * why the window exists: §6.6.
 */
#ifndef ETX_METRICS_H
#define ETX_METRICS_H

#include <stddef.h>

// Entropy H (bits) and varentropy V (bits^2) of softmax(logits) at temperature 1, in one
// numerically safe pass (online max / normaliser / first and second moments, merged
// Welford-style); -inf logits contribute nothing; also returns log Z (natural log of the
// normaliser, including the max) so callers get log p_i = logits[i] - log_z, and the max
// and the plain (unweighted) standard deviation of the finite logits, which top-nσ reads.
// No finite logit (n == 0, all -inf): entropy 0, varentropy 0, log_z -inf, max -inf,
// sigma 0. Logits must not be +inf or NaN.
typedef struct {
    float entropy;    // bits
    float varentropy; // bits^2
    float log_z;      // logsumexp(logits), nats
    float max;        // the largest logit
    float sigma;      // sqrt(mean (x - mean x)^2) over the finite logits
} LogitMetrics;
LogitMetrics logit_metrics(const float* logits, int n);

// 1 when any of the n logits is NaN or +-inf, else 0: the CPU's half of the finiteness
// check every pick passes before its decision (hostdev/policy_math.h, policy_input_fault;
// the device's half is the vocabulary pass's flag, kernels/vocab_pass.h). One branch-free
// pass over the exponent bits.
int logits_nonfinite(const float* logits, int n);

typedef struct {
    float attn_entropy;    // mean over heads of per-head attention entropy, bits
    float attn_varentropy; // population variance over heads of the per-head entropies
    float agreement;       // mean over heads and positions of |P_h(k) - mean_h' P_h'(k)|
    float interaction;     // mean over heads and positions of |s_h(k)| (pre-softmax, scaled)
} AttnMetrics;

// scores: (n_heads, n_pos) row-major, the last layer's pre-softmax scaled scores
// q_h.k_t/sqrt(head_dim) of the current token over the valid (causal) positions t < n_pos.
// window == 0: metrics over the n_pos valid positions (etx's corrected definition).
// window  > 0: the reference's compatibility window: `window` slots of which slots
// n_pos..window-1 score exactly 0 (computed analytically, never materialised); when
// n_pos > window the window is taken as n_pos. The entropy is exact (-P log2 P, 0 for
// P = 0) when window == 0; when window > 0 it is the reference's -P log2(clip(P, 1e-10, 1)).
// scratch: at least (n_heads + 1) * n_pos floats.
AttnMetrics attn_metrics(const float* scores, int n_heads, int n_pos, int window, float* scratch);

#endif // ETX_METRICS_H
