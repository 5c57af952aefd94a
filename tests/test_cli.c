/*
 * test_cli.c — the etx command line, run as a user runs it: help on every subcommand,
 * errors that name the bad option or value (exit 2), tokenize/decode, logits files of the
 * right size, generate end to end on the default model, and the greedy text of
 * `etx generate` equal to llama.cpp's on the same prompts (fixture from
 * tests/scripts/gen_cli_fixtures.py).
 */
#include <check.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static char g_tmp[256];

typedef struct {
    int status;   // exit code
    char* out;    // stdout
    char* err;    // stderr
} Run;

static char* slurp(const char* path) {
    char* data = NULL;
    if (etx_read_file(path, &data, NULL).code != ETX_OK) data = xstrdup("");
    return data;
}

// Runs `etx ARGS` (a shell fragment) with optional stdin text.
static Run run(const char* args, const char* input) {
    char in_path[300], out_path[300], err_path[300], cmd[4096];
    snprintf(in_path, sizeof in_path, "%s/stdin", g_tmp);
    snprintf(out_path, sizeof out_path, "%s/stdout", g_tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", g_tmp);
    FILE* f = fopen(in_path, "wb");
    ck_assert_ptr_nonnull(f);
    if (input) fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' %s < '%s' > '%s' 2> '%s'", ETX_CLI, args, in_path, out_path, err_path);
    int st = system(cmd);
    Run r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

static void free_run(Run* r) {
    free(r->out);
    free(r->err);
}

#define LLAMA3_TOK ETX_FIXTURES "/tokenizer/llama3/tokenizer.json"

START_TEST(help_everywhere) {
    const char* cmds[] = {"--help", "generate --help", "tokenize --help", "logits --help", "generate -h"};
    for (int i = 0; i < 5; i++) {
        Run r = run(cmds[i], NULL);
        ck_assert_msg(r.status == 0, "%s: exit %d", cmds[i], r.status);
        ck_assert_msg(strstr(r.out, "usage: etx"), "%s: %s", cmds[i], r.out);
        free_run(&r);
    }
    Run r = run("generate --help", NULL);
    ck_assert_ptr_nonnull(strstr(r.out, "--top-p"));
    ck_assert_ptr_nonnull(strstr(r.out, "--chat"));
    free_run(&r);
}
END_TEST

START_TEST(bad_options_are_named) {
    struct {
        const char* args;
        const char* expect;
    } cases[] = {
        {"frobnicate", "unknown command 'frobnicate'"},
        {"generate --bogus", "unknown option '--bogus'"},
        {"generate -p hi -n abc", "--max-tokens expects an integer, got 'abc'"},
        {"generate -p hi --temperature 0.5x", "--temperature expects a number, got '0.5x'"},
        {"generate -p hi --seed -1", "--seed expects a non-negative integer"},
        {"generate -p hi -n", "--max-tokens needs a value"},
        {"generate -p hi --chat hi", "exactly one of -p TEXT or --chat TEXT"},
        {"generate -p hi --policy beam", "unknown policy 'beam'"},
        {"generate -p hi --policy greedy --top-k 5", "apply to --policy sample"},
        {"generate -p hi --top-p 1.5", "top-p must be in (0, 1]"},
        {"generate -p hi --device tpu", "unknown device 'tpu'"},
        {"logits -p hi", "--out FILE is required"},
        {"logits --ids '1 x 3' --out /dev/null", "'x 3' is not an integer"},
        {"tokenize --decode --bos", "--bos applies to encoding"},
        {"generate stray", "unexpected argument 'stray'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Run r = run(cases[i].args, NULL);
        ck_assert_msg(r.status == 2, "%s: exit %d (stderr: %s)", cases[i].args, r.status, r.err);
        ck_assert_msg(strstr(r.err, cases[i].expect), "%s: stderr '%s' lacks '%s'", cases[i].args, r.err,
                      cases[i].expect);
        free_run(&r);
    }
}
END_TEST

START_TEST(tokenize_and_decode_llama3) {
    Run r = run("tokenize -m '" LLAMA3_TOK "'", "Hello world");
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "9906 1917\n");
    free_run(&r);
    // BOS from the tokenizer_config.json beside tokenizer.json
    r = run("tokenize --bos -m '" LLAMA3_TOK "'", "Hello world");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_str_eq(r.out, "128000 9906 1917\n");
    free_run(&r);
    // special tokens in the text are recognised
    r = run("tokenize -m '" LLAMA3_TOK "'", "<|eot_id|>Hi");
    ck_assert_str_eq(r.out, "128009 13347\n");
    free_run(&r);
    r = run("tokenize --decode -m '" LLAMA3_TOK "'", "9906 1917 128009\n");
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "Hello world<|eot_id|>");
    free_run(&r);
    r = run("tokenize --decode -m '" LLAMA3_TOK "'", "9906 999999");
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "999999 is outside the vocabulary"));
    free_run(&r);
    r = run("tokenize -m /nonexistent/tokenizer.json", "x");
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "/nonexistent/tokenizer.json"));
    free_run(&r);
}
END_TEST

START_TEST(tokenize_gguf_roundtrip) {
    const char* text = "Héllo, wörld! 12345 こんにちは 🎉";
    Run r = run("tokenize", text);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_gt(strlen(r.out), 3);
    char args[1024];
    char ids[900];
    snprintf(ids, sizeof ids, "%s", r.out);
    free_run(&r);
    snprintf(args, sizeof args, "tokenize --decode");
    r = run(args, ids);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, text);
    free_run(&r);
}
END_TEST

static long file_size(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

START_TEST(logits_files) {
    char args[600], out[300];
    snprintf(out, sizeof out, "%s/logits.bin", g_tmp);
    snprintf(args, sizeof args, "logits --ids '1 504 3575' --out '%s'", out);
    Run r = run(args, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(file_size(out), 49152L * 4);
    ck_assert_ptr_nonnull(strstr(r.out, "argmax"));
    ck_assert_ptr_nonnull(strstr(r.out, "top 5"));
    free_run(&r);
    // --all: every position; its last row equals the last-position file
    float* last = malloc(49152 * sizeof(float));
    FILE* f = fopen(out, "rb");
    ck_assert_int_eq(fread(last, sizeof(float), 49152, f), 49152);
    fclose(f);
    snprintf(args, sizeof args, "logits --all --ids '1 504 3575' --out '%s'", out);
    r = run(args, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(file_size(out), 3L * 49152 * 4);
    float* all = malloc(3 * 49152 * sizeof(float));
    f = fopen(out, "rb");
    ck_assert_int_eq(fread(all, sizeof(float), 3 * 49152, f), 3 * 49152);
    fclose(f);
    for (int i = 0; i < 49152; i++) ck_assert_float_eq_tol(all[2 * 49152 + i], last[i], 1e-4f);
    free(all);
    free(last);
    free_run(&r);
    snprintf(args, sizeof args, "logits --ids '1 49152' --out '%s'", out);
    r = run(args, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "49152"));
    free_run(&r);
    snprintf(args, sizeof args, "logits -m /no/such/model --ids 1 --out '%s'", out);
    r = run(args, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "/no/such/model"));
    free_run(&r);
}
END_TEST

START_TEST(generate_runs_and_checks_the_context) {
    Run r = run("generate -p 'The capital of France is' -n 6 --stats", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_gt(strlen(r.out), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "tok/s"));
    free_run(&r);
    r = run("generate --chat 'Say hi.' -n 4 --policy sample --temperature 0.7 --top-k 40 --top-p 0.9 --min-p 0.05 "
            "--seed 3",
            NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char* first = xstrdup(r.out);
    free_run(&r);
    r = run("generate --chat 'Say hi.' -n 4 --temperature 0.7 --top-k 40 --top-p 0.9 --min-p 0.05 --seed 3", NULL);
    ck_assert_str_eq(r.out, first); // same seed, same text
    free(first);
    free_run(&r);
    r = run("generate -p 'one two three four five six seven eight nine ten' --ctx 8", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "context"), "%s", r.err);
    free_run(&r);
    r = run("generate -p hi --device cuda -n 2", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "cuda"));
    free_run(&r);
}
END_TEST

// 'text' for a POSIX shell, single quotes escaped as '\''
static void shell_quote(const char* text, char* out, size_t cap) {
    size_t k = 0;
    out[k++] = '\'';
    for (const char* p = text; *p && k + 5 < cap; p++) {
        if (*p == '\'') {
            memcpy(out + k, "'\\''", 4);
            k += 4;
        } else {
            out[k++] = *p;
        }
    }
    out[k++] = '\'';
    out[k] = '\0';
}

// Greedy `etx generate` prints exactly the text of transformers' greedy continuation
// (tests/scripts/gen_cli_fixtures.py): tokenizer, chat template, forward pass, stop tokens
// and streaming decode end to end.
START_TEST(generate_greedy_matches_transformers) {
    char* json = NULL;
    ck_assert_int_eq(etx_read_file(ETX_FIXTURES "/cli/generate_smollm2.json", &json, NULL).code, ETX_OK);
    cJSON* root = cJSON_Parse(json);
    ck_assert_ptr_nonnull(root);
    const cJSON* cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    ck_assert_int_ge(cJSON_GetArraySize(cases), 6);
    const cJSON* c;
    cJSON_ArrayForEach(c, cases) {
        const char* mode = cJSON_GetObjectItemCaseSensitive(c, "mode")->valuestring;
        const char* text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
        const char* expect = cJSON_GetObjectItemCaseSensitive(c, "expected_stdout")->valuestring;
        int n = cJSON_GetObjectItemCaseSensitive(c, "n")->valueint;
        char quoted[1024], args[1200];
        shell_quote(text, quoted, sizeof quoted);
        snprintf(args, sizeof args, "generate %s %s -n %d", strcmp(mode, "chat") == 0 ? "--chat" : "-p", quoted, n);
        Run r = run(args, NULL);
        ck_assert_msg(r.status == 0, "%s: %s", args, r.err);
        ck_assert_msg(strcmp(r.out, expect) == 0, "%s:\n got: '%s'\nwant: '%s'", args, r.out, expect);
        free_run(&r);
    }
    cJSON_Delete(root);
    free(json);
}
END_TEST

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/etx_test_cli_XXXXXX");
    if (!mkdtemp(g_tmp)) return EXIT_FAILURE;
    Suite* s = suite_create("cli");
    TCase* tc = tcase_create("cli");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, help_everywhere);
    tcase_add_test(tc, bad_options_are_named);
    tcase_add_test(tc, tokenize_and_decode_llama3);
    tcase_add_test(tc, tokenize_gguf_roundtrip);
    tcase_add_test(tc, logits_files);
    tcase_add_test(tc, generate_runs_and_checks_the_context);
    tcase_add_test(tc, generate_greedy_matches_transformers);
    suite_add_tcase(s, tc);
    SRunner* r = srunner_create(s);
    srunner_set_fork_status(r, CK_NOFORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
