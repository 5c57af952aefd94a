/*
 * cuda_plan.h — the CUDA backend's launch plan, and the cost model that reads it.
 *
 * A step is planned once as a list of ops (embedding, per layer the norms, GEMMs, the
 * biases and QK-norm of Qwen models, RoPE + KV append, attention, then the final norm and
 * LM head, the norms folded into the GEMMs and RoPE into attention where the kernels can
 * take them; for sampling the
 * vocabulary pass, the attention metrics and the policy). cuda_forward.c executes exactly
 * this list, op by op (cuda_run_op); the cost model walks the same list and asks each
 * kernel's launcher for its napkin math (kernels/cost.h: etx_<op>_cost), so the
 * prediction cannot drift from what runs: a kernel added to the step is an op here or it
 * does not run.
 *
 * The cost model turns an op's EtxCost into time on a card (a datasheet: bandwidth,
 * FLOP/s, SMs, L2, launch overhead; and the L2 load bandwidth, calibrated) as
 *   t = launches * t_launch + max(bytes / BW, l2 / L2BW, flops / FLOPS) / min(1, busy / (per_sm SMs)),
 * i.e. an op is bound by its DRAM traffic, its L2 traffic or its arithmetic, and a grid
 * with fewer working blocks than per_sm per SM (2; 1 for a kernel that fills an SM with
 * one block: the tiled GEMM, 16-warp GEMM blocks) gets that fraction of the card. An L2
 * prefetch the op issues for a later one (EtxCost.pf, cuda_plan_prefetch) raises the
 * second term to (bytes + pf) / BW when that is longer (it streams while the grid waits
 * on its own loads, not limited by the fill), and the op that reads those weights counts
 * them as L2 traffic only. The floor of a decode
 * step is the bytes it must move (every weight once, the KV cache of every row, the
 * logits written and read) at the card's bandwidth. Predictions, not measurements:
 * benchmarks/gpu_check.sh records measured per-op times beside them on a GPU
 * (`etx bench --plan` prints the table).
 */
#ifndef ETX_CUDA_PLAN_H
#define ETX_CUDA_PLAN_H

#include <stddef.h>

#include "attention.h" // EtxAttnShape
#include "cost.h"

// The sizes the plan and its costs depend on (cuda_dims_of for a backend; cuda_dims_for a
// model's configuration without one).
typedef struct {
    int dim, hidden, vocab, n_layers;
    int n_heads, n_kv_heads, hd, hdp; // hdp: head_dim padded to what the kernels take (64, 128)
    int q_dim, kv_dim, qkv_dim;       // padded: n_heads hdp, n_kv_heads hdp, q_dim + 2 kv_dim
    int max_seq_len;                  // the configured context (attention splits)
    int block_size;                   // positions per KV block
    int tied;                         // 1: the LM head is the embedding table
    int qkv_bias;                     // 1: Q/K/V projection biases (qwen2)
    int qk_norm;                      // 1: per-head RMSNorm of q and k before RoPE (qwen3)
    int fused_residual;               // 1 (one GPU): the O and down projections add into the
                                      // residual stream x (etx_gemm_bf16_add), and a norm with
                                      // nothing to add is folded into the projection after it
                                      // where etx_gemm_rmsnorm_fuses; 0 (tensor parallelism:
                                      // the shards' parts are all-reduced in delta first): the
                                      // projections write delta, the next norm adds it
    size_t gemm_ws_bytes;             // the backend's GEMM workspace (it decides which calls
                                      // split, and so which norms ride on a split reduce); 0
                                      // without a backend: what one built for batches of the
                                      // call's rows would allocate (cuda_plan_ws_bytes)
    int sms;                          // the device's SMs (the L2 prefetch plan sizes itself by
                                      // the grids' fill); 0 without one: 132 (H100/H200)
} CudaDims;

typedef enum {
    CUDA_OP_EMBED,   // x = embedding rows of the tokens
    CUDA_OP_NORM,    // xb = rmsnorm(x (+= delta)) with the layer's or the final norm
    CUDA_OP_GEMM,    // one projection (CudaWeight); gate/up with SwiGLU: hb = silu(gate) * up;
                     // `norm`: of rmsnorm(x) itself (the norm folded in); `residual`: x += it
    CUDA_OP_QKV_PREP, // qkv += biases, per-head RMSNorm of q and k (models with either only)
    CUDA_OP_ROPE_KV, // RoPE of q and k, k and v appended to the cache
    CUDA_OP_ATTN,    // attention of every row over its positions (etx_attn_rows); which 1:
                     // decode rows, RoPE and the KV append folded in (etx_attn_rows_rope)
    CUDA_OP_VOCAB,   // statistics and candidates of each pick's logits row
    CUDA_OP_METRICS, // the entropix attention signals of each pick
    CUDA_OP_POLICY,  // decide, filter and draw each pick's token
    CUDA_OP_GATHER,  // scattered rows of x and delta copied to rows row0 .. row0 + n - 1
} CudaOpKind;

typedef enum { CUDA_W_QKV, CUDA_W_O, CUDA_W_GATE_UP, CUDA_W_DOWN, CUDA_W_LM_HEAD } CudaWeight;
typedef enum { CUDA_NORM_ATTN, CUDA_NORM_FFN, CUDA_NORM_FINAL } CudaNorm;

typedef struct {
    CudaOpKind kind;
    int layer;    // the layer, or -1
    int which;    // CUDA_OP_GEMM: CudaWeight; CUDA_OP_NORM: CudaNorm; CUDA_OP_POLICY: 1 when
                  // the exact fallback kernel is launched (some pick may need it)
    int row0, n;  // the rows it runs on (sampling ops: picks 0 .. n - 1)
    int residual; // CUDA_OP_NORM: adds delta into x first (without fused_residual: all but
                  // layer 0's attention norm); CUDA_OP_GEMM: adds its output into x (the
                  // O and down projections with fused_residual) instead of writing delta
    int capture;  // CUDA_OP_ATTN: captures the scores (the last layer's, when asked);
                  // CUDA_OP_POLICY: reads the attention signals (CUDA_OP_METRICS ran)
    int norm;     // CUDA_OP_GEMM: 1 + the CudaNorm it applies to x first, in the same
                  // launch (etx_gemm_bf16_rmsnorm; xb is not written); 0: it reads xb
    int norm_next; // CUDA_OP_GEMM with `residual`: 1 + the CudaNorm after it (CUDA_NORM_ATTN:
                   // the next layer's), done by its split reduce once x is complete
                   // (etx_gemm_bf16_add_rmsnorm): xb written, no norm op follows; 0: none
    // CUDA_OP_GEMM, the L2 prefetch (cuda_plan_prefetch): this launch also asks L2 for bytes
    // pf_off .. pf_off + pf_bytes of the weight matrix pf_which of layer pf_layer (a later
    // op's), during the DRAM time its own loads leave idle; `prefetched`: bytes of this op's
    // own weights that earlier launches so asked for (it reads them from L2)
    int pf_which, pf_layer;
    size_t pf_off, pf_bytes, prefetched;
    int bias;     // CUDA_OP_GEMM (QKV, models with Q/K/V biases and no QK-norm: qwen2): adds the
                  // layer's bias in its epilogue (etx_gemm_bf16_bias), no qkv_prep op follows
} CudaOp;

// Ops a plan can hold: at most 8 per layer (9 with biases or QK-norm; 5 at batch 1 with
// the fusions) and a few more.
#define CUDA_PLAN_OPS(n_layers) (10 * (n_layers) + 8)

// The forward over n rows: embedding and every layer (the last layer's attention
// capturing scores when `capture`), then when head_n > 0 the final norm and LM head of
// rows head_row0 .. head_row0 + head_n - 1. Writes the ops to ops (room for
// CUDA_PLAN_OPS(d->n_layers)); returns how many.
// decode: every row is the next token of its own sequence (a decode batch), so RoPE and
// the KV append go into the attention launch; else (prefill chunks, whose rows read each
// other's keys) they are their own op before it.
int cuda_plan_forward(const CudaDims* d, int n, int decode, int capture, int head_row0, int head_n, CudaOp* ops);
// The L2 prefetch of a forward's ops (cuda_plan_forward calls it; ETX_PREFETCH=0 in the
// environment turns it off, the A/B of benchmarks/gpu_check.sh). A projection whose grid
// leaves the card's DRAM idle (the one-tile tensor-core kernel with fewer blocks than the
// model's per_sm x SMs: the small projections at batch 1) prefetches the weights of the
// projections after it, in plan order, as many bytes as its idle DRAM time holds at the
// bandwidth — its own DRAM bytes x (1 / fill - 1), at most CUDA_PF_MAX — one contiguous
// range of one matrix per launch. One GPU only (tensor parallelism: none).
#define CUDA_PF_MAX ((size_t)16 << 20)
void cuda_plan_prefetch(const CudaDims* d, CudaOp* ops, int n_ops);
// The final norm and LM head alone, of rows row0 .. row0 + n - 1 (after a forward).
int cuda_plan_head(const CudaDims* d, int row0, int n, CudaOp* ops);
// The LM head of n scattered rows (the step's prefill picks' last rows: the backend's
// head-row list): gathered to rows row0 .. row0 + n - 1, then cuda_plan_head there, so
// one GEMM over the LM head serves them all.
int cuda_plan_gathered_head(const CudaDims* d, int row0, int n, CudaOp* ops);
// Sampling np picks: the vocabulary pass, the attention metrics when `metrics`, the policy
// (with its fallback kernel when `fallback`: some pick's policy may draw beyond the
// candidates, cuda_policy_may_need_full_row).
int cuda_plan_sampling(const CudaDims* d, int np, int metrics, int fallback, CudaOp* ops);

// (in, out) of the projection w.
void cuda_gemm_shape(const CudaDims* d, CudaWeight w, int* in, int* out);
// Bytes of the backend's GEMM workspace for steps of up to max_rows rows, decode batches of
// up to max_batch: the 8 slice sums of a decode batch's widest narrow projection (qkv or
// o / down: the ones whose tiled grid needs the slice split, kernels/gemm.h), and on the
// CUDA-core path (core_swiglu: etx_gemm_swiglu_needs_scratch, which asks the device; the
// cost model passes the path it assumes) the f32 gate/up rows before SwiGLU. The cost
// model assumes the same workspace.
size_t cuda_gemm_ws_bytes(const CudaDims* d, int max_rows, int max_batch, int core_swiglu);
// The GEMM workspace a call of n rows gets: d->gemm_ws_bytes, or without a backend
// cuda_gemm_ws_bytes for batches of n (the plan's fusions and the cost model ask it).
size_t cuda_plan_ws_bytes(const CudaDims* d, int n, int core_swiglu);
// A short name of the op ("L3 gemm o", "final norm", "vocab pass").
const char* cuda_op_name(const CudaOp* op, char* buf, size_t size);

// The sizes of a model's configuration run with max_seq_len and block_size (the
// backend's own: cuda_dims_of in cuda_backend.h).
struct etx_model;
CudaDims cuda_dims_for(const struct etx_model* m, int max_seq_len, int block_size);

// -- cost model

typedef struct {
    const char* name;    // "h100", ...
    const char* what;    // the card and the source of its figures
    double bandwidth;    // DRAM bytes per second
    double fp32_flops;   // CUDA-core f32 FLOP/s (FMA = 2)
    double tensor_flops; // dense bf16 tensor-core FLOP/s
    int sms;             // streaming multiprocessors
    double l2_bytes;     // L2 cache
    double l2_bandwidth; // bytes per second the SMs load from L2 (calibrated, see cuda_cards)
    double launch_s;     // per kernel node of a graph
    double launch_pdl_s; // ... when the node is launched with programmatic dependent launch
                         // (sm_90: its launch overlaps the previous kernel's last wave)
} CudaCard;

// The launch cost per kernel node the model charges on the card: launch_pdl_s, since
// every kernel is launched with PDL on sm_90 (kernels/cuda_common.cuh), unless ETX_PDL=0.
double cuda_card_launch_s(const CudaCard* card);

// The datasheet card of that name ("h100", "h200"), or NULL; cuda_cards lists them.
const CudaCard* cuda_card_find(const char* name);
extern const CudaCard cuda_cards[];
extern const int cuda_n_cards;

// The op's napkin math when every row attends `len` positions.
EtxCost cuda_op_cost(const CudaDims* d, const CudaOp* op, int len, const CudaCard* card);
// Predicted seconds of a cost on the card (the formula above).
double cuda_cost_seconds(const EtxCost* c, const CudaCard* card);
// Bytes a decode step of n sequences at len positions must move at least: every weight
// once, K and V of every position of every row, the logits written and read.
double cuda_floor_bytes(const CudaDims* d, int n, int len);

// One decode step of n sequences at len positions (the forward with the LM head of all
// n rows, then sampling; metrics: entropix's capture and attention signals): its ops
// and, summed, predicted seconds and the floor's.
typedef struct {
    int n_ops;
    CudaOp ops[CUDA_PLAN_OPS(128) + CUDA_PLAN_OPS(0)]; // up to 128 layers
    EtxCost cost[CUDA_PLAN_OPS(128) + CUDA_PLAN_OPS(0)];
    double seconds[CUDA_PLAN_OPS(128) + CUDA_PLAN_OPS(0)];
    double total_s, floor_s;
    int launches;
} CudaStepPrediction;
// 0, or -1 when the model has more than 128 layers.
int cuda_predict_decode_step(const CudaDims* d, int n, int len, int metrics, const CudaCard* card,
                             CudaStepPrediction* out);

#endif // ETX_CUDA_PLAN_H
