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

// Tensor parallelism (host/cuda/cuda_tp.c): the heads split across `shards` devices, each
// holding the scores of its n_heads heads, merged without moving the scores:
//   1. etx_attn_metrics_psum on every shard: its heads' records (max, normaliser,
//      entropy, zero-slot probability, sum |s|: 40 bytes a head) into `heads` and, per
//      position, the sum over its heads of P into psum (n_seqs, max_ctx) doubles;
//   2. the caller all-reduces psum (sum over shards): n_heads_all times the mean P;
//   3. etx_attn_metrics_dev on every shard: per chunk of 256 positions the sum over its
//      heads of |P - mean| into dev (n_seqs, chunks) doubles;
//   4. the caller gathers every shard's heads and dev on one device, shard-major
//      ((shards, n_seqs, n_heads) records, (shards, n_seqs, chunks) sums), and
//      etx_attn_metrics_merge gives the signals etx_attn_metrics gives on the whole rows:
//      the entropy, its variance and the interaction the same bits (the same per-head
//      values, summed in head order), the agreement up to the order of double additions.
// Sizes: etx_attn_metrics_part_bytes (the three buffers of one shard; returns their sum).
size_t etx_attn_metrics_part_bytes(int n_seqs, int n_heads, int max_ctx, size_t* heads_bytes, size_t* psum_bytes,
                                   size_t* dev_bytes);
void etx_attn_metrics_psum(const float* scores, const int32_t* score_row, int n_seqs, int n_heads, int max_ctx,
                           const int32_t* n_pos, const int32_t* window, void* heads, double* psum, void* stream);
void etx_attn_metrics_dev(const float* scores, const int32_t* score_row, int n_seqs, int n_heads, int n_heads_all,
                          int max_ctx, const int32_t* n_pos, const int32_t* window, const void* heads,
                          const double* psum, double* dev, void* stream);
void etx_attn_metrics_merge(int n_seqs, int shards, int n_heads, int max_ctx, const int32_t* n_pos,
                            const int32_t* window, const void* heads, const double* dev, EtxAttnStats* out,
                            void* stream);

// The napkin math of etx_attn_metrics (cost.h) for sequences of n_pos positions: the
// n_heads x n_pos scores read from DRAM once (the three later reads from L2), ~20 FLOPs
// per score; three launches.
EtxCost etx_attn_metrics_cost(int n_seqs, int n_heads, int n_pos, int max_ctx);

#ifdef __cplusplus
}
#endif
#endif // ETX_ATTN_METRICS_H
