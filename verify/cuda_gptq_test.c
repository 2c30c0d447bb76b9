/* SPDX-License-Identifier: Apache-2.0
 * GPU test: the CUDA GPTQ (resq/cuda.h "GPTQ") vs resq_gptq_f64__ref
 * (ref/CONTRACT.md section 12), by what the two implementations share exactly
 * and by the GPTQ objective:
 *  - Hessian: element-wise |H_gpu - H_ref| <= 2 gamma_T sum_t |X_ti X_tj| + 2u|H|
 *    per add_batch call (the same scaled values X in both; the double sums in
 *    two orders; the running-average rescale one rounding each);
 *  - quantizer scales: bit for bit (they are found on the original W by the
 *    reference's fp32 operations); with the MSE search, a different choice is
 *    accepted only at a near-tie: the reference's own error of the GPU's choice
 *    is within 4 (n+1) u of its minimum (the two double sums of n pow() terms
 *    differ by at most (n+1) u each, pow() by an ulp);
 *  - codes: rows of W are independent in GPTQ (a row's codes depend on that
 *    row and on U only). The implementations differ by cuSOLVER's Cholesky/
 *    inverse and cuBLAS's lazy updates, i.e. by ~cond(H) 1e-16 relative in the
 *    values being quantized, so a code can differ only where W/s is that close
 *    to a rounding boundary (probability ~1e-12 per code here); after a flip the
 *    rest of the row follows other error feedback. The check: at most 1% of the
 *    rows differ at all (the chance of a flip in 1% of the rows is ~1e-10);
 *    rows without any difference have bit-identical Q and objective;
 *  - objective L(Q) = tr((W-Q) H (W-Q)^T) (resq_gptq_objective_f64__ref):
 *    GPTQ on the GPU beats round-to-nearest on correlated inputs, as the
 *    contract requires of GPTQ; the GPU/ref objective ratio is printed;
 *  - dead columns, act-order, groups, the retry-free path; failures return the
 *    reference's codes and write nothing.
 * Exits 77 without a usable GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/gptq.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq_check.h"
#include "resq_gpu.h"

typedef long double ldbl;

/* correlated calibration tokens: x = z M with a random mixing matrix (plus outlier channels) */
static void tokens(resq_rng *r, float *x, int64_t T, int64_t K) {
  double *M = calloc((size_t)(K * 8), sizeof(double));
  for (int64_t i = 0; i < 8 * K; i++) M[i] = resq_rng_normal(r);
  for (int64_t t = 0; t < T; t++) {
    double z[8];
    for (int k = 0; k < 8; k++) z[k] = resq_rng_normal(r);
    for (int64_t i = 0; i < K; i++) {
      double v = 0.3 * resq_rng_normal(r);
      for (int k = 0; k < 8; k++) v += z[k] * M[k * K + i];
      if (i % 37 == 5) v *= 20.0;
      x[t * K + i] = resq_round_f16((float)v);
    }
  }
  free(M);
}

static void weights(resq_rng *r, float *W, int64_t N, int64_t K) {
  for (int64_t i = 0; i < N * K; i++) W[i] = (float)(0.02 * resq_rng_normal(r) * (resq_rng_below(r, 100) == 0 ? 8 : 1));
}

/* the reference's MSE error of scale s1 on n values (CONTRACT s.10) */
static double mse_err(const float *w, int64_t n, float s1, int bits) {
  double err = 0.0;
  for (int64_t j = 0; j < n; j++) {
    float q = s1 * (float)resq_wquant_code(w[j], s1, bits);
    err += pow(fabs((double)(q - w[j])), 2.4);
  }
  return err;
}

static void case_hessian(void) {
  if (!rc_case("hessian_within_gamma_bound")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t K = 96, T = 200, B = 2;
  float *x = malloc(sizeof(float) * (size_t)(B * T * K));
  tokens(&r, x, B * T, K);
  uint16_t *x16 = malloc(2 * (size_t)(B * T * K));
  for (int64_t i = 0; i < B * T * K; i++) x16[i] = resq_f32_to_f16(x[i]);
  resq_gptq_hessian hr, hg;
  RC_CHECK(resq_gptq_hessian_init(&hr, K) == RESQ_OK && resq_gptq_hessian_init__cuda(&hg, K) == RESQ_OK, "init");
  float *dx = dup_h2d(x, 4 * (size_t)(B * T * K));
  uint16_t *dx16 = dup_h2d(x16, 2 * (size_t)(B * T * K));
  /* two calls (the running average), f32 then f16 */
  RC_CHECK(resq_gptq_add_batch_f32__ref(&hr, 1, T, x, K) == RESQ_OK, "ref");
  RC_CHECK(resq_gptq_add_batch_f32__ref(&hr, 1, T, x + T * K, K) == RESQ_OK, "ref");
  RC_CHECK(resq_gptq_add_batch_f32__cuda(&hg, 1, T, dx, K) == RESQ_OK, "gpu: %s", resq_last_error());
  RC_CHECK(resq_gptq_add_batch_f16__cuda(&hg, 1, T, dx16 + T * K, K) == RESQ_OK, "gpu f16: %s", resq_last_error());
  RC_CHECK(hg.nsamples == 2 && hg.ntokens == 2 * T, "counts %lld %lld", (long long)hg.nsamples, (long long)hg.ntokens);
  double *H = malloc(sizeof(double) * (size_t)(K * K));
  d2h_sync(H, hg.H, sizeof(double) * (size_t)(K * K));
  /* bound: after the two calls H = (H1/2) + X2 X2^T with X = sqrt(2/n) x; per entry the
   * double sums of |terms| times gamma_T for each implementation, plus the rescale */
  const double u = 0x1p-53, gam = (double)(T + 2) * u / (1 - (double)(T + 2) * u);
  long bad = 0, asym = 0;
  for (int64_t i = 0; i < K; i++)
    for (int64_t j = 0; j < K; j++) {
      ldbl a1 = 0, a2 = 0;
      for (int64_t t = 0; t < T; t++) {
        a1 += fabsl((ldbl)x[t * K + i] * x[t * K + j]) * 2.0L;             /* call 1: c^2 = 2 */
        a2 += fabsl((ldbl)x[(T + t) * K + i] * x[(T + t) * K + j]) * 1.0L; /* call 2: c^2 = 1 */
      }
      double tol = 2 * gam * (double)(a1 * 0.5L + a2) + 4 * u * fabs(hr.H[i * K + j]);
      bad += !(fabs(H[i * K + j] - hr.H[i * K + j]) <= tol);
      asym += H[i * K + j] != H[j * K + i];
    }
  RC_CHECK(bad == 0, "%ld entries of H beyond the bound", bad);
  RC_CHECK(asym == 0, "H is not bitwise symmetric (%ld)", asym);
  resq_gptq_hessian_free(&hr), resq_gptq_hessian_free__cuda(&hg);
  resq_cuda_free(dx), resq_cuda_free(dx16);
  free(x), free(x16), free(H);
}

/* GPTQ of W with the reference Hessian on both sides */
static void check_gptq(resq_rng *r, const resq_gptq_params *p, int64_t N, int dead_cols) {
  const int64_t K = p->q.K, Klo = K - p->q.r, T = 3 * K;
  int64_t ngl = 0;
  resq_gptq_check(p, &ngl);
  rc_note("K=%lld r=%lld N=%lld act_order=%d mse=%d gs=%lld dead=%d", (long long)K, (long long)p->q.r, (long long)N,
          p->act_order, p->q.mse, (long long)p->group_size, dead_cols);
  float *x = malloc(sizeof(float) * (size_t)(T * K)), *W = malloc(sizeof(float) * (size_t)(N * K));
  tokens(r, x, T, K);
  if (dead_cols)
    for (int64_t t = 0; t < T; t++) x[t * K + 3] = 0.0f, x[t * K + K - 2] = 0.0f;
  weights(r, W, N, K);
  resq_gptq_hessian h, hd;
  resq_gptq_hessian_init(&h, K);
  RC_CHECK(resq_gptq_add_batch_f32__ref(&h, 1, T, x, K) == RESQ_OK, "hessian");
  /* the same H on the device */
  hd = h;
  hd.buf = NULL;
  hd.H = dup_h2d(h.H, sizeof(double) * (size_t)(K * K));
  /* reference */
  size_t wsr = resq_gptq_workspace_size(p, N);
  void *work = malloc(wsr);
  int8_t *cr = malloc((size_t)(N * K)), *cg = malloc((size_t)(N * K));
  float *slr = malloc(sizeof(float) * (size_t)(N * ngl + 1)), *shr = malloc(sizeof(float) * (size_t)N + 4);
  float *slg = malloc(sizeof(float) * (size_t)(N * ngl + 1)), *shg = malloc(sizeof(float) * (size_t)N + 4);
  float *Qr = malloc(sizeof(float) * (size_t)(N * K)), *Qg = malloc(sizeof(float) * (size_t)(N * K));
  resq_gptq_info ir, ig;
  RC_CHECK(resq_gptq_f64__ref(p, &h, N, W, K, cr, K, slr, shr, Qr, K, &ir, work, wsr) == RESQ_OK, "ref: %s",
           resq_last_error());
  /* GPU */
  size_t wsg = resq_gptq_workspace_size__cuda(p, N);
  RC_CHECK(wsg > 0, "workspace size");
  void *dwork = dev_fill(wsg ? wsg : 1, 0);
  float *dW = dup_h2d(W, sizeof(float) * (size_t)(N * K));
  int8_t *dc = dev_fill((size_t)(N * K), 0);
  float *dsl = dev_fill(sizeof(float) * (size_t)(N * ngl + 1), 0), *dsh = dev_fill(sizeof(float) * (size_t)N + 4, 0);
  float *dQ = dev_fill(sizeof(float) * (size_t)(N * K), 0);
  resq_status st = resq_gptq_f64__cuda(p, &hd, N, dW, K, dc, K, dsl, dsh, dQ, K, &ig, dwork, wsg);
  RC_CHECK(st == RESQ_OK, "gpu: %s", resq_last_error());
  d2h_sync(cg, dc, (size_t)(N * K));
  d2h_sync(slg, dsl, sizeof(float) * (size_t)(N * ngl + 1));
  d2h_sync(shg, dsh, sizeof(float) * (size_t)N + 4);
  d2h_sync(Qg, dQ, sizeof(float) * (size_t)(N * K));
  RC_CHECK(ig.dead == ir.dead && ig.damp == ir.damp && ig.retried == ir.retried, "info: dead %lld/%lld damp %a/%a retried %d/%d",
           (long long)ig.dead, (long long)ir.dead, ig.damp, ir.damp, ig.retried, ir.retried);
  /* scales: exact, or a verified near-tie of the MSE search */
  int *tie = calloc((size_t)N, sizeof(int));
  for (int64_t n = 0; n < N; n++) {
    if (p->q.r > 0 && shg[n] != shr[n]) {
      int ok = p->q.mse && mse_err(W + n * K + Klo, p->q.r, shg[n], p->q.bits_hi) <=
                               mse_err(W + n * K + Klo, p->q.r, shr[n], p->q.bits_hi) * (1 + 4 * (p->q.r + 1) * 0x1p-53);
      RC_CHECK(ok, "row %lld: hi scale %a vs %a", (long long)n, (double)shg[n], (double)shr[n]);
      tie[n] = 1;
    }
    if (Klo > 0 && p->group_size == 0 && slg[n] != slr[n]) {
      int ok = p->q.mse && mse_err(W + n * K, Klo, slg[n], p->q.bits_lo) <=
                               mse_err(W + n * K, Klo, slr[n], p->q.bits_lo) * (1 + 4 * (Klo + 1) * 0x1p-53);
      RC_CHECK(ok, "row %lld: lo scale %a vs %a", (long long)n, (double)slg[n], (double)slr[n]);
      tie[n] = 1;
    }
  }
  /* codes: rows identical, with a bound on differing rows */
  int64_t diff_rows = 0, ties = 0;
  for (int64_t n = 0; n < N; n++) {
    ties += tie[n];
    int same = !memcmp(cg + n * K, cr + n * K, (size_t)K);
    if (p->group_size > 0 && same) same = !memcmp(slg + n * ngl, slr + n * ngl, sizeof(float) * (size_t)ngl);
    if (!same && !tie[n]) diff_rows++;
    if (same && !tie[n]) RC_CHECK(!memcmp(Qg + n * K, Qr + n * K, sizeof(float) * (size_t)K), "row %lld: same codes, other Q", (long long)n);
  }
  RC_CHECK(diff_rows * 100 <= N, "%lld of %lld rows have other codes", (long long)diff_rows, (long long)N);
  /* objective: GPTQ (GPU) beats RTN; the ratio to the reference is printed */
  int8_t *ct = malloc((size_t)(N * K));
  float *Qt = malloc(sizeof(float) * (size_t)(N * K)), *st_lo = malloc(sizeof(float) * (size_t)(N * ngl + 1)),
        *st_hi = malloc(sizeof(float) * (size_t)N + 4);
  RC_CHECK(resq_gptq_rtn_f32__ref(p, N, W, K, ct, K, st_lo, st_hi, Qt, K) == RESQ_OK, "rtn");
  double Lr, Lg, Lt;
  resq_gptq_objective_f64__ref(&h, N, W, K, Qr, K, &Lr, NULL);
  resq_gptq_objective_f64__ref(&h, N, W, K, Qg, K, &Lg, NULL);
  resq_gptq_objective_f64__ref(&h, N, W, K, Qt, K, &Lt, NULL);
  printf("  objective: gpu/ref %.6f, gpu/rtn %.4f; rows with other codes %lld, MSE near-ties %lld (of %lld)\n", Lg / Lr,
         Lg / Lt, (long long)diff_rows, (long long)ties, (long long)N);
  RC_CHECK(Lg < Lt, "GPTQ on the GPU (%.6g) does not beat RTN (%.6g)", Lg, Lt);
  if (diff_rows == 0 && ties == 0) RC_CHECK(Lg == Lr, "identical codes but another objective");
  resq_gptq_hessian_free(&h);
  resq_cuda_free(hd.H), resq_cuda_free(dwork), resq_cuda_free(dW), resq_cuda_free(dc), resq_cuda_free(dsl);
  resq_cuda_free(dsh), resq_cuda_free(dQ);
  free(x), free(W), free(work), free(cr), free(cg), free(slr), free(shr), free(slg), free(shg), free(Qr), free(Qg);
  free(tie), free(ct), free(Qt), free(st_lo), free(st_hi);
}

static void case_gptq(void) {
  if (!rc_case("gptq_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][6] = {
      /* K, r, N, act_order, mse, group_size */
      {256, 32, 200, 0, 0, 0}, {256, 32, 200, 1, 0, 0}, {256, 32, 120, 0, 1, 0}, {384, 0, 150, 0, 0, 0},
      {256, 32, 100, 0, 0, 64}, {300, 40, 100, 1, 1, 0}, {128, 128, 64, 0, 0, 0},
  };
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    resq_gptq_params p = resq_gptq_default(cfg[c][0]);
    p.q.r = cfg[c][1], p.act_order = (int)cfg[c][3], p.q.mse = (int)cfg[c][4], p.group_size = cfg[c][5];
    if (p.q.r == 0) p.q.bits_lo = 4;
    check_gptq(&r, &p, cfg[c][2], 0);
  }
  resq_gptq_params p = resq_gptq_default(256);
  check_gptq(&r, &p, 80, 1); /* dead columns */
}

static void case_failures(void) {
  if (!rc_case("failures_write_nothing")) return;
  const int64_t K = 64, N = 8;
  resq_gptq_params p = resq_gptq_default(K);
  resq_gptq_hessian h;
  RC_CHECK(resq_gptq_hessian_init__cuda(&h, RESQ_GPTQ_MAX_K + 1) == RESQ_ERR_TOO_LARGE, "K too large");
  RC_CHECK(resq_gptq_hessian_init__cuda(&h, K) == RESQ_OK, "init");
  size_t ws = resq_gptq_workspace_size__cuda(&p, N);
  void *dwork = dev_fill(ws, 0);
  float *dW = dev_fill(sizeof(float) * N * K, 0);
  int8_t *dc = dev_fill((size_t)(N * K), 0x77);
  float *dsl = dev_fill(sizeof(float) * N, 0), *dsh = dev_fill(sizeof(float) * N, 0);
  /* no calibration sequences; then an all-zero Hessian */
  RC_CHECK(resq_gptq_f64__cuda(&p, &h, N, dW, K, dc, K, dsl, dsh, NULL, 0, NULL, dwork, ws) == RESQ_ERR_DEGENERATE,
           "no samples");
  h.nsamples = 1;
  RC_CHECK(resq_gptq_f64__cuda(&p, &h, N, dW, K, dc, K, dsl, dsh, NULL, 0, NULL, dwork, ws) == RESQ_ERR_DEGENERATE,
           "all-zero H");
  /* not positive definite: -I with no damping */
  double *Hn = calloc((size_t)(K * K), sizeof(double));
  for (int64_t i = 0; i < K; i++) Hn[i * K + i] = -1.0;
  resq_cuda_h2d(h.H, Hn, sizeof(double) * (size_t)(K * K));
  p.percdamp = 0.0;
  RC_CHECK(resq_gptq_f64__cuda(&p, &h, N, dW, K, dc, K, dsl, dsh, NULL, 0, NULL, dwork, ws) == RESQ_ERR_DEGENERATE,
           "not positive definite: %s", resq_last_error());
  p.percdamp = 0.01;
  RC_CHECK(resq_gptq_f64__cuda(&p, &h, N, dW, K, dc, K, dsl, dsh, NULL, 0, NULL, dwork, ws - 1) == RESQ_ERR_INVALID_ARG,
           "small workspace");
  resq_gptq_params pk = resq_gptq_default(K + 8);
  RC_CHECK(resq_gptq_f64__cuda(&pk, &h, N, dW, K, dc, K, dsl, dsh, NULL, 0, NULL, dwork, ws) == RESQ_ERR_SHAPE, "K mismatch");
  resq_gptq_params pu = p;
  pu.group_size = 8, pu.act_order = 1;
  RC_CHECK(resq_gptq_f64__cuda(&pu, &h, N, dW, K, dc, K, dsl, dsh, NULL, 0, NULL, dwork, ws) == RESQ_ERR_UNSUPPORTED,
           "groups with act-order");
  int8_t hc[64 * 8];
  d2h_sync(hc, dc, sizeof hc);
  int untouched = 1;
  for (size_t i = 0; i < sizeof hc; i++) untouched &= hc[i] == 0x77;
  RC_CHECK(untouched, "a failed call wrote codes");
  resq_gptq_hessian_free__cuda(&h);
  resq_cuda_free(dwork), resq_cuda_free(dW), resq_cuda_free(dc), resq_cuda_free(dsl), resq_cuda_free(dsh);
  free(Hn);
}

int main(int argc, char **argv) {
  rc_init("cuda_gptq_test", argc, argv);
  rc_gpu_require("cuda_gptq_test");
  case_hessian();
  case_gptq();
  case_failures();
  return rc_finish();
}
