/*
 * cpu_forward.h — the CPU backend's forward pass (Llama, Qwen2, Qwen3: model.h): a
 * per-sequence KV cache (KVCache), the scratch buffers of one forward call (CpuRunState),
 * and cpu_forward(), which runs a run of tokens through the model (prefill in chunks, or
 * one decode step), appends their keys/values to the cache and writes logits.
 *
 * All arithmetic is float32 and follows transformers' LlamaForCausalLM, Qwen2ForCausalLM
 * and Qwen3ForCausalLM (eager attention).
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

#include "cpu/cpu_ops.h"
#include "model/model.h"

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

// One sequence's keys/values as the forward pass reads and writes them: position p of
// layer l is row ids[p / block_size] * block_size + p % block_size of k[l] and v[l] (rows
// kv_dim floats). A paged cache (kv_pool.h) is many blocks; the contiguous KVCache is one
// block as large as the context (kv_seq_of_cache). block_size <= ATT_BLOCK, or a multiple
// of it.
typedef struct {
    float* const* k;   // (n_layers) storage base of each layer
    float* const* v;   // (n_layers)
    const int* ids;    // block ids in position order
    int block_size;    // positions per block
    int pos;           // positions cached: new tokens go at pos, pos + 1, ...
} KVSeq;

// The contiguous cache seen as a KVSeq.
KVSeq kv_seq_of_cache(const KVCache* kv);

// Scratch of one forward call. Prompts longer than max_chunk are processed max_chunk
// tokens at a time, which bounds this memory whatever the prompt length; a decode batch
// holds up to max_rows rows.
#define CPU_DEFAULT_CHUNK 128
typedef struct {
    int max_chunk;    // tokens per internal step of cpu_forward
    int max_rows;     // rows per call: max(max_chunk, decode batch)
    float* x;         // (max_rows, dim) residual stream
    float* xb;        // (max_rows, dim) normed input of a sub-block
    float* q;         // (max_rows, n_heads * head_dim) queries
    float* knew;      // (max_rows, kv_dim) this call's keys, before they go to the cache
    float* vnew;      // (max_rows, kv_dim) this call's values
    float* att_out;   // (max_rows, n_heads * head_dim) attention output, heads concatenated
    float* hb;        // (max_rows, hidden_dim) gate, then silu(gate) * up
    float* hb2;       // (max_rows, hidden_dim) up
    float* inv_freq;  // (head_dim / 2) RoPE frequencies, llama3-scaled when configured
    float* rope_cos;  // (max_rows, head_dim / 2) for the rows' positions
    float* rope_sin;  // (max_rows, head_dim / 2)
    float* att;       // (att_threads, max(max_chunk, n_heads) * (ATT_BLOCK + 2)) attention scratch
    int att_threads;  // scratch areas in att, one per thread
    int att_rows;     // n_heads
    float* wtmp;      // (wtmp_len) a chunk's float32 tile of a weight kept as quantized blocks
    size_t wtmp_len;  // floats in wtmp: the largest such layer matrix (reserve_wtmp), 0: none yet
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
// Chunks of max_chunk tokens and decode batches of up to max_rows rows.
etx_status build_cpu_run_state_rows(CpuRunState* s, const ModelConfig* c, int max_chunk, int max_rows);
void free_cpu_run_state(CpuRunState* s);

// Runs tokens[0..n) at positions kv->pos .. kv->pos+n-1, appends their keys/values and
// advances kv->pos by n. logits receives the last position's scores (vocab_size floats)
// or, with all_logits, every position's (n * vocab_size floats, row-major); logits may be
// NULL when only the cache matters. On error (token id out of range, context full, no
// memory) nothing is appended and kv->pos is unchanged.
etx_status cpu_forward(const etx_model* m, CpuRunState* s, KVCache* kv, const int32_t* tokens,
                       int n, float* logits, int all_logits);

// One prefill chunk of one sequence: tokens[0..n) (n <= s->max_rows) at positions
// kv->pos .., keys/values written into kv's blocks (which must already hold those
// positions; kv->pos itself is not advanced: the caller's block table does that).
// logits: NULL, or the last token's row. scores: NULL, or the last token's last-layer
// pre-softmax scaled scores (n_heads, kv->pos + n). Same arithmetic as cpu_forward on a
// chunk of that length.
etx_status cpu_forward_chunk(const etx_model* m, CpuRunState* s, const KVSeq* kv, const int32_t* tokens, int n,
                             float* logits, float* scores);

// One decode row for each of n sequences (n <= s->max_rows): token tokens[r] at position
// kv[r].pos of sequence r, keys/values written into kv[r]'s blocks (already holding that
// position). logits: (n, vocab) rows. scores: NULL, or per row NULL or (n_heads,
// kv[r].pos + 1) as in cpu_forward_chunk. Row r's results are bit-identical whatever n and
// whatever the other rows are (every product sums each row in a fixed order): a request's
// tokens do not depend on its batch.
etx_status cpu_forward_decode(const etx_model* m, CpuRunState* s, const KVSeq* kv, const int32_t* tokens, int n,
                              float* logits, float* const* scores);

// Weight bytes one decode step reads: each matrix's compact GGUF blocks when it has a
// twin (what one-token and batched decode stream), else its float32 copy, plus the
// norms; the embedding rows read are not counted (a tied LM head counts once).
long long cpu_decode_weight_bytes(const etx_model* m);

#endif // ETX_CPU_FORWARD_H
