/*
 * test_param_docs.c — the parameter table of docs/entropix.md ("## 3. Parameters") says
 * what the policy table (host/policy/policy.c) does: one row per parameter, no other rows,
 * and in every row the default (with "(sample: X)" exactly where the sample kind's default
 * differs), the lower bound ("> x" when open, "x (sample: 0)" where the sample kind also
 * accepts 0, "—" for none) and the upper bound ("< x" when open, "—" for none) equal the
 * table's values. A second test feeds the checker copies of the real table with one cell
 * (or row) wrong and requires a complaint naming that parameter, so the check can fail.
 */
#include <check.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "common.h"
#include "policy/policy.h"

#define DOC_PATH ETX_SOURCE_DIR "/docs/entropix.md"
#define SECTION "## 3. Parameters"
#define NONE_CELL "—" // no bound
#define N_COLS 5      // parameter | default | min | max | meaning
#define MAX_ROWS 128

typedef struct {
    char cell[N_COLS][256];
} Row;

// The section's table rows ("| `name` | ..."), in order; -1 when the section is missing.
static int table_rows(const char* doc, Row* rows, int cap) {
    const char* line = strstr(doc, SECTION "\n");
    if (!line) return -1;
    const char* end = strstr(line, "\n## "); // the next section, or NULL
    int n = 0;
    for (; line && (!end || line < end) && n < cap; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, "| `", 3) != 0) continue;
        const char* eol = strchr(line, '\n');
        const char* stop_row = eol ? eol : line + strlen(line);
        Row* r = &rows[n++];
        memset(r, 0, sizeof *r);
        const char* p = line + 1; // past the leading '|'
        for (int c = 0; c < N_COLS && p < stop_row; c++) {
            const char* bar = memchr(p, '|', (size_t)(stop_row - p));
            const char* stop = bar ? bar : stop_row;
            while (p < stop && *p == ' ') p++;
            const char* q = stop;
            while (q > p && q[-1] == ' ') q--;
            snprintf(r->cell[c], sizeof r->cell[c], "%.*s", (int)(q - p), p);
            p = bar ? bar + 1 : stop;
        }
    }
    return n;
}

// Parses "[prefix]NUMBER[ (sample: NUMBER)]" exactly; returns 0 on a malformed cell.
static int parse_cell(const char* cell, const char* prefix, double* v, int* has_sample, double* sample) {
    const size_t np = strlen(prefix);
    if (np && strncmp(cell, prefix, np) != 0) return 0;
    char* end = NULL;
    *v = strtod(cell + np, &end);
    if (end == cell + np) return 0;
    *has_sample = 0;
    if (*end == '\0') return 1;
    if (strncmp(end, " (sample: ", 10) != 0) return 0;
    const char* s = end + 10;
    *sample = strtod(s, &end);
    if (end == s || strcmp(end, ")") != 0) return 0;
    *has_sample = 1;
    return 1;
}

// Appends one line to err (cap bytes); returns 1, the count of one problem.
__attribute__((format(printf, 3, 4))) static int complain(char* err, size_t cap, const char* fmt, ...) {
    const size_t used = strlen(err);
    if (used + 1 < cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + used, cap - used, fmt, ap);
        va_end(ap);
    }
    return 1;
}

// The expected text of a bound, for messages.
static void bound_text(char* buf, size_t cap, int open, const char* op, double v, int none) {
    if (none) snprintf(buf, cap, NONE_CELL);
    else snprintf(buf, cap, "%s%.17g", open ? op : "", v);
}

// Checks one row against its policy-table entry; returns the number of wrong cells.
static int check_row(const Row* r, const PolicyParam* p, char* err, size_t cap) {
    int bad = 0;
    char want[96];
    double v = 0.0, s = 0.0;
    int has_s = 0;
    // default: the entropix one (every parameter is entropix's); "(sample: X)" when the
    // sample kind has the parameter with another default
    const int sample_differs = p->off_sample >= 0 && p->def_sample != p->def_entropix;
    if (sample_differs) snprintf(want, sizeof want, "%.17g (sample: %.17g)", p->def_entropix, p->def_sample);
    else snprintf(want, sizeof want, "%.17g", p->def_entropix);
    if (!parse_cell(r->cell[1], "", &v, &has_s, &s) || v != p->def_entropix || has_s != sample_differs ||
        (has_s && s != p->def_sample))
        bad += complain(err, cap, "%s: default '%s', want %s\n", p->name, r->cell[1], want);
    // lower bound
    const int lo_none = p->lo == -FLT_MAX, lo_open = (p->flags & PARAM_LO_OPEN) != 0;
    const int zero_off = (p->flags & PARAM_ZERO_OFF) != 0;
    bound_text(want, sizeof want, lo_open, "> ", p->lo, lo_none);
    if (zero_off) strncat(want, " (sample: 0)", sizeof want - strlen(want) - 1);
    if (lo_none) {
        if (strcmp(r->cell[2], NONE_CELL) != 0) bad += complain(err, cap, "%s: min '%s', want %s\n", p->name, r->cell[2], want);
    } else if (!parse_cell(r->cell[2], lo_open ? "> " : "", &v, &has_s, &s) || v != p->lo || has_s != zero_off ||
               (has_s && s != 0.0)) {
        bad += complain(err, cap, "%s: min '%s', want %s\n", p->name, r->cell[2], want);
    }
    // upper bound
    const int hi_none = p->hi == FLT_MAX, hi_open = (p->flags & PARAM_HI_OPEN) != 0;
    bound_text(want, sizeof want, hi_open, "< ", p->hi, hi_none);
    if (hi_none) {
        if (strcmp(r->cell[3], NONE_CELL) != 0) bad += complain(err, cap, "%s: max '%s', want %s\n", p->name, r->cell[3], want);
    } else if (!parse_cell(r->cell[3], hi_open ? "< " : "", &v, &has_s, &s) || v != p->hi || has_s) {
        bad += complain(err, cap, "%s: max '%s', want %s\n", p->name, r->cell[3], want);
    }
    if (r->cell[4][0] == '\0') bad += complain(err, cap, "%s: the meaning is empty\n", p->name);
    return bad;
}

// Checks the whole table of a document's text; returns the number of problems, described
// one per line in err.
static int check_doc(const char* doc, char* err, size_t cap) {
    err[0] = '\0';
    static Row rows[MAX_ROWS];
    const int n = table_rows(doc, rows, MAX_ROWS);
    if (n < 0) return complain(err, cap, "%s: no such section\n", SECTION);
    int bad = 0;
    int seen[MAX_ROWS] = {0};
    for (int i = 0; i < n; i++) {
        const char* c = rows[i].cell[0];
        const size_t len = strlen(c);
        char name[128] = "";
        if (len >= 2 && c[0] == '`' && c[len - 1] == '`') snprintf(name, sizeof name, "%.*s", (int)len - 2, c + 1);
        const PolicyParam* p = policy_param_find(name);
        if (!p) {
            bad += complain(err, cap, "row %s: not a parameter of the policy table\n", c);
            continue;
        }
        const int idx = (int)(p - policy_params);
        if (seen[idx]++) bad += complain(err, cap, "%s: more than one row\n", p->name);
        bad += check_row(&rows[i], p, err, cap);
    }
    for (int i = 0; i < policy_n_params; i++)
        if (!seen[i]) bad += complain(err, cap, "%s: no row\n", policy_params[i].name);
    return bad;
}

static char* read_doc(void) {
    char* text = NULL;
    etx_status st = etx_read_file(DOC_PATH, &text, NULL);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    return text;
}

START_TEST(docs_table_matches_the_policy_table) {
    char* doc = read_doc();
    char err[8192];
    const int bad = check_doc(doc, err, sizeof err);
    ck_assert_msg(bad == 0, "%s disagrees with host/policy/policy.c in %d place(s):\n%s", DOC_PATH, bad, err);
    free(doc);
}
END_TEST

// A copy of doc with cell `col` of the row of `name` replaced by value (col < 0: the row
// removed); NULL when there is no such row.
static char* mutate(const char* doc, const char* name, int col, const char* value) {
    char key[128];
    snprintf(key, sizeof key, "| `%s` |", name);
    const char* row = strstr(doc, key);
    if (!row) return NULL;
    const char* eol = strchr(row, '\n');
    const char* after = eol ? eol : row + strlen(row); // the rest of the document
    char* out = xmalloc(strlen(doc) + strlen(value) + 16);
    if (col < 0) {
        sprintf(out, "%.*s%s", (int)(row - doc), doc, *after ? after + 1 : after);
        return out;
    }
    const char* cell = row;
    for (int c = 0; c <= col; c++) cell = strchr(cell, '|') + 1; // start of cell col
    const char* next = strchr(cell, '|');                        // its end
    sprintf(out, "%.*s %s %s", (int)(cell - doc), doc, value, next);
    return out;
}

START_TEST(the_check_catches_a_wrong_cell) {
    char* doc = read_doc();
    struct {
        const char* name;
        int col; // 0 name, 1 default, 2 min, 3 max; -1: remove the row
        const char* value;
        const char* complaint; // must appear in the checker's report
    } cases[] = {
        {"min_p", 1, "0.05 (sample: 0)", "min_p: default"},
        {"top_k", 1, "27", "top_k: default"},          // the sample default left out
        {"low_ent_thresh", 1, "0.1 (sample: 0)", "low_ent_thresh: default"}, // not a sample parameter
        {"temperature", 2, "0", "temperature: min"},   // the bound is open
        {"top_k", 2, "1", "top_k: min"},               // sample accepts 0
        {"n_adaptive_samples", 3, "65", "n_adaptive_samples: max"},
        {"min_p", 3, "1", "min_p: max"},               // the bound is open
        {"ada_top_p", 2, "0", "ada_top_p: min"},       // no bound
        {"attn_window", 3, NONE_CELL, "attn_window: max"},
        {"seed", -1, "", "seed: no row"},
        {"pause_token", 0, "`pause_tokn`", "not a parameter"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char* bad_doc = mutate(doc, cases[i].name, cases[i].col, cases[i].value);
        ck_assert_msg(bad_doc != NULL, "%s has no row for %s", DOC_PATH, cases[i].name);
        char err[8192];
        const int bad = check_doc(bad_doc, err, sizeof err);
        ck_assert_msg(bad > 0 && strstr(err, cases[i].complaint) != NULL,
                      "case %zu (%s, column %d = '%s'): expected a complaint '%s', got %d: %s", i, cases[i].name,
                      cases[i].col, cases[i].value, cases[i].complaint, bad, err);
        free(bad_doc);
    }
    // a document without the section
    char err[256];
    ck_assert_int_eq(check_doc("# nothing here\n", err, sizeof err), 1);
    free(doc);
}
END_TEST

int main(void) {
    Suite* s = suite_create("param_docs");
    TCase* tc = tcase_create("param_docs");
    tcase_add_test(tc, docs_table_matches_the_policy_table);
    tcase_add_test(tc, the_check_catches_a_wrong_cell);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
