/*
 * cpu_forward.h — the CPU backend's Llama forward pass: a per-sequence KV cache
 * (KVCache), the scratch buffers of one forward call (CpuRunState), and cpu_forward(),
 * which runs a run of tokens through the model (prefill in chunks, or one decode step),
 * appends their keys/values to the cache and writes logits.
 *
 * All arithmetic is float32 and follows transformers' LlamaForCausalLM (eager attention).
 * Threads: OpenMP over output rows (projections) and heads (attention), with
 * single-threaded OpenBLAS inside; set the count with cpu_set_threads() (cpu_ops.h).
 * Memory per call is bounded by the chunk size, not the context: attention streams the
 * cached keys in blocks (attention_head, cpu_ops.h).
 *
 * Typical use:
 *     KVCache kv; CpuRunState s;
 *     build_kv_cache(&kv, &m->cfg, 4096);  build_cpu_run_state(&s, &m->cfg);
 *     cpu_forward(m, &s, &kv, prompt, n_prompt, logits, 0);   // prefill
 *     cpu_forward(m, &s, &kv, &next, 1, logits, 0);           // each decode step
 *     free_cpu_run_state(&s); free_kv_cache(&kv);
 */
#ifndef ETX_CPU_FORWARD_H
#define ETX_CPU_FORWARD_H

#include "cpu_ops.h"
#include "model.h"

// Keys and values of one sequence, float32, every layer. Storage grows in chunks of
// KV_CACHE_CHUNK positions (up to max_seq_len) as tokens are appended, so a long-context
// model does not allocate its whole context up front.
#define KV_CACHE_CHUNK 256
typedef struct {
    int n_layers;
    int kv_dim;       // n_kv_heads * head_dim
    int max_seq_len;  // positions this cache may ever hold
    int capacity;     // positions currently allocated (<= max_seq_len)
    int pos;          // positions filled: the next token goes at position pos
    float** k;        // (n_layers) each (capacity, kv_dim); rows are positions
    float** v;        // (n_layers) each (capacity, kv_dim)
} KVCache;

// max_seq_len <= 0: the model's trained context. Allocates nothing per position yet.
etx_status build_kv_cache(KVCache* kv, const ModelConfig* c, int max_seq_len);
void free_kv_cache(KVCache* kv);
// Makes room for n_positions in total (no-op when already there).
etx_status kv_cache_reserve(KVCache* kv, int n_positions);
// Forgets every position (keeps the storage).
void kv_cache_reset(KVCache* kv);

// Scratch of one forward call. Prompts longer than max_chunk are processed max_chunk
// tokens at a time, which bounds this memory whatever the prompt length.
#define CPU_DEFAULT_CHUNK 128
typedef struct {
    int max_chunk;    // tokens per internal step
    float* x;         // (max_chunk, dim) residual stream
    float* xb;        // (max_chunk, dim) normed input of a sub-block
    float* q;         // (max_chunk, n_heads * head_dim) queries
    float* att_out;   // (max_chunk, n_heads * head_dim) attention output, heads concatenated
    float* hb;        // (max_chunk, hidden_dim) gate, then silu(gate) * up
    float* hb2;       // (max_chunk, hidden_dim) up
    float* inv_freq;  // (head_dim / 2) RoPE frequencies, llama3-scaled when configured
    float* rope_cos;  // (max_chunk, head_dim / 2) for the current chunk's positions
    float* rope_sin;  // (max_chunk, head_dim / 2)
    float* att;       // (att_threads, max(max_chunk, n_heads) * (ATT_BLOCK + 2)) attention scratch
    int att_threads;  // scratch areas in att, one per thread
    int att_rows;     // n_heads
    // Optional, for attention metrics: when last_attn is non-NULL, cpu_forward writes the
    // last layer's post-softmax attention probabilities of the last token it processes,
    // head after head: last_attn[h * last_attn_len + t], t < last_attn_len = kv->pos after
    // the call. Caller-owned; must hold n_heads * (kv->pos after the call) floats (size it
    // n_heads * max_seq_len). NULL (the default) costs nothing.
    float* last_attn;
    int last_attn_len; // set by cpu_forward when last_attn is written
    // Optional, likewise: when last_scores is non-NULL, the same row's pre-softmax scaled
    // scores q_h . k_t / sqrt(head_dim) (no mask, no exponentiation; softmax of a row is
    // the last_attn row), same layout, sizing and ownership: last_scores[h * last_scores_len
    // + t]. NULL (the default) costs nothing.
    float* last_scores;
    int last_scores_len; // set by cpu_forward when last_scores is written
} CpuRunState;

// Chunks of CPU_DEFAULT_CHUNK tokens.
etx_status build_cpu_run_state(CpuRunState* s, const ModelConfig* c);
// Chunks of max_chunk tokens (<= 0: CPU_DEFAULT_CHUNK).
etx_status build_cpu_run_state_chunked(CpuRunState* s, const ModelConfig* c, int max_chunk);
void free_cpu_run_state(CpuRunState* s);

// Runs tokens[0..n) at positions kv->pos .. kv->pos+n-1, appends their keys/values and
// advances kv->pos by n. logits receives the last position's scores (vocab_size floats)
// or, with all_logits, every position's (n * vocab_size floats, row-major); logits may be
// NULL when only the cache matters. On error (token id out of range, context full, no
// memory) nothing is appended and kv->pos is unchanged.
etx_status cpu_forward(const etx_model* m, CpuRunState* s, KVCache* kv, const int32_t* tokens,
                       int n, float* logits, int all_logits);

#endif // ETX_CPU_FORWARD_H
