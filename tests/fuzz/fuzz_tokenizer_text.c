/*
 * fuzz_tokenizer_text.c — libFuzzer target: text given to the tokenizer
 * (host/tokenizer/tokenizer.c: added-token splitting, the pre-tokenizer regexes, BPE) and
 * to the chat templates (host/tokenizer/chat_template.c).
 *
 * The first byte picks one of the fixture tokenizers (fixtures.h: SmolLM2's, one with
 * added tokens of every kind, a Llama 3 one); the rest is the text. Invariants: valid
 * UTF-8 encodes, every id is in the vocabulary, and the ids' bytes put back together are
 * exactly the text (byte-level BPE loses nothing), except for bytes the vocabulary has
 * no token for, which are dropped as Hugging Face drops them; anything else is refused
 * with an error. The text split at NUL bytes is also a conversation (roles system, user,
 * assistant in turn) rendered with the tokenizer's chat template and encoded.
 * Seeds: tests/fixtures/tokenizer/corpus.json's strings, chat.json's messages and
 * eval prompts (tests/scripts/gen_fuzz_corpus.py).
 */
#include <stdint.h>
#include <string.h>

#include "fixtures.h"
#include "utf8_check.h"
#include "util.h"

// missing[i][b]: byte b has no token in tokenizer i. Hugging Face drops such a byte
// (there is no unknown token), and so does etx: SmolLM2's vocabulary lacks a few
// control bytes (0x04, ...), so the round trip is exact only up to those bytes.
static unsigned char missing[FIXTURE_N_TOKENIZERS][256];

// The byte-level symbol of byte b (GPT-2's table, UTF-8 encoded): printable bytes stand
// for themselves, the others for U+0100 upwards in byte order.
static void byte_symbol(int b, char out[3]) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    int cp = b;
    if (!printable) {
        cp = 256;
        for (int x = 0; x < b; x++) cp += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174);
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    for (int i = 0; i < FIXTURE_N_TOKENIZERS; i++) {
        const Tokenizer* t = fixture_tokenizer(i);
        for (int b = 0; b < 256; b++) {
            char sym[3];
            byte_symbol(b, sym);
            missing[i][b] = tokenizer_find(t, sym) < 0;
        }
    }
    return 0;
}

// Encodes text; checks the ids and, for valid UTF-8, the round trip: the ids' bytes are
// the text without the bytes the vocabulary lacks (missing_of, or NULL: exact).
static void encode_and_check(const Tokenizer* t, const unsigned char* missing_of, const char* text, size_t n) {
    int32_t* ids = NULL;
    int n_ids = 0;
    int valid = utf8_valid((const unsigned char*)text, n);
    etx_status st = tokenizer_encode(t, text, n, &ids, &n_ids);
    FUZZ_CHECK((st.code == ETX_OK) == valid);
    if (st.code == ETX_OK) {
        FUZZ_CHECK(n_ids >= 0 && (size_t)n_ids <= n);
        size_t k = 0; // text consumed
        for (int i = 0; i < n_ids; i++) {
            size_t len;
            const char* b = tokenizer_token_bytes(t, ids[i], &len);
            FUZZ_CHECK(b != NULL);
            for (size_t j = 0; j < len; j++) {
                while (k < n && text[k] != b[j] && missing_of && missing_of[(unsigned char)text[k]]) k++;
                FUZZ_CHECK(k < n && text[k] == b[j]);
                k++;
            }
        }
        while (k < n && missing_of && missing_of[(unsigned char)text[k]]) k++;
        FUZZ_CHECK(k == n);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    int which = data[0] % FIXTURE_N_TOKENIZERS;
    const Tokenizer* t = fixture_tokenizer(which);
    const char* text = (const char*)data + 1;
    size_t n = size - 1;
    encode_and_check(t, missing[which], text, n);

    ChatTemplate tpl = chat_template_detect(t);
    if (tpl == CHAT_NONE) return 0;
    // the conversation: the text split at NUL bytes, at most 16 messages
    static const char* const roles[] = {"system", "user", "assistant"};
    char* copy = fuzz_cstr((const uint8_t*)text, n);
    etx_chat_message msgs[16];
    int k = 0;
    for (size_t a = 0; a <= n && k < 16;) {
        msgs[k].role = roles[k % 3];
        msgs[k].content = copy + a;
        k++;
        a += strlen(copy + a) + 1;
    }
    char* rendered = NULL;
    FUZZ_CHECK(chat_template_apply(tpl, msgs, k, 1, &rendered).code == ETX_OK);
    encode_and_check(t, missing[which], rendered, strlen(rendered));
    free(rendered);
    free(copy);
    return 0;
}
