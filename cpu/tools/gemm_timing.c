/* SPDX-License-Identifier: Apache-2.0
 * resq_cpu_gemm_timing -- the CPU mixed GEMM (resq_gemm_q4q8_f16__cpu) and the
 * CPU FP16 GEMM (resq_gemm_f16__cpu, fp16 weights, fp32 FMA) against
 * oneDNN u8 x s8 -> f32 (per-N output scales, no zero points: oneDNN's best
 * int8 case) and oneDNN bf16 x bf16 -> f32, in ONE process, back to back per
 * shape, so that the ratios of a row are measured under the same machine
 * conditions (the host is shared and its DRAM bandwidth moves minute to minute).
 *
 *   resq_cpu_gemm_timing [--passes P] [--reps R] [--cold-mib C] [--M 1,16,256,2048]
 *                        [--shapes N:K,N:K,...] [--peak] [--no-onednn] [--threads T]
 *                        [--cpu-clock] [--best] [--ab VAR=VALUE] [--group G] [--r R]
 * --group G [--r R]: time the grouped split instead (G channels per group, R hi
 * channels at the end of each, default G/8; --group 128 --r 16 is the o_proj
 * input of bench's gemm_q4q8_grouped_f16__cpu); --r alone changes the
 * per-token split's hi width. The oneDNN baselines are the same either way.
 * --ab VAR=VALUE: tuning A/B of the mixed GEMM alone (no FP16, no oneDNN):
 * per pass and shape, 4 rounds of (as the environment is, with VAR=VALUE) in
 * alternating order on the same weight copies; prints the median and range of
 * the per-round time ratios A/B (> 1: VALUE is faster). Paired ratios cancel
 * the host's slow drifts, which on a shared guest move a single timing by
 * 10-30 %. VAR is one of the kernel's RESQ_CPU_* environment knobs, read at
 * every call.
 * --cpu-clock times with the process CPU clock: with --threads 1 (and
 * OMP_NUM_THREADS=1) it measures the kernels' own cycles on a shared host
 * (tuning); the default wall clock is what the ratios use. --best
 * reports the fastest rep instead of the median (tuning only).
 *
 * Method:
 *  - C[M,N] = A[M,K] W[N,K]^T; our split is the per-token ResQ one (group = K,
 *    r = K/8 hi columns, 4/8 bits) unless --group / --r; f16 output, no bias.
 *  - Cold weights: every implementation rotates copies of its weights, one per
 *    call, whose total is >= --cold-mib (default: 2 x the LLC size from sysfs,
 *    at least 256 MiB), so each call reads its weights from DRAM, as a decoder
 *    does with each layer's weights once per token.
 *  - oneDNN weights are logical [K,N] with format_tag_any, reordered once per
 *    copy outside the timed loop; the primitive is created once per shape.
 *  - per (pass, shape, implementation): 2 warm-up calls, then R timed calls
 *    (wall clock per call); the median is the figure. Ratios are per pass and
 *    then the median over passes; spread = (max - min) / median over passes.
 *  - M <= 16: a 2-thread AVX-512 read probe over our weight copies follows the
 *    timing; the weight stream of our kernel (packed bytes / time) is reported
 *    as a fraction of it.
 *  - --peak: instruction-throughput ceilings of vpdpbusd, vdpbf16ps and
 *    vfmadd231ps with 12 independent zmm accumulators per thread.
 * Run it WITHOUT OMP_PROC_BIND / OMP_PLACES: libgomp would pin the main thread
 * to one core, and the resq pool's workers inherit that mask (the tool checks
 * the affinity mask and refuses to time ours on fewer CPUs than threads). */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/rng.h"

#define MAXPASS 16
#define MAXREPS 64

/* --cpu-clock: process CPU time instead of wall time (meaningful with one
 * thread on a shared host: preemption by other processes is not counted) */
static clockid_t g_clock = CLOCK_MONOTONIC;
static double now_s(void) {
  struct timespec t;
  clock_gettime(g_clock, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
/* --best: the fastest rep instead of the median (kernel tuning on a shared host) */
static int g_best = 0;
static double rep_stat(double *v, int n) {
  if (!g_best) return median(v, n);
  double m = v[0];
  for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
  return m;
}

static void *xalloc(size_t n) {
  void *p = aligned_alloc(4096, (n + 4095) / 4096 * 4096);
  if (!p) {
    fprintf(stderr, "gemm_timing: out of memory (%zu bytes)\n", n);
    exit(2);
  }
  return p;
}

static size_t llc_bytes(void) {
  size_t best = 0;
  for (int i = 0; i < 8; i++) {
    char path[128], buf[64];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
    FILE *f = fopen(path, "r");
    if (!f) break;
    if (fgets(buf, sizeof buf, f)) {
      size_t v = (size_t)strtoull(buf, NULL, 10);
      if (strchr(buf, 'K')) v <<= 10;
      if (strchr(buf, 'M')) v <<= 20;
      if (v > best) best = v;
    }
    fclose(f);
  }
  return best;
}

/* ------------------------------------------------------------------ read probe and peaks */

typedef struct {
  void **bufs;
  size_t *sizes;
  int n, tid, nt;
  double sink;
} probe_arg;

__attribute__((target("avx2"))) static void *probe_thread_avx2(void *p) {
  probe_arg *a = (probe_arg *)p;
  __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int b = 0; b < a->n; b++) {
    size_t n64 = a->sizes[b] / 256, q = n64 / (size_t)a->nt, s0 = q * (size_t)a->tid, s1 = s0 + q;
    const __m256i *v = (const __m256i *)a->bufs[b];
    for (size_t i = s0; i < s1; i++)
      for (int j = 0; j < 8; j += 4) {
        acc0 = _mm256_xor_si256(acc0, _mm256_load_si256(v + 8 * i + j));
        acc1 = _mm256_xor_si256(acc1, _mm256_load_si256(v + 8 * i + j + 1));
        acc2 = _mm256_xor_si256(acc2, _mm256_load_si256(v + 8 * i + j + 2));
        acc3 = _mm256_xor_si256(acc3, _mm256_load_si256(v + 8 * i + j + 3));
      }
  }
  acc0 = _mm256_xor_si256(_mm256_xor_si256(acc0, acc1), _mm256_xor_si256(acc2, acc3));
  a->sink = (double)_mm256_extract_epi32(acc0, 0);
  return NULL;
}

__attribute__((target("avx512f"))) static void *probe_thread(void *p) {
  probe_arg *a = (probe_arg *)p;
  __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int b = 0; b < a->n; b++) {
    size_t n64 = a->sizes[b] / 256, q = n64 / (size_t)a->nt, s0 = q * (size_t)a->tid, s1 = s0 + q;
    const __m512i *v = (const __m512i *)a->bufs[b];
    for (size_t i = s0; i < s1; i++) {
      acc0 = _mm512_xor_si512(acc0, _mm512_load_si512(v + 4 * i));
      acc1 = _mm512_xor_si512(acc1, _mm512_load_si512(v + 4 * i + 1));
      acc2 = _mm512_xor_si512(acc2, _mm512_load_si512(v + 4 * i + 2));
      acc3 = _mm512_xor_si512(acc3, _mm512_load_si512(v + 4 * i + 3));
    }
  }
  acc0 = _mm512_xor_si512(_mm512_xor_si512(acc0, acc1), _mm512_xor_si512(acc2, acc3));
  a->sink = (double)_mm512_reduce_add_epi32(acc0);
  return NULL;
}

/* bytes/s of a 2-thread read over the buffers (best of 3) */
static double read_probe(void **bufs, size_t *sizes, int n, int nt) {
  double best = 0;
  size_t total = 0;
  for (int b = 0; b < n; b++) total += sizes[b] / 256 / (size_t)nt * (size_t)nt * 256;
  for (int rep = 0; rep < 3; rep++) {
    pthread_t th[8];
    probe_arg a[8];
    double t0 = now_s();
    for (int t = 0; t < nt; t++) {
      a[t] = (probe_arg){bufs, sizes, n, t, nt, 0};
      /* the probe reads with the widest loads the CPU has (AVX2 on Zen 3) */
      pthread_create(&th[t], NULL, __builtin_cpu_supports("avx512f") ? probe_thread : probe_thread_avx2, &a[t]);
    }
    for (int t = 0; t < nt; t++) pthread_join(th[t], NULL);
    double bw = (double)total / (now_s() - t0);
    if (bw > best) best = bw;
  }
  return best;
}

typedef struct {
  int kind;
  double ops;
} peak_arg;

#define PEAK_ITERS 20000000L
/* 12 independent accumulator chains per thread; the empty asm statements make
 * the inputs and the accumulators opaque, so that the compiler neither folds
 * the loop nor merges the (identical) chains. */
#define PEAK_BODY(T, INIT, OP, RED)                                                               \
  T a0 = INIT, a1 = INIT, a2 = INIT, a3 = INIT, a4 = INIT, a5 = INIT, a6 = INIT, a7 = INIT, a8 = INIT, \
    a9 = INIT, a10 = INIT, a11 = INIT;                                                           \
  for (long it = 0; it < PEAK_ITERS; it++) {                                                     \
    __asm__ volatile("" : "+v"(x), "+v"(y));                                                     \
    a0 = OP(a0, x, y), a1 = OP(a1, x, y), a2 = OP(a2, x, y), a3 = OP(a3, x, y);                  \
    a4 = OP(a4, x, y), a5 = OP(a5, x, y), a6 = OP(a6, x, y), a7 = OP(a7, x, y);                  \
    a8 = OP(a8, x, y), a9 = OP(a9, x, y), a10 = OP(a10, x, y), a11 = OP(a11, x, y);              \
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6),     \
                     "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));                          \
  }                                                                                              \
  return RED(a0) + RED(a1) + RED(a2) + RED(a3) + RED(a4) + RED(a5) + RED(a6) + RED(a7) + RED(a8) + \
         RED(a9) + RED(a10) + RED(a11)

#define DPBUSD(c, x, y) _mm512_dpbusd_epi32(c, x, y)
#define RED_I(c) (double)_mm512_reduce_add_epi32(c)
__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) static double peak_dpbusd(void) {
  __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(2);
  PEAK_BODY(__m512i, _mm512_setzero_si512(), DPBUSD, RED_I);
}
#define DPBF16(c, x, y) _mm512_dpbf16_ps(c, (__m512bh)(x), (__m512bh)(y))
#define FMADD(c, x, y) _mm512_fmadd_ps(x, y, c)
#define RED_F(c) (double)_mm512_reduce_add_ps(c)
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline)) static double peak_dpbf16(void) {
  __m512i x = _mm512_set1_epi16(0x3f80), y = _mm512_set1_epi16(0x3000);
  PEAK_BODY(__m512, _mm512_setzero_ps(), DPBF16, RED_F);
}
__attribute__((target("avx512f"), noinline)) static double peak_fma(void) {
  __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(1e-9f);
  PEAK_BODY(__m512, _mm512_setzero_ps(), FMADD, RED_F);
}

static void *peak_thread(void *p) {
  peak_arg *a = (peak_arg *)p;
  a->ops = a->kind == 0 ? peak_dpbusd() : a->kind == 1 ? peak_dpbf16() : peak_fma();
  return NULL;
}

static void run_peaks(int nt) {
  static const char *names[3] = {"vpdpbusd (u8.s8, 128 int ops/zmm)", "vdpbf16ps (64 flops/zmm)",
                                 "vfmadd231ps (32 flops/zmm)"};
  static const double opz[3] = {128, 64, 32};
  const int have[3] = {__builtin_cpu_supports("avx512vnni"), __builtin_cpu_supports("avx512bf16"),
                       __builtin_cpu_supports("avx512f")};
  for (int k = 0; k < 3; k++)
    for (int t = 1; t <= nt; t *= 2) {
      if (!have[k]) {
        printf("peak %-36s skipped: the CPU lacks %s\n", names[k], k == 0 ? "avx512vnni" : k == 1 ? "avx512bf16" : "avx512f");
        break;
      }
      pthread_t th[8];
      peak_arg a[8];
      double t0 = now_s();
      for (int i = 0; i < t; i++) {
        a[i].kind = k;
        pthread_create(&th[i], NULL, peak_thread, &a[i]);
      }
      for (int i = 0; i < t; i++) pthread_join(th[i], NULL);
      double dt = now_s() - t0, ops = opz[k] * 12.0 * (double)PEAK_ITERS * t;
      printf("peak %-36s %d thread(s): %8.1f G/s\n", names[k], t, ops / dt * 1e-9);
    }
}

/* ------------------------------------------------------------------ ours */

typedef struct {
  resq_qact_params p;
  resq_qweight_cpu *wc;
  void **blocks;
  size_t *sizes;
  int ncopies;
  resq_qact x;
  uint16_t *y;
  int64_t M, N, K;
} ours_t;

static int64_t g_group = 0, g_r = -1; /* --group, --r (0 / -1: the per-token default) */

static void ours_setup(ours_t *o, int64_t M, int64_t N, int64_t K, size_t cold) {
  memset(o, 0, sizeof *o);
  o->M = M, o->N = N, o->K = K;
  o->p = resq_qact_default(K); /* group K, r = K/8, 4/8 bits */
  if (g_group > 0) o->p.group = g_group, o->p.r = g_group / 8;
  if (g_r >= 0) o->p.r = g_r;
  resq_qact_layout L;
  if (resq_gemm_check(&o->p, &L)) {
    fprintf(stderr, "gemm_timing: K=%lld group=%lld r=%lld: %s\n", (long long)K, (long long)o->p.group,
            (long long)o->p.r, resq_last_error());
    exit(2);
  }
  resq_rng r;
  resq_rng_init(&r, 12345);
  int8_t *codes = (int8_t *)xalloc((size_t)(N * K));
  float *sl = (float *)xalloc((size_t)N * 4), *sh = (float *)xalloc((size_t)N * 4);
  /* the GEMM's K order (resq_gemm_pack_weight): all groups' lo columns, then all hi columns */
  const int64_t Klo = L.ngroups * L.lo_per_group;
  for (int64_t n = 0; n < N; n++) {
    for (int64_t k = 0; k < K; k++)
      codes[n * K + k] = (int8_t)(k < Klo ? resq_rng_range(&r, -8, 7) : resq_rng_range(&r, -128, 127));
    sl[n] = 0.01f, sh[n] = 0.001f;
  }
  resq_qweight w = {N, xalloc((size_t)(N * L.lo_bytes)), L.lo_bytes, xalloc((size_t)(N * L.hi_bytes)), L.hi_bytes,
                    xalloc((size_t)N * 4), xalloc((size_t)N * 4), xalloc((size_t)(N * L.ngroups) * 4),
                    xalloc((size_t)(N * L.ngroups) * 4)}; /* sums: [N][ngroups] */
  if (resq_gemm_pack_weight(&o->p, N, codes, K, sl, sh, &w)) {
    fprintf(stderr, "pack: %s\n", resq_last_error());
    exit(2);
  }
  size_t bytes = 0;
  resq_gemm_pack_weight_size__cpu(&o->p, N, &bytes);
  o->ncopies = (int)((cold + bytes - 1) / bytes);
  if (o->ncopies < 2) o->ncopies = 2;
  o->wc = (resq_qweight_cpu *)calloc((size_t)o->ncopies, sizeof *o->wc);
  o->blocks = (void **)calloc((size_t)o->ncopies, sizeof(void *));
  o->sizes = (size_t *)calloc((size_t)o->ncopies, sizeof(size_t));
  for (int i = 0; i < o->ncopies; i++) {
    o->blocks[i] = xalloc(bytes);
    o->sizes[i] = bytes;
    if (i == 0) {
      if (resq_gemm_pack_weight__cpu(&o->p, &w, o->blocks[0], bytes, &o->wc[0])) {
        fprintf(stderr, "cpu pack: %s\n", resq_last_error());
        exit(2);
      }
    } else {
      memcpy(o->blocks[i], o->blocks[0], bytes);
      o->wc[i] = o->wc[0];
      o->wc[i].data = o->blocks[i];
    }
  }
  free(codes), free(sl), free(sh), free(w.q_lo), free(w.q_hi), free(w.scale_lo), free(w.scale_hi), free(w.sum_lo),
      free(w.sum_hi);
  /* activations: quantized random f16 rows (the real quantizer) */
  uint16_t *xf = (uint16_t *)xalloc((size_t)(M * K) * 2);
  for (int64_t i = 0; i < M * K; i++) xf[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
  o->x.q_lo = xalloc((size_t)(M * L.lo_bytes));
  o->x.ld_lo = L.lo_bytes;
  o->x.q_hi = xalloc((size_t)(M * L.hi_bytes));
  o->x.ld_hi = L.hi_bytes;
  const size_t ps = (size_t)(M * L.ngroups) * 4; /* one scale / zero per row and group */
  o->x.scale_lo = xalloc(ps), o->x.scale_hi = xalloc(ps);
  o->x.zero_lo = xalloc(ps), o->x.zero_hi = xalloc(ps);
  if (resq_quant_act_f16_q4q8__cpu(&o->p, M, xf, K, &o->x)) {
    fprintf(stderr, "quant: %s\n", resq_last_error());
    exit(2);
  }
  free(xf);
  o->y = (uint16_t *)xalloc((size_t)(M * N) * 2);
}

static void ours_free(ours_t *o) {
  for (int i = 0; i < o->ncopies; i++) free(o->blocks[i]);
  free(o->blocks), free(o->sizes), free(o->wc), free(o->y);
  free(o->x.q_lo), free(o->x.q_hi), free(o->x.scale_lo), free(o->x.scale_hi), free(o->x.zero_lo), free(o->x.zero_hi);
}

static double ours_time(ours_t *o, int reps, int *copy) {
  double t[MAXREPS] = {0};
  for (int i = -2; i < reps; i++) {
    int c = (*copy)++ % o->ncopies;
    double t0 = now_s();
    resq_status st = resq_gemm_q4q8_f16__cpu(&o->p, o->M, &o->x, &o->wc[c], NULL, o->y, o->N);
    double dt = now_s() - t0;
    if (st) {
      fprintf(stderr, "gemm: %s\n", resq_last_error());
      exit(2);
    }
    if (i >= 0) t[i] = dt;
  }
  return rep_stat(t, reps);
}

/* ------------------------------------------------------------------ ours, FP16 GEMM */

typedef struct {
  resq_wf16_cpu *wc;
  void **blocks;
  int ncopies;
  uint16_t *x, *y;
  int64_t M, N, K;
} f16_t;

static void f16_setup(f16_t *f, int64_t M, int64_t N, int64_t K, size_t cold) {
  memset(f, 0, sizeof *f);
  f->M = M, f->N = N, f->K = K;
  resq_rng r;
  resq_rng_init(&r, 4242);
  uint16_t *w = (uint16_t *)xalloc((size_t)(N * K) * 2);
  for (int64_t i = 0; i < N * K; i++) w[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.02f);
  size_t bytes = 0;
  resq_gemm_f16_pack_weight_size__cpu(N, K, &bytes);
  f->ncopies = (int)((cold + bytes - 1) / bytes);
  if (f->ncopies < 2) f->ncopies = 2;
  f->wc = (resq_wf16_cpu *)calloc((size_t)f->ncopies, sizeof *f->wc);
  f->blocks = (void **)calloc((size_t)f->ncopies, sizeof(void *));
  for (int i = 0; i < f->ncopies; i++) {
    f->blocks[i] = xalloc(bytes);
    if (i == 0) {
      if (resq_gemm_f16_pack_weight__cpu(N, K, w, K, f->blocks[0], bytes, &f->wc[0])) {
        fprintf(stderr, "f16 pack: %s\n", resq_last_error());
        exit(2);
      }
    } else {
      memcpy(f->blocks[i], f->blocks[0], bytes);
      f->wc[i] = f->wc[0];
      f->wc[i].data = f->blocks[i];
    }
  }
  free(w);
  f->x = (uint16_t *)xalloc((size_t)(M * K) * 2);
  for (int64_t i = 0; i < M * K; i++) f->x[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
  f->y = (uint16_t *)xalloc((size_t)(M * N) * 2);
}

static void f16_free(f16_t *f) {
  for (int i = 0; i < f->ncopies; i++) free(f->blocks[i]);
  free(f->blocks), free(f->wc), free(f->x), free(f->y);
}

static double f16_time(f16_t *f, int reps, int *copy) {
  double t[MAXREPS];
  for (int i = -2; i < reps; i++) {
    int c = (*copy)++ % f->ncopies;
    double t0 = now_s();
    resq_status st = resq_gemm_f16__cpu(f->M, f->x, f->K, &f->wc[c], NULL, f->y, f->N);
    double dt = now_s() - t0;
    if (st) {
      fprintf(stderr, "gemm f16: %s\n", resq_last_error());
      exit(2);
    }
    if (i >= 0) t[i] = dt;
  }
  return rep_stat(t, reps);
}

/* ------------------------------------------------------------------ oneDNN */

static dnnl_engine_t g_eng;
static dnnl_stream_t g_stream;

#define DN(call)                                                               \
  do {                                                                         \
    if ((call) != dnnl_success) {                                              \
      fprintf(stderr, "gemm_timing: oneDNN call failed: %s\n", #call);         \
      exit(2);                                                                 \
    }                                                                          \
  } while (0)

typedef struct {
  int int8;
  int64_t M, N, K;
  dnnl_primitive_t prim;
  dnnl_memory_t a, y, *w;
  int ncopies;
  char impl[96];
} dn_t;

/* 0, or -1 when oneDNN has no such matmul on this CPU (bf16 without AVX-512) */
static int dn_setup(dn_t *d, int int8, int64_t M, int64_t N, int64_t K, size_t cold) {
  memset(d, 0, sizeof *d);
  d->int8 = int8, d->M = M, d->N = N, d->K = K;
  dnnl_memory_desc_t smd, wmd, dmd, umd;
  dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N};
  dnnl_data_type_t adt = int8 ? dnnl_u8 : dnnl_bf16, wdt = int8 ? dnnl_s8 : dnnl_bf16;
  DN(dnnl_memory_desc_init_by_tag(&smd, 2, sd, adt, dnnl_ab));
  DN(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, wdt, dnnl_format_tag_any));
  DN(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab));
  dnnl_matmul_desc_t desc;
  DN(dnnl_matmul_desc_init(&desc, &smd, &wmd, NULL, &dmd));
  dnnl_primitive_attr_t attr;
  DN(dnnl_primitive_attr_create(&attr));
  float *scales = (float *)xalloc((size_t)N * 4);
  for (int64_t n = 0; n < N; n++) scales[n] = 0.001f;
  if (int8) DN(dnnl_primitive_attr_set_output_scales(attr, N, 1 << 1, scales));
  dnnl_primitive_desc_t pd;
  dnnl_status_t cs = dnnl_primitive_desc_create(&pd, &desc, attr, g_eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  free(scales);
  if (cs != dnnl_success) return -1;
  const char *impl = "?";
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)&impl);
  snprintf(d->impl, sizeof d->impl, "%s", impl);
  DN(dnnl_primitive_create(&d->prim, pd));
  const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  size_t wbytes = dnnl_memory_desc_get_size(wq);
  d->ncopies = (int)((cold + wbytes - 1) / wbytes);
  if (d->ncopies < 2) d->ncopies = 2;
  /* user weights [N][K] (tag ba of the logical [K][N]), reordered into each copy */
  size_t el = int8 ? 1 : 2;
  void *user = xalloc((size_t)(N * K) * el);
  resq_rng r;
  resq_rng_init(&r, 777);
  if (int8)
    for (int64_t i = 0; i < N * K; i++) ((int8_t *)user)[i] = (int8_t)resq_rng_range(&r, -128, 127);
  else
    for (int64_t i = 0; i < N * K; i++) ((uint16_t *)user)[i] = resq_f32_to_bf16((float)resq_rng_normal(&r) * 0.02f);
  DN(dnnl_memory_desc_init_by_tag(&umd, 2, wd, wdt, dnnl_ba));
  dnnl_memory_t um;
  DN(dnnl_memory_create(&um, &umd, g_eng, user));
  dnnl_primitive_desc_t rpd;
  dnnl_primitive_t rp;
  DN(dnnl_reorder_primitive_desc_create(&rpd, &umd, g_eng, wq, g_eng, NULL));
  DN(dnnl_primitive_create(&rp, rpd));
  d->w = (dnnl_memory_t *)calloc((size_t)d->ncopies, sizeof(dnnl_memory_t));
  for (int i = 0; i < d->ncopies; i++) {
    DN(dnnl_memory_create(&d->w[i], wq, g_eng, DNNL_MEMORY_ALLOCATE));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, d->w[i]}};
    DN(dnnl_primitive_execute(rp, g_stream, 2, args));
  }
  DN(dnnl_stream_wait(g_stream));
  dnnl_primitive_destroy(rp);
  dnnl_primitive_desc_destroy(rpd);
  dnnl_memory_destroy(um);
  free(user);
  DN(dnnl_memory_create(&d->a, &smd, g_eng, DNNL_MEMORY_ALLOCATE));
  DN(dnnl_memory_create(&d->y, &dmd, g_eng, DNNL_MEMORY_ALLOCATE));
  void *ap = NULL;
  dnnl_memory_get_data_handle(d->a, &ap);
  if (int8)
    for (int64_t i = 0; i < M * K; i++) ((uint8_t *)ap)[i] = (uint8_t)resq_rng_range(&r, 0, 255);
  else
    for (int64_t i = 0; i < M * K; i++) ((uint16_t *)ap)[i] = resq_f32_to_bf16((float)resq_rng_normal(&r));
  dnnl_primitive_desc_destroy(pd);
  return 0;
}

static void dn_free(dn_t *d) {
  for (int i = 0; i < d->ncopies; i++) dnnl_memory_destroy(d->w[i]);
  free(d->w);
  dnnl_memory_destroy(d->a);
  dnnl_memory_destroy(d->y);
  dnnl_primitive_destroy(d->prim);
}

static double dn_time(dn_t *d, int reps, int *copy) {
  double t[MAXREPS];
  for (int i = -2; i < reps; i++) {
    int c = (*copy)++ % d->ncopies;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, d->a}, {DNNL_ARG_WEIGHTS, d->w[c]}, {DNNL_ARG_DST, d->y}};
    double t0 = now_s();
    DN(dnnl_primitive_execute(d->prim, g_stream, 3, args));
    DN(dnnl_stream_wait(g_stream));
    double dt = now_s() - t0;
    if (i >= 0) t[i] = dt;
  }
  return rep_stat(t, reps);
}

/* ------------------------------------------------------------------ --ab */

static int run_ab(const char *ab, int passes, int reps, int nshape, const int64_t *shM, const int64_t *shN,
                  const int64_t *shK, size_t cold) {
  enum { ROUNDS = 4 };
  char var[128];
  const char *eq = strchr(ab, '=');
  size_t nv = (size_t)(eq - ab);
  if (nv == 0 || nv >= sizeof var) {
    fprintf(stderr, "gemm_timing: --ab wants VAR=VALUE, got '%s'\n", ab);
    return 2;
  }
  memcpy(var, ab, nv);
  var[nv] = 0;
  const char *old = getenv(var);
  char keep[256] = "";
  if (old) snprintf(keep, sizeof keep, "%s", old);
  printf("A/B of the mixed GEMM: A = environment as given (%s=%s), B = %s; ratio = time(A) / time(B)\n", var,
         old ? keep : "(unset)", ab);
  printf("| M | N | K | A GOPS | B GOPS | A/B median | [min-max] |\n|---|---|---|---|---|---|---|\n");
  for (int s = 0; s < nshape; s++) {
    int64_t M = shM[s], N = shN[s], K = shK[s];
    double r[MAXPASS * ROUNDS], ta[MAXPASS * ROUNDS], tb[MAXPASS * ROUNDS];
    int n = 0, copy = 0;
    for (int pass = 0; pass < passes; pass++) {
      ours_t o;
      ours_setup(&o, M, N, K, cold);
      for (int k = 0; k < ROUNDS; k++, n++)
        for (int h = 0; h < 2; h++) {
          const int b = (k + h) & 1; /* order alternates between rounds */
          if (b) setenv(var, eq + 1, 1);
          else if (old) setenv(var, keep, 1);
          else unsetenv(var);
          double t = ours_time(&o, reps, &copy);
          if (b) tb[n] = t;
          else ta[n] = t;
        }
      ours_free(&o);
    }
    if (old) setenv(var, keep, 1);
    else unsetenv(var);
    double mn = 1e30, mx = 0;
    for (int i = 0; i < n; i++) {
      r[i] = ta[i] / tb[i];
      mn = fmin(mn, r[i]), mx = fmax(mx, r[i]);
    }
    const double ops = 2.0 * M * N * K;
    printf("| %lld | %lld | %lld | %.1f | %.1f | %.3f | [%.3f-%.3f] |\n", (long long)M, (long long)N, (long long)K,
           ops / median(ta, n) * 1e-9, ops / median(tb, n) * 1e-9, median(r, n), mn, mx);
    fflush(stdout);
  }
  return 0;
}

/* ------------------------------------------------------------------ main */

static int parse_list(const char *s, int64_t *v, int max) {
  int n = 0;
  while (s && *s && n < max) {
    v[n++] = strtoll(s, (char **)&s, 10);
    if (*s == ',' || *s == ':') s++;
  }
  return n;
}

int main(int argc, char **argv) {
  int passes = 3, reps = 7, peak = 0, no_dnnl = 0;
  const char *ab = NULL; /* --ab VAR=VALUE */
  double cold_mib = 0;
  int64_t Ms[16] = {1, 16, 256, 2048}, nM = 4;
  int64_t NK[32] = {4096, 4096, 14336, 4096, 4096, 14336}, nNK = 6;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--passes") && i + 1 < argc) passes = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--cold-mib") && i + 1 < argc) cold_mib = atof(argv[++i]);
    else if (!strcmp(argv[i], "--M") && i + 1 < argc) nM = parse_list(argv[++i], Ms, 16);
    else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) nNK = parse_list(argv[++i], NK, 32) / 2 * 2;
    else if (!strcmp(argv[i], "--peak")) peak = 1;
    else if (!strcmp(argv[i], "--no-onednn")) no_dnnl = 1;
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) resq_cpu_set_threads(atoi(argv[++i]));
    else if (!strcmp(argv[i], "--cpu-clock")) g_clock = CLOCK_PROCESS_CPUTIME_ID;
    else if (!strcmp(argv[i], "--best")) g_best = 1;
    else if (!strcmp(argv[i], "--ab") && i + 1 < argc && strchr(argv[i + 1], '=')) ab = argv[++i];
    else if (!strcmp(argv[i], "--group") && i + 1 < argc) g_group = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--r") && i + 1 < argc) g_r = atoll(argv[++i]);
    else {
      fprintf(stderr,
              "usage: %s [--passes P] [--reps R] [--cold-mib C] [--M 1,16,...] [--shapes N:K,...] [--peak] "
              "[--no-onednn] [--threads T] [--cpu-clock] [--best] [--ab VAR=VALUE] [--group G] [--r R]\n",
              argv[0]);
      return 2;
    }
  }
  if (passes < 1 || passes > MAXPASS || reps < 1 || reps > MAXREPS) {
    fprintf(stderr, "gemm_timing: passes in [1, %d], reps in [1, %d]\n", MAXPASS, MAXREPS);
    return 2;
  }
  const int nt = resq_cpu_get_threads();
  size_t llc = llc_bytes();
  size_t cold = cold_mib > 0 ? (size_t)(cold_mib * 1048576.0) : (2 * llc > ((size_t)256 << 20) ? 2 * llc : (size_t)256 << 20);
  printf("resq_cpu_gemm_timing: ISA %s, %d threads, LLC %.0f MiB, weight copies >= %.0f MiB per implementation\n",
         resq_cpu_isa_name(resq_cpu_get_isa()), nt, (double)llc / 1048576.0, (double)cold / 1048576.0);
  if (g_group > 0 || g_r >= 0) { /* the baselines are the same GEMMs either way */
    char gs[32] = "K (per token)", rs[32] = "group/8";
    if (g_group > 0) snprintf(gs, sizeof gs, "%lld", (long long)g_group);
    if (g_r >= 0) snprintf(rs, sizeof rs, "%lld", (long long)g_r);
    printf("resq q4q8 split: group %s, r %s\n", gs, rs);
  }
  if (peak) run_peaks(nt);
  if (!no_dnnl) {
    DN(dnnl_engine_create(&g_eng, dnnl_cpu, 0));
    DN(dnnl_stream_create(&g_stream, g_eng, dnnl_stream_default_flags));
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN %d.%d.%d\n", v->major, v->minor, v->patch);
  }
  cpu_set_t cs;
  sched_getaffinity(0, sizeof cs, &cs);
  if (CPU_COUNT(&cs) < nt) {
    fprintf(stderr, "gemm_timing: the main thread may run on %d CPUs, fewer than the %d resq threads "
                    "(OMP_PROC_BIND set?): refusing to time\n", CPU_COUNT(&cs), nt);
    return 2;
  }
  /* implementations: 0 resq q4q8, 1 resq FP16 GEMM, 2 oneDNN u8s8, 3 oneDNN bf16 */
  enum { I_Q = 0, I_F16, I_U8, I_BF16, NIMPL };
  static const char *iname[NIMPL] = {"resq q4q8", "resq f16", "oneDNN u8s8", "oneDNN bf16"};
  /* T[pass][shape][impl] seconds, PR[pass][shape] probe bytes/s */
  static double T[MAXPASS][64][NIMPL], PR[MAXPASS][64];
  int nshape = 0;
  int64_t shM[64], shN[64], shK[64];
  for (int64_t mi = 0; mi < nM; mi++)
    for (int64_t si = 0; si < nNK / 2; si++) {
      shM[nshape] = Ms[mi], shN[nshape] = NK[2 * si], shK[nshape] = NK[2 * si + 1];
      nshape++;
    }
  char impl8[96] = "", impl16[96] = "";
  int copy = 0;
  if (ab) return run_ab(ab, passes, reps, nshape, shM, shN, shK, cold);
  for (int pass = 0; pass < passes; pass++) {
    for (int s = 0; s < nshape; s++) {
      int64_t M = shM[s], N = shN[s], K = shK[s];
      ours_t o;
      ours_setup(&o, M, N, K, cold);
      T[pass][s][I_Q] = ours_time(&o, reps, &copy);
      PR[pass][s] = M <= 16 ? read_probe(o.blocks, o.sizes, o.ncopies, nt) : 0;
      double wb = (double)o.sizes[0];
      ours_free(&o);
      f16_t f;
      f16_setup(&f, M, N, K, cold);
      T[pass][s][I_F16] = f16_time(&f, reps, &copy);
      f16_free(&f);
      for (int k = I_U8; k < NIMPL && !no_dnnl; k++) {
        dn_t d;
        if (dn_setup(&d, k == I_U8, M, N, K, cold)) { /* not on this CPU: no figure, ratios "-" */
          snprintf(k == I_U8 ? impl8 : impl16, 96, "none on this CPU");
          T[pass][s][k] = 0;
          continue;
        }
        snprintf(k == I_U8 ? impl8 : impl16, 96, "%s", d.impl);
        T[pass][s][k] = dn_time(&d, reps, &copy);
        dn_free(&d);
      }
      printf("pass %d M=%5lld N=%5lld K=%5lld:", pass, (long long)M, (long long)N, (long long)K);
      for (int k = 0; k < (no_dnnl ? I_U8 : NIMPL); k++)
        if (T[pass][s][k] > 0) printf("  %s %.1f", iname[k], 2.0 * M * N * K / T[pass][s][k] * 1e-9);
        else printf("  %s -", iname[k]);
      if (M <= 16) printf("  | q4q8 weights %.1f GB/s, probe %.1f GB/s", wb / T[pass][s][I_Q] * 1e-9, PR[pass][s] * 1e-9);
      printf("\n");
      fflush(stdout);
    }
  }
  if (!no_dnnl) printf("oneDNN implementations: int8 %s, bf16 %s\n", impl8, impl16);
  /* ratios: time of the baseline / time of ours (> 1: ours is faster) */
  static const int rnum[3] = {I_U8, I_BF16, I_BF16}, rden[3] = {I_Q, I_Q, I_F16};
  const int nrat = no_dnnl ? 0 : 3;
  printf("\nGOPS = 2MNK/t (median over %d passes); ratios = median over passes of per-pass time ratios, (spread) = "
         "(max-min)/median\n",
         passes);
  printf("| M | N | K | resq q4q8 | resq f16 | oneDNN int8 | oneDNN bf16 | q4q8 vs int8 | q4q8 vs bf16 | f16 vs bf16 | "
         "q4q8 weight stream / probe |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int s = 0; s < nshape; s++) {
    int64_t M = shM[s], N = shN[s], K = shK[s];
    double g[NIMPL][MAXPASS], rat[3][MAXPASS], fr[MAXPASS], pb[MAXPASS];
    double ops = 2.0 * M * N * K;
    size_t bytes = 0;
    resq_qact_params split = resq_qact_default(K);
    resq_gemm_pack_weight_size__cpu(&split, N, &bytes);
    for (int p = 0; p < passes; p++) {
      for (int k = 0; k < NIMPL; k++) g[k][p] = T[p][s][k] > 0 ? ops / T[p][s][k] * 1e-9 : 0;
      for (int k = 0; k < nrat; k++) rat[k][p] = T[p][s][rnum[k]] / T[p][s][rden[k]];
      fr[p] = M <= 16 ? (double)bytes / T[p][s][I_Q] / PR[p][s] : 0;
      pb[p] = PR[p][s] * 1e-9;
    }
    printf("| %lld | %lld | %lld |", (long long)M, (long long)N, (long long)K);
    for (int k = 0; k < NIMPL; k++) printf(" %.1f |", median(g[k], passes));
    for (int k = 0; k < 3; k++) {
      if (k >= nrat || !(T[0][s][rnum[k]] > 0)) {
        printf(" - |");
        continue;
      }
      double mx = rat[k][0], mn = rat[k][0];
      for (int p = 1; p < passes; p++) mx = fmax(mx, rat[k][p]), mn = fmin(mn, rat[k][p]);
      double md = median(rat[k], passes);
      printf(" %.2f (%.0f%%) |", md, 100 * (mx - mn) / md);
    }
    if (M <= 16) printf(" %.2f of %.1f GB/s |\n", median(fr, passes), median(pb, passes));
    else printf(" - |\n");
  }
  return 0;
}
