/* SPDX-License-Identifier: Apache-2.0
 * resq/quant_act.h -- asymmetric mixed-precision activation quantization.
 *
 * Every row of K channels is cut into K/group groups (group = K: per token;
 * group = head_dim: per head, for the KV cache and the o_proj input). Inside
 * each group the first group-r channels are the "lo" part (bits_lo <= 4, codes
 * packed two per byte) and the last r channels the "hi" part (bits_hi <= 8, one
 * code per byte). Each part of each group has its own fp32 scale and integer
 * zero point. Rounding rules, degenerate rows and the exact fp32 operation order
 * are in ref/CONTRACT.md section 3; path B (upstream bf16 parity) in section 4.
 *
 * Output layout (all row-major, caller-allocated, see resq_qact_layout):
 *   q_lo     row m at q_lo + m*ld_lo bytes; group g's lo codes start at byte
 *            g*lo_bytes_per_group (= ceil((group-r)/2)); code i of that group is
 *            in byte i/2, low nibble for even i, high nibble for odd i; an odd
 *            count leaves the last high nibble 0.
 *   q_hi     row m at q_hi + m*ld_hi bytes; group g's hi codes at byte g*r.
 *   scale_lo, zero_lo, scale_hi, zero_hi   [M][ngroups], contiguous.
 * With an even group-r, the q_lo row of the grouped variant *is* the packed lo
 * part of the o_proj input after upstream's column permutation (all lo columns
 * head-major, then all hi columns), and q_hi its hi part.
 */
#ifndef RESQ_QUANT_ACT_H
#define RESQ_QUANT_ACT_H

#include <stddef.h>
#include <stdint.h>

#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resq_qmode {
  RESQ_QMODE_PATH_A = 0,      /* fp32 math, range includes 0 (the suite's contract) */
  RESQ_QMODE_PATH_B_BF16 = 1  /* upstream per-group quantizer: bf16 rounding after every op */
} resq_qmode;

typedef struct resq_qact_params {
  int64_t K;      /* channels per row */
  int64_t group;  /* channels per group; K % group == 0. group == K: per token */
  int64_t r;      /* hi channels at the end of each group, 0 <= r <= group */
  int bits_lo;    /* 1..4 */
  int bits_hi;    /* 1..8 */
  float clip;     /* clip ratio in (0, 1], multiplies min and max */
  resq_qmode mode;
} resq_qact_params;

/* Defaults: K, group = K, r = K/8, 4 and 8 bits, clip 1, path A. */
resq_qact_params resq_qact_default(int64_t K);

typedef struct resq_qact {
  uint8_t *q_lo;
  int64_t ld_lo; /* bytes between rows */
  uint8_t *q_hi;
  int64_t ld_hi;
  float *scale_lo;
  int32_t *zero_lo;
  float *scale_hi;
  int32_t *zero_hi;
} resq_qact;

typedef struct resq_qact_layout {
  int64_t ngroups;
  int64_t lo_per_group;       /* group - r */
  int64_t lo_bytes_per_group; /* ceil((group-r)/2) */
  int64_t lo_bytes;           /* per row: ngroups * lo_bytes_per_group */
  int64_t hi_bytes;           /* per row: ngroups * r */
} resq_qact_layout;

/* Validate parameters and describe the output sizes. */
resq_status resq_qact_check(const resq_qact_params *p, resq_qact_layout *layout);

/* Quantize M rows (fp32 values; ldx elements between rows). Fails without
 * writing anything on NaN/Inf input, bad parameters, or (path B) a group whose
 * scale rounds to zero. */
resq_status resq_quant_act_f32_q4q8__ref(const resq_qact_params *p, int64_t M, const float *x,
                                         int64_t ldx, const resq_qact *out);
/* Same, f16 input (widened exactly). */
resq_status resq_quant_act_f16_q4q8__ref(const resq_qact_params *p, int64_t M, const uint16_t *x,
                                         int64_t ldx, const resq_qact *out);

/* Dequantize: path A  y = s * (float)(q - z)             (one fp32 multiply)
 *             path B  y = RNE_bf16(s * RNE_bf16(q - z))  (upstream parity)  */
resq_status resq_dequant_act_q4q8_f32__ref(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                           float *y, int64_t ldy);
/* Same, rounded once to f16. */
resq_status resq_dequant_act_q4q8_f16__ref(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                           uint16_t *y, int64_t ldy);

/* Upstream rearrange_o_proj order for H heads of hd channels with r_h hi
 * channels each (no lo-lo part): order[j] = source column of permuted column j
 * = all lo columns head-major, then all hi columns head-major. */
resq_status resq_oproj_column_order(int64_t H, int64_t hd, int64_t r_h, int32_t *order);

/* The integer maximum code of an asymmetric b-bit quantizer: 2^b - 1. */
int resq_qmax_asym(int bits);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_QUANT_ACT_H */
