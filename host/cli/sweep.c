/*
 * sweep.c — `etx sweep`: every combination of a grid of policy parameters × every request
 * of a JSONL file, through one engine, with results per combination in a CSV.
 *
 * The grid file (docs/commands.md, `etx sweep`):
 *
 *     {"policy": "entropix",
 *      "base": {"seed": 7, "top_k": 40},
 *      "grid": {"temperature": [0.5, 0.7], "low_ent_thresh": [0.1, 0.3]}}
 *
 * "policy" picks the kind (optional when --policy-file says it); the policy starts from
 * that kind's defaults, then --policy-file, then "base", then one value of each "grid"
 * parameter. Combinations are numbered like an odometer: the first grid key varies
 * slowest, the last fastest, values in file order. Every combination is built and
 * validated through etx_policy_set/etx_policy_validate before the model is loaded, so a
 * bad grid (unknown name, value out of range, empty list, non-number, malformed JSON)
 * costs nothing and exits 2.
 *
 * The jobs are (combination, line) pairs, combination-major, run by the batch runner
 * that `etx eval` uses too (batch_run.h) at most --batch at once. A request's random key is its line index, as
 * in `etx eval`: the same line gets the same key under every combination (common random
 * numbers), so a combination's completions equal `etx eval` with that policy, and no
 * result depends on the batch size or on the rank that ran it. Under mpirun job j runs
 * on rank j % size and rank 0 writes the merged files, identical to one process.
 *
 * DIR/results.csv: one row per combination; DIR/completions.jsonl: one line per job in
 * job order (eval's result line with "combo" first); DIR/grid.json: the grid file as
 * given, written once (a temporary file and a rename); DIR/run.json: the run's
 * fingerprint (eval_guard.c). Runs resume: rerun with the same grid and DIR, the jobs
 * already in completions.jsonl are skipped (new lines are appended in job order) and
 * results.csv is rewritten from every line; tokens/s covers the jobs run by the last
 * invocation. A DIR holding another grid, or another run's results (run.json: another
 * model, data file, --policy-file, -n, ...), is refused; while a sweep runs, its
 * completions.jsonl is locked and a second sweep into DIR is refused.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "batch_run.h"
#include "policy/json_strict.h"
#include "policy/policy.h"

#define SWEEP_MAX_COMBOS 100000

typedef struct {
    const char* name; // the key in the grid file (owned by root)
    double* values;
    int n;
} GridParam;

typedef struct {
    char* text;        // the grid file as read
    size_t len;
    cJSON* root;
    GridParam* params; // in file order
    int n_params;
    int n_combos;
    etx_policy* combos; // (n_combos)
    int* pick;          // (n_combos * n_params) value index of each parameter
} Grid;

static void grid_free(Grid* g) {
    for (int i = 0; i < g->n_params; i++) free(g->params[i].values);
    free(g->params);
    free(g->combos);
    free(g->pick);
    cJSON_Delete(g->root);
    free(g->text);
    memset(g, 0, sizeof *g);
}

// 0 when no key of object o appears twice; else prints and returns -1.
static int no_duplicates(const char* path, const char* where, const cJSON* o) {
    const char* twice = json_repeated_key(o);
    if (!twice) return 0;
    fprintf(stderr, "etx sweep: %s: %s: key '%s' appears twice\n", path, where, twice);
    return -1;
}

// "policy: X must be in [0, 1] (got 2)" -> "etx sweep: GRID: WHERE: X must be ..."
static void set_error(const char* path, const char* where, etx_status st) {
    const char* msg = st.message;
    if (strncmp(msg, "policy: ", 8) == 0) msg += 8;
    fprintf(stderr, "etx sweep: %s: %s: %s\n", path, where, msg);
}

// Reads and checks the grid file; every combination's policy is built. 0, or -1 printed.
static int grid_load(const char* path, const char* policy_file, Grid* g) {
    memset(g, 0, sizeof *g);
    etx_status st = etx_read_file_max(path, ETX_JSON_FILE_MAX, &g->text, &g->len);
    if (st.code != ETX_OK) {
        cli_error("sweep", st);
        return -1;
    }
    JsonStrictError je;
    g->root = json_strict_parse(g->text, g->len, &je);
    if (!g->root) {
        char what[300];
        json_strict_describe(&je, what, sizeof what);
        fprintf(stderr, "etx sweep: %s: %s\n", path, what);
        return -1;
    }
    const cJSON* root = g->root;
    if (!cJSON_IsObject(root)) {
        fprintf(stderr, "etx sweep: %s: expected an object {\"policy\", \"base\", \"grid\"}, got %s\n", path,
                json_type_name(root));
        return -1;
    }
    if (no_duplicates(path, "top level", root) != 0) return -1;
    static const char* const top_keys[] = {"policy", "base", "grid"};
    const char* unknown = json_unknown_key(root, top_keys, 3);
    if (unknown) {
        fprintf(stderr, "etx sweep: %s: unknown key '%s' (expected \"policy\", \"base\" and \"grid\")\n", path,
                unknown);
        return -1;
    }
    // the kind and the base policy
    const cJSON* kj = cJSON_GetObjectItemCaseSensitive(root, "policy");
    int kind = -1;
    if (kj) {
        if (!cJSON_IsString(kj) || (kind = policy_kind_parse(kj->valuestring)) < 0) {
            fprintf(stderr, "etx sweep: %s: \"policy\" must be \"greedy\", \"sample\" or \"entropix\"\n", path);
            return -1;
        }
    } else if (!policy_file) {
        fprintf(stderr, "etx sweep: %s: \"policy\" is required (greedy, sample or entropix) unless --policy-file "
                        "gives it\n", path);
        return -1;
    }
    etx_policy base = etx_policy_default(kind >= 0 ? (etx_policy_kind)kind : ETX_POLICY_GREEDY);
    if (policy_file) {
        st = etx_policy_load_json(policy_file, &base);
        if (st.code != ETX_OK) {
            cli_error("sweep", st);
            return -1;
        }
        if (kind >= 0 && (int)base.kind != kind) {
            fprintf(stderr, "etx sweep: %s says \"policy\": \"%s\" but %s says \"%s\"\n", path,
                    policy_kind_name((etx_policy_kind)kind), policy_file, policy_kind_name(base.kind));
            return -1;
        }
    }
    const cJSON* bj = cJSON_GetObjectItemCaseSensitive(root, "base");
    if (bj && !cJSON_IsObject(bj)) {
        fprintf(stderr, "etx sweep: %s: \"base\" must be an object of parameters, got %s\n", path, json_type_name(bj));
        return -1;
    }
    if (bj && no_duplicates(path, "base", bj) != 0) return -1;
    for (const cJSON* v = bj ? bj->child : NULL; v; v = v->next) {
        char where[128];
        snprintf(where, sizeof where, "base.%s", v->string);
        if (!cJSON_IsNumber(v)) {
            fprintf(stderr, "etx sweep: %s: %s must be a number, got %s\n", path, where, json_type_name(v));
            return -1;
        }
        st = etx_policy_set(&base, v->string, v->valuedouble);
        if (st.code != ETX_OK) {
            set_error(path, "base", st);
            return -1;
        }
    }
    // the grid: every value is tried on the base policy
    const cJSON* gj = cJSON_GetObjectItemCaseSensitive(root, "grid");
    if (!cJSON_IsObject(gj) || !gj->child) {
        fprintf(stderr, "etx sweep: %s: \"grid\" must be a non-empty object {\"<parameter>\": [values], ...}\n", path);
        return -1;
    }
    if (no_duplicates(path, "grid", gj) != 0) return -1;
    g->n_params = cJSON_GetArraySize(gj);
    g->params = xcalloc((size_t)g->n_params, sizeof *g->params);
    long n_combos = 1;
    int k = 0;
    for (const cJSON* v = gj->child; v; v = v->next, k++) {
        GridParam* p = &g->params[k];
        p->name = v->string;
        char where[128];
        snprintf(where, sizeof where, "grid.%s", v->string);
        if (bj && cJSON_GetObjectItemCaseSensitive(bj, v->string)) {
            fprintf(stderr, "etx sweep: %s: '%s' is in both \"base\" and \"grid\"\n", path, v->string);
            return -1;
        }
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
            fprintf(stderr, "etx sweep: %s: %s must be a non-empty array of numbers, got %s%s\n", path, where,
                    cJSON_IsArray(v) ? "an empty " : "", cJSON_IsArray(v) ? "array" : json_type_name(v));
            return -1;
        }
        p->values = xcalloc((size_t)cJSON_GetArraySize(v), sizeof(double));
        const cJSON* e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsNumber(e)) {
                fprintf(stderr, "etx sweep: %s: %s[%d] must be a number, got %s\n", path, where, p->n,
                        json_type_name(e));
                return -1;
            }
            etx_policy probe = base;
            st = etx_policy_set(&probe, v->string, e->valuedouble);
            if (st.code != ETX_OK) {
                char at[160];
                snprintf(at, sizeof at, "%s[%d]", where, p->n);
                set_error(path, st.message[0] && strstr(st.message, "unknown parameter") ? "grid" : at, st);
                return -1;
            }
            p->values[p->n++] = e->valuedouble;
        }
        n_combos *= p->n;
        if (n_combos > SWEEP_MAX_COMBOS) {
            fprintf(stderr, "etx sweep: %s: more than %d combinations\n", path, SWEEP_MAX_COMBOS);
            return -1;
        }
    }
    // every combination, the last parameter fastest
    g->n_combos = (int)n_combos;
    g->combos = xcalloc((size_t)n_combos, sizeof *g->combos);
    g->pick = xcalloc((size_t)n_combos * (size_t)g->n_params, sizeof(int));
    for (int c = 0; c < g->n_combos; c++) {
        etx_policy pol = base;
        int rest = c;
        for (int i = g->n_params - 1; i >= 0; i--) {
            int j = rest % g->params[i].n;
            rest /= g->params[i].n;
            g->pick[c * g->n_params + i] = j;
        }
        for (int i = 0; i < g->n_params; i++) {
            st = etx_policy_set(&pol, g->params[i].name, g->params[i].values[g->pick[c * g->n_params + i]]);
            if (st.code == ETX_OK) continue;
            set_error(path, "grid", st);
            return -1;
        }
        st = etx_policy_validate(&pol);
        if (st.code != ETX_OK) {
            char where[64];
            snprintf(where, sizeof where, "combination %d", c);
            set_error(path, where, st);
            return -1;
        }
        g->combos[c] = pol;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// outputs

// DIR/results.csv: one row per combination (rate[c]: its tokens/s, see run_sweep),
// through results.csv.tmp and a rename so that a reader never sees half a table.
static int write_csv(const char* path, const Grid* g, const Totals* t, const double* rate) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(tmp, "wb");
    if (!f) return -1;
    fprintf(f, "combo");
    for (int i = 0; i < g->n_params; i++) fprintf(f, ",%s", g->params[i].name);
    fprintf(f, ",n,accuracy_strict,accuracy_flexible,mean_tokens,tokens_per_s");
    for (int b = 0; b < ETX_BRANCH_COUNT; b++) fprintf(f, ",branch_%s", etx_branch_name((etx_branch)b));
    fputc('\n', f);
    for (int c = 0; c < g->n_combos; c++) {
        const Totals* x = &t[c];
        fprintf(f, "%d", c);
        for (int i = 0; i < g->n_params; i++) fprintf(f, ",%.9g", g->params[i].values[g->pick[c * g->n_params + i]]);
        fprintf(f, ",%d", (int)x->done);
        if (x->scored > 0) fprintf(f, ",%.6f,%.6f", x->strict / x->scored, x->flexible / x->scored);
        else fprintf(f, ",,");
        fprintf(f, ",%.3f,%.2f", x->done > 0 ? x->tokens / x->done : 0.0, rate[c]);
        for (int b = 0; b < ETX_BRANCH_COUNT; b++)
            fprintf(f, ",%.6f", x->tokens > 0 ? x->branches[b] / x->tokens : 0.0);
        fputc('\n', f);
    }
    const int ok = fflush(f) == 0 && !ferror(f);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

typedef struct {
    EvalArgs a;
    const char* dir;
    const char* grid_path;
} SweepArgs;

static int run_sweep(SweepArgs* sa, const Grid* g, const EvalPar* par) {
    EvalArgs* a = &sa->a;
    char out_csv[4096], out_grid[4096], out_jsonl[4096], out_run[4096];
    snprintf(out_csv, sizeof out_csv, "%s/results.csv", sa->dir);
    snprintf(out_grid, sizeof out_grid, "%s/grid.json", sa->dir);
    snprintf(out_jsonl, sizeof out_jsonl, "%s/completions.jsonl", sa->dir);
    snprintf(out_run, sizeof out_run, "%s/run.json", sa->dir);
    a->out = out_jsonl;
    int ok = 1, same_grid = 1, have_grid = 0;
    if (par->rank == 0) {
        if (mkdir(sa->dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "etx sweep: cannot create %s: %s\n", sa->dir, strerror(errno));
            ok = 0;
        }
        // resume only the same grid: a directory holding another grid's results is refused
        struct stat st;
        if (ok && stat(out_grid, &st) == 0) {
            char* old = NULL;
            size_t old_len = 0;
            have_grid = 1;
            if (etx_read_file_max(out_grid, ETX_JSON_FILE_MAX, &old, &old_len).code != ETX_OK ||
                old_len != g->len || memcmp(old, g->text, g->len) != 0)
                same_grid = 0;
            free(old);
        }
        if (!same_grid)
            fprintf(stderr, "etx sweep: %s holds the results of another grid (%s differs from --grid); remove it or "
                            "choose another --out\n", sa->dir, out_grid);
    }
    if (!eval_par_all_ok(par, same_grid)) return 2;
    if (!eval_par_all_ok(par, ok)) return 1; // an output that cannot be made: a failed run
    // the jobs: every (combination, line), combination-major; batch_open locks
    // completions.jsonl (the directory's lock) and checks run.json
    const BatchPlan plan = {.combos = g->combos, .n_combos = g->n_combos, .tagged = 1, .run_path = out_run};
    BatchRun br;
    Totals* t = xcalloc((size_t)g->n_combos, sizeof *t);
    double* rate = xcalloc((size_t)g->n_combos, sizeof(double));
    double secs = 0;
    int rc = batch_open(&br, a, par, &plan);
    if (rc == 0) {
        if (br.n_skipped && par->rank == 0)
            fprintf(stderr, "etx sweep: resuming: %d of %ld jobs already in %s\n", br.n_skipped, br.n_total, out_jsonl);
        ok = 1;
        // grid.json: written once, whole (a temporary file and a rename), under the lock
        if (par->rank == 0 && !have_grid && eval_write_atomic(out_grid, g->text, g->len) != 0) {
            fprintf(stderr, "etx sweep: cannot write %s: %s\n", out_grid, strerror(errno));
            ok = 0;
        }
        // the counts of the jobs already done (rank 0 only: the ranks' totals are summed)
        if (ok && par->rank == 0 && eval_done_totals(out_jsonl, br.done.good_len, g->n_combos, t) != 0) {
            fprintf(stderr, "etx sweep: cannot read %s: %s\n", out_jsonl, strerror(errno));
            ok = 0;
        }
        if (!eval_par_all_ok(par, ok)) rc = 1;
    }
    if (rc == 0) rc = batch_execute(&br, t, rate, &secs);
    if (rc == 0 && par->rank == 0) {
        if (write_csv(out_csv, g, t, rate) != 0) {
            fprintf(stderr, "etx sweep: writing %s failed: %s\n", out_csv, strerror(errno));
            rc = 1;
        } else {
            double tokens = 0;
            for (int c = 0; c < g->n_combos; c++) tokens += t[c].tokens;
            fprintf(stderr, "etx sweep: %d combinations x %d requests, %d bad lines skipped; %.0f tokens in %.1f s "
                            "(%.1f tok/s)\netx sweep: wrote %s, %s, %s\n",
                    g->n_combos, br.n_items, br.n_bad, tokens, secs, secs > 0 ? tokens / secs : 0.0, out_csv,
                    out_jsonl, out_grid);
        }
    }
    batch_close(&br);
    free(t);
    free(rate);
    return rc;
}

int cmd_sweep(int argc, char** argv) {
    SweepArgs sa = {.a = {.command = "sweep", .on_bad = "skip", .batch = 8, .max_tokens = 256, EVAL_SAMPLE_DEFAULTS}};
    EvalArgs* a = &sa.a;
    const char* policy_file = NULL;
    CliOpt opts[] = {
        {"--model", "-m", OPT_STRING, &a->model, "PATH", "model directory or .gguf (default: $ETX_MODEL, else SmolLM2-135M-Instruct)", 0},
        {"--data", NULL, OPT_STRING, &a->data, "FILE", "input JSONL: {\"id\", \"prompt\" | \"messages\", [\"answer\"]} per line", 0},
        {"--grid", NULL, OPT_STRING, &sa.grid_path, "FILE",
         "grid JSON {\"policy\": KIND, \"base\": {...}, \"grid\": {\"<parameter>\": [values], ...}}", 0},
        {"--out", "-o", OPT_STRING, &sa.dir, "DIR", "output directory: results.csv, completions.jsonl, grid.json", 0},
        {"--task", NULL, OPT_STRING, &a->task, "NAME", "gsm8k: lm-eval's stop strings and GSM8K scoring (default: none)", 0},
        {"--limit", NULL, OPT_INT, &a->limit, "N", "only the first N requests of the file (default: all)", 0},
        {"--batch", NULL, OPT_INT, &a->batch, "N", "requests in the engine at once, 1..4096 (default 8)", 0},
        {"--max-tokens", "-n", OPT_INT, &a->max_tokens, "N", "tokens to generate per request (default 256)", 0},
        {"--policy-file", NULL, OPT_STRING, &policy_file, "FILE",
         "JSON policy the grid starts from (then the grid's \"base\", then its values)", 0},
        {"--on-bad-line", NULL, OPT_STRING, &a->on_bad, "MODE", "skip (report and go on, default) | fail (run nothing)", 0},
        {"--progress", NULL, OPT_FLAG, &a->progress, NULL, "progress bar on stderr even when it is not a terminal", 0},
        {"--threads", "-t", OPT_INT, &a->threads, "N", "CPU threads per process, at most the CPUs (default: all cores)", 0},
        {"--ctx", NULL, OPT_INT, &a->ctx, "N", "context length, prompt + generated (default min(model's, 4096))", 0},
        {"--device", NULL, OPT_STRING, &a->device, "DEV", "auto | cpu | cuda (default auto)", 0},
        CLI_KV_OPTS(&a->kv_blocks, &a->kv_block_size, &a->no_prefix_cache),
        CLI_GPU_OPTS(&a->gpu, &a->share_gpus, &a->tp),
        CLI_GPUS_OPT(&a->gpus),
        EVAL_SAMPLE_OPTS(a),
    };
    CliCommand cmd = {"sweep", "[-m MODEL] --data FILE.jsonl --grid GRID.json --out DIR [options]",
                      "Runs every combination of a grid of policy parameters on every request of a JSONL file, all "
                      "through one\nengine; writes DIR/results.csv (one row per combination), DIR/completions.jsonl "
                      "and DIR/grid.json.\nUnder mpirun the (combination, request) pairs are split over the ranks.",
                      opts, (int)(sizeof opts / sizeof opts[0])};
    const int pr = cli_parse(&cmd, argc, argv);
    if (pr != CLI_CONTINUE) return pr;
    if (!a->data || !sa.grid_path || !sa.dir) {
        fprintf(stderr, "etx sweep: --data FILE, --grid FILE and --out DIR are required\n");
        return 2;
    }
    if (eval_args_check(a) != 0) return 2;
    Grid g;
    if (grid_load(sa.grid_path, policy_file, &g) != 0) {
        grid_free(&g);
        return 2;
    }
    EvalPar par;
    eval_par_init(&par, &argc, &argv);
    int rc = run_sweep(&sa, &g, &par);
    eval_par_finalize(&par);
    grid_free(&g);
    return rc;
}
