/* SPDX-License-Identifier: Apache-2.0
 * The unquantized fp32 form of the decoder layer (ref/CONTRACT.md section 14):
 * what the preparation pipeline calibrates on (the PCA bases on the original
 * layer, GPTQ's Hessians on the rotated one) and what the tests compare the
 * rotated/fused layer with.
 *
 * Numerics: activations are fp32 throughout (no f16 roundings, unlike the FP16
 * form); every GEMM output is ONE rounding of a double sum over k ascending,
 *   y[t][n] = (float) sum_{k = 0..K-1} (double)x[t][k] * (double)w[n][k],
 * so a GEMM's error is u|y| plus the double sum's K 2^-53 sum|x||w| (tiny):
 * the fp32 form is close to exact arithmetic and its error bound is simple.
 * RMSNorm, RoPE, attention and SiLU are the shared ops of resq/layer.h;
 * residual adds are single fp32 additions. */
#include <math.h>
#include <string.h>

#include "layer_internal.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/layer_prepare.h"

/* y[t][n] = (float) sum_k (double)x[t][k] w[n][k], k ascending. Blocks of 4
 * tokens x 4 rows reuse every loaded weight 4 times; each output still has its
 * own single accumulator in k order, so blocking changes no bit. */
void resq_layer_gemm_f32d_(int64_t T, int64_t N, int64_t K, const float *x, int64_t ldx, const float *w, float *y,
                           int64_t ldy) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) {
    const float *x0 = x + t * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    int64_t n = 0;
    for (; n + 4 <= N; n += 4) {
      const float *w0 = w + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
      double a[4][4] = {{0}};
      for (int64_t k = 0; k < K; k++) {
        double xv[4] = {x0[k], x1[k], x2[k], x3[k]}, wv[4] = {w0[k], w1[k], w2[k], w3[k]};
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) a[i][j] += xv[i] * wv[j];
      }
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) y[(t + i) * ldy + n + j] = (float)a[i][j];
    }
    for (; n < N; n++) {
      const float *wn = w + n * K;
      double a[4] = {0, 0, 0, 0};
      for (int64_t k = 0; k < K; k++) {
        double wv = wn[k];
        a[0] += (double)x0[k] * wv, a[1] += (double)x1[k] * wv, a[2] += (double)x2[k] * wv, a[3] += (double)x3[k] * wv;
      }
      for (int i = 0; i < 4; i++) y[(t + i) * ldy + n] = (float)a[i];
    }
  }
  for (; t < T; t++) {
    const float *xt = x + t * ldx;
    for (int64_t n = 0; n < N; n++) {
      const float *wn = w + n * K;
      double a = 0.0;
      for (int64_t k = 0; k < K; k++) a += (double)xt[k] * wn[k];
      y[t * ldy + n] = (float)a;
    }
  }
}

size_t resq_layer_f32_workspace_size(const resq_layer_config *c, int64_t T) {
  if (resq_layer_config_check(c) || T < 0) return 0;
  int64_t qd = c->H * c->hd, kd = c->G * c->hd, d = c->d, I = c->I;
  /* x a h1 a2 y | q o | k v | g u z */
  int64_t f32 = T * (5 * d + 2 * qd + 2 * kd + 3 * I);
  return (size_t)f32 * 4 + resq_hadamard_workspace_size(I) + 16 * 32;
}

static void tap(float *dst, const float *src, int64_t n) {
  if (dst) memcpy(dst, src, sizeof(float) * (size_t)n);
}

static resq_status finite_weight(const char *name, const float *w, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(w[i])) return resq_fail(RESQ_ERR_NONFINITE, "layer f32: %s[%lld] is NaN or Inf", name, (long long)i);
  return RESQ_OK;
}

resq_status resq_layer_f32_forward__ref(const resq_layer_config *c, const resq_layer_f32 *w, int64_t T,
                                        const float *h_in, float *h_out, const resq_layer_taps *taps, void *work,
                                        size_t work_size) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (T < 0 || !w || (T > 0 && (!h_in || !h_out))) return resq_fail(RESQ_ERR_INVALID_ARG, "layer f32: bad arguments");
  if (!w->wq || !w->wk || !w->wv || !w->wo || !w->wg || !w->wu || !w->wd)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer f32: a weight is NULL");
  if (w->online_hadamard && (st = resq_hadamard_factor(c->I, NULL, NULL))) return st;
  size_t need = resq_layer_f32_workspace_size(c, T);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer f32: workspace of %zu bytes, %zu needed", work_size, need);
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  if ((st = finite_weight("wq", w->wq, qd * d)) || (st = finite_weight("wk", w->wk, kd * d)) ||
      (st = finite_weight("wv", w->wv, kd * d)) || (st = finite_weight("wo", w->wo, d * qd)) ||
      (st = finite_weight("wg", w->wg, I * d)) || (st = finite_weight("wu", w->wu, I * d)) ||
      (st = finite_weight("wd", w->wd, d * I)) || (w->ln1 && (st = finite_weight("ln1", w->ln1, d))) ||
      (w->ln2 && (st = finite_weight("ln2", w->ln2, d))))
    return st;
  for (int64_t i = 0; i < T * d; i++)
    if (!isfinite(h_in[i])) return resq_fail(RESQ_ERR_NONFINITE, "layer f32: h_in[%lld] is NaN or Inf", (long long)i);
  bump b = {(char *)work, work_size, 0};
  float *x = bump_f32(&b, T * d), *a = bump_f32(&b, T * d), *h1 = bump_f32(&b, T * d), *a2 = bump_f32(&b, T * d);
  float *y = bump_f32(&b, T * d);
  float *q = bump_f32(&b, T * qd), *o = bump_f32(&b, T * qd), *k = bump_f32(&b, T * kd), *v = bump_f32(&b, T * kd);
  float *g = bump_f32(&b, T * I), *u = bump_f32(&b, T * I), *z = bump_f32(&b, T * I);
  size_t hws = resq_hadamard_workspace_size(I);
  void *hw = bump_take(&b, hws);
  if (!hw) return resq_fail(RESQ_ERR_INTERNAL, "layer f32: workspace accounting");
  memcpy(x, h_in, sizeof(float) * (size_t)(T * d));

  /* attention block */
  resq_rmsnorm_f32__ref(T, d, x, w->ln1, c->eps, a);
  resq_layer_gemm_f32d_(T, qd, d, a, d, w->wq, q, qd);
  resq_layer_gemm_f32d_(T, kd, d, a, d, w->wk, k, kd);
  resq_layer_gemm_f32d_(T, kd, d, a, d, w->wv, v, kd);
  resq_rope_f32__ref(T, c->H, c->hd, c->rope_theta, 0, q);
  resq_rope_f32__ref(T, c->G, c->hd, c->rope_theta, 0, k);
  if ((st = resq_attention_f32__ref(T, c->H, c->G, c->hd, q, k, v, o))) return st;
  resq_layer_gemm_f32d_(T, d, qd, o, qd, w->wo, y, d);
  for (int64_t i = 0; i < T * d; i++) h1[i] = x[i] + y[i];

  /* MLP block */
  resq_rmsnorm_f32__ref(T, d, h1, w->ln2, c->eps, a2);
  resq_layer_gemm_f32d_(T, I, d, a2, d, w->wg, g, I);
  resq_layer_gemm_f32d_(T, I, d, a2, d, w->wu, u, I);
  for (int64_t i = 0; i < T * I; i++) z[i] = resq_silu_f32(g[i]) * u[i];
  if (w->online_hadamard && (st = resq_hadamard_f32__ref(T, I, z, I, z, I, NULL, hw, hws))) return st;
  resq_layer_gemm_f32d_(T, d, I, z, I, w->wd, y, d);

  /* nothing is written before the last step that can fail */
  if (taps) {
    tap(taps->a_attn, a, T * d), tap(taps->q, q, T * qd), tap(taps->k, k, T * kd), tap(taps->v, v, T * kd);
    tap(taps->o, o, T * qd), tap(taps->h_mid, h1, T * d), tap(taps->a_mlp, a2, T * d);
    tap(taps->g, g, T * I), tap(taps->u, u, T * I), tap(taps->z, z, T * I);
  }
  for (int64_t i = 0; i < T * d; i++) h_out[i] = h1[i] + y[i];
  return RESQ_OK;
}
