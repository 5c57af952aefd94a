/*
 * backend.h — the one interface between the engine and a device: a table of operations
 * (BackendOps) that every backend fills, the CPU's (host/cpu/cpu_backend.c) and CUDA's
 * (host/cuda/cuda_backend.c, built natively against kernels/ and, for the tests, against
 * the SIMT emulator).
 *
 * The engine keeps requests, the scheduler and the KV block manager on the host. Each
 * step it plans (scheduler.h), describes the plan as a BackendStep (block copies, prefill
 * chunks, decode rows, and the sequences to sample), hands it to the backend, and accepts
 * the tokens (and trace records) that come back. The backend owns everything a forward
 * pass needs: the K/V storage for the blocks the engine hands out, activations, logits,
 * and the policy's evaluation, so that on CUDA nothing but tokens crosses to the host.
 * There is no second pipeline: the CPU backend runs the same step the same way, with the
 * forward pass and the policy (hostdev/policy_math.h, host/policy/sampler.c) on the host.
 *
 * Every backend promises batch invariance: a pick's token depends only on its own
 * sequence (tokens, positions, policy, key, step), never on which other works share the
 * step, their order or count (docs/design.md, "Batch invariance").
 */
#ifndef ETX_BACKEND_H
#define ETX_BACKEND_H

#include "etx/etx.h"
#include "engine/kv_blocks.h"
#include "model/model.h"
#include "policy_dslider.h"

// Positions per KV block, on every backend: at most the CPU's attention tile
// (host/cpu/cpu_ops.h ATT_BLOCK); the CUDA kernels take any size up to it.
#define ETX_MAX_KV_BLOCK_SIZE 512

// What the engine asks of a backend when it creates one.
typedef struct {
    int max_batch;     // sequences per step (decode rows and sampled sequences)
    int max_seq_len;   // positions per sequence
    int max_chunk;     // prefill chunk length (rows of one prefill work): the backend's prefill_chunk
    int kv_blocks;     // KV pool blocks
    int kv_block_size; // positions per block
    int trace;         // 1: fill BackendPick.trace
    int n_threads;     // host threads (CPU backend; 0 = every core)
    int gpu;           // the device (CUDA backend), already checked against device_count
    int tp;            // tensor-parallel shards (CUDA backend) on devices gpu .. gpu + tp - 1;
                       // 0 or 1: none
} BackendConfig;

// One piece of a step, as the scheduler planned it (scheduler.h): n tokens of one
// sequence at positions pos0.. (a prefill chunk), or one decode row (n == 1).
typedef struct {
    int decode;             // 1: decode row (all decode rows of a step run as one batch)
    const int* block_ids;   // (n_block_ids) the sequence's block table; holds pos0 + n positions
    int n_block_ids;
    int pos0;
    int n;
    const int32_t* tokens;  // (n) input tokens
    int pick;               // -1, or the index in the step's picks: the last row is sampled
} BackendWork;

// One sampled sequence: what the policy reads, and what comes back.
typedef struct {
    const etx_policy* policy;
    uint64_t key;           // the request's random stream
    uint32_t step;          // tokens generated so far (Philox counter)
    int32_t prev_token;     // last token (prompt's last at step 0)
    int32_t pause_token;    // entropix pause token (resolved), or -1
    int request_id;         // for the trace record
    DSliderState* dslider;  // dslider: the request's state, updated in place by the pick
                            // (by the last of decode_steps' k picks); NULL otherwise
    int32_t token;          // out: the next token, or < 0: no token, the pick's logits or the
                            // signals its policy reads were not finite (-token is the
                            // PolicyFault, hostdev/policy_math.h); the engine fails the request
    etx_trace_record trace; // out (config.trace): the step's signals and decision
} BackendPick;

typedef struct {
    const BlockCopy* copies; // (n_copies) copy-on-write copies, done before any work
    int n_copies;
    const BackendWork* work; // (n_work)
    int n_work;
    BackendPick* picks;      // (n_picks)
    int n_picks;
} BackendStep;

// A backend's state; each backend defines the struct privately (CpuBackend, CudaBackend).
typedef struct Backend Backend;

typedef struct {
    const char* name;       // "cpu", "cuda" or "cuda (SIMT emulator)"
    int emulated;           // 1: runs device code on the host (the SIMT emulator); AUTO never picks it
    etx_device device;      // what etx_engine_stats.device reports
    int prefill_chunk;      // prompt tokens per prefill work the scheduler plans
    int steps_per_sync;     // decode steps per call when the options leave it to the backend
    // 1 when the backend can run now (the CPU, the emulator: always)
    int (*available)(void);
    // the device's name, for messages and --stats
    const char* (*device_name)(void);
    // devices of this kind visible, and making one current for the calling thread (0, or
    // -1 when there is no such device); NULL on the CPU (one device)
    int (*device_count)(void);
    int (*select_device)(int index);
    const char* (*device_name_of)(int index);
    etx_status (*create)(const etx_model* m, const BackendConfig* cfg, Backend** out);
    void (*destroy)(Backend* b);
    // runs the step: copies, prefill chunks, the decode batch, then for every pick the
    // vocabulary pass, attention metrics and the policy; fills picks[i].token (and .trace)
    etx_status (*step)(Backend* b, BackendStep* step);
    // k decode steps with one synchronisation: every work a decode row whose pick is its
    // index, block tables holding pos0 + k positions; the token drawn at step j is row's
    // input at step j + 1. tokens: (k, n_picks) out, step-major; trace: (k, n_picks) out
    // when tracing. step->picks describe step 0. Tokens equal k calls of step() up to a
    // row's first fault (a negative token); after it the row runs on with token 0 as its
    // input and what it draws is meaningless (the engine stops reading it at the fault).
    etx_status (*decode_steps)(Backend* b, BackendStep* step, int k, int32_t* tokens, etx_trace_record* trace);
    // logits of ids (no state kept), as etx_engine_logits
    etx_status (*logits)(Backend* b, const int32_t* ids, int n, int all_positions, float* out);
    // bytes copied device -> host so far by step() (tokens, trace records); 0 on the CPU
    long long (*d2h_bytes)(const Backend* b);
    // for benchmarks: weight bytes a decode step reads, K+V bytes per position (all
    // layers), device memory held (0 on the CPU)
    void (*sizes)(const Backend* b, long long* weight_bytes, long long* kv_bytes_per_position,
                  long long* device_bytes);
    // KV pool sizing when the options leave it to the engine (kv_blocks_auto): the bytes
    // one block of cfg->kv_block_size positions takes in this backend's storage (K and V
    // of every layer: f32 on the CPU, bf16 on CUDA) and the bytes the pool may take on
    // this machine beside everything else cfg needs (cfg->kv_blocks is ignored): the CPU
    // min(2 GiB, a quarter of free RAM); CUDA the device's free memory less the rest of
    // its plan and a headroom for the context, cuBLAS and the graphs
    void (*kv_budget)(const etx_model* m, const BackendConfig* cfg, double* block_bytes, double* budget_bytes);
    // memory bandwidth and GEMM rate reached now, with how they were measured
    // (etx_measure_hardware); quick: small sizes; n_threads: host threads (CPU)
    etx_status (*measure)(int n_threads, int quick, etx_hw_limits* out);
} BackendOps;

// A step's shape against the backend's configuration, checked by every backend before
// it runs anything: rows and picks within max_batch / max_chunk / max_seq_len, block ids
// and tokens in range, every pick made by exactly one work, copies in range. who names
// the backend in the message ("CPU backend").
etx_status backend_check_step(const char* who, const BackendConfig* c, int vocab, const BackendStep* s);
// And what decode_steps needs beyond that: k >= 1, every work a decode row whose pick is
// its index, room for k positions in the context and in the row's block table.
etx_status backend_check_decode_steps(const char* who, const BackendConfig* c, const BackendStep* s, int k);

// The CPU backend: always linked (host/cpu/cpu_backend.c).
const BackendOps* etx_cpu_backend(void);
// The registered CUDA backend, or NULL when this program was linked without one.
const BackendOps* etx_cuda_backend(void);
// Called by the backend's registration (a constructor in host/cuda/).
void etx_register_cuda_backend(const BackendOps* ops);

// The backend work for device runs on: CPU; CUDA (an error names why it cannot run: no
// backend in this build, no GPU); AUTO: CUDA on a real GPU, else the CPU (never the
// emulator). Unknown devices are an error.
etx_status backend_pick(etx_device device, const BackendOps** ops);

#endif // ETX_BACKEND_H
