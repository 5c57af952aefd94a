/*
 * cpu_ops.h — the float32 building blocks of the CPU forward pass (cpu_forward.c):
 * RMSNorm (of a row, and of every head of a row: Qwen3's QK-norm), RoPE (Hugging Face
 * rotate-half convention, with llama3 frequency scaling), softmax, SwiGLU, bias rows
 * (Qwen2's Q/K/V biases), and the linear layer y = x W^T (OpenBLAS sgemm for several
 * rows, an OpenMP matrix-vector product for one row), plus the thread-count knob.
 *
 * Threads: one pool, OpenMP's. cpu_set_threads(n) gives OpenMP n threads and OpenBLAS
 * one; multi-row products split the output rows over the OpenMP threads, each calling a
 * single-threaded sgemm, so OpenBLAS's own pthreads never compete with OpenMP's.
 *
 * Every op is a plain function over caller-owned buffers; nothing allocates or prints.
 * The arithmetic follows transformers' LlamaForCausalLM in float32 so that logits agree
 * to ~1e-5 relative.
 */
#ifndef ETX_CPU_OPS_H
#define ETX_CPU_OPS_H

#include "model/model.h"

// Sets the threads of the CPU backend (n <= 0: all cores): OpenMP gets n, OpenBLAS 1.
void cpu_set_threads(int n);
// Threads OpenMP regions will use.
int cpu_get_threads(void);

// out = x * rsqrt(mean(x^2) + eps) * w       x, w, out: (d); out may alias x
void rmsnorm(float* out, const float* x, const float* w, int d, float eps);

// Every head of one row: x[h*hd .. (h+1)*hd) <- rmsnorm(that head, w), h < n_heads; the
// same weight w (hd) for all heads (transformers' Qwen3 q_norm / k_norm on the
// (.., n_heads, head_dim) view).      x: (n_heads * hd), in place
void rmsnorm_heads(float* x, const float* w, int n_heads, int hd, float eps);

// y[r * ldy + i] += b[i] for r < n, i < d: a bias on each of n rows.
void add_bias_rows(float* y, int ldy, const float* b, int n, int d);

// inv_freq[i] = theta^(-2i/head_dim), i < head_dim/2, then llama3 scaling when the config
// asks for it (as transformers' _compute_llama3_parameters, in float32).
void rope_inv_freq(float* inv_freq, const ModelConfig* c);

// cos[p*half + i] = cos(inv_freq[i] * (pos0 + p)), sin likewise; p < n, i < half.
// The angle is the float32 product, as transformers computes it.
void rope_tables(float* cos_t, float* sin_t, const float* inv_freq, int half, int pos0, int n);

// rotate-half RoPE on one head vector x (2*half):
// x[i] <- x[i] cos_i - x[i+half] sin_i ; x[i+half] <- x[i+half] cos_i + x[i] sin_i
void rope_apply(float* x, const float* cos_t, const float* sin_t, int half);

// x <- exp(x - max x) / sum exp(x - max x)      x: (n)
void softmax(float* x, int n);

// gate <- silu(gate) * up, silu(g) = g / (1 + exp(-g))      gate, up: (n)
void swiglu(float* gate, const float* up, int n);

// Causal attention over one KV head, keys streamed in segments of seg_len positions with
// an online softmax (so scratch does not grow with the context). Row i of q is a query at
// position pos0 + i / per_pos (per_pos > 1: several heads of one token sharing this KV
// head):
//   out[i] = sum_{t <= pos(i)} softmax_t(scale * q[i] . k[t]) v[t],   i < rows
// Keys and values are read through segment pointers, so a paged cache needs no copy:
// positions j*seg_len .. (j+1)*seg_len-1 are the rows (stride ldkv) starting at
// kseg[j] + col / vseg[j] + col (col: this head's column offset). A contiguous cache is
// kseg[j] = k + j * seg_len * ldkv. q: (rows, ldq); out: (rows, ldo).
// seg_len <= ATT_BLOCK; scratch: rows * ATT_BLOCK + 2 * rows floats. Calls BLAS: one
// thread per call.
#define ATT_BLOCK 512
void attention_head(float* out, int ldo, const float* q, int ldq, const float* const* kseg, const float* const* vseg,
                    int seg_len, int col, int ldkv, int rows, int per_pos, int pos0, int hd, float scale,
                    float* scratch);

// p[t] = softmax_t(scale * q . k[t]), t < T: one query's attention probabilities.
void attention_probs(float* p, const float* q, const float* k, int ldkv, int T, int hd, float scale);

// y[r, o] = sum_i x[r, i] * W[o, i]      x: (n, in), W: (out, in), y: (n, ldy), ldy >= out
// Output rows split over the OpenMP threads, each running a single-threaded OpenBLAS sgemm
// (n > 1) or sgemv (n == 1) on its slice. Call outside parallel regions.
void matmul(float* y, int ldy, const float* x, const float* W, int n, int in, int out);

#endif // ETX_CPU_OPS_H
