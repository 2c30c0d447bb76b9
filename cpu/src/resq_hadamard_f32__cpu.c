/* SPDX-License-Identifier: Apache-2.0
 * CPU Hadamard rotation y = (x .* s) H_n^T (ref/CONTRACT.md section 2),
 * bit-identical to resq_hadamard_{f32,f16}__ref.
 *
 * Every output element is the reference's sequence of fp32 operations; only
 * independent operations are reordered:
 *  - pass 1 loads 16 elements, applies the signs (exact XOR of the sign bit)
 *    and runs the butterflies of strides 1, 2, 4, 8 inside the register
 *    (permute, then one fma by +-1: even lanes a+b, odd lanes a-b);
 *  - the strides 16 .. m/2 run in passes of up to 4 stages on 16 registers
 *    (radix 16, ascending strides inside the pass and from pass to pass);
 *    for m >= 256 the first of them (strides 16..128) shares pass 1's
 *    registers (first_pass: 16 vectors loaded, intra, then across);
 *  - the last pass multiplies by inv (one rounding) and either writes the
 *    output (K = 1) or u and -u (exact) to scratch;
 *  - the hadK mix is vectorized across the positions b of a block: for every
 *    output row a, acc = (+-u)[b], then acc = acc + (+-u)[c*m + b] for
 *    c = 1..K-1 (a - v is a + (-v) exactly), 8 independent accumulators;
 *    blocks of positions outermost, so that the slices they read stay in L1
 *    (the K blocks of u are padded apart when m >= 512, and the sign table
 *    is stored in panels of 4 rows: see had_plan).
 * Rows are split across the threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_rows.h"
#include "resq/dtype.h"

#if RESQ_CPU_X86
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ plan */

static const int k_orders[] = {12, 20, 28, 36, 40, 44, 52, 60, 108, 140, 156, 172};
static uint8_t *g_neg[sizeof k_orders / sizeof k_orders[0]]; /* built once, under the call lock */
static float *g_sgn[sizeof k_orders / sizeof k_orders[0]];   /* the same as +-1.0f, in panels of 4 rows (had_plan) */
static float *g_sgz[sizeof k_orders / sizeof k_orders[0]];   /* the same as -0.0f / +0.0f */

/* The signs of hadK for K = 28, compiled in for mix28_all: bit c of
 * k_had28_neg[a] is 1 where hadK[a][c] = -1. It is ref/src/hadamard_tables.c's
 * had28, checked entry by entry against resq_hadamard_k_entry when a plan is
 * made (a mismatch fails the call with RESQ_ERR_INTERNAL). */
static const uint32_t k_had28_neg[28] = {
    0x0004000, 0x4f293c8, 0x9e52790, 0x3ca8f22, 0x7951e44, 0xf2a3c88, 0xe54b912, 0xca9b226, 0x953a44e, 0x2a7889e,
    0x54f113c, 0xa9e2278, 0x53c84f2, 0xa7909e4, 0xfffc001, 0xb0dd3ca, 0x61be794, 0xc374f2a, 0x86ede54, 0x0ddfca8,
    0x1bb7952, 0x37672a6, 0x6ec654e, 0xdd84a9e, 0xbb0d53c, 0x761ea78, 0xec354f2, 0xd86e9e4};
#define HAD28_NEG(a, c) ((k_had28_neg[(a)] >> (c)) & 1u)
/* k_had28_rep[c][a]: the class of row a after columns 0..c (see mix28_col): the
 * first row whose signs agree with row a's on columns 0..c. A table, not an
 * expression of k_had28_neg: as a 28-way conditional per use, GCC's sanitizer
 * build (ci/sanitize.sh) of this file took 6.3 minutes, with the table 3.7 (2.6
 * before mix28). Checked against k_had28_neg with the signs when a plan is made. */
static const uint8_t k_had28_rep[28][28] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 3, 0, 0, 3, 3, 3, 3, 0, 0, 3, 0, 14, 3, 0, 3, 0, 0, 3, 3, 3, 3, 0, 0, 3, 0},
    {0, 0, 0, 3, 4, 0, 3, 7, 7, 7, 4, 0, 3, 4, 14, 3, 4, 3, 4, 0, 3, 7, 7, 7, 4, 0, 3, 4},
    {0, 1, 0, 3, 4, 1, 3, 7, 8, 8, 10, 1, 3, 4, 14, 15, 4, 15, 4, 1, 3, 7, 8, 8, 10, 1, 3, 4},
    {0, 1, 2, 3, 4, 1, 6, 7, 8, 9, 10, 11, 6, 4, 14, 15, 16, 15, 16, 1, 6, 7, 8, 9, 10, 11, 6, 4},
    {0, 1, 2, 3, 4, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 16, 19, 6, 7, 8, 9, 10, 11, 12, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 7, 8, 9, 10, 11, 12, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 8, 9, 10, 11, 12, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 9, 10, 11, 12, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 10, 11, 12, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 11, 12, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 12, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 13},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27},
};

resq_status resq_cpu_had_plan(int64_t n, const int8_t *signs, int avx512, had_plan *hp) {
  int K;
  int64_t m;
  resq_status st = resq_hadamard_factor(n, &K, &m);
  if (st) return st;
  memset(hp, 0, sizeof *hp);
  hp->n = n;
  hp->m = m;
  hp->K = K;
  hp->inv = resq_hadamard_scale_f32(n);
  while (((int64_t)1 << hp->lm) < m) hp->lm++;
  hp->ms = K > 1 && m >= 512 ? m + 16 : m; /* see had_plan; smaller blocks already spread over the sets */
  hp->t_len = ((int64_t)K * hp->ms + 15) / 16 * 16;
  hp->signs = signs;
  hp->avx512 = avx512;
  hp->no_f9 = resq_cpu_env_i64("RESQ_CPU_HAD_F9", 1, 0) == 0;
  hp->avx2 = !avx512 && resq_cpu_active_isa() == RESQ_CPU_ISA_AVX2;
  if (K > 1) {
    size_t i = 0;
    while (k_orders[i] != K) i++;
    if (!g_neg[i]) {
      uint8_t *tab = (uint8_t *)malloc((size_t)K * (size_t)K);
      float *sg = (float *)malloc((size_t)K * (size_t)K * sizeof(float));
      float *sz = (float *)malloc((size_t)K * (size_t)K * sizeof(float));
      if (!tab || !sg || !sz) {
        free(tab), free(sg), free(sz);
        return resq_fail(RESQ_ERR_NOMEM, "hadamard (cpu): out of memory");
      }
      for (int a = 0; a < K; a++)
        for (int c = 0; c < K; c++) {
          tab[a * K + c] = resq_hadamard_k_entry(K, a, c) < 0;
          sg[(a / 4) * 4 * K + c * 4 + a % 4] = tab[a * K + c] ? -1.0f : 1.0f;
          sz[(a / 4) * 4 * K + c * 4 + a % 4] = tab[a * K + c] ? -0.0f : 0.0f;
        }
      g_neg[i] = tab;
      g_sgn[i] = sg;
      g_sgz[i] = sz;
    }
    hp->neg = g_neg[i];
    hp->sgn_p = g_sgn[i];
    hp->sgz_p = g_sgz[i];
  }
#if RESQ_CPU_X86
  if (K == 28) {
    /* checked once (under the call lock, like the tables). A mismatch is a defect of
     * this file, not of the input: fail loudly rather than fall back to mix_t, which
     * would hide it behind a slower, still exact, path */
    static int checked, bad = -1;
    if (!checked) {
      for (int e = 0; e < 28 * 28 && bad < 0; e++) {
        const int a = e / 28, c = e % 28;
        const uint32_t pre = (2u << c) - 1u; /* columns 0..c */
        int first = 0;
        while (((k_had28_neg[first] ^ k_had28_neg[a]) & pre) != 0u) first++;
        /* two separate tests, the reference's sign in a variable: written as one
         * condition, (int)HAD28_NEG(a, c) != (resq_hadamard_k_entry(..) < 0) || rep != first,
         * GCC 12.2 at -O1 and above dropped the call's result (it tested the bit alone:
         * "mismatch" at (0, 14)); -fno-tree-ter, -O0 and clang were right */
        const int ref_neg = resq_hadamard_k_entry(28, a, c) < 0;
        if ((int)HAD28_NEG(a, c) != ref_neg) bad = e;
        if (k_had28_rep[c][a] != first) bad = e;
      }
      checked = 1;
    }
    if (bad >= 0)
      return resq_fail(RESQ_ERR_INTERNAL, "hadamard (cpu): compiled K = 28 signs or classes differ from the reference's at (%d, %d)",
                       bad / 28, bad % 28);
    /* clang 14 builds mix28_col exact but slow (not every loop unrolled, the
     * accumulators through the stack: 14336 x 64 rows in 6.7 ms against GCC 12's
     * 0.49 ms, and its build of mix_t 1.5 ms), so there the table-driven mix is the
     * default; the tests set RESQ_CPU_HAD_K28 and run both under either compiler */
#if defined(__clang__)
    hp->k28 = resq_cpu_env_i64("RESQ_CPU_HAD_K28", 0, 0) != 0;
#else
    hp->k28 = resq_cpu_env_i64("RESQ_CPU_HAD_K28", 1, 0) != 0;
#endif
  }
#endif
  return RESQ_OK;
}

/* ------------------------------------------------------------------ portable row */

static void had_row_generic(const had_plan *hp, const float *x32, const uint16_t *x16, float *y32, uint16_t *y16,
                            float *t, int *overflow) {
  const int64_t n = hp->n, m = hp->m;
  const int K = hp->K;
  for (int64_t i = 0; i < n; i++) {
    float v = x32 ? x32[i] : resq_f16_to_f32(x16[i]);
    t[i] = hp->signs && hp->signs[i] < 0 ? -v : v;
  }
  for (int c = 0; c < K; c++) {
    float *v = t + (int64_t)c * m;
    for (int64_t h = 1; h < m; h <<= 1)
      for (int64_t i = 0; i < m; i += 2 * h)
        for (int64_t j = i; j < i + h; j++) {
          float a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
  }
  for (int64_t i = 0; i < n; i++) t[i] *= hp->inv;
  for (int a = 0; a < K; a++)
    for (int64_t b = 0; b < m; b++) {
      float acc;
      if (K == 1) {
        acc = t[b];
      } else {
        const uint8_t *neg = hp->neg + a * K;
        acc = neg[0] ? -t[b] : t[b];
        for (int c = 1; c < K; c++) {
          float v = t[(int64_t)c * m + b];
          acc = neg[c] ? acc - v : acc + v;
        }
      }
      int64_t i = (int64_t)a * m + b;
      if (y32) {
        y32[i] = acc;
      } else {
        uint16_t h = resq_f32_to_f16(acc);
        if ((h & 0x7c00u) == 0x7c00u) *overflow = 1;
        y16[i] = h;
      }
    }
}

/* ------------------------------------------------------------------ AVX2 row
 * had_row_generic's operations in its order per element, 8 lanes at a time
 * (m >= 8): the signs as a sign-bit XOR (= negation), stages h = 1, 2, 4 inside
 * each vector (the partner lanes by a permute; a + b in the lower lanes,
 * a - b in the upper, so each output is the same single rounding), stages
 * 8, 16, 32 between the vectors of a 64-value chunk in registers, the rest
 * two stages per pass over L1, the scale, the hadK mix over b with the sign of
 * each (a, c) a branch, and F16C for both conversions (RNE, exact widening). */
#if RESQ_CPU_X86
RESQ_AVX2_BEGIN

/* lower lanes: v + partner = a + b; upper lanes: partner - v = a - b. A macro,
 * not a function: the blend's lane mask must be an integer constant expression
 * where the intrinsic is written (clang checks that before inlining). */
#define A2_STAGE(v, partner, upper) \
  _mm256_blend_ps(_mm256_add_ps((v), (partner)), _mm256_sub_ps((partner), (v)), (upper))

/* stages h = 1, 2, 4 inside one vector */
static inline __attribute__((always_inline)) __m256 a2_intra(__m256 v) {
  __m256 p = _mm256_permute_ps(v, 0xB1);
  v = A2_STAGE(v, p, 0xAA); /* h = 1 */
  p = _mm256_permute_ps(v, 0x4E);
  v = A2_STAGE(v, p, 0xCC); /* h = 2 */
  p = _mm256_permute2f128_ps(v, v, 0x01);
  return A2_STAGE(v, p, 0xF0); /* h = 4 */
}

/* a = v[j], b = v[j + h] -> (a + b, a - b) */
#define A2_BF(A, B)                        \
  do {                                     \
    const __m256 a_ = (A), b_ = (B);       \
    (A) = _mm256_add_ps(a_, b_);           \
    (B) = _mm256_sub_ps(a_, b_);           \
  } while (0)

static void had_row_avx2(const had_plan *hp, const float *x32, const uint16_t *x16, float *y32, uint16_t *y16,
                         float *t, int *overflow) {
  const int64_t n = hp->n, m = hp->m;
  const int K = hp->K;
  const __m256 sbit = _mm256_set1_ps(-0.0f), inv = _mm256_set1_ps(hp->inv);
  /* load, signs, then stages 1..4 in each vector and, for m >= 64, stages 8, 16, 32 between the 8
   * vectors of each 64-value chunk, in registers */
  const int64_t chunk = m >= 64 ? 64 : 8;
  for (int64_t i = 0; i < n; i += chunk) {
    __m256 v[8];
    const int nv = (int)(chunk / 8);
    for (int q = 0; q < nv; q++) {
      const int64_t e = i + 8 * q;
      v[q] = x32 ? _mm256_loadu_ps(x32 + e) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x16 + e)));
      if (hp->signs) {
        const __m256i sg = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(hp->signs + e)));
        v[q] = _mm256_xor_ps(v[q], _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_setzero_si256(), sg)), sbit));
      }
      v[q] = a2_intra(v[q]);
    }
    if (nv == 8) {
      A2_BF(v[0], v[1]); A2_BF(v[2], v[3]); A2_BF(v[4], v[5]); A2_BF(v[6], v[7]); /* h = 8 */
      A2_BF(v[0], v[2]); A2_BF(v[1], v[3]); A2_BF(v[4], v[6]); A2_BF(v[5], v[7]); /* h = 16 */
      A2_BF(v[0], v[4]); A2_BF(v[1], v[5]); A2_BF(v[2], v[6]); A2_BF(v[3], v[7]); /* h = 32 */
    }
    for (int q = 0; q < nv; q++) _mm256_storeu_ps(t + i + 8 * q, v[q]);
  }
  /* the remaining stages from L1: two per pass (h and 2h on v[j], v[j+h], v[j+2h], v[j+3h], the
   * same butterflies as two passes), one when a single stage is left */
  for (int c = 0; c < K; c++) {
    float *v = t + (int64_t)c * m;
    int64_t h = chunk == 64 ? 64 : 8;
    for (; 4 * h <= m; h <<= 2)
      for (int64_t i = 0; i < m; i += 4 * h)
        for (int64_t j = i; j < i + h; j += 8) {
          __m256 a = _mm256_loadu_ps(v + j), b = _mm256_loadu_ps(v + j + h);
          __m256 c2 = _mm256_loadu_ps(v + j + 2 * h), d = _mm256_loadu_ps(v + j + 3 * h);
          A2_BF(a, b); A2_BF(c2, d); /* stage h */
          A2_BF(a, c2); A2_BF(b, d); /* stage 2h */
          _mm256_storeu_ps(v + j, a), _mm256_storeu_ps(v + j + h, b);
          _mm256_storeu_ps(v + j + 2 * h, c2), _mm256_storeu_ps(v + j + 3 * h, d);
        }
    if (h < m)
      for (int64_t i = 0; i < m; i += 2 * h)
        for (int64_t j = i; j < i + h; j += 8) {
          __m256 a = _mm256_loadu_ps(v + j), b = _mm256_loadu_ps(v + j + h);
          A2_BF(a, b);
          _mm256_storeu_ps(v + j, a), _mm256_storeu_ps(v + j + h, b);
        }
  }
  if (K > 1)
    for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(t + i, _mm256_mul_ps(_mm256_loadu_ps(t + i), inv));
  const __m128i em = _mm_set1_epi16(0x7c00);
  __m128i bad = _mm_setzero_si128();
  for (int a = 0; a < K; a++)
    for (int64_t b = 0; b < m; b += 8) {
      __m256 acc;
      if (K > 1) {
        const uint8_t *neg = hp->neg + a * K;
        acc = _mm256_loadu_ps(t + b);
        if (neg[0]) acc = _mm256_xor_ps(acc, sbit);
        for (int c = 1; c < K; c++) {
          const __m256 v = _mm256_loadu_ps(t + (int64_t)c * m + b);
          acc = neg[c] ? _mm256_sub_ps(acc, v) : _mm256_add_ps(acc, v);
        }
      } else {
        acc = _mm256_mul_ps(_mm256_loadu_ps(t + b), inv); /* K = 1: the scale, then straight out */
      }
      const int64_t i = (int64_t)a * m + b;
      if (y32) {
        _mm256_storeu_ps(y32 + i, acc);
      } else {
        const __m128i h = _mm256_cvtps_ph(acc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        bad = _mm_or_si128(bad, _mm_cmpeq_epi16(_mm_and_si128(h, em), em)); /* +-Inf or NaN */
        _mm_storeu_si128((__m128i *)(void *)(y16 + i), h);
      }
    }
  if (_mm_movemask_epi8(bad)) *overflow = 1;
}
#undef A2_BF

RESQ_AVX2_END
#endif /* RESQ_CPU_X86 */

/* ------------------------------------------------------------------ AVX-512 row */
#if RESQ_CPU_X86
RESQ_AVX512_BEGIN

typedef struct had_io {
  const had_plan *hp;
  float *t, *nu, *y32;
  uint16_t *y16;
  __m512 amax; /* max |output| so far (f16 outputs): one vrangeps per vector, one compare per row */
  const char *pf; /* the next row's input (prefetched during the first cross pass), or NULL */
  int64_t esz;    /* its bytes per element */
  int nt;         /* y32 written with non-temporal stores */
  /* this row's output (ordinary stores), prefetched into L2 during the first
   * pass, or NULL; oesz its bytes per element. Why: the last pass stores its
   * vectors h = 256..2048 elements apart, 16 lines at a time, and every store
   * that misses the L2 waits in the store buffer for its line (read for
   * ownership) from the L3 or memory; the L2 streamer does not follow that
   * pattern. Measured (n = 4096, 2048 rows f16, 2 threads, blocks of
   * back-to-back calls on the same buffers, alternating with and without):
   * 0.82-0.84 of the time (median of 24 blocks; hints T0, T1 and prefetchw
   * within 0.82-0.87), f32 at 1024 rows 0.74; 1 thread 0.97-1.00;
   * prefetching the next row's output instead: the same. Smaller outputs:
   * see HAD_PFO_MIN_BYTES_PER_THREAD. Rows with K > 1
   * (n = 14336, 11008) were unchanged or slower (1.03, 0.99): their mix, not
   * the stores, is the bound, so they do not. */
  const char *pfy;
  int64_t oesz;
} had_io;


/* The row function is compiled once per input type, output kind (Y) and
 * whether its butterflies end in the output (K = 1) or in t (K > 1), the
 * signs once per first-pass variant: with these as run-time tests inside the
 * 16-vector bodies, GCC kept ~2 taken branches, the sign row's address (via
 * the stack) and ~14 scalar instructions per output vector in the hot loops
 * (~22 instructions per 8 vector uops). */
enum { HY_F16 = 0, HY_F32 = 1, HY_F32NT = 2 };

/* Write an output vector of the row at element i (already scaled). */
/* am: the caller's local max |y| accumulator (kept in a register; folded into
 * io->amax once per pass: accumulating through the struct put a store-load
 * round trip on a serial chain, 1.4x the time of a row of 4096 with signs). */
static inline __attribute__((always_inline)) void put_out(had_io *io, int64_t i, __m512 v, __m512 *am, const int Y) {
  if (Y == HY_F32NT) {
    _mm512_stream_ps(io->y32 + i, v); /* a whole line: row 64-byte aligned, i % 16 == 0 */
  } else if (Y == HY_F32) {
    _mm512_storeu_ps(io->y32 + i, v);
  } else {
    _mm256_storeu_si256((__m256i *)(io->y16 + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    *am = _mm512_range_ps(*am, v, 0x0b); /* imm 0x0b: max |.|, sign cleared (exact) */
  }
}

/* End of the butterflies for element i: scale, then output (K = 1) or u. */
/* vinv: the scale 1/sqrt(n), kept in a register by the caller (read through
 * hp after every store, it would be reloaded: a float store may alias it). */
static inline __attribute__((always_inline)) void finish(had_io *io, int64_t i, __m512 v, __m512 vinv, __m512 *am,
                                                         const int K1, const int Y) {
  v = _mm512_mul_ps(v, vinv);
  if (K1) put_out(io, i, v, am, Y);
  else _mm512_store_ps(io->t + had_tpos(io->hp, i), v);
}

/* Butterfly of stride h (1, 2, 4, 8) inside a register: even lanes a+b, odd lanes a-b.
 * With s = v with the lanes of each pair swapped, lane e gets v_e + s_e and
 * lane o gets s_o - v_o = s_o + (-1) v_o: one fma(v, (+1, -1, ...), s) per
 * stage. The product by +-1 is exact (signed zeros included) and x - y is
 * x + (-y) exactly in IEEE arithmetic, so the fma rounds once, like the
 * reference's addition or subtraction, and one uop replaces an add and a
 * masked subtract (the vector ports, not memory, bound this pass). */
static inline __attribute__((always_inline)) __m512 intra(__m512 v, int stages) {
  __m512 s;
  if (stages > 0) {
    s = _mm512_permute_ps(v, 0xB1);
    v = _mm512_fmadd_ps(v, _mm512_castsi512_ps(_mm512_set1_epi64((long long)0xBF8000003F800000ull)), s);
  }
  if (stages > 1) {
    s = _mm512_permute_ps(v, 0x4E);
    v = _mm512_fmadd_ps(v, _mm512_setr_ps(1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1), s);
  }
  if (stages > 2) {
    s = _mm512_shuffle_f32x4(v, v, 0xB1);
    v = _mm512_fmadd_ps(v, _mm512_setr_ps(1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1), s);
  }
  if (stages > 3) {
    s = _mm512_shuffle_f32x4(v, v, 0x4E);
    v = _mm512_fmadd_ps(v, _mm512_setr_ps(1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1), s);
  }
  return v;
}

/* r (1..4) stages of strides h, 2h, 4h, 8h (h >= 16) over one block of m
 * elements at blk (element offset off in the row); last: finish() instead of store.
 * a - b is computed as fnmadd(b, 1, a) = a + (-(b * 1)): the product is exact
 * and x - y is x + (-y) in IEEE arithmetic (signed zeros included), so it
 * rounds once, exactly like the reference's subtraction. Why: on Zen 4 (and
 * Zen 5) vaddps/vsubps issue only to the FP add pipes and FMAs only to the
 * FMA pipes, so a pass of adds and subtracts alone keeps half the vector
 * pipes idle; with the subtracts on the FMA pipes the butterflies split
 * evenly. Alternating calls on a Zen 4 guest (1 thread, 5 pairs): n = 4096 x
 * 16 rows 0.925x the time, x 2048 rows (2 threads) 0.92x, n = 1024 0.96x;
 * n = 14336 and 11008 (no pass of this kind) unchanged. On Intel cores both
 * run on the same ports: no change expected. */
static inline __attribute__((always_inline)) void cross_pass(had_io *io, float *blk, int64_t off, int64_t m,
                                                             int64_t h, const int r, const int last, const int K1,
                                                             const int Y) {
  const int R = 1 << r;
  const __m512 vinv = _mm512_set1_ps(io->hp->inv);
  const char *pf = io->pf;
  const int64_t esz = io->esz;
  __m512 am = _mm512_setzero_ps();
  for (int64_t base = 0; base < m; base += R * h)
    for (int64_t j = base; j < base + h; j += 16) {
      __m512 v[16];
      _Pragma("GCC unroll 16") for (int q = 0; q < R; q++) v[q] = _mm512_load_ps(blk + j + q * h);
      if (pf) /* this pass works in L1 and leaves the memory idle: bring in the next row's elements */
        _Pragma("GCC unroll 16") for (int q = 0; q < R; q++)
          _mm_prefetch(pf + (off + j + q * h) * esz, _MM_HINT_T1);
      _Pragma("GCC unroll 4") for (int s = 0; s < r; s++) {
        const int hs = 1 << s;
        _Pragma("GCC unroll 16") for (int q = 0; q < R; q++) if (!(q & hs)) {
          __m512 a = v[q], b = v[q + hs];
          v[q] = _mm512_add_ps(a, b);
          v[q + hs] = _mm512_fnmadd_ps(b, _mm512_set1_ps(1.0f), a);
        }
      }
      if (last) {
        _Pragma("GCC unroll 16") for (int q = 0; q < R; q++) finish(io, off + j + q * h, v[q], vinv, &am, K1, Y);
      } else {
        _Pragma("GCC unroll 16") for (int q = 0; q < R; q++) _mm512_store_ps(blk + j + q * h, v[q]);
      }
    }
  if (last) io->amax = _mm512_range_ps(io->amax, am, 0x0b);
}

/* hadK mix of A output rows x B vectors (A*B independent accumulator chains).
 * The reference's acc = (+-u_0), then acc = acc +- u_c, c ascending, is
 * computed as acc = u_0 * s_a0, then acc = fma(u_c, s_ac, acc) with s = +-1.0:
 * the products by +-1 are exact (signed zeros included), so every step rounds
 * exactly like the reference's addition or subtraction. u_c is loaded once per
 * c for all A rows; s_ac is a broadcast operand. Positions j0 outermost: the K
 * slices a block reads (K*B*64 bytes) stay in L1 for every output row.
 * The last quarter of the A rows instead runs acc = acc + (u_c ^ z_ac), z =
 * -0.0f / +0.0f (sgz_p: the sign bit alone): the xor negates exactly, and
 * a + (-b) is a - b in IEEE arithmetic (signed zeros included), so every step
 * still rounds like the reference's. Why: on Zen 4 FMAs issue only to the FMA
 * pipes and vaddps only to the add pipes, so a mix of FMAs alone leaves the add
 * pipes idle; one row in four on them gives 12 FMAs against 4 adds + 4 xors
 * per column, the split that measured fastest. Alternating processes,
 * 1 thread, 64 rows in cache, two rounds: n = 11008 0.886x the time, 14336
 * 0.935x; 2 threads, 2048 rows: 0.86x and 0.96x. Half the rows on the add
 * side: 0.96-0.99x and 0.99x; three quarters: 1.09-1.10x and 1.08-1.17x.
 * Bit-identical (ctest; the harness compares with the reference). */
static inline __attribute__((always_inline)) void mix_t(had_io *io, const int A, const int B, int a_begin,
                                                        int a_end, int64_t j0, const int Y) {
  const had_plan *hp = io->hp;
  const int K = hp->K;
  const int64_t m = hp->m;
  const float *u = io->t + j0;
  const int64_t ms = hp->ms;
  __m512 am = _mm512_setzero_ps();
  for (int a0 = a_begin; a0 + A <= a_end; a0 += A) {
    __m512 acc[8][4];
    /* the table in panels of 4 rows (see had_plan): the signs of rows a0 .. a0 + 3 for column c are
     * adjacent, and the columns follow each other (one sequential stream per panel) */
    const float *sg = hp->sgn_p + (int64_t)a0 * K, *sz = hp->sgz_p + (int64_t)a0 * K;
    _Pragma("GCC unroll 4") for (int bi = 0; bi < B; bi++) {
      const __m512 v = _mm512_load_ps(u + 16 * bi);
      _Pragma("GCC unroll 8") for (int ai = 0; ai < A; ai++)
        acc[ai][bi] = _mm512_mul_ps(v, _mm512_set1_ps(sg[(ai >> 2) * 4 * K + (ai & 3)]));
    }
    const float *uc = u;
    for (int c = 1; c < K; c++) {
      __m512 v[4];
      uc += ms;
      sg += 4;
      sz += 4;
      _Pragma("GCC unroll 4") for (int bi = 0; bi < B; bi++) v[bi] = _mm512_load_ps(uc + 16 * bi);
      _Pragma("GCC unroll 8") for (int ai = 0; ai < A; ai++) {
        if (ai * 4 >= 3 * A) { /* the last quarter of the rows: xor + add (see above) */
          const __m512 zv = _mm512_set1_ps(sz[(ai >> 2) * 4 * K + (ai & 3)]);
          _Pragma("GCC unroll 4") for (int bi = 0; bi < B; bi++)
            acc[ai][bi] = _mm512_add_ps(acc[ai][bi], _mm512_xor_ps(v[bi], zv));
        } else {
          const __m512 sv = _mm512_set1_ps(sg[(ai >> 2) * 4 * K + (ai & 3)]);
          _Pragma("GCC unroll 4") for (int bi = 0; bi < B; bi++) acc[ai][bi] = _mm512_fmadd_ps(v[bi], sv, acc[ai][bi]);
        }
      }
    }
    _Pragma("GCC unroll 8") for (int ai = 0; ai < A; ai++)
      _Pragma("GCC unroll 4") for (int bi = 0; bi < B; bi++) put_out(io, (int64_t)(a0 + ai) * m + j0 + 16 * bi, acc[ai][bi], &am, Y);
  }
  io->amax = _mm512_range_ps(io->amax, am, 0x0b);
}

/* The mix for K = 28 (n = 28 x 2^k: 14336, Llama-3-8B's and Mistral-7B's MLP
 * width, and 28672, Llama-3-70B's) with its signs compiled in.
 *
 * Why: mix_t's add rows need a vxorps per step to negate u, and the xors
 * compete with the adds and FMAs for the vector pipes; one row in four on the
 * add pipes measured best there, 0.75 cycles per step on the FMA pipes. With
 * the sign of every (a, c) known to the compiler, a step is acc + u or acc - u
 * (vaddps, vsubps: the add pipes) or fma(u, 1, acc) or fnma(u, 1, acc) (the FMA
 * pipes). All four are exact like the reference's acc = acc + (+-u_c): the
 * product by 1 is exact, and x - y is x + (-y) in IEEE arithmetic, signed
 * zeros included. No xor, no sign operand: even rows go to the FMA pipes, odd
 * rows to the add pipes. Every loop of mix28_col is unrolled, so every sign
 * (k_had28_neg, in the plan section) and every class below is a constant.
 *
 * The tile: all 28 rows at positions j .. j + 15, 28 accumulators, u_c loaded
 * once per column c. The signs make the code unique per (a, c), so the code
 * size is what limits the tile: this one is 27 loads and 637 register-only
 * steps (about 5 KiB). Blocks of 4 rows x 4 vectors (mix_t's tile) unrolled
 * the same way were about 3,800 instructions, most with a 32-bit displacement
 * (~35 KiB, beyond the 32 KiB L1i): 1.23x the time of mix_t.
 *
 * Shared prefixes: rows whose signs agree on columns 0..c have bit-identical
 * partial sums there (the same steps in the same order), so the mix keeps one
 * accumulator per class of such rows. Column c's step is acc = acc +
 * hadK[a][c] u_c for every class; a class that splits at column c gives its
 * new part a new register, acc' = acc_parent + hadK[a'][c] u_c. HAD28_REP(a, c)
 * is the class of row a after columns 0..c, named by its first row (k_had28_rep).
 * K = 28 has 2, 3, 5, 9, 14, 18, 21, 22, ... classes after columns 0, 1, 2,
 * ...: 637 steps where the rows alone take 756 (0.84x). Rows with opposite signs are not
 * merged (one accumulator and a negation at the end): exact cancellation gives
 * +0 whatever the signs of the terms, so -(a + b) and (-a) + (-b) differ when
 * a = -b (the special-values test's zero rows caught that); merged, 633 steps.
 *
 * The steps are inline asm: the instruction (and so the pipe) is the one
 * named, and volatile keeps the steps and loads in source order. As plain
 * intrinsics GCC merged rows, turned some steps into vfmsub, and hoisted the 27
 * loads ahead of the steps: 30 live vectors became ~190 spills per column and
 * 1.1-1.25x the time of mix_t. */
#define MIX28_LOAD(v, p) __asm__ volatile("vmovaps %1, %0" : "=v"(v) : "m"(*(const __m512 *)(p)))
#define MIX28_FMA(acc, v, one) __asm__ volatile("vfmadd231ps %2, %1, %0" : "+v"(acc) : "v"(v), "v"(one))
#define MIX28_FNMA(acc, v, one) __asm__ volatile("vfnmadd231ps %2, %1, %0" : "+v"(acc) : "v"(v), "v"(one))
#define MIX28_ADD(acc, v) __asm__ volatile("vaddps %1, %0, %0" : "+v"(acc) : "v"(v))
#define MIX28_SUB(acc, v) __asm__ volatile("vsubps %1, %0, %0" : "+v"(acc) : "v"(v))
#define MIX28_ADD3(dst, src, v) __asm__ volatile("vaddps %2, %1, %0" : "=v"(dst) : "v"(src), "v"(v))
#define MIX28_SUB3(dst, src, v) __asm__ volatile("vsubps %2, %1, %0" : "=v"(dst) : "v"(src), "v"(v))
#if defined(__clang__)
#define MIX28_UNROLL(n) _Pragma("clang loop unroll(full)")
#else
#define MIX28_UNROLL(n) RESQ_TARGET_PRAGMA_(GCC unroll n)
#endif
#define HAD28_NM(a) (k_had28_neg[(a)])
#define HAD28_REP(a, c) ((int)k_had28_rep[(c)][(a)])

static inline __attribute__((always_inline)) void mix28_col(had_io *io, int64_t j, __m512 *am, const int Y) {
  const int64_t ms = io->hp->ms, m = io->hp->m;
  const float *u = io->t + j;
  const __m512 one = _mm512_set1_ps(1.0f), mone = _mm512_set1_ps(-1.0f);
  __m512 acc[28], v;
  MIX28_LOAD(v, u); /* column 0: acc = +-u_0, one class per sign */
  MIX28_UNROLL(28) for (int a = 0; a < 28; a++) if (HAD28_REP(a, 0) == a) acc[a] =
      (HAD28_NM(a) & 1u) ? _mm512_mul_ps(v, mone) : v; /* as mix_t: the product by -1 is exact */
  MIX28_UNROLL(27) for (int c = 1; c < 28; c++) {
    MIX28_LOAD(v, u + c * ms);
    /* new classes first: they read their parent's accumulator before its own step */
    MIX28_UNROLL(28) for (int a = 1; a < 28; a++) {
      if (HAD28_REP(a, c) != a || HAD28_REP(a, c - 1) == a) continue;
      if ((HAD28_NM(a) >> c) & 1u) MIX28_SUB3(acc[a], acc[HAD28_REP(a, c - 1)], v);
      else MIX28_ADD3(acc[a], acc[HAD28_REP(a, c - 1)], v);
    }
    /* the classes that go on, in place: even rows on the FMA pipes, odd on the add pipes */
    MIX28_UNROLL(28) for (int a = 0; a < 28; a++) {
      if (HAD28_REP(a, c - 1) != a) continue;
      const int neg = (int)((HAD28_NM(a) >> c) & 1u);
      if (a % 2 == 0) {
        if (neg) MIX28_FNMA(acc[a], v, one);
        else MIX28_FMA(acc[a], v, one);
      } else {
        if (neg) MIX28_SUB(acc[a], v);
        else MIX28_ADD(acc[a], v);
      }
    }
  }
  /* after column 27 every row is its own class */
  MIX28_UNROLL(28) for (int a = 0; a < 28; a++) put_out(io, (int64_t)a * m + j, acc[a], am, Y);
}

/* The K = 28 mix of a row. */
static inline __attribute__((always_inline)) void mix28_all(had_io *io, const int Y) {
  const int64_t m = io->hp->m;
  __m512 am = _mm512_setzero_ps();
  for (int64_t j = 0; j < m; j += 16) mix28_col(io, j, &am, Y);
  io->amax = _mm512_range_ps(io->amax, am, 0x0b);
}

/* The whole mix (every K of the table is a multiple of 4). */
static inline __attribute__((always_inline)) void mix_all(had_io *io, const int Y) {
  const int K = io->hp->K;
  const int64_t m = io->hp->m, mv = m / 16;
  if (io->hp->k28) {
    mix28_all(io, Y);
  } else if (mv % 4 == 0) {
    for (int64_t j0 = 0; j0 < m; j0 += 64) mix_t(io, 4, 4, 0, K, j0, Y);
  } else if (mv % 2 == 0) {
    const int a8 = K / 8 * 8;
    for (int64_t j0 = 0; j0 < m; j0 += 32) {
      mix_t(io, 8, 2, 0, a8, j0, Y);
      mix_t(io, 4, 2, a8, K, j0, Y);
    }
  } else {
    const int a8 = K / 8 * 8;
    for (int64_t j0 = 0; j0 < m; j0 += 16) {
      mix_t(io, 8, 1, 0, a8, j0, Y);
      mix_t(io, 4, 1, a8, K, j0, Y);
    }
  }
}

/* Pass 1 and the first cross pass in one (m >= 256): per block of 256
 * elements, 16 vectors are loaded, signed and run through the strides 1..8
 * in their registers (intra), then through the strides 16..128 across the
 * registers, and stored once: the same operations as pass 1 followed by
 * cross_pass(h = 16, r = 4), without the store and reload of t in between.
 * last: the block's butterflies end here (m = 256). */
static inline __attribute__((always_inline)) void first_pass(had_io *io, const float *x32, const uint16_t *x16,
                                                             int64_t n, int last, __m512 *am, const int F16,
                                                             const int SG, const int K1, const int Y, const int F9) {
  const had_plan *hp = io->hp;
  const int8_t *signs = hp->signs;
  const __m512 vinv = _mm512_set1_ps(hp->inv);
  const __m512i sbit = _mm512_set1_epi32((int)0x80000000u);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t j = 0; j < n; j += 256) {
    __m512 v[16];
    _Pragma("GCC unroll 16") for (int q = 0; q < 16; q++) {
      const int64_t i = j + 16 * q;
      __m512 w = F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x16 + i))) : _mm512_loadu_ps(x32 + i);
      if (SG) {
        __mmask16 neg = _mm_movepi8_mask(_mm_loadu_si128((const __m128i *)(signs + i)));
        w = _mm512_castsi512_ps(_mm512_mask_xor_epi32(_mm512_castps_si512(w), neg, _mm512_castps_si512(w), sbit));
      }
      v[q] = intra(w, 4);
    }
    if (io->pf) /* this pass leaves the memory idle between its loads: bring in the next row's elements */
      for (int64_t b = 0; b < 256 * io->esz; b += 64) _mm_prefetch(io->pf + j * io->esz + b, _MM_HINT_T1);
    if (io->pfy)
      for (int64_t b = 0; b < 256 * io->oesz; b += 64) _mm_prefetch(io->pfy + j * io->oesz + b, _MM_HINT_T1);
    /* strides 16..128, a - b in the FMA form of cross_pass (the intra stages' shuffles share the add
     * pipes on Zen 4: alternating calls 0.945x the time at n = 4096 x 16 rows and 512 x 256, 0.99x at 14336) */
    _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
      const int hs = 1 << s;
      _Pragma("GCC unroll 16") for (int q = 0; q < 16; q++) if (!(q & hs)) {
        __m512 a = v[q], b = v[q + hs];
        v[q] = _mm512_add_ps(a, b);
        v[q + hs] = _mm512_fnmadd_ps(b, one, a);
      }
    }
    if (last) {
      _Pragma("GCC unroll 16") for (int q = 0; q < 16; q++) finish(io, j + 16 * q, v[q], vinv, am, K1, Y);
    } else if (F9 && (j & 256)) {
      /* m = 512: the last stride (256) right here, on the upper half just computed and the lower
       * half stored one step before (still in L1): a = lower, b = upper, a + b and a - b, then the
       * scale -- cross_pass(h = 256, r = 1, last)'s operations, without a pass over t from L2 */
      const float *ta = io->t + had_tpos(hp, j - 256);
      _Pragma("GCC unroll 16") for (int q = 0; q < 16; q++) {
        const __m512 a = _mm512_load_ps(ta + 16 * q);
        finish(io, j - 256 + 16 * q, _mm512_add_ps(a, v[q]), vinv, am, K1, Y);
        finish(io, j + 16 * q, _mm512_sub_ps(a, v[q]), vinv, am, K1, Y);
      }
    } else {
      float *tb = io->t + had_tpos(hp, j); /* the 256 elements lie in one block (m >= 256) */
      _Pragma("GCC unroll 16") for (int q = 0; q < 16; q++) _mm512_store_ps(tb + 16 * q, v[q]);
    }
  }
}

/* Pass 1 alone (m < 256: strides 1..8, then t, or the output when m = 16). */
static inline __attribute__((always_inline)) void pass1(had_io *io, const float *x32, const uint16_t *x16, int64_t n,
                                                        int nin, int ncross, __m512 *am, const int F16, const int SG,
                                                        const int K1, const int Y) {
  const had_plan *hp = io->hp;
  const int8_t *signs = hp->signs;
  const __m512 vinv = _mm512_set1_ps(hp->inv);
  const __m512i sbit = _mm512_set1_epi32((int)0x80000000u);
  float *t = io->t;
  for (int64_t i = 0; i < n; i += 16) {
    __m512 v = F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x16 + i))) : _mm512_loadu_ps(x32 + i);
    if (SG) {
      __mmask16 neg = _mm_movepi8_mask(_mm_loadu_si128((const __m128i *)(signs + i)));
      v = _mm512_castsi512_ps(_mm512_mask_xor_epi32(_mm512_castps_si512(v), neg, _mm512_castps_si512(v), sbit));
    }
    switch (nin) {
      case 2: v = intra(v, 2); break;
      case 3: v = intra(v, 3); break;
      default: v = intra(v, 4); break;
    }
    if (ncross == 0) finish(io, i, v, vinv, am, K1, Y);
    else _mm512_store_ps(t + had_tpos(hp, i), v);
  }
}

/* One row; F16: f16 input; K1: K = 1 (the butterflies end in the output);
 * Y: the output kind (HY_F16 for f16 rows streamed or not: a streamed f16
 * row is finished in nu, see below). */
static inline __attribute__((always_inline)) void had_row_t(const had_plan *hp, const float *x32, const uint16_t *x16,
                                                            float *y32, uint16_t *y16, float *t, float *nu,
                                                            int *overflow, const void *next, int stream, const int F16,
                                                            const int K1, const int Y) {
  const int64_t n = hp->n, m = hp->m;
  const int lm = hp->lm;
  const int nin = lm < 4 ? lm : 4, ncross = lm - nin;
  had_io io = {hp, t, nu, y32, stream && Y == HY_F16 ? (uint16_t *)nu : y16, _mm512_setzero_ps(), NULL, F16 ? 2 : 4,
               Y == HY_F32NT};
  __m512 am1 = _mm512_setzero_ps();
  int s0 = 0; /* the first cross stage left after pass 1 */
  if (ncross >= 4) { /* pass 1 and strides 16..128 in one pass */
    io.pf = (const char *)next;
    /* the output lines too (see had_io.pfy, had_plan.pfo): K = 1, ordinary
     * stores, not in place (there the lines are the input's) */
    const char *yrow = Y != HY_F16 ? (const char *)y32 : (const char *)y16;
    const char *xrow = F16 ? (const char *)x16 : (const char *)x32;
    if (next && hp->pfo && (K1 || hp->k28) && !stream && yrow != xrow) {
      io.pfy = yrow;
      io.oesz = Y != HY_F16 ? 4 : 2;
    }
    /* m = 512 (14336 = 28 x 512, n = 512): the ninth stage inside the first pass (F9) */
    const int f9 = ncross == 5 && !hp->no_f9;
    if (f9) {
      if (hp->signs) first_pass(&io, x32, x16, n, 0, &am1, F16, 1, K1, Y, 1);
      else first_pass(&io, x32, x16, n, 0, &am1, F16, 0, K1, Y, 1);
    } else if (hp->signs) {
      first_pass(&io, x32, x16, n, ncross == 4, &am1, F16, 1, K1, Y, 0);
    } else {
      first_pass(&io, x32, x16, n, ncross == 4, &am1, F16, 0, K1, Y, 0);
    }
    io.pf = NULL;
    io.pfy = NULL;
    s0 = f9 ? 5 : 4;
  } else if (hp->signs) {
    pass1(&io, x32, x16, n, nin, ncross, &am1, F16, 1, K1, Y);
  } else {
    pass1(&io, x32, x16, n, nin, ncross, &am1, F16, 0, K1, Y);
  }
  io.amax = am1;
  /* strides 16 .. m/2, up to 4 per pass */
  if (ncross > s0)
    for (int c = 0; c < hp->K; c++) {
      float *blk = t + (int64_t)c * hp->ms;
      for (int s = s0; s < ncross;) {
        int r = ncross - s < 4 ? ncross - s : 4, last = s + r == ncross;
        int64_t h = (int64_t)16 << s;
        io.pf = s == 0 ? (const char *)next : NULL;
        if (!last) {
          switch (r) { /* not the last pass: r = 4 */
            case 1: cross_pass(&io, blk, (int64_t)c * m, m, h, 1, 0, K1, Y); break;
            case 2: cross_pass(&io, blk, (int64_t)c * m, m, h, 2, 0, K1, Y); break;
            case 3: cross_pass(&io, blk, (int64_t)c * m, m, h, 3, 0, K1, Y); break;
            default: cross_pass(&io, blk, (int64_t)c * m, m, h, 4, 0, K1, Y); break;
          }
        } else {
          switch (r) {
            case 1: cross_pass(&io, blk, (int64_t)c * m, m, h, 1, 1, K1, Y); break;
            case 2: cross_pass(&io, blk, (int64_t)c * m, m, h, 2, 1, K1, Y); break;
            case 3: cross_pass(&io, blk, (int64_t)c * m, m, h, 3, 1, K1, Y); break;
            default: cross_pass(&io, blk, (int64_t)c * m, m, h, 4, 1, K1, Y); break;
          }
        }
        s += r;
      }
    }
  if (!K1) mix_all(&io, Y);
  if (stream && Y == HY_F16) {
    const uint16_t *st = (const uint16_t *)nu;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) _mm512_stream_si512((__m512i *)(y16 + i), _mm512_load_si512((const void *)(st + i)));
    if (i < n) /* n = 16 */
      _mm256_stream_si256((__m256i *)(y16 + i), _mm256_load_si256((const __m256i *)(st + i)));
  }
  /* RNE to f16 gives +-Inf exactly when |v| >= 65520 (amax is NaN, and the
   * compare false, when the row holds a NaN). A NaN or Inf input makes EVERY
   * output NaN or +-Inf: each output sums all n inputs (butterflies and hadK
   * mix), and no operation turns NaN or +-Inf back into a finite value; so
   * output 0 tells, as the portable row's test of every output does. */
  if (Y == HY_F16 &&
      (_mm512_cmp_ps_mask(io.amax, _mm512_set1_ps(65520.0f), _CMP_GE_OQ) || (io.y16[0] & 0x7c00u) == 0x7c00u))
    *overflow = 1;
}

#define HAD_ROW_INST(NAME, F16, K1, Y)                                                                          \
  static void NAME(const had_plan *hp, const float *x32, const uint16_t *x16, float *y32, uint16_t *y16, float *t, \
                   float *nu, int *overflow, const void *next, int stream) {                                     \
    had_row_t(hp, x32, x16, y32, y16, t, nu, overflow, next, stream, F16, K1, Y);                                \
  }
HAD_ROW_INST(had_row_h_h_k1, 1, 1, HY_F16)  /* f16 -> f16 (resq_hadamard_f16__cpu) */
HAD_ROW_INST(had_row_h_h_kk, 1, 0, HY_F16)
HAD_ROW_INST(had_row_f_f_k1, 0, 1, HY_F32)  /* f32 -> f32 (resq_hadamard_f32__cpu) */
HAD_ROW_INST(had_row_f_f_kk, 0, 0, HY_F32)
HAD_ROW_INST(had_row_f_nt_k1, 0, 1, HY_F32NT) /* streamed (K = 1 only) */
HAD_ROW_INST(had_row_h_f_k1, 1, 1, HY_F32)  /* f16 -> f32 (the fused Hadamard + quantizer) */
HAD_ROW_INST(had_row_h_f_kk, 1, 0, HY_F32)
HAD_ROW_INST(had_row_h_nt_k1, 1, 1, HY_F32NT)
#undef HAD_ROW_INST

static void had_row_avx512(const had_plan *hp, const float *x32, const uint16_t *x16, float *y32, uint16_t *y16,
                           float *t, float *nu, int *overflow, const void *next) {
  /* Non-temporal outputs (hp->nt, K = 1, the output row 64-byte aligned): the
   * last pass writes its vectors h apart, 16 lines at a time each half filled
   * by an f16 store, and streaming those evicted partial lines from the write
   * combining buffers (8x the time of a row of 4096). So f16 rows are
   * finished in nu (L1) and streamed to y16 in order after the butterflies
   * (one load and one store per 32 outputs); an f32 output vector is a whole
   * line and streams directly. */
  const int stream = hp->nt && hp->K == 1 && !(((uintptr_t)(y32 ? (void *)y32 : (void *)y16)) & 63);
  const int k1 = hp->K == 1;
  if (!y32) {
    if (k1) had_row_h_h_k1(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
    else had_row_h_h_kk(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
  } else if (x32) {
    if (stream) had_row_f_nt_k1(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
    else if (k1) had_row_f_f_k1(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
    else had_row_f_f_kk(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
  } else {
    if (stream) had_row_h_nt_k1(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
    else if (k1) had_row_h_f_k1(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
    else had_row_h_f_kk(hp, x32, x16, y32, y16, t, nu, overflow, next, stream);
  }
}

RESQ_AVX512_END
#endif /* RESQ_CPU_X86 */

void resq_cpu_had_row(const had_plan *hp, const float *x32, const uint16_t *x16, float *y32, uint16_t *y16,
                      float *t, float *nu, int *overflow, const void *next) {
#if RESQ_CPU_X86
  if (hp->avx512 && hp->m >= 16) { /* m < 16 (n <= 172*8): the portable row */
    had_row_avx512(hp, x32, x16, y32, y16, t, nu, overflow, next);
    return;
  }
  if (hp->avx2 && hp->m >= 8) {
    had_row_avx2(hp, x32, x16, y32, y16, t, overflow);
    return;
  }
#endif
  (void)nu;
  (void)next;
  had_row_generic(hp, x32, x16, y32, y16, t, overflow);
}

/* ------------------------------------------------------------------ public functions */

/* Next-row prefetch only for inputs larger than this: they come from L3 or
 * memory, and alternating calls measured 5-21 % less time at 256-2048 rows of
 * 4096 and 14336; an input that sits in L2 (16 rows of 4096) lost 3-6 % to
 * the extra instructions. */
#define HAD_PF_MIN_BYTES (1 << 20)

/* Non-temporal output stores (K = 1) when each thread writes at least this
 * many bytes of output (RESQ_CPU_HAD_NT=<bytes> overrides it per call; 0
 * streams every size). Ordinary stores keep the rows in the L3 for their
 * reader and for the next call on the same buffers; streamed ones go to
 * memory, and pay off only when the rows would have left the L3 anyway.
 * Measured on the Xeon KVM guest this was tuned on (n = 4096 f16, blocks of
 * back-to-back calls on the same buffers, as a benchmark or a layer loop
 * makes them, alternating with and without streaming): 2 threads, 2048 rows
 * (8 MiB per thread) streamed 1.09-1.15x SLOWER, 2560 rows (10 MiB) 1.04x
 * slower, 3072-8192 rows (12-32 MiB) 1.13-1.22x faster; 1 thread, 1024 rows
 * (8 MiB) 1.09x slower, 2048 and 3072 rows 1.14x and 1.32x faster. The
 * threshold is per thread: one thread's stream, not the total, is what the
 * measurements split on (2048 rows: slower on 2 threads, faster on 1).
 * (An earlier threshold of 2 MiB came from alternating single calls, which
 * hands each call the cache state the other left: a streamed call left its
 * outputs out of the cache, so the ordinary call after it missed on every
 * output line. That made streaming look 1.13-1.29x faster at 512-2048 rows.)
 * K > 1 rows (n = 11008, 14336) are bound by the mix's arithmetic: streaming their
 * outputs measured 0.95-1.02x in alternating calls and 0.955x in blocks of
 * back-to-back calls (14336 x 2048 rows, 2 threads), so they never stream. */
#define HAD_NT_MIN_BYTES_PER_THREAD (12 << 20)

/* Output-line prefetch (had_io.pfy) when each thread writes at least this
 * many bytes of output (and the input takes the next-row prefetch): below it
 * the lines are mostly in the L2 already and the prefetches are extra
 * instructions. Measured as for HAD_NT_MIN_BYTES_PER_THREAD (n = 4096 f16,
 * medians of 16 blocks, time without / with): 2 threads, 128 rows (512 KiB
 * per thread) 0.977 (slower with), 192 rows (768 KiB) 1.03, 256 rows 1.05,
 * 512 and 2048 rows 1.17 and 1.12 (with the streaming threshold raised as
 * well); 1 thread 128 rows 1.06, 256 rows 1.20, 2048 rows 1.03. */
#define HAD_PFO_MIN_BYTES_PER_THREAD (768 << 10)


typedef struct had_job {
  had_plan hp;
  int64_t rows, ldx, ldy;
  const float *x32;
  const uint16_t *x16;
  float *y32;
  uint16_t *y16;
  float *scratch; /* per thread: 2 * stride floats */
  int64_t stride;
  int pf; /* prefetch each next row (see HAD_PF_MIN_BYTES) */
  int64_t bad_row[64]; /* per thread: first row whose f16 output overflowed, or -1 */
} had_job;

static void had_task(void *arg, int tid, int nt) {
  had_job *J = (had_job *)arg;
  int64_t b, e;
  resq_cpu_range(J->rows, tid, nt, &b, &e);
  float *t = J->scratch + (size_t)tid * 2 * (size_t)J->stride, *nu = t + J->stride;
  J->bad_row[tid] = -1;
  for (int64_t r = b; r < e; r++) {
    int ovf = 0;
    const void *next = !J->pf || r + 1 >= e ? NULL
                       : J->x32 ? (const void *)(J->x32 + (r + 1) * J->ldx)
                                : (const void *)(J->x16 + (r + 1) * J->ldx);
    resq_cpu_had_row(&J->hp, J->x32 ? J->x32 + r * J->ldx : NULL, J->x16 ? J->x16 + r * J->ldx : NULL,
                     J->y32 ? J->y32 + r * J->ldy : NULL, J->y16 ? J->y16 + r * J->ldy : NULL, t, nu, &ovf, next);
    if (ovf) {
      J->bad_row[tid] = r;
      break;
    }
  }
  /* streamed (weakly ordered) stores reach memory before the join publishes the rows */
#if RESQ_CPU_X86
  if (J->hp.nt) _mm_sfence();
#endif
}

/* The reference's argument checks (values are not scanned). */
static resq_status check_args(int64_t rows, int64_t n, const void *x, int64_t ldx, const void *y, int64_t ldy,
                              const int8_t *signs, void *work, size_t work_size) {
  int K;
  int64_t m;
  resq_status st = resq_hadamard_factor(n, &K, &m);
  if (st) return st;
  if (!work || work_size < resq_hadamard_workspace_size(n))
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: workspace of %zu bytes given, %zu needed", work_size,
                     resq_hadamard_workspace_size(n));
  const int64_t bad = signs ? resq_cpu_first_bad_sign(signs, n) : -1;
  if (bad >= 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: signs[%lld] = %d (must be +1 or -1)", (long long)bad, signs[bad]);
  if (rows < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: rows=%lld < 0", (long long)rows);
  if (rows > 0 && (!x || !y)) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: NULL input or output");
  if (rows > 1 && (ldx < n || ldy < n))
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: leading dimensions (%lld, %lld) smaller than n=%lld",
                     (long long)ldx, (long long)ldy, (long long)n);
  return RESQ_OK;
}

static resq_status hadamard(int64_t rows, int64_t n, const float *x32, const uint16_t *x16, int64_t ldx, float *y32,
                            uint16_t *y16, int64_t ldy, const int8_t *signs, void *work, size_t work_size) {
  resq_status st = check_args(rows, n, x32 ? (const void *)x32 : (const void *)x16, ldx,
                              y32 ? (const void *)y32 : (const void *)y16, ldy, signs, work, work_size);
  if (st || rows == 0) return st;
  resq_cpu_lock();
  had_job J;
  memset(&J, 0, sizeof J);
  st = resq_cpu_had_plan(n, signs, resq_cpu_avx512_active(), &J.hp);
  if (st) {
    resq_cpu_unlock();
    return st;
  }
  int nt = resq_cpu_get_threads();
  if (nt > 64) nt = 64;
  if (nt > rows) nt = (int)rows;
  J.rows = rows;
  J.ldx = ldx;
  J.ldy = ldy;
  J.x32 = x32;
  J.x16 = x16;
  J.y32 = y32;
  J.y16 = y16;
  J.stride = (n + 15) / 16 * 16;
  if (J.stride < J.hp.t_len) J.stride = J.hp.t_len;
  J.pf = (double)rows * (double)n * (x32 ? 4 : 2) >= HAD_PF_MIN_BYTES;
  const double out_bytes = (double)rows * (double)n * (y32 ? 4 : 2);
  J.hp.nt = J.hp.avx512 && J.hp.K == 1 && out_bytes >= (double)nt * (double)resq_cpu_env_i64("RESQ_CPU_HAD_NT", HAD_NT_MIN_BYTES_PER_THREAD, 0);
  J.hp.pfo = J.pf && out_bytes >= (double)nt * HAD_PFO_MIN_BYTES_PER_THREAD;
  J.scratch = (float *)resq_cpu_workspace(2, (size_t)nt * 2 * (size_t)J.stride * sizeof(float));
  if (!J.scratch) {
    resq_cpu_unlock();
    return resq_fail(RESQ_ERR_NOMEM, "hadamard (cpu): out of memory");
  }
  resq_cpu_parallel(had_task, &J, nt);
  int64_t bad = -1;
  for (int i = 0; i < nt; i++)
    if (J.bad_row[i] >= 0 && (bad < 0 || J.bad_row[i] < bad)) bad = J.bad_row[i];
  resq_cpu_unlock();
  if (bad >= 0)
    return resq_fail(RESQ_ERR_NONFINITE,
                     "hadamard: an f16 output of row %lld is +-Inf or NaN: it overflows f16, or the row holds a NaN or "
                     "Inf (the CPU backend does not scan inputs; rows may be partly written)",
                     (long long)bad);
  return RESQ_OK;
}

resq_status resq_hadamard_f32__cpu(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
                                   const int8_t *signs, void *work, size_t work_size) {
  return hadamard(rows, n, x, NULL, ldx, y, NULL, ldy, signs, work, work_size);
}

resq_status resq_hadamard_f16__cpu(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                                   int64_t ldy, const int8_t *signs, void *work, size_t work_size) {
  return hadamard(rows, n, NULL, x, ldx, NULL, y, ldy, signs, work, work_size);
}
