/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_pca_gptq.c -- the offline stages of ResQ, timed once each (they
 * take seconds to minutes; RESQ_BENCH_ONCE: one call, one repetition), on the
 * reference (__ref) and the CPU backend (__cpu: OpenBLAS/LAPACK, resq/cpu.h):
 *
 *   pca_basis_f64__<backend>/d:<d>/tokens:<T>
 *       one activation's PCA basis: the streaming second moment of T f16
 *       tokens (resq_pca_accum_f16), covariance + damping + symmetric
 *       eigendecomposition (resq_pca_basis_f64). ResQ computes one per rotated
 *       activation of a layer (hidden size d; the per-head value/key bases are
 *       hd = 128 and cost far less).
 *   pca_rotation_f64__ref/d:<d>
 *       the random in-subspace rotations R = blockdiag(R_lo, R_hi), r = d/8
 *       (resq_pca_blockdiag_f64) and U = U_pca R (resq_pca_apply_blockdiag_f64):
 *       reference only (the CPU backend has no version).
 *   gptq_hessian_f64__<backend>/K:<K>/tokens:<T>
 *       the GPTQ Hessian of one linear-layer input (T tokens, one add_batch).
 *   gptq_f64__<backend>/N:<N>/K:<K>/tokens:<T>
 *       GPTQ of one weight [N, K] with ResQ's mixed quantizer (r = K/8), the
 *       Hessian given (its accumulation is the benchmark above; layers that
 *       share an input -- q/k/v, gate/up -- share the Hessian).
 *
 * Sizes. CPU backend: the Llama-3-8B decoder layer (d = 4096; GPTQ of q/o
 * 4096x4096, k/v 1024x4096, gate/up 14336x4096, down 4096x14336 and the
 * Hessians of the four distinct inputs), so the report can sum a layer end to
 * end; quick: 256. Reference: scalar double on one thread, O(d^3)
 * (eigendecomposition) and O(N K^2 + K^3) (GPTQ), minutes at Llama sizes
 * (eigh of d = 4096: ~7 min, GPTQ of 4096 x 4096: ~1.5 min on this machine
 * type by the d^3 scaling of measured points), so it is measured at d = K = N
 * = 1024 (quick 256), next to the CPU backend at the same size.
 * Calibration: T = 2048 tokens (quick 512); the accumulation cost is linear in
 * T (upstream calibrates on 128 x 2048 tokens: 128 x the accumulation time).
 *
 * Inputs: LLM-like activations -- correlated channels (every channel carries
 * a shared component of 16 latent factors) plus 4 outlier channels 50-200x
 * larger -- so that the covariance has a spread spectrum and GPTQ has
 * correlations to exploit; weights N(0, 0.02^2).
 *
 * Checks (on the output of the timed call itself; the stages are
 * deterministic). Both backends are checked by the same properties; their
 * agreement with each other is verify/cpu_pca_f64_test.c and
 * verify/cpu_gptq_f64_test.c (Weyl / Davis-Kahan / objective bounds):
 *   PCA: eigenvalues ascending; for 8 sampled eigenpairs (the top r included)
 *     the residual |C u - lambda u|_2 <= 4 d u_64 |C|_F and |u^T u - 1|,
 *     |u_i^T u_j| <= 4 d u_64 (a backward-stable symmetric eigensolver gives
 *     residuals and orthogonality O(d u_64 |C|): Householder tridiagonalization
 *     + QL or divide and conquer, Golub-Van Loan 8.3-8.5), with C recomputed
 *     independently from the tokens in double for those columns. The rotation:
 *     U R orthonormal on sampled columns (same bound).
 *   GPTQ: every code in its column's range, Q = s * code exactly, and the
 *     objective tr((W-Q) H (W-Q)^T) below round-to-nearest's on the same
 *     rows (ref/CONTRACT.md section 12: GPTQ must beat RTN on correlated
 *     inputs), summed over 4 blocks of 8 rows spread over W (the objective is
 *     a sum of per-row terms of O(K^2) each); obj_vs_rtn = L(GPTQ) / L(RTN).
 *   Hessian: bitwise symmetric, diagonal > 0. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/gptq.h"
#include "resq/pca.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"

#define U64 0x1.0p-53
#define NSAMPLE 8
#define NLATENT 16
#define NOUTLIER 4
#define OBJ_ROWS 32 /* rows of W the GPTQ objective check evaluates (4 blocks of 8) */

/* LLM-like activations [T][d] (f16 bits and fp32 copy). */
static void make_acts(int64_t T, int64_t d, uint16_t *x16, float *x32) {
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name("pca_gptq_acts"));
  float *mix = malloc(sizeof(float) * (size_t)(NLATENT * d));
  int64_t outl[NOUTLIER];
  for (int64_t i = 0; i < NLATENT * d; i++) mix[i] = (float)resq_rng_normal(&r) * 0.5f;
  for (int j = 0; j < NOUTLIER; j++) outl[j] = (int64_t)resq_rng_below(&r, (uint64_t)d);
  for (int64_t t = 0; t < T; t++) {
    float z[NLATENT];
    for (int l = 0; l < NLATENT; l++) z[l] = (float)resq_rng_normal(&r);
    for (int64_t i = 0; i < d; i++) {
      float v = (float)resq_rng_normal(&r);
      for (int l = 0; l < NLATENT; l++) v += z[l] * mix[l * d + i];
      x32[t * d + i] = v;
    }
    for (int j = 0; j < NOUTLIER; j++) x32[t * d + outl[j]] *= 50.0f + 50.0f * (float)j;
    for (int64_t i = 0; i < d; i++) {
      x16[t * d + i] = resq_f32_to_f16(x32[t * d + i]);
      x32[t * d + i] = resq_f16_to_f32(x16[t * d + i]); /* the f16 values are the data */
    }
  }
  free(mix);
}

/* ======================================================================= PCA */

enum { B_REF = 0, B_CPU = 1 };
static const char *const g_impl[] = {"scalar C reference, 1 thread (double)",
                                     "CPU backend: OpenBLAS dsyrk/dgemm + LAPACK dsyevd/dpotrf/dpotri (double)"};
typedef struct bk_params {
  int backend;
} bk_params;

/* Sampled columns of a d x d basis: the top two, the first, the first of the hi
 * block (d - r) and 4 random ones. */
static void sample_cols(int64_t d, int64_t r, int64_t *cols) {
  resq_rng rr;
  resq_rng_init(&rr, resq_seed_from_name("pca_check_cols"));
  for (int j = 0; j < NSAMPLE; j++)
    cols[j] = j < 2 ? d - 1 - j : (j == 2 ? 0 : (j == 3 ? d - r : (int64_t)resq_rng_below(&rr, (uint64_t)d)));
}

/* max |u_i^T u_j - delta_ij| over the sampled columns of U (ld d) */
static double orth_err(const double *U, int64_t d, const int64_t *cols) {
  double worst = 0.0;
  for (int j = 0; j < NSAMPLE; j++)
    for (int k = 0; k <= j; k++) {
      double dot = 0.0;
      for (int64_t i = 0; i < d; i++) dot += U[i * d + cols[j]] * U[i * d + cols[k]];
      double e = fabs(dot - (cols[j] == cols[k] ? 1.0 : 0.0));
      if (e > worst) worst = e;
    }
  return worst;
}

static void bm_pca(resq_bench_state *st, const void *params) {
  const int backend = ((const bk_params *)params)->backend;
  const int64_t d = resq_bench_arg(st, 0), T = resq_bench_arg(st, 1), r = d / 8;
  uint16_t *x16 = rb_alloc((size_t)(T * d) * 2);
  float *x32 = rb_alloc((size_t)(T * d) * 4);
  double *U = rb_alloc((size_t)(d * d) * 8), *w = rb_alloc((size_t)d * 8);
  size_t ws = backend == B_CPU ? resq_pca_basis_workspace_size__cpu(d) : resq_pca_basis_workspace_size(d);
  void *work = rb_alloc(ws);
  resq_pca_accum acc;
  memset(&acc, 0, sizeof acc);
  char why[768] = "";
  resq_status s = RESQ_OK;
  if (!x16 || !x32 || !U || !w || !work) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  make_acts(T, d, x16, x32);
  if ((s = resq_pca_accum_init(&acc, d)) != RESQ_OK) goto fail_status;
  double t0 = 0, t1 = 0;
  while (resq_bench_keep_running(st, 1)) {
    t0 = rb_now();
    resq_pca_accum_reset(&acc);
    s = backend == B_CPU ? resq_pca_accum_f16__cpu(&acc, T, x16, d) : resq_pca_accum_f16__ref(&acc, T, x16, d);
    if (s != RESQ_OK) break;
    t1 = rb_now();
    s = backend == B_CPU ? resq_pca_basis_f64__cpu(&acc, RESQ_PCA_DAMP_DEFAULT, w, U, d, work, ws)
                         : resq_pca_basis_f64__ref(&acc, RESQ_PCA_DAMP_DEFAULT, w, U, d, work, ws);
    if (s != RESQ_OK) break;
  }
  const double t_end = rb_now();
  if (s != RESQ_OK) goto fail_status;
  /* ---- checks */
  for (int64_t i = 1; i < d; i++)
    if (!(w[i] >= w[i - 1])) {
      snprintf(why, sizeof why, "eigenvalues not ascending at %lld", (long long)i);
      goto fail;
    }
  {
    /* C = S/T + shift I, recomputed in double from the tokens for the sampled columns */
    double diagsum = 0.0;
    for (int64_t i = 0; i < d; i++) {
      double sii = 0.0;
      for (int64_t t = 0; t < T; t++) sii += (double)x32[t * d + i] * (double)x32[t * d + i];
      diagsum += sii / (double)T;
    }
    const double shift = RESQ_PCA_DAMP_DEFAULT * diagsum / (double)d;
    /* |C|_F <= |S/T|_F + shift sqrt(d) and |S/T|_F <= trace(S/T) (S is PSD) */
    const double fro = diagsum + shift * sqrt((double)d);
    const double tol = 4.0 * (double)d * U64;
    int64_t cols[NSAMPLE];
    sample_cols(d, r, cols);
    double *xu = malloc(sizeof(double) * (size_t)T);
    double worst_res = 0.0, worst_orth = orth_err(U, d, cols);
    for (int j = 0; j < NSAMPLE && xu; j++) {
      const int64_t c = cols[j];
      for (int64_t t = 0; t < T; t++) { /* x_t . u */
        double a = 0.0;
        for (int64_t i = 0; i < d; i++) a += (double)x32[t * d + i] * U[i * d + c];
        xu[t] = a;
      }
      double res2 = 0.0;
      for (int64_t i = 0; i < d; i++) { /* (C u)_i = sum_t x_ti (x_t . u) / T + shift u_i */
        double a = 0.0;
        for (int64_t t = 0; t < T; t++) a += (double)x32[t * d + i] * xu[t];
        double e = a / (double)T + shift * U[i * d + c] - w[c] * U[i * d + c];
        res2 += e * e;
      }
      double res = sqrt(res2) / fro;
      if (res > worst_res) worst_res = res;
    }
    free(xu);
    if (!(worst_res <= tol) || !(worst_orth <= tol)) {
      snprintf(why, sizeof why,
               "sampled eigenpairs: residual %.3g |C|_F, orthogonality error %.3g, bound 4 d u = %.3g; REPRO: "
               "bench_pca_gptq --benchmark_filter='pca_basis_f64__%s/d:%lld/tokens:%lld/'",
               worst_res, worst_orth, tol, backend == B_CPU ? "cpu" : "ref", (long long)d, (long long)T);
      goto fail;
    }
    resq_bench_counter(st, "check_residual", worst_res, RESQ_CTR_PLAIN);
    resq_bench_counter(st, "check_orth", worst_orth, RESQ_CTR_PLAIN);
    resq_bench_counter(st, "top_eig_share", w[d - 1] / (diagsum + shift * (double)d), RESQ_CTR_PLAIN);
  }
  resq_bench_counter(st, "t_accum_s", t1 - t0, RESQ_CTR_PLAIN);
  resq_bench_counter(st, "t_basis_s", t_end - t1, RESQ_CTR_PLAIN);
  resq_bench_label(st, "impl=%s", g_impl[backend]);
  goto out;
fail_status:
  snprintf(why, sizeof why, "%s: %s", resq_status_name(s), resq_last_error());
fail:
  resq_bench_error(st, "%s", why);
out:
  resq_pca_accum_free(&acc);
  rb_free(x16), rb_free(x32), rb_free(U), rb_free(w), rb_free(work);
}

/* the random in-subspace rotations and U R, on a random orthogonal U_pca */
static void bm_rotation(resq_bench_state *st, const void *params) {
  (void)params;
  const int64_t d = resq_bench_arg(st, 0), r = d / 8;
  double *U = rb_alloc((size_t)(d * d) * 8), *R = rb_alloc((size_t)(d * d) * 8), *UR = rb_alloc((size_t)(d * d) * 8);
  size_t wr = resq_random_orthogonal_workspace_size(d);
  void *work = rb_alloc(wr);
  resq_status s = RESQ_OK;
  if (!U || !R || !UR || !work) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  if ((s = resq_random_orthogonal_f64__ref(0xbA5eull, d, U, d, work, wr)) != RESQ_OK) goto fail;
  while (resq_bench_keep_running(st, 1)) {
    if ((s = resq_pca_blockdiag_f64__ref(0x5e5eull, d, r, R, d, work, wr)) != RESQ_OK) break;
    if ((s = resq_pca_apply_blockdiag_f64__ref(d, r, U, d, R, d, UR, d)) != RESQ_OK) break;
  }
  if (s != RESQ_OK) goto fail;
  {
    int64_t cols[NSAMPLE];
    sample_cols(d, r, cols);
    const double e = orth_err(UR, d, cols), tol = 4.0 * (double)d * U64;
    if (!(e <= tol)) {
      resq_bench_error(st, "U R not orthonormal on sampled columns: %.3g > 4 d u = %.3g", e, tol);
      goto out;
    }
    resq_bench_counter(st, "check_orth", e, RESQ_CTR_PLAIN);
  }
  resq_bench_label(st, "impl=%s", g_impl[B_REF]);
  goto out;
fail:
  resq_bench_error(st, "%s: %s", resq_status_name(s), resq_last_error());
out:
  rb_free(U), rb_free(R), rb_free(UR), rb_free(work);
}

/* ======================================================================= GPTQ */

static resq_status add_batch(int backend, resq_gptq_hessian *h, int64_t T, const uint16_t *x, int64_t K) {
  return backend == B_CPU ? resq_gptq_add_batch_f16__cpu(h, 1, T, x, K) : resq_gptq_add_batch_f16__ref(h, 1, T, x, K);
}

static void bm_hessian(resq_bench_state *st, const void *params) {
  const int backend = ((const bk_params *)params)->backend;
  const int64_t K = resq_bench_arg(st, 0), T = resq_bench_arg(st, 1);
  uint16_t *x16 = rb_alloc((size_t)(T * K) * 2);
  float *x32 = rb_alloc((size_t)(T * K) * 4);
  resq_gptq_hessian h;
  memset(&h, 0, sizeof h);
  resq_status s = RESQ_OK;
  if (!x16 || !x32) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  make_acts(T, K, x16, x32);
  if ((s = resq_gptq_hessian_init(&h, K)) != RESQ_OK) goto fail;
  while (resq_bench_keep_running(st, 1)) s = add_batch(backend, &h, T, x16, K);
  if (s != RESQ_OK) goto fail;
  for (int64_t i = 0; i < K; i++) {
    if (!(h.H[i * K + i] > 0)) {
      resq_bench_error(st, "Hessian diagonal %lld is not positive", (long long)i);
      goto out;
    }
    for (int64_t j = 0; j < i; j++)
      if (memcmp(&h.H[i * K + j], &h.H[j * K + i], 8) != 0) {
        resq_bench_error(st, "Hessian not bitwise symmetric at (%lld, %lld)", (long long)i, (long long)j);
        goto out;
      }
  }
  /* multiply-adds of the upper triangle: T K (K+1) / 2, 2 ops each */
  resq_bench_counter(st, "ops", (double)T * (double)K * (double)(K + 1), RESQ_CTR_RATE);
  resq_bench_label(st, "impl=%s", g_impl[backend]);
  goto out;
fail:
  resq_bench_error(st, "%s: %s", resq_status_name(s), resq_last_error());
out:
  resq_gptq_hessian_free(&h);
  rb_free(x16), rb_free(x32);
}

static void bm_gptq(resq_bench_state *st, const void *params) {
  const int backend = ((const bk_params *)params)->backend;
  const int64_t N = resq_bench_arg(st, 0), K = resq_bench_arg(st, 1), T = resq_bench_arg(st, 2);
  resq_gptq_params p = resq_gptq_default(K);
  uint16_t *x16 = rb_alloc((size_t)(T * K) * 2);
  const int64_t NR = N < OBJ_ROWS ? N : OBJ_ROWS; /* rows of the RTN comparison buffers */
  float *x32 = rb_alloc((size_t)(T * K) * 4), *W = rb_alloc((size_t)(N * K) * 4), *Q = rb_alloc((size_t)(N * K) * 4),
        *Qr = rb_alloc((size_t)(NR * K) * 4);
  int8_t *codes = rb_alloc((size_t)(N * K)), *codes_r = rb_alloc((size_t)(NR * K));
  float *sl = rb_alloc((size_t)N * 4), *sh = rb_alloc((size_t)N * 4), *slr = rb_alloc((size_t)NR * 4),
        *shr = rb_alloc((size_t)NR * 4);
  size_t ws = backend == B_CPU ? resq_gptq_workspace_size__cpu(&p, N) : resq_gptq_workspace_size(&p, N);
  void *work = ws ? rb_alloc(ws) : NULL;
  resq_gptq_hessian h;
  resq_gptq_info info;
  memset(&h, 0, sizeof h);
  memset(&info, 0, sizeof info);
  resq_status s = RESQ_OK;
  char why[768] = "";
  if (!x16 || !x32 || !W || !Q || !Qr || !codes || !codes_r || !sl || !sh || !slr || !shr || !work) {
    resq_bench_error(st, "out of memory (workspace %zu bytes)", ws);
    goto out;
  }
  make_acts(T, K, x16, x32);
  {
    resq_rng r;
    resq_rng_init(&r, resq_seed_from_name("gptq_weights"));
    for (int64_t i = 0; i < N * K; i++) W[i] = (float)resq_rng_normal(&r) * 0.02f;
  }
  /* the Hessian is an input here (timed in gptq_hessian_f64__*) */
  if ((s = resq_gptq_hessian_init(&h, K)) != RESQ_OK || (s = add_batch(backend, &h, T, x16, K)) != RESQ_OK)
    goto fail_status;
  while (resq_bench_keep_running(st, 1))
    s = backend == B_CPU ? resq_gptq_f64__cpu(&p, &h, N, W, K, codes, K, sl, sh, Q, K, &info, work, ws)
                         : resq_gptq_f64__ref(&p, &h, N, W, K, codes, K, sl, sh, Q, K, &info, work, ws);
  if (s != RESQ_OK) goto fail_status;
  /* ---- checks: code ranges, Q = s * code, objective below RTN's */
  {
    const int64_t Klo = K - p.q.r;
    const int ml = resq_qmax_sym(p.q.bits_lo), mh = resq_qmax_sym(p.q.bits_hi);
    for (int64_t n = 0; n < N && !why[0]; n++)
      for (int64_t k = 0; k < K; k++) {
        int c = codes[n * K + k], hi = k >= Klo, m = hi ? mh : ml;
        float sc = hi ? sh[n] : sl[n], q = sc * (float)c;
        if (c < -m - 1 || c > m || memcmp(&q, &Q[n * K + k], 4) != 0) {
          snprintf(why, sizeof why, "code/scale inconsistent at (%lld, %lld): code %d, Q %.9g, s*code %.9g",
                   (long long)n, (long long)k, c, (double)Q[n * K + k], (double)q);
          break;
        }
      }
    if (why[0]) goto fail;
    /* the objective on sampled row blocks (it is a sum of independent row
     * terms, O(K^2) each: all N rows would cost minutes at K = 14336) */
    double og = 0.0, orr = 0.0;
    const int64_t nb = N < OBJ_ROWS ? 1 : 4, rows = N < OBJ_ROWS ? N : OBJ_ROWS / 4;
    for (int64_t b = 0; b < nb; b++) {
      const int64_t n0 = nb == 1 ? 0 : b * (N - rows) / (nb - 1);
      double a = 0.0, c = 0.0;
      if ((s = resq_gptq_rtn_f32__ref(&p, rows, W + n0 * K, K, codes_r, K, slr, shr, Qr, K)) != RESQ_OK ||
          (s = resq_gptq_objective_f64__ref(&h, rows, W + n0 * K, K, Q + n0 * K, K, &a, NULL)) != RESQ_OK ||
          (s = resq_gptq_objective_f64__ref(&h, rows, W + n0 * K, K, Qr, K, &c, NULL)) != RESQ_OK)
        goto fail_status;
      og += a;
      orr += c;
    }
    if (!(og < orr)) {
      snprintf(why, sizeof why,
               "GPTQ objective %.6g is not below RTN's %.6g on correlated inputs (ref/CONTRACT.md s.12); REPRO: "
               "bench_pca_gptq --benchmark_filter='gptq_f64__%s/N:%lld/K:%lld/tokens:%lld/'",
               og, orr, backend == B_CPU ? "cpu" : "ref", (long long)N, (long long)K, (long long)T);
      goto fail;
    }
    resq_bench_counter(st, "obj_vs_rtn", og / orr, RESQ_CTR_PLAIN);
  }
  resq_bench_counter(st, "ops", 2.0 * (double)N * (double)K * (double)K, RESQ_CTR_RATE); /* the N K^2 update */
  resq_bench_label(st, "impl=%s;retried=%d", g_impl[backend], info.retried);
  goto out;
fail_status:
  snprintf(why, sizeof why, "%s: %s", resq_status_name(s), resq_last_error());
fail:
  resq_bench_error(st, "%s", why);
out:
  resq_gptq_hessian_free(&h);
  rb_free(x16), rb_free(x32), rb_free(W), rb_free(Q), rb_free(Qr), rb_free(codes), rb_free(codes_r);
  rb_free(sl), rb_free(sh), rb_free(slr), rb_free(shr), rb_free(work);
}

/* ======================================================================= main */
int main(int argc, char **argv) {
  const int quick = rb_quick();
  static const char *const pn[] = {"d", "tokens"}, *const rn[] = {"d"}, *const hn[] = {"K", "tokens"},
                           *const gn[] = {"N", "K", "tokens"};
  static const bk_params ref = {B_REF}, cpu = {B_CPU};
  const unsigned fl = RESQ_BENCH_REAL_TIME | RESQ_BENCH_ONCE;
  const int64_t T = quick ? 512 : 2048, dref = quick ? 256 : 1024;
  /* the CPU backend: the Llama-3-8B layer (full) -- N, K of q/o, k/v, gate/up, down */
  static const int64_t layer[][2] = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}};
  static const int64_t layer_in[] = {4096, 14336};
  char buf[64];
  rb_context_common();
  snprintf(buf, sizeof buf, "%d", resq_cpu_get_threads());
  resq_bench_context("resq_cpu_threads", buf);
  resq_bench_context("resq_offline_layer", quick ? "none (quick)" : "llama3-8b");
  /* reference and CPU at the reference size (a direct comparison), then the CPU backend at Llama size */
  {
    int64_t a[2] = {dref, T};
    resq_bench_register_args("pca_basis_f64__ref", bm_pca, &ref, sizeof ref, fl, pn, a, 2);
    resq_bench_register_args("pca_basis_f64__cpu", bm_pca, &cpu, sizeof cpu, fl, pn, a, 2);
    resq_bench_register_args("pca_rotation_f64__ref", bm_rotation, &ref, sizeof ref, fl, rn, a, 1);
    resq_bench_register_args("gptq_hessian_f64__ref", bm_hessian, &ref, sizeof ref, fl, hn, a, 2);
    resq_bench_register_args("gptq_hessian_f64__cpu", bm_hessian, &cpu, sizeof cpu, fl, hn, a, 2);
    int64_t g[3] = {dref, dref, T};
    resq_bench_register_args("gptq_f64__ref", bm_gptq, &ref, sizeof ref, fl, gn, g, 3);
    resq_bench_register_args("gptq_f64__cpu", bm_gptq, &cpu, sizeof cpu, fl, gn, g, 3);
  }
  if (!quick) {
    int64_t a[2] = {4096, T};
    resq_bench_register_args("pca_basis_f64__cpu", bm_pca, &cpu, sizeof cpu, fl, pn, a, 2);
    for (int i = 0; i < 2; i++) {
      int64_t h[2] = {layer_in[i], T};
      resq_bench_register_args("gptq_hessian_f64__cpu", bm_hessian, &cpu, sizeof cpu, fl, hn, h, 2);
    }
    for (int i = 0; i < 4; i++) {
      int64_t g[3] = {layer[i][0], layer[i][1], T};
      resq_bench_register_args("gptq_f64__cpu", bm_gptq, &cpu, sizeof cpu, fl, gn, g, 3);
    }
  }
  return resq_bench_main(argc, argv);
}
