/*
 * bench.c — `etx bench`: prefill and decode speed of the engine at several batch sizes
 * and policies, each set beside the hardware's floor measured in the same process.
 *
 * One run = B requests with distinct prompts of L tokens (request b, position i: id
 * base + (37 i + 101 b) mod (V - base), base = 1000 when the vocabulary allows, the ids
 * benchmarks/peers/ give their engines), G tokens each, EOS ignored, through one engine
 * with max_batch B, stepped by hand:
 *   t_first: every request has its first token (prefill of all B prompts + one pick);
 *   t_end:   every request has G tokens.
 *   prefill tok/s = B L / t_first            (includes the first pick)
 *   ms/token      = (t_end - t_first) / (G - 1)  per decode step, each row one token
 *   decode tok/s  = B (G - 1) / (t_end - t_first)
 * Median of R runs after W warm-up runs; the policies of one batch size alternate within a
 * repeat so drift hits them alike.
 *
 * The floor:
 *   decode:  a step must read the weights once (stats.weight_bytes) and each row's K/V
 *            (kv_bytes_per_position x its length, L + G/2 on average over the steps);
 *            floor = bytes / measured bandwidth, fraction = floor / ms per step.
 *   prefill: 2 FLOPs per weight per prompt token (projections), 4 n_heads head_dim per
 *            (query, key) pair of causal attention, one LM head row per request;
 *            fraction = (FLOPs / measured GEMM rate) / t_first.
 *   policy share = 1 - (greedy ms/token) / (policy ms/token), greedy run in the same repeat
 *            (so it needs greedy in --policy).
 * Peak memory: the process's peak resident set during the run (VmHWM after resetting it
 * through /proc/self/clear_refs), and on CUDA the device memory the engine holds.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"
#include "common.h"

#define BENCH_MAX_BATCHES 16
#define BENCH_MAX_POLICIES 3
#define BENCH_MAX_REPEATS 100

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

// "1,8,64" -> values (each 1..4096). Returns the count, or -1 after printing an error.
static int parse_batches(const char* s, int* out) {
    int n = 0;
    const char* p = s;
    while (*p) {
        char* end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 4096 || (*end && *end != ',')) {
            fprintf(stderr, "etx bench: --batch '%s': each entry must be an integer 1..4096, separated by commas\n", s);
            return -1;
        }
        if (n == BENCH_MAX_BATCHES) {
            fprintf(stderr, "etx bench: --batch: at most %d batch sizes\n", BENCH_MAX_BATCHES);
            return -1;
        }
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end && !*p) {
            fprintf(stderr, "etx bench: --batch '%s' ends with a comma\n", s);
            return -1;
        }
    }
    if (!n) fprintf(stderr, "etx bench: --batch is empty\n");
    return n ? n : -1;
}

// "greedy,entropix" -> kinds. Returns the count, or -1 after printing an error.
static int parse_policies(const char* s, etx_policy_kind* out) {
    static const struct {
        const char* name;
        etx_policy_kind kind;
    } names[] = {{"greedy", ETX_POLICY_GREEDY}, {"sample", ETX_POLICY_SAMPLE}, {"entropix", ETX_POLICY_ENTROPIX}};
    int n = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    char* save = NULL;
    for (char* t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(t, names[i].name)) k = i;
        if (k < 0) {
            fprintf(stderr, "etx bench: --policy: unknown policy '%s' (greedy, sample, entropix)\n", t);
            return -1;
        }
        for (int i = 0; i < n; i++)
            if (out[i] == names[k].kind) {
                fprintf(stderr, "etx bench: --policy: '%s' is listed twice\n", t);
                return -1;
            }
        out[n++] = names[k].kind;
    }
    if (!n) fprintf(stderr, "etx bench: --policy is empty\n");
    return n ? n : -1;
}

static const char* kind_name(etx_policy_kind k) {
    return k == ETX_POLICY_GREEDY ? "greedy" : k == ETX_POLICY_SAMPLE ? "sample" : "entropix";
}

typedef struct {
    const etx_model* m;
    etx_engine_options eo;
    int L, G, vocab;
} BenchSetup;

typedef struct {
    double t_first, t_end;  // seconds from submit to every first token / every last token
    long long peak_rss;     // bytes
    etx_engine_stats stats;
} RunResult;

// One run of B requests with policy kind (see the header comment).
static etx_status bench_run(const BenchSetup* bs, int B, etx_policy_kind kind, RunResult* r) {
    etx_engine_options o = bs->eo;
    o.max_batch = B;
    o.max_seq_len = bs->L + bs->G;
    // a pool holding every request whole: the automatic size is capped (2 GiB, sized for
    // f32 K/V) and would preempt at large B, timing recomputation instead of decode
    o.kv_block_size = 64;
    o.kv_blocks = B * ((o.max_seq_len + 63) / 64);
    peak_rss_reset();
    etx_engine* e = NULL;
    ETX_TRY(etx_engine_create(bs->m, &o, &e));
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
    r->peak_rss = peak_rss_bytes();
    free(prompt);
    free(ids);
    etx_engine_free(e);
    return s;
}

typedef struct {
    int batch;
    etx_policy_kind kind;
    double prefill_tok_s, decode_tok_s, ms_per_token;
    long long peak_rss, device_bytes;
    double policy_share; // NAN: no greedy baseline
    double decode_floor_ms, decode_floor_fraction, prefill_flops, prefill_peak_fraction;
    etx_engine_stats stats;
} BenchRow;

// FLOPs of one prefill of B prompts of L tokens (see the header comment).
static double prefill_flops(const etx_model_info* mi, int B, int L) {
    const double dim = mi->dim, qd = (double)mi->n_heads * mi->head_dim, kvd = (double)mi->n_kv_heads * mi->head_dim;
    const double per_layer = dim * (qd + 2 * kvd) + qd * dim + 3.0 * dim * mi->hidden_dim;
    const double proj = 2.0 * per_layer * mi->n_layers * L;
    const double attn = 4.0 * mi->n_layers * qd * ((double)L * (L + 1) / 2.0);
    const double head = 2.0 * (double)mi->vocab_size * dim;
    return (double)B * (proj + attn + head);
}

static void print_header(FILE* f) {
    fprintf(f, "| batch | policy | prefill tok/s | decode tok/s | ms/token | peak RSS MiB | device MiB | policy share "
               "| decode / bandwidth floor | prefill / GEMM peak |\n");
    fprintf(f, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
}

static void print_rows(FILE* f, const BenchRow* rows, int n) {
    for (int i = 0; i < n; i++) {
        const BenchRow* r = &rows[i];
        char share[32];
        if (r->kind == ETX_POLICY_GREEDY) snprintf(share, sizeof share, "(base)");
        else if (isnan(r->policy_share)) snprintf(share, sizeof share, "-");
        else snprintf(share, sizeof share, "%.1f%%", 100.0 * r->policy_share);
        fprintf(f, "| %d | %s | %.1f | %.1f | %.3f | %.0f | %.0f | %s | %.1f%% | %.1f%% |\n", r->batch, kind_name(r->kind),
                r->prefill_tok_s, r->decode_tok_s, r->ms_per_token, r->peak_rss / 1048576.0, r->device_bytes / 1048576.0,
                share, 100.0 * r->decode_floor_fraction, 100.0 * r->prefill_peak_fraction);
    }
}

static cJSON* json_report(const char* model_path, const etx_model_info* mi, const BenchSetup* bs, int threads,
                          int repeats, int warmup, const etx_hw_limits* hw, const BenchRow* rows, int n) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "etx_bench", 1);
    cJSON_AddStringToObject(o, "model", model_path);
    cJSON_AddNumberToObject(o, "n_params", (double)mi->n_params);
    cJSON_AddStringToObject(o, "device", rows[0].stats.device == ETX_DEVICE_CUDA ? "cuda" : "cpu");
    cJSON_AddStringToObject(o, "device_name", rows[0].stats.device_name);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddNumberToObject(o, "prompt_len", bs->L);
    cJSON_AddNumberToObject(o, "gen_len", bs->G);
    cJSON_AddNumberToObject(o, "repeats", repeats);
    cJSON_AddNumberToObject(o, "warmup", warmup);
    cJSON_AddNumberToObject(o, "steps_per_sync", rows[0].stats.steps_per_sync);
    cJSON* h = cJSON_AddObjectToObject(o, "hardware");
    cJSON_AddNumberToObject(h, "mem_bandwidth_bytes_s", hw->mem_bandwidth);
    cJSON_AddStringToObject(h, "bandwidth_method", hw->bandwidth_method);
    cJSON_AddNumberToObject(h, "gemm_flops_s", hw->gemm_flops);
    cJSON_AddStringToObject(h, "gemm_method", hw->gemm_method);
    cJSON_AddNumberToObject(o, "weight_bytes", (double)rows[0].stats.weight_bytes);
    cJSON_AddNumberToObject(o, "kv_bytes_per_position", (double)rows[0].stats.kv_bytes_per_position);
    cJSON* arr = cJSON_AddArrayToObject(o, "results");
    for (int i = 0; i < n; i++) {
        const BenchRow* r = &rows[i];
        cJSON* x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "batch", r->batch);
        cJSON_AddStringToObject(x, "policy", kind_name(r->kind));
        cJSON_AddNumberToObject(x, "prefill_tok_s", r->prefill_tok_s);
        cJSON_AddNumberToObject(x, "decode_tok_s", r->decode_tok_s);
        cJSON_AddNumberToObject(x, "ms_per_token", r->ms_per_token);
        cJSON_AddNumberToObject(x, "peak_rss_bytes", (double)r->peak_rss);
        cJSON_AddNumberToObject(x, "device_bytes", (double)r->device_bytes);
        if (isnan(r->policy_share)) cJSON_AddNullToObject(x, "policy_share");
        else cJSON_AddNumberToObject(x, "policy_share", r->policy_share);
        cJSON_AddNumberToObject(x, "decode_floor_ms", r->decode_floor_ms);
        cJSON_AddNumberToObject(x, "decode_floor_fraction", r->decode_floor_fraction);
        cJSON_AddNumberToObject(x, "prefill_flops", r->prefill_flops);
        cJSON_AddNumberToObject(x, "prefill_peak_fraction", r->prefill_peak_fraction);
        cJSON_AddNumberToObject(x, "steps", (double)r->stats.steps);
        cJSON_AddNumberToObject(x, "multi_steps", (double)r->stats.multi_steps);
        cJSON_AddNumberToObject(x, "preemptions", (double)r->stats.preemptions);
        cJSON_AddItemToArray(arr, x);
    }
    return o;
}

int cmd_bench(int argc, char** argv) {
    const char *model = NULL, *device = NULL, *batch_s = NULL, *policy_s = "greedy,entropix", *json_path = NULL;
    int L = 128, G = 64, repeats = 3, warmup = 1, threads = 0, quick_probe = 0, steps_per_sync = 0;
    CliOpt opts[] = {
        {"--model", "-m", OPT_STRING, &model, "PATH", "model directory or .gguf (default: the default model)", 0},
        {"--device", NULL, OPT_STRING, &device, "DEV", "auto | cpu | cuda (default auto)", 0},
        {"--batch", "-b", OPT_STRING, &batch_s, "1,8,..", "batch sizes (default 1,8,64,256 on CUDA, 1,8,32 on the CPU)", 0},
        {"--prompt-len", "-l", OPT_INT, &L, "L", "prompt tokens per request (default 128)", 0},
        {"--gen-len", "-g", OPT_INT, &G, "G", "generated tokens per request, >= 2 (default 64)", 0},
        {"--policy", NULL, OPT_STRING, &policy_s, "P,..",
         "policies with their default settings: greedy, sample, entropix (default greedy,entropix; greedy is the "
         "baseline of the policy share)", 0},
        {"--repeats", "-r", OPT_INT, &repeats, "R", "timed runs per cell, the median reported (default 3)", 0},
        {"--warmup", NULL, OPT_INT, &warmup, "W", "untimed runs first (default 1)", 0},
        {"--threads", "-t", OPT_INT, &threads, "N", "CPU threads (default: all cores)", 0},
        {"--steps-per-sync", NULL, OPT_INT, &steps_per_sync, "K", "CUDA decode steps per host sync (default 8)", 0},
        {"--json", NULL, OPT_STRING, &json_path, "FILE", "also write the results as JSON (- for stdout; the table then "
                                                         "goes to stderr)", 0},
        {"--quick-probe", NULL, OPT_FLAG, &quick_probe, NULL,
         "measure bandwidth and GEMM rate on small sizes (fast, not representative; for tests)", 0},
    };
    CliCommand cmd = {"bench", "[-m MODEL] [--device DEV] [--batch 1,8,64,256] [--prompt-len L] [--gen-len G] "
                               "[--policy greedy,entropix] [--json FILE]",
                      "Prefill and decode tokens/s, ms/token (median of repeats after warm-up), peak memory, the "
                      "policy's share of the step and the fraction of the hardware floor reached (memory bandwidth "
                      "for decode, GEMM rate for prefill, both measured here first).",
                      opts, (int)(sizeof opts / sizeof opts[0])};
    int pr = cli_parse(&cmd, argc, argv);
    if (pr) return pr > 0 ? 0 : 2;
    etx_engine_options eo = etx_engine_options_default();
    if (cli_parse_device(device, &eo.device) != 0) return 2;
    if (L < 1 || G < 2 || repeats < 1 || repeats > BENCH_MAX_REPEATS || warmup < 0 || warmup > 10 || threads < 0 ||
        steps_per_sync < 0 || steps_per_sync > 64) {
        fprintf(stderr, "etx bench: need --prompt-len >= 1, --gen-len >= 2, --repeats 1..%d, --warmup 0..10, "
                        "--threads >= 0, --steps-per-sync 0..64\n", BENCH_MAX_REPEATS);
        return 2;
    }
    etx_policy_kind kinds[BENCH_MAX_POLICIES];
    const int n_kinds = parse_policies(policy_s, kinds);
    if (n_kinds < 0) return 2;
    int batches[BENCH_MAX_BATCHES];
    int n_batches = batch_s ? parse_batches(batch_s, batches) : 0;
    if (n_batches < 0) return 2;
    // JSON goes to FILE.tmp, renamed over FILE at the end: a bad path fails before minutes
    // of work, and a failed run leaves an earlier FILE as it was
    FILE* json = NULL;
    char json_tmp[4096] = "";
    if (json_path && strcmp(json_path, "-")) {
        snprintf(json_tmp, sizeof json_tmp, "%s.tmp", json_path);
        json = fopen(json_tmp, "w");
        if (!json) {
            fprintf(stderr, "etx bench: cannot write %s (through %s): %s\n", json_path, json_tmp, strerror(errno));
            return 2;
        }
    }
    const char* path = cli_model_path(model);
    etx_model* m = cli_load_model(path);
    if (!m) {
        if (json) fclose(json), remove(json_tmp);
        return 1;
    }
    etx_model_info mi;
    etx_model_get_info(m, &mi);
    int rc = 1;
    BenchRow* rows = NULL;
    etx_status s = etx_ok();
    if (L + G > mi.max_seq_len) {
        s = etx_error(ETX_ERR_INVALID_ARG, "--prompt-len %d + --gen-len %d exceeds the model's context of %d", L, G,
                      mi.max_seq_len);
        goto done;
    }
    const int base = mi.vocab_size > 2000 ? 1000 : 0;
    if (mi.vocab_size - base < 2) {
        s = etx_error(ETX_ERR_INVALID_ARG, "the vocabulary (%d tokens) is too small to build prompts", mi.vocab_size);
        goto done;
    }
    eo.n_threads = threads;
    eo.steps_per_sync = steps_per_sync;
    BenchSetup bs = {m, eo, L, G, mi.vocab_size};

    // which device the engine picks, and the hardware's figures there
    RunResult probe_run;
    s = bench_run(&bs, 1, ETX_POLICY_GREEDY, &probe_run);
    if (s.code != ETX_OK) goto done;
    const etx_device dev = probe_run.stats.device;
    bs.eo.device = dev;
    if (!n_batches) {
        static const int gpu_default[] = {1, 8, 64, 256}, cpu_default[] = {1, 8, 32};
        const int* d = dev == ETX_DEVICE_CUDA ? gpu_default : cpu_default;
        n_batches = dev == ETX_DEVICE_CUDA ? 4 : 3;
        memcpy(batches, d, (size_t)n_batches * sizeof(int));
    }
    etx_hw_limits hw;
    s = etx_measure_hardware(dev, threads, quick_probe, &hw);
    if (s.code != ETX_OK) goto done;
    FILE* tf = json_path && !strcmp(json_path, "-") ? stderr : stdout;
    // CPU threads in use (0 on CUDA)
    const int cpu_threads = dev == ETX_DEVICE_CPU ? (threads ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN)) : 0;
    if (dev == ETX_DEVICE_CUDA)
        fprintf(tf, "etx bench: %s (%.1f M parameters), device cuda (%s)", path, mi.n_params / 1e6,
                probe_run.stats.device_name);
    else
        fprintf(tf, "etx bench: %s (%.1f M parameters), device cpu, %d threads", path, mi.n_params / 1e6, cpu_threads);
    fprintf(tf, "\nprompt %d tokens, %d generated per request (EOS ignored); median of %d runs after %d warm-up\n", L, G,
            repeats, warmup);
    fprintf(tf, "hardware: %.1f GB/s (%s), %.1f GFLOP/s (%s)\n", hw.mem_bandwidth / 1e9, hw.bandwidth_method,
            hw.gemm_flops / 1e9, hw.gemm_method);
    fprintf(tf, "decode reads %.1f MB of weights per step + %.1f KB of K/V per position per row\n\n",
            probe_run.stats.weight_bytes / 1e6, probe_run.stats.kv_bytes_per_position / 1e3);
    print_header(tf);
    fflush(tf);

    rows = calloc((size_t)n_batches * n_kinds, sizeof(BenchRow));
    double* ms = malloc((size_t)n_kinds * BENCH_MAX_REPEATS * sizeof(double));
    double* pre = malloc((size_t)n_kinds * BENCH_MAX_REPEATS * sizeof(double));
    long long* rss = calloc((size_t)n_kinds, sizeof(long long));
    int n_rows = 0;
    for (int bi = 0; bi < n_batches && s.code == ETX_OK; bi++) {
        const int B = batches[bi];
        RunResult rr;
        memset(rss, 0, (size_t)n_kinds * sizeof(long long));
        for (int r = -warmup; r < repeats && s.code == ETX_OK; r++)
            for (int k = 0; k < n_kinds && s.code == ETX_OK; k++) {
                s = bench_run(&bs, B, kinds[k], &rr);
                if (s.code != ETX_OK || r < 0) continue;
                ms[k * BENCH_MAX_REPEATS + r] = 1e3 * (rr.t_end - rr.t_first) / (G - 1);
                pre[k * BENCH_MAX_REPEATS + r] = rr.t_first;
                if (rr.peak_rss > rss[k]) rss[k] = rr.peak_rss;
                rows[n_rows + k].stats = rr.stats;
            }
        if (s.code != ETX_OK) break;
        double greedy_ms = NAN;
        for (int k = 0; k < n_kinds; k++) {
            BenchRow* row = &rows[n_rows + k];
            row->batch = B;
            row->kind = kinds[k];
            row->ms_per_token = median(ms + k * BENCH_MAX_REPEATS, repeats);
            const double t_first = median(pre + k * BENCH_MAX_REPEATS, repeats);
            row->decode_tok_s = 1e3 * B / row->ms_per_token;
            row->prefill_tok_s = (double)B * L / t_first;
            row->peak_rss = rss[k];
            row->device_bytes = row->stats.device_bytes;
            const double bytes = (double)row->stats.weight_bytes +
                                 (double)B * row->stats.kv_bytes_per_position * (L + G / 2.0);
            row->decode_floor_ms = hw.mem_bandwidth > 0 ? 1e3 * bytes / hw.mem_bandwidth : NAN;
            row->decode_floor_fraction = row->decode_floor_ms / row->ms_per_token;
            row->prefill_flops = prefill_flops(&mi, B, L);
            row->prefill_peak_fraction = hw.gemm_flops > 0 ? row->prefill_flops / hw.gemm_flops / t_first : NAN;
            if (kinds[k] == ETX_POLICY_GREEDY) greedy_ms = row->ms_per_token;
        }
        for (int k = 0; k < n_kinds; k++) {
            BenchRow* row = &rows[n_rows + k];
            row->policy_share = kinds[k] == ETX_POLICY_GREEDY ? 0.0 : 1.0 - greedy_ms / row->ms_per_token;
        }
        print_rows(tf, rows + n_rows, n_kinds);
        fflush(tf);
        n_rows += n_kinds;
    }
    free(ms);
    free(pre);
    free(rss);
    if (s.code != ETX_OK) goto done;
    cJSON* j = json_report(path, &mi, &bs, cpu_threads, repeats, warmup, &hw, rows, n_rows);
    char* text = cJSON_Print(j);
    cJSON_Delete(j);
    if (json_path) {
        FILE* jf = json ? json : stdout;
        fprintf(jf, "%s\n", text);
        if (json) {
            const int bad = ferror(json) | fclose(json);
            json = NULL;
            if (bad || rename(json_tmp, json_path) != 0)
                s = etx_error(ETX_ERR_IO, "error writing %s: %s", json_path, strerror(errno));
        }
    }
    free(text);
    if (s.code == ETX_OK) rc = 0;
done:
    if (s.code != ETX_OK) cli_error("bench", s);
    if (json) fclose(json);
    if (s.code != ETX_OK && json_tmp[0]) remove(json_tmp);
    free(rows);
    etx_model_free(m);
    return rc;
}
