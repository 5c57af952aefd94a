/*
 * eval_io.c — the resume scan of `etx eval` and `etx sweep`: which ids (per combination,
 * for a sweep) an existing output file already holds, where a truncated last line (a run
 * killed mid-write) begins, and the totals of the lines kept.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "eval.h"

static int cmp_keys(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

static void add_key(EvalDone* d, char* key) {
    d->keys = xrealloc(d->keys, (size_t)(d->n + 1) * sizeof(char*));
    d->keys[d->n++] = key;
}

int eval_done_read(const char* path, EvalDone* d) {
    memset(d, 0, sizeof *d);
    char* data = NULL;
    size_t len = 0;
    FILE* f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : -1;
    fclose(f);
    if (etx_read_file(path, &data, &len).code != ETX_OK) return -1;
    size_t pos = 0;
    while (pos < len) {
        const char* nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        cJSON* j = cJSON_ParseWithLength(data + pos, end - pos);
        const cJSON* id = j ? cJSON_GetObjectItemCaseSensitive(j, "id") : NULL;
        char* key = id ? eval_id_key(id) : NULL;
        const cJSON* combo = j ? cJSON_GetObjectItemCaseSensitive(j, "combo") : NULL;
        if (key && cJSON_IsNumber(combo)) { // a sweep's line: the key names its combination too
            char* k = eval_combo_key(combo->valueint, key);
            free(key);
            key = k;
        }
        if (!nl || !key) {
            if (!nl || end + 1 >= len) { // the last line: a truncated write
                cJSON_Delete(j);
                free(key);
                d->dropped = 1;
                break;
            }
            d->bad_lines++;
        } else {
            add_key(d, key);
        }
        cJSON_Delete(j);
        pos = end + 1;
        d->good_len = pos;
    }
    free(data);
    qsort(d->keys, (size_t)d->n, sizeof(char*), cmp_keys);
    return 0;
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
