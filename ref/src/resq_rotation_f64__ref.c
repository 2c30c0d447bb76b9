/* SPDX-License-Identifier: Apache-2.0
 * Reference random rotations and K8 (ref/CONTRACT.md section 13).
 *
 * Haar orthogonal matrix of order n (upstream random_orthogonal_matrix):
 *   A[i][j] = resq_rng_normal(rng)   for i = 0..n-1, j = 0..n-1 (row-major)
 *   A = Q R by Householder reflections H_j = I - tau_j v_j v_j^T on columns
 *       j = 0..n-1 (LAPACK dlarfg convention: R[j][j] = -sign(a) ||a||)
 *   Q[:, j] *= sign(R[j][j])   (+1 if R[j][j] == 0)
 * so Q is the Q factor of the unique QR with a positive diagonal, which makes
 * Q Haar distributed. The work runs on A^T so that every column is a
 * contiguous row.
 *
 * Assembled rotation: R = blockdiag(R_lo, R_hi), R_lo (order d - r) drawn
 * first, R_hi (order r) second from the same stream; U = U_pca R.
 *
 * K8: a = max(max|Uk|, 1e-5), s = a / 127, code = clamp(rint(Uk / s), -128,
 * 127), K8 = (float)(s * code); double arithmetic, rint half to even.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "resq/pca.h"

size_t resq_random_orthogonal_workspace_size(int64_t n) {
  if (n < 1 || n > RESQ_PCA_MAX_D) return 0;
  /* A^T (reflectors below the diagonal), Q^T, tau */
  return (2 * (size_t)n * (size_t)n + (size_t)n) * sizeof(double);
}

/* ||x||_2 scaled by the largest magnitude; left-to-right sums. */
static double norm2(const double *x, int64_t m) {
  double amax = 0.0;
  for (int64_t i = 0; i < m; i++)
    if (fabs(x[i]) > amax) amax = fabs(x[i]);
  if (amax == 0.0) return 0.0;
  double ss = 0.0;
  for (int64_t i = 0; i < m; i++) {
    double t = x[i] / amax;
    ss += t * t;
  }
  return amax * sqrt(ss);
}

static resq_status check_orth(int64_t n, const void *Q, int64_t ldq, const void *work, size_t work_size) {
  if (n < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "random orthogonal: n=%lld must be >= 1", (long long)n);
  if (n > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "random orthogonal: n=%lld exceeds the maximum %lld", (long long)n,
                     (long long)RESQ_PCA_MAX_D);
  if (!Q) return resq_fail(RESQ_ERR_INVALID_ARG, "random orthogonal: NULL output");
  if (ldq < n)
    return resq_fail(RESQ_ERR_INVALID_ARG, "random orthogonal: ldq=%lld < n=%lld", (long long)ldq, (long long)n);
  size_t need = resq_random_orthogonal_workspace_size(n);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "random orthogonal: workspace of %zu bytes given, %zu needed", work_size,
                     need);
  return RESQ_OK;
}

resq_status resq_random_orthogonal_rng_f64__ref(resq_rng *rng, int64_t n, double *Q, int64_t ldq, void *work,
                                                size_t work_size) {
  resq_status st = check_orth(n, Q, ldq, work, work_size);
  if (st) return st;
  if (!rng) return resq_fail(RESQ_ERR_INVALID_ARG, "random orthogonal: NULL generator");
  const size_t nn = (size_t)n * (size_t)n;
  double *At = (double *)work, *Qt = At + nn, *tau = Qt + nn;
  /* draws in row-major order of A, stored transposed: At[j][i] = A[i][j] */
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) At[j * n + i] = resq_rng_normal(rng);
  /* Householder QR: column j of A is row j of At; H_j acts on rows j.. of A,
   * i.e. on columns j.. of every later row of At */
  for (int64_t j = 0; j < n; j++) {
    double *x = At + j * n + j;
    const int64_t m = n - j;
    const double alpha = x[0];
    const double xnorm = norm2(x + 1, m - 1);
    if (xnorm == 0.0) { /* nothing below the diagonal (always the case for j = n-1) */
      tau[j] = 0.0;
      continue;
    }
    const double beta = -copysign(hypot(alpha, xnorm), alpha);
    const double t = (beta - alpha) / beta;
    const double scal = 1.0 / (alpha - beta);
    for (int64_t i = 1; i < m; i++) x[i] *= scal;
    x[0] = beta; /* R[j][j]; v_j[0] = 1 is implicit */
    tau[j] = t;
    for (int64_t k = j + 1; k < n; k++) {
      double *y = At + k * n + j; /* column k of A, rows j.. */
      double s = y[0];
      for (int64_t i = 1; i < m; i++) s += y[i] * x[i];
      s *= t;
      y[0] -= s;
      for (int64_t i = 1; i < m; i++) y[i] -= s * x[i];
    }
  }
  /* Q = H_0 H_1 ... H_{n-1}; backwards in transposed form: Qt <- Qt H_j for
   * j = n-1 .. 0 changes rows and columns j.. only */
  memset(Qt, 0, nn * sizeof(double));
  for (int64_t i = 0; i < n; i++) Qt[i * n + i] = 1.0;
  for (int64_t j = n - 1; j >= 0; j--) {
    if (tau[j] == 0.0) continue;
    const double *v = At + j * n + j;
    const int64_t m = n - j;
    for (int64_t i = j; i < n; i++) {
      double *row = Qt + i * n + j;
      double s = row[0];
      for (int64_t k = 1; k < m; k++) s += row[k] * v[k];
      s *= tau[j];
      row[0] -= s;
      for (int64_t k = 1; k < m; k++) row[k] -= s * v[k];
    }
  }
  /* Q[i][j] = sign(R[j][j]) * Qt[j][i]; R[j][j] = At[j][j] (beta, or alpha
   * when the reflection was skipped) */
  for (int64_t j = 0; j < n; j++) {
    const double sg = At[j * n + j] < 0.0 ? -1.0 : 1.0;
    for (int64_t i = 0; i < n; i++) Q[i * ldq + j] = sg * Qt[j * n + i];
  }
  return RESQ_OK;
}

resq_status resq_random_orthogonal_f64__ref(uint64_t seed, int64_t n, double *Q, int64_t ldq, void *work,
                                            size_t work_size) {
  resq_status st = check_orth(n, Q, ldq, work, work_size);
  if (st) return st;
  resq_rng rng;
  resq_rng_init(&rng, seed);
  return resq_random_orthogonal_rng_f64__ref(&rng, n, Q, ldq, work, work_size);
}

static resq_status check_split(const char *what, int64_t d, int64_t r) {
  if (d < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: d=%lld must be >= 1", what, (long long)d);
  if (d > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "%s: d=%lld exceeds the maximum %lld", what, (long long)d,
                     (long long)RESQ_PCA_MAX_D);
  if (r < 0 || r > d)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: r=%lld must be in [0, d=%lld]", what, (long long)r, (long long)d);
  return RESQ_OK;
}

resq_status resq_pca_blockdiag_f64__ref(uint64_t seed, int64_t d, int64_t r, double *R, int64_t ldr, void *work,
                                        size_t work_size) {
  resq_status st = check_split("pca rotation", d, r);
  if (!st) st = check_orth(d, R, ldr, work, work_size);
  if (st) return st;
  const int64_t lo = d - r;
  for (int64_t i = 0; i < d; i++) memset(R + i * ldr, 0, (size_t)d * sizeof(double));
  resq_rng rng;
  resq_rng_init(&rng, seed);
  if (lo > 0) {
    st = resq_random_orthogonal_rng_f64__ref(&rng, lo, R, ldr, work, work_size);
    if (st) return st;
  }
  if (r > 0) st = resq_random_orthogonal_rng_f64__ref(&rng, r, R + lo * ldr + lo, ldr, work, work_size);
  return st;
}

resq_status resq_pca_apply_blockdiag_f64__ref(int64_t d, int64_t r, const double *U_pca, int64_t ldp,
                                              const double *R, int64_t ldr, double *U, int64_t ldu) {
  resq_status st = check_split("pca rotation", d, r);
  if (st) return st;
  if (!U_pca || !R || !U) return resq_fail(RESQ_ERR_INVALID_ARG, "pca rotation: NULL matrix");
  if (ldp < d || ldr < d || ldu < d)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca rotation: leading dimensions (%lld, %lld, %lld) smaller than d=%lld",
                     (long long)ldp, (long long)ldr, (long long)ldu, (long long)d);
  const int64_t lo = d - r;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      int same_block = (i < lo) == (j < lo);
      if (!isfinite(U_pca[i * ldp + j]))
        return resq_fail(RESQ_ERR_NONFINITE, "pca rotation: U_pca[%lld][%lld] is NaN or Inf", (long long)i,
                         (long long)j);
      if (same_block && !isfinite(R[i * ldr + j]))
        return resq_fail(RESQ_ERR_NONFINITE, "pca rotation: R[%lld][%lld] is NaN or Inf", (long long)i, (long long)j);
    }
  /* row i of U: per block [b0, b1), ur[j] = ur[j] + U_pca[i][k] R[k][j] for k
   * ascending (four k per pass over the row; the additions stay sequential) */
  for (int64_t i = 0; i < d; i++) {
    const double *up = U_pca + i * ldp;
    double *ur = U + i * ldu;
    for (int64_t j = 0; j < d; j++) ur[j] = 0.0;
    for (int blk = 0; blk < 2; blk++) {
      const int64_t b0 = blk ? lo : 0, b1 = blk ? d : lo;
      int64_t k = b0;
      for (; k + 4 <= b1; k += 4) {
        const double u0 = up[k], u1 = up[k + 1], u2 = up[k + 2], u3 = up[k + 3];
        const double *r0 = R + k * ldr, *r1 = r0 + ldr, *r2 = r1 + ldr, *r3 = r2 + ldr;
        for (int64_t j = b0; j < b1; j++) {
          double s = ur[j];
          s = s + u0 * r0[j];
          s = s + u1 * r1[j];
          s = s + u2 * r2[j];
          s = s + u3 * r3[j];
          ur[j] = s;
        }
      }
      for (; k < b1; k++) {
        const double u = up[k];
        const double *rk = R + k * ldr;
        for (int64_t j = b0; j < b1; j++) ur[j] += u * rk[j];
      }
    }
  }
  return RESQ_OK;
}

resq_status resq_k8_f64__ref(int64_t hd, const double *Uk, int64_t ldk, int8_t *codes, double *scale, float *K8) {
  if (hd < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "k8: hd=%lld must be >= 1", (long long)hd);
  if (hd > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "k8: hd=%lld exceeds the maximum %lld", (long long)hd,
                     (long long)RESQ_PCA_MAX_D);
  if (!Uk) return resq_fail(RESQ_ERR_INVALID_ARG, "k8: NULL key basis");
  if (ldk < hd) return resq_fail(RESQ_ERR_INVALID_ARG, "k8: ldk=%lld < hd=%lld", (long long)ldk, (long long)hd);
  double a = 0.0;
  for (int64_t i = 0; i < hd; i++)
    for (int64_t j = 0; j < hd; j++) {
      double v = Uk[i * ldk + j];
      if (!isfinite(v))
        return resq_fail(RESQ_ERR_NONFINITE, "k8: Uk[%lld][%lld] is NaN or Inf", (long long)i, (long long)j);
      if (fabs(v) > a) a = fabs(v);
    }
  if (a < 1e-5) a = 1e-5;
  const double s = a / 127.0;
  for (int64_t i = 0; i < hd; i++)
    for (int64_t j = 0; j < hd; j++) {
      double q = nearbyint(Uk[i * ldk + j] / s);
      if (q < -128.0) q = -128.0;
      if (q > 127.0) q = 127.0;
      if (codes) codes[i * hd + j] = (int8_t)q;
      if (K8) K8[i * hd + j] = (float)(s * q);
    }
  if (scale) *scale = s;
  return RESQ_OK;
}
