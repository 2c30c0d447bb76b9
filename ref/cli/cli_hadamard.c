/* SPDX-License-Identifier: Apache-2.0
 * resq hadamard: online (activation) and offline (weight) Hadamard rotation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"

static const char *k_help =
    "usage: resq hadamard --x X.npy --out DIR [--signs S.npy | --sign-seed N] [--out-dtype f16|f32]\n"
    "                     [--weight input|output]\n"
    "\n"
    "Computes y = (x .* s) H_n^T for every vector along the LAST axis of X (ref/CONTRACT.md s.2),\n"
    "H_n = kron(hadK, S_m)/sqrt(n), n = K*2^j, K in {1,12,20,28,36,40,44,52,60,108,140,156,172}\n"
    "chosen by upstream ResQ's get_hadK order. fp32 arithmetic in a fixed, documented order.\n"
    "\n"
    "inputs\n"
    "  --x X.npy          f16 | f32 | bf16 (<V2, or <u2 bit patterns), shape [..., n], ndim >= 1\n"
    "  --signs S.npy      optional i8 [n], entries +1/-1: randomized Hadamard H_n diag(s)\n"
    "parameters\n"
    "  --sign-seed N      draw s from the suite's PRNG with seed N (written as signs.npy)\n"
    "  --out-dtype T      f16 or f32; default: f16 for f16 input, f32 otherwise (f16 output is\n"
    "                     the fp32 result rounded once, nearest-even)\n"
    "  --weight SIDE      offline form on a 2-D weight W (fp32 math and output):\n"
    "                       input : W [N_out, n], W' = W diag(s) H_n^T (rows), pairs with x H_n^T\n"
    "                       output: W [n, N_in],  W' = H_n diag(s) W (columns)\n"
    "  --out DIR          output directory (created if missing)\n"
    "outputs (in DIR)\n"
    "  y.npy              same shape as X, dtype per --out-dtype\n"
    "  signs.npy          i8 [n], only with --sign-seed\n"
    "errors: unsupported n (the message names the nearest supported sizes), NaN/Inf in X,\n"
    "        an f16 output that would overflow, malformed files: exit 1, nothing written.\n";

int cli_hadamard(int argc, char **argv) {
  const char *S = "hadamard";
  const char *xpath = NULL, *spath = NULL, *out = NULL, *odt = NULL, *weight = NULL;
  int64_t seed = -1;
  cli_opt opts[] = {
      {"x", OPT_STR, &xpath, 1, 0, 0, 0},
      {"signs", OPT_STR, &spath, 0, 0, 0, 0},
      {"sign-seed", OPT_INT, &seed, 0, 0, INT64_MAX, 0},
      {"out-dtype", OPT_STR, &odt, 0, 0, 0, 0},
      {"weight", OPT_STR, &weight, 0, 0, 0, 0},
      {"out", OPT_STR, &out, 1, 0, 0, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  if (spath && seed >= 0) return cli_error(S, CLI_USAGE, "give either --signs or --sign-seed, not both");
  if (odt && strcmp(odt, "f16") != 0 && strcmp(odt, "f32") != 0)
    return cli_error(S, CLI_USAGE, "--out-dtype must be f16 or f32, not '%s'", odt);
  resq_had_side side = RESQ_HAD_INPUT_SIDE;
  if (weight) {
    if (strcmp(weight, "input") == 0) side = RESQ_HAD_INPUT_SIDE;
    else if (strcmp(weight, "output") == 0) side = RESQ_HAD_OUTPUT_SIDE;
    else return cli_error(S, CLI_USAGE, "--weight must be 'input' or 'output', not '%s'", weight);
  }

  resq_array x, sg;
  memset(&sg, 0, sizeof sg);
  if ((rc = cli_load_float(S, "--x", xpath, &x))) return rc;
  float *xf = NULL, *yf = NULL;
  uint16_t *yh = NULL;
  int8_t *signs = NULL;
  void *work = NULL;
  cli_outset os;
  int os_open = 0;
  rc = CLI_FAIL;
  if (x.ndim < 1) {
    cli_error(S, CLI_FAIL, "--x %s: a 0-d array has no axis to transform", xpath);
    goto done;
  }
  if (weight && x.ndim != 2) {
    cli_error(S, CLI_FAIL, "--x %s: --weight needs a 2-D matrix, got %d dimensions", xpath, x.ndim);
    goto done;
  }
  int64_t n = weight && side == RESQ_HAD_OUTPUT_SIDE ? x.shape[0] : x.shape[x.ndim - 1];
  int64_t total = resq_array_numel(&x);
  int64_t rows = n > 0 ? total / n : 0;
  if (resq_hadamard_factor(n, NULL, NULL)) {
    cli_error(S, CLI_FAIL, "--x %s: %s", xpath, resq_last_error());
    goto done;
  }
  if (spath) {
    if ((rc = cli_load_i8(S, "--signs", spath, &sg))) goto done;
    rc = CLI_FAIL;
    if (sg.ndim != 1 || sg.shape[0] != n) {
      cli_error(S, CLI_FAIL, "--signs %s: shape must be [%lld] to match the transformed axis of --x", spath,
                (long long)n);
      goto done;
    }
    signs = (int8_t *)sg.data;
  } else if (seed >= 0) {
    signs = (int8_t *)malloc((size_t)n);
    if (!signs || resq_hadamard_random_signs((uint64_t)seed, n, signs)) {
      cli_error(S, CLI_FAIL, "cannot draw signs");
      goto done;
    }
  }
  size_t ws = resq_hadamard_workspace_size(n);
  work = malloc(ws);
  int out_f16 = odt ? strcmp(odt, "f16") == 0 : (x.dtype == RESQ_DTYPE_F16 && !weight);
  if (!work) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  resq_status st;
  if (x.dtype == RESQ_DTYPE_F16 && out_f16 && !weight) {
    yh = (uint16_t *)malloc((size_t)(total > 0 ? total : 1) * 2);
    if (!yh) {
      cli_error(S, CLI_FAIL, "out of memory");
      goto done;
    }
    st = resq_hadamard_f16__ref(rows, n, (const uint16_t *)x.data, n, yh, n, signs, work, ws);
  } else {
    xf = cli_to_f32(&x);
    if (!xf) {
      cli_error(S, CLI_FAIL, "out of memory");
      goto done;
    }
    if (weight)
      st = resq_hadamard_weight_f32__ref(side, x.shape[0], x.shape[1], xf, x.shape[1], signs, work, ws);
    else
      st = resq_hadamard_f32__ref(rows, n, xf, n, xf, n, signs, work, ws);
    yf = xf;
    if (!st && out_f16) {
      yh = (uint16_t *)malloc((size_t)(total > 0 ? total : 1) * 2);
      if (!yh) {
        cli_error(S, CLI_FAIL, "out of memory");
        goto done;
      }
      for (int64_t i = 0; i < total; i++) {
        yh[i] = resq_f32_to_f16(yf[i]);
        if ((yh[i] & 0x7c00u) == 0x7c00u) {
          st = resq_fail(RESQ_ERR_NONFINITE, "hadamard: output element %lld = %g overflows f16", (long long)i,
                         (double)yf[i]);
          break;
        }
      }
    }
  }
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if ((rc = cli_out_open(&os, S, out))) goto done;
  os_open = 1;
  rc = out_f16 ? cli_out_add(&os, "y.npy", RESQ_DTYPE_F16, x.ndim, x.shape, yh)
               : cli_out_add(&os, "y.npy", RESQ_DTYPE_F32, x.ndim, x.shape, yf);
  if (!rc && seed >= 0) rc = cli_out_add(&os, "signs.npy", RESQ_DTYPE_I8, 1, &n, signs);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
  os_open = 0;
done:
  if (os_open) cli_out_abort(&os);
  if (seed >= 0) free(signs);
  resq_array_free(&sg);
  resq_array_free(&x);
  free(xf);
  free(yh);
  free(work);
  return rc;
}
