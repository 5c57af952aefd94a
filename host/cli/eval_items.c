/*
 * eval_items.c — the requests of `etx eval` and `etx sweep`: the options both commands
 * check alike, and the JSONL data file read into prompts.
 *
 * A data line is {"id": str|int, "prompt": "..."} or {"id", "messages": [{"role",
 * "content"}, ...]}, optionally "answer" or "reference" (a string). A plain prompt is
 * tokenized as the model's tokenizer does (BOS when it adds one); messages are rendered
 * with the chat template and the assistant header. A bad line (not JSON, no usable id,
 * a repeated id, no prompt, a prompt too long for the context, a NUL character in any
 * string) is reported with its line number and skipped; the caller decides whether any
 * bad line stops the run.
 *
 * A request's random key is a hash of its id (eval_request_key), not of where its line
 * is: a blank line inserted, lines reordered or the file split in two leave every
 * request's random stream as it was.
 */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "eval.h"
#include "eval/vote.h"
#include "policy/json_strict.h"

int eval_conf_stat(const char* name) {
    static const char* const names[] = {"mean", "lowest_group", "bottom10", "tail"};
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

int eval_args_check(const EvalArgs* a) {
    if (a->task && strcmp(a->task, "gsm8k") != 0) {
        fprintf(stderr, "etx %s: unknown task '%s' (expected gsm8k)\n", a->command, a->task);
        return -1;
    }
    if (strcmp(a->on_bad, "skip") != 0 && strcmp(a->on_bad, "fail") != 0) {
        fprintf(stderr, "etx %s: --on-bad-line must be skip or fail (got '%s')\n", a->command, a->on_bad);
        return -1;
    }
    if (a->batch < 1 || a->max_tokens < 1 || a->limit < 0) {
        fprintf(stderr, "etx %s: --batch and --max-tokens must be >= 1, --limit >= 0\n", a->command);
        return -1;
    }
    if (a->samples < 1 || a->samples > ETX_MAX_SAMPLES) {
        fprintf(stderr, "etx %s: --samples must be 1..%d (got %d)\n", a->command, ETX_MAX_SAMPLES, a->samples);
        return -1;
    }
    VoteMethod vm;
    if (!vote_parse(a->vote, &vm)) {
        fprintf(stderr, "etx %s: unknown --vote '%s' (expected majority, confidence or deepconf)\n", a->command, a->vote);
        return -1;
    }
    if (a->samples > 1 && !a->task) {
        fprintf(stderr, "etx %s: --samples %d votes over extracted answers, which needs a task that extracts them "
                        "(--task gsm8k)\n", a->command, a->samples);
        return -1;
    }
    if (!(a->eta > 0.0f && a->eta <= 1.0f)) {
        fprintf(stderr, "etx %s: --eta must be in (0, 1] (got %g)\n", a->command, (double)a->eta);
        return -1;
    }
    if (a->conf_window < 1) {
        fprintf(stderr, "etx %s: --conf-window must be >= 1 (got %d)\n", a->command, a->conf_window);
        return -1;
    }
    if (a->online < 0 || (a->online > 0 && (a->online >= a->samples || vm != VOTE_DEEPCONF))) {
        fprintf(stderr, "etx %s: --online N needs --vote deepconf and 1 <= N < --samples (got --online %d, --samples "
                        "%d, --vote %s)\n", a->command, a->online, a->samples, a->vote);
        return -1;
    }
    const etx_branching* b = &a->branching;
    if (b->n_branches && (b->n_branches < 2 || b->n_branches > ETX_TRACE_TOP || b->lookahead < 1 ||
                          b->max_branch_tokens < 1 || !(b->entropy >= 0) || !(b->varentropy >= 0))) {
        fprintf(stderr, "etx %s: --branch must be 2..%d with --lookahead and --branch-budget >= 1 and thresholds >= 0 "
                        "(got --branch %d --lookahead %d --branch-budget %d)\n", a->command, ETX_TRACE_TOP,
                b->n_branches, b->lookahead, b->max_branch_tokens);
        return -1;
    }
    if (eval_conf_stat(a->conf_stat) < 0) {
        fprintf(stderr, "etx %s: unknown --conf-stat '%s' (expected mean, lowest_group, bottom10 or tail)\n", a->command,
                a->conf_stat);
        return -1;
    }
    const CliEngineArgs ea = EVAL_ENGINE_ARGS(a);
    etx_engine_options eo;
    if (cli_engine_options(a->command, &ea, &eo) != 0) return -1;
    return cli_check_input_file(a->command, "--data", a->data);
}

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

uint64_t eval_request_key(const char* key) {
    // FNV-1a over the canonical key, then splitmix64's finaliser to spread its bits
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char* p = (const unsigned char*)key; *p; p++) h = (h ^ *p) * 1099511628211ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

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
        const char* err = NULL;
        JsonStrictError je;
        if (json_find_nul(s, sl, &je)) {
            // cJSON would cut the string at the NUL and run what is left: refuse the line
            snprintf(msg, sizeof msg, "a NUL character (\\u0000) in %s%s%s at column %d; NUL cannot be part of a "
                     "request", je.path[0] ? "\"" : "", je.path[0] ? je.path : "the line", je.path[0] ? "\"" : "",
                     je.column);
            err = msg;
        }
        if (!err) {
            it.root = cJSON_ParseWithLength(s, sl);
            if (!it.root || !cJSON_IsObject(it.root)) err = "not a JSON object";
            else if (!(it.id = cJSON_GetObjectItemCaseSensitive(it.root, "id")) || !(it.key = eval_id_key(it.id)))
                err = "no \"id\" (a string or an integer)";
        }
        if (!err) it.rkey = eval_request_key(it.key);
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

