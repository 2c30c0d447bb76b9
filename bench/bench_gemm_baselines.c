/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_gemm_baselines.c -- the CPU 16-bit and 8-bit GEMM baselines at
 * the layer shapes of bench/shapes/, C[M,N] = A[M,K] W[N,K]^T:
 *
 *   built with RESQ_BENCH_ONEDNN and RESQ_BENCH_NO_MAIN -> the oneDNN baselines of
 *     bench_gemm_cpu (oneDNN C API, OpenMP runtime; bench_onednn.h), registered
 *     there next to the ResQ GEMM of the same shape, so that their ratios are
 *     measured back to back in one process
 *     gemm_bf16_f32__onednn/M/N/K   bf16 x bf16 -> f32 matmul: THE 16-bit baseline
 *     gemm_u8s8_f32__onednn/M/N/K   u8 x s8 -> f32 with per-N output scales, no zero
 *                                   points (the best case of oneDNN int8): the W8A8 peer
 *   built with RESQ_BENCH_OPENBLAS -> bench_gemm_openblas (OpenBLAS, pthreads, no OpenMP)
 *     gemm_f32__openblas/M/N/K      cblas_sgemm(RowMajor, NoTrans, Trans)
 *     gemv_f32__openblas/M:1/N/K    cblas_sgemv, the fp32 M = 1 path
 *
 * Two processes because an OpenMP runtime started with OMP_PROC_BIND set pins
 * the main thread to one core and OpenBLAS's worker threads inherit that mask
 * (cpu-anchors: every sgemm number exactly halved). bench_gemm_openblas also
 * refuses to time when any of its threads may run on fewer CPUs than OpenBLAS
 * uses threads.
 *
 * Method (the same as the CPU anchors):
 *   - oneDNN: weights are logical [K, N] with format_tag_any in the primitive;
 *     the user's [N, K] row-major weights (tag ba) are reordered once per copy,
 *     outside the timed loop, into the layout the primitive asks for; the
 *     primitive is created once per benchmark.
 *   - Cold weights: copies of the weights are rotated, one per call, so that
 *     the copies together are >= rb_cold_bytes() (max(256 MiB, 2 x LLC)); LLM
 *     decoding reads every layer's weights once per token from DRAM. A single
 *     copy re-used every call sits in the LLC and inflates M = 1 results (3.7x
 *     for oneDNN int8 on a 32 MiB L3).
 *   - Checked before timing: 64 sampled outputs (computed with the last weight
 *     copy) against a double-precision dot product of the same inputs,
 *     |y - y*| <= gamma_K sum_k |a_k w_k| (ref/CONTRACT.md section 11); the
 *     largest error / sum|a w| is reported as counter "check_relerr".
 *   - Counters: ops = 2 M N K; bytes = weights + activations + output (+ the N
 *     int8 scales); wbytes = weight bytes alone (for the decode bandwidth
 *     fraction). The label names the baseline (the oneDNN bf16 matmul of the
 *     same shape), the instruction ceiling (machine_peak_*), the implementation
 *     the library chose, and the number of weight copies. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "resq/dtype.h"
#include "resq/rng.h"
#include "resq_bench.h"

#if defined(RESQ_BENCH_ONEDNN) == defined(RESQ_BENCH_OPENBLAS)
#error "define exactly one of RESQ_BENCH_ONEDNN, RESQ_BENCH_OPENBLAS"
#endif

#ifdef RESQ_BENCH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef RESQ_BENCH_OPENBLAS
#include <cblas.h>
#endif

#define NCHECK 64
/* Decode-sized GEMMs (M <= PROBE_MAX_M) are followed by an in-process read
 * probe over their own weight copies (counter probe_bw, bytes/s). */
#define PROBE_MAX_M 16
static int g_threads = 1; /* threads the library uses (for the probe) */
#define BASELINE_16BIT "gemm_bf16_f32__onednn"

/* A sampled output and its double-precision reference. */
typedef struct check_pt {
  int64_t m, n;
} check_pt;

static void pick_points(check_pt *pt, int64_t M, int64_t N) {
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name("gemm_check_points"));
  for (int i = 0; i < NCHECK; i++) {
    pt[i].m = i == 0 ? 0 : (i == 1 ? M - 1 : (int64_t)resq_rng_below(&r, (uint64_t)M));
    pt[i].n = i == 0 ? 0 : (i == 1 ? N - 1 : (int64_t)resq_rng_below(&r, (uint64_t)N));
  }
}

/* Compare sampled outputs y[m*ldy + n]; ref(m, n, &sumabs) gives y* and
 * sum|a w|. Returns the largest |y - y*| / sum|a w|, or -1 (and fills why)
 * when a point is outside gamma_K sum|a w|. */
typedef double (*ref_fn)(const void *ctx, int64_t m, int64_t n, double *sumabs);
static double check_points(const float *y, int64_t ldy, const check_pt *pt, int64_t K, ref_fn ref,
                           const void *ctx, char *why, size_t whylen) {
  double worst = 0.0;
  const double g = rb_gamma_f32(K);
  for (int i = 0; i < NCHECK; i++) {
    double sa = 0.0, yr = ref(ctx, pt[i].m, pt[i].n, &sa);
    double yv = (double)y[pt[i].m * ldy + pt[i].n], err = fabs(yv - yr);
    if (!(err <= g * sa)) { /* also catches NaN */
      snprintf(why, whylen, "wrong result at (m=%lld, n=%lld): %.9g, reference %.9g, bound %.3g",
               (long long)pt[i].m, (long long)pt[i].n, yv, yr, g * sa);
      return -1.0;
    }
    if (sa > 0 && err / sa > worst) worst = err / sa;
  }
  return worst;
}

static void set_counters(resq_bench_state *st, int64_t M, int64_t N, int64_t K, double wbytes,
                         double abytes, double obytes, double relerr) {
  resq_bench_counter(st, "ops", 2.0 * (double)M * (double)N * (double)K, RESQ_CTR_RATE);
  resq_bench_counter(st, "bytes", wbytes + abytes + obytes, RESQ_CTR_RATE);
  resq_bench_counter(st, "wbytes", wbytes, RESQ_CTR_RATE);
  resq_bench_counter(st, "check_relerr", relerr, RESQ_CTR_PLAIN);
}

/* ======================================================================= */
#ifdef RESQ_BENCH_ONEDNN

static dnnl_engine_t g_eng;
static dnnl_stream_t g_stream;

/* Weights of the current shape, kept between benchmarks of the same (type, N, K):
 * the user copy [N][K] and the reordered copies in the primitive's layout. */
typedef struct wcache {
  int valid;
  dnnl_data_type_t dt;
  int64_t N, K;
  void *user;            /* [N][K] bf16 bits or s8 */
  float *scales;         /* [N] (int8) */
  dnnl_memory_desc_t md; /* layout of the reordered copies */
  int ncopies;
  dnnl_memory_t *copies;
} wcache;
static wcache g_wc[2]; /* 0: bf16, 1: int8 */

static void wcache_drop_copies(wcache *c) {
  for (int i = 0; i < c->ncopies; i++) dnnl_memory_destroy(c->copies[i]);
  free(c->copies);
  c->copies = NULL;
  c->ncopies = 0;
}

static void wcache_drop(wcache *c) {
  wcache_drop_copies(c);
  rb_free(c->user);
  rb_free(c->scales);
  memset(c, 0, sizeof *c);
}

#define DNNL_TRY(call, what)                                                                       \
  do {                                                                                             \
    dnnl_status_t s_ = (call);                                                                     \
    if (s_ != dnnl_success) {                                                                      \
      snprintf(why, whylen, "oneDNN %s failed (status %d)", what, (int)s_);                        \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)


/* Double-precision reference of one output from the user copies. */
typedef struct dnnl_ref_ctx {
  dnnl_data_type_t dt;
  const void *a, *w;
  const float *scales;
  int64_t K;
} dnnl_ref_ctx;

static double dnnl_ref(const void *vctx, int64_t m, int64_t n, double *sumabs) {
  const dnnl_ref_ctx *c = vctx;
  double y = 0.0, sa = 0.0;
  if (c->dt == dnnl_bf16) {
    const uint16_t *a = (const uint16_t *)c->a + m * c->K, *w = (const uint16_t *)c->w + n * c->K;
    for (int64_t k = 0; k < c->K; k++) {
      double p = (double)resq_bf16_to_f32(a[k]) * (double)resq_bf16_to_f32(w[k]);
      y += p;
      sa += fabs(p);
    }
  } else {
    const uint8_t *a = (const uint8_t *)c->a + m * c->K;
    const int8_t *w = (const int8_t *)c->w + n * c->K;
    int64_t acc = 0, acca = 0;
    for (int64_t k = 0; k < c->K; k++) {
      int64_t p = (int64_t)a[k] * (int64_t)w[k];
      acc += p;
      acca += p < 0 ? -p : p;
    }
    y = (double)acc * (double)c->scales[n];
    sa = (double)acca * (double)c->scales[n];
  }
  *sumabs = sa;
  return y;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

/* 1 when oneDNN's u8 x s8 kernels on this CPU have no VNNI: they multiply with
 * vpmaddubsw, whose u8*s8 pair sums saturate in int16 (255 * 128 * 2 > 32767),
 * so full-range u8 activations give wrong results (oneDNN developer guide,
 * "Nuances of int8 Computations"; seen here on an AVX2 Zen 3: 583.13 against
 * 556.65 at the first checked output). The baseline then feeds activations in
 * 0..127, where no pair sum saturates (127 * 128 * 2 = 32512): the results
 * are exact and checked as everywhere, and the time does not depend on the
 * values. The label says act=u7. */
static int onednn_int8_saturates(void) {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx2_vnni:
    case dnnl_cpu_isa_avx512_core_vnni:
    case dnnl_cpu_isa_avx512_core_bf16:
    case dnnl_cpu_isa_avx512_core_amx: return 0;
    default: return 1;
  }
}

/* The user weights [N][K] (and int8 scales) of (dt, N, K), made once per shape. */
static int wcache_user(wcache *c, dnnl_data_type_t dt, int64_t N, int64_t K, char *why, size_t whylen) {
  const size_t elem = dt == dnnl_bf16 ? 2 : 1;
  if (c->valid && c->dt == dt && c->N == N && c->K == K) return 0;
  wcache_drop(c);
  c->user = rb_alloc((size_t)(N * K) * elem);
  c->scales = rb_alloc((size_t)N * sizeof(float));
  if (!c->user || !c->scales) {
    snprintf(why, whylen, "out of memory (weights %lld x %lld)", (long long)N, (long long)K);
    return -1;
  }
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name(dt == dnnl_bf16 ? "onednn_w_bf16" : "onednn_w_s8"));
  if (dt == dnnl_bf16) rb_fill_bf16_uniform(&r, c->user, (size_t)(N * K));
  else rb_fill_s8(&r, c->user, (size_t)(N * K));
  rb_fill_f32_uniform(&r, c->scales, (size_t)N, 0.5e-3f, 1.5e-3f);
  c->valid = 1;
  c->dt = dt;
  c->N = N;
  c->K = K;
  return 0;
}

/* The rotated copies of the user weights, reordered (outside any timing) into
 * the layout md the primitive asked for; kept while md does not change. */
static int wcache_copies(wcache *c, const dnnl_memory_desc_t *md, char *why, size_t whylen) {
  if (c->copies && dnnl_memory_desc_equal(&c->md, md)) return 0;
  wcache_drop_copies(c);
  c->md = *md;
  int n = rb_copies_for(dnnl_memory_desc_get_size(md));
  c->copies = calloc((size_t)n, sizeof *c->copies);
  if (!c->copies) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  dnnl_memory_desc_t umd;
  dnnl_dims_t dims = {c->K, c->N};
  dnnl_memory_t um;
  dnnl_primitive_desc_t rpd;
  dnnl_primitive_t rp;
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&umd, 2, dims, c->dt, dnnl_ba), "user weights desc");
  DNNL_TRY(dnnl_memory_create(&um, &umd, g_eng, c->user), "user weights memory");
  DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &umd, g_eng, md, g_eng, NULL), "reorder desc");
  DNNL_TRY(dnnl_primitive_create(&rp, rpd), "reorder primitive");
  for (int i = 0; i < n; i++) {
    DNNL_TRY(dnnl_memory_create(&c->copies[i], md, g_eng, DNNL_MEMORY_ALLOCATE), "weights memory");
    c->ncopies = i + 1;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, c->copies[i]}};
    DNNL_TRY(dnnl_primitive_execute(rp, g_stream, 2, args), "reorder");
  }
  DNNL_TRY(dnnl_stream_wait(g_stream), "stream wait");
  dnnl_primitive_destroy(rp);
  dnnl_primitive_desc_destroy(rpd);
  dnnl_memory_destroy(um);
  return 0;
}

/* Build the matmul for (M, N, K) once. */
static int dnnl_make(int int8, int64_t M, int64_t N, int64_t K, const float *scales, dnnl_primitive_desc_t *pd,
                     dnnl_primitive_t *prim, const char **impl, char *why, size_t whylen) {
  dnnl_memory_desc_t smd, wmd, dmd;
  dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N};
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 2, sd, int8 ? dnnl_u8 : dnnl_bf16, dnnl_ab), "src desc");
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, int8 ? dnnl_s8 : dnnl_bf16, dnnl_format_tag_any),
           "weights desc");
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab), "dst desc");
  DNNL_TRY(dnnl_matmul_desc_init(&desc, &smd, &wmd, NULL, &dmd), "matmul desc");
  DNNL_TRY(dnnl_primitive_attr_create(&attr), "attr");
  if (int8) DNNL_TRY(dnnl_primitive_attr_set_output_scales(attr, N, 1 << 1, scales), "output scales");
  dnnl_status_t s = dnnl_primitive_desc_create(pd, &desc, attr, g_eng, NULL);
  dnnl_primitive_attr_destroy(attr);
  if (s != dnnl_success) {
    *pd = NULL;
    snprintf(why, whylen, "%soneDNN has no %s matmul for this shape on this CPU (status %d)",
             RESQ_BENCH_SKIP_PREFIX, int8 ? "u8 x s8" : "bf16", (int)s);
    return -1;
  }
  *impl = "?";
  dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, (void *)impl);
  DNNL_TRY(dnnl_primitive_create(prim, *pd), "primitive");
  return 0;
}

static int dnnl_run(dnnl_primitive_t prim, dnnl_memory_t a, dnnl_memory_t w, dnnl_memory_t y) {
  dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}};
  if (dnnl_primitive_execute(prim, g_stream, 3, args) != dnnl_success) return -1;
  return dnnl_stream_wait(g_stream) == dnnl_success ? 0 : -1;
}

typedef struct dnnl_params {
  int int8;
} dnnl_params;

/* One matmul of (M, N, K) as its benchmark runs it: the primitive, src and dst
 * memories over a and y (a filled with the benchmark's seed), and the weight
 * cache's rotated copies (next: the copy the next call reads). */
struct rb_onednn_mm {
  int int8;
  int64_t M, N, K;
  wcache *c;
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
  dnnl_memory_t am, ym;
  void *a;
  float *y;
  const char *impl;
  int next;
};

static void mm_close(struct rb_onednn_mm *m) {
  if (m->am) dnnl_memory_destroy(m->am);
  if (m->ym) dnnl_memory_destroy(m->ym);
  if (m->prim) dnnl_primitive_destroy(m->prim);
  if (m->pd) dnnl_primitive_desc_destroy(m->pd);
  rb_free(m->a);
  rb_free(m->y);
  memset(m, 0, sizeof *m);
}

/* 0, or -1 with why (a RESQ_BENCH_SKIP_PREFIX why: no such matmul here); mm_close either way */
static int mm_open(struct rb_onednn_mm *m, int int8, int64_t M, int64_t N, int64_t K, char *why, size_t whylen) {
  const dnnl_data_type_t wdt = int8 ? dnnl_s8 : dnnl_bf16, adt = int8 ? dnnl_u8 : dnnl_bf16;
  const size_t esz = int8 ? 1 : 2;
  memset(m, 0, sizeof *m);
  m->int8 = int8, m->M = M, m->N = N, m->K = K;
  m->c = &g_wc[int8];
  m->impl = "?";
  m->a = rb_alloc((size_t)(M * K) * esz);
  m->y = rb_alloc((size_t)(M * N) * sizeof(float));
  if (!m->a || !m->y) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  if (wcache_user(m->c, wdt, N, K, why, whylen)) return -1;
  if (dnnl_make(int8, M, N, K, m->c->scales, &m->pd, &m->prim, &m->impl, why, whylen)) return -1;
  if (wcache_copies(m->c, dnnl_primitive_desc_query_md(m->pd, dnnl_query_weights_md, 0), why, whylen)) return -1;
  resq_rng r;
  dnnl_memory_desc_t amd, ymd;
  dnnl_dims_t ad = {M, K}, yd = {M, N};
  resq_rng_init(&r, resq_seed_from_name(int8 ? "onednn_a_u8" : "onednn_a_bf16"));
  if (int8) {
    rb_fill_u8(&r, m->a, (size_t)(M * K));
    if (onednn_int8_saturates())
      for (int64_t i = 0; i < M * K; i++) ((uint8_t *)m->a)[i] &= 0x7f;
  } else rb_fill_bf16_uniform(&r, m->a, (size_t)(M * K));
  memset(m->y, 0xff, (size_t)(M * N) * sizeof(float)); /* NaN: an unwritten output fails the check */
  if (dnnl_memory_desc_init_by_tag(&amd, 2, ad, adt, dnnl_ab) != dnnl_success ||
      dnnl_memory_desc_init_by_tag(&ymd, 2, yd, dnnl_f32, dnnl_ab) != dnnl_success ||
      dnnl_memory_create(&m->am, &amd, g_eng, m->a) != dnnl_success ||
      dnnl_memory_create(&m->ym, &ymd, g_eng, m->y) != dnnl_success) {
    snprintf(why, whylen, "oneDNN src/dst memory creation failed");
    return -1;
  }
  return 0;
}

/* one call on the next weight copy */
static int mm_call(struct rb_onednn_mm *m) {
  const int i = m->next;
  if (++m->next == m->c->ncopies) m->next = 0;
  return dnnl_run(m->prim, m->am, m->c->copies[i], m->ym);
}

static void bm_onednn(resq_bench_state *st, const void *params) {
  const int int8 = ((const dnnl_params *)params)->int8;
  const int64_t M = resq_bench_arg(st, 0), N = resq_bench_arg(st, 1), K = resq_bench_arg(st, 2);
  const size_t esz = int8 ? 1 : 2;
  struct rb_onednn_mm m;
  char why[512] = "";
  check_pt pt[NCHECK];
  double worst = 0.0;
  wcache *c;

  if (mm_open(&m, int8, M, N, K, why, sizeof why)) goto fail;
  c = m.c;
  /* check once, with the last weight copy (every copy is a reorder of the
   * same user weights) */
  pick_points(pt, M, N);
  {
    dnnl_ref_ctx ctx = {int8 ? dnnl_s8 : dnnl_bf16, m.a, c->user, c->scales, K};
    if (dnnl_run(m.prim, m.am, c->copies[c->ncopies - 1], m.ym)) {
      snprintf(why, sizeof why, "oneDNN matmul execution failed");
      goto fail;
    }
    worst = check_points(m.y, N, pt, K, dnnl_ref, &ctx, why, sizeof why);
    if (worst < 0) goto fail;
  }
  while (resq_bench_keep_running(st, 1)) mm_call(&m);
  set_counters(st, M, N, K, (double)(N * K) * (double)esz + (int8 ? 4.0 * (double)N : 0.0),
               (double)(M * K) * (double)esz, 4.0 * (double)(M * N), worst);
  if (M <= PROBE_MAX_M) {
    void **bufs = calloc((size_t)c->ncopies, sizeof *bufs);
    size_t *sizes = calloc((size_t)c->ncopies, sizeof *sizes);
    if (bufs && sizes) {
      size_t bytes = dnnl_memory_desc_get_size(&c->md);
      for (int i = 0; i < c->ncopies; i++) {
        dnnl_memory_get_data_handle(c->copies[i], &bufs[i]);
        sizes[i] = bytes;
      }
      resq_bench_counter(st, "probe_bw", rb_read_probe(bufs, sizes, c->ncopies, g_threads, 3), RESQ_CTR_PLAIN);
    }
    free(bufs);
    free(sizes);
  }
  if (int8)
    resq_bench_label(st, "baseline=%s/M:%lld/N:%lld/K:%lld;roof=machine_peak_dpbusd;impl=%s%s;copies=%d",
                     BASELINE_16BIT, (long long)M, (long long)N, (long long)K, m.impl,
                     onednn_int8_saturates() ? " act=u7" : "", c->ncopies);
  else
    resq_bench_label(st, "roof=machine_peak_dpbf16;impl=%s;copies=%d", m.impl, c->ncopies);
  goto done;
fail:
  if (strncmp(why, RESQ_BENCH_SKIP_PREFIX, strlen(RESQ_BENCH_SKIP_PREFIX)) == 0)
    resq_bench_skip(st, "%s", why + strlen(RESQ_BENCH_SKIP_PREFIX));
  else
    resq_bench_error(st, "%s", why);
done:
  mm_close(&m);
}

/* Record the library facts and warm up the OpenMP pool (so the thread
 * placement can be read). */
static void onednn_context(void) {
  char buf[4096];
  const dnnl_version_t *v = dnnl_version();
  snprintf(buf, sizeof buf, "%d.%d.%d (hash %s, cpu runtime %u)", v->major, v->minor, v->patch,
           v->hash ? v->hash : "?", v->cpu_runtime);
  resq_bench_context("onednn_version", buf);
  resq_bench_context("onednn_effective_isa", isa_name(dnnl_get_effective_cpu_isa()));
  resq_bench_context("onednn_u8s8_activations",
                     onednn_int8_saturates() ? "0..127 (no VNNI: vpmaddubsw pair sums saturate in int16 on full-range u8)"
                                             : "0..255");
  fprintf(stderr, "oneDNN baselines: oneDNN %d.%d.%d, effective ISA %s\n", v->major, v->minor, v->patch,
          isa_name(dnnl_get_effective_cpu_isa()));
  for (int int8 = 0; int8 < 2; int8++) {
    float scales[256];
    for (int i = 0; i < 256; i++) scales[i] = 1.0f;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    const char *impl = "?";
    char why[256];
    if (dnnl_make(int8, 64, 256, 256, scales, &pd, &prim, &impl, why, sizeof why) == 0) {
      resq_bench_context(int8 ? "onednn_impl_u8s8" : "onednn_impl_bf16", impl);
      /* one execution on scratch buffers starts the OpenMP threads */
      const dnnl_memory_desc_t *md[3] = {dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
                                         dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                                         dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0)};
      dnnl_memory_t m[3] = {NULL, NULL, NULL};
      int ok = 1;
      for (int i = 0; i < 3; i++) ok = ok && dnnl_memory_create(&m[i], md[i], g_eng, DNNL_MEMORY_ALLOCATE) == 0;
      if (ok) {
        for (int i = 0; i < 3; i++) {
          void *h = NULL;
          dnnl_memory_get_data_handle(m[i], &h);
          if (h) memset(h, 0, dnnl_memory_desc_get_size(md[i]));
        }
        dnnl_run(prim, m[0], m[1], m[2]);
      }
      for (int i = 0; i < 3; i++)
        if (m[i]) dnnl_memory_destroy(m[i]);
    } else {
      resq_bench_context(int8 ? "onednn_impl_u8s8" : "onednn_impl_bf16", why);
    }
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
  }
  rb_thread_placement(buf, sizeof buf);
  resq_bench_context("resq_placement", buf);
}

static int backend_init(void) {
  const char *e = getenv("OMP_NUM_THREADS");
  g_threads = e && atoi(e) > 0 ? atoi(e) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (dnnl_engine_create(&g_eng, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&g_stream, g_eng, dnnl_stream_default_flags) != dnnl_success) {
    fprintf(stderr, "oneDNN baselines: cannot create the oneDNN CPU engine\n");
    return -1;
  }
  onednn_context();
  return 0;
}

static void backend_fini(void) {
  wcache_drop(&g_wc[0]);
  wcache_drop(&g_wc[1]);
  dnnl_stream_destroy(g_stream);
  dnnl_engine_destroy(g_eng);
}

static void register_shape(int64_t M, int64_t N, int64_t K) {
  static const char *const names[] = {"M", "N", "K"};
  static const dnnl_params bf16 = {0}, i8 = {1};
  int64_t a[3] = {M, N, K};
  resq_bench_register_args("gemm_bf16_f32__onednn", bm_onednn, &bf16, sizeof bf16, RESQ_BENCH_REAL_TIME, names, a, 3);
  resq_bench_register_args("gemm_u8s8_f32__onednn", bm_onednn, &i8, sizeof i8, RESQ_BENCH_REAL_TIME, names, a, 3);
}

#ifdef RESQ_BENCH_NO_MAIN
#include "bench_onednn.h"
int rb_onednn_init(void) { return backend_init(); }
void rb_onednn_fini(void) { backend_fini(); }
void rb_onednn_register(int64_t M, int64_t N, int64_t K) { register_shape(M, N, K); }
rb_onednn_mm *rb_onednn_int8_open(int64_t M, int64_t N, int64_t K, char *why, size_t whylen) {
  rb_onednn_mm *m = malloc(sizeof *m);
  if (!m) {
    snprintf(why, whylen, "out of memory");
    return NULL;
  }
  if (mm_open(m, 1, M, N, K, why, whylen)) {
    mm_close(m);
    free(m);
    return NULL;
  }
  return m;
}
int rb_onednn_int8_call(rb_onednn_mm *m) { return mm_call(m); }
void rb_onednn_int8_close(rb_onednn_mm *m) {
  if (!m) return;
  mm_close(m);
  free(m);
}
#endif
#endif /* RESQ_BENCH_ONEDNN */

/* ======================================================================= */
#ifdef RESQ_BENCH_OPENBLAS

static char g_affinity_error[5120];

/* fp32 weights of the current shape: copy 0 is the random original. */
typedef struct fcache {
  int64_t N, K;
  int ncopies;
  float **w;
} fcache;
static fcache g_fc;

static void fcache_drop(fcache *c) {
  for (int i = 0; i < c->ncopies; i++) rb_free(c->w[i]);
  free(c->w);
  memset(c, 0, sizeof *c);
}

static int fcache_ensure(fcache *c, int64_t N, int64_t K) {
  if (c->w && c->N == N && c->K == K) return 0;
  fcache_drop(c);
  size_t bytes = (size_t)(N * K) * sizeof(float);
  int n = rb_copies_for(bytes);
  c->w = calloc((size_t)n, sizeof *c->w);
  if (!c->w) return -1;
  c->N = N;
  c->K = K;
  for (int i = 0; i < n; i++) {
    c->w[i] = rb_alloc(bytes);
    if (!c->w[i]) return -1;
    c->ncopies = i + 1;
    if (i == 0) {
      resq_rng r;
      resq_rng_init(&r, resq_seed_from_name("openblas_w_f32"));
      rb_fill_f32_uniform(&r, c->w[0], (size_t)(N * K), -1.0f, 1.0f);
    } else {
      memcpy(c->w[i], c->w[0], bytes);
    }
  }
  return 0;
}

typedef struct f32_ref_ctx {
  const float *a, *w;
  int64_t K;
} f32_ref_ctx;

static double f32_ref(const void *vctx, int64_t m, int64_t n, double *sumabs) {
  const f32_ref_ctx *c = vctx;
  const float *a = c->a + m * c->K, *w = c->w + n * c->K;
  double y = 0.0, sa = 0.0;
  for (int64_t k = 0; k < c->K; k++) {
    double p = (double)a[k] * (double)w[k];
    y += p;
    sa += fabs(p);
  }
  *sumabs = sa;
  return y;
}

typedef struct blas_params {
  int gemv;
} blas_params;

static void blas_call(int gemv, int64_t M, int64_t N, int64_t K, const float *a, const float *w, float *y) {
  if (gemv)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)N, (blasint)K, 1.0f, w, (blasint)K, a, 1, 0.0f, y, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, (blasint)N, (blasint)K, 1.0f, a, (blasint)K,
                w, (blasint)K, 0.0f, y, (blasint)N);
}

static void bm_openblas(resq_bench_state *st, const void *params) {
  const int gemv = ((const blas_params *)params)->gemv;
  const int64_t M = resq_bench_arg(st, 0), N = resq_bench_arg(st, 1), K = resq_bench_arg(st, 2);
  float *a = NULL, *y = NULL;
  char why[512] = "";
  check_pt pt[NCHECK];
  double worst = 0.0;
  if (g_affinity_error[0]) {
    resq_bench_error(st, "%s", g_affinity_error);
    return;
  }
  a = rb_alloc((size_t)(M * K) * sizeof(float));
  y = rb_alloc((size_t)(M * N) * sizeof(float));
  if (!a || !y || fcache_ensure(&g_fc, N, K)) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  {
    resq_rng r;
    resq_rng_init(&r, resq_seed_from_name("openblas_a_f32"));
    rb_fill_f32_uniform(&r, a, (size_t)(M * K), -1.0f, 1.0f);
  }
  /* check once, with the last weight copy (a memcpy of the first) */
  pick_points(pt, M, N);
  {
    f32_ref_ctx ctx = {a, g_fc.w[0], K};
    memset(y, 0xff, (size_t)(M * N) * sizeof(float));
    blas_call(gemv, M, N, K, a, g_fc.w[g_fc.ncopies - 1], y);
    worst = check_points(y, N, pt, K, f32_ref, &ctx, why, sizeof why);
    if (worst < 0) {
      resq_bench_error(st, "%s", why);
      goto out;
    }
  }
  {
    int i = 0;
    while (resq_bench_keep_running(st, 1)) {
      blas_call(gemv, M, N, K, a, g_fc.w[i], y);
      if (++i == g_fc.ncopies) i = 0;
    }
  }
  set_counters(st, M, N, K, 4.0 * (double)(N * K), 4.0 * (double)(M * K), 4.0 * (double)(M * N), worst);
  if (M <= PROBE_MAX_M) {
    size_t *sizes = calloc((size_t)g_fc.ncopies, sizeof *sizes);
    if (sizes) {
      for (int i = 0; i < g_fc.ncopies; i++) sizes[i] = (size_t)(N * K) * sizeof(float);
      resq_bench_counter(st, "probe_bw", rb_read_probe((void *const *)g_fc.w, sizes, g_fc.ncopies, g_threads, 3),
                         RESQ_CTR_PLAIN);
    }
    free(sizes);
  }
  resq_bench_label(st, "baseline=%s/M:%lld/N:%lld/K:%lld;roof=machine_peak_fma_f32;impl=openblas-%s-%s;copies=%d",
                   BASELINE_16BIT, (long long)M, (long long)N, (long long)K, gemv ? "sgemv" : "sgemm",
                   openblas_get_corename(), g_fc.ncopies);
out:
  rb_free(a);
  rb_free(y);
}

static int backend_init(void) {
  char buf[4096];
  resq_bench_context("openblas_corename", openblas_get_corename());
  resq_bench_context("openblas_config", openblas_get_config());
  int threads = openblas_get_num_threads();
  g_threads = threads;
  snprintf(buf, sizeof buf, "%d", threads);
  resq_bench_context("openblas_num_threads", buf);
  /* a small sgemm starts OpenBLAS's threads; then read where they may run */
  {
    const int64_t n = 512;
    float *a = rb_alloc((size_t)(n * n) * 4), *b = rb_alloc((size_t)(n * n) * 4), *c = rb_alloc((size_t)(n * n) * 4);
    if (a && b && c) {
      memset(a, 0, (size_t)(n * n) * 4);
      memset(b, 0, (size_t)(n * n) * 4);
      blas_call(0, n, n, n, a, b, c);
    }
    rb_free(a);
    rb_free(b);
    rb_free(c);
  }
  fprintf(stderr, "bench_gemm_openblas: OpenBLAS core %s, %d threads\n", openblas_get_corename(), threads);
  int min_cpus = rb_thread_placement(buf, sizeof buf);
  resq_bench_context("resq_placement", buf);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int want = threads < ncpu ? threads : (int)ncpu;
  if (min_cpus > 0 && min_cpus < want) {
    snprintf(g_affinity_error, sizeof g_affinity_error,
             "OpenBLAS runs %d threads but a thread of this process may only use %d CPU(s) (%s); "
             "was OMP_PROC_BIND set with an OpenMP runtime loaded, or taskset used? Not timing.",
             threads, min_cpus, buf);
    fprintf(stderr, "bench_gemm_openblas: %s\n", g_affinity_error);
  }
  return 0;
}

static void backend_fini(void) { fcache_drop(&g_fc); }

static void register_shape(int64_t M, int64_t N, int64_t K) {
  static const char *const names[] = {"M", "N", "K"};
  static const blas_params mm = {0}, mv = {1};
  int64_t a[3] = {M, N, K};
  resq_bench_register_args("gemm_f32__openblas", bm_openblas, &mm, sizeof mm, RESQ_BENCH_REAL_TIME, names, a, 3);
  if (M == 1)
    resq_bench_register_args("gemv_f32__openblas", bm_openblas, &mv, sizeof mv, RESQ_BENCH_REAL_TIME, names, a, 3);
}

#endif /* RESQ_BENCH_OPENBLAS */

/* ======================================================================= */
#ifndef RESQ_BENCH_NO_MAIN
int main(int argc, char **argv) {
  rb_shapes sh;
  char buf[256];
  if (rb_shapes_load(&sh) != 0) return 1;
  rb_context_common();
  snprintf(buf, sizeof buf, "%d", sh.nshapes);
  resq_bench_context("resq_gemm_shapes", buf);
  for (int s = 0; s < sh.nshapes; s++) {
    char key[64];
    snprintf(key, sizeof key, "resq_layers_N%lld_K%lld", (long long)sh.shape[s].N, (long long)sh.shape[s].K);
    resq_bench_context(key, sh.shape[s].layers);
  }
  if (backend_init() != 0) return 1;
  /* shape by shape (the weight copies are made once per shape), M ascending */
  for (int s = 0; s < sh.nshapes; s++)
    for (int t = 0; t < sh.ntokens; t++) register_shape(sh.tokens[t], sh.shape[s].N, sh.shape[s].K);
  int rc = resq_bench_main(argc, argv);
  backend_fini();
  return rc;
}
#endif /* RESQ_BENCH_NO_MAIN */
