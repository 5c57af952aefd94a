/*
 * cuda_backend.c — the CUDA backend as the engine sees it (host/engine/backend.h): create
 * (model upload, paged K/V pools, activations, sampling buffers; refuses a plan that does
 * not fit the device's free memory, never aborts on out of memory), step (copy-on-write
 * block copies, the prefill chunks packed into few launches, every decode row as one batch, then for
 * the picks the vocabulary pass, attention metrics and policy on the device; only the
 * tokens, and trace records when tracing, come back), logits (a forward with private
 * K/V blocks), and the registration constructor.
 *
 * A pick whose logits (or the signals its policy reads) are not finite comes back as a
 * negative fault code in its token slot (kernels/policy_step.h), which the engine turns
 * into the request's error; in a multi-step call the row then runs on with token 0
 * (kernels/advance.h) and the engine ignores the rest of it.
 *
 * d2h_bytes counts what step() downloads: 4 bytes per pick (its int32 token), plus
 * sizeof(etx_trace_record) per pick when tracing. The done flags stay on the device (the
 * engine re-checks stops); BackendPick has no max_tokens, stop ids or ignore_eos, so the
 * policy kernel's own done flag only knows EOS and the context length.
 *
 * Built natively (kernels through nvcc, cuBLAS) and under the SIMT emulator (ETX_SIMT),
 * where the backend is named "cuda (SIMT emulator)".
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "device.h"
#include "gemm.h"
#include "kv_copy.h"

#ifdef ETX_SIMT
#define CUDA_BACKEND_NAME "cuda (SIMT emulator)"
#define CUDA_EMULATED 1
#else
#define CUDA_BACKEND_NAME "cuda"
#define CUDA_EMULATED 0
#endif

// Prompt rows per prefill work: one chunk is one set of GEMMs of this many rows. Large
// enough to keep the tensor cores busy on a prompt, small enough that a step's token
// budget (chunk + max_batch) does not stall the decode rows that share it for long.
#define CUDA_PREFILL_CHUNK 128
// Prefill rows per attention launch (at least max_batch): bounds the split workspace,
// (rows, n_heads, splits, head_dim + 2) floats, at long contexts.
#define CUDA_ATTN_SLICE 256
// Decode steps per host synchronisation when the engine options leave it open.
#define CUDA_STEPS_PER_SYNC 8

// Floats of one row of b->scores: this shard's heads over the context.
static size_t score_row(const CudaBackend* b) { return (size_t)b->shape.n_heads * b->cfg.max_seq_len; }

// Bytes create() will ask for: weights, K/V pools, activations (with the attention split
// workspace) and sampling buffers (double, so an absurd configuration cannot overflow). create() also
// keeps cuda_headroom() free beside it.
static double plan_bytes(const CudaBackend* b, int tied, double* kv_bytes) {
    const double dim = b->dim, L = b->n_layers, V = b->vocab, rows = b->max_rows, mb = b->cfg.max_batch;
    double w = L * ((double)b->qkv_dim * dim + dim * b->q_dim + 2.0 * b->hidden * dim + dim * b->hidden) * 2;
    w += (double)b->vocab_all * dim * 2 + (tied && b->tp == 1 ? 0.0 : V * dim * 2) + L * dim * 8;
    w += L * ((b->m->cfg.qkv_bias ? b->qkv_dim * 4.0 : 0) + (b->m->cfg.qk_norm ? b->hdp * 8.0 : 0)); // Qwen's, f32
    *kv_bytes = 2.0 * L * b->cfg.kv_blocks * (double)b->cfg.kv_block_size * b->kv_dim * 2;
    const double delta = b->dims.fused_residual ? 0.0 : dim * 4; // tensor parallelism only (alloc_buffers)
    double act = rows * (dim * 4 + dim * 2 + b->qkv_dim * 4.0 + b->q_dim * 6.0 + delta + b->hidden * 2.0 + 12);
    act += (double)cuda_gemm_ws_bytes(&b->dims, b->max_rows, b->cfg.max_batch, etx_gemm_swiglu_needs_scratch(b->dim));
    act += mb * (double)b->shape.max_blocks * 4 + mb * (dim * 6.0 + delta + 4); // gathered head rows
    double smp = 2 * mb * V * 4 + 2 * mb * (double)score_row(b) * 4 + mb * ETX_TOPK * sizeof(PolicyCandidate);
    smp += (double)etx_policy_scratch_bytes(b->cfg.max_batch, b->vocab_all) + etx_vocab_pass_scratch_bytes(b->cfg.max_batch);
    if (b->tp > 1) { // cuda_tp.c's: parts, and on shard 0 the gathered parts, score rows and logits rows
        smp += mb * (sizeof(EtxVocabPart) + 8.0);
        size_t hb = 0, pb = 0, db = 0;
        smp += (double)etx_attn_metrics_part_bytes(b->cfg.max_batch, b->shape.n_heads, b->cfg.max_seq_len, &hb, &pb, &db);
        if (b->shard == 0)
            smp += b->tp * (double)(hb + db) + mb * (b->tp * (double)sizeof(EtxVocabPart) + (double)b->vocab_all * 4 + 4);
    }
    smp += (double)etx_attn_metrics_scratch_bytes(b->cfg.max_batch, b->m->cfg.n_heads, b->cfg.max_seq_len);
    smp += mb * (sizeof(etx_policy) + sizeof(EtxSeqState) + sizeof(DSliderState) + sizeof(etx_trace_record) + 64);
    act += (double)etx_attn_workspace_bytes(b->attn_ws_rows, b->shape.n_heads, b->hdp, b->cfg.max_seq_len);
    return w + *kv_bytes + act + smp;
}

// Device memory left unclaimed beside the plan: the CUDA context grows after create
// (module images loaded lazily on first launch, cuBLAS's handle and kernels), each padded
// decode size adds an executable graph, and allocations fragment. Not measured on
// hardware yet: a generous estimate, 512 MiB plus 2% of the device (about 3.3 GiB on a
// 141 GB card). The emulator's "device" is host memory, with none of these: no headroom.
static double cuda_headroom(double total_bytes) {
    return CUDA_EMULATED ? 0.0 : 512.0 * 1048576.0 + 0.02 * total_bytes;
}

// The sizes create() derives from the model and the configuration (no allocation).
// A tensor-parallel shard (b->shard of cfg->tp, which check_config found to divide the
// head counts and the hidden size) takes its share of heads and hidden units, and
// ceil(vocab / tp) ids of the LM head (the last shard the rest).
static void fill_sizes(CudaBackend* b, const etx_model* m, const BackendConfig* cfg) {
    const ModelConfig* mc = &m->cfg;
    const int tp = cfg->tp > 1 ? cfg->tp : 1, sh = b->shard;
    b->m = m;
    b->cfg = *cfg;
    b->cfg.tp = tp;
    b->tp = tp;
    b->dim = mc->dim;
    const int nh = mc->n_heads / tp, nkv = mc->n_kv_heads / tp;
    b->hidden = mc->hidden_dim / tp;
    b->vocab_all = mc->vocab_size;
    const int per = (mc->vocab_size + tp - 1) / tp;
    b->vocab0 = sh * per;
    b->vocab = (sh == tp - 1 ? mc->vocab_size : (sh + 1) * per) - b->vocab0;
    b->h0 = sh * nh, b->kvh0 = sh * nkv, b->f0 = sh * b->hidden;
    b->n_layers = mc->n_layers;
    b->hd = mc->head_dim;
    b->hdp = mc->head_dim <= 64 ? 64 : 128;
    b->q_dim = nh * b->hdp;
    b->kv_dim = nkv * b->hdp;
    b->qkv_dim = b->q_dim + 2 * b->kv_dim;
    b->max_rows = cfg->max_batch > cfg->max_chunk ? cfg->max_batch : cfg->max_chunk;
    // attention rows per launch: a whole decode batch, and prefill rows in slices of this
    b->attn_ws_rows = b->max_rows < CUDA_ATTN_SLICE ? b->max_rows : CUDA_ATTN_SLICE;
    if (b->attn_ws_rows < cfg->max_batch) b->attn_ws_rows = cfg->max_batch;
    b->eps = mc->norm_eps;
    b->dims = cuda_dims_for(m, cfg->max_seq_len, cfg->kv_block_size);
    if (tp > 1) { // the shard's sizes (the plan's GEMM shapes, the LM head's rows)
        b->dims.hidden = b->hidden, b->dims.vocab = b->vocab;
        b->dims.n_heads = nh, b->dims.n_kv_heads = nkv;
        b->dims.q_dim = b->q_dim, b->dims.kv_dim = b->kv_dim, b->dims.qkv_dim = b->qkv_dim;
        b->dims.tied = 0;
        // the O and down projections write delta: the shards' parts are all-reduced there
        // and the next norm adds it (cuda_tp.c)
        b->dims.fused_residual = 0;
    }
    b->shape = (EtxAttnShape){nh, nkv, b->hdp, cfg->kv_block_size,
                              (cfg->max_seq_len + cfg->kv_block_size - 1) / cfg->kv_block_size};
}

void cuda_kv_budget_for(const etx_model* m, const BackendConfig* cfg, double free_bytes, double total_bytes,
                        double* block_bytes, double* budget_bytes) {
    CudaBackend b;
    memset(&b, 0, sizeof b);
    BackendConfig c = *cfg;
    c.kv_blocks = 0; // the plan without the pool
    fill_sizes(&b, m, &c);
    double kv = 0;
    const double rest = plan_bytes(&b, m->cfg.tied_embeddings, &kv);
    *block_bytes = 2.0 * b.n_layers * (double)cfg->kv_block_size * b.kv_dim * sizeof(etx_bf16);
    const double budget = free_bytes - rest - cuda_headroom(total_bytes);
    *budget_bytes = budget > 0 ? budget : 0;
}

// BackendOps.kv_budget: the device's free memory now. The emulator's device memory is the
// host's, shared with everything else (and the tests run several suites at once): there
// the pool keeps the size it had under the engine's old host rule, at most min(1 GiB, an
// eighth of free memory) of bf16 (the old rule's 2 GiB of float32-sized blocks).
static void cuda_kv_budget(const etx_model* m, const BackendConfig* cfg, double* block_bytes, double* budget_bytes) {
    size_t free_b = 0, total_b = 0;
    if (etx_dev_available()) etx_dev_mem_info(&free_b, &total_b);
    cuda_kv_budget_for(m, cfg, (double)free_b, (double)total_b, block_bytes, budget_bytes);
    if (CUDA_EMULATED) {
        const double cap = (double)free_b / 8 < 1073741824.0 ? (double)free_b / 8 : 1073741824.0;
        if (*budget_bytes > cap) *budget_bytes = cap;
    }
}

void cuda_destroy_shard(CudaBackend* b) {
    if (!b) return;
    (void)etx_dev_select(b->gpu); // the caller's thread may not be the one that created b
    if (b->prof) {
        cuda_profile_print(b);
        etx_dev_event_destroy(b->prof->ev0);
        etx_dev_event_destroy(b->prof->ev1);
        free(b->prof);
    }
    cuda_free_model(b);
    void* dev[] = {b->x,          b->xb,        b->qkv,       b->q,          b->att,        b->delta,
                   b->gemm_ws,    b->hb,        b->attn_ws,   b->d_tokens,   b->d_row_seq,  b->d_row_pos,
                   b->d_cap_row,  b->d_table,   b->logits,    b->scores,     b->d_pick_row, b->d_head_rows,
                   b->stats,      b->cand,      b->vp_scratch, b->attn,      b->am_scratch, b->d_n_pos,
                   b->d_window,   b->d_policies, b->d_nets, b->d_states, b->d_ds, b->pol_scratch, b->d_next,    b->d_done,
                   b->d_trace,    b->d_ring,    b->d_ring_trace, b->tp_part, b->tp_parts,
                   b->tp_logits,  b->tp_pause_logit, b->d_pause, b->am_heads, b->am_psum, b->am_dev,
                   b->am_heads_all, b->am_dev_all, b->d_kv_pools, b->d_copies};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) etx_dev_free(dev[i]);
    free(b->h_tokens);
    free(b->h_row_seq);
    free(b->h_row_pos);
    free(b->h_cap_row);
    free(b->h_pick_row);
    free(b->h_head_rows);
    free(b->h_table);
    free(b->h_policies);
    free(b->h_states);
    free(b->h_ds);
    free(b->h_copies);
    cuda_stage_free(b);
    free(b->h_n_pos);
    free(b->h_window);
    free(b->h_next);
    free(b->h_pause);
    if (b->graphs)
        for (int i = 0; i <= b->cfg.max_batch; i++) etx_dev_graph_destroy(b->graphs[i]);
    if (b->sample_graphs)
        for (int i = 0; i < 4 * (b->cfg.max_batch + 1); i++) etx_dev_graph_destroy(b->sample_graphs[i]);
    free(b->graphs);
    free(b->sample_graphs);
    etx_dev_stream_destroy(b->stream);
    free(b);
}

static void cuda_destroy(CudaBackend* b) {
    if (b && b->shards) cuda_tp_destroy(b);
    else cuda_destroy_shard(b);
}

static etx_status check_config(const etx_model* m, const BackendConfig* c) {
    const ModelConfig* mc = &m->cfg;
    ETX_TRY(model_check_features(m, MODEL_FEATURE_QKV_BIAS | MODEL_FEATURE_QK_NORM, "CUDA backend"));
    const int tp = c->tp > 1 ? c->tp : 1;
    if (mc->n_heads % tp || mc->n_kv_heads % tp || mc->hidden_dim % tp)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "tensor parallelism %d does not divide the model: %d query heads, %d KV heads and %d hidden "
                         "units must each split evenly across the devices",
                         tp, mc->n_heads, mc->n_kv_heads, mc->hidden_dim);
    if (c->max_batch < 1 || c->max_seq_len < 1 || c->max_chunk < 1 || c->kv_blocks < 1 || c->kv_block_size < 1)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "CUDA backend: max_batch %d, max_seq_len %d, max_chunk %d, kv_blocks %d, kv_block_size %d "
                         "must all be >= 1",
                         c->max_batch, c->max_seq_len, c->max_chunk, c->kv_blocks, c->kv_block_size);
    if (c->max_chunk > 65535)
        return etx_error(ETX_ERR_INVALID_ARG, "CUDA backend: max_chunk %d (at most 65535 rows)", c->max_chunk);
    if (mc->head_dim < 2 || mc->head_dim % 2 != 0 || mc->head_dim > 128)
        return etx_error(ETX_ERR_UNSUPPORTED,
                         "CUDA backend: head_dim %d is not supported (even, at most 128: the attention kernels run "
                         "64 or 128, smaller heads padded)",
                         mc->head_dim);
    if (mc->n_kv_heads < 1 || mc->n_heads % mc->n_kv_heads != 0 || mc->n_heads / mc->n_kv_heads > ETX_ATTN_MAX_GROUP)
        return etx_error(ETX_ERR_UNSUPPORTED,
                         "CUDA backend: %d query heads over %d KV heads (at most %d query heads per KV head)",
                         mc->n_heads, mc->n_kv_heads, ETX_ATTN_MAX_GROUP);
    if (mc->n_heads > ETX_ATTN_MAX_HEADS)
        return etx_error(ETX_ERR_UNSUPPORTED, "CUDA backend: %d heads (the attention metrics take at most %d)",
                         mc->n_heads, ETX_ATTN_MAX_HEADS);
    if (m->n_eos > 8) return etx_error(ETX_ERR_UNSUPPORTED, "CUDA backend: %d EOS ids (at most 8)", m->n_eos);
    return etx_ok();
}

// The device table of every layer's K and V pool (etx_kv_copy_blocks reads it), after
// cuda_alloc_kv: K of layer l at 2l, V at 2l + 1.
static etx_status alloc_pool_table(CudaBackend* b) {
    const size_t bytes = (size_t)2 * b->n_layers * sizeof(etx_bf16*);
    ETX_TRY(cuda_alloc(b, (void**)&b->d_kv_pools, bytes, "K/V pool table"));
    etx_bf16** h = xcalloc((size_t)2 * b->n_layers, sizeof(etx_bf16*));
    for (int l = 0; l < b->n_layers; l++) h[2 * l] = b->layers[l].k_pool, h[2 * l + 1] = b->layers[l].v_pool;
    etx_dev_upload_on(b->d_kv_pools, h, bytes, b->stream); // this shard's own pools
    free(h);
    return etx_ok();
}

static etx_status alloc_buffers(CudaBackend* b) {
    const int rows = b->max_rows, mb = b->cfg.max_batch, dim = b->dim, V = b->vocab;
    const size_t mbl = (size_t)mb * b->shape.max_blocks;
    ETX_TRY(cuda_alloc(b, (void**)&b->x, (size_t)(rows + mb) * dim * 4, "residual stream"));
    ETX_TRY(cuda_alloc(b, (void**)&b->xb, (size_t)(rows + mb) * dim * 2, "normed activations"));
    ETX_TRY(cuda_alloc(b, (void**)&b->qkv, (size_t)rows * b->qkv_dim * 4, "qkv activations"));
    ETX_TRY(cuda_alloc(b, (void**)&b->q, (size_t)rows * b->q_dim * 4, "queries"));
    ETX_TRY(cuda_alloc(b, (void**)&b->att, (size_t)rows * b->q_dim * 2, "attention output"));
    // delta: the projections' partial sums a tensor-parallel shard all-reduces; on one GPU
    // the O and down projections add into x themselves (CudaDims.fused_residual) and it
    // is never touched, so it is not allocated
    if (!b->dims.fused_residual)
        ETX_TRY(cuda_alloc(b, (void**)&b->delta, (size_t)(rows + mb) * dim * 4, "projection output"));
    b->gemm_ws_bytes = cuda_gemm_ws_bytes(&b->dims, rows, b->cfg.max_batch, etx_gemm_swiglu_needs_scratch(dim));
    ETX_TRY(cuda_alloc(b, (void**)&b->gemm_ws, b->gemm_ws_bytes, "GEMM workspace"));
    b->dims.gemm_ws_bytes = b->gemm_ws_bytes; // the plan's split reduces are this workspace's
    b->dims.sms = etx_dev_sm_count();          // and its L2 prefetch is sized by this device's fill
    ETX_TRY(cuda_alloc(b, (void**)&b->hb, (size_t)rows * b->hidden * 2, "swiglu output"));
    const size_t ws = etx_attn_workspace_bytes(b->attn_ws_rows, b->shape.n_heads, b->hdp, b->cfg.max_seq_len);
    if (ws) { // its counters must start at zero (kernels/attention.h); every launch leaves them so
        ETX_TRY(cuda_alloc(b, (void**)&b->attn_ws, ws, "attention split workspace"));
        etx_dev_memset(b->attn_ws, 0, ws);
    }
    ETX_TRY(cuda_alloc(b, (void**)&b->d_tokens, (size_t)rows * 4, "row tokens"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_row_seq, (size_t)rows * 4, "row sequences"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_row_pos, (size_t)rows * 4, "row positions"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_cap_row, (size_t)rows * 4, "score capture rows"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_head_rows, (size_t)mb * 4, "head rows"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_table, mbl * 4, "block tables"));
    ETX_TRY(cuda_alloc(b, (void**)&b->logits, 2 * (size_t)mb * V * 4, "logits")); // (this shard's ids)
    ETX_TRY(cuda_alloc(b, (void**)&b->scores, 2 * (size_t)mb * score_row(b) * 4, "attention score capture"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_pick_row, (size_t)mb * 4, "pick rows"));
    ETX_TRY(cuda_alloc(b, (void**)&b->stats, (size_t)mb * sizeof(EtxVocabStats), "vocabulary statistics"));
    ETX_TRY(cuda_alloc(b, (void**)&b->cand, (size_t)mb * ETX_TOPK * sizeof(PolicyCandidate), "candidates"));
    ETX_TRY(cuda_alloc(b, &b->vp_scratch, etx_vocab_pass_scratch_bytes(mb), "vocabulary pass scratch"));
    ETX_TRY(cuda_alloc(b, (void**)&b->attn, (size_t)mb * sizeof(EtxAttnStats), "attention metrics"));
    ETX_TRY(cuda_alloc(b, &b->am_scratch,
                       etx_attn_metrics_scratch_bytes(mb, b->m->cfg.n_heads, b->cfg.max_seq_len),
                       "attention metrics scratch"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_n_pos, (size_t)mb * 4, "metric lengths"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_window, (size_t)mb * 4, "metric windows"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_policies, (size_t)mb * sizeof(etx_policy), "policies"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_nets, CUDA_MAX_NETS * sizeof(etx_learned_net), "learned networks"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_states, (size_t)mb * sizeof(EtxSeqState), "sequence states"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_ds, (size_t)mb * sizeof(DSliderState), "dslider states"));
    ETX_TRY(cuda_alloc(b, &b->pol_scratch, etx_policy_scratch_bytes(mb, b->vocab_all), "policy scratch"));
    if (b->tp > 1) {
        ETX_TRY(cuda_alloc(b, (void**)&b->tp_part, (size_t)mb * sizeof(EtxVocabPart), "vocabulary pass parts"));
        ETX_TRY(cuda_alloc(b, (void**)&b->d_pause, (size_t)mb * 4, "pause tokens"));
        size_t hb = 0, pb = 0, db = 0;
        etx_attn_metrics_part_bytes(mb, b->shape.n_heads, b->cfg.max_seq_len, &hb, &pb, &db);
        ETX_TRY(cuda_alloc(b, &b->am_heads, hb, "attention-signal head records"));
        ETX_TRY(cuda_alloc(b, (void**)&b->am_psum, pb, "attention-signal position sums"));
        ETX_TRY(cuda_alloc(b, (void**)&b->am_dev, db, "attention-signal deviations"));
        b->h_pause = xcalloc((size_t)mb, 4);
    }
    ETX_TRY(cuda_alloc(b, (void**)&b->d_next, (size_t)mb * 4, "sampled tokens"));
    ETX_TRY(cuda_alloc(b, (void**)&b->d_done, (size_t)mb * 4, "done flags"));
    if (b->cfg.trace)
        ETX_TRY(cuda_alloc(b, (void**)&b->d_trace, (size_t)mb * sizeof(etx_trace_record), "trace records"));
    b->h_tokens = xcalloc((size_t)rows, 4);
    b->h_row_seq = xcalloc((size_t)rows, 4);
    b->h_row_pos = xcalloc((size_t)rows, 4);
    b->h_cap_row = xcalloc((size_t)rows, 4);
    b->h_pick_row = xcalloc((size_t)mb, 4);
    b->h_head_rows = xcalloc((size_t)mb, 4);
    b->h_table = xcalloc(mbl, 4);
    b->h_policies = xcalloc((size_t)mb, sizeof(etx_policy));
    b->h_states = xcalloc((size_t)mb, sizeof(EtxSeqState));
    b->h_ds = xcalloc((size_t)mb, sizeof(DSliderState));
    b->h_n_pos = xcalloc((size_t)mb, 4);
    b->h_window = xcalloc((size_t)mb, 4);
    b->h_next = xcalloc((size_t)mb, 4);
    return etx_ok();
}

etx_status cuda_create_shard(const etx_model* m, const BackendConfig* cfg, int shard, CudaBackend** out) {
    *out = NULL;
    if (!etx_dev_available())
        return etx_error(ETX_ERR_UNSUPPORTED,
                         "CUDA backend: no CUDA device found (no GPU, or no driver); use --device cpu");
    const int gpu = cfg->gpu + shard;
    if (etx_dev_select(gpu) != 0)
        return etx_error(ETX_ERR_INVALID_ARG, "CUDA backend: no device %d (%d visible)", gpu, etx_dev_count());
    ETX_TRY(check_config(m, cfg));
    CudaBackend* b = xcalloc(1, sizeof(CudaBackend));
    b->gpu = gpu;
    b->shard = shard;
    fill_sizes(b, m, cfg);

    // refuse what cannot fit (with the headroom kept free) before asking for any of it
    size_t free_b = 0, total_b = 0;
    etx_dev_mem_info(&free_b, &total_b);
    double kv = 0;
    const double need = plan_bytes(b, m->cfg.tied_embeddings, &kv);
    const double headroom = cuda_headroom((double)total_b);
    if (need + headroom > (double)free_b) {
        etx_status s = etx_error(ETX_ERR_NOMEM,
                                 "CUDA backend: needs %.1f MiB of device memory (K/V cache %.1f MiB: %d blocks x %d "
                                 "positions x %d layers; the rest weights, activations, sampling) "
                                 "plus %.1f MiB left free for the CUDA context and graphs, but %s has %.1f MiB free "
                                 "of %.1f MiB; lower kv_blocks, max_batch or max_seq_len",
                                 need / 1048576.0, kv / 1048576.0, cfg->kv_blocks, cfg->kv_block_size, b->n_layers,
                                 headroom / 1048576.0, etx_dev_name(), free_b / 1048576.0, total_b / 1048576.0);
        free(b);
        return s;
    }
    b->stream = etx_dev_stream_create();
    const char* env = getenv("ETX_CUDA_GRAPHS");
    // tensor parallelism runs eagerly: its step interleaves the shards' launches with
    // collectives across devices, which one stream's graph cannot hold (cuda_tp.c)
    const int graphs_on = b->tp > 1 ? 0 : env && *env ? atoi(env) != 0 : etx_dev_graphs_available();
    const char* prof = getenv("ETX_CUDA_PROFILE");
    if (prof && *prof && atoi(prof) != 0) { // per-op timing: synchronous, so no graphs
        b->prof = xcalloc(1, sizeof(CudaProfile));
        b->prof->ev0 = etx_dev_event_create();
        b->prof->ev1 = etx_dev_event_create();
    }
    b->pad_decode = graphs_on && !b->prof;
    // a graph needs a stream of our own (the legacy default stream cannot be captured)
    b->use_graphs = b->pad_decode && b->stream != NULL;
    b->graphs = xcalloc((size_t)cfg->max_batch + 1, sizeof(void*));
    b->sample_graphs = xcalloc(4 * ((size_t)cfg->max_batch + 1), sizeof(void*));
    etx_status st = cuda_upload_model(b);
    if (st.code == ETX_OK) st = cuda_alloc_kv(b, b->layers, cfg->kv_blocks);
    if (st.code == ETX_OK) st = alloc_pool_table(b);
    if (st.code == ETX_OK) cuda_stage_create(b); // none for a shard, or without pinned memory
    if (st.code == ETX_OK) st = alloc_buffers(b);
    if (st.code != ETX_OK) {
        cuda_destroy_shard(b);
        return st;
    }
    etx_dev_sync();
    *out = b;
    return etx_ok();
}

static etx_status cuda_create(const etx_model* m, const BackendConfig* cfg, CudaBackend** out) {
    if (cfg->tp > 1) return cuda_tp_create(m, cfg, out);
    return cuda_create_shard(m, cfg, 0, out);
}

// ----------------------------------------------------------------------------
// step

// Whether pick p needs the attention signals (the logits' statistics come from the
// vocabulary pass, which every pick has).
static int needs_metrics(const CudaBackend* b, const BackendPick* p) {
    return b->cfg.trace || (policy_signals_used(p->policy) & POLICY_USES_ATTN_SIGNALS);
}

// The copy-on-write block copies, in every shard's pools (tp 1: b's): one launch per
// shard copies each block in every layer's K and V pool (kernels/kv_copy.cu), the pairs
// uploaded first. The block manager's copies go into fresh, distinct blocks, which the
// kernel's parallel copies need (kv_copy.h).
static etx_status copy_blocks(CudaBackend* b, const BlockCopy* cp, int n) {
    if (n == 0) return etx_ok();
    etx_status st = etx_ok();
    for (int s = 0; s < b->tp && st.code == ETX_OK; s++) {
        CudaBackend* x = cuda_shard(b, s);
        (void)etx_dev_select(x->gpu);
        if (n > x->copies_cap) { // grown on demand: a step has at most one copy per work
            etx_dev_free(x->d_copies);
            free(x->h_copies);
            x->copies_cap = 0;
            x->h_copies = xcalloc((size_t)n * 2, sizeof(int32_t));
            x->d_copies = etx_dev_malloc((size_t)n * 2 * sizeof(int32_t));
            if (!x->d_copies) {
                st = etx_error(ETX_ERR_NOMEM, "CUDA backend: no device memory for %d copy-on-write block copies", n);
                break;
            }
            x->copies_cap = n;
        }
        for (int i = 0; i < n; i++) x->h_copies[2 * i] = cp[i].src, x->h_copies[2 * i + 1] = cp[i].dst;
        cuda_stage_up(x, x->d_copies, x->h_copies, (size_t)n * 2 * sizeof(int32_t)); // pageable for shards
        etx_kv_copy_blocks(x->d_kv_pools, 2 * x->n_layers, x->d_copies, n,
                           (size_t)x->cfg.kv_block_size * x->kv_dim, x->stream);
    }
    (void)etx_dev_select(b->gpu);
    return st;
}

// The block table row `row` (host staging) from a work's ids (those past max_seq_len,
// which it cannot reach, left out); unused columns 0.
static void put_table_row(CudaBackend* b, int row, const BackendWork* w) {
    int32_t* t = b->h_table + (size_t)row * b->shape.max_blocks;
    const int n = w->n_block_ids < b->shape.max_blocks ? w->n_block_ids : b->shape.max_blocks;
    memset(t, 0, (size_t)b->shape.max_blocks * sizeof(int32_t));
    for (int k = 0; k < n; k++) t[k] = w->block_ids[k];
}

// The step's prefill chunks, packed into groups of at most max_rows rows and
// min(max_batch, 64) chunks (chunk k of a group uses block table row k): one forward per
// group, then the sampled chunks' last rows gathered and run through the final norm and
// one LM-head GEMM into rows max_batch + h of the logits (h counting the step's prefill
// picks; their scores captured into the same rows; pick_row records where).
static void run_prefill_group(CudaBackend* b, const BackendStep* s, const int* idx, int n_chunks, int metrics_any) {
    const int mb = b->cfg.max_batch, head0 = b->step_heads; // this group's picks: head rows head0 ..
    int rows = 0, capture = 0, heads = 0;
    for (int k = 0; k < n_chunks; k++) {
        const BackendWork* w = &s->work[idx[k]];
        const int p = w->pick;
        const int cap = p >= 0 && metrics_any && needs_metrics(b, &s->picks[p]);
        capture |= cap;
        memcpy(b->h_tokens + rows, w->tokens, (size_t)w->n * sizeof(int32_t));
        for (int i = 0; i < w->n; i++) {
            b->h_row_seq[rows + i] = k;
            b->h_row_pos[rows + i] = w->pos0 + i;
            b->h_cap_row[rows + i] = -1;
        }
        rows += w->n;
        if (p >= 0) { // the last row samples: its logits (and scores) go to prefill row mb + head
            const int row = mb + head0 + heads;
            b->h_head_rows[heads++] = rows - 1;
            b->h_pick_row[p] = row;
            if (cap) b->h_cap_row[rows - 1] = row;
        }
        put_table_row(b, k, w);
    }
    b->step_heads += heads;
    cuda_up(b, b->d_tokens, b->h_tokens, (size_t)rows * 4);
    cuda_up(b, b->d_row_seq, b->h_row_seq, (size_t)rows * 4);
    cuda_up(b, b->d_row_pos, b->h_row_pos, (size_t)rows * 4);
    if (capture) cuda_up(b, b->d_cap_row, b->h_cap_row, (size_t)rows * 4);
    cuda_up(b, b->d_table, b->h_table, (size_t)n_chunks * b->shape.max_blocks * 4);
    CudaRows r = {.n = rows, .d_tokens = b->d_tokens, .d_row_seq = b->d_row_seq, .d_row_pos = b->d_row_pos,
                  .d_table = b->d_table, .kv = b->layers, .scores = capture ? b->scores : NULL,
                  .d_cap_row = b->d_cap_row, .logits = NULL};
    cuda_forward_rows(b, &r);
    if (heads) {
        cuda_up(b, b->d_head_rows, b->h_head_rows, (size_t)heads * 4);
        cuda_forward_gathered_head(b, heads, b->logits + (size_t)(mb + head0) * b->vocab);
    }
}

static void run_prefills(CudaBackend* b, const BackendStep* s, int metrics_any) {
    b->step_heads = 0;
    const int max_chunks = b->cfg.max_batch < 64 ? b->cfg.max_batch : 64;
    int idx[64], n_chunks = 0, rows = 0;
    for (int i = 0; i < s->n_work; i++) {
        const BackendWork* w = &s->work[i];
        if (w->decode) continue;
        if (n_chunks == max_chunks || rows + w->n > b->max_rows) {
            run_prefill_group(b, s, idx, n_chunks, metrics_any);
            n_chunks = rows = 0;
        }
        idx[n_chunks++] = i;
        rows += w->n;
    }
    if (n_chunks) run_prefill_group(b, s, idx, n_chunks, metrics_any);
}

// The decode batch's launches: the forward of its r->n rows, then with ns > 0 the
// sampling of its ns (= r->n, padded) picks.
static void decode_launches(CudaBackend* b, const CudaRows* r, int ns, int metrics) {
    cuda_forward_rows(b, r);
    if (ns) cuda_sample(b, ns, metrics);
}

// Captures the decode launches of r->n padded rows (decode_launches) as a graph into
// *g. The launches were just run eagerly (the warm-up), so every kernel module is loaded
// (lazy loading cannot load one inside a capture before driver 12.3) and cuBLAS has set
// itself up before anything is recorded. A failure inside the capture (a launch, cuBLAS) ends it with no
// graph (device.h): then the backend says so once and runs without graphs from now on.
static void capture_decode_graph(CudaBackend* b, const CudaRows* r, int ns, int metrics, void** g) {
    if (!etx_dev_capture_begin(b->stream)) {
        fprintf(stderr, "[etx] CUDA backend: cannot capture on this stream; running without graphs\n");
        b->use_graphs = 0;
        return;
    }
    decode_launches(b, r, ns, metrics); // recorded, not run
    *g = etx_dev_capture_end(b->stream);
    if (!*g) {
        fprintf(stderr, "[etx] CUDA backend: capturing the decode graph of %d rows failed (%s); running without "
                        "graphs\n",
                r->n, etx_dev_capture_error());
        b->use_graphs = 0;
        b->capture_failures++;
    }
}

// The decode batch's launches (decode_launches): replayed from the graph of its padded
// size (with its sampling: of that size, metrics and fallback), or run directly. The
// first batch of each kind runs directly (the warm-up; it computes this step's result)
// and is then captured for the next ones (recorded, not run: natively and under the
// emulator alike).
static void forward_decode(CudaBackend* b, const CudaRows* r, int ns, int metrics) {
    if (!b->use_graphs) {
        decode_launches(b, r, ns, metrics);
        return;
    }
    void** g = ns ? &b->sample_graphs[4 * r->n + 2 * (metrics != 0) + (b->fallback != 0)] : &b->graphs[r->n];
    if (!*g) {
        decode_launches(b, r, ns, metrics); // the warm-up, outside any capture
        capture_decode_graph(b, r, ns, metrics, g);
        return;
    }
    etx_dev_graph_launch(*g, b->stream);
}

// Every decode row as one batch: row r is the r-th decode work; its logits and scores go
// to row r of b->logits and b->scores, where the sampling reads them (pick_row). Padding
// rows (position -1, length 0) write nothing to the cache and attend to nothing.
static void decode_rows_on_device(CudaBackend* b, int nb, int metrics_any, int ns);

// Rows a decode batch of n runs as: n, or in graph mode the next power of two (at most
// max_batch), so each padded size replays one captured graph.
static int padded_rows(const CudaBackend* b, int n) {
    if (!b->pad_decode) return n;
    int nb = 1;
    while (nb < n) nb *= 2;
    return nb < b->cfg.max_batch ? nb : b->cfg.max_batch;
}

// Whether this step's sampling joins the decode graph (the header's "Decode graphs"):
// graph mode, and a decode-only step whose pick p is decode row p.
static int sampling_in_graph(const CudaBackend* b, const BackendStep* s) {
    if (!b->use_graphs || s->n_picks == 0) return 0;
    int row = 0;
    for (int i = 0; i < s->n_work; i++, row++)
        if (!s->work[i].decode || s->work[i].pick != row) return 0;
    return row == s->n_picks;
}

// The step's decode rows (padded in graph mode) forward, and with `sample` (see
// sampling_in_graph) the sampling of their padded picks in the same graph.
static void run_decode(CudaBackend* b, const BackendStep* s, int metrics_any, int sample) {
    const BackendWork* rows[b->cfg.max_batch];
    int n = 0;
    for (int i = 0; i < s->n_work; i++)
        if (s->work[i].decode) rows[n++] = &s->work[i];
    if (n == 0) return;
    int nb = padded_rows(b, n);
    for (int r = 0; r < nb; r++) {
        const BackendWork* w = r < n ? rows[r] : NULL;
        b->h_tokens[r] = w ? w->tokens[0] : 0;
        b->h_row_seq[r] = r;
        b->h_row_pos[r] = w ? w->pos0 : -1;
        if (w) {
            put_table_row(b, r, w);
        } else {
            memset(b->h_table + (size_t)r * b->shape.max_blocks, 0, (size_t)b->shape.max_blocks * sizeof(int32_t));
        }
    }
    cuda_up(b, b->d_tokens, b->h_tokens, (size_t)nb * 4);
    cuda_up(b, b->d_row_seq, b->h_row_seq, (size_t)nb * 4);
    cuda_up(b, b->d_row_pos, b->h_row_pos, (size_t)nb * 4);
    cuda_up(b, b->d_table, b->h_table, (size_t)nb * b->shape.max_blocks * 4);
    decode_rows_on_device(b, nb, metrics_any, sample ? nb : 0);
}

// The forward of the nb decode rows already on the device (tokens, positions, tables):
// logits and scores into rows 0 .. nb - 1; then with ns > 0 (= nb) the sampling of the
// ns picks uploaded for them (upload_picks padded to ns).
static void decode_rows_on_device(CudaBackend* b, int nb, int metrics_any, int ns) {
    // a padded batch's graph always captures the scores (the same launches every step)
    CudaRows r = {.n = nb, .d_tokens = b->d_tokens, .d_row_seq = b->d_row_seq, .d_row_pos = b->d_row_pos,
                  .d_table = b->d_table, .kv = b->layers, .scores = b->pad_decode || metrics_any ? b->scores : NULL,
                  .d_cap_row = NULL, .head_first = 0, .logits = b->logits, .decode = 1};
    if (b->pad_decode)
        forward_decode(b, &r, ns, metrics_any);
    else
        decode_launches(b, &r, ns, metrics_any);
}

static etx_status check_step(CudaBackend* b, const BackendStep* s, int* metrics_any_out) {
    ETX_TRY(backend_check_step("CUDA backend", &b->cfg, b->vocab_all, s));
    int metrics_any = 0;
    for (int p = 0; p < s->n_picks; p++) {
        metrics_any |= needs_metrics(b, &s->picks[p]);
        const etx_policy* pol = s->picks[p].policy;
        if (pol->kind != ETX_POLICY_LEARNED) continue;
        if (pol->learned < 1 || pol->learned > CUDA_MAX_NETS || !etx_learned_get(pol->learned))
            return etx_error(ETX_ERR_INVALID_ARG, "CUDA backend: learned network %u (the backend holds ids 1..%d)",
                             (unsigned)pol->learned, CUDA_MAX_NETS);
    }
    *metrics_any_out = metrics_any;
    return etx_ok();
}

// The picks' policies and states to the device (positions each pick attended, from the
// works), padded to n_up picks: a graph's sampling of a padded decode batch runs greedy
// picks on the padding rows (sampling_in_graph), whose tokens are never read.
static void upload_picks(CudaBackend* b, const BackendStep* s, int metrics_any, int n_up) {
    const BackendConfig* c = &b->cfg;
    const int np = s->n_picks;
    int decode_row = 0, ds_any = 0;
    for (int i = 0; i < s->n_work; i++) {
        const BackendWork* w = &s->work[i];
        if (w->pick >= 0) {
            b->h_n_pos[w->pick] = w->pos0 + w->n; // positions the pick's token attended
            // where its logits and scores are: its decode row (a prefill pick's row was set
            // when its group ran: run_prefill_group)
            if (w->decode) b->h_pick_row[w->pick] = decode_row;
        }
        decode_row += w->decode;
    }
    b->fallback = 0;
    for (int p = 0; p < np; p++) {
        const BackendPick* pk = &s->picks[p];
        const int n_pos = b->h_n_pos[p];
        b->h_policies[p] = *pk->policy;
        b->fallback |= cuda_policy_may_need_full_row(pk->policy, b->vocab_all);
        // a learned policy's network, and any registered before it, once (the registry only
        // grows and ids are stable; check_step bounded the id)
        for (; pk->policy->kind == ETX_POLICY_LEARNED && b->nets_up < pk->policy->learned; b->nets_up++)
            etx_dev_upload_on(b->d_nets + b->nets_up, etx_learned_get(b->nets_up + 1), sizeof(etx_learned_net),
                              b->stream);
        b->h_window[p] = policy_attn_window(pk->policy);
        EtxSeqState* st = &b->h_states[p];
        memset(st, 0, sizeof *st);
        st->key = pk->key;
        st->request_id = pk->request_id;
        st->step = (int32_t)pk->step;
        st->prev_token = pk->prev_token;
        st->pause_token = pk->pause_token;
        // BackendPick carries no max_tokens, stop ids or ignore_eos: the length bound is the
        // context (n_prompt = positions before the generated tokens), the engine re-checks stops
        st->max_tokens = INT32_MAX;
        st->n_prompt = n_pos - (int32_t)pk->step;
        st->max_seq_len = c->max_seq_len;
        if (!needs_metrics(b, pk)) b->h_n_pos[p] = 0; // zeros, as engine.c without metrics
        if (b->h_pause) b->h_pause[p] = pk->pause_token; // -1 unless entropix or learned (engine.c)
        if (pk->dslider) b->h_ds[p] = *pk->dslider, ds_any = 1;
    }
    for (int p = np; p < n_up; p++) { // padding: greedy over padding row p, no signals
        b->h_policies[p] = etx_policy_default(ETX_POLICY_GREEDY);
        EtxSeqState* st = &b->h_states[p];
        memset(st, 0, sizeof *st);
        st->prev_token = st->pause_token = -1;
        st->max_tokens = INT32_MAX;
        st->max_seq_len = c->max_seq_len;
        b->h_pick_row[p] = p;
        b->h_n_pos[p] = 0;
        b->h_window[p] = 0;
        if (b->h_pause) b->h_pause[p] = -1;
    }
    if (ds_any) cuda_up(b, b->d_ds, b->h_ds, (size_t)np * sizeof(DSliderState));
    if (b->h_pause) cuda_up(b, b->d_pause, b->h_pause, (size_t)n_up * 4);
    if (metrics_any) {
        cuda_up(b, b->d_n_pos, b->h_n_pos, (size_t)n_up * 4);
        cuda_up(b, b->d_window, b->h_window, (size_t)n_up * 4);
    }
    cuda_up(b, b->d_pick_row, b->h_pick_row, (size_t)n_up * 4);
    cuda_up(b, b->d_policies, b->h_policies, (size_t)n_up * sizeof(etx_policy));
    cuda_up(b, b->d_states, b->h_states, (size_t)n_up * sizeof(EtxSeqState));
}

// The dslider picks' states back to the engine's requests after the policy ran (nothing
// to copy when no pick has one: then upload_picks uploaded none either).
static void download_dslider(CudaBackend* b, BackendStep* s) {
    const int np = s->n_picks;
    int any = 0;
    for (int p = 0; p < np; p++) any |= s->picks[p].dslider != NULL;
    if (!any) return;
    etx_dev_download_on(b->h_ds, b->d_ds, (size_t)np * sizeof(DSliderState), b->stream);
    b->d2h += (long long)np * (long long)sizeof(DSliderState);
    for (int p = 0; p < np; p++)
        if (s->picks[p].dslider) *s->picks[p].dslider = b->h_ds[p];
}

static etx_status cuda_step(CudaBackend* b, BackendStep* s) {
    (void)etx_dev_select(b->gpu); // the caller's thread may not be the one that created b
    int metrics_any = 0;
    ETX_TRY(check_step(b, s, &metrics_any));
    const BackendConfig* c = &b->cfg;
    ETX_TRY(copy_blocks(b, s->copies, s->n_copies));
    run_prefills(b, s, metrics_any);
    const int np = s->n_picks, in_graph = sampling_in_graph(b, s);
    // the picks before the decode forward, so the forward and the sampling are queued
    // back to back (a prefill pick's row was set when its group ran)
    if (np) upload_picks(b, s, metrics_any, in_graph ? padded_rows(b, np) : np);
    run_decode(b, s, metrics_any, in_graph);
    b->last_picks = np;
    if (np == 0) return etx_ok();
    if (!in_graph) cuda_sample(b, np, metrics_any);

    // what comes back: the tokens (and the trace records); the download waits for the
    // stream, so every staged upload has been read
    etx_dev_download_on(b->h_next, b->d_next, (size_t)np * 4, b->stream);
    cuda_stage_synced(b);
    b->d2h += (long long)np * 4;
    for (int p = 0; p < np; p++) s->picks[p].token = b->h_next[p];
    download_dslider(b, s);
    if (c->trace) {
        etx_trace_record tr[np];
        etx_dev_download_on(tr, b->d_trace, (size_t)np * sizeof(etx_trace_record), b->stream);
        b->d2h += (long long)np * (long long)sizeof(etx_trace_record);
        for (int p = 0; p < np; p++) s->picks[p].trace = tr[p];
    }
    return etx_ok();
}

// k decode steps between two synchronisations: every work is a decode row whose pick is
// its index; after each step the drawn tokens become the next inputs on the device
// (etx_advance_rows) and are kept in a ring; one download at the end. The block tables
// must already hold pos0 + k positions. tokens: (k, n_picks) out; trace: (k, n_picks) out
// when cfg.trace (else unused).
static etx_status cuda_decode_steps(CudaBackend* b, BackendStep* s, int k, int32_t* tokens,
                                    etx_trace_record* trace) {
    (void)etx_dev_select(b->gpu);
    const BackendConfig* c = &b->cfg;
    ETX_TRY(backend_check_decode_steps("CUDA backend", c, s, k));
    int metrics_any = 0;
    ETX_TRY(check_step(b, s, &metrics_any));
    if (k > b->ring_steps) {
        etx_dev_free(b->d_ring);
        etx_dev_free(b->d_ring_trace);
        b->d_ring_trace = NULL;
        b->ring_steps = 0;
        b->d_ring = etx_dev_malloc((size_t)k * c->max_batch * sizeof(int32_t));
        if (c->trace) b->d_ring_trace = etx_dev_malloc((size_t)k * c->max_batch * sizeof(etx_trace_record));
        if (!b->d_ring || (c->trace && !b->d_ring_trace))
            return etx_error(ETX_ERR_NOMEM, "CUDA backend: no device memory for %d steps' tokens", k);
        b->ring_steps = k;
    }
    const int np = s->n_picks, in_graph = sampling_in_graph(b, s), nb = padded_rows(b, np);
    ETX_TRY(copy_blocks(b, s->copies, s->n_copies));
    for (int j = 0; j < k; j++) {
        if (j == 0) {
            upload_picks(b, s, metrics_any, in_graph ? nb : np); // before the forward: see cuda_step
            run_decode(b, s, metrics_any, in_graph);
        } else {
            for (int sh = 0; sh < b->tp; sh++) { // every shard's rows advance (tp 1: b's)
                CudaBackend* x = cuda_shard(b, sh);
                (void)etx_dev_select(x->gpu);
                etx_advance_rows(x->d_tokens, x->d_row_pos, metrics_any ? x->d_n_pos : NULL, x->d_states,
                                 x->d_next, np, x->stream);
            }
            (void)etx_dev_select(b->gpu);
            decode_rows_on_device(b, nb, metrics_any, in_graph ? nb : 0);
        }
        if (!in_graph) cuda_sample(b, np, metrics_any);
        if (b->shards) cuda_tp_share_next(b, np); // the next inputs on every shard
        etx_dev_copy_on(b->d_ring + (size_t)j * np, b->d_next, (size_t)np * sizeof(int32_t), b->stream);
        if (c->trace)
            etx_dev_copy_on(b->d_ring_trace + (size_t)j * np, b->d_trace, (size_t)np * sizeof(etx_trace_record),
                            b->stream);
    }
    b->last_picks = np;
    etx_dev_download_on(tokens, b->d_ring, (size_t)k * np * sizeof(int32_t), b->stream);
    cuda_stage_synced(b); // the download waited for the stream
    b->d2h += (long long)k * np * 4;
    if (c->trace) {
        etx_dev_download_on(trace, b->d_ring_trace, (size_t)k * np * sizeof(etx_trace_record), b->stream);
        b->d2h += (long long)k * np * (long long)sizeof(etx_trace_record);
    }
    download_dslider(b, s); // the states after the k-th step
    return etx_ok();
}

// ----------------------------------------------------------------------------
// logits: a forward over ids in private K/V blocks (allocated for the call), in chunks of
// max_chunk rows

static etx_status cuda_logits(CudaBackend* b, const int32_t* ids, int n, int all_positions, float* out) {
    (void)etx_dev_select(b->gpu); // the caller's thread may not be the one that created b
    const BackendConfig* c = &b->cfg;
    if (n < 1 || n > c->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG, "CUDA backend: logits of %d tokens (1 .. max_seq_len %d)", n,
                         c->max_seq_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= b->vocab_all)
            return etx_error(ETX_ERR_INVALID_ARG, "CUDA backend: token %d out of range (vocab %d)", ids[i],
                             b->vocab_all);
    const int n_blocks = (n + c->kv_block_size - 1) / c->kv_block_size;
    const int tp = b->tp;
    // every shard's private K/V blocks (tmp_kv) and chunk logits (tmp_all), for the call
    etx_status st = etx_ok();
    size_t bytes0[64];
    for (int s = 0; s < tp; s++) {
        CudaBackend* x = cuda_shard(b, s);
        (void)etx_dev_select(x->gpu);
        bytes0[s] = x->dev_bytes;
        x->tmp_kv = xcalloc((size_t)x->n_layers, sizeof(CudaLayer));
        if (st.code == ETX_OK) st = cuda_alloc_kv(x, x->tmp_kv, n_blocks);
        if (st.code == ETX_OK && all_positions)
            st = cuda_alloc(x, (void**)&x->tmp_all, (size_t)c->max_chunk * x->vocab * 4, "logits of a chunk");
    }
    (void)etx_dev_select(b->gpu);
    if (st.code == ETX_OK) {
        memset(b->h_table, 0, (size_t)b->shape.max_blocks * 4);
        for (int k = 0; k < n_blocks; k++) b->h_table[k] = k;
        cuda_up(b, b->d_table, b->h_table, (size_t)b->shape.max_blocks * 4);
        for (int pos0 = 0; pos0 < n; pos0 += c->max_chunk) {
            const int m = n - pos0 < c->max_chunk ? n - pos0 : c->max_chunk, last = pos0 + m == n;
            for (int i = 0; i < m; i++) {
                b->h_row_seq[i] = 0;
                b->h_row_pos[i] = pos0 + i;
            }
            cuda_up(b, b->d_tokens, ids + pos0, (size_t)m * 4);
            cuda_up(b, b->d_row_seq, b->h_row_seq, (size_t)m * 4);
            cuda_up(b, b->d_row_pos, b->h_row_pos, (size_t)m * 4);
            CudaRows r = {.n = m, .d_tokens = b->d_tokens, .d_row_seq = b->d_row_seq, .d_row_pos = b->d_row_pos,
                          .d_table = b->d_table, .kv = b->tmp_kv, .scores = NULL, .head_first = all_positions ? 0 : m - 1,
                          .logits = all_positions ? b->tmp_all : last ? b->logits : NULL};
            cuda_forward_rows(b, &r);
            if (all_positions) {
                if (b->shards)
                    for (int i = 0; i < m; i++) cuda_tp_download_row(b, b->tmp_all, i, out + (size_t)(pos0 + i) * b->vocab_all);
                else
                    etx_dev_download_on(out + (size_t)pos0 * b->vocab, b->tmp_all, (size_t)m * b->vocab * 4, b->stream);
            }
        }
        if (!all_positions) {
            if (b->shards) cuda_tp_download_row(b, b->logits, 0, out);
            else etx_dev_download_on(out, b->logits, (size_t)b->vocab * 4, b->stream);
        }
    }
    for (int s = 0; s < tp; s++) {
        CudaBackend* x = cuda_shard(b, s);
        (void)etx_dev_select(x->gpu);
        etx_dev_free(x->tmp_all);
        x->tmp_all = NULL;
        cuda_free_kv(x, x->tmp_kv);
        free(x->tmp_kv);
        x->tmp_kv = NULL;
        x->dev_bytes = bytes0[s];
    }
    (void)etx_dev_select(b->gpu);
    return st;
}

etx_status cuda_backend_test_logits(CudaBackend* b, float* out, int n_picks) {
    if (n_picks < 0 || n_picks > b->last_picks)
        return etx_error(ETX_ERR_INVALID_ARG, "CUDA backend: %d logits rows asked, the last step had %d picks",
                         n_picks, b->last_picks);
    for (int p = 0; p < n_picks; p++) {
        if (b->shards) cuda_tp_download_row(b, b->logits, b->h_pick_row[p], out + (size_t)p * b->vocab_all);
        else
            etx_dev_download_on(out + (size_t)p * b->vocab, b->logits + (size_t)b->h_pick_row[p] * b->vocab,
                                (size_t)b->vocab * 4, b->stream);
    }
    return etx_ok();
}

etx_status cuda_backend_test_scores(CudaBackend* b, float* out, int n_picks) {
    if (n_picks < 0 || n_picks > b->last_picks)
        return etx_error(ETX_ERR_INVALID_ARG, "CUDA backend: %d score rows asked, the last step had %d picks",
                         n_picks, b->last_picks);
    // (n_heads, max_seq_len) per pick: every shard's heads in order
    const size_t whole = (size_t)b->m->cfg.n_heads * b->cfg.max_seq_len;
    for (int p = 0; p < n_picks; p++)
        for (int s = 0; s < b->tp; s++) {
            CudaBackend* x = cuda_shard(b, s);
            (void)etx_dev_select(x->gpu);
            etx_dev_download_on(out + p * whole + (size_t)s * score_row(x), x->scores + (size_t)b->h_pick_row[p] * score_row(x),
                                score_row(x) * 4, x->stream);
        }
    (void)etx_dev_select(b->gpu);
    return etx_ok();
}

static long long cuda_d2h_bytes(const CudaBackend* b) { return b->d2h; }

static void cuda_sizes(const CudaBackend* b, long long* weight_bytes, long long* kv_bytes_per_position,
                       long long* device_bytes) {
    // (tensor parallelism: the weights and K/V of one device, shard 0's, which is what a
    // device's bandwidth floor reads; the memory held summed over every device)
    *weight_bytes = (long long)b->weight_bytes;
    *kv_bytes_per_position = 2LL * b->n_layers * b->kv_dim * (long long)sizeof(etx_bf16);
    *device_bytes = 0;
    for (int s = 0; s < b->tp; s++) *device_bytes += (long long)(b->shards ? b->shards[s] : b)->dev_bytes;
}

static const BackendOps cuda_ops = {
    .name = CUDA_BACKEND_NAME,
    .emulated = CUDA_EMULATED,
    .device = ETX_DEVICE_CUDA,
    .prefill_chunk = CUDA_PREFILL_CHUNK,
    .steps_per_sync = CUDA_STEPS_PER_SYNC,
    .available = etx_dev_available,
    .device_name = etx_dev_name,
    .device_count = etx_dev_count,
    .select_device = etx_dev_select,
    .device_name_of = etx_dev_name_of,
    .create = cuda_create,
    .destroy = cuda_destroy,
    .step = cuda_step,
    .decode_steps = cuda_decode_steps,
    .logits = cuda_logits,
    .d2h_bytes = cuda_d2h_bytes,
    .sizes = cuda_sizes,
    .kv_budget = cuda_kv_budget,
    .measure = cuda_measure,
};

// Linking this object registers the backend with the engine (engine/backend.h).
__attribute__((constructor)) static void cuda_backend_register(void) { etx_register_cuda_backend(&cuda_ops); }
