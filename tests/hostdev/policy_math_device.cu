/*
 * policy_math_device.cu — compiles the shared policy math (hostdev/policy_math.h) and
 * Philox (hostdev/philox.h) as CUDA device code, so the build proves on every machine
 * with nvcc (CI has no GPU) that the header the CPU reference uses is also valid device
 * code. One thread per sequence: decide, filter the candidates, draw.
 */
#include "policy_math.h"

__global__ void policy_math_device_check(const etx_entropix_params* params, const PolicyMetrics* metrics,
                                         const PolicyCandidate* cand, int n_cand, float* w, int32_t* out) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    const PolicyDecision d = entropix_decide(params, &metrics[b], -1, 0);
    const int k = policy_filter(cand + (size_t)b * n_cand, n_cand, d.temperature, d.top_k, d.top_p, d.min_p,
                                w + (size_t)b * n_cand);
    out[b] = policy_draw(w + (size_t)b * n_cand, k, philox_uniform(1, (uint64_t)b, 0, 0));
}
