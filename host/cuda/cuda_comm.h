/*
 * cuda_comm.h — the communicator of tensor parallelism (--tp): the few collectives the
 * sharded CUDA backend needs between the N shards of one model in one process, each shard
 * on its own device with its own stream.
 *
 *   allreduce_sum: every shard's buffer replaced by the element-wise sum over the shards
 *                  (the partial outputs of the O and down projections, which split their
 *                  input columns across the shards; in double, the attention signals'
 *                  per-position sums of probability over each shard's heads);
 *   copy:          point-to-point copies between shards, in one group (the vocabulary
 *                  pass's per-shard statistics and candidates and the attention signals'
 *                  per-head records to shard 0, for the rare exact fallback the picks'
 *                  logits slices; the sampled tokens back to every shard).
 *
 * Two implementations behind one interface:
 *   - NCCL (natively, when etx is built with it: ETX_HAVE_NCCL): one communicator per
 *     device from ncclCommInitAll, every call a group launched on the shards' streams, so
 *     it is ordered with the kernels around it and nothing waits on the host. NCCL's sum
 *     order is its own (ring or tree, by topology): TP results equal TP 1 up to bf16
 *     rounding, not bit for bit.
 *   - emulated (the SIMT emulator build, where device memory is host memory): N emulated
 *     devices in one process; the sum is taken in shard order, s = ((b0 + b1) + b2) + ...,
 *     for every element, the same bits every run. This is what CI runs.
 */
#ifndef ETX_CUDA_COMM_H
#define ETX_CUDA_COMM_H

#include <stddef.h>

#include "etx/etx.h"

typedef struct EtxComm EtxComm;

// One copy of a group: bytes from src on shard src_shard to dst on shard dst_shard.
typedef struct {
    int src_shard, dst_shard;
    const void* src;
    void* dst;
    size_t bytes;
} EtxCommCopy;

// A communicator over n shards, shard s on device devices[s] issuing on streams[s] (a
// cudaStream_t; NULL: the default stream). Fails with a message naming why (no NCCL in
// this build, NCCL's error).
etx_status etx_comm_create(int n, const int* devices, void* const* streams, EtxComm** out);
void etx_comm_free(EtxComm* c);
// "nccl" or "emulated (sums in shard order)".
const char* etx_comm_name(const EtxComm* c);
// bufs[s] (count floats on shard s) <- sum over the shards, on every shard.
void etx_comm_allreduce_sum(EtxComm* c, float* const* bufs, size_t count);
// The same in double (the attention signals' per-position sums).
void etx_comm_allreduce_sum_f64(EtxComm* c, double* const* bufs, size_t count);
// The n copies, in one group; regions must not overlap.
void etx_comm_copy(EtxComm* c, const EtxCommCopy* x, int n);

#endif // ETX_CUDA_COMM_H
