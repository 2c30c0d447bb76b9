/* SPDX-License-Identifier: Apache-2.0
 * CPU backend runtime: CPU feature detection and ISA dispatch, the thread pool
 * (the caller plus persistent workers that spin briefly, then sleep), the
 * call lock and the grow-only workspace. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_internal.h"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if RESQ_CPU_X86
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- dispatch */

#define MAX_THREADS 64

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static resq_cpu_isa g_detected = RESQ_CPU_ISA_GENERIC;
static _Atomic int g_isa = RESQ_CPU_ISA_GENERIC; /* active */
static _Atomic int g_threads = 1;
static int g_default_threads = 1;

#if RESQ_CPU_X86
static unsigned long long xgetbv0(void) {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((unsigned long long)edx << 32) | eax;
}
#endif

static int g_has_avx2; /* the AVX2 level is usable (also on every AVX-512 CPU we accept) */
static int g_has_amx;  /* the AMX level is usable: AVX-512 level + AMX-TILE/INT8, state enabled, permission granted */

/* AMX tile data (XCR0 bit 18) is an "extended feature" that Linux enables per
 * process on request (Documentation/arch/x86/xstate.rst): without
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) the first tile
 * instruction dies with SIGILL. The grant is for the whole process (every
 * thread, present and future), so asking once at detection is enough. */
static int amx_permitted(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
  enum { ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
  unsigned long bits = 0;
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
  if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bits) != 0) return 0;
  return (bits >> XFEATURE_XTILEDATA) & 1;
#else
  return 0;
#endif
}

static resq_cpu_isa detect(void) {
#if RESQ_CPU_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return RESQ_CPU_ISA_GENERIC;
  int osxsave = (c >> 27) & 1, f16c = (c >> 29) & 1, fma = (c >> 12) & 1;
  if (!osxsave || !f16c) return RESQ_CPU_ISA_GENERIC;
  /* XCR0: SSE(1) and AVX(2) state saved by the OS: the YMM registers are usable */
  const unsigned long long xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return RESQ_CPU_ISA_GENERIC;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return RESQ_CPU_ISA_GENERIC;
  int avx2 = (b >> 5) & 1, bmi1 = (b >> 3) & 1, bmi2 = (b >> 8) & 1, f = (b >> 16) & 1, dq = (b >> 17) & 1,
      bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1, amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
  if (!(avx2 && fma && bmi1 && bmi2)) return RESQ_CPU_ISA_GENERIC;
  g_has_avx2 = 1;
  /* opmask(5), ZMM_Hi256(6), Hi16_ZMM(7) saved too */
  if (!((xcr0 & 0xe6) == 0xe6 && f && dq && bw && vl && vnni)) return RESQ_CPU_ISA_AVX2;
  /* XTILECFG(17) and XTILEDATA(18) in XCR0: the OS supports tile state; then ask for it */
  if (amx_tile && amx_int8 && ((xcr0 >> 17) & 3) == 3 && amx_permitted()) {
    g_has_amx = 1;
    return RESQ_CPU_ISA_AMX;
  }
  return RESQ_CPU_ISA_AVX512;
#endif
  return RESQ_CPU_ISA_GENERIC;
}

static int affinity_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

static void init_once(void) {
  g_detected = detect();
  int isa = g_detected;
  const char *e = getenv("RESQ_CPU_ISA");
  if (e && strcmp(e, "generic") == 0) isa = RESQ_CPU_ISA_GENERIC;
  if (e && strcmp(e, "avx2") == 0 && g_has_avx2) isa = RESQ_CPU_ISA_AVX2;
  if (e && strcmp(e, "avx512") == 0 && g_detected == RESQ_CPU_ISA_AMX) isa = RESQ_CPU_ISA_AVX512;
  /* "amx" or "auto" (or a level the CPU lacks): detection decides (never force an ISA the CPU lacks) */
  atomic_store(&g_isa, isa);
  int n = affinity_cpus();
  const char *t = getenv("RESQ_CPU_THREADS");
  if (t && atoi(t) > 0) n = atoi(t);
  if (n > MAX_THREADS) n = MAX_THREADS;
  g_default_threads = n;
  atomic_store(&g_threads, n);
}

resq_cpu_isa resq_cpu_detect(void) {
  pthread_once(&g_once, init_once);
  return g_detected;
}

resq_cpu_isa resq_cpu_active_isa(void) {
  pthread_once(&g_once, init_once);
  return (resq_cpu_isa)atomic_load(&g_isa);
}

resq_cpu_isa resq_cpu_get_isa(void) { return resq_cpu_active_isa(); }

int resq_cpu_avx512_active(void) {
  const resq_cpu_isa isa = resq_cpu_active_isa();
  return isa == RESQ_CPU_ISA_AVX512 || isa == RESQ_CPU_ISA_AMX;
}

int resq_cpu_isa_available(resq_cpu_isa isa) {
  pthread_once(&g_once, init_once);
  switch (isa) {
    case RESQ_CPU_ISA_AUTO:
    case RESQ_CPU_ISA_GENERIC: return 1;
    case RESQ_CPU_ISA_AVX2: return g_has_avx2;
    case RESQ_CPU_ISA_AVX512: return g_detected == RESQ_CPU_ISA_AVX512 || g_has_amx;
    case RESQ_CPU_ISA_AMX: return g_has_amx;
  }
  return 0;
}

resq_status resq_cpu_set_isa(resq_cpu_isa isa) {
  pthread_once(&g_once, init_once);
  switch (isa) {
    case RESQ_CPU_ISA_AUTO: atomic_store(&g_isa, g_detected); return RESQ_OK;
    case RESQ_CPU_ISA_GENERIC: atomic_store(&g_isa, RESQ_CPU_ISA_GENERIC); return RESQ_OK;
    case RESQ_CPU_ISA_AVX512:
      if (!resq_cpu_isa_available(RESQ_CPU_ISA_AVX512))
        return resq_fail(RESQ_ERR_UNSUPPORTED, "cpu: this CPU lacks AVX-512 F/BW/VL/VNNI (or the OS does not save ZMM state)");
      atomic_store(&g_isa, RESQ_CPU_ISA_AVX512);
      return RESQ_OK;
    case RESQ_CPU_ISA_AMX:
      if (!g_has_amx)
        return resq_fail(RESQ_ERR_UNSUPPORTED,
                         "cpu: this CPU lacks AMX-TILE/AMX-INT8 with the AVX-512 level (or the OS does not enable tile "
                         "state for this process)");
      atomic_store(&g_isa, RESQ_CPU_ISA_AMX);
      return RESQ_OK;
    case RESQ_CPU_ISA_AVX2:
      if (!g_has_avx2)
        return resq_fail(RESQ_ERR_UNSUPPORTED, "cpu: this CPU lacks AVX2/FMA/F16C/BMI2 (or the OS does not save YMM state)");
      atomic_store(&g_isa, RESQ_CPU_ISA_AVX2);
      return RESQ_OK;
  }
  return resq_fail(RESQ_ERR_INVALID_ARG, "cpu: unknown ISA %d", (int)isa);
}

const char *resq_cpu_isa_name(resq_cpu_isa isa) {
  switch (isa) {
    case RESQ_CPU_ISA_AUTO: return "auto";
    case RESQ_CPU_ISA_GENERIC: return "generic";
    case RESQ_CPU_ISA_AVX512: return "avx512-vnni";
    case RESQ_CPU_ISA_AVX2: return "avx2";
    case RESQ_CPU_ISA_AMX: return "avx512-amx";
  }
  return "unknown";
}

resq_status resq_cpu_set_threads(int n) {
  pthread_once(&g_once, init_once);
  if (n < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "cpu: thread count %d < 0", n);
  atomic_store(&g_threads, n == 0 ? g_default_threads : (n > MAX_THREADS ? MAX_THREADS : n));
  return RESQ_OK;
}

int resq_cpu_get_threads(void) {
  pthread_once(&g_once, init_once);
  return atomic_load(&g_threads);
}

/* ---------------------------------------------------------------- call lock */

static pthread_mutex_t g_call = PTHREAD_MUTEX_INITIALIZER;
void resq_cpu_lock(void) { pthread_mutex_lock(&g_call); }
void resq_cpu_unlock(void) { pthread_mutex_unlock(&g_call); }

/* ---------------------------------------------------------------- workspace */

static void *g_ws[6];
static size_t g_ws_size[6];

void *resq_cpu_workspace(int slot, size_t bytes) {
  if (slot < 0 || slot >= 6) return NULL;
  if (bytes == 0) bytes = 64;
  if (g_ws_size[slot] >= bytes) return g_ws[slot];
  free(g_ws[slot]);
  size_t sz = (bytes + 4095) & ~(size_t)4095;
  g_ws[slot] = aligned_alloc(4096, sz);
  g_ws_size[slot] = g_ws[slot] ? sz : 0;
  return g_ws[slot];
}

/* ---------------------------------------------------------------- thread pool */

typedef struct {
  pthread_t th;
  int started;
} worker;

static worker g_workers[MAX_THREADS];
static int g_nworkers; /* started so far */
static _Atomic unsigned long g_gen;
static _Atomic int g_pending;
static resq_cpu_task g_fn;
static void *g_arg;
static int g_nt;
static unsigned g_mxcsr; /* the caller's SSE control word, loaded by the workers */
static pthread_mutex_t g_mx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_done_cv = PTHREAD_COND_INITIALIZER;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline void cpu_relax(void) {
#if RESQ_CPU_X86
  _mm_pause();
#endif
}

/* Workers (and the caller waiting for them) poll for this long before sleeping
 * on a condition variable: back-to-back calls (a decoder's layers) then start
 * within a microsecond. */
#define SPIN_SECONDS 200e-6

/* One polling step. The first few hundred are pauses; after that every poll
 * yields the CPU, so that on an oversubscribed machine (other processes on the
 * other core) the thread we wait for can run on ours. Returns 1 when the
 * caller should stop polling and sleep. */
static int poll_step(int *spins, double *t0) {
  int s = ++*spins;
  if (s < 512) {
    cpu_relax();
    return 0;
  }
  sched_yield();
  if (s % 32 == 0) {
    double t = now_s();
    if (*t0 == 0) *t0 = t;
    else if (t - *t0 > SPIN_SECONDS) return 1;
  }
  return 0;
}

static unsigned long g_start_gen[MAX_THREADS]; /* generation current when worker tid was created */

static void *worker_main(void *p) {
  int tid = (int)(intptr_t)p;
  unsigned long seen = g_start_gen[tid]; /* not a fresh load: the first job may already be posted */
  for (;;) {
    unsigned long g;
    double t0 = 0;
    int spins = 0;
    while ((g = atomic_load_explicit(&g_gen, memory_order_acquire)) == seen) {
      if (poll_step(&spins, &t0)) {
        pthread_mutex_lock(&g_mx);
        while ((g = atomic_load_explicit(&g_gen, memory_order_acquire)) == seen) pthread_cond_wait(&g_cv, &g_mx);
        pthread_mutex_unlock(&g_mx);
        break;
      }
    }
    seen = g;
#if RESQ_CPU_X86
    _mm_setcsr(g_mxcsr); /* same rounding mode / FTZ / DAZ as the calling thread */
#endif
    if (tid < g_nt) g_fn(g_arg, tid, g_nt);
    if (atomic_fetch_sub_explicit(&g_pending, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&g_mx);
      pthread_cond_broadcast(&g_done_cv);
      pthread_mutex_unlock(&g_mx);
    }
  }
  return NULL;
}

void resq_cpu_parallel(resq_cpu_task fn, void *arg, int nthreads) {
  int maxt = resq_cpu_get_threads();
  if (nthreads > maxt) nthreads = maxt;
  if (nthreads <= 1) {
    fn(arg, 0, 1);
    return;
  }
  while (g_nworkers < nthreads - 1) { /* start workers lazily; on failure run with fewer */
    int tid = g_nworkers + 1;
    g_start_gen[tid] = atomic_load(&g_gen);
    if (pthread_create(&g_workers[tid].th, NULL, worker_main, (void *)(intptr_t)tid) != 0) break;
    g_workers[tid].started = 1;
    g_nworkers++;
  }
  if (nthreads > g_nworkers + 1) nthreads = g_nworkers + 1;
  if (nthreads <= 1) {
    fn(arg, 0, 1);
    return;
  }
  g_fn = fn;
  g_arg = arg;
  g_nt = nthreads;
#if RESQ_CPU_X86
  g_mxcsr = _mm_getcsr();
#endif
  /* every started worker takes part in the handshake (those with tid >= nt do nothing) */
  atomic_store_explicit(&g_pending, g_nworkers, memory_order_relaxed);
  pthread_mutex_lock(&g_mx);
  atomic_fetch_add_explicit(&g_gen, 1, memory_order_release);
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mx);
  fn(arg, 0, nthreads);
  int spins = 0;
  double t0 = 0;
  while (atomic_load_explicit(&g_pending, memory_order_acquire) != 0) {
    if (poll_step(&spins, &t0)) {
      pthread_mutex_lock(&g_mx);
      while (atomic_load_explicit(&g_pending, memory_order_acquire) != 0) pthread_cond_wait(&g_done_cv, &g_mx);
      pthread_mutex_unlock(&g_mx);
      break;
    }
  }
}
