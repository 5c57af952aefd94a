/*
 * calibrate.h — carrying the entropix v1 thresholds to a new model by quantiles (the
 * arithmetic behind `etx calibrate`; docs/policies.md, "Calibration").
 *
 * The v1 tree's five thresholds were set by hand, in bits and bits², on Llama 3.2 1B; on
 * another model the same numbers cut its entropy H and varentropy V at other places
 * (SmolLM2 sends two thirds of GSM8K's tokens to LEHV). Calibration measures H and V on
 * the user's prompts and puts each threshold at a chosen quantile of its signal instead:
 *
 *   threshold          signal  the tree tests   default quantile
 *   low_ent_thresh     H       H <  t           0.50
 *   low_vent_thresh    V       V <  t           0.50
 *   med_ent_thresh     H       H >  t           0.95
 *   high_ent_thresh    H       H >  t           0.99
 *   high_vent_thresh   V       V >  t           0.95
 *
 * Why these defaults: argmax (both below their medians) takes the confident half of the
 * tokens, which is what v1's own numbers give on Qwen2.5-Coder-1.5B (48.6 % argmax on
 * GSM8K) and the behaviour the tree is built around; the hot branches (LEHV, HEHV at
 * T >= 2, the pause) are exception handlers, so they get the tails: V in its top 5 %, and
 * H in its top 5 % (HEHV) or top 1 % with V low (the pause). Any of the five can be
 * moved (--quantiles); the order low <= med <= high must hold.
 *
 * Quantiles are numpy's default (linear interpolation between order statistics, "type
 * 7"). A "below" threshold is the next float above its quantile, so that the tokens at
 * the quantile itself count as below it (H = 0 exactly is common: without this a median
 * of 0 would send no token to argmax).
 */
#ifndef ETX_POLICY_CALIBRATE_H
#define ETX_POLICY_CALIBRATE_H

#include <stddef.h>

#define CALIB_N_THRESH 5

typedef struct {
    const char* name;   // the policy parameter
    int signal;         // 0: entropy H, 1: varentropy V
    int below;          // 1: the tree asks signal < threshold
    double default_q;   // the default quantile
} CalibThreshold;

// The five, in the order of the table above.
extern const CalibThreshold calib_thresholds[CALIB_N_THRESH];

// q[i] <- calib_thresholds[i].default_q.
void calib_default_quantiles(double q[CALIB_N_THRESH]);

// Overrides q from "name=value,name=value" (names as in the table; values in (0, 1)),
// then checks the order low_ent <= med_ent <= high_ent and low_vent <= high_vent.
// Returns 0, or -1 with why filled ("unknown threshold 'x'", "...: 1.5 is not in (0, 1)").
int calib_parse_quantiles(const char* spec, double q[CALIB_N_THRESH], char* why, size_t cap);

// The q-quantile of sorted[0..n) (ascending, finite), linear interpolation as numpy's
// default: position q (n - 1). NAN when n is 0.
double calib_quantile(const float* sorted, size_t n, double q);

// The threshold of calib_thresholds[i] on its signal's sorted values: the quantile, the
// next float above it for a "below" threshold, never below 0 (the parameters' range).
float calib_threshold(int i, const float* sorted, size_t n, double q);

// Sorts v[0..n) ascending in place (finite values; NaN must be removed first).
void calib_sort(float* v, size_t n);

#endif // ETX_POLICY_CALIBRATE_H
