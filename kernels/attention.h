/*
 * attention.h — attention over the paged KV cache (kernels/attention.cu): query rows
 * (decode tokens and prefill positions alike) against their sequences' cached keys and
 * values, split over the context at fixed positions. GQA-aware: the query heads that
 * share a KV head share one pass over its keys and values.
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
#include "cost.h"

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

#define ETX_ATTN_MIN_SPLIT 32 // positions per split, at least (one tile)

// Positions per split for a configured context of max_seq_len: ETX_ATTN_MIN_SPLIT, or the
// smallest multiple of 32 that cuts max_seq_len into at most ETX_ATTN_MAX_SPLITS splits.
// A function of max_seq_len alone, so a row's splits (and its bits) are the same at any
// batch size and in prefill and decode.
int etx_attn_split_len(int max_seq_len);
// Splits of the context: ceil(max_seq_len / etx_attn_split_len(max_seq_len)).
int etx_attn_n_splits(int max_seq_len);
// Bytes of workspace etx_attn_rows needs to run n_rows rows in one launch (0 with one
// split): a counter per (row, head), then per (row, head, split) the partial max, sum and
// unnormalised output (f32).
size_t etx_attn_workspace_bytes(int n_rows, int n_heads, int head_dim, int max_seq_len);

// Attention of n_rows query rows: row r is the token at position row_pos[r] of the
// sequence whose block table row is row_seq[r] (its k/v already appended), attending to
// that sequence's positions 0 .. row_pos[r] (row_pos[r] = -1: a padding row, zero output):
//   out[r, h, :] = sum_{t <= row_pos[r]} softmax_t(scale q[r, h] . k_t) v_t,
//   k_t, v_t of KV head h / (n_heads / n_kv_heads).
// A decode batch (a row per sequence) and a prefill chunk (a row per position) are the
// same call; each row is summed in the same order whatever the other rows are.
// q: (n_rows, n_heads, head_dim) f32; out: (n_rows, n_heads * head_dim) bf16; row_pos[r] <
// max_seq_len. The context is cut at fixed positions (etx_attn_split_len); each (KV head,
// row) gets up to 2 x SMs / (KV heads x rows) blocks (at least one), each looping over
// some of the row's non-empty splits, leaving their partials in `workspace`, where the
// last block of each (KV head, row) merges them (no second launch); `workspace` holds
// ws_rows rows (etx_attn_workspace_bytes(ws_rows, ...); NULL with one split): more rows
// run as several launches of ws_rows. Its first bytes are counters that must be zero
// before the first call (etx_dev_memset the whole workspace once after allocating it);
// every call leaves them zero. When the rows alone fill the GPU (one block per
// (KV head, row)), each block merges its row's splits as it goes, in the workspace merge's
// order and arithmetic (the same bits), and neither the workspace nor the merge is used.
// scores (may be NULL): (capture rows, n_heads, max_ctx) f32; row r's pre-softmax scores
// scale q . k_t, t <= row_pos[r] (< max_ctx), go to capture row cap_row[r] (-1: none), or
// row r when cap_row is NULL (the entropix attention metrics read them); other entries
// are left alone.
// The grid depends only on host values (n_rows, max_seq_len), so a decode batch can be
// captured in a CUDA graph and replayed while the positions grow up to max_seq_len.
void etx_attn_rows(etx_bf16* out, float* scores, const int32_t* cap_row, int max_ctx, const float* q,
                   const etx_bf16* k_pool, const etx_bf16* v_pool, const int32_t* block_table, const int32_t* row_seq,
                   const int32_t* row_pos, int n_rows, int max_seq_len, float* workspace, int ws_rows,
                   EtxAttnShape shape, void* stream);

// etx_attn_rows with RoPE and the KV append folded in, for decode rows (each row the next
// token of its own sequence, whose k and v are not yet in the cache): qkv (n_rows,
// q_dim + 2 kv_dim) f32 is the QKV projection's output (after the Qwen biases and QK-norm
// where the model has them); each block rotates its query heads and, for the row's own
// position, its KV head's key as etx_rope_kv_append does (rope.h: the same angles from
// inv_freq, the same products, so the same bits), appends k and v to the pools and
// attends. Equal to etx_rope_kv_append followed by etx_attn_rows, bit for bit, with one
// launch less. Rows of one sequence in one call (a prefill chunk) would read keys another
// block is writing: those take the two launches.
void etx_attn_rows_rope(etx_bf16* out, float* scores, const int32_t* cap_row, int max_ctx, const float* qkv,
                        etx_bf16* k_pool, etx_bf16* v_pool, const int32_t* block_table, const int32_t* row_seq,
                        const int32_t* row_pos, const float* inv_freq, int n_rows, int max_seq_len, float* workspace,
                        int ws_rows, EtxAttnShape shape, void* stream);
// Its napkin math: etx_attn_rows_cost's, plus each row's k and v read and appended.
EtxCost etx_attn_rows_rope_cost(int n_rows, int len, int max_seq_len, EtxAttnShape shape, int capture, int sms);

// The napkin math of etx_attn_rows (cost.h) for n_rows rows that each attend len
// positions (len <= max_seq_len) on a card of `sms` SMs: K and V of every position read
// once per row (2 kv_dim bf16 each; the rows of one sequence re-read them, assumed from
// DRAM), q read and the output written once, the split workspace written and read back
// and the merge launch when a row has several blocks (else none), the captured scores
// written when `capture`; 4 n_heads head_dim FLOPs per (row, position) on CUDA cores;
// blocks (KV head, row, z) of which those holding one of the row's splits have work.
EtxCost etx_attn_rows_cost(int n_rows, int len, int max_seq_len, EtxAttnShape shape, int capture, int sms);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_ATTENTION_H
