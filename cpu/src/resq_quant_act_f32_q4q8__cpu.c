/* SPDX-License-Identifier: Apache-2.0
 * CPU activation quantizer, path A (ref/CONTRACT.md section 3), bit-identical
 * to resq_quant_act_{f32,f16}_q4q8__ref, and the fused Hadamard + quantizer of
 * the down_proj input.
 *
 * Per row (AVX-512 path): pass 1 finds the range of every part of every group
 * (f32: vminps/vmaxps against 0; f16: integer max of the bit patterns, see
 * minmax_avx512; both exact), 16 parts at a time, each block followed by its
 * parameters (groups of 128 with r = 16, f16: ranges_g128_f16 in registers,
 * 4 blocks, then their parameters) in the reference's fp32 order (s = (mx - mn) / maxq,
 * z = rint(-mn / s)), 16 parts per vector; pass 2
 * computes every code clamp(rint(x / s) + z, 0, maxq) from x * fl(1/s) in
 * fixed point (one FMA onto a magic constant) where that is provably the same
 * integer and with the IEEE division where it may not be (codes_step has the
 * bound), clamps and packs with saturating integer packs (lo codes two per
 * byte, hi codes one per byte). The portable
 * path is the reference's loop. Rows are split across the threads. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_rows.h"
#include "resq/dtype.h"

#if RESQ_CPU_X86
#include <immintrin.h>
#endif

void resq_cpu_quant_plan(const resq_qact_params *p, const resq_qact_layout *L, int avx512, quant_plan *qp) {
  memset(qp, 0, sizeof *qp);
  qp->K = p->K;
  qp->group = p->group;
  qp->r = p->r;
  qp->lpg = L->lo_per_group;
  qp->lo_bpg = L->lo_bytes_per_group;
  qp->ngroups = L->ngroups;
  qp->bits_lo = p->bits_lo;
  qp->bits_hi = p->bits_hi;
  qp->clip = p->clip;
  qp->avx512 = avx512;
  qp->avx2 = !avx512 && resq_cpu_active_isa() == RESQ_CPU_ISA_AVX2;
  /* the parts of a row in row order: (group 0 lo, group 0 hi, group 1 lo, ...), empty parts left out */
  qp->ppg = (qp->lpg > 0) + (qp->r > 0);
  qp->nparts = qp->ngroups * qp->ppg;
  qp->p_al = (qp->nparts + 15) / 16 * 16;
  for (int j = 0; j < 16; j++) {
    int hi = qp->ppg == 2 ? j % 2 : qp->lpg == 0;
    qp->maxq16[j] = (float)((1 << (hi ? qp->bits_hi : qp->bits_lo)) - 1);
  }
}

/* the parameters of every part (QP_N arrays of p_al: see params16), the ranges of one block of 16 parts (2 x 256) */
enum { QP_S, QP_Z, QP_R, QP_M, QP_C, QP_T, QP_SH, QP_N };
int64_t resq_cpu_quant_scratch(const quant_plan *qp) { return QP_N * qp->p_al + 512; }

/* part p of a row: first channel, length, bits, and whether it is a hi part */
static void part_of(const quant_plan *qp, int64_t p, int64_t *c0, int64_t *n, int *bits, int *hi) {
  int64_t g = qp->ppg == 2 ? p >> 1 : p; /* no integer division: it costs ~15 cycles per part */
  *hi = qp->ppg == 2 ? (int)(p & 1) : qp->lpg == 0;
  *c0 = g * qp->group + (*hi ? qp->lpg : 0);
  *n = *hi ? qp->r : qp->lpg;
  *bits = *hi ? qp->bits_hi : qp->bits_lo;
}

/* The reference's scalar parameter step: pp = {s, z}. Returns 0 when s is
 * degenerate (and fills *f). The AVX-512 path computes the same in params16
 * and uses this only to find and report a degenerate part. */
static int params(float mn, float mx, float clip, int bits, float *pp, quant_fail *f) {
  float maxq = (float)((1 << bits) - 1);
  mn = mn * clip;
  mx = mx * clip;
  if (mn == 0.0f && mx == 0.0f) {
    mn = -1.0f;
    mx = 1.0f;
  }
  float s = (mx - mn) / maxq;
  if (!(s > 0.0f) || !isfinite(s)) {
    f->mn = mn;
    f->mx = mx;
    f->s = s;
    return 0;
  }
  pp[0] = s;
  pp[1] = nearbyintf(-mn / s);
  return 1;
}

/* ------------------------------------------------------------------ portable part functions */

static float ld(const float *x32, const uint16_t *x16, int64_t i) { return x32 ? x32[i] : resq_f16_to_f32(x16[i]); }

/* The reference's min/max (with 0); a NaN, which its compares would skip,
 * makes the maximum NaN, so the part fails in params() as the AVX-512 f16
 * ranges make it fail (their integer max picks the NaN pattern). */
static void minmax_generic(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float *pmn, float *pmx) {
  float mn = 0.0f, mx = 0.0f;
  int nan = 0;
  for (int64_t i = 0; i < n; i++) {
    float v = ld(x32, x16, c0 + i);
    if (v < mn) mn = v;
    if (v > mx) mx = v;
    nan |= v != v;
  }
  *pmn = mn;
  *pmx = nan ? NAN : mx;
}

static void codes_generic(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float s, float z, int bits,
                          int lo, uint8_t *dst) {
  float maxq = (float)((1 << bits) - 1);
  if (lo) memset(dst, 0, (size_t)((n + 1) / 2));
  for (int64_t i = 0; i < n; i++) {
    float v = ld(x32, x16, c0 + i);
    float c = nearbyintf(v / s) + z;
    if (c < 0.0f) c = 0.0f;
    if (c > maxq) c = maxq;
    if (lo) dst[i / 2] |= (uint8_t)(i % 2 == 0 ? (int)c : (int)c << 4);
    else dst[i] = (uint8_t)c;
  }
}

/* ------------------------------------------------------------------ AVX2 part functions
 * The portable functions' operations, 8 lanes at a time (F16C widening is exact):
 *  - range: mn = vminps(v, mn) is exactly `v < mn ? v : mn` (a NaN v keeps mn,
 *    as the reference's compare skips it; a NaN flag then fails the part);
 *    every lane starts at +0 and changes only on a strictly smaller (larger)
 *    value, so no lane holds -0 and the lanes combine by the same rule;
 *  - codes: rint(x / s) + z with the IEEE division (vdivps), clamped with
 *    vmaxps/vminps (equal to the reference's compares on these non-NaN
 *    values), packed 32 at a time (saturating packs of values already in
 *    range; lo pairs as c_even + 16 c_odd by vpmaddubsw). Tails: the portable loop. */
#if RESQ_CPU_X86
RESQ_AVX2_BEGIN

static inline __attribute__((always_inline)) __m256 ld8(const float *x32, const uint16_t *x16, int64_t i) {
  return x32 ? _mm256_loadu_ps(x32 + i) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x16 + i)));
}

static void minmax_avx2(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float *pmn, float *pmx) {
  __m256 vmn = _mm256_setzero_ps(), vmx = _mm256_setzero_ps(), vnan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = ld8(x32, x16, c0 + i);
    vmn = _mm256_min_ps(v, vmn);
    vmx = _mm256_max_ps(v, vmx);
    vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  float lmn[8], lmx[8];
  _mm256_storeu_ps(lmn, vmn);
  _mm256_storeu_ps(lmx, vmx);
  float mn = 0.0f, mx = 0.0f;
  int nan = _mm256_movemask_ps(vnan) != 0;
  for (int l = 0; l < 8; l++) {
    if (lmn[l] < mn) mn = lmn[l];
    if (lmx[l] > mx) mx = lmx[l];
  }
  for (; i < n; i++) {
    float v = ld(x32, x16, c0 + i);
    if (v < mn) mn = v;
    if (v > mx) mx = v;
    nan |= v != v;
  }
  *pmn = mn;
  *pmx = nan ? NAN : mx;
}

static void codes_avx2(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float s, float z, int bits, int lo,
                       uint8_t *dst) {
  const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z), vq = _mm256_set1_ps((float)((1 << bits) - 1));
  const __m256 zero = _mm256_setzero_ps();
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), pair = _mm256_set1_epi16(0x1001);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i c[4];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
      __m256 q = _mm256_round_ps(_mm256_div_ps(ld8(x32, x16, c0 + i + 8 * k), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, vz), zero), vq);
      c[k] = _mm256_cvtps_epi32(q);
    }
    /* 32 codes in order as bytes: the packs interleave 128-bit lanes, the permute undoes it */
    const __m256i b = _mm256_permutevar8x32_epi32(
        _mm256_packus_epi16(_mm256_packus_epi32(c[0], c[1]), _mm256_packus_epi32(c[2], c[3])), order);
    if (lo) {
      const __m256i w = _mm256_maddubs_epi16(b, pair); /* c_even + 16 c_odd <= 255 */
      const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi16(w, w), 0x08);
      _mm_storeu_si128((__m128i *)(void *)(dst + i / 2), _mm256_castsi256_si128(p));
    } else {
      _mm256_storeu_si256((__m256i *)(void *)(dst + i), b);
    }
  }
  for (; i + 8 <= n; i += 8) { /* short parts (group 128: 112 + 16) and tails, 8 at a time */
    __m256 q = _mm256_round_ps(_mm256_div_ps(ld8(x32, x16, c0 + i), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, vz), zero), vq);
    const __m256i c = _mm256_cvtps_epi32(q);
    const __m256i p8 = _mm256_packus_epi16(_mm256_packus_epi32(c, c), _mm256_setzero_si256());
    const __m128i b = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(p8, order)); /* bytes 0..7: codes 0..7 */
    if (lo) {
      const int32_t v = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_maddubs_epi16(b, _mm256_castsi256_si128(pair)), b));
      memcpy(dst + i / 2, &v, 4);
    } else {
      _mm_storel_epi64((__m128i *)(void *)(dst + i), b);
    }
  }
  if (i < n) codes_generic(x32, x16, c0 + i, n - i, s, z, bits, lo, dst + (lo ? i / 2 : i));
}

RESQ_AVX2_END
#endif

/* ------------------------------------------------------------------ AVX-512 part functions */
#if RESQ_CPU_X86
RESQ_AVX512_BEGIN

static inline __attribute__((always_inline)) __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/* Pass 1 of a part, to 64 bytes at vmn and vmx (their lanes are reduced 16
 * parts at a time by params16).
 * f32 input: 16 lanes of partial minima and maxima.
 * f16 input: 32 lanes of f16 bit patterns, compared as integers without a
 * conversion (2 uops per 32 values instead of 8): f16 is sign-magnitude, so
 * among the bit patterns read as int16 the largest is the largest
 * non-negative value (negatives are < 0 as int16), and read as uint16 the
 * largest of those >= 0x8000 is the most negative value. Starting from 0
 * (+0.0) and 0x8000 (-0.0) gives max(x, 0) and min(x, -0.0): the same numbers
 * as the reference's min/max with 0 (a -0.0 minimum gives the same s, z and
 * guard as +0.0: mx - mn, -mn / s, mn == 0 and the max |x| are unchanged).
 * Masked-off lanes load 0, neutral for both. */
static inline __attribute__((always_inline)) void minmax_avx512(const float *x32, const uint16_t *x16, int64_t c0,
                                                                int64_t n, float *vmn, float *vmx) {
  int64_t i = 0;
  if (x32) {
    /* vminps(v, mn) = v < mn ? v : mn, the reference's update */
    __m512 mn0 = _mm512_setzero_ps(), mx0 = mn0, mn1 = mn0, mx1 = mn0;
    for (; i + 32 <= n; i += 32) {
      __m512 a = _mm512_loadu_ps(x32 + c0 + i), b = _mm512_loadu_ps(x32 + c0 + i + 16);
      mn0 = _mm512_min_ps(a, mn0);
      mx0 = _mm512_max_ps(a, mx0);
      mn1 = _mm512_min_ps(b, mn1);
      mx1 = _mm512_max_ps(b, mx1);
    }
    for (; i < n; i += 16) {
      __m512 a = _mm512_maskz_loadu_ps(tail_mask(n - i), x32 + c0 + i);
      mn0 = _mm512_min_ps(a, mn0);
      mx0 = _mm512_max_ps(a, mx0);
    }
    _mm512_store_ps(vmn, _mm512_min_ps(mn0, mn1));
    _mm512_store_ps(vmx, _mm512_max_ps(mx0, mx1));
  } else {
    __m512i mx0 = _mm512_setzero_si512(), mx1 = mx0, mn0 = _mm512_set1_epi16((short)0x8000), mn1 = mn0;
    for (; i + 64 <= n; i += 64) {
      __m512i a = _mm512_loadu_si512(x16 + c0 + i), b = _mm512_loadu_si512(x16 + c0 + i + 32);
      mx0 = _mm512_max_epi16(mx0, a);
      mn0 = _mm512_max_epu16(mn0, a);
      mx1 = _mm512_max_epi16(mx1, b);
      mn1 = _mm512_max_epu16(mn1, b);
    }
    for (; i < n; i += 32) {
      int64_t left = n - i;
      __m512i a = _mm512_maskz_loadu_epi16(left >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << left) - 1), x16 + c0 + i);
      mx0 = _mm512_max_epi16(mx0, a);
      mn0 = _mm512_max_epu16(mn0, a);
    }
    _mm512_store_si512(vmn, _mm512_max_epu16(mn0, mn1));
    _mm512_store_si512(vmx, _mm512_max_epi16(mx0, mx1));
  }
}

/* Pass 1 of both parts of a group whose lo part ends 48 channels into a block
 * of 64 and whose hi part has 16 (the groups of codes_lo48_hi16), f16 input:
 * the same integer ranges as minmax_avx512 on the lo and the hi part, with the
 * group read as whole blocks of 64 halves and the last block's second vector
 * split between the parts by masks (lanes 0-15 lo, 16-31 hi), so no tail loop
 * or mask is computed per part. */
static inline __attribute__((always_inline)) void minmax_lo48_hi16_f16(const uint16_t *x, int64_t lpg, float *vmn_lo,
                                                                       float *vmx_lo, float *vmn_hi, float *vmx_hi) {
  const __m512i n80 = _mm512_set1_epi16((short)0x8000), zero = _mm512_setzero_si512();
  __m512i mx0 = zero, mx1 = zero, mn0 = n80, mn1 = n80;
  int64_t i = 0;
  for (; i + 64 <= lpg; i += 64) {
    __m512i a = _mm512_loadu_si512(x + i), b = _mm512_loadu_si512(x + i + 32);
    mx0 = _mm512_max_epi16(mx0, a);
    mn0 = _mm512_max_epu16(mn0, a);
    mx1 = _mm512_max_epi16(mx1, b);
    mn1 = _mm512_max_epu16(mn1, b);
  }
  const __m512i a = _mm512_loadu_si512(x + i), b = _mm512_loadu_si512(x + i + 32);
  const __mmask32 klo = 0x0000FFFFu, khi = 0xFFFF0000u;
  mx0 = _mm512_max_epi16(mx0, a);
  mn0 = _mm512_max_epu16(mn0, a);
  mx1 = _mm512_mask_max_epi16(mx1, klo, mx1, b);
  mn1 = _mm512_mask_max_epu16(mn1, klo, mn1, b);
  _mm512_store_si512(vmn_lo, _mm512_max_epu16(mn0, mn1));
  _mm512_store_si512(vmx_lo, _mm512_max_epi16(mx0, mx1));
  _mm512_store_si512(vmn_hi, _mm512_mask_max_epu16(n80, khi, n80, b));
  _mm512_store_si512(vmx_hi, _mm512_maskz_max_epi16(khi, zero, b));
}

/* The two halves of every dword of r (f16 patterns) folded with OP, converted to f32 */
#define RESQ_FOLD16(R, OP) _mm512_cvtph_ps(_mm512_cvtepi32_epi16(OP(R, _mm512_srli_epi32(R, 16))))

/* 16 vectors to one: lane j = min (max) over the 16 lanes of v[j]. 45 shuffles
 * and min/max instead of 16 horizontal reductions of 8 uops each; min and max
 * are exact, so the order does not matter. */
#define RESQ_TRANSPOSE_REDUCE(NAME, OP)                                                                      \
  static inline __attribute__((always_inline)) __m512 NAME(const float *v) {                                  \
    __m512 a[8], b[4], c[2];                                                                                  \
    for (int j = 0; j < 8; j++) { /* lanes: (v2j, v2j+1) interleaved, 2 partial results each */              \
      __m512 x = _mm512_load_ps(v + 32 * j), y = _mm512_load_ps(v + 32 * j + 16);                             \
      a[j] = OP(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));                                          \
    }                                                                                                         \
    for (int j = 0; j < 4; j++) /* per 128-bit lane: (v4j .. v4j+3), one value each */                       \
      b[j] = OP(_mm512_shuffle_ps(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),                           \
                _mm512_shuffle_ps(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));                          \
    for (int j = 0; j < 2; j++)                                                                               \
      c[j] = OP(_mm512_shuffle_f32x4(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),                        \
                _mm512_shuffle_f32x4(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));                       \
    return OP(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),                                     \
              _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));                                    \
  }
/* The same for a block whose parts 2..15 are padding (all-zero ranges: the per-token rows, one or two
 * parts). OP(0, 0) = 0 for every OP here, so the levels that would combine only padding are zero
 * vectors, and lanes 2..15 of the result are 0 as in the full form: 12 shuffles and min/max instead of
 * 45, and 2 vectors read instead of 16. Alternating processes, 1 thread, K = 4096 in cache: per token
 * 0.945-0.95x the time, r = 0 0.944-0.957x (cpu/README). */
#define RESQ_SHUF_PS(A, B, I, J) _mm512_shuffle_ps(A, B, _MM_SHUFFLE(I, J, I, J))
#define RESQ_SHUF_X4(A, B, I, J) _mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(I, J, I, J))
#define RESQ_REDUCE2(NAME, OP)                                                                \
  static inline __attribute__((always_inline)) __m512 NAME(const float *v) {                   \
    const __m512 z = _mm512_setzero_ps();                                                      \
    __m512 x = _mm512_load_ps(v), y = _mm512_load_ps(v + 16);                                  \
    __m512 a = OP(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));                         \
    __m512 b = OP(RESQ_SHUF_PS(a, z, 1, 0), RESQ_SHUF_PS(a, z, 3, 2));                         \
    __m512 c = OP(RESQ_SHUF_X4(b, z, 2, 0), RESQ_SHUF_X4(b, z, 3, 1));                         \
    return OP(RESQ_SHUF_X4(c, z, 2, 0), RESQ_SHUF_X4(c, z, 3, 1));                             \
  }
#define RESQ_MAXS16(A, B) _mm512_castsi512_ps(_mm512_max_epi16(_mm512_castps_si512(A), _mm512_castps_si512(B)))
#define RESQ_MAXU16(A, B) _mm512_castsi512_ps(_mm512_max_epu16(_mm512_castps_si512(A), _mm512_castps_si512(B)))
RESQ_TRANSPOSE_REDUCE(reduce16_min, _mm512_min_ps)
RESQ_TRANSPOSE_REDUCE(reduce16_max, _mm512_max_ps)
RESQ_TRANSPOSE_REDUCE(reduce16_maxs16, RESQ_MAXS16) /* f16 input: per int16 half of each dword */
RESQ_TRANSPOSE_REDUCE(reduce16_maxu16, RESQ_MAXU16)
RESQ_REDUCE2(reduce2_min, _mm512_min_ps)
RESQ_REDUCE2(reduce2_max, _mm512_max_ps)
RESQ_REDUCE2(reduce2_maxs16, RESQ_MAXS16)
RESQ_REDUCE2(reduce2_maxu16, RESQ_MAXU16)
#undef RESQ_TRANSPOSE_REDUCE
#undef RESQ_REDUCE2
#undef RESQ_SHUF_PS
#undef RESQ_SHUF_X4
#undef RESQ_MAXS16
#undef RESQ_MAXU16

/* bits(192.0f): C of the folded form (params16, codes_step_lo16); its low 16 bits are zero */
#define RESQ_BITS_192 0x43400000

/* params() for 16 parts at once: the same fp32 operations in the same order,
 * one lane per part, to pp[QP_S] and pp[QP_Z] (pp: the block's first part,
 * arrays Pa floats apart), plus the constants of codes_step's fixed-point
 * codes: r = fl(1/s); Q = fl(amax * r), amax = max |x| of the part (before the
 * clip), bounds every |x * r|; sh = the largest number of fraction bits <= 20
 * with Q (1 + 2^-19) < 2^(21 - sh), so Q < 2^(21 - sh) with room for Q's
 * roundings; M = 1.5 * 2^(23 - sh), whose binade [2^(23 - sh), 2^(24 - sh))
 * has an ulp of 2^-sh; C = bits(M) - 2^(sh - 1) - 1 - z * 2^sh; T = 2^sh - 4.
 * A part with Q >= 2^18 (sh would be < 3) or a non-finite Q (1/s overflowed:
 * s below 2^-128) gets T = 0, which sends every step of it to the division.
 * A part with Q < 32 and z in [0, 31] (every 4-bit part with clip >= 1/2)
 * gets the folded form instead: sh = 16, z in M, C = bits(192) (below; the
 * general steps read it the same way, codes_step_lo16 relies on it).
 * mn and mx: the 16 parts' ranges, lane i part i of the block. Returns 0 if
 * a lane's scale is degenerate (the caller then finds and reports the first
 * one with params(): first_bad_part). */
static inline __attribute__((always_inline)) int params16_of(__m512 mn, __m512 mx, float clip, const float *maxq16,
                                                             float *pp, int64_t Pa) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f), vclip = _mm512_set1_ps(clip);
  __m512 amax = _mm512_max_ps(_mm512_sub_ps(zero, mn), mx);
  mn = _mm512_mul_ps(mn, vclip);
  mx = _mm512_mul_ps(mx, vclip);
  __mmask16 allz = _mm512_cmp_ps_mask(mn, zero, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(mx, zero, _CMP_EQ_OQ);
  mn = _mm512_mask_blend_ps(allz, mn, _mm512_set1_ps(-1.0f));
  mx = _mm512_mask_blend_ps(allz, mx, one);
  __m512 s = _mm512_div_ps(_mm512_sub_ps(mx, mn), _mm512_loadu_ps(maxq16));
  if ((__mmask16)(_mm512_cmp_ps_mask(s, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(s, _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ)) !=
      (__mmask16)0xffff)
    return 0;
  __m512 z = _mm512_roundscale_ps(_mm512_div_ps(_mm512_sub_ps(zero, mn), s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_div_ps(one, s);
  __m512 qm = _mm512_mul_ps(_mm512_mul_ps(amax, r), _mm512_set1_ps(1.0f + 0x1p-19f));
  __mmask16 ok = _mm512_cmp_ps_mask(qm, _mm512_set1_ps(0x1p18f), _CMP_LT_OQ); /* false for NaN and Inf */
  /* floor(log2(max(qm, 1))) in [0, 17] on the ok lanes (max(NaN, 1) = 1; getexp of a normal value is exact) */
  __m512i e = _mm512_cvttps_epi32(_mm512_getexp_ps(_mm512_max_ps(qm, one)));
  e = _mm512_mask_blend_epi32(ok, _mm512_set1_epi32(17), e);
  const __m512i one_i = _mm512_set1_epi32(1);
  __m512i sh = _mm512_sub_epi32(_mm512_set1_epi32(20), e);
  __m512i mbits = _mm512_or_si512(_mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(150), sh), 23),
                                  _mm512_set1_epi32(0x400000));
  __m512i c = _mm512_sub_epi32(_mm512_sub_epi32(mbits, _mm512_sllv_epi32(one_i, _mm512_sub_epi32(sh, one_i))),
                               _mm512_add_epi32(one_i, _mm512_sllv_epi32(_mm512_cvttps_epi32(z), sh)));
  /* the folded form (codes_step_lo16): sh = 16 (valid: Q (1 + 2^-19) < 2^5 gives a natural sh >= 16, and a
   * smaller sh keeps the bound), z and the half-unit offset moved into M = 192 + z + 2^-1 + 2^-16 (exact: a
   * multiple of 2^-16 in [128, 256), the binade of 192, whose ulp is 2^-16), C = bits(192). Then u = bits(y) -
   * C = j + z 2^16 + 2^15 + 1, as in the general form, and y stays in the binade: |x r + z + 1/2| < 32 + 31.5 */
  const __mmask16 fold = ok & _mm512_cmp_ps_mask(qm, _mm512_set1_ps(32.0f), _CMP_LT_OQ) &
                         _mm512_cmp_ps_mask(z, zero, _CMP_GE_OQ) & _mm512_cmp_ps_mask(z, _mm512_set1_ps(31.0f), _CMP_LE_OQ);
  sh = _mm512_mask_blend_epi32(fold, sh, _mm512_set1_epi32(16));
  mbits = _mm512_mask_blend_epi32(
      fold, mbits,
      _mm512_castps_si512(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_set1_ps(192.0f), z), _mm512_set1_ps(0.5f)),
                                        _mm512_set1_ps(0x1p-16f))));
  c = _mm512_mask_blend_epi32(fold, c, _mm512_set1_epi32(RESQ_BITS_192));
  __m512i t = _mm512_maskz_sub_epi32(ok, _mm512_sllv_epi32(one_i, sh), _mm512_set1_epi32(4));
  _mm512_store_ps(pp + QP_S * Pa, s);
  _mm512_store_ps(pp + QP_Z * Pa, z);
  _mm512_store_ps(pp + QP_R * Pa, r);
  _mm512_store_si512(pp + QP_M * Pa, mbits);
  _mm512_store_si512(pp + QP_C * Pa, c);
  _mm512_store_si512(pp + QP_T * Pa, t);
  _mm512_store_si512(pp + QP_SH * Pa, sh);
  return 1;
}

/* params16_of on the ranges of 16 parts stored by minmax_avx512 or
 * minmax_lo48_hi16_f16. two: parts 2..15 of the block are padding and their
 * ranges are not read (reduce2_*). */
static inline __attribute__((always_inline)) int params16(const float *vmn, const float *vmx, int f16, float clip,
                                                          const float *maxq16, float *pp, int64_t Pa, int two) {
  __m512 mn, mx;
  if (f16) {
    __m512i a = _mm512_castps_si512(two ? reduce2_maxu16(vmn) : reduce16_maxu16(vmn)),
            b = _mm512_castps_si512(two ? reduce2_maxs16(vmx) : reduce16_maxs16(vmx));
    mn = RESQ_FOLD16(a, _mm512_max_epu16);
    mx = RESQ_FOLD16(b, _mm512_max_epi16);
  } else {
    mn = two ? reduce2_min(vmn) : reduce16_min(vmn);
    mx = two ? reduce2_max(vmx) : reduce16_max(vmx);
  }
  return params16_of(mn, mx, clip, maxq16, pp, Pa);
}

/* The ranges of 8 whole groups of 128 halves (lo part 112 channels, hi part
 * 16: head_dim 128 with r = 16), the 16 parts' mn and mx as f32 lanes in part
 * order (lane 2g lo, 2g + 1 hi of group g), without a store: the same integer
 * maxima as minmax_lo48_hi16_f16 (so the same numbers), in registers.
 * Per group, vectors a0..a3 (32 halves each; a3: lo channels 96-111 in its
 * low 256 bits, the hi part in its high 256): the lo part is folded to 256
 * bits (its 16 words: 2 zmm maxima, then 256-bit ones) and put beside the hi
 * part, one vector per group and kind (minmax_lo48_hi16_f16 writes two per
 * part and kind, 4 zmm stores per group). Then 8 vectors of 2 parts x 8
 * dwords reduce to one lane per part in 3 levels (shuffles of 128-bit blocks,
 * then within blocks, 21 shuffles and maxima per kind instead of 45 for 16
 * stored vectors) and one vpermd into part order. The starting values of
 * minmax_avx512 (0 and 0x8000) join once, at the end: max is associative. */
#define RESQ_MAX3(OP, A, B, C) OP(OP(A, B), C)
#define RESQ_RANGE_G128(NAME, OP)                                                                            \
  static inline __attribute__((always_inline)) __m512i NAME(const __m512i *v) {                               \
    __m512i a[4], b[2];                                                                                       \
    for (int j = 0; j < 4; j++) /* block L of a[j]: part 4j + L (blocks 0, 1 of v[g]: lo; 2, 3: hi) */       \
      a[j] = OP(_mm512_shuffle_i32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),                        \
                _mm512_shuffle_i32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));                       \
    for (int k = 0; k < 2; k++) /* block L of b[k]: part 8k + L (dwords 0, 1), 8k + 4 + L (2, 3) */          \
      b[k] = OP(_mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(a[2 * k]),                          \
                                                      _mm512_castsi512_ps(a[2 * k + 1]), _MM_SHUFFLE(1, 0, 1, 0))), \
                _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(a[2 * k]),                          \
                                                      _mm512_castsi512_ps(a[2 * k + 1]), _MM_SHUFFLE(3, 2, 3, 2))));\
    /* dword 4L + i: part 4i + L */                                                                           \
    __m512i c = OP(_mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(b[0]), _mm512_castsi512_ps(b[1]),   \
                                                         _MM_SHUFFLE(2, 0, 2, 0))),                           \
                   _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(b[0]), _mm512_castsi512_ps(b[1]),   \
                                                         _MM_SHUFFLE(3, 1, 3, 1))));                          \
    return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), c); \
  }
RESQ_RANGE_G128(reduce_g128_maxu16, _mm512_max_epu16)
RESQ_RANGE_G128(reduce_g128_maxs16, _mm512_max_epi16)
#undef RESQ_RANGE_G128

static inline __attribute__((always_inline)) void ranges_g128_f16(const uint16_t *x, __m512 *mn, __m512 *mx) {
  __m512i vn[8], vx[8];
#pragma GCC unroll 8
  for (int g = 0; g < 8; g++) {
    const uint16_t *xg = x + 128 * g;
    const __m512i a0 = _mm512_loadu_si512(xg), a1 = _mm512_loadu_si512(xg + 32), a2 = _mm512_loadu_si512(xg + 64),
                  a3 = _mm512_loadu_si512(xg + 96);
    const __m512i n3 = RESQ_MAX3(_mm512_max_epu16, a0, a1, a2), x3 = RESQ_MAX3(_mm512_max_epi16, a0, a1, a2);
    const __m256i n = RESQ_MAX3(_mm256_max_epu16, _mm512_castsi512_si256(n3), _mm512_extracti64x4_epi64(n3, 1),
                                _mm512_castsi512_si256(a3)),
                  xx = RESQ_MAX3(_mm256_max_epi16, _mm512_castsi512_si256(x3), _mm512_extracti64x4_epi64(x3, 1),
                                 _mm512_castsi512_si256(a3));
    vn[g] = _mm512_inserti64x4(a3, n, 0);
    vx[g] = _mm512_inserti64x4(a3, xx, 0);
  }
  const __m512i un = _mm512_max_epu16(reduce_g128_maxu16(vn), _mm512_set1_epi16((short)0x8000)),
                sx = _mm512_max_epi16(reduce_g128_maxs16(vx), _mm512_setzero_si512());
  *mn = RESQ_FOLD16(un, _mm512_max_epu16);
  *mx = RESQ_FOLD16(sx, _mm512_max_epi16);
}
#undef RESQ_MAX3

/* rint(x / s) with the IEEE division, clamped to +-2^16 first (the codes are
 * clamped to [0, 255] later, and an int32 conversion must not overflow) */
static inline __attribute__((always_inline)) __m512i rint_div(__m512 v, __m512 vs) {
  const __m512 big = _mm512_set1_ps(65536.0f);
  __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(v, vs), _mm512_sub_ps(_mm512_setzero_ps(), big)), big);
  return _mm512_cvt_roundps_epi32(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* One part's constants for codes_step, broadcast (params16 has their meaning) */
typedef struct codes_k {
  __m512 r, m;
  __m512i c, t;
  __m128i sh;
  int folded;       /* params16's folded form: codes_step_lo16 may be used */
  const float *pp;  /* s and z, read only by the division fallback (k_s, k_z): the stores of */
  int64_t Pa;       /* the codes may alias the scratch, so broadcasts made up front could not be sunk */
} codes_k;

static inline __attribute__((always_inline)) __m512 k_s(const codes_k *k) { return _mm512_set1_ps(k->pp[QP_S * k->Pa]); }
static inline __attribute__((always_inline)) __m512i k_z(const codes_k *k) {
  return _mm512_set1_epi32((int32_t)k->pp[QP_Z * k->Pa]);
}

/* M and T follow from sh, but they are stored by params16 (16 parts per vector) rather than derived
 * here, which runs once per part: per group of 128 channels twice */
static inline __attribute__((always_inline)) codes_k part_k(const float *pp, int64_t Pa) {
  codes_k k;
  const int32_t *pi = (const int32_t *)pp;
  k.pp = pp;
  k.Pa = Pa;
  k.r = _mm512_set1_ps(pp[QP_R * Pa]);
  k.m = _mm512_castsi512_ps(_mm512_set1_epi32(pi[QP_M * Pa]));
  k.c = _mm512_set1_epi32(pi[QP_C * Pa]);
  k.t = _mm512_set1_epi32(pi[QP_T * Pa]);
  k.sh = _mm_cvtsi32_si128(pi[QP_SH * Pa]);
  /* a general C is never bits(192): it is -(2^(sh-1) + 1) mod 2^sh (bits(M) and z 2^sh are multiples of 2^sh) */
  k.folded = pi[QP_C * Pa] == RESQ_BITS_192;
  return k;
}

/* rint(x / s) + z of one vector in fixed point, and whether a lane is near a
 * tie (see codes_step) */
static inline __attribute__((always_inline)) __m512i fixed_codes(__m512 v, const codes_k *k, __mmask16 *near) {
  __m512 y = _mm512_fmadd_round_ps(v, k->r, k->m, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512i u = _mm512_sub_epi32(_mm512_castps_si512(y), k->c);
  *near |= _mm512_testn_epi32_mask(u, k->t);
  return _mm512_sra_epi32(u, k->sh);
}

/* Pass 2, one step of nv <= 4 vectors (64 channels at most; left of them valid):
 * codes = clamp(rint(x / s) + z, 0, maxq).
 *
 * Division-free where that is exact. vdivps zmm occupies the divider ~9 core
 * cycles per 16 lanes here (measured: 3.5 ns), more than all the other work of
 * the pass, so the codes come from p = x * r, r = fl(1/s), in fixed point with
 * sh fraction bits (params16): y = fl(p + M) by one FMA (the product exact,
 * one rounding) lies in M's binade, whose ulp is 2^-sh, because |p| <= Q <
 * 2^(21 - sh); so y = M + j 2^-sh with j = p 2^sh rounded to the nearest
 * integer, and bits(y) = bits(M) + j. Then u = bits(y) - C = j + 2^(sh-1) + 1
 * + z 2^sh and the code is u >> sh (arithmetic) = floor((j + 2^(sh-1) + 1) /
 * 2^sh) + z, which is rint(j 2^-sh) + z unless j 2^-sh lies within 2^-sh of
 * a half-integer. It equals the contract's rint(fl(x / s)) + z unless a
 * half-integer lies between j 2^-sh and fl(e), e = x / s: with u24 = 2^-24,
 * r = (1/s)(1 + d1), p = e(1 + d1), fl(e) = e(1 + d2), |d1|, |d2| <= u24, so
 * |fl(e) - j 2^-sh| <= 2 u24 |e| + 2^-(sh+1) < 2^-(sh+2) + 2^-(sh+1) (|e| <=
 * Q (1 + 3 u24) < 2^(21 - sh)): less than 0.75 units of 2^-sh. The test flags
 * every lane whose w = u mod 2^sh is in [0, 4), i.e. j within -1..2 units of
 * a half-integer (one vptestnmd against T = 2^sh - 4); any other lane is at
 * least 2 units from one, more than 2.6x the bound, and no boundary can be
 * crossed (nor is it a tie). If any lane of the step is flagged (~4 / 2^sh of
 * the lanes: 0.05 % for 8-bit codes, 0.003 % for 4-bit), the whole step is
 * recomputed with the division; T = 0 flags every lane. Zero lanes (tails,
 * padding) give w = 2^(sh-1) + 1, never flagged. Random rows and verify/'s
 * near-tie case check this bit for bit against the reference.
 *
 * Then the integer side: vpackssdw saturates to int16 (|code| < 2^21 + 256
 * here, <= 2^16 + 255 after a division), vpackuswb clamps to [0, 255] and
 * vpminub to maxq: the contract's clamp(rint + z, 0, maxq) for every value.
 * The packs work per 128-bit lane, so byte 16L + 4k + m holds channel 16k +
 * 4L + m; a vpermd puts the 8-bit codes back in channel order. 4-bit codes:
 * vpmaddubsw with (1, 16) joins each channel pair (2j, 2j+1) into one byte
 * (adjacent in the packed order), vpermd + vpmovwb reorder and narrow. Vectors
 * past nv are zero (not computed), their codes are never stored.
 *
 * Measured on the Zen 4 guest against the float tie test it replaces
 * (vmulps, vreduceps, vrangeps, vcvtps2dq, vpaddsw: 30 zmm operations per
 * step against 27, 12 of them on Zen 4's add pipes, 4 vreduceps at half rate;
 * here none but the f16 conversions): an isolated copy of the 4-bit step 18.7 against
 * 24.6 cycles per 64 codes (cpu/README). */
static inline __attribute__((always_inline)) void codes_step(const float *x, const uint16_t *x16, int64_t left,
                                                             int nv, const codes_k *k, __m512i vmaxq, int lo,
                                                             uint8_t *dst) {
  const __m512i join = _mm512_set1_epi16(16 << 8 | 1);
  /* hi: output dword J from packed dword 4 (J % 4) + J / 4; lo (after vpmaddubsw): dword 4k + L from 4L + k */
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m512 v[4];
  __m512i c[4];
  __mmask16 near = 0;
  for (int j = 0; j < 4; j++) {
    __mmask16 km = tail_mask(left - 16 * j);
    v[j] = j >= nv ? _mm512_setzero_ps()
           : x16   ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(km, x16 + 16 * j))
                   : _mm512_maskz_loadu_ps(km, x + 16 * j);
    c[j] = j < nv ? fixed_codes(v[j], k, &near) : _mm512_setzero_si512();
  }
  if (near)
    for (int j = 0; j < 4; j++) c[j] = j < nv ? _mm512_add_epi32(rint_div(v[j], k_s(k)), k_z(k)) : _mm512_setzero_si512();
  __m512i b = _mm512_min_epu8(_mm512_packus_epi16(_mm512_packs_epi32(c[0], c[1]), _mm512_packs_epi32(c[2], c[3])), vmaxq);
  if (lo) {
    __m256i n4 = _mm512_cvtepi16_epi8(_mm512_permutexvar_epi32(perm, _mm512_maddubs_epi16(b, join)));
    int64_t nb = left >= 64 ? 32 : (left + 1) / 2;
    if (nb == 32) _mm256_storeu_si256((__m256i *)dst, n4);
    else _mm256_mask_storeu_epi8(dst, (__mmask32)((1u << nb) - 1), n4);
    /* an odd tail: the high nibble of the last byte is the padding lane's code; the layout wants 0 there */
    if (left < 64 && (left & 1)) dst[nb - 1] &= 0x0f;
  } else {
    b = _mm512_permutexvar_epi32(perm, b);
    if (left >= 64) _mm512_storeu_si512(dst, b);
    else _mm512_mask_storeu_epi8(dst, (__mmask64)((1ull << left) - 1), b);
  }
}

/* lo16_joined: codes_step for 64 lo (4-bit) codes of a part in the folded form (params16:
 * sh = 16, M = 192 + z + 2^-1 + 2^-16, C = bits(192)), 6 zmm operations fewer.
 * u = bits(y) - bits(192) is the general form's u (same j, same z 2^16 +
 * 2^15 + 1), so the codes and the near-tie flags are codes_step's, bit for
 * bit. Because the low 16 bits of bits(192) are zero: w = u mod 2^16 is the
 * low word of bits(y) (the tie test needs no subtraction), and the code
 * floor(u / 2^16) is the high word of bits(y) minus 0x4340, the high word of
 * bits(192), exactly as int16 (|code| < 32 + 32). So two vpermt2w gather the
 * high words of the four vectors into two (channels 0-31, 32-63) in place of
 * 4 vpsubd, 4 vpsrad and 2 vpackssdw; two vpsubw remove the offset (10
 * operations replaced by 4). The
 * division fallback writes its codes in the same form, (code + 0x4340) << 16
 * (no overflow: |x / s| <= Q (1 + 3 2^-24) < 32 and z <= 31 here, so
 * |code| < 64). Then as in codes_step: vpackuswb clamps to
 * [0, 255] (per 128-bit lane: byte 16L + t is channel 8L + t for t < 8 and
 * 32 + 8L + t - 8 for t >= 8), vpminub to maxq, vpmaddubsw joins channel
 * pairs, vpermd (D <- 4 (D/2) + D%2 for D < 8, 4 ((D-8)/2) + 2 + D%2 after)
 * and vpmovwb put the 32 nibble bytes in order (codes_step_lo16; the words
 * joined by vpmaddubsw are what this returns). */
static inline __attribute__((always_inline)) __m512i lo16_joined(const void *src, const int f16, const codes_k *k,
                                                                  __m512i vmaxq) {
  const __m512i join = _mm512_set1_epi16(16 << 8 | 1);
  /* word i <- word 2i + 1 of (a, b): the high words, a's dwords then b's (index bit 5 selects b) */
  const __m512i hiw = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25,
                                       23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  const __m512i base = _mm512_set1_epi16(RESQ_BITS_192 >> 16);
  __m512 v[4];
  __m512i y[4];
  for (int j = 0; j < 4; j++) {
    v[j] = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + 16 * j)))
               : _mm512_loadu_ps((const float *)src + 16 * j);
    y[j] = _mm512_castps_si512(_mm512_fmadd_round_ps(v[j], k->r, k->m, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  /* The tie test of all four vectors at once: a lane is near a tie iff its residue w, the low word of
   * bits(y), is < 4 (codes_step's test against T = 2^16 - 4), so the step has one iff the unsigned minimum
   * of the four vectors' low words is < 4. The high words, 0x4340 + code with |code| < 64 (y in [128,
   * 256)), are never below 4, so the minimum runs over all 32 words: 3 vpminuw and one vptestnmw instead
   * of 4 vptestnmd and their mask ORs. Alternating processes, 1 thread, K = 4096 in cache: per token
   * 0.98x the time, r = 0 0.976x (cpu/README). */
  const __m512i wmin = _mm512_min_epu16(_mm512_min_epu16(y[0], y[1]), _mm512_min_epu16(y[2], y[3]));
  if (_mm512_testn_epi16_mask(wmin, _mm512_set1_epi16((short)0xFFFC)))
    for (int j = 0; j < 4; j++)
      y[j] = _mm512_slli_epi32(_mm512_add_epi32(_mm512_add_epi32(rint_div(v[j], k_s(k)), k_z(k)),
                                                _mm512_set1_epi32(RESQ_BITS_192 >> 16)),
                               16);
  __m512i w01 = _mm512_sub_epi16(_mm512_permutex2var_epi16(y[0], hiw, y[1]), base);
  __m512i w23 = _mm512_sub_epi16(_mm512_permutex2var_epi16(y[2], hiw, y[3]), base);
  __m512i b = _mm512_min_epu8(_mm512_packus_epi16(w01, w23), vmaxq);
  return _mm512_maddubs_epi16(b, join);
}

/* One folded step: lo16_joined's 32 nibble bytes (one per word) in order */
static inline __attribute__((always_inline)) void codes_step_lo16(const void *src, const int f16, const codes_k *k,
                                                                  __m512i vmaxq, uint8_t *dst) {
  const __m512i perm = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  _mm256_storeu_si256((__m256i *)dst,
                      _mm512_cvtepi16_epi8(_mm512_permutexvar_epi32(perm, lo16_joined(src, f16, k, vmaxq))));
}

/* The 64 nibble bytes of two steps' joined words (two folded steps, 128 channels:
 * codes_step_lo16_2; or a group of 128's two steps: joint_codes): one vpackuswb of the two word
 * vectors and one vpermd in place of two vpermd and two vpmovwb, which all
 * issue to the one shuffle pipe that the f16 conversions use too (a pair of
 * them runs at half the rate of either: cpu/README). With the group of 4
 * words g_i = words 4i..4i+3 of a step's vector, the step's output is g0 g2
 * g4 g6 g1 g3 g5 g7 (codes_step_lo16's perm); after the pack, 128-bit lane L
 * holds the first step's g_2L, g_2L+1 then the second's, dwords 4L..4L+3.
 * The word values are 0..255 (two nibbles), so the signed-saturating pack
 * keeps them. Alternating processes, 1 thread, K = 4096 in cache: per token
 * and r = 0 0.955-0.96x the time; 2 threads, 2048 rows: 0.96x. */
static inline __attribute__((always_inline)) __m512i nibbles_of_pair(__m512i m1, __m512i m2) {
  const __m512i perm2 = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_epi32(perm2, _mm512_packus_epi16(m1, m2));
}
static inline __attribute__((always_inline)) void codes_step_lo16_2(const void *src, const int f16, const codes_k *k,
                                                                    __m512i vmaxq, uint8_t *dst) {
  const __m512i m1 = lo16_joined(src, f16, k, vmaxq);
  const __m512i m2 = lo16_joined((const char *)src + 64 * (f16 ? 2 : 4), f16, k, vmaxq);
  _mm512_storeu_si512(dst, nibbles_of_pair(m1, m2));
}

/* The last 64 channels of a group whose lo part ends in 48 channels and whose
 * hi part has 16 (groups of 128 with r = 16, the per-head KV case): one step
 * for both parts instead of a 3-vector lo step and a 1-vector hi step. Vectors
 * 0-2 use the lo constants, vector 3 the hi ones (z is in each part's C, so
 * only maxq is blended, per byte), one flag decides the division for the four,
 * and the same packed vector gives both outputs: 24 nibble bytes (the
 * 25th-32nd, which join hi codes, are not stored) and the 16 hi bytes. full:
 * store all 32 nibble bytes (a plain store instead of a masked one); the 8
 * extra bytes land on the next group's first lo codes, which that group's
 * steps write afterwards, so the caller passes it for every group but the
 * row's last. */
static inline __attribute__((always_inline)) void codes_lo48_hi16(const void *src, const int f16, const codes_k *kl,
                                                                  const codes_k *kh, __m512i maxq_lo, __m512i maxq_hi,
                                                                  uint8_t *dlo, uint8_t *dhi, int full) {
  const __m512i join = _mm512_set1_epi16(16 << 8 | 1);
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m512 v[4];
  __m512i c[4];
  __mmask16 near = 0;
  for (int j = 0; j < 4; j++) {
    v[j] = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + 16 * j)))
               : _mm512_loadu_ps((const float *)src + 16 * j);
    c[j] = fixed_codes(v[j], j < 3 ? kl : kh, &near);
  }
  if (near)
    for (int j = 0; j < 4; j++) c[j] = _mm512_add_epi32(rint_div(v[j], k_s(j < 3 ? kl : kh)), k_z(j < 3 ? kl : kh));
  /* packs(c2, c3) per 128-bit lane: 4 words of c2, then 4 of c3; packus: bytes 12-15 of each lane are c3's */
  const __m512i mq = _mm512_mask_blend_epi8((__mmask64)0xF000F000F000F000ull, maxq_lo, maxq_hi);
  __m512i b = _mm512_min_epu8(_mm512_packus_epi16(_mm512_packs_epi32(c[0], c[1]), _mm512_packs_epi32(c[2], c[3])), mq);
  __m256i n4 = _mm512_cvtepi16_epi8(_mm512_permutexvar_epi32(perm, _mm512_maddubs_epi16(b, join)));
  if (full) _mm256_storeu_si256((__m256i *)dlo, n4);
  else _mm256_mask_storeu_epi8(dlo, (__mmask32)0x00FFFFFFu, n4);
  _mm_storeu_si128((__m128i *)dhi, _mm512_extracti32x4_epi32(_mm512_permutexvar_epi32(perm, b), 3));
}

/* codes_lo48_hi16 for a lo part in the folded form (kl->folded; kh any
 * form): vectors 0-2 as in codes_step_lo16 (their codes are the high words
 * of bits(y) minus 0x4340, the tie test one unsigned word minimum), vector 3
 * (the hi part) as in codes_step (fixed_codes: u = bits(y) - C, its test,
 * u >> sh). One flag for the four sends all of them to the division, each in
 * its own form. The hi codes are clamped to [0, 255] as int32 (the packs and
 * vpminub below clamp them to that and to maxq anyway, so the bytes are
 * unchanged) and their low words joined with the high words of vector 2 by
 * one vpermt2w, so the two vpermt2w and one vpackuswb of codes_step_lo16 give
 * the packed vector: in 128-bit lane L, bytes 0-7 are lo channels 8L..8L+7,
 * bytes 8-15 lo channels 32 + 8L.. (L = 0, 1) or hi channels 8(L - 2)..
 * (L = 2, 3), i.e. codes_step_lo16's layout, so its vpermd and vpmovwb order
 * the nibbles; the hi bytes are qwords 5 and 7. 27 zmm operations where
 * codes_lo48_hi16 has 33. Stores the hi codes and returns the joined words
 * (vpmaddubsw) of the nibbles, as lo16_joined. */
static inline __attribute__((always_inline)) __m512i lo48f_hi16_joined(const void *src, const int f16,
                                                                        const codes_k *kl, const codes_k *kh,
                                                                        __m512i mq, uint8_t *dhi) {
  const __m512i join = _mm512_set1_epi16(16 << 8 | 1);
  const __m512i hiw = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25,
                                       23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  /* words 0-15: the high words of a (vector 2); 16-31: the low words of b (the hi codes) */
  const __m512i hlw = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 31, 29, 27, 25,
                                       23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  const __m512i base = _mm512_set1_epi16(RESQ_BITS_192 >> 16);
  __m512 v[4];
  __m512i y[3];
  for (int j = 0; j < 4; j++)
    v[j] = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + 16 * j)))
               : _mm512_loadu_ps((const float *)src + 16 * j);
  for (int j = 0; j < 3; j++)
    y[j] = _mm512_castps_si512(
        _mm512_fmadd_round_ps(v[j], kl->r, kl->m, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  __mmask16 near = 0;
  __m512i c3 = fixed_codes(v[3], kh, &near);
  const __m512i wmin = _mm512_min_epu16(_mm512_min_epu16(y[0], y[1]), y[2]);
  if (_mm512_testn_epi16_mask(wmin, _mm512_set1_epi16((short)0xFFFC)) | near) {
    for (int j = 0; j < 3; j++)
      y[j] = _mm512_slli_epi32(_mm512_add_epi32(_mm512_add_epi32(rint_div(v[j], k_s(kl)), k_z(kl)),
                                                _mm512_set1_epi32(RESQ_BITS_192 >> 16)),
                               16);
    c3 = _mm512_add_epi32(rint_div(v[3], k_s(kh)), k_z(kh));
  }
  c3 = _mm512_min_epi32(_mm512_max_epi32(c3, _mm512_setzero_si512()), _mm512_set1_epi32(255));
  const __m512i w01 = _mm512_sub_epi16(_mm512_permutex2var_epi16(y[0], hiw, y[1]), base);
  const __m512i t23 = _mm512_permutex2var_epi16(y[2], hlw, c3);
  const __m512i w23 = _mm512_mask_sub_epi16(t23, (__mmask32)0x0000FFFFu, t23, base);
  const __m512i b = _mm512_min_epu8(_mm512_packus_epi16(w01, w23), mq);
  const __m512i q57 = _mm512_set_epi64(7, 7, 7, 7, 7, 7, 7, 5); /* qwords 5 and 7: the 16 hi codes */
  _mm_storeu_si128((__m128i *)dhi, _mm512_castsi512_si128(_mm512_permutexvar_epi64(q57, b)));
  return _mm512_maddubs_epi16(b, join);
}

/* lo48f_hi16_joined with its nibble bytes stored as in codes_lo48_hi16 */
static inline __attribute__((always_inline)) void codes_lo48f_hi16(const void *src, const int f16, const codes_k *kl,
                                                                   const codes_k *kh, __m512i mq, uint8_t *dlo,
                                                                   uint8_t *dhi, int full) {
  const __m512i perm = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i n4 = _mm512_cvtepi16_epi8(_mm512_permutexvar_epi32(perm, lo48f_hi16_joined(src, f16, kl, kh, mq, dhi)));
  if (full) _mm256_storeu_si256((__m256i *)dlo, n4);
  else _mm256_mask_storeu_epi8(dlo, (__mmask32)0x00FFFFFFu, n4);
}

/* pp: the part's parameters in the scratch (QP_* arrays Pa floats apart) */
static inline __attribute__((always_inline)) void codes_avx512(const float *x, const uint16_t *x16, int64_t c0,
                                                               int64_t n, const float *pp, int64_t Pa, __m512i vmaxq,
                                                               int lo, uint8_t *dst, const char *pf, int esz) {
  const codes_k k = part_k(pp, Pa);
  if (x16) x16 += c0;
  else x += c0;
  int64_t i = 0;
  if (lo && k.folded) {
    for (; i + 128 <= n; i += 128) {
      if (pf)
        for (int b = 0; b < 128 * esz; b += 64) _mm_prefetch(pf + (c0 + i) * esz + b, _MM_HINT_T1);
      codes_step_lo16_2(x16 ? (const void *)(x16 + i) : (const void *)(x + i), x16 != NULL, &k, vmaxq, dst + i / 2);
    }
    for (; i + 64 <= n; i += 64) {
      if (pf)
        for (int b = 0; b < 64 * esz; b += 64) _mm_prefetch(pf + (c0 + i) * esz + b, _MM_HINT_T1);
      codes_step_lo16(x16 ? (const void *)(x16 + i) : (const void *)(x + i), x16 != NULL, &k, vmaxq, dst + i / 2);
    }
  }
  for (; i + 64 <= n; i += 64) {
    if (pf)
      for (int b = 0; b < 64 * esz; b += 64) _mm_prefetch(pf + (c0 + i) * esz + b, _MM_HINT_T1);
    codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, 64, 4, &k, vmaxq, lo, dst + (lo ? i / 2 : i));
  }
  if (i < n) {
    int64_t left = n - i;
    if (pf)
      for (int b = 0; b < left * esz; b += 64) _mm_prefetch(pf + (c0 + i) * esz + b, _MM_HINT_T1);
    uint8_t *d = dst + (lo ? i / 2 : i);
    if ((left & 15) == 0) { /* whole vectors (the common splits: K/8, head_dim/8): constant masks and sizes */
      switch (left / 16) {
        case 1: codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, 16, 1, &k, vmaxq, lo, d); break;
        case 2: codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, 32, 2, &k, vmaxq, lo, d); break;
        default: codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, 48, 3, &k, vmaxq, lo, d); break;
      }
      return;
    }
    switch ((left + 15) / 16) {
      case 1: codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, left, 1, &k, vmaxq, lo, d); break;
      case 2: codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, left, 2, &k, vmaxq, lo, d); break;
      case 3: codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, left, 3, &k, vmaxq, lo, d); break;
      default: codes_step(x16 ? NULL : x + i, x16 ? x16 + i : NULL, left, 4, &k, vmaxq, lo, d); break;
    }
  }
}

/* Pass 2 of a row of joint groups (lo part nlo + 48 channels, hi part 16):
 * per group the lo codes up to the last 48 channels, then codes_lo48_hi16.
 * Pointers advance per group (no index products), and nlo = 64 (groups of
 * 128) is a constant: one lo step with no loop or tail logic. */
static inline __attribute__((always_inline)) void joint_codes(const float *x32, const uint16_t *x16, const int f16,
                                                              int64_t G, int64_t group, int64_t lo_bpg,
                                                              const int64_t nlo, const float *sc, int64_t Pa,
                                                              __m512i maxq_lo, __m512i maxq_hi, uint8_t *dlo,
                                                              uint8_t *dhi, const char *next) {
  const int esz = f16 ? 2 : 4;
  const char *src = f16 ? (const char *)x16 : (const char *)x32;
  const int64_t gb = group * esz; /* bytes of input per group */
  /* codes_lo48f_hi16's maxq per packed byte: the hi codes are bytes 8-15 of 128-bit lanes 2 and 3 */
  const __m512i mq_f = _mm512_mask_blend_epi8((__mmask64)0xFF00FF0000000000ull, maxq_lo, maxq_hi);
  for (int64_t g = 0; g < G; g++, src += gb, dlo += lo_bpg, dhi += 16, sc += 2) {
    /* the lo part's parameters at sc (QP_* arrays Pa floats apart), the hi part's at sc + 1 */
    const codes_k kl = part_k(sc, Pa), kh = part_k(sc + 1, Pa);
    if (nlo == 64) {
      if (next)
        for (int b = 0; b < 64 * esz; b += 64) _mm_prefetch(next + g * gb + b, _MM_HINT_T1);
      if (kl.folded) {
        /* the group's 56 nibble bytes as one pack and one vpermd, nibbles_of_pair (lo16_joined's
         * words, then the joint step's: their last 8 bytes, junk, land on the next group's first codes,
         * which its store writes afterwards; the row's last group stores 56). Alternating processes, 1
         * thread, K = 4096 in cache: 0.965x the time */
        const __m512i m1 = lo16_joined(src, f16, &kl, maxq_lo);
        if (next)
          for (int b = 0; b < 64 * esz; b += 64) _mm_prefetch(next + g * gb + 64 * esz + b, _MM_HINT_T1);
        const __m512i m2 = lo48f_hi16_joined(src + 64 * esz, f16, &kl, &kh, mq_f, dhi);
        const __m512i o = nibbles_of_pair(m1, m2);
        if (g + 1 < G) _mm512_storeu_si512(dlo, o);
        else _mm512_mask_storeu_epi8(dlo, (__mmask64)0x00FFFFFFFFFFFFFFull, o);
        continue;
      }
      codes_step(f16 ? NULL : (const float *)src, f16 ? (const uint16_t *)src : NULL, 64, 4, &kl, maxq_lo, 1, dlo);
    } else if (nlo > 0) {
      codes_avx512(f16 ? NULL : (const float *)src, f16 ? (const uint16_t *)src : NULL, 0, nlo, sc, Pa, maxq_lo, 1,
                   dlo, next ? next + g * gb : NULL, esz);
    }
    if (next)
      for (int b = 0; b < 64 * esz; b += 64) _mm_prefetch(next + g * gb + nlo * esz + b, _MM_HINT_T1);
    if (kl.folded)
      codes_lo48f_hi16(src + nlo * esz, f16, &kl, &kh, mq_f, dlo + nlo / 2, dhi, g + 1 < G);
    else
      codes_lo48_hi16(src + nlo * esz, f16, &kl, &kh, maxq_lo, maxq_hi, dlo + nlo / 2, dhi, g + 1 < G);
  }
}

/* After params16 found a degenerate scale in parts p0..p1 - 1 of row m (ranges mn[p - p0], mx[p - p0]):
 * params() on them in row order reports the first (the blocks before this one had none). Returns 1 if
 * it did (it always should). */
static int first_bad_part(const quant_plan *qp, int64_t p0, int64_t p1, const float *mn, const float *mx, int64_t m,
                          quant_fail *fail) {
  for (int64_t p = p0; p < p1; p++) {
    int64_t c0, n;
    int bits, hi;
    float pp[2];
    part_of(qp, p, &c0, &n, &bits, &hi);
    if (!params(mn[p - p0], mx[p - p0], qp->clip, bits, pp, fail)) {
      fail->row = m;
      fail->c0 = c0;
      fail->c1 = c0 + n;
      return 1;
    }
  }
  return 0;
}

/* One row on the AVX-512 path: everything inlined into one function (for
 * groups of 128 the per-part calls and their setup cost more than the part's
 * arithmetic), one copy per input type. */
static inline __attribute__((always_inline)) int quant_row_t(const quant_plan *qp, const float *x32,
                                                             const uint16_t *x16, int64_t m, const resq_qact *out,
                                                             float *sc, quant_fail *fail, const void *next,
                                                             const int f16) {
  const int64_t G = qp->ngroups, P = qp->nparts, Pa = qp->p_al;
  float *ps = sc + QP_S * Pa, *pz = sc + QP_Z * Pa, *vmn = sc + QP_N * Pa, *vmx = vmn + 256;
  const __m512i maxq_lo = _mm512_set1_epi8((char)((1 << qp->bits_lo) - 1));
  const __m512i maxq_hi = _mm512_set1_epi8((char)((1 << qp->bits_hi) - 1));
  const int esz = f16 ? 2 : 4;
  int64_t c0, n;
  int bits, hi;
  if (f16) x32 = NULL;
  else x16 = NULL;
  const int joint = qp->ppg == 2 && qp->r == 16 && qp->lpg % 64 == 48;
  /* pass 1: the range of every part, then every scale of the row before anything is written. Blocks of
   * 16 parts (the ranges of a block in vmn/vmx, 2 KiB reused), the parameters of each block right after
   * its ranges: params16's division chain then overlaps the loads of the next block instead of running
   * after the whole row (alternating calls at 2048 rows of K = 4096, groups of 128: see cpu/README). */
  for (int64_t p0 = 0; p0 < Pa; p0 += 16) {
    const int64_t p1 = p0 + 16 < P ? p0 + 16 : P;
    if (f16 && joint && qp->lpg == 112 && p1 == p0 + 16) {
      /* groups of 128, whole blocks of 8: the ranges in registers (ranges_g128_f16), up to 4 blocks
       * before their parameters, so that the 4 blocks' dependent chains (reduce, fold, 2 divisions
       * deep) overlap (alternating processes, 1 thread, K = 4096 in cache: 0.955-0.965x the time) */
      __m512 mn[4], mx[4];
      int nb = 0;
      for (; nb < 4 && p0 + 16 * nb + 16 <= P; nb++)
        ranges_g128_f16(x16 + ((p0 + 16 * nb) >> 1) * 128, &mn[nb], &mx[nb]);
      for (int b = 0; b < nb; b++)
        if (!params16_of(mn[b], mx[b], qp->clip, qp->maxq16, sc + p0 + 16 * b, Pa)) {
          /* a degenerate scale (a tiny clip): the first such part, as below */
          float fmn[16], fmx[16];
          _mm512_storeu_ps(fmn, mn[b]);
          _mm512_storeu_ps(fmx, mx[b]);
          if (first_bad_part(qp, p0 + 16 * b, p0 + 16 * b + 16, fmn, fmx, m, fail)) return 1;
        }
      p0 += 16 * (nb - 1);
      continue;
    }
    if (f16 && joint) {
      for (int64_t p = p0; p < p1; p += 2)
        minmax_lo48_hi16_f16(x16 + (p >> 1) * qp->group, qp->lpg, vmn + 16 * (p - p0), vmx + 16 * (p - p0),
                             vmn + 16 * (p - p0 + 1), vmx + 16 * (p - p0 + 1));
    } else {
      for (int64_t p = p0; p < p1; p++) {
        part_of(qp, p, &c0, &n, &bits, &hi);
        minmax_avx512(x32, x16, c0, n, vmn + 16 * (p - p0), vmx + 16 * (p - p0));
      }
    }
    /* padding parts: an all-zero range (valid parameters, never used). One or two parts (per token):
     * reduce2_* reads only parts 0 and 1. The loop is entered only for a partial block: GCC turns it
     * into two memset calls, which it used to make (of 0 bytes) for every full block too (group 128:
     * 8 calls per row of 4096; alternating processes, 1 thread, in cache: 0.98-0.995x the time) */
    const int two = p1 - p0 <= 2;
    if (two && p1 == p0 + 1) {
      _mm512_store_ps(vmn + 16, _mm512_setzero_ps());
      _mm512_store_ps(vmx + 16, _mm512_setzero_ps());
    } else if (!two && p1 < p0 + 16) {
      for (int64_t p = p1; p < p0 + 16; p++) {
        _mm512_store_ps(vmn + 16 * (p - p0), _mm512_setzero_ps());
        _mm512_store_ps(vmx + 16 * (p - p0), _mm512_setzero_ps());
      }
    }
    if (!params16(vmn, vmx, f16, qp->clip, qp->maxq16, sc + p0, Pa, two)) {
      /* a degenerate scale in this block (f32 input, or f16 with a tiny clip): its parts one by one, in row
       * order, to report the first (the blocks before this one had none) */
      float fmn[16], fmx[16];
      for (int64_t p = p0; p < p1; p++) {
        if (f16) {
          const uint16_t *bn = (const uint16_t *)(vmn + 16 * (p - p0)), *bx = (const uint16_t *)(vmx + 16 * (p - p0));
          uint16_t un = 0x8000;
          int16_t sx = 0;
          for (int j = 0; j < 32; j++) {
            if (bn[j] > un) un = bn[j];
            if ((int16_t)bx[j] > sx) sx = (int16_t)bx[j];
          }
          fmn[p - p0] = resq_f16_to_f32(un);
          fmx[p - p0] = resq_f16_to_f32((uint16_t)sx);
        } else {
          fmn[p - p0] = _mm512_reduce_min_ps(_mm512_load_ps(vmn + 16 * (p - p0)));
          fmx[p - p0] = _mm512_reduce_max_ps(_mm512_load_ps(vmx + 16 * (p - p0)));
        }
      }
      if (first_bad_part(qp, p0, p1, fmn, fmx, m, fail)) return 1;
    }
  }
  /* pass 2: codes, scales, zeros */
  if (joint) {
    /* scales and zeros 8 groups at a time: parts (2g, 2g + 1) are (lo, hi) of group g */
    const __m512i deint = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int64_t p0 = 0; p0 < P; p0 += 16) {
      const int64_t g0 = p0 >> 1, ng = G - g0 < 8 ? G - g0 : 8;
      const __mmask8 k = (__mmask8)((1u << ng) - 1);
      const __m512 sv = _mm512_permutexvar_ps(deint, _mm512_load_ps(ps + p0));
      const __m512i zv = _mm512_permutexvar_epi32(deint, _mm512_cvtps_epi32(_mm512_load_ps(pz + p0)));
      _mm256_mask_storeu_ps(out->scale_lo + m * G + g0, k, _mm512_castps512_ps256(sv));
      _mm256_mask_storeu_ps(out->scale_hi + m * G + g0, k, _mm512_extractf32x8_ps(sv, 1));
      _mm256_mask_storeu_epi32(out->zero_lo + m * G + g0, k, _mm512_castsi512_si256(zv));
      _mm256_mask_storeu_epi32(out->zero_hi + m * G + g0, k, _mm512_extracti32x8_epi32(zv, 1));
    }
    /* codes: per group, the lo part up to its last 48 channels, then the joint lo + hi step */
    uint8_t *dlo = out->q_lo + m * out->ld_lo, *dhi = out->q_hi + m * out->ld_hi;
    if (qp->lpg == 112) /* groups of 128 (head_dim 128): one lo step, then the joint step */
      joint_codes(x32, x16, f16, G, qp->group, qp->lo_bpg, 64, sc, Pa, maxq_lo, maxq_hi, dlo, dhi, (const char *)next);
    else
      joint_codes(x32, x16, f16, G, qp->group, qp->lo_bpg, qp->lpg - 48, sc, Pa, maxq_lo, maxq_hi, dlo, dhi,
                  (const char *)next);
    return 0;
  }
  for (int64_t p = 0; p < P; p++) {
    part_of(qp, p, &c0, &n, &bits, &hi);
    int64_t g = qp->ppg == 2 ? p >> 1 : p;
    if (hi) {
      codes_avx512(x32, x16, c0, n, sc + p, Pa, maxq_hi, 0, out->q_hi + m * out->ld_hi + g * qp->r,
                   (const char *)next, esz);
      out->scale_hi[m * G + g] = ps[p];
      out->zero_hi[m * G + g] = (int32_t)pz[p];
    } else {
      codes_avx512(x32, x16, c0, n, sc + p, Pa, maxq_lo, 1,
                   out->q_lo + m * out->ld_lo + g * qp->lo_bpg, (const char *)next, esz);
      out->scale_lo[m * G + g] = ps[p];
      out->zero_lo[m * G + g] = (int32_t)pz[p];
    }
  }
  return 0;
}

static int quant_row_avx512(const quant_plan *qp, const float *x32, const uint16_t *x16, int64_t m,
                            const resq_qact *out, float *sc, quant_fail *fail, const void *next) {
  return x32 ? quant_row_t(qp, x32, NULL, m, out, sc, fail, next, 0) : quant_row_t(qp, NULL, x16, m, out, sc, fail, next, 1);
}

RESQ_AVX512_END
#endif

/* ------------------------------------------------------------------ one row */

int resq_cpu_quant_row(const quant_plan *qp, const float *x32, const uint16_t *x16, int64_t m, const resq_qact *out,
                       float *sc, quant_fail *fail, const void *next) {
#if RESQ_CPU_X86
  if (qp->avx512) return quant_row_avx512(qp, x32, x16, m, out, sc, fail, next);
#endif
  (void)next;
  const int64_t G = qp->ngroups, P = qp->nparts;
  int64_t c0, n;
  int bits, hi;
  float *ps = sc, *pz = sc + qp->p_al;
  /* pass 1: every scale of the row before anything is written */
  for (int64_t p = 0; p < P; p++) {
    float mn, mx, pp[2];
    part_of(qp, p, &c0, &n, &bits, &hi);
#if RESQ_CPU_X86
    if (qp->avx2) minmax_avx2(x32, x16, c0, n, &mn, &mx);
    else
#endif
      minmax_generic(x32, x16, c0, n, &mn, &mx);
    if (!params(mn, mx, qp->clip, bits, pp, fail)) {
      fail->row = m;
      fail->c0 = c0;
      fail->c1 = c0 + n;
      return 1;
    }
    ps[p] = pp[0];
    pz[p] = pp[1];
  }
  /* pass 2: codes, scales, zeros */
  for (int64_t p = 0; p < P; p++) {
    part_of(qp, p, &c0, &n, &bits, &hi);
    int64_t g = qp->ppg == 2 ? p >> 1 : p;
    uint8_t *dst = hi ? out->q_hi + m * out->ld_hi + g * qp->r : out->q_lo + m * out->ld_lo + g * qp->lo_bpg;
#if RESQ_CPU_X86
    if (qp->avx2) codes_avx2(x32, x16, c0, n, ps[p], pz[p], bits, !hi, dst);
    else
#endif
      codes_generic(x32, x16, c0, n, ps[p], pz[p], bits, !hi, dst);
    if (hi) {
      out->scale_hi[m * G + g] = ps[p];
      out->zero_hi[m * G + g] = (int32_t)pz[p];
    } else {
      out->scale_lo[m * G + g] = ps[p];
      out->zero_lo[m * G + g] = (int32_t)pz[p];
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ public functions */

typedef struct quant_job {
  quant_plan qp;
  had_plan hp; /* fused: the Hadamard applied first */
  int fused;
  int64_t M, ldx;
  const float *x32;
  const uint16_t *x16;
  const resq_qact *out;
  float *scratch;
  int64_t stride; /* floats of scratch per thread */
  int64_t n_al;   /* n rounded up to 16 */
  int64_t t_len;  /* fused: floats of the Hadamard's t (hp.t_len, at least n_al) */
  int failed[64];
  quant_fail fail[64];
} quant_job;

static void quant_task(void *arg, int tid, int nt) {
  quant_job *J = (quant_job *)arg;
  int64_t b, e;
  resq_cpu_range(J->M, tid, nt, &b, &e);
  float *sc = J->scratch + (size_t)tid * (size_t)J->stride;
  /* per thread: the part parameters, then (fused) the Hadamard's t, nu and output h */
  float *t = sc + resq_cpu_quant_scratch(&J->qp), *nu = t + J->t_len, *h = nu + J->n_al;
  J->failed[tid] = 0;
  for (int64_t m = b; m < e; m++) {
    const float *x32 = J->x32 ? J->x32 + m * J->ldx : NULL;
    const uint16_t *x16 = J->x16 ? J->x16 + m * J->ldx : NULL;
    if (J->fused) {
      int ovf = 0;
      /* the next input row is prefetched only when the input does not fit in L2 (as in the Hadamard) */
      resq_cpu_had_row(&J->hp, NULL, x16, h, NULL, t, nu, &ovf,
                       J->M * J->qp.K * 2 >= (1 << 20) && m + 1 < e ? (const void *)(x16 + J->ldx) : NULL);
      /* a NaN or Inf in the row makes every output of its rotation NaN or +-Inf (each sums all
       * inputs; finite f16 inputs cannot overflow fp32 here): output 0 tells */
      if (!isfinite(h[0])) {
        quant_fail *f = &J->fail[tid];
        f->row = m, f->c0 = 0, f->c1 = J->qp.K, f->mn = h[0], f->mx = h[0], f->s = NAN;
        J->failed[tid] = 1;
        return;
      }
      x32 = h;
      x16 = NULL;
    }
    /* the codes pass runs from L1 and leaves the memory idle: it prefetches the next row for pass 1
     * (alternating calls: 8-49 % less time at 2048 rows of K = 4096 and 11008, none lost at 16 rows) */
    const void *next = J->fused || m + 1 >= e ? NULL
                       : J->x32 ? (const void *)(x32 + J->ldx)
                                : (const void *)(x16 + J->ldx);
    if (resq_cpu_quant_row(&J->qp, x32, x16, m, J->out, sc, &J->fail[tid], next)) {
      J->failed[tid] = 1;
      return;
    }
  }
}

static resq_status check_out(const resq_qact_layout *L, int64_t M, const resq_qact *o) {
  if (!o) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: NULL output descriptor");
  if (M > 0 && L->lo_bytes > 0) {
    if (!o->q_lo || !o->scale_lo || !o->zero_lo)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: lo part present but q_lo/scale_lo/zero_lo is NULL");
    if (M > 1 && o->ld_lo < L->lo_bytes)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: ld_lo=%lld < %lld bytes per row", (long long)o->ld_lo,
                       (long long)L->lo_bytes);
  }
  if (M > 0 && L->hi_bytes > 0) {
    if (!o->q_hi || !o->scale_hi || !o->zero_hi)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: hi part present but q_hi/scale_hi/zero_hi is NULL");
    if (M > 1 && o->ld_hi < L->hi_bytes)
      return resq_fail(RESQ_ERR_INVALID_ARG, "quant: ld_hi=%lld < %lld bytes per row", (long long)o->ld_hi,
                       (long long)L->hi_bytes);
  }
  return RESQ_OK;
}

static resq_status quantize(const resq_qact_params *p, int64_t M, const float *x32, const uint16_t *x16, int64_t ldx,
                            const resq_qact *out, int fused, const int8_t *signs) {
  resq_qact_layout L;
  resq_status st = resq_qact_check(p, &L);
  if (st) return st;
  if (p->mode != RESQ_QMODE_PATH_A)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "quant (cpu): only path A is implemented (path B is the reference's parity mode)");
  if (M < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: M=%lld < 0", (long long)M);
  if (M > 0 && !(x32 || x16)) return resq_fail(RESQ_ERR_INVALID_ARG, "quant: NULL input");
  if (M > 1 && ldx < p->K)
    return resq_fail(RESQ_ERR_INVALID_ARG, "quant: ldx=%lld < K=%lld", (long long)ldx, (long long)p->K);
  st = check_out(&L, M, out);
  if (st) return st;
  if (fused) {
    int K;
    int64_t m;
    st = resq_hadamard_factor(p->K, &K, &m);
    if (st) return st;
    const int64_t bad = signs ? resq_cpu_first_bad_sign(signs, p->K) : -1;
    if (bad >= 0)
      return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: signs[%lld] = %d (must be +1 or -1)", (long long)bad, signs[bad]);
  }
  if (M == 0) return RESQ_OK;
  const int avx = resq_cpu_avx512_active();
  resq_cpu_lock();
  quant_job J;
  memset(&J, 0, sizeof J);
  resq_cpu_quant_plan(p, &L, avx, &J.qp);
  if (fused) {
    st = resq_cpu_had_plan(p->K, signs, avx, &J.hp);
    if (st) {
      resq_cpu_unlock();
      return st;
    }
  }
  J.fused = fused;
  J.M = M;
  J.ldx = ldx;
  J.x32 = x32;
  J.x16 = x16;
  J.out = out;
  J.n_al = (p->K + 15) / 16 * 16;
  J.t_len = fused && J.hp.t_len > J.n_al ? J.hp.t_len : J.n_al;
  J.stride = resq_cpu_quant_scratch(&J.qp) + (fused ? J.t_len + 2 * J.n_al : 0);
  int nt = resq_cpu_get_threads();
  if (nt > 64) nt = 64;
  if (nt > M) nt = (int)M;
  J.scratch = (float *)resq_cpu_workspace(3, (size_t)nt * (size_t)J.stride * sizeof(float));
  if (!J.scratch) {
    resq_cpu_unlock();
    return resq_fail(RESQ_ERR_NOMEM, "quant (cpu): out of memory");
  }
  resq_cpu_parallel(quant_task, &J, nt);
  const quant_fail *f = NULL;
  for (int i = 0; i < nt; i++)
    if (J.failed[i] && (!f || J.fail[i].row < f->row)) f = &J.fail[i];
  resq_cpu_unlock();
  if (f && !(isfinite(f->mn) && isfinite(f->mx))) /* the reference's status for NaN/Inf inputs */
    return resq_fail(RESQ_ERR_NONFINITE,
                     "quant: row %lld channels [%lld, %lld) hold a NaN or Inf (range [%g, %g]; the CPU backend finds "
                     "them through the ranges, not by a scan; rows may be partly written)",
                     (long long)f->row, (long long)f->c0, (long long)f->c1, (double)f->mn, (double)f->mx);
  if (f)
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "quant: row %lld channels [%lld, %lld): range [%g, %g] gives scale %g, outside fp32's normal "
                     "range (rows may be partly written)",
                     (long long)f->row, (long long)f->c0, (long long)f->c1, (double)f->mn, (double)f->mx, (double)f->s);
  return RESQ_OK;
}

resq_status resq_quant_act_f32_q4q8__cpu(const resq_qact_params *p, int64_t M, const float *x, int64_t ldx,
                                         const resq_qact *out) {
  return quantize(p, M, x, NULL, ldx, out, 0, NULL);
}

resq_status resq_quant_act_f16_q4q8__cpu(const resq_qact_params *p, int64_t M, const uint16_t *x, int64_t ldx,
                                         const resq_qact *out) {
  return quantize(p, M, NULL, x, ldx, out, 0, NULL);
}

resq_status resq_hadamard_quant_act_f16_q4q8__cpu(const resq_qact_params *p, int64_t M, const uint16_t *x,
                                                  int64_t ldx, const int8_t *signs, const resq_qact *out) {
  return quantize(p, M, NULL, x, ldx, out, 1, signs);
}
