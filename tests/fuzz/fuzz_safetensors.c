/*
 * fuzz_safetensors.c — libFuzzer target: .safetensors files and sharded checkpoints'
 * index files (host/model/safetensors.c).
 *
 * An input that starts with '{' is a model.safetensors.index.json: it is written into a
 * temporary directory beside links to the two shards of
 * tests/fixtures/loader/tiny_hf_sharded, the checkpoint is opened and every tensor the
 * index names is looked up. Any other input is a whole .safetensors file (u64 header
 * length, JSON header, data): st_open parses it; every accepted tensor must lie inside
 * the data section with the byte count its shape and dtype imply, and small F32/F16/BF16
 * tensors are converted to float32. Seeds: the fixtures' .safetensors headers (with their
 * small tensors kept) and index files (tests/scripts/gen_fuzz_corpus.py).
 */
#include <stdint.h>
#include <string.h>

#include "model/safetensors.h"
#include "util.h"

static const int dtype_size[] = {[ST_F32] = 4, [ST_F16] = 2, [ST_BF16] = 2};

static void check_file(const STFile* f) {
    for (int i = 0; i < f->n_tensors; i++) {
        const STTensor* t = &f->tensors[i];
        FUZZ_CHECK(t->begin <= t->end && t->end <= f->size - f->data_offset);
        FUZZ_CHECK((const uint8_t*)t->data == f->map + f->data_offset + t->begin);
        FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= ST_MAX_DIMS);
        FUZZ_CHECK(st_find(f, t->name) != NULL);
        if (t->dtype == ST_OTHER || t->n_elems > 65536) continue;
        FUZZ_CHECK(t->end - t->begin == t->n_elems * (uint64_t)dtype_size[t->dtype]);
        float* out = malloc((size_t)(t->n_elems ? t->n_elems : 1) * sizeof(float));
        st_to_f32(t, out);
        free(out);
    }
}

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    fuzz_dir_link("model-00001-of-00002.safetensors",
                  ETX_FIXTURES "/loader/tiny_hf_sharded/model-00001-of-00002.safetensors");
    fuzz_dir_link("model-00002-of-00002.safetensors",
                  ETX_FIXTURES "/loader/tiny_hf_sharded/model-00002-of-00002.safetensors");
    return 0;
}

static void fuzz_index(const uint8_t* data, size_t size) {
    fuzz_dir_write("model.safetensors.index.json", data, size);
    STCheckpoint c;
    if (st_checkpoint_open(fuzz_dir(), &c).code != ETX_OK) return;
    for (int i = 0; i < c.n_files; i++) check_file(&c.files[i]);
    for (int i = 0; i < c.n_map; i++) {
        FUZZ_CHECK(c.map_file[i] >= 0 && c.map_file[i] < c.n_files);
        const STTensor* t;
        const STFile* file;
        if (st_checkpoint_find(&c, c.map_names[i], &t, &file).code == ETX_OK && t)
            FUZZ_CHECK(strcmp(t->name, c.map_names[i]) == 0 && file != NULL);
    }
    st_checkpoint_close(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 0 && data[0] == '{') {
        fuzz_index(data, size);
        return 0;
    }
    STFile f;
    if (st_open(fuzz_file(data, size), &f).code != ETX_OK) return 0;
    FUZZ_CHECK(f.data_offset >= 8 && f.data_offset <= f.size);
    check_file(&f);
    st_close(&f);
    return 0;
}
