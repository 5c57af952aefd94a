/*
 * test_rng.h — the one random stream of the test suites: xorshift64 (Marsaglia 2003,
 * shifts 13, 7, 17) and the draws the suites need from it. Each suite (or test) keeps its
 * own state, so its inputs do not depend on the other suites; a state must not be 0.
 *
 *     uint64_t s = rng_seed(3);           // or a literal nonzero state
 *     float x = rng_frand(&s);            // uniform in [-1, 1)
 *
 * rng_next_u64 is the state after one step; every other draw is built on it, so a suite
 * that switches draws keeps the same underlying stream. The suites' inputs are only
 * required to be varied and reproducible: no test depends on particular values (the one
 * exception, tests/policy/test_metrics.c, replays the splitmix64 stream of its fixture
 * generator, gen_metrics_fixtures.py, and keeps its own).
 */
#ifndef ETX_TESTS_TEST_RNG_H
#define ETX_TESTS_TEST_RNG_H

#include <math.h>
#include <stdint.h>

// A nonzero state from a small seed (0, 1, 2, ...): xorshift's first outputs from a state
// with few bits set are small, so the seed is spread over the word first.
static inline uint64_t rng_seed(uint64_t seed) {
    const uint64_t s = (seed + 1) * 0x9E3779B97F4A7C15ull;
    return s ? s : 0x9E3779B97F4A7C15ull;
}

static inline uint64_t rng_next_u64(uint64_t* s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static inline uint32_t rng_next_u32(uint64_t* s) { return (uint32_t)(rng_next_u64(s) >> 32); }

// uniform in [-1, 1) (24 significant bits from the high word)
static inline float rng_frand(uint64_t* s) { return (float)(rng_next_u32(s) * (1.0 / 4294967296.0)) * 2.0f - 1.0f; }

// uniform in [0, 1), 53 bits
static inline double rng_uniform(uint64_t* s) { return (double)(rng_next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

// uniform in [lo, hi) (24 random bits: the fraction is exact in float, below 1)
static inline float rng_range(uint64_t* s, float lo, float hi) {
    return lo + (hi - lo) * ((float)(rng_next_u32(s) >> 8) * 0x1p-24f);
}

// uniform in 0 .. n-1 (n >= 1; the modulo bias, below 2^-32 n, does not matter here)
static inline int rng_below(uint64_t* s, int n) { return (int)(rng_next_u64(s) % (uint64_t)n); }

// standard normal (Box-Muller, one of the pair)
static inline double rng_normal(uint64_t* s) {
    const double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

#endif // ETX_TESTS_TEST_RNG_H
