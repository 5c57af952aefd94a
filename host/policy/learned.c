/*
 * learned.c — the learned policy's networks on the host (learned.h): registry, checks,
 * the policy file's "learned" object, the fingerprint hash.
 *
 * The registry is append-only for the life of the process (a network is ~23 KB; a run
 * registers a handful), so an id read by any thread stays valid; a mutex guards the
 * append. Networks are stored canonical: fields past n_actions / n_layers and weights
 * past the last layer zeroed, so equal networks have equal bytes, ids and hashes.
 */
#include "policy/learned.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "policy/json_strict.h"

const char* const learned_feature_names[ETX_LEARNED_FEATURES] = {
    "entropy",        "varentropy",     "attn_entropy",   "attn_varentropy", "agreement",
    "interaction",    "top_logprob_0",  "top_logprob_1",  "top_logprob_2",   "top_logprob_3",
    "confidence",     "log_step",       "after_pause"};

static const char* const action_names[ETX_ACTION_KIND_COUNT] = {"argmax", "sample", "pause", "adaptive"};

const char* learned_action_name(etx_action_kind kind) {
    return (int)kind >= 0 && kind < ETX_ACTION_KIND_COUNT ? action_names[kind] : "unknown";
}

// Weights the layers of net take (hidden layers, then the output layer); its counts must
// already be in range (learned_check checks them before calling it).
static long weight_count(const etx_learned_net* net) {
    long n = 0;
    int n_in = ETX_LEARNED_FEATURES;
    for (int l = 0; l < net->n_layers; l++) {
        n += (long)net->hidden[l] * (n_in + 1);
        n_in = net->hidden[l];
    }
    return n + (long)net->n_actions * (n_in + 1);
}

int learned_check(const etx_learned_net* net, char* msg, size_t cap) {
    if (net->n_actions < 2 || net->n_actions > ETX_LEARNED_MAX_ACTIONS) {
        snprintf(msg, cap, "%d actions (2..%d)", net->n_actions, ETX_LEARNED_MAX_ACTIONS);
        return -1;
    }
    if (net->n_layers < 0 || net->n_layers > ETX_LEARNED_MAX_LAYERS) {
        snprintf(msg, cap, "%d hidden layers (0..%d)", net->n_layers, ETX_LEARNED_MAX_LAYERS);
        return -1;
    }
    for (int l = 0; l < net->n_layers; l++)
        if (net->hidden[l] < 1 || net->hidden[l] > ETX_LEARNED_MAX_HIDDEN) {
            snprintf(msg, cap, "hidden layer %d has %d units (1..%d)", l, net->hidden[l], ETX_LEARNED_MAX_HIDDEN);
            return -1;
        }
    if (net->choose_argmax != 0 && net->choose_argmax != 1) {
        snprintf(msg, cap, "choose_argmax is %d (0 or 1)", net->choose_argmax);
        return -1;
    }
    int non_pause = 0;
    for (int j = 0; j < net->n_actions; j++) {
        const etx_learned_action* a = &net->actions[j];
        if ((int)a->kind < 0 || a->kind >= ETX_ACTION_KIND_COUNT) {
            snprintf(msg, cap, "action %d has an unknown kind %d", j, (int)a->kind);
            return -1;
        }
        non_pause += a->kind != ETX_ACTION_PAUSE;
        if (a->kind != ETX_ACTION_SAMPLE) continue;
        if (!(a->temperature > 0.0f) || !isfinite(a->temperature)) {
            snprintf(msg, cap, "action %d: temperature %g (> 0)", j, (double)a->temperature);
            return -1;
        }
        if (a->top_k < 0) {
            snprintf(msg, cap, "action %d: top_k %d (>= 0)", j, a->top_k);
            return -1;
        }
        if (!(a->top_p > 0.0f && a->top_p <= 1.0f)) {
            snprintf(msg, cap, "action %d: top_p %g (in (0, 1])", j, (double)a->top_p);
            return -1;
        }
        if (!(a->min_p >= 0.0f && a->min_p < 1.0f)) {
            snprintf(msg, cap, "action %d: min_p %g (in [0, 1))", j, (double)a->min_p);
            return -1;
        }
    }
    if (!non_pause) {
        snprintf(msg, cap, "every action is a pause (one that picks a token is needed after a pause)");
        return -1;
    }
    for (int i = 0; i < ETX_LEARNED_FEATURES; i++) {
        if (!isfinite(net->mean[i])) {
            snprintf(msg, cap, "mean of %s is not finite", learned_feature_names[i]);
            return -1;
        }
        if (!(net->scale[i] > 0.0f) || !isfinite(net->scale[i])) {
            snprintf(msg, cap, "scale of %s is %g (a finite number > 0)", learned_feature_names[i],
                     (double)net->scale[i]);
            return -1;
        }
    }
    const long nw = weight_count(net);
    for (long i = 0; i < nw; i++)
        if (!isfinite(net->w[i])) {
            snprintf(msg, cap, "weight %ld is not finite", i);
            return -1;
        }
    return 0;
}

int learned_has_pause(const etx_learned_net* net) {
    for (int j = 0; j < net->n_actions && j < ETX_LEARNED_MAX_ACTIONS; j++)
        if (net->actions[j].kind == ETX_ACTION_PAUSE) return 1;
    return 0;
}

uint64_t learned_hash(const etx_learned_net* net) {
    const unsigned char* p = (const unsigned char*)net;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *net; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

// ----------------------------------------------------------------------------
// the registry

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static etx_learned_net** reg_nets; // (reg_n) ids 1..reg_n
static uint32_t reg_n, reg_cap;

etx_status etx_learned_register(const etx_learned_net* net, uint32_t* id) {
    char msg[160];
    if (learned_check(net, msg, sizeof msg) != 0) return etx_error(ETX_ERR_INVALID_ARG, "learned policy: %s", msg);
    etx_learned_net* c = xcalloc(1, sizeof *c); // canonical: unused fields zero
    c->n_actions = net->n_actions;
    memcpy(c->actions, net->actions, (size_t)net->n_actions * sizeof net->actions[0]);
    for (int j = 0; j < c->n_actions; j++)
        if (c->actions[j].kind != ETX_ACTION_SAMPLE)
            c->actions[j] = (etx_learned_action){.kind = c->actions[j].kind};
    c->n_layers = net->n_layers;
    for (int l = 0; l < net->n_layers; l++) c->hidden[l] = net->hidden[l];
    c->choose_argmax = net->choose_argmax;
    memcpy(c->mean, net->mean, sizeof c->mean);
    memcpy(c->scale, net->scale, sizeof c->scale);
    memcpy(c->w, net->w, (size_t)weight_count(net) * sizeof(float));
    pthread_mutex_lock(&reg_mu);
    for (uint32_t i = 0; i < reg_n; i++)
        if (memcmp(reg_nets[i], c, sizeof *c) == 0) {
            pthread_mutex_unlock(&reg_mu);
            free(c);
            *id = i + 1;
            return etx_ok();
        }
    if (reg_n == reg_cap) {
        reg_cap = reg_cap ? 2 * reg_cap : 8;
        reg_nets = xrealloc(reg_nets, reg_cap * sizeof *reg_nets);
    }
    reg_nets[reg_n++] = c;
    *id = reg_n;
    pthread_mutex_unlock(&reg_mu);
    return etx_ok();
}

const etx_learned_net* etx_learned_get(uint32_t id) {
    pthread_mutex_lock(&reg_mu);
    const etx_learned_net* n = id >= 1 && id <= reg_n ? reg_nets[id - 1] : NULL;
    pthread_mutex_unlock(&reg_mu);
    return n;
}

uint32_t etx_learned_count(void) {
    pthread_mutex_lock(&reg_mu);
    const uint32_t n = reg_n;
    pthread_mutex_unlock(&reg_mu);
    return n;
}

// ----------------------------------------------------------------------------
// the policy file's "learned" object

// Reads array v of exactly n finite numbers into out. name: the field, for messages.
static etx_status read_numbers(const cJSON* v, int n, float* out, const char* where, const char* name) {
    if (!cJSON_IsArray(v)) return etx_error(ETX_ERR_FORMAT, "%s: learned.%s must be an array, got %s", where, name,
                                            json_type_name(v));
    const int len = cJSON_GetArraySize(v);
    if (len != n)
        return etx_error(ETX_ERR_FORMAT, "%s: learned.%s has %d numbers; expected %d", where, name, len, n);
    int i = 0;
    for (const cJSON* x = v->child; x; x = x->next, i++) {
        if (!cJSON_IsNumber(x))
            return etx_error(ETX_ERR_FORMAT, "%s: learned.%s[%d] must be a number, got %s", where, name, i,
                             json_type_name(x));
        const float f = (float)x->valuedouble;
        if (!isfinite(f))
            return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.%s[%d] is %g, beyond a float", where, name, i,
                             x->valuedouble);
        out[i] = f;
    }
    return etx_ok();
}

static etx_status read_action(const cJSON* v, int j, const char* where, etx_learned_action* a) {
    if (!cJSON_IsObject(v))
        return etx_error(ETX_ERR_FORMAT, "%s: learned.actions[%d] must be an object, got %s", where, j,
                         json_type_name(v));
    const char* twice = json_repeated_key(v);
    if (twice) return etx_error(ETX_ERR_FORMAT, "%s: learned.actions[%d]: key '%s' appears twice", where, j, twice);
    const cJSON* k = cJSON_GetObjectItemCaseSensitive(v, "kind");
    if (!cJSON_IsString(k))
        return etx_error(ETX_ERR_FORMAT, "%s: learned.actions[%d].kind must be a string (argmax, sample, pause or "
                                         "adaptive)", where, j);
    int kind = -1;
    for (int i = 0; i < ETX_ACTION_KIND_COUNT; i++)
        if (strcmp(k->valuestring, action_names[i]) == 0) kind = i;
    if (kind < 0)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.actions[%d].kind is '%s'; expected argmax, sample, pause or "
                                              "adaptive", where, j, k->valuestring);
    *a = (etx_learned_action){.kind = (etx_action_kind)kind, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f,
                              .min_p = 0.0f};
    static const char* const sample_keys[] = {"kind", "temperature", "top_k", "top_p", "min_p"};
    const char* unknown = json_unknown_key(v, sample_keys, kind == ETX_ACTION_SAMPLE ? 5 : 1);
    if (unknown)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.actions[%d]: unknown key '%s'%s", where, j, unknown,
                         kind == ETX_ACTION_SAMPLE ? " (a sample action has temperature, top_k, top_p, min_p)"
                                                   : " (only a sample action has parameters)");
    for (int i = 1; i < 5 && kind == ETX_ACTION_SAMPLE; i++) {
        const cJSON* x = cJSON_GetObjectItemCaseSensitive(v, sample_keys[i]);
        if (!x) continue;
        if (!cJSON_IsNumber(x))
            return etx_error(ETX_ERR_FORMAT, "%s: learned.actions[%d].%s must be a number, got %s", where, j,
                             sample_keys[i], json_type_name(x));
        const double d = x->valuedouble;
        const float fd = (float)d; // in range as a float too (1e-50 would become 0)
        int ok = isfinite(d) && isfinite(fd);
        switch (i) {
        case 1: ok = ok && fd > 0.0f, a->temperature = fd; break;
        case 2: ok = ok && d >= 0 && d <= 1e6 && d == floor(d), a->top_k = ok ? (int)d : 0; break;
        case 3: ok = ok && fd > 0.0f && fd <= 1.0f, a->top_p = fd; break;
        default: ok = ok && fd >= 0.0f && fd < 1.0f, a->min_p = fd; break;
        }
        if (!ok)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.actions[%d].%s is %.9g; expected %s", where, j,
                             sample_keys[i], d,
                             i == 1 ? "a number > 0" : i == 2 ? "an integer in 0..1000000" : i == 3 ? "in (0, 1]" : "in [0, 1)");
    }
    return etx_ok();
}

etx_status learned_from_json(const cJSON* o, const char* where, etx_learned_net* net) {
    memset(net, 0, sizeof *net);
    if (!cJSON_IsObject(o))
        return etx_error(ETX_ERR_FORMAT, "%s: 'learned' must be an object, got %s", where, json_type_name(o));
    const char* twice = json_repeated_key(o);
    if (twice) return etx_error(ETX_ERR_FORMAT, "%s: learned: key '%s' appears twice", where, twice);
    static const char* const keys[] = {"features", "mean", "scale", "layers", "actions", "choose"};
    const char* unknown = json_unknown_key(o, keys, 6);
    if (unknown)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: learned: unknown key '%s' (features, mean, scale, layers, actions, "
                                              "choose)", where, unknown);
    for (int i = 0; i < 6; i++)
        if (i != 5 && !cJSON_GetObjectItemCaseSensitive(o, keys[i]))
            return etx_error(ETX_ERR_FORMAT, "%s: learned.%s is missing", where, keys[i]);
    // features: the names in the network's order, so a file for another feature set is refused
    const cJSON* f = cJSON_GetObjectItemCaseSensitive(o, "features");
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) != ETX_LEARNED_FEATURES)
        return etx_error(ETX_ERR_FORMAT, "%s: learned.features must be an array of the %d feature names", where,
                         ETX_LEARNED_FEATURES);
    int i = 0;
    for (const cJSON* x = f->child; x; x = x->next, i++)
        if (!cJSON_IsString(x) || strcmp(x->valuestring, learned_feature_names[i]) != 0)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.features[%d] is %s%s%s; this etx reads '%s' there", where,
                             i, cJSON_IsString(x) ? "'" : "", cJSON_IsString(x) ? x->valuestring : json_type_name(x),
                             cJSON_IsString(x) ? "'" : "", learned_feature_names[i]);
    ETX_TRY(read_numbers(cJSON_GetObjectItemCaseSensitive(o, "mean"), ETX_LEARNED_FEATURES, net->mean, where, "mean"));
    ETX_TRY(read_numbers(cJSON_GetObjectItemCaseSensitive(o, "scale"), ETX_LEARNED_FEATURES, net->scale, where,
                         "scale"));
    for (i = 0; i < ETX_LEARNED_FEATURES; i++)
        if (!(net->scale[i] > 0.0f))
            return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.scale[%d] (%s) is %g; expected a number > 0", where, i,
                             learned_feature_names[i], (double)net->scale[i]);
    // actions
    const cJSON* acts = cJSON_GetObjectItemCaseSensitive(o, "actions");
    if (!cJSON_IsArray(acts))
        return etx_error(ETX_ERR_FORMAT, "%s: learned.actions must be an array, got %s", where, json_type_name(acts));
    net->n_actions = cJSON_GetArraySize(acts);
    if (net->n_actions < 2 || net->n_actions > ETX_LEARNED_MAX_ACTIONS)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.actions has %d actions; expected 2..%d", where,
                         net->n_actions, ETX_LEARNED_MAX_ACTIONS);
    i = 0;
    for (const cJSON* x = acts->child; x; x = x->next, i++) ETX_TRY(read_action(x, i, where, &net->actions[i]));
    // choose
    const cJSON* ch = cJSON_GetObjectItemCaseSensitive(o, "choose");
    if (ch) {
        if (!cJSON_IsString(ch) || (strcmp(ch->valuestring, "sample") != 0 && strcmp(ch->valuestring, "argmax") != 0))
            return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.choose must be \"sample\" or \"argmax\"", where);
        net->choose_argmax = strcmp(ch->valuestring, "argmax") == 0;
    }
    // layers: hidden ones, then the output layer (n_actions units)
    const cJSON* layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
    if (!cJSON_IsArray(layers))
        return etx_error(ETX_ERR_FORMAT, "%s: learned.layers must be an array, got %s", where, json_type_name(layers));
    const int n_layers = cJSON_GetArraySize(layers);
    if (n_layers < 1 || n_layers > ETX_LEARNED_MAX_LAYERS + 1)
        return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.layers has %d layers; expected 1..%d (up to %d hidden, then "
                                              "the output)", where, n_layers, ETX_LEARNED_MAX_LAYERS + 1,
                         ETX_LEARNED_MAX_LAYERS);
    net->n_layers = n_layers - 1;
    float* w = net->w;
    int n_in = ETX_LEARNED_FEATURES, l = 0;
    for (const cJSON* L = layers->child; L; L = L->next, l++) {
        char name[64];
        if (!cJSON_IsObject(L))
            return etx_error(ETX_ERR_FORMAT, "%s: learned.layers[%d] must be an object {\"weight\", \"bias\"}, got %s",
                             where, l, json_type_name(L));
        static const char* const lkeys[] = {"weight", "bias"};
        const char* u = json_unknown_key(L, lkeys, 2);
        if (u) return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.layers[%d]: unknown key '%s'", where, l, u);
        if (json_repeated_key(L))
            return etx_error(ETX_ERR_FORMAT, "%s: learned.layers[%d]: key '%s' appears twice", where, l,
                             json_repeated_key(L));
        const cJSON* W = cJSON_GetObjectItemCaseSensitive(L, "weight");
        const cJSON* B = cJSON_GetObjectItemCaseSensitive(L, "bias");
        if (!cJSON_IsArray(W) || !B)
            return etx_error(ETX_ERR_FORMAT, "%s: learned.layers[%d] needs \"weight\" (an array of rows) and \"bias\"",
                             where, l);
        const int last = l == n_layers - 1;
        const int n_out = cJSON_GetArraySize(W);
        if (last && n_out != net->n_actions)
            return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.layers[%d] (the output) has %d rows; expected %d, one per "
                                                  "action", where, l, n_out, net->n_actions);
        if (!last && (n_out < 1 || n_out > ETX_LEARNED_MAX_HIDDEN))
            return etx_error(ETX_ERR_INVALID_ARG, "%s: learned.layers[%d] has %d units; expected 1..%d", where, l,
                             n_out, ETX_LEARNED_MAX_HIDDEN);
        int r = 0;
        for (const cJSON* row = W->child; row; row = row->next, r++) {
            snprintf(name, sizeof name, "layers[%d].weight[%d]", l, r);
            ETX_TRY(read_numbers(row, n_in, w + (size_t)r * n_in, where, name));
        }
        snprintf(name, sizeof name, "layers[%d].bias", l);
        ETX_TRY(read_numbers(B, n_out, w + (size_t)n_out * n_in, where, name));
        w += (size_t)n_out * (n_in + 1);
        if (!last) net->hidden[l] = n_out;
        n_in = n_out;
    }
    char msg[160];
    if (learned_check(net, msg, sizeof msg) != 0) return etx_error(ETX_ERR_INVALID_ARG, "%s: learned: %s", where, msg);
    return etx_ok();
}
