/*
 * test_eval.c — `etx eval` run as a user runs it, on the default model with the GSM8K
 * fixture (tests/fixtures/eval/gsm8k_sample.jsonl: 5 zero-shot problems, short prompts),
 * greedy, -n 24: results in input order with every field, the same file at --batch 1,
 * resume (a second run adds only what is missing; a truncated last line is dropped and
 * redone), malformed lines reported with their line number and skipped or refused, and
 * `mpirun -np 2` byte-identical to one process (skipped only when mpirun is missing).
 * The output's guards: an empty file, /dev/null and a pipe (/dev/stdout) as --out; a file
 * of other lines, the data file itself, a locked output and a resume of another run
 * (other -n, policy, data) refused with the file untouched; random keys that follow the
 * ids (blank lines and reordering change no completion); NUL characters in requests; a
 * run stopped by a full disk (prlimit --fsize) or by kill -9 and resumed gives the file of an
 * uninterrupted run.
 * The exit_codes case: the exit-code rule of docs/commands.md (2 refused before the model
 * loads or right after it, 1 a failed run) and a KV pool of one context (--kv-blocks 8
 * --kv-block-size 16, --batch 4) giving the default pool's file byte for byte.
 */
#include <check.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "common.h"

#include "cli_run.h"

#define SAMPLE ETX_FIXTURES "/eval/gsm8k_sample.jsonl"
#define COMMON "--task gsm8k -n 24 --threads 2 --policy greedy"

static char* g_ref; // the one-process output of --limit 3

// Runs `PREFIX etx eval ARGS` (PREFIX: "" or an mpirun line).
static Run run_eval(const char* prefix, const char* args) {
    char a[4096];
    snprintf(a, sizeof a, "eval %s", args);
    return run_prefixed(prefix, ETX_CLI, a, NULL);
}

static void run_ok(const char* prefix, const char* args) {
    Run r = run_eval(prefix, args);
    ck_assert_msg(r.status == 0, "etx eval %s: exit %d\n%s", args, r.status, r.err);
    free_run(&r);
}

static int count_lines(const char* s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

// The one-process output of the first 3 problems, computed once.
static const char* reference(void) {
    if (g_ref) return g_ref;
    char out[300], args[1024];
    cli_tmp_path(out, sizeof out, "ref.jsonl");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 " COMMON, SAMPLE, out);
    run_ok("", args);
    g_ref = cli_read_or_null(out);
    ck_assert_ptr_nonnull(g_ref);
    return g_ref;
}

START_TEST(results_in_order_with_all_fields) {
    const char* ref = reference();
    ck_assert_int_eq(count_lines(ref), 3);
    const char* p = ref;
    for (int i = 0; i < 3; i++) {
        const char* nl = strchr(p, '\n');
        cJSON* j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(cJSON_GetObjectItem(j, "id")->valueint, i);
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "completion")));
        const cJSON* tokens = cJSON_GetObjectItem(j, "tokens");
        ck_assert(cJSON_IsNumber(tokens) && tokens->valueint >= 1 && tokens->valueint <= 24);
        const char* finish = cJSON_GetObjectItem(j, "finish")->valuestring;
        ck_assert(!strcmp(finish, "stop") || !strcmp(finish, "length") || !strcmp(finish, "stop_string"));
        const cJSON* greedy = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "branches"), "greedy");
        ck_assert_int_eq(greedy->valueint, tokens->valueint);
        const cJSON* score = cJSON_GetObjectItem(j, "score");
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(score, "strict")));
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(score, "flexible")));
        const cJSON* ex = cJSON_GetObjectItem(j, "extracted");
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(ex, "reference")));
        ck_assert_ptr_nonnull(cJSON_GetObjectItem(ex, "flexible"));
        // the stop strings never stay in the completion
        const char* c = cJSON_GetObjectItem(j, "completion")->valuestring;
        ck_assert_ptr_null(strstr(c, "\n\n"));
        ck_assert_ptr_null(strstr(c, "Question:"));
        cJSON_Delete(j);
        p = nl + 1;
    }
}
END_TEST

START_TEST(batch_one_gives_the_same_file) {
    char out[300], args[1024];
    cli_tmp_path(out, sizeof out, "batch1.jsonl");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 --batch 1 " COMMON, SAMPLE, out);
    run_ok("", args);
    char* got = cli_read_or_null(out);
    ck_assert_str_eq(got, reference());
    free(got);
}
END_TEST

START_TEST(resume_adds_only_what_is_missing) {
    char out[300], args[1024];
    cli_tmp_path(out, sizeof out, "resume.jsonl");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 2 " COMMON, SAMPLE, out);
    run_ok("", args);
    char* got = cli_read_or_null(out);
    ck_assert_int_eq(count_lines(got), 2);
    free(got);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 " COMMON, SAMPLE, out);
    Run r = run_eval("", args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.err, "1 requests run, 2 already in") != NULL, "%s", r.err);
    free_run(&r);
    got = cli_read_or_null(out);
    ck_assert_str_eq(got, reference());
    free(got);
    // a run killed mid-write: the last line is cut; it is dropped and redone
    const char* ref = reference();
    size_t cut = strlen(ref) - 10;
    FILE* f = fopen(out, "wb");
    ck_assert_uint_eq(fwrite(ref, 1, cut, f), cut);
    fclose(f);
    r = run_eval("", args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.err, "truncated line") != NULL, "%s", r.err);
    ck_assert_msg(strstr(r.err, "1 requests run, 2 already in") != NULL, "%s", r.err);
    free_run(&r);
    got = cli_read_or_null(out);
    ck_assert_str_eq(got, ref);
    free(got);
}
END_TEST

START_TEST(bad_lines_skipped_or_refused) {
    char data[300], out[300], args[1024];
    cli_tmp_path(data, sizeof data, "bad.jsonl");
    cli_tmp_path(out, sizeof out, "bad_out.jsonl");
    FILE* f = fopen(data, "wb");
    fputs("{\"id\": \"a\", \"prompt\": \"Question: 1 + 1?\\nAnswer:\", \"answer\": \"#### 2\"}\n"
          "{\"id\": \"b\", \"prompt\": \n"                                   // 2: bad JSON
          "{\"prompt\": \"no id\"}\n"                                        // 3: no id
          "{\"id\": \"a\", \"prompt\": \"again\"}\n"                         // 4: duplicate
          "{\"id\": \"c\"}\n"                                                // 5: no prompt
          "{\"id\": \"d\", \"prompt\": \"one two three four five six seven eight nine ten eleven twelve thirteen "
          "fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three twenty-four "
          "twenty-five twenty-six twenty-seven twenty-eight twenty-nine thirty\"}\n" // 6: too long for --ctx 40
          "{\"id\": 9, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n",
          f);
    fclose(f);
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --ctx 40 -n 2 --threads 2", data, out);
    Run r = run_eval("", args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    const char* want[] = {"bad.jsonl:2: not a JSON object", "bad.jsonl:3: no \"id\"", "bad.jsonl:4: duplicate id a",
                          "bad.jsonl:5: neither", "bad.jsonl:6: the prompt has", "5 bad lines skipped"};
    for (int i = 0; i < 6; i++) ck_assert_msg(strstr(r.err, want[i]) != NULL, "missing '%s' in\n%s", want[i], r.err);
    free_run(&r);
    char* got = cli_read_or_null(out);
    ck_assert_int_eq(count_lines(got), 2);
    ck_assert(strncmp(got, "{\"id\":\"a\"", 9) == 0);
    ck_assert_ptr_nonnull(strstr(got, "\n{\"id\":9,"));
    free(got);
    // --on-bad-line fail: the same reports, nothing run, no output
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --ctx 40 -n 2 --on-bad-line fail", data, out);
    r = run_eval("", args);
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "bad.jsonl:4: duplicate id a"));
    ck_assert_ptr_nonnull(strstr(r.err, "nothing run"));
    free_run(&r);
    ck_assert_int_ne(access(out, F_OK), 0);
}
END_TEST

// Runs etx eval ARGS expecting exit code want and a message containing need; the file
// out must be byte-for-byte what it was.
static void expect_refused(const char* args, int want, const char* need, const char* out) {
    char* before = out ? cli_read_or_null(out) : NULL;
    Run r = run_eval("", args);
    ck_assert_msg(r.status == want, "etx eval %s: exit %d, expected %d\n%s", args, r.status, want, r.err);
    ck_assert_msg(strstr(r.err, need) != NULL, "etx eval %s: expected '%s' in\n%s", args, need, r.err);
    free_run(&r);
    if (out) {
        char* after = cli_read_or_null(out);
        ck_assert_msg(before && after && strcmp(before, after) == 0, "%s changed", out);
        free(after);
    }
    free(before);
}

START_TEST(special_outputs_are_written_as_streams) {
    char out[300], args[1024];
    // an existing empty file (UBSan: qsort(NULL, 0) aborted the resume scan)
    cli_tmp_path(out, sizeof out, "empty.jsonl");
    cli_write_text(out, "");
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 " COMMON, SAMPLE, out);
    run_ok("", args);
    char* got = cli_read_or_null(out);
    ck_assert_str_eq(got, reference());
    free(got);
    // /dev/null: a character device, written and never read back
    snprintf(args, sizeof args, "--data '%s' --out /dev/null --limit 1 " COMMON, SAMPLE);
    run_ok("", args);
    // a pipe: the resume scan used to read the process's own stdout and wait forever
    snprintf(args, sizeof args, "-c 'timeout 600 \"$0\" eval --data \"$1\" --out /dev/stdout --limit 3 %s | cat' '%s' '%s'",
             COMMON, ETX_CLI, SAMPLE);
    Run r = run_program("sh", args, NULL);
    ck_assert_str_eq(r.out, reference());
    free_run(&r);
}
END_TEST

START_TEST(foreign_outputs_are_refused_untouched) {
    char out[300], data[300], args[1024];
    // a notes file: its last line has no newline, and used to be cut as a "torn write"
    cli_tmp_path(out, sizeof out, "notes.txt");
    cli_write_text(out, "keep these notes\nlast line, no newline");
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 1 " COMMON, SAMPLE, out);
    expect_refused(args, 2, "line 1 is not a result line of etx eval", out);
    // results followed by a line that is not one
    char* mixed = xmalloc(strlen(reference()) + 64);
    sprintf(mixed, "%s# a comment\n", reference());
    cli_write_text(out, mixed);
    free(mixed);
    expect_refused(args, 2, "line 4 is not a result line", out);
    // a sweep's completions are not eval's results
    cli_write_text(out, "{\"combo\":0,\"id\":0,\"completion\":\"x\",\"tokens\":1,\"finish\":\"length\"}\n");
    expect_refused(args, 2, "a line of etx sweep", out);
    // the data file as --out: the results would be appended to the requests
    cli_tmp_path(data, sizeof data, "same.jsonl");
    char* sample = cli_read_or_null(SAMPLE);
    cli_write_text(data, sample);
    free(sample);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 1 " COMMON, data, data);
    expect_refused(args, 2, "is the data file", data);
}
END_TEST

START_TEST(resume_of_another_run_is_refused) {
    char out[300], data[300], args[1024];
    cli_tmp_path(out, sizeof out, "fp.jsonl");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 2 " COMMON, SAMPLE, out);
    run_ok("", args);
    char run_json[340];
    snprintf(run_json, sizeof run_json, "%s.run.json", out);
    ck_assert_int_eq(access(run_json, F_OK), 0);
    // another -n, another policy, another data file: each named, nothing written
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 2 --task gsm8k -n 25 --threads 2 --policy greedy",
             SAMPLE, out);
    expect_refused(args, 2, "max_tokens was 24, now 25", out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 2 --task gsm8k -n 24 --threads 2 --policy sample",
             SAMPLE, out);
    expect_refused(args, 2, "policy.kind was \"greedy\", now \"sample\"", out);
    // --trace changes what a line holds: lines with and without it are not one run
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 2 --trace " COMMON, SAMPLE, out);
    expect_refused(args, 2, "trace", out);
    cli_tmp_path(data, sizeof data, "edited.jsonl");
    char* sample = NULL;
    ck_assert_int_eq(etx_read_file(SAMPLE, &sample, NULL).code, ETX_OK);
    char* eggs = strstr(sample, "16 eggs");
    ck_assert_msg(eggs != NULL, "the fixture changed");
    *eggs = '7'; // a finished prompt edited
    cli_write_text(data, sample);
    free(sample);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 2 " COMMON, data, out);
    expect_refused(args, 2, "data differs", out);
    // the same run goes on (more problems are the same run: --limit is not part of it)
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 " COMMON, SAMPLE, out);
    run_ok("", args);
    char* got = cli_read_or_null(out);
    ck_assert_str_eq(got, reference());
    free(got);
}
END_TEST

// The completion of each id in an output, in id order (ids 0..n-1).
static void completions_by_id(const char* text, char** by_id, int n) {
    for (const char* p = text; p && *p;) {
        const char* nl = strchr(p, '\n');
        cJSON* j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        const int id = cJSON_GetObjectItem(j, "id")->valueint;
        ck_assert(id >= 0 && id < n);
        by_id[id] = xstrdup(cJSON_GetObjectItem(j, "completion")->valuestring);
        cJSON_Delete(j);
        p = nl + 1;
    }
}

START_TEST(random_keys_follow_ids_not_lines) {
    // sampled at temperature 1: a request's tokens follow its random key, which must not
    // move when blank lines are inserted or lines reordered
    char* sample = cli_read_or_null(SAMPLE);
    const char* lines[3];
    size_t lens[3];
    const char* p = sample;
    for (int i = 0; i < 3; i++) {
        const char* nl = strchr(p, '\n');
        lines[i] = p, lens[i] = (size_t)(nl - p + 1);
        p = nl + 1;
    }
    char a[300], b[300], oa[300], ob[300], args[1024];
    cli_tmp_path(a, sizeof a, "keys_a.jsonl");
    cli_tmp_path(b, sizeof b, "keys_b.jsonl");
    cli_tmp_path(oa, sizeof oa, "keys_oa.jsonl");
    cli_tmp_path(ob, sizeof ob, "keys_ob.jsonl");
    FILE* f = fopen(a, "wb");
    for (int i = 0; i < 3; i++) fwrite(lines[i], 1, lens[i], f);
    fclose(f);
    f = fopen(b, "wb");
    fputs("\n\n", f);
    fwrite(lines[2], 1, lens[2], f);
    fputs("\n", f);
    fwrite(lines[0], 1, lens[0], f);
    fwrite(lines[1], 1, lens[1], f);
    fclose(f);
    free(sample);
    unlink(oa), unlink(ob);
    const char* pol = "-n 12 --threads 2 --policy sample --temperature 1.0 --seed 5";
    snprintf(args, sizeof args, "--data '%s' --out '%s' %s", a, oa, pol);
    run_ok("", args);
    snprintf(args, sizeof args, "--data '%s' --out '%s' %s", b, ob, pol);
    run_ok("", args);
    char* ta = cli_read_or_null(oa);
    char* tb = cli_read_or_null(ob);
    char *ca[3] = {0}, *cb[3] = {0};
    completions_by_id(ta, ca, 3);
    completions_by_id(tb, cb, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_nonnull(ca[i]);
        ck_assert_ptr_nonnull(cb[i]);
        ck_assert_msg(strcmp(ca[i], cb[i]) == 0, "id %d: '%s' vs '%s'", i, ca[i], cb[i]);
        free(ca[i]), free(cb[i]);
    }
    free(ta), free(tb);
}
END_TEST

START_TEST(a_locked_output_is_refused) {
    char out[300], args[1024];
    cli_tmp_path(out, sizeof out, "locked.jsonl");
    cli_write_text(out, "");
    // this process holds the lock, as a running etx eval does
    const int fd = open(out, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 1 " COMMON, SAMPLE, out);
    expect_refused(args, 2, "another etx run is writing", out);
    close(fd);
    run_ok("", args);
}
END_TEST

START_TEST(nul_characters_in_requests_are_refused) {
    char data[300], out[300], args[1024];
    cli_tmp_path(data, sizeof data, "nul.jsonl");
    cli_tmp_path(out, sizeof out, "nul_out.jsonl");
    cli_write_text(data, "{\"id\": 1, \"prompt\": \"the cat\\u0000 sat on the\"}\n"
                     "{\"id\": 2, \"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000b\"}]}\n"
                     "{\"id\": \"x\\u0000y\", \"prompt\": \"fine\"}\n"
                     "{\"id\": 3, \"prompt\": \"The capital of France is\"}\n");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' -n 2 --threads 2", data, out);
    Run r = run_eval("", args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    const char* want[] = {"nul.jsonl:1: a NUL character (\\u0000) in \"prompt\" at column 29",
                          "nul.jsonl:2: a NUL character (\\u0000) in \"messages[0].content\"",
                          "nul.jsonl:3: a NUL character (\\u0000) in \"id\"", "3 bad lines skipped"};
    for (int i = 0; i < 4; i++) ck_assert_msg(strstr(r.err, want[i]) != NULL, "missing '%s' in\n%s", want[i], r.err);
    free_run(&r);
    char* got = cli_read_or_null(out);
    ck_assert_int_eq(count_lines(got), 1);
    free(got);
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' -n 2 --on-bad-line fail", data, out);
    expect_refused(args, 2, "nothing run", NULL);
}
END_TEST

START_TEST(killed_or_disk_full_then_resumed) {
    char out[300], args[1024];
    cli_tmp_path(out, sizeof out, "full.jsonl");
    unlink(out);
    // a full disk: a file may not grow past 3/4 of the results (prlimit --fsize, SIGXFSZ
    // ignored so the write fails with EFBIG); the run stops with exit 1 and a torn last
    // line ...
    snprintf(args, sizeof args, "-c 'trap \"\" XFSZ; exec prlimit --fsize=%zu \"$0\" eval --data \"$1\" --out \"$2\" "
             "--limit 3 %s' '%s' '%s' '%s'", strlen(reference()) * 3 / 4, COMMON, ETX_CLI, SAMPLE, out);
    Run r = run_program("sh", args, NULL);
    ck_assert_msg(r.status == 1, "exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "writing") != NULL, "%s", r.err);
    free_run(&r);
    char* part = cli_read_or_null(out);
    ck_assert(strlen(part) > 0 && strlen(part) < strlen(reference()));
    free(part);
    // ... which a resume repairs: the same file as an uninterrupted run
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 " COMMON, SAMPLE, out);
    run_ok("", args);
    char* got = cli_read_or_null(out);
    ck_assert_str_eq(got, reference());
    free(got);
    // kill -9 once the first result is out (one request at a time), then resume
    unlink(out);
    char run_json[340];
    snprintf(run_json, sizeof run_json, "%s.run.json", out);
    unlink(run_json);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' eval --data '%s' --out '%s' --limit 3 --batch 1 %s 2>/dev/null & pid=$!; "
             "i=0; while [ $i -lt 6000 ] && ! grep -q . '%s' 2>/dev/null; do sleep 0.05; i=$((i+1)); done; "
             "kill -9 $pid; wait $pid; exit 0", ETX_CLI, SAMPLE, out, COMMON, out);
    ck_assert_int_eq(system(cmd), 0);
    char* killed = cli_read_or_null(out);
    ck_assert(killed && strlen(killed) > 0 && strlen(killed) < strlen(reference()));
    free(killed);
    run_ok("", args);
    got = cli_read_or_null(out);
    ck_assert_str_eq(got, reference());
    free(got);
}
END_TEST

START_TEST(mpirun_two_ranks_equal_one_process) {
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        fprintf(stderr, "test_eval: SKIPPED mpirun_two_ranks_equal_one_process: mpirun is not installed "
                        "(scripts/install_deps.sh installs openmpi-bin)\n");
        return;
    }
    char out[300], args[1024];
    cli_tmp_path(out, sizeof out, "mpi.jsonl");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 --task gsm8k -n 24 --threads 1 --policy greedy",
             SAMPLE, out);
    // root needs Open MPI's consent; leak checks (ASan builds) see Open MPI's own allocations
    const char* prefix = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                         "ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe "
                         "-x ASAN_OPTIONS -np 2";
    Run r = run_eval(prefix, args);
    ck_assert_msg(r.status == 0, "mpirun: exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "3 requests run") != NULL, "%s", r.err);
    free_run(&r);
    char* got = cli_read_or_null(out);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, reference());
    free(got);
}
END_TEST

// ----------------------------------------------------------------------------
// --samples 3: each line holds its 3 samples (completions, tokens summing to the line's,
// confidence statistics, extracted answers), the vote and pass@k; the file is the same at
// --batch 1, 3 and 6 and with a pool so small that samples are preempted; the majority
// vote is the most frequent flexible answer (first sample's on a tie); --summary writes
// the totals with the prompt positions the samples shared.
static char* run_samples(const char* name, const char* extra, const char* summary) {
    char out[300], args[1500];
    cli_tmp_path(out, sizeof out, name);
    unlink(out);
    snprintf(args, sizeof args,
             "--data '%s' --out '%s' --limit 2 --task gsm8k -n 16 --threads 2 --policy sample --temperature 0.9 "
             "--samples 3 %s%s%s",
             SAMPLE, out, extra, summary ? " --summary " : "", summary ? summary : "");
    run_ok("", args);
    char* got = cli_read_or_null(out);
    ck_assert_ptr_nonnull(got);
    return got;
}

START_TEST(samples_are_voted_and_batch_invariant) {
    char sum_path[300];
    cli_tmp_path(sum_path, sizeof sum_path, "samples_summary.json");
    char* b6 = run_samples("s_b6.jsonl", "--batch 6", sum_path);
    char* b1 = run_samples("s_b1.jsonl", "--batch 1", NULL);
    // blocks of 16 positions (an attention tile on the CPU: the confidences' last bits
    // follow it), roomy, then a pool of 10 blocks
    char* b16 = run_samples("s_b16.jsonl", "--batch 6 --ctx 160 --kv-block-size 16", NULL);
    char* b3 = run_samples("s_b3.jsonl", "--batch 3 --ctx 160 --kv-blocks 10 --kv-block-size 16", NULL);
    ck_assert_msg(strcmp(b1, b6) == 0, "--samples 3: batch 1 and batch 6 differ");
    ck_assert_msg(strcmp(b3, b16) == 0, "--samples 3: a pool of 10 blocks and a roomy one differ");
    ck_assert_int_eq(count_lines(b6), 2);
    const char* p = b6;
    for (int i = 0; i < 2; i++) {
        const char* nl = strchr(p, '\n');
        cJSON* j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ck_assert_ptr_nonnull(j);
        const cJSON* samples = cJSON_GetObjectItem(j, "samples");
        ck_assert_int_eq(cJSON_GetArraySize(samples), 3);
        int sum = 0, distinct = 0;
        const char* flex[3];
        for (int k = 0; k < 3; k++) {
            const cJSON* x = cJSON_GetArrayItem(samples, k);
            sum += cJSON_GetObjectItem(x, "tokens")->valueint;
            ck_assert(cJSON_IsString(cJSON_GetObjectItem(x, "completion")));
            const cJSON* conf = cJSON_GetObjectItem(x, "confidence");
            ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(conf, "mean")));
            ck_assert(cJSON_GetObjectItem(conf, "mean")->valuedouble > 0);
            const cJSON* fx = cJSON_GetObjectItem(cJSON_GetObjectItem(x, "extracted"), "flexible");
            flex[k] = cJSON_IsString(fx) ? fx->valuestring : "";
            if (k > 0)
                distinct += strcmp(cJSON_GetObjectItem(x, "completion")->valuestring,
                                   cJSON_GetObjectItem(cJSON_GetArrayItem(samples, 0), "completion")->valuestring) != 0;
        }
        ck_assert_int_eq(cJSON_GetObjectItem(j, "tokens")->valueint, sum);
        ck_assert_msg(distinct > 0, "request %d: the 3 samples are identical", i);
        // the majority answer, first counted sample's on a tie, by hand
        int best = -1, best_votes = 0;
        for (int k = 0; k < 3; k++) {
            if (!flex[k][0]) continue;
            int votes = 0;
            for (int m = 0; m < 3; m++) votes += strcmp(flex[k], flex[m]) == 0;
            if (votes > best_votes) best = k, best_votes = votes;
        }
        const cJSON* vote = cJSON_GetObjectItem(j, "vote");
        ck_assert_str_eq(cJSON_GetObjectItem(vote, "method")->valuestring, "majority");
        const cJSON* va = cJSON_GetObjectItem(cJSON_GetObjectItem(vote, "flexible"), "answer");
        if (best < 0) ck_assert(cJSON_IsNull(va));
        else ck_assert_str_eq(va->valuestring, flex[best]);
        const cJSON* pass = cJSON_GetObjectItem(j, "pass");
        ck_assert_int_eq(cJSON_GetObjectItem(pass, "n")->valueint, 3);
        cJSON_Delete(j);
        p = nl + 1;
    }
    char* sum = cli_read_or_null(sum_path);
    ck_assert_ptr_nonnull(sum);
    cJSON* js = cJSON_Parse(sum);
    ck_assert_int_eq(cJSON_GetObjectItem(js, "n")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItem(js, "samples")->valueint, 3);
    ck_assert(cJSON_GetObjectItem(js, "prefill_saved")->valuedouble > 0);
    // the KV positions held at the peak (test_samples checks that samples hold a prompt once)
    ck_assert(cJSON_GetObjectItem(js, "kv_peak_positions")->valuedouble > 0);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(js, "ci95")), 2);
    cJSON_Delete(js);
    free(sum);
    // the other votes run over the same samples: their completions are the same
    char* dc = run_samples("s_dc.jsonl", "--batch 6 --vote deepconf --eta 0.5", NULL);
    cJSON* a = cJSON_ParseWithLength(b6, (size_t)(strchr(b6, '\n') - b6));
    cJSON* b = cJSON_ParseWithLength(dc, (size_t)(strchr(dc, '\n') - dc));
    char* sa = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "samples"));
    char* sb = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "samples"));
    ck_assert_str_eq(sa, sb);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "vote"), "flexible"), "kept")->valueint
                         <= 2, 1);
    cJSON_free(sa);
    cJSON_free(sb);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(dc);
    free(b1);
    free(b3);
    free(b6);
    free(b16);
}
END_TEST

// --online 2 of 5 (DeepConf online): the warm-up set a threshold; every sample is the
// offline run's sample cut where it stopped, the stopped ones ("low_confidence") hold
// fewer tokens, and the line says the threshold and how many stopped.
START_TEST(online_deepconf_cuts_samples_short) {
    const char* common = "--batch 10 --samples 5 --vote deepconf --eta 0.1 --conf-window 4 -n 32";
    char extra[300];
    snprintf(extra, sizeof extra, "%s --online 2", common);
    char* off = run_samples("dc_off.jsonl", common, NULL);
    char* on = run_samples("dc_on.jsonl", extra, NULL);
    const char *p = off, *q = on;
    int stopped = 0, saved = 0;
    for (int i = 0; i < 2; i++) {
        const char* nl = strchr(p, '\n');
        const char* nq = strchr(q, '\n');
        cJSON* a = cJSON_ParseWithLength(p, (size_t)(nl - p));
        cJSON* b = cJSON_ParseWithLength(q, (size_t)(nq - q));
        const cJSON* sa = cJSON_GetObjectItem(a, "samples");
        const cJSON* sb = cJSON_GetObjectItem(b, "samples");
        const cJSON* vote = cJSON_GetObjectItem(b, "vote");
        ck_assert_int_eq(cJSON_GetObjectItem(vote, "warmup")->valueint, 2);
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(vote, "threshold")));
        int n_low = 0;
        ck_assert_int_eq(cJSON_GetArraySize(sb), 5);
        for (int k = 0; k < 5; k++) {
            const cJSON* x = cJSON_GetArrayItem(sa, k);
            const cJSON* y = cJSON_GetArrayItem(sb, k);
            const char* cx = cJSON_GetObjectItem(x, "completion")->valuestring;
            const char* cy = cJSON_GetObjectItem(y, "completion")->valuestring;
            const int tx = cJSON_GetObjectItem(x, "tokens")->valueint, ty = cJSON_GetObjectItem(y, "tokens")->valueint;
            if (!strcmp(cJSON_GetObjectItem(y, "finish")->valuestring, "low_confidence")) {
                n_low++;
                ck_assert_int_le(ty, tx);
                saved += tx - ty;
                // the text up to its last (possibly partial) character is the offline one's
                ck_assert(strlen(cy) <= strlen(cx) && strncmp(cx, cy, strlen(cy) > 4 ? strlen(cy) - 4 : 0) == 0);
            } else {
                ck_assert_int_eq(ty, tx);
                ck_assert_str_eq(cy, cx);
            }
        }
        ck_assert_int_eq(cJSON_GetObjectItem(vote, "stopped")->valueint, n_low);
        for (int k = 0; k < 2; k++) // the warm-up samples never stop
            ck_assert_str_ne(cJSON_GetObjectItem(cJSON_GetArrayItem(sb, k), "finish")->valuestring, "low_confidence");
        stopped += n_low;
        cJSON_Delete(a);
        cJSON_Delete(b);
        p = nl + 1, q = nq + 1;
    }
    fprintf(stderr, "test_eval: online DeepConf stopped %d of 6 later samples, saving %d tokens\n", stopped, saved);
    ck_assert_int_gt(stopped, 0); // the threshold near the warm-up's best stops something
    free(off);
    free(on);
}
END_TEST

// --branch 3 with thresholds of 0 (a fork wherever the budget allows): each line counts
// its forks and the tokens of the branches it did not keep, and holds the tree of its
// forks; the file is the same at --batch 1 and 4.
START_TEST(branching_lines_are_batch_invariant) {
    char out[300], args[1500];
    char* got[2];
    for (int b = 0; b < 2; b++) {
        cli_tmp_path(out, sizeof out, b ? "br_b4.jsonl" : "br_b1.jsonl");
        unlink(out);
        snprintf(args, sizeof args,
                 "--data '%s' --out '%s' --limit 2 --task gsm8k -n 16 --threads 2 --policy sample --temperature 0.9 "
                 "--branch 3 --branch-entropy 0 --lookahead 2 --branch-budget 20 --batch %d",
                 SAMPLE, out, b ? 4 : 1);
        run_ok("", args);
        got[b] = cli_read_or_null(out);
        ck_assert_ptr_nonnull(got[b]);
    }
    ck_assert_msg(strcmp(got[0], got[1]) == 0, "--branch: batch 1 and 4 differ");
    const char* nl = strchr(got[0], '\n');
    cJSON* j = cJSON_ParseWithLength(got[0], (size_t)(nl - got[0]));
    const cJSON* bo = cJSON_GetObjectItem(j, "branching");
    ck_assert_int_ge(cJSON_GetObjectItem(bo, "forks")->valueint, 1);
    ck_assert_int_gt(cJSON_GetObjectItem(bo, "dropped_tokens")->valueint, 0);
    // the tree: one entry per fork, in step order, 3 branches on distinct first tokens,
    // each at most 1 + the lookahead long; the tokens of the branches not kept add up to
    // dropped_tokens, and every fork lies within the completion's tokens
    const cJSON* tree = cJSON_GetObjectItem(bo, "tree");
    ck_assert_int_eq(cJSON_GetArraySize(tree), cJSON_GetObjectItem(bo, "forks")->valueint);
    int dropped = 0, last_step = -1;
    const int n_tokens = cJSON_GetObjectItem(j, "tokens")->valueint;
    for (int f = 0; f < cJSON_GetArraySize(tree); f++) {
        const cJSON* fo = cJSON_GetArrayItem(tree, f);
        const int step = cJSON_GetObjectItem(fo, "step")->valueint, kept = cJSON_GetObjectItem(fo, "kept")->valueint;
        ck_assert_int_gt(step, last_step);
        ck_assert_int_lt(step, n_tokens);
        last_step = step;
        const cJSON* brs = cJSON_GetObjectItem(fo, "branches");
        ck_assert_int_eq(cJSON_GetArraySize(brs), 3);
        ck_assert(kept >= 0 && kept < 3);
        for (int b = 0; b < 3; b++) {
            const cJSON* bj = cJSON_GetArrayItem(brs, b);
            const int nt = cJSON_GetObjectItem(bj, "tokens")->valueint;
            ck_assert(nt >= 1 && nt <= 3); // the candidate, then up to the lookahead
            ck_assert(cJSON_GetObjectItem(bj, "score")->valuedouble <= 0.0); // a mean log-probability
            for (int c = 0; c < b; c++)
                ck_assert_int_ne(cJSON_GetObjectItem(bj, "token")->valueint,
                                 cJSON_GetObjectItem(cJSON_GetArrayItem(brs, c), "token")->valueint);
            if (b != kept) dropped += nt;
        }
    }
    ck_assert_int_eq(dropped, cJSON_GetObjectItem(bo, "dropped_tokens")->valueint);
    cJSON_Delete(j);
    free(got[0]);
    free(got[1]);
}
END_TEST

// the exit-code rule (docs/commands.md, "Exit status") and the KV pool options

// Runs `etx eval ARGS` and checks the exit code and a piece of stderr.
static void expect_exit(const char* args, int status, const char* expect) {
    Run r = run_eval("", args);
    ck_assert_msg(r.status == status, "etx eval %s: exit %d, expected %d (stderr: %s)", args, r.status, status, r.err);
    ck_assert_msg(strstr(r.err, expect), "etx eval %s: stderr '%s' lacks '%s'", args, r.err, expect);
    free_run(&r);
}

START_TEST(exit_codes) {
    char out[300], file[300], args[1024];
    cli_tmp_path(out, sizeof out, "exit.jsonl");
    cli_tmp_path(file, sizeof file, "a_file");
    FILE* f = fopen(file, "wb");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    unlink(out);
    // before the model loads (a model that does not exist is never reached)
    static const struct {
        const char* extra;
        const char* expect;
    } before[] = {
        {"--threads 100000", "--threads must be 0 (all CPUs) or 1.."},
        {"--batch 100000", "--batch must be 1..4096 (got 100000)"},
        {"--ctx -1", "--ctx must be >= 2"},
        {"--kv-blocks -5", "--kv-blocks must be >= 1"},
        {"--kv-block-size 1000", "--kv-block-size must be 1..512"},
        {"--device tpu", "unknown device 'tpu'"},
        {"--task gsm8k --samples 0", "--samples must be 1..4096 (got 0)"},
        {"--task gsm8k --samples 5000", "--samples must be 1..4096 (got 5000)"},
        {"--samples 4", "--samples 4 votes over extracted answers, which needs a task"},
        {"--task gsm8k --samples 4 --vote best", "unknown --vote 'best'"},
        {"--task gsm8k --samples 4 --vote deepconf --eta 0", "--eta must be in (0, 1]"},
        {"--task gsm8k --samples 4 --conf-stat median", "unknown --conf-stat 'median'"},
        {"--task gsm8k --samples 4 --online 2", "--online N needs --vote deepconf"},
        {"--branch 5", "--branch must be 2..4"},
        {"--branch 2 --lookahead 0", "--branch must be 2..4 with --lookahead and --branch-budget >= 1"},
        {"--task gsm8k --samples 4 --vote deepconf --online 4", "--online N needs --vote deepconf and 1 <= N < --samples"},
    };
    for (size_t i = 0; i < sizeof before / sizeof before[0]; i++) {
        snprintf(args, sizeof args, "-m /nonexistent/model.gguf --data '%s' --out '%s' %s", SAMPLE, out,
                 before[i].extra);
        expect_exit(args, 2, before[i].expect);
    }
    snprintf(args, sizeof args, "-m /nonexistent/model.gguf --data /dev/zero --out '%s'", out);
    expect_exit(args, 2, "--data /dev/zero: not a regular file");
    snprintf(args, sizeof args, "-m /nonexistent/model.gguf --data '%s' --out '%s'", cli_run_dir, out);
    expect_exit(args, 2, "not a regular file (a directory)");
    snprintf(args, sizeof args, "--data '%s' --out '%s' -m /nonexistent/model.gguf", SAMPLE, out);
    expect_exit(args, 2, "/nonexistent/model.gguf");
    // after it loads, before anything runs
    snprintf(args, sizeof args, "--data '%s' --out '%s' --ctx 100000", SAMPLE, out);
    expect_exit(args, 2, "--ctx 100000 exceeds the model's context of 8192");
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 1 -n 2 --policy entropix --pause-token 49152", SAMPLE,
             out);
    expect_exit(args, 2, "pause_token 49152 (--pause-token) is outside the vocabulary (0..49151)");
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 1 -n 2 --ctx 128 --kv-blocks 7 --kv-block-size 16",
             SAMPLE, out);
    expect_exit(args, 2, "cannot hold one request's context of 128 tokens (--ctx); give --kv-blocks 8 or more");
    ck_assert_int_ne(access(out, F_OK), 0); // nothing written by a refused run
    // the run failed: the output cannot be created (a path under a regular file)
    snprintf(args, sizeof args, "--data '%s' --out '%s/out.jsonl' --limit 1 -n 2", SAMPLE, file);
    Run r = run_eval("", args);
    ck_assert_msg(r.status == 1, "--out under a file: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, file), "%s", r.err);
    free_run(&r);
}
END_TEST

// A pool of 8 blocks of 16 positions holds one 128-token context: four requests in
// flight cannot all keep their K/V, so the engine preempts and recomputes; the results
// are those of the default pool, byte for byte.
START_TEST(small_kv_pool_same_results) {
    char out[300], args[1024];
    cli_tmp_path(out, sizeof out, "small_pool.jsonl");
    unlink(out);
    snprintf(args, sizeof args, "--data '%s' --out '%s' --limit 3 --batch 4 --ctx 128 --kv-blocks 8 --kv-block-size 16 "
             COMMON, SAMPLE, out);
    run_ok("", args);
    char* got = cli_read_or_null(out);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, reference());
    free(got);
}
END_TEST

int main(void) {
    if (cli_run_setup("/tmp/etx_test_eval_XXXXXX") != 0) return EXIT_FAILURE;
    Suite* s = suite_create("eval");
    TCase* tc = tcase_create("eval");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, results_in_order_with_all_fields);
    tcase_add_test(tc, batch_one_gives_the_same_file);
    tcase_add_test(tc, resume_adds_only_what_is_missing);
    tcase_add_test(tc, bad_lines_skipped_or_refused);
    tcase_add_test(tc, special_outputs_are_written_as_streams);
    tcase_add_test(tc, foreign_outputs_are_refused_untouched);
    tcase_add_test(tc, resume_of_another_run_is_refused);
    tcase_add_test(tc, random_keys_follow_ids_not_lines);
    tcase_add_test(tc, a_locked_output_is_refused);
    tcase_add_test(tc, killed_or_disk_full_then_resumed);
    tcase_add_test(tc, nul_characters_in_requests_are_refused);
    tcase_add_test(tc, mpirun_two_ranks_equal_one_process);
    suite_add_tcase(s, tc);
    TCase* ex = tcase_create("exit_codes");
    tcase_set_timeout(ex, 600);
    tcase_add_test(ex, exit_codes);
    tcase_add_test(ex, small_kv_pool_same_results);
    tcase_add_test(ex, samples_are_voted_and_batch_invariant);
    tcase_add_test(ex, online_deepconf_cuts_samples_short);
    tcase_add_test(ex, branching_lines_are_batch_invariant);
    suite_add_tcase(s, ex);
    const int rc = check_run_suite_nofork(s); // the suites start programs: no fork on top of them
    free(g_ref);
    cli_run_cleanup();
    return rc;
}
