/* SPDX-License-Identifier: Apache-2.0
 * Generated (synthetic) cases of every reference and CPU stage, for the accuracy
 * and determinism gates (ci/gate_accuracy.sh, ci/gate_determinism.sh) and as a
 * ctest program of its own:
 *
 *   golden_synth [--metrics FILE] [--hash FILE] [--case NAME] [--isa generic|avx512]
 *                [--threads N] [--list]
 *
 * Inputs are LLM-like tensors at model sizes drawn from resq_rng with uniforms
 * only (an Irwin-Hall gaussian, no libm except the correctly rounded sqrt), so the
 * inputs -- and every figure of the exact stages -- are the same bits on every
 * IEEE platform (unlike resq_rng_normal, whose log() is libm's; CONTRACT s.6).
 * The one exception is the decoder-layer case, built on resq/layer_synth.h
 * (gaussians through libm): it reports only match counts and hashes.
 *
 * Checks (each can fail):
 *  - every stage against a long double / double evaluation of its mathematical
 *    definition, within the bound of CONTRACT s.8 or the one derived next to it;
 *  - GPTQ below RTN on correlated inputs; the PCA eigensystem within (B1);
 *  - CPU backend (every dispatch path) bit for bit equal to the reference where
 *    the contract makes it exact; CPU PCA/GPTQ within their bounds;
 *  - every call run twice, outputs pre-filled with different bytes: the same
 *    bits (every output element written, no dependence on uninitialized memory).
 * --metrics FILE appends  stage backend case metric value n repro  rows (figures
 * compared with ci/baselines/accuracy.tsv); --hash FILE appends
 * stage case backend output sha256  rows (compared between runs and thread
 * counts by ci/gate_determinism.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/gptq.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/layer_prepare.h"
#include "resq/layer_synth.h"
#include "resq/pca.h"
#include "resq/quant_act.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq_check.h"

typedef long double ld;

static FILE *g_metrics, *g_hash;
static const char *g_prog, *g_stage, *g_case, *g_bk = "ref";
static const char *g_sub = ""; /* prefix of the metric and hash names of a case's second configuration */
static int g_isa[2], g_nisa;

static const double k_u32 = 0x1p-24, k_u64 = 0x1p-53;
static double gam32(double k) { return k * k_u32 / (1.0 - k * k_u32); }
static double gam64(double k) { return k * k_u64 / (1.0 - k * k_u64); }
static void *zalloc(size_t n) { return calloc(n ? n : 1, 1); }

/* ------------------------------------------------------------------ output */

static void metric(const char *name, double v, long long n) {
  if (!g_metrics) return;
  const char *isa = strcmp(g_bk, "cpu-avx512") == 0 ? " --isa avx512" : strcmp(g_bk, "cpu-generic") == 0 ? " --isa generic" : "";
  fprintf(g_metrics, "%s\t%s\t%s\t%s%s\t%.17g\t%lld\t%s --case %s%s\n", g_stage, g_bk, g_case, g_sub, name, v, n, g_prog,
          g_case, isa);
}

static void hash_out(const char *what, const void *p, size_t bytes) {
  if (!g_hash) return;
  char hex[65];
  rc_sha256(p, bytes, hex);
  fprintf(g_hash, "%s\t%s\t%s\t%s%s\t%s\n", g_stage, g_case, g_bk, g_sub, what, hex);
}

/* count bit-equal elements of `size` bytes; one counted check; metric <what>_match_ref */
static void match_ref(const char *what, const void *got, const void *ref, size_t n, size_t size) {
  size_t same = 0;
  for (size_t i = 0; i < n; i++) same += memcmp((const char *)got + i * size, (const char *)ref + i * size, size) == 0;
  char name[128];
  snprintf(name, sizeof name, "%s_match_ref", what);
  metric(name, (double)same, (long long)n);
  RC_CHECK(same == n, "%s (%s): %zu of %zu elements differ from the reference (the contract makes them exact)", what,
           g_bk, n - same, n);
}

/* Run a call twice with its outputs pre-filled with 0xA5 and then 0x5A bytes:
 * every output byte must come out the same (all written, deterministic). */
typedef struct snap {
  int n;
  void *p[12];
  size_t bytes[12];
  void *keep[12];
} snap;
static void snap_add(snap *s, void *p, size_t bytes) {
  s->p[s->n] = p, s->bytes[s->n] = bytes, s->keep[s->n] = zalloc(bytes);
  s->n++;
}
static void snap_fill(snap *s, int rep) {
  for (int i = 0; i < s->n; i++) memset(s->p[i], rep ? 0x5a : 0xa5, s->bytes[i]);
}
static void snap_take(snap *s, int rep, const char *label) {
  long bad = 0;
  for (int i = 0; i < s->n; i++) {
    if (rep == 0) memcpy(s->keep[i], s->p[i], s->bytes[i]);
    else bad += memcmp(s->keep[i], s->p[i], s->bytes[i]) != 0;
  }
  if (rep) RC_CHECK(bad == 0, "%s (%s): %ld outputs differ between two runs with differently pre-filled buffers", label, g_bk, bad);
}
static void snap_free(snap *s) {
  for (int i = 0; i < s->n; i++) free(s->keep[i]);
  s->n = 0;
}

static void select_isa(int i) {
  resq_cpu_set_isa((resq_cpu_isa)g_isa[i]);
  g_bk = resq_cpu_get_isa() == RESQ_CPU_ISA_AVX512 ? "cpu-avx512" : "cpu-generic";
}

/* ------------------------------------------------------------------ data */

/* Irwin-Hall: a sum of 12 uniforms minus 6 (mean 0, variance 1, |z| <= 6): IEEE
 * additions only, the same bits everywhere */
static double znorm(resq_rng *r) {
  double s = 0;
  for (int i = 0; i < 12; i++) s += resq_rng_uniform_f64(r);
  return s - 6.0;
}
/* Student-t with 3 degrees of freedom from four Irwin-Hall draws (heavy tails) */
static double t3(resq_rng *r) {
  double a = znorm(r), b = znorm(r), c = znorm(r);
  double v = (a * a + b * b + c * c) / 3.0;
  return znorm(r) / sqrt(v > 1e-6 ? v : 1e-6);
}

/* LLM-like activation rows (f16): per-channel scales (0.5 + u) 2^e, e in {-1, 0, 1};
 * max(2, K/200) outlier channels x U[50, 1000]; 0.1% of the entries 20 t3; clipped
 * to +-60000. hi > 0: the outlier channels lie in the hi part (the last `hi` columns
 * of each group of `group`), where ResQ's PCA rotation puts the high-variance
 * subspace; hi = 0: anywhere. */
static void llm_rows(resq_rng *r, int64_t M, int64_t K, uint16_t *x, int64_t group, int64_t hi) {
  double *sc = zalloc(8 * (size_t)K);
  for (int64_t k = 0; k < K; k++) sc[k] = (0.5 + resq_rng_uniform_f64(r)) * ldexp(1.0, (int)resq_rng_range(r, -1, 1));
  int64_t nout = K / 200 > 2 ? K / 200 : 2;
  for (int64_t j = 0; j < nout; j++) {
    int64_t c = (int64_t)resq_rng_below(r, (uint64_t)K);
    if (hi > 0) c = (int64_t)resq_rng_below(r, (uint64_t)(K / group)) * group + group - hi + (int64_t)resq_rng_below(r, (uint64_t)hi);
    sc[c] *= 50.0 + 950.0 * resq_rng_uniform_f64(r);
  }
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) {
      double v = znorm(r) * sc[k];
      if (resq_rng_below(r, 1000) == 0) v = 20.0 * t3(r);
      v = v > 60000 ? 60000 : v < -60000 ? -60000 : v;
      x[m * K + k] = resq_f32_to_f16((float)v);
    }
  free(sc);
}

/* gaussian-like weights sigma 0.02 with `nout` (<= 3) outlier input columns x 5..20 */
static void weights(resq_rng *r, int64_t N, int64_t K, float *w, int nout) {
  double f[3] = {1, 1, 1};
  int64_t col[3] = {-1, -1, -1};
  for (int j = 0; j < nout && j < 3; j++)
    col[j] = (int64_t)resq_rng_below(r, (uint64_t)K), f[j] = 5.0 + 15.0 * resq_rng_uniform_f64(r);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) {
      double v = 0.02 * znorm(r);
      for (int j = 0; j < 3; j++)
        if (k == col[j]) v *= f[j];
      w[n * K + k] = (float)v;
    }
}

/* ------------------------------------------------------------------ hadamard (s.2, s.8 bound) */

static void case_hadamard(int64_t n) {
  const int64_t rows = 4;
  size_t tot = (size_t)(rows * n);
  rc_note("rows=%lld n=%lld signs=random", (long long)rows, (long long)n);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  uint16_t *xh = zalloc(2 * tot), *yh = zalloc(2 * tot), *yhc = zalloc(2 * tot);
  float *x = zalloc(4 * tot), *y = zalloc(4 * tot), *yc = zalloc(4 * tot);
  int8_t *s = zalloc((size_t)n);
  llm_rows(&r, rows, n, xh, n, 0);
  resq_f16_to_f32_n(xh, x, tot);
  resq_hadamard_random_signs(resq_rng_u64(&r), n, s);
  size_t ws = resq_hadamard_workspace_size(n);
  void *w = zalloc(ws);
  snap sn = {0};
  snap_add(&sn, y, 4 * tot), snap_add(&sn, yh, 2 * tot);
  for (int rep = 0; rep < 2; rep++) {
    snap_fill(&sn, rep);
    RC_CHECK(resq_hadamard_f32__ref(rows, n, x, n, y, n, s, w, ws) == RESQ_OK &&
                 resq_hadamard_f16__ref(rows, n, xh, n, yh, n, s, w, ws) == RESQ_OK,
             "hadamard: %s", resq_last_error());
    snap_take(&sn, rep, "hadamard ref");
  }
  snap_free(&sn);
  hash_out("y_f32", y, 4 * tot), hash_out("y_f16", yh, 2 * tot);
  /* the exact transform in double (error gamma64_{d+K+2} ||x||_1/sqrt(n), added to
   * the tolerance): s.8 bound |y - y*| <= gamma_{d+K+2} ||x||_1 / sqrt(n) */
  int K;
  int64_t m;
  resq_hadamard_factor(n, &K, &m);
  int dlog = 0;
  while (((int64_t)1 << dlog) < m) dlog++;
  double *t = zalloc(8 * (size_t)n);
  double worst = 0;
  ld num = 0, den = 0;
  for (int64_t row = 0; row < rows; row++) {
    const float *xr = x + row * n;
    double l1 = 0;
    for (int64_t i = 0; i < n; i++) t[i] = s[i] < 0 ? -(double)xr[i] : (double)xr[i], l1 += fabs((double)xr[i]);
    for (int c = 0; c < K; c++)
      for (int64_t h = 1; h < m; h *= 2)
        for (int64_t i = 0; i < m; i += 2 * h)
          for (int64_t j = i; j < i + h; j++) {
            double a = t[c * m + j], b = t[c * m + j + h];
            t[c * m + j] = a + b, t[c * m + j + h] = a - b;
          }
    double tol = (gam32(dlog + K + 2.0) + gam64(dlog + K + 2.0)) * l1 / sqrt((double)n);
    for (int a = 0; a < K; a++)
      for (int64_t b = 0; b < m; b++) {
        ld acc = 0;
        for (int c = 0; c < K; c++) acc += (ld)resq_hadamard_k_entry(K, a, c) * t[c * m + b];
        double ys = (double)(acc / sqrtl((ld)n)), yv = y[row * n + a * m + b];
        double e = fabs(yv - ys);
        if (e / tol > worst) worst = e / tol;
        num += (ld)(yv - ys) * (yv - ys), den += (ld)ys * ys;
      }
  }
  RC_CHECK(worst <= 1.0, "y_f32 vs the exact transform: worst |y - y*| / bound = %.3g > 1 (CONTRACT s.8)", worst);
  metric("err_over_bound", worst, (long long)tot);
  metric("nmse_vs_exact", (double)(num / den), (long long)tot);
  for (int i = 0; i < g_nisa; i++) {
    select_isa(i);
    snap sc = {0};
    snap_add(&sc, yc, 4 * tot), snap_add(&sc, yhc, 2 * tot);
    for (int rep = 0; rep < 2; rep++) {
      snap_fill(&sc, rep);
      RC_CHECK(resq_hadamard_f32__cpu(rows, n, x, n, yc, n, s, w, ws) == RESQ_OK &&
                   resq_hadamard_f16__cpu(rows, n, xh, n, yhc, n, s, w, ws) == RESQ_OK,
               "hadamard cpu: %s", resq_last_error());
      snap_take(&sc, rep, "hadamard cpu");
    }
    snap_free(&sc);
    match_ref("y_f32", yc, y, tot, 4), match_ref("y_f16", yhc, yh, tot, 2);
    hash_out("y_f32", yc, 4 * tot), hash_out("y_f16", yhc, 2 * tot);
  }
  g_bk = "ref";
  free(xh), free(yh), free(yhc), free(x), free(y), free(yc), free(s), free(t), free(w);
}
static void case_hadamard_n4096(void) { case_hadamard(4096); }
static void case_hadamard_n11008(void) { case_hadamard(11008); }
static void case_hadamard_n14336(void) { case_hadamard(14336); }

/* ------------------------------------------------------------------ activation quantizer (s.3, s.8 bound) */

typedef struct qb {
  resq_qact q;
  resq_qact_layout L;
  size_t glo, ghi, gn;
} qb;
static void qb_alloc(qb *b, const resq_qact_params *p, int64_t M) {
  memset(b, 0, sizeof *b);
  resq_qact_check(p, &b->L);
  b->glo = (size_t)(M * b->L.lo_bytes), b->ghi = (size_t)(M * b->L.hi_bytes), b->gn = (size_t)(M * b->L.ngroups);
  b->q = (resq_qact){zalloc(b->glo), b->L.lo_bytes, zalloc(b->ghi), b->L.hi_bytes,
                     zalloc(4 * b->gn), zalloc(4 * b->gn), zalloc(4 * b->gn), zalloc(4 * b->gn)};
}
static void qb_free(qb *b) {
  free(b->q.q_lo), free(b->q.q_hi), free(b->q.scale_lo), free(b->q.zero_lo), free(b->q.scale_hi), free(b->q.zero_hi);
}
/* an empty part (r = 0: hi, r = group: lo) has no outputs: CONTRACT s.4 says its
 * scales and zeros are not written, so they are not part of the comparison */
static void qb_snap(snap *s, qb *b) {
  if (b->glo > 0) {
    snap_add(s, b->q.q_lo, b->glo);
    snap_add(s, b->q.scale_lo, 4 * b->gn), snap_add(s, b->q.zero_lo, 4 * b->gn);
  }
  if (b->ghi > 0) {
    snap_add(s, b->q.q_hi, b->ghi);
    snap_add(s, b->q.scale_hi, 4 * b->gn), snap_add(s, b->q.zero_hi, 4 * b->gn);
  }
}
static void qb_hash(const qb *b) {
  if (b->glo) {
    hash_out("q_lo", b->q.q_lo, b->glo);
    hash_out("scale_lo", b->q.scale_lo, 4 * b->gn), hash_out("zero_lo", b->q.zero_lo, 4 * b->gn);
  }
  if (b->ghi) {
    hash_out("q_hi", b->q.q_hi, b->ghi);
    hash_out("scale_hi", b->q.scale_hi, 4 * b->gn), hash_out("zero_hi", b->q.zero_hi, 4 * b->gn);
  }
}
static void qb_match(const qb *b, const qb *ref) {
  if (b->glo) {
    match_ref("q_lo", b->q.q_lo, ref->q.q_lo, b->glo, 1);
    match_ref("scale_lo", b->q.scale_lo, ref->q.scale_lo, b->gn, 4);
    match_ref("zero_lo", b->q.zero_lo, ref->q.zero_lo, b->gn, 4);
  }
  if (b->ghi) {
    match_ref("q_hi", b->q.q_hi, ref->q.q_hi, b->ghi, 1);
    match_ref("scale_hi", b->q.scale_hi, ref->q.scale_hi, b->gn, 4);
    match_ref("zero_hi", b->q.zero_hi, ref->q.zero_hi, b->gn, 4);
  }
}

/* Quantize x (f16 [M][K]) with p on the reference (checked against s.8 inside the
 * range) and on every CPU path (bit for bit). With x0 != NULL the CPU side also runs
 * the fused Hadamard + quantizer on x0 (the un-rotated rows) with `signs`. */
static void quant_case(const resq_qact_params *p, int64_t M, const uint16_t *xh, const uint16_t *x0,
                       const int8_t *signs) {
  const int64_t K = p->K;
  size_t tot = (size_t)(M * K);
  qb b;
  qb_alloc(&b, p, M);
  snap sn = {0};
  qb_snap(&sn, &b);
  for (int rep = 0; rep < 2; rep++) {
    snap_fill(&sn, rep);
    RC_CHECK(resq_quant_act_f16_q4q8__ref(p, M, xh, K, &b.q) == RESQ_OK, "quantize: %s", resq_last_error());
    snap_take(&sn, rep, "quant ref");
  }
  snap_free(&sn);
  qb_hash(&b);
  float *y = zalloc(4 * tot);
  RC_CHECK(resq_dequant_act_q4q8_f32__ref(p, M, &b.q, y, K) == RESQ_OK, "dequantize: %s", resq_last_error());
  hash_out("y", y, 4 * tot);
  /* s.8: inside [mn, mx] (clip = 1: every value) |s (q - z) - x| <= s/2 + 2u (|x| + s maxq) */
  double worst = 0;
  ld num = 0, den = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) {
      int64_t g = k / p->group, j = k % p->group;
      int hi = j >= p->group - p->r;
      float s = hi ? b.q.scale_hi[m * b.L.ngroups + g] : b.q.scale_lo[m * b.L.ngroups + g];
      double maxq = resq_qmax_asym(hi ? p->bits_hi : p->bits_lo);
      double xv = resq_f16_to_f32(xh[m * K + k]), e = fabs((double)y[m * K + k] - xv);
      double tol = s / 2.0 + 2 * k_u32 * (fabs(xv) + s * maxq);
      if (e / tol > worst) worst = e / tol;
      num += (ld)e * e, den += (ld)xv * xv;
    }
  RC_CHECK(worst <= 1.0, "dequantization error / s.8 bound = %.3g > 1", worst);
  metric("err_over_bound", worst, (long long)tot);
  metric("nmse", (double)(num / den), (long long)tot);
  free(y);
  qb c;
  qb_alloc(&c, p, M);
  for (int i = 0; i < g_nisa; i++) {
    select_isa(i);
    snap sc = {0};
    qb_snap(&sc, &c);
    for (int rep = 0; rep < 2; rep++) {
      snap_fill(&sc, rep);
      RC_CHECK(resq_quant_act_f16_q4q8__cpu(p, M, xh, K, &c.q) == RESQ_OK, "quantize cpu: %s", resq_last_error());
      snap_take(&sc, rep, "quant cpu");
    }
    snap_free(&sc);
    qb_match(&c, &b);
    qb_hash(&c);
    if (x0) { /* the fused down_proj input path: Hadamard (fp32) then quantize, without the f16 rounding */
      qb f;
      qb_alloc(&f, p, M);
      float *x32 = zalloc(4 * tot), *rot = zalloc(4 * tot);
      size_t ws = resq_hadamard_workspace_size(K);
      void *w = zalloc(ws);
      resq_f16_to_f32_n(x0, x32, tot);
      qb fr;
      qb_alloc(&fr, p, M);
      RC_CHECK(resq_hadamard_f32__ref(M, K, x32, K, rot, K, signs, w, ws) == RESQ_OK &&
                   resq_quant_act_f32_q4q8__ref(p, M, rot, K, &fr.q) == RESQ_OK,
               "ref hadamard + quant: %s", resq_last_error());
      snap sf = {0};
      qb_snap(&sf, &f);
      for (int rep = 0; rep < 2; rep++) {
        snap_fill(&sf, rep);
        RC_CHECK(resq_hadamard_quant_act_f16_q4q8__cpu(p, M, x0, K, signs, &f.q) == RESQ_OK, "fused cpu: %s",
                 resq_last_error());
        snap_take(&sf, rep, "fused hadamard+quant cpu");
      }
      snap_free(&sf);
      char keep[64];
      snprintf(keep, sizeof keep, "%s", g_bk);
      match_ref("fused_q_lo", f.q.q_lo, fr.q.q_lo, f.glo, 1);
      match_ref("fused_scale_lo", f.q.scale_lo, fr.q.scale_lo, f.gn, 4);
      match_ref("fused_zero_lo", f.q.zero_lo, fr.q.zero_lo, f.gn, 4);
      hash_out("fused_q_lo", f.q.q_lo, f.glo);
      qb_free(&f), qb_free(&fr);
      free(x32), free(rot), free(w);
    }
  }
  g_bk = "ref";
  qb_free(&c);
  qb_free(&b);
}

static void case_qact_per_token_k4096_r512(void) {
  const int64_t M = 16, K = 4096;
  rc_note("M=%lld K=%lld r=512 per token", (long long)M, (long long)K);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  uint16_t *x = zalloc(2 * (size_t)(M * K));
  llm_rows(&r, M, K, x, K, K / 8);
  resq_qact_params p = resq_qact_default(K);
  quant_case(&p, M, x, NULL, NULL);
  /* the same rows in uniform 4-bit (r = 0): the figure ResQ's hi subspace improves on */
  resq_qact_params u = p;
  u.r = 0;
  g_sub = "uniform4_";
  quant_case(&u, M, x, NULL, NULL);
  g_sub = "";
  free(x);
}

static void case_qact_down_k11008_r0(void) {
  const int64_t M = 8, K = 11008;
  rc_note("M=%lld K=%lld r=0 after the Hadamard (fused path on the CPU)", (long long)M, (long long)K);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  uint16_t *x0 = zalloc(2 * (size_t)(M * K)), *x = zalloc(2 * (size_t)(M * K));
  int8_t *s = zalloc((size_t)K);
  llm_rows(&r, M, K, x0, K, 0);
  resq_hadamard_random_signs(resq_rng_u64(&r), K, s);
  size_t ws = resq_hadamard_workspace_size(K);
  void *w = zalloc(ws);
  RC_CHECK(resq_hadamard_f16__ref(M, K, x0, K, x, K, s, w, ws) == RESQ_OK, "hadamard: %s", resq_last_error());
  resq_qact_params p = resq_qact_default(K);
  p.r = 0;
  quant_case(&p, M, x, x0, s);
  free(x0), free(x), free(s), free(w);
}

static void case_qact_oproj_h32_hd128_r16(void) {
  const int64_t M = 8, K = 4096;
  rc_note("M=%lld K=%lld group=128 r=16 (grouped o_proj / per-head KV layout)", (long long)M, (long long)K);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  uint16_t *x = zalloc(2 * (size_t)(M * K));
  llm_rows(&r, M, K, x, 128, 16);
  resq_qact_params p = resq_qact_default(K);
  p.group = 128, p.r = 16;
  quant_case(&p, M, x, NULL, NULL);
  free(x);
}

/* ------------------------------------------------------------------ weight quantizer (s.10) */

static void case_qweight(int mse) {
  const int64_t N = 32, K = 4096;
  rc_note("N=%lld K=%lld r=512 mse=%d", (long long)N, (long long)K, mse);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  size_t nk = (size_t)(N * K);
  float *w = zalloc(4 * nk), *wh = zalloc(4 * nk), *slo = zalloc(4 * (size_t)N), *shi = zalloc(4 * (size_t)N);
  int8_t *codes = zalloc(nk);
  weights(&r, N, K, w, 3);
  resq_wquant_params p = resq_wquant_default(K);
  p.mse = mse;
  snap sn = {0};
  snap_add(&sn, codes, nk), snap_add(&sn, slo, 4 * (size_t)N), snap_add(&sn, shi, 4 * (size_t)N);
  for (int rep = 0; rep < 2; rep++) {
    snap_fill(&sn, rep);
    RC_CHECK(resq_quant_weight_f32__ref(&p, N, w, K, codes, K, slo, shi) == RESQ_OK, "quant weight: %s",
             resq_last_error());
    snap_take(&sn, rep, "quant weight");
  }
  snap_free(&sn);
  RC_CHECK(resq_dequant_weight_f32__ref(&p, N, codes, K, slo, shi, wh, K) == RESQ_OK, "dequant: %s", resq_last_error());
  hash_out("codes", codes, nk), hash_out("scale_lo", slo, 4 * (size_t)N), hash_out("scale_hi", shi, 4 * (size_t)N);
  hash_out("w_hat", wh, 4 * nk);
  /* RTN: |w_hat - w| <= s/2 (1 + u) + |w| u inside the unclipped range; MSE clips, so only its NMSE is a figure */
  ld num = 0, den = 0;
  double worst = 0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) {
      double e = fabs((double)wh[n * K + k] - w[n * K + k]);
      num += (ld)e * e, den += (ld)w[n * K + k] * w[n * K + k];
      double s = k >= K - p.r ? shi[n] : slo[n];
      double tol = s / 2.0 + 2 * k_u32 * (fabs((double)w[n * K + k]) + s * 128);
      if (e / tol > worst) worst = e / tol;
    }
  if (!mse) {
    RC_CHECK(worst <= 1.0, "RTN error / bound = %.3g > 1", worst);
    metric("err_over_bound", worst, (long long)nk);
  }
  metric("nmse", (double)(num / den), (long long)nk);
  free(w), free(wh), free(slo), free(shi), free(codes);
}
static void case_qweight_k4096_r512_rtn(void) { case_qweight(0); }
static void case_qweight_k4096_r512_mse(void) { case_qweight(1); }

/* ------------------------------------------------------------------ mixed GEMM (s.11) */

static void gemm_case(int64_t M, int64_t N, int64_t K, int64_t group, int64_t r) {
  rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld", (long long)M, (long long)N, (long long)K, (long long)group,
          (long long)r);
  resq_rng rr;
  resq_rng_init(&rr, rc_seed());
  size_t mk = (size_t)(M * K), nk = (size_t)(N * K), mn = (size_t)(M * N);
  uint16_t *xh = zalloc(2 * mk);
  float *w = zalloc(4 * nk), *bias = zalloc(4 * (size_t)N);
  llm_rows(&rr, M, K, xh, group, r);
  if (r == 0) { /* down_proj: the input is the online Hadamard's f16 output (the weight is taken as rotated) */
    uint16_t *x0 = zalloc(2 * mk);
    int8_t *sg = zalloc((size_t)K);
    memcpy(x0, xh, 2 * mk);
    resq_hadamard_random_signs(resq_rng_u64(&rr), K, sg);
    size_t hws = resq_hadamard_workspace_size(K);
    void *hw = zalloc(hws);
    RC_CHECK(resq_hadamard_f16__ref(M, K, x0, K, xh, K, sg, hw, hws) == RESQ_OK, "hadamard: %s", resq_last_error());
    free(x0), free(sg), free(hw);
  }
  /* in the GEMM's K order (lo columns of every group, then the hi columns); the
   * down_proj weight is Hadamard-rotated, which spreads outlier columns: none there */
  weights(&rr, N, K, w, r == 0 ? 0 : 3);
  for (int64_t n = 0; n < N; n++) bias[n] = (float)(0.1 * znorm(&rr));
  resq_qact_params split = resq_qact_default(K);
  split.group = group, split.r = r;
  resq_qact_layout L;
  if (!RC_CHECK(resq_gemm_check(&split, &L) == RESQ_OK, "split: %s", resq_last_error())) return;
  const int64_t G = L.ngroups, Klo = G * (group - r), Khi = G * r;
  /* activations by the reference quantizer; weights by s.10 RTN with r_total = G r hi columns */
  qb xq;
  qb_alloc(&xq, &split, M);
  RC_CHECK(resq_quant_act_f16_q4q8__ref(&split, M, xh, K, &xq.q) == RESQ_OK, "quant x: %s", resq_last_error());
  resq_wquant_params wp = resq_wquant_default(K);
  wp.r = Khi;
  int8_t *codes = zalloc(nk);
  float *slo = zalloc(4 * (size_t)N), *shi = zalloc(4 * (size_t)N);
  RC_CHECK(resq_quant_weight_f32__ref(&wp, N, w, K, codes, K, slo, shi) == RESQ_OK, "quant w: %s", resq_last_error());
  resq_qweight wq = {N,          zalloc((size_t)(N * L.lo_bytes)), L.lo_bytes, zalloc((size_t)(N * L.hi_bytes)),
                     L.hi_bytes, zalloc(4 * (size_t)N),            zalloc(4 * (size_t)N),
                     zalloc(4 * (size_t)(N * G)), zalloc(4 * (size_t)(N * G))};
  RC_CHECK(resq_gemm_pack_weight(&split, N, codes, K, slo, shi, &wq) == RESQ_OK, "pack: %s", resq_last_error());
  float *y = zalloc(4 * mn), *yc = zalloc(4 * mn);
  uint16_t *yh = zalloc(2 * mn), *yhc = zalloc(2 * mn);
  snap sn = {0};
  snap_add(&sn, y, 4 * mn), snap_add(&sn, yh, 2 * mn);
  for (int rep = 0; rep < 2; rep++) {
    snap_fill(&sn, rep);
    RC_CHECK(resq_gemm_q4q8_f32__ref(&split, M, &xq.q, &wq, bias, y, N) == RESQ_OK &&
                 resq_gemm_q4q8_f16__ref(&split, M, &xq.q, &wq, bias, yh, N) == RESQ_OK,
             "gemm: %s", resq_last_error());
    snap_take(&sn, rep, "gemm ref");
  }
  snap_free(&sn);
  hash_out("y_f32", y, 4 * mn), hash_out("y_f16", yh, 2 * mn);
  /* (a) the arithmetic: y* = sum over terms (a w) i + bias with the integer parts i from
   * the codes (int64, exact) and the products in long double; the epilogue has T
   * terms of 3 roundings each (a w, (float)i, the product), T-1 additions and the
   * bias: |y - y*| <= gamma_{T+3} (sum |a w i| + |bias|) (the golden README's bound).
   * (b) the method: y vs the unquantized product x_perm W^T (long double), as NMSE. */
  int32_t *order = zalloc(4 * (size_t)K);
  if (G > 1) resq_oproj_column_order(G, group, r, order);
  else
    for (int64_t k = 0; k < K; k++) order[k] = (int32_t)k;
  const int64_t T = (Klo ? G : 0) + (Khi ? G : 0);
  double worst = 0;
  ld num = 0, den = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      ld ys = bias[n], mag = fabsl((ld)bias[n]), yx = bias[n];
      for (int part = 0; part < 2; part++)
        for (int64_t g = 0; g < G; g++) {
          int64_t len = part ? r : group - r;
          if (!len) continue;
          int64_t i = 0;
          for (int64_t t = 0; t < len; t++) {
            int64_t kx = g * group + (part ? group - r : 0) + t;          /* activation column (grouped layout) */
            int64_t kw = part ? Klo + g * r + t : g * (group - r) + t;    /* weight column (GEMM K order) */
            int qx = part ? xq.q.q_hi[m * L.hi_bytes + g * r + t]
                          : (xq.q.q_lo[m * L.lo_bytes + g * L.lo_bytes_per_group + t / 2] >> (4 * (t & 1))) & 15;
            int z = part ? xq.q.zero_hi[m * G + g] : xq.q.zero_lo[m * G + g];
            (void)kx;
            i += (int64_t)(qx - z) * codes[n * K + kw];
          }
          ld aw = (ld)(part ? xq.q.scale_hi[m * G + g] : xq.q.scale_lo[m * G + g]) * (part ? shi[n] : slo[n]);
          ys += aw * (ld)i, mag += fabsl(aw * (ld)i);
        }
      for (int64_t k = 0; k < K; k++) yx += (ld)resq_f16_to_f32(xh[m * K + order[k]]) * w[n * K + k];
      double e = fabs((double)((ld)y[m * N + n] - ys)), tol = gam32(T + 3.0) * (double)mag;
      if (tol > 0 && e / tol > worst) worst = e / tol;
      if (tol == 0 && e > 0) worst = INFINITY;
      num += ((ld)y[m * N + n] - yx) * ((ld)y[m * N + n] - yx), den += yx * yx;
    }
  RC_CHECK(worst <= 1.0, "y vs the exact epilogue sum: worst |y - y*| / gamma_{T+3} bound = %.3g > 1", worst);
  metric("err_over_bound", worst, (long long)mn);
  metric("nmse_vs_unquantized", (double)(num / den), (long long)mn);
  /* CPU: pack once, every path, bit for bit */
  size_t bytes = 0;
  RC_CHECK(resq_gemm_pack_weight_size__cpu(&split, N, &bytes) == RESQ_OK, "cpu pack size: %s", resq_last_error());
  void *buf = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  resq_qweight_cpu wc;
  if (RC_CHECK(resq_gemm_pack_weight__cpu(&split, &wq, buf, bytes, &wc) == RESQ_OK, "cpu pack: %s", resq_last_error())) {
    for (int i = 0; i < g_nisa; i++) {
      select_isa(i);
      snap sc = {0};
      snap_add(&sc, yc, 4 * mn), snap_add(&sc, yhc, 2 * mn);
      for (int rep = 0; rep < 2; rep++) {
        snap_fill(&sc, rep);
        RC_CHECK(resq_gemm_q4q8_f32__cpu(&split, M, &xq.q, &wc, bias, yc, N) == RESQ_OK &&
                     resq_gemm_q4q8_f16__cpu(&split, M, &xq.q, &wc, bias, yhc, N) == RESQ_OK,
                 "gemm cpu: %s", resq_last_error());
        snap_take(&sc, rep, "gemm cpu");
      }
      snap_free(&sc);
      match_ref("y_f32", yc, y, mn, 4), match_ref("y_f16", yhc, yh, mn, 2);
      hash_out("y_f32", yc, 4 * mn), hash_out("y_f16", yhc, 2 * mn);
    }
    g_bk = "ref";
  }
  free(buf);
  qb_free(&xq);
  free(wq.q_lo), free(wq.q_hi), free(wq.scale_lo), free(wq.scale_hi), free(wq.sum_lo), free(wq.sum_hi);
  free(xh), free(w), free(bias), free(codes), free(slo), free(shi), free(y), free(yc), free(yh), free(yhc), free(order);
}
static void case_gemm_per_token_m16_n256_k4096_r512(void) { gemm_case(16, 256, 4096, 4096, 512); }
static void case_gemm_oproj_m8_n128_h32_hd128_r16(void) { gemm_case(8, 128, 4096, 128, 16); }
static void case_gemm_down_m4_n64_k11008_r0(void) { gemm_case(4, 64, 11008, 11008, 0); }

/* ------------------------------------------------------------------ FP16 GEMM (s.11 baseline) */

static void case_gemm_f16_m4_n64_k4096(void) {
  const int64_t M = 4, N = 64, K = 4096;
  rc_note("M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  uint16_t *x = zalloc(2 * (size_t)(M * K)), *w = zalloc(2 * (size_t)(N * K)), *yh = zalloc(2 * (size_t)(M * N));
  float *wf = zalloc(4 * (size_t)(N * K)), *y = zalloc(4 * (size_t)(M * N));
  llm_rows(&r, M, K, x, K, 0);
  weights(&r, N, K, wf, 3);
  resq_f32_to_f16_n(wf, w, (size_t)(N * K));
  snap sn = {0};
  snap_add(&sn, y, 4 * (size_t)(M * N)), snap_add(&sn, yh, 2 * (size_t)(M * N));
  for (int rep = 0; rep < 2; rep++) {
    snap_fill(&sn, rep);
    RC_CHECK(resq_gemm_f16_f32__ref(M, N, K, x, K, w, K, NULL, y, N) == RESQ_OK &&
                 resq_gemm_f16__ref(M, N, K, x, K, w, K, NULL, yh, N) == RESQ_OK,
             "gemm f16: %s", resq_last_error());
    snap_take(&sn, rep, "gemm f16");
  }
  snap_free(&sn);
  hash_out("y_f32", y, 4 * (size_t)(M * N)), hash_out("y_f16", yh, 2 * (size_t)(M * N));
  /* s.11: products exact, K-1 additions: |y - y*| <= gamma_{K-1} sum |x w| */
  double worst = 0;
  ld num = 0, den = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      ld s = 0, a = 0;
      for (int64_t k = 0; k < K; k++) {
        ld p = (ld)resq_f16_to_f32(x[m * K + k]) * resq_f16_to_f32(w[n * K + k]);
        s += p, a += fabsl(p);
      }
      double e = fabs((double)((ld)y[m * N + n] - s)), tol = gam32(K - 1.0) * (double)a;
      if (e / tol > worst) worst = e / tol;
      num += ((ld)y[m * N + n] - s) * ((ld)y[m * N + n] - s), den += s * s;
    }
  RC_CHECK(worst <= 1.0, "FP16 GEMM vs exact: |y - y*| / gamma_{K-1} bound = %.3g > 1", worst);
  metric("err_over_bound", worst, (long long)(M * N));
  metric("nmse_vs_exact", (double)(num / den), (long long)(M * N));
  /* the CPU FP16 GEMM (packed fp16 weights) is bit-identical to the reference */
  size_t bytes = 0;
  RC_CHECK(resq_gemm_f16_pack_weight_size__cpu(N, K, &bytes) == RESQ_OK, "f16 pack size: %s", resq_last_error());
  void *buf = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  resq_wf16_cpu wc;
  float *yc = zalloc(4 * (size_t)(M * N));
  uint16_t *yhc = zalloc(2 * (size_t)(M * N));
  if (RC_CHECK(resq_gemm_f16_pack_weight__cpu(N, K, w, K, buf, bytes, &wc) == RESQ_OK, "f16 pack: %s", resq_last_error())) {
    for (int i = 0; i < g_nisa; i++) {
      select_isa(i);
      snap sc = {0};
      snap_add(&sc, yc, 4 * (size_t)(M * N)), snap_add(&sc, yhc, 2 * (size_t)(M * N));
      for (int rep = 0; rep < 2; rep++) {
        snap_fill(&sc, rep);
        RC_CHECK(resq_gemm_f16_f32__cpu(M, x, K, &wc, NULL, yc, N) == RESQ_OK &&
                     resq_gemm_f16__cpu(M, x, K, &wc, NULL, yhc, N) == RESQ_OK,
                 "gemm f16 cpu: %s", resq_last_error());
        snap_take(&sc, rep, "gemm f16 cpu");
      }
      snap_free(&sc);
      match_ref("y_f32", yc, y, (size_t)(M * N), 4), match_ref("y_f16", yhc, yh, (size_t)(M * N), 2);
      hash_out("y_f32", yc, 4 * (size_t)(M * N)), hash_out("y_f16", yhc, 2 * (size_t)(M * N));
    }
    g_bk = "ref";
  }
  free(buf), free(yc), free(yhc);
  free(x), free(w), free(yh), free(wf), free(y);
}

/* ------------------------------------------------------------------ decoder layer (s.14) */

/* The synthetic "test" layer (resq/layer_synth.h: gaussian draws through libm,
 * so its bits are per platform; this case has no continuous figures), prepared
 * by the reference pipeline (ResQ, RTN weights without the clip search: the
 * fast path), both forms on the reference and on the CPU kernels: the CPU is
 * bit-identical to the reference (cpu.h), and every output is hashed. */
static void case_layer_test_t32(void) {
  const int64_t T = 32, NC = 2;
  rc_note("config test, T=%lld, ResQ (RTN weights, no clip search) and FP16 forms", (long long)T);
  resq_layer_config c;
  RC_CHECK(resq_layer_config_named("test", &c) == RESQ_OK, "config: %s", resq_last_error());
  resq_layer_synth sy;
  if (!RC_CHECK(resq_layer_synth_init(&sy, &c, NULL, rc_seed()) == RESQ_OK, "synth: %s", resq_last_error())) return;
  const size_t td = (size_t)(T * c.d);
  uint16_t *calib = zalloc(2 * td * NC), *h = zalloc(2 * td), *hr = zalloc(2 * td);
  uint16_t *o16 = zalloc(2 * td), *oq = zalloc(2 * td), *c16 = zalloc(2 * td), *cq = zalloc(2 * td);
  for (int64_t i = 0; i < NC; i++)
    RC_CHECK(resq_layer_synth_sequence(&sy, RESQ_SYNTH_STREAM_CALIB, (uint64_t)i, T, calib + (size_t)i * td, c.d) == RESQ_OK,
             "calib: %s", resq_last_error());
  RC_CHECK(resq_layer_synth_sequence(&sy, RESQ_SYNTH_STREAM_EVAL, 0, T, h, c.d) == RESQ_OK, "eval: %s", resq_last_error());
  resq_layer_prepare_params pp = resq_layer_prepare_default(RESQ_LAYER_RESQ);
  pp.wquant = RESQ_WQUANT_RTN;
  pp.w_clip = 0;
  resq_layer_prepared P;
  memset(&P, 0, sizeof P);
  if (!RC_CHECK(resq_layer_prepare_f32__ref(&c, &sy.w, NC, T, calib, &pp, &P) == RESQ_OK, "prepare: %s",
                resq_last_error()))
    goto out;
  hash_out("prepared_wq_lo", P.L.wq.q_lo, (size_t)(P.L.wq.N * P.L.wq.ld_lo));
  hash_out("prepared_wd_lo", P.L.wd.q_lo, (size_t)(P.L.wd.N * P.L.wd.ld_lo));
  if (P.L.k8) hash_out("prepared_k8", P.L.k8, 4 * (size_t)(c.hd * c.hd));
  RC_CHECK(resq_layer_to_basis__ref(&P, T, h, hr) == RESQ_OK, "to basis: %s", resq_last_error());
  {
    size_t w16 = resq_layer_fp16_workspace_size(&c, T), wq = resq_layer_q4q8_workspace_size(&c, T);
    void *work = zalloc(w16 > wq ? w16 : wq);
    snap sn = {0};
    snap_add(&sn, o16, 2 * td), snap_add(&sn, oq, 2 * td);
    for (int rep = 0; rep < 2; rep++) {
      snap_fill(&sn, rep);
      RC_CHECK(resq_layer_fp16_forward__ref(&c, &sy.w, T, h, o16, work, w16) == RESQ_OK &&
                   resq_layer_q4q8_forward__ref(&c, &P.L, T, hr, oq, work, wq) == RESQ_OK,
               "layer forward: %s", resq_last_error());
      snap_take(&sn, rep, "layer ref");
    }
    snap_free(&sn);
    free(work);
  }
  hash_out("h_out_fp16", o16, 2 * td), hash_out("h_out_resq", oq, 2 * td);
  {
    resq_layer_q4q8_cpu Lq;
    resq_layer_fp16_cpu Lf;
    memset(&Lq, 0, sizeof Lq), memset(&Lf, 0, sizeof Lf);
    if (RC_CHECK(resq_layer_q4q8_pack__cpu(&c, &P.L, &Lq) == RESQ_OK && resq_layer_fp16_pack__cpu(&c, &sy.w, &Lf) == RESQ_OK,
                 "cpu layer pack: %s", resq_last_error())) {
      size_t w16 = resq_layer_fp16_workspace_size__cpu(&Lf, T), wq = resq_layer_q4q8_workspace_size__cpu(&Lq, T);
      void *work = zalloc(w16 > wq ? w16 : wq);
      for (int i = 0; i < g_nisa; i++) {
        select_isa(i);
        snap sc = {0};
        snap_add(&sc, c16, 2 * td), snap_add(&sc, cq, 2 * td);
        for (int rep = 0; rep < 2; rep++) {
          snap_fill(&sc, rep);
          RC_CHECK(resq_layer_fp16_forward__cpu(&c, &Lf, T, h, c16, work, w16) == RESQ_OK &&
                       resq_layer_q4q8_forward__cpu(&c, &Lq, T, hr, cq, work, wq) == RESQ_OK,
                   "cpu layer forward: %s", resq_last_error());
          snap_take(&sc, rep, "layer cpu");
        }
        snap_free(&sc);
        match_ref("h_out_fp16", c16, o16, td, 2), match_ref("h_out_resq", cq, oq, td, 2);
        hash_out("h_out_fp16", c16, 2 * td), hash_out("h_out_resq", cq, 2 * td);
      }
      g_bk = "ref";
      free(work);
    }
    resq_layer_q4q8_free__cpu(&Lq);
    resq_layer_fp16_free__cpu(&Lf);
  }
out:
  resq_layer_prepared_free(&P);
  resq_layer_synth_free(&sy);
  free(calib), free(h), free(hr), free(o16), free(oq), free(c16), free(cq);
}

/* ------------------------------------------------------------------ GPTQ (s.12) */

static void case_gptq_n64_k512_r64(void) {
  const int64_t N = 64, K = 512, B = 4, T = 128;
  rc_note("N=%lld K=%lld r=64 B=%lld T=%lld nbatch=2", (long long)N, (long long)K, (long long)B, (long long)T);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* correlated calibration inputs x = z A + 0.3 z', A gaussian / sqrt(K), two outlier features x 10 */
  const int64_t rows = B * T;
  double *A = zalloc(8 * (size_t)(K * K)), *z = zalloc(8 * (size_t)K);
  float *x = zalloc(4 * (size_t)(rows * K)), *w = zalloc(4 * (size_t)(N * K));
  for (int64_t i = 0; i < K * K; i++) A[i] = znorm(&r) / sqrt((double)K);
  int64_t o1 = (int64_t)resq_rng_below(&r, (uint64_t)K), o2 = (int64_t)resq_rng_below(&r, (uint64_t)K);
  for (int64_t t = 0; t < rows; t++) {
    for (int64_t i = 0; i < K; i++) z[i] = znorm(&r);
    for (int64_t j = 0; j < K; j++) {
      double s = 0;
      for (int64_t i = 0; i < K; i++) s += z[i] * A[i * K + j];
      s += 0.3 * znorm(&r);
      if (j == o1 || j == o2) s *= 10.0;
      x[t * K + j] = (float)s;
    }
  }
  weights(&r, N, K, w, 3);
  resq_gptq_hessian h;
  RC_CHECK(resq_gptq_hessian_init(&h, K) == RESQ_OK, "hessian init");
  RC_CHECK(resq_gptq_add_batch_f32__ref(&h, 2, T, x, K) == RESQ_OK &&
               resq_gptq_add_batch_f32__ref(&h, 2, T, x + 2 * T * K, K) == RESQ_OK,
           "add_batch: %s", resq_last_error());
  hash_out("H", h.H, 8 * (size_t)(K * K));
  resq_gptq_params p = resq_gptq_default(K);
  size_t nk = (size_t)(N * K), ws = resq_gptq_workspace_size(&p, N);
  int8_t *codes = zalloc(nk), *rc = zalloc(nk);
  float *slo = zalloc(4 * (size_t)N), *shi = zalloc(4 * (size_t)N), *Q = zalloc(4 * nk);
  float *rslo = zalloc(4 * (size_t)N), *rshi = zalloc(4 * (size_t)N), *Qr = zalloc(4 * nk);
  void *work = zalloc(ws);
  snap sn = {0};
  snap_add(&sn, codes, nk), snap_add(&sn, slo, 4 * (size_t)N), snap_add(&sn, shi, 4 * (size_t)N), snap_add(&sn, Q, 4 * nk);
  for (int rep = 0; rep < 2; rep++) {
    snap_fill(&sn, rep);
    RC_CHECK(resq_gptq_f64__ref(&p, &h, N, w, K, codes, K, slo, shi, Q, K, NULL, work, ws) == RESQ_OK, "gptq: %s",
             resq_last_error());
    snap_take(&sn, rep, "gptq ref");
  }
  snap_free(&sn);
  hash_out("codes", codes, nk), hash_out("Q", Q, 4 * nk);
  RC_CHECK(resq_quant_weight_f32__ref(&p.q, N, w, K, rc, K, rslo, rshi) == RESQ_OK &&
               resq_dequant_weight_f32__ref(&p.q, N, rc, K, rslo, rshi, Qr, K) == RESQ_OK,
           "rtn: %s", resq_last_error());
  double og = 0, orr = 0;
  resq_gptq_objective_f64__ref(&h, N, w, K, Q, K, &og, NULL);
  resq_gptq_objective_f64__ref(&h, N, w, K, Qr, K, &orr, NULL);
  RC_CHECK(og < orr, "GPTQ objective %.6e not below RTN %.6e", og, orr);
  metric("objective", og, 1);
  metric("objective_over_rtn", og / orr, 1);
  printf("  gptq objective %.6e, RTN %.6e, ratio %.4f\n", og, orr, og / orr);
  /* the CPU GPTQ (LAPACK/BLAS orders) agrees on the codes up to rounding-boundary
   * flips: the rule of verify/golden_test.c run_gptq (at most one row differs, its
   * first difference +-1; expected first flips << 1 by the same delta argument) */
  for (int i = 0; i < g_nisa; i++) {
    select_isa(i);
    resq_gptq_hessian hc;
    RC_CHECK(resq_gptq_hessian_init(&hc, K) == RESQ_OK, "hessian init");
    RC_CHECK(resq_gptq_add_batch_f32__cpu(&hc, 2, T, x, K) == RESQ_OK &&
                 resq_gptq_add_batch_f32__cpu(&hc, 2, T, x + 2 * T * K, K) == RESQ_OK,
             "cpu add_batch: %s", resq_last_error());
    size_t wsc = resq_gptq_workspace_size__cpu(&p, N);
    void *wk = zalloc(wsc);
    int8_t *cc = zalloc(nk);
    float *cslo = zalloc(4 * (size_t)N), *cshi = zalloc(4 * (size_t)N), *cQ = zalloc(4 * nk);
    snap sc = {0};
    snap_add(&sc, cc, nk), snap_add(&sc, cQ, 4 * nk), snap_add(&sc, cslo, 4 * (size_t)N);
    for (int rep = 0; rep < 2; rep++) {
      snap_fill(&sc, rep);
      RC_CHECK(resq_gptq_f64__cpu(&p, &hc, N, w, K, cc, K, cslo, cshi, cQ, K, NULL, wk, wsc) == RESQ_OK, "cpu gptq: %s",
               resq_last_error());
      snap_take(&sc, rep, "gptq cpu");
    }
    snap_free(&sc);
    hash_out("H", hc.H, 8 * (size_t)(K * K)), hash_out("codes", cc, nk), hash_out("Q", cQ, 4 * nk);
    long same = 0, rdiff = 0, firstbad = 0;
    for (int64_t n = 0; n < N; n++) {
      int first = 1;
      for (int64_t k = 0; k < K; k++) {
        int a = cc[n * K + k], b = codes[n * K + k];
        same += a == b;
        if (a != b && first) first = 0, rdiff++, firstbad += abs(a - b) != 1;
      }
    }
    double oc = 0;
    resq_gptq_objective_f64__ref(&h, N, w, K, cQ, K, &oc, NULL);
    metric("codes_match_ref", (double)same, (long long)nk);
    metric("objective", oc, 1);
    metric("objective_over_rtn", oc / orr, 1);
    RC_CHECK(rdiff <= 1 && firstbad == 0, "cpu gptq: %ld rows differ from the reference (allowed 1), %ld first "
             "differences not +-1", rdiff, firstbad);
    RC_CHECK(oc < orr, "cpu GPTQ objective %.6e not below RTN %.6e", oc, orr);
    free(wk), free(cc), free(cslo), free(cshi), free(cQ);
    resq_gptq_hessian_free(&hc);
  }
  g_bk = "ref";
  resq_gptq_hessian_free(&h);
  free(A), free(z), free(x), free(w), free(codes), free(rc), free(slo), free(shi), free(Q), free(rslo), free(rshi);
  free(Qr), free(work);
}

/* ------------------------------------------------------------------ PCA (s.13) */

static void eig_quality(int64_t n, const double *C, const double *V, const double *w, double *res, double *orth) {
  ld rs = 0, os = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ld s = 0;
      for (int64_t k = 0; k < n; k++) s += (ld)C[i * n + k] * V[k * n + j];
      s -= (ld)V[i * n + j] * w[j];
      rs += s * s;
    }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i; j < n; j++) {
      ld s = 0;
      for (int64_t k = 0; k < n; k++) s += (ld)V[k * n + i] * V[k * n + j];
      if (i == j) s -= 1;
      os += (i == j ? 1 : 2) * s * s;
    }
  *res = (double)sqrtl(rs), *orth = (double)sqrtl(os);
}

static double proj_dist(int64_t n, int64_t k, const double *V1, const double *V2) {
  ld s = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ld a = 0, b = 0;
      for (int64_t c = n - k; c < n; c++) a += (ld)V1[i * n + c] * V1[j * n + c], b += (ld)V2[i * n + c] * V2[j * n + c];
      s += (a - b) * (a - b);
    }
  return (double)sqrtl(s);
}

static void case_pca_d256_r32_t1024(void) {
  const int64_t d = 256, r = 32, T = 1024;
  const double eps = 0x1p-52;
  rc_note("d=%lld r=%lld T=%lld", (long long)d, (long long)r, (long long)T);
  resq_rng rg;
  resq_rng_init(&rg, rc_seed());
  /* r dominant directions (amplitudes 12..6) on per-channel-scaled noise and one big axis channel */
  double *b = zalloc(8 * (size_t)(r * d)), *sc = zalloc(8 * (size_t)d);
  float *x = zalloc(4 * (size_t)(T * d));
  for (int64_t i = 0; i < r * d; i++) b[i] = znorm(&rg) / sqrt((double)d);
  for (int64_t i = 0; i < d; i++) sc[i] = 0.5 + resq_rng_uniform_f64(&rg);
  sc[resq_rng_below(&rg, (uint64_t)d)] = 20.0;
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < d; i++) x[t * d + i] = (float)(sc[i] * znorm(&rg));
  for (int64_t t = 0; t < T; t++)
    for (int64_t k = 0; k < r; k++) {
      double f = (12.0 - 6.0 * (double)k / (double)r) * znorm(&rg);
      for (int64_t i = 0; i < d; i++) x[t * d + i] += (float)(f * b[k * d + i]);
    }
  resq_pca_accum a;
  RC_CHECK(resq_pca_accum_init(&a, d) == RESQ_OK, "init");
  RC_CHECK(resq_pca_accum_f32__ref(&a, T / 2, x, d) == RESQ_OK && resq_pca_accum_f32__ref(&a, T - T / 2, x + T / 2 * d, d) == RESQ_OK,
           "accum: %s", resq_last_error());
  hash_out("S", a.S, 8 * (size_t)(d * d));
  double *C = zalloc(8 * (size_t)(d * d)), *w = zalloc(8 * (size_t)d), *V = zalloc(8 * (size_t)(d * d));
  size_t ws = resq_pca_basis_workspace_size(d);
  void *work = zalloc(ws);
  RC_CHECK(resq_pca_covariance_f64__ref(&a, 0.01, C, d, NULL) == RESQ_OK, "covariance: %s", resq_last_error());
  snap sn = {0};
  snap_add(&sn, w, 8 * (size_t)d), snap_add(&sn, V, 8 * (size_t)(d * d));
  for (int rep = 0; rep < 2; rep++) {
    snap_fill(&sn, rep);
    RC_CHECK(resq_pca_basis_f64__ref(&a, 0.01, w, V, d, work, ws) == RESQ_OK, "basis: %s", resq_last_error());
    snap_take(&sn, rep, "pca ref");
  }
  snap_free(&sn);
  hash_out("eigvals", w, 8 * (size_t)d), hash_out("U", V, 8 * (size_t)(d * d));
  double cf = 0;
  {
    ld s = 0;
    for (int64_t i = 0; i < d * d; i++) s += (ld)C[i] * C[i];
    cf = (double)sqrtl(s);
  }
  double r1, o1;
  eig_quality(d, C, V, w, &r1, &o1);
  /* (B1) of verify/pca_f64__ref_test.c */
  RC_CHECK(r1 <= 8.0 * d * eps * cf && o1 <= 8.0 * d * eps, "eigensystem beyond (B1): residual %.3g, orth %.3g", r1, o1);
  metric("residual_over_b1", r1 / (8.0 * d * eps * cf), 1);
  metric("orth_over_b1", o1 / (8.0 * d * eps), 1);
  ld top = 0, all = 0;
  for (int64_t j = 0; j < d; j++) all += w[j], top += j >= d - r ? w[j] : 0;
  double relgap = (w[d - r] - w[d - r - 1]) / w[d - 1];
  metric("top_r_energy", (double)(top / all), 1);
  metric("relgap", relgap, 1);
  RC_CHECK(relgap > 1e-3, "the generated case has a clear gap (%.3g)", relgap);
  /* CPU (dsyrk + dsyevd): eigenvalues by Weyl, the top-r projector by Davis-Kahan, from
   * both solvers' measured backward errors (B2), as verify/golden_test.c run_pca */
  double e1 = r1 * (1 + o1) + 2 * o1 * cf;
  for (int i = 0; i < g_nisa; i++) {
    select_isa(i);
    resq_pca_accum ac;
    RC_CHECK(resq_pca_accum_init(&ac, d) == RESQ_OK, "init");
    RC_CHECK(resq_pca_accum_f32__cpu(&ac, T / 2, x, d) == RESQ_OK && resq_pca_accum_f32__cpu(&ac, T - T / 2, x + T / 2 * d, d) == RESQ_OK,
             "cpu accum: %s", resq_last_error());
    size_t wsc = resq_pca_basis_workspace_size__cpu(d);
    void *wk = zalloc(wsc);
    double *wc = zalloc(8 * (size_t)d), *Vc = zalloc(8 * (size_t)(d * d)), *Cc = zalloc(8 * (size_t)(d * d));
    snap sp = {0};
    snap_add(&sp, wc, 8 * (size_t)d), snap_add(&sp, Vc, 8 * (size_t)(d * d));
    for (int rep = 0; rep < 2; rep++) {
      snap_fill(&sp, rep);
      RC_CHECK(resq_pca_basis_f64__cpu(&ac, 0.01, wc, Vc, d, wk, wsc) == RESQ_OK, "cpu basis: %s", resq_last_error());
      snap_take(&sp, rep, "pca cpu");
    }
    snap_free(&sp);
    hash_out("S", ac.S, 8 * (size_t)(d * d)), hash_out("eigvals", wc, 8 * (size_t)d), hash_out("U", Vc, 8 * (size_t)(d * d));
    /* the CPU's C differs from ours by its S summation order: |dS| <= 2 gamma_{T} sum |x x|,
     * which Weyl adds as ||dC||_F; measured directly here */
    resq_pca_covariance_f64__ref(&ac, 0.01, Cc, d, NULL);
    ld dcs = 0;
    for (int64_t k = 0; k < d * d; k++) dcs += ((ld)Cc[k] - C[k]) * ((ld)Cc[k] - C[k]);
    double dC = (double)sqrtl(dcs), r2, o2;
    eig_quality(d, Cc, Vc, wc, &r2, &o2);
    double e2 = r2 * (1 + o2) + 2 * o2 * cf + dC;
    double we = 0;
    for (int64_t j = 0; j < d; j++) we = fmax(we, fabs(wc[j] - w[j]));
    RC_CHECK(we <= e1 + e2, "cpu eigenvalues differ by %.3g > %.3g", we, e1 + e2);
    double gap = w[d - r] - w[d - r - 1], g = gap - 2 * fmax(e1, e2);
    double tol = sqrt(2.0) * e1 / (g - 2 * e1) + 2 * o1 + sqrt(2.0) * e2 / (g - 2 * e2) + 2 * o2;
    double pd = proj_dist(d, r, Vc, V);
    RC_CHECK(pd <= tol, "cpu projector distance %.3g > %.3g", pd, tol);
    metric("eigvals_err_over_bound", we / (e1 + e2), (long long)d);
    metric("projector_err_over_bound", pd / tol, 1);
    resq_pca_accum_free(&ac);
    free(wk), free(wc), free(Vc), free(Cc);
  }
  g_bk = "ref";
  resq_pca_accum_free(&a);
  free(b), free(sc), free(x), free(C), free(w), free(V), free(work);
}

/* ------------------------------------------------------------------ main */

static const struct {
  const char *stage, *name;
  void (*fn)(void);
} k_cases[] = {
    {"hadamard_f16", "hadamard_n4096", case_hadamard_n4096},
    {"hadamard_f16", "hadamard_n11008", case_hadamard_n11008},
    {"hadamard_f16", "hadamard_n14336", case_hadamard_n14336},
    {"quant_act_f16_q4q8", "qact_per_token_k4096_r512", case_qact_per_token_k4096_r512},
    {"quant_act_f16_q4q8", "qact_down_k11008_r0", case_qact_down_k11008_r0},
    {"quant_act_f16_q4q8", "qact_oproj_h32_hd128_r16", case_qact_oproj_h32_hd128_r16},
    {"quant_weight_f32", "qweight_k4096_r512_rtn", case_qweight_k4096_r512_rtn},
    {"quant_weight_f32", "qweight_k4096_r512_mse", case_qweight_k4096_r512_mse},
    {"gemm_q4q8_f16", "gemm_per_token_m16_n256_k4096_r512", case_gemm_per_token_m16_n256_k4096_r512},
    {"gemm_q4q8_f16", "gemm_oproj_m8_n128_h32_hd128_r16", case_gemm_oproj_m8_n128_h32_hd128_r16},
    {"gemm_q4q8_f16", "gemm_down_m4_n64_k11008_r0", case_gemm_down_m4_n64_k11008_r0},
    {"gemm_f16", "gemm_f16_m4_n64_k4096", case_gemm_f16_m4_n64_k4096},
    {"gptq_f64", "gptq_n64_k512_r64", case_gptq_n64_k512_r64},
    {"pca_f64", "pca_d256_r32_t1024", case_pca_d256_r32_t1024},
    {"layer", "layer_test_t32", case_layer_test_t32},
};

int main(int argc, char **argv) {
  rc_init("golden_synth", argc, argv);
  g_prog = argv[0];
  const char *isa = rc_arg("isa"), *th = rc_arg("threads"), *mp = rc_arg("metrics"), *hp = rc_arg("hash");
  if (!isa || strcmp(isa, "generic") == 0) g_isa[g_nisa++] = RESQ_CPU_ISA_GENERIC;
  if ((!isa || strcmp(isa, "avx512") == 0) && resq_cpu_isa_available(RESQ_CPU_ISA_AVX512)) g_isa[g_nisa++] = RESQ_CPU_ISA_AVX512;
  if (isa && strcmp(isa, "generic") && strcmp(isa, "avx512")) {
    printf("unknown --isa %s (generic or avx512)\n", isa);
    return 2;
  }
  if (th && resq_cpu_set_threads(atoi(th)) != RESQ_OK) {
    printf("--threads %s: %s\n", th, resq_last_error());
    return 2;
  }
  if ((mp && !(g_metrics = fopen(mp, "a"))) || (hp && !(g_hash = fopen(hp, "a")))) {
    printf("cannot open %s for appending\n", g_metrics ? hp : mp);
    return 2;
  }
  printf("golden_synth: CPU paths:");
  for (int i = 0; i < g_nisa; i++) printf(" %s", g_isa[i] == RESQ_CPU_ISA_AVX512 ? "avx512" : "generic");
  printf(", %d threads\n", resq_cpu_get_threads());
  for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
    if (!rc_case(k_cases[i].name)) continue;
    g_stage = k_cases[i].stage, g_case = k_cases[i].name, g_bk = "ref";
    k_cases[i].fn();
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  if (g_metrics) fclose(g_metrics);
  if (g_hash) fclose(g_hash);
  return rc_finish();
}
