/* SPDX-License-Identifier: Apache-2.0
 * Properties of the reference mixed GEMM and the weight quantizer
 * (ref/CONTRACT.md sections 10 and 11):
 *  - exact tier: power-of-two scales make every epilogue term and sum exact, so
 *    y must equal the double-precision product of the dequantized operands bit
 *    for bit (and y_f16 its single rounding);
 *  - bound tier: realistic quantized operands vs the double dequantized product
 *    within the epilogue's rounding bound;
 *  - grouped = per-group sum, r = 0 (pure INT4), r = K (all INT8), extremes of
 *    the int32 range, packing, the weight quantizer, the FP16 baseline, and bad
 *    inputs. Integer sums are checked against int64 arithmetic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq_check.h"

static const double k_u = 0x1p-24;

/* Everything one GEMM problem needs, allocated together. */
typedef struct {
  resq_qact_params p;
  resq_qact_layout L;
  int64_t M, N;
  resq_qact x;
  resq_qweight w;
  int8_t *codes; /* [N][K] weight codes before packing */
  float *wsl, *wsh;
} prob;

static void prob_alloc(prob *P, int64_t M, int64_t N, int64_t K, int64_t group, int64_t r) {
  memset(P, 0, sizeof *P);
  P->p = resq_qact_default(K);
  P->p.group = group;
  P->p.r = r;
  resq_gemm_check(&P->p, &P->L);
  P->M = M;
  P->N = N;
  int64_t G = P->L.ngroups;
  P->x.q_lo = calloc((size_t)(M * P->L.lo_bytes) + 1, 1);
  P->x.ld_lo = P->L.lo_bytes;
  P->x.q_hi = calloc((size_t)(M * P->L.hi_bytes) + 1, 1);
  P->x.ld_hi = P->L.hi_bytes;
  P->x.scale_lo = calloc((size_t)(M * G) + 1, 4);
  P->x.scale_hi = calloc((size_t)(M * G) + 1, 4);
  P->x.zero_lo = calloc((size_t)(M * G) + 1, 4);
  P->x.zero_hi = calloc((size_t)(M * G) + 1, 4);
  P->w.N = N;
  P->w.q_lo = calloc((size_t)(N * P->L.lo_bytes) + 1, 1);
  P->w.ld_lo = P->L.lo_bytes;
  P->w.q_hi = calloc((size_t)(N * P->L.hi_bytes) + 1, 1);
  P->w.ld_hi = P->L.hi_bytes;
  P->w.scale_lo = calloc((size_t)N + 1, 4);
  P->w.scale_hi = calloc((size_t)N + 1, 4);
  P->w.sum_lo = calloc((size_t)(N * G) + 1, 4);
  P->w.sum_hi = calloc((size_t)(N * G) + 1, 4);
  P->codes = calloc((size_t)(N * K) + 1, 1);
  P->wsl = calloc((size_t)N + 1, 4);
  P->wsh = calloc((size_t)N + 1, 4);
}

static void prob_free(prob *P) {
  free(P->x.q_lo), free(P->x.q_hi), free(P->x.scale_lo), free(P->x.scale_hi), free(P->x.zero_lo), free(P->x.zero_hi);
  free(P->w.q_lo), free(P->w.q_hi), free(P->w.scale_lo), free(P->w.scale_hi), free(P->w.sum_lo), free(P->w.sum_hi);
  free(P->codes), free(P->wsl), free(P->wsh);
}

/* Position in the GEMM's K order (lo columns of all groups, then hi columns) of
 * group-order column k: the inverse of upstream's o_proj permutation. */
static int64_t korder(const prob *P, int64_t k) {
  int64_t g = k / P->p.group, i = k % P->p.group, lpg = P->L.lo_per_group;
  return i < lpg ? g * lpg + i : P->L.ngroups * lpg + g * P->p.r + (i - lpg);
}

/* Activation code of column k of row m, and its (scale, zero), from the documented layout. */
static int xcode(const prob *P, int64_t m, int64_t k, double *a, int *z) {
  int64_t g = k / P->p.group, i = k % P->p.group, lpg = P->L.lo_per_group;
  int64_t G = P->L.ngroups;
  if (i < lpg) {
    uint8_t b = P->x.q_lo[m * P->x.ld_lo + g * P->L.lo_bytes_per_group + i / 2];
    *a = P->x.scale_lo[m * G + g];
    *z = P->x.zero_lo[m * G + g];
    return (i & 1) ? b >> 4 : b & 15;
  }
  *a = P->x.scale_hi[m * G + g];
  *z = P->x.zero_hi[m * G + g];
  return P->x.q_hi[m * P->x.ld_hi + g * P->p.r + (i - lpg)];
}

/* Double-precision product of the dequantized operands, and the epilogue bound:
 * per term (2u + u^2 relative: a*s and the product), plus gamma_{T-1} over the
 * T-term fp32 sum, plus one rounding for the bias. */
static void dequant_product(const prob *P, const float *bias, double *ref, double *tol) {
  int64_t K = P->p.K, G = P->L.ngroups, T = G * ((P->L.lo_per_group > 0) + (P->p.r > 0));
  double gam = (T - 1) * k_u / (1 - (T - 1) * k_u);
  for (int64_t m = 0; m < P->M; m++)
    for (int64_t n = 0; n < P->N; n++) {
      double acc = 0, terms_abs = 0;
      double part[2][64] = {{0}};
      for (int64_t k = 0; k < K; k++) {
        double a;
        int z;
        int c = xcode(P, m, k, &a, &z);
        int64_t g = k / P->p.group;
        int hi = (k % P->p.group) >= P->L.lo_per_group;
        double s = hi ? P->w.scale_hi[n] : P->w.scale_lo[n];
        double v = a * (c - z) * s * P->codes[n * K + korder(P, k)];
        acc += v;
        part[hi][g] += v;
      }
      for (int h = 0; h < 2; h++)
        for (int64_t g = 0; g < G && g < 64; g++) terms_abs += fabs(part[h][g]);
      double b = bias ? bias[n] : 0.0;
      ref[m * P->N + n] = acc + b;
      tol[m * P->N + n] = (2 * k_u + k_u * k_u + gam) * terms_abs * (1 + 2 * k_u) + (bias ? k_u * (fabs(acc) + fabs(b)) * 2 : 0);
    }
}

static void fill_weights(prob *P, resq_rng *r, int pow2_scales) {
  int64_t K = P->p.K;
  for (int64_t n = 0; n < P->N; n++) {
    for (int64_t k = 0; k < K; k++) { /* K order: lo columns first */
      int hi = k >= P->L.ngroups * P->L.lo_per_group;
      P->codes[n * K + k] = (int8_t)(hi ? resq_rng_range(r, -128, 127) : resq_rng_range(r, -8, 7));
    }
    P->wsl[n] = pow2_scales ? ldexpf(1.0f, -(int)resq_rng_range(r, 2, 6)) : 0.01f + resq_rng_uniform_f32(r);
    P->wsh[n] = pow2_scales ? ldexpf(1.0f, -(int)resq_rng_range(r, 6, 10)) : 0.001f + resq_rng_uniform_f32(r) * 0.01f;
  }
  RC_CHECK(resq_gemm_pack_weight(&P->p, P->N, P->codes, K, P->wsl, P->wsh, &P->w) == RESQ_OK, "pack: %s",
           resq_last_error());
}

static void fill_acts_random(prob *P, resq_rng *r, int pow2_scales) {
  int64_t G = P->L.ngroups;
  for (int64_t i = 0; i < P->M * P->L.lo_bytes; i++) P->x.q_lo[i] = (uint8_t)resq_rng_u64(r);
  for (int64_t i = 0; i < P->M * P->L.hi_bytes; i++) P->x.q_hi[i] = (uint8_t)resq_rng_u64(r);
  /* pad nibbles of an odd lo count stay 0, as the quantizer writes them */
  if (P->L.lo_per_group % 2)
    for (int64_t m = 0; m < P->M; m++)
      for (int64_t g = 0; g < G; g++) P->x.q_lo[m * P->x.ld_lo + g * P->L.lo_bytes_per_group + P->L.lo_bytes_per_group - 1] &= 15;
  for (int64_t i = 0; i < P->M * G; i++) {
    P->x.scale_lo[i] = pow2_scales ? ldexpf(1.0f, -(int)resq_rng_range(r, 0, 4)) : 0.05f + resq_rng_uniform_f32(r);
    P->x.scale_hi[i] = pow2_scales ? ldexpf(1.0f, -(int)resq_rng_range(r, 3, 7)) : 0.005f + resq_rng_uniform_f32(r) * 0.05f;
    P->x.zero_lo[i] = (int32_t)resq_rng_range(r, 0, 15);
    P->x.zero_hi[i] = (int32_t)resq_rng_range(r, 0, 255);
  }
}

static void case_exact_tier(void) {
  if (!rc_case("exact_tier_pow2_scales")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* K small enough that every term (a*s)*i is an exact fp32 number and their sum
   * fits 24 bits: |i_lo| <= 240*K_lo, terms are multiples of 2^-16 at worst, and
   * 240 * 56 * 2^10 (scale spread) < 2^24. The double product is then exact too. */
  static const int64_t cfg[][4] = {{64, 64, 8, 0}, {64, 64, 0, 0}, {64, 64, 64, 0}, {64, 16, 2, 0}, {9, 9, 1, 0}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    prob P;
    prob_alloc(&P, 5, 7, cfg[c][0], cfg[c][1], cfg[c][2]);
    rc_note("M=5 N=7 K=%lld group=%lld r=%lld", (long long)cfg[c][0], (long long)cfg[c][1], (long long)cfg[c][2]);
    fill_weights(&P, &r, 1);
    fill_acts_random(&P, &r, 1);
    float bias[7];
    for (int i = 0; i < 7; i++) bias[i] = ldexpf((float)resq_rng_range(&r, -64, 64), -4);
    float y[35];
    uint16_t yh[35];
    double ref[35], tol[35];
    resq_status st = resq_gemm_q4q8_f32__ref(&P.p, 5, &P.x, &P.w, bias, y, 7);
    RC_CHECK(st == RESQ_OK, "gemm f32: %s", resq_last_error());
    RC_CHECK(resq_gemm_q4q8_f16__ref(&P.p, 5, &P.x, &P.w, bias, yh, 7) == RESQ_OK, "gemm f16");
    dequant_product(&P, bias, ref, tol);
    float want[35];
    uint16_t wanth[35];
    for (int i = 0; i < 35; i++) {
      want[i] = (float)ref[i];
      wanth[i] = resq_f32_to_f16(want[i]);
      RC_CHECK((double)want[i] == ref[i], "construction: ref[%d] = %.17g is not an exact fp32", i, ref[i]);
    }
    char what[64];
    snprintf(what, sizeof what, "y (cfg %zu)", c);
    rc_equal_f32_bits(y, want, 35, what);
    rc_equal_u16(yh, wanth, 35, "y_f16 = one rounding of the exact product");
    rc_nontrivial_f32(y, 35, 0.2, what);
    prob_free(&P);
  }
}

static void case_bound_tier(void) {
  if (!rc_case("bound_tier_quantized_llm_operands")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][4] = {{4096, 4096, 512, 3}, {11008, 11008, 0, 2}, {4096, 128, 16, 3}, {512, 512, 512, 2}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    int64_t K = cfg[c][0], M = cfg[c][3], N = 24;
    prob P;
    prob_alloc(&P, M, N, K, cfg[c][1], cfg[c][2]);
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld", (long long)M, (long long)N, (long long)K, (long long)cfg[c][1],
            (long long)cfg[c][2]);
    /* realistic operands: quantize LLM-like activations and gaussian weights */
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *W = malloc(sizeof(float) * (size_t)(N * K));
    for (int64_t i = 0; i < M * K; i++) x[i] = resq_round_f16((float)resq_rng_normal(&r));
    for (int k = 0; k < 4; k++) {
      int64_t ch = (int64_t)resq_rng_below(&r, (uint64_t)K);
      for (int64_t m = 0; m < M; m++) x[m * K + ch] = resq_round_f16(x[m * K + ch] * 200.0f);
    }
    for (int64_t i = 0; i < N * K; i++) W[i] = (float)resq_rng_normal(&r) * 0.02f;
    RC_CHECK(resq_quant_act_f32_q4q8__ref(&P.p, M, x, K, &P.x) == RESQ_OK, "quantize x: %s", resq_last_error());
    resq_wquant_params wp = resq_wquant_default(K);
    wp.r = P.L.ngroups * P.p.r;
    if (P.L.ngroups == 1)
      RC_CHECK(resq_quant_weight_f32__ref(&wp, N, W, K, P.codes, K, P.wsl, P.wsh) == RESQ_OK, "quantize W");
    else /* grouped: the weight columns are the permuted o_proj input (lo cols then hi cols) */
      for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) {
          int hi = k >= P.L.ngroups * P.L.lo_per_group;
          P.codes[n * K + k] = (int8_t)(hi ? resq_rng_range(&r, -128, 127) : resq_rng_range(&r, -8, 7));
        }
        P.wsl[n] = 0.003f;
        P.wsh[n] = 0.0002f;
      }
    RC_CHECK(resq_gemm_pack_weight(&P.p, N, P.codes, K, P.wsl, P.wsh, &P.w) == RESQ_OK, "pack");
    float *bias = malloc(sizeof(float) * (size_t)N);
    for (int64_t n = 0; n < N; n++) bias[n] = (float)resq_rng_normal(&r);
    float *y = malloc(sizeof(float) * (size_t)(M * N));
    double *ref = malloc(sizeof(double) * (size_t)(M * N)), *tol = malloc(sizeof(double) * (size_t)(M * N));
    RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, M, &P.x, &P.w, bias, y, N) == RESQ_OK, "gemm: %s", resq_last_error());
    dequant_product(&P, bias, ref, tol);
    char what[64];
    snprintf(what, sizeof what, "y vs dequantized double product (cfg %zu)", c);
    rc_within(y, ref, tol, 0, (size_t)(M * N), what);
    rc_nontrivial_f32(y, (size_t)(M * N), 0.01, what);
    free(x), free(W), free(bias), free(y), free(ref), free(tol);
    prob_free(&P);
  }
}

static void case_extremes(void) {
  if (!rc_case("int32_extremes")) return;
  /* all-hi split at the K_hi limit with the largest products: i = 255 * -128 * 32768 */
  const int64_t K = RESQ_GEMM_MAX_KHI;
  prob P;
  prob_alloc(&P, 1, 2, K, K, K);
  for (int64_t k = 0; k < K; k++) {
    P.codes[k] = -128;
    P.codes[K + k] = 127;
  }
  P.wsh[0] = P.wsh[1] = 1.0f;
  RC_CHECK(resq_gemm_pack_weight(&P.p, 2, P.codes, K, P.wsl, P.wsh, &P.w) == RESQ_OK, "pack");
  memset(P.x.q_hi, 255, (size_t)K);
  P.x.scale_hi[0] = 1.0f;
  P.x.zero_hi[0] = 0;
  float y[2];
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, 1, &P.x, &P.w, NULL, y, 2) == RESQ_OK, "gemm: %s", resq_last_error());
  int64_t want0 = 255LL * -128 * K, want1 = 255LL * 127 * K;
  RC_CHECK((double)y[0] == (double)(float)want0 && (double)y[1] == (double)(float)want1,
           "extreme sums: got %.1f %.1f want %lld %lld", (double)y[0], (double)y[1], (long long)want0, (long long)want1);
  /* with the zero point at its max the correction term is extreme too */
  P.x.zero_hi[0] = 255;
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, 1, &P.x, &P.w, NULL, y, 2) == RESQ_OK && y[0] == 0.0f && y[1] == 0.0f,
           "x == z everywhere gives exactly 0 (%g %g)", (double)y[0], (double)y[1]);
  prob_free(&P);
  resq_qact_params big = resq_qact_default(RESQ_GEMM_MAX_KHI + 8);
  big.r = RESQ_GEMM_MAX_KHI + 8;
  RC_CHECK(resq_gemm_check(&big, NULL) == RESQ_ERR_UNSUPPORTED, "K_hi beyond the limit is refused: %s",
           resq_last_error());
}

static void case_grouped_equals_sum(void) {
  if (!rc_case("grouped_equals_sum_of_groups")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* a grouped GEMM with power-of-two scales equals the exact sum over heads of
   * per-token GEMMs on each head's slice (each head's terms are exact) */
  const int64_t H = 4, hd = 16, rh = 2, K = H * hd, M = 3, N = 5;
  prob P;
  prob_alloc(&P, M, N, K, hd, rh);
  fill_weights(&P, &r, 1);
  fill_acts_random(&P, &r, 1);
  float y[15];
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, M, &P.x, &P.w, NULL, y, N) == RESQ_OK, "grouped: %s", resq_last_error());
  double ref[15], tol[15];
  dequant_product(&P, NULL, ref, tol);
  float want[15];
  for (int i = 0; i < 15; i++) want[i] = (float)ref[i];
  rc_equal_f32_bits(y, want, 15, "grouped y vs exact dequantized product");
  prob_free(&P);
}

static void case_pack_and_checks(void) {
  if (!rc_case("packing_and_bad_inputs")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  prob P;
  prob_alloc(&P, 2, 3, 64, 64, 8);
  fill_weights(&P, &r, 0);
  fill_acts_random(&P, &r, 0);
  long bad = 0;
  for (int64_t n = 0; n < 3; n++)
    for (int64_t k = 0; k < 56; k++) {
      int v = (P.w.q_lo[n * P.w.ld_lo + k / 2] >> (4 * (k & 1))) & 15;
      bad += (v >= 8 ? v - 16 : v) != P.codes[n * 64 + k];
    }
  RC_CHECK(bad == 0, "s4 nibbles unpack to the codes (%ld differ)", bad);
  int32_t sum = 0;
  for (int k = 56; k < 64; k++) sum += P.codes[k];
  RC_CHECK(sum == P.w.sum_hi[0], "hi sum");
  float y[6];
  P.w.sum_lo[1] += 1;
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, y, 3) == RESQ_ERR_INVALID_ARG &&
               strstr(resq_last_error(), "sums do not match"),
           "inconsistent weight sums are refused: %s", resq_last_error());
  P.w.sum_lo[1] -= 1;
  P.codes[5] = 9;
  RC_CHECK(resq_gemm_pack_weight(&P.p, 3, P.codes, 64, P.wsl, P.wsh, &P.w) == RESQ_ERR_INVALID_ARG,
           "s4 code 9 is refused");
  P.x.zero_lo[0] = 16;
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, y, 3) == RESQ_ERR_INVALID_ARG, "zero point 16 refused");
  P.x.zero_lo[0] = 3;
  P.x.scale_hi[1] = NAN;
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, y, 3) == RESQ_ERR_INVALID_ARG, "NaN scale refused");
  prob_free(&P);
  resq_qact_params odd = resq_qact_default(4 * 9);
  odd.group = 9;
  odd.r = 2;
  RC_CHECK(resq_gemm_check(&odd, NULL) == RESQ_ERR_UNSUPPORTED, "grouped odd lo count refused: %s", resq_last_error());
  odd.group = 36;
  RC_CHECK(resq_gemm_check(&odd, NULL) == RESQ_OK, "one group with an odd lo count is fine");
}

static void case_weight_quantizer(void) {
  if (!rc_case("weight_quantizer")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t N = 16, K = 256;
  float *W = malloc(sizeof(float) * N * K), *Wh = malloc(sizeof(float) * N * K);
  int8_t *c = malloc(N * K);
  float sl[16], sh[16];
  for (int64_t i = 0; i < N * K; i++) W[i] = (float)resq_rng_normal(&r);
  for (int64_t k = 0; k < K; k++) W[3 * K + k] = 0.0f; /* all-zero row: a = 1e-5 */
  for (int mse = 0; mse < 2; mse++) {
    resq_wquant_params p = resq_wquant_default(K);
    p.mse = mse;
    RC_CHECK(resq_quant_weight_f32__ref(&p, N, W, K, c, K, sl, sh) == RESQ_OK, "quantize (mse %d)", mse);
    resq_dequant_weight_f32__ref(&p, N, c, K, sl, sh, Wh, K);
    long bad_range = 0, bad_err = 0, bad_max = 0;
    double err_sum = 0;
    for (int64_t n = 0; n < N; n++) {
      for (int64_t k = 0; k < K; k++) {
        int hi = k >= K - p.r;
        int maxq = resq_qmax_sym(hi ? 8 : 4);
        float s = hi ? sh[n] : sl[n];
        bad_range += c[n * K + k] < -maxq - 1 || c[n * K + k] > maxq;
        double e = fabs((double)Wh[n * K + k] - W[n * K + k]);
        err_sum += e * e;
        /* without clipping every element is within s/2 (+ roundings of w/s and s*q) */
        if (!mse) bad_err += e > s / 2.0 + 2 * k_u * (fabs(W[n * K + k]) + s * (maxq + 1));
      }
      if (!mse && n != 3) {
        /* the row max maps to +-maxq exactly: s = a/maxq */
        int64_t arg = 0;
        for (int64_t k = 1; k < K - p.r; k++)
          if (fabsf(W[n * K + k]) > fabsf(W[n * K + arg])) arg = k;
        bad_max += abs(c[n * K + arg]) != 7;
      }
    }
    RC_CHECK(bad_range == 0, "codes in range (mse %d)", mse);
    if (!mse) RC_CHECK(bad_err == 0 && bad_max == 0, "RTN error <= s/2 (%ld) and row max -> 7 (%ld)", bad_err, bad_max);
    RC_CHECK(sl[3] == 1e-5f / 7.0f, "all-zero row: scale = 1e-5/7 (%a)", (double)sl[3]);
    printf("  mse=%d: weight MSE %.6g\n", mse, err_sum / (N * K));
  }
  /* the MSE search never does worse than p = 1 under its own norm (2.4) */
  float s_rtn = resq_wquant_scale_f32__ref(W, K, 4, 0), s_mse = resq_wquant_scale_f32__ref(W, K, 4, 1);
  double e_rtn = 0, e_mse = 0;
  for (int64_t k = 0; k < K; k++) {
    e_rtn += pow(fabs(s_rtn * resq_wquant_code(W[k], s_rtn, 4) - W[k]), 2.4);
    e_mse += pow(fabs(s_mse * resq_wquant_code(W[k], s_mse, 4) - W[k]), 2.4);
  }
  RC_CHECK(e_mse <= e_rtn && s_mse <= s_rtn, "MSE search: err %g <= %g, scale %g <= %g", e_mse, e_rtn, (double)s_mse,
           (double)s_rtn);
  W[7] = NAN;
  resq_wquant_params p = resq_wquant_default(K);
  RC_CHECK(resq_quant_weight_f32__ref(&p, N, W, K, c, K, sl, sh) == RESQ_ERR_NONFINITE, "NaN weight refused");
  free(W), free(Wh), free(c);
}

static void case_fp16_baseline(void) {
  if (!rc_case("fp16_baseline_gemm")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t M = 4, N = 9, K = 4096;
  uint16_t *x = malloc(2 * M * K), *w = malloc(2 * N * K), *yh = malloc(2 * M * N);
  float *y = malloc(4 * M * N);
  double *ref = malloc(8 * M * N), *tol = malloc(8 * M * N);
  for (int64_t i = 0; i < M * K; i++) x[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
  for (int64_t i = 0; i < N * K; i++) w[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.02f);
  RC_CHECK(resq_gemm_f16_f32__ref(M, N, K, x, K, w, K, NULL, y, N) == RESQ_OK, "run");
  RC_CHECK(resq_gemm_f16__ref(M, N, K, x, K, w, K, NULL, yh, N) == RESQ_OK, "run f16");
  double g = K * k_u / (1 - K * k_u);
  long bad16 = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < K; k++) {
        double p = (double)resq_f16_to_f32(x[m * K + k]) * resq_f16_to_f32(w[n * K + k]);
        acc += p;
        mag += fabs(p);
      }
      ref[m * N + n] = acc;
      tol[m * N + n] = g * mag; /* sequential fp32 sum of K exact products */
      bad16 += yh[m * N + n] != resq_f32_to_f16(y[m * N + n]);
    }
  rc_within(y, ref, tol, 0, (size_t)(M * N), "fp16 GEMM (fp32 out) vs double");
  RC_CHECK(bad16 == 0, "f16 output = one rounding of the fp32 result");
  /* exact tier: small integers make every partial sum exact */
  for (int64_t i = 0; i < M * K; i++) x[i] = resq_f32_to_f16((float)resq_rng_range(&r, -4, 4));
  for (int64_t i = 0; i < N * K; i++) w[i] = resq_f32_to_f16((float)resq_rng_range(&r, -4, 4));
  resq_gemm_f16_f32__ref(M, N, K, x, K, w, K, NULL, y, N);
  long bad = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; k++) acc += (int64_t)resq_f16_to_f32(x[m * K + k]) * (int64_t)resq_f16_to_f32(w[n * K + k]);
      bad += (double)y[m * N + n] != (double)acc;
    }
  RC_CHECK(bad == 0, "integer inputs: exact (%ld differ)", bad);
  x[5] = 0x7e00;
  RC_CHECK(resq_gemm_f16__ref(M, N, K, x, K, w, K, NULL, yh, N) == RESQ_ERR_NONFINITE, "NaN refused");
  free(x), free(w), free(yh), free(y), free(ref), free(tol);
}

int main(int argc, char **argv) {
  rc_init("gemm_q4q8_f16__ref_test", argc, argv);
  case_exact_tier();
  case_bound_tier();
  case_extremes();
  case_grouped_equals_sum();
  case_pack_and_checks();
  case_weight_quantizer();
  case_fp16_baseline();
  return rc_finish();
}
