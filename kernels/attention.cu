/*
 * attention.cu — paged, GQA-aware attention: decode (flash-decoding, split over the
 * context, plus a merge kernel) and causal prefill (flash-attention style).
 *
 * Both kernels stream keys in tiles of ATT_TILE = 32 positions: a tile of K and V of one
 * KV head is gathered from the pools (block table lookups) into shared memory, converted
 * to f32 once; the scores of every query row of the block against the tile go to shared
 * memory; one warp per query row (lane = key) updates the row's running max m and sum l
 * and turns the scores into weights; the threads then rescale their accumulators by
 * exp(m_old - m_new) and add the weighted values. So K and V of a KV head are read from
 * global memory once per block, whatever the number of query heads sharing it.
 *
 * Shared-memory traffic is what bounds the two tile products, so both are register-tiled
 * with 16-byte shared loads: for the scores, lane t of warp w keeps key t's four dims in
 * registers against the rows w, w + 4, ...; for the values, thread (row i0, column d)
 * keeps v[t..t+3][d] in registers against its rows' four weights.
 *
 * Twin: host/cpu/cpu_ops.c attention_head; tests: tests/kernels/test_layer_kernels.c
 * test_decode_attention, test_decode_splits_choice, test_prefill_attention (docs/ops.md).
 */
#include <math.h>

#include "attention.h"
#include "cuda_common.cuh"
#include "reduce.cuh"

#define ATT_TILE 32 // keys per tile (= warp size: lane t owns key t in the softmax update)
#define ATT_THREADS 128
#define PF_ROWS 32 // prefill: query rows (position, head of the group) per block

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

__device__ __forceinline__ void store_v(float* dst, __nv_bfloat16 v) { *dst = __bfloat162float(v); }
__device__ __forceinline__ void store_v(__nv_bfloat16* dst, __nv_bfloat16 v) { *dst = v; }

// Gathers keys/values tb .. tb + nt - 1 of KV head kvh (through the sequence's block
// table row) into k_s (ATT_TILE, K_LD(HD)) f32 and v_s (ATT_TILE, HD) (f32 or bf16); rows
// t >= nt are zeroed. 16-byte loads (8 bf16; HD, kv_dim and the head offset are multiples
// of 8 and the pools 16-byte aligned); consecutive threads on consecutive 16-byte pieces.
template <int HD, typename VT>
__device__ void load_kv_tile(float (*k_s)[K_LD(HD)], VT (*v_s)[HD], const __nv_bfloat16* __restrict__ k_pool,
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
            store_v(&v_s[t][d + j], v8.v[j]);
        }
    }
}

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

// Scores of one tile: s_s[i][t] = scale * q_s[i] . k_s[t] for rows i < n_rows, or
// -INFINITY where key t is masked: t >= nt, or (CAUSAL) row i >= rows_valid or
// tb + t > pos0 + (row0 + i) / G (the row's position). Lane t of warp w computes rows
// w, w + 4, ... (at most MAXR / 4) with key t's dims in registers, 4 at a time.
// capture (may be NULL): the unmasked scores of rows cap_first <= i < cap_first + G also
// go to capture[(i - cap_first) * ld_cap + tb + t].
template <int HD, int MAXR, bool CAUSAL>
__device__ void tile_scores(float (*s_s)[ATT_TILE], float (*q_s)[HD], float (*k_s)[K_LD(HD)], int n_rows, int nt,
                            float scale, int tb, int pos0, int row0, int rows_valid, int G, float* capture,
                            size_t ld_cap, int cap_first) {
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
            if (CAUSAL) ok = ok && i < rows_valid && tb + t <= pos0 + (row0 + i) / G;
            float sc = scale * dot[j];
            s_s[i][t] = ok ? sc : -INFINITY;
            if (capture && ok && i >= cap_first && i < cap_first + G) capture[(i - cap_first) * ld_cap + tb + t] = sc;
        }
    }
}

// Values of one tile, after softmax_update: for the thread's rows i = threadIdx.x / HD +
// j * (ATT_THREADS / HD) < n_rows and column d = threadIdx.x % HD,
//   acc[j] = acc[j] * alpha[i] + sum_t p[i][t] v[t][d]
// over the whole tile (masked keys have p = 0 and zeroed values), four keys at a time.
template <int HD, int ACC, typename VT>
__device__ void tile_values(float* acc, float (*s_s)[ATT_TILE], VT (*v_s)[HD], const float* alpha_s, int n_rows) {
    constexpr int STEP = ATT_THREADS / HD;
    int d = threadIdx.x % HD, i0 = threadIdx.x / HD;
    ATT_UNROLL
    for (int j = 0; j < ACC; j++)
        if (i0 + j * STEP < n_rows) acc[j] *= alpha_s[i0 + j * STEP];
    for (int t4 = 0; t4 < ATT_TILE / 4; t4++) {
        float v0 = to_f32(v_s[4 * t4][d]), v1 = to_f32(v_s[4 * t4 + 1][d]);
        float v2 = to_f32(v_s[4 * t4 + 2][d]), v3 = to_f32(v_s[4 * t4 + 3][d]);
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
        __syncwarp(); // every lane has read m_s[i] before lane 0 overwrites it (shuffles do not order memory)
        if (lane == 0) {
            float a = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
            alpha_s[i] = a;
            l_s[i] = l_s[i] * a + sum;
            m_s[i] = m_new;
        }
    }
}

// ----------------------------------------------------------------------------
// decode

// Block (kvh, s, split): the G = n_heads / n_kv_heads query heads of KV head kvh of
// row s (block table row row_seq[s], or s when row_seq is NULL) against positions
// [split * chunk, end), end = seq_len[s] for the last split, else
// min(seq_len[s], (split + 1) * chunk).
//   n_splits == 1: out[s, h] = bf16(acc / l)
//   else: ws_m/ws_l (n_seqs, n_heads, n_splits), ws_acc (n_seqs, n_heads, n_splits, HD) get
//   the split's max, sum and unnormalised acc = sum_t exp(score_t - m) v_t.
// Traffic: every K/V row of the split read once (2 * HD * 2 bytes per position), q read
// once, scores (when captured) written once.
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_decode_kernel(__nv_bfloat16* __restrict__ out, float* __restrict__ scores, int max_ctx, float* __restrict__ ws,
                       const float* __restrict__ q, const __nv_bfloat16* __restrict__ k_pool,
                       const __nv_bfloat16* __restrict__ v_pool, const int32_t* __restrict__ block_table,
                       const int32_t* __restrict__ row_seq, const int32_t* __restrict__ seq_len, EtxAttnShape sh,
                       int chunk, int n_splits, float scale) {
    constexpr int ACC = ETX_ATTN_MAX_GROUP * HD / ATT_THREADS; // accumulators per thread
    __shared__ __align__(16) float q_s[ETX_ATTN_MAX_GROUP][HD];
    __shared__ __align__(16) float k_s[ATT_TILE][K_LD(HD)];
    __shared__ __align__(16) float v_s[ATT_TILE][HD];
    __shared__ __align__(16) float s_s[ETX_ATTN_MAX_GROUP][ATT_TILE];
    __shared__ float m_s[ETX_ATTN_MAX_GROUP], l_s[ETX_ATTN_MAX_GROUP], alpha_s[ETX_ATTN_MAX_GROUP];

    int kvh = blockIdx.x, s = blockIdx.y, split = blockIdx.z, tid = threadIdx.x;
    int G = sh.n_heads / sh.n_kv_heads, kv_dim = sh.n_kv_heads * HD, bs = sh.block_size;
    int len = seq_len[s];
    int t0 = split * chunk;
    int t1 = split == n_splits - 1 ? len : min(len, t0 + chunk);
    const int32_t* table = block_table + (size_t)(row_seq ? row_seq[s] : s) * sh.max_blocks;
    size_t head0 = (size_t)s * sh.n_heads + (size_t)kvh * G; // first query head of the group
    float* capture = scores ? scores + head0 * max_ctx : NULL;

    for (int e = tid; e < G * HD; e += ATT_THREADS) q_s[e / HD][e % HD] = q[head0 * HD + e];
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
        load_kv_tile<HD, float>(k_s, v_s, k_pool, v_pool, table, bs, kv_dim, kvh, tb, nt);
        __syncthreads();
        tile_scores<HD, ETX_ATTN_MAX_GROUP, false>(s_s, q_s, k_s, G, nt, scale, tb, 0, 0, G, G, capture,
                                                   (size_t)max_ctx, 0);
        __syncthreads();
        softmax_update<ATT_TILE>(s_s, m_s, l_s, alpha_s, G);
        __syncthreads();
        tile_values<HD, ACC, float>(acc, s_s, v_s, alpha_s, G);
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
}

// Block (h, s), thread d: out[s, h, d] = bf16(sum_i acc_i[d] e^(m_i - M) / sum_i l_i e^(m_i - M)),
// M = max_i m_i over the splits (empty splits: m = -inf, l = 0, contribute nothing).
// Traffic: n_splits * (HD + 2) floats read per head, HD bf16 written.
__global__ void attn_decode_merge_kernel(__nv_bfloat16* __restrict__ out, const float* __restrict__ ws, int n_heads,
                                         int n_splits, int hd) {
    int h = blockIdx.x, s = blockIdx.y, d = threadIdx.x;
    size_t n_hs = (size_t)gridDim.y * n_heads * n_splits;
    size_t hs0 = ((size_t)s * n_heads + h) * n_splits;
    const float* ws_m = ws + hs0;
    const float* ws_l = ws + n_hs + hs0;
    const float* ws_acc = ws + 2 * n_hs + hs0 * hd;
    float M = -INFINITY;
    for (int i = 0; i < n_splits; i++) M = fmaxf(M, ws_m[i]);
    float L = 0.0f, o = 0.0f;
    for (int i = 0; i < n_splits; i++) {
        if (ws_l[i] == 0.0f) continue;
        float w = expf(ws_m[i] - M);
        L += ws_l[i] * w;
        o += ws_acc[(size_t)i * hd + d] * w;
    }
    out[((size_t)s * n_heads + h) * hd + d] = __float2bfloat16(L > 0.0f ? o / L : 0.0f);
}

#define ATT_BLOCKS_PER_SM 2 // decode blocks per SM the split aims for
#define ATT_MIN_SPLIT 256 // positions: below that a split costs more than it saves

// SMs of the current device (queried once; 132, an H100's, if the query fails)
static int sm_count(void) {
    static int n = 0;
    if (n == 0) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0)
            n = v;
        else
            n = 132;
    }
    return n;
}

extern "C" int etx_attn_decode_splits(int n_seqs, int n_kv_heads, int max_seq_len) {
    int blocks = n_seqs * n_kv_heads;
    if (blocks <= 0 || max_seq_len <= 0) return 1;
    int n = etx_ceil_div(ATT_BLOCKS_PER_SM * sm_count(), blocks);
    int cap = etx_ceil_div(max_seq_len, ATT_MIN_SPLIT);
    if (n > cap) n = cap;
    if (n > ETX_ATTN_MAX_SPLITS) n = ETX_ATTN_MAX_SPLITS;
    return n < 1 ? 1 : n;
}

extern "C" size_t etx_attn_decode_workspace_bytes(int n_seqs, int n_heads, int head_dim, int n_splits) {
    if (n_splits <= 1) return 0;
    return (size_t)n_seqs * n_heads * n_splits * (2 + (size_t)head_dim) * sizeof(float);
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

extern "C" void etx_attn_decode(etx_bf16* out, float* scores, int max_ctx, const float* q, const etx_bf16* k_pool,
                                const etx_bf16* v_pool, const int32_t* block_table, const int32_t* row_seq,
                                const int32_t* seq_len, int n_seqs, int max_seq_len, int n_splits, float* workspace,
                                EtxAttnShape sh, void* stream) {
    check_shape(sh, "etx_attn_decode");
    if (n_seqs <= 0) return;
    if (n_splits < 1 || n_splits > ETX_ATTN_MAX_SPLITS || (n_splits > 1 && !workspace)) {
        fprintf(stderr, "[etx] etx_attn_decode: bad n_splits %d (workspace %p)\n", n_splits, (void*)workspace);
        abort();
    }
    __nv_bfloat16* o = reinterpret_cast<__nv_bfloat16*>(out);
    const __nv_bfloat16* kp = reinterpret_cast<const __nv_bfloat16*>(k_pool);
    const __nv_bfloat16* vp = reinterpret_cast<const __nv_bfloat16*>(v_pool);
    int chunk = ATT_TILE * etx_ceil_div(etx_ceil_div(max_seq_len > 0 ? max_seq_len : 1, n_splits), ATT_TILE);
    float scale = attn_scale(sh.head_dim);
    dim3 grid(sh.n_kv_heads, n_seqs, n_splits);
    cudaStream_t st = (cudaStream_t)stream;
    if (sh.head_dim == 64)
        ETX_LAUNCH(attn_decode_kernel<64>, grid, ATT_THREADS, 0, st, o, scores, max_ctx, workspace, q, kp, vp,
                   block_table, row_seq, seq_len, sh, chunk, n_splits, scale);
    else
        ETX_LAUNCH(attn_decode_kernel<128>, grid, ATT_THREADS, 0, st, o, scores, max_ctx, workspace, q, kp, vp,
                   block_table, row_seq, seq_len, sh, chunk, n_splits, scale);
    CUDA_CHECK_LAUNCH();
    if (n_splits > 1) {
        ETX_LAUNCH(attn_decode_merge_kernel, dim3(sh.n_heads, n_seqs), sh.head_dim, 0, st, o, workspace, sh.n_heads,
                   n_splits, sh.head_dim);
        CUDA_CHECK_LAUNCH();
    }
    (void)st;
}

// ----------------------------------------------------------------------------
// prefill

// Block (b, kvh) of chunk c (b' = b - blk0[c]): query rows i = b' * PF_ROWS .. + PF_ROWS - 1
// of the chunk's n * G rows of KV head kvh, row i = (position pos0 + i / G, query head
// kvh * G + i % G), against the
// keys 0 .. (last row's position), tile by tile; keys after a row's position are masked.
//   out[i] = bf16(acc / l)
// Traffic: each block reads its rows' q once and K/V of positions 0 .. its last row's
// position once (2 * HD * 2 bytes per position), so K/V are read ceil(n G / PF_ROWS)
// times per KV head over the chunk (from L2 after the first).
// Several chunks (of different sequences) share one launch: block b belongs to chunk c
// with blk0[c] <= b < blk0[c + 1], whose rows are q/out rows row0[c] .. row0[c] + n[c] - 1.
#define PF_MAX_CHUNKS 64 // per launch (kernel parameters stay under 2 KiB)
struct PrefillChunks {
    int n_chunks;
    int blk0[PF_MAX_CHUNKS + 1];
    EtxPrefillChunk c[PF_MAX_CHUNKS];
};

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_prefill_kernel(__nv_bfloat16* __restrict__ out_all, float* __restrict__ scores, int max_ctx,
                        const float* __restrict__ q_all, const __nv_bfloat16* __restrict__ k_pool,
                        const __nv_bfloat16* __restrict__ v_pool, const int32_t* __restrict__ block_table,
                        EtxAttnShape sh, PrefillChunks chunks, float scale) {
    constexpr int ACC = PF_ROWS * HD / ATT_THREADS;
    __shared__ __align__(16) float q_s[PF_ROWS][HD];
    __shared__ __align__(16) float k_s[ATT_TILE][K_LD(HD)];
    __shared__ __align__(16) __nv_bfloat16 v_s[ATT_TILE][HD]; // bf16: f32 would pass 48 KiB at HD 128
    __shared__ __align__(16) float s_s[PF_ROWS][ATT_TILE];
    __shared__ float m_s[PF_ROWS], l_s[PF_ROWS], alpha_s[PF_ROWS];

    int kvh = blockIdx.y, tid = threadIdx.x;
    int G = sh.n_heads / sh.n_kv_heads, q_dim = sh.n_heads * HD, kv_dim = sh.n_kv_heads * HD;
    int c = 0; // this block's chunk
    while (c + 1 < chunks.n_chunks && chunks.blk0[c + 1] <= (int)blockIdx.x) c++;
    const EtxPrefillChunk ch = chunks.c[c];
    int pos0 = ch.pos0, n = ch.n;
    const float* q = q_all + (size_t)ch.row0 * q_dim;
    __nv_bfloat16* out = out_all + (size_t)ch.row0 * q_dim;
    const int32_t* table = block_table + (size_t)ch.seq * sh.max_blocks;
    int row0 = (blockIdx.x - chunks.blk0[c]) * PF_ROWS, total = n * G;
    int rows = min(PF_ROWS, total - row0);
    // the last row's scores of the group's heads
    float* capture = scores && ch.capture >= 0 ? scores + ((size_t)ch.capture * sh.n_heads + kvh * G) * max_ctx : NULL;

    // (query head kvh * G + g of row position p) sits at q[p * q_dim + (kvh * G + g) * HD]
    for (int e = tid; e < PF_ROWS * HD; e += ATT_THREADS) {
        int i = e / HD, d = e % HD, r = row0 + i;
        q_s[i][d] = i < rows ? q[(size_t)(r / G) * q_dim + (size_t)(kvh * G + r % G) * HD + d] : 0.0f;
    }
    if (tid < PF_ROWS) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    float acc[ACC];
    ATT_UNROLL
    for (int j = 0; j < ACC; j++) acc[j] = 0.0f;
    __syncthreads();

    int last = pos0 + (row0 + rows - 1) / G; // position of the block's last row
    for (int tb = 0; tb <= last; tb += ATT_TILE) {
        int nt = min(ATT_TILE, last + 1 - tb);
        load_kv_tile<HD, __nv_bfloat16>(k_s, v_s, k_pool, v_pool, table, sh.block_size, kv_dim, kvh, tb, nt);
        __syncthreads();
        tile_scores<HD, PF_ROWS, true>(s_s, q_s, k_s, PF_ROWS, nt, scale, tb, pos0, row0, rows, G, capture,
                                       (size_t)max_ctx, (n - 1) * G - row0);
        __syncthreads();
        softmax_update<ATT_TILE>(s_s, m_s, l_s, alpha_s, PF_ROWS);
        __syncthreads();
        tile_values<HD, ACC, __nv_bfloat16>(acc, s_s, v_s, alpha_s, PF_ROWS);
        __syncthreads();
    }

    ATT_UNROLL
    for (int j = 0; j < ACC; j++) {
        int e = tid + j * ATT_THREADS, i = e / HD, d = e % HD, r = row0 + i;
        if (i < rows) {
            float l = l_s[i];
            out[(size_t)(r / G) * q_dim + (size_t)(kvh * G + r % G) * HD + d] =
                __float2bfloat16(l > 0.0f ? acc[j] / l : 0.0f);
        }
    }
}

extern "C" void etx_attn_prefill_chunks(etx_bf16* out, float* scores, int max_ctx, const float* q,
                                        const etx_bf16* k_pool, const etx_bf16* v_pool, const int32_t* block_table,
                                        const EtxPrefillChunk* chunks, int n_chunks, EtxAttnShape sh, void* stream) {
    check_shape(sh, "etx_attn_prefill_chunks");
    __nv_bfloat16* o = reinterpret_cast<__nv_bfloat16*>(out);
    const __nv_bfloat16* kp = reinterpret_cast<const __nv_bfloat16*>(k_pool);
    const __nv_bfloat16* vp = reinterpret_cast<const __nv_bfloat16*>(v_pool);
    int G = sh.n_heads / sh.n_kv_heads;
    float scale = attn_scale(sh.head_dim);
    for (int first = 0; first < n_chunks; first += PF_MAX_CHUNKS) { // PF_MAX_CHUNKS per launch
        PrefillChunks pc;
        pc.n_chunks = 0;
        pc.blk0[0] = 0;
        for (int i = first; i < n_chunks && i < first + PF_MAX_CHUNKS; i++) {
            if (chunks[i].n <= 0) continue;
            pc.c[pc.n_chunks] = chunks[i];
            pc.blk0[pc.n_chunks + 1] = pc.blk0[pc.n_chunks] + etx_ceil_div(chunks[i].n * G, PF_ROWS);
            pc.n_chunks++;
        }
        if (pc.n_chunks == 0) continue;
        dim3 grid(pc.blk0[pc.n_chunks], sh.n_kv_heads);
        if (sh.head_dim == 64)
            ETX_LAUNCH(attn_prefill_kernel<64>, grid, ATT_THREADS, 0, (cudaStream_t)stream, o, scores, max_ctx, q, kp,
                       vp, block_table, sh, pc, scale);
        else
            ETX_LAUNCH(attn_prefill_kernel<128>, grid, ATT_THREADS, 0, (cudaStream_t)stream, o, scores, max_ctx, q, kp,
                       vp, block_table, sh, pc, scale);
        CUDA_CHECK_LAUNCH();
    }
}

extern "C" void etx_attn_prefill(etx_bf16* out, float* scores, int max_ctx, const float* q, const etx_bf16* k_pool,
                                 const etx_bf16* v_pool, const int32_t* block_table, int seq, int pos0, int n,
                                 EtxAttnShape sh, void* stream) {
    EtxPrefillChunk c = {seq, pos0, n, 0, scores ? 0 : -1};
    etx_attn_prefill_chunks(out, scores, max_ctx, q, k_pool, v_pool, block_table, &c, 1, sh, stream);
}
