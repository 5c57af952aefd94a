/*
 * fuzz_resume.c — libFuzzer target: the output file `etx eval` and `etx sweep` resume
 * from (eval_done_read and eval_done_totals in host/cli/eval_io.c, through host/cli/eval.h).
 *
 * The input is a whole results file (JSON lines, possibly cut off mid-write), read as
 * eval's output and as a sweep's. Invariants: an existing file is read as results (0) or
 * refused with a reason (-2: a line that is not a result); the length to keep ends at a
 * line boundary and inside the file and every kept line is exactly one key; the keys are
 * sorted and each is found by eval_done_has; the totals of the kept lines count at most
 * one "done" per kept line. Seeds: result lines of the
 * command-line tests' formats, whole and truncated (tests/scripts/gen_fuzz_corpus.py).
 */
#include <stdint.h>
#include <string.h>

#include "eval.h"
#include "util.h"

#define N_COMBOS 4

// One reading of the file as eval's (n_combos 0) or a sweep's output.
static void check_mode(const char* path, const uint8_t* data, size_t size, int n_combos) {
    EvalDone d;
    const int rc = eval_done_read(path, n_combos, &d);
    // an existing file is always read: either a file of results or one that is refused
    // with a reason
    FUZZ_CHECK(rc == 0 || rc == -2);
    FUZZ_CHECK(rc == 0 || d.why[0] != '\0');
    FUZZ_CHECK(d.good_len <= size);
    FUZZ_CHECK(d.good_len == 0 || data[d.good_len - 1] == '\n');
    size_t kept_lines = 0;
    for (size_t i = 0; i < d.good_len; i++) kept_lines += data[i] == '\n';
    // every kept line is one result (nothing is kept that is not one)
    FUZZ_CHECK(d.n >= 0 && (size_t)d.n == kept_lines);
    for (int i = 0; i < d.n; i++) {
        FUZZ_CHECK(i == 0 || strcmp(d.keys[i - 1], d.keys[i]) <= 0);
        FUZZ_CHECK(eval_done_has(&d, d.keys[i]));
    }
    if (rc == 0) {
        Totals t[N_COMBOS];
        memset(t, 0, sizeof t);
        FUZZ_CHECK(eval_done_totals(path, d.good_len, N_COMBOS, t) == 0);
        double done = 0;
        for (int c = 0; c < N_COMBOS; c++) done += t[c].done;
        FUZZ_CHECK(done <= (double)kept_lines);
    }
    eval_done_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const char* path = fuzz_file(data, size);
    check_mode(path, data, size, 0);
    check_mode(path, data, size, N_COMBOS);
    return 0;
}
