/*
 * sampler.h — the CPU reference for picking the next token from a row of logits under
 * the greedy and sample policies (temperature, top-k, top-p, min-p).
 *
 * Sampling order, as Hugging Face transformers applies its warpers: temperature, then
 * top-k, then top-p (the smallest set of most likely tokens whose mass reaches p), then
 * min-p (drop tokens below min_p times the top probability), then one draw from what is
 * left, renormalised. The uniform comes from Philox keyed by (seed, request id) and
 * counted by (step, draw index), so a request's tokens never depend on its batch.
 */
#ifndef ETX_SAMPLER_H
#define ETX_SAMPLER_H

#include <stdint.h>

#include "etx/etx.h"

// Reusable scratch for one vocabulary row (build_/free_ pair).
typedef struct {
    float p;    // unnormalised probability at the policy's temperature
    int32_t id; // token id
} Candidate;

typedef struct {
    int vocab_size;
    Candidate* cand; // (vocab_size) candidates, most likely first once sorted
} Sampler;

void build_sampler(Sampler* s, int vocab_size);
void free_sampler(Sampler* s);

// argmax of logits; ties go to the lowest id.
int32_t sample_argmax(const float* logits, int n);

// Picks the next token for `policy` from `logits` (vocab_size floats, not modified).
// `u` is the uniform in [0,1) for this draw. Returns the token id; *logprob (may be
// NULL) receives the chosen token's log-probability under the unfiltered model
// distribution at temperature 1.
int32_t sample_next(Sampler* s, const etx_policy* policy, const float* logits, float u, float* logprob);

// The uniform for the request whose random stream is `key`, at generation step `step`
// (draw 0).
float sample_uniform(const etx_policy* policy, uint64_t key, uint32_t step);

// log-softmax of one entry: logits[i] - logsumexp(logits).
float logprob_of(const float* logits, int n, int i);

#endif // ETX_SAMPLER_H
