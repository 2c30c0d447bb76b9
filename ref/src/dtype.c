/* SPDX-License-Identifier: Apache-2.0
 * Element types and bit-exact 16-bit float conversions (see resq/dtype.h). */
#include "resq/dtype.h"

#include <string.h>

static const struct {
  resq_dtype t;
  const char *name;
  size_t size;
} k_types[] = {
    {RESQ_DTYPE_F16, "f16", 2}, {RESQ_DTYPE_BF16, "bf16", 2}, {RESQ_DTYPE_F32, "f32", 4},
    {RESQ_DTYPE_F64, "f64", 8}, {RESQ_DTYPE_I8, "i8", 1},     {RESQ_DTYPE_U8, "u8", 1},
    {RESQ_DTYPE_I16, "i16", 2}, {RESQ_DTYPE_U16, "u16", 2},   {RESQ_DTYPE_I32, "i32", 4},
    {RESQ_DTYPE_I64, "i64", 8},
};

size_t resq_dtype_size(resq_dtype t) {
  for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
    if (k_types[i].t == t) return k_types[i].size;
  return 0;
}

const char *resq_dtype_name(resq_dtype t) {
  for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
    if (k_types[i].t == t) return k_types[i].name;
  return "invalid";
}

resq_dtype resq_dtype_from_name(const char *name) {
  for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
    if (name && strcmp(k_types[i].name, name) == 0) return k_types[i].t;
  return RESQ_DTYPE_INVALID;
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float resq_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t out;
  if (exp == 0x1f) {               /* Inf / NaN: keep payload, quiet it */
    out = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0);
  } else if (exp != 0) {           /* normal: rebias 15 -> 127 */
    out = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {           /* +-0 */
    out = sign;
  } else {                         /* subnormal: value = man * 2^-24, normalise */
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while ((man & 0x400u) == 0);
    out = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  return bits_f32(out);
}

/* Round the magnitude `mag` (an fp32 bit pattern without sign) right by `shift`
 * bits with ties-to-even. shift >= 1. Works for shifts up to 31. */
static uint32_t rne_shift(uint32_t mag, unsigned shift) {
  uint32_t half = 1u << (shift - 1);
  uint32_t rem = mag & ((1u << shift) - 1u);
  uint32_t q = mag >> shift;
  if (rem > half || (rem == half && (q & 1u))) q++;
  return q;
}

uint16_t resq_f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t exp = (u >> 23) & 0xffu;
  uint32_t man = u & 0x7fffffu;
  if (exp == 0xff) /* Inf or NaN (NaN stays NaN: keep top payload bits, force quiet) */
    return (uint16_t)(sign | 0x7c00u | (man ? (0x200u | (man >> 13)) : 0));
  int e = (int)exp - 127; /* unbiased exponent of a normal fp32 */
  if (exp == 0) return sign; /* fp32 subnormals are < 2^-126, far below half of f16's 2^-24 */
  if (e > 15) return (uint16_t)(sign | 0x7c00u);
  if (e >= -14) {
    /* normal f16 candidate: 10 mantissa bits; carry may roll into the exponent,
     * and an exponent of 31 after the carry is exactly Inf -- the encoding does it. */
    uint32_t mag = ((uint32_t)(e + 15) << 23) | man; /* rebiased, still 23-bit mantissa */
    return (uint16_t)(sign | rne_shift(mag, 13));
  }
  if (e < -25) return sign; /* below half the smallest subnormal (2^-25): rounds to 0 */
  /* subnormal f16: value = (1.man) * 2^e, unit 2^-24 => shift the 24-bit
   * significand right by (-14 - e) + 13 bits. e = -25 gives exactly half of the
   * smallest subnormal only when man == 0: a tie that rounds to even (0). */
  uint32_t sig = 0x800000u | man;
  unsigned shift = (unsigned)(-14 - e) + 13u;
  return (uint16_t)(sign | rne_shift(sig, shift));
}

float resq_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t resq_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) /* NaN: quiet, keep sign */
    return (uint16_t)((u >> 16) | 0x0040u);
  /* bf16 is the top half of fp32; RNE on the low 16 bits. Overflow to Inf and
   * subnormals fall out of the same integer rounding. */
  uint32_t sign = u & 0x80000000u;
  uint32_t mag = u & 0x7fffffffu;
  return (uint16_t)((sign >> 16) | rne_shift(mag, 16));
}

float resq_round_f16(float f) { return resq_f16_to_f32(resq_f32_to_f16(f)); }
float resq_round_bf16(float f) { return resq_bf16_to_f32(resq_f32_to_bf16(f)); }

void resq_f16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = resq_f16_to_f32(src[i]);
}

void resq_f32_to_f16_n(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = resq_f32_to_f16(src[i]);
}
