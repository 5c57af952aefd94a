/*
 * mma.cuh — the one tensor-core instruction etx uses, mma.sync.aligned.m16n8k16.row.col
 * with bf16 inputs and f32 accumulation, as a device function that is inline PTX under
 * nvcc and the SIMT emulator's warp-collective twin under ETX_SIMT (tests/simt/simt.h,
 * which spells out PTX's fragment layout and the emulator's order of addition).
 * Users: kernels/gemm_tc.cu; tests/simt/selftest.cu checks the layout on a GPU.
 */
#ifndef ETX_MMA_CUH
#define ETX_MMA_CUH

#include <stdint.h>

#include "cuda_common.cuh"

// D (4 f32 per lane) += A (16x16, a: 4 registers of 2 bf16) . B (16x8, b: 2 registers),
// every lane of the warp calling it. sm_80 and later (the callers check the device).
static __device__ __forceinline__ void etx_mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
#ifdef ETX_SIMT
    simt_mma_bf16_m16n8k16(d, a, b, d);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); // never launched: etx_gemm_uses_tensor_cores() is 0 below sm_80
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

#endif // ETX_MMA_CUH
