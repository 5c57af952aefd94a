/*
 * test_layer_kernels.c — the kernels of one Llama layer (kernels/embed, norm, rope,
 * swiglu, attention) and Qwen's qkv_prep (biases, QK-norm) against their CPU twins (host/cpu/cpu_ops.c where one exists, plain
 * loops here otherwise), under the SIMT emulator (_emu) and on a GPU (_gpu).
 *
 * The kernels read bf16 inputs (embedding, KV cache); the twins get the same values
 * decoded from the same bf16 bits (round to nearest even, as the kernels write them), so
 * the only differences left are float summation order, the device's expf/cosf/rsqrtf
 * (a few float ulps on a GPU, glibc's under the emulator) and the final bf16 rounding.
 * A last case composes them as a layer does (RoPE + append of a chunked prompt, prefill,
 * then a decode step) to check that they agree on layouts, positions and tables.
 * Tolerances, from that:
 *   - exact (memcmp): embedding rows, the residual x + delta (one f32 add either side),
 *     v appended to the cache (one bf16 rounding of the same f32), guard values.
 *   - bf16 outputs: |got - want| <= 0.5 bf16 ulp(want) + REL_F32 |want| (+ an absolute
 *     term for attention, below): half an ulp is the output rounding, REL_F32 = 1e-5 covers
 *     float reassociation in the twin and the kernel and the device's expf/rsqrtf (sums of
 *     up to 4096 terms: the worst-case bound n u = 2.4e-4 is never approached, rounding
 *     errors of a sum random-walk to ~sqrt(n) u = 4e-6; a few ulps of expf are 2e-7).
 *   - RoPE outputs: |got - want| <= ROPE_TOL (|x1| + |x2|) (+ half a bf16 ulp for k):
 *     each of cos/sin may be off by 2 float ulps on a GPU, times the rotated pair.
 *   - qkv_prep: exact with biases alone; with the QK-norm (hd + 16) 2^-24 relative
 *     (run_qkv_prep has the derivation).
 *   - attention: scores |got - want| <= 2 hd 2^-24 scale sum_d |q_d k_d| (the worst-case
 *     error of two hd-term float dot products); outputs bf16 as above plus 1e-5 absolute
 *     (they are convex combinations of values in [-1, 1]; score errors of ~1e-6 move
 *     the weights by that much relative).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "cpu/cpu_ops.h"
#include "device.h"
#include "embed.h"
#include "gather.h"
#include "kv_copy.h"
#include "norm.h"
#include "qkv_prep.h"
#include "rope.h"
#include "swiglu.h"
#include "check_device.h"
#include "check_main.h"
#include "test_rng.h"

#define REL_F32 1e-5
#define ROPE_TOL 1e-6
#define ATT_ABS 1e-5
#define GUARD_BF16 0xA5A5u // bf16 bits that no kernel writes here (-2.9e-16)
#define GUARD_F32 -12345.0f

// ----------------------------------------------------------------------------
// helpers

// ck_assert_msg that costs nothing when it holds: Check's asserts record a mark point (a
// write to its pipe) on every call, which dominates loops over a whole KV pool.
#define EXPECT(cond, ...)                                                                                              \
    do {                                                                                                               \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                                        \
    } while (0)

static uint64_t rng_state; // test_rng.h; each test starts with rng_state = rng_seed(its number)

// spacing of bf16 values at |v| (8 significant bits)
static double bf16_ulp(double v) {
    int e;
    frexp(v, &e);
    return v == 0.0 ? 0x1p-133 : ldexp(1.0, e - 8);
}

static void check_bf16(const char* what, int idx, uint16_t got_bits, double want, double abs_tol) {
    double got = etx_bf16_to_f32(got_bits);
    double tol = 0.5 * bf16_ulp(want) + REL_F32 * fabs(want) + abs_tol;
    EXPECT(isfinite(got) && fabs(got - want) <= tol, "%s[%d]: got %.9g, want %.9g (diff %.3g, tol %.3g)", what, idx,
           got, want, got - want, tol);
}

static void* dev_copy(const void* host, size_t bytes) {
    void* d = etx_dev_malloc(bytes);
    ck_assert_ptr_nonnull(d);
    etx_dev_upload(d, host, bytes);
    return d;
}

static void* host_copy(const void* dev, size_t bytes) {
    void* h = malloc(bytes);
    ck_assert_ptr_nonnull(h);
    etx_dev_sync();
    etx_dev_download(h, dev, bytes);
    return h;
}

static float* random_f32(size_t n, float lo, float hi) {
    float* x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = rng_range(&rng_state, lo, hi);
    return x;
}

static uint16_t* random_bf16(size_t n, float lo, float hi) {
    uint16_t* x = malloc(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) x[i] = etx_bf16_from_f32(rng_range(&rng_state, lo, hi));
    return x;
}

// ----------------------------------------------------------------------------
// embedding: exact

START_TEST(test_embed) {
    static const int dims[] = {576, 100, 7};
    static const int rows[] = {1, 3, 17};
    rng_state = rng_seed(1);
    int vocab = 50;
    for (int di = 0; di < 3; di++)
        for (int ri = 0; ri < 3; ri++) {
            int dim = dims[di], n = rows[ri];
            uint16_t* emb = random_bf16((size_t)vocab * dim, -2.0f, 2.0f);
            int32_t tok[17];
            for (int r = 0; r < n; r++) tok[r] = rng_below(&rng_state, vocab);
            tok[n - 1] = vocab - 1; // the last row of the table
            size_t nx = (size_t)n * dim;
            float* guard = malloc((nx + 8) * sizeof(float));
            for (size_t i = 0; i < nx + 8; i++) guard[i] = GUARD_F32;
            void* d_emb = dev_copy(emb, (size_t)vocab * dim * 2);
            void* d_tok = dev_copy(tok, sizeof(tok));
            float* d_x = dev_copy(guard, (nx + 8) * sizeof(float));
            etx_embed(d_x, d_emb, d_tok, n, dim, NULL);
            float* x = host_copy(d_x, (nx + 8) * sizeof(float));
            for (int r = 0; r < n; r++)
                for (int i = 0; i < dim; i++) {
                    float want = etx_bf16_to_f32(emb[(size_t)tok[r] * dim + i]);
                    EXPECT(memcmp(&x[(size_t)r * dim + i], &want, 4) == 0, "dim %d row %d [%d]: %g vs %g", dim, r, i,
                           x[(size_t)r * dim + i], want);
                }
            for (int i = 0; i < 8; i++) EXPECT(x[nx + i] == GUARD_F32, "guard %d after x overwritten", i);
            etx_dev_free(d_emb);
            etx_dev_free(d_tok);
            etx_dev_free(d_x);
            free(emb);
            free(guard);
            free(x);
        }
}
END_TEST

// ----------------------------------------------------------------------------
// RMSNorm + residual vs host/cpu/cpu_ops.c rmsnorm

// dim 576/100/1536: 16-byte vector path; 98 and 7: scalar path; offset: x, delta, out one
// element off their allocation (misaligned: scalar path at dim 576)
static void run_rmsnorm(int dim, int n, int with_delta, int offset) {
    float eps = 1e-5f;
    size_t nx = (size_t)n * dim;
    float* x = random_f32(nx, -3.0f, 3.0f);
    float* delta = random_f32(nx, -1.0f, 1.0f);
    float* w = random_f32(dim, 0.5f, 1.5f);
    float* d_xbuf = etx_dev_malloc((nx + 1) * sizeof(float));
    float* d_dbuf = etx_dev_malloc((nx + 1) * sizeof(float));
    uint16_t* d_obuf = etx_dev_malloc((nx + 1 + 8) * sizeof(uint16_t));
    float* d_x = d_xbuf + offset;
    float* d_delta = d_dbuf + offset;
    uint16_t* d_out = d_obuf + offset;
    etx_dev_upload(d_x, x, nx * sizeof(float));
    etx_dev_upload(d_delta, delta, nx * sizeof(float));
    etx_dev_memset(d_obuf, 0xA5, (nx + 1 + 8) * sizeof(uint16_t));
    float* d_w = dev_copy(w, dim * sizeof(float));
    etx_rmsnorm_residual(d_out, d_x, with_delta ? d_delta : NULL, d_w, n, dim, eps, NULL);
    float* gx = host_copy(d_x, nx * sizeof(float));
    uint16_t* gout = host_copy(d_obuf, (nx + 1 + 8) * sizeof(uint16_t));
    float* want = malloc(dim * sizeof(float));
    for (int r = 0; r < n; r++) {
        float* xr = x + (size_t)r * dim;
        if (with_delta)
            for (int i = 0; i < dim; i++) xr[i] += delta[(size_t)r * dim + i];
        // the residual stream: bit-exact
        EXPECT(memcmp(gx + (size_t)r * dim, xr, dim * sizeof(float)) == 0, "dim %d row %d: x differs", dim, r);
        rmsnorm(want, xr, w, dim, eps);
        for (int i = 0; i < dim; i++)
            check_bf16("rmsnorm", r * dim + i, gout[offset + (size_t)r * dim + i], want[i], 0.0);
    }
    for (size_t i = 0; i < (size_t)offset; i++) EXPECT(gout[i] == GUARD_BF16, "guard %zu before out overwritten", i);
    for (size_t i = offset + nx; i < nx + 1 + 8; i++)
        EXPECT(gout[i] == GUARD_BF16, "guard %zu after out overwritten", i);
    etx_dev_free(d_xbuf);
    etx_dev_free(d_dbuf);
    etx_dev_free(d_obuf);
    etx_dev_free(d_w);
    free(x);
    free(delta);
    free(w);
    free(gx);
    free(gout);
    free(want);
}

START_TEST(test_rmsnorm) {
    static const int dims[] = {576, 100, 98, 7, 1536, 4096};
    static const int rows[] = {1, 3, 17};
    rng_state = rng_seed(2);
    for (int di = 0; di < 6; di++)
        for (int ri = 0; ri < 3; ri++)
            for (int wd = 0; wd < 2; wd++) run_rmsnorm(dims[di], rows[ri], wd, 0);
    run_rmsnorm(576, 3, 1, 1);
    run_rmsnorm(576, 3, 0, 1);
}
END_TEST

// ----------------------------------------------------------------------------
// SwiGLU vs host/cpu/cpu_ops.c swiglu

START_TEST(test_swiglu) {
    static const int hiddens[] = {1536, 100, 7};
    static const int rows[] = {1, 3, 17};
    rng_state = rng_seed(3);
    for (int hi = 0; hi < 3; hi++)
        for (int ri = 0; ri < 3; ri++) {
            int hidden = hiddens[hi], n = rows[ri];
            size_t no = (size_t)n * hidden;
            float* gu = random_f32(2 * no, -6.0f, 6.0f);
            float* d_gu = dev_copy(gu, 2 * no * sizeof(float));
            uint16_t* d_out = etx_dev_malloc((no + 8) * 2);
            etx_dev_memset(d_out, 0xA5, (no + 8) * 2);
            etx_swiglu(d_out, d_gu, n, hidden, NULL);
            uint16_t* out = host_copy(d_out, (no + 8) * 2);
            float* g = malloc((size_t)hidden * sizeof(float));
            float* u = malloc((size_t)hidden * sizeof(float));
            for (int r = 0; r < n; r++) {
                const float* pairs = gu + (size_t)r * 2 * hidden; // unit i: gate 2i, up 2i + 1
                for (int i = 0; i < hidden; i++) g[i] = pairs[2 * i], u[i] = pairs[2 * i + 1];
                swiglu(g, u, hidden); // in place: g <- silu(g) * u
                for (int i = 0; i < hidden; i++)
                    check_bf16("swiglu", r * hidden + i, out[(size_t)r * hidden + i], g[i], 0.0);
            }
            free(g);
            free(u);
            for (int i = 0; i < 8; i++) EXPECT(out[no + i] == GUARD_BF16, "guard %d after out overwritten", i);
            etx_dev_free(d_gu);
            etx_dev_free(d_out);
            free(gu);
            free(out);
        }
}
END_TEST

// ----------------------------------------------------------------------------
// Qwen's biases and per-head QK RMSNorm vs host/cpu/cpu_ops.c add_bias_rows + rmsnorm_heads

// Where element j of a head of hd sits in a padded head of hdp (host/cuda/cuda_weights.c).
static int pad_at(int j, int hd, int hdp) { return j < hd / 2 ? j : hdp / 2 + j - hd / 2; }

// n rows of qkv with heads of hd real elements padded to hdp (padding zero, as the
// zero rows of wqkv make it), a padded bias and padded norm weights; the kernel in place
// vs the twin on the unpadded rows. Biases alone: exact (the same single f32 add). With
// the norm: |got - want| <= (hd + 16) 2^-24 |want|: the sums of hd squares (positive
// terms) differ by at most 2 hd u relative between any two orders, rsqrt halves that, and
// the division, eps add, rsqrtf (2 ulp) and the two products add a few u. Padding lanes
// must stay exactly 0; row 1 (0 of 1) computed alone must give the same bits (batch invariance).
static void run_qkv_prep(int n_heads, int n_kv, int hd, int hdp, int n, int with_bias, int with_norm) {
    const int nh = n_heads + 2 * n_kv, width = nh * hdp, real = nh * hd;
    const float eps = 1e-6f;
    float* x = calloc((size_t)n * width, sizeof(float)); // padded rows
    float* twin = malloc((size_t)n * real * sizeof(float));
    float* bias = calloc(width, sizeof(float));
    float* bias_real = random_f32(real, -2.0f, 2.0f);
    float* qn = calloc(hdp, sizeof(float));
    float* kn = calloc(hdp, sizeof(float));
    float* qn_real = random_f32(hd, 0.2f, 2.0f);
    float* kn_real = random_f32(hd, 0.2f, 2.0f);
    for (int r = 0; r < n; r++)
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < hd; j++) {
                // heads of very different magnitudes, so the norm matters
                float v = rng_range(&rng_state, -1.0f, 1.0f) * (float)(1 + (h * 7 + r) % 13);
                x[(size_t)r * width + h * hdp + pad_at(j, hd, hdp)] = v;
                twin[(size_t)r * real + h * hd + j] = v;
            }
    for (int h = 0; h < nh; h++)
        for (int j = 0; j < hd; j++) bias[h * hdp + pad_at(j, hd, hdp)] = bias_real[h * hd + j];
    for (int j = 0; j < hd; j++) qn[pad_at(j, hd, hdp)] = qn_real[j], kn[pad_at(j, hd, hdp)] = kn_real[j];
    float* d_x = dev_copy(x, (size_t)n * width * sizeof(float));
    const int alone = n > 1 ? 1 : 0; // this row computed alone as well
    float* d_x1 = dev_copy(x + (size_t)alone * width, (size_t)width * sizeof(float));
    float* d_b = dev_copy(bias, width * sizeof(float));
    float* d_qn = dev_copy(qn, hdp * sizeof(float));
    float* d_kn = dev_copy(kn, hdp * sizeof(float));
    EtxAttnShape sh = {n_heads, n_kv, hdp, 16, 1};
    etx_qkv_prep(d_x, with_bias ? d_b : NULL, with_norm ? d_qn : NULL, with_norm ? d_kn : NULL, n, hd, eps, sh, NULL);
    etx_qkv_prep(d_x1, with_bias ? d_b : NULL, with_norm ? d_qn : NULL, with_norm ? d_kn : NULL, 1, hd, eps, sh, NULL);
    float* got = host_copy(d_x, (size_t)n * width * sizeof(float));
    float* got1 = host_copy(d_x1, (size_t)width * sizeof(float));
    const int q_dim = n_heads * hd, kv_dim = n_kv * hd;
    if (with_bias) { // as cpu_forward.c: q, k and v each
        add_bias_rows(twin, real, bias_real, n, q_dim);
        add_bias_rows(twin + q_dim, real, bias_real + q_dim, n, kv_dim);
        add_bias_rows(twin + q_dim + kv_dim, real, bias_real + q_dim + kv_dim, n, kv_dim);
    }
    if (with_norm)
        for (int r = 0; r < n; r++) {
            rmsnorm_heads(twin + (size_t)r * real, qn_real, n_heads, hd, eps);
            rmsnorm_heads(twin + (size_t)r * real + q_dim, kn_real, n_kv, hd, eps);
        }
    const double rel = with_norm ? (hd + 16) * 0x1p-24 : 0.0;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < hdp; j++) {
                const int at = r * width + h * hdp + j;
                const int jr = j < hdp / 2 ? j : j - hdp / 2 + hd / 2; // the real element at j, if any
                const int is_real = j < hdp / 2 ? j < hd / 2 : j - hdp / 2 < hd / 2;
                if (!is_real) {
                    EXPECT(got[at] == 0.0f, "qkv_prep (%d,%d,%d/%d) row %d head %d lane %d: padding %g", n_heads, n_kv,
                           hd, hdp, r, h, j, got[at]);
                    continue;
                }
                const double want = twin[(size_t)r * real + h * hd + jr];
                const int normed = with_norm && h < n_heads + n_kv;
                const double tol = normed ? rel * fabs(want) : 0.0;
                EXPECT(fabs(got[at] - want) <= tol,
                       "qkv_prep (%d,%d,%d/%d bias %d norm %d) row %d head %d elem %d: got %.9g, want %.9g (tol %.3g)",
                       n_heads, n_kv, hd, hdp, with_bias, with_norm, r, h, jr, got[at], want, tol);
            }
    EXPECT(memcmp(got1, got + (size_t)alone * width, (size_t)width * sizeof(float)) == 0,
           "qkv_prep (%d,%d,%d/%d bias %d norm %d): row %d alone differs", n_heads, n_kv, hd, hdp, with_bias, with_norm,
           alone);
    etx_dev_free(d_x);
    etx_dev_free(d_x1);
    etx_dev_free(d_b);
    etx_dev_free(d_qn);
    etx_dev_free(d_kn);
    free(x), free(twin), free(bias), free(bias_real), free(qn), free(kn), free(qn_real), free(kn_real);
    free(got), free(got1);
}

START_TEST(test_qkv_prep) {
    rng_state = rng_seed(9);
    for (int mode = 1; mode <= 3; mode++) { // bias, norm, both
        const int b = mode & 1, nm = (mode >> 1) & 1;
        run_qkv_prep(4, 2, 24, 64, 5, b, nm);   // tiny-qwen3's head_dim, padded
        run_qkv_prep(14, 2, 64, 64, 3, b, nm);  // Qwen2.5-0.5B's heads
        run_qkv_prep(6, 6, 128, 128, 2, b, nm); // Qwen3's head_dim, MHA
        run_qkv_prep(3, 1, 80, 128, 4, b, nm);  // padded to 128
        run_qkv_prep(1, 1, 2, 64, 1, b, nm);    // the smallest head
    }
}
END_TEST

// ----------------------------------------------------------------------------
// paged cache fixtures

// A paged cache of n_seqs sequences with room for max_pos positions each: the block ids
// of all sequences are one shuffled permutation of 0 .. n_blocks - 1 (so no sequence's
// blocks are consecutive or ordered), plus a few blocks nobody owns.
typedef struct {
    EtxAttnShape sh;
    int n_seqs;
    int n_blocks;
    int32_t* table; // (n_seqs, max_blocks)
    size_t pool_elems;
} Cache;

static void build_cache(Cache* c, EtxAttnShape sh, int n_seqs, int max_pos) {
    c->sh = sh;
    c->sh.max_blocks = (max_pos + sh.block_size - 1) / sh.block_size;
    c->n_seqs = n_seqs;
    c->n_blocks = n_seqs * c->sh.max_blocks + 3;
    int* perm = malloc(c->n_blocks * sizeof(int));
    for (int i = 0; i < c->n_blocks; i++) perm[i] = i;
    for (int i = c->n_blocks - 1; i > 0; i--) {
        int j = rng_below(&rng_state, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    c->table = malloc((size_t)n_seqs * c->sh.max_blocks * sizeof(int32_t));
    for (int i = 0; i < n_seqs * c->sh.max_blocks; i++) c->table[i] = perm[i];
    free(perm);
    c->pool_elems = (size_t)c->n_blocks * sh.block_size * sh.n_kv_heads * sh.head_dim;
}

static void free_cache(Cache* c) { free(c->table); }

// index in a pool of (seq, pos, kv head, d)
static size_t cache_at(const Cache* c, int s, int pos, int kvh, int d) {
    int bs = c->sh.block_size;
    size_t block = (size_t)c->table[(size_t)s * c->sh.max_blocks + pos / bs];
    return ((block * bs + pos % bs) * c->sh.n_kv_heads + kvh) * c->sh.head_dim + d;
}

// keys or values 0 .. n - 1 of (s, kvh) decoded to f32, (n, head_dim)
static float* gather(const Cache* c, const uint16_t* pool, int s, int kvh, int n) {
    int hd = c->sh.head_dim;
    float* out = malloc((size_t)(n > 0 ? n : 1) * hd * sizeof(float));
    for (int p = 0; p < n; p++)
        for (int d = 0; d < hd; d++) out[(size_t)p * hd + d] = etx_bf16_to_f32(pool[cache_at(c, s, p, kvh, d)]);
    return out;
}

// ----------------------------------------------------------------------------
// RoPE + KV append vs host/cpu/cpu_ops.c rope_tables/rope_apply

// rows: (seq, pos) pairs, distinct
static void run_rope(int n_heads, int n_kv, int hd, int bs, int llama3, const int* row_seq, const int* row_pos,
                     int n_rows) {
    int half = hd / 2, q_dim = n_heads * hd, kv_dim = n_kv * hd, width = q_dim + 2 * kv_dim;
    ModelConfig mc;
    memset(&mc, 0, sizeof(mc));
    mc.head_dim = hd;
    mc.rope_theta = 500000.0f;
    mc.rope_llama3 = llama3;
    mc.rope_factor = 32.0f;
    mc.rope_low_freq_factor = 1.0f;
    mc.rope_high_freq_factor = 4.0f;
    mc.rope_original_max_pos = 8192;
    float* inv_freq = malloc(half * sizeof(float));
    rope_inv_freq(inv_freq, &mc);

    int max_pos = 0;
    int n_seqs = 0;
    for (int r = 0; r < n_rows; r++) {
        if (row_pos[r] + 1 > max_pos) max_pos = row_pos[r] + 1;
        if (row_seq[r] + 1 > n_seqs) n_seqs = row_seq[r] + 1;
    }
    float* q_guard = malloc((size_t)n_rows * q_dim * sizeof(float));
    for (size_t i = 0; i < (size_t)n_rows * q_dim; i++) q_guard[i] = GUARD_F32;
    Cache c;
    EtxAttnShape sh = {n_heads, n_kv, hd, bs, 0};
    build_cache(&c, sh, n_seqs, max_pos);

    float* qkv = random_f32((size_t)n_rows * width, -2.0f, 2.0f);
    uint16_t* guard = malloc(c.pool_elems * 2);
    for (size_t i = 0; i < c.pool_elems; i++) guard[i] = GUARD_BF16;
    float* d_qkv = dev_copy(qkv, (size_t)n_rows * width * sizeof(float));
    float* d_q = dev_copy(q_guard, (size_t)n_rows * q_dim * sizeof(float));
    uint16_t* d_k = dev_copy(guard, c.pool_elems * 2);
    uint16_t* d_v = dev_copy(guard, c.pool_elems * 2);
    int32_t* d_seq = dev_copy(row_seq, n_rows * sizeof(int32_t));
    int32_t* d_pos = dev_copy(row_pos, n_rows * sizeof(int32_t));
    int32_t* d_table = dev_copy(c.table, (size_t)n_seqs * c.sh.max_blocks * sizeof(int32_t));
    float* d_freq = dev_copy(inv_freq, half * sizeof(float));
    etx_rope_kv_append(d_q, d_k, d_v, d_qkv, d_seq, d_pos, d_table, d_freq, n_rows, c.sh, NULL);
    float* q = host_copy(d_q, (size_t)n_rows * q_dim * sizeof(float));
    uint16_t* kp = host_copy(d_k, c.pool_elems * 2);
    uint16_t* vp = host_copy(d_v, c.pool_elems * 2);

    float* cos_t = malloc(half * sizeof(float));
    float* sin_t = malloc(half * sizeof(float));
    float* head = malloc(hd * sizeof(float));
    char* written = calloc(c.pool_elems, 1);
    for (int r = 0; r < n_rows; r++) {
        if (row_pos[r] < 0) { // padding: q_out row untouched (pools: checked below)
            for (int i = 0; i < q_dim; i++)
                EXPECT(q[(size_t)r * q_dim + i] == GUARD_F32, "padding row %d: q_out[%d] written", r, i);
            continue;
        }
        const float* src = qkv + (size_t)r * width;
        rope_tables(cos_t, sin_t, inv_freq, half, row_pos[r], 1);
        for (int h = 0; h < n_heads + n_kv; h++) {
            memcpy(head, src + h * hd, hd * sizeof(float));
            rope_apply(head, cos_t, sin_t, half);
            for (int d = 0; d < hd; d++) {
                const float* x = src + h * hd;
                double mag = fabs(x[d % half]) + fabs(x[d % half + half]);
                if (h < n_heads) {
                    float got = q[(size_t)r * q_dim + h * hd + d];
                    EXPECT(fabs(got - head[d]) <= ROPE_TOL * mag, "row %d q head %d [%d]: %.9g vs %.9g", r, h, d, got,
                           head[d]);
                } else {
                    size_t at = cache_at(&c, row_seq[r], row_pos[r], h - n_heads, d);
                    check_bf16("k", d, kp[at], head[d], ROPE_TOL * mag);
                    written[at] = 1;
                }
            }
        }
        for (int kvh = 0; kvh < n_kv; kvh++)
            for (int d = 0; d < hd; d++) {
                size_t at = cache_at(&c, row_seq[r], row_pos[r], kvh, d);
                EXPECT(vp[at] == etx_bf16_from_f32(src[q_dim + kv_dim + kvh * hd + d]),
                       "row %d v head %d [%d]: bits %04x", r, kvh, d, vp[at]);
            }
    }
    // nothing else in either pool changed
    for (size_t i = 0; i < c.pool_elems; i++) {
        if (written[i]) continue;
        EXPECT(kp[i] == GUARD_BF16 && vp[i] == GUARD_BF16, "pool element %zu overwritten", i);
    }
    etx_dev_free(d_qkv);
    etx_dev_free(d_q);
    etx_dev_free(d_k);
    etx_dev_free(d_v);
    etx_dev_free(d_seq);
    etx_dev_free(d_pos);
    etx_dev_free(d_table);
    etx_dev_free(d_freq);
    free_cache(&c);
    free(inv_freq);
    free(qkv);
    free(guard);
    free(q_guard);
    free(q);
    free(kp);
    free(vp);
    free(cos_t);
    free(sin_t);
    free(head);
    free(written);
}

START_TEST(test_rope_append) {
    rng_state = rng_seed(4);
    // decode: one row per sequence, different positions (block starts, ends, middles)
    static const int dseq[] = {0, 1, 2, 3, 4};
    static const int dpos[] = {0, 15, 16, 299, 64};
    run_rope(9, 3, 64, 16, 0, dseq, dpos, 5);
    run_rope(8, 8, 128, 32, 1, dseq, dpos, 5);
    run_rope(32, 8, 64, 16, 1, dseq + 3, dpos + 3, 2);
    // prefill: a chunk of 17 rows of sequence 1 at positions 40 .. 56 (crosses blocks)
    int pseq[17], ppos[17];
    for (int i = 0; i < 17; i++) {
        pseq[i] = 1;
        ppos[i] = 40 + i;
    }
    run_rope(9, 3, 64, 16, 0, pseq, ppos, 17);
    run_rope(32, 8, 128, 32, 1, pseq, ppos, 3);
    // odd head_dim / 2 (RoPE itself does not need 64 or 128)
    run_rope(4, 2, 10, 16, 0, dseq, dpos, 5);
    // padding rows (position -1) among real ones: they write nothing
    static const int padseq[] = {0, 1, 2, 3};
    static const int padpos[] = {7, -1, 33, -1};
    run_rope(9, 3, 64, 16, 0, padseq, padpos, 4);
}
END_TEST

// ----------------------------------------------------------------------------
// attention: caches filled with random bf16 keys/values

typedef struct {
    Cache c;
    uint16_t* k; // (pool_elems)
    uint16_t* v;
    uint16_t* d_k;
    uint16_t* d_v;
    int32_t* d_table;
} FilledCache;

static void build_filled(FilledCache* f, EtxAttnShape sh, int n_seqs, int max_pos) {
    build_cache(&f->c, sh, n_seqs, max_pos);
    f->k = random_bf16(f->c.pool_elems, -1.0f, 1.0f);
    f->v = random_bf16(f->c.pool_elems, -1.0f, 1.0f);
    f->d_k = dev_copy(f->k, f->c.pool_elems * 2);
    f->d_v = dev_copy(f->v, f->c.pool_elems * 2);
    f->d_table = dev_copy(f->c.table, (size_t)n_seqs * f->c.sh.max_blocks * sizeof(int32_t));
}

static void free_filled(FilledCache* f) {
    etx_dev_free(f->d_k);
    etx_dev_free(f->d_v);
    etx_dev_free(f->d_table);
    free(f->k);
    free(f->v);
    free_cache(&f->c);
}

static float attn_scale(int hd) { return (float)pow((double)hd, -0.5); }

// The CPU twin (host/cpu/cpu_ops.c attention_head) for the G query heads of one token at
// position pos, sharing one KV head: k, v contiguous (pos + 1, hd), passed as segments of
// 64 positions. out: (G, hd).
#define TWIN_SEG 64
static void twin_attention(float* out, const float* q, const float* k, const float* v, int G, int pos, int hd,
                           float scale, float* scratch) {
    int n_seg = pos / TWIN_SEG + 1;
    const float** kseg = malloc(n_seg * sizeof(float*));
    const float** vseg = malloc(n_seg * sizeof(float*));
    for (int j = 0; j < n_seg; j++) {
        kseg[j] = k + (size_t)j * TWIN_SEG * hd;
        vseg[j] = v + (size_t)j * TWIN_SEG * hd;
    }
    attention_head(out, hd, q, hd, kseg, vseg, TWIN_SEG, 0, hd, G, G, pos, hd, scale, scratch);
    free(kseg);
    free(vseg);
}

// A captured score row srow (max_ctx) of query q against keys k (T, hd):
// srow[t] = scale q . k_t for t < T, the guard after.
static void check_scores(const float* srow, int max_ctx, const float* q, const float* k, int T, int hd, float scale) {
    for (int t = 0; t < T; t++) {
        float dot = 0.0f, mag = 0.0f;
        for (int d = 0; d < hd; d++) {
            dot += q[d] * k[(size_t)t * hd + d];
            mag += fabsf(q[d] * k[(size_t)t * hd + d]);
        }
        double tol = 2.0 * hd * 0x1p-24 * scale * mag + 0x1p-24 * fabs(scale * dot);
        EXPECT(fabs(srow[t] - scale * dot) <= tol, "score %d of %d: %.9g vs %.9g", t, T, srow[t], scale * dot);
    }
    for (int t = T; t < max_ctx; t++) EXPECT(srow[t] == GUARD_F32, "score %d past the end (%d) written", t, T);
}

// Runs etx_attn_rows on n_rows rows (row r: sequence row_seq[r] of the cache at position
// row_pos[r], -1 = padding) with a configured context of max_seq_len and a workspace of
// ws_rows rows, and checks every row against the twin over the row's positions. Scores:
// cap_row (n_rows) sends row r's to capture row cap_row[r] (-1: none) of n_cap rows;
// cap_row NULL: row r's to row r (n_cap = n_rows); a capture row nobody writes must keep
// its guards. out_bits/sc_bits (may be NULL) receive the raw outputs (n_rows, q_dim) and
// captures (n_cap, n_heads, max_ctx) for bitwise comparisons.
static void run_rows(const FilledCache* f, const float* q, const int* row_seq, const int* row_pos, int n_rows,
                     int max_seq_len, int ws_rows, const int* cap_row, int n_cap, uint16_t* out_bits,
                     float* sc_bits) {
    const EtxAttnShape sh = f->c.sh;
    const int n_heads = sh.n_heads, n_kv = sh.n_kv_heads, hd = sh.head_dim;
    const int q_dim = n_heads * hd, G = n_heads / n_kv, max_ctx = max_seq_len;
    const float scale = attn_scale(hd);
    if (!cap_row) n_cap = n_rows;
    size_t n_sc = (size_t)n_cap * n_heads * max_ctx;
    float* sc_guard = malloc(n_sc * sizeof(float));
    for (size_t i = 0; i < n_sc; i++) sc_guard[i] = GUARD_F32;
    float* d_q = dev_copy(q, (size_t)n_rows * q_dim * sizeof(float));
    int32_t* d_seq = dev_copy(row_seq, n_rows * sizeof(int32_t));
    int32_t* d_pos = dev_copy(row_pos, n_rows * sizeof(int32_t));
    int32_t* d_cap = cap_row ? dev_copy(cap_row, n_rows * sizeof(int32_t)) : NULL;
    float* d_sc = dev_copy(sc_guard, n_sc * sizeof(float));
    uint16_t* d_out = etx_dev_malloc((size_t)n_rows * q_dim * 2);
    size_t ws_bytes = etx_attn_workspace_bytes(ws_rows, n_heads, hd, max_seq_len);
    float* d_ws = ws_bytes ? etx_dev_malloc(ws_bytes) : NULL;
    if (d_ws) etx_dev_memset(d_ws, 0, ws_bytes); // its counters start at zero (attention.h)
    etx_attn_rows(d_out, d_sc, d_cap, max_ctx, d_q, f->d_k, f->d_v, f->d_table, d_seq, d_pos, n_rows, max_seq_len,
                  d_ws, ws_rows, sh, NULL);
    uint16_t* out = host_copy(d_out, (size_t)n_rows * q_dim * 2);
    float* sc = host_copy(d_sc, n_sc * sizeof(float));
    if (d_ws) {
        // the workspace's counters are left at zero, so the same call again (the next layer,
        // the next replay of a graph) gives the same bits
        int* cnt = host_copy(d_ws, (size_t)ws_rows * n_heads * sizeof(int));
        for (int i = 0; i < ws_rows * n_heads; i++) EXPECT(cnt[i] == 0, "workspace counter %d left at %d", i, cnt[i]);
        free(cnt);
        uint16_t* d_out2 = etx_dev_malloc((size_t)n_rows * q_dim * 2);
        etx_attn_rows(d_out2, d_sc, d_cap, max_ctx, d_q, f->d_k, f->d_v, f->d_table, d_seq, d_pos, n_rows, max_seq_len,
                      d_ws, ws_rows, sh, NULL);
        uint16_t* out2 = host_copy(d_out2, (size_t)n_rows * q_dim * 2);
        EXPECT(memcmp(out, out2, (size_t)n_rows * q_dim * 2) == 0, "a second call with the same workspace differs");
        free(out2);
        etx_dev_free(d_out2);
    }

    float* want = malloc((size_t)G * hd * sizeof(float));
    float* scratch = malloc(((size_t)G * ATT_BLOCK + 2 * G) * sizeof(float));
    char* cap_written = calloc((size_t)n_cap, 1);
    for (int r = 0; r < n_rows; r++) {
        const int T = row_pos[r] + 1; // 0: padding
        const int cap = cap_row ? cap_row[r] : r;
        if (cap >= 0) cap_written[cap] = 1;
        for (int kvh = 0; kvh < n_kv; kvh++) {
            float* k = gather(&f->c, f->k, row_seq[r], kvh, T);
            float* v = gather(&f->c, f->v, row_seq[r], kvh, T);
            const float* qg = q + (size_t)r * q_dim + (size_t)kvh * G * hd; // G heads, hd apart
            if (T > 0)
                twin_attention(want, qg, k, v, G, T - 1, hd, scale, scratch);
            else
                memset(want, 0, (size_t)G * hd * sizeof(float));
            for (int g = 0; g < G; g++) {
                int h = kvh * G + g;
                for (int d = 0; d < hd; d++)
                    check_bf16("attention out", (r * n_heads + h) * hd + d, out[(size_t)r * q_dim + h * hd + d],
                               want[g * hd + d], ATT_ABS);
                if (cap >= 0)
                    check_scores(sc + ((size_t)cap * n_heads + h) * max_ctx, max_ctx, qg + g * hd, k, T, hd, scale);
            }
            free(k);
            free(v);
        }
    }
    for (int c = 0; c < n_cap; c++)
        if (!cap_written[c])
            for (size_t i = 0; i < (size_t)n_heads * max_ctx; i++)
                EXPECT(sc[(size_t)c * n_heads * max_ctx + i] == GUARD_F32, "capture row %d (no row's) written", c);
    if (out_bits) memcpy(out_bits, out, (size_t)n_rows * q_dim * 2);
    if (sc_bits) memcpy(sc_bits, sc, n_sc * sizeof(float));
    etx_dev_free(d_q);
    etx_dev_free(d_seq);
    etx_dev_free(d_pos);
    if (d_cap) etx_dev_free(d_cap);
    etx_dev_free(d_sc);
    etx_dev_free(d_out);
    if (d_ws) etx_dev_free(d_ws);
    free(sc_guard);
    free(out);
    free(sc);
    free(want);
    free(scratch);
    free(cap_written);
}

// head layouts (n_heads, n_kv_heads): group sizes 3, 1, 4, 8
static const int HEADS[][2] = {{9, 3}, {8, 8}, {32, 8}, {8, 1}};

// decode: a row per sequence at the positions lens[s] - 1 (0: a padding row), rows mapped
// to table rows in reverse when `reversed`
static void run_decode(int n_heads, int n_kv, int hd, int bs, const int* lens, int n_seqs, int max_seq_len,
                       int ws_rows, int reversed) {
    EtxAttnShape sh = {n_heads, n_kv, hd, bs, 0};
    FilledCache f;
    build_filled(&f, sh, n_seqs, max_seq_len);
    float* q = random_f32((size_t)n_seqs * n_heads * hd, -3.0f, 3.0f);
    int *rs = malloc(n_seqs * sizeof(int)), *rp = malloc(n_seqs * sizeof(int));
    for (int s = 0; s < n_seqs; s++) {
        rs[s] = reversed ? n_seqs - 1 - s : s;
        rp[s] = lens[s] - 1;
    }
    run_rows(&f, q, rs, rp, n_seqs, max_seq_len, ws_rows, NULL, 0, NULL, NULL);
    free(rs);
    free(rp);
    free(q);
    free_filled(&f);
}

START_TEST(test_decode_attention) {
    rng_state = rng_seed(5);
    static const int lens[] = {1, 5, 63, 64, 65, 300};
    // every head layout x head_dim x block size, with a context of 300 (2 splits of 256,
    // every row in one launch) and of 1000 (4 splits, empty ones for the short rows; 2
    // rows per launch; rows mapped to table rows in reverse)
    for (int hi = 0; hi < 4; hi++)
        for (int hd = 64; hd <= 128; hd *= 2)
            for (int bs = 16; bs <= 32; bs *= 2) {
                run_decode(HEADS[hi][0], HEADS[hi][1], hd, bs, lens, 6, 300, 6, 0);
                run_decode(HEADS[hi][0], HEADS[hi][1], hd, bs, lens, 6, 1000, 2, 1);
            }
    // a context of one split (no workspace, no merge)
    static const int short_lens[] = {1, 17, 31, 32};
    run_decode(9, 3, 64, 16, short_lens, 4, 32, 0, 0);
    // 17 sequences of random lengths, two of them empty (padding slots of a batch)
    int many[17];
    for (int s = 0; s < 17; s++) many[s] = 1 + rng_below(&rng_state, 600);
    many[3] = many[11] = 0;
    run_decode(9, 3, 64, 16, many, 17, 600, 17, 1);
    run_decode(32, 8, 128, 32, many, 17, 700, 5, 0);
}
END_TEST

START_TEST(test_attention_splits) {
    // fixed by the context alone: the minimum (one 32-position tile) until 64 splits
    // would not hold it, then the fewest tile multiples that do
    ck_assert_int_eq(ETX_ATTN_MIN_SPLIT, 32);
    ck_assert_int_eq(etx_attn_split_len(1), ETX_ATTN_MIN_SPLIT);
    ck_assert_int_eq(etx_attn_n_splits(32), 1);
    ck_assert_int_eq(etx_attn_n_splits(33), 2);
    ck_assert_int_eq(etx_attn_split_len(2048), 32);
    ck_assert_int_eq(etx_attn_n_splits(2048), 64);
    ck_assert_int_eq(etx_attn_split_len(2049), 64); // ceil(2049 / 64) = 33 -> a tile multiple
    ck_assert_int_eq(etx_attn_n_splits(2049), 33);
    ck_assert_int_eq(etx_attn_split_len(4096), 64);
    ck_assert_int_eq(etx_attn_n_splits(4096), 64);
    ck_assert_int_eq(etx_attn_split_len(64 * 256 + 1), 288); // ceil(16385 / 64) = 257 -> a tile multiple
    ck_assert_int_eq(etx_attn_n_splits(64 * 256 + 1), 57);
    ck_assert_int_le(etx_attn_n_splits(1 << 20), ETX_ATTN_MAX_SPLITS);
    ck_assert_int_le(etx_attn_n_splits(131072), ETX_ATTN_MAX_SPLITS);
    ck_assert_uint_eq(etx_attn_workspace_bytes(2, 8, 64, 32), 0);
    ck_assert_uint_eq(etx_attn_workspace_bytes(2, 8, 64, 70), 256 + (size_t)2 * 8 * 3 * 66 * sizeof(float)); // counters first
}
END_TEST

// etx_attn_rows_rope (a decode batch: RoPE and the KV append inside the attention launch)
// against the two launches it replaces, etx_rope_kv_append then etx_attn_rows, each on its
// own copy of the same cache: the outputs, the captured scores and the whole K and V pools
// equal bit for bit (the attention itself is held to the CPU twin by the tests above).
// Rows map to table rows in reverse; a length of 0 is a padding row.
static void run_rope_attention(int n_heads, int n_kv, int hd, int bs, const int* lens, int n_seqs, int max_seq_len,
                               int ws_rows) {
    EtxAttnShape sh = {n_heads, n_kv, hd, bs, 0};
    FilledCache f;
    build_filled(&f, sh, n_seqs, max_seq_len);
    sh = f.c.sh; // with max_blocks
    const int q_dim = n_heads * hd, kv_dim = n_kv * hd, width = q_dim + 2 * kv_dim, half = hd / 2;
    float* qkv = random_f32((size_t)n_seqs * width, -3.0f, 3.0f);
    float* inv_freq = malloc(half * sizeof(float));
    for (int i = 0; i < half; i++) inv_freq[i] = powf(500000.0f, -2.0f * i / hd);
    int32_t *rs = malloc(n_seqs * sizeof(int32_t)), *rp = malloc(n_seqs * sizeof(int32_t));
    for (int r = 0; r < n_seqs; r++) rs[r] = n_seqs - 1 - r, rp[r] = lens[r] - 1;
    const size_t n_sc = (size_t)n_seqs * n_heads * max_seq_len, pool_bytes = f.c.pool_elems * 2;
    float* sc_guard = malloc(n_sc * sizeof(float));
    for (size_t i = 0; i < n_sc; i++) sc_guard[i] = GUARD_F32;
    float* d_qkv = dev_copy(qkv, (size_t)n_seqs * width * sizeof(float));
    float* d_freq = dev_copy(inv_freq, half * sizeof(float));
    int32_t* d_seq = dev_copy(rs, n_seqs * sizeof(int32_t));
    int32_t* d_pos = dev_copy(rp, n_seqs * sizeof(int32_t));
    const size_t ws_bytes = etx_attn_workspace_bytes(ws_rows, n_heads, hd, max_seq_len);
    float* d_ws = ws_bytes ? etx_dev_malloc(ws_bytes) : NULL;
    if (d_ws) etx_dev_memset(d_ws, 0, ws_bytes); // its counters start at zero (attention.h)
    uint16_t* out[2];
    float* sc[2];
    uint16_t *k[2], *v[2];
    for (int fused = 0; fused < 2; fused++) {
        uint16_t* d_k = dev_copy(f.k, pool_bytes);
        uint16_t* d_v = dev_copy(f.v, pool_bytes);
        float* d_sc = dev_copy(sc_guard, n_sc * sizeof(float));
        uint16_t* d_out = etx_dev_malloc((size_t)n_seqs * q_dim * 2);
        if (fused) {
            etx_attn_rows_rope(d_out, d_sc, NULL, max_seq_len, d_qkv, d_k, d_v, f.d_table, d_seq, d_pos, d_freq,
                               n_seqs, max_seq_len, d_ws, ws_rows, sh, NULL);
        } else {
            float* d_q = etx_dev_malloc((size_t)n_seqs * q_dim * sizeof(float));
            etx_rope_kv_append(d_q, d_k, d_v, d_qkv, d_seq, d_pos, f.d_table, d_freq, n_seqs, sh, NULL);
            etx_attn_rows(d_out, d_sc, NULL, max_seq_len, d_q, d_k, d_v, f.d_table, d_seq, d_pos, n_seqs, max_seq_len,
                          d_ws, ws_rows, sh, NULL);
            etx_dev_sync();
            etx_dev_free(d_q);
        }
        out[fused] = host_copy(d_out, (size_t)n_seqs * q_dim * 2);
        sc[fused] = host_copy(d_sc, n_sc * sizeof(float));
        k[fused] = host_copy(d_k, pool_bytes);
        v[fused] = host_copy(d_v, pool_bytes);
        etx_dev_free(d_k), etx_dev_free(d_v), etx_dev_free(d_sc), etx_dev_free(d_out);
    }
    EXPECT(memcmp(out[0], out[1], (size_t)n_seqs * q_dim * 2) == 0, "heads %d/%d hd %d ctx %d: outputs differ",
           n_heads, n_kv, hd, max_seq_len);
    EXPECT(memcmp(sc[0], sc[1], n_sc * sizeof(float)) == 0, "heads %d/%d hd %d ctx %d: captured scores differ", n_heads,
           n_kv, hd, max_seq_len);
    EXPECT(memcmp(k[0], k[1], pool_bytes) == 0 && memcmp(v[0], v[1], pool_bytes) == 0,
           "heads %d/%d hd %d ctx %d: the pools differ after the append", n_heads, n_kv, hd, max_seq_len);
    // the append happened: each real row's key at its position is no longer the filler
    for (int r = 0; r < n_seqs; r++)
        if (rp[r] >= 0) {
            int changed = 0;
            for (int d = 0; d < hd; d++) changed |= k[1][cache_at(&f.c, rs[r], rp[r], 0, d)] != f.k[cache_at(&f.c, rs[r], rp[r], 0, d)];
            EXPECT(changed, "row %d: key at position %d not appended", r, rp[r]);
        }
    for (int i = 0; i < 2; i++) free(out[i]), free(sc[i]), free(k[i]), free(v[i]);
    etx_dev_free(d_qkv), etx_dev_free(d_freq), etx_dev_free(d_seq), etx_dev_free(d_pos);
    if (d_ws) etx_dev_free(d_ws);
    free(qkv), free(inv_freq), free(rs), free(rp), free(sc_guard);
    free_filled(&f);
}

START_TEST(test_attention_rope_decode) {
    rng_state = rng_seed(41);
    static const int lens[] = {1, 0, 33, 64, 65, 300};
    for (int hi = 0; hi < 4; hi++)
        for (int hd = 64; hd <= 128; hd *= 2) {
            run_rope_attention(HEADS[hi][0], HEADS[hi][1], hd, 16, lens, 6, 300, 6); // 10 splits, one launch
            run_rope_attention(HEADS[hi][0], HEADS[hi][1], hd, 32, lens, 6, 1000, 2); // 2 rows per launch
        }
    static const int short_lens[] = {1, 17, 0, 32};
    run_rope_attention(9, 3, 64, 16, short_lens, 4, 32, 0); // one split: no workspace, no merge
    int many[40]; // a batch that fills the GPU (8 KV heads x 40 rows): each block merges in place
    for (int r = 0; r < 40; r++) many[r] = (int)rng_below(&rng_state, 301);
    run_rope_attention(32, 8, 64, 16, many, 40, 300, 40);
}
END_TEST

// prefill: chunks of several sequences' rows concatenated (a chunk = rows of one sequence
// at consecutive positions), each chunk's last row captured into a capture row (one
// chunk not captured; capture row 2 of 3 must stay untouched)
static void run_prefill_chunks(int n_heads, int n_kv, int hd, int bs, int max_seq_len, int ws_rows) {
    enum { N_CHUNKS = 4 };
    // seq, pos0, n, capture row
    static const int chunks[N_CHUNKS][4] = {{2, 0, 17, 1}, {0, 48, 5, -1}, {1, 7, 1, -1}, {1, 280, 20, 0}};
    EtxAttnShape sh = {n_heads, n_kv, hd, bs, 0};
    FilledCache f;
    build_filled(&f, sh, 3, max_seq_len);
    int rs[64], rp[64], cap[64], n_rows = 0;
    for (int c = 0; c < N_CHUNKS; c++)
        for (int i = 0; i < chunks[c][2]; i++) {
            rs[n_rows] = chunks[c][0];
            rp[n_rows] = chunks[c][1] + i;
            cap[n_rows] = i == chunks[c][2] - 1 ? chunks[c][3] : -1;
            n_rows++;
        }
    float* q = random_f32((size_t)n_rows * n_heads * hd, -3.0f, 3.0f);
    run_rows(&f, q, rs, rp, n_rows, max_seq_len, ws_rows, cap, 3, NULL, NULL);
    free(q);
    free_filled(&f);
}

START_TEST(test_prefill_attention) {
    rng_state = rng_seed(6);
    // every head layout x head_dim x block size: chunks across tiles, blocks and the split
    // boundary at 256, in one launch and in slices of 7 rows
    for (int hi = 0; hi < 4; hi++)
        for (int hd = 64; hd <= 128; hd *= 2)
            for (int bs = 16; bs <= 32; bs *= 2) run_prefill_chunks(HEADS[hi][0], HEADS[hi][1], hd, bs, 300, 64);
    run_prefill_chunks(9, 3, 64, 16, 300, 7);
    run_prefill_chunks(32, 8, 128, 32, 2048, 10);
}
END_TEST

// A row's output and captured scores do not depend on the other rows of the launch, on
// the workspace's slicing, or on whether the row comes as a decode token or inside a
// prefill chunk: rows of 3 sequences at positions up to ~1500 with a context of 4096
// (16 splits of 256), run as one launch of all 40 rows, in slices of 3, and one at a
// time, must agree to the bit (and each with the twin).
START_TEST(test_attention_rows_are_batch_invariant) {
    rng_state = rng_seed(8);
    enum { N = 40 };
    const int n_heads = 8, n_kv = 2, hd = 64, bs = 16, max_seq_len = 4096;
    EtxAttnShape sh = {n_heads, n_kv, hd, bs, 0};
    FilledCache f;
    build_filled(&f, sh, 3, 1600);
    // the cache was filled for 1600 positions; a context of 4096 only sets the splits
    int rs[N], rp[N];
    for (int r = 0; r < N; r++) {
        rs[r] = r % 3;
        rp[r] = r < 20 ? 1200 + r : (int)rng_below(&rng_state, 1600); // a prefill run, then scattered rows
    }
    rp[7] = -1; // a padding row
    const int q_dim = n_heads * hd;
    const size_t n_sc = (size_t)N * n_heads * max_seq_len;
    float* q = random_f32((size_t)N * q_dim, -3.0f, 3.0f);
    uint16_t* all = malloc((size_t)N * q_dim * 2);
    float* all_sc = malloc(n_sc * sizeof(float));
    run_rows(&f, q, rs, rp, N, max_seq_len, N, NULL, 0, all, all_sc);
    uint16_t* sliced = malloc((size_t)N * q_dim * 2);
    float* sliced_sc = malloc(n_sc * sizeof(float));
    run_rows(&f, q, rs, rp, N, max_seq_len, 3, NULL, 0, sliced, sliced_sc);
    ck_assert_msg(memcmp(all, sliced, (size_t)N * q_dim * 2) == 0, "outputs differ between 1 launch and slices of 3");
    ck_assert_msg(memcmp(all_sc, sliced_sc, n_sc * sizeof(float)) == 0, "scores differ between 1 launch and slices");
    uint16_t* one = malloc((size_t)q_dim * 2);
    float* one_sc = malloc((size_t)n_heads * max_seq_len * sizeof(float));
    for (int r = 0; r < N; r += 3) { // every third row alone
        run_rows(&f, q + (size_t)r * q_dim, rs + r, rp + r, 1, max_seq_len, 1, NULL, 0, one, one_sc);
        ck_assert_msg(memcmp(one, all + (size_t)r * q_dim, (size_t)q_dim * 2) == 0,
                      "row %d (seq %d pos %d): output alone differs from the output in a launch of %d rows", r, rs[r],
                      rp[r], N);
        ck_assert_msg(memcmp(one_sc, all_sc + (size_t)r * n_heads * max_seq_len,
                             (size_t)n_heads * max_seq_len * sizeof(float)) == 0,
                      "row %d: captured scores alone differ from those in a launch of %d rows", r, N);
    }
    free(q), free(all), free(all_sc), free(sliced), free(sliced_sc), free(one), free(one_sc);
    free_filled(&f);

    // a launch whose rows fill the GPU alone (8 KV heads x 64 rows >= 2 x 132 SMs: one block
    // per (KV head, row), each merging its row's splits in place) against the same rows
    // alone (several blocks per row, merged from the workspace by the last): the same bits
    // (an error of an ulp in the f32 merge moves a bf16 output only now and then: 2 x 64
    // rows x 32 heads x 128 dims, every row alone, make one show)
    for (int draw = 0; draw < 2; draw++) {
        enum { M = 64 };
        const int nh = 32, nkv = 8, ctx = 300, hd = 128;
        EtxAttnShape sh2 = {nh, nkv, hd, bs, 0};
        FilledCache f2;
        build_filled(&f2, sh2, M, ctx);
        int rs2[M], rp2[M];
        for (int r = 0; r < M; r++) rs2[r] = M - 1 - r, rp2[r] = (int)rng_below(&rng_state, ctx);
        rp2[5] = -1, rp2[6] = 0, rp2[7] = ctx - 1;
        const int qd = nh * hd;
        const size_t nsc = (size_t)M * nh * ctx;
        float* q2 = random_f32((size_t)M * qd, -3.0f, 3.0f);
        uint16_t* all2 = malloc((size_t)M * qd * 2);
        float* all2_sc = malloc(nsc * sizeof(float));
        run_rows(&f2, q2, rs2, rp2, M, ctx, 4, NULL, 0, all2, all2_sc); // 4 workspace rows: unused here
        uint16_t* one2 = malloc((size_t)qd * 2);
        float* one2_sc = malloc((size_t)nh * ctx * sizeof(float));
        for (int r = 0; r < M; r++) {
            run_rows(&f2, q2 + (size_t)r * qd, rs2 + r, rp2 + r, 1, ctx, 1, NULL, 0, one2, one2_sc);
            ck_assert_msg(memcmp(one2, all2 + (size_t)r * qd, (size_t)qd * 2) == 0,
                          "row %d (pos %d): merged in place in a launch of %d rows, from the workspace alone: differ",
                          r, rp2[r], M);
        }
        free(q2), free(all2), free(all2_sc), free(one2), free(one2_sc);
        free_filled(&f2);
    }
}
END_TEST

// ----------------------------------------------------------------------------
// the kernels composed as a layer runs them: RoPE + append of a prompt (in chunks),
// prefill attention over it, then one decode step per sequence (RoPE + append at the
// next position, attention of that row; a context of 300: two splits). The twin reads the q and the
// pools the kernels produced (their own accuracy is tested above), so this checks that
// the kernels agree on layouts, positions and tables, and that attention sees exactly
// the keys appended before it.

// q (n_rows, q_dim) f32 and the pools after etx_rope_kv_append of qkv rows at (seq, pos)
static void chain_append(const Cache* c, float* d_q, uint16_t* d_k, uint16_t* d_v, int32_t* d_table, float* d_freq,
                         const int* row_seq, const int* row_pos, int n_rows) {
    int width = (c->sh.n_heads + 2 * c->sh.n_kv_heads) * c->sh.head_dim;
    float* qkv = random_f32((size_t)n_rows * width, -2.0f, 2.0f);
    float* d_qkv = dev_copy(qkv, (size_t)n_rows * width * sizeof(float));
    int32_t* d_seq = dev_copy(row_seq, n_rows * sizeof(int32_t));
    int32_t* d_pos = dev_copy(row_pos, n_rows * sizeof(int32_t));
    etx_rope_kv_append(d_q, d_k, d_v, d_qkv, d_seq, d_pos, d_table, d_freq, n_rows, c->sh, NULL);
    etx_dev_free(d_qkv);
    etx_dev_free(d_seq);
    etx_dev_free(d_pos);
    free(qkv);
}

#define CHAIN_CTX 300 // the configured context: 2 splits (the positions stay below 64)
static void run_chain(int n_heads, int n_kv, int hd, int bs) {
    enum { N_SEQS = 3 };
    static const int prompt[N_SEQS] = {5, 40, 17};
    int q_dim = n_heads * hd, G = n_heads / n_kv, half = hd / 2;
    float scale = attn_scale(hd);
    Cache c;
    EtxAttnShape sh = {n_heads, n_kv, hd, bs, 0};
    build_cache(&c, sh, N_SEQS, 64);
    ModelConfig mc;
    memset(&mc, 0, sizeof(mc));
    mc.head_dim = hd;
    mc.rope_theta = 10000.0f;
    float* inv_freq = malloc(half * sizeof(float));
    rope_inv_freq(inv_freq, &mc);
    float* d_freq = dev_copy(inv_freq, half * sizeof(float));
    uint16_t* d_k = etx_dev_malloc(c.pool_elems * 2);
    uint16_t* d_v = etx_dev_malloc(c.pool_elems * 2);
    etx_dev_memset(d_k, 0, c.pool_elems * 2);
    etx_dev_memset(d_v, 0, c.pool_elems * 2);
    int32_t* d_table = dev_copy(c.table, (size_t)N_SEQS * c.sh.max_blocks * sizeof(int32_t));
    float* d_q = etx_dev_malloc((size_t)64 * q_dim * sizeof(float));
    uint16_t* d_out = etx_dev_malloc((size_t)64 * q_dim * 2);
    float* want = malloc((size_t)G * hd * sizeof(float));
    float* scratch = malloc(((size_t)G * ATT_BLOCK + 2 * G) * sizeof(float));
    float* d_ws = etx_dev_malloc(etx_attn_workspace_bytes(64, n_heads, hd, CHAIN_CTX));
    etx_dev_memset(d_ws, 0, etx_attn_workspace_bytes(64, n_heads, hd, CHAIN_CTX)); // counters at zero

    // prefill: sequence 1 in two chunks (the second attends to the first's keys)
    for (int s = 0; s < N_SEQS; s++) {
        int cuts[3] = {0, s == 1 ? 24 : prompt[s], prompt[s]};
        for (int ch = 0; ch < 2; ch++) {
            int pos0 = cuts[ch], n = cuts[ch + 1] - cuts[ch];
            if (n == 0) continue;
            int rs[64], rp[64];
            for (int i = 0; i < n; i++) {
                rs[i] = s;
                rp[i] = pos0 + i;
            }
            chain_append(&c, d_q, d_k, d_v, d_table, d_freq, rs, rp, n);
            int32_t* d_rs = dev_copy(rs, n * sizeof(int32_t));
            int32_t* d_rp = dev_copy(rp, n * sizeof(int32_t));
            etx_attn_rows(d_out, NULL, NULL, 0, d_q, d_k, d_v, d_table, d_rs, d_rp, n, CHAIN_CTX, d_ws, 64, c.sh,
                          NULL);
            etx_dev_free(d_rs);
            etx_dev_free(d_rp);
            float* q = host_copy(d_q, (size_t)n * q_dim * sizeof(float));
            uint16_t* out = host_copy(d_out, (size_t)n * q_dim * 2);
            uint16_t* kp = host_copy(d_k, c.pool_elems * 2);
            uint16_t* vp = host_copy(d_v, c.pool_elems * 2);
            for (int kvh = 0; kvh < n_kv; kvh++) {
                float* k = gather(&c, kp, s, kvh, pos0 + n);
                float* v = gather(&c, vp, s, kvh, pos0 + n);
                for (int i = 0; i < n; i++) {
                    twin_attention(want, q + (size_t)i * q_dim + (size_t)kvh * G * hd, k, v, G, pos0 + i, hd, scale,
                                   scratch);
                    for (int e = 0; e < G * hd; e++)
                        check_bf16("chain prefill", i * q_dim + kvh * G * hd + e,
                                   out[(size_t)i * q_dim + (size_t)kvh * G * hd + e], want[e], ATT_ABS);
                }
                free(k);
                free(v);
            }
            free(q);
            free(out);
            free(kp);
            free(vp);
        }
    }

    // one decode step: every sequence's next token, batch row r holding sequence rs[r]
    int rs[N_SEQS] = {2, 0, 1}, rp[N_SEQS], lens[N_SEQS], max_len = 0;
    for (int r = 0; r < N_SEQS; r++) {
        rp[r] = prompt[rs[r]];
        lens[r] = rp[r] + 1;
        max_len = lens[r] > max_len ? lens[r] : max_len;
    }
    chain_append(&c, d_q, d_k, d_v, d_table, d_freq, rs, rp, N_SEQS);
    (void)max_len;
    int32_t* d_rp = dev_copy(rp, sizeof(rp));
    int32_t* d_rs = dev_copy(rs, sizeof(rs));
    etx_attn_rows(d_out, NULL, NULL, 0, d_q, d_k, d_v, d_table, d_rs, d_rp, N_SEQS, CHAIN_CTX, d_ws, 64, c.sh, NULL);
    float* q = host_copy(d_q, (size_t)N_SEQS * q_dim * sizeof(float));
    uint16_t* out = host_copy(d_out, (size_t)N_SEQS * q_dim * 2);
    uint16_t* kp = host_copy(d_k, c.pool_elems * 2);
    uint16_t* vp = host_copy(d_v, c.pool_elems * 2);
    for (int r = 0; r < N_SEQS; r++)
        for (int kvh = 0; kvh < n_kv; kvh++) {
            float* k = gather(&c, kp, rs[r], kvh, lens[r]);
            float* v = gather(&c, vp, rs[r], kvh, lens[r]);
            twin_attention(want, q + (size_t)r * q_dim + (size_t)kvh * G * hd, k, v, G, lens[r] - 1, hd, scale,
                           scratch);
            for (int e = 0; e < G * hd; e++)
                check_bf16("chain decode", r * q_dim + kvh * G * hd + e,
                           out[(size_t)r * q_dim + (size_t)kvh * G * hd + e], want[e], ATT_ABS);
            free(k);
            free(v);
        }
    etx_dev_free(d_ws);
    etx_dev_free(d_rp);
    etx_dev_free(d_rs);
    etx_dev_free(d_freq);
    etx_dev_free(d_k);
    etx_dev_free(d_v);
    etx_dev_free(d_table);
    etx_dev_free(d_q);
    etx_dev_free(d_out);
    free_cache(&c);
    free(inv_freq);
    free(want);
    free(scratch);
    free(q);
    free(out);
    free(kp);
    free(vp);
}

START_TEST(test_layer_chain) {
    rng_state = rng_seed(7);
    run_chain(9, 3, 64, 16);
    run_chain(32, 8, 128, 32);
}
END_TEST

// ----------------------------------------------------------------------------
// gather of rows (the prefill picks' last rows): an exact copy, nothing else written

static void run_gather(int width, int n_src, const int32_t* idx, int n) {
    const int rows = n_src + n + 2; // two guard rows past the destinations
    float* a = random_f32((size_t)rows * width, -3.0f, 3.0f);
    float* b = random_f32((size_t)rows * width, -3.0f, 3.0f);
    float* d_a = dev_copy(a, (size_t)rows * width * sizeof(float));
    float* d_b = dev_copy(b, (size_t)rows * width * sizeof(float));
    int32_t* d_idx = dev_copy(idx, n * sizeof(int32_t));
    etx_gather_rows2(d_a, d_b, d_idx, n, n_src, width, NULL);
    float* ga = host_copy(d_a, (size_t)rows * width * sizeof(float));
    float* gb = host_copy(d_b, (size_t)rows * width * sizeof(float));
    for (int r = 0; r < rows; r++) {
        const int from = r >= n_src && r < n_src + n ? idx[r - n_src] : r; // copied, or unchanged
        EXPECT(memcmp(ga + (size_t)r * width, a + (size_t)from * width, width * sizeof(float)) == 0 &&
                   memcmp(gb + (size_t)r * width, b + (size_t)from * width, width * sizeof(float)) == 0,
               "width %d: row %d is not row %d of the input", width, r, from);
    }
    etx_dev_free(d_a);
    etx_dev_free(d_b);
    etx_dev_free(d_idx);
    free(a), free(b), free(ga), free(gb);
}

START_TEST(test_gather_rows) {
    rng_state = rng_seed(9);
    static const int32_t idx[] = {7, 0, 3, 3, 9};
    run_gather(576, 10, idx, 5);  // 16-byte path, a repeated index
    run_gather(30, 10, idx, 5);   // width % 4 != 0: the scalar path
    run_gather(2048, 10, idx + 4, 1);
}
END_TEST

// ----------------------------------------------------------------------------
// copy-on-write block copies: every pool gets the same copies, bit for bit; the twin is a
// memcpy of each block in each pool, and every block not a destination stays unchanged

static void run_kv_copy(int n_pools, int n_blocks, size_t block_elems, const int32_t* pairs, int n) {
    const size_t pool_elems = (size_t)n_blocks * block_elems;
    etx_bf16** pools = calloc((size_t)n_pools, sizeof *pools);   // host contents
    etx_bf16** want = calloc((size_t)n_pools, sizeof *want);     // the twin's result
    etx_bf16** d_pools = calloc((size_t)n_pools, sizeof *d_pools); // device pools
    for (int p = 0; p < n_pools; p++) {
        pools[p] = malloc(pool_elems * sizeof(etx_bf16));
        for (size_t e = 0; e < pool_elems; e++) pools[p][e] = (etx_bf16)(rng_next_u32(&rng_state) >> 16);
        want[p] = malloc(pool_elems * sizeof(etx_bf16));
        memcpy(want[p], pools[p], pool_elems * sizeof(etx_bf16));
        for (int i = 0; i < n; i++) // the twin: one memcpy per block per pool, in order
            memcpy(want[p] + (size_t)pairs[2 * i + 1] * block_elems, want[p] + (size_t)pairs[2 * i] * block_elems,
                   block_elems * sizeof(etx_bf16));
        d_pools[p] = dev_copy(pools[p], pool_elems * sizeof(etx_bf16));
    }
    etx_bf16** d_table = dev_copy(d_pools, (size_t)n_pools * sizeof *d_pools);
    const int32_t none[2] = {0, 0};
    int32_t* d_pairs = dev_copy(n ? pairs : none, (size_t)(n ? n : 1) * 2 * sizeof(int32_t));
    etx_kv_copy_blocks(d_table, n_pools, d_pairs, n, block_elems, NULL);
    for (int p = 0; p < n_pools; p++) {
        etx_bf16* got = host_copy(d_pools[p], pool_elems * sizeof(etx_bf16));
        for (int k = 0; k < n_blocks; k++)
            EXPECT(memcmp(got + (size_t)k * block_elems, want[p] + (size_t)k * block_elems,
                          block_elems * sizeof(etx_bf16)) == 0,
                   "pools %d, block of %zu values: pool %d block %d differs from the twin's", n_pools, block_elems, p,
                   k);
        free(got);
        etx_dev_free(d_pools[p]);
        free(pools[p]), free(want[p]);
    }
    etx_dev_free(d_table);
    etx_dev_free(d_pairs);
    free(pools), free(want), free(d_pools);
}

START_TEST(test_kv_copy_blocks) {
    rng_state = rng_seed(11);
    static const int32_t pairs[] = {2, 5, 0, 7, 2, 4}; // block 2 copied twice (a fork's siblings)
    run_kv_copy(6, 9, 8 * 64, pairs, 3);   // 16-byte path: 8 positions x 64 values per block
    run_kv_copy(4, 9, 3 * 5, pairs, 3);    // block_elems % 8 != 0: the scalar path
    run_kv_copy(2, 9, 64 * 512, pairs + 2, 2); // a Llama-3.2-1B-sized block (64 positions x 8 heads x 64)
    run_kv_copy(3, 4, 8 * 64, pairs, 0);   // no copies: nothing changes
}
END_TEST

static Suite* layer_suite(void) {
    Suite* s = suite_create("layer_kernels");
    struct {
        const char* name;
        const TTest* test;
    } cases[] = {{"embed", test_embed},
                 {"rmsnorm", test_rmsnorm},
                 {"swiglu", test_swiglu},
                 {"qkv_prep", test_qkv_prep},
                 {"rope_append", test_rope_append},
                 {"attention_splits", test_attention_splits},
                 {"decode", test_decode_attention},
                 {"rope_decode", test_attention_rope_decode},
                 {"prefill", test_prefill_attention},
                 {"rows_invariant", test_attention_rows_are_batch_invariant},
                 {"chain", test_layer_chain},
                 {"gather", test_gather_rows},
                 {"kv_copy", test_kv_copy_blocks}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase* tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) {
    char dev_name[256];
    if (!check_device_present(dev_name, sizeof dev_name)) return CHECK_SKIPPED; // no GPU (asked in a child)
    return check_run_suite(layer_suite());
}
