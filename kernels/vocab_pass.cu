/*
 * vocab_pass.cu — one pass over each logits row: softmax statistics and the top-K
 * candidates (vocab_pass.h).
 *
 * Math (one line): m = max x, log Z = m + ln sum e^{x-m}, H = (log Z - E_p[x]) / ln 2,
 * V = Var_p[x] / ln^2 2 with p = softmax(x), sigma = sqrt(mean_i (x_i - mean x)^2) over
 * the finite x; candidates = the first K of the row sorted by (x desc, id asc);
 * nonfinite = OR_i [x_i is NaN or +-inf].
 *
 * The nonfinite flag costs one bit test per logit and a shared OR per block (each part's
 * flag in scratch when a row is split); it travels in EtxVocabStats to the policy step,
 * which turns it into the pick's fault code in the token slot (no extra copy to the host).
 *
 * Memory traffic: the row is read once (4 vocab bytes per sequence) and the n kept
 * candidates' logits a second time (K floats, from cache); writes are 24 + 12 K bytes
 * per sequence, plus, when a row is split over G blocks, G (56 + 8 K) bytes of partial
 * results written and read back once (the keys up to 8 times, from L2, by the final
 * selection). Blocks of VP_THREADS; one per sequence, or G per sequence for small
 * batches (vp_split: about VP_TARGET_BLOCKS blocks in all, chunks of at least 2048
 * logits, at most 64 blocks per row), the last of them merging the G parts.
 *
 * Why so many blocks: on an H200 the pass took 140 us for one row of 128256 when it ran
 * 16 blocks. ncu counted 2.96 M warp-instructions at IPC 1.08 on 16 of 132 SMs, and FP64
 * was 7 % of them; most went to bitonic sorts of the 2048-key buffer
 * (benchmarks/results/gpu-tc-h200-2026-12-04.md). Now a chunk of at most 2048 logits
 * keeps all its keys in the buffer and takes its top K with one radix select. That is
 * 8 bits a pass and stops early once the K-th key's bin is whole, so the buffer is never
 * sorted. The last block of a split row radix-selects the top K of the parts' G x K keys
 * in the same way, and merges the parts' statistics with the block merge a block uses
 * for its own threads.
 *
 * Statistics, in f32 where the logits are, merged in double: the row is cut into
 * segments of VP_SEG = 256 logits at multiples of 256 (a split row's chunks are
 * multiples of it, vp_chunk). A warp reads a segment, 8 logits a lane, and computes its
 * softmax moments in f32 (max, then z = ones + sum e^{x-max}, mean and M2 about it by a
 * second pass; vp_segment) and its plain moments for sigma likewise; the segment becomes
 * a double (max, z, c, M2, n, mu, s2) and is merged Chan-style into the warp's double
 * accumulator, and the warps' accumulators are merged in a block tree, as
 * host/policy/metrics.c merges its blocks. Why: the earlier pass did a double exp and a
 * Welford update per logit, which is slow on cards with 1/64-rate FP64 (L4, L40S, RTX;
 * 7 % of the instructions on an H200). Now a double merge is paid per 256 logits. Why
 * not f32 per thread: a thread's logits depend on the split, the split on the batch, so
 * f32 sums over them would make the signals depend on the batch by f32 rounding; a
 * segment holds the same logits at any batch, so the batch moves only the order of
 * double merges, as before. Accuracy: 256-term f32 sums of one sign, a few 1e-7
 * relative (test: 1e-5 relative against the double CPU twin, as before).
 *
 * Top-K, chunks of more than 2048 logits (large batches: one block per row): a shared
 * list of the K best keys so far (vocab_pass.h: etx_cand_key) and a threshold (the K-th
 * key); the logits that beat the threshold are appended to a staging area, one shared
 * atomic per warp (a ballot places each lane's); when it may not hold another half
 * tile, list and staging are bitonic-sorted together and the first K kept. On a random row the threshold rises fast
 * and merges are rare; a row in increasing order merges every tile (still exact).
 * Chunks of at most 2048 logits: every key in the buffer, one radix select (above).
 *
 * Twin: host/policy/metrics.c logit_metrics + host/policy/sampler.c sampler_candidates;
 * tests: tests/kernels/test_sampling_kernels.c test_vocab_pass_small, _large (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "vocab_pass.h"
#include "reduce.cuh"

#include <math.h>

#define VP_THREADS 256
#define VP_WARPS (VP_THREADS / 32)
#define VP_SEG_ITEMS 8                        // logits per lane per segment
#define VP_SEG (32 * VP_SEG_ITEMS)            // logits per segment (one warp's, f32 statistics)
#define VP_TILE (VP_WARPS * VP_SEG)           // logits per tile: a segment per warp
#define VP_HALF (VP_TILE / 2)                 // keys staged at most between two staging checks
#define VP_BUF 2048                           // list + staging, a power of two
#define VP_STAGE (VP_BUF - ETX_TOPK)          // staging slots
#define VP_LN2 0.69314718055994530942
#define VP_MAX_SPLIT 64                       // blocks per sequence at most
#define VP_MIN_CHUNK 2048                     // logits per block at least (= VP_BUF: one buffer)
#define VP_TARGET_BLOCKS 256                  // blocks a launch aims for (H100: 132 SMs)

// Softmax statistics of a set of logits: m = max, z = sum e^{x-m}, c = mean - m,
// m2 = sum e^{x-m} (x - mean)^2, and the plain moments of the finite logits: n = count,
// mu = mean, s2 = sum (x - mu)^2 (metrics.c's LogitAcc).
struct VpAcc {
    double m, z, c, m2;
    double n, mu, s2;
};

// Sums a and b over the warp, every lane getting the same bits: an xor butterfly in
// which lane i and lane i ^ o add the same two values (IEEE addition commutes). The two
// floats travel as one 64-bit shuffle (two shuffles on the GPU, one emulated warp op).
__device__ static void vp_warp_sum2(float* a, float* b) {
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long mine = ((unsigned long long)__float_as_uint(*b) << 32) | __float_as_uint(*a);
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, mine, o);
        *a += __uint_as_float((unsigned)other);
        *b += __uint_as_float((unsigned)(other >> 32));
    }
}

// One segment's statistics, in f32, as a VpAcc in double (every lane returns the same).
// A segment is VP_SEG consecutive logits of the row starting at a multiple of VP_SEG;
// lane l holds xs[j] = logit VP_SEG s + 32 j + l (-inf past the chunk's end).
//   softmax part: m = max (NaN ignored, as vp_merge's comparisons do), y = x - m,
//     z = (number of y == 0) + sum_{y<0} e^y; c = sum e^y y / z; m2 = sum e^y (y - c)^2.
//     The ones are counted, not summed in f32, so z - 1 keeps its relative precision
//     for a peaked row (H ~ 1e-13 bits: the test's ROW_VERY_PEAKED); m2 is a second
//     pass about c rounded to float, corrected in double by z (c - c_f)^2.
//   plain part (sigma): n = count of x != -inf; mu, s2 by a second pass about the f32
//     mean mu_f: D = sum (x - mu_f), Q = sum (x - mu_f)^2, mu = mu_f + D/n, s2 = Q - D^2/n.
// Error: every f32 sum is over 256 terms of one sign (or about their mean), so a
// relative error of a few 1e-7; the double merges that follow add none that matters.
__device__ static VpAcc vp_segment(const float* xs) {
    float m = -INFINITY;
    for (int j = 0; j < VP_SEG_ITEMS; j++) m = fmaxf(m, xs[j]);
    m = __shfl_sync(0xffffffffu, etx_warp_max(m), 0); // fmaxf(+0, -0) may pick either: lane 0's for all
    float rest = 0.0f, s1 = 0.0f, sumx = 0.0f, counts = 0.0f;
    float ws[VP_SEG_ITEMS]; // e^y of each logit, for the second pass (1 at y = 0)
    for (int j = 0; j < VP_SEG_ITEMS; j++) {
        const float x = xs[j];
        ws[j] = 1.0f;
        if (x == -INFINITY) continue;
        sumx += x;
        counts += 512.0f; // n in units of 512, the ones below it: exact in a float (< 2^24)
        if (m == -INFINITY) continue; // only NaNs so far: no softmax part (vp_merge's rule)
        const float y = x - m;
        if (y == 0.0f) {
            counts += 1.0f;
        } else {
            const float w = expf(y); // y NaN (x NaN, or m = +inf) poisons z, as in the CPU twin
            ws[j] = w;
            rest += w;
            s1 += w * y;
        }
    }
    vp_warp_sum2(&rest, &s1);
    vp_warp_sum2(&sumx, &counts);
    const int n = (int)counts / 512, ones = (int)counts % 512;
    VpAcc a;
    a.m = (double)m;
    a.z = (double)ones + (double)rest;
    a.c = a.z > 0.0 ? (double)s1 / a.z : 0.0;
    a.n = (double)n;
    const float cf = (float)a.c, muf = n > 0 ? sumx / (float)n : 0.0f;
    float q = 0.0f, d = 0.0f, qq = 0.0f;
    for (int j = 0; j < VP_SEG_ITEMS; j++) {
        const float x = xs[j];
        if (x == -INFINITY) continue;
        d += x - muf;
        qq += (x - muf) * (x - muf);
        if (m == -INFINITY) continue;
        const float y = x - m;
        q += ws[j] * (y - cf) * (y - cf);
    }
    vp_warp_sum2(&q, &d);
    qq = etx_warp_sum(qq); // the same xor butterfly: every lane the same bits
    const double dc = a.c - (double)cf;
    a.m2 = a.z > 0.0 ? (double)q - a.z * dc * dc : 0.0;
    if (a.m2 < 0.0) a.m2 = 0.0;
    if (n > 0) {
        a.mu = (double)muf + (double)d / n;
        a.s2 = (double)qq - (double)d * ((double)d / n);
        if (a.s2 < 0.0) a.s2 = 0.0;
    } else {
        a.mu = 0.0, a.s2 = 0.0;
    }
    return a;
}

// Merges b into a (metrics.c:acc_merge).
__device__ static void vp_merge(VpAcc* a, const VpAcc* b) {
    if (b->n == 0.0) return; // no finite logit (then z = 0 too)
    if (a->n == 0.0) {
        *a = *b;
        return;
    }
    {   // plain moments: d = mu_b - mu_a, mu = mu_a + d nb / n, s2 = s2a + s2b + d^2 na nb / n
        const double n = a->n + b->n, d = b->mu - a->mu;
        a->mu += d * (b->n / n);
        a->s2 += b->s2 + d * d * (a->n * (b->n / n));
        a->n = n;
    }
    const double M = a->m > b->m ? a->m : b->m;
    const double sa = exp(a->m - M), sb = exp(b->m - M);
    const double za = a->z * sa, zb = b->z * sb, z = za + zb;
    const double ca = a->c + (a->m - M), cb = b->c + (b->m - M);
    if (za == 0.0) {
        a->c = cb, a->m2 = b->m2 * sb;
    } else if (zb == 0.0) {
        a->c = ca, a->m2 = a->m2 * sa;
    } else {
        const double d = cb - ca, fb = zb / z;
        a->c = ca + d * fb;
        a->m2 = a->m2 * sa + b->m2 * sb + d * d * (za * fb);
    }
    a->m = M;
    a->z = z;
}

// Ascending bitonic sort of buf[0..n) (n a power of two) by the whole block; starts
// after a barrier the caller placed, ends with one.
__device__ static void vp_bitonic(unsigned long long* buf, int n) {
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
                const int lo = 2 * stride * (t / stride) + (t % stride), hi = lo + stride;
                const unsigned long long a = buf[lo], b = buf[hi];
                const bool up = (lo & size) == 0;
                if ((a > b) == up) {
                    buf[lo] = b;
                    buf[hi] = a;
                }
            }
            __syncthreads();
        }
    }
}

// Sorts list + `count` staged keys, keeps the first K as the list, resets the staging
// area and raises the threshold. Called by every thread with the same count.
__device__ static void vp_merge_list(unsigned long long* buf, int count, int* s_count,
                                     unsigned long long* s_thresh) {
    const int live = ETX_TOPK + count;
    int n = 1;
    while (n < live) n <<= 1;
    for (int i = live + threadIdx.x; i < n; i += blockDim.x) buf[i] = ETX_KEY_NONE;
    __syncthreads();
    vp_bitonic(buf, n);
    if (threadIdx.x == 0) {
        *s_count = 0;
        *s_thresh = buf[ETX_TOPK - 1];
    }
    __syncthreads();
}

// The shared memory of the selection (the kernel's: a function template's own static
// __shared__ would have internal linkage under the emulator, outside the section it
// swaps per block).
struct VpSelShared {
    unsigned hist[256];
    unsigned wsum[VP_THREADS / 32];
    unsigned digit, rank, total;
    int n;
};

// The k smallest keys among get(0 .. n - 1) (ETX_KEY_NONE entries are not keys): returns
// T such that they are exactly the keys <= T (ETX_KEY_NONE when there are at most k).
// A radix select, 8 bits a pass from the top: each pass histograms the keys that share
// the bits fixed so far, a block scan finds the bin holding the k-th, and the search
// stops early once that whole bin is in. Keys are distinct (the id is in the low word),
// so the k-th is unique. Every thread calls it (VP_THREADS of them); ends with a barrier.
// Cost: per pass one read of the keys and 3 barriers; at most 8 passes.
template <class Get>
__device__ static unsigned long long vp_radix_select(int n, int k, Get get, VpSelShared* sh) {
    unsigned* s_hist = sh->hist;
    unsigned* s_wsum = sh->wsum;
    unsigned& s_digit = sh->digit;
    unsigned& s_rank = sh->rank;
    unsigned& s_total = sh->total;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    unsigned long long prefix = 0, mask = 0;
    unsigned rank = (unsigned)k;
    for (int shift = 56; shift >= 0; shift -= 8) {
        s_hist[tid] = 0; // VP_THREADS == 256 bins
        __syncthreads();
        for (int i = tid; i < n; i += VP_THREADS) {
            const unsigned long long key = get(i);
            if (key != ETX_KEY_NONE && (key & mask) == prefix) atomicAdd(&s_hist[(key >> shift) & 255], 1u);
        }
        __syncthreads();
        // inclusive scan of the bins, thread t on bin t
        const unsigned h = s_hist[tid];
        unsigned incl = h;
        for (int o = 1; o < 32; o <<= 1) {
            const unsigned v = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += v;
        }
        if (lane == 31) s_wsum[warp] = incl;
        __syncthreads();
        for (int w = 0; w < warp; w++) incl += s_wsum[w];
        if (shift == 56 && tid == VP_THREADS - 1) s_total = incl;
        const unsigned excl = incl - h;
        if (excl < rank && rank <= incl) { // one thread, when rank <= the keys left
            s_digit = (unsigned)tid;
            s_rank = rank - excl;
        }
        __syncthreads();
        if (s_total <= (unsigned)k) return ETX_KEY_NONE; // at most k keys: all of them
        const unsigned d = s_digit;
        rank = s_rank;
        const unsigned in_bin = s_hist[d];
        prefix |= (unsigned long long)d << shift;
        mask |= 0xFFull << shift;
        __syncthreads(); // everyone has read the bins before the next pass clears them
        if (in_bin == rank) return prefix | ~mask; // the whole bin is in: every key with these top bits
    }
    return prefix;
}

// The ETX_TOPK smallest keys of get(0 .. n - 1) (ETX_KEY_NONE skipped), sorted, into
// list[0 .. ETX_TOPK) (ETX_KEY_NONE after the last): a radix select, the keys <= its
// threshold gathered into sel and sorted there, then copied (get may read list, so the
// gathering cannot write it). Every thread calls it; ends with a barrier.
template <class Get>
__device__ static void vp_top_keys(int n, Get get, unsigned long long* sel, unsigned long long* list,
                                   VpSelShared* sh) {
    const unsigned long long T = vp_radix_select(n, ETX_TOPK, get, sh);
    int& s_n = sh->n;
    if (threadIdx.x == 0) s_n = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += VP_THREADS) {
        const unsigned long long key = get(i);
        if (key != ETX_KEY_NONE && key <= T) sel[atomicAdd(&s_n, 1)] = key;
    }
    __syncthreads();
    for (int i = s_n + threadIdx.x; i < ETX_TOPK; i += VP_THREADS) sel[i] = ETX_KEY_NONE;
    __syncthreads();
    vp_bitonic(sel, ETX_TOPK);
    for (int i = threadIdx.x; i < ETX_TOPK; i += VP_THREADS) list[i] = sel[i];
    __syncthreads();
}

// Scratch of the split pass: per sequence a counter of finished blocks, then each
// block's statistics and sorted list, part p of sequence s at s * split + p
// (vocab_pass.h: etx_vocab_pass_scratch_bytes). n_seqs * split <= vp_parts(n_seqs).
typedef struct {
    int* done;                // (n_seqs) blocks finished; zeroed by the launcher
    VpAcc* part;              // (n_seqs * split)
    int* bad;                 // (n_seqs * split) each part's nonfinite flag
    unsigned long long* keys; // (n_seqs * split, ETX_TOPK)
} VpScratch;

// Parts of a split launch at most: split <= VP_TARGET_BLOCKS / n_seqs when it is above 1.
static size_t vp_parts(int n_seqs) { return (size_t)(n_seqs > VP_TARGET_BLOCKS ? n_seqs : VP_TARGET_BLOCKS); }

static size_t vp_align(size_t n) { return (n + 255) & ~(size_t)255; }

static VpScratch vp_scratch(void* base, int n_seqs) {
    VpScratch s;
    char* p = (char*)base;
    s.done = (int*)p;
    p += vp_align((size_t)n_seqs * sizeof(int));
    s.part = (VpAcc*)p;
    p += vp_align(vp_parts(n_seqs) * sizeof(VpAcc));
    s.bad = (int*)p;
    p += vp_align(vp_parts(n_seqs) * sizeof(int));
    s.keys = (unsigned long long*)p;
    return s;
}

extern "C" size_t etx_vocab_pass_scratch_bytes(int n_seqs) {
    return vp_align((size_t)n_seqs * sizeof(int)) + vp_align(vp_parts(n_seqs) * sizeof(VpAcc)) +
           vp_align(vp_parts(n_seqs) * sizeof(int)) + vp_parts(n_seqs) * ETX_TOPK * sizeof(unsigned long long);
}

// 1 when x is NaN or +-inf: its exponent bits all ones (logits_nonfinite's test).
__device__ static int vp_nonfinite(float x) {
    union {
        float f;
        uint32_t u;
    } v;
    v.f = x;
    return (v.u & 0x7f800000u) == 0x7f800000u;
}

// Blocks per sequence: enough to give the GPU about VP_TARGET_BLOCKS blocks, each with
// at least VP_MIN_CHUNK logits, at most VP_MAX_SPLIT.
static int vp_split(int n_seqs, int vocab) {
    int g = VP_TARGET_BLOCKS / n_seqs;
    const int by_size = (vocab + VP_MIN_CHUNK - 1) / VP_MIN_CHUNK;
    if (g > by_size) g = by_size;
    if (g > VP_MAX_SPLIT) g = VP_MAX_SPLIT;
    return g < 1 ? 1 : g;
}

// Logits per block of a split row: a multiple of VP_SEG, so that every segment starts
// at the same place of the row whatever the split, and so holds the same logits: only
// the double merges of the segments depend on the batch (see the header). The last
// blocks may get fewer logits, or none.
static __host__ __device__ int vp_chunk(int vocab, int split) {
    const int c = (vocab + split - 1) / split;
    return (c + VP_SEG - 1) / VP_SEG * VP_SEG;
}

// The block's per-thread statistics in shared memory, one array per field.
struct VpShared {
    double m[VP_THREADS], z[VP_THREADS], c[VP_THREADS], m2[VP_THREADS];
    double n[VP_THREADS], mu[VP_THREADS], s2[VP_THREADS];
};

__device__ static VpAcc vp_load(const VpShared* s, int i) {
    VpAcc a = {s->m[i], s->z[i], s->c[i], s->m2[i], s->n[i], s->mu[i], s->s2[i]};
    return a;
}

__device__ static void vp_store(VpShared* s, int i, const VpAcc* a) {
    s->m[i] = a->m, s->z[i] = a->z, s->c[i] = a->c, s->m2[i] = a->m2;
    s->n[i] = a->n, s->mu[i] = a->mu, s->s2[i] = a->s2;
}

// Block-merges the per-thread statistics; the result is in s[0] (ends with a barrier).
__device__ static void vp_block_merge(VpAcc acc, VpShared* s) {
    vp_store(s, threadIdx.x, &acc);
    __syncthreads();
    etx_block_tree<VP_THREADS>([&](int dst, int src) {
        VpAcc a = vp_load(s, dst);
        const VpAcc b = vp_load(s, src);
        vp_merge(&a, &b);
        vp_store(s, dst, &a);
    });
}

// `split` blocks per sequence (blockIdx.x = seq * split + part), VP_THREADS threads; each
// scans its chunk of the row. With split > 1 each block leaves its statistics and list
// in scratch and the last block of the sequence to finish merges them (the counter in
// scratch tells which; fences order the partial results before it).
// The statistics of a merged accumulator (thread 0 writes them).
__device__ static EtxVocabStats vp_stats_of(const VpAcc& a, int bad) {
    EtxVocabStats r;
    const double z = a.z;
    r.max = (float)a.m;
    if (z == 0.0) { // no finite logit
        r.log_z = -INFINITY, r.entropy = 0.0f, r.varentropy = 0.0f, r.sigma = 0.0f;
    } else {
        double h = log(z) - a.c;
        if (h < 0.0) h = 0.0;
        r.entropy = (float)(h / VP_LN2);
        r.varentropy = (float)(a.m2 / z / (VP_LN2 * VP_LN2));
        r.log_z = (float)(a.m + log(z));
        r.sigma = (float)sqrt(a.s2 / a.n);
    }
    r.nonfinite = bad;
    return r;
}

// The logit a candidate key holds (etx_cand_key's inverse; -0 comes back as +0).
__device__ static float vp_key_logit(unsigned long long key) {
    const uint32_t asc = ~(uint32_t)(key >> 32);
    union {
        float f;
        uint32_t u;
    } v;
    v.u = (asc & 0x80000000u) ? (asc & 0x7fffffffu) : ~asc;
    return v.f;
}

// The end of a pass over a row: thread 0 writes the statistics of the merged acc, then
// every thread writes candidates j < n_out from the sorted keys, logit_of(j) their logits,
// with their log-probabilities when logprob is set. Every thread calls it (one barrier).
template <class LogitOf>
__device__ static void vp_write_row(const VpShared* s_acc, int bad, const unsigned long long* keys, int n_out,
                                    int seq, EtxVocabStats* stats, PolicyCandidate* cand, float* logprob,
                                    float* s_log_z, LogitOf logit_of) {
    if (threadIdx.x == 0) {
        const EtxVocabStats r = vp_stats_of(vp_load(s_acc, 0), bad);
        stats[seq] = r;
        *s_log_z = r.log_z;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < n_out; j += blockDim.x) {
        PolicyCandidate c;
        c.logit = logit_of(j);
        c.id = (int32_t)(uint32_t)keys[j];
        cand[(size_t)seq * ETX_TOPK + j] = c;
        if (logprob) logprob[(size_t)seq * ETX_TOPK + j] = c.logit - *s_log_z;
    }
}

// id0: the vocabulary id of the row's first logit (a tensor-parallel shard's slice; 0
// otherwise). part_out: NULL, or a shard's pass: the merged statistics and sorted keys
// of each row go there (etx_vocab_merge finishes them) instead of stats and cand.
__global__ void __launch_bounds__(VP_THREADS)
    vocab_pass_kernel(const float* logits, const int32_t* row_of, int vocab, int split, int n_out, EtxVocabStats* stats,
                      PolicyCandidate* cand, float* logprob, VpScratch sc, int id0, const int32_t* extra_id,
                      EtxVocabPart* part_out) {
    ETX_PDL_ENTRY();
    __shared__ unsigned long long s_buf[VP_BUF]; // [0, K): the list, sorted; [K, K + count): staged
    __shared__ unsigned long long s_sel[ETX_TOPK]; // a selection being sorted
    __shared__ VpSelShared s_select;
    __shared__ VpShared s_acc;
    __shared__ int s_count, s_last, s_bad;
    __shared__ unsigned long long s_thresh;
    __shared__ float s_log_z;
    const int tid = threadIdx.x, seq = blockIdx.x / split, part = blockIdx.x % split;
    const float* row = logits + (size_t)(row_of ? row_of[seq] : seq) * vocab;
    const int chunk = vp_chunk(vocab, split);
    const int lo = part * chunk < vocab ? part * chunk : vocab, hi = lo + chunk < vocab ? lo + chunk : vocab;
    // a chunk that fits the buffer keeps every key and selects its top K once (a radix
    // select: no sorts of the buffer); a longer one streams through the threshold list
    const bool whole = hi - lo <= VP_BUF;

    for (int i = tid; i < ETX_TOPK; i += blockDim.x) s_buf[i] = ETX_KEY_NONE;
    if (tid == 0) {
        s_count = 0;
        s_thresh = ETX_KEY_NONE;
        s_bad = 0;
    }
    __syncthreads();

    // this warp's statistics, merged in double one segment at a time (every lane the same)
    VpAcc wacc = {-INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    const int lane = tid % 32, warp = tid / 32;
    int bad = 0; // this thread saw a NaN or infinite logit
    for (int base = lo; base < hi; base += VP_TILE) {
        const int seg = base + warp * VP_SEG; // this warp's segment (lo is a multiple of VP_SEG)
        float xs[VP_SEG_ITEMS];
        for (int h = 0; h < 2; h++) { // two halves, the staging area checked after each
            for (int j = h * (VP_SEG_ITEMS / 2); j < (h + 1) * (VP_SEG_ITEMS / 2); j++) {
                const int i = seg + 32 * j + lane;
                const float x = i < hi ? row[i] : -INFINITY;
                xs[j] = x;
                bad |= vp_nonfinite(x) & (i < hi);
                const unsigned long long key = i < hi ? etx_cand_key(x, id0 + i) : ETX_KEY_NONE;
                if (whole) {
                    if (i < hi) s_buf[i - lo] = key;
                    continue;
                }
                // staged by warp: one shared atomic per warp for the keys under the threshold
                const bool take = key < s_thresh;
                const unsigned ballot = __ballot_sync(0xffffffffu, take);
                int at = 0;
                if (lane == 0 && ballot) at = atomicAdd(&s_count, __popc(ballot));
                at = __shfl_sync(0xffffffffu, at, 0);
                if (take) s_buf[ETX_TOPK + at + __popc(ballot & ((1u << lane) - 1u))] = key;
            }
            if (whole) continue; // no staging: nothing to merge
            __syncthreads();
            const int count = s_count;
            __syncthreads(); // everyone has read count before the next half appends
            if (count > VP_STAGE - VP_HALF) vp_merge_list(s_buf, count, &s_count, &s_thresh);
        }
        const VpAcc sa = vp_segment(xs);
        vp_merge(&wacc, &sa);
    }
    if (whole) {
        __syncthreads(); // every key in s_buf
        vp_top_keys(hi - lo, [&](int i) { return s_buf[i]; }, s_sel, s_buf, &s_select);
    }
    if (bad) s_bad = 1; // every writer writes the same value; read after the merge's barriers
    if (s_count > 0) vp_merge_list(s_buf, s_count, &s_count, &s_thresh);
    // the warps' statistics, warp w's in slot 32 w (the other slots empty), tree-merged
    const VpAcc empty = {-INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    vp_block_merge(lane == 0 ? wacc : empty, &s_acc);

    if (split > 1) {
        // publish this block's part; the last block of the sequence merges them all
        volatile unsigned long long* my_keys = sc.keys + ((size_t)seq * split + part) * ETX_TOPK;
        for (int j = tid; j < ETX_TOPK; j += blockDim.x) my_keys[j] = s_buf[j];
        if (tid == 0) {
            volatile VpAcc* my_part = sc.part + (size_t)seq * split + part;
            const VpAcc mine = vp_load(&s_acc, 0);
            my_part->m = mine.m, my_part->z = mine.z, my_part->c = mine.c, my_part->m2 = mine.m2;
            my_part->n = mine.n, my_part->mu = mine.mu, my_part->s2 = mine.s2;
            ((volatile int*)sc.bad)[(size_t)seq * split + part] = s_bad;
        }
        __threadfence();
        __syncthreads();
        if (tid == 0) s_last = atomicAdd(&sc.done[seq], 1) == split - 1;
        __syncthreads();
        if (!s_last) return; // the same for the whole block
        __threadfence();
        // the top K of the parts' lists: a radix select over split x K keys (the lists stay
        // in scratch, read through L2 once per pass), then the K sorted into s_buf
        const volatile unsigned long long* all_keys = sc.keys + (size_t)seq * split * ETX_TOPK;
        const int live = split * ETX_TOPK;
        vp_top_keys(live, [&](int i) { return (unsigned long long)all_keys[i]; }, s_sel, s_buf, &s_select);
        // the statistics: part p in thread p (the others empty), then the block merge of a
        // block's own logits: a tree whose order split alone fixes
        VpAcc a = {-INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        if (tid < split) {
            const volatile VpAcc* pg = sc.part + (size_t)seq * split + tid;
            a = VpAcc{pg->m, pg->z, pg->c, pg->m2, pg->n, pg->mu, pg->s2};
        }
        if (tid == 0) {
            const volatile int* bads = sc.bad + (size_t)seq * split;
            int any = 0;
            for (int g = 0; g < split; g++) any |= bads[g];
            s_bad = any;
        }
        vp_block_merge(a, &s_acc); // its barriers also publish s_bad
    }

    if (part_out) { // a shard's part: statistics and keys, for etx_vocab_merge
        EtxVocabPart* po = part_out + seq;
        for (int j = tid; j < ETX_TOPK; j += blockDim.x) po->keys[j] = s_buf[j];
        if (tid == 0) {
            const VpAcc a = vp_load(&s_acc, 0);
            po->m = a.m, po->z = a.z, po->c = a.c, po->m2 = a.m2, po->n = a.n, po->mu = a.mu, po->s2 = a.s2;
            po->nonfinite = s_bad;
            const int xid = extra_id ? extra_id[seq] - id0 : -1;
            po->has_extra = xid >= 0 && xid < vocab;
            po->extra = po->has_extra ? row[xid] : 0.0f;
        }
        return;
    }
    // (id0 is 0 here: a key's id indexes the row)
    vp_write_row(&s_acc, s_bad, s_buf, n_out, seq, stats, cand, logprob, &s_log_z,
                 [&](int j) { return row[(uint32_t)s_buf[j]]; });
}

extern "C" void etx_vocab_pass(const float* logits, const int32_t* row_of, int n_seqs, int vocab, int k,
                               EtxVocabStats* stats,
                               PolicyCandidate* cand, float* logprob, void* scratch, void* stream) {
    if (n_seqs <= 0 || vocab <= 0) return;
    int n_out = k < vocab ? k : vocab;
    if (n_out > ETX_TOPK) n_out = ETX_TOPK;
    const int split = scratch ? vp_split(n_seqs, vocab) : 1;
    VpScratch sc = {NULL, NULL, NULL, NULL};
    if (split > 1) {
        sc = vp_scratch(scratch, n_seqs);
        CUDA_CHECK(cudaMemsetAsync(sc.done, 0, (size_t)n_seqs * sizeof(int), (cudaStream_t)stream));
    }
    ETX_LAUNCH(vocab_pass_kernel, n_seqs * split, VP_THREADS, 0, (cudaStream_t)stream, logits, row_of, vocab, split, n_out,
               stats, cand, logprob, sc, 0, (const int32_t*)NULL, (EtxVocabPart*)NULL);
    CUDA_CHECK_LAUNCH();
}

extern "C" void etx_vocab_pass_part(const float* logits, const int32_t* row_of, int n_seqs, int vocab, int id0,
                                    const int32_t* extra_id, EtxVocabPart* parts, void* scratch, void* stream) {
    if (n_seqs <= 0 || vocab <= 0) return;
    const int split = scratch ? vp_split(n_seqs, vocab) : 1;
    VpScratch sc = {NULL, NULL, NULL, NULL};
    if (split > 1) {
        sc = vp_scratch(scratch, n_seqs);
        CUDA_CHECK(cudaMemsetAsync(sc.done, 0, (size_t)n_seqs * sizeof(int), (cudaStream_t)stream));
    }
    ETX_LAUNCH(vocab_pass_kernel, n_seqs * split, VP_THREADS, 0, (cudaStream_t)stream, logits, row_of, vocab, split,
               ETX_TOPK, (EtxVocabStats*)NULL, (PolicyCandidate*)NULL, (float*)NULL, sc, id0, extra_id, parts);
    CUDA_CHECK_LAUNCH();
}

// One block per sequence: the shards' parts merged in shard order (thread s holds part s,
// the block tree fixes the order), the top K of their n_shards x K keys by the same radix
// select, then the statistics and candidates as etx_vocab_pass writes them (each
// candidate's logit from its key).
__global__ void __launch_bounds__(VP_THREADS)
    vocab_merge_kernel(const EtxVocabPart* parts, int n_shards, int n_seqs, int n_out, EtxVocabStats* stats,
                       PolicyCandidate* cand, float* logprob, float* extra) {
    ETX_PDL_ENTRY();
    __shared__ unsigned long long s_buf[ETX_TOPK];
    __shared__ unsigned long long s_sel[ETX_TOPK];
    __shared__ VpSelShared s_select;
    __shared__ VpShared s_acc;
    __shared__ int s_bad;
    __shared__ float s_log_z;
    const int tid = threadIdx.x, seq = blockIdx.x;
    VpAcc a = {-INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    if (tid < n_shards) {
        const EtxVocabPart* p = parts + (size_t)tid * n_seqs + seq;
        a = VpAcc{p->m, p->z, p->c, p->m2, p->n, p->mu, p->s2};
    }
    if (tid == 0) {
        int any = 0;
        float x = NAN;
        for (int g = 0; g < n_shards; g++) {
            const EtxVocabPart* p = parts + (size_t)g * n_seqs + seq;
            any |= p->nonfinite;
            if (p->has_extra) x = p->extra;
        }
        s_bad = any;
        if (extra) extra[seq] = x;
    }
    vp_block_merge(a, &s_acc); // its barriers also publish s_bad
    vp_top_keys(n_shards * ETX_TOPK,
                [&](int i) { return parts[(size_t)(i / ETX_TOPK) * n_seqs + seq].keys[i % ETX_TOPK]; }, s_sel, s_buf,
                &s_select);
    vp_write_row(&s_acc, s_bad, s_buf, n_out, seq, stats, cand, logprob, &s_log_z,
                 [&](int j) { return vp_key_logit(s_buf[j]); });
}

extern "C" void etx_vocab_merge(const EtxVocabPart* parts, int n_shards, int n_seqs, int vocab, int k,
                                EtxVocabStats* stats, PolicyCandidate* cand, float* logprob, float* extra,
                                void* stream) {
    if (n_seqs <= 0 || vocab <= 0) return;
    int n_out = k < vocab ? k : vocab;
    if (n_out > ETX_TOPK) n_out = ETX_TOPK;
    ETX_LAUNCH(vocab_merge_kernel, n_seqs, VP_THREADS, 0, (cudaStream_t)stream, parts, n_shards, n_seqs, n_out, stats,
               cand, logprob, extra);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_vocab_pass_cost(int n_seqs, int vocab, int k) {
    const int split = vp_split(n_seqs, vocab);
    EtxCost c = {0, 0, 0, 0, 1, 0, 0, 0, 0};
    c.bytes = (double)n_seqs * vocab * 4 + (double)n_seqs * (sizeof(EtxVocabStats) + 12.0 * k);
    if (split > 1) c.bytes += 2.0 * n_seqs * split * (sizeof(VpAcc) + 8.0 * k);
    c.flops = 14.0 * n_seqs * vocab;
    c.ctas = c.busy = (double)n_seqs * split;
    return c;
}
