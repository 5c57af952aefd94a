/*
 * policy_step.cu — the policy step on the device (policy_step.h): decision, filter + draw, token,
 * trace record, done flag: what host/policy/sampler.c (sampler_pick) and hostdev/policy_math.h
 * do on the CPU, plus the stop checks and trace record of host/engine/engine.c's accept.
 *
 * Math (one line): token = -fault if the inputs are not finite, else forced | argmax |
 * cand[min_j draw_j], draw_j = inverse CDF of the filtered weights e^{(x_i - x_0)/T} at
 * Philox(seed; step, j, key) (policy_math.h); the filters: top-nσ's floor x_i >= max -
 * n sigma, top-k, top-p, min-p.
 *
 * Non-finite inputs: the vocab pass's nonfinite flag and, for entropix, the signals go
 * through policy_input_fault (policy_math.h), as on the CPU; a fault writes its negative
 * code into the token slot, the one output that already crosses to the host, so the check
 * adds no copy and no synchronisation and stays inside a captured graph.
 *
 * Kernel 1, policy_kernel, a warp per sequence (issue 15 item 3): lane 0 reads its
 * metrics (16 + 16 bytes), policy and state and decides; the warp reads up to ETX_TOPK
 * candidates (8 bytes each, coalesced) and computes their weights in parallel; lane 0
 * adds them in order and draws — all from the vocab pass, so a step costs O(K) per
 * sequence. A dslider sequence also reads and rewrites its DSliderState (~300 bytes) and
 * runs its Dirichlet fit in lane 0 (~0.3 Mflop: policy_dslider.h), the one heavy
 * decision; it never needs the fallback (its token is one of the candidates). Candidates mirror sampler_pick: it gathers
 * the top_k best (all of them when top_k <= 0 or >= vocab) and filters that list; the
 * first top_k of the top-K list are the same tokens in the same order, and the filter's
 * weights and sums run over the same prefix, so the float arithmetic is identical.
 *
 * Kernel 2, policy_fallback_kernel, a block per sequence that needs the whole row
 * (top_k <= 0 or K < top_k < vocab, and no top-nσ floor inside the top-K list): keys
 * (vocab_pass.h: etx_cand_key) bitonic-sorted in global scratch, then top-nσ's floor,
 * policy_filter + policy_draw over the full sorted row, as
 * sampler_pick does over its qsort (the weights by the block, the order-dependent sums
 * by one thread, see pk_sum). Cost for a 128256 vocabulary (2^17 keys, 1 MiB): a
 * bitonic network whose strides below 4096 run in shared memory, 21 passes over the
 * keys (about 40 MiB of L2 traffic from one SM, ~4500 block barriers), the weights (one
 * gather of the row, 0.5 MiB written), then two or three sequential sums over up to
 * vocab weights in one thread — an estimate of a millisecond or two per sequence, not
 * measured on hardware, against microseconds for kernel 1.
 *
 * What engine.c does after the pick, mirrored by pk_finish: the trace record
 * (logprob = logits[token] - log Z, the metrics, the decision's branch / temperature /
 * top_k / top_p / min_p) and the stop checks in its order: a stop id or (unless
 * ignore_eos) an EOS id -> ETX_REQ_DONE_STOP; else n_tokens = step + 1 >= max_tokens or
 * n_prompt + n_tokens >= max_seq_len (no position left) -> ETX_REQ_DONE_LENGTH.
 *
 * Twin: host/policy/sampler.c sampler_pick with hostdev/policy_math.h; tests:
 * tests/kernels/test_sampling_kernels.c test_policy_vocab_* (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "policy_step.h"

#define PK_WARPS 4         // sequences (a warp each) per block of kernel 1
#define PK_SORT_THREADS 512
#define PK_SORT_TILE 4096 // keys sorted in shared memory at a time (32 KiB)

// A decision waiting for the fallback.
typedef struct {
    PolicyDecision d;
    int need_full; // 1: kernel 2 finishes this sequence
} PkPending;

// Scratch layout: pending (n_seqs), keys (n_seqs, pow2), weights (n_seqs, vocab); each
// region 256-byte aligned.
static size_t pk_align(size_t n) { return (n + 255) & ~(size_t)255; }
static int pk_pow2(int n) {
    int p = 1;
    while (p < n) p <<= 1;
    return p;
}

typedef struct {
    PkPending* pending;
    unsigned long long* keys;
    float* w;
    int pow2;
} PkScratch;

static PkScratch pk_scratch(void* base, int n_seqs, int vocab) {
    PkScratch s;
    char* p = (char*)base;
    s.pow2 = pk_pow2(vocab);
    s.pending = (PkPending*)p;
    p += pk_align((size_t)n_seqs * sizeof(PkPending));
    s.keys = (unsigned long long*)p;
    p += pk_align((size_t)n_seqs * s.pow2 * sizeof(unsigned long long));
    s.w = (float*)p;
    return s;
}

extern "C" size_t etx_policy_scratch_bytes(int n_seqs, int vocab) {
    return pk_align((size_t)n_seqs * sizeof(PkPending)) +
           pk_align((size_t)n_seqs * pk_pow2(vocab) * sizeof(unsigned long long)) + (size_t)n_seqs * vocab * sizeof(float);
}

// The step's signals as cpu_backend.c's pick_token gives them.
__device__ static PolicyMetrics pk_metrics(const EtxPolicyArgs* a, int s) {
    PolicyMetrics m = {a->stats[s].entropy, a->stats[s].varentropy, 0.0f, 0.0f, 0.0f, 0.0f,
                       a->stats[s].max, a->stats[s].sigma};
    if (a->attn) {
        m.attn_entropy = a->attn[s].attn_entropy;
        m.attn_varentropy = a->attn[s].attn_varentropy;
        m.agreement = a->attn[s].agreement;
        m.interaction = a->attn[s].interaction;
    }
    return m;
}

// Best of d->n_samples draws over k filtered weights: the smallest index drawn (the
// candidates are sorted, so the highest log-probability, ties to the lower id).
__device__ static int pk_best_draw(const float* w, int k, const PolicyDecision* d, const etx_policy* pol,
                                   const EtxSeqState* st) {
    int best = -1;
    for (int j = 0; j < d->n_samples; j++) {
        const int i = policy_draw(w, k, philox_uniform(pol->seed, st->key, (uint32_t)st->step, (uint32_t)j));
        if (best < 0 || i < best) best = i;
    }
    return best < 0 ? 0 : best;
}

// Sequence s's logits row.
__device__ static const float* pk_row(const EtxPolicyArgs* a, int s) {
    return a->logits + (size_t)(a->logit_row ? a->logit_row[s] : s) * a->vocab;
}

// The logit of token tok of sequence s: from its row when rows are given, else (tensor
// parallelism) from the candidates, or the pause token's from pause_logit.
__device__ static float pk_token_logit(const EtxPolicyArgs* a, int s, int32_t tok) {
    if (a->logits) return pk_row(a, s)[tok];
    const PolicyCandidate* c = a->cand + (size_t)s * ETX_TOPK;
    for (int j = 0; j < a->n_cand; j++)
        if (c[j].id == tok) return c[j].logit;
    if (a->pause_logit && tok == a->states[s].pause_token) return a->pause_logit[s];
    return NAN; // not reached: a draw outside the candidates needs the rows (the fallback)
}

// Token, trace record, done flag (host/cpu/cpu_backend.c after sampler_pick, and
// host/engine/engine.c's stop checks).
__device__ static void pk_finish(const EtxPolicyArgs* a, int s, int32_t tok, const PolicyDecision* d) {
    const EtxSeqState* st = &a->states[s];
    a->tokens[s] = tok;
    if (a->trace) {
        const PolicyMetrics m = pk_metrics(a, s);
        policy_trace_record(&a->trace[s], st->request_id, st->step, tok, pk_token_logit(a, s, tok) - a->stats[s].log_z,
                            a->cand + (size_t)s * ETX_TOPK, a->n_cand, a->stats[s].log_z, &m, d);
    }
    int stop = 0;
    for (int i = 0; i < st->n_stop && !stop; i++) stop = a->stop_ids[st->stop_offset + i] == tok;
    if (!st->ignore_eos)
        for (int i = 0; i < a->n_eos && !stop; i++) stop = a->eos_ids[i] == tok;
    const int n_tokens = st->step + 1;
    int done = 0;
    if (stop)
        done = ETX_REQ_DONE_STOP;
    else if (n_tokens >= st->max_tokens || st->n_prompt + n_tokens >= st->max_seq_len)
        done = ETX_REQ_DONE_LENGTH;
    a->done[s] = done;
}

// A pick whose inputs are not finite (policy_input_fault): no token, the fault's code in
// the token slot (policy_fault_token, < 0; the engine fails the request on it), the fault
// record when tracing, done = ETX_REQ_FAILED. What cpu_backend.c's pick_token does.
__device__ static void pk_fault(const EtxPolicyArgs* a, int s, int fault) {
    const EtxSeqState* st = &a->states[s];
    a->tokens[s] = policy_fault_token(fault);
    if (a->trace) policy_fault_record(&a->trace[s], st->request_id, st->step, fault);
    a->done[s] = ETX_REQ_FAILED;
}

// Kernel 1: a warp per sequence (PK_WARPS a block). Lane 0 does what is one sequence's
// scalar work: the fault check, the decision (dslider's fit and the learned network
// included), forced / argmax tokens, whether the fallback must finish it; then the warp
// computes the candidates' weights, lane i the candidates i, i + 32, ... (each weight
// independent: policy_weight), into shared memory; then lane 0 cuts them (top-p, min-p:
// sums in candidate order, policy_filter_cut), draws and finishes. The same float
// operations in the same order as policy_filter + policy_draw on the CPU; what the warp
// adds is the 128 exponentials in parallel and coalesced reads of the candidates.
__global__ void __launch_bounds__(PK_WARPS * 32) policy_kernel(EtxPolicyArgs a, PkScratch sc) {
    ETX_PDL_ENTRY();
    __shared__ float w_s[PK_WARPS][ETX_TOPK];
    __shared__ PolicyDecision d_s[PK_WARPS];
    __shared__ int k_s[PK_WARPS]; // weights to compute (0: lane 0 has finished the sequence)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int s = blockIdx.x * PK_WARPS + warp;
    if (s >= a.n_seqs) return; // the whole warp
    const etx_policy* pol = &a.policies[s];
    const EtxSeqState* st = &a.states[s];
    const PolicyCandidate* c = a.cand + (size_t)s * ETX_TOPK;
    if (lane == 0) {
        k_s[warp] = 0;
        PkPending* pend = &sc.pending[s];
        pend->need_full = 0;
        const PolicyMetrics m = pk_metrics(&a, s);
        const int fault = policy_input_fault(a.stats[s].nonfinite, &m, policy_signals_used(pol));
        PolicyDecision d;
        if (fault) {
            pk_fault(&a, s, fault);
        } else {
            if (pol->kind == ETX_POLICY_DSLIDER) // the token in forced_token; the state updated in place
                d = dslider_decide(pol, &a.ds[s], &m, c, a.n_cand, a.stats[s].log_z, st->key, (uint32_t)st->step);
            else if (pol->kind == ETX_POLICY_LEARNED) // the features from the same candidates the CPU sorts
                d = learned_decide(pol, &a.nets[pol->learned - 1], &m, c, a.n_cand, a.stats[s].log_z, st->key,
                                   (uint32_t)st->step, st->prev_token, st->pause_token);
            else if (pol->kind == ETX_POLICY_ENTROPIX)
                d = entropix_decide(&pol->entropix, &m, st->prev_token, st->pause_token);
            else
                d = policy_decision_simple(pol, &m);
            pend->d = d;
            d_s[warp] = d;
            // sampler_candidates(limit = top_k): all tokens when top_k <= 0 or >= vocab;
            // unless top-nσ's floor ends the kept prefix inside the list (its last candidate
            // is below the floor), which then holds every token the CPU's filter would weigh
            const int need = (d.top_k <= 0 || d.top_k >= a.vocab) ? a.vocab : d.top_k;
            if (d.forced_token >= 0) pk_finish(&a, s, d.forced_token, &d);
            else if (d.argmax) pk_finish(&a, s, c[0].id, &d); // sample_argmax: largest, lowest id
            else if (need > a.n_cand && !(a.n_cand > 0 && c[a.n_cand - 1].logit < d.min_logit)) pend->need_full = 1;
            else k_s[warp] = policy_filter_top_k(policy_logit_floor(c, a.n_cand, d.min_logit), d.top_k);
        }
    }
    __syncwarp();
    const int k = k_s[warp];
    if (k == 0) return; // the whole warp: finished by lane 0, or left to the fallback
    const float inv_t = 1.0f / d_s[warp].temperature; // policy_filter's
    for (int i = lane; i < k; i += 32) w_s[warp][i] = policy_weight(c, i, inv_t);
    __syncwarp();
    if (lane != 0) return;
    const PolicyDecision d = d_s[warp];
    const int kept = policy_filter_cut(w_s[warp], k, d.top_p, d.min_p);
    pk_finish(&a, s, c[pk_best_draw(w_s[warp], kept, &d, pol, st)].id, &d);
}

// Bitonic stages of one merge size: strides stride_top down to stride_bottom over
// buf[0..n), buf being the keys from global index `base` on (a shared tile or the whole
// row); the direction of each pair is the full network's, from its global index. Every
// stride ends with a barrier.
__device__ static void pk_stages(unsigned long long* buf, int n, int base, int size, int stride_top,
                                 int stride_bottom) {
    for (int stride = stride_top; stride >= stride_bottom; stride >>= 1) {
        for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
            const int lo = 2 * stride * (t / stride) + (t % stride), hi = lo + stride;
            const unsigned long long x = buf[lo], y = buf[hi];
            const bool up = ((base + lo) & size) == 0;
            if ((x > y) == up) {
                buf[lo] = y;
                buf[hi] = x;
            }
        }
        __syncthreads();
    }
}

// The stages of merge size `size` with strides below `tile_n`, a shared tile at a time
// (size == 0: every size up to tile_n, i.e. sort each tile in the network's direction).
__device__ static void pk_tiles(unsigned long long* keys, int n, unsigned long long* tile, int tile_n, int size) {
    for (int base = 0; base < n; base += tile_n) {
        for (int i = threadIdx.x; i < tile_n; i += blockDim.x) tile[i] = keys[base + i];
        __syncthreads();
        if (size == 0)
            for (int sz = 2; sz <= tile_n; sz <<= 1) pk_stages(tile, tile_n, base, sz, sz >> 1, 1);
        else
            pk_stages(tile, tile_n, base, size, tile_n >> 1, 1);
        for (int i = threadIdx.x; i < tile_n; i += blockDim.x) keys[base + i] = tile[i];
        __syncthreads();
    }
}

// Ascending bitonic sort of keys[0..n) (n a power of two) by the block: strides below
// PK_SORT_TILE in shared memory, the longer ones in global memory. For n = 2^17 that is
// 21 passes over the keys instead of the 153 of an all-global network.
__device__ static void pk_sort(unsigned long long* keys, int n) {
    __shared__ unsigned long long s_tile[PK_SORT_TILE];
    const int tile_n = n < PK_SORT_TILE ? n : PK_SORT_TILE;
    pk_tiles(keys, n, s_tile, tile_n, 0);
    for (int size = 2 * tile_n; size <= n; size <<= 1) {
        pk_stages(keys, n, 0, size, size >> 1, tile_n);
        pk_tiles(keys, n, s_tile, tile_n, size);
    }
}

// Weights and sums of the fallback: policy_filter and policy_draw (policy_math.h) over
// the whole sorted row, with the same float operations in the same order — the weights
// w_i = etx_expf((x_i - x_0) / T) by the whole block (each is independent), the sums and
// scans (whose float results depend on their order) by one thread, reading PK_BATCH
// weights at a time so that the loads overlap while the adds stay in order. The tests
// compare the result with sampler_pick, so any drift from policy_math.h shows there.
#define PK_BATCH 32
#ifdef __CUDACC__
#define PK_UNROLL _Pragma("unroll")
#else
#define PK_UNROLL // g++ (emulator) rejects the CUDA pragma under -Werror
#endif

// sum_{i<k} w_i, added from i = 0 up.
__device__ static float pk_sum(const float* w, int k) {
    float total = 0.0f;
    int i = 0;
    for (; i + PK_BATCH <= k; i += PK_BATCH) {
        float v[PK_BATCH];
        PK_UNROLL
        for (int j = 0; j < PK_BATCH; j++) v[j] = w[i + j];
        PK_UNROLL
        for (int j = 0; j < PK_BATCH; j++) total += v[j];
    }
    for (; i < k; i++) total += w[i];
    return total;
}

// The first i < k whose running sum reaches target (>=, or > when strict); -1 if none.
__device__ static int pk_scan(const float* w, int k, float target, int strict) {
    float cum = 0.0f;
    for (int i = 0; i < k; i += PK_BATCH) {
        const int nb = k - i < PK_BATCH ? k - i : PK_BATCH;
        float v[PK_BATCH];
        PK_UNROLL
        for (int j = 0; j < PK_BATCH; j++) v[j] = j < nb ? w[i + j] : 0.0f;
        PK_UNROLL
        for (int j = 0; j < PK_BATCH; j++) { // unrolled: v stays in registers
            if (j >= nb) break;
            cum += v[j];
            if (strict ? cum > target : cum >= target) return i + j;
        }
    }
    return -1;
}

// Kernel 2: a block per sequence; only the sequences kernel 1 left pending work.
__global__ void __launch_bounds__(PK_SORT_THREADS) policy_fallback_kernel(EtxPolicyArgs a, PkScratch sc) {
    ETX_PDL_ENTRY();
    const int s = blockIdx.x;
    const PkPending* pend = &sc.pending[s];
    if (!pend->need_full) return; // the same for the whole block
    const PolicyDecision d = pend->d;
    const float* row = pk_row(&a, s);
    unsigned long long* keys = sc.keys + (size_t)s * sc.pow2;
    for (int i = threadIdx.x; i < sc.pow2; i += blockDim.x)
        keys[i] = i < a.vocab ? etx_cand_key(row[i], i) : ETX_KEY_NONE;
    __syncthreads();
    pk_sort(keys, sc.pow2); // keys[i]: the i-th candidate in sampler_candidates' order

    // top-nσ's floor: policy_logit_floor's bisection, over the sorted keys' logits instead
    // of a candidate array (by every thread alike), then
    // policy_filter: top-k cut, weights, top-p prefix, min-p prefix
    int k = a.vocab;
    const float x0 = row[(uint32_t)keys[0]];
    if (k > 1 && row[(uint32_t)keys[k - 1]] < d.min_logit) {
        int lo = 1, hi = k - 1;
        while (lo < hi) {
            const int mid = lo + (hi - lo) / 2;
            if (row[(uint32_t)keys[mid]] < d.min_logit) hi = mid;
            else lo = mid + 1;
        }
        k = lo;
    }
    if (d.top_k > 0 && d.top_k < k) k = d.top_k;
    const float inv_t = 1.0f / d.temperature;
    float* w = sc.w + (size_t)s * a.vocab;
    for (int i = threadIdx.x; i < k; i += blockDim.x) w[i] = etx_expf((row[(uint32_t)keys[i]] - x0) * inv_t);
    __syncthreads();
    if (threadIdx.x != 0) return;
    if (d.top_p < 1.0f) {
        const int i = pk_scan(w, k, d.top_p * pk_sum(w, k), 0);
        if (i >= 0) k = i + 1;
    }
    if (d.min_p > 0.0f) {
        int keep = 1;
        while (keep < k && w[keep] >= d.min_p) keep++;
        k = keep;
    }
    // policy_draw, best of n_samples (pk_best_draw); the total is the same for every draw
    const etx_policy* pol = &a.policies[s];
    const EtxSeqState* st = &a.states[s];
    const float total = pk_sum(w, k);
    int best = -1;
    for (int j = 0; j < d.n_samples; j++) {
        const float u = philox_uniform(pol->seed, st->key, (uint32_t)st->step, (uint32_t)j);
        int i = pk_scan(w, k, u * total, 1);
        if (i < 0) i = k - 1;
        if (best < 0 || i < best) best = i;
    }
    if (best < 0) best = 0;
    pk_finish(&a, s, (int32_t)(uint32_t)keys[best], &d);
}

extern "C" void etx_policy_step(const EtxPolicyArgs* a, void* stream) {
    if (a->n_seqs <= 0) return;
    const EtxPolicyArgs args = *a;
    const PkScratch sc = pk_scratch(a->scratch, a->n_seqs, a->vocab);
    ETX_LAUNCH(policy_kernel, etx_ceil_div(a->n_seqs, PK_WARPS), PK_WARPS * 32, 0, (cudaStream_t)stream, args, sc);
    CUDA_CHECK_LAUNCH();
    if (a->no_fallback) return; // every pick stays within its candidates (the caller's bound)
    ETX_LAUNCH(policy_fallback_kernel, a->n_seqs, PK_SORT_THREADS, 0, (cudaStream_t)stream, args, sc);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_policy_step_cost(int n_seqs, int fallback) {
    EtxCost c = {0, 0, 0, 0, 1 + (fallback != 0), 0, 0, 0, 0};
    c.bytes = (double)n_seqs * (ETX_TOPK * 12.0 + sizeof(EtxVocabStats) + sizeof(etx_policy) + 2 * sizeof(EtxSeqState) +
                                sizeof(etx_trace_record) + 8);
    c.flops = (double)n_seqs * ETX_TOPK * 20.0;
    c.ctas = (double)etx_ceil_div(n_seqs, PK_WARPS) + (fallback ? n_seqs : 0);
    c.busy = (double)etx_ceil_div(n_seqs, PK_WARPS);
    return c;
}
