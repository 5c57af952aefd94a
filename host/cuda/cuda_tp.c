/*
 * cuda_tp.c — tensor parallelism in the CUDA backend (--tp N): one model split across N
 * devices of one process, Megatron-style, driven by shard 0.
 *
 * The split (fill_sizes in cuda_backend.c, the slices in cuda_weights.c):
 *   - attention: shard s holds query heads s H/N .. and KV heads s KV/N .. (whole GQA
 *     groups), their rows of [wq; wk; wv] and biases, their K/V cache, their columns of wo;
 *   - MLP: hidden units s F/N .., their rows of [w_gate; w_up] and columns of w_down;
 *   - LM head: vocabulary ids s ceil(V/N) .. (the last shard the rest);
 *   - replicated: the embedding table, the norms, the residual stream.
 * A layer runs the same plan on every shard (cuda_plan.h) with the shard's sizes; the O
 * and down projections then hold partial sums over the shard's heads / units, and an
 * all-reduce (cuda_comm.h) makes the residual update whole on every shard before the next
 * norm. So each layer has two all-reduces of rows x dim floats, as in Megatron-LM.
 *
 * Sampling never moves whole logits rows in the common case: each shard's vocabulary
 * pass leaves per pick a part (softmax moments, nonfinite flag, top-K keys with global
 * ids: EtxVocabPart, 1,096 bytes), the parts go to shard 0, and etx_vocab_merge gives
 * the statistics and candidates the single-device pass gives (candidates identical,
 * statistics up to the order of double additions). The policy runs once, on shard 0; in
 * a multi-step call its tokens are copied to every shard for the next step's inputs.
 * What does cross whole:
 *   - a pick's whole logits row, only when its policy may need the exact fallback
 *     (cuda_policy_may_need_full_row: top_k 0 or above the K candidates).
 * The attention signals merge the same way across head shards (attn_metrics.h): the
 * agreement needs the mean attention over all heads at each position, so each shard's
 * per-position sums of P are all-reduced first (8 bytes a position), then each shard's
 * deviations from that mean and its heads' records (40 bytes a head) go to shard 0.
 *
 * Departures, said here and in docs/design.md: the step runs eagerly (no CUDA graphs: its
 * launches interleave devices and collectives); the launch plan's sampling ops are not
 * what runs under TP (cuda_tp_sample is), so `etx bench --plan` models one device only.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_comm.h"
#include "device.h"

void cuda_tp_destroy(CudaBackend* b) {
    if (!b) return;
    CudaBackend** shards = b->shards;
    EtxComm* comm = b->comm;
    const int tp = b->tp;
    b->shards = NULL;
    for (int s = tp - 1; s >= 1; s--) cuda_destroy_shard(shards ? shards[s] : NULL);
    cuda_destroy_shard(b);
    etx_comm_free(comm);
    free(shards);
}

etx_status cuda_tp_create(const etx_model* m, const BackendConfig* cfg, CudaBackend** out) {
    *out = NULL;
    const int tp = cfg->tp;
    CudaBackend** shards = xcalloc((size_t)tp, sizeof(CudaBackend*));
    etx_status st = etx_ok();
    for (int s = 0; s < tp && st.code == ETX_OK; s++) st = cuda_create_shard(m, cfg, s, &shards[s]);
    CudaBackend* b = shards[0];
    if (st.code == ETX_OK) {
        int devices[64];
        void* streams[64];
        for (int s = 0; s < tp; s++) devices[s] = shards[s]->gpu, streams[s] = shards[s]->stream;
        st = etx_comm_create(tp, devices, streams, &b->comm);
    }
    if (st.code == ETX_OK) { // shard 0's gathering buffers
        (void)etx_dev_select(b->gpu);
        const size_t mb = (size_t)cfg->max_batch;
        st = cuda_alloc(b, (void**)&b->tp_parts, (size_t)tp * mb * sizeof(EtxVocabPart), "gathered vocabulary parts");
        size_t hb = 0, pb = 0, db = 0;
        etx_attn_metrics_part_bytes(cfg->max_batch, b->shape.n_heads, cfg->max_seq_len, &hb, &pb, &db);
        if (st.code == ETX_OK) st = cuda_alloc(b, &b->am_heads_all, (size_t)tp * hb, "gathered attention records");
        if (st.code == ETX_OK)
            st = cuda_alloc(b, (void**)&b->am_dev_all, (size_t)tp * db, "gathered attention deviations");
        if (st.code == ETX_OK)
            st = cuda_alloc(b, (void**)&b->tp_logits, mb * (size_t)b->vocab_all * 4, "gathered logits rows");
        if (st.code == ETX_OK) st = cuda_alloc(b, (void**)&b->tp_pause_logit, mb * 4, "pause-token logits");
    }
    if (st.code != ETX_OK) {
        if (b) {
            b->shards = shards;
            cuda_tp_destroy(b);
        } else {
            free(shards);
        }
        return st;
    }
    b->shards = shards;
    *out = b;
    return etx_ok();
}

// b's buffer p (one of the ones uploads and rows name) -> the same buffer of shard x.
static void* xlate(const CudaBackend* b, const CudaBackend* x, const void* p) {
    if (!p || b == x) return (void*)p;
#define TP_FIELD(f)                                                                                                 \
    if (p == (const void*)b->f) return (void*)x->f;
    TP_FIELD(d_tokens)
    TP_FIELD(d_row_seq)
    TP_FIELD(d_row_pos)
    TP_FIELD(d_cap_row)
    TP_FIELD(d_table)
    TP_FIELD(d_head_rows)
    TP_FIELD(d_pick_row)
    TP_FIELD(d_n_pos)
    TP_FIELD(d_window)
    TP_FIELD(d_policies)
    TP_FIELD(d_states)
    TP_FIELD(d_ds)
    TP_FIELD(d_pause)
    TP_FIELD(scores)
    TP_FIELD(layers)
    TP_FIELD(tmp_kv)
    TP_FIELD(tmp_all)
#undef TP_FIELD
    // a logits row of b (the decode rows at 0, the prefill picks' at max_batch + h): the
    // same row of x's logits, whose rows hold x's slice of the vocabulary
    if ((const float*)p >= b->logits && (const float*)p < b->logits + 2 * (size_t)b->cfg.max_batch * b->vocab) {
        const size_t row = (size_t)((const float*)p - b->logits) / (size_t)b->vocab;
        return x->logits + row * x->vocab;
    }
    fprintf(stderr, "[etx] cuda_tp.c: a buffer of shard 0 with no counterpart on shard %d (a bug)\n", x->shard);
    abort();
}

void cuda_up(CudaBackend* b, void* dst, const void* src, size_t bytes) {
    if (!b->shards) { // one device: through its pinned staging arena (cuda_stage.c)
        cuda_stage_up(b, dst, src, bytes);
        return;
    }
    // shards: from the pageable source, which CUDA reads before each call returns (the
    // arena's reuse rule would need every shard's stream synchronised; left)
    for (int s = 0; s < b->tp; s++) {
        CudaBackend* x = cuda_shard(b, s);
        if (x != b) (void)etx_dev_select(x->gpu);
        etx_dev_upload_on(xlate(b, x, dst), src, bytes, x->stream);
    }
    if (b->shards) (void)etx_dev_select(b->gpu);
}

// The rows r of shard 0 as shard x's: the same rows in x's own buffers.
static CudaRows rows_of(const CudaBackend* b, const CudaBackend* x, const CudaRows* r) {
    CudaRows y = *r;
    y.d_tokens = xlate(b, x, r->d_tokens);
    y.d_row_seq = xlate(b, x, r->d_row_seq);
    y.d_row_pos = xlate(b, x, r->d_row_pos);
    y.d_table = xlate(b, x, r->d_table);
    y.kv = xlate(b, x, r->kv);
    y.scores = xlate(b, x, r->scores);
    y.d_cap_row = xlate(b, x, r->d_cap_row);
    y.logits = xlate(b, x, r->logits);
    return y;
}

void cuda_run_ops(CudaBackend* b, const CudaRows* r, const CudaOp* ops, int n_ops) {
    if (!b->shards) {
        for (int i = 0; i < n_ops; i++) cuda_exec_op(b, r, &ops[i]);
        return;
    }
    const int tp = b->tp;
    CudaRows rs[64];
    for (int s = 0; s < tp; s++) rs[s] = rows_of(b, b->shards[s], r);
    for (int i = 0; i < n_ops; i++) {
        const CudaOp* o = &ops[i];
        for (int s = 0; s < tp; s++) {
            (void)etx_dev_select(b->shards[s]->gpu);
            cuda_exec_op(b->shards[s], &rs[s], o);
        }
        // the O and down projections' partial sums (over the shard's heads / hidden units)
        // made whole on every shard: delta rows 0 .. n - 1, where the next norm adds them
        if (o->kind == CUDA_OP_GEMM && (o->which == CUDA_W_O || o->which == CUDA_W_DOWN)) {
            float* bufs[64];
            for (int s = 0; s < tp; s++) bufs[s] = b->shards[s]->delta + (size_t)o->row0 * b->dim;
            etx_comm_allreduce_sum(b->comm, bufs, (size_t)o->n * b->dim);
        }
    }
    (void)etx_dev_select(b->gpu);
}

// Whether a pick under policy p may need its whole logits row on the device (the policy
// kernel's exact fallback: a decision's top_k is 0 or beyond the ETX_TOPK candidates;
// kernels/policy_step.cu). Conservative: entropix's widest cut is 1.5 top_k (its HEHV
// branch) and its adaptive one at most 100.
int cuda_policy_may_need_full_row(const etx_policy* p, int vocab) {
    int k = 0;
    switch (p->kind) {
    case ETX_POLICY_GREEDY: return 0;
    case ETX_POLICY_SAMPLE: k = p->top_k; break;
    case ETX_POLICY_ENTROPIX:
        k = p->entropix.top_k <= 0 ? 0 : p->entropix.top_k + (p->entropix.top_k + 1) / 2;
        break;
    case ETX_POLICY_LEARNED: { // its widest action: a sample action's top_k, adaptive's 100
        const etx_learned_net* net = etx_learned_get(p->learned);
        if (!net) return 1;
        for (int j = 0; j < net->n_actions; j++) {
            const etx_learned_action* a = &net->actions[j];
            if (a->kind == ETX_ACTION_SAMPLE && a->top_k <= 0) return vocab > ETX_TOPK;
            const int kj = a->kind == ETX_ACTION_SAMPLE ? a->top_k : a->kind == ETX_ACTION_ADAPTIVE ? 100 : 1;
            if (kj > k) k = kj;
        }
        break;
    }
    case ETX_POLICY_DSLIDER: return 0; // its token is always one of the candidates
    default: return 1;
    }
    if (vocab <= ETX_TOPK) return 0; // every id is a candidate
    return k <= 0 || k > ETX_TOPK;
}

void cuda_tp_sample(CudaBackend* b, int np, int metrics) {
    const int tp = b->tp;
    EtxCommCopy* cp = xcalloc((size_t)np * tp + (size_t)tp, sizeof(EtxCommCopy));
    // 1. each shard's vocabulary pass over its slice of every pick's row
    for (int s = 0; s < tp; s++) {
        CudaBackend* x = b->shards[s];
        (void)etx_dev_select(x->gpu);
        etx_vocab_pass_part(x->logits, x->d_pick_row, np, x->vocab, x->vocab0, x->d_pause, x->tp_part, x->vp_scratch,
                            x->stream);
        cp[s] = (EtxCommCopy){s, 0, x->tp_part, b->tp_parts + (size_t)s * np, (size_t)np * sizeof(EtxVocabPart)};
    }
    etx_comm_copy(b->comm, cp, tp);
    (void)etx_dev_select(b->gpu);
    etx_vocab_merge(b->tp_parts, tp, np, b->vocab_all, ETX_TOPK, b->stats, b->cand, NULL, b->tp_pause_logit, b->stream);
    // 2. the attention signals, the heads split across the shards (attn_metrics.h): each
    //    shard's per-position sums of P all-reduced, then its deviations from their mean,
    //    then its head records and chunk sums merged on shard 0; the scores stay put
    const int H = b->m->cfg.n_heads, Hl = b->shape.n_heads, msl = b->cfg.max_seq_len;
    if (metrics) {
        double* bufs[64];
        for (int s = 0; s < tp; s++) {
            CudaBackend* x = b->shards[s];
            (void)etx_dev_select(x->gpu);
            etx_attn_metrics_psum(x->scores, x->d_pick_row, np, Hl, msl, x->d_n_pos, x->d_window, x->am_heads,
                                  x->am_psum, x->stream);
            bufs[s] = x->am_psum;
        }
        etx_comm_allreduce_sum_f64(b->comm, bufs, (size_t)np * msl);
        size_t hb = 0, pb = 0, db = 0;
        etx_attn_metrics_part_bytes(np, Hl, msl, &hb, &pb, &db);
        int n = 0;
        for (int s = 0; s < tp; s++) {
            CudaBackend* x = b->shards[s];
            (void)etx_dev_select(x->gpu);
            etx_attn_metrics_dev(x->scores, x->d_pick_row, np, Hl, H, msl, x->d_n_pos, x->d_window, x->am_heads,
                                 x->am_psum, x->am_dev, x->stream);
            cp[n++] = (EtxCommCopy){s, 0, x->am_heads, (char*)b->am_heads_all + (size_t)s * hb, hb};
            cp[n++] = (EtxCommCopy){s, 0, x->am_dev, (char*)b->am_dev_all + (size_t)s * db, db};
        }
        etx_comm_copy(b->comm, cp, n);
        (void)etx_dev_select(b->gpu);
        etx_attn_metrics_merge(np, tp, Hl, msl, b->d_n_pos, b->d_window, b->am_heads_all, b->am_dev_all, b->attn,
                               b->stream);
    }
    // 3. whole logits rows, only for a policy that may need the exact fallback (upload_picks
    // asked cuda_policy_may_need_full_row of every pick)
    const int full = b->fallback;
    if (full) {
        int n = 0;
        for (int p = 0; p < np; p++)
            for (int s = 0; s < tp; s++) {
                CudaBackend* x = b->shards[s];
                cp[n++] = (EtxCommCopy){s, 0, x->logits + (size_t)b->h_pick_row[p] * x->vocab,
                                        b->tp_logits + (size_t)p * b->vocab_all + x->vocab0, (size_t)x->vocab * 4};
            }
        etx_comm_copy(b->comm, cp, n);
        (void)etx_dev_select(b->gpu);
    }
    free(cp);
    // 4. the policy, once, on shard 0
    EtxPolicyArgs a = {.n_seqs = np, .vocab = b->vocab_all, .logits = full ? b->tp_logits : NULL, .logit_row = NULL,
                       .stats = b->stats, .cand = b->cand,
                       .n_cand = b->vocab_all < ETX_TOPK ? b->vocab_all : ETX_TOPK, .attn = metrics ? b->attn : NULL,
                       .policies = b->d_policies, .states = b->d_states, .stop_ids = NULL, .eos_ids = b->eos_ids,
                       .n_eos = b->n_eos, .scratch = b->pol_scratch, .tokens = b->d_next, .done = b->d_done,
                       .trace = b->cfg.trace ? b->d_trace : NULL, .pause_logit = b->tp_pause_logit,
                       .nets = b->d_nets, .ds = b->d_ds, .no_fallback = !full};
    etx_policy_step(&a, b->stream);
}

void cuda_tp_share_next(CudaBackend* b, int np) {
    EtxCommCopy cp[64];
    for (int s = 1; s < b->tp; s++) cp[s - 1] = (EtxCommCopy){0, s, b->d_next, b->shards[s]->d_next, (size_t)np * 4};
    etx_comm_copy(b->comm, cp, b->tp - 1);
    (void)etx_dev_select(b->gpu);
}

void cuda_tp_download_row(CudaBackend* b, const float* which, int row, float* out) {
    for (int s = 0; s < b->tp; s++) {
        CudaBackend* x = cuda_shard(b, s);
        (void)etx_dev_select(x->gpu);
        const float* src = which == b->tmp_all ? x->tmp_all : x->logits;
        etx_dev_download_on(out + x->vocab0, src + (size_t)row * x->vocab, (size_t)x->vocab * 4, x->stream);
    }
    (void)etx_dev_select(b->gpu);
}
