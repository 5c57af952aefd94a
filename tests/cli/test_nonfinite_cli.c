/*
 * test_nonfinite_cli.c — what the etx program does with a model that cannot give usable
 * logits (docs/commands.md): a file with a NaN weight is refused at load (exit 2, a
 * refused input), naming the tensor; a file whose weights are all finite but whose LM head overflows float
 * (one row of 3.4e38: every logits row then holds an infinity or a NaN) loads, and
 *   - `etx generate` stops with exit status 1 and the engine's message naming the
 *     request and the position;
 *   - `etx eval` writes a result line per request with "finish": "error" and the
 *     message in "error", reports each on stderr with the line's id, exits 0, and on
 *     resume counts those lines as done.
 * The model is a copy of tests/fixtures/models/tiny-llama-gqa (float32, untied head)
 * with one lm_head row rewritten in place.
 */
#include <cJSON.h>
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_run.h"

#define TINY ETX_FIXTURES "/models/tiny-llama-gqa"

static char g_model[300]; // the damaged copy

// A copy of the tiny model in the scratch directory, lm_head row `row` set to v
// (all of its 64 floats).
static void damaged_copy(const char* dir_name, int row, float v) {
    cli_tmp_path(g_model, sizeof g_model, dir_name);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", g_model, TINY, g_model);
    ck_assert_int_eq(system(cmd), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/model.safetensors", g_model);
    char* buf = NULL;
    size_t n = 0;
    ck_assert_int_eq(etx_read_file(path, &buf, &n).code, ETX_OK);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)buf[i];
    cJSON* h = cJSON_ParseWithLength(buf + 8, (size_t)hl);
    ck_assert_ptr_nonnull(h);
    const cJSON* e = cJSON_GetObjectItemCaseSensitive(h, "lm_head.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring, "F32");
    const cJSON* shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const size_t cols = (size_t)cJSON_GetArrayItem(shape, 1)->valuedouble;
    const size_t begin = (size_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), 0)->valuedouble;
    cJSON_Delete(h);
    for (size_t c = 0; c < cols; c++) memcpy(buf + 8 + hl + begin + 4 * ((size_t)row * cols + c), &v, 4);
    FILE* f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    free(buf);
}

START_TEST(nan_weight_is_refused_at_load) {
    damaged_copy("nan_model", 11, NAN);
    char args[600];
    snprintf(args, sizeof args, "generate -m '%s' --device cpu -p 'hello' -n 3", g_model);
    Run r = run_program(ETX_CLI, args, NULL);
    // a model that cannot be loaded is a refused input: exit 2 (docs/commands.md)
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "lm_head.weight") && strstr(r.err, "non-finite weight (NaN)") &&
                      strstr(r.err, "row 11, column 0"),
                  "stderr: %s", r.err);
    free_run(&r);
}
END_TEST

START_TEST(overflowing_model_fails_requests_not_the_run) {
    damaged_copy("inf_model", 11, 3.4e38f);
    char args[1200];
    snprintf(args, sizeof args, "generate -m '%s' --device cpu -p 'hello' -n 3", g_model);
    Run r = run_program(ETX_CLI, args, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "generation failed: request 0: non-finite logits") &&
                      strstr(r.err, "+ generated 0)"),
                  "stderr: %s", r.err);
    free_run(&r);

    char data[300], out[300];
    cli_tmp_path(data, sizeof data, "nf.jsonl");
    cli_tmp_path(out, sizeof out, "nf_out.jsonl");
    FILE* f = fopen(data, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"id\": \"a\", \"prompt\": \"hello\"}\n{\"id\": 7, \"prompt\": \"the sea\"}\n", f);
    fclose(f);
    remove(out);
    snprintf(args, sizeof args, "eval -m '%s' --device cpu --data '%s' --out '%s' -n 4 --batch 2", g_model, data,
             out);
    r = run_program(ETX_CLI, args, NULL);
    ck_assert_msg(r.status == 0, "eval exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "id \"a\" failed: request ") && strstr(r.err, "id 7 failed: request "), "stderr: %s",
                  r.err);
    free_run(&r);
    char* text = cli_slurp(out);
    int lines = 0;
    for (char* line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        cJSON* o = cJSON_Parse(line);
        ck_assert_ptr_nonnull(o);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "finish")->valuestring, "error");
        const cJSON* err = cJSON_GetObjectItemCaseSensitive(o, "error");
        ck_assert_msg(cJSON_IsString(err) && strstr(err->valuestring, "non-finite logits") &&
                          strstr(err->valuestring, "generated 0)"),
                      "line %s", line);
        ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(o, "tokens")->valuedouble, 0);
        cJSON_Delete(o);
    }
    ck_assert_int_eq(lines, 2);
    free(text);
    // resume: both ids are done, nothing runs again
    r = run_program(ETX_CLI, args, NULL);
    ck_assert_msg(r.status == 0 && !strstr(r.err, "failed"), "resume exit %d: %s", r.status, r.err);
    free_run(&r);
    text = cli_slurp(out);
    int n = 0;
    for (const char* p = text; *p; p++) n += *p == '\n';
    ck_assert_int_eq(n, 2);
    free(text);
}
END_TEST

int main(void) {
    if (cli_run_setup("/tmp/etx_test_nonfinite_cli_XXXXXX") != 0) return EXIT_FAILURE;
    Suite* s = suite_create("nonfinite_cli");
    TCase* tc = tcase_create("nonfinite_cli");
    tcase_add_test(tc, nan_weight_is_refused_at_load);
    tcase_add_test(tc, overflowing_model_fails_requests_not_the_run);
    suite_add_tcase(s, tc);
    const int rc = check_run_suite(s);
    cli_run_cleanup();
    return rc;
}
