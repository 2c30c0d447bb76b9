/* SPDX-License-Identifier: Apache-2.0
 * resq pca: the PCA basis from calibration activations, streamed one file at a
 * time through the second-moment accumulator (ref/CONTRACT.md section 13). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/dtype.h"
#include "resq/pca.h"

static const char *k_help =
    "usage: resq pca --x A.npy[,B.npy,...] --out DIR [--r R] [--seed S] [--damp 0.01]\n"
    "\n"
    "PCA basis of calibration activations (ref/CONTRACT.md s.13): the uncentered second moment\n"
    "S = sum_t x_t x_t^T over every token of every file (double, tokens in file order), C = S/T,\n"
    "C[i][i] += damp * mean(diag(C)), symmetric eigendecomposition (eigenvalues ascending, so the\n"
    "top-variance subspace is the LAST R columns; each eigenvector's largest-magnitude entry is\n"
    "positive), then the random in-subspace rotation R = blockdiag(R_lo, R_hi) (Haar, from resq_rng\n"
    "seeded with --seed: R_lo of order d-R drawn first, R_hi of order R second) and U = U_pca R.\n"
    "The files are read one at a time (memory: one file plus about 7 d x d double matrices,\n"
    "0.9 GiB at d = 4096); time O(T d^2 + d^3) on one core.\n"
    "\n"
    "inputs\n"
    "  --x FILES       comma-separated calibration batches, each f16 | f32 | bf16 (<V2 or <u2),\n"
    "                  shape [..., d] (leading axes are tokens); every file must have the same d;\n"
    "                  a file with zero tokens is allowed, but not zero tokens in total\n"
    "parameters\n"
    "  --r R           size of the high-precision (top-variance) subspace, 0..d (default d/8)\n"
    "  --seed S        seed of the random rotations, 0..2^63-1 (default 0)\n"
    "  --damp F        damping fraction >= 0 (default 0.01, upstream's); it shifts every\n"
    "                  eigenvalue by F*mean(diag(C)) and leaves the eigenvectors unchanged\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR)\n"
    "  eigvals.npy     f64 [d]      eigenvalues of the damped C, ascending\n"
    "  U_pca.npy       f64 [d, d]   eigenvectors as columns (column j belongs to eigvals[j])\n"
    "  R.npy           f64 [d, d]   blockdiag(R_lo, R_hi), zeros off the two blocks\n"
    "  U.npy           f64 [d, d]   U_pca R: the rotation fused into the weights (x' = x U); its\n"
    "                               last R columns span the top-R principal subspace\n"
    "errors: NaN/Inf in a batch, files with different d, R outside [0, d], no tokens at all, all-zero\n"
    "        data, d > 16384, malformed files: exit 1, nothing written.\n";

#define BF16_CHUNK 256 /* rows widened at a time for bf16 input */

int cli_pca(int argc, char **argv) {
  const char *S = "pca";
  const char *xlist = NULL, *out = NULL, *damp_s = NULL;
  int64_t r = -1, seed = 0;
  cli_opt opts[] = {
      {"x", OPT_STR, &xlist, 1, 0, 0, 0},
      {"out", OPT_STR, &out, 1, 0, 0, 0},
      {"r", OPT_INT, &r, 0, 0, INT32_MAX, 0},
      {"seed", OPT_INT, &seed, 0, 0, INT64_MAX, 0},
      {"damp", OPT_STR, &damp_s, 0, 0, 0, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  double damp = RESQ_PCA_DAMP_DEFAULT;
  if (damp_s) {
    char *end = NULL;
    errno = 0;
    damp = strtod(damp_s, &end); /* parsed as a double: 0.01 means the double 0.01 */
    if (errno || !end || *end || end == damp_s || !isfinite(damp) || damp < 0.0)
      return cli_error(S, CLI_USAGE, "--damp: '%s' is not a finite number >= 0", damp_s);
  }
  char *list = (char *)malloc(strlen(xlist) + 1);
  if (!list) return cli_error(S, CLI_FAIL, "out of memory");
  strcpy(list, xlist);
  resq_pca_accum acc;
  memset(&acc, 0, sizeof acc);
  double *eig = NULL, *Up = NULL, *R = NULL, *U = NULL;
  float *chunk = NULL;
  void *work = NULL;
  resq_array x;
  memset(&x, 0, sizeof x);
  rc = CLI_FAIL;
  int64_t d = 0;
  int nfiles = 0;
  /* stream: one file in memory at a time */
  for (char *path = list, *next; path; path = next) {
    next = strchr(path, ',');
    if (next) *next++ = '\0';
    if (!*path) {
      rc = cli_error(S, CLI_USAGE, "--x: empty file name in the list '%s'", xlist);
      goto done;
    }
    nfiles++;
    if ((rc = cli_load_float(S, "--x", path, &x))) goto done;
    rc = CLI_FAIL;
    if (x.ndim < 1) {
      cli_error(S, CLI_FAIL, "--x %s: a 0-d array has no channel axis", path);
      goto done;
    }
    int64_t dd = x.shape[x.ndim - 1];
    if (dd < 1) {
      cli_error(S, CLI_FAIL, "--x %s: zero channels (last dimension 0)", path);
      goto done;
    }
    if (d == 0) {
      d = dd;
      if (r > d) { /* checked as soon as d is known, before streaming the rest */
        cli_error(S, CLI_FAIL, "--r %lld is outside [0, d=%lld] (d from %s)", (long long)r, (long long)d, path);
        goto done;
      }
      if (resq_pca_accum_init(&acc, d)) {
        cli_error(S, CLI_FAIL, "--x %s: %s", path, resq_last_error());
        goto done;
      }
    } else if (dd != d) {
      cli_error(S, CLI_FAIL, "--x %s: last dimension %lld differs from d=%lld of the first file", path,
                (long long)dd, (long long)d);
      goto done;
    }
    int64_t T = resq_array_numel(&x) / d;
    resq_status st = RESQ_OK;
    if (x.dtype == RESQ_DTYPE_F32) {
      st = resq_pca_accum_f32__ref(&acc, T, (const float *)x.data, d);
    } else if (x.dtype == RESQ_DTYPE_F16) {
      st = resq_pca_accum_f16__ref(&acc, T, (const uint16_t *)x.data, d);
    } else { /* bf16: widened in chunks of rows; a NaN fails its chunk, so check the file first */
      const uint16_t *b = (const uint16_t *)x.data;
      for (int64_t i = 0; i < T * d; i++)
        if ((b[i] & 0x7f80u) == 0x7f80u) {
          cli_error(S, CLI_FAIL, "--x %s: x[%lld][%lld] is NaN or Inf", path, (long long)(i / d), (long long)(i % d));
          goto done;
        }
      if (!chunk && !(chunk = (float *)malloc((size_t)d * BF16_CHUNK * sizeof(float)))) {
        cli_error(S, CLI_FAIL, "out of memory");
        goto done;
      }
      for (int64_t t0 = 0; t0 < T && !st; t0 += BF16_CHUNK) {
        int64_t nb = T - t0 < BF16_CHUNK ? T - t0 : BF16_CHUNK;
        for (int64_t i = 0; i < nb * d; i++) chunk[i] = resq_bf16_to_f32(b[t0 * d + i]);
        st = resq_pca_accum_f32__ref(&acc, nb, chunk, d);
      }
    }
    if (st) {
      cli_error(S, CLI_FAIL, "--x %s: %s", path, resq_last_error());
      goto done;
    }
    resq_array_free(&x);
  }
  if (r < 0) r = d / 8;
  if (acc.count == 0) {
    cli_error(S, CLI_FAIL, "--x: no calibration tokens in %d file%s", nfiles, nfiles == 1 ? "" : "s");
    goto done;
  }
  size_t dd2 = (size_t)d * (size_t)d;
  size_t ws = resq_pca_basis_workspace_size(d);
  if (resq_random_orthogonal_workspace_size(d) > ws) ws = resq_random_orthogonal_workspace_size(d);
  eig = (double *)malloc((size_t)d * sizeof(double));
  Up = (double *)malloc(dd2 * sizeof(double));
  R = (double *)malloc(dd2 * sizeof(double));
  U = (double *)malloc(dd2 * sizeof(double));
  work = malloc(ws);
  if (!eig || !Up || !R || !U || !work) {
    cli_error(S, CLI_FAIL, "out of memory for d=%lld", (long long)d);
    goto done;
  }
  resq_status st = resq_pca_basis_f64__ref(&acc, damp, eig, Up, d, work, ws);
  resq_pca_accum_free(&acc); /* S is no longer needed */
  if (!st) st = resq_pca_blockdiag_f64__ref((uint64_t)seed, d, r, R, d, work, ws);
  if (!st) st = resq_pca_apply_blockdiag_f64__ref(d, r, Up, d, R, d, U, d);
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  cli_outset os;
  if ((rc = cli_out_open(&os, S, out))) goto done;
  int64_t sh[2] = {d, d};
  rc = cli_out_add(&os, "eigvals.npy", RESQ_DTYPE_F64, 1, sh, eig);
  if (!rc) rc = cli_out_add(&os, "U_pca.npy", RESQ_DTYPE_F64, 2, sh, Up);
  if (!rc) rc = cli_out_add(&os, "R.npy", RESQ_DTYPE_F64, 2, sh, R);
  if (!rc) rc = cli_out_add(&os, "U.npy", RESQ_DTYPE_F64, 2, sh, U);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
done:
  resq_array_free(&x);
  resq_pca_accum_free(&acc);
  free(list);
  free(chunk);
  free(eig);
  free(Up);
  free(R);
  free(U);
  free(work);
  return rc;
}
