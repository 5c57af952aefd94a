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

// The model path: -m if given, else $ETX_MODEL, else the default SmolLM2 GGUF fetched by
// models/fetch_default_model.sh.
const char* cli_model_path(const char* given);
// Loads a model, printing a readable error (and a hint for the default model) on failure.
etx_model* cli_load_model(const char* path);
// "auto" | "cpu" | "cuda" -> etx_device; -1 (after printing) on anything else.
int cli_parse_device(const char* s, etx_device* out);
// Prints "etx COMMAND: <message>" to stderr.
void cli_error(const char* command, etx_status s);
// Writes token bytes of ids[0..n) to f, complete UTF-8 characters only (streaming state
// kept by the caller in stream, a Utf8Stream).
void cli_write_tokens(const etx_model* m, const int32_t* ids, int n, void* stream, FILE* f);

// Token ids from decimal text separated by spaces, tabs, newlines or commas. vocab > 0:
// every id must be below it. *ids is malloc'ed. Errors name the entry.
etx_status cli_parse_ids(const char* text, int vocab, int32_t** ids, int* n);

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
int cmd_tokenize(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_bench(int argc, char** argv);

#endif // ETX_CLI_H
