/* SPDX-License-Identifier: Apache-2.0
 * resq quant-weight: symmetric per-channel weight quantization (RTN), and the
 * packed layout the mixed GEMM consumes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/gemm.h"
#include "resq/quant_weight.h"

static const char *k_help =
    "usage: resq quant-weight --w W.npy --out DIR [--r R] [--bits-lo 4] [--bits-hi 8] [--mse]\n"
    "                         [--group G]\n"
    "\n"
    "Round-to-nearest symmetric per-output-channel quantization (ref/CONTRACT.md s.10): the first\n"
    "K-R input columns with bits-lo, the last R with bits-hi, one fp32 scale per row and part.\n"
    "--mse runs upstream's clip search (grid 100, maxshrink 0.8, norm 2.4). For GPTQ use\n"
    "'resq gptq'. With 4/8 bits the weight is also packed for 'resq gemm'.\n"
    "\n"
    "inputs\n"
    "  --w W.npy       f32 | f16 | bf16, [N, K] (nn.Linear layout: y = x W^T). For o_proj give the\n"
    "                  columns in upstream's permuted order (all lo columns, then all hi columns)\n"
    "parameters\n"
    "  --r R           hi columns at the end, 0..K (default K/8); R counts ALL hi columns\n"
    "  --bits-lo B     2..8 (default 4)    --bits-hi B   2..8 (default 8)\n"
    "  --mse           MSE clip search\n"
    "  --group G       packing only: the GEMM split has K/G groups with R/(K/G) hi columns each\n"
    "                  (grouped o_proj: G = head_dim); default G = K\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR)\n"
    "  codes.npy     i8  [N, K]    integer codes in the GEMM's K order\n"
    "  scale_lo.npy  f32 [N]       scale_hi.npy  f32 [N]   (zeros for an empty part)\n"
    "  w_hat.npy     f32 [N, K]    dequantized weight s * code\n"
    "  with --bits-lo 4 --bits-hi 8, the packed GEMM operand (see resq/gemm.h):\n"
    "  q_lo.npy u8 [N, lo_bytes]  q_hi.npy i8 [N, hi_bytes]  sum_lo.npy i32 [N, K/G]  sum_hi.npy i32 [N, K/G]\n";

int cli_quant_weight(int argc, char **argv) {
  const char *S = "quant-weight";
  const char *wpath = NULL, *out = NULL;
  int64_t r = -1, bl = 4, bh = 8, group = 0;
  int mse = 0;
  cli_opt opts[] = {
      {"w", OPT_STR, &wpath, 1, 0, 0, 0},         {"out", OPT_STR, &out, 1, 0, 0, 0},
      {"r", OPT_INT, &r, 0, 0, INT32_MAX, 0},      {"bits-lo", OPT_INT, &bl, 0, 2, 8, 0},
      {"bits-hi", OPT_INT, &bh, 0, 2, 8, 0},       {"mse", OPT_FLAG, &mse, 0, 0, 0, 0},
      {"group", OPT_INT, &group, 0, 1, INT32_MAX, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  resq_array w;
  if ((rc = cli_load_float(S, "--w", wpath, &w))) return rc;
  rc = CLI_FAIL;
  float *wf = NULL, *what = NULL, *sl = NULL, *sh = NULL;
  int8_t *codes = NULL, *qhi = NULL;
  uint8_t *qlo = NULL;
  int32_t *sumlo = NULL, *sumhi = NULL;
  cli_outset os;
  if (w.ndim != 2 || w.shape[1] < 1) {
    cli_error(S, CLI_FAIL, "--w %s: expected a 2-D [N, K] weight with K >= 1", wpath);
    goto done;
  }
  int64_t N = w.shape[0], K = w.shape[1];
  resq_wquant_params p = resq_wquant_default(K);
  if (r >= 0) p.r = r;
  p.bits_lo = (int)bl;
  p.bits_hi = (int)bh;
  p.mse = mse;
  if (resq_wquant_check(&p)) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  int pack = bl == 4 && bh == 8;
  resq_qact_params split = resq_qact_default(K);
  resq_qact_layout L;
  memset(&L, 0, sizeof L);
  if (pack) {
    split.group = group > 0 ? group : K;
    if (K % split.group || p.r % (K / split.group)) {
      cli_error(S, CLI_FAIL, "--group %lld: K=%lld must be a multiple and R=%lld divisible by the %lld groups",
                (long long)split.group, (long long)K, (long long)p.r, (long long)(K / (split.group ? split.group : 1)));
      goto done;
    }
    split.r = p.r / (K / split.group);
    if (resq_gemm_check(&split, &L)) {
      cli_error(S, CLI_FAIL, "%s", resq_last_error());
      goto done;
    }
  }
  size_t Nz = (size_t)(N > 0 ? N : 1);
  wf = cli_to_f32(&w);
  what = malloc(Nz * (size_t)K * sizeof(float));
  codes = malloc(Nz * (size_t)K);
  sl = calloc(Nz, sizeof(float));
  sh = calloc(Nz, sizeof(float));
  qlo = calloc(Nz * (size_t)(L.lo_bytes + 1), 1);
  qhi = calloc(Nz * (size_t)(L.hi_bytes + 1), 1);
  sumlo = calloc(Nz * (size_t)(L.ngroups + 1), 4);
  sumhi = calloc(Nz * (size_t)(L.ngroups + 1), 4);
  if (!wf || !what || !codes || !sl || !sh || !qlo || !qhi || !sumlo || !sumhi) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  resq_status st = resq_quant_weight_f32__ref(&p, N, wf, K, codes, K, sl, sh);
  if (!st) st = resq_dequant_weight_f32__ref(&p, N, codes, K, sl, sh, what, K);
  resq_qweight qw = {N, qlo, L.lo_bytes, qhi, L.hi_bytes, sl, sh, sumlo, sumhi};
  float *sl_copy = NULL, *sh_copy = NULL;
  if (!st && pack) {
    sl_copy = malloc(Nz * sizeof(float));
    sh_copy = malloc(Nz * sizeof(float));
    if (!sl_copy || !sh_copy) st = resq_fail(RESQ_ERR_NOMEM, "out of memory");
    qw.scale_lo = sl_copy;
    qw.scale_hi = sh_copy;
    if (!st) st = resq_gemm_pack_weight(&split, N, codes, K, sl, sh, &qw);
  }
  free(sl_copy);
  free(sh_copy);
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if ((rc = cli_out_open(&os, S, out))) goto done;
  int64_t shNK[2] = {N, K}, shN[1] = {N}, shlo[2] = {N, L.lo_bytes}, shhi[2] = {N, L.hi_bytes},
          shg[2] = {N, L.ngroups};
  rc = cli_out_add(&os, "codes.npy", RESQ_DTYPE_I8, 2, shNK, codes);
  if (!rc) rc = cli_out_add(&os, "scale_lo.npy", RESQ_DTYPE_F32, 1, shN, sl);
  if (!rc) rc = cli_out_add(&os, "scale_hi.npy", RESQ_DTYPE_F32, 1, shN, sh);
  if (!rc) rc = cli_out_add(&os, "w_hat.npy", RESQ_DTYPE_F32, 2, shNK, what);
  if (!rc && pack) rc = cli_out_add(&os, "q_lo.npy", RESQ_DTYPE_U8, 2, shlo, qlo);
  if (!rc && pack) rc = cli_out_add(&os, "q_hi.npy", RESQ_DTYPE_I8, 2, shhi, qhi);
  if (!rc && pack) rc = cli_out_add(&os, "sum_lo.npy", RESQ_DTYPE_I32, 2, shg, sumlo);
  if (!rc && pack) rc = cli_out_add(&os, "sum_hi.npy", RESQ_DTYPE_I32, 2, shg, sumhi);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
done:
  resq_array_free(&w);
  free(wf), free(what), free(codes), free(sl), free(sh), free(qlo), free(qhi), free(sumlo), free(sumhi);
  return rc;
}
