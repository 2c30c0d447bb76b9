/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_machine.c -- the machine's own limits, measured once per run so
 * that bench/run_all can quote every other result as a fraction of them:
 *
 *   machine_read_bw/threads:T/MiB:S   DRAM read bandwidth: T threads sum 64-byte
 *                                     vectors (AVX-512 where present, else SSE2)
 *                                     over a buffer of S MiB >= the cold working
 *                                     set (>= 256 MiB and >= 2x the last-level
 *                                     cache); "bytes" = S MiB per call.
 *   machine_copy_bw/threads:T/MiB:S   memcpy of S MiB split over T threads;
 *                                     "bytes" = 2 x S MiB (read + write, the
 *                                     write-allocate read not counted, as STREAM).
 *   machine_peak_<insn>/threads:T     instruction-throughput ceilings: 12
 *                                     independent zmm accumulators per thread;
 *                                     "ops" per instruction: vfmadd231ps 32,
 *                                     vdpbf16ps 64, vpdpbusd 128 (u8 x s8
 *                                     multiply + add). Skipped where the CPU
 *                                     lacks the instruction.
 *
 * Threads are plain pthreads (no OpenMP runtime in this process), not pinned:
 * the placement the OS gives is recorded in the JSON context. Memory bandwidth
 * on shared hosts moves 2-4x within minutes; run_all runs this program at the
 * start and at the end of a run and reports both. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RB_X86 1
#endif

#include "bench_util.h"
#include "resq_bench.h"

#define MAX_THREADS 64

/* ---- a persistent pool: the caller is thread 0 ---- */
typedef void (*pool_fn)(int tid, int nthreads, void *arg);
typedef struct pool {
  int n;
  pthread_t th[MAX_THREADS];
  pthread_barrier_t start, done;
  pool_fn fn;
  void *arg;
  int quit;
} pool;
typedef struct worker_arg {
  pool *p;
  int tid;
} worker_arg;
static worker_arg g_wargs[MAX_THREADS];

static void *pool_worker(void *a) {
  worker_arg *w = a;
  pool *p = w->p;
  for (;;) {
    pthread_barrier_wait(&p->start);
    if (p->quit) break;
    p->fn(w->tid, p->n, p->arg);
    pthread_barrier_wait(&p->done);
  }
  return NULL;
}

static int pool_init(pool *p, int n) {
  memset(p, 0, sizeof *p);
  p->n = n;
  pthread_barrier_init(&p->start, NULL, (unsigned)n);
  pthread_barrier_init(&p->done, NULL, (unsigned)n);
  for (int t = 1; t < n; t++) {
    g_wargs[t].p = p;
    g_wargs[t].tid = t;
    if (pthread_create(&p->th[t], NULL, pool_worker, &g_wargs[t]) != 0) return -1;
  }
  return 0;
}

static void pool_run(pool *p, pool_fn fn, void *arg) {
  p->fn = fn;
  p->arg = arg;
  pthread_barrier_wait(&p->start);
  fn(0, p->n, arg);
  pthread_barrier_wait(&p->done);
}

static void pool_destroy(pool *p) {
  p->quit = 1;
  pthread_barrier_wait(&p->start);
  for (int t = 1; t < p->n; t++) pthread_join(p->th[t], NULL);
  pthread_barrier_destroy(&p->start);
  pthread_barrier_destroy(&p->done);
}

/* ---- read / copy kernels ---- */
typedef struct mem_job {
  unsigned char *src, *dst;
  size_t bytes;
  int use_avx512;
  volatile uint64_t sink[MAX_THREADS * 8];
} mem_job;

static void slice(size_t bytes, int tid, int n, size_t *lo, size_t *hi) {
  size_t per = (bytes / (size_t)n) & ~(size_t)4095;
  *lo = per * (size_t)tid;
  *hi = tid == n - 1 ? bytes : *lo + per;
}

#ifdef RB_X86
__attribute__((target("avx512f"))) static uint64_t read_avx512(const unsigned char *p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)(p + i)));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(p + i + 64)));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(p + i + 128)));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(p + i + 192)));
  }
  a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  return (uint64_t)_mm512_reduce_add_epi64(a0);
}

static uint64_t read_sse2(const unsigned char *p, size_t n) {
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm_add_epi64(a0, _mm_load_si128((const __m128i *)(const void *)(p + i)));
    a1 = _mm_add_epi64(a1, _mm_load_si128((const __m128i *)(const void *)(p + i + 16)));
    a2 = _mm_add_epi64(a2, _mm_load_si128((const __m128i *)(const void *)(p + i + 32)));
    a3 = _mm_add_epi64(a3, _mm_load_si128((const __m128i *)(const void *)(p + i + 48)));
  }
  a0 = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
  uint64_t out[2];
  _mm_storeu_si128((__m128i *)(void *)out, a0);
  return out[0] + out[1];
}
#else
static uint64_t read_plain(const unsigned char *p, size_t n) {
  const uint64_t *q = (const uint64_t *)(const void *)p;
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i + 4 <= n / 8; i += 4) {
    a0 += q[i];
    a1 += q[i + 1];
    a2 += q[i + 2];
    a3 += q[i + 3];
  }
  return a0 + a1 + a2 + a3;
}
#endif

static void job_read(int tid, int n, void *arg) {
  mem_job *j = arg;
  size_t lo, hi;
  slice(j->bytes, tid, n, &lo, &hi);
#ifdef RB_X86
  j->sink[tid * 8] = j->use_avx512 ? read_avx512(j->src + lo, hi - lo) : read_sse2(j->src + lo, hi - lo);
#else
  j->sink[tid * 8] = read_plain(j->src + lo, hi - lo);
#endif
}

static void job_touch(int tid, int n, void *arg) { /* first touch by the thread that reads */
  mem_job *j = arg;
  size_t lo, hi;
  slice(j->bytes, tid, n, &lo, &hi);
  memset(j->src + lo, 1 + tid, hi - lo);
  if (j->dst) memset(j->dst + lo, 0, hi - lo);
}

static void job_copy(int tid, int n, void *arg) {
  mem_job *j = arg;
  size_t lo, hi;
  slice(j->bytes, tid, n, &lo, &hi);
  memcpy(j->dst + lo, j->src + lo, hi - lo);
}

typedef struct mem_params {
  int copy;
} mem_params;

static void bm_mem(resq_bench_state *st, const void *params) {
  const mem_params *mp = params;
  int threads = (int)resq_bench_arg(st, 0);
  size_t bytes = (size_t)resq_bench_arg(st, 1) * RB_MIB;
  mem_job *j = calloc(1, sizeof *j);
  pool p;
  if (!j) {
    resq_bench_error(st, "out of memory");
    return;
  }
  j->bytes = bytes;
  j->src = rb_alloc(bytes);
  j->dst = mp->copy ? rb_alloc(bytes) : NULL;
#ifdef RB_X86
  j->use_avx512 = __builtin_cpu_supports("avx512f");
#endif
  if (!j->src || (mp->copy && !j->dst)) {
    resq_bench_error(st, "cannot allocate %zu MiB", bytes / RB_MIB);
    rb_free(j->src);
    rb_free(j->dst);
    free(j);
    return;
  }
  pool_init(&p, threads);
  pool_run(&p, job_touch, j);
  pool_run(&p, mp->copy ? job_copy : job_read, j); /* warm-up (page tables, TLB) */
  if (mp->copy && memcmp(j->src, j->dst, bytes) != 0) {
    resq_bench_error(st, "memcpy result differs from its source");
  } else {
    while (resq_bench_keep_running(st, 1)) pool_run(&p, mp->copy ? job_copy : job_read, j);
    resq_bench_counter(st, "bytes", mp->copy ? 2.0 * (double)bytes : (double)bytes, RESQ_CTR_RATE);
#ifdef RB_X86
    resq_bench_label(st, "isa=%s", mp->copy ? "memcpy" : (j->use_avx512 ? "avx512" : "sse2"));
#endif
  }
  pool_destroy(&p);
  rb_free(j->src);
  rb_free(j->dst);
  free(j);
}

/* ---- instruction-throughput ceilings ---- */
#define PEAK_ITERS 2000000 /* x 12 instructions per thread per call: ~3.5 ms, so that waking the pool (up to ~0.2 ms on a guest) does not halve the 2-thread figure */

typedef struct peak_job {
  int kind; /* 0 fma f32, 1 dpbf16, 2 dpbusd */
  volatile float fsink[MAX_THREADS * 16];
  volatile int isink[MAX_THREADS * 16];
} peak_job;

#ifdef RB_X86
/* 12 independent chains per iteration. The empty asm statements make the operands and every
 * accumulator opaque to the compiler once per iteration: without them GCC 12 saw 12 chains that
 * start equal and apply the same operation, merged them into ONE chain (one vpdpbusd / vfmadd /
 * vdpbf16ps per iteration, counted as 12), and the ceilings were latency figures times 12 -- on a
 * Zen 5 guest "2.23 TOPS vpdpbusd" against 1.78 measured with independent chains. */
#define OPAQUE12()                                                                                  \
  __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6),      \
                   "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11))
#define ACC12(OP)                                                                                  \
  do {                                                                                             \
    a0 = OP(a0);                                                                                   \
    a1 = OP(a1);                                                                                   \
    a2 = OP(a2);                                                                                   \
    a3 = OP(a3);                                                                                   \
    a4 = OP(a4);                                                                                   \
    a5 = OP(a5);                                                                                   \
    a6 = OP(a6);                                                                                   \
    a7 = OP(a7);                                                                                   \
    a8 = OP(a8);                                                                                   \
    a9 = OP(a9);                                                                                   \
    a10 = OP(a10);                                                                                 \
    a11 = OP(a11);                                                                                 \
  } while (0)

__attribute__((target("avx512f"))) static float peak_fma(void) {
  __m512 x = _mm512_set1_ps(1.0f), y = _mm512_setzero_ps();
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
         a8 = a0, a9 = a0, a10 = a0, a11 = a0;
#define FMA(a) _mm512_fmadd_ps(x, y, a)
  for (int i = 0; i < PEAK_ITERS; i++) {
    __asm__ volatile("" : "+v"(x), "+v"(y));
    ACC12(FMA);
    OPAQUE12();
  }
#undef FMA
  a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                     _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  a0 = _mm512_add_ps(a0, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return _mm512_reduce_add_ps(a0);
}

__attribute__((target("avx512f,avx512bf16"))) static float peak_dpbf16(void) {
  __m512bh x = (__m512bh)_mm512_setzero_si512();
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
         a8 = a0, a9 = a0, a10 = a0, a11 = a0;
#define DPBF(a) _mm512_dpbf16_ps(a, x, x)
  for (int i = 0; i < PEAK_ITERS; i++) {
    __asm__ volatile("" : "+v"(x));
    ACC12(DPBF);
    OPAQUE12();
  }
#undef DPBF
  a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                     _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  a0 = _mm512_add_ps(a0, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return _mm512_reduce_add_ps(a0);
}

__attribute__((target("avx512f,avx512vnni"))) static int peak_dpbusd(void) {
  __m512i x = _mm512_set1_epi8(1), y = _mm512_setzero_si512();
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
          a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
#define DPB(a) _mm512_dpbusd_epi32(a, x, y)
  for (int i = 0; i < PEAK_ITERS; i++) {
    __asm__ volatile("" : "+v"(x), "+v"(y));
    ACC12(DPB);
    OPAQUE12();
  }
#undef DPB
  a0 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                        _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  a0 = _mm512_add_epi32(a0, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
  return _mm512_reduce_add_epi32(a0);
}
#endif

static void job_peak(int tid, int n, void *arg) {
  (void)n;
  peak_job *j = arg;
#ifdef RB_X86
  if (j->kind == 0) j->fsink[tid * 16] = peak_fma();
  else if (j->kind == 1) j->fsink[tid * 16] = peak_dpbf16();
  else j->isink[tid * 16] = peak_dpbusd();
#else
  (void)j;
  (void)tid;
#endif
}

typedef struct peak_params {
  int kind;
  double ops_per_insn;
} peak_params;

static void bm_peak(resq_bench_state *st, const void *params) {
  const peak_params *pp = params;
  int threads = (int)resq_bench_arg(st, 0);
#ifdef RB_X86
  static const char *const need[] = {"avx512f", "avx512bf16", "avx512vnni"};
  int ok = __builtin_cpu_supports("avx512f");
  if (pp->kind == 1) ok = ok && __builtin_cpu_supports("avx512bf16");
  if (pp->kind == 2) ok = ok && __builtin_cpu_supports("avx512vnni");
  if (!ok) {
    resq_bench_skip(st, "CPU lacks %s", need[pp->kind]);
    return;
  }
#else
  resq_bench_skip(st, "not an x86-64 CPU");
  return;
#endif
  peak_job *j = calloc(1, sizeof *j);
  pool p;
  if (!j) {
    resq_bench_error(st, "out of memory");
    return;
  }
  j->kind = pp->kind;
  pool_init(&p, threads);
  pool_run(&p, job_peak, j);
  while (resq_bench_keep_running(st, 1)) pool_run(&p, job_peak, j);
  resq_bench_counter(st, "ops", pp->ops_per_insn * 12.0 * PEAK_ITERS * threads, RESQ_CTR_RATE);
  pool_destroy(&p);
  free(j);
}

int main(int argc, char **argv) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int tmax = ncpu < 1 ? 1 : (ncpu > MAX_THREADS ? MAX_THREADS : (int)ncpu);
  int64_t mib = (int64_t)(rb_cold_bytes() / RB_MIB);
  static const char *const mem_args[] = {"threads", "MiB"};
  static const char *const thr_args[] = {"threads"};
  char buf[4096];

  rb_context_common();
  rb_thread_placement(buf, sizeof buf);
  resq_bench_context("resq_placement_main", buf);

  /* 1 thread, then all threads (the baselines use every core) */
  for (int t = 1; t <= tmax; t = t == tmax ? tmax + 1 : tmax) {
    int64_t a[2] = {t, mib};
    mem_params rd = {0}, cp = {1};
    resq_bench_register_args("machine_read_bw", bm_mem, &rd, sizeof rd, RESQ_BENCH_REAL_TIME, mem_args, a, 2);
    resq_bench_register_args("machine_copy_bw", bm_mem, &cp, sizeof cp, RESQ_BENCH_REAL_TIME, mem_args, a, 2);
  }
  static const struct {
    const char *name;
    peak_params p;
  } peaks[] = {{"machine_peak_fma_f32", {0, 32.0}},
               {"machine_peak_dpbf16", {1, 64.0}},
               {"machine_peak_dpbusd", {2, 128.0}}};
  for (size_t i = 0; i < sizeof peaks / sizeof peaks[0]; i++)
    for (int t = 1; t <= tmax; t = t == tmax ? tmax + 1 : tmax) {
      int64_t a[1] = {t};
      resq_bench_register_args(peaks[i].name, bm_peak, &peaks[i].p, sizeof peaks[i].p, RESQ_BENCH_REAL_TIME,
                               thr_args, a, 1);
    }
  return resq_bench_main(argc, argv);
}
