/*
 * fuzz_gsm8k.c — libFuzzer target: GSM8K answer extraction and scoring
 * (host/eval/eval_score.c: the strict "#### N" and flexible last-number patterns, the
 * normalisation, the comparison with the reference).
 *
 * The input is a completion, then optionally a NUL byte and the reference answer; the
 * first byte also sets a small output capacity for the extractors (1..64, as callers
 * with short buffers would pass). Invariants: every output is NUL-terminated inside its
 * buffer; a match is only "ok" when it was found; the normalised forms contain no ','
 * or '$' and do not start or end with white space. Seeds: completions and answers of
 * tests/fixtures/eval/gsm8k_sample.jsonl (tests/scripts/gen_fuzz_corpus.py).
 */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "eval/eval_score.h"
#include "util.h"

static void check_normalized(const char* s, size_t cap) {
    size_t n = strnlen(s, cap);
    FUZZ_CHECK(n < cap);
    FUZZ_CHECK(!strchr(s, ',') && !strchr(s, '$'));
    if (n > 0) FUZZ_CHECK(!isspace((unsigned char)s[0]) && !isspace((unsigned char)s[n - 1]));
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    char* text = fuzz_cstr(data, size); // the completion ends at the first NUL
    size_t n_completion = strlen(text);
    const char* reference = n_completion < size ? text + n_completion + 1 : "#### 42";
    size_t cap = size > 0 ? 1 + data[0] % 64 : 1;

    char out[GSM8K_ANS_MAX];
    memset(out, 'x', sizeof out);
    int found = gsm8k_extract_strict(text, out, cap);
    FUZZ_CHECK(strnlen(out, cap) < cap && (found || out[0] == '\0'));
    memset(out, 'x', sizeof out);
    found = gsm8k_extract_flexible(text, out, cap);
    FUZZ_CHECK(strnlen(out, cap) < cap && (found || out[0] == '\0'));
    gsm8k_normalize(text, out, cap);
    check_normalized(out, cap);

    Gsm8kScore s;
    gsm8k_score(text, reference, &s);
    check_normalized(s.reference, sizeof s.reference);
    check_normalized(s.strict, sizeof s.strict);
    check_normalized(s.flexible, sizeof s.flexible);
    FUZZ_CHECK(!s.strict_ok || (s.has_strict && strcmp(s.strict, s.reference) == 0));
    FUZZ_CHECK(!s.flexible_ok || (s.has_flexible && strcmp(s.flexible, s.reference) == 0));
    free(text);
    return 0;
}
