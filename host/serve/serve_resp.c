/*
 * serve_resp.c — the OpenAI JSON of `etx serve` (serve.h), whole or as server-sent
 * events, from a job's published state (Server.mu held by the caller).
 *
 * Text: a choice's output is its decoded bytes up to the first stop string (not
 * included) or before its end-of-sequence token, made valid UTF-8 (a stray byte becomes
 * U+FFFD); with echo the prompt's decoded tokens come first. Streams never send the
 * start of what may become a stop string, nor half a character: each delta ends where
 * no stop string can begin and on a character boundary; the rest follows once the
 * tokens after it decide.
 *
 * Log-probabilities are the model's (temperature 1), from the trace records the engine
 * keeps per token (their ETX_TRACE_TOP alternatives bound "logprobs"/"top_logprobs");
 * echo's prompt tokens from one forward pass over the prompt (serve_engine.c).
 * Completions: {"tokens", "token_logprobs", "top_logprobs": [{text: lp}], "text_offset"
 * (byte offsets into "text")}; chat: {"content": [{"token", "logprob", "bytes",
 * "top_logprobs": [{"token", "logprob", "bytes"}]}]}. Each choice adds "etx":
 * {"branches": {name: tokens}} (the policy's branch per output token) and, with "trace",
 * "trace": one record per output token, as `etx generate --trace` writes them.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "serve.h"

// A JSON string of bytes s[0..n): valid UTF-8 (bad bytes -> U+FFFD), NUL kept.
static cJSON* text_json(const char* s, size_t n) {
    size_t len = 0;
    char* clean = batch_utf8_clean(s, n, &len);
    char* q = batch_json_quote(clean, len);
    cJSON* v = cJSON_CreateRaw(q);
    free(clean);
    free(q);
    return v;
}

static void token_bytes(const Server* s, int32_t id, const char** b, size_t* n) {
    if (id < 0 || etx_token_bytes(s->m, id, b, n).code != ETX_OK) *b = "", *n = 0;
}

static cJSON* num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

// The text of token id as a C string (lossy UTF-8, cut at a NUL byte): a JSON object key.
static char* token_key(const Server* s, int32_t id) {
    const char* b;
    size_t n, len;
    token_bytes(s, id, &b, &n);
    return batch_utf8_clean(b, n, &len);
}

static cJSON* bytes_json(const Server* s, int32_t id) {
    const char* b;
    size_t n;
    token_bytes(s, id, &b, &n);
    cJSON* a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)b[i]));
    return a;
}

static cJSON* token_json(const Server* s, int32_t id) {
    const char* b;
    size_t n;
    token_bytes(s, id, &b, &n);
    return text_json(b, n);
}

// The decoded prompt p (echo), malloc'ed, *len bytes; ends[i] (when not NULL, n_prompt
// entries): where prompt token i ends.
static char* prompt_text(const Server* s, const ServeJob* j, int p, size_t* len, size_t* ends) {
    size_t cap = 64, w = 0;
    char* t = xmalloc(cap);
    for (int i = 0; i < j->n_prompt[p]; i++) {
        const char* b;
        size_t n;
        token_bytes(s, j->prompts[p][i], &b, &n);
        if (w + n + 1 > cap) cap = 2 * (w + n + 1), t = xrealloc(t, cap);
        memcpy(t + w, b, n);
        w += n;
        if (ends) ends[i] = w;
    }
    *len = w;
    return t;
}

// ----------------------------------------------------------------------------
// log-probabilities

// One token of a completions "logprobs" object: appended to its four arrays.
static void add_completion_token(const Server* s, cJSON* lp, int32_t id, double logprob, const int32_t* top,
                                 const float* top_lp, int k, size_t offset, int first) {
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "tokens"), token_json(s, id));
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "token_logprobs"), first ? cJSON_CreateNull() : num_or_null(logprob));
    cJSON* alt = first ? cJSON_CreateNull() : cJSON_CreateObject();
    for (int q = 0; !first && q < k; q++) {
        if (top[q] < 0) continue;
        char* key = token_key(s, top[q]);
        if (!cJSON_GetObjectItemCaseSensitive(alt, key)) cJSON_AddItemToObject(alt, key, num_or_null(top_lp[q]));
        free(key);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "top_logprobs"), alt);
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "text_offset"), cJSON_CreateNumber((double)offset));
}

static cJSON* completion_logprobs_new(void) {
    cJSON* lp = cJSON_CreateObject();
    cJSON_AddItemToObject(lp, "tokens", cJSON_CreateArray());
    cJSON_AddItemToObject(lp, "token_logprobs", cJSON_CreateArray());
    cJSON_AddItemToObject(lp, "top_logprobs", cJSON_CreateArray());
    cJSON_AddItemToObject(lp, "text_offset", cJSON_CreateArray());
    return lp;
}

// Generated tokens [from, to) of choice c, text offsets shifted by base.
static void completion_logprobs_add(const Server* s, const ServeJob* j, const ServeChoice* c, int from, int to,
                                    size_t base, cJSON* lp) {
    for (int i = from; i < to; i++) {
        const etx_trace_record* r = i < c->n_recs ? &c->recs[i] : NULL;
        add_completion_token(s, lp, c->tokens[i], r ? r->logprob : NAN, r ? r->top_tokens : NULL,
                             r ? r->top_logprobs : NULL, r ? j->logprobs : 0, base + (i ? c->ends[i - 1] : 0), 0);
    }
}

// Chat "logprobs": {"content": [...]} for generated tokens [from, to) of choice c.
static cJSON* chat_logprobs(const Server* s, const ServeJob* j, const ServeChoice* c, int from, int to) {
    cJSON* o = cJSON_CreateObject();
    cJSON* content = cJSON_AddArrayToObject(o, "content");
    for (int i = from; i < to; i++) {
        const etx_trace_record* r = i < c->n_recs ? &c->recs[i] : NULL;
        cJSON* e = cJSON_CreateObject();
        cJSON_AddItemToObject(e, "token", token_json(s, c->tokens[i]));
        cJSON_AddItemToObject(e, "logprob", num_or_null(r ? r->logprob : NAN));
        cJSON_AddItemToObject(e, "bytes", bytes_json(s, c->tokens[i]));
        cJSON* top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int q = 0; r && q < j->logprobs; q++) {
            if (r->top_tokens[q] < 0) continue;
            cJSON* t = cJSON_CreateObject();
            cJSON_AddItemToObject(t, "token", token_json(s, r->top_tokens[q]));
            cJSON_AddItemToObject(t, "logprob", num_or_null(r->top_logprobs[q]));
            cJSON_AddItemToObject(t, "bytes", bytes_json(s, r->top_tokens[q]));
            cJSON_AddItemToArray(top, t);
        }
        cJSON_AddItemToArray(content, e);
    }
    return o;
}

// ----------------------------------------------------------------------------
// etx's own fields

static cJSON* trace_json(const Server* s, const etx_trace_record* r) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", r->step);
    cJSON_AddNumberToObject(o, "token", r->token);
    cJSON_AddItemToObject(o, "text", token_json(s, r->token));
    cJSON_AddStringToObject(o, "branch", etx_branch_name(r->branch));
    const char* names[] = {"entropy", "varentropy", "attn_entropy", "attn_varentropy", "agreement",
                           "interaction", "temperature", "top_p", "min_p", "logprob", "confidence"};
    const float vals[] = {r->entropy,     r->varentropy,  r->attn_entropy, r->attn_varentropy,
                          r->agreement,   r->interaction, r->temperature,  r->top_p,
                          r->min_p,       r->logprob,     r->confidence};
    for (int i = 0; i < (int)(sizeof vals / sizeof *vals); i++) cJSON_AddItemToObject(o, names[i], num_or_null(vals[i]));
    cJSON_AddNumberToObject(o, "top_k", r->top_k);
    return o;
}

static cJSON* etx_json(const Server* s, const ServeJob* j, const ServeChoice* c) {
    cJSON* o = cJSON_CreateObject();
    // branches count every generated token, the stop token and the tokens past a stop
    // string included, so that they add up to usage.completion_tokens (the policy chose
    // each of them); the trace keeps to the output tokens
    int per[ETX_BRANCH_COUNT] = {0};
    const int n_gen = c->n_tokens < c->n_recs ? c->n_tokens : c->n_recs;
    for (int i = 0; i < n_gen; i++) per[c->recs[i].branch]++;
    const int n = c->n_out < c->n_recs ? c->n_out : c->n_recs;
    cJSON* b = cJSON_AddObjectToObject(o, "branches");
    for (int k = 0; k < ETX_BRANCH_COUNT; k++)
        if (per[k]) cJSON_AddNumberToObject(b, etx_branch_name((etx_branch)k), per[k]);
    if (j->trace) {
        cJSON* t = cJSON_AddArrayToObject(o, "trace");
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(t, trace_json(s, &c->recs[i]));
    }
    if (c->error[0]) cJSON_AddStringToObject(o, "error", c->error);
    return o;
}

static cJSON* usage_json(const ServeJob* j) {
    long long prompt = 0, gen = 0;
    for (int p = 0; p < j->n_prompts; p++) prompt += j->n_prompt[p];
    for (int c = 0; c < j->n_choices; c++) gen += j->choices[c].n_tokens;
    cJSON* u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + gen));
    return u;
}

static cJSON* envelope(const Server* s, const ServeJob* j, const char* object) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", s->cfg.model_name);
    return o;
}

static char* print_free(cJSON* o) {
    char* t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t ? t : xstrdup("{}"); // cJSON only fails when memory ran out
}

// ----------------------------------------------------------------------------
// whole responses

static const char* finish_reason(const ServeChoice* c) {
    return strcmp(c->finish, "cancelled") == 0 ? "stop" : c->finish;
}

static cJSON* completion_choice(const Server* s, const ServeJob* j, int idx) {
    const ServeChoice* c = &j->choices[idx];
    cJSON* ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", idx);
    size_t plen = 0, *pends = j->echo ? xmalloc((size_t)j->n_prompt[c->prompt] * sizeof *pends) : NULL;
    char* ptext = j->echo ? prompt_text(s, j, c->prompt, &plen, pends) : NULL;
    char* text = xmalloc(plen + c->out_len + 1);
    if (plen) memcpy(text, ptext, plen);
    if (c->out_len) memcpy(text + plen, c->slot.text, c->out_len);
    cJSON_AddItemToObject(ch, "text", text_json(text, plen + c->out_len));
    free(text);
    if (j->logprobs >= 0) {
        cJSON* lp = completion_logprobs_new();
        if (j->echo) {
            const ServeEcho* e = j->echo_lp ? &j->echo_lp[c->prompt] : NULL;
            const int k = j->logprobs;
            for (int i = 0; i < j->n_prompt[c->prompt]; i++)
                add_completion_token(s, lp, j->prompts[c->prompt][i], e ? e->lp[i] : NAN,
                                     e ? e->top + (size_t)i * k : NULL, e ? e->top_lp + (size_t)i * k : NULL,
                                     e ? k : 0, i ? pends[i - 1] : 0, i == 0);
        }
        completion_logprobs_add(s, j, c, 0, c->n_out, plen, lp);
        cJSON_AddItemToObject(ch, "logprobs", lp);
    } else {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    free(ptext);
    free(pends);
    cJSON_AddStringToObject(ch, "finish_reason", finish_reason(c));
    cJSON_AddItemToObject(ch, "etx", etx_json(s, j, c));
    return ch;
}

static cJSON* chat_choice(const Server* s, const ServeJob* j, int idx) {
    const ServeChoice* c = &j->choices[idx];
    cJSON* ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", idx);
    cJSON* msg = cJSON_AddObjectToObject(ch, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddItemToObject(msg, "content", text_json(c->slot.text ? c->slot.text : "", c->out_len));
    if (j->logprobs >= 0) cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(s, j, c, 0, c->n_out));
    else cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", finish_reason(c));
    cJSON_AddItemToObject(ch, "etx", etx_json(s, j, c));
    return ch;
}

char* serve_response_json(const Server* s, const ServeJob* j) {
    cJSON* o = envelope(s, j, j->kind == SERVE_CHAT ? "chat.completion" : "text_completion");
    cJSON* choices = cJSON_AddArrayToObject(o, "choices");
    for (int c = 0; c < j->n_choices; c++)
        cJSON_AddItemToArray(choices, j->kind == SERVE_CHAT ? chat_choice(s, j, c) : completion_choice(s, j, c));
    cJSON_AddItemToObject(o, "usage", usage_json(j));
    return print_free(o);
}

char* serve_error_json(int status, const char* msg, const char* param) {
    cJSON* o = cJSON_CreateObject();
    cJSON* e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", status == 401   ? "authentication_error"
                                       : status == 429 ? "rate_limit_error"
                                       : status >= 500 ? "server_error"
                                                       : "invalid_request_error");
    if (param && param[0]) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    cJSON_AddStringToObject(e, "code", code);
    return print_free(o);
}

// ----------------------------------------------------------------------------
// streams

// How far choice c's output may be sent now: all of it once done; before that, not the
// tail that could be the start of a stop string, nor part of a character.
static size_t stream_safe(const ServeJob* j, const ServeChoice* c) {
    if (c->done) return c->out_len;
    const char* t = c->slot.text;
    const size_t len = c->slot.len;
    size_t safe = len;
    for (int k = 0; k < j->n_stops; k++) {
        const size_t sl = strlen(j->stops[k]);
        for (size_t m = sl - 1 < len ? sl - 1 : len; m > 0; m--)
            if (memcmp(t + len - m, j->stops[k], m) == 0) {
                if (len - m < safe) safe = len - m;
                break;
            }
    }
    // back up over an incomplete UTF-8 character at the end
    size_t i = safe;
    int cont = 0;
    while (i > 0 && cont < 3 && ((unsigned char)t[i - 1] & 0xC0) == 0x80) i--, cont++;
    if (i > 0) {
        const unsigned char lead = (unsigned char)t[i - 1];
        const int need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (need > 1 && cont + 1 < need) safe = i - 1;
    }
    return safe < c->sent ? c->sent : safe;
}

static void append(char** buf, size_t* len, const char* s, size_t n) {
    *buf = xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void append_event(char** buf, size_t* len, cJSON* o) {
    char* t = print_free(o);
    append(buf, len, "data: ", 6);
    append(buf, len, t, strlen(t));
    append(buf, len, "\n\n", 2);
    free(t);
}

int serve_stream_events(const Server* s, ServeJob* j, char** buf, size_t* len) {
    const int chat = j->kind == SERVE_CHAT;
    int open = 0;
    for (int idx = 0; idx < j->n_choices; idx++) {
        ServeChoice* c = &j->choices[idx];
        if (c->closed) continue;
        const size_t safe = stream_safe(j, c);
        // tokens whose log-probabilities go out: all of the output once done, before that
        // those wholly inside what is sent
        int upto = c->done ? c->n_out : c->tokens_sent;
        while (!c->done && upto < c->n_tokens && c->ends[upto] <= safe) upto++;
        if (safe == c->sent && upto == c->tokens_sent && !c->done && (c->started || !chat)) {
            open = 1;
            continue;
        }
        cJSON* o = envelope(s, j, chat ? "chat.completion.chunk" : "text_completion");
        cJSON* arr = cJSON_AddArrayToObject(o, "choices");
        cJSON* ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", idx);
        cJSON* delta_text = text_json(c->slot.text ? c->slot.text + c->sent : "", safe - c->sent);
        if (chat) {
            cJSON* d = cJSON_AddObjectToObject(ch, "delta");
            if (!c->started) cJSON_AddStringToObject(d, "role", "assistant");
            cJSON_AddItemToObject(d, "content", delta_text);
        } else {
            cJSON_AddItemToObject(ch, "text", delta_text);
        }
        if (j->logprobs >= 0) {
            if (chat) {
                cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(s, j, c, c->tokens_sent, upto));
            } else {
                cJSON* lp = completion_logprobs_new();
                completion_logprobs_add(s, j, c, c->tokens_sent, upto, 0, lp);
                cJSON_AddItemToObject(ch, "logprobs", lp);
            }
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
        if (c->done) {
            cJSON_AddStringToObject(ch, "finish_reason", finish_reason(c));
            cJSON_AddItemToObject(ch, "etx", etx_json(s, j, c));
        } else {
            cJSON_AddNullToObject(ch, "finish_reason");
        }
        cJSON_AddItemToArray(arr, ch);
        append_event(buf, len, o);
        c->sent = safe;
        c->tokens_sent = upto;
        c->started = 1;
        if (c->done) c->closed = 1;
        else open = 1;
    }
    if (open) return 0;
    if (j->include_usage) {
        cJSON* o = envelope(s, j, chat ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(o, "choices");
        cJSON_AddItemToObject(o, "usage", usage_json(j));
        append_event(buf, len, o);
    }
    append(buf, len, "data: [DONE]\n\n", 14);
    return 1;
}
