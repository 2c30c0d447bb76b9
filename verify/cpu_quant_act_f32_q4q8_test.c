/* SPDX-License-Identifier: Apache-2.0
 * CPU activation quantizer (path A) and fused Hadamard + quantizer (resq/cpu.h)
 * vs the reference, bit for bit (ref/CONTRACT.md section 3 is exact): codes,
 * scales and zeros for per-token, per-head (KV cache) and grouped o_proj
 * splits, odd part lengths, 1..4 / 1..8 bits, clip < 1, f32 and f16 inputs,
 * LLM-like rows with outliers, all-zero and constant rows, exact rounding ties,
 * quotients within ulps of a tie, clip ratios and magnitudes that overflow
 * int16 or the division-free shortcut's bound, subnormal scales,
 * tiny (subnormal f16) values; every dispatch path, 1 and 3 threads; packed
 * rows inside guard bands; the reference's status codes on errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq_check.h"

static int g_isas[3], g_nisa;

typedef struct {
  resq_qact q;
  size_t nlo, nhi, ng;
} qbuf;

static void qbuf_alloc(qbuf *b, const resq_qact_layout *L, int64_t M, int64_t extra) {
  b->q.ld_lo = L->lo_bytes + extra;
  b->q.ld_hi = L->hi_bytes + extra;
  b->nlo = (size_t)(M * b->q.ld_lo) + 1;
  b->nhi = (size_t)(M * b->q.ld_hi) + 1;
  b->ng = (size_t)(M * L->ngroups) + 1;
  b->q.q_lo = malloc(b->nlo);
  b->q.q_hi = malloc(b->nhi);
  b->q.scale_lo = malloc(b->ng * 4);
  b->q.scale_hi = malloc(b->ng * 4);
  b->q.zero_lo = malloc(b->ng * 4);
  b->q.zero_hi = malloc(b->ng * 4);
  memset(b->q.q_lo, 0xa5, b->nlo);
  memset(b->q.q_hi, 0xa5, b->nhi);
  memset(b->q.scale_lo, 0xa5, b->ng * 4);
  memset(b->q.scale_hi, 0xa5, b->ng * 4);
  memset(b->q.zero_lo, 0xa5, b->ng * 4);
  memset(b->q.zero_hi, 0xa5, b->ng * 4);
}

static void qbuf_free(qbuf *b) {
  free(b->q.q_lo), free(b->q.q_hi), free(b->q.scale_lo), free(b->q.scale_hi), free(b->q.zero_lo), free(b->q.zero_hi);
}

/* Every byte of the buffers, padding and guard bytes included (both start 0xa5). */
static void compare(const qbuf *a, const qbuf *b, const char *tag) {
  char what[160];
  snprintf(what, sizeof what, "%s: q_lo", tag);
  rc_equal_bytes(a->q.q_lo, b->q.q_lo, a->nlo, what);
  snprintf(what, sizeof what, "%s: q_hi", tag);
  rc_equal_bytes(a->q.q_hi, b->q.q_hi, a->nhi, what);
  snprintf(what, sizeof what, "%s: scales/zeros", tag);
  int ok = !memcmp(a->q.scale_lo, b->q.scale_lo, a->ng * 4) && !memcmp(a->q.scale_hi, b->q.scale_hi, a->ng * 4) &&
           !memcmp(a->q.zero_lo, b->q.zero_lo, a->ng * 4) && !memcmp(a->q.zero_hi, b->q.zero_hi, a->ng * 4);
  RC_CHECK(ok, "%s differ", what);
}

static void fill_rows(resq_rng *r, float *x, int64_t M, int64_t K, int64_t ld, int kind) {
  for (int64_t m = 0; m < M; m++) {
    int k = kind == 5 ? (int)(m % 5) : kind; /* 5: a mix of kinds row by row */
    float c = (float)resq_rng_normal(r);
    for (int64_t j = 0; j < K; j++) {
      double v;
      switch (k) {
        case 0: v = resq_rng_normal(r); break;
        case 1: v = resq_rng_normal(r) * (resq_rng_below(r, 50) == 0 ? 200 : 1); break; /* outliers */
        case 2: v = 0; break;                                                          /* all zero */
        case 3: v = c; break;                                                          /* constant */
        default: v = 0.5 * (double)resq_rng_range(r, -15, 15); break;                  /* ties at x/s = k + 1/2 */
      }
      if (k == 0 && j % 97 == 3) v = ldexp(v, -20); /* subnormal in f16 */
      x[m * ld + j] = resq_round_f16((float)v);
    }
  }
}

/* Rows x (M x K, leading dimension ld, f16-representable values) as f32 and
 * as f16 input: every ISA, 1 and 3 threads, against the reference. */
static void check_rows(const resq_qact_params *p, const float *x, int64_t M, int64_t ld) {
  resq_qact_layout L;
  if (!RC_CHECK(resq_qact_check(p, &L) == RESQ_OK, "params: %s", resq_last_error())) return;
  uint16_t *x16 = calloc((size_t)(M * ld) + 1, 2);
  for (int64_t i = 0; i < M * ld; i++) x16[i] = resq_f32_to_f16(x[i]);
  for (int src = 0; src < 2; src++) {
    qbuf want, got;
    qbuf_alloc(&want, &L, M, 3);
    resq_status st = src ? resq_quant_act_f16_q4q8__ref(p, M, x16, ld, &want.q) : resq_quant_act_f32_q4q8__ref(p, M, x, ld, &want.q);
    RC_CHECK(st == RESQ_OK, "ref: %s", resq_last_error());
    for (int i = 0; i < g_nisa; i++)
      for (int threads = 0; threads <= 3; threads += 3) {
        resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
        resq_cpu_set_threads(threads);
        qbuf_alloc(&got, &L, M, 3);
        st = src ? resq_quant_act_f16_q4q8__cpu(p, M, x16, ld, &got.q) : resq_quant_act_f32_q4q8__cpu(p, M, x, ld, &got.q);
        RC_CHECK(st == RESQ_OK, "cpu: %s", resq_last_error());
        char tag[96];
        snprintf(tag, sizeof tag, "%s input, %s, %d threads", src ? "f16" : "f32", resq_cpu_isa_name(resq_cpu_get_isa()),
                 threads);
        compare(&got, &want, tag);
        qbuf_free(&got);
      }
    qbuf_free(&want);
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  resq_cpu_set_threads(0);
  free(x16);
}

static void check_cfg(resq_rng *r, const resq_qact_params *p, int64_t M, int kind) {
  int64_t K = p->K, ld = K + 5;
  float *x = calloc((size_t)(M * ld) + 1, 4);
  fill_rows(r, x, M, K, ld, kind);
  check_rows(p, x, M, ld);
  free(x);
}

/* A configuration row: K, group, r, bits_lo, bits_hi, clip*100 (, M). */
static resq_qact_params params_of(const int64_t *c) {
  resq_qact_params p = resq_qact_default(c[0]);
  p.group = c[1];
  p.r = c[2];
  p.bits_lo = (int)c[3];
  p.bits_hi = (int)c[4];
  p.clip = (float)c[5] / 100.0f;
  return p;
}

static void case_shapes(void) {
  if (!rc_case("shapes_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* K, group, r, bits_lo, bits_hi, clip*100, M */
  static const int64_t cfg[][7] = {
      {4096, 4096, 512, 4, 8, 100, 1},  {4096, 4096, 512, 4, 8, 100, 17}, {4096, 4096, 0, 4, 8, 100, 5},
      {4096, 4096, 4096, 4, 8, 100, 3}, {14336, 14336, 0, 4, 8, 100, 3},  {4096, 128, 16, 4, 8, 100, 9},
      {1024, 128, 16, 4, 8, 100, 64},   {1024, 64, 8, 4, 8, 100, 2},      {37, 37, 4, 4, 8, 100, 7},
      {9, 9, 2, 4, 8, 100, 5},          {45, 15, 4, 4, 8, 100, 6},        {1, 1, 0, 4, 8, 100, 3},
      {1, 1, 1, 4, 8, 100, 3},          {256, 256, 32, 2, 6, 90, 4},      {100, 100, 7, 3, 5, 75, 4},
      {64, 32, 5, 1, 1, 100, 4},        {4096, 4096, 512, 4, 8, 95, 2},   {17, 17, 16, 4, 8, 100, 3},
      {1024, 64, 16, 4, 8, 100, 5}, /* lo part of exactly 48: the joint lo + hi step with no lo step before it */
      {1536, 192, 16, 4, 8, 100, 7}, /* lo part of 176: two whole blocks of 64 before the joint block */
      {5504, 128, 16, 4, 8, 100, 3}, /* 43 groups of 128: 5 whole blocks of 8 (chunks of 4 and 1), then 3 groups */
  };
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    resq_qact_params p = params_of(cfg[c]);
    for (int kind = 0; kind <= 5; kind++) {
      rc_note("K=%lld group=%lld r=%lld bits=%d/%d clip=%g M=%lld kind=%d", (long long)p.K, (long long)p.group,
              (long long)p.r, p.bits_lo, p.bits_hi, (double)p.clip, (long long)cfg[c][6], kind);
      check_cfg(&r, &p, cfg[c][6], kind);
    }
  }
}

/* f32 rows through the reference once and the CPU backend on every dispatch path (default threads). */
static void check_f32_rows(const resq_qact_params *p, const resq_qact_layout *L, const float *x, int64_t M, int64_t ld,
                           const char *what) {
  qbuf want, got;
  qbuf_alloc(&want, L, M, 0);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(p, M, x, ld, &want.q) == RESQ_OK, "ref: %s", resq_last_error());
  for (int i = 0; i < g_nisa; i++) {
    resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
    qbuf_alloc(&got, L, M, 0);
    RC_CHECK(resq_quant_act_f32_q4q8__cpu(p, M, x, ld, &got.q) == RESQ_OK, "cpu: %s", resq_last_error());
    char tag[64];
    snprintf(tag, sizeof tag, "%s, %s", what, resq_cpu_isa_name(resq_cpu_get_isa()));
    compare(&got, &want, tag);
    qbuf_free(&got);
  }
  qbuf_free(&want);
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
}

/* Quotients x/s within a few ulps of a half-integer, in f32: any shortcut for
 * the contract's rint(fl(x / s)) (a multiplication by 1/s, a reciprocal
 * estimate) rounds some of these differently; with the shortcut
 * rint(x * fl(1/s)) about 7 % of these codes differ. Each part's min and max
 * are set (first two columns), so s is known and the other columns are
 * fl(h s) nudged by -3..3 ulps for random half-integers h inside the range. */
static void fill_near_ties(resq_rng *r, const resq_qact_params *p, const resq_qact_layout *L, float *x, int64_t M,
                           int64_t ld) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t g = 0; g < L->ngroups; g++)
      for (int part = 0; part < 2; part++) {
        int64_t c0 = g * p->group + (part ? L->lo_per_group : 0), n = part ? p->r : L->lo_per_group;
        if (n < 2) continue;
        float *row = x + m * ld + c0;
        float A = (float)(0.5 + 3.5 * resq_rng_uniform_f64(r)), B = (float)(0.5 + 3.5 * resq_rng_uniform_f64(r));
        float mn = -A * p->clip, mx = B * p->clip, maxq = (float)((1 << (part ? p->bits_hi : p->bits_lo)) - 1);
        float sc = (mx - mn) / maxq; /* the contract's s */
        row[0] = -A, row[1] = B;
        int lo = (int)ceilf(-A / sc) + 1, hi = (int)floorf(B / sc) - 2;
        for (int64_t j = 2; j < n; j++) {
          float v = 0.0f;
          if (hi >= lo) {
            v = ((float)resq_rng_range(r, lo, hi) + 0.5f) * sc;
            for (int d = resq_rng_range(r, -3, 3); d != 0; d += d > 0 ? -1 : 1) v = nextafterf(v, d > 0 ? INFINITY : -INFINITY);
            if (!(v > -A && v < B)) v = 0.0f;
          }
          row[j] = v;
        }
      }
}

static void case_near_ties(void) {
  if (!rc_case("near_ties_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* K, group, r, bits_lo, bits_hi, clip*100, M */
  static const int64_t cfg[][7] = {{4096, 4096, 512, 4, 8, 100, 8}, {1024, 128, 16, 4, 8, 100, 8},
                                   {4096, 4096, 512, 4, 8, 90, 4},  {300, 300, 44, 3, 6, 100, 16}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    resq_qact_params p = params_of(cfg[c]);
    int64_t M = cfg[c][6], K = p.K, ld = K + 1;
    resq_qact_layout L;
    if (!RC_CHECK(resq_qact_check(&p, &L) == RESQ_OK, "params: %s", resq_last_error())) continue;
    rc_note("K=%lld group=%lld r=%lld bits=%d/%d clip=%g M=%lld", (long long)K, (long long)p.group, (long long)p.r,
            p.bits_lo, p.bits_hi, (double)p.clip, (long long)M);
    float *x = calloc((size_t)(M * ld), 4);
    fill_near_ties(&r, &p, &L, x, M, ld);
    check_f32_rows(&p, &L, x, M, ld, "near ties");
    free(x);
  }
}

/* The ranges where the AVX-512 codes pass must not use its division-free
 * shortcut, or must saturate before it clamps (f32 input): clip 0.001 gives
 * |x / s| up to 255000 (past int16: the saturating packs), clip 1e-6 up to
 * 2.6e8 (past the shortcut's 2^19 bound: every vector divides), rows of
 * subnormal f32 values give a subnormal s (1/s may overflow: every vector
 * divides), and rows near fp32's largest values a huge but normal s. */
static void case_extreme(void) {
  if (!rc_case("extreme_ranges_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const float clips[] = {1.0f, 0.001f, 1e-6f};
  static const double scales[] = {1.0, 1e-40, 1e37}; /* row magnitudes */
  /* K, group, r, bits_lo, bits_hi, clip*100 (clip overridden below), M */
  static const int64_t cfg[][7] = {{4096, 4096, 512, 4, 8, 100, 3}, {1024, 128, 16, 4, 8, 100, 4},
                                   {200, 200, 7, 3, 6, 100, 3}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
    for (size_t ci = 0; ci < sizeof clips / sizeof clips[0]; ci++)
      for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++) {
        resq_qact_params p = params_of(cfg[c]);
        p.clip = clips[ci];
        int64_t M = cfg[c][6], K = p.K;
        resq_qact_layout L;
        if (!RC_CHECK(resq_qact_check(&p, &L) == RESQ_OK, "params: %s", resq_last_error())) continue;
        rc_note("K=%lld group=%lld r=%lld bits=%d/%d clip=%g M=%lld magnitude=%g", (long long)K, (long long)p.group,
                (long long)p.r, p.bits_lo, p.bits_hi, (double)p.clip, (long long)M, scales[si]);
        float *x = malloc(sizeof(float) * (size_t)(M * K));
        for (int64_t i = 0; i < M * K; i++) x[i] = (float)(resq_rng_normal(&r) * scales[si]);
        check_f32_rows(&p, &L, x, M, K, "extreme ranges");
        free(x);
      }
}

/* Groups of 128 (r = 16) whose lo part is all zero beside hi parts under
 * clip 0.001. An all-zero part gets the range [-1, 1] and max |x| = 0, so
 * the AVX-512 path codes it in the folded 4-bit form whatever the clip, and
 * the joint step of such a group (lo48f_hi16_joined) then meets hi codes up to
 * about +-1.3e5, past int16 before their clamp. Rows: lo parts all zero in
 * every group, or in every other group (the others normal). */
static void case_folded_lo_tiny_clip(void) {
  if (!rc_case("folded_lo_beside_tiny_clip_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[7] = {1024, 128, 16, 4, 8, 100, 4};
  resq_qact_params p = params_of(cfg);
  p.clip = 0.001f;
  const int64_t M = cfg[6], K = p.K, ld = K + 3;
  rc_note("K=%lld group=%lld r=%lld bits=%d/%d clip=%g M=%lld", (long long)K, (long long)p.group, (long long)p.r,
          p.bits_lo, p.bits_hi, (double)p.clip, (long long)M);
  float *x = calloc((size_t)(M * ld) + 1, 4);
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < K; j++) {
      const int hi = j % 128 >= 112, zero_lo = m % 2 == 0 || (j / 128) % 2 == 0;
      x[m * ld + j] = hi || !zero_lo ? resq_round_f16((float)resq_rng_normal(&r)) : 0.0f;
    }
  check_rows(&p, x, M, ld);
  free(x);
}

/* resq_hadamard_f32__ref on the widened f16 rows, then resq_quant_act_f32_q4q8__ref. */
static void case_fused(void) {
  if (!rc_case("fused_hadamard_quant_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][3] = {{4096, 0, 3}, {14336, 0, 2}, {11008, 0, 2}, {128, 0, 5},
                                   {4096, 512, 2}, {12, 0, 3},  {8192, 0, 1},  {20, 3, 2}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    int64_t n = cfg[c][0], M = cfg[c][2], ld = n + 2;
    resq_qact_params p = resq_qact_default(n);
    p.r = cfg[c][1];
    resq_qact_layout L;
    resq_qact_check(&p, &L);
    rc_note("n=%lld r=%lld M=%lld", (long long)n, (long long)p.r, (long long)M);
    float *x = calloc((size_t)(M * ld), 4), *h = malloc(sizeof(float) * (size_t)(M * n));
    uint16_t *x16 = calloc((size_t)(M * ld), 2);
    fill_rows(&r, x, M, n, ld, 1);
    for (int64_t i = 0; i < M * ld; i++) x16[i] = resq_f32_to_f16(x[i]);
    int8_t *s = malloc((size_t)n);
    resq_hadamard_random_signs(resq_rng_u64(&r), n, s);
    size_t ws = resq_hadamard_workspace_size(n);
    void *work = malloc(ws);
    for (int with_signs = 0; with_signs < 2; with_signs++) {
      const int8_t *sg = with_signs ? s : NULL;
      for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < n; j++) x[m * ld + j] = resq_f16_to_f32(x16[m * ld + j]);
      RC_CHECK(resq_hadamard_f32__ref(M, n, x, ld, h, n, sg, work, ws) == RESQ_OK, "ref hadamard: %s", resq_last_error());
      qbuf want, got;
      qbuf_alloc(&want, &L, M, 1);
      RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, h, n, &want.q) == RESQ_OK, "ref quant: %s", resq_last_error());
      for (int i = 0; i < g_nisa; i++) {
        resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
        qbuf_alloc(&got, &L, M, 1);
        RC_CHECK(resq_hadamard_quant_act_f16_q4q8__cpu(&p, M, x16, ld, sg, &got.q) == RESQ_OK, "cpu: %s", resq_last_error());
        char tag[64];
        snprintf(tag, sizeof tag, "fused, %s, signs %d", resq_cpu_isa_name(resq_cpu_get_isa()), with_signs);
        compare(&got, &want, tag);
        qbuf_free(&got);
      }
      qbuf_free(&want);
    }
    resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
    free(x), free(h), free(x16), free(s), free(work);
  }
}

static void case_errors(void) {
  if (!rc_case("argument_errors")) return;
  const int64_t K = 64, M = 2;
  resq_qact_params p = resq_qact_default(K);
  resq_qact_layout L;
  resq_qact_check(&p, &L);
  float x[2 * 64];
  for (int i = 0; i < 2 * 64; i++) x[i] = (float)i - 50.0f;
  qbuf a, b;
  qbuf_alloc(&a, &L, M, 0);
  qbuf_alloc(&b, &L, M, 0);
#define SAME(call_ref, call_cpu, what)                                                                        \
  do {                                                                                                        \
    resq_status a_ = (call_ref), b_ = (call_cpu);                                                             \
    RC_CHECK(a_ == b_ && a_ != RESQ_OK, "%s: ref %s, cpu %s (%s)", what, resq_status_name(a_), resq_status_name(b_), \
             resq_last_error());                                                                              \
  } while (0)
  resq_qact_params q = p;
  q.bits_lo = 5;
  SAME(resq_quant_act_f32_q4q8__ref(&q, M, x, K, &a.q), resq_quant_act_f32_q4q8__cpu(&q, M, x, K, &b.q), "bits_lo 5");
  q = p;
  q.group = 48;
  SAME(resq_quant_act_f32_q4q8__ref(&q, M, x, K, &a.q), resq_quant_act_f32_q4q8__cpu(&q, M, x, K, &b.q), "group 48");
  q = p;
  q.clip = 0.0f;
  SAME(resq_quant_act_f32_q4q8__ref(&q, M, x, K, &a.q), resq_quant_act_f32_q4q8__cpu(&q, M, x, K, &b.q), "clip 0");
  q = p;
  q.r = 65;
  SAME(resq_quant_act_f32_q4q8__ref(&q, M, x, K, &a.q), resq_quant_act_f32_q4q8__cpu(&q, M, x, K, &b.q), "r > group");
  SAME(resq_quant_act_f32_q4q8__ref(&p, -1, x, K, &a.q), resq_quant_act_f32_q4q8__cpu(&p, -1, x, K, &b.q), "M < 0");
  SAME(resq_quant_act_f32_q4q8__ref(&p, M, NULL, K, &a.q), resq_quant_act_f32_q4q8__cpu(&p, M, NULL, K, &b.q), "NULL x");
  SAME(resq_quant_act_f32_q4q8__ref(&p, M, x, K - 1, &a.q), resq_quant_act_f32_q4q8__cpu(&p, M, x, K - 1, &b.q), "ldx < K");
  SAME(resq_quant_act_f32_q4q8__ref(&p, M, x, K, NULL), resq_quant_act_f32_q4q8__cpu(&p, M, x, K, NULL), "NULL output");
  a.q.ld_lo--;
  b.q.ld_lo--;
  SAME(resq_quant_act_f32_q4q8__ref(&p, M, x, K, &a.q), resq_quant_act_f32_q4q8__cpu(&p, M, x, K, &b.q), "ld_lo too small");
  a.q.ld_lo++;
  b.q.ld_lo++;
  uint8_t *save_a = a.q.q_hi, *save_b = b.q.q_hi;
  a.q.q_hi = b.q.q_hi = NULL;
  SAME(resq_quant_act_f32_q4q8__ref(&p, M, x, K, &a.q), resq_quant_act_f32_q4q8__cpu(&p, M, x, K, &b.q), "NULL q_hi");
  a.q.q_hi = save_a;
  b.q.q_hi = save_b;
  /* a range below maxq * 2^-149 (f32 input only): degenerate scale */
  float tiny[2 * 64];
  for (int i = 0; i < 2 * 64; i++) tiny[i] = i % 3 ? 1e-45f : 0.0f;
  SAME(resq_quant_act_f32_q4q8__ref(&p, M, tiny, K, &a.q), resq_quant_act_f32_q4q8__cpu(&p, M, tiny, K, &b.q),
       "degenerate scale");
  /* f16 input: only a clip ratio this small can make s degenerate (the f16 range path reports it) */
  uint16_t x16[2 * 64];
  for (int i = 0; i < 2 * 64; i++) x16[i] = resq_f32_to_f16(x[i]);
  q = p;
  q.clip = 1e-45f;
  SAME(resq_quant_act_f16_q4q8__ref(&q, M, x16, K, &a.q), resq_quant_act_f16_q4q8__cpu(&q, M, x16, K, &b.q),
       "f16 degenerate scale (clip 1e-45)");
  q = p;
  q.mode = RESQ_QMODE_PATH_B_BF16;
  RC_CHECK(resq_quant_act_f32_q4q8__cpu(&q, M, x, K, &b.q) == RESQ_ERR_UNSUPPORTED, "path B: %s", resq_last_error());
  RC_CHECK(resq_hadamard_quant_act_f16_q4q8__cpu(&q, M, (const uint16_t *)x, K, NULL, &b.q) == RESQ_ERR_UNSUPPORTED,
           "fused path B");
  q = resq_qact_default(100);
  RC_CHECK(resq_hadamard_quant_act_f16_q4q8__cpu(&q, 1, (const uint16_t *)x, 100, NULL, &b.q) == RESQ_ERR_UNSUPPORTED,
           "fused: n = 100 has no Hadamard");
  /* nothing written by the failed calls */
  qbuf fresh;
  qbuf_alloc(&fresh, &L, M, 0);
  compare(&b, &fresh, "after failed calls");
  RC_CHECK(resq_quant_act_f32_q4q8__cpu(&p, 0, NULL, K, &b.q) == RESQ_OK, "M = 0");
  qbuf_free(&fresh);
  qbuf_free(&a);
  qbuf_free(&b);
}

/* A degenerate scale in one part past the first block of 16 parts (groups of
 * 128, r = 16: the block-wise parameter pass and, for f16, the joint range
 * path): the CPU backend fails like the reference and names the same row and
 * channels. f32: the lo part of group 20 of row 1 holds only 1e-45 and 0;
 * f16: with clip = 2^-149 a part is degenerate when its range is below
 * 7.5 (4-bit) or 127.5 (8-bit), so the hi part of group 20 of row 1 holds
 * +-3 (s = 6 2^-149 / 255 rounds to 0; +-0.5 would round to +-0, which the
 * reference treats as an all-zero range) and every other channel +-1000. */
static void case_degenerate_parts(void) {
  if (!rc_case("degenerate_part_vs_ref")) return;
  const int64_t K = 4096, M = 3;
  resq_qact_params p = resq_qact_default(K);
  p.group = 128;
  p.r = 16;
  resq_qact_layout L;
  RC_CHECK(resq_qact_check(&p, &L) == RESQ_OK, "params: %s", resq_last_error());
  float *x = (float *)malloc((size_t)(M * K) * sizeof(float));
  uint16_t *x16 = (uint16_t *)malloc((size_t)(M * K) * sizeof(uint16_t));
  for (int f16 = 0; f16 <= 1; f16++) {
    resq_qact_params q = p;
    const int64_t c0 = 20 * 128 + (f16 ? 112 : 0), n = f16 ? 16 : 112;
    for (int64_t i = 0; i < M * K; i++) x[i] = i % 2 ? 1000.0f : -1000.0f;
    for (int64_t i = 0; i < n; i++) x[K + c0 + i] = f16 ? (i % 2 ? 3.0f : -3.0f) : (i % 3 ? 1e-45f : 0.0f);
    if (f16) {
      q.clip = 0x1p-149f;
      for (int64_t i = 0; i < M * K; i++) x16[i] = resq_f32_to_f16(x[i]);
    }
    for (int i = 0; i < g_nisa; i++) {
      resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
      qbuf a, b;
      qbuf_alloc(&a, &L, M, 0);
      qbuf_alloc(&b, &L, M, 0);
      resq_status sa = f16 ? resq_quant_act_f16_q4q8__ref(&q, M, x16, K, &a.q) : resq_quant_act_f32_q4q8__ref(&q, M, x, K, &a.q);
      char want[512];
      snprintf(want, sizeof want, "%s", resq_last_error());
      resq_status sb = f16 ? resq_quant_act_f16_q4q8__cpu(&q, M, x16, K, &b.q) : resq_quant_act_f32_q4q8__cpu(&q, M, x, K, &b.q);
      const char *got = resq_last_error();
      /* the CPU message adds " (rows may be partly written)" to the reference's */
      RC_CHECK(sa == RESQ_ERR_DEGENERATE && sb == RESQ_ERR_DEGENERATE && strncmp(want, got, strlen(want)) == 0,
               "%s, %s: ref %s \"%s\", cpu %s \"%s\"", f16 ? "f16" : "f32", resq_cpu_isa_name(resq_cpu_get_isa()),
               resq_status_name(sa), want, resq_status_name(sb), got);
      RC_CHECK(strstr(want, "row 1 channels [") != NULL, "reference message names row 1: \"%s\"", want);
      qbuf_free(&a);
      qbuf_free(&b);
    }
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  free(x), free(x16);
}

/* NaN and Inf inputs. The CPU backend does not scan values (resq/cpu.h), but
 * a part holding a NaN or Inf has a NaN or +-Inf range (f16 AVX-512: the
 * integer max picks the pattern; portable: a NaN flag; +-Inf by the compares)
 * and the fused path's rotation makes every output of such a row NaN/Inf, so
 * these fail with the reference's RESQ_ERR_NONFINITE. f16 input (quantizer
 * and fused), each split, NaN of both signs and +-Inf, in a lo or a hi part of
 * the middle row, every ISA; f32 input with +-Inf (an f32 NaN is skipped by
 * the AVX-512 min/max, as by the reference's compares: not detected). */
static void case_nonfinite(void) {
  if (!rc_case("nonfinite_inputs_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t K = 4096, M = 3;
  static const uint16_t bad16[4] = {0x7e00, 0xfe00, 0x7c00, 0xfc00};
  uint16_t *x16 = malloc((size_t)(M * K) * 2);
  float *x32 = malloc((size_t)(M * K) * 4);
  for (int v = 0; v < 3; v++) {
    resq_qact_params p = resq_qact_default(K);
    if (v == 1) p.group = 128, p.r = 16;
    if (v == 2) p.r = 0;
    resq_qact_layout L;
    resq_qact_check(&p, &L);
    qbuf a, b;
    qbuf_alloc(&a, &L, M, 0);
    qbuf_alloc(&b, &L, M, 0);
    for (int k = 0; k < 4; k++)
      for (int part = 0; part < 2; part++) {
        if (part == 1 && p.r == 0) continue;
        for (int64_t i = 0; i < M * K; i++) x16[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
        /* a channel of a lo part (part 0) or of a hi part (part 1) of row 1 */
        const int64_t g = (int64_t)resq_rng_below(&r, (uint64_t)(K / p.group)), lpg = p.group - p.r;
        const int64_t c = g * p.group + (part ? lpg + (int64_t)resq_rng_below(&r, (uint64_t)p.r)
                                              : (int64_t)resq_rng_below(&r, (uint64_t)lpg));
        x16[K + c] = bad16[k];
        for (int64_t i = 0; i < M * K; i++) x32[i] = resq_f16_to_f32(x16[i]);
        resq_status want = resq_quant_act_f16_q4q8__ref(&p, M, x16, K, &a.q);
        RC_CHECK(want == RESQ_ERR_NONFINITE, "ref: %s", resq_status_name(want));
        for (int i = 0; i < g_nisa; i++) {
          resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
          resq_status q16 = resq_quant_act_f16_q4q8__cpu(&p, M, x16, K, &b.q);
          resq_status fu = resq_hadamard_quant_act_f16_q4q8__cpu(&p, M, x16, K, NULL, &b.q);
          resq_status q32 = k >= 2 ? resq_quant_act_f32_q4q8__cpu(&p, M, x32, K, &b.q) : want;
          RC_CHECK(q16 == want && fu == want && q32 == want,
                   "split %d (group %lld r %lld), x[1][%lld] = %#x (%s part), %s: f16 %s, fused %s, f32 %s; ref %s", v,
                   (long long)p.group, (long long)p.r, (long long)c, bad16[k], part ? "hi" : "lo",
                   resq_cpu_isa_name(resq_cpu_get_isa()), resq_status_name(q16), resq_status_name(fu),
                   resq_status_name(q32), resq_status_name(want));
        }
      }
    qbuf_free(&a);
    qbuf_free(&b);
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  free(x16), free(x32);
}

int main(int argc, char **argv) {
  rc_init("cpu_quant_act_f32_q4q8_test", argc, argv);
  g_isas[g_nisa++] = RESQ_CPU_ISA_GENERIC;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX2)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX2;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX512)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX512;
  case_shapes();
  case_near_ties();
  case_extreme();
  case_folded_lo_tiny_clip();
  case_fused();
  case_errors();
  case_degenerate_parts();
  case_nonfinite();
  return rc_finish();
}
