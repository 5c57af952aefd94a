/*
 * cuda_backend.h — the CUDA backend's device state (struct Backend, CudaBackend) shared by its
 * three parts: cuda_weights.c (the model uploaded as bf16, fused projections), cuda_forward.c
 * (the layers over a set of token rows) and cuda_backend.c (the BackendOps the engine
 * calls: create, step, logits, ...). Plain C11 over the kernels' C launchers
 * (kernels/<op>.h) and kernels/device.h, so the same files run natively and under the SIMT
 * emulator (ETX_SIMT).
 *
 * Decode graphs: natively, each padded decode batch size (a power of two up to
 * max_batch) is captured once as a CUDA graph (embedding .. LM head into the staging rows)
 * and replayed; the rows, tables and lengths it reads live in fixed device buffers that
 * are refreshed before each replay (on the backend's stream, like every copy of a step).
 * The first batch of a size runs eagerly first (the warm-up: kernels loaded, cuBLAS set
 * up, outside any capture), then is captured; a failure inside a capture ends it without
 * a graph, and the backend says so once and runs eagerly from then on.
 * A decode-only step whose pick p is decode row p (the steady state, and every
 * multi-step call) puts the sampling of its picks (vocabulary pass, attention signals,
 * policy) into the same graph, padded to the same size with greedy picks on the padding
 * rows, whose tokens nobody reads: one graph launch per step instead of one plus 3-4
 * kernel launches.
 * ETX_CUDA_GRAPHS=0 in the environment turns graphs off; under the emulator
 * ETX_CUDA_GRAPHS=1 turns them on: the emulator's capture records and its graph launch
 * replays the recording, as natively (kernels/device.h), which is how the tests cover
 * the padding, the warm-up, the sampling inside the graph and a failed capture.
 *
 * Head padding: the attention kernels take head_dim 64 or 128 only. A model with a smaller
 * (even) head_dim runs with heads padded to hdp = 64 (or 128): in every head, real
 * element j < hd/2 sits at j and j >= hd/2 at hdp/2 + j - hd/2 (so RoPE's rotate-half
 * pairs stay pairs), the padding is zero in wq, wk, wv rows and wo columns, and q is scaled
 * by sqrt(hdp / hd) so the kernels' scale hdp^-0.5 gives the model's hd^-0.5 scores: folded
 * into wq (and bq), or, for a model with QK-norm (which would undo a scale of its input),
 * into the q_norm weights (cuda_weights.c has the math).
 */
#ifndef ETX_CUDA_BACKEND_H
#define ETX_CUDA_BACKEND_H

#include "advance.h"
#include "attention.h"
#include "attn_metrics.h"
#include "cuda/cuda_plan.h"
#include "engine/backend.h"
#include "policy_step.h"
#include "vocab_pass.h"

// Learned policy networks one backend holds (etx_learned_register ids 1..CUDA_MAX_NETS):
// a fixed table, so the policy kernel's pointer never moves (~23 KB each).
#define CUDA_MAX_NETS 16

typedef struct {
    float* attn_norm;  // (dim)
    float* ffn_norm;   // (dim)
    etx_bf16* wqkv;    // (q_dim + 2 kv_dim, dim): [wq * qscale; wk; wv], heads padded (cuda_weights.c)
    float* bqkv;       // (q_dim + 2 kv_dim): [bq * qscale; bk; bv] padded like wqkv; NULL without biases
    float* q_norm;     // (hdp): q_norm * sqrt(hdp/hd), padded; NULL without QK-norm
    float* k_norm;     // (hdp): k_norm, padded; NULL without QK-norm
    etx_bf16* wo;      // (dim, q_dim), columns padded
    etx_bf16* wgu;     // (2 hidden, dim): w_gate and w_up rows interleaved (2u: gate u, 2u + 1: up u)
    etx_bf16* wdown;   // (dim, hidden)
    etx_bf16* k_pool;  // (kv_blocks, block_size, n_kv_heads, hdp)
    etx_bf16* v_pool;  // (kv_blocks, block_size, n_kv_heads, hdp)
} CudaLayer;

// One forward's rows and where their results go (cuda_forward.c).
typedef struct {
    int n;                      // rows: decode tokens (one per sequence) and prefill positions alike
    const int32_t* d_tokens;    // (n) device
    const int32_t* d_row_seq;   // (n) device: block table row of each row
    const int32_t* d_row_pos;   // (n) device: position of each row (-1: a padding row)
    const int32_t* d_table;     // (rows of the table, max_blocks) device
    CudaLayer* kv;              // K/V pools per layer: the backend's, or logits()'s private ones
    float* scores;              // NULL, or the last layer's capture (.., n_heads, max_seq_len)
    const int32_t* d_cap_row;   // (n) device: each row's capture row (-1: none); NULL: row r -> r
    int head_first;             // LM head from this row on (rows head_first .. n - 1)
    int decode;                 // 1: every row is the next token of its own sequence (the
                                // decode batch: RoPE and the KV append inside attention)
    float* logits;              // NULL (no LM head), or ((n - head_first), vocab)
} CudaRows;

// ETX_CUDA_PROFILE=1: every op of the plan timed with events (synchronising after each:
// graphs off), summed per op name over the layers, printed to stderr when the backend is
// freed, beside nothing else: `etx bench --plan` gives the predictions to set them against.
typedef struct {
    char name[64];
    long long calls;
    double ms;
} CudaProfRow;
typedef struct {
    CudaProfRow rows[32];
    int n;
    void *ev0, *ev1;
} CudaProfile;

// The CUDA backend's definition of the engine's opaque Backend (engine/backend.h).
typedef struct Backend CudaBackend;
struct Backend {
    int gpu; // the device (cudaSetDevice index), made current at every entry point
    const etx_model* m;
    BackendConfig cfg;
    int dim, hidden, vocab, n_layers;
    int hd, hdp;                 // the model's head_dim, the padded one the kernels see
    int q_dim, kv_dim, qkv_dim;  // padded: n_heads * hdp, n_kv_heads * hdp, q_dim + 2 kv_dim
    int max_rows;                // max(max_batch, max_chunk)
    float eps;
    EtxAttnShape shape;          // padded head_dim; max_blocks = ceil(max_seq_len / block_size)
    CudaDims dims;               // the sizes the launch plan reads (cuda_plan.h)
    void* stream;                // every launch goes here (NULL: the default stream, emulator)
    int pad_decode;              // 1: decode batches padded to a power of two (graph mode)
    int use_graphs;              // 1: padded decode batches replay a captured CUDA graph
    int capture_failures;        // captures that failed (then use_graphs = 0)
    CudaProfile* prof;           // ETX_CUDA_PROFILE=1, else NULL
    void** graphs;               // (max_batch + 1) executable decode graph per padded size, or NULL
    void** sample_graphs;        // ((max_batch + 1) * 4) the same with the sampling of its picks:
                                 // slot 4 size + 2 metrics + fallback (sampling_in_graph)
    size_t dev_bytes;            // device memory allocated (for messages)
    size_t weight_bytes;         // of which weights a decode step reads (not the embedding
                                 // table unless it is the tied LM head)

    // model (cuda_weights.c)
    CudaLayer* layers;           // (n_layers)
    etx_bf16* emb;               // (vocab, dim)
    etx_bf16* lm_head;           // (vocab, dim); == emb when tied
    float* final_norm;           // (dim)
    float* inv_freq;             // (hdp / 2) padded RoPE frequencies (0 beyond hd / 2)
    int32_t* eos_ids;            // (n_eos)
    int n_eos;

    // activations, max_rows rows (x, xb, delta: max_batch more, where the prefill picks'
    // last rows are gathered for one LM-head GEMM)
    float* x;                    // (max_rows + max_batch, dim) residual stream
    etx_bf16* xb;                // (max_rows + max_batch, dim) normed GEMM input
    float* qkv;                  // (max_rows, qkv_dim)
    float* q;                    // (max_rows, q_dim) roped queries
    etx_bf16* att;               // (max_rows, q_dim) attention output
    float* delta;                // (max_rows + max_batch, dim) O / down projection output (residual delta)
    float* gemm_ws;              // GEMM workspace (cuda_gemm_ws_bytes): slice sums; CUDA-core gate/up rows
    size_t gemm_ws_bytes;
    etx_bf16* hb;                // (max_rows, hidden) swiglu output
    float* attn_ws;              // attention split workspace for attn_ws_rows rows (NULL: one split)
    int attn_ws_rows;            // rows per attention launch (prefill rows beyond run as more launches)

    // rows and tables
    int32_t* d_tokens;           // (max_rows)
    int32_t* d_row_seq;          // (max_rows)
    int32_t* d_row_pos;          // (max_rows)
    int32_t* d_cap_row;          // (max_rows) prefill: each row's score capture row, or -1
    int32_t* d_head_rows;        // (max_batch) prefill: the rows whose LM head runs (gathered)
    int32_t* h_head_rows;        // (max_batch) host staging
    int step_heads;              // prefill picks' head rows used so far in this step
    int32_t* d_table;            // (max_batch, max_blocks)
    etx_bf16** d_kv_pools;       // (2 n_layers) device: layer l's K pool at 2l, its V pool at 2l + 1
    int32_t* d_copies;           // (copies_cap, 2) copy-on-write (src, dst) block pairs of a step
    int32_t* h_copies;           // (copies_cap, 2) host staging
    int copies_cap;              // pairs the two hold (grown on demand)
    int32_t *h_tokens, *h_row_seq, *h_row_pos, *h_cap_row, *h_table; // host staging, same shapes
    unsigned char* stage;        // (stage_cap) pinned arena the uploads are sent from (cuda_stage.c); NULL: pageable
    size_t stage_cap, stage_used; // its bytes, and those queued since the stream last synchronised
    long long stage_waits;       // times a full arena waited for the stream

    // sampling, max_batch picks
    // Logits and captured scores stay where the forward writes them: rows [0, max_batch)
    // hold the decode batch's rows (row r: decode row r; a captured graph writes there),
    // rows [max_batch, 2 max_batch) the prefill picks' (pick p: row max_batch + p); the
    // sampling kernels read pick p at row pick_row[p] (no copy per pick).
    float* logits;               // (2 max_batch, vocab)
    float* scores;               // (2 max_batch, n_heads, max_seq_len)
    int32_t* d_pick_row;         // (max_batch) row of logits and scores of each pick
    int32_t* h_pick_row;         // (max_batch) host copy, as last uploaded
    EtxVocabStats* stats;        // (max_batch)
    PolicyCandidate* cand;       // (max_batch, ETX_TOPK)
    void* vp_scratch;            // etx_vocab_pass_scratch_bytes(max_batch)
    EtxAttnStats* attn;          // (max_batch)
    void* am_scratch;            // etx_attn_metrics_scratch_bytes(max_batch, n_heads, max_seq_len)
    int32_t* d_n_pos;            // (max_batch) positions of each pick's capture (0: no metrics)
    int32_t* d_window;           // (max_batch)
    etx_policy* d_policies;      // (max_batch)
    etx_learned_net* d_nets;     // (CUDA_MAX_NETS) the learned policies' networks, id i at i - 1
    uint32_t nets_up;            // networks uploaded so far (ids 1 .. nets_up)
    EtxSeqState* d_states;       // (max_batch)
    DSliderState* d_ds;          // (max_batch) the dslider picks' states (BackendPick.dslider)
    DSliderState* h_ds;          // (max_batch) host staging
    void* pol_scratch;           // etx_policy_scratch_bytes(max_batch, vocab)
    int32_t* d_next;             // (max_batch) sampled tokens
    int32_t* d_done;             // (max_batch) done flags (not downloaded)
    etx_trace_record* d_trace;   // (max_batch) when cfg.trace
    etx_policy* h_policies;      // (max_batch) host staging
    EtxSeqState* h_states;       // (max_batch)
    int32_t *h_n_pos, *h_window, *h_next; // (max_batch)
    int fallback;                // 1: a pick of the step may need the policy's exact fallback

    int32_t* d_ring;             // (ring_steps, max_batch) tokens of a multi-step call, step-major
    etx_trace_record* d_ring_trace; // (ring_steps, max_batch) their trace records (cfg.trace)
    int ring_steps;              // steps the rings hold (allocated on the first multi-step call)

    int last_picks;              // picks of the last step (rows of logits the test accessor reads)
    long long d2h;               // bytes step() copied device -> host

    // tensor parallelism (cuda_tp.c). This backend is shard `shard` of `tp` (1: the whole
    // model): query heads h0 .. h0 + shape.n_heads - 1, KV heads kvh0 .., hidden units
    // f0 .. f0 + hidden - 1 and the LM head's rows vocab0 .. vocab0 + vocab - 1 (the sizes
    // above are the shard's). Shard 0 is the backend the engine holds; it drives the others.
    int tp, shard;
    int vocab_all;               // the model's vocabulary (token ids, the embedding table)
    int vocab0, h0, kvh0, f0;
    CudaBackend** shards;        // (tp) shard 0 with tp > 1: every shard, shards[0] == this; else NULL
    struct EtxComm* comm;        // shard 0 with tp > 1
    EtxVocabPart* tp_part;       // (max_batch) tp > 1: this shard's vocabulary-pass parts
    EtxVocabPart* tp_parts;      // (tp, max_batch) shard 0: every shard's, gathered
    void* am_heads;              // tp > 1: this shard's attention-signal records of its heads (attn_metrics.h)
    double* am_psum;             // tp > 1: (max_batch, max_seq_len) per position sum of P over heads
    double* am_dev;              // tp > 1: (max_batch, chunks) per chunk sum of |P - mean| over its heads
    void* am_heads_all;          // shard 0: every shard's records, shard-major
    double* am_dev_all;          // shard 0: every shard's chunk sums, shard-major
    float* tp_logits;            // (max_batch, vocab_all) shard 0: the picks' whole rows (exact fallback only)
    float* tp_pause_logit;       // (max_batch) shard 0: each pick's pause-token logit
    int32_t* d_pause;            // (max_batch) tp > 1: each pick's pause token (-1: none)
    int32_t* h_pause;            // (max_batch) host staging
    CudaLayer* tmp_kv;           // logits(): this shard's private K/V blocks during the call
    float* tmp_all;              // logits(): this shard's logits of a chunk's positions
};

// Shard s of b (b itself when b is not tensor-parallel: tp 1, s 0).
static inline CudaBackend* cuda_shard(CudaBackend* b, int s) { return b->shards ? b->shards[s] : b; }

// cuda_backend.c: one shard of a model (tp == 1: the whole of it) on device cfg->gpu +
// shard, with its own stream, weights, K/V pools and buffers.
etx_status cuda_create_shard(const etx_model* m, const BackendConfig* cfg, int shard, CudaBackend** out);
void cuda_destroy_shard(CudaBackend* b);

// Whether policy p may draw beyond the ETX_TOPK candidates of the vocabulary pass, so
// that its pick may need the policy step's exact fallback over the whole row (top_k 0
// or above ETX_TOPK, on a vocabulary larger than ETX_TOPK); conservative: 1 when unsure.
// cuda_tp.c; the backend launches the fallback kernel only when some pick may.
int cuda_policy_may_need_full_row(const etx_policy* p, int vocab);

// cuda_stage.c: the pinned staging arena of the per-step uploads (tp 1; else, or without
// pinned memory, uploads stay pageable). cuda_stage_up copies src into the arena and sends
// it from there on b's stream; cuda_stage_synced says the stream has just been
// synchronised, so the whole arena may be reused.
void cuda_stage_create(CudaBackend* b);
void cuda_stage_free(CudaBackend* b);
void cuda_stage_up(CudaBackend* b, void* dst, const void* src, size_t bytes);
void cuda_stage_synced(CudaBackend* b);

// cuda_tp.c, tensor parallelism (cfg->tp > 1): the shards, the communicator and shard 0's
// gathering buffers; shard 0 returned. Everything else here works on any backend, tp 1
// included (then it is the plain single-device path).
etx_status cuda_tp_create(const etx_model* m, const BackendConfig* cfg, CudaBackend** out);
void cuda_tp_destroy(CudaBackend* b);
// Host bytes to the device buffer dst of b (one of its row, table or pick buffers), and
// to the same buffer of every other shard; asynchronous (src may be reused at once: tp 1
// sends a copy from the staging arena, shards copy from pageable memory).
void cuda_up(CudaBackend* b, void* dst, const void* src, size_t bytes);
// Runs ops over r: on every shard in turn, op by op, the partial outputs of the O and
// down projections all-reduced after their GEMMs (tp 1: cuda_exec_op on b).
void cuda_run_ops(CudaBackend* b, const CudaRows* r, const CudaOp* ops, int n_ops);
// Sampling with tp > 1 (cuda_sample's): each shard's vocabulary pass over its slice, the
// parts merged on shard 0, the attention signals merged across the head shards, the
// picks' whole logits rows only when a policy may need the exact fallback, then the policy.
void cuda_tp_sample(CudaBackend* b, int np, int metrics);
// d_next of shard 0 to every other shard (a multi-step call's next inputs).
void cuda_tp_share_next(CudaBackend* b, int np);
// Row `row` of the logits buffer `which` (b->logits or b->tmp_all) of every shard,
// assembled into out (vocab_all floats).
void cuda_tp_download_row(CudaBackend* b, const float* which, int row, float* out);

// cuda_weights.c: uploads the model (weights, norms, RoPE frequencies); counts bytes in
// b->dev_bytes. Needs b's sizes filled. Fails with ETX_ERR_NOMEM naming the tensor.
etx_status cuda_upload_model(CudaBackend* b);
void cuda_free_model(CudaBackend* b);
// K/V pools of n_blocks blocks for every layer, into kv[l].k_pool / v_pool.
etx_status cuda_alloc_kv(CudaBackend* b, CudaLayer* kv, int n_blocks);
void cuda_free_kv(CudaBackend* b, CudaLayer* kv);
// Device memory with a message naming `what` and the size when there is none.
etx_status cuda_alloc(CudaBackend* b, void** p, size_t bytes, const char* what);

// cuda_forward.c, the plan's executor: embedding, every layer and (r->logits) the final
// norm and LM head.
void cuda_forward_rows(CudaBackend* b, const CudaRows* r);
// One op of a plan (r: the rows of a forward; NULL for sampling ops), timed when
// profiling (cuda_run_op runs it; cuda_exec_op is what the plan loops call).
void cuda_run_op(CudaBackend* b, const CudaRows* r, const CudaOp* op);
void cuda_exec_op(CudaBackend* b, const CudaRows* r, const CudaOp* op);
// The profile's table to stderr (nothing without ETX_CUDA_PROFILE=1).
void cuda_profile_print(const CudaBackend* b);
// Sampling of the picks 0 .. np - 1 (their logits, scores, policies and states already on
// the device): the vocabulary pass, the attention metrics when `metrics`, the policy;
// tokens into d_next (and trace records into d_trace).
void cuda_sample(CudaBackend* b, int np, int metrics);
// The final norm (adding the last down projection) and LM head of rows row0 .. row0 + n - 1
// of the last cuda_forward_rows, into logits (n, vocab).
void cuda_forward_head(CudaBackend* b, int row0, int n, float* logits);
// The same for the n rows listed in d_head_rows (already uploaded), gathered first to
// rows max_rows .. max_rows + n - 1: one LM-head GEMM for them all.
void cuda_forward_gathered_head(CudaBackend* b, int n, float* logits);

// Test-only (tests/cuda/test_cuda_backend.c): the logits rows of the last step's picks,
// (n_picks, vocab), downloaded outside the d2h_bytes count.
etx_status cuda_backend_test_logits(CudaBackend* b, float* out, int n_picks);
// Test-only: the last step's picks' last-layer score capture, (n_picks, n_heads, max_seq_len)
// (rows of picks that needed no metrics hold stale values).
etx_status cuda_backend_test_scores(CudaBackend* b, float* out, int n_picks);

// The KV pool sizing of BackendOps.kv_budget for a device with free_bytes free of
// total_bytes: bf16 block bytes, and the free memory less the plan of cfg without a pool
// and the headroom create() keeps (0 when nothing is left). The op passes the device's
// cudaMemGetInfo; tests pass made-up values.
void cuda_kv_budget_for(const etx_model* m, const BackendConfig* cfg, double free_bytes, double total_bytes,
                        double* block_bytes, double* budget_bytes);

// Measures copy bandwidth and bf16 GEMM FLOP/s (cuda_probe.c; BackendOps.measure).
etx_status cuda_measure(int n_threads, int quick, etx_hw_limits* out);

#endif // ETX_CUDA_BACKEND_H
