/*
 * attn_metrics.cu — attention entropy, varentropy over heads, agreement and interaction
 * per sequence (attn_metrics.h).
 *
 * Math (one line): P_h = softmax over the slots of s_h (valid scores, then u zero slots
 * in window mode); E_h = -sum P log2 P (log2 of clip(P, 1e-10, 1) in window mode);
 * A_H = mean_h E_h, A_V = mean_h (E_h - A_H)^2, AG = mean_{h,k} |P_hk - mean_h' P_h'k|,
 * IS = mean_{h,k} |s_hk| over n_heads (n_pos + u) slots.
 *
 * Memory traffic: the n_heads x n_pos valid scores are read four times (max and
 * normaliser online; entropy; twice in the agreement, which recomputes P rather than
 * storing it), the first from DRAM and the rest mostly from L2; scratch holds 40 bytes
 * per head and 8 per chunk of positions; writes are 16 bytes per sequence. The u zero
 * slots cost O(n_heads), never materialised.
 *
 * Three kernels, so that one sequence (batch 1) still spreads over many blocks:
 * attn_heads_kernel, a warp per (sequence, head): online max / normaliser, then the
 * entropy; attn_agree_kernel, a thread per (sequence, position): the mean over heads
 * and |P - mean|, summed per block of positions; attn_final_kernel, a thread per
 * sequence: means over heads and slots. Double inside, float out; P is rounded as
 * metrics.c rounds it (e^{s-m} to float, times 1/z, to float), so the two agree to the
 * order of additions.
 *
 * Twin: host/policy/metrics.c attn_metrics; tests: tests/kernels/test_sampling_kernels.c
 * test_attn_metrics, test_attn_metrics_edges (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "attn_metrics.h"
#include "reduce.cuh"

#include <math.h>

#define AM_THREADS 256
#define AM_WARPS (AM_THREADS / 32)
#define AM_LN2 0.69314718055994530942
#define AM_REF_CLIP 1e-10 // the reference's clip floor inside log2 (window mode)

// Merges online (max, normaliser) pairs across the warp.
__device__ static void am_warp_lse(double* m, double* z) {
    for (int off = 16; off > 0; off >>= 1) {
        const double om = __shfl_xor_sync(0xffffffffu, *m, off), oz = __shfl_xor_sync(0xffffffffu, *z, off);
        const double M = om > *m ? om : *m;
        if (M == -INFINITY) continue;
        *z = *z * exp(*m - M) + oz * exp(om - M);
        *m = M;
    }
}

// -p ln p in nats from p and ln p; window mode clips p at 1e-10 inside the log.
__device__ static double am_ent_term(double p, double lnp, int compat) {
    if (p == 0.0) return 0.0;
    if (compat && p < AM_REF_CLIP) return -p * log(AM_REF_CLIP);
    return -p * lnp;
}

// P_hk as metrics.c computes it: e^{s-m} rounded to float, times 1/z, rounded to float.
__device__ static float am_prob(float s, double m, double inv_z) {
    return (float)((double)(float)exp((double)s - m) * inv_z);
}

// Per (sequence, head) results of kernel 1.
typedef struct {
    double m, inv_z; // max (over the slots) and 1 / normaliser
    double ent;      // entropy, bits
    double p0;       // probability of each zero slot (0 without them)
    double abs_sum;  // sum of |s| over the valid positions
} AmHead;

// The shape every kernel derives the same way.
typedef struct {
    const float* scores;     // (.., n_heads, max_ctx), sequence s at row row[s] (row NULL: s)
    const int32_t* row;      // (n_seqs) or NULL
    const int32_t* n_pos;    // (n_seqs)
    const int32_t* window;   // (n_seqs) or NULL
    int n_heads, max_ctx;
    int head_blocks;         // blocks per sequence in kernel 1 (AM_WARPS heads each)
    int chunks;              // blocks per sequence in kernel 2 (AM_THREADS positions each)
    AmHead* heads;           // scratch (n_seqs, n_heads); kernel 3: (shards, n_seqs, n_heads)
    double* agree;           // scratch (n_seqs, chunks); kernel 3: (shards, n_seqs, chunks)
    // Tensor parallelism (etx_attn_metrics_psum / _dev / _merge): n_heads are a shard's,
    // of n_heads_all in all. psum: kernel 2 writes sum_h P_hk (n_seqs, max_ctx) instead of
    // the deviations; mean: kernel 2 takes the all-reduced sums from there. One device:
    // shards 1, n_heads_all = n_heads, psum = mean = NULL.
    int n_heads_all, shards;
    double* psum;
    const double* mean;
} AmArgs;

// Zero slots of sequence seq (window mode with n_pos < window), and whether it is window mode.
__device__ static long am_zero_slots(const AmArgs* a, int seq, int n_pos, int* compat) {
    const int window = a->window ? a->window[seq] : 0;
    *compat = window > 0;
    return window > n_pos ? (long)window - n_pos : 0;
}

// Sequence seq's row of the scores.
__device__ static int am_row(const AmArgs& a, int seq) { return a.row ? a.row[seq] : seq; }

// Kernel 1: a warp per head: online max / normaliser over the valid scores (and the zero
// slots), then the entropy; blockIdx.x = seq * head_blocks + group of AM_WARPS heads.
__global__ void __launch_bounds__(AM_THREADS) attn_heads_kernel(AmArgs a) {
    ETX_PDL_ENTRY();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int seq = blockIdx.x / a.head_blocks, h = (blockIdx.x % a.head_blocks) * AM_WARPS + warp;
    const int n_pos = a.n_pos[seq];
    if (n_pos <= 0 || h >= a.n_heads) return; // a whole warp leaves together
    int compat;
    const long u = am_zero_slots(&a, seq, n_pos, &compat);
    const float* s = a.scores + ((size_t)am_row(a, seq) * a.n_heads + h) * a.max_ctx;
    double m = -INFINITY, z = 0.0, abs_sum = 0.0;
    for (int k = lane; k < n_pos; k += 32) {
        const double x = s[k];
        abs_sum += fabs(x);
        if (x > m) {
            z = z * exp(m - x) + 1.0;
            m = x;
        } else {
            z += exp(x - m);
        }
    }
    am_warp_lse(&m, &z);
    abs_sum = etx_warp_sum(abs_sum);
    if (u > 0) { // the zero slots join the max and the normaliser
        if (m < 0.0) {
            z *= exp(m);
            m = 0.0;
        }
        z += (double)u * exp(-m);
    }
    const double lnz = log(z), inv_z = 1.0 / z;
    double ent = 0.0;
    for (int k = lane; k < n_pos; k += 32) {
        const double lnp = ((double)s[k] - m) - lnz;
        const double pk = (double)(float)exp((double)s[k] - m) * inv_z;
        ent += am_ent_term(pk, lnp, compat);
    }
    ent = etx_warp_sum(ent);
    double p0 = 0.0;
    if (u > 0) {
        const double lnp0 = -m - lnz;
        p0 = exp(lnp0);
        ent += (double)u * am_ent_term(p0, lnp0, compat);
    }
    if (lane == 0) {
        AmHead r = {m, inv_z, ent / AM_LN2, p0, abs_sum};
        a.heads[(size_t)seq * a.n_heads + h] = r;
    }
}

// Kernel 2: a thread per position, sum over heads of |P_hk - mean_h P_hk| for a chunk of
// AM_THREADS positions; blockIdx.x = seq * chunks + chunk.
__global__ void __launch_bounds__(AM_THREADS) attn_agree_kernel(AmArgs a) {
    ETX_PDL_ENTRY();
    __shared__ double s_m[ETX_ATTN_MAX_HEADS], s_inv_z[ETX_ATTN_MAX_HEADS];
    __shared__ double s_red[AM_THREADS];
    const int tid = threadIdx.x, seq = blockIdx.x / a.chunks, chunk = blockIdx.x % a.chunks;
    const int n_pos = a.n_pos[seq];
    if (chunk * AM_THREADS >= n_pos) return; // the same for the whole block
    for (int h = tid; h < a.n_heads; h += blockDim.x) {
        s_m[h] = a.heads[(size_t)seq * a.n_heads + h].m;
        s_inv_z[h] = a.heads[(size_t)seq * a.n_heads + h].inv_z;
    }
    __syncthreads();
    const float* base = a.scores + (size_t)am_row(a, seq) * a.n_heads * a.max_ctx;
    const int k = chunk * AM_THREADS + tid;
    double agree = 0.0;
    if (k < n_pos) {
        double mean = 0.0;
        if (a.mean) { // a shard: the sum over every shard's heads, all-reduced
            mean = a.mean[(size_t)seq * a.max_ctx + k] / a.n_heads_all;
        } else {
            for (int h = 0; h < a.n_heads; h++) mean += am_prob(base[(size_t)h * a.max_ctx + k], s_m[h], s_inv_z[h]);
            if (a.psum) { // a shard's first half: its heads' sum, nothing else
                a.psum[(size_t)seq * a.max_ctx + k] = mean;
                return;
            }
            mean /= a.n_heads;
        }
        for (int h = 0; h < a.n_heads; h++)
            agree += fabs((double)am_prob(base[(size_t)h * a.max_ctx + k], s_m[h], s_inv_z[h]) - mean);
    } else if (a.psum) {
        return; // (the same for every thread past n_pos: no barrier below is reached by some only)
    }
    s_red[tid] = agree;
    __syncthreads();
    etx_block_tree<AM_THREADS>([&](int dst, int src) { s_red[dst] += s_red[src]; });
    if (tid == 0) a.agree[(size_t)seq * a.chunks + chunk] = s_red[0];
}

// Kernel 3: a thread per sequence: the means over heads and slots.
__global__ void attn_final_kernel(AmArgs a, int n_seqs, EtxAttnStats* out) {
    ETX_PDL_ENTRY();
    const int seq = blockIdx.x * blockDim.x + threadIdx.x;
    if (seq >= n_seqs) return;
    const int n_pos = a.n_pos[seq], n_heads = a.n_heads;
    EtxAttnStats r = {0.0f, 0.0f, 0.0f, 0.0f};
    if (n_pos <= 0 || n_heads <= 0) {
        out[seq] = r;
        return;
    }
    int compat;
    const long u = am_zero_slots(&a, seq, n_pos, &compat);
    // head g = shard sh's head h (sh * n_heads + h): with one shard, head h of this sequence
    const int n_all = n_heads * a.shards;
#define AM_HEAD(g) a.heads[((size_t)((g) / n_heads) * n_seqs + seq) * n_heads + (g) % n_heads]
    double ag = 0.0, abs_sum = 0.0, ent_mean = 0.0, ent_var = 0.0, p0_mean = 0.0;
    for (int sh = 0; sh < a.shards; sh++)
        for (int c = 0; c < a.chunks && c * AM_THREADS < n_pos; c++)
            ag += a.agree[((size_t)sh * n_seqs + seq) * a.chunks + c];
    for (int g = 0; g < n_all; g++) {
        abs_sum += AM_HEAD(g).abs_sum;
        ent_mean += AM_HEAD(g).ent;
        p0_mean += AM_HEAD(g).p0;
    }
    ent_mean /= n_all;
    p0_mean /= n_all;
    for (int g = 0; g < n_all; g++) {
        ent_var += (AM_HEAD(g).ent - ent_mean) * (AM_HEAD(g).ent - ent_mean);
        if (u > 0) ag += (double)u * fabs(AM_HEAD(g).p0 - p0_mean); // u equal terms per head
    }
#undef AM_HEAD
    const double slots = (double)n_pos + (double)u;
    r.attn_entropy = (float)ent_mean;
    r.attn_varentropy = (float)(ent_var / n_all);
    r.agreement = (float)(ag / ((double)n_all * slots));
    r.interaction = (float)(abs_sum / ((double)n_all * slots));
    out[seq] = r;
}

static size_t am_head_bytes(int n_seqs, int n_heads) {
    return ((size_t)n_seqs * n_heads * sizeof(AmHead) + 255) & ~(size_t)255;
}

static int am_chunks(int max_ctx) { return etx_ceil_div(max_ctx > 0 ? max_ctx : 1, AM_THREADS); }

static AmArgs am_args(const float* scores, const int32_t* row, int n_seqs, int n_heads, int max_ctx,
                      const int32_t* n_pos,
                      const int32_t* window, void* scratch) {
    AmArgs a;
    a.scores = scores, a.row = row, a.n_pos = n_pos, a.window = window;
    a.n_heads = n_heads, a.max_ctx = max_ctx;
    a.head_blocks = etx_ceil_div(n_heads, AM_WARPS);
    a.chunks = am_chunks(max_ctx);
    a.heads = (AmHead*)scratch;
    a.agree = (double*)((char*)scratch + am_head_bytes(n_seqs, n_heads));
    a.n_heads_all = n_heads, a.shards = 1;
    a.psum = NULL;
    a.mean = NULL;
    return a;
}

extern "C" size_t etx_attn_metrics_scratch_bytes(int n_seqs, int n_heads, int max_ctx) {
    return am_head_bytes(n_seqs, n_heads) + (size_t)n_seqs * am_chunks(max_ctx) * sizeof(double);
}

extern "C" void etx_attn_metrics(const float* scores, const int32_t* score_row, int n_seqs, int n_heads, int max_ctx,
                                 const int32_t* n_pos,
                                 const int32_t* window, EtxAttnStats* out, void* scratch, void* stream) {
    if (n_seqs <= 0) return;
    if (n_heads > ETX_ATTN_MAX_HEADS) {
        fprintf(stderr, "etx_attn_metrics: %d heads, at most %d supported\n", n_heads, ETX_ATTN_MAX_HEADS);
        exit(EXIT_FAILURE);
    }
    const AmArgs a = am_args(scores, score_row, n_seqs, n_heads, max_ctx, n_pos, window, scratch);
    if (n_heads > 0 && max_ctx > 0) {
        ETX_LAUNCH(attn_heads_kernel, n_seqs * a.head_blocks, AM_THREADS, 0, (cudaStream_t)stream, a);
        CUDA_CHECK_LAUNCH();
        ETX_LAUNCH(attn_agree_kernel, n_seqs * a.chunks, AM_THREADS, 0, (cudaStream_t)stream, a);
        CUDA_CHECK_LAUNCH();
    }
    ETX_LAUNCH(attn_final_kernel, etx_ceil_div(n_seqs, 64), 64, 0, (cudaStream_t)stream, a, n_seqs, out);
    CUDA_CHECK_LAUNCH();
}

// -- tensor parallelism: the heads split across shards (attn_metrics.h)

extern "C" size_t etx_attn_metrics_part_bytes(int n_seqs, int n_heads, int max_ctx, size_t* heads_bytes,
                                              size_t* psum_bytes, size_t* dev_bytes) {
    *heads_bytes = (size_t)n_seqs * n_heads * sizeof(AmHead);
    *psum_bytes = (size_t)n_seqs * (max_ctx > 0 ? max_ctx : 1) * sizeof(double);
    *dev_bytes = (size_t)n_seqs * am_chunks(max_ctx) * sizeof(double);
    return *heads_bytes + *psum_bytes + *dev_bytes;
}

extern "C" void etx_attn_metrics_psum(const float* scores, const int32_t* score_row, int n_seqs, int n_heads,
                                      int max_ctx, const int32_t* n_pos, const int32_t* window, void* heads,
                                      double* psum, void* stream) {
    if (n_seqs <= 0 || n_heads <= 0 || max_ctx <= 0) return;
    AmArgs a = am_args(scores, score_row, n_seqs, n_heads, max_ctx, n_pos, window, heads);
    a.agree = NULL;
    a.psum = psum;
    ETX_LAUNCH(attn_heads_kernel, n_seqs * a.head_blocks, AM_THREADS, 0, (cudaStream_t)stream, a);
    CUDA_CHECK_LAUNCH();
    ETX_LAUNCH(attn_agree_kernel, n_seqs * a.chunks, AM_THREADS, 0, (cudaStream_t)stream, a);
    CUDA_CHECK_LAUNCH();
}

extern "C" void etx_attn_metrics_dev(const float* scores, const int32_t* score_row, int n_seqs, int n_heads,
                                     int n_heads_all, int max_ctx, const int32_t* n_pos, const int32_t* window,
                                     const void* heads, const double* psum, double* dev, void* stream) {
    if (n_seqs <= 0 || n_heads <= 0 || max_ctx <= 0) return;
    AmArgs a = am_args(scores, score_row, n_seqs, n_heads, max_ctx, n_pos, window, (void*)heads);
    a.agree = dev;
    a.mean = psum;
    a.n_heads_all = n_heads_all;
    ETX_LAUNCH(attn_agree_kernel, n_seqs * a.chunks, AM_THREADS, 0, (cudaStream_t)stream, a);
    CUDA_CHECK_LAUNCH();
}

extern "C" void etx_attn_metrics_merge(int n_seqs, int shards, int n_heads, int max_ctx, const int32_t* n_pos,
                                       const int32_t* window, const void* heads, const double* dev, EtxAttnStats* out,
                                       void* stream) {
    if (n_seqs <= 0) return;
    AmArgs a = am_args(NULL, NULL, n_seqs, n_heads, max_ctx, n_pos, window, (void*)heads);
    a.agree = (double*)dev;
    a.shards = shards;
    a.n_heads_all = n_heads * shards;
    ETX_LAUNCH(attn_final_kernel, etx_ceil_div(n_seqs, 64), 64, 0, (cudaStream_t)stream, a, n_seqs, out);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_attn_metrics_cost(int n_seqs, int n_heads, int n_pos, int max_ctx) {
    EtxCost c = {0, 0, 0, 0, 3, 0, 0, 0, 0};
    c.bytes = (double)n_seqs * n_heads * n_pos * 4 + (double)n_seqs * (n_heads * 40.0 + am_chunks(max_ctx) * 8.0 + 16);
    c.flops = 20.0 * n_seqs * n_heads * n_pos;
    c.ctas = (double)n_seqs * (etx_ceil_div(n_heads, AM_WARPS) + am_chunks(max_ctx)) + etx_ceil_div(n_seqs, 64);
    c.busy = (double)n_seqs * (etx_ceil_div(n_heads, AM_WARPS) + etx_ceil_div(n_pos > 0 ? n_pos : 1, AM_THREADS)) +
             etx_ceil_div(n_seqs, 64);
    return c;
}
