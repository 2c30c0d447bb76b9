/* SPDX-License-Identifier: Apache-2.0
 * CUDA mixed GEMM (resq/cuda_gemm.h) vs the reference, bit for bit, ON A GPU (label gpu; exits
 * 77 without one, RESQ_REQUIRE_GPU=1 makes that a failure).
 *
 * The kernels were written and compiled on machines without a GPU; the host emulation
 * (verify/cuda_gemm_host_test.cu) checks their arithmetic and data movement, this program
 * checks the hardware does the same:
 *  - many shapes (odd M/N/K, r = 0, r = K, odd lo counts, grouped o_proj splits, 1..4 / 1..8
 *    bits), every tile config, split-K 1/2/5/auto, f16 and f32 outputs, with and without bias,
 *    guard bands around the outputs, the split-K workspace zero after every call;
 *  - activation rows at every alignment granule (16/8/4/1 bytes);
 *  - Llama-shaped problems (q/k/v, gate/up, down_proj, grouped o_proj; M = 1..2048) checked on
 *    sampled row/column blocks with the reference on the same blocks;
 *  - the int32 extremes at the K limits (K_lo = 2^23, K_hi = 32768);
 *  - outputs over the whole f16 range (zero, subnormal, normal, overflow to Inf);
 *  - repeated calls give identical bits (the workspace is self-cleaning). */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq_check.h"
#include "resq_gpu.h"

#define GUARD 64
static const uint16_t CANARY16 = 0xdeadu;
static const uint32_t CANARY32 = 0x7fc0deadu;

static void *xmalloc(size_t n) {
  void *p = calloc(n + 64, 1);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", n);
    exit(2);
  }
  return p;
}

static void *dalloc(size_t n) {
  void *p = NULL;
  if (resq_cuda_malloc(&p, n + 64) != RESQ_OK) {
    fprintf(stderr, "cudaMalloc(%zu): %s\n", n, resq_last_error());
    exit(2);
  }
  resq_cuda_memset(p, 0, n + 64);
  return p;
}

static void h2d(void *d, const void *h, size_t n) {
  if (n && resq_cuda_h2d(d, h, n) != RESQ_OK) RC_FAIL("h2d: %s", resq_last_error());
}
static void d2h(void *h, const void *d, size_t n) {
  if (n && resq_cuda_d2h(h, d, n) != RESQ_OK) RC_FAIL("d2h: %s", resq_last_error());
}

enum { FILL_RANDOM = 0, FILL_MIN_ACC, FILL_MAX_CORR, FILL_POS };

typedef struct {
  resq_qact_params p;
  resq_qact_layout L;
  int64_t M, N;
  resq_qact x;  /* host */
  resq_qact dx; /* device (q_lo/q_hi possibly offset) */
  void *dlo, *dhi;
  resq_qweight w; /* host canonical */
  resq_qweight_cuda wc;
  int8_t *codes;
  float *wsl, *wsh, *bias, *dbias;
} prob;

static int prob_alloc(prob *P, int64_t M, int64_t N, int64_t K, int64_t group, int64_t r, int bl, int bh,
                      int64_t ld_extra, int xoff) {
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
  P->x.ld_lo = P->L.lo_bytes + ld_extra;
  P->x.ld_hi = P->L.hi_bytes + ld_extra;
  P->x.q_lo = xmalloc((size_t)(M * P->x.ld_lo));
  P->x.q_hi = xmalloc((size_t)(M * P->x.ld_hi));
  P->x.scale_lo = xmalloc((size_t)(M * G) * 4);
  P->x.scale_hi = xmalloc((size_t)(M * G) * 4);
  P->x.zero_lo = xmalloc((size_t)(M * G) * 4);
  P->x.zero_hi = xmalloc((size_t)(M * G) * 4);
  P->dx = P->x;
  P->dlo = dalloc((size_t)(M * P->x.ld_lo) + 16);
  P->dhi = dalloc((size_t)(M * P->x.ld_hi) + 16);
  P->dx.q_lo = (uint8_t *)P->dlo + xoff;
  P->dx.q_hi = (uint8_t *)P->dhi + xoff;
  P->dx.scale_lo = dalloc((size_t)(M * G) * 4);
  P->dx.scale_hi = dalloc((size_t)(M * G) * 4);
  P->dx.zero_lo = dalloc((size_t)(M * G) * 4);
  P->dx.zero_hi = dalloc((size_t)(M * G) * 4);
  P->w.N = N;
  P->w.q_lo = xmalloc((size_t)(N * P->L.lo_bytes));
  P->w.ld_lo = P->L.lo_bytes;
  P->w.q_hi = xmalloc((size_t)(N * P->L.hi_bytes));
  P->w.ld_hi = P->L.hi_bytes;
  P->w.scale_lo = xmalloc((size_t)N * 4);
  P->w.scale_hi = xmalloc((size_t)N * 4);
  P->w.sum_lo = xmalloc((size_t)(N * G) * 4);
  P->w.sum_hi = xmalloc((size_t)(N * G) * 4);
  P->codes = xmalloc((size_t)(N * K));
  P->wsl = xmalloc((size_t)N * 4);
  P->wsh = xmalloc((size_t)N * 4);
  P->bias = xmalloc((size_t)N * 4);
  P->dbias = dalloc((size_t)N * 4);
  return 1;
}

static void prob_free(prob *P) {
  free(P->x.q_lo), free(P->x.q_hi), free(P->x.scale_lo), free(P->x.scale_hi), free(P->x.zero_lo), free(P->x.zero_hi);
  resq_cuda_free(P->dlo), resq_cuda_free(P->dhi), resq_cuda_free(P->dx.scale_lo), resq_cuda_free(P->dx.scale_hi);
  resq_cuda_free(P->dx.zero_lo), resq_cuda_free(P->dx.zero_hi), resq_cuda_free(P->dbias);
  free(P->w.q_lo), free(P->w.q_hi), free(P->w.scale_lo), free(P->w.scale_hi), free(P->w.sum_lo), free(P->w.sum_hi);
  free(P->codes), free(P->wsl), free(P->wsh), free(P->bias);
  resq_gemm_free_weight__cuda(&P->wc);
}

static void fill(prob *P, resq_rng *r, int f) {
  const int64_t K = P->p.K, G = P->L.ngroups, Klo = G * P->L.lo_per_group;
  const int ml = resq_qmax_asym(P->p.bits_lo), mh = resq_qmax_asym(P->p.bits_hi);
  for (int64_t n = 0; n < P->N; n++) {
    for (int64_t k = 0; k < K; k++) {
      int hi = k >= Klo, c;
      if (f == FILL_RANDOM) c = hi ? (int)resq_rng_range(r, -128, 127) : (int)resq_rng_range(r, -8, 7);
      else if (f == FILL_POS) c = hi ? 127 : 7;
      else c = hi ? -128 : -8;
      P->codes[n * K + k] = (int8_t)c;
    }
    P->wsl[n] = f == FILL_RANDOM ? 0.01f + resq_rng_uniform_f32(r) : 1e-3f;
    P->wsh[n] = f == FILL_RANDOM ? 0.001f + resq_rng_uniform_f32(r) * 0.01f : 1e-3f;
    P->bias[n] = (float)resq_rng_normal(r);
  }
  for (int64_t m = 0; m < P->M; m++)
    for (int64_t g = 0; g < G; g++) {
      uint8_t *lo = P->x.q_lo + m * P->x.ld_lo + g * P->L.lo_bytes_per_group;
      memset(lo, 0, (size_t)P->L.lo_bytes_per_group);
      for (int64_t i = 0; i < P->L.lo_per_group; i++) {
        int c = f == FILL_RANDOM ? (int)resq_rng_range(r, 0, ml) : (f == FILL_MAX_CORR ? 0 : ml);
        lo[i / 2] |= (uint8_t)(c << (4 * (i & 1)));
      }
      for (int64_t i = 0; i < P->p.r; i++)
        P->x.q_hi[m * P->x.ld_hi + g * P->p.r + i] =
            (uint8_t)(f == FILL_RANDOM ? resq_rng_range(r, 0, mh) : (f == FILL_MAX_CORR ? 0 : mh));
      P->x.scale_lo[m * G + g] = f == FILL_RANDOM ? 0.05f + resq_rng_uniform_f32(r) : 1e-3f;
      P->x.scale_hi[m * G + g] = f == FILL_RANDOM ? 0.005f + resq_rng_uniform_f32(r) * 0.05f : 1e-3f;
      P->x.zero_lo[m * G + g] = f == FILL_RANDOM ? (int32_t)resq_rng_range(r, 0, ml) : (f == FILL_MAX_CORR ? ml : 0);
      P->x.zero_hi[m * G + g] = f == FILL_RANDOM ? (int32_t)resq_rng_range(r, 0, mh) : (f == FILL_MAX_CORR ? mh : 0);
    }
}

/* reference pack, upload of activations and the packed weight */
static int upload(prob *P) {
  if (!RC_CHECK(resq_gemm_pack_weight(&P->p, P->N, P->codes, P->p.K, P->wsl, P->wsh, &P->w) == RESQ_OK, "ref pack: %s",
                resq_last_error()))
    return 0;
  if (!RC_CHECK(resq_gemm_upload_weight__cuda(&P->p, &P->w, &P->wc) == RESQ_OK, "upload: %s", resq_last_error()))
    return 0;
  int64_t M = P->M, G = P->L.ngroups;
  h2d(P->dx.q_lo, P->x.q_lo, (size_t)(M * P->x.ld_lo));
  h2d(P->dx.q_hi, P->x.q_hi, (size_t)(M * P->x.ld_hi));
  h2d(P->dx.scale_lo, P->x.scale_lo, (size_t)(M * G) * 4);
  h2d(P->dx.scale_hi, P->x.scale_hi, (size_t)(M * G) * 4);
  h2d(P->dx.zero_lo, P->x.zero_lo, (size_t)(M * G) * 4);
  h2d(P->dx.zero_hi, P->x.zero_hi, (size_t)(M * G) * 4);
  h2d(P->dbias, P->bias, (size_t)P->N * 4);
  return 1;
}

/* Reference outputs of the block rows [m0, m0+mc) x columns [n0, n0+nc) (pointer offsets into the
 * canonical operands), ld = nc. */
static int ref_block(const prob *P, int64_t m0, int64_t mc, int64_t n0, int64_t nc, int with_bias, uint16_t *r16,
                     float *r32) {
  const int64_t G = P->L.ngroups;
  resq_qact x = P->x;
  x.q_lo += m0 * x.ld_lo;
  x.q_hi += m0 * x.ld_hi;
  x.scale_lo += m0 * G, x.scale_hi += m0 * G, x.zero_lo += m0 * G, x.zero_hi += m0 * G;
  resq_qweight w = P->w;
  w.N = nc;
  w.q_lo += n0 * w.ld_lo;
  w.q_hi += n0 * w.ld_hi;
  w.scale_lo += n0, w.scale_hi += n0, w.sum_lo += n0 * G, w.sum_hi += n0 * G;
  const float *b = with_bias ? P->bias + n0 : NULL;
  return RC_CHECK(resq_gemm_q4q8_f16__ref(&P->p, mc, &x, &w, b, r16, nc) == RESQ_OK &&
                      resq_gemm_q4q8_f32__ref(&P->p, mc, &x, &w, b, r32, nc) == RESQ_OK,
                  "ref: %s", resq_last_error());
}

typedef struct {
  resq_gemm_tile tile;
  int splits;
} variant;

static const char *tile_name(resq_gemm_tile t) {
  return t == RESQ_GEMM_TILE_DECODE ? "decode" : t == RESQ_GEMM_TILE_PREFILL ? "prefill" : "auto";
}

/* One launch (f16 and f32) into guarded device buffers; compare the blocks (m0, mc, n0, nc) with
 * their reference outputs r16[b], r32[b]. */
static void run_variant(prob *P, variant v, int with_bias, const int64_t (*blocks)[4], int nblocks, uint16_t **ref16,
                        float **ref32, void *work, size_t work_size) {
  const int64_t M = P->M, N = P->N, ldy = N + (with_bias ? 5 : 0);
  const size_t tot = (size_t)(M * ldy) + 2 * GUARD;
  uint16_t *h16 = xmalloc(tot * 2);
  uint32_t *h32 = xmalloc(tot * 4);
  for (size_t i = 0; i < tot; i++) h16[i] = CANARY16, h32[i] = CANARY32;
  uint16_t *d16 = dalloc(tot * 2);
  float *d32 = dalloc(tot * 4);
  h2d(d16, h16, tot * 2);
  h2d(d32, h32, tot * 4);
  resq_gemm_cuda_opts o = {v.tile, v.splits, work, work_size};
  char tag[96];
  snprintf(tag, sizeof tag, "%s splits=%d%s", tile_name(v.tile), v.splits, with_bias ? " bias" : "");
  const float *bias = with_bias ? P->dbias : NULL;
  resq_status s16 = resq_gemm_q4q8_f16__cuda(&P->p, M, &P->dx, &P->wc, bias, d16 + GUARD, ldy, &o);
  resq_status s32 = resq_gemm_q4q8_f32__cuda(&P->p, M, &P->dx, &P->wc, bias, d32 + GUARD, ldy, &o);
  resq_status ss = resq_cuda_sync();
  if (RC_CHECK(s16 == RESQ_OK && s32 == RESQ_OK && ss == RESQ_OK, "%s: status %d/%d/%d: %s", tag, s16, s32, ss,
               resq_last_error())) {
    d2h(h16, d16, tot * 2);
    d2h(h32, d32, tot * 4);
    /* guard bands and the gap columns keep their canary */
    long canary = 0;
    for (size_t i = 0; i < tot; i++) {
      int64_t j = (int64_t)i - GUARD;
      int inside = j >= 0 && j < M * ldy && (j % ldy) < N;
      if (!inside) canary += h16[i] != CANARY16 || h32[i] != CANARY32;
    }
    RC_CHECK(canary == 0, "%s: %ld guard/gap elements overwritten", tag, canary);
    long bad16 = 0, bad32 = 0;
    for (int b = 0; b < nblocks; b++) {
      int64_t m0 = blocks[b][0], mc = blocks[b][1], n0 = blocks[b][2], nc = blocks[b][3];
      const uint16_t *r16 = ref16[b];
      const float *r32 = ref32[b];
      for (int64_t m = 0; m < mc; m++)
        for (int64_t n = 0; n < nc; n++) {
          size_t at = GUARD + (size_t)((m0 + m) * ldy + n0 + n);
          if (h16[at] != r16[m * nc + n]) {
            if (bad16 < 3)
              printf("  %s: y16[%lld][%lld] = 0x%04x, ref 0x%04x\n", tag, (long long)(m0 + m), (long long)(n0 + n),
                     h16[at], r16[m * nc + n]);
            bad16++;
          }
          if (memcmp(&h32[at], &r32[m * nc + n], 4)) {
            float g;
            memcpy(&g, &h32[at], 4);
            if (bad32 < 3)
              printf("  %s: y32[%lld][%lld] = %a, ref %a\n", tag, (long long)(m0 + m), (long long)(n0 + n), (double)g,
                     (double)r32[m * nc + n]);
            bad32++;
          }
        }
    }
    RC_CHECK(bad16 == 0 && bad32 == 0, "%s: %ld f16 and %ld f32 outputs differ from the reference", tag, bad16, bad32);
    if (work) { /* self-cleaning workspace */
      size_t n4 = work_size / 4;
      int32_t *ws = xmalloc(n4 * 4);
      d2h(ws, work, n4 * 4);
      long nz = 0;
      for (size_t i = 0; i < n4; i++) nz += ws[i] != 0;
      RC_CHECK(nz == 0, "%s: %ld workspace words not zero after the call", tag, nz);
      free(ws);
    }
  }
  resq_cuda_free(d16), resq_cuda_free(d32);
  free(h16), free(h32);
}

static const variant k_variants[] = {{RESQ_GEMM_TILE_DECODE, 1},  {RESQ_GEMM_TILE_DECODE, 2},
                                     {RESQ_GEMM_TILE_DECODE, 5},  {RESQ_GEMM_TILE_DECODE, 0},
                                     {RESQ_GEMM_TILE_PREFILL, 1}, {RESQ_GEMM_TILE_AUTO, 0}};

/* Every variant (the first nvariants), with and without bias, against the reference on the
 * blocks (NULL: the whole output); the reference runs once per block and bias. */
static void check_all(prob *P, const int64_t (*blocks)[4], int nblocks, int nvariants) {
  int64_t whole[1][4] = {{0, P->M, 0, P->N}};
  if (!blocks) blocks = (const int64_t(*)[4])whole, nblocks = 1;
  size_t wsb = resq_gemm_workspace_size__cuda(&P->wc, P->M);
  void *work = dalloc(wsb);
  const int nv = (int)(sizeof k_variants / sizeof k_variants[0]);
  if (nvariants > nv) nvariants = nv;
  uint16_t *r16[8];
  float *r32[8];
  for (int bias = 0; bias < 2; bias++) {
    int ok = 1;
    for (int b = 0; b < nblocks; b++) {
      r16[b] = xmalloc((size_t)(blocks[b][1] * blocks[b][3]) * 2);
      r32[b] = xmalloc((size_t)(blocks[b][1] * blocks[b][3]) * 4);
      ok &= ref_block(P, blocks[b][0], blocks[b][1], blocks[b][2], blocks[b][3], bias, r16[b], r32[b]);
    }
    for (int v = 0; ok && v < nvariants; v++) run_variant(P, k_variants[v], bias, blocks, nblocks, r16, r32, work, wsb);
    for (int b = 0; b < nblocks; b++) free(r16[b]), free(r32[b]);
  }
  resq_cuda_free(work);
}

/* M, N, K, group, r, bits_lo, bits_hi, ld_extra, offset */
static const int64_t k_shapes[][9] = {
    {1, 64, 256, 256, 32, 4, 8, 0, 0},        {2, 130, 1000, 1000, 125, 4, 8, 0, 0},
    {16, 64, 4096, 4096, 512, 4, 8, 0, 0},    {17, 100, 129, 129, 16, 4, 8, 0, 0},
    {33, 257, 64, 64, 8, 4, 8, 0, 0},         {130, 129, 512, 512, 64, 4, 8, 0, 0},
    {5, 7, 1, 1, 0, 4, 8, 0, 0},              {3, 9, 2, 2, 2, 4, 8, 0, 0},
    {9, 41, 100, 100, 13, 3, 7, 0, 0},        {12, 64, 256, 256, 32, 2, 5, 0, 0},
    {7, 65, 96, 96, 96, 4, 8, 0, 0},          {1, 1, 64, 64, 8, 1, 1, 0, 0},
    {3, 20, 300, 300, 37, 4, 8, 3, 1},        {6, 70, 512, 512, 64, 4, 8, 4, 4},
    {6, 70, 512, 512, 64, 4, 8, 8, 8},        {6, 70, 512, 512, 64, 4, 8, 2, 2},
    {200, 300, 384, 384, 48, 4, 8, 16, 0},    {257, 70, 1024, 1024, 128, 4, 8, 0, 0},
    {7, 70, 1376, 1376, 0, 4, 8, 0, 0},       {130, 260, 512, 512, 0, 4, 8, 0, 0},
    {2, 16, 11008, 11008, 0, 4, 8, 0, 0},     {5, 64, 512, 128, 16, 4, 8, 0, 0},
    {3, 70, 256, 64, 8, 4, 8, 0, 0},          {20, 33, 200, 40, 6, 4, 8, 0, 0},
    {4, 17, 120, 20, 2, 4, 8, 0, 0},          {2, 8, 64, 8, 0, 4, 8, 0, 0},
    {2, 8, 48, 12, 12, 4, 8, 0, 0},           {3, 21, 96, 24, 4, 4, 8, 1, 1},
    {130, 200, 512, 128, 16, 4, 8, 0, 0},     {300, 520, 640, 640, 80, 4, 8, 0, 0},
};

static void case_shapes(void) {
  if (!rc_case("shapes_all_variants")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  for (size_t c = 0; c < sizeof k_shapes / sizeof k_shapes[0]; c++) {
    const int64_t *k = k_shapes[c];
    prob P;
    if (!RC_CHECK(prob_alloc(&P, k[0], k[1], k[2], k[3], k[4], (int)k[5], (int)k[6], k[7], (int)k[8]), "split %zu: %s",
                  c, resq_last_error()))
      continue;
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld bits=%lld/%lld ld+%lld off%lld", (long long)k[0], (long long)k[1],
            (long long)k[2], (long long)k[3], (long long)k[4], (long long)k[5], (long long)k[6], (long long)k[7],
            (long long)k[8]);
    fill(&P, &r, FILL_RANDOM);
    if (upload(&P)) check_all(&P, NULL, 0, 99);
    prob_free(&P);
  }
}

/* Llama-shaped layers: q/k/v (K 4096, r 512), gate/up (N 14336), down (K 14336, r 0), grouped
 * o_proj (group 128, r 16), at decode and prefill M; sampled blocks (corners and the middle of
 * both dimensions) against the reference on the same blocks. */
static void case_llama(void) {
  if (!rc_case("llama_shapes_sampled")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][5] = {{1, 4096, 4096, 4096, 512},     {16, 1024, 4096, 4096, 512},
                                   {16, 14336, 4096, 4096, 512},   {512, 4096, 4096, 4096, 512},
                                   {2048, 4096, 4096, 4096, 512},  {1, 4096, 14336, 14336, 0},
                                   {16, 4096, 14336, 14336, 0},    {512, 4096, 14336, 14336, 0},
                                   {1, 4096, 4096, 128, 16},       {16, 4096, 4096, 128, 16},
                                   {512, 4096, 4096, 128, 16},     {16, 8192, 8192, 8192, 1024}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    const int64_t M = cfg[c][0], N = cfg[c][1];
    prob P;
    if (!prob_alloc(&P, M, N, cfg[c][2], cfg[c][3], cfg[c][4], 4, 8, 0, 0)) continue;
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld", (long long)M, (long long)N, (long long)cfg[c][2],
            (long long)cfg[c][3], (long long)cfg[c][4]);
    fill(&P, &r, FILL_RANDOM);
    int64_t mc = M < 24 ? M : 24, nc = 72;
    int64_t blocks[4][4] = {{0, mc, 0, nc}, {M - mc, mc, N - nc, nc}, {(M - mc) / 2, mc, (N - nc) / 2, nc},
                            {0, mc, N - nc, nc}};
    if (upload(&P)) check_all(&P, (const int64_t(*)[4])blocks, 4, 6);
    prob_free(&P);
  }
}

/* Activations quantized by the reference from LLM-like rows with outlier channels. */
static void case_llm_like(void) {
  if (!rc_case("llm_like_operands")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][5] = {{1, 96, 4096, 4096, 512}, {64, 40, 4096, 4096, 512}, {16, 40, 14336, 14336, 0},
                                   {257, 64, 4096, 128, 16}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    int64_t M = cfg[c][0], K = cfg[c][2];
    prob P;
    if (!prob_alloc(&P, M, cfg[c][1], K, cfg[c][3], cfg[c][4], 4, 8, 0, 0)) continue;
    rc_note("M=%lld N=%lld K=%lld group=%lld r=%lld", (long long)M, (long long)cfg[c][1], (long long)K,
            (long long)cfg[c][3], (long long)cfg[c][4]);
    fill(&P, &r, FILL_RANDOM);
    float *x = xmalloc(sizeof(float) * (size_t)(M * K));
    for (int64_t i = 0; i < M * K; i++) x[i] = resq_round_f16((float)resq_rng_normal(&r));
    for (int j = 0; j < 6; j++) {
      int64_t ch = (int64_t)resq_rng_below(&r, (uint64_t)K);
      for (int64_t m = 0; m < M; m++) x[m * K + ch] = resq_round_f16(x[m * K + ch] * 150.0f);
    }
    RC_CHECK(resq_quant_act_f32_q4q8__ref(&P.p, M, x, K, &P.x) == RESQ_OK, "quantize: %s", resq_last_error());
    free(x);
    if (upload(&P)) check_all(&P, NULL, 0, 99);
    prob_free(&P);
  }
}

/* int32 extremes at the K limits (|acc| near 2^30 in both parts, zero-point corrections as large). */
static void case_extremes(void) {
  if (!rc_case("int32_extremes_at_k_limits")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t Klo = RESQ_GEMM_MAX_KLO, Khi = RESQ_GEMM_MAX_KHI;
  for (int f = FILL_MIN_ACC; f <= FILL_POS; f++) {
    prob P;
    if (!RC_CHECK(prob_alloc(&P, 3, 70, Klo + Khi, Klo + Khi, Khi, 4, 8, 0, 0), "split")) continue;
    rc_note("M=3 N=70 K_lo=2^23 K_hi=32768 fill %d", f);
    fill(&P, &r, f);
    if (upload(&P)) check_all(&P, NULL, 0, 4);
    prob_free(&P);
  }
}

/* Outputs across the whole f16 range: rows scaled from 1e-10 to 1e6, so the f16 outputs cover
 * zero, subnormals, normals and overflow to +-Inf (__float2half_rn vs resq_f32_to_f16). */
static void case_output_range(void) {
  if (!rc_case("f16_rounding_range")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t cfg[][3] = {{10, 300, 512}, {10, 100, 4096}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    prob P;
    if (!prob_alloc(&P, cfg[c][0], cfg[c][1], cfg[c][2], cfg[c][2], cfg[c][2] / 8, 4, 8, 0, 0)) continue;
    rc_note("M=%lld N=%lld K=%lld, row scales 1e-10..1e6", (long long)cfg[c][0], (long long)cfg[c][1],
            (long long)cfg[c][2]);
    fill(&P, &r, FILL_RANDOM);
    for (int64_t m = 0; m < P.M; m++) {
      float f = powf(10.0f, (float)(2 * m - 10) * 16.0f / 18.0f);
      P.x.scale_lo[m] *= f;
      P.x.scale_hi[m] *= f;
    }
    if (upload(&P)) check_all(&P, NULL, 0, 99);
    prob_free(&P);
  }
}

/* Same inputs twice on the same workspace: identical bits (no state left behind). */
static void case_repeat(void) {
  if (!rc_case("repeatable_with_reused_workspace")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  prob P;
  if (!prob_alloc(&P, 4, 1000, 4096, 4096, 512, 4, 8, 0, 0)) return;
  fill(&P, &r, FILL_RANDOM);
  if (upload(&P)) {
    size_t wsb = resq_gemm_workspace_size__cuda(&P.wc, P.M);
    void *work = dalloc(wsb);
    uint16_t *d = dalloc(4 * 1000 * 2), *h1 = xmalloc(8000), *h2 = xmalloc(8000);
    resq_gemm_cuda_opts o = {RESQ_GEMM_TILE_DECODE, 7, work, wsb};
    RC_CHECK(resq_gemm_q4q8_f16__cuda(&P.p, 4, &P.dx, &P.wc, NULL, d, 1000, &o) == RESQ_OK && resq_cuda_sync() == RESQ_OK,
             "run 1: %s", resq_last_error());
    d2h(h1, d, 8000);
    for (int i = 0; i < 5; i++)
      RC_CHECK(resq_gemm_q4q8_f16__cuda(&P.p, 4, &P.dx, &P.wc, NULL, d, 1000, &o) == RESQ_OK, "run %d", i + 2);
    RC_CHECK(resq_cuda_sync() == RESQ_OK, "sync");
    d2h(h2, d, 8000);
    rc_equal_u16(h2, h1, 4000, "repeated split-K calls");
    resq_cuda_free(work), resq_cuda_free(d), free(h1), free(h2);
  }
  prob_free(&P);
}

int main(int argc, char **argv) {
  rc_init("gemm_q4q8_f16__cuda_test", argc, argv);
  rc_gpu_require("gemm_q4q8_f16__cuda_test");
  case_shapes();
  case_llama();
  case_llm_like();
  case_extremes();
  case_output_range();
  case_repeat();
  return rc_finish();
}
