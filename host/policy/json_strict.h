/*
 * json_strict.h — strict JSON reading for the files a user writes by hand: policy files
 * (policy_file.c) and sweep grids (cli/sweep.c). cJSON accepts what a careful reader
 * should refuse, so this module adds the missing checks:
 *
 *   - the whole text is one value: text after it is an error, not ignored;
 *   - a parse error says where it is (byte offset, 1-based line and column);
 *   - a key given twice in one object is found (cJSON keeps both, lookups see the first,
 *     so the second would be silently ignored);
 *   - a key outside an object's expected set is found;
 *   - a value's type has a name for "must be X, got Y" messages;
 *   - a NUL character in a string (the escape \u0000, or a raw 0 byte) is refused and
 *     located by the path of the value holding it: cJSON would keep the string only up
 *     to the NUL, so "the cat\u0000 sat" would silently become "the cat".
 *
 * Callers write their own messages (each names its file and field); this module only
 * finds the problem.
 */
#ifndef ETX_JSON_STRICT_H
#define ETX_JSON_STRICT_H

#include <cJSON.h>
#include <stddef.h>

// Where a text stopped being JSON.
typedef struct {
    size_t byte;  // offset of the first bad byte (the text's length when it ends early)
    int line;     // 1-based line of that byte
    int column;   // 1-based column (bytes) of that byte
    int trailing; // 1: a complete value followed by text that is not white space
    int nul;      // 1: a NUL character (\u0000 or a 0 byte) at byte; path names its value
    char path[128]; // with nul: where it is, "messages[1].content" ("" at the top level)
} JsonStrictError;

// Parses text[0..len) as exactly one JSON value (white space around it allowed).
// Returns the root (free with cJSON_Delete), or NULL with *err filled.
cJSON* json_strict_parse(const char* text, size_t len, JsonStrictError* err);

// Finds the first NUL character of a JSON text: a \u0000 escape inside a string or a raw
// 0 byte anywhere. Returns 1 and fills err->byte, line, column, nul and path (the value
// holding it: keys joined by '.', array indices in brackets); 0 when there is none. Works
// on any bytes (malformed JSON included), so callers may run it before parsing.
int json_find_nul(const char* text, size_t len, JsonStrictError* err);

// The problem in words, for "FILE: <what>": "malformed JSON at byte 12 (line 1, column
// 13)", "malformed JSON: unexpected text after the value at byte 40", or "a NUL
// character (\u0000) in messages[1].content at byte 57 (line 3, column 9): NUL cannot be
// part of a text etx runs".
void json_strict_describe(const JsonStrictError* err, char* buf, size_t cap);

// "a string", "a boolean", "null", "an array", "an object", "a number" (or "something
// else"), for messages of the form "X must be a number, got a string".
const char* json_type_name(const cJSON* v);

// A key that appears twice in object o (the earliest repeat in text order), or NULL
// when every key is unique.
const char* json_repeated_key(const cJSON* o);

// The first key of object o that is not one of allowed[0..n), or NULL.
const char* json_unknown_key(const cJSON* o, const char* const* allowed, int n);

#endif // ETX_JSON_STRICT_H
