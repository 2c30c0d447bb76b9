/* SPDX-License-Identifier: Apache-2.0
 * resq gptq: GPTQ of one weight with the mixed lo/hi quantizer (ref/CONTRACT.md
 * section 12); the calibration batches are streamed one file at a time into
 * the running-average Hessian. Also reports the objective of round-to-nearest
 * on the same weight, so that GPTQ's gain is visible. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/gptq.h"

static const char *k_help =
    "usage: resq gptq --w W.npy --x A.npy[,B.npy,...] --out DIR [--r R] [--bits-lo 4] [--bits-hi 8]\n"
    "                 [--mse] [--act-order] [--group-size G] [--blocksize 128] [--percdamp 0.01] [--group G]\n"
    "\n"
    "GPTQ (ref/CONTRACT.md s.12, upstream GPTQ.add_batch + fasterquant, in double) with the\n"
    "symmetric per-channel quantizer of s.10: the first K-R input columns use the lo quantizer\n"
    "(bits-lo), the last R the hi quantizer (bits-hi), chosen by ORIGINAL column position (also with\n"
    "--act-order). The Hessian is upstream's running average H = (2/N) sum x x^T over all tokens of\n"
    "N calibration sequences; each file is one add_batch call (read one at a time). Dead columns\n"
    "(a channel that is 0 in every token) are zeroed in W. Round-to-nearest (RTN) with the same\n"
    "quantizers is run too, and both objectives tr((W-Q) H (W-Q)^T) are reported.\n"
    "\n"
    "inputs\n"
    "  --w W.npy       f32 | f16 | bf16 (<V2 or <u2), [N, K] (nn.Linear layout: y = x W^T). For o_proj\n"
    "                  give the columns in upstream's permuted order (all lo columns, then all hi)\n"
    "  --x FILES       comma-separated calibration batches (the layer's INPUTS), each f32 | f16 | bf16:\n"
    "                  3-D [B, T, K] = B sequences of T tokens (one add_batch with B sequences);\n"
    "                  any other shape [..., K] = ONE sequence of all its tokens (B = 1). Every file\n"
    "                  must have K channels; tokens are added in file order, then row order\n"
    "parameters\n"
    "  --r R           hi columns at the end, 0..K (default K/8; 0 = uniform bits-lo, e.g. down_proj)\n"
    "  --bits-lo B     2..8 (default 4)    --bits-hi B   2..8 (default 8)\n"
    "  --mse           upstream's MSE clip search for every scale (grid 100, maxshrink 0.8, norm 2.4)\n"
    "  --act-order     quantize columns in descending diag(H) order (ties: lower index first)\n"
    "  --group-size G  one lo scale per G lo columns (G divides K-R), found on the current (error-\n"
    "                  corrected) weights when the group's first column is quantized; default: one\n"
    "                  lo scale per row, found on the original W. The hi scale is always per row\n"
    "  --blocksize S   columns per lazy-update block, >= 1 (default 128; never changes the result)\n"
    "  --percdamp F    damping fraction >= 0 (default 0.01): H[i][i] += F * mean(diag(H))\n"
    "  --group G       packing only (4/8 bits without --group-size): the GEMM split has K/G groups\n"
    "                  with R/(K/G) hi columns each (grouped o_proj: G = head_dim); default G = K\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR)\n"
    "  codes.npy      i8  [N, K]   GPTQ integer codes, original column order (lo columns in\n"
    "                              [-2^(bits-lo-1), 2^(bits-lo-1)-1], hi columns likewise)\n"
    "  scale_lo.npy   f32 [N]      (or [N, (K-R)/G] with --group-size G; zeros if R = K)\n"
    "  scale_hi.npy   f32 [N]      (zeros if R = 0)\n"
    "  Q.npy          f32 [N, K]   dequantized GPTQ weight: scale * code (one fp32 multiply)\n"
    "  objective.npy  f64 [3]      [GPTQ objective, RTN objective, GPTQ/RTN], objective =\n"
    "                              tr((W-Q) H (W-Q)^T) with the undamped H, original W\n"
    "  with --bits-lo 4 --bits-hi 8 and no --group-size, the packed operand of 'resq gemm' (resq/gemm.h):\n"
    "  q_lo.npy u8 [N, lo_bytes]  q_hi.npy i8 [N, hi_bytes]  sum_lo.npy i32 [N, K/G]  sum_hi.npy i32 [N, K/G]\n"
    "stdout: one line with both objectives, their ratio, the damping, dead columns and whether the\n"
    "        Cholesky of H^-1 needed upstream's +1e-5*I retry.\n"
    "errors (exit 1, nothing written): NaN/Inf in W or in a batch, a batch whose K differs from W's,\n"
    "        G not dividing K-R, no calibration sequence, all-zero calibration data, a Hessian that\n"
    "        is not positive definite after damping (raise --percdamp), K > 32768.\n";

/* One calibration file -> one add_batch call. */
static int add_file(const char *S, const char *path, resq_gptq_hessian *h, int64_t K) {
  resq_array x;
  int rc = cli_load_float(S, "--x", path, &x);
  if (rc) return rc;
  rc = CLI_FAIL;
  float *f = NULL;
  if (x.ndim < 1 || x.shape[x.ndim - 1] != K) {
    cli_error(S, CLI_FAIL, "--x %s: last dimension %lld differs from the weight's K=%lld", path,
              (long long)(x.ndim ? x.shape[x.ndim - 1] : 0), (long long)K);
    goto done;
  }
  const int64_t rows = resq_array_numel(&x) / K;
  const int64_t B = x.ndim == 3 ? x.shape[0] : 1, T = x.ndim == 3 ? x.shape[1] : rows;
  resq_status st;
  if (x.dtype == RESQ_DTYPE_F16) {
    st = resq_gptq_add_batch_f16__ref(h, B, T, (const uint16_t *)x.data, K);
  } else if (x.dtype == RESQ_DTYPE_F32) {
    st = resq_gptq_add_batch_f32__ref(h, B, T, (const float *)x.data, K);
  } else { /* bf16: widened whole (one file is one add_batch call) */
    if (!(f = cli_to_f32(&x))) {
      cli_error(S, CLI_FAIL, "out of memory reading %s", path);
      goto done;
    }
    st = resq_gptq_add_batch_f32__ref(h, B, T, f, K);
  }
  if (st) {
    cli_error(S, CLI_FAIL, "--x %s: %s", path, resq_last_error());
    goto done;
  }
  rc = CLI_OK;
done:
  free(f);
  resq_array_free(&x);
  return rc;
}

int cli_gptq(int argc, char **argv) {
  const char *S = "gptq";
  const char *wpath = NULL, *xlist = NULL, *out = NULL, *damp_s = NULL;
  int64_t r = -1, bl = 4, bh = 8, gsize = 0, bsize = RESQ_GPTQ_BLOCKSIZE_DEFAULT, group = 0;
  int mse = 0, act = 0;
  cli_opt opts[] = {
      {"w", OPT_STR, &wpath, 1, 0, 0, 0},
      {"x", OPT_STR, &xlist, 1, 0, 0, 0},
      {"out", OPT_STR, &out, 1, 0, 0, 0},
      {"r", OPT_INT, &r, 0, 0, INT32_MAX, 0},
      {"bits-lo", OPT_INT, &bl, 0, 2, 8, 0},
      {"bits-hi", OPT_INT, &bh, 0, 2, 8, 0},
      {"mse", OPT_FLAG, &mse, 0, 0, 0, 0},
      {"act-order", OPT_FLAG, &act, 0, 0, 0, 0},
      {"group-size", OPT_INT, &gsize, 0, 1, INT32_MAX, 0},
      {"blocksize", OPT_INT, &bsize, 0, 1, INT32_MAX, 0},
      {"percdamp", OPT_STR, &damp_s, 0, 0, 0, 0},
      {"group", OPT_INT, &group, 0, 1, INT32_MAX, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  double percdamp = RESQ_GPTQ_PERCDAMP_DEFAULT;
  if (damp_s) {
    char *end = NULL;
    errno = 0;
    percdamp = strtod(damp_s, &end); /* a double: 0.01 means the double 0.01 */
    if (errno || !end || *end || end == damp_s || !isfinite(percdamp) || percdamp < 0.0)
      return cli_error(S, CLI_USAGE, "--percdamp: '%s' is not a finite number >= 0", damp_s);
  }
  const int pack = bl == 4 && bh == 8 && gsize == 0;
  if (group > 0 && !pack)
    return cli_error(S, CLI_USAGE, "--group (GEMM packing) needs --bits-lo 4 --bits-hi 8 and no --group-size");

  resq_array w;
  if ((rc = cli_load_float(S, "--w", wpath, &w))) return rc;
  rc = CLI_FAIL;
  char *list = NULL;
  float *wf = NULL, *Q = NULL, *Qr = NULL, *sl = NULL, *sh = NULL, *slr = NULL, *shr = NULL;
  int8_t *codes = NULL, *cr = NULL, *qhi = NULL;
  uint8_t *qlo = NULL;
  int32_t *sumlo = NULL, *sumhi = NULL;
  void *work = NULL;
  resq_gptq_hessian h;
  memset(&h, 0, sizeof h);
  cli_outset os;
  if (w.ndim != 2 || w.shape[1] < 1) {
    cli_error(S, CLI_FAIL, "--w %s: expected a 2-D [N, K] weight with K >= 1", wpath);
    goto done;
  }
  const int64_t N = w.shape[0], K = w.shape[1];
  resq_gptq_params p = resq_gptq_default(K);
  if (r >= 0) p.q.r = r;
  p.q.bits_lo = (int)bl;
  p.q.bits_hi = (int)bh;
  p.q.mse = mse;
  p.act_order = act;
  p.group_size = gsize;
  p.blocksize = bsize;
  p.percdamp = percdamp;
  int64_t ngl = 0;
  if (resq_gptq_check(&p, &ngl)) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  resq_qact_params split = resq_qact_default(K);
  resq_qact_layout L;
  memset(&L, 0, sizeof L);
  if (pack) {
    split.group = group > 0 ? group : K;
    if (K % split.group || p.q.r % (K / split.group)) {
      cli_error(S, CLI_FAIL, "--group %lld: K=%lld must be a multiple and R=%lld divisible by the %lld groups",
                (long long)split.group, (long long)K, (long long)p.q.r, (long long)(K / split.group));
      goto done;
    }
    split.r = p.q.r / (K / split.group);
    if (resq_gemm_check(&split, &L)) {
      cli_error(S, CLI_FAIL, "%s", resq_last_error());
      goto done;
    }
  }
  /* W is validated before the (long) Hessian accumulation */
  if (!(wf = cli_to_f32(&w))) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  resq_array_free(&w);
  for (int64_t i = 0; i < N * K; i++)
    if (!isfinite(wf[i])) {
      cli_error(S, CLI_FAIL, "--w %s: W[%lld][%lld] is NaN or Inf", wpath, (long long)(i / K), (long long)(i % K));
      goto done;
    }
  if (resq_gptq_hessian_init(&h, K)) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if (!(list = (char *)malloc(strlen(xlist) + 1))) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  strcpy(list, xlist);
  for (char *path = list, *next; path; path = next) {
    next = strchr(path, ',');
    if (next) *next++ = '\0';
    if (!*path) {
      rc = cli_error(S, CLI_USAGE, "--x: empty file name in the list '%s'", xlist);
      goto done;
    }
    if (add_file(S, path, &h, K)) goto done;
  }
  if (h.nsamples == 0) {
    cli_error(S, CLI_FAIL, "--x: no calibration sequence (every file has B = 0)");
    goto done;
  }

  const size_t Nz = (size_t)(N > 0 ? N : 1), NK = Nz * (size_t)K;
  const size_t ngz = (size_t)(ngl > 0 ? ngl : 1);
  size_t ws = resq_gptq_workspace_size(&p, N);
  work = malloc(ws ? ws : 1);
  Q = (float *)malloc(NK * sizeof(float));
  Qr = (float *)malloc(NK * sizeof(float));
  codes = (int8_t *)malloc(NK);
  cr = (int8_t *)malloc(NK);
  sl = (float *)calloc(Nz * ngz, sizeof(float));
  slr = (float *)calloc(Nz * ngz, sizeof(float));
  sh = (float *)calloc(Nz, sizeof(float));
  shr = (float *)calloc(Nz, sizeof(float));
  qlo = (uint8_t *)calloc(Nz * (size_t)(L.lo_bytes + 1), 1);
  qhi = (int8_t *)calloc(Nz * (size_t)(L.hi_bytes + 1), 1);
  sumlo = (int32_t *)calloc(Nz * (size_t)(L.ngroups + 1), 4);
  sumhi = (int32_t *)calloc(Nz * (size_t)(L.ngroups + 1), 4);
  if (!ws || !work || !Q || !Qr || !codes || !cr || !sl || !slr || !sh || !shr || !qlo || !qhi || !sumlo || !sumhi) {
    cli_error(S, CLI_FAIL, "out of memory for N=%lld, K=%lld", (long long)N, (long long)K);
    goto done;
  }
  resq_gptq_info info;
  memset(&info, 0, sizeof info);
  double obj[3] = {0, 0, 0};
  resq_status st = resq_gptq_f64__ref(&p, &h, N, wf, K, codes, K, sl, sh, Q, K, &info, work, ws);
  free(work);
  work = NULL;
  if (!st) st = resq_gptq_rtn_f32__ref(&p, N, wf, K, cr, K, slr, shr, Qr, K);
  if (!st) st = resq_gptq_objective_f64__ref(&h, N, wf, K, Q, K, &obj[0], NULL);
  if (!st) st = resq_gptq_objective_f64__ref(&h, N, wf, K, Qr, K, &obj[1], NULL);
  obj[2] = obj[1] > 0.0 ? obj[0] / obj[1] : (obj[0] > 0.0 ? INFINITY : 1.0);
  if (!st && pack) {
    resq_qweight qw = {N, qlo, L.lo_bytes, qhi, L.hi_bytes, slr, shr, sumlo, sumhi}; /* scale copies: RTN's */
    st = resq_gemm_pack_weight(&split, N, codes, K, sl, sh, &qw);
  }
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if ((rc = cli_out_open(&os, S, out))) goto done;
  int64_t shNK[2] = {N, K}, shN[1] = {N}, shL[2] = {N, ngl}, sh3[1] = {3}, shlo[2] = {N, L.lo_bytes},
          shhi[2] = {N, L.hi_bytes}, shg[2] = {N, L.ngroups};
  rc = cli_out_add(&os, "codes.npy", RESQ_DTYPE_I8, 2, shNK, codes);
  if (!rc) {
    if (gsize > 0) rc = cli_out_add(&os, "scale_lo.npy", RESQ_DTYPE_F32, 2, shL, sl);
    else rc = cli_out_add(&os, "scale_lo.npy", RESQ_DTYPE_F32, 1, shN, sl);
  }
  if (!rc) rc = cli_out_add(&os, "scale_hi.npy", RESQ_DTYPE_F32, 1, shN, sh);
  if (!rc) rc = cli_out_add(&os, "Q.npy", RESQ_DTYPE_F32, 2, shNK, Q);
  if (!rc) rc = cli_out_add(&os, "objective.npy", RESQ_DTYPE_F64, 1, sh3, obj);
  if (!rc && pack) rc = cli_out_add(&os, "q_lo.npy", RESQ_DTYPE_U8, 2, shlo, qlo);
  if (!rc && pack) rc = cli_out_add(&os, "q_hi.npy", RESQ_DTYPE_I8, 2, shhi, qhi);
  if (!rc && pack) rc = cli_out_add(&os, "sum_lo.npy", RESQ_DTYPE_I32, 2, shg, sumlo);
  if (!rc && pack) rc = cli_out_add(&os, "sum_hi.npy", RESQ_DTYPE_I32, 2, shg, sumhi);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
  if (!rc)
    printf("gptq: objective %.6e (rtn %.6e, gptq/rtn %.4f); %lld sequences, %lld tokens; damp %.3e; %lld dead "
           "column%s; cholesky retry %s\n",
           obj[0], obj[1], obj[2], (long long)h.nsamples, (long long)h.ntokens, info.damp, (long long)info.dead,
           info.dead == 1 ? "" : "s", info.retried ? "yes" : "no");
done:
  resq_array_free(&w);
  resq_gptq_hessian_free(&h);
  free(list), free(wf), free(Q), free(Qr), free(codes), free(cr), free(sl), free(slr), free(sh), free(shr);
  free(qlo), free(qhi), free(sumlo), free(sumhi), free(work);
  return rc;
}
