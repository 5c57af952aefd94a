/*
 * tokenizer.h — byte-level BPE tokenizer (GPT-2 / Llama 3 / Qwen2 family), built either from a
 * Hugging Face tokenizer.json or from GGUF metadata, plus streaming UTF-8 decode and
 * chat templates.
 *
 * Encoding follows Hugging Face `tokenizers`: special (added) tokens are split out of the
 * text first; the rest is normalized (NFC, if tokenizer.json asks for it); each remaining
 * span is pre-tokenized with the model's exact regex (PCRE2, Unicode), each piece is
 * mapped to byte-level symbols and merged by BPE rank.
 */
#ifndef ETX_TOKENIZER_H
#define ETX_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "etx/etx.h"

typedef struct Tokenizer Tokenizer;

// Pre-tokenizer families etx knows.
typedef enum {
    PRETOK_LLAMA3 = 0, // Llama 3 regex (contractions, \p{N}{1,3}, ...)
    PRETOK_GPT2,       // GPT-2 regex
    PRETOK_SMOLLM,     // each digit alone, then the GPT-2 regex (SmolLM / StarCoder)
    PRETOK_QWEN2,      // Qwen2 regex: the Llama 3 one with single digits (\p{N}); Qwen2, Qwen2.5, Qwen3
} PretokKind;

// What a tokenizer is built from; strings are byte-level encoded as in tokenizer.json
// and GGUF (e.g. "Ġthe"). Arrays are borrowed for the duration of tokenizer_build.
typedef struct {
    int n_vocab;
    const char* const* tokens;      // (n_vocab) token strings; id = index
    const size_t* token_lens;       // (n_vocab) byte lengths, or NULL for NUL-terminated
    const int* special;             // (n_vocab) 1 = special/added token matched verbatim in text; may be NULL
                                    // (from GGUF: token_type 3 control or 4 user-defined)
    int n_merges;
    const char* const* merges;      // (n_merges) "left right", rank = index
    PretokKind pretok;              // PRETOK_LLAMA3 also turns on ignore_merges, as llama.cpp does
} TokenizerSpec;

etx_status tokenizer_build(const TokenizerSpec* spec, Tokenizer** out);
// Pre-tokenizer of a GGUF's tokenizer.ggml.pre: "llama-bpe" (also "llama3", "llama-v3") ->
// PRETOK_LLAMA3, "gpt2" -> PRETOK_GPT2, "smollm" (also "starcoder") -> PRETOK_SMOLLM,
// "qwen2" (Qwen2, Qwen2.5 and Qwen3 GGUFs) -> PRETOK_QWEN2; anything else (or NULL) is an
// ETX_ERR_UNSUPPORTED error naming it.
etx_status tokenizer_pretok_from_gguf(const char* pre, PretokKind* out);
// Hugging Face tokenizer.json (model.type == "BPE", byte-level). Picks the pre-tokenizer
// from the file's pre_tokenizer section; an unknown one is an error. The normalizer may be
// absent or NFC (Qwen2's tokenizer.json); others are an error. A GGUF names no normalizer,
// and etx applies none there, as llama.cpp and transformers' GGUF loading do.
etx_status tokenizer_load_json(const char* path, Tokenizer** out);
void tokenizer_free(Tokenizer* t);

int tokenizer_n_vocab(const Tokenizer* t);
// Id of the token whose string is exactly s (byte-level form for normal tokens, as
// written for special tokens), or -1.
int tokenizer_find(const Tokenizer* t, const char* s);
int tokenizer_is_special(const Tokenizer* t, int id);

// A built Tokenizer is read-only: encode and the queries may run on several threads at once.

// Encodes text (no BOS). *ids is malloc'ed (also when *n_ids is 0); caller frees. Text
// that is not valid UTF-8 is an ETX_ERR_INVALID_ARG error naming the first bad byte's
// offset (HF only ever sees valid Python strings).
etx_status tokenizer_encode(const Tokenizer* t, const char* text, size_t len, int32_t** ids, int* n_ids);
// Raw bytes of a token (byte-level symbols mapped back to bytes; special tokens as written).
// Returns NULL for an id out of range.
const char* tokenizer_token_bytes(const Tokenizer* t, int id, size_t* len);

// Streaming decode: feed token bytes, get back only complete UTF-8 characters; bytes of
// a character split across tokens wait in `pending`. Invalid sequences come out as
// U+FFFD, one per maximal invalid subpart, as Hugging Face's decoder (Rust's
// String::from_utf8_lossy over the whole byte string) does. Start from a zeroed struct.
typedef struct {
    unsigned char pending[4];
    int n_pending;
} Utf8Stream;
// Output bytes utf8_stream_push can write for n input bytes: every invalid byte becomes
// a 3-byte U+FFFD, and a pending prefix that cannot complete becomes one more.
#define UTF8_STREAM_OUT_MAX(n) (3 * (size_t)(n) + 3)
// Appends complete characters to out (capacity >= UTF8_STREAM_OUT_MAX(n) bytes; n + 8
// is not enough for invalid input); returns bytes written.
size_t utf8_stream_push(Utf8Stream* s, const char* bytes, size_t n, char* out);
// Flushes what is pending at the end of a stream (as U+FFFD); returns bytes written (<= 3).
size_t utf8_stream_flush(Utf8Stream* s, char* out);

// Chat templates.
typedef enum {
    CHAT_NONE = 0,
    CHAT_LLAMA3, // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
    CHAT_CHATML, // <|im_start|>role\ncontent<|im_end|>\n, SmolLM2's default system message
    CHAT_QWEN25, // ChatML as Qwen2.5's template writes it: Qwen's default system message, tool turns
    CHAT_QWEN3,  // Qwen3's: no default system message, <think> reasoning blocks after the last query
} ChatTemplate;

// Picks a template from the tokenizer's special tokens: Llama 3's header tokens ->
// CHAT_LLAMA3; ChatML tokens with Qwen2.5's vision and FIM tokens -> CHAT_QWEN25, or
// CHAT_QWEN3 when Qwen3's <think> and </think> are there too; other ChatML vocabularies ->
// CHAT_CHATML.
ChatTemplate chat_template_detect(const Tokenizer* t);
const char* chat_template_name(ChatTemplate c);
// Renders messages; *out malloc'ed. CHAT_NONE is an error. The BOS text, if the
// template writes one (Llama 3 "<|begin_of_text|>"), is included. Llama 3's original
// template writes the assistant header even without add_generation_prompt; etx writes
// it only when asked (as the Llama 3.1+ templates do). See chat_template.c.
etx_status chat_template_apply(ChatTemplate c, const etx_chat_message* msgs, int n,
                               int add_generation_prompt, char** out);

#endif // ETX_TOKENIZER_H
