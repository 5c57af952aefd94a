/*
 * common.c — command-line helpers shared by the subcommands: where the model is, how it
 * is loaded and reported, device names, the engine options checked before and after the
 * model loads (cli.h has the exit-code rule they follow), streaming token output, token
 * id lists.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "engine/backend.h"
#include "model/model.h"
#include "policy/learned.h"
#include "tokenizer/tokenizer.h"

const char* cli_model_path(const char* given) {
    if (given) return given;
    const char* env = getenv("ETX_MODEL");
    if (env && *env) return env;
    return ETX_DEFAULT_MODEL;
}

void cli_error(const char* command, etx_status s) {
    fprintf(stderr, "etx %s: %s\n", command, s.message);
}

etx_model* cli_load_model(const char* path, int* rc) {
    *rc = CLI_EXIT_REFUSED;
    struct stat st;
    // a model is a directory or a regular file: a FIFO or a device would block or never end
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "etx: cannot load model: %s is neither a model directory nor a regular file\n", path);
        return NULL;
    }
    etx_model* m = NULL;
    etx_status s = etx_model_load(path, &m);
    if (s.code != ETX_OK) {
        fprintf(stderr, "etx: cannot load model: %s\n", s.message);
        if (strcmp(path, ETX_DEFAULT_MODEL) == 0 && stat(path, &st) != 0)
            fprintf(stderr, "etx: the default model is fetched by models/fetch_default_model.sh\n");
        // a model that is missing or malformed is a refused input; memory running out is not
        if (s.code == ETX_ERR_NOMEM) *rc = CLI_EXIT_FAILED;
        return NULL;
    }
    *rc = 0;
    return m;
}

int cli_parse_device(const char* s, etx_device* out) {
    if (!s || strcmp(s, "auto") == 0) *out = ETX_DEVICE_AUTO;
    else if (strcmp(s, "cpu") == 0) *out = ETX_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0) *out = ETX_DEVICE_CUDA;
    else {
        fprintf(stderr, "etx: unknown device '%s' (expected auto, cpu or cuda)\n", s);
        return -1;
    }
    return 0;
}

int cli_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

// Prints "etx COMMAND: <message>" to stderr; nothing when command is NULL (the ranks of
// an MPI run other than 0, which check the same things).
static void say(const char* command, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const char* command, const char* fmt, ...) {
    if (!command) return;
    fprintf(stderr, "etx %s: ", command);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

int cli_check_threads(const char* command, int threads) {
    const int cpus = cli_cpu_count();
    if (threads >= 0 && threads <= cpus) return 0;
    say(command, "--threads must be 0 (all CPUs) or 1..%d, the CPUs this process may run on (got %d); more threads "
                 "than CPUs only wait for each other\n", cpus, threads);
    return -1;
}

// The node-local rank and the ranks on this node, from the launcher's environment (Open
// MPI, MPICH/Hydra, Slurm's srun); 0 of 1 without one.
static void local_rank(int* rank, int* size) {
    static const char* vars[][2] = {{"OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
                                    {"MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
                                    {"SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"}};
    *rank = 0, *size = 1;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char* r = getenv(vars[i][0]);
        if (!r || !*r) continue;
        const char* s = getenv(vars[i][1]);
        *rank = atoi(r);
        *size = s && atoi(s) > 0 ? atoi(s) : *rank + 1;
        if (*rank < 0) *rank = 0;
        if (*size <= *rank) *size = *rank + 1;
        return;
    }
}

// The CUDA device of this process (cli_engine_options, cli.h): with --tp N the first of
// its N devices (a rank r N .. r N + N - 1). 0, or -1 after printing.
static int pick_gpu(const char* command, const CliEngineArgs* a, const BackendOps* ops, int* gpu) {
    const int n = ops->device_count ? ops->device_count() : 1;
    const int tp = a->tp > 1 ? a->tp : 1;
    int lr, ls;
    local_rank(&lr, &ls);
    if (a->gpu) {
        char* end = NULL;
        errno = 0;
        const long v = strtol(a->gpu, &end, 10);
        if (end == a->gpu || *end || errno || v < 0 || v >= n) {
            say(command, "--gpu %s: this process sees %d CUDA device%s (0..%d)\n", a->gpu, n, n == 1 ? "" : "s",
                n - 1);
            return -1;
        }
        *gpu = (int)v;
    } else {
        const int groups = n / tp; // ranks that can each have tp devices of their own
        if (ls > 1 && ls > groups && !a->share_gpus) {
            if (tp > 1)
                say(command, "%d ranks on this node with --tp %d need %d CUDA devices, but there are %d; run fewer "
                             "ranks per node, or allow sharing with --share-gpus\n", ls, tp, ls * tp, n);
            else
                say(command, "%d ranks on this node but %d CUDA device%s: each rank would not have its own GPU; run "
                             "fewer ranks per node, or allow sharing with --share-gpus\n", ls, n, n == 1 ? "" : "s");
            return -1;
        }
        *gpu = groups > 0 ? (lr % groups) * tp : 0;
    }
    if (*gpu + tp > n) {
        say(command, "--tp %d from cuda:%d needs devices %d..%d, but this process sees %d CUDA device%s (0..%d)\n", tp,
            *gpu, *gpu, *gpu + tp - 1, n, n == 1 ? "" : "s", n - 1);
        return -1;
    }
    if (ls > 1 || a->gpu || tp > 1) {
        if (tp > 1)
            fprintf(stderr, "etx %s: rank %d of %d on this node runs on cuda:%d..%d (%s; --tp %d)\n", command, lr, ls,
                    *gpu, *gpu + tp - 1, ops->device_name_of ? ops->device_name_of(*gpu) : "", tp);
        else
            fprintf(stderr, "etx %s: rank %d of %d on this node runs on cuda:%d (%s)\n", command, lr, ls, *gpu,
                    ops->device_name_of ? ops->device_name_of(*gpu) : "");
    }
    return 0;
}

// --gpus: "all", or distinct device ids separated by commas, each below n. The count
// into list, or -1 after printing (command NULL: silently).
static int parse_gpus(const char* command, const char* s, int n, int* list) {
    if (strcmp(s, "all") == 0) {
        const int k = n < CLI_MAX_GPUS ? n : CLI_MAX_GPUS;
        for (int i = 0; i < k; i++) list[i] = i;
        return k;
    }
    int k = 0;
    const char* p = s;
    while (1) {
        char* end = NULL;
        errno = 0;
        const long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ',') || *p == '-' || *p == '+' || *p == ' ') {
            say(command, "--gpus '%s': expected 'all' or device ids separated by commas, like 0,1,2,3\n", s);
            return -1;
        }
        if (v >= n) {
            say(command, "--gpus %s: device %ld is not there; this process sees %d CUDA device%s (0..%d)\n", s, v, n,
                n == 1 ? "" : "s", n - 1);
            return -1;
        }
        for (int i = 0; i < k; i++)
            if (list[i] == v) {
                say(command, "--gpus %s: device %ld is listed twice\n", s, v);
                return -1;
            }
        if (k == CLI_MAX_GPUS) {
            say(command, "--gpus %s: at most %d devices\n", s, CLI_MAX_GPUS);
            return -1;
        }
        list[k++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    return k;
}

// The --gpus checks of cli_engine_options (cli.h); the devices into list. The count, or -1
// after printing.
static int check_gpus(const char* command, const CliEngineArgs* a, const BackendOps* ops, int* list) {
    if (ops->device != ETX_DEVICE_CUDA) {
        say(command, "--gpus %s asks for CUDA devices, but this run is on the %s (--device)\n", a->gpus, ops->name);
        return -1;
    }
    if (a->gpu) {
        say(command, "--gpu %s and --gpus %s: give one of them (--gpu: one device; --gpus: several, one engine "
                     "each)\n", a->gpu, a->gpus);
        return -1;
    }
    int lr, ls;
    local_rank(&lr, &ls);
    if (ls > 1) {
        say(command, "--gpus runs several devices in one process, but %d ranks run on this node; under mpirun/srun "
                     "each rank takes one device (leave --gpus out), or run one rank per node with --gpus\n", ls);
        return -1;
    }
    const int n = ops->device_count ? ops->device_count() : 1;
    return parse_gpus(command, a->gpus, n, list);
}

void cli_say_gpus(const char* command, const int* list, int n) {
    const BackendOps* ops = etx_cuda_backend();
    fprintf(stderr, "etx %s: %d engine%s, on", command, n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++)
        fprintf(stderr, "%s cuda:%d (%s)", i ? "," : "", list[i],
                ops && ops->device_name_of ? ops->device_name_of(list[i]) : "");
    fputc('\n', stderr);
}

int cli_engine_gpus(const CliEngineArgs* a, const etx_engine_options* eo, int* list) {
    const BackendOps* ops = NULL;
    if (a->gpus && backend_pick(eo->device, &ops).code == ETX_OK && ops->device_count) {
        const int k = parse_gpus(NULL, a->gpus, ops->device_count(), list);
        if (k >= 1) return k;
    }
    list[0] = eo->gpu;
    return 1;
}

int cli_engine_options(const char* command, const CliEngineArgs* a, etx_engine_options* eo) {
    *eo = etx_engine_options_default();
    if (cli_parse_device(a->device, &eo->device) != 0) return -1;
    // the device must be able to run here (the CUDA backend linked, a GPU present)
    const BackendOps* ops = NULL;
    etx_status st = backend_pick(eo->device, &ops);
    if (st.code != ETX_OK) {
        say(command, "%s\n", st.message);
        return -1;
    }
    if (a->tp < 0 || a->tp > 64) {
        say(command, "--tp must be 1..64 (got %d)\n", a->tp);
        return -1;
    }
    if (a->tp > 1 && ops->device != ETX_DEVICE_CUDA) {
        say(command, "--tp %d splits the model across CUDA devices, but this run is on the %s (--device)\n", a->tp,
            ops->name);
        return -1;
    }
    if (a->tp > 1 && a->gpus) {
        say(command, "--tp with --gpus is not supported: --gpus runs one whole model per device; for several "
                     "tensor-parallel engines on a node use one rank each (mpirun -np R etx ... --tp N)\n");
        return -1;
    }
    eo->tp = a->tp > 1 ? a->tp : 0;
    if (a->gpus) {
        int list[CLI_MAX_GPUS];
        const int k = check_gpus(command, a, ops, list);
        if (k < 1) return -1;
        eo->gpu = list[0];
    } else if (ops->device == ETX_DEVICE_CUDA) {
        if (pick_gpu(command, a, ops, &eo->gpu) != 0) return -1;
    } else if (a->gpu) {
        say(command, "--gpu %s asks for a CUDA device, but this run is on the %s (--device)\n", a->gpu, ops->name);
        return -1;
    }
    if (cli_check_threads(command, a->threads) != 0) return -1;
    // a request needs one prompt token and one position to generate into
    if (a->ctx < 0 || a->ctx == 1) {
        say(command, "--ctx must be >= 2, or 0 for the default (got %d)\n", a->ctx);
        return -1;
    }
    if (a->batch < 0 || a->batch > CLI_MAX_BATCH) {
        say(command, "--batch must be 1..%d (got %d)\n", CLI_MAX_BATCH, a->batch);
        return -1;
    }
    if (a->kv_blocks < 0) {
        say(command, "--kv-blocks must be >= 1, or 0 for the automatic size (got %d)\n", a->kv_blocks);
        return -1;
    }
    if (a->kv_block_size < 0 || a->kv_block_size > ETX_MAX_KV_BLOCK_SIZE) {
        say(command, "--kv-block-size must be 1..%d, or 0 for the default 64 (got %d)\n", ETX_MAX_KV_BLOCK_SIZE,
            a->kv_block_size);
        return -1;
    }
    eo->n_threads = a->threads;
    eo->max_seq_len = a->ctx;
    eo->max_batch = a->batch;
    eo->kv_blocks = a->kv_blocks;
    eo->kv_block_size = a->kv_block_size;
    eo->prefix_cache = a->no_prefix_cache ? -1 : 0;
    return 0;
}

// The context the engine will use: --ctx, else the model's default.
static int context_of(const etx_model* m, const etx_engine_options* eo) {
    return eo->max_seq_len > 0 ? eo->max_seq_len : etx_default_context(m);
}

static int tp_divides(const char* command, int tp, int n_heads, int n_kv_heads, int hidden) {
    if (tp <= 1 || (n_heads % tp == 0 && n_kv_heads % tp == 0 && hidden % tp == 0)) return 0;
    say(command, "--tp %d does not divide the model: its %d query heads, %d KV heads and %d hidden units must each "
                 "split evenly across the devices\n", tp, n_heads, n_kv_heads, hidden);
    return -1;
}

int cli_tp_check_model_path(const char* command, const char* path, const etx_engine_options* eo) {
    if (eo->tp <= 1) return 0;
    ModelConfig c;
    if (model_read_config(path, &c).code != ETX_OK) return 0;
    return tp_divides(command, eo->tp, c.n_heads, c.n_kv_heads, c.hidden_dim);
}

int cli_engine_check_model(const char* command, const etx_model* m, const etx_engine_options* eo) {
    etx_model_info info;
    etx_model_get_info(m, &info);
    if (tp_divides(command, eo->tp, info.n_heads, info.n_kv_heads, info.hidden_dim) != 0) return -1;
    const int ctx = context_of(m, eo);
    if (ctx > info.max_seq_len) {
        say(command, "--ctx %d exceeds the model's context of %d tokens\n", ctx, info.max_seq_len);
        return -1;
    }
    if (eo->kv_blocks == 0) return 0; // the engine sizes the pool itself, at least two contexts
    const long long bs = eo->kv_block_size > 0 ? eo->kv_block_size : 64;
    const long long positions = (long long)eo->kv_blocks * bs;
    if (positions < ctx) {
        say(command, "a KV pool of %d blocks of %lld positions (%lld) cannot hold one request's context of %d "
                     "tokens (--ctx); give --kv-blocks %lld or more, or a smaller --ctx\n",
            eo->kv_blocks, bs, positions, ctx, (ctx + bs - 1) / bs);
        return -1;
    }
    // on the CPU the pool is float32 K and V of every layer in this process's memory (on
    // CUDA the device's memory, which the backend checks when it allocates)
    const BackendOps* ops = NULL;
    if (backend_pick(eo->device, &ops).code != ETX_OK || ops->device != ETX_DEVICE_CPU) return 0;
    const double bytes = (double)positions * 2.0 * info.n_layers * info.n_kv_heads * info.head_dim * sizeof(float);
    const double avail = available_memory_bytes();
    if (avail > 0 && bytes > avail) {
        say(command, "a KV pool of %d blocks of %lld positions takes %.2f GiB, more than the %.2f GiB of memory "
                     "available; give fewer --kv-blocks\n",
            eo->kv_blocks, bs, bytes / 1073741824.0, avail / 1073741824.0);
        return -1;
    }
    return 0;
}

int32_t cli_pause_token(const etx_model* m, const etx_policy* p) {
    if (p->kind != ETX_POLICY_ENTROPIX && p->kind != ETX_POLICY_LEARNED) return -1;
    if (p->entropix.pause_token >= 0) return p->entropix.pause_token;
    int32_t* ids = NULL;
    int n = 0;
    const int found = etx_tokenize(m, " ...", 4, 0, &ids, &n).code == ETX_OK && n == 1;
    const int32_t id = found ? ids[0] : -1;
    free(ids);
    return id;
}

int cli_policy_model_error(const etx_model* m, const etx_policy* p, const char* name, char* msg, size_t cap) {
    if (p->kind != ETX_POLICY_ENTROPIX && p->kind != ETX_POLICY_LEARNED) return 0;
    // a learned network without a pause action never inserts one (engine.c)
    const etx_learned_net* net = p->kind == ETX_POLICY_LEARNED ? etx_learned_get(p->learned) : NULL;
    if (p->kind == ETX_POLICY_LEARNED && (!net || !learned_has_pause(net))) return 0;
    etx_model_info info;
    etx_model_get_info(m, &info);
    const int pause = p->entropix.pause_token;
    if (pause >= info.vocab_size) {
        snprintf(msg, cap, "the entropix pause_token %d (%s) is outside the vocabulary (0..%d)", pause, name,
                 info.vocab_size - 1);
        return -1;
    }
    // -1: the model's single token for " ..." (what the engine looks up)
    if (cli_pause_token(m, p) >= 0) return 0;
    snprintf(msg, cap, "the model has no single token for \" ...\", the entropix pause token; give %s ID", name);
    return -1;
}

int cli_policy_check_model(const char* command, const etx_model* m, const etx_policy* p) {
    char msg[256];
    if (cli_policy_model_error(m, p, "--pause-token", msg, sizeof msg) == 0) return 0;
    say(command, "%s\n", msg);
    return -1;
}

int cli_prompt_check(const char* command, const etx_model* m, const etx_engine_options* eo, int n) {
    const int ctx = context_of(m, eo);
    if (n < ctx) return 0;
    say(command, "the prompt has %d tokens but the context holds %d; at most %d prompt tokens fit (one position "
                 "must stay free for generation; see --ctx)\n", n, ctx, ctx - 1);
    return -1;
}

int cli_check_input_file(const char* command, const char* option, const char* path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        say(command, "%s %s: %s\n", option, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        say(command, "%s %s: not a regular file%s\n", option, path, S_ISDIR(st.st_mode) ? " (a directory)" : "");
        return -1;
    }
    if ((unsigned long long)st.st_size > ETX_READ_FILE_MAX) {
        say(command, "%s %s: %llu bytes, more than the %zu etx reads\n", option, path,
            (unsigned long long)st.st_size, ETX_READ_FILE_MAX);
        return -1;
    }
    FILE* f = fopen(path, "rb"); // a regular file: opening it cannot block
    if (!f) {
        say(command, "%s %s: %s\n", option, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

int cli_finish_stdout(const char* command) {
    if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
    fprintf(stderr, "etx %s: writing to stdout failed: %s\n", command, strerror(errno));
    return CLI_EXIT_FAILED;
}

void cli_write_tokens(const etx_model* m, const int32_t* ids, int n, void* stream, FILE* f) {
    Utf8Stream* us = stream;
    for (int i = 0; i < n; i++) {
        const char* bytes;
        size_t len;
        if (etx_token_bytes(m, ids[i], &bytes, &len).code != ETX_OK) continue;
        char buf[UTF8_STREAM_OUT_MAX(128)];
        // push in slices so the output buffer always fits (invalid bytes expand to U+FFFD)
        for (size_t off = 0; off < len; off += 128) {
            size_t chunk = len - off < 128 ? len - off : 128;
            size_t w = utf8_stream_push(us, bytes + off, chunk, buf);
            fwrite(buf, 1, w, f);
        }
    }
    fflush(f);
}

static int is_id_separator(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ','; }

etx_status cli_parse_ids(const char* text, size_t len, int vocab, int32_t** ids, int* n) {
    int cap = 64, k = 0;
    int32_t* out = xmalloc((size_t)cap * sizeof(int32_t));
    const char* p = text;
    const char* const stop = text + len;
    for (;;) {
        while (p < stop && is_id_separator(*p)) p++;
        if (p == stop) break;
        // an entry is a sign and digits up to a separator or the end: copied out, so that
        // strtol never reads past len and a NUL byte is an error like any other stray byte
        char entry[32];
        size_t el = 0;
        while (p + el < stop && !is_id_separator(p[el]) && el + 1 < sizeof entry) el++;
        memcpy(entry, p, el);
        entry[el] = '\0';
        const size_t nul = strlen(entry);
        if (nul < el) {
            free(out);
            return etx_error(ETX_ERR_INVALID_ARG, "token id #%d: a NUL byte at byte %zu of the input", k + 1,
                             (size_t)(p - text) + nul);
        }
        char* end;
        errno = 0;
        long v = strtol(entry, &end, 10);
        const int whole = p + el == stop || is_id_separator(p[el]); // not cut by the entry buffer
        if (end == entry || errno || *end || !whole) {
            free(out);
            const size_t rest = (size_t)(stop - p) < 20 ? (size_t)(stop - p) : 20;
            return etx_error(ETX_ERR_INVALID_ARG, "token id #%d: '%.*s' is not an integer", k + 1, (int)rest, p);
        }
        if (v < 0 || (vocab > 0 && v >= vocab) || v > INT32_MAX) {
            free(out);
            if (vocab > 0)
                return etx_error(ETX_ERR_INVALID_ARG, "token id #%d: %ld is outside the vocabulary (0..%d)", k + 1, v,
                                 vocab - 1);
            return etx_error(ETX_ERR_INVALID_ARG, "token id #%d: %ld is not a valid token id", k + 1, v);
        }
        if (k == cap) out = xrealloc(out, (size_t)(cap *= 2) * sizeof(int32_t));
        out[k++] = (int32_t)v;
        p += el;
    }
    *ids = out;
    *n = k;
    return etx_ok();
}
