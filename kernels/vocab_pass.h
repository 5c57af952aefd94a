/*
 * vocab_pass.h — the fused pass over each sequence's logits row (kernels/vocab_pass.cu):
 * in one read of the row, the statistics of softmax(logits) that the entropix policy and
 * the trace need (max, log Z, entropy H, varentropy V; host/policy/metrics.c:logit_metrics is
 * the CPU twin), whether any logit is NaN or infinite (logits_nonfinite's twin) and the top-K candidates in the sampler's order (logit descending, ties
 * by ascending id; host/policy/sampler.c:sampler_candidates is the twin) with their
 * log-probabilities.
 *
 * Why K = 128: the entropix adaptive branch asks for up to 100 candidates
 * (clip(round(top_k ...), 1, 100)), so every entropix decision with top_k0 > 0 fits the
 * list and never needs the exact full-row fallback of kernels/policy_step.cu.
 *
 * Plain C header (launchers have C linkage) also read by the kernels.
 */
#ifndef ETX_VOCAB_PASS_H
#define ETX_VOCAB_PASS_H

#include <stddef.h>
#include <stdint.h>
#include "cost.h"

#include "policy_math.h"

#ifdef __cplusplus
extern "C" {
#endif

// Compile-time cap on the candidates kept per row (the runtime k is <= this).
#define ETX_TOPK 128

// The statistics of one row: the twin of LogitMetrics, and the twin of
// logits_nonfinite (host/policy/metrics.h). With a NaN or +inf logit the statistics are
// not meaningful (the policy step faults the pick on the flag before reading them).
typedef struct {
    float max;         // largest logit (-inf when no logit is finite)
    float log_z;       // logsumexp(logits), nats (-inf when no logit is finite)
    float entropy;     // H, bits
    float varentropy;  // V, bits^2
    float sigma;       // population standard deviation of the finite logits (top-nσ)
    int32_t nonfinite; // 1 when some logit of the row is NaN or +-inf, else 0
} EtxVocabStats;

// A candidate's position in the sampler's order as one 64-bit key, smaller = earlier:
// high word the logit mapped to an order-reversing unsigned (larger logit -> smaller),
// low word the id (ties: smaller id first). -0 is taken as +0 (they compare equal as
// floats, so the order must fall to the id). Logits must not be NaN.
#define ETX_KEY_NONE 0xFFFFFFFFFFFFFFFFull // sorts after every real candidate
static inline ETX_HD uint64_t etx_cand_key(float logit, int32_t id) {
    union {
        float f;
        uint32_t u;
    } v;
    v.f = logit == 0.0f ? 0.0f : logit;
    const uint32_t asc = (v.u & 0x80000000u) ? ~v.u : (v.u | 0x80000000u); // increasing with the float
    return ((uint64_t)(~asc) << 32) | (uint32_t)id;
}

// For each of n_seqs sequences, its row of logits (row row_of[s] of (.., vocab), or row s
// when row_of is NULL: a map lets the rows stay where the forward wrote them, with no
// copy per sequence): stats[s], and the n = min(k, vocab,
// ETX_TOPK) most likely tokens in cand[s * ETX_TOPK + j] (j < n; the row stride is always
// ETX_TOPK) with logprob[s * ETX_TOPK + j] = logit - log_z (logprob may be NULL).
// k >= 1. scratch: etx_vocab_pass_scratch_bytes(n_seqs) bytes, which lets a small batch
// spread each row over several blocks (up to 64, merged by the last to finish); NULL:
// one block per row. All pointers are device pointers; stream is a cudaStream_t (NULL:
// the default stream). The results do not depend on the split beyond the order of
// double additions in the statistics (the candidates are exactly the same).
void etx_vocab_pass(const float* logits, const int32_t* row_of, int n_seqs, int vocab, int k, EtxVocabStats* stats,
                    PolicyCandidate* cand, float* logprob, void* scratch, void* stream);
size_t etx_vocab_pass_scratch_bytes(int n_seqs);

// The napkin math of etx_vocab_pass with scratch (cost.h): each row read once, the
// statistics and k candidates written, a split row's parts written and read back; ~14
// FLOPs per logit (in double: the FP64 rate is not modelled).
EtxCost etx_vocab_pass_cost(int n_seqs, int vocab, int k);

#ifdef __cplusplus
}
#endif
#endif // ETX_VOCAB_PASS_H
