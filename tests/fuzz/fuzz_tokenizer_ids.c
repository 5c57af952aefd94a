/*
 * fuzz_tokenizer_ids.c — libFuzzer target: token ids turned back into text
 * (tokenizer_token_bytes in host/tokenizer/tokenizer.c, the streaming UTF-8 decoder of
 * host/tokenizer/utf8_stream.c), as `etx generate` and `etx tokenize --decode` do.
 *
 * The first byte picks a fixture tokenizer (fixtures.h: byte % 3) and the form of the
 * ids. Bit 7 clear: every following pair of bytes is one id, little-endian, minus 16 (so
 * -16 .. 65519: negative ids, every id of the vocabularies and ids past their end). Bit 7
 * set: the rest is ids as text, read by cli_parse_ids (host/cli/common.c, `etx tokenize
 * --decode`), which must accept only ids inside the vocabulary. Invariants: an id has
 * bytes exactly when it is in the vocabulary; the decoder never writes more than
 * UTF8_STREAM_OUT_MAX, its output is always well-formed UTF-8, and when the tokens'
 * bytes are valid UTF-8 the output is those bytes unchanged. Seeds: the ids of the
 * tokenizer corpus's strings, in both forms (tests/scripts/gen_fuzz_corpus.py).
 */
#include <stdint.h>
#include <string.h>

#include "cli.h"
#include "fixtures.h"
#include "utf8_check.h"
#include "util.h"

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    for (int i = 0; i < FIXTURE_N_TOKENIZERS; i++) fixture_tokenizer(i);
    return 0;
}

// Decodes ids[0..n) as `etx generate` streams them; checks the invariants above.
static void decode_and_check(const Tokenizer* t, const int32_t* ids, size_t n) {
    int n_vocab = tokenizer_n_vocab(t);
    // all the tokens' bytes, and what the stream decoder made of them
    size_t cap_raw = 256, n_raw = 0, cap_out = 256, n_out = 0;
    char* raw = malloc(cap_raw);
    char* out = malloc(cap_out);
    Utf8Stream us = {0};
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        size_t len = 0;
        const char* b = tokenizer_token_bytes(t, id, &len);
        FUZZ_CHECK((b != NULL) == (id >= 0 && id < n_vocab));
        if (!b) continue;
        while (n_raw + len > cap_raw) raw = realloc(raw, cap_raw *= 2);
        memcpy(raw + n_raw, b, len);
        n_raw += len;
        while (n_out + UTF8_STREAM_OUT_MAX(len) > cap_out) out = realloc(out, cap_out *= 2);
        size_t w = utf8_stream_push(&us, b, len, out + n_out);
        FUZZ_CHECK(w <= UTF8_STREAM_OUT_MAX(len));
        n_out += w;
    }
    while (n_out + 3 > cap_out) out = realloc(out, cap_out *= 2);
    size_t w = utf8_stream_flush(&us, out + n_out);
    FUZZ_CHECK(w <= 3);
    n_out += w;
    FUZZ_CHECK(utf8_valid((const unsigned char*)out, n_out));
    if (utf8_valid((const unsigned char*)raw, n_raw)) FUZZ_CHECK(n_out == n_raw && memcmp(out, raw, n_raw) == 0);
    free(raw);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const Tokenizer* t = fixture_tokenizer(data[0] % FIXTURE_N_TOKENIZERS);
    if (data[0] & 0x80) {
        // ids as text, as `etx tokenize --decode` reads them (cli_parse_ids)
        char* text = fuzz_cstr(data + 1, size - 1);
        int32_t* ids = NULL;
        int n = 0;
        // the whole input, NUL bytes included: cli_parse_ids reads every byte of its length
        if (cli_parse_ids(text, size - 1, tokenizer_n_vocab(t), &ids, &n).code == ETX_OK) {
            FUZZ_CHECK(n >= 0);
            for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < tokenizer_n_vocab(t));
            decode_and_check(t, ids, (size_t)n);
            free(ids);
        }
        free(text);
        return 0;
    }
    size_t n = (size - 1) / 2;
    int32_t* ids = malloc((n ? n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(data[1 + 2 * i] | (data[2 + 2 * i] << 8)) - 16;
    decode_and_check(t, ids, n);
    free(ids);
    return 0;
}
