/*
 * attention.h — attention over the paged KV cache (kernels/attention.cu): decode (one
 * query token per sequence, split over the context when the GPU would otherwise idle)
 * and prefill (causal chunks of one or several sequences, flash-attention style). Both
 * are GQA-aware: the query heads that share a KV head share one pass over its keys and
 * values.
 *
 * Layout (kernels/README.md): K/V pools bf16 (n_blocks, block_size, n_kv_heads, head_dim);
 * position p of sequence s at block_table[s * max_blocks + p / block_size], row
 * p % block_size; scale head_dim^-0.5; output bf16, heads concatenated.
 * Supported: head_dim 64 or 128; n_heads / n_kv_heads <= ETX_ATTN_MAX_GROUP; pools
 * 16-byte aligned (keys are read 8 bf16 at a time; cudaMalloc gives 256).
 * Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_ATTENTION_H
#define ETX_KERNELS_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h" // etx_bf16 (hostdev/)

#ifdef __cplusplus
extern "C" {
#endif

#define ETX_ATTN_MAX_GROUP 16 // query heads per KV head
#define ETX_ATTN_MAX_SPLITS 64

// The shapes of one layer's attention and of its paged cache.
typedef struct {
    int n_heads;    // query heads
    int n_kv_heads; // key/value heads (n_heads % n_kv_heads == 0)
    int head_dim;   // 64 or 128 for attention; even, <= 512 for RoPE
    int block_size; // positions per cache block
    int max_blocks; // columns of the block table
} EtxAttnShape;

// Splits of the context the decode kernel should use for n_seqs sequences of at most
// max_seq_len positions: enough (sequence, KV head, split) blocks to fill the GPU (two per
// SM of the current device), but no split shorter than 256 positions. 1 = no split (no
// workspace, no merge).
int etx_attn_decode_splits(int n_seqs, int n_kv_heads, int max_seq_len);

// Bytes of f32 workspace etx_attn_decode needs with n_splits > 1 (0 for n_splits == 1):
// per (sequence, head, split) the partial max, sum and unnormalised output.
size_t etx_attn_decode_workspace_bytes(int n_seqs, int n_heads, int head_dim, int n_splits);

// Decode attention, one query per row s < n_seqs (a token of the sequence whose block
// table row is row_seq[s], or s when row_seq is NULL) attending to its positions
// 0 .. seq_len[s] - 1 (the current token's k/v already appended):
//   out[s, h, :] = sum_t softmax_t(scale q[s, h] . k_t) v_t,  k_t, v_t of KV head h / (n_heads / n_kv_heads)
// q: (n_seqs, n_heads, head_dim) f32; seq_len: (n_seqs), each in 1 .. max_seq_len (0 gives
// a zero output: a padding row); out: (n_seqs, n_heads * head_dim) bf16.
// The context is cut into n_splits chunks (1 .. ETX_ATTN_MAX_SPLITS; etx_attn_decode_splits
// picks one) of ceil(max_seq_len / n_splits) positions rounded up to a key tile, each
// processed by its own block; a second kernel merges them through `workspace`
// (etx_attn_decode_workspace_bytes; may be NULL when n_splits == 1).
// scores (may be NULL): (n_seqs, n_heads, max_ctx) f32, receives scale q . k_t for
// t < seq_len[s] (<= max_ctx; the pre-softmax scores the entropix attention metrics
// read); other entries are left alone.
// The grid depends only on host values (n_seqs, max_seq_len, n_splits), so the launch can
// be captured in a CUDA graph and replayed while seq_len grows up to max_seq_len.
void etx_attn_decode(etx_bf16* out, float* scores, int max_ctx, const float* q, const etx_bf16* k_pool,
                     const etx_bf16* v_pool, const int32_t* block_table, const int32_t* row_seq, const int32_t* seq_len,
                     int n_seqs, int max_seq_len, int n_splits, float* workspace, EtxAttnShape shape, void* stream);

// Prefill attention for a chunk of n rows of sequence `seq` at positions pos0 .. pos0 + n - 1
// (their k/v already appended): row i attends causally to positions 0 .. pos0 + i.
//   out[i, h, :] = sum_{t <= pos0 + i} softmax_t(scale q[i, h] . k_t) v_t
// q: (n, n_heads * head_dim) f32; out: (n, n_heads * head_dim) bf16. No score matrix is
// stored: keys stream through shared memory in tiles with an online softmax.
// scores (may be NULL): (n_heads, max_ctx) f32, this sequence's rows of the capture buffer;
// receives the last row's scale q[n - 1, h] . k_t for t <= pos0 + n - 1 (< max_ctx), as
// etx_attn_decode captures a decode row (the metrics of the token sampled after a prompt).
void etx_attn_prefill(etx_bf16* out, float* scores, int max_ctx, const float* q, const etx_bf16* k_pool,
                      const etx_bf16* v_pool, const int32_t* block_table, int seq, int pos0, int n, EtxAttnShape shape,
                      void* stream);

// One chunk of a batched prefill: rows row0 .. row0 + n - 1 of q/out are sequence seq's
// positions pos0 .. pos0 + n - 1.
typedef struct {
    int seq;     // block table row
    int pos0;    // position of the chunk's first row
    int n;       // rows (<= 0: skipped)
    int row0;    // first row in q and out
    int capture; // capture-buffer row that receives the last row's scores, or -1
} EtxPrefillChunk;

// etx_attn_prefill for several chunks (of different sequences) in one launch (64 chunks
// per launch; the chunks array is read on the host, so the launch can be graph-captured):
// q, out: (total rows, n_heads * head_dim); scores: (capture rows, n_heads, max_ctx), or
// NULL (no capture at all).
void etx_attn_prefill_chunks(etx_bf16* out, float* scores, int max_ctx, const float* q, const etx_bf16* k_pool,
                             const etx_bf16* v_pool, const int32_t* block_table, const EtxPrefillChunk* chunks,
                             int n_chunks, EtxAttnShape shape, void* stream);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_ATTENTION_H
