/*
 * vote.c — trace confidence statistics, majority / confidence / DeepConf voting, pass@k
 * and numpy's linear percentile. The votes are O(n^2) plain loops over the samples: n is
 * the number of samples of one problem (tens, at most a few hundred), and comparing every
 * answer with every other keeps the tie rule (first occurrence wins) obvious.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/vote.h"

#include "etx/etx.h"

static int cmp_double(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

void trace_confidence(const float* c, int n, int window, int tail_n, TraceConfidence* out) {
    if (n <= 0) {
        out->mean = out->lowest_group = out->tail = out->bottom10_group = -INFINITY;
        out->n_tokens = 0;
        return;
    }
    if (window < 1) window = 1;
    if (tail_n < 1) tail_n = 1;
    if (tail_n > n) tail_n = n;
    out->n_tokens = n;

    double total = 0.0;
    for (int i = 0; i < n; i++) total += c[i];
    out->mean = total / n;

    double tail = 0.0;
    for (int i = n - tail_n; i < n; i++) tail += c[i];
    out->tail = tail / tail_n;

    // G_i over the full windows c[i-window+1 .. i], i = window-1 .. n-1 (or the one group
    // c[0 .. n-1] of a trace shorter than the window), each summed afresh by
    // etx_group_confidence (O(n window)): the very value the engine's online stop compares
    // with its threshold (etx_request.stop_confidence), so a threshold set from these
    // statistics stops a trace exactly when its own statistic would fall below it.
    const int first = window <= n ? window - 1 : n - 1, n_groups = n - first;
    double* g = malloc((size_t)n_groups * sizeof *g);
    double lowest = INFINITY;
    for (int i = first; i < n; i++) {
        const double gi = etx_group_confidence(c, i, window);
        if (gi < lowest) lowest = gi;
        if (g) g[i - first] = gi;
    }
    out->lowest_group = lowest;

    // bottom 10%: the n_groups/10 smallest G_i (at least one), averaged. Without memory
    // for the G_i, the smallest one stands in (the bottom "10%" of a single value).
    if (!g) {
        out->bottom10_group = lowest;
        return;
    }
    qsort(g, (size_t)n_groups, sizeof *g, cmp_double);
    int m = n_groups / 10;
    if (m < 1) m = 1;
    double b = 0.0;
    for (int i = 0; i < m; i++) b += g[i];
    out->bottom10_group = b / m;
    free(g);
}

int vote_parse(const char* name, VoteMethod* out) {
    if (!name) return 0;
    if (strcmp(name, "majority") == 0) *out = VOTE_MAJORITY;
    else if (strcmp(name, "confidence") == 0) *out = VOTE_CONFIDENCE;
    else if (strcmp(name, "deepconf") == 0) *out = VOTE_DEEPCONF;
    else return 0;
    return 1;
}

const char* vote_name(VoteMethod m) {
    switch (m) {
    case VOTE_MAJORITY: return "majority";
    case VOTE_CONFIDENCE: return "confidence";
    case VOTE_DEEPCONF: return "deepconf";
    }
    return "?";
}

static const char* answer_of(const char* const* answers, int i) {
    return answers && answers[i] ? answers[i] : "";
}

static double conf_of(const double* conf, int i) {
    if (!conf) return 1.0;
    return isnan(conf[i]) ? -INFINITY : conf[i];
}

void vote_aggregate(VoteMethod m, const char* const* answers, const double* conf, int n, double eta,
                    char* out, size_t cap, VoteResult* info) {
    VoteResult r = {0, 0, 0, -1};
    if (cap > 0) out[0] = '\0';
    if (n < 0) n = 0;
    for (int i = 0; i < n; i++)
        if (answer_of(answers, i)[0]) r.n_answered++;

    // counted[i]: sample i votes. Every answered sample, except that deepconf keeps only
    // the m most confident answered ones (rank = how many answered samples come before i
    // when ordered by conf descending, then index ascending).
    char* counted = calloc(n > 0 ? (size_t)n : 1, 1);
    if (!counted) {
        if (info) *info = r;
        return;
    }
    int keep = r.n_answered;
    if (m == VOTE_DEEPCONF && r.n_answered > 0) {
        if (!(eta > 0.0)) eta = 0.0;  // NaN too
        if (eta > 1.0) eta = 1.0;
        keep = (int)ceil(eta * r.n_answered - 1e-9);
        if (keep < 1) keep = 1;
        if (keep > r.n_answered) keep = r.n_answered;
    }
    for (int i = 0; i < n; i++) {
        if (!answer_of(answers, i)[0]) continue;
        int rank = 0;
        const double ci = conf_of(conf, i);
        for (int j = 0; j < n; j++) {
            if (j == i || !answer_of(answers, j)[0]) continue;
            const double cj = conf_of(conf, j);
            if (cj > ci || (cj == ci && j < i)) rank++;
        }
        counted[i] = rank < keep;
        r.n_kept += counted[i];
    }

    // Each distinct answer is scored once, at its first counted sample; a later answer
    // replaces the leader only when strictly better, so ties go to the earliest.
    int best = -1, best_votes = 0;
    double best_weight = 0.0;
    for (int i = 0; i < n; i++) {
        if (!counted[i]) continue;
        const char* a = answer_of(answers, i);
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            if (counted[j] && strcmp(answer_of(answers, j), a) == 0) seen = 1;
        if (seen) continue;
        int votes = 0;
        double weight = 0.0;
        for (int j = i; j < n; j++) {
            if (!counted[j] || strcmp(answer_of(answers, j), a) != 0) continue;
            votes++;
            weight += conf_of(conf, j);
        }
        const int better = m == VOTE_MAJORITY ? votes > best_votes : weight > best_weight;
        if (best < 0 || better) {
            best = i;
            best_votes = votes;
            best_weight = weight;
        }
    }
    free(counted);
    if (best >= 0) {
        r.winner_sample = best;
        r.n_votes_winner = best_votes;
        if (cap > 0) {
            const char* a = answer_of(answers, best);
            size_t len = strlen(a);
            if (len >= cap) len = cap - 1;
            memcpy(out, a, len);
            out[len] = '\0';
        }
    }
    if (info) *info = r;
}

double pass_at_k(int n, int c, int k) {
    if (k < 1 || k > n || c < 0 || c > n) return NAN;
    if (n - c < k) return 1.0;  // every k-subset holds a correct sample
    // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (i - k) / i
    double p = 1.0;
    for (int i = n - c + 1; i <= n; i++) p *= 1.0 - (double)k / i;
    return 1.0 - p;
}

double conf_percentile(const double* v, int n, double pct) {
    if (n < 1 || isnan(pct)) return NAN;
    double* s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    if (pct < 0.0) pct = 0.0;
    if (pct > 100.0) pct = 100.0;
    const double h = (n - 1) * (pct / 100.0);
    int lo = (int)floor(h);
    if (lo > n - 1) lo = n - 1;
    const int hi = lo + 1 < n ? lo + 1 : lo;
    const double r = s[lo] + (h - lo) * (s[hi] - s[lo]);
    free(s);
    return r;
}
