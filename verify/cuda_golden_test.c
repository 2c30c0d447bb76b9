/* SPDX-License-Identifier: Apache-2.0
 * GPU test: the CUDA backend vs the golden data (golden/MANIFEST.tsv, written by
 * the independent numpy generator), bit for bit:
 *   cuda_golden_test --golden DIR --stage hadamard_f16|quant_act_f16_q4q8|quant_kv_f16_q4q8
 * Path-B quantizer cases (the reference's upstream-parity mode) are not
 * implemented by the CUDA backend and are skipped (counted in the output);
 * Hadamard sizes beyond the backend's documented limits likewise.
 * Exits 77 without a usable GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "golden.h"
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/quant_act.h"
#include "resq_check.h"
#include "resq_gpu.h"

static golden_manifest G;
static int g_skipped;

static int load(const char *stage, const char *c, const char *name, resq_array *a) {
  int rc = golden_read(&G, stage, c, name, a);
  RC_CHECK(rc == 0, "%s/%s: cannot load %s", stage, c, name);
  return rc;
}

static void run_hadamard(const char *c, const char *params) {
  resq_array x, s, y32, y16;
  memset(&s, 0, sizeof s);
  long long n, with_signs = 0;
  if (!RC_CHECK(golden_param_i64(params, "n", &n) == 0, "params lack n")) return;
  golden_param_i64(params, "signs", &with_signs);
  if (resq_hadamard_supported__cuda(n) != RESQ_OK) {
    g_skipped++;
    return;
  }
  if (load("hadamard_f16", c, "x.npy", &x)) return;
  if (with_signs && load("hadamard_f16", c, "signs.npy", &s)) return;
  if (load("hadamard_f16", c, "y_f32.npy", &y32) || load("hadamard_f16", c, "y_f16.npy", &y16)) return;
  int64_t rows = x.ndim == 2 ? x.shape[0] : 1;
  size_t cnt = (size_t)(rows * n);
  rc_note("rows=%lld n=%lld signs=%lld", (long long)rows, n, with_signs);
  float *xf = malloc(sizeof(float) * cnt), *yf = malloc(sizeof(float) * cnt);
  uint16_t *yh = malloc(2 * cnt);
  resq_f16_to_f32_n((const uint16_t *)x.data, xf, cnt);
  float *dxf = dup_h2d(xf, cnt * 4), *dyf = dev_fill(cnt * 4, 0xee);
  uint16_t *dxh = dup_h2d(x.data, cnt * 2), *dyh = dev_fill(cnt * 2, 0xee);
  int8_t *ds = with_signs ? dup_h2d(s.data, (size_t)n) : NULL;
  RC_CHECK(resq_hadamard_f32__cuda(rows, n, dxf, n, dyf, n, ds, NULL, 0) == RESQ_OK, "f32: %s", resq_last_error());
  RC_CHECK(resq_hadamard_f16__cuda(rows, n, dxh, n, dyh, n, ds, NULL, 0) == RESQ_OK, "f16: %s", resq_last_error());
  d2h_sync(yf, dyf, cnt * 4);
  d2h_sync(yh, dyh, cnt * 2);
  rc_equal_f32_bits(yf, (const float *)y32.data, cnt, "y_f32");
  rc_equal_u16(yh, (const uint16_t *)y16.data, cnt, "y_f16");
  resq_cuda_free(dxf), resq_cuda_free(dyf), resq_cuda_free(dxh), resq_cuda_free(dyh), resq_cuda_free(ds);
  free(xf), free(yf), free(yh);
  resq_array_free(&x), resq_array_free(&s), resq_array_free(&y32), resq_array_free(&y16);
}

static void run_quant(const char *stage, const char *c, const char *params, int kv) {
  long long K, group, r, bl, bh;
  char clip[32] = "1", mode[32] = "path-a";
  int ok;
  golden_param_str(params, "mode", mode, sizeof mode);
  if (strcmp(mode, "path-a") != 0) {
    g_skipped++;
    return;
  }
  if (kv) {
    long long T = 0, H = 0, hd = 0; /* read only when ok, but K = H * hd is formed first */
    ok = !golden_param_i64(params, "T", &T) && !golden_param_i64(params, "H", &H) && !golden_param_i64(params, "hd", &hd);
    K = H * hd;
    group = hd;
  } else {
    ok = !golden_param_i64(params, "K", &K) && !golden_param_i64(params, "group", &group);
  }
  ok = ok && !golden_param_i64(params, "r", &r) && !golden_param_i64(params, "bits_lo", &bl) &&
       !golden_param_i64(params, "bits_hi", &bh);
  golden_param_str(params, "clip", clip, sizeof clip);
  if (!RC_CHECK(ok, "%s/%s: incomplete params '%s'", stage, c, params)) return;
  resq_array x;
  if (load(stage, c, "x.npy", &x)) return;
  resq_qact_params p = resq_qact_default(K);
  p.group = group, p.r = r, p.bits_lo = (int)bl, p.bits_hi = (int)bh, p.clip = strtof(clip, NULL);
  int64_t M = x.shape[0];
  rc_note("M=%lld K=%lld group=%lld r=%lld bits=%lld/%lld clip=%s", (long long)M, K, group, r, bl, bh, clip);
  resq_qact_layout L;
  if (!RC_CHECK(resq_qact_check(&p, &L) == RESQ_OK, "params: %s", resq_last_error())) return;
  tq_buf dev, got;
  tq_alloc(&dev, &L, M, 0, 1);
  uint16_t *dx = dup_h2d(x.data, x.nbytes);
  RC_CHECK(resq_quant_act_f16_q4q8__cuda(&p, M, dx, K, &dev.q) == RESQ_OK, "quantize: %s", resq_last_error());
  tq_download(&got, &dev, &L, M, 0);
  static const char *names[] = {"q_lo.npy", "q_hi.npy", "scale_lo.npy", "zero_lo.npy", "scale_hi.npy", "zero_hi.npy"};
  const void *have[] = {got.q.q_lo, got.q.q_hi, got.q.scale_lo, got.q.zero_lo, got.q.scale_hi, got.q.zero_hi};
  for (int k = 0; k < 6; k++) {
    resq_array want;
    if (load(stage, c, names[k], &want)) continue;
    rc_equal_bytes(have[k], want.data, want.nbytes, names[k]);
    resq_array_free(&want);
  }
  tq_free(&dev), tq_free(&got);
  resq_cuda_free(dx);
  resq_array_free(&x);
}

int main(int argc, char **argv) {
  rc_init("cuda_golden_test", argc, argv);
  rc_gpu_require("cuda_golden_test");
  const char *stage = rc_arg("stage");
  if (!stage) {
    printf("usage: cuda_golden_test --golden DIR --stage hadamard_f16|quant_act_f16_q4q8|quant_kv_f16_q4q8\n");
    return 2;
  }
  if (golden_load(&G, rc_golden_dir()) != 0) {
    RC_FAIL("cannot load the golden manifest from %s", rc_golden_dir());
    return rc_finish();
  }
  const char *names[512];
  int n = golden_cases(&G, stage, names, 512);
  if (n == 0) RC_FAIL("no golden cases for stage %s", stage);
  for (int i = 0; i < n && i < 512; i++) {
    const char *params = NULL;
    for (int k = 0; k < G.n; k++)
      if (!strcmp(G.rows[k].stage, stage) && !strcmp(G.rows[k].casename, names[i])) params = G.rows[k].params;
    if (!rc_case(names[i])) continue;
    if (strcmp(stage, "hadamard_f16") == 0) run_hadamard(names[i], params);
    else if (strcmp(stage, "quant_act_f16_q4q8") == 0) run_quant(stage, names[i], params, 0);
    else if (strcmp(stage, "quant_kv_f16_q4q8") == 0) run_quant(stage, names[i], params, 1);
    else RC_FAIL("unknown stage %s", stage);
  }
  if (g_skipped) printf("  %d cases skipped (path B / beyond the CUDA size limits)\n", g_skipped);
  golden_free(&G);
  return rc_finish();
}
