/*
 * cli.h — shared pieces of the etx command line: a small table-driven option parser
 * (long and short names, --name=value, typed values checked in full, --help from the
 * table), model-path defaults, and the subcommand entry points.
 */
#ifndef ETX_CLI_H
#define ETX_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "etx/etx.h"

typedef enum { OPT_FLAG, OPT_STRING, OPT_INT, OPT_FLOAT, OPT_U64 } OptType;

// A row with long_name == NULL is a heading: its help is printed as a section title.
typedef struct {
    const char* long_name;  // "--top-k"; NULL for a heading
    const char* short_name; // "-k" or NULL
    OptType type;
    void* dest;             // int* (FLAG, INT), const char** (STRING), float*, uint64_t*
    const char* metavar;    // "N"
    const char* help;
    int seen;               // set by the parser
} CliOpt;

typedef struct {
    const char* name;     // "generate"
    const char* synopsis; // one line of usage after "etx NAME "
    const char* summary;  // what the command does
    CliOpt* opts;
    int n_opts;
} CliCommand;

// Parses argv[1..] (argv[0] is the subcommand). Returns CLI_CONTINUE to go on, else the
// command's exit code: 0 when --help was printed, 2 after an error printed to stderr.
#define CLI_CONTINUE (-1)
int cli_parse(CliCommand* cmd, int argc, char** argv);
void cli_usage(const CliCommand* cmd, FILE* f);
const CliOpt* cli_find(const CliCommand* cmd, const char* long_name);

// Exit status of every subcommand (docs/commands.md, "Exit status"):
//   0  success;
//   2  refused, before anything is computed or written: a bad or contradictory option, a
//      value out of range (checked against the machine and, once it is loaded, the
//      model: --threads above the CPUs, --device cuda without a GPU, --ctx above the
//      model's, a token id outside the vocabulary, a prompt longer than the context, a KV
//      pool too small for one request), an input (the model, a data, policy or grid file,
//      stdin) that is missing, not a regular file, too large or malformed;
//   1  the run failed: an output that cannot be created or written (even when that is
//      found before the work starts), out of memory, a failure inside the engine.
#define CLI_EXIT_FAILED 1
#define CLI_EXIT_REFUSED 2

// The model path: -m if given, else $ETX_MODEL, else the default SmolLM2 GGUF fetched by
// models/fetch_default_model.sh.
const char* cli_model_path(const char* given);
// Loads a model, printing a readable error (and a hint for the default model) on failure;
// *rc then gets the exit code: CLI_EXIT_REFUSED for a model that is missing, not a model
// directory or regular file, or malformed; CLI_EXIT_FAILED when memory ran out.
etx_model* cli_load_model(const char* path, int* rc);
// "auto" | "cpu" | "cuda" -> etx_device; -1 (after printing) on anything else.
int cli_parse_device(const char* s, etx_device* out);

// The CPUs this process may run on (its affinity mask; what --threads 0 uses).
int cli_cpu_count(void);
// --threads N: 0 (all CPUs) or 1..cli_cpu_count(). More threads than CPUs only make
// OpenMP's busy-waiting threads take turns (--threads 1000 on two cores ran 134 times
// slower). 0, or -1 after printing "etx COMMAND: ..." (exit 2).
int cli_check_threads(const char* command, int threads);

// The engine options of a command line, as given (0: the default of each).
typedef struct {
    const char* device; // --device auto|cpu|cuda (NULL: auto)
    int threads;        // --threads
    int ctx;            // --ctx: prompt + generated tokens per request
    int batch;          // --batch: requests in the engine at once
    int kv_blocks;      // --kv-blocks: blocks in the KV pool
    int kv_block_size;  // --kv-block-size: positions per block
    int no_prefix_cache; // --no-prefix-cache: prompts never share cached chunks
    const char* gpu;    // --gpu N (NULL: by node-local rank, see cli_engine_options)
    int share_gpus;     // --share-gpus: more ranks on a node than GPUs is allowed
    const char* gpus;   // --gpus LIST|all: one engine per listed device (eval, sweep, calibrate, bench)
    int tp;             // --tp N: tensor parallelism over N devices (0: one device)
} CliEngineArgs;

#define CLI_MAX_GPUS 64 // devices one process may list in --gpus

// The --gpu, --share-gpus and --tp rows of a command's option table.
#define CLI_GPU_OPTS(gpu, share, tp)                                                                          \
    {"--gpu", NULL, OPT_STRING, (gpu), "N",                                                                   \
     "CUDA device to run on (default: the node-local rank under mpirun/srun modulo the GPUs, else 0)", 0},    \
    {"--share-gpus", NULL, OPT_FLAG, (share), NULL,                                                           \
     "allow more ranks on a node than it has GPUs (they then share devices)", 0},                             \
    {"--tp", NULL, OPT_INT, (tp), "N",                                                                        \
     "tensor parallelism: the model split across N GPUs (--gpu's and the next N - 1; under mpirun/srun "      \
     "node-local rank r takes r N .. r N + N - 1); default 1", 0}

// The --gpus row (eval, sweep, calibrate, bench: the commands whose requests can be spread).
#define CLI_GPUS_OPT(gpus)                                                                                      \
    {"--gpus", NULL, OPT_STRING, (gpus), "LIST",                                                              \
     "several CUDA devices in this process: 'all' or ids like 0,1,2,3; one engine per device, the requests "  \
     "spread over them, the output the same bytes as one device's", 0}

#define CLI_MAX_BATCH 4096 // the engine's largest max_batch (etx_engine_create)

// The --kv-blocks, --kv-block-size and --no-prefix-cache rows of a command's option table.
#define CLI_KV_OPTS(blocks, block_size, no_cache)                                                         \
    {"--kv-blocks", NULL, OPT_INT, (blocks), "N",                                                         \
     "KV cache blocks in the pool (default 0: every batch slot a full context, within min(2 GiB, a "     \
     "quarter of free memory)); fewer blocks preempt and recompute requests, same results", 0},          \
    {"--kv-block-size", NULL, OPT_INT, (block_size), "N", "positions per KV block, 1..512 (default 0: 64)", 0}, \
    {"--no-prefix-cache", NULL, OPT_FLAG, (no_cache), NULL,                                                \
     "do not keep prompt chunks for later requests (same results; every prompt computed in full)", 0}

// Checks the engine options before the model is loaded and fills eo (the rest of eo as
// etx_engine_options_default): the device name and that it can run here, --threads
// (cli_check_threads), --ctx 0 or >= 2, --batch 0..CLI_MAX_BATCH, --kv-blocks >= 0,
// --kv-block-size 0..512, and on CUDA the GPU: --gpu N (0 .. GPUs - 1), else the
// node-local rank (Open MPI's OMPI_COMM_WORLD_LOCAL_RANK/SIZE, MPICH's
// MPI_LOCALRANKID/MPI_LOCALNRANKS, Slurm's SLURM_LOCALID/SLURM_NTASKS_PER_NODE) modulo the
// GPUs, refusing more ranks on a node than GPUs unless --share-gpus; under a launcher, or
// with --gpu, each rank says on stderr which device it runs on. --gpu with a run on the
// CPU is refused. --gpus (several devices in one process, see cli_engine_gpus) is checked
// here too: not with --gpu, not on the CPU, not under a launcher with several ranks on the
// node, every id listed once and present; eo->gpu is then its first device.
// 0, or -1 after printing "etx COMMAND: ..." (exit 2).
int cli_engine_options(const char* command, const CliEngineArgs* a, etx_engine_options* eo);
// The devices a run's engines take, in order, into list (CLI_MAX_GPUS entries): those
// of --gpus ('all': every visible one), else the one of eo->gpu. The count (>= 1); call
// after cli_engine_options succeeded (the list is then known to be good).
int cli_engine_gpus(const CliEngineArgs* a, const etx_engine_options* eo, int* list);
// "etx COMMAND: N engines, on cuda:0 (NAME), cuda:1 (NAME)" on stderr (a --gpus run says
// where its engines run).
void cli_say_gpus(const char* command, const int* list, int n);
// Before the model is loaded: with --tp N (eo->tp > 1), N must divide the model's query
// heads, KV heads and hidden size, read from its configuration alone (config.json, the
// GGUF metadata). 0 (also when the configuration cannot be read: the load reports that),
// or -1 after printing (exit 2).
int cli_tp_check_model_path(const char* command, const char* path, const etx_engine_options* eo);
// After the model is loaded, before the engine is created: --ctx within the model's
// context, and a pool given by --kv-blocks that holds one full context (a request that
// cannot fit could never run) and, on the CPU, fits in the memory available. 0, or -1
// after printing (exit 2).
int cli_engine_check_model(const char* command, const etx_model* m, const etx_engine_options* eo);
// A policy against the model: entropix's pause token inside the vocabulary, or (-1) the
// model's own single token for " ...". 0, or -1 after printing (exit 2).
int cli_policy_check_model(const char* command, const etx_model* m, const etx_policy* p);
// The same check without printing (`etx serve` answers it with a 400): 0, or -1 with the
// message in msg, the pause token's option or field named as `name`.
int cli_policy_model_error(const etx_model* m, const etx_policy* p, const char* name, char* msg, size_t cap);
// The pause token the engine resolves for p on m (engine.c): entropix's and a learned
// policy's pause_token, or the model's single token for " ..."; -1 for other kinds or
// when the model has none.
int32_t cli_pause_token(const etx_model* m, const etx_policy* p);
// A prompt of n tokens against the context of eo (--ctx, else the model's default): one
// position must stay free for generation. 0, or -1 after printing (exit 2).
int cli_prompt_check(const char* command, const etx_model* m, const etx_engine_options* eo, int n);
// An input file named by an option (--data FILE), checked before the model is loaded: it
// must open and be a regular file of at most ETX_READ_FILE_MAX bytes (what
// etx_read_file reads later). 0, or -1 after printing "etx COMMAND: OPTION PATH: ..." (exit 2).
int cli_check_input_file(const char* command, const char* option, const char* path);
// Flushes stdout and checks that everything written to it arrived (a full disk, a closed
// pipe). 0, or CLI_EXIT_FAILED after printing.
int cli_finish_stdout(const char* command);
// Prints "etx COMMAND: <message>" to stderr.
void cli_error(const char* command, etx_status s);
// Writes token bytes of ids[0..n) to f, complete UTF-8 characters only (streaming state
// kept by the caller in stream, a Utf8Stream).
void cli_write_tokens(const etx_model* m, const int32_t* ids, int n, void* stream, FILE* f);

// Token ids from decimal text[0..len) separated by spaces, tabs, newlines or commas.
// vocab > 0: every id must be below it. Every byte is read: a NUL byte is an error, not
// the end. *ids is malloc'ed. Errors name the entry.
etx_status cli_parse_ids(const char* text, size_t len, int vocab, int32_t** ids, int* n);

// Tracing (trace.c): one JSON line per generated token, and the --stats summary.
void cli_trace_write(FILE* f, const etx_model* m, const etx_trace_record* r);
#define CLI_TRACE_N_METRICS 7 // entropy, varentropy, attn_entropy, attn_varentropy, agreement, interaction, logprob
typedef struct {
    int n;
    int per_branch[ETX_BRANCH_COUNT];
    double sum[CLI_TRACE_N_METRICS];
    int count[CLI_TRACE_N_METRICS]; // finite values summed
} CliTraceStats;
void cli_trace_stats_add(CliTraceStats* s, const etx_trace_record* r);
void cli_trace_stats_print(const CliTraceStats* s, FILE* f);

// The policy options (policy_flags.c): a command's own rows followed by one flag per
// policy parameter; cli_policy_resolve turns --policy, --policy-file and the flags seen
// into a validated policy (0), or prints "etx COMMAND: ..." and returns -1.
typedef struct {
    char flag[64];
    char help[256];
    int i;
    float f;
    uint64_t u;
} CliParamFlag;
typedef struct {
    CliOpt* opts;       // (n_opts) the command's rows, then headings and parameter rows
    int n_opts;
    CliParamFlag* pf;   // (policy_n_params) storage and help of each parameter flag
    int* row_of;        // (n_opts) parameter table row of each option, -1 for others
} CliPolicyOpts;
int cli_policy_opts_build(CliPolicyOpts* po, const CliOpt* fixed, int n_fixed);
void cli_policy_opts_free(CliPolicyOpts* po);
int cli_policy_resolve(const char* command, const CliPolicyOpts* po, const char* policy, const char* policy_file,
                       etx_policy* out);

int cmd_generate(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_sweep(int argc, char** argv);
int cmd_calibrate(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_serve(int argc, char** argv);

#endif // ETX_CLI_H
