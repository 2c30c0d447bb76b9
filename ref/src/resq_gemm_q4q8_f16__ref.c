/* SPDX-License-Identifier: Apache-2.0
 * Reference mixed INT4/INT8 GEMM (ref/CONTRACT.md section 11).
 *
 * For each output (m, n) and group g of the shared column split:
 *   acc_lo = sum qx*qw over the group's lo columns (u4 x s4), acc_hi over its
 *   hi columns (u8 x s8), both int32 (exact: see the overflow limits);
 *   i = acc - z[m,g] * sum_w[n,g]   (zero-point correction by the weight's
 *   precomputed column sums: sum (qx - z) qw without a per-k subtraction);
 * then the epilogue in fp32, terms in K order (lo parts of groups 0..G-1, then
 * hi parts), each t = (a[m,g] * w[n]) * (float)i, summed left to right, + bias.
 * Plain loops: this is the specification, not a fast kernel. */
#include <math.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/gemm.h"

resq_status resq_gemm_check(const resq_qact_params *split, resq_qact_layout *L) {
  resq_qact_layout l;
  resq_status st = resq_qact_check(split, &l);
  if (st) return st;
  if (split->mode != RESQ_QMODE_PATH_A)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "gemm: activations must be path-A quantized");
  if (split->bits_lo > 4 || split->bits_hi > 8)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "gemm: needs bits_lo <= 4 and bits_hi <= 8 (got %d/%d)", split->bits_lo,
                     split->bits_hi);
  int64_t klo = l.ngroups * l.lo_per_group, khi = l.ngroups * split->r;
  if (klo > RESQ_GEMM_MAX_KLO || khi > RESQ_GEMM_MAX_KHI)
    return resq_fail(RESQ_ERR_UNSUPPORTED,
                     "gemm: K_lo=%lld / K_hi=%lld exceed the int32-exact limits %lld / %lld (CONTRACT section 11)",
                     (long long)klo, (long long)khi, (long long)RESQ_GEMM_MAX_KLO, (long long)RESQ_GEMM_MAX_KHI);
  if (l.ngroups > 1 && l.lo_per_group % 2)
    return resq_fail(RESQ_ERR_UNSUPPORTED,
                     "gemm: grouped split needs an even group - r (got %lld) so the lo codes are contiguous",
                     (long long)l.lo_per_group);
  if (L) *L = l;
  return RESQ_OK;
}

static int s4(uint8_t byte, int64_t i) {
  int v = (i & 1) ? byte >> 4 : byte & 15;
  return v >= 8 ? v - 16 : v; /* two's complement nibble */
}

static int u4(uint8_t byte, int64_t i) { return (i & 1) ? byte >> 4 : byte & 15; }

resq_status resq_gemm_pack_weight(const resq_qact_params *split, int64_t N, const int8_t *codes, int64_t ldc,
                                  const float *scale_lo, const float *scale_hi, const resq_qweight *out) {
  resq_qact_layout L;
  resq_status st = resq_gemm_check(split, &L);
  if (st) return st;
  int64_t G = L.ngroups, lpg = L.lo_per_group, r = split->r, K = split->K;
  if (N < 0 || (N > 0 && (!codes || !out || (lpg > 0 && (!scale_lo || !out->q_lo || !out->scale_lo || !out->sum_lo)) ||
                          (r > 0 && (!scale_hi || !out->q_hi || !out->scale_hi || !out->sum_hi)))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack: NULL argument");
  if (N > 1 && ldc < K) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack: ldc < K");
  const int64_t Klo = G * lpg; /* codes are in the GEMM's K order: all lo columns, then all hi columns */
  for (int64_t n = 0; n < N; n++) {
    for (int64_t k = 0; k < K; k++) {
      int c = codes[n * ldc + k];
      int hi = k >= Klo;
      if (!hi && (c < -8 || c > 7))
        return resq_fail(RESQ_ERR_INVALID_ARG, "gemm pack: code[%lld][%lld] = %d outside the s4 range [-8, 7]",
                         (long long)n, (long long)k, c);
    }
    if ((lpg > 0 && !(isfinite(scale_lo[n]) && scale_lo[n] >= 0)) || (r > 0 && !(isfinite(scale_hi[n]) && scale_hi[n] >= 0)))
      return resq_fail(RESQ_ERR_NONFINITE, "gemm pack: scale of row %lld is negative, NaN or Inf", (long long)n);
  }
  for (int64_t n = 0; n < N; n++) {
    for (int64_t g = 0; g < G; g++) {
      const int8_t *c = codes + n * ldc + g * lpg;        /* group g's lo columns */
      const int8_t *ch = codes + n * ldc + Klo + g * r;   /* group g's hi columns */
      if (lpg > 0) {
        uint8_t *dst = out->q_lo + n * out->ld_lo + g * L.lo_bytes_per_group;
        memset(dst, 0, (size_t)L.lo_bytes_per_group);
        int32_t sum = 0;
        for (int64_t i = 0; i < lpg; i++) {
          dst[i / 2] |= (uint8_t)((c[i] & 15) << (4 * (i & 1)));
          sum += c[i];
        }
        out->sum_lo[n * G + g] = sum;
      }
      if (r > 0) {
        int8_t *dst = out->q_hi + n * out->ld_hi + g * r;
        int32_t sum = 0;
        for (int64_t i = 0; i < r; i++) {
          dst[i] = ch[i];
          sum += ch[i];
        }
        out->sum_hi[n * G + g] = sum;
      }
    }
    if (lpg > 0) out->scale_lo[n] = scale_lo[n];
    if (r > 0) out->scale_hi[n] = scale_hi[n];
  }
  return RESQ_OK;
}

/* Validate everything the GEMM reads, including that the weight sums match the
 * codes (a mismatched sum would silently shift every output). */
static resq_status check_inputs(const resq_qact_params *p, const resq_qact_layout *L, int64_t M, const resq_qact *x,
                                const resq_qweight *w, const float *bias, const void *y, int64_t ldy) {
  int64_t G = L->ngroups, lpg = L->lo_per_group, r = p->r, N = w ? w->N : -1;
  if (M < 0 || !x || !w || N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: bad M, activations or weight");
  if (M > 0 && N > 0 && !y) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: NULL output");
  if (M > 1 && ldy < N) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: ldy < N");
  if (lpg > 0 && ((M > 0 && (!x->q_lo || !x->scale_lo || !x->zero_lo)) ||
                  (N > 0 && (!w->q_lo || !w->scale_lo || !w->sum_lo))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: lo part present but a lo array is NULL");
  if (r > 0 && ((M > 0 && (!x->q_hi || !x->scale_hi || !x->zero_hi)) || (N > 0 && (!w->q_hi || !w->scale_hi || !w->sum_hi))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: hi part present but a hi array is NULL");
  if ((M > 1 && ((lpg > 0 && x->ld_lo < L->lo_bytes) || (r > 0 && x->ld_hi < L->hi_bytes))) ||
      (N > 1 && ((lpg > 0 && w->ld_lo < L->lo_bytes) || (r > 0 && w->ld_hi < L->hi_bytes))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: a leading dimension is smaller than the packed row");
  for (int64_t m = 0; m < M; m++)
    for (int64_t g = 0; g < G; g++) {
      if (lpg > 0) {
        float a = x->scale_lo[m * G + g];
        int32_t z = x->zero_lo[m * G + g];
        if (!(isfinite(a) && a > 0) || z < 0 || z > resq_qmax_asym(p->bits_lo))
          return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: activation lo scale/zero of row %lld group %lld invalid",
                           (long long)m, (long long)g);
      }
      if (r > 0) {
        float a = x->scale_hi[m * G + g];
        int32_t z = x->zero_hi[m * G + g];
        if (!(isfinite(a) && a > 0) || z < 0 || z > resq_qmax_asym(p->bits_hi))
          return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: activation hi scale/zero of row %lld group %lld invalid",
                           (long long)m, (long long)g);
      }
    }
  for (int64_t n = 0; n < N; n++) {
    if ((lpg > 0 && !isfinite(w->scale_lo[n])) || (r > 0 && !isfinite(w->scale_hi[n])) ||
        (bias && !isfinite(bias[n])))
      return resq_fail(RESQ_ERR_NONFINITE, "gemm: weight scale or bias of row %lld is NaN or Inf", (long long)n);
    for (int64_t g = 0; g < G; g++) {
      int32_t slo = 0, shi = 0;
      for (int64_t i = 0; i < lpg; i++) slo += s4(w->q_lo[n * w->ld_lo + g * L->lo_bytes_per_group + i / 2], i);
      for (int64_t i = 0; i < r; i++) shi += w->q_hi[n * w->ld_hi + g * r + i];
      if ((lpg > 0 && slo != w->sum_lo[n * G + g]) || (r > 0 && shi != w->sum_hi[n * G + g]))
        return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: weight row %lld group %lld: stored code sums do not match the codes",
                         (long long)n, (long long)g);
    }
  }
  return RESQ_OK;
}

static resq_status gemm(const resq_qact_params *p, int64_t M, const resq_qact *x, const resq_qweight *w,
                        const float *bias, float *yf, uint16_t *yh, int64_t ldy) {
  resq_qact_layout L;
  resq_status st = resq_gemm_check(p, &L);
  if (!st) st = check_inputs(p, &L, M, x, w, bias, yf ? (const void *)yf : (const void *)yh, ldy);
  if (st) return st;
  int64_t G = L.ngroups, lpg = L.lo_per_group, r = p->r;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < w->N; n++) {
      float y = 0.0f;
      int first = 1;
      /* lo parts of all groups, then hi parts: the K order of the permuted input */
      for (int part = 0; part < 2; part++)
        for (int64_t g = 0; g < G; g++) {
          int32_t acc = 0, corr;
          float a, s;
          if (part == 0) {
            if (lpg == 0) continue;
            const uint8_t *xa = x->q_lo + m * x->ld_lo + g * L.lo_bytes_per_group;
            const uint8_t *wa = w->q_lo + n * w->ld_lo + g * L.lo_bytes_per_group;
            for (int64_t i = 0; i < lpg; i++) acc += u4(xa[i / 2], i) * s4(wa[i / 2], i);
            corr = x->zero_lo[m * G + g] * w->sum_lo[n * G + g];
            a = x->scale_lo[m * G + g];
            s = w->scale_lo[n];
          } else {
            if (r == 0) continue;
            const uint8_t *xa = x->q_hi + m * x->ld_hi + g * r;
            const int8_t *wa = w->q_hi + n * w->ld_hi + g * r;
            for (int64_t i = 0; i < r; i++) acc += (int32_t)xa[i] * (int32_t)wa[i];
            corr = x->zero_hi[m * G + g] * w->sum_hi[n * G + g];
            a = x->scale_hi[m * G + g];
            s = w->scale_hi[n];
          }
          float t = (a * s) * (float)(acc - corr);
          y = first ? t : y + t;
          first = 0;
        }
      if (bias) y = y + bias[n];
      if (yf) yf[m * ldy + n] = y;
      else yh[m * ldy + n] = resq_f32_to_f16(y);
    }
  return RESQ_OK;
}

resq_status resq_gemm_q4q8_f16__ref(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight *w, const float *bias, uint16_t *y, int64_t ldy) {
  return gemm(split, M, x, w, bias, NULL, y, ldy);
}

resq_status resq_gemm_q4q8_f32__ref(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight *w, const float *bias, float *y, int64_t ldy) {
  return gemm(split, M, x, w, bias, y, NULL, ldy);
}

static resq_status gemm_f16(int64_t M, int64_t N, int64_t K, const uint16_t *x, int64_t ldx, const uint16_t *w,
                            int64_t ldw, const float *bias, float *yf, uint16_t *yh, int64_t ldy) {
  if (M < 0 || N < 0 || K < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16: negative size");
  if (M > 0 && N > 0 && ((K > 0 && (!x || !w)) || (!yf && !yh)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16: NULL argument");
  if ((M > 1 && ldx < K) || (N > 1 && ldw < K) || (M > 1 && ldy < N))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16: leading dimension too small");
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++)
      if ((x[m * ldx + k] & 0x7c00u) == 0x7c00u)
        return resq_fail(RESQ_ERR_NONFINITE, "gemm f16: x[%lld][%lld] is NaN or Inf", (long long)m, (long long)k);
  for (int64_t n = 0; n < N; n++) {
    for (int64_t k = 0; k < K; k++)
      if ((w[n * ldw + k] & 0x7c00u) == 0x7c00u)
        return resq_fail(RESQ_ERR_NONFINITE, "gemm f16: w[%lld][%lld] is NaN or Inf", (long long)n, (long long)k);
    if (bias && !isfinite(bias[n])) return resq_fail(RESQ_ERR_NONFINITE, "gemm f16: bias[%lld] is NaN or Inf", (long long)n);
  }
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      float acc = 0.0f; /* every f16*f16 product is exact in fp32; only the sums round */
      for (int64_t k = 0; k < K; k++) acc = acc + resq_f16_to_f32(x[m * ldx + k]) * resq_f16_to_f32(w[n * ldw + k]);
      if (bias) acc = acc + bias[n];
      if (yf) yf[m * ldy + n] = acc;
      else yh[m * ldy + n] = resq_f32_to_f16(acc);
    }
  return RESQ_OK;
}

resq_status resq_gemm_f16__ref(int64_t M, int64_t N, int64_t K, const uint16_t *x, int64_t ldx, const uint16_t *w,
                               int64_t ldw, const float *bias, uint16_t *y, int64_t ldy) {
  return gemm_f16(M, N, K, x, ldx, w, ldw, bias, NULL, y, ldy);
}

resq_status resq_gemm_f16_f32__ref(int64_t M, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                                   const uint16_t *w, int64_t ldw, const float *bias, float *y, int64_t ldy) {
  return gemm_f16(M, N, K, x, ldx, w, ldw, bias, y, NULL, ldy);
}
