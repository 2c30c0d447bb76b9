/* SPDX-License-Identifier: Apache-2.0
 * Properties of the decoder-layer ops shared by the FP16 and ResQ forms
 * (ref/CONTRACT.md section 14): RMSNorm, RoPE, causal GQA attention, and the
 * FP16 layer's structure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/layer.h"
#include "resq/rng.h"
#include "resq_check.h"

static const double k_u = 0x1p-24;

static void case_rmsnorm(void) {
  if (!rc_case("rmsnorm_unit_rms_and_gamma")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t T = 5, d = 512;
  float *x = malloc(4 * T * d), *y = malloc(4 * T * d), *yg = malloc(4 * T * d), *g = malloc(4 * d);
  for (int64_t i = 0; i < T * d; i++) x[i] = (float)resq_rng_normal(&r) * (i % 97 == 0 ? 300.0f : 1.0f);
  for (int64_t i = 0; i < d; i++) g[i] = 0.5f + resq_rng_uniform_f32(&r);
  RC_CHECK(resq_rmsnorm_f32__ref(T, d, x, NULL, 1e-5f, y) == RESQ_OK, "run");
  resq_rmsnorm_f32__ref(T, d, x, g, 1e-5f, yg);
  long bad = 0, badg = 0;
  for (int64_t t = 0; t < T; t++) {
    double ss = 0;
    for (int64_t i = 0; i < d; i++) {
      ss += (double)y[t * d + i] * y[t * d + i];
      badg += yg[t * d + i] != y[t * d + i] * g[i];
    }
    /* rms of y = sqrt(ms/(ms+eps)) up to ~4 fp32 roundings (ms, +eps, sqrt, /, *) */
    double ms = 0;
    for (int64_t i = 0; i < d; i++) ms += (double)x[t * d + i] * x[t * d + i];
    ms /= d;
    double want = ms / (ms + 1e-5);
    bad += fabs(ss / d - want) > 12 * k_u * want;
  }
  RC_CHECK(bad == 0, "mean(y^2) = ms/(ms+eps) within 12u (%ld rows off)", bad);
  RC_CHECK(badg == 0, "gamma is one fp32 multiply after the normalization");
  free(x), free(y), free(yg), free(g);
}

static void case_rope(void) {
  if (!rc_case("rope_relative_position_and_norm")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t hd = 128, T = 40;
  float *q = malloc(4 * T * hd), *k = malloc(4 * T * hd), *q0 = malloc(4 * hd), *k0 = malloc(4 * hd);
  for (int64_t i = 0; i < hd; i++) {
    q0[i] = (float)resq_rng_normal(&r);
    k0[i] = (float)resq_rng_normal(&r);
  }
  for (int64_t t = 0; t < T; t++) {
    memcpy(q + t * hd, q0, 4 * hd);
    memcpy(k + t * hd, k0, 4 * hd);
  }
  RC_CHECK(resq_rope_f32__ref(T, 1, hd, 500000.0, 0, q) == RESQ_OK, "rope q");
  resq_rope_f32__ref(T, 1, hd, 500000.0, 0, k);
  RC_CHECK(memcmp(q, q0, 4 * hd) == 0, "position 0 is the identity (cos 1, sin 0)");
  /* the score depends only on t - s: (t, s) = (9, 2), (16, 9), (39, 32) */
  double sc[3];
  int64_t ts[3][2] = {{9, 2}, {16, 9}, {39, 32}};
  double qn = 0;
  for (int64_t i = 0; i < hd; i++) qn += fabs((double)q0[i] * k0[i]) * 2;
  for (int c = 0; c < 3; c++) {
    sc[c] = 0;
    for (int64_t i = 0; i < hd; i++) sc[c] += (double)q[ts[c][0] * hd + i] * k[ts[c][1] * hd + i];
  }
  /* each rotated element carries ~3 roundings plus the fp32 cos/sin: 8u * sum|q||k| covers it */
  RC_CHECK(fabs(sc[0] - sc[1]) < 16 * k_u * qn && fabs(sc[0] - sc[2]) < 16 * k_u * qn,
           "relative position: %.9g %.9g %.9g", sc[0], sc[1], sc[2]);
  long bad = 0;
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < hd / 2; i++) {
      double n0 = (double)q0[i] * q0[i] + (double)q0[i + 64] * q0[i + 64];
      double n1 = (double)q[t * hd + i] * q[t * hd + i] + (double)q[t * hd + i + 64] * q[t * hd + i + 64];
      bad += fabs(n1 - n0) > 8 * k_u * n0 + 1e-30;
    }
  RC_CHECK(bad == 0, "each (i, i+hd/2) pair keeps its norm (%ld off)", bad);
  free(q), free(k), free(q0), free(k0);
}

static void case_attention(void) {
  if (!rc_case("attention_causal_gqa_softmax")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t T = 12, H = 4, G = 2, hd = 16;
  size_t nq = (size_t)(T * H * hd), nk = (size_t)(T * G * hd);
  float *q = malloc(4 * nq), *k = malloc(4 * nk), *v = malloc(4 * nk), *o = malloc(4 * nq), *o2 = malloc(4 * nq);
  for (size_t i = 0; i < nq; i++) q[i] = (float)resq_rng_normal(&r);
  for (size_t i = 0; i < nk; i++) k[i] = (float)resq_rng_normal(&r), v[i] = (float)resq_rng_normal(&r);
  RC_CHECK(resq_attention_f32__ref(T, H, G, hd, q, k, v, o) == RESQ_OK, "run");
  /* causality: changing positions > 6 leaves outputs 0..6 bit-identical */
  for (size_t i = 7 * G * hd; i < nk; i++) k[i] += 1.0f, v[i] -= 2.0f;
  resq_attention_f32__ref(T, H, G, hd, q, k, v, o2);
  RC_CHECK(memcmp(o, o2, 4 * 7 * H * hd) == 0, "outputs before position 7 do not see later positions");
  RC_CHECK(memcmp(o + 7 * H * hd, o2 + 7 * H * hd, 4 * 5 * H * hd) != 0, "later outputs do change");
  /* position 0 attends only to itself: o_0 = v_0 of its KV head */
  long bad = 0;
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = 0; i < hd; i++) bad += o[h * hd + i] != v[(h / 2) * hd + i];
  RC_CHECK(bad == 0, "o at position 0 equals v_0 of the head's KV group (GQA map h -> h / (H/G))");
  /* softmax weights sum to one: constant v gives exactly that constant */
  for (size_t i = 0; i < nk; i++) v[i] = 0.75f;
  resq_attention_f32__ref(T, H, G, hd, q, k, v, o);
  bad = 0;
  for (size_t i = 0; i < nq; i++) bad += fabsf(o[i] - 0.75f) > 2 * 0.75f * (float)k_u;
  RC_CHECK(bad == 0, "constant v gives the constant (weights sum to 1): %ld off", bad);
  free(q), free(k), free(v), free(o), free(o2);
}

static void case_fp16_layer(void) {
  if (!rc_case("fp16_layer_structure")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  resq_layer_config c;
  RC_CHECK(resq_layer_config_named("test", &c) == RESQ_OK, "test config");
  const int64_t T = 8, d = c.d, qd = c.H * c.hd, kd = c.G * c.hd, I = c.I;
  uint16_t *wq = calloc((size_t)(qd * d), 2), *wk = calloc((size_t)(kd * d), 2), *wv = calloc((size_t)(kd * d), 2);
  uint16_t *wo = calloc((size_t)(d * qd), 2), *wg = calloc((size_t)(I * d), 2), *wu = calloc((size_t)(I * d), 2);
  uint16_t *wd = calloc((size_t)(d * I), 2), *h = malloc(2 * (size_t)(T * d)), *y = malloc(2 * (size_t)(T * d));
  uint16_t *y2 = malloc(2 * (size_t)(T * d));
  float *g1 = malloc(4 * d), *g2 = malloc(4 * d);
  for (int64_t i = 0; i < d; i++) g1[i] = g2[i] = 1.0f;
  for (int64_t i = 0; i < T * d; i++) h[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
  resq_layer_fp16 w = {wq, wk, wv, wo, wg, wu, wd, g1, g2};
  size_t ws = resq_layer_fp16_workspace_size(&c, T);
  void *work = malloc(ws);
  RC_CHECK(resq_layer_fp16_forward__ref(&c, &w, T, h, y, work, ws) == RESQ_OK, "run: %s", resq_last_error());
  RC_CHECK(memcmp(h, y, 2 * (size_t)(T * d)) == 0, "zero weights: the layer is the identity on the residual stream");
  for (int64_t i = 0; i < qd * d; i++) wq[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f);
  for (int64_t i = 0; i < kd * d; i++) wk[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f),
                                       wv[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f);
  for (int64_t i = 0; i < d * qd; i++) wo[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f);
  for (int64_t i = 0; i < I * d; i++) wg[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f),
                                      wu[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f);
  for (int64_t i = 0; i < d * I; i++) wd[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f);
  RC_CHECK(resq_layer_fp16_forward__ref(&c, &w, T, h, y, work, ws) == RESQ_OK, "run with weights");
  RC_CHECK(resq_layer_fp16_forward__ref(&c, &w, T, h, y2, work, ws) == RESQ_OK && memcmp(y, y2, 2 * (size_t)(T * d)) == 0,
           "deterministic");
  RC_CHECK(memcmp(h, y, 2 * (size_t)(T * d)) != 0, "non-zero weights change the stream");
  /* causal: token 0's output does not depend on token 5 */
  h[5 * d + 3] = resq_f32_to_f16(resq_f16_to_f32(h[5 * d + 3]) + 4.0f);
  resq_layer_fp16_forward__ref(&c, &w, T, h, y2, work, ws);
  RC_CHECK(memcmp(y, y2, 2 * (size_t)(5 * d)) == 0, "tokens 0..4 unaffected by token 5");
  h[0] = 0x7c00;
  RC_CHECK(resq_layer_fp16_forward__ref(&c, &w, T, h, y2, work, ws) == RESQ_ERR_NONFINITE, "Inf input refused");
  RC_CHECK(resq_layer_fp16_forward__ref(&c, &w, T, h, y2, work, ws - 1) == RESQ_ERR_INVALID_ARG, "small workspace");
  free(wq), free(wk), free(wv), free(wo), free(wg), free(wu), free(wd), free(h), free(y), free(y2), free(g1), free(g2);
  free(work);
}

int main(int argc, char **argv) {
  rc_init("layer_ops_test", argc, argv);
  case_rmsnorm();
  case_rope();
  case_attention();
  case_fp16_layer();
  return rc_finish();
}
