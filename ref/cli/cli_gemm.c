/* SPDX-License-Identifier: Apache-2.0
 * resq gemm: the mixed INT4/INT8 GEMM on quantized operands, or the FP16 baseline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/dtype.h"
#include "resq/gemm.h"

static const char *k_help =
    "usage: resq gemm --xq XDIR --wq WDIR --k K [--group G] [--bias B.npy] [--out-dtype f16|f32] --out DIR\n"
    "       resq gemm --x X.npy --w W.npy [--bias B.npy] [--out-dtype f16|f32] --out DIR\n"
    "\n"
    "Mixed form (ref/CONTRACT.md s.11): Y = X W^T on quantized operands; the int32 part is exact and\n"
    "the fp32 epilogue order is fixed. XDIR is a 'resq quant-act' output directory (q_lo, q_hi,\n"
    "scale_lo, zero_lo, scale_hi, zero_hi), WDIR a 'resq quant-weight' (or gptq) output directory\n"
    "with the packed operand (q_lo, q_hi, scale_lo, scale_hi, sum_lo, sum_hi); both quantized with\n"
    "the same split. FP16 form: the baseline, fp16 inputs, fp32 accumulation in k order.\n"
    "\n"
    "inputs\n"
    "  --xq XDIR       M rows; arrays as written by quant-act\n"
    "  --wq WDIR       N rows; arrays as written by quant-weight\n"
    "  --x X.npy       f16 [M, K] (FP16 form)      --w W.npy   f16 [N, K] (FP16 form)\n"
    "  --bias B.npy    optional f32 [N]\n"
    "parameters\n"
    "  --k K           channels (mixed form; the packed arrays do not determine an odd K)\n"
    "  --group G       channels per group (default K; grouped o_proj: head_dim)\n"
    "  --out-dtype T   f16 (default) or f32\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR)\n"
    "  y.npy           [M, N] f16 (RNE; overflow gives +-Inf) or f32\n";

/* Load DIR/name.npy, requiring dtype and 2-D shape [rows, cols] (-1: any). */
static int load_req(const char *S, const char *dir, const char *name, resq_dtype t, int64_t rows, int64_t cols,
                    resq_array *a) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (resq_npy_read(path, a)) return cli_error(S, CLI_FAIL, "%s", resq_last_error());
  int ok = a->dtype == t && a->ndim == 2 && (rows < 0 || a->shape[0] == rows) && (cols < 0 || a->shape[1] == cols);
  if (ok) return CLI_OK;
  int rc = cli_error(S, CLI_FAIL, "%s: expected %s [%lld, %lld], got %s with %d dimensions (%lld, %lld)", path,
                     resq_dtype_name(t), (long long)rows, (long long)cols, resq_dtype_name(a->dtype), a->ndim,
                     (long long)(a->ndim > 0 ? a->shape[0] : 0), (long long)(a->ndim > 1 ? a->shape[1] : 0));
  resq_array_free(a);
  return rc;
}

static int run_fp16(const char *S, const char *xpath, const char *wpath, const resq_array *bias, int out_f32,
                    const char *out) {
  resq_array x, w;
  int rc = cli_load_float(S, "--x", xpath, &x);
  if (rc) return rc;
  if ((rc = cli_load_float(S, "--w", wpath, &w))) {
    resq_array_free(&x);
    return rc;
  }
  void *y = NULL;
  cli_outset os;
  rc = CLI_FAIL;
  if (x.dtype != RESQ_DTYPE_F16 || w.dtype != RESQ_DTYPE_F16 || x.ndim != 2 || w.ndim != 2 ||
      x.shape[1] != w.shape[1]) {
    cli_error(S, CLI_FAIL, "FP16 form needs f16 X [M, K] and W [N, K] with the same K");
    goto done;
  }
  int64_t M = x.shape[0], N = w.shape[0], K = x.shape[1];
  if (bias->data && (bias->ndim != 1 || bias->shape[0] != N)) {
    cli_error(S, CLI_FAIL, "--bias: expected f32 [%lld]", (long long)N);
    goto done;
  }
  if ((rc = cli_check_size(S, "output y", M, N, 4))) goto done; /* before M * N is formed */
  rc = CLI_FAIL;
  y = malloc((size_t)(M * N > 0 ? M * N : 1) * 4);
  if (!y) {
    cli_error(S, CLI_FAIL, "out of memory for y [%lld, %lld]", (long long)M, (long long)N);
    goto done;
  }
  resq_status st = out_f32 ? resq_gemm_f16_f32__ref(M, N, K, x.data, K, w.data, K, bias->data, y, N)
                           : resq_gemm_f16__ref(M, N, K, x.data, K, w.data, K, bias->data, y, N);
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if ((rc = cli_out_open(&os, S, out))) goto done;
  int64_t sh[2] = {M, N};
  rc = cli_out_add(&os, "y.npy", out_f32 ? RESQ_DTYPE_F32 : RESQ_DTYPE_F16, 2, sh, y);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
done:
  resq_array_free(&x);
  resq_array_free(&w);
  free(y);
  return rc;
}

int cli_gemm(int argc, char **argv) {
  const char *S = "gemm";
  const char *xq = NULL, *wq = NULL, *xpath = NULL, *wpath = NULL, *bpath = NULL, *odt = NULL, *out = NULL;
  int64_t K = 0, group = 0;
  cli_opt opts[] = {
      {"xq", OPT_STR, &xq, 0, 0, 0, 0},       {"wq", OPT_STR, &wq, 0, 0, 0, 0},
      {"x", OPT_STR, &xpath, 0, 0, 0, 0},     {"w", OPT_STR, &wpath, 0, 0, 0, 0},
      {"bias", OPT_STR, &bpath, 0, 0, 0, 0},  {"out-dtype", OPT_STR, &odt, 0, 0, 0, 0},
      {"k", OPT_INT, &K, 0, 1, INT32_MAX, 0}, {"group", OPT_INT, &group, 0, 1, INT32_MAX, 0},
      {"out", OPT_STR, &out, 1, 0, 0, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  int mixed = xq || wq;
  if (mixed ? (!xq || !wq || xpath || wpath || !K) : (!xpath || !wpath))
    return cli_error(S, CLI_USAGE, "give either --xq, --wq and --k (mixed) or --x and --w (FP16)");
  if (odt && strcmp(odt, "f16") && strcmp(odt, "f32"))
    return cli_error(S, CLI_USAGE, "--out-dtype must be f16 or f32, not '%s'", odt);
  int out_f32 = odt && !strcmp(odt, "f32");
  resq_array bias;
  memset(&bias, 0, sizeof bias);
  if (bpath) {
    if (resq_npy_read(bpath, &bias)) return cli_error(S, CLI_FAIL, "--bias: %s", resq_last_error());
    if (bias.dtype != RESQ_DTYPE_F32) {
      resq_array_free(&bias);
      return cli_error(S, CLI_FAIL, "--bias %s: dtype must be f32", bpath);
    }
  }
  if (!mixed) {
    rc = run_fp16(S, xpath, wpath, &bias, out_f32, out);
    resq_array_free(&bias);
    return rc;
  }
  resq_qact_params p = resq_qact_default(K);
  p.group = group ? group : K;
  resq_array a[12];
  memset(a, 0, sizeof a);
  void *y = NULL;
  cli_outset os;
  rc = CLI_FAIL;
  /* the activation scales give M and the number of groups; q_hi gives r */
  if ((rc = load_req(S, xq, "scale_lo.npy", RESQ_DTYPE_F32, -1, -1, &a[0]))) goto done;
  rc = CLI_FAIL;
  int64_t M = a[0].shape[0], G = a[0].shape[1];
  if (G < 1 || K % G || K / G != p.group) {
    cli_error(S, CLI_FAIL, "%s/scale_lo.npy has %lld groups, but --k %lld / --group %lld gives %lld", xq, (long long)G,
              (long long)K, (long long)p.group, (long long)(K / p.group));
    goto done;
  }
  if ((rc = load_req(S, xq, "q_hi.npy", RESQ_DTYPE_U8, M, -1, &a[1]))) goto done;
  rc = CLI_FAIL;
  p.r = a[1].shape[1] / G;
  resq_qact_layout L;
  if (a[1].shape[1] % G || resq_gemm_check(&p, &L)) {
    cli_error(S, CLI_FAIL, "%s", a[1].shape[1] % G ? "q_hi columns are not a multiple of the groups" : resq_last_error());
    goto done;
  }
  if ((rc = load_req(S, xq, "q_lo.npy", RESQ_DTYPE_U8, M, L.lo_bytes, &a[2])) ||
      (rc = load_req(S, xq, "zero_lo.npy", RESQ_DTYPE_I32, M, G, &a[3])) ||
      (rc = load_req(S, xq, "scale_hi.npy", RESQ_DTYPE_F32, M, G, &a[4])) ||
      (rc = load_req(S, xq, "zero_hi.npy", RESQ_DTYPE_I32, M, G, &a[5])) ||
      (rc = load_req(S, wq, "q_lo.npy", RESQ_DTYPE_U8, -1, L.lo_bytes, &a[6])))
    goto done;
  int64_t N = a[6].shape[0];
  char path[4096];
  snprintf(path, sizeof path, "%s/scale_lo.npy", wq);
  if ((rc = load_req(S, wq, "q_hi.npy", RESQ_DTYPE_I8, N, L.hi_bytes, &a[7])) ||
      (rc = load_req(S, wq, "sum_lo.npy", RESQ_DTYPE_I32, N, G, &a[8])) ||
      (rc = load_req(S, wq, "sum_hi.npy", RESQ_DTYPE_I32, N, G, &a[9])))
    goto done;
  rc = CLI_FAIL;
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", wq, i ? "scale_hi.npy" : "scale_lo.npy");
    if (resq_npy_read(path, &a[10 + i]) || a[10 + i].dtype != RESQ_DTYPE_F32 || a[10 + i].ndim != 1 ||
        a[10 + i].shape[0] != N) {
      cli_error(S, CLI_FAIL, "%s: expected f32 [%lld]", path, (long long)N);
      goto done;
    }
  }
  if (bias.data && (bias.ndim != 1 || bias.shape[0] != N)) {
    cli_error(S, CLI_FAIL, "--bias: expected f32 [%lld]", (long long)N);
    goto done;
  }
  resq_qact x = {a[2].data, L.lo_bytes, a[1].data, L.hi_bytes, a[0].data, a[3].data, a[4].data, a[5].data};
  resq_qweight w = {N, a[6].data, L.lo_bytes, a[7].data, L.hi_bytes, a[10].data, a[11].data, a[8].data, a[9].data};
  if ((rc = cli_check_size(S, "output y", M, N, 4))) goto done; /* before M * N is formed */
  rc = CLI_FAIL;
  y = malloc((size_t)(M * N > 0 ? M * N : 1) * 4);
  if (!y) {
    cli_error(S, CLI_FAIL, "out of memory for y [%lld, %lld]", (long long)M, (long long)N);
    goto done;
  }
  resq_status st = out_f32 ? resq_gemm_q4q8_f32__ref(&p, M, &x, &w, bias.data, y, N)
                           : resq_gemm_q4q8_f16__ref(&p, M, &x, &w, bias.data, y, N);
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if ((rc = cli_out_open(&os, S, out))) goto done;
  int64_t sh[2] = {M, N};
  rc = cli_out_add(&os, "y.npy", out_f32 ? RESQ_DTYPE_F32 : RESQ_DTYPE_F16, 2, sh, y);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
done:
  for (int i = 0; i < 12; i++) resq_array_free(&a[i]);
  resq_array_free(&bias);
  free(y);
  return rc;
}
