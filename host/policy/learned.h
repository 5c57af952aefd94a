/*
 * learned.h — the learned policy's networks on the host (internal): the process-wide
 * registry behind etx_learned_register / etx_learned_get (etx.h), the checks a network
 * must pass, the "learned" object of a policy file, and a hash that names a network in a
 * run's fingerprint. The decision itself is hostdev/policy_learned.h.
 *
 * The policy file's "learned" object (scripts/train_policy.py writes it):
 *
 *   {"features": ["entropy", ..., "after_pause"],   // exactly learned_feature_names
 *    "mean": [13 numbers], "scale": [13 numbers > 0],
 *    "layers": [{"weight": [[in] x out], "bias": [out]}, ...],  // 1..3: hidden, then output
 *    "actions": [{"kind": "argmax"}, {"kind": "sample", "temperature": 0.7, "top_k": 0,
 *                 "top_p": 1, "min_p": 0}, {"kind": "adaptive"}, {"kind": "pause"}],
 *    "choose": "sample" | "argmax"}
 *
 * Every mistake names its field: "learned.layers[1].weight[3] has 12 numbers; expected 64".
 */
#ifndef ETX_LEARNED_H
#define ETX_LEARNED_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "etx/etx.h"

// The feature names, in the network's input order (etx.h, ETX_LEARNED_FEATURES).
extern const char* const learned_feature_names[ETX_LEARNED_FEATURES];
// "argmax" | "sample" | "pause" | "adaptive".
const char* learned_action_name(etx_action_kind kind);

// Whether net is usable: 0, or -1 with msg saying what is wrong.
int learned_check(const etx_learned_net* net, char* msg, size_t cap);
// Reads the "learned" object o into *net. where prefixes messages ("policy file F").
etx_status learned_from_json(const cJSON* o, const char* where, etx_learned_net* net);
// 64-bit FNV-1a of the network's bytes (the unused tail is zero): the same network, the
// same hash.
uint64_t learned_hash(const etx_learned_net* net);
// Whether the network has a pause action (the engine then needs a pause token).
int learned_has_pause(const etx_learned_net* net);

#endif // ETX_LEARNED_H
