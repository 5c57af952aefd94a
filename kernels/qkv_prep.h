/*
 * qkv_prep.h — Qwen's steps between the fused QKV GEMM and RoPE (kernels/qkv_prep.cu):
 * the Q/K/V projection biases (qwen2) and the per-head RMSNorm of q and k (qwen3), in
 * place on the qkv rows, every row computed alone. Layout: kernels/README.md. Pointers are
 * device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_QKV_PREP_H
#define ETX_KERNELS_QKV_PREP_H

#include "attention.h" // EtxAttnShape
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// For each row r < n_rows of qkv (n_rows, q_dim + 2 kv_dim) f32, heads of shape.head_dim
// (hdp) lanes of which the model's hd are real (the rest zero in qkv, bias and norms):
//   qkv[r] += bias                                          (bias: (q_dim + 2 kv_dim), or NULL)
//   then, when q_norm and k_norm are given, every q head h and k head h:
//   x[h] = x[h] * rsqrtf(sum(x[h]^2) / hd + eps) * w        (w: q_norm or k_norm, (hdp))
// v heads get the bias only. Rows with no real token (padding) are computed like any other.
void etx_qkv_prep(float* qkv, const float* bias, const float* q_norm, const float* k_norm, int n_rows, int hd,
                  float eps, EtxAttnShape shape, void* stream);

// The napkin math of etx_qkv_prep (cost.h): per row the qkv row read and written (v's
// part only with a bias); bias and norms from L2.
EtxCost etx_qkv_prep_cost(int n_rows, int has_bias, int has_norm, EtxAttnShape shape);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_QKV_PREP_H
