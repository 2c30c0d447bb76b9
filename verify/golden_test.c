/* SPDX-License-Identifier: Apache-2.0
 * Reference vs golden data (golden/MANIFEST.tsv, written by golden/gen_golden.py,
 * an independent numpy implementation of ref/CONTRACT.md). Every output of
 * every case must match bit for bit: the contract fixes every rounding.
 *   golden_test --golden DIR --stage manifest          sha256 of every listed file
 *   golden_test --golden DIR --stage <stage> [--case]  run the reference on each case */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/quant_act.h"
#include "resq_check.h"

static golden_manifest G;

static int load(const char *stage, const char *c, const char *name, resq_array *a) {
  int rc = golden_read(&G, stage, c, name, a);
  RC_CHECK(rc == 0, "%s/%s: cannot load %s", stage, c, name);
  return rc;
}

static void run_manifest(void) {
  if (!rc_case("manifest_sha256")) return;
  long bad = 0;
  for (int i = 0; i < G.n; i++) {
    char path[1400], hex[65];
    snprintf(path, sizeof path, "%s/%s", G.dir, G.rows[i].file);
    if (rc_sha256_file(path, hex) != 0) {
      printf("  cannot read %s\n", path);
      bad++;
    } else if (strcmp(hex, G.rows[i].sha256) != 0) {
      printf("  %s: sha256 %s, manifest %s\n", path, hex, G.rows[i].sha256);
      bad++;
    }
  }
  RC_CHECK(G.n > 0 && bad == 0, "%ld of %d golden files missing or changed", bad, G.n);
  static const struct {
    const char *stage;
    int min_cases;
  } need[] = {{"hadamard_f16", 20}, {"quant_act_f16_q4q8", 15}, {"quant_kv_f16_q4q8", 3}};
  for (size_t k = 0; k < sizeof need / sizeof need[0]; k++) {
    int n = golden_cases(&G, need[k].stage, NULL, 0);
    RC_CHECK(n >= need[k].min_cases, "stage %s has %d cases (at least %d expected)", need[k].stage, n,
             need[k].min_cases);
  }
}

static void run_hadamard(const char *c, const char *params) {
  resq_array x, s, y32, y16;
  memset(&s, 0, sizeof s);
  long long n, with_signs = 0;
  if (!RC_CHECK(golden_param_i64(params, "n", &n) == 0, "params lack n")) return;
  golden_param_i64(params, "signs", &with_signs);
  if (load("hadamard_f16", c, "x.npy", &x)) return;
  if (with_signs && load("hadamard_f16", c, "signs.npy", &s)) return;
  if (load("hadamard_f16", c, "y_f32.npy", &y32) || load("hadamard_f16", c, "y_f16.npy", &y16)) return;
  int64_t rows = x.ndim == 2 ? x.shape[0] : 1;
  rc_note("rows=%lld n=%lld signs=%lld", (long long)rows, n, with_signs);
  size_t ws = resq_hadamard_workspace_size(n);
  void *w = malloc(ws);
  float *xf = malloc(sizeof(float) * (size_t)(rows * n)), *yf = malloc(sizeof(float) * (size_t)(rows * n));
  uint16_t *yh = malloc(2 * (size_t)(rows * n));
  resq_f16_to_f32_n((const uint16_t *)x.data, xf, (size_t)(rows * n));
  resq_status st = resq_hadamard_f32__ref(rows, n, xf, n, yf, n, (const int8_t *)s.data, w, ws);
  RC_CHECK(st == RESQ_OK, "f32 run: %s", resq_last_error());
  st = resq_hadamard_f16__ref(rows, n, (const uint16_t *)x.data, n, yh, n, (const int8_t *)s.data, w, ws);
  RC_CHECK(st == RESQ_OK, "f16 run: %s", resq_last_error());
  rc_equal_f32_bits(yf, (const float *)y32.data, (size_t)(rows * n), "y_f32");
  rc_equal_u16(yh, (const uint16_t *)y16.data, (size_t)(rows * n), "y_f16");
  free(w), free(xf), free(yf), free(yh);
  resq_array_free(&x), resq_array_free(&s), resq_array_free(&y32), resq_array_free(&y16);
}

static void run_quant(const char *stage, const char *c, const char *params, int kv) {
  resq_array x;
  if (load(stage, c, "x.npy", &x)) return;
  long long K, group, r, bl, bh;
  char clip[32] = "1", mode[32] = "path-a";
  int ok;
  if (kv) {
    long long T, H, hd;
    ok = !golden_param_i64(params, "T", &T) && !golden_param_i64(params, "H", &H) &&
         !golden_param_i64(params, "hd", &hd);
    K = H * hd;
    group = hd;
  } else {
    ok = !golden_param_i64(params, "K", &K) && !golden_param_i64(params, "group", &group);
  }
  ok = ok && !golden_param_i64(params, "r", &r) && !golden_param_i64(params, "bits_lo", &bl) &&
       !golden_param_i64(params, "bits_hi", &bh);
  golden_param_str(params, "clip", clip, sizeof clip);
  golden_param_str(params, "mode", mode, sizeof mode);
  if (!RC_CHECK(ok, "%s/%s: incomplete params '%s'", stage, c, params)) {
    resq_array_free(&x);
    return;
  }
  resq_qact_params p = resq_qact_default(K);
  p.group = group;
  p.r = r;
  p.bits_lo = (int)bl;
  p.bits_hi = (int)bh;
  p.clip = strtof(clip, NULL);
  p.mode = strcmp(mode, "path-b-bf16") == 0 ? RESQ_QMODE_PATH_B_BF16 : RESQ_QMODE_PATH_A;
  int64_t M = x.shape[0];
  rc_note("M=%lld K=%lld group=%lld r=%lld bits=%lld/%lld clip=%s mode=%s", (long long)M, K, group, r, bl, bh, clip,
          mode);
  resq_qact_layout L;
  RC_CHECK(resq_qact_check(&p, &L) == RESQ_OK, "params: %s", resq_last_error());
  size_t Gn = (size_t)(M * L.ngroups) + 1;
  resq_qact q = {calloc((size_t)(M * L.lo_bytes) + 1, 1), L.lo_bytes, calloc((size_t)(M * L.hi_bytes) + 1, 1),
                 L.hi_bytes, calloc(Gn, 4), calloc(Gn, 4), calloc(Gn, 4), calloc(Gn, 4)};
  float *y = calloc((size_t)(M * K) + 1, sizeof(float));
  resq_status st = resq_quant_act_f16_q4q8__ref(&p, M, (const uint16_t *)x.data, K, &q);
  RC_CHECK(st == RESQ_OK, "quantize: %s", resq_last_error());
  if (st == RESQ_OK) {
    RC_CHECK(resq_dequant_act_q4q8_f32__ref(&p, M, &q, y, K) == RESQ_OK, "dequantize: %s", resq_last_error());
    static const char *names[] = {"q_lo.npy", "q_hi.npy", "scale_lo.npy", "zero_lo.npy",
                                  "scale_hi.npy", "zero_hi.npy", "y.npy"};
    const void *got[] = {q.q_lo, q.q_hi, q.scale_lo, q.zero_lo, q.scale_hi, q.zero_hi, y};
    for (int i = 0; i < 7; i++) {
      resq_array want;
      if (load(stage, c, names[i], &want)) continue;
      rc_equal_bytes(got[i], want.data, want.nbytes, names[i]);
      resq_array_free(&want);
    }
    resq_array ord;
    if (!kv && golden_read(&G, stage, c, "order.npy", &ord) == 0) {
      int32_t *o = malloc(sizeof(int32_t) * (size_t)K);
      RC_CHECK(resq_oproj_column_order(K / group, group, r, o) == RESQ_OK, "order");
      rc_equal_i32(o, (const int32_t *)ord.data, (size_t)K, "order.npy");
      free(o);
      resq_array_free(&ord);
    }
  }
  free(q.q_lo), free(q.q_hi), free(q.scale_lo), free(q.zero_lo), free(q.scale_hi), free(q.zero_hi), free(y);
  resq_array_free(&x);
}

int main(int argc, char **argv) {
  rc_init("golden_test", argc, argv);
  const char *stage = rc_arg("stage");
  if (!stage) {
    printf("usage: golden_test --golden DIR --stage manifest|hadamard_f16|quant_act_f16_q4q8|quant_kv_f16_q4q8\n");
    return 2;
  }
  if (golden_load(&G, rc_golden_dir()) != 0) {
    RC_FAIL("cannot load the golden manifest from %s", rc_golden_dir());
    return rc_finish();
  }
  if (strcmp(stage, "manifest") == 0) {
    run_manifest();
  } else {
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
  }
  golden_free(&G);
  return rc_finish();
}
