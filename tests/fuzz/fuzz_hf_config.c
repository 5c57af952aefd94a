/*
 * fuzz_hf_config.c — libFuzzer target: a Hugging Face model directory's config.json, read
 * by the safetensors model loader (host/model/hf_model.c).
 *
 * The input is config.json; it is written into a temporary directory beside links to
 * tests/fixtures/loader/tiny_hf's model.safetensors and tokenizer.json, and
 * hf_model_load reads the directory: architecture, sizes, RoPE scaling, special ids,
 * then the weights those sizes call for (so a fuzzed config also drives the shape checks
 * against a real checkpoint) and the tokenizer. Seeds: every config.json of
 * tests/fixtures.
 */
#include <stdint.h>

#include "model/model.h"
#include "util.h"

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    fuzz_dir_link("model.safetensors", ETX_FIXTURES "/loader/tiny_hf/model.safetensors");
    fuzz_dir_link("tokenizer.json", ETX_FIXTURES "/loader/tiny_hf/tokenizer.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_dir_write("config.json", data, size);
    etx_model m;
    if (hf_model_load(fuzz_dir(), &m).code != ETX_OK) return 0;
    // a loaded model is consistent: the validated config, a tokenizer that fits it
    FUZZ_CHECK(model_config_validate(&m.cfg, "config.json").code == ETX_OK);
    FUZZ_CHECK(m.tok && tokenizer_n_vocab(m.tok) <= m.cfg.vocab_size);
    FUZZ_CHECK(m.n_eos >= 0 && m.n_eos <= 8);
    model_free_contents(&m);
    return 0;
}
