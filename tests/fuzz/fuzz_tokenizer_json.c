/*
 * fuzz_tokenizer_json.c — libFuzzer target: Hugging Face tokenizer.json files
 * (tokenizer_load_json in host/tokenizer/tokenizer.c: the model, pre-tokenizer,
 * normalizer and decoder checks, vocabulary and added tokens, merges in both notations).
 *
 * The input is a whole tokenizer.json. When it loads, the tokenizer must work: a few
 * fixed texts encode to ids inside the vocabulary (or fail with an error), every id's
 * bytes can be read, and the chat template detection runs. Seeds: every tokenizer.json of
 * tests/fixtures.
 */
#include <stdint.h>
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "util.h"

static const char* const texts[] = {
    "Hello world! It's 2024: 12345 apples, naïve café.",
    "<|im_start|>user\nhi<|im_end|>\n<|begin_of_text|><|eot_id|>",
    "  \t\n\r  spaces\n\n\nand   gaps   ",
    "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 \xce\xb1\xce\xb2",
};

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Tokenizer* t = NULL;
    if (tokenizer_load_json(fuzz_file(data, size), &t).code != ETX_OK) {
        FUZZ_CHECK(t == NULL);
        return 0;
    }
    int n_vocab = tokenizer_n_vocab(t);
    FUZZ_CHECK(n_vocab > 0);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t* ids = NULL;
        int n = 0;
        if (tokenizer_encode(t, texts[i], strlen(texts[i]), &ids, &n).code == ETX_OK)
            for (int k = 0; k < n; k++) FUZZ_CHECK(ids[k] >= 0 && ids[k] < n_vocab);
        free(ids);
    }
    for (int id = 0; id < n_vocab && id < 4096; id++) {
        size_t len;
        FUZZ_CHECK(tokenizer_token_bytes(t, id, &len) != NULL);
    }
    chat_template_detect(t);
    tokenizer_free(t);
    return 0;
}
