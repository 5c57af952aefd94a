/*
 * backend.c — which backend runs an engine: the CPU's, always linked, and the optional
 * CUDA backend, which registers itself when its objects are linked in; see backend.h.
 */
#include "engine/backend.h"

#include <string.h>

#include "common.h"

static const BackendOps* g_cuda;

const BackendOps* etx_cuda_backend(void) { return g_cuda; }

void etx_register_cuda_backend(const BackendOps* ops) { g_cuda = ops; }

etx_status backend_pick(etx_device device, const BackendOps** ops) {
    const BackendOps* cuda = etx_cuda_backend();
    *ops = etx_cpu_backend();
    if (device == ETX_DEVICE_CUDA) {
        if (!cuda)
            return etx_error(ETX_ERR_UNSUPPORTED, "device cuda: this etx was built without the CUDA backend (nvcc was "
                                                  "not found when it was built); use --device cpu");
        if (!cuda->available())
            return etx_error(ETX_ERR_UNSUPPORTED, "device cuda: no CUDA GPU is available; use --device cpu");
        *ops = cuda;
    } else if (device == ETX_DEVICE_AUTO) {
        if (cuda && !cuda->emulated && cuda->available()) *ops = cuda;
    } else if (device != ETX_DEVICE_CPU) {
        return etx_error(ETX_ERR_INVALID_ARG, "unknown device %d", (int)device);
    }
    return etx_ok();
}

etx_status etx_measure_hardware(etx_device device, int n_threads, int quick, etx_hw_limits* out) {
    memset(out, 0, sizeof *out);
    if (n_threads < 0) return etx_error(ETX_ERR_INVALID_ARG, "threads must be >= 0 (got %d)", n_threads);
    const BackendOps* ops = NULL;
    ETX_TRY(backend_pick(device, &ops));
    return ops->measure(n_threads, quick, out);
}
