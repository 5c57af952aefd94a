/*
 * policy_file.c — reads a JSON policy file into an etx_policy (etx_policy_load_json):
 *
 *     {"policy": "entropix", "seed": 7, "temperature": 0.7, "low_ent_thresh": 0.2}
 *
 * "policy" picks the kind (greedy, sample, entropix, learned; absent: the caller's kind)
 * and the file starts from that kind's defaults; "calibration" (written by `etx
 * calibrate`: what the thresholds were measured on) and "training" (written by
 * scripts/train_policy.py) are skipped; "learned" is a learned policy's network
 * (host/policy/learned.h: read, checked and registered); every other key is a parameter of the table in
 * policy.c, set through etx_policy_set so the same ranges apply as on the command line.
 * Every mistake is an error that names the file and the key: an unknown key (with the
 * closest known name), a duplicate, a string or boolean where a number belongs, a
 * fraction where an integer belongs, a value out of range (with the range), malformed
 * JSON (with the byte offset, line and column). The caller's policy is only written
 * when the whole file is good. The JSON checks (one value, repeated keys, positions, type
 * names) are json_strict.c's, shared with `etx sweep`'s grid files.
 */
#include <cJSON.h>
#include <string.h>

#include "common.h"
#include "policy/json_strict.h"
#include "policy/learned.h"
#include "policy/policy.h"

// "policy: X must be ..." from etx_policy_set, re-prefixed with the file.
static etx_status file_error(const char* path, etx_status inner) {
    const char* msg = inner.message;
    if (strncmp(msg, "policy: ", 8) == 0) msg += 8;
    return etx_error(inner.code, "policy file %s: %s", path, msg);
}

static etx_status load(const char* path, const cJSON* root, etx_policy* out) {
    if (!cJSON_IsObject(root))
        return etx_error(ETX_ERR_FORMAT, "policy file %s: expected a JSON object {\"policy\": ..., ...}, got %s", path,
                         json_type_name(root));
    const char* twice = json_repeated_key(root);
    if (twice) return etx_error(ETX_ERR_FORMAT, "policy file %s: key '%s' appears twice", path, twice);

    etx_policy_kind kind = out->kind;
    const cJSON* k = cJSON_GetObjectItemCaseSensitive(root, "policy");
    if (k) {
        if (!cJSON_IsString(k))
            return etx_error(ETX_ERR_FORMAT,
                             "policy file %s: 'policy' must be a string (greedy, sample, entropix, learned or dslider), got %s",
                             path, json_type_name(k));
        int kk = policy_kind_parse(k->valuestring);
        if (kk < 0)
            return etx_error(ETX_ERR_INVALID_ARG,
                             "policy file %s: 'policy' is '%s'; expected greedy, sample, entropix, learned or dslider", path,
                             k->valuestring);
        kind = (etx_policy_kind)kk;
    }
    etx_policy pol = etx_policy_default(kind);
    for (const cJSON* v = root->child; v; v = v->next) {
        // "calibration": where `etx calibrate` measured the thresholds (any JSON value;
        // provenance for the reader, not a parameter)
        if (strcmp(v->string, "policy") == 0 || strcmp(v->string, "calibration") == 0 ||
            strcmp(v->string, "training") == 0)
            continue;
        if (strcmp(v->string, "learned") == 0) {
            if (kind != ETX_POLICY_LEARNED)
                return etx_error(ETX_ERR_INVALID_ARG, "policy file %s: 'learned' (a network) belongs to a learned "
                                                      "policy; this one is %s", path, policy_kind_name(kind));
            char where[300];
            snprintf(where, sizeof where, "policy file %s", path);
            etx_learned_net* net = xmalloc(sizeof *net);
            etx_status st = learned_from_json(v, where, net);
            if (st.code == ETX_OK) st = etx_learned_register(net, &pol.learned);
            free(net);
            if (st.code != ETX_OK) return st;
            continue;
        }
        const PolicyParam* p = policy_param_find(v->string);
        if (!p) {
            const char* s = policy_param_suggest(v->string);
            if (s)
                return etx_error(ETX_ERR_INVALID_ARG, "policy file %s: unknown key '%s' (did you mean '%s'?)", path,
                                 v->string, s);
            return etx_error(ETX_ERR_INVALID_ARG, "policy file %s: unknown key '%s'", path, v->string);
        }
        if (!cJSON_IsNumber(v))
            return etx_error(ETX_ERR_FORMAT, "policy file %s: '%s' must be %s, got %s", path, v->string,
                             p->type == PARAM_FLOAT ? "a number" : "an integer", json_type_name(v));
        etx_status st = etx_policy_set(&pol, v->string, v->valuedouble);
        if (st.code != ETX_OK) return file_error(path, st);
    }
    if (kind == ETX_POLICY_LEARNED && pol.learned == 0)
        return etx_error(ETX_ERR_FORMAT, "policy file %s: a learned policy needs its network, the 'learned' object "
                                         "(scripts/train_policy.py writes one)", path);
    etx_status st = etx_policy_validate(&pol);
    if (st.code != ETX_OK) return file_error(path, st);
    *out = pol;
    return etx_ok();
}

etx_status etx_policy_load_json(const char* path, etx_policy* policy) {
    char* text = NULL;
    size_t len = 0;
    etx_status st = etx_read_file_max(path, ETX_JSON_FILE_MAX, &text, &len);
    if (st.code != ETX_OK) return etx_error_wrap(st, "policy file");
    JsonStrictError je;
    cJSON* root = json_strict_parse(text, len, &je);
    if (!root) {
        char what[300];
        json_strict_describe(&je, what, sizeof what);
        st = etx_error(ETX_ERR_FORMAT, "policy file %s: %s", path, what);
    } else
        st = load(path, root, policy);
    cJSON_Delete(root);
    free(text);
    return st;
}
