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
 * GEMM_ROWS rows held in registers, K summed in a number of pieces that depends on n
 * (split-K, as cuBLAS may pick per shape: results are not batch-invariant): each weight is read once per tile of rows (traffic
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

// Split-K as cuBLAS may choose it: the number of K pieces depends on the shape (here on
// n, the row count: a batch of 1 row sums K in one piece, larger batches in 2, 3 or 4),
// each piece summed in index order, the pieces' sums then added in order. So a row's
// result depends on how many rows share the call, as with cuBLAS, whose kernel choice
// (and split-K) changes with the shape: only callers that are batch-invariant by
// construction (the same n for a row whatever its batch) get batch-invariant results.
// Deterministic for a given (n, in, out).
static inline int gemm_k_splits(int n) { return n <= 1 ? 1 : n <= 4 ? 2 : n <= 16 ? 3 : 4; }

// block (b, t), thread x: output column o = b * blockDim.x + x of rows t * GEMM_ROWS ..
__global__ void gemm_simt_kernel(float* __restrict__ y, const __nv_bfloat16* __restrict__ x,
                                 const __nv_bfloat16* __restrict__ w, int n, int in, int out, int splits) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x, r0 = blockIdx.y * GEMM_ROWS;
    if (o >= out) return;
    const int nr = min(GEMM_ROWS, n - r0);
    float acc[GEMM_ROWS], part[GEMM_ROWS];
    for (int j = 0; j < GEMM_ROWS; j++) acc[j] = 0.0f;
    const __nv_bfloat16* wr = w + (size_t)o * in;
    const __nv_bfloat16* xr = x + (size_t)r0 * in;
    const int piece = (in + splits - 1) / splits;
    for (int k0 = 0; k0 < in; k0 += piece) {
        const int k1 = min(in, k0 + piece);
        for (int j = 0; j < GEMM_ROWS; j++) part[j] = 0.0f;
        for (int i = k0; i < k1; i++) {
            const float wv = __bfloat162float(wr[i]);
            for (int j = 0; j < nr; j++) part[j] += wv * __bfloat162float(xr[(size_t)j * in + i]);
        }
        for (int j = 0; j < nr; j++) acc[j] += part[j];
    }
    for (int j = 0; j < nr; j++) y[(size_t)(r0 + j) * out + o] = acc[j];
}

#ifndef ETX_SIMT
// The native context: the cuBLAS handle and a workspace of its own, set once, so that
// no GEMM allocates while a CUDA graph is being captured.
#define GEMM_WORKSPACE_BYTES ((size_t)32 << 20)
typedef struct {
    cublasHandle_t h;
    void* ws;
} GemmCtx;
#endif

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
               reinterpret_cast<const __nv_bfloat16*>(x), reinterpret_cast<const __nv_bfloat16*>(w), n, in, out,
               gemm_k_splits(n));
    CUDA_CHECK_LAUNCH();
#else
    cublasHandle_t h = ((GemmCtx*)gemm)->h;
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s = cublasSetStream(h, (cudaStream_t)stream);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in, &beta,
                         y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "[CUDA ERROR] cublasGemmEx (n %d, in %d, out %d) at %s:%d: %s\n", n, in, out, __FILE__,
                __LINE__, cublasGetStatusString(s));
        exit(EXIT_FAILURE);
    }
#endif
}
