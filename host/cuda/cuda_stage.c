/*
 * cuda_stage.c — the CUDA backend's pinned staging arena for what it uploads every step
 * (block tables, tokens, positions, the picks' rows, policies and states, copy-on-write
 * pairs).
 *
 * Why: cudaMemcpyAsync from pageable host memory is not asynchronous. CUDA first waits
 * for the stream, then copies through its own staging buffer. So every upload of a step
 * waited for the device to drain, about ten per step. Worse, the picks were uploaded
 * after the decode graph was launched, so the device idled between the forward and the
 * sampling while the host copied. From pinned memory the copy is truly asynchronous: the
 * host queues a step's uploads and launches back to back and waits once, for the tokens.
 *
 * The hazard: an asynchronous copy reads its pinned source when the stream reaches it,
 * so the source may not change until the stream has been synchronised. The backend's
 * staging buffers (h_tokens, h_table, ...) are rewritten between the prefill groups of
 * one step, so they cannot be the sources. Instead each upload copies its bytes into the
 * next free region of this arena and sends them from there; a region is reused only after
 * a synchronisation: when the arena is full (it then waits for the stream and starts
 * over), and after the step's final download, which has waited for the stream anyway.
 * The emulator checks the rule: a pinned source rewritten before its stream is
 * synchronised aborts (tests/simt/simt.cpp, tests/kernels/test_selftest.c).
 *
 * Only a backend that is the whole model (tp 1) has an arena. Tensor-parallel shards
 * upload from pageable memory as before: one host buffer feeds several devices' streams,
 * and the arena's reuse rule would need every shard synchronised (not done; noted in
 * cuda_tp.c). Without pinned memory (cudaMallocHost failed) the backend falls back to
 * pageable uploads too; the results are the same either way.
 */
#include <string.h>

#include "cuda/cuda_backend.h"
#include "device.h"

// Bytes one decode step of max_batch rows and picks uploads at most, plus one prefill
// group of max_rows rows (the rest of a step's groups wrap around the arena).
static size_t step_upload_bound(const CudaBackend* b) {
    const size_t mb = (size_t)b->cfg.max_batch, rows = (size_t)b->max_rows, blocks = (size_t)b->shape.max_blocks;
    const size_t decode = mb * (3 * 4 + blocks * 4);
    const size_t picks = mb * (sizeof(etx_policy) + sizeof(EtxSeqState) + sizeof(DSliderState) + 5 * 4);
    const size_t prefill = rows * 4 * 4 + mb * blocks * 4 + mb * 4;
    const size_t copies = mb * 2 * 4 * 4;
    return decode + picks + prefill + copies;
}

void cuda_stage_create(CudaBackend* b) {
    b->stage = NULL;
    b->stage_cap = b->stage_used = 0;
    if (b->cfg.tp > 1) return; // shards upload from pageable memory (above)
    size_t cap = 2 * step_upload_bound(b);
    if (cap < ((size_t)64 << 10)) cap = (size_t)64 << 10;
    b->stage = etx_dev_host_alloc(cap);
    if (b->stage) b->stage_cap = cap;
}

void cuda_stage_free(CudaBackend* b) {
    etx_dev_host_free(b->stage);
    b->stage = NULL;
    b->stage_cap = b->stage_used = 0;
}

void cuda_stage_up(CudaBackend* b, void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    if (!b->stage || bytes > b->stage_cap) { // no arena, or too large for it: pageable
        etx_dev_upload_on(dst, src, bytes, b->stream);
        return;
    }
    size_t at = (b->stage_used + 15) & ~(size_t)15; // 16-byte aligned regions
    if (at + bytes > b->stage_cap) {                 // full: reuse only what the device has read
        etx_dev_stream_sync(b->stream);
        b->stage_waits++;
        at = 0;
    }
    memcpy(b->stage + at, src, bytes);
    etx_dev_upload_on(dst, b->stage + at, bytes, b->stream);
    b->stage_used = at + bytes;
}

void cuda_stage_synced(CudaBackend* b) { b->stage_used = 0; }
