/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_stages_cuda.c -- the activation stages of the CUDA backend
 * (resq/cuda.h) against a device-to-device copy of the same bytes, timed with
 * CUDA events (RESQ_BENCH_MANUAL_TIME: GPU time only, no host launch gaps
 * between the events of a batch):
 *
 *   hadamard_f16__cuda/n:<n>/rows:<rows>                  y = (x .* s) H_n^T, f16
 *   quant_act_f16_q4q8__cuda/K/group/r/rows               the three quantizer variants of bench_quant
 *   hadamard_quant_f16_q4__cuda/K/group/r:0/rows          fused Hadamard + 4-bit quantizer (down_proj input)
 *   silu_hadamard_quant_f16_q4__cuda/K/group/r:0/rows     fused SiLU(g)*u + Hadamard + 4-bit quantizer: the
 *                                                         layer's down_proj input from gate/up (two f16 inputs)
 *   memcpy__cuda/bytes:<B>                                cudaMemcpyAsync D2D of B bytes ("bytes" = 2B)
 *   machine_gpu_copy_bw/MiB:<S>                           D2D copy of S MiB: the device's measured
 *                                                         bandwidth (bytes = read + write)
 *
 * Byte counts as in bench_hadamard.c / bench_quant.c (packed 4-bit codes at
 * 0.5 byte, scales and zero points included). Activations of a few MiB stay in
 * the GPU's L2 between calls (as the output of the previous kernel would); the
 * 2048-row cases (16-58 MiB) are mostly larger than the L2.
 *
 * Before timing, every output is copied back and compared with the reference
 * (resq_hadamard_f16__ref, resq_quant_act_f16_q4q8__ref; the fused stage with its
 * definition in resq/cuda.h: resq_hadamard_f32__ref on the widened rows, then
 * resq_quant_act_f32_q4q8__ref; the SiLU one with z = g / (1 + expf(-g)) * u in
 * fp32 first, the reference layer's SiLU), bit for bit (ref/CONTRACT.md
 * sections 2, 3, 5, 14).
 *
 * Functions the CUDA backend does not define in this build (the quantizers
 * are declared in resq/cuda.h before they are implemented) are weak
 * references, so the program links either way and such benchmarks are skipped
 * with "not implemented in this build". The program is linked with the whole
 * resq_cuda archive (CMake WHOLE_ARCHIVE) so that a weak reference finds every
 * definition the library has.
 *
 * Without a usable GPU (no driver, no device) every benchmark is skipped with
 * the probe's reason; bench/run_all lists them as skipped. */
#define _GNU_SOURCE
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"

#pragma weak resq_quant_act_f16_q4q8__cuda
#pragma weak resq_hadamard_quant_f16_q4__cuda
#pragma weak resq_silu_hadamard_quant_f16_q4__cuda

#define SIGN_SEED 1234
/* launches per timed batch: one pair of events per batch, so the event
 * resolution (~0.5 us) is small against the batch */
#define BATCH_TARGET_S 2e-3

static char g_no_gpu[512]; /* non-empty: the reason no benchmark can run */
static cudaEvent_t g_e0, g_e1;

/* ---- device buffers ---- */
static void *dalloc(size_t bytes) {
  void *p = NULL;
  return resq_cuda_malloc(&p, bytes) == RESQ_OK ? p : NULL;
}

/* Time `fn(ctx)` with CUDA events in batches; returns 0, or -1 with why. */
typedef resq_status (*launch_fn)(void *ctx);
static int time_loop(resq_bench_state *st, launch_fn fn, void *ctx, char *why, size_t whylen) {
  cudaStream_t s = (cudaStream_t)resq_cuda_get_stream();
  /* calibrate the batch size from one timed launch (after a warm-up) */
  float ms = 0.0f;
  if (fn(ctx) != RESQ_OK || cudaEventRecord(g_e0, s) != cudaSuccess || fn(ctx) != RESQ_OK ||
      cudaEventRecord(g_e1, s) != cudaSuccess || cudaEventSynchronize(g_e1) != cudaSuccess ||
      cudaEventElapsedTime(&ms, g_e0, g_e1) != cudaSuccess) {
    snprintf(why, whylen, "launch or event failed: %s / %s", resq_last_error(), cudaGetErrorString(cudaGetLastError()));
    return -1;
  }
  uint64_t batch = ms > 0 ? (uint64_t)(BATCH_TARGET_S / (ms * 1e-3)) : 1000;
  if (batch < 1) batch = 1;
  if (batch > 10000) batch = 10000;
  while (resq_bench_keep_running(st, batch)) {
    cudaEventRecord(g_e0, s);
    for (uint64_t i = 0; i < batch; i++) fn(ctx);
    cudaEventRecord(g_e1, s);
    cudaEventSynchronize(g_e1);
    cudaEventElapsedTime(&ms, g_e0, g_e1);
    resq_bench_set_iteration_time(st, (double)ms * 1e-3);
  }
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    snprintf(why, whylen, "CUDA error during timing: %s", cudaGetErrorString(e));
    return -1;
  }
  return 0;
}

/* ======================================================================= memcpy */
typedef struct copy_ctx {
  void *dst;
  const void *src;
  size_t bytes;
} copy_ctx;

static resq_status run_copy(void *v) {
  copy_ctx *c = v;
  return cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)resq_cuda_get_stream()) ==
                 cudaSuccess
             ? RESQ_OK
             : RESQ_ERR_DEVICE;
}

/* memcpy__cuda/bytes:B and machine_gpu_copy_bw/MiB:S */
static void bm_copy(resq_bench_state *st, const void *params) {
  const int machine = *(const int *)params;
  const size_t bytes = machine ? (size_t)resq_bench_arg(st, 0) << 20 : (size_t)resq_bench_arg(st, 0);
  char why[512] = "";
  if (g_no_gpu[0]) {
    resq_bench_skip(st, "no usable GPU: %s", g_no_gpu);
    return;
  }
  unsigned char *h = malloc(bytes), *h2 = malloc(bytes);
  void *src = dalloc(bytes), *dst = dalloc(bytes);
  if (!h || !h2 || !src || !dst) {
    resq_bench_error(st, "out of memory (%zu bytes)", bytes);
    goto out;
  }
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name("memcpy_cuda"));
  rb_fill_u8(&r, h, bytes);
  copy_ctx c = {dst, src, bytes};
  if (resq_cuda_h2d(src, h, bytes) != RESQ_OK || resq_cuda_memset(dst, 0, bytes) != RESQ_OK || run_copy(&c) != RESQ_OK ||
      resq_cuda_d2h(h2, dst, bytes) != RESQ_OK) {
    resq_bench_error(st, "copy failed: %s", resq_last_error());
    goto out;
  }
  if (memcmp(h, h2, bytes) != 0) {
    resq_bench_error(st, "device copy differs from its source");
    goto out;
  }
  if (time_loop(st, run_copy, &c, why, sizeof why)) {
    resq_bench_error(st, "%s", why);
    goto out;
  }
  resq_bench_counter(st, "bytes", 2.0 * (double)bytes, RESQ_CTR_RATE);
  if (machine) resq_bench_label(st, "device=%s", resq_cuda_device_name());
out:
  free(h);
  free(h2);
  resq_cuda_free(src);
  resq_cuda_free(dst);
}

#define RB_MAX_CMEMCPY 256
static int64_t register_memcpy(int64_t stage_bytes) {
  static int64_t done[RB_MAX_CMEMCPY];
  static int ndone;
  static const char *const names[] = {"bytes"};
  static const int zero = 0;
  int64_t b = (stage_bytes + 1) / 2;
  for (int i = 0; i < ndone; i++)
    if (done[i] == b) return b;
  if (ndone < RB_MAX_CMEMCPY) done[ndone++] = b;
  resq_bench_register_args("memcpy__cuda", bm_copy, &zero, sizeof zero, RESQ_BENCH_MANUAL_TIME, names, &b, 1);
  return b;
}

/* ======================================================================= Hadamard */
typedef struct had_ctx {
  int64_t rows, n;
  const uint16_t *x;
  uint16_t *y;
  const int8_t *signs;
} had_ctx;

static resq_status run_had(void *v) {
  had_ctx *c = v;
  return resq_hadamard_f16__cuda(c->rows, c->n, c->x, c->n, c->y, c->n, c->signs, NULL, 0);
}

static void bm_hadamard(resq_bench_state *st, const void *params) {
  (void)params;
  const int64_t n = resq_bench_arg(st, 0), rows = resq_bench_arg(st, 1);
  const size_t elems = (size_t)(n * rows);
  char why[512] = "";
  if (g_no_gpu[0]) {
    resq_bench_skip(st, "no usable GPU: %s", g_no_gpu);
    return;
  }
  if (resq_hadamard_supported__cuda(n) != RESQ_OK) {
    resq_bench_skip(st, "n = %lld not supported by the CUDA backend: %s", (long long)n, resq_last_error());
    return;
  }
  uint16_t *x = malloc(elems * 2), *yref = malloc(elems * 2), *y = malloc(elems * 2);
  int8_t *signs = malloc((size_t)n);
  size_t ws = resq_hadamard_workspace_size(n);
  void *work = malloc(ws);
  void *dx = dalloc(elems * 2), *dy = dalloc(elems * 2), *ds = dalloc((size_t)n);
  resq_status s;
  if (!x || !yref || !y || !signs || !work || !dx || !dy || !ds) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name("hadamard_f16"));
  rb_fill_f16_normal(&r, x, elems);
  if ((s = resq_hadamard_random_signs(SIGN_SEED, n, signs)) != RESQ_OK ||
      (s = resq_hadamard_f16__ref(rows, n, x, n, yref, n, signs, work, ws)) != RESQ_OK) {
    resq_bench_error(st, "reference: %s: %s", resq_status_name(s), resq_last_error());
    goto out;
  }
  had_ctx c = {rows, n, dx, dy, ds};
  if (resq_cuda_h2d(dx, x, elems * 2) != RESQ_OK || resq_cuda_h2d(ds, signs, (size_t)n) != RESQ_OK ||
      resq_cuda_memset(dy, 0xff, elems * 2) != RESQ_OK || (s = run_had(&c)) != RESQ_OK || resq_cuda_sync() != RESQ_OK ||
      resq_cuda_d2h(y, dy, elems * 2) != RESQ_OK) {
    resq_bench_error(st, "hadamard_f16__cuda: %s", resq_last_error());
    goto out;
  }
  for (size_t i = 0; i < elems; i++)
    if (y[i] != yref[i]) {
      resq_bench_error(st, "differs from the reference at row %zu column %zu (0x%04x, reference 0x%04x); REPRO: "
                       "bench_stages_cuda --benchmark_filter='hadamard_f16__cuda/n:%lld/rows:%lld/'",
                       i / (size_t)n, i % (size_t)n, y[i], yref[i], (long long)n, (long long)rows);
      goto out;
    }
  if (time_loop(st, run_had, &c, why, sizeof why)) {
    resq_bench_error(st, "%s", why);
    goto out;
  }
  resq_bench_counter(st, "bytes", 4.0 * (double)elems, RESQ_CTR_RATE);
  resq_bench_label(st, "baseline=memcpy__cuda/bytes:%lld;device=%s", (long long)(2 * (int64_t)elems),
                   resq_cuda_device_name());
out:
  free(x), free(yref), free(y), free(signs), free(work);
  resq_cuda_free(dx), resq_cuda_free(dy), resq_cuda_free(ds);
}

/* ======================================================================= quantizers */
typedef struct qhost {
  resq_qact q;
  size_t lo, hi, sc;
} qhost;

static int qhost_alloc(qhost *b, const resq_qact_layout *L, int64_t rows, int device) {
  memset(b, 0, sizeof *b);
  b->lo = (size_t)(L->lo_bytes * rows);
  b->hi = (size_t)(L->hi_bytes * rows);
  b->sc = (size_t)(L->ngroups * rows);
  b->q.ld_lo = L->lo_bytes;
  b->q.ld_hi = L->hi_bytes;
#define QA(p, n) ((p) = device ? dalloc((n) > 0 ? (n) : 1) : calloc((n) > 0 ? (n) : 1, 1))
  QA(b->q.q_lo, b->lo);
  QA(b->q.q_hi, b->hi);
  QA(b->q.scale_lo, b->sc * 4);
  QA(b->q.zero_lo, b->sc * 4);
  QA(b->q.scale_hi, b->sc * 4);
  QA(b->q.zero_hi, b->sc * 4);
#undef QA
  return b->q.q_lo && b->q.q_hi && b->q.scale_lo && b->q.zero_lo && b->q.scale_hi && b->q.zero_hi ? 0 : -1;
}

static void qhost_free(qhost *b, int device) {
  void *p[6] = {b->q.q_lo, b->q.q_hi, b->q.scale_lo, b->q.zero_lo, b->q.scale_hi, b->q.zero_hi};
  for (int i = 0; i < 6; i++) {
    if (device) resq_cuda_free(p[i]);
    else free(p[i]);
  }
}

/* device -> host copy of the parts the variant writes */
static int qhost_fetch(qhost *h, const qhost *d, int lo_only) {
  if (resq_cuda_d2h(h->q.q_lo, d->q.q_lo, h->lo) != RESQ_OK ||
      resq_cuda_d2h(h->q.scale_lo, d->q.scale_lo, h->sc * 4) != RESQ_OK ||
      resq_cuda_d2h(h->q.zero_lo, d->q.zero_lo, h->sc * 4) != RESQ_OK)
    return -1;
  if (lo_only) return 0;
  return resq_cuda_d2h(h->q.q_hi, d->q.q_hi, h->hi) == RESQ_OK &&
                 resq_cuda_d2h(h->q.scale_hi, d->q.scale_hi, h->sc * 4) == RESQ_OK &&
                 resq_cuda_d2h(h->q.zero_hi, d->q.zero_hi, h->sc * 4) == RESQ_OK
             ? 0
             : -1;
}

/* first differing output, or NULL */
static const char *qhost_diff(const qhost *a, const qhost *b, int lo_only, int has_lo, int has_hi) {
  if (has_lo && memcmp(a->q.q_lo, b->q.q_lo, a->lo) != 0) return "q_lo";
  if (has_lo && memcmp(a->q.scale_lo, b->q.scale_lo, a->sc * 4) != 0) return "scale_lo";
  if (has_lo && memcmp(a->q.zero_lo, b->q.zero_lo, a->sc * 4) != 0) return "zero_lo";
  if (lo_only || !has_hi) return NULL;
  if (memcmp(a->q.q_hi, b->q.q_hi, a->hi) != 0) return "q_hi";
  if (memcmp(a->q.scale_hi, b->q.scale_hi, a->sc * 4) != 0) return "scale_hi";
  if (memcmp(a->q.zero_hi, b->q.zero_hi, a->sc * 4) != 0) return "zero_hi";
  return NULL;
}

static int64_t quant_bytes(const resq_qact_params *p, const resq_qact_layout *L, int64_t rows) {
  int64_t per_row = p->K * 2 + L->lo_bytes + L->hi_bytes;
  if (p->group - p->r > 0) per_row += 8 * L->ngroups;
  if (p->r > 0) per_row += 8 * L->ngroups;
  return per_row * rows;
}

enum { Q_PLAIN = 0, Q_FUSED = 1, Q_SILU = 2 };
static const char *const g_qfamily[] = {"quant_act_f16_q4q8__cuda", "hadamard_quant_f16_q4__cuda",
                                        "silu_hadamard_quant_f16_q4__cuda"};

typedef struct q_ctx {
  int kind;
  resq_qact_params p;
  int64_t rows;
  const uint16_t *x, *u; /* u: the up projection (Q_SILU) */
  const int8_t *signs;
  resq_qact out;
} q_ctx;

static resq_status run_q(void *v) {
  q_ctx *c = v;
  if (c->kind == Q_FUSED) return resq_hadamard_quant_f16_q4__cuda(c->rows, c->p.K, c->x, c->p.K, c->signs, &c->p, &c->out);
  if (c->kind == Q_SILU)
    return resq_silu_hadamard_quant_f16_q4__cuda(c->rows, c->p.K, c->x, c->p.K, c->u, c->p.K, NULL, &c->p, &c->out);
  return resq_quant_act_f16_q4q8__cuda(&c->p, c->rows, c->x, c->p.K, &c->out);
}

/* the reference layer's SiLU (ref/src/layer_internal.h), fp32 */
static float silu_f32(float g) { return g / (1.0f + expf(-g)); }

static void bm_quant(resq_bench_state *st, const void *params) {
  const int kind = *(const int *)params;
  const int64_t K = resq_bench_arg(st, 0), group = resq_bench_arg(st, 1), r = resq_bench_arg(st, 2),
                rows = resq_bench_arg(st, 3);
  char why[512] = "";
  if (g_no_gpu[0]) {
    resq_bench_skip(st, "no usable GPU: %s", g_no_gpu);
    return;
  }
  if ((kind == Q_PLAIN && !resq_quant_act_f16_q4q8__cuda) || (kind == Q_FUSED && !resq_hadamard_quant_f16_q4__cuda) ||
      (kind == Q_SILU && !resq_silu_hadamard_quant_f16_q4__cuda)) {
    resq_bench_skip(st, "%s is declared in resq/cuda.h but not implemented in this build", g_qfamily[kind]);
    return;
  }
  resq_qact_params p = resq_qact_default(K);
  resq_qact_layout L;
  p.group = group;
  p.r = r;
  if (resq_qact_check(&p, &L) != RESQ_OK) {
    resq_bench_skip(st, "unsupported parameters: %s", resq_last_error());
    return;
  }
  const size_t elems = (size_t)(K * rows);
  uint16_t *x = malloc(elems * 2), *u = kind == Q_SILU ? malloc(elems * 2) : NULL;
  int8_t *signs = malloc((size_t)K);
  float *xf = NULL, *t = NULL;
  void *work = NULL, *dx = dalloc(elems * 2), *ds = dalloc((size_t)K), *du = kind == Q_SILU ? dalloc(elems * 2) : NULL;
  qhost ref, got, dev;
  resq_status s;
  int bad = qhost_alloc(&ref, &L, rows, 0);
  bad |= qhost_alloc(&got, &L, rows, 0);
  bad |= qhost_alloc(&dev, &L, rows, 1);
  if (!x || !signs || !dx || !ds || bad || (kind == Q_SILU && (!u || !du))) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  resq_rng rng;
  resq_rng_init(&rng, resq_seed_from_name("quant_act_f16_q4q8"));
  rb_fill_f16_normal(&rng, x, elems);
  if (u) rb_fill_f16_normal(&rng, u, elems);
  if ((s = resq_hadamard_random_signs(SIGN_SEED, K, signs)) != RESQ_OK) goto ref_fail;
  if (kind == Q_FUSED || kind == Q_SILU) { /* the definitions in resq/cuda.h */
    size_t ws = resq_hadamard_workspace_size(K);
    xf = malloc(elems * 4);
    t = malloc(elems * 4);
    work = malloc(ws);
    if (!xf || !t || !work) {
      resq_bench_error(st, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < elems; i++)
      xf[i] = kind == Q_SILU ? silu_f32(resq_f16_to_f32(x[i])) * resq_f16_to_f32(u[i]) : resq_f16_to_f32(x[i]);
    if ((s = resq_hadamard_f32__ref(rows, K, xf, K, t, K, kind == Q_SILU ? NULL : signs, work, ws)) != RESQ_OK ||
        (s = resq_quant_act_f32_q4q8__ref(&p, rows, t, K, &ref.q)) != RESQ_OK)
      goto ref_fail;
  } else if ((s = resq_quant_act_f16_q4q8__ref(&p, rows, x, K, &ref.q)) != RESQ_OK) {
    goto ref_fail;
  }
  q_ctx c = {kind, p, rows, dx, du, ds, dev.q};
  if (resq_cuda_h2d(dx, x, elems * 2) != RESQ_OK || resq_cuda_h2d(ds, signs, (size_t)K) != RESQ_OK ||
      (u && resq_cuda_h2d(du, u, elems * 2) != RESQ_OK) ||
      resq_cuda_memset(dev.q.q_lo, 0xff, dev.lo ? dev.lo : 1) != RESQ_OK || (s = run_q(&c)) != RESQ_OK ||
      resq_cuda_sync() != RESQ_OK || qhost_fetch(&got, &dev, kind != Q_PLAIN) != 0) {
    resq_bench_error(st, "%s: %s", g_qfamily[kind], resq_last_error());
    goto out;
  }
  const char *d = qhost_diff(&ref, &got, kind != Q_PLAIN, L.lo_per_group > 0, p.r > 0);
  if (d) {
    resq_bench_error(st, "%s differs from the reference in %s; REPRO: bench_stages_cuda "
                     "--benchmark_filter='%s/K:%lld/group:%lld/r:%lld/rows:%lld/'",
                     g_qfamily[kind], d, g_qfamily[kind], (long long)K, (long long)group, (long long)r, (long long)rows);
    goto out;
  }
  if (time_loop(st, run_q, &c, why, sizeof why)) {
    resq_bench_error(st, "%s", why);
    goto out;
  }
  {
    int64_t bytes = quant_bytes(&p, &L, rows) + (kind == Q_SILU ? (int64_t)elems * 2 : 0); /* + the u input */
    resq_bench_counter(st, "bytes", (double)bytes, RESQ_CTR_RATE);
    resq_bench_label(st, "baseline=memcpy__cuda/bytes:%lld;device=%s", (long long)((bytes + 1) / 2),
                     resq_cuda_device_name());
  }
  goto out;
ref_fail:
  resq_bench_error(st, "reference: %s: %s", resq_status_name(s), resq_last_error());
out:
  free(x), free(u), free(signs), free(xf), free(t), free(work);
  resq_cuda_free(dx), resq_cuda_free(ds), resq_cuda_free(du);
  qhost_free(&ref, 0);
  qhost_free(&got, 0);
  qhost_free(&dev, 1);
}

/* ======================================================================= main */
int main(int argc, char **argv) {
  static const int64_t full_n[] = {4096, 11008, 14336}, full_rows[] = {1, 16, 128, 2048};
  static const int64_t quick_n[] = {4096}, quick_rows[] = {1, 16};
  static const int kinds[] = {Q_PLAIN, Q_FUSED, Q_SILU}, machine = 1;
  const int quick = rb_quick();
  const int64_t *ns = quick ? quick_n : full_n, *rows = quick ? quick_rows : full_rows;
  const int nn = quick ? 1 : 3, nr = quick ? 2 : 4;
  static const char *const hn[] = {"n", "rows"}, *const qn[] = {"K", "group", "r", "rows"}, *const mn[] = {"MiB"};
  rb_context_common();
  char why[512];
  if (resq_cuda_probe(why, sizeof why) != RESQ_OK) {
    snprintf(g_no_gpu, sizeof g_no_gpu, "%s", why);
    resq_bench_context("resq_cuda_device", "none");
    resq_bench_context("resq_cuda_skip_reason", why);
    fprintf(stderr, "bench_stages_cuda: no usable GPU (%s): every benchmark is skipped\n", why);
  } else {
    resq_bench_context("resq_cuda_device", resq_cuda_device_name());
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    snprintf(why, sizeof why, "driver %d, runtime %d", drv, rt);
    resq_bench_context("resq_cuda_versions", why);
    if (cudaEventCreate(&g_e0) != cudaSuccess || cudaEventCreate(&g_e1) != cudaSuccess) {
      snprintf(g_no_gpu, sizeof g_no_gpu, "cudaEventCreate failed");
    }
    fprintf(stderr, "bench_stages_cuda: %s\n", resq_cuda_device_name());
  }
  {
    int64_t a = 1024; /* MiB: far beyond any L2 (50 MiB on H100) */
    resq_bench_register_args("machine_gpu_copy_bw", bm_copy, &machine, sizeof machine, RESQ_BENCH_MANUAL_TIME, mn, &a,
                             1);
  }
  for (int i = 0; i < nn; i++)
    for (int j = 0; j < nr; j++) {
      int64_t a[2] = {ns[i], rows[j]};
      register_memcpy(4 * ns[i] * rows[j]);
      resq_bench_register_args("hadamard_f16__cuda", bm_hadamard, NULL, 0, RESQ_BENCH_MANUAL_TIME, hn, a, 2);
    }
  for (int i = 0; i < nn; i++) {
    const int64_t K = ns[i];
    const int64_t variants[3][2] = {{K, K / 8}, {K, 0}, {128, 16}}; /* {group, r} */
    for (int v = 0; v < 3; v++)
      for (int j = 0; j < nr; j++) {
        resq_qact_params p = resq_qact_default(K);
        resq_qact_layout L;
        p.group = variants[v][0];
        p.r = variants[v][1];
        if (resq_qact_check(&p, &L) != RESQ_OK) continue;
        int64_t a[4] = {K, p.group, p.r, rows[j]};
        register_memcpy(quant_bytes(&p, &L, rows[j]));
        resq_bench_register_args(g_qfamily[Q_PLAIN], bm_quant, &kinds[0], sizeof kinds[0], RESQ_BENCH_MANUAL_TIME, qn,
                                 a, 4);
        if (v == 1 && (quick || K != 4096)) {
          resq_bench_register_args(g_qfamily[Q_FUSED], bm_quant, &kinds[1], sizeof kinds[1], RESQ_BENCH_MANUAL_TIME,
                                   qn, a, 4);
          int64_t sb = quant_bytes(&p, &L, rows[j]) + 2 * K * rows[j];
          register_memcpy(sb);
          resq_bench_register_args(g_qfamily[Q_SILU], bm_quant, &kinds[2], sizeof kinds[2], RESQ_BENCH_MANUAL_TIME,
                                   qn, a, 4);
        }
      }
  }
  int rc = resq_bench_main(argc, argv);
  if (!g_no_gpu[0]) {
    cudaEventDestroy(g_e0);
    cudaEventDestroy(g_e1);
  }
  return rc;
}
