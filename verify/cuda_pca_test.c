/* SPDX-License-Identifier: Apache-2.0
 * GPU test: the CUDA PCA basis (resq/cuda.h "PCA basis") vs the reference
 * (ref/CONTRACT.md section 13), by the contract's bounds:
 *  - second moment: element-wise |S_gpu - S_ref| <= 2 gamma_T sum_t |x_t[i] x_t[j]|
 *    (each is a double sum of the same T exact products: |S - S_exact| <=
 *    gamma_{T-1} sum |terms| for ANY order, FMA-based orders included, since an
 *    FMA of an exact product rounds once like an addition); the strict lower
 *    triangle stays 0;
 *  - covariance: bit for bit the reference's resq_pca_covariance_f64__ref on the
 *    GPU's own S (the operations are the reference's);
 *  - eigendecomposition (single and batched): both solvers meet the backward
 *    error (B1) of verify/pca_f64__ref_test.c; eigenvalues within eta_gpu + eta_ref
 *    (Weyl); the top-r projectors within the sum of the two Davis-Kahan bounds
 *    sqrt(2) eta / (gap - 2 eta) + 2 ||V^T V - I||_F (cases whose relative gap is
 *    below 1e-8 are skipped, as the contract says); ascending order and the sign
 *    convention exactly;
 *  - basis end to end on LLM-like tokens; failures (no tokens, all-zero data, bad
 *    sizes and workspaces) return the reference's codes and write nothing.
 * Residuals are accumulated in long double (rounding below eps/2048, neglected).
 * Exits 77 without a usable GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/pca.h"
#include "resq/rng.h"
#include "resq_check.h"
#include "resq_gpu.h"

typedef long double ldbl;
static const double k_eps = 0x1p-52;
#define C_BACKWARD 8.0 /* (B1): ||A V - V diag(w)||_F <= 8 n eps ||A||_F, ||V^T V - I||_F <= 8 n eps */

static double *dalloc(size_t n) { return (double *)calloc(n ? n : 1, sizeof(double)); }

static double fro_sym(int64_t n, const double *A) {
  ldbl s = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      double v = i >= j ? A[i * n + j] : A[j * n + i];
      s += (ldbl)v * v;
    }
  return (double)sqrtl(s);
}

static void eig_quality(int64_t n, const double *A, const double *V, const double *w, double *res, double *orth) {
  ldbl rs = 0, os = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ldbl s = 0;
      for (int64_t k = 0; k < n; k++) s += (ldbl)(i >= k ? A[i * n + k] : A[k * n + i]) * V[k * n + j];
      s -= (ldbl)V[i * n + j] * w[j];
      rs += s * s;
    }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i; j < n; j++) {
      ldbl s = 0;
      for (int64_t k = 0; k < n; k++) s += (ldbl)V[k * n + i] * V[k * n + j];
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
  ldbl s = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      ldbl a = 0, b = 0;
      for (int64_t c = n - k; c < n; c++) {
        a += (ldbl)V1[i * n + c] * V1[j * n + c];
        b += (ldbl)V2[i * n + c] * V2[j * n + c];
      }
      s += (a - b) * (a - b);
    }
  return (double)sqrtl(s);
}

static void llm_tokens(resq_rng *r, float *x, int64_t T, int64_t d) {
  double *cs = dalloc((size_t)d);
  for (int64_t i = 0; i < d; i++) cs[i] = 0.2 + resq_rng_uniform_f64(r);
  for (int k = 0; k < 3 && d > 4; k++) cs[resq_rng_below(r, (uint64_t)d)] = 40 + 200 * resq_rng_uniform_f64(r);
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < d; i++) x[t * d + i] = resq_round_f16((float)(resq_rng_normal(r) * cs[i]));
  free(cs);
}

/* Compare one GPU eigensystem with the reference's on the same matrix A (n x n,
 * symmetric). Returns the number of projector comparisons made. */
static int compare_eig(int64_t n, const double *A, const double *Vg, const double *wg, int check_b1, int *skipped) {
  double *Vr = dalloc((size_t)(n * n)), *wr = dalloc((size_t)n);
  memcpy(Vr, A, sizeof(double) * (size_t)(n * n));
  size_t ws = resq_eigh_workspace_size(n);
  void *work = malloc(ws);
  RC_CHECK(resq_eigh_f64__ref(n, Vr, n, wr, work, ws) == RESQ_OK, "ref eigh: %s", resq_last_error());
  free(work);
  double an = fro_sym(n, A), r1, o1, r2, o2;
  eig_quality(n, A, Vg, wg, &r1, &o1);
  eig_quality(n, A, Vr, wr, &r2, &o2);
  /* the premise, when both solved the same matrix A (end to end the GPU solved its own C,
   * whose distance from A enters r1 and eta) */
  RC_CHECK(!check_b1 || (r1 <= C_BACKWARD * n * k_eps * an && o1 <= C_BACKWARD * n * k_eps),
           "cuSOLVER meets (B1): res %.3g, orth %.3g (n eps units)", r1 / (n * k_eps * an), o1 / (n * k_eps));
  RC_CHECK(order_sign_violations(n, Vg, wg) == 0, "order or sign convention violated");
  double e1 = eta_of(r1, o1, an), e2 = eta_of(r2, o2, an), we = 0;
  for (int64_t j = 0; j < n; j++) we = fmax(we, fabs(wg[j] - wr[j]));
  RC_CHECK(we <= e1 + e2, "eigenvalues differ by %.3g > %.3g", we, e1 + e2);
  int64_t rr[3] = {n / 8 > 0 ? n / 8 : 1, 1, n / 2};
  double cnorm = fmax(fabs(wr[0]), fabs(wr[n - 1]));
  int ran = 0;
  for (int i = 0; i < 3; i++) {
    int64_t k = rr[i];
    if (k < 1 || k >= n) continue;
    double gap = wr[n - k] - wr[n - k - 1];
    if (gap / cnorm < 1e-8) {
      (*skipped)++;
      continue;
    }
    double g = gap - 2 * fmax(e1, e2);
    double tol = sqrt(2.0) * e1 / (g - 2 * e1) + 2 * o1 + sqrt(2.0) * e2 / (g - 2 * e2) + 2 * o2;
    double pd = proj_dist(n, k, Vg, Vr);
    RC_CHECK(g > 4 * fmax(e1, e2) && pd <= tol, "r=%lld: ||P_gpu - P_ref||_F = %.3g > %.3g (gap %.3g)", (long long)k, pd,
             tol, gap);
    ran++;
  }
  free(Vr), free(wr);
  return ran;
}

/* run resq_eigh_f64__cuda on A (n x n); V, w host */
static resq_status gpu_eigh(int64_t n, const double *A, double *V, double *w) {
  double *dA = dup_h2d(A, sizeof(double) * (size_t)(n * n)), *dw = dev_fill(sizeof(double) * (size_t)n, 0);
  size_t ws = resq_eigh_workspace_size__cuda(n);
  void *dwork = dev_fill(ws ? ws : 1, 0);
  resq_status st = resq_eigh_f64__cuda(n, dA, n, dw, dwork, ws);
  d2h_sync(V, dA, sizeof(double) * (size_t)(n * n));
  d2h_sync(w, dw, sizeof(double) * (size_t)n);
  resq_cuda_free(dA), resq_cuda_free(dw), resq_cuda_free(dwork);
  return st;
}

static void case_accum(void) {
  if (!rc_case("accum_within_gamma_bound")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t ds[] = {64, 256, 5};
  for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++) {
    const int64_t d = ds[di], T = 700, ld = d + 3;
    rc_note("d=%lld T=%lld", (long long)d, (long long)T);
    float *x = calloc((size_t)(T * ld), 4), *xc = calloc((size_t)(T * d), 4);
    llm_tokens(&r, xc, T, d);
    for (int64_t t = 0; t < T; t++) memcpy(x + t * ld, xc + t * d, sizeof(float) * (size_t)d);
    uint16_t *x16 = malloc(2 * (size_t)(T * ld));
    for (int64_t i = 0; i < T * ld; i++) x16[i] = resq_f32_to_f16(x[i]);
    resq_pca_accum ref, gpu;
    RC_CHECK(resq_pca_accum_init(&ref, d) == RESQ_OK && resq_pca_accum_init__cuda(&gpu, d) == RESQ_OK, "init");
    RC_CHECK(resq_pca_accum_f32__ref(&ref, T, x, ld) == RESQ_OK, "ref accum");
    float *dx = dup_h2d(x, 4 * (size_t)(T * ld));
    uint16_t *dx16 = dup_h2d(x16, 2 * (size_t)(T * ld));
    /* three batches, f32 and f16 entry points mixed (the f16 values equal the f32 ones) */
    RC_CHECK(resq_pca_accum_f32__cuda(&gpu, 100, dx, ld) == RESQ_OK, "gpu accum: %s", resq_last_error());
    RC_CHECK(resq_pca_accum_f16__cuda(&gpu, 1, dx16 + 100 * ld, ld) == RESQ_OK, "gpu accum f16");
    RC_CHECK(resq_pca_accum_f32__cuda(&gpu, T - 101, dx + 101 * ld, ld) == RESQ_OK, "gpu accum");
    RC_CHECK(resq_pca_accum_f32__cuda(&gpu, 0, dx, ld) == RESQ_OK && gpu.count == T, "count %lld", (long long)gpu.count);
    double *S = dalloc((size_t)(d * d));
    d2h_sync(S, gpu.S, sizeof(double) * (size_t)(d * d));
    long bad = 0, lower = 0;
    double worst = 0;
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = 0; j < d; j++) {
        if (j < i) {
          lower += S[i * d + j] != 0.0;
          continue;
        }
        ldbl a = 0;
        for (int64_t t = 0; t < T; t++) a += fabsl((ldbl)xc[t * d + i] * xc[t * d + j]);
        double gam = (double)T * 0x1p-53 / (1 - (double)T * 0x1p-53);
        double tol = 2 * gam * (double)a, diff = fabs(S[i * d + j] - ref.S[i * d + j]);
        bad += !(diff <= tol);
        if (tol > 0) worst = fmax(worst, diff / tol);
      }
    RC_CHECK(bad == 0, "%ld entries of S beyond 2 gamma_T sum|x_i x_j|", bad);
    RC_CHECK(lower == 0, "%ld entries of the strict lower triangle written", lower);
    printf("  d=%lld: worst |S_gpu - S_ref| / bound = %.3g\n", (long long)d, worst);
    /* the covariance is the reference's operations on the GPU's S: bit for bit */
    resq_pca_accum host = ref;
    host.S = S;
    host.count = gpu.count;
    double *Cw = dalloc((size_t)(d * (d + 2))), *Cg = dalloc((size_t)(d * (d + 2)));
    double shw = -1, shg = -2;
    RC_CHECK(resq_pca_covariance_f64__ref(&host, 0.01, Cw, d + 2, &shw) == RESQ_OK, "ref covariance");
    double *dC = dup_h2d(Cg, sizeof(double) * (size_t)(d * (d + 2)));
    RC_CHECK(resq_pca_covariance_f64__cuda(&gpu, 0.01, dC, d + 2, &shg) == RESQ_OK, "gpu covariance: %s", resq_last_error());
    d2h_sync(Cg, dC, sizeof(double) * (size_t)(d * (d + 2)));
    RC_CHECK(!memcmp(Cw, Cg, sizeof(double) * (size_t)(d * (d + 2))) && shw == shg,
             "covariance from the same S is not bit-identical to the reference's");
    /* the basis end to end vs the reference's basis of its own S */
    double *Ug = dalloc((size_t)(d * d)), *wg = dalloc((size_t)d);
    double *dU = dev_fill(sizeof(double) * (size_t)(d * d), 0), *dw = dev_fill(sizeof(double) * (size_t)d, 0);
    size_t bws = resq_pca_basis_workspace_size__cuda(d);
    void *dwork = dev_fill(bws ? bws : 1, 0);
    RC_CHECK(resq_pca_basis_f64__cuda(&gpu, 0.01, dw, dU, d, dwork, bws) == RESQ_OK, "gpu basis: %s", resq_last_error());
    d2h_sync(Ug, dU, sizeof(double) * (size_t)(d * d));
    d2h_sync(wg, dw, sizeof(double) * (size_t)d);
    double *Cr = dalloc((size_t)(d * d));
    RC_CHECK(resq_pca_covariance_f64__ref(&ref, 0.01, Cr, d, NULL) == RESQ_OK, "ref covariance");
    /* the GPU basis solves C_gpu; its residual against C_ref absorbs ||C_gpu - C_ref||,
     * so compare_eig measures both the accumulation and the solver */
    int skipped = 0;
    compare_eig(d, Cr, Ug, wg, 0, &skipped);
    resq_cuda_free(dC), resq_cuda_free(dU), resq_cuda_free(dw), resq_cuda_free(dwork), resq_cuda_free(dx), resq_cuda_free(dx16);
    resq_pca_accum_free(&ref), resq_pca_accum_free__cuda(&gpu);
    free(x), free(xc), free(x16), free(S), free(Cw), free(Cg), free(Ug), free(wg), free(Cr);
  }
}

static void case_eigh(void) {
  if (!rc_case("eigh_vs_ref_bounds")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t ns[] = {1, 5, 16, 64, 128, 256};
  int ran = 0, skipped = 0;
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    const int64_t n = ns[i];
    rc_note("n=%lld", (long long)n);
    double *A = dalloc((size_t)(n * n)), *V = dalloc((size_t)(n * n)), *w = dalloc((size_t)n);
    for (int64_t a = 0; a < n; a++)
      for (int64_t b = 0; b <= a; b++) A[a * n + b] = A[b * n + a] = resq_rng_normal(&r);
    RC_CHECK(gpu_eigh(n, A, V, w) == RESQ_OK, "gpu eigh: %s", resq_last_error());
    ran += compare_eig(n, A, V, w, 1, &skipped);
    /* only the lower triangle is read: garbage above must not matter */
    double *A2 = dalloc((size_t)(n * n)), *V2 = dalloc((size_t)(n * n)), *w2 = dalloc((size_t)n);
    memcpy(A2, A, sizeof(double) * (size_t)(n * n));
    for (int64_t a = 0; a < n; a++)
      for (int64_t b = a + 1; b < n; b++) A2[a * n + b] = 1e300;
    RC_CHECK(gpu_eigh(n, A2, V2, w2) == RESQ_OK, "gpu eigh (garbage upper)");
    RC_CHECK(!memcmp(V, V2, sizeof(double) * (size_t)(n * n)) && !memcmp(w, w2, sizeof(double) * (size_t)n),
             "the upper triangle changed the result");
    free(A), free(V), free(w), free(A2), free(V2), free(w2);
  }
  printf("  %d projector comparisons, %d skipped (relative gap < 1e-8)\n", ran, skipped);
  RC_CHECK(ran >= 10, "only %d comparisons", ran);
}

static void case_batched(void) {
  if (!rc_case("eigh_batched_per_head")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][2] = {{8, 128}, {4, 64}, {3, 16}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    const int64_t B = cfg[c][0], n = cfg[c][1], T = 3 * n;
    rc_note("batch=%lld n=%lld", (long long)B, (long long)n);
    double *A = dalloc((size_t)(B * n * n)), *V = dalloc((size_t)(B * n * n)), *w = dalloc((size_t)(B * n));
    float *x = calloc((size_t)(T * n), 4);
    for (int64_t b = 0; b < B; b++) { /* per-head covariances of LLM-like values */
      llm_tokens(&r, x, T, n);
      resq_pca_accum a;
      resq_pca_accum_init(&a, n);
      resq_pca_accum_f32__ref(&a, T, x, n);
      RC_CHECK(resq_pca_covariance_f64__ref(&a, 0.01, A + b * n * n, n, NULL) == RESQ_OK, "ref covariance");
      resq_pca_accum_free(&a);
    }
    double *dA = dup_h2d(A, sizeof(double) * (size_t)(B * n * n)), *dw = dev_fill(sizeof(double) * (size_t)(B * n), 0);
    size_t ws = resq_eigh_batched_workspace_size__cuda(B, n);
    void *dwork = dev_fill(ws ? ws : 1, 0);
    RC_CHECK(resq_eigh_batched_f64__cuda(B, n, dA, n, dw, dwork, ws) == RESQ_OK, "batched: %s", resq_last_error());
    d2h_sync(V, dA, sizeof(double) * (size_t)(B * n * n));
    d2h_sync(w, dw, sizeof(double) * (size_t)(B * n));
    int skipped = 0, ran = 0;
    for (int64_t b = 0; b < B; b++) ran += compare_eig(n, A + b * n * n, V + b * n * n, w + b * n, 1, &skipped);
    RC_CHECK(ran >= B, "only %d comparisons", ran);
    resq_cuda_free(dA), resq_cuda_free(dw), resq_cuda_free(dwork);
    free(A), free(V), free(w), free(x);
  }
}

static void case_failures(void) {
  if (!rc_case("failures_write_nothing")) return;
  resq_pca_accum a;
  RC_CHECK(resq_pca_accum_init__cuda(&a, RESQ_PCA_MAX_D + 1) == RESQ_ERR_TOO_LARGE, "d too large");
  RC_CHECK(resq_pca_accum_init__cuda(&a, 0) == RESQ_ERR_INVALID_ARG, "d = 0");
  const int64_t d = 16;
  RC_CHECK(resq_pca_accum_init__cuda(&a, d) == RESQ_OK, "init");
  double *dC = dev_fill(sizeof(double) * d * d, 0x5a), *dw = dev_fill(sizeof(double) * d, 0x5a);
  double sh = 7.0;
  RC_CHECK(resq_pca_covariance_f64__cuda(&a, 0.01, dC, d, &sh) == RESQ_ERR_DEGENERATE && sh == 7.0, "no tokens");
  float zeros[16 * 4] = {0};
  float *dz = dup_h2d(zeros, sizeof zeros);
  RC_CHECK(resq_pca_accum_f32__cuda(&a, 4, dz, d) == RESQ_OK, "accumulate zeros");
  RC_CHECK(resq_pca_covariance_f64__cuda(&a, 0.01, dC, d, &sh) == RESQ_ERR_DEGENERATE, "all-zero data");
  RC_CHECK(resq_pca_covariance_f64__cuda(&a, -1.0, dC, d, &sh) == RESQ_ERR_INVALID_ARG, "damp < 0");
  RC_CHECK(resq_pca_accum_f32__cuda(&a, 2, dz, d - 1) == RESQ_ERR_INVALID_ARG, "ldx < d");
  size_t ws = resq_pca_basis_workspace_size__cuda(d);
  void *dwork = dev_fill(ws, 0);
  RC_CHECK(resq_pca_basis_f64__cuda(&a, 0.01, dw, dC, d, dwork, ws) == RESQ_ERR_DEGENERATE, "basis of zeros");
  RC_CHECK(resq_pca_basis_f64__cuda(&a, 0.01, dw, dC, d, dwork, ws - 1) == RESQ_ERR_INVALID_ARG, "small workspace");
  double *hC = dalloc(d * d);
  d2h_sync(hC, dC, sizeof(double) * d * d);
  int untouched = 1;
  for (int64_t i = 0; i < d * d; i++) {
    uint64_t b;
    memcpy(&b, &hC[i], 8);
    untouched &= b == 0x5a5a5a5a5a5a5a5aull;
  }
  RC_CHECK(untouched, "a failed call wrote its output");
  RC_CHECK(resq_eigh_f64__cuda(0, dC, d, dw, dwork, ws) == RESQ_ERR_INVALID_ARG, "n = 0");
  RC_CHECK(resq_eigh_f64__cuda(d, dC, d - 1, dw, dwork, ws) == RESQ_ERR_INVALID_ARG, "lda < n");
  resq_pca_accum_free__cuda(&a);
  RC_CHECK(a.S == NULL && a.d == 0, "free zeroes the accumulator");
  resq_cuda_free(dC), resq_cuda_free(dw), resq_cuda_free(dz), resq_cuda_free(dwork);
  free(hC);
}

int main(int argc, char **argv) {
  rc_init("cuda_pca_test", argc, argv);
  rc_gpu_require("cuda_pca_test");
  case_accum();
  case_eigh();
  case_batched();
  case_failures();
  return rc_finish();
}
