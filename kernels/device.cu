/*
 * device.cu — kernels/device.h over the CUDA runtime (nvcc) or the SIMT emulator's
 * runtime subset (ETX_SIMT): the same code for both, except how the device is found.
 */
#include "cuda_common.cuh"

#include "device.h"

extern "C" int etx_dev_available(void) {
#ifdef ETX_SIMT
    return 1;
#else
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); // no driver / no device: not an error for the caller
        return 0;
    }
    return n > 0;
#endif
}

extern "C" const char* etx_dev_name(void) {
    static char name[256];
    cudaDeviceProp prop;
    if (!etx_dev_available() || cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "no device";
    snprintf(name, sizeof name, "%s", prop.name);
    return name;
}

extern "C" void* etx_dev_malloc(size_t bytes) {
    void* p = NULL;
    if (bytes == 0) return NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError(); // out of memory is the caller's to handle
        return NULL;
    }
    return p;
}

extern "C" void etx_dev_free(void* p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

extern "C" void etx_dev_upload(void* dst, const void* src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

extern "C" void etx_dev_download(void* dst, const void* src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

extern "C" void etx_dev_memset(void* p, int value, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemset(p, value, bytes));
}

extern "C" void etx_dev_sync(void) {
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
}
