/* SPDX-License-Identifier: Apache-2.0
 * Properties of the reference PCA basis, eigensolver, Haar rotations, K8 and
 * weight fusion (ref/CONTRACT.md section 13):
 *  - eigensolver: matrices with known eigensystems exactly or within a derived
 *    bound; random symmetric matrices: residual, orthogonality, order, signs,
 *    determinism; only the lower triangle is read; failures write nothing;
 *  - the streaming second moment is the contract's token-order double sum bit
 *    for bit, for any batch split and for the f16 entry; NaN adds nothing;
 *  - damping shifts the eigenvalues by exactly damp*mean(diag) (within the
 *    solvers' backward error) and leaves the projector unchanged;
 *  - synthetic LLM-like activations with outlier directions (a design whose
 *    exact second moment is known): the top-r subspace is the construction's;
 *  - Haar: orthogonality, determinism, the sign fix (Q^T A upper triangular with
 *    a positive diagonal, q_0 = a_0/|a_0|), an unbiasedness statistic, the
 *    block-diagonal draw order and the assembly U = U_pca R;
 *  - K8: codes, scale, fp32 values, near-orthogonality within the quantization
 *    bound;
 *  - fusion: the rotated layer computes the original function (input side,
 *    output side, per-head v/o composition through attention, down_proj with
 *    the Hadamard), bit-exact against the contract's summation order;
 *  - with LAPACK (--part lapack): eigenvalues and top-r projectors vs dsyevd;
 *  - with --resq BIN --tmp DIR: the `resq pca` command end to end.
 *
 * Bounds (eps = 2^-52, u32 = 2^-24):
 *  (B1) backward error of Householder tridiagonalization + QL (Wilkinson;
 *       Golub & Van Loan 8.3; Demmel 5.3): the computed (V, w) are, to working
 *       precision, an exact eigensystem of A + E with ||E|| <= p(n) u ||A||,
 *       p a low-degree polynomial. We take p(n) = 16 n in u = eps/2, i.e.
 *       ||A V - V diag(w)||_F <= 8 n eps ||A||_F and ||V^T V - I||_F <= 8 n eps.
 *       The observed ratios (printed) are 0.03-1.5 of n eps.
 *  (B2) a posteriori backward error from measured quantities: with residual
 *       R = A V - V diag(w) and w_o = ||V^T V - I||_F, the polar factor Q of V
 *       satisfies Q^T A Q = diag(w) + G, ||G||_F <= eta = ||R||_F (1 + w_o)
 *       + 2 w_o ||A||_2 (first order in w_o; ||A||_2 <= ||A||_F used), so
 *       |w_j - lambda_j(A)| <= eta (Weyl) and, with gap the distance between
 *       the kept and the other eigenvalues, ||P_V - P*||_F <= sqrt(2) eta /
 *       (gap - 2 eta) + 2 w_o (Davis-Kahan sin-theta, plus ||V_k V_k^T - Q_k Q_k^T||
 *       <= 2 ||V - Q|| <= 2 w_o).
 *  All residuals and products in the checks are accumulated in long double,
 *  whose rounding is below eps/2048 per operation and is neglected.
 */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/npy.h"
#include "resq/pca.h"
#include "resq/rng.h"
#include "resq_check.h"

static const double k_eps = 0x1p-52;
static const double k_u32 = 0x1p-24;
static const double k_pi = 3.14159265358979323846;
#define C_BACKWARD 8.0 /* (B1): p(n) = 16 n in u = 8 n in eps */

typedef long double ld;

static double *dalloc(size_t n) { return (double *)calloc(n ? n : 1, sizeof(double)); }
static float *falloc(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }

/* ------------------------------------------------------------------ helpers */

/* ||A||_F of a symmetric matrix given by its lower triangle */
static double fro_sym(int64_t n, const double *A, int64_t lda) {
  ld s = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      double v = i >= j ? A[i * lda + j] : A[j * lda + i];
      s += (ld)v * v;
    }
  return (double)sqrtl(s);
}

/* residual ||A V - V diag(w)||_F and ||V^T V - I||_F (A symmetric from its lower triangle) */
static void eig_quality(int64_t n, const double *A, int64_t lda, const double *V, int64_t ldv, const double *w,
                        double *res, double *orth) {
  ld rs = 0, os = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ld s = 0;
      for (int64_t k = 0; k < n; k++) s += (ld)(i >= k ? A[i * lda + k] : A[k * lda + i]) * V[k * ldv + j];
      s -= (ld)V[i * ldv + j] * w[j];
      rs += s * s;
    }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i; j < n; j++) {
      ld s = 0;
      for (int64_t k = 0; k < n; k++) s += (ld)V[k * ldv + i] * V[k * ldv + j];
      if (i == j) s -= 1;
      os += (i == j ? 1 : 2) * s * s;
    }
  *res = (double)sqrtl(rs);
  *orth = (double)sqrtl(os);
}

/* (B2) eta from measured residual and orthogonality */
static double eta_of(double res, double orth, double anorm_f) { return res * (1 + orth) + 2 * orth * anorm_f; }

/* violations of: ascending eigenvalues, sign convention */
static long order_sign_violations(int64_t n, const double *V, int64_t ldv, const double *w) {
  long bad = 0;
  for (int64_t j = 0; j + 1 < n; j++) bad += !(w[j] <= w[j + 1]);
  for (int64_t j = 0; j < n; j++) {
    int64_t big = 0;
    for (int64_t i = 1; i < n; i++)
      if (fabs(V[i * ldv + j]) > fabs(V[big * ldv + j])) big = i;
    bad += !(V[big * ldv + j] > 0);
  }
  return bad;
}

/* ||V1_k V1_k^T - V2_k V2_k^T||_F over the LAST k columns */
static double proj_dist(int64_t n, int64_t k, const double *V1, int64_t ld1, const double *V2, int64_t ld2) {
  ld s = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ld a = 0, b = 0;
      for (int64_t c = n - k; c < n; c++) {
        a += (ld)V1[i * ld1 + c] * V1[j * ld1 + c];
        b += (ld)V2[i * ld2 + c] * V2[j * ld2 + c];
      }
      s += (a - b) * (a - b);
    }
  return (double)sqrtl(s);
}

static void rand_sym(resq_rng *r, int64_t n, double *A, double scale) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j <= i; j++) {
      double v = resq_rng_normal(r) * scale;
      A[i * n + j] = v;
      A[j * n + i] = v;
    }
}

/* A = Q diag(lam) Q^T in long double, rounded */
static void sym_from_spectrum(int64_t n, const double *Q, const double *lam, double *A) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j <= i; j++) {
      ld s = 0;
      for (int64_t k = 0; k < n; k++) s += (ld)Q[i * n + k] * lam[k] * Q[j * n + k];
      A[i * n + j] = A[j * n + i] = (double)s;
    }
}

static double *haar(uint64_t seed, int64_t n) {
  double *Q = dalloc((size_t)(n * n));
  size_t ws = resq_random_orthogonal_workspace_size(n);
  void *w = malloc(ws);
  resq_status st = resq_random_orthogonal_f64__ref(seed, n, Q, n, w, ws);
  if (st) RC_FAIL("random orthogonal n=%lld: %s", (long long)n, resq_last_error());
  free(w);
  return Q;
}

/* run eigh on a copy of A; returns V (n x n) and fills w */
static double *eigh_copy(int64_t n, const double *A, double *w, resq_status *stp) {
  double *V = dalloc((size_t)(n * n));
  memcpy(V, A, sizeof(double) * (size_t)(n * n));
  size_t ws = resq_eigh_workspace_size(n);
  void *work = malloc(ws);
  resq_status st = resq_eigh_f64__ref(n, V, n, w, work, ws);
  free(work);
  if (stp) *stp = st;
  return V;
}

/* ------------------------------------------------------------------ eigensolver */

static void case_eigh_known(void) {
  if (!rc_case("eigh_known_matrices")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* n = 1 */
  {
    double A = -3.25, w = 0;
    size_t ws = resq_eigh_workspace_size(1);
    void *work = malloc(ws);
    RC_CHECK(resq_eigh_f64__ref(1, &A, 1, &w, work, ws) == RESQ_OK && w == -3.25 && A == 1.0,
             "1x1: w=%g v=%g", w, A);
    free(work);
  }
  /* diagonal matrices: no reflection, no rotation, exact power-of-two scaling
   * -> eigenvalues are the sorted diagonal exactly, V a permutation of +1s;
   * equal values keep index order (stable sort) */
  for (int rep = 0; rep < 2; rep++) {
    const int64_t n = 37;
    double *A = dalloc(n * n), w[37];
    double vals[37];
    for (int64_t i = 0; i < n; i++) vals[i] = rep == 0 ? resq_rng_normal(&r) * 100 : (double)resq_rng_range(&r, -3, 3);
    for (int64_t i = 0; i < n; i++) A[i * n + i] = vals[i];
    resq_status st;
    double *V = eigh_copy(n, A, w, &st);
    RC_CHECK(st == RESQ_OK, "diagonal: %s", resq_last_error());
    /* expected: stable sort of (value, index) */
    int64_t perm[37];
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = 1; i < n; i++)
      for (int64_t k = i; k > 0 && vals[perm[k - 1]] > vals[perm[k]]; k--) {
        int64_t t = perm[k];
        perm[k] = perm[k - 1];
        perm[k - 1] = t;
      }
    long bad = 0;
    for (int64_t j = 0; j < n; j++) {
      bad += w[j] != vals[perm[j]];
      for (int64_t i = 0; i < n; i++) bad += V[i * n + j] != (i == perm[j] ? 1.0 : 0.0);
    }
    RC_CHECK(bad == 0, "diagonal (%s values): %ld entries differ from the exact sorted system",
             rep ? "repeated" : "distinct", bad);
    free(A), free(V);
  }
  /* zero matrix: w = 0, V = I exactly */
  {
    const int64_t n = 9;
    double A[81] = {0}, w[9];
    resq_status st;
    double *V = eigh_copy(n, A, w, &st);
    long bad = 0;
    for (int64_t i = 0; i < n * n; i++) bad += V[i] != (i % (n + 1) == 0 ? 1.0 : 0.0);
    for (int64_t i = 0; i < n; i++) bad += w[i] != 0.0;
    RC_CHECK(st == RESQ_OK && bad == 0, "zero matrix: %s, %ld entries differ", resq_status_name(st), bad);
    free(V);
  }
  /* [[1, 1], [1, 3]]: eigenvalues 2 -+ sqrt2, eigenvectors (1, 1 -+ sqrt2) normalized,
   * whose largest entries (first, resp. second; no ties) are positive. (B1): the
   * eigenvalue errors are <= 8*2*eps*||A||_F and the vector errors <= sqrt2 * that /
   * gap (gap = 2 sqrt2) + 8*2*eps, plus a few eps for the reference's own rounding. */
  {
    double A[4] = {1.0, NAN, 1.0, 3.0}, w[2]; /* lower triangle only: A[0][1] is never read */
    size_t ws = resq_eigh_workspace_size(2);
    void *work = malloc(ws);
    resq_status st = resq_eigh_f64__ref(2, A, 2, w, work, ws);
    double eb = C_BACKWARD * 2 * k_eps * sqrt(1.0 + 2.0 + 9.0), s2 = sqrt(2.0);
    double tl = eb + 4 * k_eps * 4, tv = s2 * eb / (2 * s2 - 2 * eb) + C_BACKWARD * 2 * k_eps + 8 * k_eps;
    double n0 = sqrt(1 + (1 - s2) * (1 - s2)), n1 = sqrt(1 + (1 + s2) * (1 + s2));
    RC_CHECK(st == RESQ_OK && fabs(w[0] - (2 - s2)) <= tl && fabs(w[1] - (2 + s2)) <= tl, "2x2 eigenvalues %.17g %.17g",
             w[0], w[1]);
    RC_CHECK(fabs(A[0] - 1 / n0) <= tv && fabs(A[2] - (1 - s2) / n0) <= tv && fabs(A[1] - 1 / n1) <= tv &&
                 fabs(A[3] - (1 + s2) / n1) <= tv,
             "2x2 eigenvectors [[%.17g %.17g] [%.17g %.17g]]", A[0], A[1], A[2], A[3]);
    free(work);
  }
  /* second-difference matrix tridiag(-1, 2, -1) of order n: lambda_k = 2 - 2cos(k pi/(n+1)),
   * v_k[j] = sqrt(2/(n+1)) sin(j k pi/(n+1)) (k, j = 1..n). Eigenvalue error <= (B1)
   * bound (Weyl, the matrix is exact); eigenvector error <= sqrt2 * bound / gap_k + 8 n eps (B2). */
  {
    const int64_t n = 64;
    double *A = dalloc(n * n), w[64];
    for (int64_t i = 0; i < n; i++) {
      A[i * n + i] = 2;
      if (i) A[i * n + i - 1] = A[(i - 1) * n + i] = -1;
    }
    resq_status st;
    double *V = eigh_copy(n, A, w, &st);
    double an = fro_sym(n, A, n), eb = C_BACKWARD * n * k_eps * an;
    double worst_l = 0, worst_v = 0;
    long badl = 0, badv = 0;
    for (int64_t k = 1; k <= n; k++) {
      double lam = 2 - 2 * cos((double)k * k_pi / (double)(n + 1));
      /* reference value's own error: cos and the products, a few eps of 4 */
      double tl = eb + 8 * k_eps * 4;
      if (fabs(w[k - 1] - lam) > tl) badl++;
      if (fabs(w[k - 1] - lam) / tl > worst_l) worst_l = fabs(w[k - 1] - lam) / tl;
      double gap = INFINITY;
      if (k > 1) gap = fmin(gap, lam - (2 - 2 * cos((double)(k - 1) * k_pi / (double)(n + 1))));
      if (k < n) gap = fmin(gap, (2 - 2 * cos((double)(k + 1) * k_pi / (double)(n + 1))) - lam);
      /* reference vector with the sign convention */
      double ref[64], big = 0;
      int64_t bi = 0;
      for (int64_t j = 1; j <= n; j++) {
        ref[j - 1] = sqrt(2.0 / (double)(n + 1)) * sin((double)(j * k) * k_pi / (double)(n + 1));
        if (fabs(ref[j - 1]) > big * (1 + 1e-12)) big = fabs(ref[bi = j - 1]);
      }
      /* ties of |ref| are exact in theory: skip the sign comparison for vectors whose two largest
       * entries are within 1e-12 (the solver may pick either), compare up to sign then */
      double second = 0;
      for (int64_t j = 0; j < n; j++)
        if (j != bi && fabs(ref[j]) > second) second = fabs(ref[j]);
      double sgn = ref[bi] < 0 ? -1 : 1;
      double d2 = 0, d2m = 0;
      for (int64_t j = 0; j < n; j++) {
        d2 += (V[j * n + k - 1] - sgn * ref[j]) * (V[j * n + k - 1] - sgn * ref[j]);
        d2m += (V[j * n + k - 1] + sgn * ref[j]) * (V[j * n + k - 1] + sgn * ref[j]);
      }
      double dist = big - second < 1e-12 ? fmin(sqrt(d2), sqrt(d2m)) : sqrt(d2);
      double tv = sqrt(2.0) * eb / (gap - 2 * eb) + C_BACKWARD * n * k_eps + 16 * n * k_eps; /* + ref's sin error */
      if (dist > tv) badv++;
      if (dist / tv > worst_v) worst_v = dist / tv;
    }
    printf("  second-difference n=%lld: worst eigenvalue err/bound %.3g, eigenvector err/bound %.3g\n", (long long)n,
           worst_l, worst_v);
    RC_CHECK(st == RESQ_OK && badl == 0, "second-difference eigenvalues: %ld outside the bound", badl);
    RC_CHECK(badv == 0, "second-difference eigenvectors: %ld outside the bound", badv);
    free(A), free(V);
  }
  /* only the lower triangle is read: NaN in the strict upper triangle, and lda > n with padding */
  {
    const int64_t n = 20, lda = 23;
    double *A = dalloc(n * n), *B = dalloc(n * lda), w1[20], w2[20];
    rand_sym(&r, n, A, 1.0);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < lda; j++) B[i * lda + j] = j < n ? (j <= i ? A[i * n + j] : NAN) : -7.0;
    resq_status st;
    double *V = eigh_copy(n, A, w1, &st);
    size_t ws = resq_eigh_workspace_size(n);
    void *work = malloc(ws);
    resq_status st2 = resq_eigh_f64__ref(n, B, lda, w2, work, ws);
    long bad = 0, pad = 0;
    for (int64_t i = 0; i < n; i++) {
      bad += memcmp(B + i * lda, V + i * n, sizeof(double) * n) != 0;
      for (int64_t j = n; j < lda; j++) pad += B[i * lda + j] != -7.0;
    }
    RC_CHECK(st == RESQ_OK && st2 == RESQ_OK && bad == 0 && memcmp(w1, w2, sizeof w1) == 0,
             "NaN in the strict upper triangle + lda > n: %s, %ld rows differ from the symmetric run", resq_last_error(),
             bad);
    RC_CHECK(pad == 0, "padding beyond n untouched (%ld changed)", pad);
    free(A), free(B), free(V), free(work);
  }
}

static void case_eigh_random(void) {
  if (!rc_case("eigh_random_symmetric")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t sizes[] = {2, 3, 5, 8, 17, 31, 64, 100, 128, 256};
  double worst_res = 0, worst_orth = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    const int64_t n = sizes[si];
    for (int kind = 0; kind < 3; kind++) {
      if (n > 128 && kind == 2) continue;
      double *A = dalloc(n * n), *w = dalloc(n), *w2 = dalloc(n);
      if (kind == 0) {
        rand_sym(&r, n, A, 1.0); /* GOE-like */
      } else if (kind == 1) {
        /* clustered spectrum with exact repeats and a huge dynamic range (graded) */
        double *Q = haar(resq_rng_u64(&r), n), *lam = dalloc(n);
        for (int64_t i = 0; i < n; i++) lam[i] = (i % 3 == 0) ? 1e6 : (i % 3 == 1 ? 1.0 : -1e-6 * (double)i);
        sym_from_spectrum(n, Q, lam, A);
        free(Q), free(lam);
      } else {
        /* a covariance-like PSD matrix of rank n/2 (zero eigenvalues) scaled near underflow */
        int64_t k = n / 2 > 0 ? n / 2 : 1;
        double *X = dalloc(n * k);
        for (int64_t i = 0; i < n * k; i++) X[i] = resq_rng_normal(&r);
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = 0; j <= i; j++) {
            ld s = 0;
            for (int64_t c = 0; c < k; c++) s += (ld)X[i * k + c] * X[j * k + c];
            A[i * n + j] = A[j * n + i] = ldexp((double)s, -900);
          }
        free(X);
      }
      rc_note("n=%lld kind=%d", (long long)n, kind);
      resq_status st, st2;
      double *V = eigh_copy(n, A, w, &st);
      double *V2 = eigh_copy(n, A, w2, &st2);
      RC_CHECK(st == RESQ_OK, "n=%lld kind %d: %s", (long long)n, kind, resq_last_error());
      RC_CHECK(memcmp(V, V2, sizeof(double) * n * n) == 0 && memcmp(w, w2, sizeof(double) * n) == 0,
               "n=%lld kind %d: two runs differ (not deterministic)", (long long)n, kind);
      double res, orth, an = fro_sym(n, A, n);
      eig_quality(n, A, n, V, n, w, &res, &orth);
      double rr = res / (n * k_eps * an), ro = orth / (n * k_eps);
      if (rr > worst_res) worst_res = rr;
      if (ro > worst_orth) worst_orth = ro;
      RC_CHECK(res <= C_BACKWARD * n * k_eps * an, "n=%lld kind %d: ||AV - VW||_F / (n eps ||A||_F) = %.3g > %g",
               (long long)n, kind, rr, C_BACKWARD);
      RC_CHECK(orth <= C_BACKWARD * n * k_eps, "n=%lld kind %d: ||V^T V - I||_F / (n eps) = %.3g > %g", (long long)n,
               kind, ro, C_BACKWARD);
      long v = order_sign_violations(n, V, n, w);
      RC_CHECK(v == 0, "n=%lld kind %d: %ld order/sign-convention violations", (long long)n, kind, v);
      free(A), free(w), free(w2), free(V), free(V2);
    }
  }
  printf("  worst residual %.3g n eps ||A||_F, worst orthogonality %.3g n eps (bound %g)\n", worst_res, worst_orth,
         C_BACKWARD);
}

static void case_eigh_failures(void) {
  if (!rc_case("eigh_failures_write_nothing")) return;
  const int64_t n = 6;
  size_t ws = resq_eigh_workspace_size(n);
  void *work = malloc(ws);
  double A[36], w[6], A0[36];
  for (int i = 0; i < 36; i++) A[i] = (double)((i * 7) % 5) - 2.0;
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < i; j++) A[j * 6 + i] = A[i * 6 + j];
  A[5 * 6 + 2] = NAN;
  memcpy(A0, A, sizeof A);
  for (int i = 0; i < 6; i++) w[i] = 42.0;
  resq_status st = resq_eigh_f64__ref(n, A, n, w, work, ws);
  int untouched = memcmp(A, A0, sizeof A) == 0;
  for (int i = 0; i < 6; i++) untouched &= w[i] == 42.0;
  RC_CHECK(st == RESQ_ERR_NONFINITE && strstr(resq_last_error(), "[5][2]") && untouched,
           "NaN in the lower triangle: %s '%s', untouched %d", resq_status_name(st), resq_last_error(), untouched);
  A[5 * 6 + 2] = 1.0;
  RC_CHECK(resq_eigh_f64__ref(n, A, n, w, work, ws - 1) == RESQ_ERR_INVALID_ARG, "small workspace");
  RC_CHECK(resq_eigh_f64__ref(n, A, n - 1, w, work, ws) == RESQ_ERR_INVALID_ARG, "lda < n");
  RC_CHECK(resq_eigh_f64__ref(0, A, n, w, work, ws) == RESQ_ERR_INVALID_ARG, "n = 0");
  RC_CHECK(resq_eigh_f64__ref(n, NULL, n, w, work, ws) == RESQ_ERR_INVALID_ARG, "NULL A");
  RC_CHECK(resq_eigh_f64__ref(RESQ_PCA_MAX_D + 1, A, RESQ_PCA_MAX_D + 1, w, work, ws) == RESQ_ERR_TOO_LARGE,
           "n > RESQ_PCA_MAX_D");
  RC_CHECK(resq_eigh_workspace_size(0) == 0 && resq_eigh_workspace_size(RESQ_PCA_MAX_D + 1) == 0,
           "workspace size of invalid n is 0");
  free(work);
}

/* ------------------------------------------------------------------ accumulation */

static void llm_tokens(resq_rng *r, float *x, int64_t T, int64_t d) {
  /* per-channel scales with a few massive channels, f16-representable values */
  double *cs = dalloc(d);
  for (int64_t i = 0; i < d; i++) cs[i] = 0.2 + resq_rng_uniform_f64(r);
  for (int k = 0; k < 3 && d > 4; k++) cs[resq_rng_below(r, (uint64_t)d)] = 40 + 200 * resq_rng_uniform_f64(r);
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < d; i++) x[t * d + i] = resq_round_f16((float)(resq_rng_normal(r) * cs[i]));
  free(cs);
}

static void case_accum_streaming(void) {
  if (!rc_case("accum_streaming_bitexact")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t d = 48, T = 300, lds = 53;
  float *x = falloc(T * d), *xs = falloc(T * lds), *x16 = falloc(T * d);
  uint16_t *xh = (uint16_t *)calloc((size_t)(T * d), 2);
  llm_tokens(&r, x16, T, d); /* f16 values: their products sum nearly exactly */
  /* full 24-bit fp32 mantissas, so that the double sums round and the order shows */
  for (int64_t i = 0; i < T * d; i++) x[i] = x16[i] * (float)(1 + 0.5 * resq_rng_uniform_f64(&r));
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < lds; i++) xs[t * lds + i] = i < d ? x[t * d + i] : NAN; /* padding never read */
  for (int64_t i = 0; i < T * d; i++) xh[i] = resq_f32_to_f16(x16[i]);
  /* the contract's sum, written independently: token order, double, upper triangle */
  double *ref = dalloc(d * d);
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = i; j < d; j++) ref[i * d + j] += (double)x[t * d + i] * (double)x[t * d + j];
  /* the same sum in reverse token order differs somewhere: the order is observable */
  double *rev = dalloc(d * d);
  for (int64_t t = T - 1; t >= 0; t--)
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = i; j < d; j++) rev[i * d + j] += (double)x[t * d + i] * (double)x[t * d + j];
  RC_CHECK(memcmp(rev, ref, sizeof(double) * d * d) != 0, "the data make the summation order observable");
  resq_pca_accum one, many, half, half1, strided;
  RC_CHECK(resq_pca_accum_init(&one, d) == RESQ_OK && resq_pca_accum_init(&many, d) == RESQ_OK &&
               resq_pca_accum_init(&half, d) == RESQ_OK && resq_pca_accum_init(&half1, d) == RESQ_OK &&
               resq_pca_accum_init(&strided, d) == RESQ_OK,
           "init");
  RC_CHECK(resq_pca_accum_f32__ref(&one, T, x, d) == RESQ_OK, "one batch");
  /* random splits including empty batches and single tokens */
  int64_t t0 = 0, nb = 0;
  while (t0 < T) {
    int64_t k = (int64_t)resq_rng_below(&r, 70);
    if (k > T - t0) k = T - t0;
    if (resq_pca_accum_f32__ref(&many, k, x + t0 * d, d) != RESQ_OK) RC_FAIL("batch at %lld", (long long)t0);
    t0 += k;
    nb++;
  }
  RC_CHECK(resq_pca_accum_f16__ref(&half, T / 2, xh, d) == RESQ_OK &&
               resq_pca_accum_f16__ref(&half, T - T / 2, xh + (T / 2) * d, d) == RESQ_OK,
           "f16 entry");
  RC_CHECK(resq_pca_accum_f32__ref(&half1, T, x16, d) == RESQ_OK, "f32 entry on the f16 values");
  RC_CHECK(resq_pca_accum_f32__ref(&strided, T, xs, lds) == RESQ_OK, "strided entry");
  rc_equal_bytes(one.S, ref, sizeof(double) * d * d, "S vs the contract's token-order sum");
  rc_equal_bytes(many.S, one.S, sizeof(double) * d * d, "S over random batches vs one batch");
  rc_equal_bytes(half.S, half1.S, sizeof(double) * d * d, "S from f16 (two batches) vs from the widened f32");
  rc_equal_bytes(strided.S, one.S, sizeof(double) * d * d, "S with ldx > d");
  RC_CHECK(one.count == T && many.count == T && half.count == T && strided.count == T,
           "count = %lld tokens (got %lld %lld %lld %lld, %lld batches)", (long long)T, (long long)one.count,
           (long long)many.count, (long long)half.count, (long long)strided.count, (long long)nb);
  long lower = 0;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < i; j++) lower += one.S[i * d + j] != 0.0;
  RC_CHECK(lower == 0, "strictly lower triangle of S stays 0 (%ld entries written)", lower);
  /* covariance: C = S/T mirrored, shift = damp * mean(diag) in the contract's order */
  double *C = dalloc(d * d), shift = -1;
  RC_CHECK(resq_pca_covariance_f64__ref(&one, 0.01, C, d, &shift) == RESQ_OK, "covariance");
  double tr = 0;
  for (int64_t i = 0; i < d; i++) tr += ref[i * d + i] / (double)T;
  double want_shift = 0.01 * (tr / (double)d);
  long badc = 0;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      double c = (i <= j ? ref[i * d + j] : ref[j * d + i]) / (double)T;
      if (i == j) c = c + want_shift;
      badc += memcmp(&c, &C[i * d + j], sizeof c) != 0;
    }
  RC_CHECK(shift == want_shift && badc == 0, "C and shift follow the contract bit for bit (%ld entries differ)", badc);
  resq_pca_accum_reset(&many);
  RC_CHECK(many.count == 0 && many.S[0] == 0.0, "reset");
  resq_pca_accum_free(&one), resq_pca_accum_free(&many), resq_pca_accum_free(&half), resq_pca_accum_free(&strided);
  resq_pca_accum_free(&half1);
  resq_pca_accum_free(&one); /* double free of a zeroed struct is safe */
  free(x), free(xs), free(xh), free(ref), free(C), free(x16), free(rev);
}

static void case_accum_failures(void) {
  if (!rc_case("accum_bad_input")) return;
  const int64_t d = 8;
  resq_pca_accum a;
  RC_CHECK(resq_pca_accum_init(&a, d) == RESQ_OK, "init");
  float x[5 * 8];
  for (int i = 0; i < 40; i++) x[i] = (float)(i % 7) - 3.0f;
  RC_CHECK(resq_pca_accum_f32__ref(&a, 5, x, d) == RESQ_OK, "first batch");
  double *snap = dalloc(d * d);
  memcpy(snap, a.S, sizeof(double) * d * d);
  x[3 * 8 + 6] = NAN;
  resq_status st = resq_pca_accum_f32__ref(&a, 5, x, d);
  RC_CHECK(st == RESQ_ERR_NONFINITE && strstr(resq_last_error(), "x[3][6]") &&
               memcmp(snap, a.S, sizeof(double) * d * d) == 0 && a.count == 5,
           "NaN at [3][6]: %s '%s', nothing added (count %lld)", resq_status_name(st), resq_last_error(),
           (long long)a.count);
  uint16_t h[8] = {0x3c00, 0x3c00, 0x3c00, 0x3c00, 0x3c00, 0x3c00, 0x3c00, 0x7c00}; /* +Inf last */
  st = resq_pca_accum_f16__ref(&a, 1, h, d);
  RC_CHECK(st == RESQ_ERR_NONFINITE && strstr(resq_last_error(), "x[0][7]") && a.count == 5, "f16 Inf: %s '%s'",
           resq_status_name(st), resq_last_error());
  RC_CHECK(resq_pca_accum_f32__ref(&a, 0, NULL, d) == RESQ_OK && a.count == 5, "zero tokens are fine");
  RC_CHECK(resq_pca_accum_f32__ref(&a, -1, x, d) == RESQ_ERR_INVALID_ARG, "T < 0");
  RC_CHECK(resq_pca_accum_f32__ref(&a, 2, x, d - 1) == RESQ_ERR_INVALID_ARG, "ldx < d");
  double C[64], sh;
  RC_CHECK(resq_pca_covariance_f64__ref(&a, -0.5, C, d, &sh) == RESQ_ERR_INVALID_ARG, "negative damp");
  RC_CHECK(resq_pca_covariance_f64__ref(&a, NAN, C, d, &sh) == RESQ_ERR_INVALID_ARG, "NaN damp");
  resq_pca_accum z;
  RC_CHECK(resq_pca_accum_init(&z, d) == RESQ_OK, "init");
  double ev[8], U[64];
  size_t ws = resq_pca_basis_workspace_size(d);
  void *work = malloc(ws);
  for (int i = 0; i < 8; i++) ev[i] = 5.0;
  st = resq_pca_basis_f64__ref(&z, 0.01, ev, U, d, work, ws);
  RC_CHECK(st == RESQ_ERR_DEGENERATE && strstr(resq_last_error(), "no calibration tokens") && ev[0] == 5.0,
           "zero tokens: %s '%s'", resq_status_name(st), resq_last_error());
  float zeros[16] = {0};
  resq_pca_accum_f32__ref(&z, 2, zeros, d);
  st = resq_pca_basis_f64__ref(&z, 0.01, ev, U, d, work, ws);
  RC_CHECK(st == RESQ_ERR_DEGENERATE && ev[0] == 5.0, "all-zero data: %s '%s'", resq_status_name(st),
           resq_last_error());
  RC_CHECK(resq_pca_basis_f64__ref(&a, 0.01, ev, U, d, work, ws - 1) == RESQ_ERR_INVALID_ARG, "small workspace");
  resq_pca_accum bad;
  RC_CHECK(resq_pca_accum_init(&bad, 0) == RESQ_ERR_INVALID_ARG && bad.S == NULL, "d = 0");
  RC_CHECK(resq_pca_accum_init(&bad, RESQ_PCA_MAX_D + 1) == RESQ_ERR_TOO_LARGE && bad.S == NULL,
           "d > RESQ_PCA_MAX_D refused before allocating");
  resq_pca_accum none;
  memset(&none, 0, sizeof none);
  RC_CHECK(resq_pca_accum_f32__ref(&none, 1, x, d) == RESQ_ERR_INVALID_ARG, "uninitialized accumulator");
  resq_pca_accum_free(&a), resq_pca_accum_free(&z);
  free(snap), free(work);
}

/* ------------------------------------------------------------------ damping, outlier subspace */

static void case_damping(void) {
  if (!rc_case("damping_shift_and_projector")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t d = 64, T = 400, k = 8;
  float *x = falloc(T * d);
  llm_tokens(&r, x, T, d);
  resq_pca_accum a;
  resq_pca_accum_init(&a, d);
  resq_pca_accum_f32__ref(&a, T, x, d);
  double *C0 = dalloc(d * d), *C1 = dalloc(d * d), sh0, sh1;
  resq_pca_covariance_f64__ref(&a, 0.0, C0, d, &sh0);
  resq_pca_covariance_f64__ref(&a, 0.01, C1, d, &sh1);
  double mean = 0;
  for (int64_t i = 0; i < d; i++) mean += C0[i * d + i];
  mean /= (double)d;
  RC_CHECK(sh0 == 0.0 && sh1 == 0.01 * mean, "shift = 0.01 * mean(diag) exactly (%.17g vs %.17g)", sh1, 0.01 * mean);
  double *w0 = dalloc(d), *w1 = dalloc(d), *U0 = dalloc(d * d), *U1 = dalloc(d * d);
  size_t ws = resq_pca_basis_workspace_size(d);
  void *work = malloc(ws);
  RC_CHECK(resq_pca_basis_f64__ref(&a, 0.0, w0, U0, d, work, ws) == RESQ_OK &&
               resq_pca_basis_f64__ref(&a, 0.01, w1, U1, d, work, ws) == RESQ_OK,
           "bases");
  /* the basis function is the covariance + eigh */
  double *we = dalloc(d);
  double *Ve = eigh_copy(d, C1, we, NULL);
  RC_CHECK(memcmp(Ve, U1, sizeof(double) * d * d) == 0 && memcmp(we, w1, sizeof(double) * d) == 0,
           "resq_pca_basis = eigh(resq_pca_covariance) bit for bit");
  /* (B2): each solve is exact for C + E_s with |E_s| <= eta_s, so by Weyl
   * |(w1 - w0) - shift| <= eta_0 + eta_1 (+ the rounding of C1's diagonal add, u|C1_ii|) */
  double r0, o0, r1, o1;
  double n0 = fro_sym(d, C0, d), n1 = fro_sym(d, C1, d);
  eig_quality(d, C0, d, U0, d, w0, &r0, &o0);
  eig_quality(d, C1, d, U1, d, w1, &r1, &o1);
  double e0 = eta_of(r0, o0, n0), e1 = eta_of(r1, o1, n1), cmax = 0;
  for (int64_t i = 0; i < d; i++) cmax = fmax(cmax, C1[i * d + i]);
  double tol = e0 + e1 + k_eps * cmax;
  double worst = 0;
  for (int64_t j = 0; j < d; j++) worst = fmax(worst, fabs((w1[j] - w0[j]) - sh1));
  RC_CHECK(worst <= tol, "eigenvalue shift: max |(w1-w0) - shift| = %.3g > %.3g", worst, tol);
  RC_CHECK(sh1 > 1e3 * tol, "the shift (%.3g) is far above the tolerance (%.3g): the check is not vacuous", sh1, tol);
  /* projector of the top k unchanged: both solves within (B2) of the exact projector of C0 (C1 has the same) */
  double gap = w0[d - k] - w0[d - k - 1];
  double pd = proj_dist(d, k, U0, d, U1, d);
  double ptol = sqrt(2.0) * e0 / (gap - 2 * e0) + 2 * o0 + sqrt(2.0) * (e1 + k_eps * cmax) / (gap - 2 * e1) + 2 * o1;
  printf("  damping: |dw - shift| %.3g (tol %.3g), projector distance %.3g (tol %.3g, gap %.3g)\n", worst, tol, pd, ptol,
         gap);
  RC_CHECK(gap > 0 && pd <= ptol, "top-%lld projector changed by damping: %.3g > %.3g", (long long)k, pd, ptol);
  resq_pca_accum_free(&a);
  free(x), free(C0), free(C1), free(w0), free(w1), free(U0), free(U1), free(work), free(we), free(Ve);
}

/* Tokens x_t = B y_t with y_t[k] = sigma_k * s_t * H_T[pi(t)][c_k]: H_T a Sylvester
 * matrix, s_t random signs, pi a random row permutation, c_k distinct columns. The
 * columns of H (after row signs and permutation) are orthogonal over the T tokens,
 * so sum_t y y^T = T diag(sigma^2) EXACTLY and C = B diag(sigma^2) B^T: the top-r
 * eigenvectors are B's top-r columns. B mixes channel-aligned outliers (massive
 * activations in fixed channels) with random directions. */
static void case_outlier_subspace(void) {
  if (!rc_case("pca_outlier_subspace")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t d = 256, T = 512, rr = d / 8, nch = 4, nout = 8;
  /* B: columns 0..nch-1 are e_{ch[k]}; the rest an orthonormal basis of the other channels */
  int64_t ch[4];
  for (int64_t k = 0; k < nch; k++) {
    int dup;
    do {
      ch[k] = (int64_t)resq_rng_below(&r, (uint64_t)d);
      dup = 0;
      for (int64_t j = 0; j < k; j++) dup |= ch[j] == ch[k];
    } while (dup);
  }
  double *Bm = dalloc(d * d), *Qr = haar(resq_rng_u64(&r), d - nch);
  int64_t *other = (int64_t *)calloc((size_t)d, sizeof(int64_t));
  int64_t no = 0;
  for (int64_t i = 0; i < d; i++) {
    int is = 0;
    for (int64_t k = 0; k < nch; k++) is |= ch[k] == i;
    if (!is) other[no++] = i;
  }
  for (int64_t k = 0; k < nch; k++) Bm[ch[k] * d + k] = 1.0;
  for (int64_t a = 0; a < no; a++)
    for (int64_t c = 0; c < d - nch; c++) Bm[other[a] * d + nch + c] = Qr[a * (d - nch) + c];
  /* sigma: 4 channel outliers 100-200, 4 random-direction outliers 20-50, then
   * 24 moderate 5-10 (the rest of the top r), the bulk 0.5-2 */
  double *sig = dalloc(d);
  for (int64_t k = 0; k < d; k++) {
    double u = resq_rng_uniform_f64(&r);
    /* channel outliers 100, 130, 160, 190 (+ up to 5): well separated from each other */
    sig[k] = k < nch ? 100 + 30 * (double)k + 5 * u : k < nout ? 20 + 30 * u : k < rr ? 5 + 5 * u : 0.5 + 1.5 * u;
  }
  int64_t *perm = (int64_t *)calloc((size_t)T, sizeof(int64_t)), *col = (int64_t *)calloc((size_t)d, sizeof(int64_t));
  for (int64_t t = 0; t < T; t++) perm[t] = t;
  for (int64_t t = T - 1; t > 0; t--) {
    int64_t j = (int64_t)resq_rng_below(&r, (uint64_t)(t + 1)), tmp = perm[t];
    perm[t] = perm[j];
    perm[j] = tmp;
  }
  for (int64_t k = 0; k < d; k++) col[k] = 1 + 2 * k; /* distinct columns of H_512 */
  float *x = falloc(T * d);
  double *y = dalloc(d);
  for (int64_t t = 0; t < T; t++) {
    double s = (resq_rng_u64(&r) >> 63) ? -1.0 : 1.0;
    for (int64_t k = 0; k < d; k++)
      y[k] = sig[k] * s * (__builtin_parityll((unsigned long long)(perm[t] & col[k])) ? -1.0 : 1.0);
    for (int64_t i = 0; i < d; i++) {
      ld acc = 0;
      for (int64_t k = 0; k < d; k++) acc += (ld)Bm[i * d + k] * y[k];
      x[t * d + i] = (float)acc;
    }
  }
  resq_pca_accum a;
  resq_pca_accum_init(&a, d);
  /* stream it in a few uneven batches, like calibration files */
  resq_pca_accum_f32__ref(&a, 100, x, d);
  resq_pca_accum_f32__ref(&a, 1, x + 100 * d, d);
  resq_pca_accum_f32__ref(&a, T - 101, x + 101 * d, d);
  double *w = dalloc(d), *U = dalloc(d * d), *C = dalloc(d * d), shift;
  size_t ws = resq_pca_basis_workspace_size(d);
  void *work = malloc(ws);
  RC_CHECK(resq_pca_basis_f64__ref(&a, 0.01, w, U, d, work, ws) == RESQ_OK, "basis: %s", resq_last_error());
  resq_pca_covariance_f64__ref(&a, 0.01, C, d, &shift);
  /* E = C_computed - (B diag(sigma^2) B^T + shift I): the fp32 rounding of x and
   * the double sums, measured in long double. Sorted sigma^2 gives the exact gap. */
  ld ef = 0;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      ld s = 0;
      for (int64_t k = 0; k < d; k++) s += (ld)Bm[i * d + k] * sig[k] * sig[k] * Bm[j * d + k];
      if (i == j) s += shift;
      ef += ((ld)C[i * d + j] - s) * ((ld)C[i * d + j] - s);
    }
  double eF = (double)sqrtl(ef);
  double res, orth, cn = fro_sym(d, C, d);
  eig_quality(d, C, d, U, d, w, &res, &orth);
  double eta = eta_of(res, orth, cn);
  double min_top = INFINITY, max_rest = 0;
  for (int64_t k = 0; k < d; k++) {
    if (k < rr) min_top = fmin(min_top, sig[k] * sig[k]);
    else max_rest = fmax(max_rest, sig[k] * sig[k]);
  }
  double gap = min_top - max_rest;
  /* B's own orthogonality (a Haar block, (B1) level) enters as 2 w_B */
  double rb, ob;
  {
    double *Bw = dalloc(d);
    double *I = dalloc(d * d);
    eig_quality(d, I, d, Bm, d, Bw, &rb, &ob); /* zero matrix: res 0, orth of B */
    free(Bw), free(I);
  }
  /* P_B onto B's first rr columns, laid out as the LAST rr columns of a d x d matrix */
  double *Bl = dalloc(d * d);
  for (int64_t i = 0; i < d; i++)
    for (int64_t k = 0; k < rr; k++) Bl[i * d + (d - rr) + k] = Bm[i * d + k];
  double pd = proj_dist(d, rr, U, d, Bl, d);
  double tot = eF + eta;
  double ptol = sqrt(2.0) * tot / (gap - 2 * tot) + 2 * orth + 2 * ob;
  printf("  outliers: ||E||_F %.3g, eta %.3g, gap %.3g -> projector distance %.3g (tol %.3g)\n", eF, eta, gap, pd,
         ptol);
  RC_CHECK(gap - 2 * tot > 0 && pd <= ptol, "top-%lld subspace vs the construction: %.3g > %.3g", (long long)rr, pd, ptol);
  RC_CHECK(ptol < 1e-2, "the bound is informative (%.3g)", ptol);
  /* each outlier direction is captured: ||P b||^2 >= 1 - (||P - P_B||^2 + 2 w_B) */
  long missed = 0;
  for (int64_t k = 0; k < nout; k++) {
    ld cap = 0;
    for (int64_t c = d - rr; c < d; c++) {
      ld dot = 0;
      for (int64_t i = 0; i < d; i++) dot += (ld)U[i * d + c] * Bm[i * d + k];
      cap += dot * dot;
    }
    missed += (double)cap < 1 - (ptol * ptol + 2 * ob);
  }
  RC_CHECK(missed == 0, "%ld of %lld outlier directions not captured by the top-%lld subspace", missed,
           (long long)nout, (long long)rr);
  /* the 4 massive channels: each has an eigenvector on its axis with a positive
   * (sign convention) entry cos(theta) >= 1 - sin(theta), sin(theta) <= sqrt2 tot /
   * (gap_k - 2 tot) (Davis-Kahan for one eigenvalue, gap_k its distance to the rest) */
  long axis_bad = 0;
  for (int64_t k = 0; k < nch; k++) {
    double gk = INFINITY, best = 0;
    for (int64_t j = 0; j < d; j++)
      if (j != k) gk = fmin(gk, fabs(sig[k] * sig[k] - sig[j] * sig[j]));
    double sn = sqrt(2.0) * tot / (gk - 2 * tot);
    for (int64_t c = d - nout; c < d; c++) best = fmax(best, U[ch[k] * d + c]);
    axis_bad += !(gk > 2 * tot) || best < 1 - sn - 2 * orth - 2 * ob;
  }
  RC_CHECK(axis_bad == 0, "%ld massive channels without a positive (sign convention) eigenvector on their axis",
           axis_bad);
  /* eigenvalues: sorted sigma^2 + shift within ||E||_2 + eta (Weyl) */
  double *s2 = dalloc(d);
  for (int64_t k = 0; k < d; k++) s2[k] = sig[k] * sig[k];
  for (int64_t i = 1; i < d; i++)
    for (int64_t j = i; j > 0 && s2[j - 1] > s2[j]; j--) {
      double t = s2[j];
      s2[j] = s2[j - 1];
      s2[j - 1] = t;
    }
  double werr = 0;
  for (int64_t k = 0; k < d; k++) werr = fmax(werr, fabs(w[k] - (s2[k] + shift)));
  RC_CHECK(werr <= tot, "eigenvalues vs sigma^2 + shift: %.3g > %.3g", werr, tot);
  resq_pca_accum_free(&a);
  free(Bm), free(Qr), free(other), free(sig), free(perm), free(col), free(x), free(y), free(w), free(U), free(C);
  free(work), free(Bl), free(s2);
}

/* ------------------------------------------------------------------ Haar rotations */

static void case_haar(void) {
  if (!rc_case("haar_orthogonal_sign_fix")) return;
  uint64_t seed = rc_seed();
  static const int64_t sizes[] = {1, 2, 3, 7, 64, 200};
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    const int64_t n = sizes[si];
    rc_note("n=%lld", (long long)n);
    double *Q = haar(seed + si, n), *Q2 = haar(seed + si, n), *Q3 = haar(seed + si + 1000, n);
    RC_CHECK(memcmp(Q, Q2, sizeof(double) * n * n) == 0, "n=%lld: same seed, same Q", (long long)n);
    RC_CHECK(n == 1 || memcmp(Q, Q3, sizeof(double) * n * n) != 0, "n=%lld: another seed, another Q", (long long)n);
    double *z = dalloc(n), res, orth;
    double *Z = dalloc(n * n);
    eig_quality(n, Z, n, Q, n, z, &res, &orth); /* orthogonality only */
    /* Householder QR: ||Q^T Q - I||_F <= (B1)-type p(n) u; we use the same 8 n eps */
    RC_CHECK(orth <= C_BACKWARD * n * k_eps, "n=%lld: ||Q^T Q - I||_F = %.3g > %.3g", (long long)n, orth,
             C_BACKWARD * n * k_eps);
    /* sign fix: regenerate A (same seed, row-major normals); Q^T A must be upper
     * triangular with a positive diagonal. For i > j, (Q^T A)_ij is only rounding:
     * |.| <= (||dA e_j|| + ||Q - Q*||_F ||a_j||) with the Householder backward
     * error ||dA e_j|| <= 8 n eps ||a_j|| and ||Q - Q*||_F <= 8 n eps (B1 form). */
    resq_rng g;
    resq_rng_init(&g, seed + si);
    double *A = dalloc(n * n);
    for (int64_t i = 0; i < n * n; i++) A[i] = resq_rng_normal(&g);
    long below = 0, diag = 0;
    double worst = 0;
    for (int64_t j = 0; j < n; j++) {
      ld an = 0;
      for (int64_t k = 0; k < n; k++) an += (ld)A[k * n + j] * A[k * n + j];
      double aj = (double)sqrtl(an);
      for (int64_t i = 0; i < n; i++) {
        ld s = 0;
        for (int64_t k = 0; k < n; k++) s += (ld)Q[k * n + i] * A[k * n + j];
        if (i > j) {
          double tol = 2 * C_BACKWARD * n * k_eps * aj;
          below += fabs((double)s) > tol;
          worst = fmax(worst, fabs((double)s) / tol);
        }
        if (i == j) diag += !(s > 0);
      }
    }
    RC_CHECK(below == 0, "n=%lld: Q^T A not upper triangular: %ld entries over the bound (worst %.3g)", (long long)n,
             below, worst);
    RC_CHECK(diag == 0, "n=%lld: %ld non-positive diagonal entries of R = Q^T A after the sign fix", (long long)n, diag);
    /* first column: q_0 = a_0 / ||a_0|| */
    ld a0 = 0;
    for (int64_t k = 0; k < n; k++) a0 += (ld)A[k * n] * A[k * n];
    double q0err = 0;
    for (int64_t k = 0; k < n; k++) q0err = fmax(q0err, fabs(Q[k * n] - (double)(A[k * n] / sqrtl(a0))));
    RC_CHECK(q0err <= C_BACKWARD * n * k_eps, "n=%lld: q_0 differs from a_0/|a_0| by %.3g", (long long)n, q0err);
    free(Q), free(Q2), free(Q3), free(z), free(Z), free(A);
  }
  /* Haar statistics (n = 3, K = 600 seeds): E[Q_ij] = 0, E[Q_ij^2] = 1/n.
   * Var(Q_ij) = 1/n, Var(Q_ij^2) <= E[Q^4] = 3/(n(n+2)); 6-sigma bounds on the means
   * (false alarm < 2e-9 per entry). Without the sign fix, Q_00 = -|a_00|/|a_0| < 0
   * always (mean ~ -0.47): a bias the first check sees. */
  {
    const int64_t n = 3, K = 600;
    double m1[9] = {0}, m2[9] = {0};
    size_t ws = resq_random_orthogonal_workspace_size(n);
    void *w = malloc(ws);
    double Q[9];
    for (int64_t s = 0; s < K; s++) {
      resq_random_orthogonal_f64__ref(seed * 31 + (uint64_t)s, n, Q, n, w, ws);
      for (int i = 0; i < 9; i++) {
        m1[i] += Q[i] / K;
        m2[i] += Q[i] * Q[i] / K;
      }
    }
    double b1 = 6 * sqrt(1.0 / n / K), b2 = 6 * sqrt(3.0 / (n * (n + 2)) / K);
    long bad = 0;
    for (int i = 0; i < 9; i++) bad += fabs(m1[i]) > b1 || fabs(m2[i] - 1.0 / n) > b2;
    RC_CHECK(bad == 0, "Haar moments: %ld of 9 entries off (E[Q00] = %.3f, bound %.3f; E[Q00^2] = %.3f)", bad, m1[0],
             b1, m2[0]);
    free(w);
  }
}

static void case_blockdiag(void) {
  if (!rc_case("blockdiag_draw_order_and_assembly")) return;
  uint64_t seed = rc_seed();
  const int64_t d = 40;
  size_t ws = resq_random_orthogonal_workspace_size(d);
  void *w = malloc(ws);
  static const int64_t rs[] = {5, 0, 40, 1};
  for (size_t ri = 0; ri < 4; ri++) {
    const int64_t r = rs[ri], lo = d - r;
    rc_note("d=%lld r=%lld", (long long)d, (long long)r);
    double *R = dalloc(d * d), *want = dalloc(d * d);
    RC_CHECK(resq_pca_blockdiag_f64__ref(seed, d, r, R, d, w, ws) == RESQ_OK, "blockdiag r=%lld", (long long)r);
    /* one generator: R_lo first, then R_hi from the same stream */
    resq_rng g;
    resq_rng_init(&g, seed);
    if (lo > 0) resq_random_orthogonal_rng_f64__ref(&g, lo, want, d, w, ws);
    if (r > 0) resq_random_orthogonal_rng_f64__ref(&g, r, want + lo * d + lo, d, w, ws);
    rc_equal_bytes(R, want, sizeof(double) * d * d, "blockdiag vs R_lo then R_hi from one stream");
    if (r == 0) {
      double *Q = haar(seed, d);
      rc_equal_bytes(R, Q, sizeof(double) * d * d, "r = 0: R is the order-d draw");
      free(Q);
    }
    /* assembly: U = U_pca R exactly in the contract's order; top-r subspace kept */
    double *Up = haar(seed ^ 0x55, d), *U = dalloc(d * d), *Uw = dalloc(d * d);
    RC_CHECK(resq_pca_apply_blockdiag_f64__ref(d, r, Up, d, R, d, U, d) == RESQ_OK, "apply");
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = 0; j < d; j++) {
        double acc = 0;
        for (int64_t k = j < lo ? 0 : lo; k < (j < lo ? lo : d); k++) acc += Up[i * d + k] * R[k * d + j];
        Uw[i * d + j] = acc;
      }
    rc_equal_bytes(U, Uw, sizeof(double) * d * d, "U = U_pca R in the contract's order");
    if (r > 0 && r < d) {
      double pd = proj_dist(d, r, U, d, Up, d);
      /* both have orthogonality <= 8 d eps (B1 form) and U's products add d eps per entry */
      double tol = 4 * C_BACKWARD * d * k_eps + 2 * d * k_eps * sqrt((double)(d * d));
      RC_CHECK(pd <= tol, "the top-%lld subspace of U is U_pca's: %.3g > %.3g", (long long)r, pd, tol);
    }
    free(R), free(want), free(Up), free(U), free(Uw);
  }
  double R1[4];
  RC_CHECK(resq_pca_blockdiag_f64__ref(seed, 2, 3, R1, 2, w, ws) == RESQ_ERR_INVALID_ARG, "r > d refused");
  RC_CHECK(resq_pca_blockdiag_f64__ref(seed, 2, -1, R1, 2, w, ws) == RESQ_ERR_INVALID_ARG, "r < 0 refused");
  RC_CHECK(resq_random_orthogonal_f64__ref(seed, 3, R1, 3, w, 8) == RESQ_ERR_INVALID_ARG, "small workspace");
  free(w);
}

/* ------------------------------------------------------------------ K8 */

static void case_k8(void) {
  if (!rc_case("k8_codes_and_orthogonality")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t hds[] = {64, 128};
  for (int hi = 0; hi < 2; hi++) {
    const int64_t hd = hds[hi];
    rc_note("hd=%lld", (long long)hd);
    /* a key basis: eigenvectors of a random key covariance, times blockdiag(R2_lo, R2_hi) */
    double *A = dalloc(hd * hd), *wv = dalloc(hd);
    float *kx = falloc(4 * hd * hd);
    llm_tokens(&r, kx, 4 * hd, hd);
    resq_pca_accum a;
    resq_pca_accum_init(&a, hd);
    resq_pca_accum_f32__ref(&a, 4 * hd, kx, hd);
    size_t ws = resq_pca_basis_workspace_size(hd);
    void *work = malloc(ws);
    resq_pca_basis_f64__ref(&a, 0.01, wv, A, hd, work, ws);
    double *R = dalloc(hd * hd), *Uk = dalloc(hd * hd);
    size_t rws = resq_random_orthogonal_workspace_size(hd);
    void *rw = malloc(rws);
    resq_pca_blockdiag_f64__ref(resq_rng_u64(&r), hd, hd / 8, R, hd, rw, rws);
    resq_pca_apply_blockdiag_f64__ref(hd, hd / 8, A, hd, R, hd, Uk, hd);
    int8_t *codes = (int8_t *)calloc((size_t)(hd * hd), 1);
    float *K8 = falloc(hd * hd);
    double s = 0;
    RC_CHECK(resq_k8_f64__ref(hd, Uk, hd, codes, &s, K8) == RESQ_OK, "k8");
    double amax = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < hd * hd; i++)
      if (fabs(Uk[i]) > amax) amax = fabs(Uk[at = i]);
    RC_CHECK(s == fmax(amax, 1e-5) / 127.0, "scale = max|Uk| / 127 (%.17g)", s);
    long bad_code = 0, bad_val = 0, maxcode = 0;
    double ef = 0;
    for (int64_t i = 0; i < hd * hd; i++) {
      double q = nearbyint(Uk[i] / s);
      q = q < -128 ? -128 : q > 127 ? 127 : q;
      bad_code += codes[i] != (int8_t)q;
      bad_val += K8[i] != (float)(s * (double)codes[i]);
      if (labs((long)codes[i]) > maxcode) maxcode = labs((long)codes[i]);
      ef += ((double)K8[i] - Uk[i]) * ((double)K8[i] - Uk[i]);
    }
    RC_CHECK(bad_code == 0, "codes = clamp(rint(Uk/s)): %ld differ", bad_code);
    RC_CHECK(bad_val == 0, "K8 = fp32(s*code): %ld differ", bad_val);
    RC_CHECK(maxcode == 127 && labs((long)codes[at]) == 127, "max |code| = 127 at the largest |Uk| (%ld, %d)", maxcode,
             codes[at]);
    /* K8 = Uk + E, |E_ij| <= s/2 + u32 |K8_ij| (rint, then fp32 rounding; s*code
     * in double adds eps) -> ||E||_F <= hd (s/2 + u32 a)(1 + eps). Then
     * ||K8^T K8 - I||_F <= 2||E||_F + ||E||_F^2 + ||Uk^T Uk - I||_F. */
    double Ebound = (double)hd * (s / 2 + k_u32 * amax) * (1 + 1e-12);
    RC_CHECK(sqrt(ef) <= Ebound, "||K8 - Uk||_F = %.3g > %.3g", sqrt(ef), Ebound);
    double *K8d = dalloc(hd * hd), *Z = dalloc(hd * hd), *z = dalloc(hd), res, ok8, ouk;
    for (int64_t i = 0; i < hd * hd; i++) K8d[i] = K8[i];
    eig_quality(hd, Z, hd, K8d, hd, z, &res, &ok8);
    eig_quality(hd, Z, hd, Uk, hd, z, &res, &ouk);
    double otol = 2 * Ebound + Ebound * Ebound + ouk;
    printf("  k8 hd=%lld: s=%.4g, ||K8-Uk||_F %.3g (bound %.3g), ||K8^T K8 - I||_F %.3g (bound %.3g)\n", (long long)hd,
           s, sqrt(ef), Ebound, ok8, otol);
    RC_CHECK(ok8 <= otol, "K8 near-orthogonality %.3g > %.3g", ok8, otol);
    RC_CHECK(ok8 > 0, "K8 is not exactly orthogonal (quantized), the check is not vacuous");
    resq_pca_accum_free(&a);
    free(A), free(wv), free(kx), free(work), free(R), free(Uk), free(rw), free(codes), free(K8), free(K8d), free(Z),
        free(z);
  }
  /* the 1e-5 floor, NaN, NULL outputs */
  double tiny[4] = {1e-7, -2e-7, 0, 3e-8}, s;
  int8_t c[4];
  RC_CHECK(resq_k8_f64__ref(2, tiny, 2, c, &s, NULL) == RESQ_OK && s == 1e-5 / 127.0 && c[0] == 1 && c[1] == -3,
           "floor a = 1e-5: s = %.17g, codes %d %d", s, c[0], c[1]);
  tiny[3] = NAN;
  c[0] = 99;
  RC_CHECK(resq_k8_f64__ref(2, tiny, 2, c, &s, NULL) == RESQ_ERR_NONFINITE && c[0] == 99, "NaN refused, nothing written");
  RC_CHECK(resq_k8_f64__ref(2, tiny, 1, c, &s, NULL) == RESQ_ERR_INVALID_ARG, "ldk < hd");
}

/* ------------------------------------------------------------------ fusion */

/* y[m][n] = sum_k x[m][k] W[n][k] in long double, and sum |x||W| */
static void gemm_ld(int64_t M, int64_t N, int64_t K, const double *x, const double *W, ld *y, ld *ya) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      ld s = 0, sa = 0;
      for (int64_t k = 0; k < K; k++) {
        s += (ld)x[m * K + k] * W[n * K + k];
        sa += fabsl((ld)x[m * K + k] * W[n * K + k]);
      }
      y[m * N + n] = s;
      if (ya) ya[m * N + n] = sa;
    }
}

static double *to_d(const float *f, int64_t n) {
  double *d = dalloc(n);
  for (int64_t i = 0; i < n; i++) d[i] = f[i];
  return d;
}

static void case_fusion(void) {
  if (!rc_case("fusion_preserves_the_layer")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t d = 64, N = 24, M = 5;
  double *U = haar(resq_rng_u64(&r), d), *Zd = dalloc(d * d), *zd = dalloc(d), res, oU;
  eig_quality(d, Zd, d, U, d, zd, &res, &oU);
  size_t ws = resq_fuse_workspace_size(d);
  void *work = malloc(ws);
  /* ---- input side: W [N][d] -> W U; (x U)(W U)^T = x W^T ---- */
  float *W = falloc(N * d), *Wr = falloc(N * d), *Wi = falloc(N * d);
  for (int64_t i = 0; i < N * d; i++) W[i] = (float)resq_rng_normal(&r) * 0.05f;
  RC_CHECK(resq_fuse_input_f32__ref(N, d, W, d, U, d, Wr, d, work, ws) == RESQ_OK, "input side: %s", resq_last_error());
  long bad = 0;
  for (int64_t a = 0; a < N; a++)
    for (int64_t j = 0; j < d; j++) {
      double acc = 0;
      for (int64_t k = 0; k < d; k++) acc += (double)W[a * d + k] * U[k * d + j];
      float want = (float)acc;
      bad += memcmp(&want, &Wr[a * d + j], 4) != 0;
    }
  RC_CHECK(bad == 0, "input side = fp32(sum_k W U in double, k ascending): %ld differ", bad);
  memcpy(Wi, W, sizeof(float) * N * d);
  RC_CHECK(resq_fuse_input_f32__ref(N, d, Wi, d, U, d, Wi, d, work, ws) == RESQ_OK &&
               memcmp(Wi, Wr, sizeof(float) * N * d) == 0,
           "input side in place = out of place");
  {
    float *xf = falloc(M * d);
    llm_tokens(&r, xf, M, d);
    double *x = to_d(xf, M * d), *xU = dalloc(M * d), *Wd = to_d(W, N * d), *Wrd = to_d(Wr, N * d);
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < d; j++) {
        ld s = 0;
        for (int64_t k = 0; k < d; k++) s += (ld)x[m * d + k] * U[k * d + j];
        xU[m * d + j] = (double)s;
      }
    ld *y = calloc((size_t)(M * N), sizeof(ld)), *yr = calloc((size_t)(M * N), sizeof(ld)),
       *ya = calloc((size_t)(M * N), sizeof(ld));
    gemm_ld(M, N, d, x, Wd, y, NULL);
    gemm_ld(M, N, d, xU, Wrd, yr, ya);
    /* |W U - Wr| <= u32 |Wr| (+ d eps |W||U| of the double sum, covered by 2u32):
     * |yr - y| <= 2 u32 sum|xU||Wr| + ||U U^T - I||_2 |x| |w|  (oU bounds ||.||_2) */
    double *got = dalloc(M * N);
    double worst = 0;
    long out = 0;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        ld nx = 0, nw = 0;
        for (int64_t k = 0; k < d; k++) {
          nx += (ld)x[m * d + k] * x[m * d + k];
          nw += (ld)Wd[n * d + k] * Wd[n * d + k];
        }
        double tol = 2 * k_u32 * (double)ya[m * N + n] + 2 * oU * (double)sqrtl(nx * nw) + 1e-300;
        double e = (double)fabsl(yr[m * N + n] - y[m * N + n]);
        out += e > tol;
        worst = fmax(worst, e / tol);
      }
    RC_CHECK(out == 0, "(x U)(W U)^T vs x W^T: %ld outside the bound (worst %.3g)", out, worst);
    free(xf), free(x), free(xU), free(Wd), free(Wrd), free(y), free(yr), free(ya), free(got);
  }
  /* ---- output side: W [d][N]; x Wout^T = (x W^T) U ---- */
  {
    float *Wo = falloc(d * N), *Wor = falloc(d * N);
    for (int64_t i = 0; i < d * N; i++) Wo[i] = (float)resq_rng_normal(&r) * 0.05f;
    RC_CHECK(resq_fuse_output_f32__ref(d, N, Wo, N, U, d, Wor, N, work, ws) == RESQ_OK, "output side");
    bad = 0;
    for (int64_t i = 0; i < d; i++)
      for (int64_t b = 0; b < N; b++) {
        double acc = 0;
        for (int64_t k = 0; k < d; k++) acc += U[k * d + i] * (double)Wo[k * N + b];
        float want = (float)acc;
        bad += memcmp(&want, &Wor[i * N + b], 4) != 0;
      }
    RC_CHECK(bad == 0, "output side = fp32(sum_k U^T W in double, k ascending): %ld differ", bad);
    float *Woi = falloc(d * N);
    memcpy(Woi, Wo, sizeof(float) * d * N);
    RC_CHECK(resq_fuse_output_f32__ref(d, N, Woi, N, U, d, Woi, N, work, ws) == RESQ_OK &&
                 memcmp(Woi, Wor, sizeof(float) * d * N) == 0,
             "output side in place = out of place");
    double *x = dalloc(M * N);
    for (int64_t i = 0; i < M * N; i++) x[i] = resq_rng_normal(&r);
    long out = 0;
    for (int64_t m = 0; m < M; m++) {
      ld y[64];
      for (int64_t i = 0; i < d; i++) {
        ld s = 0;
        for (int64_t b = 0; b < N; b++) s += (ld)x[m * N + b] * Wo[i * N + b];
        y[i] = s;
      }
      for (int64_t j = 0; j < d; j++) {
        ld want = 0, got = 0, ga = 0;
        for (int64_t i = 0; i < d; i++) want += y[i] * U[i * d + j];
        for (int64_t b = 0; b < N; b++) {
          got += (ld)x[m * N + b] * Wor[j * N + b];
          ga += fabsl((ld)x[m * N + b] * Wor[j * N + b]);
        }
        /* Wor = fp32(U^T W): relative u32 per entry (+ the double sum) */
        double tol = 2 * k_u32 * (double)ga + 1e-300;
        out += (double)fabsl(got - want) > tol;
      }
    }
    RC_CHECK(out == 0, "x (U^T W)^T vs (x W^T) U: %ld outside the bound", out);
    free(Wo), free(Wor), free(Woi), free(x);
  }
  /* ---- per-head v_proj / o_proj through attention: G = 2 KV heads, H = 4
   * query heads (n_rep 2), hd = 16, model width dm = 32, 6 tokens. For query
   * head h, o_h = sum_t p_ht v_t,g (g = h / n_rep) with convex weights p; then
   * y = o Wo^T. Rotated: v'_g = v_g Uv[g] (fused v_proj), o'_h = sum p v'_g, y' =
   * o' Wo'^T with Wo' columns of head h times Uv[g]: y' = y. ---- */
  {
    const int64_t G = 2, H = 4, hd = 16, dm = 32, T = 6, n_rep = H / G;
    double *Uv = dalloc(G * hd * hd);
    for (int64_t g = 0; g < G; g++) {
      double *q = haar(resq_rng_u64(&r), hd);
      memcpy(Uv + g * hd * hd, q, sizeof(double) * hd * hd);
      free(q);
    }
    float *Wv = falloc(G * hd * dm), *Wvr = falloc(G * hd * dm), *Wo = falloc(dm * H * hd),
          *Wor = falloc(dm * H * hd);
    for (int64_t i = 0; i < G * hd * dm; i++) Wv[i] = (float)resq_rng_normal(&r) * 0.1f;
    for (int64_t i = 0; i < dm * H * hd; i++) Wo[i] = (float)resq_rng_normal(&r) * 0.1f;
    size_t hws = resq_fuse_workspace_size(hd);
    void *hw = malloc(hws);
    RC_CHECK(resq_fuse_v_proj_f32__ref(G, hd, dm, Wv, dm, Uv, Wvr, dm, hw, hws) == RESQ_OK, "v_proj: %s",
             resq_last_error());
    RC_CHECK(resq_fuse_o_proj_f32__ref(dm, H, G, hd, Wo, H * hd, Uv, Wor, H * hd, hw, hws) == RESQ_OK, "o_proj: %s",
             resq_last_error());
    /* exactness of the per-head calls = the single-matrix calls on the blocks */
    bad = 0;
    for (int64_t g = 0; g < G; g++) {
      float *blk = falloc(hd * dm);
      resq_fuse_output_f32__ref(hd, dm, Wv + g * hd * dm, dm, Uv + g * hd * hd, hd, blk, dm, hw, hws);
      bad += memcmp(blk, Wvr + g * hd * dm, sizeof(float) * hd * dm) != 0;
      free(blk);
    }
    for (int64_t h = 0; h < H; h++) {
      float *blk = falloc(dm * hd);
      resq_fuse_input_f32__ref(dm, hd, Wo + h * hd, H * hd, Uv + (h / n_rep) * hd * hd, hd, blk, hd, hw, hws);
      for (int64_t i = 0; i < dm; i++) bad += memcmp(blk + i * hd, Wor + i * H * hd + h * hd, sizeof(float) * hd) != 0;
      free(blk);
    }
    RC_CHECK(bad == 0, "per-head fusion = the input/output side on each head's block (%ld blocks differ)", bad);
    double *x = dalloc(T * dm), *p = dalloc(H * T);
    for (int64_t i = 0; i < T * dm; i++) x[i] = resq_rng_normal(&r);
    for (int64_t h = 0; h < H; h++) {
      double s = 0;
      for (int64_t t = 0; t < T; t++) s += p[h * T + t] = resq_rng_uniform_f64(&r) + 0.01;
      for (int64_t t = 0; t < T; t++) p[h * T + t] /= s;
    }
    /* reference and rotated paths, with a running bound: the fp32 roundings of
     * Wv' and Wo' are <= u32 relative per entry (2u32 with the double sums) */
    ld v[6][32], vr[6][32], va[6][32];
    for (int64_t t = 0; t < T; t++)
      for (int64_t c = 0; c < G * hd; c++) {
        ld s = 0, sr = 0, sa = 0;
        for (int64_t k = 0; k < dm; k++) {
          s += (ld)x[t * dm + k] * Wv[c * dm + k];
          sr += (ld)x[t * dm + k] * Wvr[c * dm + k];
          sa += fabsl((ld)x[t * dm + k] * Wvr[c * dm + k]);
        }
        v[t][c] = s, vr[t][c] = sr, va[t][c] = sa;
      }
    ld o[4][16], orr[4][16], oerr[4][16];
    for (int64_t h = 0; h < H; h++)
      for (int64_t j = 0; j < hd; j++) {
        int64_t g = h / n_rep;
        ld s = 0, sr = 0, se = 0;
        for (int64_t t = 0; t < T; t++) {
          s += p[h * T + t] * v[t][g * hd + j];
          sr += p[h * T + t] * vr[t][g * hd + j];
          se += p[h * T + t] * 2 * k_u32 * va[t][g * hd + j];
        }
        o[h][j] = s, orr[h][j] = sr, oerr[h][j] = se;
      }
    long out = 0;
    double worst = 0, oUv = 0;
    for (int64_t g = 0; g < G; g++) {
      double rz, oz, *Z = dalloc(hd * hd), *zz = dalloc(hd);
      eig_quality(hd, Z, hd, Uv + g * hd * hd, hd, zz, &rz, &oz);
      oUv = fmax(oUv, oz);
      free(Z), free(zz);
    }
    for (int64_t n = 0; n < dm; n++) {
        ld y = 0, yr = 0, tol = 0, no = 0, nw = 0;
        for (int64_t h = 0; h < H; h++)
          for (int64_t j = 0; j < hd; j++) {
            y += o[h][j] * Wo[n * H * hd + h * hd + j];
            yr += orr[h][j] * Wor[n * H * hd + h * hd + j];
            tol += fabsl(orr[h][j] * Wor[n * H * hd + h * hd + j]) * 2 * k_u32 +
                   oerr[h][j] * fabsl((ld)Wor[n * H * hd + h * hd + j]);
            no += o[h][j] * o[h][j];
            nw += (ld)Wo[n * H * hd + h * hd + j] * Wo[n * H * hd + h * hd + j];
          }
        /* + the non-orthogonality of Uv (applied twice: v and o) */
        double tl = (double)tol + 2 * oUv * (double)sqrtl(no * nw) + 1e-300;
        double e = (double)fabsl(yr - y);
        out += e > tl;
        worst = fmax(worst, e / tl);
      }
    RC_CHECK(out == 0, "v/o per-head composition through attention: %ld outputs outside the bound (worst %.3g)", out,
             worst);
    free(Uv), free(Wv), free(Wvr), free(Wo), free(Wor), free(hw), free(x), free(p);
  }
  /* ---- down_proj: W [d][I], I = 112 = 28*4; had(z) W''^T = (z W^T) U ---- */
  {
    const int64_t I = 112;
    float *Wd = falloc(d * I), *Wdr = falloc(d * I), *Wtmp = falloc(d * I);
    for (int64_t i = 0; i < d * I; i++) Wd[i] = (float)resq_rng_normal(&r) * 0.05f;
    size_t hdws = resq_hadamard_workspace_size(I);
    void *hdw = malloc(hdws);
    int8_t *sg = (int8_t *)malloc((size_t)I);
    resq_hadamard_random_signs(resq_rng_u64(&r), I, sg);
    RC_CHECK(resq_fuse_down_proj_f32__ref(d, I, Wd, I, U, d, sg, Wdr, I, work, ws, hdw, hdws) == RESQ_OK,
             "down_proj: %s", resq_last_error());
    /* = output side, then the section-2 offline input-side Hadamard, exactly */
    resq_fuse_output_f32__ref(d, I, Wd, I, U, d, Wtmp, I, work, ws);
    resq_hadamard_weight_f32__ref(RESQ_HAD_INPUT_SIDE, d, I, Wtmp, I, sg, hdw, hdws);
    RC_CHECK(memcmp(Wtmp, Wdr, sizeof(float) * d * I) == 0, "down_proj = output side + input-side Hadamard");
    float *z = falloc(M * I), *zh = falloc(M * I);
    llm_tokens(&r, z, M, I);
    resq_hadamard_f32__ref(M, I, z, I, zh, I, sg, hdw, hdws);
    /* Hadamard bounds (CONTRACT s.8): |had(v) - had*(v)|_j <= g ||v||_1 / sqrt(I),
     * g = gamma_{log2(m)+K+2} with K = 28, m = 4 */
    double gam = (2 + 28 + 2) * k_u32 / (1 - (2 + 28 + 2) * k_u32);
    long out = 0;
    double worst = 0;
    float *Wp = falloc(d * I);
    resq_fuse_output_f32__ref(d, I, Wd, I, U, d, Wp, I, work, ws); /* W' = fp32(U^T W) */
    for (int64_t m = 0; m < M; m++) {
      ld zl1 = 0;
      for (int64_t k = 0; k < I; k++) zl1 += fabsl((ld)z[m * I + k]);
      double bz = gam * (double)zl1 / sqrt((double)I);
      for (int64_t j = 0; j < d; j++) {
        ld want = 0, got = 0, tol = 0, wl1 = 0;
        for (int64_t k = 0; k < I; k++) wl1 += fabsl((ld)Wp[j * I + k]);
        double bw = gam * (double)wl1 / sqrt((double)I);
        for (int64_t i = 0; i < d; i++) {
          ld s = 0;
          for (int64_t k = 0; k < I; k++) s += (ld)z[m * I + k] * Wd[i * I + k];
          want += s * U[i * d + j];
        }
        for (int64_t k = 0; k < I; k++) {
          got += (ld)zh[m * I + k] * Wdr[j * I + k];
          tol += fabsl((ld)zh[m * I + k]) * bw + fabsl((ld)Wdr[j * I + k]) * bz +
                 2 * k_u32 * fabsl((ld)z[m * I + k] * Wp[j * I + k]);
        }
        double tl = (double)tol + 1e-300;
        double e = (double)fabsl(got - want);
        out += e > tl;
        worst = fmax(worst, e / tl);
      }
    }
    RC_CHECK(out == 0, "had(z) W''^T vs (z W^T) U: %ld outside the bound (worst %.3g)", out, worst);
    free(Wd), free(Wdr), free(Wtmp), free(hdw), free(sg), free(z), free(zh), free(Wp);
  }
  free(U), free(Zd), free(zd), free(work), free(W), free(Wr), free(Wi);
}

static void case_fusion_failures(void) {
  if (!rc_case("fusion_bad_input_writes_nothing")) return;
  const int64_t n = 8, N = 3;
  double U[64];
  for (int i = 0; i < 64; i++) U[i] = i % 9 == 0 ? 1.0 : 0.0;
  float W[24], out[24];
  for (int i = 0; i < 24; i++) W[i] = (float)i, out[i] = -5.0f;
  size_t ws = resq_fuse_workspace_size(n);
  void *work = malloc(ws);
#define UNTOUCHED() (out[0] == -5.0f && out[23] == -5.0f)
  W[17] = NAN;
  resq_status st = resq_fuse_input_f32__ref(N, n, W, n, U, n, out, n, work, ws);
  RC_CHECK(st == RESQ_ERR_NONFINITE && strstr(resq_last_error(), "W[2][1]") && UNTOUCHED(), "NaN in W: %s '%s'",
           resq_status_name(st), resq_last_error());
  W[17] = 17.0f;
  U[10] = INFINITY;
  RC_CHECK(resq_fuse_output_f32__ref(n, N, W, N, U, n, out, N, work, ws) == RESQ_ERR_NONFINITE && UNTOUCHED(),
           "Inf in U");
  U[10] = 0.0;
  W[4] = 3e38f;
  W[5] = 3e38f;
  st = resq_fuse_input_f32__ref(N, n, W, n, U, n, out, n, work, ws);
  RC_CHECK(st == RESQ_ERR_NONFINITE && UNTOUCHED(), "possible fp32 overflow refused: %s", resq_status_name(st));
  W[4] = 4.0f;
  W[5] = 5.0f;
  RC_CHECK(resq_fuse_input_f32__ref(N, n, W, n, U, n, out, n, work, ws - 1) == RESQ_ERR_INVALID_ARG && UNTOUCHED(),
           "small workspace");
  RC_CHECK(resq_fuse_input_f32__ref(N, n, W, n - 1, U, n, out, n, work, ws) == RESQ_ERR_INVALID_ARG, "ldw < n");
  RC_CHECK(resq_fuse_input_f32__ref(N, n, W, n, U, n - 1, out, n, work, ws) == RESQ_ERR_INVALID_ARG, "ldu < n");
  RC_CHECK(resq_fuse_o_proj_f32__ref(1, 3, 2, n, W, 3 * n, U, out, 3 * n, work, ws) == RESQ_ERR_SHAPE,
           "H %% G != 0 refused");
  RC_CHECK(resq_fuse_v_proj_f32__ref(0, n, N, W, N, U, out, N, work, ws) == RESQ_ERR_INVALID_ARG, "G = 0 refused");
  size_t hws = resq_hadamard_workspace_size(64);
  void *hw = malloc(hws);
  float Wd[8 * 10];
  for (int i = 0; i < 80; i++) Wd[i] = 1.0f;
  st = resq_fuse_down_proj_f32__ref(n, 10, Wd, 10, U, n, NULL, out, 10, work, ws, hw, hws);
  RC_CHECK(st == RESQ_ERR_UNSUPPORTED && UNTOUCHED(), "down_proj with an unsupported Hadamard size: %s",
           resq_status_name(st));
  RC_CHECK(resq_fuse_input_f32__ref(0, n, NULL, n, U, n, NULL, n, work, ws) == RESQ_OK, "zero rows are fine");
#undef UNTOUCHED
  free(work), free(hw);
}

/* ------------------------------------------------------------------ the resq pca command */

static int run_cmd(const char *cmd) {
  int rc = system(cmd);
  if (rc == -1) return -1;
  /* POSIX: exit status in bits 8..15 */
  return (rc >> 8) & 0xff;
}

static double *read_f64(const char *path, int64_t *numel) {
  resq_array a;
  if (resq_npy_read(path, &a) != RESQ_OK || a.dtype != RESQ_DTYPE_F64) {
    RC_FAIL("cannot read %s as f64: %s", path, resq_last_error());
    *numel = 0;
    return NULL;
  }
  *numel = resq_array_numel(&a);
  double *p = (double *)a.data;
  return p;
}

static void case_cli(void) {
  const char *bin = rc_arg("resq"), *tmp = rc_arg("tmp");
  if (!bin || !tmp) return; /* only when the command is given (ctest passes it) */
  if (!rc_case("cli_end_to_end")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  char cmd[8192], p[6][2048];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", tmp, tmp);
  RC_CHECK(run_cmd(cmd) == 0, "make %s", tmp);
  const int64_t d = 40, T1 = 70, T2 = 33;
  float *x = falloc((T1 + T2) * d);
  llm_tokens(&r, x, T1 + T2, d);
  /* file 1: f16 [T1/10... as [7, 10, d]]; file 2: bf16 bit patterns (u16) of values exact in bf16 */
  uint16_t *h1 = (uint16_t *)malloc((size_t)(T1 * d) * 2), *b2 = (uint16_t *)malloc((size_t)(T2 * d) * 2);
  for (int64_t i = 0; i < T1 * d; i++) h1[i] = resq_f32_to_f16(x[i]);
  for (int64_t i = 0; i < T2 * d; i++) {
    x[T1 * d + i] = resq_round_bf16(x[T1 * d + i]);
    b2[i] = resq_f32_to_bf16(x[T1 * d + i]);
  }
  int64_t s1[3] = {7, 10, d}, s2[2] = {T2, d}, s3[2] = {T1 + T2, d}, s0[2] = {0, d}, sb[2] = {4, d + 1};
  snprintf(p[0], sizeof p[0], "%s/a.npy", tmp);
  snprintf(p[1], sizeof p[1], "%s/b.npy", tmp);
  snprintf(p[2], sizeof p[2], "%s/all.npy", tmp);
  snprintf(p[3], sizeof p[3], "%s/empty.npy", tmp);
  snprintf(p[4], sizeof p[4], "%s/badd.npy", tmp);
  snprintf(p[5], sizeof p[5], "%s/nan.npy", tmp);
  RC_CHECK(resq_npy_write(p[0], RESQ_DTYPE_F16, 3, s1, h1) == RESQ_OK && resq_npy_write(p[1], RESQ_DTYPE_U16, 2, s2, b2) == RESQ_OK &&
               resq_npy_write(p[2], RESQ_DTYPE_F32, 2, s3, x) == RESQ_OK && resq_npy_write(p[3], RESQ_DTYPE_F32, 2, s0, x) == RESQ_OK,
           "write inputs");
  float *bad = falloc(4 * (d + 1));
  resq_npy_write(p[4], RESQ_DTYPE_F32, 2, sb, bad);
  x[5 * d + 3] = NAN;
  resq_npy_write(p[5], RESQ_DTYPE_F32, 2, s3, x);
  x[5 * d + 3] = resq_f16_to_f32(h1[5 * d + 3]);
  /* run: split files (f16 + empty + bf16) and one f32 file of the same values */
  snprintf(cmd, sizeof cmd, "'%s' pca --x '%s,%s,%s' --r 5 --seed 7 --out '%s/o1' 2>&1", bin, p[0], p[3], p[1], tmp);
  RC_CHECK(run_cmd(cmd) == 0, "resq pca on three files");
  snprintf(cmd, sizeof cmd, "'%s' pca --x '%s' --r 5 --seed 7 --out '%s/o2' 2>&1", bin, p[2], tmp);
  RC_CHECK(run_cmd(cmd) == 0, "resq pca on one file");
  /* library result on the same data */
  resq_pca_accum a;
  resq_pca_accum_init(&a, d);
  resq_pca_accum_f32__ref(&a, T1 + T2, x, d);
  double *w = dalloc(d), *Up = dalloc(d * d), *R = dalloc(d * d), *U = dalloc(d * d);
  size_t ws = resq_pca_basis_workspace_size(d) + resq_random_orthogonal_workspace_size(d);
  void *work = malloc(ws);
  resq_pca_basis_f64__ref(&a, 0.01, w, Up, d, work, ws);
  resq_pca_blockdiag_f64__ref(7, d, 5, R, d, work, ws);
  resq_pca_apply_blockdiag_f64__ref(d, 5, Up, d, R, d, U, d);
  static const char *names[4] = {"eigvals", "U_pca", "R", "U"};
  const double *want[4] = {w, Up, R, U};
  for (int o = 1; o <= 2; o++)
    for (int k = 0; k < 4; k++) {
      char f[2304];
      snprintf(f, sizeof f, "%s/o%d/%s.npy", tmp, o, names[k]);
      int64_t ne;
      double *got = read_f64(f, &ne);
      if (!got) continue;
      char what[64];
      snprintf(what, sizeof what, "o%d/%s.npy vs the library", o, names[k]);
      RC_CHECK(ne == (k == 0 ? d : d * d), "%s: %lld elements", what, (long long)ne);
      if (ne == (k == 0 ? d : d * d)) rc_equal_bytes(got, want[k], sizeof(double) * (size_t)ne, what);
      free(got);
    }
  /* bad input: exit 1 (2 for usage), no output directory left behind */
  struct {
    const char *args;
    int want;
    const char *dir;
  } badc[] = {{"--x '%1$s/a.npy,%1$s/badd.npy' --out '%1$s/e1'", 1, "e1"},
              {"--x '%1$s/nan.npy' --out '%1$s/e2'", 1, "e2"},
              {"--x '%1$s/empty.npy' --out '%1$s/e3'", 1, "e3"},
              {"--x '%1$s/all.npy' --r 41 --out '%1$s/e4'", 1, "e4"},
              {"--out '%1$s/e5'", 2, "e5"},
              {"--x '%1$s/all.npy' --damp nan --out '%1$s/e6'", 2, "e6"}};
  for (size_t i = 0; i < sizeof badc / sizeof badc[0]; i++) {
    char args[4096];
    /* expand %1$s by hand (portable): replace every "%1$s" with tmp */
    const char *s = badc[i].args;
    size_t o = 0;
    while (*s && o + strlen(tmp) + 2 < sizeof args) {
      if (strncmp(s, "%1$s", 4) == 0) {
        o += (size_t)snprintf(args + o, sizeof args - o, "%s", tmp);
        s += 4;
      } else {
        args[o++] = *s++;
      }
    }
    args[o] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' pca %s 2>'%s/err.txt'", bin, args, tmp);
    int rc = run_cmd(cmd);
    char ef[2304], line[1024] = "";
    snprintf(ef, sizeof ef, "%s/err.txt", tmp);
    FILE *f = fopen(ef, "r");
    if (f) {
      if (!fgets(line, sizeof line, f)) line[0] = '\0';
      fclose(f);
    }
    char dir[2304];
    snprintf(dir, sizeof dir, "%s/%s", tmp, badc[i].dir);
    FILE *probe = fopen(dir, "r");
    RC_CHECK(rc == badc[i].want && strncmp(line, "resq pca: error: ", 17) == 0 && !probe,
             "'resq pca %s': exit %d (want %d), stderr '%s', output dir %s", args, rc, badc[i].want, line,
             probe ? "left behind" : "absent");
    if (probe) fclose(probe);
    printf("  ok: exit %d: %s", rc, line);
  }
  snprintf(cmd, sizeof cmd, "'%s' pca --help | grep -q 'U_pca.npy'", bin);
  RC_CHECK(run_cmd(cmd) == 0, "resq pca --help documents its outputs");
  resq_pca_accum_free(&a);
  free(x), free(h1), free(b2), free(bad), free(w), free(Up), free(R), free(U), free(work);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  run_cmd(cmd);
}

/* ------------------------------------------------------------------ LAPACK cross-check */

#ifdef RESQ_TEST_LAPACK
/* Fortran LAPACK with gfortran's hidden character lengths */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t ljobz,
                    size_t luplo);

/* dsyevd on a row-major symmetric matrix (symmetric, so the layout only swaps
 * triangles); returns V row-major with eigenvectors in columns. */
static int lapack_eigh(int64_t n, const double *A, double *V, double *w) {
  int nn = (int)n, lwork = -1, liwork = -1, info = 0, iq;
  double wq;
  /* column-major copy = transpose = A itself (symmetric) */
  double *a = dalloc(n * n);
  memcpy(a, A, sizeof(double) * n * n);
  dsyevd_("V", "L", &nn, a, &nn, w, &wq, &lwork, &iq, &liwork, &info, 1, 1);
  lwork = (int)wq;
  liwork = iq;
  double *wk = dalloc((size_t)lwork);
  int *iw = (int *)calloc((size_t)liwork, sizeof(int));
  dsyevd_("V", "L", &nn, a, &nn, w, wk, &lwork, iw, &liwork, &info, 1, 1);
  /* a is column-major: eigenvector j = a[j*n + i] -> V[i][j] */
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) V[i * n + j] = a[j * n + i];
  free(a), free(wk), free(iw);
  return info;
}

static void case_lapack(void) {
  if (!rc_case("lapack_dsyevd_cross_check")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t sizes[] = {5, 16, 64, 128, 256};
  int ran = 0, skipped = 0;
  double worst_w = 0, worst_p = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
    for (int kind = 0; kind < 3; kind++) {
      const int64_t n = sizes[si];
      double *A = dalloc(n * n);
      if (kind == 0) {
        rand_sym(&r, n, A, 1.0);
      } else if (kind == 1) { /* LLM-like covariance through the accumulator */
        float *x = falloc(4 * n * n);
        llm_tokens(&r, x, 4 * n, n);
        resq_pca_accum a;
        resq_pca_accum_init(&a, n);
        resq_pca_accum_f32__ref(&a, 4 * n, x, n);
        resq_pca_covariance_f64__ref(&a, 0.01, A, n, NULL);
        resq_pca_accum_free(&a);
        free(x);
      } else { /* exactly repeated eigenvalues at the split: must be skipped, then a clear gap */
        double *Q = haar(resq_rng_u64(&r), n), *lam = dalloc(n);
        for (int64_t i = 0; i < n; i++) lam[i] = 1.0 + (double)(i / 2); /* pairs */
        sym_from_spectrum(n, Q, lam, A);
        free(Q), free(lam);
      }
      double *w = dalloc(n), *wl = dalloc(n), *Vl = dalloc(n * n);
      resq_status st;
      double *V = eigh_copy(n, A, w, &st);
      int info = lapack_eigh(n, A, Vl, wl);
      rc_note("n=%lld kind=%d", (long long)n, kind);
      RC_CHECK(st == RESQ_OK && info == 0, "n=%lld kind %d: ours %s, dsyevd info %d", (long long)n, kind,
               resq_status_name(st), info);
      double an = fro_sym(n, A, n), r1, o1, r2, o2;
      eig_quality(n, A, n, V, n, w, &r1, &o1);
      eig_quality(n, A, n, Vl, n, wl, &r2, &o2);
      /* the premise: both solvers meet (B1) */
      RC_CHECK(r1 <= C_BACKWARD * n * k_eps * an && o1 <= C_BACKWARD * n * k_eps, "ours meets (B1)");
      RC_CHECK(r2 <= C_BACKWARD * n * k_eps * an && o2 <= C_BACKWARD * n * k_eps,
               "dsyevd meets (B1): res %.3g, orth %.3g (n eps units)", r2 / (n * k_eps * an), o2 / (n * k_eps));
      double e1 = eta_of(r1, o1, an), e2 = eta_of(r2, o2, an);
      /* eigenvalues: both within eta of the exact ones (Weyl) */
      double we = 0;
      for (int64_t j = 0; j < n; j++) we = fmax(we, fabs(w[j] - wl[j]));
      RC_CHECK(we <= e1 + e2, "n=%lld kind %d: eigenvalues differ by %.3g > %.3g", (long long)n, kind, we, e1 + e2);
      worst_w = fmax(worst_w, we / (e1 + e2));
      /* projectors of the top r for r = n/8, 1, n/2 */
      int64_t rr_list[3] = {n / 8 > 0 ? n / 8 : 1, 1, n / 2};
      double cnorm = fmax(fabs(w[0]), fabs(w[n - 1]));
      for (int ri = 0; ri < 3; ri++) {
        int64_t k = rr_list[ri];
        if (k < 1 || k >= n) continue;
        double gap = w[n - k] - w[n - k - 1];
        if (gap / cnorm < 1e-8) {
          printf("  skip n=%lld kind %d r=%lld: relative gap %.3g < 1e-8 (the top-r subspace is not determined)\n",
                 (long long)n, kind, (long long)k, gap / cnorm);
          skipped++;
          continue;
        }
        /* (B2) per solver against the exact projector; the exact gap is >= gap - 2 max(eta) */
        double g = gap - 2 * fmax(e1, e2);
        double tol = sqrt(2.0) * e1 / (g - 2 * e1) + 2 * o1 + sqrt(2.0) * e2 / (g - 2 * e2) + 2 * o2;
        double pd = proj_dist(n, k, V, n, Vl, n);
        RC_CHECK(g > 4 * fmax(e1, e2) && pd <= tol, "n=%lld kind %d r=%lld: ||P - P_lapack||_F = %.3g > %.3g (gap %.3g)",
                 (long long)n, kind, (long long)k, pd, tol, gap);
        worst_p = fmax(worst_p, pd / tol);
        ran++;
      }
      free(A), free(w), free(wl), free(Vl), free(V);
    }
  printf("  lapack: %d projector comparisons, %d skipped; worst eigenvalue diff/bound %.3g, projector/bound %.3g\n", ran,
         skipped, worst_w, worst_p);
  RC_CHECK(ran >= 20, "enough projector comparisons ran (%d)", ran);
  RC_CHECK(skipped >= 1, "the exactly-degenerate split was detected and skipped (%d)", skipped);
}
#endif

int main(int argc, char **argv) {
  rc_init("pca_f64__ref_test", argc, argv);
  const char *part = rc_arg("part");
  if (!part || strcmp(part, "lapack") != 0) {
    case_eigh_known();
    case_eigh_random();
    case_eigh_failures();
    case_accum_streaming();
    case_accum_failures();
    case_damping();
    case_outlier_subspace();
    case_haar();
    case_blockdiag();
    case_k8();
    case_fusion();
    case_fusion_failures();
    case_cli();
  }
#ifdef RESQ_TEST_LAPACK
  if (!part || strcmp(part, "lapack") == 0) case_lapack();
#endif
  return rc_finish();
}
