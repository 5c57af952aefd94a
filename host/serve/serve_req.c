/*
 * serve_req.c — one OpenAI request body -> a ServeJob (serve.h), checked in full before
 * anything is queued: malformed JSON, a field etx does not know, a value of the wrong
 * type or out of range, a prompt that does not fit the context, a policy the model
 * cannot run — each refused with HTTP 400 and a message naming the field (404 for a
 * model this server does not serve). Fields of the OpenAI API that etx does not
 * implement are accepted at their neutral values only (presence_penalty 0, logit_bias
 * {}, best_of = n, ...), so a client that sends its defaults works and one that asks for
 * something etx would silently not do is told. A JSON null is the same as an absent field.
 *
 * The policy (docs/serve.md "Policies"): with no "policy"/"policy_file", temperature 0
 * is greedy, temperature > 0 sampling at that temperature, and no temperature the
 * server's --policy; with one, its parameters, then temperature (> 0 only: lm-eval always
 * sends 0) and top_p, then "policy_params". "seed" sets the policy's seed and a fixed
 * request key, so the same request gives the same tokens whatever runs beside it.
 */
#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common.h"
#include "policy/policy.h"
#include "serve.h"

typedef struct {
    char* msg;
    size_t cap;
    char* param;
    size_t pcap;
} Err;

static int fail(Err* e, int status, const char* param, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(Err* e, int status, const char* param, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, e->cap, fmt, ap);
    va_end(ap);
    snprintf(e->param, e->pcap, "%s", param ? param : "");
    return status;
}

// The field, or NULL when absent or null.
static const cJSON* field(const cJSON* root, const char* name) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(root, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

// An integer field in [lo, hi] (absent: *out untouched). 0, or the status after fail().
static int get_int(Err* e, const cJSON* root, const char* name, long long lo, long long hi, long long* out) {
    const cJSON* v = field(root, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return fail(e, 400, name, "'%s' must be an integer", name);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return fail(e, 400, name, "'%s' is %.17g; it must be in %lld..%lld", name, v->valuedouble, lo, hi);
    *out = (long long)v->valuedouble;
    return 0;
}

static int get_num(Err* e, const cJSON* root, const char* name, double lo, double hi, double* out, int* given) {
    const cJSON* v = field(root, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return fail(e, 400, name, "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fail(e, 400, name, "'%s' is %g; it must be in [%g, %g]", name, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    if (given) *given = 1;
    return 0;
}

static int get_bool(Err* e, const cJSON* root, const char* name, int* out) {
    const cJSON* v = field(root, name);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return fail(e, 400, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return 0;
}

// The fields each endpoint knows; anything else is refused.
static const char* const COMMON_FIELDS[] = {
    "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed", "user",
    "presence_penalty", "frequency_penalty", "logit_bias", "policy", "policy_params", "policy_file", "trace",
    "ignore_eos", "logprobs"};
static const char* const COMPLETION_FIELDS[] = {"prompt", "echo", "best_of", "suffix"};
static const char* const CHAT_FIELDS[] = {"messages", "max_completion_tokens", "top_logprobs", "response_format"};

static int known(const char* name, ServeKind kind) {
    for (size_t i = 0; i < sizeof COMMON_FIELDS / sizeof *COMMON_FIELDS; i++)
        if (strcmp(name, COMMON_FIELDS[i]) == 0) return 1;
    const char* const* own = kind == SERVE_COMPLETION ? COMPLETION_FIELDS : CHAT_FIELDS;
    const size_t n_own = kind == SERVE_COMPLETION ? sizeof COMPLETION_FIELDS / sizeof *COMPLETION_FIELDS
                                                  : sizeof CHAT_FIELDS / sizeof *CHAT_FIELDS;
    for (size_t i = 0; i < n_own; i++)
        if (strcmp(name, own[i]) == 0) return 1;
    return 0;
}

// OpenAI fields etx accepts only at the value that changes nothing.
static int neutral_fields(Err* e, const cJSON* root, int n) {
    const char* zero[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        const cJSON* v = field(root, zero[i]);
        if (v && (!cJSON_IsNumber(v) || v->valuedouble != 0.0))
            return fail(e, 400, zero[i], "'%s' is not supported by etx (only 0)", zero[i]);
    }
    const cJSON* v = field(root, "logit_bias");
    if (v && (!cJSON_IsObject(v) || v->child))
        return fail(e, 400, "logit_bias", "'logit_bias' is not supported by etx (only {})");
    v = field(root, "best_of");
    if (v && (!cJSON_IsNumber(v) || v->valuedouble != (double)n))
        return fail(e, 400, "best_of", "'best_of' is not supported by etx (only equal to n)");
    v = field(root, "suffix");
    if (v && (!cJSON_IsString(v) || v->valuestring[0]))
        return fail(e, 400, "suffix", "'suffix' is not supported by etx");
    v = field(root, "user");
    if (v && !cJSON_IsString(v)) return fail(e, 400, "user", "'user' must be a string");
    v = field(root, "response_format");
    if (v) {
        const cJSON* t = cJSON_IsObject(v) ? field(v, "type") : NULL;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0)
            return fail(e, 400, "response_format", "'response_format' is not supported by etx (only {\"type\": \"text\"})");
    }
    return 0;
}

// "stop": a string or a list of at most SERVE_MAX_STOPS strings.
static int parse_stops(Err* e, const cJSON* root, ServeJob* j) {
    const cJSON* v = field(root, "stop");
    if (!v) return 0;
    const cJSON* one = cJSON_IsString(v) ? v : NULL;
    if (!one && !cJSON_IsArray(v)) return fail(e, 400, "stop", "'stop' must be a string or a list of strings");
    if (!one && cJSON_GetArraySize(v) > SERVE_MAX_STOPS)
        return fail(e, 400, "stop", "'stop' has %d strings; at most %d", cJSON_GetArraySize(v), SERVE_MAX_STOPS);
    const cJSON* it = one ? one : v->child;
    for (; it; it = one ? NULL : it->next) {
        if (!cJSON_IsString(it)) return fail(e, 400, "stop", "'stop' entries must be strings");
        size_t n = strlen(it->valuestring);
        if (n == 0) continue;
        if (n > SERVE_MAX_STOP_LEN)
            return fail(e, 400, "stop", "a 'stop' string has %zu bytes; at most %d", n, SERVE_MAX_STOP_LEN);
        j->stops[j->n_stops++] = xstrdup(it->valuestring);
    }
    return 0;
}

static void add_prompt(ServeJob* j, int32_t* ids, int n) {
    j->prompts = xrealloc(j->prompts, (size_t)(j->n_prompts + 1) * sizeof *j->prompts);
    j->n_prompt = xrealloc(j->n_prompt, (size_t)(j->n_prompts + 1) * sizeof *j->n_prompt);
    j->prompts[j->n_prompts] = ids;
    j->n_prompt[j->n_prompts++] = n;
}

static int tokenize_text(Err* e, const Server* s, const char* param, const char* text, int add_bos, ServeJob* j) {
    int32_t* ids = NULL;
    int n = 0;
    etx_status st = etx_tokenize(s->m, text, strlen(text), add_bos, &ids, &n);
    if (st.code != ETX_OK) return fail(e, 400, param, "'%s': %s", param, st.message);
    add_prompt(j, ids, n);
    return 0;
}

// A list of token ids (JSON numbers) inside the vocabulary.
static int token_list(Err* e, const Server* s, const cJSON* arr, ServeJob* j) {
    int n = cJSON_GetArraySize(arr), k = 0;
    int32_t* ids = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
    const cJSON* t;
    cJSON_ArrayForEach(t, arr) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble >= s->info.vocab_size) {
            free(ids);
            return fail(e, 400, "prompt", "'prompt' token %d is not a token id (0..%d)", k, s->info.vocab_size - 1);
        }
        ids[k++] = (int32_t)t->valuedouble;
    }
    add_prompt(j, ids, n);
    return 0;
}

// "prompt": a string, a list of strings, a list of token ids, or a list of such lists.
static int parse_prompt(Err* e, const Server* s, const cJSON* root, ServeJob* j) {
    const cJSON* p = field(root, "prompt");
    if (!p) return fail(e, 400, "prompt", "'prompt' is required");
    if (cJSON_IsString(p)) return tokenize_text(e, s, "prompt", p->valuestring, s->info.add_bos, j);
    if (!cJSON_IsArray(p) || !p->child) return fail(e, 400, "prompt", "'prompt' must be a string or a non-empty list");
    if (cJSON_GetArraySize(p) > SERVE_MAX_PROMPTS)
        return fail(e, 400, "prompt", "'prompt' has %d entries; at most %d", cJSON_GetArraySize(p), SERVE_MAX_PROMPTS);
    if (cJSON_IsNumber(p->child)) return token_list(e, s, p, j);
    const cJSON* it;
    cJSON_ArrayForEach(it, p) {
        int rc = 0;
        if (cJSON_IsString(it)) rc = tokenize_text(e, s, "prompt", it->valuestring, s->info.add_bos, j);
        else if (cJSON_IsArray(it)) rc = token_list(e, s, it, j);
        else rc = fail(e, 400, "prompt", "'prompt' entries must be strings or lists of token ids");
        if (rc) return rc;
    }
    return 0;
}

// "messages": [{"role", "content": string | [{"type": "text", "text"}]}], rendered with
// the model's chat template and the assistant header (as `etx eval` renders "messages").
static int parse_messages(Err* e, const Server* s, const cJSON* root, ServeJob* j) {
    const cJSON* ms = field(root, "messages");
    if (!cJSON_IsArray(ms) || !ms->child) return fail(e, 400, "messages", "'messages' must be a non-empty list");
    int n = cJSON_GetArraySize(ms), k = 0, rc = 0;
    etx_chat_message* cm = xcalloc((size_t)n, sizeof *cm);
    char** owned = xcalloc((size_t)n, sizeof *owned);
    const cJSON* m;
    cJSON_ArrayForEach(m, ms) {
        const cJSON* role = cJSON_IsObject(m) ? field(m, "role") : NULL;
        const cJSON* content = cJSON_IsObject(m) ? field(m, "content") : NULL;
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
                                      strcmp(role->valuestring, "assistant") && strcmp(role->valuestring, "developer"))) {
            rc = fail(e, 400, "messages", "messages[%d].role must be \"system\", \"user\" or \"assistant\"", k);
            break;
        }
        const char* text = NULL;
        if (cJSON_IsString(content)) {
            text = content->valuestring;
        } else if (cJSON_IsArray(content)) { // text parts, joined
            size_t len = 0;
            const cJSON* part;
            cJSON_ArrayForEach(part, content) {
                const cJSON* ty = cJSON_IsObject(part) ? field(part, "type") : NULL;
                const cJSON* tx = cJSON_IsObject(part) ? field(part, "text") : NULL;
                if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(tx)) {
                    rc = fail(e, 400, "messages", "messages[%d].content parts must be {\"type\": \"text\", \"text\": ...}",
                              k);
                    break;
                }
                size_t tl = strlen(tx->valuestring);
                owned[k] = xrealloc(owned[k], len + tl + 1);
                memcpy(owned[k] + len, tx->valuestring, tl + 1);
                len += tl;
            }
            if (rc) break;
            text = owned[k] ? owned[k] : "";
        } else {
            rc = fail(e, 400, "messages", "messages[%d].content must be a string or a list of text parts", k);
            break;
        }
        cm[k] = (etx_chat_message){strcmp(role->valuestring, "developer") ? role->valuestring : "system", text};
        k++;
    }
    if (!rc) {
        char* text = NULL;
        etx_status st = etx_chat_format(s->m, cm, n, 1, &text);
        if (st.code != ETX_OK) rc = fail(e, 400, "messages", "'messages': %s", st.message);
        else rc = tokenize_text(e, s, "messages", text, 0, j);
        free(text);
    }
    for (int i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(cm);
    return rc;
}

// The policy file NAME in --policy-dir: letters, digits, '-', '_', '.' (not first).
static int load_named_policy(Err* e, const Server* s, const char* name, etx_policy* p) {
    if (!s->cfg.policy_dir) return fail(e, 400, "policy_file", "this server has no --policy-dir for 'policy_file'");
    size_t n = strlen(name);
    int ok = n > 0 && n < 128 && name[0] != '.';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)name[i]) || name[i] == '-' || name[i] == '_' || name[i] == '.';
    if (!ok) return fail(e, 400, "policy_file", "'policy_file' must be a name (letters, digits, '-', '_', '.')");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", s->cfg.policy_dir, name);
    etx_status st = etx_policy_load_json(path, p);
    if (st.code != ETX_OK) return fail(e, 400, "policy_file", "'policy_file' %s: %s", name, st.message);
    return 0;
}

static int parse_policy(Err* e, const Server* s, const cJSON* root, ServeJob* j) {
    double temp = 0, top_p = 1;
    int has_temp = 0, has_top_p = 0, rc;
    if ((rc = get_num(e, root, "temperature", 0, 2, &temp, &has_temp))) return rc;
    if ((rc = get_num(e, root, "top_p", 0, 1, &top_p, &has_top_p))) return rc;
    const cJSON* name = field(root, "policy");
    const cJSON* file = field(root, "policy_file");
    etx_policy p;
    if (file) {
        if (!cJSON_IsString(file)) return fail(e, 400, "policy_file", "'policy_file' must be a string");
        if ((rc = load_named_policy(e, s, file->valuestring, &p))) return rc;
    }
    if (name) {
        int kind = cJSON_IsString(name) ? policy_kind_parse(name->valuestring) : -1;
        if (kind < 0 || (kind == ETX_POLICY_LEARNED && !file))
            return fail(e, 400, "policy", "'policy' must be \"greedy\", \"sample\", \"entropix\" or \"dslider\" (a "
                                          "learned policy comes with its network in a 'policy_file')");
        if (file && (int)p.kind != kind)
            return fail(e, 400, "policy", "'policy' is %s but 'policy_file' holds a %s policy", name->valuestring,
                        policy_kind_name(p.kind));
        if (!file) p = etx_policy_default((etx_policy_kind)kind);
    }
    etx_status st;
    if (!name && !file) {
        if (!has_temp) p = s->cfg.policy;
        else if (temp == 0) p = etx_policy_default(ETX_POLICY_GREEDY);
        else {
            p = etx_policy_default(ETX_POLICY_SAMPLE);
            p.temperature = (float)temp;
        }
    } else if (has_temp && temp > 0) {
        st = etx_policy_set(&p, "temperature", temp);
        if (st.code != ETX_OK) return fail(e, 400, "temperature", "'temperature': %s", st.message);
    }
    // top_p 1 changes nothing, so a greedy policy takes it too
    if (has_top_p && !(top_p == 1 && p.kind == ETX_POLICY_GREEDY)) {
        if (top_p == 0) return fail(e, 400, "top_p", "'top_p' must be above 0");
        st = etx_policy_set(&p, "top_p", top_p);
        if (st.code != ETX_OK) return fail(e, 400, "top_p", "'top_p': %s", st.message);
    }
    const cJSON* params = field(root, "policy_params");
    if (params) {
        if (!cJSON_IsObject(params)) return fail(e, 400, "policy_params", "'policy_params' must be an object");
        const cJSON* it;
        cJSON_ArrayForEach(it, params) {
            char pname[160];
            snprintf(pname, sizeof pname, "policy_params.%s", it->string);
            if (!cJSON_IsNumber(it)) return fail(e, 400, pname, "'%s' must be a number", pname);
            st = etx_policy_set(&p, it->string, it->valuedouble);
            if (st.code != ETX_OK) return fail(e, 400, pname, "'%s': %s", pname, st.message);
        }
    }
    long long seed = -1;
    if ((rc = get_int(e, root, "seed", 0, 9007199254740991LL, &seed))) return rc;
    if (seed >= 0) {
        st = etx_policy_set(&p, "seed", (double)seed);
        if (st.code != ETX_OK) return fail(e, 400, "seed", "'seed': %s", st.message);
        j->key = 0;
    } else {
        j->key = UINT64_MAX; // the server gives it a stream when queueing
    }
    st = etx_policy_validate(&p);
    if (st.code != ETX_OK) return fail(e, 400, "policy", "the policy: %s", st.message);
    // the entropix pause token against the model, as `etx generate` checks it
    char why[256];
    if (cli_policy_model_error(s->m, &p, "policy_params.pause_token", why, sizeof why) != 0)
        return fail(e, 400, "policy_params", "%s", why);
    j->policy = p;
    return 0;
}

static int parse(Err* e, const Server* s, ServeKind kind, const cJSON* root, ServeJob* j) {
    int rc;
    if (!cJSON_IsObject(root)) return fail(e, 400, "", "the body must be a JSON object");
    for (const cJSON* it = root->child; it; it = it->next)
        if (!known(it->string, kind)) return fail(e, 400, it->string, "unknown field '%s'", it->string);
    const cJSON* model = field(root, "model");
    if (model && !cJSON_IsString(model)) return fail(e, 400, "model", "'model' must be a string");
    if (model && strcmp(model->valuestring, s->cfg.model_name) != 0)
        return fail(e, 404, "model", "the model '%s' is not served here (this server serves '%s')", model->valuestring,
                    s->cfg.model_name);
    long long n = 1, max_tokens = 16, logprobs = -1;
    if ((rc = get_int(e, root, "n", 1, s->cfg.max_n, &n))) return rc;
    j->n = (int)n;
    if ((rc = neutral_fields(e, root, j->n))) return rc;
    if ((rc = get_bool(e, root, "stream", &j->stream))) return rc;
    const cJSON* so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) return fail(e, 400, "stream_options", "'stream_options' must be an object");
        for (const cJSON* it = so->child; it; it = it->next)
            if (strcmp(it->string, "include_usage") != 0)
                return fail(e, 400, "stream_options", "unknown field 'stream_options.%s'", it->string);
        if ((rc = get_bool(e, so, "include_usage", &j->include_usage))) return rc;
    }
    if ((rc = get_bool(e, root, "trace", &j->trace))) return rc;
    if ((rc = get_bool(e, root, "ignore_eos", &j->ignore_eos))) return rc;
    if (kind == SERVE_COMPLETION) {
        if ((rc = get_bool(e, root, "echo", &j->echo))) return rc;
        if ((rc = get_int(e, root, "logprobs", 0, ETX_TRACE_TOP, &logprobs))) return rc;
        if ((rc = parse_prompt(e, s, root, j))) return rc;
        if (j->echo && j->stream) return fail(e, 400, "echo", "'echo' with 'stream' is not supported by etx");
    } else {
        int lp = 0;
        if ((rc = get_bool(e, root, "logprobs", &lp))) return rc;
        long long top = 0;
        if ((rc = get_int(e, root, "top_logprobs", 0, ETX_TRACE_TOP, &top))) return rc;
        if (field(root, "top_logprobs") && !lp)
            return fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        logprobs = lp ? top : -1;
        if ((rc = parse_messages(e, s, root, j))) return rc;
        if (field(root, "max_completion_tokens")) {
            if (field(root, "max_tokens"))
                return fail(e, 400, "max_completion_tokens", "give 'max_tokens' or 'max_completion_tokens', not both");
            if ((rc = get_int(e, root, "max_completion_tokens", 1, s->cfg.max_tokens, &max_tokens))) return rc;
        }
    }
    j->logprobs = (int)logprobs;
    if ((rc = get_int(e, root, "max_tokens", j->echo ? 0 : 1, s->cfg.max_tokens, &max_tokens))) return rc;
    // chat without a limit: what the context leaves after the prompt (OpenAI's chat
    // default), within --max-tokens; completions keep OpenAI's default of 16
    if (kind == SERVE_CHAT && !field(root, "max_tokens") && !field(root, "max_completion_tokens")) {
        const long long room = (long long)s->cfg.ctx - j->n_prompt[0];
        max_tokens = room < s->cfg.max_tokens ? room : s->cfg.max_tokens;
        if (max_tokens < 1) max_tokens = 1; // the prompt alone fills the context: refused below
    }
    j->max_tokens = (int)max_tokens;
    if ((long long)j->n_prompts * j->n > s->cfg.max_n)
        return fail(e, 400, "n", "%d prompts x n %d = %lld choices; at most %d (--max-n)", j->n_prompts, j->n,
                    (long long)j->n_prompts * j->n, s->cfg.max_n);
    for (int p = 0; p < j->n_prompts; p++) {
        const char* what = kind == SERVE_CHAT ? "messages" : "prompt";
        if (j->n_prompt[p] == 0) return fail(e, 400, what, "the prompt is empty after tokenization");
        if ((long long)j->n_prompt[p] + j->max_tokens > s->cfg.ctx)
            return fail(e, 400, j->n_prompt[p] >= s->cfg.ctx ? what : "max_tokens",
                        "the prompt has %d tokens and max_tokens is %d, but the context holds %d tokens",
                        j->n_prompt[p], j->max_tokens, s->cfg.ctx);
        // echo's log-probabilities take the logits of every prompt position at once
        if (j->echo && j->logprobs >= 0 && (double)j->n_prompt[p] * s->info.vocab_size * 4 > 1073741824.0)
            return fail(e, 400, "echo", "echo with logprobs: the prompt's logits would take over 1 GiB");
    }
    if ((rc = parse_stops(e, root, j))) return rc;
    return parse_policy(e, s, root, j);
}

int serve_parse_request(const Server* s, ServeKind kind, const char* body, size_t len, ServeJob** out, char* msg,
                        size_t msg_cap, char* param, size_t param_cap) {
    Err e = {msg, msg_cap, param, param_cap};
    *out = NULL;
    const char* end = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        return fail(&e, 400, "", "the body is not valid JSON (error near byte %zu)", at);
    }
    ServeJob* j = xcalloc(1, sizeof *j);
    j->kind = kind;
    j->logprobs = -1;
    int rc = parse(&e, s, kind, root, j);
    cJSON_Delete(root);
    if (rc) {
        serve_job_free(j);
        return rc;
    }
    j->n_choices = j->n_prompts * j->n;
    j->choices = xcalloc((size_t)j->n_choices, sizeof *j->choices);
    for (int c = 0; c < j->n_choices; c++) {
        j->choices[c].prompt = c / j->n;
        j->choices[c].sample = c % j->n;
        j->choices[c].req = -1;
        j->choices[c].slot.stop_at = -1;
        j->choices[c].slot.req = -1;
    }
    pthread_cond_init(&j->cv, NULL);
    *out = j;
    return 0;
}

void serve_job_free(ServeJob* j) {
    if (!j) return;
    for (int p = 0; p < j->n_prompts; p++) free(j->prompts[p]);
    free(j->prompts);
    free(j->n_prompt);
    for (int k = 0; k < j->n_stops; k++) free(j->stops[k]);
    for (int c = 0; c < j->n_choices; c++) {
        ServeChoice* ch = &j->choices[c];
        free(ch->slot.text);
        free(ch->tokens);
        free(ch->recs);
        free(ch->ends);
    }
    if (j->choices) pthread_cond_destroy(&j->cv);
    free(j->choices);
    if (j->echo_lp)
        for (int p = 0; p < j->n_prompts; p++) {
            free(j->echo_lp[p].lp);
            free(j->echo_lp[p].top);
            free(j->echo_lp[p].top_lp);
        }
    free(j->echo_lp);
    free(j);
}
