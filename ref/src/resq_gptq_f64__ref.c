/* SPDX-License-Identifier: Apache-2.0
 * Reference GPTQ (ref/CONTRACT.md section 12): upstream GPTQ.add_batch and
 * fasterquant with ResQ's mixed lo/hi quantizer of section 10, in double.
 *
 * Operation order of the parts the contract leaves to the implementation
 * (deterministic; other implementations are compared by the objective and by
 * code agreement, not bit for bit):
 *   - Cholesky A = R^T R (R upper; L = R^T is torch's lower factor), right
 *     looking: row j is finished (r = sqrt(pivot), R[j][i] = A[j][i] / r), then
 *     every later A[k][i] (i >= k) gets  A[k][i] -= R[j][k] * R[j][i], j ascending.
 *     A pivot that is not > 0 (or NaN) is the failure.
 *   - X = R^-1 by rows, bottom up, in blocks of TRI_NB rows; H^-1 = X X^T with
 *     H^-1[i][j] = sum_{k >= j} X[i][k] X[j][k] accumulated k ascending.
 *   - The upper Cholesky of H^-1 (H^-1 = U^T U) is the same routine.
 * The error feedback subtracts one product at a time, W[:, j] -= e_c * U[c][j],
 * columns c ascending, for the in-block and the lazy (after-block) update alike,
 * so the blocksize never changes a bit of the result (CONTRACT s.12).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/gptq.h"

#define HESS_BLOCK 32 /* tokens per block of the Hessian update */
#define CHOL_NB 32    /* rows per panel of the Cholesky */
#define TRI_NB 32     /* rows per block of the triangular inverse */
#define LAZY_JC 256   /* columns per chunk of the after-block update */
#define OBJ_R 32      /* rows per block of the objective */

/* y[0..n) -= a * x[0..n): one rounded product and one rounded subtraction per
 * element (no FMA: -ffp-contract=off), unrolled so that the compiler can pair
 * the independent elements into vector instructions. */
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

static void axpy_add(int64_t n, double a, const double *restrict x, double *restrict y) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    y[j] += a * x[j];
    y[j + 1] += a * x[j + 1];
    y[j + 2] += a * x[j + 2];
    y[j + 3] += a * x[j + 3];
  }
  for (; j < n; j++) y[j] += a * x[j];
}

/* ================================================================== Hessian */

resq_status resq_gptq_hessian_init(resq_gptq_hessian *h, int64_t K) {
  if (!h) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: NULL Hessian");
  memset(h, 0, sizeof *h);
  if (K < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: K=%lld must be >= 1", (long long)K);
  if (K > RESQ_GPTQ_MAX_K)
    return resq_fail(RESQ_ERR_TOO_LARGE, "gptq: K=%lld exceeds the maximum %lld (K x K double matrices)",
                     (long long)K, (long long)RESQ_GPTQ_MAX_K);
  double *H = (double *)calloc((size_t)K * (size_t)K, sizeof(double));
  double *buf = (double *)malloc((size_t)K * HESS_BLOCK * sizeof(double));
  if (!H || !buf) {
    free(H);
    free(buf);
    return resq_fail(RESQ_ERR_NOMEM, "gptq: cannot allocate the %lld x %lld Hessian", (long long)K, (long long)K);
  }
  h->K = K;
  h->H = H;
  h->buf = buf;
  return RESQ_OK;
}

void resq_gptq_hessian_free(resq_gptq_hessian *h) {
  if (!h) return;
  free(h->H);
  free(h->buf);
  memset(h, 0, sizeof *h);
}

typedef struct {
  const float *f32;
  const uint16_t *f16;
  int64_t ld;
} src_rows;

static double load(const src_rows *s, int64_t t, int64_t i) {
  return s->f32 ? (double)s->f32[t * s->ld + i] : (double)resq_f16_to_f32(s->f16[t * s->ld + i]);
}

static int finite_at(const src_rows *s, int64_t t, int64_t i) {
  if (s->f32) return isfinite(s->f32[t * s->ld + i]);
  return (s->f16[t * s->ld + i] & 0x7c00u) != 0x7c00u;
}

static resq_status add_batch(resq_gptq_hessian *h, int64_t B, int64_t T, const src_rows *src) {
  if (!h || !h->H || !h->buf || h->K < 1 || h->K > RESQ_GPTQ_MAX_K || h->nsamples < 0 || h->ntokens < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: Hessian not initialized (resq_gptq_hessian_init)");
  const int64_t K = h->K;
  if (B < 0 || T < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: B=%lld, T=%lld must be >= 0", (long long)B,
                                       (long long)T);
  if (B == 0) return RESQ_OK;
  if (T > INT64_MAX / B || h->nsamples > INT64_MAX - B || h->ntokens > INT64_MAX - B * T)
    return resq_fail(RESQ_ERR_TOO_LARGE, "gptq: sample or token count overflows int64");
  const int64_t rows = B * T;
  if (rows > 0 && !src->f32 && !src->f16) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: NULL calibration input");
  if (rows > 1 && src->ld < K)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: ldx=%lld < K=%lld", (long long)src->ld, (long long)K);
  for (int64_t t = 0; t < rows; t++)
    for (int64_t i = 0; i < K; i++)
      if (!finite_at(src, t, i))
        return resq_fail(RESQ_ERR_NONFINITE,
                         "gptq: calibration x[%lld][%lld] (sequence %lld, token %lld) is NaN or Inf (nothing of "
                         "this batch was added)",
                         (long long)t, (long long)i, (long long)(t / (T ? T : 1)), (long long)(t % (T ? T : 1)));
  double *H = h->H;
  const int64_t n0 = h->nsamples, n1 = n0 + B;
  const double factor = (double)n0 / (double)n1;
  for (int64_t i = 0; i < K; i++)
    for (int64_t j = i; j < K; j++) H[i * K + j] = H[i * K + j] * factor;
  const double c = sqrt(2.0 / (double)n1);
  for (int64_t t0 = 0; t0 < rows; t0 += HESS_BLOCK) {
    int64_t nb = rows - t0 < HESS_BLOCK ? rows - t0 : HESS_BLOCK;
    for (int64_t tt = 0; tt < nb; tt++)
      for (int64_t i = 0; i < K; i++) h->buf[tt * K + i] = c * load(src, t0 + tt, i);
    for (int64_t i = 0; i < K; i++) {
      double *Hi = H + i * K;
      for (int64_t tt = 0; tt < nb; tt++) { /* tokens in order for every entry */
        const double *X = h->buf + tt * K;
        axpy_add(K - i, X[i], X + i, Hi + i);
      }
    }
  }
  for (int64_t i = 0; i < K; i++)
    for (int64_t j = i + 1; j < K; j++) H[j * K + i] = H[i * K + j];
  h->nsamples = n1;
  h->ntokens += rows;
  return RESQ_OK;
}

resq_status resq_gptq_add_batch_f32__ref(resq_gptq_hessian *h, int64_t B, int64_t T, const float *x, int64_t ldx) {
  src_rows s = {x, NULL, ldx};
  return add_batch(h, B, T, &s);
}

resq_status resq_gptq_add_batch_f16__ref(resq_gptq_hessian *h, int64_t B, int64_t T, const uint16_t *x,
                                         int64_t ldx) {
  src_rows s = {NULL, x, ldx};
  return add_batch(h, B, T, &s);
}

/* ================================================================== parameters */

resq_gptq_params resq_gptq_default(int64_t K) {
  resq_gptq_params p;
  memset(&p, 0, sizeof p);
  p.q = resq_wquant_default(K);
  p.group_size = 0;
  p.blocksize = RESQ_GPTQ_BLOCKSIZE_DEFAULT;
  p.percdamp = RESQ_GPTQ_PERCDAMP_DEFAULT;
  p.act_order = 0;
  return p;
}

resq_status resq_gptq_check(const resq_gptq_params *p, int64_t *ngroups_lo) {
  if (!p) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: NULL params");
  resq_status st = resq_wquant_check(&p->q);
  if (st) return st;
  if (p->q.K > RESQ_GPTQ_MAX_K)
    return resq_fail(RESQ_ERR_TOO_LARGE, "gptq: K=%lld exceeds the maximum %lld", (long long)p->q.K,
                     (long long)RESQ_GPTQ_MAX_K);
  const int64_t Klo = p->q.K - p->q.r;
  if (p->group_size < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: group_size=%lld must be >= 0", (long long)p->group_size);
  if (p->group_size > 0 && Klo % p->group_size != 0)
    return resq_fail(RESQ_ERR_SHAPE, "gptq: group_size=%lld does not divide the K-r=%lld lo columns",
                     (long long)p->group_size, (long long)Klo);
  if (p->blocksize < 1)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: blocksize=%lld must be >= 1", (long long)p->blocksize);
  if (!isfinite(p->percdamp) || !(p->percdamp >= 0.0))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: percdamp=%g must be finite and >= 0", p->percdamp);
  if (p->act_order != 0 && p->act_order != 1)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: act_order must be 0 or 1");
  if (ngroups_lo) *ngroups_lo = Klo == 0 ? 0 : p->group_size > 0 ? Klo / p->group_size : 1;
  return RESQ_OK;
}

/* ================================================================== workspace */

typedef struct {
  double *A;      /* [K][K]: H (permuted, damped) -> R -> X = R^-1 -> H^-1 -> U */
  double *Bm;     /* [K][K]: X^T */
  double *Wk;     /* [N][K]: working W, permuted columns */
  double *E;      /* [N][bs]: scaled errors of the current block */
  double *tri;    /* [TRI_NB][K]: rows of R^-1 or of H^-1 being formed */
  int8_t *ctmp;   /* [N][K]: codes, original column order */
  float *slo;     /* [N][ngl] */
  float *shi;     /* [N] */
  float *gbuf;    /* [max(group_size, 1)] */
  int64_t *perm;  /* [K]: permuted position -> original column */
  int64_t *iperm; /* [K]: original column -> permuted position */
  uint8_t *dead;  /* [K] */
  uint8_t *gdone; /* [max(ngl, 1)] */
} gptq_ws;

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

/* Lays the workspace out (base may be NULL to only measure). Returns 0 on overflow. */
static size_t ws_layout(const resq_gptq_params *p, int64_t N, char *base, gptq_ws *w) {
  const uint64_t K = (uint64_t)p->q.K, n = (uint64_t)(N > 0 ? N : 0);
  const uint64_t bs = (uint64_t)(p->blocksize < p->q.K ? p->blocksize : p->q.K);
  const uint64_t Klo = K - (uint64_t)p->q.r;
  const uint64_t ngl = Klo == 0 ? 1 : p->group_size > 0 ? Klo / (uint64_t)p->group_size : 1;
  const uint64_t gs = p->group_size > 0 ? (uint64_t)p->group_size : 1;
  if (n > ((uint64_t)1 << 40) / (K + 1)) return 0; /* N*K elements: far beyond any memory */
  uint64_t sz[13] = {K * K * 8, K * K * 8, n * K * 8, n * bs * 8, (uint64_t)TRI_NB * K * 8, n * K, n * ngl * 4,
                     n * 4 + 4, gs * 4, K * 8, K * 8, K, ngl};
  size_t off = 0;
  void *ptr[13];
  for (int i = 0; i < 13; i++) {
    ptr[i] = base ? base + off : NULL;
    off = align64(off + (size_t)sz[i]);
  }
  if (w) {
    w->A = (double *)ptr[0];
    w->Bm = (double *)ptr[1];
    w->Wk = (double *)ptr[2];
    w->E = (double *)ptr[3];
    w->tri = (double *)ptr[4];
    w->ctmp = (int8_t *)ptr[5];
    w->slo = (float *)ptr[6];
    w->shi = (float *)ptr[7];
    w->gbuf = (float *)ptr[8];
    w->perm = (int64_t *)ptr[9];
    w->iperm = (int64_t *)ptr[10];
    w->dead = (uint8_t *)ptr[11];
    w->gdone = (uint8_t *)ptr[12];
  }
  return off + 64; /* + alignment slack for an unaligned base */
}

size_t resq_gptq_workspace_size(const resq_gptq_params *p, int64_t N) {
  resq_status st = resq_gptq_check(p, NULL);
  resq_clear_error();
  if (st || N < 0) return 0;
  return ws_layout(p, N, NULL, NULL);
}

/* ================================================================== factorizations */

/* In place A = R^T R for the symmetric positive definite matrix whose upper
 * triangle (A[i][j], j >= i) is in A (the lower triangle is not read); R
 * (upper) overwrites it and, on success, the strictly lower triangle is set
 * to 0 (on failure it is left as it was). Returns -1 on success, else the index of the
 * first pivot that is not > 0 (*pivot gets its value). */
static int64_t chol_upper(int64_t K, double *A, double *pivot) {
  for (int64_t j0 = 0; j0 < K; j0 += CHOL_NB) {
    const int64_t j1 = j0 + CHOL_NB < K ? j0 + CHOL_NB : K;
    for (int64_t j = j0; j < j1; j++) {
      double *Rj = A + j * K;
      const double d = Rj[j];
      if (!(d > 0.0) || !isfinite(d)) {
        *pivot = d;
        return j;
      }
      const double r = sqrt(d);
      Rj[j] = r;
      for (int64_t i = j + 1; i < K; i++) Rj[i] = Rj[i] / r;
      for (int64_t k = j + 1; k < j1; k++) axpy_sub(K - k, Rj[k], Rj + k, A + k * K + k);
    }
    for (int64_t k = j1; k < K; k++) { /* trailing rows: the panel's rows j ascending */
      double *Ak = A + k * K;
      for (int64_t j = j0; j < j1; j++) axpy_sub(K - k, A[j * K + k], A + j * K + k, Ak + k);
    }
  }
  for (int64_t i = 1; i < K; i++) memset(A + i * K, 0, (size_t)i * sizeof(double));
  return -1;
}

/* In place R -> R^-1 for an upper triangular R with a positive diagonal (the
 * strictly lower triangle is 0 and stays 0). tri: [TRI_NB][K] scratch.
 * Row i: X[i][i] = 1 / R[i][i];  X[i][j] = -(sum_{k > i} R[i][k] X[k][j]) / R[i][i]. */
static void tri_inv_upper(int64_t K, double *A, double *tri) {
  for (int64_t i1 = K; i1 > 0; i1 -= TRI_NB) {
    const int64_t i0 = i1 - TRI_NB > 0 ? i1 - TRI_NB : 0;
    /* contributions of the finished rows k >= i1 (k ascending) */
    for (int64_t i = i0; i < i1; i++) {
      double *acc = tri + (i - i0) * K;
      memset(acc, 0, (size_t)K * sizeof(double));
    }
    for (int64_t k = i1; k < K; k++) {
      const double *Xk = A + k * K;
      for (int64_t i = i0; i < i1; i++) axpy_add(K - k, A[i * K + k], Xk + k, tri + (i - i0) * K + k);
    }
    /* rows of the block, bottom up: rows k in (i, i1) are finished */
    for (int64_t i = i1 - 1; i >= i0; i--) {
      double *acc = tri + (i - i0) * K;
      double *Ri = A + i * K;
      for (int64_t k = i + 1; k < i1; k++) axpy_add(K - k, Ri[k], A + k * K + k, acc + k);
      const double d = Ri[i];
      Ri[i] = 1.0 / d;
      for (int64_t j = i + 1; j < K; j++) Ri[j] = -(acc[j] / d);
    }
  }
}

/* XT = X^T (lower triangular, row-major) for the upper triangular X in A. */
static void transpose_upper(int64_t K, const double *A, double *XT) {
  for (int64_t k = 0; k < K; k++) {
    double *row = XT + k * K;
    for (int64_t j = 0; j <= k; j++) row[j] = A[j * K + k];
    memset(row + k + 1, 0, (size_t)(K - k - 1) * sizeof(double));
  }
}

/* Upper triangle (j >= i) of Hinv = X X^T from XT = X^T:
 * Hinv[i][j] = sum_{k >= j, ascending} X[i][k] X[j][k] = sum_k XT[k][i] XT[k][j],
 * as axpy updates of TRI_NB rows at a time (acc: [TRI_NB][K] scratch). The
 * strictly lower triangle of Hinv is not written. */
static void gram_upper(int64_t K, const double *XT, double *Hinv, double *acc) {
  for (int64_t i0 = 0; i0 < K; i0 += TRI_NB) {
    const int64_t i1 = i0 + TRI_NB < K ? i0 + TRI_NB : K;
    memset(acc, 0, (size_t)(i1 - i0) * (size_t)K * sizeof(double));
    for (int64_t k = i0; k < K; k++) {
      const double *row = XT + k * K;
      const int64_t ie = k + 1 < i1 ? k + 1 : i1;
      for (int64_t i = i0; i < ie; i++) axpy_add(k - i + 1, row[i], row + i, acc + (i - i0) * K + i);
    }
    for (int64_t i = i0; i < i1; i++) memcpy(Hinv + i * K + i, acc + (i - i0) * K + i, (size_t)(K - i) * sizeof(double));
  }
}

/* ================================================================== GPTQ */

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

/* The lo scales of group g (original lo columns g*gs .. g*gs+gs-1) for every
 * row, on the current values at step c (block [i1, i2)): columns in [c, i2)
 * hold every update of the columns < c; columns >= i2 still lack those of
 * [i1, c), applied here in the same order the lazy update will use. */
static void group_scales(const resq_gptq_params *p, int64_t N, gptq_ws *w, int64_t g, int64_t c, int64_t i1,
                         int64_t i2, int64_t bs, int64_t ngl) {
  const int64_t K = p->q.K, gs = p->group_size;
  for (int64_t n = 0; n < N; n++) {
    const double *wr = w->Wk + n * K;
    for (int64_t t = 0; t < gs; t++) {
      const int64_t pos = w->iperm[g * gs + t];
      double v = wr[pos];
      if (pos >= i2)
        for (int64_t cc = i1; cc < c; cc++) v -= w->E[n * bs + (cc - i1)] * w->A[cc * K + pos];
      w->gbuf[t] = (float)v;
    }
    w->slo[n * ngl + g] = resq_wquant_scale_f32__ref(w->gbuf, gs, p->q.bits_lo, p->q.mse);
  }
}

resq_status resq_gptq_f64__ref(const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N, const float *W,
                               int64_t ldw, int8_t *codes, int64_t ldc, float *scale_lo, float *scale_hi, float *Q,
                               int64_t ldq, resq_gptq_info *info, void *work, size_t work_size) {
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
  const size_t need = ws_layout(p, N, NULL, NULL);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq: workspace of %zu bytes given, %zu needed (resq_gptq_workspace_size)",
                     work_size, need);
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

  gptq_ws w;
  char *base = (char *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
  ws_layout(p, N, base, &w);
  const int64_t bs = p->blocksize < K ? p->blocksize : K;

  /* step 3: dead columns; step 4: act-order permutation (after the dead fix) */
  for (int64_t i = 0; i < K; i++) w.dead[i] = h->H[i * K + i] == 0.0;
  for (int64_t i = 0; i < K; i++) w.perm[i] = i;
  if (p->act_order) {
    diag_idx *di = (diag_idx *)w.Bm; /* Bm is free until X^T */
    for (int64_t i = 0; i < K; i++) di[i].d = w.dead[i] ? 1.0 : h->H[i * K + i], di[i].i = i;
    qsort(di, (size_t)K, sizeof *di, cmp_diag_desc);
    for (int64_t i = 0; i < K; i++) w.perm[i] = di[i].i;
  }
  for (int64_t i = 0; i < K; i++) w.iperm[w.perm[i]] = i;

  /* step 5: damping, mean over the diagonal (original order, after the dead fix) */
  double tr = 0.0;
  for (int64_t i = 0; i < K; i++) tr += w.dead[i] ? 1.0 : h->H[i * K + i];
  const double damp = p->percdamp * (tr / (double)K);
  for (int64_t a = 0; a < K; a++) {
    const int64_t oa = w.perm[a];
    for (int64_t b = a; b < K; b++) w.A[a * K + b] = a == b ? 0.0 : h_low(h, oa, w.perm[b]);
    w.A[a * K + a] = (w.dead[oa] ? 1.0 : h->H[oa * K + oa]) + damp;
  }

  /* step 6: L = chol(H) (here R = L^T), H^-1, U = chol_upper(H^-1) with one retry */
  double piv = 0.0;
  int64_t bad = chol_upper(K, w.A, &piv);
  if (bad >= 0)
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "gptq: Cholesky of the damped Hessian failed at column %lld (pivot %.3g <= 0; percdamp %g): H "
                     "is not positive definite",
                     (long long)w.perm[bad], piv, p->percdamp);
  tri_inv_upper(K, w.A, w.tri);
  transpose_upper(K, w.A, w.Bm);
  gram_upper(K, w.Bm, w.A, w.tri);
  int retried = 0;
  bad = chol_upper(K, w.A, &piv);
  if (bad >= 0) {
    retried = 1;
    gram_upper(K, w.Bm, w.A, w.tri);
    for (int64_t i = 0; i < K; i++) w.A[i * K + i] += RESQ_GPTQ_RETRY_SHIFT;
    bad = chol_upper(K, w.A, &piv);
    if (bad >= 0)
      return resq_fail(RESQ_ERR_DEGENERATE,
                       "gptq: Cholesky of H^-1 failed at column %lld, also after adding %g*I (pivot %.3g)",
                       (long long)w.perm[bad], RESQ_GPTQ_RETRY_SHIFT, piv);
  }
  const double *U = w.A;

  /* step 2: quantizer parameters on the original W (section 10) */
  for (int64_t n = 0; n < N; n++) {
    const float *wr = W + n * ldw;
    if (r > 0) w.shi[n] = resq_wquant_scale_f32__ref(wr + Klo, r, p->q.bits_hi, p->q.mse);
    if (Klo > 0 && gs == 0) w.slo[n] = resq_wquant_scale_f32__ref(wr, Klo, p->q.bits_lo, p->q.mse);
  }
  if (gs > 0) memset(w.gdone, 0, (size_t)ngl);

  /* working W: permuted columns, dead columns zeroed */
  for (int64_t n = 0; n < N; n++)
    for (int64_t a = 0; a < K; a++) {
      const int64_t o = w.perm[a];
      w.Wk[n * K + a] = w.dead[o] ? 0.0 : (double)W[n * ldw + o];
    }

  /* step 7: the block loop */
  for (int64_t i1 = 0; i1 < K; i1 += bs) {
    const int64_t i2 = i1 + bs < K ? i1 + bs : K;
    for (int64_t c = i1; c < i2; c++) {
      const int64_t o = w.perm[c];
      const int hi = o >= Klo;
      const int bits = hi ? p->q.bits_hi : p->q.bits_lo;
      const int64_t g = (!hi && gs > 0) ? o / gs : 0;
      if (!hi && gs > 0 && !w.gdone[g]) {
        group_scales(p, N, &w, g, c, i1, i2, bs, ngl);
        w.gdone[g] = 1;
      }
      const double ucc = U[c * K + c];
      const double *Uc = U + c * K;
      for (int64_t n = 0; n < N; n++) {
        double *wr = w.Wk + n * K;
        const float s = hi ? w.shi[n] : w.slo[n * ngl + g];
        const int code = resq_wquant_code((float)wr[c], s, bits);
        const double q = (double)(s * (float)code);
        const double e = (wr[c] - q) / ucc;
        if (!isfinite(e))
          return resq_fail(RESQ_ERR_DEGENERATE,
                           "gptq: the error feedback overflowed at row %lld, column %lld (H is too ill-conditioned; "
                           "raise percdamp)",
                           (long long)n, (long long)o);
        w.ctmp[n * K + o] = (int8_t)code;
        w.E[n * bs + (c - i1)] = e;
        axpy_sub(i2 - c - 1, e, Uc + c + 1, wr + c + 1);
      }
    }
    /* lazy update of the later columns: W[:, j] -= E[:, c] * U[c][j], c ascending */
    for (int64_t j0 = i2; j0 < K; j0 += LAZY_JC) {
      const int64_t nj = K - j0 < LAZY_JC ? K - j0 : LAZY_JC;
      for (int64_t n = 0; n < N; n++) {
        double *wr = w.Wk + n * K + j0;
        const double *En = w.E + n * bs;
        for (int64_t c = i1; c < i2; c++) axpy_sub(nj, En[c - i1], U + c * K + j0, wr);
      }
    }
  }

  /* step 8: outputs (original column order) */
  for (int64_t n = 0; n < N; n++) {
    for (int64_t k = 0; k < K; k++) {
      const int8_t code = w.ctmp[n * K + k];
      codes[n * ldc + k] = code;
      if (Q) {
        const float s = k >= Klo ? w.shi[n] : w.slo[n * ngl + (gs > 0 ? k / gs : 0)];
        Q[n * ldq + k] = s * (float)code;
      }
    }
    if (Klo > 0) memcpy(scale_lo + n * ngl, w.slo + n * ngl, (size_t)ngl * sizeof(float));
    if (r > 0) scale_hi[n] = w.shi[n];
  }
  if (info) info->dead = ndead, info->damp = damp, info->retried = retried;
  return RESQ_OK;
}

/* ================================================================== RTN */

resq_status resq_gptq_rtn_f32__ref(const resq_gptq_params *p, int64_t N, const float *W, int64_t ldw, int8_t *codes,
                                   int64_t ldc, float *scale_lo, float *scale_hi, float *Q, int64_t ldq) {
  int64_t ngl = 0;
  resq_status st = resq_gptq_check(p, &ngl);
  if (st) return st;
  const int64_t K = p->q.K, r = p->q.r, Klo = K - r, gs = p->group_size;
  if (N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq-rtn: N=%lld < 0", (long long)N);
  if (N > 0 && (!W || !codes || (Klo > 0 && !scale_lo) || (r > 0 && !scale_hi)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq-rtn: NULL input or output");
  if (N > 1 && (ldw < K || ldc < K || (Q && ldq < K)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq-rtn: leading dimension < K=%lld", (long long)K);
  if ((st = check_w(N, K, W, ldw, "W"))) return st;
  for (int64_t n = 0; n < N; n++) {
    const float *wr = W + n * ldw;
    const float shi = r > 0 ? resq_wquant_scale_f32__ref(wr + Klo, r, p->q.bits_hi, p->q.mse) : 0.0f;
    for (int64_t g = 0; g < ngl; g++) {
      const int64_t k0 = gs > 0 ? g * gs : 0, len = gs > 0 ? gs : Klo;
      const float s = resq_wquant_scale_f32__ref(wr + k0, len, p->q.bits_lo, p->q.mse);
      scale_lo[n * ngl + g] = s;
      for (int64_t k = k0; k < k0 + len; k++) {
        const int code = resq_wquant_code(wr[k], s, p->q.bits_lo);
        codes[n * ldc + k] = (int8_t)code;
        if (Q) Q[n * ldq + k] = s * (float)code;
      }
    }
    for (int64_t k = Klo; k < K; k++) {
      const int code = resq_wquant_code(wr[k], shi, p->q.bits_hi);
      codes[n * ldc + k] = (int8_t)code;
      if (Q) Q[n * ldq + k] = shi * (float)code;
    }
    if (r > 0) scale_hi[n] = shi;
  }
  return RESQ_OK;
}

/* ================================================================== objective */

resq_status resq_gptq_objective_f64__ref(const resq_gptq_hessian *h, int64_t N, const float *W, int64_t ldw,
                                         const float *Q, int64_t ldq, double *obj, double *row_obj) {
  if (!h || !h->H || h->K < 1 || h->K > RESQ_GPTQ_MAX_K)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq-objective: Hessian not initialized");
  const int64_t K = h->K;
  if (N < 0 || !obj || (N > 0 && (!W || !Q)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq-objective: bad arguments (N=%lld, NULL pointer)", (long long)N);
  if (N > 1 && (ldw < K || ldq < K))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gptq-objective: leading dimension < K=%lld", (long long)K);
  resq_status st = check_w(N, K, W, ldw, "W");
  if (!st) st = check_w(N, K, Q, ldq, "Q");
  if (!st) st = check_hessian(h);
  if (st) return st;
  double *DT = (double *)malloc((size_t)K * OBJ_R * sizeof(double));
  if (!DT) return resq_fail(RESQ_ERR_NOMEM, "gptq-objective: out of memory");
  double total = 0.0;
  for (int64_t n0 = 0; n0 < N; n0 += OBJ_R) {
    const int64_t nr = N - n0 < OBJ_R ? N - n0 : OBJ_R;
    /* D^T: DT[j][rr] = d_j of row n0+rr (unused lanes 0) */
    for (int64_t j = 0; j < K; j++)
      for (int64_t rr = 0; rr < OBJ_R; rr++)
        DT[j * OBJ_R + rr] =
            rr < nr ? (double)W[(n0 + rr) * ldw + j] - (double)Q[(n0 + rr) * ldq + j] : 0.0;
    double L[OBJ_R] = {0};
    for (int64_t i = 0; i < K; i++) {
      const double *Hi = h->H + i * K;
      double a[OBJ_R] = {0};
      for (int64_t j = 0; j < i; j++) {
        const double hij = Hi[j];
        const double *dj = DT + j * OBJ_R;
        for (int64_t rr = 0; rr < OBJ_R; rr++) a[rr] += hij * dj[rr];
      }
      const double *di = DT + i * OBJ_R;
      for (int64_t rr = 0; rr < OBJ_R; rr++) L[rr] += di[rr] * (Hi[i] * di[rr] + 2.0 * a[rr]);
    }
    for (int64_t rr = 0; rr < nr; rr++) {
      if (row_obj) row_obj[n0 + rr] = L[rr];
      total += L[rr];
    }
  }
  free(DT);
  *obj = total;
  return RESQ_OK;
}
