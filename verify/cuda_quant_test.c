/* SPDX-License-Identifier: Apache-2.0
 * GPU test: the CUDA quantizers and fused kernels vs the reference, bit for bit
 * (ref/CONTRACT.md sections 3 and 5 are exact; the fused kernels are defined in
 * resq/cuda.h as exact compositions of reference functions):
 *   resq_quant_act_{f32,f16}_q4q8__cuda     per token, down_proj (r = 0), all 8-bit,
 *                                           per head (KV), grouped o_proj, odd parts,
 *                                           1..4 / 1..8 bits, clip < 1, groups > 4096,
 *                                           aligned (vector) and unaligned (scalar) layouts
 *   resq_dequant_act_q4q8_{f32,f16}__cuda
 *   resq_rmsnorm_quant_act_f16_q4q8__cuda   vs its definition (the kernel's documented
 *                                           summation order, re-implemented here), and the
 *                                           count of rows where that order's ms differs
 *                                           from the reference's sequential sum
 *   resq_hadamard_quant_f16_q4__cuda        vs resq_hadamard_f32__ref + quant ref
 *   resq_silu_hadamard_quant_f16_q4__cuda   vs SiLU*mul + resq_hadamard_f32__ref + quant ref
 *   resq_kv_cache_append_f16__cuda          vs quant ref into the cache rows, other rows untouched
 * plus the argument checks (reference status codes, path B -> UNSUPPORTED).
 * Every output buffer has guard bytes; all are compared. Exits 77 without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ref/src/layer_internal.h" /* resq_silu_f32: the reference layer's SiLU */
#include "cuda_test_util.h"
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq_check.h"
#include "resq_gpu.h"

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
        default: v = 0.5 * (double)resq_rng_range(r, -15, 15); break;                  /* ties */
      }
      if (k == 0 && j % 97 == 3) v = ldexp(v, -20); /* subnormal in f16 */
      x[m * ld + j] = resq_round_f16((float)v);
    }
  }
}

/* quantize with the reference and the CUDA backend; `offset` shifts the input
 * pointer by one element (unaligned: the scalar path) */
static void check_cfg(resq_rng *r, const resq_qact_params *p, int64_t M, int kind, int64_t ld, int64_t extra,
                      int offset) {
  resq_qact_layout L;
  if (!RC_CHECK(resq_qact_check(p, &L) == RESQ_OK, "params: %s", resq_last_error())) return;
  const int64_t K = p->K;
  size_t cnt = (size_t)(M * ld) + 2;
  float *x = calloc(cnt, 4);
  uint16_t *x16 = calloc(cnt, 2);
  fill_rows(r, x + offset, M, K, ld, kind);
  for (size_t i = 0; i < cnt; i++) x16[i] = resq_f32_to_f16(x[i]);
  float *dx = dup_h2d(x, cnt * 4);
  uint16_t *dx16 = dup_h2d(x16, cnt * 2);
  for (int src = 0; src < 2; src++) {
    tq_buf want, dev, got;
    tq_alloc(&want, &L, M, extra, 0);
    tq_alloc(&dev, &L, M, extra, 1);
    resq_status st = src ? resq_quant_act_f16_q4q8__ref(p, M, x16 + offset, ld, &want.q)
                         : resq_quant_act_f32_q4q8__ref(p, M, x + offset, ld, &want.q);
    RC_CHECK(st == RESQ_OK, "ref: %s", resq_last_error());
    st = src ? resq_quant_act_f16_q4q8__cuda(p, M, dx16 + offset, ld, &dev.q)
             : resq_quant_act_f32_q4q8__cuda(p, M, dx + offset, ld, &dev.q);
    RC_CHECK(st == RESQ_OK, "cuda: %s", resq_last_error());
    tq_download(&got, &dev, &L, M, extra);
    char tag[64];
    snprintf(tag, sizeof tag, "%s input", src ? "f16" : "f32");
    tq_compare(&got, &want, tag);
    /* dequantization of the reference's codes, f32 and f16, guard columns included */
    if (src == 1) {
      int64_t ldy = K + 3;
      size_t ny = (size_t)(M * ldy);
      float *yw = malloc(ny * 4), *yg = malloc(ny * 4);
      uint16_t *hw = malloc(ny * 2), *hg = malloc(ny * 2);
      for (size_t i = 0; i < ny; i++) yw[i] = -3.0f, hw[i] = 0x1234;
      RC_CHECK(resq_dequant_act_q4q8_f32__ref(p, M, &want.q, yw, ldy) == RESQ_OK, "ref dequant");
      RC_CHECK(resq_dequant_act_q4q8_f16__ref(p, M, &want.q, hw, ldy) == RESQ_OK, "ref dequant f16");
      float *dy = dev_fill(ny * 4, 0);
      uint16_t *dh = dev_fill(ny * 2, 0);
      for (size_t i = 0; i < ny; i++) yg[i] = -3.0f, hg[i] = 0x1234;
      resq_cuda_h2d(dy, yg, ny * 4);
      resq_cuda_h2d(dh, hg, ny * 2);
      /* the device copy of the reference's codes */
      tq_buf dq;
      tq_alloc(&dq, &L, M, extra, 1);
      resq_cuda_h2d(dq.q.q_lo, want.q.q_lo, want.nlo);
      resq_cuda_h2d(dq.q.q_hi, want.q.q_hi, want.nhi);
      resq_cuda_h2d(dq.q.scale_lo, want.q.scale_lo, want.ng * 4);
      resq_cuda_h2d(dq.q.zero_lo, want.q.zero_lo, want.ng * 4);
      resq_cuda_h2d(dq.q.scale_hi, want.q.scale_hi, want.ng * 4);
      resq_cuda_h2d(dq.q.zero_hi, want.q.zero_hi, want.ng * 4);
      RC_CHECK(resq_dequant_act_q4q8_f32__cuda(p, M, &dq.q, dy, ldy) == RESQ_OK, "cuda dequant: %s", resq_last_error());
      RC_CHECK(resq_dequant_act_q4q8_f16__cuda(p, M, &dq.q, dh, ldy) == RESQ_OK, "cuda dequant f16: %s", resq_last_error());
      d2h_sync(yg, dy, ny * 4);
      d2h_sync(hg, dh, ny * 2);
      rc_equal_f32_bits(yg, yw, ny, "dequant f32 (guards included)");
      rc_equal_u16(hg, hw, ny, "dequant f16 (guards included)");
      tq_free(&dq);
      resq_cuda_free(dy), resq_cuda_free(dh);
      free(yw), free(yg), free(hw), free(hg);
    }
    tq_free(&want), tq_free(&dev), tq_free(&got);
  }
  resq_cuda_free(dx), resq_cuda_free(dx16);
  free(x), free(x16);
}

static void case_quant(void) {
  if (!rc_case("quant_act_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* K, group, r, bits_lo, bits_hi, clip*100, M */
  static const int64_t cfg[][7] = {
      {4096, 4096, 512, 4, 8, 100, 1},   {4096, 4096, 512, 4, 8, 100, 67}, {4096, 4096, 0, 4, 8, 100, 5},
      {4096, 4096, 4096, 4, 8, 100, 3},  {14336, 14336, 0, 4, 8, 100, 9},  {28672, 28672, 0, 4, 8, 100, 3},
      {4096, 128, 16, 4, 8, 100, 33},    {1024, 128, 16, 4, 8, 100, 64},   {1024, 64, 8, 4, 8, 100, 2},
      {37, 37, 4, 4, 8, 100, 7},         {9, 9, 2, 4, 8, 100, 5},          {45, 15, 4, 4, 8, 100, 6},
      {1, 1, 0, 4, 8, 100, 3},           {1, 1, 1, 4, 8, 100, 3},          {256, 256, 32, 2, 6, 90, 4},
      {100, 100, 7, 3, 5, 75, 4},        {64, 32, 5, 1, 1, 100, 4},        {8192, 8192, 1024, 4, 8, 95, 2},
      {17, 17, 16, 4, 8, 100, 3},        {40960, 40960, 5120, 4, 8, 100, 2}, {24, 8, 0, 4, 8, 100, 300},
  };
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    resq_qact_params p = resq_qact_default(cfg[c][0]);
    p.group = cfg[c][1], p.r = cfg[c][2], p.bits_lo = (int)cfg[c][3], p.bits_hi = (int)cfg[c][4];
    p.clip = (float)cfg[c][5] / 100.0f;
    const int64_t M = cfg[c][6];
    for (int kind = 0; kind <= 5; kind++)
      for (int layout = 0; layout < 2; layout++) {
        rc_note("K=%lld group=%lld r=%lld bits=%d/%d clip=%g M=%lld kind=%d layout=%d", (long long)p.K,
                (long long)p.group, (long long)p.r, p.bits_lo, p.bits_hi, (double)p.clip, (long long)M, kind, layout);
        /* layout 0: contiguous, aligned (vector path where the parts allow it);
         * 1: odd leading dimension, input offset by one element, odd code ld */
        check_cfg(&r, &p, M, kind, layout ? p.K + 3 : p.K, layout ? 3 : 0, layout);
      }
  }
}

/* ---- fused RMSNorm + quantization ------------------------------------------------------- */
/* The kernel's documented order of the double sum of squares (resq/cuda.h,
 * cuda/src/rq_quant.cuh "Fused RMSNorm"), written again from that description:
 * chunks of 8 channels (lo part then hi part), TG = next power of two of the chunk
 * count (at most 512) threads, thread t sums chunks t, t+TG, ...; a butterfly over
 * the low five thread bits; then the warps' sums left to right. */
static double ss_tree(const float *x, int64_t K, int64_t r) {
  int64_t lo = K - r, nlo = (lo + 7) / 8, nhi = (r + 7) / 8, nch = nlo + nhi;
  int tg = 1;
  while (tg < nch && tg < 512) tg <<= 1;
  double part[512];
  for (int t = 0; t < tg; t++) {
    part[t] = 0.0;
    for (int64_t j = t; j < nch; j += tg) {
      int64_t e0 = j < nlo ? 8 * j : 8 * (j - nlo), len = j < nlo ? lo : r, col = j < nlo ? e0 : lo + e0;
      int64_t cnt = len - e0 < 8 ? len - e0 : 8;
      for (int64_t k = 0; k < cnt; k++) part[t] += (double)x[col + k] * (double)x[col + k];
    }
  }
  for (int k = 0; (1 << k) < tg && k < 5; k++) {
    double old[512];
    memcpy(old, part, sizeof(double) * (size_t)tg);
    for (int t = 0; t < tg; t++) part[t] = old[t] + old[t ^ (1 << k)];
  }
  double acc = part[0];
  for (int w = 1; w < tg / 32; w++) acc += part[w * 32];
  return acc;
}

static void case_rmsnorm(void) {
  if (!rc_case("rmsnorm_quant_vs_definition")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t Ks[][2] = {{4096, 512}, {4096, 0}, {256, 32}, {8192, 1024}, {5120, 640}, {37, 4}, {40960, 5120}};
  long rows_total = 0, rows_diff = 0;
  for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++) {
    const int64_t K = Ks[c][0], M = K >= 40960 ? 4 : 129, ld = K;
    const float eps = 1e-5f;
    for (int with_gamma = 0; with_gamma < 2; with_gamma++) {
      rc_note("K=%lld r=%lld M=%lld gamma=%d", (long long)K, (long long)Ks[c][1], (long long)M, with_gamma);
      resq_qact_params p = resq_qact_default(K);
      p.r = Ks[c][1];
      resq_qact_layout L;
      resq_qact_check(&p, &L);
      float *x = malloc(sizeof(float) * (size_t)(M * ld)), *a = malloc(sizeof(float) * (size_t)(M * K));
      float *aref = malloc(sizeof(float) * (size_t)(M * K)), *g = malloc(sizeof(float) * (size_t)K);
      uint16_t *x16 = malloc(2 * (size_t)(M * ld));
      fill_rows(&r, x, M, K, ld, 5);
      for (int64_t i = 0; i < K; i++) g[i] = resq_round_f16((float)(1.0 + 0.1 * resq_rng_normal(&r)));
      for (int64_t i = 0; i < M * ld; i++) x16[i] = resq_f32_to_f16(x[i]);
      const float *gp = with_gamma ? g : NULL;
      RC_CHECK(resq_rmsnorm_f32__ref(M, K, x, gp, eps, aref) == RESQ_OK, "ref rmsnorm");
      /* the definition: resq_rmsnorm_f32__ref's fp32 steps on the tree-ordered sum */
      int *differs = calloc((size_t)M, sizeof(int));
      for (int64_t i = 0; i < M; i++) {
        double ss = ss_tree(x + i * ld, K, p.r), seq = 0.0;
        for (int64_t j = 0; j < K; j++) seq += (double)x[i * ld + j] * x[i * ld + j];
        float ms = (float)(ss / (double)K), rinv = 1.0f / sqrtf(ms + eps);
        differs[i] = ms != (float)(seq / (double)K);
        rows_diff += differs[i], rows_total++;
        for (int64_t j = 0; j < K; j++) {
          float v = x[i * ld + j] * rinv;
          a[i * K + j] = gp ? v * gp[j] : v;
        }
      }
      tq_buf want, wref, dev, got;
      tq_alloc(&want, &L, M, 0, 0);
      tq_alloc(&wref, &L, M, 0, 0);
      tq_alloc(&dev, &L, M, 0, 1);
      RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, a, K, &want.q) == RESQ_OK, "ref quant");
      RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, M, aref, K, &wref.q) == RESQ_OK, "ref quant");
      uint16_t *dx = dup_h2d(x16, 2 * (size_t)(M * ld));
      float *dg = with_gamma ? dup_h2d(g, 4 * (size_t)K) : NULL;
      RC_CHECK(resq_rmsnorm_quant_act_f16_q4q8__cuda(&p, M, dx, ld, dg, eps, &dev.q) == RESQ_OK, "cuda: %s",
               resq_last_error());
      tq_download(&got, &dev, &L, M, 0);
      tq_compare(&got, &want, "fused RMSNorm + quant vs its definition");
      /* rows where both orders give the same ms equal the reference composition */
      for (int64_t i = 0; i < M; i++)
        if (!differs[i])
          RC_CHECK(!memcmp(got.q.q_lo + i * L.lo_bytes, wref.q.q_lo + i * L.lo_bytes, (size_t)L.lo_bytes) &&
                       !memcmp(got.q.q_hi + i * L.hi_bytes, wref.q.q_hi + i * L.hi_bytes, (size_t)L.hi_bytes),
                   "row %lld differs from resq_rmsnorm_f32__ref + quant", (long long)i);
      tq_free(&want), tq_free(&wref), tq_free(&dev), tq_free(&got);
      resq_cuda_free(dx), resq_cuda_free(dg);
      free(x), free(a), free(aref), free(g), free(x16), free(differs);
    }
  }
  printf("  %ld of %ld rows: the kernel's summation order rounds ms differently from the sequential sum\n",
         rows_diff, rows_total);
  /* a row differs only when ss/K lies within a few 1e-16 (relative) of an fp32
   * rounding boundary: probability ~2^-29 per row; 1 in 1000 would mean a broken order */
  RC_CHECK(rows_diff * 1000 <= rows_total, "%ld of %ld rows differ", rows_diff, rows_total);
}

/* ---- fused Hadamard + 4-bit quantization (plain and with SiLU*mul) ---------------------- */
static void check_fused(resq_rng *r, int64_t n, int64_t rows, int64_t ld, int with_signs, int silu, int bits,
                        float clip) {
  rc_note("n=%lld rows=%lld ld=%lld signs=%d silu=%d bits=%d clip=%g", (long long)n, (long long)rows, (long long)ld,
          with_signs, silu, bits, (double)clip);
  size_t cnt = (size_t)(rows * ld);
  float *g = malloc(cnt * 4), *u = malloc(cnt * 4), *z = malloc((size_t)(rows * n) * 4), *h = malloc((size_t)(rows * n) * 4);
  uint16_t *g16 = malloc(cnt * 2), *u16 = malloc(cnt * 2);
  fill_rows(r, g, rows, n, ld, 1);
  fill_rows(r, u, rows, n, ld, 0);
  for (size_t i = 0; i < cnt; i++) g16[i] = resq_f32_to_f16(g[i]), u16[i] = resq_f32_to_f16(u[i]);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < n; j++) {
      float gv = resq_f16_to_f32(g16[i * ld + j]), uv = resq_f16_to_f32(u16[i * ld + j]);
      z[i * n + j] = silu ? resq_silu_f32(gv) * uv : gv;
    }
  int8_t *s = malloc((size_t)n);
  resq_hadamard_random_signs(resq_rng_u64(r), n, s);
  const int8_t *sg = with_signs ? s : NULL;
  size_t ws = resq_hadamard_workspace_size(n);
  void *work = malloc(ws);
  RC_CHECK(resq_hadamard_f32__ref(rows, n, z, n, h, n, sg, work, ws) == RESQ_OK, "ref hadamard: %s", resq_last_error());
  resq_qact_params p = resq_qact_default(n);
  p.r = 0, p.bits_lo = bits, p.clip = clip;
  resq_qact_layout L;
  resq_qact_check(&p, &L);
  tq_buf want, dev, got;
  tq_alloc(&want, &L, rows, 1, 0);
  tq_alloc(&dev, &L, rows, 1, 1);
  RC_CHECK(resq_quant_act_f32_q4q8__ref(&p, rows, h, n, &want.q) == RESQ_OK, "ref quant: %s", resq_last_error());
  uint16_t *dg = dup_h2d(g16, cnt * 2), *du = dup_h2d(u16, cnt * 2);
  int8_t *ds = with_signs ? dup_h2d(s, (size_t)n) : NULL;
  resq_status st = silu ? resq_silu_hadamard_quant_f16_q4__cuda(rows, n, dg, ld, du, ld, ds, &p, &dev.q)
                        : resq_hadamard_quant_f16_q4__cuda(rows, n, dg, ld, ds, &p, &dev.q);
  RC_CHECK(st == RESQ_OK, "cuda: %s", resq_last_error());
  tq_download(&got, &dev, &L, rows, 1);
  tq_compare(&got, &want, silu ? "SiLU*mul + Hadamard + quant" : "Hadamard + quant");
  tq_free(&want), tq_free(&dev), tq_free(&got);
  resq_cuda_free(dg), resq_cuda_free(du), resq_cuda_free(ds);
  free(g), free(u), free(z), free(h), free(g16), free(u16), free(s), free(work);
}

static void case_fused(void) {
  if (!rc_case("fused_hadamard_quant_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t ns[] = {4096, 11008, 14336, 28672, 688, 8192, 128, 12, 1, 2, 172, 5120, 13824, 1024, 40};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
    for (int silu = 0; silu < 2; silu++) {
      int64_t rows = ns[i] <= 256 ? 300 : ns[i] <= 8192 ? 37 : 9;
      check_fused(&r, ns[i], rows, ns[i] + 8, 1, silu, 4, 1.0f); /* aligned rows: 16-byte path for K = 1 */
      check_fused(&r, ns[i], 3, ns[i] + 1, 0, silu, 3, 0.85f);   /* odd ld: scalar path */
    }
}

/* ---- KV cache ----------------------------------------------------------------------------- */
static void case_kv(void) {
  if (!rc_case("kv_cache_append_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][4] = {{8, 128, 16, 4}, {2, 64, 8, 1}, {4, 128, 0, 3}, {3, 72, 9, 5}}; /* G, hd, r, T */
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    const int64_t G = cfg[c][0], hd = cfg[c][1], T = cfg[c][3], cap = 11, pos = 6;
    resq_kv_cache kc;
    memset(&kc, 0, sizeof kc);
    kc.p = resq_qact_default(G * hd);
    kc.p.group = hd, kc.p.r = cfg[c][2];
    kc.capacity = cap;
    resq_qact_layout L;
    resq_qact_check(&kc.p, &L);
    rc_note("G=%lld hd=%lld r=%lld T=%lld pos=%lld", (long long)G, (long long)hd, (long long)cfg[c][2], (long long)T,
            (long long)pos);
    const int64_t K = G * hd, ld = K + 8;
    float *k = malloc(sizeof(float) * (size_t)(T * ld)), *v = malloc(sizeof(float) * (size_t)(T * ld));
    uint16_t *k16 = malloc(2 * (size_t)(T * ld)), *v16 = malloc(2 * (size_t)(T * ld));
    fill_rows(&r, k, T, K, ld, 1);
    fill_rows(&r, v, T, K, ld, 0);
    for (int64_t i = 0; i < T * ld; i++) k16[i] = resq_f32_to_f16(k[i]), v16[i] = resq_f32_to_f16(v[i]);
    /* expected: the cache buffers (0xa5 everywhere) with rows pos.. replaced by the reference's output */
    tq_buf wk, wv, dk, dv, gk, gv;
    tq_alloc(&wk, &L, cap, 0, 0), tq_alloc(&wv, &L, cap, 0, 0);
    tq_alloc(&dk, &L, cap, 0, 1), tq_alloc(&dv, &L, cap, 0, 1);
    resq_qact ok = wk.q, ov = wv.q;
    ok.q_lo += pos * ok.ld_lo, ok.q_hi += pos * ok.ld_hi;
    ok.scale_lo += pos * L.ngroups, ok.zero_lo += pos * L.ngroups, ok.scale_hi += pos * L.ngroups, ok.zero_hi += pos * L.ngroups;
    ov.q_lo += pos * ov.ld_lo, ov.q_hi += pos * ov.ld_hi;
    ov.scale_lo += pos * L.ngroups, ov.zero_lo += pos * L.ngroups, ov.scale_hi += pos * L.ngroups, ov.zero_hi += pos * L.ngroups;
    RC_CHECK(resq_quant_act_f16_q4q8__ref(&kc.p, T, k16, ld, &ok) == RESQ_OK, "ref k");
    RC_CHECK(resq_quant_act_f16_q4q8__ref(&kc.p, T, v16, ld, &ov) == RESQ_OK, "ref v");
    kc.k = dk.q, kc.v = dv.q;
    uint16_t *dk16 = dup_h2d(k16, 2 * (size_t)(T * ld)), *dv16 = dup_h2d(v16, 2 * (size_t)(T * ld));
    RC_CHECK(resq_kv_cache_append_f16__cuda(&kc, pos, T, dk16, ld, dv16, ld) == RESQ_OK, "cuda: %s", resq_last_error());
    tq_download(&gk, &dk, &L, cap, 0);
    tq_download(&gv, &dv, &L, cap, 0);
    tq_compare(&gk, &wk, "K cache");
    tq_compare(&gv, &wv, "V cache");
    /* refused: beyond the capacity, path B */
    RC_CHECK(resq_kv_cache_append_f16__cuda(&kc, cap - T + 1, T, dk16, ld, dv16, ld) == RESQ_ERR_SHAPE, "capacity");
    kc.p.mode = RESQ_QMODE_PATH_B_BF16;
    RC_CHECK(resq_kv_cache_append_f16__cuda(&kc, 0, T, dk16, ld, dv16, ld) == RESQ_ERR_UNSUPPORTED, "path B");
    tq_free(&wk), tq_free(&wv), tq_free(&dk), tq_free(&dv), tq_free(&gk), tq_free(&gv);
    resq_cuda_free(dk16), resq_cuda_free(dv16);
    free(k), free(v), free(k16), free(v16);
  }
}

/* ---- argument checks ------------------------------------------------------------------------ */
static void case_errors(void) {
  if (!rc_case("argument_errors")) return;
  const int64_t K = 64, M = 2;
  resq_qact_params p = resq_qact_default(K);
  resq_qact_layout L;
  resq_qact_check(&p, &L);
  tq_buf d;
  tq_alloc(&d, &L, M, 0, 1);
  float *dx = dev_fill(sizeof(float) * (size_t)(M * K), 0);
  /* same status as the reference for bad parameters and descriptors */
  resq_qact_params bad[6];
  for (int i = 0; i < 6; i++) bad[i] = p;
  bad[0].group = 7;  /* K % group: SHAPE */
  bad[1].r = 65;     /* r > group: INVALID_ARG */
  bad[2].bits_lo = 5; /* UNSUPPORTED */
  bad[3].bits_hi = 9;
  bad[4].clip = 1.5f;
  bad[5].K = 0;
  for (int i = 0; i < 6; i++) {
    float hx[128] = {0};
    tq_buf h;
    tq_alloc(&h, &L, M, 0, 0);
    resq_status want = resq_quant_act_f32_q4q8__ref(&bad[i], M, hx, K, &h.q);
    resq_status got = resq_quant_act_f32_q4q8__cuda(&bad[i], M, dx, K, &d.q);
    RC_CHECK(want != RESQ_OK && got == want, "bad params %d: cuda %s, ref %s", i, resq_status_name(got), resq_status_name(want));
    tq_free(&h);
  }
  resq_qact q = d.q;
  q.q_lo = NULL;
  RC_CHECK(resq_quant_act_f32_q4q8__cuda(&p, M, dx, K, &q) == RESQ_ERR_INVALID_ARG, "NULL q_lo");
  q = d.q;
  q.ld_lo = 3;
  RC_CHECK(resq_quant_act_f32_q4q8__cuda(&p, M, dx, K, &q) == RESQ_ERR_INVALID_ARG, "ld_lo too small");
  RC_CHECK(resq_quant_act_f32_q4q8__cuda(&p, M, dx, K - 1, &d.q) == RESQ_ERR_INVALID_ARG, "ldx < K");
  RC_CHECK(resq_quant_act_f32_q4q8__cuda(&p, -1, dx, K, &d.q) == RESQ_ERR_INVALID_ARG, "M < 0");
  resq_qact_params pb = p;
  pb.mode = RESQ_QMODE_PATH_B_BF16;
  RC_CHECK(resq_quant_act_f32_q4q8__cuda(&pb, M, dx, K, &d.q) == RESQ_ERR_UNSUPPORTED, "path B");
  RC_CHECK(resq_dequant_act_q4q8_f32__cuda(&pb, M, &d.q, dx, K) == RESQ_ERR_UNSUPPORTED, "path B dequant");
  /* fused: the documented restrictions */
  resq_qact_params pg = p;
  pg.group = 32;
  RC_CHECK(resq_rmsnorm_quant_act_f16_q4q8__cuda(&pg, M, (uint16_t *)dx, K, NULL, 1e-5f, &d.q) == RESQ_ERR_UNSUPPORTED,
           "rmsnorm with groups");
  RC_CHECK(resq_rmsnorm_quant_act_f16_q4q8__cuda(&p, M, (uint16_t *)dx, K, NULL, 0.0f, &d.q) == RESQ_ERR_INVALID_ARG,
           "eps = 0");
  RC_CHECK(resq_hadamard_quant_f16_q4__cuda(M, K, (uint16_t *)dx, K, NULL, &p, &d.q) == RESQ_ERR_UNSUPPORTED, "r > 0");
  resq_qact_params p0 = p;
  p0.r = 0;
  p0.K = 32, p0.group = 32;
  RC_CHECK(resq_hadamard_quant_f16_q4__cuda(M, K, (uint16_t *)dx, K, NULL, &p0, &d.q) == RESQ_ERR_SHAPE, "K != n");
  p0.K = 100, p0.group = 100;
  RC_CHECK(resq_hadamard_quant_f16_q4__cuda(M, 100, (uint16_t *)dx, 100, NULL, &p0, &d.q) == RESQ_ERR_UNSUPPORTED,
           "n = 100");
  p0.K = K, p0.group = K;
  RC_CHECK(resq_silu_hadamard_quant_f16_q4__cuda(M, K, (uint16_t *)dx, K, NULL, K, NULL, &p0, &d.q) ==
               RESQ_ERR_INVALID_ARG,
           "NULL u");
  tq_free(&d);
  resq_cuda_free(dx);
}

int main(int argc, char **argv) {
  rc_init("cuda_quant_test", argc, argv);
  rc_gpu_require("cuda_quant_test");
  case_quant();
  case_rmsnorm();
  case_fused();
  case_kv();
  case_errors();
  return rc_finish();
}
