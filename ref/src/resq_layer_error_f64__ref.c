/* SPDX-License-Identifier: Apache-2.0
 * The basis maps of a prepared layer and the layer error of
 * ref/CONTRACT.md section 14:
 *   to_basis    h'[j] = RNE_f16((float) sum_{i ascending} h[i] U[i][j])   (double sum)
 *   from_basis  h[i]  = sum_{j ascending} h'[j] U[i][j]                    (double)
 *   err = ||from_basis(method(to_basis(h_in))) - fp16(h_in)||_F / ||fp16(h_in) - h_in||_F
 * RTN has U = identity: the maps copy (to_basis) or widen (from_basis). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/layer_prepare.h"

static resq_status check_prepared(const char *what, const resq_layer_prepared *P, int64_t T, const void *a,
                                  const void *b) {
  if (!P || resq_layer_config_check(&P->c)) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: not a prepared layer", what);
  if (T < 0 || (T > 0 && (!a || !b))) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: bad arguments", what);
  return RESQ_OK;
}

/* acc[j] = sum_{i ascending} x[i] U[i][j] for one row, in double */
static void row_times_U(int64_t d, const double *x, const double *U, double *acc) {
  for (int64_t j = 0; j < d; j++) acc[j] = 0.0;
  for (int64_t i = 0; i < d; i++) {
    const double xi = x[i], *ui = U + i * d;
    for (int64_t j = 0; j < d; j++) acc[j] += xi * ui[j];
  }
}

/* acc[i] = sum_{j ascending} x[j] U[i][j] for one row, in double */
static void row_times_Ut(int64_t d, const double *x, const double *U, double *acc) {
  for (int64_t i = 0; i < d; i++) {
    const double *ui = U + i * d;
    double s = 0.0;
    for (int64_t j = 0; j < d; j++) s += x[j] * ui[j];
    acc[i] = s;
  }
}

resq_status resq_layer_to_basis__ref(const resq_layer_prepared *P, int64_t T, const uint16_t *h, uint16_t *h_rot) {
  resq_status st = check_prepared("layer to_basis", P, T, h, h_rot);
  if (st) return st;
  const int64_t d = P->c.d;
  for (int64_t i = 0; i < T * d; i++)
    if ((h[i] & 0x7c00u) == 0x7c00u) return resq_fail(RESQ_ERR_NONFINITE, "layer to_basis: h[%lld] is NaN or Inf", (long long)i);
  if (!P->U) {
    memmove(h_rot, h, sizeof(uint16_t) * (size_t)(T * d));
    return RESQ_OK;
  }
  float *y = (float *)malloc(sizeof(float) * (size_t)(T > 0 ? T * d : 1));
  double *x = (double *)malloc(sizeof(double) * (size_t)d), *acc = (double *)malloc(sizeof(double) * (size_t)d);
  if (!y || !x || !acc) {
    free(y), free(x), free(acc);
    return resq_fail(RESQ_ERR_NOMEM, "layer to_basis: out of memory");
  }
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < d; i++) x[i] = resq_f16_to_f32(h[t * d + i]);
    row_times_U(d, x, P->U, acc);
    for (int64_t j = 0; j < d; j++) y[t * d + j] = (float)acc[j];
  }
  free(x), free(acc);
  for (int64_t i = 0; i < T * d; i++)
    if (!(fabsf(resq_round_f16(y[i])) <= 65504.0f)) {
      free(y);
      return resq_fail(RESQ_ERR_NONFINITE, "layer to_basis: row %lld channel %lld overflows f16", (long long)(i / d),
                       (long long)(i % d));
    }
  resq_f32_to_f16_n(y, h_rot, (size_t)(T * d));
  free(y);
  return RESQ_OK;
}

resq_status resq_layer_to_basis_f32__ref(const resq_layer_prepared *P, int64_t T, const float *h, float *h_rot) {
  resq_status st = check_prepared("layer to_basis", P, T, h, h_rot);
  if (st) return st;
  const int64_t d = P->c.d;
  for (int64_t i = 0; i < T * d; i++)
    if (!isfinite(h[i])) return resq_fail(RESQ_ERR_NONFINITE, "layer to_basis: h[%lld] is NaN or Inf", (long long)i);
  if (!P->U) {
    memmove(h_rot, h, sizeof(float) * (size_t)(T * d));
    return RESQ_OK;
  }
  double *x = (double *)malloc(sizeof(double) * (size_t)d), *acc = (double *)malloc(sizeof(double) * (size_t)d);
  if (!x || !acc) {
    free(x), free(acc);
    return resq_fail(RESQ_ERR_NOMEM, "layer to_basis: out of memory");
  }
  /* row by row: a row is read completely before it is written, so h == h_rot works */
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < d; i++) x[i] = h[t * d + i];
    row_times_U(d, x, P->U, acc);
    for (int64_t j = 0; j < d; j++) h_rot[t * d + j] = (float)acc[j];
  }
  free(x), free(acc);
  return RESQ_OK;
}

static resq_status from_basis(const resq_layer_prepared *P, int64_t T, const uint16_t *h16, const float *h32,
                              double *out) {
  const int64_t d = P->c.d;
  double *x = (double *)malloc(sizeof(double) * (size_t)d);
  if (!x) return resq_fail(RESQ_ERR_NOMEM, "layer from_basis: out of memory");
  for (int64_t t = 0; t < T; t++) {
    for (int64_t j = 0; j < d; j++) x[j] = h16 ? (double)resq_f16_to_f32(h16[t * d + j]) : (double)h32[t * d + j];
    if (!P->U) {
      memcpy(out + t * d, x, sizeof(double) * (size_t)d);
    } else {
      row_times_Ut(d, x, P->U, out + t * d);
    }
  }
  free(x);
  return RESQ_OK;
}

resq_status resq_layer_from_basis__ref(const resq_layer_prepared *P, int64_t T, const uint16_t *h_rot, double *h) {
  resq_status st = check_prepared("layer from_basis", P, T, h_rot, h);
  return st ? st : from_basis(P, T, h_rot, NULL, h);
}

resq_status resq_layer_from_basis_f32__ref(const resq_layer_prepared *P, int64_t T, const float *h_rot, double *h) {
  resq_status st = check_prepared("layer from_basis", P, T, h_rot, h);
  return st ? st : from_basis(P, T, NULL, h_rot, h);
}

/* ||ym - y16||_F / ||y16 - h_in||_F */
static resq_status rel_update_error(int64_t n, const double *ym, const uint16_t *y16, const uint16_t *h_in,
                                    double *err) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double r = (double)resq_f16_to_f32(y16[i]);
    double a = ym[i] - r, b = r - (double)resq_f16_to_f32(h_in[i]);
    num += a * a, den += b * b;
  }
  if (!(den > 0.0)) return resq_fail(RESQ_ERR_DEGENERATE, "layer error: the FP16 layer's update is zero");
  *err = sqrt(num / den);
  return RESQ_OK;
}

resq_status resq_layer_error_f64__ref(const resq_layer_fp16 *w, const resq_layer_prepared *P, int64_t T,
                                      const uint16_t *h_in, double *err, double *h_out_method, uint16_t *h_out_fp16) {
  resq_status st = check_prepared("layer error", P, T, h_in, err);
  if (st) return st;
  if (!w || T < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "layer error: NULL weights or T < 1");
  const resq_layer_config *c = &P->c;
  const int64_t d = c->d, n = T * d;
  size_t w16 = resq_layer_fp16_workspace_size(c, T), wq = resq_layer_q4q8_workspace_size(c, T);
  void *work = malloc(w16 > wq ? w16 : wq);
  uint16_t *y16 = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n), *hr = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
  uint16_t *yr = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
  double *ym = (double *)malloc(sizeof(double) * (size_t)n);
  if (!work || !y16 || !hr || !yr || !ym) {
    st = resq_fail(RESQ_ERR_NOMEM, "layer error: out of memory for T=%lld", (long long)T);
    goto done;
  }
  if ((st = resq_layer_fp16_forward__ref(c, w, T, h_in, y16, work, w16 > wq ? w16 : wq))) goto done;
  if ((st = resq_layer_to_basis__ref(P, T, h_in, hr))) goto done;
  if ((st = resq_layer_q4q8_forward__ref(c, &P->L, T, hr, yr, work, w16 > wq ? w16 : wq))) goto done;
  if ((st = from_basis(P, T, yr, NULL, ym))) goto done;
  double e = 0.0;
  if ((st = rel_update_error(n, ym, y16, h_in, &e))) goto done;
  *err = e;
  if (h_out_method) memcpy(h_out_method, ym, sizeof(double) * (size_t)n);
  if (h_out_fp16) memcpy(h_out_fp16, y16, sizeof(uint16_t) * (size_t)n);
done:
  free(work), free(y16), free(hr), free(yr), free(ym);
  return st;
}

resq_status resq_layer_error_f32_form_f64__ref(const resq_layer_config *c, const resq_layer_fp16 *w,
                                               const resq_layer_f32 *w32, int64_t T, const uint16_t *h_in,
                                               double *err) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (!w || !w32 || !h_in || !err || T < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "layer error: bad arguments");
  const int64_t n = T * c->d;
  size_t w16 = resq_layer_fp16_workspace_size(c, T), w32s = resq_layer_f32_workspace_size(c, T);
  void *work = malloc(w16 > w32s ? w16 : w32s);
  uint16_t *y16 = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
  float *x = (float *)malloc(sizeof(float) * (size_t)n);
  double *ym = (double *)malloc(sizeof(double) * (size_t)n);
  if (!work || !y16 || !x || !ym) {
    st = resq_fail(RESQ_ERR_NOMEM, "layer error: out of memory for T=%lld", (long long)T);
    goto done;
  }
  if ((st = resq_layer_fp16_forward__ref(c, w, T, h_in, y16, work, w16 > w32s ? w16 : w32s))) goto done;
  resq_f16_to_f32_n(h_in, x, (size_t)n);
  if ((st = resq_layer_f32_forward__ref(c, w32, T, x, x, NULL, work, w16 > w32s ? w16 : w32s))) goto done;
  for (int64_t i = 0; i < n; i++) ym[i] = x[i];
  double e = 0.0;
  if ((st = rel_update_error(n, ym, y16, h_in, &e))) goto done;
  *err = e;
done:
  free(work), free(y16), free(x), free(ym);
  return st;
}
