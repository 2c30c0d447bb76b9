/* SPDX-License-Identifier: Apache-2.0
 * resq/dtype.h -- element types and the exact fp16/bf16 <-> fp32 conversions.
 *
 * 16-bit floats travel as their bit patterns in uint16_t so the API stays plain
 * C11 and identical between backends. Widening (f16/bf16 -> f32) is exact.
 * Narrowing (f32 -> f16/bf16) is IEEE round-to-nearest, ties-to-even, with
 * gradual underflow (subnormals kept), overflow to +-Inf, and NaN kept NaN
 * (quiet, sign kept). This is what a CUDA __float2half_rn / PyTorch .half()
 * does, written out in integer arithmetic so it does not depend on the host FPU
 * rounding mode, FTZ/DAZ flags or compiler support for _Float16.
 */
#ifndef RESQ_DTYPE_H
#define RESQ_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resq_dtype {
  RESQ_DTYPE_INVALID = 0,
  RESQ_DTYPE_F16,
  RESQ_DTYPE_BF16,
  RESQ_DTYPE_F32,
  RESQ_DTYPE_F64,
  RESQ_DTYPE_I8,
  RESQ_DTYPE_U8,
  RESQ_DTYPE_I16,
  RESQ_DTYPE_U16,
  RESQ_DTYPE_I32,
  RESQ_DTYPE_I64
} resq_dtype;

/* Size of one element in bytes (0 for RESQ_DTYPE_INVALID). */
size_t resq_dtype_size(resq_dtype t);
/* Short name: "f16", "bf16", "f32", "f64", "i8", "u8", "i16", "u16", "i32", "i64". */
const char *resq_dtype_name(resq_dtype t);
/* Inverse of resq_dtype_name; RESQ_DTYPE_INVALID if unknown. */
resq_dtype resq_dtype_from_name(const char *name);

/* Exact widening. */
float resq_f16_to_f32(uint16_t h);
float resq_bf16_to_f32(uint16_t b);
/* Round to nearest even (see header comment). */
uint16_t resq_f32_to_f16(float f);
uint16_t resq_f32_to_bf16(float f);
/* RNE_f16(f) / RNE_bf16(f) as floats: the value after one rounding to 16 bits. */
float resq_round_f16(float f);
float resq_round_bf16(float f);

/* Bulk helpers over contiguous arrays. */
void resq_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void resq_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_DTYPE_H */
