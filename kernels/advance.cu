/*
 * advance.cu — one decode step forward on the device (advance.h).
 *
 * Math: tokens[i] = max(next[i], 0); positions + 1; policy state step + 1,
 * prev = tokens[i]. A negative next[i] is a pick's fault code (policy_step.h): the row is
 * fed token 0 so that the embedding stays in range; the engine ends its request at the
 * fault and ignores what the row draws afterwards.
 * Memory: ~48 bytes per row; one thread per row.
 *
 * Twin: what host/engine/engine.c does when it accepts a token; test:
 * tests/kernels/test_advance.c advance_matches_its_twin (docs/ops.md).
 */
#include "cuda_common.cuh"

#include "advance.h"

__global__ void advance_rows_kernel(int32_t* tokens, int32_t* row_pos, int32_t* n_pos, EtxSeqState* states,
                                    const int32_t* next, int n) {
    ETX_PDL_ENTRY();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int32_t t = next[i] >= 0 ? next[i] : 0;
    tokens[i] = t;
    row_pos[i] += 1;
    if (n_pos && n_pos[i] > 0) n_pos[i] += 1;
    states[i].step += 1;
    states[i].prev_token = t;
}

extern "C" void etx_advance_rows(int32_t* tokens, int32_t* row_pos, int32_t* n_pos, EtxSeqState* states,
                                 const int32_t* next, int n, void* stream) {
    if (n <= 0) return;
    const int block = 128;
    ETX_LAUNCH(advance_rows_kernel, etx_ceil_div(n, block), block, 0, (cudaStream_t)stream, tokens, row_pos, n_pos,
               states, next, n);
    CUDA_CHECK_LAUNCH();
}
