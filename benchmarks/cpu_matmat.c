/*
 * cpu_matmat.c — speed of the batched decode products (quant_matmat, f32_matmat) against
 * n separate one-row products (quant_matvec, f32_matvec) in the same run.
 *
 * usage: bench_cpu_matmat [-t THREADS] [-s SECONDS]
 *
 * For SmolLM2-135M's decode shapes (out x in: 576x576 q/o, 192x576 k/v, 1536x576
 * gate/up, 576x1536 down, 49152x576 LM head), Q4_1 blocks and float32 weights (random),
 * and n = 1, 8, 32 input rows, prints the median time of one batched call and of n
 * one-row calls, each as GFLOP/s (2 n rows cols / t) and effective weight GB/s (weight
 * bytes read / t: once for the batched call, n times for the separate calls), their ratio
 * (separate / batched time), and whether every batched row had the same bits as its
 * one-row product. For float32 it also times OpenBLAS (matmul in cpu_ops.c), the path
 * decode rows used before, for reference. Each measurement repeats the call until at
 * least SECONDS / 10 (default 0.3 / 10 s) have passed; the two timings compared are taken
 * alternately, 7 each, and their medians reported. Numbers are wall-clock on this
 * machine; compare them only within one run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "cpu/cpu_ops.h"
#include "model/dequant.h"
#include "cpu/f32_matrix.h"
#include "cpu/quant_matrix.h"
#include "test_rng.h" // the suites' xorshift stream (tests/support)

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t next_u32(void) { return rng_next_u32(&rng_state); }
static float frand(void) { return rng_frand(&rng_state); }

// what one timed call runs
typedef enum { Q_BATCH, Q_SEPARATE, F_BATCH, F_SEPARATE, F_BLAS } Op;

typedef struct {
    const QuantMatrix* q; // (rows, cols) Q4_1
    const float* W;       // (rows, cols) float32
    const float* x;       // (n, cols)
    float* y;             // (n, rows)
    int n, rows, cols;
} Problem;

static void run_op(Op op, const Problem* p) {
    switch (op) {
    case Q_BATCH: quant_matmat(p->y, p->rows, p->x, p->cols, p->n, p->q); break;
    case Q_SEPARATE:
        for (int b = 0; b < p->n; b++) quant_matvec(p->y + (size_t)b * p->rows, p->x + (size_t)b * p->cols, p->q);
        break;
    case F_BATCH: f32_matmat(p->y, p->rows, p->x, p->cols, p->n, p->W, p->rows, p->cols); break;
    case F_SEPARATE:
        for (int b = 0; b < p->n; b++)
            f32_matvec(p->y + (size_t)b * p->rows, p->x + (size_t)b * p->cols, p->W, p->rows, p->cols);
        break;
    case F_BLAS: matmul(p->y, p->rows, p->x, p->W, p->n, p->cols, p->rows); break;
    }
}

// seconds per call of op, repeating it for at least min_s
static double time_once(Op op, const Problem* p, double min_s) {
    int iters = 0;
    double t0 = etx_now_s(), el;
    do {
        run_op(op, p);
        iters++;
    } while ((el = etx_now_s() - t0) < min_s);
    return el / iters;
}

// median seconds per call of ops a and b, measured alternately (a, b, a, b, ...) so that
// both see the same load on a shared machine
#define REPS 7
static void time_pair(Op a, const Problem* pa, Op b, const Problem* pb, double min_s, double* ta, double* tb) {
    double t[2][REPS];
    run_op(a, pa), run_op(b, pb); // warm-up
    for (int k = 0; k < REPS; k++) {
        t[0][k] = time_once(a, pa, min_s);
        t[1][k] = time_once(b, pb, min_s);
    }
    qsort(t[0], REPS, sizeof(double), etx_cmp_double);
    qsort(t[1], REPS, sizeof(double), etx_cmp_double);
    *ta = t[0][REPS / 2], *tb = t[1][REPS / 2];
}

int main(int argc, char** argv) {
    int threads = 0;
    double seconds = 0.3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-s")) seconds = atof(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [-t THREADS] [-s SECONDS]\n", argv[0]);
            return 2;
        }
    }
    cpu_set_threads(threads);
    static const int shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    static const int ns[] = {1, 8, 32};
    int max_n = 32;
    printf("threads %d; times are medians per call; ratio = separate / batched time\n", cpu_get_threads());
    printf("%-5s %-11s %3s | %9s %7s %7s | %9s %7s %7s | %5s %4s | %9s\n", "kind", "shape", "n", "batch us", "GFLOP/s",
           "W GB/s", "sep. us", "GFLOP/s", "W GB/s", "ratio", "bits", "BLAS us");
    for (int kind = 0; kind < 2; kind++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int rows = shapes[s][0], cols = shapes[s][1];
            // the weights: Q4_1 blocks with finite scales, or float32
            QuantMatrix q = {GGML_TYPE_Q4_1, rows, cols, NULL, (size_t)(cols / 32 * 20), 0};
            float* W = NULL;
            double wbytes;
            if (kind == 0) {
                uint8_t* b = malloc(q.row_bytes * rows);
                for (size_t i = 0; i < q.row_bytes * rows; i++) b[i] = (uint8_t)next_u32();
                for (size_t k = 0; k < q.row_bytes * rows / 20; k++) {
                    // d about +2^-7, m about -2^-7 (f16 bit patterns)
                    uint16_t d = (uint16_t)(0x2000 | (next_u32() & 0x3ff));
                    uint16_t m = (uint16_t)(0xa000 | (next_u32() & 0x3ff));
                    memcpy(b + 20 * k, &d, 2), memcpy(b + 20 * k + 2, &m, 2);
                }
                q.blocks = b;
                wbytes = (double)q.row_bytes * rows;
            } else {
                W = malloc((size_t)rows * cols * sizeof(float));
                for (size_t i = 0; i < (size_t)rows * cols; i++) W[i] = frand() * 0.05f;
                wbytes = (double)rows * cols * sizeof(float);
            }
            float* x = malloc((size_t)max_n * cols * sizeof(float));
            float* y1 = malloc((size_t)max_n * rows * sizeof(float));
            float* y2 = malloc((size_t)max_n * rows * sizeof(float));
            for (size_t i = 0; i < (size_t)max_n * cols; i++) x[i] = frand();
            for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
                int n = ns[t];
                Problem p1 = {&q, W, x, y1, n, rows, cols}, p2 = {&q, W, x, y2, n, rows, cols};
                Op batch = kind == 0 ? Q_BATCH : F_BATCH, sep = kind == 0 ? Q_SEPARATE : F_SEPARATE;
                double tb, ts, tblas, tdummy;
                time_pair(batch, &p1, sep, &p2, seconds / 10, &tb, &ts);
                int same = memcmp(y1, y2, (size_t)n * rows * sizeof(float)) == 0;
                double flop = 2.0 * n * rows * cols;
                char shape[32], blas[32] = "-";
                snprintf(shape, sizeof shape, "%dx%d", rows, cols);
                if (kind == 1) {
                    time_pair(F_BLAS, &p2, batch, &p1, seconds / 10, &tblas, &tdummy);
                    snprintf(blas, sizeof blas, "%9.1f", 1e6 * tblas);
                }
                printf("%-5s %-11s %3d | %9.1f %7.1f %7.1f | %9.1f %7.1f %7.1f | %5.2f %4s | %9s\n",
                       kind == 0 ? "Q4_1" : "f32", shape, n, 1e6 * tb, flop / tb * 1e-9, wbytes / tb * 1e-9, 1e6 * ts,
                       flop / ts * 1e-9, n * wbytes / ts * 1e-9, ts / tb, same ? "same" : "DIFF", blas);
                fflush(stdout);
            }
            free(q.blocks), free(W), free(x), free(y1), free(y2);
        }
    return 0;
}
