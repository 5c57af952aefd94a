/*
 * eval_score.c — GSM8K answer extraction and scoring as lm-evaluation-harness does it
 * (tasks/gsm8k: "strict-match" and "flexible-extract" filters, exact_match with
 * regexes_to_ignore [",", "\$", "(?s).*#### ", "\.$"] and ignore_case). PCRE2 runs the
 * harness's own patterns, so what matches there matches here.
 */
#include <ctype.h>
#include <string.h>

#include "eval/eval_score.h"

#include <pcre2.h>

static void copy_span(const char* s, size_t a, size_t b, char* out, size_t cap) {
    size_t n = b - a;
    if (n >= cap) n = cap - 1;
    memcpy(out, s + a, n);
    out[n] = '\0';
}

// Finds the first (last = 0) or last (last = 1) match of pattern in text and copies the
// first group that took part in it (or the whole match when the pattern has no group).
static int find_match(const char* pattern, const char* text, int last, char* out, size_t cap) {
    int err;
    PCRE2_SIZE erroff;
    pcre2_code* re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &erroff, NULL);
    if (!re) return 0;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, NULL);
    const size_t len = strlen(text);
    uint32_t n_groups = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &n_groups);
    int found = 0;
    size_t pos = 0;
    while (pos <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)text, len, pos, 0, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        int g = 0;
        for (uint32_t k = 1; k <= n_groups && g == 0; k++)
            if ((int)k < rc && ov[2 * k] != PCRE2_UNSET) g = (int)k;
        copy_span(text, ov[2 * g], ov[2 * g + 1], out, cap);
        found = 1;
        if (!last) break;
        pos = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return found;
}

int gsm8k_extract_strict(const char* text, char* out, size_t cap) {
    out[0] = '\0';
    return find_match("#### (\\-?[0-9\\.\\,]+)", text, 0, out, cap);
}

int gsm8k_extract_flexible(const char* text, char* out, size_t cap) {
    out[0] = '\0';
    return find_match("(-?[$0-9.,]{2,})|(-?[0-9]+)", text, 1, out, cap);
}

void gsm8k_normalize(const char* in, char* out, size_t cap) {
    // everything up to the last "#### " goes ("(?s).*#### " is greedy)
    const char* start = in;
    for (const char* p = strstr(in, "#### "); p; p = strstr(p + 1, "#### ")) start = p + 5;
    size_t j = 0;
    for (const char* p = start; *p && j + 1 < cap; p++) {
        if (*p == ',' || *p == '$') continue;
        out[j++] = (char)tolower((unsigned char)*p);
    }
    out[j] = '\0';
    if (j > 0 && out[j - 1] == '.') out[--j] = '\0';
    // trim spaces
    while (j > 0 && isspace((unsigned char)out[j - 1])) out[--j] = '\0';
    size_t k = 0;
    while (out[k] && isspace((unsigned char)out[k])) k++;
    if (k) memmove(out, out + k, j - k + 1);
}

void gsm8k_score(const char* completion, const char* reference, Gsm8kScore* s) {
    char raw[GSM8K_ANS_MAX];
    memset(s, 0, sizeof *s);
    gsm8k_normalize(reference, s->reference, sizeof s->reference);
    s->has_strict = gsm8k_extract_strict(completion, raw, sizeof raw);
    if (s->has_strict) gsm8k_normalize(raw, s->strict, sizeof s->strict);
    s->has_flexible = gsm8k_extract_flexible(completion, raw, sizeof raw);
    if (s->has_flexible) gsm8k_normalize(raw, s->flexible, sizeof s->flexible);
    s->strict_ok = s->has_strict && strcmp(s->strict, s->reference) == 0;
    s->flexible_ok = s->has_flexible && strcmp(s->flexible, s->reference) == 0;
}
