/*
 * policy_step.h — the next token of every sequence of a batch on the device
 * (kernels/policy_step.cu): the policy's decision (greedy, sample, or entropix_decide on the
 * step's metrics), the filters and draws of hostdev/policy_math.h over the candidates,
 * best-of-N by log-probability, the token, an optional trace record and the done flag —
 * on the CPU, host/policy/sampler.c:sampler_pick picks the token and host/engine/engine.c
 * records it and applies the stop checks when it accepts it.
 *
 * Candidates: the vocab pass's top-K list (vocab_pass.h) serves every decision whose
 * candidate list fits in it. A decision that needs more (top_k == 0 or top_k > K, below
 * the vocabulary size: mostly the sample policy with top_k 0) is finished by an exact
 * fallback over the whole row sorted by (logit desc, id asc), so the token is
 * sampler_pick's in every case.
 *
 * Plain C header (launchers have C linkage) also read by the kernels.
 */
#ifndef ETX_POLICY_KERNEL_H
#define ETX_POLICY_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include "cost.h"

#include "attn_metrics.h"
#include "etx/etx.h"
#include "policy_dslider.h"
#include "policy_learned.h"
#include "vocab_pass.h"

#ifdef __cplusplus
extern "C" {
#endif

// What a sequence brings to a step besides its policy (engine.c's Request fields).
typedef struct {
    uint64_t key;         // the request's random stream (Philox counter words 2, 3)
    int32_t request_id;   // for the trace record
    int32_t step;         // tokens generated so far: this token's index, Philox counter word 0
    int32_t prev_token;   // the token before this step (the last prompt token at step 0)
    int32_t pause_token;  // entropix: the resolved pause id (>= 0); unused otherwise
    int32_t max_tokens;   // tokens to generate, >= 1
    int32_t n_prompt;     // prompt length
    int32_t max_seq_len;  // the engine's per-request context
    int32_t stop_offset;  // this sequence's extra stop ids: stop_ids[stop_offset .. + n_stop)
    int32_t n_stop;
    int32_t ignore_eos;   // 1: the EOS ids do not stop it
} EtxSeqState;

// One step's inputs and outputs; every pointer is a device pointer.
typedef struct {
    int n_seqs;
    int vocab;
    const float* logits;           // (.., vocab): sequence s's row is logit_row[s], or s
    const int32_t* logit_row;      // (n_seqs) or NULL (as etx_vocab_pass's row_of)
    const EtxVocabStats* stats;    // (n_seqs) from etx_vocab_pass
    const PolicyCandidate* cand;   // (n_seqs, ETX_TOPK) from etx_vocab_pass
    int n_cand;                    // candidates per row it wrote: min(k, vocab, ETX_TOPK), >= 1
    const EtxAttnStats* attn;      // (n_seqs) or NULL (zeros, as engine.c without metrics);
                                   // engine.c computes them with the entropix attn_window
                                   // for entropix policies and window 0 otherwise
    const etx_policy* policies;    // (n_seqs) each sequence's own policy
    const EtxSeqState* states;     // (n_seqs)
    const int32_t* stop_ids;       // all sequences' extra stop ids (may be NULL if none)
    const int32_t* eos_ids;        // (n_eos) the model's EOS ids
    int n_eos;
    void* scratch;                 // etx_policy_scratch_bytes(n_seqs, vocab) bytes
    int32_t* tokens;               // (n_seqs) out: the next token, or policy_fault_token(fault) < 0
                                   // when its logits or the signals its policy reads are not
                                   // finite (policy_math.h: policy_input_fault)
    int32_t* done;                 // (n_seqs) out: 0, ETX_REQ_DONE_STOP, ETX_REQ_DONE_LENGTH or
                                   // ETX_REQ_FAILED (a fault)
    etx_trace_record* trace;       // (n_seqs) out, or NULL: no trace
    // Tensor parallelism, where no device holds whole rows: logits may be NULL when no
    // sequence needs the exact fallback (the caller knows: policy_may_need_full_row), and
    // the trace's token logit then comes from the candidates, or for an entropix pause
    // token outside them from pause_logit (n_seqs; NULL otherwise).
    const float* pause_logit;
    const etx_learned_net* nets;   // the learned policies' networks (id i at i - 1), or NULL
                                   // when no sequence has a learned policy
    DSliderState* ds;              // (n_seqs) dslider states, read and updated in place, or
                                   // NULL when no sequence has a dslider policy
    int no_fallback;               // 1: no sequence can need the exact fallback (the caller
                                   // knows: every policy keeps its draw within the ETX_TOPK
                                   // candidates, host/cuda's cuda_policy_may_need_full_row),
                                   // so kernel 2 is not launched
} EtxPolicyArgs;

// Scratch the step needs: per sequence a pending decision, and for the fallback a
// sort buffer (8 bytes per slot, vocab rounded up to a power of two) and the filter
// weights (4 vocab bytes): about 1.5 MiB per sequence at a 128256 vocabulary.
size_t etx_policy_scratch_bytes(int n_seqs, int vocab);

// Runs the step: the policy kernel (a warp per sequence), then, unless a->no_fallback,
// the fallback kernel (a block per sequence; blocks of sequences that did not need it
// return at once).
// a is read on the host; its pointers are device pointers. stream: a cudaStream_t.
void etx_policy_step(const EtxPolicyArgs* a, void* stream);

// The napkin math of etx_policy_step (cost.h) when no sequence needs the fallback sort:
// per sequence its candidates, statistics, policy and state read, token (and trace)
// written; with `fallback` (the kernel is launched: no_fallback 0) a block per sequence
// that exits at once.
EtxCost etx_policy_step_cost(int n_seqs, int fallback);

#ifdef __cplusplus
}
#endif
#endif // ETX_POLICY_KERNEL_H
