/*
 * test_rng.h — the xorshift64 stream the matrix suites draw their inputs from. Each suite
 * keeps its own state (its seed), so its inputs do not depend on the other suites.
 */
#ifndef ETX_TESTS_TEST_RNG_H
#define ETX_TESTS_TEST_RNG_H

#include <stdint.h>

static inline uint32_t rng_next_u32(uint64_t* s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 32);
}

// uniform in [-1, 1)
static inline float rng_frand(uint64_t* s) { return (float)(rng_next_u32(s) * (1.0 / 4294967296.0)) * 2.0f - 1.0f; }

#endif // ETX_TESTS_TEST_RNG_H
