/*
 * device.cu — kernels/device.h over the CUDA runtime (nvcc) or the SIMT emulator's
 * runtime subset (ETX_SIMT): the same code for both, except how the device is found.
 *
 * Errors inside a graph capture: CUDA_CHECK (cuda_common.cuh) and the GEMM's cuBLAS check
 * call etx_dev_note_error on a failure; while a capture is open on this thread it keeps
 * the first failure (call, file, line, reason) and returns 1, so the caller goes on and
 * etx_dev_capture_end ends the capture with no graph; otherwise it returns 0 and the
 * check aborts as before.
 *
 * Streams and graphs are the runtime's in both builds: the emulator's stream capture
 * records the launches (ETX_LAUNCH copies their arguments), copies and memsets without
 * running them, and cudaGraphLaunch replays the recording, as a GPU does. (Until
 * 2026-12-05 an emulated capture ran the launches at once and handed back a placeholder
 * that the caller replayed by running its work again: a graph that baked in a stale
 * host value, or was looked up under too coarse a key, passed there.)
 *
 * Twin: the emulator's runtime (tests/simt/simt.cpp); tested through every kernel suite,
 * padded batches and graphs by tests/cuda/test_cuda_backend.c test_step_padded, capture
 * failures by test_capture_error and test_step_graph_capture_fails (docs/ops.md).
 */
#include "cuda_common.cuh"

#include "device.h"

#include <string.h>

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
    int cur = 0;
    if (!etx_dev_available() || cudaGetDevice(&cur) != cudaSuccess) {
        (void)cudaGetLastError();
        return "no device";
    }
    const char* name = etx_dev_name_of(cur);
    return name[0] ? name : "no device";
}

extern "C" int etx_dev_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

// cudaSetDevice checks the index itself (cudaErrorInvalidDevice): no device count asked
// here, as the backend calls this at every step.
extern "C" int etx_dev_select(int index) {
    if (cudaSetDevice(index) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    return 0;
}

// Attribute `attr` of the current device, cached per device index in cache[64] (0: not
// asked yet; devices past 64 are asked every time).
static int dev_attr_cached(int* cache, cudaDeviceAttr attr) {
    int dev = 0, v = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev >= 0 && dev < 64 && cache[dev]) return cache[dev];
    CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
    if (dev >= 0 && dev < 64) cache[dev] = v;
    return v;
}

extern "C" int etx_dev_sm_count(void) {
    static int cache[64];
    return dev_attr_cached(cache, cudaDevAttrMultiProcessorCount);
}

extern "C" int etx_dev_cc_major(void) {
    static int cache[64];
    return dev_attr_cached(cache, cudaDevAttrComputeCapabilityMajor);
}

// Programmatic dependent launch (kernels/cuda_common.cuh): sm_90 and later, unless
// ETX_PDL=0. The emulator answers as an sm_90 device would (it checks every ETX_LAUNCH
// kernel's ETX_PDL_ENTRY whatever this says).
extern "C" int etx_dev_pdl_enabled(void) {
    static int env = -1;
    if (env < 0) {
        const char* e = getenv("ETX_PDL");
        env = !(e && strcmp(e, "0") == 0);
    }
#ifdef ETX_SIMT
    return env;
#else
    return env && etx_dev_cc_major() >= 9;
#endif
}

extern "C" const char* etx_dev_name_of(int index) {
    static char name[256];
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) { // checks the index
        (void)cudaGetLastError();
        return "";
    }
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

extern "C" void etx_dev_mark_readonly(const void* p, size_t bytes) {
#ifdef ETX_SIMT
    if (simt::mark_readonly(p, bytes) != 0) {
        fprintf(stderr, "[etx] etx_dev_mark_readonly: %p (%zu bytes) is not inside one device allocation\n", p, bytes);
        abort();
    }
#else
    (void)p, (void)bytes; // a promise the code keeps; nothing for the driver to do
#endif
}

extern "C" void etx_dev_free(void* p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

extern "C" void* etx_dev_host_alloc(size_t bytes) {
    void* p = NULL;
    if (bytes == 0) return NULL;
    if (cudaMallocHost(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError(); // the caller falls back to pageable memory
        return NULL;
    }
    return p;
}

extern "C" void etx_dev_host_free(void* p) {
    if (p) CUDA_CHECK(cudaFreeHost(p));
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

extern "C" void etx_dev_upload_on(void* dst, const void* src, size_t bytes, void* stream) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream));
}

extern "C" void etx_dev_download_on(void* dst, const void* src, size_t bytes, void* stream) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream));
    CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)stream)); // the host reads dst next
}

extern "C" void etx_dev_copy_on(void* dst, const void* src, size_t bytes, void* stream) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream));
}

extern "C" void* etx_dev_event_create(void) {
    cudaEvent_t e = NULL;
    CUDA_CHECK(cudaEventCreate(&e));
    return (void*)e;
}

extern "C" void etx_dev_event_destroy(void* ev) {
    if (ev) CUDA_CHECK(cudaEventDestroy((cudaEvent_t)ev));
}

extern "C" void etx_dev_event_record(void* ev, void* stream) {
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)stream));
}

extern "C" float etx_dev_event_ms(void* start, void* end) {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)end));
    CUDA_CHECK(cudaEventElapsedTime(&ms, (cudaEvent_t)start, (cudaEvent_t)end));
    return ms;
}

extern "C" void etx_dev_stream_sync(void* stream) {
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)stream));
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
    cudaStream_t s = NULL;
    if (!etx_dev_available() || cudaStreamCreate(&s) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return (void*)s;
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

extern "C" long long etx_dev_kernel_launches(void) {
#ifdef ETX_SIMT
    return (long long)simt::detail::launches_run();
#else
    return -1;
#endif
}

// The error scope of the capture open on this thread (captures are thread-local:
// cudaStreamCaptureModeThreadLocal).
static __thread int capture_open;       // 1 between capture_begin and capture_end
static __thread int capture_failed;     // a check failed inside it
static __thread char capture_why[512];  // the first failure
static __thread int capture_fail_injected; // etx_dev_test_fail_next_capture

extern "C" int etx_dev_note_error(const char* what, const char* file, int line, const char* why) {
    if (!capture_open) return 0;
    if (!capture_failed)
        snprintf(capture_why, sizeof capture_why, "%s at %s:%d: %s", what, file, line, why ? why : "?");
    capture_failed = 1;
    return 1;
}

extern "C" void etx_dev_test_fail_next_capture(void) { capture_fail_injected = 1; }

extern "C" const char* etx_dev_capture_error(void) { return capture_why; }

static void capture_scope_open(void) {
    capture_open = 1;
    capture_failed = 0;
    capture_why[0] = 0;
    if (capture_fail_injected) {
        capture_fail_injected = 0;
        etx_dev_note_error("etx_dev_test_fail_next_capture", __FILE__, __LINE__, "injected failure");
    }
}

extern "C" int etx_dev_capture_begin(void* stream) {
    if (!stream) return 0; // the legacy default stream cannot be captured
    if (cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    capture_scope_open();
    return 1;
}

extern "C" void* etx_dev_capture_end(void* stream) {
    capture_open = 0;
    // always end the capture (the stream stays in capture mode otherwise), then drop the
    // graph, partial or not, unless nothing failed
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)stream, &g);
    if (e != cudaSuccess && !capture_failed)
        snprintf(capture_why, sizeof capture_why, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    if (e == cudaSuccess && !capture_failed) {
        e = cudaGraphInstantiate(&exec, g, 0);
        if (e != cudaSuccess)
            snprintf(capture_why, sizeof capture_why, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    if (g) cudaGraphDestroy(g);
    (void)cudaGetLastError(); // the failure is reported through capture_why, not left pending
    if (capture_failed || e != cudaSuccess) {
        if (exec) cudaGraphExecDestroy(exec);
        capture_failed = 1;
        return NULL;
    }
    return (void*)exec;
}

extern "C" void etx_dev_graph_launch(void* graph, void* stream) {
    CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, (cudaStream_t)stream));
}

extern "C" void etx_dev_graph_destroy(void* graph) {
    if (graph) CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
}

extern "C" void etx_dev_sync(void) {
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
}
