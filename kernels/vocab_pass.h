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

// Tensor parallelism: the LM head split by vocabulary, each shard holding logits
// id0 .. id0 + vocab - 1 of every row. A shard's pass leaves per row its part: the
// softmax statistics of its slice as mergeable moments (max m, normaliser z = sum
// e^{x-m}, c = E_p[x] - m, m2 = sum e^{x-m} (x - E_p x)^2, and the plain count, mean and
// sum of squared deviations behind sigma), its nonfinite flag and its top K keys
// (etx_cand_key with the global id), sorted. 1,096 bytes a row: what crosses devices.
// extra: the logit of one more id per row, when it falls in the slice (the entropix
// pause token, which a trace record reads even when it is not a candidate).
typedef struct {
    double m, z, c, m2, n, mu, s2;
    int32_t nonfinite, has_extra;
    float extra;
    int32_t pad;
    uint64_t keys[ETX_TOPK];
} EtxVocabPart;
// A shard's pass over its slice (row_of, scratch as etx_vocab_pass), parts[s] per row;
// extra_id: (n_seqs) global ids whose logit to keep (-1: none), or NULL.
void etx_vocab_pass_part(const float* logits, const int32_t* row_of, int n_seqs, int vocab, int id0,
                         const int32_t* extra_id, EtxVocabPart* parts, void* scratch, void* stream);
// The shards' parts, (n_shards, n_seqs) shard-major, merged into what etx_vocab_pass gives
// over the whole rows of `vocab` logits: the same candidates, and the statistics up to
// the order of double additions (the parts are merged in shard order). extra: (n_seqs)
// the extra id's logit (NaN when no shard had it), or NULL.
void etx_vocab_merge(const EtxVocabPart* parts, int n_shards, int n_seqs, int vocab, int k, EtxVocabStats* stats,
                     PolicyCandidate* cand, float* logprob, float* extra, void* stream);

// The napkin math of etx_vocab_pass with scratch (cost.h): each row read once, the
// statistics and k candidates written, a split row's parts written and read back; ~14
// FLOPs per logit (in double: the FP64 rate is not modelled).
EtxCost etx_vocab_pass_cost(int n_seqs, int vocab, int k);

#ifdef __cplusplus
}
#endif
#endif // ETX_VOCAB_PASS_H
