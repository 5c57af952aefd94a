/*
 * scheduler.h — continuous batching: which sequences run in the next engine step, and
 * on which tokens.
 *
 * Each step the scheduler plans, in order of submission:
 *   1. the running sequences: a decode row (one token) each, or, while a prompt is being
 *      processed, its next prefill chunk; when the KV pool cannot hold a row, the most
 *      recently submitted running sequence is preempted (its blocks freed, its tokens
 *      kept) until the row fits;
 *   2. admission: waiting sequences (preempted ones first, as they are older) join while
 *      there is a batch slot, room in the step's token budget and KV blocks for their
 *      first chunk. A waiting sequence may already hold blocks (a forked sample sharing
 *      its group's prefix); when an older sequence needs room, newer waiting ones give
 *      their blocks up first (they recompute later, bit for bit, like a preempted one).
 * A preempted sequence is recomputed when it is admitted again: its prompt in the same
 * aligned chunks as the first time, then its generated tokens as decode rows whose
 * outputs are discarded ("replay"). Prefill chunks always cover [k*chunk, (k+1)*chunk)
 * of the prompt and decode rows are computed row by row identically at any batch size,
 * so recomputation rebuilds the cache bit for bit and a preempted request produces the
 * same tokens as one that never was. A sequence whose tokens cannot fit even an empty
 * pool fails with a reason; nothing is dropped silently.
 *
 * The scheduler is pure bookkeeping over the block manager (kv_blocks.h): the engine
 * executes the plan (copies, prefill chunks, decode rows) and then commits it.
 */
#ifndef ETX_SCHEDULER_H
#define ETX_SCHEDULER_H

#include "common.h"
#include "engine/kv_blocks.h"

typedef enum { SEQ_WAITING = 0, SEQ_RUNNING, SEQ_FINISHED } SeqState;

// A sequence as the scheduler sees it (embedded in the engine's request).
typedef struct {
    int id;          // the engine's request id
    long order;      // submission order: admission and preemption priority
    int n_prompt;    // prompt tokens
    int n_known;     // prompt + generated tokens so far
    int n_computed;  // positions held in the KV cache (== table.n_pos)
    SeqState state;
    BlockTable table;    // a waiting sequence may hold blocks too: a forked sample shares
                         // its group's prefix before it is admitted (engine.c)
    int n_preemptions;
    int no_sample;   // 1: never sampled (a sample group's shared prefix: its last chunk
                     // computes positions only; the engine forks it when it is done)
} SchedSeq;

typedef struct {
    int max_batch;       // sequences running at once (>= 1)
    int max_step_tokens; // token rows per step, prefill and decode together (>= chunk)
    int chunk;           // prefill chunk length; chunks are aligned to multiples of it
    // optional: asked for blocks before anything is given up (waiting sequences' shared
    // blocks, preemption, admission): frees what it can towards `need` free blocks (the
    // engine's prefix cache, prefix_cache.h)
    int (*reclaim)(void* ctx, BlockManager* bm, int need);
    void* reclaim_ctx;
} SchedConfig;

typedef enum { WORK_PREFILL = 0, WORK_DECODE } WorkKind;

// One piece of a step: tokens pos0 .. pos0+n-1 of seq (prompt, then generated tokens).
typedef struct {
    SchedSeq* seq;
    WorkKind kind;
    int pos0;
    int n;          // decode: 1
    int sample;     // 1: the last row's logits pick the sequence's next token
} SchedWork;

// What one step does. Buffers grow as needed and are reused across steps.
typedef struct {
    SchedWork* work;     // (n_work) prefill chunks and decode rows, in submission order
    int n_work, cap_work;
    BlockCopy* copies;   // (n_copies) copy-on-write block copies to do before any work
    int n_copies, cap_copies;
    SchedSeq** preempted; // (n_preempted) sequences preempted this step (now waiting)
    int n_preempted, cap_preempted;
    SchedSeq** failed;   // (n_failed) sequences that can never fit; the engine fails them
    int n_failed, cap_failed;
} SchedPlan;

etx_status sched_config_validate(const SchedConfig* c);
void build_sched_plan(SchedPlan* p);
void free_sched_plan(SchedPlan* p);

// Blocks a sequence needs to hold n positions.
int sched_blocks_for(const BlockManager* bm, int n_positions);

// Plans the next step over seqs (any order; finished ones are ignored). Block tables are
// prepared (blocks allocated, copies recorded); a preempted sequence's blocks are freed
// and its n_computed reset to 0. An empty plan with unfinished sequences left cannot
// happen: a sequence that fits nowhere is put in plan->failed instead.
void sched_plan_step(BlockManager* bm, const SchedConfig* cfg, SchedSeq** seqs, int n_seqs, SchedPlan* plan);

// After the engine ran the plan: each work's positions are now in the cache (works whose
// seq the engine set to NULL, because their request failed, are skipped).
void sched_commit(SchedPlan* plan);

// Ends a sequence (finished or failed): its blocks go back to the pool.
void sched_finish(BlockManager* bm, SchedSeq* s);

#endif // ETX_SCHEDULER_H
