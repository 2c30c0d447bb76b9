// SPDX-License-Identifier: Apache-2.0
// rq_silu_table(): see rq_silu.cuh. Host code only.
#include <cuda_runtime.h>

#include <mutex>

extern "C" {
#include "../../ref/src/layer_internal.h" /* resq_silu_f32: the reference's formula, one source of truth */
}
#include "resq/dtype.h"
#include "rq_host.cuh"
#include "rq_silu.cuh"

namespace {
std::mutex g_silu_mu;
float *g_silu_dev[RQ_MAX_DEVICES];  // per device ordinal
}  // namespace

const float *rq_silu_table(resq_status *st) {
  *st = RESQ_OK;
  int dev = 0;
  if ((*st = rq_device_slot(&dev, "silu table")) != RESQ_OK) return nullptr;
  std::lock_guard<std::mutex> lock(g_silu_mu);
  if (g_silu_dev[dev]) return g_silu_dev[dev];
  static float host[65536];
  for (unsigned b = 0; b < 65536u; b++) host[b] = resq_silu_f32(resq_f16_to_f32((uint16_t)b));
  float *d = nullptr;
  cudaError_t e = cudaMalloc(&d, sizeof host);
  if (e == cudaSuccess) e = cudaMemcpy(d, host, sizeof host, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    if (d) cudaFree(d);
    *st = rq_cuda_fail(e, "silu table");
    return nullptr;
  }
  g_silu_dev[dev] = d;
  return d;
}
