/* SPDX-License-Identifier: Apache-2.0
 * The FP16 form of the decoder layer (resq_layer_fp16_forward__ref) against
 * an independent, deliberately plain implementation written from the text of
 * ref/CONTRACT.md section 14 (FP16 form) and section 11 (FP16 GEMM): one token
 * at a time, one output at a time, no workspace, no blocking.
 *
 * Every operation of the contract is pinned (f16 storage points, fp32 GEMM
 * sums from 0.0f with k ascending, double reductions rounded once, the
 * attention's acc / z), so the comparison is BIT FOR BIT: any difference is a
 * deviation from the contract (or a changed contract). Sizes: the named test
 * configuration and an MHA layer whose intermediate size is not a multiple of
 * 4 (the reference's 4x4 GEMM blocking has remainders there) at T = 13
 * (ditto). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/layer.h"
#include "resq/layer_synth.h"
#include "resq/rng.h"
#include "resq_check.h"

static float f(uint16_t h) { return resq_f16_to_f32(h); }
static uint16_t h16(float x) { return resq_f32_to_f16(x); }

/* section 11 FP16 GEMM of one output: acc = 0.0f; acc = acc + x_k * w_k, k ascending */
static uint16_t dot16(int64_t K, const uint16_t *x, const uint16_t *w) {
  float acc = 0.0f;
  for (int64_t k = 0; k < K; k++) acc = acc + f(x[k]) * f(w[k]);
  return h16(acc);
}

/* RMSNorm of one token, section 14: ms = (float)(sum x^2 / d) (double sum), rinv = 1/sqrtf(ms + eps),
 * a_i = (x_i * rinv) * gamma_i in fp32, stored f16 */
static void rmsnorm16(int64_t d, const float *x, const float *gamma, float eps, uint16_t *a) {
  double ss = 0.0;
  for (int64_t i = 0; i < d; i++) ss += (double)x[i] * (double)x[i];
  float ms = (float)(ss / (double)d);
  float rinv = 1.0f / sqrtf(ms + eps);
  for (int64_t i = 0; i < d; i++) {
    float v = x[i] * rinv;
    a[i] = h16(v * gamma[i]);
  }
}

/* RoPE (HF rotate_half) of one head vector at position p */
static void rope(int64_t hd, double theta, int64_t p, float *v) {
  for (int64_t i = 0; i < hd / 2; i++) {
    double ang = (double)p * pow(theta, -2.0 * (double)i / (double)hd);
    float c = (float)cos(ang), s = (float)sin(ang);
    float a = v[i], b = v[i + hd / 2];
    v[i] = a * c - b * s;
    v[i + hd / 2] = b * c + a * s;
  }
}

/* the plain FP16 layer; all buffers malloc'ed here */
static void naive_fp16_layer(const resq_layer_config *c, const resq_layer_fp16 *w, int64_t T, const uint16_t *h,
                             uint16_t *out) {
  const int64_t d = c->d, H = c->H, G = c->G, hd = c->hd, qd = H * hd, kd = G * hd, I = c->I;
  float *Q = malloc(sizeof(float) * (size_t)(T * qd)), *Kc = malloc(sizeof(float) * (size_t)(T * kd));
  float *V = malloc(sizeof(float) * (size_t)(T * kd)), *x = malloc(sizeof(float) * (size_t)d);
  float *h1 = malloc(sizeof(float) * (size_t)(T * d));
  uint16_t *a = malloc(2 * (size_t)(d > I ? d : I)), *o16 = malloc(2 * (size_t)qd), *z16 = malloc(2 * (size_t)I);
  double *p = malloc(sizeof(double) * (size_t)T);
  /* q, k, v of every token (the cache) */
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < d; i++) x[i] = f(h[t * d + i]);
    rmsnorm16(d, x, w->ln1, c->eps, a);
    for (int64_t n = 0; n < qd; n++) Q[t * qd + n] = f(dot16(d, a, w->wq + n * d));
    for (int64_t n = 0; n < kd; n++) Kc[t * kd + n] = f(dot16(d, a, w->wk + n * d));
    for (int64_t n = 0; n < kd; n++) V[t * kd + n] = f(dot16(d, a, w->wv + n * d));
    for (int64_t hh = 0; hh < H; hh++) rope(hd, c->rope_theta, t, Q + t * qd + hh * hd);
    for (int64_t g = 0; g < G; g++) rope(hd, c->rope_theta, t, Kc + t * kd + g * hd);
  }
  for (int64_t t = 0; t < T; t++) {
    /* causal GQA attention: scores (q.k) * (1/sqrt(hd)) in double, exp(s - max), acc / z */
    for (int64_t hh = 0; hh < H; hh++) {
      const int64_t g = hh / (H / G);
      double mx = -INFINITY, z = 0.0;
      for (int64_t j = 0; j <= t; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < hd; i++) s += (double)Q[t * qd + hh * hd + i] * (double)Kc[j * kd + g * hd + i];
        p[j] = s * (1.0 / sqrt((double)hd));
        if (p[j] > mx) mx = p[j];
      }
      for (int64_t j = 0; j <= t; j++) p[j] = exp(p[j] - mx), z += p[j];
      for (int64_t i = 0; i < hd; i++) {
        double acc = 0.0;
        for (int64_t j = 0; j <= t; j++) acc += p[j] * (double)V[j * kd + g * hd + i];
        o16[hh * hd + i] = h16((float)(acc / z));
      }
    }
    for (int64_t n = 0; n < d; n++) h1[t * d + n] = f(h16(f(h[t * d + n]) + f(dot16(qd, o16, w->wo + n * qd))));
    rmsnorm16(d, h1 + t * d, w->ln2, c->eps, a);
    for (int64_t n = 0; n < I; n++) {
      float gv = f(dot16(d, a, w->wg + n * d)), uv = f(dot16(d, a, w->wu + n * d));
      float silu = gv / (1.0f + expf(-gv));
      z16[n] = h16(silu * uv);
    }
    for (int64_t n = 0; n < d; n++) out[t * d + n] = h16(h1[t * d + n] + f(dot16(I, z16, w->wd + n * I)));
  }
  free(Q), free(Kc), free(V), free(x), free(h1), free(a), free(o16), free(z16), free(p);
}

static void run_case(const char *name, const resq_layer_config *c, int64_t T) {
  if (!rc_case(name)) return;
  rc_note("d=%lld H=%lld G=%lld hd=%lld I=%lld T=%lld", (long long)c->d, (long long)c->H, (long long)c->G,
          (long long)c->hd, (long long)c->I, (long long)T);
  resq_layer_synth s;
  if (!RC_CHECK(resq_layer_synth_init(&s, c, NULL, rc_seed()) == RESQ_OK, "synthetic layer: %s", resq_last_error()))
    return;
  const int64_t n = T * c->d;
  uint16_t *h = malloc(2 * (size_t)n), *y = malloc(2 * (size_t)n), *want = malloc(2 * (size_t)n);
  RC_CHECK(resq_layer_synth_sequence(&s, RESQ_SYNTH_STREAM_EVAL, 0, T, h, c->d) == RESQ_OK, "tokens");
  size_t ws = resq_layer_fp16_workspace_size(c, T);
  void *work = malloc(ws);
  RC_CHECK(resq_layer_fp16_forward__ref(c, &s.w, T, h, y, work, ws) == RESQ_OK, "fp16 forward: %s", resq_last_error());
  naive_fp16_layer(c, &s.w, T, h, want);
  rc_equal_u16(y, want, (size_t)n, "FP16 layer vs the plain implementation of the contract");
  /* the layer did something: a check that compares two identities would pass vacuously */
  long changed = 0;
  for (int64_t i = 0; i < n; i++) changed += y[i] != h[i];
  RC_CHECK(changed > n / 2, "the layer changes most of the stream (%ld of %lld values)", changed, (long long)n);
  free(h), free(y), free(want), free(work);
  resq_layer_synth_free(&s);
}

int main(int argc, char **argv) {
  rc_init("layer_fp16_test", argc, argv);
  resq_layer_config c;
  resq_layer_config_named("test", &c);
  run_case("fp16_vs_plain_test_config", &c, 16);
  resq_layer_config m = {144, 2, 2, 72, 202, 10000.0, 1e-6f}; /* MHA; I = 202 and T = 13 leave 4x4 remainders */
  run_case("fp16_vs_plain_mha_odd_widths", &m, 13);
  return rc_finish();
}
