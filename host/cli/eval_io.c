/*
 * eval_io.c — the resume scan of `etx eval`: which ids an existing output file already
 * holds, and where a truncated last line (a run killed mid-write) begins.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "eval.h"

char* eval_id_key(const cJSON* id); // eval.c

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
    return 0;
}

int eval_done_has(const EvalDone* d, const char* key) {
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->keys[i], key) == 0) return 1;
    return 0;
}

void eval_done_free(EvalDone* d) {
    for (int i = 0; i < d->n; i++) free(d->keys[i]);
    free(d->keys);
    memset(d, 0, sizeof *d);
}
