/*
 * attn_metrics.cu — attention entropy, varentropy over heads, agreement and interaction
 * per sequence (attn_metrics.h), one block per sequence.
 *
 * Math (one line): P_h = softmax over the slots of s_h (valid scores, then u zero slots
 * in window mode); E_h = -sum P log2 P (log2 of clip(P, 1e-10, 1) in window mode);
 * A_H = mean_h E_h, A_V = mean_h (E_h - A_H)^2, AG = mean_{h,k} |P_hk - mean_h' P_h'k|,
 * IS = mean_{h,k} |s_hk| over n_heads (n_pos + u) slots.
 *
 * Memory traffic: the n_heads x n_pos valid scores are read four times (max and
 * normaliser online; entropy; twice in the agreement, which recomputes P rather than
 * storing it), the first from DRAM and the rest mostly from L2/L1; writes are 16 bytes
 * per sequence. The u zero slots cost O(n_heads), never materialised.
 *
 * Phase 1, a warp per head: online max / normaliser, then the entropy; phase 2, a thread
 * per position: the mean over heads and |P - mean|. Double inside, float out; P is
 * rounded as metrics.c rounds it (e^{s-m} to float, times 1/z, to float), so the two
 * agree to the order of additions.
 */
#include "attn_metrics.h"
#include "cuda_common.cuh"

#include <math.h>

#define AM_THREADS 256
#define AM_WARPS (AM_THREADS / 32)
#define AM_LN2 0.69314718055994530942
#define AM_REF_CLIP 1e-10 // the reference's clip floor inside log2 (window mode)

__device__ static double am_warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

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

__global__ void __launch_bounds__(AM_THREADS)
    attn_metrics_kernel(const float* scores, int n_heads, int max_ctx, const int32_t* n_pos_arr,
                        const int32_t* window_arr, EtxAttnStats* out) {
    __shared__ double s_m[ETX_ATTN_MAX_HEADS], s_inv_z[ETX_ATTN_MAX_HEADS], s_ent[ETX_ATTN_MAX_HEADS],
        s_p0[ETX_ATTN_MAX_HEADS];
    __shared__ double s_abs[AM_THREADS], s_agree[AM_THREADS];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, seq = blockIdx.x;
    const int n_pos = n_pos_arr[seq];
    const int window = window_arr ? window_arr[seq] : 0;
    if (n_pos <= 0 || n_heads <= 0) {
        if (tid == 0) {
            const EtxAttnStats zero = {0.0f, 0.0f, 0.0f, 0.0f};
            out[seq] = zero;
        }
        return;
    }
    const int compat = window > 0;
    const long u = compat && window > n_pos ? (long)window - n_pos : 0; // zero slots
    const float* base = scores + (size_t)seq * n_heads * max_ctx;

    // phase 1: a warp per head
    double abs_sum = 0.0;
    for (int h = warp; h < n_heads; h += AM_WARPS) {
        const float* s = base + (size_t)h * max_ctx;
        double m = -INFINITY, z = 0.0;
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
        ent = am_warp_sum(ent);
        double p0 = 0.0;
        if (u > 0) {
            const double lnp0 = -m - lnz;
            p0 = exp(lnp0);
            ent += (double)u * am_ent_term(p0, lnp0, compat);
        }
        if (lane == 0) {
            s_m[h] = m;
            s_inv_z[h] = inv_z;
            s_ent[h] = ent / AM_LN2;
            s_p0[h] = p0;
        }
    }
    __syncthreads();

    // phase 2: a thread per position, the heads' mean then the absolute deviations
    double agree = 0.0;
    for (int k = tid; k < n_pos; k += blockDim.x) {
        double mean = 0.0;
        for (int h = 0; h < n_heads; h++) mean += am_prob(base[(size_t)h * max_ctx + k], s_m[h], s_inv_z[h]);
        mean /= n_heads;
        for (int h = 0; h < n_heads; h++)
            agree += fabs((double)am_prob(base[(size_t)h * max_ctx + k], s_m[h], s_inv_z[h]) - mean);
    }
    s_abs[tid] = abs_sum;
    s_agree[tid] = agree;
    __syncthreads();
    for (int half = AM_THREADS / 2; half > 0; half >>= 1) {
        if (tid < half) {
            s_abs[tid] += s_abs[tid + half];
            s_agree[tid] += s_agree[tid + half];
        }
        __syncthreads();
    }
    if (tid == 0) {
        double ag = s_agree[0];
        if (u > 0) { // u equal terms per head at the zero slots
            double p0_mean = 0.0;
            for (int h = 0; h < n_heads; h++) p0_mean += s_p0[h];
            p0_mean /= n_heads;
            for (int h = 0; h < n_heads; h++) ag += (double)u * fabs(s_p0[h] - p0_mean);
        }
        double ent_mean = 0.0, ent_var = 0.0;
        for (int h = 0; h < n_heads; h++) ent_mean += s_ent[h];
        ent_mean /= n_heads;
        for (int h = 0; h < n_heads; h++) ent_var += (s_ent[h] - ent_mean) * (s_ent[h] - ent_mean);
        const double slots = (double)n_pos + (double)u;
        EtxAttnStats r;
        r.attn_entropy = (float)ent_mean;
        r.attn_varentropy = (float)(ent_var / n_heads);
        r.agreement = (float)(ag / ((double)n_heads * slots));
        r.interaction = (float)(s_abs[0] / ((double)n_heads * slots));
        out[seq] = r;
    }
}

extern "C" void etx_attn_metrics(const float* scores, int n_seqs, int n_heads, int max_ctx, const int32_t* n_pos,
                                 const int32_t* window, EtxAttnStats* out, void* stream) {
    if (n_seqs <= 0) return;
    if (n_heads > ETX_ATTN_MAX_HEADS) {
        fprintf(stderr, "etx_attn_metrics: %d heads, at most %d supported\n", n_heads, ETX_ATTN_MAX_HEADS);
        exit(EXIT_FAILURE);
    }
    ETX_LAUNCH(attn_metrics_kernel, n_seqs, AM_THREADS, 0, (cudaStream_t)stream, scores, n_heads, max_ctx, n_pos,
               window, out);
    CUDA_CHECK_LAUNCH();
}
