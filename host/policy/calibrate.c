/*
 * calibrate.c — quantiles and threshold placement for `etx calibrate` (calibrate.h).
 */
#include "policy/calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const CalibThreshold calib_thresholds[CALIB_N_THRESH] = {
    {"low_ent_thresh", 0, 1, 0.50},  {"low_vent_thresh", 1, 1, 0.50}, {"med_ent_thresh", 0, 0, 0.95},
    {"high_ent_thresh", 0, 0, 0.99}, {"high_vent_thresh", 1, 0, 0.95},
};

void calib_default_quantiles(double q[CALIB_N_THRESH]) {
    for (int i = 0; i < CALIB_N_THRESH; i++) q[i] = calib_thresholds[i].default_q;
}

int calib_parse_quantiles(const char* spec, double q[CALIB_N_THRESH], char* why, size_t cap) {
    const char* s = spec;
    while (*s) {
        const char* end = strchr(s, ',');
        const size_t len = end ? (size_t)(end - s) : strlen(s);
        const char* eq = memchr(s, '=', len);
        if (!eq) {
            snprintf(why, cap, "'%.*s' is not name=quantile", (int)len, s);
            return -1;
        }
        int k = -1;
        for (int i = 0; i < CALIB_N_THRESH; i++)
            if (strlen(calib_thresholds[i].name) == (size_t)(eq - s) && strncmp(s, calib_thresholds[i].name, (size_t)(eq - s)) == 0)
                k = i;
        if (k < 0) {
            snprintf(why, cap,
                     "unknown threshold '%.*s' (low_ent_thresh, low_vent_thresh, med_ent_thresh, high_ent_thresh, "
                     "high_vent_thresh)",
                     (int)(eq - s), s);
            return -1;
        }
        char num[64];
        const size_t nlen = len - (size_t)(eq + 1 - s);
        if (nlen == 0 || nlen >= sizeof num) {
            snprintf(why, cap, "%s: '%.*s' is not a number", calib_thresholds[k].name, (int)nlen, eq + 1);
            return -1;
        }
        memcpy(num, eq + 1, nlen);
        num[nlen] = '\0';
        char* rest = NULL;
        const double v = strtod(num, &rest);
        if (rest == num || *rest != '\0') {
            snprintf(why, cap, "%s: '%s' is not a number", calib_thresholds[k].name, num);
            return -1;
        }
        if (!(v > 0 && v < 1)) {
            snprintf(why, cap, "%s: %s is not in (0, 1)", calib_thresholds[k].name, num);
            return -1;
        }
        q[k] = v;
        s = end ? end + 1 : s + len;
    }
    // low_ent <= med_ent <= high_ent, low_vent <= high_vent (indices of the table)
    if (!(q[0] <= q[2] && q[2] <= q[3])) {
        snprintf(why, cap, "the entropy quantiles must satisfy low_ent_thresh <= med_ent_thresh <= high_ent_thresh "
                           "(%g, %g, %g)", q[0], q[2], q[3]);
        return -1;
    }
    if (!(q[1] <= q[4])) {
        snprintf(why, cap, "the varentropy quantiles must satisfy low_vent_thresh <= high_vent_thresh (%g, %g)", q[1],
                 q[4]);
        return -1;
    }
    return 0;
}

double calib_quantile(const float* sorted, size_t n, double q) {
    if (n == 0) return NAN;
    const double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos);
    if (lo >= n - 1) return sorted[n - 1];
    const double f = pos - (double)lo;
    return (double)sorted[lo] + f * ((double)sorted[lo + 1] - (double)sorted[lo]);
}

float calib_threshold(int i, const float* sorted, size_t n, double q) {
    float t = (float)calib_quantile(sorted, n, q);
    if (calib_thresholds[i].below) t = nextafterf(t, INFINITY);
    return t > 0 ? t : 0.0f;
}

static int cmp_float(const void* a, const void* b) {
    const float x = *(const float*)a, y = *(const float*)b;
    return (x > y) - (x < y);
}

void calib_sort(float* v, size_t n) { qsort(v, n, sizeof *v, cmp_float); }
