/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_util.c -- see bench_util.h. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "resq/dtype.h"
#include "resq_bench.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RB_X86 1
#endif

#ifndef RESQ_BENCH_SHAPES_DIR_DEFAULT
#define RESQ_BENCH_SHAPES_DIR_DEFAULT "bench/shapes"
#endif

void *rb_alloc(size_t bytes) {
  void *p = NULL;
  size_t align = bytes >= 4 * RB_MIB ? 2 * RB_MIB : 64;
  if (bytes == 0) bytes = 64;
  if (posix_memalign(&p, align, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (align == 2 * RB_MIB) (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

void rb_free(void *p) { free(p); }

double rb_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rb_fill_f32_uniform(resq_rng *r, float *x, size_t n, float lo, float hi) {
  const float w = hi - lo;
  for (size_t i = 0; i < n; i += 2) {
    uint64_t u = resq_rng_u64(r);
    x[i] = lo + w * ((float)(uint32_t)(u >> 40) * 0x1.0p-24f);
    if (i + 1 < n) x[i + 1] = lo + w * ((float)(uint32_t)((u >> 8) & 0xffffffu) * 0x1.0p-24f);
  }
}

void rb_fill_f16_normal(resq_rng *r, uint16_t *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = resq_f32_to_f16((float)resq_rng_normal(r));
}

void rb_fill_bf16_uniform(resq_rng *r, uint16_t *x, size_t n) {
  /* 16 random bits per element: (b - 32768) / 32768 in [-1, 1), rounded to bf16 */
  for (size_t i = 0; i < n; i += 4) {
    uint64_t u = resq_rng_u64(r);
    for (size_t j = 0; j < 4 && i + j < n; j++) {
      int b = (int)((u >> (16 * j)) & 0xffffu) - 32768;
      x[i + j] = resq_f32_to_bf16((float)b * 0x1.0p-15f);
    }
  }
}

void rb_fill_u8(resq_rng *r, uint8_t *x, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t u = resq_rng_u64(r);
    for (size_t j = 0; j < 8 && i + j < n; j++) x[i + j] = (uint8_t)(u >> (8 * j));
  }
}

void rb_fill_s8(resq_rng *r, int8_t *x, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t u = resq_rng_u64(r);
    for (size_t j = 0; j < 8 && i + j < n; j++) x[i + j] = (int8_t)((int)((u >> (8 * j)) & 0xffu) - 128);
  }
}

static size_t parse_size(const char *s) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s) return 0;
  while (*end == ' ') end++;
  if (*end == 'K' || *end == 'k') v <<= 10;
  else if (*end == 'M' || *end == 'm') v <<= 20;
  else if (*end == 'G' || *end == 'g') v <<= 30;
  return (size_t)v;
}

size_t rb_llc_bytes(void) {
  size_t best = 0;
  int best_level = 0;
  for (int i = 0; i < 8; i++) {
    char path[128], buf[64];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
    FILE *f = fopen(path, "r");
    if (!f) break;
    int level = 0;
    if (fscanf(f, "%d", &level) != 1) level = 0;
    fclose(f);
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
    f = fopen(path, "r");
    if (!f) continue;
    if (fgets(buf, sizeof buf, f) && level >= best_level) {
      best_level = level;
      best = parse_size(buf);
    }
    fclose(f);
  }
#ifdef _SC_LEVEL3_CACHE_SIZE
  if (best == 0) {
    long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v > 0) best = (size_t)v;
  }
#endif
  return best;
}

size_t rb_cold_bytes(void) {
  const char *e = getenv("RESQ_BENCH_COLD_BYTES");
  if (e && *e) {
    size_t v = parse_size(e);
    if (v > 0) return v;
  }
  size_t c = 256 * RB_MIB, l = 2 * rb_llc_bytes();
  return l > c ? l : c;
}

int rb_copies_for(size_t bytes) {
  size_t cold = rb_cold_bytes();
  if (bytes == 0) return 1;
  size_t n = (cold + bytes - 1) / bytes;
  return n < 1 ? 1 : (int)n;
}

int rb_quick(void) {
  const char *e = getenv("RESQ_BENCH_SET");
  return e && strcmp(e, "quick") == 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void append_layer(rb_shape *s, const char *model, const char *layer) {
  size_t len = strlen(s->layers), cap = sizeof s->layers;
  /* same model as the last entry: append ",layer"; else ";model:layer" */
  const char *last = strrchr(s->layers, ';');
  last = last ? last + 1 : s->layers;
  size_t mlen = strlen(model);
  if (len > 0 && strncmp(last, model, mlen) == 0 && last[mlen] == ':')
    snprintf(s->layers + len, cap - len, ",%s", layer);
  else
    snprintf(s->layers + len, cap - len, "%s%s:%s", len ? ";" : "", model, layer);
}

int rb_shapes_load(rb_shapes *out) {
  const char *dir = getenv("RESQ_BENCH_SHAPES_DIR");
  if (!dir || !*dir) dir = RESQ_BENCH_SHAPES_DIR_DEFAULT;
  const char *set = rb_quick() ? "quick" : "full";
  memset(out, 0, sizeof *out);
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "resq bench: cannot open shapes directory %s: %s\n", dir, strerror(errno));
    return -1;
  }
  char *names[64];
  int nfiles = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && nfiles < 64) {
    size_t l = strlen(e->d_name);
    if (l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0) names[nfiles++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)nfiles, sizeof names[0], cmp_str);
  int rc = 0;
  for (int f = 0; f < nfiles; f++) {
    char path[1024], line[512], model[128];
    snprintf(path, sizeof path, "%s/%s", dir, names[f]);
    snprintf(model, sizeof model, "%.*s", (int)(strlen(names[f]) - 4), names[f]);
    FILE *fp = fopen(path, "r");
    if (!fp) {
      fprintf(stderr, "resq bench: cannot read %s\n", path);
      rc = -1;
      continue;
    }
    int lineno = 0;
    while (fgets(line, sizeof line, fp)) {
      lineno++;
      char *h = strchr(line, '#');
      if (h) *h = 0;
      char lname[128], flag[32] = "";
      long long N, K;
      int n = sscanf(line, "%127s %lld %lld %31s", lname, &N, &K, flag);
      if (n <= 0) continue;
      if (n < 3 || N <= 0 || K <= 0 || (n == 4 && strcmp(flag, "quick") != 0)) {
        fprintf(stderr, "resq bench: %s:%d: expected \"name N K [quick]\"\n", path, lineno);
        rc = -1;
        continue;
      }
      if (rb_quick() && n < 4) continue;
      int s;
      for (s = 0; s < out->nshapes; s++)
        if (out->shape[s].N == N && out->shape[s].K == K) break;
      if (s == out->nshapes) {
        if (out->nshapes == RB_MAX_SHAPES) continue;
        out->shape[s].N = N;
        out->shape[s].K = K;
        out->nshapes++;
      }
      append_layer(&out->shape[s], model, lname);
    }
    fclose(fp);
  }
  for (int f = 0; f < nfiles; f++) free(names[f]);

  char path[1024], line[512];
  snprintf(path, sizeof path, "%s/tokens.conf", dir);
  FILE *fp = fopen(path, "r");
  if (!fp) {
    fprintf(stderr, "resq bench: cannot read %s\n", path);
    return -1;
  }
  while (fgets(line, sizeof line, fp)) {
    char *h = strchr(line, '#');
    if (h) *h = 0;
    char *tok = strtok(line, " \t\r\n");
    if (!tok || strcmp(tok, set) != 0) continue;
    while ((tok = strtok(NULL, " \t\r\n")) != NULL && out->ntokens < RB_MAX_TOKENS) {
      long long m = atoll(tok);
      if (m > 0) out->tokens[out->ntokens++] = m;
    }
  }
  fclose(fp);
  if (out->nshapes == 0 || out->ntokens == 0) {
    fprintf(stderr, "resq bench: no shapes or token counts for set \"%s\" in %s\n", set, dir);
    return -1;
  }
  return rc;
}

static int count_cpus(const char *list) {
  int n = 0;
  const char *p = list;
  while (*p) {
    char *end;
    long a = strtol(p, &end, 10);
    if (end == p) break;
    long b = a;
    if (*end == '-') b = strtol(end + 1, &end, 10);
    n += (int)(b - a + 1);
    p = end;
    if (*p == ',') p++;
    else break;
  }
  return n;
}

int rb_thread_placement(char *buf, size_t n) {
  int min_cpus = 1 << 30;
  size_t len = 0;
  buf[0] = 0;
  DIR *d = opendir("/proc/self/task");
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[512], line[512], allowed[128] = "?";
    int last = -1;
    snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    FILE *f = fopen(path, "r");
    if (f) {
      while (fgets(line, sizeof line, f))
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
          sscanf(line + 18, "%127s", allowed);
          break;
        }
      fclose(f);
    }
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    f = fopen(path, "r");
    if (f) {
      if (fgets(line, sizeof line, f)) {
        char *p = strrchr(line, ')');
        /* field 39 (processor); after ')' comes field 3 */
        for (int field = 2; p && field < 39; field++) p = strchr(p + 1, ' ');
        if (p) last = atoi(p + 1);
      }
      fclose(f);
    }
    int c = count_cpus(allowed);
    if (c > 0 && c < min_cpus) min_cpus = c;
    if (len < n)
      len += (size_t)snprintf(buf + len, n - len, "%stid %s: cpus %s, last on %d", len ? "; " : "",
                              e->d_name, allowed, last);
  }
  closedir(d);
  return min_cpus == (1 << 30) ? 0 : min_cpus;
}

void rb_context_common(void) {
  char buf[2048];
  resq_bench_context("resq_set", rb_quick() ? "quick" : "full");
#ifdef __VERSION__
  resq_bench_context("resq_compiler", "gcc-compatible " __VERSION__);
#endif
  snprintf(buf, sizeof buf, "%zu", rb_cold_bytes());
  resq_bench_context("resq_cold_bytes", buf);
  snprintf(buf, sizeof buf, "%zu", rb_llc_bytes());
  resq_bench_context("resq_llc_bytes", buf);
  snprintf(buf, sizeof buf, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
  resq_bench_context("resq_online_cpus", buf);
  static const char *const vars[] = {"OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES",
                                     "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE"};
  size_t len = 0;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s=%s", i ? " " : "", vars[i],
                            v ? v : "(unset)");
    if (len >= sizeof buf) break;
  }
  resq_bench_context("resq_env", buf);
}

double rb_gamma_f32(int64_t K) {
  const double u = 0x1.0p-24, ku = (double)K * u;
  return ku / (1.0 - ku);
}

/* ---- the in-process read probe ---- */
#ifdef RB_X86
__attribute__((target("avx512f"))) static uint64_t probe_avx512(const unsigned char *p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512((const void *)(p + i)));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512((const void *)(p + i + 64)));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512((const void *)(p + i + 128)));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512((const void *)(p + i + 192)));
  }
  a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  return (uint64_t)_mm512_reduce_add_epi64(a0);
}
#endif
static uint64_t probe_plain(const unsigned char *p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, w[4];
  for (size_t i = 0; i + 32 <= n; i += 32) {
    memcpy(w, p + i, 32);
    a0 += w[0];
    a1 += w[1];
    a2 += w[2];
    a3 += w[3];
  }
  return a0 + a1 + a2 + a3;
}

typedef struct probe_arg {
  void *const *bufs;
  const size_t *sizes;
  int n, tid, threads, avx512;
  uint64_t sink;
} probe_arg;

static void *probe_thread(void *v) {
  probe_arg *a = v;
  uint64_t s = 0;
  for (int b = 0; b < a->n; b++) {
    size_t per = (a->sizes[b] / (size_t)a->threads) & ~(size_t)255;
    size_t lo = per * (size_t)a->tid, len = a->tid == a->threads - 1 ? (a->sizes[b] - lo) & ~(size_t)255 : per;
    const unsigned char *p = (const unsigned char *)a->bufs[b] + lo;
#ifdef RB_X86
    s += a->avx512 ? probe_avx512(p, len) : probe_plain(p, len);
#else
    s += probe_plain(p, len);
#endif
  }
  a->sink = s;
  return NULL;
}

/* The probe's threads are placed explicitly, one per online CPU (thread t on CPU
 * t mod n, the calling thread included): a thread created with pthread_create
 * inherits its creator's affinity mask, and in a program that loaded libgomp with
 * OMP_PROC_BIND=close (bench_gemm_cpu, for oneDNN) the main thread is pinned to one
 * CPU, so unplaced probe threads would all share that CPU and measure one core's
 * bandwidth (13 GB/s against 27 GB/s for two cores on the Emerald Rapids guest). */
static void probe_place(pthread_attr_t *at, int t) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET((int)(t % ncpu), &set);
  pthread_attr_setaffinity_np(at, sizeof set, &set);
}

double rb_read_probe(void *const *bufs, const size_t *sizes, int n, int threads, int reps) {
  enum { MAXT = 64, MAXR = 15 };
  pthread_t th[MAXT];
  probe_arg args[MAXT];
  double rate[MAXR];
  size_t total = 0;
  if (threads < 1) threads = 1;
  if (threads > MAXT) threads = MAXT;
  if (reps < 1) reps = 1;
  if (reps > MAXR) reps = MAXR;
  for (int b = 0; b < n; b++) total += sizes[b] & ~(size_t)255;
  /* the calling thread runs part 0 on CPU 0 for the probe's duration, then gets its mask back */
  cpu_set_t saved;
  const int have_saved = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
  {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  for (int r = 0; r < reps; r++) {
    double t0 = rb_now();
    for (int t = 0; t < threads; t++) {
      args[t] = (probe_arg){bufs, sizes, n, t, threads, 0, 0};
#ifdef RB_X86
      args[t].avx512 = __builtin_cpu_supports("avx512f");
#endif
      if (t > 0) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        probe_place(&at, t);
        int e = pthread_create(&th[t], &at, probe_thread, &args[t]);
        pthread_attr_destroy(&at);
        if (e != 0) {
          for (int u = 1; u < t; u++) pthread_join(th[u], NULL);
          if (have_saved) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
          return 0.0;
        }
      }
    }
    probe_thread(&args[0]);
    for (int t = 1; t < threads; t++) pthread_join(th[t], NULL);
    rate[r] = (double)total / (rb_now() - t0);
  }
  if (have_saved) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
  for (int i = 1; i < reps; i++)
    for (int j = i; j > 0 && rate[j - 1] > rate[j]; j--) {
      double x = rate[j];
      rate[j] = rate[j - 1];
      rate[j - 1] = x;
    }
  return rate[reps / 2];
}

static int rb_cmp_f64(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One side of a pair: untimed calls for warm_s (at least one), then timed
 * calls for block_s (at least one); the mean time of a timed call, or < 0 on
 * failure (status in *bad). */
static double rb_pair_side(rb_pair_fn f, void *ctx, double warm_s, double block_s, int *bad) {
  int s = 0;
  double t0 = rb_now();
  do s = f(ctx);
  while (!s && rb_now() - t0 < warm_s);
  int n = 0;
  t0 = rb_now();
  double t = 0;
  while (!s) {
    s = f(ctx);
    n++;
    t = rb_now() - t0;
    if (t >= block_s) break;
  }
  if (s) *bad = s;
  return s ? -1.0 : t / n;
}

int rb_pair_times(rb_pair_fn a, void *actx, rb_pair_fn b, void *bctx, double warm_s, double block_s,
                  double budget_s, int nmin, int nmax, rb_pair_stats *out, int *bad) {
  double r[RB_PAIRS_MAX];
  *bad = 0;
  if (nmax > RB_PAIRS_MAX) nmax = RB_PAIRS_MAX;
  if (nmin > nmax) nmin = nmax;
  double t0 = rb_now();
  const double ta = rb_pair_side(a, actx, warm_s, block_s, bad),
               tb = ta < 0 ? -1.0 : rb_pair_side(b, bctx, warm_s, block_s, bad);
  if (ta < 0 || tb < 0) return -1;
  const double tpair = rb_now() - t0;
  int n = tpair > 0 ? (int)(budget_s / tpair) : nmax;
  if (n > nmax) n = nmax;
  if (n < nmin) n = nmin;
  n |= 1;
  if (n > nmax) n -= 2;
  for (int i = 0; i < n; i++) {
    double t[2];
    for (int k = 0; k < 2; k++) {
      const int side = k ^ (i & 1); /* 0: A, 1: B */
      t[side] = side ? rb_pair_side(b, bctx, warm_s, block_s, bad) : rb_pair_side(a, actx, warm_s, block_s, bad);
      if (t[side] < 0) return -1;
    }
    r[i] = t[1] > 0 ? t[0] / t[1] : 0.0;
  }
  qsort(r, (size_t)n, sizeof r[0], rb_cmp_f64);
  out->med = r[n / 2];
  out->q1 = r[n / 4];
  out->q3 = r[(3 * n) / 4];
  out->n = n;
  return n;
}
