/*
 * bench_common.h — what the benchmark programs share: a monotonic clock, a double
 * comparator for medians, and the batched-decode timing run of bench_cpu_batch and
 * bench_gpu_decode (B requests with distinct prompts through one engine).
 */
#ifndef ETX_BENCH_COMMON_H
#define ETX_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "etx/etx.h"

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

// Seconds to run B requests of `tokens` tokens each (EOS ignored, prompts of prompt_len
// distinct tokens, request b keyed b) through one engine on `device` with max_batch B.
// Exits with a message naming `prog` on any error.
static inline double bench_run_batch(const char* prog, const etx_model* m, etx_device device, int threads, int B,
                                     int prompt_len, int tokens, etx_policy_kind kind) {
    etx_engine_options o = etx_engine_options_default();
    o.device = device;
    o.n_threads = threads;
    o.max_batch = B;
    o.max_seq_len = prompt_len + tokens + 8;
    etx_engine* e = NULL;
    etx_status s = etx_engine_create(m, &o, &e);
    int32_t* prompt = malloc((size_t)prompt_len * sizeof(int32_t));
    for (int b = 0; b < B && s.code == ETX_OK; b++) {
        for (int i = 0; i < prompt_len; i++) prompt[i] = 300 + (int32_t)((b * 131 + i * 17) % 20000);
        etx_request r = {.prompt = prompt, .n_prompt = prompt_len, .policy = etx_policy_default(kind),
                         .max_tokens = tokens, .ignore_eos = 1, .key = (uint64_t)b};
        int id;
        s = etx_engine_submit(e, &r, &id);
    }
    double t0 = now_s();
    if (s.code == ETX_OK) s = etx_engine_run(e);
    double t = now_s() - t0;
    free(prompt);
    etx_engine_free(e);
    if (s.code != ETX_OK) {
        fprintf(stderr, "%s: %s\n", prog, s.message);
        exit(1);
    }
    return t;
}

#endif // ETX_BENCH_COMMON_H
