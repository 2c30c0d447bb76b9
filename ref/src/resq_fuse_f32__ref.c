/* SPDX-License-Identifier: Apache-2.0
 * Reference offline fusion of the PCA rotations into fp32 weights
 * (ref/CONTRACT.md section 13, upstream fuse_basis_shared):
 *
 *   input side   W [rows][n]  -> W U      Wout[a][j] = fp32(sum_k W[a][k] U[k][j])
 *   output side  W [n][cols]  -> U^T W    Wout[i][b] = fp32(sum_k U[k][i] W[k][b])
 *   v_proj       rows of KV head g        output side with Uv[g]
 *   o_proj       columns of query head h  input side with Uv[h / (H/G)]
 *   down_proj    output side with U, then the section-2 Hadamard on the input side
 *
 * Every sum is over k ascending in double (the products of an fp32 and a double
 * round), the result rounded once to fp32. In place (Wout == W, same ld) is
 * allowed: a vector is finished in the workspace before it is written.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "resq/hadamard.h"
#include "resq/pca.h"

size_t resq_fuse_workspace_size(int64_t n) {
  if (n < 1 || n > RESQ_PCA_MAX_D) return 0;
  return 2 * (size_t)n * sizeof(double);
}

static resq_status check_mat_f32(const char *what, const char *name, const float *W, int64_t rows, int64_t cols,
                                 int64_t ld) {
  if (rows > 0 && cols > 0 && !W) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL %s", what, name);
  if (rows > 1 && ld < cols)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: leading dimension of %s %lld < %lld columns", what, name,
                     (long long)ld, (long long)cols);
  return RESQ_OK;
}

/* Largest |U| entry over nbases bases (checks finiteness too). */
static resq_status basis_max(const char *what, int64_t n, const double *U, int64_t ldu, int64_t nbases,
                             double *umax) {
  double m = 0.0;
  for (int64_t b = 0; b < nbases; b++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) {
        double v = U[b * n * ldu + i * ldu + j];
        if (!isfinite(v))
          return resq_fail(RESQ_ERR_NONFINITE, "%s: basis %lld entry [%lld][%lld] is NaN or Inf", what, (long long)b,
                           (long long)i, (long long)j);
        if (fabs(v) > m) m = fabs(v);
      }
  *umax = m;
  return RESQ_OK;
}

/* Finiteness of W and the largest 1-norm of its vectors of length `vlen`
 * (vectors are rows of length `vlen` when by_rows, else columns) for the
 * fp32 overflow bound: every fused entry is at most umax * that 1-norm. */
static resq_status weight_scan(const char *what, const float *W, int64_t rows, int64_t cols, int64_t ldw, int by_rows,
                               int64_t vlen, double *l1max) {
  double m = 0.0;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++)
      if (!isfinite(W[i * ldw + j]))
        return resq_fail(RESQ_ERR_NONFINITE, "%s: W[%lld][%lld] is NaN or Inf", what, (long long)i, (long long)j);
  if (by_rows) {
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j0 = 0; j0 < cols; j0 += vlen) {
        double s = 0.0;
        for (int64_t j = j0; j < j0 + vlen && j < cols; j++) s += fabs((double)W[i * ldw + j]);
        if (s > m) m = s;
      }
  } else {
    for (int64_t j = 0; j < cols; j++)
      for (int64_t i0 = 0; i0 < rows; i0 += vlen) {
        double s = 0.0;
        for (int64_t i = i0; i < i0 + vlen && i < rows; i++) s += fabs((double)W[i * ldw + j]);
        if (s > m) m = s;
      }
  }
  *l1max = m;
  return RESQ_OK;
}

/* Fused entries are bounded by `bound`; refuse (before writing) when that
 * could reach fp32's overflow threshold. Never happens for real weights. */
static resq_status check_overflow(const char *what, double bound) {
  if (bound >= 0x1p126)
    return resq_fail(RESQ_ERR_NONFINITE,
                     "%s: |W| * |U| up to %g: the fused fp32 weight could overflow (bound 2^126); nothing written",
                     what, bound);
  return RESQ_OK;
}

static resq_status check_common(const char *what, int64_t n, int64_t other, const float *W, int64_t ldw,
                                const float *Wout, int64_t ldo, int64_t wrows, int64_t wcols, const double *U,
                                int64_t ldu, int64_t nbases, int by_rows, void *work, size_t work_size,
                                double *bound) {
  if (n < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: n=%lld must be >= 1", what, (long long)n);
  if (n > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "%s: n=%lld exceeds the maximum %lld", what, (long long)n,
                     (long long)RESQ_PCA_MAX_D);
  if (other < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: %lld rows/columns < 0", what, (long long)other);
  resq_status st = check_mat_f32(what, "W", W, wrows, wcols, ldw);
  if (!st) st = check_mat_f32(what, "Wout", Wout, wrows, wcols, ldo);
  if (st) return st;
  if (Wout == W && ldo != ldw && wrows > 1)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: in place needs the same leading dimension", what);
  if (!U) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL basis", what);
  if (ldu < n) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldu=%lld < n=%lld", what, (long long)ldu, (long long)n);
  size_t need = resq_fuse_workspace_size(n);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: workspace of %zu bytes given, %zu needed", what, work_size, need);
  double umax = 0.0, l1 = 0.0;
  st = basis_max(what, n, U, ldu, nbases, &umax);
  if (!st) st = weight_scan(what, W, wrows, wcols, ldw, by_rows, n, &l1);
  if (st) return st;
  *bound = umax * l1;
  return check_overflow(what, *bound);
}

/* Input side on `rows` row vectors of length n: out = fp32(w U). Unchecked. */
static void input_side(int64_t rows, int64_t n, const float *W, int64_t ldw, const double *U, int64_t ldu,
                       float *Wout, int64_t ldo, double *acc) {
  for (int64_t a = 0; a < rows; a++) {
    const float *w = W + a * ldw;
    for (int64_t j = 0; j < n; j++) acc[j] = 0.0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) { /* four k per pass; the additions stay in k order */
      const double w0 = (double)w[k], w1 = (double)w[k + 1], w2 = (double)w[k + 2], w3 = (double)w[k + 3];
      const double *u0 = U + k * ldu, *u1 = u0 + ldu, *u2 = u1 + ldu, *u3 = u2 + ldu;
      for (int64_t j = 0; j < n; j++) {
        double s = acc[j];
        s = s + w0 * u0[j];
        s = s + w1 * u1[j];
        s = s + w2 * u2[j];
        s = s + w3 * u3[j];
        acc[j] = s;
      }
    }
    for (; k < n; k++) {
      const double wk = (double)w[k];
      const double *uk = U + k * ldu;
      for (int64_t j = 0; j < n; j++) acc[j] += wk * uk[j];
    }
    float *o = Wout + a * ldo;
    for (int64_t j = 0; j < n; j++) o[j] = (float)acc[j];
  }
}

/* Output side on `cols` column vectors of length n: out[:, b] = fp32(U^T w_b). */
static void output_side(int64_t n, int64_t cols, const float *W, int64_t ldw, const double *U, int64_t ldu,
                        float *Wout, int64_t ldo, double *acc, double *col) {
  for (int64_t b = 0; b < cols; b++) {
    for (int64_t k = 0; k < n; k++) col[k] = (double)W[k * ldw + b];
    for (int64_t i = 0; i < n; i++) acc[i] = 0.0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) { /* acc[i] += U[k][i] w[k], k ascending for every i */
      const double w0 = col[k], w1 = col[k + 1], w2 = col[k + 2], w3 = col[k + 3];
      const double *u0 = U + k * ldu, *u1 = u0 + ldu, *u2 = u1 + ldu, *u3 = u2 + ldu;
      for (int64_t i = 0; i < n; i++) {
        double s = acc[i];
        s = s + u0[i] * w0;
        s = s + u1[i] * w1;
        s = s + u2[i] * w2;
        s = s + u3[i] * w3;
        acc[i] = s;
      }
    }
    for (; k < n; k++) {
      const double wk = col[k];
      const double *uk = U + k * ldu;
      for (int64_t i = 0; i < n; i++) acc[i] += uk[i] * wk;
    }
    for (int64_t i = 0; i < n; i++) Wout[i * ldo + b] = (float)acc[i];
  }
}

resq_status resq_fuse_input_f32__ref(int64_t rows, int64_t n, const float *W, int64_t ldw, const double *U,
                                     int64_t ldu, float *Wout, int64_t ldo, void *work, size_t work_size) {
  double bound;
  resq_status st =
      check_common("fuse input side", n, rows, W, ldw, Wout, ldo, rows, n, U, ldu, 1, 1, work, work_size, &bound);
  if (st) return st;
  input_side(rows, n, W, ldw, U, ldu, Wout, ldo, (double *)work);
  return RESQ_OK;
}

resq_status resq_fuse_output_f32__ref(int64_t n, int64_t cols, const float *W, int64_t ldw, const double *U,
                                      int64_t ldu, float *Wout, int64_t ldo, void *work, size_t work_size) {
  double bound;
  resq_status st =
      check_common("fuse output side", n, cols, W, ldw, Wout, ldo, n, cols, U, ldu, 1, 0, work, work_size, &bound);
  if (st) return st;
  output_side(n, cols, W, ldw, U, ldu, Wout, ldo, (double *)work, (double *)work + n);
  return RESQ_OK;
}

resq_status resq_fuse_v_proj_f32__ref(int64_t G, int64_t hd, int64_t cols, const float *W, int64_t ldw,
                                      const double *Uv, float *Wout, int64_t ldo, void *work, size_t work_size) {
  const char *what = "fuse v_proj";
  if (G < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: G=%lld KV heads must be >= 1", what, (long long)G);
  if (hd > 0 && G > RESQ_PCA_MAX_D * RESQ_PCA_MAX_D / hd)
    return resq_fail(RESQ_ERR_TOO_LARGE, "%s: G=%lld heads of %lld is too large", what, (long long)G, (long long)hd);
  double bound;
  resq_status st = check_common(what, hd, cols, W, ldw, Wout, ldo, G * hd, cols, Uv, hd, G, 0, work, work_size, &bound);
  if (st) return st;
  for (int64_t g = 0; g < G; g++)
    output_side(hd, cols, W + g * hd * ldw, ldw, Uv + g * hd * hd, hd, Wout + g * hd * ldo, ldo, (double *)work,
                (double *)work + hd);
  return RESQ_OK;
}

resq_status resq_fuse_o_proj_f32__ref(int64_t rows, int64_t H, int64_t G, int64_t hd, const float *W,
                                      int64_t ldw, const double *Uv, float *Wout, int64_t ldo, void *work,
                                      size_t work_size) {
  const char *what = "fuse o_proj";
  if (G < 1 || H < 1 || H % G != 0)
    return resq_fail(RESQ_ERR_SHAPE, "%s: H=%lld query heads must be a positive multiple of G=%lld KV heads", what,
                     (long long)H, (long long)G);
  if (hd > 0 && H > RESQ_PCA_MAX_D * RESQ_PCA_MAX_D / hd)
    return resq_fail(RESQ_ERR_TOO_LARGE, "%s: H=%lld heads of %lld is too large", what, (long long)H, (long long)hd);
  double bound;
  resq_status st = check_common(what, hd, rows, W, ldw, Wout, ldo, rows, H * hd, Uv, hd, G, 1, work, work_size, &bound);
  if (st) return st;
  const int64_t n_rep = H / G;
  for (int64_t h = 0; h < H; h++)
    input_side(rows, hd, W + h * hd, ldw, Uv + (h / n_rep) * hd * hd, hd, Wout + h * hd, ldo, (double *)work);
  return RESQ_OK;
}

resq_status resq_fuse_down_proj_f32__ref(int64_t d, int64_t I, const float *W, int64_t ldw, const double *U,
                                         int64_t ldu, const int8_t *signs, float *Wout, int64_t ldo, void *work,
                                         size_t work_size, void *hwork, size_t hwork_size) {
  const char *what = "fuse down_proj";
  double bound;
  resq_status st = check_common(what, d, I, W, ldw, Wout, ldo, d, I, U, ldu, 1, 0, work, work_size, &bound);
  if (st) return st;
  /* the Hadamard's fp32 partial sums of a row of U^T W are at most I * bound */
  st = check_overflow(what, bound * (double)I);
  if (st) return st;
  /* validate the Hadamard's size, signs and workspace before writing */
  if (I < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: I=%lld must be >= 1", what, (long long)I);
  st = resq_hadamard_factor(I, NULL, NULL);
  if (st) return st;
  if (!hwork || hwork_size < resq_hadamard_workspace_size(I))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: Hadamard workspace of %zu bytes given, %zu needed", what, hwork_size,
                     resq_hadamard_workspace_size(I));
  if (signs)
    for (int64_t i = 0; i < I; i++)
      if (signs[i] != 1 && signs[i] != -1)
        return resq_fail(RESQ_ERR_INVALID_ARG, "%s: signs[%lld] = %d (must be +1 or -1)", what, (long long)i,
                         signs[i]);
  output_side(d, I, W, ldw, U, ldu, Wout, ldo, (double *)work, (double *)work + d);
  /* cannot fail now: size, signs and workspace were checked, and the bound
   * keeps every value finite */
  return resq_hadamard_weight_f32__ref(RESQ_HAD_INPUT_SIDE, d, I, Wout, ldo, signs, hwork, hwork_size);
}
