/*
 * test_policy.c — the shared policy math (hostdev/policy_math.h): every entropix branch
 * reached from crafted metrics, with its adjusted parameters against numbers computed by
 * hand from docs/entropix.md §2 and §3; the filters' kept sets; best-of-N draws
 * against their closed-form distribution (chi-square); decisions defined for NaN and
 * infinite metrics, and the input faults (policy_input_fault); the sample policy's
 * top-nσ floor (policy_logit_floor against a linear count) and entropy-based temperature
 * (against pow in double), and its three parameters by name.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policy_math.h"
#include "policy/sampler.h"
#include "check_main.h"

#define PAUSE 4563

static etx_entropix_params defaults(void) { return etx_policy_default(ETX_POLICY_ENTROPIX).entropix; }

static PolicyDecision decide(float H, float V, float AH, float AV, float AG, float IS, int32_t prev) {
    etx_entropix_params p = defaults();
    PolicyMetrics m = {H, V, AH, AV, AG, IS, 0, 0};
    return entropix_decide(&p, &m, prev, PAUSE);
}

START_TEST(lelv_is_argmax) {
    PolicyDecision d = decide(0.05f, 0.05f, 3, 1, 0.2f, 0.5f, 10);
    ck_assert_int_eq(d.branch, ETX_BRANCH_ARGMAX);
    ck_assert_int_eq(d.argmax, 1);
    // strict thresholds: H == 0.1 is not low entropy, so it falls to the adaptive branch
    ck_assert_int_eq(decide(0.1f, 0.05f, 0, 0, 0, 0, 10).branch, ETX_BRANCH_ADAPTIVE);
}
END_TEST

START_TEST(helv_pauses_then_resamples) {
    PolicyDecision d = decide(5.5f, 0.05f, 2.0f, 0, 0, 0, 10);
    ck_assert_int_eq(d.branch, ETX_BRANCH_PAUSE);
    ck_assert_int_eq(d.forced_token, PAUSE);
    // right after the pause token: T = min(1.5, 0.666 (1.3 + 0.2 * 2)) = 1.1322
    d = decide(5.5f, 0.05f, 2.0f, 0, 0, 0, PAUSE);
    ck_assert_int_eq(d.branch, ETX_BRANCH_HELV);
    ck_assert_int_eq(d.forced_token, -1);
    ck_assert_float_eq_tol(d.temperature, 1.1322f, 1e-5f);
    ck_assert_int_eq(d.top_k, 27);
    ck_assert_float_eq_tol(d.top_p, 0.9f, 1e-7f);
    ck_assert_float_eq_tol(d.min_p, 0.03f, 1e-7f);
    // A_H = 10: 0.666 * 3.3 = 2.1978 is capped at 1.5
    ck_assert_float_eq_tol(decide(5.5f, 0.05f, 10.0f, 0, 0, 0, PAUSE).temperature, 1.5f, 1e-7f);
}
END_TEST

START_TEST(lehv_explores) {
    // T = min(1.5, 0.666 (1.2 + 0.3 * 0.5)) = 0.8991; top_k = max(5, int(27 (1 + 0.5 (1 - 0.4)))) = int(35.1) = 35
    PolicyDecision d = decide(2.0f, 6.0f, 1, 1, 0.4f, 0.5f, 10);
    ck_assert_int_eq(d.branch, ETX_BRANCH_LEHV);
    ck_assert_float_eq_tol(d.temperature, 0.8991f, 1e-5f);
    ck_assert_int_eq(d.top_k, 35);
    ck_assert_float_eq_tol(d.top_p, 0.9f, 1e-7f);
    ck_assert_int_eq(d.n_samples, 1);
    // H = 4 with V > 5 is still LEHV: it is tested before HEHV
    ck_assert_int_eq(decide(4.0f, 6.0f, 1, 1, 0.4f, 0.5f, 10).branch, ETX_BRANCH_LEHV);
}
END_TEST

START_TEST(hehv_resamples_hot) {
    // T = max(2, 0.666 (2 + 0.5 * 1)) = 2; top_p = max(0.5, 0.9 - 0.2 * 1) = 0.7
    PolicyDecision d = decide(5.5f, 6.0f, 1.0f, 1.0f, 0.1f, 0.2f, 10);
    ck_assert_int_eq(d.branch, ETX_BRANCH_HEHV);
    ck_assert_float_eq_tol(d.temperature, 2.0f, 1e-7f);
    ck_assert_float_eq_tol(d.top_p, 0.7f, 1e-6f);
    ck_assert_int_eq(d.top_k, 27);
    // A_V = 4: T = 0.666 * 4 = 2.664; A_H = 3: top_p = max(0.5, 0.3) = 0.5
    d = decide(5.5f, 6.0f, 3.0f, 4.0f, 0.1f, 0.2f, 10);
    ck_assert_float_eq_tol(d.temperature, 2.664f, 1e-5f);
    ck_assert_float_eq_tol(d.top_p, 0.5f, 1e-7f);
}
END_TEST

START_TEST(adaptive_middle_ground) {
    // H=1, V=.5, A_H=2, A_V=.5, AG=.1, IS=.4:
    // T = .666 (1 + .3*1.5 + .2*2.5 - .2*.1) = .666 * 1.93 = 1.28538
    // top_p = clip(.9 (1 + .1*.5), .1, 1) = .945
    // top_k = clip(round(27 (1 + .3*.4 - .2*.1)), 1, 100) = round(29.7) = 30
    // min_p = clip(.03 (1 - .5*1.5), .01, .5) = clip(.0075) = .01
    PolicyDecision d = decide(1.0f, 0.5f, 2.0f, 0.5f, 0.1f, 0.4f, 10);
    ck_assert_int_eq(d.branch, ETX_BRANCH_ADAPTIVE);
    ck_assert_float_eq_tol(d.temperature, 1.28538f, 1e-5f);
    ck_assert_float_eq_tol(d.top_p, 0.945f, 1e-6f);
    ck_assert_int_eq(d.top_k, 30);
    ck_assert_float_eq_tol(d.min_p, 0.01f, 1e-7f);
    ck_assert_int_eq(d.n_samples, 5);
    // large interaction: top_k capped at 100; A_V large: top_p capped at 1
    d = decide(1.0f, 0.5f, 2.0f, 20.0f, 0.0f, 50.0f, 10);
    ck_assert_int_eq(d.top_k, 100);
    ck_assert_float_eq_tol(d.top_p, 1.0f, 1e-7f);
}
END_TEST

START_TEST(parameters_change_the_tree) {
    etx_entropix_params p = defaults();
    p.low_ent_thresh = 2.0f;
    p.low_vent_thresh = 1.0f;
    PolicyMetrics m = {1.5f, 0.5f, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(entropix_decide(&p, &m, 0, PAUSE).branch, ETX_BRANCH_ARGMAX);
    p.n_adaptive_samples = 3;
    p.low_ent_thresh = 0.1f;
    ck_assert_int_eq(entropix_decide(&p, &m, 0, PAUSE).n_samples, 3);
}
END_TEST

START_TEST(filters_keep_prefixes) {
    // weights at T = 1 of logits log(.4, .3, .15, .1, .05): 1, .75, .375, .25, .125
    PolicyCandidate c[5];
    const double p[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
    for (int i = 0; i < 5; i++) c[i] = (PolicyCandidate){(float)log(p[i]), i};
    float w[5];
    ck_assert_int_eq(policy_filter(c, 5, 1.0f, 0, 1.0f, 0.0f, w), 5);
    ck_assert_float_eq_tol(w[3], 0.25f, 1e-6f);
    ck_assert_int_eq(policy_filter(c, 5, 1.0f, 3, 1.0f, 0.0f, w), 3);
    ck_assert_int_eq(policy_filter(c, 5, 1.0f, 0, 0.8f, 0.0f, w), 3);  // .4 .7 .85 reaches .8
    ck_assert_int_eq(policy_filter(c, 5, 1.0f, 0, 0.1f, 0.0f, w), 1);
    ck_assert_int_eq(policy_filter(c, 5, 1.0f, 0, 1.0f, 0.3f, w), 3);  // >= .12
    // top-4 renormalised: .421 .737 .895 stay below .9, so all 4 are kept
    ck_assert_int_eq(policy_filter(c, 5, 1.0f, 4, 0.9f, 0.0f, w), 4);
}
END_TEST

// top-nσ's floor: the prefix of sorted candidates with logit >= min_logit, never empty;
// the bisection against a linear count on lists with ties, at and around every logit.
START_TEST(logit_floor_is_the_kept_prefix) {
    PolicyCandidate c[40];
    for (int n = 1; n <= 40; n++) {
        for (int i = 0; i < n; i++) c[i] = (PolicyCandidate){(float)(10 - i / 3), i}; // ties in threes
        ck_assert_int_eq(policy_logit_floor(c, n, -INFINITY), n);
        for (int i = 0; i < n; i++) {
            const float at = c[i].logit;
            const float probes[3] = {at, nextafterf(at, INFINITY), nextafterf(at, -INFINITY)};
            for (int q = 0; q < 3; q++) {
                int want = 0;
                while (want < n && c[want].logit >= probes[q]) want++;
                if (want < 1) want = 1;
                ck_assert_int_eq(policy_logit_floor(c, n, probes[q]), want);
            }
        }
        ck_assert_int_eq(policy_logit_floor(c, n, 1e9f), 1); // above the max: the max alone
    }
}
END_TEST

// The sample decision: min_logit = max - n sigma; EDT's T = T0 N^(θ / H) with H in nats,
// against pow in double (the float path is etx_expf / etx_logf: within a few ulp); H = 0
// gives the 1e-6 floor; off by default and never for greedy or entropix.
START_TEST(sample_decision_reads_sigma_and_entropy) {
    const PolicyMetrics m = {2.5f, 3.0f, 0, 0, 0, 0, 7.0f, 2.0f};
    etx_policy p = etx_policy_default(ETX_POLICY_SAMPLE);
    p.temperature = 0.9f;
    PolicyDecision d = policy_decision_simple(&p, &m);
    ck_assert(d.min_logit == -INFINITY);
    ck_assert_float_eq(d.temperature, 0.9f);
    ck_assert_int_eq(policy_signals_used(&p), 0);
    p.top_n_sigma = 1.5f;
    d = policy_decision_simple(&p, &m);
    ck_assert_float_eq(d.min_logit, 7.0f - 1.5f * 2.0f);
    ck_assert_float_eq(d.temperature, 0.9f);
    ck_assert_int_eq(policy_signals_used(&p), POLICY_USES_LOGIT_SIGNALS);
    const float thetas[4] = {0.1f, 0.5f, 1.0f, 3.0f}, bases[3] = {0.8f, 0.5f, 0.99f};
    const float ents[4] = {0.01f, 0.5f, 2.5f, 12.0f}; // bits
    for (int t = 0; t < 4; t++)
        for (int b = 0; b < 3; b++)
            for (int e = 0; e < 4; e++) {
                p.edt_theta = thetas[t], p.edt_base = bases[b];
                PolicyMetrics me = m;
                me.entropy = ents[e];
                d = policy_decision_simple(&p, &me);
                double want = 0.9 * pow((double)bases[b], (double)thetas[t] / ((double)ents[e] * log(2.0)));
                if (want < 1e-6) want = 1e-6;
                ck_assert_msg(fabs(d.temperature - want) <= 1e-5 * want, "theta %g N %g H %g: T %.9g, want %.9g",
                              thetas[t], bases[b], ents[e], d.temperature, want);
                ck_assert(d.temperature <= 0.9f); // N < 1: T0 is the ceiling
            }
    PolicyMetrics certain = m;
    certain.entropy = 0.0f;
    ck_assert_float_eq(policy_decision_simple(&p, &certain).temperature, 1e-6f);
    // greedy ignores both; entropix has its own tree
    etx_policy g = p;
    g.kind = ETX_POLICY_GREEDY;
    d = policy_decision_simple(&g, &m);
    ck_assert(d.argmax && d.min_logit == -INFINITY);
    ck_assert_int_eq(policy_signals_used(&g), 0);
    etx_policy e = etx_policy_default(ETX_POLICY_ENTROPIX);
    ck_assert(entropix_decide(&e.entropix, &m, 0, PAUSE).min_logit == -INFINITY);
    ck_assert_int_eq(policy_signals_used(&e), POLICY_USES_LOGIT_SIGNALS | POLICY_USES_ATTN_SIGNALS);
}
END_TEST

// The three sample-only parameters by name: ranges, and a clear error on another kind.
START_TEST(sample_only_parameters) {
    etx_policy p = etx_policy_default(ETX_POLICY_SAMPLE);
    ck_assert_float_eq(p.edt_base, 0.8f);
    ck_assert_int_eq(etx_policy_set(&p, "top_n_sigma", 1.0).code, ETX_OK);
    ck_assert_int_eq(etx_policy_set(&p, "edt_theta", 0.7).code, ETX_OK);
    ck_assert_int_eq(etx_policy_set(&p, "edt_base", 0.5).code, ETX_OK);
    ck_assert_float_eq(p.top_n_sigma, 1.0f);
    ck_assert_float_eq(p.edt_theta, 0.7f);
    ck_assert_float_eq(p.edt_base, 0.5f);
    ck_assert_int_eq(etx_policy_validate(&p).code, ETX_OK);
    etx_status st = etx_policy_set(&p, "top_n_sigma", -0.5);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(st.message, "top_n_sigma"));
    ck_assert_int_eq(etx_policy_set(&p, "edt_base", 1.0).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(etx_policy_set(&p, "edt_base", 0.0).code, ETX_ERR_INVALID_ARG);
    ck_assert_int_eq(etx_policy_set(&p, "edt_theta", -1.0).code, ETX_ERR_INVALID_ARG);
    p.edt_base = 1.5f; // set directly: validate catches it
    st = etx_policy_validate(&p);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(st.message, "edt_base"));
    etx_policy e = etx_policy_default(ETX_POLICY_ENTROPIX);
    st = etx_policy_set(&e, "top_n_sigma", 1.0);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    ck_assert_msg(strstr(st.message, "top_n_sigma is a sample parameter; the policy is entropix"), "%s", st.message);
}
END_TEST

// Best of 5 draws keeps the most likely: P(index i) = (1 - F(i-1))^5 - (1 - F(i))^5.
START_TEST(best_of_n_distribution) {
    const double p[4] = {0.4, 0.3, 0.2, 0.1};
    float z[4];
    for (int i = 0; i < 4; i++) z[i] = (float)log(p[i]);
    Sampler s;
    build_sampler(&s, 4);
    PolicyDecision d = {ETX_BRANCH_ADAPTIVE, -1, 0, 1.0f, 0, 1.0f, 0.0f, -INFINITY, 5, -1, 0.0f};
    int count[4] = {0};
    const int n = 40000;
    for (int t = 0; t < n; t++) count[sampler_pick(&s, z, &d, 17, 3, (uint32_t)t)]++;
    double F = 0.0, chi2 = 0.0;
    for (int i = 0; i < 4; i++) {
        double e = pow(1.0 - F, 5) - pow(1.0 - F - p[i], 5);
        F += p[i];
        e *= n;
        if (e < 1.0) continue; // (1-.9)^5 * n = .4: too small a cell for chi-square
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    // three cells used: df 2, critical value 18.42 at p = 1e-4
    ck_assert_msg(chi2 < 18.42, "chi-square %.2f (df 2)", chi2);
    free_sampler(&s);
}
END_TEST

// A decision for metrics that are NaN, infinite or absurdly large is still a decision:
// no float -> int conversion of NaN or of a value beyond int (undefined behaviour; on
// x86 it gave top_k = -2147483648), every field a number in its range. The sanitized
// build (-fsanitize=float-cast-overflow, CMakeLists.txt) also checks the conversions.
START_TEST(decide_is_defined_for_nonfinite_metrics) {
    const float bad[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 3.4e38f};
    const float normal[6] = {2.0f, 6.0f, 1.0f, 1.0f, 0.4f, 0.5f}; // LEHV
    const float adaptive[6] = {1.0f, 1.0f, 1.0f, 1.0f, 0.4f, 0.5f};
    etx_entropix_params p = defaults();
    for (int base = 0; base < 2; base++)
        for (int field = -1; field < 6; field++)
            for (size_t v = 0; v < sizeof bad / sizeof bad[0]; v++) {
                float x[6];
                for (int i = 0; i < 6; i++) x[i] = field < 0 ? bad[v] : (base ? adaptive : normal)[i];
                if (field >= 0) x[field] = bad[v];
                PolicyMetrics m = {x[0], x[1], x[2], x[3], x[4], x[5], 0, 0};
                for (int prev = 0; prev < 2; prev++) {
                    PolicyDecision d = entropix_decide(&p, &m, prev ? PAUSE : 10, PAUSE);
                    ck_assert_msg(d.branch >= ETX_BRANCH_ARGMAX && d.branch <= ETX_BRANCH_ADAPTIVE,
                                  "field %d value %g: branch %d", field, bad[v], d.branch);
                    ck_assert_msg(d.temperature >= 1e-6f, "field %d value %g: temperature %g", field, bad[v],
                                  d.temperature);
                    ck_assert_msg(d.top_k >= 1 && d.top_k <= (1 << 24), "field %d value %g: top_k %d", field, bad[v],
                                  d.top_k);
                    ck_assert_msg(d.top_p == d.top_p && d.min_p == d.min_p, "field %d value %g: top_p %g min_p %g",
                                  field, bad[v], d.top_p, d.min_p);
                    ck_assert_int_ge(d.n_samples, 1);
                }
            }
    // NaN entropy falls through every comparison to the adaptive branch, clipped values
    PolicyMetrics m = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    PolicyDecision d = entropix_decide(&p, &m, 10, PAUSE);
    ck_assert_int_eq(d.branch, ETX_BRANCH_ADAPTIVE);
    ck_assert_int_eq(d.top_k, 1);
    ck_assert_float_eq(d.top_p, 0.1f);
    ck_assert_float_eq(d.min_p, 0.01f);
}
END_TEST

// policy_input_fault: the logits flag first, then the signals, only for a policy that
// reads them; fault codes travel in the token slot as negative numbers.
START_TEST(input_faults) {
    const PolicyMetrics ok = {2, 3, 1, 0.5f, 0.2f, 0.7f, 4.0f, 1.5f};
    const int all = POLICY_USES_LOGIT_SIGNALS | POLICY_USES_ATTN_SIGNALS;
    ck_assert_int_eq(policy_input_fault(0, &ok, all), POLICY_FAULT_NONE);
    ck_assert_int_eq(policy_input_fault(1, &ok, all), POLICY_FAULT_LOGITS);
    ck_assert_int_eq(policy_input_fault(1, &ok, 0), POLICY_FAULT_LOGITS);
    enum { N_FIELDS = 8 };
    _Static_assert(sizeof(PolicyMetrics) == N_FIELDS * sizeof(float), "PolicyMetrics is eight floats");
    for (int f = 0; f < N_FIELDS; f++) {
        // entropy, varentropy, logit max and sigma are the logits' signals; the rest attention's
        const int logit_field = f < 2 || f >= 6;
        for (int v = 0; v < 3; v++) {
            float x[N_FIELDS];
            memcpy(x, &ok, sizeof x);
            x[f] = v == 0 ? NAN : v == 1 ? INFINITY : -INFINITY;
            PolicyMetrics m;
            memcpy(&m, x, sizeof m);
            ck_assert_int_eq(policy_input_fault(0, &m, all), logit_field ? POLICY_FAULT_LOGIT_SIGNALS : POLICY_FAULT_ATTN_SIGNALS);
            // sample with top-nσ or EDT: the logits' signals only
            ck_assert_int_eq(policy_input_fault(0, &m, POLICY_USES_LOGIT_SIGNALS),
                             logit_field ? POLICY_FAULT_LOGIT_SIGNALS : POLICY_FAULT_NONE);
            ck_assert_int_eq(policy_input_fault(0, &m, 0), POLICY_FAULT_NONE); // greedy, plain sample: logits only
            ck_assert_int_eq(policy_input_fault(1, &m, all), POLICY_FAULT_LOGITS);
        }
    }
    for (int f = 1; f < POLICY_FAULT_COUNT; f++) {
        ck_assert_int_lt(policy_fault_token(f), 0);
        ck_assert_int_eq(policy_token_fault(policy_fault_token(f)), f);
    }
    ck_assert_int_eq(policy_token_fault(0), POLICY_FAULT_NONE);
    ck_assert_int_eq(policy_token_fault(123), POLICY_FAULT_NONE);
    ck_assert(policy_finite(3.4e38f) && policy_finite(-0.0f) && policy_finite(1e-45f));
    ck_assert(!policy_finite(NAN) && !policy_finite(INFINITY) && !policy_finite(-INFINITY));
    ck_assert_int_eq(policy_float_to_int(NAN, 1, 100), 1);
    ck_assert_int_eq(policy_float_to_int(INFINITY, 1, 100), 100);
    ck_assert_int_eq(policy_float_to_int(-1e30f, 5, 1 << 24), 5);
    ck_assert_int_eq(policy_float_to_int(35.9f, 5, 1 << 24), 35);
}
END_TEST

int main(void) {
    Suite* s = suite_create("policy");
    TCase* tc = tcase_create("policy");
    tcase_add_test(tc, lelv_is_argmax);
    tcase_add_test(tc, helv_pauses_then_resamples);
    tcase_add_test(tc, lehv_explores);
    tcase_add_test(tc, hehv_resamples_hot);
    tcase_add_test(tc, adaptive_middle_ground);
    tcase_add_test(tc, parameters_change_the_tree);
    tcase_add_test(tc, filters_keep_prefixes);
    tcase_add_test(tc, best_of_n_distribution);
    tcase_add_test(tc, decide_is_defined_for_nonfinite_metrics);
    tcase_add_test(tc, input_faults);
    tcase_add_test(tc, logit_floor_is_the_kept_prefix);
    tcase_add_test(tc, sample_decision_reads_sigma_and_entropy);
    tcase_add_test(tc, sample_only_parameters);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
