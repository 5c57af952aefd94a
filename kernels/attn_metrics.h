/*
 * attn_metrics.h — the entropix attention signals per sequence on the device
 * (kernels/attn_metrics.cu), from the last layer's captured pre-softmax scores; the twin
 * of host/policy/metrics.c:attn_metrics, same definitions (corrected form over the valid
 * positions, or the reference's compatibility window of zero-score slots, in closed form).
 *
 * Plain C header (launchers have C linkage) also read by the kernel.
 */
#ifndef ETX_ATTN_METRICS_H
#define ETX_ATTN_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// Heads a sequence may have (per-head values live in shared memory).
#define ETX_ATTN_MAX_HEADS 128

// The attention signals of one sequence (AttnMetrics' twin).
typedef struct {
    float attn_entropy;    // mean over heads of the per-head entropy, bits
    float attn_varentropy; // population variance over heads of those entropies
    float agreement;       // mean over heads and slots of |P_h(k) - mean_h' P_h'(k)|
    float interaction;     // mean over heads and slots of |s_h(k)|
} EtxAttnStats;

// scores: (.., n_heads, max_ctx) f32, sequence s's at row score_row[s] (NULL: row s), valid
// at t < n_pos[s] <= max_ctx
// (the rest is never read); window: (n_seqs) or NULL (all 0): 0 = corrected, > 0 =
// compatibility window (metrics.h). out: (n_seqs). n_heads <= ETX_ATTN_MAX_HEADS; a
// sequence with n_pos <= 0 gets zeros. scratch: etx_attn_metrics_scratch_bytes(n_seqs,
// n_heads, max_ctx) bytes (40 per head and 8 per 256 positions, per sequence). Device
// pointers; stream a cudaStream_t (NULL: the default stream).
void etx_attn_metrics(const float* scores, const int32_t* score_row, int n_seqs, int n_heads, int max_ctx,
                      const int32_t* n_pos,
                      const int32_t* window, EtxAttnStats* out, void* scratch, void* stream);
size_t etx_attn_metrics_scratch_bytes(int n_seqs, int n_heads, int max_ctx);

// The napkin math of etx_attn_metrics (cost.h) for sequences of n_pos positions: the
// n_heads x n_pos scores read from DRAM once (the three later reads from L2), ~20 FLOPs
// per score; three launches.
EtxCost etx_attn_metrics_cost(int n_seqs, int n_heads, int n_pos, int max_ctx);

#ifdef __cplusplus
}
#endif
#endif // ETX_ATTN_METRICS_H
