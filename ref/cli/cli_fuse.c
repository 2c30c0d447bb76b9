/* SPDX-License-Identifier: Apache-2.0
 * resq fuse: offline fusion of a rotation (the U.npy of `resq pca`, or per-head
 * value bases) into one nn.Linear weight (ref/CONTRACT.md section 13,
 * resq/pca.h section 5). Every sum is in double, the result rounded once to
 * fp32 (exact given U); --out-dtype f16 rounds that fp32 value once more,
 * nearest-even, and refuses a value that overflows f16. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/pca.h"

static const char *k_help =
    "usage: resq fuse --w W.npy --u U.npy --side input|output|v-proj|o-proj|down-proj --out DIR\n"
    "                 [--heads H] [--kv-heads G] [--head-dim hd] [--signs S.npy] [--out-dtype f32|f16]\n"
    "\n"
    "Fuses a rotation into a weight W in nn.Linear layout [N, K] (y = x W^T), ref/CONTRACT.md s.13:\n"
    "every sum over k ascending in double, (double)W times U, rounded once to fp32 (exact given U).\n"
    "  input      W' = W U          (q/k/v/up/gate: U [K, K]); then (x U) W'^T = x W^T\n"
    "  output     W' = U^T W        (o_proj's output side: U [N, N]); then x W'^T = (x W^T) U\n"
    "  v-proj     rows g*hd..g*hd+hd-1 of W [G*hd, K] get U_v[g]^T (output side, per KV head)\n"
    "  o-proj     columns h*hd..h*hd+hd-1 of W [N, H*hd] get U_v[h / (H/G)] (input side, per\n"
    "             query head), undoing the value rotation; run --side output on the result for\n"
    "             o_proj's output side\n"
    "  down-proj  W [d, I]: W' = (U^T W) diag(s) H_I^T: the output side with U [d, d], then the\n"
    "             offline Hadamard of s.2 on the input side (the online activation gets x H_I^T)\n"
    "\n"
    "inputs\n"
    "  --w W.npy       f32 | f16 | bf16 (<V2 or <u2), 2-D [N, K]\n"
    "  --u U.npy       f64 (or f32, widened exactly). input/output/down-proj: [n, n] with n = K\n"
    "                  (input) or N (output, down-proj), e.g. U.npy of `resq pca`. v-proj/o-proj:\n"
    "                  the G per-KV-head value bases, 3-D [G, hd, hd] (U_v[g] = U[g]) or the same\n"
    "                  bytes as 2-D [G*hd, hd] (U_v[g] = rows g*hd..g*hd+hd-1); each basis has its\n"
    "                  vectors in columns, like U.npy\n"
    "  --signs S.npy   down-proj only, optional: i8 [I], entries +1/-1 (randomized Hadamard)\n"
    "parameters\n"
    "  --side S        input | output | v-proj | o-proj | down-proj\n"
    "  --kv-heads G    v-proj, o-proj: KV heads (1..65536)\n"
    "  --head-dim hd   v-proj, o-proj: head dimension (1..16384)\n"
    "  --heads H       o-proj: query heads, a multiple of G (1..65536)\n"
    "  --out-dtype T   f32 (default) or f16 (the fp32 result rounded once, nearest-even)\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR)\n"
    "  w.npy           [N, K] like W, f32 or f16: the fused weight\n"
    "errors (exit 1, nothing written): U not square, U's order not matching W's side, U or W not\n"
    "        2-D / 3-D as above, NaN/Inf in W or U, H not a multiple of G, I not a supported\n"
    "        Hadamard size (down-proj), signs not +1/-1 or not [I], n or hd > 16384, a fused value\n"
    "        that could overflow fp32 or does overflow f16, malformed files. Bad usage: exit 2.\n";

typedef enum { SIDE_INPUT, SIDE_OUTPUT, SIDE_V, SIDE_O, SIDE_DOWN } fuse_side;

/* First NaN/Inf of an fp32 matrix [rows][cols]: one error line, CLI_FAIL. */
static int check_finite_f32(const char *S, const char *opt, const char *path, const float *a, int64_t rows,
                            int64_t cols) {
  for (int64_t i = 0; i < rows * cols; i++)
    if (!isfinite(a[i]))
      return cli_error(S, CLI_FAIL, "%s %s: W[%lld][%lld] is NaN or Inf", opt, path, (long long)(i / cols),
                       (long long)(i % cols));
  return CLI_OK;
}

/* U as doubles (f64 as read, f32 widened exactly), checked finite. */
static double *load_basis(const char *S, const char *path, const resq_array *u) {
  int64_t n = resq_array_numel(u);
  double *d = (double *)malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  if (!d) {
    cli_error(S, CLI_FAIL, "out of memory for --u %s", path);
    return NULL;
  }
  const int64_t last = u->shape[u->ndim - 1];
  for (int64_t i = 0; i < n; i++) {
    d[i] = u->dtype == RESQ_DTYPE_F64 ? ((const double *)u->data)[i] : (double)((const float *)u->data)[i];
    if (!isfinite(d[i])) {
      if (u->ndim == 3)
        cli_error(S, CLI_FAIL, "--u %s: U[%lld][%lld][%lld] is NaN or Inf", path, (long long)(i / (last * last)),
                  (long long)(i / last % last), (long long)(i % last));
      else
        cli_error(S, CLI_FAIL, "--u %s: U[%lld][%lld] is NaN or Inf", path, (long long)(i / last),
                  (long long)(i % last));
      free(d);
      return NULL;
    }
  }
  return d;
}

int cli_fuse(int argc, char **argv) {
  const char *S = "fuse";
  const char *wpath = NULL, *upath = NULL, *side_s = NULL, *spath = NULL, *out = NULL, *odt = NULL;
  int64_t H = 0, G = 0, hd = 0;
  cli_opt opts[] = {
      {"w", OPT_STR, &wpath, 1, 0, 0, 0},
      {"u", OPT_STR, &upath, 1, 0, 0, 0},
      {"side", OPT_STR, &side_s, 1, 0, 0, 0},
      {"heads", OPT_INT, &H, 0, 1, 65536, 0},
      {"kv-heads", OPT_INT, &G, 0, 1, 65536, 0},
      {"head-dim", OPT_INT, &hd, 0, 1, RESQ_PCA_MAX_D, 0},
      {"signs", OPT_STR, &spath, 0, 0, 0, 0},
      {"out-dtype", OPT_STR, &odt, 0, 0, 0, 0},
      {"out", OPT_STR, &out, 1, 0, 0, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  fuse_side side;
  if (strcmp(side_s, "input") == 0) side = SIDE_INPUT;
  else if (strcmp(side_s, "output") == 0) side = SIDE_OUTPUT;
  else if (strcmp(side_s, "v-proj") == 0) side = SIDE_V;
  else if (strcmp(side_s, "o-proj") == 0) side = SIDE_O;
  else if (strcmp(side_s, "down-proj") == 0) side = SIDE_DOWN;
  else return cli_error(S, CLI_USAGE, "--side must be input, output, v-proj, o-proj or down-proj, not '%s'", side_s);
  if (odt && strcmp(odt, "f16") != 0 && strcmp(odt, "f32") != 0)
    return cli_error(S, CLI_USAGE, "--out-dtype must be f16 or f32, not '%s'", odt);
  const int heads_side = side == SIDE_V || side == SIDE_O;
  if (!heads_side && (H || G || hd))
    return cli_error(S, CLI_USAGE, "--heads, --kv-heads and --head-dim apply to --side v-proj and o-proj only");
  if (heads_side && (!G || !hd))
    return cli_error(S, CLI_USAGE, "--side %s needs --kv-heads and --head-dim", side_s);
  if (side == SIDE_O && !H) return cli_error(S, CLI_USAGE, "--side o-proj needs --heads");
  if (side == SIDE_V && H) return cli_error(S, CLI_USAGE, "--heads applies to --side o-proj only");
  if (spath && side != SIDE_DOWN) return cli_error(S, CLI_USAGE, "--signs applies to --side down-proj only");
  const int out_f16 = odt && strcmp(odt, "f16") == 0;

  resq_array w, u, sg;
  memset(&u, 0, sizeof u);
  memset(&sg, 0, sizeof sg);
  if ((rc = cli_load_float(S, "--w", wpath, &w))) return rc;
  rc = CLI_FAIL;
  float *wf = NULL;
  double *ud = NULL;
  uint16_t *wh = NULL;
  void *work = NULL, *hwork = NULL;
  cli_outset os;
  if (w.ndim != 2) {
    cli_error(S, CLI_FAIL, "--w %s: expected a 2-D [N, K] weight, got %d dimensions", wpath, w.ndim);
    goto done;
  }
  const int64_t N = w.shape[0], K = w.shape[1];
  /* the order n of the basis; the sizes W implies are checked before U is read,
   * so an absurd order is refused before the (up to n^2) basis file is loaded */
  int64_t n = 0;
  const char *nwhat = "";
  switch (side) {
    case SIDE_INPUT: n = K, nwhat = "K (the columns of W)"; break;
    case SIDE_OUTPUT:
    case SIDE_DOWN: n = N, nwhat = "N (the rows of W)"; break;
    case SIDE_V:
    case SIDE_O: n = hd, nwhat = "--head-dim"; break;
  }
  if (side == SIDE_O && H % G != 0) {
    cli_error(S, CLI_FAIL, "--heads %lld is not a multiple of --kv-heads %lld", (long long)H, (long long)G);
    goto done;
  }
  if (side == SIDE_V && N != G * hd) {
    cli_error(S, CLI_FAIL, "--w %s: W has %lld rows, --side v-proj needs G*hd = %lld*%lld = %lld", wpath,
              (long long)N, (long long)G, (long long)hd, (long long)(G * hd));
    goto done;
  }
  if (side == SIDE_O && K != H * hd) {
    cli_error(S, CLI_FAIL, "--w %s: W has %lld columns, --side o-proj needs H*hd = %lld*%lld = %lld", wpath,
              (long long)K, (long long)H, (long long)hd, (long long)(H * hd));
    goto done;
  }
  if (n < 1) {
    cli_error(S, CLI_FAIL, "--w %s: %s is 0: no basis to fuse", wpath, nwhat);
    goto done;
  }
  if (n > RESQ_PCA_MAX_D) {
    cli_error(S, CLI_FAIL, "--w %s: the basis order n = %s = %lld exceeds the maximum %lld; refused before reading --u",
              wpath, nwhat, (long long)n, (long long)RESQ_PCA_MAX_D);
    goto done;
  }
  if (side == SIDE_DOWN && resq_hadamard_factor(K, NULL, NULL)) {
    cli_error(S, CLI_FAIL, "--w %s: the input-side Hadamard of I=%lld columns: %s", wpath, (long long)K,
              resq_last_error());
    goto done;
  }
  if (!(wf = cli_to_f32(&w))) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  resq_array_free(&w);
  if ((rc = check_finite_f32(S, "--w", wpath, wf, N, K))) goto done;
  rc = CLI_FAIL;

  /* the basis */
  {
    resq_status st = resq_npy_read(upath, &u);
    if (st) {
      cli_error(S, CLI_FAIL, "--u: %s", resq_last_error());
      goto done;
    }
  }
  if (u.dtype != RESQ_DTYPE_F64 && u.dtype != RESQ_DTYPE_F32) {
    cli_error(S, CLI_FAIL, "--u %s: dtype %s is not accepted (f64, or f32 widened exactly)", upath,
              resq_dtype_name(u.dtype));
    goto done;
  }
  if (heads_side) {
    const int ok3 = u.ndim == 3 && u.shape[0] == G && u.shape[1] == hd && u.shape[2] == hd;
    const int ok2 = u.ndim == 2 && u.shape[0] == G * hd && u.shape[1] == hd;
    if (!ok3 && !ok2) {
      char got[128];
      int len = snprintf(got, sizeof got, "%d-D [", u.ndim);
      for (int i = 0; i < u.ndim && len < (int)sizeof got - 24; i++)
        len += snprintf(got + len, sizeof got - (size_t)len, "%s%lld", i ? ", " : "", (long long)u.shape[i]);
      snprintf(got + len, sizeof got - (size_t)len, "]");
      cli_error(S, CLI_FAIL, "--u %s: expected the G=%lld value bases as [%lld, %lld, %lld] or [%lld, %lld], got %s",
                upath, (long long)G, (long long)G, (long long)hd, (long long)hd, (long long)(G * hd), (long long)hd,
                got);
      goto done;
    }
  } else {
    if (u.ndim != 2) {
      cli_error(S, CLI_FAIL, "--u %s: expected a 2-D [n, n] basis, got %d dimensions", upath, u.ndim);
      goto done;
    }
    if (u.shape[0] != u.shape[1]) {
      cli_error(S, CLI_FAIL, "--u %s: U [%lld, %lld] is not square", upath, (long long)u.shape[0],
                (long long)u.shape[1]);
      goto done;
    }
    if (u.shape[0] != n) {
      cli_error(S, CLI_FAIL, "--u %s: U is [%lld, %lld] but --side %s needs n = %s = %lld (W is [%lld, %lld])", upath,
                (long long)u.shape[0], (long long)u.shape[1], side_s, nwhat, (long long)n, (long long)N, (long long)K);
      goto done;
    }
  }
  if (!(ud = load_basis(S, upath, &u))) goto done;
  resq_array_free(&u);

  const int8_t *signs = NULL;
  if (spath) {
    if ((rc = cli_load_i8(S, "--signs", spath, &sg))) goto done;
    rc = CLI_FAIL;
    if (sg.ndim != 1 || sg.shape[0] != K) {
      cli_error(S, CLI_FAIL, "--signs %s: shape must be [%lld] (I, the columns of W)", spath, (long long)K);
      goto done;
    }
    signs = (const int8_t *)sg.data;
  }

  const size_t ws = resq_fuse_workspace_size(n);
  const size_t hws = side == SIDE_DOWN ? resq_hadamard_workspace_size(K) : 0;
  work = malloc(ws);
  if (hws) hwork = malloc(hws);
  if (!work || (hws && !hwork)) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  /* in place on the fp32 copy of W (allowed by every resq_fuse_* with ldo == ldw) */
  resq_status st = RESQ_OK;
  switch (side) {
    case SIDE_INPUT: st = resq_fuse_input_f32__ref(N, K, wf, K, ud, K, wf, K, work, ws); break;
    case SIDE_OUTPUT: st = resq_fuse_output_f32__ref(N, K, wf, K, ud, N, wf, K, work, ws); break;
    case SIDE_V: st = resq_fuse_v_proj_f32__ref(G, hd, K, wf, K, ud, wf, K, work, ws); break;
    case SIDE_O: st = resq_fuse_o_proj_f32__ref(N, H, G, hd, wf, K, ud, wf, K, work, ws); break;
    case SIDE_DOWN: st = resq_fuse_down_proj_f32__ref(N, K, wf, K, ud, N, signs, wf, K, work, ws, hwork, hws); break;
  }
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if (out_f16) {
    wh = (uint16_t *)malloc((size_t)(N * K > 0 ? N * K : 1) * sizeof(uint16_t));
    if (!wh) {
      cli_error(S, CLI_FAIL, "out of memory");
      goto done;
    }
    for (int64_t i = 0; i < N * K; i++) {
      wh[i] = resq_f32_to_f16(wf[i]);
      if ((wh[i] & 0x7c00u) == 0x7c00u) { /* finite fp32 in, so all-ones exponent = overflow */
        cli_error(S, CLI_FAIL, "fused W'[%lld][%lld] = %g overflows f16 (use --out-dtype f32)", (long long)(i / K),
                  (long long)(i % K), (double)wf[i]);
        goto done;
      }
    }
  }
  if ((rc = cli_out_open(&os, S, out))) goto done;
  {
    const int64_t sh[2] = {N, K};
    rc = out_f16 ? cli_out_add(&os, "w.npy", RESQ_DTYPE_F16, 2, sh, wh)
                 : cli_out_add(&os, "w.npy", RESQ_DTYPE_F32, 2, sh, wf);
  }
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
done:
  resq_array_free(&w);
  resq_array_free(&u);
  resq_array_free(&sg);
  free(wf);
  free(ud);
  free(wh);
  free(work);
  free(hwork);
  return rc;
}
