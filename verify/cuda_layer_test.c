/* SPDX-License-Identifier: Apache-2.0
 * GPU test: the decoder layer on the GPU (resq/cuda_layer.h) vs the reference
 * (ref/CONTRACT.md section 14), stage by stage: every stage of the GPU layer is
 * checked against the REFERENCE function applied to the GPU's own input of that
 * stage (the layer's taps), so an error is located where it arises instead of
 * being smeared through the layer.
 *
 * ResQ form (ResQ, QuaRot-style and RTN preparations of the synthetic `test`
 * layer; exact attention):
 *   q/k/v     = RMSNorm + quant + mixed GEMM of h_in: bit for bit, except rows whose ms
 *               differs between the kernel's and the reference's summation orders
 *               (detected by computing both; counted, expected 0)
 *   q/k_rot   = RoPE (+ fq8) + K8 of the GPU's q/k: bit for bit
 *   k/v_cache = per-head quantize-dequantize of the GPU's k_rot / v: bit for bit
 *   o         = attention of the GPU's q_rot and caches: within 1 fp32 ulp (the
 *               double algorithm is the reference's; only exp differs by <= 1 double
 *               ulp, so the double result differs by ~1e-15 relative, which moves
 *               the fp32 rounding by at most one ulp); the fraction of exact
 *               outputs is printed
 *   t_o       = grouped quant + GEMM of the GPU's o: bit for bit
 *   h_mid     = RNE_f16(h_in + t_o): bit for bit
 *   g/u       = RMSNorm + quant + GEMM of the GPU's h_mid: as q/k/v
 *   t_down    = SiLU*mul (+ Hadamard) + 4-bit quant + INT4 GEMM of the GPU's g/u: bit for bit
 *   h_out     = RNE_f16(h_mid + t_down): bit for bit
 * FP16 form (the synthetic FP16 weights), the same pattern; its GEMMs are cuBLAS
 * with fp32 accumulation in another order, so each GEMM output is compared with
 * the reference GEMM of the same inputs within
 *   |y_gpu - y_ref| <= (2 gamma_K sum_k |x_k w_k| + 2 u16 |y_ref|) (1 + 2^-10)
 * (both fp32 sums within gamma_K sum|x w| of the exact value, each rounded once
 * to f16 with relative error u16 = 2^-11), and the attention output, rounded to
 * f16, within u16 |o| + 1 fp32 ulp (+ 2^-25 absolute for f16 subnormals).
 * Also: RoPE bit for bit with pos0 > 0; the fast attention mode within
 *   max_j |v_j| (2 gamma_hd S scale + (4 (T+1) + 8) 2^-22)
 * of the exact one (S = max_j sum_i |q_i k_ji|: the fp32 dot products; each of
 * the T+1 online-softmax steps rounds acc, l and the rescale, expf is within 2 ulp).
 * Exits 77 without a usable GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ref/src/layer_internal.h" /* resq_silu_f32 */
#include "cuda_test_util.h"
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/layer_prepare.h"
#include "resq/layer_synth.h"
#include "resq/rng.h"
#include "resq_check.h"
#include "resq_gpu.h"

#define NSEQ 2
#define TOK 32
#define TEVAL 40

static const double k_u = 0x1p-24, k_u16 = 0x1p-11;

static float *fz(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static uint16_t *hz(int64_t n) { return (uint16_t *)calloc((size_t)(n > 0 ? n : 1), 2); }
static void *dz(size_t bytes) { return dev_fill(bytes ? bytes : 1, 0); }
static float *down32(const float *d, int64_t n) {
  float *h = fz(n);
  d2h_sync(h, d, sizeof(float) * (size_t)n);
  return h;
}
static uint16_t *down16(const uint16_t *d, int64_t n) {
  uint16_t *h = hz(n);
  d2h_sync(h, d, 2 * (size_t)n);
  return h;
}

/* the kernel's documented order of a row's sum of squares (resq/cuda.h, rq_quant.cuh) */
static double ss_tree(const float *x, int64_t K, int64_t r) {
  int64_t lo = K - r, nlo = (lo + 7) / 8, nhi = (r + 7) / 8, nch = nlo + nhi;
  int tg = 1;
  while (tg < nch && tg < 512) tg <<= 1;
  static double part[512];
  for (int t = 0; t < tg; t++) {
    part[t] = 0.0;
    for (int64_t j = t; j < nch; j += tg) {
      int64_t e0 = j < nlo ? 8 * j : 8 * (j - nlo), len = j < nlo ? lo : r, col = j < nlo ? e0 : lo + e0;
      int64_t cnt = len - e0 < 8 ? len - e0 : 8;
      for (int64_t k = 0; k < cnt; k++) part[t] += (double)x[col + k] * (double)x[col + k];
    }
  }
  for (int k = 0; (1 << k) < tg && k < 5; k++) {
    double old[512];
    memcpy(old, part, sizeof(double) * (size_t)tg);
    for (int t = 0; t < tg; t++) part[t] = old[t] + old[t ^ (1 << k)];
  }
  double acc = part[0];
  for (int w = 1; w < tg / 32; w++) acc += part[w * 32];
  return acc;
}
/* rows whose ms differs between the two orders (the only place the GPU may differ) */
static int ms_differs(const float *x, int64_t d, int64_t r) {
  double seq = 0.0;
  for (int64_t i = 0; i < d; i++) seq += (double)x[i] * x[i];
  return (float)(seq / (double)d) != (float)(ss_tree(x, d, r) / (double)d);
}

/* host quantized buffer for M rows of split p */
typedef struct {
  resq_qact q;
  void *mem;
} hq;
static void hq_init(hq *b, const resq_qact_params *p, int64_t M) {
  resq_qact_layout L;
  resq_qact_check(p, &L);
  size_t lo = (size_t)(M * L.lo_bytes) + 8, hi = (size_t)(M * L.hi_bytes) + 8, g = (size_t)(M * L.ngroups) * 4 + 8;
  char *m = calloc(lo + hi + 4 * g, 1);
  b->mem = m;
  b->q.q_lo = (uint8_t *)m, b->q.ld_lo = L.lo_bytes;
  b->q.q_hi = (uint8_t *)(m + lo), b->q.ld_hi = L.hi_bytes;
  b->q.scale_lo = (float *)(m + lo + hi), b->q.zero_lo = (int32_t *)(m + lo + hi + g);
  b->q.scale_hi = (float *)(m + lo + hi + 2 * g), b->q.zero_hi = (int32_t *)(m + lo + hi + 3 * g);
}

/* y (widened f16) = mixed GEMM of quant(x) */
static void ref_qgemm(const resq_qact_params *p, const resq_qweight *w, int64_t T, const float *x, float *y) {
  hq b;
  hq_init(&b, p, T);
  uint16_t *y16 = hz(T * w->N);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(p, T, x, p->K, &b.q) == RESQ_OK, "ref quant: %s", resq_last_error());
  RC_CHECK(resq_gemm_q4q8_f16__ref(p, T, &b.q, w, NULL, y16, w->N) == RESQ_OK, "ref gemm: %s", resq_last_error());
  resq_f16_to_f32_n(y16, y, (size_t)(T * w->N));
  free(y16), free(b.mem);
}

/* compare two fp32 arrays bit for bit, except the rows flagged in skip (may be NULL) */
static void eq_rows(const float *got, const float *want, int64_t rows, int64_t width, const int *skip, const char *what) {
  long bad = 0;
  for (int64_t i = 0; i < rows; i++) {
    if (skip && skip[i]) continue;
    bad += memcmp(got + i * width, want + i * width, sizeof(float) * (size_t)width) != 0;
  }
  RC_CHECK(bad == 0, "%s: %ld of %lld rows differ", what, bad, (long long)rows);
}

static void fq8_ref(const resq_qact_params *p8, const float *k8, int64_t rows, int64_t hd, float *x) {
  float *deq = fz(rows * hd);
  if (p8) {
    hq b;
    hq_init(&b, p8, rows);
    RC_CHECK(resq_quant_act_f32_q4q8__ref(p8, rows, x, hd, &b.q) == RESQ_OK, "fq8 quant");
    RC_CHECK(resq_dequant_act_q4q8_f32__ref(p8, rows, &b.q, deq, hd) == RESQ_OK, "fq8 dequant");
    free(b.mem);
  } else {
    memcpy(deq, x, sizeof(float) * (size_t)(rows * hd));
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < hd; j++) {
      double acc = 0.0;
      for (int64_t i = 0; i < hd; i++) acc += (double)deq[r * hd + i] * k8[i * hd + j];
      x[r * hd + j] = (float)acc;
    }
  free(deq);
}

static void check_o_ulp(const float *got, const float *want, int64_t n, const char *what) {
  long bad = 0, exact = 0;
  for (int64_t i = 0; i < n; i++) {
    uint64_t d = rc_ulp_f32(got[i], want[i]);
    bad += d > 1;
    exact += d == 0;
  }
  printf("  %s: %ld of %lld outputs bit-identical, the rest within 1 ulp\n", what, exact, (long long)n);
  RC_CHECK(bad == 0, "%s: %ld outputs more than 1 fp32 ulp from the reference", what, bad);
}

/* ---- ResQ form ---------------------------------------------------------------------------- */
static void run_q4q8(resq_layer_method m) {
  resq_layer_config c;
  resq_layer_config_named("test", &c);
  const int64_t d = c.d, qd = c.H * c.hd, kd = c.G * c.hd, I = c.I, hd = c.hd, T = TEVAL;
  rc_note("method %s, config test, T=%d", resq_layer_method_name(m), TEVAL);
  resq_layer_synth s;
  if (!RC_CHECK(resq_layer_synth_init(&s, &c, NULL, rc_seed()) == RESQ_OK, "synth: %s", resq_last_error())) return;
  uint16_t *cal = hz(NSEQ * TOK * d), *h0 = hz(T * d), *h = hz(T * d);
  for (int i = 0; i < NSEQ; i++) resq_layer_synth_sequence(&s, RESQ_SYNTH_STREAM_CALIB, (uint64_t)i, TOK, cal + i * TOK * d, d);
  resq_layer_synth_sequence(&s, RESQ_SYNTH_STREAM_EVAL, 0, T, h0, d);
  resq_layer_prepare_params pp = resq_layer_prepare_default(m);
  pp.wquant = RESQ_WQUANT_RTN, pp.seed = rc_seed();
  resq_layer_prepared P;
  if (!RC_CHECK(resq_layer_prepare_f32__ref(&c, &s.w, NSEQ, TOK, cal, &pp, &P) == RESQ_OK, "prepare: %s", resq_last_error())) {
    resq_layer_synth_free(&s);
    free(cal), free(h0), free(h);
    return;
  }
  RC_CHECK(resq_layer_to_basis__ref(&P, T, h0, h) == RESQ_OK, "to basis");
  const resq_layer_q4q8 *L = &P.L;
  /* GPU run with every tap */
  resq_layer_q4q8_cuda G;
  if (!RC_CHECK(resq_layer_q4q8_upload__cuda(&c, L, &G) == RESQ_OK, "upload: %s", resq_last_error())) return;
  resq_layer_q4q8_taps_cuda tp = {dz(4 * T * qd), dz(4 * T * kd), dz(4 * T * kd), dz(4 * T * qd), dz(4 * T * kd),
                                  dz(4 * T * kd), dz(4 * T * kd), dz(4 * T * qd), dz(4 * T * d), dz(4 * T * d),
                                  dz(4 * T * I), dz(4 * T * I), dz(4 * T * d)};
  uint16_t *dh = dup_h2d(h, 2 * (size_t)(T * d)), *dout = dz(2 * (size_t)(T * d));
  size_t ws = resq_layer_q4q8_workspace_size__cuda(&c, &G, T);
  void *dwork = dz(ws);
  RC_CHECK(resq_layer_q4q8_forward__cuda(&c, &G, T, dh, dout, RESQ_ATTN_EXACT, &tp, dwork, ws) == RESQ_OK, "gpu layer: %s",
           resq_last_error());
  float *q = down32(tp.q, T * qd), *k = down32(tp.k, T * kd), *v = down32(tp.v, T * kd);
  float *qr = down32(tp.q_rot, T * qd), *kr = down32(tp.k_rot, T * kd), *kc = down32(tp.k_cache, T * kd);
  float *vc = down32(tp.v_cache, T * kd), *o = down32(tp.o, T * qd), *to = down32(tp.t_o, T * d);
  float *hm = down32(tp.h_mid, T * d), *g = down32(tp.g, T * I), *u = down32(tp.u, T * I), *td = down32(tp.t_down, T * d);
  uint16_t *out = down16(dout, T * d);
  /* stage 1: q/k/v from h */
  float *x = fz(T * d), *a = fz(T * d), *w1 = fz(T * qd), *w2 = fz(T * kd), *w3 = fz(T * kd);
  resq_f16_to_f32_n(h, x, (size_t)(T * d));
  int *skip = calloc((size_t)T, sizeof(int));
  long nskip = 0;
  for (int64_t i = 0; i < T; i++) nskip += skip[i] = ms_differs(x + i * d, d, L->s_qkv.r);
  resq_rmsnorm_f32__ref(T, d, x, NULL, c.eps, a);
  ref_qgemm(&L->s_qkv, &L->wq, T, a, w1);
  ref_qgemm(&L->s_qkv, &L->wk, T, a, w2);
  ref_qgemm(&L->s_qkv, &L->wv, T, a, w3);
  eq_rows(q, w1, T, qd, skip, "q"), eq_rows(k, w2, T, kd, skip, "k"), eq_rows(v, w3, T, kd, skip, "v");
  /* stage 2: RoPE (+ fq8) + K8 of the GPU's q, k */
  float *wq_ = fz(T * qd), *wk_ = fz(T * kd);
  memcpy(wq_, q, sizeof(float) * (size_t)(T * qd));
  memcpy(wk_, k, sizeof(float) * (size_t)(T * kd));
  resq_rope_f32__ref(T, c.H, hd, c.rope_theta, 0, wq_);
  resq_rope_f32__ref(T, c.G, hd, c.rope_theta, 0, wk_);
  if (L->k8) {
    const resq_qact_params *p8 = L->qk_rot_no_prequant ? NULL : &L->s_qk8;
    fq8_ref(p8, L->k8, T * c.H, hd, wq_);
    fq8_ref(p8, L->k8, T * c.G, hd, wk_);
  }
  eq_rows(qr, wq_, T, qd, NULL, "q_rot"), eq_rows(kr, wk_, T, kd, NULL, "k_rot");
  /* stage 3: the caches from the GPU's k_rot and v */
  {
    hq b;
    hq_init(&b, &L->s_kv, T);
    float *wk2 = fz(T * kd), *wv2 = fz(T * kd);
    RC_CHECK(resq_quant_act_f32_q4q8__ref(&L->s_kv, T, kr, kd, &b.q) == RESQ_OK &&
                 resq_dequant_act_q4q8_f32__ref(&L->s_kv, T, &b.q, wk2, kd) == RESQ_OK,
             "k cache ref");
    RC_CHECK(resq_quant_act_f32_q4q8__ref(&L->s_kv, T, v, kd, &b.q) == RESQ_OK &&
                 resq_dequant_act_q4q8_f32__ref(&L->s_kv, T, &b.q, wv2, kd) == RESQ_OK,
             "v cache ref");
    eq_rows(kc, wk2, T, kd, NULL, "k_cache"), eq_rows(vc, wv2, T, kd, NULL, "v_cache");
    free(wk2), free(wv2), free(b.mem);
  }
  /* stage 4: attention of the GPU's q_rot and caches */
  float *wo = fz(T * qd);
  RC_CHECK(resq_attention_f32__ref(T, c.H, c.G, hd, qr, kc, vc, wo) == RESQ_OK, "ref attention");
  check_o_ulp(o, wo, T * qd, "attention (exact mode)");
  /* stage 5, 6: o_proj and the residual */
  float *wto = fz(T * d);
  ref_qgemm(&L->s_o, &L->wo, T, o, wto);
  eq_rows(to, wto, T, d, NULL, "t_o");
  float *whm = fz(T * d);
  for (int64_t i = 0; i < T * d; i++) whm[i] = resq_round_f16(x[i] + to[i]);
  eq_rows(hm, whm, T, d, NULL, "h_mid");
  /* stage 7: gate/up from the GPU's h_mid */
  float *wg = fz(T * I), *wu = fz(T * I);
  for (int64_t i = 0; i < T; i++) {
    int sk = ms_differs(hm + i * d, d, L->s_gu.r);
    nskip += sk, skip[i] = sk;
  }
  resq_rmsnorm_f32__ref(T, d, hm, NULL, c.eps, a);
  ref_qgemm(&L->s_gu, &L->wg, T, a, wg);
  ref_qgemm(&L->s_gu, &L->wu, T, a, wu);
  eq_rows(g, wg, T, I, skip, "g"), eq_rows(u, wu, T, I, skip, "u");
  /* stage 8: down_proj from the GPU's g, u */
  float *z = fz(T * I), *wtd = fz(T * d);
  for (int64_t i = 0; i < T * I; i++) z[i] = resq_silu_f32(g[i]) * u[i];
  if (L->online_hadamard) {
    size_t hws = resq_hadamard_workspace_size(I);
    void *hw = malloc(hws);
    RC_CHECK(resq_hadamard_f32__ref(T, I, z, I, z, I, NULL, hw, hws) == RESQ_OK, "ref hadamard");
    free(hw);
  }
  ref_qgemm(&L->s_down, &L->wd, T, z, wtd);
  eq_rows(td, wtd, T, d, NULL, "t_down");
  /* stage 9: the output */
  long bad = 0;
  for (int64_t i = 0; i < T * d; i++) bad += out[i] != resq_f32_to_f16(hm[i] + td[i]);
  RC_CHECK(bad == 0, "h_out: %ld values differ from RNE_f16(h_mid + t_down)", bad);
  printf("  %s: %ld rows excluded (the two RMSNorm summation orders round ms differently)\n",
         resq_layer_method_name(m), nskip);
  RC_CHECK(nskip * 100 <= 2 * T, "%ld rows with ms boundary cases", nskip);
  /* end to end vs the reference (a consequence of the stages; printed) */
  {
    size_t rws = resq_layer_q4q8_workspace_size(&c, T);
    void *rw = malloc(rws);
    uint16_t *ref_out = hz(T * d);
    RC_CHECK(resq_layer_q4q8_forward__ref(&c, L, T, h, ref_out, rw, rws) == RESQ_OK, "ref layer: %s", resq_last_error());
    long same = 0;
    for (int64_t i = 0; i < T * d; i++) same += ref_out[i] == out[i];
    printf("  %s: %ld of %lld outputs bit-identical to resq_layer_q4q8_forward__ref\n", resq_layer_method_name(m), same,
           (long long)(T * d));
    free(rw), free(ref_out);
  }
  resq_cuda_free(tp.q), resq_cuda_free(tp.k), resq_cuda_free(tp.v), resq_cuda_free(tp.q_rot), resq_cuda_free(tp.k_rot);
  resq_cuda_free(tp.k_cache), resq_cuda_free(tp.v_cache), resq_cuda_free(tp.o), resq_cuda_free(tp.t_o);
  resq_cuda_free(tp.h_mid), resq_cuda_free(tp.g), resq_cuda_free(tp.u), resq_cuda_free(tp.t_down);
  resq_cuda_free(dh), resq_cuda_free(dout), resq_cuda_free(dwork);
  resq_layer_q4q8_free__cuda(&G);
  free(q), free(k), free(v), free(qr), free(kr), free(kc), free(vc), free(o), free(to), free(hm), free(g), free(u), free(td);
  free(out), free(x), free(a), free(w1), free(w2), free(w3), free(skip), free(wq_), free(wk_), free(wo), free(wto);
  free(whm), free(wg), free(wu), free(z), free(wtd);
  resq_layer_prepared_free(&P);
  resq_layer_synth_free(&s);
  free(cal), free(h0), free(h);
}

static void case_q4q8(void) {
  if (rc_case("resq_form_stages_resq")) run_q4q8(RESQ_LAYER_RESQ);
  if (rc_case("resq_form_stages_quarot")) run_q4q8(RESQ_LAYER_QUAROT);
  if (rc_case("resq_form_stages_rtn")) run_q4q8(RESQ_LAYER_RTN);
}

/* ---- FP16 form ---------------------------------------------------------------------------- */
/* y[T][N] = x w^T with the §11 bound against the reference GEMM of the same f16 inputs */
static void gemm_bound(const uint16_t *xg, const uint16_t *w, const uint16_t *yg, int64_t T, int64_t N, int64_t K,
                       const char *what) {
  uint16_t *yr = hz(T * N);
  RC_CHECK(resq_gemm_f16__ref(T, N, K, xg, K, w, K, NULL, yr, N) == RESQ_OK, "ref gemm");
  const double gam = (double)K * k_u / (1 - (double)K * k_u);
  long bad = 0;
  for (int64_t t = 0; t < T; t++)
    for (int64_t n = 0; n < N; n++) {
      double A = 0;
      for (int64_t kk = 0; kk < K; kk++) A += fabs((double)resq_f16_to_f32(xg[t * K + kk]) * resq_f16_to_f32(w[n * K + kk]));
      double yrv = resq_f16_to_f32(yr[t * N + n]), ygv = resq_f16_to_f32(yg[t * N + n]);
      /* + 2 * 2^-25: the absolute rounding error of an f16 subnormal result, for each side */
      double tol = (2 * gam * A + 2 * k_u16 * fabs(yrv)) * (1 + 0x1p-10) + 0x1p-24;
      bad += !(fabs(ygv - yrv) <= tol);
    }
  RC_CHECK(bad == 0, "%s: %ld outputs beyond the GEMM bound", what, bad);
  free(yr);
}

static void case_fp16(void) {
  if (!rc_case("fp16_form_stages")) return;
  resq_layer_config c;
  resq_layer_config_named("test", &c);
  const int64_t d = c.d, qd = c.H * c.hd, kd = c.G * c.hd, I = c.I, hd = c.hd, T = TEVAL;
  rc_note("config test, T=%d", TEVAL);
  resq_layer_synth s;
  if (!RC_CHECK(resq_layer_synth_init(&s, &c, NULL, rc_seed()) == RESQ_OK, "synth")) return;
  uint16_t *h = hz(T * d);
  resq_layer_synth_sequence(&s, RESQ_SYNTH_STREAM_EVAL, 0, T, h, d);
  const resq_layer_fp16 *w = &s.w;
  resq_layer_fp16 dw = {dup_h2d(w->wq, 2 * (size_t)(qd * d)), dup_h2d(w->wk, 2 * (size_t)(kd * d)),
                        dup_h2d(w->wv, 2 * (size_t)(kd * d)), dup_h2d(w->wo, 2 * (size_t)(d * qd)),
                        dup_h2d(w->wg, 2 * (size_t)(I * d)),  dup_h2d(w->wu, 2 * (size_t)(I * d)),
                        dup_h2d(w->wd, 2 * (size_t)(d * I)),  dup_h2d(w->ln1, 4 * (size_t)d),
                        dup_h2d(w->ln2, 4 * (size_t)d)};
  resq_layer_fp16_taps_cuda tp = {dz(2 * T * d), dz(2 * T * qd), dz(2 * T * kd), dz(2 * T * kd), dz(4 * T * qd),
                                  dz(4 * T * kd), dz(2 * T * qd), dz(2 * T * d), dz(2 * T * d), dz(2 * T * d),
                                  dz(2 * T * I), dz(2 * T * I), dz(2 * T * I), dz(2 * T * d)};
  uint16_t *dh = dup_h2d(h, 2 * (size_t)(T * d)), *dout = dz(2 * (size_t)(T * d));
  size_t ws = resq_layer_fp16_workspace_size__cuda(&c, T);
  void *dwork = dz(ws);
  RC_CHECK(resq_layer_fp16_forward__cuda(&c, &dw, T, dh, dout, RESQ_ATTN_EXACT, &tp, dwork, ws) == RESQ_OK,
           "gpu fp16 layer: %s", resq_last_error());
  uint16_t *a1 = down16(tp.a_attn, T * d), *q = down16(tp.q, T * qd), *k = down16(tp.k, T * kd), *v = down16(tp.v, T * kd);
  float *qr = down32(tp.q_rot, T * qd), *kr = down32(tp.k_rot, T * kd);
  uint16_t *o = down16(tp.o, T * qd), *to = down16(tp.t_o, T * d), *hm = down16(tp.h_mid, T * d);
  uint16_t *a2 = down16(tp.a_mlp, T * d), *g = down16(tp.g, T * I), *u = down16(tp.u, T * I), *z = down16(tp.z, T * I);
  uint16_t *td = down16(tp.t_down, T * d), *out = down16(dout, T * d);
  float *x = fz(T * d), *a = fz(T * d);
  long bad = 0, nskip = 0;
  /* RMSNorm 1 */
  resq_f16_to_f32_n(h, x, (size_t)(T * d));
  resq_rmsnorm_f32__ref(T, d, x, w->ln1, c.eps, a);
  for (int64_t i = 0; i < T; i++) {
    if (ms_differs(x + i * d, d, 0)) {
      nskip++;
      continue;
    }
    for (int64_t j = 0; j < d; j++) bad += a1[i * d + j] != resq_f32_to_f16(a[i * d + j]);
  }
  RC_CHECK(bad == 0, "a_attn: %ld values differ", bad);
  gemm_bound(a1, w->wq, q, T, qd, d, "q");
  gemm_bound(a1, w->wk, k, T, kd, d, "k");
  gemm_bound(a1, w->wv, v, T, kd, d, "v");
  /* RoPE of the GPU's q, k */
  float *wq_ = fz(T * qd), *wk_ = fz(T * kd), *vf = fz(T * kd), *wo = fz(T * qd);
  resq_f16_to_f32_n(q, wq_, (size_t)(T * qd));
  resq_f16_to_f32_n(k, wk_, (size_t)(T * kd));
  resq_f16_to_f32_n(v, vf, (size_t)(T * kd));
  resq_rope_f32__ref(T, c.H, hd, c.rope_theta, 0, wq_);
  resq_rope_f32__ref(T, c.G, hd, c.rope_theta, 0, wk_);
  eq_rows(qr, wq_, T, qd, NULL, "q_rot"), eq_rows(kr, wk_, T, kd, NULL, "k_rot");
  /* attention, rounded to f16 */
  RC_CHECK(resq_attention_f32__ref(T, c.H, c.G, hd, qr, kr, vf, wo) == RESQ_OK, "ref attention");
  bad = 0;
  for (int64_t i = 0; i < T * qd; i++) {
    /* RNE_f16 of a value 1 fp32 ulp from wo: u16 relative (2^-25 absolute for f16 subnormals) + 2u */
    double tol = (k_u16 + 3 * k_u) * fabs(wo[i]) + 0x1p-25;
    bad += !(fabs((double)resq_f16_to_f32(o[i]) - wo[i]) <= tol);
  }
  RC_CHECK(bad == 0, "o: %ld values beyond u16|o| + 1 fp32 ulp", bad);
  gemm_bound(o, w->wo, to, T, d, qd, "t_o");
  bad = 0;
  for (int64_t i = 0; i < T * d; i++) bad += hm[i] != resq_f32_to_f16(x[i] + resq_f16_to_f32(to[i]));
  RC_CHECK(bad == 0, "h_mid: %ld values differ", bad);
  /* RMSNorm 2, gate/up, SiLU*mul, down, output */
  resq_f16_to_f32_n(hm, x, (size_t)(T * d));
  resq_rmsnorm_f32__ref(T, d, x, w->ln2, c.eps, a);
  bad = 0;
  for (int64_t i = 0; i < T; i++) {
    if (ms_differs(x + i * d, d, 0)) {
      nskip++;
      continue;
    }
    for (int64_t j = 0; j < d; j++) bad += a2[i * d + j] != resq_f32_to_f16(a[i * d + j]);
  }
  RC_CHECK(bad == 0, "a_mlp: %ld values differ", bad);
  gemm_bound(a2, w->wg, g, T, I, d, "g");
  gemm_bound(a2, w->wu, u, T, I, d, "u");
  bad = 0;
  for (int64_t i = 0; i < T * I; i++)
    bad += z[i] != resq_f32_to_f16(resq_silu_f32(resq_f16_to_f32(g[i])) * resq_f16_to_f32(u[i]));
  RC_CHECK(bad == 0, "z: %ld values differ", bad);
  gemm_bound(z, w->wd, td, T, d, I, "t_down");
  bad = 0;
  for (int64_t i = 0; i < T * d; i++) bad += out[i] != resq_f32_to_f16(x[i] + resq_f16_to_f32(td[i]));
  RC_CHECK(bad == 0, "h_out: %ld values differ", bad);
  RC_CHECK(nskip * 100 <= 2 * T, "%ld rows with ms boundary cases", nskip);
  /* the fast attention mode against the exact one on the same data */
  {
    float *dq = dup_h2d(qr, 4 * (size_t)(T * qd)), *dk = dup_h2d(kr, 4 * (size_t)(T * kd));
    float *dv = dup_h2d(vf, 4 * (size_t)(T * kd)), *dofast = dz(4 * (size_t)(T * qd));
    RC_CHECK(resq_attention_f32__cuda(T, c.H, c.G, hd, dq, dk, dv, dofast, RESQ_ATTN_FAST) == RESQ_OK, "fast attention");
    float *of = down32(dofast, T * qd);
    const double gam = (double)hd * k_u / (1 - (double)hd * k_u), scale = 1.0 / sqrt((double)hd);
    bad = 0;
    for (int64_t t = 0; t < T; t++)
      for (int64_t hh = 0; hh < c.H; hh++) {
        int64_t gg = hh / (c.H / c.G);
        double vmax = 0, S = 0;
        for (int64_t j = 0; j <= t; j++) {
          double sj = 0;
          for (int64_t i = 0; i < hd; i++) {
            sj += fabs((double)qr[t * qd + hh * hd + i] * kr[j * kd + gg * hd + i]);
            vmax = fmax(vmax, fabs(vf[j * kd + gg * hd + i]));
          }
          S = fmax(S, sj);
        }
        double tol = vmax * (2 * gam * S * scale + (4.0 * (double)(t + 1) + 8.0) * 0x1p-22);
        for (int64_t i = 0; i < hd; i++) bad += !(fabs((double)of[t * qd + hh * hd + i] - wo[t * qd + hh * hd + i]) <= tol);
      }
    RC_CHECK(bad == 0, "fast attention: %ld outputs beyond the bound", bad);
    resq_cuda_free(dq), resq_cuda_free(dk), resq_cuda_free(dv), resq_cuda_free(dofast);
    free(of);
  }
  resq_cuda_free((void *)dw.wq), resq_cuda_free((void *)dw.wk), resq_cuda_free((void *)dw.wv), resq_cuda_free((void *)dw.wo);
  resq_cuda_free((void *)dw.wg), resq_cuda_free((void *)dw.wu), resq_cuda_free((void *)dw.wd);
  resq_cuda_free((void *)dw.ln1), resq_cuda_free((void *)dw.ln2);
  void *taps[14] = {tp.a_attn, tp.q, tp.k, tp.v, tp.q_rot, tp.k_rot, tp.o, tp.t_o, tp.h_mid, tp.a_mlp, tp.g, tp.u, tp.z, tp.t_down};
  for (int i = 0; i < 14; i++) resq_cuda_free(taps[i]);
  resq_cuda_free(dh), resq_cuda_free(dout), resq_cuda_free(dwork);
  free(a1), free(q), free(k), free(v), free(qr), free(kr), free(o), free(to), free(hm), free(a2), free(g), free(u), free(z);
  free(td), free(out), free(x), free(a), free(wq_), free(wk_), free(vf), free(wo), free(h);
  resq_layer_synth_free(&s);
}

static void case_rope(void) {
  if (!rc_case("rope_bit_exact")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t T = 37, nh = 3, hd = 128, pos0 = 1000;
  float *x = fz(T * nh * hd), *y = fz(T * nh * hd);
  for (int64_t i = 0; i < T * nh * hd; i++) x[i] = (float)resq_rng_normal(&r);
  float *dx = dup_h2d(x, 4 * (size_t)(T * nh * hd));
  RC_CHECK(resq_rope_f32__cuda(T, nh, hd, 500000.0, pos0, dx) == RESQ_OK, "gpu rope: %s", resq_last_error());
  RC_CHECK(resq_rope_f32__ref(T, nh, hd, 500000.0, pos0, x) == RESQ_OK, "ref rope");
  d2h_sync(y, dx, 4 * (size_t)(T * nh * hd));
  rc_equal_f32_bits(y, x, (size_t)(T * nh * hd), "rope (pos0 = 1000, theta 5e5)");
  RC_CHECK(resq_rope_f32__cuda(T, nh, 7, 1e4, 0, dx) == RESQ_ERR_INVALID_ARG, "odd hd");
  resq_cuda_free(dx);
  free(x), free(y);
}

int main(int argc, char **argv) {
  rc_init("cuda_layer_test", argc, argv);
  rc_gpu_require("cuda_layer_test");
  case_rope();
  case_q4q8();
  case_fp16();
  return rc_finish();
}
