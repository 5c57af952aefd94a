/*
 * device_backend.h — how the engine reaches a device backend (CUDA) without depending on
 * it: the backend fills a table of operations and registers it when its object files are
 * linked in (host/cuda/, built natively against kernels/ and, for the tests, against the
 * SIMT emulator). The engine keeps requests, the scheduler and the KV block manager on the
 * host either way; a device backend runs the plan's work and the policy on the device
 * and hands back only the sampled tokens (and trace records when tracing).
 */
#ifndef ETX_DEVICE_BACKEND_H
#define ETX_DEVICE_BACKEND_H

#include "etx/etx.h"
#include "engine/kv_blocks.h"
#include "model/model.h"

typedef struct {
    int max_batch;     // sequences per step (decode rows and sampled sequences)
    int max_seq_len;   // positions per sequence
    int max_chunk;     // prefill chunk length (rows of one prefill work)
    int kv_blocks;     // KV pool blocks
    int kv_block_size; // positions per block
    int trace;         // 1: fill DevicePick.trace
} DeviceBackendConfig;

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
} DeviceWork;

// One sampled sequence: what the policy reads, and what comes back.
typedef struct {
    const etx_policy* policy;
    uint64_t key;           // the request's random stream
    uint32_t step;          // tokens generated so far (Philox counter)
    int32_t prev_token;     // last token (prompt's last at step 0)
    int32_t pause_token;    // entropix pause token (resolved), or -1
    int request_id;         // for the trace record
    int32_t token;          // out: the next token
    etx_trace_record trace; // out (config.trace): as the CPU engine records it
} DevicePick;

typedef struct {
    const BlockCopy* copies; // (n_copies) copy-on-write copies, done before any work
    int n_copies;
    const DeviceWork* work;  // (n_work)
    int n_work;
    DevicePick* picks;       // (n_picks)
    int n_picks;
} DeviceStep;

typedef struct DeviceBackend DeviceBackend;

typedef struct {
    const char* name;       // e.g. "cuda" or "cuda (SIMT emulator)"
    // 1 when a device can run kernels now (the emulator: always)
    int (*available)(void);
    // the device's name, for messages and --stats
    const char* (*device_name)(void);
    etx_status (*create)(const etx_model* m, const DeviceBackendConfig* cfg, DeviceBackend** out);
    void (*destroy)(DeviceBackend* b);
    // runs the step: copies, prefill chunks, the decode batch, then for every pick the
    // vocabulary pass, attention metrics and the policy; fills picks[i].token (and .trace)
    etx_status (*step)(DeviceBackend* b, DeviceStep* step);
    // k decode steps with one synchronisation: every work a decode row whose pick is its
    // index, block tables holding pos0 + k positions; the token drawn at step j is row's
    // input at step j + 1 (on the device). tokens: (k, n_picks) out, step-major; trace:
    // (k, n_picks) out when tracing. step->picks describe step 0.
    etx_status (*decode_steps)(DeviceBackend* b, DeviceStep* step, int k, int32_t* tokens, etx_trace_record* trace);
    // logits of ids (no state kept), as etx_engine_logits
    etx_status (*logits)(DeviceBackend* b, const int32_t* ids, int n, int all_positions, float* out);
    // bytes copied device -> host so far by step() (tokens, trace records)
    long long (*d2h_bytes)(const DeviceBackend* b);
    // for benchmarks: weight bytes a decode step reads, K+V bytes per position (all
    // layers), device memory held
    void (*sizes)(const DeviceBackend* b, long long* weight_bytes, long long* kv_bytes_per_position,
                  long long* device_bytes);
    // copy bandwidth (bytes read + written per second) and bf16 GEMM FLOP/s, measured
    // now; quick: small sizes
    etx_status (*measure)(int quick, double* bandwidth, double* gemm_flops);
} DeviceBackendOps;

// The registered CUDA backend, or NULL when this program was linked without one.
const DeviceBackendOps* etx_cuda_backend(void);
// Called by the backend's registration (a constructor in host/cuda/).
void etx_register_cuda_backend(const DeviceBackendOps* ops);

// Where work for device runs: *ops = the CUDA backend (CUDA, or AUTO with a real GPU:
// AUTO never picks the emulator), or NULL for the CPU. An error names why CUDA cannot
// run (no backend in this build, no GPU) or an unknown device.
etx_status device_backend_pick(etx_device device, const DeviceBackendOps** ops);

#endif // ETX_DEVICE_BACKEND_H
