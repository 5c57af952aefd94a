/*
 * cpu_batch.c — decode throughput of the CPU engine at several batch sizes (continuous
 * batching, one decode batch per step), greedy and entropix, against batch 1 in the same
 * run.
 *
 *     bench_cpu_batch [-m MODEL] [-t THREADS] [-b 1,8,32] [-g TOKENS] [-p PROMPT_LEN] [-r ROUNDS]
 *
 * For each batch size B and policy: B requests with distinct prompts of PROMPT_LEN tokens
 * run to 1 token (prefill and the first token: time T1) and, separately, to 1 + TOKENS
 * tokens (time T); decode throughput = B * TOKENS / (T - T1). Median of ROUNDS rounds,
 * policies alternated within a round so drift hits both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "etx/etx.h"

int main(int argc, char** argv) {
    const char* model = ETX_DEFAULT_MODEL;
    const char* batches = "1,8,32";
    int threads = 0, gen = 32, prompt_len = 32, rounds = 3;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_cpu_batch: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "-t")) threads = atoi(v);
        else if (!strcmp(a, "-b")) batches = v;
        else if (!strcmp(a, "-g")) gen = atoi(v);
        else if (!strcmp(a, "-p")) prompt_len = atoi(v);
        else if (!strcmp(a, "-r")) rounds = atoi(v);
        else {
            fprintf(stderr, "bench_cpu_batch: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (gen < 1 || prompt_len < 1 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "bench_cpu_batch: -g, -p must be >= 1 and -r 1..64\n");
        return 2;
    }
    etx_model* m = NULL;
    etx_status s = etx_model_load(model, &m);
    if (s.code != ETX_OK) {
        fprintf(stderr, "bench_cpu_batch: %s\n", s.message);
        return 1;
    }
    printf("model %s, threads %d, prompt %d tokens, %d decode tokens per request, median of %d rounds\n", model,
           threads, prompt_len, gen, rounds);
    printf("%6s %10s %14s %14s %12s %14s\n", "batch", "policy", "decode tok/s", "ms/step", "vs batch 1",
           "entropix/greedy");
    double base[2] = {0, 0};
    char list[256];
    snprintf(list, sizeof list, "%s", batches);
    for (char* tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int B = atoi(tok);
        if (B < 1) continue;
        double rate[2][64];
        for (int r = 0; r < rounds; r++)
            for (int p = 0; p < 2; p++) {
                etx_policy_kind kind = p ? ETX_POLICY_ENTROPIX : ETX_POLICY_GREEDY;
                double t1 = bench_run_batch("bench_cpu_batch", m, ETX_DEVICE_CPU, threads, B, prompt_len, 1, kind);
                double t = bench_run_batch("bench_cpu_batch", m, ETX_DEVICE_CPU, threads, B, prompt_len, 1 + gen, kind);
                rate[p][r] = (double)B * gen / (t - t1);
            }
        double med[2];
        for (int p = 0; p < 2; p++) {
            qsort(rate[p], (size_t)rounds, sizeof(double), cmp_double);
            med[p] = rate[p][rounds / 2];
            if (B == 1) base[p] = med[p];
        }
        for (int p = 0; p < 2; p++)
            printf("%6d %10s %14.1f %14.2f %12.2f %14s\n", B, p ? "entropix" : "greedy", med[p], 1000.0 * B / med[p],
                   base[p] > 0 ? med[p] / base[p] : 0.0, p ? "" : "");
        printf("%6s %10s %14s %14s %12s %14.3f\n", "", "", "", "", "", med[1] / med[0]);
    }
    etx_model_free(m);
    return 0;
}
