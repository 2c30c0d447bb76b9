/* SPDX-License-Identifier: Apache-2.0
 * Reference symmetric per-channel weight quantizer (ref/CONTRACT.md section 10),
 * upstream WeightQuantizer(perchannel=True, sym=True) in fp32. */
#include <math.h>
#include <string.h>

#include "resq/quant_weight.h"

int resq_qmax_sym(int bits) { return (1 << (bits - 1)) - 1; }

resq_wquant_params resq_wquant_default(int64_t K) {
  resq_wquant_params p = {K, K / 8, 4, 8, 0};
  return p;
}

resq_status resq_wquant_check(const resq_wquant_params *p) {
  if (!p) return resq_fail(RESQ_ERR_INVALID_ARG, "quant-weight: NULL params");
  if (p->K < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "quant-weight: K=%lld must be >= 1", (long long)p->K);
  if (p->r < 0 || p->r > p->K)
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant-weight: r=%lld must be in [0, K=%lld]", (long long)p->r,
                     (long long)p->K);
  if (p->bits_lo < 2 || p->bits_lo > 8 || p->bits_hi < 2 || p->bits_hi > 8)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "quant-weight: bits %d/%d (supported 2..8)", p->bits_lo, p->bits_hi);
  if (p->mse != 0 && p->mse != 1) return resq_fail(RESQ_ERR_INVALID_ARG, "quant-weight: mse must be 0 or 1");
  return RESQ_OK;
}

int resq_wquant_code(float w, float s, int bits) {
  float maxq = (float)resq_qmax_sym(bits);
  float q = nearbyintf(w / s);
  if (q < -maxq - 1.0f) q = -maxq - 1.0f;
  if (q > maxq) q = maxq;
  return (int)q;
}

float resq_wquant_scale_f32__ref(const float *w, int64_t n, int bits, int mse) {
  float maxq = (float)resq_qmax_sym(bits);
  float a = 0.0f;
  for (int64_t j = 0; j < n; j++) a = fabsf(w[j]) > a ? fabsf(w[j]) : a; /* max(|min|, max) with 0 included */
  if (a < 1e-5f) a = 1e-5f;
  float s = a / maxq;
  if (!mse) return s;
  /* upstream grid search: p = 1.00, 0.99, ..., 0.21; first strict improvement wins */
  double best = INFINITY;
  for (int i = 0; i < 80; i++) {
    float p = (float)(1.0 - (double)i / 100.0);
    float s1 = (p * a) / maxq;
    double err = 0.0;
    for (int64_t j = 0; j < n; j++) {
      float q = s1 * (float)resq_wquant_code(w[j], s1, bits);
      err += pow(fabs((double)(q - w[j])), 2.4);
    }
    if (err < best) {
      best = err;
      s = s1;
    }
  }
  return s;
}

resq_status resq_quant_weight_f32__ref(const resq_wquant_params *p, int64_t N, const float *W, int64_t ldw,
                                       int8_t *codes, int64_t ldc, float *scale_lo, float *scale_hi) {
  resq_status st = resq_wquant_check(p);
  if (st) return st;
  int64_t K = p->K, Klo = K - p->r;
  if (N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "quant-weight: N=%lld < 0", (long long)N);
  if (N > 0 && (!W || !codes || (Klo > 0 && !scale_lo) || (p->r > 0 && !scale_hi)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant-weight: NULL input or output");
  if (N > 1 && (ldw < K || ldc < K)) return resq_fail(RESQ_ERR_INVALID_ARG, "quant-weight: leading dimension < K");
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      if (!isfinite(W[n * ldw + k]))
        return resq_fail(RESQ_ERR_NONFINITE, "quant-weight: W[%lld][%lld] is NaN or Inf", (long long)n, (long long)k);
  for (int64_t n = 0; n < N; n++) {
    const float *w = W + n * ldw;
    float slo = Klo > 0 ? resq_wquant_scale_f32__ref(w, Klo, p->bits_lo, p->mse) : 0.0f;
    float shi = p->r > 0 ? resq_wquant_scale_f32__ref(w + Klo, p->r, p->bits_hi, p->mse) : 0.0f;
    for (int64_t k = 0; k < K; k++)
      codes[n * ldc + k] = (int8_t)(k < Klo ? resq_wquant_code(w[k], slo, p->bits_lo)
                                            : resq_wquant_code(w[k], shi, p->bits_hi));
    if (Klo > 0) scale_lo[n] = slo;
    if (p->r > 0) scale_hi[n] = shi;
  }
  return RESQ_OK;
}

resq_status resq_dequant_weight_f32__ref(const resq_wquant_params *p, int64_t N, const int8_t *codes,
                                         int64_t ldc, const float *scale_lo, const float *scale_hi, float *W,
                                         int64_t ldw) {
  resq_status st = resq_wquant_check(p);
  if (st) return st;
  int64_t Klo = p->K - p->r;
  if (N < 0 || (N > 0 && (!codes || !W || (Klo > 0 && !scale_lo) || (p->r > 0 && !scale_hi))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "dequant-weight: bad arguments");
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < p->K; k++)
      W[n * ldw + k] = (k < Klo ? scale_lo[n] : scale_hi[n]) * (float)codes[n * ldc + k];
  return RESQ_OK;
}
