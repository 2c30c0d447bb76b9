/* SPDX-License-Identifier: Apache-2.0
 * The decoder-layer ops of the CPU backend, bit-identical to the reference's
 * (ref/CONTRACT.md section 14; see cpu_layer.h).
 *
 * How the reference's sequences are kept while running wide:
 *  - RMSNorm: the double sum of squares of a row is one sequential chain (as
 *    the reference); rows run on the pool; the scaling is elementwise fp32.
 *  - attention scores s_j = sum_i q_i k_j[i] in double, i ascending: the keys
 *    of a KV head are transposed once to double kT[i][j] (exact), and the
 *    lanes of a vector are different keys j, each lane adding i in ascending
 *    order (the products of two floats are exact in double, so a compiler
 *    FMA could not change them either; -ffp-contract=off keeps mul + add);
 *    four query rows share each kT row. exp is libm's, called in the
 *    reference's order; z is the sequential sum. The output accumulators
 *    acc[i] += p_j v_j[i] run j ascending with the lanes over i (this product
 *    is NOT exact in double: mul then add, never FMA). Heads run on the pool.
 *  - the K8 product: lanes over the output column j, i ascending (exact
 *    products of floats in double), rows on the pool.
 * The loops are plain C compiled twice: for the baseline ISA and, in the
 * AVX-512 target region, for the AVX-512 path (the same operations in the
 * same order, so both give the reference's bits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_layer.h"
#include "resq/dtype.h"

/* ------------------------------------------------------------------ bodies (ISA-independent C) */

#define QB 4 /* query rows per attention block */

typedef struct att_job {
  int64_t T, H, G, hd, rep, Tp; /* Tp: T rounded up to 8 */
  const float *q, *k, *v;
  float *o;
  double scale;
  char *scratch;
  size_t per; /* bytes of scratch per thread */
} att_job;

static inline __attribute__((always_inline)) void att_head_body(const att_job *J, int64_t h, double *kT, double *s,
                                                                double *acc) {
  const int64_t T = J->T, H = J->H, G = J->G, hd = J->hd, Tp = J->Tp, g = h / J->rep;
  for (int64_t t0 = 0; t0 < T; t0 += QB) {
    const int64_t nq = T - t0 < QB ? T - t0 : QB, jn = t0 + nq; /* keys 0 .. jn-1 */
    double *sr[QB];
    for (int64_t r = 0; r < QB; r++) sr[r] = s + r * Tp;
    for (int64_t r = 0; r < nq; r++)
      for (int64_t j = 0; j < jn; j++) sr[r][j] = 0.0;
    for (int64_t i = 0; i < hd; i++) {
      const double *kr = kT + i * Tp;
      for (int64_t r = 0; r < nq; r++) {
        const double qi = (double)J->q[(t0 + r) * H * hd + h * hd + i];
        double *sv = sr[r];
        for (int64_t j = 0; j < jn; j++) sv[j] = sv[j] + qi * kr[j];
      }
    }
    for (int64_t r = 0; r < nq; r++) {
      const int64_t t = t0 + r;
      double *p = sr[r];
      double mx = -INFINITY;
      for (int64_t j = 0; j <= t; j++) {
        p[j] = p[j] * J->scale;
        if (p[j] > mx) mx = p[j];
      }
      double z = 0.0;
      for (int64_t j = 0; j <= t; j++) z += (p[j] = exp(p[j] - mx));
      double *a = acc + r * hd;
      for (int64_t i = 0; i < hd; i++) a[i] = 0.0;
      for (int64_t j = 0; j <= t; j++) {
        const float *vj = J->v + j * G * hd + g * hd;
        const double pj = p[j];
        for (int64_t i = 0; i < hd; i++) a[i] = a[i] + pj * (double)vj[i];
      }
      float *ot = J->o + t * H * hd + h * hd;
      for (int64_t i = 0; i < hd; i++) ot[i] = (float)(a[i] / z);
    }
  }
}

static inline __attribute__((always_inline)) void att_task_body(void *arg, int tid, int nt) {
  const att_job *J = (const att_job *)arg;
  int64_t h0, h1;
  resq_cpu_range(J->H, tid, nt, &h0, &h1);
  char *base = J->scratch + (size_t)tid * J->per;
  double *kT = (double *)base, *s = kT + J->hd * J->Tp, *acc = s + QB * J->Tp;
  int64_t cur_g = -1;
  for (int64_t h = h0; h < h1; h++) {
    const int64_t g = h / J->rep;
    if (g != cur_g) { /* transpose the keys of KV head g to double */
      for (int64_t j = 0; j < J->T; j++)
        for (int64_t i = 0; i < J->hd; i++) kT[i * J->Tp + j] = (double)J->k[j * J->G * J->hd + g * J->hd + i];
      cur_g = g;
    }
    att_head_body(J, h, kT, s, acc);
  }
}

typedef struct k8_job {
  int64_t rows, hd;
  const float *in;
  float *out;
  const double *k8d; /* [hd][hd] */
  double *acc;       /* per thread: hd doubles */
} k8_job;

static inline __attribute__((always_inline)) void k8_task_body(void *arg, int tid, int nt) {
  const k8_job *J = (const k8_job *)arg;
  int64_t r0, r1;
  resq_cpu_range(J->rows, tid, nt, &r0, &r1);
  const int64_t hd = J->hd;
  double *acc = J->acc + (size_t)tid * (size_t)hd;
  for (int64_t row = r0; row < r1; row++) {
    const float *x = J->in + row * hd;
    for (int64_t j = 0; j < hd; j++) acc[j] = 0.0;
    for (int64_t i = 0; i < hd; i++) {
      const double xi = (double)x[i];
      const double *kr = J->k8d + i * hd;
      for (int64_t j = 0; j < hd; j++) acc[j] = acc[j] + xi * kr[j];
    }
    float *y = J->out + row * hd;
    for (int64_t j = 0; j < hd; j++) y[j] = (float)acc[j];
  }
}

typedef struct rms_job {
  int64_t T, d;
  const float *x, *gamma;
  float eps;
  float *y;
} rms_job;

static inline __attribute__((always_inline)) void rms_task_body(void *arg, int tid, int nt) {
  const rms_job *J = (const rms_job *)arg;
  int64_t t0, t1;
  resq_cpu_range(J->T, tid, nt, &t0, &t1);
  const int64_t d = J->d;
  for (int64_t t = t0; t < t1; t++) {
    const float *x = J->x + t * d;
    double ss = 0.0;
    for (int64_t i = 0; i < d; i++) ss += (double)x[i] * x[i];
    const float ms = (float)(ss / (double)d);
    const float rinv = 1.0f / sqrtf(ms + J->eps);
    float *y = J->y + t * d;
    if (J->gamma)
      for (int64_t i = 0; i < d; i++) y[i] = (x[i] * rinv) * J->gamma[i];
    else
      for (int64_t i = 0; i < d; i++) y[i] = x[i] * rinv;
  }
}

/* the two compilations */
static void att_task_generic(void *arg, int tid, int nt) { att_task_body(arg, tid, nt); }
static void k8_task_generic(void *arg, int tid, int nt) { k8_task_body(arg, tid, nt); }
static void rms_task_generic(void *arg, int tid, int nt) { rms_task_body(arg, tid, nt); }
#if RESQ_CPU_X86
RESQ_AVX512_BEGIN
static void att_task_avx512(void *arg, int tid, int nt) { att_task_body(arg, tid, nt); }
static void k8_task_avx512(void *arg, int tid, int nt) { k8_task_body(arg, tid, nt); }
static void rms_task_avx512(void *arg, int tid, int nt) { rms_task_body(arg, tid, nt); }
RESQ_AVX512_END
#endif

static int use_avx512(void) {
#if RESQ_CPU_X86
  return resq_cpu_avx512_active();
#else
  return 0;
#endif
}

/* ------------------------------------------------------------------ entry points */

void resq_cpu_rmsnorm(int64_t T, int64_t d, const float *x, const float *gamma, float eps, float *y) {
  if (T <= 0) return;
  rms_job J = {T, d, x, gamma, eps, y};
  resq_cpu_task fn = rms_task_generic;
#if RESQ_CPU_X86
  if (use_avx512()) fn = rms_task_avx512;
#endif
  resq_cpu_lock();
  resq_cpu_parallel(fn, &J, T < resq_cpu_get_threads() ? (int)T : resq_cpu_get_threads());
  resq_cpu_unlock();
}

resq_status resq_cpu_attention(int64_t T, int64_t H, int64_t G, int64_t hd, const float *q, const float *k,
                               const float *v, float *o) {
  if (T <= 0) return RESQ_OK;
  att_job J;
  memset(&J, 0, sizeof J);
  J.T = T, J.H = H, J.G = G, J.hd = hd, J.rep = H / G, J.Tp = (T + 7) / 8 * 8;
  J.q = q, J.k = k, J.v = v, J.o = o;
  J.scale = 1.0 / sqrt((double)hd);
  J.per = ((size_t)hd * (size_t)J.Tp + QB * (size_t)J.Tp + QB * (size_t)hd) * sizeof(double) + 64;
  J.per = (J.per + 63) / 64 * 64;
  resq_cpu_task fn = att_task_generic;
#if RESQ_CPU_X86
  if (use_avx512()) fn = att_task_avx512;
#endif
  resq_cpu_lock();
  const int nt = H < resq_cpu_get_threads() ? (int)H : resq_cpu_get_threads();
  J.scratch = (char *)resq_cpu_workspace(4, (size_t)nt * J.per);
  if (!J.scratch) {
    resq_cpu_unlock();
    return resq_fail(RESQ_ERR_NOMEM, "attention (cpu): out of memory (%zu bytes of scratch)", (size_t)nt * J.per);
  }
  resq_cpu_parallel(fn, &J, nt);
  resq_cpu_unlock();
  return RESQ_OK;
}

resq_status resq_cpu_rows_k8(int64_t rows, int64_t hd, const float *in, const float *k8, float *out) {
  if (rows <= 0) return RESQ_OK;
  k8_job J = {rows, hd, in, out, NULL, NULL};
  resq_cpu_task fn = k8_task_generic;
#if RESQ_CPU_X86
  if (use_avx512()) fn = k8_task_avx512;
#endif
  resq_cpu_lock();
  const int nt = rows < resq_cpu_get_threads() ? (int)rows : resq_cpu_get_threads();
  double *scr = (double *)resq_cpu_workspace(4, ((size_t)hd * (size_t)hd + (size_t)nt * (size_t)hd) * sizeof(double));
  if (!scr) {
    resq_cpu_unlock();
    return resq_fail(RESQ_ERR_NOMEM, "layer (cpu): out of memory (K8 scratch)");
  }
  for (int64_t i = 0; i < hd * hd; i++) scr[i] = (double)k8[i];
  J.k8d = scr;
  J.acc = scr + hd * hd;
  resq_cpu_parallel(fn, &J, nt);
  resq_cpu_unlock();
  return RESQ_OK;
}

static inline float silu(float g) { return g / (1.0f + expf(-g)); }

void resq_cpu_silu_mul(int64_t n, const uint16_t *g, const uint16_t *u, float *z32, uint16_t *z16) {
  for (int64_t i = 0; i < n; i++) {
    const float z = silu(resq_f16_to_f32(g[i])) * resq_f16_to_f32(u[i]);
    if (z16) z16[i] = resq_f32_to_f16(z);
    else z32[i] = z;
  }
}
