/*
 * qkv_prep.cu — the projection biases and the per-head QK RMSNorm of Qwen models, in place
 * on the fused QKV GEMM's output, before RoPE:
 *   qkv[r] += bias;  q/k head h: x = x * rsqrt(sum_{j<hdp} x_j^2 / hd + eps) * w
 *
 * One block per row, one warp per head (the row's q heads, then k, then v), each lane
 * taking head elements lane, lane + 32, ... The sum of squares runs over the padded
 * head's hdp lanes, whose padding is zero (zero weight rows in wqkv, zero bias), and is
 * divided by the model's hd: it is the RMS of the real elements. A warp's sum is
 * etx_warp_sum of each lane's sum in element order (reduce.cuh), so a row's bits depend
 * on nothing but the row. Traffic per row: with a bias (q_dim + 2 kv_dim) * 8 bytes, else
 * (q_dim + kv_dim) * 8 (v untouched); bias and norm weights from L2.
 *
 * The CUDA plan runs it for models with QK-norm (qwen3); a model with biases alone (qwen2)
 * has them added by the QKV GEMM's epilogue instead (etx_gemm_bf16_bias: the same f32
 * addition, so the same bits as this kernel's bias add).
 *
 * Twin: host/cpu/cpu_ops.c add_bias_rows + rmsnorm_heads; test:
 * tests/kernels/test_layer_kernels.c test_qkv_prep (docs/ops.md).
 */
#include "cuda_common.cuh"
#include "qkv_prep.h"
#include "reduce.cuh"

#define QKV_PREP_MAX_PER_LANE 4 // hdp <= 128

// block r: row r; blockDim.x a multiple of 32, one warp per head in turn.
__global__ void qkv_prep_kernel(float* __restrict__ qkv, const float* __restrict__ bias,
                                const float* __restrict__ q_norm, const float* __restrict__ k_norm, int hd, float eps,
                                EtxAttnShape sh) {
    ETX_PDL_ENTRY();
    const int hdp = sh.head_dim, lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    const int n_qk = sh.n_heads + sh.n_kv_heads, per_lane = hdp / 32;
    // with a bias every head (v's too); else only the normed q and k heads
    const int n_work = bias ? n_qk + sh.n_kv_heads : n_qk;
    float* row = qkv + (size_t)blockIdx.x * (sh.n_heads + 2 * sh.n_kv_heads) * hdp;
    for (int h = warp; h < n_work; h += n_warps) {
        float* x = row + (size_t)h * hdp;
        const float* b = bias ? bias + (size_t)h * hdp : NULL;
        float v[QKV_PREP_MAX_PER_LANE]; // unrolled with a constant bound: registers, not a stack frame
        float ss = 0.0f;
#pragma unroll
        for (int i = 0; i < QKV_PREP_MAX_PER_LANE; i++) {
            if (i >= per_lane) break;
            float a = x[lane + 32 * i];
            if (b) a += b[lane + 32 * i];
            v[i] = a;
            ss += a * a;
        }
        const float* w = h < sh.n_heads ? q_norm : k_norm;
        if (q_norm && h < n_qk) {
            ss = etx_warp_sum(ss);
            const float inv = rsqrtf(ss / (float)hd + eps);
#pragma unroll
            for (int i = 0; i < QKV_PREP_MAX_PER_LANE; i++)
                if (i < per_lane) v[i] = w[lane + 32 * i] * (v[i] * inv);
        }
#pragma unroll
        for (int i = 0; i < QKV_PREP_MAX_PER_LANE; i++)
            if (i < per_lane) x[lane + 32 * i] = v[i];
    }
}

extern "C" void etx_qkv_prep(float* qkv, const float* bias, const float* q_norm, const float* k_norm, int n_rows,
                             int hd, float eps, EtxAttnShape shape, void* stream) {
    if (n_rows <= 0 || (!bias && !q_norm)) return;
    if ((shape.head_dim != 64 && shape.head_dim != 128) || hd <= 0 || hd > shape.head_dim || !q_norm != !k_norm) {
        fprintf(stderr, "[etx] etx_qkv_prep: unsupported head_dim %d (model %d) or a lone norm\n", shape.head_dim, hd);
        abort();
    }
    const int heads = shape.n_heads + 2 * shape.n_kv_heads;
    const int threads = heads >= 8 ? 256 : 128;
    ETX_LAUNCH(qkv_prep_kernel, n_rows, threads, 0, (cudaStream_t)stream, qkv, bias, q_norm, k_norm, hd, eps, shape);
    CUDA_CHECK_LAUNCH();
}

extern "C" EtxCost etx_qkv_prep_cost(int n_rows, int has_bias, int has_norm, EtxAttnShape sh) {
    const double q_dim = (double)sh.n_heads * sh.head_dim, kv_dim = (double)sh.n_kv_heads * sh.head_dim;
    const double touched = has_bias ? q_dim + 2 * kv_dim : has_norm ? q_dim + kv_dim : 0;
    const double flops = (has_bias ? q_dim + 2 * kv_dim : 0) + (has_norm ? 4 * (q_dim + kv_dim) : 0);
    EtxCost c = {(double)n_rows * touched * 8 + (has_bias ? (q_dim + 2 * kv_dim) * 4 : 0) +
                     (has_norm ? 2.0 * sh.head_dim * 4 : 0),
                 (double)n_rows * flops, (double)n_rows, (double)n_rows, 1, 0, 0, 0, 0};
    return c;
}
