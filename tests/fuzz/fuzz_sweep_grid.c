/*
 * fuzz_sweep_grid.c — libFuzzer target: `etx sweep` grid files, through the parts of the
 * library they are read with: the strict JSON reader (host/policy/json_strict.c) and the
 * policy parameter table (etx_policy_set / etx_policy_validate, host/policy/policy.c).
 *
 * The grid loader itself (grid_load) is static in host/cli/sweep.c, which is being
 * rewritten; this target does not reach into it. It walks a grid file the way
 * docs/commands.md describes one ({"policy", "base", "grid"}; every value of every grid
 * parameter set on the base policy; every combination, up to a bound, built and
 * validated) and checks what the shared functions promise: a parse error's position lies
 * inside the text and agrees with its line and column; a repeated or unknown key that
 * json_repeated_key / json_unknown_key report is really repeated or unknown; a value
 * etx_policy_set accepts reads back (as float, integer or u64) within a float's rounding
 * and keeps the policy valid for the other parameters. When grid_load becomes reachable
 * (a header for it), this target should call it instead. Seeds: the grid files of the
 * docs and of tests/cli (tests/scripts/gen_fuzz_corpus.py).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "policy/json_strict.h"
#include "policy/policy.h"
#include "util.h"

#define MAX_COMBOS 64 // combinations built per input (the real bound is 100000)

// The error position agrees with the text: offset inside it, line and column counted.
static void check_error(const uint8_t* text, size_t len, const JsonStrictError* e) {
    FUZZ_CHECK(e->byte <= len);
    int line = 1, col = 1;
    for (size_t i = 0; i < e->byte; i++) {
        if (text[i] == '\n') line++, col = 1;
        else col++;
    }
    FUZZ_CHECK(e->line == line && e->column == col);
}

// What json_repeated_key / json_unknown_key say about object o is true.
static void check_keys(const cJSON* o, const char* const* allowed, int n_allowed) {
    const char* twice = json_repeated_key(o);
    if (twice) {
        int seen = 0;
        for (const cJSON* v = o->child; v; v = v->next) seen += strcmp(v->string, twice) == 0;
        FUZZ_CHECK(seen >= 2);
    }
    if (!allowed) return;
    const char* unknown = json_unknown_key(o, allowed, n_allowed);
    for (int i = 0; unknown && i < n_allowed; i++) FUZZ_CHECK(strcmp(unknown, allowed[i]) != 0);
}

// Sets name = value on pol; when accepted, the value reads back.
static int set_checked(etx_policy* pol, const char* name, double value) {
    etx_policy before = *pol;
    if (etx_policy_set(pol, name, value).code != ETX_OK) {
        FUZZ_CHECK(memcmp(pol, &before, sizeof before) == 0);
        return 0;
    }
    const PolicyParam* p = policy_param_find(name);
    FUZZ_CHECK(p != NULL && isfinite(value));
    double got = policy_param_get(pol, p);
    if (p->type == PARAM_FLOAT) FUZZ_CHECK(got == (double)(float)value);
    else FUZZ_CHECK(got == value || (p->type == PARAM_U64 && fabs(got - value) <= fabs(value) * 1e-15));
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    JsonStrictError je;
    cJSON* root = json_strict_parse((const char*)data, size, &je);
    if (!root) {
        check_error(data, size, &je);
        return 0;
    }
    static const char* const top_keys[] = {"policy", "base", "grid"};
    if (!cJSON_IsObject(root)) goto done;
    check_keys(root, top_keys, 3);
    const cJSON* kj = cJSON_GetObjectItemCaseSensitive(root, "policy");
    int kind = cJSON_IsString(kj) ? policy_kind_parse(kj->valuestring) : ETX_POLICY_ENTROPIX;
    if (kind < 0) goto done;
    etx_policy base = etx_policy_default((etx_policy_kind)kind);
    const cJSON* bj = cJSON_GetObjectItemCaseSensitive(root, "base");
    if (cJSON_IsObject(bj)) {
        check_keys(bj, NULL, 0);
        for (const cJSON* v = bj->child; v; v = v->next)
            if (cJSON_IsNumber(v)) set_checked(&base, v->string, v->valuedouble);
    }
    const cJSON* gj = cJSON_GetObjectItemCaseSensitive(root, "grid");
    if (!cJSON_IsObject(gj)) goto done;
    check_keys(gj, NULL, 0);
    // every value on the base policy; then combinations, the last parameter fastest
    int n_params = cJSON_GetArraySize(gj), n_combos = 1;
    for (const cJSON* v = gj->child; v; v = v->next) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) goto done;
        const cJSON* e;
        cJSON_ArrayForEach(e, v) {
            etx_policy probe = base;
            if (!cJSON_IsNumber(e) || !set_checked(&probe, v->string, e->valuedouble)) goto done;
        }
        int n = cJSON_GetArraySize(v);
        n_combos = n_combos > MAX_COMBOS / n ? MAX_COMBOS : n_combos * n;
    }
    for (int c = 0; c < n_combos; c++) {
        etx_policy pol = base;
        int rest = c, i = n_params - 1;
        const cJSON* v;
        // pick value (rest % n) of each parameter, from the last
        const cJSON* params[64];
        int np = 0;
        for (v = gj->child; v && np < 64; v = v->next) params[np++] = v;
        for (i = np - 1; i >= 0; i--) {
            int n = cJSON_GetArraySize(params[i]);
            const cJSON* e = cJSON_GetArrayItem(params[i], rest % n);
            rest /= n;
            set_checked(&pol, params[i]->string, e->valuedouble);
        }
        etx_policy_validate(&pol); // a combination may be invalid as a whole: an error, not a crash
    }
done:
    cJSON_Delete(root);
    return 0;
}
