/*
 * test_calibrate.c — the arithmetic of `etx calibrate` (host/policy/calibrate.c):
 * quantiles against numpy (tests/fixtures/calibrate/quantiles.json, made by
 * tests/scripts/gen_calibrate_fixtures.py), the thresholds' placement (a "below"
 * threshold counts the tokens at its quantile as below, so a median of exact zeros still
 * sends them to argmax), the --quantiles parser's errors, and the branch mix a
 * calibrated tree gives on the samples it was calibrated on.
 */
#include <check.h>
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "policy/calibrate.h"
#include "policy_math.h"
#include "check_main.h"

#define FIX ETX_FIXTURES "/calibrate/quantiles.json"

START_TEST(test_quantiles_match_numpy) {
    char* text = NULL;
    ck_assert_int_eq(etx_read_file(FIX, &text, NULL).code, ETX_OK);
    cJSON* root = cJSON_Parse(text);
    ck_assert_ptr_nonnull(root);
    const cJSON* c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const cJSON* vals = cJSON_GetObjectItem(c, "values");
        const int n = cJSON_GetArraySize(vals);
        float* v = xmalloc((size_t)n * sizeof(float));
        for (int i = 0; i < n; i++) v[i] = (float)cJSON_GetArrayItem(vals, i)->valuedouble;
        calib_sort(v, (size_t)n);
        for (int i = 1; i < n; i++) ck_assert(v[i - 1] <= v[i]);
        const cJSON* qs = cJSON_GetObjectItem(c, "q");
        const cJSON* want = cJSON_GetObjectItem(c, "expected");
        for (int j = 0; j < cJSON_GetArraySize(qs); j++) {
            const double q = cJSON_GetArrayItem(qs, j)->valuedouble;
            const double w = cJSON_GetArrayItem(want, j)->valuedouble;
            const double got = calib_quantile(v, (size_t)n, q);
            // the same formula in double on the same floats: equal up to the rounding of
            // the interpolation (a few ulps of the double)
            ck_assert_msg(fabs(got - w) <= 1e-12 * (fabs(w) + 1), "%s, q %g: %.17g, numpy %.17g",
                          cJSON_GetObjectItem(c, "name")->valuestring, q, got, w);
        }
        free(v);
        n_cases++;
    }
    ck_assert_int_ge(n_cases, 6);
    ck_assert(isnan(calib_quantile(NULL, 0, 0.5)));
    cJSON_Delete(root);
    free(text);
}
END_TEST

// Index of a threshold by name.
static int idx(const char* name) {
    for (int i = 0; i < CALIB_N_THRESH; i++)
        if (strcmp(calib_thresholds[i].name, name) == 0) return i;
    ck_abort_msg("no threshold %s", name);
    return -1;
}

START_TEST(test_threshold_placement) {
    // 6 of 10 entropies are exactly 0: the median is 0, and "H < t" must still take them
    float h[10] = {0, 0, 0, 0, 0, 0, 0.5f, 1.0f, 2.0f, 4.0f};
    const int le = idx("low_ent_thresh"), me = idx("med_ent_thresh");
    const float t = calib_threshold(le, h, 10, 0.5);
    ck_assert(t > 0.0f && t == nextafterf(0.0f, 1.0f));
    int below = 0;
    for (int i = 0; i < 10; i++) below += h[i] < t;
    ck_assert_int_eq(below, 6);
    // an "above" threshold is the quantile itself (numpy: 0.9 -> 2 + 0.1 * (4 - 2) = 2.2)
    ck_assert_float_eq(calib_threshold(me, h, 10, 0.9), (float)(2.0 + 0.1 * (4.0 - 2.0)));
    // never below 0 (the parameters' range), whatever the signal
    float neg[3] = {-3, -2, -1};
    ck_assert_float_eq(calib_threshold(me, neg, 3, 0.5), 0.0f);
}
END_TEST

START_TEST(test_parse_quantiles) {
    double q[CALIB_N_THRESH];
    char why[256];
    calib_default_quantiles(q);
    ck_assert_int_eq(calib_parse_quantiles("", q, why, sizeof why), 0);
    ck_assert(q[idx("low_ent_thresh")] == 0.5 && q[idx("high_ent_thresh")] == 0.99);
    ck_assert_int_eq(calib_parse_quantiles("low_ent_thresh=0.3,high_vent_thresh=0.97", q, why, sizeof why), 0);
    ck_assert(q[idx("low_ent_thresh")] == 0.3 && q[idx("high_vent_thresh")] == 0.97);
    static const struct {
        const char* spec;
        const char* says;
    } bad[] = {
        {"low_ent=0.3", "unknown threshold 'low_ent'"},
        {"low_ent_thresh", "is not name=quantile"},
        {"low_ent_thresh=", "is not a number"},
        {"low_ent_thresh=abc", "'abc' is not a number"},
        {"low_ent_thresh=0.5x", "is not a number"},
        {"low_ent_thresh=1", "1 is not in (0, 1)"},
        {"low_ent_thresh=0", "is not in (0, 1)"},
        {"low_ent_thresh=0.97", "low_ent_thresh <= med_ent_thresh <= high_ent_thresh"},
        {"med_ent_thresh=0.995", "low_ent_thresh <= med_ent_thresh <= high_ent_thresh"},
        {"low_vent_thresh=0.96", "low_vent_thresh <= high_vent_thresh"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        calib_default_quantiles(q);
        why[0] = '\0';
        ck_assert_msg(calib_parse_quantiles(bad[i].spec, q, why, sizeof why) == -1, "%s accepted", bad[i].spec);
        ck_assert_msg(strstr(why, bad[i].says) != NULL, "%s: '%s' does not say '%s'", bad[i].spec, why, bad[i].says);
    }
}
END_TEST

// The calibrated tree on the samples it came from: argmax takes at least the quantile's
// share of tokens (more where H and V agree), HEHV at most the tail's.
START_TEST(test_branch_mix_follows_quantiles) {
    enum { N = 4000 };
    float* h = xmalloc(N * sizeof(float));
    float* v = xmalloc(N * sizeof(float));
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) { // V grows with H plus noise, as in real traces
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const double u = (double)(x >> 11) / 9007199254740992.0;
        h[i] = (float)(i % 5 == 0 ? 0.0 : -log(1 - u) * 1.5);
        v[i] = h[i] * 2.0f + (float)((x >> 7) % 1000) / 500.0f;
    }
    PolicyMetrics* m = xcalloc(N, sizeof *m);
    for (int i = 0; i < N; i++) m[i].entropy = h[i], m[i].varentropy = v[i];
    float* hs = xmalloc(N * sizeof(float));
    float* vs = xmalloc(N * sizeof(float));
    memcpy(hs, h, N * sizeof(float));
    memcpy(vs, v, N * sizeof(float));
    calib_sort(hs, N);
    calib_sort(vs, N);
    double q[CALIB_N_THRESH];
    calib_default_quantiles(q);
    etx_policy p = etx_policy_default(ETX_POLICY_ENTROPIX);
    for (int i = 0; i < CALIB_N_THRESH; i++) {
        const float t = calib_threshold(i, calib_thresholds[i].signal ? vs : hs, N, q[i]);
        ck_assert_int_eq(etx_policy_set(&p, calib_thresholds[i].name, t).code, ETX_OK);
    }
    int count[ETX_BRANCH_COUNT] = {0};
    for (int i = 0; i < N; i++) count[entropix_decide(&p.entropix, &m[i], -1, 0).branch]++;
    const float hm = (float)calib_quantile(hs, N, 0.5), vm = (float)calib_quantile(vs, N, 0.5);
    int below_both = 0;
    for (int i = 0; i < N; i++) below_both += h[i] <= hm && v[i] <= vm;
    ck_assert_int_eq(count[ETX_BRANCH_ARGMAX], below_both); // exactly "both at or below the median"
    ck_assert_int_ge(count[ETX_BRANCH_ARGMAX], N / 4);
    ck_assert_int_le(count[ETX_BRANCH_HEHV], N / 20 + 1);
    ck_assert_int_le(count[ETX_BRANCH_LEHV] + count[ETX_BRANCH_HEHV], N / 20 + 1); // V in its top 5 %
    free(h), free(v), free(hs), free(vs), free(m);
}
END_TEST

static Suite* calibrate_suite(void) {
    Suite* s = suite_create("calibrate");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, test_quantiles_match_numpy);
    tcase_add_test(tc, test_threshold_placement);
    tcase_add_test(tc, test_parse_quantiles);
    tcase_add_test(tc, test_branch_mix_follows_quantiles);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return check_run_suite(calibrate_suite()); }
