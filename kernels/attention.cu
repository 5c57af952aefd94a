/*
 * attention.cu — paged, GQA-aware attention of query rows over their sequences' cached
 * keys and values (flash-decoding: the context cut into splits at fixed positions, one
 * block per split, plus a merge kernel). Decode tokens and prefill positions are the
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
 * order (a split past the row's position would add nothing).
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
 * Prefill cost: a prompt of n positions reads K/V n (n + 1) / 2 times per KV head (from
 * L2 after the first); a kernel that shares each tile among the rows of a chunk while
 * keeping each row's tile order is the performance issue's to write.
 *
 * Twin: host/cpu/cpu_ops.c attention_head; tests: tests/kernels/test_layer_kernels.c
 * test_decode_attention, test_attention_splits, test_prefill_attention,
 * test_attention_rows_are_batch_invariant (docs/ops.md).
 */
#include <math.h>

#include "attention.h"
#include "cuda_common.cuh"
#include "device.h"
#include "reduce.cuh"

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
template <int HD>
__device__ void load_kv_tile(float (*k_s)[K_LD(HD)], float (*v_s)[HD], const __nv_bfloat16* __restrict__ k_pool,
                             const __nv_bfloat16* __restrict__ v_pool, const int32_t* __restrict__ table, int bs,
                             int kv_dim, int kvh, int tb, int nt) {
    constexpr int PER_ROW = HD / 8;
    for (int e = threadIdx.x; e < ATT_TILE * PER_ROW; e += blockDim.x) {
        int t = e / PER_ROW, d = 8 * (e % PER_ROW);
        bf16x8 k8, v8;
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
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_rows_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ scores, const int32_t* __restrict__ cap_row,
                     int max_ctx, float* __restrict__ ws, const float* __restrict__ q,
                     const __nv_bfloat16* __restrict__ k_pool, const __nv_bfloat16* __restrict__ v_pool,
                     const int32_t* __restrict__ block_table, const int32_t* __restrict__ row_seq,
                     const int32_t* __restrict__ row_pos, EtxAttnShape sh, int split_len, int n_splits, float scale) {
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

    for (int e = tid; e < G * HD; e += ATT_THREADS) q_s[e / HD][e % HD] = q[head0 * HD + e];
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
            load_kv_tile<HD>(k_s, v_s, k_pool, v_pool, table, bs, kv_dim, kvh, tb, nt);
            __syncthreads();
            tile_scores<HD, ETX_ATTN_MAX_GROUP>(s_s, q_s, k_s, G, nt, scale, tb, capture, (size_t)max_ctx);
            __syncthreads();
            softmax_update<ATT_TILE>(s_s, m_s, l_s, alpha_s, G);
            __syncthreads();
            tile_values<HD, ACC>(acc, s_s, v_s, alpha_s, G);
            __syncthreads(); // the next tile overwrites k_s, v_s, s_s
        }

        if (n_splits == 1) {
            ATT_UNROLL
            for (int j = 0; j < ACC; j++) {
                int e = tid + j * ATT_THREADS;
                if (e < G * HD) {
                    float l = l_s[e / HD];
                    out[head0 * HD + e] = __float2bfloat16(l > 0.0f ? acc[j] / l : 0.0f);
                }
            }
            return;
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
}

// Block (h, r), thread d: out[r, h, d] = bf16(sum_i acc_i[d] e^(m_i - M) / sum_i l_i e^(m_i - M)),
// M = max_i m_i over the splits, both sums in split order (empty splits: m = -inf, l = 0,
// contribute nothing). Traffic: n_splits * (HD + 2) floats read per head, HD bf16 written.
__global__ void attn_merge_kernel(__nv_bfloat16* __restrict__ out, const float* __restrict__ ws,
                                  const int32_t* __restrict__ row_pos, int n_heads, int n_splits, int split_len, int hd) {
    ETX_PDL_ENTRY();
    int h = blockIdx.x, r = blockIdx.y, d = threadIdx.x;
    size_t n_hs = (size_t)gridDim.y * n_heads * n_splits;
    size_t hs0 = ((size_t)r * n_heads + h) * n_splits;
    const float* ws_m = ws + hs0;
    const float* ws_l = ws + n_hs + hs0;
    const float* ws_acc = ws + 2 * n_hs + hs0 * hd;
    const int n_used = attn_row_splits(row_pos[r] + 1, split_len, n_splits); // those attn_rows_kernel wrote
    float M = -INFINITY;
    for (int i = 0; i < n_used; i++) M = fmaxf(M, ws_m[i]);
    float L = 0.0f, o = 0.0f;
    for (int i = 0; i < n_used; i++) {
        if (ws_l[i] == 0.0f) continue;
        float w = expf(ws_m[i] - M);
        L += ws_l[i] * w;
        o += ws_acc[(size_t)i * hd + d] * w;
    }
    out[((size_t)r * n_heads + h) * hd + d] = __float2bfloat16(L > 0.0f ? o / L : 0.0f);
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

extern "C" size_t etx_attn_workspace_bytes(int n_rows, int n_heads, int head_dim, int max_seq_len) {
    const int n_splits = etx_attn_n_splits(max_seq_len);
    if (n_splits <= 1 || n_rows <= 0) return 0;
    return (size_t)n_rows * n_heads * n_splits * (2 + (size_t)head_dim) * sizeof(float);
}

extern "C" EtxCost etx_attn_rows_cost(int n_rows, int len, int max_seq_len, EtxAttnShape sh, int capture) {
    EtxCost c = {0, 0, 0, 0, 0, 0, 0, 0};
    if (n_rows <= 0) return c;
    const int split = etx_attn_split_len(max_seq_len), n_splits = etx_attn_n_splits(max_seq_len);
    const double q_dim = (double)sh.n_heads * sh.head_dim, kv_dim = (double)sh.n_kv_heads * sh.head_dim;
    const double pos = (double)n_rows * len;
    c.bytes = pos * kv_dim * 2 * 2 + n_rows * q_dim * (4 + 2);
    if (n_splits > 1) c.bytes += 2.0 * n_rows * sh.n_heads * n_splits * (sh.head_dim + 2) * 4;
    if (capture) c.bytes += pos * sh.n_heads * 4;
    c.flops = 4.0 * pos * q_dim;
    // blocks: the row's non-empty splits, spread over Z blocks per row (every split's
    // block busy when Z covers them; at large batches one block walks them all)
    c.busy = (double)sh.n_kv_heads * n_rows * etx_ceil_div(len > 0 ? len : 1, split) +
             (n_splits > 1 ? (double)sh.n_heads * n_rows : 0);
    c.ctas = c.busy;
    c.launches = n_splits > 1 ? 2 : 1;
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

extern "C" void etx_attn_rows(etx_bf16* out, float* scores, const int32_t* cap_row, int max_ctx, const float* q,
                              const etx_bf16* k_pool, const etx_bf16* v_pool, const int32_t* block_table,
                              const int32_t* row_seq, const int32_t* row_pos, int n_rows, int max_seq_len,
                              float* workspace, int ws_rows, EtxAttnShape sh, void* stream) {
    check_shape(sh, "etx_attn_rows");
    if (n_rows <= 0) return;
    const int split_len = etx_attn_split_len(max_seq_len), n_splits = etx_attn_n_splits(max_seq_len);
    if (n_splits > 1 && (!workspace || ws_rows < 1)) {
        fprintf(stderr, "[etx] etx_attn_rows: %d splits need a workspace (%p, %d rows)\n", n_splits,
                (void*)workspace, ws_rows);
        abort();
    }
    const int slice = n_splits > 1 ? ws_rows : n_rows; // rows per launch: what the workspace holds
    const int q_dim = sh.n_heads * sh.head_dim;
    const float scale = attn_scale(sh.head_dim);
    const cudaStream_t st = (cudaStream_t)stream;
    for (int r0 = 0; r0 < n_rows; r0 += slice) {
        const int n = n_rows - r0 < slice ? n_rows - r0 : slice;
        __nv_bfloat16* o = reinterpret_cast<__nv_bfloat16*>(out) + (size_t)r0 * q_dim;
        const __nv_bfloat16* kp = reinterpret_cast<const __nv_bfloat16*>(k_pool);
        const __nv_bfloat16* vp = reinterpret_cast<const __nv_bfloat16*>(v_pool);
        // without cap_row, row r's capture row is r: the slice's rows start at r0
        float* sc = scores && !cap_row ? scores + (size_t)r0 * sh.n_heads * max_ctx : scores;
        const int32_t* cr = cap_row ? cap_row + r0 : NULL;
        const float* qs = q + (size_t)r0 * q_dim;
        // blocks per row: enough to fill the GPU at small batches (each loops over the
        // splits z, z + Z, ...), one when the rows alone fill it
        const int Z = min(n_splits, max(1, etx_ceil_div(2 * etx_dev_sm_count(), sh.n_kv_heads * n)));
        dim3 grid(sh.n_kv_heads, n, Z);
        if (sh.head_dim == 64)
            ETX_LAUNCH(attn_rows_kernel<64>, grid, ATT_THREADS, 0, st, o, sc, cr, max_ctx, workspace, qs, kp, vp,
                       block_table, row_seq + r0, row_pos + r0, sh, split_len, n_splits, scale);
        else
            ETX_LAUNCH(attn_rows_kernel<128>, grid, ATT_THREADS, 0, st, o, sc, cr, max_ctx, workspace, qs, kp, vp,
                       block_table, row_seq + r0, row_pos + r0, sh, split_len, n_splits, scale);
        CUDA_CHECK_LAUNCH();
        if (n_splits > 1) {
            ETX_LAUNCH(attn_merge_kernel, dim3(sh.n_heads, n), sh.head_dim, 0, st, o, workspace, row_pos + r0,
                       sh.n_heads, n_splits, split_len, sh.head_dim);
            CUDA_CHECK_LAUNCH();
        }
    }
}
