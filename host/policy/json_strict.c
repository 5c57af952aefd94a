/*
 * json_strict.c — strict JSON reading (json_strict.h): one value per text, error
 * positions, repeated and unknown keys, type names.
 */
#include <stdio.h>
#include <string.h>

#include "policy/json_strict.h"

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// err->line and err->column of err->byte
static void locate(const char* text, JsonStrictError* err) {
    err->line = 1;
    err->column = 1;
    for (size_t i = 0; i < err->byte; i++) {
        if (text[i] == '\n') err->line++, err->column = 1;
        else err->column++;
    }
}

// One open container while scanning for a NUL: an object (with the key being read or
// last read) or an array (with the index of its current element).
#define NUL_MAX_DEPTH 32 // deeper containers are scanned but not named in the path
typedef struct {
    int is_array;
    int index;      // arrays: the current element
    int want_key;   // objects: the next string is a key
    char key[40];   // objects: the current key, cut to fit
} NulFrame;

// "a.b[2].c" from the open containers
static void nul_path(const NulFrame* st, int depth, char* out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < depth && i < NUL_MAX_DEPTH; i++) {
        int w;
        if (st[i].is_array) w = snprintf(out + n, cap - n, "[%d]", st[i].index);
        else if (st[i].want_key) break; // between members: the object itself
        else w = snprintf(out + n, cap - n, "%s%s", n ? "." : "", st[i].key);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

int json_find_nul(const char* text, size_t len, JsonStrictError* err) {
    NulFrame st[NUL_MAX_DEPTH];
    int depth = 0;      // open containers (may exceed NUL_MAX_DEPTH)
    int in_string = 0;  // inside "..."
    int is_key = 0;     // the string being read is an object key
    size_t key_len = 0; // bytes of it kept
    for (size_t i = 0; i < len; i++) {
        const char c = text[i];
        size_t at = i;
        int found = c == '\0';
        if (!found && in_string && c == '\\' && i + 1 < len) {
            // an escape: \u0000 is the NUL; any other escape is skipped whole
            if (text[i + 1] == 'u' && i + 5 < len && memcmp(text + i + 2, "0000", 4) == 0) found = 1;
            i++;
            if (!found) {
                if (is_key && key_len + 1 < sizeof st[0].key) st[depth - 1].key[key_len++] = text[i];
                continue;
            }
        }
        if (found) {
            memset(err, 0, sizeof *err);
            err->byte = at;
            err->nul = 1;
            locate(text, err);
            if (is_key) { // a NUL in a key: name the object
                st[depth - 1].want_key = 1;
            }
            nul_path(st, depth, err->path, sizeof err->path);
            return 1;
        }
        if (in_string) {
            if (c == '"') {
                in_string = 0;
                if (is_key && depth >= 1 && depth <= NUL_MAX_DEPTH) {
                    st[depth - 1].key[key_len] = '\0';
                    st[depth - 1].want_key = 0;
                }
                is_key = 0;
            } else if (is_key && depth <= NUL_MAX_DEPTH && key_len + 1 < sizeof st[0].key) {
                st[depth - 1].key[key_len++] = c;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_string = 1;
            is_key = depth >= 1 && depth <= NUL_MAX_DEPTH && !st[depth - 1].is_array && st[depth - 1].want_key;
            key_len = 0;
            break;
        case '{':
        case '[':
            if (depth < NUL_MAX_DEPTH) st[depth] = (NulFrame){.is_array = c == '[', .want_key = c == '{'};
            depth++;
            break;
        case '}':
        case ']':
            if (depth > 0) depth--;
            break;
        case ',':
            if (depth >= 1 && depth <= NUL_MAX_DEPTH) {
                if (st[depth - 1].is_array) st[depth - 1].index++;
                else st[depth - 1].want_key = 1;
            }
            break;
        default: break;
        }
    }
    return 0;
}

cJSON* json_strict_parse(const char* text, size_t len, JsonStrictError* err) {
    memset(err, 0, sizeof *err);
    if (json_find_nul(text, len, err)) return NULL;
    const char* end = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t off = len;
    if (root) {
        off = (size_t)(end - text);
        while (off < len && is_space(text[off])) off++;
        if (off == len) return root;
        cJSON_Delete(root);
        root = NULL;
        err->trailing = 1;
    } else {
        // cJSON points at the byte where parsing failed
        const char* at = end ? end : cJSON_GetErrorPtr();
        if (at && at >= text && at <= text + len) off = (size_t)(at - text);
    }
    err->byte = off;
    locate(text, err);
    return NULL;
}

void json_strict_describe(const JsonStrictError* err, char* buf, size_t cap) {
    if (err->nul)
        snprintf(buf, cap, "a NUL character (\\u0000) in %s at byte %zu (line %d, column %d): NUL cannot be part of a "
                 "text etx runs", err->path[0] ? err->path : "the top-level value", err->byte, err->line,
                 err->column);
    else if (err->trailing)
        snprintf(buf, cap, "malformed JSON: unexpected text after the value at byte %zu (line %d, column %d)", err->byte,
                 err->line, err->column);
    else
        snprintf(buf, cap, "malformed JSON at byte %zu (line %d, column %d)", err->byte, err->line, err->column);
}

const char* json_type_name(const cJSON* v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNumber(v)) return "a number";
    return "something else";
}

const char* json_repeated_key(const cJSON* o) {
    for (const cJSON* a = o->child; a; a = a->next)
        for (const cJSON* b = o->child; b != a; b = b->next)
            if (strcmp(a->string, b->string) == 0) return a->string;
    return NULL;
}

const char* json_unknown_key(const cJSON* o, const char* const* allowed, int n) {
    for (const cJSON* v = o->child; v; v = v->next) {
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = strcmp(v->string, allowed[i]) == 0;
        if (!known) return v->string;
    }
    return NULL;
}
