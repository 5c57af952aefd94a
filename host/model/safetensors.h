/*
 * safetensors.h — a bounds-checked reader for .safetensors files and Hugging Face
 * checkpoints made of one or several of them.
 *
 * A .safetensors file is: u64 little-endian header length N; N bytes of JSON mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an
 * optional "__metadata__"); then the data section, to which the offsets are relative.
 * Every tensor is checked on open: offsets inside the data section, begin <= end, and
 * end - begin == product(shape) * dtype size. A sharded checkpoint has
 * model.safetensors.index.json whose "weight_map" names the shard of each tensor.
 * Files are memory-mapped read-only.
 */
#ifndef ETX_SAFETENSORS_H
#define ETX_SAFETENSORS_H

#include "common.h"

#define ST_MAX_DIMS 8

typedef enum {
    ST_F32 = 0,
    ST_F16,
    ST_BF16,
    ST_OTHER, // a valid safetensors dtype etx does not convert (F64, I8, ...)
} STDtype;

typedef struct {
    char* name;
    STDtype dtype;
    char dtype_name[12];        // as written ("BF16")
    int n_dims;
    uint64_t shape[ST_MAX_DIMS]; // outermost first, as in PyTorch
    uint64_t n_elems;
    uint64_t begin, end;         // byte offsets into the data section
    const void* data;            // into the map
} STTensor;

typedef struct {
    char* path;
    const uint8_t* map;
    size_t size;
    uint64_t data_offset; // 8 + header length
    int n_tensors;
    STTensor* tensors;    // (n_tensors)
} STFile;

// A checkpoint: one file, or the shards an index names.
typedef struct {
    char* dir;
    int n_files;
    STFile* files;      // (n_files)
    int n_map;          // index entries; 0 for a single file
    char** map_names;   // (n_map) tensor names from weight_map
    int* map_file;      // (n_map) index into files
} STCheckpoint;

etx_status st_open(const char* path, STFile* f);
void st_close(STFile* f);
const STTensor* st_find(const STFile* f, const char* name);

// Opens dir/model.safetensors.index.json (and its shards) or else dir/model.safetensors.
etx_status st_checkpoint_open(const char* dir, STCheckpoint* c);
void st_checkpoint_close(STCheckpoint* c);
// Finds a tensor (NULL *t when absent, not an error); *file receives its shard.
etx_status st_checkpoint_find(const STCheckpoint* c, const char* name, const STTensor** t, const STFile** file);

// Converts a tensor (F32/F16/BF16) to float32; dst holds n_elems floats.
void st_to_f32(const STTensor* t, float* dst);

#endif // ETX_SAFETENSORS_H
