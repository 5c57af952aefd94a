/*
 * test_cli.c — the etx command line, run as a user runs it: help on every subcommand,
 * errors that name the bad option or value (exit 2), tokenize/decode, logits files of the
 * right size, generate end to end on the default model, the greedy text of
 * `etx generate` equal to transformers' on the same prompts (fixture from
 * tests/scripts/gen_cli_fixtures.py), and entropix traces with the --stats branch mix.
 * The exit_codes case: the exit-code rule of docs/commands.md for generate, logits and
 * tokenize (2 refused before the model loads or right after it, 1 a failed run: an
 * output on /dev/full), --threads bounded by the CPUs, the KV pool options, tokenize's
 * bounded stdin and its --decode of NUL bytes.
 */
#include <check.h>
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#include "cli_run.h"

// Runs `etx ARGS` (a shell fragment) with optional stdin text.
static Run run(const char* args, const char* input) { return run_program(ETX_CLI, args, input); }

#define LLAMA3_TOK ETX_FIXTURES "/tokenizer/llama3/tokenizer.json"

START_TEST(help_everywhere) {
    const char* cmds[] = {"--help",      "generate --help", "tokenize --help", "logits --help",
                          "generate -h", "eval --help",     "bench --help",    "serve --help"};
    for (int i = 0; i < 8; i++) {
        Run r = run(cmds[i], NULL);
        ck_assert_msg(r.status == 0, "%s: exit %d", cmds[i], r.status);
        ck_assert_msg(strstr(r.out, "usage: etx"), "%s: %s", cmds[i], r.out);
        free_run(&r);
    }
    Run r = run("generate --help", NULL);
    ck_assert_ptr_nonnull(strstr(r.out, "--top-p"));
    ck_assert_ptr_nonnull(strstr(r.out, "--chat"));
    free_run(&r);
    r = run("eval --help", NULL); // the same policy flags as generate
    ck_assert_ptr_nonnull(strstr(r.out, "--low-ent-thresh"));
    ck_assert_ptr_nonnull(strstr(r.out, "--on-bad-line"));
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
        {"serve --port 70000", "--port must be 0..65535"},
        {"serve --max-n 0", "--max-n 1..4096"},
        {"serve --max-body 10", "--max-body >= 64"},
        {"serve --policy beam", "unknown policy 'beam'"},
        {"serve --host localhost-ish", "is not an IPv4 or IPv6 address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Run r = run(cases[i].args, NULL);
        ck_assert_msg(r.status == 2, "%s: exit %d (stderr: %s)", cases[i].args, r.status, r.err);
        ck_assert_msg(strstr(r.err, cases[i].expect), "%s: stderr '%s' lacks '%s'", cases[i].args, r.err,
                      cases[i].expect);
        free_run(&r);
    }
    // --device cuda where it cannot run (no GPU here, or no CUDA backend in this build):
    // an error naming the device and the way out, not a crash
    if (system("nvidia-smi -L > /dev/null 2>&1") != 0) {
        Run r = run("generate -p hi -n 1 --device cuda", NULL);
        ck_assert_msg(r.status != 0, "generate --device cuda without a GPU exited 0");
        ck_assert_msg(strstr(r.err, "device cuda") && strstr(r.err, "--device cpu"), "stderr: %s", r.err);
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
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "999999 is outside the vocabulary"));
    free_run(&r);
    r = run("tokenize -m /nonexistent/tokenizer.json", "x");
    ck_assert_int_eq(r.status, 2);
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
    snprintf(out, sizeof out, "%s/logits.bin", cli_run_dir);
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
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "49152"));
    free_run(&r);
    snprintf(args, sizeof args, "logits -m /no/such/model --ids 1 --out '%s'", out);
    r = run(args, NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "/no/such/model"));
    free_run(&r);
}
END_TEST

START_TEST(generate_runs_and_checks_the_context) {
    Run r = run("generate -p 'The capital of France is' -n 6 --stats", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_gt(strlen(r.out), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "tok/s"));
    // the decode steps' CPU time per token (5 tokens after the first): a positive number
    const char* cpu = strstr(r.err, "tok/s, ");
    double cpu_s = -1.0;
    ck_assert_msg(cpu && sscanf(cpu, "tok/s, %lf CPU s per token", &cpu_s) == 1 && cpu_s > 0.0, "%s", r.err);
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
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "context"), "%s", r.err);
    free_run(&r);
    if (system("nvidia-smi -L > /dev/null 2>&1") != 0) { // a device that cannot run here is refused
        r = run("generate -p hi --device cuda -n 2", NULL);
        ck_assert_int_eq(r.status, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "cuda"));
        free_run(&r);
    }
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

START_TEST(entropix_flags_files_and_errors) {
    struct {
        const char* args;
        const char* expect;
    } bad[] = {
        {"generate -p hi --policy entropix --low-ent-thresh -1", "--low-ent-thresh must be >= 0"},
        {"generate -p hi --n-adaptive-samples 100", "1..64"},
        {"generate -p hi --policy entropix --top-k 0", "1..1000000"},
        {"generate -p hi --policy sample --attn-window 5", "entropix parameter"},
        {"generate -p hi --policy-file /nonexistent/policy.json", "/nonexistent/policy.json"},
        {"generate -p hi --policy sample --policy-file '" ETX_FIXTURES "/policy/reference.json'",
         "\"policy\": \"entropix\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Run r = run(bad[i].args, NULL);
        ck_assert_msg(r.status == 2, "%s: exit %d (stderr: %s)", bad[i].args, r.status, r.err);
        ck_assert_msg(strstr(r.err, bad[i].expect), "%s: stderr '%s' lacks '%s'", bad[i].args, r.err, bad[i].expect);
        free_run(&r);
    }
    Run r = run("generate --help", NULL);
    ck_assert_ptr_nonnull(strstr(r.out, "--lehv-interaction-strength-offset"));
    ck_assert_ptr_nonnull(strstr(r.out, "--attn-window"));
    ck_assert_ptr_nonnull(strstr(r.out, "--pause-token"));
    ck_assert_ptr_nonnull(strstr(r.out, "(default 0.1; >= 0)"));
    free_run(&r);
    // the same policy three ways gives the same text
    r = run("generate --chat 'Name a fruit.' -n 12 --seed 4 --policy entropix", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char* a = xstrdup(r.out);
    free_run(&r);
    r = run("generate --chat 'Name a fruit.' -n 12 --seed 4 --policy-file '" ETX_FIXTURES "/policy/reference.json'", NULL);
    ck_assert_str_eq(r.out, a);
    free_run(&r);
    r = run("generate --chat 'Name a fruit.' -n 12 --seed 4 --low-ent-thresh 0.1", NULL);
    ck_assert_str_eq(r.out, a);
    free_run(&r);
    free(a);
}
END_TEST

// Counts the lines of a file that parse as JSON objects with every trace key; returns
// the number of distinct branches seen through *branches.
static int check_trace(const char* path, int* branches, const char* only_branch) {
    char* data = cli_slurp(path);
    const char* keys[] = {"request", "step", "token", "text", "branch", "entropy", "varentropy", "attn_entropy",
                          "attn_varentropy", "agreement", "interaction", "temperature", "top_k", "top_p", "min_p",
                          "logprob"};
    char seen[8][16];
    int n_seen = 0, lines = 0;
    for (char* line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON* rec = cJSON_Parse(line);
        ck_assert_msg(rec != NULL, "trace line %d is not JSON: %s", lines + 1, line);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            ck_assert_msg(cJSON_GetObjectItemCaseSensitive(rec, keys[k]), "trace line %d lacks %s", lines + 1, keys[k]);
        ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(rec, "step")->valueint, lines);
        const char* b = cJSON_GetObjectItemCaseSensitive(rec, "branch")->valuestring;
        if (only_branch) ck_assert_str_eq(b, only_branch);
        int known = 0;
        for (int i = 0; i < n_seen; i++) known |= strcmp(seen[i], b) == 0;
        if (!known && n_seen < 8) snprintf(seen[n_seen++], sizeof seen[0], "%s", b);
        cJSON_Delete(rec);
        lines++;
    }
    free(data);
    *branches = n_seen;
    return lines;
}

// The branch mix that --stats prints ("etx: branches over N tokens: lehv 18 (64.3%) hehv 10
// (35.7%)", what scripts/quickstart.sh shows a newcomer): known branch names, counts that
// add up to N with their percentages, and for each branch exactly as many trace records.
static void check_branch_mix(const char* err, int n_tokens, const char* trace_path) {
    const char* line = strstr(err, "etx: branches over ");
    ck_assert_msg(line != NULL, "no branch mix in: %s", err);
    char* p = NULL;
    ck_assert_int_eq((int)strtol(line + strlen("etx: branches over "), &p, 10), n_tokens);
    ck_assert_msg(strncmp(p, " tokens:", 8) == 0, "branch mix: %s", line);
    p += 8;
    char* trace = NULL;
    ck_assert_int_eq(etx_read_file(trace_path, &trace, NULL).code, ETX_OK);
    int total = 0, n_branches = 0;
    while (*p == ' ') {
        char name[32];
        int count = 0, used = 0;
        double pct = 0.0;
        ck_assert_msg(sscanf(p, " %31s %d (%lf%%)%n", name, &count, &pct, &used) == 3, "branch mix: %s", line);
        int known = 0;
        for (int b = 0; b < ETX_BRANCH_COUNT; b++) known |= strcmp(name, etx_branch_name((etx_branch)b)) == 0;
        ck_assert_msg(known && count > 0, "branch mix names '%s' %d: %s", name, count, line);
        ck_assert_msg(fabs(pct - 100.0 * count / n_tokens) <= 0.051, "branch mix: %s %d is not %.1f%%", name, count, pct);
        char key[64];
        snprintf(key, sizeof key, "\"branch\":\"%s\"", name);
        int in_trace = 0;
        for (const char* t = strstr(trace, key); t; t = strstr(t + 1, key)) in_trace++;
        ck_assert_msg(in_trace == count, "branch mix says %s %d, the trace has %d", name, count, in_trace);
        total += count;
        n_branches++;
        p += used;
    }
    ck_assert_msg(*p == '\n' && n_branches > 0, "branch mix: %s", line);
    ck_assert_int_eq(total, n_tokens);
    free(trace);
}

START_TEST(entropix_trace_and_stats) {
    char args[600], trace[300];
    snprintf(trace, sizeof trace, "%s/trace.jsonl", cli_run_dir);
    snprintf(args, sizeof args,
             "generate --chat 'Which number is larger, 9.9 or 9.11?' --policy entropix -n 40 --seed 1 --ignore-eos "
             "--trace '%s' --stats",
             trace);
    Run r = run(args, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    check_branch_mix(r.err, 40, trace);
    ck_assert_ptr_nonnull(strstr(r.err, "means:"));
    free_run(&r);
    int branches = 0;
    ck_assert_int_eq(check_trace(trace, &branches, NULL), 40);
    ck_assert_int_ge(branches, 2);
    // without --policy the trace says greedy
    snprintf(args, sizeof args, "generate -p 'The sky is' -n 5 --ignore-eos --trace '%s'", trace);
    r = run(args, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    free_run(&r);
    ck_assert_int_eq(check_trace(trace, &branches, "greedy"), 5);
}
END_TEST

// ----------------------------------------------------------------------------
// the exit-code rule (docs/commands.md, "Exit status"): 2 = refused before any work, 1 =
// the run failed, for generate, logits and tokenize

typedef struct {
    const char* args;   // after "etx "
    const char* input;  // stdin, or NULL
    int status;         // the exit code expected
    const char* expect; // in stderr
} ExitCase;

static void check_exit_cases(const ExitCase* cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        Run r = run(cases[i].args, cases[i].input);
        ck_assert_msg(r.status == cases[i].status, "etx %s: exit %d, expected %d (stderr: %s)", cases[i].args,
                      r.status, cases[i].status, r.err);
        ck_assert_msg(strstr(r.err, cases[i].expect), "etx %s: stderr '%s' lacks '%s'", cases[i].args, r.err,
                      cases[i].expect);
        free_run(&r);
    }
}

// Runs `etx ARGS` with its stdout on /dev/full (a disk that is full).
static Run run_to_full_disk(const char* args, const char* input) {
    char a[1024];
    snprintf(a, sizeof a, "-c 'exec \"$0\" %s > /dev/full' '%s'", args, ETX_CLI);
    return run_program("/bin/sh", a, input);
}

// Ranges checked before the model is loaded: with a model that does not exist, the
// option is what is named (a check after loading would report the model instead).
#define NO_MODEL "-m /nonexistent/model.gguf "

START_TEST(generate_exit_codes) {
    const ExitCase cases[] = {
        // before the model loads
        {"generate " NO_MODEL "-p hi --threads 100000", NULL, 2, "--threads must be 0 (all CPUs) or 1.."},
        {"generate " NO_MODEL "-p hi --threads -1", NULL, 2, "--threads must be"},
        {"generate " NO_MODEL "-p hi --ctx -1", NULL, 2, "--ctx must be >= 2"},
        {"generate " NO_MODEL "-p hi --kv-blocks -1", NULL, 2, "--kv-blocks must be >= 1"},
        {"generate " NO_MODEL "-p hi --kv-block-size 513", NULL, 2, "--kv-block-size must be 1..512"},
        {"generate " NO_MODEL "-p hi -n 0", NULL, 2, "--max-tokens must be >= 1"},
        {"generate " NO_MODEL "-p hi", NULL, 2, "/nonexistent/model.gguf"},
        {"generate -m /dev/zero -p hi", NULL, 2, "/dev/zero is neither a model directory nor a regular file"},
        // after it loads, before the engine: what only the model can tell
        {"generate -p hi --ctx 100000", NULL, 2, "--ctx 100000 exceeds the model's context of 8192"},
        {"generate -p 'one two three four five six seven eight nine ten' --ctx 8", NULL, 2,
         "the prompt has 10 tokens but the context holds 8"},
        {"generate -p hi --policy entropix --pause-token 49152", NULL, 2,
         "pause_token 49152 (--pause-token) is outside the vocabulary (0..49151)"},
        {"generate -p hi --ctx 64 --kv-blocks 3 --kv-block-size 16", NULL, 2,
         "cannot hold one request's context of 64 tokens"},
        // the run failed: an output that cannot be written
        {"generate -p hi -n 2 --trace /dev/full", NULL, 1, "writing the trace file /dev/full failed"},
    };
    check_exit_cases(cases, sizeof cases / sizeof cases[0]);
    // an input that is a FIFO is refused, not waited on (a timeout would say 124)
    char fifo[300], args[600];
    cli_tmp_path(fifo, sizeof fifo, "policy.fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    snprintf(args, sizeof args, "generate " NO_MODEL "-p hi --policy-file '%s'", fifo);
    Run r = run_prefixed("timeout 60", ETX_CLI, args, NULL);
    ck_assert_msg(r.status == 2, "--policy-file FIFO: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "is not a regular file (a pipe)"), "%s", r.err);
    free_run(&r);
    snprintf(args, sizeof args, "generate -m '%s' -p hi", fifo);
    r = run_prefixed("timeout 60", ETX_CLI, args, NULL);
    ck_assert_msg(r.status == 2, "-m FIFO: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "neither a model directory nor a regular file"), "%s", r.err);
    free_run(&r);
    snprintf(args, sizeof args, "tokenize -m '%s'", fifo);
    r = run_prefixed("timeout 60", ETX_CLI, args, "x");
    ck_assert_msg(r.status == 2, "tokenize -m FIFO: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "is not a regular file (a pipe)"), "%s", r.err);
    free_run(&r);
    unlink(fifo);
    r = run_to_full_disk("generate -p hi -n 2", NULL);
    ck_assert_msg(r.status == 1, "generate > /dev/full: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "writing to stdout failed"), "%s", r.err);
    free_run(&r);
    // the KV options reach the engine: a pool of exactly one context runs
    r = run("generate -p 'The capital of France is' -n 6 --ctx 32 --kv-blocks 4 --kv-block-size 8", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    Run d = run("generate -p 'The capital of France is' -n 6", NULL);
    ck_assert_str_eq(r.out, d.out);
    free_run(&d);
    free_run(&r);
}
END_TEST

START_TEST(logits_exit_codes) {
    // more ids than the model's context (8192)
    char* many = xmalloc(8193 * 2 + 64);
    size_t k = (size_t)snprintf(many, 64, "logits --out /dev/null --ids '");
    for (int i = 0; i < 8193; i++) many[k++] = '1', many[k++] = ' ';
    many[k++] = '\'';
    many[k] = '\0';
    const ExitCase cases[] = {
        {"logits " NO_MODEL "--ids 1 --out /dev/null --threads 100000", NULL, 2, "--threads must be"},
        {"logits " NO_MODEL "--ids 1 --out /dev/null --device gpu", NULL, 2, "unknown device 'gpu'"},
        {"logits " NO_MODEL "--ids 1 --out /dev/null", NULL, 2, "/nonexistent/model.gguf"},
        {"logits --ids '1 49152' --out /dev/null", NULL, 2, "49152 is outside the vocabulary (0..49151)"},
        {many, NULL, 2, "8193 tokens exceed the model's context of 8192"},
        {"logits --ids '1 504' --out /dev/full", NULL, 1, "error writing /dev/full"},
    };
    check_exit_cases(cases, sizeof cases / sizeof cases[0]);
    free(many);
}
END_TEST

START_TEST(tokenize_exit_codes) {
    char big[300], args[600];
    const ExitCase cases[] = {
        {"tokenize -m /nonexistent/tokenizer.json", "x", 2, "/nonexistent/tokenizer.json"},
        {"tokenize -m /dev", "x", 2, "/dev/tokenizer.json"},
        {"tokenize --decode", "104 190 99999", 2, "token id #3: 99999 is outside the vocabulary (0..49151)"},
        {"tokenize --decode", "104 x", 2, "token id #2: 'x' is not an integer"},
    };
    check_exit_cases(cases, sizeof cases / sizeof cases[0]);
    // stdin that cannot be read (a directory)
    Run r = run_program("/bin/sh", "-c 'exec \"$0\" tokenize < /' '" ETX_CLI "'", NULL);
    ck_assert_msg(r.status == 2, "tokenize < /: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "cannot read stdin"), "%s", r.err);
    free_run(&r);
    // stdin larger than the 4 GiB etx reads (a sparse file: nothing is written to disk)
    cli_tmp_path(big, sizeof big, "big.txt");
    FILE* f = fopen(big, "wb");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(truncate(big, (off_t)5 << 30), 0);
    snprintf(args, sizeof args, "-c 'exec \"$0\" tokenize < \"%s\"' '%s'", big, ETX_CLI);
    r = run_program("/bin/sh", args, NULL);
    ck_assert_msg(r.status == 2, "tokenize < 5 GiB: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "stdin holds 5368709120 bytes, more than"), "%s", r.err);
    free_run(&r);
    unlink(big);
    // the run failed: stdout cannot be written
    r = run_to_full_disk("tokenize", "Hello world");
    ck_assert_msg(r.status == 1, "tokenize > /dev/full: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "writing to stdout failed"), "%s", r.err);
    free_run(&r);
}
END_TEST

// A token that decodes to a NUL byte (SmolLM2's byte-level token 190 is the byte 0x00)
// is written whole, and the ids after it are decoded and checked; a NUL byte in the
// id text is an error, not the end of the input.
START_TEST(tokenize_decode_nul) {
    Run r = run("tokenize", "x");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_str_eq(r.out, "104\n");
    free_run(&r);
    r = run("tokenize --decode", "190");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(r.out[0], '\0'); // cli_slurp: the one byte written, then the terminator
    free_run(&r);
    // the bytes after the NUL: written to a file and compared whole
    char path[300], args[600];
    cli_tmp_path(path, sizeof path, "nul.out");
    snprintf(args, sizeof args, "-c 'exec \"$0\" tokenize --decode > \"%s\"' '%s'", path, ETX_CLI);
    r = run_program("/bin/sh", args, "104 190 105 190 190 104");
    ck_assert_msg(r.status == 0, "%s", r.err);
    free_run(&r);
    char* data = NULL;
    size_t len = 0;
    ck_assert_int_eq(etx_read_file(path, &data, &len).code, ETX_OK);
    ck_assert_uint_eq(len, 6);
    ck_assert(memcmp(data, "x\0y\0\0x", 6) == 0);
    free(data);
    // a NUL byte in the ids: named, and nothing is decoded
    snprintf(args, sizeof args, "-c 'printf \"104 190\\000 99999\" | exec \"$0\" tokenize --decode' '%s'", ETX_CLI);
    r = run_program("/bin/sh", args, NULL);
    ck_assert_msg(r.status == 2, "NUL in the ids: exit %d (stderr: %s)", r.status, r.err);
    ck_assert_msg(strstr(r.err, "token id #2: a NUL byte at byte 7 of the input"), "%s", r.err);
    ck_assert_str_eq(r.out, "");
    free_run(&r);
}
END_TEST

int main(void) {
    if (cli_run_setup("/tmp/etx_test_cli_XXXXXX") != 0) return EXIT_FAILURE;
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
    tcase_add_test(tc, entropix_flags_files_and_errors);
    tcase_add_test(tc, entropix_trace_and_stats);
    suite_add_tcase(s, tc);
    TCase* ex = tcase_create("exit_codes");
    tcase_set_timeout(ex, 600);
    tcase_add_test(ex, generate_exit_codes);
    tcase_add_test(ex, logits_exit_codes);
    tcase_add_test(ex, tokenize_exit_codes);
    tcase_add_test(ex, tokenize_decode_nul);
    suite_add_tcase(s, ex);
    const int rc = check_run_suite_nofork(s); // the suites start programs: no fork on top of them
    cli_run_cleanup();
    return rc;
}
