/*
 * test_vote.c — host/eval/vote.c against hand-computed values: trace confidence (groups
 * over full windows only, as DeepConf's reference, one group for a trace shorter than the
 * window; lowest group, bottom 10%, tail, the empty trace),
 * majority / confidence / DeepConf votes (ties to the first occurrence, unanswered samples
 * ignored, weights flipping a majority, the eta filter), pass@k against its closed form,
 * and numpy.percentile's linear method.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "eval/vote.h"
#include "check_main.h"

#define EPS 1e-12

static int cmp_double(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

// ---- trace confidence ----

START_TEST(trace_full_windows) {
    // window 3: the full groups end at tokens 2..5: (1+2+3)/3, (2+3+4)/3, (3+4+5)/3,
    // (4+5+6)/3 = 2, 3, 4, 5 (the partial means 1 and 1.5 at tokens 0 and 1 are no groups)
    const float c[] = {1, 2, 3, 4, 5, 6};
    TraceConfidence t;
    trace_confidence(c, 6, 3, 2, &t);
    ck_assert_int_eq(t.n_tokens, 6);
    ck_assert_double_eq_tol(t.mean, 3.5, EPS);
    ck_assert_double_eq_tol(t.lowest_group, 2.0, EPS);
    ck_assert_double_eq_tol(t.tail, 5.5, EPS);           // (5 + 6) / 2
    ck_assert_double_eq_tol(t.bottom10_group, 2.0, EPS); // 4/10 = 0 -> at least one: min G
}
END_TEST

START_TEST(trace_early_dip_counts_in_full_windows_only) {
    // window 3: groups 21/3 = 7, 21/3 = 7, 30/3 = 10. A partial window at token 1 would
    // give (10+1)/2 = 5.5: the first tokens, which every sample of a prompt shares, would
    // then be each sample's lowest group (DeepConf's reference has no partial groups)
    const float c[] = {10, 1, 10, 10, 10};
    TraceConfidence t;
    trace_confidence(c, 5, 3, 5, &t);
    ck_assert_double_eq_tol(t.lowest_group, 7.0, EPS);
    ck_assert_double_eq_tol(t.mean, 41.0 / 5, EPS);
    ck_assert_double_eq_tol(t.tail, 41.0 / 5, EPS);
}
END_TEST

START_TEST(trace_shorter_than_window_is_one_group) {
    const float c[] = {4, 1, 7};
    TraceConfidence t;
    trace_confidence(c, 3, 64, 64, &t);
    ck_assert_double_eq_tol(t.lowest_group, 4.0, EPS); // the mean of all three
    ck_assert_double_eq_tol(t.bottom10_group, 4.0, EPS);
    trace_confidence(c, 3, 3, 3, &t); // exactly one full window
    ck_assert_double_eq_tol(t.lowest_group, 4.0, EPS);
}
END_TEST

START_TEST(trace_lowest_group_in_sliding_part) {
    // window 2: G_1.. = 4, 4, 4, (4+0)/2 = 2, (0+2)/2 = 1, (2+4)/2 = 3, 4, 4, 4
    const float c[] = {4, 4, 4, 4, 0, 2, 4, 4, 4, 4};
    TraceConfidence t;
    trace_confidence(c, 10, 2, 100, &t);                 // tail_n > n: the whole trace
    ck_assert_double_eq_tol(t.lowest_group, 1.0, EPS);
    ck_assert_double_eq_tol(t.bottom10_group, 1.0, EPS); // 9/10 = 0 -> at least one: the lowest
    ck_assert_double_eq_tol(t.mean, 3.4, EPS);
    ck_assert_double_eq_tol(t.tail, 3.4, EPS);
}
END_TEST

START_TEST(trace_bottom10_averages_lowest_tenth) {
    // 20 tokens, window 1 (G = c): the lowest 20/10 = 2 are 1 and 3
    float c[20];
    for (int i = 0; i < 20; i++) c[i] = 9.0f;
    c[4] = 3.0f;
    c[15] = 1.0f;
    c[16] = 5.0f;
    TraceConfidence t;
    trace_confidence(c, 20, 1, 3, &t);
    ck_assert_double_eq_tol(t.lowest_group, 1.0, EPS);
    ck_assert_double_eq_tol(t.bottom10_group, 2.0, EPS);
    ck_assert_double_eq_tol(t.tail, 9.0, EPS); // tokens 17..19; the 5 at 16 is not in
}
END_TEST

START_TEST(trace_window_below_one_is_one) {
    const float c[] = {3, 1, 2};
    TraceConfidence t;
    trace_confidence(c, 3, 0, 0, &t);
    ck_assert_double_eq_tol(t.lowest_group, 1.0, EPS);
    ck_assert_double_eq_tol(t.tail, 2.0, EPS); // tail_n 0 -> 1: the last token
}
END_TEST

START_TEST(trace_long_matches_direct_sums) {
    // 100000 tokens, window 64: every full-window G_i summed directly agrees
    enum { N = 100000, W = 64, G = N - W + 1 };
    float* c = malloc(N * sizeof *c);
    double* g = malloc(G * sizeof *g);
    for (int i = 0; i < N; i++) c[i] = 3.0f + 0.1f * (float)(i % 7) + 0.013f * (float)(i % 11);
    for (int i = 77700; i <= 77720; i++) c[i] = 0.1f; // a dip: its windows are the lowest
    double lowest = INFINITY;
    for (int i = W - 1; i < N; i++) {
        double s = 0;
        for (int j = i - W + 1; j <= i; j++) s += c[j];
        g[i - (W - 1)] = s / W;
        if (s / W < lowest) lowest = s / W;
    }
    TraceConfidence t;
    trace_confidence(c, N, W, 2048, &t);
    ck_assert_double_eq_tol(t.lowest_group, lowest, 1e-12);
    // the lowest tenth of the directly summed G_i
    qsort(g, G, sizeof *g, cmp_double);
    double bottom = 0;
    for (int k = 0; k < G / 10; k++) bottom += g[k];
    ck_assert_double_eq_tol(t.bottom10_group, bottom / (G / 10), 1e-12);
    ck_assert_double_eq(g[0], lowest);
    ck_assert(lowest < 2.5); // the dip, not G_0 = 3
    free(c);
    free(g);
}
END_TEST

START_TEST(trace_empty_is_least_confident) {
    TraceConfidence t;
    trace_confidence(NULL, 0, 16, 16, &t);
    ck_assert_int_eq(t.n_tokens, 0);
    ck_assert(isinf(t.mean) && t.mean < 0);
    ck_assert(isinf(t.lowest_group) && t.lowest_group < 0);
    ck_assert(isinf(t.tail) && t.tail < 0);
    ck_assert(isinf(t.bottom10_group) && t.bottom10_group < 0);
}
END_TEST

// ---- votes ----

START_TEST(parse_names) {
    VoteMethod m = VOTE_DEEPCONF;
    ck_assert_int_eq(vote_parse("majority", &m), 1);
    ck_assert_int_eq(m, VOTE_MAJORITY);
    ck_assert_int_eq(vote_parse("confidence", &m), 1);
    ck_assert_int_eq(m, VOTE_CONFIDENCE);
    ck_assert_int_eq(vote_parse("deepconf", &m), 1);
    ck_assert_int_eq(m, VOTE_DEEPCONF);
    ck_assert_int_eq(vote_parse("Majority", &m), 0);
    ck_assert_int_eq(vote_parse("", &m), 0);
    ck_assert_int_eq(m, VOTE_DEEPCONF); // untouched on failure
    ck_assert_str_eq(vote_name(VOTE_CONFIDENCE), "confidence");
}
END_TEST

START_TEST(majority_ties_to_first_occurrence) {
    char out[16];
    VoteResult r;
    const char* a[] = {"3", "5", "5", "3", "7"}; // 3 and 5 have two votes; 3 came first
    vote_aggregate(VOTE_MAJORITY, a, NULL, 5, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "3");
    ck_assert_int_eq(r.n_votes_winner, 2);
    ck_assert_int_eq(r.n_kept, 5);
    ck_assert_int_eq(r.n_answered, 5);
    ck_assert_int_eq(r.winner_sample, 0);
    const char* b[] = {"7", "5", "3", "3", "5"}; // now 5 came first
    vote_aggregate(VOTE_MAJORITY, b, NULL, 5, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "5");
    ck_assert_int_eq(r.winner_sample, 1);
    const char* c[] = {"1", "2", "2"};
    vote_aggregate(VOTE_MAJORITY, c, NULL, 3, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "2");
    ck_assert_int_eq(r.n_votes_winner, 2);
}
END_TEST

START_TEST(majority_ignores_empty_answers) {
    char out[16];
    VoteResult r;
    const char* a[] = {"", "", "4", NULL, "9", "9"}; // "" would win 3 votes if it counted
    vote_aggregate(VOTE_MAJORITY, a, NULL, 6, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "9");
    ck_assert_int_eq(r.n_votes_winner, 2);
    ck_assert_int_eq(r.n_answered, 3);
    ck_assert_int_eq(r.n_kept, 3);
    ck_assert_int_eq(r.winner_sample, 4);
    const char* none[] = {"", "", ""};
    const double conf[] = {1, 2, 3};
    for (int m = VOTE_MAJORITY; m <= VOTE_DEEPCONF; m++) {
        vote_aggregate((VoteMethod)m, none, conf, 3, 0.5, out, sizeof out, &r);
        ck_assert_str_eq(out, "");
        ck_assert_int_eq(r.n_votes_winner, 0);
        ck_assert_int_eq(r.n_kept, 0);
        ck_assert_int_eq(r.n_answered, 0);
        ck_assert_int_eq(r.winner_sample, -1);
    }
    vote_aggregate(VOTE_MAJORITY, NULL, NULL, 0, 1.0, out, sizeof out, NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(confidence_flips_majority) {
    char out[16];
    VoteResult r;
    const char* a[] = {"1", "1", "1", "2"};
    const double conf[] = {0.5, 0.5, 0.5, 2.0}; // weights: "1" 1.5, "2" 2.0
    vote_aggregate(VOTE_MAJORITY, a, conf, 4, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "1");
    vote_aggregate(VOTE_CONFIDENCE, a, conf, 4, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "2");
    ck_assert_int_eq(r.n_votes_winner, 1);
    ck_assert_int_eq(r.n_kept, 4);
    ck_assert_int_eq(r.winner_sample, 3);
    // conf NULL: every sample weighs 1, a majority vote
    vote_aggregate(VOTE_CONFIDENCE, a, NULL, 4, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "1");
}
END_TEST

START_TEST(confidence_ties_and_nonfinite) {
    char out[16];
    VoteResult r;
    const char* a[] = {"b", "a", "a", "b"};
    const double conf[] = {1.0, 1.5, 0.5, 1.0}; // 2.0 each: "b" came first
    vote_aggregate(VOTE_CONFIDENCE, a, conf, 4, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "b");
    // an empty trace's -INFINITY loses to any finite weight; NaN counts as -INFINITY
    const char* b[] = {"x", "y"};
    const double c1[] = {-INFINITY, 0.0};
    vote_aggregate(VOTE_CONFIDENCE, b, c1, 2, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "y");
    const double c2[] = {NAN, -3.0};
    vote_aggregate(VOTE_CONFIDENCE, b, c2, 2, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "y");
    vote_aggregate(VOTE_DEEPCONF, b, c2, 2, 0.5, out, sizeof out, &r);
    ck_assert_str_eq(out, "y");
    ck_assert_int_eq(r.n_kept, 1);
}
END_TEST

START_TEST(deepconf_eta_filter) {
    char out[16];
    VoteResult r;
    const char* a[] = {"1", "1", "1", "2"};
    const double conf[] = {0.5, 0.6, 0.4, 0.9};
    // eta 0.1: ceil(0.4) = 1 kept, the most confident (sample 3)
    vote_aggregate(VOTE_DEEPCONF, a, conf, 4, 0.1, out, sizeof out, &r);
    ck_assert_str_eq(out, "2");
    ck_assert_int_eq(r.n_kept, 1);
    ck_assert_int_eq(r.n_votes_winner, 1);
    // eta 0.5: samples 3 (0.9) and 1 (0.6): "2" 0.9 > "1" 0.6
    vote_aggregate(VOTE_DEEPCONF, a, conf, 4, 0.5, out, sizeof out, &r);
    ck_assert_str_eq(out, "2");
    ck_assert_int_eq(r.n_kept, 2);
    // eta 0.75: + sample 0 (0.5): "1" 1.1 > "2" 0.9
    vote_aggregate(VOTE_DEEPCONF, a, conf, 4, 0.75, out, sizeof out, &r);
    ck_assert_str_eq(out, "1");
    ck_assert_int_eq(r.n_kept, 3);
    ck_assert_int_eq(r.n_votes_winner, 2);
    ck_assert_int_eq(r.winner_sample, 0);
    // eta 1: everything, "1" 1.5 > "2" 0.9; eta > 1 is 1, eta 0 keeps one
    vote_aggregate(VOTE_DEEPCONF, a, conf, 4, 1.0, out, sizeof out, &r);
    ck_assert_str_eq(out, "1");
    ck_assert_int_eq(r.n_kept, 4);
    ck_assert_int_eq(r.n_votes_winner, 3);
    vote_aggregate(VOTE_DEEPCONF, a, conf, 4, 2.0, out, sizeof out, &r);
    ck_assert_int_eq(r.n_kept, 4);
    vote_aggregate(VOTE_DEEPCONF, a, conf, 4, 0.0, out, sizeof out, &r);
    ck_assert_int_eq(r.n_kept, 1);
    ck_assert_str_eq(out, "2");
}
END_TEST

START_TEST(deepconf_rank_ties_and_unanswered) {
    char out[16];
    VoteResult r;
    // equal confidences: the lower index is kept
    const char* a[] = {"a", "b", "c"};
    const double conf[] = {1.0, 2.0, 2.0};
    vote_aggregate(VOTE_DEEPCONF, a, conf, 3, 0.1, out, sizeof out, &r);
    ck_assert_str_eq(out, "b");
    // unanswered samples are not ranked: the confident "" does not take the one place
    const char* b[] = {"", "5", "6"};
    const double cb[] = {9.0, 1.0, 2.0};
    vote_aggregate(VOTE_DEEPCONF, b, cb, 3, 0.1, out, sizeof out, &r);
    ck_assert_str_eq(out, "6");
    ck_assert_int_eq(r.n_kept, 1);
    ck_assert_int_eq(r.n_answered, 2);
    ck_assert_int_eq(r.winner_sample, 2);
}
END_TEST

START_TEST(deepconf_eta_rounding) {
    // 0.07 * 100 = 7.000000000000001 in double: still 7 kept, not 8
    const char* a[100];
    double conf[100];
    for (int i = 0; i < 100; i++) {
        a[i] = i % 2 ? "odd" : "even";
        conf[i] = i;
    }
    char out[16];
    VoteResult r;
    vote_aggregate(VOTE_DEEPCONF, a, conf, 100, 0.07, out, sizeof out, &r);
    ck_assert_int_eq(r.n_kept, 7);
    // kept 93..99: odd 93 95 97 99 (4 votes, 384) beat even 94 96 98 (288)
    ck_assert_str_eq(out, "odd");
    ck_assert_int_eq(r.n_votes_winner, 4);
    ck_assert_int_eq(r.winner_sample, 93);
    vote_aggregate(VOTE_DEEPCONF, a, conf, 100, 0.9, out, sizeof out, &r);
    ck_assert_int_eq(r.n_kept, 90);
}
END_TEST

START_TEST(vote_truncates_to_cap) {
    char out[3];
    const char* a[] = {"12345"};
    vote_aggregate(VOTE_MAJORITY, a, NULL, 1, 1.0, out, sizeof out, NULL);
    ck_assert_str_eq(out, "12");
}
END_TEST

// ---- pass@k ----

static double binom(int n, int k) {
    double r = 1;
    for (int i = 1; i <= k; i++) r = r * (n - k + i) / i;
    return r;
}

START_TEST(pass_at_k_closed_form) {
    ck_assert_double_eq_tol(pass_at_k(5, 2, 2), 0.7, EPS);      // 1 - 3/10
    ck_assert_double_eq_tol(pass_at_k(6, 2, 3), 0.8, EPS);      // 1 - C(4,3)/C(6,3) = 1 - 4/20
    ck_assert_double_eq_tol(pass_at_k(10, 3, 1), 0.3, EPS);     // pass@1 = c/n
    ck_assert_double_eq_tol(pass_at_k(5, 0, 3), 0.0, EPS);
    ck_assert_double_eq_tol(pass_at_k(5, 5, 1), 1.0, EPS);
    ck_assert_double_eq_tol(pass_at_k(4, 3, 2), 1.0, EPS);      // n - c = 1 < k
    for (int n = 1; n <= 12; n++)
        for (int c = 0; c <= n; c++)
            for (int k = 1; k <= n; k++)
                ck_assert_double_eq_tol(pass_at_k(n, c, k), 1.0 - binom(n - c, k) / binom(n, k), 1e-12);
    // large n: C(n, k) overflows nothing in the product form
    const double p = pass_at_k(2000, 10, 1000);
    ck_assert(p > 0.99 && p <= 1.0);
    ck_assert(isnan(pass_at_k(5, 2, 0)));
    ck_assert(isnan(pass_at_k(5, 2, 6)));
    ck_assert(isnan(pass_at_k(5, 6, 1)));
    ck_assert(isnan(pass_at_k(5, -1, 1)));
}
END_TEST

// ---- percentile ----

START_TEST(percentile_numpy_linear) {
    const double v[] = {4, 1, 3, 2}; // sorted 1 2 3 4
    ck_assert_double_eq_tol(conf_percentile(v, 4, 25), 1.75, EPS); // h = 0.75
    ck_assert_double_eq_tol(conf_percentile(v, 4, 50), 2.5, EPS);  // h = 1.5
    ck_assert_double_eq_tol(conf_percentile(v, 4, 75), 3.25, EPS); // h = 2.25
    ck_assert_double_eq_tol(conf_percentile(v, 4, 0), 1.0, EPS);
    ck_assert_double_eq_tol(conf_percentile(v, 4, 100), 4.0, EPS);
    ck_assert_double_eq_tol(conf_percentile(v, 4, 150), 4.0, EPS); // clamped
    ck_assert_double_eq_tol(conf_percentile(v, 4, -5), 1.0, EPS);
    ck_assert_double_eq(v[0], 4.0); // the input is not sorted in place
    const double w[] = {10, 20, 30};
    ck_assert_double_eq_tol(conf_percentile(w, 3, 90), 28.0, EPS); // h = 1.8
    const double u[] = {5, 4, 3, 2, 1};
    ck_assert_double_eq_tol(conf_percentile(u, 5, 10), 1.4, EPS);  // h = 0.4
    const double one[] = {7};
    ck_assert_double_eq_tol(conf_percentile(one, 1, 33), 7.0, EPS);
    ck_assert(isnan(conf_percentile(v, 0, 50)));
    ck_assert(isnan(conf_percentile(v, 4, NAN)));
}
END_TEST

static Suite* vote_suite(void) {
    Suite* s = suite_create("vote");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, trace_full_windows);
    tcase_add_test(tc, trace_early_dip_counts_in_full_windows_only);
    tcase_add_test(tc, trace_shorter_than_window_is_one_group);
    tcase_add_test(tc, trace_lowest_group_in_sliding_part);
    tcase_add_test(tc, trace_bottom10_averages_lowest_tenth);
    tcase_add_test(tc, trace_window_below_one_is_one);
    tcase_add_test(tc, trace_long_matches_direct_sums);
    tcase_add_test(tc, trace_empty_is_least_confident);
    tcase_add_test(tc, parse_names);
    tcase_add_test(tc, majority_ties_to_first_occurrence);
    tcase_add_test(tc, majority_ignores_empty_answers);
    tcase_add_test(tc, confidence_flips_majority);
    tcase_add_test(tc, confidence_ties_and_nonfinite);
    tcase_add_test(tc, deepconf_eta_filter);
    tcase_add_test(tc, deepconf_rank_ties_and_unanswered);
    tcase_add_test(tc, deepconf_eta_rounding);
    tcase_add_test(tc, vote_truncates_to_cap);
    tcase_add_test(tc, pass_at_k_closed_form);
    tcase_add_test(tc, percentile_numpy_linear);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return check_run_suite(vote_suite()); }
