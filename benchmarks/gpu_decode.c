/*
 * gpu_decode.c — decode speed of the CUDA backend against the memory-bandwidth floor:
 * tokens/s and ms per step at several batch sizes, greedy vs entropix, the policy's share
 * of the step, and the fraction of the floor reached at batch 1.
 *
 *     bench_gpu_decode -m MODEL [-b 1,8,64] [-g TOKENS] [-p PROMPT_LEN] [-r ROUNDS] [--md FILE]
 *
 * Floor: a decode step must read every weight once (bf16: 2 bytes per parameter, the
 * tied embedding counted once as the LM head; the embedding rows read are negligible), so
 * its time is at least weight_bytes / copy_bandwidth, the bandwidth measured here as a
 * large device-to-device copy (bytes read + bytes written over the time). Decode time is
 * measured as in bench_cpu_batch: a run to 1 + TOKENS tokens minus a run to 1 token, so
 * prefill and the first token drop out. Median of ROUNDS rounds, policies alternated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "device.h"
#include "etx/etx.h"

// Device-to-device copy bandwidth, bytes read + written per second (median of 9).
static double copy_bandwidth(void) {
    size_t bytes = (size_t)1 << 30;
    void* a = etx_dev_malloc(bytes);
    void* b = etx_dev_malloc(bytes);
    if (!a || !b) return 0;
    etx_dev_memset(a, 1, bytes);
    etx_dev_copy(b, a, bytes); // warm-up
    etx_dev_sync();
    double t[9];
    for (int i = 0; i < 9; i++) {
        double t0 = now_s();
        etx_dev_copy(i % 2 ? a : b, i % 2 ? b : a, bytes);
        etx_dev_sync();
        t[i] = now_s() - t0;
    }
    qsort(t, 9, sizeof(double), cmp_double);
    etx_dev_free(a);
    etx_dev_free(b);
    return 2.0 * (double)bytes / t[4];
}

int main(int argc, char** argv) {
    const char* model = NULL;
    const char* batches = "1,8,64";
    const char* md = NULL;
    int gen = 64, prompt_len = 32, rounds = 5;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_gpu_decode: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "-b")) batches = v;
        else if (!strcmp(a, "-g")) gen = atoi(v);
        else if (!strcmp(a, "-p")) prompt_len = atoi(v);
        else if (!strcmp(a, "-r")) rounds = atoi(v);
        else if (!strcmp(a, "--md")) md = v;
        else {
            fprintf(stderr, "bench_gpu_decode: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (!model || gen < 1 || prompt_len < 1 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "usage: bench_gpu_decode -m MODEL [-b 1,8,64] [-g TOKENS] [-p PROMPT_LEN] [-r 1..64] [--md FILE]\n");
        return 2;
    }
    if (!etx_dev_available()) {
        fprintf(stderr, "bench_gpu_decode: no CUDA GPU available\n");
        return 77;
    }
    etx_model* m = NULL;
    etx_status s = etx_model_load(model, &m);
    if (s.code != ETX_OK) {
        fprintf(stderr, "bench_gpu_decode: %s\n", s.message);
        return 1;
    }
    etx_model_info info;
    etx_model_get_info(m, &info);
    double bw = copy_bandwidth();
    double weight_bytes = 2.0 * (double)info.n_params;
    double floor_ms = bw > 0 ? 1e3 * weight_bytes / bw : 0;
    FILE* out = md ? fopen(md, "w") : NULL;
    FILE* sinks[2] = {stdout, out};
    for (int k = 0; k < 2; k++) {
        if (!sinks[k]) continue;
        fprintf(sinks[k], "device %s; model %s (%.3f B parameters, %.2f GB in bf16); copy bandwidth %.0f GB/s; "
                          "floor %.3f ms/token (%.0f tok/s) at batch 1\n\n",
                etx_dev_name(), model, info.n_params / 1e9, weight_bytes / 1e9, bw / 1e9, floor_ms,
                floor_ms > 0 ? 1e3 / floor_ms : 0);
        fprintf(sinks[k], "| batch | policy | tok/s | ms/step | fraction of floor | policy share |\n|---|---|---|---|---|---|\n");
    }
    char list[256];
    snprintf(list, sizeof list, "%s", batches);
    for (char* tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int B = atoi(tok);
        if (B < 1) continue;
        double rate[2][64];
        for (int r = 0; r < rounds; r++)
            for (int p = 0; p < 2; p++) {
                etx_policy_kind kind = p ? ETX_POLICY_ENTROPIX : ETX_POLICY_GREEDY;
                double t1 = bench_run_batch("bench_gpu_decode", m, ETX_DEVICE_CUDA, 0, B, prompt_len, 1, kind);
                double t = bench_run_batch("bench_gpu_decode", m, ETX_DEVICE_CUDA, 0, B, prompt_len, 1 + gen, kind);
                rate[p][r] = (double)B * gen / (t - t1);
            }
        double med[2];
        for (int p = 0; p < 2; p++) {
            qsort(rate[p], (size_t)rounds, sizeof(double), cmp_double);
            med[p] = rate[p][rounds / 2];
        }
        for (int p = 0; p < 2; p++) {
            double ms = 1e3 * B / med[p];
            double share = p ? 1.0 - (1e3 * B / med[0]) / ms : 0.0;
            for (int k = 0; k < 2; k++)
                if (sinks[k])
                    fprintf(sinks[k], "| %d | %s | %.1f | %.3f | %.2f | %s%.1f%% |\n", B, p ? "entropix" : "greedy",
                            med[p], ms, floor_ms > 0 ? floor_ms / ms : 0.0, p ? "" : "(base) ", 100.0 * share);
        }
    }
    if (out) fclose(out);
    etx_model_free(m);
    return 0;
}
