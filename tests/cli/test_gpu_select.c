/*
 * test_gpu_select.c — which GPU each process runs on (issue "Multi-GPU", part 1), with
 * several emulated devices (SIMT_DEVICE_COUNT) and the emulated-CUDA etx (etx_emu), on the
 * tiny fixture model:
 *   - --gpu N runs on device N (the engine's current device, as --stats reports it);
 *   - under a launcher each rank takes its node-local rank modulo the devices and says so
 *     (the local-rank variables faked, then a real `mpirun -np 2`, whose merged output
 *     equals one process's; and 2 ranks x --tp 2 on 4 devices, equal to one device);
 *   - refused before the model is loaded (exit 2): --gpu past the devices, --gpu that is
 *     not a number, --gpu on the CPU, more ranks on a node than devices without
 *     --share-gpus (which allows it);
 *   - --gpus (part 2): one engine per listed device in one process; eval, sweep and
 *     calibrate write the same bytes as one device, bench sums the devices' rows; bad lists, --gpus with
 *     --gpu, on the CPU or under several local ranks refused before the model loads;
 *   - --tp (part 3): greedy tokens with --tp 2 and 4 equal one device's on the
 *     tensor-parallel fixture; a rank takes its group of devices; --tp not dividing the
 *     heads (read from the configuration before the model loads), past the devices, on
 *     the CPU or with --gpus refused (exit 2);
 *   - the GEMM path by ETX_GEMM (kernels/gemm.h): cuda-cores, tensor-cores and auto run;
 *     any other value is an error that names the variable and the values it takes.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#include "cli_run.h"

#define MODEL ETX_FIXTURES "/models/tiny-llama-gqa"
#define SAMPLE ETX_FIXTURES "/eval/gsm8k_sample.jsonl"

#ifdef ETX_CLI_EMU
// etx_emu with environment env (a shell fragment of VAR=value words) and args.
static Run emu(const char* env, const char* args) {
    char prefix[512];
    snprintf(prefix, sizeof prefix, "env %s", env);
    return run_prefixed(prefix, ETX_CLI_EMU, args, NULL);
}

static void expect(Run r, int status, const char* says) {
    ck_assert_msg(r.status == status, "exit %d, want %d\n%s", r.status, status, r.err);
    ck_assert_msg(strstr(r.err, says) != NULL, "stderr does not say '%s':\n%s", says, r.err);
    free_run(&r);
}

// etx_emu with env and args, which must exit 0.
static void emu_ok(const char* env, const char* args) {
    Run r = emu(env, args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    free_run(&r);
}

// The two files hold the same bytes, and not none.
static void same_files(const char* p, const char* q) {
    char* a = cli_slurp(p);
    char* b = cli_slurp(q);
    ck_assert_msg(a && b && strlen(a) > 0, "%s: nothing written", p);
    ck_assert_str_eq(a, b);
    free(a), free(b);
}

// etx_emu under `mpirun -np 2` with `devices` emulated devices on the node.
static Run mpirun_emu(int devices, const char* args) {
    char prefix[512];
    snprintf(prefix, sizeof prefix,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 SIMT_DEVICE_COUNT=%d "
             "ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe -x ASAN_OPTIONS "
             "-x SIMT_DEVICE_COUNT -np 2", devices);
    return run_prefixed(prefix, ETX_CLI_EMU, args, NULL);
}
#endif

START_TEST(gpu_flag_picks_the_device) {
#ifdef ETX_CLI_EMU
    const char* gen = "generate -m '" MODEL "' --device cuda -p 'Hello there' -n 3 --threads 1 --stats";
    char args[1024];
    snprintf(args, sizeof args, "%s --gpu 2", gen);
    Run r = emu("SIMT_DEVICE_COUNT=3", args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "runs on cuda:2") && strstr(r.err, "device SIMT emulator (device 2)"),
                  "not on device 2:\n%s", r.err);
    char* on2 = xstrdup(r.out);
    free_run(&r);
    // the same tokens as on device 0 (the devices are the same hardware)
    r = emu("SIMT_DEVICE_COUNT=3", gen);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_str_eq(r.out, on2);
    ck_assert_msg(!strstr(r.err, "runs on cuda:"), "a plain run names its device:\n%s", r.err); // nothing to say
    free_run(&r);
    free(on2);
#else
    fprintf(stderr, "test_gpu_select: no etx_emu in this build: skipped\n");
#endif
}
END_TEST

START_TEST(node_local_rank_picks_the_device) {
#ifdef ETX_CLI_EMU
    const char* gen = "generate -m '" MODEL "' --device cuda -p 'Hello' -n 2 --threads 1";
    static const struct {
        const char* env;
        const char* says;
    } ok[] = {
        {"SIMT_DEVICE_COUNT=2 OMPI_COMM_WORLD_LOCAL_RANK=1 OMPI_COMM_WORLD_LOCAL_SIZE=2",
         "rank 1 of 2 on this node runs on cuda:1"},
        {"SIMT_DEVICE_COUNT=4 MPI_LOCALRANKID=2 MPI_LOCALNRANKS=3", "rank 2 of 3 on this node runs on cuda:2"},
        {"SIMT_DEVICE_COUNT=2 SLURM_LOCALID=0 SLURM_NTASKS_PER_NODE=2", "rank 0 of 2 on this node runs on cuda:0"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) expect(emu(ok[i].env, gen), 0, ok[i].says);
    // more ranks than devices: refused, unless sharing is allowed (rank 3 -> 3 % 2)
    expect(emu("SIMT_DEVICE_COUNT=2 OMPI_COMM_WORLD_LOCAL_RANK=3 OMPI_COMM_WORLD_LOCAL_SIZE=4", gen), 2,
           "4 ranks on this node but 2 CUDA devices");
    char args[1024];
    snprintf(args, sizeof args, "%s --share-gpus", gen);
    expect(emu("SIMT_DEVICE_COUNT=2 OMPI_COMM_WORLD_LOCAL_RANK=3 OMPI_COMM_WORLD_LOCAL_SIZE=4", args), 0,
           "rank 3 of 4 on this node runs on cuda:1");
    // --gpu wins over the rank
    snprintf(args, sizeof args, "%s --gpu 0", gen);
    expect(emu("SIMT_DEVICE_COUNT=2 OMPI_COMM_WORLD_LOCAL_RANK=1 OMPI_COMM_WORLD_LOCAL_SIZE=2", args), 0,
           "rank 1 of 2 on this node runs on cuda:0");
#endif
}
END_TEST

START_TEST(bad_gpu_refused_before_loading) {
#ifdef ETX_CLI_EMU
    // a model path that does not exist: a refusal that names the GPU came before the load
    const char* gen = "generate -m /nonexistent/model --device cuda -p hi -n 2";
    char args[1024];
    snprintf(args, sizeof args, "%s --gpu 2", gen);
    expect(emu("SIMT_DEVICE_COUNT=2", args), 2, "--gpu 2: this process sees 2 CUDA devices (0..1)");
    snprintf(args, sizeof args, "%s --gpu one", gen);
    expect(emu("SIMT_DEVICE_COUNT=2", args), 2, "--gpu one: this process sees 2 CUDA devices");
    snprintf(args, sizeof args, "%s --gpu -1", gen);
    expect(emu("SIMT_DEVICE_COUNT=2", args), 2, "--gpu -1");
    expect(emu("SIMT_DEVICE_COUNT=1", "eval --data '" SAMPLE "' --out /tmp/never.jsonl -m /nonexistent/model "
                                      "--device cpu --gpu 0"),
           2, "--gpu 0 asks for a CUDA device, but this run is on the cpu");
#endif
    // the CPU-only etx refuses it too
    Run r = run_program(ETX_CLI, "generate -m /nonexistent/model --device cpu -p hi --gpu 1", NULL);
    ck_assert_msg(r.status == 2 && strstr(r.err, "asks for a CUDA device"), "exit %d\n%s", r.status, r.err);
    free_run(&r);
}
END_TEST

// --gpus (part 2): one engine per listed device in one process; eval's and sweep's output
// byte-identical to one device's (job j runs on engine j % devices, lines merged in job
// order), bench's rows summed over the devices.
START_TEST(gpus_spread_requests_same_bytes) {
#ifdef ETX_CLI_EMU
    char data[300], one[300], three[300], common[800], args[2400];
    cli_tmp_path(data, sizeof data, "gpus.jsonl"); // 7 prompts: engines 0 and 1 get three, engine 2 one
    cli_write_text(data, "{\"id\": 1, \"prompt\": \"One apple and two pears\"}\n"
                         "{\"id\": 2, \"prompt\": \"The capital of France\"}\n"
                         "{\"id\": 3, \"prompt\": \"Seven times six is\"}\n"
                         "{\"id\": 4, \"prompt\": \"Once upon a time\"}\n"
                         "{\"id\": 5, \"prompt\": \"Rain in Spain\"}\n"
                         "{\"id\": 6, \"prompt\": \"Two plus two\"}\n"
                         "{\"id\": 7, \"prompt\": \"Hello\"}\n");
    cli_tmp_path(one, sizeof one, "gpus_one.jsonl");
    cli_tmp_path(three, sizeof three, "gpus_three.jsonl");
    snprintf(common, sizeof common,
             "eval -m '" MODEL "' --device cuda --data '%s' -n 5 --threads 1 --batch 2 --policy sample --seed 7",
             data);
    snprintf(args, sizeof args, "%s --out '%s'", common, one);
    emu_ok("SIMT_DEVICE_COUNT=3", args);
    snprintf(args, sizeof args, "%s --out '%s' --gpus all", common, three);
    Run r = emu("SIMT_DEVICE_COUNT=3", args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "3 engines, on cuda:0 (SIMT emulator), cuda:1 (SIMT emulator (device 1)), cuda:2 "
                                "(SIMT emulator (device 2))"),
                  "the engines are not named:\n%s", r.err);
    ck_assert_msg(strstr(r.err, "7 requests run"), "not every request ran:\n%s", r.err);
    free_run(&r);
    char* a = cli_slurp(one);
    int lines = 0;
    for (const char* c = a; *c; c++) lines += *c == '\n';
    ck_assert_int_eq(lines, 7);
    free(a);
    same_files(one, three);
    // a subset in another order (2,0): the same bytes again
    snprintf(args, sizeof args, "%s --out '%s' --gpus 2,0", common, three);
    remove(three);
    r = emu("SIMT_DEVICE_COUNT=3", args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "2 engines, on cuda:2 (SIMT emulator (device 2)), cuda:0"), "%s", r.err);
    free_run(&r);
    same_files(one, three);
    // a sweep over two devices: its lines equal one device's
    char dir1[300], dir2[300], grid[300], sw[900];
    cli_tmp_path(dir1, sizeof dir1, "sweep1");
    cli_tmp_path(dir2, sizeof dir2, "sweep2");
    cli_tmp_path(grid, sizeof grid, "grid.json");
    cli_write_text(grid, "{\"policy\": \"sample\", \"grid\": {\"temperature\": [0.5, 1.0]}}");
    snprintf(sw, sizeof sw, "sweep -m '" MODEL "' --device cuda -n 3 --threads 1 --batch 3 --grid '%s'", grid);
    snprintf(args, sizeof args, "%s --data '%s' --out '%s'", sw, data, dir1);
    emu_ok("SIMT_DEVICE_COUNT=2", args);
    snprintf(args, sizeof args, "%s --data '%s' --out '%s' --gpus 0,1", sw, data, dir2);
    emu_ok("SIMT_DEVICE_COUNT=2", args);
    char p1[400], p2[400];
    snprintf(p1, sizeof p1, "%s/completions.jsonl", dir1);
    snprintf(p2, sizeof p2, "%s/completions.jsonl", dir2);
    same_files(p1, p2);
    // calibrate: the signals collected on two engines give the same policy file and table
    char c1[300], c2[300], t1[300], t2[300], cal[1600];
    cli_tmp_path(c1, sizeof c1, "cal1.json");
    cli_tmp_path(c2, sizeof c2, "cal2.json");
    cli_tmp_path(t1, sizeof t1, "cal1.md");
    cli_tmp_path(t2, sizeof t2, "cal2.md");
    snprintf(cal, sizeof cal, "calibrate -m '" MODEL "' --device cuda --data '%s' -n 5 --threads 1 --batch 2", data);
    snprintf(args, sizeof args, "%s --out '%s' --table '%s'", cal, c1, t1);
    emu_ok("SIMT_DEVICE_COUNT=2", args);
    snprintf(args, sizeof args, "%s --out '%s' --table '%s' --gpus all", cal, c2, t2);
    emu_ok("SIMT_DEVICE_COUNT=2", args);
    same_files(c1, c2);
    same_files(t1, t2);
    // bench: every device runs `batch` requests at once; the JSON lists them
    char bj[300];
    cli_tmp_path(bj, sizeof bj, "gpus_bench.json");
    snprintf(args, sizeof args,
             "bench -m '" MODEL "' --device cuda --gpus 1,0 -b 2 -l 6 -g 3 -r 1 --warmup 0 --quick-probe "
             "--policy greedy --json '%s'", bj);
    emu_ok("SIMT_DEVICE_COUNT=2", args);
    char* j = cli_slurp(bj);
    ck_assert_msg(j && strstr(j, "\"n_gpus\":\t2") && strstr(j, "\"gpus\":\t[1, 0]"), "%s", j ? j : "(none)");
    free(j);
#endif
}
END_TEST

START_TEST(bad_gpus_refused_before_loading) {
#ifdef ETX_CLI_EMU
    const char* ev = "eval --data '" SAMPLE "' --out /tmp/never.jsonl -m /nonexistent/model --device cuda";
    static const struct {
        const char* env;
        const char* flags;
        const char* says;
    } bad[] = {
        {"SIMT_DEVICE_COUNT=2", "--gpus 0,2", "--gpus 0,2: device 2 is not there; this process sees 2 CUDA devices"},
        {"SIMT_DEVICE_COUNT=2", "--gpus 1,1", "--gpus 1,1: device 1 is listed twice"},
        {"SIMT_DEVICE_COUNT=2", "--gpus zero", "--gpus 'zero': expected 'all' or device ids"},
        {"SIMT_DEVICE_COUNT=2", "--gpus 0,", "--gpus '0,': expected 'all' or device ids"},
        {"SIMT_DEVICE_COUNT=2", "--gpus -1", "--gpus '-1': expected"},
        {"SIMT_DEVICE_COUNT=2", "--gpus 0,1 --gpu 1", "--gpu 1 and --gpus 0,1: give one of them"},
        {"SIMT_DEVICE_COUNT=2 OMPI_COMM_WORLD_LOCAL_RANK=0 OMPI_COMM_WORLD_LOCAL_SIZE=2", "--gpus all",
         "--gpus runs several devices in one process, but 2 ranks run on this node"},
    };
    char args[1200];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "%s %s", ev, bad[i].flags);
        expect(emu(bad[i].env, args), 2, bad[i].says);
    }
    expect(emu("SIMT_DEVICE_COUNT=2", "eval --data '" SAMPLE "' --out /tmp/never.jsonl -m /nonexistent/model "
                                      "--device cpu --gpus all"),
           2, "--gpus all asks for CUDA devices, but this run is on the cpu");
    expect(emu("SIMT_DEVICE_COUNT=2", "bench -m /nonexistent/model --device cuda --gpus 0,5"), 2,
           "device 5 is not there");
#endif
    Run r = run_program(ETX_CLI, "eval --data '" SAMPLE "' --out /tmp/never.jsonl -m /nonexistent/model --device cpu --gpus 0", NULL);
    ck_assert_msg(r.status == 2 && strstr(r.err, "asks for CUDA devices"), "exit %d\n%s", r.status, r.err);
    free_run(&r);
}
END_TEST

// --tp (parts 3 and 5): the model split across devices from the command line; greedy
// tokens equal one device's on the tensor-parallel fixture; ranks take groups of devices;
// refusals before any engine runs.
START_TEST(tp_from_the_command_line) {
#ifdef ETX_CLI_EMU
    const char* gen = "generate -m '" ETX_FIXTURES "/models/tiny-llama-tp' --device cuda -p 'Hello there' -n 6 "
                      "--threads 1 --policy greedy";
    char args[1024];
    Run r = emu("SIMT_DEVICE_COUNT=4", gen);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    char* one = xstrdup(r.out);
    free_run(&r);
    snprintf(args, sizeof args, "%s --tp 2", gen);
    r = emu("SIMT_DEVICE_COUNT=4", args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "runs on cuda:0..1") && strstr(r.err, "--tp 2"), "%s", r.err);
    ck_assert_str_eq(r.out, one);
    free_run(&r);
    snprintf(args, sizeof args, "%s --tp 4", gen);
    r = emu("SIMT_DEVICE_COUNT=4", args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_str_eq(r.out, one);
    free_run(&r);
    free(one);
    // two ranks on a node of 4 devices, --tp 2: rank 1 takes devices 2 and 3
    snprintf(args, sizeof args, "%s --tp 2", gen);
    expect(emu("SIMT_DEVICE_COUNT=4 OMPI_COMM_WORLD_LOCAL_RANK=1 OMPI_COMM_WORLD_LOCAL_SIZE=2", args), 0,
           "rank 1 of 2 on this node runs on cuda:2..3");
    // refused (exit 2)
    expect(emu("SIMT_DEVICE_COUNT=4 OMPI_COMM_WORLD_LOCAL_RANK=0 OMPI_COMM_WORLD_LOCAL_SIZE=3", args), 2,
           "3 ranks on this node with --tp 2 need 6 CUDA devices, but there are 4");
    snprintf(args, sizeof args, "%s --tp 3", gen);
    expect(emu("SIMT_DEVICE_COUNT=4", args), 2, "--tp 3 does not divide the model: its 8 query heads, 4 KV heads");
    snprintf(args, sizeof args, "%s --tp 2 --gpu 3", gen);
    expect(emu("SIMT_DEVICE_COUNT=4", args), 2, "--tp 2 from cuda:3 needs devices 3..4, but this process sees 4");
    // the same from a GGUF file's metadata (tiny-qwen3: 4 query, 2 KV heads)
    expect(emu("SIMT_DEVICE_COUNT=4", "generate -m '" ETX_FIXTURES "/models/tiny-qwen3.gguf' --device cuda -p hi "
                                      "--tp 4"),
           2, "--tp 4 does not divide the model: its 4 query heads, 2 KV heads and 128 hidden units");
    // before the model is read: a path that does not exist is never reached
    expect(emu("SIMT_DEVICE_COUNT=2", "generate -m /nonexistent/model --device cuda -p hi --tp 4"), 2,
           "--tp 4 from cuda:0 needs devices 0..3, but this process sees 2");
    expect(emu("SIMT_DEVICE_COUNT=2", "generate -m /nonexistent/model --device cpu -p hi --tp 2"), 2,
           "--tp 2 splits the model across CUDA devices, but this run is on the cpu");
    expect(emu("SIMT_DEVICE_COUNT=2", "eval --data '" SAMPLE "' --out /tmp/never.jsonl -m /nonexistent/model "
                                      "--device cuda --tp 2 --gpus all"),
           2, "--tp with --gpus is not supported");
    expect(emu("SIMT_DEVICE_COUNT=2", "generate -m /nonexistent/model --device cuda -p hi --tp 100"), 2,
           "--tp must be 1..64");
#endif
}
END_TEST

START_TEST(gemm_path_env) {
#ifdef ETX_CLI_EMU
    const char* gen = "generate -m '" MODEL "' --device cuda -p 'Hello' -n 2 --threads 1";
    static const char* ok[] = {"ETX_GEMM=cuda-cores", "ETX_GEMM=tensor-cores", "ETX_GEMM=auto"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        Run r = emu(ok[i], gen);
        ck_assert_msg(r.status == 0, "%s: exit %d\n%s", ok[i], r.status, r.err);
        free_run(&r);
    }
    expect(emu("ETX_GEMM=tensor", gen), 1, "ETX_GEMM=tensor: expected cuda-cores, tensor-cores or auto");
#endif
}
END_TEST

START_TEST(mpirun_ranks_take_their_own_devices) {
#ifdef ETX_CLI_EMU
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        fprintf(stderr, "test_gpu_select: SKIPPED mpirun_ranks_take_their_own_devices: mpirun is not installed\n");
        return;
    }
    char data[300], one[300], two[300], common[800], args[2400];
    cli_tmp_path(data, sizeof data, "short.jsonl"); // prompts that fit the tiny model's 128 positions
    cli_write_text(data, "{\"id\": 1, \"prompt\": \"One apple and two pears\"}\n"
                         "{\"id\": 2, \"prompt\": \"The capital of France\"}\n"
                         "{\"id\": 3, \"prompt\": \"Seven times six is\"}\n"
                         "{\"id\": 4, \"prompt\": \"Once upon a time\"}\n");
    cli_tmp_path(one, sizeof one, "one.jsonl");
    cli_tmp_path(two, sizeof two, "two.jsonl");
    snprintf(common, sizeof common, "eval -m '" MODEL "' --device cuda --data '%s' -n 4 --threads 1", data);
    snprintf(args, sizeof args, "%s --out '%s'", common, one);
    emu_ok("SIMT_DEVICE_COUNT=2", args);
    snprintf(args, sizeof args, "%s --out '%s'", common, two);
    Run r = mpirun_emu(2, args);
    ck_assert_msg(r.status == 0, "mpirun: exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "rank 0 of 2 on this node runs on cuda:0") &&
                      strstr(r.err, "rank 1 of 2 on this node runs on cuda:1"),
                  "the ranks do not say their devices:\n%s", r.err);
    free_run(&r);
    char* a = cli_slurp(one);
    int lines = 0;
    for (const char* c = a; *c; c++) lines += *c == '\n';
    ck_assert_int_eq(lines, 4);
    free(a);
    same_files(one, two); // the merged file is one process's
    // data parallel over tensor parallel: 2 ranks x --tp 2 on 4 devices, the tensor-parallel
    // fixture; rank 1 takes devices 2 and 3, and the merged greedy output equals one
    // process on one device (the margins allow it on these prompts)
    char tp1[300], tp4[300];
    cli_tmp_path(tp1, sizeof tp1, "tp_one.jsonl");
    cli_tmp_path(tp4, sizeof tp4, "tp_mpirun.jsonl");
    snprintf(common, sizeof common,
             "eval -m '" ETX_FIXTURES "/models/tiny-llama-tp' --device cuda --data '%s' -n 4 --threads 1 "
             "--policy greedy", data);
    snprintf(args, sizeof args, "%s --out '%s'", common, tp1);
    emu_ok("SIMT_DEVICE_COUNT=4", args);
    snprintf(args, sizeof args, "%s --out '%s' --tp 2", common, tp4);
    r = mpirun_emu(4, args);
    ck_assert_msg(r.status == 0, "mpirun --tp 2: exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "rank 0 of 2 on this node runs on cuda:0..1") &&
                      strstr(r.err, "rank 1 of 2 on this node runs on cuda:2..3"),
                  "the ranks do not say their devices:\n%s", r.err);
    free_run(&r);
    same_files(tp1, tp4);
#endif
}
END_TEST

int main(void) {
    if (cli_run_setup("/tmp/etx_test_gpu_select_XXXXXX") != 0) return EXIT_FAILURE;
    Suite* s = suite_create("gpu_select");
    TCase* tc = tcase_create("gpu_select");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gpu_flag_picks_the_device);
    tcase_add_test(tc, node_local_rank_picks_the_device);
    tcase_add_test(tc, bad_gpu_refused_before_loading);
    tcase_add_test(tc, gpus_spread_requests_same_bytes);
    tcase_add_test(tc, bad_gpus_refused_before_loading);
    tcase_add_test(tc, tp_from_the_command_line);
    tcase_add_test(tc, gemm_path_env);
    tcase_add_test(tc, mpirun_ranks_take_their_own_devices);
    suite_add_tcase(s, tc);
    const int rc = check_run_suite(s);
    cli_run_cleanup();
    return rc;
}
