/*
 * test_policy_file.c — the policy parameters: defaults equal the reference entropix v1
 * values (each spelled out here, not read from the table), setting by name, every
 * validation error naming the parameter, JSON policy files (fixture round trips and every
 * kind of bad file, each error naming the file and the key), and branch names. That the
 * documentation's table agrees with the parameter table is test_param_docs.c's concern.
 */
#include <check.h>
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "policy/json_strict.h"
#include "policy/learned.h"
#include "policy/policy.h"
#include "check_etx.h"
#include "check_main.h"

#define FIX ETX_FIXTURES "/policy/"

static void assert_contains(const char* hay, const char* needle) {
    ck_assert_msg(strstr(hay, needle) != NULL, "expected '%s' in: %s", needle, hay);
}

START_TEST(defaults_are_the_reference) {
    etx_policy p = etx_policy_default(ETX_POLICY_ENTROPIX);
    ck_assert_int_eq(p.kind, ETX_POLICY_ENTROPIX);
    const etx_entropix_params* e = &p.entropix;
    ck_assert_float_eq(e->temperature, 0.666f);
    ck_assert_float_eq(e->top_p, 0.90f);
    ck_assert_int_eq(e->top_k, 27);
    ck_assert_float_eq(e->min_p, 0.03f);
    ck_assert_float_eq(e->low_ent_thresh, 0.1f);
    ck_assert_float_eq(e->low_vent_thresh, 0.1f);
    ck_assert_float_eq(e->med_ent_thresh, 3.0f);
    ck_assert_float_eq(e->high_ent_thresh, 5.0f);
    ck_assert_float_eq(e->high_vent_thresh, 5.0f);
    ck_assert_float_eq(e->helv_attn_ent_offset, 1.3f);
    ck_assert_float_eq(e->helv_attn_ent_coef, 0.2f);
    ck_assert_float_eq(e->lehv_interaction_strength_offset, 1.2f);
    ck_assert_float_eq(e->lehv_interaction_strength_coef, 0.3f);
    ck_assert_float_eq(e->hehv_attn_ent_coef, 0.2f);
    ck_assert_float_eq(e->hehv_attn_vent_offset, 2.0f);
    ck_assert_float_eq(e->hehv_attn_vent_coef, 0.5f);
    ck_assert_int_eq(e->n_adaptive_samples, 5);
    ck_assert_float_eq(e->ada_temp_logits, 0.3f);
    ck_assert_float_eq(e->ada_temp_attn, 0.2f);
    ck_assert_float_eq(e->ada_temp_agree, 0.2f);
    ck_assert_float_eq(e->ada_top_p, 0.1f);
    ck_assert_float_eq(e->ada_top_k_int, 0.3f);
    ck_assert_float_eq(e->ada_top_k_agree, 0.2f);
    ck_assert_float_eq(e->ada_min_p, 0.5f);
    ck_assert_float_eq(e->ada_score_logits_ent, 0.1f);
    ck_assert_float_eq(e->ada_score_attn_ent, 0.2f);
    ck_assert_float_eq(e->ada_score_logits_vent, 0.3f);
    ck_assert_float_eq(e->ada_score_attn_vent, 0.4f);
    ck_assert_float_eq(e->ada_score_agree, 0.5f);
    ck_assert_float_eq(e->ada_score_int, 0.6f);
    ck_assert_int_eq(e->pause_token, -1);
    ck_assert_int_eq(e->attn_window, 0);
    // entropix leaves the top-level sampling fields at the sample defaults (unused)
    ck_assert_float_eq(p.temperature, 1.0f);
    ck_assert_int_eq(p.top_k, 0);
    ck_assert_float_eq(p.top_p, 1.0f);
    ck_assert_float_eq(p.min_p, 0.0f);
    ck_assert_uint_eq(p.seed, 0);

    etx_policy s = etx_policy_default(ETX_POLICY_SAMPLE);
    ck_assert_int_eq(s.kind, ETX_POLICY_SAMPLE);
    ck_assert_float_eq(s.temperature, 1.0f);
    ck_assert_int_eq(s.top_k, 0);
    ck_assert_float_eq(s.top_p, 1.0f);
    ck_assert_float_eq(s.min_p, 0.0f);
    ck_assert_uint_eq(s.seed, 0);
    // the entropix block is filled for every kind (a policy can switch kind safely)
    ck_assert_int_eq(s.entropix.top_k, 27);
    etx_policy g = etx_policy_default(ETX_POLICY_GREEDY);
    ck_assert_int_eq(g.kind, ETX_POLICY_GREEDY);
    ck_assert_float_eq(g.temperature, 1.0f);

    for (int k = 0; k < 3; k++) {
        etx_policy d = etx_policy_default((etx_policy_kind)k);
        CK_OK(etx_policy_validate(&d));
    }
}
END_TEST

START_TEST(table_is_consistent) {
    // one row per name, every field of etx_entropix_params and of etx_dslider_params
    // covered exactly once (a dslider row lives in etx_dslider_params, an entropix row in
    // etx_entropix_params)
    size_t covered = 0, covered_ds = 0;
    const int ent0 = (int)offsetof(etx_policy, entropix), ds0 = (int)offsetof(etx_policy, dslider);
    for (int i = 0; i < policy_n_params; i++) {
        const PolicyParam* p = &policy_params[i];
        ck_assert_ptr_eq(policy_param_find(p->name), p);
        ck_assert(p->help && *p->help);
        const size_t size = p->type == PARAM_FLOAT ? sizeof(float) : sizeof(int);
        if (p->flags & PARAM_DSLIDER) {
            ck_assert_int_lt(p->off_sample, 0);
            ck_assert_int_ge(p->off_entropix, ds0);
            ck_assert_int_le(p->off_entropix + (int)size, ds0 + (int)sizeof(etx_dslider_params));
            covered_ds += size;
        } else if (p->off_entropix >= ent0) {
            ck_assert_int_le(p->off_entropix + (int)size, ent0 + (int)sizeof(etx_entropix_params));
            covered += size;
        }
    }
    ck_assert_uint_eq(covered, sizeof(etx_entropix_params));
    ck_assert_uint_eq(covered_ds, sizeof(etx_dslider_params));
    ck_assert_ptr_null(policy_param_find("nope"));
}
END_TEST

START_TEST(set_by_name) {
    etx_policy p = etx_policy_default(ETX_POLICY_ENTROPIX);
    ck_assert_int_eq(etx_policy_set(&p, "low_ent_thresh", 0.25).code, ETX_OK);
    ck_assert_float_eq(p.entropix.low_ent_thresh, 0.25f);
    ck_assert_int_eq(etx_policy_set(&p, "n_adaptive_samples", 12).code, ETX_OK);
    ck_assert_int_eq(p.entropix.n_adaptive_samples, 12);
    ck_assert_int_eq(etx_policy_set(&p, "pause_token", 2564).code, ETX_OK);
    ck_assert_int_eq(p.entropix.pause_token, 2564);
    ck_assert_int_eq(etx_policy_set(&p, "attn_window", 4096).code, ETX_OK);
    ck_assert_int_eq(p.entropix.attn_window, 4096);
    ck_assert_int_eq(etx_policy_set(&p, "ada_temp_agree", -0.5).code, ETX_OK);
    ck_assert_float_eq(p.entropix.ada_temp_agree, -0.5f);
    // temperature/top_k/top_p/min_p name entropix's base values for entropix...
    ck_assert_int_eq(etx_policy_set(&p, "temperature", 0.8).code, ETX_OK);
    ck_assert_float_eq(p.entropix.temperature, 0.8f);
    ck_assert_float_eq(p.temperature, 1.0f);
    ck_assert_int_eq(etx_policy_set(&p, "top_k", 50).code, ETX_OK);
    ck_assert_int_eq(p.entropix.top_k, 50);
    ck_assert_int_eq(p.top_k, 0);
    ck_assert_int_eq(etx_policy_set(&p, "seed", 99).code, ETX_OK);
    ck_assert_uint_eq(p.seed, 99);
    ck_assert(policy_param_get(&p, policy_param_find("top_k")) == 50.0);
    ck_assert(policy_param_get(&p, policy_param_find("low_ent_thresh")) == (double)0.25f);
    ck_assert_int_eq(etx_policy_validate(&p).code, ETX_OK);
    // ... and the top-level fields for sample
    etx_policy s = etx_policy_default(ETX_POLICY_SAMPLE);
    ck_assert_int_eq(etx_policy_set(&s, "temperature", 0.5).code, ETX_OK);
    ck_assert_float_eq(s.temperature, 0.5f);
    ck_assert_float_eq(s.entropix.temperature, 0.666f);
    ck_assert_int_eq(etx_policy_set(&s, "top_k", 0).code, ETX_OK); // 0 = off for sample
    ck_assert_int_eq(etx_policy_set(&s, "min_p", 0.1).code, ETX_OK);
    ck_assert_float_eq(s.min_p, 0.1f);
    // greedy: only the seed
    etx_policy g = etx_policy_default(ETX_POLICY_GREEDY);
    ck_assert_int_eq(etx_policy_set(&g, "seed", 3).code, ETX_OK);
    ck_assert_uint_eq(g.seed, 3);
}
END_TEST

// Each bad value: the error names the parameter and, where given, the allowed range.
static void expect_set_error(etx_policy_kind kind, const char* name, double v, const char* want1, const char* want2) {
    etx_policy p = etx_policy_default(kind);
    etx_policy before = p;
    etx_status st = etx_policy_set(&p, name, v);
    ck_assert_msg(st.code == ETX_ERR_INVALID_ARG, "%s = %g accepted", name, v);
    assert_contains(st.message, want1);
    if (want2) assert_contains(st.message, want2);
    ck_assert_msg(memcmp(&p, &before, sizeof p) == 0, "%s: failed set changed the policy", name);
}

START_TEST(set_errors) {
    const etx_policy_kind E = ETX_POLICY_ENTROPIX, S = ETX_POLICY_SAMPLE, G = ETX_POLICY_GREEDY;
    expect_set_error(E, "low_ent_thres", 1, "unknown parameter 'low_ent_thres'", "did you mean 'low_ent_thresh'");
    expect_set_error(E, "low-vent-thresh", 1, "unknown parameter", "'low_vent_thresh'");
    expect_set_error(E, "zzz", 1, "unknown parameter 'zzz'", NULL);
    expect_set_error(E, "temperature", 0, "temperature", "> 0");
    expect_set_error(E, "temperature", -1, "temperature", "> 0");
    expect_set_error(S, "temperature", 1e-60, "temperature", "> 0"); // 0 as a float
    expect_set_error(E, "top_p", 0, "top_p", "(0, 1]");
    expect_set_error(E, "top_p", 1.01, "top_p", "(0, 1]");
    expect_set_error(E, "min_p", 1, "min_p", "[0, 1)");
    expect_set_error(S, "min_p", -0.01, "min_p", "[0, 1)");
    expect_set_error(E, "top_k", 0, "top_k", "1..1000000");
    expect_set_error(S, "top_k", -1, "top_k", "0..1000000");
    expect_set_error(E, "top_k", 1000001, "top_k", "1..1000000");
    expect_set_error(E, "top_k", 2.5, "top_k", "integer");
    expect_set_error(E, "n_adaptive_samples", 0, "n_adaptive_samples", "1..64");
    expect_set_error(E, "n_adaptive_samples", 65, "n_adaptive_samples", "1..64");
    expect_set_error(E, "pause_token", -2, "pause_token", "-1..");
    expect_set_error(E, "attn_window", -1, "attn_window", "0..16777216");
    expect_set_error(E, "attn_window", 16777217, "attn_window", "0..16777216");
    expect_set_error(E, "low_ent_thresh", -0.1, "low_ent_thresh", ">= 0");
    expect_set_error(E, "high_vent_thresh", -1, "high_vent_thresh", ">= 0");
    expect_set_error(E, "med_ent_thresh", INFINITY, "med_ent_thresh", NULL);
    expect_set_error(E, "ada_temp_logits", NAN, "ada_temp_logits", "finite");
    expect_set_error(E, "hehv_attn_vent_coef", INFINITY, "hehv_attn_vent_coef", "finite");
    expect_set_error(E, "ada_score_int", 1e39, "ada_score_int", "finite"); // overflows a float
    expect_set_error(E, "seed", -1, "seed", NULL);
    expect_set_error(E, "seed", 0.5, "seed", "integer");
    expect_set_error(S, "low_ent_thresh", 0.2, "low_ent_thresh", "entropix parameter");
    expect_set_error(G, "temperature", 0.7, "temperature", "greedy");
}
END_TEST

START_TEST(validate_catches_direct_writes) {
    etx_policy p = etx_policy_default(ETX_POLICY_ENTROPIX);
    p.entropix.top_p = 2.0f;
    etx_status st = etx_policy_validate(&p);
    ck_assert_int_eq(st.code, ETX_ERR_INVALID_ARG);
    assert_contains(st.message, "top_p");
    p = etx_policy_default(ETX_POLICY_ENTROPIX);
    p.entropix.n_adaptive_samples = 0;
    st = etx_policy_validate(&p);
    assert_contains(st.message, "n_adaptive_samples");
    p = etx_policy_default(ETX_POLICY_ENTROPIX);
    p.entropix.ada_min_p = NAN;
    st = etx_policy_validate(&p);
    assert_contains(st.message, "ada_min_p");
    p = etx_policy_default(ETX_POLICY_SAMPLE);
    p.temperature = 0.0f;
    st = etx_policy_validate(&p);
    assert_contains(st.message, "temperature");
    p.kind = (etx_policy_kind)7;
    st = etx_policy_validate(&p);
    assert_contains(st.message, "unknown kind");
    // entropix ignores the (unused) top-level sampling fields
    p = etx_policy_default(ETX_POLICY_ENTROPIX);
    p.temperature = 0.0f;
    ck_assert_int_eq(etx_policy_validate(&p).code, ETX_OK);
}
END_TEST

START_TEST(json_reference_fixture_is_the_default) {
    etx_policy p = etx_policy_default(ETX_POLICY_GREEDY);
    CK_OK(etx_policy_load_json(FIX "reference.json", &p));
    etx_policy d = etx_policy_default(ETX_POLICY_ENTROPIX);
    ck_assert_int_eq(p.kind, ETX_POLICY_ENTROPIX);
    for (int i = 0; i < policy_n_params; i++) {
        const PolicyParam* q = &policy_params[i];
        ck_assert_msg(policy_param_get(&p, q) == policy_param_get(&d, q), "%s: %g vs default %g", q->name,
                      policy_param_get(&p, q), policy_param_get(&d, q));
    }
    ck_assert_int_eq(memcmp(&p.entropix, &d.entropix, sizeof d.entropix), 0);
}
END_TEST

START_TEST(json_custom_round_trip) {
    // every parameter comes back as the file wrote it (read independently with cJSON)
    char* text = NULL;
    ck_assert_int_eq(etx_read_file(FIX "custom.json", &text, NULL).code, ETX_OK);
    cJSON* root = cJSON_Parse(text);
    ck_assert_ptr_nonnull(root);
    etx_policy p = etx_policy_default(ETX_POLICY_SAMPLE);
    etx_status st = etx_policy_load_json(FIX "custom.json", &p);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    ck_assert_int_eq(p.kind, ETX_POLICY_ENTROPIX);
    etx_policy d = etx_policy_default(ETX_POLICY_ENTROPIX);
    int n = 0, n_entropix = 0;
    for (int i = 0; i < policy_n_params; i++) {
        const PolicyParam* q = &policy_params[i];
        if (!policy_param_applies(q, ETX_POLICY_ENTROPIX)) continue; // sample only: sample.json below
        n_entropix++;
        const cJSON* v = cJSON_GetObjectItemCaseSensitive(root, q->name);
        ck_assert_msg(v != NULL, "custom.json lacks %s", q->name);
        double want = q->type == PARAM_FLOAT ? (double)(float)v->valuedouble : v->valuedouble;
        ck_assert_msg(policy_param_get(&p, q) == want, "%s: %g, file says %g", q->name, policy_param_get(&p, q), want);
        ck_assert_msg(policy_param_get(&p, q) != policy_param_get(&d, q), "%s: custom.json should differ from the default",
                      q->name);
        n++;
    }
    ck_assert_int_eq(n, n_entropix);
    int n_dslider = 0;
    for (int i = 0; i < policy_n_params; i++) n_dslider += (policy_params[i].flags & PARAM_DSLIDER) != 0;
    ck_assert_int_eq(n_dslider, 56);
    // all but top_n_sigma, edt_theta, edt_base and dslider's
    ck_assert_int_eq(n_entropix, policy_n_params - 3 - n_dslider);
    ck_assert_uint_eq(p.seed, 1234567890123ull);
    cJSON_Delete(root);
    free(text);

    etx_policy s = etx_policy_default(ETX_POLICY_ENTROPIX);
    st = etx_policy_load_json(FIX "sample.json", &s);
    ck_assert_msg(st.code == ETX_OK, "%s", st.message);
    ck_assert_int_eq(s.kind, ETX_POLICY_SAMPLE);
    ck_assert_float_eq(s.temperature, 0.8f);
    ck_assert_int_eq(s.top_k, 0);
    ck_assert_float_eq(s.top_p, 0.9f);
    ck_assert_float_eq(s.min_p, 0.05f);
    ck_assert_float_eq(s.top_n_sigma, 1.5f);
    ck_assert_float_eq(s.edt_theta, 0.6f);
    ck_assert_float_eq(s.edt_base, 0.7f);
    ck_assert_uint_eq(s.seed, 7);
}
END_TEST

// Writes text to a file under the build directory; returns its path (static buffer).
static const char* write_tmp(const char* name, const char* text) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/test_policy_file_%d_%s", ETX_BUILD_DIR, (int)getpid(), name);
    FILE* f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

// A bad file: an error naming the file and containing want1 (and want2); the policy untouched.
static void expect_file_error(const char* name, const char* text, const char* want1, const char* want2) {
    const char* path = write_tmp(name, text);
    etx_policy p = etx_policy_default(ETX_POLICY_ENTROPIX);
    p.seed = 42;
    etx_policy before = p;
    etx_status st = etx_policy_load_json(path, &p);
    ck_assert_msg(st.code != ETX_OK, "%s accepted: %s", name, text);
    assert_contains(st.message, path);
    assert_contains(st.message, want1);
    if (want2) assert_contains(st.message, want2);
    ck_assert_msg(memcmp(&p, &before, sizeof p) == 0, "%s: a failed load changed the policy", name);
    remove(path);
}

START_TEST(json_errors) {
    expect_file_error("unknown.json", "{\"policy\": \"entropix\", \"low_ent_thres\": 0.2}", "unknown key 'low_ent_thres'",
                      "did you mean 'low_ent_thresh'");
    expect_file_error("unknown2.json", "{\"foo\": 1}", "unknown key 'foo'", NULL);
    expect_file_error("polcy.json", "{\"polcy\": \"entropix\"}", "unknown key 'polcy'", "did you mean 'policy'");
    expect_file_error("string.json", "{\"policy\": \"entropix\", \"temperature\": \"0.7\"}", "'temperature'",
                      "must be a number, got a string");
    expect_file_error("bool.json", "{\"policy\": \"entropix\", \"top_k\": true}", "'top_k'",
                      "must be an integer, got a boolean");
    expect_file_error("null.json", "{\"policy\": \"entropix\", \"min_p\": null}", "'min_p'", "got null");
    expect_file_error("frac.json", "{\"policy\": \"entropix\", \"top_k\": 27.5}", "top_k", "must be an integer");
    expect_file_error("frac2.json", "{\"policy\": \"entropix\", \"n_adaptive_samples\": 4.2}", "n_adaptive_samples",
                      "integer");
    expect_file_error("range1.json", "{\"policy\": \"entropix\", \"top_p\": 1.5}", "top_p", "(0, 1]");
    expect_file_error("range2.json", "{\"policy\": \"entropix\", \"temperature\": 0}", "temperature", "> 0");
    expect_file_error("range3.json", "{\"policy\": \"entropix\", \"n_adaptive_samples\": 100}", "n_adaptive_samples",
                      "1..64");
    expect_file_error("range4.json", "{\"policy\": \"entropix\", \"high_ent_thresh\": -3}", "high_ent_thresh", ">= 0");
    expect_file_error("range5.json", "{\"policy\": \"entropix\", \"attn_window\": 99999999}", "attn_window",
                      "0..16777216");
    expect_file_error("range6.json", "{\"policy\": \"entropix\", \"pause_token\": -5}", "pause_token", "-1..");
    expect_file_error("range7.json", "{\"policy\": \"entropix\", \"min_p\": 1}", "min_p", "[0, 1)");
    expect_file_error("seed.json", "{\"seed\": 1e300}", "seed", NULL);
    expect_file_error("kind1.json", "{\"policy\": \"entropix\", \"top_n_sigma\": 1}", "top_n_sigma",
                      "is a sample parameter; the policy is entropix");
    expect_file_error("range8.json", "{\"policy\": \"sample\", \"edt_base\": 1}", "edt_base", "(0, 1)");
    expect_file_error("malformed.json", "{\"policy\": \"entropix\",\n \"top_k\": 27,,}", "malformed JSON at byte", "line 2");
    expect_file_error("malformed2.json", "{\"policy\": \"entropix\"", "malformed JSON", NULL);
    expect_file_error("trailing.json", "{\"top_k\": 3} x", "malformed JSON", "after the value");
    // a NUL inside a string would cut it short in cJSON: refused, named by its path
    expect_file_error("nul.json", "{\"policy\": \"entropix\",\n \"top_k\": \"4\\u0000 2\"}", "NUL character",
                      "in top_k at byte 35 (line 2, column 13)");
    expect_file_error("empty.json", "", "malformed JSON", "byte 0");
    expect_file_error("array.json", "[1, 2]", "expected a JSON object", "an array");
    expect_file_error("kind.json", "{\"policy\": \"beam\"}", "'policy' is 'beam'", "greedy, sample, entropix, learned or dslider");
    expect_file_error("kind2.json", "{\"policy\": 2}", "'policy' must be a string", NULL);
    expect_file_error("dup.json", "{\"policy\": \"entropix\", \"top_k\": 3, \"top_k\": 4}", "'top_k' appears twice",
                      NULL);
    expect_file_error("greedy.json", "{\"policy\": \"greedy\", \"temperature\": 0.7}", "temperature", "greedy");
    expect_file_error("sample.json", "{\"policy\": \"sample\", \"high_ent_thresh\": 4}", "high_ent_thresh",
                      "entropix parameter");

    etx_policy p = etx_policy_default(ETX_POLICY_ENTROPIX);
    etx_status st = etx_policy_load_json(FIX "does_not_exist.json", &p);
    ck_assert_int_eq(st.code, ETX_ERR_IO);
    assert_contains(st.message, "does_not_exist.json");
}
END_TEST

// json_find_nul: where a NUL is (escape or raw byte), named by the path of its value;
// escaped backslashes and other escapes are not NULs
static void expect_nul(const char* text, size_t len, int found, const char* path, size_t byte) {
    JsonStrictError e;
    ck_assert_int_eq(json_find_nul(text, len, &e), found);
    if (!found) return;
    ck_assert_int_eq(e.nul, 1);
    ck_assert_str_eq(e.path, path);
    ck_assert_uint_eq(e.byte, byte);
}

START_TEST(json_nul_located) {
    const char* t1 = "{\"id\": 3, \"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000b\"}]}";
    expect_nul(t1, strlen(t1), 1, "messages[0].content", (size_t)(strstr(t1, "\\u0000") - t1));
    const char* t2 = "{\"a\": [1, 2, [\"x\", \"\\u0000\"]], \"b\": \"\\u0000\"}";
    expect_nul(t2, strlen(t2), 1, "a[2][1]", (size_t)(strstr(t2, "\\u0000") - t2));
    const char* t3 = "{\"a\": \"\\\\u0000 is text\", \"b\": \"\\u00001\"}"; // "\\u0000": an escaped backslash
    expect_nul(t3, strlen(t3), 1, "b", (size_t)(strstr(t3, "\"b\": \"") - t3 + 6));
    const char* t4 = "{\"a\": \"\\u0001\\n\\\"\\u00e9\"}";
    expect_nul(t4, strlen(t4), 0, "", 0);
    const char raw[] = "{\"p\": \"x\0y\"}"; // a raw 0 byte
    expect_nul(raw, sizeof raw - 1, 1, "p", 8);
    const char* t5 = "{\"k\\u0000\": 1}"; // in a key: the object is named
    expect_nul(t5, strlen(t5), 1, "", 3);
    const char* t6 = "[[[{\"x\": \"\\u0000";   // malformed and cut short: still found
    expect_nul(t6, strlen(t6), 1, "[0][0][0].x", 10);
    // json_strict_parse refuses it
    JsonStrictError e;
    ck_assert_ptr_null(json_strict_parse(t1, strlen(t1), &e));
    ck_assert_int_eq(e.nul, 1);
}
END_TEST

START_TEST(json_kind_from_caller) {
    // no "policy" key: the caller's kind, from its defaults
    const char* path = write_tmp("nokind.json", "{\"low_ent_thresh\": 0.3, \"seed\": 5}");
    etx_policy p = etx_policy_default(ETX_POLICY_ENTROPIX);
    p.entropix.top_k = 99; // not kept: the file starts from the defaults
    CK_OK(etx_policy_load_json(path, &p));
    ck_assert_int_eq(p.kind, ETX_POLICY_ENTROPIX);
    ck_assert_float_eq(p.entropix.low_ent_thresh, 0.3f);
    ck_assert_int_eq(p.entropix.top_k, 27);
    ck_assert_uint_eq(p.seed, 5);
    remove(path);
    path = write_tmp("empty_obj.json", " {}\n");
    etx_policy g = etx_policy_default(ETX_POLICY_GREEDY);
    ck_assert_int_eq(etx_policy_load_json(path, &g).code, ETX_OK);
    ck_assert_int_eq(g.kind, ETX_POLICY_GREEDY);
    remove(path);
}
END_TEST

// ----------------------------------------------------------------------------
// learned policies: the "learned" object

#define FEATS                                                                                                     \
    "[\"entropy\",\"varentropy\",\"attn_entropy\",\"attn_varentropy\",\"agreement\",\"interaction\","            \
    "\"top_logprob_0\",\"top_logprob_1\",\"top_logprob_2\",\"top_logprob_3\",\"confidence\",\"log_step\","         \
    "\"after_pause\"]"
#define ONES13 "[1,1,1,1,1,1,1,1,1,1,1,1,1]"
#define ZEROS13 "[0,0,0,0,0,0,0,0,0,0,0,0,0]"
#define ROW13 "[0.5,-0.25,0,0,0,0,0,0,0,0,0,0,1]"
// one hidden layer of 2 units, 3 actions
#define LAYERS_OK "[{\"weight\":[" ROW13 "," ROW13 "],\"bias\":[0.1,0.2]},{\"weight\":[[1,2],[3,4],[5,6]],\"bias\":[0,0,1]}]"
#define ACTIONS_OK "[{\"kind\":\"argmax\"},{\"kind\":\"sample\",\"temperature\":0.7,\"top_p\":0.95},{\"kind\":\"adaptive\"}]"

// A learned policy file from its parts (any part may be broken by the caller).
static const char* learned_text(const char* feats, const char* mean, const char* scale, const char* layers,
                                const char* actions, const char* extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"policy\": \"learned\", \"seed\": 9%s, \"learned\": {\"features\": %s, \"mean\": %s, "
             "\"scale\": %s, \"layers\": %s, \"actions\": %s}}",
             extra, feats, mean, scale, layers, actions);
    return buf;
}

START_TEST(json_learned) {
    const char* path = write_tmp("learned.json", learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK, ACTIONS_OK,
                                                              ", \"training\": {\"anything\": [1]}, \"top_k\": 30"));
    etx_policy p = etx_policy_default(ETX_POLICY_GREEDY);
    CK_OK(etx_policy_load_json(path, &p));
    ck_assert_int_eq(p.kind, ETX_POLICY_LEARNED);
    ck_assert_uint_eq(p.seed, 9);
    ck_assert_int_eq(p.entropix.top_k, 30); // the entropix rows: the adaptive action's
    const etx_learned_net* n = etx_learned_get(p.learned);
    ck_assert_ptr_nonnull(n);
    ck_assert_int_eq(n->n_actions, 3);
    ck_assert_int_eq(n->n_layers, 1);
    ck_assert_int_eq(n->hidden[0], 2);
    ck_assert_int_eq(n->choose_argmax, 0);
    ck_assert_int_eq(n->actions[1].kind, ETX_ACTION_SAMPLE);
    ck_assert_float_eq(n->actions[1].temperature, 0.7f);
    ck_assert_float_eq(n->actions[1].top_p, 0.95f);
    ck_assert_int_eq(n->actions[1].top_k, 0);
    // packed: hidden (2 x 13) then its bias, then the output (3 x 2) then its bias
    ck_assert_float_eq(n->w[0], 0.5f);
    ck_assert_float_eq(n->w[1], -0.25f);
    ck_assert_float_eq(n->w[12], 1.0f);
    ck_assert_float_eq(n->w[26], 0.1f);
    ck_assert_float_eq(n->w[28], 1.0f);
    ck_assert_float_eq(n->w[33], 6.0f);
    ck_assert_float_eq(n->w[36], 1.0f);
    ck_assert_float_eq(n->w[37], 0.0f); // the unused tail stays zero
    // the same network again: the same id; another one: a new id
    etx_policy q = etx_policy_default(ETX_POLICY_GREEDY);
    CK_OK(etx_policy_load_json(path, &q));
    ck_assert_uint_eq(q.learned, p.learned);
    remove(path);
    path = write_tmp("learned2.json",
                     learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK, ACTIONS_OK, ", \"top_p\": 0.8"));
    CK_OK(etx_policy_load_json(path, &q));
    ck_assert_uint_eq(q.learned, p.learned); // top_p is a policy parameter, not the network's
    remove(path);
    path = write_tmp("learned3.json", learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK, ACTIONS_OK ", \"choose\": \"argmax\"", ""));
    CK_OK(etx_policy_load_json(path, &q));
    ck_assert_uint_ne(q.learned, p.learned);
    ck_assert_int_eq(etx_learned_get(q.learned)->choose_argmax, 1);
    remove(path);
    // a policy of another kind with a network id, or a learned one without: refused
    etx_policy bad = etx_policy_default(ETX_POLICY_LEARNED);
    etx_status st = etx_policy_validate(&bad);
    ck_assert_int_ne(st.code, ETX_OK);
    assert_contains(st.message, "needs a network");
    bad = etx_policy_default(ETX_POLICY_SAMPLE);
    bad.learned = p.learned;
    ck_assert_int_ne(etx_policy_validate(&bad).code, ETX_OK);
}
END_TEST

START_TEST(json_learned_errors) {
    expect_file_error("l_none.json", "{\"policy\": \"learned\"}", "needs its network", NULL);
    expect_file_error("l_kind.json", "{\"policy\": \"entropix\", \"learned\": {}}", "'learned'",
                      "this one is entropix");
    expect_file_error("l_feat.json", learned_text("[\"entropy\"]", ZEROS13, ONES13, LAYERS_OK, ACTIONS_OK, ""),
                      "learned.features", "13 feature names");
    char feats[600];
    snprintf(feats, sizeof feats, "%s", FEATS);
    memcpy(strstr(feats, "confidence"), "confidenze", 10);
    expect_file_error("l_feat2.json", learned_text(feats, ZEROS13, ONES13, LAYERS_OK, ACTIONS_OK, ""),
                      "learned.features[10] is 'confidenze'", "reads 'confidence'");
    expect_file_error("l_mean.json", learned_text(FEATS, "[0,0]", ONES13, LAYERS_OK, ACTIONS_OK, ""),
                      "learned.mean has 2 numbers", "expected 13");
    expect_file_error("l_scale.json",
                      learned_text(FEATS, ZEROS13, "[1,1,1,1,1,1,1,1,1,1,1,0,1]", LAYERS_OK, ACTIONS_OK, ""),
                      "learned.scale[11] (log_step) is 0", "> 0");
    expect_file_error("l_str.json",
                      learned_text(FEATS, "[0,0,0,0,0,0,0,0,0,0,0,0,\"0\"]", ONES13, LAYERS_OK, ACTIONS_OK, ""),
                      "learned.mean[12] must be a number", "a string");
    expect_file_error("l_big.json",
                      learned_text(FEATS, "[0,0,0,0,0,0,0,0,0,0,0,0,1e300]", ONES13, LAYERS_OK, ACTIONS_OK, ""),
                      "learned.mean[12]", "beyond a float");
    expect_file_error("l_out.json",
                      learned_text(FEATS, ZEROS13, ONES13, "[{\"weight\":[" ROW13 "],\"bias\":[0]}]", ACTIONS_OK, ""),
                      "learned.layers[0] (the output) has 1 rows", "one per action");
    expect_file_error("l_row.json",
                      learned_text(FEATS, ZEROS13, ONES13,
                                   "[{\"weight\":[" ROW13 ",[1,2]],\"bias\":[0.1,0.2]},{\"weight\":[[1,2],[3,4],[5,6]],"
                                   "\"bias\":[0,0,1]}]",
                                   ACTIONS_OK, ""),
                      "learned.layers[0].weight[1] has 2 numbers", "expected 13");
    expect_file_error("l_bias.json",
                      learned_text(FEATS, ZEROS13, ONES13,
                                   "[{\"weight\":[" ROW13 "," ROW13 "],\"bias\":[0.1]},{\"weight\":[[1,2],[3,4],[5,6]],"
                                   "\"bias\":[0,0,1]}]",
                                   ACTIONS_OK, ""),
                      "learned.layers[0].bias has 1 numbers", "expected 2");
    expect_file_error("l_deep.json",
                      learned_text(FEATS, ZEROS13, ONES13, "[{\"weight\":[],\"bias\":[]},{},{},{}]", ACTIONS_OK, ""),
                      "learned.layers has 4 layers", "1..3");
    expect_file_error("l_lkey.json",
                      learned_text(FEATS, ZEROS13, ONES13, "[{\"weight\":[[1]],\"bias\":[0],\"act\":1}]", ACTIONS_OK,
                                   ""),
                      "learned.layers[0]: unknown key 'act'", NULL);
    expect_file_error("l_akind.json",
                      learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK,
                                   "[{\"kind\":\"argmax\"},{\"kind\":\"beam\"},{\"kind\":\"adaptive\"}]", ""),
                      "learned.actions[1].kind is 'beam'", "argmax, sample, pause or adaptive");
    expect_file_error("l_atemp.json",
                      learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK,
                                   "[{\"kind\":\"argmax\"},{\"kind\":\"sample\",\"temperature\":0},{\"kind\":\"adaptive\"}]",
                                   ""),
                      "learned.actions[1].temperature is 0", "> 0");
    expect_file_error("l_atopk.json",
                      learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK,
                                   "[{\"kind\":\"argmax\"},{\"kind\":\"sample\",\"top_k\":2.5},{\"kind\":\"adaptive\"}]",
                                   ""),
                      "learned.actions[1].top_k is 2.5", "integer");
    expect_file_error("l_akey.json",
                      learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK,
                                   "[{\"kind\":\"argmax\",\"temperature\":1},{\"kind\":\"sample\"},{\"kind\":\"adaptive\"}]",
                                   ""),
                      "learned.actions[0]: unknown key 'temperature'", "only a sample action");
    expect_file_error("l_one.json",
                      learned_text(FEATS, ZEROS13, ONES13, "[{\"weight\":[" ROW13 "],\"bias\":[0]}]",
                                   "[{\"kind\":\"argmax\"}]", ""),
                      "learned.actions has 1 actions", "2..8");
    expect_file_error("l_pause.json",
                      learned_text(FEATS, ZEROS13, ONES13,
                                   "[{\"weight\":[" ROW13 "," ROW13 "],\"bias\":[0,0]}]",
                                   "[{\"kind\":\"pause\"},{\"kind\":\"pause\"}]", ""),
                      "every action is a pause", NULL);
    expect_file_error("l_key.json", learned_text(FEATS, ZEROS13, ONES13, LAYERS_OK, ACTIONS_OK, ", \"learnd\": 1"),
                      "unknown key 'learnd'", NULL);
}
END_TEST

// A dslider policy file: the kind, its parameters by name (flattened arrays included),
// defaults for the rest; the other kinds' parameters, a range error, outlier_topk above
// the support are errors naming the key.
START_TEST(json_dslider) {
    const char* path = write_tmp("dslider.json", "{\"policy\": \"dslider\", \"seed\": 5, \"support\": 16, "
                                                 "\"outlier_bilinear_21\": -0.5, \"target_entropy_linear_3\": 0.25, "
                                                 "\"dirichlet_wild\": 0, \"noise_floor\": -9}");
    etx_policy p = etx_policy_default(ETX_POLICY_GREEDY);
    CK_OK(etx_policy_load_json(path, &p));
    remove(path);
    const etx_policy d = etx_policy_default(ETX_POLICY_DSLIDER);
    ck_assert_int_eq(p.kind, ETX_POLICY_DSLIDER);
    ck_assert_uint_eq(p.seed, 5);
    ck_assert_int_eq(p.dslider.support, 16);
    ck_assert_float_eq(p.dslider.outlier_bilinear[9], -0.5f);
    ck_assert_float_eq(p.dslider.outlier_bilinear[6], 1.3f);
    ck_assert_float_eq(p.dslider.target_entropy_linear[3], 0.25f);
    ck_assert_int_eq(p.dslider.dirichlet_wild, 0);
    ck_assert_float_eq(p.dslider.noise_floor, -9.0f);
    ck_assert_float_eq(p.dslider.emwa_logp_base, 4.0f); // the reference's defaults for the rest
    ck_assert_float_eq(d.dslider.token_cross_var_scaffold_coeff, 0.75f);
    ck_assert_int_eq(d.dslider.outlier_topk, 6);
    ck_assert_float_eq(d.dslider.target_entropy_inv_temp, 8.0f);
    CK_OK(etx_policy_validate(&d));
    expect_file_error("ds_ent.json", "{\"policy\": \"dslider\", \"low_ent_thresh\": 0.2}", "low_ent_thresh",
                      "does not apply to the dslider policy");
    expect_file_error("ds_range.json", "{\"policy\": \"dslider\", \"emwa_temp_coeff\": 1.5}", "emwa_temp_coeff",
                      "[0, 1]");
    expect_file_error("ds_support.json", "{\"policy\": \"dslider\", \"support\": 4}", "outlier_topk",
                      "support");
    expect_file_error("ds_int.json", "{\"policy\": \"dslider\", \"support\": 40}", "support", "1..32");
    // a dslider parameter under another kind
    etx_policy e = etx_policy_default(ETX_POLICY_ENTROPIX);
    etx_status st = etx_policy_set(&e, "outlier_bias", 1.0);
    ck_assert_int_ne(st.code, ETX_OK);
    ck_assert_msg(strstr(st.message, "is a dslider parameter") != NULL, "%s", st.message);
}
END_TEST

START_TEST(branch_names) {
    const char* want[ETX_BRANCH_COUNT] = {"greedy", "sample",   "argmax",    "pause",  "helv", "lehv",
                                          "hehv",   "adaptive", "inlier", "dirichlet", "outlier"};
    for (int b = 0; b < ETX_BRANCH_COUNT; b++) ck_assert_str_eq(etx_branch_name((etx_branch)b), want[b]);
    ck_assert_str_eq(etx_branch_name(ETX_BRANCH_COUNT), "unknown");
}
END_TEST

int main(void) {
    Suite* s = suite_create("policy_file");
    TCase* tc = tcase_create("policy");
    tcase_add_test(tc, defaults_are_the_reference);
    tcase_add_test(tc, table_is_consistent);
    tcase_add_test(tc, set_by_name);
    tcase_add_test(tc, set_errors);
    tcase_add_test(tc, validate_catches_direct_writes);
    tcase_add_test(tc, json_reference_fixture_is_the_default);
    tcase_add_test(tc, json_custom_round_trip);
    tcase_add_test(tc, json_learned);
    tcase_add_test(tc, json_learned_errors);
    tcase_add_test(tc, json_errors);
    tcase_add_test(tc, json_nul_located);
    tcase_add_test(tc, json_kind_from_caller);
    tcase_add_test(tc, json_dslider);
    tcase_add_test(tc, branch_names);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
