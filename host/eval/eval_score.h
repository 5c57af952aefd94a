/*
 * eval_score.h — scoring of evaluation answers (internal). GSM8K as
 * lm-evaluation-harness scores it: a strict extraction (the first "#### N") and a
 * flexible one (the last number in the text), each normalised ("," and "$" removed,
 * everything up to the last "#### " removed, a trailing "." removed) and compared with
 * the reference's "#### N" normalised the same way.
 */
#ifndef ETX_EVAL_SCORE_H
#define ETX_EVAL_SCORE_H

#include <stddef.h>

#define GSM8K_ANS_MAX 64

typedef struct {
    int has_strict;                  // 1 when the strict pattern matched
    int has_flexible;                // 1 when the flexible pattern matched
    char strict[GSM8K_ANS_MAX];      // normalised strict answer ("" when none)
    char flexible[GSM8K_ANS_MAX];    // normalised flexible answer ("" when none)
    char reference[GSM8K_ANS_MAX];   // normalised reference answer
    int strict_ok;                   // strict == reference
    int flexible_ok;                 // flexible == reference
} Gsm8kScore;

// lm-eval's normalisation of an answer: drop "," and "$", drop everything up to and
// including the last "#### ", drop one trailing ".", trim spaces, lower-case.
void gsm8k_normalize(const char* in, char* out, size_t cap);
// Group 1 of the first match of "#### (\-?[0-9\.\,]+)"; 1 when found. Raw, not normalised.
int gsm8k_extract_strict(const char* text, char* out, size_t cap);
// The last match of "(-?[$0-9.,]{2,})|(-?[0-9]+)"; 1 when found. Raw, not normalised.
int gsm8k_extract_flexible(const char* text, char* out, size_t cap);
// Scores a completion against a reference answer (the dataset's "... #### 18" or "18").
void gsm8k_score(const char* completion, const char* reference, Gsm8kScore* out);

#endif // ETX_EVAL_SCORE_H
