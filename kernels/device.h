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
// Streams and CUDA graphs, natively. The emulator runs every launch at once: its stream
// is NULL (the default stream) and it has no graphs (etx_dev_graphs_available() == 0).
// A stream from etx_dev_stream_create is a blocking one: the copies above (the legacy
// default stream) stay ordered with its launches.
void* etx_dev_stream_create(void); // NULL: the default stream (emulator, or creation failed)
void etx_dev_stream_destroy(void* stream);
int etx_dev_graphs_available(void);
// Starts capturing the launches made on stream (not the default stream) into a graph:
// they are recorded, not run. 1 when capture started.
int etx_dev_capture_begin(void* stream);
// Ends the capture and instantiates the graph: an executable graph, or NULL when the
// capture or instantiation failed (then nothing of it ran).
void* etx_dev_capture_end(void* stream);
// Runs an executable graph on stream.
void etx_dev_graph_launch(void* graph, void* stream);
void etx_dev_graph_destroy(void* graph);
// Waits for every launched kernel and copy, and aborts on a pending launch error.
void etx_dev_sync(void);

#ifdef __cplusplus
}
#endif

#endif // ETX_DEVICE_H
