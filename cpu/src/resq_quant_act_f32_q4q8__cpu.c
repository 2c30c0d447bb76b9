/* SPDX-License-Identifier: Apache-2.0
 * CPU activation quantizer, path A (ref/CONTRACT.md section 3), bit-identical
 * to resq_quant_act_{f32,f16}_q4q8__ref, and the fused Hadamard + quantizer of
 * the down_proj input.
 *
 * Per row: pass 1 finds min/max of every part of every group (vminps/vmaxps
 * against 0, exact) and the scalar parameters in the reference's order
 * (s = (mx - mn) / maxq, z = rint(-mn / s)); pass 2 computes every code as
 * clamp(rint(x / s) + z, 0, maxq) with an IEEE division (vdivps), vrndscaleps
 * round-to-nearest-even, an fp32 add and the clamp, then packs the lo codes two
 * per byte (vpmovqb of c_even | c_odd << 4) and the hi codes one per byte.
 * Rows are split across the threads. */
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
}

/* The reference's scalar parameter step. Returns 0 when s is degenerate. */
static int params(float mn, float mx, float clip, int bits, float *s, float *z, quant_fail *f) {
  float maxq = (float)((1 << bits) - 1);
  mn = mn * clip;
  mx = mx * clip;
  if (mn == 0.0f && mx == 0.0f) {
    mn = -1.0f;
    mx = 1.0f;
  }
  *s = (mx - mn) / maxq;
  if (!(*s > 0.0f) || !isfinite(*s)) {
    f->mn = mn;
    f->mx = mx;
    f->s = *s;
    return 0;
  }
  *z = nearbyintf(-mn / *s);
  return 1;
}

/* ------------------------------------------------------------------ portable part functions */

static float ld(const float *x32, const uint16_t *x16, int64_t i) { return x32 ? x32[i] : resq_f16_to_f32(x16[i]); }

static void minmax_generic(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float *pmn, float *pmx) {
  float mn = 0.0f, mx = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    float v = ld(x32, x16, c0 + i);
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  *pmn = mn;
  *pmx = mx;
}

static int code_generic(float v, float s, float z, float maxq) {
  float c = nearbyintf(v / s) + z;
  if (c < 0.0f) c = 0.0f;
  if (c > maxq) c = maxq;
  return (int)c;
}

static void codes_lo_generic(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float s, float z, int bits,
                             uint8_t *dst, const char *pf) {
  (void)pf;
  float maxq = (float)((1 << bits) - 1);
  memset(dst, 0, (size_t)((n + 1) / 2));
  for (int64_t i = 0; i < n; i++) {
    int c = code_generic(ld(x32, x16, c0 + i), s, z, maxq);
    dst[i / 2] |= (uint8_t)(i % 2 == 0 ? c : c << 4);
  }
}

static void codes_hi_generic(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float s, float z, int bits,
                             uint8_t *dst, const char *pf) {
  (void)pf;
  float maxq = (float)((1 << bits) - 1);
  for (int64_t i = 0; i < n; i++) dst[i] = (uint8_t)code_generic(ld(x32, x16, c0 + i), s, z, maxq);
}

/* ------------------------------------------------------------------ AVX-512 part functions */
#if RESQ_CPU_X86
RESQ_AVX512_BEGIN

static inline __attribute__((always_inline)) __m512 load16(const float *x32, const uint16_t *x16, int64_t i,
                                                           __mmask16 k) {
  if (x32) return _mm512_maskz_loadu_ps(k, x32 + i);
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, x16 + i));
}

static inline __attribute__((always_inline)) __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

static void minmax_avx512(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float *pmn, float *pmx) {
  /* vminps(v, mn) = v < mn ? v : mn, the reference's update; masked-off lanes load 0 (neutral: the range includes 0) */
  __m512 mn0 = _mm512_setzero_ps(), mx0 = mn0, mn1 = mn0, mx1 = mn0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 a = load16(x32, x16, c0 + i, 0xffff), b = load16(x32, x16, c0 + i + 16, 0xffff);
    mn0 = _mm512_min_ps(a, mn0);
    mx0 = _mm512_max_ps(a, mx0);
    mn1 = _mm512_min_ps(b, mn1);
    mx1 = _mm512_max_ps(b, mx1);
  }
  for (; i < n; i += 16) {
    __m512 a = load16(x32, x16, c0 + i, tail_mask(n - i));
    mn0 = _mm512_min_ps(a, mn0);
    mx0 = _mm512_max_ps(a, mx0);
  }
  *pmn = _mm512_reduce_min_ps(_mm512_min_ps(mn0, mn1));
  *pmx = _mm512_reduce_max_ps(_mm512_max_ps(mx0, mx1));
}

static inline __attribute__((always_inline)) __m512i codes16(__m512 v, __m512 vs, __m512 vz, __m512 vmax) {
  __m512 q = _mm512_roundscale_ps(_mm512_div_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 c = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, vz), _mm512_setzero_ps()), vmax);
  return _mm512_cvtps_epi32(c); /* integer valued: exact */
}

static void codes_lo_avx512(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float s, float z, int bits,
                            uint8_t *dst, const char *pf) {
  const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(z), vmax = _mm512_set1_ps((float)((1 << bits) - 1));
  const int64_t esz = x32 ? 4 : 2;
  for (int64_t i = 0; i < n; i += 16) {
    if (pf) _mm_prefetch(pf + (c0 + i) * esz, _MM_HINT_T1);
    int64_t left = n - i;
    __mmask16 k = tail_mask(left);
    __m512i c = _mm512_maskz_mov_epi32(k, codes16(load16(x32, x16, c0 + i, k), vs, vz, vmax));
    /* qword j = (c_2j, c_2j+1): low byte of c_2j | c_2j+1 << 4 */
    __m128i b = _mm512_cvtepi64_epi8(_mm512_or_si512(c, _mm512_srli_epi64(c, 28)));
    int64_t nb = left >= 16 ? 8 : (left + 1) / 2;
    if (nb == 8) _mm_storel_epi64((__m128i *)(dst + i / 2), b);
    else _mm_mask_storeu_epi8(dst + i / 2, (__mmask16)((1u << nb) - 1), b);
  }
}

static void codes_hi_avx512(const float *x32, const uint16_t *x16, int64_t c0, int64_t n, float s, float z, int bits,
                            uint8_t *dst, const char *pf) {
  const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(z), vmax = _mm512_set1_ps((float)((1 << bits) - 1));
  const int64_t esz = x32 ? 4 : 2;
  for (int64_t i = 0; i < n; i += 16) {
    if (pf) _mm_prefetch(pf + (c0 + i) * esz, _MM_HINT_T1);
    __mmask16 k = tail_mask(n - i);
    __m128i b = _mm512_cvtepi32_epi8(codes16(load16(x32, x16, c0 + i, k), vs, vz, vmax));
    _mm_mask_storeu_epi8(dst + i, k, b);
  }
}

RESQ_AVX512_END
#endif

/* ------------------------------------------------------------------ one row */

int resq_cpu_quant_row(const quant_plan *qp, const float *x32, const uint16_t *x16, int64_t m, const resq_qact *out,
                       float *sc, quant_fail *fail, const void *next) {
  const int64_t G = qp->ngroups, lpg = qp->lpg, r = qp->r;
  void (*minmax)(const float *, const uint16_t *, int64_t, int64_t, float *, float *) = minmax_generic;
  void (*codes_lo)(const float *, const uint16_t *, int64_t, int64_t, float, float, int, uint8_t *, const char *) =
      codes_lo_generic;
  void (*codes_hi)(const float *, const uint16_t *, int64_t, int64_t, float, float, int, uint8_t *, const char *) =
      codes_hi_generic;
  const char *pf = (const char *)next;
#if RESQ_CPU_X86
  if (qp->avx512) {
    minmax = minmax_avx512;
    codes_lo = codes_lo_avx512;
    codes_hi = codes_hi_avx512;
  }
#endif
  /* pass 1: every scale of the row before anything is written */
  for (int64_t g = 0; g < G; g++) {
    int64_t c0 = g * qp->group;
    float mn, mx;
    if (lpg > 0) {
      minmax(x32, x16, c0, lpg, &mn, &mx);
      if (!params(mn, mx, qp->clip, qp->bits_lo, &sc[4 * g], &sc[4 * g + 1], fail)) {
        fail->row = m;
        fail->c0 = c0;
        fail->c1 = c0 + lpg;
        return 1;
      }
    }
    if (r > 0) {
      minmax(x32, x16, c0 + lpg, r, &mn, &mx);
      if (!params(mn, mx, qp->clip, qp->bits_hi, &sc[4 * g + 2], &sc[4 * g + 3], fail)) {
        fail->row = m;
        fail->c0 = c0 + lpg;
        fail->c1 = c0 + qp->group;
        return 1;
      }
    }
  }
  /* pass 2: codes, scales, zeros */
  for (int64_t g = 0; g < G; g++) {
    int64_t c0 = g * qp->group;
    if (lpg > 0) {
      codes_lo(x32, x16, c0, lpg, sc[4 * g], sc[4 * g + 1], qp->bits_lo, out->q_lo + m * out->ld_lo + g * qp->lo_bpg,
               pf);
      out->scale_lo[m * G + g] = sc[4 * g];
      out->zero_lo[m * G + g] = (int32_t)sc[4 * g + 1];
    }
    if (r > 0) {
      codes_hi(x32, x16, c0 + lpg, r, sc[4 * g + 2], sc[4 * g + 3], qp->bits_hi, out->q_hi + m * out->ld_hi + g * r, pf);
      out->scale_hi[m * G + g] = sc[4 * g + 2];
      out->zero_hi[m * G + g] = (int32_t)sc[4 * g + 3];
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
  int failed[64];
  quant_fail fail[64];
} quant_job;

static void quant_task(void *arg, int tid, int nt) {
  quant_job *J = (quant_job *)arg;
  int64_t b, e;
  resq_cpu_range(J->M, tid, nt, &b, &e);
  float *sc = J->scratch + (size_t)tid * (size_t)J->stride;
  float *t = sc + (J->qp.ngroups * 4 + 15) / 16 * 16, *nu = t + J->n_al, *h = nu + J->n_al;
  J->failed[tid] = 0;
  for (int64_t m = b; m < e; m++) {
    const float *x32 = J->x32 ? J->x32 + m * J->ldx : NULL;
    const uint16_t *x16 = J->x16 ? J->x16 + m * J->ldx : NULL;
    if (J->fused) {
      int ovf = 0;
      /* the next input row is prefetched only when the input does not fit in L2 (as in the Hadamard) */
      resq_cpu_had_row(&J->hp, NULL, x16, h, NULL, t, nu, &ovf,
                       J->M * J->qp.K * 2 >= (1 << 20) && m + 1 < e ? (const void *)(x16 + J->ldx) : NULL);
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
    if (signs)
      for (int64_t i = 0; i < p->K; i++)
        if (signs[i] != 1 && signs[i] != -1)
          return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: signs[%lld] = %d (must be +1 or -1)", (long long)i, signs[i]);
  }
  if (M == 0) return RESQ_OK;
  const int avx = resq_cpu_active_isa() == RESQ_CPU_ISA_AVX512;
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
  J.stride = (L.ngroups * 4 + 15) / 16 * 16 + (fused ? 3 * J.n_al : 0);
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
