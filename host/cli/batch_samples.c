/*
 * batch_samples.c — the result line of a request run as N samples (`etx eval --samples
 * N`, and sweeps): every sample's completion, answers and trace confidence, the vote
 * over their answers, and the request's score as the voted answer's.
 *
 * The samples share the prompt's KV cache (etx_engine_submit_samples); each has its own
 * random stream, so the line depends only on the request and the options. A sample's
 * trace confidence summarises its token confidences (DeepConf: minus the mean
 * log-probability of the top 20 tokens, from the trace records, computed on the device
 * beside the entropy) with host/eval/vote.h's trace_confidence: the mean, the lowest and
 * bottom-10 % group confidence over a sliding window of --conf-window tokens, and the
 * mean of the last --conf-tail. --conf-stat picks the one that weighs the sample in the
 * confidence and deepconf votes.
 *
 * The line (keys in this order):
 *   {["combo"], "id", "completion" (the flexible vote's winning sample's, else sample
 *    0's), "tokens" (sum over the samples), "finish" (that sample's), "branches" (sum),
 *    "samples": [{"completion", "tokens", "finish", ["error"], "confidence": {"mean",
 *    "lowest_group", "bottom10", "tail"}, "extracted": {"strict", "flexible"}, "correct"}],
 *    "vote": {"method", "eta" (deepconf), "stat", ["warmup", "threshold", "stopped"]
 *    (--online), "flexible": {"answer", "votes", "kept"}, "strict": {...}},
 *    "score": {"strict", "flexible"}, "extracted": {"strict", "flexible", "reference"},
 *    "votes": {"majority", "confidence", "deepconf": {"answer", "correct"}} (every
 *    method's flexible answer over the same samples), "pass": {"n", "correct", "pass@1",
 *    "pass@n"}}
 * "score", "extracted", "votes" and "pass" need a reference; "correct" is the flexible
 * answer's.
 *
 * --online (DeepConf online): the first --online samples ran alone and set a threshold
 * (batch_run.c); the others stopped ("finish": "low_confidence") at the first token whose
 * group confidence fell below it. Stopped samples, and warm-up samples whose lowest group
 * confidence is below the threshold, do not vote; the rest vote weighted by --conf-stat
 * (the threshold already kept DeepConf's most confident share). pass@k still counts
 * every sample's answer as it stands.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch_run.h"
#include "common.h"
#include "eval/eval_score.h"
#include "eval/vote.h"

static double conf_stat_value(const TraceConfidence* c, int stat) {
    switch (stat) {
    case 0: return c->mean;
    case 1: return c->lowest_group;
    case 2: return c->bottom10_group;
    default: return c->tail;
    }
}

// A finite double for JSON (cJSON writes non-finite numbers as null anyway; an empty
// trace's -inf is written as null on purpose).
static void add_conf(cJSON* o, const char* key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

static void add_vote(cJSON* v, const char* key, const char* answer, const VoteResult* r) {
    cJSON* o = cJSON_AddObjectToObject(v, key);
    if (answer[0]) cJSON_AddStringToObject(o, "answer", answer);
    else cJSON_AddNullToObject(o, "answer");
    cJSON_AddNumberToObject(o, "votes", r->n_votes_winner);
    cJSON_AddNumberToObject(o, "kept", r->n_kept);
}

char* batch_group_line(const EvalArgs* a, const Item* it, const BatchJob* jb, const Slot* s, const etx_request_state* rs,
                       const etx_trace_record* const* recs, const int* n_recs, int n, double threshold, Totals* t) {
    const int combo = jb->combo;
    const int online = !isnan(threshold);
    int n_stopped = 0;
    const int scored = it->reference && a->task && strcmp(a->task, "gsm8k") == 0;
    const int stat = eval_conf_stat(a->conf_stat);
    VoteMethod method = VOTE_MAJORITY;
    vote_parse(a->vote, &method);
    SampleView* v = xcalloc((size_t)n, sizeof *v);
    Gsm8kScore* sc = xcalloc((size_t)n, sizeof *sc);
    double* conf = xcalloc((size_t)n, sizeof *conf);
    const char** flex = xcalloc((size_t)n, sizeof *flex);
    const char** strict = xcalloc((size_t)n, sizeof *strict);
    cJSON* samples = cJSON_CreateArray();
    int per[ETX_BRANCH_COUNT] = {0};
    long tokens = 0;
    int correct = 0;
    for (int i = 0; i < n; i++) {
        batch_sample_view(&s[i], &rs[i], n_recs[i], &v[i]);
        tokens += v[i].n_tokens + s[i].dropped_tokens; // with branching, the branches not kept too
        float* c = xmalloc((size_t)(v[i].n_recs ? v[i].n_recs : 1) * sizeof(float));
        for (int k = 0; k < v[i].n_recs; k++) {
            c[k] = recs[i][k].confidence;
            per[recs[i][k].branch]++;
        }
        TraceConfidence tc;
        trace_confidence(c, v[i].n_recs, a->conf_window, a->conf_tail, &tc);
        free(c);
        conf[i] = conf_stat_value(&tc, stat);
        // the answers (a failed sample's text still counts: it is what it generated)
        gsm8k_score(v[i].completion, it->reference ? it->reference : "", &sc[i]);
        flex[i] = sc[i].has_flexible ? sc[i].flexible : "";
        strict[i] = sc[i].has_strict ? sc[i].strict : "";
        // --online: a sample stopped for low confidence, or a warm-up sample below the
        // threshold it helped set, does not vote. A sample that completed a stop string
        // first has its whole answer (the tokens after it, where the stop may have come
        // during a multi-step call, are not part of it): it is not stopped
        const int stopped = strcmp(v[i].finish, "low_confidence") == 0;
        n_stopped += stopped;
        if (online && (stopped || !(tc.lowest_group >= threshold))) flex[i] = strict[i] = "";
        correct += scored && sc[i].flexible_ok;

        cJSON* o = cJSON_CreateObject();
        char* q = batch_json_quote(v[i].completion, v[i].completion_len);
        cJSON_AddRawToObject(o, "completion", q);
        free(q);
        cJSON_AddNumberToObject(o, "tokens", v[i].n_tokens);
        cJSON_AddStringToObject(o, "finish", v[i].finish);
        if (rs[i].phase == ETX_REQ_FAILED) {
            cJSON_AddStringToObject(o, "error", rs[i].error);
            batch_report_error(a, it, rs[i].error);
        }
        cJSON* co = cJSON_AddObjectToObject(o, "confidence");
        add_conf(co, "mean", tc.mean);
        add_conf(co, "lowest_group", tc.lowest_group);
        add_conf(co, "bottom10", tc.bottom10_group);
        add_conf(co, "tail", tc.tail);
        cJSON* ex = cJSON_AddObjectToObject(o, "extracted");
        if (strict[i][0]) cJSON_AddStringToObject(ex, "strict", strict[i]);
        else cJSON_AddNullToObject(ex, "strict");
        if (flex[i][0]) cJSON_AddStringToObject(ex, "flexible", flex[i]);
        else cJSON_AddNullToObject(ex, "flexible");
        if (scored) cJSON_AddBoolToObject(o, "correct", sc[i].flexible_ok);
        if (a->branching.n_branches) batch_add_branching(o, &s[i]);
        if (a->trace) {
            char* tr = batch_trace_json(recs[i], v[i].n_recs, it->ids[it->n_ids - 1], jb->pause);
            cJSON_AddRawToObject(o, "trace", tr);
            free(tr);
        }
        cJSON_AddItemToArray(samples, o);
    }
    char flex_win[GSM8K_ANS_MAX], strict_win[GSM8K_ANS_MAX];
    VoteResult fr, sr;
    // online, the threshold did DeepConf's filtering: the kept samples vote weighted
    const VoteMethod m = online ? VOTE_CONFIDENCE : method;
    vote_aggregate(m, flex, conf, n, a->eta, flex_win, sizeof flex_win, &fr);
    vote_aggregate(m, strict, conf, n, a->eta, strict_win, sizeof strict_win, &sr);
    const int w = fr.winner_sample >= 0 ? fr.winner_sample : 0;

    cJSON* o = cJSON_CreateObject();
    if (combo >= 0) cJSON_AddNumberToObject(o, "combo", combo);
    cJSON_AddItemToObject(o, "id", cJSON_Duplicate(it->id, 1));
    char* q = batch_json_quote(v[w].completion, v[w].completion_len);
    cJSON_AddRawToObject(o, "completion", q);
    free(q);
    cJSON_AddNumberToObject(o, "tokens", (double)tokens);
    cJSON_AddStringToObject(o, "finish", v[w].finish);
    batch_add_branches(o, per, t);
    cJSON_AddItemToObject(o, "samples", samples);
    cJSON* vo = cJSON_AddObjectToObject(o, "vote");
    cJSON_AddStringToObject(vo, "method", vote_name(method));
    if (method == VOTE_DEEPCONF) cJSON_AddNumberToObject(vo, "eta", a->eta);
    if (method != VOTE_MAJORITY) cJSON_AddStringToObject(vo, "stat", a->conf_stat);
    if (online) {
        cJSON_AddNumberToObject(vo, "warmup", a->online);
        add_conf(vo, "threshold", threshold);
        cJSON_AddNumberToObject(vo, "stopped", n_stopped);
    }
    add_vote(vo, "flexible", flex_win, &fr);
    add_vote(vo, "strict", strict_win, &sr);
    if (scored) {
        const char* ref = sc[0].reference; // normalised the same way for every sample
        const int strict_ok = strict_win[0] && strcmp(strict_win, ref) == 0;
        const int flex_ok = flex_win[0] && strcmp(flex_win, ref) == 0;
        cJSON* so = cJSON_AddObjectToObject(o, "score");
        cJSON_AddNumberToObject(so, "strict", strict_ok);
        cJSON_AddNumberToObject(so, "flexible", flex_ok);
        cJSON* ex = cJSON_AddObjectToObject(o, "extracted");
        if (strict_win[0]) cJSON_AddStringToObject(ex, "strict", strict_win);
        else cJSON_AddNullToObject(ex, "strict");
        if (flex_win[0]) cJSON_AddStringToObject(ex, "flexible", flex_win);
        else cJSON_AddNullToObject(ex, "flexible");
        cJSON_AddStringToObject(ex, "reference", ref);
        // every vote method over the same samples (one sampling run compares them all)
        cJSON* all = cJSON_AddObjectToObject(o, "votes");
        for (int vm = 0; vm < 3; vm++) {
            char win[GSM8K_ANS_MAX];
            vote_aggregate(online && vm != VOTE_MAJORITY ? VOTE_CONFIDENCE : (VoteMethod)vm, flex, conf, n, a->eta,
                           win, sizeof win, NULL);
            const int ok = win[0] && strcmp(win, ref) == 0;
            cJSON* vo2 = cJSON_AddObjectToObject(all, vote_name((VoteMethod)vm));
            if (win[0]) cJSON_AddStringToObject(vo2, "answer", win);
            else cJSON_AddNullToObject(vo2, "answer");
            cJSON_AddBoolToObject(vo2, "correct", ok);
            t->vote_ok[vm] += ok;
        }
        cJSON* po = cJSON_AddObjectToObject(o, "pass");
        cJSON_AddNumberToObject(po, "n", n);
        cJSON_AddNumberToObject(po, "correct", correct);
        cJSON_AddNumberToObject(po, "pass@1", pass_at_k(n, correct, 1));
        cJSON_AddNumberToObject(po, "pass@n", pass_at_k(n, correct, n));
        t->scored++, t->strict += strict_ok, t->flexible += flex_ok;
        t->pass1 += pass_at_k(n, correct, 1), t->passn += pass_at_k(n, correct, n);
    }
    t->tokens += (double)tokens;
    t->done++;
    for (int i = 0; i < n; i++) free(v[i].completion);
    free(v);
    free(sc);
    free(conf);
    free(flex);
    free(strict);
    return batch_line_of(o);
}
