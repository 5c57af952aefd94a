/*
 * dequant.h — ggml tensor element types and their conversion to float32.
 *
 * GGUF files store each tensor in one ggml type: plain floats (F32, F16, BF16) or a
 * block-quantized format, where a fixed number of consecutive elements along a row
 * (the block) is stored as a few scales plus packed small integers. The loaders
 * dequantize everything to float32 at load (model.h). Types supported here:
 *   F32, F16, BF16                      1 element per "block"
 *   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0        32 elements per block
 *   Q4_K, Q5_K, Q6_K                    256 elements per block (super-blocks of 8 or 16
 *                                       sub-blocks with quantized scales)
 * All multi-byte fields are little-endian; blocks need not be aligned in memory.
 */
#ifndef ETX_DEQUANT_H
#define ETX_DEQUANT_H

#include <stddef.h>
#include <stdint.h>

// ggml type ids as written in GGUF tensor infos.
typedef enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_BF16 = 30,
} GGMLType;

typedef struct {
    const char* name;  // "Q4_1"
    int block_elems;   // elements per block
    int block_bytes;   // bytes per block
    int supported;     // 1: dequantize_row handles it
} GGMLTypeInfo;

// Size and name of a ggml type id; NULL when the id is not a ggml type at all.
// Known types etx cannot dequantize have supported == 0 (and a name for messages).
const GGMLTypeInfo* ggml_type_info(uint32_t type);

float fp16_to_fp32(uint16_t h);
float bf16_to_fp32(uint16_t h);

// Converts n elements (a multiple of the type's block_elems) stored at src to float32.
// The type must be supported.
void dequantize_row(uint32_t type, const void* src, float* dst, size_t n);

#endif // ETX_DEQUANT_H
