/*
 * device.h — a tiny C API to move data to and from the device, for the C host code and
 * the kernel tests. The same calls work natively (kernels/device.cu through nvcc: real
 * cudaMalloc, cudaMemcpy, ...) and under the SIMT emulator (device memory is host
 * memory), so a test is written once and runs in both builds.
 *
 * Failures of the underlying runtime calls abort with the call, file and line
 * (CUDA_CHECK), except etx_dev_malloc, which returns NULL when out of memory, and except
 * inside a graph capture, where they make the capture fail instead (etx_dev_capture_end).
 */
#ifndef ETX_DEVICE_H
#define ETX_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// 1 when kernels can run: a GPU is present (native build) or always (emulator).
int etx_dev_available(void);
// The current device's name: the GPU's, or "SIMT emulator".
const char* etx_dev_name(void);
// CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies; the emulator:
// SIMT_DEVICE_COUNT, default 1); 0 when there is none.
int etx_dev_count(void);
// Makes device `index` current for the calling host thread (cudaSetDevice): the calls of
// this API then act on it. 0, or -1 when there is no such device.
int etx_dev_select(int index);
// The name of device `index` ("" when there is no such device).
const char* etx_dev_name_of(int index);
// The current device's multiprocessor count and compute capability major version,
// asked once per device and cached (launchers size grids and pick kernels per call).
int etx_dev_sm_count(void);
int etx_dev_cc_major(void);
// 1 when kernels launch with programmatic dependent launch on the current device (sm_90
// or later, ETX_PDL not 0): kernels/cuda_common.cuh.
int etx_dev_pdl_enabled(void);
// Device memory of `bytes` bytes (NULL when out of memory; bytes == 0 gives NULL).
void* etx_dev_malloc(size_t bytes);
void etx_dev_free(void* p);
// Declares the allocation holding [p, p + bytes) read-only from here on: no kernel writes
// it (model weights, uploaded once). Kernels may then load from it before their
// grid-dependency wait (kernels/cuda_common.cuh: the tensor-core GEMM prefetches its first
// weights there, overlapping the previous kernel). Natively a promise; the emulator holds
// kernels to it (a load before the wait from memory not so marked aborts).
void etx_dev_mark_readonly(const void* p, size_t bytes);
// Page-locked (pinned) host memory of `bytes` bytes (cudaMallocHost; NULL when it cannot
// be had): an etx_dev_upload_on from it is truly asynchronous, so its bytes must stay
// unchanged until the stream is synchronised (the emulator checks: tests/simt/simt.cpp).
void* etx_dev_host_alloc(size_t bytes);
void etx_dev_host_free(void* p);
// host src -> device dst
void etx_dev_upload(void* dst, const void* src, size_t bytes);
// device src -> host dst
void etx_dev_download(void* dst, const void* src, size_t bytes);
void etx_dev_memset(void* p, int value, size_t bytes);
// device src -> device dst (regions must not overlap)
void etx_dev_copy(void* dst, const void* src, size_t bytes);
// The same on `stream`, ordered with its launches explicitly (the calls above use the
// legacy default stream): upload and copy are asynchronous (an upload's pageable host
// buffer may be reused when the call returns, as CUDA stages it first; a pinned one, from
// etx_dev_host_alloc, only after the stream is synchronised), download waits for the
// stream, so dst is ready when it returns.
void etx_dev_upload_on(void* dst, const void* src, size_t bytes, void* stream);
void etx_dev_download_on(void* dst, const void* src, size_t bytes, void* stream);
void etx_dev_copy_on(void* dst, const void* src, size_t bytes, void* stream);
// Events, for timing (the emulator's: host wall clock). etx_dev_event_ms waits for `end`
// and returns the milliseconds between the two records.
void* etx_dev_event_create(void);
void etx_dev_event_destroy(void* ev);
void etx_dev_event_record(void* ev, void* stream);
float etx_dev_event_ms(void* start, void* end);
// Waits for everything launched on stream; aborts on a pending launch error.
void etx_dev_stream_sync(void* stream);
// Free and total device memory in bytes (the emulator: the host's available and total
// physical memory), so a caller can refuse a plan that cannot fit before allocating it.
void etx_dev_mem_info(size_t* free_bytes, size_t* total_bytes);
// Streams and CUDA graphs, the same in both builds: a capture records launches, copies
// and memsets without running them and etx_dev_graph_launch replays the recording (the
// emulator's runtime too: tests/simt/simt.cpp). etx_dev_graphs_available() says whether
// graphs should be on by default: 1 on a GPU; 0 under the emulator, which replays a graph
// no faster than it runs the launches (ETX_CUDA_GRAPHS=1 still turns them on there).
void* etx_dev_stream_create(void); // NULL: creation failed (then the default stream)
void etx_dev_stream_destroy(void* stream);
int etx_dev_graphs_available(void);
// Kernel launches run so far under the emulator (tests compare them with the launch
// plan); -1 natively (not counted).
long long etx_dev_kernel_launches(void);
// Starts capturing the launches made on stream (natively not the default stream) into a
// graph: they are recorded, not run. 1 when capture started. Until etx_dev_capture_end a
// failing runtime or cuBLAS call inside it does not abort: the first failure is kept and
// the capture fails.
int etx_dev_capture_begin(void* stream);
// Ends the capture (always, even after a failure inside it) and instantiates the graph:
// an executable graph, or NULL when a call inside the capture failed or the capture or
// instantiation did (the partial graph destroyed, nothing of it ran natively, no error
// left pending); then etx_dev_capture_error() says why.
void* etx_dev_capture_end(void* stream);
// Why the last capture on this thread failed ("call at file:line: reason"), or "".
const char* etx_dev_capture_error(void);
// Tests: the next capture on this thread fails as if a call inside it had.
void etx_dev_test_fail_next_capture(void);
// Records a failure of `what` inside an open capture and returns 1; returns 0 when no
// capture is open (the caller aborts). Used by CUDA_CHECK (cuda_common.cuh) and the GEMM.
int etx_dev_note_error(const char* what, const char* file, int line, const char* why);
// Runs an executable graph on stream.
void etx_dev_graph_launch(void* graph, void* stream);
void etx_dev_graph_destroy(void* graph);
// Waits for every launched kernel and copy, and aborts on a pending launch error.
void etx_dev_sync(void);

#ifdef __cplusplus
}
#endif

#endif // ETX_DEVICE_H
