/*
 * attention.cu — paged, GQA-aware attention of query rows over their sequences' cached
 * keys and values (flash-decoding: the context cut into splits at fixed positions, one
 * block per split, the last block of a row merging them). Decode tokens and prefill positions are the
 * same kind of row (a query at a position attending to positions 0 .. itself), computed
 * by the same kernels in the same order: so a row's output does not depend on the batch,
 * on the prefill chunking, or on whether it is decoded or recomputed (DESIGN §5).
 *
 * Splits: positions [i * L, (i + 1) * L) form split i, L = etx_attn_split_len(max_seq_len),
 * a function of the configured context alone (at least 32 positions, one tile; more when
 * the context would need over ETX_ATTN_MAX_SPLITS splits). A block per (KV head, row)
 * and Z blocks per row along z, block z taking the row's splits z, z + Z, ... up to the
 * row's last non-empty one: Z = min(splits, ceil(2 SMs / (KV heads x rows))), so a batch
 * of one still fills the GPU (at 192 positions, 6 splits x 8 KV heads = 48 blocks instead
 * of the 8 that one 256-position split gave) and a large batch gets a block per row. Z
 * changes which block computes a split, never what the split sums, so a row's bits do
 * not depend on it. The merge adds the row's non-empty splits' partial sums in split
 * order (a split past the row's position would add nothing): with Z > 1 the blocks leave
 * their partials in the workspace and the last of a (KV head, row) to finish (a counter
 * per pair, atomically counted, reset by that block) merges them, so a step has no merge
 * launch (one launch less per layer at small batches, 16 at batch 1).
 *
 * Each block streams its split's keys in tiles of ATT_TILE = 32 positions: a tile of K
 * and V of one KV head is gathered from the pools (block table lookups) into shared
 * memory, converted to f32 once; the scores of every query head of the group against the
 * tile go to shared memory; one warp per head (lane = key) updates the head's running max
 * m and sum l and turns the scores into weights; the threads then rescale their
 * accumulators by exp(m_old - m_new) and add the weighted values. So K and V of a KV head
 * are read from global memory once per (row, split), whatever the number of query heads
 * sharing it. Shared-memory traffic is what bounds the two tile products, so both are
 * register-tiled with 16-byte shared loads: for the scores, lane t of warp w keeps key
 * t's four dims in registers against heads w, w + 4, ...; for the values, thread (head
 * i0, column d) keeps v[t..t+3][d] in registers against its heads' four weights.
 *
 * Merging in place. When the rows alone fill the GPU (Z = 1: a batch of 33 or more rows
 * with 8 KV heads on 132 SMs) the one block of a (KV head, row) folds each split into a
 * running max, sum and output as it ends, with the last block's merge arithmetic in its
 * order (attn_fold_*: one split at a time, explicit fmaf), and writes the output: the
 * split workspace (26 MB a layer at batch 256 on the 1B) goes, and a row's bits are those
 * the workspace merge gives it at any other batch size.
 *
 * RoPE folded in (a decode batch: every row the next token of its own sequence). Each
 * block rotates its query heads from the QKV rows (rope.cu's angles and products, so the
 * same bits as the q it would write), and the block holding the row's last split rotates
 * the key of its KV head and appends key and value to the pools; that position's key and
 * value are then taken from shared memory, not re-read through the read-only path. One
 * launch less per layer (rope.cu stays for prefill chunks, whose rows read each other's
 * keys).
 *
 * Prefill cost: a prompt of n positions reads K/V n (n + 1) / 2 times per KV head (from
 * L2 after the first); a kernel that shares each tile among the rows of a chunk while
 * keeping each row's tile order is the performance issue's to write.
 *
 * Twin: host/cpu/cpu_ops.c attention_head; tests: tests/kernels/test_layer_kernels.c
 * test_decode_attention, test_attention_splits, test_prefill_attention,
 * test_attention_rows_are_batch_invariant, test_attention_rope_decode (docs/ops.md).
 */
#include <math.h>

#include "attention.h"
#include "cuda_common.cuh"
#include "device.h"
#include "reduce.cuh"
#include "rope.cuh" // rope.cu's arithmetic, for the decode variant

#define ATT_TILE 32 // keys per tile (= warp size: lane t owns key t in the softmax update)
#define ATT_THREADS 128

// fully unrolled accumulator loops keep acc[] in registers (nvcc); g++ needs no hint
#ifdef ETX_SIMT
#define ATT_UNROLL
#else
#define ATT_UNROLL _Pragma("unroll")
#endif

#define K_LD(HD) ((HD) + 4) // k_s row stride: 16-byte rows, lanes on keys t hit distinct banks

struct alignas(16) bf16x8 {
    __nv_bfloat16 v[8];
};
struct alignas(16) f32x4 {
    float v[4];
};

// Gathers keys/values tb .. tb + nt - 1 of KV head kvh (through the sequence's block
// table row) into k_s (ATT_TILE, K_LD(HD)) f32 and v_s (ATT_TILE, HD) f32; rows
// t >= nt are zeroed. 16-byte loads (8 bf16; HD, kv_dim and the head offset are multiples
// of 8 and the pools 16-byte aligned); consecutive threads on consecutive 16-byte pieces.
// p_new >= 0 (RoPE folded in): position p_new's key and value are not read from the pools
// (this launch writes them there) but taken from knew_s / vnew_s, the bf16 values the
// block appended, as f32.
template <int HD>
__device__ void load_kv_tile(float (*k_s)[K_LD(HD)], float (*v_s)[HD], const __nv_bfloat16* __restrict__ k_pool,
                             const __nv_bfloat16* __restrict__ v_pool, const int32_t* __restrict__ table, int bs,
                             int kv_dim, int kvh, int tb, int nt, int p_new, const float* knew_s,
                             const float* vnew_s) {
    constexpr int PER_ROW = HD / 8;
    for (int e = threadIdx.x; e < ATT_TILE * PER_ROW; e += blockDim.x) {
        int t = e / PER_ROW, d = 8 * (e % PER_ROW);
        bf16x8 k8, v8;
        if (t < nt && tb + t == p_new) {
            for (int j = 0; j < 8; j++) {
                k_s[t][d + j] = knew_s[d + j];
                v_s[t][d + j] = vnew_s[d + j];
            }
            continue;
        }
        if (t < nt) {
            int p = tb + t;
            size_t off = ((size_t)table[p / bs] * bs + p % bs) * kv_dim + (size_t)kvh * HD + d;
            k8 = *reinterpret_cast<const bf16x8*>(k_pool + off);
            v8 = *reinterpret_cast<const bf16x8*>(v_pool + off);
        } else {
            for (int j = 0; j < 8; j++) k8.v[j] = v8.v[j] = __float2bfloat16(0.0f);
        }
        for (int j = 0; j < 8; j++) {
            k_s[t][d + j] = __bfloat162float(k8.v[j]);
            v_s[t][d + j] = __bfloat162float(v8.v[j]);
        }
    }
}


// Scores of one tile: s_s[i][t] = scale * q_s[i] . k_s[t] for heads i < n_rows, or
// -INFINITY where key t >= nt. Lane t of warp w computes heads w, w + 4, ... (at most
// MAXR / 4) with key t's dims in registers, 4 at a time, each dot product in dim order.
// capture (may be NULL): the scores also go to capture[i * ld_cap + tb + t].
template <int HD, int MAXR>
__device__ void tile_scores(float (*s_s)[ATT_TILE], float (*q_s)[HD], float (*k_s)[K_LD(HD)], int n_rows, int nt,
                            float scale, int tb, float* capture, size_t ld_cap) {
    constexpr int WARPS = ATT_THREADS / 32;
    constexpr int RPT = (MAXR + WARPS - 1) / WARPS;
    int t = threadIdx.x % 32, w = threadIdx.x / 32;
    float dot[RPT];
    ATT_UNROLL
    for (int j = 0; j < RPT; j++) dot[j] = 0.0f;
    const f32x4* kr = reinterpret_cast<const f32x4*>(k_s[t]);
    for (int d4 = 0; d4 < HD / 4; d4++) {
        f32x4 kv = kr[d4];
        ATT_UNROLL
        for (int j = 0; j < RPT; j++) {
            int i = w + j * WARPS;
            if (i < n_rows) {
                f32x4 qv = reinterpret_cast<const f32x4*>(q_s[i])[d4];
                dot[j] += qv.v[0] * kv.v[0] + qv.v[1] * kv.v[1] + qv.v[2] * kv.v[2] + qv.v[3] * kv.v[3];
            }
        }
    }
    ATT_UNROLL
    for (int j = 0; j < RPT; j++) {
        int i = w + j * WARPS;
        if (i < n_rows) {
            bool ok = t < nt;
            float sc = scale * dot[j];
            s_s[i][t] = ok ? sc : -INFINITY;
            if (capture && ok) capture[i * ld_cap + tb + t] = sc;
        }
    }
}

// Values of one tile, after softmax_update: for the thread's rows i = threadIdx.x / HD +
// j * (ATT_THREADS / HD) < n_rows and column d = threadIdx.x % HD,
//   acc[j] = acc[j] * alpha[i] + sum_t p[i][t] v[t][d]
// over the whole tile (masked keys have p = 0 and zeroed values), four keys at a time.
template <int HD, int ACC>
__device__ void tile_values(float* acc, float (*s_s)[ATT_TILE], float (*v_s)[HD], const float* alpha_s, int n_rows) {
    constexpr int STEP = ATT_THREADS / HD;
    int d = threadIdx.x % HD, i0 = threadIdx.x / HD;
    ATT_UNROLL
    for (int j = 0; j < ACC; j++)
        if (i0 + j * STEP < n_rows) acc[j] *= alpha_s[i0 + j * STEP];
    for (int t4 = 0; t4 < ATT_TILE / 4; t4++) {
        float v0 = v_s[4 * t4][d], v1 = v_s[4 * t4 + 1][d];
        float v2 = v_s[4 * t4 + 2][d], v3 = v_s[4 * t4 + 3][d];
        ATT_UNROLL
        for (int j = 0; j < ACC; j++) {
            int i = i0 + j * STEP;
            if (i < n_rows) {
                f32x4 p = reinterpret_cast<const f32x4*>(s_s[i])[t4];
                acc[j] += p.v[0] * v0 + p.v[1] * v1 + p.v[2] * v2 + p.v[3] * v3;
            }
        }
    }
}

// Online-softmax update of rows 0 .. n_rows - 1 of s_s (scores, -INFINITY where masked)
// against one tile: one warp per row, lane t on key t. Leaves the weights
// exp(s - m_new) in s_s, the rescale factor of the old accumulators in alpha_s, and the
// running max / sum in m_s / l_s. A row with no unmasked key so far keeps m = -inf,
// weights 0 and alpha 1.
template <int LD>
__device__ void softmax_update(float (*s_s)[LD], float* m_s, float* l_s, float* alpha_s, int n_rows) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    for (int i = warp; i < n_rows; i += n_warps) {
        float sc = s_s[i][lane];
        float m_old = m_s[i];
        float m_new = fmaxf(m_old, etx_warp_max(sc));
        float p = m_new == -INFINITY ? 0.0f : expf(sc - m_new);
        float sum = etx_warp_sum(p);
        s_s[i][lane] = p;
        // every lane read m_s[i] above; a shuffle orders no memory, so without this barrier
        // lane 0's write below would be a write-after-read hazard on m_s[i] (and l_s[i])
        __syncwarp();
        if (lane == 0) {
            float a = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
            alpha_s[i] = a;
            l_s[i] = l_s[i] * a + sum;
            m_s[i] = m_new;
        }
    }
}

// The merge of a row's splits, one split at a time in split order (the online form, so a
// block that runs all of a row's splits can fold each one in as it ends, with no
// workspace): split i's max m_i, sum l_i and unnormalised output a_i (one element) enter
// the running (M, L, o) as
//   M' = max(M, m_i); L = L e^(M - M') + l_i e^(m_i - M'); o = o e^(M - M') + a_i e^(m_i - M')
// (an empty split, l_i = 0, is skipped); the output is o / L (0 when L = 0). Explicit fmaf,
// so that the workspace merge and the in-place merge compute the same bits.
struct AttnFold {
    float M, L;
};
__device__ __forceinline__ void attn_fold_scales(AttnFold& f, float m_i, float l_i, float* a, float* b) {
    const float M = fmaxf(f.M, m_i);
    *a = f.M == -INFINITY ? 0.0f : expf(f.M - M);
    *b = expf(m_i - M);
    f.L = fmaf(f.L, *a, l_i * *b);
    f.M = M;
}
__device__ __forceinline__ float attn_fold_out(float o, float a, float acc_i, float b) { return fmaf(o, a, acc_i * b); }

// ----------------------------------------------------------------------------
// rows

// The splits a row of len positions uses (0 for a padding row), the same for the split
// kernel and the merge; with one split in the context, that one (possibly empty), whose
// block writes the output directly.
__device__ static int attn_row_splits(int len, int split_len, int n_splits) {
    return n_splits == 1 ? 1 : min(n_splits, (len + split_len - 1) / split_len);
}

// Block (kvh, r, z): the G = n_heads / n_kv_heads query heads of KV head kvh of row r
// (block table row row_seq[r], position row_pos[r]; len = row_pos[r] + 1, 0 for a
// padding row), for each split s = z, z + gridDim.z, ... of the row's splits, against
// positions [t0, t1) = [s * L, min(len, (s + 1) * L)).
//   n_splits == 1: out[r, h] = bf16(acc / l)
//   else: ws_m/ws_l (n_rows, n_heads, n_splits), ws_acc (n_rows, n_heads, n_splits, HD) get
//   the split's max, sum and unnormalised acc = sum_t exp(score_t - m) v_t (splits past
//   the row's position are neither written nor read).
// capture (NULL: none): row r's scores go to capture row cap_row[r] (cap_row NULL: r;
// -1: none) of (.., n_heads, max_ctx).
// Traffic: every K/V row of the split read once (2 * HD * 2 bytes per position), q read
// once, scores (when captured) written once.
//
// ROPE (decode rows, each its own sequence: etx_attn_rows_rope): q is the qkv rows (f32,
// q_dim + 2 kv_dim wide) before RoPE; the block rotates its G query heads as rope.cu does
// (the same angles and products, so the same bits as the q it would have written), and
// the block whose split holds the row's position rotates its KV head's key, appends key
// and value to the pools (k_out, v_out) and uses them from shared memory for that
// position (the pools are read through the read-only path, which need not see this
// launch's own writes). One launch less per layer than rope.cu + this kernel.
template <int HD, bool ROPE>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_rows_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ scores, const int32_t* __restrict__ cap_row,
                     int max_ctx, float* __restrict__ ws, const float* __restrict__ q,
                     const __nv_bfloat16* __restrict__ k_pool, const __nv_bfloat16* __restrict__ v_pool,
                     const int32_t* __restrict__ block_table, const int32_t* __restrict__ row_seq,
                     const int32_t* __restrict__ row_pos, EtxAttnShape sh, int split_len, int n_splits, float scale,
                     const float* __restrict__ inv_freq, __nv_bfloat16* k_out, __nv_bfloat16* v_out,
                     int merge_local, int* counters) {
    ETX_PDL_ENTRY();
    constexpr int ACC = ETX_ATTN_MAX_GROUP * HD / ATT_THREADS; // accumulators per thread
    __shared__ __align__(16) float q_s[ETX_ATTN_MAX_GROUP][HD];
    __shared__ __align__(16) float k_s[ATT_TILE][K_LD(HD)];
    __shared__ __align__(16) float v_s[ATT_TILE][HD];
    __shared__ __align__(16) float s_s[ETX_ATTN_MAX_GROUP][ATT_TILE];
    __shared__ float m_s[ETX_ATTN_MAX_GROUP], l_s[ETX_ATTN_MAX_GROUP], alpha_s[ETX_ATTN_MAX_GROUP];

    int kvh = blockIdx.x, r = blockIdx.y, tid = threadIdx.x;
    int G = sh.n_heads / sh.n_kv_heads, kv_dim = sh.n_kv_heads * HD, bs = sh.block_size;
    int len = row_pos[r] + 1; // 0: a padding row
    const int n_used = attn_row_splits(len, split_len, n_splits);
    const int32_t* table = block_table + (size_t)row_seq[r] * sh.max_blocks;
    size_t head0 = (size_t)r * sh.n_heads + (size_t)kvh * G; // first query head of the group
    int cap = !scores ? -1 : cap_row ? cap_row[r] : r;
    float* capture = cap >= 0 ? scores + ((size_t)cap * sh.n_heads + (size_t)kvh * G) * max_ctx : NULL;

    __shared__ __align__(16) float knew_s[ROPE ? HD : 1], vnew_s[ROPE ? HD : 1];
    int p_new = -1; // ROPE: the row's own position, whose key and value come from knew_s, vnew_s
    if (ROPE) {
        __shared__ float cos_s[HD / 2], sin_s[HD / 2];
        const int pos = len - 1, half = HD / 2, q_dim = sh.n_heads * HD;
        const float* src = q + (size_t)r * (q_dim + 2 * kv_dim); // the row's qkv
        if (pos >= 0) {
            for (int i = tid; i < half; i += ATT_THREADS) etx_rope_angle(pos, inv_freq[i], &cos_s[i], &sin_s[i]);
        }
        __syncthreads();
        for (int j = tid; j < (G + 1) * half && pos >= 0; j += ATT_THREADS) {
            const int hh = j / half, i = j % half; // hh < G: query head kvh G + hh; G: the key
            const float* x = hh < G ? src + (size_t)(kvh * G + hh) * HD : src + q_dim + (size_t)kvh * HD;
            float y1, y2;
            etx_rope_rotate(x[i], x[i + half], cos_s[i], sin_s[i], &y1, &y2);
            if (hh < G) {
                q_s[hh][i] = y1;
                q_s[hh][i + half] = y2;
            } else {
                const __nv_bfloat16 k1 = __float2bfloat16(y1), k2 = __float2bfloat16(y2);
                knew_s[i] = __bfloat162float(k1);
                knew_s[i + half] = __bfloat162float(k2);
            }
        }
        const float* v = src + q_dim + kv_dim + (size_t)kvh * HD;
        for (int d = tid; d < HD && pos >= 0; d += ATT_THREADS) vnew_s[d] = __bfloat162float(__float2bfloat16(v[d]));
        __syncthreads();
        if (pos >= 0) {
            p_new = pos;
            // the append, by the one block of (kvh, r) whose splits include the last
            const int last = n_used - 1;
            if (last >= 0 && last % gridDim.z == blockIdx.z) {
                const size_t slot = ((size_t)table[pos / bs] * bs + pos % bs) * kv_dim + (size_t)kvh * HD;
                for (int d = tid; d < HD; d += ATT_THREADS) {
                    k_out[slot + d] = __float2bfloat16(knew_s[d]);
                    v_out[slot + d] = __float2bfloat16(vnew_s[d]);
                }
            }
        }
    } else {
        for (int e = tid; e < G * HD; e += ATT_THREADS) q_s[e / HD][e % HD] = q[head0 * HD + e];
    }
    // the block's G heads of the output: bf16(v / l) of its elements e = tid + j ATT_THREADS,
    // l per head (0 when nothing was attended)
    auto write_out = [&](const float(&v)[ACC], const float* l_head) {
        ATT_UNROLL
        for (int j = 0; j < ACC; j++) {
            const int e = tid + j * ATT_THREADS;
            if (e < G * HD) {
                const float l = l_head[e / HD];
                out[head0 * HD + e] = __float2bfloat16(l > 0.0f ? v[j] / l : 0.0f);
            }
        }
    };
    // merge_local (gridDim.z = 1: this block runs every split of the row): each split is
    // folded into fm / fo as it ends (attn_fold_*), in split order, and the block writes the
    // output itself: no workspace, the workspace merge's bits
    __shared__ float fold_a[ETX_ATTN_MAX_GROUP], fold_b[ETX_ATTN_MAX_GROUP];
    AttnFold fm = {-INFINITY, 0.0f}; // threads < G: head tid's running max and sum
    float fo[ACC];
    ATT_UNROLL
    for (int j = 0; j < ACC; j++) fo[j] = 0.0f;
    // block z takes splits z, z + gridDim.z, ...: which block runs a split changes nothing
    // in its sums (its positions are fixed), so gridDim.z is free to follow the batch
    for (int split = blockIdx.z; split < n_used; split += gridDim.z) {
        int t0 = split * split_len;
        int t1 = min(len, t0 + split_len);
        if (tid < G) {
            m_s[tid] = -INFINITY;
            l_s[tid] = 0.0f;
        }
        float acc[ACC];
        ATT_UNROLL
        for (int j = 0; j < ACC; j++) acc[j] = 0.0f;
        __syncthreads();

        for (int tb = t0; tb < t1; tb += ATT_TILE) {
            int nt = min(ATT_TILE, t1 - tb);
            load_kv_tile<HD>(k_s, v_s, k_pool, v_pool, table, bs, kv_dim, kvh, tb, nt, p_new, knew_s, vnew_s);
            __syncthreads();
            tile_scores<HD, ETX_ATTN_MAX_GROUP>(s_s, q_s, k_s, G, nt, scale, tb, capture, (size_t)max_ctx);
            __syncthreads();
            softmax_update<ATT_TILE>(s_s, m_s, l_s, alpha_s, G);
            __syncthreads();
            tile_values<HD, ACC>(acc, s_s, v_s, alpha_s, G);
            __syncthreads(); // the next tile overwrites k_s, v_s, s_s
        }

        if (n_splits == 1) {
            write_out(acc, l_s);
            return;
        }
        if (merge_local) {
            if (tid < G) {
                if (l_s[tid] == 0.0f) { // an empty split adds nothing (b = -1 marks it)
                    fold_a[tid] = 1.0f, fold_b[tid] = -1.0f;
                } else {
                    attn_fold_scales(fm, m_s[tid], l_s[tid], &fold_a[tid], &fold_b[tid]);
                }
            }
            __syncthreads();
            ATT_UNROLL
            for (int j = 0; j < ACC; j++) {
                int e = tid + j * ATT_THREADS;
                if (e < G * HD && fold_b[e / HD] >= 0.0f)
                    fo[j] = attn_fold_out(fo[j], fold_a[e / HD], acc[j], fold_b[e / HD]);
            }
            __syncthreads(); // the next split resets m_s, l_s; fold_a/b are rewritten
            continue;
        }
        size_t n_hs = (size_t)gridDim.y * sh.n_heads * n_splits; // entries of ws_m
        float* ws_m = ws;
        float* ws_l = ws + n_hs;
        float* ws_acc = ws + 2 * n_hs;
        if (tid < G) {
            size_t hs = (head0 + tid) * n_splits + split;
            ws_m[hs] = m_s[tid];
            ws_l[hs] = l_s[tid];
        }
        ATT_UNROLL
        for (int j = 0; j < ACC; j++) {
            int e = tid + j * ATT_THREADS;
            if (e < G * HD) {
                size_t hs = (head0 + e / HD) * n_splits + split;
                ws_acc[hs * HD + e % HD] = acc[j];
            }
        }
        __syncthreads(); // the next split resets m_s, l_s (read above by threads < G)
    }
    if (n_splits > 1 && !merge_local) {
        // The last of the row's Z blocks to finish (a counter per (row, KV head), zero
        // between launches) merges the row's splits for its G heads from the workspace, in
        // split order with attn_fold_* (the in-place merge's arithmetic), and resets the
        // counter: no merge launch. The partials were published with a fence before the
        // count; the last block fences again before reading them (volatile: not from L1).
        __shared__ int s_last;
        __threadfence();
        __syncthreads();
        int* cnt = counters + (size_t)r * sh.n_kv_heads + kvh;
        if (tid == 0) s_last = atomicAdd(cnt, 1) == (int)gridDim.z - 1;
        __syncthreads();
        if (!s_last) return; // the same for the whole block
        __threadfence();
        const size_t n_hs = (size_t)gridDim.y * sh.n_heads * n_splits;
        const volatile float* ws_m = ws;
        const volatile float* ws_l = ws + n_hs;
        const volatile float* ws_acc = ws + 2 * n_hs;
        for (int e = tid; e < G * HD; e += ATT_THREADS) {
            const size_t hs0 = (head0 + e / HD) * n_splits;
            AttnFold f = {-INFINITY, 0.0f};
            float o = 0.0f;
            for (int i = 0; i < n_used; i++) {
                const float l_i = ws_l[hs0 + i];
                if (l_i == 0.0f) continue;
                float a, b;
                attn_fold_scales(f, ws_m[hs0 + i], l_i, &a, &b);
                o = attn_fold_out(o, a, ws_acc[(hs0 + i) * HD + e % HD], b);
            }
            out[head0 * HD + e] = __float2bfloat16(f.L > 0.0f ? o / f.L : 0.0f);
        }
        if (tid == 0) *cnt = 0;
        return;
    }
    if (merge_local) {
        __shared__ float fold_l[ETX_ATTN_MAX_GROUP];
        if (tid < G) fold_l[tid] = fm.L;
        __syncthreads();
        write_out(fo, fold_l);
    }
}

extern "C" int etx_attn_split_len(int max_seq_len) {
    if (max_seq_len < 1) max_seq_len = 1;
    int len = ETX_ATTN_MIN_SPLIT;
    // more than ETX_ATTN_MAX_SPLITS splits of the minimum: the fewest tile multiples that fit
    if (etx_ceil_div(max_seq_len, len) > ETX_ATTN_MAX_SPLITS)
        len = ATT_TILE * etx_ceil_div(etx_ceil_div(max_seq_len, ETX_ATTN_MAX_SPLITS), ATT_TILE);
    return len;
}

extern "C" int etx_attn_n_splits(int max_seq_len) {
    return etx_ceil_div(max_seq_len < 1 ? 1 : max_seq_len, etx_attn_split_len(max_seq_len));
}

// Ints of the workspace's counters (one per (row, head) of n_rows rows: KV heads are
// fewer), first in the workspace and at the same place for every launch, rounded to 256
// bytes so that the partials after them stay aligned.
static size_t attn_counter_bytes(int n_rows, int n_heads) {
    return ((size_t)n_rows * n_heads * sizeof(int) + 255) & ~(size_t)255;
}

extern "C" size_t etx_attn_workspace_bytes(int n_rows, int n_heads, int head_dim, int max_seq_len) {
    const int n_splits = etx_attn_n_splits(max_seq_len);
    if (n_splits <= 1 || n_rows <= 0) return 0;
    return attn_counter_bytes(n_rows, n_heads) + (size_t)n_rows * n_heads * n_splits * (2 + (size_t)head_dim) * sizeof(float);
}

// Blocks per (KV head, row): enough to fill the GPU at small batches (each loops over the
// splits z, z + Z, ...), one when the rows alone fill it (2 blocks per SM).
static int attn_blocks_per_row(int n_splits, int sms, int n_kv_heads, int n_rows) {
    return min(n_splits, max(1, etx_ceil_div(2 * sms, n_kv_heads * n_rows)));
}

extern "C" EtxCost etx_attn_rows_rope_cost(int n_rows, int len, int max_seq_len, EtxAttnShape sh, int capture,
                                           int sms) {
    EtxCost c = etx_attn_rows_cost(n_rows, len, max_seq_len, sh, capture, sms);
    // q read from qkv (the same bytes), plus each row's k and v read (f32) and appended (bf16)
    const double kv_dim = (double)sh.n_kv_heads * sh.head_dim;
    c.bytes += (double)n_rows * kv_dim * (2 * 4 + 2 * 2);
    c.flops += (double)n_rows * ((double)sh.n_heads + sh.n_kv_heads) * sh.head_dim / 2 * 6;
    return c;
}

extern "C" EtxCost etx_attn_rows_cost(int n_rows, int len, int max_seq_len, EtxAttnShape sh, int capture, int sms) {
    EtxCost c = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (n_rows <= 0) return c;
    const int split = etx_attn_split_len(max_seq_len), n_splits = etx_attn_n_splits(max_seq_len);
    const double q_dim = (double)sh.n_heads * sh.head_dim, kv_dim = (double)sh.n_kv_heads * sh.head_dim;
    const double pos = (double)n_rows * len;
    const int Z = attn_blocks_per_row(n_splits, sms, sh.n_kv_heads, n_rows);
    const int used = min(n_splits, etx_ceil_div(len > 0 ? len : 1, split)); // the row's non-empty splits
    const int merge = n_splits > 1 && Z > 1; // else one block per row merges in place
    c.bytes = pos * kv_dim * 2 * 2 + n_rows * q_dim * (4 + 2);
    // several blocks per row: their partials through the workspace, out and back (the last
    // block of a row merges them: no launch of its own)
    if (merge) c.bytes += 2.0 * n_rows * sh.n_heads * used * (sh.head_dim + 2) * 4;
    if (capture) c.bytes += pos * sh.n_heads * 4;
    c.flops = 4.0 * pos * q_dim;
    // blocks: Z per (KV head, row), of which those with one of the row's splits work
    c.busy = (double)sh.n_kv_heads * n_rows * min(Z, used);
    c.ctas = (double)sh.n_kv_heads * n_rows * Z;
    c.launches = 1;
    return c;
}

static float attn_scale(int hd) { return (float)pow((double)hd, -0.5); } // as host/cpu/cpu_forward.c

static void check_shape(EtxAttnShape sh, const char* who) {
    int ok = (sh.head_dim == 64 || sh.head_dim == 128) && sh.n_kv_heads > 0 && sh.n_heads % sh.n_kv_heads == 0 &&
             sh.n_heads / sh.n_kv_heads <= ETX_ATTN_MAX_GROUP && sh.block_size > 0;
    if (!ok) {
        fprintf(stderr, "[etx] %s: unsupported shape (n_heads %d, n_kv_heads %d, head_dim %d, block_size %d)\n", who,
                sh.n_heads, sh.n_kv_heads, sh.head_dim, sh.block_size);
        abort();
    }
}

// rope: q is the qkv rows and the kernel applies RoPE and appends (attn_rows_kernel's ROPE).
static void attn_rows_run(etx_bf16* out, float* scores, const int32_t* cap_row, int max_ctx, const float* q,
                          const etx_bf16* k_pool, const etx_bf16* v_pool, const int32_t* block_table,
                          const int32_t* row_seq, const int32_t* row_pos, int n_rows, int max_seq_len,
                          float* workspace, int ws_rows, EtxAttnShape sh, const float* inv_freq, void* stream) {
    check_shape(sh, "etx_attn_rows");
    if (n_rows <= 0) return;
    const int split_len = etx_attn_split_len(max_seq_len), n_splits = etx_attn_n_splits(max_seq_len);
    // every row one block (a large batch): each merges its splits in place, no workspace
    const int all_local = n_splits > 1 && attn_blocks_per_row(n_splits, etx_dev_sm_count(), sh.n_kv_heads, n_rows) == 1;
    if (n_splits > 1 && !all_local && (!workspace || ws_rows < 1)) {
        fprintf(stderr, "[etx] etx_attn_rows: %d splits need a workspace (%p, %d rows)\n", n_splits,
                (void*)workspace, ws_rows);
        abort();
    }
    // rows per launch: what the workspace holds (all of them when each row gets one block,
    // which merges in place and writes no workspace)
    const int slice = n_splits > 1 && !all_local ? ws_rows : n_rows;
    // the workspace: the counters (zero between launches), then the partials
    int* counters = n_splits > 1 && !all_local ? reinterpret_cast<int*>(workspace) : NULL;
    float* parts = counters ? workspace + attn_counter_bytes(ws_rows, sh.n_heads) / sizeof(float) : workspace;
    const int q_dim = sh.n_heads * sh.head_dim, kv_dim = sh.n_kv_heads * sh.head_dim;
    const int q_stride = inv_freq ? q_dim + 2 * kv_dim : q_dim; // floats per row of q (qkv with RoPE)
    const float scale = attn_scale(sh.head_dim);
    const cudaStream_t st = (cudaStream_t)stream;
    // the pools as written by the RoPE variant (the same memory; read through k_pool, v_pool)
    __nv_bfloat16* ko = inv_freq ? reinterpret_cast<__nv_bfloat16*>(const_cast<etx_bf16*>(k_pool)) : NULL;
    __nv_bfloat16* vo = inv_freq ? reinterpret_cast<__nv_bfloat16*>(const_cast<etx_bf16*>(v_pool)) : NULL;
    for (int r0 = 0; r0 < n_rows; r0 += slice) {
        const int n = n_rows - r0 < slice ? n_rows - r0 : slice;
        __nv_bfloat16* o = reinterpret_cast<__nv_bfloat16*>(out) + (size_t)r0 * q_dim;
        const __nv_bfloat16* kp = reinterpret_cast<const __nv_bfloat16*>(k_pool);
        const __nv_bfloat16* vp = reinterpret_cast<const __nv_bfloat16*>(v_pool);
        // without cap_row, row r's capture row is r: the slice's rows start at r0
        float* sc = scores && !cap_row ? scores + (size_t)r0 * sh.n_heads * max_ctx : scores;
        const int32_t* cr = cap_row ? cap_row + r0 : NULL;
        const float* qs = q + (size_t)r0 * q_stride;
        // blocks per row: enough to fill the GPU at small batches (each loops over the
        // splits z, z + Z, ...), one when the rows alone fill it
        const int Z = attn_blocks_per_row(n_splits, etx_dev_sm_count(), sh.n_kv_heads, n);
        // one block per row: it merges the row's splits itself (no workspace, no merge launch)
        const int merge_local = n_splits > 1 && Z == 1;
        dim3 grid(sh.n_kv_heads, n, Z);
#define ATT_LAUNCH(HD, ROPE)                                                                                          \
    ETX_LAUNCH((attn_rows_kernel<HD, ROPE>), grid, ATT_THREADS, 0, st, o, sc, cr, max_ctx, parts, qs, kp, vp,         \
               block_table, row_seq + r0, row_pos + r0, sh, split_len, n_splits, scale, inv_freq, ko, vo, merge_local, \
               counters)
        if (sh.head_dim == 64) {
            if (inv_freq) ATT_LAUNCH(64, true);
            else ATT_LAUNCH(64, false);
        } else {
            if (inv_freq) ATT_LAUNCH(128, true);
            else ATT_LAUNCH(128, false);
        }
#undef ATT_LAUNCH
        CUDA_CHECK_LAUNCH();
    }
}

extern "C" void etx_attn_rows(etx_bf16* out, float* scores, const int32_t* cap_row, int max_ctx, const float* q,
                              const etx_bf16* k_pool, const etx_bf16* v_pool, const int32_t* block_table,
                              const int32_t* row_seq, const int32_t* row_pos, int n_rows, int max_seq_len,
                              float* workspace, int ws_rows, EtxAttnShape sh, void* stream) {
    attn_rows_run(out, scores, cap_row, max_ctx, q, k_pool, v_pool, block_table, row_seq, row_pos, n_rows, max_seq_len,
                  workspace, ws_rows, sh, NULL, stream);
}

extern "C" void etx_attn_rows_rope(etx_bf16* out, float* scores, const int32_t* cap_row, int max_ctx,
                                   const float* qkv, etx_bf16* k_pool, etx_bf16* v_pool, const int32_t* block_table,
                                   const int32_t* row_seq, const int32_t* row_pos, const float* inv_freq, int n_rows,
                                   int max_seq_len, float* workspace, int ws_rows, EtxAttnShape sh, void* stream) {
    if (!inv_freq) {
        fprintf(stderr, "[etx] etx_attn_rows_rope: no inv_freq\n");
        abort();
    }
    attn_rows_run(out, scores, cap_row, max_ctx, qkv, k_pool, v_pool, block_table, row_seq, row_pos, n_rows,
                  max_seq_len, workspace, ws_rows, sh, inv_freq, stream);
}
