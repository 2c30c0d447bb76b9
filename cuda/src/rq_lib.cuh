// SPDX-License-Identifier: Apache-2.0
// cuBLAS / cuSOLVER handles of the calibration stages (PCA, GPTQ) and the
// mapping of their status codes to resq_status. Host code only.
#ifndef RESQ_CUDA_RQ_LIB_CUH
#define RESQ_CUDA_RQ_LIB_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "resq/status.h"

// Handles of the current device, created at the first call (thread safe) and
// bound to the backend's stream (resq_cuda_set_stream) at every call. NULL on
// failure with *st set (no device: RESQ_ERR_NO_DEVICE, else RESQ_ERR_DEVICE).
cublasHandle_t rq_cublas(resq_status *st);
cusolverDnHandle_t rq_cusolver(resq_status *st);

resq_status rq_cublas_fail(cublasStatus_t s, const char *what);
resq_status rq_cusolver_fail(cusolverStatus_t s, const char *what);

// A device buffer carved out of a caller's workspace: offsets rounded up to 256 bytes.
struct rq_carve {
  char *base;
  size_t cap, used;
  void *take(size_t bytes) {
    size_t off = (used + 255) & ~(size_t)255;
    if (!base || off + bytes > cap) return nullptr;
    used = off + bytes;
    return base + off;
  }
};

#endif
