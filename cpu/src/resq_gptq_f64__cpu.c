/* SPDX-License-Identifier: Apache-2.0
 * CPU GPTQ (ref/CONTRACT.md section 12): the reference's algorithm step for
 * step, with LAPACK for the factorizations and OpenBLAS dgemm for the lazy
 * (after-block) updates, all in double.
 *
 *   steps 1-5  (Hessian given; dead columns, act-order, damping): the
 *              reference's code, the same bits;
 *   step 6     L = chol(H) by dpotrf, H^-1 by dpotri (from the factor),
 *              U = chol_upper(H^-1) by dpotrf, with the reference's single
 *              retry on H^-1 + 1e-5 I (a copy of H^-1 is kept for it);
 *   step 7     rows are independent inside a block (the quantizer scales are
 *              per row), so each pool thread takes a contiguous range of rows
 *              and runs the WHOLE block loop on them with no barrier: per
 *              block, the in-block column loop row by row (the reference's
 *              arithmetic: one product and one subtraction per element, c
 *              ascending), then W[rows, i2:] -= E[rows, :] U[i1:i2, i2:] by one
 *              single-threaded dgemm (the reference subtracts the products one
 *              at a time; dgemm sums them first, with FMAs);
 *   step 8     outputs as the reference.
 * OpenBLAS runs with resq_cpu_get_threads() threads for the factorizations and
 * with 1 thread while the pool threads call it (cpu_blas.h), so the two thread
 * sets never share a core; the previous OpenBLAS thread count is restored.
 *
 * The results differ from the reference only by double rounding (factorization
 * order, the summed lazy update): a code differs only where a pre-quantization
 * value w/s lies within that rounding of a rounding boundary, after which the
 * row's later codes may follow it through the error feedback. How the tests
 * bound this (code agreement from the measured condition number, the layer
 * objective of the rows that differ) is in verify/cpu_gptq_f64_test.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_blas.h"
#include "cpu_internal.h"
#include "resq/dtype.h"
#include "resq/gptq.h"

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

/* ------------------------------------------------------------------ workspace */

typedef struct {
  double *A;      /* [K][K]: H (permuted, damped) -> L -> H^-1 -> U (row-major upper triangle) */
  double *B;      /* [K][K]: copy of H^-1 for the retry */
  double *Wk;     /* [N][K]: working W, permuted columns */
  double *E;      /* [N][bs]: scaled errors of the current block */
  int8_t *ctmp;   /* [N][K]: codes, original column order */
  float *slo;     /* [N][ngl] */
  float *shi;     /* [N] */
  float *gbuf;    /* [nthreads][max(group_size, 1)] */
  int64_t *perm;  /* [K] */
  int64_t *iperm; /* [K] */
  int64_t *gfirst; /* [ngl]: permuted position where group g's lo scale is found */
  uint8_t *dead;  /* [K] */
} ws_t;

#define WS_N 12

static size_t ws_layout(const resq_gptq_params *p, int64_t N, int nthreads, char *base, ws_t *w) {
  const uint64_t K = (uint64_t)p->q.K, n = (uint64_t)(N > 0 ? N : 0);
  const uint64_t bs = (uint64_t)(p->blocksize < p->q.K ? p->blocksize : p->q.K);
  const uint64_t Klo = K - (uint64_t)p->q.r;
  const uint64_t ngl = Klo == 0 ? 1 : p->group_size > 0 ? Klo / (uint64_t)p->group_size : 1;
  const uint64_t gs = p->group_size > 0 ? (uint64_t)p->group_size : 1;
  if (n > ((uint64_t)1 << 40) / (K + 1)) return 0;
  const uint64_t sz[WS_N] = {K * K * 8, K * K * 8, n * K * 8,  n * bs * 8, n * K,  n * ngl * 4,
                             n * 4 + 4, gs * 4 * (uint64_t)nthreads, K * 8, K * 8, ngl * 8, K};
  size_t off = 0;
  void *ptr[WS_N];
  for (int i = 0; i < WS_N; i++) {
    ptr[i] = base ? base + off : NULL;
    off = align64(off + (size_t)sz[i]);
  }
  if (w) {
    w->A = (double *)ptr[0];
    w->B = (double *)ptr[1];
    w->Wk = (double *)ptr[2];
    w->E = (double *)ptr[3];
    w->ctmp = (int8_t *)ptr[4];
    w->slo = (float *)ptr[5];
    w->shi = (float *)ptr[6];
    w->gbuf = (float *)ptr[7];
    w->perm = (int64_t *)ptr[8];
    w->iperm = (int64_t *)ptr[9];
    w->gfirst = (int64_t *)ptr[10];
    w->dead = (uint8_t *)ptr[11];
  }
  return off + 64;
}

/* The pool's size is fixed per call: the workspace holds one group buffer per
 * thread of the largest pool (64, resq_cpu_set_threads' maximum). */
#define WS_THREADS 64

size_t resq_gptq_workspace_size__cpu(const resq_gptq_params *p, int64_t N) {
  resq_status st = resq_gptq_check(p, NULL);
  resq_clear_error();
  if (st || N < 0) return 0;
  return ws_layout(p, N, WS_THREADS, NULL, NULL);
}

/* ------------------------------------------------------------------ helpers (as the reference) */

typedef struct {
  double d;
  int64_t i;
} diag_idx;

static int cmp_diag_desc(const void *a, const void *b) {
  const diag_idx *x = (const diag_idx *)a, *y = (const diag_idx *)b;
  if (x->d > y->d) return -1;
  if (x->d < y->d) return 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

static double h_low(const resq_gptq_hessian *h, int64_t i, int64_t j) {
  return i >= j ? h->H[i * h->K + j] : h->H[j * h->K + i];
}

static resq_status check_hessian(const resq_gptq_hessian *h) {
  if (!h || !h->H || h->K < 1 || h->K > RESQ_GPTQ_MAX_K || h->nsamples < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: Hessian not initialized (resq_gptq_hessian_init)");
  for (int64_t i = 0; i < h->K; i++)
    for (int64_t j = 0; j <= i; j++)
      if (!isfinite(h->H[i * h->K + j]))
        return resq_fail(RESQ_ERR_NONFINITE, "gptq: H[%lld][%lld] is NaN or Inf", (long long)i, (long long)j);
  return RESQ_OK;
}

static resq_status check_w(int64_t N, int64_t K, const float *W, int64_t ldw, const char *what) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      if (!isfinite(W[n * ldw + k]))
        return resq_fail(RESQ_ERR_NONFINITE, "gptq: %s[%lld][%lld] is NaN or Inf", what, (long long)n, (long long)k);
  return RESQ_OK;
}

/* y[0..n) -= a * x[0..n): one rounded product and one rounded subtraction per
 * element (-ffp-contract=off), the reference's in-block update */
static void axpy_sub(int64_t n, double a, const double *restrict x, double *restrict y) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    y[j] -= a * x[j];
    y[j + 1] -= a * x[j + 1];
    y[j + 2] -= a * x[j + 2];
    y[j + 3] -= a * x[j + 3];
  }
  for (; j < n; j++) y[j] -= a * x[j];
}

/* ------------------------------------------------------------------ the block loop */

typedef struct {
  const resq_gptq_params *p;
  ws_t *w;
  int64_t N, K, Klo, gs, ngl, bs;
  const double *U;
  /* per thread: the first failure (column position c, row n) or c = -1 */
  int64_t fail_c[WS_THREADS], fail_n[WS_THREADS];
} loop_t;

static void task_rows(void *arg, int tid, int nt) {
  loop_t *L = (loop_t *)arg;
  ws_t *w = L->w;
  const resq_gptq_params *p = L->p;
  const int64_t K = L->K, Klo = L->Klo, gs = L->gs, ngl = L->ngl, bs = L->bs;
  const double *U = L->U;
  int64_t r0, r1;
  resq_cpu_range(L->N, tid, nt, &r0, &r1);
  L->fail_c[tid] = -1;
  if (r1 <= r0) return;
  float *gbuf = w->gbuf + (size_t)tid * (size_t)(gs > 0 ? gs : 1);
  for (int64_t i1 = 0; i1 < K; i1 += bs) {
    const int64_t i2 = i1 + bs < K ? i1 + bs : K;
    int64_t fc = -1, fn = -1;
    for (int64_t n = r0; n < r1; n++) {
      double *wr = w->Wk + n * K;
      double *En = w->E + n * bs;
      for (int64_t c = i1; c < i2; c++) {
        const int64_t o = w->perm[c];
        const int hi = o >= Klo;
        const int bits = hi ? p->q.bits_hi : p->q.bits_lo;
        const int64_t g = (!hi && gs > 0) ? o / gs : 0;
        if (!hi && gs > 0 && w->gfirst[g] == c) {
          /* the group's lo scale on the current values: columns in [c, i2)
           * hold every update of the columns < c; columns >= i2 still lack
           * those of [i1, c), applied here in the order of the reference */
          for (int64_t t = 0; t < gs; t++) {
            const int64_t pos = w->iperm[g * gs + t];
            double v = wr[pos];
            if (pos >= i2)
              for (int64_t cc = i1; cc < c; cc++) v -= En[cc - i1] * U[cc * K + pos];
            gbuf[t] = (float)v;
          }
          w->slo[n * ngl + g] = resq_wquant_scale_f32__ref(gbuf, gs, p->q.bits_lo, p->q.mse);
        }
        const float s = hi ? w->shi[n] : w->slo[n * ngl + g];
        const int code = resq_wquant_code((float)wr[c], s, bits);
        const double q = (double)(s * (float)code);
        const double e = (wr[c] - q) / U[c * K + c];
        if (!isfinite(e)) {
          if (fc < 0 || c < fc) fc = c, fn = n;
          break; /* this row is lost; the other rows finish the block so that the first failure is found */
        }
        w->ctmp[n * K + o] = (int8_t)code;
        En[c - i1] = e;
        axpy_sub(i2 - c - 1, e, U + c * K + c + 1, wr + c + 1);
      }
    }
    if (fc >= 0) {
      L->fail_c[tid] = fc;
      L->fail_n[tid] = fn;
      return;
    }
    if (i2 < K) {
      /* W[r0:r1, i2:K] -= E[r0:r1, 0:nb] U[i1:i2, i2:K]; row-major arrays read
       * column-major are their transposes: W^T -= U^T E^T */
      const resq_lapack_int m = (resq_lapack_int)(K - i2), nn = (resq_lapack_int)(r1 - r0),
                            kk = (resq_lapack_int)(i2 - i1), ldu = (resq_lapack_int)K,
                            lde = (resq_lapack_int)bs, ldw = (resq_lapack_int)K;
      const double minus1 = -1.0, one = 1.0;
      dgemm_("N", "N", &m, &nn, &kk, &minus1, U + i1 * K + i2, &ldu, w->E + r0 * bs, &lde, &one,
             w->Wk + r0 * K + i2, &ldw, 1, 1);
    }
  }
}

/* ------------------------------------------------------------------ GPTQ */

resq_status resq_gptq_f64__cpu(const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N, const float *W,
                               int64_t ldw, int8_t *codes, int64_t ldc, float *scale_lo, float *scale_hi, float *Q,
                               int64_t ldq, resq_gptq_info *info, void *work, size_t work_size) {
  /* argument checks: the reference's, in its order (same status codes) */
  int64_t ngl = 0;
  resq_status st = resq_gptq_check(p, &ngl);
  if (st) return st;
  if (!h || !h->H || h->K < 1)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: Hessian not initialized (resq_gptq_hessian_init)");
  const int64_t K = p->q.K, r = p->q.r, Klo = K - r, gs = p->group_size;
  if (h->K != K)
    return resq_fail(RESQ_ERR_SHAPE, "gptq: the Hessian has K=%lld channels, the weight K=%lld", (long long)h->K,
                     (long long)K);
  if (N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: N=%lld < 0", (long long)N);
  if (N > 0 && (!W || !codes || (Klo > 0 && !scale_lo) || (r > 0 && !scale_hi)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: NULL input or output");
  if (N > 1 && (ldw < K || ldc < K || (Q && ldq < K)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: leading dimension < K=%lld", (long long)K);
  const size_t need = ws_layout(p, N, WS_THREADS, NULL, NULL);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG,
                     "gptq: workspace of %zu bytes given, %zu needed (resq_gptq_workspace_size__cpu)", work_size, need);
  if ((st = check_w(N, K, W, ldw, "W"))) return st;
  if ((st = check_hessian(h))) return st;
  if (h->nsamples < 1) return resq_fail(RESQ_ERR_DEGENERATE, "gptq: the Hessian has no calibration sequences");
  int64_t ndead = 0;
  for (int64_t i = 0; i < K; i++) ndead += h->H[i * K + i] == 0.0;
  if (ndead == K)
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "gptq: every diagonal entry of H is 0 (all-zero calibration data): no column can be fitted");
  if (N == 0) {
    if (info) info->dead = ndead, info->damp = 0.0, info->retried = 0;
    return RESQ_OK;
  }

  ws_t w;
  char *base = (char *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
  ws_layout(p, N, WS_THREADS, base, &w);
  const int64_t bs = p->blocksize < K ? p->blocksize : K;

  /* steps 3-5 as the reference */
  for (int64_t i = 0; i < K; i++) w.dead[i] = h->H[i * K + i] == 0.0;
  for (int64_t i = 0; i < K; i++) w.perm[i] = i;
  if (p->act_order) {
    diag_idx *di = (diag_idx *)w.B; /* B is free until H^-1 */
    for (int64_t i = 0; i < K; i++) di[i].d = w.dead[i] ? 1.0 : h->H[i * K + i], di[i].i = i;
    qsort(di, (size_t)K, sizeof *di, cmp_diag_desc);
    for (int64_t i = 0; i < K; i++) w.perm[i] = di[i].i;
  }
  for (int64_t i = 0; i < K; i++) w.iperm[w.perm[i]] = i;
  if (gs > 0)
    for (int64_t g = 0; g < ngl; g++) {
      int64_t f = K;
      for (int64_t t = 0; t < gs; t++)
        if (w.iperm[g * gs + t] < f) f = w.iperm[g * gs + t];
      w.gfirst[g] = f;
    }
  double tr = 0.0;
  for (int64_t i = 0; i < K; i++) tr += w.dead[i] ? 1.0 : h->H[i * K + i];
  const double damp = p->percdamp * (tr / (double)K);
  for (int64_t a = 0; a < K; a++) {
    const int64_t oa = w.perm[a];
    for (int64_t b = a; b < K; b++) w.A[a * K + b] = a == b ? 0.0 : h_low(h, oa, w.perm[b]);
    w.A[a * K + a] = (w.dead[oa] ? 1.0 : h->H[oa * K + oa]) + damp;
  }

  /* step 6: on the row-major upper triangle = column-major lower (cpu_blas.h) */
  const resq_lapack_int n = (resq_lapack_int)K;
  resq_lapack_int inf = 0;
  int retried = 0;
  resq_cpu_lock();
  const int nthreads = resq_cpu_get_threads() < WS_THREADS ? resq_cpu_get_threads() : WS_THREADS;
  const int prev = resq_cpu_blas_threads(nthreads);
  dpotrf_("L", &n, w.A, &n, &inf, 1);
  if (inf != 0) {
    resq_cpu_blas_restore(prev);
    resq_cpu_unlock();
    if (inf < 0) return resq_fail(RESQ_ERR_INTERNAL, "gptq (cpu): dpotrf argument %d", (int)-inf);
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "gptq: Cholesky of the damped Hessian failed at column %lld (the leading minor of order %d is "
                     "not positive definite; percdamp %g): H is not positive definite",
                     (long long)w.perm[inf - 1], (int)inf, p->percdamp);
  }
  dpotri_("L", &n, w.A, &n, &inf, 1);
  if (inf != 0) { /* a zero diagonal of L: impossible after a successful dpotrf */
    resq_cpu_blas_restore(prev);
    resq_cpu_unlock();
    return resq_fail(RESQ_ERR_DEGENERATE, "gptq (cpu): dpotri failed (info %d)", (int)inf);
  }
  for (int64_t i = 0; i < K; i++) memcpy(w.B + i * K + i, w.A + i * K + i, (size_t)(K - i) * sizeof(double));
  dpotrf_("L", &n, w.A, &n, &inf, 1);
  if (inf > 0) {
    retried = 1;
    for (int64_t i = 0; i < K; i++) memcpy(w.A + i * K + i, w.B + i * K + i, (size_t)(K - i) * sizeof(double));
    for (int64_t i = 0; i < K; i++) w.A[i * K + i] += RESQ_GPTQ_RETRY_SHIFT;
    dpotrf_("L", &n, w.A, &n, &inf, 1);
    if (inf != 0) {
      resq_cpu_blas_restore(prev);
      resq_cpu_unlock();
      return resq_fail(RESQ_ERR_DEGENERATE,
                       "gptq: Cholesky of H^-1 failed at column %lld, also after adding %g*I", (long long)w.perm[inf > 0 ? inf - 1 : 0],
                       RESQ_GPTQ_RETRY_SHIFT);
    }
  }

  /* step 2: quantizer parameters on the original W; the working W */
  for (int64_t i = 0; i < N; i++) {
    const float *wr = W + i * ldw;
    if (r > 0) w.shi[i] = resq_wquant_scale_f32__ref(wr + Klo, r, p->q.bits_hi, p->q.mse);
    if (Klo > 0 && gs == 0) w.slo[i] = resq_wquant_scale_f32__ref(wr, Klo, p->q.bits_lo, p->q.mse);
    for (int64_t a = 0; a < K; a++) {
      const int64_t o = w.perm[a];
      w.Wk[i * K + a] = w.dead[o] ? 0.0 : (double)W[i * ldw + o];
    }
  }

  /* step 7 */
  loop_t L;
  memset(&L, 0, sizeof L);
  L.p = p;
  L.w = &w;
  L.N = N, L.K = K, L.Klo = Klo, L.gs = gs, L.ngl = ngl, L.bs = bs;
  L.U = w.A;
  int nt = nthreads;
  if (nt > N) nt = (int)N;
  if (nt < 1) nt = 1;
  openblas_set_num_threads(1);
  resq_cpu_parallel(task_rows, &L, nt);
  resq_cpu_blas_restore(prev);
  resq_cpu_unlock();
  int64_t fc = -1, fn = -1;
  for (int t = 0; t < nt; t++)
    if (L.fail_c[t] >= 0 && (fc < 0 || L.fail_c[t] < fc || (L.fail_c[t] == fc && L.fail_n[t] < fn)))
      fc = L.fail_c[t], fn = L.fail_n[t];
  if (fc >= 0)
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "gptq: the error feedback overflowed at row %lld, column %lld (H is too ill-conditioned; raise "
                     "percdamp)",
                     (long long)fn, (long long)w.perm[fc]);

  /* step 8 */
  for (int64_t i = 0; i < N; i++) {
    for (int64_t k = 0; k < K; k++) {
      const int8_t code = w.ctmp[i * K + k];
      codes[i * ldc + k] = code;
      if (Q) {
        const float s = k >= Klo ? w.shi[i] : w.slo[i * ngl + (gs > 0 ? k / gs : 0)];
        Q[i * ldq + k] = s * (float)code;
      }
    }
    if (Klo > 0) memcpy(scale_lo + i * ngl, w.slo + i * ngl, (size_t)ngl * sizeof(float));
    if (r > 0) scale_hi[i] = w.shi[i];
  }
  if (info) info->dead = ndead, info->damp = damp, info->retried = retried;
  return RESQ_OK;
}

/* ------------------------------------------------------------------ Hessian by dsyrk */

static resq_status add_batch(resq_gptq_hessian *h, int64_t B, int64_t T, const float *x32, const uint16_t *x16,
                             int64_t ld) {
  if (!h || !h->H || !h->buf || h->K < 1 || h->K > RESQ_GPTQ_MAX_K || h->nsamples < 0 || h->ntokens < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: Hessian not initialized (resq_gptq_hessian_init)");
  const int64_t K = h->K;
  if (B < 0 || T < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: B=%lld, T=%lld must be >= 0", (long long)B, (long long)T);
  if (B == 0) return RESQ_OK;
  if (T > INT64_MAX / B || h->nsamples > INT64_MAX - B || h->ntokens > INT64_MAX - B * T)
    return resq_fail(RESQ_ERR_TOO_LARGE, "gptq: sample or token count overflows int64");
  const int64_t rows = B * T;
  if (rows > 0 && !x32 && !x16) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: NULL calibration input");
  if (rows > 1 && ld < K) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: ldx=%lld < K=%lld", (long long)ld, (long long)K);
  for (int64_t t = 0; t < rows; t++)
    for (int64_t i = 0; i < K; i++) {
      int ok = x32 ? isfinite(x32[t * ld + i]) : (x16[t * ld + i] & 0x7c00u) != 0x7c00u;
      if (!ok)
        return resq_fail(RESQ_ERR_NONFINITE,
                         "gptq: calibration x[%lld][%lld] (sequence %lld, token %lld) is NaN or Inf (nothing of "
                         "this batch was added)",
                         (long long)t, (long long)i, (long long)(t / (T ? T : 1)), (long long)(t % (T ? T : 1)));
    }
  const int64_t tb = rows < 256 ? (rows > 0 ? rows : 1) : 256;
  double *buf = (double *)malloc((size_t)tb * (size_t)K * sizeof(double));
  if (!buf) return resq_fail(RESQ_ERR_NOMEM, "gptq (cpu): out of memory (token block)");
  double *H = h->H;
  const int64_t n0 = h->nsamples, n1 = n0 + B;
  const double factor = (double)n0 / (double)n1;
  for (int64_t i = 0; i < K; i++)
    for (int64_t j = i; j < K; j++) H[i * K + j] = H[i * K + j] * factor;
  const double c = sqrt(2.0 / (double)n1), one = 1.0;
  const resq_lapack_int kn = (resq_lapack_int)K;
  resq_cpu_lock();
  const int prev = resq_cpu_blas_threads(resq_cpu_get_threads());
  for (int64_t t0 = 0; t0 < rows; t0 += tb) {
    const int64_t nb = rows - t0 < tb ? rows - t0 : tb;
    for (int64_t tt = 0; tt < nb; tt++)
      for (int64_t i = 0; i < K; i++)
        buf[tt * K + i] = c * (x32 ? (double)x32[(t0 + tt) * ld + i] : (double)resq_f16_to_f32(x16[(t0 + tt) * ld + i]));
    const resq_lapack_int k = (resq_lapack_int)nb;
    dsyrk_("L", "N", &kn, &k, &one, buf, &kn, &one, H, &kn, 1, 1); /* row-major upper += X^T X */
  }
  resq_cpu_blas_restore(prev);
  resq_cpu_unlock();
  free(buf);
  for (int64_t i = 0; i < K; i++)
    for (int64_t j = i + 1; j < K; j++) H[j * K + i] = H[i * K + j];
  h->nsamples = n1;
  h->ntokens += rows;
  return RESQ_OK;
}

resq_status resq_gptq_add_batch_f32__cpu(resq_gptq_hessian *h, int64_t B, int64_t T, const float *x, int64_t ldx) {
  return add_batch(h, B, T, x, NULL, ldx);
}

resq_status resq_gptq_add_batch_f16__cpu(resq_gptq_hessian *h, int64_t B, int64_t T, const uint16_t *x,
                                         int64_t ldx) {
  return add_batch(h, B, T, NULL, x, ldx);
}
