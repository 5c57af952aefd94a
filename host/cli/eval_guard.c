/*
 * eval_guard.c — what keeps an output of `etx eval` / `etx sweep` whole (eval.h,
 * "the output's guards"):
 *
 *   - the output is not the data file (resuming would cut and append to the input);
 *   - an output that is not a regular file (a pipe, /dev/stdout, /dev/null) is a stream:
 *     written from its start, never read back, locked or fingerprinted — reading
 *     /dev/stdout for a resume scan would wait on the process's own pipe forever;
 *   - a regular output is held under an exclusive flock for the whole run, so a second
 *     run on the same file (or sweep directory) is refused instead of interleaving;
 *   - the run's fingerprint (run.json) sits beside the output: everything that decides
 *     a result line (the model's bytes, the data file's bytes, the policies, the task,
 *     --max-tokens, --ctx, the random-key scheme). A resume whose fingerprint differs is
 *     refused, naming each field that changed. Left out on purpose: --batch, --threads,
 *     --device and the number of ranks (results do not depend on them: the batch
 *     invariance contract) and --limit (it chooses which requests run, not what any of
 *     them gives, so a run may be extended to more problems).
 *
 * The fingerprint is written (through a temporary file and a rename) before the first
 * result line, and rewritten only while the output holds no result.
 */
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "eval.h"
#include "policy/learned.h"
#include "policy/policy.h"

#define FP_FORMAT "etx run fingerprint 1"
#define FP_KEYS "id hash"                  // the random-key scheme (eval_request_key)
#define FP_HEAD_BYTES ((size_t)16 << 20)   // model files: the first 16 MiB are hashed ...
#define FP_TAIL_BYTES ((size_t)1 << 20)    // ... and the last 1 MiB, with the size

// ----------------------------------------------------------------------------
// hashing files

typedef struct {
    uint64_t h;
} Fnv;

static void fnv_add(Fnv* f, const void* p, size_t n) {
    const unsigned char* b = p;
    for (size_t i = 0; i < n; i++) f->h = (f->h ^ b[i]) * 1099511628211ull;
}

// Hashes bytes [off, off + n) of an open file into f. 0, or -1 on a read error.
static int fnv_add_range(Fnv* f, FILE* fp, long long off, long long n) {
    static char buf[1 << 16];
    if (fseeko(fp, (off_t)off, SEEK_SET) != 0) return -1;
    while (n > 0) {
        size_t want = n < (long long)sizeof buf ? (size_t)n : sizeof buf;
        size_t got = fread(buf, 1, want, fp);
        if (got == 0) return ferror(fp) ? -1 : 0;
        fnv_add(f, buf, got);
        n -= (long long)got;
    }
    return 0;
}

// {"bytes": N, "hash": "<16 hex>"} of a regular file: all of it (whole = 1), or its head
// and tail (model files: a different model differs there, and hashing gigabytes at
// every start would cost seconds). NULL when it cannot be read.
static cJSON* file_identity(const char* path, int whole) {
    struct stat st;
    FILE* fp = fopen(path, "rb");
    if (!fp) return NULL;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return NULL;
    }
    const long long size = (long long)st.st_size;
    Fnv f = {1469598103934665603ull};
    fnv_add(&f, &size, sizeof size);
    int rc;
    if (whole || size <= (long long)(FP_HEAD_BYTES + FP_TAIL_BYTES)) {
        rc = fnv_add_range(&f, fp, 0, size);
    } else {
        rc = fnv_add_range(&f, fp, 0, (long long)FP_HEAD_BYTES);
        if (rc == 0) rc = fnv_add_range(&f, fp, size - (long long)FP_TAIL_BYTES, (long long)FP_TAIL_BYTES);
    }
    fclose(fp);
    if (rc != 0) return NULL;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)f.h);
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "bytes", (double)size);
    cJSON_AddStringToObject(o, "hash", hex);
    return o;
}

// The identity of a model: a file's (file_identity), or for a Hugging Face directory
// one entry per regular file in it (name order), config.json and the tokenizer files
// hashed whole, the weights by head and tail.
static cJSON* model_identity(const char* path) {
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    if (!S_ISDIR(st.st_mode)) return file_identity(path, 0);
    struct dirent** names = NULL;
    const int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) return NULL;
    cJSON* o = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        const char* name = names[i]->d_name;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, name);
        const size_t len = strlen(name);
        const int weights = len > 12 && strcmp(name + len - 12, ".safetensors") == 0;
        const int small = strcmp(name, "config.json") == 0 || strncmp(name, "tokenizer", 9) == 0 ||
                          strcmp(name, "generation_config.json") == 0;
        if (weights || small) {
            cJSON* id = file_identity(full, small);
            if (id) cJSON_AddItemToObject(o, name, id);
        }
        free(names[i]);
    }
    free(names);
    return o;
}

// A policy's kind and every parameter of it, by name (u64 parameters as decimal strings:
// a double would round a seed above 2^53).
static cJSON* policy_object(const etx_policy* pol) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", policy_kind_name(pol->kind));
    for (int i = 0; i < policy_n_params; i++) {
        const PolicyParam* p = &policy_params[i];
        if (!policy_param_applies(p, pol->kind)) continue;
        if (p->type == PARAM_U64) {
            const int off = pol->kind == ETX_POLICY_ENTROPIX ? p->off_entropix : p->off_sample;
            uint64_t v;
            memcpy(&v, (const char*)pol + off, sizeof v);
            char buf[32];
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
            cJSON_AddStringToObject(o, p->name, buf);
        } else {
            cJSON_AddNumberToObject(o, p->name, policy_param_get(pol, p));
        }
    }
    const etx_learned_net* net = pol->kind == ETX_POLICY_LEARNED ? etx_learned_get(pol->learned) : NULL;
    if (net) { // the network by its bytes' hash (the id is this process's)
        char buf[32];
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)learned_hash(net));
        cJSON_AddStringToObject(o, "learned_network", buf);
    }
    return o;
}

cJSON* eval_fingerprint(const EvalArgs* a, const char* model_path, const etx_policy* combos, int n_combos) {
    cJSON* fp = cJSON_CreateObject();
    cJSON_AddStringToObject(fp, "format", FP_FORMAT);
    cJSON_AddStringToObject(fp, "command", a->command);
    cJSON* m = model_identity(model_path);
    if (m) cJSON_AddItemToObject(fp, "model", m);
    else cJSON_AddNullToObject(fp, "model");
    cJSON* d = file_identity(a->data, 1);
    if (d) cJSON_AddItemToObject(fp, "data", d);
    else cJSON_AddNullToObject(fp, "data");
    if (a->task) cJSON_AddStringToObject(fp, "task", a->task);
    else cJSON_AddNullToObject(fp, "task");
    if (a->no_stop_strings) cJSON_AddTrueToObject(fp, "no_stop_strings");
    cJSON_AddNumberToObject(fp, "max_tokens", a->max_tokens);
    cJSON_AddNumberToObject(fp, "ctx", a->ctx);
    cJSON_AddStringToObject(fp, "random_keys", FP_KEYS);
    if (a->branching.n_branches) { // absent without branching: older runs' fingerprints
        cJSON* bo = cJSON_AddObjectToObject(fp, "branching");
        cJSON_AddNumberToObject(bo, "n", a->branching.n_branches);
        cJSON_AddNumberToObject(bo, "entropy", a->branching.entropy);
        cJSON_AddNumberToObject(bo, "varentropy", a->branching.varentropy);
        cJSON_AddNumberToObject(bo, "lookahead", a->branching.lookahead);
        cJSON_AddNumberToObject(bo, "budget", a->branching.max_branch_tokens);
    }
    if (a->samples > 1) { // what a sample group's line holds (absent for one sample: older runs' fingerprints)
        cJSON* so = cJSON_AddObjectToObject(fp, "samples");
        cJSON_AddNumberToObject(so, "n", a->samples);
        cJSON_AddStringToObject(so, "vote", a->vote);
        cJSON_AddNumberToObject(so, "eta", a->eta);
        cJSON_AddNumberToObject(so, "conf_window", a->conf_window);
        cJSON_AddNumberToObject(so, "conf_tail", a->conf_tail);
        cJSON_AddStringToObject(so, "conf_stat", a->conf_stat);
        cJSON_AddNumberToObject(so, "online", a->online);
    }
    if (a->trace) cJSON_AddTrueToObject(fp, "trace"); // (absent without: older runs' fingerprints)
    if (n_combos == 1) {
        cJSON_AddItemToObject(fp, "policy", policy_object(&combos[0]));
    } else {
        cJSON* arr = cJSON_AddArrayToObject(fp, "policies");
        for (int c = 0; c < n_combos; c++) cJSON_AddItemToArray(arr, policy_object(&combos[c]));
    }
    return fp;
}

// ----------------------------------------------------------------------------
// comparing fingerprints

// The part of a field's name shown to the user, and how a change in it is told.
static const char* field_hint(const char* top) {
    if (strcmp(top, "model") == 0) return " (another model file, or the file changed)";
    if (strcmp(top, "data") == 0) return " (the data file's contents changed)";
    if (strcmp(top, "random_keys") == 0) return " (written by an etx that keyed requests otherwise)";
    return "";
}

// Appends "; NAME was X, now Y" for every leaf where was and now differ (recursing into
// objects and arrays of equal shape). Returns the number of differences.
static int diff(const char* name, const cJSON* was, const cJSON* now, char* out, size_t cap, int depth) {
    if (was && now && cJSON_Compare(was, now, 1)) return 0;
    const int both_obj = cJSON_IsObject(was) && cJSON_IsObject(now);
    const int both_arr = cJSON_IsArray(was) && cJSON_IsArray(now) && cJSON_GetArraySize(was) == cJSON_GetArraySize(now);
    const int top = depth == 0 && name[0] == '\0';
    if ((both_obj || both_arr) && (top || strncmp(name, "model", 5) != 0) && strncmp(name, "data", 4) != 0) {
        int n = 0;
        // a policy of another kind: its kind says it all (the parameters differ with it)
        const cJSON* kw = both_obj ? cJSON_GetObjectItemCaseSensitive(was, "kind") : NULL;
        const cJSON* kn = both_obj ? cJSON_GetObjectItemCaseSensitive(now, "kind") : NULL;
        if (kw && kn && !cJSON_Compare(kw, kn, 1)) {
            char sub[200];
            snprintf(sub, sizeof sub, "%s%skind", name, name[0] ? "." : "");
            return diff(sub, kw, kn, out, cap, depth + 1);
        }
        if (both_obj) {
            // keys of either side, each once
            for (const cJSON* c = was->child; c; c = c->next) {
                char sub[200];
                snprintf(sub, sizeof sub, "%s%s%s", name, name[0] ? "." : "", c->string);
                n += diff(sub, c, cJSON_GetObjectItemCaseSensitive(now, c->string), out, cap, depth + 1);
            }
            for (const cJSON* c = now->child; c; c = c->next) {
                if (cJSON_GetObjectItemCaseSensitive(was, c->string)) continue;
                char sub[200];
                snprintf(sub, sizeof sub, "%s%s%s", name, name[0] ? "." : "", c->string);
                n += diff(sub, NULL, c, out, cap, depth + 1);
            }
        } else {
            int i = 0;
            for (const cJSON *x = was->child, *y = now->child; x && y; x = x->next, y = y->next, i++) {
                char sub[200];
                snprintf(sub, sizeof sub, "%s[%d]", name, i);
                n += diff(sub, x, y, out, cap, depth + 1);
            }
        }
        return n;
    }
    char* w = was ? cJSON_PrintUnformatted(was) : NULL;
    char* v = now ? cJSON_PrintUnformatted(now) : NULL;
    const size_t used = strlen(out);
    if (strncmp(name, "model", 5) == 0 || strncmp(name, "data", 4) == 0)
        snprintf(out + used, cap - used, "; %s differs%s", name, field_hint(name));
    else
        snprintf(out + used, cap - used, "; %s was %.60s, now %.60s", name, w ? w : "(absent)", v ? v : "(absent)");
    free(w);
    free(v);
    return 1;
}

// Writes text to path through path.tmp and a rename: a reader never sees half a file.
int eval_write_atomic(const char* path, const char* text, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(tmp, "wb");
    if (!f) return -1;
    int ok = fwrite(text, 1, len, f) == len;
    ok &= fflush(f) == 0;
    ok &= fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

int eval_fingerprint_check(EvalOutGuard* g, const char* command, const char* out, const char* run_path,
                           const cJSON* fp, int n_results) {
    char* text = NULL;
    size_t len = 0;
    struct stat st;
    if (n_results > 0 && stat(run_path, &st) == 0) {
        if (etx_read_file_max(run_path, ETX_JSON_FILE_MAX, &text, &len).code != ETX_OK) {
            fprintf(stderr, "etx %s: cannot read %s: %s\n", command, run_path, strerror(errno));
            return 1;
        }
        cJSON* was = cJSON_ParseWithLength(text, len);
        free(text);
        const cJSON* format = cJSON_GetObjectItemCaseSensitive(was, "format");
        if (!cJSON_IsString(format) || strcmp(format->valuestring, FP_FORMAT) != 0) {
            fprintf(stderr, "etx %s: %s is not a run fingerprint etx can read; %s holds %d results of an unknown run "
                            "(remove both to start over, or choose another --out)\n", command, run_path, out,
                    n_results);
            cJSON_Delete(was);
            return 2;
        }
        char changes[2048] = "";
        const int n = diff("", was, fp, changes, sizeof changes, 0);
        cJSON_Delete(was);
        if (n > 0) {
            fprintf(stderr, "etx %s: %s holds %d results of another run (%s): %s.\netx %s: resume with the same "
                            "settings, choose another --out, or remove %s and %s to start over\n",
                    command, out, n_results, run_path, changes + 2, command, out, run_path);
            return 2;
        }
        return 0; // the same run: the file stays as it is
    }
    if (n_results > 0)
        fprintf(stderr, "etx %s: warning: %s holds %d results but no %s (written by an older etx?); resuming "
                        "without checking that they come from the same run\n", command, out, n_results, run_path);
    char* json = cJSON_Print(fp);
    const size_t n = strlen(json);
    json = xrealloc(json, n + 2);
    json[n] = '\n';
    json[n + 1] = '\0';
    const int rc = eval_write_atomic(run_path, json, n + 1);
    free(json);
    if (rc == 0 && n_results == 0 && !g->run_path) g->run_path = xstrdup(run_path); // this run's own
    if (rc != 0) {
        fprintf(stderr, "etx %s: cannot write %s: %s\n", command, run_path, strerror(errno));
        return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the output file

int eval_guard_open(EvalOutGuard* g, const EvalArgs* a, int lock) {
    memset(g, 0, sizeof *g);
    g->lock_fd = -1;
    struct stat so, sd;
    const int have_out = stat(a->out, &so) == 0;
    if (have_out && stat(a->data, &sd) == 0 && so.st_dev == sd.st_dev && so.st_ino == sd.st_ino) {
        fprintf(stderr, "etx %s: --out %s is the data file; results would be appended to the requests (choose "
                        "another --out)\n", a->command, a->out);
        return 2;
    }
    if (have_out && !S_ISREG(so.st_mode)) {
        if (S_ISDIR(so.st_mode)) {
            fprintf(stderr, "etx %s: --out %s is a directory\n", a->command, a->out);
            return 2;
        }
        g->stream = 1; // a pipe, a terminal, /dev/null: written, never read back
        return 0;
    }
    if (!lock) return 0;
    g->created = !have_out;
    g->path = xstrdup(a->out);
    g->lock_fd = open(a->out, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (g->lock_fd < 0) {
        fprintf(stderr, "etx %s: cannot open %s: %s\n", a->command, a->out, strerror(errno));
        return 1; // an output that cannot be created: a failed run (docs/commands.md)
    }
    if (flock(g->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        close(g->lock_fd);
        g->lock_fd = -1;
        if (e == EWOULDBLOCK)
            fprintf(stderr, "etx %s: another etx run is writing %s; two runs on one output would interleave their "
                            "lines (wait for it, or choose another --out)\n", a->command, a->out);
        else
            fprintf(stderr, "etx %s: cannot lock %s: %s\n", a->command, a->out, strerror(e));
        return 2;
    }
    return 0;
}

void eval_guard_close(EvalOutGuard* g, int refused) {
    // a refused run leaves no trace: the empty output it created for its lock goes, and
    // the fingerprint with it (while locked, so no other run sees them half-removed)
    struct stat st;
    if (refused && g->created && g->lock_fd >= 0 && fstat(g->lock_fd, &st) == 0 && st.st_size == 0) {
        unlink(g->path);
        if (g->run_path) unlink(g->run_path);
    }
    if (g->lock_fd >= 0) close(g->lock_fd); // closing the descriptor releases the lock
    free(g->path);
    free(g->run_path);
    memset(g, 0, sizeof *g);
    g->lock_fd = -1;
}
