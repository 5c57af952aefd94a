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
 *
 * 8-bit activations (act_q8, the loader's default for the K-quants): float32 products
 * over K-quant blocks run at ~0.75 vector micro-ops per weight (unpack, convert, scale,
 * FMA) and are compute-bound far below the memory floor (2.7x slower than llama.cpp per
 * token on Qwen2.5-1.5B Q4_K_M, benchmarks/results/kquant-decode-qwen15-2026-12-03.md).
 * With act_q8 set, each 256-element block of x is first rounded to d * q (q an int8 in
 * [-127, 127], d = max|x| / 127: QuantAct), and a super-block's dot product is formed
 * from exact integer sums (codes x q through vpmaddubsw, times the 6/8-bit sub-block
 * scales) in 8 lanes, each lane then taking four float32 operations per block in a fixed
 * order, the lanes added in a fixed tree at the end of the row (see quant_matrix.c).
 * Integer sums are exact in any order, so AVX2 and plain C, one token or batched, threaded
 * or not, still give the same bits (batch invariance holds); the price is the rounding of
 * x: |x_i - d q_i| <= d / 2, i.e. |y - y_f32| <= sum_blocks d_b / 2 * sum_{i in b} |w_i|
 * plus float32 rounding (test_quant_matvec checks that bound). The other types keep the
 * float32 contract above. ETX_EXACT_PRODUCTS=1 in the environment makes the loader keep
 * the float32 products for every type.
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
    int act_q8;       // 1 (K-quants only): products round x to QuantAct blocks first; 0: float32 x
} QuantMatrix;

// 1 when ggml type id `type` can be held as a QuantMatrix.
int quant_matrix_supported(uint32_t type);

// 1 when the products over `type` take 8-bit activations (Q4_K, Q5_K, Q6_K).
int quant_matrix_q8_capable(int type);
// act_q8 the loader gives a matrix of `type`: quant_matrix_q8_capable, unless
// ETX_EXACT_PRODUCTS is set to a value other than "0" in the environment.
int quant_matrix_act_q8_default(int type);

// One block of 256 activations in 8 bits: x_i ~ d * q[i].
#define QACT_BLOCK 256
typedef struct {
    float d;           // max |x| / 127 over the block (0 for a zero block); NaN if it holds a NaN or inf
    int16_t bsums[16]; // bsums[g] = sum of q[16 g .. 16 g + 15]
    int8_t q[QACT_BLOCK];
} QuantAct;

// x[0 .. cols) (cols a multiple of 256) into cols / 256 blocks at a: q[i] = x[i] * (127 /
// max|x|) rounded to nearest (ties to even), so |x[i] - d q[i]| <= d / 2 up to the
// rounding of d and of the product.
void quant_act_row(const float* x, int cols, QuantAct* a);

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
