/*
 * cost.h — the napkin math of a launch, as each kernel's launcher states it
 * (etx_<op>_cost beside etx_<op>): the DRAM bytes it moves, the floating-point work it
 * does, and how many blocks its grid has and how many of them have work. The CUDA
 * backend's cost model (host/cuda/cuda_plan.c) sums these over the launch plan the
 * backend executes and turns them into predicted time for a card (bandwidth, FLOP/s,
 * SMs), so a GPU run can check the model kernel by kernel.
 *
 * Conventions: bytes count first touches from DRAM (re-reads that the kernel's note says
 * come from L1/L2 are not counted; a re-read the note says may miss L2 is); l2 counts
 * every load the SMs issue to L2 (a kernel states it where that traffic can bound it); an
 * FMA is 2 FLOPs; `tensor` says whether the FLOPs run on tensor cores (else fp32 CUDA
 * cores).
 */
#ifndef ETX_KERNELS_COST_H
#define ETX_KERNELS_COST_H

typedef struct {
    double bytes;   // DRAM bytes read + written
    double flops;   // floating-point operations (FMA = 2)
    double ctas;    // blocks launched, over all the op's launches
    double busy;    // ... of which have work (the rest exit at once)
    int launches;   // kernel launches
    int tensor;     // 1: the FLOPs are tensor-core work
    double l2;      // bytes the SMs load from and store to L2, re-reads included (0: not
                    // stated; the kernels whose inner loop reads operands straight from
                    // L2, the GEMMs, state it, since at large batch it bounds them)
    int per_sm;     // working blocks per SM the kernel needs to reach its rate (0: the
                    // model's default, 2; a kernel built to run one fat block per SM,
                    // with its own pipeline, says 1)
    double pf;      // DRAM bytes the launch asks L2 to prefetch for a later one (the CUDA
                    // plan's CudaOp.pf_bytes): not limited by the grid's fill (the TMA
                    // unit issues them), so they cost time only past the launch's own
} EtxCost;

#endif // ETX_KERNELS_COST_H
