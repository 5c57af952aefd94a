/*
 * selftest.h — small kernels that exercise every feature the SIMT emulator provides
 * (kernels/README.md, "The CUDA subset kernels may use"), launched from C
 * (tests/kernels/test_selftest.c). The same test runs under the emulator and, on a
 * machine with a GPU, natively, so it checks the emulator's semantics against the
 * hardware's. Every pointer argument is device memory (kernels/device.h).
 */
#ifndef ETX_SELFTEST_H
#define ETX_SELFTEST_H

#include <stdint.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Fields per thread written by selftest_shuffles / selftest_votes.
#define SELFTEST_SHFL_FIELDS 11
#define SELFTEST_VOTE_FIELDS 18
// The emulator's value for a shuffle that reads a lane outside its group (undefined in CUDA).
#define SELFTEST_SHFL_POISON32 0xdeadbeefu

// Block sum through static shared memory, blocks of 256: sums[b] = sum of x[256b .. 256b+255]
// (x zero-padded past n); every thread of block b also writes the sum it read from a
// __shared__ scalar into all[256b + t]. x (n), sums (n_blocks), all (256 n_blocks).
void selftest_block_sum_static(const float* x, int n, int n_blocks, float* sums, float* all);
// The same through dynamic shared memory, blocks of `block` threads (a power of two, <= 1024).
void selftest_block_sum_dynamic(const float* x, int n, int n_blocks, int block, float* sums);

// Warp shuffles of every kind and type, blocks of 64 threads. in (n_blocks*64), out
// (n_blocks*64, SELFTEST_SHFL_FIELDS) as long long; the test lists the fields.
void selftest_shuffles(const int* in, int n_blocks, long long* out);
// Votes, bit intrinsics, __activemask, __syncthreads_count, __match_any_sync,
// __reduce_*_sync; blocks of 64.
// in (n_blocks*64), out (n_blocks*64, SELFTEST_VOTE_FIELDS).
void selftest_votes(const int* in, int n_blocks, unsigned* out);

// A block of 100 threads (warp 3 has 4 lanes): per-block sums through __reduce_add_sync over
// the lanes that exist and through a guarded xor butterfly; per thread the ballot of the
// existing lanes and __activemask. in (n_blocks*100) ints; isum, fsum (n_blocks);
// lanes (n_blocks*100, 2).
void selftest_partial_warp(const int* in, int n_blocks, int* isum, float* fsum, unsigned* lanes);

// A 3D block (8,4,3) over a grid of n_blocks: per thread (n_blocks*96, 4): the linear id from
// threadIdx/blockDim, the linear id of lane+1 (shuffle), the ballot of threadIdx.y == 0,
// blockIdx.x.
void selftest_block3d(int n_blocks, int* out);

// A 2D grid (5,3) of (16,8) blocks over an 80 x 24 matrix: out[y][x] = 1000 y + x; meta (4):
// gridDim.x, gridDim.y, blockDim.x, blockDim.y.
void selftest_grid2d(int* out, int* meta);

// Atomics from n_blocks blocks of 128 threads, each thread g with value in[g].
typedef struct {
    int isum;                  // atomicAdd(int)
    unsigned usum;             // atomicAdd(unsigned) of in & 0xff
    int imax, imin;            // atomicMax/Min(int)
    unsigned umax, umin;       // atomicMax/Min(unsigned) of in + 1000
    int cas_max;               // max through an atomicCAS(int) loop
    unsigned fmax_bits;        // float max through an atomicCAS(unsigned) loop on the bits
    int counter;               // atomicAdd(int, 1): its return values index `slots`
    int exch;                  // atomicExch(int) of g + 1
    unsigned long long ullsum; // atomicAdd(unsigned long long) of (in + 1000) << 20
    float fsum;                // atomicAdd(float) of in (integers: exact in any order)
    int cas_probe;             // thread 0: atomicCAS with a wrong then the right compare value
    int cas_ret[2];            // what those two returned
    unsigned long long ull_probe, ull_ret; // thread 0: atomicCAS(unsigned long long), right compare
} SelftestAtomics;
// acc (1) initialised by the caller; slots (n_blocks*128): slots[atomicAdd(counter)] = g + 1;
// exch_old (n_blocks*128): the value atomicExch returned to thread g.
void selftest_atomics(const int* in, int n_blocks, SelftestAtomics* acc, int* slots, int* exch_old);

// bf16: bits of __float2bfloat16_rn(in[i]) and __float2bfloat16(in[i]), the round trip
// __bfloat162float, and pairs through __floats2bfloat162_rn / __bfloat1622float2
// (n even). in, back, pair_back (n); rn, def, pair_bits (n) as uint16.
void selftest_bf16(const float* in, int n, unsigned short* rn, unsigned short* def, float* back,
                   unsigned short* pair_bits, float* pair_back);

// Math functions and intrinsics, per i (n, SELFTEST_MATH_FIELDS): on x (any sign), p
// (positive) and y (any sign); the test lists the fields.
#define SELFTEST_MATH_FIELDS 17
void selftest_math(const float* x, const float* p, const float* y, int n, float* out);

// `rounds` __syncthreads rounds in one block of `block` threads, each adding 1 to its own
// shared counter; out[0] = sum of the counters (block * rounds). Returns the kernel's time
// in ms between two CUDA events.
float selftest_barrier_rounds(int block, int rounds, int* out);

// Returns the cudaError_t of cudaGetLastError after a launch with 2048 threads per block
// (cudaErrorInvalidValue = 1 on an H200 with CUDA 13.0; older runtimes documented
// cudaErrorInvalidConfiguration = 9) and after a second, valid launch (0).
int selftest_bad_launch(int* second_error);

// Copies and memsets past an allocation: the cudaError_t of a device-to-host copy of
// 64 + 4 bytes from a 64-byte allocation, of a host-to-device copy of 68 bytes into it, of
// a memset of 68 bytes, and of a valid 64-byte copy, in out[0..3] (1, 1, 1, 0 on a GPU).
void selftest_copy_bounds(int* out);

// One mma.sync m16n8k16 (bf16 in, f32 accumulate) by one warp: A (16 x 16, row-major) and
// B (16 x 8, stored as B^T: 8 rows of 16) bf16, C (16 x 8) f32 added; D (16 x 8) out.
void selftest_mma(const uint16_t* a, const uint16_t* bt, const float* c, float* d);

// Bugs the emulator must report (abort): not for the GPU.
// mode 0: threads < 16 of a 64-thread block wait at __syncthreads, the others return;
// mode 1: threads < 32 return, the others then wait at __syncthreads.
void selftest_divergent_syncthreads(int mode, int* out);
// A 64-thread kernel that breaks the grid-dependency rule (kernels/cuda_common.cuh):
// mode 0 reads device memory (out[0]) before ETX_PDL_ENTRY, mode 1 writes it (out[5]),
// mode 2 has half its threads return without the entry; mode 3 loads ro (64 ints, marked
// read-only by the caller) before the entry, which is allowed, and copies it to out;
// mode 4 stores into ro before the entry. out: 64 ints.
void selftest_grid_dependency(int mode, int* out, const int* ro);
// Lanes < 16 of a warp call __shfl_xor_sync, lanes >= 16 __ballot_sync, both with the full mask.
void selftest_mismatched_warp_ops(int* out);
// Lane 0 of a warp waits at __syncthreads while lanes 1..31 wait at __syncwarp for it.
void selftest_deadlock(int* out);
// A 40-thread block: lanes of warp 1 (8 lanes) shuffle down by 16 with mask 0xff: reads
// outside the mask. out (40): what every thread read.
void selftest_shfl_outside_mask(int* out);
// Reads n floats of dynamic shared memory that no thread wrote (emulator: 0xff bytes).
void selftest_dynamic_smem_unwritten(int n, unsigned* out);
// Launches a kernel with 64 KB of dynamic shared memory without, then with,
// cudaFuncAttributeMaxDynamicSharedMemorySize: returns the first launch's error, the
// second's in *second_error. out: 32 unsigned.
int selftest_big_dynamic_smem(unsigned* out, int* second_error);

// Scheduling (issue 14). order (n_blocks): block ids in the order their thread 0 took a
// ticket (*ticket, zeroed by the caller); torder (n_blocks*block): per block, thread ids
// in ticket order (tickets (n_blocks), zeroed).
void selftest_order(int n_blocks, int block, int* order, int* ticket, int* torder, int* tickets);
// mode 0 (the bug): out[b] = out[b-1] + 1 from block b-1's write, assuming blocks run in
// order; mode 1: out[b] = b + 1. out (n_blocks).
void selftest_block_chain(int mode, int n_blocks, int* out);
// Blocks of 64 keep their id in __shared__ across `rounds` barriers: bad (n_blocks, zeroed)
// counts the rounds where a block saw another's shared data; *max_live the most blocks
// running at once (live, max_live zeroed).
void selftest_resident(int n_blocks, int rounds, int* live, int* max_live, int* bad);

// Shared-memory races: mode 0 has the race (the emulator must abort: "shared-memory
// race"), mode 1 is the correct twin.
// The softmax_update pattern of kernels/attention.cu: lane 0 writes the running max and
// sum after the other lanes read them, with (1) or without (0) a __syncwarp between.
// x (rows*32, rows <= 4); out, sums (rows): the new max and sum (start: max 0, sum 1).
void selftest_softmax_war(int mode, const float* x, int rows, float* out, float* sums);
// Two warps exchange values through static shared memory with (1) or without (0) a
// __syncthreads. out (64): out[t] = (t + 32) % 64.
void selftest_cross_warp(int mode, int* out);
// Lanes exchange values through dynamic shared memory with (1) or without (0) a
// __syncwarp. out (32): out[t] = 10 * (t ^ 1).
void selftest_dynamic_race(int mode, int* out);

// A __shared__ array declared in a function template instantiated with a lambda (internal
// linkage: the compiler puts it in .bss, outside the section the emulator swaps per block);
// the emulator must abort ("outside the emulator's shared-memory section"). out (32).
void selftest_escaped_shared(int* out);

// Stream capture. x, y: one int each of device memory (x = 0 at the start). r (6):
// x after the capture (1), x after two graph launches (3), y (3), and the errors of
// BeginCapture, EndCapture, Instantiate (0).
void selftest_capture_replay(int* x, int* y, int* r);
// One forbidden call during a capture (what 0..5: cudaMalloc, cudaFree, cudaMemcpy,
// cudaMemset, cudaDeviceSynchronize, cudaStreamSynchronize; 6: a kernel's first launch;
// 7: none). r (3): the call's error, EndCapture's error, whether the graph is null.
void selftest_capture_forbidden(int what, int* x, int* r);

// expf(x), logf(|x| + 0.5), sinf(x), __expf(x) per input: out (n, 4).
void selftest_math_raw(const float* x, int n, float* out);

#ifndef ETX_NATIVE_CUDA
// Emulator only: every thread of one block of `block` threads calls the host function
// fn(tid), then __syncthreads, then fn(tid + 1000): sanitized C code on fiber stacks.
void selftest_call_on_fibers(void (*fn)(int tid), int block);
#endif

#ifdef __cplusplus
}
#endif

#endif // ETX_SELFTEST_H
