/*
 * test_eval_score.c — GSM8K answer extraction and scoring (host/eval/eval_score.c) against
 * lm-evaluation-harness's rules: strict "#### N" (first match), flexible last number,
 * "," "$" and a trailing "." ignored, negatives and decimals kept, no number = wrong.
 */
#include <check.h>
#include <stdlib.h>

#include "eval/eval_score.h"
#include "check_main.h"

START_TEST(strict_first_match) {
    char out[GSM8K_ANS_MAX];
    ck_assert_int_eq(gsm8k_extract_strict("so 3 + 4 = 7\n#### 7\n#### 9", out, sizeof out), 1);
    ck_assert_str_eq(out, "7");
    ck_assert_int_eq(gsm8k_extract_strict("#### -1,234.50", out, sizeof out), 1);
    ck_assert_str_eq(out, "-1,234.50");
    ck_assert_int_eq(gsm8k_extract_strict("The answer is 7.", out, sizeof out), 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(gsm8k_extract_strict("####7", out, sizeof out), 0); // the space is required
}
END_TEST

START_TEST(flexible_last_match) {
    char out[GSM8K_ANS_MAX];
    ck_assert_int_eq(gsm8k_extract_flexible("16 - 3 - 4 = 9 eggs, 9 * 2 = $18.", out, sizeof out), 1);
    ck_assert_str_eq(out, "$18.");
    ck_assert_int_eq(gsm8k_extract_flexible("I get 5", out, sizeof out), 1); // one digit: second alternative
    ck_assert_str_eq(out, "5");
    ck_assert_int_eq(gsm8k_extract_flexible("owes -7 now", out, sizeof out), 1);
    ck_assert_str_eq(out, "-7");
    ck_assert_int_eq(gsm8k_extract_flexible("no numbers here", out, sizeof out), 0);
}
END_TEST

START_TEST(normalize_rules) {
    char out[GSM8K_ANS_MAX];
    gsm8k_normalize("$1,000.", out, sizeof out);
    ck_assert_str_eq(out, "1000");
    gsm8k_normalize("Janet sells 9 eggs.\n#### 18", out, sizeof out);
    ck_assert_str_eq(out, "18");
    gsm8k_normalize("3.5", out, sizeof out);
    ck_assert_str_eq(out, "3.5");
    gsm8k_normalize("-12", out, sizeof out);
    ck_assert_str_eq(out, "-12");
    gsm8k_normalize(" 42 ", out, sizeof out);
    ck_assert_str_eq(out, "42");
}
END_TEST

START_TEST(score_strict_vs_flexible) {
    Gsm8kScore s;
    const char* ref = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18";
    gsm8k_score("She makes 9 * 2 = $18 every day.\n#### 18", ref, &s);
    ck_assert_int_eq(s.strict_ok, 1);
    ck_assert_int_eq(s.flexible_ok, 1);
    ck_assert_str_eq(s.reference, "18");
    gsm8k_score("9 * 2 = 18. So the answer is 18.", ref, &s); // lm-eval few-shot style: no ####
    ck_assert_int_eq(s.has_strict, 0);
    ck_assert_int_eq(s.strict_ok, 0);
    ck_assert_int_eq(s.flexible_ok, 1);
    ck_assert_str_eq(s.flexible, "18");
    gsm8k_score("#### 18\nbut then 20 more", ref, &s); // strict takes the first, flexible the last
    ck_assert_int_eq(s.strict_ok, 1);
    ck_assert_int_eq(s.flexible_ok, 0);
    ck_assert_str_eq(s.flexible, "20");
}
END_TEST

START_TEST(score_commas_dollars_negatives_decimals) {
    Gsm8kScore s;
    gsm8k_score("The total is $1,200.", "#### 1200", &s);
    ck_assert_int_eq(s.flexible_ok, 1);
    gsm8k_score("#### $1,200", "#### 1,200", &s);
    ck_assert_int_eq(s.strict_ok, 0); // "$" is not in the strict pattern: "#### $" does not match
    ck_assert_int_eq(s.flexible_ok, 1);
    gsm8k_score("#### -5", "#### -5", &s);
    ck_assert_int_eq(s.strict_ok, 1);
    ck_assert_int_eq(s.flexible_ok, 1);
    gsm8k_score("She paid 2.5 dollars", "#### 2.5", &s);
    ck_assert_int_eq(s.flexible_ok, 1);
    gsm8k_score("#### 2.50", "#### 2.5", &s); // exact match after normalisation, not numeric
    ck_assert_int_eq(s.strict_ok, 0);
}
END_TEST

START_TEST(score_no_number) {
    Gsm8kScore s;
    gsm8k_score("I do not know.", "#### 7", &s);
    ck_assert_int_eq(s.has_strict, 0);
    ck_assert_int_eq(s.has_flexible, 0);
    ck_assert_int_eq(s.strict_ok, 0);
    ck_assert_int_eq(s.flexible_ok, 0);
    gsm8k_score("", "#### 7", &s);
    ck_assert_int_eq(s.flexible_ok, 0);
}
END_TEST

int main(void) {
    Suite* s = suite_create("eval_score");
    TCase* tc = tcase_create("gsm8k");
    tcase_add_test(tc, strict_first_match);
    tcase_add_test(tc, flexible_last_match);
    tcase_add_test(tc, normalize_rules);
    tcase_add_test(tc, score_strict_vs_flexible);
    tcase_add_test(tc, score_commas_dollars_negatives_decimals);
    tcase_add_test(tc, score_no_number);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
