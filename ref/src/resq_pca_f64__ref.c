/* SPDX-License-Identifier: Apache-2.0
 * Reference PCA basis (ref/CONTRACT.md section 13): the streaming uncentered
 * second moment, the damped covariance and its eigendecomposition.
 *
 *   S[i][j] += x_t[i] * x_t[j]     j >= i, token by token in token order; the
 *                                  product of two fp32 values is exact in double,
 *                                  so only the additions round, and any split
 *                                  into batches gives the same bits
 *   C[i][j]  = S[i][j] / T         IEEE double divide, mirrored to j < i
 *   mean     = (sum_{i ascending} C[i][i]) / d
 *   shift    = damp * mean;  C[i][i] = C[i][i] + shift
 *   (eigvals, U) = eigh(C)         resq_eigh_f64__ref: ascending, columns
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/pca.h"

/* tokens widened per block: S's row i stays hot in cache while the block is added */
#define PCA_BLOCK 32

resq_status resq_pca_accum_init(resq_pca_accum *a, int64_t d) {
  if (!a) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: NULL accumulator");
  memset(a, 0, sizeof *a);
  if (d < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: d=%lld must be >= 1", (long long)d);
  if (d > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "pca: d=%lld exceeds the maximum %lld (a d x d double matrix)",
                     (long long)d, (long long)RESQ_PCA_MAX_D);
  double *S = (double *)calloc((size_t)d * (size_t)d, sizeof(double));
  double *buf = (double *)malloc((size_t)d * PCA_BLOCK * sizeof(double));
  if (!S || !buf) {
    free(S);
    free(buf);
    return resq_fail(RESQ_ERR_NOMEM, "pca: cannot allocate the %lld x %lld accumulator", (long long)d, (long long)d);
  }
  a->d = d;
  a->count = 0;
  a->S = S;
  a->buf = buf;
  return RESQ_OK;
}

void resq_pca_accum_free(resq_pca_accum *a) {
  if (!a) return;
  free(a->S);
  free(a->buf);
  memset(a, 0, sizeof *a);
}

void resq_pca_accum_reset(resq_pca_accum *a) {
  if (!a || !a->S) return;
  memset(a->S, 0, (size_t)a->d * (size_t)a->d * sizeof(double));
  a->count = 0;
}

static resq_status check_accum(const resq_pca_accum *a) {
  if (!a || !a->S || !a->buf || a->d < 1 || a->d > RESQ_PCA_MAX_D || a->count < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: accumulator not initialized (resq_pca_accum_init)");
  return RESQ_OK;
}

/* Rows are read through one of two element types. */
typedef struct {
  const float *f32;
  const uint16_t *f16;
  int64_t ld;
} src_rows;

static double load(const src_rows *s, int64_t t, int64_t i) {
  return s->f32 ? (double)s->f32[t * s->ld + i] : (double)resq_f16_to_f32(s->f16[t * s->ld + i]);
}

static int finite_at(const src_rows *s, int64_t t, int64_t i) {
  if (s->f32) return isfinite(s->f32[t * s->ld + i]);
  return (s->f16[t * s->ld + i] & 0x7c00u) != 0x7c00u;
}

static resq_status accumulate(resq_pca_accum *a, int64_t T, const src_rows *src) {
  resq_status st = check_accum(a);
  if (st) return st;
  const int64_t d = a->d;
  if (T < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: T=%lld < 0", (long long)T);
  if (T == 0) return RESQ_OK;
  if (!src->f32 && !src->f16) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: NULL input");
  if (T > 1 && src->ld < d)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: ldx=%lld < d=%lld", (long long)src->ld, (long long)d);
  if (a->count > INT64_MAX - T) return resq_fail(RESQ_ERR_TOO_LARGE, "pca: token count overflows int64");
  /* the whole batch is validated before anything is added */
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < d; i++)
      if (!finite_at(src, t, i))
        return resq_fail(RESQ_ERR_NONFINITE, "pca: x[%lld][%lld] is NaN or Inf (nothing of this batch was added)",
                         (long long)t, (long long)i);
  for (int64_t t0 = 0; t0 < T; t0 += PCA_BLOCK) {
    int64_t nb = T - t0 < PCA_BLOCK ? T - t0 : PCA_BLOCK;
    for (int64_t tt = 0; tt < nb; tt++)
      for (int64_t i = 0; i < d; i++) a->buf[tt * d + i] = load(src, t0 + tt, i);
    for (int64_t i = 0; i < d; i++) {
      double *Si = a->S + i * d;
      /* tokens of the block in order: each S[i][j] still sees its terms in token
       * order, one rounded addition per token; four tokens per pass over the row
       * only save loads and stores of S (the additions stay sequential) */
      int64_t tt = 0;
      for (; tt + 4 <= nb; tt += 4) {
        const double *x0 = a->buf + tt * d, *x1 = x0 + d, *x2 = x1 + d, *x3 = x2 + d;
        const double a0 = x0[i], a1 = x1[i], a2 = x2[i], a3 = x3[i];
        for (int64_t j = i; j < d; j++) {
          double s = Si[j];
          s = s + a0 * x0[j];
          s = s + a1 * x1[j];
          s = s + a2 * x2[j];
          s = s + a3 * x3[j];
          Si[j] = s;
        }
      }
      for (; tt < nb; tt++) {
        const double *xr = a->buf + tt * d;
        const double xi = xr[i];
        for (int64_t j = i; j < d; j++) Si[j] += xi * xr[j];
      }
    }
  }
  a->count += T;
  return RESQ_OK;
}

resq_status resq_pca_accum_f32__ref(resq_pca_accum *a, int64_t T, const float *x, int64_t ldx) {
  src_rows s = {x, NULL, ldx};
  return accumulate(a, T, &s);
}

resq_status resq_pca_accum_f16__ref(resq_pca_accum *a, int64_t T, const uint16_t *x, int64_t ldx) {
  src_rows s = {NULL, x, ldx};
  return accumulate(a, T, &s);
}

resq_status resq_pca_covariance_f64__ref(const resq_pca_accum *a, double damp, double *C, int64_t ldc,
                                         double *shift) {
  resq_status st = check_accum(a);
  if (st) return st;
  const int64_t d = a->d;
  if (!C) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: NULL output");
  if (ldc < d) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: ldc=%lld < d=%lld", (long long)ldc, (long long)d);
  if (!(damp >= 0.0) || !isfinite(damp))
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: damp=%g must be finite and >= 0", damp);
  if (a->count == 0) return resq_fail(RESQ_ERR_DEGENERATE, "pca: no calibration tokens (count is 0)");
  const double T = (double)a->count;
  double tr = 0.0;
  for (int64_t i = 0; i < d; i++) tr += a->S[i * d + i] / T;
  if (!(tr > 0.0))
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "pca: the calibration data is all zero (%lld tokens, trace of the second moment 0): no basis",
                     (long long)a->count);
  const double mean = tr / (double)d;
  const double sh = damp * mean;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i; j < d; j++) {
      double c = a->S[i * d + j] / T;
      C[i * ldc + j] = c;
      C[j * ldc + i] = c;
    }
  for (int64_t i = 0; i < d; i++) C[i * ldc + i] = C[i * ldc + i] + sh;
  if (shift) *shift = sh;
  return RESQ_OK;
}

size_t resq_pca_basis_workspace_size(int64_t d) {
  if (d < 1 || d > RESQ_PCA_MAX_D) return 0;
  /* C and the eigenvalues, then the eigensolver's own workspace */
  return ((size_t)d * (size_t)d + (size_t)d) * sizeof(double) + resq_eigh_workspace_size(d);
}

resq_status resq_pca_basis_f64__ref(const resq_pca_accum *a, double damp, double *eigvals, double *U, int64_t ldu,
                                    void *work, size_t work_size) {
  resq_status st = check_accum(a);
  if (st) return st;
  const int64_t d = a->d;
  if (!eigvals || !U) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: NULL output");
  if (ldu < d) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: ldu=%lld < d=%lld", (long long)ldu, (long long)d);
  size_t need = resq_pca_basis_workspace_size(d);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: workspace of %zu bytes given, %zu needed", work_size, need);
  /* C goes to the workspace so that a failure (degenerate data, no
   * convergence) leaves eigvals and U untouched */
  double *C = (double *)work;
  double *w = C + (size_t)d * (size_t)d;
  size_t head = ((size_t)d * (size_t)d + (size_t)d) * sizeof(double);
  st = resq_pca_covariance_f64__ref(a, damp, C, d, NULL);
  if (!st) st = resq_eigh_f64__ref(d, C, d, w, (char *)work + head, work_size - head);
  if (st) return st;
  memcpy(eigvals, w, (size_t)d * sizeof(double));
  for (int64_t i = 0; i < d; i++) memcpy(U + i * ldu, C + i * d, (size_t)d * sizeof(double));
  return RESQ_OK;
}
