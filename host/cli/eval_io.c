/*
 * eval_io.c — the resume scan of `etx eval` and `etx sweep`: which ids (per combination,
 * for a sweep) an existing output file already holds, where a truncated last line (a run
 * killed mid-write) begins, and the totals of the lines kept.
 *
 * Only a file of result lines is resumed: a line that is not one (a notes file given as
 * --out by mistake, eval's file given to sweep) refuses the whole file, since resuming
 * would mean appending to it and cutting what looks torn. A last line without its
 * newline is a torn write only when it starts as every result line does.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "eval.h"

static int cmp_keys(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

static void add_key(EvalDone* d, char* key) {
    d->keys = xrealloc(d->keys, (size_t)(d->n + 1) * sizeof(char*));
    d->keys[d->n++] = key;
}

// Why j is not a result line of this run's kind, or NULL (and *key its resume key).
// eval's lines: {"id", "completion", "tokens", "finish", ...}; a sweep's (n_combos > 0)
// have "combo" first, an integer in [0, n_combos).
static const char* result_shape(const cJSON* j, int n_combos, char** key) {
    *key = NULL;
    if (!cJSON_IsObject(j)) return "not a JSON object";
    const cJSON* combo = cJSON_GetObjectItemCaseSensitive(j, "combo");
    if (n_combos == 0 && combo) return "it has a \"combo\" (a line of etx sweep, not of etx eval)";
    if (n_combos > 0 && !cJSON_IsNumber(combo)) return "no \"combo\" number";
    if (n_combos > 0 && (combo->valuedouble != (double)combo->valueint || combo->valueint < 0 ||
                         combo->valueint >= n_combos))
        return "its \"combo\" is not a combination of this grid";
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "completion"))) return "no \"completion\" string";
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "tokens"))) return "no \"tokens\" number";
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "finish"))) return "no \"finish\" string";
    char* k = eval_id_key(cJSON_GetObjectItemCaseSensitive(j, "id"));
    if (!k) return "no \"id\" (a string or an integer)";
    if (n_combos > 0) {
        *key = eval_combo_key(combo->valueint, k);
        free(k);
    } else {
        *key = k;
    }
    return NULL;
}

int eval_done_read(const char* path, int n_combos, EvalDone* d) {
    memset(d, 0, sizeof *d);
    char* data = NULL;
    size_t len = 0;
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (etx_read_file(path, &data, &len).code != ETX_OK) return -1;
    // what our writer puts first on every line: a torn last line must start like one
    const char* head = n_combos > 0 ? "{\"combo\":" : "{\"id\":";
    int rc = 0, line = 0;
    size_t pos = 0;
    while (pos < len) {
        const char* nl = memchr(data + pos, '\n', len - pos);
        const size_t end = nl ? (size_t)(nl - data) : len;
        line++;
        if (!nl) {
            // the last line has no newline: a write cut short (the run was killed or the
            // disk filled) when it starts as our lines do, else the file is not ours
            const size_t n = end - pos, nh = strlen(head);
            if (memcmp(data + pos, head, n < nh ? n : nh) == 0) {
                d->dropped = 1;
                break;
            }
            snprintf(d->why, sizeof d->why, "line %d is not a result line (nor the start of one)", line);
            rc = -2;
            break;
        }
        cJSON* j = cJSON_ParseWithLength(data + pos, end - pos);
        char* key = NULL;
        const char* why = j ? result_shape(j, n_combos, &key) : "not JSON";
        cJSON_Delete(j);
        if (why) {
            snprintf(d->why, sizeof d->why, "line %d is not a result line of etx %s: %s", line,
                     n_combos > 0 ? "sweep" : "eval", why);
            rc = -2;
            break;
        }
        add_key(d, key);
        pos = end + 1;
        d->good_len = pos;
    }
    free(data);
    // qsort and bsearch need a non-null array even for no elements (UBSan checks it)
    if (d->n > 0) qsort(d->keys, (size_t)d->n, sizeof(char*), cmp_keys);
    return rc;
}

int eval_done_has(const EvalDone* d, const char* key) {
    return d->n > 0 && bsearch(&key, d->keys, (size_t)d->n, sizeof(char*), cmp_keys) != NULL;
}

char* eval_combo_key(int combo, const char* key) {
    size_t n = strlen(key) + 16;
    char* k = xmalloc(n);
    snprintf(k, n, "c%d|%s", combo, key);
    return k;
}

int eval_done_totals(const char* path, size_t good_len, int n_combos, Totals* t) {
    char* data = NULL;
    size_t len = 0;
    if (good_len == 0) return 0;
    if (etx_read_file(path, &data, &len).code != ETX_OK) return -1;
    if (len > good_len) len = good_len;
    for (size_t pos = 0; pos < len;) {
        const char* nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        cJSON* j = cJSON_ParseWithLength(data + pos, end - pos);
        const cJSON* combo = cJSON_GetObjectItemCaseSensitive(j, "combo");
        int c = cJSON_IsNumber(combo) ? combo->valueint : 0;
        if (j && c >= 0 && c < n_combos) {
            const cJSON* tok = cJSON_GetObjectItemCaseSensitive(j, "tokens");
            if (cJSON_IsNumber(tok)) t[c].tokens += tok->valuedouble;
            const cJSON* br = cJSON_GetObjectItemCaseSensitive(j, "branches");
            for (int b = 0; b < ETX_BRANCH_COUNT; b++) {
                const cJSON* v = cJSON_GetObjectItemCaseSensitive(br, etx_branch_name((etx_branch)b));
                if (cJSON_IsNumber(v)) t[c].branches[b] += v->valuedouble;
            }
            const cJSON* sc = cJSON_GetObjectItemCaseSensitive(j, "score");
            if (cJSON_IsObject(sc)) {
                const cJSON* st = cJSON_GetObjectItemCaseSensitive(sc, "strict");
                const cJSON* fl = cJSON_GetObjectItemCaseSensitive(sc, "flexible");
                t[c].scored++;
                t[c].strict += cJSON_IsNumber(st) ? st->valuedouble : 0;
                t[c].flexible += cJSON_IsNumber(fl) ? fl->valuedouble : 0;
                // a sample group's pass@1 and pass@n; a single sample's are its score
                const cJSON* pa = cJSON_GetObjectItemCaseSensitive(j, "pass");
                const cJSON* p1 = cJSON_GetObjectItemCaseSensitive(pa, "pass@1");
                const cJSON* pn = cJSON_GetObjectItemCaseSensitive(pa, "pass@n");
                t[c].pass1 += cJSON_IsNumber(p1) ? p1->valuedouble : cJSON_IsNumber(fl) ? fl->valuedouble : 0;
                t[c].passn += cJSON_IsNumber(pn) ? pn->valuedouble : cJSON_IsNumber(fl) ? fl->valuedouble : 0;
            }
            t[c].done++;
        }
        cJSON_Delete(j);
        pos = end + 1;
    }
    free(data);
    return 0;
}

void eval_done_free(EvalDone* d) {
    for (int i = 0; i < d->n; i++) free(d->keys[i]);
    free(d->keys);
    memset(d, 0, sizeof *d);
}
