/*
 * test_cuda_plan.c — the CUDA backend's launch plan and cost model (host/cuda/cuda_plan.c),
 * under the SIMT emulator (test_cuda_plan_emu; natively test_cuda_plan_gpu runs the pure
 * parts and skips the launch count, which only the emulator keeps).
 *
 *   1. The plan is what runs: requests through the engine on the CUDA backend (a prompt
 *      prefilled in one chunk, then decode steps; with and without the entropix capture
 *      and signals; a context of one attention split and of two) launch exactly the
 *      kernels the plan's ops say they launch (the emulator counts them), so the cost
 *      model, which reads the same plan, misses no kernel; also for tiny Qwen2 (biases)
 *      and Qwen3 (QK-norm) models, whose plans have the qkv_prep op.
 *   2. The plan's shape: 1 + 9 per layer + 2 ops for a forward with its LM head (10 per
 *      layer with QK-norm: qkv_prep between the QKV GEMM and RoPE; Q/K/V biases alone
 *      ride on the QKV GEMM's epilogue), the
 *      capture only in the last layer's attention, the sampling ops.
 *   3. The cost model: at batch 1 the GEMMs' bytes are the weights' (each read once), so
 *      the predicted step is at least the floor; the GEMM FLOPs are 2 x parameters x rows;
 *      a grid too small to fill the card is slowed by the fraction it fills; the floor
 *      grows with the KV cache; a model deeper than 128 layers is refused; an L2 prefetch
 *      costs time only past the grid's own.
 *   4. The L2 prefetch plan at batch 1 (plan_prefetch): who asks for which bytes.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_plan.h"
#include "device.h"
#include "gemm.h"
#include "etx/etx.h"
#include "model/model.h"
#include "check_main.h"
#include "tiny_context.h"

#define TINY ETX_FIXTURES "/models/tiny-llama-gqa"

static etx_model* g_tiny;  // tiny-llama-gqa with a context of 512
static etx_model* g_qwen2; // tiny-qwen2 (Q/K/V biases), the same
static etx_model* g_qwen3; // tiny-qwen3 (QK-norm, head_dim 24), the same

static long long launches_of(const CudaOp* ops, int n, const CudaDims* d, int len) {
    const CudaCard* card = cuda_card_find("h100");
    long long k = 0;
    for (int i = 0; i < n; i++) k += cuda_op_cost(d, &ops[i], len, card).launches;
    return k;
}

// One request of n_prompt tokens generating n_gen through the engine on the CUDA
// backend: the kernels it launched vs what the plan says: the prefill forward (no LM
// head) and the LM head of its last row (gathered), sampling, then per further token a
// decode forward with its head and sampling.
static void check_launches(etx_model* m, int n_prompt, int n_gen, int ctx, etx_policy_kind kind, int trace) {
    etx_engine_options o = etx_engine_options_default();
    o.device = ETX_DEVICE_CUDA;
    o.max_seq_len = ctx;
    o.max_batch = 1;
    o.trace = trace;
    o.steps_per_sync = 1;
    etx_engine* e = NULL;
    etx_status s = etx_engine_create(m, &o, &e);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    int32_t prompt[200];
    for (int i = 0; i < n_prompt; i++) prompt[i] = 2 + (i * 7) % (m->cfg.vocab_size - 2);
    etx_policy pol = etx_policy_default(kind);
    if (kind == ETX_POLICY_ENTROPIX) pol.entropix.pause_token = 3;
    etx_request r = {.prompt = prompt, .n_prompt = n_prompt, .policy = pol, .max_tokens = n_gen, .ignore_eos = 1};
    int id;
    ck_assert_int_eq(etx_engine_submit(e, &r, &id).code, ETX_OK);
    const long long before = etx_dev_kernel_launches();
    ck_assert_int_eq(etx_engine_run(e).code, ETX_OK);
    const long long ran = etx_dev_kernel_launches() - before;
    etx_request_state st;
    ck_assert_int_eq(etx_engine_request_state(e, id, &st).code, ETX_OK);
    ck_assert_int_eq(st.n_tokens, n_gen);
    etx_engine_free(e);

    const CudaDims d = cuda_dims_for(m, ctx, 64);
    const int metrics = trace || kind == ETX_POLICY_ENTROPIX;
    // the fallback kernel runs only for a policy that may draw beyond the candidates
    const int fallback = cuda_policy_may_need_full_row(&pol, m->cfg.vocab_size);
    CudaOp ops[CUDA_PLAN_OPS(8)];
    long long want = 0;
    int k = cuda_plan_forward(&d, n_prompt, 0, metrics, 0, 0, ops);
    want += launches_of(ops, k, &d, n_prompt);
    k = cuda_plan_gathered_head(&d, 0, 1, ops);
    want += launches_of(ops, k, &d, n_prompt);
    k = cuda_plan_sampling(&d, 1, metrics, fallback, ops);
    want += launches_of(ops, k, &d, n_prompt);
    for (int t = 1; t < n_gen; t++) {
        k = cuda_plan_forward(&d, 1, 1, metrics, 0, 1, ops);
        want += launches_of(ops, k, &d, n_prompt + t);
        k = cuda_plan_sampling(&d, 1, metrics, fallback, ops);
        want += launches_of(ops, k, &d, n_prompt + t);
    }
    ck_assert_msg(ran == want, "prompt %d, %d tokens, ctx %d, policy %d, trace %d: %lld kernels ran, the plan says %lld",
                  n_prompt, n_gen, ctx, kind, trace, ran, want);
}

START_TEST(the_plan_is_what_runs) {
    if (etx_dev_kernel_launches() < 0) {
        fprintf(stderr, "test_cuda_plan: launches are counted only under the emulator: skipped\n");
        return;
    }
    check_launches(g_tiny, 20, 4, 128, ETX_POLICY_GREEDY, 0);   // one split: attention is one kernel
    check_launches(g_tiny, 20, 4, 300, ETX_POLICY_GREEDY, 0);   // two splits: attention + merge
    check_launches(g_tiny, 30, 3, 300, ETX_POLICY_ENTROPIX, 0); // capture and attention signals
    check_launches(g_tiny, 12, 3, 128, ETX_POLICY_SAMPLE, 1);   // tracing: signals for every pick
    // Qwen: the qkv_prep op in every layer (biases; QK-norm)
    check_launches(g_qwen2, 20, 4, 300, ETX_POLICY_GREEDY, 0);
    check_launches(g_qwen3, 20, 4, 128, ETX_POLICY_GREEDY, 0);
    check_launches(g_qwen3, 30, 3, 300, ETX_POLICY_ENTROPIX, 0);
}
END_TEST

static CudaDims llama_1b(void) {
    // Llama-3.2-1B: dim 2048, hidden 8192, 16 layers, 32 / 8 heads of 64, vocab 128256, tied
    CudaDims d = {2048, 8192, 128256, 16, 32, 8, 64, 64, 2048, 512, 3072, 4096, 64, 1, 0, 0, 1, 0, 0};
    return d;
}

START_TEST(plan_shape) {
    const CudaDims d = llama_1b();
    char name0[64];
    CudaOp ops[CUDA_PLAN_OPS(16)];
    int n = cuda_plan_forward(&d, 7, 0, 1, 0, 7, ops);
    ck_assert_int_eq(n, 1 + 8 * 16 + 2);
    int captures = 0, gemms = 0;
    for (int i = 0; i < n; i++) {
        captures += ops[i].kind == CUDA_OP_ATTN && ops[i].capture;
        gemms += ops[i].kind == CUDA_OP_GEMM;
        ck_assert_int_eq(ops[i].n, 7);
    }
    ck_assert_int_eq(captures, 1);
    ck_assert(ops[n - 3].kind == CUDA_OP_ATTN || ops[n - 3].kind == CUDA_OP_GEMM); // the layers, then the head
    ck_assert_int_eq(ops[n - 2].kind, CUDA_OP_NORM);
    ck_assert_int_eq(ops[n - 2].which, CUDA_NORM_FINAL);
    ck_assert_int_eq(ops[n - 1].which, CUDA_W_LM_HEAD);
    ck_assert_int_eq(gemms, 4 * 16 + 1);
    ck_assert_int_eq(ops[1].residual, 0); // layer 0's first norm reads the embedding alone
    ck_assert_int_eq(cuda_plan_forward(&d, 7, 0, 0, 0, 0, ops), 1 + 8 * 16);
    // a decode batch of one (issue 15 item 6): per layer the QKV GEMM normalising its own
    // row, attention with RoPE and the append, O added into x, gate/up normalising its row,
    // down added into x; then the LM head normalising its row
    n = cuda_plan_forward(&d, 1, 1, 1, 0, 1, ops);
    ck_assert_int_eq(n, 1 + 5 * 16 + 1);
    for (int l = 0; l < 16; l++) {
        const CudaOp* L = ops + 1 + 5 * l;
        ck_assert(L[0].kind == CUDA_OP_GEMM && L[0].which == CUDA_W_QKV && L[0].norm == 1 + CUDA_NORM_ATTN);
        ck_assert(L[1].kind == CUDA_OP_ATTN && L[1].which == 1 && L[1].capture == (l == 15));
        ck_assert(L[2].kind == CUDA_OP_GEMM && L[2].which == CUDA_W_O && L[2].residual && !L[2].norm);
        ck_assert(L[3].kind == CUDA_OP_GEMM && L[3].which == CUDA_W_GATE_UP && L[3].norm == 1 + CUDA_NORM_FFN);
        ck_assert(L[4].kind == CUDA_OP_GEMM && L[4].which == CUDA_W_DOWN && L[4].residual);
    }
    ck_assert(ops[n - 1].which == CUDA_W_LM_HEAD && ops[n - 1].norm == 1 + CUDA_NORM_FINAL);
    ck_assert_str_eq(cuda_op_name(&ops[1], name0, sizeof name0), "L0 norm + gemm qkv");
    ck_assert_str_eq(cuda_op_name(&ops[2], name0, sizeof name0), "L0 rope + attention");
    // 5 rows: the norms are their own launches again (each GEMM block would re-read 5 rows)
    ck_assert_int_eq(cuda_plan_forward(&d, 5, 1, 1, 0, 5, ops), 1 + 7 * 16 + 2);
    // a decode batch of 256 (and 64): the O and down projections split their slices, and
    // their reduce does the norm after them (the next layer's attention norm; the final
    // norm after the last layer): only layer 0's attention norm is an op of its own
    for (int rows = 64; rows <= 256; rows *= 4) {
        n = cuda_plan_forward(&d, rows, 1, 1, 0, rows, ops);
        ck_assert_int_eq(n, 1 + 1 + 5 * 16 + 1);
        ck_assert(ops[1].kind == CUDA_OP_NORM && ops[1].which == CUDA_NORM_ATTN);
        for (int l = 0; l < 16; l++) {
            const CudaOp* L = ops + 2 + 5 * l;
            ck_assert(L[0].kind == CUDA_OP_GEMM && L[0].which == CUDA_W_QKV && !L[0].norm);
            ck_assert(L[2].kind == CUDA_OP_GEMM && L[2].which == CUDA_W_O && L[2].norm_next == 1 + CUDA_NORM_FFN);
            ck_assert(L[3].kind == CUDA_OP_GEMM && L[3].which == CUDA_W_GATE_UP && !L[3].norm);
            ck_assert(L[4].kind == CUDA_OP_GEMM && L[4].which == CUDA_W_DOWN &&
                      L[4].norm_next == 1 + (l < 15 ? CUDA_NORM_ATTN : CUDA_NORM_FINAL));
        }
        ck_assert(ops[n - 1].which == CUDA_W_LM_HEAD && !ops[n - 1].norm && ops[n - 1].n == rows);
        ck_assert_str_eq(cuda_op_name(&ops[4], name0, sizeof name0), "L0 gemm o + norm");
        ck_assert_str_eq(cuda_op_name(&ops[6], name0, sizeof name0), "L0 gemm down + norm");
        // each fused op is the tiled kernel and its reduce: 2 launches, the norm's gone
        ck_assert_int_eq(cuda_op_cost(&d, &ops[4], 64, cuda_card_find("h100")).launches, 2);
    }
    // the head of a subset of the rows (prefill: each chunk's last row): the final norm
    // still rides on the last down projection's reduce, which normalises every row
    n = cuda_plan_forward(&d, 256, 0, 0, 200, 56, ops);
    ck_assert(ops[n - 2].kind == CUDA_OP_GEMM && ops[n - 2].norm_next == 1 + CUDA_NORM_FINAL);
    ck_assert(ops[n - 1].which == CUDA_W_LM_HEAD && ops[n - 1].row0 == 200 && ops[n - 1].n == 56);
    // ... but not when the head's rows would normalise themselves (a few rows)
    n = cuda_plan_forward(&d, 256, 0, 0, 255, 1, ops);
    ck_assert(ops[n - 2].norm_next == 0 && ops[n - 1].norm == 1 + CUDA_NORM_FINAL);
    // a backend's workspace too small for the split: the norms stay ops
    CudaDims small = d;
    small.gemm_ws_bytes = 1024;
    ck_assert_int_eq(cuda_plan_forward(&small, 256, 1, 1, 0, 256, ops), 1 + 7 * 16 + 2);
    // tensor parallelism: the projections write delta (all-reduced), the norms add it
    CudaDims tp = d;
    tp.fused_residual = 0;
    n = cuda_plan_forward(&tp, 1, 1, 1, 0, 1, ops);
    ck_assert_int_eq(n, 1 + 6 + 7 * 15 + 2); // layer 0's first norm adds nothing, so it folds
    for (int i = 0; i < n; i++) {
        ck_assert(!(ops[i].kind == CUDA_OP_GEMM && ops[i].residual));
        if (ops[i].kind == CUDA_OP_GEMM && ops[i].norm) ck_assert(i == 1);
    }
    n = cuda_plan_forward(&tp, 256, 1, 1, 0, 256, ops);
    for (int i = 0; i < n; i++) ck_assert(!ops[i].norm_next); // nothing adds into x before the all-reduce
    ck_assert_int_eq(cuda_plan_sampling(&d, 3, 1, 0, ops), 3);
    ck_assert_int_eq(ops[2].capture, 1);
    ck_assert_int_eq(cuda_plan_sampling(&d, 3, 0, 0, ops), 2);
    ck_assert_int_eq(ops[1].capture, 0);
    // the policy's fallback kernel: launched only when some pick may need it
    ck_assert_int_eq(cuda_op_cost(&d, &ops[1], 16, cuda_card_find("h100")).launches, 1);
    ck_assert_int_eq(cuda_plan_sampling(&d, 3, 0, 1, ops), 2);
    ck_assert_int_eq(cuda_op_cost(&d, &ops[1], 16, cuda_card_find("h100")).launches, 2);
    char name[64];
    CudaOp g = {CUDA_OP_GEMM, 3, CUDA_W_O, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_str_eq(cuda_op_name(&g, name, sizeof name), "L3 gemm o");
    // Q/K/V biases alone (qwen2): the QKV GEMM adds them in its epilogue, no op more
    {
        CudaDims q = d;
        q.qkv_bias = 1;
        n = cuda_plan_forward(&q, 7, 0, 1, 0, 7, ops);
        ck_assert_int_eq(n, 1 + 8 * 16 + 2);
        int biased = 0;
        for (int i = 0; i < n; i++) {
            ck_assert(ops[i].kind != CUDA_OP_QKV_PREP);
            biased += ops[i].bias;
            if (ops[i].bias) ck_assert(ops[i].kind == CUDA_OP_GEMM && ops[i].which == CUDA_W_QKV);
        }
        ck_assert_int_eq(biased, 16);
        ck_assert_str_eq(cuda_op_name(&ops[2], name, sizeof name), "L0 gemm qkv + bias");
        n = cuda_plan_forward(&q, 1, 1, 1, 0, 1, ops); // batch 1: the norm folded in too
        ck_assert_int_eq(n, 1 + 5 * 16 + 1);
        ck_assert(ops[1].bias && ops[1].norm);
        ck_assert_str_eq(cuda_op_name(&ops[1], name, sizeof name), "L0 norm + gemm qkv + bias");
    }
    // QK-norm, with or without biases (qwen3): one more op per layer, right after the QKV GEMM
    for (int v = 2; v <= 3; v++) {
        CudaDims q = d;
        q.qkv_bias = v & 1, q.qk_norm = (v >> 1) & 1;
        n = cuda_plan_forward(&q, 7, 0, 1, 0, 7, ops);
        ck_assert_int_eq(n, 1 + 9 * 16 + 2);
        int preps = 0;
        for (int i = 0; i < n; i++)
            if (ops[i].kind == CUDA_OP_QKV_PREP) {
                preps++;
                ck_assert(ops[i - 1].kind == CUDA_OP_GEMM && ops[i - 1].which == CUDA_W_QKV);
                ck_assert_int_eq(ops[i + 1].kind, CUDA_OP_ROPE_KV);
                ck_assert_int_eq(ops[i].layer, ops[i - 1].layer);
                const EtxCost c = cuda_op_cost(&q, &ops[i], 16, cuda_card_find("h100"));
                ck_assert_int_eq(c.launches, 1);
                ck_assert(c.bytes > 0);
            }
        ck_assert_int_eq(preps, 16);
    }
}
END_TEST

// The L2 prefetch plan (cuda_plan_prefetch) of a batch-1 step on the 1B shape: only
// projections of at most 8 rows whose grid leaves the card idle issue one; each asks for a
// range of a later GEMM's weights, 16-byte pieces, at most CUDA_PF_MAX, within the
// matrix; the ranges of one matrix follow each other from its first byte, and what the
// plan marks as prefetched on each GEMM is what the earlier ones asked for. Here: layer
// 0's QKV asks for the start of its O projection's weights, the O projection for its
// gate/up's, the down projection for the next layer's QKV. Batch 256 (bandwidth-bound
// grids) and tensor parallelism plan none.
START_TEST(plan_prefetch) {
    CudaDims d = llama_1b();
    d.sms = 132;
    CudaOp ops[CUDA_PLAN_OPS(16)];
    const int n = cuda_plan_forward(&d, 1, 1, 1, 0, 1, ops);
    size_t asked = 0, marked = 0;
    int issuers = 0;
    for (int i = 0; i < n; i++) {
        const CudaOp* o = &ops[i];
        if (o->kind == CUDA_OP_GEMM) marked += o->prefetched;
        if (!o->pf_bytes) continue;
        issuers++;
        asked += o->pf_bytes;
        ck_assert(o->kind == CUDA_OP_GEMM && o->n <= 8);
        ck_assert(o->pf_bytes % 16 == 0 && o->pf_off % 16 == 0 && o->pf_bytes <= CUDA_PF_MAX);
        int in = 0, out = 0;
        cuda_gemm_shape(&d, (CudaWeight)o->pf_which, &in, &out);
        ck_assert(o->pf_off + o->pf_bytes <= (size_t)in * out * 2);
        // the target is a later GEMM; the ranges asked for it before this one end where this starts
        int t = i + 1;
        while (t < n && !(ops[t].kind == CUDA_OP_GEMM && ops[t].which == o->pf_which && ops[t].layer == o->pf_layer)) t++;
        ck_assert_msg(t < n, "op %d prefetches for no later GEMM", i);
        size_t before = 0;
        for (int k = 0; k < i; k++)
            if (ops[k].pf_bytes && ops[k].pf_which == o->pf_which && ops[k].pf_layer == o->pf_layer) before += ops[k].pf_bytes;
        ck_assert_msg(before == o->pf_off, "op %d: range at %zu, %zu asked before it", i, o->pf_off, before);
    }
    ck_assert(issuers > 16 && asked > 0 && asked == marked);
    // layer 0: QKV (op 1) -> O (op 3); O -> gate/up (op 4); down (op 5) -> layer 1's QKV (op 6)
    ck_assert(ops[1].pf_which == CUDA_W_O && ops[1].pf_layer == 0 && ops[1].pf_off == 0 && ops[3].prefetched > 0);
    ck_assert(ops[3].pf_which == CUDA_W_GATE_UP && ops[3].pf_layer == 0 && ops[4].prefetched > 0);
    ck_assert(ops[5].pf_which == CUDA_W_QKV && ops[5].pf_layer == 1 && ops[6].prefetched > 0);
    const int n256 = cuda_plan_forward(&d, 256, 1, 1, 0, 256, ops);
    for (int i = 0; i < n256; i++) ck_assert(!ops[i].pf_bytes && !ops[i].prefetched);
    CudaDims tp = d;
    tp.fused_residual = 0;
    const int ntp = cuda_plan_forward(&tp, 1, 1, 1, 0, 1, ops);
    for (int i = 0; i < ntp; i++) ck_assert(!ops[i].pf_bytes);
}
END_TEST

START_TEST(cost_model) {
    const CudaDims d = llama_1b();
    const CudaCard* h100 = cuda_card_find("h100");
    ck_assert_ptr_nonnull(h100);
    ck_assert_ptr_null(cuda_card_find("v100"));
    static CudaStepPrediction p;
    ck_assert_int_eq(cuda_predict_decode_step(&d, 1, 512, 1, h100, &p), 0);
    double gemm_w = 0, gemm_flops = 0;
    for (int i = 0; i < p.n_ops; i++)
        if (p.ops[i].kind == CUDA_OP_GEMM) {
            int in, out;
            cuda_gemm_shape(&d, (CudaWeight)p.ops[i].which, &in, &out);
            gemm_w += (double)in * out * 2;
            gemm_flops += p.cost[i].flops;
        }
    const double params = gemm_w / 2;
    // 2 FLOPs per weight for the one row; on the tensor-core path the mma's 8 columns are
    // counted as issued (7 of them padding at batch 1: the work the tensor core does),
    // every out of this shape being a multiple of its 16-column tile
    const int tc = etx_gemm_cost(1, 8, 16, 0, 0, 132).tensor; // the path the model assumes
    ck_assert_double_eq_tol(gemm_flops, 2.0 * params * (tc ? 8 : 1), 1.0);
    // the GEMMs move at least their weights; the step takes at least the floor
    double gemm_bytes = 0; // with the L2 prefetch (cost.pf): moved by the launch that asks for it
    for (int i = 0; i < p.n_ops; i++)
        if (p.ops[i].kind == CUDA_OP_GEMM) gemm_bytes += p.cost[i].bytes + p.cost[i].pf;
    ck_assert(gemm_bytes >= gemm_w);
    ck_assert(p.total_s >= p.floor_s);
    ck_assert(p.floor_s > 0.5e-3 && p.floor_s < 1.0e-3); // ~2.5 GB of bf16 weights at 3.35 TB/s
    printf("llama-3.2-1b shape, h100, batch 1, 512 positions: predicted %.3f ms, floor %.3f ms (%.0f%%), %d launches\n",
           p.total_s * 1e3, p.floor_s * 1e3, 100 * p.floor_s / p.total_s, p.launches);
    // a grid of one working block gets 1 / (2 SMs) of the card
    EtxCost c = {1e6, 0, 1, 1, 0, 0, 0, 0, 0};
    ck_assert_double_eq_tol(cuda_cost_seconds(&c, h100), 1e6 / h100->bandwidth * 2 * h100->sms, 1e-12);
    c.busy = c.ctas = 1000;
    ck_assert_double_eq_tol(cuda_cost_seconds(&c, h100), 1e6 / h100->bandwidth, 1e-12);
    c.launches = 2; // charged at the PDL figure, unless ETX_PDL=0
    ck_assert_double_eq_tol(cuda_cost_seconds(&c, h100), 1e6 / h100->bandwidth + 2 * h100->launch_pdl_s, 1e-12);
    setenv("ETX_PDL", "0", 1);
    ck_assert_double_eq_tol(cuda_cost_seconds(&c, h100), 1e6 / h100->bandwidth + 2 * h100->launch_s, 1e-12);
    unsetenv("ETX_PDL");
    // an L2 prefetch costs nothing while it fits the time the grid takes anyway, and past
    // that its DRAM bytes at the bandwidth
    c.launches = 0, c.busy = c.ctas = 1, c.pf = 1e6;
    ck_assert_double_eq_tol(cuda_cost_seconds(&c, h100), 1e6 / h100->bandwidth * 2 * h100->sms, 1e-12);
    c.busy = c.ctas = 1000;
    ck_assert_double_eq_tol(cuda_cost_seconds(&c, h100), 2e6 / h100->bandwidth, 1e-12);
    c.pf = 0;
    // L2 traffic bounds an op when it takes longer than its DRAM bytes and its FLOPs
    c.launches = 0;
    c.l2 = 100 * c.bytes;
    ck_assert_double_eq_tol(cuda_cost_seconds(&c, h100), c.l2 / h100->l2_bandwidth, 1e-12);
    c.l2 = 0;
    // at batch 256 the tensor-core GEMMs load 1 L2 byte per 16 FLOPs (gemm_tc_kernel, 32 x
    // 32 tiles straight from L2) or per 64 (the tiled kernel, 128 x 128 tiles through shared
    // memory: what a gate/up projection of that batch takes), and their launch order reads
    // the weights from DRAM once (n <= out: row tiles first)
    ck_assert(etx_gemm_tc_takes_tiled(256, 16384, 0) && !etx_gemm_tc_takes_tiled(256, 2048, 0) &&
              !etx_gemm_tc_takes_tiled(8, 16384, 0));
    // with a workspace for the slice sums a narrow projection splits them (16 x 1 tiles of
    // 128 x 256, each over 8 blocks)
    ck_assert(etx_gemm_tc_takes_tiled(256, 2048, etx_gemm_tc_workspace_bytes(256, 2048)));
    // from half the card's blocks on (a 1536-wide projection at 64 rows: 12 tiles x 8 = 96),
    // not below it (512 columns: 4 x 8 = 32)
    ck_assert(etx_gemm_tc_takes_tiled(64, 1536, etx_gemm_tc_workspace_bytes(64, 1536)));
    ck_assert(!etx_gemm_tc_takes_tiled(64, 512, etx_gemm_tc_workspace_bytes(64, 512)));
    const EtxCost split = etx_gemm_tc_cost(256, 8192, 2048, h100->l2_bytes, etx_gemm_tc_workspace_bytes(256, 2048), h100->sms);
    ck_assert_int_eq(split.launches, 2);
    ck_assert_double_eq_tol(split.busy, 16 * 1 * 8, 0.5);
    ck_assert_int_eq(split.per_sm, 1);
    etx_gemm_tc_force_kernel(0);
    const EtxCost g = etx_gemm_tc_cost(256, 2048, 16384, h100->l2_bytes, 0, h100->sms);
    etx_gemm_tc_force_kernel(-1);
    ck_assert_double_eq_tol(g.flops / g.l2, 16.0, 0.5);
    // the tiled kernel: 128 x 256 tiles at 256 rows, 2 128 256 / (2 (128 + 256)) FLOPs per
    // L2 byte; 128 x 128 at 128 rows, 64
    const EtxCost gt = etx_gemm_tc_cost(256, 2048, 16384, h100->l2_bytes, 0, h100->sms);
    ck_assert_double_eq_tol(gt.flops / gt.l2, 256.0 / 3.0, 0.5);
    const EtxCost gt128 = etx_gemm_tc_cost(128, 2048, 16384, h100->l2_bytes, 0, h100->sms);
    ck_assert_double_eq_tol(gt128.flops / gt128.l2, 64.0, 0.5);
    ck_assert(g.bytes < 1.1 * 2048.0 * 16384 * 2 + 256.0 * (2048 * 2 + 16384 * 4));
    ck_assert(gt.bytes < 1.1 * 2048.0 * 16384 * 2 + 256.0 * (2048 * 2 + 16384 * 4));
    // the KV cache adds to the floor
    ck_assert(cuda_floor_bytes(&d, 8, 4096) > cuda_floor_bytes(&d, 8, 16));
    CudaDims deep = d;
    deep.n_layers = 129;
    ck_assert_int_eq(cuda_predict_decode_step(&deep, 1, 16, 0, h100, &p), -1);
}
END_TEST

int main(void) {
    if (!etx_dev_available()) return CHECK_SKIPPED;
    g_tiny = tiny_model_with_context(TINY, 512); // contexts past 256: two attention splits
    g_qwen2 = tiny_model_with_context(ETX_FIXTURES "/models/tiny-qwen2", 512);
    g_qwen3 = tiny_model_with_context(ETX_FIXTURES "/models/tiny-qwen3", 512);
    Suite* su = suite_create("cuda_plan");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, the_plan_is_what_runs);
    tcase_add_test(tc, plan_shape);
    tcase_add_test(tc, cost_model);
    tcase_add_test(tc, plan_prefetch);
    suite_add_tcase(su, tc);
    const int rc = check_run_suite_nofork(su);
    etx_model_free(g_tiny);
    etx_model_free(g_qwen2);
    etx_model_free(g_qwen3);
    return rc;
}
