/* SPDX-License-Identifier: Apache-2.0
 * resq layer / resq layer-error: the decoder layer of ref/CONTRACT.md
 * section 14 from the command line.
 *   layer        one layer (FP16, fp32, ResQ, QuaRot-style or RTN) on NPY weights
 *                and an NPY input, all or nothing into --out
 *   layer-error  the section-14 layer error of ResQ, QuaRot-style and RTN on the
 *                synthetic LLM-like layer (resq/layer_synth.h): a table on
 *                stdout and optionally a TSV for bench/ */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_stages.h"
#include "cli_util.h"
#include "resq/dtype.h"
#include "resq/layer.h"
#include "resq/layer_prepare.h"
#include "resq/layer_synth.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int parse_double(const char *S, const char *name, const char *v, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || !end || *end || end == v || !isfinite(x) || x < lo || x > hi)
    return cli_error(S, CLI_USAGE, "--%s: '%s' is not a number in [%g, %g]", name, v, lo, hi);
  *out = x;
  return CLI_OK;
}

static int parse_onoff(const char *S, const char *name, const char *v, int *out) {
  if (strcmp(v, "on") == 0) *out = 1;
  else if (strcmp(v, "off") == 0) *out = 0;
  else return cli_error(S, CLI_USAGE, "--%s: '%s' (expected on or off)", name, v);
  return CLI_OK;
}

static int parse_wquant(const char *S, const char *v, resq_layer_wquant *out) {
  if (strcmp(v, "gptq") == 0) *out = RESQ_WQUANT_GPTQ;
  else if (strcmp(v, "rtn") == 0) *out = RESQ_WQUANT_RTN;
  else return cli_error(S, CLI_USAGE, "--wquant: '%s' (expected gptq or rtn)", v);
  return CLI_OK;
}

/* ================================================================== resq layer */

static const char *k_help_layer =
    "usage: resq layer --weights DIR --h H.npy --out DIR [--method fp16|fp32|resq|quarot|rtn]\n"
    "                  [--config NAME | --heads H --kv-heads G [--rope-theta T] [--eps E]]\n"
    "                  [--calib C.npy] [--seed S] [--wquant gptq|rtn] [--w-clip on|off]\n"
    "                  [--high-fraction F] [--int8-down-proj]\n"
    "\n"
    "One Llama decoder layer (ref/CONTRACT.md s.14) on one sequence, causal, positions 0..T-1.\n"
    "  fp16    the FP16 form (the baseline): f16 activations between ops, fp32-accumulated GEMMs\n"
    "  fp32    the unquantized fp32 form (fp32 activations, double-accumulated GEMMs)\n"
    "  resq    the reference pipeline (PCA bases from --calib, Haar rotations from --seed, fusion,\n"
    "          GPTQ/RTN, packing) and then the ResQ form: 4-bit activations with the top 1/8 PCA\n"
    "          subspace in 8 bits, 4/8-bit KV cache, 8-bit K8 key rotation, 4-bit down_proj\n"
    "  quarot  randomized Hadamard instead of the PCA bases, uniform 4 bits everywhere\n"
    "  rtn     no rotation, uniform 4 bits, round-to-nearest weights\n"
    "The quantized forms run on the rotated residual stream h' = h U: the input is mapped with\n"
    "RNE_f16(h U), the output back with h' U^T (double) and rounded to f16.\n"
    "\n"
    "inputs\n"
    "  --weights DIR   the FP16 layer, one NPY per weight (f16; f32 or bf16 values are rounded to f16):\n"
    "                    wq.npy [H*hd, d]  wk.npy [G*hd, d]  wv.npy [G*hd, d]  wo.npy [d, H*hd]\n"
    "                    wg.npy [I, d] (gate)  wu.npy [I, d] (up)  wd.npy [d, I] (down)\n"
    "                    ln1.npy [d]  ln2.npy [d]  RMSNorm weights before attention / MLP (f32|f16|bf16)\n"
    "                  (nn.Linear layout: y = x W^T). `resq layer-error --dump DIR` writes such a DIR\n"
    "  --h H.npy       [T, d] or [1, T, d] residual stream entering the layer (f16; f32/bf16 rounded to f16)\n"
    "  --calib C.npy   calibration inputs of the layer: [B, T', d] = B sequences, or [T', d] = one\n"
    "                  sequence (f16; f32/bf16 rounded). Needed by resq, and by quarot with gptq\n"
    "parameters\n"
    "  --method M      fp16 (default) | fp32 | resq | quarot | rtn\n"
    "  --config NAME   test | llama3-8b | llama2-7b | llama3-70b: heads, KV heads, RoPE theta, eps\n"
    "                  (the weight shapes must match it); otherwise --heads H --kv-heads G and\n"
    "  --rope-theta T  (default 10000)   --eps E  RMSNorm epsilon (default 1e-5)\n"
    "  --seed S        rotation seed (ResQ Haar draws, QuaRot signs; default 0)\n"
    "  --wquant W      gptq (default) | rtn: weight quantization of resq/quarot (rtn: always rtn)\n"
    "  --w-clip on|off MSE clip search of the weight scales (default on, as upstream's scripts)\n"
    "  --high-fraction F  resq: fraction of 8-bit channels, in [0, 1] (default 0.125)\n"
    "  --int8-down-proj   8-bit down_proj input and weight (upstream --int8_down_proj)\n"
    "  --out DIR       output directory (created if missing)\n"
    "outputs (in DIR)\n"
    "  h_out.npy        f16 [T, d]  the layer's output in the original basis\n"
    "  h_out_basis.npy  f16 [T, d]  resq/quarot/rtn: the output in the layer's basis (what the\n"
    "                               q4q8 forward wrote)\n"
    "  U.npy            f64 [d, d]  resq/quarot: the residual basis (h' = h U)\n"
    "  err.npy          f64 [1]     fp32/resq/quarot/rtn: the s.14 error against the FP16 form on\n"
    "                               the same weights and input: ||out - fp16||_F / ||fp16 - h||_F\n"
    "stdout: one line with the method, T and the error.\n"
    "errors (exit 1, nothing written): a missing weight file, shapes that do not fit together or\n"
    "        the config, NaN/Inf anywhere, an intermediate that overflows f16, a size the Hadamard\n"
    "        does not support (resq/quarot need I, quarot also d and hd), no calibration data.\n";

typedef struct {
  resq_array a[9];
  uint16_t *w16[7];
  float *ln[2];
} weight_set;

static const char *const k_wnames[9] = {"wq", "wk", "wv", "wo", "wg", "wu", "wd", "ln1", "ln2"};

static void weights_free(weight_set *ws) {
  for (int i = 0; i < 9; i++) resq_array_free(&ws->a[i]);
  for (int i = 0; i < 7; i++) free(ws->w16[i]);
  for (int i = 0; i < 2; i++) free(ws->ln[i]);
  memset(ws, 0, sizeof *ws);
}

/* An array of float values as f16 (RNE; overflow is an error). */
static uint16_t *to_f16(const char *S, const char *what, const resq_array *a) {
  const int64_t n = resq_array_numel(a);
  uint16_t *o = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
  if (!o) {
    cli_error(S, CLI_FAIL, "out of memory for %s", what);
    return NULL;
  }
  if (a->dtype == RESQ_DTYPE_F16) {
    memcpy(o, a->data, sizeof(uint16_t) * (size_t)n);
  } else {
    float *f = cli_to_f32(a);
    if (!f) {
      free(o);
      cli_error(S, CLI_FAIL, "out of memory for %s", what);
      return NULL;
    }
    for (int64_t i = 0; i < n; i++) o[i] = resq_f32_to_f16(f[i]);
    free(f);
  }
  for (int64_t i = 0; i < n; i++)
    if ((o[i] & 0x7c00u) == 0x7c00u) {
      free(o);
      cli_error(S, CLI_FAIL, "%s: element %lld is NaN or Inf (or overflows f16)", what, (long long)i);
      return NULL;
    }
  return o;
}

static int load_weights(const char *S, const char *dir, weight_set *ws, int64_t *dims /* d qd kd I */) {
  char path[4096];
  for (int i = 0; i < 9; i++) {
    snprintf(path, sizeof path, "%s/%s.npy", dir, k_wnames[i]);
    int rc = cli_load_float(S, k_wnames[i], path, &ws->a[i]);
    if (rc) return rc;
  }
  for (int i = 0; i < 7; i++)
    if (ws->a[i].ndim != 2) return cli_error(S, CLI_FAIL, "%s/%s.npy: expected a 2-D weight", dir, k_wnames[i]);
  for (int i = 7; i < 9; i++)
    if (ws->a[i].ndim != 1) return cli_error(S, CLI_FAIL, "%s/%s.npy: expected a 1-D [d] vector", dir, k_wnames[i]);
  const int64_t d = ws->a[0].shape[1], qd = ws->a[0].shape[0], kd = ws->a[1].shape[0], I = ws->a[4].shape[0];
  const int64_t want[9][2] = {{qd, d}, {kd, d}, {kd, d}, {d, qd}, {I, d}, {I, d}, {d, I}, {d, 0}, {d, 0}};
  for (int i = 0; i < 9; i++) {
    int bad = ws->a[i].shape[0] != want[i][0] || (i < 7 && ws->a[i].shape[1] != want[i][1]);
    if (bad) {
      char got[64], exp[64];
      if (i < 7) {
        snprintf(got, sizeof got, "[%lld, %lld]", (long long)ws->a[i].shape[0], (long long)ws->a[i].shape[1]);
        snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)want[i][0], (long long)want[i][1]);
      } else {
        snprintf(got, sizeof got, "[%lld]", (long long)ws->a[i].shape[0]);
        snprintf(exp, sizeof exp, "[%lld]", (long long)want[i][0]);
      }
      return cli_error(S, CLI_FAIL, "%s/%s.npy: shape %s, want %s for the layer's sizes (d %lld and H*hd %lld from wq.npy, "
                       "G*hd %lld from wk.npy, I %lld from wg.npy)", dir, k_wnames[i], got, exp, (long long)d,
                       (long long)qd, (long long)kd, (long long)I);
    }
  }
  for (int i = 0; i < 7; i++) {
    snprintf(path, sizeof path, "%s/%s.npy", dir, k_wnames[i]);
    if (!(ws->w16[i] = to_f16(S, path, &ws->a[i]))) return CLI_FAIL;
    resq_array_free(&ws->a[i]);
  }
  for (int i = 0; i < 2; i++) {
    if (!(ws->ln[i] = cli_to_f32(&ws->a[7 + i]))) return cli_error(S, CLI_FAIL, "out of memory");
    for (int64_t j = 0; j < d; j++)
      if (!isfinite(ws->ln[i][j])) return cli_error(S, CLI_FAIL, "%s/%s.npy: element %lld is NaN or Inf", dir, k_wnames[7 + i], (long long)j);
  }
  dims[0] = d, dims[1] = qd, dims[2] = kd, dims[3] = I;
  return CLI_OK;
}

int cli_layer(int argc, char **argv) {
  const char *S = "layer";
  const char *wdir = NULL, *hpath = NULL, *out = NULL, *method_s = "fp16", *cfg_s = NULL, *calib_s = NULL;
  const char *theta_s = NULL, *eps_s = NULL, *wq_s = "gptq", *clip_s = "on", *hf_s = NULL;
  int64_t heads = 0, kvh = 0, seed = 0;
  int i8d = 0;
  cli_opt opts[] = {
      {"weights", OPT_STR, &wdir, 1, 0, 0, 0},      {"h", OPT_STR, &hpath, 1, 0, 0, 0},
      {"out", OPT_STR, &out, 1, 0, 0, 0},           {"method", OPT_STR, &method_s, 0, 0, 0, 0},
      {"config", OPT_STR, &cfg_s, 0, 0, 0, 0},      {"heads", OPT_INT, &heads, 0, 1, 1 << 16, 0},
      {"kv-heads", OPT_INT, &kvh, 0, 1, 1 << 16, 0}, {"rope-theta", OPT_STR, &theta_s, 0, 0, 0, 0},
      {"eps", OPT_STR, &eps_s, 0, 0, 0, 0},         {"calib", OPT_STR, &calib_s, 0, 0, 0, 0},
      {"seed", OPT_INT, &seed, 0, 0, INT64_MAX, 0}, {"wquant", OPT_STR, &wq_s, 0, 0, 0, 0},
      {"w-clip", OPT_STR, &clip_s, 0, 0, 0, 0},     {"high-fraction", OPT_STR, &hf_s, 0, 0, 0, 0},
      {"int8-down-proj", OPT_FLAG, &i8d, 0, 0, 0, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help_layer, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  /* ---- parameters (usage errors before any file is read) */
  int form = -1; /* 0 fp16, 1 fp32, 2 prepared */
  resq_layer_method method = RESQ_LAYER_RESQ;
  if (strcmp(method_s, "fp16") == 0) form = 0;
  else if (strcmp(method_s, "fp32") == 0) form = 1;
  else if (resq_layer_method_from_name(method_s, &method) == RESQ_OK) form = 2;
  else return cli_error(S, CLI_USAGE, "--method: '%s' (expected fp16, fp32, resq, quarot or rtn)", method_s);
  resq_layer_prepare_params pp = resq_layer_prepare_default(method);
  pp.seed = (uint64_t)seed;
  pp.int8_down_proj = i8d;
  if ((rc = parse_wquant(S, wq_s, &pp.wquant)) || (rc = parse_onoff(S, "w-clip", clip_s, &pp.w_clip))) return rc;
  if (method == RESQ_LAYER_RTN) pp.wquant = RESQ_WQUANT_RTN;
  if (hf_s && (rc = parse_double(S, "high-fraction", hf_s, 0.0, 1.0, &pp.high_fraction))) return rc;
  resq_layer_config c;
  memset(&c, 0, sizeof c);
  if (cfg_s) {
    if (heads || kvh || theta_s || eps_s)
      return cli_error(S, CLI_USAGE, "--config and --heads/--kv-heads/--rope-theta/--eps are exclusive");
    if (resq_layer_config_named(cfg_s, &c)) return cli_error(S, CLI_USAGE, "--config: %s", resq_last_error());
  } else {
    if (!heads || !kvh) return cli_error(S, CLI_USAGE, "give --config NAME or --heads H --kv-heads G");
    double th = 10000.0, ep = 1e-5;
    if (theta_s && (rc = parse_double(S, "rope-theta", theta_s, 1.0, 1e12, &th))) return rc;
    if (eps_s && (rc = parse_double(S, "eps", eps_s, 1e-30, 1.0, &ep))) return rc;
    c.H = heads, c.G = kvh, c.rope_theta = th, c.eps = (float)ep;
  }
  const int need_calib = form == 2 && (method == RESQ_LAYER_RESQ || pp.wquant == RESQ_WQUANT_GPTQ);
  if (need_calib && !calib_s) return cli_error(S, CLI_USAGE, "--method %s needs --calib (calibration inputs)", method_s);

  /* ---- inputs */
  weight_set ws;
  memset(&ws, 0, sizeof ws);
  resq_array ha, ca;
  memset(&ha, 0, sizeof ha), memset(&ca, 0, sizeof ca);
  uint16_t *h = NULL, *cal = NULL, *y = NULL, *yb = NULL;
  double *yd = NULL;
  void *work = NULL;
  resq_layer_prepared P;
  memset(&P, 0, sizeof P);
  int64_t dims[4] = {0, 0, 0, 0};
  rc = CLI_FAIL;
  if (load_weights(S, wdir, &ws, dims)) goto done;
  const int64_t d = dims[0], qd = dims[1], kd = dims[2], I = dims[3];
  if (cfg_s) {
    if (c.d != d || c.H * c.hd != qd || c.G * c.hd != kd || c.I != I) {
      cli_error(S, CLI_FAIL, "--config %s (d %lld, q %lld, kv %lld, I %lld) does not match the weights (d %lld, q %lld, "
                "kv %lld, I %lld)", cfg_s, (long long)c.d, (long long)(c.H * c.hd), (long long)(c.G * c.hd),
                (long long)c.I, (long long)d, (long long)qd, (long long)kd, (long long)I);
      goto done;
    }
  } else {
    if (qd % c.H || kd % c.G || qd / c.H != kd / c.G) {
      cli_error(S, CLI_FAIL, "--heads %lld --kv-heads %lld do not divide wq's %lld and wk's %lld rows into equal heads",
                (long long)c.H, (long long)c.G, (long long)qd, (long long)kd);
      goto done;
    }
    c.d = d, c.hd = qd / c.H, c.I = I;
  }
  if (resq_layer_config_check(&c)) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if (cli_load_float(S, "--h", hpath, &ha)) goto done;
  if (!((ha.ndim == 2 || (ha.ndim == 3 && ha.shape[0] == 1)) && ha.shape[ha.ndim - 1] == d)) {
    cli_error(S, CLI_FAIL, "--h %s: expected [T, %lld] or [1, T, %lld]", hpath, (long long)d, (long long)d);
    goto done;
  }
  const int64_t T = ha.shape[ha.ndim - 2];
  if (T < 1) {
    cli_error(S, CLI_FAIL, "--h %s: no tokens", hpath);
    goto done;
  }
  if (!(h = to_f16(S, "--h", &ha))) goto done;
  int64_t nseq = 0, Tc = 0;
  if (calib_s && form == 2) {
    if (cli_load_float(S, "--calib", calib_s, &ca)) goto done;
    if (!((ca.ndim == 2 || ca.ndim == 3) && ca.shape[ca.ndim - 1] == d)) {
      cli_error(S, CLI_FAIL, "--calib %s: expected [B, T, %lld] or [T, %lld]", calib_s, (long long)d, (long long)d);
      goto done;
    }
    nseq = ca.ndim == 3 ? ca.shape[0] : 1, Tc = ca.shape[ca.ndim - 2];
    if (!(cal = to_f16(S, "--calib", &ca))) goto done;
    resq_array_free(&ca);
  }
  const resq_layer_fp16 w16 = {ws.w16[0], ws.w16[1], ws.w16[2], ws.w16[3], ws.w16[4], ws.w16[5], ws.w16[6], ws.ln[0], ws.ln[1]};

  /* ---- run */
  const int64_t n = T * d;
  y = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
  yb = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
  yd = (double *)malloc(sizeof(double) * (size_t)n);
  if (!y || !yb || !yd) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  double err = 0.0;
  resq_status st = RESQ_OK;
  if (form == 0) {
    size_t wsz = resq_layer_fp16_workspace_size(&c, T);
    if (!(work = malloc(wsz))) {
      cli_error(S, CLI_FAIL, "out of memory for the workspace (%zu bytes)", wsz);
      goto done;
    }
    st = resq_layer_fp16_forward__ref(&c, &w16, T, h, y, work, wsz);
  } else if (form == 1) {
    /* the fp32 form on the given weights (widened exactly, gammas in RMSNorm) */
    float *wf[7] = {0};
    const int64_t nw[7] = {qd * d, kd * d, kd * d, d * qd, I * d, I * d, d * I};
    int ok = 1;
    for (int i = 0; i < 7 && ok; i++)
      if (!(wf[i] = (float *)malloc(sizeof(float) * (size_t)nw[i]))) ok = 0;
      else resq_f16_to_f32_n(ws.w16[i], wf[i], (size_t)nw[i]);
    float *x = ok ? (float *)malloc(sizeof(float) * (size_t)n) : NULL;
    if (ok && x) {
      const resq_layer_f32 w32 = {wf[0], wf[1], wf[2], wf[3], wf[4], wf[5], wf[6], ws.ln[0], ws.ln[1], 0};
      size_t wsz = resq_layer_f32_workspace_size(&c, T);
      work = malloc(wsz);
      resq_f16_to_f32_n(h, x, (size_t)n);
      st = work ? resq_layer_f32_forward__ref(&c, &w32, T, x, x, NULL, work, wsz) : RESQ_ERR_NOMEM;
      for (int64_t i = 0; i < n && !st; i++) yd[i] = x[i];
      if (!st) st = resq_layer_error_f32_form_f64__ref(&c, &w16, &w32, T, h, &err);
    } else {
      st = resq_fail(RESQ_ERR_NOMEM, "out of memory for the fp32 weights");
    }
    free(x);
    for (int i = 0; i < 7; i++) free(wf[i]);
  } else {
    double t0 = now_s();
    st = resq_layer_prepare_f32__ref(&c, &w16, nseq, Tc, cal, &pp, &P);
    if (!st) {
      fprintf(stderr, "resq layer: %s prepared in %.1f s\n", method_s, now_s() - t0);
      size_t wsz = resq_layer_q4q8_workspace_size(&c, T);
      uint16_t *hr = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
      work = malloc(wsz);
      if (!hr || !work) st = resq_fail(RESQ_ERR_NOMEM, "out of memory for the forward pass");
      if (!st) st = resq_layer_to_basis__ref(&P, T, h, hr);
      if (!st) st = resq_layer_q4q8_forward__ref(&c, &P.L, T, hr, yb, work, wsz);
      if (!st) st = resq_layer_from_basis__ref(&P, T, yb, yd);
      free(hr);
      /* the s.14 error from this output and one FP16 pass (what resq_layer_error_f64__ref computes) */
      size_t w16s = resq_layer_fp16_workspace_size(&c, T);
      void *w16k = st ? NULL : malloc(w16s);
      if (!st && !w16k) st = resq_fail(RESQ_ERR_NOMEM, "out of memory for the FP16 pass");
      if (!st) st = resq_layer_fp16_forward__ref(&c, &w16, T, h, y, w16k, w16s);
      free(w16k);
      if (!st) {
        double num = 0.0, den = 0.0;
        for (int64_t i = 0; i < n; i++) {
          double r = resq_f16_to_f32(y[i]), a = yd[i] - r, b2 = r - resq_f16_to_f32(h[i]);
          num += a * a, den += b2 * b2;
        }
        if (!(den > 0.0)) st = resq_fail(RESQ_ERR_DEGENERATE, "layer error: the FP16 layer's update is zero");
        else err = sqrt(num / den);
      }
    }
  }
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  if (form != 0)
    for (int64_t i = 0; i < n; i++) {
      float f = (float)yd[i];
      if (!(fabsf(resq_round_f16(f)) <= 65504.0f)) {
        cli_error(S, CLI_FAIL, "the output overflows f16 at token %lld channel %lld", (long long)(i / d), (long long)(i % d));
        goto done;
      }
      y[i] = resq_f32_to_f16(f);
    }
  cli_outset os;
  if ((rc = cli_out_open(&os, S, out))) goto done;
  int64_t shTd[2] = {T, d}, shdd[2] = {d, d}, sh1[1] = {1};
  rc = cli_out_add(&os, "h_out.npy", RESQ_DTYPE_F16, 2, shTd, y);
  if (!rc && form == 2) rc = cli_out_add(&os, "h_out_basis.npy", RESQ_DTYPE_F16, 2, shTd, yb);
  if (!rc && form == 2 && P.U) rc = cli_out_add(&os, "U.npy", RESQ_DTYPE_F64, 2, shdd, P.U);
  if (!rc && form != 0) rc = cli_out_add(&os, "err.npy", RESQ_DTYPE_F64, 1, sh1, &err);
  if (!rc) rc = cli_out_commit(&os);
  else cli_out_abort(&os);
  if (!rc) {
    if (form == 0) printf("layer: fp16, %lld tokens\n", (long long)T);
    else printf("layer: %s, %lld tokens, error vs fp16 %.6f\n", method_s, (long long)T, err);
  }
done:
  weights_free(&ws);
  resq_array_free(&ha), resq_array_free(&ca);
  resq_layer_prepared_free(&P);
  free(h), free(cal), free(y), free(yb), free(yd), free(work);
  return rc;
}

/* ================================================================== resq layer-error */

static const char *k_help_error =
    "usage: resq layer-error [--config test|llama3-8b|llama2-7b|llama3-70b] [--tokens T]\n"
    "                        [--calib-seqs N] [--eval-seqs E] [--seed S] [--wquant gptq|rtn]\n"
    "                        [--w-clip on|off] [--methods resq,quarot,rtn] [--tsv FILE [--append]]\n"
    "                        [--outliers N] [--outlier-lo X] [--outlier-hi Y] [--rank R]\n"
    "                        [--high-fraction F] [--int8-down-proj] [--dump DIR]\n"
    "\n"
    "The layer error of ref/CONTRACT.md s.14 on the synthetic LLM-like layer of resq/layer_synth.h\n"
    "(f16 weights; residual-stream inputs with a few outlier channels 50-1000x the typical one and\n"
    "heavy tails):\n"
    "    err = ||h_out,method U^T - h_out,FP16||_F / ||h_out,FP16 - h_in||_F\n"
    "over all evaluation tokens: the error of the layer's update relative to its size. Methods:\n"
    "  fp32    the unquantized fp32 form on the same weights (the FP16 baseline's own rounding floor)\n"
    "  resq    PCA bases from the calibration sequences, 8-bit top 1/8 subspace, GPTQ, K8, 4/8 KV\n"
    "  quarot  randomized Hadamard, uniform 4 bits (activations, weights, KV), same GPTQ\n"
    "  rtn     no rotation, uniform 4 bits, round-to-nearest weights\n"
    "Calibration sequences (stream 0) and evaluation sequences (stream 1) never share a draw.\n"
    "\n"
    "parameters\n"
    "  --config NAME   test (default: d 256, H 4, G 2, hd 64, I 688) | llama3-8b | llama2-7b | llama3-70b\n"
    "  --tokens T      tokens per sequence (default 64)\n"
    "  --calib-seqs N  calibration sequences (default 8)     --eval-seqs E  evaluation sequences (default 1)\n"
    "  --seed S        the synthetic layer's seed and the rotation seed (default 0)\n"
    "  --wquant W      gptq (default) | rtn for resq and quarot (rtn always uses rtn)\n"
    "  --w-clip on|off MSE clip search of every weight scale (default on). At llama3-8b size the\n"
    "                  search costs about 10 minutes per method; GPTQ (double, O(K^3), K = 14336 for\n"
    "                  down_proj) tens of minutes per method\n"
    "  --methods LIST  comma-separated subset of fp32,resq,quarot,rtn (default all four)\n"
    "  --tsv FILE      write the table as TSV (header + one row per method); --append adds rows to\n"
    "                  an existing FILE without a header. Columns: method config d I tokens calib_seqs\n"
    "                  eval_seqs seed wquant w_clip outliers outlier_lo outlier_hi high_fraction err\n"
    "                  prepare_s forward_s\n"
    "  --outliers N  --outlier-lo X  --outlier-hi Y  --rank R   the synthetic activation model\n"
    "                  (defaults: max(2, d/512) outliers, 50, 1000, rank d/4)\n"
    "  --high-fraction F  resq's 8-bit fraction (default 0.125)   --int8-down-proj  8-bit down_proj\n"
    "  --dump DIR      also write the synthetic layer as `resq layer` inputs: wq wk wv wo wg wu wd\n"
    "                  (f16) ln1 ln2 (f32), h.npy (evaluation sequence 0, f16 [T, d]) and\n"
    "                  calib.npy (f16 [N, T, d])\n"
    "stdout: the table (and per weight the GPTQ/RTN objective ratio on the calibration Hessian);\n"
    "stderr: progress of the long phases.\n";

typedef struct {
  int64_t nb;
  double num, den;
} acc_err;

int cli_layer_error(int argc, char **argv) {
  const char *S = "layer-error";
  const char *cfg_s = "test", *wq_s = "gptq", *clip_s = "on", *methods_s = "fp32,resq,quarot,rtn", *tsv = NULL;
  const char *olo_s = NULL, *ohi_s = NULL, *hf_s = NULL, *dump = NULL;
  int64_t T = 64, ncal = 8, nev = 1, seed = 0, nout = -1, rank = 0;
  int append = 0, i8d = 0;
  cli_opt opts[] = {
      {"config", OPT_STR, &cfg_s, 0, 0, 0, 0},        {"tokens", OPT_INT, &T, 0, 1, 1 << 20, 0},
      {"calib-seqs", OPT_INT, &ncal, 0, 0, 1 << 20, 0}, {"eval-seqs", OPT_INT, &nev, 0, 1, 1 << 20, 0},
      {"seed", OPT_INT, &seed, 0, 0, INT64_MAX, 0},   {"wquant", OPT_STR, &wq_s, 0, 0, 0, 0},
      {"w-clip", OPT_STR, &clip_s, 0, 0, 0, 0},       {"methods", OPT_STR, &methods_s, 0, 0, 0, 0},
      {"tsv", OPT_STR, &tsv, 0, 0, 0, 0},             {"append", OPT_FLAG, &append, 0, 0, 0, 0},
      {"outliers", OPT_INT, &nout, 0, 0, 1 << 20, 0}, {"outlier-lo", OPT_STR, &olo_s, 0, 0, 0, 0},
      {"outlier-hi", OPT_STR, &ohi_s, 0, 0, 0, 0},    {"rank", OPT_INT, &rank, 0, 1, 1 << 20, 0},
      {"high-fraction", OPT_STR, &hf_s, 0, 0, 0, 0},  {"int8-down-proj", OPT_FLAG, &i8d, 0, 0, 0, 0},
      {"dump", OPT_STR, &dump, 0, 0, 0, 0},
  };
  int rc = cli_parse(S, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc < 0) {
    fputs(k_help_error, stdout);
    return CLI_OK;
  }
  if (rc) return rc;
  resq_layer_config c;
  if (resq_layer_config_named(cfg_s, &c)) return cli_error(S, CLI_USAGE, "--config: %s", resq_last_error());
  resq_layer_synth_params sp = resq_layer_synth_default();
  sp.n_outliers = nout, sp.rank = rank;
  if (olo_s && (rc = parse_double(S, "outlier-lo", olo_s, 1.0, 8000.0, &sp.outlier_lo))) return rc;
  if (ohi_s && (rc = parse_double(S, "outlier-hi", ohi_s, 1.0, 8000.0, &sp.outlier_hi))) return rc;
  if (resq_layer_synth_check(&sp)) return cli_error(S, CLI_USAGE, "%s", resq_last_error());
  resq_layer_wquant wquant = RESQ_WQUANT_GPTQ;
  int wclip = 1;
  double hf = 0.125;
  if ((rc = parse_wquant(S, wq_s, &wquant)) || (rc = parse_onoff(S, "w-clip", clip_s, &wclip))) return rc;
  if (hf_s && (rc = parse_double(S, "high-fraction", hf_s, 0.0, 1.0, &hf))) return rc;
  if (append && !tsv) return cli_error(S, CLI_USAGE, "--append needs --tsv FILE");
  int want[4] = {0, 0, 0, 0}; /* fp32, resq, quarot, rtn */
  {
    char buf[256];
    if (strlen(methods_s) >= sizeof buf) return cli_error(S, CLI_USAGE, "--methods: too long");
    strcpy(buf, methods_s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
      resq_layer_method m;
      if (strcmp(tok, "fp32") == 0) want[0] = 1;
      else if (resq_layer_method_from_name(tok, &m) == RESQ_OK) want[1 + (int)m] = 1;
      else return cli_error(S, CLI_USAGE, "--methods: unknown method '%s' (fp32, resq, quarot, rtn)", tok);
    }
  }
  if ((want[1] || (want[2] && wquant == RESQ_WQUANT_GPTQ)) && ncal < 1)
    return cli_error(S, CLI_USAGE, "--calib-seqs 0: resq (and quarot with gptq) need calibration sequences");
  const int64_t d = c.d, n = T * d;
  if ((double)n * (double)(ncal + nev) * 2.0 > 8e9) return cli_error(S, CLI_USAGE, "the token arrays would exceed 8 GB");

  resq_layer_synth syn;
  memset(&syn, 0, sizeof syn);
  uint16_t *cal = NULL, *ev = NULL, *y16 = NULL, *hr = NULL, *yr = NULL;
  double *ym = NULL;
  void *work = NULL;
  float *wf[7] = {0};
  FILE *tf = NULL;
  char tmp_tsv[4200] = "";
  rc = CLI_FAIL;
  double t0 = now_s();
  resq_status st = resq_layer_synth_init(&syn, &c, &sp, (uint64_t)seed);
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  fprintf(stderr, "resq layer-error: synthetic %s layer made in %.1f s\n", cfg_s, now_s() - t0);
  cal = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)(n * (ncal > 0 ? ncal : 1)));
  ev = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)(n * nev));
  y16 = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)(n * nev));
  hr = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n), yr = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)n);
  ym = (double *)malloc(sizeof(double) * (size_t)n);
  size_t w16s = resq_layer_fp16_workspace_size(&c, T), wqs = resq_layer_q4q8_workspace_size(&c, T),
         w32s = resq_layer_f32_workspace_size(&c, T);
  size_t wsz = w16s > wqs ? w16s : wqs;
  wsz = wsz > w32s ? wsz : w32s;
  work = malloc(wsz);
  if (!cal || !ev || !y16 || !hr || !yr || !ym || !work) {
    cli_error(S, CLI_FAIL, "out of memory");
    goto done;
  }
  for (int64_t s = 0; s < ncal && !st; s++) st = resq_layer_synth_sequence(&syn, RESQ_SYNTH_STREAM_CALIB, (uint64_t)s, T, cal + s * n, d);
  for (int64_t s = 0; s < nev && !st; s++) st = resq_layer_synth_sequence(&syn, RESQ_SYNTH_STREAM_EVAL, (uint64_t)s, T, ev + s * n, d);
  /* the FP16 baseline once per evaluation sequence */
  double tf16 = now_s();
  for (int64_t s = 0; s < nev && !st; s++) st = resq_layer_fp16_forward__ref(&c, &syn.w, T, ev + s * n, y16 + s * n, work, wsz);
  if (st) {
    cli_error(S, CLI_FAIL, "%s", resq_last_error());
    goto done;
  }
  tf16 = now_s() - tf16;
  fprintf(stderr, "resq layer-error: FP16 form on %lld x %lld tokens in %.1f s\n", (long long)nev, (long long)T, tf16);
  if (dump) {
    cli_outset os;
    if ((rc = cli_out_open(&os, S, dump))) goto done;
    rc = CLI_FAIL;
    const int64_t qd = c.H * c.hd, kd = c.G * c.hd, I = c.I;
    const int64_t shp[7][2] = {{qd, d}, {kd, d}, {kd, d}, {d, qd}, {I, d}, {I, d}, {d, I}};
    const uint16_t *wp[7] = {syn.w.wq, syn.w.wk, syn.w.wv, syn.w.wo, syn.w.wg, syn.w.wu, syn.w.wd};
    char name[32];
    int r2 = CLI_OK;
    for (int i = 0; i < 7 && !r2; i++) {
      snprintf(name, sizeof name, "%s.npy", k_wnames[i]);
      r2 = cli_out_add(&os, name, RESQ_DTYPE_F16, 2, shp[i], wp[i]);
    }
    int64_t shd[1] = {d}, shT[2] = {T, d}, shC[3] = {ncal, T, d};
    if (!r2) r2 = cli_out_add(&os, "ln1.npy", RESQ_DTYPE_F32, 1, shd, syn.w.ln1);
    if (!r2) r2 = cli_out_add(&os, "ln2.npy", RESQ_DTYPE_F32, 1, shd, syn.w.ln2);
    if (!r2) r2 = cli_out_add(&os, "h.npy", RESQ_DTYPE_F16, 2, shT, ev);
    if (!r2) r2 = cli_out_add(&os, "calib.npy", RESQ_DTYPE_F16, 3, shC, cal);
    if (!r2) r2 = cli_out_commit(&os);
    else cli_out_abort(&os);
    if (r2) goto done;
  }

  /* ---- methods */
  typedef struct {
    const char *name;
    int ran;
    double err, prep_s, fwd_s;
    double ratio[RESQ_LW_COUNT];
    int have_ratio;
  } row_t;
  row_t rows[4];
  memset(rows, 0, sizeof rows);
  const char *const mnames[4] = {"fp32", "resq", "quarot", "rtn"};
  for (int mi = 0; mi < 4; mi++) {
    rows[mi].name = mnames[mi];
    if (!want[mi]) continue;
    acc_err ae = {0, 0.0, 0.0};
    double tp = 0.0, tfw = 0.0;
    if (mi == 0) {
      const int64_t qd = c.H * c.hd, kd = c.G * c.hd, I = c.I;
      const int64_t nw[7] = {qd * d, kd * d, kd * d, d * qd, I * d, I * d, d * I};
      const uint16_t *wp[7] = {syn.w.wq, syn.w.wk, syn.w.wv, syn.w.wo, syn.w.wg, syn.w.wu, syn.w.wd};
      for (int i = 0; i < 7; i++) {
        if (!(wf[i] = (float *)malloc(sizeof(float) * (size_t)nw[i]))) {
          cli_error(S, CLI_FAIL, "out of memory for the fp32 weights");
          goto done;
        }
        resq_f16_to_f32_n(wp[i], wf[i], (size_t)nw[i]);
      }
      const resq_layer_f32 w32 = {wf[0], wf[1], wf[2], wf[3], wf[4], wf[5], wf[6], syn.w.ln1, syn.w.ln2, 0};
      float *x = (float *)malloc(sizeof(float) * (size_t)n);
      if (!x) {
        cli_error(S, CLI_FAIL, "out of memory");
        goto done;
      }
      double t1 = now_s();
      for (int64_t s = 0; s < nev && !st; s++) {
        resq_f16_to_f32_n(ev + s * n, x, (size_t)n);
        st = resq_layer_f32_forward__ref(&c, &w32, T, x, x, NULL, work, wsz);
        for (int64_t i = 0; i < n && !st; i++) {
          double r = resq_f16_to_f32(y16[s * n + i]), a = (double)x[i] - r, b = r - resq_f16_to_f32(ev[s * n + i]);
          ae.num += a * a, ae.den += b * b;
        }
      }
      tfw = now_s() - t1;
      free(x);
      for (int i = 0; i < 7; i++) free(wf[i]), wf[i] = NULL;
    } else {
      resq_layer_method m = (resq_layer_method)(mi - 1);
      resq_layer_prepare_params pp = resq_layer_prepare_default(m);
      pp.seed = (uint64_t)seed;
      pp.wquant = m == RESQ_LAYER_RTN ? RESQ_WQUANT_RTN : wquant;
      pp.w_clip = wclip;
      pp.high_fraction = hf;
      pp.int8_down_proj = i8d;
      resq_layer_prepared P;
      fprintf(stderr, "resq layer-error: preparing %s (%lld calibration sequences of %lld tokens, weights %s)...\n",
              mnames[mi], (long long)ncal, (long long)T, pp.wquant == RESQ_WQUANT_GPTQ ? "gptq" : "rtn");
      double t1 = now_s();
      st = resq_layer_prepare_f32__ref(&c, &syn.w, ncal, T, cal, &pp, &P);
      tp = now_s() - t1;
      if (st) {
        cli_error(S, CLI_FAIL, "preparing %s: %s", mnames[mi], resq_last_error());
        goto done;
      }
      fprintf(stderr, "resq layer-error: %s prepared in %.1f s (bases %.1f s, Hessians %.1f s, quantization %.1f s)\n",
              mnames[mi], tp, P.info.seconds_basis, P.info.seconds_hessian, P.info.seconds_quant);
      t1 = now_s();
      for (int64_t s = 0; s < nev && !st; s++) {
        st = resq_layer_to_basis__ref(&P, T, ev + s * n, hr);
        if (!st) st = resq_layer_q4q8_forward__ref(&c, &P.L, T, hr, yr, work, wsz);
        if (!st) st = resq_layer_from_basis__ref(&P, T, yr, ym);
        for (int64_t i = 0; i < n && !st; i++) {
          double r = resq_f16_to_f32(y16[s * n + i]), a = ym[i] - r, b = r - resq_f16_to_f32(ev[s * n + i]);
          ae.num += a * a, ae.den += b * b;
        }
      }
      tfw = now_s() - t1;
      if (P.info.obj_rtn[0] >= 0.0) {
        rows[mi].have_ratio = 1;
        for (int i = 0; i < RESQ_LW_COUNT; i++)
          rows[mi].ratio[i] = P.info.obj_rtn[i] > 0.0 ? P.info.obj_gptq[i] / P.info.obj_rtn[i] : NAN;
      }
      resq_layer_prepared_free(&P);
    }
    if (st) {
      cli_error(S, CLI_FAIL, "%s: %s", mnames[mi], resq_last_error());
      goto done;
    }
    if (!(ae.den > 0.0)) {
      cli_error(S, CLI_FAIL, "the FP16 layer's update is zero: the error is undefined");
      goto done;
    }
    rows[mi].ran = 1, rows[mi].err = sqrt(ae.num / ae.den), rows[mi].prep_s = tp, rows[mi].fwd_s = tfw;
    fprintf(stderr, "resq layer-error: %s err %.6f\n", mnames[mi], rows[mi].err);
  }

  /* ---- table */
  const char *wq_name = wquant == RESQ_WQUANT_GPTQ ? "gptq" : "rtn";
  printf("layer-error: config %s (d %lld, H %lld, G %lld, hd %lld, I %lld), synthetic layer seed %lld "
         "(%lld outliers in [%g, %g], rank %lld)\n",
         cfg_s, (long long)d, (long long)c.H, (long long)c.G, (long long)c.hd, (long long)c.I, (long long)seed,
         (long long)syn.p.n_outliers, syn.p.outlier_lo, syn.p.outlier_hi, (long long)syn.p.rank);
  printf("calibration %lld x %lld tokens, evaluation %lld x %lld tokens, weights %s (w_clip %s), FP16 form %.1f s\n",
         (long long)ncal, (long long)T, (long long)nev, (long long)T, wq_name, wclip ? "on" : "off", tf16);
  printf("%-8s %-10s %-11s %-11s %s\n", "method", "err", "prepare_s", "forward_s", "weights");
  for (int mi = 0; mi < 4; mi++) {
    if (!rows[mi].ran) continue;
    const char *wdesc = mi == 0 ? "fp32 (unquantized)" : mi == 3 ? "rtn" : wq_name;
    printf("%-8s %-10.6f %-11.1f %-11.1f %s\n", rows[mi].name, rows[mi].err, rows[mi].prep_s, rows[mi].fwd_s, wdesc);
  }
  for (int mi = 1; mi < 4; mi++)
    if (rows[mi].ran && rows[mi].have_ratio)
      printf("%s GPTQ/RTN objective on the calibration Hessian: q %.3f k %.3f v %.3f o %.3f gate %.3f up %.3f down %.3f\n",
             rows[mi].name, rows[mi].ratio[0], rows[mi].ratio[1], rows[mi].ratio[2], rows[mi].ratio[3],
             rows[mi].ratio[4], rows[mi].ratio[5], rows[mi].ratio[6]);
  if (tsv) {
    FILE *old = append ? fopen(tsv, "r") : NULL;
    int header = !old;
    if (old) fclose(old);
    if (append) {
      tf = fopen(tsv, "a");
    } else {
      snprintf(tmp_tsv, sizeof tmp_tsv, "%s.tmp", tsv);
      tf = fopen(tmp_tsv, "w");
    }
    if (!tf) {
      cli_error(S, CLI_FAIL, "--tsv %s: cannot write: %s", tsv, strerror(errno));
      goto done;
    }
    if (header)
      fprintf(tf, "method\tconfig\td\tI\ttokens\tcalib_seqs\teval_seqs\tseed\twquant\tw_clip\toutliers\toutlier_lo\t"
                  "outlier_hi\thigh_fraction\terr\tprepare_s\tforward_s\n");
    for (int mi = 0; mi < 4; mi++)
      if (rows[mi].ran)
        fprintf(tf, "%s\t%s\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%s\t%s\t%lld\t%g\t%g\t%g\t%.6f\t%.2f\t%.2f\n",
                rows[mi].name, cfg_s, (long long)d, (long long)c.I, (long long)T, (long long)ncal, (long long)nev,
                (long long)seed, mi == 0 ? "none" : mi == 3 ? "rtn" : wq_name, wclip ? "on" : "off",
                (long long)syn.p.n_outliers, syn.p.outlier_lo, syn.p.outlier_hi, mi == 1 ? hf : 0.0, rows[mi].err,
                rows[mi].prep_s, rows[mi].fwd_s);
    int bad = ferror(tf);
    bad |= fclose(tf) != 0;
    tf = NULL;
    if (bad || (!append && rename(tmp_tsv, tsv) != 0)) {
      if (!append) remove(tmp_tsv);
      cli_error(S, CLI_FAIL, "--tsv %s: write failed", tsv);
      goto done;
    }
  }
  rc = CLI_OK;
done:
  if (tf) {
    fclose(tf);
    if (tmp_tsv[0]) remove(tmp_tsv);
  }
  resq_layer_synth_free(&syn);
  for (int i = 0; i < 7; i++) free(wf[i]);
  free(cal), free(ev), free(y16), free(hr), free(yr), free(ym), free(work);
  return rc;
}
