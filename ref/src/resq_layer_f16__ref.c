/* SPDX-License-Identifier: Apache-2.0
 * Decoder-layer ops shared by both forms (RMSNorm, RoPE, attention) and the
 * FP16 layer, the baseline (ref/CONTRACT.md section 14).
 *
 * Reductions (RMSNorm's sum of squares, attention dot products and softmax
 * sums) run in double and round once: their result then does not depend on the
 * summation order, so optimized backends with other orders agree with this
 * reference except in the rare case where the double sum sits within ~1e-16 of
 * an fp32 rounding boundary. */
#include <math.h>
#include <string.h>

#include "layer_internal.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/layer.h"

resq_status resq_layer_config_named(const char *name, resq_layer_config *c) {
  static const struct {
    const char *name;
    resq_layer_config c;
  } k_named[] = {
      {"test", {256, 4, 2, 64, 688, 10000.0, 1e-5f}},           /* I = 172 * 4: exercises had172 */
      {"llama3-8b", {4096, 32, 8, 128, 14336, 500000.0, 1e-5f}}, /* I = 28 * 512 */
      {"llama2-7b", {4096, 32, 32, 128, 11008, 10000.0, 1e-5f}}, /* I = 172 * 64 */
      {"llama3-70b", {8192, 64, 8, 128, 28672, 500000.0, 1e-5f}},
  };
  for (size_t i = 0; i < sizeof k_named / sizeof k_named[0]; i++)
    if (name && strcmp(name, k_named[i].name) == 0) {
      *c = k_named[i].c;
      return RESQ_OK;
    }
  return resq_fail(RESQ_ERR_INVALID_ARG, "layer: unknown configuration '%s' (test, llama3-8b, llama2-7b, llama3-70b)",
                   name ? name : "(null)");
}

resq_status resq_layer_config_check(const resq_layer_config *c) {
  if (!c) return resq_fail(RESQ_ERR_INVALID_ARG, "layer: NULL config");
  if (c->d < 8 || c->H < 1 || c->G < 1 || c->hd < 8 || c->I < 1 || c->H % c->G || c->hd % 8 || c->d % 8)
    return resq_fail(RESQ_ERR_INVALID_ARG,
                     "layer: bad sizes d=%lld H=%lld G=%lld hd=%lld I=%lld (need H %% G == 0, d and hd multiples of 8)",
                     (long long)c->d, (long long)c->H, (long long)c->G, (long long)c->hd, (long long)c->I);
  if (c->d > (1 << 16) || c->I > (1 << 18) || c->H * c->hd > (1 << 16))
    return resq_fail(RESQ_ERR_TOO_LARGE, "layer: sizes beyond the reference's limits");
  if (!(c->rope_theta > 1.0) || !(c->eps > 0.0f))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer: rope_theta must be > 1 and eps > 0");
  return RESQ_OK;
}

resq_status resq_rmsnorm_f32__ref(int64_t T, int64_t d, const float *x, const float *gamma, float eps, float *y) {
  if (T < 0 || d < 1 || (T > 0 && (!x || !y))) return resq_fail(RESQ_ERR_INVALID_ARG, "rmsnorm: bad arguments");
  for (int64_t t = 0; t < T; t++) {
    double ss = 0.0;
    for (int64_t i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
    float ms = (float)(ss / (double)d);
    float rinv = 1.0f / sqrtf(ms + eps);
    for (int64_t i = 0; i < d; i++) {
      float v = x[t * d + i] * rinv;
      y[t * d + i] = gamma ? v * gamma[i] : v;
    }
  }
  return RESQ_OK;
}

resq_status resq_rope_f32__ref(int64_t T, int64_t nheads, int64_t hd, double theta, int64_t pos0, float *x) {
  if (T < 0 || nheads < 1 || hd < 2 || hd % 2 || (T > 0 && !x)) return resq_fail(RESQ_ERR_INVALID_ARG, "rope: bad arguments");
  int64_t half = hd / 2;
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < half; i++) {
      double inv_freq = pow(theta, -2.0 * (double)i / (double)hd);
      double ang = (double)(pos0 + t) * inv_freq;
      float c = (float)cos(ang), s = (float)sin(ang);
      for (int64_t h = 0; h < nheads; h++) {
        float *v = x + t * nheads * hd + h * hd;
        float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  return RESQ_OK;
}

resq_status resq_attention_f32__ref(int64_t T, int64_t H, int64_t G, int64_t hd, const float *q, const float *k,
                                    const float *v, float *o) {
  if (T < 0 || H < 1 || G < 1 || H % G || hd < 1 || (T > 0 && (!q || !k || !v || !o)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "attention: bad arguments");
  double scale = 1.0 / sqrt((double)hd);
  double *p = (double *)malloc(sizeof(double) * (size_t)(T > 0 ? T : 1));
  double *acc = (double *)malloc(sizeof(double) * (size_t)hd);
  if (!p || !acc) {
    free(p), free(acc);
    return resq_fail(RESQ_ERR_NOMEM, "attention: out of memory");
  }
  int64_t rep = H / G;
  for (int64_t h = 0; h < H; h++) {
    int64_t g = h / rep;
    for (int64_t t = 0; t < T; t++) {
      const float *qt = q + t * H * hd + h * hd;
      double mx = -INFINITY;
      for (int64_t j = 0; j <= t; j++) {
        const float *kj = k + j * G * hd + g * hd;
        double s = 0.0;
        for (int64_t i = 0; i < hd; i++) s += (double)qt[i] * kj[i];
        p[j] = s * scale;
        if (p[j] > mx) mx = p[j];
      }
      double z = 0.0;
      for (int64_t j = 0; j <= t; j++) z += (p[j] = exp(p[j] - mx));
      for (int64_t i = 0; i < hd; i++) acc[i] = 0.0;
      for (int64_t j = 0; j <= t; j++) {
        const float *vj = v + j * G * hd + g * hd;
        for (int64_t i = 0; i < hd; i++) acc[i] += p[j] * vj[i];
      }
      for (int64_t i = 0; i < hd; i++) o[t * H * hd + h * hd + i] = (float)(acc[i] / z);
    }
  }
  free(p), free(acc);
  return RESQ_OK;
}

/* ------------------------------------------------------------------ FP16 form */

/* The section-11 FP16 GEMM (resq_gemm_f16__ref, no bias) computed faster with
 * the same bits: x and four weight rows at a time are widened to fp32 once
 * (exact), and every output is still acc = 0.0f; acc = acc + x_k * w_k for k
 * ascending (each f16 x f16 product is exact in fp32, so only the sums round,
 * in the same order), then RNE_f16. Blocks of 4 tokens x 4 rows give 16
 * independent accumulation chains. xf: T*K floats, wf: 4*K floats. Non-finite
 * x or w fail with RESQ_ERR_NONFINITE before y is written, as the reference does. */
static resq_status gemm16(int64_t T, int64_t N, int64_t K, const uint16_t *x, const uint16_t *w, uint16_t *y,
                          float *xf, float *wf) {
  for (int64_t i = 0; i < T * K; i++)
    if ((x[i] & 0x7c00u) == 0x7c00u)
      return resq_fail(RESQ_ERR_NONFINITE, "gemm f16: x[%lld][%lld] is NaN or Inf", (long long)(i / K), (long long)(i % K));
  for (int64_t i = 0; i < N * K; i++)
    if ((w[i] & 0x7c00u) == 0x7c00u)
      return resq_fail(RESQ_ERR_NONFINITE, "gemm f16: w[%lld][%lld] is NaN or Inf", (long long)(i / K), (long long)(i % K));
  resq_f16_to_f32_n(x, xf, (size_t)(T * K));
  for (int64_t n0 = 0; n0 < N; n0 += 4) {
    const int64_t nb = N - n0 < 4 ? N - n0 : 4;
    resq_f16_to_f32_n(w + n0 * K, wf, (size_t)(nb * K));
    int64_t t = 0;
    if (nb == 4)
      for (; t + 4 <= T; t += 4) {
        float a[4][4] = {{0.0f}};
        const float *x0 = xf + t * K, *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
        const float *w0 = wf, *w1 = wf + K, *w2 = wf + 2 * K, *w3 = wf + 3 * K;
        for (int64_t k = 0; k < K; k++) {
          const float xv[4] = {x0[k], x1[k], x2[k], x3[k]}, wv[4] = {w0[k], w1[k], w2[k], w3[k]};
          for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) a[i][j] = a[i][j] + xv[i] * wv[j];
        }
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) y[(t + i) * N + n0 + j] = resq_f32_to_f16(a[i][j]);
      }
    for (; t < T; t++)
      for (int64_t j = 0; j < nb; j++) {
        float acc = 0.0f;
        const float *xt = xf + t * K, *wj = wf + j * K;
        for (int64_t k = 0; k < K; k++) acc = acc + xt[k] * wj[k];
        y[t * N + n0 + j] = resq_f32_to_f16(acc);
      }
  }
  return RESQ_OK;
}

size_t resq_layer_fp16_workspace_size(const resq_layer_config *c, int64_t T) {
  if (resq_layer_config_check(c) || T < 0) return 0;
  int64_t qd = c->H * c->hd, kd = c->G * c->hd, mx = c->d > c->I ? c->d : c->I;
  mx = mx > qd ? mx : qd;
  /* f32: x, a, q, k, v, o, h1, g, u + the GEMM's widened x [T][max K] and 4 weight rows; f16: a16, q16, k16, v16,
   * o16, t16, g16, u16 */
  int64_t f32 = T * (3 * c->d + 2 * qd + 2 * kd + 2 * c->I) + T * mx + 4 * mx; /* x a h1 | q o | k v | g u | xf wf */
  int64_t f16 = T * (mx + 2 * qd + 2 * kd + c->d + 2 * c->I);                 /* a16 | q16 o16 | k16 v16 | t16 | g16 u16 */
  return (size_t)(f32 * 4 + f16 * 2) + 64 * 32;
}

resq_status resq_layer_fp16_forward__ref(const resq_layer_config *c, const resq_layer_fp16 *w, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (T < 0 || !w || (T > 0 && (!h_in || !h_out)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer fp16: bad arguments");
  if (!w->wq || !w->wk || !w->wv || !w->wo || !w->wg || !w->wu || !w->wd || !w->ln1 || !w->ln2)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer fp16: a weight is NULL");
  if (!work || work_size < resq_layer_fp16_workspace_size(c, T))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer fp16: workspace of %zu bytes, %zu needed", work_size,
                     resq_layer_fp16_workspace_size(c, T));
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  for (int64_t i = 0; i < T * d; i++)
    if ((h_in[i] & 0x7c00u) == 0x7c00u) return resq_fail(RESQ_ERR_NONFINITE, "layer fp16: h_in[%lld] is NaN or Inf", (long long)i);
  bump b = {(char *)work, work_size, 0};
  float *x = bump_f32(&b, T * d), *a = bump_f32(&b, T * d), *q = bump_f32(&b, T * qd), *k = bump_f32(&b, T * kd);
  float *v = bump_f32(&b, T * kd), *o = bump_f32(&b, T * qd), *h1 = bump_f32(&b, T * d);
  float *g = bump_f32(&b, T * I), *u = bump_f32(&b, T * I);
  uint16_t *a16 = bump_u16(&b, T * (d > I ? (d > qd ? d : qd) : (I > qd ? I : qd))), *q16 = bump_u16(&b, T * qd), *k16 = bump_u16(&b, T * kd);
  uint16_t *v16 = bump_u16(&b, T * kd), *o16 = bump_u16(&b, T * qd), *t16 = bump_u16(&b, T * d);
  uint16_t *g16 = bump_u16(&b, T * I), *u16 = bump_u16(&b, T * I);
  int64_t mx = d > I ? d : I;
  mx = mx > qd ? mx : qd;
  float *xf = bump_f32(&b, T * mx), *wf = bump_f32(&b, 4 * mx);
  if (!wf) return resq_fail(RESQ_ERR_INTERNAL, "layer fp16: workspace accounting");
  resq_f16_to_f32_n(h_in, x, (size_t)(T * d));
  /* attention block */
  resq_rmsnorm_f32__ref(T, d, x, w->ln1, c->eps, a);
  resq_f32_to_f16_n(a, a16, (size_t)(T * d));
  if ((st = gemm16(T, qd, d, a16, w->wq, q16, xf, wf)) || (st = gemm16(T, kd, d, a16, w->wk, k16, xf, wf)) ||
      (st = gemm16(T, kd, d, a16, w->wv, v16, xf, wf)))
    return st;
  resq_f16_to_f32_n(q16, q, (size_t)(T * qd));
  resq_f16_to_f32_n(k16, k, (size_t)(T * kd));
  resq_f16_to_f32_n(v16, v, (size_t)(T * kd));
  resq_rope_f32__ref(T, c->H, c->hd, c->rope_theta, 0, q);
  resq_rope_f32__ref(T, c->G, c->hd, c->rope_theta, 0, k);
  if ((st = resq_attention_f32__ref(T, c->H, c->G, c->hd, q, k, v, o))) return st;
  resq_f32_to_f16_n(o, o16, (size_t)(T * qd));
  if ((st = gemm16(T, d, qd, o16, w->wo, t16, xf, wf))) return st;
  for (int64_t i = 0; i < T * d; i++) h1[i] = resq_round_f16(x[i] + resq_f16_to_f32(t16[i]));
  /* MLP block */
  resq_rmsnorm_f32__ref(T, d, h1, w->ln2, c->eps, a);
  resq_f32_to_f16_n(a, a16, (size_t)(T * d));
  if ((st = gemm16(T, I, d, a16, w->wg, g16, xf, wf)) || (st = gemm16(T, I, d, a16, w->wu, u16, xf, wf)))
    return st;
  for (int64_t i = 0; i < T * I; i++) {
    float gv = resq_f16_to_f32(g16[i]);
    g[i] = resq_round_f16(resq_silu_f32(gv) * resq_f16_to_f32(u16[i]));
  }
  resq_f32_to_f16_n(g, a16, (size_t)(T * I));
  if ((st = gemm16(T, d, I, a16, w->wd, t16, xf, wf))) return st;
  for (int64_t i = 0; i < T * d; i++) h_out[i] = resq_f32_to_f16(h1[i] + resq_f16_to_f32(t16[i]));
  (void)u;
  return RESQ_OK;
}
