/* SPDX-License-Identifier: Apache-2.0
 * The synthetic LLM-like decoder layer (resq/layer_synth.h, ref/CONTRACT.md
 * section 14). The model of the residual stream is in the header; this file
 * fixes the draw order:
 *
 *   seeds        st = seed; s_w = splitmix64(&st); s_a = splitmix64(&st)
 *   activation   resq_rng(s_a): outlier channels (partial Fisher-Yates over
 *   model        [0, d), then sorted), for each outlier in ascending channel
 *                order its magnitude lo*(hi/lo)^U and sign; then b[k][i]
 *                (row-major normals)
 *   weights      resq_rng(s_w): wq, wk, wv, wo, wg, wu, wd, each row-major,
 *                per entry one normal z then one uniform U (c = w_tail if
 *                U < 0.01), kept in fp32 as (float)(z c / norm / sqrt(K));
 *                then ln1[i], ln2[i] = exp(0.2 z) for i ascending (outlier
 *                channels: 0.02 + 0.08 U instead, still one draw)
 *   gains        the four pilot passes of the header (fp32 form, gammas in
 *                RMSNorm); gain = target / rms in double, where rms is the
 *                double root mean square of the pass's fp32 tap; the final
 *                weight is RNE_f16((float)((double)w32 * gain))
 *   sequence     resq_rng(splitmix64 chain of seed, stream, index); per token:
 *                tau (one normal), f_k for k < rank (Bailey's polar Student-t:
 *                one accepted uniform pair each), the noise normals e_ti for
 *                i < d, then one normal per outlier
 *
 * Arithmetic of a token (fp32 where not said otherwise): c_k =
 * (float)(f_k * sigma_k) with f_k scaled to unit variance in double;
 * base[i] = sum_{k ascending} c_k * b[k][i] (fp32 products and sums);
 * v[i] = tau * (base[i] + noise * e_ti); v[c_j] += mag_j * (1 + 0.1 e'_tj);
 * h = RNE_f16(v). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/layer_prepare.h"
#include "resq/layer_synth.h"
#include "resq/rng.h"

resq_layer_synth_params resq_layer_synth_default(void) {
  resq_layer_synth_params p;
  memset(&p, 0, sizeof p);
  p.rank = 0;
  p.decay = 0.6;
  p.tail_nu = 4.0;
  p.noise = 0.1;
  p.n_outliers = -1;
  p.outlier_lo = 50.0;
  p.outlier_hi = 1000.0;
  p.w_tail = 4.0;
  p.qk_scale = 1.5;
  p.out_gain = 0.5;
  return p;
}

static int finite_in(double v, double lo, double hi) { return isfinite(v) && v >= lo && v <= hi; }

resq_status resq_layer_synth_check(const resq_layer_synth_params *p) {
  if (!p) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: NULL parameters");
  if (p->rank < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: rank %lld < 0", (long long)p->rank);
  if (!finite_in(p->decay, 0.0, 10.0)) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: decay must be in [0, 10]");
  if (!(p->tail_nu > 2.0) || !finite_in(p->tail_nu, 2.0, 1e6))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: tail_nu must be in (2, 1e6] (finite variance)");
  if (!finite_in(p->noise, 0.0, 10.0)) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: noise must be in [0, 10]");
  if (p->n_outliers < -1) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: n_outliers < -1");
  /* f16 headroom: |v| <= mag * (1 + 0.1 |e'|) + the bulk; 8000 leaves a factor 8 to 65504 */
  if (!finite_in(p->outlier_lo, 1.0, 8000.0) || !finite_in(p->outlier_hi, p->outlier_lo, 8000.0))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: need 1 <= outlier_lo <= outlier_hi <= 8000");
  if (!finite_in(p->w_tail, 1.0, 100.0)) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: w_tail must be in [1, 100]");
  if (!(p->qk_scale > 0.0) || !finite_in(p->qk_scale, 0.0, 100.0))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: qk_scale must be in (0, 100]");
  if (!(p->out_gain > 0.0) || !finite_in(p->out_gain, 0.0, 100.0))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: out_gain must be in (0, 100]");
  return RESQ_OK;
}

void resq_layer_synth_free(resq_layer_synth *s) {
  if (!s) return;
  free(s->mem_);
  memset(s, 0, sizeof *s);
}

static size_t al32(size_t n) { return (n + 31) & ~(size_t)31; }

/* Student-t with nu degrees of freedom (Bailey 1994, polar): u, v uniform in
 * (-1, 1) with 0 < w = u^2 + v^2 < 1, t = u sqrt(nu (w^(-2/nu) - 1) / w). */
static double student_t(resq_rng *r, double nu) {
  double u, v, w;
  do {
    u = 2.0 * resq_rng_uniform_f64(r) - 1.0;
    v = 2.0 * resq_rng_uniform_f64(r) - 1.0;
    w = u * u + v * v;
  } while (w >= 1.0 || w == 0.0);
  return u * sqrt(nu * (pow(w, -2.0 / nu) - 1.0) / w);
}

static void fill_weight(resq_rng *r, int64_t N, int64_t K, double w_tail, float *w) {
  const double norm = 1.0 / sqrt(0.99 + 0.01 * w_tail * w_tail) / sqrt((double)K);
  for (int64_t i = 0; i < N * K; i++) {
    double z = resq_rng_normal(r);
    double c = resq_rng_uniform_f64(r) < 0.01 ? w_tail : 1.0;
    w[i] = (float)(z * c * norm);
  }
}

static double rms_f32(const float *x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
  return n > 0 ? sqrt(s / (double)n) : 0.0;
}

static double rms_diff(const float *a, const float *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double t = (double)a[i] - (double)b[i];
    s += t * t;
  }
  return n > 0 ? sqrt(s / (double)n) : 0.0;
}

static void scale_f32(float *w, int64_t n, double g) {
  for (int64_t i = 0; i < n; i++) w[i] = (float)((double)w[i] * g);
}

static resq_status gen_tokens(const resq_layer_synth *s, uint64_t stream, uint64_t index, int64_t T, float *v);

#define PILOT_T 32

/* The four pilot passes (header): calibrate the gains of the fp32 weights in place. */
static resq_status calibrate(resq_layer_synth *s, float *const wf[7], const int64_t nw[7]) {
  const resq_layer_config *c = &s->c;
  const int64_t T = PILOT_T, d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  size_t ws = resq_layer_f32_workspace_size(c, T);
  void *work = malloc(ws);
  float *x = (float *)malloc(sizeof(float) * (size_t)(T * d)), *y = (float *)malloc(sizeof(float) * (size_t)(T * d));
  float *hm = (float *)malloc(sizeof(float) * (size_t)(T * d)), *q = (float *)malloc(sizeof(float) * (size_t)(T * qd));
  float *k = (float *)malloc(sizeof(float) * (size_t)(T * kd)), *v = (float *)malloc(sizeof(float) * (size_t)(T * kd));
  float *g = (float *)malloc(sizeof(float) * (size_t)(T * I)), *u = (float *)malloc(sizeof(float) * (size_t)(T * I));
  resq_status st = RESQ_OK;
  if (!work || !x || !y || !hm || !q || !k || !v || !g || !u) {
    st = resq_fail(RESQ_ERR_NOMEM, "layer synth: out of memory for the pilot pass");
    goto done;
  }
  if ((st = gen_tokens(s, RESQ_SYNTH_STREAM_PILOT, 0, T, x))) goto done;
  s->rms_h = rms_f32(x, T * d);
  const resq_layer_f32 w = {wf[0], wf[1], wf[2], wf[3], wf[4], wf[5], wf[6], s->w.ln1, s->w.ln2, 0};
  resq_layer_taps tp = {0};
  tp.q = q, tp.k = k, tp.v = v, tp.h_mid = hm, tp.g = g, tp.u = u;
  double gain[7];
  for (int pass = 0; pass < 4 && !st; pass++) {
    st = resq_layer_f32_forward__ref(c, &w, T, x, y, &tp, work, ws);
    if (st) break;
    double r[3] = {0, 0, 0}, tgt[3] = {0, 0, 0};
    int first = 0, cnt = 0;
    if (pass == 0) { /* RoPE preserves each pair's norm: rms(q) is the projection's */
      first = 0, cnt = 3;
      r[0] = rms_f32(q, T * qd), r[1] = rms_f32(k, T * kd), r[2] = rms_f32(v, T * kd);
      tgt[0] = tgt[1] = s->p.qk_scale, tgt[2] = 1.0;
    } else if (pass == 1) {
      first = 3, cnt = 1;
      r[0] = rms_diff(hm, x, T * d), tgt[0] = s->p.out_gain * rms_f32(x, T * d);
    } else if (pass == 2) {
      first = 4, cnt = 2;
      r[0] = rms_f32(g, T * I), r[1] = rms_f32(u, T * I), tgt[0] = tgt[1] = 1.0;
    } else {
      first = 6, cnt = 1;
      r[0] = rms_diff(y, hm, T * d), tgt[0] = s->p.out_gain * rms_f32(hm, T * d);
    }
    for (int i = 0; i < cnt; i++) {
      if (!(r[i] > 0.0) || !isfinite(r[i])) {
        st = resq_fail(RESQ_ERR_DEGENERATE, "layer synth: pilot pass %d gives a zero or non-finite projection", pass);
        break;
      }
      gain[first + i] = tgt[i] / r[i];
      scale_f32(wf[first + i], nw[first + i], gain[first + i]);
    }
  }
  if (!st) memcpy(s->gain, gain, sizeof gain);
done:
  free(work), free(x), free(y), free(hm), free(q), free(k), free(v), free(g), free(u);
  return st;
}

resq_status resq_layer_synth_init(resq_layer_synth *s, const resq_layer_config *c, const resq_layer_synth_params *p,
                                  uint64_t seed) {
  if (!s) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: NULL output");
  memset(s, 0, sizeof *s);
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  resq_layer_synth_params q = p ? *p : resq_layer_synth_default();
  if ((st = resq_layer_synth_check(&q))) return st;
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  if (q.rank == 0) q.rank = d / 4 > 0 ? d / 4 : 1;
  if (q.rank > d) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: rank %lld > d = %lld", (long long)q.rank, (long long)d);
  if (q.n_outliers < 0) q.n_outliers = d / 512 > 2 ? d / 512 : 2;
  if (q.n_outliers > d)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: %lld outliers > d = %lld", (long long)q.n_outliers, (long long)d);
  const int64_t nw[7] = {qd * d, kd * d, kd * d, d * qd, I * d, I * d, d * I};
  const int64_t nwall = nw[0] + nw[1] + nw[2] + nw[3] + nw[4] + nw[5] + nw[6];
  size_t bytes = al32((size_t)nwall * 2) + 2 * al32((size_t)d * 4) + al32((size_t)(q.rank * d) * 4) +
                 al32((size_t)q.rank * 4) + al32((size_t)(q.n_outliers + 1) * 8) + al32((size_t)(q.n_outliers + 1) * 4) +
                 al32((size_t)d * 8);
  char *m = (char *)malloc(bytes);
  float *w32 = (float *)malloc(sizeof(float) * (size_t)nwall);
  if (!m || !w32) {
    free(m), free(w32);
    return resq_fail(RESQ_ERR_NOMEM, "layer synth: cannot allocate %zu + %zu bytes", bytes, sizeof(float) * (size_t)nwall);
  }
  size_t off = 0;
#define TAKE(type, n) ((type *)(m + (off += al32((size_t)(n) * sizeof(type))) - al32((size_t)(n) * sizeof(type))))
  uint16_t *wall = TAKE(uint16_t, nwall);
  float *ln1 = TAKE(float, d), *ln2 = TAKE(float, d), *b = TAKE(float, q.rank * d), *sigma = TAKE(float, q.rank);
  int64_t *oidx = TAKE(int64_t, q.n_outliers + 1);
  float *omag = TAKE(float, q.n_outliers + 1);
  int64_t *perm = TAKE(int64_t, d);
#undef TAKE
  uint64_t sm = seed;
  const uint64_t s_w = resq_splitmix64(&sm), s_a = resq_splitmix64(&sm);

  /* activation model */
  resq_rng ra;
  resq_rng_init(&ra, s_a);
  for (int64_t i = 0; i < d; i++) perm[i] = i;
  for (int64_t j = 0; j < q.n_outliers; j++) {
    int64_t k = j + (int64_t)resq_rng_below(&ra, (uint64_t)(d - j));
    int64_t t = perm[j];
    perm[j] = perm[k], perm[k] = t;
  }
  for (int64_t j = 0; j < q.n_outliers; j++) oidx[j] = perm[j];
  for (int64_t j = 1; j < q.n_outliers; j++) /* insertion sort: n_outliers is small */
    for (int64_t k = j; k > 0 && oidx[k - 1] > oidx[k]; k--) {
      int64_t t = oidx[k];
      oidx[k] = oidx[k - 1], oidx[k - 1] = t;
    }
  for (int64_t j = 0; j < q.n_outliers; j++) {
    double mag = q.outlier_lo * pow(q.outlier_hi / q.outlier_lo, resq_rng_uniform_f64(&ra));
    omag[j] = (float)((resq_rng_u64(&ra) >> 63) ? -mag : mag);
  }
  for (int64_t i = 0; i < q.rank * d; i++) b[i] = (float)resq_rng_normal(&ra);
  double nb = 0.0;
  for (int64_t k = 0; k < q.rank; k++) nb += pow(1.0 + (double)k, -2.0 * q.decay);
  nb = sqrt(nb);
  for (int64_t k = 0; k < q.rank; k++) sigma[k] = (float)(pow(1.0 + (double)k, -q.decay) / nb);

  /* unit-gain fp32 weights and the gammas */
  resq_rng rw;
  resq_rng_init(&rw, s_w);
  float *wf[7];
  wf[0] = w32;
  for (int i = 1; i < 7; i++) wf[i] = wf[i - 1] + nw[i - 1];
  const int64_t nrow[7] = {qd, kd, kd, d, I, I, d}, ncol[7] = {d, d, d, qd, d, d, I};
  for (int i = 0; i < 7; i++) fill_weight(&rw, nrow[i], ncol[i], q.w_tail, wf[i]);
  for (int pass = 0; pass < 2; pass++) {
    float *ln = pass ? ln2 : ln1;
    int64_t j = 0;
    for (int64_t i = 0; i < d; i++) {
      int is_out = j < q.n_outliers && oidx[j] == i;
      if (is_out) {
        ln[i] = (float)(0.02 + 0.08 * resq_rng_uniform_f64(&rw));
        j++;
      } else {
        ln[i] = (float)exp(0.2 * resq_rng_normal(&rw));
      }
    }
  }
  s->c = *c;
  s->p = q;
  s->seed = seed;
  s->w.ln1 = ln1, s->w.ln2 = ln2;
  s->b = b;
  s->sigma = sigma;
  s->out_idx = oidx;
  s->out_mag = omag;
  s->mem_ = m;
  if ((st = calibrate(s, wf, nw))) {
    free(m), free(w32);
    memset(s, 0, sizeof *s);
    return st;
  }
  uint16_t *wh[7];
  wh[0] = wall;
  for (int i = 1; i < 7; i++) wh[i] = wh[i - 1] + nw[i - 1];
  for (int64_t i = 0; i < nwall; i++) wall[i] = resq_f32_to_f16(w32[i]);
  free(w32);
  s->w.wq = wh[0], s->w.wk = wh[1], s->w.wv = wh[2], s->w.wo = wh[3], s->w.wg = wh[4], s->w.wu = wh[5], s->w.wd = wh[6];
  for (int64_t i = 0; i < nwall; i++)
    if ((wall[i] & 0x7c00u) == 0x7c00u) {
      resq_layer_synth_free(s);
      return resq_fail(RESQ_ERR_NONFINITE, "layer synth: a calibrated weight overflows f16");
    }
  return RESQ_OK;
}

/* T tokens of (stream, index) in fp32 (the header's arithmetic), before the f16 rounding. */
static resq_status gen_tokens(const resq_layer_synth *s, uint64_t stream, uint64_t index, int64_t T, float *v) {
  const int64_t d = s->c.d, R = s->p.rank, no = s->p.n_outliers;
  float *coef = (float *)malloc(sizeof(float) * (size_t)R);
  if (!coef) return resq_fail(RESQ_ERR_NOMEM, "layer synth: out of memory");
  uint64_t sm = s->seed;
  uint64_t a = resq_splitmix64(&sm);
  sm = a ^ stream;
  uint64_t b2 = resq_splitmix64(&sm);
  sm = b2 ^ index;
  resq_rng r;
  resq_rng_init(&r, resq_splitmix64(&sm));
  const double tscale = sqrt((s->p.tail_nu - 2.0) / s->p.tail_nu);
  const float noise = (float)s->p.noise;
  for (int64_t t = 0; t < T; t++) {
    float *vt = v + t * d;
    const float tau = (float)exp(0.3 * resq_rng_normal(&r));
    for (int64_t k = 0; k < R; k++) coef[k] = (float)(student_t(&r, s->p.tail_nu) * tscale * (double)s->sigma[k]);
    for (int64_t i = 0; i < d; i++) vt[i] = 0.0f;
    for (int64_t k = 0; k < R; k++) {
      const float ck = coef[k], *bk = s->b + k * d;
      for (int64_t i = 0; i < d; i++) vt[i] = vt[i] + ck * bk[i];
    }
    for (int64_t i = 0; i < d; i++) vt[i] = tau * (vt[i] + noise * (float)resq_rng_normal(&r));
    for (int64_t j = 0; j < no; j++) vt[s->out_idx[j]] += s->out_mag[j] * (1.0f + 0.1f * (float)resq_rng_normal(&r));
  }
  free(coef);
  for (int64_t i = 0; i < T * d; i++)
    if (!(fabsf(resq_round_f16(v[i])) <= 65504.0f))
      return resq_fail(RESQ_ERR_NONFINITE, "layer synth: token %lld channel %lld overflows f16", (long long)(i / d),
                       (long long)(i % d));
  return RESQ_OK;
}

resq_status resq_layer_synth_sequence(const resq_layer_synth *s, uint64_t stream, uint64_t index, int64_t T,
                                      uint16_t *h, int64_t ldh) {
  if (!s || !s->mem_ || !s->w.wq) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: not initialized");
  const int64_t d = s->c.d;
  if (T < 0 || (T > 0 && !h) || ldh < d) return resq_fail(RESQ_ERR_INVALID_ARG, "layer synth: bad sequence arguments");
  float *v = (float *)malloc(sizeof(float) * (size_t)(T > 0 ? T : 1) * (size_t)d);
  if (!v) return resq_fail(RESQ_ERR_NOMEM, "layer synth: out of memory for %lld tokens", (long long)T);
  resq_status st = gen_tokens(s, stream, index, T, v);
  if (!st)
    for (int64_t t = 0; t < T; t++)
      for (int64_t i = 0; i < d; i++) h[t * ldh + i] = resq_f32_to_f16(v[t * d + i]);
  free(v);
  return st;
}
