/* SPDX-License-Identifier: Apache-2.0
 * CPU FP16 GEMM (ref/CONTRACT.md section 11, the FP16 baseline), bit-identical
 * to resq_gemm_f16__ref / resq_gemm_f16_f32__ref: y = sum_k x_k w_k in fp32
 * with k ascending, + bias, RNE to f16.
 *
 * Why this kernel is the 16-bit GEMM of the CPU backend (resq/cpu.h has the
 * comparison): the product of two fp16 values is exact in fp32 (11 x 11
 * significand bits), so fma(x, w, acc) rounds exactly like the reference's
 * acc + x*w. An AVX-512 kernel that keeps one fp32 accumulator per output and
 * feeds it k in ascending order therefore reproduces the reference bit for bit
 * at the vfmadd231ps rate, with the weights stored as fp16 (2 bytes per weight,
 * the bandwidth of a bf16 GEMM at decode). The lanes of a vector are 16
 * different outputs; K is cut into blocks only by saving and reloading the
 * fp32 accumulators (exact), never into partial sums.
 *
 * Weight layout (resq_wf16_cpu): N padded with zero columns to a multiple of 32;
 * panel p (outputs 32p..32p+31) is K steps of 32 fp16 values (64 bytes): step k
 * holds w[32p + l][k], l = 0..31. Activations are converted to fp32 (exact,
 * vcvtph2ps) block by block, rows kept contiguous, by the thread that uses them.
 * Micro-kernel: mr x 32 outputs (2*mr zmm accumulators); per k one 64-byte load,
 * two vcvtph2ps, mr broadcasts and 2*mr FMAs. At decode sizes up to four
 * panels are interleaved (more independent FMA chains in flight). */
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
#define KC 256  /* k steps per block (weights: 16 KiB per panel block, L1) */
#define NCP 4   /* panels per chunk */
#define MCT 8   /* row tiles per block (A block: 8 * 12 * 256 * 4 = 96 KiB, L2) */
#define NPAN_MAX 4 /* panels interleaved by the decode kernel (independent FMA chains) */

/* ------------------------------------------------------------------ packing */

resq_status resq_gemm_f16_pack_weight_size__cpu(int64_t N, int64_t K, size_t *bytes) {
  if (N < 0 || K < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 pack (cpu): negative size N=%lld K=%lld",
                                       (long long)N, (long long)K);
  if (!bytes) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 pack (cpu): NULL size pointer");
  if (K > ((int64_t)1 << 31) || N > ((int64_t)1 << 31))
    return resq_fail(RESQ_ERR_TOO_LARGE, "gemm f16 pack (cpu): N=%lld K=%lld too large", (long long)N, (long long)K);
  size_t np = (size_t)((N + NR - 1) / NR);
  size_t b = np * (size_t)K * NR * 2;
  *bytes = b > 0 ? (b + 63) / 64 * 64 : 64;
  return RESQ_OK;
}

resq_status resq_gemm_f16_pack_weight__cpu(int64_t N, int64_t K, const uint16_t *w, int64_t ldw, void *buf,
                                           size_t bytes, resq_wf16_cpu *out) {
  size_t need = 0;
  resq_status st = resq_gemm_f16_pack_weight_size__cpu(N, K, &need);
  if (st) return st;
  if (!out || !buf || (N > 0 && K > 0 && !w)) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 pack (cpu): NULL argument");
  if (N > 1 && ldw < K) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 pack (cpu): ldw=%lld < K=%lld", (long long)ldw,
                                         (long long)K);
  if ((uintptr_t)buf % 64) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 pack (cpu): buffer is not 64-byte aligned");
  if (bytes < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 pack (cpu): buffer of %zu bytes, %zu needed", bytes, need);
  /* the reference's value checks on the weight, made once here */
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      if ((w[n * ldw + k] & 0x7c00u) == 0x7c00u)
        return resq_fail(RESQ_ERR_NONFINITE, "gemm f16 pack (cpu): w[%lld][%lld] is NaN or Inf", (long long)n,
                         (long long)k);
  uint16_t *dst = (uint16_t *)buf;
  memset(buf, 0, need);
  const int64_t np = (N + NR - 1) / NR;
  for (int64_t p = 0; p < np; p++)
    for (int l = 0; l < NR; l++) {
      const int64_t n = p * NR + l;
      if (n >= N) break;
      const uint16_t *src = w + n * ldw;
      uint16_t *d = dst + (size_t)p * (size_t)K * NR + l;
      for (int64_t k = 0; k < K; k++) d[k * NR] = src[k];
    }
  memset(out, 0, sizeof *out);
  out->magic = RESQ_WF16_CPU_MAGIC;
  out->N = N;
  out->K = K;
  out->npanels = np;
  out->bytes = need;
  out->data = buf;
  return RESQ_OK;
}

/* ------------------------------------------------------------------ kernels */

typedef struct fk_args {
  const float *A; /* tile at step k0: row i at A + i*lda (fp32) */
  int64_t lda;
  int mr;
  const uint16_t *W[NPAN_MAX]; /* panels at step k0 */
  int npan;
  int64_t nk;
  float *state[NPAN_MAX]; /* [MR_MAX][32] carried accumulators */
  int first, last;
  const float *bias[NPAN_MAX];
  float *yf[NPAN_MAX];
  uint16_t *yh[NPAN_MAX];
  int64_t ldy;
  int ncols[NPAN_MAX];
} fk_args;

typedef void (*fk_fn)(const fk_args *a);

static void fk_generic(const fk_args *a) {
  const int mr = a->mr;
  for (int pp = 0; pp < a->npan; pp++) {
    float acc[MR_MAX][NR];
    for (int i = 0; i < mr; i++)
      for (int l = 0; l < NR; l++) acc[i][l] = a->first ? 0.0f : a->state[pp][i * NR + l];
    const uint16_t *wp = a->W[pp];
    const float *ap = a->A;
    for (int64_t k = 0; k < a->nk; k++, wp += NR, ap++) {
      float w[NR];
      for (int l = 0; l < NR; l++) w[l] = resq_f16_to_f32(wp[l]);
      for (int i = 0; i < mr; i++)
        for (int l = 0; l < NR; l++) acc[i][l] = acc[i][l] + ap[i * a->lda] * w[l]; /* exact product, one rounding */
    }
    if (!a->last) {
      for (int i = 0; i < mr; i++)
        for (int l = 0; l < NR; l++) a->state[pp][i * NR + l] = acc[i][l];
      continue;
    }
    for (int i = 0; i < mr; i++)
      for (int l = 0; l < a->ncols[pp]; l++) {
        float y = acc[i][l];
        if (a->bias[pp]) y = y + a->bias[pp][l];
        if (a->yf[pp]) a->yf[pp][i * a->ldy + l] = y;
        else a->yh[pp][i * a->ldy + l] = resq_f32_to_f16(y);
      }
  }
}

#if RESQ_CPU_X86
RESQ_AVX512_BEGIN

static inline __attribute__((always_inline)) void fk_avx512_t(const fk_args *a, const int MR, const int NP) {
  __m512 c[NPAN_MAX][MR_MAX][2];
  _Pragma("GCC unroll 4") for (int pp = 0; pp < NP; pp++) {
    _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++) {
      if (a->first) {
        c[pp][i][0] = _mm512_setzero_ps();
        c[pp][i][1] = _mm512_setzero_ps();
      } else {
        c[pp][i][0] = _mm512_loadu_ps(a->state[pp] + i * NR);
        c[pp][i][1] = _mm512_loadu_ps(a->state[pp] + i * NR + 16);
      }
    }
  }
  const uint16_t *wp[NPAN_MAX];
  _Pragma("GCC unroll 4") for (int pp = 0; pp < NP; pp++) wp[pp] = a->W[pp];
  const float *ap = a->A;
  const int64_t lda = a->lda;
  for (int64_t k = 0; k < a->nk; k++, ap++) {
    __m512 w[NPAN_MAX][2];
    _Pragma("GCC unroll 4") for (int pp = 0; pp < NP; pp++) {
      w[pp][0] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)wp[pp]));
      w[pp][1] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wp[pp] + 16)));
      wp[pp] += NR;
    }
    _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++) {
      const __m512 b = _mm512_set1_ps(ap[i * lda]);
      /* fma(b, w, c) = RN(c + b*w) because b*w is exact (fp16 x fp16) */
      _Pragma("GCC unroll 4") for (int pp = 0; pp < NP; pp++) {
        c[pp][i][0] = _mm512_fmadd_ps(b, w[pp][0], c[pp][i][0]);
        c[pp][i][1] = _mm512_fmadd_ps(b, w[pp][1], c[pp][i][1]);
      }
    }
  }
  _Pragma("GCC unroll 4") for (int pp = 0; pp < NP; pp++) {
    if (!a->last) {
      _Pragma("GCC unroll 12") for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(a->state[pp] + i * NR, c[pp][i][0]);
        _mm512_storeu_ps(a->state[pp] + i * NR + 16, c[pp][i][1]);
      }
      continue;
    }
    const int nc = a->ncols[pp];
    const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
    const __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xffff : nc <= 16 ? 0 : (1u << (nc - 16)) - 1);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (a->bias[pp]) {
      b0 = _mm512_maskz_loadu_ps(m0, a->bias[pp]);
      b1 = _mm512_maskz_loadu_ps(m1, a->bias[pp] + 16);
    }
    for (int i = 0; i < MR; i++) {
      __m512 y0 = c[pp][i][0], y1 = c[pp][i][1];
      if (a->bias[pp]) {
        y0 = _mm512_add_ps(y0, b0);
        y1 = _mm512_add_ps(y1, b1);
      }
      if (a->yf[pp]) {
        _mm512_mask_storeu_ps(a->yf[pp] + i * a->ldy, m0, y0);
        _mm512_mask_storeu_ps(a->yf[pp] + i * a->ldy + 16, m1, y1);
      } else {
        _mm256_mask_storeu_epi16(a->yh[pp] + i * a->ldy, m0, _mm512_cvtps_ph(y0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm256_mask_storeu_epi16(a->yh[pp] + i * a->ldy + 16, m1,
                                 _mm512_cvtps_ph(y1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    }
  }
}

static void fk_avx512(const fk_args *a) {
  if (a->npan == 4) {
    switch (a->mr) {
      case 1: fk_avx512_t(a, 1, 4); return;
      case 2: fk_avx512_t(a, 2, 4); return;
      case 3: fk_avx512_t(a, 3, 4); return;
      default: break;
    }
  }
  if (a->npan == 2) {
    switch (a->mr) {
      case 1: fk_avx512_t(a, 1, 2); return;
      case 2: fk_avx512_t(a, 2, 2); return;
      case 3: fk_avx512_t(a, 3, 2); return;
      case 4: fk_avx512_t(a, 4, 2); return;
      case 5: fk_avx512_t(a, 5, 2); return;
      case 6: fk_avx512_t(a, 6, 2); return;
      default: break;
    }
  }
  fk_args b = *a;
  for (int pp = 0; pp < a->npan; pp++) {
    b.npan = 1;
    b.W[0] = a->W[pp], b.state[0] = a->state[pp], b.bias[0] = a->bias[pp], b.yf[0] = a->yf[pp], b.yh[0] = a->yh[pp];
    b.ncols[0] = a->ncols[pp];
    switch (a->mr) {
      case 1: fk_avx512_t(&b, 1, 1); break;
      case 2: fk_avx512_t(&b, 2, 1); break;
      case 3: fk_avx512_t(&b, 3, 1); break;
      case 4: fk_avx512_t(&b, 4, 1); break;
      case 5: fk_avx512_t(&b, 5, 1); break;
      case 6: fk_avx512_t(&b, 6, 1); break;
      case 7: fk_avx512_t(&b, 7, 1); break;
      case 8: fk_avx512_t(&b, 8, 1); break;
      case 9: fk_avx512_t(&b, 9, 1); break;
      case 10: fk_avx512_t(&b, 10, 1); break;
      case 11: fk_avx512_t(&b, 11, 1); break;
      default: fk_avx512_t(&b, 12, 1); break;
    }
  }
}

/* f16 -> fp32 of n values (vcvtph2ps: exact) */
static void cvt_row_avx512(const uint16_t *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
  for (; i < n; i++) y[i] = resq_f16_to_f32(x[i]);
}

RESQ_AVX512_END
#endif

/* ------------------------------------------------------------------ AVX2 + FMA kernel
 * The same FMA chains on 8-wide vectors: 32 outputs of a panel are 4 ymm per
 * row, rows taken two at a time (8 accumulators, 4 converted weight vectors,
 * a broadcast: 13 of the 16 ymm registers); the panel's K block (16 KiB) is
 * read from L1 again for the next pair of rows. */
#if RESQ_CPU_X86
RESQ_AVX2_BEGIN

static inline __attribute__((always_inline)) void fk_avx2_rows(const fk_args *a, int pp, int i0, const int R) {
  __m256 c[2][4];
  _Pragma("GCC unroll 2") for (int i = 0; i < R; i++)
    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
      c[i][q] = a->first ? _mm256_setzero_ps() : _mm256_loadu_ps(a->state[pp] + (i0 + i) * NR + 8 * q);
  const uint16_t *wp = a->W[pp];
  const float *ap = a->A + i0 * a->lda;
  const int64_t lda = a->lda;
  for (int64_t k = 0; k < a->nk; k++, ap++, wp += NR) {
    __m256 w[4];
    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
      w[q] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(wp + 8 * q)));
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) {
      const __m256 b = _mm256_set1_ps(ap[i * lda]);
      /* fma(b, w, c) = RN(c + b*w) because b*w is exact (fp16 x fp16) */
      _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) c[i][q] = _mm256_fmadd_ps(b, w[q], c[i][q]);
    }
  }
  _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) {
    if (!a->last) {
      _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) _mm256_storeu_ps(a->state[pp] + (i0 + i) * NR + 8 * q, c[i][q]);
      continue;
    }
    const int nc = a->ncols[pp];
    float *yf = a->yf[pp] ? a->yf[pp] + (i0 + i) * a->ldy : NULL;
    uint16_t *yh = a->yh[pp] ? a->yh[pp] + (i0 + i) * a->ldy : NULL;
    float tmp[NR] __attribute__((aligned(32)));
    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
      __m256 y = c[i][q];
      if (a->bias[pp] && 8 * q + 8 <= nc) y = _mm256_add_ps(y, _mm256_loadu_ps(a->bias[pp] + 8 * q));
      if (8 * q + 8 <= nc) {
        if (yf) _mm256_storeu_ps(yf + 8 * q, y);
        else _mm_storeu_si128((__m128i *)(void *)(yh + 8 * q), _mm256_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      } else {
        _mm256_store_ps(tmp + 8 * q, y);
      }
    }
    for (int l = nc / 8 * 8; l < nc; l++) { /* a partial last panel, one lane at a time (same F16C rounding) */
      float y = tmp[l];
      if (a->bias[pp]) y = y + a->bias[pp][l];
      if (yf) yf[l] = y;
      else yh[l] = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(y), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), 0);
    }
  }
}

static void fk_avx2(const fk_args *a) {
  for (int pp = 0; pp < a->npan; pp++) {
    int i = 0;
    for (; i + 2 <= a->mr; i += 2) fk_avx2_rows(a, pp, i, 2);
    if (i < a->mr) fk_avx2_rows(a, pp, i, 1);
  }
}

static void cvt_row_avx2(const uint16_t *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i))));
  for (; i < n; i++) y[i] = resq_f16_to_f32(x[i]);
}

RESQ_AVX2_END
#endif

/* ------------------------------------------------------------------ driver */

typedef struct fplan {
  int64_t M, N, K, ldx, ldy;
  const uint16_t *x;
  const uint16_t *W; /* panels */
  int64_t npanels, ntiles, tq, trem;
  const float *bias;
  float *yf;
  uint16_t *yh;
  float *scratch; /* per thread: a_elems + state_elems floats */
  size_t a_elems, state_elems;
  int decode, avx512, avx2;
  fk_fn fk;
} fplan;

static int64_t tile_m0(const fplan *P, int64_t t) { return t * P->tq + (t < P->trem ? t : P->trem); }
static int tile_mr(const fplan *P, int64_t t) { return (int)(P->tq + (t < P->trem ? 1 : 0)); }

/* columns [k0, k1) of rows m0..m0+mr-1 as fp32 rows of stride lda (exact conversion) */
static void pack_a(const fplan *P, int64_t m0, int mr, int64_t k0, int64_t k1, float *dst, int64_t lda) {
  const int64_t nk = k1 - k0;
  for (int i = 0; i < mr; i++) {
    const uint16_t *src = P->x + (m0 + i) * P->ldx + k0;
    float *row = dst + i * lda;
#if RESQ_CPU_X86
    if (P->avx512) cvt_row_avx512(src, row, nk);
    else if (P->avx2) cvt_row_avx2(src, row, nk);
    else
#endif
      for (int64_t k = 0; k < nk; k++) row[k] = resq_f16_to_f32(src[k]);
  }
}

static void fill_out(const fplan *P, fk_args *a, int slot, int64_t p, int64_t m0) {
  const int64_t c0 = p * NR;
  a->W[slot] = P->W + (size_t)p * (size_t)P->K * NR;
  a->bias[slot] = P->bias ? P->bias + c0 : NULL;
  a->yf[slot] = P->yf ? P->yf + m0 * P->ldy + c0 : NULL;
  a->yh[slot] = P->yh ? P->yh + m0 * P->ldy + c0 : NULL;
  a->ncols[slot] = (int)(P->N - c0 < NR ? P->N - c0 : NR);
}

static void task_f16(void *arg, int tid, int nt) {
  const fplan *P = (const fplan *)arg;
  int64_t p0, p1;
  resq_cpu_range(P->npanels, tid, nt, &p0, &p1);
  if (p1 <= p0) return;
  float *Ab = P->scratch + (size_t)tid * (P->a_elems + P->state_elems);
  float *St = Ab + P->a_elems;
  fk_args a;
  memset(&a, 0, sizeof a);
  a.ldy = P->ldy;
  if (P->decode) { /* <= 2 tiles: A packed once, whole K, up to four panels at a time */
    for (int64_t t = 0; t < P->ntiles; t++) pack_a(P, tile_m0(P, t), tile_mr(P, t), 0, P->K, Ab + tile_m0(P, t) * P->K, P->K);
    a.first = a.last = 1;
    a.nk = P->K;
    a.lda = P->K;
    for (int64_t p = p0; p < p1; p += a.npan) {
      a.npan = p + 4 <= p1 ? 4 : p + 2 <= p1 ? 2 : 1;
      for (int64_t t = 0; t < P->ntiles; t++) {
        const int64_t m0 = tile_m0(P, t);
        a.mr = tile_mr(P, t);
        a.A = Ab + m0 * P->K;
        for (int s = 0; s < a.npan; s++) fill_out(P, &a, s, p + s, m0);
        P->fk(&a);
      }
    }
    return;
  }
  a.npan = 1;
  for (int64_t pb = p0; pb < p1; pb += NCP) {
    const int64_t pe = pb + NCP < p1 ? pb + NCP : p1;
    for (int64_t tb = 0; tb < P->ntiles; tb += MCT) {
      const int64_t te = tb + MCT < P->ntiles ? tb + MCT : P->ntiles;
      for (int64_t k0 = 0; k0 < P->K || k0 == 0; k0 += KC) {
        const int64_t k1 = k0 + KC < P->K ? k0 + KC : P->K;
        for (int64_t t = tb; t < te; t++)
          pack_a(P, tile_m0(P, t), tile_mr(P, t), k0, k1, Ab + (t - tb) * MR_MAX * KC, KC);
        a.first = k0 == 0;
        a.last = k1 == P->K;
        a.nk = k1 - k0;
        a.lda = KC;
        for (int64_t p = pb; p < pe; p++)
          for (int64_t t = tb; t < te; t++) {
            const int64_t m0 = tile_m0(P, t);
            a.mr = tile_mr(P, t);
            a.A = Ab + (t - tb) * MR_MAX * KC;
            fill_out(P, &a, 0, p, m0);
            a.W[0] += (size_t)k0 * NR;
            a.state[0] = St + ((t - tb) * NCP + (p - pb)) * MR_MAX * NR;
            P->fk(&a);
          }
        if (P->K == 0) break;
      }
    }
  }
}

static resq_status gemm_f16_cpu(int64_t M, const uint16_t *x, int64_t ldx, const resq_wf16_cpu *w, const float *bias,
                                float *yf, uint16_t *yh, int64_t ldy) {
  if (M < 0 || !w) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 (cpu): bad M or NULL weight");
  if (w->magic != RESQ_WF16_CPU_MAGIC || !w->data)
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16 (cpu): the weight is not packed by resq_gemm_f16_pack_weight__cpu");
  const int64_t N = w->N, K = w->K;
  if (M > 0 && N > 0 && ((K > 0 && !x) || (!yf && !yh))) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16: NULL argument");
  if ((M > 1 && ldx < K) || (M > 1 && ldy < N))
    return resq_fail(RESQ_ERR_INVALID_ARG, "gemm f16: leading dimension too small");
  if (bias)
    for (int64_t n = 0; n < N; n++)
      if (!isfinite(bias[n])) return resq_fail(RESQ_ERR_NONFINITE, "gemm f16: bias[%lld] is NaN or Inf", (long long)n);
  if (M == 0 || N == 0) return RESQ_OK;
  fplan P;
  memset(&P, 0, sizeof P);
  P.M = M, P.N = N, P.K = K, P.ldx = ldx, P.ldy = ldy, P.x = x, P.W = (const uint16_t *)w->data;
  P.npanels = w->npanels;
  P.ntiles = (M + MR_MAX - 1) / MR_MAX;
  P.tq = M / P.ntiles;
  P.trem = M % P.ntiles;
  P.bias = bias, P.yf = yf, P.yh = yh;
  P.decode = P.ntiles <= 2;
#if RESQ_CPU_X86
  P.avx512 = resq_cpu_avx512_active();
  P.avx2 = resq_cpu_active_isa() == RESQ_CPU_ISA_AVX2;
  P.fk = P.avx512 ? fk_avx512 : P.avx2 ? fk_avx2 : fk_generic;
#else
  P.fk = fk_generic;
#endif
  const int nt_max = resq_cpu_get_threads();
  int nt = nt_max;
  if (P.npanels < nt) nt = (int)P.npanels;
  P.a_elems = P.decode ? (size_t)M * (size_t)(K > 0 ? K : 1) : (size_t)MCT * MR_MAX * KC;
  P.state_elems = P.decode ? 0 : (size_t)MCT * NCP * MR_MAX * NR;
  const size_t per = P.a_elems + P.state_elems;
  resq_cpu_lock();
  P.scratch = (float *)resq_cpu_workspace(2, (size_t)nt_max * per * sizeof(float));
  if (!P.scratch) {
    resq_cpu_unlock();
    return resq_fail(RESQ_ERR_NOMEM, "gemm f16 (cpu): out of memory (workspace)");
  }
  resq_cpu_parallel(task_f16, &P, nt);
  resq_cpu_unlock();
  return RESQ_OK;
}

resq_status resq_gemm_f16__cpu(int64_t M, const uint16_t *x, int64_t ldx, const resq_wf16_cpu *w, const float *bias,
                               uint16_t *y, int64_t ldy) {
  return gemm_f16_cpu(M, x, ldx, w, bias, NULL, y, ldy);
}

resq_status resq_gemm_f16_f32__cpu(int64_t M, const uint16_t *x, int64_t ldx, const resq_wf16_cpu *w,
                                   const float *bias, float *y, int64_t ldy) {
  return gemm_f16_cpu(M, x, ldx, w, bias, y, NULL, ldy);
}
