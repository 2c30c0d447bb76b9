/* SPDX-License-Identifier: Apache-2.0
 * resq quant-act / quant-kv: asymmetric mixed 4/8-bit activation quantization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/quant_act.h"

static const char *k_help_act =
    "usage: resq quant-act --x X.npy --out DIR [--r R] [--group G] [--bits-lo 4] [--bits-hi 8]\n"
    "                      [--clip 1.0] [--mode path-a|path-b-bf16]\n"
    "\n"
    "Asymmetric per-token quantization (ref/CONTRACT.md s.3): in each group of G channels the first\n"
    "G-R channels get bits-lo (packed u4) and the last R channels bits-hi (u8), each part with its\n"
    "own fp32 scale and integer zero. G = K (default) is per token (q/k/v/up/gate inputs; R = 0 is\n"
    "the uniform 4-bit down_proj quantizer); G = head_dim is the grouped o_proj input.\n"
    "\n"
    "inputs\n"
    "  --x X.npy       f16 | f32 | bf16 (<V2 or <u2), shape [..., K]; leading axes are flattened\n"
    "                  into M rows\n"
    "parameters\n"
    "  --group G       channels per group, K %% G == 0 (default K)\n"
    "  --r R           hi channels at the end of each group, 0..G (default G/8)\n"
    "  --bits-lo B     1..4 (default 4)      --bits-hi B   1..8 (default 8)\n"
    "  --clip C        clip ratio in (0, 1] applied to min and max (default 1.0)\n"
    "  --mode M        path-a (default, the suite's contract) or path-b-bf16 (upstream's bf16\n"
    "                  per-group quantizer, for bit parity with upstream fake quantization)\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR), ngroups = K/G, lb = ceil((G-R)/2)\n"
    "  q_lo.npy        u8  [M, ngroups*lb]   lo codes, element 2i in the low nibble\n"
    "  q_hi.npy        u8  [M, ngroups*R]    hi codes\n"
    "  scale_lo.npy    f32 [M, ngroups]      zero_lo.npy  i32 [M, ngroups]\n"
    "  scale_hi.npy    f32 [M, ngroups]      zero_hi.npy  i32 [M, ngroups]\n"
    "                  (all zeros for an empty part)\n"
    "  y.npy           f32 [M, K]            dequantized values s*(q-z)\n"
    "  order.npy       i32 [K]               only when G < K: upstream's o_proj column order\n"
    "                                        (all lo columns head-major, then all hi columns)\n"
    "errors: K not divisible by G, NaN/Inf in X, a degenerate scale, malformed files: exit 1,\n"
    "        nothing written.\n";

static const char *k_help_kv =
    "usage: resq quant-kv --x X.npy --head-dim HD --out DIR [--r R] [--bits-lo 4] [--bits-hi 8]\n"
    "                     [--clip 1.0] [--mode path-a|path-b-bf16]\n"
    "\n"
    "Per-head KV-cache quantization (ref/CONTRACT.md s.3-5): every (token, head) vector of HD\n"
    "channels is quantized with its own scales and zeros; its last R channels (default HD/8) at\n"
    "bits-hi. Upstream's K cache is path-a with this split; its V cache is path-b-bf16.\n"
    "\n"
    "inputs\n"
    "  --x X.npy       f16 | f32 | bf16, shape [T, H*HD] or [T, H, HD]\n"
    "parameters\n"
    "  --head-dim HD   channels per head (required)\n"
    "  --r, --bits-lo, --bits-hi, --clip, --mode   as in quant-act\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR), lb = ceil((HD-R)/2)\n"
    "  q_lo.npy  u8 [T, H, lb]    q_hi.npy  u8 [T, H, R]\n"
    "  scale_lo.npy f32 [T, H]    zero_lo.npy i32 [T, H]    scale_hi.npy f32 [T, H]    zero_hi.npy i32 [T, H]\n"
    "  y.npy     f32, same shape as X (dequantized)\n";

typedef struct {
  const char *stage;
  const char *xpath, *out, *mode;
  int64_t group, r, bits_lo, bits_hi, head_dim;
  float clip;
} qargs;

static int run(qargs *a, int kv) {
  const char *S = a->stage;
  resq_array x;
  int rc = cli_load_float(S, "--x", a->xpath, &x);
  if (rc) return rc;
  rc = CLI_FAIL;
  float *xf = NULL, *y = NULL, *s_lo = NULL, *s_hi = NULL;
  uint8_t *q_lo = NULL, *q_hi = NULL;
  int32_t *z_lo = NULL, *z_hi = NULL, *order = NULL;
  cli_outset os;
  int64_t K, M, T = 0, H = 0;
  if (x.ndim < 1) {
    cli_error(S, CLI_FAIL, "--x %s: a 0-d array has no channel axis", a->xpath);
    goto done;
  }
  if (kv) {
    if (x.ndim == 3) {
      if (x.shape[2] != a->head_dim) {
        cli_error(S, CLI_FAIL, "--x %s: last dimension %lld != --head-dim %lld", a->xpath, (long long)x.shape[2],
                  (long long)a->head_dim);
        goto done;
      }
      K = x.shape[1] * x.shape[2];
    } else if (x.ndim == 2) {
      K = x.shape[1];
      if (K % a->head_dim != 0) {
        cli_error(S, CLI_FAIL, "--x %s: %lld channels are not a multiple of --head-dim %lld", a->xpath,
                  (long long)K, (long long)a->head_dim);
        goto done;
      }
    } else {
      cli_error(S, CLI_FAIL, "--x %s: expected [T, H*HD] or [T, H, HD], got %d dimensions", a->xpath, x.ndim);
      goto done;
    }
    T = x.shape[0];
    H = K / a->head_dim;
    M = T;
    a->group = a->head_dim;
  } else {
    K = x.shape[x.ndim - 1];
    M = K > 0 ? resq_array_numel(&x) / K : 0;
    if (a->group <= 0) a->group = K;
  }
  if (K < 1) {
    cli_error(S, CLI_FAIL, "--x %s: zero channels", a->xpath);
    goto done;
  }
  resq_qact_params p = resq_qact_default(K);
  p.group = a->group;
  p.r = a->r >= 0 ? a->r : a->group / 8;
  p.bits_lo = (int)a->bits_lo;
  p.bits_hi = (int)a->bits_hi;
  p.clip = a->clip;
  if (!a->mode || strcmp(a->mode, "path-a") == 0) p.mode = RESQ_QMODE_PATH_A;
  else if (strcmp(a->mode, "path-b-bf16") == 0) p.mode = RESQ_QMODE_PATH_B_BF16;
  else {
    rc = cli_error(S, CLI_USAGE, "--mode must be path-a or path-b-bf16, not '%s'", a->mode);
    goto done;
  }
  resq_qact_layout L;
  if (resq_qact_check(&p, &L)) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  /* y [M, K] f32 is the largest buffer (K >= every packed width); M = 0 still allocates one row */
  if ((rc = cli_check_size(S, "output y", M > 0 ? M : 1, K, sizeof(float)))) goto done;
  rc = CLI_FAIL;
  size_t Mz = (size_t)(M > 0 ? M : 1), G = (size_t)L.ngroups;
  q_lo = (uint8_t *)calloc(Mz * (size_t)(L.lo_bytes ? L.lo_bytes : 1), 1);
  q_hi = (uint8_t *)calloc(Mz * (size_t)(L.hi_bytes ? L.hi_bytes : 1), 1);
  s_lo = (float *)calloc(Mz * G, sizeof(float));
  s_hi = (float *)calloc(Mz * G, sizeof(float));
  z_lo = (int32_t *)calloc(Mz * G, sizeof(int32_t));
  z_hi = (int32_t *)calloc(Mz * G, sizeof(int32_t));
  y = (float *)calloc(Mz * (size_t)K, sizeof(float));
  if (!q_lo || !q_hi || !s_lo || !s_hi || !z_lo || !z_hi || !y) {
    cli_error(S, CLI_FAIL, "out of memory for M=%lld rows of K=%lld", (long long)M, (long long)K);
    goto done;
  }
  resq_qact q = {q_lo, L.lo_bytes, q_hi, L.hi_bytes, s_lo, z_lo, s_hi, z_hi};
  resq_status st;
  if (x.dtype == RESQ_DTYPE_F16) {
    st = resq_quant_act_f16_q4q8__ref(&p, M, (const uint16_t *)x.data, K, &q);
  } else {
    xf = cli_to_f32(&x);
    st = xf ? resq_quant_act_f32_q4q8__ref(&p, M, xf, K, &q) : resq_fail(RESQ_ERR_NOMEM, "out of memory");
  }
  if (!st) st = resq_dequant_act_q4q8_f32__ref(&p, M, &q, y, K);
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if (!kv && p.group < K) {
    order = (int32_t *)malloc((size_t)K * sizeof(int32_t));
    if (!order || resq_oproj_column_order(K / p.group, p.group, p.r, order)) {
      cli_error(S, CLI_FAIL, "cannot build the o_proj column order");
      goto done;
    }
  }
  if ((rc = cli_out_open(&os, S, a->out))) goto done;
  int64_t sh_lo[3], sh_hi[3], sh_s[2];
  int nd;
  if (kv) {
    nd = 3;
    sh_lo[0] = sh_hi[0] = T;
    sh_lo[1] = sh_hi[1] = H;
    sh_lo[2] = L.lo_bytes_per_group;
    sh_hi[2] = p.r;
    sh_s[0] = T;
    sh_s[1] = H;
  } else {
    nd = 2;
    sh_lo[0] = sh_hi[0] = sh_s[0] = M;
    sh_lo[1] = L.lo_bytes;
    sh_hi[1] = L.hi_bytes;
    sh_s[1] = L.ngroups;
  }
  int64_t ysh[RESQ_NPY_MAX_DIM];
  int ynd = x.ndim;
  memcpy(ysh, x.shape, sizeof ysh);
  rc = cli_out_add(&os, "q_lo.npy", RESQ_DTYPE_U8, nd, sh_lo, q_lo);
  if (!rc) rc = cli_out_add(&os, "q_hi.npy", RESQ_DTYPE_U8, nd, sh_hi, q_hi);
  if (!rc) rc = cli_out_add(&os, "scale_lo.npy", RESQ_DTYPE_F32, 2, sh_s, s_lo);
  if (!rc) rc = cli_out_add(&os, "zero_lo.npy", RESQ_DTYPE_I32, 2, sh_s, z_lo);
  if (!rc) rc = cli_out_add(&os, "scale_hi.npy", RESQ_DTYPE_F32, 2, sh_s, s_hi);
  if (!rc) rc = cli_out_add(&os, "zero_hi.npy", RESQ_DTYPE_I32, 2, sh_s, z_hi);
  if (!rc) rc = cli_out_add(&os, "y.npy", RESQ_DTYPE_F32, ynd, ysh, y);
  if (!rc && order) rc = cli_out_add(&os, "order.npy", RESQ_DTYPE_I32, 1, &K, order);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
done:
  resq_array_free(&x);
  free(xf);
  free(y);
  free(q_lo);
  free(q_hi);
  free(s_lo);
  free(s_hi);
  free(z_lo);
  free(z_hi);
  free(order);
  return rc;
}

static int parse_common(const char *stage, int argc, char **argv, qargs *a, int kv, const char *help) {
  memset(a, 0, sizeof *a);
  a->stage = stage;
  a->r = -1;
  a->group = 0;
  a->bits_lo = 4;
  a->bits_hi = 8;
  a->clip = 1.0f;
  cli_opt opts[] = {
      {"x", OPT_STR, &a->xpath, 1, 0, 0, 0},
      {"out", OPT_STR, &a->out, 1, 0, 0, 0},
      {"r", OPT_INT, &a->r, 0, 0, INT32_MAX, 0},
      {"bits-lo", OPT_INT, &a->bits_lo, 0, 1, 4, 0},
      {"bits-hi", OPT_INT, &a->bits_hi, 0, 1, 8, 0},
      {"clip", OPT_FLOAT, &a->clip, 0, 0, 0, 0},
      {"mode", OPT_STR, &a->mode, 0, 0, 0, 0},
      {kv ? "head-dim" : "group", OPT_INT, kv ? &a->head_dim : &a->group, kv, 1, INT32_MAX, 0},
  };
  int rc = cli_parse(stage, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(help, stdout);
    return -1;
  }
  return rc;
}

int cli_quant_act(int argc, char **argv) {
  qargs a;
  int rc = parse_common("quant-act", argc, argv, &a, 0, k_help_act);
  if (rc) return rc < 0 ? CLI_OK : rc;
  return run(&a, 0);
}

int cli_quant_kv(int argc, char **argv) {
  qargs a;
  int rc = parse_common("quant-kv", argc, argv, &a, 1, k_help_kv);
  if (rc) return rc < 0 ? CLI_OK : rc;
  return run(&a, 1);
}
