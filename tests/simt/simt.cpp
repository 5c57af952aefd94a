/*
 * simt.cpp — the SIMT emulator's engine (tests/simt/simt.h): fibers, the block scheduler,
 * barriers, warp intrinsics, divergence checks and the runtime API.
 *
 * A launch runs its blocks one after another on the calling OS thread. The threads of a
 * block are fibers, each with its own stack (allocated once, grown to the largest block
 * seen, reused by every later launch). A scheduler on the launching thread's stack walks
 * the fibers in thread order and resumes every runnable one; a fiber runs until it
 * blocks at a barrier or returns from the kernel, then switches back. The last thread to
 * arrive at a barrier completes it (results for every participant, everyone runnable)
 * and carries on, so a __syncthreads round over n threads costs about 2n switches.
 *
 * Switches are a few instructions of assembly on x86-64 (callee-saved registers and the
 * stack pointer); elsewhere ucontext. Under AddressSanitizer (its runtime is linked into
 * the test executables, found through weak symbols) every switch is announced with
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber, so ASan knows which
 * stack is live.
 */
#include "simt.h"

#include <chrono>
#include <mutex>
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
uint3 g_block_idx = {0, 0, 0};
dim3 g_block_dim;
dim3 g_grid_dim;
unsigned char* g_dyn_smem = nullptr;

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

// the running launch
void (*g_fn)(void*) = nullptr;
void* g_ctx = nullptr;
unsigned g_n = 0;         // threads per block
unsigned g_n_exited = 0;  // threads of the block that returned
unsigned g_bar_count = 0; // threads waiting at __syncthreads
int g_bar_sum = 0;        // their predicates
std::vector<unsigned>& g_alive = *new std::vector<unsigned>();   // per warp: lanes that exist and have not exited
std::vector<unsigned>& g_pending = *new std::vector<unsigned>(); // per warp: lanes waiting at a warp op
size_t g_smem_bytes = 0;
bool g_strict = false;      // SIMT_STRICT=1: undefined shuffle reads abort
bool g_warned_read = false; // an undefined shuffle read was reported in this launch
thread_local bool t_in_launch = false; // this OS thread is inside launch (a kernel launching a kernel)
unsigned long g_launch_no = 0;
std::mutex g_launch_mutex;

cudaError_t g_last_error = cudaSuccess;

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

// The next runnable thread after linear id `after` in this pass, or null.
inline Fiber* next_runnable(int after) {
    for (unsigned i = (unsigned)(after + 1); i < g_n; i++)
        if (g_fibers[i]->state == RUNNABLE) return g_fibers[i];
    return nullptr;
}

// Fiber f blocks: switch straight to the next runnable thread of the pass, or to the
// scheduler when there is none; returns when f is resumed.
void suspend(Fiber* f) {
    Fiber* next = next_runnable((int)f->t.linear);
    if (next) {
        g_thread = &next->t;
        if (__sanitizer_start_switch_fiber)
            __sanitizer_start_switch_fiber(&f->asan_fake, next->stack_lo, next->stack_size);
#ifdef SIMT_USE_UCONTEXT
        swapcontext(&f->uc, &next->uc);
#else
        simt_ctx_switch(&f->sp, next->sp);
#endif
    } else {
        if (__sanitizer_start_switch_fiber)
            __sanitizer_start_switch_fiber(&f->asan_fake, g_sched_stack_lo, g_sched_stack_size);
#ifdef SIMT_USE_UCONTEXT
        swapcontext(&f->uc, &g_sched_uc);
#else
        simt_ctx_switch(&f->sp, g_sched_sp);
#endif
    }
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
        if (!pred(g_fibers[i])) { i++; continue; }
        unsigned j = i;
        while (j + 1 < g_n && pred(g_fibers[j + 1])) j++;
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
    default: return "?";
    }
}

void block_header(std::string& m) {
    char buf[256];
    snprintf(buf, sizeof buf,
             "simt: kernel launch #%lu, grid (%u,%u,%u), block (%u,%u,%u): in block (%u,%u,%u) "
             "(thread ids below are linear: x + y*blockDim.x + z*blockDim.x*blockDim.y)\n",
             g_launch_no, g_grid_dim.x, g_grid_dim.y, g_grid_dim.z, g_block_dim.x, g_block_dim.y, g_block_dim.z,
             g_block_idx.x, g_block_idx.y, g_block_idx.z);
    m += buf;
}

// Where every thread of the block is, one line per kind of wait.
void describe_states(std::string& m) {
    m += "  threads waiting at __syncthreads: " + id_ranges([](Fiber* f) { return f->state == WAIT_BAR; }) + "\n";
    m += "  threads exited: " + id_ranges([](Fiber* f) { return f->state == EXITED; }) + "\n";
    m += "  threads runnable: " + id_ranges([](Fiber* f) { return f->state == RUNNABLE; }) + "\n";
    for (unsigned w = 0; w < g_pending.size(); w++) {
        // one line per (intrinsic, mask) group of waiting lanes
        unsigned left = g_pending[w];
        while (left) {
            const Fiber* f0 = g_fibers[32 * w + __builtin_ctz(left)];
            unsigned group = 0;
            for (unsigned m = left; m; m &= m - 1) {
                const Fiber* f = g_fibers[32 * w + __builtin_ctz(m)];
                if (f->wop == f0->wop && f->wmask == f0->wmask) group |= 1u << __builtin_ctz(m);
            }
            left &= ~group;
            char buf[240];
            snprintf(buf, sizeof buf,
                     "  warp %u (threads %u-%u): lanes 0x%08x wait at %s(mask 0x%08x), for lanes 0x%08x that are "
                     "elsewhere\n",
                     w, 32 * w, std::min(32 * w + 31, g_n - 1), group, op_name(f0->wop), f0->wmask,
                     f0->wmask & g_alive[w] & ~g_pending[w]);
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
    const unsigned need = mask & g_alive[w];
    if (need & ~g_pending[w]) return false;
    if (!need) return false;
    Fiber** lanes = &g_fibers[32 * w];
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
    default: break;
    }
    for (unsigned m = need; m; m &= m - 1) lanes[__builtin_ctz(m)]->state = RUNNABLE;
    g_pending[w] &= ~need;
    return true;
}

// After a lane of warp w exited: groups that waited only for it can complete.
void recheck_warp(unsigned w) {
    bool again = true;
    while (again && g_pending[w]) {
        again = false;
        for (unsigned m = g_pending[w]; m; m &= m - 1) {
            if (try_complete(w, g_fibers[32 * w + __builtin_ctz(m)]->wmask)) {
                again = true;
                break;
            }
        }
    }
}

// -- fibers -------------------------------------------------------------------

// The thread returned from the kernel: bookkeeping, then park until the next block.
void fiber_exit(Fiber* f) {
    f->state = EXITED;
    g_n_exited++;
    const unsigned w = f->t.linear >> 5;
    g_alive[w] &= ~(1u << (f->t.linear & 31));
    if (g_bar_count > 0) {
        char buf[200];
        snprintf(buf, sizeof buf,
                 "divergent __syncthreads: thread %u (threadIdx (%u,%u,%u)) returned while other threads of its "
                 "block wait at __syncthreads",
                 f->t.linear, f->t.tid.x, f->t.tid.y, f->t.tid.z);
        fail(buf, true);
    }
    if (g_pending[w]) recheck_warp(w);
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

void run_block() {
    const unsigned n = g_n;
    const unsigned bx = g_block_dim.x, by = g_block_dim.y;
    for (unsigned i = 0; i < n; i++) {
        Fiber* f = g_fibers[i];
        f->state = RUNNABLE;
        f->t.linear = i;
        f->t.tid = uint3{i % bx, (i / bx) % by, i / (bx * by)};
        f->wop = W_NONE;
        if (!f->started) start_frame(f);
    }
    const unsigned n_warps = (n + 31) / 32;
    for (unsigned w = 0; w < n_warps; w++) {
        const unsigned lanes = n - 32 * w >= 32 ? 32 : n - 32 * w;
        g_alive[w] = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        g_pending[w] = 0;
    }
    g_n_exited = 0;
    g_bar_count = 0;
    g_bar_sum = 0;
    if (g_smem_bytes) memset(g_dyn_smem, 0xff, g_smem_bytes);
    // one pass: the first runnable thread, which hands on to the next runnable ones
    while (g_n_exited < n) {
        Fiber* first = next_runnable(-1);
        if (!first) fail("deadlock: no thread of the block can run", true);
        resume(first);
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
    if (g_n_exited > 0) {
        char buf[200];
        snprintf(buf, sizeof buf,
                 "divergent __syncthreads: thread %u (threadIdx (%u,%u,%u)) waits at __syncthreads but threads of "
                 "its block have already returned",
                 f->t.linear, f->t.tid.x, f->t.tid.y, f->t.tid.z);
        f->state = WAIT_BAR;
        fail(buf, true);
    }
    g_bar_sum += pred;
    if (++g_bar_count == g_n) {
        const int sum = g_bar_sum;
        g_bar_count = 0;
        g_bar_sum = 0;
        for (unsigned i = 0; i < g_n; i++) {
            Fiber* g = g_fibers[i];
            if (g->state == WAIT_BAR) {
                g->state = RUNNABLE;
                g->bar_result = sum;
            }
        }
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        return sum;
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
    g_pending[w] |= 1u << lane;
    if (!try_complete(w, mask)) suspend(f);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return f->wres;
}

unsigned activemask() {
    Fiber* f = (Fiber*)g_thread;
    if (!f) outside_kernel("__activemask");
    return g_alive[f->t.linear >> 5];
}

void yield() {
    Fiber* f = (Fiber*)g_thread;
    if (!f) outside_kernel("__nanosleep");
    suspend(f);
}

void launch(dim3 grid, dim3 block, size_t smem_bytes, void (*fn)(void*), void* ctx) {
    const unsigned long long n = (unsigned long long)block.x * block.y * block.z;
    if (n == 0 || n > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 || smem_bytes > 227 * 1024) {
        fprintf(stderr,
                "simt: invalid launch configuration: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes of dynamic "
                "shared memory (cudaErrorInvalidConfiguration)\n",
                grid.x, grid.y, grid.z, block.x, block.y, block.z, smem_bytes);
        g_last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (t_in_launch) {
        fprintf(stderr, "simt: a kernel launched a kernel (dynamic parallelism is not emulated)\n");
        abort();
    }
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    t_in_launch = true;
    g_launch_no++;
    const char* strict = getenv("SIMT_STRICT");
    g_strict = strict && strict[0] == '1';
    g_warned_read = false;
    ensure_fibers((unsigned)n);
    g_n = (unsigned)n;
    g_alive.assign((n + 31) / 32, 0);
    g_pending.assign((n + 31) / 32, 0);
    // dynamic shared memory: exactly smem_bytes, so overruns are visible to ASan
    g_dyn_smem = nullptr;
    if (smem_bytes && posix_memalign((void**)&g_dyn_smem, 128, smem_bytes) != 0) {
        fprintf(stderr, "simt: cannot allocate %zu bytes of dynamic shared memory\n", smem_bytes);
        abort();
    }
    g_smem_bytes = smem_bytes;
    g_fn = fn;
    g_ctx = ctx;
    g_grid_dim = grid;
    g_block_dim = block;
    Thread* saved = g_thread;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                g_block_idx = uint3{x, y, z};
                run_block();
            }
    g_thread = saved;
    free(g_dyn_smem);
    g_dyn_smem = nullptr;
    t_in_launch = false;
}

} // namespace detail
} // namespace simt

// -- runtime API --------------------------------------------------------------

using simt::detail::g_last_error;

const char* cudaGetErrorName(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    }
    return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotSupported: return "operation not supported";
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

cudaError_t cudaMalloc(void** ptr, size_t size) {
    if (!ptr) return fail_with(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    // exactly `size` bytes (256-byte aligned, as cudaMalloc): an instrumented kernel that
    // runs past the end is caught by AddressSanitizer
    void* p = nullptr;
    if (posix_memalign(&p, 256, size) != 0) return fail_with(cudaErrorMemoryAllocation);
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) { return cudaMalloc(ptr, size); }

cudaError_t cudaFree(void* ptr) {
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) { return cudaFree(ptr); }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
    if (count && (!dst || !src)) return fail_with(cudaErrorInvalidValue);
    if (count) memmove(dst, src, count);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, count, kind);
}

cudaError_t cudaMemset(void* ptr, int value, size_t count) {
    if (count && !ptr) return fail_with(cudaErrorInvalidValue);
    if (count) memset(ptr, value, count);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t) { return cudaMemset(ptr, value, count); }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
    static char dummy;
    *stream = (cudaStream_t)(void*)&dummy;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) { return cudaStreamCreate(stream); }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail_with(cudaErrorInvalidDevice); }

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
    if (device != 0) return fail_with(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "SIMT emulator");
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

cudaError_t cudaEventSynchronize(cudaEvent_t event) { return event ? cudaSuccess : fail_with(cudaErrorInvalidValue); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms || !start || !end) return fail_with(cudaErrorInvalidValue);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
