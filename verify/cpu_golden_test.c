/* SPDX-License-Identifier: Apache-2.0
 * CPU backend vs the golden data (golden/MANIFEST.tsv, written by the
 * independent numpy generator), bit for bit, on every dispatch path:
 *   cpu_golden_test --golden DIR --stage hadamard_f16|quant_act_f16_q4q8|quant_kv_f16_q4q8
 * Path-B quantizer cases (the reference's upstream-parity mode) are not
 * implemented by the CPU backend and are skipped (counted in the output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/quant_act.h"
#include "resq_check.h"

static golden_manifest G;
static int g_isas[3], g_nisa;
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
  for (int i = 0; i < g_nisa; i++) {
    resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
    memset(yf, 0xee, sizeof(float) * (size_t)(rows * n));
    memset(yh, 0xee, 2 * (size_t)(rows * n));
    resq_status st = resq_hadamard_f32__cpu(rows, n, xf, n, yf, n, (const int8_t *)s.data, w, ws);
    RC_CHECK(st == RESQ_OK, "f32 run: %s", resq_last_error());
    st = resq_hadamard_f16__cpu(rows, n, (const uint16_t *)x.data, n, yh, n, (const int8_t *)s.data, w, ws);
    RC_CHECK(st == RESQ_OK, "f16 run: %s", resq_last_error());
    rc_equal_f32_bits(yf, (const float *)y32.data, (size_t)(rows * n), resq_cpu_isa_name(resq_cpu_get_isa()));
    rc_equal_u16(yh, (const uint16_t *)y16.data, (size_t)(rows * n), resq_cpu_isa_name(resq_cpu_get_isa()));
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  free(w), free(xf), free(yf), free(yh);
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
  p.group = group;
  p.r = r;
  p.bits_lo = (int)bl;
  p.bits_hi = (int)bh;
  p.clip = strtof(clip, NULL);
  int64_t M = x.shape[0];
  rc_note("M=%lld K=%lld group=%lld r=%lld bits=%lld/%lld clip=%s", (long long)M, K, group, r, bl, bh, clip);
  resq_qact_layout L;
  RC_CHECK(resq_qact_check(&p, &L) == RESQ_OK, "params: %s", resq_last_error());
  size_t Gn = (size_t)(M * L.ngroups) + 1;
  resq_qact q = {calloc((size_t)(M * L.lo_bytes) + 1, 1), L.lo_bytes, calloc((size_t)(M * L.hi_bytes) + 1, 1),
                 L.hi_bytes, calloc(Gn, 4), calloc(Gn, 4), calloc(Gn, 4), calloc(Gn, 4)};
  static const char *names[] = {"q_lo.npy", "q_hi.npy", "scale_lo.npy", "zero_lo.npy", "scale_hi.npy", "zero_hi.npy"};
  const void *got[] = {q.q_lo, q.q_hi, q.scale_lo, q.zero_lo, q.scale_hi, q.zero_hi};
  for (int i = 0; i < g_nisa; i++) {
    resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
    resq_status st = resq_quant_act_f16_q4q8__cpu(&p, M, (const uint16_t *)x.data, K, &q);
    RC_CHECK(st == RESQ_OK, "quantize: %s", resq_last_error());
    if (st != RESQ_OK) continue;
    for (int k = 0; k < 6; k++) {
      resq_array want;
      if (load(stage, c, names[k], &want)) continue;
      char what[96];
      snprintf(what, sizeof what, "%s (%s)", names[k], resq_cpu_isa_name(resq_cpu_get_isa()));
      rc_equal_bytes(got[k], want.data, want.nbytes, what);
      resq_array_free(&want);
    }
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  free(q.q_lo), free(q.q_hi), free(q.scale_lo), free(q.zero_lo), free(q.scale_hi), free(q.zero_hi);
  resq_array_free(&x);
}

int main(int argc, char **argv) {
  rc_init("cpu_golden_test", argc, argv);
  g_isas[g_nisa++] = RESQ_CPU_ISA_GENERIC;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX2)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX2;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX512)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX512;
  const char *stage = rc_arg("stage");
  if (!stage) {
    printf("usage: cpu_golden_test --golden DIR --stage hadamard_f16|quant_act_f16_q4q8|quant_kv_f16_q4q8\n");
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
  if (g_skipped) printf("  %d path-B cases skipped (not implemented by the CPU backend)\n", g_skipped);
  golden_free(&G);
  return rc_finish();
}
