/*
 * cuda_comm.c — the tensor-parallel communicator (cuda_comm.h): NCCL natively when built
 * with it, the emulated one under the SIMT emulator, and an error otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cuda/cuda_comm.h"
#include "device.h"

#if defined(ETX_SIMT)
// ---------------------------------------------------------------------------------------
// emulated: device memory is host memory, every launch has finished when its call
// returns, so the collectives are plain loops on the host, in a fixed order

struct EtxComm {
    int n;
};

etx_status etx_comm_create(int n, const int* devices, void* const* streams, EtxComm** out) {
    (void)devices, (void)streams;
    *out = xcalloc(1, sizeof(EtxComm));
    (*out)->n = n;
    return etx_ok();
}

void etx_comm_free(EtxComm* c) { free(c); }

const char* etx_comm_name(const EtxComm* c) {
    (void)c;
    return "emulated (sums in shard order)";
}

void etx_comm_allreduce_sum(EtxComm* c, float* const* bufs, size_t count) {
    for (size_t i = 0; i < count; i++) {
        float s = bufs[0][i];
        for (int k = 1; k < c->n; k++) s += bufs[k][i];
        for (int k = 0; k < c->n; k++) bufs[k][i] = s;
    }
}

void etx_comm_allreduce_sum_f64(EtxComm* c, double* const* bufs, size_t count) {
    for (size_t i = 0; i < count; i++) {
        double s = bufs[0][i];
        for (int k = 1; k < c->n; k++) s += bufs[k][i];
        for (int k = 0; k < c->n; k++) bufs[k][i] = s;
    }
}

void etx_comm_copy(EtxComm* c, const EtxCommCopy* x, int n) {
    (void)c;
    for (int i = 0; i < n; i++)
        if (x[i].bytes) memcpy(x[i].dst, x[i].src, x[i].bytes);
}

#elif defined(ETX_HAVE_NCCL)
// ---------------------------------------------------------------------------------------
// NCCL: one communicator per device, every call a group on the shards' streams. The
// library is opened at run time (dlopen of libnccl.so.2), not linked: etx then starts on
// a machine without NCCL (one GPU, the usual case) and only --tp needs it there.

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

static struct {
    int tried, ok;
    char why[256];
    ncclResult_t (*CommInitAll)(ncclComm_t*, int, const int*);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    const char* (*GetErrorString)(ncclResult_t);
    ncclResult_t (*GroupStart)(void);
    ncclResult_t (*GroupEnd)(void);
    ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*Send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*Recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
} nccl;

// Opens libnccl once; 1 when every entry point was found (else nccl.why says why).
static int nccl_open(void) {
    if (nccl.tried) return nccl.ok;
    nccl.tried = 1;
    void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(nccl.why, sizeof nccl.why, "cannot open libnccl.so.2 (%s)", dlerror());
        return 0;
    }
#define NCCL_SYM(f)                                                                                          \
    if (!(*(void**)&nccl.f = dlsym(h, "nccl" #f))) {                                                          \
        snprintf(nccl.why, sizeof nccl.why, "libnccl has no nccl" #f);                                       \
        return 0;                                                                                            \
    }
    NCCL_SYM(CommInitAll)
    NCCL_SYM(CommDestroy)
    NCCL_SYM(GetErrorString)
    NCCL_SYM(GroupStart)
    NCCL_SYM(GroupEnd)
    NCCL_SYM(AllReduce)
    NCCL_SYM(Send)
    NCCL_SYM(Recv)
#undef NCCL_SYM
    nccl.ok = 1;
    return 1;
}

struct EtxComm {
    int n;
    int devices[64];
    cudaStream_t streams[64];
    ncclComm_t comms[64];
};

// NCCL failures past creation are bugs or a broken machine: they abort naming the call.
#define NCCL_CHECK(call)                                                                                     \
    do {                                                                                                     \
        ncclResult_t r_ = (call);                                                                            \
        if (r_ != ncclSuccess) {                                                                             \
            fprintf(stderr, "[etx] %s at %s:%d: %s\n", #call, __FILE__, __LINE__, nccl.GetErrorString(r_));    \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

etx_status etx_comm_create(int n, const int* devices, void* const* streams, EtxComm** out) {
    *out = NULL;
    if (n < 1 || n > 64) return etx_error(ETX_ERR_INVALID_ARG, "tensor parallelism over %d devices (1..64)", n);
    if (!nccl_open())
        return etx_error(ETX_ERR_UNSUPPORTED, "tensor parallelism needs NCCL: %s", nccl.why);
    EtxComm* c = xcalloc(1, sizeof(EtxComm));
    c->n = n;
    for (int s = 0; s < n; s++) c->devices[s] = devices[s], c->streams[s] = (cudaStream_t)streams[s];
    ncclResult_t r = nccl.CommInitAll(c->comms, n, c->devices);
    if (r != ncclSuccess) {
        free(c);
        return etx_error(ETX_ERR_UNSUPPORTED, "NCCL could not connect the %d devices: %s", n, nccl.GetErrorString(r));
    }
    *out = c;
    return etx_ok();
}

void etx_comm_free(EtxComm* c) {
    if (!c) return;
    for (int s = 0; s < c->n; s++) nccl.CommDestroy(c->comms[s]);
    free(c);
}

const char* etx_comm_name(const EtxComm* c) {
    (void)c;
    return "nccl";
}

void etx_comm_allreduce_sum(EtxComm* c, float* const* bufs, size_t count) {
    NCCL_CHECK(nccl.GroupStart());
    for (int s = 0; s < c->n; s++)
        NCCL_CHECK(nccl.AllReduce(bufs[s], bufs[s], count, ncclFloat, ncclSum, c->comms[s], c->streams[s]));
    NCCL_CHECK(nccl.GroupEnd());
}

void etx_comm_allreduce_sum_f64(EtxComm* c, double* const* bufs, size_t count) {
    NCCL_CHECK(nccl.GroupStart());
    for (int s = 0; s < c->n; s++)
        NCCL_CHECK(nccl.AllReduce(bufs[s], bufs[s], count, ncclDouble, ncclSum, c->comms[s], c->streams[s]));
    NCCL_CHECK(nccl.GroupEnd());
}

void etx_comm_copy(EtxComm* c, const EtxCommCopy* x, int n) {
    // copies within a shard: on its stream, before the group (ordered with its kernels)
    for (int i = 0; i < n; i++)
        if (x[i].bytes && x[i].src_shard == x[i].dst_shard) {
            etx_dev_select(c->devices[x[i].src_shard]);
            etx_dev_copy_on(x[i].dst, x[i].src, x[i].bytes, c->streams[x[i].src_shard]);
        }
    NCCL_CHECK(nccl.GroupStart());
    for (int i = 0; i < n; i++) {
        if (!x[i].bytes || x[i].src_shard == x[i].dst_shard) continue;
        NCCL_CHECK(nccl.Send(x[i].src, x[i].bytes, ncclChar, x[i].dst_shard, c->comms[x[i].src_shard],
                            c->streams[x[i].src_shard]));
        NCCL_CHECK(nccl.Recv(x[i].dst, x[i].bytes, ncclChar, x[i].src_shard, c->comms[x[i].dst_shard],
                            c->streams[x[i].dst_shard]));
    }
    NCCL_CHECK(nccl.GroupEnd());
}

#else
// ---------------------------------------------------------------------------------------
// built without NCCL: tensor parallelism is refused when the backend is created

struct EtxComm {
    int n;
};

etx_status etx_comm_create(int n, const int* devices, void* const* streams, EtxComm** out) {
    (void)n, (void)devices, (void)streams;
    *out = NULL;
    return etx_error(ETX_ERR_UNSUPPORTED,
                     "tensor parallelism needs NCCL, and this etx was built without it (nccl.h and libnccl were "
                     "not found when it was configured)");
}
void etx_comm_free(EtxComm* c) { free(c); }
const char* etx_comm_name(const EtxComm* c) {
    (void)c;
    return "none";
}
void etx_comm_allreduce_sum(EtxComm* c, float* const* bufs, size_t count) { (void)c, (void)bufs, (void)count; }
void etx_comm_allreduce_sum_f64(EtxComm* c, double* const* bufs, size_t count) { (void)c, (void)bufs, (void)count; }
void etx_comm_copy(EtxComm* c, const EtxCommCopy* x, int n) { (void)c, (void)x, (void)n; }
#endif
