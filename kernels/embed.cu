/*
 * embed.cu — token embedding: x[r, :] = float(emb[tok[r], :]).
 *
 * One block per row; the threads walk the row two bf16 at a time when dim is even (one
 * 4-byte load, one 8-byte store). Traffic: n_rows * dim * (2 read + 4 written) bytes.
 *
 * Twin: the float32 row copy of host/cpu/cpu_forward.c; test:
 * tests/kernels/test_layer_kernels.c test_embed (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "embed.h"

// x[r, :] = float(emb[tok[r], :]); block r, PAIRS: dim even, reads bf16 pairs
struct alignas(4) bf16x2 {
    __nv_bfloat16 a, b;
};

template <bool PAIRS>
__global__ void embed_kernel(float* __restrict__ x, const __nv_bfloat16* __restrict__ emb,
                             const int32_t* __restrict__ tok, int dim) {
    ETX_PDL_ENTRY();
    int r = blockIdx.x;
    const __nv_bfloat16* src = emb + (size_t)tok[r] * dim;
    float* dst = x + (size_t)r * dim;
    if (PAIRS) {
        const bf16x2* src2 = reinterpret_cast<const bf16x2*>(src);
        for (int i = threadIdx.x; i < dim / 2; i += blockDim.x) {
            bf16x2 v = src2[i];
            dst[2 * i] = __bfloat162float(v.a);
            dst[2 * i + 1] = __bfloat162float(v.b);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = __bfloat162float(src[i]);
    }
}

extern "C" void etx_embed(float* x, const etx_bf16* emb, const int32_t* tok, int n_rows, int dim, void* stream) {
    if (n_rows <= 0) return;
    const __nv_bfloat16* e = reinterpret_cast<const __nv_bfloat16*>(emb);
    int threads = dim >= 512 ? 256 : 64;
    if (dim % 2 == 0 && ((uintptr_t)emb & 3) == 0)
        ETX_LAUNCH(embed_kernel<true>, n_rows, threads, 0, (cudaStream_t)stream, x, e, tok, dim);
    else
        ETX_LAUNCH(embed_kernel<false>, n_rows, threads, 0, (cudaStream_t)stream, x, e, tok, dim);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_embed_cost(int n_rows, int dim) {
    EtxCost c = {(double)n_rows * dim * (2 + 4), 0, (double)n_rows, (double)n_rows, 1, 0, 0, 0, 0};
    return c;
}
