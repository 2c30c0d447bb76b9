/* SPDX-License-Identifier: Apache-2.0
 * resq/quant_weight.h -- symmetric per-output-channel weight quantization
 * (ref/CONTRACT.md section 10): W[N, K], the first K-r input columns with the lo
 * quantizer (bits_lo, default 4: codes [-8, 7]), the last r with the hi
 * quantizer (bits_hi, default 8: codes [-128, 127]); one fp32 scale per output
 * row and part, optional MSE clip search. */
#ifndef RESQ_QUANT_WEIGHT_H
#define RESQ_QUANT_WEIGHT_H

#include <stdint.h>

#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct resq_wquant_params {
  int64_t K;   /* input columns */
  int64_t r;   /* hi columns at the end, 0 <= r <= K */
  int bits_lo; /* 2..8 (codes are stored as int8 here; the GEMM needs 4) */
  int bits_hi; /* 2..8 (the GEMM needs 8) */
  int mse;     /* 1: upstream's MSE clip search (grid 100, maxshrink 0.8, norm 2.4) */
} resq_wquant_params;

resq_wquant_params resq_wquant_default(int64_t K); /* r = K/8, 4/8 bits, mse 0 */
resq_status resq_wquant_check(const resq_wquant_params *p);
/* maxq of a symmetric b-bit quantizer: 2^(b-1) - 1 */
int resq_qmax_sym(int bits);

/* Find the scale of one row slice (n values, fp32): a = max(max|w|, 1e-5),
 * s = a / maxq, or the MSE search. Exposed for GPTQ and tests. */
float resq_wquant_scale_f32__ref(const float *w, int64_t n, int bits, int mse);
/* code = clamp(rint(w / s), -maxq-1, maxq) */
int resq_wquant_code(float w, float s, int bits);

/* Quantize N rows of W (ldw elements apart). codes: int8 [N][ldc]; scales [N]
 * (scale_lo may be NULL when r == K, scale_hi when r == 0). Fails without
 * writing on NaN/Inf. */
resq_status resq_quant_weight_f32__ref(const resq_wquant_params *p, int64_t N, const float *W, int64_t ldw,
                                       int8_t *codes, int64_t ldc, float *scale_lo, float *scale_hi);
/* W_hat[n][k] = s * code (one fp32 multiply). */
resq_status resq_dequant_weight_f32__ref(const resq_wquant_params *p, int64_t N, const int8_t *codes,
                                         int64_t ldc, const float *scale_lo, const float *scale_hi, float *W,
                                         int64_t ldw);

#ifdef __cplusplus
}
#endif
#endif
