/*
 * cpu_ops.c — float32 ops of the CPU forward pass: RMSNorm (rows and heads), bias rows,
 * RoPE tables and rotation, softmax, SwiGLU, blocked causal attention of one KV head,
 * linear layers (OpenBLAS / OpenMP), and the thread-count knob.
 * See cpu_ops.h for the math of each.
 */
#include "cpu/cpu_ops.h"

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

// per-head RMSNorm, each head with the row norm's formula
void rmsnorm_heads(float* x, const float* w, int n_heads, int hd, float eps) {
    for (int h = 0; h < n_heads; h++) rmsnorm(x + (size_t)h * hd, x + (size_t)h * hd, w, hd, eps);
}

// y[r] += b, row by row
void add_bias_rows(float* y, int ldy, const float* b, int n, int d) {
    for (int r = 0; r < n; r++) {
        float* yr = y + (size_t)r * ldy;
        #pragma omp simd
        for (int i = 0; i < d; i++) yr[i] += b[i];
    }
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

// Up to this many query rows (a decode step's heads of one KV head), attention uses the
// loops below, which read each cached row once for all rows; BLAS would spend most of its
// time packing the keys for so few rows.
#define SMALL_ROWS 8

// s[r, c] = scale * q[r] . k[c]      r < m, c < nb; s rows ATT_BLOCK apart.
// Four keys per pass: four independent accumulators per query row.
static void scores_small(float* s, const float* q, int ldq, int m, const float* k, int ldk, int nb, int hd,
                         float scale) {
    int c = 0;
    for (; c + 4 <= nb; c += 4) {
        const float* k0 = k + (size_t)c * ldk;
        const float* k1 = k0 + ldk;
        const float* k2 = k1 + ldk;
        const float* k3 = k2 + ldk;
        for (int r = 0; r < m; r++) {
            const float* qr = q + (size_t)r * ldq;
            float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
            #pragma omp simd reduction(+ : d0, d1, d2, d3)
            for (int j = 0; j < hd; j++) {
                d0 = fmaf(qr[j], k0[j], d0);
                d1 = fmaf(qr[j], k1[j], d1);
                d2 = fmaf(qr[j], k2[j], d2);
                d3 = fmaf(qr[j], k3[j], d3);
            }
            float* sr = s + (size_t)r * ATT_BLOCK + c;
            sr[0] = d0 * scale, sr[1] = d1 * scale, sr[2] = d2 * scale, sr[3] = d3 * scale;
        }
    }
    for (; c < nb; c++) {
        const float* kr = k + (size_t)c * ldk;
        for (int r = 0; r < m; r++) {
            const float* qr = q + (size_t)r * ldq;
            float d = 0.0f;
            #pragma omp simd reduction(+ : d)
            for (int j = 0; j < hd; j++) d = fmaf(qr[j], kr[j], d);
            s[(size_t)r * ATT_BLOCK + c] = d * scale;
        }
    }
}

// out[r] += sum_c w[r, c] v[c]      r < m; w rows ATT_BLOCK apart. Four values per pass,
// so each output element is loaded and stored once per four.
static void weighted_sum_small(float* out, int ldo, const float* w, int m, const float* v, int ldv, int nb, int hd) {
    int c = 0;
    for (; c + 4 <= nb; c += 4) {
        const float* v0 = v + (size_t)c * ldv;
        const float* v1 = v0 + ldv;
        const float* v2 = v1 + ldv;
        const float* v3 = v2 + ldv;
        for (int r = 0; r < m; r++) {
            const float* wr = w + (size_t)r * ATT_BLOCK + c;
            float p0 = wr[0], p1 = wr[1], p2 = wr[2], p3 = wr[3];
            float* o = out + (size_t)r * ldo;
            #pragma omp simd
            for (int j = 0; j < hd; j++) o[j] = fmaf(p3, v3[j], fmaf(p2, v2[j], fmaf(p1, v1[j], fmaf(p0, v0[j], o[j]))));
        }
    }
    for (; c < nb; c++) {
        const float* vr = v + (size_t)c * ldv;
        for (int r = 0; r < m; r++) {
            float p = w[(size_t)r * ATT_BLOCK + c];
            float* o = out + (size_t)r * ldo;
            #pragma omp simd
            for (int j = 0; j < hd; j++) o[j] = fmaf(p, vr[j], o[j]);
        }
    }
}

// online-softmax causal attention over one KV head (see cpu_ops.h)
void attention_head(float* out, int ldo, const float* q, int ldq, const float* const* kseg, const float* const* vseg,
                    int seg_len, int col, int ldkv, int rows, int per_pos, int pos0, int hd, float scale,
                    float* scratch) {
    float* sc = scratch;                             // (rows, ATT_BLOCK) scores, then weights
    float* mx = scratch + (size_t)rows * ATT_BLOCK;  // (rows) running max of each row
    float* sum = mx + rows;                          // (rows) running sum of exp(score - max)
    int T = pos0 + (rows - 1) / per_pos + 1;         // keys seen by the last row
    for (int i = 0; i < rows; i++) {
        mx[i] = -INFINITY;
        sum[i] = 0.0f;
        for (int j = 0; j < hd; j++) out[(size_t)i * ldo + j] = 0.0f;
    }
    for (int t0 = 0; t0 < T; t0 += seg_len) {
        int nb = T - t0 < seg_len ? T - t0 : seg_len;
        int i0 = t0 > pos0 ? (t0 - pos0) * per_pos : 0; // rows before i0 see none of the block
        int m = rows - i0;
        const float* kb = kseg[t0 / seg_len] + col;
        const float* vb = vseg[t0 / seg_len] + col;
        float* sb = sc + (size_t)i0 * ATT_BLOCK;
        // scores: sb[i, c] = scale * q[i] . k[t0 + c]   (transformers: (q @ k^T) * scaling)
        if (m <= SMALL_ROWS)
            scores_small(sb, q + (size_t)i0 * ldq, ldq, m, kb, ldkv, nb, hd, scale);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nb, hd, scale, q + (size_t)i0 * ldq, ldq, kb, ldkv,
                        0.0f, sb, ATT_BLOCK);
        // causal mask, and exp against the running max (rescaling what was summed before)
        for (int i = i0; i < rows; i++) {
            float* r = sc + (size_t)i * ATT_BLOCK;
            int seen = pos0 + i / per_pos - t0 + 1;
            int valid = seen < nb ? seen : nb;
            float mnew = mx[i];
            for (int c = 0; c < valid; c++) mnew = r[c] > mnew ? r[c] : mnew;
            float corr = expf(mx[i] - mnew); // 0 on the first block (mx = -inf)
            float add = 0.0f;
            for (int c = 0; c < valid; c++) {
                r[c] = expf(r[c] - mnew);
                add += r[c];
            }
            for (int c = valid; c < nb; c++) r[c] = 0.0f;
            sum[i] = sum[i] * corr + add;
            mx[i] = mnew;
            if (corr != 1.0f)
                for (int j = 0; j < hd; j++) out[(size_t)i * ldo + j] *= corr;
        }
        // out[i] += sum_c w[i, c] v[t0 + c]
        if (m <= SMALL_ROWS)
            weighted_sum_small(out + (size_t)i0 * ldo, ldo, sb, m, vb, ldkv, nb, hd);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, nb, 1.0f, sb, ATT_BLOCK, vb, ldkv, 1.0f,
                        out + (size_t)i0 * ldo, ldo);
    }
    for (int i = 0; i < rows; i++) {
        float inv = 1.0f / sum[i];
        for (int j = 0; j < hd; j++) out[(size_t)i * ldo + j] *= inv;
    }
}

// p = softmax(scale * K q)
void attention_probs(float* p, const float* q, const float* k, int ldkv, int T, int hd, float scale) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, T, hd, scale, k, ldkv, q, 1, 0.0f, p, 1);
    softmax(p, T);
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
