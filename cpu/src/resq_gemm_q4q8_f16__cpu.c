/* SPDX-License-Identifier: Apache-2.0
 * CPU mixed INT4/INT8 GEMM (ref/CONTRACT.md section 11), bit-identical to
 * resq_gemm_q4q8_{f16,f32}__ref.
 *
 * Data flow of one call:
 *  1. the activation codes are unpacked to u8 (lo nibbles -> bytes) in the
 *     GEMM's K order, each term (part of a group) padded with zeros to a
 *     multiple of 4 columns like the packed weight, and interleaved into row
 *     tiles of mr <= 12 rows: tile[step][row][4 bytes], so one dword broadcast
 *     feeds a whole row of vpdpbusd;
 *  2. the micro-kernel computes a 12 x 32 tile (24 zmm accumulators): per step
 *     of 4 columns it reads one 64-byte weight vector (lo: 32 outputs in
 *     nibbles, see below; hi: two 64-byte s8 vectors), broadcasts each row's
 *     dword and issues 2*mr vpdpbusd (u8 activations x s8 weights);
 *  3. at the end of every term the int32 sums become the reference's term
 *     t = (a*w)*(float)(acc - z*sum) and are added to y in K order, exactly the
 *     reference's fp32 sequence (no FMA), then + bias, RNE to f16 (vcvtps2ph).
 * Threads split the 32-column panels (or, when there are few panels, the row
 * tiles); each thread streams its panels front to back. Long K is cut into
 * blocks (state carried in a per-thread scratch) so a weight block stays in L1
 * while the row tiles of an M block (in L2) pass over it.
 * The portable kernel, and the AVX2 one (vpmaddubsw, below), compute the same
 * integers and the same fp32 sequence.
 *
 * The lo nibbles with one AND per 64 weights: a packed byte holds, for lane l,
 * the s4 code h of output 32p+16+l in its high nibble and u = w + 8 (0..15) of
 * output 32p+l in its low nibble, so the byte read as s8 is exactly 16 h + u.
 * Per step the kernel issues vpdpbusd on the raw bytes (sum x (16 h + u)) and
 * on the bytes AND 0xF0 (sum x 16 h); then, exactly in int32,
 *   outputs 16..31:  sum x h = (masked sum) >> 4          (a multiple of 16)
 *   outputs  0..15:  sum x w = raw - masked - 8 sum x      (sum x per row and
 *                                                           group, from packing)
 * Every partial sum is bounded like the 16 w products it replaces (|x b| <=
 * 15 * 128), so SEG_MAX_STEPS keeps each accumulator inside int32, and the
 * difference raw - masked is exact in wrapping int32 arithmetic because its
 * true value is small (<= 15 * 15 per product). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "resq/dtype.h"

#if RESQ_CPU_X86
#include <immintrin.h>
#endif

#define MR_MAX 12
#define NR 32
/* A lo segment of S steps accumulates 16*w*x: |sum| <= 1920*4*S < 2^31 for S <= 2^18. */
#define SEG_MAX_STEPS ((int64_t)1 << 18)

typedef struct term {
  int hi;         /* 0: lo part (s4 weights), 1: hi part (s8) */
  int64_t g;      /* group */
  int64_t a_step; /* first step of the term in the packed activation row */
  int64_t w_off;  /* byte offset of the term in a weight panel */
  int64_t steps;  /* steps of 4 columns (padded) */
} term;

typedef struct seg {
  int term;
  int64_t s0, s1; /* steps [s0, s1) of the term */
} seg;

typedef struct mk_args {
  const uint8_t *A; /* activation tile at step 0: [step][mr][4] */
  int mr;
  const uint8_t *W; /* weight panel */
  const term *terms;
  const seg *segs;
  int sb, se; /* segments of this block */
  const float *xs_lo, *xs_hi; /* activation scales/zeros at the tile's first row: [i*G + g] */
  const int32_t *xz_lo, *xz_hi;
  const int32_t *xsum_lo;     /* sums of the lo activation codes at the tile's first row: [i*G + g] */
  int64_t G;
  const float *ws_lo, *ws_hi; /* weight scales at the panel's first column */
  const int32_t *wsum_lo, *wsum_hi; /* weight sums at the panel's first column, group stride np */
  int64_t np;
  int32_t *acc_state; /* [MR_MAX][32]: int32 sum of a term cut by a block boundary */
  float *y_state;     /* [MR_MAX][32]: y after the terms finished so far */
  int final;          /* last block: add the bias and write the output */
  const float *bias;  /* at the panel's first column, or NULL */
  float *yf;          /* output at (tile row 0, panel column 0), or NULL */
  uint16_t *yh;
  int64_t ldy;
  int ncols; /* valid columns of this panel (<= 32) */
  int64_t pf; /* software prefetch of the weight stream this many bytes ahead into L2; 0: none */
} mk_args;

typedef void (*mk_fn)(const mk_args *a);

/* ------------------------------------------------------------------ portable kernel */

/* After the int32 sums acc[i][l] of segment sg: carry them into the next block
 * when the term continues there, else the term's fp32 contribution
 * t = (a*w)*(float)(acc - z*sum) added to y in K order (the reference's
 * sequence, no FMA). */
static inline __attribute__((always_inline)) void seg_finish(const mk_args *a, const seg *sg, const term *tm,
                                                              int32_t acc[MR_MAX][NR]) {
  const int mr = a->mr;
  if (sg->s0 > 0)
    for (int i = 0; i < mr; i++)
      for (int l = 0; l < NR; l++) acc[i][l] += a->acc_state[i * NR + l];
  if (sg->s1 < tm->steps) { /* the term continues in the next block */
    for (int i = 0; i < mr; i++)
      for (int l = 0; l < NR; l++) a->acc_state[i * NR + l] = acc[i][l];
    return;
  }
  const float *xs = tm->hi ? a->xs_hi : a->xs_lo, *ws = tm->hi ? a->ws_hi : a->ws_lo;
  const int32_t *xz = tm->hi ? a->xz_hi : a->xz_lo, *wsum = (tm->hi ? a->wsum_hi : a->wsum_lo) + tm->g * a->np;
  for (int i = 0; i < mr; i++) {
    float av = xs[i * a->G + tm->g];
    int32_t z = xz[i * a->G + tm->g];
    for (int l = 0; l < NR; l++) {
      float t = (av * ws[l]) * (float)(acc[i][l] - z * wsum[l]);
      a->y_state[i * NR + l] = sg->term == 0 ? t : a->y_state[i * NR + l] + t;
    }
  }
}

/* The last block: y + bias, stored as f32 or RNE f16. */
static inline __attribute__((always_inline)) void tile_store(const mk_args *a) {
  for (int i = 0; i < a->mr; i++)
    for (int l = 0; l < a->ncols; l++) {
      float y = a->y_state[i * NR + l];
      if (a->bias) y = y + a->bias[l];
      if (a->yf) a->yf[i * a->ldy + l] = y;
      else a->yh[i * a->ldy + l] = resq_f32_to_f16(y);
    }
}

static void mk_generic(const mk_args *a) {
  const int mr = a->mr;
  int32_t acc[MR_MAX][NR];
  for (int si = a->sb; si < a->se; si++) {
    const seg *sg = &a->segs[si];
    const term *tm = &a->terms[sg->term];
    for (int i = 0; i < mr; i++)
      for (int l = 0; l < NR; l++) acc[i][l] = 0;
    const uint8_t *ap = a->A + (tm->a_step + sg->s0) * mr * 4;
    if (!tm->hi) {
      const uint8_t *wp = a->W + tm->w_off + sg->s0 * 64;
      for (int64_t s = sg->s0; s < sg->s1; s++, wp += 64, ap += mr * 4) {
        int32_t w[4][NR];
        for (int l = 0; l < 16; l++)
          for (int b = 0; b < 4; b++) {
            int v = wp[4 * l + b];
            w[b][l] = (v & 15) - 8; /* the low nibble holds u = w + 8: w directly */
            w[b][16 + l] = ((v >> 4) ^ 8) - 8;
          }
        for (int i = 0; i < mr; i++) {
          int32_t x0 = ap[4 * i], x1 = ap[4 * i + 1], x2 = ap[4 * i + 2], x3 = ap[4 * i + 3];
          for (int l = 0; l < NR; l++) acc[i][l] += x0 * w[0][l] + x1 * w[1][l] + x2 * w[2][l] + x3 * w[3][l];
        }
      }
    } else {
      const uint8_t *wp = a->W + tm->w_off + sg->s0 * 128;
      for (int64_t s = sg->s0; s < sg->s1; s++, wp += 128, ap += mr * 4) {
        int32_t w[4][NR];
        for (int l = 0; l < NR; l++)
          for (int b = 0; b < 4; b++) w[b][l] = (int8_t)wp[4 * l + b];
        for (int i = 0; i < mr; i++) {
          int32_t x0 = ap[4 * i], x1 = ap[4 * i + 1], x2 = ap[4 * i + 2], x3 = ap[4 * i + 3];
          for (int l = 0; l < NR; l++) acc[i][l] += x0 * w[0][l] + x1 * w[1][l] + x2 * w[2][l] + x3 * w[3][l];
        }
      }
    }
    seg_finish(a, sg, tm, acc);
  }
  if (a->final) tile_store(a);
}

/* ------------------------------------------------------------------ AVX2 kernel (no VNNI)
 * vpmaddubsw (u8 x s8 pairs -> int16, SATURATING) replaces vpdpbusd, on the
 * same packed weights and activation tiles, exactly:
 *  - lo terms: activations 0..15 times the raw byte (16 h + u, -128..127) or
 *    the masked byte (16 h): a pair sum is at most 2 * 15 * 128 = 3840, so
 *    never saturates, and A2_FLUSH = 8 steps of them add up in int16 to at
 *    most 30720 < 32767; then vpmaddwd by 1 widens each int16 pair (the 4
 *    bytes of a dword lane) into the int32 accumulators: exactly the
 *    vpdpbusd sums of the AVX-512 kernel.
 *  - hi terms: u8 activations would saturate (255 * 127 * 2 > 32767), so each
 *    broadcast activation dword is split into its low and high nibbles
 *    (x = 16 xh + xl, both 0..15), each nibble product bounded as above;
 *    the flush adds vpmaddwd(sum_l, 1) + vpmaddwd(sum_h, 16) to int32
 *    (|16 * 30720 * 2| < 2^31).
 * Per 128 lo weights and row: 4 vpmaddubsw + 4 vpaddw, vpmaddwd only every 8
 * steps; oneDNN's AVX2 int8 issues vpmaddubsw + vpmaddwd + vpaddd per 32
 * products (the nibble packing puts two outputs in each byte lane). Rows are
 * taken two at a time (lo; the weight block is read from L1 again for the
 * next pair) and one at a time (hi: 8 int16 sums per row). */
#if RESQ_CPU_X86
RESQ_AVX2_BEGIN

#define A2_FLUSH 8

static inline __attribute__((always_inline)) __m256i a2_bcast(const uint8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/* lo term, rows ap[4*i] for i < R (row stride 4*mr bytes per step), n steps of 64 weight bytes:
 * the int32 sums of outputs 0..31 into acc[i][0..31] */
static inline __attribute__((always_inline)) void a2_lo(const uint8_t *ap, int mr, const uint8_t *wp, int64_t n,
                                                         int64_t pf, const int R, int32_t acc[][NR]) {
  const __m256i mask = _mm256_set1_epi8((char)0xF0), ones = _mm256_set1_epi16(1);
  /* c[i][0..1]: raw sums (dword lanes 0..7, 8..15); c[i][2..3]: masked sums */
  __m256i c[2][4];
  _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) c[i][0] = c[i][1] = c[i][2] = c[i][3] = _mm256_setzero_si256();
  for (int64_t s = 0; s < n;) {
    const int64_t e = s + A2_FLUSH < n ? s + A2_FLUSH : n;
    __m256i p[2][4];
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) p[i][0] = p[i][1] = p[i][2] = p[i][3] = _mm256_setzero_si256();
    for (; s < e; s++, wp += 64, ap += 4 * mr) {
      if (pf) _mm_prefetch((const char *)wp + pf, _MM_HINT_T1);
      const __m256i r0 = _mm256_loadu_si256((const __m256i *)(const void *)wp);
      const __m256i r1 = _mm256_loadu_si256((const __m256i *)(const void *)(wp + 32));
      const __m256i m0 = _mm256_and_si256(r0, mask), m1 = _mm256_and_si256(r1, mask);
      _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) {
        const __m256i b = a2_bcast(ap + 4 * i);
        p[i][0] = _mm256_add_epi16(p[i][0], _mm256_maddubs_epi16(b, r0));
        p[i][1] = _mm256_add_epi16(p[i][1], _mm256_maddubs_epi16(b, r1));
        p[i][2] = _mm256_add_epi16(p[i][2], _mm256_maddubs_epi16(b, m0));
        p[i][3] = _mm256_add_epi16(p[i][3], _mm256_maddubs_epi16(b, m1));
      }
    }
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++)
      _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
        c[i][k] = _mm256_add_epi32(c[i][k], _mm256_madd_epi16(p[i][k], ones));
  }
  /* lane l of raw = x.u of output l (+ x.16h of output 16 + l); masked = x.16h, an exact multiple of 16;
   * a2_finish takes the 8 sum x off outputs 0..15 when the term ends */
  _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) {
    _mm256_storeu_si256((__m256i *)(void *)&acc[i][0], _mm256_sub_epi32(c[i][0], c[i][2]));
    _mm256_storeu_si256((__m256i *)(void *)&acc[i][8], _mm256_sub_epi32(c[i][1], c[i][3]));
    _mm256_storeu_si256((__m256i *)(void *)&acc[i][16], _mm256_srai_epi32(c[i][2], 4));
    _mm256_storeu_si256((__m256i *)(void *)&acc[i][24], _mm256_srai_epi32(c[i][3], 4));
  }
}

/* hi term, one row: n steps of 128 weight bytes (outputs 0..15, then 16..31, 4 bytes each) */
static inline __attribute__((always_inline)) void a2_hi(const uint8_t *ap, int mr, const uint8_t *wp, int64_t n,
                                                         int64_t pf, int32_t acc[NR]) {
  const __m256i lo4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  __m256i c[4];
  _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) c[k] = _mm256_setzero_si256();
  for (int64_t s = 0; s < n;) {
    const int64_t e = s + A2_FLUSH < n ? s + A2_FLUSH : n;
    __m256i pl[4], ph[4];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) pl[k] = ph[k] = _mm256_setzero_si256();
    for (; s < e; s++, wp += 128, ap += 4 * mr) {
      if (pf) {
        _mm_prefetch((const char *)wp + pf, _MM_HINT_T1);
        _mm_prefetch((const char *)wp + pf + 64, _MM_HINT_T1);
      }
      const __m256i b = a2_bcast(ap);
      const __m256i bl = _mm256_and_si256(b, lo4), bh = _mm256_and_si256(_mm256_srli_epi16(b, 4), lo4);
      _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(wp + 32 * k));
        pl[k] = _mm256_add_epi16(pl[k], _mm256_maddubs_epi16(bl, w));
        ph[k] = _mm256_add_epi16(ph[k], _mm256_maddubs_epi16(bh, w));
      }
    }
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
      c[k] = _mm256_add_epi32(c[k], _mm256_add_epi32(_mm256_madd_epi16(pl[k], ones), _mm256_madd_epi16(ph[k], sixteen)));
  }
  _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) _mm256_storeu_si256((__m256i *)(void *)&acc[8 * k], c[k]);
}

/* seg_finish and tile_store in 8-wide vectors (the same operations in the same order per output;
 * GCC left the generic loops partly scalar: 13 % of a prefill call) */
static inline __attribute__((always_inline)) void a2_finish(const mk_args *a, const seg *sg, const term *tm,
                                                             int32_t acc[MR_MAX][NR]) {
  const int mr = a->mr, last = sg->s1 == tm->steps, cont = sg->s0 > 0;
  const float *xs = tm->hi ? a->xs_hi : a->xs_lo, *ws = tm->hi ? a->ws_hi : a->ws_lo;
  const int32_t *xz = tm->hi ? a->xz_hi : a->xz_lo, *wsum = (tm->hi ? a->wsum_hi : a->wsum_lo) + tm->g * a->np;
  for (int i = 0; i < mr; i++) {
    int32_t *as = a->acc_state + i * NR;
    float *ys = a->y_state + i * NR;
    const __m256i u8 = _mm256_set1_epi32(!tm->hi && last ? 8 * a->xsum_lo[i * a->G + tm->g] : 0);
    const __m256i z = _mm256_set1_epi32(last ? xz[i * a->G + tm->g] : 0);
    const __m256 av = _mm256_set1_ps(last ? xs[i * a->G + tm->g] : 0.0f);
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
      __m256i v = _mm256_load_si256((const __m256i *)(const void *)&acc[i][8 * k]);
      if (cont) v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(const void *)(as + 8 * k)));
      if (!last) {
        _mm256_storeu_si256((__m256i *)(void *)(as + 8 * k), v);
        continue;
      }
      if (k < 2) v = _mm256_sub_epi32(v, u8); /* outputs 0..15 of a lo term: sum x u - 8 sum x */
      const __m256i zs = _mm256_mullo_epi32(z, _mm256_loadu_si256((const __m256i *)(const void *)(wsum + 8 * k)));
      __m256 t = _mm256_mul_ps(_mm256_mul_ps(av, _mm256_loadu_ps(ws + 8 * k)),
                               _mm256_cvtepi32_ps(_mm256_sub_epi32(v, zs)));
      if (sg->term != 0) t = _mm256_add_ps(_mm256_loadu_ps(ys + 8 * k), t);
      _mm256_storeu_ps(ys + 8 * k, t);
    }
  }
}

static inline __attribute__((always_inline)) void a2_store(const mk_args *a) {
  const int nc = a->ncols;
  for (int i = 0; i < a->mr; i++) {
    const float *ys = a->y_state + i * NR;
    int l = 0;
    for (; l + 8 <= nc; l += 8) {
      __m256 y = _mm256_loadu_ps(ys + l);
      if (a->bias) y = _mm256_add_ps(y, _mm256_loadu_ps(a->bias + l));
      if (a->yf) _mm256_storeu_ps(a->yf + i * a->ldy + l, y);
      else _mm_storeu_si128((__m128i *)(void *)(a->yh + i * a->ldy + l),
                            _mm256_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; l < nc; l++) { /* the same RNE conversion, one lane (F16C, as the vectors above) */
      float y = ys[l];
      if (a->bias) y = y + a->bias[l];
      if (a->yf) a->yf[i * a->ldy + l] = y;
      else a->yh[i * a->ldy + l] =
          (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(y), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), 0);
    }
  }
}

static void mk_avx2(const mk_args *a) {
  const int mr = a->mr;
  int32_t acc[MR_MAX][NR] __attribute__((aligned(32)));
  for (int si = a->sb; si < a->se; si++) {
    const seg *sg = &a->segs[si];
    const term *tm = &a->terms[sg->term];
    const uint8_t *ap = a->A + (tm->a_step + sg->s0) * mr * 4;
    const int64_t n = sg->s1 - sg->s0;
    if (!tm->hi) {
      const uint8_t *wp = a->W + tm->w_off + sg->s0 * 64;
      int i = 0;
      /* only the first pass over the weight block prefetches (the others find it in L1) */
      for (; i + 2 <= mr; i += 2) a2_lo(ap + 4 * i, mr, wp, n, i == 0 ? a->pf : 0, 2, &acc[i]);
      if (i < mr) a2_lo(ap + 4 * i, mr, wp, n, i == 0 ? a->pf : 0, 1, &acc[i]);
    } else {
      const uint8_t *wp = a->W + tm->w_off + sg->s0 * 128;
      for (int i = 0; i < mr; i++) a2_hi(ap + 4 * i, mr, wp, n, i == 0 ? a->pf : 0, acc[i]);
    }
    a2_finish(a, sg, tm, acc);
  }
  if (a->final) a2_store(a);
}

RESQ_AVX2_END
#endif /* RESQ_CPU_X86 */

/* ------------------------------------------------------------------ AVX-512 VNNI kernel */
#if RESQ_CPU_X86
RESQ_AVX512_BEGIN

static inline __attribute__((always_inline)) __m512i bcast_dword(const uint8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

/* One step of 4 columns for MR rows: acc[i][h] += x[i][0..3] . w_h */
#define STEP_ROWS(ACC0, ACC1, AP, W0, W1)                              \
  do {                                                                 \
    _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++) {            \
      __m512i b_ = bcast_dword((AP) + 4 * i);                          \
      ACC0[i] = _mm512_dpbusd_epi32(ACC0[i], b_, W0);                  \
      ACC1[i] = _mm512_dpbusd_epi32(ACC1[i], b_, W1);                  \
    }                                                                  \
  } while (0)

/* Prefetch the weight line `pf` bytes ahead of P into L2 (see PF_DIST). */
#define PF_LINE(P)                                                            \
  do {                                                                        \
    if (pf) _mm_prefetch((const char *)(P) + pf, _MM_HINT_T1);                \
  } while (0)

static inline __attribute__((always_inline)) void mk_avx512_t(const mk_args *a, const int MR) {
  const __m512i mask = _mm512_set1_epi8((char)0xF0);
  const int64_t pf = a->pf;
  /* two accumulator sets for 1-2 rows: the vpdpbusd latency, not the loads, would bound them */
  const int dual = MR <= 2;
  for (int si = a->sb; si < a->se; si++) {
    const seg *sg = &a->segs[si];
    const term *tm = &a->terms[sg->term];
    __m512i c0[MR_MAX], c1[MR_MAX], d0[MR_MAX], d1[MR_MAX];
    _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++) {
      c0[i] = _mm512_setzero_si512();
      c1[i] = _mm512_setzero_si512();
      d0[i] = _mm512_setzero_si512();
      d1[i] = _mm512_setzero_si512();
    }
    const uint8_t *ap = a->A + (tm->a_step + sg->s0) * MR * 4;
    int64_t n = sg->s1 - sg->s0;
    if (!tm->hi) {
      const uint8_t *wp = a->W + tm->w_off + sg->s0 * 64;
      int64_t s = 0;
      /* c0: raw bytes (16 h + u), c1: bytes AND 0xF0 (16 h) */
      if (dual)
        for (; s + 2 <= n; s += 2, wp += 128, ap += 8 * MR) {
          PF_LINE(wp);
          PF_LINE(wp + 64);
          __m512i v = _mm512_loadu_si512(wp), u = _mm512_loadu_si512(wp + 64);
          __m512i w1 = _mm512_and_si512(v, mask), x1 = _mm512_and_si512(u, mask);
          STEP_ROWS(c0, c1, ap, v, w1);
          STEP_ROWS(d0, d1, ap + 4 * MR, u, x1);
        }
      for (; s < n; s++, wp += 64, ap += 4 * MR) {
        PF_LINE(wp);
        __m512i v = _mm512_loadu_si512(wp);
        __m512i w1 = _mm512_and_si512(v, mask);
        STEP_ROWS(c0, c1, ap, v, w1);
      }
    } else {
      const uint8_t *wp = a->W + tm->w_off + sg->s0 * 128;
      int64_t s = 0;
      if (dual)
        for (; s + 2 <= n; s += 2, wp += 256, ap += 8 * MR) {
          PF_LINE(wp);
          PF_LINE(wp + 64);
          PF_LINE(wp + 128);
          PF_LINE(wp + 192);
          __m512i w0 = _mm512_loadu_si512(wp), w1 = _mm512_loadu_si512(wp + 64);
          __m512i x0 = _mm512_loadu_si512(wp + 128), x1 = _mm512_loadu_si512(wp + 192);
          STEP_ROWS(c0, c1, ap, w0, w1);
          STEP_ROWS(d0, d1, ap + 4 * MR, x0, x1);
        }
      for (; s < n; s++, wp += 128, ap += 4 * MR) {
        PF_LINE(wp);
        PF_LINE(wp + 64);
        __m512i w0 = _mm512_loadu_si512(wp), w1 = _mm512_loadu_si512(wp + 64);
        STEP_ROWS(c0, c1, ap, w0, w1);
      }
    }
    /* The epilogue's scalars as locals: its int32 stores (acc_state) may alias
     * the int fields of *tm, *sg and *a, so read through the pointers they were
     * reloaded and re-tested for every row. Alternating calls on a Zen 4 guest
     * (resq_cpu_gemm_timing --group 128 --r 16 --ab): grouped 4096 x 4096
     * 0.96-0.985x the time at M = 16..2048, per token unchanged (1.00-1.02). */
    const int last = sg->s1 == tm->steps, cont = sg->s0 > 0, hi = tm->hi, first = sg->term == 0;
    const int64_t G = a->G;
    const float *xs = (hi ? a->xs_hi : a->xs_lo) + tm->g, *ws = hi ? a->ws_hi : a->ws_lo;
    const int32_t *xz = (hi ? a->xz_hi : a->xz_lo) + tm->g, *wsum = (hi ? a->wsum_hi : a->wsum_lo) + tm->g * a->np;
    const int32_t *xsum = hi ? NULL : a->xsum_lo + tm->g; /* no lo part (r = group): NULL */
    int32_t *const acc_state = a->acc_state;
    float *const y_state = a->y_state;
    const __m512 ws0 = _mm512_loadu_ps(ws), ws1 = _mm512_loadu_ps(ws + 16);
    const __m512i su0 = _mm512_loadu_si512(wsum), su1 = _mm512_loadu_si512(wsum + 16);
    _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++) {
      __m512i v0 = c0[i], v1 = c1[i];
      if (dual) {
        v0 = _mm512_add_epi32(v0, d0[i]);
        v1 = _mm512_add_epi32(v1, d1[i]);
      }
      if (!hi) { /* outputs 0..15: raw - masked = sum x u; 16..31: masked = 16 sum x h, exact shift */
        v0 = _mm512_sub_epi32(v0, v1);
        v1 = _mm512_srai_epi32(v1, 4);
      }
      int32_t *as = acc_state + i * NR;
      if (cont) {
        v0 = _mm512_add_epi32(v0, _mm512_loadu_si512(as));
        v1 = _mm512_add_epi32(v1, _mm512_loadu_si512(as + 16));
      }
      if (!last) {
        _mm512_storeu_si512(as, v0);
        _mm512_storeu_si512(as + 16, v1);
        continue;
      }
      if (!hi) /* sum x w = sum x u - 8 sum x on outputs 0..15 */
        v0 = _mm512_sub_epi32(v0, _mm512_set1_epi32(8 * xsum[i * G]));
      const __m512i z = _mm512_set1_epi32(xz[i * G]);
      const __m512 av = _mm512_set1_ps(xs[i * G]);
      __m512 f0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(v0, _mm512_mullo_epi32(z, su0)));
      __m512 f1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(v1, _mm512_mullo_epi32(z, su1)));
      __m512 t0 = _mm512_mul_ps(_mm512_mul_ps(av, ws0), f0);
      __m512 t1 = _mm512_mul_ps(_mm512_mul_ps(av, ws1), f1);
      float *ys = y_state + i * NR;
      if (!first) {
        t0 = _mm512_add_ps(_mm512_loadu_ps(ys), t0);
        t1 = _mm512_add_ps(_mm512_loadu_ps(ys + 16), t1);
      }
      _mm512_storeu_ps(ys, t0);
      _mm512_storeu_ps(ys + 16, t1);
    }
  }
  if (!a->final) return;
  const int nc = a->ncols;
  const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
  const __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xffff : nc <= 16 ? 0 : (1u << (nc - 16)) - 1);
  __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  if (a->bias) {
    b0 = _mm512_maskz_loadu_ps(m0, a->bias);
    b1 = _mm512_maskz_loadu_ps(m1, a->bias + 16);
  }
  for (int i = 0; i < MR; i++) {
    __m512 y0 = _mm512_loadu_ps(a->y_state + i * NR), y1 = _mm512_loadu_ps(a->y_state + i * NR + 16);
    if (a->bias) {
      y0 = _mm512_add_ps(y0, b0);
      y1 = _mm512_add_ps(y1, b1);
    }
    if (a->yf) {
      _mm512_mask_storeu_ps(a->yf + i * a->ldy, m0, y0);
      _mm512_mask_storeu_ps(a->yf + i * a->ldy + 16, m1, y1);
    } else {
      _mm256_mask_storeu_epi16(a->yh + i * a->ldy, m0, _mm512_cvtps_ph(y0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      _mm256_mask_storeu_epi16(a->yh + i * a->ldy + 16, m1,
                               _mm512_cvtps_ph(y1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
}

/* len lo codes (two per byte, low nibble first) -> one byte each; returns their sum */
int32_t resq_cpu_unpack_lo_avx512(const uint8_t *src, int64_t len, uint8_t *d) {
  const __m512i m4 = _mm512_set1_epi16(0x000F);
  __m512i acc = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 64 <= len; i += 64) {
    const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(src + i / 2)));
    const __m512i lo = _mm512_and_si512(w, m4), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
    const __m512i o = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 8));
    _mm512_storeu_si512(d + i, o);
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(o, _mm512_setzero_si512()));
  }
  int32_t sum = (int32_t)_mm512_reduce_add_epi64(acc);
  for (; i + 2 <= len; i += 2) {
    const uint8_t b = src[i / 2];
    d[i] = b & 15;
    d[i + 1] = b >> 4;
    sum += d[i] + d[i + 1];
  }
  if (i < len) d[i] = src[i / 2] & 15, sum += d[i];
  return sum;
}

/* rows: mr rows of S dwords -> d[s][i] = rows[i][s] (the tile layout), 16 steps at a time.
 * Per group of 4 rows, a 4 x 4 dword transpose in each 128-bit lane (unpacklo/hi 32, then 64)
 * gives, in lane l of vector k, the group's 4 dwords of step 4l + k: one 16-byte store each
 * (masked for a last group of fewer than 4 rows, so no byte outside the tile is written).
 * Against one 4-byte copy per (step, row): 12 loads, 8 shuffles and 16 stores per 64 dwords
 * instead of 64 loads and 64 stores. Returns the steps done (a multiple of 16). */
static int64_t interleave_avx512(const uint8_t *rows, int64_t S, int mr, uint8_t *dst) {
  int64_t s0 = 0;
  for (; s0 + 16 <= S; s0 += 16)
    for (int g = 0; g < mr; g += 4) {
      const int nr = mr - g < 4 ? mr - g : 4;
      const uint8_t *src = rows + ((size_t)g * (size_t)S + (size_t)s0) * 4;
      const __m512i z = _mm512_setzero_si512();
      const __m512i r0 = _mm512_loadu_si512(src);
      const __m512i r1 = nr > 1 ? _mm512_loadu_si512(src + (size_t)S * 4) : z;
      const __m512i r2 = nr > 2 ? _mm512_loadu_si512(src + (size_t)S * 8) : z;
      const __m512i r3 = nr > 3 ? _mm512_loadu_si512(src + (size_t)S * 12) : z;
      const __m512i t0 = _mm512_unpacklo_epi32(r0, r1), t1 = _mm512_unpackhi_epi32(r0, r1);
      const __m512i t2 = _mm512_unpacklo_epi32(r2, r3), t3 = _mm512_unpackhi_epi32(r2, r3);
      __m512i c[4];
      c[0] = _mm512_unpacklo_epi64(t0, t2); /* lane l: step 4l + 0 */
      c[1] = _mm512_unpackhi_epi64(t0, t2); /* 4l + 1 */
      c[2] = _mm512_unpacklo_epi64(t1, t3); /* 4l + 2 */
      c[3] = _mm512_unpackhi_epi64(t1, t3); /* 4l + 3 */
      uint8_t *o = dst + ((size_t)s0 * (size_t)mr + (size_t)g) * 4;
      const size_t step = (size_t)mr * 4;
      const __mmask8 m = (__mmask8)((1u << nr) - 1);
      _Pragma("GCC unroll 4") for (int l = 0; l < 4; l++)
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
          __m128i v;
          switch (l) {
            case 0: v = _mm512_castsi512_si128(c[k]); break;
            case 1: v = _mm512_extracti32x4_epi32(c[k], 1); break;
            case 2: v = _mm512_extracti32x4_epi32(c[k], 2); break;
            default: v = _mm512_extracti32x4_epi32(c[k], 3); break;
          }
          uint8_t *q = o + (size_t)(4 * l + k) * step;
          if (nr == 4) _mm_storeu_si128((__m128i *)(void *)q, v);
          else _mm_mask_storeu_epi32(q, m, v);
        }
    }
  return s0;
}

static void mk_avx512(const mk_args *a) {
  switch (a->mr) {
    case 1: mk_avx512_t(a, 1); break;
    case 2: mk_avx512_t(a, 2); break;
    case 3: mk_avx512_t(a, 3); break;
    case 4: mk_avx512_t(a, 4); break;
    case 5: mk_avx512_t(a, 5); break;
    case 6: mk_avx512_t(a, 6); break;
    case 7: mk_avx512_t(a, 7); break;
    case 8: mk_avx512_t(a, 8); break;
    case 9: mk_avx512_t(a, 9); break;
    case 10: mk_avx512_t(a, 10); break;
    case 11: mk_avx512_t(a, 11); break;
    default: mk_avx512_t(a, 12); break;
  }
}

RESQ_AVX512_END
#endif /* RESQ_CPU_X86 */

/* ------------------------------------------------------------------ plan and driver */

typedef struct plan {
  int64_t M, N, G, lpg, r, lo_bpg;
  const resq_qact *x;
  const float *bias;
  float *yf;
  uint16_t *yh;
  int64_t ldy;
  const uint8_t *panels;
  int64_t panel_bytes, npanels, np;
  const float *ws_lo, *ws_hi;
  const int32_t *wsum_lo, *wsum_hi;
  term *terms;
  int T;
  seg *segs;
  int nseg;
  int *blk; /* block b = segments [blk[b], blk[b+1]) */
  int nblk;
  int64_t S; /* steps per packed activation row */
  int64_t ntiles, tq, trem;
  uint8_t *A;
  int32_t *xsum;   /* [M][G]: sums of the lo activation codes per row and group */
  uint8_t *rowtmp; /* per thread: MR_MAX*S*4 bytes */
  float *ystate;   /* per thread: slots * MR_MAX*NR */
  int32_t *accstate;
  int64_t slots; /* per thread: ncp * mct */
  int split_panels;
  int64_t ncp, mct;
  int avx512;
  int decode;
  int64_t pf; /* prefetch distance in bytes (0: none), see PF_DIST */
  mk_fn mk;
} plan;

static int64_t tile_m0(const plan *P, int64_t t) { return t * P->tq + (t < P->trem ? t : P->trem); }
static int tile_mr(const plan *P, int64_t t) { return (int)(P->tq + (t < P->trem ? 1 : 0)); }

/* Unpack row m of the activation codes into the padded K order (S*4 bytes). */
static void unpack_row(const plan *P, int64_t m, uint8_t *dst) {
  const resq_qact *x = P->x;
  for (int j = 0; j < P->T; j++) {
    const term *tm = &P->terms[j];
    uint8_t *d = dst + tm->a_step * 4;
    int64_t len = tm->hi ? P->r : P->lpg, pad = tm->steps * 4;
    if (tm->hi) {
      memcpy(d, x->q_hi + m * x->ld_hi + tm->g * P->r, (size_t)len);
    } else {
      const uint8_t *src = x->q_lo + m * x->ld_lo + tm->g * P->lo_bpg;
      int32_t sum = 0;
#if RESQ_CPU_X86
      if (P->avx512) {
        sum = resq_cpu_unpack_lo_avx512(src, len, d);
      } else
#endif
      {
        int64_t i = 0;
        for (; i + 2 <= len; i += 2) {
          uint8_t b = src[i / 2];
          d[i] = b & 15;
          d[i + 1] = b >> 4;
          sum += d[i] + d[i + 1];
        }
        if (i < len) d[i] = src[i / 2] & 15, sum += d[i];
      }
      P->xsum[m * P->G + tm->g] = sum;
    }
    memset(d + len, 0, (size_t)(pad - len));
  }
}

static void pack_tile(const plan *P, int64_t t, uint8_t *rowtmp) {
  int64_t m0 = tile_m0(P, t), S = P->S;
  int mr = tile_mr(P, t);
  uint8_t *dst = P->A + m0 * S * 4;
  if (mr == 1) {
    unpack_row(P, m0, dst);
    return;
  }
  /* all rows first, then the tile written front to back (mr read streams, one sequential write
   * stream): writing it row by row at a stride of mr dwords touched every line mr times
   * (alternating calls: 2.4-2.6 % less time for the whole k/v_proj GEMM at M = 256 and 2048) */
  for (int i = 0; i < mr; i++) unpack_row(P, m0 + i, rowtmp + (size_t)i * (size_t)S * 4);
  int64_t s = 0;
#if RESQ_CPU_X86
  /* vectorized (5 % of a k/v_proj GEMM at M = 256 went to the copy below, perf cpu-clock samples) */
  if (P->avx512) s = interleave_avx512(rowtmp, S, mr, dst);
#endif
  uint32_t *d = (uint32_t *)(void *)(dst + (size_t)s * (size_t)mr * 4);
  for (; s < S; s++)
    for (int i = 0; i < mr; i++) memcpy(d++, rowtmp + ((size_t)i * (size_t)S + (size_t)s) * 4, 4);
}

static void task_pack(void *arg, int tid, int nt) {
  plan *P = (plan *)arg;
  int64_t b, e;
  resq_cpu_range(P->ntiles, tid, nt, &b, &e);
  for (int64_t t = b; t < e; t++) pack_tile(P, t, P->rowtmp + (size_t)tid * MR_MAX * (size_t)P->S * 4);
}

static void task_compute(void *arg, int tid, int nt) {
  const plan *P = (const plan *)arg;
  int64_t p0, p1, t0, t1;
  if (P->split_panels) {
    resq_cpu_range(P->npanels, tid, nt, &p0, &p1);
    t0 = 0;
    t1 = P->ntiles;
  } else {
    resq_cpu_range(P->ntiles, tid, nt, &t0, &t1);
    p0 = 0;
    p1 = P->npanels;
  }
  float *ys = P->ystate + (size_t)tid * (size_t)P->slots * MR_MAX * NR;
  int32_t *as = P->accstate + (size_t)tid * (size_t)P->slots * MR_MAX * NR;
  const resq_qact *x = P->x;
  mk_args a;
  memset(&a, 0, sizeof a);
  a.terms = P->terms;
  a.segs = P->segs;
  a.G = P->G;
  a.np = P->np;
  a.ldy = P->ldy;
  for (int64_t pb = p0; pb < p1; pb += P->ncp) {
    int64_t pe = pb + P->ncp < p1 ? pb + P->ncp : p1;
    for (int64_t tb = t0; tb < t1; tb += P->mct) {
      int64_t te = tb + P->mct < t1 ? tb + P->mct : t1;
      for (int bl = 0; bl < P->nblk; bl++) {
        a.sb = P->blk[bl];
        a.se = P->blk[bl + 1];
        a.final = bl == P->nblk - 1;
        for (int64_t p = pb; p < pe; p++) {
          int64_t c0 = p * NR;
          a.W = P->panels + p * P->panel_bytes;
          a.ws_lo = P->ws_lo + c0;
          a.ws_hi = P->ws_hi + c0;
          a.wsum_lo = P->wsum_lo + c0;
          a.wsum_hi = P->wsum_hi + c0;
          a.bias = P->bias ? P->bias + c0 : NULL;
          a.ncols = (int)(P->N - c0 < NR ? P->N - c0 : NR);
          for (int64_t t = tb; t < te; t++) {
            int64_t m0 = tile_m0(P, t), slot = (t - tb) * P->ncp + (p - pb);
            a.mr = tile_mr(P, t);
            a.A = P->A + m0 * P->S * 4;
            a.xs_lo = P->lpg > 0 ? x->scale_lo + m0 * P->G : NULL;
            a.xz_lo = P->lpg > 0 ? x->zero_lo + m0 * P->G : NULL;
            a.xsum_lo = P->xsum + m0 * P->G;
            a.xs_hi = P->r > 0 ? x->scale_hi + m0 * P->G : NULL;
            a.xz_hi = P->r > 0 ? x->zero_hi + m0 * P->G : NULL;
            a.y_state = ys + slot * MR_MAX * NR;
            a.acc_state = as + slot * MR_MAX * NR;
            a.yf = P->yf ? P->yf + m0 * P->ldy + c0 : NULL;
            a.yh = P->yh ? P->yh + m0 * P->ldy + c0 : NULL;
            /* the first row tile of an M block brings the weight block in; later ones find it in L1 */
            a.pf = P->decode || t == tb ? P->pf : 0;
            P->mk(&a);
          }
        }
      }
    }
  }
}

/* Software prefetch of the weight stream, PF_DIST bytes ahead, into L2
 * (prefetcht1; RESQ_CPU_GEMM_PF=bytes overrides, 0 turns it off). Why: at
 * M = 1 the kernel issues ~14 uops per 128 weight bytes, so the 512-entry
 * reorder buffer holds only ~4.5 KiB of loads in flight, and the hardware L2
 * streamer alone kept the stream at 0.74-0.82 of a plain 2-thread read of the
 * same bytes (the read probe has ~3x fewer uops per byte). Prefetches retire
 * without waiting for their data, so they keep more lines in flight than the
 * window allows. Measured here (Emerald Rapids KVM guest, 2 threads, cold
 * weights, calls alternated with and without it): M = 1 streams at 0.93-0.96
 * of the read probe (was 0.74-0.84) with a plateau from 3 to 12 KiB ahead;
 * M = 4..16 1.4-1.6x faster; prefill 4-8 % faster. Prefetching past the end of
 * a thread's panels touches memory that is mapped (the next panel, scales) or
 * is dropped: prefetches never fault. */
#define PF_DIST 4096


/* The reference's argument checks, minus what the packed weight guarantees
 * (its code sums and finite scales were checked by the packer). */
static resq_status check_args(const resq_qact_params *p, const resq_qact_layout *L, int64_t M, const resq_qact *x,
                              const resq_qweight_cpu *w, const float *bias, const void *y, int64_t ldy) {
  int64_t G = L->ngroups, lpg = L->lo_per_group, r = p->r, N = w ? w->N : -1;
  if (M < 0 || !x || !w || N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: bad M, activations or weight");
  if (w->magic != RESQ_QWEIGHT_CPU_MAGIC || !w->data)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm (cpu): the weight is not packed by resq_gemm_pack_weight__cpu");
  if (w->K != p->K || w->group != p->group || w->r != p->r || w->bits_lo != p->bits_lo || w->bits_hi != p->bits_hi)
    return resq_fail(RESQ_ERR_SHAPE,
                     "gemm (cpu): weight packed for K=%lld group=%lld r=%lld bits %d/%d, called with K=%lld group=%lld "
                     "r=%lld bits %d/%d",
                     (long long)w->K, (long long)w->group, (long long)w->r, w->bits_lo, w->bits_hi, (long long)p->K,
                     (long long)p->group, (long long)p->r, p->bits_lo, p->bits_hi);
  if (M > 0 && N > 0 && !y) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: NULL output");
  if (M > 1 && ldy < N) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: ldy < N");
  if (lpg > 0 && M > 0 && (!x->q_lo || !x->scale_lo || !x->zero_lo))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: lo part present but a lo array is NULL");
  if (r > 0 && M > 0 && (!x->q_hi || !x->scale_hi || !x->zero_hi))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: hi part present but a hi array is NULL");
  if (M > 1 && ((lpg > 0 && x->ld_lo < L->lo_bytes) || (r > 0 && x->ld_hi < L->hi_bytes)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: a leading dimension is smaller than the packed row");
  for (int64_t m = 0; m < M; m++)
    for (int64_t g = 0; g < G; g++) {
      if (lpg > 0) {
        float a = x->scale_lo[m * G + g];
        int32_t z = x->zero_lo[m * G + g];
        if (!(isfinite(a) && a > 0) || z < 0 || z > resq_qmax_asym(p->bits_lo))
          return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: activation lo scale/zero of row %lld group %lld invalid",
                           (long long)m, (long long)g);
      }
      if (r > 0) {
        float a = x->scale_hi[m * G + g];
        int32_t z = x->zero_hi[m * G + g];
        if (!(isfinite(a) && a > 0) || z < 0 || z > resq_qmax_asym(p->bits_hi))
          return resq_fail(RESQ_ERR_INVALID_ARG, "gemm: activation hi scale/zero of row %lld group %lld invalid",
                           (long long)m, (long long)g);
      }
    }
  if (bias)
    for (int64_t n = 0; n < N; n++)
      if (!isfinite(bias[n]))
        return resq_fail(RESQ_ERR_NONFINITE, "gemm: weight scale or bias of row %lld is NaN or Inf", (long long)n);
  return RESQ_OK;
}

static resq_status gemm(const resq_qact_params *p, int64_t M, const resq_qact *x, const resq_qweight_cpu *w,
                        const float *bias, float *yf, uint16_t *yh, int64_t ldy) {
  resq_qact_layout L;
  resq_status st = resq_gemm_check(p, &L);
  if (!st) st = check_args(p, &L, M, x, w, bias, yf ? (const void *)yf : (const void *)yh, ldy);
  if (st) return st;
  if (M == 0 || w->N == 0) return RESQ_OK;
#if RESQ_CPU_X86
  /* the AMX level: prefill of the per-token split on tiles (resq_gemm_q4q8_f16__cpu_amx.c) */
  if (resq_cpu_active_isa() == RESQ_CPU_ISA_AMX && L.ngroups == 1 &&
      M >= resq_cpu_env_i64("RESQ_CPU_GEMM_AMX_MIN_M", RESQ_CPU_AMX_MIN_M, 1))
    return resq_cpu_gemm_q4q8_amx(p, &L, M, x, w, bias, yf, yh, ldy);
#endif

  plan P;
  memset(&P, 0, sizeof P);
  P.M = M;
  P.N = w->N;
  P.G = L.ngroups;
  P.lpg = L.lo_per_group;
  P.r = p->r;
  P.lo_bpg = L.lo_bytes_per_group;
  P.x = x;
  P.bias = bias;
  P.yf = yf;
  P.yh = yh;
  P.ldy = ldy;
  const uint8_t *base = (const uint8_t *)w->data;
  P.panels = base + w->off_panels;
  P.panel_bytes = w->panel_bytes;
  P.npanels = w->npanels;
  P.np = w->npanels * NR;
  P.ws_lo = (const float *)(base + w->off_scale_lo);
  P.ws_hi = (const float *)(base + w->off_scale_hi);
  P.wsum_lo = (const int32_t *)(base + w->off_sum_lo);
  P.wsum_hi = (const int32_t *)(base + w->off_sum_hi);

  /* terms in K order and their segments */
  P.ntiles = (M + MR_MAX - 1) / MR_MAX;
  P.tq = M / P.ntiles;
  P.trem = M % P.ntiles;
  const int nt_max = resq_cpu_get_threads();
  const int decode = P.ntiles <= 2;
  /* prefill segments of 512 steps (2048 columns): against 256, half the epilogues (the int32 and fp32
   * state of 12 x 32 outputs loaded and stored per segment); paired A/B calls on the Zen 5 guest
   * (resq_cpu_gemm_timing --ab RESQ_CPU_GEMM_KC=512, 2 passes x 4 rounds): 1.000-1.046x over M = 64,
   * 256, 2048 on the four Llama-3-8B shapes, median 1.02, slower on none */
  const int64_t kc = decode ? SEG_MAX_STEPS : resq_cpu_env_i64("RESQ_CPU_GEMM_KC", 512, 1);
  int T = (int)(P.G * ((P.lpg > 0) + (P.r > 0)));
  int64_t lo_steps = w->lo_pad / 4, hi_steps = w->hi_pad / 4;
  int64_t maxseg = 0;
  for (int64_t g = 0; g < P.G; g++) maxseg += (lo_steps + kc - 1) / kc + (hi_steps + kc - 1) / kc;
  size_t need_plan = sizeof(term) * (size_t)T + sizeof(seg) * (size_t)maxseg + sizeof(int) * (size_t)(maxseg + 1);
  char *pm = (char *)malloc(need_plan);
  if (!pm) return resq_fail(RESQ_ERR_NOMEM, "gemm (cpu): out of memory (plan)");
  P.terms = (term *)pm;
  P.segs = (seg *)(pm + sizeof(term) * (size_t)T);
  P.blk = (int *)(pm + sizeof(term) * (size_t)T + sizeof(seg) * (size_t)maxseg);
  int64_t astep = 0, woff = 0;
  int j = 0;
  for (int part = 0; part < 2; part++)
    for (int64_t g = 0; g < P.G; g++) {
      if ((part == 0 && P.lpg == 0) || (part == 1 && P.r == 0)) continue;
      term *tm = &P.terms[j++];
      tm->hi = part;
      tm->g = g;
      tm->a_step = astep;
      tm->w_off = woff;
      tm->steps = part ? hi_steps : lo_steps;
      astep += tm->steps;
      woff += tm->steps * (part ? 128 : 64);
    }
  P.T = T;
  P.S = astep;
  int cur = 0;
  int64_t fill = 0;
  P.nblk = 0;
  for (j = 0; j < T; j++)
    for (int64_t s = 0; s < P.terms[j].steps; s += kc) {
      int64_t e = s + kc < P.terms[j].steps ? s + kc : P.terms[j].steps;
      if (cur == 0 || fill + (e - s) > kc) {
        P.blk[P.nblk++] = cur;
        fill = 0;
      }
      P.segs[cur].term = j;
      P.segs[cur].s0 = s;
      P.segs[cur].s1 = e;
      fill += e - s;
      cur++;
    }
  P.nseg = cur;
  P.blk[P.nblk] = cur;

  /* threads, blocking */
  P.split_panels = P.npanels >= 2 * nt_max || P.ntiles < nt_max;
  int nt = nt_max;
  if (P.split_panels && P.npanels < nt) nt = (int)P.npanels;
  if (!P.split_panels && P.ntiles < nt) nt = (int)P.ntiles;
  if (nt < 1) nt = 1;
  /* prefill: 8 panels share each M block of activation tiles; against 4, alternating calls
   * measured +0.2-9 % on Llama shapes (M = 256..2048; N = 1024..14336; K = 4096, 14336), slower on none
   * (Emerald Rapids guest). An M block is 2 tiles: with KC = 256 the two tiles' activation segments
   * (2 x 12 rows x 256 steps x 4 B = 24 KiB) and the panel's lo weight segment (16 KiB) fit a
   * 48 KiB L1D, so the 12 broadcasts per step hit L1; with 8 tiles (96 KiB of activations) they came
   * from L2. Measured on a Zen 5 guest (2 threads, KC = 256, best of 3 x 0.7 s, two alternated
   * rounds): M = 2048 4096x4096 1.38-1.47 -> 1.53-1.54 TOPS, 1024x4096 1.34-1.51 -> 1.49-1.53,
   * 4096x14336 1.37-1.47 -> 1.53-1.55; M = 256 within the noise (1.48-1.60 vs 1.55-1.60); paired
   * (--ab RESQ_CPU_GEMM_MCT=8, M = 2048): 2 tiles 1.045x faster at 4096x4096 and 1024x4096. With
   * KC = 512 (below) a block's activations are 48 KiB; 1 tile instead of 2 measured 0.99-1.02x. */
  P.ncp = decode ? 1 : resq_cpu_env_i64("RESQ_CPU_GEMM_NCP", 8, 1);
  P.mct = decode ? P.ntiles : resq_cpu_env_i64("RESQ_CPU_GEMM_MCT", 2, 1);
  P.slots = P.ncp * P.mct;
  P.decode = decode;
  P.pf = resq_cpu_env_i64("RESQ_CPU_GEMM_PF", PF_DIST, 0);
#if RESQ_CPU_X86
  P.avx512 = resq_cpu_avx512_active();
  P.mk = P.avx512 ? mk_avx512 : resq_cpu_active_isa() == RESQ_CPU_ISA_AVX2 ? mk_avx2 : mk_generic;
#else
  P.mk = mk_generic;
#endif

  resq_cpu_lock();
  size_t a_bytes = (size_t)M * (size_t)P.S * 4 + 64, xs_bytes = (size_t)M * (size_t)P.G * 4 + 64;
  size_t st_elems = (size_t)P.slots * MR_MAX * NR;
  size_t scr_bytes = (size_t)nt_max * (st_elems * 8 + MR_MAX * (size_t)P.S * 4 + 64);
  P.A = (uint8_t *)resq_cpu_workspace(0, (a_bytes + 63) / 64 * 64 + xs_bytes);
  char *scr = (char *)resq_cpu_workspace(1, scr_bytes);
  if (!P.A || !scr) {
    resq_cpu_unlock();
    free(pm);
    return resq_fail(RESQ_ERR_NOMEM, "gemm (cpu): out of memory (workspace of %zu + %zu bytes)", a_bytes, scr_bytes);
  }
  P.xsum = (int32_t *)(P.A + (a_bytes + 63) / 64 * 64);
  P.ystate = (float *)scr;
  P.accstate = (int32_t *)(scr + (size_t)nt_max * st_elems * 4);
  P.rowtmp = (uint8_t *)(scr + (size_t)nt_max * st_elems * 8);
  if (P.ntiles <= 2) task_pack(&P, 0, 1);
  else resq_cpu_parallel(task_pack, &P, nt_max);
  resq_cpu_parallel(task_compute, &P, nt);
  resq_cpu_unlock();
  free(pm);
  return RESQ_OK;
}

resq_status resq_gemm_q4q8_f16__cpu(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight_cpu *w, const float *bias, uint16_t *y, int64_t ldy) {
  return gemm(split, M, x, w, bias, NULL, y, ldy);
}

resq_status resq_gemm_q4q8_f32__cpu(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight_cpu *w, const float *bias, float *y, int64_t ldy) {
  return gemm(split, M, x, w, bias, y, NULL, ldy);
}
