// SPDX-License-Identifier: Apache-2.0
// rq_cublas / rq_cusolver (rq_lib.cuh).
#include <mutex>

#include "rq_host.cuh"
#include "rq_lib.cuh"

namespace {
std::mutex g_mu;
cublasHandle_t g_blas[64];
cusolverDnHandle_t g_solver[64];

int current_device(resq_status *st) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaFree(0);  // context (fails without a driver/device)
  if (e != cudaSuccess) {
    *st = rq_cuda_fail(e, "cuBLAS/cuSOLVER handle");
    return -1;
  }
  if (dev < 0 || dev >= 64) {
    *st = resq_fail(RESQ_ERR_UNSUPPORTED, "device ordinal %d >= 64", dev);
    return -1;
  }
  return dev;
}
}  // namespace

resq_status rq_cublas_fail(cublasStatus_t s, const char *what) {
  return resq_fail(s == CUBLAS_STATUS_NOT_INITIALIZED ? RESQ_ERR_NO_DEVICE : RESQ_ERR_DEVICE, "%s: cuBLAS status %d (%s)",
                   what, (int)s, cublasGetStatusString(s));
}

resq_status rq_cusolver_fail(cusolverStatus_t s, const char *what) {
  return resq_fail(s == CUSOLVER_STATUS_NOT_INITIALIZED ? RESQ_ERR_NO_DEVICE : RESQ_ERR_DEVICE, "%s: cuSOLVER status %d",
                   what, (int)s);
}

cublasHandle_t rq_cublas(resq_status *st) {
  *st = RESQ_OK;
  int dev = current_device(st);
  if (dev < 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_blas[dev]) {
    cublasStatus_t s = cublasCreate(&g_blas[dev]);
    if (s != CUBLAS_STATUS_SUCCESS) {
      g_blas[dev] = nullptr;
      *st = rq_cublas_fail(s, "cublasCreate");
      return nullptr;
    }
    // the calibration GEMMs are double: no tensor-op/TF32 shortcuts apply, keep the default math mode
  }
  cublasStatus_t s = cublasSetStream(g_blas[dev], rq_stream());
  if (s != CUBLAS_STATUS_SUCCESS) {
    *st = rq_cublas_fail(s, "cublasSetStream");
    return nullptr;
  }
  return g_blas[dev];
}

cusolverDnHandle_t rq_cusolver(resq_status *st) {
  *st = RESQ_OK;
  int dev = current_device(st);
  if (dev < 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_solver[dev]) {
    cusolverStatus_t s = cusolverDnCreate(&g_solver[dev]);
    if (s != CUSOLVER_STATUS_SUCCESS) {
      g_solver[dev] = nullptr;
      *st = rq_cusolver_fail(s, "cusolverDnCreate");
      return nullptr;
    }
  }
  cusolverStatus_t s = cusolverDnSetStream(g_solver[dev], rq_stream());
  if (s != CUSOLVER_STATUS_SUCCESS) {
    *st = rq_cusolver_fail(s, "cusolverDnSetStream");
    return nullptr;
  }
  return g_solver[dev];
}
