/*
 * fuzz_eval_jsonl.c — libFuzzer target: the JSONL data file of `etx eval` and `etx sweep`
 * (eval_read_items in host/cli/eval_items.c: one request per line, ids, prompts or chat
 * messages, references, bad lines reported and skipped).
 *
 * The input is a whole data file, read against tests/fixtures/loader/tiny.gguf (its
 * tokenizer and chat template) with a 64-token context. Invariants: reading succeeds
 * (bad lines are skipped, not fatal); every request kept has a unique id key, a prompt
 * of 1..63 tokens inside the vocabulary, and lines in increasing order; kept plus bad
 * lines never exceed the file's lines. Run with -close_fd_mask=2: each bad line prints
 * a message. Seeds: tests/fixtures/eval/gsm8k_sample.jsonl and the command-line tests'
 * data lines (tests/scripts/gen_fuzz_corpus.py).
 */
#include <stdint.h>
#include <string.h>

#include "eval.h"
#include "fixtures.h"
#include "util.h"

#define CTX 64

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    fixture_tiny_model();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const etx_model* m = fixture_tiny_model();
    etx_model_info info;
    etx_model_get_info(m, &info);
    EvalArgs a = {.command = "eval", .data = fuzz_file(data, size), .on_bad = "skip", .batch = 1, .max_tokens = 1};
    EvalPar par = {.rank = 0, .size = 1, .mpi = 0};
    Item* items = NULL;
    int n = 0, n_bad = 0;
    FUZZ_CHECK(eval_read_items(&a, &par, m, CTX, &items, &n, &n_bad) == 0);
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    FUZZ_CHECK(n >= 0 && n_bad >= 0 && (size_t)n + (size_t)n_bad <= lines);
    for (int i = 0; i < n; i++) {
        const Item* it = &items[i];
        FUZZ_CHECK(it->root && it->key && (it->key[0] == 's' || it->key[0] == 'n') && it->key[1] == ':');
        FUZZ_CHECK(i == 0 || it->line > items[i - 1].line);
        FUZZ_CHECK(it->n_ids >= 1 && it->n_ids < CTX);
        for (int k = 0; k < it->n_ids; k++) FUZZ_CHECK(it->ids[k] >= 0 && it->ids[k] < info.vocab_size);
        for (int j = 0; j < i; j++) FUZZ_CHECK(strcmp(items[j].key, it->key) != 0);
    }
    eval_free_items(items, n);
    return 0;
}
