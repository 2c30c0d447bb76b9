/* SPDX-License-Identifier: Apache-2.0
 * fp16/bf16 <-> fp32 conversions: exhaustive on the 16-bit side, and against an
 * independent oracle (nearest neighbour chosen in exact double arithmetic, plus
 * the compiler's _Float16 where available) on the fp32 side. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/rng.h"
#include "resq_check.h"

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Oracle: round f to the 16-bit format whose widening function is `widen`, by
 * scanning the candidates around a truncated guess and picking the nearest
 * (ties to the even code) in double arithmetic, which is exact here. */
static uint16_t oracle_round(float f, float (*widen)(uint16_t), uint16_t inf_code) {
  if (isnan(f)) return 0;
  uint16_t sign = signbit(f) ? 0x8000 : 0;
  double a = fabs((double)f);
  /* the largest finite code and its successor "virtual" value decide overflow */
  uint16_t maxc = (uint16_t)(inf_code - 1);
  double maxv = widen(maxc);
  double ulp_top = maxv - widen((uint16_t)(maxc - 1));
  if (a >= maxv + ulp_top / 2) {
    /* exactly half way rounds to even: maxc is odd in both formats -> Inf */
    return (uint16_t)(sign | inf_code);
  }
  /* binary search the largest code with value <= a */
  uint16_t lo = 0, hi = maxc;
  while (lo < hi) {
    uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
    if ((double)widen(mid) <= a) lo = mid;
    else hi = (uint16_t)(mid - 1);
  }
  uint16_t c = lo;
  if (c < maxc) {
    double d0 = a - widen(c), d1 = (double)widen((uint16_t)(c + 1)) - a;
    if (d1 < d0 || (d1 == d0 && (c & 1))) c++;
  }
  return (uint16_t)(sign | c);
}

static void case_f16_roundtrip(void) {
  if (!rc_case("f16_exhaustive_roundtrip")) return;
  long bad = 0, nan_ok = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = resq_f16_to_f32((uint16_t)h);
    uint16_t back = resq_f32_to_f16(f);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
      nan_ok += isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000);
      continue;
    }
    bad += back != h;
  }
  RC_CHECK(bad == 0, "%ld finite/inf f16 codes do not round-trip", bad);
  RC_CHECK(nan_ok == 2 * 1023, "NaN codes must stay NaN with their sign (%ld of 2046)", nan_ok);
}

static void case_f16_known(void) {
  if (!rc_case("f16_known_values")) return;
  RC_CHECK(resq_f16_to_f32(0x3c00) == 1.0f, "0x3c00 is 1");
  RC_CHECK(resq_f16_to_f32(0x7bff) == 65504.0f, "0x7bff is 65504");
  RC_CHECK(resq_f16_to_f32(0x0001) == 0x1p-24f, "0x0001 is 2^-24");
  RC_CHECK(resq_f16_to_f32(0x0400) == 0x1p-14f, "0x0400 is 2^-14");
  RC_CHECK(resq_f32_to_f16(65520.0f) == 0x7c00, "65520 (half way to 2^16) rounds to Inf");
  RC_CHECK(resq_f32_to_f16(65519.99f) == 0x7bff, "just below 65520 rounds to 65504");
  RC_CHECK(resq_f32_to_f16(0x1p-25f) == 0x0000, "2^-25 ties to even 0");
  RC_CHECK(resq_f32_to_f16(0x1.000002p-25f) == 0x0001, "just above 2^-25 rounds to the smallest subnormal");
  RC_CHECK(resq_f32_to_f16(0x1.8p-24f) == 0x0002, "1.5*2^-24 ties to even 2");
  RC_CHECK(resq_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "1 + half ulp ties to even 1");
  RC_CHECK(resq_f32_to_f16(1.0f + 0x1.8p-10f) == 0x3c02, "1 + 1.5 ulp ties to even");
  RC_CHECK(resq_f32_to_f16(-0.0f) == 0x8000, "-0 keeps its sign");
  RC_CHECK(resq_f32_to_f16(bits_f(0x00000001)) == 0, "fp32 subnormal underflows to 0");
  RC_CHECK(resq_f32_to_f16(INFINITY) == 0x7c00 && resq_f32_to_f16(-INFINITY) == 0xfc00, "Inf maps to Inf");
  RC_CHECK(resq_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16: 1 + half ulp ties to even");
  RC_CHECK(resq_f32_to_bf16(1.0f + 0x1.8p-7f) == 0x3f82, "bf16: 1 + 1.5 ulp ties up to even");
  RC_CHECK(resq_f32_to_bf16(bits_f(0x7f7fffff)) == 0x7f80, "bf16: FLT_MAX rounds to Inf");
  RC_CHECK(isnan(resq_bf16_to_f32(resq_f32_to_bf16(NAN))), "bf16: NaN stays NaN");
}

static void case_random(const char *name, int bf16) {
  if (!rc_case(name)) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  long bad = 0, bad_native = 0, n = 0;
  for (int i = 0; i < 400000; i++) {
    float f;
    if (i % 2) {
      /* values across (and beyond) the 16-bit range */
      int e = (int)resq_rng_range(&r, bf16 ? -140 : -30, bf16 ? 128 : 17);
      f = ldexpf(1.0f + resq_rng_uniform_f32(&r), e) * (resq_rng_u64(&r) & 1 ? -1.0f : 1.0f);
    } else {
      /* ties and near-ties: a 16-bit value plus an exact half step, +-1 fp32 ulp */
      uint16_t c = (uint16_t)resq_rng_u64(&r);
      float v = bf16 ? resq_bf16_to_f32(c) : resq_f16_to_f32(c);
      if (!isfinite(v)) continue;
      uint32_t u;
      memcpy(&u, &v, 4);
      u += (bf16 ? 0x8000u : 0x1000u) + (uint32_t)resq_rng_range(&r, -1, 1);
      memcpy(&f, &u, 4);
    }
    if (isnan(f)) continue;
    n++;
    uint16_t got = bf16 ? resq_f32_to_bf16(f) : resq_f32_to_f16(f);
    uint16_t want = oracle_round(f, bf16 ? resq_bf16_to_f32 : resq_f16_to_f32, bf16 ? 0x7f80 : 0x7c00);
    if (got != want) {
      if (bad < 5) printf("  %a: got 0x%04x want 0x%04x\n", (double)f, got, want);
      bad++;
    }
#if defined(__FLT16_MANT_DIG__)
    if (!bf16) {
      _Float16 h = (_Float16)f;
      uint16_t hb;
      memcpy(&hb, &h, 2);
      bad_native += hb != got;
    }
#endif
  }
  RC_CHECK(n > 300000, "enough samples (%ld)", n);
  RC_CHECK(bad == 0, "%ld of %ld roundings differ from the exact-nearest oracle", bad, n);
  RC_CHECK(bad_native == 0, "%ld of %ld roundings differ from the compiler's _Float16", bad_native, n);
}

int main(int argc, char **argv) {
  rc_init("dtype_test", argc, argv);
  case_f16_roundtrip();
  case_f16_known();
  case_random("f16_random_vs_oracle", 0);
  case_random("bf16_random_vs_oracle", 1);
  return rc_finish();
}
