/*
 * test_bench.c — `etx bench`, run as a user runs it: options checked before any work
 * (each error names the option), an earlier --json file kept when a run fails, and the
 * JSON of a small CPU run (SmolLM2) whose figures are recomputed here from their
 * definitions (tokens/s from ms/token, the decode floor from bytes and bandwidth, the
 * prefill FLOPs from the model's shape, the policy share from the greedy row); the same
 * on the emulated CUDA backend when this build has it (tiny fixture model). The
 * exit_codes case: options refused with exit 2 (before the model loads, or after it for
 * sizes the model or memory cannot take), an unwritable --json failing with 1, a
 * --kv-blocks pool small enough to preempt, and `bench --plan` (the CUDA cost model)
 * following the A/B environment switches of benchmarks/gpu_check.sh.
 */
#include <check.h>
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "etx/etx.h"

#include "cli_run.h"

static Run run(const char* args) { return run_program(ETX_CLI, args, NULL); }

static cJSON* read_json(const char* path) {
    char* text = cli_slurp(path);
    cJSON* j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "%s is not JSON: %.300s", path, text);
    free(text);
    return j;
}

static double num(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "JSON key '%s' is not a number", key);
    return v->valuedouble;
}

static const char* str(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsString(v), "JSON key '%s' is not a string", key);
    return v->valuestring;
}

// The shape of the model at path (loaded and freed).
static etx_model_info model_info(const char* path) {
    etx_model* m = NULL;
    etx_status s = etx_model_load(path, &m);
    ck_assert_msg(s.code == ETX_OK, "%s", s.message);
    etx_model_info info;
    etx_model_get_info(m, &info);
    etx_model_free(m);
    return info;
}

#define CLOSE(a, b) (fabs((a) - (b)) <= 1e-6 * fabs(b) + 1e-9)

START_TEST(bad_options_are_named) {
    struct {
        const char* args;
        const char* expect;
    } cases[] = {
        {"bench --bogus", "unknown option '--bogus'"},
        {"bench --batch 0", "--batch '0': each entry must be an integer 1..4096"},
        {"bench --batch 1,,2", "--batch '1,,2'"},
        {"bench --batch 1,", "ends with a comma"},
        {"bench --batch 8x", "--batch '8x'"},
        {"bench --batch 5000", "1..4096"},
        {"bench --policy beam", "unknown policy 'beam'"},
        {"bench --policy greedy,greedy", "'greedy' is listed twice"},
        {"bench -g 1", "--gen-len >= 2"},
        {"bench -r 0", "--repeats 1..100"},
        {"bench -l abc", "--prompt-len expects an integer"},
        {"bench --device tpu", "unknown device 'tpu'"},
        // --threads, the KV pool: before the model loads
        {"bench -m /nonexistent/model.gguf --threads 100000", "--threads must be 0 (all CPUs) or 1.."},
        {"bench -m /nonexistent/model.gguf --kv-blocks -1", "--kv-blocks must be >= 1"},
        {"bench -m /nonexistent/model.gguf --kv-block-size 600", "--kv-block-size must be 1..512"},
        {"bench -m /nonexistent/model.gguf -l 100 -g 10 --kv-blocks 1 --kv-block-size 64",
         "a KV pool of 1 blocks (64 positions) cannot hold one request of --prompt-len 100 + --gen-len 10"},
        {"bench -m /nonexistent/model.gguf", "/nonexistent/model.gguf"},
        // after it loads: sizes the model or the memory cannot take
        {"bench -l 8190 -g 10", "--prompt-len 8190 + --gen-len 10 exceeds the model's context of 8192"},
        {"bench --kv-blocks 2000000000 --kv-block-size 512", "more than the"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Run r = run(cases[i].args);
        ck_assert_msg(r.status == 2, "%s: exit %d (stderr: %s)", cases[i].args, r.status, r.err);
        ck_assert_msg(strstr(r.err, cases[i].expect), "%s: stderr '%s' lacks '%s'", cases[i].args, r.err,
                      cases[i].expect);
        free_run(&r);
    }
}
END_TEST

// An output that cannot be written is a failed run (exit 1), found before any work.
START_TEST(unwritable_json_fails) {
    Run r = run("bench --json /nonexistent-dir/out.json");
    ck_assert_msg(r.status == 1, "exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "cannot write /nonexistent-dir/out.json"), "%s", r.err);
    free_run(&r);
}
END_TEST

// --kv-blocks reaches the runs: 3 blocks of 4 positions admit both prompts of 3 tokens
// (one block each) but not both requests grown to 9 positions (3 blocks each): one is
// preempted and recomputed.
START_TEST(small_kv_pool_preempts) {
    Run r = run("bench -t 1 -b 2 -l 3 -g 6 -r 1 --warmup 0 --quick-probe --policy greedy --kv-blocks 3 "
                "--kv-block-size 4 --json -");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON* j = cJSON_Parse(r.out);
    ck_assert_msg(j != NULL, "stdout is not JSON: %.300s", r.out);
    const cJSON* x = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "results"), 0);
    ck_assert_msg(num(x, "preemptions") > 0, "no preemption with a one-request pool");
    cJSON_Delete(j);
    free_run(&r);
}
END_TEST

START_TEST(failed_run_keeps_an_earlier_json) {
    char path[400], tmp[420], args[600];
    snprintf(path, sizeof path, "%s/keep.json", cli_run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"earlier\": 1}\n", f);
    fclose(f);
    // SmolLM2's context is 8192 positions: 8190 + 10 does not fit
    snprintf(args, sizeof args, "bench -l 8190 -g 10 -r 1 --json '%s'", path);
    Run r = run(args);
    ck_assert_msg(r.status == 2, "exit %d for a prompt past the context", r.status);
    ck_assert_msg(strstr(r.err, "--prompt-len 8190 + --gen-len 10 exceeds the model's context of 8192"), "%s", r.err);
    free_run(&r);
    char* kept = cli_slurp(path);
    ck_assert_str_eq(kept, "{\"earlier\": 1}\n");
    free(kept);
    ck_assert_msg(access(tmp, F_OK) != 0, "%s left behind", tmp);
}
END_TEST

// Checks one report: every figure against its definition. kv_expect: K/V bytes per
// position; info: the model's shape.
static void check_report(const cJSON* j, const etx_model_info* info, int L, int G, const int* batches, int n_batches,
                         const char** policies, int n_policies, const char* device, long long kv_expect) {
    ck_assert_int_eq((int)num(j, "etx_bench"), 1);
    ck_assert_str_eq(str(j, "device"), device);
    ck_assert_int_eq((int)num(j, "prompt_len"), L);
    ck_assert_int_eq((int)num(j, "gen_len"), G);
    ck_assert_int_eq((long long)num(j, "n_params"), info->n_params);
    ck_assert_int_eq((long long)num(j, "kv_bytes_per_position"), kv_expect);
    const double wb = num(j, "weight_bytes");
    const cJSON* hw = cJSON_GetObjectItemCaseSensitive(j, "hardware");
    ck_assert_ptr_nonnull(hw);
    const double bw = num(hw, "mem_bandwidth_bytes_s"), peak = num(hw, "gemm_flops_s");
    ck_assert_msg(bw > 1e6 && isfinite(bw), "bandwidth %g", bw);
    ck_assert_msg(peak > 1e6 && isfinite(peak), "GEMM rate %g", peak);
    const cJSON* res = cJSON_GetObjectItemCaseSensitive(j, "results");
    ck_assert_int_eq(cJSON_GetArraySize(res), n_batches * n_policies);
    // prefill FLOPs from the model's shape: projections, causal attention, one LM head row
    const double dim = info->dim, qd = (double)info->n_heads * info->head_dim,
                 kvd = (double)info->n_kv_heads * info->head_dim;
    const double proj_params = info->n_layers * (dim * qd * 2 + dim * kvd * 2 + 3 * dim * info->hidden_dim);
    int i = 0;
    double greedy_ms = 0;
    for (int b = 0; b < n_batches; b++)
        for (int p = 0; p < n_policies; p++, i++) {
            const cJSON* x = cJSON_GetArrayItem(res, i);
            const int B = batches[b];
            ck_assert_int_eq((int)num(x, "batch"), B);
            ck_assert_str_eq(str(x, "policy"), policies[p]);
            const double ms = num(x, "ms_per_token"), dec = num(x, "decode_tok_s"), pre = num(x, "prefill_tok_s");
            ck_assert_msg(ms > 0 && isfinite(ms) && pre > 0 && isfinite(pre), "row %d: ms %g prefill %g", i, ms, pre);
            ck_assert_msg(CLOSE(dec, 1e3 * B / ms), "row %d: decode %g tok/s vs %g ms/token at batch %d", i, dec, ms, B);
            const double floor_ms = 1e3 * (wb + (double)B * kv_expect * (L + G / 2.0)) / bw;
            ck_assert_msg(CLOSE(num(x, "decode_floor_ms"), floor_ms), "row %d: floor %g, expected %g", i,
                          num(x, "decode_floor_ms"), floor_ms);
            ck_assert_msg(CLOSE(num(x, "decode_floor_fraction"), floor_ms / ms), "row %d: floor fraction", i);
            const double flops = B * (2.0 * proj_params * L + 4.0 * info->n_layers * qd * L * (L + 1) / 2.0 +
                                      2.0 * info->vocab_size * dim);
            ck_assert_msg(CLOSE(num(x, "prefill_flops"), flops), "row %d: prefill FLOPs %g, expected %g", i,
                          num(x, "prefill_flops"), flops);
            // prefill seconds = B L / prefill tok/s
            ck_assert_msg(CLOSE(num(x, "prefill_peak_fraction"), flops / peak / (B * L / pre)), "row %d: peak fraction",
                          i);
            ck_assert_msg(num(x, "peak_rss_bytes") > 1e6, "row %d: peak RSS %g", i, num(x, "peak_rss_bytes"));
            ck_assert_int_eq((int)num(x, "preemptions"), 0);
            const cJSON* share = cJSON_GetObjectItemCaseSensitive(x, "policy_share");
            if (!strcmp(policies[p], "greedy")) {
                greedy_ms = ms;
                ck_assert_msg(cJSON_IsNumber(share) && share->valuedouble == 0, "row %d: greedy share", i);
            } else {
                ck_assert_msg(cJSON_IsNumber(share), "row %d: no policy share beside greedy", i);
                ck_assert_msg(CLOSE(share->valuedouble, 1.0 - greedy_ms / ms), "row %d: share %g", i, share->valuedouble);
            }
        }
}

START_TEST(cpu_report_matches_its_definitions) {
    const etx_model_info info = model_info(ETX_DEFAULT_MODEL);
    char path[400], args[700];
    snprintf(path, sizeof path, "%s/cpu.json", cli_run_dir);
    snprintf(args, sizeof args,
             "bench -t 2 -b 1,3 -l 9 -g 3 -r 1 --warmup 0 --quick-probe --policy greedy,entropix --json '%s'", path);
    Run r = run(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    // the table: a header and one row per (batch, policy)
    ck_assert_msg(strstr(r.out, "| batch | policy | prefill tok/s | decode tok/s | ms/token |"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "| 3 | entropix |"), "%s", r.out);
    free_run(&r);
    cJSON* j = read_json(path);
    const int batches[] = {1, 3};
    const char* policies[] = {"greedy", "entropix"};
    check_report(j, &info, 9, 3, batches, 2, policies, 2, "cpu",
                 2LL * info.n_layers * info.n_kv_heads * info.head_dim * 4);
    // the CPU streams SmolLM2's compact Q4_1/Q8_0 blocks: between 4 and 8.5 bits per weight
    const double wb = num(j, "weight_bytes");
    ck_assert_msg(wb > info.n_params * 0.5 * 0.9 && wb < info.n_params * 1.07, "weight bytes %g for %lld parameters",
                  wb, info.n_params);
    ck_assert_int_eq((int)num(j, "threads"), 2);
    ck_assert_int_eq((int)num(j, "steps_per_sync"), 1);
    cJSON_Delete(j);
    // --json -: the JSON alone on stdout, the table on stderr
    r = run("bench -t 2 -b 2 -l 4 -g 2 -r 1 --warmup 0 --quick-probe --policy sample --json -");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    j = cJSON_Parse(r.out);
    ck_assert_msg(j != NULL, "stdout is not JSON: %.300s", r.out);
    const cJSON* x = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "results"), 0);
    ck_assert_str_eq(str(x, "policy"), "sample");
    ck_assert_msg(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(x, "policy_share")), "a share without greedy");
    ck_assert_msg(strstr(r.err, "| 2 | sample |"), "%s", r.err);
    cJSON_Delete(j);
    free_run(&r);
}
END_TEST

START_TEST(emulated_cuda_report) {
#ifdef ETX_CLI_EMU
    const char* model = ETX_FIXTURES "/models/tiny-llama-gqa";
    const etx_model_info info = model_info(model);
    char path[400], args[900];
    snprintf(path, sizeof path, "%s/cuda.json", cli_run_dir);
    snprintf(args, sizeof args,
             "bench -m '%s' --device cuda -b 1,3 -l 6 -g 3 -r 1 --warmup 0 --quick-probe --policy greedy,sample "
             "--json '%s'", model, path);
    Run r = run_program(ETX_CLI_EMU, args, NULL);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    free_run(&r);
    cJSON* j = read_json(path);
    const int batches[] = {1, 3};
    const char* policies[] = {"greedy", "sample"};
    // the device keeps K/V in bf16, heads padded to the kernels' 64
    const int hdp = info.head_dim <= 64 ? 64 : 128;
    check_report(j, &info, 6, 3, batches, 2, policies, 2, "cuda", 2LL * info.n_layers * info.n_kv_heads * hdp * 2);
    const cJSON* x = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "results"), 0);
    ck_assert_msg(num(x, "device_bytes") > num(j, "weight_bytes"), "device memory %g below the weights %g",
                  num(x, "device_bytes"), num(j, "weight_bytes"));
    ck_assert_int_eq((int)num(j, "steps_per_sync"), 8);
    cJSON_Delete(j);
#else
    fprintf(stderr, "test_bench: no emulated CUDA backend in this build; skipped\n");
#endif
}
END_TEST

// `etx bench --plan` (the CUDA cost model, no device needed) follows the A/B switches of
// benchmarks/gpu_check.sh the way their kernels say: ETX_FUSE=0 puts the norms (and RoPE)
// back into launches of their own, at batch 1 and at 256 (where the O and down
// projections' split reduce did the norm); ETX_TC_WARPS=8 gives the batch-1 down
// projection 8-warp blocks (slower in the model, the same launches); ETX_PREFETCH=0 drops
// the batch-1 projections' L2 prefetch (slower at batch 1, nothing at 256); ETX_PDL=0 charges
// more per launch; ETX_GEMM_TILED=0 keeps the large batch off the tiled kernel (and so
// off the split reduce: the norms are launches again). A bad value fails, naming the
// variable.
static double plan_ms(const char* env, int batch, int* launches) {
    char prefix[64], args[300];
    snprintf(prefix, sizeof prefix, "env %s", env);
    snprintf(args, sizeof args, "bench --plan --shape llama-3.2-1b -l 128 -g 64 --policy greedy --card h100 --batch %d",
             batch);
    Run r = run_prefixed(prefix, ETX_CLI, args, NULL);
    ck_assert_msg(r.status == 0, "%s etx %s: exit %d: %s", env, args, r.status, r.err);
    const char* line = strstr(r.out, "predicted ");
    double ms = 0;
    ck_assert_msg(line && sscanf(line, "predicted %lf ms per step", &ms) == 1, "no prediction in: %.400s", r.out);
    const char* l = strstr(line, "% of the floor, ");
    ck_assert_msg(l && sscanf(l, "%% of the floor, %d kernel launches", launches) == 1, "no launch count: %.300s", line);
    free_run(&r);
    return ms;
}

START_TEST(plan_follows_the_switches) {
    int l1 = 0, l256 = 0, k = 0;
    const double d1 = plan_ms("ETX_X=1", 1, &l1), d256 = plan_ms("ETX_X=1", 256, &l256);
    double ms = plan_ms("ETX_FUSE=0", 1, &k);
    ck_assert_msg(k > l1 && ms > d1, "ETX_FUSE=0 at batch 1: %d launches %.3f ms (default %d, %.3f)", k, ms, l1, d1);
    ms = plan_ms("ETX_FUSE=0", 256, &k);
    ck_assert_msg(k == l256 + 2 * 16 + 16, "ETX_FUSE=0 at batch 256: %d launches (default %d)", k, l256);
    ms = plan_ms("ETX_TC_WARPS=8", 1, &k);
    ck_assert_msg(k == l1 && ms > d1, "ETX_TC_WARPS=8 at batch 1: %d launches %.3f ms (default %d, %.3f)", k, ms, l1, d1);
    ms = plan_ms("ETX_TC_WARPS=8", 256, &k);
    ck_assert_msg(k == l256 && ms == d256, "ETX_TC_WARPS=8 at batch 256 (no 8-row calls): %.3f ms (default %.3f)", ms,
                  d256);
    ms = plan_ms("ETX_PREFETCH=0", 1, &k);
    ck_assert_msg(k == l1 && ms > d1, "ETX_PREFETCH=0 at batch 1: %.3f ms (default %.3f)", ms, d1);
    ms = plan_ms("ETX_PREFETCH=0", 256, &k);
    ck_assert_msg(k == l256 && ms == d256, "ETX_PREFETCH=0 at batch 256 (no prefetch): %.3f ms (default %.3f)", ms,
                  d256);
    ms = plan_ms("ETX_PDL=0", 1, &k);
    ck_assert_msg(k == l1 && ms > d1, "ETX_PDL=0 at batch 1: %.3f ms (default %.3f)", ms, d1);
    ms = plan_ms("ETX_GEMM_TILED=0", 256, &k);
    // no split: the QKV, O and down projections lose their reduce launch (3 a layer), the
    // norms come back (2 a layer)
    ck_assert_msg(k == l256 - 16 && ms > d256, "ETX_GEMM_TILED=0 at batch 256: %d launches %.3f ms (default %d, %.3f)",
                  k, ms, l256, d256);
    static const char* bad[] = {"ETX_FUSE=2", "ETX_TC_WARPS=9", "ETX_GEMM_TILED=x", "ETX_PREFETCH=yes"};
    for (int i = 0; i < 4; i++) {
        char prefix[64], name[32];
        snprintf(prefix, sizeof prefix, "env %s", bad[i]);
        snprintf(name, sizeof name, "%s", bad[i]);
        *strchr(name, '=') = 0;
        Run r = run_prefixed(prefix, ETX_CLI, "bench --plan --shape llama-3.2-1b --batch 1,256", NULL);
        ck_assert_msg(r.status != 0 && strstr(r.err, name), "%s: exit %d, stderr %.300s", bad[i], r.status, r.err);
        free_run(&r);
    }
}
END_TEST

int main(void) {
    if (cli_run_setup("/tmp/etx_test_bench_XXXXXX") != 0) return EXIT_FAILURE;
    Suite* s = suite_create("bench");
    TCase* tc = tcase_create("bench");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, failed_run_keeps_an_earlier_json);
    tcase_add_test(tc, cpu_report_matches_its_definitions);
    tcase_add_test(tc, emulated_cuda_report);
    suite_add_tcase(s, tc);
    TCase* ex = tcase_create("exit_codes");
    tcase_set_timeout(ex, 600);
    tcase_add_test(ex, bad_options_are_named);
    tcase_add_test(ex, unwritable_json_fails);
    tcase_add_test(ex, small_kv_pool_preempts);
    tcase_add_test(ex, plan_follows_the_switches);
    suite_add_tcase(s, ex);
    const int rc = check_run_suite_nofork(s); // the suites start programs: no fork on top of them
    cli_run_cleanup();
    return rc;
}
