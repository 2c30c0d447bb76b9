// SPDX-License-Identifier: Apache-2.0
// Device-side reductions shared by the quantizer and the layer kernels (device
// code only; the orders are documented, and modelled on the host, in rq_quant.cuh).
#ifndef RESQ_CUDA_RQ_REDUCE_CUH
#define RESQ_CUDA_RQ_REDUCE_CUH

#include "rq_quant.cuh"

// The double sum of squares of a row over its 2^log_tg consecutive threads in
// the order of rq_quant.cuh ("Fused RMSNorm", steps 2-3): xor butterfly over the
// low five bits, then the warps' sums left to right (dred: 32 doubles of shared
// memory). Called by every thread of the CTA; every thread of the row returns
// the same value.
__device__ __forceinline__ double rq_reduce_ss(double ss, int log_tg, int tid, double *dred) {
  const int lb = log_tg < 5 ? log_tg : 5;
#pragma unroll 1
  for (int k = 0; k < lb; k++) ss = rq_rms_add(ss, __shfl_xor_sync(0xffffffffu, ss, 1 << k));
  if (log_tg > 5) {
    const int W = 1 << (log_tg - 5), w0 = (tid >> 5) & ~(W - 1);
    if ((tid & 31) == 0) dred[tid >> 5] = ss;
    __syncthreads();
    ss = dred[w0];
    for (int w = 1; w < W; w++) ss = rq_rms_add(ss, dred[w0 + w]);
  }
  return ss;
}

#endif
