/*
 * cli_run.h — running a program as a user runs it, for the command-line test suites
 * (test_cli, test_bench, test_eval, test_sweep): a shell fragment with optional stdin
 * text, optionally under a launcher (mpirun), its exit code, stdout and stderr captured
 * through files in a scratch directory the suite owns (cli_run_dir, set up once).
 */
#ifndef ETX_TESTS_CLI_RUN_H
#define ETX_TESTS_CLI_RUN_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "check_main.h"
#include "common.h"

typedef struct {
    int status; // exit code (-1: killed by a signal)
    char* out;  // stdout
    char* err;  // stderr
} Run;

static char cli_run_dir[256];

static inline char* cli_slurp(const char* path) {
    char* data = NULL;
    if (etx_read_file(path, &data, NULL).code != ETX_OK) data = xstrdup("");
    return data;
}

// File contents, or NULL when it cannot be read.
static inline char* cli_read_or_null(const char* path) {
    char* data = NULL;
    if (etx_read_file(path, &data, NULL).code != ETX_OK) data = NULL;
    return data;
}

// Writes text to path (replacing it); fails the test when it cannot.
static inline void cli_write_text(const char* path, const char* text) {
    FILE* f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

// out <- "<scratch dir>/name"
static inline void cli_tmp_path(char* out, size_t cap, const char* name) { snprintf(out, cap, "%s/%s", cli_run_dir, name); }

// Runs `PREFIX 'PROGRAM' ARGS` (PREFIX: "" or a launcher, e.g. an mpirun line; ARGS a
// shell fragment) with input (may be NULL) on stdin.
static inline Run run_prefixed(const char* prefix, const char* program, const char* args, const char* input) {
    char in_path[300], out_path[300], err_path[300];
    snprintf(in_path, sizeof in_path, "%s/stdin", cli_run_dir);
    snprintf(out_path, sizeof out_path, "%s/stdout", cli_run_dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", cli_run_dir);
    FILE* f = fopen(in_path, "wb");
    if (f) {
        if (input) fputs(input, f);
        fclose(f);
    }
    const char* fmt = "%s '%s' %s < '%s' > '%s' 2> '%s'";
    const int len = snprintf(NULL, 0, fmt, prefix, program, args, in_path, out_path, err_path);
    char* cmd = xmalloc((size_t)len + 1);
    snprintf(cmd, (size_t)len + 1, fmt, prefix, program, args, in_path, out_path, err_path);
    int st = system(cmd);
    free(cmd);
    Run r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = cli_slurp(out_path);
    r.err = cli_slurp(err_path);
    return r;
}

static inline Run run_program(const char* program, const char* args, const char* input) {
    return run_prefixed("", program, args, input);
}

static inline void free_run(Run* r) {
    free(r->out);
    free(r->err);
}

// Creates the scratch directory (template like "/tmp/etx_test_cli_XXXXXX"); 0 on success.
static inline int cli_run_setup(const char* tmpl) {
    snprintf(cli_run_dir, sizeof cli_run_dir, "%s", tmpl);
    return mkdtemp(cli_run_dir) ? 0 : -1;
}

static inline void cli_run_cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cli_run_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cli_run_dir);
}

#endif // ETX_TESTS_CLI_RUN_H
