/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_qgemm_common.h -- what the ResQ mixed-GEMM benchmarks of every
 * backend share (bench_gemm_cpu.c, bench_gemm_cuda.c): the three splits of a
 * decoder layer, random operands in the canonical layout, the byte counts,
 * and the bit-exact check of sampled outputs against resq_gemm_q4q8_f16__ref.
 *
 * Operands: random codes over the whole range (weights s4 [-8, 7] and s8;
 * activations u4 and u8 with valid scales and zero points); the GEMMs' speed
 * does not depend on the code values (no data-dependent branches). The weight
 * is packed in the canonical layout by resq_gemm_pack_weight (which computes
 * the group sums), row block by row block.
 *
 * Byte counts (ref/CONTRACT.md section 11 quantities): weights = packed 4-bit
 * codes at 0.5 byte, 8-bit codes at 1, the two fp32 scales per row and the two
 * int32 group sums per (row, group) of each non-empty part; activations =
 * codes + fp32 scale and int32 zero point per (row, group, part). A backend's
 * packed layout may pad (N to its panel width, parts to 4 columns): no padding
 * at the Llama shapes.
 *
 * The check: 4 rows (first, last, 2 random) x 3 panels of 32 columns (first,
 * middle, last) of the backend's f16 output against the reference restricted
 * to those rows and columns, bit for bit (the contract makes the integer part
 * and the fp32 epilogue exact). A full reference GEMM at the large shapes
 * would take minutes; every output is compared in the backends' own tests. */
#ifndef RESQ_BENCH_QGEMM_COMMON_H
#define RESQ_BENCH_QGEMM_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"

#define RB_CHECK_ROWS 4
#define RB_CHECK_PANELS 3
#define RB_CHECK_COLS 32

/* the three splits of a decoder layer's GEMMs */
enum { RB_V_TOKEN = 0, RB_V_GROUPED = 1, RB_V_INT4 = 2, RB_NVAR };
/*   token    group = K, r = K/8     q/k/v, gate/up
 *   grouped  group = 128, r = 16    o_proj (per head, head_dim 128)
 *   int4     group = K, r = 0       down_proj */
static inline resq_qact_params rb_qsplit(int v, int64_t K) {
  resq_qact_params p = resq_qact_default(K); /* group K, r K/8, 4/8 bits */
  if (v == RB_V_GROUPED) {
    p.group = 128;
    p.r = 16;
  } else if (v == RB_V_INT4) {
    p.r = 0;
  }
  return p;
}

/* Random codes in GEMM K order for rows [n0, n0+rows): lo columns [-8, 7], hi [-128, 127]. */
static inline void rb_fill_codes(resq_rng *r, int8_t *c, int64_t rows, int64_t K, int64_t Klo) {
  for (int64_t n = 0; n < rows; n++) {
    int8_t *row = c + n * K;
    for (int64_t k = 0; k < K; k += 8) {
      uint64_t u = resq_rng_u64(r);
      for (int64_t j = 0; j < 8 && k + j < K; j++) {
        int b = (int)((u >> (8 * j)) & 0xffu);
        row[k + j] = (int8_t)(k + j < Klo ? (b & 15) - 8 : b - 128);
      }
    }
  }
}

/* A canonical weight [N][K] of split variant v (host arrays) and its byte count. */
typedef struct rb_qw {
  int v;
  int64_t N, K;
  resq_qact_params p;
  resq_qact_layout L;
  resq_qweight w;
  double wbytes;
} rb_qw;

static inline void rb_qw_free(rb_qw *s) {
  rb_free(s->w.q_lo);
  rb_free(s->w.q_hi);
  rb_free(s->w.scale_lo);
  rb_free(s->w.scale_hi);
  rb_free(s->w.sum_lo);
  rb_free(s->w.sum_hi);
  memset(s, 0, sizeof *s);
}

/* Make the weight (seeded by `seedname`); on failure why is set (a skip when it
 * starts with RESQ_BENCH_SKIP_PREFIX) and -1 returned. */
static inline int rb_qw_make(rb_qw *s, int v, int64_t N, int64_t K, const char *seedname, char *why, size_t whylen) {
  memset(s, 0, sizeof *s);
  s->v = v;
  s->N = N;
  s->K = K;
  s->p = rb_qsplit(v, K);
  resq_status st = resq_gemm_check(&s->p, &s->L);
  if (st != RESQ_OK) {
    snprintf(why, whylen, "%ssplit K=%lld group=%lld r=%lld not supported: %s", RESQ_BENCH_SKIP_PREFIX, (long long)K,
             (long long)s->p.group, (long long)s->p.r, resq_last_error());
    return -1;
  }
  const int64_t G = s->L.ngroups, lpg = s->L.lo_per_group, r = s->p.r, Klo = G * lpg;
  s->w.N = N;
  s->w.ld_lo = s->L.lo_bytes;
  s->w.ld_hi = s->L.hi_bytes;
  s->w.q_lo = rb_alloc((size_t)(N * s->L.lo_bytes));
  s->w.q_hi = (int8_t *)rb_alloc((size_t)(N * s->L.hi_bytes));
  s->w.scale_lo = rb_alloc((size_t)N * 4);
  s->w.scale_hi = rb_alloc((size_t)N * 4);
  s->w.sum_lo = rb_alloc((size_t)(N * G) * 4);
  s->w.sum_hi = rb_alloc((size_t)(N * G) * 4);
  const int64_t chunk = 256;
  int8_t *codes = rb_alloc((size_t)(chunk * K));
  float *sl = rb_alloc((size_t)N * 4), *sh = rb_alloc((size_t)N * 4);
  if (!s->w.q_lo || !s->w.q_hi || !s->w.scale_lo || !s->w.scale_hi || !s->w.sum_lo || !s->w.sum_hi || !codes ||
      !sl || !sh) {
    snprintf(why, whylen, "out of memory (weight %lld x %lld)", (long long)N, (long long)K);
    rb_free(codes), rb_free(sl), rb_free(sh);
    return -1;
  }
  resq_rng rng;
  resq_rng_init(&rng, resq_seed_from_name(seedname));
  /* per-row scales of an LLM weight: lo ~ max|w|/7, hi ~ max|w|/127 */
  rb_fill_f32_uniform(&rng, sl, (size_t)N, 1e-3f, 4e-3f);
  rb_fill_f32_uniform(&rng, sh, (size_t)N, 1e-4f, 4e-4f);
  for (int64_t n0 = 0; n0 < N && st == RESQ_OK; n0 += chunk) {
    int64_t rows = N - n0 < chunk ? N - n0 : chunk;
    rb_fill_codes(&rng, codes, rows, K, Klo);
    resq_qweight o = {rows,
                      s->w.q_lo + n0 * s->w.ld_lo,
                      s->w.ld_lo,
                      s->w.q_hi + n0 * s->w.ld_hi,
                      s->w.ld_hi,
                      s->w.scale_lo + n0,
                      s->w.scale_hi + n0,
                      s->w.sum_lo + n0 * G,
                      s->w.sum_hi + n0 * G};
    st = resq_gemm_pack_weight(&s->p, rows, codes, K, sl + n0, sh + n0, &o);
  }
  rb_free(codes), rb_free(sl), rb_free(sh);
  if (st != RESQ_OK) {
    snprintf(why, whylen, "resq_gemm_pack_weight: %s: %s", resq_status_name(st), resq_last_error());
    return -1;
  }
  s->wbytes = (double)N * ((double)Klo * 0.5 + (double)(G * r)) + (lpg > 0 ? 4.0 * (double)N : 0.0) +
              (r > 0 ? 4.0 * (double)N : 0.0) + (lpg > 0 ? 4.0 * (double)(N * G) : 0.0) +
              (r > 0 ? 4.0 * (double)(N * G) : 0.0);
  return 0;
}

/* Activations of M rows: random codes, valid scales and zero points. */
typedef struct rb_qa {
  resq_qact x;
  double bytes;
} rb_qa;

static inline void rb_qa_free(rb_qa *a) {
  rb_free(a->x.q_lo);
  rb_free(a->x.q_hi);
  rb_free(a->x.scale_lo);
  rb_free(a->x.scale_hi);
  rb_free(a->x.zero_lo);
  rb_free(a->x.zero_hi);
}

static inline int rb_qa_make(rb_qa *a, const resq_qact_params *p, const resq_qact_layout *L, int64_t M) {
  const int64_t G = L->ngroups;
  memset(a, 0, sizeof *a);
  a->x.ld_lo = L->lo_bytes;
  a->x.ld_hi = L->hi_bytes;
  a->x.q_lo = rb_alloc((size_t)(M * L->lo_bytes));
  a->x.q_hi = rb_alloc((size_t)(M * L->hi_bytes));
  a->x.scale_lo = rb_alloc((size_t)(M * G) * 4);
  a->x.scale_hi = rb_alloc((size_t)(M * G) * 4);
  a->x.zero_lo = rb_alloc((size_t)(M * G) * 4);
  a->x.zero_hi = rb_alloc((size_t)(M * G) * 4);
  if (!a->x.q_lo || !a->x.q_hi || !a->x.scale_lo || !a->x.scale_hi || !a->x.zero_lo || !a->x.zero_hi) return -1;
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name("gemm_activations"));
  rb_fill_u8(&r, a->x.q_lo, (size_t)(M * L->lo_bytes)); /* any byte = two valid u4 codes */
  rb_fill_u8(&r, a->x.q_hi, (size_t)(M * L->hi_bytes)); /* any byte = a valid u8 code */
  if (L->lo_per_group % 2) /* an odd lo count leaves the last high nibble 0 (section 3) */
    for (int64_t m = 0; m < M; m++)
      for (int64_t g = 0; g < G; g++)
        a->x.q_lo[m * L->lo_bytes + g * L->lo_bytes_per_group + L->lo_bytes_per_group - 1] &= 0x0f;
  rb_fill_f32_uniform(&r, a->x.scale_lo, (size_t)(M * G), 0.05f, 0.5f);
  rb_fill_f32_uniform(&r, a->x.scale_hi, (size_t)(M * G), 0.005f, 0.05f);
  const int ml = resq_qmax_asym(p->bits_lo), mh = resq_qmax_asym(p->bits_hi);
  for (int64_t i = 0; i < M * G; i++) {
    a->x.zero_lo[i] = (int32_t)resq_rng_range(&r, 0, ml);
    a->x.zero_hi[i] = (int32_t)resq_rng_range(&r, 0, mh);
  }
  a->bytes = (double)(M * (L->lo_bytes + L->hi_bytes)) + (L->lo_per_group > 0 ? 8.0 * (double)(M * G) : 0.0) +
             (p->r > 0 ? 8.0 * (double)(M * G) : 0.0);
  return 0;
}

/* Bit-exact check of sampled rows x column panels against the reference. */
static inline int rb_qcheck(const rb_qw *s, const rb_qa *a, int64_t M, const uint16_t *y, const char *family,
                            const char *program, char *why, size_t whylen) {
  const int64_t N = s->N, G = s->L.ngroups;
  int64_t rows[RB_CHECK_ROWS], nrows = 0;
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name("gemm_check_rows"));
  int64_t cand[RB_CHECK_ROWS] = {0, M - 1, (int64_t)resq_rng_below(&r, (uint64_t)M), (int64_t)resq_rng_below(&r, (uint64_t)M)};
  for (int i = 0; i < RB_CHECK_ROWS; i++) {
    int dup = 0;
    for (int j = 0; j < nrows; j++) dup |= rows[j] == cand[i];
    if (!dup) rows[nrows++] = cand[i];
  }
  int64_t cw = N < RB_CHECK_COLS ? N : RB_CHECK_COLS;
  int64_t n0s[RB_CHECK_PANELS] = {0, (N / 2) / RB_CHECK_COLS * RB_CHECK_COLS, N - cw};
  uint16_t ref[RB_CHECK_COLS];
  for (int i = 0; i < nrows; i++) {
    const int64_t m = rows[i];
    resq_qact xm = {a->x.q_lo + m * a->x.ld_lo, a->x.ld_lo, a->x.q_hi + m * a->x.ld_hi, a->x.ld_hi,
                    a->x.scale_lo + m * G,       a->x.zero_lo + m * G, a->x.scale_hi + m * G, a->x.zero_hi + m * G};
    for (int c = 0; c < RB_CHECK_PANELS; c++) {
      const int64_t n0 = n0s[c] < 0 ? 0 : n0s[c];
      resq_qweight wn = {cw,
                         s->w.q_lo + n0 * s->w.ld_lo,
                         s->w.ld_lo,
                         s->w.q_hi + n0 * s->w.ld_hi,
                         s->w.ld_hi,
                         s->w.scale_lo + n0,
                         s->w.scale_hi + n0,
                         s->w.sum_lo + n0 * G,
                         s->w.sum_hi + n0 * G};
      resq_status st = resq_gemm_q4q8_f16__ref(&s->p, 1, &xm, &wn, NULL, ref, cw);
      if (st != RESQ_OK) {
        snprintf(why, whylen, "reference GEMM failed: %s: %s", resq_status_name(st), resq_last_error());
        return -1;
      }
      for (int64_t j = 0; j < cw; j++)
        if (y[m * N + n0 + j] != ref[j]) {
          snprintf(why, whylen,
                   "wrong result at (m=%lld, n=%lld): f16 0x%04x, reference 0x%04x (bit-exact contract); REPRO: "
                   "RESQ_BENCH_SET=%s %s --benchmark_filter='%s/M:%lld/N:%lld/K:%lld/'",
                   (long long)m, (long long)(n0 + j), y[m * N + n0 + j], ref[j], rb_quick() ? "quick" : "full",
                   program, family, (long long)M, (long long)N, (long long)s->K);
          return -1;
        }
    }
  }
  return 0;
}

#endif /* RESQ_BENCH_QGEMM_COMMON_H */
