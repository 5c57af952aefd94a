/*
 * backend.c — which backend runs an engine: the CPU's, always linked, and the optional
 * CUDA backend, which registers itself when its objects are linked in; see backend.h.
 */
#include "engine/backend.h"

#include <string.h>

#include "common.h"

static const BackendOps* g_cuda;

const BackendOps* etx_cuda_backend(void) { return g_cuda; }

void etx_register_cuda_backend(const BackendOps* ops) { g_cuda = ops; }

etx_status backend_pick(etx_device device, const BackendOps** ops) {
    const BackendOps* cuda = etx_cuda_backend();
    *ops = etx_cpu_backend();
    if (device == ETX_DEVICE_CUDA) {
        if (!cuda)
            return etx_error(ETX_ERR_UNSUPPORTED, "device cuda: this etx was built without the CUDA backend (nvcc was "
                                                  "not found when it was built); use --device cpu");
        if (!cuda->available())
            return etx_error(ETX_ERR_UNSUPPORTED, "device cuda: no CUDA GPU is available; use --device cpu");
        *ops = cuda;
    } else if (device == ETX_DEVICE_AUTO) {
        if (cuda && !cuda->emulated && cuda->available()) *ops = cuda;
    } else if (device != ETX_DEVICE_CPU) {
        return etx_error(ETX_ERR_INVALID_ARG, "unknown device %d", (int)device);
    }
    return etx_ok();
}

etx_status etx_measure_hardware(etx_device device, int n_threads, int quick, etx_hw_limits* out) {
    memset(out, 0, sizeof *out);
    if (n_threads < 0) return etx_error(ETX_ERR_INVALID_ARG, "threads must be >= 0 (got %d)", n_threads);
    const BackendOps* ops = NULL;
    ETX_TRY(backend_pick(device, &ops));
    return ops->measure(n_threads, quick, out);
}

// One work of a step against the configuration: rows, positions, block ids, tokens, pick.
static etx_status check_work(const char* who, const BackendConfig* c, int vocab, const BackendWork* w, int i,
                             int n_picks, unsigned char* seen) {
    if (w->n < 1 || (w->decode && w->n != 1) || w->n > c->max_chunk || w->pos0 < 0 || w->pos0 + w->n > c->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: work %d: %d rows at position %d (decode %d; max_chunk %d, max_seq_len %d)",
                         who, i, w->n, w->pos0, w->decode, c->max_chunk, c->max_seq_len);
    const int need = (w->pos0 + w->n + c->kv_block_size - 1) / c->kv_block_size;
    if (w->n_block_ids < need)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: work %d: %d block ids for %d positions (%d needed)", who, i,
                         w->n_block_ids, w->pos0 + w->n, need);
    // a table holds at most a full context's blocks; the ids past that are never read
    const int max_blocks = (c->max_seq_len + c->kv_block_size - 1) / c->kv_block_size;
    const int n_ids = w->n_block_ids < max_blocks ? w->n_block_ids : max_blocks;
    for (int k = 0; k < n_ids; k++)
        if (w->block_ids[k] < 0 || w->block_ids[k] >= c->kv_blocks)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: work %d: block id %d out of range (%d blocks)", who, i,
                             w->block_ids[k], c->kv_blocks);
    for (int k = 0; k < w->n; k++)
        if (w->tokens[k] < 0 || w->tokens[k] >= vocab)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: work %d: token %d out of range (vocab %d)", who, i, w->tokens[k],
                             vocab);
    if (w->pick >= n_picks || (w->pick >= 0 && seen[w->pick]++))
        return etx_error(ETX_ERR_INVALID_ARG, "%s: work %d: pick %d out of range or repeated (%d picks)", who, i,
                         w->pick, n_picks);
    return etx_ok();
}

etx_status backend_check_step(const char* who, const BackendConfig* c, int vocab, const BackendStep* s) {
    if (s->n_picks < 0 || s->n_picks > c->max_batch)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: %d picks (max_batch %d)", who, s->n_picks, c->max_batch);
    unsigned char seen[c->max_batch];
    memset(seen, 0, sizeof seen);
    int n_decode = 0;
    for (int i = 0; i < s->n_work; i++) {
        ETX_TRY(check_work(who, c, vocab, &s->work[i], i, s->n_picks, seen));
        n_decode += s->work[i].decode;
    }
    if (n_decode > c->max_batch)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: %d decode rows (max_batch %d)", who, n_decode, c->max_batch);
    // every pick must come from exactly one work, which gives its context length
    int n_seen = 0;
    for (int p = 0; p < s->n_picks; p++) n_seen += seen[p];
    if (n_seen != s->n_picks)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: %d picks but %d works sample", who, s->n_picks, n_seen);
    for (int i = 0; i < s->n_copies; i++)
        if (s->copies[i].src < 0 || s->copies[i].src >= c->kv_blocks || s->copies[i].dst < 0 ||
            s->copies[i].dst >= c->kv_blocks)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: block copy %d -> %d out of range (%d blocks)", who,
                             s->copies[i].src, s->copies[i].dst, c->kv_blocks);
    return etx_ok();
}

etx_status backend_check_decode_steps(const char* who, const BackendConfig* c, const BackendStep* s, int k) {
    if (k < 1) return etx_error(ETX_ERR_INVALID_ARG, "%s: %d decode steps", who, k);
    if (s->n_work < 1 || s->n_picks != s->n_work)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: multi-step needs one pick per decode row (%d rows, %d picks)", who,
                         s->n_work, s->n_picks);
    for (int i = 0; i < s->n_work; i++) {
        const BackendWork* w = &s->work[i];
        if (!w->decode || w->pick != i)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: multi-step work %d is not decode row %d's pick", who, i, i);
        if (w->pos0 + k > c->max_seq_len || (long)w->n_block_ids * c->kv_block_size < (long)w->pos0 + k)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: row %d has no room for %d steps from position %d", who, i, k,
                             w->pos0);
    }
    return etx_ok();
}
