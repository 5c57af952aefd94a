/*
 * model.h — the in-memory model every backend reads: hyper-parameters (ModelConfig),
 * weights (ModelWeights, float32, row-major, Hugging Face layout), and the tokenizer.
 * Loaders (safetensors.c + hf_model.c, gguf.c + gguf_model.c) fill it; the CPU backend
 * (cpu_forward.c) reads it.
 *
 * Architectures (ModelArch): one decoder, Llama's (RMSNorm, RoPE, GQA attention, SwiGLU
 * MLP), with what Qwen adds to it as optional parts that the config switches on:
 *   - llama: no extras.
 *   - qwen2 (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen): biases on the Q, K and V
 *     projections (cfg.qkv_bias; LayerWeights.bq/bk/bv).
 *   - qwen3: a per-head RMSNorm of Q and of K (weights of head_dim, shared by the heads)
 *     after the projection and before RoPE (cfg.qk_norm; LayerWeights.q_norm/k_norm),
 *     head_dim given by the config (may differ from dim / n_heads); biases only when its
 *     config says attention_bias.
 * A backend that cannot run one of these parts refuses the model through
 * model_check_features() rather than computing something else.
 *
 * Layout conventions (both loaders normalise to these):
 *   - a linear layer y = W x stores W as (out, in), row-major, like nn.Linear.weight;
 *   - Q and K projections are in Hugging Face order, i.e. RoPE rotates element i with
 *     element i + head_dim/2 (rotate_half). Llama GGUF files store Q/K permuted for
 *     interleaved-pair RoPE; the GGUF loader un-permutes them. Qwen2/Qwen3 GGUF files keep
 *     Hugging Face order (llama.cpp runs them with rotate-half "NEOX" RoPE) and their
 *     rows, biases included, are taken as they are.
 *   - a weight is float32 (bf16/f16 and other quantized files are converted at load),
 *     except a GGUF matrix stored in a type quant_matrix.h handles (Q8_0, Q4_0, Q4_1,
 *     Q5_0, Q4_K, Q5_K, Q6_K): it keeps only its raw blocks (same row order) in its
 *     QuantMatrix twin and its float pointer is NULL, so the weights take about the
 *     file's size (a 1.5B Q4_K_M model: ~1.1 GB, not 7 GB of float32). Decode streams the
 *     blocks (quant_matrix.h); whatever needs float32 rows (prefill's sgemm, the
 *     embedding lookup, the CUDA upload) gets them from model_weight_rows. blocks == NULL
 *     when absent (always, for safetensors).
 */
#ifndef ETX_MODEL_H
#define ETX_MODEL_H

#include "common.h"
#include "cpu/quant_matrix.h"
#include "tokenizer/tokenizer.h"

typedef enum { MODEL_ARCH_LLAMA = 0, MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3 } ModelArch;

// "llama", "qwen2", "qwen3"
const char* model_arch_name(ModelArch a);

typedef struct {
    ModelArch arch;     // which family the loader read (the flags below say what it implies)
    int qkv_bias;       // 1: Q/K/V projections have biases (bq, bk, bv)
    int qk_norm;        // 1: per-head RMSNorm of Q and K before RoPE (q_norm, k_norm)
    int dim;            // hidden size (d_model)
    int hidden_dim;     // FFN intermediate size
    int n_layers;
    int n_heads;        // query heads
    int n_kv_heads;     // key/value heads (GQA: n_heads % n_kv_heads == 0)
    int head_dim;       // usually dim / n_heads
    int vocab_size;
    int max_seq_len;    // trained context length
    float norm_eps;     // RMSNorm epsilon
    float rope_theta;   // RoPE base
    int rope_llama3;    // 1: rope_scaling of type llama3 applies
    float rope_factor;          // llama3 scaling: factor
    float rope_low_freq_factor; // llama3 scaling: low_freq_factor
    float rope_high_freq_factor;// llama3 scaling: high_freq_factor
    int rope_original_max_pos;  // llama3 scaling: original_max_position_embeddings
    int tied_embeddings;        // 1: lm_head == token_embedding
} ModelConfig;

typedef struct {
    float* attn_norm; // (dim)
    float* wq;        // (n_heads * head_dim, dim)
    float* wk;        // (n_kv_heads * head_dim, dim)
    float* wv;        // (n_kv_heads * head_dim, dim)
    float* bq;        // (n_heads * head_dim) Q bias, in wq's row order; NULL unless cfg.qkv_bias
    float* bk;        // (n_kv_heads * head_dim) K bias; NULL unless cfg.qkv_bias
    float* bv;        // (n_kv_heads * head_dim) V bias; NULL unless cfg.qkv_bias
    float* q_norm;    // (head_dim) RMSNorm weight of every query head; NULL unless cfg.qk_norm
    float* k_norm;    // (head_dim) RMSNorm weight of every key head; NULL unless cfg.qk_norm
    float* wo;        // (dim, n_heads * head_dim)
    float* ffn_norm;  // (dim)
    float* w_gate;    // (hidden_dim, dim)
    float* w_up;      // (hidden_dim, dim)
    float* w_down;    // (dim, hidden_dim)
    // compact twins of the matrices above (blocks NULL: none)
    QuantMatrix wq_q, wk_q, wv_q, wo_q, w_gate_q, w_up_q, w_down_q;
} LayerWeights;

typedef struct {
    float* token_embedding; // (vocab_size, dim)
    LayerWeights* layers;   // (n_layers)
    float* final_norm;      // (dim)
    float* lm_head;         // (vocab_size, dim); aliases token_embedding when tied
    QuantMatrix lm_head_q;  // compact twin of lm_head (blocks NULL: none)
    QuantMatrix token_embedding_q; // compact twin of token_embedding; lm_head_q shares its blocks when tied
} ModelWeights;

struct etx_model {
    ModelConfig cfg;
    ModelWeights w;
    Tokenizer* tok;       // never NULL after a successful load
    ChatTemplate chat;    // picked from the tokenizer's special tokens
    int bos_id;           // -1: none
    int n_eos;
    int eos_ids[8];       // EOS and end-of-turn tokens
    char* path;           // what was loaded
    const char* format;   // "safetensors" or "gguf"
};

// Allocates a zeroed float32 buffer of n elements for a weight; fails cleanly (no abort)
// when memory runs out, naming the tensor.
etx_status model_alloc_tensor(float** out, size_t n, const char* name);
// Index of the first element of x[0..n) that is NaN or +-inf, or n when there is none.
// The loaders run it over every tensor right after converting it to float32, while it is
// still in cache (docs/commands.md, "Models and formats": non-finite weights are refused).
size_t model_first_nonfinite(const float* x, size_t n);
// The loaders' error for such a tensor: names the file, the tensor, the value and the
// element (and its row and column in the file's layout, rows of `cols` elements).
etx_status model_nonfinite_error(const char* file, const char* tensor, float value, size_t index, size_t cols);
// Rows r0 <= r < r1 of a (rows, cols) weight as float32 into dst ((r1 - r0) * cols
// floats): copied from the float32 array w, or, when w is NULL, dequantized from its kept
// blocks q (quant_dequant_rows: dequantize_row's values, the ones the loader would have
// stored as float32).
// Rows are spread over the OpenMP threads when there are many; call outside parallel regions.
void model_weight_rows(const float* w, const QuantMatrix* q, int cols, int r0, int r1, float* dst);

// Sets act_q8 (quant_matrix.h) on every compact matrix of m whose type allows it: on = 1
// the K-quant products take 8-bit activations (the loader's default), 0 float32 ones.
void model_set_act_q8(etx_model* m, int on);
// Bytes of weights the model holds in memory: float32 arrays plus kept quantized blocks
// (a tied LM head counted once).
long long model_weight_bytes_held(const etx_model* m);
// Frees weights and tokenizer (not the struct itself).
void model_free_contents(etx_model* m);
// Checks the config for consistency (positive sizes, GQA divisibility, ...).
etx_status model_config_validate(const ModelConfig* c, const char* source);
// The same, with the memory check for weight_bytes bytes of weights instead of the
// float32 size of every weight (a GGUF file whose matrices keep their blocks).
etx_status model_config_validate_bytes(const ModelConfig* c, const char* source, double weight_bytes);

// What a backend can compute beyond the plain Llama layer (MODEL_FEATURE_* bits).
#define MODEL_FEATURE_QKV_BIAS 1u // Q/K/V projection biases
#define MODEL_FEATURE_QK_NORM 2u  // per-head RMSNorm of Q and K
// ETX_ERR_UNSUPPORTED naming the backend, the architecture and the first part of it that
// the backend cannot compute (not in `supported`), with what to do instead; ok otherwise.
// Backends call it from their create(), so that a model is refused, never run wrongly.
etx_status model_check_features(const etx_model* m, unsigned supported, const char* backend);
// Fills bos/eos/chat from the tokenizer and the given ids (-1 = absent); appends the
// end-of-turn/end-of-text tokens the tokenizer defines (<|eot_id|>, <|eom_id|>,
// <|end_of_text|>, <|im_end|>, <|endoftext|>).
void model_set_special_tokens(etx_model* m, int bos_id, const int* eos_ids, int n_eos);

// Loaders. Each fills *m entirely or returns an error naming the file and tensor,
// leaving *m freed.
etx_status hf_model_load(const char* dir, etx_model* m);     // hf_model.c
etx_status gguf_model_load(const char* path, etx_model* m);  // gguf_model.c
// The configuration alone (config.json, or the GGUF metadata), no weights read: what a
// command checks before it loads a model (--tp against the head counts).
etx_status hf_model_read_config(const char* dir, ModelConfig* out);     // hf_model.c
etx_status gguf_model_read_config(const char* path, ModelConfig* out);  // gguf_model.c
etx_status model_read_config(const char* path, ModelConfig* out);       // api.c: by the path's kind

#endif // ETX_MODEL_H
