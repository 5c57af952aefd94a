/*
 * cpu_ops.c — float32 ops of the CPU forward pass: RMSNorm, RoPE tables and rotation,
 * softmax, SwiGLU, linear layers (OpenBLAS / OpenMP), and the thread-count knob.
 * See cpu_ops.h for the math of each.
 */
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

// Below this many multiply-adds a matrix-vector product runs on one thread: waking the
// team costs more than it saves.
#define MATVEC_PARALLEL_MIN (1 << 16)

void cpu_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    // OpenBLAS is only called outside our parallel regions, so both may use n threads
    // without oversubscribing the cores.
    openblas_set_num_threads(n);
}

int cpu_get_threads(void) { return omp_get_max_threads(); }

// out = x * rsqrt(mean(x^2) + eps) * w
void rmsnorm(float* out, const float* x, const float* w, int d, float eps) {
    float ss = 0.0f;
    #pragma omp simd reduction(+ : ss)
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    // transformers: hidden * torch.rsqrt(variance + eps), then weight * hidden
    float r = 1.0f / sqrtf(ss / (float)d + eps);
    for (int i = 0; i < d; i++) out[i] = w[i] * (x[i] * r);
}

// inv_freq[i] = theta^(-2i/hd), llama3-scaled when configured
void rope_inv_freq(float* inv_freq, const ModelConfig* c) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), float32
        float e = (float)(2 * i) / (float)c->head_dim;
        inv_freq[i] = 1.0f / powf(c->rope_theta, e);
    }
    if (!c->rope_llama3) return;
    float factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    float old_ctx = (float)c->rope_original_max_pos;
    float low_freq_wavelen = old_ctx / lo;
    float high_freq_wavelen = old_ctx / hi;
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i];
        float wavelen = (float)(2.0 * M_PI) / f;
        if (wavelen > low_freq_wavelen) {
            inv_freq[i] = f / factor;                // low frequency: fully interpolated
        } else if (wavelen < high_freq_wavelen) {
            inv_freq[i] = f;                         // high frequency: unchanged
        } else {                                     // in between: blend smoothly
            float smooth = (old_ctx / wavelen - lo) / (hi - lo);
            inv_freq[i] = (1.0f - smooth) * f / factor + smooth * f;
        }
    }
}

// cos/sin of inv_freq[i] * position, angle in float32
void rope_tables(float* cos_t, float* sin_t, const float* inv_freq, int half, int pos0, int n) {
    for (int p = 0; p < n; p++) {
        float pos = (float)(pos0 + p);
        for (int i = 0; i < half; i++) {
            float a = inv_freq[i] * pos;
            cos_t[(size_t)p * half + i] = cosf(a);
            sin_t[(size_t)p * half + i] = sinf(a);
        }
    }
}

// q*cos + rotate_half(q)*sin, rotate_half(x) = (-x2, x1)
void rope_apply(float* x, const float* cos_t, const float* sin_t, int half) {
    for (int i = 0; i < half; i++) {
        float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cos_t[i] - x2 * sin_t[i];
        x[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
    }
}

// x <- softmax(x)
void softmax(float* x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

// gate <- gate * sigmoid(gate) * up
void swiglu(float* gate, const float* up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// one output row: dot(x, w) over n entries
static inline float dot(const float* x, const float* w, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += x[i] * w[i];
    return s;
}

// y = x W^T
void matmul(float* y, int ldy, const float* x, const float* W, int n, int in, int out) {
    if (n > 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in,
                    0.0f, y, ldy);
        return;
    }
    long work = (long)in * out;
    #pragma omp parallel for schedule(static) if (work >= MATVEC_PARALLEL_MIN)
    for (int o = 0; o < out; o++) y[o] = dot(x, W + (size_t)o * in, in);
}
