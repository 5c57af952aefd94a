/*
 * eval.c — `etx eval`: every request of a JSONL file through one engine, results to a
 * JSONL file in input order, optionally scored (GSM8K as lm-evaluation-harness does it).
 *
 * It is the batch run (batch_run.h) of one policy: at most --batch requests are in the
 * engine at once, refilled as they finish; each request's random key is a hash of its id,
 * so its tokens do not depend on the batch, on the rank that ran it, or on where its line
 * is in the file. Stop strings
 * (--task gsm8k: "Question:", "</s>", "<|im_end|>", "\n\n") are found in the decoded text
 * after every step; the completion ends before the first one. The input lines are
 * described in eval_items.c, the result lines in batch_request.c.
 *
 * Resume: ids already in the output file are skipped and new lines appended, after the
 * guards of eval_guard.c (the output locked; only a file of result lines of the same run,
 * as OUT.run.json fingerprints it; an output that is not a regular file is a stream,
 * written from its start and never resumed). Under
 * mpirun each rank runs lines i with i % size == rank and rank 0 writes the merged file
 * (eval_par.c), identical to a one-process run.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "batch_run.h"
#include "cli.h"
#include "eval/vote.h"
#include "policy/policy.h"

// The Wilson score interval of k successes in n trials at 95 % (z = 1.96): the interval
// every accuracy of etx eval is reported with.
static void wilson95(double k, double n, double* lo, double* hi) {
    *lo = *hi = 0;
    if (n <= 0) return;
    const double z = 1.959964, p = k / n, z2n = z * z / n;
    const double mid = (p + z2n / 2) / (1 + z2n);
    const double half = z / (1 + z2n) * sqrt(p * (1 - p) / n + z2n / (4 * n));
    *lo = mid - half < 0 ? 0 : mid - half;
    *hi = mid + half > 1 ? 1 : mid + half;
}

static void summary(const EvalArgs* a, const Totals* t, double secs, int n_skipped, int n_bad) {
    fprintf(stderr, "etx eval: %d requests run, %d already in %s, %d bad lines skipped\n", (int)t->done, n_skipped,
            a->out, n_bad);
    if (t->scored > 0) {
        double lo, hi, flo, fhi;
        wilson95(t->strict, t->scored, &lo, &hi);
        wilson95(t->flexible, t->scored, &flo, &fhi);
        fprintf(stderr,
                "etx eval: accuracy strict %.4f (%d/%d, 95%% CI %.3f-%.3f), flexible %.4f (%d/%d, 95%% CI %.3f-%.3f)%s\n",
                t->strict / t->scored, (int)t->strict, (int)t->scored, lo, hi, t->flexible / t->scored,
                (int)t->flexible, (int)t->scored, flo, fhi, a->samples > 1 ? " (voted answers)" : "");
        if (a->samples > 1) {
            fprintf(stderr, "etx eval: %d samples per request, vote %s: mean pass@1 %.4f, pass@%d %.4f\n", a->samples,
                    a->vote, t->pass1 / t->scored, a->samples, t->passn / t->scored);
            fprintf(stderr, "etx eval: every vote over the same samples (flexible):");
            for (int vm = 0; vm < 3; vm++) {
                wilson95(t->vote_ok[vm], t->scored, &lo, &hi);
                fprintf(stderr, " %s %.4f (%d/%d, %.3f-%.3f)", vote_name((VoteMethod)vm), t->vote_ok[vm] / t->scored,
                        (int)t->vote_ok[vm], (int)t->scored, lo, hi);
            }
            fputc('\n', stderr);
        }
    }
    fprintf(stderr,
            "etx eval: %d tokens generated in %.1f s (%.1f tok/s); %d prompt positions computed, %d shared; "
            "KV cache at its peak: %d positions held\n",
            (int)t->tokens, secs, secs > 0 ? t->tokens / secs : 0.0, (int)t->prefill, (int)t->prefill_saved,
            (int)t->kv_peak_positions);
    if (t->tokens <= 0) return;
    fprintf(stderr, "etx eval: branches:");
    for (int b = 0; b < ETX_BRANCH_COUNT; b++)
        if (t->branches[b] > 0)
            fprintf(stderr, " %s %.1f%%", etx_branch_name((etx_branch)b), 100.0 * t->branches[b] / t->tokens);
    fputc('\n', stderr);
}

// --summary FILE: the run's totals as one JSON object (what scripts/plot_eval.py draws:
// accuracy with its interval beside the tokens it cost). Counts this run's requests (a
// resumed run's earlier lines are not in them). Returns 0, or 1 after reporting.
static int write_summary(const EvalArgs* a, const char* path, const char* label, const etx_policy* pol,
                         const Totals* t, double secs) {
    cJSON* o = cJSON_CreateObject();
    if (label) cJSON_AddStringToObject(o, "label", label);
    cJSON_AddStringToObject(o, "policy", policy_kind_name(pol->kind));
    cJSON_AddStringToObject(o, "data", a->data);
    cJSON_AddNumberToObject(o, "n", t->scored);
    cJSON_AddNumberToObject(o, "correct", t->flexible);
    cJSON_AddNumberToObject(o, "accuracy", t->scored > 0 ? t->flexible / t->scored : 0);
    double lo, hi;
    wilson95(t->flexible, t->scored, &lo, &hi);
    cJSON* ci = cJSON_AddArrayToObject(o, "ci95");
    cJSON_AddItemToArray(ci, cJSON_CreateNumber(lo));
    cJSON_AddItemToArray(ci, cJSON_CreateNumber(hi));
    cJSON_AddNumberToObject(o, "strict_correct", t->strict);
    cJSON_AddNumberToObject(o, "pass1", t->scored > 0 ? t->pass1 / t->scored : 0);
    cJSON_AddNumberToObject(o, "passn", t->scored > 0 ? t->passn / t->scored : 0);
    cJSON_AddNumberToObject(o, "requests", t->done);
    cJSON_AddNumberToObject(o, "tokens_generated", t->tokens);
    cJSON_AddNumberToObject(o, "prefill_tokens", t->prefill);
    cJSON_AddNumberToObject(o, "prefill_saved", t->prefill_saved);
    cJSON_AddNumberToObject(o, "kv_peak_positions", t->kv_peak_positions);
    cJSON_AddNumberToObject(o, "samples", a->samples);
    cJSON_AddStringToObject(o, "vote", a->samples > 1 ? a->vote : "none");
    cJSON_AddNumberToObject(o, "seconds", secs);
    if (a->samples > 1) {
        cJSON* all = cJSON_AddObjectToObject(o, "votes");
        for (int vm = 0; vm < 3; vm++) {
            cJSON* v = cJSON_AddObjectToObject(all, vote_name((VoteMethod)vm));
            cJSON_AddNumberToObject(v, "correct", t->vote_ok[vm]);
            wilson95(t->vote_ok[vm], t->scored, &lo, &hi);
            cJSON* c2 = cJSON_AddArrayToObject(v, "ci95");
            cJSON_AddItemToArray(c2, cJSON_CreateNumber(lo));
            cJSON_AddItemToArray(c2, cJSON_CreateNumber(hi));
        }
    }
    char* js = cJSON_Print(o);
    cJSON_Delete(o);
    FILE* f = fopen(path, "wb");
    int ok = f && fputs(js, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok &= fclose(f) == 0;
    cJSON_free(js);
    if (!ok) fprintf(stderr, "etx eval: cannot write the summary %s: %s\n", path, strerror(errno));
    return ok ? 0 : 1;
}

// The run and its summary on stderr. Returns the exit code.
static int eval_run(const EvalArgs* a, const EvalPar* par, const etx_policy* policy, const char* summary_path,
                    const char* label) {
    char run_path[4200];
    snprintf(run_path, sizeof run_path, "%s.run.json", a->out);
    const BatchPlan plan = {.combos = policy, .n_combos = 1, .tagged = 0, .run_path = run_path};
    BatchRun br;
    Totals t;
    memset(&t, 0, sizeof t);
    double secs = 0;
    int rc = batch_open(&br, a, par, &plan);
    if (rc == 0) rc = batch_execute(&br, &t, NULL, &secs);
    if (rc == 0 && par->rank == 0) summary(a, &t, secs, br.n_skipped, br.n_bad);
    if (rc == 0 && par->rank == 0 && summary_path) rc = write_summary(a, summary_path, label, policy, &t, secs);
    batch_close(&br);
    return rc;
}

int cmd_eval(int argc, char** argv) {
    EvalArgs a = {.command = "eval", .on_bad = "skip", .batch = 8, .max_tokens = 256, EVAL_SAMPLE_DEFAULTS};
    const char* policy = NULL;
    const char* summary_path = NULL;
    const char* label = NULL;
    const char* policy_file = NULL;
    CliOpt fixed[] = {
        {"--model", "-m", OPT_STRING, &a.model, "PATH", "model directory or .gguf (default: $ETX_MODEL, else SmolLM2-135M-Instruct)", 0},
        {"--data", NULL, OPT_STRING, &a.data, "FILE", "input JSONL: {\"id\", \"prompt\" | \"messages\", [\"answer\"]} per line", 0},
        {"--out", "-o", OPT_STRING, &a.out, "FILE", "output JSONL (appended to: ids already there are skipped)", 0},
        {"--task", NULL, OPT_STRING, &a.task, "NAME", "gsm8k: lm-eval's stop strings and GSM8K scoring (default: none)", 0},
        {"--limit", NULL, OPT_INT, &a.limit, "N", "only the first N requests of the file (default: all)", 0},
        {"--no-stop-strings", NULL, OPT_FLAG, &a.no_stop_strings, NULL,
         "with --task gsm8k: no stop strings (chat answers run to the end-of-turn token or --max-tokens)", 0},
        {"--batch", NULL, OPT_INT, &a.batch, "N", "requests in the engine at once, 1..4096 (default 8)", 0},
        {"--max-tokens", "-n", OPT_INT, &a.max_tokens, "N", "tokens to generate per request (default 256)", 0},
        {"--on-bad-line", NULL, OPT_STRING, &a.on_bad, "MODE", "skip (report and go on, default) | fail (run nothing)", 0},
        {"--progress", NULL, OPT_FLAG, &a.progress, NULL, "progress bar on stderr even when it is not a terminal", 0},
        {"--threads", "-t", OPT_INT, &a.threads, "N", "CPU threads per process, at most the CPUs (default: all cores)", 0},
        {"--ctx", NULL, OPT_INT, &a.ctx, "N", "context length, prompt + generated (default min(model's, 4096))", 0},
        {"--device", NULL, OPT_STRING, &a.device, "DEV", "auto | cpu | cuda (default auto)", 0},
        CLI_KV_OPTS(&a.kv_blocks, &a.kv_block_size, &a.no_prefix_cache),
        CLI_GPU_OPTS(&a.gpu, &a.share_gpus, &a.tp),
        CLI_GPUS_OPT(&a.gpus),
        EVAL_SAMPLE_OPTS(&a),
        {"--summary", NULL, OPT_STRING, &summary_path, "FILE",
         "also write the totals as JSON: accuracy with its 95% interval, tokens generated, prefill (for "
         "scripts/plot_eval.py)", 0},
        {"--label", NULL, OPT_STRING, &label, "TEXT", "the run's name in --summary (default: none)", 0},
        {"--policy", NULL, OPT_STRING, &policy, "NAME",
         "greedy | sample | entropix | learned (its --policy-file) | dslider (default greedy; sample when a sampling option is "
         "given, entropix when an entropix parameter is, dslider when a dslider parameter is)", 0},
        {"--policy-file", NULL, OPT_STRING, &policy_file, "FILE",
         "JSON policy {\"policy\": \"entropix\", \"<parameter>\": value, ...}; flags override it", 0},
    };
    CliPolicyOpts po;
    if (cli_policy_opts_build(&po, fixed, (int)(sizeof fixed / sizeof fixed[0])) != 0) return 1;
    CliCommand cmd = {"eval", "[-m MODEL] --data FILE.jsonl --out RESULTS.jsonl [options]",
                      "Runs every request of a JSONL file through one engine and writes one result line each, in "
                      "input order;\nunder mpirun the requests are split over the ranks and rank 0 writes the merged "
                      "file.", po.opts, po.n_opts};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_CONTINUE) goto done;
    rc = 2;
    if (!a.data || !a.out) {
        fprintf(stderr, "etx eval: --data FILE and --out FILE are required\n");
        goto done;
    }
    if (eval_args_check(&a) != 0) goto done;
    etx_policy pol;
    if (cli_policy_resolve("eval", &po, policy, policy_file, &pol) != 0) goto done;
    EvalPar par;
    eval_par_init(&par, &argc, &argv);
    rc = eval_run(&a, &par, &pol, summary_path, label);
    eval_par_finalize(&par);
done:
    cli_policy_opts_free(&po);
    return rc;
}
