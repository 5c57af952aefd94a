/*
 * test_calibrate_cli.c — `etx calibrate` run as a user runs it, on the default model:
 * the report names every signal and the five thresholds; the policy file loads as an
 * entropix policy (its "calibration" key skipped) whose thresholds are the quantiles of
 * the entropy and varentropy that `etx generate --trace` prints for the same prompt and
 * settings (another path through the engine); the file is the same at --batch 1 and 4
 * (batch invariance); `etx eval --policy-file` runs it; the SVG is written; bad
 * --quantiles, a missing --out and an unwritable --out are refused with their reasons.
 */
#include <check.h>
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "policy/calibrate.h"

#include "cli_run.h"

#define SAMPLE ETX_FIXTURES "/eval/gsm8k_sample.jsonl"

static Run run_etx(const char* args) { return run_prefixed("", ETX_CLI, args, NULL); }

// The first two lines of the GSM8K sample, as a data file; *prompt0 the first prompt.
static void write_data(char* path, size_t cap, char** prompt0) {
    char* text = cli_slurp(SAMPLE);
    char* nl = strchr(text, '\n');
    ck_assert_ptr_nonnull(nl);
    char* nl2 = strchr(nl + 1, '\n');
    ck_assert_ptr_nonnull(nl2);
    nl2[1] = '\0';
    cli_tmp_path(path, cap, "data.jsonl");
    cli_write_text(path, text);
    *nl = '\0';
    cJSON* o = cJSON_Parse(text);
    ck_assert_ptr_nonnull(o);
    *prompt0 = xstrdup(cJSON_GetObjectItem(o, "prompt")->valuestring);
    cJSON_Delete(o);
    free(text);
}

static double num(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItem(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number %s", key);
    return v->valuedouble;
}

START_TEST(report_policy_file_and_plot) {
    char data[300], pol[300], table[300], svg[300], args[2048];
    char* prompt0 = NULL;
    write_data(data, sizeof data, &prompt0);
    cli_tmp_path(pol, sizeof pol, "cal.json");
    cli_tmp_path(table, sizeof table, "cal.md");
    cli_tmp_path(svg, sizeof svg, "cal.svg");
    snprintf(args, sizeof args, "calibrate --data '%s' -n 16 --threads 2 --out '%s' --table '%s' --plot '%s'", data,
             pol, table, svg);
    Run r = run_etx(args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    static const char* names[] = {"entropy", "varentropy", "attn_entropy", "attn_varentropy", "agreement",
                                  "interaction", "logprob", "confidence", "low_ent_thresh", "low_vent_thresh",
                                  "med_ent_thresh", "high_ent_thresh", "high_vent_thresh", "| calibrated |"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(strstr(r.out, names[i]) != NULL, "the report lacks %s:\n%s", names[i], r.out);
    // the branch table: entropix's branches as columns, a row of percentages per threshold set
    ck_assert_msg(strstr(r.out, "| thresholds | argmax | pause | helv | lehv | hehv | adaptive |\n|---|---:|---:|---:|"
                                "---:|---:|---:|\n| v1 defaults | ") != NULL,
                  "the branch table is malformed:\n%s", r.out);
    ck_assert_msg(strstr(r.out, " % |\n| calibrated | ") != NULL && strstr(r.out, "inlier") == NULL,
                  "the branch table is malformed:\n%s", r.out);
    char* md = cli_slurp(table);
    ck_assert_str_eq(md, r.out); // --table is the report
    free(md);
    char* sv = cli_slurp(svg);
    ck_assert(strncmp(sv, "<svg", 4) == 0 && strstr(sv, "</svg>") != NULL && strstr(sv, "varentropy") != NULL);
    free(sv);
    // the file loads as entropix, with the thresholds it lists
    etx_policy p = etx_policy_default(ETX_POLICY_GREEDY);
    etx_status st = etx_policy_load_json(pol, &p);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    ck_assert_int_eq(p.kind, ETX_POLICY_ENTROPIX);
    char* text = cli_slurp(pol);
    cJSON* o = cJSON_Parse(text);
    ck_assert_ptr_nonnull(o);
    ck_assert_float_eq(p.entropix.low_ent_thresh, (float)num(o, "low_ent_thresh"));
    ck_assert_float_eq(p.entropix.high_vent_thresh, (float)num(o, "high_vent_thresh"));
    const cJSON* cal = cJSON_GetObjectItem(o, "calibration");
    ck_assert_int_eq((int)num(cal, "requests"), 2);
    const int tokens = (int)num(cal, "tokens");
    ck_assert_int_gt(tokens, 0);
    ck_assert_int_le(tokens, 32);
    free(r.out), free(r.err);

    // the same prompt through `etx generate --trace` (greedy, 16 tokens): its entropies
    // and varentropies give the first request's part of the thresholds' inputs; with one
    // request only, they must give the same thresholds (to the trace's 7 digits)
    char data1[300], pol1[300], trace[300];
    cli_tmp_path(data1, sizeof data1, "one.jsonl");
    cJSON* line = cJSON_CreateObject();
    cJSON_AddNumberToObject(line, "id", 0);
    cJSON_AddStringToObject(line, "prompt", prompt0);
    char* js = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    char* js_nl = xmalloc(strlen(js) + 2);
    sprintf(js_nl, "%s\n", js);
    cli_write_text(data1, js_nl);
    free(js), free(js_nl);
    cli_tmp_path(pol1, sizeof pol1, "one.json");
    cli_tmp_path(trace, sizeof trace, "trace.jsonl");
    snprintf(args, sizeof args, "calibrate --data '%s' -n 16 --threads 2 --out '%s'", data1, pol1);
    r = run_etx(args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    free(r.out), free(r.err);
    char* pfile = xmalloc(strlen(prompt0) + 400);
    cli_tmp_path(pfile, 300, "prompt.txt");
    cli_write_text(pfile, prompt0);
    snprintf(args, sizeof args, "generate -p \"$(cat '%s')\" -n 16 --threads 2 --trace '%s'", pfile, trace);
    r = run_etx(args);
    ck_assert_msg(r.status == 0, "generate: exit %d\n%s", r.status, r.err);
    free(r.out), free(r.err);
    float hv[2][64];
    int n = 0;
    char* tr = cli_slurp(trace);
    for (char* s = tr; s && *s; ) {
        char* e = strchr(s, '\n');
        if (e) *e = '\0';
        cJSON* rec = cJSON_Parse(s);
        if (rec && cJSON_GetObjectItem(rec, "entropy")) {
            ck_assert_int_lt(n, 64);
            hv[0][n] = (float)num(rec, "entropy");
            hv[1][n] = (float)num(rec, "varentropy");
            n++;
        }
        cJSON_Delete(rec);
        s = e ? e + 1 : NULL;
    }
    free(tr);
    ck_assert_int_gt(n, 0);
    calib_sort(hv[0], (size_t)n);
    calib_sort(hv[1], (size_t)n);
    text = (free(text), cli_slurp(pol1));
    cJSON_Delete(o);
    o = cJSON_Parse(text);
    ck_assert_int_eq((int)num(cJSON_GetObjectItem(o, "calibration"), "tokens"), n);
    double q[CALIB_N_THRESH];
    calib_default_quantiles(q);
    for (int i = 0; i < CALIB_N_THRESH; i++) {
        const double want = calib_threshold(i, hv[calib_thresholds[i].signal], (size_t)n, q[i]);
        const double got = num(o, calib_thresholds[i].name);
        ck_assert_msg(fabs(got - want) <= 2e-6 * fabs(want) + 1e-6, "%s: %.9g from calibrate, %.9g from the trace",
                      calib_thresholds[i].name, got, want);
    }
    cJSON_Delete(o);
    free(text), free(pfile), free(prompt0);

    // --batch 1 and 4 write the same file as the default 8 (calibration is batch invariant)
    for (int b = 1; b <= 4; b += 3) {
        char polb[300];
        cli_tmp_path(polb, sizeof polb, b == 1 ? "b1.json" : "b4.json");
        snprintf(args, sizeof args, "calibrate --data '%s' -n 16 --threads 2 --batch %d --out '%s'", data, b, polb);
        r = run_etx(args);
        ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
        free(r.out), free(r.err);
        char* x = cli_slurp(pol);
        char* y = cli_slurp(polb);
        ck_assert_msg(strcmp(x, y) == 0, "--batch %d:\n%s\nvs --batch 8:\n%s", b, y, x);
        free(x), free(y);
    }
    // the calibrated file drives etx eval
    char outp[300];
    cli_tmp_path(outp, sizeof outp, "eval.jsonl");
    snprintf(args, sizeof args, "eval --data '%s' -n 8 --threads 2 --policy-file '%s' --out '%s'", data, pol, outp);
    r = run_etx(args);
    ck_assert_msg(r.status == 0, "eval: exit %d\n%s", r.status, r.err);
    free(r.out), free(r.err);
}
END_TEST

START_TEST(refusals) {
    char data[300], args[2048];
    char* prompt0 = NULL;
    write_data(data, sizeof data, &prompt0);
    free(prompt0);
    static const struct {
        const char* extra;
        const char* says;
    } bad[] = {
        {"--out /tmp/x.json --quantiles low_ent_thresh=1.5", "--quantiles: low_ent_thresh: 1.5 is not in (0, 1)"},
        {"--out /tmp/x.json --quantiles bogus=0.5", "unknown threshold 'bogus'"},
        {"--out /tmp/x.json --quantiles med_ent_thresh=0.999", "low_ent_thresh <= med_ent_thresh <= high_ent_thresh"},
        {"", "--data FILE and --out FILE are required"},
        {"--out /tmp/x.json --batch 0", "--batch"},
        {"--out /tmp/x.json --bogus", "--bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "calibrate --data '%s' -n 4 --threads 2 %s", data, bad[i].extra);
        Run r = run_etx(args);
        ck_assert_msg(r.status == 2, "%s: exit %d, want 2\n%s", bad[i].extra, r.status, r.err);
        ck_assert_msg(strstr(r.err, bad[i].says) != NULL, "%s: stderr does not say '%s':\n%s", bad[i].extra,
                      bad[i].says, r.err);
        free(r.out), free(r.err);
    }
    // an output that cannot be written: the run fails (exit 1) and says which file
    snprintf(args, sizeof args, "calibrate --data '%s' -n 4 --threads 2 --out /nonexistent-dir/p.json", data);
    Run r = run_etx(args);
    ck_assert_msg(r.status == 1, "exit %d, want 1\n%s", r.status, r.err);
    ck_assert(strstr(r.err, "/nonexistent-dir/p.json") != NULL);
    free(r.out), free(r.err);
}
END_TEST

int main(void) {
    if (cli_run_setup("/tmp/etx_test_calibrate_XXXXXX") != 0) return EXIT_FAILURE;
    Suite* s = suite_create("calibrate_cli");
    TCase* tc = tcase_create("calibrate");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, report_policy_file_and_plot);
    tcase_add_test(tc, refusals);
    suite_add_tcase(s, tc);
    const int rc = check_run_suite(s);
    cli_run_cleanup();
    return rc;
}
