/*
 * bench_plan.c — `etx bench --plan`: the CUDA cost model's prediction of one decode step,
 * op by op, for a model (or a named shape) on a datasheet card, at each batch size,
 * without running anything (host/cuda/cuda_plan.h: the plan the backend executes and the
 * kernels' own napkin math). Rows are the plan's ops summed over the layers; the step's
 * total is compared with its floor (the bytes it must move at the card's bandwidth).
 * Built only with the CUDA backend (ETX_HAVE_CUDA).
 */
#include <stdio.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/cli.h"

#ifdef ETX_HAVE_CUDA
#include "cuda/cuda_plan.h"
#include "gemm.h"
#include "model/model.h"

// Model shapes the plan can be printed for without the model file (published configs).
typedef struct {
    const char* name;
    CudaDims d; // max_seq_len and block_size filled in later
} NamedShape;

static int named_shape(const char* name, CudaDims* d) {
    static const NamedShape shapes[] = {
        // dim, hidden, vocab, layers, heads, kv heads, head_dim, padded, q_dim, kv_dim, qkv_dim, ctx, block, tied,
        // Q/K/V biases, QK-norm, fused residual (one GPU), GEMM workspace (0: as
        // a backend built for the batch would have)
        {"llama-3.2-1b", {2048, 8192, 128256, 16, 32, 8, 64, 64, 2048, 512, 3072, 0, 0, 1, 0, 0, 1, 0, 0}},
        {"llama-3.2-3b", {3072, 8192, 128256, 28, 24, 8, 128, 128, 3072, 1024, 5120, 0, 0, 1, 0, 0, 1, 0, 0}},
        {"llama-3.1-8b", {4096, 14336, 128256, 32, 32, 8, 128, 128, 4096, 1024, 6144, 0, 0, 0, 0, 0, 1, 0, 0}},
        {"smollm2-135m", {576, 1536, 49152, 30, 9, 3, 64, 64, 576, 192, 960, 0, 0, 1, 0, 0, 1, 0, 0}},
        {"qwen2.5-1.5b", {1536, 8960, 151936, 28, 12, 2, 128, 128, 1536, 256, 2048, 0, 0, 1, 1, 0, 1, 0, 0}},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, name)) {
            *d = shapes[i].d;
            return 0;
        }
    fprintf(stderr, "etx bench: --shape: unknown shape '%s' (", name);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", shapes[i].name);
    fprintf(stderr, ")\n");
    return -1;
}

// One row of the table: the ops of one kind (and projection) summed over the layers.
typedef struct {
    char name[64];
    int count;
    EtxCost c;
    double s;
} PlanRow;

static void print_step(FILE* f, const CudaStepPrediction* p, const CudaCard* card, int batch, int len, int metrics) {
    PlanRow rows[32];
    int n_rows = 0;
    for (int i = 0; i < p->n_ops; i++) {
        char name[64];
        CudaOp o = p->ops[i];
        o.layer = -1; // summed over the layers
        cuda_op_name(&o, name, sizeof name);
        int r = 0;
        while (r < n_rows && strcmp(rows[r].name, name)) r++;
        if (r == n_rows) {
            if (n_rows == 32) continue;
            memset(&rows[r], 0, sizeof rows[r]);
            snprintf(rows[r].name, sizeof rows[r].name, "%s", name);
            n_rows++;
        }
        rows[r].count++;
        rows[r].c.bytes += p->cost[i].bytes + p->cost[i].pf; // its own DRAM bytes and the L2 prefetch it issues
        rows[r].c.flops += p->cost[i].flops;
        rows[r].c.l2 += p->cost[i].l2;
        rows[r].c.launches += p->cost[i].launches;
        rows[r].s += p->seconds[i];
    }
    fprintf(f, "\nbatch %d, %d positions per row, %s: predicted %.3f ms per step (%.4f ms per token), floor %.3f ms "
               "= %.0f%% of the floor, %d kernel launches\n",
            batch, len, metrics ? "entropix (capture + attention signals)" : "greedy", p->total_s * 1e3,
            p->total_s * 1e3 / batch, p->floor_s * 1e3, 100.0 * p->floor_s / p->total_s, p->launches);
    fprintf(f, "| op | ops | launches | MB moved | L2 MB | GFLOP | predicted us | share |\n"
               "|---|---|---|---|---|---|---|---|\n");
    for (int r = 0; r < n_rows; r++)
        fprintf(f, "| %s | %d | %d | %.2f | %.1f | %.3f | %.1f | %.1f%% |\n", rows[r].name, rows[r].count,
                rows[r].c.launches, rows[r].c.bytes / 1e6, rows[r].c.l2 / 1e6, rows[r].c.flops / 1e9, rows[r].s * 1e6,
                100.0 * rows[r].s / p->total_s);
    (void)card;
}

int bench_plan(const BenchConfig* c) {
    const CudaCard* card = cuda_card_find(c->card ? c->card : "h100");
    if (!card) {
        fprintf(stderr, "etx bench: --card: unknown card '%s' (", c->card);
        for (int i = 0; i < cuda_n_cards; i++) fprintf(stderr, "%s%s", i ? ", " : "", cuda_cards[i].name);
        fprintf(stderr, ")\n");
        return 2;
    }
    const int ctx = c->L + c->G, block = 64;
    CudaDims d;
    const char* what = c->shape;
    if (c->shape) {
        if (named_shape(c->shape, &d) != 0) return 2;
        d.max_seq_len = ctx, d.block_size = block;
    } else {
        int rc = 1;
        etx_model* m = cli_load_model(c->model_path, &rc);
        if (!m) return rc;
        d = cuda_dims_for(m, ctx, block);
        what = c->model_path;
        etx_model_free(m);
    }
    static const int default_batches[] = {1, 8, 64, 256};
    const int* batches = c->n_batches ? c->batches : default_batches;
    const int n_batches = c->n_batches ? c->n_batches : 4;
    printf("# etx CUDA cost model: a prediction, not a measurement\n\n");
    printf("model %s (dim %d, hidden %d, %d layers, %d/%d heads of %d, vocab %d%s), context %d (prompt %d + %d "
           "generated; rows at the last position)\ncard %s; launch %.1f us per kernel (%s; assumed, not "
           "measured)\n",
           what, d.dim, d.hidden, d.n_layers, d.n_heads, d.n_kv_heads, d.hd, d.vocab, d.tied ? ", tied" : "", ctx,
           c->L, c->G, card->what, cuda_card_launch_s(card) * 1e6,
           cuda_card_launch_s(card) < card->launch_s ? "programmatic dependent launch; ETX_PDL=0: without"
                                                     : "without programmatic dependent launch (ETX_PDL=0)");
    // the GEMM path the model assumes (kernels/gemm.h: ETX_GEMM, else tensor cores)
    const int tc = etx_gemm_cost(1, 8, 16, 0, 0, 132).tensor;
    printf("time per op = launches x launch + max(DRAM bytes / bandwidth, L2 bytes / L2 bandwidth, FLOPs / rate) / "
           "min(1, working blocks / (per_sm x SMs)), per_sm 2, or 1 for the one-block-per-SM kernels (the tiled GEMM, "
           "16-warp GEMM blocks); a small projection's L2 prefetch of later weights (ETX_PREFETCH=0: none) is in its MB "
           "moved and costs time only past max(its own time, all its DRAM bytes / bandwidth), and those weights come "
           "from L2 in the op that reads them; the GEMMs run on %s; floor = every weight once + the KV cache + the "
           "logits written and read, at the bandwidth\n",
           tc ? "tensor cores (mma.sync: operands from L2 at 16 FLOPs per L2 byte up to 32 rows, through shared memory "
                "at 44-85 above: bound by L2 there, not by the datasheet's FLOP/s)"
              : "CUDA cores (fp32 FMA; ETX_GEMM=cuda-cores)");
    static CudaStepPrediction p;
    for (int bi = 0; bi < n_batches; bi++)
        for (int k = 0; k < c->n_kinds; k++) {
            if (c->kinds[k] == ETX_POLICY_SAMPLE) continue; // as greedy for the plan
            const int metrics = c->kinds[k] == ETX_POLICY_ENTROPIX;
            if (cuda_predict_decode_step(&d, batches[bi], ctx, metrics, card, &p) != 0) {
                fprintf(stderr, "etx bench: --plan: %d layers (at most 128)\n", d.n_layers);
                return 2;
            }
            print_step(stdout, &p, card, batches[bi], ctx, metrics);
        }
    return 0;
}
#else
int bench_plan(const BenchConfig* c) {
    (void)c;
    fprintf(stderr, "etx bench: --plan needs the CUDA backend, which this build does not have (no nvcc)\n");
    return 2;
}
#endif
