/*
 * device_backend.c — the registry of the (optional) CUDA backend; see device_backend.h.
 */
#include "device_backend.h"

static const DeviceBackendOps* g_cuda;

const DeviceBackendOps* etx_cuda_backend(void) { return g_cuda; }

void etx_register_cuda_backend(const DeviceBackendOps* ops) { g_cuda = ops; }
