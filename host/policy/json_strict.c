/*
 * json_strict.c — strict JSON reading (json_strict.h): one value per text, error
 * positions, repeated and unknown keys, type names.
 */
#include <string.h>

#include "policy/json_strict.h"

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

cJSON* json_strict_parse(const char* text, size_t len, JsonStrictError* err) {
    memset(err, 0, sizeof *err);
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
    err->line = 1;
    err->column = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') err->line++, err->column = 1;
        else err->column++;
    }
    return NULL;
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
