/*
 * device.h — a tiny C API to move data to and from the device, for the C host code and
 * the kernel tests. The same calls work natively (kernels/device.cu through nvcc: real
 * cudaMalloc, cudaMemcpy, ...) and under the SIMT emulator (device memory is host
 * memory), so a test is written once and runs in both builds.
 *
 * Failures of the underlying runtime calls abort with the call, file and line
 * (CUDA_CHECK), except etx_dev_malloc, which returns NULL when out of memory.
 */
#ifndef ETX_DEVICE_H
#define ETX_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// 1 when kernels can run: a GPU is present (native build) or always (emulator).
int etx_dev_available(void);
// The device's name: the GPU's, or "SIMT emulator".
const char* etx_dev_name(void);
// Device memory of `bytes` bytes (NULL when out of memory; bytes == 0 gives NULL).
void* etx_dev_malloc(size_t bytes);
void etx_dev_free(void* p);
// host src -> device dst
void etx_dev_upload(void* dst, const void* src, size_t bytes);
// device src -> host dst
void etx_dev_download(void* dst, const void* src, size_t bytes);
void etx_dev_memset(void* p, int value, size_t bytes);
// device src -> device dst (regions must not overlap)
void etx_dev_copy(void* dst, const void* src, size_t bytes);
// Free and total device memory in bytes (the emulator: the host's available and total
// physical memory), so a caller can refuse a plan that cannot fit before allocating it.
void etx_dev_mem_info(size_t* free_bytes, size_t* total_bytes);
// Waits for every launched kernel and copy, and aborts on a pending launch error.
void etx_dev_sync(void);

#ifdef __cplusplus
}
#endif

#endif // ETX_DEVICE_H
