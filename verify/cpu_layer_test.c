/* SPDX-License-Identifier: Apache-2.0
 * The decoder layer on the CPU kernels (resq/cpu.h) vs the reference forms
 * (ref/CONTRACT.md section 14), bit for bit: both CPU forms keep the
 * reference's operation order (exact GEMMs, quantizers and Hadamard; RMSNorm,
 * attention and the K8 product with the reference's double sequences), so the
 * f16 outputs must be identical, not merely close.
 *  - ResQ form (r = d/8, per-head KV 4/8, K8 with the 8-bit pre-quantization,
 *    online Hadamard), QuaRot-style (r = 0, K8 without pre-quantization) and
 *    RTN-style (no K8, no Hadamard), on the "test" configuration (d 256, I 688
 *    = 172 * 4: the had172 Hadamard) and a GQA variant, T = 1 .. 41 tokens
 *    (decode-sized and blocked GEMMs, attention blocks with tails), every
 *    dispatch path, 1 and 3 threads;
 *  - the FP16 form on random f16 weights and RMSNorm gammas;
 *  - the prepared layer is built here from the reference's weight quantizer
 *    and packer (resq_quant_weight_f32__ref, resq_gemm_pack_weight) with a
 *    Haar key basis for K8: the CPU form must match the reference on any
 *    prepared layer, which is what makes this a test of the CPU code;
 *  - argument errors: status codes as documented, outputs untouched. */
#define _POSIX_C_SOURCE 200112L /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/layer.h"
#include "resq/pca.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq_check.h"

static int g_isas[4], g_nisa;

/* ------------------------------------------------------------------ a prepared layer from reference parts */

typedef struct {
  resq_qweight w;
  void *mem[8];
} owned_qw;

static void qw_free(owned_qw *o) {
  for (int i = 0; i < 8; i++) free(o->mem[i]);
}

/* RTN-quantized random weight [N][K] (N(0, 1/K)) in the GEMM's K order of split sp */
static void make_qweight(resq_rng *r, const resq_qact_params *sp, int64_t N, owned_qw *o) {
  resq_qact_layout L;
  resq_gemm_check(sp, &L);
  const int64_t K = sp->K, khi = L.ngroups * sp->r;
  float *W = (float *)malloc((size_t)(N * K) * 4);
  for (int64_t i = 0; i < N * K; i++) W[i] = (float)(resq_rng_normal(r) / sqrt((double)K));
  resq_wquant_params wp = resq_wquant_default(K);
  wp.r = khi;
  int8_t *codes = (int8_t *)malloc((size_t)(N * K));
  float *sl = (float *)calloc((size_t)N, 4), *sh = (float *)calloc((size_t)N, 4);
  RC_CHECK(resq_quant_weight_f32__ref(&wp, N, W, K, codes, K, khi < K ? sl : NULL, khi > 0 ? sh : NULL) == RESQ_OK,
           "quant weight: %s", resq_last_error());
  memset(o, 0, sizeof *o);
  o->w.N = N;
  o->w.q_lo = o->mem[0] = calloc((size_t)(N * L.lo_bytes) + 1, 1);
  o->w.ld_lo = L.lo_bytes;
  o->w.q_hi = o->mem[1] = calloc((size_t)(N * L.hi_bytes) + 1, 1);
  o->w.ld_hi = L.hi_bytes;
  o->w.scale_lo = o->mem[2] = calloc((size_t)N, 4);
  o->w.scale_hi = o->mem[3] = calloc((size_t)N, 4);
  o->w.sum_lo = o->mem[4] = calloc((size_t)(N * L.ngroups), 4);
  o->w.sum_hi = o->mem[5] = calloc((size_t)(N * L.ngroups), 4);
  RC_CHECK(resq_gemm_pack_weight(sp, N, codes, K, sl, sh, &o->w) == RESQ_OK, "pack: %s", resq_last_error());
  free(W), free(codes), free(sl), free(sh);
}

typedef enum { V_RESQ, V_QUAROT, V_RTN } variant;

typedef struct {
  resq_layer_q4q8 L;
  owned_qw w[7];
  float *k8;
} ref_layer;

static void make_layer(resq_rng *r, const resq_layer_config *c, variant v, ref_layer *R) {
  memset(R, 0, sizeof *R);
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, hd = c->hd;
  resq_layer_q4q8 *L = &R->L;
  L->s_qkv = resq_qact_default(d);
  L->s_gu = resq_qact_default(d);
  L->s_o = resq_qact_default(qd);
  L->s_o.group = hd;
  L->s_kv = resq_qact_default(kd);
  L->s_kv.group = hd;
  L->s_down = resq_qact_default(c->I);
  L->s_down.r = 0;
  L->s_qk8 = resq_qact_default(hd);
  L->s_qk8.r = hd;
  if (v == V_RESQ) {
    L->s_qkv.r = L->s_gu.r = d / 8;
    L->s_o.r = L->s_kv.r = hd / 8;
  } else {
    L->s_qkv.r = L->s_gu.r = L->s_o.r = L->s_kv.r = 0;
  }
  const resq_qact_params *sp[7] = {&L->s_qkv, &L->s_qkv, &L->s_qkv, &L->s_o, &L->s_gu, &L->s_gu, &L->s_down};
  const int64_t N[7] = {qd, kd, kd, d, c->I, c->I, d};
  for (int i = 0; i < 7; i++) make_qweight(r, sp[i], N[i], &R->w[i]);
  L->wq = R->w[0].w, L->wk = R->w[1].w, L->wv = R->w[2].w, L->wo = R->w[3].w;
  L->wg = R->w[4].w, L->wu = R->w[5].w, L->wd = R->w[6].w;
  if (v != V_RTN) { /* K8 from a Haar key basis */
    double *Uk = (double *)malloc((size_t)(hd * hd) * 8);
    size_t ws = resq_random_orthogonal_workspace_size(hd);
    void *work = malloc(ws);
    resq_random_orthogonal_f64__ref(resq_rng_u64(r), hd, Uk, hd, work, ws);
    R->k8 = (float *)malloc((size_t)(hd * hd) * 4);
    RC_CHECK(resq_k8_f64__ref(hd, Uk, hd, NULL, NULL, R->k8) == RESQ_OK, "k8: %s", resq_last_error());
    free(Uk), free(work);
  }
  L->k8 = R->k8;
  L->online_hadamard = v != V_RTN;
  L->qk_rot_no_prequant = v == V_QUAROT;
}

static void free_layer(ref_layer *R) {
  for (int i = 0; i < 7; i++) qw_free(&R->w[i]);
  free(R->k8);
}

/* residual-stream input: gaussian with a few large channels, rounded to f16 */
static void make_input(resq_rng *r, int64_t T, int64_t d, uint16_t *h) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < d; i++) {
      double s = i % 61 == 7 ? 20.0 : 1.0;
      h[t * d + i] = resq_f32_to_f16((float)(resq_rng_normal(r) * s));
    }
}

static const char *vname(variant v) { return v == V_RESQ ? "resq" : v == V_QUAROT ? "quarot" : "rtn"; }

static void run_q4q8(resq_rng *r, const resq_layer_config *c, const char *cname, variant v) {
  ref_layer R;
  make_layer(r, c, v, &R);
  resq_layer_q4q8_cpu Lc;
  if (!RC_CHECK(resq_layer_q4q8_pack__cpu(c, &R.L, &Lc) == RESQ_OK, "%s %s: pack: %s", cname, vname(v), resq_last_error())) {
    free_layer(&R);
    return;
  }
  static const int64_t Ts[] = {1, 2, 5, 13, 24, 25, 41};
  for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
    const int64_t T = Ts[ti], d = c->d;
    rc_note("%s %s T=%lld", cname, vname(v), (long long)T);
    uint16_t *h = (uint16_t *)malloc((size_t)(T * d) * 2), *want = (uint16_t *)malloc((size_t)(T * d) * 2);
    uint16_t *got = (uint16_t *)malloc((size_t)(T * d) * 2);
    make_input(r, T, d, h);
    size_t rws = resq_layer_q4q8_workspace_size(c, T), cws = resq_layer_q4q8_workspace_size__cpu(&Lc, T);
    void *rw = malloc(rws), *cw = malloc(cws);
    resq_status st = resq_layer_q4q8_forward__ref(c, &R.L, T, h, want, rw, rws);
    RC_CHECK(st == RESQ_OK, "%s %s T=%lld: ref %s: %s", cname, vname(v), (long long)T, resq_status_name(st), resq_last_error());
    long nonfinite = 0;
    for (int64_t i = 0; i < T * d; i++) nonfinite += (want[i] & 0x7c00u) == 0x7c00u;
    RC_CHECK(nonfinite == 0, "%s %s T=%lld: the reference output is finite (a meaningful comparison)", cname, vname(v),
             (long long)T);
    for (int ii = 0; ii < g_nisa; ii++)
      for (int threads = 1; threads <= 3; threads += 2) {
        if (ti % 2 && threads == 3) continue; /* keep the run short: 3 threads on every other T */
        resq_cpu_set_isa((resq_cpu_isa)g_isas[ii]);
        resq_cpu_set_threads(threads);
        memset(got, 0xEE, (size_t)(T * d) * 2);
        st = resq_layer_q4q8_forward__cpu(c, &Lc, T, h, got, cw, cws);
        long diff = 0;
        for (int64_t i = 0; i < T * d; i++) diff += got[i] != want[i];
        RC_CHECK(st == RESQ_OK && diff == 0, "%s %s T=%lld isa %s threads %d: %s, %ld of %lld outputs differ", cname,
                 vname(v), (long long)T, resq_cpu_isa_name((resq_cpu_isa)g_isas[ii]), threads, resq_status_name(st),
                 diff, (long long)(T * d));
      }
    resq_cpu_set_threads(0);
    resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
    free(h), free(want), free(got), free(rw), free(cw);
  }
  resq_layer_q4q8_free__cpu(&Lc);
  free_layer(&R);
}

static void case_q4q8(void) {
  if (!rc_case("q4q8_form_bit_exact")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  resq_layer_config c;
  resq_layer_config_named("test", &c);
  for (int v = 0; v < 3; v++) run_q4q8(&r, &c, "test", (variant)v);
  /* GQA with 4 query heads per KV head, hd 32, I = 12 * 16 */
  resq_layer_config g = {128, 4, 1, 32, 192, 500000.0, 1e-5f};
  run_q4q8(&r, &g, "gqa4", V_RESQ);
}

static void case_fp16(void) {
  if (!rc_case("fp16_form_bit_exact")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  resq_layer_config c;
  resq_layer_config_named("test", &c);
  const int64_t d = c.d, qd = c.H * c.hd, kd = c.G * c.hd, I = c.I;
  const int64_t N[7] = {qd, kd, kd, d, I, I, d}, K[7] = {d, d, d, qd, d, d, I};
  uint16_t *w[7];
  for (int i = 0; i < 7; i++) {
    w[i] = (uint16_t *)malloc((size_t)(N[i] * K[i]) * 2);
    for (int64_t j = 0; j < N[i] * K[i]; j++) w[i][j] = resq_f32_to_f16((float)(resq_rng_normal(&r) / sqrt((double)K[i])));
  }
  float *ln1 = (float *)malloc((size_t)d * 4), *ln2 = (float *)malloc((size_t)d * 4);
  for (int64_t i = 0; i < d; i++) ln1[i] = (float)exp(0.2 * resq_rng_normal(&r)), ln2[i] = (float)exp(0.2 * resq_rng_normal(&r));
  resq_layer_fp16 W = {w[0], w[1], w[2], w[3], w[4], w[5], w[6], ln1, ln2};
  resq_layer_fp16_cpu Lc;
  if (RC_CHECK(resq_layer_fp16_pack__cpu(&c, &W, &Lc) == RESQ_OK, "fp16 pack: %s", resq_last_error())) {
    static const int64_t Ts[] = {1, 3, 12, 30, 41};
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
      const int64_t T = Ts[ti];
      rc_note("fp16 T=%lld", (long long)T);
      uint16_t *h = (uint16_t *)malloc((size_t)(T * d) * 2), *want = (uint16_t *)malloc((size_t)(T * d) * 2);
      uint16_t *got = (uint16_t *)malloc((size_t)(T * d) * 2);
      make_input(&r, T, d, h);
      size_t rws = resq_layer_fp16_workspace_size(&c, T), cws = resq_layer_fp16_workspace_size__cpu(&Lc, T);
      void *rw = malloc(rws), *cw = malloc(cws);
      RC_CHECK(resq_layer_fp16_forward__ref(&c, &W, T, h, want, rw, rws) == RESQ_OK, "ref: %s", resq_last_error());
      for (int ii = 0; ii < g_nisa; ii++)
        for (int threads = 1; threads <= 3; threads += 2) {
          resq_cpu_set_isa((resq_cpu_isa)g_isas[ii]);
          resq_cpu_set_threads(threads);
          memset(got, 0xEE, (size_t)(T * d) * 2);
          resq_status st = resq_layer_fp16_forward__cpu(&c, &Lc, T, h, got, cw, cws);
          long diff = 0;
          for (int64_t i = 0; i < T * d; i++) diff += got[i] != want[i];
          RC_CHECK(st == RESQ_OK && diff == 0, "fp16 T=%lld isa %s threads %d: %s, %ld outputs differ", (long long)T,
                   resq_cpu_isa_name((resq_cpu_isa)g_isas[ii]), threads, resq_status_name(st), diff);
        }
      resq_cpu_set_threads(0);
      resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
      free(h), free(want), free(got), free(rw), free(cw);
    }
    resq_layer_fp16_free__cpu(&Lc);
  }
  for (int i = 0; i < 7; i++) free(w[i]);
  free(ln1), free(ln2);
}

static void case_errors(void) {
  if (!rc_case("argument_errors")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  resq_layer_config c;
  resq_layer_config_named("test", &c);
  ref_layer R;
  make_layer(&r, &c, V_RESQ, &R);
  resq_layer_q4q8_cpu Lc;
  RC_CHECK(resq_layer_q4q8_pack__cpu(&c, &R.L, &Lc) == RESQ_OK, "pack");
  const int64_t T = 3, d = c.d;
  uint16_t h[3 * 256], out[3 * 256];
  make_input(&r, T, d, h);
  for (int i = 0; i < T * d; i++) out[i] = 0xdead;
  size_t ws = resq_layer_q4q8_workspace_size__cpu(&Lc, T);
  void *work = malloc(ws);
  resq_layer_config c2 = c;
  c2.I = 344;
  RC_CHECK(resq_layer_q4q8_forward__cpu(&c2, &Lc, T, h, out, work, ws) == RESQ_ERR_SHAPE, "another config: SHAPE");
  RC_CHECK(resq_layer_q4q8_forward__cpu(&c, &Lc, T, h, out, work, ws - 1) == RESQ_ERR_INVALID_ARG, "small workspace");
  RC_CHECK(resq_layer_q4q8_forward__cpu(&c, &Lc, -1, h, out, work, ws) == RESQ_ERR_INVALID_ARG, "T < 0");
  RC_CHECK(resq_layer_q4q8_forward__cpu(&c, NULL, T, h, out, work, ws) == RESQ_ERR_INVALID_ARG, "NULL layer");
  uint16_t keep = h[100];
  h[100] = 0x7c00;
  RC_CHECK(resq_layer_q4q8_forward__cpu(&c, &Lc, T, h, out, work, ws) == RESQ_ERR_NONFINITE, "Inf input: NONFINITE");
  h[100] = keep;
  int untouched = 1;
  for (int i = 0; i < T * d; i++) untouched &= out[i] == 0xdead;
  RC_CHECK(untouched, "failed calls wrote nothing");
  resq_layer_q4q8 bad = R.L;
  bad.wo.N = 7;
  resq_layer_q4q8_cpu L2;
  RC_CHECK(resq_layer_q4q8_pack__cpu(&c, &bad, &L2) == RESQ_ERR_SHAPE, "pack of a mismatched layer: SHAPE");
  RC_CHECK(resq_layer_q4q8_workspace_size__cpu(NULL, 3) == 0, "workspace size 0 without a layer");
  RC_CHECK(resq_layer_q4q8_forward__cpu(&c, &Lc, 0, NULL, NULL, work, ws) == RESQ_OK, "T = 0 is a no-op");
  free(work);
  resq_layer_q4q8_free__cpu(&Lc);
  resq_layer_q4q8_free__cpu(&Lc); /* idempotent on the zeroed struct */
  free_layer(&R);
}

int main(int argc, char **argv) {
  rc_init("cpu_layer_test", argc, argv);
  g_nisa = 0;
  g_isas[g_nisa++] = RESQ_CPU_ISA_GENERIC;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX2)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX2; /* its own mixed GEMM */
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX512)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX512;
  /* AMX: every projection on tiles (the cases have T <= 41, below RESQ_CPU_AMX_MIN_M; the variable is
   * read only by the AMX level's GEMM, so the other paths are unchanged) */
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AMX)) {
    g_isas[g_nisa++] = RESQ_CPU_ISA_AMX;
    setenv("RESQ_CPU_GEMM_AMX_MIN_M", "1", 1);
  }
  case_q4q8();
  case_fp16();
  case_errors();
  return rc_finish();
}
