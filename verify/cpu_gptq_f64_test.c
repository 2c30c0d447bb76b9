/* SPDX-License-Identifier: Apache-2.0
 * CPU GPTQ (resq/cpu.h: LAPACK dpotrf/dpotri, dgemm lazy updates, rows over
 * the pool) vs the reference GPTQ (ref/CONTRACT.md section 12). GPTQ cascades
 * (a code that flips feeds a different error forward), so the comparison is
 * by code agreement with a derived flip allowance and by the layer objective,
 * never by raw codes alone:
 *
 *  Flip allowance. The two implementations compute the same pre-quantization
 *  values w/s up to double rounding: the factorizations (Cholesky, inverse,
 *  Cholesky of the inverse) have forward errors ~ K cond(H_d) u_d relative
 *  (H_d the damped Hessian), and K error-feedback steps carry them, so
 *  |delta(w/s)| <= delta = K cond(H_d) u_d max|w/s| (the estimate of
 *  verify/gptq_f64__ref_test.c). For a PSD H with the mean-diagonal damping,
 *  cond(H_d) <= (tr H + damp) / damp = 1 + K / percdamp, a bound that needs no
 *  eigensolver; max|w/s| <= 2^(bits_hi-1). A code differs only when w/s lies
 *  within delta of a rounding boundary: P <= 2 delta per code, so the
 *  expected number of FIRST differences in N*K codes is mu <= 2 delta N K.
 *  Allowed: rows_diff <= max(1, ceil(mu + 5 sqrt(mu))) (a Poisson tail far
 *  below 1e-6), and the first difference of a row must be +-1 (a boundary
 *  flip); after it the row may follow another path.
 *  Objective. Rows whose codes and scales agree have bitwise-equal Q, so their
 *  row objectives (resq_gptq_objective_f64__ref) must be bitwise equal; for the
 *  total, |L_cpu - L_ref| <= sum over the differing rows of (L_cpu,n + L_ref,n)
 *  (triangle inequality, L_n >= 0), and L_cpu < L_rtn (the contract's property).
 *
 * Cases: correlated calibration data at K = 256 and 512 (several blocks), r =
 * K/8 and 0, MSE, act-order, groups, blocksizes 1..K, 1 and 3 threads; the
 * diagonal Hessian gives RTN bit for bit; dead columns; the Hessian by dsyrk
 * against the reference's (2 gamma bound, bitwise symmetric, NaN adds nothing);
 * every failure the reference reports gives the same status code and writes
 * nothing (singular and indefinite H, the H^-1 retry, NaN/Inf, shapes, the
 * workspace). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/gptq.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq_check.h"

static const double k_ud = 0x1p-53;
static double gam(double k) { return k * k_ud / (1.0 - k * k_ud); }
static float *falloc(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double *dalloc(int64_t n) { return (double *)calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* x = (z A + 0.1 eps) diag(c): K/4 latent factors, per-channel scales */
static void correlated_tokens(resq_rng *r, float *x, int64_t T, int64_t K) {
  int64_t m = K / 4 > 0 ? K / 4 : 1;
  double *A = dalloc(m * K), *c = dalloc(K), *z = dalloc(m);
  for (int64_t i = 0; i < m * K; i++) A[i] = resq_rng_normal(r) / sqrt((double)m);
  for (int64_t j = 0; j < K; j++) c[j] = exp(0.5 * resq_rng_normal(r));
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < m; i++) z[i] = resq_rng_normal(r);
    for (int64_t j = 0; j < K; j++) {
      double v = 0.1 * resq_rng_normal(r);
      for (int64_t i = 0; i < m; i++) v += z[i] * A[i * K + j];
      x[t * K + j] = (float)(v * c[j]);
    }
  }
  free(A), free(c), free(z);
}

static void gaussian(resq_rng *r, float *x, int64_t n, double scale) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(scale * resq_rng_normal(r));
}

static resq_gptq_hessian hessian_ref(const float *x, int64_t T, int64_t K, int calls) {
  resq_gptq_hessian h;
  RC_CHECK(resq_gptq_hessian_init(&h, K) == RESQ_OK, "hessian init: %s", resq_last_error());
  int64_t per = T / calls;
  for (int c = 0; c < calls; c++) {
    int64_t rows = c == calls - 1 ? T - per * c : per;
    if (resq_gptq_add_batch_f32__ref(&h, 1, rows, x + per * c * K, K)) RC_FAIL("add_batch: %s", resq_last_error());
  }
  return h;
}

typedef struct {
  int64_t N, K, ngl;
  int8_t *codes;
  float *slo, *shi, *Q;
  double obj, *row_obj;
  resq_gptq_info info;
  resq_status st;
} qout;

#define SENT 0x5A
static void qout_alloc(qout *o, const resq_gptq_params *p, int64_t N) {
  memset(o, 0, sizeof *o);
  resq_gptq_check(p, &o->ngl);
  o->N = N;
  o->K = p->q.K;
  o->codes = (int8_t *)malloc((size_t)(N * o->K) + 1);
  o->slo = falloc(N * (o->ngl > 0 ? o->ngl : 1));
  o->shi = falloc(N);
  o->Q = falloc(N * o->K);
  o->row_obj = dalloc(N);
  memset(o->codes, SENT, (size_t)(N * o->K));
  memset(o->Q, SENT, (size_t)(N * o->K) * 4);
  memset(o->slo, SENT, (size_t)(N * (o->ngl > 0 ? o->ngl : 1)) * 4);
  memset(o->shi, SENT, (size_t)N * 4);
}
static void qout_free(qout *o) { free(o->codes), free(o->slo), free(o->shi), free(o->Q), free(o->row_obj); }

static int untouched(const qout *o) {
  const size_t NK = (size_t)(o->N * o->K);
  const uint8_t *b[4] = {(const uint8_t *)o->codes, (const uint8_t *)o->Q, (const uint8_t *)o->slo,
                         (const uint8_t *)o->shi};
  const size_t n[4] = {NK, NK * 4, (size_t)(o->N * (o->ngl > 0 ? o->ngl : 1)) * 4, (size_t)o->N * 4};
  for (int a = 0; a < 4; a++)
    for (size_t i = 0; i < n[a]; i++)
      if (b[a][i] != SENT) return 0;
  return 1;
}

/* cpu: 1 = CPU backend, 0 = reference; ws_delta shrinks the workspace */
static void run(int cpu, const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N, const float *W, qout *o,
                size_t ws_delta) {
  qout_alloc(o, p, N);
  size_t ws = cpu ? resq_gptq_workspace_size__cpu(p, N) : resq_gptq_workspace_size(p, N);
  void *work = malloc(ws ? ws : 1);
  ws -= ws_delta;
  o->st = cpu ? resq_gptq_f64__cpu(p, h, N, W, p->q.K, o->codes, p->q.K, o->slo, o->shi, o->Q, p->q.K, &o->info, work, ws)
              : resq_gptq_f64__ref(p, h, N, W, p->q.K, o->codes, p->q.K, o->slo, o->shi, o->Q, p->q.K, &o->info, work, ws);
  free(work);
  if (o->st == RESQ_OK) resq_gptq_objective_f64__ref(h, N, W, p->q.K, o->Q, p->q.K, &o->obj, o->row_obj);
}

static void label_of(char *buf, size_t n, const resq_gptq_params *p, int threads) {
  snprintf(buf, n, "K=%lld r=%lld mse=%d act=%d gs=%lld bs=%lld threads=%d", (long long)p->q.K, (long long)p->q.r,
           p->q.mse, p->act_order, (long long)p->group_size, (long long)p->blocksize, threads);
}

/* codes in the range of the ORIGINAL column's quantizer, Q = s * code bit for bit */
static void check_layout(const resq_gptq_params *p, const qout *o, const char *label) {
  const int64_t K = p->q.K, Klo = K - p->q.r, gs = p->group_size;
  const int mlo = resq_qmax_sym(p->q.bits_lo), mhi = resq_qmax_sym(p->q.bits_hi);
  long bad = 0;
  for (int64_t n = 0; n < o->N; n++)
    for (int64_t k = 0; k < K; k++) {
      int c = o->codes[n * K + k], hi = k >= Klo, m = hi ? mhi : mlo;
      float s = hi ? o->shi[n] : o->slo[n * o->ngl + (gs > 0 ? k / gs : 0)];
      float want = s * (float)c;
      bad += c < -m - 1 || c > m || memcmp(&want, &o->Q[n * K + k], 4) != 0 || !isfinite(o->Q[n * K + k]);
    }
  RC_CHECK(bad == 0, "%s: %ld codes out of range or Q != s*code", label, bad);
}

/* The comparison of the header. Returns rows that differ. */
static long compare(const resq_gptq_params *p, const qout *c, const qout *r, const char *label) {
  const int64_t N = c->N, K = c->K, ngl = c->ngl > 0 ? c->ngl : 1;
  const double cond = 1.0 + (double)K / p->percdamp;
  const double maxv = (double)(1 << (p->q.bits_hi > p->q.bits_lo ? p->q.bits_hi - 1 : p->q.bits_lo - 1));
  const double delta = (double)K * cond * k_ud * maxv, mu = 2.0 * delta * (double)(N * K);
  long allowed = (long)ceil(mu + 5.0 * sqrt(mu));
  if (allowed < 1) allowed = 1;
  long rows_diff = 0, first_bad = 0, same = 0, obj_bad = 0;
  double dsum = 0;
  for (int64_t n = 0; n < N; n++) {
    int differs = memcmp(c->shi + n, r->shi + n, 4) != 0 || memcmp(c->slo + n * ngl, r->slo + n * ngl, (size_t)ngl * 4) != 0;
    int first = 1;
    for (int64_t k = 0; k < K; k++) {
      int a = c->codes[n * K + k], b = r->codes[n * K + k];
      same += a == b;
      if (a != b && first) {
        first = 0;
        differs = 1;
        first_bad += abs(a - b) != 1;
      }
    }
    if (differs) {
      rows_diff++;
      dsum += c->row_obj[n] + r->row_obj[n];
    } else {
      obj_bad += memcmp(&c->row_obj[n], &r->row_obj[n], 8) != 0;
    }
  }
  printf("  %-50s %ld/%lld codes equal, %ld rows differ (allowed %ld, mu %.2g), objective cpu/ref %.9f\n", label, same,
         (long long)(N * K), rows_diff, allowed, mu, c->obj / r->obj);
  RC_CHECK(rows_diff <= allowed && first_bad == 0,
           "%s: %ld rows differ from the reference (allowed %ld), %ld first differences are not +-1", label, rows_diff,
           allowed, first_bad);
  RC_CHECK(obj_bad == 0, "%s: %ld rows with equal codes and scales have different objectives", label, obj_bad);
  RC_CHECK(fabs(c->obj - r->obj) <= dsum + gam((double)N) * (c->obj + r->obj),
           "%s: objectives %.17g vs %.17g differ by more than the differing rows' share %.3g", label, c->obj, r->obj,
           dsum);
  return rows_diff;
}

static void case_vs_reference(void) {
  if (!rc_case("gptq_vs_reference")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const struct {
    int64_t K, N, T, r, gs, bs;
    int mse, act, threads;
  } cfg[] = {
      {256, 48, 1024, 32, 0, 128, 0, 0, 0},  {256, 48, 1024, 32, 0, 128, 1, 0, 0},  {256, 48, 1024, 32, 0, 128, 0, 1, 0},
      {256, 48, 1024, 0, 0, 128, 0, 0, 0},   {256, 48, 1024, 0, 0, 128, 1, 1, 0},   {256, 48, 1024, 32, 32, 128, 0, 0, 0},
      {256, 48, 1024, 32, 32, 128, 1, 1, 0}, {256, 48, 1024, 32, 0, 1, 0, 0, 0},    {256, 48, 1024, 32, 0, 7, 0, 1, 3},
      {256, 48, 1024, 32, 0, 256, 0, 0, 1},  {512, 96, 2048, 64, 0, 128, 0, 0, 0},  {512, 96, 2048, 64, 0, 32, 0, 1, 3},
      {512, 96, 2048, 64, 64, 128, 1, 0, 1}, {512, 96, 2048, 0, 0, 100, 0, 0, 0},
  };
  int64_t curK = 0;
  float *x = NULL, *W = NULL;
  resq_gptq_hessian h;
  memset(&h, 0, sizeof h);
  for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
    const int64_t K = cfg[i].K, N = cfg[i].N;
    if (K != curK) {
      resq_gptq_hessian_free(&h);
      free(x), free(W);
      x = falloc(cfg[i].T * K), W = falloc(N * K);
      correlated_tokens(&r, x, cfg[i].T, K);
      gaussian(&r, W, N * K, 0.02);
      for (int64_t n = 0; n < N; n++) W[n * K + (n * 37) % K] *= 8.0f;
      h = hessian_ref(x, cfg[i].T, K, 4);
      curK = K;
    }
    resq_gptq_params p = resq_gptq_default(K);
    p.q.r = cfg[i].r, p.q.mse = cfg[i].mse, p.act_order = cfg[i].act, p.group_size = cfg[i].gs, p.blocksize = cfg[i].bs;
    char label[160];
    label_of(label, sizeof label, &p, cfg[i].threads);
    rc_note("%s N=%lld", label, (long long)N);
    resq_cpu_set_threads(cfg[i].threads);
    qout c, g, t;
    run(1, &p, &h, N, W, &c, 0);
    run(0, &p, &h, N, W, &g, 0);
    qout_alloc(&t, &p, N);
    t.st = resq_gptq_rtn_f32__ref(&p, N, W, K, t.codes, K, t.slo, t.shi, t.Q, K);
    if (t.st == RESQ_OK) resq_gptq_objective_f64__ref(&h, N, W, K, t.Q, K, &t.obj, NULL);
    if (RC_CHECK(c.st == RESQ_OK && g.st == RESQ_OK && t.st == RESQ_OK, "%s: cpu %s, ref %s, rtn %s: %s", label,
                 resq_status_name(c.st), resq_status_name(g.st), resq_status_name(t.st), resq_last_error())) {
      check_layout(&p, &c, label);
      compare(&p, &c, &g, label);
      RC_CHECK(c.obj < t.obj, "%s: cpu GPTQ objective %.6e not below RTN %.6e", label, c.obj, t.obj);
      RC_CHECK(c.info.dead == g.info.dead && c.info.damp == g.info.damp && c.info.retried == g.info.retried,
               "%s: info (dead %lld, damp %.17g, retried %d) equals the reference's", label, (long long)c.info.dead,
               c.info.damp, c.info.retried);
    }
    qout_free(&c), qout_free(&g), qout_free(&t);
  }
  resq_cpu_set_threads(0);
  resq_gptq_hessian_free(&h);
  free(x), free(W);
}

/* a diagonal H: no error feedback (U is diagonal: every update subtracts e * 0),
 * so GPTQ is RTN bit for bit; dead columns are zeroed */
static void case_diagonal_dead(void) {
  if (!rc_case("diagonal_is_rtn_and_dead_columns")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t K = 160, N = 37;
  float *W = falloc(N * K);
  gaussian(&r, W, N * K, 1.0);
  double *Hd = dalloc(K * K);
  for (int64_t i = 0; i < K; i++) Hd[i * K + i] = 0.5 + resq_rng_uniform_f32(&r);
  resq_gptq_hessian hd = {K, 3, 0, Hd, NULL};
  for (int gsi = 0; gsi < 2; gsi++) {
    resq_gptq_params p = resq_gptq_default(K);
    p.group_size = gsi ? 20 : 0;
    p.q.mse = gsi;
    qout c, t;
    run(1, &p, &hd, N, W, &c, 0);
    qout_alloc(&t, &p, N);
    t.st = resq_gptq_rtn_f32__ref(&p, N, W, K, t.codes, K, t.slo, t.shi, t.Q, K);
    RC_CHECK(c.st == RESQ_OK && t.st == RESQ_OK, "diagonal H gs=%d: %s", (int)p.group_size, resq_last_error());
    RC_CHECK(memcmp(c.codes, t.codes, (size_t)(N * K)) == 0 && memcmp(c.Q, t.Q, (size_t)(N * K) * 4) == 0 &&
                 memcmp(c.shi, t.shi, (size_t)N * 4) == 0 && memcmp(c.slo, t.slo, (size_t)(N * c.ngl) * 4) == 0,
             "diagonal H gs=%lld: GPTQ equals RTN bit for bit", (long long)p.group_size);
    qout_free(&c), qout_free(&t);
  }
  /* dead columns */
  const int64_t T = 400;
  float *x = falloc(T * K);
  correlated_tokens(&r, x, T, K);
  static const int64_t dead[] = {0, 3, 50, 159};
  for (int64_t t = 0; t < T; t++)
    for (int d = 0; d < 4; d++) x[t * K + dead[d]] = 0.0f;
  resq_gptq_hessian h = hessian_ref(x, T, K, 2);
  for (int act = 0; act < 2; act++) {
    resq_gptq_params p = resq_gptq_default(K);
    p.act_order = act;
    qout c, g;
    run(1, &p, &h, N, W, &c, 0);
    run(0, &p, &h, N, W, &g, 0);
    if (!RC_CHECK(c.st == RESQ_OK && g.st == RESQ_OK, "dead columns act=%d: %s", act, resq_last_error())) {
      qout_free(&c), qout_free(&g);
      continue;
    }
    long nz = 0;
    for (int64_t n = 0; n < N; n++)
      for (int d = 0; d < 4; d++) nz += c.codes[n * K + dead[d]] != 0 || c.Q[n * K + dead[d]] != 0.0f;
    RC_CHECK(nz == 0 && c.info.dead == 4, "act=%d: %ld dead entries not zero, info.dead %lld", act, nz,
             (long long)c.info.dead);
    char label[64];
    snprintf(label, sizeof label, "dead columns act=%d", act);
    compare(&p, &c, &g, label);
    qout_free(&c), qout_free(&g);
  }
  resq_gptq_hessian_free(&h);
  free(W), free(Hd), free(x);
}

/* H by dsyrk vs the reference's token-order sums: every entry is a double sum of
 * the exact products X_i X_j (X = c x rounded identically in both) over the
 * tokens of a call, then the running-average rescaling: per call both are within
 * gamma_T sum|X_i X_j| of the exact sum, and the rescaling multiplies every
 * difference by factor <= 1 (plus one rounding, u |H|), so
 * |H_cpu - H_ref| <= sum over calls (2 gamma_T sum_call |X X| + 2u |H|). */
static void case_hessian(void) {
  if (!rc_case("hessian_vs_reference")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t K = 200, T = 600;
  float *x = falloc(T * K);
  correlated_tokens(&r, x, T, K);
  uint16_t *x16 = (uint16_t *)calloc((size_t)(T * K), 2);
  for (int64_t i = 0; i < T * K; i++) x16[i] = resq_f32_to_f16(x[i]);
  resq_gptq_hessian hc, hr;
  resq_gptq_hessian_init(&hc, K), resq_gptq_hessian_init(&hr, K);
  /* three calls: B = 2 x 100 tokens, B = 1 x 300, B = 1 x 100 */
  const int64_t B[3] = {2, 1, 1}, Tt[3] = {100, 300, 100};
  double *bound = dalloc(K * K);
  int64_t off = 0, n = 0;
  for (int c = 0; c < 3; c++) {
    RC_CHECK(resq_gptq_add_batch_f32__cpu(&hc, B[c], Tt[c], x + off * K, K) == RESQ_OK, "cpu add_batch %d: %s", c,
             resq_last_error());
    RC_CHECK(resq_gptq_add_batch_f32__ref(&hr, B[c], Tt[c], x + off * K, K) == RESQ_OK, "ref add_batch %d", c);
    const int64_t rows = B[c] * Tt[c];
    const double factor = (double)n / (double)(n + B[c]);
    n += B[c];
    const double cc = sqrt(2.0 / (double)n);
    for (int64_t i = 0; i < K; i++)
      for (int64_t j = 0; j < K; j++) {
        double sa = 0;
        for (int64_t t = 0; t < rows; t++) sa += fabs(cc * (double)x[(off + t) * K + i] * (cc * (double)x[(off + t) * K + j]));
        bound[i * K + j] = bound[i * K + j] * factor + 2 * gam((double)rows + 1) * sa * (1 + 1e-12) +
                           2 * k_ud * fabs(hr.H[i * K + j]);
      }
    off += rows;
  }
  long bad = 0, asym = 0;
  double worst = 0;
  for (int64_t i = 0; i < K; i++)
    for (int64_t j = 0; j < K; j++) {
      double d = fabs(hc.H[i * K + j] - hr.H[i * K + j]);
      bad += !(d <= bound[i * K + j]);
      asym += memcmp(&hc.H[i * K + j], &hc.H[j * K + i], 8) != 0;
      if (bound[i * K + j] > 0) worst = fmax(worst, d / bound[i * K + j]);
    }
  printf("  Hessian K=%lld, 3 calls: worst |H_cpu - H_ref| / bound = %.3g\n", (long long)K, worst);
  RC_CHECK(bad == 0 && asym == 0, "%ld entries beyond the bound, %ld asymmetric", bad, asym);
  RC_CHECK(hc.nsamples == hr.nsamples && hc.ntokens == hr.ntokens, "counts equal");
  /* f16 entry = f32 entry on the widened values */
  resq_gptq_hessian ha, hb;
  resq_gptq_hessian_init(&ha, K), resq_gptq_hessian_init(&hb, K);
  float *xw = falloc(T * K);
  for (int64_t i = 0; i < T * K; i++) xw[i] = resq_f16_to_f32(x16[i]);
  resq_gptq_add_batch_f16__cpu(&ha, 3, 200, x16, K);
  resq_gptq_add_batch_f32__cpu(&hb, 3, 200, xw, K);
  RC_CHECK(memcmp(ha.H, hb.H, (size_t)(K * K) * 8) == 0, "f16 entry = f32 entry on the widened values, bit for bit");
  /* NaN: nothing added; argument errors as the reference */
  double *keep = dalloc(K * K);
  memcpy(keep, ha.H, (size_t)(K * K) * 8);
  xw[5 * K + 7] = NAN;
  resq_status st = resq_gptq_add_batch_f32__cpu(&ha, 1, 10, xw, K);
  RC_CHECK(st == RESQ_ERR_NONFINITE && memcmp(keep, ha.H, (size_t)(K * K) * 8) == 0 && ha.nsamples == 3,
           "NaN batch: %s, nothing added", resq_status_name(st));
  resq_gptq_hessian z;
  memset(&z, 0, sizeof z);
  RC_CHECK(resq_gptq_add_batch_f32__cpu(&z, 1, 1, xw, K) == resq_gptq_add_batch_f32__ref(&z, 1, 1, xw, K) &&
               resq_gptq_add_batch_f32__cpu(&ha, -1, 1, xw, K) == resq_gptq_add_batch_f32__ref(&hb, -1, 1, xw, K) &&
               resq_gptq_add_batch_f32__cpu(&ha, 1, 2, xw, K - 1) == resq_gptq_add_batch_f32__ref(&hb, 1, 2, xw, K - 1) &&
               resq_gptq_add_batch_f32__cpu(&ha, 1, 2, NULL, K) == resq_gptq_add_batch_f32__ref(&hb, 1, 2, NULL, K),
           "argument errors: the reference's status codes");
  RC_CHECK(resq_gptq_add_batch_f32__cpu(&ha, 0, 5, NULL, K) == RESQ_OK && ha.nsamples == 3, "B = 0 is a no-op");
  resq_gptq_hessian_free(&hc), resq_gptq_hessian_free(&hr), resq_gptq_hessian_free(&ha), resq_gptq_hessian_free(&hb);
  free(x), free(x16), free(bound), free(xw), free(keep);
}

static void expect_fail(const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N, const float *W,
                        const char *what, size_t ws_delta) {
  qout c, g;
  run(1, p, h, N, W, &c, ws_delta);
  run(0, p, h, N, W, &g, ws_delta);
  RC_CHECK(c.st == g.st && c.st != RESQ_OK && untouched(&c), "%s: cpu %s, ref %s (%s), cpu outputs untouched", what,
           resq_status_name(c.st), resq_status_name(g.st), resq_last_error());
  qout_free(&c), qout_free(&g);
}

static void case_failures(void) {
  if (!rc_case("failures_write_nothing")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  float W[8 * 64];
  gaussian(&r, W, 8 * 64, 1.0);
  /* exactly singular H ([[4,4],[4,4]]) without damping */
  resq_gptq_hessian h2;
  resq_gptq_hessian_init(&h2, 2);
  float x2[4] = {2, 2, 0, 0};
  resq_gptq_add_batch_f32__ref(&h2, 2, 1, x2, 2);
  resq_gptq_params p = resq_gptq_default(2);
  p.q.r = 1, p.percdamp = 0.0;
  expect_fail(&p, &h2, 8, W, "singular H, percdamp 0", 0);
  p.percdamp = 0.01;
  qout c;
  run(1, &p, &h2, 8, W, &c, 0);
  RC_CHECK(c.st == RESQ_OK, "the same H with percdamp 0.01 works: %s", resq_last_error());
  qout_free(&c);
  resq_gptq_hessian_free(&h2);
  /* indefinite user Hessian */
  double Hi[16 * 16];
  memset(Hi, 0, sizeof Hi);
  for (int i = 0; i < 16; i++) Hi[i * 16 + i] = 1.0;
  Hi[5 * 16 + 4] = Hi[4 * 16 + 5] = 3.0;
  resq_gptq_hessian u = {16, 1, 0, Hi, NULL};
  p = resq_gptq_default(16);
  expect_fail(&p, &u, 8, W, "indefinite H", 0);
  /* NaN / Inf in W and in H's lower triangle */
  const int64_t K = 64, T = 200;
  float *x = falloc(T * K);
  correlated_tokens(&r, x, T, K);
  resq_gptq_hessian h = hessian_ref(x, T, K, 1);
  p = resq_gptq_default(K);
  float keep = W[3 * K + 9];
  W[3 * K + 9] = INFINITY;
  expect_fail(&p, &h, 8, W, "Inf in W", 0);
  W[3 * K + 9] = keep;
  double hk = h.H[10 * K + 2];
  h.H[10 * K + 2] = NAN;
  expect_fail(&p, &h, 8, W, "NaN in H", 0);
  h.H[10 * K + 2] = hk;
  /* shapes, parameters, workspace, no samples, all-zero diagonal */
  resq_gptq_params pk = resq_gptq_default(K + 8);
  expect_fail(&pk, &h, 8, W, "Hessian K != weight K", 0);
  resq_gptq_params pg = p;
  pg.group_size = 10;
  expect_fail(&pg, &h, 8, W, "group_size not dividing K - r", 0);
  resq_gptq_params pb = p;
  pb.blocksize = 0;
  expect_fail(&pb, &h, 8, W, "blocksize 0", 0);
  expect_fail(&p, &h, 8, W, "workspace one byte short", 1);
  int64_t ns = h.nsamples;
  h.nsamples = 0;
  expect_fail(&p, &h, 8, W, "no calibration sequences", 0);
  h.nsamples = ns;
  double *Hz = dalloc(K * K);
  resq_gptq_hessian hz = {K, 1, 0, Hz, NULL};
  expect_fail(&p, &hz, 8, W, "all-zero diagonal", 0);
  free(Hz);
  /* the H^-1 retry: rank-8 tokens of scale 100, percdamp 1e-14..1e-16 (see the
   * reference test): some runs need the retry, some fail after it; the CPU must
   * succeed or fail writing nothing, and take the retry path at least once */
  float *x8 = falloc(8 * K);
  gaussian(&r, x8, 8 * K, 100.0);
  resq_gptq_hessian h8 = hessian_ref(x8, 8, K, 1);
  int ok0 = 0, ok1 = 0, failed = 0, other = 0;
  for (int e = 140; e <= 160; e++) {
    p = resq_gptq_default(K);
    p.percdamp = pow(10.0, -e / 10.0);
    run(1, &p, &h8, 8, W, &c, 0);
    if (c.st == RESQ_OK && c.info.retried) {
      ok1++;
      check_layout(&p, &c, "retried");
    } else if (c.st == RESQ_OK) {
      ok0++;
    } else if (c.st == RESQ_ERR_DEGENERATE && untouched(&c)) {
      failed++;
    } else {
      other++;
    }
    qout_free(&c);
  }
  printf("  percdamp 1e-14..1e-16 on rank-8 data: %d ok, %d ok after the retry, %d failed (nothing written)\n", ok0,
         ok1, failed);
  RC_CHECK(other == 0 && ok1 + failed > 0, "%d runs neither succeeded nor failed cleanly; retry/failure paths ran %d times",
           other, ok1 + failed);
  resq_gptq_hessian_free(&h8), resq_gptq_hessian_free(&h);
  free(x), free(x8);
}

int main(int argc, char **argv) {
  rc_init("cpu_gptq_f64_test", argc, argv);
  case_vs_reference();
  case_diagonal_dead();
  case_hessian();
  case_failures();
  return rc_finish();
}
