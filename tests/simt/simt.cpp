/*
 * simt.cpp — the SIMT emulator's engine (tests/simt/simt.h): fibers, the block scheduler,
 * barriers, warp intrinsics, divergence checks, the shared-memory race detector, stream
 * capture and the runtime API.
 *
 * A launch runs its blocks on the calling OS thread, in an order drawn from a seeded
 * random generator (SIMT_SEED, default fixed; printed with every failure). Up to
 * SIMT_RESIDENT blocks (default 3) are resident at once, each with its own fibers: after
 * a __syncthreads completes, the scheduler picks a resident block at random to run next,
 * so blocks interleave at their barriers, and code that assumes blocks run in order, or
 * one at a time, or that sees another block's writes without a protocol, fails. Static
 * __shared__ variables live in the section "simt_shared"; the part of it the launch has
 * touched is saved and restored per block when the scheduler switches blocks (the race
 * detector's hooks record the extent). Dynamic shared memory is one buffer per resident
 * block.
 *
 * The threads of a block are fibers, each with its own stack (allocated once, grown to
 * the largest launch seen, reused by every later launch). A pass resumes the runnable
 * fibers of the running block in a freshly shuffled order; a fiber runs until it blocks at
 * a barrier or returns from the kernel, then switches to the next runnable one (or back to
 * the scheduler). The last thread to arrive at a __syncthreads completes it and returns to
 * the scheduler, which starts a new pass (maybe of another block); the last lane to arrive
 * at a warp intrinsic completes it and carries on.
 *
 * Race detector (racecheck): the kernel files that use shared memory are compiled with
 * AddressSanitizer's out-of-line checks (CMakeLists.txt, etx_emu_wrappers), so each of
 * their loads and stores calls __asan_load<N>/__asan_store<N>, defined here: they record
 * the access in a shadow per byte of shared memory (the last writer, the last two readers,
 * with the time and the code address) and abort when two threads of a block touch a byte,
 * at least one writing, within one barrier interval: no __syncthreads between them and,
 * for two lanes of one warp, no __syncwarp naming both (CUDA guarantees memory ordering
 * for __syncwarp, not for shuffles or votes; SIMT_RACECHECK=warp treats every warp
 * intrinsic as ordering, SIMT_RACECHECK=0 turns the detector off). It checks the first
 * SIMT_RACE_BLOCKS blocks (default 2, 0: all) of each launch in the random block order:
 * a race is almost always in every block's code path, and checking costs. In the sanitized build
 * the hooks then call ASan's own checks (dlsym RTLD_NEXT); elsewhere they stand alone.
 *
 * Switches are a few instructions of assembly on x86-64 (callee-saved registers and the
 * stack pointer); elsewhere ucontext. Under AddressSanitizer (its runtime is linked into
 * the test executables, found through weak symbols) every switch is announced with
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber, so ASan knows which
 * stack is live.
 */
#include "simt.h"

#include <chrono>
#include <dlfcn.h>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#if !defined(__x86_64__) || defined(SIMT_UCONTEXT)
#define SIMT_USE_UCONTEXT 1
#include <ucontext.h>
#endif

// AddressSanitizer's fiber annotations; null unless the ASan runtime is linked in.
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size) __attribute__((weak));
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old)
    __attribute__((weak));
}

namespace simt {
namespace detail {

Thread* g_thread = nullptr;
uint3 g_tid = {0, 0, 0};
thread_local bool g_pre_entry = false; // the running thread is before its ETX_PDL_ENTRY in a checked launch
                                       // (thread_local: see g_race_active)
uintptr_t g_ctx_lo = 0;   // the running launch's captured arguments: [g_ctx_lo, + g_ctx_len)
size_t g_ctx_len = 0;
uint3 g_block_idx = {0, 0, 0};
dim3 g_block_dim;
dim3 g_grid_dim;
unsigned char* g_dyn_smem = nullptr;
const char* g_launch_name = nullptr;

namespace {

enum State { RUNNABLE = 0, WAIT_BAR, WAIT_WARP, EXITED };

// One emulated thread. `t` first: simt::Thread* and Fiber* are the same pointer.
struct Fiber {
    Thread t;
    int state;
    // the warp op this lane waits at
    int wop, warg, wwidth;
    unsigned wmask;
    uint64_t wval, wres;
    int bar_result; // __syncthreads_count of the round this thread waited at
    // race detector: the time of this lane's last completed __syncwarp and its lanes
    uint32_t wsync_time;
    unsigned wsync_mask;
    // context
    void* sp; // saved stack pointer (x86-64)
#ifdef SIMT_USE_UCONTEXT
    ucontext_t uc;
#endif
    bool started;
    void* stack_lo;
    size_t stack_size;
    void* asan_fake;
};

// scheduler context (the launching thread's stack)
void* g_sched_sp = nullptr;
#ifdef SIMT_USE_UCONTEXT
ucontext_t g_sched_uc;
#endif
void* g_sched_fake = nullptr;
bool g_from_sched = false; // the running fiber was entered from the scheduler
const void* g_sched_stack_lo = nullptr;
size_t g_sched_stack_size = 0;

// The pool; the first n are the running block's threads. Never destroyed (no exit-time
// destructor, so leak checkers still see every fiber as reachable).
std::vector<Fiber*>& g_fibers = *new std::vector<Fiber*>();
size_t g_stack_bytes = 0;

// One resident block: its fibers (a slice of the pool) and its barrier state.
struct Block {
    uint3 idx;
    Fiber** fib;                 // its g_n threads
    bool active;                 // holds a block that has not finished
    unsigned n_exited;           // threads that returned
    unsigned bar_count;          // threads waiting at __syncthreads
    int bar_sum;                 // their predicates
    bool barrier_done;           // the last pass ended at a completed __syncthreads
    uint32_t bar_time;           // race detector: time of the last barrier (or block switch)
    bool race_on;                // race detector: this block's accesses are checked
    std::vector<unsigned> alive;   // per warp: lanes that exist and have not exited
    std::vector<unsigned> pending; // per warp: lanes waiting at a warp op
    std::vector<unsigned> order;   // the pass's order of thread ids
    std::vector<unsigned> pos;     // pos[t]: t's place in order
    unsigned char* dyn;          // dynamic shared memory (g_smem_bytes)
    std::vector<unsigned char> saved; // its static shared memory while another block runs
    size_t saved_lo, saved_hi;   // the saved range (offsets into the section; lo is 0)
};

// the running launch
void (*g_fn)(void*) = nullptr;
void* g_ctx = nullptr;
unsigned g_n = 0;         // threads per block
std::vector<Block>& g_slots = *new std::vector<Block>(); // resident blocks
Block* g_blk = nullptr;   // the running block
Block* g_smem_owner = nullptr; // whose static shared memory is in the section
size_t g_smem_bytes = 0;
bool g_strict = false;      // SIMT_STRICT=1: undefined shuffle reads abort
bool g_warned_read = false; // an undefined shuffle read was reported in this launch
thread_local bool t_in_launch = false; // this OS thread is inside launch (a kernel launching a kernel)
unsigned long g_launch_no = 0;
std::mutex g_launch_mutex;
uint64_t g_seed = 0;        // SIMT_SEED
uint64_t g_rng = 0;         // the launch's generator (splitmix64)
uint32_t g_clock = 1;       // race detector: advanced by every barrier and __syncwarp

uint64_t rng_next() {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
// uniform in [0, n)
unsigned rng_below(unsigned n) { return (unsigned)(((rng_next() >> 32) * (uint64_t)n) >> 32); }

// -- race detector state ------------------------------------------------------------

// Per byte of shared memory: the last write and the last two reads by distinct threads,
// each with its thread (linear id), time (g_clock) and code address.
struct Shadow {
    uint32_t wt, r1t, r2t;
    uint16_t wtid, r1tid, r2tid, pad;
    const void* wpc;
    const void* r1pc;
    const void* r2pc;
};
int g_race_mode = 1;      // 0 off, 1 on (__syncwarp orders), 2 on (every warp intrinsic orders)
unsigned g_race_blocks = 2; // blocks checked per launch (SIMT_RACE_BLOCKS; 0: all)
// thread_local: a process may run launches on several OS threads (one engine per
// emulated device), and the hooks also see host code of the kernel files (launchers,
// device.cu) run by threads that are not inside a launch
thread_local bool g_race_active = false; // the running block is checked (its race_on)
bool g_dep_check = false;   // the running launch is an ETX_LAUNCH: ETX_PDL_ENTRY is required
uintptr_t g_sec_lo = 0;   // the simt_shared section
size_t g_sec_len = 0;
Shadow* g_sec_shadow = nullptr;
uintptr_t g_static_lo = 0; // the kernel files' static storage outside simt_shared (simt_shared.ld)
size_t g_static_len = 0;
uintptr_t g_dyn_lo = 0;   // the running block's dynamic shared memory
size_t g_dyn_len = 0;
Shadow* g_dyn_shadow = nullptr;
size_t g_dyn_shadow_len = 0;

cudaError_t g_last_error = cudaSuccess;

// -- the driver and fork() ------------------------------------------------------
// A CUDA driver, once initialised, does not survive fork(): in the child every runtime call
// fails with cudaErrorInitializationError. Seen on the first GPU run (H200, CUDA 13.0,
// driver 580): the kernel suites' main() asked for the device count, Check forked a process
// per test, and every test of six suites failed. The emulator keeps the process that first
// called it and fails the same way in any other, so a suite that touches the device before
// it forks fails here, not on the first GPU it meets. (exec() starts afresh, as CUDA does.)
pid_t g_driver_pid = 0;

bool driver_lost() {
    const pid_t me = getpid();
    if (g_driver_pid == 0) g_driver_pid = me;
    return g_driver_pid != me;
}

// -- context switching --------------------------------------------------------

#ifndef SIMT_USE_UCONTEXT
// simt_ctx_switch(save, to): pushes the callee-saved registers, stores rsp in *save,
// loads `to` and pops the target's registers. simt_ctx_start: a new fiber's first
// return address; calls r13(r12) and never returns.
asm(R"(
    .text
    .p2align 4
    .globl simt_ctx_switch
    .hidden simt_ctx_switch
    .type simt_ctx_switch,@function
simt_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size simt_ctx_switch, .-simt_ctx_switch
    .p2align 4
    .globl simt_ctx_start
    .hidden simt_ctx_start
    .type simt_ctx_start,@function
simt_ctx_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size simt_ctx_start, .-simt_ctx_start
)");
#endif

} // namespace
} // namespace detail
} // namespace simt

#ifndef SIMT_USE_UCONTEXT
extern "C" void simt_ctx_switch(void** save, void* to);
extern "C" void simt_ctx_start();
#endif

namespace simt {
namespace detail {
namespace {

[[noreturn]] void fiber_main(Fiber* f);

#ifdef SIMT_USE_UCONTEXT
void fiber_entry_uc() { fiber_main(static_cast<Fiber*>(static_cast<void*>(g_thread))); }
#endif

// Scheduler -> fiber f; returns when a fiber switches back to the scheduler (the end of
// a pass: no runnable thread after the last one that ran).
void resume(Fiber* f) {
    g_thread = &f->t;
    g_tid = f->t.tid;
    g_pre_entry = g_dep_check && !f->t.dep_entered;
    g_from_sched = true;
    if (__sanitizer_start_switch_fiber) __sanitizer_start_switch_fiber(&g_sched_fake, f->stack_lo, f->stack_size);
#ifdef SIMT_USE_UCONTEXT
    swapcontext(&g_sched_uc, &f->uc);
#else
    simt_ctx_switch(&g_sched_sp, f->sp);
#endif
    if (__sanitizer_finish_switch_fiber) __sanitizer_finish_switch_fiber(g_sched_fake, nullptr, nullptr);
}

// After a switch into fiber f (its first entry, or its return from suspend); a switch
// from the scheduler tells ASan's runtime where the scheduler's stack is.
inline void arrived(Fiber* f) {
    if (__sanitizer_finish_switch_fiber) {
        if (g_from_sched) __sanitizer_finish_switch_fiber(f->asan_fake, &g_sched_stack_lo, &g_sched_stack_size);
        else __sanitizer_finish_switch_fiber(f->asan_fake, nullptr, nullptr);
    }
    g_from_sched = false;
}

// The next runnable thread after place `after` of the pass's order, or null.
inline Fiber* next_runnable(int after) {
    const Block* b = g_blk;
    for (unsigned i = (unsigned)(after + 1); i < g_n; i++) {
        Fiber* f = b->fib[b->order[i]];
        if (f->state == RUNNABLE) return f;
    }
    return nullptr;
}

// Fiber f -> the scheduler (the end of a pass); returns when f is resumed.
void to_scheduler(Fiber* f) {
    if (__sanitizer_start_switch_fiber)
        __sanitizer_start_switch_fiber(&f->asan_fake, g_sched_stack_lo, g_sched_stack_size);
#ifdef SIMT_USE_UCONTEXT
    swapcontext(&f->uc, &g_sched_uc);
#else
    simt_ctx_switch(&f->sp, g_sched_sp);
#endif
    arrived(f);
}

// Fiber f blocks: switch straight to the next runnable thread of the pass, or to the
// scheduler when there is none; returns when f is resumed.
void suspend(Fiber* f) {
    Fiber* next = next_runnable((int)g_blk->pos[f->t.linear]);
    if (!next) {
        to_scheduler(f);
        return;
    }
    g_thread = &next->t;
    g_tid = next->t.tid;
    g_pre_entry = g_dep_check && !next->t.dep_entered;
    if (__sanitizer_start_switch_fiber) __sanitizer_start_switch_fiber(&f->asan_fake, next->stack_lo, next->stack_size);
#ifdef SIMT_USE_UCONTEXT
    swapcontext(&f->uc, &next->uc);
#else
    simt_ctx_switch(&f->sp, next->sp);
#endif
    arrived(f);
}

// Prepares a parked fiber whose first resume enters fiber_main.
void start_frame(Fiber* f) {
    char* top = (char*)f->stack_lo + f->stack_size;
#ifdef SIMT_USE_UCONTEXT
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, fiber_entry_uc, 0);
#else
    // rsp after the six pops and the ret must be 16-byte aligned at simt_ctx_start's call.
    // The tops are staggered by a fiber-dependent multiple of 64 bytes: stacks are page
    // aligned, and hot frames at the same page offset would all map to one cache set.
    const uintptr_t color = ((uintptr_t)f->t.linear * 64 * 7) % 4096;
    uintptr_t t = ((uintptr_t)top - color) & ~(uintptr_t)15;
    void** sp = (void**)(t - 72);
    sp[0] = nullptr;                    // r15
    sp[1] = nullptr;                    // r14
    sp[2] = (void*)&fiber_main;         // r13: function
    sp[3] = (void*)f;                   // r12: argument
    sp[4] = nullptr;                    // rbx
    sp[5] = nullptr;                    // rbp
    sp[6] = (void*)&simt_ctx_start;     // return address
    f->sp = sp;
#endif
    f->started = true;
}

// -- diagnostics --------------------------------------------------------------

// "0-15,32,40-47" from the linear ids of the block's threads that satisfy pred
template <class P> std::string id_ranges(P pred) {
    std::string s;
    unsigned i = 0;
    int shown = 0;
    while (i < g_n) {
        if (!pred(g_blk->fib[i])) { i++; continue; }
        unsigned j = i;
        while (j + 1 < g_n && pred(g_blk->fib[j + 1])) j++;
        if (shown == 16) { s += ",..."; break; }
        char buf[48];
        if (j == i) snprintf(buf, sizeof buf, "%s%u", s.empty() ? "" : ",", i);
        else snprintf(buf, sizeof buf, "%s%u-%u", s.empty() ? "" : ",", i, j);
        s += buf;
        shown++;
        i = j + 1;
    }
    return s.empty() ? std::string("none") : s;
}

const char* op_name(int op) {
    switch (op) {
    case W_SYNC: return "__syncwarp";
    case W_SHFL_IDX: return "__shfl_sync";
    case W_SHFL_UP: return "__shfl_up_sync";
    case W_SHFL_DOWN: return "__shfl_down_sync";
    case W_SHFL_XOR: return "__shfl_xor_sync";
    case W_VOTE: return "__ballot_sync/__any_sync/__all_sync";
    case W_MATCH: return "__match_any_sync";
    case W_REDUCE: return "__reduce_*_sync";
    case W_MMA: return "mma.sync.m16n8k16";
    default: return "?";
    }
}

void block_header(std::string& m) {
    char buf[320];
    snprintf(buf, sizeof buf,
             "simt: kernel launch #%lu (SIMT_SEED=%llu), grid (%u,%u,%u), block (%u,%u,%u): in block (%u,%u,%u) "
             "(thread ids below are linear: x + y*blockDim.x + z*blockDim.x*blockDim.y)\n",
             g_launch_no, (unsigned long long)g_seed, g_grid_dim.x, g_grid_dim.y, g_grid_dim.z, g_block_dim.x, g_block_dim.y, g_block_dim.z,
             g_block_idx.x, g_block_idx.y, g_block_idx.z);
    m += buf;
}

// Where every thread of the block is, one line per kind of wait.
void describe_states(std::string& m) {
    m += "  threads waiting at __syncthreads: " + id_ranges([](Fiber* f) { return f->state == WAIT_BAR; }) + "\n";
    m += "  threads exited: " + id_ranges([](Fiber* f) { return f->state == EXITED; }) + "\n";
    m += "  threads runnable: " + id_ranges([](Fiber* f) { return f->state == RUNNABLE; }) + "\n";
    for (unsigned w = 0; w < g_blk->pending.size(); w++) {
        // one line per (intrinsic, mask) group of waiting lanes
        unsigned left = g_blk->pending[w];
        while (left) {
            const Fiber* f0 = g_blk->fib[32 * w + __builtin_ctz(left)];
            unsigned group = 0;
            for (unsigned m = left; m; m &= m - 1) {
                const Fiber* f = g_blk->fib[32 * w + __builtin_ctz(m)];
                if (f->wop == f0->wop && f->wmask == f0->wmask) group |= 1u << __builtin_ctz(m);
            }
            left &= ~group;
            char buf[240];
            snprintf(buf, sizeof buf,
                     "  warp %u (threads %u-%u): lanes 0x%08x wait at %s(mask 0x%08x), for lanes 0x%08x that are "
                     "elsewhere\n",
                     w, 32 * w, std::min(32 * w + 31, g_n - 1), group, op_name(f0->wop), f0->wmask,
                     f0->wmask & g_blk->alive[w] & ~g_blk->pending[w]);
            m += buf;
        }
    }
}

[[noreturn]] void fail(const std::string& what, bool states) {
    std::string m;
    block_header(m);
    m += "  " + what + "\n";
    if (states) describe_states(m);
    fputs(m.c_str(), stderr);
    fflush(stderr);
    abort();
}

// -- warp ops -------------------------------------------------------------------

// Source lane of a shuffle per PTX shfl.sync (segment of `width` lanes; out-of-range
// sources give the caller's own lane).
unsigned shfl_source(int op, unsigned lane, int arg, int width) {
    const unsigned segmask = (unsigned)(32 - width) & 31u;
    const unsigned b = (unsigned)arg & 31u;
    const unsigned min_lane = lane & segmask;
    const unsigned max_lane = min_lane | (31u & ~segmask);
    int j;
    bool ok;
    switch (op) {
    case W_SHFL_UP: j = (int)lane - (int)b; ok = j >= (int)min_lane; break;
    case W_SHFL_DOWN: j = (int)(lane + b); ok = j <= (int)max_lane; break;
    case W_SHFL_XOR: j = (int)(lane ^ b); ok = j <= (int)max_lane; break;
    default: j = (int)(min_lane | (b & ~segmask)); ok = true; break;
    }
    return ok ? (unsigned)j : lane;
}

// Completes the op of the group `mask` in warp w if every live lane of it has arrived.
bool try_complete(unsigned w, unsigned mask) {
    const unsigned need = mask & g_blk->alive[w];
    if (need & ~g_blk->pending[w]) return false;
    if (!need) return false;
    Fiber** lanes = &g_blk->fib[32 * w];
    const int op = lanes[__builtin_ctz(need)]->wop;
    for (unsigned m = need; m; m &= m - 1) {
        Fiber* f = lanes[__builtin_ctz(m)];
        if (f->wop != op || f->wmask != mask || (op == W_REDUCE && f->warg != lanes[__builtin_ctz(need)]->warg)) {
            char buf[320];
            snprintf(buf, sizeof buf,
                     "warp %u: lanes disagree on the warp intrinsic: lane %d at %s(mask 0x%08x), lane %d at %s(mask 0x%08x)",
                     w, __builtin_ctz(need), op_name(op), mask, __builtin_ctz(m), op_name(f->wop), f->wmask);
            fail(buf, true);
        }
    }
    switch (op) {
    case W_SHFL_IDX:
    case W_SHFL_UP:
    case W_SHFL_DOWN:
    case W_SHFL_XOR:
        for (unsigned m = need; m; m &= m - 1) {
            const unsigned l = (unsigned)__builtin_ctz(m);
            Fiber* f = lanes[l];
            const int width = f->wwidth;
            if (width < 1 || width > 32 || (width & (width - 1))) {
                char buf[160];
                snprintf(buf, sizeof buf, "thread %u: %s width %d is not a power of two in 1..32", 32 * w + l,
                         op_name(op), width);
                fail(buf, false);
            }
            const unsigned j = shfl_source(op, l, f->warg, width);
            if (need >> j & 1) {
                f->wres = lanes[j]->wval;
                continue;
            }
            // CUDA: the value read from a lane that does not take part is undefined.
            // Here it is a poison value, reported once per launch (abort under SIMT_STRICT).
            f->wres = 0xdeadbeefdeadbeefull;
            if (g_strict || !g_warned_read) {
                char buf[320];
                snprintf(buf, sizeof buf,
                         "thread %u (warp %u lane %u): %s(mask 0x%08x) reads lane %u, which %s; the value is "
                         "undefined (the emulator returns 0xdeadbeef bytes)",
                         32 * w + l, w, l, op_name(op), mask, j,
                         !(mask >> j & 1) ? "is outside the mask"
                                          : (32 * w + j >= g_n ? "does not exist (partial warp)" : "has exited"));
                if (g_strict) fail(buf, true);
                std::string m;
                block_header(m);
                fprintf(stderr, "%s  warning: %s (reported once per launch; SIMT_STRICT=1 aborts)\n", m.c_str(), buf);
                g_warned_read = true;
            }
        }
        break;
    case W_VOTE: {
        unsigned ballot = 0;
        for (unsigned m = need; m; m &= m - 1)
            if (lanes[__builtin_ctz(m)]->wval) ballot |= 1u << __builtin_ctz(m);
        for (unsigned m = need; m; m &= m - 1) lanes[__builtin_ctz(m)]->wres = ballot | (uint64_t)need << 32;
        break;
    }
    case W_MATCH:
        for (unsigned m = need; m; m &= m - 1) {
            Fiber* f = lanes[__builtin_ctz(m)];
            unsigned eq = 0;
            for (unsigned k = need; k; k &= k - 1)
                if (lanes[__builtin_ctz(k)]->wval == f->wval) eq |= 1u << __builtin_ctz(k);
            f->wres = eq;
        }
        break;
    case W_REDUCE: {
        const int rop = lanes[__builtin_ctz(need)]->warg;
        uint32_t acc = (uint32_t)lanes[__builtin_ctz(need)]->wval;
        for (unsigned m = need & (need - 1); m; m &= m - 1) {
            const uint32_t v = (uint32_t)lanes[__builtin_ctz(m)]->wval;
            switch (rop) {
            case R_ADD: acc += v; break;
            case R_MIN: acc = v < acc ? v : acc; break;
            case R_MAX: acc = v > acc ? v : acc; break;
            case R_AND: acc &= v; break;
            case R_OR: acc |= v; break;
            default: acc ^= v; break;
            }
        }
        for (unsigned m = need; m; m &= m - 1) lanes[__builtin_ctz(m)]->wres = acc;
        break;
    }
    case W_MMA: {
        // .aligned: all 32 lanes take part (none exited, none of a partial warp)
        if (need != 0xffffffffu) {
            char buf[200];
            snprintf(buf, sizeof buf, "warp %u: mma.sync with lanes 0x%08x only (every lane of the warp must execute it)",
                     w, need);
            fail(buf, true);
        }
        float A[16][16], B[16][8], D[16][8];
        const auto lo = [](uint32_t r) { return bitcast<float>(r << 16); };        // bf16 in the low half
        const auto hi = [](uint32_t r) { return bitcast<float>(r & 0xffff0000u); }; // ... in the high half
        for (unsigned l = 0; l < 32; l++) {
            const MmaLane* op = (const MmaLane*)(uintptr_t)lanes[l]->wval;
            const unsigned g = l / 4, t = l % 4;
            for (int r = 0; r < 4; r++) {
                const unsigned row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
                A[row][col] = lo(op->a[r]);
                A[row][col + 1] = hi(op->a[r]);
            }
            for (int r = 0; r < 2; r++) {
                B[2 * t + 8 * r][g] = lo(op->b[r]);
                B[2 * t + 8 * r + 1][g] = hi(op->b[r]);
            }
            for (int r = 0; r < 4; r++) D[g + 8 * (r >> 1)][2 * t + (r & 1)] = op->c[r];
        }
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                float acc = D[m][n];
                for (int k = 0; k < 16; k++) {
                    const float p = A[m][k] * B[k][n]; // exact
                    acc = acc + p;
                }
                D[m][n] = acc;
            }
        for (unsigned l = 0; l < 32; l++) { // every C read above, so d may be c
            const MmaLane* op = (const MmaLane*)(uintptr_t)lanes[l]->wval;
            const unsigned g = l / 4, t = l % 4;
            for (int r = 0; r < 4; r++) op->d[r] = D[g + 8 * (r >> 1)][2 * t + (r & 1)];
        }
        break;
    }
    default: break;
    }
    for (unsigned m = need; m; m &= m - 1) lanes[__builtin_ctz(m)]->state = RUNNABLE;
    g_blk->pending[w] &= ~need;
    // race detector: __syncwarp orders the shared-memory accesses of its lanes (every warp
    // intrinsic does under SIMT_RACECHECK=warp)
    if (op == W_SYNC || g_race_mode == 2) {
        const uint32_t t = ++g_clock;
        for (unsigned m = need; m; m &= m - 1) {
            lanes[__builtin_ctz(m)]->wsync_time = t;
            lanes[__builtin_ctz(m)]->wsync_mask = need;
        }
    }
    return true;
}

// After a lane of warp w exited: groups that waited only for it can complete.
void recheck_warp(unsigned w) {
    bool again = true;
    while (again && g_blk->pending[w]) {
        again = false;
        for (unsigned m = g_blk->pending[w]; m; m &= m - 1) {
            if (try_complete(w, g_blk->fib[32 * w + __builtin_ctz(m)]->wmask)) {
                again = true;
                break;
            }
        }
    }
}

// -- fibers -------------------------------------------------------------------

// The thread returned from the kernel: bookkeeping, then park until the next block.
// -- grid dependencies ------------------------------------------------------------
// Natively every ETX_LAUNCH kernel may be launched with programmatic dependent launch
// (kernels/cuda_common.cuh): it can start while the kernel before it on the stream is still
// running, and only its ETX_PDL_ENTRY (griddepcontrol.wait) orders it after that kernel's
// writes. A load or store of device memory before the entry, or a thread with no entry at
// all, is a race there that no test of a serial emulator would see; here both abort. The
// loads and stores are those of the instrumented kernel files (race_access below).

// The running kernel's name as its ETX_LAUNCH spells it, for messages.
const char* g_kernel_name = nullptr;
std::string kernel_name() { return g_kernel_name ? g_kernel_name : "(unnamed kernel)"; }

[[noreturn]] __attribute__((noinline)) void report_no_entry(const Fiber* f) {
    fail("grid dependencies: thread " + std::to_string(f->t.linear) + " of kernel " + kernel_name() +
             " returned without ETX_PDL_ENTRY(): launched with programmatic dependent launch on sm_90, a kernel "
             "must begin with it (kernels/cuda_common.cuh)",
         false);
}

void fiber_exit(Fiber* f) {
    if (g_dep_check && !f->t.dep_entered) report_no_entry(f);
    f->state = EXITED;
    g_blk->n_exited++;
    const unsigned w = f->t.linear >> 5;
    g_blk->alive[w] &= ~(1u << (f->t.linear & 31));
    if (g_blk->bar_count > 0) {
        char buf[200];
        snprintf(buf, sizeof buf,
                 "divergent __syncthreads: thread %u (threadIdx (%u,%u,%u)) returned while other threads of its "
                 "block wait at __syncthreads",
                 f->t.linear, f->t.tid.x, f->t.tid.y, f->t.tid.z);
        fail(buf, true);
    }
    if (g_blk->pending[w]) recheck_warp(w);
    suspend(f);
}

[[noreturn]] void fiber_main(Fiber* f) {
    arrived(f);
    for (;;) {
        g_fn(g_ctx);
        fiber_exit(f);
    }
}

size_t stack_bytes() {
    size_t kb = 256;
    if (const char* e = getenv("SIMT_STACK_KB")) {
        long v = atol(e);
        if (v >= 64) kb = (size_t)v;
    }
    return kb * 1024;
}

// Grows the pool to n fibers (stacks with a guard page below; pages are committed as
// they are touched).
void ensure_fibers(unsigned n) {
    if (!g_stack_bytes) g_stack_bytes = stack_bytes();
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    while (g_fibers.size() < n) {
        Fiber* f = new Fiber();
        char* mem = (char*)mmap(nullptr, g_stack_bytes + page, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) {
            fprintf(stderr, "simt: cannot map a %zu-byte fiber stack\n", g_stack_bytes);
            abort();
        }
        mprotect(mem, page, PROT_NONE);
        f->stack_lo = mem + page;
        f->stack_size = g_stack_bytes;
        f->started = false;
        g_fibers.push_back(f);
    }
}

// -- shared memory per block -------------------------------------------------------

// A copy that ASan must not check: the section holds ASan's redzones between variables
// in the sanitized build. 8 bytes at a time (the section is 32-byte aligned and sized).
__attribute__((no_sanitize_address, optimize("no-tree-loop-distribute-patterns"))) void raw_copy(
    unsigned char* dst, const unsigned char* src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        __builtin_memcpy(&v, src + i, 8);
        __builtin_memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++) dst[i] = src[i];
}

// Makes b the running block: its static shared memory goes into the section (the
// previous owner's saved first), its dynamic shared memory and blockIdx become current.
// The whole section is swapped: the compiler does not instrument accesses to __shared__
// scalars and constant indices (ASan proves them in bounds), so the part a kernel
// touches is not known. A block switched to starts a new barrier interval for the race
// detector (it stopped at a barrier; the other block's accesses are not its own).
void make_current(Block* b) {
    if (b != g_smem_owner) {
        Block* o = g_smem_owner;
        if (o && o->active && g_sec_len) {
            if (o->saved.size() < g_sec_len) o->saved.resize(g_sec_len);
            raw_copy(o->saved.data(), (const unsigned char*)g_sec_lo, g_sec_len);
            o->saved_hi = g_sec_len;
        }
        if (b->saved_hi) raw_copy((unsigned char*)g_sec_lo, b->saved.data(), b->saved_hi);
        g_smem_owner = b;
    }
    if (b != g_blk) b->bar_time = ++g_clock;
    g_blk = b;
    g_race_active = b->race_on;
    g_block_idx = b->idx;
    g_dyn_smem = b->dyn;
    g_dyn_lo = (uintptr_t)b->dyn;
    g_dyn_len = b->dyn ? g_smem_bytes : 0;
}

// Puts block number `linear` (x fastest) of the grid into slot b, its threads fresh; it is
// the launch's `nth` block to start (the race detector checks the first few).
void start_block(Block* b, unsigned long long linear, size_t nth) {
    const unsigned n = g_n;
    const unsigned bx = g_block_dim.x, by = g_block_dim.y;
    b->idx = uint3{(unsigned)(linear % g_grid_dim.x), (unsigned)((linear / g_grid_dim.x) % g_grid_dim.y),
                   (unsigned)(linear / ((unsigned long long)g_grid_dim.x * g_grid_dim.y))};
    for (unsigned i = 0; i < n; i++) {
        Fiber* f = b->fib[i];
        f->state = RUNNABLE;
        f->t.linear = i;
        f->t.tid = uint3{i % bx, (i / bx) % by, i / (bx * by)};
        f->t.dep_entered = false;
        f->t.async_n = 0;
        f->t.async_open = 0;
        f->wop = W_NONE;
        f->wsync_time = 0;
        f->wsync_mask = 0;
        if (!f->started) start_frame(f);
        b->order[i] = i;
        b->pos[i] = i;
    }
    const unsigned n_warps = (n + 31) / 32;
    for (unsigned w = 0; w < n_warps; w++) {
        const unsigned lanes = n - 32 * w >= 32 ? 32 : n - 32 * w;
        b->alive[w] = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        b->pending[w] = 0;
    }
    b->n_exited = 0;
    b->bar_count = 0;
    b->bar_sum = 0;
    b->barrier_done = false;
    b->saved_lo = b->saved_hi = 0;
    b->active = true;
    b->race_on = g_race_mode != 0 && (g_race_blocks == 0 || nth < g_race_blocks);
    if (g_smem_bytes) memset(b->dyn, 0xff, g_smem_bytes);
    if (g_blk == b) g_blk = nullptr; // a new block in the running slot: a new interval too
}

// A new pass over block b in a fresh random order, then the first runnable thread, which
// hands on to the next runnable ones; returns at the pass's end. The order: the warps
// shuffled (Fisher-Yates), and within each warp the lanes in the order lane ^ x, x drawn
// per warp (a full shuffle of the threads costs about twice as much in cache misses, and
// finds nothing more: the race detector sees unordered accesses in any order).
void run_pass(Block* b) {
    const unsigned n_warps = (g_n + 31) / 32;
    unsigned warps[32];
    for (unsigned w = 0; w < n_warps; w++) warps[w] = w;
    for (unsigned i = n_warps - 1; i > 0; i--) {
        const unsigned j = rng_below(i + 1);
        const unsigned t = warps[i];
        warps[i] = warps[j];
        warps[j] = t;
    }
    unsigned k = 0;
    for (unsigned i = 0; i < n_warps; i++) {
        const unsigned w = warps[i], x = rng_below(32);
        for (unsigned l = 0; l < 32; l++) {
            const unsigned t = 32 * w + (l ^ x);
            if (t < g_n) b->order[k++] = t;
        }
    }
    for (unsigned i = 0; i < g_n; i++) b->pos[b->order[i]] = i;
    Fiber* first = next_runnable(-1);
    if (!first) fail("deadlock: no thread of the block can run", true);
    b->barrier_done = false;
    resume(first);
}

// How often the scheduler draws the next block: after 1 in SIMT_SWITCH completed
// barriers on average (default 4; 1: after every barrier), and whenever a block finishes.
// Every switch between blocks swaps the whole simt_shared section (make_current).
unsigned switch_every() {
    if (const char* e = getenv("SIMT_SWITCH")) {
        const int v = atoi(e);
        if (v >= 1) return (unsigned)v;
    }
    return 4;
}

unsigned resident_blocks() {
    if (const char* e = getenv("SIMT_RESIDENT")) {
        const int v = atoi(e);
        if (v >= 1 && v <= 64) return (unsigned)v;
    }
    return 3;
}

// Runs every block of the grid: a random permutation of the blocks, up to
// resident_blocks() of them at once; after a completed __syncthreads (1 in
// switch_every()) and when a block finishes, the next block to run is drawn at random
// among the resident ones.
void run_grid() {
    const unsigned long long n_blocks = (unsigned long long)g_grid_dim.x * g_grid_dim.y * g_grid_dim.z;
    std::vector<unsigned> perm((size_t)n_blocks); // gridDim.x <= 2^31 - 1; keep grids small
    for (size_t i = 0; i < perm.size(); i++) perm[i] = (unsigned)i;
    for (size_t i = perm.size() - 1; i > 0; i--) {
        const size_t j = (size_t)(((rng_next() >> 11) * (double)(i + 1)) * (1.0 / 9007199254740992.0));
        std::swap(perm[i], perm[j]);
    }
    const unsigned n_slots = (unsigned)std::min<unsigned long long>(resident_blocks(), n_blocks);
    const unsigned every = switch_every();
    size_t next = 0;
    unsigned live = 0;
    for (unsigned k = 0; k < n_slots; k++) {
        start_block(&g_slots[k], perm[next], next);
        next++;
        live++;
    }
    while (live > 0) {
        unsigned k = rng_below(n_slots);
        while (!g_slots[k].active) k = (k + 1) % n_slots;
        Block* b = &g_slots[k];
        make_current(b);
        for (;;) {
            run_pass(b);
            if (b->n_exited == g_n) {
                b->active = false;
                live--;
                if (next < perm.size()) {
                    start_block(b, perm[next], next);
                    next++;
                    live++;
                }
                break;
            }
            if (b->barrier_done && rng_below(every) == 0) break;
        }
    }
}

} // namespace

// -- entry points called by simt.h ----------------------------------------------

[[noreturn]] static void outside_kernel(const char* what) {
    fprintf(stderr, "simt: %s called outside a kernel\n", what);
    abort();
}

int syncthreads(int pred) {
    Fiber* f = (Fiber*)g_thread;
    if (!f) outside_kernel("__syncthreads");
    Block* b = g_blk;
    if (b->n_exited > 0) {
        char buf[200];
        snprintf(buf, sizeof buf,
                 "divergent __syncthreads: thread %u (threadIdx (%u,%u,%u)) waits at __syncthreads but threads of "
                 "its block have already returned",
                 f->t.linear, f->t.tid.x, f->t.tid.y, f->t.tid.z);
        f->state = WAIT_BAR;
        fail(buf, true);
    }
    b->bar_sum += pred;
    if (++b->bar_count == g_n) {
        // the last to arrive completes the round and hands back to the scheduler, which
        // starts a new pass (of this block or another resident one)
        const int sum = b->bar_sum;
        b->bar_count = 0;
        b->bar_sum = 0;
        for (unsigned i = 0; i < g_n; i++) {
            Fiber* g = b->fib[i];
            if (g->state == WAIT_BAR) g->state = RUNNABLE;
            g->bar_result = sum;
        }
        b->bar_time = ++g_clock;
        b->barrier_done = true;
        to_scheduler(f);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        return f->bar_result;
    }
    f->state = WAIT_BAR;
    suspend(f);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return f->bar_result;
}

uint64_t warp_op(int op, unsigned mask, uint64_t value, int arg, int width) {
    Fiber* f = (Fiber*)g_thread;
    if (!f) outside_kernel(op_name(op));
    const unsigned lane = f->t.linear & 31, w = f->t.linear >> 5;
    if (!(mask >> lane & 1)) {
        char buf[200];
        snprintf(buf, sizeof buf, "thread %u (warp %u lane %u): %s(mask 0x%08x) without its own lane in the mask",
                 f->t.linear, w, lane, op_name(op), mask);
        fail(buf, false);
    }
    f->wop = op;
    f->wmask = mask;
    f->wval = value;
    f->warg = arg;
    f->wwidth = width;
    f->state = WAIT_WARP;
    g_blk->pending[w] |= 1u << lane;
    if (!try_complete(w, mask)) suspend(f);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return f->wres;
}

unsigned activemask() {
    Fiber* f = (Fiber*)g_thread;
    if (!f) outside_kernel("__activemask");
    return g_blk->alive[f->t.linear >> 5];
}

void yield() {
    Fiber* f = (Fiber*)g_thread;
    if (!f) outside_kernel("__nanosleep");
    suspend(f);
}

// -- race detector ------------------------------------------------------------------

namespace {

// "pc 0x... (binary+0xoffset, function)" for a code address: `addr2line -f -C -e binary
// offset` names the line of the access.
std::string describe_pc(const void* pc) {
    char buf[512];
    Dl_info info;
    if (pc && dladdr(pc, &info) && info.dli_fname) {
        snprintf(buf, sizeof buf, "pc %p (%s+0x%lx%s%s)", pc, info.dli_fname,
                 (unsigned long)((uintptr_t)pc - (uintptr_t)info.dli_fbase), info.dli_sname ? ", near " : "",
                 info.dli_sname ? info.dli_sname : "");
    } else {
        snprintf(buf, sizeof buf, "pc %p", pc);
    }
    return buf;
}

[[noreturn]] void report_race(const char* kind, bool dyn, size_t off, bool write, unsigned other, bool other_write,
                              const void* other_pc, const void* pc) {
    const Fiber* f = (const Fiber*)g_thread;
    char buf[640];
    snprintf(buf, sizeof buf,
             "shared-memory race (%s): thread %u %s %s offset %zu (byte 0x%zx), which thread %u %s in the same "
             "barrier interval, with no __syncthreads%s between them\n"
             "    thread %u: %s\n    thread %u: %s\n"
             "  (SIMT_RACECHECK=0 turns the race detector off; the offset is from __start_simt_shared for static "
             "__shared__ variables: `nm -C` on the binary names the variable)",
             kind, f->t.linear, write ? "writes" : "reads", dyn ? "dynamic shared memory" : "static __shared__ memory",
             off, dyn ? off : (size_t)(g_sec_lo + off), other, other_write ? "wrote" : "read",
             (other >> 5) == (f->t.linear >> 5) ? " or __syncwarp" : "", f->t.linear, describe_pc(pc).c_str(), other,
             describe_pc(other_pc).c_str());
    fail(buf, false);
}

// Whether an earlier access by thread `o` at time `t` is ordered before the running
// thread's access now: before the block's last barrier, the thread itself, or a lane of
// its warp that took part in its last __syncwarp after the access.
inline bool ordered(unsigned o, uint32_t t, const Fiber* f, uint32_t bar) {
    if (t < bar || o == f->t.linear) return true;
    return (o >> 5) == (f->t.linear >> 5) && f->wsync_time > t && (f->wsync_mask >> (o & 31) & 1);
}

// The shadow's granule: 2 bytes (the smallest element the kernels keep in shared memory is
// a bf16; two threads writing the two bytes of one granule would be reported).
constexpr unsigned kGranule = 2;

// Checks and updates the shadow for an access of the running thread to bytes
// [off, off + n) of a shared region (sh: its shadow; dyn: dynamic shared memory).
__attribute__((noinline)) void race_check(Shadow* sh, size_t off, size_t n, size_t len, bool dyn, bool write,
                                          const void* pc) {
    const Fiber* f = (const Fiber*)g_thread;
    if (!f || !sh) return;
    const uint32_t now = g_clock, bar = g_blk->bar_time;
    const uint16_t me = (uint16_t)f->t.linear;
    const size_t end = std::min(off + n, len);
    for (size_t i = off / kGranule; i * kGranule < end; i++) {
        Shadow& e = sh[i];
        const size_t at = i * kGranule;
        if (e.wt >= bar && !ordered(e.wtid, e.wt, f, bar))
            report_race(write ? "write after write" : "read after write", dyn, at, write, e.wtid, true, e.wpc, pc);
        if (write) {
            if (e.r1t >= bar && !ordered(e.r1tid, e.r1t, f, bar))
                report_race("write after read", dyn, at, true, e.r1tid, false, e.r1pc, pc);
            if (e.r2t >= bar && !ordered(e.r2tid, e.r2t, f, bar))
                report_race("write after read", dyn, at, true, e.r2tid, false, e.r2pc, pc);
            e.wt = now;
            e.wtid = me;
            e.wpc = pc;
        } else if (e.r1t < bar || e.r1tid == me) {
            e.r1t = now;
            e.r1tid = me;
            e.r1pc = pc;
        } else if (e.r2t < bar || e.r2tid == me) {
            e.r2t = now;
            e.r2tid = me;
            e.r2pc = pc;
        }
        // else: two other threads' reads of this interval are recorded already (a block-wide
        // broadcast read): a later writer conflicts with one of them, so the shadow is left
        // as it is, which saves most of the cost of such reads
    }
}

} // namespace

// A kernel touched its file's static storage outside the shared section (host-side
// variables of the launchers, which a GPU kernel cannot see either, or a __shared__
// variable the compiler put in plain .bss): one in a function template instantiated
// with a lambda has internal linkage and lands in .bss, where every resident block would
// share it (the first vocabulary-pass radix select had this bug).
[[noreturn]] __attribute__((noinline)) void report_escaped_static(uintptr_t a, bool write, const void* pc) {
    const Fiber* f = (const Fiber*)g_thread;
    char buf[640];
    snprintf(buf, sizeof buf,
             "thread %u %s static storage at 0x%zx, outside the emulator's shared-memory section: a __shared__ "
             "variable the compiler did not place in section simt_shared (one in a function template instantiated "
             "with a lambda has internal linkage: declare it in the kernel and pass a pointer, kernels/README.md), "
             "or a host-side static of the kernel file, which a GPU kernel cannot see\n    thread %u: %s\n"
             "  (`nm -C` on the binary names the variable at that address)",
             f ? f->t.linear : 0u, write ? "writes" : "reads", (size_t)a, f ? f->t.linear : 0u,
             describe_pc(pc).c_str());
    fail(buf, false);
}

// One access of n bytes at a by the running thread (called for every load and store of
// the instrumented kernel files that the compiler could not prove in bounds: not those of
// __shared__ scalars or constant indices): shared memory goes to race_check, static
// storage outside the section is reported, the rest (global memory, the stack) returns at
// once.
bool device_address(uintptr_t a);   // inside a cudaMalloc allocation (below)
bool readonly_address(uintptr_t a); // ... that simt::mark_readonly marked

[[noreturn]] __attribute__((noinline)) void report_before_entry(uintptr_t a, bool write, const void* pc) {
    const Fiber* f = (const Fiber*)g_thread;
    char buf[640];
    snprintf(buf, sizeof buf,
             "grid dependencies: thread %u of kernel %s %s device memory at 0x%zx before ETX_PDL_ENTRY(): on "
             "sm_90 the kernel may run while the previous kernel on the stream still writes (programmatic "
             "dependent launch), so nothing but loads from read-only memory (etx_dev_mark_readonly) may come "
             "before the entry (kernels/cuda_common.cuh)\n    thread %u: %s",
             f->t.linear, kernel_name().c_str(), write ? "writes" : "reads", (size_t)a, f->t.linear,
             describe_pc(pc).c_str());
    fail(buf, false);
}

// Whether an access before the entry may be device memory: not the launch's arguments, not
// the running fiber's stack (cheap tests that spare the allocation map's lock for what
// every thread reads on its way into the kernel).
static inline bool pre_entry_suspect(uintptr_t a) {
    if (a - g_ctx_lo < g_ctx_len) return false;
    const Fiber* f = (const Fiber*)g_thread;
    return a - (uintptr_t)f->stack_lo >= f->stack_size;
}

void check_async_source(const void* src) {
    const uintptr_t a = (uintptr_t)src;
    if (g_dep_check && device_address(a) && !readonly_address(a))
        report_before_entry(a, false, __builtin_return_address(0));
}

static inline void race_access(uintptr_t a, size_t n, bool write, const void* pc) {
    // before the grid-dependency entry: only the stack, the launch's arguments, shared
    // memory and loads from read-only allocations (weights) may be touched (checked in
    // every block; after the entry this is one branch)
    if (__builtin_expect(g_pre_entry, 0) && pre_entry_suspect(a) && device_address(a) &&
        (write || !readonly_address(a)))
        report_before_entry(a, write, pc);
    if (!g_race_active) return; // not a checked block, or outside a kernel
    if (__builtin_expect(a - g_sec_lo < g_sec_len, 0))
        race_check(g_sec_shadow, a - g_sec_lo, n, g_sec_len, false, write, pc);
    else if (__builtin_expect(a - g_dyn_lo < g_dyn_len, 0))
        race_check(g_dyn_shadow, a - g_dyn_lo, n, g_dyn_len, true, write, pc);
    else if (__builtin_expect(a - g_static_lo < g_static_len, 0))
        report_escaped_static(a, write, pc);
}
} // namespace detail
} // namespace simt

// The section's bounds (null when no object file has a __shared__ variable).
extern "C" char __start_simt_shared[] __attribute__((weak));
extern "C" char __stop_simt_shared[] __attribute__((weak));
// The emulated kernel files' other static storage (simt_shared.ld; null without it).
extern "C" char __start_simt_kernel_statics[] __attribute__((weak));
extern "C" char __stop_simt_kernel_statics[] __attribute__((weak));

namespace simt {
namespace detail {
namespace {

// Per launch: the mode (SIMT_RACECHECK, SIMT_RACE_BLOCKS); once: the section's shadow.
void race_setup() {
    const char* e = getenv("SIMT_RACECHECK");
    g_race_mode = !e || !*e ? 1 : (e[0] == '0' ? 0 : (strcmp(e, "warp") == 0 ? 2 : 1));
    const char* nb = getenv("SIMT_RACE_BLOCKS");
    g_race_blocks = nb ? (unsigned)atoi(nb) : 2;
    if (g_sec_shadow) return;
    const uintptr_t lo = (uintptr_t)__start_simt_shared, hi = (uintptr_t)__stop_simt_shared;
    if (lo && hi > lo) {
        g_sec_lo = lo;
        g_sec_len = (size_t)(hi - lo);
        g_sec_shadow = (Shadow*)calloc(g_sec_len / kGranule + 1, sizeof(Shadow));
    }
    const uintptr_t slo = (uintptr_t)__start_simt_kernel_statics, shi = (uintptr_t)__stop_simt_kernel_statics;
    if (slo && shi > slo) {
        g_static_lo = slo;
        g_static_len = (size_t)(shi - slo);
    }
}

// Per launch: a shadow for the dynamic shared memory.
void race_launch_begin(size_t smem_bytes) {
    if (smem_bytes > g_dyn_shadow_len) {
        free(g_dyn_shadow);
        g_dyn_shadow = (Shadow*)calloc(smem_bytes / kGranule + 1, sizeof(Shadow));
        g_dyn_shadow_len = smem_bytes;
    }
}

} // namespace

// Kernels launched so far (their addresses): the lazy-loading rule of stream capture.
std::set<const void*>& g_loaded = *new std::set<const void*>();

uint64_t seed_from_env() {
    if (const char* e = getenv("SIMT_SEED")) return strtoull(e, nullptr, 0);
    return 1; // fixed by default, so that CI is reproducible
}

unsigned long launches_run() { return g_launch_no; }

// Whether a launch's configuration is one the runtime accepts; if not, says why on stderr
// and sets the error the runtime would (at launch, or at a launch recorded by a capture).
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes): per
// kernel address. A GPU refuses a launch with more than 48 KB of dynamic shared memory
// unless the kernel's attribute allows it (the emulator answers cudaErrorInvalidValue, the
// error of other bad arguments on the H200; not yet seen on hardware for this case).
std::mutex g_smem_attr_mu;
std::map<const void*, int>& g_smem_attr = *new std::map<const void*, int>();
void set_max_dynamic_smem(const void* kernel, int bytes) {
    std::lock_guard<std::mutex> lock(g_smem_attr_mu);
    g_smem_attr[kernel] = bytes;
}
static bool dynamic_smem_allowed(const void* kernel, size_t smem_bytes) {
    if (smem_bytes <= 48 * 1024) return true;
    std::lock_guard<std::mutex> lock(g_smem_attr_mu);
    auto it = kernel ? g_smem_attr.find(kernel) : g_smem_attr.end();
    return it != g_smem_attr.end() && (size_t)it->second >= smem_bytes;
}

static bool launch_config_ok(dim3 grid, dim3 block, size_t smem_bytes) {
    const unsigned long long n = (unsigned long long)block.x * block.y * block.z;
    // More than 1024 threads per block (or a block dimension past its limit): the H200 with
    // CUDA 13.0 answered cudaErrorInvalidValue from cudaLaunchKernel (not the
    // cudaErrorInvalidConfiguration older runtimes gave), so the emulator does too.
    if (n > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
        fprintf(stderr, "simt: invalid launch: block (%u,%u,%u), more than 1024 threads per block or a dimension "
                        "past its limit (cudaErrorInvalidValue)\n", block.x, block.y, block.z);
        g_last_error = cudaErrorInvalidValue;
        return false;
    }
    // The rest not yet seen on hardware: the runtime's documented cudaErrorInvalidConfiguration.
    if (n == 0 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 || smem_bytes > 227 * 1024) {
        fprintf(stderr,
                "simt: invalid launch configuration: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes of dynamic "
                "shared memory (cudaErrorInvalidConfiguration)\n",
                grid.x, grid.y, grid.z, block.x, block.y, block.z, smem_bytes);
        g_last_error = cudaErrorInvalidConfiguration;
        return false;
    }
    return true;
}

void launch(dim3 grid, dim3 block, size_t smem_bytes, const void* kernel, void (*fn)(void*), void* ctx,
            size_t ctx_size) {
    if (driver_lost()) {
        fprintf(stderr, "simt: kernel launched in a process forked after the device was initialised "
                        "(cudaErrorInitializationError)\n");
        g_last_error = cudaErrorInitializationError;
        return;
    }
    if (!launch_config_ok(grid, block, smem_bytes)) return;
    if (!dynamic_smem_allowed(kernel, smem_bytes)) {
        fprintf(stderr, "simt: invalid launch: %zu bytes of dynamic shared memory, more than 48 KB, without "
                        "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, >= that) "
                        "(cudaErrorInvalidValue)\n", smem_bytes);
        g_last_error = cudaErrorInvalidValue;
        return;
    }
    if (t_in_launch) {
        fprintf(stderr, "simt: a kernel launched a kernel (dynamic parallelism is not emulated)\n");
        abort();
    }
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    t_in_launch = true;
    if (kernel) g_loaded.insert(kernel);
    g_launch_no++;
    const char* strict = getenv("SIMT_STRICT");
    g_strict = strict && strict[0] == '1';
    g_warned_read = false;
    if (g_launch_no == 1) g_seed = seed_from_env();
    g_rng = g_seed * 0x2545f4914f6cdd1dull + g_launch_no; // each launch its own stream
    race_setup();
    const unsigned long long n = (unsigned long long)block.x * block.y * block.z;
    const unsigned long long n_blocks = (unsigned long long)grid.x * grid.y * grid.z;
    const unsigned n_slots = (unsigned)std::min<unsigned long long>(resident_blocks(), n_blocks);
    ensure_fibers((unsigned)n * n_slots);
    g_n = (unsigned)n;
    g_smem_bytes = smem_bytes;
    if (g_slots.size() < n_slots) g_slots.resize(n_slots);
    for (unsigned k = 0; k < n_slots; k++) {
        Block* b = &g_slots[k];
        b->fib = &g_fibers[(size_t)k * n];
        b->active = false;
        b->alive.assign((n + 31) / 32, 0);
        b->pending.assign((n + 31) / 32, 0);
        b->order.assign(n, 0);
        b->pos.assign(n, 0);
        b->saved_lo = b->saved_hi = 0;
        // dynamic shared memory: exactly smem_bytes per block, so overruns are visible to ASan
        b->dyn = nullptr;
        if (smem_bytes && posix_memalign((void**)&b->dyn, 128, smem_bytes) != 0) {
            fprintf(stderr, "simt: cannot allocate %zu bytes of dynamic shared memory\n", smem_bytes);
            abort();
        }
    }
    race_launch_begin(smem_bytes);
    g_kernel_name = g_launch_name;
    g_launch_name = nullptr;
    g_dep_check = kernel != nullptr; // ETX_LAUNCH passes its kernel; anonymous launches are not checked
    g_fn = fn;
    g_ctx = ctx;
    g_ctx_lo = (uintptr_t)ctx;
    g_ctx_len = ctx_size;
    g_grid_dim = grid;
    g_block_dim = block;
    Thread* saved = g_thread;
    g_blk = nullptr;
    g_smem_owner = nullptr;
    run_grid();
    g_thread = saved;
    for (unsigned k = 0; k < n_slots; k++) {
        free(g_slots[k].dyn);
        g_slots[k].dyn = nullptr;
    }
    g_blk = nullptr;
    g_race_active = false;
    g_dep_check = false;
    g_pre_entry = false;
    g_smem_owner = nullptr;
    g_dyn_smem = nullptr;
    g_dyn_lo = 0;
    g_dyn_len = 0;
    t_in_launch = false;
}

} // namespace detail
} // namespace simt

// -- the instrumentation hooks ---------------------------------------------------------
// (Signatures as GCC's built-in declarations: the address as void*, a size as long.)
// The kernel files that use shared memory are compiled with -fsanitize=address and
// --param asan-instrumentation-with-call-threshold=0 (CMakeLists.txt): every load and
// store of theirs calls one of these with its address. In the sanitized build ASan's
// runtime defines the same functions; these (in the executable) take precedence, and call
// the runtime's after the race detector. Elsewhere the few other entry points the
// instrumented code references are stubs here (the code is built with ASan's stack and
// global instrumentation off, so nothing else of the runtime is needed).

#ifdef __SANITIZE_ADDRESS__
namespace {
typedef void (*AsanCheck)(void*);
typedef void (*AsanCheckN)(void*, long);
template <class F> F asan_real(const char* name) {
    void* p = dlsym(RTLD_NEXT, name);
    if (!p) {
        fprintf(stderr, "simt: %s not found in the ASan runtime\n", name);
        abort();
    }
    return (F)p;
}
} // namespace
#define SIMT_HOOK(kind, size, write)                                                            \
    extern "C" void __asan_##kind##size(void* a) {                                          \
        static const AsanCheck real = asan_real<AsanCheck>("__asan_" #kind #size);              \
        real(a);                                                                                \
        simt::detail::race_access((uintptr_t)a, size, write, __builtin_return_address(0));                 \
    }                                                                                           \
    extern "C" void __asan_##kind##size##_noabort(void* a) {                                \
        static const AsanCheck real = asan_real<AsanCheck>("__asan_" #kind #size "_noabort");   \
        real(a);                                                                                \
        simt::detail::race_access((uintptr_t)a, size, write, __builtin_return_address(0));                 \
    }
#define SIMT_HOOK_N(kind, write)                                                                \
    extern "C" void __asan_##kind##N(void* a, long n) {                                \
        static const AsanCheckN real = asan_real<AsanCheckN>("__asan_" #kind "N");              \
        real(a, n);                                                                             \
        simt::detail::race_access((uintptr_t)a, (size_t)n, write, __builtin_return_address(0));                    \
    }                                                                                           \
    extern "C" void __asan_##kind##N_noabort(void* a, long n) {                        \
        static const AsanCheckN real = asan_real<AsanCheckN>("__asan_" #kind "N_noabort");      \
        real(a, n);                                                                             \
        simt::detail::race_access((uintptr_t)a, (size_t)n, write, __builtin_return_address(0));                    \
    }
#else
#define SIMT_HOOK(kind, size, write)                                                            \
    extern "C" void __asan_##kind##size(void* a) {                                          \
        simt::detail::race_access((uintptr_t)a, size, write, __builtin_return_address(0));                 \
    }                                                                                           \
    extern "C" void __asan_##kind##size##_noabort(void* a) {                                \
        simt::detail::race_access((uintptr_t)a, size, write, __builtin_return_address(0));                 \
    }
#define SIMT_HOOK_N(kind, write)                                                                \
    extern "C" void __asan_##kind##N(void* a, long n) {                                \
        simt::detail::race_access((uintptr_t)a, (size_t)n, write, __builtin_return_address(0));                    \
    }                                                                                           \
    extern "C" void __asan_##kind##N_noabort(void* a, long n) {                        \
        simt::detail::race_access((uintptr_t)a, (size_t)n, write, __builtin_return_address(0));                    \
    }
// the rest of what instrumented code references: nothing to do without the runtime
extern "C" void __asan_init(void) {}
extern "C" void __asan_version_mismatch_check_v8(void) {}
extern "C" void __asan_handle_no_return(void) {}
#endif
SIMT_HOOK(load, 1, false)
SIMT_HOOK(load, 2, false)
SIMT_HOOK(load, 4, false)
SIMT_HOOK(load, 8, false)
SIMT_HOOK(load, 16, false)
SIMT_HOOK(store, 1, true)
SIMT_HOOK(store, 2, true)
SIMT_HOOK(store, 4, true)
SIMT_HOOK(store, 8, true)
SIMT_HOOK(store, 16, true)
SIMT_HOOK_N(load, false)
SIMT_HOOK_N(store, true)

// -- runtime API --------------------------------------------------------------

using simt::detail::g_last_error;

const char* cudaGetErrorName(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    }
    return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

static cudaError_t fail_with(cudaError_t e) {
    g_last_error = e;
    return e;
}

// Every entry point that touches the device starts with this (see driver_lost).
#define SIMT_DRIVER_OR_FAIL()                                                                      \
    do {                                                                                           \
        if (simt::detail::driver_lost()) return fail_with(cudaErrorInitializationError);           \
    } while (0)

// -- stream capture -----------------------------------------------------------------
// A stream is a record of its capture state; a graph a list of nodes (closures) that
// cudaGraphLaunch runs in order. Captures are per OS thread (the emulator runs every
// call synchronously on the caller's thread).

struct CUgraph_st {
    std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> nodes;
};
struct CUstream_st {
    bool capturing;        // between cudaStreamBeginCapture and cudaStreamEndCapture
    bool invalidated;      // a forbidden call happened during the capture
    cudaStreamCaptureMode mode;
    CUgraph_st* graph;     // what the capture recorded so far
};

// This thread's active captures (Global or ThreadLocal mode: the ones that forbid the
// unsafe calls).
static thread_local std::vector<CUstream_st*> t_captures;

// A call CUDA forbids while this thread captures: every capture of the thread is
// invalidated, and the call fails with cudaErrorStreamCaptureUnsupported.
static bool forbidden_in_capture(const char* call) {
    if (t_captures.empty()) return false;
    fprintf(stderr,
            "simt: %s while a stream is being captured: cudaErrorStreamCaptureUnsupported, and the capture is "
            "invalidated (CUDA forbids synchronous copies and memsets, allocations and frees, and host "
            "synchronisation during capture)\n",
            call);
    for (CUstream_st* st : t_captures) st->invalidated = true;
    g_last_error = cudaErrorStreamCaptureUnsupported;
    return true;
}

namespace simt {
namespace detail {

bool capturing(cudaStream_t stream) { return stream && stream->capturing; }

void record_launch(cudaStream_t stream, const void* kernel, dim3 grid, dim3 block, size_t smem_bytes,
                   std::function<void()> run) {
    if (stream->invalidated) {
        g_last_error = cudaErrorStreamCaptureInvalidated;
        return;
    }
    // a bad configuration fails the launch call itself, as cudaLaunchKernel does during a
    // capture (the capture then invalidated), not only when the graph runs
    if (!launch_config_ok(grid, block, smem_bytes)) {
        stream->invalidated = true;
        return;
    }
    if (kernel && !g_loaded.count(kernel)) {
        // lazy loading (CUDA_MODULE_LOADING=LAZY, the default since 11.7; drivers before
        // 12.3 cannot load a module during capture): the first launch of a kernel must
        // happen outside any capture
        fprintf(stderr,
                "simt: kernel %s is launched for the first time inside a stream capture: with lazy loading "
                "(drivers before 12.3) this fails (cudaErrorStreamCaptureUnsupported) and invalidates the "
                "capture; launch every kernel once before capturing it\n",
                describe_pc(kernel).c_str());
        stream->invalidated = true;
        g_last_error = cudaErrorStreamCaptureUnsupported;
        return;
    }
    stream->graph->nodes.push_back(std::move(run));
}

} // namespace detail
} // namespace simt

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
    SIMT_DRIVER_OR_FAIL();
    if (!stream) return fail_with(cudaErrorStreamCaptureUnsupported); // the legacy stream
    if (stream->capturing) return fail_with(cudaErrorIllegalState);
    stream->capturing = true;
    stream->invalidated = false;
    stream->mode = mode;
    stream->graph = new CUgraph_st();
    if (mode != cudaStreamCaptureModeRelaxed) t_captures.push_back(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
    if (!stream || !graph) return fail_with(cudaErrorInvalidValue);
    *graph = nullptr;
    if (!stream->capturing) return fail_with(cudaErrorIllegalState);
    stream->capturing = false;
    for (size_t i = 0; i < t_captures.size(); i++)
        if (t_captures[i] == stream) {
            t_captures.erase(t_captures.begin() + (long)i);
            break;
        }
    if (stream->invalidated) {
        delete stream->graph;
        stream->graph = nullptr;
        return fail_with(cudaErrorStreamCaptureInvalidated);
    }
    *graph = stream->graph;
    stream->graph = nullptr;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
    if (!status) return fail_with(cudaErrorInvalidValue);
    *status = !stream || !stream->capturing ? cudaStreamCaptureStatusNone
              : stream->invalidated         ? cudaStreamCaptureStatusInvalidated
                                            : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
    if (!exec || !graph) return fail_with(cudaErrorInvalidValue);
    *exec = new CUgraphExec_st{graph->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    SIMT_DRIVER_OR_FAIL();
    if (!exec) return fail_with(cudaErrorInvalidValue);
    if (stream && stream->capturing) { // a graph launched into a capture: its nodes join it
        for (const auto& node : exec->nodes) stream->graph->nodes.push_back(node);
        return cudaSuccess;
    }
    for (const auto& node : exec->nodes) node();
    return g_last_error;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}

// Device allocations, as the driver knows them: a copy or memset whose device side is not
// inside one allocation fails with cudaErrorInvalidValue, as on a GPU (the first H200 run
// of a new test found a download of more rows than were allocated, which the emulator's
// plain memmove had let pass). Pinned host memory (cudaMallocHost) is registered too, so a
// copy from or to it is checked on the side its kind names. Symbols (cudaGetSymbolAddress)
// are not registered: no kernel file copies to or from one.
namespace {
std::mutex g_alloc_mu;
std::map<uintptr_t, size_t> g_allocs; // base -> bytes

void alloc_add(void* p, size_t n) {
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    g_allocs[(uintptr_t)p] = n;
}
std::map<uintptr_t, size_t> g_readonly; // allocations marked read-only (simt::mark_readonly): base -> bytes
void alloc_remove(void* p) {
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    g_allocs.erase((uintptr_t)p);
    g_readonly.erase((uintptr_t)p);
}
// Whether [p, p + n) lies inside one allocation of m (base -> bytes).
bool map_covers(const std::map<uintptr_t, size_t>& m, const void* p, size_t n) {
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    auto it = m.upper_bound((uintptr_t)p);
    if (it == m.begin()) return false;
    --it;
    const uintptr_t a = (uintptr_t)p;
    return a >= it->first && a - it->first <= it->second && n <= it->second - (a - it->first);
}
bool alloc_covers(const void* p, size_t n) { return map_covers(g_allocs, p, n); }
} // namespace
bool simt::detail::device_address(uintptr_t a) { return alloc_covers((const void*)a, 1); }
void simt::detail::check_l2_prefetch(const void* p, size_t bytes) {
    if (((uintptr_t)p % 16) != 0 || bytes % 16 != 0 || !map_covers(g_readonly, p, bytes)) {
        fprintf(stderr, "simt: L2 prefetch of %zu bytes at %p: not 16-byte aligned pieces inside one read-only device "
                        "allocation (etx_dev_mark_readonly)\n", bytes, p);
        abort();
    }
}
bool simt::detail::readonly_address(uintptr_t a) { return map_covers(g_readonly, (const void*)a, 1); }
int simt::mark_readonly(const void* p, size_t bytes) {
    if (!p || !bytes) return 0;
    if (!alloc_covers(p, bytes)) return -1; // not (inside) one device allocation
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    auto it = g_allocs.upper_bound((uintptr_t)p);
    --it; // alloc_covers found it
    g_readonly[it->first] = it->second; // the whole allocation
    return 0;
}
namespace {
// The device sides of a copy of `count` bytes of kind `kind` (cudaMemcpyDefault: every
// side that starts inside an allocation) fit their allocations.
bool copy_in_bounds(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
    if (!count) return true;
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice ||
                         (kind == cudaMemcpyDefault && alloc_covers(dst, 1));
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice ||
                         (kind == cudaMemcpyDefault && alloc_covers(src, 1));
    if (dst_dev && !alloc_covers(dst, count)) return false;
    if (src_dev && !alloc_covers(src, count)) return false;
    return true;
}

// Asynchronous copies out of pinned host memory. On a GPU such a copy reads its source
// whenever the stream reaches it, which may be long after cudaMemcpyAsync returned (the
// host runs ahead of the device), so the host may not rewrite the source until the stream
// has been synchronised. The emulator copies at once, which would hide a host that
// rewrites a staging buffer too early; so it keeps a copy of each such source's bytes,
// and when the stream (or the device) is synchronised, or the memory freed, checks that
// the source still holds them. A changed source aborts, naming the copy. (A copy from
// pageable memory needs no such record: CUDA reads it before cudaMemcpyAsync returns.)
std::map<uintptr_t, size_t> g_pinned; // cudaMallocHost allocations: base -> bytes
struct PinnedRead {
    const void* src;
    std::vector<unsigned char> bytes_then; // the source's bytes as they were copied
    cudaStream_t stream;
    void* dst;
};
std::vector<PinnedRead> g_pinned_reads; // copies not yet synchronised

void pinned_read_add(const void* src, size_t n, cudaStream_t stream, void* dst) {
    if (!n || !map_covers(g_pinned, src, n)) return;
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    const unsigned char* c = (const unsigned char*)src;
    g_pinned_reads.push_back(PinnedRead{src, std::vector<unsigned char>(c, c + n), stream, dst});
}

// Checks and forgets the records that `which` selects; aborts on a rewritten source.
template <class Pred> void pinned_reads_settle(const char* when, Pred which) {
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    std::vector<PinnedRead> keep;
    for (const PinnedRead& r : g_pinned_reads) {
        if (!which(r)) {
            keep.push_back(r);
            continue;
        }
        if (memcmp(r.src, r.bytes_then.data(), r.bytes_then.size()) != 0) {
            fprintf(stderr,
                    "simt: pinned host memory at %p (%zu bytes) was rewritten before %s, but it is the source of "
                    "an asynchronous copy to %p on stream %p that had not been synchronised: on a GPU the copy "
                    "may read the new bytes. Keep a staging buffer untouched until its stream is synchronised "
                    "(host/cuda/cuda_stage.c).\n",
                    r.src, r.bytes_then.size(), when, r.dst, (void*)r.stream);
            abort();
        }
    }
    g_pinned_reads.swap(keep);
}
} // namespace

cudaError_t cudaMalloc(void** ptr, size_t size) {
    SIMT_DRIVER_OR_FAIL();
    if (!ptr) return fail_with(cudaErrorInvalidValue);
    if (forbidden_in_capture("cudaMalloc")) {
        *ptr = nullptr;
        return cudaErrorStreamCaptureUnsupported;
    }
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    // exactly `size` bytes (256-byte aligned, as cudaMalloc): an instrumented kernel that
    // runs past the end is caught by AddressSanitizer
    void* p = nullptr;
    if (posix_memalign(&p, 256, size) != 0) return fail_with(cudaErrorMemoryAllocation);
    // not zeroed on a GPU either: filled with 0xff bytes (NaN floats, -1 ints), so a kernel
    // or a caller that relies on fresh memory being zero fails here first
    memset(p, 0xff, size);
    alloc_add(p, size);
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) {
    if (!ptr) return fail_with(cudaErrorInvalidValue);
    if (forbidden_in_capture("cudaMallocHost")) {
        *ptr = nullptr;
        return cudaErrorStreamCaptureUnsupported;
    }
    const cudaError_t e = cudaMalloc(ptr, size);
    if (e == cudaSuccess && *ptr) {
        std::lock_guard<std::mutex> lock(g_alloc_mu);
        g_pinned[(uintptr_t)*ptr] = size;
    }
    return e;
}

cudaError_t cudaFree(void* ptr) {
    SIMT_DRIVER_OR_FAIL();
    if (forbidden_in_capture("cudaFree")) return cudaErrorStreamCaptureUnsupported;
    if (ptr) alloc_remove(ptr);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
    if (forbidden_in_capture("cudaFreeHost")) return cudaErrorStreamCaptureUnsupported;
    if (ptr) {
        // cudaFreeHost waits for the device first: every copy out of it is settled here
        size_t bytes = 0;
        {
            std::lock_guard<std::mutex> lock(g_alloc_mu);
            auto it = g_pinned.find((uintptr_t)ptr);
            if (it != g_pinned.end()) bytes = it->second, g_pinned.erase(it);
        }
        const uintptr_t a = (uintptr_t)ptr;
        pinned_reads_settle("cudaFreeHost", [&](const PinnedRead& r) {
            return (uintptr_t)r.src >= a && (uintptr_t)r.src < a + bytes;
        });
    }
    return cudaFree(ptr);
}

static cudaError_t copy_now(void* dst, const void* src, size_t count) {
    if (count && (!dst || !src)) return fail_with(cudaErrorInvalidValue);
    if (count) memmove(dst, src, count);
    return cudaSuccess;
}

static cudaError_t set_now(void* ptr, int value, size_t count) {
    if (count && !ptr) return fail_with(cudaErrorInvalidValue);
    if (count) memset(ptr, value, count);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
    SIMT_DRIVER_OR_FAIL();
    if (forbidden_in_capture("cudaMemcpy")) return cudaErrorStreamCaptureUnsupported;
    if (!copy_in_bounds(dst, src, count, kind)) return fail_with(cudaErrorInvalidValue);
    return copy_now(dst, src, count);
}

// On a stream being captured: a node of the graph (the source is read when it runs).
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
    SIMT_DRIVER_OR_FAIL();
    if (!copy_in_bounds(dst, src, count, kind)) return fail_with(cudaErrorInvalidValue);
    if (stream && stream->capturing) {
        if (stream->invalidated) return fail_with(cudaErrorStreamCaptureInvalidated);
        stream->graph->nodes.push_back([=]() { (void)copy_now(dst, src, count); });
        return cudaSuccess;
    }
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDefault) pinned_read_add(src, count, stream, dst);
    return copy_now(dst, src, count);
}

cudaError_t cudaMemset(void* ptr, int value, size_t count) {
    SIMT_DRIVER_OR_FAIL();
    if (forbidden_in_capture("cudaMemset")) return cudaErrorStreamCaptureUnsupported;
    if (count && !alloc_covers(ptr, count)) return fail_with(cudaErrorInvalidValue);
    return set_now(ptr, value, count);
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
    SIMT_DRIVER_OR_FAIL();
    if (count && !alloc_covers(ptr, count)) return fail_with(cudaErrorInvalidValue);
    if (stream && stream->capturing) {
        if (stream->invalidated) return fail_with(cudaErrorStreamCaptureInvalidated);
        stream->graph->nodes.push_back([=]() { (void)set_now(ptr, value, count); });
        return cudaSuccess;
    }
    return set_now(ptr, value, count);
}

cudaError_t cudaDeviceSynchronize(void) {
    SIMT_DRIVER_OR_FAIL();
    if (forbidden_in_capture("cudaDeviceSynchronize")) return cudaErrorStreamCaptureUnsupported;
    pinned_reads_settle("cudaDeviceSynchronize", [](const PinnedRead&) { return true; });
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    SIMT_DRIVER_OR_FAIL();
    if (forbidden_in_capture("cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
    pinned_reads_settle("cudaStreamSynchronize", [&](const PinnedRead& r) { return r.stream == stream; });
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
    SIMT_DRIVER_OR_FAIL();
    if (!stream) return fail_with(cudaErrorInvalidValue);
    *stream = new CUstream_st{false, false, cudaStreamCaptureModeGlobal, nullptr};
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) { return cudaStreamCreate(stream); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (stream) {
        pinned_reads_settle("cudaStreamDestroy", [&](const PinnedRead& r) { return r.stream == stream; });
        delete stream->graph;
        delete stream;
    }
    return cudaSuccess;
}

// Emulated devices: SIMT_DEVICE_COUNT (1..64, default 1), so that the code choosing a
// device per rank or per engine can be tested without GPUs. They share the host's memory
// and run the same way; cudaSetDevice only records the calling thread's choice, and every
// check of a device index is CUDA's.
static int device_count() {
    if (const char* e = getenv("SIMT_DEVICE_COUNT")) {
        const int v = atoi(e);
        if (v >= 1 && v <= 64) return v;
    }
    return 1;
}
static thread_local int t_device = 0;

cudaError_t cudaGetDeviceCount(int* count) {
    SIMT_DRIVER_OR_FAIL();
    *count = device_count();
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
    SIMT_DRIVER_OR_FAIL();
    *device = t_device;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    SIMT_DRIVER_OR_FAIL();
    if (device < 0 || device >= device_count()) return fail_with(cudaErrorInvalidDevice);
    t_device = device;
    return cudaSuccess;
}

// Multiprocessor count: SIMT_SM_COUNT, else 132 (an H100 SXM), so launchers that size
// their grids by it take the same code paths as on the GPU.
static int sm_count() {
    if (const char* e = getenv("SIMT_SM_COUNT")) {
        int v = atoi(e);
        if (v > 0) return v;
    }
    return 132;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    SIMT_DRIVER_OR_FAIL();
    if (device < 0 || device >= device_count()) return fail_with(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    // device 0 keeps the plain name; the others say which they are, so that a test can see
    // which device a program ended up on (etx generate --stats prints the current one)
    if (device == 0) snprintf(p->name, sizeof p->name, "SIMT emulator");
    else snprintf(p->name, sizeof p->name, "SIMT emulator (device %d)", device);
    p->totalGlobalMem = (size_t)80 << 30;
    p->sharedMemPerBlock = 48 * 1024;
    p->sharedMemPerBlockOptin = 227 * 1024;
    p->sharedMemPerMultiprocessor = 228 * 1024;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->maxThreadsPerMultiProcessor = 2048;
    p->multiProcessorCount = sm_count();
    p->l2CacheSize = 50 << 20;
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    SIMT_DRIVER_OR_FAIL();
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device);
    if (e != cudaSuccess) return e;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    default: return fail_with(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

struct CUevent_st {
    double ms; // steady clock at the last record
};

cudaError_t cudaEventCreate(cudaEvent_t* event) {
    SIMT_DRIVER_OR_FAIL();
    *event = new CUevent_st{0.0};
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) { return cudaEventCreate(event); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
    if (!event) return fail_with(cudaErrorInvalidValue);
    event->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    if (forbidden_in_capture("cudaEventSynchronize")) return cudaErrorStreamCaptureUnsupported;
    return event ? cudaSuccess : fail_with(cudaErrorInvalidValue);
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms || !start || !end) return fail_with(cudaErrorInvalidValue);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
