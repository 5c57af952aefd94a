/*
 * embed.h — the token-embedding lookup of the CUDA backend (kernels/embed.cu): the first
 * op of a step, turning each row's token id into its f32 residual-stream row.
 * Layout: kernels/README.md. Pointers are device pointers; stream is a cudaStream_t.
 */
#ifndef ETX_KERNELS_EMBED_H
#define ETX_KERNELS_EMBED_H

#include <stdint.h>

#include "bf16.h" // etx_bf16 (hostdev/)
#include "cost.h"

#ifdef __cplusplus
extern "C" {
#endif

// x[r, :] = float(emb[tok[r], :])      emb: (vocab, dim) bf16, tok: (n_rows), x: (n_rows, dim)
void etx_embed(float* x, const etx_bf16* emb, const int32_t* tok, int n_rows, int dim, void* stream);

// The napkin math of etx_embed (cost.h): a bf16 row read and an f32 row written per row.
EtxCost etx_embed_cost(int n_rows, int dim);

#ifdef __cplusplus
}
#endif

#endif // ETX_KERNELS_EMBED_H
