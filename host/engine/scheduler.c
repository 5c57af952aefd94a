/*
 * scheduler.c — plans each engine step: running sequences first (preempting the newest
 * when the KV pool runs out), then admission of waiting ones, all in submission order.
 */
#include "engine/scheduler.h"

#include <stdlib.h>
#include <string.h>

etx_status sched_config_validate(const SchedConfig* c) {
    if (c->max_batch < 1) return etx_error(ETX_ERR_INVALID_ARG, "scheduler: max_batch must be >= 1 (got %d)", c->max_batch);
    if (c->chunk < 1) return etx_error(ETX_ERR_INVALID_ARG, "scheduler: prefill chunk must be >= 1 (got %d)", c->chunk);
    if (c->max_step_tokens < c->chunk)
        return etx_error(ETX_ERR_INVALID_ARG, "scheduler: max_step_tokens (%d) must be >= the prefill chunk (%d)",
                         c->max_step_tokens, c->chunk);
    return etx_ok();
}

void build_sched_plan(SchedPlan* p) { memset(p, 0, sizeof *p); }

void free_sched_plan(SchedPlan* p) {
    free(p->work);
    free(p->copies);
    free(p->preempted);
    free(p->failed);
    memset(p, 0, sizeof *p);
}

int sched_blocks_for(const BlockManager* bm, int n_positions) {
    return (n_positions + bm->block_size - 1) / bm->block_size;
}

// grows an array of `size`-byte items so that one more fits
static void* grow(void* a, int n, int* cap, size_t size) {
    if (n < *cap) return a;
    *cap = *cap ? 2 * *cap : 16;
    return xrealloc(a, (size_t)*cap * size);
}

static void push_work(SchedPlan* p, SchedWork w) {
    p->work = grow(p->work, p->n_work, &p->cap_work, sizeof(SchedWork));
    p->work[p->n_work++] = w;
}

static void push_seq(SchedSeq*** a, int* n, int* cap, SchedSeq* s) {
    *a = grow(*a, *n, cap, sizeof(SchedSeq*));
    (*a)[(*n)++] = s;
}

// The next piece of work of a sequence: its next prefill chunk (aligned to multiples of
// the chunk, so recomputation repeats the first pass exactly) or one decode row.
static SchedWork next_work(const SchedConfig* cfg, SchedSeq* s) {
    SchedWork w;
    w.seq = s;
    w.pos0 = s->n_computed;
    if (s->n_computed < s->n_prompt) {
        int end = (s->n_computed / cfg->chunk + 1) * cfg->chunk;
        if (end > s->n_prompt) end = s->n_prompt;
        w.kind = WORK_PREFILL;
        w.n = end - s->n_computed;
    } else {
        w.kind = WORK_DECODE;
        w.n = 1;
    }
    w.sample = !s->no_sample && w.pos0 + w.n == s->n_known;
    return w;
}

static int by_order(const void* a, const void* b) {
    const SchedSeq* x = *(SchedSeq* const*)a;
    const SchedSeq* y = *(SchedSeq* const*)b;
    return (x->order > y->order) - (x->order < y->order);
}

static void preempt(BlockManager* bm, SchedPlan* p, SchedSeq* s) {
    block_table_release(bm, &s->table);
    s->n_computed = 0;
    s->state = SEQ_WAITING;
    s->n_preemptions++;
    push_seq(&p->preempted, &p->n_preempted, &p->cap_preempted, s);
}

// Waiting sequences newer than `older` that hold blocks (forked samples not yet admitted)
// give them up, newest first, until need blocks are free; they recompute their positions
// when admitted, as a preempted sequence does. wait: (n_wait) sorted by order.
static void drop_waiting_blocks(BlockManager* bm, SchedSeq** wait, int n_wait, long older, int need) {
    for (int j = n_wait - 1; j >= 0 && need > bm->n_free; j--) {
        SchedSeq* q = wait[j];
        if (q->order <= older || q->table.n_ids == 0) continue;
        block_table_release(bm, &q->table);
        q->n_computed = 0;
    }
}

// Prepares the blocks of w and records its copy-on-write copy (at most one).
static void prepare(BlockManager* bm, SchedPlan* p, SchedWork w) {
    BlockCopy copy;
    int n_copies = 0;
    etx_status st = block_table_prepare(bm, &w.seq->table, w.n, &copy, &n_copies);
    (void)st; // callers checked block_table_blocks_needed <= n_free, so this cannot fail
    if (n_copies) {
        p->copies = grow(p->copies, p->n_copies, &p->cap_copies, sizeof(BlockCopy));
        p->copies[p->n_copies++] = copy;
    }
    push_work(p, w);
}

void sched_plan_step(BlockManager* bm, const SchedConfig* cfg, SchedSeq** seqs, int n_seqs, SchedPlan* p) {
    p->n_work = p->n_copies = p->n_preempted = p->n_failed = 0;
    SchedSeq** run = xmalloc((size_t)(n_seqs ? n_seqs : 1) * sizeof(SchedSeq*));
    SchedSeq** wait = xmalloc((size_t)(n_seqs ? n_seqs : 1) * sizeof(SchedSeq*));
    int n_run = 0, n_wait = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i]->state == SEQ_RUNNING) run[n_run++] = seqs[i];
        else if (seqs[i]->state == SEQ_WAITING) wait[n_wait++] = seqs[i];
    }
    qsort(run, (size_t)n_run, sizeof(SchedSeq*), by_order);
    qsort(wait, (size_t)n_wait, sizeof(SchedSeq*), by_order);

    // 1. running sequences, oldest first; the newest unplanned one makes room when needed
    int tokens = 0, running = 0, last = n_run - 1;
    for (int i = 0; i <= last; i++) {
        SchedSeq* s = run[i];
        SchedWork w = next_work(cfg, s);
        if (w.kind == WORK_PREFILL && tokens + w.n > cfg->max_step_tokens) {
            running++; // keeps its slot and blocks; its chunk waits for a step with room
            continue;
        }
        int need = block_table_blocks_needed(bm, &s->table, w.n);
        if (need > bm->n_free && cfg->reclaim) cfg->reclaim(cfg->reclaim_ctx, bm, need); // cached blocks go first,
        drop_waiting_blocks(bm, wait, n_wait, -1, need); // then waiting samples' shared ones
        while (need > bm->n_free && last > i) preempt(bm, p, run[last--]);
        if (need > bm->n_free) { // nothing newer left to take from: this one waits
            preempt(bm, p, s);
            break;
        }
        prepare(bm, p, w);
        tokens += w.n;
        running++;
    }

    // 2. admission, oldest first (preempted sequences keep their place), never past a
    //    sequence that does not fit yet, so no request starves behind younger ones
    //    (sequences preempted in this step are not in wait[]: they wait for the next one)
    for (int i = 0; i < n_wait && running < cfg->max_batch; i++) {
        SchedSeq* s = wait[i];
        // everything it already holds plus the next token must fit an empty pool
        int total = sched_blocks_for(bm, s->n_known + 1);
        if (total > bm->n_blocks) {
            s->state = SEQ_FINISHED;
            push_seq(&p->failed, &p->n_failed, &p->cap_failed, s);
            continue;
        }
        SchedWork w = next_work(cfg, s);
        if (tokens + w.n > cfg->max_step_tokens) break;
        const int need = block_table_blocks_needed(bm, &s->table, w.n);
        if (need > bm->n_free && cfg->reclaim) cfg->reclaim(cfg->reclaim_ctx, bm, need);
        drop_waiting_blocks(bm, wait, n_wait, s->order, need);
        if (need > bm->n_free) break;
        s->state = SEQ_RUNNING;
        prepare(bm, p, w);
        tokens += w.n;
        running++;
    }
    free(run);
    free(wait);
}

void sched_commit(SchedPlan* p) {
    for (int i = 0; i < p->n_work; i++) {
        SchedWork* w = &p->work[i];
        if (!w->seq) continue; // the engine dropped it (its request failed)
        block_table_commit(&w->seq->table, w->n);
        w->seq->n_computed += w->n;
    }
}

void sched_finish(BlockManager* bm, SchedSeq* s) {
    block_table_release(bm, &s->table);
    s->state = SEQ_FINISHED;
}
