/*
 * device.cu — kernels/device.h over the CUDA runtime (nvcc) or the SIMT emulator's
 * runtime subset (ETX_SIMT): the same code for both, except how the device is found.
 *
 * Twin: the emulator's runtime (tests/simt/simt.cpp); tested through every kernel suite,
 * padded batches and graphs by tests/cuda/test_cuda_backend.c test_step_padded (docs/ops.md).
 */
#include "cuda_common.cuh"

#include "device.h"

#ifdef ETX_SIMT
#include <unistd.h>
#endif

extern "C" int etx_dev_available(void) {
#ifdef ETX_SIMT
    return 1;
#else
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); // no driver / no device: not an error for the caller
        return 0;
    }
    return n > 0;
#endif
}

extern "C" const char* etx_dev_name(void) {
    static char name[256];
    cudaDeviceProp prop;
    if (!etx_dev_available() || cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "no device";
    snprintf(name, sizeof name, "%s", prop.name);
    return name;
}

extern "C" void* etx_dev_malloc(size_t bytes) {
    void* p = NULL;
    if (bytes == 0) return NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError(); // out of memory is the caller's to handle
        return NULL;
    }
    return p;
}

extern "C" void etx_dev_free(void* p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

extern "C" void etx_dev_upload(void* dst, const void* src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

extern "C" void etx_dev_download(void* dst, const void* src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

extern "C" void etx_dev_memset(void* p, int value, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemset(p, value, bytes));
}

extern "C" void etx_dev_copy(void* dst, const void* src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

extern "C" void etx_dev_mem_info(size_t* free_bytes, size_t* total_bytes) {
    size_t f = 0, t = 0;
#ifdef ETX_SIMT
    const long page = sysconf(_SC_PAGESIZE), avail = sysconf(_SC_AVPHYS_PAGES), phys = sysconf(_SC_PHYS_PAGES);
    if (page > 0 && avail > 0) f = (size_t)avail * (size_t)page;
    if (page > 0 && phys > 0) t = (size_t)phys * (size_t)page;
#else
    if (!etx_dev_available() || cudaMemGetInfo(&f, &t) != cudaSuccess) {
        (void)cudaGetLastError();
        f = t = 0;
    }
#endif
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
}

extern "C" void* etx_dev_stream_create(void) {
#ifdef ETX_SIMT
    return NULL;
#else
    cudaStream_t s = NULL;
    if (!etx_dev_available() || cudaStreamCreate(&s) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return (void*)s;
#endif
}

extern "C" void etx_dev_stream_destroy(void* stream) {
    if (stream) CUDA_CHECK(cudaStreamDestroy((cudaStream_t)stream));
}

extern "C" int etx_dev_graphs_available(void) {
#ifdef ETX_SIMT
    return 0;
#else
    return etx_dev_available();
#endif
}

extern "C" int etx_dev_capture_begin(void* stream) {
#ifdef ETX_SIMT
    (void)stream;
    return 0;
#else
    if (!stream) return 0; // the legacy default stream cannot be captured
    if (cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return 1;
#endif
}

extern "C" void* etx_dev_capture_end(void* stream) {
#ifdef ETX_SIMT
    (void)stream;
    return NULL;
#else
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)stream, &g);
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return (void*)exec;
#endif
}

extern "C" void etx_dev_graph_launch(void* graph, void* stream) {
#ifdef ETX_SIMT
    (void)graph;
    (void)stream;
    fprintf(stderr, "[etx] etx_dev_graph_launch: the SIMT emulator has no graphs\n");
    abort();
#else
    CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, (cudaStream_t)stream));
#endif
}

extern "C" void etx_dev_graph_destroy(void* graph) {
#ifndef ETX_SIMT
    if (graph) CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
#else
    (void)graph;
#endif
}

extern "C" void etx_dev_sync(void) {
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
}
