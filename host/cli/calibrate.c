/*
 * calibrate.c — `etx calibrate`: runs the prompts of a JSONL file, measures every signal
 * the policies read at every generated token, reports their quantiles (a Markdown table
 * on stdout, optionally a file, and an SVG of their histograms), and writes an entropix
 * policy file whose five thresholds sit at chosen quantiles of the measured entropy and
 * varentropy (host/policy/calibrate.h says which and why).
 *
 *     etx calibrate -m MODEL --data prompts.jsonl --out calibrated.json
 *     etx eval -m MODEL --data test.jsonl --policy-file calibrated.json ...
 *
 * The prompts run through the batch runner of `etx eval` (same data lines, same options,
 * same random keys) with the generation policy given (default greedy: the signals then
 * describe the model's own most likely continuations); the completions go nowhere. The
 * signals come from the trace records, so they are the engine's, bit for bit, on either
 * backend. Tokens whose signals are not finite (a request stopped by a fault) are left
 * out and counted. One process: under mpirun every rank would calibrate on its own.
 *
 * The policy file holds "policy": "entropix", the five thresholds (as decimal floats that
 * read back to the same bits) and "calibration": what they were measured on (model, data,
 * tokens, quantiles), which the policy-file reader accepts and ignores.
 */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch_run.h"
#include "cli.h"
#include "common.h"
#include "policy/calibrate.h"
#include "policy/policy.h"
#include "policy_math.h"

// The signals a trace record carries, in table order.
#define N_SIG 8
static const char* sig_names[N_SIG] = {"entropy",     "varentropy",  "attn_entropy", "attn_varentropy",
                                       "agreement",   "interaction", "logprob",      "confidence"};
static const char* sig_units[N_SIG] = {"bits", "bits^2", "bits", "bits^2", "", "", "nats", "nats"};

static const double table_q[] = {0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99};
#define N_TABLE_Q ((int)(sizeof table_q / sizeof table_q[0]))

// Every finite token's signals, appended as the requests finish (token i's are v[k][i]).
typedef struct {
    float* v[N_SIG];      // (n) each signal, in sig_names order
    size_t n, cap;
    long skipped;         // records with a non-finite signal
    long requests;
} Samples;

static void collect(void* ctx, const etx_trace_record* r, int n) {
    Samples* s = ctx;
    s->requests++;
    for (int i = 0; i < n; i++) {
        const float x[N_SIG] = {r[i].entropy,     r[i].varentropy,  r[i].attn_entropy, r[i].attn_varentropy,
                                r[i].agreement,   r[i].interaction, r[i].logprob,      r[i].confidence};
        int finite = 1;
        for (int k = 0; k < N_SIG; k++) finite &= isfinite(x[k]) != 0;
        if (!finite) {
            s->skipped++;
            continue;
        }
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 4096;
            for (int k = 0; k < N_SIG; k++) s->v[k] = xrealloc(s->v[k], s->cap * sizeof(float));
        }
        for (int k = 0; k < N_SIG; k++) s->v[k][s->n] = x[k];
        s->n++;
    }
}

// The branch each recorded token would take under p (the pause branch counted as such:
// the previous token is taken to be another one).
static void branch_mix(const Samples* s, const etx_entropix_params* p, double out[ETX_BRANCH_COUNT]) {
    for (int b = 0; b < ETX_BRANCH_COUNT; b++) out[b] = 0;
    for (size_t i = 0; i < s->n; i++) {
        const PolicyMetrics m = {.entropy = s->v[0][i], .varentropy = s->v[1][i], .attn_entropy = s->v[2][i],
                                 .attn_varentropy = s->v[3][i], .agreement = s->v[4][i], .interaction = s->v[5][i],
                                 .logit_max = 0, .logit_sigma = 0};
        out[entropix_decide(p, &m, -1, 0).branch] += 1;
    }
    for (int b = 0; b < ETX_BRANCH_COUNT; b++) out[b] = s->n ? 100.0 * out[b] / (double)s->n : 0;
}

// The table's columns: entropix's branches, ETX_BRANCH_ARGMAX .. ETX_BRANCH_ADAPTIVE (the
// greedy, sample and dslider branches never come out of the v1 tree).
static void print_mix(FILE* f, const char* label, const double mix[ETX_BRANCH_COUNT]) {
    fprintf(f, "| %s |", label);
    for (int b = ETX_BRANCH_ARGMAX; b <= ETX_BRANCH_ADAPTIVE; b++) fprintf(f, " %.1f %% |", mix[b]);
    fputc('\n', f);
}

// The report: the quantile table, the thresholds, the branch mixes. sorted[k]: signal k
// ascending.
static void report(FILE* f, const char* model, const char* data, const Samples* s, float* const* sorted,
                   const double q[CALIB_N_THRESH], const float thr[CALIB_N_THRESH], const etx_policy* def,
                   const etx_policy* cal) {
    fprintf(f, "# etx calibrate\n\nmodel %s, data %s: %ld requests, %zu generated tokens", model, data, s->requests,
            s->n);
    if (s->skipped) fprintf(f, " (%ld more with non-finite signals left out)", s->skipped);
    fprintf(f, "\n\n| signal | unit | mean |");
    for (int j = 0; j < N_TABLE_Q; j++) fprintf(f, " q%02.0f |", 100 * table_q[j]);
    fprintf(f, "\n|---|---|---:|");
    for (int j = 0; j < N_TABLE_Q; j++) fprintf(f, "---:|");
    fputc('\n', f);
    for (int k = 0; k < N_SIG; k++) {
        double mean = 0;
        for (size_t i = 0; i < s->n; i++) mean += sorted[k][i];
        mean = s->n ? mean / (double)s->n : NAN;
        fprintf(f, "| %s | %s | %.4g |", sig_names[k], sig_units[k], mean);
        for (int j = 0; j < N_TABLE_Q; j++) fprintf(f, " %.4g |", calib_quantile(sorted[k], s->n, table_q[j]));
        fputc('\n', f);
    }
    fprintf(f, "\n| threshold | quantile | calibrated | v1 default |\n|---|---:|---:|---:|\n");
    double v1[CALIB_N_THRESH];
    for (int i = 0; i < CALIB_N_THRESH; i++) {
        v1[i] = policy_param_get(def, policy_param_find(calib_thresholds[i].name));
        fprintf(f, "| %s (%s %s t) | %g | %.6g | %g |\n", calib_thresholds[i].name,
                calib_thresholds[i].signal ? "V" : "H", calib_thresholds[i].below ? "<" : ">", q[i], thr[i], v1[i]);
    }
    double mix_def[ETX_BRANCH_COUNT], mix_cal[ETX_BRANCH_COUNT];
    branch_mix(s, &def->entropix, mix_def);
    branch_mix(s, &cal->entropix, mix_cal);
    fprintf(f, "\nBranches these tokens would take (the decision replayed on their signals):\n\n| thresholds |");
    for (int b = ETX_BRANCH_ARGMAX; b <= ETX_BRANCH_ADAPTIVE; b++) fprintf(f, " %s |", etx_branch_name((etx_branch)b));
    fprintf(f, "\n|---|");
    for (int b = ETX_BRANCH_ARGMAX; b <= ETX_BRANCH_ADAPTIVE; b++) fprintf(f, "---:|");
    fputc('\n', f);
    print_mix(f, "v1 defaults", mix_def);
    print_mix(f, "calibrated", mix_cal);
}

// An SVG of the signals' histograms: one panel each, 40 bins between the 0.5 % and
// 99.5 % quantiles (the rest clipped into the end bins; a log axis for a positive signal
// spread over more than three decades), the calibrated thresholds
// drawn on the entropy and varentropy panels. Closes f. Returns 0, or -1 (errno) when it
// cannot be written.
static int write_svg(FILE* f, const Samples* s, float* const* sorted, const float thr[CALIB_N_THRESH]) {
    enum { W = 360, H = 200, COLS = 2, BINS = 40, PAD = 30 };
    const int rows = (N_SIG + COLS - 1) / COLS;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            COLS * W, rows * H);
    for (int k = 0; k < N_SIG; k++) {
        const int x0 = (k % COLS) * W + PAD, y0 = (k / COLS) * H + 20, pw = W - 2 * PAD, ph = H - 50;
        const double lo = calib_quantile(sorted[k], s->n, 0.005), hi = calib_quantile(sorted[k], s->n, 0.995);
        // a positive signal spread over more than three decades (a near-certain model's
        // entropy) is drawn on a log axis: linear, it would be one bar at 0
        const int logx = lo > 0 && hi > 1000 * lo;
#define AXIS(v) (logx ? log10((v) > lo ? (v) : lo) : (v))
        const double a0 = AXIS(lo), a1 = AXIS(hi);
        const double span = a1 > a0 ? a1 - a0 : 1.0;
        double count[BINS] = {0}, top = 1;
        for (size_t i = 0; i < s->n; i++) {
            int b = (int)floor((AXIS((double)sorted[k][i]) - a0) / span * BINS);
            b = b < 0 ? 0 : b >= BINS ? BINS - 1 : b;
            count[b] += 1;
        }
        for (int b = 0; b < BINS; b++) top = count[b] > top ? count[b] : top;
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s%s%s (%zu tokens%s)</text>\n", x0, y0 - 6, sig_names[k],
                sig_units[k][0] ? ", " : "", sig_units[k], s->n, logx ? ", log axis" : "");
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", x0, y0, pw,
                ph);
        for (int b = 0; b < BINS; b++) {
            const double bh = ph * count[b] / top;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4c72b0\"/>\n",
                    x0 + (double)pw * b / BINS, y0 + ph - bh, (double)pw / BINS - 0.5, bh);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\">%.3g</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n", x0,
                y0 + ph + 14, lo, x0 + pw, y0 + ph + 14, hi);
        for (int i = 0; i < CALIB_N_THRESH && k < 2; i++) {
            if (calib_thresholds[i].signal != k) continue;
            const double t = thr[i] < lo ? lo : thr[i] > hi ? hi : thr[i];
            const double x = x0 + pw * (AXIS(t) - a0) / span;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#c44e52\"/>\n", x, y0, x, y0 + ph);
            const int right = x > x0 + pw - 80; // near the right edge: the label to the left of the line
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" fill=\"#c44e52\" font-size=\"9\"%s>%s</text>\n",
                    right ? x - 2 : x + 2, y0 + 10 + 10 * i, right ? " text-anchor=\"end\"" : "",
                    calib_thresholds[i].name);
        }
#undef AXIS
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

// The policy file: the thresholds, then where they came from. Closes f. Returns 0, or -1
// (errno).
static int write_policy(FILE* f, const char* model, const char* data, const Samples* s,
                        const double q[CALIB_N_THRESH], const float thr[CALIB_N_THRESH]) {
    fprintf(f, "{\"policy\": \"entropix\"");
    for (int i = 0; i < CALIB_N_THRESH; i++) fprintf(f, ",\n \"%s\": %.9g", calib_thresholds[i].name, thr[i]);
    cJSON* c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "model", model);
    cJSON_AddStringToObject(c, "data", data);
    cJSON_AddNumberToObject(c, "requests", (double)s->requests);
    cJSON_AddNumberToObject(c, "tokens", (double)s->n);
    cJSON* qs = cJSON_AddObjectToObject(c, "quantiles");
    for (int i = 0; i < CALIB_N_THRESH; i++) cJSON_AddNumberToObject(qs, calib_thresholds[i].name, q[i]);
    char* js = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    fprintf(f, ",\n \"calibration\": %s}\n", js);
    cJSON_free(js);
    return fclose(f) == 0 ? 0 : -1;
}

int cmd_calibrate(int argc, char** argv) {
    EvalArgs a = {.command = "calibrate", .on_bad = "skip", .batch = 8, .max_tokens = 256, EVAL_SAMPLE_DEFAULTS};
    const char* policy = NULL;
    const char* policy_file = NULL;
    const char* out = NULL;
    const char* table = NULL;
    const char* plot = NULL;
    const char* spec = "";
    CliOpt fixed[] = {
        {"--model", "-m", OPT_STRING, &a.model, "PATH", "model directory or .gguf (default: $ETX_MODEL, else SmolLM2-135M-Instruct)", 0},
        {"--data", NULL, OPT_STRING, &a.data, "FILE", "prompts, JSONL as etx eval reads them", 0},
        {"--out", "-o", OPT_STRING, &out, "FILE", "the entropix policy file to write (JSON)", 0},
        {"--quantiles", NULL, OPT_STRING, &spec, "LIST",
         "name=q,... moves thresholds from their default quantiles (low_ent_thresh 0.5, low_vent_thresh 0.5, "
         "med_ent_thresh 0.95, high_ent_thresh 0.99, high_vent_thresh 0.95)", 0},
        {"--table", NULL, OPT_STRING, &table, "FILE", "also write the report (Markdown) to FILE", 0},
        {"--plot", NULL, OPT_STRING, &plot, "FILE", "write the signals' histograms as SVG", 0},
        {"--task", NULL, OPT_STRING, &a.task, "NAME", "gsm8k: lm-eval's stop strings (default: none)", 0},
        {"--no-stop-strings", NULL, OPT_FLAG, &a.no_stop_strings, NULL, "with --task gsm8k: no stop strings", 0},
        {"--limit", NULL, OPT_INT, &a.limit, "N", "only the first N requests of the file (default: all)", 0},
        {"--batch", NULL, OPT_INT, &a.batch, "N", "requests in the engine at once, 1..4096 (default 8)", 0},
        {"--max-tokens", "-n", OPT_INT, &a.max_tokens, "N", "tokens to generate per request (default 256)", 0},
        {"--on-bad-line", NULL, OPT_STRING, &a.on_bad, "MODE", "skip (report and go on, default) | fail (run nothing)", 0},
        {"--progress", NULL, OPT_FLAG, &a.progress, NULL, "progress bar on stderr even when it is not a terminal", 0},
        {"--threads", "-t", OPT_INT, &a.threads, "N", "CPU threads, at most the CPUs (default: all cores)", 0},
        {"--ctx", NULL, OPT_INT, &a.ctx, "N", "context length, prompt + generated (default min(model's, 4096))", 0},
        {"--device", NULL, OPT_STRING, &a.device, "DEV", "auto | cpu | cuda (default auto)", 0},
        CLI_KV_OPTS(&a.kv_blocks, &a.kv_block_size, &a.no_prefix_cache),
        CLI_GPU_OPTS(&a.gpu, &a.share_gpus, &a.tp),
        CLI_GPUS_OPT(&a.gpus),
        {"--policy", NULL, OPT_STRING, &policy, "NAME",
         "the policy that generates while the signals are measured: greedy | sample | entropix (default greedy)", 0},
        {"--policy-file", NULL, OPT_STRING, &policy_file, "FILE", "JSON policy that generates; flags override it", 0},
    };
    CliPolicyOpts po;
    if (cli_policy_opts_build(&po, fixed, (int)(sizeof fixed / sizeof fixed[0])) != 0) return 1;
    CliCommand cmd = {"calibrate", "[-m MODEL] --data FILE.jsonl --out POLICY.json [options]",
                      "Runs the prompts, reports the quantiles of every signal at the generated tokens, and writes "
                      "an entropix\npolicy file with its thresholds at chosen quantiles of the entropy and varentropy "
                      "(docs/policies.md).", po.opts, po.n_opts};
    Samples s;
    memset(&s, 0, sizeof s);
    float* sorted[N_SIG] = {0};
    const char* paths[3] = {NULL, NULL, NULL}; // --out, --table, --plot
    int created[3] = {0, 0, 0};                // made empty by the check before the run
    FILE* files[3] = {NULL, NULL, NULL};
    char* text = NULL; // the report
    size_t text_len = 0;
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_CONTINUE) goto done;
    rc = CLI_EXIT_REFUSED;
    if (!a.data || !out) {
        fprintf(stderr, "etx calibrate: --data FILE and --out FILE are required\n");
        goto done;
    }
    double q[CALIB_N_THRESH];
    calib_default_quantiles(q);
    char why[256];
    if (calib_parse_quantiles(spec, q, why, sizeof why) != 0) {
        fprintf(stderr, "etx calibrate: --quantiles: %s\n", why);
        goto done;
    }
    if (eval_args_check(&a) != 0) goto done;
    etx_policy gen;
    if (cli_policy_resolve("calibrate", &po, policy, policy_file, &gen) != 0) goto done;
    // the outputs are checked before the run (opened for appending, which changes nothing
    // in a file that exists), so that one that cannot be written costs nothing; those this
    // check created are removed again if the run fails
    paths[0] = out, paths[1] = table, paths[2] = plot;
    for (int i = 0; i < 3; i++) {
        if (!paths[i]) continue;
        const int existed = access(paths[i], F_OK) == 0;
        FILE* f = fopen(paths[i], "ab");
        if (!f) {
            fprintf(stderr, "etx calibrate: cannot write %s: %s\n", paths[i], strerror(errno));
            rc = CLI_EXIT_FAILED;
            goto done;
        }
        fclose(f);
        created[i] = !existed;
    }
    // the completions are not kept: a stream, never resumed (every request runs)
    a.out = "/dev/null";
    const EvalPar par = {.rank = 0, .size = 1, .mpi = 0};
    const BatchPlan plan = {.combos = &gen, .n_combos = 1, .tagged = 0, .run_path = NULL, .on_trace = collect,
                            .on_trace_ctx = &s};
    BatchRun br;
    Totals t;
    memset(&t, 0, sizeof t);
    double secs = 0;
    rc = batch_open(&br, &a, &par, &plan);
    if (rc == 0) rc = batch_execute(&br, &t, NULL, &secs);
    batch_close(&br);
    if (rc != 0) goto done;
    if (s.n == 0) {
        fprintf(stderr, "etx calibrate: no token with finite signals was generated; nothing to calibrate on\n");
        rc = CLI_EXIT_FAILED;
        goto done;
    }
    for (int k = 0; k < N_SIG; k++) {
        sorted[k] = xmalloc(s.n * sizeof(float));
        memcpy(sorted[k], s.v[k], s.n * sizeof(float));
        calib_sort(sorted[k], s.n);
    }
    float thr[CALIB_N_THRESH];
    const etx_policy def = etx_policy_default(ETX_POLICY_ENTROPIX);
    etx_policy cal = def;
    for (int i = 0; i < CALIB_N_THRESH; i++) {
        thr[i] = calib_threshold(i, sorted[calib_thresholds[i].signal], s.n, q[i]);
        const etx_status st = etx_policy_set(&cal, calib_thresholds[i].name, thr[i]);
        if (st.code != ETX_OK) { // cannot happen for a finite threshold >= 0; kept as a guard
            fprintf(stderr, "etx calibrate: %s\n", st.message);
            rc = CLI_EXIT_FAILED;
            goto done;
        }
    }
    const char* model = cli_model_path(a.model);
    // the report is built once: stdout and --table get the same text
    FILE* mem = open_memstream(&text, &text_len);
    if (!mem) {
        fprintf(stderr, "etx calibrate: out of memory for the report\n");
        rc = CLI_EXIT_FAILED;
        goto done;
    }
    report(mem, model, a.data, &s, sorted, q, thr, &def, &cal);
    fclose(mem);
    fwrite(text, 1, text_len, stdout);
    fflush(stdout);
    for (int i = 0; i < 3; i++)
        if (paths[i] && !(files[i] = fopen(paths[i], "wb"))) {
            fprintf(stderr, "etx calibrate: cannot write %s: %s\n", paths[i], strerror(errno));
            rc = CLI_EXIT_FAILED;
            goto done;
        }
    rc = 0;
    int table_ok = 1;
    if (files[1]) {
        table_ok = fwrite(text, 1, text_len, files[1]) == text_len;
        table_ok &= fclose(files[1]) == 0;
    }
    if (!table_ok) {
        fprintf(stderr, "etx calibrate: cannot write %s: %s\n", table, strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    files[1] = NULL;
    if (files[2] && write_svg(files[2], &s, sorted, thr) != 0) {
        fprintf(stderr, "etx calibrate: cannot write %s: %s\n", plot, strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    files[2] = NULL;
    if (write_policy(files[0], model, a.data, &s, q, thr) != 0) {
        fprintf(stderr, "etx calibrate: cannot write %s: %s\n", out, strerror(errno));
        rc = CLI_EXIT_FAILED;
    } else {
        fprintf(stderr, "etx calibrate: %zu tokens of %ld requests in %.1f s; wrote %s\n", s.n, s.requests, secs, out);
    }
    files[0] = NULL;
done:
    free(text);
    for (int i = 0; i < 3; i++) {
        if (files[i]) fclose(files[i]); // still open: not written
        if (rc != 0 && created[i]) remove(paths[i]);
    }
    for (int k = 0; k < N_SIG; k++) free(s.v[k]), free(sorted[k]);
    cli_policy_opts_free(&po);
    return rc;
}
