/*
 * rope.cu — RoPE (Hugging Face rotate-half) fused with the append of k and v to the
 * paged KV cache:
 *   q_out[r] = rope(q[r]);  K[table[s][p / bs]][p % bs] = bf16(rope(k[r]));  V[...] = bf16(v[r])
 *
 * One block per row. The row's hd/2 angles are computed once into shared memory, as the
 * CPU does (host/cpu/cpu_ops.c rope_tables: the float product (float)pos * inv_freq[i], then
 * cosf/sinf); then each thread takes one rotation pair (i, i + hd/2) of one q or k head,
 * then the v copy. Traffic per row:
 * (q_dim + 2 kv_dim) * 4 read, q_dim * 4 + 2 kv_dim * 2 written bytes; inv_freq from L1.
 *
 * A decode batch does the same inside its attention launch (attention.cu, ROPE): the same
 * angles and products, so the same bits; this kernel serves prefill chunks.
 *
 * Twin: host/cpu/cpu_ops.c rope_tables + rope_apply; test: tests/kernels/test_layer_kernels.c
 * test_rope_append (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "rope.h"
#include "rope.cuh" // the arithmetic, shared with attention.cu's decode variant

#define ROPE_MAX_HALF 256 // head_dim <= 512

// block r: row r
__global__ void rope_kv_append_kernel(float* __restrict__ q_out, __nv_bfloat16* __restrict__ k_pool,
                                      __nv_bfloat16* __restrict__ v_pool, const float* __restrict__ qkv,
                                      const int32_t* __restrict__ row_seq, const int32_t* __restrict__ row_pos,
                                      const int32_t* __restrict__ block_table, const float* __restrict__ inv_freq,
                                      EtxAttnShape sh) {
    ETX_PDL_ENTRY();
    int r = blockIdx.x;
    int hd = sh.head_dim, half = hd / 2;
    int q_dim = sh.n_heads * hd, kv_dim = sh.n_kv_heads * hd;
    int pos = row_pos[r];
    if (pos < 0) return; // a padding row: nothing to rotate or append (the whole block leaves)
    int block = block_table[(size_t)row_seq[r] * sh.max_blocks + pos / sh.block_size];
    size_t slot = ((size_t)block * sh.block_size + pos % sh.block_size) * kv_dim;
    const float* src = qkv + (size_t)r * (q_dim + 2 * kv_dim);
    __shared__ float cos_s[ROPE_MAX_HALF], sin_s[ROPE_MAX_HALF];
    for (int i = threadIdx.x; i < half; i += blockDim.x) etx_rope_angle(pos, inv_freq[i], &cos_s[i], &sin_s[i]);
    __syncthreads();
    // rotation pairs of the q heads, then of the k heads
    int n_pairs = (sh.n_heads + sh.n_kv_heads) * half;
    for (int j = threadIdx.x; j < n_pairs; j += blockDim.x) {
        int head = j / half, i = j % half;
        float c = cos_s[i], s = sin_s[i];
        const float* x = src + head * hd; // k heads follow the q heads in qkv
        float y1, y2;
        etx_rope_rotate(x[i], x[i + half], c, s, &y1, &y2);
        if (head < sh.n_heads) {
            float* q = q_out + (size_t)r * q_dim + head * hd;
            q[i] = y1;
            q[i + half] = y2;
        } else {
            __nv_bfloat16* k = k_pool + slot + (head - sh.n_heads) * hd;
            k[i] = __float2bfloat16(y1);
            k[i + half] = __float2bfloat16(y2);
        }
    }
    const float* v = src + q_dim + kv_dim;
    for (int j = threadIdx.x; j < kv_dim; j += blockDim.x) v_pool[slot + j] = __float2bfloat16(v[j]);
}

extern "C" void etx_rope_kv_append(float* q_out, etx_bf16* k_pool, etx_bf16* v_pool, const float* qkv,
                                   const int32_t* row_seq, const int32_t* row_pos, const int32_t* block_table,
                                   const float* inv_freq, int n_rows, EtxAttnShape shape, void* stream) {
    if (n_rows <= 0) return;
    if (shape.head_dim % 2 != 0 || shape.head_dim / 2 > ROPE_MAX_HALF) {
        fprintf(stderr, "[etx] etx_rope_kv_append: unsupported head_dim %d\n", shape.head_dim);
        abort();
    }
    int n_pairs = (shape.n_heads + shape.n_kv_heads) * shape.head_dim / 2;
    int threads = n_pairs >= 1024 ? 256 : 128;
    ETX_LAUNCH(rope_kv_append_kernel, n_rows, threads, 0, (cudaStream_t)stream, q_out,
               reinterpret_cast<__nv_bfloat16*>(k_pool), reinterpret_cast<__nv_bfloat16*>(v_pool), qkv, row_seq,
               row_pos, block_table, inv_freq, shape);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_rope_kv_append_cost(int n_rows, EtxAttnShape sh) {
    const double q_dim = (double)sh.n_heads * sh.head_dim, kv_dim = (double)sh.n_kv_heads * sh.head_dim;
    EtxCost c = {(double)n_rows * ((q_dim + 2 * kv_dim) * 4 + q_dim * 4 + 2 * kv_dim * 2),
                 (double)n_rows * (q_dim + kv_dim) / 2 * 6, (double)n_rows, (double)n_rows, 1, 0, 0, 0, 0};
    return c;
}
