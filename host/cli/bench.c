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
 *
 * The command runs in four steps: parse (the options, checked before any work), probe
 * (the device the engine picks and the hardware's figures there), time (bench_time.c:
 * each batch size's rows, printed as they come) and report (the table, the JSON).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "bench.h"
#include "cli.h"
#include "common.h"

// ----------------------------------------------------------------------------
// parse: the options, checked before any work

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

// Parses and checks the options into c, and opens the --json file early: a bad path
// fails before minutes of work, and a failed run leaves an earlier FILE as it was.
// Returns CLI_CONTINUE to go on, else the exit code (0 after --help, 2 after an error).
static int bench_parse(int argc, char** argv, BenchConfig* c) {
    const char *model = NULL, *device = NULL, *batch_s = NULL, *policy_s = "greedy,entropix", *gpu = NULL;
    int steps_per_sync = 0, kv_blocks = 0, kv_block_size = 0, share_gpus = 0, tp = 0;
    memset(c, 0, sizeof *c);
    c->L = 128, c->G = 64, c->repeats = 3, c->warmup = 1;
    CliOpt opts[] = {
        {"--model", "-m", OPT_STRING, &model, "PATH", "model directory or .gguf (default: the default model)", 0},
        {"--device", NULL, OPT_STRING, &device, "DEV", "auto | cpu | cuda (default auto)", 0},
        CLI_GPU_OPTS(&gpu, &share_gpus, &tp),
        CLI_GPUS_OPT(&c->gpus_arg),
        {"--batch", "-b", OPT_STRING, &batch_s, "1,8,..", "batch sizes (default 1,8,64,256 on CUDA, 1,8,32 on the CPU)", 0},
        {"--prompt-len", "-l", OPT_INT, &c->L, "L", "prompt tokens per request (default 128)", 0},
        {"--gen-len", "-g", OPT_INT, &c->G, "G", "generated tokens per request, >= 2 (default 64)", 0},
        {"--policy", NULL, OPT_STRING, &policy_s, "P,..",
         "policies with their default settings: greedy, sample, entropix (default greedy,entropix; greedy is the "
         "baseline of the policy share)", 0},
        {"--repeats", "-r", OPT_INT, &c->repeats, "R", "timed runs per cell, the median reported (default 3)", 0},
        {"--warmup", NULL, OPT_INT, &c->warmup, "W", "untimed runs first (default 1)", 0},
        {"--threads", "-t", OPT_INT, &c->threads, "N", "CPU threads, at most the CPUs (default: all cores)", 0},
        {"--kv-blocks", NULL, OPT_INT, &kv_blocks, "N",
         "KV cache blocks in the pool of every run (default 0: each request whole, B x ceil((L + G) / block size); "
         "fewer blocks preempt and recompute, which is then timed too)", 0},
        {"--kv-block-size", NULL, OPT_INT, &kv_block_size, "N", "positions per KV block, 1..512 (default 0: 64)", 0},
        {"--steps-per-sync", NULL, OPT_INT, &steps_per_sync, "K", "decode steps per host sync (default: the backend's, 8 on CUDA, 1 on the CPU)", 0},
        {"--json", NULL, OPT_STRING, &c->json_path, "FILE", "also write the results as JSON (- for stdout; the table then "
                                                            "goes to stderr)", 0},
        {"--quick-probe", NULL, OPT_FLAG, &c->quick_probe, NULL,
         "measure bandwidth and GEMM rate on small sizes (fast, not representative; for tests)", 0},
        {"--plan", NULL, OPT_FLAG, &c->plan, NULL,
         "print the CUDA cost model's prediction of a decode step, op by op, per batch size (runs nothing; needs no "
         "GPU)", 0},
        {"--card", NULL, OPT_STRING, &c->card, "NAME", "with --plan: the datasheet card, h100 or h200 (default h100)", 0},
        {"--shape", NULL, OPT_STRING, &c->shape, "NAME",
         "with --plan: a named model shape instead of --model (llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, "
         "smollm2-135m, qwen2.5-1.5b)", 0},
    };
    CliCommand cmd = {"bench", "[-m MODEL] [--device DEV] [--batch 1,8,64,256] [--prompt-len L] [--gen-len G] "
                               "[--policy greedy,entropix] [--json FILE]",
                      "Prefill and decode tokens/s, ms/token (median of repeats after warm-up), peak memory, the "
                      "policy's share of the step and the fraction of the hardware floor reached (memory bandwidth "
                      "for decode, GEMM rate for prefill, both measured here first).",
                      opts, (int)(sizeof opts / sizeof opts[0])};
    const int pr = cli_parse(&cmd, argc, argv);
    if (pr != CLI_CONTINUE) return pr;
    if (!c->plan && (c->card || c->shape)) {
        fprintf(stderr, "etx bench: --card and --shape go with --plan\n");
        return 2;
    }
    if (c->plan && (c->json_path || (model && c->shape))) {
        fprintf(stderr, "etx bench: --plan takes no --json, and --model or --shape, not both\n");
        return 2;
    }
    // (the hardware probe runs after an engine on the chosen GPU made it current)
    const CliEngineArgs ea = {.device = device, .threads = c->threads, .kv_blocks = kv_blocks,
                              .kv_block_size = kv_block_size, .gpu = gpu, .share_gpus = share_gpus,
                              .gpus = c->gpus_arg, .tp = tp};
    if (cli_engine_options("bench", &ea, &c->eo) != 0) return 2;
    c->n_gpus = cli_engine_gpus(&ea, &c->eo, c->gpus);
    if (c->gpus_arg && c->plan) {
        fprintf(stderr, "etx bench: --plan predicts one device; leave --gpus out\n");
        return 2;
    }
    if (c->L < 1 || c->G < 2 || c->repeats < 1 || c->repeats > BENCH_MAX_REPEATS || c->warmup < 0 || c->warmup > 10 ||
        steps_per_sync < 0 || steps_per_sync > 64) {
        fprintf(stderr, "etx bench: need --prompt-len >= 1, --gen-len >= 2, --repeats 1..%d, --warmup 0..10, "
                        "--steps-per-sync 0..64\n", BENCH_MAX_REPEATS);
        return 2;
    }
    // a run's context is L + G: the pool must hold one request whole
    const long long pool = (long long)kv_blocks * (kv_block_size ? kv_block_size : 64);
    if (kv_blocks > 0 && pool < (long long)c->L + c->G) {
        fprintf(stderr, "etx bench: a KV pool of %d blocks (%lld positions) cannot hold one request of --prompt-len "
                        "%d + --gen-len %d tokens\n", kv_blocks, pool, c->L, c->G);
        return 2;
    }
    c->eo.steps_per_sync = steps_per_sync;
    c->n_kinds = parse_policies(policy_s, c->kinds);
    if (c->n_kinds < 0) return 2;
    c->n_batches = batch_s ? parse_batches(batch_s, c->batches) : 0;
    if (c->n_batches < 0) return 2;
    if (c->json_path && strcmp(c->json_path, "-")) {
        snprintf(c->json_tmp, sizeof c->json_tmp, "%s.tmp", c->json_path);
        c->json = fopen(c->json_tmp, "w");
        if (!c->json) {
            fprintf(stderr, "etx bench: cannot write %s (through %s): %s\n", c->json_path, c->json_tmp,
                    strerror(errno));
            return 1; // an output that cannot be written: the run failed (cli.h), found before any work
        }
    }
    c->model_path = cli_model_path(model);
    return CLI_CONTINUE;
}

// ----------------------------------------------------------------------------
// probe: the model's limits, the device, the hardware

// Checks the sizes against the model: the context, the vocabulary the prompts are built
// from. An error here refuses the run (exit 2).
static etx_status bench_check_model(const BenchConfig* c, const etx_model_info* mi) {
    if ((long long)c->L + c->G > mi->max_seq_len)
        return etx_error(ETX_ERR_INVALID_ARG, "--prompt-len %d + --gen-len %d exceeds the model's context of %d", c->L,
                         c->G, mi->max_seq_len);
    const int base = mi->vocab_size > 2000 ? 1000 : 0;
    if (mi->vocab_size - base < 2)
        return etx_error(ETX_ERR_INVALID_ARG, "the vocabulary (%d tokens) is too small to build prompts",
                         mi->vocab_size);
    return etx_ok();
}

// Runs one greedy request to learn which device the engine picks (bs->eo.device is set
// to it, and *probe gets its stats), sets the device's default batch sizes unless
// --batch gave them, and measures the hardware there.
static etx_status bench_probe(BenchConfig* c, BenchSetup* bs, etx_engine_stats* probe, etx_hw_limits* hw) {
    RunResult probe_run;
    ETX_TRY(bench_run(bs, 1, ETX_POLICY_GREEDY, &probe_run));
    *probe = probe_run.stats;
    const etx_device dev = probe->device;
    bs->eo.device = dev;
    if (!c->n_batches) {
        static const int gpu_default[] = {1, 8, 64, 256}, cpu_default[] = {1, 8, 32};
        const int* d = dev == ETX_DEVICE_CUDA ? gpu_default : cpu_default;
        c->n_batches = dev == ETX_DEVICE_CUDA ? 4 : 3;
        memcpy(c->batches, d, (size_t)c->n_batches * sizeof(int));
    }
    return etx_measure_hardware(dev, c->threads, c->quick_probe, hw);
}

// ----------------------------------------------------------------------------
// report: the intro and the table on stdout (stderr with --json -), the JSON at the end

static const char* kind_name(etx_policy_kind k) {
    return k == ETX_POLICY_GREEDY ? "greedy" : k == ETX_POLICY_SAMPLE ? "sample" : "entropix";
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

// The JSON report (benchmarks/gpu_check.sh and benchmarks/peers/ read it): the run's
// settings, the hardware figures, one object per row. threads: the CPU threads in use
// (0 on CUDA).
static cJSON* json_report(const BenchConfig* c, const etx_model_info* mi, int threads, const etx_hw_limits* hw,
                          const BenchRow* rows, int n) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "etx_bench", 1);
    cJSON_AddStringToObject(o, "model", c->model_path);
    cJSON_AddNumberToObject(o, "n_params", (double)mi->n_params);
    cJSON_AddStringToObject(o, "device", rows[0].stats.device == ETX_DEVICE_CUDA ? "cuda" : "cpu");
    cJSON_AddStringToObject(o, "device_name", rows[0].stats.device_name);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddNumberToObject(o, "prompt_len", c->L);
    cJSON_AddNumberToObject(o, "gen_len", c->G);
    cJSON_AddNumberToObject(o, "repeats", c->repeats);
    cJSON_AddNumberToObject(o, "warmup", c->warmup);
    cJSON_AddNumberToObject(o, "steps_per_sync", rows[0].stats.steps_per_sync);
    cJSON* g = cJSON_AddArrayToObject(o, "gpus"); // the devices timed at once (CUDA; [] on the CPU)
    for (int i = 0; rows[0].stats.device == ETX_DEVICE_CUDA && i < c->n_gpus; i++)
        cJSON_AddItemToArray(g, cJSON_CreateNumber(c->gpus[i]));
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
        cJSON_AddNumberToObject(x, "n_gpus", r->n_gpus);
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

// The lines above the table: model, device, sizes, hardware figures, bytes per step.
static void print_intro(FILE* tf, const BenchConfig* c, const etx_model_info* mi, const etx_engine_stats* probe,
                        int cpu_threads, const etx_hw_limits* hw) {
    if (probe->device == ETX_DEVICE_CUDA)
        fprintf(tf, "etx bench: %s (%.1f M parameters), device cuda (%s)", c->model_path, mi->n_params / 1e6,
                probe->device_name);
    else
        fprintf(tf, "etx bench: %s (%.1f M parameters), device cpu, %d threads", c->model_path, mi->n_params / 1e6,
                cpu_threads);
    if (c->n_gpus > 1)
        fprintf(tf, "\n%d devices at once, an engine each with `batch` requests: tok/s summed over them, ms/token "
                    "the slowest device's, the floors per device", c->n_gpus);
    fprintf(tf, "\nprompt %d tokens, %d generated per request (EOS ignored); median of %d runs after %d warm-up\n",
            c->L, c->G, c->repeats, c->warmup);
    fprintf(tf, "hardware: %.1f GB/s (%s), %.1f GFLOP/s (%s)\n", hw->mem_bandwidth / 1e9, hw->bandwidth_method,
            hw->gemm_flops / 1e9, hw->gemm_method);
    fprintf(tf, "decode reads %.1f MB of weights per step + %.1f KB of K/V per position per row\n\n",
            probe->weight_bytes / 1e6, probe->kv_bytes_per_position / 1e3);
    print_header(tf);
    fflush(tf);
}

// The JSON report to --json FILE (through FILE.tmp, renamed over FILE) or stdout (-).
static etx_status write_json(BenchConfig* c, const etx_model_info* mi, int cpu_threads, const etx_hw_limits* hw,
                             const BenchRow* rows, int n_rows) {
    cJSON* j = json_report(c, mi, cpu_threads, hw, rows, n_rows);
    char* text = cJSON_Print(j);
    cJSON_Delete(j);
    etx_status s = etx_ok();
    if (c->json_path) {
        FILE* jf = c->json ? c->json : stdout;
        fprintf(jf, "%s\n", text);
        if (c->json) {
            const int bad = ferror(c->json) | fclose(c->json);
            c->json = NULL;
            if (bad || rename(c->json_tmp, c->json_path) != 0)
                s = etx_error(ETX_ERR_IO, "error writing %s: %s", c->json_path, strerror(errno));
        }
    }
    free(text);
    return s;
}

// ----------------------------------------------------------------------------
// the command: parse, probe, time each batch size (its rows printed as they come), report

int cmd_bench(int argc, char** argv) {
    BenchConfig c;
    const int pr = bench_parse(argc, argv, &c);
    if (pr != CLI_CONTINUE) return pr;
    if (c.plan) return bench_plan(&c);
    int rc = 1;
    etx_model* m = NULL;
    if (cli_tp_check_model_path("bench", c.model_path, &c.eo) != 0) rc = CLI_EXIT_REFUSED;
    else m = cli_load_model(c.model_path, &rc);
    if (!m) {
        if (c.json) fclose(c.json), remove(c.json_tmp);
        return rc;
    }
    etx_model_info mi;
    etx_model_get_info(m, &mi);
    BenchSetup bs = {m, c.eo, c.L, c.G, mi.vocab_size, c.gpus, c.n_gpus};
    if (c.gpus_arg) cli_say_gpus("bench", c.gpus, c.n_gpus);
    BenchRow* rows = NULL;
    etx_engine_stats probe;
    etx_hw_limits hw;
    // refused before any work (exit 2): sizes the model cannot take, a --kv-blocks pool
    // beyond the memory (checked as an engine of context L + G)
    etx_status s = bench_check_model(&c, &mi);
    etx_engine_options run_eo = c.eo;
    run_eo.max_seq_len = c.L + c.G;
    if (s.code != ETX_OK || cli_engine_check_model("bench", m, &run_eo) != 0) {
        if (s.code != ETX_OK) cli_error("bench", s);
        if (c.json) fclose(c.json), remove(c.json_tmp);
        etx_model_free(m);
        return 2;
    }
    s = bench_probe(&c, &bs, &probe, &hw);
    if (s.code == ETX_OK) {
        FILE* tf = c.json_path && !strcmp(c.json_path, "-") ? stderr : stdout;
        // CPU threads in use (0 on CUDA)
        const int cpu_threads = probe.device == ETX_DEVICE_CPU
                                    ? (c.threads ? c.threads : (int)sysconf(_SC_NPROCESSORS_ONLN))
                                    : 0;
        print_intro(tf, &c, &mi, &probe, cpu_threads, &hw);
        rows = xcalloc((size_t)c.n_batches * c.n_kinds, sizeof(BenchRow));
        int n_rows = 0;
        for (int bi = 0; bi < c.n_batches && s.code == ETX_OK; bi++) {
            s = bench_time_batch(&bs, &c, &mi, &hw, c.batches[bi], rows + n_rows);
            if (s.code != ETX_OK) break;
            print_rows(tf, rows + n_rows, c.n_kinds);
            fflush(tf);
            n_rows += c.n_kinds;
        }
        if (s.code == ETX_OK) s = write_json(&c, &mi, cpu_threads, &hw, rows, n_rows);
    }
    if (s.code != ETX_OK) cli_error("bench", s);
    if (c.json) fclose(c.json);
    if (s.code != ETX_OK && c.json_tmp[0]) remove(c.json_tmp);
    free(rows);
    etx_model_free(m);
    if (s.code != ETX_OK) return 1;
    return cli_finish_stdout("bench");
}
