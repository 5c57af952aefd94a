/*
 * rope.h — RoPE fused with the paged KV-cache append (kernels/rope.cu): after the fused
 * QKV GEMM, rotates q and k by their positions, keeps q in f32 for attention and stores
 * k and v as bf16 in the layer's K/V pools, in the block the sequence's table names.
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_ROPE_H
#define ETX_KERNELS_ROPE_H

#include <stdint.h>

#include "attention.h" // EtxAttnShape
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// For each row r < n_rows, at position p = row_pos[r] of sequence s = row_seq[r], with
// c_i = cosf((float)p * inv_freq[i]), s_i = sinf(...) and rotate-half per head
// (x[i], x[i + hd/2]) -> (x[i] c_i - x[i + hd/2] s_i, x[i + hd/2] c_i + x[i] s_i):
//   q_out[r]                     = rope(q part of qkv[r])                  f32
//   k_pool[b][p % bs][kvh][:]    = bf16(rope(k part of qkv[r], head kvh))  b = block_table[s * max_blocks + p / bs]
//   v_pool[b][p % bs][kvh][:]    = bf16(v part of qkv[r], head kvh)
// A row with row_pos[r] < 0 is padding (a CUDA graph's unused batch slot): it writes
// nothing, neither q_out[r] nor the pools.
// qkv: (n_rows, q_dim + 2 kv_dim) f32; q_out: (n_rows, q_dim) f32; inv_freq: (head_dim/2);
// pools: (n_blocks, block_size, n_kv_heads, head_dim) bf16; block_table: (n_seqs, max_blocks).
void etx_rope_kv_append(float* q_out, etx_bf16* k_pool, etx_bf16* v_pool, const float* qkv, const int32_t* row_seq,
                        const int32_t* row_pos, const int32_t* block_table, const float* inv_freq, int n_rows,
                        EtxAttnShape shape, void* stream);

// The napkin math of etx_rope_kv_append (cost.h): per row the qkv row read, q written
// (f32), k and v appended (bf16); 6 FLOPs per rotated pair.
EtxCost etx_rope_kv_append_cost(int n_rows, EtxAttnShape shape);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_ROPE_H
