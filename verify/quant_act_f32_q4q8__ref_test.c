/* SPDX-License-Identifier: Apache-2.0
 * Properties of the reference activation quantizer (ref/CONTRACT.md 3-5):
 * codes and zeros in range, the dequantization bound, half-to-even ties built
 * to be exact, the all-zero and constant rows, r = 0 and r = group, grouped =
 * per-group, the o_proj permutation, clip, path B's degenerate case, and
 * failures that write nothing. The bit-exact cross-language check is the golden
 * test; these are the properties any correct implementation must have. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq_check.h"

static const double k_u = 0x1p-24;

typedef struct {
  resq_qact q;
  resq_qact_layout L;
  int64_t M;
} qbuf;

static void qbuf_alloc(qbuf *b, const resq_qact_params *p, int64_t M) {
  memset(b, 0, sizeof *b);
  resq_qact_check(p, &b->L);
  b->M = M;
  size_t G = (size_t)(b->L.ngroups * M);
  b->q.q_lo = calloc((size_t)(b->L.lo_bytes * M) + 1, 1);
  b->q.q_hi = calloc((size_t)(b->L.hi_bytes * M) + 1, 1);
  b->q.ld_lo = b->L.lo_bytes;
  b->q.ld_hi = b->L.hi_bytes;
  b->q.scale_lo = calloc(G + 1, sizeof(float));
  b->q.scale_hi = calloc(G + 1, sizeof(float));
  b->q.zero_lo = calloc(G + 1, sizeof(int32_t));
  b->q.zero_hi = calloc(G + 1, sizeof(int32_t));
}

static void qbuf_free(qbuf *b) {
  free(b->q.q_lo), free(b->q.q_hi), free(b->q.scale_lo), free(b->q.scale_hi), free(b->q.zero_lo), free(b->q.zero_hi);
}

/* code of element j of row m (independent unpacking from the documented layout) */
static int code_at(const qbuf *b, const resq_qact_params *p, int64_t m, int64_t j, float *s, int32_t *z) {
  int64_t g = j / p->group, i = j % p->group, lo = p->group - p->r;
  if (i < lo) {
    uint8_t byte = b->q.q_lo[m * b->q.ld_lo + g * ((lo + 1) / 2) + i / 2];
    *s = b->q.scale_lo[m * b->L.ngroups + g];
    *z = b->q.zero_lo[m * b->L.ngroups + g];
    return (i & 1) ? byte >> 4 : byte & 15;
  }
  *s = b->q.scale_hi[m * b->L.ngroups + g];
  *z = b->q.zero_hi[m * b->L.ngroups + g];
  return b->q.q_hi[m * b->q.ld_hi + g * p->r + (i - lo)];
}

static void llm_rows(resq_rng *r, float *x, int64_t M, int64_t K) {
  float *cs = malloc(sizeof(float) * (size_t)K);
  for (int64_t j = 0; j < K; j++) cs[j] = (float)exp(0.5 * resq_rng_normal(r));
  /* ~0.5% outlier channels 50-1000x larger (assigned, not compounded, so f16 never overflows) */
  for (int k = 0; k < 1 + K / 200; k++) cs[resq_rng_below(r, (uint64_t)K)] = 50.0f + 950.0f * resq_rng_uniform_f32(r);
  for (int64_t i = 0; i < M * K; i++) x[i] = resq_round_f16((float)resq_rng_normal(r) * cs[i % K]);
  free(cs);
}

/* Run path A on x and check every per-element property. */
static void check_props(const resq_qact_params *p, int64_t M, const float *x, const char *label) {
  qbuf b;
  qbuf_alloc(&b, p, M);
  rc_note("%s M=%lld K=%lld group=%lld r=%lld bits=%d/%d clip=%g", label, (long long)M, (long long)p->K,
          (long long)p->group, (long long)p->r, p->bits_lo, p->bits_hi, (double)p->clip);
  resq_status st = resq_quant_act_f32_q4q8__ref(p, M, x, p->K, &b.q);
  if (!RC_CHECK(st == RESQ_OK, "%s: %s", label, resq_last_error())) {
    qbuf_free(&b);
    return;
  }
  float *y = malloc(sizeof(float) * (size_t)(M * p->K));
  RC_CHECK(resq_dequant_act_q4q8_f32__ref(p, M, &b.q, y, p->K) == RESQ_OK, "dequant");
  long bad_code = 0, bad_zero = 0, bad_err = 0, bad_pad = 0, bad_dq = 0, bad_zero_exact = 0;
  double worst = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < p->K; j++) {
      float s;
      int32_t z;
      int64_t i = j % p->group;
      int hi = i >= p->group - p->r;
      int maxq = resq_qmax_asym(hi ? p->bits_hi : p->bits_lo);
      int c = code_at(&b, p, m, j, &s, &z);
      bad_code += c < 0 || c > maxq;
      bad_zero += z < 0 || z > maxq || !(s > 0);
      bad_dq += memcmp(&y[m * p->K + j], &(float){s * (float)(c - z)}, 4) != 0;
      double xv = x[m * p->K + j];
      if (xv == 0.0) bad_zero_exact += c != z;
      /* inside the clipped range the error is at most s/2 (+ the two roundings, CONTRACT 8) */
      double tol = s / 2.0 + 2.0 * k_u * (fabs(xv) + (double)s * maxq);
      double err = fabs((double)y[m * p->K + j] - xv);
      if (p->clip == 1.0f) {
        bad_err += !(err <= tol);
        if (tol > 0 && err / tol > worst) worst = err / tol;
      }
    }
  for (int64_t m = 0; m < M; m++)
    for (int64_t g = 0; g < b.L.ngroups; g++)
      if ((p->group - p->r) % 2)
        bad_pad += (b.q.q_lo[m * b.q.ld_lo + g * b.L.lo_bytes_per_group + b.L.lo_bytes_per_group - 1] >> 4) != 0;
  RC_CHECK(bad_code == 0, "%s: %ld codes outside [0, maxq]", label, bad_code);
  RC_CHECK(bad_zero == 0, "%s: %ld (scale, zero) pairs with z outside [0, maxq] or s <= 0", label, bad_zero);
  RC_CHECK(bad_dq == 0, "%s: %ld dequantized values != s*(q-z)", label, bad_dq);
  RC_CHECK(bad_zero_exact == 0, "%s: %ld zeros not quantized to the zero point", label, bad_zero_exact);
  RC_CHECK(bad_pad == 0, "%s: %ld pad nibbles are not 0", label, bad_pad);
  if (p->clip == 1.0f) RC_CHECK(bad_err == 0, "%s: %ld dequant errors above s/2 + 2u(|x|+s*maxq) (worst ratio %.3f)",
                                label, bad_err, worst);
  /* guard against vacuous data: the input must be dense; the output only non-zero
   * (a 4-bit row with a 1000x outlier legitimately rounds most entries to 0) */
  rc_nontrivial_f32(x, (size_t)(M * p->K), 0.1, label);
  rc_nontrivial_f32(y, (size_t)(M * p->K), 1.0, label);
  free(y);
  qbuf_free(&b);
}

static void case_random_configs(void) {
  if (!rc_case("random_rows_all_properties")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const struct {
    int64_t K, group, r;
    int bl, bh;
    float clip;
  } cfg[] = {{4096, 4096, 512, 4, 8, 1}, {11008, 11008, 0, 4, 8, 1}, {14336, 14336, 1792, 4, 8, 1},
             {4096, 128, 16, 4, 8, 1},   {512, 64, 8, 4, 8, 1},      {9, 9, 1, 4, 8, 1},
             {7, 7, 0, 4, 8, 1},         {8, 8, 8, 4, 8, 1},         {96, 32, 5, 2, 6, 1},
             {96, 96, 12, 3, 4, 1},      {1, 1, 0, 4, 8, 1},         {1, 1, 1, 4, 8, 1},
             {256, 256, 32, 4, 8, 0.9f}, {128, 16, 3, 1, 1, 1}};
  for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
    resq_qact_params p = resq_qact_default(cfg[i].K);
    p.group = cfg[i].group;
    p.r = cfg[i].r;
    p.bits_lo = cfg[i].bl;
    p.bits_hi = cfg[i].bh;
    p.clip = cfg[i].clip;
    int64_t M = 3;
    float *x = malloc(sizeof(float) * (size_t)(M * p.K));
    llm_rows(&r, x, M, p.K);
    char label[64];
    snprintf(label, sizeof label, "cfg%zu", i);
    check_props(&p, M, x, label);
    free(x);
  }
}

/* s = 1 exactly (mn = 0, mx = maxq): x = j + 0.5 is an exact tie, x/s exact. */
static void case_ties(void) {
  if (!rc_case("exact_ties_round_half_even")) return;
  resq_qact_params p = resq_qact_default(32);
  p.r = 16; /* lo 16 (4-bit), hi 16 (8-bit) */
  float x[2 * 32];
  for (int i = 0; i < 16; i++) {
    x[i] = i == 15 ? 15.0f : (float)i + 0.5f;              /* row 0 lo: mx = 15 -> s = 1, z = 0 */
    x[16 + i] = i == 15 ? 255.0f : (float)(2 * i) + 0.5f; /* row 0 hi: mx = 255 -> s = 1 */
    x[32 + i] = i == 0 ? -15.0f : -(float)(i - 1) - 0.5f;  /* row 1 lo: mn = -15 -> s = 1, z = 15 */
    x[48 + i] = i == 0 ? -255.0f : -(float)(3 * i) - 0.5f; /* row 1 hi: s = 1, z = 255 */
  }
  qbuf b;
  qbuf_alloc(&b, &p, 2);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, 2, x, 32, &b.q) == RESQ_OK, "run");
  RC_CHECK(b.q.scale_lo[0] == 1.0f && b.q.scale_hi[0] == 1.0f && b.q.scale_lo[1] == 1.0f && b.q.scale_hi[1] == 1.0f,
           "scales are exactly 1");
  RC_CHECK(b.q.zero_lo[0] == 0 && b.q.zero_hi[0] == 0 && b.q.zero_lo[1] == 15 && b.q.zero_hi[1] == 255, "zeros");
  long bad = 0;
  for (int m = 0; m < 2; m++)
    for (int j = 0; j < 32; j++) {
      float s;
      int32_t z;
      int c = code_at(&b, &p, m, j, &s, &z);
      double v = x[m * 32 + j];
      double fl = floor(v);
      /* v = k + 0.5 exactly: half to even */
      long want = v - fl == 0.5 ? ((long)fl % 2 == 0 ? (long)fl : (long)fl + 1) : (long)v;
      want += z;
      if (c != want) {
        if (bad < 5) printf("  row %d col %d: x=%g code %d want %ld\n", m, j, v, c, want);
        bad++;
      }
    }
  RC_CHECK(bad == 0, "%ld tie codes are not half-to-even", bad);
  qbuf_free(&b);
}

static void case_zero_and_constant(void) {
  if (!rc_case("all_zero_and_constant_rows")) return;
  resq_qact_params p = resq_qact_default(64); /* r = 8 */
  float x[4 * 64];
  for (int j = 0; j < 64; j++) {
    x[j] = 0.0f;
    x[64 + j] = 3.25f;
    x[128 + j] = -0.75f;
    x[192 + j] = j == 17 ? 5.0f : 0.0f;
  }
  qbuf b;
  qbuf_alloc(&b, &p, 4);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, 4, x, 64, &b.q) == RESQ_OK, "run");
  /* all-zero: mn, mx = -1, 1; s = fp32(2/maxq); z = rint(1/s) = 7 / 127 (fp32(2/15) > 2/15) */
  RC_CHECK(b.q.scale_lo[0] == 2.0f / 15.0f && b.q.zero_lo[0] == 7, "4-bit all-zero: s=%a z=%d", (double)b.q.scale_lo[0],
           b.q.zero_lo[0]);
  RC_CHECK(b.q.scale_hi[0] == 2.0f / 255.0f && b.q.zero_hi[0] == 127, "8-bit all-zero: s=%a z=%d",
           (double)b.q.scale_hi[0], b.q.zero_hi[0]);
  float *y = malloc(sizeof(float) * 4 * 64);
  resq_dequant_act_q4q8_f32__ref(&p, 4, &b.q, y, 64);
  long bad = 0;
  for (int j = 0; j < 64; j++) bad += y[j] != 0.0f;
  RC_CHECK(bad == 0, "all-zero row dequantizes to exact zeros");
  RC_CHECK(b.q.zero_lo[1] == 0 && b.q.zero_lo[2] == 15, "positive constant -> z = 0, negative -> z = maxq");
  double worst = 0;
  for (int j = 0; j < 64; j++) {
    worst = fmax(worst, fabs(y[64 + j] - 3.25) / 3.25);
    worst = fmax(worst, fabs(y[128 + j] + 0.75) / 0.75);
  }
  RC_CHECK(worst < 4 * k_u, "constant rows reproduce their value to a few ulp (rel err %g)", worst);
  bad = 0;
  for (int j = 0; j < 64; j++) bad += j == 17 ? fabs(y[192 + j] - 5.0) > 4 * k_u * 5 : y[192 + j] != 0.0f;
  RC_CHECK(bad == 0, "single non-zero: zeros stay exact, the spike is kept");
  free(y);
  qbuf_free(&b);
}

static void case_edges(void) {
  if (!rc_case("r0_and_r_equals_group")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  float x[3 * 48];
  llm_rows(&r, x, 3, 48);
  resq_qact_params p = resq_qact_default(48);
  p.r = 0;
  resq_qact q0 = {calloc(3 * 24, 1), 24, NULL, 0, calloc(3, 4), calloc(3, 4), NULL, NULL};
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, 3, x, 48, &q0) == RESQ_OK, "r = 0 with NULL hi outputs: %s",
           resq_last_error());
  p.r = 48;
  resq_qact q1 = {NULL, 0, calloc(3 * 48, 1), 48, NULL, NULL, calloc(3, 4), calloc(3, 4)};
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, 3, x, 48, &q1) == RESQ_OK, "r = K with NULL lo outputs: %s",
           resq_last_error());
  /* r = K at 8 bits must equal the hi part of a split whose hi covers everything */
  p.r = 0;
  check_props(&p, 3, x, "r=0");
  p.r = 48;
  check_props(&p, 3, x, "r=K");
  free(q0.q_lo), free(q0.scale_lo), free(q0.zero_lo), free(q1.q_hi), free(q1.scale_hi), free(q1.zero_hi);
}

static void case_grouped(void) {
  if (!rc_case("grouped_equals_per_group_and_oproj_order")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t M = 3, H = 4, hd = 32, r_h = 4, K = H * hd;
  float *x = malloc(sizeof(float) * M * K);
  llm_rows(&r, x, M, K);
  resq_qact_params pg = resq_qact_default(K);
  pg.group = hd;
  pg.r = r_h;
  resq_qact_params ph = resq_qact_default(hd);
  ph.r = r_h;
  qbuf bg, bh;
  qbuf_alloc(&bg, &pg, M);
  qbuf_alloc(&bh, &ph, M * H);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&pg, M, x, K, &bg.q) == RESQ_OK, "grouped");
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&ph, M * H, x, hd, &bh.q) == RESQ_OK, "per head rows");
  rc_equal_bytes(bg.q.q_lo, bh.q.q_lo, (size_t)(M * bg.L.lo_bytes), "q_lo grouped vs per-head rows");
  rc_equal_bytes(bg.q.q_hi, bh.q.q_hi, (size_t)(M * bg.L.hi_bytes), "q_hi grouped vs per-head rows");
  rc_equal_f32_bits(bg.q.scale_lo, bh.q.scale_lo, (size_t)(M * H), "scale_lo");
  rc_equal_i32(bg.q.zero_hi, bh.q.zero_hi, (size_t)(M * H), "zero_hi");
  /* o_proj order: a permutation; the lo codes in q_lo order are the codes of the permuted columns */
  int32_t *order = malloc(sizeof(int32_t) * K);
  RC_CHECK(resq_oproj_column_order(H, hd, r_h, order) == RESQ_OK, "order");
  int *seen = calloc((size_t)K, sizeof(int));
  long perm_bad = 0, lay_bad = 0;
  for (int64_t j = 0; j < K; j++) perm_bad += order[j] < 0 || order[j] >= K || seen[order[j]]++;
  const int64_t Klo = H * (hd - r_h);
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < K; j++) {
      float s;
      int32_t z;
      int want = code_at(&bg, &pg, m, order[j], &s, &z);
      int got = j < Klo ? ((bg.q.q_lo[m * bg.q.ld_lo + j / 2] >> (4 * (j & 1))) & 15)
                        : bg.q.q_hi[m * bg.q.ld_hi + (j - Klo)];
      lay_bad += got != want;
    }
  RC_CHECK(perm_bad == 0, "o_proj order is a permutation");
  RC_CHECK(order[0] == 0 && order[Klo - 1] == (H - 1) * hd + hd - r_h - 1 && order[Klo] == hd - r_h &&
               order[K - 1] == K - 1,
           "order = lo columns head-major, then hi columns head-major");
  RC_CHECK(lay_bad == 0, "%ld permuted columns disagree with the packed q_lo/q_hi rows", lay_bad);
  free(seen), free(order), free(x);
  qbuf_free(&bg);
  qbuf_free(&bh);
}

static void case_clip(void) {
  if (!rc_case("clip_ratio")) return;
  resq_qact_params p = resq_qact_default(16);
  p.r = 0;
  p.clip = 0.5f;
  float x[16];
  for (int j = 0; j < 16; j++) x[j] = (float)j - 5.0f; /* [-5, 10] */
  qbuf b;
  qbuf_alloc(&b, &p, 1);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, 1, x, 16, &b.q) == RESQ_OK, "run");
  float want_s = (5.0f - -2.5f) / 15.0f;
  RC_CHECK(b.q.scale_lo[0] == want_s && b.q.zero_lo[0] == (int)nearbyintf(2.5f / want_s),
           "clip halves min and max: s=%g z=%d", (double)b.q.scale_lo[0], b.q.zero_lo[0]);
  float s;
  int32_t z;
  RC_CHECK(code_at(&b, &p, 0, 15, &s, &z) == 15 && code_at(&b, &p, 0, 0, &s, &z) == 0,
           "values beyond the clipped range saturate");
  qbuf_free(&b);
}

static void case_path_b(void) {
  if (!rc_case("path_b_bf16_parity_mode")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t M = 2, K = 2 * 64;
  float x[2 * 128];
  llm_rows(&r, x, M, K);
  resq_qact_params p = resq_qact_default(K);
  p.group = 64;
  p.r = 8;
  p.mode = RESQ_QMODE_PATH_B_BF16;
  qbuf b;
  qbuf_alloc(&b, &p, M);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, x, K, &b.q) == RESQ_OK, "run: %s", resq_last_error());
  long bad = 0;
  for (int i = 0; i < M * 2; i++) {
    bad += resq_round_bf16(b.q.scale_lo[i]) != b.q.scale_lo[i] || resq_round_bf16(b.q.scale_hi[i]) != b.q.scale_hi[i];
  }
  RC_CHECK(bad == 0, "path B scales are bf16 values");
  float *y = malloc(sizeof(float) * M * K);
  resq_dequant_act_q4q8_f32__ref(&p, M, &b.q, y, K);
  bad = 0;
  for (int i = 0; i < M * K; i++) bad += resq_round_bf16(y[i]) != y[i];
  RC_CHECK(bad == 0, "path B dequantized values are bf16 values");
  /* constant non-zero part: upstream divides by a zero scale -> refused, outputs untouched */
  for (int j = 56; j < 64; j++) x[j] = 2.0f;
  memset(b.q.q_hi, 0xab, (size_t)(M * b.L.hi_bytes));
  resq_status st = resq_quant_act_f32_q4q8__ref(&p, M, x, K, &b.q);
  int untouched = 1;
  for (int i = 0; i < M * b.L.hi_bytes; i++) untouched &= b.q.q_hi[i] == 0xab;
  RC_CHECK(st == RESQ_ERR_DEGENERATE && untouched && strstr(resq_last_error(), "row 0 channels [56, 64)"),
           "constant hi part: %s '%s', untouched %d", resq_status_name(st), resq_last_error(), untouched);
  p.mode = RESQ_QMODE_PATH_A;
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, x, K, &b.q) == RESQ_OK, "path A handles the same constant part");
  free(y);
  qbuf_free(&b);
}

static void case_f16_entry(void) {
  if (!rc_case("f16_entry_and_f16_dequant")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t M = 3, K = 256;
  float x[3 * 256];
  uint16_t xh[3 * 256], yh[3 * 256];
  llm_rows(&r, x, M, K);
  for (int i = 0; i < M * K; i++) xh[i] = resq_f32_to_f16(x[i]);
  resq_qact_params p = resq_qact_default(K);
  qbuf a, b;
  qbuf_alloc(&a, &p, M);
  qbuf_alloc(&b, &p, M);
  resq_quant_act_f32_q4q8__ref(&p, M, x, K, &a.q);
  RC_CHECK(resq_quant_act_f16_q4q8__ref(&p, M, xh, K, &b.q) == RESQ_OK, "f16 run");
  rc_equal_bytes(a.q.q_lo, b.q.q_lo, (size_t)(M * a.L.lo_bytes), "f16 vs f32 entry q_lo");
  rc_equal_bytes(a.q.q_hi, b.q.q_hi, (size_t)(M * a.L.hi_bytes), "f16 vs f32 entry q_hi");
  float y[3 * 256];
  resq_dequant_act_q4q8_f32__ref(&p, M, &a.q, y, K);
  RC_CHECK(resq_dequant_act_q4q8_f16__ref(&p, M, &a.q, yh, K) == RESQ_OK, "f16 dequant");
  long bad = 0;
  for (int i = 0; i < M * K; i++) bad += yh[i] != resq_f32_to_f16(y[i]);
  RC_CHECK(bad == 0, "f16 dequant = RNE_f16(f32 dequant)");
  qbuf_free(&a);
  qbuf_free(&b);
}

static void case_failures(void) {
  if (!rc_case("failures_write_nothing")) return;
  resq_qact_params p = resq_qact_default(64);
  float x[2 * 64];
  for (int i = 0; i < 128; i++) x[i] = (float)(i % 5);
  qbuf b;
  qbuf_alloc(&b, &p, 2);
  memset(b.q.q_lo, 0x5a, (size_t)(2 * b.L.lo_bytes));
  x[100] = NAN;
  resq_status st = resq_quant_act_f32_q4q8__ref(&p, 2, x, 64, &b.q);
  int untouched = 1;
  for (int i = 0; i < 2 * b.L.lo_bytes; i++) untouched &= b.q.q_lo[i] == 0x5a;
  RC_CHECK(st == RESQ_ERR_NONFINITE && untouched && strstr(resq_last_error(), "x[1][36]"), "NaN: %s '%s'",
           resq_status_name(st), resq_last_error());
  x[100] = 1.0f;
  resq_qact_params q = p;
  q.group = 48;
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&q, 2, x, 64, &b.q) == RESQ_ERR_SHAPE &&
               strstr(resq_last_error(), "not divisible"),
           "K %% group != 0 -> RESQ_ERR_SHAPE");
  q = p;
  q.bits_lo = 5;
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&q, 2, x, 64, &b.q) == RESQ_ERR_UNSUPPORTED, "bits_lo = 5");
  q = p;
  q.clip = 0.0f;
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&q, 2, x, 64, &b.q) == RESQ_ERR_INVALID_ARG, "clip = 0");
  q = p;
  q.r = 65;
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&q, 2, x, 64, &b.q) == RESQ_ERR_INVALID_ARG, "r > group");
  resq_qact nul = b.q;
  nul.q_hi = NULL;
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, 2, x, 64, &nul) == RESQ_ERR_INVALID_ARG, "NULL hi output");
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, 0, x, 64, &b.q) == RESQ_OK, "zero rows is fine");
  /* fp32 input so small that the scale underflows: refused as degenerate */
  float tiny[64];
  for (int i = 0; i < 64; i++) tiny[i] = i == 3 ? 0x1p-148f : 0.0f;
  st = resq_quant_act_f32_q4q8__ref(&p, 1, tiny, 64, &b.q);
  RC_CHECK(st == RESQ_ERR_DEGENERATE, "scale underflow: %s '%s'", resq_status_name(st), resq_last_error());
  qbuf_free(&b);
}

int main(int argc, char **argv) {
  rc_init("quant_act_f32_q4q8__ref_test", argc, argv);
  case_random_configs();
  case_ties();
  case_zero_and_constant();
  case_edges();
  case_grouped();
  case_clip();
  case_path_b();
  case_f16_entry();
  case_failures();
  return rc_finish();
}
