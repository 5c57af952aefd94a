/*
 * metrics.c — the CPU reference of the entropix signals (metrics.h): entropy and
 * varentropy of the next-token distribution (logit_metrics), and the last layer's
 * attention entropy, varentropy over heads, agreement and interaction strength
 * (attn_metrics), in the corrected form (valid positions only) or the reference's
 * compatibility form (a window padded with zero scores, handled in closed form).
 *
 * Arithmetic is double inside, float out. Definitions: docs/entropix.md §1.
 * logit_metrics reads the logits once, in blocks of LOGIT_BLOCK whose (max, normaliser,
 * mean, M2) are merged Chan-style, means kept relative to the running max.
 * attn_metrics uses scratch for the probabilities (n_heads * n_pos floats of the
 * (n_heads + 1) * n_pos metrics.h asks for); the window's zero slots cost O(n_heads).
 */
#include "policy/metrics.h"

#include "common.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define LN2 0.69314718055994530942

// ----------------------------------------------------------------------------
// logits

// Statistics of a set of logits under weights w_i = e^{x_i - m}, centred on the max:
// m = max, z = sum w, c = mean - m with mean = sum w x / z, m2 = sum w (x - mean)^2.
// Centring keeps the mean exact for equal logits, whatever their magnitude.
// Beside them the plain moments of the finite logits (top-nσ's sigma): n = count,
// mu = mean, s2 = sum (x - mu)^2, merged the same way with count weights.
typedef struct {
    double m, z, c, m2;
    double n, mu, s2;
} LogitAcc;

// Logits per block: a block's statistics are computed directly (its weights kept in L1),
// then merged into the running ones.
#define LOGIT_BLOCK 256

// Statistics of one block x[0..n) (m = -inf, z = 0 when it has no finite logit):
// c = sum e (x - m) / z, m2 = sum e ((x - m) - c)^2, e = e^{x - m}.
// The plain moments: count and sum beside the max, mu = sum / n, then s2 in a second pass.
static LogitAcc block_stats(const float* x, int n) {
    LogitAcc b = {-INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        b.m = x[i] > b.m ? x[i] : b.m;
        if (x[i] != -INFINITY) b.n += 1.0, sum += (double)x[i];
    }
    if (b.m == -INFINITY) return b;
    b.mu = sum / b.n;
    for (int i = 0; i < n; i++)
        if (x[i] != -INFINITY) b.s2 += ((double)x[i] - b.mu) * ((double)x[i] - b.mu);
    double e[LOGIT_BLOCK], s = 0.0;
    for (int i = 0; i < n; i++) {
        e[i] = exp((double)x[i] - b.m); // 0 for -inf
        b.z += e[i];
        if (e[i] > 0.0) s += e[i] * ((double)x[i] - b.m);
    }
    b.c = s / b.z;
    for (int i = 0; i < n; i++) {
        if (e[i] == 0.0) continue;
        double d = ((double)x[i] - b.m) - b.c;
        b.m2 += e[i] * d * d;
    }
    return b;
}

// Merges b into a (Chan): on the common max M the weights become za = a.z e^{a.m - M},
// zb = b.z e^{b.m - M}; with d = mean_b - mean_a, mean = mean_a + d zb / z,
// m2 = a.m2' + b.m2' + d^2 za zb / z (the m2 rescaled like the weights).
static void acc_merge(LogitAcc* a, const LogitAcc* b) {
    if (b->n == 0.0) return; // no finite logit (then z = 0 too)
    if (a->n == 0.0) {
        *a = *b;
        return;
    }
    {   // plain moments: d = mu_b - mu_a, mu = mu_a + d nb / n, s2 = s2a + s2b + d^2 na nb / n
        const double n = a->n + b->n, d = b->mu - a->mu;
        a->mu += d * (b->n / n);
        a->s2 += b->s2 + d * d * (a->n * (b->n / n));
        a->n = n;
    }
    double M = a->m > b->m ? a->m : b->m;
    double sa = exp(a->m - M), sb = exp(b->m - M); // one of them is 1
    double za = a->z * sa, zb = b->z * sb, z = za + zb;
    double ca = a->c + (a->m - M), cb = b->c + (b->m - M); // the means, relative to M
    if (za == 0.0) { // a vanishes next to b (far below it): b alone, exactly
        a->c = cb, a->m2 = b->m2 * sb;
    } else if (zb == 0.0) {
        a->c = ca, a->m2 = a->m2 * sa;
    } else {
        double d = cb - ca, fb = zb / z;
        a->c = ca + d * fb;
        a->m2 = a->m2 * sa + b->m2 * sb + d * d * (za * fb);
    }
    a->m = M;
    a->z = z;
}

// H = log Z - E_p[x] (nats) = ln z - c;  V = Var_p[x] = m2 / z (nats^2);  log Z = m + ln z
LogitMetrics logit_metrics(const float* logits, int n) {
    LogitAcc a = {-INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    for (int i0 = 0; i0 < n; i0 += LOGIT_BLOCK) {
        LogitAcc b = block_stats(logits + i0, n - i0 < LOGIT_BLOCK ? n - i0 : LOGIT_BLOCK);
        acc_merge(&a, &b);
    }
    LogitMetrics r = {0.0f, 0.0f, -INFINITY, -INFINITY, 0.0f};
    if (a.z == 0.0) return r; // no finite logit: nothing to measure
    r.max = (float)a.m;
    r.sigma = (float)sqrt(a.s2 / a.n);
    double h = log(a.z) - a.c;
    if (h < 0.0) h = 0.0; // rounding only: entropy is non-negative
    r.entropy = (float)(h / LN2);
    r.varentropy = (float)(a.m2 / a.z / (LN2 * LN2));
    r.log_z = (float)(a.m + log(a.z));
    return r;
}

// One pass over the row's exponent bits (etx_floats_nonfinite, as the loaders' weight scan).
int logits_nonfinite(const float* logits, int n) { return n > 0 ? etx_floats_nonfinite(logits, (size_t)n) : 0; }

// ----------------------------------------------------------------------------
// attention

// Clip floor of the reference's log2 in its attention entropy.
#define REF_CLIP 1e-10
// Heads whose zero-slot probability is kept on the stack; more heads recompute it.
#define P0_CACHE 256
// Positions per block of the agreement loop.
#define AGREE_BLOCK 128

// Normaliser of one head over its n real scores and u zero slots:
// m = max(max s, 0 if u > 0), z = sum_k e^{s_k - m} + u e^{-m}; e (optional) gets e^{s_k - m}.
static void head_norm(const float* s, int n, long u, double* m, double* z, float* e) {
    double mx = u > 0 ? 0.0 : -INFINITY;
    for (int k = 0; k < n; k++) mx = s[k] > mx ? s[k] : mx;
    double sum = u > 0 ? (double)u * exp(-mx) : 0.0;
    for (int k = 0; k < n; k++) {
        double ek = exp(s[k] - mx);
        sum += ek;
        if (e) e[k] = (float)ek;
    }
    *m = mx;
    *z = sum;
}

// One position's entropy term in nats, -p ln p, from p and ln p; compat clips p at 1e-10
// inside the log as the reference does (0 when p = 0 either way).
static double ent_term(double p, double lnp, int compat) {
    if (p == 0.0) return 0.0;
    if (compat && p < REF_CLIP) return -p * log(REF_CLIP);
    return -p * lnp;
}

// Per head P = softmax over window slots; entropy_h = -sum P log2 P (clipped in compat);
// attn_entropy = mean_h, attn_varentropy = mean_h (entropy_h - attn_entropy)^2;
// agreement = mean_{h,k} |P_hk - mean_h' P_h'k|; interaction = mean_{h,k} |s_hk|.
AttnMetrics attn_metrics(const float* scores, int n_heads, int n_pos, int window, float* scratch) {
    AttnMetrics r = {0.0f, 0.0f, 0.0f, 0.0f};
    if (n_heads <= 0 || n_pos <= 0) return r;
    int compat = window > 0;
    long u = compat && window > n_pos ? (long)window - n_pos : 0; // zero slots
    double slots = (double)n_pos + (double)u;

    // pass over heads: normaliser, probabilities (into scratch), entropy (Welford over
    // heads for its mean and variance), sum of |s|
    double ent_mean = 0.0, ent_m2 = 0.0, abs_sum = 0.0, p0_sum = 0.0;
    double p0_cache[P0_CACHE];
    for (int h = 0; h < n_heads; h++) {
        const float* s = scores + (size_t)h * n_pos;
        float* p = scratch + (size_t)h * n_pos;
        double m, z;
        head_norm(s, n_pos, u, &m, &z, p);
        double lnz = log(z), inv_z = 1.0 / z, ent = 0.0;
        for (int k = 0; k < n_pos; k++) {
            double lnp = ((double)s[k] - m) - lnz; // ln P_hk
            double pk = p[k] * inv_z;               // P_hk (float precision, no second exp)
            ent += ent_term(pk, lnp, compat);
            p[k] = (float)pk;
            abs_sum += fabs((double)s[k]);
        }
        if (u > 0) { // the zero slots: all P = e^{-m} / z, score 0
            double lnp0 = -m - lnz, p0 = exp(lnp0);
            ent += (double)u * ent_term(p0, lnp0, compat);
            p0_sum += p0;
            if (h < P0_CACHE) p0_cache[h] = p0;
        }
        ent /= LN2;
        double d = ent - ent_mean;
        ent_mean += d / (h + 1);
        ent_m2 += d * (ent - ent_mean);
    }

    // agreement at the real positions: mean over heads in double, then |P - mean|, a
    // block of positions at a time so that the rows are read in order
    double agree = 0.0, mean[AGREE_BLOCK];
    for (int k0 = 0; k0 < n_pos; k0 += AGREE_BLOCK) {
        int nb = n_pos - k0 < AGREE_BLOCK ? n_pos - k0 : AGREE_BLOCK;
        for (int k = 0; k < nb; k++) mean[k] = 0.0;
        for (int h = 0; h < n_heads; h++) {
            const float* p = scratch + (size_t)h * n_pos + k0;
            for (int k = 0; k < nb; k++) mean[k] += p[k];
        }
        for (int k = 0; k < nb; k++) mean[k] /= n_heads;
        for (int h = 0; h < n_heads; h++) {
            const float* p = scratch + (size_t)h * n_pos + k0;
            for (int k = 0; k < nb; k++) agree += fabs(p[k] - mean[k]);
        }
    }
    // at the zero slots: u equal terms per head
    if (u > 0) {
        double p0_mean = p0_sum / n_heads;
        for (int h = 0; h < n_heads; h++) {
            double p0;
            if (h < P0_CACHE) {
                p0 = p0_cache[h];
            } else {
                double m, z;
                head_norm(scores + (size_t)h * n_pos, n_pos, u, &m, &z, NULL);
                p0 = exp(-m - log(z));
            }
            agree += (double)u * fabs(p0 - p0_mean);
        }
    }

    r.attn_entropy = (float)ent_mean;
    r.attn_varentropy = (float)(ent_m2 / n_heads);
    r.agreement = (float)(agree / ((double)n_heads * slots));
    r.interaction = (float)(abs_sum / ((double)n_heads * slots));
    return r;
}
