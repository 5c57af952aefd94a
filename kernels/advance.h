/*
 * advance.h — moves a decode batch one step forward on the device, so several decode
 * steps run between host synchronisations: the token each row just drew becomes its next
 * input, and its position, attended length, policy step counter and previous token
 * advance by one (kernels/advance.cu).
 */
#ifndef ETX_ADVANCE_H
#define ETX_ADVANCE_H

#include <stdint.h>

#include "policy_step.h"

#ifdef __cplusplus
extern "C" {
#endif

// For each row i < n: tokens[i] = next[i] (0 when next[i] < 0, a pick's fault code);
// row_pos[i] += 1; n_pos[i] += 1 when n_pos[i] > 0 (0 means "no
// attention metrics" and stays 0); states[i].step += 1; states[i].prev_token = tokens[i].
// n_pos may be NULL.
void etx_advance_rows(int32_t* tokens, int32_t* row_pos, int32_t* n_pos, EtxSeqState* states, const int32_t* next,
                      int n, void* stream);

#ifdef __cplusplus
}
#endif
#endif // ETX_ADVANCE_H
