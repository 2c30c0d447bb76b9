// SPDX-License-Identifier: Apache-2.0
// Device probe, stream and memory helpers of the CUDA backend (resq/cuda.h).
#include <cuda_runtime.h>
#include <stdio.h>

#include "resq/cuda.h"
#include "rq_host.cuh"

static cudaStream_t g_stream = 0;
static char g_name[256];

extern "C" resq_status resq_cuda_probe(char *why, size_t cap) {
  int count = -1;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {  // checked first: without a driver the count is left untouched
    if (why) snprintf(why, cap, "cudaGetDeviceCount failed: %s (%d)", cudaGetErrorString(e), (int)e);
    cudaGetLastError();
    return RESQ_ERR_NO_DEVICE;
  }
  if (count <= 0) {
    if (why) snprintf(why, cap, "no CUDA device (count %d)", count);
    return RESQ_ERR_NO_DEVICE;
  }
  e = cudaFree(0);  // forces context creation: catches a device that exists but cannot be used
  if (e != cudaSuccess) {
    if (why) snprintf(why, cap, "cannot create a CUDA context: %s", cudaGetErrorString(e));
    cudaGetLastError();
    return RESQ_ERR_NO_DEVICE;
  }
  cudaDeviceProp p;
  int dev = 0;
  cudaGetDevice(&dev);
  if (cudaGetDeviceProperties(&p, dev) == cudaSuccess)
    snprintf(g_name, sizeof g_name, "%.200s (sm_%d%d, %d SMs)", p.name, p.major, p.minor, p.multiProcessorCount);
  if (why) snprintf(why, cap, "%s", g_name);
  return RESQ_OK;
}

extern "C" const char *resq_cuda_device_name(void) { return g_name; }
extern "C" void resq_cuda_set_stream(void *s) { g_stream = (cudaStream_t)s; }
extern "C" void *resq_cuda_get_stream(void) { return (void *)g_stream; }

// No usable device (no driver, no GPU) is RESQ_ERR_NO_DEVICE, any other CUDA
// error RESQ_ERR_DEVICE (rq_host.cuh, the same mapping as the kernels' launches).
static resq_status check(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return RESQ_OK;
  return rq_cuda_fail(e, what);
}

extern "C" resq_status resq_cuda_malloc(void **p, size_t bytes) {
  *p = NULL;
  return check(cudaMalloc(p, bytes ? bytes : 1), "cudaMalloc");
}
extern "C" void resq_cuda_free(void *p) { cudaFree(p); }
extern "C" resq_status resq_cuda_h2d(void *d, const void *s, size_t n) {
  return check(cudaMemcpy(d, s, n, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
extern "C" resq_status resq_cuda_d2h(void *d, const void *s, size_t n) {
  return check(cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}
extern "C" resq_status resq_cuda_memset(void *d, int v, size_t n) {
  return check(cudaMemsetAsync(d, v, n, g_stream), "cudaMemset");
}
extern "C" resq_status resq_cuda_sync(void) { return check(cudaStreamSynchronize(g_stream), "cudaStreamSynchronize"); }
