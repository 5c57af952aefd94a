/*
 * policy_dslider.h — dslider, entropix's adaptive Dirichlet sampler (entropix-spec §3,
 * reference main 0a7f7bb), corrected, shared by the CPU (host/cpu/cpu_backend.c) and the
 * device (kernels/policy_step.cu) so both pick the same token and leave the same state:
 *
 *   ds_special:  digamma ψ, trigamma ψ1, tetragamma ψ2 and lnΓ (recurrence up to x >= 6,
 *                then the asymptotic series), cos on [-2, 2] (Taylor);
 *   ds_temp_tune: the temperature T at which softmax(x / T) has a target entropy
 *                (10 Halley steps from T = 1, the reference's schedule);
 *   ds_fit_dirichlet: the Dirichlet α whose expected log-probabilities are t
 *                (ψ(α_i) - ψ(Σα) = t_i; 140 quasi-Halley steps, Sherman-Morrison);
 *   ds_dirichlet_draw: a Dirichlet sample from Philox (Marsaglia-Tsang Gamma draws);
 *   dslider_decide: one step: the state's EMAs, the outlier test, the inlier argmax /
 *                entropy-matched top-k draw, or the outlier path (temperature to a target
 *                entropy, the support's EMA, the Dirichlet fit, its draw and the mix), and
 *                the state after the token.
 *
 * Where etx departs from the reference, and why (docs/policies.md, "dslider", says it for
 * users):
 *   - Support. The reference fits a Dirichlet over all 128256 token ids, 140 iterations of
 *     digamma/trigamma/tetragamma per id per token, and its own comment says the support
 *     should be cut to the tokens above the noise floor. etx runs the step on the
 *     ETX_DSLIDER_CANDIDATES most likely tokens (the vocabulary pass's candidates; the
 *     step's entropy and varentropy stay the whole vocabulary's) and keeps the Dirichlet on
 *     the first `support` of them by rank: the state's vectors follow "the k-th most likely
 *     token", the shape of the distribution, not fixed ids. The token is always one of the
 *     candidates. The state is a few hundred bytes per request (DSliderState).
 *   - Initial state. The reference averages the metrics over every prompt position's
 *     logits; etx computes logits at the last prompt position only, so the state starts
 *     from the first step's own distribution (the same formulas on one position).
 *   - NaN: the naked token cross-entropy uses the token's log-probability (the reference
 *     takes ln of a log-probability, NaN at every uncertain token, after which the outlier
 *     score is NaN and the outlier path never runs again).
 *   - The token cross-entropy variance is the squared deviation of the surprisal from its
 *     EMA, (EMA + ln p)^2 (the reference's (EMA - ln p)^2 is (2 surprisal)^2 at steady state).
 *   - The Dirichlet log-likelihood has its normaliser's sign right
 *     (lnΓ(Σα) - Σ lnΓ(α_i) + Σ (α_i - 1) ln p_i); the initial EMA tracks -loglik as the
 *     step does (the reference starts it at +loglik).
 *   - The outlier target entropy uses the sequence's own temperature EMA (the reference sums
 *     8 / T over the batch).
 *   - Every draw has its own Philox counter (the reference reuses one key for the Dirichlet
 *     sample and the categorical draw, and the same key at every step).
 *   - The KL divergences in the EMA weights are clamped at >= 0 (rounding can make them
 *     slightly negative, and base^(-x / (KL + 1e-8)) then overflows); α is kept in
 *     [1e-4, 1e6]; T, the support EMA and α stay float (the reference rounds them to bf16).
 *   - The quadrant wrapper of sampler.py (HELV -> token 2564, HEHV -> rerun with the same
 *     key) is not part of the policy: the entropix kind is etx's quadrant tree.
 * With the reference's coefficients (all positive) the outlier score is positive whenever
 * any state entropy is, so nearly every token takes the outlier path, and its target
 * entropy (sum of four entropies + 8 / T) is beyond what the candidates can hold, so the
 * tuned distribution is flat over them: the spec's "revisit coefficients". Every
 * coefficient is a policy parameter for that reason.
 *
 * Exactness: float arithmetic in a fixed order, no FMA contraction, etx_expf / etx_logf
 * (exact_math.h), IEEE division and sqrtf (correctly rounded on both sides): the same bits
 * on the host and the device. Cost per token: the Dirichlet fit, 140 x support x ~60 flops
 * (~0.3 Mflop at support 32), two temperature searches of 10 x 3 passes over <= 128
 * candidates, <= 32 Gamma draws: a thread per sequence on the device, ~0.1 ms on one core.
 *
 * Header-only plain C99 (ETX_HD marks functions __host__ __device__ under nvcc).
 */
#ifndef ETX_POLICY_DSLIDER_H
#define ETX_POLICY_DSLIDER_H

#include "policy_math.h"

// Candidates the step reads: the vocabulary pass's top-K (kernels/vocab_pass.h ETX_TOPK);
// the CPU gathers the same list.
#define ETX_DSLIDER_CANDIDATES 128

#define DS_EPS 1e-8f
#define DS_LN_EPS (-18.420680744f) // ln(1e-8)
#define DS_MIN_ALPHA 1e-4f
#define DS_MAX_ALPHA 1e6f
#define DS_FIT_ITERS 140
#define DS_TUNE_ITERS 10
// Philox counter word 1 of the draws: the token's draw is 0; each Gamma draw of support
// rank i takes words DS_GAMMA_DRAW + DS_GAMMA_UNIFORMS i + n, n < DS_GAMMA_UNIFORMS (far from the
// learned policy's 0x80000000 and from best-of-N's 0..63).
#define DS_GAMMA_DRAW 0x40000000u
#define DS_GAMMA_UNIFORMS 1024

// A request's dslider state between steps (all EMAs; the reference's names). The engine
// keeps one per request and hands it to the backend with each pick, which updates it in
// place; zeroed before the first step (initialized = 0).
typedef struct {
    int32_t initialized;
    float ent_naked, varent_naked;       // emwa_ent_naked, emwa_varent_naked
    float ent_scaffold, varent_scaffold; // emwa_ent_scaffold, emwa_varent_scaffold
    float tc_ent_scaffold, tc_ent_naked; // token_cross_ent_*
    float tc_var_scaffold, tc_var_naked; // token_cross_var_*
    float topk_ent_naked;                // emwa_topk_ent_naked
    float temp;                          // emwa_temp
    float dir_ent;                       // emwa_dir_ent (of -loglik)
    float logp[ETX_DSLIDER_MAX_SUPPORT]; // emwa_logp_on_supp, by rank
    float alpha[ETX_DSLIDER_MAX_SUPPORT]; // emwa_dir, by rank
} DSliderState;

// ----------------------------------------------------------------------------
// special functions (x > 0)

// ψ(x): ψ(x) = ψ(x + 1) - 1/x up to x >= 6, then ln x - 1/(2x) - Σ B_2k / (2k x^2k).
static inline ETX_HD float ds_digamma(float x) {
    float r = 0.0f;
    while (x < 6.0f) {
        r -= 1.0f / x;
        x += 1.0f;
    }
    const float f = 1.0f / (x * x);
    const float t = f * (1.0f / 12.0f - f * (1.0f / 120.0f - f * (1.0f / 252.0f - f * (1.0f / 240.0f - f * (1.0f / 132.0f)))));
    return r + etx_logf(x) - 0.5f / x - t;
}

// ψ1(x) = ψ1(x + 1) + 1/x^2, then 1/x + 1/(2x^2) + Σ B_2k / x^(2k+1).
static inline ETX_HD float ds_trigamma(float x) {
    float r = 0.0f;
    while (x < 6.0f) {
        r += 1.0f / (x * x);
        x += 1.0f;
    }
    const float i = 1.0f / x, f = i * i;
    const float t = i * (1.0f + i * (0.5f + i * (1.0f / 6.0f - f * (1.0f / 30.0f - f * (1.0f / 42.0f - f * (1.0f / 30.0f))))));
    return r + t;
}

// ψ2(x) = ψ2(x + 1) - 2/x^3, then -1/x^2 - 1/x^3 - Σ (2k+1) B_2k / x^(2k+2).
static inline ETX_HD float ds_tetragamma(float x) {
    float r = 0.0f;
    while (x < 6.0f) {
        r -= 2.0f / (x * x * x);
        x += 1.0f;
    }
    const float i = 1.0f / x, f = i * i;
    const float t = f * (1.0f + i * (1.0f + i * (0.5f - f * (1.0f / 6.0f - f * (1.0f / 6.0f - f * (3.0f / 10.0f - f * (5.0f / 6.0f)))))));
    return r - t;
}

// lnΓ(x) = lnΓ(x + n) - ln(x (x+1) ... (x+n-1)) with x + n >= 7, then Stirling's series.
static inline ETX_HD float ds_lgamma(float x) {
    float p = 1.0f;
    while (x < 7.0f) {
        p *= x;
        x += 1.0f;
    }
    const float i = 1.0f / x, f = i * i;
    const float s = i * (1.0f / 12.0f - f * (1.0f / 360.0f - f * (1.0f / 1260.0f)));
    return (x - 0.5f) * etx_logf(x) - x + 0.918938533f + s - etx_logf(p);
}

// cos x for |x| <= 2: the Taylor series to x^18 (error < 1e-9), Horner's form.
static inline ETX_HD float ds_cos(float x) {
    const float z = x * x;
    float c = 1.0f;
    for (int k = 9; k >= 1; k--) c = 1.0f - z * c / (float)((2 * k - 1) * (2 * k));
    return c;
}

// ----------------------------------------------------------------------------
// distributions over n entries given by log-weights

// ln Σ e^{x_i} (x_0 need not be the largest: the maximum is found first).
static inline ETX_HD float ds_logsumexp(const float* x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += etx_expf(x[i] - m);
    return m + etx_logf(s);
}

// The reference's normalize_logits: y = x - logsumexp(x), entries below floor set to
// ln(1e-8) (not renormalised afterwards). In place.
static inline ETX_HD void ds_normalize(float* x, int n, float floor_) {
    const float l = ds_logsumexp(x, n);
    for (int i = 0; i < n; i++) {
        const float y = x[i] - l;
        x[i] = y < floor_ ? DS_LN_EPS : y;
    }
}

// Entropy and varentropy (nats) of the distribution e^{lp_i}: H = -Σ p lp, V = Σ p (lp + H)^2.
static inline ETX_HD void ds_ent_varent(const float* lp, int n, float* h, float* v) {
    float H = 0.0f;
    for (int i = 0; i < n; i++) H -= etx_expf(lp[i]) * lp[i];
    float V = 0.0f;
    for (int i = 0; i < n; i++) {
        const float d = lp[i] + H;
        V += etx_expf(lp[i]) * d * d;
    }
    *h = H;
    *v = V;
}

// The temperature T at which softmax(x / T) over x[0..n) has entropy `target` (nats): the
// reference's temp_tune, T = 1 then 10 steps (stopping once |H - target| < 1e-6): at T,
// p = softmax(x / T), μ1 = Σ p ln p, μk = Σ p (ln p - μ1)^k; H = -μ1, g = dH/dT = μ2 / T,
// h = -(2 μ3 + 3 μ2) / T^2; err = H - target; step = Halley 2 err g / (2 g^2 - err h),
// else Newton err / g, else 0.1 T towards the target; clipped to +-T/2; T -= step.
static inline ETX_HD float ds_temp_tune(const float* x, int n, float target) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    float T = 1.0f;
    for (int it = 0; it < DS_TUNE_ITERS; it++) {
        float s = 0.0f;
        for (int i = 0; i < n; i++) s += etx_expf((x[i] - m) / T);
        const float lse = etx_logf(s);
        float mu1 = 0.0f;
        for (int i = 0; i < n; i++) {
            const float lp = (x[i] - m) / T - lse;
            mu1 += etx_expf(lp) * lp;
        }
        float mu2 = 0.0f, mu3 = 0.0f;
        for (int i = 0; i < n; i++) {
            const float lp = (x[i] - m) / T - lse;
            const float p = etx_expf(lp), d = lp - mu1;
            mu2 += p * d * d;
            mu3 += p * d * d * d;
        }
        const float H = -mu1, g = mu2 / T, h = -(2.0f * mu3 + 3.0f * mu2) / (T * T);
        const float err = H - target;
        if (!(fabsf(err) >= 1e-6f)) break; // converged (or NaN: keep T)
        const float den = 2.0f * g * g - err * h;
        float step;
        if (fabsf(den) >= 1e-8f) step = 2.0f * err * g / den;
        else if (fabsf(g) >= 1e-8f) step = err / g;
        else step = err > 0.0f ? 0.1f * T : -0.1f * T;
        step = policy_clampf(step, -0.5f * T, 0.5f * T);
        const float next = T - step;
        T = next > 0.5f * T ? next : 0.5f * T;
    }
    return T;
}

// ----------------------------------------------------------------------------
// the Dirichlet

// The reference's fit_dirichlet: α with ψ(α_i) - ψ(Σα) = t_i, from α = 1: at step s = 1..140
// (stopping once |err|_2 < 1e-4), err = ψ(α) - ψ(S) - t, J = diag(ψ1(α)) - ψ1(S) 11^T
// inverted by Sherman-Morrison (D^-1 = 1/ψ1(α), c = ψ1(S) / (1 - ψ1(S) Σ D^-1)),
// u = J^-1 err, Hv = ψ2(α) u - ψ2(S) Σu, Δ = -u + J^-1(Hv) / 2; lr = max(1.2 e^{-0.1 s^0.75}
// |cos(2 / s^0.25)|, 1e-8); α += clip(lr Δ, -α/2, α/2), kept in [DS_MIN_ALPHA, DS_MAX_ALPHA].
static inline ETX_HD void ds_fit_dirichlet(const float* t, int n, float* alpha) {
    float dinv[ETX_DSLIDER_MAX_SUPPORT], e[ETX_DSLIDER_MAX_SUPPORT], u[ETX_DSLIDER_MAX_SUPPORT];
    for (int i = 0; i < n; i++) alpha[i] = 1.0f;
    for (int s = 1; s <= DS_FIT_ITERS; s++) {
        float S = 0.0f;
        for (int i = 0; i < n; i++) S += alpha[i];
        const float psi_s = ds_digamma(S), psi1_s = ds_trigamma(S), psi2_s = ds_tetragamma(S);
        float norm2 = 0.0f;
        for (int i = 0; i < n; i++) {
            e[i] = ds_digamma(alpha[i]) - psi_s - t[i];
            norm2 += e[i] * e[i];
        }
        if (!(norm2 >= 1e-8f)) break; // |err|_2 < 1e-4 (or NaN)
        const float ls = etx_logf((float)s);
        const float lr0 = 1.2f * etx_expf(-0.1f * etx_expf(0.75f * ls)) * fabsf(ds_cos(2.0f / etx_expf(0.25f * ls)));
        const float lr = lr0 > 1e-8f ? lr0 : 1e-8f;
        float sum_dinv = 0.0f;
        for (int i = 0; i < n; i++) {
            dinv[i] = 1.0f / ds_trigamma(alpha[i]);
            sum_dinv += dinv[i];
        }
        float den = 1.0f - psi1_s * sum_dinv;
        if (fabsf(den) < 1e-12f) den = den < 0.0f ? -1e-12f : 1e-12f;
        const float c = psi1_s / den;
        // u = J^-1 e
        float de = 0.0f;
        for (int i = 0; i < n; i++) de += dinv[i] * e[i];
        float su = 0.0f;
        for (int i = 0; i < n; i++) {
            u[i] = dinv[i] * e[i] + c * de * dinv[i];
            su += u[i];
        }
        // Hv = ψ2(α) u - ψ2(S) Σu, then J^-1 Hv (in e, no longer needed)
        float dh = 0.0f;
        for (int i = 0; i < n; i++) {
            e[i] = ds_tetragamma(alpha[i]) * u[i] - psi2_s * su;
            dh += dinv[i] * e[i];
        }
        for (int i = 0; i < n; i++) {
            const float jh = dinv[i] * e[i] + c * dh * dinv[i];
            const float delta = -u[i] + 0.5f * jh;
            const float a = alpha[i];
            const float next = a + policy_clampf(lr * delta, -0.5f * a, 0.5f * a);
            alpha[i] = policy_clampf(next, DS_MIN_ALPHA, DS_MAX_ALPHA);
        }
    }
}

// ln Dir(p; α) with ln p_i = lp_i: lnΓ(Σα) - Σ lnΓ(α_i) + Σ (α_i - 1) lp_i.
static inline ETX_HD float ds_dirichlet_loglik(const float* lp, const float* alpha, int n) {
    float S = 0.0f, lg = 0.0f, dot = 0.0f;
    for (int i = 0; i < n; i++) {
        S += alpha[i];
        lg += ds_lgamma(alpha[i]);
        dot += (alpha[i] - 1.0f) * lp[i];
    }
    return ds_lgamma(S) - lg + dot;
}

// One uniform in (0, 1) of rank i's Gamma draw n (never 0, so its logarithm is finite).
static inline ETX_HD float ds_uniform(uint64_t seed, uint64_t key, uint32_t step, int i, int n) {
    const float u = philox_uniform(seed, key, step, DS_GAMMA_DRAW + (uint32_t)DS_GAMMA_UNIFORMS * (uint32_t)i + (uint32_t)n);
    return u > 0.0f ? u : 0.5f / 16777216.0f;
}

// ln g, g ~ Gamma(a, 1) (a >= DS_MIN_ALPHA): Marsaglia-Tsang for a + 1 (normals by
// Marsaglia's polar method), times u^(1/a) when a < 1 (in logs: no underflow for small a).
// Uniforms n = 0, 1, ... of rank i; should DS_GAMMA_UNIFORMS run out (probability below
// 1e-100), the mean's logarithm.
static inline ETX_HD float ds_log_gamma_draw(float a, uint64_t seed, uint64_t key, uint32_t step, int i) {
    int n = 0;
    float boost = 0.0f;
    if (a < 1.0f) {
        boost = etx_logf(ds_uniform(seed, key, step, i, n++)) / a;
        a += 1.0f;
    }
    const float d = a - 1.0f / 3.0f, c = 1.0f / sqrtf(9.0f * d);
    while (n + 3 <= DS_GAMMA_UNIFORMS) {
        const float u1 = 2.0f * ds_uniform(seed, key, step, i, n++) - 1.0f;
        const float u2 = 2.0f * ds_uniform(seed, key, step, i, n++) - 1.0f;
        const float q = u1 * u1 + u2 * u2;
        if (!(q < 1.0f) || q == 0.0f) continue;
        const float x = u1 * sqrtf(-2.0f * etx_logf(q) / q);
        const float y = 1.0f + c * x;
        if (!(y > 0.0f)) continue;
        const float v = y * y * y;
        const float u = ds_uniform(seed, key, step, i, n++);
        if (etx_logf(u) < 0.5f * x * x + d - d * v + d * etx_logf(v)) return etx_logf(d * v) + boost;
    }
    return etx_logf(d) + boost;
}

// A Dirichlet(α) sample over n ranks into p (normalised in logs), or with wild = 0 its
// mean α / Σα.
static inline ETX_HD void ds_dirichlet_draw(const float* alpha, int n, int wild, uint64_t seed, uint64_t key,
                                            uint32_t step, float* p) {
    if (!wild) {
        float S = 0.0f;
        for (int i = 0; i < n; i++) S += alpha[i];
        for (int i = 0; i < n; i++) p[i] = alpha[i] / S;
        return;
    }
    float lg[ETX_DSLIDER_MAX_SUPPORT];
    for (int i = 0; i < n; i++) lg[i] = ds_log_gamma_draw(alpha[i], seed, key, step, i);
    const float l = ds_logsumexp(lg, n);
    for (int i = 0; i < n; i++) p[i] = etx_expf(lg[i] - l);
}

// EMA: c new + (1 - c) old.
static inline ETX_HD float ds_ema(float c, float x, float old) { return c * x + (1.0f - c) * old; }

// KL(p || q) weight base^(-exp / (KL + 1e-8)) with KL clamped at >= 0.
static inline ETX_HD float ds_kl_weight(float base, float expo, float kl) {
    const float k = kl > 0.0f ? kl : 0.0f;
    return etx_expf(-expo * etx_logf(base) / (k + DS_EPS));
}

// ----------------------------------------------------------------------------
// the step

// One dslider step: p the policy; st the request's state (updated); m the step's signals
// (entropy in bits, varentropy in bits^2, over the whole vocabulary); cand the n sorted
// candidates (n = min(ETX_DSLIDER_CANDIDATES, vocabulary)), log_z the row's
// log-partition; key / step the Philox stream. Returns the decision with forced_token =
// the token, branch ARGMAX / INLIER / DIRICHLET / OUTLIER, temperature the one it used.
static inline ETX_HD PolicyDecision dslider_decide(const etx_policy* pol, DSliderState* st, const PolicyMetrics* m,
                                                   const PolicyCandidate* cand, int n, float log_z, uint64_t key,
                                                   uint32_t step) {
    const etx_dslider_params* P = &pol->dslider;
    float lp[ETX_DSLIDER_CANDIDATES], tuned[ETX_DSLIDER_CANDIDATES];
    float lpk[ETX_DSLIDER_MAX_SUPPORT], lps[ETX_DSLIDER_MAX_SUPPORT], dir[ETX_DSLIDER_MAX_SUPPORT];
    float mix[ETX_DSLIDER_MAX_SUPPORT], alpha_new[ETX_DSLIDER_MAX_SUPPORT];
    if (n > ETX_DSLIDER_CANDIDATES) n = ETX_DSLIDER_CANDIDATES;
    const int S = P->support < n ? P->support : n;
    const int K = P->outlier_topk < S ? P->outlier_topk : S;
    // 1. log-probabilities over the candidates, floored; the naked signals in nats
    for (int i = 0; i < n; i++) {
        const float y = cand[i].logit - log_z;
        lp[i] = y < P->noise_floor ? DS_LN_EPS : y;
    }
    const float Hn = m->entropy * 0.693147182f, Vn = m->varentropy * (0.693147182f * 0.693147182f);
    // top-k renormalised, its entropy
    for (int i = 0; i < K; i++) lpk[i] = lp[i];
    ds_normalize(lpk, K, -INFINITY);
    float Hk, Vk;
    ds_ent_varent(lpk, K, &Hk, &Vk);
    if (!st->initialized) { // from this step's distribution (entropix-spec §3.4 on one position)
        st->ent_naked = st->ent_scaffold = st->tc_ent_scaffold = Hn;
        st->varent_naked = Vn;
        st->topk_ent_naked = Hk;
        float mean = 0.0f;
        for (int i = 0; i < K; i++) mean += lp[i];
        mean /= (float)K;
        float var = 0.0f;
        for (int i = 0; i < K; i++) var += (lp[i] - mean) * (lp[i] - mean);
        st->tc_ent_naked = -mean;
        st->tc_var_naked = var / (float)K;
        st->temp = 1.0f;
        st->varent_scaffold = 0.0f;
        st->tc_var_scaffold = 0.0f;
        for (int i = 0; i < S; i++) st->logp[i] = lps[i] = lp[i]; // the support's log-probabilities
        ds_fit_dirichlet(st->logp, S, st->alpha);
        ds_normalize(lps, S, -INFINITY); // (as a distribution on the support, for the likelihood)
        st->dir_ent = -ds_dirichlet_loglik(lps, st->alpha, S);
        st->initialized = 1;
    }
    // 2-3. the outlier score from the state before the step
    const float E[4] = {st->tc_ent_scaffold, st->tc_ent_naked, st->ent_scaffold, st->ent_naked};
    const float vars[4] = {st->tc_var_scaffold, st->tc_var_naked, st->varent_scaffold, st->varent_naked};
    float Sg[4];
    for (int j = 0; j < 4; j++) Sg[j] = sqrtf(vars[j] > 0.0f ? vars[j] : 0.0f);
    float score = 0.0f;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) score += E[i] * P->outlier_bilinear[4 * i + j] * Sg[j];
    for (int i = 0; i < 4; i++) score += P->outlier_linear_state_ent[i] * E[i];
    for (int i = 0; i < 4; i++) score += P->outlier_linear_state_std[i] * Sg[i];
    score += P->outlier_linear_naked_ent * Hn + P->outlier_linear_naked_varent * Vn + P->outlier_bias;
    const int outlier = score > 0.0f;
    const float old_topk = st->topk_ent_naked, old_temp = st->temp, old_dir_ent = st->dir_ent;
    st->ent_naked = ds_ema(P->emwa_ent_naked_coeff, Hn, st->ent_naked);
    st->varent_naked = ds_ema(P->emwa_varent_naked_coeff, Vn, st->varent_naked);
    st->topk_ent_naked = ds_ema(P->emwa_topk_ent_naked_coeff, Hk, old_topk);

    PolicyDecision d;
    d.forced_token = -1;
    d.argmax = 0;
    d.temperature = 1.0f;
    d.top_k = S;
    d.top_p = 1.0f;
    d.min_p = 0.0f;
    d.min_logit = -INFINITY;
    d.n_samples = 1;
    d.action = -1;
    d.action_logprob = 0.0f;
    int tok = -1; // rank of the token
    // 5-6. inlier: argmax, or a draw from the top-k at the temperature matching the EMA
    if (!outlier) {
        d.top_k = K;
        if (Hk < P->argmax_weight * old_topk + P->argmax_bias) {
            d.branch = ETX_BRANCH_ARGMAX;
            tok = 0;
        } else {
            d.branch = ETX_BRANCH_INLIER;
            const float T = ds_temp_tune(lpk, K, old_topk);
            float w[ETX_DSLIDER_MAX_SUPPORT];
            for (int i = 0; i < K; i++) w[i] = etx_expf((lpk[i] - lpk[0]) / T);
            tok = policy_draw(w, K, philox_uniform(pol->seed, key, step, 0));
            d.temperature = T;
        }
    }
    // 7. outlier temperature: the entropy target from the state, T found over the candidates
    float target = P->target_entropy_bias + P->target_entropy_inv_temp / old_temp;
    for (int i = 0; i < 4; i++) target += P->target_entropy_linear[i] * E[i];
    const float T = ds_temp_tune(lp, n, target);
    st->temp = ds_ema(P->emwa_temp_coeff, T, old_temp);
    const float Tc = policy_clampf(T, 1e-4f, 1e4f);
    // 8. the tuned distribution on the support; the support's EMA, its weight from the KL
    for (int i = 0; i < n; i++) tuned[i] = lp[i] / Tc;
    ds_normalize(tuned, n, P->noise_floor);
    for (int i = 0; i < S; i++) lps[i] = tuned[i];
    ds_normalize(lps, S, P->noise_floor); // the reference's normalize_logits(tuned[support])
    float kl = 0.0f;
    for (int i = 0; i < S; i++) kl += etx_expf(lps[i]) * (lps[i] - st->logp[i]);
    const float c = ds_kl_weight(P->emwa_logp_base, P->emwa_logp_exp_factor, kl);
    for (int i = 0; i < S; i++) st->logp[i] = ds_ema(c, lps[i], st->logp[i]);
    ds_fit_dirichlet(st->logp, S, alpha_new);
    // 9. how well the previous Dirichlet explains the tuned distribution
    const float nll = -ds_dirichlet_loglik(lps, st->alpha, S);
    st->dir_ent = ds_ema(P->emwa_dir_ent_coeff, nll, old_dir_ent);
    const int use_dir = outlier && nll < P->dirichlet_weight * old_dir_ent + P->dirichlet_bias;
    for (int i = 0; i < S; i++) st->alpha[i] = alpha_new[i];
    // 10-11. the Dirichlet draw and its mix with the tuned distribution
    ds_dirichlet_draw(alpha_new, S, P->dirichlet_wild, pol->seed, key, step, dir);
    float kld = 0.0f;
    for (int i = 0; i < S; i++) kld += dir[i] * (etx_logf(dir[i] + DS_EPS) - lps[i]);
    const float w = 1.0f - ds_kl_weight(P->perturb_base_coeff, P->perturb_exp_coeff, kld);
    for (int i = 0; i < S; i++) mix[i] = w * dir[i] + (1.0f - w) * etx_expf(lps[i]);
    if (outlier) {
        d.temperature = Tc;
        if (use_dir) { // the mix's most likely rank (the lowest on ties)
            d.branch = ETX_BRANCH_DIRICHLET;
            tok = 0;
            for (int i = 1; i < S; i++)
                if (mix[i] > mix[tok]) tok = i;
        } else { // 12. a draw from the Dirichlet sample
            d.branch = ETX_BRANCH_OUTLIER;
            tok = policy_draw(dir, S, philox_uniform(pol->seed, key, step, 0));
        }
    }
    // 13. the scaffold's (the mix's) entropy and varentropy
    float lm[ETX_DSLIDER_MAX_SUPPORT];
    for (int i = 0; i < S; i++) lm[i] = etx_logf(mix[i] + DS_EPS);
    float Hs, Vs;
    ds_ent_varent(lm, S, &Hs, &Vs);
    st->ent_scaffold = ds_ema(P->emwa_ent_scaffold_coeff, Hs, st->ent_scaffold);
    st->varent_scaffold = ds_ema(P->emwa_varent_scaffold_coeff, Vs, st->varent_scaffold);
    // 14. the token's cross-entropies: surprisal EMA, squared deviation EMA
    const float sc_lp = lm[tok], na_lp = lp[tok];
    st->tc_ent_scaffold = ds_ema(P->token_cross_ent_scaffold_coeff, -sc_lp, st->tc_ent_scaffold);
    st->tc_ent_naked = ds_ema(P->token_cross_ent_naked_coeff, -na_lp, st->tc_ent_naked);
    const float ds_ = st->tc_ent_scaffold + sc_lp, dn = st->tc_ent_naked + na_lp;
    st->tc_var_scaffold = ds_ema(P->token_cross_var_scaffold_coeff, ds_ * ds_, st->tc_var_scaffold);
    st->tc_var_naked = ds_ema(P->token_cross_var_naked_coeff, dn * dn, st->tc_var_naked);
    d.forced_token = cand[tok].id;
    return d;
}

#endif // ETX_POLICY_DSLIDER_H
