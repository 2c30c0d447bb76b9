/* SPDX-License-Identifier: Apache-2.0
 * fuse_cli_check: the helper of the `resq fuse` cases of verify/cli_test.sh
 * (found next to npy_tool in the build tree).
 *   fuse_cli_check ref input|output W.npy U.npy OUT.npy
 *       the library call (resq_fuse_input/output_f32__ref) on W (f32|f16|bf16,
 *       widened exactly) and U (f64, or f32 widened exactly) -> f32 OUT, for a
 *       bit-for-bit comparison with the command's w.npy
 *   fuse_cli_check transpose A.npy OUT.npy       2-D f64/f32 transpose, same dtype
 *   fuse_cli_check blockdiag UV.npy REP OUT.npy  UV: G bases [G, hd, hd] or [G*hd, hd] (f64)
 *       -> f64 [G*REP*hd, G*REP*hd], diagonal block b = UV[b / REP], zeros elsewhere
 *   fuse_cli_check tof16 A.npy OUT.npy           f32 -> f16, resq_f32_to_f16 (nearest-even)
 *   fuse_cli_check roundtrip W.npy U.npy Y.npy Z.npy
 *       Y = fuse(W, U), Z = fuse(Y, U^T) (input side, made by the command): exit 0
 *       iff every row satisfies the error bound derived below, else 1 (prints the
 *       worst row)
 * Exit 2 on bad usage or unreadable files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/npy.h"
#include "resq/pca.h"

static int die(const char *msg) {
  fprintf(stderr, "fuse_cli_check: %s\n", msg);
  return 2;
}

static int load(const char *path, resq_array *a) {
  if (resq_npy_read(path, a)) {
    fprintf(stderr, "fuse_cli_check: %s\n", resq_last_error());
    return 2;
  }
  return 0;
}

/* any float array -> new double buffer (every conversion exact) */
static double *to_f64(const resq_array *a) {
  int64_t n = resq_array_numel(a);
  double *d = (double *)malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  if (!d) return NULL;
  for (int64_t i = 0; i < n; i++) {
    switch (a->dtype) {
      case RESQ_DTYPE_F64: d[i] = ((const double *)a->data)[i]; break;
      case RESQ_DTYPE_F32: d[i] = ((const float *)a->data)[i]; break;
      case RESQ_DTYPE_F16: d[i] = resq_f16_to_f32(((const uint16_t *)a->data)[i]); break;
      case RESQ_DTYPE_BF16:
      case RESQ_DTYPE_U16: d[i] = resq_bf16_to_f32(((const uint16_t *)a->data)[i]); break;
      default: free(d); return NULL;
    }
  }
  return d;
}

static int cmd_ref(const char *side, const char *wp, const char *up, const char *op) {
  resq_array w, u;
  memset(&u, 0, sizeof u);
  if (load(wp, &w) || load(up, &u) || w.ndim != 2 || u.ndim != 2) {
    resq_array_free(&w);
    resq_array_free(&u);
    return die("ref: needs a 2-D W and a 2-D U");
  }
  const int64_t N = w.shape[0], K = w.shape[1], n = u.shape[0];
  double *wd = to_f64(&w), *ud = to_f64(&u);
  float *wf = (float *)malloc((size_t)(N * K > 0 ? N * K : 1) * sizeof(float));
  void *work = malloc(resq_fuse_workspace_size(n) + 1);
  int rc = 2;
  if (wd && ud && wf && work) {
    for (int64_t i = 0; i < N * K; i++) wf[i] = (float)wd[i]; /* exact: W was a float type */
    resq_status st = strcmp(side, "input") == 0
                         ? resq_fuse_input_f32__ref(N, K, wf, K, ud, n, wf, K, work, resq_fuse_workspace_size(n))
                         : resq_fuse_output_f32__ref(N, K, wf, K, ud, n, wf, K, work, resq_fuse_workspace_size(n));
    if (st) fprintf(stderr, "fuse_cli_check ref: %s\n", resq_last_error());
    else rc = resq_npy_write(op, RESQ_DTYPE_F32, 2, w.shape, wf) ? 2 : 0;
  }
  free(wd);
  free(ud);
  free(wf);
  free(work);
  resq_array_free(&w);
  resq_array_free(&u);
  return rc;
}

static int cmd_transpose(const char *ap, const char *op) {
  resq_array a;
  if (load(ap, &a)) return 2;
  if (a.ndim != 2 || (a.dtype != RESQ_DTYPE_F64 && a.dtype != RESQ_DTYPE_F32)) {
    resq_array_free(&a);
    return die("transpose: needs a 2-D f64 or f32 array");
  }
  const int64_t r = a.shape[0], c = a.shape[1], sh[2] = {c, r};
  const size_t es = resq_dtype_size(a.dtype);
  unsigned char *t = (unsigned char *)malloc((size_t)(r * c > 0 ? r * c : 1) * es);
  int rc = 2;
  if (t) {
    for (int64_t i = 0; i < r; i++)
      for (int64_t j = 0; j < c; j++) memcpy(t + (size_t)(j * r + i) * es, (unsigned char *)a.data + (size_t)(i * c + j) * es, es);
    rc = resq_npy_write(op, a.dtype, 2, sh, t) ? 2 : 0;
  }
  free(t);
  resq_array_free(&a);
  return rc;
}

static int cmd_blockdiag(const char *up, const char *reps, const char *op) {
  resq_array a;
  if (load(up, &a)) return 2;
  const int64_t rep = strtoll(reps, NULL, 10);
  int64_t G = 0, hd = 0;
  if (a.dtype == RESQ_DTYPE_F64 && a.ndim == 3 && a.shape[1] == a.shape[2]) G = a.shape[0], hd = a.shape[1];
  if (a.dtype == RESQ_DTYPE_F64 && a.ndim == 2 && a.shape[1] > 0 && a.shape[0] % a.shape[1] == 0)
    hd = a.shape[1], G = a.shape[0] / hd;
  if (!G || !hd || rep < 1 || G * rep * hd > RESQ_PCA_MAX_D) {
    resq_array_free(&a);
    return die("blockdiag: needs f64 [G, hd, hd] or [G*hd, hd] and REP >= 1");
  }
  const int64_t n = G * rep * hd, sh[2] = {n, n};
  double *b = (double *)calloc((size_t)(n * n), sizeof(double));
  int rc = 2;
  if (b) {
    const double *u = (const double *)a.data;
    for (int64_t blk = 0; blk < G * rep; blk++)
      for (int64_t i = 0; i < hd; i++)
        for (int64_t j = 0; j < hd; j++) b[(blk * hd + i) * n + blk * hd + j] = u[(blk / rep) * hd * hd + i * hd + j];
    rc = resq_npy_write(op, RESQ_DTYPE_F64, 2, sh, b) ? 2 : 0;
  }
  free(b);
  resq_array_free(&a);
  return rc;
}

static int cmd_tof16(const char *ap, const char *op) {
  resq_array a;
  if (load(ap, &a)) return 2;
  if (a.dtype != RESQ_DTYPE_F32) {
    resq_array_free(&a);
    return die("tof16: needs f32");
  }
  const int64_t n = resq_array_numel(&a);
  uint16_t *h = (uint16_t *)malloc((size_t)(n > 0 ? n : 1) * 2);
  int rc = 2;
  if (h) {
    for (int64_t i = 0; i < n; i++) h[i] = resq_f32_to_f16(((const float *)a.data)[i]);
    rc = resq_npy_write(op, RESQ_DTYPE_F16, a.ndim, a.shape, h) ? 2 : 0;
  }
  free(h);
  resq_array_free(&a);
  return rc;
}

/* Round trip bound. Per row, x = W[a] (exact in double), y = Y[a], z = Z[a];
 * u = 2^-24 (fp32 unit roundoff), g = n 2^-53 / (1 - n 2^-53) (Higham's gamma_n
 * for a length-n double dot product with rounded products), t = 2^-150 (half
 * the smallest fp32 subnormal: the absolute rounding error below FLT_MIN).
 *   y = x U + r1 + e1:  ||r1|| <= g ||x|| ||U||_F =: p1   (|x||U| <= ||x|| ||U||_F,
 *                       Cauchy-Schwarz per column),  ||e1|| <= u (s ||x|| + p1) + sqrt(n) t
 *   z = y U^T + r2 + e2: ||r2|| <= g ||y|| ||U||_F =: p2, ||e2|| <= u (s ||y|| + p2) + sqrt(n) t
 *   z - x = x (U U^T - I) + (r1 + e1) U^T + r2 + e2, hence
 *   ||z - x|| <= w ||x|| + s (p1 + ||e1||) + p2 + ||e2||,
 * with w >= ||U U^T - I||_2 (we use the Frobenius norm, computed in long double,
 * plus that computation's own error bound n 2^-63 ||U||_F^2) and
 * s = sqrt(1 + w) >= ||U||_2. Every norm is computed in long double (64-bit
 * significand); their relative errors, at most about 2n 2^-64, are covered by
 * multiplying the bound by (1 + 8 n 2^-63). Nothing here is tuned: a wrong side
 * or a U instead of U^T gives errors of order ||x||, six orders above the bound. */
static int cmd_roundtrip(const char *wp, const char *up, const char *yp, const char *zp) {
  resq_array w, u, y, z;
  memset(&u, 0, sizeof u);
  memset(&y, 0, sizeof y);
  memset(&z, 0, sizeof z);
  int rc = 2;
  double *wd = NULL, *ud = NULL, *yd = NULL, *zd = NULL;
  if (load(wp, &w) || load(up, &u) || load(yp, &y) || load(zp, &z)) goto out;
  if (w.ndim != 2 || u.ndim != 2 || u.shape[0] != u.shape[1] || u.shape[0] != w.shape[1] ||
      resq_array_numel(&y) != resq_array_numel(&w) || resq_array_numel(&z) != resq_array_numel(&w)) {
    rc = die("roundtrip: needs W [N, n], U [n, n], Y and Z like W");
    goto out;
  }
  wd = to_f64(&w), ud = to_f64(&u), yd = to_f64(&y), zd = to_f64(&z);
  if (!wd || !ud || !yd || !zd) {
    rc = die("roundtrip: out of memory or a non-float array");
    goto out;
  }
  {
    const int64_t N = w.shape[0], n = w.shape[1];
    long double uf2 = 0.0L, om2 = 0.0L;
    for (int64_t i = 0; i < n * n; i++) uf2 += (long double)ud[i] * ud[i];
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) {
        long double s = 0.0L;
        for (int64_t k = 0; k < n; k++) s += (long double)ud[i * n + k] * ud[j * n + k];
        s -= (i == j) ? 1.0L : 0.0L;
        om2 += s * s;
      }
    const long double uF = sqrtl(uf2);
    const long double om = sqrtl(om2) + (long double)n * 0x1p-63L * uf2;
    const long double s = sqrtl(1.0L + om);
    const long double uu = 0x1p-24L, g = (long double)n * 0x1p-53L / (1.0L - (long double)n * 0x1p-53L);
    const long double tt = sqrtl((long double)n) * 0x1p-150L, infl = 1.0L + 8.0L * (long double)n * 0x1p-63L;
    long double worst = 0.0L, wbound = 0.0L, wdiff = 0.0L;
    int64_t wrow = -1, nbad = 0;
    for (int64_t a = 0; a < N; a++) {
      long double nx = 0.0L, ny = 0.0L, nd = 0.0L;
      for (int64_t j = 0; j < n; j++) {
        const long double xv = wd[a * n + j], yv = yd[a * n + j], d = (long double)zd[a * n + j] - xv;
        nx += xv * xv, ny += yv * yv, nd += d * d;
      }
      nx = sqrtl(nx), ny = sqrtl(ny), nd = sqrtl(nd);
      const long double p1 = g * nx * uF, p2 = g * ny * uF;
      const long double e1 = uu * (s * nx + p1) + tt, e2 = uu * (s * ny + p2) + tt;
      const long double bound = infl * (om * nx + s * (p1 + e1) + p2 + e2);
      const long double ratio = bound > 0.0L ? nd / bound : (nd > 0.0L ? INFINITY : 0.0L);
      if (!(nd <= bound)) nbad++;
      if (wrow < 0 || ratio > worst) worst = ratio, wrow = a, wbound = bound, wdiff = nd;
    }
    printf("roundtrip: %lld rows of n=%lld, ||UU^T-I||_F <= %.3Le, worst row %lld: ||z-x|| = %.3Le, bound %.3Le "
           "(ratio %.3Lf); %lld rows over the bound\n",
           (long long)N, (long long)n, om, (long long)wrow, wdiff, wbound, worst, (long long)nbad);
    rc = nbad ? 1 : 0;
  }
out:
  free(wd);
  free(ud);
  free(yd);
  free(zd);
  resq_array_free(&w);
  resq_array_free(&u);
  resq_array_free(&y);
  resq_array_free(&z);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "ref") == 0 && (strcmp(argv[2], "input") == 0 || strcmp(argv[2], "output") == 0))
    return cmd_ref(argv[2], argv[3], argv[4], argv[5]);
  if (argc == 4 && strcmp(argv[1], "transpose") == 0) return cmd_transpose(argv[2], argv[3]);
  if (argc == 5 && strcmp(argv[1], "blockdiag") == 0) return cmd_blockdiag(argv[2], argv[3], argv[4]);
  if (argc == 4 && strcmp(argv[1], "tof16") == 0) return cmd_tof16(argv[2], argv[3]);
  if (argc == 6 && strcmp(argv[1], "roundtrip") == 0) return cmd_roundtrip(argv[2], argv[3], argv[4], argv[5]);
  return die("usage: ref input|output W U OUT | transpose A OUT | blockdiag UV REP OUT | tof16 A OUT | "
             "roundtrip W U Y Z (see the source header)");
}
