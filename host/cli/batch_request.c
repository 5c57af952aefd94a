/*
 * batch_request.c — one request of a batch run (batch_run.h) while it is in flight and
 * when it ends: its tokens decoded to text as they come, the stop strings of --task gsm8k
 * looked for after every token (lm-eval's: the completion ends before the first), and its
 * result line: {"combo" (a sweep's), "id", "completion", "tokens", "finish", ["branching":
 * {"forks", "dropped_tokens", "tree"}], ["error"], "branches", and with --task gsm8k and a
 * reference "score" and "extracted"}. The run's token total counts dropped branches too.
 * The tree (entropy-triggered branching): one entry per fork, in order, {"step", "kept",
 * "branches": [{"token", "score", "tokens"}]}: at generated token `step` the request forked
 * into branches starting with `token` (the most likely candidates, best first), each ran
 * `tokens` tokens and scored its mean log-probability `score`; the completion continues
 * with branch `kept`, so every fork hangs off the completion's own tokens (its parent is
 * the kept path up to `step`).
 */
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_run.h"
#include "common.h"
#include "eval/eval_score.h"
#include "tokenizer/tokenizer.h"

// lm-eval's gsm8k stop sequences (the stop strings of lm-evaluation-harness's gsm8k task config)
static const char* const GSM8K_STOPS[] = {"Question:", "</s>", "<|im_end|>", "\n\n"};
#define GSM8K_N_STOPS 4

static void slot_append(Slot* s, const char* b, size_t n) {
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->text = xrealloc(s->text, s->cap);
    }
    memcpy(s->text + s->len, b, n);
    s->len += n;
    s->text[s->len] = '\0';
}

// Decodes tokens [n_seen, upto) one at a time, looking for the stop strings after each:
// the first token that completes one ends the text (s->stop_tokens), whatever came after
// it in the same engine step (the engine may run several decode steps per call).
void slot_decode_stops(Slot* s, const etx_model* m, const int32_t* toks, int upto, const char* const* stops,
                       int n_stops) {
    for (; s->n_seen < upto && s->stop_at < 0; s->n_seen++) {
        size_t from = s->len;
        const char* b;
        size_t n;
        if (etx_token_bytes(m, toks[s->n_seen], &b, &n).code == ETX_OK) slot_append(s, b, n);
        for (int k = 0; k < n_stops; k++) {
            size_t sl = strlen(stops[k]);
            if (sl == 0) continue;
            size_t start = from >= sl ? from - sl + 1 : 0;
            const char* hit = s->len > start ? memmem(s->text + start, s->len - start, stops[k], sl) : NULL;
            if (hit && (s->stop_at < 0 || hit - s->text < s->stop_at)) s->stop_at = hit - s->text;
        }
        if (s->stop_at >= 0) s->stop_tokens = s->n_seen + 1;
    }
}

void batch_slot_decode(Slot* s, const etx_model* m, const int32_t* toks, int upto, int stops) {
    slot_decode_stops(s, m, toks, upto, GSM8K_STOPS, stops ? GSM8K_N_STOPS : 0);
}

// Valid UTF-8 copy of text[0..n) (bad bytes -> U+FFFD), malloc'ed; *len its length
// (it may hold NUL bytes: a model can generate the byte 0).
char* batch_utf8_clean(const char* text, size_t n, size_t* len) {
    Utf8Stream us = {{0}, 0};
    char* out = xmalloc(UTF8_STREAM_OUT_MAX(n) + 8);
    size_t w = utf8_stream_push(&us, text, n, out);
    w += utf8_stream_flush(&us, out + w);
    out[w] = '\0';
    *len = w;
    return out;
}

// s[0..n) as a JSON string literal with its quotes, malloc'ed. Unlike cJSON's printer it
// takes a length, so a NUL byte becomes \u0000 instead of ending the string early.
char* batch_json_quote(const char* s, size_t n) {
    char* q = xmalloc(6 * n + 3);
    size_t w = 0;
    q[w++] = '"';
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') q[w++] = '\\', q[w++] = (char)c;
        else if (c == '\n') q[w++] = '\\', q[w++] = 'n';
        else if (c == '\r') q[w++] = '\\', q[w++] = 'r';
        else if (c == '\t') q[w++] = '\\', q[w++] = 't';
        else if (c < 0x20) w += (size_t)snprintf(q + w, 7, "\\u%04x", c);
        else q[w++] = (char)c;
    }
    q[w++] = '"';
    q[w] = '\0';
    return q;
}

void batch_sample_view(const Slot* s, const etx_request_state* rs, int n_recs, SampleView* v) {
    v->finish = rs->phase == ETX_REQ_DONE_LENGTH             ? "length"
                : rs->phase == ETX_REQ_FAILED                  ? "error"
                : rs->phase == ETX_REQ_DONE_LOW_CONFIDENCE     ? "low_confidence"
                                                               : "stop";
    size_t keep = s->len;
    if (s->stop_at >= 0) v->finish = "stop_string", keep = (size_t)s->stop_at;
    // tokens past the one that completed a stop string are not part of the result
    v->n_tokens = s->stop_tokens > 0 && s->stop_tokens < rs->n_tokens ? s->stop_tokens : rs->n_tokens;
    v->n_recs = n_recs > v->n_tokens ? v->n_tokens : n_recs;
    v->completion = batch_utf8_clean(s->text ? s->text : "", keep, &v->completion_len);
}

void batch_add_branches(cJSON* o, const int* per, Totals* t) {
    cJSON* br = cJSON_AddObjectToObject(o, "branches");
    for (int b = 0; b < ETX_BRANCH_COUNT; b++) {
        if (!per[b]) continue;
        cJSON_AddNumberToObject(br, etx_branch_name((etx_branch)b), per[b]);
        t->branches[b] += per[b];
    }
}

// ----------------------------------------------------------------------------
// --trace: the per-token records of a result, as columns

typedef struct {
    char* p;
    size_t n, cap;
} TraceBuf;

static void tb_put(TraceBuf* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_put(TraceBuf* b, const char* fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w >= 0 && (size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        b->cap = 2 * b->cap + (w > 0 ? (size_t)w : 64);
        b->p = xrealloc(b->p, b->cap);
    }
}

static void tb_float(TraceBuf* b, float v) {
    if (isfinite(v)) tb_put(b, "%.9g", (double)v); // 9 digits: the float's exact value reads back
    else tb_put(b, "null");
}

// One column: "name":[v_0,...]; field(r) the float of record r.
#define TB_COLUMN(b, name, recs, n, expr)                                                                     \
    do {                                                                                                      \
        tb_put(b, ",\"%s\":[", name);                                                                        \
        for (int i_ = 0; i_ < (n); i_++) {                                                                    \
            const etx_trace_record* r = &(recs)[i_];                                                          \
            if (i_) tb_put(b, ",");                                                                           \
            tb_float(b, (expr));                                                                              \
        }                                                                                                     \
        tb_put(b, "]");                                                                                       \
    } while (0)

char* batch_trace_json(const etx_trace_record* recs, int n, int32_t prev0, int32_t pause) {
    TraceBuf b = {xmalloc(4096), 0, 4096};
    tb_put(&b, "{\"token\":[");
    for (int i = 0; i < n; i++) tb_put(&b, "%s%d", i ? "," : "", (int)recs[i].token);
    tb_put(&b, "],\"branch\":[");
    for (int i = 0; i < n; i++) tb_put(&b, "%s\"%s\"", i ? "," : "", etx_branch_name(recs[i].branch));
    tb_put(&b, "],\"action\":[");
    for (int i = 0; i < n; i++) tb_put(&b, "%s%d", i ? "," : "", recs[i].action);
    tb_put(&b, "],\"after_pause\":[");
    for (int i = 0; i < n; i++) { // the learned policy's feature 12 (hostdev/policy_learned.h)
        const int32_t prev = i ? recs[i - 1].token : prev0;
        tb_put(&b, "%s%d", i ? "," : "", pause >= 0 && prev == pause);
    }
    tb_put(&b, "]");
    TB_COLUMN(&b, "action_logprob", recs, n, r->action_logprob);
    TB_COLUMN(&b, "logprob", recs, n, r->logprob);
    TB_COLUMN(&b, "entropy", recs, n, r->entropy);
    TB_COLUMN(&b, "varentropy", recs, n, r->varentropy);
    TB_COLUMN(&b, "attn_entropy", recs, n, r->attn_entropy);
    TB_COLUMN(&b, "attn_varentropy", recs, n, r->attn_varentropy);
    TB_COLUMN(&b, "agreement", recs, n, r->agreement);
    TB_COLUMN(&b, "interaction", recs, n, r->interaction);
    TB_COLUMN(&b, "confidence", recs, n, r->confidence);
    TB_COLUMN(&b, "temperature", recs, n, r->temperature);
    tb_put(&b, ",\"top_logprobs\":[");
    for (int i = 0; i < n; i++) {
        tb_put(&b, "%s[", i ? "," : "");
        for (int j = 0; j < ETX_TRACE_TOP; j++) {
            if (j) tb_put(&b, ",");
            tb_float(&b, recs[i].top_logprobs[j]);
        }
        tb_put(&b, "]");
    }
    tb_put(&b, "]}");
    return b.p;
}

void batch_report_error(const EvalArgs* a, const Item* it, const char* error) {
    char* id = cJSON_PrintUnformatted(it->id);
    fprintf(stderr, "etx %s: id %s failed: %s\n", a->command, id ? id : "?", error);
    cJSON_free(id);
}

char* batch_line_of(cJSON* o) {
    char* js = cJSON_PrintUnformatted(o);
    size_t n = strlen(js);
    char* line = xmalloc(n + 2);
    memcpy(line, js, n);
    line[n] = '\n', line[n + 1] = '\0';
    cJSON_free(js);
    cJSON_Delete(o);
    return line;
}

// The "branching" object of a finished request with entropy-triggered branching: its
// forks, the tokens of the branches it did not keep, and its tree (the file comment).
void batch_add_branching(cJSON* o, const Slot* s) {
    cJSON* bo = cJSON_AddObjectToObject(o, "branching");
    cJSON_AddNumberToObject(bo, "forks", s->n_forks);
    cJSON_AddNumberToObject(bo, "dropped_tokens", s->dropped_tokens);
    cJSON* tree = cJSON_AddArrayToObject(bo, "tree");
    for (int f = 0; f < s->n_forks; f++) {
        const etx_branch_event* ev = &s->forks[f];
        cJSON* fo = cJSON_CreateObject();
        cJSON_AddNumberToObject(fo, "step", ev->step);
        cJSON_AddNumberToObject(fo, "kept", ev->kept);
        cJSON* brs = cJSON_AddArrayToObject(fo, "branches");
        for (int j = 0; j < ev->n_branches; j++) {
            cJSON* bj = cJSON_CreateObject();
            cJSON_AddNumberToObject(bj, "token", ev->candidates[j]);
            cJSON_AddNumberToObject(bj, "score", ev->scores[j]);
            cJSON_AddNumberToObject(bj, "tokens", ev->tokens[j]);
            cJSON_AddItemToArray(brs, bj);
        }
        cJSON_AddItemToArray(tree, fo);
    }
}

// The output line of a finished request (with '\n'), malloc'ed; totals updated.
char* batch_result_line(const EvalArgs* a, const Item* it, const BatchJob* jb, const Slot* s,
                        const etx_request_state* rs, const etx_trace_record* recs, int n_recs, Totals* t) {
    const int combo = jb->combo;
    SampleView v;
    batch_sample_view(s, rs, n_recs, &v);
    cJSON* o = cJSON_CreateObject();
    if (combo >= 0) cJSON_AddNumberToObject(o, "combo", combo);
    cJSON_AddItemToObject(o, "id", cJSON_Duplicate(it->id, 1));
    char* quoted = batch_json_quote(v.completion, v.completion_len);
    cJSON_AddRawToObject(o, "completion", quoted);
    free(quoted);
    cJSON_AddNumberToObject(o, "tokens", v.n_tokens);
    cJSON_AddStringToObject(o, "finish", v.finish);
    if (a->branching.n_branches) { // the forks, and what the branches not kept cost
        batch_add_branching(o, s);
        t->tokens += s->dropped_tokens;
    }
    if (rs->phase == ETX_REQ_FAILED) { // in the line, and on stderr with the line's id
        cJSON_AddStringToObject(o, "error", rs->error);
        batch_report_error(a, it, rs->error);
    }
    int per[ETX_BRANCH_COUNT] = {0};
    for (int i = 0; i < v.n_recs; i++) per[recs[i].branch]++;
    batch_add_branches(o, per, t);
    if (a->trace) {
        char* tr = batch_trace_json(recs, v.n_recs, it->ids[it->n_ids - 1], jb->pause);
        cJSON_AddRawToObject(o, "trace", tr);
        free(tr);
    }
    if (it->reference && a->task && strcmp(a->task, "gsm8k") == 0) {
        Gsm8kScore sc;
        gsm8k_score(v.completion, it->reference, &sc);
        cJSON* so = cJSON_AddObjectToObject(o, "score");
        cJSON_AddNumberToObject(so, "strict", sc.strict_ok);
        cJSON_AddNumberToObject(so, "flexible", sc.flexible_ok);
        cJSON* ex = cJSON_AddObjectToObject(o, "extracted");
        if (sc.has_strict) cJSON_AddStringToObject(ex, "strict", sc.strict);
        else cJSON_AddNullToObject(ex, "strict");
        if (sc.has_flexible) cJSON_AddStringToObject(ex, "flexible", sc.flexible);
        else cJSON_AddNullToObject(ex, "flexible");
        cJSON_AddStringToObject(ex, "reference", sc.reference);
        t->scored++, t->strict += sc.strict_ok, t->flexible += sc.flexible_ok;
        t->pass1 += sc.flexible_ok, t->passn += sc.flexible_ok;
    }
    t->tokens += v.n_tokens;
    t->done++;
    free(v.completion);
    return batch_line_of(o);
}
