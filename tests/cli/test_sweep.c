/*
 * test_sweep.c — `etx sweep` run as a user runs it, on the default model with the GSM8K
 * fixture (--limit 2 -n 12) and a 2x2 entropix grid (temperature x low_ent_thresh):
 * results.csv has 4 rows with the documented columns and values, completions.jsonl 8
 * lines in (combination, line) order, grid.json is the grid as given; a combination's
 * completions equal `etx eval` with that policy (the same random keys); --batch 1 and
 * --batch 4 write the same files as --batch 8; `mpirun -np 2` equals one process
 * (skipped when mpirun is missing); each bad grid is refused, exit 2, before anything runs;
 * grid.json is written once (a rerun leaves the file as it was), a rerun with other
 * settings (run.json) or while another sweep holds the directory is refused.
 * The exit_codes case: the exit-code rule of docs/commands.md for the engine options, a
 * grid's pause token against the model, and an output directory that cannot be made.
 */
#include <check.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#include "cli_run.h"

#define SAMPLE ETX_FIXTURES "/eval/gsm8k_sample.jsonl"
#define COMMON "--task gsm8k --limit 2 -n 12 --threads 2"
#define GRID                                                                                                           \
    "{\"policy\": \"entropix\", \"base\": {\"seed\": 3},\n"                                                            \
    " \"grid\": {\"temperature\": [0.5, 1.0], \"low_ent_thresh\": [0.1, 0.3]}}\n"

static char g_grid[300];
static char* g_ref_jsonl; // completions.jsonl of the --batch 8 run
static char* g_ref_csv;


// Runs `PREFIX etx COMMAND ARGS` (PREFIX: "" or an mpirun line).
static Run run_etx(const char* prefix, const char* command, const char* args) {
    char a[4096];
    snprintf(a, sizeof a, "%s %s", command, args);
    return run_prefixed(prefix, ETX_CLI, a, NULL);
}

static void sweep_into(const char* prefix, const char* dir_name, const char* extra) {
    char dir[300], args[2048];
    cli_tmp_path(dir, sizeof dir, dir_name);
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' " COMMON " %s", SAMPLE, g_grid, dir, extra);
    Run r = run_etx(prefix, "sweep", args);
    ck_assert_msg(r.status == 0, "etx sweep %s: exit %d\n%s", args, r.status, r.err);
    free_run(&r);
}

static char* read_out(const char* dir_name, const char* file) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s/%s", cli_run_dir, dir_name, file);
    return cli_read_or_null(path);
}

static void reference(void) {
    if (g_ref_jsonl) return;
    sweep_into("", "ref", "");
    g_ref_jsonl = read_out("ref", "completions.jsonl");
    g_ref_csv = read_out("ref", "results.csv");
    ck_assert_ptr_nonnull(g_ref_jsonl);
    ck_assert_ptr_nonnull(g_ref_csv);
}

// The CSV without its tokens_per_s column (a timing), malloc'ed.
static char* csv_without_rate(const char* csv) {
    char* out = xmalloc(strlen(csv) + 1);
    size_t w = 0;
    int field = 0;
    for (const char* p = csv; *p; p++) {
        if (*p == '\n') field = 0;
        else if (*p == ',') field++;
        if (field == 7) continue; // the 8th column: tokens_per_s
        out[w++] = *p;
    }
    out[w] = '\0';
    return out;
}

START_TEST(csv_rows_and_completions_in_order) {
    reference();
    const char* header = "combo,temperature,low_ent_thresh,n,accuracy_strict,accuracy_flexible,mean_tokens,"
                         "tokens_per_s,branch_greedy,branch_sample,branch_argmax,branch_pause,branch_helv,"
                         "branch_lehv,branch_hehv,branch_adaptive,branch_inlier,branch_dirichlet,branch_outlier\n";
    ck_assert(strncmp(g_ref_csv, header, strlen(header)) == 0);
    const char* want[4] = {"0,0.5,0.1,2,", "1,0.5,0.3,2,", "2,1,0.1,2,", "3,1,0.3,2,"};
    const char* p = g_ref_csv + strlen(header);
    for (int c = 0; c < 4; c++) {
        ck_assert_msg(strncmp(p, want[c], strlen(want[c])) == 0, "row %d: %.60s", c, p);
        int commas = 0;
        const char* nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        for (const char* q = p; q < nl; q++) commas += *q == ',';
        ck_assert_int_eq(commas, 18);
        // branch shares of an entropix run add up to 1
        double sum = 0;
        const char* q = p;
        for (int k = 0; k < 8; k++) q = strchr(q, ',') + 1;
        for (int k = 0; k < 8; k++) {
            sum += atof(q);
            q = strchr(q, ',') ? strchr(q, ',') + 1 : nl;
        }
        ck_assert_msg(sum > 0.999 && sum < 1.001, "row %d: branch shares add to %f", c, sum);
        p = nl + 1;
    }
    ck_assert_int_eq(*p, '\0');
    // completions: combination-major, lines in file order within each
    p = g_ref_jsonl;
    for (int j = 0; j < 8; j++) {
        const char* nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        cJSON* o = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ck_assert_ptr_nonnull(o);
        ck_assert(strncmp(p, "{\"combo\":", 9) == 0);
        ck_assert_int_eq(cJSON_GetObjectItem(o, "combo")->valueint, j / 2);
        ck_assert_int_eq(cJSON_GetObjectItem(o, "id")->valueint, j % 2);
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(o, "completion")));
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(o, "tokens")));
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(o, "finish")));
        ck_assert(cJSON_IsObject(cJSON_GetObjectItem(o, "branches")));
        ck_assert(cJSON_IsObject(cJSON_GetObjectItem(o, "score")));
        cJSON_Delete(o);
        p = nl + 1;
    }
    ck_assert_int_eq(*p, '\0');
    char* grid = read_out("ref", "grid.json");
    ck_assert_str_eq(grid, GRID);
    free(grid);
}
END_TEST

START_TEST(combination_equals_eval_with_its_policy) {
    reference();
    char pol[300], out[300], args[2048];
    cli_tmp_path(pol, sizeof pol, "combo2.json");
    cli_tmp_path(out, sizeof out, "combo2.jsonl");
    cli_write_text(pol, "{\"policy\": \"entropix\", \"seed\": 3, \"temperature\": 1.0, \"low_ent_thresh\": 0.1}\n");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --policy-file '%s' " COMMON, SAMPLE, out, pol);
    Run r = run_etx("", "eval", args);
    ck_assert_msg(r.status == 0, "etx eval: exit %d\n%s", r.status, r.err);
    free_run(&r);
    char* ev = cli_read_or_null(out);
    ck_assert_ptr_nonnull(ev);
    // combination 2's lines (5 and 6) without their "combo":2, field
    char want[8192];
    size_t w = 0;
    const char* p = g_ref_jsonl;
    for (int j = 0; j < 8; j++) {
        const char* nl = strchr(p, '\n');
        if (j / 2 == 2) {
            const char* body = p + strlen("{\"combo\":2,");
            want[w++] = '{';
            memcpy(want + w, body, (size_t)(nl + 1 - body));
            w += (size_t)(nl + 1 - body);
        }
        p = nl + 1;
    }
    want[w] = '\0';
    ck_assert_str_eq(ev, want);
    free(ev);
}
END_TEST

START_TEST(batch_size_does_not_change_the_files) {
    reference();
    char* ref_csv = csv_without_rate(g_ref_csv);
    const char* dirs[2] = {"b1", "b4"};
    const char* flags[2] = {"--batch 1", "--batch 4"};
    for (int i = 0; i < 2; i++) {
        sweep_into("", dirs[i], flags[i]);
        char* got = read_out(dirs[i], "completions.jsonl");
        ck_assert_str_eq(got, g_ref_jsonl);
        free(got);
        char* csv = read_out(dirs[i], "results.csv");
        char* cut = csv_without_rate(csv);
        ck_assert_str_eq(cut, ref_csv);
        free(cut);
        free(csv);
    }
    free(ref_csv);
}
END_TEST

// A sweep killed after three jobs and in the middle of the fourth line: rerun, it skips
// the three, drops the torn line, and ends with the same files as an uninterrupted run.
START_TEST(resume_skips_done_jobs_and_rebuilds_the_csv) {
    reference();
    char dir[300], path[400];
    cli_tmp_path(dir, sizeof dir, "resume");
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    const char* p = g_ref_jsonl;
    for (int i = 0; i < 3; i++) p = strchr(p, '\n') + 1;
    size_t keep = (size_t)(p - g_ref_jsonl) + 10; // three lines and a torn fourth
    char* part = xmalloc(keep + 1);
    memcpy(part, g_ref_jsonl, keep);
    part[keep] = '\0';
    snprintf(path, sizeof path, "%s/completions.jsonl", dir);
    cli_write_text(path, part);
    free(part);
    char* grid = cli_read_or_null(g_grid);
    snprintf(path, sizeof path, "%s/grid.json", dir);
    cli_write_text(path, grid);
    free(grid);
    char args[2048];
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' " COMMON, SAMPLE, g_grid, dir);
    Run r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "resuming: 3 of 8 jobs"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "truncated line"), "%s", r.err);
    free_run(&r);
    char* got = read_out("resume", "completions.jsonl");
    ck_assert_str_eq(got, g_ref_jsonl);
    free(got);
    char* csv = read_out("resume", "results.csv");
    char* cut = csv_without_rate(csv), *ref_cut = csv_without_rate(g_ref_csv);
    ck_assert_str_eq(cut, ref_cut);
    free(cut), free(ref_cut), free(csv);
    // a second rerun has nothing left to do and changes nothing
    r = run_etx("", "sweep", args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.err, "resuming: 8 of 8 jobs"), "%s", r.err);
    free_run(&r);
    got = read_out("resume", "completions.jsonl");
    ck_assert_str_eq(got, g_ref_jsonl);
    free(got);
    // another grid into the same directory is refused, and nothing there changes
    char other[300];
    cli_tmp_path(other, sizeof other, "other_grid.json");
    cli_write_text(other, "{\"policy\": \"sample\", \"grid\": {\"temperature\": [0.3]}}");
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' " COMMON, SAMPLE, other, dir);
    r = run_etx("", "sweep", args);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "another grid"), "%s", r.err);
    free_run(&r);
    got = read_out("resume", "completions.jsonl");
    ck_assert_str_eq(got, g_ref_jsonl);
    free(got);
}
END_TEST

START_TEST(mpirun_two_ranks_equal_one_process) {
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        fprintf(stderr, "test_sweep: SKIPPED mpirun_two_ranks_equal_one_process: mpirun is not installed\n");
        return;
    }
    reference();
    const char* prefix = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                         "ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe "
                         "-x ASAN_OPTIONS -np 2";
    char dir[300], args[2048];
    cli_tmp_path(dir, sizeof dir, "mpi");
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' --task gsm8k --limit 2 -n 12 --threads 1", SAMPLE,
             g_grid, dir);
    Run r = run_etx(prefix, "sweep", args);
    ck_assert_msg(r.status == 0, "mpirun: exit %d\n%s", r.status, r.err);
    free_run(&r);
    char* got = read_out("mpi", "completions.jsonl");
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, g_ref_jsonl);
    free(got);
    char* csv = read_out("mpi", "results.csv");
    char* a = csv_without_rate(csv);
    char* b = csv_without_rate(g_ref_csv);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    free(csv);
}
END_TEST

START_TEST(directory_guards) {
    reference();
    char path[400], args[2048];
    snprintf(path, sizeof path, "%s/ref/grid.json", cli_run_dir);
    struct stat before, after;
    ck_assert_int_eq(stat(path, &before), 0);
    // a rerun with nothing left to do leaves grid.json as it was (not rewritten)
    char dir[300];
    cli_tmp_path(dir, sizeof dir, "ref");
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' " COMMON, SAMPLE, g_grid, dir);
    Run r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 0 && strstr(r.err, "resuming: 8 of 8 jobs"), "exit %d\n%s", r.status, r.err);
    free_run(&r);
    ck_assert_int_eq(stat(path, &after), 0);
    ck_assert_uint_eq((unsigned long)before.st_ino, (unsigned long)after.st_ino);
    ck_assert_int_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    ck_assert_int_eq(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    // the same grid with other settings: refused by DIR/run.json, naming the change
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' --task gsm8k --limit 2 -n 13 --threads 2", SAMPLE,
             g_grid, dir);
    r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 2 && strstr(r.err, "max_tokens was 12, now 13"), "exit %d\n%s", r.status, r.err);
    free_run(&r);
    // another sweep holds the directory (its completions.jsonl is locked)
    snprintf(path, sizeof path, "%s/ref/completions.jsonl", cli_run_dir);
    const int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' " COMMON, SAMPLE, g_grid, dir);
    r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 2 && strstr(r.err, "another etx run is writing"), "exit %d\n%s", r.status, r.err);
    free_run(&r);
    close(fd);
    char* got = read_out("ref", "completions.jsonl");
    ck_assert_str_eq(got, g_ref_jsonl);
    free(got);
}
END_TEST

START_TEST(bad_grids_refused_before_running) {
    static const struct {
        const char* grid;
        const char* want;
    } cases[] = {
        {"{\"policy\": \"entropix\", \"grid\": {\"temprature\": [0.5]}}", "unknown parameter 'temprature' (did you mean 'temperature'?)"},
        {"{\"policy\": \"entropix\", \"grid\": {\"temperature\": [0.5, -1]}}", "grid.temperature[1]: temperature must be > 0 (got -1)"},
        {"{\"policy\": \"entropix\", \"grid\": {\"temperature\": []}}", "grid.temperature must be a non-empty array"},
        {"{\"policy\": \"entropix\", \"grid\": {\"temperature\": [0.5, \"0.7\"]}}", "grid.temperature[1] must be a number, got a string"},
        {"{\"policy\": \"entropix\", \"grid\": {\"temperature\": [0.5,}}", "malformed JSON at byte 52 (line 1, column 53)"},
        {"{\"policy\": \"entropix\", \"grid\": {}}", "\"grid\" must be a non-empty object"},
        {"{\"policy\": \"entropix\", \"base\": {\"top_k\": 2.5}, \"grid\": {\"temperature\": [1]}}", "base: top_k must be an integer"},
        {"{\"policy\": \"entropix\", \"base\": {\"temperature\": 1}, \"grid\": {\"temperature\": [1]}}", "in both \"base\" and \"grid\""},
        {"{\"grid\": {\"temperature\": [1]}}", "\"policy\" is required"},
        {"{\"policy\": \"entropix\", \"grids\": {\"temperature\": [1]}}", "unknown key 'grids'"},
        {"{\"policy\": \"entropix\", \"base\": {\"seed\": 1, \"seed\": 2}, \"grid\": {\"temperature\": [1]}}", "base: key 'seed' appears twice"},
        {"{\"policy\": \"entropix\", \"grid\": {\"temperature\": [1]}} x", "unexpected text after the value at byte 53 (line 1, column 54)"},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    char grid[300], dir[300], args[2048];
    cli_tmp_path(grid, sizeof grid, "bad_grid.json");
    cli_tmp_path(dir, sizeof dir, "bad_out");
    for (int i = 0; i < n; i++) {
        cli_write_text(grid, cases[i].grid);
        snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' -n 2", SAMPLE, grid, dir);
        Run r = run_etx("", "sweep", args);
        ck_assert_msg(r.status == 2, "case %d: exit %d\n%s", i, r.status, r.err);
        ck_assert_msg(strstr(r.err, cases[i].want) != NULL, "case %d: missing '%s' in\n%s", i, cases[i].want, r.err);
        ck_assert_msg(strstr(r.err, "bad_grid.json") != NULL, "case %d: the file is not named in\n%s", i, r.err);
        free_run(&r);
        ck_assert_int_ne(access(dir, F_OK), 0); // nothing ran, nothing written
    }
}
END_TEST

// The exit-code rule (docs/commands.md, "Exit status"): 2 for what is refused before any
// work (before the model loads, or right after it for what only the model can tell), 1
// when the run fails (an output directory that cannot be made).
START_TEST(exit_codes) {
    char dir[300], file[300], grid[300], args[2048];
    cli_tmp_path(dir, sizeof dir, "exit_out");
    cli_tmp_path(file, sizeof file, "a_file");
    cli_tmp_path(grid, sizeof grid, "pause_grid.json");
    cli_write_text(file, "");
    cli_write_text(grid, "{\"policy\": \"entropix\", \"grid\": {\"pause_token\": [-1, 49152]}}");
    static const struct {
        const char* extra;
        const char* expect;
    } before[] = {
        {"--threads 100000", "--threads must be 0 (all CPUs) or 1.."},
        {"--batch 100000", "--batch must be 1..4096 (got 100000)"},
        {"--ctx 1", "--ctx must be >= 2"},
        {"--kv-blocks -1", "--kv-blocks must be >= 1"},
        {"--kv-block-size 513", "--kv-block-size must be 1..512"},
    };
    for (size_t i = 0; i < sizeof before / sizeof before[0]; i++) {
        snprintf(args, sizeof args, "-m /nonexistent/model.gguf --data '%s' --grid '%s' --out '%s' %s", SAMPLE,
                 g_grid, dir, before[i].extra);
        Run r = run_etx("", "sweep", args);
        ck_assert_msg(r.status == 2, "%s: exit %d\n%s", before[i].extra, r.status, r.err);
        ck_assert_msg(strstr(r.err, before[i].expect), "%s: missing '%s' in\n%s", before[i].extra, before[i].expect,
                      r.err);
        free_run(&r);
        ck_assert_int_ne(access(dir, F_OK), 0); // nothing ran, nothing written
    }
    snprintf(args, sizeof args, "-m /nonexistent/model.gguf --data /dev/zero --grid '%s' --out '%s'", g_grid, dir);
    Run r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 2 && strstr(r.err, "--data /dev/zero: not a regular file"), "exit %d\n%s", r.status,
                  r.err);
    free_run(&r);
    // a grid that is a FIFO is refused, not waited on (a timeout would say 124)
    char fifo[300];
    cli_tmp_path(fifo, sizeof fifo, "grid.fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    snprintf(args, sizeof args, "-m /nonexistent/model.gguf --data '%s' --grid '%s' --out '%s'", SAMPLE, fifo, dir);
    r = run_etx("timeout 60", "sweep", args);
    ck_assert_msg(r.status == 2 && strstr(r.err, "is not a regular file (a pipe)"), "grid FIFO: exit %d\n%s",
                  r.status, r.err);
    free_run(&r);
    unlink(fifo);
    // after the model loads: a combination's pause token outside the vocabulary, --ctx
    // above the model's, a pool too small (each in its own directory: grid.json is
    // written there first)
    char dir2[300], dir3[300];
    cli_tmp_path(dir2, sizeof dir2, "exit_out2");
    cli_tmp_path(dir3, sizeof dir3, "exit_out3");
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' " COMMON, SAMPLE, grid, dir);
    r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 2, "pause token grid: exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "pause_token 49152 (--pause-token) is outside the vocabulary (0..49151)"), "%s", r.err);
    free_run(&r);
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' --ctx 9000 " COMMON, SAMPLE, g_grid, dir2);
    r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 2, "--ctx 9000: exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "--ctx 9000 exceeds the model's context of 8192"), "%s", r.err);
    free_run(&r);
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s' --ctx 64 --kv-blocks 1 --kv-block-size 32 " COMMON,
             SAMPLE, g_grid, dir3);
    r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 2, "small pool: exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "cannot hold one request's context of 64 tokens"), "%s", r.err);
    free_run(&r);
    // the run failed: the output directory cannot be made (its parent is a file)
    snprintf(args, sizeof args, "--data '%s' --grid '%s' --out '%s/out' " COMMON, SAMPLE, g_grid, file);
    r = run_etx("", "sweep", args);
    ck_assert_msg(r.status == 1, "--out under a file: exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, file), "%s", r.err);
    free_run(&r);
}
END_TEST

int main(void) {
    if (cli_run_setup("/tmp/etx_test_sweep_XXXXXX") != 0) return EXIT_FAILURE;
    snprintf(g_grid, sizeof g_grid, "%s/grid.json", cli_run_dir);
    FILE* f = fopen(g_grid, "wb");
    if (!f) return EXIT_FAILURE;
    fputs(GRID, f);
    fclose(f);
    Suite* s = suite_create("sweep");
    TCase* tc = tcase_create("sweep");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, csv_rows_and_completions_in_order);
    tcase_add_test(tc, combination_equals_eval_with_its_policy);
    tcase_add_test(tc, batch_size_does_not_change_the_files);
    tcase_add_test(tc, resume_skips_done_jobs_and_rebuilds_the_csv);
    tcase_add_test(tc, mpirun_two_ranks_equal_one_process);
    tcase_add_test(tc, directory_guards);
    tcase_add_test(tc, bad_grids_refused_before_running);
    suite_add_tcase(s, tc);
    TCase* ex = tcase_create("exit_codes");
    tcase_set_timeout(ex, 600);
    tcase_add_test(ex, exit_codes);
    suite_add_tcase(s, ex);
    const int rc = check_run_suite_nofork(s); // the suites start programs: no fork on top of them
    free(g_ref_jsonl);
    free(g_ref_csv);
    cli_run_cleanup();
    return rc;
}
