/*
 * quant_matrix.h — a weight matrix kept in its GGUF block-quantized form (Q8_0, Q4_0,
 * Q4_1, Q5_0, and the K-quants Q4_K, Q5_K, Q6_K of llama.cpp's Q4_K_M / Q5_K_M mixes),
 * and the decode products that read it directly: one token (quant_matvec) and a
 * batch of n tokens through one pass over the blocks (quant_matmat), whose row b is bit
 * for bit the one-token product of x[b] (batch invariance: a request's tokens do not
 * depend on which requests share its decode step).
 *
 * Decode (one token) is bound by memory traffic: every weight is read once per token.
 * Streaming the compact blocks (Q4_1: 20 bytes per 32 weights, 0.625 B/weight) instead
 * of their float32 expansion (4 B/weight) cuts that traffic ~6x (Q4_K: 144 bytes per 256
 * weights, ~7x). The GGUF loader keeps such matrices only in this form (model.h); prefill
 * dequantizes them into float32 one at a time and uses sgemm. Each element is dequantized
 * with exactly dequant.c's float formula and the products are summed in float32 in
 * f32_matrix.h's fixed order, so results equal the float32 path up to the order of
 * summation, and the AVX2 and plain C paths, one token or batched, threaded or not, all
 * give the same bits.
 */
#ifndef ETX_QUANT_MATRIX_H
#define ETX_QUANT_MATRIX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int type;         // a GGML_TYPE_ id quant_matrix_supported accepts; 0 with blocks NULL: absent
    int rows, cols;   // (out, in); cols is a multiple of the type's block (32, or 256 for K-quants)
    void* blocks;     // rows * row_bytes bytes, row r at r * row_bytes, blocks in GGUF layout
    size_t row_bytes; // cols / block_elems blocks of block_bytes (dequant.h) per row
} QuantMatrix;

// 1 when ggml type id `type` can be held as a QuantMatrix.
int quant_matrix_supported(uint32_t type);

// y[r] = sum_i dequant(W)[r, i] * x[i], r < W->rows: rows split over the OpenMP threads,
// each running quant_matvec_rows. Call outside parallel regions.
void quant_matvec(float* y, const float* x, const QuantMatrix* W);

// y[r - r0] = sum_i dequant(W)[r, i] * x[i] for r0 <= r < r1, on the calling thread:
// AVX2+FMA when compiled for it, otherwise quant_matvec_rows_scalar.
void quant_matvec_rows(float* y, const float* x, const QuantMatrix* W, int r0, int r1);
// The same in plain C (always compiled; tests compare the two bit for bit).
void quant_matvec_rows_scalar(float* y, const float* x, const QuantMatrix* W, int r0, int r1);

// y[b * ldy + r] = sum_i dequant(W)[r, i] * x[b * ldx + i], b < n, r < W->rows
// x: (n, ldx), y: (n, ldy), ldx >= W->cols, ldy >= W->rows. Row b equals quant_matvec on
// x[b] bit for bit; W's blocks are read once for all n. Rows split over the OpenMP threads
// as quant_matvec. Call outside parallel regions.
void quant_matmat(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W);

// The same for rows r0 <= r < r1 on the calling thread, written at y[b * ldy + r - r0]:
// AVX2+FMA when compiled for it (allocates a 6 * cols float buffer), otherwise the plain
// C twin (always compiled).
void quant_matmat_rows(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0, int r1);
void quant_matmat_rows_scalar(float* y, int ldy, const float* x, int ldx, int n, const QuantMatrix* W, int r0,
                              int r1);

// Rows r0 <= r < r1 of W dequantized to float32 into w ((r1 - r0) * W->cols floats, any
// alignment), on the calling thread: bit for bit dequantize_row's values (dequant.c), at
// the speed of the products' own dequantization (AVX2 when compiled for it).
void quant_dequant_rows(const QuantMatrix* W, int r0, int r1, float* w);

#endif // ETX_QUANT_MATRIX_H
