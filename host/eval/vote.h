/*
 * vote.h — turning N sampled answers to one problem into one answer (internal), and the
 * statistics that go with it. Self-consistency takes the most frequent answer; DeepConf
 * (Fu et al. 2025, "Deep Think with Confidence") weighs each answer by how confident its
 * trace was and may first drop the least confident traces. Also: the per-trace confidence
 * statistics DeepConf ranks traces by, the unbiased pass@k estimator, and the percentile
 * DeepConf's online mode sets its stopping threshold with.
 *
 * Token confidence, as DeepConf defines it and as the caller computes it:
 *     c_t = -(1/k) sum_{j<k} log p_t(j)       over the k most probable tokens at step t
 * A peaked distribution puts little mass on the runners-up, their log-probabilities are
 * very negative, so c_t is large: higher c means more confident, and c >= 0. Every
 * confidence in this module is "higher = more confident".
 */
#ifndef ETX_EVAL_VOTE_H
#define ETX_EVAL_VOTE_H

#include <stddef.h>

// A trace's confidence, summarised five ways from its token confidences c[0..n-1].
// Group confidence G_i is the mean of c over the `window` tokens ending at token i, for
// the full windows i = window-1 .. n-1 (DeepConf's groups); a trace shorter than the
// window has one group, the mean of all its tokens. An empty trace (n == 0) is the least
// confident of all: its four statistics are -INFINITY, so every ranking and every vote
// puts it last.
typedef struct {
    double mean;            // mean of c[0..n-1]
    double lowest_group;    // min_i G_i
    double tail;            // mean of the last min(tail_n, n) tokens
    double bottom10_group;  // mean of the lowest 10% of the G_i (a tenth of them, at least one)
    int n_tokens;           // n
} TraceConfidence;

// Fills out from the token confidences c[0..n-1]. window < 1 is taken as 1, tail_n < 1 as
// 1. Each G_i is etx_group_confidence(c, i, window) (include/etx/etx.h: a sum in double
// from the oldest token), the engine's online stop's own value; O(n window). Allocates n
// doubles.
void trace_confidence(const float* c, int n, int window, int tail_n, TraceConfidence* out);

typedef enum {
    VOTE_MAJORITY,    // most frequent answer
    VOTE_CONFIDENCE,  // answer with the largest sum of its samples' confidences
    VOTE_DEEPCONF,    // keep the most confident eta fraction, then VOTE_CONFIDENCE
} VoteMethod;

typedef struct {
    int n_votes_winner;  // samples among those counted that gave the winning answer (0: none)
    int n_kept;          // samples whose votes were counted (answered ones, after any filter)
    int n_answered;      // samples with a non-empty answer, of all n
    int winner_sample;   // the lowest index of a counted sample giving the winner; -1: none
} VoteResult;

// "majority", "confidence", "deepconf" -> *out; 1 when known, 0 (and *out untouched) otherwise.
int vote_parse(const char* name, VoteMethod* out);
// The name vote_parse reads for m ("?" for a value outside the enum).
const char* vote_name(VoteMethod m);

// Votes over n samples: answers[i] is sample i's normalised answer ("" or NULL: none was
// extracted; such samples never vote and never win), conf[i] its confidence (whichever
// TraceConfidence statistic the caller chose; unused by VOTE_MAJORITY and may then be
// NULL; NULL elsewhere counts every sample as 1, i.e. a majority vote). NaN confidences
// count as -INFINITY. Writes the winner to out (truncated to cap-1 bytes; "" when no
// sample answered) and, when info is not NULL, the counts.
//   majority:   votes(a) = #{i : answers[i] = a}; the largest wins
//   confidence: weight(a) = sum_{i : answers[i] = a} conf[i]; the largest wins
//   deepconf:   rank the answered samples by conf (higher first, equal ones by lower
//               index), keep the first m = ceil(eta * n_answered) (at least 1; eta > 1 is
//               taken as 1, eta <= 0 or NaN keeps 1), then the confidence vote over them.
//               ceil forgives eta*n a rounding error of 1e-9, so eta = 0.7, n = 10 keeps 7.
// Ties (equal votes or weights) go to the answer whose first counted sample has the lowest
// index, so the result depends only on the inputs. Weights are sums, so they mean "more
// support = more weight" only for conf >= 0, as DeepConf's token confidence is.
void vote_aggregate(VoteMethod m, const char* const* answers, const double* conf, int n, double eta,
                    char* out, size_t cap, VoteResult* info);

// The unbiased pass@k estimator (Chen et al. 2021) from n samples of which c are correct:
//     pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)
// computed as that product (no factorials, no overflow). 1 when n - c < k. NaN unless
// 1 <= k <= n and 0 <= c <= n.
double pass_at_k(int n, int c, int k);

// The pct-th percentile (pct in [0, 100], clamped) of v[0..n-1] as numpy.percentile's
// default ("linear") method gives it: sort v, h = (n-1) * pct/100, then
//     v[floor h] + (h - floor h) * (v[floor h + 1] - v[floor h]).
// Copies v (v is left as it is). NaN when n < 1, pct is NaN or the copy cannot be allocated.
double conf_percentile(const double* v, int n, double pct);

#endif // ETX_EVAL_VOTE_H
