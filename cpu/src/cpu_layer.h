/* SPDX-License-Identifier: Apache-2.0
 * Internal: the decoder-layer ops of the CPU backend (ref/CONTRACT.md section
 * 14), bit-identical to the reference's (resq_layer_f16__ref.c,
 * resq_layer_q4q8__ref.c): every reduction keeps the reference's sequence
 * (double accumulators, the same index order); the code only runs independent
 * outputs side by side (vectorized lanes, rows over the pool). Each function
 * takes the call lock itself (do not call with it held). */
#ifndef RESQ_CPU_LAYER_H
#define RESQ_CPU_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_internal.h"

/* resq_rmsnorm_f32__ref: y[t] = x[t] * rinv_t (* gamma) */
void resq_cpu_rmsnorm(int64_t T, int64_t d, const float *x, const float *gamma, float eps, float *y);
/* resq_attention_f32__ref (causal GQA, double inside). RESQ_ERR_NOMEM possible. */
resq_status resq_cpu_attention(int64_t T, int64_t H, int64_t G, int64_t hd, const float *q, const float *k,
                               const float *v, float *o);
/* out[row][j] = (float) sum_{i ascending} (double)in[row][i] * k8[i][j] for rows
 * of hd values (the reference's fq8_rotate product); out may equal in. */
resq_status resq_cpu_rows_k8(int64_t rows, int64_t hd, const float *in, const float *k8, float *out);
/* z[i] = SiLU(g[i]) * u[i] in fp32 (g, u: f16 bits); f16 output when z16 != NULL
 * (RNE of the same fp32 value), else fp32 into z32 */
void resq_cpu_silu_mul(int64_t n, const uint16_t *g, const uint16_t *u, float *z32, uint16_t *z16);

#endif
