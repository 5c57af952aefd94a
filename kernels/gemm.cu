/*
 * gemm.cu — y (n, out) f32 = x (n, in) bf16 · W^T, W (out, in) bf16.
 *
 * Native: cuBLAS with the row-major trick. Row-major y (n, out) is column-major
 * Y^T (out x n); W (out, in) row-major is column-major (in x out) with lda = in; x (n, in)
 * row-major is column-major (in x n) with ldb = in. So Y^T = op_T(W) · X^T is
 * cublasGemmEx(T, N, m = out, n = n, k = in), CUDA_R_16BF inputs, CUDA_R_32F output,
 * CUBLAS_COMPUTE_32F.
 *
 * Emulator (ETX_SIMT): gemm_simt_kernel, a thread per output column and a tile of
 * GEMM_ROWS rows held in registers: each weight is read once per tile of rows (traffic
 * about out * in * 2 * ceil(n / GEMM_ROWS) bytes of weights plus x, which stays in
 * cache), no shared memory and no barriers, so the emulator runs each thread straight
 * through. It compiles with nvcc too (a correct, slow fallback) but natively cuBLAS runs.
 *
 * Twin: host/cpu/f32_matrix.c f32_matmat on the same bf16 values as floats; test:
 * tests/kernels/test_gemm.c gemm_matches_cpu (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "gemm.h"

#ifndef ETX_SIMT
#include <cublas_v2.h>
#endif

#define GEMM_THREADS 128
#define GEMM_ROWS 8

// block (b, t), thread x: output column o = b * blockDim.x + x of rows t * GEMM_ROWS ..
__global__ void gemm_simt_kernel(float* __restrict__ y, const __nv_bfloat16* __restrict__ x,
                                 const __nv_bfloat16* __restrict__ w, int n, int in, int out) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x, r0 = blockIdx.y * GEMM_ROWS;
    if (o >= out) return;
    const int nr = min(GEMM_ROWS, n - r0);
    float acc[GEMM_ROWS];
    for (int j = 0; j < GEMM_ROWS; j++) acc[j] = 0.0f;
    const __nv_bfloat16* wr = w + (size_t)o * in;
    const __nv_bfloat16* xr = x + (size_t)r0 * in;
    for (int i = 0; i < in; i++) {
        const float wv = __bfloat162float(wr[i]);
        for (int j = 0; j < nr; j++) acc[j] += wv * __bfloat162float(xr[(size_t)j * in + i]);
    }
    for (int j = 0; j < nr; j++) y[(size_t)(r0 + j) * out + o] = acc[j];
}

#ifndef ETX_SIMT
// The native context: the cuBLAS handle, the stream it is bound to and a workspace of its
// own, so that no GEMM allocates while a CUDA graph is being captured. cublasSetStream
// resets the handle to cuBLAS's default workspace (documented: "cublasSetStream ...
// unconditionally resets the cuBLAS library workspace back to the default workspace
// pool"), which cuBLAS may then allocate lazily, inside a capture: so the stream is set
// only when it changes, and the private workspace set again right after
// (gemm_bind_stream). GEMM_WORKSPACE_BYTES is also what the backend's memory plan
// reserves for it (etx_gemm_workspace_bytes).
#define GEMM_WORKSPACE_BYTES ((size_t)32 << 20)
typedef struct {
    cublasHandle_t h;
    void* ws;
    cudaStream_t stream; // the stream the handle is bound to
    int bound;           // 1 once a stream was set
} GemmCtx;

// Binds the handle to stream (and the private workspace again) when it is not already.
static cublasStatus_t gemm_bind_stream(GemmCtx* c, cudaStream_t stream) {
    if (c->bound && c->stream == stream) return CUBLAS_STATUS_SUCCESS;
    cublasStatus_t s = cublasSetStream(c->h, stream);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetWorkspace(c->h, c->ws, GEMM_WORKSPACE_BYTES);
    c->bound = s == CUBLAS_STATUS_SUCCESS;
    c->stream = stream;
    return s;
}
#endif

extern "C" size_t etx_gemm_workspace_bytes(void) {
#ifdef ETX_SIMT
    return 0;
#else
    return GEMM_WORKSPACE_BYTES;
#endif
}

extern "C" void* etx_gemm_create(void) {
#ifdef ETX_SIMT
    static int dummy;
    return &dummy;
#else
    GemmCtx* c = (GemmCtx*)calloc(1, sizeof(GemmCtx));
    if (!c) return NULL;
    if (cublasCreate(&c->h) != CUBLAS_STATUS_SUCCESS) {
        free(c);
        return NULL;
    }
    if (cudaMalloc(&c->ws, GEMM_WORKSPACE_BYTES) != cudaSuccess ||
        cublasSetWorkspace(c->h, c->ws, GEMM_WORKSPACE_BYTES) != CUBLAS_STATUS_SUCCESS) {
        (void)cudaGetLastError();
        if (c->ws) cudaFree(c->ws);
        cublasDestroy(c->h);
        free(c);
        return NULL;
    }
    return (void*)c;
#endif
}

extern "C" void etx_gemm_destroy(void* gemm) {
#ifndef ETX_SIMT
    GemmCtx* c = (GemmCtx*)gemm;
    if (!c) return;
    cublasDestroy(c->h);
    cudaFree(c->ws);
    free(c);
#else
    (void)gemm;
#endif
}

extern "C" void etx_gemm_bf16(void* gemm, float* y, const etx_bf16* x, const etx_bf16* w, int n, int in, int out,
                              void* stream) {
    if (n <= 0 || out <= 0) return;
    if (in <= 0) {
        CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n * out * sizeof(float), (cudaStream_t)stream));
        return;
    }
#ifdef ETX_SIMT
    (void)gemm;
    const int row_tiles = etx_ceil_div(n, GEMM_ROWS);
    if (row_tiles > 65535) { // gridDim.y
        fprintf(stderr, "[etx] etx_gemm_bf16: %d rows (at most %d per call)\n", n, 65535 * GEMM_ROWS);
        abort();
    }
    dim3 grid(etx_ceil_div(out, GEMM_THREADS), row_tiles);
    ETX_LAUNCH(gemm_simt_kernel, grid, GEMM_THREADS, 0, (cudaStream_t)stream, y,
               reinterpret_cast<const __nv_bfloat16*>(x), reinterpret_cast<const __nv_bfloat16*>(w), n, in, out);
    CUDA_CHECK_LAUNCH();
#else
    GemmCtx* c = (GemmCtx*)gemm;
    cublasHandle_t h = c->h;
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s = gemm_bind_stream(c, (cudaStream_t)stream);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in, &beta,
                         y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    // fatal outside a capture; inside one the capture's failure (cuda_common.cuh CUDA_CHECK)
    if (s != CUBLAS_STATUS_SUCCESS &&
        !etx_dev_note_error("cublasGemmEx", __FILE__, __LINE__, cublasGetStatusString(s))) {
        fprintf(stderr, "[CUDA ERROR] cublasGemmEx (n %d, in %d, out %d) at %s:%d: %s\n", n, in, out, __FILE__,
                __LINE__, cublasGetStatusString(s));
        exit(EXIT_FAILURE);
    }
#endif
}
