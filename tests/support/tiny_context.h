/*
 * tiny_context.h — a tiny fixture model loaded with a longer context than its config.json
 * states, for tests that need contexts past its 128 positions (attention split at fixed
 * positions, batch invariance at a context of 4096): the same weights (linked), a copy
 * of config.json with "max_position_embeddings": 128 replaced. RoPE has no length
 * limit, so the model is the fixture's at every position it had.
 *
 * Call before the tests run (it exits with a message on failure, no Check asserts);
 * load_model_or_die loads any model the same way.
 */
#ifndef ETX_TESTS_TINY_CONTEXT_H
#define ETX_TESTS_TINY_CONTEXT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etx/etx.h"

// The model at path, or exit with "<who>: <message><hint>" (suites that load their
// models before any test runs).
static inline etx_model* load_model_or_die(const char* who, const char* path, const char* hint) {
    etx_model* m = NULL;
    etx_status s = etx_model_load(path, &m);
    if (s.code != ETX_OK) {
        fprintf(stderr, "%s: %s%s\n", who, s.message, hint);
        exit(EXIT_FAILURE);
    }
    return m;
}

static inline void tiny_context_die(const char* what) {
    perror(what);
    exit(EXIT_FAILURE);
}

// The Hugging Face fixture directory dir (its config.json must say
// "max_position_embeddings": 128,) loaded with a context of ctx positions, through a
// directory under /tmp that is removed once loaded.
static inline etx_model* tiny_model_with_context(const char* dir, int ctx) {
    static const char* key = "\"max_position_embeddings\": 128,";
    char tmp[] = "/tmp/etx_tinyctx_XXXXXX", path[512], src[512], cfg[8192];
    if (!mkdtemp(tmp)) tiny_context_die("mkdtemp");
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE* f = fopen(path, "rb");
    if (!f) tiny_context_die(path);
    const size_t n = fread(cfg, 1, sizeof cfg - 1, f);
    fclose(f);
    cfg[n] = 0;
    char* at = strstr(cfg, key);
    if (!at) {
        fprintf(stderr, "tiny_model_with_context: %s has no %s\n", path, key);
        exit(EXIT_FAILURE);
    }
    snprintf(path, sizeof path, "%s/config.json", tmp);
    f = fopen(path, "wb");
    if (!f) tiny_context_die(path);
    fwrite(cfg, 1, (size_t)(at - cfg), f);
    fprintf(f, "\"max_position_embeddings\": %d,", ctx);
    fputs(at + strlen(key), f);
    fclose(f);
    static const char* linked[] = {"model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, linked[i]);
        snprintf(src, sizeof src, "%s/%s", dir, linked[i]);
        if (symlink(src, path) != 0) tiny_context_die("symlink");
    }
    etx_model* m = NULL;
    etx_status s = etx_model_load(tmp, &m);
    if (s.code != ETX_OK) {
        fprintf(stderr, "tiny_model_with_context(%s, %d): %s\n", dir, ctx, s.message);
        exit(EXIT_FAILURE);
    }
    static const char* made[] = {"model.safetensors", "tokenizer.json", "config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, made[i]);
        unlink(path);
    }
    rmdir(tmp);
    return m;
}

#endif // ETX_TESTS_TINY_CONTEXT_H
