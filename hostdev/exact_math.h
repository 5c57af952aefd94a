/*
 * exact_math.h — exp and log of a float that give the same bits on the host (C) and on the
 * device (CUDA), for the part of etx whose results must agree bit for bit between the CPU
 * and the GPU (docs/design.md §6: the policy's weights, hence its top-p / min-p cuts and
 * its draws).
 *
 * Why not expf / logf: the host's come from glibc (almost always correctly rounded), the
 * device's from CUDA's libdevice (documented within 2 ulp), so a weight could differ in
 * its last bit and a draw or a cut landing within that ulp of a boundary would pick
 * another token on the GPU than on the CPU.
 *
 * How: both functions are built only from operations IEEE 754 rounds exactly (double +,
 * -, *, /, conversions float <-> double, integer bit manipulation) in a fixed order, with
 * fixed constants, so any conforming compiler gives the same result on any target:
 *
 *   etx_expf(x): k = nearest(x / ln2), r = x - k ln2 (ln2 split in a high part whose
 *     products with k are exact and a low part), e^r by its Taylor polynomial of degree
 *     12 in Horner form (|r| <= 0.347: truncation below 2e-16), times 2^k built from bits,
 *     rounded once to float. Results of e^x below 2^-150 round to 0, above FLT_MAX to inf.
 *   etx_logf(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), s = (m - 1) / (m + 1),
 *     log m = 2 atanh s = 2 (s + s^3/3 + ... + s^21/21) (|s| <= 0.172: truncation below
 *     3e-17), plus e ln2 (split likewise), rounded once to float.
 *
 * Everything before the final rounding is double, with a relative error of a few 1e-16,
 * so the float result is the correctly rounded one except when e^x (log x) lies within
 * that distance of a midpoint between two floats: then it can be 1 ulp off (max error
 * 0.5 + 1e-8 ulp). Measured over all 2^32 floats (x86-64, glibc 2.36): both equal glibc's
 * double exp / log rounded to float (the correctly rounded value, short of a case rarer
 * than double's own error) on every input; they differ from glibc's own expf on 170648
 * inputs and from its logf on 416909, by 1 ulp each (glibc's float functions are not
 * correctly rounded everywhere). tests/kernels/test_exact_math.c checks a dense sweep.
 *
 * Contraction: a fused multiply-add rounds once where a * b + c rounds twice, so a
 * compiler that contracts would change the bits. The device path uses __dmul_rn /
 * __dadd_rn, which nvcc never contracts whatever -fmad says; host C code is compiled with
 * -ffp-contract=off (CMakeLists.txt), and so are the emulated kernels bound by the
 * contract (ETX_EXACT_KERNEL_SOURCES).
 *
 * Cost: about 30 double operations, and a division for log. On a GPU these run at the
 * FP64 rate; the policy calls etx_expf once per kept candidate (at most top-K = 128 per
 * sequence in the common case), which is noise beside the vocabulary pass.
 *
 * Header-only, plain C99 / C++ (ETX_HD marks the functions __host__ __device__ under nvcc).
 */
#ifndef ETX_EXACT_MATH_H
#define ETX_EXACT_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef ETX_HD
#ifdef __CUDACC__
#define ETX_HD __host__ __device__
#else
#define ETX_HD
#endif
#endif

// Round-to-nearest double operations that no compiler may fuse (device: the _rn
// intrinsics; host: plain operators under -ffp-contract=off).
#if defined(__CUDA_ARCH__)
#define ETX_XM_ADD(a, b) __dadd_rn((a), (b))
#define ETX_XM_SUB(a, b) __dsub_rn((a), (b))
#define ETX_XM_MUL(a, b) __dmul_rn((a), (b))
#define ETX_XM_DIV(a, b) __ddiv_rn((a), (b))
#else
#define ETX_XM_ADD(a, b) ((a) + (b))
#define ETX_XM_SUB(a, b) ((a) - (b))
#define ETX_XM_MUL(a, b) ((a) * (b))
#define ETX_XM_DIV(a, b) ((a) / (b))
#endif

static inline ETX_HD uint64_t etx_xm_bits(double x) {
#if defined(__CUDA_ARCH__)
    return (uint64_t)__double_as_longlong(x);
#else
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}

static inline ETX_HD double etx_xm_double(uint64_t u) {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double((long long)u);
#else
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

static inline ETX_HD uint32_t etx_xm_fbits(float x) {
#if defined(__CUDA_ARCH__)
    return (uint32_t)__float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}

// ln 2 = ETX_XM_LN2_HI + ETX_XM_LN2_LO; the high part has 32 significant bits, so k * HI
// is exact for |k| < 2^21 (fdlibm's split).
#define ETX_XM_LN2_HI 6.93147180369123816490e-01 /* 0x3FE62E42 FEE00000 */
#define ETX_XM_LN2_LO 1.90821492927058770002e-10 /* 0x3DEA39EF 35793C76 */
#define ETX_XM_INV_LN2 1.44269504088896338700e+00 /* 0x3FF71547 652B82FE */
// 1.5 * 2^52: adding it rounds a double of magnitude < 2^51 to an integer (to nearest)
#define ETX_XM_SHIFTER 6755399441055744.0

// e^x rounded to float (see the header comment). NaN -> NaN, -inf -> 0, +inf -> inf.
static inline ETX_HD float etx_expf(float x) {
    if (!(x == x)) return x + x;                 // NaN (quiet)
    if (x > 89.0f) return INFINITY;              // e^89 > FLT_MAX (also x = +inf)
    if (x < -104.0f) return 0.0f;                // e^-104 < 2^-150: rounds to 0 (also -inf)
    const double xd = (double)x;
    // k = nearest integer to x / ln2, in [-150, 129]
    const double kd = ETX_XM_SUB(ETX_XM_ADD(ETX_XM_MUL(xd, ETX_XM_INV_LN2), ETX_XM_SHIFTER), ETX_XM_SHIFTER);
    // r = x - k ln2, |r| <= ln2 / 2 (+ a rounding): x - k HI is exact (Sterbenz)
    const double r = ETX_XM_SUB(ETX_XM_SUB(xd, ETX_XM_MUL(kd, ETX_XM_LN2_HI)), ETX_XM_MUL(kd, ETX_XM_LN2_LO));
    // e^r = sum_{n <= 12} r^n / n!, Horner from the highest term
    double p = 2.08767569878680989792e-09; // 1/12!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 2.50521083854417187751e-08); // 1/11!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 2.75573192239858906526e-07); // 1/10!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 2.75573192239858906526e-06); // 1/9!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 2.48015873015873015873e-05); // 1/8!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 1.98412698412698412698e-04); // 1/7!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 1.38888888888888888889e-03); // 1/6!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 8.33333333333333333333e-03); // 1/5!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 4.16666666666666666667e-02); // 1/4!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 1.66666666666666666667e-01); // 1/3!
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 0.5);
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 1.0);
    p = ETX_XM_ADD(ETX_XM_MUL(p, r), 1.0);
    // times 2^k (a normal double for k in [-150, 129]: exact), then one rounding to float
    const int k = (int)kd;
    const double two_k = etx_xm_double((uint64_t)(k + 1023) << 52);
    const double y = ETX_XM_MUL(p, two_k);
    // 2^128 - 2^103, halfway between FLT_MAX and 2^128, and above: rounds to inf (and a
    // double beyond float's range must not be converted in C)
    if (y >= 3.4028235677973366e+38) return INFINITY;
    return (float)y;
}

// log x rounded to float (see the header comment). x < 0 or NaN -> NaN, +-0 -> -inf,
// +inf -> +inf.
static inline ETX_HD float etx_logf(float x) {
    const uint32_t fb = etx_xm_fbits(x);
    if (!(x == x)) return x + x;                       // NaN (quiet)
    if (x == 0.0f) return -INFINITY;
    if (fb >> 31) return NAN;                         // x < 0
    if (fb == 0x7f800000u) return x;                  // +inf
    // x = m 2^e, m in [sqrt(1/2), sqrt(2)); float subnormals are normal doubles
    const uint64_t db = etx_xm_bits((double)x);
    int e = (int)((db >> 52) & 0x7ff) - 1023;
    double m = etx_xm_double((db & 0x000fffffffffffffull) | 0x3ff0000000000000ull); // [1, 2)
    if (m > 1.41421356237309504880) {
        m = ETX_XM_MUL(m, 0.5); // exact
        e += 1;
    }
    // log m = 2 atanh s, s = (m - 1) / (m + 1); m - 1 is exact (Sterbenz)
    const double s = ETX_XM_DIV(ETX_XM_SUB(m, 1.0), ETX_XM_ADD(m, 1.0));
    const double s2 = ETX_XM_MUL(s, s);
    double q = 4.76190476190476190476e-02; // 1/21
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 5.26315789473684210526e-02); // 1/19
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 5.88235294117647058824e-02); // 1/17
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 6.66666666666666666667e-02); // 1/15
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 7.69230769230769230769e-02); // 1/13
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 9.09090909090909090909e-02); // 1/11
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 1.11111111111111111111e-01); // 1/9
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 1.42857142857142857143e-01); // 1/7
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 2.00000000000000000000e-01); // 1/5
    q = ETX_XM_ADD(ETX_XM_MUL(q, s2), 3.33333333333333333333e-01); // 1/3
    // log m = 2 s + 2 s s2 q (the first term kept apart, so its bits survive)
    const double two_s = ETX_XM_MUL(s, 2.0);
    const double log_m = ETX_XM_ADD(two_s, ETX_XM_MUL(ETX_XM_MUL(two_s, s2), q));
    // + e ln2: e HI exact, the low part added to the small terms first
    const double ed = (double)e;
    const double lo = ETX_XM_ADD(log_m, ETX_XM_MUL(ed, ETX_XM_LN2_LO));
    return (float)ETX_XM_ADD(ETX_XM_MUL(ed, ETX_XM_LN2_HI), lo);
}

#endif // ETX_EXACT_MATH_H
