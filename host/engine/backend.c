/*
 * device_backend.c — the registry of the (optional) CUDA backend; see device_backend.h.
 */
#include "engine/backend.h"

#include <string.h>

#include "common.h"

static const DeviceBackendOps* g_cuda;

const DeviceBackendOps* etx_cuda_backend(void) { return g_cuda; }

void etx_register_cuda_backend(const DeviceBackendOps* ops) { g_cuda = ops; }


etx_status device_backend_pick(etx_device device, const DeviceBackendOps** ops) {
    const DeviceBackendOps* cuda = etx_cuda_backend();
    *ops = NULL;
    if (device == ETX_DEVICE_CUDA) {
        if (!cuda)
            return etx_error(ETX_ERR_UNSUPPORTED, "device cuda: this etx was built without the CUDA backend (nvcc was "
                                                  "not found when it was built); use --device cpu");
        if (!cuda->available())
            return etx_error(ETX_ERR_UNSUPPORTED, "device cuda: no CUDA GPU is available; use --device cpu");
        *ops = cuda;
    } else if (device == ETX_DEVICE_AUTO) {
        if (cuda && !strstr(cuda->name, "emulator") && cuda->available()) *ops = cuda;
    } else if (device != ETX_DEVICE_CPU) {
        return etx_error(ETX_ERR_INVALID_ARG, "unknown device %d", (int)device);
    }
    return etx_ok();
}
