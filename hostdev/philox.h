/*
 * philox.h — Philox4x32-10 counter-based random numbers (Salmon et al., SC'11).
 *
 * Why counter-based: a draw is a pure function of (key, counter), so the tokens of a
 * request depend only on its seed, its id and the step — never on which other requests
 * share its batch, nor on the backend. etx keys with the request's seed (2 x 32 bits) and
 * counts with (step, draw index, request id low, request id high).
 *
 * Header-only, plain C99 arithmetic, usable from C and (with ETX_HD = __host__ __device__)
 * from CUDA.
 */
#ifndef ETX_PHILOX_H
#define ETX_PHILOX_H

#include <stdint.h>

#ifndef ETX_HD
#ifdef __CUDACC__
#define ETX_HD __host__ __device__
#else
#define ETX_HD
#endif
#endif

typedef struct {
    uint32_t v[4];
} Philox4x32;

// One Philox round: two 32x32->64 multiplies, xor with the key, swap.
static inline ETX_HD void philox_round(uint32_t c[4], const uint32_t k[2]) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
    const uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
    const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    const uint32_t n0 = hi1 ^ c[1] ^ k[0];
    const uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

// Philox4x32-10: 10 rounds, key bumped by the Weyl constants between rounds.
static inline ETX_HD Philox4x32 philox4x32_10(const uint32_t counter[4], const uint32_t key[2]) {
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += 0x9E3779B9u;
            k[1] += 0xBB67AE85u;
        }
        philox_round(c, k);
    }
    Philox4x32 out = {{c[0], c[1], c[2], c[3]}};
    return out;
}

// A uniform float in [0, 1) with 24 random bits, for (seed, request, step, draw).
static inline ETX_HD float philox_uniform(uint64_t seed, uint64_t request_id, uint32_t step,
                                          uint32_t draw) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {step, draw, (uint32_t)request_id, (uint32_t)(request_id >> 32)};
    Philox4x32 r = philox4x32_10(ctr, key);
    return (float)(r.v[0] >> 8) * (1.0f / 16777216.0f);
}

#endif // ETX_PHILOX_H
