/* SPDX-License-Identifier: Apache-2.0
 * CPU PCA basis (resq/cpu.h: dsyrk accumulation, dsyevd eigendecomposition)
 * vs the reference (ref/CONTRACT.md section 13), with the bounds of
 * verify/pca_f64__ref_test.c (reproduced here, same constants):
 *  (B1) backward error of a Householder-based symmetric eigensolver:
 *       ||A V - V diag(w)||_F <= 8 n eps ||A||_F, ||V^T V - I||_F <= 8 n eps
 *       (p(n) = 16 n in u = eps/2); dsyevd's divide and conquer meets the same
 *       form (LAPACK Users' Guide 4.7: p(n) modest);
 *  (B2) a posteriori: eta = ||R||_F (1 + w_o) + 2 w_o ||A||_F from the measured
 *       residual R and w_o = ||V^T V - I||_F; eigenvalues within eta of the
 *       exact ones (Weyl), the top-r projector within sqrt(2) eta / (gap -
 *       2 eta) + 2 w_o of the exact one (Davis-Kahan sin-theta);
 *  (B3) accumulation: every S[i][j] of both backends is a double sum of the T
 *       exact products x_t[i] x_t[j] (fp32 x fp32 is exact in double, so an
 *       FMA rounds like an add), in any order: |S - S_exact| <= gamma_{T-1}
 *       sum_t |x_t[i] x_t[j]| for each, so |S_cpu - S_ref| <= 2 gamma_{T-1}
 *       sum_t |x_t[i] x_t[j]|. The covariance C = S/T then differs by at most
 *       that / T (+ one rounding of each division, u |C|), whose Frobenius
 *       norm dC is added to eta when the end-to-end pipelines are compared
 *       (Weyl and Davis-Kahan are perturbation bounds: a perturbation of norm
 *       dC of the matrix moves them by dC).
 * Cases: the accumulator against the reference (bound B3, upper triangle only,
 * lower stays 0, batch splits, f16 = widened f32 bit for bit, NaN adds
 * nothing, argument errors); the basis on random, LLM-like (outlier channels,
 * low rank) and exactly degenerate spectra: ascending order, sign convention,
 * (B1), eigenvalues and projectors vs the reference (B2), the degenerate split
 * detected and skipped; the end-to-end pipeline (cpu accum + cpu basis vs ref
 * accum + ref basis); failures write nothing, with the reference's codes.
 * All residuals are accumulated in long double. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/pca.h"
#include "resq/rng.h"
#include "resq_check.h"

static const double k_eps = 0x1p-52;
static const double k_ud = 0x1p-53;
#define C_BACKWARD 8.0

typedef long double ld;

static double *dalloc(size_t n) { return (double *)calloc(n ? n : 1, sizeof(double)); }
static float *falloc(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }
static double gam(double k) { return k * k_ud / (1.0 - k * k_ud); }

static double fro_sym(int64_t n, const double *A) {
  ld s = 0;
  for (int64_t i = 0; i < n * n; i++) s += (ld)A[i] * A[i];
  return (double)sqrtl(s);
}

static void eig_quality(int64_t n, const double *A, const double *V, const double *w, double *res, double *orth) {
  ld rs = 0, os = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ld s = 0;
      for (int64_t k = 0; k < n; k++) s += (ld)A[i * n + k] * V[k * n + j];
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
  *res = (double)sqrtl(rs);
  *orth = (double)sqrtl(os);
}

static double eta_of(double res, double orth, double anorm_f) { return res * (1 + orth) + 2 * orth * anorm_f; }

static long order_sign_violations(int64_t n, const double *V, const double *w) {
  long bad = 0;
  for (int64_t j = 0; j + 1 < n; j++) bad += !(w[j] <= w[j + 1]);
  for (int64_t j = 0; j < n; j++) {
    int64_t big = 0;
    for (int64_t i = 1; i < n; i++)
      if (fabs(V[i * n + j]) > fabs(V[big * n + j])) big = i;
    bad += !(V[big * n + j] > 0);
  }
  return bad;
}

static double proj_dist(int64_t n, int64_t k, const double *V1, const double *V2) {
  ld s = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ld a = 0, b = 0;
      for (int64_t c = n - k; c < n; c++) {
        a += (ld)V1[i * n + c] * V1[j * n + c];
        b += (ld)V2[i * n + c] * V2[j * n + c];
      }
      s += (a - b) * (a - b);
    }
  return (double)sqrtl(s);
}

/* LLM-like tokens: a few latent directions, heavy per-channel scales and a
 * handful of outlier channels (the structure ResQ's PCA is for). fp32 values
 * make the double sums round (f16-valued products of this range mostly sum
 * exactly in double, which would hide order differences). */
static void llm_tokens(resq_rng *r, float *x, int64_t T, int64_t d, int f16_values) {
  int64_t m = d / 8 > 0 ? d / 8 : 1;
  double *A = dalloc((size_t)(m * d)), *c = dalloc((size_t)d), *z = dalloc((size_t)m);
  for (int64_t i = 0; i < m * d; i++) A[i] = resq_rng_normal(r) / sqrt((double)m);
  for (int64_t j = 0; j < d; j++) c[j] = exp(0.5 * resq_rng_normal(r)) * (j % 37 == 5 ? 30.0 : 1.0);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < m; i++) z[i] = resq_rng_normal(r) * (i < 3 ? 4.0 : 1.0);
    for (int64_t j = 0; j < d; j++) {
      double v = 0.2 * resq_rng_normal(r);
      for (int64_t i = 0; i < m; i++) v += z[i] * A[i * d + j];
      x[t * d + j] = f16_values ? resq_round_f16((float)(v * c[j])) : (float)(v * c[j]);
    }
  }
  free(A), free(c), free(z);
}

/* ------------------------------------------------------------------ accumulation */

/* |S_cpu - S_ref| <= 2 gamma_{T-1} sum_t |x_i x_j| (B3) on the upper triangle; lower 0 */
static void check_accum_bound(const resq_pca_accum *ac, const resq_pca_accum *ar, const float *x, int64_t T,
                              const char *what) {
  const int64_t d = ac->d;
  long bad = 0, lower = 0;
  double worst = 0;
  const double g = 2 * gam((double)(T > 1 ? T - 1 : 1));
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      if (j < i) {
        lower += ac->S[i * d + j] != 0.0;
        continue;
      }
      ld sa = 0;
      for (int64_t t = 0; t < T; t++) sa += fabsl((ld)x[t * d + i] * x[t * d + j]);
      double diff = fabs(ac->S[i * d + j] - ar->S[i * d + j]), tol = g * (double)sa;
      if (!(diff <= tol)) bad++;
      if (sa > 0) worst = fmax(worst, diff / (double)sa / g);
    }
  RC_CHECK(bad == 0 && lower == 0, "%s: %ld entries beyond 2 gamma_{T-1} sum|x x|, %ld lower entries written", what,
           bad, lower);
  RC_CHECK(ac->count == ar->count, "%s: count %lld vs %lld", what, (long long)ac->count, (long long)ar->count);
  printf("  %-44s worst |S_cpu - S_ref| / bound = %.3g\n", what, worst);
}

static void case_accum(void) {
  if (!rc_case("accum_vs_reference")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t dims[] = {1, 7, 64, 300};
  for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
    const int64_t d = dims[di], T = 700; /* several 256-token dsyrk blocks and a tail */
    rc_note("d=%lld T=%lld", (long long)d, (long long)T);
    float *x = falloc((size_t)(T * d));
    uint16_t *x16 = (uint16_t *)calloc((size_t)(T * d), 2);
    llm_tokens(&r, x, T, d, 0);
    float *xh = falloc((size_t)(T * d)); /* f16-valued copy for the f16 entry */
    for (int64_t i = 0; i < T * d; i++) x16[i] = resq_f32_to_f16(x[i]), xh[i] = resq_f16_to_f32(x16[i]);
    resq_pca_accum ar, ac, a16, asp;
    resq_pca_accum_init(&ar, d), resq_pca_accum_init(&ac, d), resq_pca_accum_init(&a16, d), resq_pca_accum_init(&asp, d);
    RC_CHECK(resq_pca_accum_f32__ref(&ar, T, x, d) == RESQ_OK, "ref accum: %s", resq_last_error());
    RC_CHECK(resq_pca_accum_f32__cpu(&ac, T, x, d) == RESQ_OK, "cpu accum: %s", resq_last_error());
    RC_CHECK(resq_pca_accum_f16__cpu(&a16, T, x16, d) == RESQ_OK, "cpu accum f16: %s", resq_last_error());
    char what[96];
    snprintf(what, sizeof what, "d=%lld T=%lld one batch", (long long)d, (long long)T);
    check_accum_bound(&ac, &ar, x, T, what);
    resq_pca_accum ah;
    resq_pca_accum_init(&ah, d);
    resq_pca_accum_f32__cpu(&ah, T, xh, d);
    RC_CHECK(memcmp(ah.S, a16.S, (size_t)(d * d) * 8) == 0, "d=%lld: the f16 entry equals the f32 entry on the "
             "widened values, bit for bit", (long long)d);
    resq_pca_accum_free(&ah);
    free(xh);
    /* uneven batches (0, 1, 255, 256, 188 tokens): still within the bound */
    const int64_t cuts[] = {0, 1, 255, 256, 188};
    int64_t t0 = 0;
    for (int c = 0; c < 5; c++) {
      RC_CHECK(resq_pca_accum_f32__cpu(&asp, cuts[c], x + t0 * d, d) == RESQ_OK, "batch %d: %s", c, resq_last_error());
      t0 += cuts[c];
    }
    snprintf(what, sizeof what, "d=%lld T=%lld in 5 batches", (long long)d, (long long)T);
    check_accum_bound(&asp, &ar, x, T, what);
    /* a NaN anywhere in a batch: RESQ_ERR_NONFINITE, nothing added */
    double *before = dalloc((size_t)(d * d));
    memcpy(before, ac.S, (size_t)(d * d) * 8);
    float keep = x[(T / 2) * d + d / 2];
    x[(T / 2) * d + d / 2] = NAN;
    resq_status st = resq_pca_accum_f32__cpu(&ac, T, x, d);
    x[(T / 2) * d + d / 2] = keep;
    RC_CHECK(st == RESQ_ERR_NONFINITE && memcmp(before, ac.S, (size_t)(d * d) * 8) == 0 && ac.count == T,
             "NaN batch: %s, S and count unchanged", resq_status_name(st));
    x16[3] = 0x7c00; /* +Inf in f16 */
    st = resq_pca_accum_f16__cpu(&ac, T, x16, d);
    RC_CHECK(st == RESQ_ERR_NONFINITE && memcmp(before, ac.S, (size_t)(d * d) * 8) == 0, "Inf f16 batch: %s",
             resq_status_name(st));
    free(before);
    resq_pca_accum_free(&ar), resq_pca_accum_free(&ac), resq_pca_accum_free(&a16), resq_pca_accum_free(&asp);
    free(x), free(x16);
  }
  /* argument errors: the reference's codes */
  resq_pca_accum a, z;
  memset(&z, 0, sizeof z);
  resq_pca_accum_init(&a, 8);
  float xs[16] = {0};
  struct {
    resq_status cpu, ref;
    const char *what;
  } e[] = {
      {resq_pca_accum_f32__cpu(&z, 1, xs, 8), resq_pca_accum_f32__ref(&z, 1, xs, 8), "uninitialized accumulator"},
      {resq_pca_accum_f32__cpu(&a, -1, xs, 8), resq_pca_accum_f32__ref(&a, -1, xs, 8), "T < 0"},
      {resq_pca_accum_f32__cpu(&a, 2, xs, 7), resq_pca_accum_f32__ref(&a, 2, xs, 7), "ldx < d"},
      {resq_pca_accum_f32__cpu(&a, 2, NULL, 8), resq_pca_accum_f32__ref(&a, 2, NULL, 8), "NULL x"},
      {resq_pca_accum_f16__cpu(NULL, 2, NULL, 8), resq_pca_accum_f16__ref(NULL, 2, NULL, 8), "NULL accumulator"},
  };
  for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
    RC_CHECK(e[i].cpu == e[i].ref && e[i].cpu != RESQ_OK, "%s: cpu %s, ref %s", e[i].what, resq_status_name(e[i].cpu),
             resq_status_name(e[i].ref));
  RC_CHECK(a.count == 0, "failed calls added nothing");
  resq_pca_accum_free(&a);
}

/* ------------------------------------------------------------------ basis */

typedef struct {
  double *w, *U;
  resq_status st;
} basis;

static basis run_basis(const resq_pca_accum *a, int cpu) {
  basis b;
  const int64_t d = a->d;
  b.w = dalloc((size_t)d);
  b.U = dalloc((size_t)(d * d));
  size_t ws = cpu ? resq_pca_basis_workspace_size__cpu(d) : resq_pca_basis_workspace_size(d);
  void *work = malloc(ws);
  b.st = cpu ? resq_pca_basis_f64__cpu(a, 0.01, b.w, b.U, d, work, ws) : resq_pca_basis_f64__ref(a, 0.01, b.w, b.U, d, work, ws);
  free(work);
  return b;
}

static void basis_free(basis *b) { free(b->w), free(b->U); }

/* Compare the cpu basis of A1 with the reference basis of A2, where
 * ||A1 - A2||_F <= extra (0: the same matrix). The cpu basis is exact for a
 * matrix within e1 + extra of A2 (B2 + triangle inequality), the reference's
 * within e2; both are compared with the exact eigensystem of A2. */
static void compare_bases(int64_t n, const double *A1, const double *A2, const basis *bc, const basis *br, double extra,
                          const char *what, int *ran, int *skipped) {
  const double an = fro_sym(n, A1), an2 = fro_sym(n, A2);
  double r1, o1, r2, o2;
  eig_quality(n, A1, bc->U, bc->w, &r1, &o1);
  eig_quality(n, A2, br->U, br->w, &r2, &o2);
  RC_CHECK(order_sign_violations(n, bc->U, bc->w) == 0, "%s: cpu eigenvalues ascending and signs by the convention", what);
  RC_CHECK(r1 <= C_BACKWARD * n * k_eps * an && o1 <= C_BACKWARD * n * k_eps,
           "%s: cpu basis meets (B1): residual %.3g, orthogonality %.3g (n eps units)", what, r1 / (n * k_eps * an),
           o1 / (n * k_eps));
  double e1 = eta_of(r1, o1, an), e2 = eta_of(r2, o2, an2);
  double we = 0;
  for (int64_t j = 0; j < n; j++) we = fmax(we, fabs(bc->w[j] - br->w[j]));
  RC_CHECK(we <= e1 + e2 + extra, "%s: eigenvalues differ by %.3g > %.3g (Weyl)", what, we, e1 + e2 + extra);
  const int64_t ks[3] = {n / 8 > 0 ? n / 8 : 1, 1, n / 2};
  const double cnorm = fmax(fabs(br->w[0]), fabs(br->w[n - 1]));
  for (int ki = 0; ki < 3; ki++) {
    const int64_t k = ks[ki];
    if (k < 1 || k >= n) continue;
    const double gap = br->w[n - k] - br->w[n - k - 1];
    if (gap / cnorm < 1e-8) {
      printf("  skip %s r=%lld: relative gap %.3g < 1e-8 (the top-r subspace is not determined)\n", what, (long long)k,
             gap / cnorm);
      (*skipped)++;
      continue;
    }
    /* the matrices the two bases are exact for lie within f1 = e1 + extra and
     * f2 = e2 of A2; the exact gap of A2 is >= gap - 2 max(f) */
    const double f1 = e1 + extra, f2 = e2, g = gap - 2 * fmax(f1, f2);
    const double tol = sqrt(2.0) * f1 / (g - 2 * f1) + 2 * o1 + sqrt(2.0) * f2 / (g - 2 * f2) + 2 * o2;
    const double pd = proj_dist(n, k, bc->U, br->U);
    RC_CHECK(g > 4 * fmax(f1, f2) && pd <= tol, "%s r=%lld: ||P_cpu - P_ref||_F = %.3g > %.3g (gap %.3g)", what,
             (long long)k, pd, tol, gap);
    (*ran)++;
  }
}

static void case_basis(void) {
  if (!rc_case("basis_vs_reference")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t sizes[] = {5, 16, 64, 128, 200};
  int ran = 0, skipped = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
    for (int kind = 0; kind < 3; kind++) {
      const int64_t n = sizes[si];
      rc_note("n=%lld kind=%d", (long long)n, kind);
      resq_pca_accum a;
      resq_pca_accum_init(&a, n);
      if (kind == 0 || kind == 1) { /* gaussian tokens / LLM-like tokens through the reference accumulator */
        const int64_t T = 4 * n;
        float *x = falloc((size_t)(T * n));
        if (kind == 0)
          for (int64_t i = 0; i < T * n; i++) x[i] = (float)resq_rng_normal(&r);
        else
          llm_tokens(&r, x, T, n, 1);
        resq_pca_accum_f32__ref(&a, T, x, n);
        free(x);
      } else { /* S set directly: eigenvalues in exactly repeated pairs (1,1,2,2,...) of a Haar basis */
        double *Q = dalloc((size_t)(n * n)), *G = dalloc((size_t)(n * n));
        size_t ws = resq_random_orthogonal_workspace_size(n);
        void *work = malloc(ws);
        resq_random_orthogonal_f64__ref(resq_rng_u64(&r), n, Q, n, work, ws);
        free(work);
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = i; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += Q[i * n + k] * (1.0 + (double)(k / 2)) * Q[j * n + k];
            a.S[i * n + j] = s;
          }
        a.count = 1;
        free(Q), free(G);
      }
      double *C = dalloc((size_t)(n * n));
      resq_pca_covariance_f64__ref(&a, 0.01, C, n, NULL);
      basis bc = run_basis(&a, 1), br = run_basis(&a, 0);
      char what[64];
      snprintf(what, sizeof what, "n=%lld kind %d", (long long)n, kind);
      if (RC_CHECK(bc.st == RESQ_OK && br.st == RESQ_OK, "%s: cpu %s, ref %s: %s", what, resq_status_name(bc.st),
                   resq_status_name(br.st), resq_last_error()))
        compare_bases(n, C, C, &bc, &br, 0.0, what, &ran, &skipped);
      basis_free(&bc), basis_free(&br);
      free(C);
      resq_pca_accum_free(&a);
    }
  printf("  basis: %d projector comparisons, %d skipped\n", ran, skipped);
  RC_CHECK(ran >= 20, "enough projector comparisons ran (%d)", ran);
  RC_CHECK(skipped >= 1, "the exactly degenerate split was detected and skipped (%d)", skipped);
}

/* cpu accumulation + cpu basis vs ref accumulation + ref basis on LLM-like data */
static void case_pipeline(void) {
  if (!rc_case("pipeline_vs_reference")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  int ran = 0, skipped = 0;
  static const int64_t sizes[] = {32, 128, 256};
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    const int64_t n = sizes[si], T = 3 * n + 17;
    rc_note("n=%lld T=%lld", (long long)n, (long long)T);
    float *x = falloc((size_t)(T * n));
    llm_tokens(&r, x, T, n, 0);
    resq_pca_accum ac, ar;
    resq_pca_accum_init(&ac, n), resq_pca_accum_init(&ar, n);
    resq_pca_accum_f32__cpu(&ac, T, x, n);
    resq_pca_accum_f32__ref(&ar, T, x, n);
    /* (B3) carried to C = S/T (one rounded division each):
     *   off the diagonal  |dC_ij| <= b_ij = 2 gamma_{T-1} sum|x_i x_j| / T + u (|C_cpu,ij| + |C_ref,ij|);
     *   the diagonal also gets shift = damp * mean(diag): the mean moves by at most max_j b_jj, its
     *   rounded sum and the product by (n + 2) u * shift, and the final add rounds (u |C_ii|, each side). */
    double *Cc = dalloc((size_t)(n * n)), *Cr = dalloc((size_t)(n * n));
    double shc = 0, shr = 0;
    resq_pca_covariance_f64__ref(&ac, 0.01, Cc, n, &shc);
    resq_pca_covariance_f64__ref(&ar, 0.01, Cr, n, &shr);
    double *bnd = dalloc((size_t)(n * n));
    double bmax_diag = 0;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) {
        ld sa = 0;
        for (int64_t t = 0; t < T; t++) sa += fabsl((ld)x[t * n + i] * x[t * n + j]);
        double ci = i == j ? shc : 0.0, ri = i == j ? shr : 0.0; /* undamped values */
        bnd[i * n + j] = 2 * gam((double)(T - 1)) * (double)sa / (double)T + k_ud * (fabs(Cc[i * n + j] - ci) + fabs(Cr[i * n + j] - ri));
        if (i == j) bmax_diag = fmax(bmax_diag, bnd[i * n + j]);
      }
    const double dshift = 0.01 * bmax_diag + (double)(n + 2) * k_ud * fmax(shc, shr);
    RC_CHECK(fabs(shc - shr) <= dshift, "n=%lld: damping shifts %.17g vs %.17g differ beyond %.3g", (long long)n, shc,
             shr, dshift);
    ld dc2 = 0;
    long bad = 0;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) {
        double b = bnd[i * n + j];
        if (i == j) b += dshift + k_ud * (fabs(Cc[i * n + i]) + fabs(Cr[i * n + i]));
        bad += !(fabs(Cc[i * n + j] - Cr[i * n + j]) <= b);
        dc2 += (ld)b * b;
      }
    RC_CHECK(bad == 0, "n=%lld: %ld covariance entries beyond the (B3) bound", (long long)n, bad);
    const double extra = (double)sqrtl(dc2); /* ||C_cpu - C_ref||_F bound */
    free(bnd);
    basis bc = run_basis(&ac, 1), br = run_basis(&ar, 0);
    char what[64];
    snprintf(what, sizeof what, "pipeline n=%lld", (long long)n);
    if (RC_CHECK(bc.st == RESQ_OK && br.st == RESQ_OK, "%s: cpu %s, ref %s", what, resq_status_name(bc.st),
                 resq_status_name(br.st)))
      compare_bases(n, Cc, Cr, &bc, &br, extra, what, &ran, &skipped);
    basis_free(&bc), basis_free(&br);
    free(Cc), free(Cr), free(x);
    resq_pca_accum_free(&ac), resq_pca_accum_free(&ar);
  }
  RC_CHECK(ran >= 6, "pipeline projector comparisons ran (%d)", ran);
}

/* ------------------------------------------------------------------ failures */

static void case_failures(void) {
  if (!rc_case("basis_failures_write_nothing")) return;
  const int64_t d = 6;
  resq_pca_accum a, z;
  memset(&z, 0, sizeof z);
  resq_pca_accum_init(&a, d);
  double w[6], U[36], w0[6], U0[36];
  for (int i = 0; i < 6; i++) w[i] = w0[i] = 7.25;
  for (int i = 0; i < 36; i++) U[i] = U0[i] = -3.5;
  size_t ws = resq_pca_basis_workspace_size__cpu(d);
  void *work = malloc(ws);
  RC_CHECK(resq_pca_basis_workspace_size__cpu(0) == 0 && resq_pca_basis_workspace_size__cpu(RESQ_PCA_MAX_D + 1) == 0,
           "workspace size 0 for unsupported d");
  /* no tokens, then all-zero tokens: DEGENERATE (as the reference) */
  resq_status st = resq_pca_basis_f64__cpu(&a, 0.01, w, U, d, work, ws);
  RC_CHECK(st == RESQ_ERR_DEGENERATE, "no tokens: %s", resq_status_name(st));
  float zeros[12] = {0};
  resq_pca_accum_f32__cpu(&a, 2, zeros, d);
  st = resq_pca_basis_f64__cpu(&a, 0.01, w, U, d, work, ws);
  RC_CHECK(st == RESQ_ERR_DEGENERATE, "all-zero data: %s (%s)", resq_status_name(st), resq_last_error());
  float x[12] = {1, 2, 3, 4, 5, 6, -1, 0.5f, 2, 0, 1, 3};
  resq_pca_accum_f32__cpu(&a, 2, x, d);
  struct {
    resq_status got;
    const char *what;
  } e[] = {
      {resq_pca_basis_f64__cpu(&z, 0.01, w, U, d, work, ws), "uninitialized accumulator"},
      {resq_pca_basis_f64__cpu(&a, 0.01, NULL, U, d, work, ws), "NULL eigvals"},
      {resq_pca_basis_f64__cpu(&a, 0.01, w, NULL, d, work, ws), "NULL U"},
      {resq_pca_basis_f64__cpu(&a, 0.01, w, U, d - 1, work, ws), "ldu < d"},
      {resq_pca_basis_f64__cpu(&a, 0.01, w, U, d, work, ws - 1), "workspace too small"},
      {resq_pca_basis_f64__cpu(&a, 0.01, w, U, d, NULL, ws), "NULL workspace"},
      {resq_pca_basis_f64__cpu(&a, -0.5, w, U, d, work, ws), "negative damp"},
      {resq_pca_basis_f64__cpu(&a, NAN, w, U, d, work, ws), "NaN damp"},
  };
  size_t rws = resq_pca_basis_workspace_size(d);
  void *rwork = malloc(rws);
  resq_status want[] = {
      resq_pca_basis_f64__ref(&z, 0.01, w0, U0, d, rwork, rws), resq_pca_basis_f64__ref(&a, 0.01, NULL, U0, d, rwork, rws),
      resq_pca_basis_f64__ref(&a, 0.01, w0, NULL, d, rwork, rws), resq_pca_basis_f64__ref(&a, 0.01, w0, U0, d - 1, rwork, rws),
      resq_pca_basis_f64__ref(&a, 0.01, w0, U0, d, rwork, rws - 1), resq_pca_basis_f64__ref(&a, 0.01, w0, U0, d, NULL, rws),
      resq_pca_basis_f64__ref(&a, -0.5, w0, U0, d, rwork, rws), resq_pca_basis_f64__ref(&a, NAN, w0, U0, d, rwork, rws),
  };
  for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
    RC_CHECK(e[i].got == want[i] && e[i].got != RESQ_OK, "%s: cpu %s, ref %s", e[i].what, resq_status_name(e[i].got),
             resq_status_name(want[i]));
  int untouched = 1;
  for (int i = 0; i < 6; i++) untouched &= w[i] == 7.25;
  for (int i = 0; i < 36; i++) untouched &= U[i] == -3.5;
  RC_CHECK(untouched, "failed calls wrote nothing");
  st = resq_pca_basis_f64__cpu(&a, 0.01, w, U, d, work, ws);
  RC_CHECK(st == RESQ_OK && w[5] > w[0], "a valid call after the failures works: %s", resq_status_name(st));
  free(work), free(rwork);
  resq_pca_accum_free(&a);
}

int main(int argc, char **argv) {
  rc_init("cpu_pca_f64_test", argc, argv);
  case_accum();
  case_basis();
  case_pipeline();
  case_failures();
  return rc_finish();
}
