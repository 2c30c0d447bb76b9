// SPDX-License-Identifier: Apache-2.0
// Host-side helpers of the CUDA launchers: stream, error mapping, alignment.
#ifndef RESQ_CUDA_RQ_HOST_CUH
#define RESQ_CUDA_RQ_HOST_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "resq/cuda.h"
#include "resq/status.h"

static inline cudaStream_t rq_stream(void) { return (cudaStream_t)resq_cuda_get_stream(); }

// A failed launch: no usable device is RESQ_ERR_NO_DEVICE, anything else
// RESQ_ERR_DEVICE; the CUDA message goes to resq_last_error().
static inline resq_status rq_cuda_fail(cudaError_t e, const char *what) {
  cudaGetLastError();  // clear a sticky non-fatal error so the next call starts clean
  resq_status s = (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInitializationError)
                      ? RESQ_ERR_NO_DEVICE
                      : RESQ_ERR_DEVICE;
  return resq_fail(s, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

// The current device's ordinal as an index into the per-device caches (SiLU and RoPE
// tables) of RQ_MAX_DEVICES slots; a failure is reported under `what`.
#define RQ_MAX_DEVICES 64
static inline resq_status rq_device_slot(int *dev, const char *what) {
  cudaError_t e = cudaGetDevice(dev);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  if (*dev < 0 || *dev >= RQ_MAX_DEVICES)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: device ordinal %d >= %d", what, *dev, RQ_MAX_DEVICES);
  return RESQ_OK;
}

static inline int rq_aligned(const void *p, unsigned bytes) { return ((uintptr_t)p % bytes) == 0; }

// Most CTAs enqueued by one launch; larger problems are split into launches
// over consecutive row ranges (gridDim.x is limited to 2^31 - 1).
#define RQ_MAX_GRID ((int64_t)1 << 30)

#endif
