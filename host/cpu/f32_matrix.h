/*
 * f32_matrix.h — decode-time products with a float32 weight matrix whose every output
 * value has one fixed summation order, whatever the batch size.
 *
 * A batch of n decode rows is multiplied through one pass over W (each weight row is read
 * once per batch, not once per request), yet row b of the result is bit-for-bit what the
 * one-row product gives for x[b] alone: a request's tokens do not depend on which other
 * requests share its step (batch invariance). OpenBLAS cannot promise that (its blocking,
 * hence its summation order, may change with n), so decode rows use these instead of
 * sgemv/sgemm; prefill keeps sgemm.
 *
 * The order (shared with quant_matrix.c, which dequantizes into float32 and calls
 * f32_matmat_rows):
 *   - the row is cut into blocks of 32 (a last partial block is padded with zeros);
 *   - 32 running sums, one per position i mod 32, each starting at +0 and advanced block
 *     by block with a fused multiply-add: s[i mod 32] = fma(W[r, i], x[i], s[i mod 32]);
 *   - then t[l] = (s[l] + s[8 + l]) + (s[16 + l] + s[24 + l]) for l < 8,
 *     u[l] = t[l] + t[4 + l] for l < 4, and y = (u[0] + u[2]) + (u[1] + u[3]).
 * (These are the lanes of four 8-wide AVX2 accumulators and their horizontal sum.) The
 * plain C twins follow it with fmaf, so they are bit-identical to the AVX2 code too.
 */
#ifndef ETX_F32_MATRIX_H
#define ETX_F32_MATRIX_H

// y[r] = sum_i W[r, i] * x[i], r < rows      W: (rows, cols), x: (cols), y: (rows)
// Rows split over the OpenMP threads (slices of 16), each running f32_matvec_rows. Call
// outside parallel regions.
void f32_matvec(float* y, const float* x, const float* W, int rows, int cols);

// y[b * ldy + r] = sum_i W[r, i] * x[b * ldx + i], b < n, r < rows
// x: (n, ldx), y: (n, ldy), ldx >= cols, ldy >= rows. Row b equals f32_matvec on x[b] bit
// for bit. Rows split over the OpenMP threads as f32_matvec. Call outside parallel regions.
void f32_matmat(float* y, int ldy, const float* x, int ldx, int n, const float* W, int rows, int cols);

// The same for output rows r0 <= r < r1 on the calling thread, written at y[r - r0]
// (matvec) and y[b * ldy + r - r0] (matmat): AVX2+FMA when compiled for it, otherwise the
// plain C twins below. W points at row 0 (row r starts at W + r * cols).
void f32_matvec_rows(float* y, const float* x, const float* W, int cols, int r0, int r1);
void f32_matmat_rows(float* y, int ldy, const float* x, int ldx, int n, const float* W, int cols, int r0, int r1);

// Plain C with the same order (always compiled; the tests compare them bit for bit).
void f32_matvec_rows_scalar(float* y, const float* x, const float* W, int cols, int r0, int r1);
void f32_matmat_rows_scalar(float* y, int ldy, const float* x, int ldx, int n, const float* W, int cols, int r0,
                            int r1);

// The final step of the order above: y from the 32 running sums s[0..31]. Exposed for
// quant_matrix.c's plain C twins, which follow the same order.
float f32_reduce32(const float* s);

#endif // ETX_F32_MATRIX_H
