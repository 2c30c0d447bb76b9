/* SPDX-License-Identifier: Apache-2.0
 * Reference symmetric eigensolver (ref/CONTRACT.md section 13), double:
 *
 *   0. B = 2^-e A with 2^e the power of two just above max|A| (exact scaling:
 *      no overflow, the underflow split below is relative to the norm)
 *   1. Householder tridiagonalization B = Q T Q^T, reflections
 *      H_k = I - tau_k v_k v_k^T (v_k[0] = 1, LAPACK dlarfg convention) applied
 *      for k = 0 .. n-3 to the trailing block as a symmetric rank-2 update;
 *      Q = H_0 H_1 ... H_{n-3} accumulated backwards
 *   2. implicit QL with Wilkinson shifts on T (d = diagonal, e = off-diagonal),
 *      every plane rotation also applied to the eigenvector matrix; e[m] is
 *      negligible when |e[m]| <= 2^-52 (|d[m]| + |d[m+1]|) or |e[m]| < DBL_MIN;
 *      at most 30 n sweeps in total (else RESQ_ERR_DEGENERATE, nothing written)
 *   3. eigenvalues scaled back by 2^e, sorted ascending (stable: equal values
 *      keep the QL order), each eigenvector negated if its entry of largest
 *      magnitude (first on ties) is negative.
 *
 * The eigenvector matrix is kept TRANSPOSED in the workspace (row j = vector
 * j), so that both the reflections and the rotations run along contiguous rows.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "resq/pca.h"

size_t resq_eigh_workspace_size(int64_t n) {
  if (n < 1 || n > RESQ_PCA_MAX_D) return 0;
  /* B and Z^T (n x n each), d, e, v, p (n each), the sort permutation */
  return (2 * (size_t)n * (size_t)n + 4 * (size_t)n) * sizeof(double) + (size_t)n * sizeof(int64_t);
}

/* ||x||_2 of m values, scaled by the largest magnitude (no overflow, no
 * harmful underflow); deterministic left-to-right sums. */
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

/* Step 1 on the full symmetric n x n matrix B (row-major, ld n). On return
 * d[0..n), e[0..n-1) hold T (e[i] = T[i][i+1]), row k of B holds v_k in columns
 * k+2..n-1 (v_k[0] = 1 at column k+1 implicit), tau[k] its factor, and Zt = Q^T. */
static void tridiagonalize(int64_t n, double *B, double *d, double *e, double *tau, double *p, double *Zt) {
  for (int64_t k = 0; k + 2 < n; k++) {
    const int64_t m = n - k - 1; /* length of the column below the diagonal */
    double *x = B + k * n + k + 1; /* row k right of the diagonal = column k below it */
    const double alpha = x[0];
    const double xnorm = norm2(x + 1, m - 1);
    d[k] = B[k * n + k];
    if (xnorm == 0.0) { /* already reduced: H_k = I */
      tau[k] = 0.0;
      e[k] = alpha;
      continue;
    }
    const double beta = -copysign(hypot(alpha, xnorm), alpha);
    const double t = (beta - alpha) / beta;
    const double scal = 1.0 / (alpha - beta);
    x[0] = 1.0;
    for (int64_t i = 1; i < m; i++) x[i] *= scal;
    tau[k] = t;
    e[k] = beta;
    /* trailing block A2 = B[k+1.., k+1..]: p = tau A2 v, w = p - (tau/2)(p.v) v,
     * A2 -= v w^T + w v^T (both triangles kept) */
    double *A2 = B + (k + 1) * n + (k + 1);
    for (int64_t i = 0; i < m; i++) {
      const double *row = A2 + i * n;
      double s = 0.0;
      for (int64_t j = 0; j < m; j++) s += row[j] * x[j];
      p[i] = t * s;
    }
    double pv = 0.0;
    for (int64_t i = 0; i < m; i++) pv += p[i] * x[i];
    const double K = 0.5 * t * pv;
    for (int64_t i = 0; i < m; i++) p[i] -= K * x[i]; /* p is now w */
    for (int64_t i = 0; i < m; i++) {
      double *row = A2 + i * n;
      const double vi = x[i], wi = p[i];
      for (int64_t j = 0; j < m; j++) row[j] -= vi * p[j] + wi * x[j];
    }
  }
  if (n >= 2) {
    d[n - 2] = B[(n - 2) * n + (n - 2)];
    e[n - 2] = B[(n - 1) * n + (n - 2)];
  }
  d[n - 1] = B[(n - 1) * n + (n - 1)];
  e[n - 1] = 0.0;
  /* Q^T = H_{n-3} ... H_0 built backwards: Zt <- Zt H_k touches rows and
   * columns k+1.. only (Zt is the identity elsewhere at that point) */
  memset(Zt, 0, (size_t)n * (size_t)n * sizeof(double));
  for (int64_t i = 0; i < n; i++) Zt[i * n + i] = 1.0;
  for (int64_t k = n - 3; k >= 0; k--) {
    if (tau[k] == 0.0) continue;
    const int64_t m = n - k - 1;
    const double *v = B + k * n + k + 1; /* v[0] == 1 was stored explicitly */
    for (int64_t i = k + 1; i < n; i++) {
      double *row = Zt + i * n + k + 1;
      double s = 0.0;
      for (int64_t j = 0; j < m; j++) s += row[j] * v[j];
      s *= tau[k];
      for (int64_t j = 0; j < m; j++) row[j] -= s * v[j];
    }
  }
}

/* Step 2. Returns 0 on convergence. */
static int ql_implicit(int64_t n, double *d, double *e, double *Zt) {
  const int64_t maxit = 30 * n;
  int64_t sweeps = 0;
  for (int64_t l = 0; l < n; l++) {
    for (;;) {
      int64_t m = l;
      while (m < n - 1) { /* find the first negligible off-diagonal at or after l */
        const double dd = fabs(d[m]) + fabs(d[m + 1]);
        if (fabs(e[m]) <= DBL_EPSILON * dd || fabs(e[m]) < DBL_MIN) break;
        m++;
      }
      if (m == l) break; /* d[l] is an eigenvalue */
      if (++sweeps > maxit) return 1;
      /* Wilkinson shift: the eigenvalue of the leading 2x2 of T[l..m] closer to d[l] */
      double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
      double r = hypot(g, 1.0);
      g = d[m] - d[l] + e[l] / (g + copysign(r, g));
      double s = 1.0, c = 1.0, p = 0.0;
      int64_t i;
      int split = 0;
      /* chase the bulge from the bottom (m) up to l with plane rotations */
      for (i = m - 1; i >= l; i--) {
        const double f = s * e[i];
        const double b = c * e[i];
        r = hypot(f, g);
        e[i + 1] = r;
        if (r == 0.0) { /* exact underflow: T splits at i+1 */
          d[i + 1] -= p;
          e[m] = 0.0;
          split = 1;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2.0 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        /* the same rotation on vectors i, i+1 (rows of Z^T) */
        double *zi = Zt + i * n, *zj = Zt + (i + 1) * n;
        for (int64_t k = 0; k < n; k++) {
          const double t = zj[k];
          zj[k] = s * zi[k] + c * t;
          zi[k] = c * zi[k] - s * t;
        }
      }
      if (split) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0.0;
    }
  }
  return 0;
}

resq_status resq_eigh_f64__ref(int64_t n, double *A, int64_t lda, double *w, void *work, size_t work_size) {
  if (n < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "eigh: n=%lld must be >= 1", (long long)n);
  if (n > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "eigh: n=%lld exceeds the maximum %lld", (long long)n,
                     (long long)RESQ_PCA_MAX_D);
  if (!A || !w) return resq_fail(RESQ_ERR_INVALID_ARG, "eigh: NULL matrix or eigenvalue output");
  if (lda < n) return resq_fail(RESQ_ERR_INVALID_ARG, "eigh: lda=%lld < n=%lld", (long long)lda, (long long)n);
  size_t need = resq_eigh_workspace_size(n);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "eigh: workspace of %zu bytes given, %zu needed", work_size, need);
  double amax = 0.0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j <= i; j++) {
      double v = A[i * lda + j];
      if (!isfinite(v))
        return resq_fail(RESQ_ERR_NONFINITE, "eigh: A[%lld][%lld] is NaN or Inf", (long long)i, (long long)j);
      if (fabs(v) > amax) amax = fabs(v);
    }
  const size_t nn = (size_t)n * (size_t)n;
  double *B = (double *)work, *Zt = B + nn, *d = Zt + nn, *e = d + n, *tau = e + n, *p = tau + n;
  int64_t *idx = (int64_t *)(p + n);
  int ex = 0;
  if (amax > 0.0) frexp(amax, &ex); /* amax = f * 2^ex, f in [0.5, 1) */
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j <= i; j++) {
      double v = ldexp(A[i * lda + j], -ex);
      B[i * n + j] = v;
      B[j * n + i] = v;
    }
  tridiagonalize(n, B, d, e, tau, p, Zt);
  if (ql_implicit(n, d, e, Zt))
    return resq_fail(RESQ_ERR_DEGENERATE, "eigh: implicit QL did not converge in %lld sweeps (n=%lld)",
                     (long long)(30 * n), (long long)n);
  for (int64_t j = 0; j < n; j++) {
    d[j] = ldexp(d[j], ex);
    if (!isfinite(d[j]))
      return resq_fail(RESQ_ERR_NONFINITE, "eigh: eigenvalue %lld overflows double", (long long)j);
  }
  /* stable insertion sort of the indices by eigenvalue, ascending */
  for (int64_t j = 0; j < n; j++) {
    int64_t k = j;
    while (k > 0 && d[idx[k - 1]] > d[j]) {
      idx[k] = idx[k - 1];
      k--;
    }
    idx[k] = j;
  }
  for (int64_t j = 0; j < n; j++) {
    const double *z = Zt + idx[j] * n;
    int64_t big = 0;
    for (int64_t i = 1; i < n; i++)
      if (fabs(z[i]) > fabs(z[big])) big = i;
    const double sg = z[big] < 0.0 ? -1.0 : 1.0;
    w[j] = d[idx[j]];
    for (int64_t i = 0; i < n; i++) A[i * lda + j] = sg * z[i];
  }
  return RESQ_OK;
}
