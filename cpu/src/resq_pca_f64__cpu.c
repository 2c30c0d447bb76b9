/* SPDX-License-Identifier: Apache-2.0
 * CPU PCA basis (ref/CONTRACT.md section 13): the second moment by OpenBLAS
 * dsyrk in double, the eigendecomposition by LAPACK dsyevd.
 *
 *   accumulation  S += X^T X for blocks of ACC_TB tokens widened to double
 *                 (dsyrk on the upper triangle; the strictly lower triangle
 *                 stays 0, as in the reference). Every S[i][j] is still a double
 *                 sum of the exact products x_t[i] x_t[j] (a product of two fp32
 *                 values is exact in double, so dsyrk's FMAs round only the
 *                 additions), but in the BLAS's order instead of token order:
 *                 |S_cpu - S_exact| <= gamma_{T-1} sum_t |x_t[i] x_t[j]|, the
 *                 reference's bound too, and batch splits change low bits.
 *   covariance    the reference's resq_pca_covariance_f64__ref (same bits from
 *                 the same S: division by T, damping, mirroring).
 *   eigh          dsyevd (divide and conquer), eigenvalues ascending; then the
 *                 contract's sign convention (entry of largest magnitude, the
 *                 first on ties, made positive) on the computed vectors.
 * The reference's own solver and dsyevd agree up to their backward errors
 * (Weyl for the eigenvalues, Davis-Kahan for the top-r projector), which is
 * how verify/cpu_gptq_f64_test.c compares them.
 *
 * Unlike the streaming kernels, these stages DO check element values (NaN/Inf
 * in a batch adds nothing and fails with RESQ_ERR_NONFINITE, as the reference):
 * the scan costs O(T d) against the O(T d^2) accumulation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_blas.h"
#include "cpu_internal.h"
#include "resq/dtype.h"

char *openblas_get_corename(void);
const char *resq_cpu_blas_corename(void) { return openblas_get_corename(); }

/* tokens per dsyrk call: rank-256 updates run near the BLAS's dgemm rate */
#define ACC_TB 256

typedef struct {
  const float *f32;
  const uint16_t *f16;
  int64_t ld;
} rows_src;

static int finite_at(const rows_src *s, int64_t t, int64_t i) {
  if (s->f32) return isfinite(s->f32[t * s->ld + i]);
  return (s->f16[t * s->ld + i] & 0x7c00u) != 0x7c00u;
}

static resq_status accumulate(resq_pca_accum *a, int64_t T, const rows_src *src) {
  if (!a || !a->S || !a->buf || a->d < 1 || a->d > RESQ_PCA_MAX_D || a->count < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: accumulator not initialized (resq_pca_accum_init)");
  const int64_t d = a->d;
  if (T < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: T=%lld < 0", (long long)T);
  if (T == 0) return RESQ_OK;
  if (!src->f32 && !src->f16) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: NULL input");
  if (T > 1 && src->ld < d)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: ldx=%lld < d=%lld", (long long)src->ld, (long long)d);
  if (a->count > INT64_MAX - T) return resq_fail(RESQ_ERR_TOO_LARGE, "pca: token count overflows int64");
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < d; i++)
      if (!finite_at(src, t, i))
        return resq_fail(RESQ_ERR_NONFINITE, "pca: x[%lld][%lld] is NaN or Inf (nothing of this batch was added)",
                         (long long)t, (long long)i);
  const int64_t tb = T < ACC_TB ? T : ACC_TB;
  double *buf = (double *)malloc((size_t)tb * (size_t)d * sizeof(double));
  if (!buf) return resq_fail(RESQ_ERR_NOMEM, "pca (cpu): cannot allocate a %lld x %lld token block", (long long)tb,
                             (long long)d);
  resq_cpu_lock();
  const int prev = resq_cpu_blas_threads(resq_cpu_get_threads());
  const resq_lapack_int n = (resq_lapack_int)d;
  const double one = 1.0;
  for (int64_t t0 = 0; t0 < T; t0 += tb) {
    const int64_t nb = T - t0 < tb ? T - t0 : tb;
    for (int64_t tt = 0; tt < nb; tt++) {
      double *row = buf + tt * d;
      if (src->f32) {
        const float *x = src->f32 + (t0 + tt) * src->ld;
        for (int64_t i = 0; i < d; i++) row[i] = (double)x[i];
      } else {
        const uint16_t *x = src->f16 + (t0 + tt) * src->ld;
        for (int64_t i = 0; i < d; i++) row[i] = (double)resq_f16_to_f32(x[i]);
      }
    }
    /* buf read column-major is X^T (d x nb): S_col += X^T X lands in the
     * column-major lower triangle = the row-major upper triangle */
    const resq_lapack_int k = (resq_lapack_int)nb;
    dsyrk_("L", "N", &n, &k, &one, buf, &n, &one, a->S, &n, 1, 1);
  }
  resq_cpu_blas_restore(prev);
  resq_cpu_unlock();
  free(buf);
  a->count += T;
  return RESQ_OK;
}

resq_status resq_pca_accum_f32__cpu(resq_pca_accum *a, int64_t T, const float *x, int64_t ldx) {
  rows_src s = {x, NULL, ldx};
  return accumulate(a, T, &s);
}

resq_status resq_pca_accum_f16__cpu(resq_pca_accum *a, int64_t T, const uint16_t *x, int64_t ldx) {
  rows_src s = {NULL, x, ldx};
  return accumulate(a, T, &s);
}

/* LAPACK's documented minimum workspace of dsyevd with JOBZ = 'V' */
static int64_t lwork_of(int64_t d) { return 1 + 6 * d + 2 * d * d; }
static int64_t liwork_of(int64_t d) { return 3 + 5 * d; }

size_t resq_pca_basis_workspace_size__cpu(int64_t d) {
  if (d < 1 || d > RESQ_PCA_MAX_D) return 0;
  /* C, eigenvalues, dsyevd's work and iwork (+ alignment slack) */
  return ((size_t)d * (size_t)d + (size_t)d + (size_t)lwork_of(d)) * sizeof(double) +
         (size_t)liwork_of(d) * sizeof(resq_lapack_int) + 64;
}

resq_status resq_pca_basis_f64__cpu(const resq_pca_accum *a, double damp, double *eigvals, double *U, int64_t ldu,
                                    void *work, size_t work_size) {
  if (!a || !a->S || !a->buf || a->d < 1 || a->d > RESQ_PCA_MAX_D || a->count < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: accumulator not initialized (resq_pca_accum_init)");
  const int64_t d = a->d;
  if (!eigvals || !U) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: NULL output");
  if (ldu < d) return resq_fail(RESQ_ERR_INVALID_ARG, "pca: ldu=%lld < d=%lld", (long long)ldu, (long long)d);
  const size_t need = resq_pca_basis_workspace_size__cpu(d);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "pca: workspace of %zu bytes given, %zu needed (resq_pca_basis_workspace_size__cpu)",
                     work_size, need);
  double *C = (double *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
  double *w = C + (size_t)d * (size_t)d;
  double *lw = w + d;
  resq_lapack_int *iw = (resq_lapack_int *)(lw + lwork_of(d));
  /* C in the workspace: a failure (degenerate data, no convergence) leaves the outputs untouched */
  resq_status st = resq_pca_covariance_f64__ref(a, damp, C, d, NULL);
  if (st) return st;
  const resq_lapack_int n = (resq_lapack_int)d, lwork = (resq_lapack_int)lwork_of(d),
                        liwork = (resq_lapack_int)liwork_of(d);
  resq_lapack_int info = 0;
  resq_cpu_lock();
  const int prev = resq_cpu_blas_threads(resq_cpu_get_threads());
  dsyevd_("V", "L", &n, C, &n, w, lw, &lwork, iw, &liwork, &info, 1, 1);
  resq_cpu_blas_restore(prev);
  resq_cpu_unlock();
  if (info != 0)
    return resq_fail(info > 0 ? RESQ_ERR_DEGENERATE : RESQ_ERR_INTERNAL,
                     "pca (cpu): dsyevd failed (info %d%s)", (int)info,
                     info > 0 ? ": the divide-and-conquer eigensolver did not converge" : ": bad argument");
  /* column-major: eigenvector j is C[j*d .. j*d + d), ascending eigenvalues.
   * Sign: the entry of largest magnitude (the first such index) positive. */
  for (int64_t j = 0; j < d; j++) {
    double *v = C + j * d;
    int64_t big = 0;
    for (int64_t i = 1; i < d; i++)
      if (fabs(v[i]) > fabs(v[big])) big = i;
    if (v[big] < 0)
      for (int64_t i = 0; i < d; i++) v[i] = -v[i];
  }
  memcpy(eigvals, w, (size_t)d * sizeof(double));
  /* U[i][j] = v_j[i]: blocked transpose */
  const int64_t tb = 32;
  for (int64_t i0 = 0; i0 < d; i0 += tb)
    for (int64_t j0 = 0; j0 < d; j0 += tb) {
      const int64_t i1 = i0 + tb < d ? i0 + tb : d, j1 = j0 + tb < d ? j0 + tb : d;
      for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++) U[i * ldu + j] = C[j * d + i];
    }
  return RESQ_OK;
}
