/*
 * common.c — command-line helpers shared by the subcommands: where the model is, how it
 * is loaded and reported, device names, streaming token output.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "common.h"
#include "tokenizer/tokenizer.h"

const char* cli_model_path(const char* given) {
    if (given) return given;
    const char* env = getenv("ETX_MODEL");
    if (env && *env) return env;
    return ETX_DEFAULT_MODEL;
}

void cli_error(const char* command, etx_status s) {
    fprintf(stderr, "etx %s: %s\n", command, s.message);
}

etx_model* cli_load_model(const char* path) {
    etx_model* m = NULL;
    etx_status s = etx_model_load(path, &m);
    if (s.code != ETX_OK) {
        fprintf(stderr, "etx: cannot load model: %s\n", s.message);
        struct stat st;
        if (strcmp(path, ETX_DEFAULT_MODEL) == 0 && stat(path, &st) != 0)
            fprintf(stderr, "etx: the default model is fetched by models/fetch_default_model.sh\n");
        return NULL;
    }
    return m;
}

int cli_parse_device(const char* s, etx_device* out) {
    if (!s || strcmp(s, "auto") == 0) *out = ETX_DEVICE_AUTO;
    else if (strcmp(s, "cpu") == 0) *out = ETX_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0) *out = ETX_DEVICE_CUDA;
    else {
        fprintf(stderr, "etx: unknown device '%s' (expected auto, cpu or cuda)\n", s);
        return -1;
    }
    return 0;
}

void cli_write_tokens(const etx_model* m, const int32_t* ids, int n, void* stream, FILE* f) {
    Utf8Stream* us = stream;
    for (int i = 0; i < n; i++) {
        const char* bytes;
        size_t len;
        if (etx_token_bytes(m, ids[i], &bytes, &len).code != ETX_OK) continue;
        char buf[UTF8_STREAM_OUT_MAX(128)];
        // push in slices so the output buffer always fits (invalid bytes expand to U+FFFD)
        for (size_t off = 0; off < len; off += 128) {
            size_t chunk = len - off < 128 ? len - off : 128;
            size_t w = utf8_stream_push(us, bytes + off, chunk, buf);
            fwrite(buf, 1, w, f);
        }
    }
    fflush(f);
}

etx_status cli_parse_ids(const char* text, int vocab, int32_t** ids, int* n) {
    int cap = 64, k = 0;
    int32_t* out = xmalloc((size_t)cap * sizeof(int32_t));
    const char* p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char* end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != ',')) {
            free(out);
            return etx_error(ETX_ERR_INVALID_ARG, "token id #%d: '%.20s' is not an integer", k + 1, p);
        }
        if (v < 0 || (vocab > 0 && v >= vocab) || v > INT32_MAX) {
            free(out);
            if (vocab > 0)
                return etx_error(ETX_ERR_INVALID_ARG, "token id #%d: %ld is outside the vocabulary (0..%d)", k + 1, v,
                                 vocab - 1);
            return etx_error(ETX_ERR_INVALID_ARG, "token id #%d: %ld is not a valid token id", k + 1, v);
        }
        if (k == cap) out = xrealloc(out, (size_t)(cap *= 2) * sizeof(int32_t));
        out[k++] = (int32_t)v;
        p = end;
    }
    *ids = out;
    *n = k;
    return etx_ok();
}
