/*
 * gguf.h — a bounds-checked reader for GGUF files (versions 2 and 3), over a read-only
 * memory map of the whole file.
 *
 * A GGUF file is: magic "GGUF", u32 version, u64 tensor count, u64 metadata count;
 * the metadata key/value pairs (key = u64 length + bytes; u32 value type; value);
 * the tensor infos (name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type,
 * u64 offset into the data section); padding to the alignment (general.alignment,
 * default 32); then the data section. Every length, count and offset read is checked
 * against the file size before use; a malformed file gives an etx_status error naming
 * the file and the key or tensor, never a crash.
 */
#ifndef ETX_GGUF_H
#define ETX_GGUF_H

#include "common.h"

// Metadata value types.
typedef enum {
    GGUF_UINT8 = 0,
    GGUF_INT8 = 1,
    GGUF_UINT16 = 2,
    GGUF_INT16 = 3,
    GGUF_UINT32 = 4,
    GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_UINT64 = 10,
    GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12,
} GGUFType;

typedef struct {
    char* key;            // NUL-terminated copy
    uint32_t type;        // GGUFType
    // scalars: integers and bools in i (or u for UINT64), floats in f
    int64_t i;
    uint64_t u;
    double f;
    // strings: pointer into the map (not NUL-terminated) and length
    const char* str;
    uint64_t str_len;
    // arrays (one level; nested arrays are rejected): element type, count, first byte
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t* arr_data;
} GGUFKV;

typedef struct {
    char* name;       // NUL-terminated copy
    int n_dims;       // 1..4
    uint64_t ne[4];   // elements per dimension, ne[0] innermost (contiguous); unused = 1
    uint32_t type;    // ggml type (dequant.h)
    uint64_t n_elems; // product of ne
    uint64_t offset;  // from the start of the data section
    uint64_t n_bytes;
    const void* data; // into the map
} GGUFTensor;

typedef struct {
    char* path;
    const uint8_t* map; // whole file, read-only
    size_t size;
    uint32_t version;
    uint64_t n_kv;
    GGUFKV* kv;          // (n_kv)
    uint64_t n_tensors;
    GGUFTensor* tensors; // (n_tensors)
    uint64_t alignment;
    uint64_t data_offset; // start of the data section
} GGUFFile;

// Maps and parses path. On error *f is left closed.
etx_status gguf_open(const char* path, GGUFFile* f);
void gguf_close(GGUFFile* f);

const GGUFKV* gguf_find(const GGUFFile* f, const char* key);
const GGUFTensor* gguf_find_tensor(const GGUFFile* f, const char* name);

// Typed getters: an error names the file and key when the key is missing or has an
// incompatible type. Integers accept any integer type (and bool) that fits in the output.
etx_status gguf_get_int(const GGUFFile* f, const char* key, int64_t* out);
etx_status gguf_get_float(const GGUFFile* f, const char* key, double* out); // float32/64 or integer
// *s points into the map (not NUL-terminated).
etx_status gguf_get_string(const GGUFFile* f, const char* key, const char** s, size_t* len);
// Same, or def when the key is absent.
etx_status gguf_get_int_or(const GGUFFile* f, const char* key, int64_t def, int64_t* out);
etx_status gguf_get_float_or(const GGUFFile* f, const char* key, double def, double* out);
// Copies the string value into a malloc'ed NUL-terminated buffer.
etx_status gguf_get_string_dup(const GGUFFile* f, const char* key, char** out);
// Array of strings: malloc'ed arrays of pointers into the map and their lengths.
etx_status gguf_get_string_array(const GGUFFile* f, const char* key, const char*** strs, size_t** lens,
                                 uint64_t* n);
// Array of integers, converted to a malloc'ed int32 array (each value must fit).
etx_status gguf_get_int_array(const GGUFFile* f, const char* key, int32_t** out, uint64_t* n);

const char* gguf_type_name(uint32_t type);

#endif // ETX_GGUF_H
