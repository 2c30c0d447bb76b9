// SPDX-License-Identifier: Apache-2.0
// Internal ops of the CUDA decoder layer (resq_layer_{f16,q4q8}__cuda.cu):
// host launchers of device kernels on the resq stream. See resq/cuda.h
// "Decoder layer" for the numerics each one reproduces.
#ifndef RESQ_CUDA_RQ_LAYER_CUH
#define RESQ_CUDA_RQ_LAYER_CUH

#include <stdint.h>

#include "resq/cuda.h"

// y16[t][i] = RNE_f16(x[t][i] * rinv_t * gamma[i]) with x f16 (the FP16 form's
// normalization): the fp32 steps of resq_rmsnorm_f32__ref, the double sum of
// squares in the quantizer's documented tree order for r = 0 (rq_quant.cuh).
resq_status rq_rmsnorm_f16(int64_t T, int64_t d, const uint16_t *x, const float *gamma, float eps, uint16_t *y16);
// dst[i] = RNE_f16(a[i] + widen(b16[i])) (a: f16 widened; fp32 add, one rounding)
resq_status rq_residual_f16(int64_t n, const uint16_t *a16, const uint16_t *b16, uint16_t *dst);
// y[i] = widen(x16[i])
resq_status rq_widen(int64_t n, const uint16_t *x16, float *y);
// y[i] = RNE_f16(x[i])
resq_status rq_narrow(int64_t n, const float *x, uint16_t *y16);
// z[t][j] = silu(widen(g)) * widen(u) in fp32 (the reference's SiLU via the host table);
// z16 != NULL: also / instead RNE_f16 of it
resq_status rq_silu_mul(int64_t T, int64_t I, const uint16_t *g, const uint16_t *u, float *z, uint16_t *z16);
// x[row][j] <- (float) sum_{i ascending} (double)x[row][i] * k8[i][j] for rows x hd values
// (in place through a shared-memory copy of the row; the reference's fq8_rotate product)
resq_status rq_k8_rotate(int64_t rows, int64_t hd, const float *src, const float *k8, float *dst);

#endif
