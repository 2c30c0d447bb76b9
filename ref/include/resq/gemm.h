/* SPDX-License-Identifier: Apache-2.0
 * resq/gemm.h -- mixed INT4/INT8 GEMM and the FP16 baseline (ref/CONTRACT.md
 * section 11). Y[M, N] = X[M, K] W[N, K]^T with X quantized by resq/quant_act.h
 * (u4 lo part, u8 hi part, per (row, group) scales and zeros) and W by
 * resq/quant_weight.h (s4 lo, s8 hi, per-row scales), sharing one column split. */
#ifndef RESQ_GEMM_H
#define RESQ_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "resq/quant_act.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest supported parts (int32 overflow analysis, CONTRACT section 11). */
#define RESQ_GEMM_MAX_KLO ((int64_t)1 << 23)
#define RESQ_GEMM_MAX_KHI ((int64_t)32768)

/* A packed weight in the canonical layout (caller-allocated arrays):
 *   q_lo      [N][lo_bytes]  s4 two's complement nibbles, same group layout as
 *                            the activations' q_lo (element 2i in the low nibble)
 *   q_hi      [N][hi_bytes]  s8
 *   scale_lo, scale_hi  [N]  fp32 (unused part may be NULL)
 *   sum_lo, sum_hi  [N][ngroups]  int32 sums of the codes of each group's part */
typedef struct resq_qweight {
  int64_t N;
  uint8_t *q_lo;
  int64_t ld_lo; /* bytes */
  int8_t *q_hi;
  int64_t ld_hi; /* bytes */
  float *scale_lo, *scale_hi;
  int32_t *sum_lo, *sum_hi;
} resq_qweight;

/* Check a split (K, group, r) for the GEMM: bits_lo <= 4, bits_hi <= 8, the
 * overflow limits, and an even group - r when there is more than one group. */
resq_status resq_gemm_check(const resq_qact_params *split, resq_qact_layout *layout);

/* Pack int8 codes [N][ldc] and per-row scales into the canonical layout,
 * computing the group sums. The codes are in the GEMM's K order, the order of
 * resq_quant_weight: the K_lo = ngroups*(group-r) lo columns first (group by
 * group, codes in [-8, 7]), then the K_hi = ngroups*r hi columns ([-128, 127]).
 * For one group that is simply [lo | hi]; for the grouped o_proj it is upstream's
 * permuted column order (resq_oproj_column_order). */
resq_status resq_gemm_pack_weight(const resq_qact_params *split, int64_t N, const int8_t *codes, int64_t ldc,
                                  const float *scale_lo, const float *scale_hi, const resq_qweight *out);

/* The mixed GEMM. bias: NULL or [N] fp32. Output f16 (RNE; overflow gives
 * +-Inf) or fp32, ldy elements between rows. The integer part is exact and the
 * epilogue order is fixed: every backend must reproduce these bits. */
resq_status resq_gemm_q4q8_f16__ref(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight *w, const float *bias, uint16_t *y, int64_t ldy);
resq_status resq_gemm_q4q8_f32__ref(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight *w, const float *bias, float *y, int64_t ldy);

/* FP16 baseline: y = sum_k x_k w_k in fp32, k ascending, + bias, RNE to f16. */
resq_status resq_gemm_f16__ref(int64_t M, int64_t N, int64_t K, const uint16_t *x, int64_t ldx, const uint16_t *w,
                               int64_t ldw, const float *bias, uint16_t *y, int64_t ldy);
/* Same with fp32 output (no final rounding). */
resq_status resq_gemm_f16_f32__ref(int64_t M, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                                   const uint16_t *w, int64_t ldw, const float *bias, float *y, int64_t ldy);

#ifdef __cplusplus
}
#endif
#endif
