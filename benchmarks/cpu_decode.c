/*
 * cpu_decode.c — prefill and decode speed of the CPU backend through the public API.
 *
 * usage: bench_cpu_decode [-m MODEL] [-t THREADS] [-l PROMPT_LEN] [-g GEN_LEN] [-r REPEATS]
 *                         [-p greedy|entropix]
 *
 * Runs a prompt of PROMPT_LEN tokens (ids cycling through the vocabulary, no special
 * tokens) and generates GEN_LEN tokens greedily with EOS ignored, REPEATS times after one
 * warm-up, and prints the median prefill tokens/s and decode tokens/s (decode time counts
 * every step after the first token). Numbers are wall-clock on this machine; compare them
 * only with a baseline measured the same way on the same machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "etx/etx.h"

static void die(etx_status s) {
    fprintf(stderr, "bench_cpu_decode: %s\n", s.message);
    exit(1);
}

int main(int argc, char** argv) {
    const char* model = getenv("ETX_MODEL") ? getenv("ETX_MODEL") : ETX_DEFAULT_MODEL;
    int threads = 0, prompt_len = 128, gen_len = 64, repeats = 3;
    const char* policy = "greedy";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) model = argv[i + 1];
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-l")) prompt_len = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-g")) gen_len = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-p")) policy = argv[i + 1];
        else {
            fprintf(stderr, "usage: %s [-m MODEL] [-t THREADS] [-l PROMPT_LEN] [-g GEN_LEN] [-r REPEATS] "
                            "[-p greedy|entropix]\n", argv[0]);
            return 2;
        }
    }
    etx_policy pol;
    if (!strcmp(policy, "greedy")) pol = etx_policy_default(ETX_POLICY_GREEDY);
    else if (!strcmp(policy, "entropix")) pol = etx_policy_default(ETX_POLICY_ENTROPIX);
    else {
        fprintf(stderr, "bench_cpu_decode: unknown policy '%s'\n", policy);
        return 2;
    }
    if (prompt_len < 1 || gen_len < 2 || repeats < 1) {
        fprintf(stderr, "bench_cpu_decode: need PROMPT_LEN >= 1, GEN_LEN >= 2, REPEATS >= 1\n");
        return 2;
    }
    etx_model* m;
    etx_status s = etx_model_load(model, &m);
    if (s.code) die(s);
    etx_model_info info;
    etx_model_get_info(m, &info);
    int32_t* prompt = malloc((size_t)prompt_len * sizeof(int32_t));
    for (int i = 0; i < prompt_len; i++) prompt[i] = 1000 + (i * 37) % (info.vocab_size - 1000);
    etx_engine_options eo = etx_engine_options_default();
    eo.device = ETX_DEVICE_CPU;
    eo.n_threads = threads;
    eo.max_seq_len = prompt_len + gen_len + 1;
    double* pre = malloc((size_t)repeats * sizeof(double));
    double* dec = malloc((size_t)repeats * sizeof(double));
    for (int r = -1; r < repeats; r++) {
        etx_engine* e;
        if ((s = etx_engine_create(m, &eo, &e)).code) die(s);
        etx_request req = {.prompt = prompt, .n_prompt = prompt_len, .policy = pol,
                           .max_tokens = gen_len, .ignore_eos = 1};
        int id, active = 1;
        if ((s = etx_engine_submit(e, &req, &id)).code) die(s);
        double t0 = etx_now_s();
        if ((s = etx_engine_step(e, &active)).code) die(s); // prefill + first token
        double t1 = etx_now_s();
        while (active)
            if ((s = etx_engine_step(e, &active)).code) die(s);
        double t2 = etx_now_s();
        if (r >= 0) {
            pre[r] = prompt_len / (t1 - t0);
            dec[r] = (gen_len - 1) / (t2 - t1);
        }
        etx_engine_free(e);
    }
    qsort(pre, (size_t)repeats, sizeof(double), etx_cmp_double);
    qsort(dec, (size_t)repeats, sizeof(double), etx_cmp_double);
    printf("model %s\npolicy %s, threads %d (0 = all cores), prompt %d, generate %d, repeats %d\n", model, policy,
           threads, prompt_len, gen_len, repeats);
    printf("prefill %.1f tok/s (median)\ndecode  %.2f tok/s (median)\n", pre[repeats / 2], dec[repeats / 2]);
    free(pre);
    free(dec);
    free(prompt);
    etx_model_free(m);
    return 0;
}
