/*
 * metrics.c — the CPU reference of the entropix signals (metrics.h): entropy and
 * varentropy of the next-token distribution (logit_metrics), and the last layer's
 * attention entropy, varentropy over heads, agreement and interaction strength
 * (attn_metrics), in the corrected form (valid positions only) or the reference's
 * compatibility form (a window padded with zero scores, handled in closed form).
 *
 * Arithmetic is double inside, float out. Definitions: research/entropix-spec.md §1.
 */
#include "metrics.h"

#include <math.h>

#define LN2 0.69314718055994530942

// ----------------------------------------------------------------------------
// logits

// Running statistics of a set of logits under weights w_i = exp(x_i - m):
// m = max so far, z = sum w, mean = sum w x / z, m2 = sum w (x - mean)^2.
typedef struct {
    double m, z, mean, m2;
} LogitAcc;

// Merges one logit x into a (Chan's pairwise update with a set of weight e^{x-m}, mean x,
// m2 0): mean' = (z mean + w x) / z', m2' = m2 + (x - mean)^2 z w / z'.
static void acc_push(LogitAcc* a, double x) {
    if (x == -INFINITY) return; // probability 0 (and e^{x - m} would be NaN while m = -inf)
    if (x > a->m) { // new maximum: weights so far shrink by e^{m - x}
        double c = exp(a->m - x); // 0 when a is empty (m = -inf)
        a->z *= c;
        a->m2 *= c;
        a->m = x;
    }
    double w = exp(x - a->m);
    if (w == 0.0) return; // -inf, or negligible next to the maximum
    double z = a->z + w;
    double fa = a->z / z, fw = w / z; // the convex weights of the old set and of x
    double d = x - a->mean;
    // mean += d w / z' (exact for equal values); when the old set's weight has vanished
    // next to a fresh maximum the mean is x itself, not the rounded mean + (x - mean)
    a->mean = fa == 0.0 ? x : a->mean + d * fw;
    a->m2 += d * d * fa * w;
    a->z = z;
}

// H = log Z - E_p[x] (nats) = (m - mean) + ln z;  V = Var_p[x] = m2 / z (nats^2)
LogitMetrics logit_metrics(const float* logits, int n) {
    LogitAcc a = {-INFINITY, 0.0, 0.0, 0.0};
    for (int i = 0; i < n; i++) acc_push(&a, (double)logits[i]);
    LogitMetrics r = {0.0f, 0.0f, -INFINITY};
    if (a.z == 0.0) return r; // no finite logit: nothing to measure
    double h = (a.m - a.mean) + log(a.z);
    if (h < 0.0) h = 0.0; // rounding only: entropy is non-negative
    r.entropy = (float)(h / LN2);
    r.varentropy = (float)(a.m2 / a.z / (LN2 * LN2));
    r.log_z = (float)(a.m + log(a.z));
    return r;
}

// ----------------------------------------------------------------------------
// attention

// Clip floor of the reference's log2 in its attention entropy.
#define REF_CLIP 1e-10
// Heads whose zero-slot probability is kept on the stack; more heads recompute it.
#define P0_CACHE 256

// Normaliser of one head over its n real scores and u zero slots:
// m = max(max s, 0 if u > 0), z = sum_k e^{s_k - m} + u e^{-m}.
static void head_norm(const float* s, int n, long u, double* m, double* z) {
    double mx = u > 0 ? 0.0 : -INFINITY;
    for (int k = 0; k < n; k++) mx = s[k] > mx ? s[k] : mx;
    double sum = u > 0 ? (double)u * exp(-mx) : 0.0;
    for (int k = 0; k < n; k++) sum += exp(s[k] - mx);
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
        head_norm(s, n_pos, u, &m, &z);
        double lnz = log(z), ent = 0.0;
        for (int k = 0; k < n_pos; k++) {
            double lnp = ((double)s[k] - m) - lnz; // ln P_hk
            double pk = exp(lnp);
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

    // agreement at the real positions: mean over heads in double, then |P - mean|
    double agree = 0.0;
    for (int k = 0; k < n_pos; k++) {
        double mean = 0.0;
        for (int h = 0; h < n_heads; h++) mean += scratch[(size_t)h * n_pos + k];
        mean /= n_heads;
        for (int h = 0; h < n_heads; h++) agree += fabs(scratch[(size_t)h * n_pos + k] - mean);
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
                head_norm(scores + (size_t)h * n_pos, n_pos, u, &m, &z);
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
