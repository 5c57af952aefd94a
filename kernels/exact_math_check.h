/*
 * exact_math_check.h — the shared exp and log (hostdev/exact_math.h) evaluated on the
 * device, so a test can compare the device's bits with the host's (kernels/exact_math_check.cu).
 * Not on any inference path: the policy kernels call etx_expf inline.
 */
#ifndef ETX_EXACT_MATH_CHECK_H
#define ETX_EXACT_MATH_CHECK_H

#ifdef __cplusplus
extern "C" {
#endif

// exp_out[i] = etx_expf(x[i]), log_out[i] = etx_logf(x[i]) for i < n (device pointers),
// `threads` per block (0: 256). An invalid block size (over 1024) makes the launch fail:
// tests/kernels/test_exact_math.c uses it to check that a failure inside a graph capture
// fails the capture instead of aborting (kernels/device.h).
void etx_exact_math_eval(const float* x, float* exp_out, float* log_out, int n, int threads, void* stream);

#ifdef __cplusplus
}
#endif
#endif // ETX_EXACT_MATH_CHECK_H
