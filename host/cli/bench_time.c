/*
 * bench_time.c — the timing of `etx bench` (bench.h): one engine run of B requests,
 * stepped by hand and timed at every first token and at the end, with its peak memory;
 * and the rows of one batch size: medians of repeats, the hardware floors, the policy
 * share. The formulas are in bench.c's header comment.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common.h"

static double median(double* v, int n) {
    qsort(v, (size_t)n, sizeof(double), etx_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Peak resident set since the last reset, bytes (0 when /proc cannot tell).
static void peak_rss_reset(void) {
    FILE* f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f); // 5: reset the peak RSS (VmHWM) to the current RSS
        fclose(f);
    }
}

static long long peak_rss_bytes(void) {
    FILE* f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atoll(line + 6);
    fclose(f);
    return kb * 1024;
}

// The engines of a --gpus run wait here once created, so that their clocks start together.
typedef struct {
    pthread_barrier_t* start; // NULL: one engine
    int failed;               // an engine could not be created (the others then stop at once)
} BenchSync;

// One engine of a run, on device gpu.
static etx_status run_on(const BenchSetup* bs, int gpu, int B, etx_policy_kind kind, BenchSync* sync, RunResult* r) {
    etx_engine_options o = bs->eo;
    o.gpu = gpu;
    o.max_batch = B;
    o.max_seq_len = bs->L + bs->G;
    // a pool holding every request whole: the automatic size is capped (2 GiB, sized for
    // f32 K/V) and would preempt at large B, timing recomputation instead of decode;
    // --kv-blocks and --kv-block-size replace it
    if (!o.kv_block_size) o.kv_block_size = 64;
    if (!o.kv_blocks) o.kv_blocks = B * ((o.max_seq_len + o.kv_block_size - 1) / o.kv_block_size);
    o.prefix_cache = -1; // prefill is what is timed: every prompt computed in full
    etx_engine* e = NULL;
    etx_status cs = etx_engine_create(bs->m, &o, &e);
    if (sync->start) { // every engine created (or failed) before any clock starts
        if (cs.code != ETX_OK) __atomic_store_n(&sync->failed, 1, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(sync->start);
        if (cs.code == ETX_OK && __atomic_load_n(&sync->failed, __ATOMIC_SEQ_CST))
            cs = etx_error(ETX_ERR_STATE, "another device's engine could not be created");
    }
    if (cs.code != ETX_OK) {
        etx_engine_free(e);
        return cs;
    }
    const int base = bs->vocab > 2000 ? 1000 : 0;
    int32_t* prompt = malloc((size_t)bs->L * sizeof(int32_t));
    int* ids = malloc((size_t)B * sizeof(int));
    etx_status s = etx_ok();
    for (int b = 0; b < B && s.code == ETX_OK; b++) {
        for (int i = 0; i < bs->L; i++) prompt[i] = base + (int32_t)((37LL * i + 101LL * b) % (bs->vocab - base));
        etx_request q = {.prompt = prompt, .n_prompt = bs->L, .policy = etx_policy_default(kind),
                         .max_tokens = bs->G, .ignore_eos = 1, .key = (uint64_t)b};
        s = etx_engine_submit(e, &q, &ids[b]);
    }
    const double t0 = etx_now_s();
    r->t_first = -1;
    int active = 1, first_seen = 0; // requests known to hold a token (checked in order)
    while (s.code == ETX_OK && active) {
        s = etx_engine_step(e, &active);
        if (s.code != ETX_OK || r->t_first >= 0) continue;
        for (; first_seen < B; first_seen++) {
            etx_request_state st;
            s = etx_engine_request_state(e, ids[first_seen], &st);
            if (s.code != ETX_OK || st.n_tokens < 1) break;
        }
        if (first_seen == B) r->t_first = etx_now_s() - t0;
    }
    r->t_end = etx_now_s() - t0;
    for (int b = 0; b < B && s.code == ETX_OK; b++) {
        etx_request_state st;
        s = etx_engine_request_state(e, ids[b], &st);
        if (s.code == ETX_OK && st.n_tokens != bs->G)
            s = etx_error(ETX_ERR_STATE, "request %d ended with %d tokens, not %d%s%s", b, st.n_tokens, bs->G,
                          st.error[0] ? ": " : "", st.error);
    }
    if (s.code == ETX_OK) etx_engine_get_stats(e, &r->stats);
    free(prompt);
    free(ids);
    etx_engine_free(e);
    return s;
}

typedef struct {
    const BenchSetup* bs;
    int gpu, B;
    etx_policy_kind kind;
    BenchSync* sync;
    RunResult r;
    etx_status s;
} BenchLane;

static void* lane_main(void* arg) {
    BenchLane* ln = arg;
    ln->s = run_on(ln->bs, ln->gpu, ln->B, ln->kind, ln->sync, &ln->r);
    return NULL;
}

etx_status bench_run(const BenchSetup* bs, int B, etx_policy_kind kind, RunResult* r) {
    peak_rss_reset();
    BenchSync sync = {0};
    etx_status s = etx_ok();
    if (bs->n_gpus <= 1) {
        s = run_on(bs, bs->eo.gpu, B, kind, &sync, r);
    } else {
        const int n = bs->n_gpus;
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)n);
        sync.start = &start;
        BenchLane* lanes = calloc((size_t)n, sizeof *lanes);
        pthread_t* th = calloc((size_t)n, sizeof *th);
        if (!lanes || !th) abort();
        int started = 0;
        for (int d = 0; d < n; d++) {
            lanes[d] = (BenchLane){.bs = bs, .gpu = bs->gpus[d], .B = B, .kind = kind, .sync = &sync};
            if (pthread_create(&th[d], NULL, lane_main, &lanes[d]) != 0) break;
            started++;
        }
        if (started < n) { // the barrier can never fill: the ones started are stuck in it
            fprintf(stderr, "etx bench: cannot start the threads of %d engines\n", n);
            abort();
        }
        for (int d = 0; d < n; d++) pthread_join(th[d], NULL);
        pthread_barrier_destroy(&start);
        *r = lanes[0].r;
        for (int d = 0; d < n && s.code == ETX_OK; d++) {
            s = lanes[d].s;
            if (s.code != ETX_OK) break;
            if (lanes[d].r.t_first > r->t_first) r->t_first = lanes[d].r.t_first;
            if (lanes[d].r.t_end > r->t_end) r->t_end = lanes[d].r.t_end;
            if (d > 0) r->stats.device_bytes += lanes[d].r.stats.device_bytes; // held on every device
        }
        free(lanes);
        free(th);
    }
    r->peak_rss = peak_rss_bytes();
    return s;
}

// FLOPs of one prefill of B prompts of L tokens (bench.c's header comment).
static double prefill_flops(const etx_model_info* mi, int B, int L) {
    const double dim = mi->dim, qd = (double)mi->n_heads * mi->head_dim, kvd = (double)mi->n_kv_heads * mi->head_dim;
    const double per_layer = dim * (qd + 2 * kvd) + qd * dim + 3.0 * dim * mi->hidden_dim;
    const double proj = 2.0 * per_layer * mi->n_layers * L;
    const double attn = 4.0 * mi->n_layers * qd * ((double)L * (L + 1) / 2.0);
    const double head = 2.0 * (double)mi->vocab_size * dim;
    return (double)B * (proj + attn + head);
}

etx_status bench_time_batch(const BenchSetup* bs, const BenchConfig* c, const etx_model_info* mi,
                            const etx_hw_limits* hw, int B, BenchRow* rows) {
    const int n_kinds = c->n_kinds, L = bs->L, G = bs->G;
    double ms[BENCH_MAX_POLICIES][BENCH_MAX_REPEATS], pre[BENCH_MAX_POLICIES][BENCH_MAX_REPEATS];
    long long rss[BENCH_MAX_POLICIES] = {0};
    etx_status s = etx_ok();
    RunResult rr;
    for (int r = -c->warmup; r < c->repeats && s.code == ETX_OK; r++)
        for (int k = 0; k < n_kinds && s.code == ETX_OK; k++) {
            s = bench_run(bs, B, c->kinds[k], &rr);
            if (s.code != ETX_OK || r < 0) continue;
            ms[k][r] = 1e3 * (rr.t_end - rr.t_first) / (G - 1);
            pre[k][r] = rr.t_first;
            if (rr.peak_rss > rss[k]) rss[k] = rr.peak_rss;
            rows[k].stats = rr.stats;
        }
    if (s.code != ETX_OK) return s;
    double greedy_ms = NAN;
    for (int k = 0; k < n_kinds; k++) {
        BenchRow* row = &rows[k];
        row->batch = B;
        row->kind = c->kinds[k];
        row->ms_per_token = median(ms[k], c->repeats);
        const double t_first = median(pre[k], c->repeats);
        const int D = bs->n_gpus > 1 ? bs->n_gpus : 1; // devices, each running B requests
        row->decode_tok_s = 1e3 * B * D / row->ms_per_token;
        row->prefill_tok_s = (double)B * D * L / t_first;
        row->peak_rss = rss[k];
        row->device_bytes = row->stats.device_bytes;
        const double bytes = (double)row->stats.weight_bytes +
                             (double)B * row->stats.kv_bytes_per_position * (L + G / 2.0);
        row->decode_floor_ms = hw->mem_bandwidth > 0 ? 1e3 * bytes / hw->mem_bandwidth : NAN;
        row->decode_floor_fraction = row->decode_floor_ms / row->ms_per_token;
        row->prefill_flops = prefill_flops(mi, B, L);
        row->prefill_peak_fraction = hw->gemm_flops > 0 ? row->prefill_flops / hw->gemm_flops / t_first : NAN;
        row->n_gpus = D; // (the floors and fractions are per device: each runs B rows)
        if (c->kinds[k] == ETX_POLICY_GREEDY) greedy_ms = row->ms_per_token;
    }
    for (int k = 0; k < n_kinds; k++)
        rows[k].policy_share = c->kinds[k] == ETX_POLICY_GREEDY ? 0.0 : 1.0 - greedy_ms / rows[k].ms_per_token;
    return s;
}
