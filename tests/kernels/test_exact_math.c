/*
 * test_exact_math.c — the shared exp and log (hostdev/exact_math.h), which the exactness
 * contract between host and device rests on (docs/design.md §6):
 *
 *   - accuracy: etx_expf / etx_logf against the correctly rounded value (glibc's double
 *     exp / log, rounded to float: its error below 1 ulp of a double cannot move the
 *     float except in cases a few times rarer than ours) and against glibc's expf / logf,
 *     over a dense sweep of every float (every 61st bit pattern, all signs and exponents:
 *     70 million) plus the 2^16 floats around each place where results change regime
 *     (0, the overflow and underflow thresholds, subnormal results and inputs, 1 and
 *     sqrt(2) for log) and the special values: at most 1 ulp from either anywhere, and off the correctly rounded
 *     value on at most a few inputs per million;
 *   - host == device, bit for bit: the same inputs through exact_math_check.cu. Under the
 *     emulator this is the header compiled as C++ device code (and it catches a device
 *     path that calls the emulator's own expf / logf, which may be perturbed); on a GPU
 *     (test_exact_math_gpu) it is nvcc's device code against the host's C;
 *   - and, with the same kernel, that a launch failing inside a graph capture fails the
 *     capture rather than the program (kernels/device.h), while outside one it exits.
 *
 * Measured over all 2^32 floats (a one-off program, not this suite; the numbers are in
 * hostdev/exact_math.h's header comment).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_device.h"
#include "check_main.h"
#include "device.h"
#include "exact_math.h"
#include "exact_math_check.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// Distance in ulps between two floats (0 for two NaNs, huge for NaN against a number);
// +0 and -0 are 0 apart.
static int64_t ulp_diff(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    const int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return oa > ob ? oa - ob : ob - oa;
}

// The inputs: every `stride`-th bit pattern, then every float of windows around the
// places where the result changes regime, then the special values.
typedef struct {
    float* x;
    size_t n, cap;
} Inputs;

static void push(Inputs* in, float x) {
    if (in->n == in->cap) {
        in->cap = in->cap ? 2 * in->cap : 1 << 20;
        in->x = realloc(in->x, in->cap * sizeof(float));
        ck_assert_ptr_nonnull(in->x);
    }
    in->x[in->n++] = x;
}

// The `count` consecutive floats (bit patterns) centred on c, on c's side of zero.
static void push_around(Inputs* in, float c, uint32_t count) {
    uint32_t u;
    memcpy(&u, &c, 4);
    const uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    const uint32_t lo = mag > count / 2 ? mag - count / 2 : 0;
    for (uint32_t i = 0; i < count && lo + i <= 0x7f800000u; i++) push(in, from_bits(sign | (lo + i)));
}

static Inputs sweep(uint32_t stride) {
    Inputs in = {0};
    for (uint64_t u = 0; u <= 0xffffffffull; u += stride) push(&in, from_bits((uint32_t)u));
    // 2^16 floats around each place where the result changes regime. exp: 0 (e^x ~ 1 + x;
    // the smallest |x| whose result is not 1), overflow (88.72), subnormal results
    // (-87.34), underflow to 0 (-103.97), the early-outs at 89 and -104; log: 1
    // (log x ~ x - 1), sqrt(2) and sqrt(1/2) (the reduction's switch), the smallest
    // subnormal and normal inputs, the largest floats
    const float around[] = {0.0f,        -0.0f,        2.98e-8f,   -5.96e-8f,   88.7228394f,
                            89.0f,       -87.3365479f, -103.972084f, -104.0f,   -103.278931f,
                            1.0f,        1.41421354f,  0.707106769f, 1.4e-45f,  1.17549435e-38f,
                            3.40282347e38f};
    for (size_t i = 0; i < sizeof around / sizeof around[0]; i++) push_around(&in, around[i], 1u << 16);
    const float special[] = {INFINITY, -INFINITY, NAN, -NAN, 1.0f, -1.0f, 0.5f, 2.0f, 1.17549435e-38f,
                             1.40129846e-45f, 3.40282347e38f, -3.40282347e38f, 0.69314718f, 88.7228394f,
                             88.7228317f, -103.972084f, -103.278931f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) push(&in, special[i]);
    return in;
}

// Accuracy of f against the correctly rounded ref and against libm over the sweep.
static void check_accuracy(const char* name, float (*f)(float), double (*ref)(double), float (*libm)(float)) {
    Inputs in = sweep(61);
    int64_t worst_ref = 0, worst_libm = 0;
    size_t off_ref = 0, off_libm = 0;
    float at_ref = 0, at_libm = 0;
    for (size_t i = 0; i < in.n; i++) {
        const float x = in.x[i], y = f(x);
        const float r = (float)ref((double)x), g = libm(x);
        const int64_t dr = ulp_diff(y, r), dg = ulp_diff(y, g);
        if (dr) off_ref++;
        if (dg) off_libm++;
        if (dr > worst_ref) worst_ref = dr, at_ref = x;
        if (dg > worst_libm) worst_libm = dg, at_libm = x;
    }
    printf("test_exact_math: %s over %zu floats: %zu off the correctly rounded value (max %lld ulp, x = %a), "
           "%zu off glibc (max %lld ulp, x = %a)\n",
           name, in.n, off_ref, (long long)worst_ref, at_ref, off_libm, (long long)worst_libm, at_libm);
    ck_assert_msg(worst_ref <= 1, "%s(%a): %lld ulp from the correctly rounded value", name, at_ref,
                  (long long)worst_ref);
    ck_assert_msg(worst_libm <= 1, "%s(%a): %lld ulp from glibc", name, at_libm, (long long)worst_libm);
    ck_assert_msg(off_ref * 100000 <= in.n, "%s: %zu of %zu results not correctly rounded", name, off_ref, in.n);
    free(in.x);
}

static float expf_fn(float x) { return etx_expf(x); }
static float logf_fn(float x) { return etx_logf(x); }

START_TEST(exp_is_accurate) { check_accuracy("etx_expf", expf_fn, exp, expf); }
END_TEST

START_TEST(log_is_accurate) { check_accuracy("etx_logf", logf_fn, log, logf); }
END_TEST

// Exact values the functions must give (IEEE special cases and exact results).
START_TEST(special_values) {
    ck_assert(etx_expf(0.0f) == 1.0f && etx_expf(-0.0f) == 1.0f);
    ck_assert(etx_expf(-INFINITY) == 0.0f && !signbit(etx_expf(-INFINITY)));
    ck_assert(isinf(etx_expf(INFINITY)) && etx_expf(INFINITY) > 0);
    ck_assert(isnan(etx_expf(NAN)));
    // the largest float whose e^x is finite, and the next one
    ck_assert(etx_expf(88.7228317f) == expf(88.7228317f) && !isinf(etx_expf(88.7228317f)));
    ck_assert(isinf(etx_expf(88.7228394f)));
    ck_assert(etx_expf(-104.0f) == 0.0f && etx_expf(-103.9f) == expf(-103.9f));
    ck_assert(etx_logf(1.0f) == 0.0f && !signbit(etx_logf(1.0f)));
    ck_assert(isinf(etx_logf(0.0f)) && etx_logf(0.0f) < 0 && isinf(etx_logf(-0.0f)) && etx_logf(-0.0f) < 0);
    ck_assert(isinf(etx_logf(INFINITY)) && etx_logf(INFINITY) > 0);
    ck_assert(isnan(etx_logf(-1.0f)) && isnan(etx_logf(-INFINITY)) && isnan(etx_logf(NAN)));
    ck_assert(etx_logf(2.0f) == logf(2.0f) && etx_logf(1.40129846e-45f) == logf(1.40129846e-45f));
}
END_TEST

// Host and device give the same bits on every input of a sweep (every 4099th bit pattern
// and the windows above: about 2 million floats).
START_TEST(host_equals_device) {
    Inputs in = sweep(4099);
    const size_t n = in.n, bytes = n * sizeof(float);
    float *d_x = etx_dev_malloc(bytes), *d_e = etx_dev_malloc(bytes), *d_l = etx_dev_malloc(bytes);
    ck_assert(d_x && d_e && d_l);
    etx_dev_upload(d_x, in.x, bytes);
    etx_exact_math_eval(d_x, d_e, d_l, (int)n, 0, NULL);
    etx_dev_sync();
    float *e = malloc(bytes), *l = malloc(bytes);
    etx_dev_download(e, d_e, bytes);
    etx_dev_download(l, d_l, bytes);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float he = etx_expf(in.x[i]), hl = etx_logf(in.x[i]);
        // bits, except that any NaN matches any NaN (the payload is not part of the contract)
        const int ok_e = memcmp(&he, &e[i], 4) == 0 || (isnan(he) && isnan(e[i]));
        const int ok_l = memcmp(&hl, &l[i], 4) == 0 || (isnan(hl) && isnan(l[i]));
        if ((!ok_e || !ok_l) && bad++ < 5)
            fprintf(stderr, "x = %a: host exp %a log %a, device exp %a log %a\n", in.x[i], he, hl, e[i], l[i]);
    }
    ck_assert_msg(bad == 0, "%zu of %zu inputs differ between host and device", bad, n);
    etx_dev_free(d_x), etx_dev_free(d_e), etx_dev_free(d_l);
    free(e), free(l), free(in.x);
}
END_TEST

// A launch that fails inside a graph capture fails the capture (no graph, the reason
// kept) instead of aborting the program, and a later capture works again (device.h).
// Before, CUDA_CHECK exited inside the capture (and the emulator could not capture).
START_TEST(failure_inside_capture) {
    void* stream = etx_dev_stream_create();
    ck_assert_ptr_nonnull(stream);
    float* d = etx_dev_malloc(3 * 64 * sizeof(float));
    ck_assert_ptr_nonnull(d);
    // once outside any capture first, as the backend's warm-up does: lazy loading (drivers
    // before 12.3, and the emulator) cannot load a kernel inside a capture
    etx_exact_math_eval(d, d + 64, d + 128, 64, 0, stream);
    etx_dev_stream_sync(stream);
    ck_assert_int_eq(etx_dev_capture_begin(stream), 1);
    etx_exact_math_eval(d, d + 64, d + 128, 64, 2048, stream); // 2048 threads: invalid
    void* g = etx_dev_capture_end(stream);
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(etx_dev_capture_error(), "cudaGetLastError") != NULL, "why: %s", etx_dev_capture_error());
    fprintf(stderr, "test_exact_math: capture failed as expected: %s\n", etx_dev_capture_error());
    // the stream is usable again, and a good capture gives a graph
    ck_assert_int_eq(etx_dev_capture_begin(stream), 1);
    etx_exact_math_eval(d, d + 64, d + 128, 64, 0, stream);
    g = etx_dev_capture_end(stream);
    ck_assert_ptr_nonnull(g);
    ck_assert_str_eq(etx_dev_capture_error(), "");
    etx_dev_graph_launch(g, stream);
    etx_dev_graph_destroy(g);
    etx_dev_sync();
    etx_dev_free(d);
    etx_dev_stream_destroy(stream);
}
END_TEST

// Outside a capture a failed launch still aborts the program (exit status 1).
START_TEST(failure_outside_capture_exits) {
    float* d = etx_dev_malloc(3 * 64 * sizeof(float));
    etx_exact_math_eval(d, d + 64, d + 128, 64, 2048, NULL);
}
END_TEST

int main(void) {
    char dev_name[256];
    if (!check_device_present(dev_name, sizeof dev_name)) { // asked in a child: see check_device.h
        fprintf(stderr, "test_exact_math: no CUDA device: skipped\n");
        return CHECK_SKIPPED;
    }
    Suite* s = suite_create("exact_math");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, exp_is_accurate);
    tcase_add_test(tc, log_is_accurate);
    tcase_add_test(tc, special_values);
    tcase_add_test(tc, host_equals_device);
    tcase_add_test(tc, failure_inside_capture);
    tcase_add_exit_test(tc, failure_outside_capture_exits, 1);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
