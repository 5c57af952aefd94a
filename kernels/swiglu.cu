/*
 * swiglu.cu — out[r, i] = bf16(silu(gate[r, i]) * up[r, i]), silu(g) = g / (1 + exp(-g)).
 *
 * Grid-stride over the n_rows * hidden outputs, consecutive threads on consecutive
 * columns (coalesced gate and up reads). Traffic: n_rows * hidden * (8 read + 2 written)
 * bytes.
 */
#include "cuda_common.cuh"
#include "swiglu.h"

__global__ void swiglu_kernel(__nv_bfloat16* __restrict__ out, const float* __restrict__ gu, int n_rows, int hidden) {
    size_t n = (size_t)n_rows * hidden;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        size_t r = e / hidden, i = e % hidden;
        const float* row = gu + r * 2 * hidden;
        float g = row[i], u = row[hidden + i];
        out[e] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
    }
}

extern "C" void etx_swiglu(etx_bf16* out, const float* gu, int n_rows, int hidden, void* stream) {
    size_t n = (size_t)n_rows * hidden;
    if (n == 0) return;
    int threads = 256;
    size_t blocks = (n + threads - 1) / threads;
    if (blocks > 4096) blocks = 4096; // grid-stride beyond that
    ETX_LAUNCH(swiglu_kernel, (int)blocks, threads, 0, (cudaStream_t)stream, reinterpret_cast<__nv_bfloat16*>(out), gu,
               n_rows, hidden);
    CUDA_CHECK_LAUNCH();
}
