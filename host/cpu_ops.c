/*
 * cpu_ops.c — float32 ops of the CPU forward pass: RMSNorm, RoPE tables and rotation,
 * softmax, SwiGLU, linear layers (OpenBLAS / OpenMP), and the thread-count knob.
 * See cpu_ops.h for the math of each.
 */
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>

// Below this many multiply-adds a product runs on one thread: waking the team costs more
// than it saves.
#define MATVEC_PARALLEL_MIN (1 << 16)

void cpu_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    // One pool of threads: OpenMP's. Each OpenMP thread calls a single-threaded sgemm on
    // its own slice of the output (matmul below). Letting OpenBLAS run its own pthreads
    // as well makes the two pools' idle spinning steal the cores from each other (decode
    // was 4x slower that way on 2 cores).
    openblas_set_num_threads(1);
}

int cpu_get_threads(void) { return omp_get_max_threads(); }

// matmul calls sgemm from inside OpenMP threads, so OpenBLAS must not start its own even
// when the caller never called cpu_set_threads.
static atomic_int blas_configured;
static void blas_single_threaded(void) {
    if (atomic_load_explicit(&blas_configured, memory_order_acquire)) return;
    openblas_set_num_threads(1);
    atomic_store_explicit(&blas_configured, 1, memory_order_release);
}

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

// y = x W^T. The output rows are split over the OpenMP threads in slices of 16; each
// thread runs a single-threaded OpenBLAS sgemm (n > 1) or sgemv (n == 1) on its slice.
// For n == 1, sliced sgemv measured 5-10% faster than a hand-written OpenMP 4-row dot
// loop on SmolLM2's shapes (AMD EPYC, 2 threads: LM head 49152x576 5.8 vs 6.4 ms,
// 576x1536 29 vs 34 us), and as fast on the smallest.
void matmul(float* y, int ldy, const float* x, const float* W, int n, int in, int out) {
    blas_single_threaded();
    long work = (long)n * in * out;
    #pragma omp parallel if (work >= MATVEC_PARALLEL_MIN)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int per = ((out + nt - 1) / nt + 15) / 16 * 16;
        int o0 = t * per, o1 = o0 + per < out ? o0 + per : out;
        if (o0 < o1 && n > 1)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, o1 - o0, in, 1.0f, x, in,
                        W + (size_t)o0 * in, in, 0.0f, y + o0, ldy);
        else if (o0 < o1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, in, 1.0f, W + (size_t)o0 * in, in, x, 1,
                        0.0f, y + o0, 1);
    }
}
