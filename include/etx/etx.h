/*
 * etx.h — the public C API of etx.
 *
 * etx loads a Llama, Qwen2 or Qwen3 model (a Hugging Face directory or a GGUF file),
 * creates an engine on a device, and runs requests through it. An engine holds many
 * requests at once: submit any number, then call etx_engine_step() (one token for
 * every active request) or etx_engine_run() (until all are done), and read each
 * request's tokens as they appear.
 *
 * Every call returns an etx_status: code ETX_OK on success, otherwise a code and a
 * message naming what went wrong (file, tensor, option, value). Nothing is printed
 * by the library.
 *
 * Ownership: objects created by etx_*_create/load are freed by the matching
 * etx_*_free. Pointers returned by readers stay valid until the next call that
 * changes the same object.
 */
#ifndef ETX_H
#define ETX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// status

typedef enum {
    ETX_OK = 0,
    ETX_ERR_IO,          // a file could not be opened, read or mapped
    ETX_ERR_FORMAT,      // a file's contents are malformed (bad magic, truncated, out of bounds)
    ETX_ERR_INVALID_ARG, // a caller-supplied value is out of range or inconsistent
    ETX_ERR_UNSUPPORTED, // well-formed but not something etx handles (dtype, architecture, device)
    ETX_ERR_NOMEM,       // an allocation failed
    ETX_ERR_STATE,       // the call does not fit the object's state (unknown request id, ...)
} etx_code;

#define ETX_MSG_LEN 512

typedef struct {
    etx_code code;
    char message[ETX_MSG_LEN]; // empty when code == ETX_OK
} etx_status;

const char* etx_code_name(etx_code code);

// ----------------------------------------------------------------------------
// model

typedef struct etx_model etx_model;

typedef struct {
    int vocab_size;
    int dim;
    int hidden_dim;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int max_seq_len;       // the context length the model was trained for
    int bos_id;            // -1 when the model has none
    int n_eos;             // number of entries in eos_ids
    int eos_ids[8];        // tokens that end a generation (EOS, end-of-turn)
    int tied_embeddings;   // 1 when the LM head is the token embedding
    int add_bos;           // 1 when plain-text prompts should start with BOS (Llama 3 family)
    const char* arch;      // "llama", "qwen2" or "qwen3"
    const char* format;    // "safetensors" or "gguf"
    const char* chat_template; // "llama3", "chatml", "qwen2.5", "qwen3" or "none"
    long long n_params;    // parameters (a tied embedding counted once)
    long long weight_bytes; // host memory the weights take: float32 arrays plus the quantized
                            // blocks kept as the GGUF file stores them (a tied head counted once)
} etx_model_info;

// path: a Hugging Face model directory, or a .gguf file
etx_status etx_model_load(const char* path, etx_model** out);
void etx_model_free(etx_model* model);
etx_status etx_model_get_info(const etx_model* model, etx_model_info* info);

// The default context length (prompt + generated tokens per request): the model's own
// (etx_model_info.max_seq_len), capped at ETX_DEFAULT_CONTEXT_MAX tokens so that a
// long-context model does not size its KV cache for its full context by default. An
// engine created with max_seq_len 0 gets it, and so do the command line's --ctx options.
#define ETX_DEFAULT_CONTEXT_MAX 4096
int etx_default_context(const etx_model* model);

// Text -> token ids. Special tokens written in the text (e.g. "<|eot_id|>") are
// recognised as such, as Hugging Face tokenizers do. With add_bos, the model's BOS is
// prepended. *ids is allocated with malloc and owned by the caller.
etx_status etx_tokenize(const etx_model* model, const char* text, size_t len, int add_bos,
                        int32_t** ids, int* n_ids);
// The raw bytes of one token (a token may hold part of a UTF-8 character).
etx_status etx_token_bytes(const etx_model* model, int32_t id, const char** bytes, size_t* len);

typedef struct {
    const char* role;    // "system", "user", "assistant"
    const char* content;
} etx_chat_message;

// Renders messages with the model's chat template and, with add_generation_prompt, the
// header that opens the assistant's turn. *text is malloc'ed, owned by the caller.
etx_status etx_chat_format(const etx_model* model, const etx_chat_message* messages, int n,
                           int add_generation_prompt, char** text);

// ----------------------------------------------------------------------------
// policy: how the next token is picked

typedef enum {
    ETX_POLICY_GREEDY = 0,   // argmax
    ETX_POLICY_SAMPLE = 1,   // temperature, then top-k, top-p, min-p filters, then a draw
    ETX_POLICY_ENTROPIX = 2, // entropix v1: four quadrants + adaptive best-of-N (docs/entropix.md)
    ETX_POLICY_LEARNED = 3,  // a small network from the step's signals to an action (etx_learned_net)
    ETX_POLICY_DSLIDER = 4,  // entropix's adaptive Dirichlet sampler, corrected (etx_dslider_params)
} etx_policy_kind;

// The entropix v1 parameters (docs/entropix.md §3, names as in the reference's
// SamplerConfig; defaults are the reference's). H, V: entropy (bits) and varentropy
// (bits^2) of the next-token distribution; A_H, A_V: mean and variance over heads of the
// last layer's attention entropy; AG: agreement; IS: interaction strength.
typedef struct {
    float temperature;      // T0 = 0.666
    float top_p;            // 0.90
    int top_k;              // 27
    float min_p;            // 0.03
    float low_ent_thresh;   // 0.1  LELV: H < this and V < low_vent_thresh -> argmax
    float low_vent_thresh;  // 0.1
    float med_ent_thresh;   // 3.0  HEHV: H > this and V > high_vent_thresh
    float high_ent_thresh;  // 5.0  HELV: H > this and V < low_vent_thresh; LEHV: H < this
    float high_vent_thresh; // 5.0  LEHV/HEHV: V > this
    float helv_attn_ent_offset; // 1.3  HELV resample T = min(1.5, T0 (offset + coef A_H))
    float helv_attn_ent_coef;   // 0.2
    float lehv_interaction_strength_offset; // 1.2  LEHV T = min(1.5, T0 (offset + coef IS))
    float lehv_interaction_strength_coef;   // 0.3
    float hehv_attn_ent_coef;    // 0.2  HEHV top_p = max(0.5, top_p - coef A_H)
    float hehv_attn_vent_offset; // 2.0  HEHV T = max(2.0, T0 (offset + coef A_V))
    float hehv_attn_vent_coef;   // 0.5
    int n_adaptive_samples;      // 5    adaptive branch: best of N draws
    float ada_temp_logits;       // 0.3  adaptive T = T0 (1 + a (H+V) + b (A_H+A_V) - c AG)
    float ada_temp_attn;         // 0.2
    float ada_temp_agree;        // 0.2
    float ada_top_p;             // 0.1  top_p = clip(top_p (1 + this A_V), 0.1, 1)
    float ada_top_k_int;         // 0.3  top_k = clip(round(top_k (1 + int IS - agree AG)), 1, 100)
    float ada_top_k_agree;       // 0.2
    float ada_min_p;             // 0.5  min_p = clip(min_p (1 - this (H+V)), 0.01, 0.5)
    float ada_score_logits_ent;  // 0.1  the reference's token-independent score terms; kept
    float ada_score_attn_ent;    // 0.2  for the trace, they do not change which draw wins
    float ada_score_logits_vent; // 0.3
    float ada_score_attn_vent;   // 0.4
    float ada_score_agree;       // 0.5
    float ada_score_int;         // 0.6
    int pause_token;  // HELV's injected token; -1 = the model's " ..." token (Llama 3: 2564)
    int attn_window;  // 0: attention metrics over the valid positions (corrected);
                      // > 0: the reference's window of that many slots, unfilled ones
                      // scoring 0 (4096 reproduces published thresholds)
} etx_entropix_params;

// The learned policy (docs/policies.md, "learned"): a feed-forward network from a fixed
// feature vector of the step to logits over a small set of actions; the action is drawn
// from their softmax (or the most likely one taken) and the token picked as the action
// says. The features, in this order (each normalised as (x - mean) / scale, then clamped
// to [-ETX_LEARNED_CLIP, ETX_LEARNED_CLIP]):
//   0 H, 1 V, 2 A_H, 3 A_V, 4 AG, 5 IS (the entropix signals of the step),
//   6..9 the log-probabilities of the 4 most likely tokens (0 past the vocabulary),
//   10 the token confidence (-mean log-probability of the 20 most likely tokens),
//   11 ln(1 + step), 12 1 when the previous token is the pause token, else 0.
#define ETX_LEARNED_FEATURES 13
#define ETX_LEARNED_MAX_HIDDEN 64 // units per hidden layer
#define ETX_LEARNED_MAX_LAYERS 2  // hidden layers (0, 1 or 2), ReLU
#define ETX_LEARNED_MAX_ACTIONS 8
#define ETX_LEARNED_CLIP 10.0f
// weights and biases of every layer, packed: hidden layers (out, in) row-major then the
// bias, then the output layer's
#define ETX_LEARNED_MAX_WEIGHTS                                                                     \
    (ETX_LEARNED_MAX_HIDDEN * (ETX_LEARNED_FEATURES + 1) + ETX_LEARNED_MAX_HIDDEN * (ETX_LEARNED_MAX_HIDDEN + 1) + \
     ETX_LEARNED_MAX_ACTIONS * (ETX_LEARNED_MAX_HIDDEN + 1))

typedef enum {
    ETX_ACTION_ARGMAX = 0,   // the most likely token
    ETX_ACTION_SAMPLE = 1,   // one draw at the action's temperature, top-k, top-p, min-p
    ETX_ACTION_PAUSE = 2,    // the pause token (never twice in a row: masked after one)
    ETX_ACTION_ADAPTIVE = 3, // entropix's adaptive branch (best of n_adaptive_samples)
    ETX_ACTION_KIND_COUNT
} etx_action_kind;

typedef struct {
    etx_action_kind kind;
    float temperature; // sample: > 0
    int top_k;         // sample: 0 = off
    float top_p;       // sample: (0, 1]
    float min_p;       // sample: [0, 1)
} etx_learned_action;

typedef struct {
    int n_actions;                // 2..ETX_LEARNED_MAX_ACTIONS
    etx_learned_action actions[ETX_LEARNED_MAX_ACTIONS];
    int n_layers;                 // hidden layers, 0..ETX_LEARNED_MAX_LAYERS
    int hidden[ETX_LEARNED_MAX_LAYERS]; // units of each, 1..ETX_LEARNED_MAX_HIDDEN
    int choose_argmax;            // 1: the most likely action (lowest index on ties); 0: drawn
    float mean[ETX_LEARNED_FEATURES];
    float scale[ETX_LEARNED_FEATURES]; // > 0
    float w[ETX_LEARNED_MAX_WEIGHTS];  // (see ETX_LEARNED_MAX_WEIGHTS) unused tail zero
} etx_learned_net;

// Registers a network (checked: counts, finite weights, positive scales, valid actions)
// for the life of the process and gives its id (>= 1); the same network registered twice
// gets the same id. A learned policy names its network by id (etx_policy.learned), so
// policies stay plain values. Thread-safe.
etx_status etx_learned_register(const etx_learned_net* net, uint32_t* id);
// The network of an id, or NULL when none has it.
const etx_learned_net* etx_learned_get(uint32_t id);
// Networks registered so far (ids 1..count).
uint32_t etx_learned_count(void);

// The dslider parameters (docs/policies.md, "dslider"; entropix-spec §3): names and
// defaults as the reference's DEFAULT_DS_CONFIG (main 0a7f7bb), nested names flattened
// (outlier_threshold.bilinear[i][j] -> outlier_bilinear[4 i + j]). The reference runs over
// the whole vocabulary; etx runs over the step's ETX_DSLIDER_CANDIDATES most likely tokens
// and keeps its Dirichlet on the `support` most likely of them, by rank (policy_dslider.h
// says why). Entropies in nats. E = (token cross-entropy scaffold, naked, entropy
// scaffold, naked), Σ = the square roots of the matching variances, all EMAs before the
// step; H, V the step's entropy and varentropy.
#define ETX_DSLIDER_MAX_SUPPORT 32
typedef struct {
    int support;                          // 32   ranks the Dirichlet lives on (outlier_topk..32)
    int outlier_topk;                     // 6    the inlier path's top-k
    int dirichlet_wild;                   // 1    1: draw from the Dirichlet; 0: its mean
    float noise_floor;                    // -12  log-probabilities below this count as ln(1e-8)
    float emwa_logp_base;                 // 4    the support EMA's weight c = base^(-exp / KL)
    float emwa_logp_exp_factor;           // 3
    float emwa_temp_coeff;                // 0.7  EMA weights of the new value
    float emwa_dir_ent_coeff;             // 0.7
    float emwa_ent_scaffold_coeff;        // 0.7
    float emwa_varent_scaffold_coeff;     // 0.7
    float emwa_ent_naked_coeff;           // 0.7
    float emwa_varent_naked_coeff;        // 0.7
    float emwa_topk_ent_naked_coeff;      // 0.7
    float token_cross_ent_scaffold_coeff; // 0.65
    float token_cross_ent_naked_coeff;    // 0.65
    float token_cross_var_scaffold_coeff; // 0.75
    float token_cross_var_naked_coeff;    // 0.65
    float perturb_base_coeff;             // 10   the Dirichlet's weight in the mix: 1 - base^(-exp / KL)
    float perturb_exp_coeff;              // 1
    float outlier_bilinear[16];           // 1.3  outlier score: E^T B Σ + a.E + b.Σ + c H + d V + bias > 0
    float outlier_linear_state_ent[4];    // 0.8  a
    float outlier_linear_state_std[4];    // 0.8  b
    float outlier_linear_naked_ent;       // 1.2  c
    float outlier_linear_naked_varent;    // 1.2  d
    float outlier_bias;                   // 0
    float argmax_weight;                  // 0.1  inlier argmax when H_topk < weight EMA(H_topk) + bias
    float argmax_bias;                    // 1.2
    float dirichlet_weight;               // 0.1  outlier: the mix's argmax when -loglik < weight EMA + bias
    float dirichlet_bias;                 // 1.2
    float target_entropy_linear[4];       // 1    outlier temperature target: l.E + inv_temp / EMA(T) + bias
    float target_entropy_inv_temp;        // 8
    float target_entropy_bias;            // 0
} etx_dslider_params;

typedef struct {
    etx_policy_kind kind;
    float temperature; // > 0; sample only
    int top_k;         // 0 = off
    float top_p;       // in (0, 1]; 1 = off
    float min_p;       // in [0, 1); 0 = off
    // Two baselines of the literature, sample only (docs/policies.md):
    float top_n_sigma; // top-nσ (arXiv 2411.07641): keep the tokens whose logit is at least
                       // max - n σ, σ the standard deviation of the row's logits (before the
                       // temperature, so the cut does not depend on it); >= 0, 0 = off
    float edt_theta;   // EDT, entropy-based dynamic temperature (arXiv 2403.14541):
                       // T = temperature N^(θ / H), H the entropy of the model's
                       // distribution in nats; θ >= 0, 0 = off
    float edt_base;    // N, in (0, 1); 0.8 (the paper's)
    uint64_t seed;
    etx_entropix_params entropix; // entropix; learned: its adaptive action and pause token
    uint32_t learned;             // learned: the network's id (etx_learned_register); 0 otherwise
    etx_dslider_params dslider;   // dslider
} etx_policy;

// Defaults: greedy; for sample, temperature 1, top-k 0, top-p 1, min-p 0, top-nσ off, EDT
// off (N 0.8), seed 0; the entropix parameters at the reference's values.
etx_policy etx_policy_default(etx_policy_kind kind);
etx_status etx_policy_validate(const etx_policy* policy);
// Sets one parameter by name: "temperature", "top_k", "top_p", "min_p", "seed" (the
// kind's own sampling values: entropix's base values for entropix), "top_n_sigma",
// "edt_theta", "edt_base" (sample only) or any field of etx_entropix_params. Unknown
// names, out-of-range values and a parameter of another kind are errors naming them.
etx_status etx_policy_set(etx_policy* policy, const char* name, double value);
// Reads a JSON policy file: {"policy": "entropix", "seed": 1, "temperature": 0.7, ...};
// keys as in etx_policy_set. Starts from the defaults of its "policy" kind (or of
// policy->kind when absent). Unknown keys, wrong types, out-of-range values are errors
// naming the file and the key.
etx_status etx_policy_load_json(const char* path, etx_policy* policy);

// What the policy did at one step.
typedef enum {
    ETX_BRANCH_GREEDY = 0,   // greedy policy
    ETX_BRANCH_SAMPLE,       // sample policy
    ETX_BRANCH_ARGMAX,       // entropix LELV: low entropy, low varentropy
    ETX_BRANCH_PAUSE,        // entropix HELV: the pause token was inserted
    ETX_BRANCH_HELV,         // entropix HELV after a pause: resample
    ETX_BRANCH_LEHV,         // entropix LEHV: low entropy, high varentropy
    ETX_BRANCH_HEHV,         // entropix HEHV: high entropy, high varentropy
    ETX_BRANCH_ADAPTIVE,     // entropix middle ground: best of N
    ETX_BRANCH_INLIER,       // dslider inlier: a draw from the top-k at the entropy-matched T
    ETX_BRANCH_DIRICHLET,    // dslider outlier, Dirichlet trusted: the mix's most likely token
    ETX_BRANCH_OUTLIER,      // dslider outlier: a draw from the Dirichlet sample
    ETX_BRANCH_COUNT
} etx_branch;
const char* etx_branch_name(etx_branch b);

// Candidates a trace record keeps (entropy-triggered branching forks on them).
#define ETX_TRACE_TOP 4

// One generated token with the signals that chose it (tracing).
typedef struct {
    int request_id;
    int step;             // 0 = first generated token
    int32_t token;
    float logprob;        // chosen token's log-probability (model, temperature 1)
    float entropy;        // H, bits
    float varentropy;     // V, bits^2
    float attn_entropy;   // A_H, bits
    float attn_varentropy;// A_V
    float agreement;      // AG
    float interaction;    // IS
    etx_branch branch;
    float temperature;    // the values the branch actually used
    int top_k;
    float top_p;
    float min_p;
    float confidence;     // token confidence (DeepConf): -(1/k) sum of the log-probabilities
                          // (model, temperature 1) of the k = ETX_CONFIDENCE_TOP_K most
                          // likely tokens; large when the mass sits on one token
    int32_t top_tokens[ETX_TRACE_TOP]; // the most likely tokens, most likely first (-1 past
    float top_logprobs[ETX_TRACE_TOP]; // the vocabulary), and their log-probabilities
    int action;           // learned policy: the action taken (index in its set); -1 otherwise
    float action_logprob; // learned policy: its log-probability under the network; 0 otherwise
} etx_trace_record;

// Tokens in the token confidence of a trace record (DeepConf's k).
#define ETX_CONFIDENCE_TOP_K 20

// ----------------------------------------------------------------------------
// engine and requests

typedef enum { ETX_DEVICE_AUTO = 0, ETX_DEVICE_CPU, ETX_DEVICE_CUDA } etx_device;

typedef struct {
    etx_device device; // AUTO: a CUDA GPU when this program has the CUDA backend and one is
                       // present, else the CPU; CUDA: an error when it cannot run there
    int n_threads;   // CPU threads; 0 = all cores
    int max_seq_len; // per-request context (prompt + generated); 0 = min(model's, 4096)
    int trace;       // 1: keep an etx_trace_record per generated token (etx_engine_trace)
    int max_batch;   // requests advanced together per step; 0 = 32
    int kv_block_size; // KV cache positions per block; 0 = 64 (1..512)
    int kv_blocks;   // KV cache blocks in the pool; 0 = as many as max_batch full contexts
                     // need, capped at what the backend can hold (CPU: min(2 GiB, a
                     // quarter of free memory) of float32 blocks; CUDA: the device's free
                     // memory, less the rest of its plan and a headroom, in bf16 blocks)
                     // but never below two full contexts. Requests beyond what fits wait,
                     // or are preempted and recomputed (same tokens), never dropped.
    int steps_per_sync; // decode steps the backend runs between two host
                     // synchronisations while every running request is decoding and none
                     // waits; 0 = the backend's default: 8 on CUDA, 1 on the CPU (which has
                     // no synchronisation to save); 1 = one step per sync. Stop
                     // tokens, max_tokens and the context end a request at exactly the
                     // same token as with 1; tokens drawn after that are discarded. A
                     // caller that stops requests itself (etx_engine_cancel on a stop
                     // string) may see up to steps_per_sync - 1 tokens past its stop and
                     // should cut there (etx eval does).
    int prefix_cache; // 0 = on (default), -1 = off. Prompt sharing across requests: the
                     // KV blocks of every full prefill chunk of a prompt (128 positions
                     // from position 0 on, whole blocks) are kept after their request,
                     // and a later request whose prompt starts with the same chunks takes
                     // them instead of computing them (the same bits it would write). Kept
                     // blocks are given back, least recently used first, whenever the pool
                     // runs short; etx_engine_stats.prefill_saved counts what was skipped.
    int gpu;         // CUDA: the device to run on, 0 .. (visible devices - 1); default 0.
                     // The engine makes it current on the threads that call it. `etx`
                     // picks it per rank under mpirun/srun (docs/commands.md, --gpu).
    int tp;          // CUDA: tensor parallelism over devices gpu .. gpu + tp - 1 (attention
                     // heads, MLP units and the LM head's vocabulary split across them;
                     // docs/design.md, "Tensor parallelism"); 0 or 1 = one device.
                     // Needs NCCL natively; the SIMT emulator runs it with emulated devices.
} etx_engine_options;

// What the engine has done so far (etx_engine_stats).
typedef struct {
    long steps;           // etx_engine_step calls that ran work
    long prefill_tokens;  // prompt (and recomputed) positions run as prefill chunks
    long decode_rows;     // decode rows run (generated tokens and recomputed ones)
    long preemptions;     // requests preempted for lack of KV blocks (later recomputed)
    long multi_steps;     // device calls that ran several decode steps between two syncs
    long prefill_saved;   // prompt positions not computed because they were shared: a
                          // sample group's samples (etx_engine_submit_samples: N samples of a
                          // P-token prompt save (N - 1)(P - 1)) and prompt chunks taken
                          // from the prefix cache
    int kv_blocks;        // blocks in the pool
    int kv_block_size;    // positions per block
    int kv_blocks_peak;   // most blocks requests held at once
    int kv_blocks_used;   // blocks requests hold now (0 once every request has ended)
    int kv_blocks_cached; // blocks only the prefix cache holds now (reclaimable)
    int requests_running; // unfinished requests in the batch now (admitted, holding their
                          // slot; a sample group's internal prefix counts while it runs)
    int requests_waiting; // unfinished requests waiting for admission (queued, preempted,
                          // held samples)
    int max_batch;
    int steps_per_sync;   // decode steps per host sync in effect (1 on the CPU)
    etx_device device;    // where the steps run: ETX_DEVICE_CPU or ETX_DEVICE_CUDA
    char device_name[64]; // "cpu", or the GPU's name
    long long d2h_bytes;  // bytes copied device -> host by the steps (0 on the CPU): the
                          // sampled tokens, and the trace records when tracing
    long long weight_bytes;          // weight bytes one decode step reads on this device
                                     // (CPU: compact GGUF blocks where the model has them,
                                     // else float32; CUDA: the bf16 uploads), embedding
                                     // rows excluded (a tied LM head counted once)
    long long kv_bytes_per_position; // K and V bytes one position holds, all layers
                                     // (tensor parallelism: both per device, shard 0's)
    long long device_bytes;          // device memory the engine holds (CUDA, every device
                                     // of a tensor-parallel engine summed; 0 on the CPU)
} etx_engine_stats;

typedef struct etx_engine etx_engine;

etx_engine_options etx_engine_options_default(void);
etx_status etx_engine_create(const etx_model* model, const etx_engine_options* opts, etx_engine** out);
void etx_engine_free(etx_engine* engine);

// Entropy-triggered branching (entropy-gated branching, EAGer): at a generated token whose
// entropy H > entropy and varentropy V > varentropy (bits, bits^2, the trace record's),
// the request does not take its drawn token; it forks into n_branches branches on the
// most likely tokens (trace record top_tokens), each sharing the request's KV blocks
// (copy-on-write), each continuing with its own random stream for `lookahead` more tokens
// (or to a stop); the branch with the highest mean log-probability over its tokens from
// the fork on (the forced candidate's included) is kept (ties: the more likely
// candidate), the others are dropped and their blocks freed, and the request continues
// from the kept branch's last token. A fork happens only while the tokens spent in
// branches (kept and dropped) stay within max_branch_tokens. Needs tracing (the signals
// and candidates come from the trace records); the forks are listed by
// etx_engine_branch_events.
typedef struct {
    int n_branches;        // 2..ETX_TRACE_TOP: branches per fork; 0: off
    float entropy;         // fork when H > this (bits)
    float varentropy;      // ... and V > this (bits^2)
    int lookahead;         // tokens each branch generates after its candidate, >= 1
    int max_branch_tokens; // tokens all of a request's branches may take, >= 1
} etx_branching;

typedef struct {
    const int32_t* prompt;     // prompt token ids (copied at submit)
    int n_prompt;              // >= 1
    etx_policy policy;
    int max_tokens;            // tokens to generate, >= 1
    const int32_t* stop_tokens; // extra stop ids (copied); the model's EOS ids always stop
    int n_stop;
    int ignore_eos;            // 1: only stop_tokens and max_tokens end the request
    uint64_t key;              // the request's random stream: draws depend only on
                               // (policy.seed, key, step), never on the batch around it
    float stop_confidence;     // > 0: DeepConf's online stop: the request ends
                               // (ETX_REQ_DONE_LOW_CONFIDENCE) at the first token t >=
                               // window - 1 (a full group ends there) whose group confidence
                               // falls below this; 0 = off. The group confidence at token t
                               // is etx_group_confidence over the trace records'
                               // confidences. Needs an engine created with trace = 1.
    int confidence_window;     // tokens in a group (0: ETX_CONFIDENCE_WINDOW)
    etx_branching branching;   // entropy-triggered branching (all zero: off)
} etx_request;

// Tokens in a group of the group confidence when a request leaves it to the engine.
#define ETX_CONFIDENCE_WINDOW 64
// Group confidence (DeepConf) at token t of a trace of token confidences c[0..t]: the
// mean of the last min(window, t + 1) of them, summed in double from the oldest. The
// groups that count are the full ones, t >= window - 1 (a trace shorter than the window
// is one group: t = its last token), as in DeepConf's reference: the engine's online
// stop checks them and the evaluation's trace statistics are made of them. (Partial
// groups at the start would make the first tokens, which every sample of a prompt
// shares, each sample's lowest group.)
double etx_group_confidence(const float* c, int t, int window);

typedef enum {
    ETX_REQ_QUEUED = 0,  // submitted, prompt not yet processed
    ETX_REQ_RUNNING,     // prompt processed, generating
    ETX_REQ_DONE_STOP,   // ended on a stop/EOS token (the stop token is included in tokens)
    ETX_REQ_DONE_LENGTH, // ended after max_tokens
    ETX_REQ_FAILED,      // ended on an error; see etx_request_state.error
    ETX_REQ_DONE_LOW_CONFIDENCE, // ended because its group confidence fell below
                         // etx_request.stop_confidence (the token that did it is included)
} etx_request_phase;

typedef struct {
    etx_request_phase phase;
    const int32_t* tokens; // generated tokens so far (not the prompt)
    int n_tokens;
    const char* error;     // message when phase == ETX_REQ_FAILED, else ""
} etx_request_state;

// Validates and queues a request; *id identifies it in later calls. A request that
// cannot run (prompt longer than the context, bad policy) is rejected here with a
// message, and nothing already queued is affected.
etx_status etx_engine_submit(etx_engine* engine, const etx_request* req, int* id);
// N samples of one request that share its prompt's KV cache: the prompt but its last
// token is computed once (a prefix the caller does not see), then every sample forks its
// blocks (full blocks shared, never written; the partial last block copied on the
// sample's first write) and continues as an ordinary request: its own id (ids[i], n of
// them), state, trace, cancel and release, scheduled and preempted like any other.
// Sample i draws from the random stream etx_sample_key(req->key, i), so its tokens depend
// only on (prompt, policy, seed, key, i), never on n, the batch or other requests; with
// n = 1 this is one such sample (not the same computation as etx_engine_submit: the
// prompt's last token is a decode row here). 1 <= n <= ETX_MAX_SAMPLES; a prompt whose
// first token cannot fit the whole pool is refused here, before anything is queued
// (ids untouched when n is out of range, else -1 each on a refusal).
#define ETX_MAX_SAMPLES 4096
etx_status etx_engine_submit_samples(etx_engine* engine, const etx_request* req, int n, int* ids);
// The same for samples first .. first + n - 1 of the request (keys etx_sample_key(key,
// first + i)): a later group of the same request's samples (DeepConf online: a warm-up
// group, then the rest with a stop_confidence set from it), each sample the same tokens
// as in one group of first + n.
etx_status etx_engine_submit_samples_at(etx_engine* engine, const etx_request* req, int first, int n, int* ids);
// The random stream of sample `index` of a request with stream `key` (a 64-bit mix of
// the two).
uint64_t etx_sample_key(uint64_t key, int index);

// One scheduler step (continuous batching): every running request advances by one
// token or, while its prompt is processed, by one prefill chunk; waiting requests are
// admitted while the batch and the KV pool have room (docs/design.md §2). *n_active
// (may be NULL) receives the number of requests still unfinished.
etx_status etx_engine_step(etx_engine* engine, int* n_active);
// Steps until every request has finished.
etx_status etx_engine_run(etx_engine* engine);
etx_status etx_engine_request_state(const etx_engine* engine, int id, etx_request_state* state);
// The trace records of a request so far (engine created with trace = 1; else an error).
etx_status etx_engine_trace(const etx_engine* engine, int id, const etx_trace_record** records, int* n);
// One fork of entropy-triggered branching, for the trace of the request's tree.
typedef struct {
    int step;                            // the generated token's step where it forked
    int n_branches;
    int32_t candidates[ETX_TRACE_TOP];   // branch j's first token
    float scores[ETX_TRACE_TOP];         // branch j's mean log-probability from the fork on
    int tokens[ETX_TRACE_TOP];           // tokens branch j generated (its candidate included)
    int kept;                            // the branch the request continued with
} etx_branch_event;

// The forks of a request so far, in order (its tree: each fork's branches hang off the
// token before `step`; the request's own tokens are the kept branches'). *n_spent: the
// tokens its branches generated, kept and dropped (the compute they cost).
etx_status etx_engine_branch_events(const etx_engine* engine, int id, const etx_branch_event** events, int* n,
                                    int* n_spent);

// Ends an unfinished request now, as a stop condition the caller detected (a stop
// string): its phase becomes ETX_REQ_DONE_STOP, its tokens so far are kept, its KV
// cache is freed. A finished request is left as it is.
etx_status etx_engine_cancel(etx_engine* engine, int id);
// Forgets a finished request and frees its memory.
etx_status etx_engine_release(etx_engine* engine, int id);
// Counters since the engine was created.
etx_status etx_engine_get_stats(const etx_engine* engine, etx_engine_stats* stats);

// What the hardware under a device reaches, measured now (for benchmarks: the floor a
// decode step or a prefill is compared with).
typedef struct {
    double mem_bandwidth;     // bytes/s. CPU: n_threads threads reading a 512 MiB buffer
                              // (the weights are read, not written); CUDA: a 1 GiB
                              // device-to-device copy, bytes read + written over the time
    double gemm_flops;        // FLOP/s of a large GEMM in the prefill's own arithmetic.
                              // CPU: the float32 product prefill uses (OpenBLAS sgemm on
                              // n_threads slices), 512 x 2048 x 2048; CUDA: bf16 x bf16 ->
                              // f32 (cuBLAS), 4096^3
    char bandwidth_method[96];
    char gemm_method[96];
} etx_hw_limits;

// Measures etx_hw_limits on device (CPU or CUDA; AUTO as etx_engine_create picks) with
// n_threads CPU threads (0 = all cores). quick = 1 uses small sizes (tests, emulators):
// the figures are then not representative. Takes about a second.
etx_status etx_measure_hardware(etx_device device, int n_threads, int quick, etx_hw_limits* out);

// Runs the forward pass over ids (no sampling, no state kept) and writes the logits
// of the last position (all_positions = 0; out holds vocab_size floats) or of every
// position (all_positions = 1; out holds n * vocab_size floats, row-major).
etx_status etx_engine_logits(etx_engine* engine, const int32_t* ids, int n, int all_positions,
                             float* out);

#ifdef __cplusplus
}
#endif
#endif // ETX_H
