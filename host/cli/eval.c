/*
 * eval.c — `etx eval`: every request of a JSONL file through one engine, results to a
 * JSONL file in input order, optionally scored (GSM8K as lm-evaluation-harness does it).
 *
 * Input lines: {"id": str|int, "prompt": "..."} or {"id", "messages": [{"role",
 * "content"}, ...]}, optionally "answer" or "reference". At most --batch requests are in
 * the engine at once, refilled as they finish; each request's random key is its line
 * index, so its tokens do not depend on the batch or on the rank that ran it. Stop
 * strings (--task gsm8k: "Question:", "</s>", "<|im_end|>", "\n\n") are found in the
 * decoded text after every step; the completion ends before the first one.
 *
 * Resume: ids already in the output file are skipped and new lines appended. Under
 * mpirun each rank runs lines i with i % size == rank and rank 0 writes the merged file
 * (eval_par.c), identical to a one-process run.
 *
 * The reader, the request runner (eval_run_jobs: any list of (line, policy) jobs) and
 * the rank merge are shared with `etx sweep` (sweep.c) through eval.h.
 */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "eval.h"
#include "eval/eval_score.h"
#include "tokenizer/tokenizer.h"

// lm-eval's gsm8k stop sequences (oe_eval gsm8k config; research/performance-anchors.md §6)
static const char* const GSM8K_STOPS[] = {"Question:", "</s>", "<|im_end|>", "\n\n"};
#define GSM8K_N_STOPS 4

// "s:<string>" or "n:<integer>"; NULL when id is neither a string nor an integer.
char* eval_id_key(const cJSON* id) {
    char buf[64];
    if (cJSON_IsString(id)) {
        size_t n = strlen(id->valuestring);
        char* k = xmalloc(n + 3);
        memcpy(k, "s:", 2);
        memcpy(k + 2, id->valuestring, n + 1);
        return k;
    }
    if (cJSON_IsNumber(id) && id->valuedouble == floor(id->valuedouble) && fabs(id->valuedouble) < 9e15) {
        snprintf(buf, sizeof buf, "n:%.0f", id->valuedouble);
        return xstrdup(buf);
    }
    return NULL;
}

// ----------------------------------------------------------------------------
// input

static void bad_line(const EvalArgs* a, const EvalPar* par, int line, const char* fmt, const char* detail) {
    if (par->rank != 0) return;
    fprintf(stderr, "etx %s: %s:%d: ", a->command, a->data, line);
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
}

static int find_key(const Item* items, int n, const char* key) {
    for (int i = 0; i < n; i++)
        if (strcmp(items[i].key, key) == 0) return i;
    return -1;
}

// The prompt tokens of one line: plain text (BOS as the model's tokenizer does) or chat
// messages rendered with the template and the assistant header. NULL message = ok.
static const char* line_prompt(const etx_model* m, const etx_model_info* info, const cJSON* root, Item* it,
                               char* msg, size_t cap) {
    const cJSON* prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON* msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    etx_status st;
    if (cJSON_IsString(prompt)) {
        st = etx_tokenize(m, prompt->valuestring, strlen(prompt->valuestring), info->add_bos, &it->ids, &it->n_ids);
    } else if (cJSON_IsArray(msgs) && cJSON_GetArraySize(msgs) > 0) {
        int n = cJSON_GetArraySize(msgs), k = 0;
        etx_chat_message* cm = xcalloc((size_t)n, sizeof *cm);
        const cJSON* e;
        cJSON_ArrayForEach(e, msgs) {
            const cJSON* role = cJSON_GetObjectItemCaseSensitive(e, "role");
            const cJSON* content = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
                free(cm);
                return "\"messages\" entries need string \"role\" and \"content\"";
            }
            cm[k++] = (etx_chat_message){role->valuestring, content->valuestring};
        }
        char* text = NULL;
        st = etx_chat_format(m, cm, n, 1, &text);
        if (st.code == ETX_OK) st = etx_tokenize(m, text, strlen(text), 0, &it->ids, &it->n_ids);
        free(text);
        free(cm);
    } else {
        return "neither a \"prompt\" string nor a \"messages\" array";
    }
    if (st.code != ETX_OK) {
        snprintf(msg, cap, "%s", st.message);
        return msg;
    }
    return it->n_ids == 0 ? "the prompt is empty after tokenization" : NULL;
}

// Reads the data file: the first `limit` good lines (0: all). Bad lines are reported
// (rank 0) and counted in *n_bad. Returns 0, or -1 when the file cannot be read.
int eval_read_items(const EvalArgs* a, const EvalPar* par, const etx_model* m, int ctx, Item** out, int* n_out,
                    int* n_bad) {
    char* data = NULL;
    size_t len = 0;
    etx_status st = etx_read_file(a->data, &data, &len);
    if (st.code != ETX_OK) {
        if (par->rank == 0) cli_error(a->command, st);
        return -1;
    }
    etx_model_info info;
    etx_model_get_info(m, &info);
    Item* items = NULL;
    int n = 0, line = 0;
    *n_bad = 0;
    for (size_t pos = 0; pos < len && (a->limit <= 0 || n < a->limit);) {
        const char* nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        const char* s = data + pos;
        size_t sl = end - pos;
        pos = end + 1;
        line++;
        while (sl > 0 && (s[sl - 1] == '\r' || s[sl - 1] == ' ' || s[sl - 1] == '\t')) sl--;
        if (sl == 0) continue; // blank lines are not requests
        Item it = {.line = line};
        char msg[ETX_MSG_LEN], idbuf[80];
        it.root = cJSON_ParseWithLength(s, sl);
        const char* err = NULL;
        if (!it.root || !cJSON_IsObject(it.root)) err = "not a JSON object";
        else if (!(it.id = cJSON_GetObjectItemCaseSensitive(it.root, "id")) || !(it.key = eval_id_key(it.id)))
            err = "no \"id\" (a string or an integer)";
        if (!err) {
            int dup = find_key(items, n, it.key);
            if (dup >= 0) {
                snprintf(idbuf, sizeof idbuf, "duplicate id %.40s (first on line %d)", it.key + 2, items[dup].line);
                err = idbuf;
            }
        }
        if (!err) {
            const cJSON* ref = cJSON_GetObjectItemCaseSensitive(it.root, "answer");
            if (!ref) ref = cJSON_GetObjectItemCaseSensitive(it.root, "reference");
            if (cJSON_IsString(ref)) it.reference = ref->valuestring;
            else if (ref) err = "\"answer\"/\"reference\" must be a string";
        }
        if (!err) err = line_prompt(m, &info, it.root, &it, msg, sizeof msg);
        if (!err && it.n_ids >= ctx) {
            snprintf(msg, sizeof msg, "the prompt has %d tokens but the context holds %d (--ctx)", it.n_ids, ctx);
            err = msg;
        }
        if (err) {
            bad_line(a, par, line, "%s", err);
            (*n_bad)++;
            cJSON_Delete(it.root);
            free(it.key);
            free(it.ids);
            continue;
        }
        items = xrealloc(items, (size_t)(n + 1) * sizeof *items);
        items[n++] = it;
    }
    free(data);
    *out = items;
    *n_out = n;
    return 0;
}

void eval_free_items(Item* items, int n) {
    for (int i = 0; i < n; i++) {
        cJSON_Delete(items[i].root);
        free(items[i].key);
        free(items[i].ids);
    }
    free(items);
}

// ----------------------------------------------------------------------------
// one request in flight

typedef struct {
    int item;      // index in items, -1 = free slot
    int req;       // engine request id
    char* text;    // decoded bytes so far
    size_t len, cap;
    int n_seen;    // tokens already decoded
    int n_counted; // tokens already counted for the progress bar
    long stop_at;  // offset of the first stop string, -1 = none
    int stop_tokens; // tokens up to the one that completed the first stop string (0 = none)
} Slot;

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
static void slot_decode(Slot* s, const etx_model* m, const int32_t* toks, int upto, int stops) {
    for (; s->n_seen < upto && s->stop_at < 0; s->n_seen++) {
        size_t from = s->len;
        const char* b;
        size_t n;
        if (etx_token_bytes(m, toks[s->n_seen], &b, &n).code == ETX_OK) slot_append(s, b, n);
        if (!stops) continue;
        for (int k = 0; k < GSM8K_N_STOPS; k++) {
            size_t sl = strlen(GSM8K_STOPS[k]);
            size_t start = from >= sl ? from - sl + 1 : 0;
            const char* hit = s->len > start ? memmem(s->text + start, s->len - start, GSM8K_STOPS[k], sl) : NULL;
            if (hit && (s->stop_at < 0 || hit - s->text < s->stop_at)) s->stop_at = hit - s->text;
        }
        if (s->stop_at >= 0) s->stop_tokens = s->n_seen + 1;
    }
}

// Valid UTF-8 copy of text[0..n) (bad bytes -> U+FFFD), malloc'ed.
static char* utf8_clean(const char* text, size_t n) {
    Utf8Stream us = {{0}, 0};
    char* out = xmalloc(UTF8_STREAM_OUT_MAX(n) + 8);
    size_t w = utf8_stream_push(&us, text, n, out);
    w += utf8_stream_flush(&us, out + w);
    out[w] = '\0';
    return out;
}

// The output line of a finished request (with '\n'), malloc'ed; totals updated.
static char* result_line(const EvalArgs* a, const Item* it, int combo, Slot* s, const etx_request_state* rs,
                         const etx_trace_record* recs, int n_recs, Totals* t) {
    const char* finish = rs->phase == ETX_REQ_DONE_LENGTH ? "length" : rs->phase == ETX_REQ_FAILED ? "error" : "stop";
    size_t keep = s->len;
    if (s->stop_at >= 0) finish = "stop_string", keep = (size_t)s->stop_at;
    // tokens past the one that completed a stop string are not part of the result
    const int n_tokens = s->stop_tokens > 0 && s->stop_tokens < rs->n_tokens ? s->stop_tokens : rs->n_tokens;
    if (n_recs > n_tokens) n_recs = n_tokens;
    char* completion = utf8_clean(s->text ? s->text : "", keep);
    cJSON* o = cJSON_CreateObject();
    if (combo >= 0) cJSON_AddNumberToObject(o, "combo", combo);
    cJSON_AddItemToObject(o, "id", cJSON_Duplicate(it->id, 1));
    cJSON_AddStringToObject(o, "completion", completion);
    cJSON_AddNumberToObject(o, "tokens", n_tokens);
    cJSON_AddStringToObject(o, "finish", finish);
    if (rs->phase == ETX_REQ_FAILED) cJSON_AddStringToObject(o, "error", rs->error);
    int per[ETX_BRANCH_COUNT] = {0};
    for (int i = 0; i < n_recs; i++) per[recs[i].branch]++;
    cJSON* br = cJSON_AddObjectToObject(o, "branches");
    for (int b = 0; b < ETX_BRANCH_COUNT; b++) {
        if (!per[b]) continue;
        cJSON_AddNumberToObject(br, etx_branch_name((etx_branch)b), per[b]);
        t->branches[b] += per[b];
    }
    if (it->reference && a->task && strcmp(a->task, "gsm8k") == 0) {
        Gsm8kScore sc;
        gsm8k_score(completion, it->reference, &sc);
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
    }
    t->tokens += n_tokens;
    t->done++;
    char* js = cJSON_PrintUnformatted(o);
    size_t n = strlen(js);
    char* line = xmalloc(n + 2);
    memcpy(line, js, n);
    line[n] = '\n', line[n + 1] = '\0';
    cJSON_free(js);
    cJSON_Delete(o);
    free(completion);
    return line;
}

// ----------------------------------------------------------------------------
// the run

// "[=====     ] 12/20 requests  85.3 tok/s  ETA 0:42" (tokens: generated so far, all requests)
static void progress(int done, long tokens, int total, double t0) {
    double el = etx_now_s() - t0;
    int width = 30, fill = total ? done * width / total : width;
    double rate = el > 0 ? (double)tokens / el : 0;
    double eta = done > 0 ? el * (total - done) / done : 0;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++) fputc(i < fill ? '=' : ' ', stderr);
    fprintf(stderr, "] %d/%d requests  %.1f tok/s  ETA %d:%02d ", done, total, rate, (int)eta / 60, (int)eta % 60);
    fflush(stderr);
}

static int write_ready(Writer* w, int n_mine) {
    while (w->f && w->n_written < n_mine && w->lines[w->n_written]) {
        if (fputs(w->lines[w->n_written], w->f) == EOF) return -1;
        w->n_written++;
    }
    if (w->f && fflush(w->f) != 0) return -1;
    return 0;
}

// Runs this rank's jobs[0..n_mine) (eval.h), filling w->lines.
int eval_run_jobs(const EvalArgs* a, const EvalPar* par, const etx_model* m, etx_engine* e, const Item* items,
                  const EvalJob* jobs, int n_mine, Writer* w, Totals* t, double* busy) {
    const int stops = a->task && strcmp(a->task, "gsm8k") == 0;
    const int show = par->rank == 0 && (a->progress || isatty(2));
    Slot* slots = xcalloc((size_t)a->batch, sizeof *slots);
    for (int i = 0; i < a->batch; i++) slots[i].item = -1;
    int next = 0, active = 0, rc = 0, jobs_done = 0;
    long tokens = 0;
    const double t0 = etx_now_s();
    double shown = 0;
    while ((next < n_mine || active > 0) && rc == 0) {
        for (int i = 0; i < a->batch && next < n_mine; i++) {
            if (slots[i].item >= 0) continue;
            const EvalJob* jb = &jobs[next];
            const Item* it = &items[jb->item];
            etx_request req = {.prompt = it->ids, .n_prompt = it->n_ids, .policy = jb->policy ? *jb->policy : a->policy,
                               .max_tokens = a->max_tokens, .key = (uint64_t)(it->line - 1)};
            etx_status st = etx_engine_submit(e, &req, &slots[i].req);
            if (st.code != ETX_OK) {
                cli_error(a->command, st);
                rc = -1;
                break;
            }
            slots[i] = (Slot){.item = next++, .req = slots[i].req, .stop_at = -1};
            active++;
        }
        if (rc) break;
        const double ts = etx_now_s();
        etx_status st = etx_engine_step(e, NULL);
        const double dt = etx_now_s() - ts;
        // the step's time, shared equally by the requests in it
        for (int i = 0; busy && active > 0 && i < a->batch; i++)
            if (slots[i].item >= 0) busy[jobs[slots[i].item].combo > 0 ? jobs[slots[i].item].combo : 0] += dt / active;
        if (st.code != ETX_OK) {
            cli_error(a->command, st);
            rc = -1;
            break;
        }
        for (int i = 0; i < a->batch; i++) {
            Slot* s = &slots[i];
            if (s->item < 0) continue;
            etx_request_state rs;
            etx_engine_request_state(e, s->req, &rs);
            tokens += rs.n_tokens - s->n_counted;
            s->n_counted = rs.n_tokens;
            // a final EOS/end-of-turn token is not part of the text
            int upto = rs.phase == ETX_REQ_DONE_STOP && s->stop_at < 0 ? rs.n_tokens - 1 : rs.n_tokens;
            slot_decode(s, m, rs.tokens, upto, stops);
            if (s->stop_at >= 0 && rs.phase == ETX_REQ_RUNNING) {
                etx_engine_cancel(e, s->req);
                etx_engine_request_state(e, s->req, &rs);
            }
            if (rs.phase == ETX_REQ_RUNNING || rs.phase == ETX_REQ_QUEUED) continue;
            const etx_trace_record* recs = NULL;
            int n_recs = 0;
            etx_engine_trace(e, s->req, &recs, &n_recs);
            const EvalJob* jb = &jobs[s->item];
            const int c = jb->combo > 0 ? jb->combo : 0;
            w->lines[s->item] = result_line(a, &items[jb->item], jb->combo, s, &rs, recs, n_recs, &t[c]);
            etx_engine_release(e, s->req);
            free(s->text);
            *s = (Slot){.item = -1};
            active--;
            jobs_done++;
        }
        if (write_ready(w, n_mine) != 0) {
            fprintf(stderr, "etx %s: writing %s failed: %s\n", a->command, a->out, strerror(errno));
            rc = -1;
        }
        if (show && (etx_now_s() - shown > 0.25 || (next == n_mine && active == 0))) {
            progress(jobs_done, tokens, n_mine, t0);
            shown = etx_now_s();
        }
    }
    if (show) fputc('\n', stderr);
    for (int i = 0; i < a->batch; i++) free(slots[i].text);
    free(slots);
    return rc;
}

static void summary(const EvalArgs* a, const Totals* t, double secs, int n_skipped, int n_bad) {
    fprintf(stderr, "etx eval: %d requests run, %d already in %s, %d bad lines skipped\n", (int)t->done, n_skipped,
            a->out, n_bad);
    if (t->scored > 0)
        fprintf(stderr, "etx eval: accuracy strict %.4f (%d/%d), flexible %.4f (%d/%d)\n", t->strict / t->scored,
                (int)t->strict, (int)t->scored, t->flexible / t->scored, (int)t->flexible, (int)t->scored);
    fprintf(stderr, "etx eval: %d tokens in %.1f s (%.1f tok/s)\n", (int)t->tokens, secs,
            secs > 0 ? t->tokens / secs : 0.0);
    if (t->tokens <= 0) return;
    fprintf(stderr, "etx eval: branches:");
    for (int b = 0; b < ETX_BRANCH_COUNT; b++)
        if (t->branches[b] > 0)
            fprintf(stderr, " %s %.1f%%", etx_branch_name((etx_branch)b), 100.0 * t->branches[b] / t->tokens);
    fputc('\n', stderr);
}

// Opens the output for appending after its last good line (a truncated line dropped).
FILE* eval_open_output(const char* path, const EvalDone* done) {
    FILE* f = fopen(path, done->good_len > 0 || done->dropped ? "r+b" : "wb");
    if (!f) return NULL;
    if ((done->good_len > 0 || done->dropped) &&
        (ftruncate(fileno(f), (off_t)done->good_len) != 0 || fseek(f, (long)done->good_len, SEEK_SET) != 0)) {
        fclose(f);
        return NULL;
    }
    return f;
}

// Rank 0 writes every rank's lines in input order: item j of the pending list came
// from rank j % size, as the next line of that rank's buffer.
int eval_merge_write(const EvalArgs* a, const EvalPar* par, const EvalDone* done, const char* all,
                     const size_t* lens, int n_pending) {
    FILE* f = eval_open_output(a->out, done);
    if (!f) return -1;
    size_t* at = xcalloc((size_t)par->size, sizeof(size_t));
    size_t base = 0;
    for (int r = 0; r < par->size; r++) at[r] = base, base += lens[r];
    int rc = 0;
    for (int j = 0; j < n_pending && rc == 0; j++) {
        int r = j % par->size;
        const char* s = all + at[r];
        const char* nl = memchr(s, '\n', base - at[r]);
        if (!nl) rc = -1;
        else if (fwrite(s, 1, (size_t)(nl - s + 1), f) != (size_t)(nl - s + 1)) rc = -1;
        else at[r] += (size_t)(nl - s + 1);
    }
    free(at);
    if (fclose(f) != 0) rc = -1;
    return rc;
}

int eval_run_and_write(const EvalArgs* a, const EvalPar* par, const etx_model* m, etx_engine* e, const Item* items,
                       const EvalJob* jobs, int n_mine, int n_jobs, const EvalDone* done, Totals* t, double* busy) {
    Writer w = {0};
    char* all = NULL;
    size_t* lens = xcalloc((size_t)par->size, sizeof(size_t));
    w.lines = xcalloc((size_t)n_mine + 1, sizeof(char*));
    int ok = 0;
    if (!par->mpi) {
        w.f = eval_open_output(a->out, done);
        if (!w.f) {
            fprintf(stderr, "etx %s: cannot write %s: %s\n", a->command, a->out, strerror(errno));
            goto out;
        }
    }
    ok = eval_run_jobs(a, par, m, e, items, jobs, n_mine, &w, t, busy) == 0;
    if (w.f) {
        ok &= fclose(w.f) == 0;
        w.f = NULL;
    }
    ok = eval_par_all_ok(par, ok);
    if (ok && par->mpi) { // merge on rank 0
        size_t len = 0;
        for (int i = 0; i < n_mine; i++) len += strlen(w.lines[i]);
        char* buf = xmalloc(len + 1);
        size_t at = 0;
        for (int i = 0; i < n_mine; i++) {
            size_t n = strlen(w.lines[i]);
            memcpy(buf + at, w.lines[i], n);
            at += n;
        }
        ok = eval_par_gather(par, buf, len, &all, lens) == 0;
        free(buf);
        if (ok && par->rank == 0 && eval_merge_write(a, par, done, all, lens, n_jobs) != 0) {
            fprintf(stderr, "etx %s: writing %s failed: %s\n", a->command, a->out, strerror(errno));
            ok = 0;
        }
        ok = eval_par_all_ok(par, ok);
    }
out:
    if (w.f) fclose(w.f);
    for (int i = 0; i < n_mine; i++) free(w.lines[i]);
    free(w.lines);
    free(all);
    free(lens);
    return ok ? 0 : -1;
}

static int eval_run(const EvalArgs* a, const EvalPar* par) {
    etx_engine_options eo = etx_engine_options_default();
    if (cli_parse_device(a->device, &eo.device) != 0) return 2;
    eo.n_threads = a->threads;
    eo.max_seq_len = a->ctx;
    eo.max_batch = a->batch;
    eo.trace = 1; // the branch of every token
    EvalDone done;
    if (eval_done_read(a->out, &done) != 0) {
        if (par->rank == 0) fprintf(stderr, "etx eval: cannot read %s: %s\n", a->out, strerror(errno));
        return 1;
    }
    if (done.dropped && par->rank == 0)
        fprintf(stderr, "etx eval: warning: %s ends in a truncated line; it is dropped and rerun\n", a->out);
    etx_model* m = cli_load_model(cli_model_path(a->model));
    if (!eval_par_all_ok(par, m != NULL)) {
        etx_model_free(m);
        eval_done_free(&done);
        return 1;
    }
    etx_model_info info;
    etx_model_get_info(m, &info);
    int ctx = a->ctx > 0 ? a->ctx : info.max_seq_len < 4096 ? info.max_seq_len : 4096;
    Item* items = NULL;
    int n_items = 0, n_bad = 0, rc = 1, n_pending = 0, n_mine = 0, n_skipped = 0;
    EvalJob* mine = NULL;
    etx_engine* e = NULL;
    int ok = eval_read_items(a, par, m, ctx, &items, &n_items, &n_bad) == 0;
    if (!eval_par_all_ok(par, ok)) goto out;
    if (n_bad > 0 && strcmp(a->on_bad, "fail") == 0) {
        if (par->rank == 0) fprintf(stderr, "etx eval: %d bad lines in %s; nothing run (--on-bad-line fail)\n", n_bad, a->data);
        rc = 2;
        goto out;
    }
    // the pending requests, and this rank's share of them
    mine = xcalloc((size_t)n_items + 1, sizeof *mine);
    for (int i = 0; i < n_items; i++) {
        if (eval_done_has(&done, items[i].key)) {
            n_skipped++;
            continue;
        }
        if (n_pending++ % par->size == par->rank) mine[n_mine++] = (EvalJob){.item = i, .combo = -1, .policy = NULL};
    }
    etx_status st = etx_engine_create(m, &eo, &e);
    if (!eval_par_all_ok(par, st.code == ETX_OK)) {
        if (st.code != ETX_OK) cli_error("eval", st);
        goto out;
    }
    Totals t;
    memset(&t, 0, sizeof t);
    const double t0 = etx_now_s();
    if (eval_run_and_write(a, par, m, e, items, mine, n_mine, n_pending, &done, &t, NULL) != 0) goto out;
    double secs = etx_now_s() - t0;
    eval_par_sum(par, (double*)&t, TOTALS_N);
    if (par->rank == 0) summary(a, &t, secs, n_skipped, n_bad);
    rc = 0;
out:
    free(mine);
    eval_free_items(items, n_items);
    etx_engine_free(e);
    etx_model_free(m);
    eval_done_free(&done);
    return rc;
}

int cmd_eval(int argc, char** argv) {
    EvalArgs a = {.command = "eval", .on_bad = "skip", .batch = 8, .max_tokens = 256};
    const char* policy = NULL;
    const char* policy_file = NULL;
    CliOpt fixed[] = {
        {"--model", "-m", OPT_STRING, &a.model, "PATH", "model directory or .gguf (default: $ETX_MODEL, else SmolLM2-135M-Instruct)", 0},
        {"--data", NULL, OPT_STRING, &a.data, "FILE", "input JSONL: {\"id\", \"prompt\" | \"messages\", [\"answer\"]} per line", 0},
        {"--out", "-o", OPT_STRING, &a.out, "FILE", "output JSONL (appended to: ids already there are skipped)", 0},
        {"--task", NULL, OPT_STRING, &a.task, "NAME", "gsm8k: lm-eval's stop strings and GSM8K scoring (default: none)", 0},
        {"--limit", NULL, OPT_INT, &a.limit, "N", "only the first N requests of the file (default: all)", 0},
        {"--batch", NULL, OPT_INT, &a.batch, "N", "requests in the engine at once (default 8)", 0},
        {"--max-tokens", "-n", OPT_INT, &a.max_tokens, "N", "tokens to generate per request (default 256)", 0},
        {"--on-bad-line", NULL, OPT_STRING, &a.on_bad, "MODE", "skip (report and go on, default) | fail (run nothing)", 0},
        {"--progress", NULL, OPT_FLAG, &a.progress, NULL, "progress bar on stderr even when it is not a terminal", 0},
        {"--threads", "-t", OPT_INT, &a.threads, "N", "CPU threads per process (default: all cores)", 0},
        {"--ctx", NULL, OPT_INT, &a.ctx, "N", "context length, prompt + generated (default min(model's, 4096))", 0},
        {"--device", NULL, OPT_STRING, &a.device, "DEV", "auto | cpu | cuda (default auto)", 0},
        {"--policy", NULL, OPT_STRING, &policy, "NAME",
         "greedy | sample | entropix (default greedy; sample when a sampling option is given, entropix when an "
         "entropix parameter is)", 0},
        {"--policy-file", NULL, OPT_STRING, &policy_file, "FILE",
         "JSON policy {\"policy\": \"entropix\", \"<parameter>\": value, ...}; flags override it", 0},
    };
    CliPolicyOpts po;
    if (cli_policy_opts_build(&po, fixed, (int)(sizeof fixed / sizeof fixed[0])) != 0) return 1;
    CliCommand cmd = {"eval", "[-m MODEL] --data FILE.jsonl --out RESULTS.jsonl [options]",
                      "Runs every request of a JSONL file through one engine and writes one result line each, in "
                      "input order;\nunder mpirun the requests are split over the ranks and rank 0 writes the merged "
                      "file.", po.opts, po.n_opts};
    int rc = 2;
    int pr = cli_parse(&cmd, argc, argv);
    if (pr) {
        rc = pr > 0 ? 0 : 2;
        goto done;
    }
    if (!a.data || !a.out) {
        fprintf(stderr, "etx eval: --data FILE and --out FILE are required\n");
        goto done;
    }
    if (a.task && strcmp(a.task, "gsm8k") != 0) {
        fprintf(stderr, "etx eval: unknown task '%s' (expected gsm8k)\n", a.task);
        goto done;
    }
    if (strcmp(a.on_bad, "skip") != 0 && strcmp(a.on_bad, "fail") != 0) {
        fprintf(stderr, "etx eval: --on-bad-line must be skip or fail (got '%s')\n", a.on_bad);
        goto done;
    }
    if (a.batch < 1 || a.max_tokens < 1 || a.limit < 0) {
        fprintf(stderr, "etx eval: --batch and --max-tokens must be >= 1, --limit >= 0\n");
        goto done;
    }
    if (cli_policy_resolve("eval", &po, policy, policy_file, &a.policy) != 0) goto done;
    EvalPar par;
    eval_par_init(&par, &argc, &argv);
    rc = eval_run(&a, &par);
    eval_par_finalize(&par);
done:
    cli_policy_opts_free(&po);
    return rc;
}
