/* SPDX-License-Identifier: Apache-2.0
 * Stage-by-stage check of the prepared ResQ / QuaRot-style / RTN layer
 * (ref/CONTRACT.md s.14): every stage of resq_layer_q4q8_forward_taps__ref is
 * compared with the EXACT stage function (long double, unquantized fused
 * weights P.rot, the ideal bases) at the stage's ACTUAL input (the tapped
 * intermediate), within a bound derived from that stage's quantization step
 * sizes. No error is propagated from stage to stage, so the bounds are
 * elementwise and rigorous, and a wrongly packed, permuted or rotated weight,
 * a wrong split, or a wrong online rotation shows up as a violation.
 *
 * Bounds (u = 2^-24, elementwise):
 *   activation quantizer, part with step s (s computed in fp32 exactly as
 *     section 3 does, from the tapped input):   e_k = s/2 + 2u(|x_k| + s maxq)   (s.8)
 *   weight (RTN, no clip; per-row scale s_w):   |w - s_w code| <= s_w/2 (1 + 2u) + 2u|w|
 *     (|w/s_w| <= maxq, rounding of w/s_w and of s_w * code)
 *   mixed GEMM output y_n = sum_k x_k W_nk, computed from the quantized operands:
 *     |out - y| <= sum_k |W_nk| e_k + sum_k ew_nk (|x_k| + e_k)            (operands)
 *                + (terms + 1) u sum_k (|x_k| + e_k)(|W_nk| + ew_nk)       (fp32 epilogue)
 *                + 2^-11 (|y| + the above) + 2^-25                           (f16 output)
 *   RMSNorm: |a_i - x_i / rho| <= 5u |x_i / rho| (rho in double; 4u of rinv and x * rinv, +u slack)
 *   key rotation: out_j vs sum_i r_i Uk_ij with r = RoPE(q) (the same fp32 RoPE):
 *     <= sum_i e8_i |K8_ij| + sum_i |r_i| |K8_ij - Uk_ij| + u |out_j| + hd 2^-53 sum_i (|r_i| + e8_i)|K8_ij|
 *     (e8: the 8-bit pre-quantizer, 0 for QuaRot; Uk: ResQ's unquantized key basis, QuaRot's H_hd^T)
 *   KV caches: |cache - input| <= e (the cache quantizer's split)
 *   attention, residual adds, SiLU * up, Hadamard: the same fp32 operations: bit-exact.
 * With every part at 8 bits (high_fraction 1, int8_down_proj) on the layer
 * without outlier channels, the GEMM and cache bounds must also be below 3/4
 * of the stage's output and the key rotation's below a quarter (sharp: a
 * wiring error is about |exact| or sqrt(2) |exact|); at 4 bits, or with the outliers, an elementwise worst
 * case sums |e| over K terms without cancellation and can exceed the output,
 * so those cases check the bound only (they still run every method's stages
 * and bit-exact steps).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/layer_prepare.h"
#include "resq/layer_synth.h"
#include "resq_check.h"

static const double U32 = 0x1p-24;
typedef long double ld;

static float *fz(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double *dz(int64_t n) { return (double *)calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* per-element bound of the path-A quantizer on one group of len values, last r in the hi part */
static void act_err(const float *x, int64_t len, int64_t r, int bits_lo, int bits_hi, double *e) {
  for (int part = 0; part < 2; part++) {
    const int64_t b0 = part ? len - r : 0, b1 = part ? len : len - r;
    if (b1 <= b0) continue;
    const int bits = part ? bits_hi : bits_lo;
    float mn = 0.0f, mx = 0.0f;
    for (int64_t i = b0; i < b1; i++) mn = x[i] < mn ? x[i] : mn, mx = x[i] > mx ? x[i] : mx;
    if (mn == 0.0f && mx == 0.0f) mn = -1.0f, mx = 1.0f;
    const float maxq = (float)((1 << bits) - 1), s = (mx - mn) / maxq;
    for (int64_t i = b0; i < b1; i++) e[i] = (double)s / 2 + 2 * U32 * (fabs((double)x[i]) + (double)s * maxq);
  }
}

/* a check result: violations and the norms of the bound and of the exact output */
typedef struct {
  long bad, n;
  double worst, b2, y2;
} stat;

static void stat_add(stat *s, double got, double want, double bound) {
  double e = fabs(got - want);
  s->bad += !(e <= bound);
  s->worst = fmax(s->worst, bound > 0 ? e / bound : (e > 0 ? INFINITY : 0));
  s->b2 += bound * bound, s->y2 += want * want;
  s->n++;
}

static void stat_report(const char *what, const stat *s, double sharp) {
  const double frac = s->y2 > 0 ? sqrt(s->b2 / s->y2) : 0.0;
  printf("  %-28s %8ld values, worst |err|/bound %.3f, |bound|/|exact| %.3e\n", what, s->n, s->worst, frac);
  RC_CHECK(s->bad == 0, "%s: %ld of %ld values beyond the step-size bound (worst %.3f)", what, s->bad, s->n, s->worst);
  if (sharp > 0) RC_CHECK(frac < sharp, "%s: |bound| / |exact| = %.3e must be below %.2f to be informative", what, frac, sharp);
}

/* A mixed GEMM stage: x [T][K] quantizer input (groups of `group` with r hi each), W [N][K] exact fp32
 * weights in x's column order, out [T][N] the tapped output. hi_col(k): the weight column's part
 * (its scale: scale_hi[n] else scale_lo[n]). terms: the epilogue's term count. */
static void gemm_stage(const char *what, int64_t T, int64_t N, int64_t K, int64_t group, int64_t r, int bits_lo,
                       int bits_hi, const float *x, const float *W, const float *scale_lo, const float *scale_hi,
                       const int *hi_col, int terms, const float *out, double sharp) {
  stat st = {0, 0, 0, 0, 0};
  double *e = dz(K);
  for (int64_t t = 0; t < T; t++) {
    const float *xt = x + t * K;
    for (int64_t g = 0; g < K / group; g++) act_err(xt + g * group, group, r, bits_lo, bits_hi, e + g * group);
    for (int64_t n = 0; n < N; n++) {
      const float *w = W + n * K;
      ld y = 0, sx = 0, sw = 0, se = 0, sabs = 0;
      for (int64_t k = 0; k < K; k++) {
        const double s = hi_col[k] ? scale_hi[n] : scale_lo[n];
        const double ew = s / 2 * (1 + 2 * U32) + 2 * U32 * fabs((double)w[k]);
        const double ax = fabs((double)xt[k]), aw = fabs((double)w[k]);
        y += (ld)xt[k] * w[k];
        sx += (ld)aw * e[k];
        sw += (ld)ew * (ax + e[k]);
        se += (ld)(ax + e[k]) * (aw + ew);
        sabs += (ld)ax * aw;
      }
      const double pre = (double)(sx + sw) + (terms + 1) * U32 * (double)se + (double)K * 0x1p-63 * (double)sabs;
      const double bound = pre + 0x1p-11 * (fabs((double)y) + pre) + 0x1p-25;
      stat_add(&st, out[t * N + n], (double)y, bound);
    }
  }
  free(e);
  stat_report(what, &st, sharp);
}

static void rmsnorm_stage(const char *what, int64_t T, int64_t d, float eps, const float *x, const float *a) {
  stat st = {0, 0, 0, 0, 0};
  for (int64_t t = 0; t < T; t++) {
    ld ss = 0;
    for (int64_t i = 0; i < d; i++) ss += (ld)x[t * d + i] * x[t * d + i];
    const double rho = sqrt((double)(ss / d) + (double)eps);
    for (int64_t i = 0; i < d; i++) {
      const double want = x[t * d + i] / rho;
      stat_add(&st, a[t * d + i], want, 5 * U32 * fabs(want));
    }
  }
  stat_report(what, &st, 1e-5);
}

static void cache_stage(const char *what, int64_t T, int64_t kd, int64_t hd, int64_t r, const float *in, const float *cache,
                        double sharp) {
  stat st = {0, 0, 0, 0, 0};
  double *e = dz(hd);
  for (int64_t t = 0; t < T; t++)
    for (int64_t g = 0; g < kd / hd; g++) {
      const float *x = in + t * kd + g * hd;
      act_err(x, hd, r, 4, 8, e);
      for (int64_t i = 0; i < hd; i++) stat_add(&st, cache[t * kd + g * hd + i], x[i], e[i]);
    }
  free(e);
  stat_report(what, &st, sharp);
}

static void bitwise(const char *what, const float *got, const float *want, int64_t n) {
  RC_CHECK(memcmp(got, want, sizeof(float) * (size_t)n) == 0, "%s: not bit-identical to the same fp32 operations", what);
}

/* the online key rotation of nh heads: tapped q (before RoPE) -> out = tapped q_rot */
static void krot_stage(const char *what, int64_t T, int64_t nh, int64_t hd, double theta, const float *q, const float *out,
                       const float *k8, const double *ideal, int prequant, double sharp) {
  float *r = fz(T * nh * hd);
  memcpy(r, q, sizeof(float) * (size_t)(T * nh * hd));
  resq_rope_f32__ref(T, nh, hd, theta, 0, r);
  stat st = {0, 0, 0, 0, 0};
  double *e8 = dz(hd);
  for (int64_t row = 0; row < T * nh; row++) {
    const float *x = r + row * hd;
    if (prequant) act_err(x, hd, hd, 4, 8, e8);
    for (int64_t j = 0; j < hd; j++) {
      if (!k8) { /* no rotation: out is RoPE(q) */
        stat_add(&st, out[row * hd + j], x[j], 0.0);
        continue;
      }
      ld y = 0, b = 0, c = 0;
      for (int64_t i = 0; i < hd; i++) {
        const double kv = k8[i * hd + j], ab = fabs(kv);
        y += (ld)x[i] * ideal[i * hd + j];
        b += (ld)e8[i] * ab + (ld)fabs((double)x[i]) * fabs(kv - ideal[i * hd + j]);
        c += (ld)(fabs((double)x[i]) + e8[i]) * ab;
      }
      const double bound = (double)b + U32 * fabs((double)out[row * hd + j]) + (double)hd * 0x1p-53 * (double)c;
      stat_add(&st, out[row * hd + j], (double)y, bound);
    }
  }
  free(r), free(e8);
  stat_report(what, &st, sharp);
}

static void case_stages(const char *name, resq_layer_method m, double hf, int i8d, int sharp_on, int64_t outliers) {
  if (!rc_case(name)) return;
  resq_layer_config c;
  resq_layer_config_named("test", &c);
  const int64_t T = 24, nseq = 4, d = c.d, H = c.H, G = c.G, hd = c.hd, qd = H * hd, kd = G * hd, I = c.I, n = T * d;
  rc_note("config test, T=%lld, %lld calibration sequences, high_fraction %g, int8_down_proj %d, outliers %lld",
          (long long)T, (long long)nseq, hf, i8d, (long long)outliers);
  resq_layer_synth_params sp = resq_layer_synth_default();
  sp.n_outliers = outliers;
  resq_layer_synth s;
  if (!RC_CHECK(resq_layer_synth_init(&s, &c, &sp, rc_seed()) == RESQ_OK, "synth: %s", resq_last_error())) return;
  uint16_t *cal = (uint16_t *)calloc((size_t)(n * nseq), 2), *h = (uint16_t *)calloc((size_t)n, 2);
  uint16_t *hr = (uint16_t *)calloc((size_t)n, 2), *y = (uint16_t *)calloc((size_t)n, 2);
  for (int64_t i = 0; i < nseq; i++) resq_layer_synth_sequence(&s, RESQ_SYNTH_STREAM_CALIB, (uint64_t)i, T, cal + i * n, d);
  resq_layer_synth_sequence(&s, RESQ_SYNTH_STREAM_EVAL, 0, T, h, d);
  resq_layer_prepare_params pp = resq_layer_prepare_default(m);
  pp.wquant = RESQ_WQUANT_RTN, pp.w_clip = 0, pp.high_fraction = hf, pp.int8_down_proj = i8d, pp.seed = rc_seed();
  resq_layer_prepared P;
  if (!RC_CHECK(resq_layer_prepare_f32__ref(&c, &s.w, nseq, T, cal, &pp, &P) == RESQ_OK, "prepare: %s",
                resq_last_error())) {
    free(cal), free(h), free(hr), free(y), resq_layer_synth_free(&s);
    return;
  }
  resq_layer_q4q8_taps tp;
  float *bufs[16];
  const int64_t sz[16] = {T * d, T * qd, T * kd, T * kd, T * qd, T * kd, T * kd, T * kd,
                          T * qd, T * d, T * d, T * d, T * I, T * I, T * I, T * d};
  for (int i = 0; i < 16; i++) bufs[i] = fz(sz[i]);
  tp.a_attn = bufs[0], tp.q = bufs[1], tp.k = bufs[2], tp.v = bufs[3], tp.q_rot = bufs[4], tp.k_rot = bufs[5];
  tp.k_cache = bufs[6], tp.v_cache = bufs[7], tp.o = bufs[8], tp.t_o = bufs[9], tp.h_mid = bufs[10];
  tp.a_mlp = bufs[11], tp.g = bufs[12], tp.u = bufs[13], tp.z = bufs[14], tp.t_down = bufs[15];
  size_t ws = resq_layer_q4q8_workspace_size(&c, T);
  void *work = malloc(ws);
  RC_CHECK(resq_layer_to_basis__ref(&P, T, h, hr) == RESQ_OK, "to basis");
  RC_CHECK(resq_layer_q4q8_forward_taps__ref(&c, &P.L, T, hr, y, &tp, work, ws) == RESQ_OK, "forward: %s",
           resq_last_error());
  uint16_t *y2 = (uint16_t *)calloc((size_t)n, 2);
  resq_layer_q4q8_forward__ref(&c, &P.L, T, hr, y2, work, ws);
  RC_CHECK(memcmp(y, y2, 2 * (size_t)n) == 0, "the tapped pass gives the same output as the plain one");
  /* a wrongly wired stage errs by about sqrt(2) |exact| (an unrelated output of the same size) or |exact|
   * (a zero output): an informative bound stays below 3/4 of |exact| */
  const double sh = sharp_on ? 0.75 : 0.0;
  float *x = fz(n);
  resq_f16_to_f32_n(hr, x, (size_t)n);

  /* attention block */
  rmsnorm_stage("rmsnorm (attention)", T, d, c.eps, x, tp.a_attn);
  int *hi_tok = (int *)calloc((size_t)(d > I ? d : I), sizeof(int)), *hi_o = (int *)calloc((size_t)qd, sizeof(int));
  for (int64_t k = 0; k < d; k++) hi_tok[k] = k >= d - P.r;
  for (int64_t k = 0; k < qd; k++) hi_o[k] = (k % hd) >= hd - P.r_h;
  gemm_stage("q_proj", T, qd, d, d, P.r, 4, 8, tp.a_attn, P.rot.wq, P.L.wq.scale_lo, P.L.wq.scale_hi, hi_tok, 2, tp.q, sh);
  gemm_stage("k_proj", T, kd, d, d, P.r, 4, 8, tp.a_attn, P.rot.wk, P.L.wk.scale_lo, P.L.wk.scale_hi, hi_tok, 2, tp.k, sh);
  gemm_stage("v_proj", T, kd, d, d, P.r, 4, 8, tp.a_attn, P.rot.wv, P.L.wv.scale_lo, P.L.wv.scale_hi, hi_tok, 2, tp.v, sh);
  /* the ideal online rotation: ResQ's unquantized U_k, QuaRot's H_hd^T (k8[i][j] = H[j][i]) */
  double *ideal = dz(hd * hd);
  if (P.Uk) memcpy(ideal, P.Uk, sizeof(double) * (size_t)(hd * hd));
  else
    for (int64_t i = 0; i < hd; i++)
      for (int64_t j = 0; j < hd; j++) ideal[i * hd + j] = resq_hadamard_entry(hd, j, i) / sqrt((double)hd);
  const int pre = P.L.k8 && !P.L.qk_rot_no_prequant;
  /* K8 is U_k quantized per tensor to 8 bits: its worst case sum_i |r_i| |K8_ij - Uk_ij| is ~0.1 of the output */
  krot_stage("q: RoPE + online rotation", T, H, hd, c.rope_theta, tp.q, tp.q_rot, P.L.k8, ideal, pre, sharp_on ? 0.25 : 0);
  krot_stage("k: RoPE + online rotation", T, G, hd, c.rope_theta, tp.k, tp.k_rot, P.L.k8, ideal, pre, sharp_on ? 0.25 : 0);
  cache_stage("K cache", T, kd, hd, P.r_h, tp.k_rot, tp.k_cache, sh);
  cache_stage("V cache", T, kd, hd, P.r_h, tp.v, tp.v_cache, sh);
  float *o = fz(T * qd), *t = fz(n);
  RC_CHECK(resq_attention_f32__ref(T, H, G, hd, tp.q_rot, tp.k_cache, tp.v_cache, o) == RESQ_OK, "attention");
  bitwise("attention on the caches", tp.o, o, T * qd);
  gemm_stage("o_proj (grouped, permuted)", T, d, qd, hd, P.r_h, 4, 8, tp.o, P.rot.wo, P.L.wo.scale_lo, P.L.wo.scale_hi,
             hi_o, 2 * (int)H, tp.t_o, sh);
  for (int64_t i = 0; i < n; i++) t[i] = resq_round_f16(x[i] + tp.t_o[i]);
  bitwise("residual (attention)", tp.h_mid, t, n);

  /* MLP block */
  rmsnorm_stage("rmsnorm (MLP)", T, d, c.eps, tp.h_mid, tp.a_mlp);
  gemm_stage("gate_proj", T, I, d, d, P.r, 4, 8, tp.a_mlp, P.rot.wg, P.L.wg.scale_lo, P.L.wg.scale_hi, hi_tok, 2, tp.g, sh);
  gemm_stage("up_proj", T, I, d, d, P.r, 4, 8, tp.a_mlp, P.rot.wu, P.L.wu.scale_lo, P.L.wu.scale_hi, hi_tok, 2, tp.u, sh);
  float *z = fz(T * I);
  for (int64_t i = 0; i < T * I; i++) z[i] = tp.g[i] / (1.0f + expf(-tp.g[i])) * tp.u[i];
  if (P.L.online_hadamard) {
    size_t hws = resq_hadamard_workspace_size(I);
    void *hw = malloc(hws);
    RC_CHECK(resq_hadamard_f32__ref(T, I, z, I, z, I, NULL, hw, hws) == RESQ_OK, "hadamard");
    free(hw);
  }
  bitwise("SiLU(g) u (+ online Hadamard)", tp.z, z, T * I);
  for (int64_t k = 0; k < I; k++) hi_tok[k] = k >= I - P.r_down;
  gemm_stage("down_proj", T, d, I, I, P.r_down, 4, 8, tp.z, P.rot.wd, P.L.wd.scale_lo, P.L.wd.scale_hi, hi_tok, 2,
             tp.t_down, sh);
  float *yo = fz(n), *ye = fz(n);
  for (int64_t i = 0; i < n; i++) yo[i] = resq_f16_to_f32(y[i]), ye[i] = resq_round_f16(tp.h_mid[i] + tp.t_down[i]);
  bitwise("residual (MLP) = output", yo, ye, n);

  for (int i = 0; i < 16; i++) free(bufs[i]);
  free(work), free(cal), free(h), free(hr), free(y), free(y2), free(x), free(hi_tok), free(hi_o), free(ideal), free(o);
  free(t), free(z), free(yo), free(ye);
  resq_layer_prepared_free(&P);
  resq_layer_synth_free(&s);
}

int main(int argc, char **argv) {
  rc_init("layer_stages_test", argc, argv);
  /* sharp: every part at 8 bits, on the layer without outlier channels (with them the 8-bit step of
   * the spread outlier makes a K-term worst case exceed the bulk-carried outputs of q/k/v) */
  case_stages("resq_all8_stagewise", RESQ_LAYER_RESQ, 1.0, 1, 1, 0);
  /* the methods as measured (outliers 50-1000x): bounds only */
  case_stages("resq_stagewise", RESQ_LAYER_RESQ, 0.125, 0, 0, -1);
  case_stages("quarot_stagewise", RESQ_LAYER_QUAROT, 0.125, 0, 0, -1);
  case_stages("rtn_stagewise", RESQ_LAYER_RTN, 0.125, 0, 0, -1);
  return rc_finish();
}
