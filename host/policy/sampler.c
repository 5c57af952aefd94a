/*
 * sampler.c — candidate gathering (full sort or top-k heap) and the pick for a decision;
 * the filters and the draw themselves are the shared ones in hostdev/policy_math.h.
 */
#include "policy/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

void build_sampler(Sampler* s, int vocab_size) {
    s->vocab_size = vocab_size;
    s->cand = xmalloc((size_t)vocab_size * sizeof(PolicyCandidate));
    s->tmp = xmalloc((size_t)vocab_size * sizeof(PolicyCandidate));
    s->w = xmalloc((size_t)vocab_size * sizeof(float));
}

void free_sampler(Sampler* s) {
    free(s->cand);
    free(s->tmp);
    free(s->w);
    s->cand = NULL;
    s->tmp = NULL;
    s->w = NULL;
}

int32_t sample_argmax(const float* logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

// a before b in candidate order: larger logit first, then smaller id
static int cand_before(PolicyCandidate a, PolicyCandidate b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// The radix key of a logit: ascending key = descending logit. The float's bits made
// order-preserving as unsigned (negatives flipped, positives' sign bit set), -0 as +0,
// then complemented.
static uint32_t desc_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if (u == 0x80000000u) u = 0; // -0 == +0: the comparison calls them equal
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

void sampler_sort_all(PolicyCandidate* c, PolicyCandidate* tmp, int n) {
    PolicyCandidate *src = c, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int count[257] = {0};
        for (int i = 0; i < n; i++) count[((desc_key(src[i].logit) >> shift) & 0xFF) + 1]++;
        if (count[((desc_key(src[0].logit) >> shift) & 0xFF) + 1] == n) continue; // one bucket: nothing moves
        for (int b = 0; b < 256; b++) count[b + 1] += count[b];
        for (int i = 0; i < n; i++) dst[count[(desc_key(src[i].logit) >> shift) & 0xFF]++] = src[i];
        PolicyCandidate* t = src;
        src = dst;
        dst = t;
    }
    if (src != c) memcpy(c, src, (size_t)n * sizeof *c);
}

static int cmp_cand(const void* x, const void* y) {
    const PolicyCandidate* a = x;
    const PolicyCandidate* b = y;
    return cand_before(*a, *b) ? -1 : (cand_before(*b, *a) ? 1 : 0);
}

// Sift down in a heap whose root is the candidate that comes LAST in candidate order.
static void heap_down(PolicyCandidate* h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_before(h[m], h[l])) m = l;
        if (r < n && cand_before(h[m], h[r])) m = r;
        if (m == i) return;
        PolicyCandidate t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

int sampler_candidates(Sampler* s, const float* logits, int limit) {
    const int n = s->vocab_size;
    PolicyCandidate* c = s->cand;
    if (limit <= 0 || limit >= n) {
        for (int i = 0; i < n; i++) c[i] = (PolicyCandidate){logits[i], i};
        sampler_sort_all(c, s->tmp, n);
        return n;
    }
    // keep the `limit` best in a heap rooted at the worst of them: O(n log limit)
    for (int i = 0; i < limit; i++) c[i] = (PolicyCandidate){logits[i], i};
    for (int i = limit / 2 - 1; i >= 0; i--) heap_down(c, limit, i);
    for (int i = limit; i < n; i++) {
        PolicyCandidate x = {logits[i], i};
        if (cand_before(x, c[0])) {
            c[0] = x;
            heap_down(c, limit, 0);
        }
    }
    qsort(c, (size_t)limit, sizeof *c, cmp_cand);
    return limit;
}

int32_t sampler_pick(Sampler* s, const float* logits, const PolicyDecision* d, uint64_t seed, uint64_t key,
                     uint32_t step) {
    if (d->forced_token >= 0) return d->forced_token;
    if (d->argmax) return sample_argmax(logits, s->vocab_size);
    const int n = policy_logit_floor(s->cand, sampler_candidates(s, logits, d->top_k), d->min_logit);
    const int k = policy_filter(s->cand, n, d->temperature, d->top_k, d->top_p, d->min_p, s->w);
    int best = -1;
    for (int j = 0; j < d->n_samples; j++) {
        const int i = policy_draw(s->w, k, philox_uniform(seed, key, step, (uint32_t)j));
        // candidates are sorted, so a smaller index is a higher log-probability
        if (best < 0 || i < best) best = i;
    }
    return s->cand[best].id;
}
