/*
 * test_sampler.c — the CPU sampler: Philox known-answer vectors, argmax ties, each filter
 * (temperature, top-k, top-p, min-p, top-nσ, the entropy-based temperature) against
 * hand-computed distributions with a
 * chi-square test on many draws, determinism of seeded draws, the whole-row radix sort
 * against qsort's order.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "policy/metrics.h"
#include "policy/sampler.h"
#include "check_main.h"

// The signals a plain sample or greedy decision does not read.
static const PolicyMetrics no_signals;

// The row's signals as the CPU backend gives them to the sample policy (logit_metrics).
static PolicyMetrics row_signals(const float* z, int n) {
    const LogitMetrics lm = logit_metrics(z, n);
    const PolicyMetrics m = {lm.entropy, lm.varentropy, 0, 0, 0, 0, lm.max, lm.sigma};
    return m;
}

// Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
START_TEST(philox_known_answers) {
    const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    Philox4x32 r = philox4x32_10(c0, k0);
    ck_assert_uint_eq(r.v[0], 0x6627e8d5u);
    ck_assert_uint_eq(r.v[1], 0xe169c58du);
    ck_assert_uint_eq(r.v[2], 0xbc57ac4cu);
    ck_assert_uint_eq(r.v[3], 0x9b00dbd8u);
    const uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, k1[2] = {0xffffffffu, 0xffffffffu};
    r = philox4x32_10(c1, k1);
    ck_assert_uint_eq(r.v[0], 0x408f276du);
    ck_assert_uint_eq(r.v[1], 0x41c83b0eu);
    ck_assert_uint_eq(r.v[2], 0xa20bc7c6u);
    ck_assert_uint_eq(r.v[3], 0x6d5451fdu);
    const uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, k2[2] = {0xa4093822u, 0x299f31d0u};
    r = philox4x32_10(c2, k2);
    ck_assert_uint_eq(r.v[0], 0xd16cfe09u);
    ck_assert_uint_eq(r.v[1], 0x94fdccebu);
    ck_assert_uint_eq(r.v[2], 0x5001e420u);
    ck_assert_uint_eq(r.v[3], 0x24126ea1u);
}
END_TEST

START_TEST(uniform_range_and_independence) {
    // in [0,1); different seeds, requests, steps and draws give different streams
    double mean = 0.0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        float u = philox_uniform(7, 3, (uint32_t)i, 0);
        ck_assert(u >= 0.0f && u < 1.0f);
        mean += u;
    }
    mean /= n;
    ck_assert_double_lt(fabs(mean - 0.5), 0.005);
    ck_assert(philox_uniform(1, 0, 0, 0) != philox_uniform(2, 0, 0, 0));
    ck_assert(philox_uniform(1, 0, 0, 0) != philox_uniform(1, 1, 0, 0));
    ck_assert(philox_uniform(1, 0, 0, 0) != philox_uniform(1, 0, 1, 0));
    ck_assert(philox_uniform(1, 0, 0, 0) != philox_uniform(1, 0, 0, 1));
    ck_assert(philox_uniform(1, 0, 0, 0) == philox_uniform(1, 0, 0, 0));
}
END_TEST

START_TEST(argmax_ties_and_greedy) {
    float z[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, -INFINITY};
    ck_assert_int_eq(sample_argmax(z, 6), 1);
    Sampler s;
    build_sampler(&s, 6);
    etx_policy g = etx_policy_default(ETX_POLICY_GREEDY);
    PolicyDecision d = policy_decision_simple(&g, &no_signals);
    ck_assert_int_eq(sampler_pick(&s, z, &d, 0, 0, 0), 1);
    // candidates: sorted by logit, ties by id, -inf last; the top-2 heap agrees
    ck_assert_int_eq(sampler_candidates(&s, z, 0), 6);
    const int order[6] = {1, 3, 4, 0, 2, 5};
    for (int i = 0; i < 6; i++) ck_assert_int_eq(s.cand[i].id, order[i]);
    ck_assert_int_eq(sampler_candidates(&s, z, 2), 2);
    ck_assert(s.cand[0].id == 1 && s.cand[1].id == 3);
    ck_assert_int_eq(sampler_candidates(&s, z, 4), 4);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(s.cand[i].id, order[i]);
    free_sampler(&s);
}
END_TEST

// The reference order of candidates (sampler.h): larger logit first, then smaller id.
static int ref_cmp(const void* x, const void* y) {
    const PolicyCandidate *a = x, *b = y;
    if (a->logit > b->logit) return -1;
    if (a->logit < b->logit) return 1;
    return (a->id > b->id) - (a->id < b->id);
}

// The radix sort of a whole row gives exactly qsort's candidate order: rows with many
// ties, both zeros, infinities, subnormals, negatives, and a vocabulary-sized row.
START_TEST(radix_sort_matches_the_comparison_sort) {
    const int sizes[] = {1, 2, 7, 300, 49152};
    unsigned seed = 12345;
    for (int si = 0; si < 5; si++) {
        const int n = sizes[si];
        for (int round = 0; round < 4; round++) {
            PolicyCandidate* a = malloc((size_t)n * sizeof *a);
            PolicyCandidate* b = malloc((size_t)n * sizeof *b);
            PolicyCandidate* tmp = malloc((size_t)n * sizeof *tmp);
            for (int i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                const unsigned r = (seed >> 8) % 1000;
                float v;
                if (round == 0) v = (float)(r % 7) - 3.0f; // heavy ties
                else if (r < 20) v = r < 10 ? 0.0f : -0.0f;
                else if (r < 30) v = r < 25 ? INFINITY : -INFINITY;
                else if (r < 40) v = (r < 35 ? 1e-42f : -1e-42f); // subnormals
                else v = ((float)((seed >> 4) % 200001) - 100000.0f) / 997.0f;
                a[i] = b[i] = (PolicyCandidate){v, i};
            }
            sampler_sort_all(a, tmp, n);
            qsort(b, (size_t)n, sizeof *b, ref_cmp);
            for (int i = 0; i < n; i++)
                ck_assert_msg(a[i].id == b[i].id, "n %d round %d: position %d holds id %d (%g), qsort id %d (%g)", n,
                              round, i, a[i].id, (double)a[i].logit, b[i].id, (double)b[i].logit);
            free(a);
            free(b);
            free(tmp);
        }
    }
}
END_TEST

// Draws n tokens with policy from logits (uniforms from Philox over steps) and checks the
// counts against `expect` (probabilities, zero where a token must never appear) with a
// chi-square test at significance 1e-4.
static void check_distribution(const float* z, int vocab, etx_policy pol, const double* expect, int n) {
    Sampler s;
    build_sampler(&s, vocab);
    int* count = calloc((size_t)vocab, sizeof(int));
    const PolicyMetrics m = row_signals(z, vocab);
    PolicyDecision d = policy_decision_simple(&pol, &m);
    for (int i = 0; i < n; i++) {
        int32_t t = sampler_pick(&s, z, &d, pol.seed, 11, (uint32_t)i);
        ck_assert(t >= 0 && t < vocab);
        count[t]++;
    }
    double chi2 = 0.0;
    int df = -1;
    for (int i = 0; i < vocab; i++) {
        if (expect[i] == 0.0) {
            ck_assert_msg(count[i] == 0, "token %d is filtered out but was drawn %d times", i, count[i]);
            continue;
        }
        double e = expect[i] * n;
        chi2 += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    // chi-square critical values at p = 1e-4 for df = 1..5
    const double crit[6] = {0, 15.14, 18.42, 21.11, 23.51, 25.74};
    ck_assert(df >= 1 && df <= 5);
    ck_assert_msg(chi2 < crit[df], "chi-square %.2f >= %.2f (df %d)", chi2, crit[df], df);
    free(count);
    free_sampler(&s);
}

static const double P5[5] = {0.4, 0.3, 0.15, 0.1, 0.05};

static void logits_of(const double* p, int n, float* z) {
    for (int i = 0; i < n; i++) z[i] = (float)log(p[i]) + 3.0f; // shift: softmax ignores it
}

START_TEST(sample_plain_and_temperature) {
    float z[5];
    logits_of(P5, 5, z);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.seed = 42;
    check_distribution(z, 5, pol, P5, 40000);
    // T = 2: p_i^(1/2) renormalised
    double e[5], sum = 0.0;
    for (int i = 0; i < 5; i++) sum += e[i] = sqrt(P5[i]);
    for (int i = 0; i < 5; i++) e[i] /= sum;
    pol.temperature = 2.0f;
    check_distribution(z, 5, pol, e, 40000);
}
END_TEST

START_TEST(sample_top_k) {
    float z[5];
    logits_of(P5, 5, z);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.top_k = 2;
    const double e[5] = {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0};
    check_distribution(z, 5, pol, e, 40000);
}
END_TEST

// top-nσ: the floor max - n sigma of the logits (sigma over the five, unweighted) placed
// between the third and fourth logit keeps three; a hotter temperature does not change
// which (the cut is on the raw logits), only their weights.
START_TEST(sample_top_n_sigma) {
    float z[5];
    logits_of(P5, 5, z);
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < 5; i++) mean += z[i] / 5.0;
    for (int i = 0; i < 5; i++) var += (z[i] - mean) * (z[i] - mean) / 5.0;
    const double sigma = sqrt(var), mid = 0.5 * ((double)z[2] + (double)z[3]);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.seed = 9;
    pol.top_n_sigma = (float)(((double)z[0] - mid) / sigma);
    const double e[5] = {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0};
    check_distribution(z, 5, pol, e, 40000);
    pol.temperature = 3.0f;
    double e3[5] = {0}, sum = 0.0;
    for (int i = 0; i < 3; i++) sum += e3[i] = pow(P5[i], 1.0 / 3.0);
    for (int i = 0; i < 3; i++) e3[i] /= sum;
    check_distribution(z, 5, pol, e3, 40000);
    // a tiny n keeps the max alone
    pol.top_n_sigma = 1e-3f;
    Sampler s;
    build_sampler(&s, 5);
    const PolicyMetrics m = row_signals(z, 5);
    const PolicyDecision d = policy_decision_simple(&pol, &m);
    for (uint32_t i = 0; i < 500; i++) ck_assert_int_eq(sampler_pick(&s, z, &d, pol.seed, 3, i), 0);
    free_sampler(&s);
}
END_TEST

// EDT: T = T0 N^(θ / H), H the entropy of the five in nats; the draws follow
// softmax(z / T) for that T.
START_TEST(sample_entropy_based_temperature) {
    float z[5];
    logits_of(P5, 5, z);
    double h = 0.0;
    for (int i = 0; i < 5; i++) h -= P5[i] * log(P5[i]);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.seed = 77;
    pol.temperature = 1.5f;
    pol.edt_theta = 1.2f;
    const double t = 1.5 * pow(0.8, 1.2 / h);
    double e[5], sum = 0.0;
    for (int i = 0; i < 5; i++) sum += e[i] = pow(P5[i], 1.0 / t);
    for (int i = 0; i < 5; i++) e[i] /= sum;
    check_distribution(z, 5, pol, e, 40000);
}
END_TEST

START_TEST(sample_top_p_smallest_set_reaching_p) {
    float z[5];
    logits_of(P5, 5, z);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    // cumulative 0.4, 0.7, 0.85: the smallest set reaching 0.8 is the first three
    pol.top_p = 0.8f;
    const double e[5] = {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0};
    check_distribution(z, 5, pol, e, 40000);
    // exactly reaching: p = 0.7 keeps two
    pol.top_p = 0.7f;
    const double e2[5] = {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0};
    check_distribution(z, 5, pol, e2, 40000);
    // the most likely token alone when p is below its mass
    pol.top_p = 0.1f;
    Sampler s;
    build_sampler(&s, 5);
    PolicyDecision d = policy_decision_simple(&pol, &no_signals);
    for (int i = 0; i < 100; i++) ck_assert_int_eq(sampler_pick(&s, z, &d, 9, 0, (uint32_t)i), 0);
    free_sampler(&s);
}
END_TEST

START_TEST(sample_min_p) {
    float z[5];
    logits_of(P5, 5, z);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    // threshold 0.3 * 0.4 = 0.12 keeps 0.4, 0.3, 0.15
    pol.min_p = 0.3f;
    const double e[5] = {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0};
    check_distribution(z, 5, pol, e, 40000);
}
END_TEST

START_TEST(sample_filters_combined) {
    // temperature 2 then top-k 4 then top-p 0.75 then min-p 0.7:
    // q = sqrt(p)/sum = .3001 .2599 .1838 .1501 .1061; top-4 renormalised:
    // .3357 .2908 .2056 .1679 -> cumulative .3357 .6265 .8321 reaches .75 at 3 tokens;
    // min-p: .7 * .3357 = .2350 keeps the first two.
    float z[5];
    logits_of(P5, 5, z);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.temperature = 2.0f;
    pol.top_k = 4;
    pol.top_p = 0.75f;
    pol.min_p = 0.7f;
    const double a = sqrt(0.4), b = sqrt(0.3);
    const double e[5] = {a / (a + b), b / (a + b), 0, 0, 0};
    check_distribution(z, 5, pol, e, 40000);
}
END_TEST

START_TEST(sample_handles_neg_inf_and_huge_logits) {
    float z[4] = {-INFINITY, 1e30f, 1e30f - 1e24f, -INFINITY};
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    Sampler s;
    build_sampler(&s, 4);
    PolicyDecision d = policy_decision_simple(&pol, &no_signals);
    for (int i = 0; i < 200; i++) {
        int32_t t = sampler_pick(&s, z, &d, 0, 0, (uint32_t)i);
        ck_assert(t == 1 || t == 2);
    }
    free_sampler(&s);
}
END_TEST

START_TEST(seeded_draws_repeat) {
    float z[5];
    logits_of(P5, 5, z);
    etx_policy pol = etx_policy_default(ETX_POLICY_SAMPLE);
    pol.seed = 1234;
    Sampler s;
    build_sampler(&s, 5);
    int a[64], diff = 0;
    PolicyDecision d = policy_decision_simple(&pol, &no_signals);
    for (int i = 0; i < 64; i++) a[i] = sampler_pick(&s, z, &d, 1234, 5, (uint32_t)i);
    for (int i = 0; i < 64; i++) ck_assert_int_eq(a[i], sampler_pick(&s, z, &d, 1234, 5, (uint32_t)i));
    for (int i = 0; i < 64; i++) diff += a[i] != sampler_pick(&s, z, &d, 1235, 5, (uint32_t)i);
    ck_assert_int_gt(diff, 0);
    free_sampler(&s);
}
END_TEST

START_TEST(policy_validation_names_the_value) {
    etx_policy p = etx_policy_default(ETX_POLICY_SAMPLE);
    ck_assert_int_eq(etx_policy_validate(&p).code, ETX_OK);
    p.temperature = 0.0f;
    etx_status s = etx_policy_validate(&p);
    ck_assert_int_eq(s.code, ETX_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(s.message, "temperature"));
    p = etx_policy_default(ETX_POLICY_SAMPLE);
    p.top_p = 1.5f;
    ck_assert_ptr_nonnull(strstr(etx_policy_validate(&p).message, "top_p"));
    p = etx_policy_default(ETX_POLICY_SAMPLE);
    p.min_p = -0.1f;
    ck_assert_ptr_nonnull(strstr(etx_policy_validate(&p).message, "min_p"));
    p = etx_policy_default(ETX_POLICY_SAMPLE);
    p.top_k = -3;
    ck_assert_ptr_nonnull(strstr(etx_policy_validate(&p).message, "top_k"));
}
END_TEST

int main(void) {
    Suite* s = suite_create("sampler");
    TCase* tc = tcase_create("sampler");
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, uniform_range_and_independence);
    tcase_add_test(tc, argmax_ties_and_greedy);
    tcase_add_test(tc, radix_sort_matches_the_comparison_sort);
    tcase_add_test(tc, sample_plain_and_temperature);
    tcase_add_test(tc, sample_top_k);
    tcase_add_test(tc, sample_top_p_smallest_set_reaching_p);
    tcase_add_test(tc, sample_top_n_sigma);
    tcase_add_test(tc, sample_entropy_based_temperature);
    tcase_add_test(tc, sample_min_p);
    tcase_add_test(tc, sample_filters_combined);
    tcase_add_test(tc, sample_handles_neg_inf_and_huge_logits);
    tcase_add_test(tc, seeded_draws_repeat);
    tcase_add_test(tc, policy_validation_names_the_value);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
