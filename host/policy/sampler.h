/*
 * sampler.h — the CPU side of picking the next token: it gathers the candidates (all
 * tokens, or the top k by logit with a heap) sorted most likely first, then applies the
 * shared policy math (hostdev/policy_math.h: filters and the categorical draw) for a
 * PolicyDecision — greedy, sample, or an entropix branch.
 *
 * Randomness: draw j of step t of a request uses Philox keyed by (seed, request key) at
 * counter (t, j), so a request's tokens never depend on its batch.
 */
#ifndef ETX_SAMPLER_H
#define ETX_SAMPLER_H

#include <stdint.h>

#include "etx/etx.h"
#include "policy_math.h"

// Reusable scratch for one vocabulary row (build_/free_ pair).
typedef struct {
    int vocab_size;
    PolicyCandidate* cand; // (vocab_size) candidates, most likely first
    PolicyCandidate* tmp;  // (vocab_size) the radix sort's other buffer
    float* w;              // (vocab_size) filter weights of the kept candidates
} Sampler;

void build_sampler(Sampler* s, int vocab_size);
void free_sampler(Sampler* s);

// Sorts c[0..n) into candidate order (larger logit first, then smaller id; -0 and +0
// equal), c given in ascending id order, with tmp (n entries) as scratch: a stable
// least-significant-digit radix sort on the logits' bits, O(n) (a whole-vocabulary sort
// per sampled row is the CPU's cost of sampling without top-k). The same order as
// qsort with the candidate comparison, which the tests check it against. Logits must
// not be NaN (the policy never sorts a row that has one).
void sampler_sort_all(PolicyCandidate* c, PolicyCandidate* tmp, int n);

// argmax of logits; ties go to the lowest id.
int32_t sample_argmax(const float* logits, int n);

// Fills s->cand with the `limit` most likely tokens (limit <= 0 or >= vocab: all of them),
// sorted by logit descending, ties by ascending id; returns how many.
int sampler_candidates(Sampler* s, const float* logits, int limit);

// The token for decision d at generation step `step`: the forced token, the argmax, or the
// best (highest log-probability; on equal logits the lower id) of d->n_samples draws
// from the filtered candidates (top-nσ's floor, then policy_filter's).
int32_t sampler_pick(Sampler* s, const float* logits, const PolicyDecision* d, uint64_t seed, uint64_t key,
                     uint32_t step);

#endif // ETX_SAMPLER_H
