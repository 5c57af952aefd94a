/*
 * cpu_kquant.c — speed of the K-quant decode products with 8-bit activations (act_q8,
 * the loader's default) against the float32-activation products (act_q8 = 0, what
 * ETX_EXACT_PRODUCTS=1 selects), in the same run.
 *
 * usage: bench_cpu_kquant [-t THREADS] [-s SECONDS] [--shape qwen2.5-1.5b|smollm2-135m]
 *
 * For each of Q4_K, Q5_K and Q6_K, the model's decode shapes (out x in; Qwen2.5-1.5B:
 * 1536x1536 q/o, 256x1536 k/v, 8960x1536 gate/up, 1536x8960 down, 151936x1536 LM head),
 * random blocks and n = 1, 8, 32 input rows, prints the median time of one quant_matmat
 * call each way, as G weights/s (n rows cols / t) and weight GB/s (block bytes / t), and
 * their ratio (float32 time / 8-bit time). The two timings are taken alternately, 7 each
 * (the machine is shared). Each measurement repeats the call until SECONDS / 10 (default
 * 0.3 / 10 s) have passed. Compare numbers only within one run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu/cpu_ops.h"
#include "model/dequant.h"
#include "cpu/quant_matrix.h"
#include "test_rng.h" // the suites' xorshift stream (tests/support)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) { return rng_next_u32(&rng_state); }
static float frand(void) { return rng_frand(&rng_state); }

// a (rows, cols) matrix of random blocks of `type`, with f16 scales about 2^-7
static QuantMatrix rand_matrix(int type, int rows, int cols) {
    const GGMLTypeInfo* ti = ggml_type_info((uint32_t)type);
    QuantMatrix q = {type, rows, cols, NULL, (size_t)cols / ti->block_elems * ti->block_bytes, 0};
    size_t bytes = q.row_bytes * rows, nblocks = bytes / ti->block_bytes;
    uint8_t* b = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) b[i] = (uint8_t)next_u32();
    for (size_t k = 0; k < nblocks; k++) {
        uint16_t d = (uint16_t)(0x2000 | (next_u32() & 0x3ff)), m = (uint16_t)(0x2000 | (next_u32() & 0x3ff));
        uint8_t* blk = b + k * ti->block_bytes;
        if (type == GGML_TYPE_Q6_K) memcpy(blk + 208, &d, 2);
        else memcpy(blk, &d, 2), memcpy(blk + 2, &m, 2);
    }
    q.blocks = b;
    return q;
}

static double time_once(const QuantMatrix* q, float* y, const float* x, int n, double min_s) {
    int iters = 0;
    double t0 = etx_now_s(), el;
    do {
        quant_matmat(y, q->rows, x, q->cols, n, q);
        iters++;
    } while ((el = etx_now_s() - t0) < min_s);
    return el / iters;
}

#define REPS 7

int main(int argc, char** argv) {
    int threads = 0;
    double seconds = 0.3;
    const char* shape = "qwen2.5-1.5b";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-s")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--shape")) shape = argv[i + 1];
        else {
            fprintf(stderr, "usage: %s [-t THREADS] [-s SECONDS] [--shape qwen2.5-1.5b|smollm2-135m]\n", argv[0]);
            return 2;
        }
    }
    int dim, kv, hidden, vocab;
    if (!strcmp(shape, "qwen2.5-1.5b")) dim = 1536, kv = 256, hidden = 8960, vocab = 151936;
    else if (!strcmp(shape, "smollm2-135m")) dim = 768, kv = 256, hidden = 1536, vocab = 49152; // dims rounded to 256
    else {
        fprintf(stderr, "%s: unknown --shape %s (qwen2.5-1.5b or smollm2-135m)\n", argv[0], shape);
        return 2;
    }
    cpu_set_threads(threads);
    const int shapes[][2] = {{dim, dim}, {kv, dim}, {hidden, dim}, {dim, hidden}, {vocab, dim}};
    static const int types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const int ns[] = {1, 8, 32};
    const int max_n = 32;
    printf("shape %s, threads %d; medians per call; ratio = float32-activation time / 8-bit time\n", shape,
           cpu_get_threads());
    printf("%-5s %-12s %3s | %10s %8s %7s | %10s %8s %7s | %5s\n", "type", "out x in", "n", "f32 us", "Gw/s", "GB/s",
           "q8 us", "Gw/s", "GB/s", "ratio");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int rows = shapes[s][0], cols = shapes[s][1];
            QuantMatrix qe = rand_matrix(types[ti], rows, cols), q8 = qe;
            qe.act_q8 = 0, q8.act_q8 = 1;
            float* x = malloc((size_t)max_n * cols * sizeof(float));
            float* y = malloc((size_t)max_n * rows * sizeof(float));
            for (size_t i = 0; i < (size_t)max_n * cols; i++) x[i] = frand();
            for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
                int n = ns[t];
                double te[REPS], tq[REPS];
                quant_matmat(y, rows, x, cols, n, &qe), quant_matmat(y, rows, x, cols, n, &q8); // warm-up
                for (int k = 0; k < REPS; k++) {
                    te[k] = time_once(&qe, y, x, n, seconds / 10);
                    tq[k] = time_once(&q8, y, x, n, seconds / 10);
                }
                qsort(te, REPS, sizeof(double), etx_cmp_double);
                qsort(tq, REPS, sizeof(double), etx_cmp_double);
                double a = te[REPS / 2], b = tq[REPS / 2], w = (double)n * rows * cols,
                       bytes = (double)qe.row_bytes * rows;
                char sh[32];
                snprintf(sh, sizeof sh, "%dx%d", rows, cols);
                printf("%-5s %-12s %3d | %10.1f %8.2f %7.2f | %10.1f %8.2f %7.2f | %5.2f\n",
                       ggml_type_info((uint32_t)types[ti])->name, sh, n, 1e6 * a, w / a * 1e-9, bytes / a * 1e-9,
                       1e6 * b, w / b * 1e-9, bytes / b * 1e-9, a / b);
                fflush(stdout);
            }
            free(qe.blocks), free(x), free(y);
        }
    return 0;
}
