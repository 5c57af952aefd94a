/*
 * fixtures.h — the fixed inputs some fuzz targets need besides the fuzzed bytes: real
 * tokenizers (to fuzz the text and the ids they are given) and a small real model (the
 * eval data file is tokenized with it). Loaded once, in LLVMFuzzerInitialize; a fixture
 * that cannot be loaded aborts with its path (the target cannot run without it).
 */
#ifndef ETX_FUZZ_FIXTURES_H
#define ETX_FUZZ_FIXTURES_H

#include "etx/etx.h"
#include "tokenizer/tokenizer.h"

// The tokenizers the text and ids targets choose from (the first input byte picks one):
//   0  SmolLM2's, from the default model's GGUF metadata (models/cache/, 49152 tokens,
//      SmolLM pre-tokenizer, ChatML); tests/fixtures/loader/tiny.gguf's when the
//      default model has not been fetched (same pre-tokenizer, 288 tokens)
//   1  tests/fixtures/tokenizer/added/tokenizer.json: GPT-2 pre-tokenizer, added tokens
//      of every kind (special or not, normalized or not)
//   2  tests/fixtures/models/tiny-llama3-rope/tokenizer.json: Llama 3 pre-tokenizer and
//      special tokens
#define FIXTURE_N_TOKENIZERS 3
const Tokenizer* fixture_tokenizer(int i);
// Which file tokenizer 0 came from (for messages).
const char* fixture_tokenizer0_source(void);

// tests/fixtures/loader/tiny.gguf: a 2-layer Llama with SmolLM2's kind of tokenizer.
const etx_model* fixture_tiny_model(void);

#endif // ETX_FUZZ_FIXTURES_H
