/*
 * batch_run.c — the batch runner of `etx eval` and `etx sweep` (batch_run.h): the
 * prologue both share (batch_open), the loop that keeps at most --batch requests in the
 * engine and refills it as they finish (run_jobs), and the output: one process appends
 * each finished prefix of its jobs, so a killed run loses at most a torn last line
 * (eval_io.c drops it on resume); under MPI every rank keeps its lines and rank 0 writes
 * them all in job order after the run (job j ran on rank j % size).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch_run.h"
#include "cli.h"
#include "common.h"
#include "eval/vote.h"

#define BATCH_MAX_JOBS 100000000L

// ----------------------------------------------------------------------------
// before the engine

int batch_open(BatchRun* br, const EvalArgs* a, const EvalPar* par, const BatchPlan* plan) {
    memset(br, 0, sizeof *br);
    br->guard.lock_fd = -1;
    br->a = a;
    br->par = par;
    br->plan = *plan;
    const int rank0 = par->rank == 0;
    const CliEngineArgs ea = EVAL_ENGINE_ARGS(a);
    if (cli_engine_options(a->command, &ea, &br->eo) != 0) return 2;
    br->eo.trace = 1; // the branch of every token
    // the output: not the data file, locked for the run (rank 0 writes it), or a stream
    int rc = eval_guard_open(&br->guard, a, rank0);
    if (!eval_par_all_ok(par, rc == 0)) return rc ? rc : 2;
    // resume: the jobs already in the output are skipped (a truncated last line is
    // dropped and rerun); a stream is never read back
    const int read = br->guard.stream ? 0 : eval_done_read(a->out, plan->tagged ? plan->n_combos : 0, &br->done);
    const int read_errno = errno;
    if (!eval_par_all_ok(par, read == 0)) {
        if (rank0 && read == -2)
            fprintf(stderr, "etx %s: %s: %s; etx resumes only a file of its own results (choose another --out)\n",
                    a->command, a->out, br->done.why);
        else if (rank0 && read != 0)
            fprintf(stderr, "etx %s: cannot read %s: %s\n", a->command, a->out, strerror(read_errno));
        return read == -2 ? 2 : read != 0 ? 1 : 2;
    }
    if (br->done.dropped && rank0)
        fprintf(stderr, "etx %s: warning: %s ends in a truncated line; it is dropped and rerun\n", a->command, a->out);
    // the fingerprint: the results already there must come from this same run
    rc = 0;
    if (rank0 && !br->guard.stream && plan->run_path) {
        cJSON* fp = eval_fingerprint(a, cli_model_path(a->model), plan->combos, plan->n_combos);
        rc = eval_fingerprint_check(&br->guard, a->command, a->out, plan->run_path, fp, br->done.n);
        cJSON_Delete(fp);
    }
    if (!eval_par_all_ok(par, rc == 0)) return rc ? rc : 2;
    if (!eval_par_all_ok(par, cli_tp_check_model_path(rank0 ? a->command : NULL, cli_model_path(a->model), &br->eo) == 0))
        return 2;
    int load_rc = 0;
    br->m = cli_load_model(cli_model_path(a->model), &load_rc);
    if (!eval_par_all_ok(par, br->m != NULL)) return br->m ? 1 : load_rc;
    // refused before any work (exit 2): what only the model can tell (--ctx, the KV pool,
    // each combination's pause token)
    int fits = cli_engine_check_model(rank0 ? a->command : NULL, br->m, &br->eo) == 0;
    for (int c = 0; c < plan->n_combos && fits; c++)
        fits = cli_policy_check_model(rank0 ? a->command : NULL, br->m, &plan->combos[c]) == 0;
    if (!eval_par_all_ok(par, fits)) return 2;
    const int ctx = a->ctx > 0 ? a->ctx : etx_default_context(br->m);
    const int ok = eval_read_items(a, par, br->m, ctx, &br->items, &br->n_items, &br->n_bad) == 0;
    if (!eval_par_all_ok(par, ok)) return 1;
    if (br->n_bad > 0 && strcmp(a->on_bad, "fail") == 0) {
        if (rank0)
            fprintf(stderr, "etx %s: %d bad lines in %s; nothing run (--on-bad-line fail)\n", a->command, br->n_bad,
                    a->data);
        return 2;
    }
    br->n_total = (long)plan->n_combos * br->n_items;
    if (br->n_total > BATCH_MAX_JOBS) {
        if (rank0) fprintf(stderr, "etx %s: %ld jobs is too many\n", a->command, br->n_total);
        return 1;
    }
    // the pending jobs (not in the output yet), combination-major, and this rank's share
    br->mine = xcalloc((size_t)br->n_total / (size_t)par->size + 1, sizeof *br->mine);
    int32_t* pause = xcalloc((size_t)plan->n_combos, sizeof *pause);
    for (int c = 0; c < plan->n_combos; c++) pause[c] = cli_pause_token(br->m, &plan->combos[c]);
    for (int c = 0; c < plan->n_combos; c++)
        for (int i = 0; i < br->n_items; i++) {
            char* key = plan->tagged ? eval_combo_key(c, br->items[i].key) : br->items[i].key;
            const int have = eval_done_has(&br->done, key);
            if (plan->tagged) free(key);
            if (have) {
                br->n_skipped++;
                continue;
            }
            if (br->n_pending++ % par->size != par->rank) continue;
            br->mine[br->n_mine++] = (BatchJob){.item = i, .combo = plan->tagged ? c : -1, .policy = &plan->combos[c],
                                                .pause = pause[c]};
        }
    free(pause);
    br->opened = 1;
    return 0;
}

void batch_close(BatchRun* br) {
    eval_guard_close(&br->guard, !br->opened);
    free(br->mine);
    eval_free_items(br->items, br->n_items);
    etx_model_free(br->m);
    eval_done_free(&br->done);
    memset(br, 0, sizeof *br);
    br->guard.lock_fd = -1;
}

// ----------------------------------------------------------------------------
// the loop

// The result lines of this rank's jobs, and the output they go to as they complete.
typedef struct {
    char** lines;   // (n_mine) result line of each of this rank's jobs, NULL until it ends
    int n_written;  // lines already written (one process: written as a prefix completes)
    FILE* f;        // the output file (one process), else NULL
} Writer;

// What the engines of one process share (--gpus: one engine per device, each in its own
// thread, job j of this rank on engine j % n_lanes). Everything here is guarded by mu.
typedef struct {
    pthread_mutex_t mu;
    Writer* w;
    int jobs_done;   // finished jobs, every engine
    long tokens;     // generated tokens so far, every engine
    int failed;      // an engine failed: the others stop at their next step
    int show;        // print the progress line
    double t0, shown;
} Shared;

// One engine's share of the run.
typedef struct {
    const BatchRun* br;
    Shared* sh;
    int lane, n_lanes; // this engine runs jobs lane, lane + n_lanes, ... of br->mine
    int gpu;           // its device (etx_engine_options.gpu)
    etx_engine* e;
    Totals* t;         // (n_combos) this engine's counts
    double* busy;      // (n_combos) this engine's time per combination
    double prefill, prefill_saved, kv_peak; // the engine's stats once it is freed (kv_peak: positions)
    int rc;            // 0, or -1 after reporting
} Lane;

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

// A job in flight: its samples' requests (one, or --samples N of a group).
typedef struct {
    int job;    // index in br->mine, -1 = free
    Slot* s;    // (n) one per sample; s[k].item = job, -1 once that sample has finished
    int n_left; // samples submitted and not finished yet
    int n_sub;  // samples submitted (--online: the warm-up first, then the rest)
    double threshold; // --online: the stop threshold the warm-up set (NAN before)
} JobSlot;

// Submits samples first .. first + m - 1 of job j into js (one plain request when the
// run has one sample), with the online stop threshold when it is set.
static etx_status submit_samples(const BatchRun* br, etx_engine* e, int j, JobSlot* js, int first, int m, int* ids) {
    const EvalArgs* a = br->a;
    const BatchJob* jb = &br->mine[j];
    const Item* it = &br->items[jb->item];
    etx_request req = {.prompt = it->ids, .n_prompt = it->n_ids, .policy = *jb->policy,
                       .max_tokens = a->max_tokens, .key = it->rkey};
    req.branching = a->branching;
    if (!isnan(js->threshold) && js->threshold > 0) {
        req.stop_confidence = (float)js->threshold;
        req.confidence_window = a->conf_window;
    }
    etx_status st = a->samples > 1 ? etx_engine_submit_samples_at(e, &req, first, m, ids)
                                   : etx_engine_submit(e, &req, ids);
    if (st.code != ETX_OK) return st;
    js->job = j;
    js->n_left += m;
    js->n_sub = first + m;
    for (int k = 0; k < m; k++) js->s[first + k] = (Slot){.item = j, .req = ids[k], .stop_at = -1};
    return st;
}

// Job j into the free slot js: all its samples, or with --online its warm-up ones.
static etx_status submit_job(const BatchRun* br, etx_engine* e, int j, JobSlot* js, int n, int* ids) {
    js->n_left = 0;
    js->threshold = NAN;
    return submit_samples(br, e, j, js, 0, br->a->online > 0 ? br->a->online : n, ids);
}

// --online, once the warm-up samples have finished: the threshold at the (1 - eta)
// percentile of their lowest group confidence (DeepConf: keeping the top eta of traces),
// then the other samples with it as their stop_confidence. Returns the samples submitted.
static int submit_online_rest(const BatchRun* br, etx_engine* e, JobSlot* js, int n, int* ids, etx_status* st) {
    const EvalArgs* a = br->a;
    const int w = a->online;
    double* low = xcalloc((size_t)w, sizeof *low);
    for (int k = 0; k < w; k++) {
        const etx_trace_record* recs = NULL;
        int n_recs = 0;
        etx_engine_trace(e, js->s[k].req, &recs, &n_recs);
        SampleView v;
        etx_request_state rs;
        etx_engine_request_state(e, js->s[k].req, &rs);
        batch_sample_view(&js->s[k], &rs, n_recs, &v);
        free(v.completion);
        float* c = xmalloc((size_t)(v.n_recs ? v.n_recs : 1) * sizeof(float));
        for (int i = 0; i < v.n_recs; i++) c[i] = recs[i].confidence;
        TraceConfidence tc;
        trace_confidence(c, v.n_recs, a->conf_window, a->conf_tail, &tc);
        free(c);
        low[k] = isfinite(tc.lowest_group) ? tc.lowest_group : 0.0;
    }
    js->threshold = conf_percentile(low, w, 100.0 * (1.0 - (double)a->eta));
    free(low);
    *st = submit_samples(br, e, js->job, js, w, n - w, ids);
    return st->code == ETX_OK ? n - w : 0;
}

// The result line of a job whose samples have all finished; releases their requests.
static char* finish_job(const BatchRun* br, etx_engine* e, JobSlot* js, int n, Totals* t) {
    const EvalArgs* a = br->a;
    const BatchJob* jb = &br->mine[js->job];
    const int c = jb->combo > 0 ? jb->combo : 0;
    etx_request_state* rs = xcalloc((size_t)n, sizeof *rs);
    const etx_trace_record** recs = xcalloc((size_t)n, sizeof *recs);
    int* n_recs = xcalloc((size_t)n, sizeof *n_recs);
    for (int k = 0; k < n; k++) {
        etx_engine_request_state(e, js->s[k].req, &rs[k]);
        etx_engine_trace(e, js->s[k].req, &recs[k], &n_recs[k]);
    }
    for (int k = 0; k < n; k++) { // branching: the dropped branches' tokens, and the forks
        const etx_branch_event* ev = NULL;
        int n_ev = 0, spent = 0;
        etx_engine_branch_events(e, js->s[k].req, &ev, &n_ev, &spent);
        js->s[k].n_forks = n_ev;
        js->s[k].forks = ev;
        js->s[k].dropped_tokens = 0;
        for (int x = 0; x < n_ev; x++)
            for (int j = 0; j < ev[x].n_branches; j++)
                if (j != ev[x].kept) js->s[k].dropped_tokens += ev[x].tokens[j];
    }
    if (br->plan.on_trace)
        for (int k = 0; k < n; k++) { // the records up to a stop string, as the result line counts them
            SampleView v;
            batch_sample_view(&js->s[k], &rs[k], n_recs[k], &v);
            free(v.completion);
            br->plan.on_trace(br->plan.on_trace_ctx, recs[k], v.n_recs);
        }
    const Item* it = &br->items[jb->item];
    char* line = n > 1 ? batch_group_line(a, it, jb, js->s, rs, recs, n_recs, n, js->threshold, &t[c])
                       : batch_result_line(a, it, jb, &js->s[0], &rs[0], recs[0], n_recs[0], &t[c]);
    for (int k = 0; k < n; k++) {
        etx_engine_release(e, js->s[k].req);
        free(js->s[k].text);
        js->s[k] = (Slot){.item = -1};
    }
    js->job = -1;
    free(rs);
    free(recs);
    free(n_recs);
    return line;
}

// Runs br->mine through the engine e, at most --batch requests at once (with --samples N,
// --batch / N jobs, at least one), filling w->lines[j] (the result line of job j) and
// writing each finished prefix to w->f when it is set. t[max(combo, 0)] gets each
// result's counts; busy[max(combo, 0)] the engine time attributed to it. Returns 0, or
// -1 after reporting.
static int run_jobs(Lane* ln) {
    const BatchRun* br = ln->br;
    Shared* sh = ln->sh;
    etx_engine* e = ln->e;
    Totals* t = ln->t;
    double* busy = ln->busy;
    const EvalArgs* a = br->a;
    const BatchJob* jobs = br->mine;
    const int n_mine = br->n_mine;
    const int stops = a->task && strcmp(a->task, "gsm8k") == 0 && !a->no_stop_strings;
    const int n = a->samples > 1 ? a->samples : 1;
    const int n_slots = a->batch / n > 1 ? a->batch / n : 1;
    JobSlot* slots = xcalloc((size_t)n_slots, sizeof *slots);
    int* ids = xcalloc((size_t)n, sizeof *ids);
    for (int i = 0; i < n_slots; i++) {
        slots[i].job = -1;
        slots[i].s = xcalloc((size_t)n, sizeof(Slot));
        for (int k = 0; k < n; k++) slots[i].s[k].item = -1;
    }
    int next = ln->lane, active = 0, rc = 0; // next: this engine's next job
    while ((next < n_mine || active > 0) && rc == 0) {
        pthread_mutex_lock(&sh->mu);
        const int stop = sh->failed;
        pthread_mutex_unlock(&sh->mu);
        if (stop) break; // another engine failed: the run ends (the lines written stay)
        for (int i = 0; i < n_slots && next < n_mine; i++) {
            if (slots[i].job >= 0) continue;
            etx_status st = submit_job(br, e, next, &slots[i], n, ids);
            if (st.code != ETX_OK) {
                cli_error(a->command, st);
                rc = -1;
                break;
            }
            next += ln->n_lanes;
            active += slots[i].n_left;
        }
        if (rc) break;
        const double ts = etx_now_s();
        etx_status st = etx_engine_step(e, NULL);
        const double dt = etx_now_s() - ts;
        // the step's time, shared equally by the requests in it
        for (int i = 0; active > 0 && i < n_slots; i++)
            if (slots[i].job >= 0) {
                const int c = jobs[slots[i].job].combo > 0 ? jobs[slots[i].job].combo : 0;
                busy[c] += dt * slots[i].n_left / active;
            }
        if (st.code != ETX_OK) {
            cli_error(a->command, st);
            rc = -1;
            break;
        }
        long new_tokens = 0;
        int new_done = 0;
        for (int i = 0; i < n_slots; i++) {
            JobSlot* js = &slots[i];
            if (js->job < 0) continue;
            for (int k = 0; k < n; k++) {
                Slot* s = &js->s[k];
                if (s->item < 0) continue;
                etx_request_state rs;
                etx_engine_request_state(e, s->req, &rs);
                new_tokens += rs.n_tokens - s->n_counted;
                s->n_counted = rs.n_tokens;
                // a final EOS/end-of-turn token is not part of the text
                int upto = rs.phase == ETX_REQ_DONE_STOP && s->stop_at < 0 ? rs.n_tokens - 1 : rs.n_tokens;
                batch_slot_decode(s, br->m, rs.tokens, upto, stops);
                if (s->stop_at >= 0 && rs.phase == ETX_REQ_RUNNING) {
                    etx_engine_cancel(e, s->req);
                    etx_engine_request_state(e, s->req, &rs);
                }
                if (rs.phase == ETX_REQ_RUNNING || rs.phase == ETX_REQ_QUEUED) continue;
                s->item = -1; // finished (its text and request are kept for the line)
                js->n_left--;
                active--;
            }
            if (js->n_left > 0) continue;
            if (js->n_sub < n) { // --online: the warm-up is done, the rest go with its threshold
                etx_status so;
                active += submit_online_rest(br, e, js, n, ids, &so);
                if (so.code != ETX_OK) {
                    cli_error(a->command, so);
                    rc = -1;
                    break;
                }
                continue;
            }
            const int j = js->job;
            for (int k = 0; k < n; k++) js->s[k].item = j;
            pthread_mutex_lock(&sh->mu); // (plan.on_trace sees one job at a time)
            sh->w->lines[j] = finish_job(br, e, js, n, t);
            pthread_mutex_unlock(&sh->mu);
            new_done++;
        }
        pthread_mutex_lock(&sh->mu);
        sh->tokens += new_tokens;
        sh->jobs_done += new_done;
        if (rc == 0 && write_ready(sh->w, n_mine) != 0) {
            fprintf(stderr, "etx %s: writing %s failed: %s\n", a->command, a->out, strerror(errno));
            rc = -1;
        }
        if (sh->show && (etx_now_s() - sh->shown > 0.25 || sh->jobs_done == n_mine)) {
            progress(sh->jobs_done, sh->tokens, n_mine, sh->t0);
            sh->shown = etx_now_s();
        }
        pthread_mutex_unlock(&sh->mu);
    }
    if (rc) { // (every way out of the loop with an error passes here)
        pthread_mutex_lock(&sh->mu);
        sh->failed = 1;
        pthread_mutex_unlock(&sh->mu);
    }
    for (int i = 0; i < n_slots; i++) {
        for (int k = 0; k < n; k++) free(slots[i].s[k].text);
        free(slots[i].s);
    }
    free(slots);
    free(ids);
    return rc;
}

// ----------------------------------------------------------------------------
// the output

// Opens the output for appending after its last good line (a truncated line dropped);
// "wb" when there is none.
static FILE* open_output(const char* path, const EvalDone* done) {
    FILE* f = fopen(path, done->good_len > 0 || done->dropped ? "r+b" : "wb");
    if (!f) return NULL;
    if ((done->good_len > 0 || done->dropped) &&
        (ftruncate(fileno(f), (off_t)done->good_len) != 0 || fseek(f, (long)done->good_len, SEEK_SET) != 0)) {
        fclose(f);
        return NULL;
    }
    return f;
}

// Rank 0 writes every rank's lines in job order: pending job j came from rank j % size,
// as the next line of that rank's buffer (all[at[r]..], lens[r] bytes).
static int merge_write(const BatchRun* br, const char* all, const size_t* lens) {
    const EvalPar* par = br->par;
    FILE* f = open_output(br->a->out, &br->done);
    if (!f) return -1;
    size_t* at = xcalloc((size_t)par->size, sizeof(size_t));
    size_t base = 0;
    for (int r = 0; r < par->size; r++) at[r] = base, base += lens[r];
    int rc = 0;
    for (int j = 0; j < br->n_pending && rc == 0; j++) {
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

// Under MPI: gathers every rank's lines on rank 0, which writes them in job order.
// 1 when every rank succeeded.
static int gather_and_write(const BatchRun* br, char* const* lines) {
    const EvalPar* par = br->par;
    size_t len = 0;
    for (int i = 0; i < br->n_mine; i++) len += strlen(lines[i]);
    char* buf = xmalloc(len + 1);
    size_t at = 0;
    for (int i = 0; i < br->n_mine; i++) {
        size_t n = strlen(lines[i]);
        memcpy(buf + at, lines[i], n);
        at += n;
    }
    char* all = NULL;
    size_t* lens = xcalloc((size_t)par->size, sizeof(size_t));
    int ok = eval_par_gather(par, buf, len, &all, lens) == 0;
    free(buf);
    if (ok && par->rank == 0 && merge_write(br, all, lens) != 0) {
        fprintf(stderr, "etx %s: writing %s failed: %s\n", br->a->command, br->a->out, strerror(errno));
        ok = 0;
    }
    free(all);
    free(lens);
    return eval_par_all_ok(par, ok);
}

// One engine's thread: creates its engine on its device, runs its jobs, frees it.
static void* lane_main(void* arg) {
    Lane* ln = arg;
    const BatchRun* br = ln->br;
    etx_engine_options eo = br->eo;
    eo.gpu = ln->gpu;
    etx_status st = etx_engine_create(br->m, &eo, &ln->e);
    if (st.code != ETX_OK) {
        cli_error(br->a->command, st);
        pthread_mutex_lock(&ln->sh->mu);
        ln->sh->failed = 1;
        pthread_mutex_unlock(&ln->sh->mu);
        ln->rc = -1;
        etx_engine_free(ln->e);
        ln->e = NULL;
        return NULL;
    }
    ln->rc = run_jobs(ln);
    etx_engine_stats es;
    if (etx_engine_get_stats(ln->e, &es).code == ETX_OK) {
        ln->prefill = (double)es.prefill_tokens;
        ln->prefill_saved = (double)es.prefill_saved;
        ln->kv_peak = (double)es.kv_blocks_peak * es.kv_block_size;
    }
    etx_engine_free(ln->e);
    ln->e = NULL;
    return NULL;
}

// Runs this rank's jobs on its engines (one per device of --gpus, each in a thread of its
// own; one engine runs in this thread) and writes the output (see the header comment):
// lanes[d] gets engine d's counts. 1 when every rank succeeded.
static int run_and_write(const BatchRun* br, Lane* lanes, int n_lanes) {
    const EvalArgs* a = br->a;
    Writer w = {0};
    w.lines = xcalloc((size_t)br->n_mine + 1, sizeof(char*));
    Shared sh = {.w = &w, .show = br->par->rank == 0 && (a->progress || isatty(2)), .t0 = etx_now_s()};
    pthread_mutex_init(&sh.mu, NULL);
    int ok = 1;
    if (!br->par->mpi) {
        w.f = open_output(a->out, &br->done);
        if (!w.f) {
            fprintf(stderr, "etx %s: cannot write %s: %s\n", a->command, a->out, strerror(errno));
            ok = 0;
        }
    }
    if (ok) {
        pthread_t* th = xcalloc((size_t)n_lanes, sizeof *th);
        int* started = xcalloc((size_t)n_lanes, sizeof *started);
        for (int d = 0; d < n_lanes; d++) lanes[d].sh = &sh;
        for (int d = 1; d < n_lanes; d++) {
            started[d] = pthread_create(&th[d], NULL, lane_main, &lanes[d]) == 0;
            if (!started[d]) {
                fprintf(stderr, "etx %s: cannot start the thread of the engine on cuda:%d\n", a->command,
                        lanes[d].gpu);
                lanes[d].rc = -1;
                sh.failed = 1; // (no other thread reads it yet without the lock: they start after)
            }
        }
        lane_main(&lanes[0]);
        for (int d = 1; d < n_lanes; d++)
            if (started[d]) pthread_join(th[d], NULL);
        free(th);
        free(started);
        if (sh.show) fputc('\n', stderr);
        for (int d = 0; d < n_lanes; d++) ok &= lanes[d].rc == 0;
        if (w.f) ok &= fclose(w.f) == 0;
        ok = eval_par_all_ok(br->par, ok);
        if (ok && br->par->mpi) ok = gather_and_write(br, w.lines);
    }
    pthread_mutex_destroy(&sh.mu);
    for (int i = 0; i < br->n_mine; i++) free(w.lines[i]);
    free(w.lines);
    return ok;
}

int batch_execute(BatchRun* br, Totals* t, double* rate, double* secs) {
    const EvalPar* par = br->par;
    const int n_combos = br->plan.n_combos;
    const CliEngineArgs ea = EVAL_ENGINE_ARGS(br->a);
    int gpus[CLI_MAX_GPUS];
    const int n_lanes = cli_engine_gpus(&ea, &br->eo, gpus);
    if (br->a->gpus && par->rank == 0) cli_say_gpus(br->a->command, gpus, n_lanes);
    Lane* lanes = xcalloc((size_t)n_lanes, sizeof *lanes);
    for (int d = 0; d < n_lanes; d++) {
        lanes[d] = (Lane){.br = br, .lane = d, .n_lanes = n_lanes, .gpu = gpus[d]};
        lanes[d].t = xcalloc((size_t)n_combos, sizeof(Totals));
        lanes[d].busy = xcalloc((size_t)n_combos, sizeof(double));
    }
    const double t0 = etx_now_s();
    const int ok = run_and_write(br, lanes, n_lanes);
    *secs = etx_now_s() - t0;
    // the engines' counts, in device order; one engine for every combination: the
    // prefill counts are combination 0's. Each engine's rate is its tokens over its
    // engine time; the engines (and the ranks) run side by side, so their rates add up.
    for (int c = 0; rate && c < n_combos; c++) rate[c] = 0;
    for (int d = 0; d < n_lanes; d++) {
        const Lane* ln = &lanes[d];
        for (int c = 0; c < n_combos; c++) {
            double* dst = (double*)&t[c];
            const double* src = (const double*)&ln->t[c];
            for (int k = 0; k < TOTALS_N; k++) dst[k] += src[k];
            if (rate && ln->busy[c] > 0) rate[c] += ln->t[c].tokens / ln->busy[c];
        }
        t[0].prefill += ln->prefill;
        t[0].prefill_saved += ln->prefill_saved;
        t[0].kv_peak_positions += ln->kv_peak;
        free(ln->t);
        free(ln->busy);
    }
    free(lanes);
    if (ok) {
        eval_par_sum(par, (double*)t, n_combos * TOTALS_N);
        if (rate) eval_par_sum(par, rate, n_combos);
    }
    return ok ? 0 : 1;
}
