/* SPDX-License-Identifier: Apache-2.0
 * CPU mixed GEMM (resq/cpu.h) vs the reference, bit for bit (ref/CONTRACT.md
 * section 11: the integer part and the fp32 epilogue order are exact):
 *  - the CPU weight layout: pack then unpack reproduces the canonical layout;
 *  - random codes at many shapes (M = 1, 2, 15, 16, 17, 64, 257; N not a
 *    multiple of the 32-column panel; K = 1 .. 14336; r = 0, K/8, K, odd lo
 *    counts; grouped o_proj splits; 1..4 / 1..8 bits), with and without bias,
 *    f16 and f32 outputs, every dispatch path (portable, AVX-512 VNNI when the
 *    CPU has it), 1 and 3 threads, small K blocks (state carried across
 *    blocks), outputs inside guard bands that must stay untouched;
 *  - LLM-like operands (reference-quantized activations with outlier channels
 *    and RTN weights);
 *  - the int32 extremes at the K limits;
 *  - the f16 rounding of the output (vcvtps2ph) against resq_f32_to_f16 over
 *    every exponent and every rounding-relevant mantissa pattern;
 *  - argument errors: the reference's status codes, nothing written. */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq_check.h"

#define GUARD 64
static const uint32_t CANARY32 = 0x7fc0deadu;
static const uint16_t CANARY16 = 0xdeadu;

static int g_isas[5], g_amx_all[5], g_nisa;

/* every path this CPU can run: portable C, the AVX2 kernel (vpmaddubsw; also on AVX-512 CPUs), AVX-512 VNNI,
 * and on AMX CPUs the AMX level twice: with its threshold (M >= RESQ_CPU_AMX_MIN_M on tiles, smaller M on
 * vpdpbusd) and with RESQ_CPU_GEMM_AMX_MIN_M=1, so every shape below (M = 1 included) also runs on tiles */
static void setup_isas(void) {
  g_nisa = 0;
  g_isas[g_nisa++] = RESQ_CPU_ISA_GENERIC;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX2)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX2;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX512)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX512;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AMX)) {
    g_isas[g_nisa++] = RESQ_CPU_ISA_AMX;
    g_amx_all[g_nisa] = 1;
    g_isas[g_nisa++] = RESQ_CPU_ISA_AMX;
  } else {
    printf("  cpu: no AMX level here (AMX-TILE/INT8 absent or tile state not granted): its kernel is not run\n");
  }
}

/* Select path i; its name for messages. */
static const char *set_path(int i) {
  resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
  if (g_amx_all[i]) setenv("RESQ_CPU_GEMM_AMX_MIN_M", "1", 1);
  else unsetenv("RESQ_CPU_GEMM_AMX_MIN_M");
  return g_amx_all[i] ? "avx512-amx (tiles at every M)" : resq_cpu_isa_name(resq_cpu_get_isa());
}

static void reset_path(void) {
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  unsetenv("RESQ_CPU_GEMM_AMX_MIN_M");
}

typedef struct {
  resq_qact_params p;
  resq_qact_layout L;
  int64_t M, N;
  resq_qact x;
  resq_qweight w;
  int8_t *codes;
  float *wsl, *wsh;
  resq_qweight_cpu wc;
  void *wbuf;
} prob;

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n + 1, sz);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

static int prob_alloc(prob *P, int64_t M, int64_t N, int64_t K, int64_t group, int64_t r, int bl, int bh) {
  memset(P, 0, sizeof *P);
  P->p = resq_qact_default(K);
  P->p.group = group;
  P->p.r = r;
  P->p.bits_lo = bl;
  P->p.bits_hi = bh;
  if (resq_gemm_check(&P->p, &P->L) != RESQ_OK) return 0;
  P->M = M;
  P->N = N;
  int64_t G = P->L.ngroups;
  P->x.q_lo = xcalloc((size_t)(M * P->L.lo_bytes), 1);
  P->x.ld_lo = P->L.lo_bytes;
  P->x.q_hi = xcalloc((size_t)(M * P->L.hi_bytes), 1);
  P->x.ld_hi = P->L.hi_bytes;
  P->x.scale_lo = xcalloc((size_t)(M * G), 4);
  P->x.scale_hi = xcalloc((size_t)(M * G), 4);
  P->x.zero_lo = xcalloc((size_t)(M * G), 4);
  P->x.zero_hi = xcalloc((size_t)(M * G), 4);
  P->w.N = N;
  P->w.q_lo = xcalloc((size_t)(N * P->L.lo_bytes), 1);
  P->w.ld_lo = P->L.lo_bytes;
  P->w.q_hi = xcalloc((size_t)(N * P->L.hi_bytes), 1);
  P->w.ld_hi = P->L.hi_bytes;
  P->w.scale_lo = xcalloc((size_t)N, 4);
  P->w.scale_hi = xcalloc((size_t)N, 4);
  P->w.sum_lo = xcalloc((size_t)(N * G), 4);
  P->w.sum_hi = xcalloc((size_t)(N * G), 4);
  P->codes = xcalloc((size_t)(N * K), 1);
  P->wsl = xcalloc((size_t)N, 4);
  P->wsh = xcalloc((size_t)N, 4);
  return 1;
}

static void prob_free(prob *P) {
  free(P->x.q_lo), free(P->x.q_hi), free(P->x.scale_lo), free(P->x.scale_hi), free(P->x.zero_lo), free(P->x.zero_hi);
  free(P->w.q_lo), free(P->w.q_hi), free(P->w.scale_lo), free(P->w.scale_hi), free(P->w.sum_lo), free(P->w.sum_hi);
  free(P->codes), free(P->wsl), free(P->wsh), free(P->wbuf);
}

/* canonical pack (reference), then the CPU layout */
static int pack_both(prob *P) {
  if (!RC_CHECK(resq_gemm_pack_weight(&P->p, P->N, P->codes, P->p.K, P->wsl, P->wsh, &P->w) == RESQ_OK, "ref pack: %s",
                resq_last_error()))
    return 0;
  size_t bytes = 0;
  if (!RC_CHECK(resq_gemm_pack_weight_size__cpu(&P->p, P->N, &bytes) == RESQ_OK, "size: %s", resq_last_error())) return 0;
  free(P->wbuf);
  P->wbuf = aligned_alloc(64, (bytes + 63) / 64 * 64);
  return RC_CHECK(resq_gemm_pack_weight__cpu(&P->p, &P->w, P->wbuf, bytes, &P->wc) == RESQ_OK, "cpu pack: %s",
                  resq_last_error());
}

static void fill_weights(prob *P, resq_rng *r) {
  int64_t K = P->p.K, Klo = P->L.ngroups * P->L.lo_per_group;
  for (int64_t n = 0; n < P->N; n++) {
    for (int64_t k = 0; k < K; k++)
      P->codes[n * K + k] = (int8_t)(k >= Klo ? resq_rng_range(r, -128, 127) : resq_rng_range(r, -8, 7));
    P->wsl[n] = 0.01f + resq_rng_uniform_f32(r);
    P->wsh[n] = 0.001f + resq_rng_uniform_f32(r) * 0.01f;
  }
}

static void fill_acts(prob *P, resq_rng *r) {
  int64_t G = P->L.ngroups;
  int ml = resq_qmax_asym(P->p.bits_lo), mh = resq_qmax_asym(P->p.bits_hi);
  for (int64_t m = 0; m < P->M; m++)
    for (int64_t g = 0; g < G; g++) {
      uint8_t *lo = P->x.q_lo + m * P->x.ld_lo + g * P->L.lo_bytes_per_group;
      memset(lo, 0, (size_t)P->L.lo_bytes_per_group);
      for (int64_t i = 0; i < P->L.lo_per_group; i++)
        lo[i / 2] |= (uint8_t)(resq_rng_range(r, 0, ml) << (4 * (i & 1)));
      for (int64_t i = 0; i < P->p.r; i++) P->x.q_hi[m * P->x.ld_hi + g * P->p.r + i] = (uint8_t)resq_rng_range(r, 0, mh);
      P->x.scale_lo[m * G + g] = 0.05f + resq_rng_uniform_f32(r);
      P->x.scale_hi[m * G + g] = 0.005f + resq_rng_uniform_f32(r) * 0.05f;
      P->x.zero_lo[m * G + g] = (int32_t)resq_rng_range(r, 0, ml);
      P->x.zero_hi[m * G + g] = (int32_t)resq_rng_range(r, 0, mh);
    }
}

/* Run the CPU GEMM (f16 and f32) into guarded buffers and compare with the
 * reference's outputs; the guards and the gap columns must keep their canary. */
static void compare_run(prob *P, const float *bias, int64_t extra_ld, const uint16_t *ref16, const float *ref32,
                        const char *tag) {
  int64_t M = P->M, N = P->N, ldy = N + extra_ld;
  size_t tot = (size_t)(M * ldy) + 2 * GUARD;
  uint16_t *b16 = malloc(tot * 2);
  float *b32 = malloc(tot * 4);
  for (size_t i = 0; i < tot; i++) {
    b16[i] = CANARY16;
    memcpy(&b32[i], &CANARY32, 4);
  }
  resq_status s16 = resq_gemm_q4q8_f16__cpu(&P->p, M, &P->x, &P->wc, bias, b16 + GUARD, ldy);
  resq_status s32 = resq_gemm_q4q8_f32__cpu(&P->p, M, &P->x, &P->wc, bias, b32 + GUARD, ldy);
  RC_CHECK(s16 == RESQ_OK && s32 == RESQ_OK, "%s: cpu status %d/%d: %s", tag, s16, s32, resq_last_error());
  long bad16 = 0, bad32 = 0, canary = 0;
  for (size_t i = 0; i < tot; i++) {
    int64_t j = (int64_t)i - GUARD;
    int inside = j >= 0 && j < M * ldy && (j % ldy) < N;
    if (inside) {
      int64_t m = j / ldy, n = j % ldy;
      if (b16[i] != ref16[m * N + n]) {
        if (bad16 < 3)
          printf("  %s: y16[%lld][%lld] = 0x%04x, ref 0x%04x\n", tag, (long long)m, (long long)n, b16[i], ref16[m * N + n]);
        bad16++;
      }
      if (memcmp(&b32[i], &ref32[m * N + n], 4) != 0) {
        if (bad32 < 3)
          printf("  %s: y32[%lld][%lld] = %a, ref %a\n", tag, (long long)m, (long long)n, (double)b32[i],
                 (double)ref32[m * N + n]);
        bad32++;
      }
    } else {
      canary += b16[i] != CANARY16 || memcmp(&b32[i], &CANARY32, 4) != 0;
    }
  }
  RC_CHECK(bad16 == 0 && bad32 == 0, "%s: %ld f16 and %ld f32 outputs differ from the reference", tag, bad16, bad32);
  RC_CHECK(canary == 0, "%s: %ld guard/gap elements overwritten", tag, canary);
  free(b16);
  free(b32);
}

/* Reference outputs once, then every ISA / thread count / block size. */
static void check_problem(prob *P, resq_rng *r, int with_bias, int variants) {
  int64_t M = P->M, N = P->N;
  float *bias = NULL;
  if (with_bias) {
    bias = malloc(sizeof(float) * (size_t)N);
    for (int64_t n = 0; n < N; n++) bias[n] = (float)resq_rng_normal(r);
  }
  uint16_t *r16 = malloc(2 * (size_t)(M * N) + 2);
  float *r32 = malloc(4 * (size_t)(M * N) + 4);
  RC_CHECK(resq_gemm_q4q8_f16__ref(&P->p, M, &P->x, &P->w, bias, r16, N) == RESQ_OK, "ref f16: %s", resq_last_error());
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P->p, M, &P->x, &P->w, bias, r32, N) == RESQ_OK, "ref f32: %s", resq_last_error());
  for (int i = 0; i < g_nisa; i++) {
    const char *path = set_path(i);
    char tag[128];
    snprintf(tag, sizeof tag, "%s%s", path, with_bias ? " bias" : "");
    compare_run(P, bias, with_bias ? 3 : 0, r16, r32, tag);
    if (variants) {
      resq_cpu_set_threads(3); /* more threads than cores: uneven splits */
      snprintf(tag, sizeof tag, "%s 3 threads", path);
      compare_run(P, bias, 1, r16, r32, tag);
      resq_cpu_set_threads(1);
      setenv("RESQ_CPU_GEMM_KC", "3", 1); /* K blocks of 12 columns: terms cut across blocks */
      setenv("RESQ_CPU_GEMM_MCT", "2", 1);
      setenv("RESQ_CPU_GEMM_NCP", "3", 1);
      /* AMX: one panel per block, K chunks of 64 columns, M chunks of 32 rows: every chunk boundary
       * (C tiles stored and reloaded, B unpacked again, a second M chunk) is crossed */
      setenv("RESQ_CPU_AMX_NB", "1", 1);
      setenv("RESQ_CPU_AMX_KC", "64", 1);
      setenv("RESQ_CPU_AMX_MC", "32", 1);
      snprintf(tag, sizeof tag, "%s 1 thread, small blocks", path);
      compare_run(P, bias, 0, r16, r32, tag);
      unsetenv("RESQ_CPU_GEMM_KC");
      unsetenv("RESQ_CPU_GEMM_MCT");
      unsetenv("RESQ_CPU_GEMM_NCP");
      unsetenv("RESQ_CPU_AMX_NB");
      unsetenv("RESQ_CPU_AMX_KC");
      unsetenv("RESQ_CPU_AMX_MC");
      resq_cpu_set_threads(0);
    }
  }
  reset_path();
  free(bias), free(r16), free(r32);
}

static void case_pack_roundtrip(void) {
  if (!rc_case("pack_unpack_roundtrip")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][4] = {{64, 64, 8, 1},   {64, 64, 0, 31},   {64, 64, 64, 33},  {9, 9, 2, 7},
                                   {1, 1, 0, 1},     {4096, 128, 16, 45}, {4096, 4096, 512, 65}, {37, 37, 4, 100},
                                   {512, 64, 6, 3}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    prob P;
    if (!RC_CHECK(prob_alloc(&P, 1, cfg[c][3], cfg[c][0], cfg[c][1], cfg[c][2], 4, 8), "split")) continue;
    rc_note("N=%lld K=%lld group=%lld r=%lld", (long long)cfg[c][3], (long long)cfg[c][0], (long long)cfg[c][1],
            (long long)cfg[c][2]);
    fill_weights(&P, &r);
    if (!pack_both(&P)) continue;
    int64_t N = P.N, G = P.L.ngroups;
    resq_qweight u = {N, xcalloc((size_t)(N * P.L.lo_bytes), 1), P.L.lo_bytes, xcalloc((size_t)(N * P.L.hi_bytes), 1),
                      P.L.hi_bytes, xcalloc((size_t)N, 4), xcalloc((size_t)N, 4), xcalloc((size_t)(N * G), 4),
                      xcalloc((size_t)(N * G), 4)};
    RC_CHECK(resq_gemm_unpack_weight__cpu(&P.wc, &u) == RESQ_OK, "unpack: %s", resq_last_error());
    rc_equal_bytes(u.q_lo, P.w.q_lo, (size_t)(N * P.L.lo_bytes), "q_lo");
    rc_equal_bytes(u.q_hi, P.w.q_hi, (size_t)(N * P.L.hi_bytes), "q_hi");
    if (P.L.lo_per_group > 0) {
      rc_equal_bytes(u.scale_lo, P.w.scale_lo, (size_t)N * 4, "scale_lo");
      rc_equal_i32(u.sum_lo, P.w.sum_lo, (size_t)(N * G), "sum_lo");
    }
    if (P.p.r > 0) {
      rc_equal_bytes(u.scale_hi, P.w.scale_hi, (size_t)N * 4, "scale_hi");
      rc_equal_i32(u.sum_hi, P.w.sum_hi, (size_t)(N * G), "sum_hi");
    }
    /* a byte copy of the block is a valid weight */
    void *copy = aligned_alloc(64, (P.wc.bytes + 63) / 64 * 64);
    memcpy(copy, P.wc.data, P.wc.bytes);
    resq_qweight_cpu wc2 = P.wc;
    wc2.data = copy;
    memset(u.q_lo, 0xee, (size_t)(N * P.L.lo_bytes) + 1);
    RC_CHECK(resq_gemm_unpack_weight__cpu(&wc2, &u) == RESQ_OK, "unpack copy");
    rc_equal_bytes(u.q_lo, P.w.q_lo, (size_t)(N * P.L.lo_bytes), "q_lo of a copied block");
    free(copy);
    free(u.q_lo), free(u.q_hi), free(u.scale_lo), free(u.scale_hi), free(u.sum_lo), free(u.sum_hi);
    prob_free(&P);
  }
}

static void case_random_shapes(void) {
  if (!rc_case("random_shapes_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* M, N, K, group, r, bits_lo, bits_hi, variants */
  static const int64_t cfg[][8] = {
      {1, 100, 4096, 4096, 512, 4, 8, 1},   {2, 33, 4096, 4096, 512, 4, 8, 0},    {15, 31, 4096, 4096, 512, 4, 8, 0},
      {16, 70, 4096, 4096, 512, 4, 8, 1},   {17, 64, 4096, 4096, 512, 4, 8, 0},   {64, 40, 4096, 4096, 512, 4, 8, 1},
      {257, 45, 1024, 1024, 128, 4, 8, 1},  {1, 33, 4096, 4096, 0, 4, 8, 1},      {16, 33, 4096, 4096, 4096, 4, 8, 1},
      {17, 33, 14336, 14336, 0, 4, 8, 0},   {3, 20, 14336, 14336, 1792, 4, 8, 0}, {1, 65, 4096, 128, 16, 4, 8, 1},
      {16, 33, 4096, 128, 16, 4, 8, 1},     {64, 32, 1024, 128, 16, 4, 8, 0},     {5, 7, 64, 64, 8, 4, 8, 1},
      {5, 7, 64, 16, 2, 4, 8, 1},           {13, 9, 9, 9, 1, 4, 8, 1},            {4, 3, 9, 9, 2, 4, 8, 1},
      {7, 50, 37, 37, 4, 4, 8, 1},          {3, 5, 1, 1, 0, 4, 8, 1},             {3, 5, 1, 1, 1, 4, 8, 1},
      {9, 41, 100, 100, 13, 3, 7, 1},       {12, 64, 256, 256, 32, 2, 5, 1},      {24, 96, 512, 64, 6, 1, 8, 1},
      {11, 32, 4096, 4096, 512, 4, 8, 1},   {1, 1, 64, 64, 8, 4, 8, 1},           {2, 2, 2048, 2048, 0, 4, 8, 1},
  };
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    const int64_t *k = cfg[c];
    prob P;
    if (!RC_CHECK(prob_alloc(&P, k[0], k[1], k[2], k[3], k[4], (int)k[5], (int)k[6]), "split %zu: %s", c,
                  resq_last_error()))
      continue;
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld bits=%lld/%lld", (long long)k[0], (long long)k[1], (long long)k[2],
            (long long)k[3], (long long)k[4], (long long)k[5], (long long)k[6]);
    fill_weights(&P, &r);
    fill_acts(&P, &r);
    if (pack_both(&P)) {
      check_problem(&P, &r, 0, (int)k[7]);
      check_problem(&P, &r, 1, 0);
    }
    prob_free(&P);
  }
}

/* Activations quantized by the reference from LLM-like rows, RTN weights. */
static void case_llm_like(void) {
  if (!rc_case("llm_like_operands")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][5] = {{1, 96, 4096, 4096, 512}, {16, 96, 4096, 4096, 512}, {64, 40, 4096, 4096, 512},
                                   {16, 40, 14336, 14336, 0}, {16, 64, 4096, 128, 16}, {257, 33, 4096, 128, 16}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    int64_t M = cfg[c][0], N = cfg[c][1], K = cfg[c][2];
    prob P;
    if (!prob_alloc(&P, M, N, K, cfg[c][3], cfg[c][4], 4, 8)) continue;
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld", (long long)M, (long long)N, (long long)K, (long long)cfg[c][3],
            (long long)cfg[c][4]);
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *W = malloc(sizeof(float) * (size_t)(N * K));
    for (int64_t i = 0; i < M * K; i++) x[i] = resq_round_f16((float)resq_rng_normal(&r));
    for (int j = 0; j < 6; j++) { /* outlier channels */
      int64_t ch = (int64_t)resq_rng_below(&r, (uint64_t)K);
      for (int64_t m = 0; m < M; m++) x[m * K + ch] = resq_round_f16(x[m * K + ch] * 150.0f);
    }
    for (int64_t i = 0; i < N * K; i++) W[i] = (float)resq_rng_normal(&r) * 0.02f;
    RC_CHECK(resq_quant_act_f32_q4q8__ref(&P.p, M, x, K, &P.x) == RESQ_OK, "quantize x: %s", resq_last_error());
    if (P.L.ngroups == 1) {
      resq_wquant_params wp = resq_wquant_default(K);
      wp.r = P.p.r;
      RC_CHECK(resq_quant_weight_f32__ref(&wp, N, W, K, P.codes, K, P.wsl, P.wsh) == RESQ_OK, "quantize W");
    } else {
      fill_weights(&P, &r);
    }
    if (pack_both(&P)) {
      check_problem(&P, &r, 1, 0);
      check_problem(&P, &r, 0, 0);
    }
    free(x), free(W);
    prob_free(&P);
  }
}

static void case_extremes(void) {
  if (!rc_case("int32_extremes")) return;
  /* all-hi at the K_hi limit with the largest products, and all-lo over several
   * 2^20-column segments (the kernel accumulates 16*w in int32 per segment) */
  static const int64_t cfg[][2] = {{RESQ_GEMM_MAX_KHI, RESQ_GEMM_MAX_KHI}, {(int64_t)3 << 20, 0}};
  for (size_t c = 0; c < 2; c++) {
    int64_t K = cfg[c][0], r = cfg[c][1];
    for (int64_t M = 1; M <= 30; M += 29) {
      prob P;
      if (!RC_CHECK(prob_alloc(&P, M, 2, K, K, r, 4, 8), "split: %s", resq_last_error())) continue;
      rc_note("M=%lld N=2 K=%lld r=%lld", (long long)M, (long long)K, (long long)r);
      int hi = r > 0;
      for (int64_t k = 0; k < K; k++) {
        P.codes[k] = (int8_t)(hi ? -128 : -8);
        P.codes[K + k] = (int8_t)(hi ? 127 : 7);
      }
      P.wsl[0] = P.wsl[1] = P.wsh[0] = P.wsh[1] = 1.0f;
      if (hi) memset(P.x.q_hi, 255, (size_t)(M * K));
      else memset(P.x.q_lo, 0xff, (size_t)(M * P.L.lo_bytes));
      for (int64_t m = 0; m < M; m++) {
        P.x.scale_lo[m] = P.x.scale_hi[m] = 1.0f;
        P.x.zero_lo[m] = P.x.zero_hi[m] = m % 2 ? (hi ? 255 : 15) : 0;
      }
      if (pack_both(&P)) check_problem(&P, NULL, 0, 0);
      prob_free(&P);
    }
  }
}

/* The AVX2 kernel's int16 partial sums at their bound: every packed lo byte at
 * -128 (both nibbles' outputs at code -8) or 127 (code 7 and u = 15), every
 * activation code at its maximum (15, 255: the hi nibble split), over whole
 * flush blocks of 8 steps and a ragged last one (K_lo = 2048 + 36: 521 steps
 * = 65 x 8 + 1; r = 512: 128 steps). A flush one step later wraps int16 (9 x 3840 > 32767) and fails here;
 * rows 1 (M = 1) and 13 (pairs and a single row). */
static void case_int16_extremes(void) {
  if (!rc_case("int16_partial_extremes")) return;
  const int64_t N = 64, Klo = 2048 + 36, r = 512, K = Klo + r;
  for (int64_t M = 1; M <= 13; M += 12)
    for (int sign = 0; sign < 2; sign++) {
      prob P;
      if (!RC_CHECK(prob_alloc(&P, M, N, K, K, r, 4, 8), "split: %s", resq_last_error())) continue;
      rc_note("M=%lld N=%lld K=%lld r=%lld codes %s", (long long)M, (long long)N, (long long)K, (long long)r,
              sign ? "-8/-128" : "7/127");
      for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
          const int neg = (n < 32) == (sign != 0); /* one panel negative, the other positive */
          P.codes[n * K + k] = (int8_t)(k < Klo ? (neg ? -8 : 7) : (neg ? -128 : 127));
        }
      for (int64_t n = 0; n < N; n++) P.wsl[n] = P.wsh[n] = 1.0f;
      memset(P.x.q_hi, 255, (size_t)(M * P.L.hi_bytes));
      memset(P.x.q_lo, 0xff, (size_t)(M * P.L.lo_bytes));
      for (int64_t m = 0; m < M; m++) {
        P.x.scale_lo[m] = P.x.scale_hi[m] = 1.0f;
        P.x.zero_lo[m] = m % 2 ? 15 : 0;
        P.x.zero_hi[m] = m % 2 ? 255 : 0;
      }
      if (pack_both(&P)) check_problem(&P, NULL, 0, 0);
      prob_free(&P);
    }
}

/* y = +0 + bias when every weight code is 0: the f16 output is RNE_f16(bias). */
static void case_f16_rounding(void) {
  if (!rc_case("f16_output_rounding")) return;
  const int64_t N = 65536;
  prob P;
  if (!prob_alloc(&P, 1, N, 4, 4, 0, 4, 8)) return;
  for (int64_t n = 0; n < N; n++) P.wsl[n] = 1.0f;
  P.x.scale_lo[0] = 1.0f;
  if (!pack_both(&P)) return;
  float *bias = malloc(sizeof(float) * (size_t)N);
  uint16_t *y = malloc(2 * (size_t)N), *want = malloc(2 * (size_t)N);
  static const uint32_t highs[] = {0x000, 0x001, 0x155, 0x2aa, 0x3fe, 0x3ff};
  long bad = 0, total = 0;
  for (int i = 0; i < g_nisa; i++) {
    const char *path = set_path(i);
    int64_t fill = 0;
    for (uint32_t sign = 0; sign < 2; sign++)
      for (uint32_t e = 0; e < 255; e++) /* every finite exponent (subnormals included) */
        for (size_t h = 0; h < sizeof highs / sizeof highs[0]; h++)
          for (uint32_t low = 0; low < 8192; low++) { /* the 13 bits below f16's mantissa */
            uint32_t u = sign << 31 | e << 23 | highs[h] << 13 | low;
            memcpy(&bias[fill], &u, 4);
            if (++fill == N) {
              RC_CHECK(resq_gemm_q4q8_f16__cpu(&P.p, 1, &P.x, &P.wc, bias, y, N) == RESQ_OK, "run: %s", resq_last_error());
              for (int64_t n = 0; n < N; n++) {
                want[n] = resq_f32_to_f16(0.0f + bias[n]);
                if (y[n] != want[n] && bad++ < 3)
                  printf("  %s: f16(%a) = 0x%04x, want 0x%04x\n", path,
                         (double)bias[n], y[n], want[n]);
              }
              total += N;
              fill = 0;
            }
          }
  }
  reset_path();
  printf("  %ld values rounded\n", total);
  RC_CHECK(bad == 0 && total > 0, "%ld of %ld f16 roundings differ from resq_f32_to_f16", bad, total);
  free(bias), free(y), free(want);
  prob_free(&P);
}

static void case_bad_args(void) {
  if (!rc_case("argument_errors")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  prob P;
  prob_alloc(&P, 2, 3, 64, 64, 8, 4, 8);
  fill_weights(&P, &r);
  fill_acts(&P, &r);
  if (!pack_both(&P)) return;
  float y[64];
  float yr[64];
  for (int i = 0; i < 64; i++) y[i] = 123.0f;
#define SAME(expr_ref, expr_cpu, what)                                                                         \
  do {                                                                                                         \
    resq_status a_ = (expr_ref), b_ = (expr_cpu);                                                              \
    RC_CHECK(a_ == b_ && a_ != RESQ_OK, "%s: ref %s, cpu %s (%s)", what, resq_status_name(a_), resq_status_name(b_), \
             resq_last_error());                                                                               \
  } while (0)
  SAME(resq_gemm_q4q8_f32__ref(&P.p, -1, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, -1, &P.x, &P.wc, NULL, y, 3),
       "M < 0");
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, NULL, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, NULL, &P.wc, NULL, y, 3),
       "NULL x");
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, NULL, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, NULL, NULL, y, 3),
       "NULL w");
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, NULL, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, NULL, NULL, 3),
       "NULL y");
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 2), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, NULL, y, 2),
       "ldy < N");
  P.x.ld_lo--;
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, NULL, y, 3),
       "ld_lo too small");
  P.x.ld_lo++;
  uint8_t *save = P.x.q_hi;
  P.x.q_hi = NULL;
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, NULL, y, 3),
       "NULL q_hi");
  P.x.q_hi = save;
  P.x.zero_lo[1] = 16;
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, NULL, y, 3),
       "zero point 16");
  P.x.zero_lo[1] = 3;
  P.x.scale_hi[1] = NAN;
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, NULL, y, 3),
       "NaN activation scale");
  P.x.scale_hi[1] = 0.0f;
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, NULL, y, 3),
       "zero activation scale");
  P.x.scale_hi[1] = 0.5f;
  float bias[3] = {0.0f, INFINITY, 1.0f};
  SAME(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, bias, yr, 3), resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &P.wc, bias, y, 3),
       "Inf bias");
  resq_qact_params odd = P.p;
  odd.K = 4 * 9;
  odd.group = 9;
  odd.r = 2;
  SAME(resq_gemm_q4q8_f32__ref(&odd, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&odd, 2, &P.x, &P.wc, NULL, y, 3),
       "grouped odd lo count");
  resq_qact_params pb = P.p;
  pb.mode = RESQ_QMODE_PATH_B_BF16;
  SAME(resq_gemm_q4q8_f32__ref(&pb, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&pb, 2, &P.x, &P.wc, NULL, y, 3),
       "path B activations");
  resq_qact_params big = resq_qact_default(RESQ_GEMM_MAX_KHI + 8);
  big.r = big.K;
  SAME(resq_gemm_q4q8_f32__ref(&big, 2, &P.x, &P.w, NULL, yr, 3), resq_gemm_q4q8_f32__cpu(&big, 2, &P.x, &P.wc, NULL, y, 3),
       "K_hi beyond the limit");
  /* CPU-only: a weight packed for another split, or not packed at all */
  resq_qact_params other = P.p;
  other.r = 16;
  RC_CHECK(resq_gemm_q4q8_f32__cpu(&other, 2, &P.x, &P.wc, NULL, y, 3) == RESQ_ERR_SHAPE, "split mismatch: %s",
           resq_last_error());
  resq_qweight_cpu raw = P.wc;
  raw.magic = 0;
  RC_CHECK(resq_gemm_q4q8_f32__cpu(&P.p, 2, &P.x, &raw, NULL, y, 3) == RESQ_ERR_INVALID_ARG, "unpacked weight");
  long touched = 0;
  for (int i = 0; i < 64; i++) touched += y[i] != 123.0f;
  RC_CHECK(touched == 0, "failed calls wrote %ld outputs", touched);
  /* the packer refuses what the reference GEMM refuses */
  size_t bytes;
  resq_gemm_pack_weight_size__cpu(&P.p, 3, &bytes);
  void *buf = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  resq_qweight_cpu wc;
  P.w.sum_lo[1] += 1;
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 3) == RESQ_ERR_INVALID_ARG &&
               resq_gemm_pack_weight__cpu(&P.p, &P.w, buf, bytes, &wc) == RESQ_ERR_INVALID_ARG,
           "inconsistent weight sums refused by both: %s", resq_last_error());
  P.w.sum_lo[1] -= 1;
  P.w.scale_hi[2] = NAN;
  RC_CHECK(resq_gemm_q4q8_f32__ref(&P.p, 2, &P.x, &P.w, NULL, yr, 3) == RESQ_ERR_NONFINITE &&
               resq_gemm_pack_weight__cpu(&P.p, &P.w, buf, bytes, &wc) == RESQ_ERR_NONFINITE,
           "NaN weight scale refused by both: %s", resq_last_error());
  P.w.scale_hi[2] = 1.0f;
  RC_CHECK(resq_gemm_pack_weight__cpu(&P.p, &P.w, (char *)buf + 8, bytes, &wc) == RESQ_ERR_INVALID_ARG, "unaligned buffer");
  RC_CHECK(resq_gemm_pack_weight__cpu(&P.p, &P.w, buf, bytes - 1, &wc) == RESQ_ERR_INVALID_ARG, "small buffer");
  RC_CHECK(resq_gemm_pack_weight__cpu(&P.p, &P.w, buf, bytes, &wc) == RESQ_OK, "valid pack");
  /* zero-size problems succeed and write nothing */
  RC_CHECK(resq_gemm_q4q8_f32__cpu(&P.p, 0, &P.x, &P.wc, NULL, NULL, 3) == RESQ_OK, "M = 0");
  RC_CHECK(resq_cpu_set_isa((resq_cpu_isa)7) == RESQ_ERR_INVALID_ARG, "unknown ISA refused");
  for (int isa = RESQ_CPU_ISA_AVX512; isa <= RESQ_CPU_ISA_AMX; isa++)
    if (!resq_cpu_isa_available((resq_cpu_isa)isa))
      RC_CHECK(resq_cpu_set_isa((resq_cpu_isa)isa) == RESQ_ERR_UNSUPPORTED && (int)resq_cpu_get_isa() != isa,
               "ISA %s refused where the CPU lacks it", resq_cpu_isa_name((resq_cpu_isa)isa));
  free(buf);
  prob_free(&P);
}

int main(int argc, char **argv) {
  rc_init("cpu_gemm_q4q8_f16_test", argc, argv);
  setup_isas();
  printf("  cpu: detected %s, %d threads\n", resq_cpu_isa_name(resq_cpu_detect()), resq_cpu_get_threads());
  case_pack_roundtrip();
  case_random_shapes();
  case_llm_like();
  case_extremes();
  case_int16_extremes();
  case_f16_rounding();
  case_bad_args();
  return rc_finish();
}
