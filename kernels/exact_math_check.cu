/*
 * exact_math_check.cu — etx_expf and etx_logf (hostdev/exact_math.h) over an array, on the
 * device (kernels/exact_math_check.h), for the host/device bit-for-bit test.
 *
 * Math: exp_out[i] = etx_expf(x[i]), log_out[i] = etx_logf(x[i]). Memory: 12 bytes per
 * element; one thread per element. Listed in ETX_EXACT_KERNEL_SOURCES (no contraction),
 * like every kernel bound by the exactness contract, although the functions use the
 * non-contracting _rn intrinsics on the device anyway.
 *
 * Twin: the same functions compiled as C on the host; test: tests/kernels/test_exact_math.c
 * (docs/ops.md).
 */
#include "cuda_common.cuh"

#include "exact_math.h" // hostdev/
#include "exact_math_check.h"

__global__ void exact_math_kernel(const float* __restrict__ x, float* __restrict__ exp_out,
                                  float* __restrict__ log_out, int n) {
    ETX_PDL_ENTRY();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    exp_out[i] = etx_expf(x[i]);
    log_out[i] = etx_logf(x[i]);
}

extern "C" void etx_exact_math_eval(const float* x, float* exp_out, float* log_out, int n, int threads,
                                    void* stream) {
    if (n <= 0) return;
    const int block = threads > 0 ? threads : 256;
    ETX_LAUNCH(exact_math_kernel, etx_ceil_div(n, block), block, 0, (cudaStream_t)stream, x, exp_out, log_out, n);
    CUDA_CHECK_LAUNCH();
}
