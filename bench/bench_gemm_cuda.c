/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_gemm_cuda.c -- the ResQ mixed INT4/INT8 GEMM of the CUDA backend
 * (resq_gemm_q4q8_f16__cuda, resq/cuda_gemm.h) and its library baselines at the
 * linear-layer shapes of bench/shapes/, timed with CUDA events (manual time:
 * GPU time of batches of back-to-back launches):
 *
 *   gemm_f16_f32__cublas/M/N/K          cublasGemmEx fp16 in/out, fp32 compute, cuBLAS's
 *                                       default math mode = PyTorch's default: THE 16-bit baseline
 *   gemm_f16_f16__cublas/M/N/K          the same with fp16 accumulation (labelled; 2x rate on GeForce)
 *   gemm_s8_s32__cublaslt/M/N/K         cuBLASLt s8 x s8 -> s32 (IMMA): the W8A8 peer
 *   gemm_q4q8_f16__cuda/M/N/K           per token, r = K/8      (every shape)
 *   gemm_q4q8_grouped_f16__cuda/M/N/K   per head, 128 / 16      (o_proj shapes)
 *   gemm_q4_f16__cuda/M/N/K             INT4, r = 0             (down_proj shapes)
 * Labels: baseline=gemm_f16_f32__cublas, peer=gemm_s8_s32__cublaslt of the same
 * shape, measured just before in the same process.
 *
 * Cold weights: device copies of each weight are rotated, one per launch, so
 * that together they exceed max(256 MiB, 4 x the GPU's L2) (a decode GEMM whose
 * weight sits in L2 would look several times faster than one that streams it
 * from HBM, as on the CPU with the L3).
 *
 * Checks before timing (on the output of the last weight copy):
 *   - ResQ GEMMs: sampled rows x panels bit for bit against
 *     resq_gemm_q4q8_f16__ref (bench_qgemm_common.h; the contract's exact GEMM);
 *   - cuBLAS fp16: 64 sampled outputs of the same product with strict fp32
 *     reductions (RESQ_CUBLAS_F32) against a double dot product,
 *     |y - y*| <= gamma_K sum|x w| + u_16 |y*| (ref/CONTRACT.md section 11; the
 *     final f16 rounding adds u_16 |y|). The PyTorch mode that is timed allows
 *     fp16 reductions of split-K partial sums, for which no tight bound holds;
 *     the strict run validates the operands and layouts of the harness;
 *   - cuBLASLt int8: 64 sampled outputs exactly equal to the int64 dot product.
 * Without a usable GPU every benchmark is skipped with the probe's reason.
 *
 * STATUS: compiled where CUDA is present; it has not run on a GPU unless a
 * report in reports/ shows its results. */
#define _GNU_SOURCE
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_qgemm_common.h"
#include "bench_util.h"
#include "resq/cuda.h"
#include "resq/cuda_gemm.h"
#include "resq/dtype.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"

#define NCHECK 64
#define BATCH_TARGET_S 2e-3

static char g_no_gpu[512];
static cudaEvent_t g_e0, g_e1;
static size_t g_cold; /* bytes of rotated weight copies on the device */

static const char *const g_family[RB_NVAR] = {"gemm_q4q8_f16__cuda", "gemm_q4q8_grouped_f16__cuda",
                                              "gemm_q4_f16__cuda"};
enum { L_F16_F32 = 0, L_F16_F16 = 1, L_S8 = 2 };
static const char *const g_lfamily[] = {"gemm_f16_f32__cublas", "gemm_f16_f16__cublas", "gemm_s8_s32__cublaslt"};

static void *dalloc(size_t bytes) {
  void *p = NULL;
  return resq_cuda_malloc(&p, bytes) == RESQ_OK ? p : NULL;
}

static int copies_for(size_t bytes) {
  size_t n = bytes ? (g_cold + bytes - 1) / bytes : 1;
  return n < 1 ? 1 : (int)n;
}

/* batches of launches between two events; fn(ctx, i) launches with weight copy i */
typedef resq_status (*launch_fn)(void *ctx, int copy);
static int time_loop(resq_bench_state *st, launch_fn fn, void *ctx, int ncopies, char *why, size_t whylen) {
  cudaStream_t s = (cudaStream_t)resq_cuda_get_stream();
  float ms = 0.0f;
  int c = 0;
  if (fn(ctx, 0) != RESQ_OK || cudaEventRecord(g_e0, s) != cudaSuccess || fn(ctx, 0) != RESQ_OK ||
      cudaEventRecord(g_e1, s) != cudaSuccess || cudaEventSynchronize(g_e1) != cudaSuccess ||
      cudaEventElapsedTime(&ms, g_e0, g_e1) != cudaSuccess) {
    snprintf(why, whylen, "launch or event failed: %s", resq_last_error());
    return -1;
  }
  uint64_t batch = ms > 0 ? (uint64_t)(BATCH_TARGET_S / (ms * 1e-3)) : 100;
  if (batch < 1) batch = 1;
  if (batch > 2000) batch = 2000;
  while (resq_bench_keep_running(st, batch)) {
    cudaEventRecord(g_e0, s);
    for (uint64_t i = 0; i < batch; i++) {
      fn(ctx, c);
      if (++c == ncopies) c = 0;
    }
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

static void counters(resq_bench_state *st, int64_t M, int64_t N, int64_t K, double wbytes, double abytes,
                     double obytes) {
  resq_bench_counter(st, "ops", 2.0 * (double)M * (double)N * (double)K, RESQ_CTR_RATE);
  resq_bench_counter(st, "bytes", wbytes + abytes + obytes, RESQ_CTR_RATE);
  resq_bench_counter(st, "wbytes", wbytes, RESQ_CTR_RATE);
}

/* ======================================================================= ResQ */
typedef struct q_ctx {
  const resq_qact_params *p;
  int64_t M, N;
  resq_qact x; /* device */
  resq_qweight_cuda *w;
  uint16_t *y;
  resq_gemm_cuda_opts opts;
} q_ctx;

static resq_status run_q(void *v, int copy) {
  q_ctx *c = v;
  return resq_gemm_q4q8_f16__cuda(c->p, c->M, &c->x, &c->w[copy], NULL, c->y, c->N, &c->opts);
}

/* device copy of the host activations */
static int qa_upload(const rb_qa *h, const resq_qact_layout *L, int64_t M, resq_qact *d) {
  const size_t G = (size_t)L->ngroups;
  size_t sz[6] = {(size_t)(M * L->lo_bytes), (size_t)(M * L->hi_bytes), (size_t)M * G * 4, (size_t)M * G * 4,
                  (size_t)M * G * 4, (size_t)M * G * 4};
  const void *src[6] = {h->x.q_lo, h->x.q_hi, h->x.scale_lo, h->x.zero_lo, h->x.scale_hi, h->x.zero_hi};
  void *dst[6];
  for (int i = 0; i < 6; i++) {
    dst[i] = dalloc(sz[i] ? sz[i] : 1);
    if (!dst[i] || (sz[i] && resq_cuda_h2d(dst[i], src[i], sz[i]) != RESQ_OK)) return -1;
  }
  *d = (resq_qact){dst[0], h->x.ld_lo, dst[1], h->x.ld_hi, dst[2], dst[3], dst[4], dst[5]};
  return 0;
}

static void qa_free_dev(resq_qact *d) {
  void *p[6] = {d->q_lo, d->q_hi, d->scale_lo, d->zero_lo, d->scale_hi, d->zero_hi};
  for (int i = 0; i < 6; i++) resq_cuda_free(p[i]);
  memset(d, 0, sizeof *d);
}

/* the weight of the current (variant, N, K): host canonical + device copies */
typedef struct qstate {
  int valid;
  rb_qw q;
  int ncopies;
  resq_qweight_cuda *w;
} qstate;
static qstate g_q[RB_NVAR];

static void qstate_drop(qstate *s) {
  for (int i = 0; i < s->ncopies; i++) resq_gemm_free_weight__cuda(&s->w[i]);
  free(s->w);
  rb_qw_free(&s->q);
  memset(s, 0, sizeof *s);
}

static int qstate_make(qstate *s, int v, int64_t N, int64_t K, char *why, size_t whylen) {
  if (s->valid && s->q.v == v && s->q.N == N && s->q.K == K) return 0;
  qstate_drop(s);
  if (rb_qw_make(&s->q, v, N, K, g_family[v], why, whylen)) return -1;
  size_t bytes = 0;
  resq_status st = resq_gemm_pack_weight_size__cuda(&s->q.p, N, &bytes);
  if (st != RESQ_OK) {
    snprintf(why, whylen, "resq_gemm_pack_weight_size__cuda: %s", resq_last_error());
    return -1;
  }
  int n = copies_for(bytes);
  s->w = calloc((size_t)n, sizeof *s->w);
  if (!s->w) return snprintf(why, whylen, "out of memory"), -1;
  for (int i = 0; i < n; i++) {
    if ((st = resq_gemm_upload_weight__cuda(&s->q.p, &s->q.w, &s->w[i])) != RESQ_OK) {
      snprintf(why, whylen, "resq_gemm_upload_weight__cuda (copy %d of %d): %s", i, n, resq_last_error());
      return -1;
    }
    s->ncopies = i + 1;
  }
  s->valid = 1;
  return 0;
}

static void bm_q(resq_bench_state *st, const void *params) {
  const int v = *(const int *)params;
  const int64_t M = resq_bench_arg(st, 0), N = resq_bench_arg(st, 1), K = resq_bench_arg(st, 2);
  char why[768] = "";
  rb_qa a;
  resq_qact dx;
  uint16_t *y = NULL, *dy = NULL;
  void *work = NULL;
  memset(&a, 0, sizeof a);
  memset(&dx, 0, sizeof dx);
  if (g_no_gpu[0]) {
    resq_bench_skip(st, "no usable GPU: %s", g_no_gpu);
    return;
  }
  qstate *S = &g_q[v];
  if (qstate_make(S, v, N, K, why, sizeof why)) goto fail;
  if (rb_qa_make(&a, &S->q.p, &S->q.L, M) || qa_upload(&a, &S->q.L, M, &dx)) {
    snprintf(why, sizeof why, "out of memory (activations)");
    goto fail;
  }
  y = malloc((size_t)(M * N) * 2);
  dy = dalloc((size_t)(M * N) * 2);
  size_t ws = resq_gemm_workspace_size__cuda(&S->w[0], M);
  work = ws ? dalloc(ws) : NULL;
  if (!y || !dy || (ws && (!work || resq_cuda_memset(work, 0, ws) != RESQ_OK))) {
    snprintf(why, sizeof why, "out of memory (output / workspace)");
    goto fail;
  }
  q_ctx c = {&S->q.p, M, N, dx, S->w, dy, {RESQ_GEMM_TILE_AUTO, 0, work, ws}};
  if (resq_cuda_memset(dy, 0xff, (size_t)(M * N) * 2) != RESQ_OK || run_q(&c, S->ncopies - 1) != RESQ_OK ||
      resq_cuda_sync() != RESQ_OK || resq_cuda_d2h(y, dy, (size_t)(M * N) * 2) != RESQ_OK) {
    snprintf(why, sizeof why, "%s: %s", g_family[v], resq_last_error());
    goto fail;
  }
  if (rb_qcheck(&S->q, &a, M, y, g_family[v], "bench_gemm_cuda", why, sizeof why)) goto fail;
  if (time_loop(st, run_q, &c, S->ncopies, why, sizeof why)) goto fail;
  counters(st, M, N, K, S->q.wbytes, a.bytes, 2.0 * (double)(M * N));
  resq_bench_label(st,
                   "baseline=gemm_f16_f32__cublas/M:%lld/N:%lld/K:%lld;peer=gemm_s8_s32__cublaslt/M:%lld/N:%lld/K:%lld;"
                   "impl=resq-cuda group=%lld r=%lld, tile auto;copies=%d;device=%s",
                   (long long)M, (long long)N, (long long)K, (long long)M, (long long)N, (long long)K,
                   (long long)S->q.p.group, (long long)S->q.p.r, S->ncopies, resq_cuda_device_name());
  goto done;
fail:
  if (strncmp(why, RESQ_BENCH_SKIP_PREFIX, strlen(RESQ_BENCH_SKIP_PREFIX)) == 0)
    resq_bench_skip(st, "%s", why + strlen(RESQ_BENCH_SKIP_PREFIX));
  else
    resq_bench_error(st, "%s", why);
done:
  rb_qa_free(&a);
  qa_free_dev(&dx);
  free(y);
  resq_cuda_free(dy);
  resq_cuda_free(work);
}

/* ======================================================================= libraries */
typedef struct l_ctx {
  int kind;
  int64_t M, N, K;
  const void *x;
  void **w;
  void *y;
} l_ctx;

static resq_status run_l(void *v, int copy) {
  l_ctx *c = v;
  if (c->kind == L_S8)
    return resq_gemm_s8_s32__cublaslt(c->M, c->N, c->K, c->x, c->K, c->w[copy], c->K, c->y, c->N);
  return resq_gemm_f16__cublas(c->M, c->N, c->K, c->x, c->K, c->w[copy], c->K, c->y, c->N,
                               c->kind == L_F16_F16 ? RESQ_CUBLAS_F16 : RESQ_CUBLAS_F32_PYTORCH);
}

/* the library weights of the current (type, N, K): host copy + device copies */
typedef struct lstate {
  int valid, s8;
  int64_t N, K;
  void *host;
  int ncopies;
  void **dev;
} lstate;
static lstate g_l[2]; /* 0: fp16, 1: s8 */

static void lstate_drop(lstate *s) {
  for (int i = 0; i < s->ncopies; i++) resq_cuda_free(s->dev[i]);
  free(s->dev);
  free(s->host);
  memset(s, 0, sizeof *s);
}

static int lstate_make(lstate *s, int s8, int64_t N, int64_t K, char *why, size_t whylen) {
  if (s->valid && s->N == N && s->K == K) return 0;
  lstate_drop(s);
  const size_t bytes = (size_t)(N * K) * (s8 ? 1 : 2);
  s->s8 = s8, s->N = N, s->K = K;
  s->host = malloc(bytes);
  int n = copies_for(bytes);
  s->dev = calloc((size_t)n, sizeof *s->dev);
  if (!s->host || !s->dev) return snprintf(why, whylen, "out of memory"), -1;
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name(s8 ? "cublaslt_w_s8" : "cublas_w_f16"));
  if (s8) rb_fill_s8(&r, s->host, (size_t)(N * K));
  else rb_fill_f16_normal(&r, s->host, (size_t)(N * K));
  for (int i = 0; i < n; i++) {
    if (!(s->dev[i] = dalloc(bytes)) || resq_cuda_h2d(s->dev[i], s->host, bytes) != RESQ_OK) {
      snprintf(why, whylen, "device weights (copy %d of %d): %s", i, n, resq_last_error());
      return -1;
    }
    s->ncopies = i + 1;
  }
  s->valid = 1;
  return 0;
}

static void bm_l(resq_bench_state *st, const void *params) {
  const int kind = *(const int *)params, s8 = kind == L_S8;
  const int64_t M = resq_bench_arg(st, 0), N = resq_bench_arg(st, 1), K = resq_bench_arg(st, 2);
  const size_t esz = s8 ? 1 : 2, osz = s8 ? 4 : 2;
  char why[768] = "";
  void *x = NULL, *y = NULL, *dx = NULL, *dy = NULL;
  if (g_no_gpu[0]) {
    resq_bench_skip(st, "no usable GPU: %s", g_no_gpu);
    return;
  }
  lstate *S = &g_l[s8];
  if (lstate_make(S, s8, N, K, why, sizeof why)) goto fail;
  x = malloc((size_t)(M * K) * esz);
  y = malloc((size_t)(M * N) * osz);
  dx = dalloc((size_t)(M * K) * esz);
  dy = dalloc((size_t)(M * N) * osz);
  if (!x || !y || !dx || !dy) {
    snprintf(why, sizeof why, "out of memory");
    goto fail;
  }
  {
    resq_rng r;
    resq_rng_init(&r, resq_seed_from_name(s8 ? "cublaslt_x_s8" : "cublas_x_f16"));
    if (s8) rb_fill_s8(&r, x, (size_t)(M * K));
    else rb_fill_f16_normal(&r, x, (size_t)(M * K));
  }
  if (resq_cuda_h2d(dx, x, (size_t)(M * K) * esz) != RESQ_OK) {
    snprintf(why, sizeof why, "upload: %s", resq_last_error());
    goto fail;
  }
  l_ctx c = {kind, M, N, K, dx, S->dev, dy};
  /* the check: fp16 with strict fp32 reductions (see the header), int8 exact */
  {
    resq_status s = s8 ? run_l(&c, S->ncopies - 1)
                       : resq_gemm_f16__cublas(M, N, K, dx, K, S->dev[S->ncopies - 1], K, dy, N, RESQ_CUBLAS_F32);
    if (s != RESQ_OK || resq_cuda_sync() != RESQ_OK || resq_cuda_d2h(y, dy, (size_t)(M * N) * osz) != RESQ_OK) {
      if (s == RESQ_ERR_UNSUPPORTED) snprintf(why, sizeof why, "%s%s", RESQ_BENCH_SKIP_PREFIX, resq_last_error());
      else snprintf(why, sizeof why, "%s: %s", g_lfamily[kind], resq_last_error());
      goto fail;
    }
    resq_rng r;
    resq_rng_init(&r, resq_seed_from_name("gemm_check_points"));
    const double g = rb_gamma_f32(K), u16 = 0x1.0p-11;
    for (int i = 0; i < NCHECK; i++) {
      int64_t m = i == 0 ? 0 : (i == 1 ? M - 1 : (int64_t)resq_rng_below(&r, (uint64_t)M));
      int64_t n = i == 0 ? 0 : (i == 1 ? N - 1 : (int64_t)resq_rng_below(&r, (uint64_t)N));
      if (s8) {
        const int8_t *xa = (const int8_t *)x + m * K, *wa = (const int8_t *)S->host + n * K;
        int64_t acc = 0;
        for (int64_t k = 0; k < K; k++) acc += (int64_t)xa[k] * (int64_t)wa[k];
        if (((const int32_t *)y)[m * N + n] != acc) {
          snprintf(why, sizeof why, "cuBLASLt int8 result %d at (%lld, %lld), exact %lld", ((const int32_t *)y)[m * N + n],
                   (long long)m, (long long)n, (long long)acc);
          goto fail;
        }
      } else {
        const uint16_t *xa = (const uint16_t *)x + m * K, *wa = (const uint16_t *)S->host + n * K;
        double ref = 0.0, sa = 0.0;
        for (int64_t k = 0; k < K; k++) {
          double p = (double)resq_f16_to_f32(xa[k]) * (double)resq_f16_to_f32(wa[k]);
          ref += p;
          sa += fabs(p);
        }
        double got = resq_f16_to_f32(((const uint16_t *)y)[m * N + n]), bound = g * sa + u16 * fabs(ref);
        if (!(fabs(got - ref) <= bound)) {
          snprintf(why, sizeof why, "cuBLAS fp16 result %.9g at (%lld, %lld), reference %.9g, bound %.3g", got,
                   (long long)m, (long long)n, ref, bound);
          goto fail;
        }
      }
    }
  }
  if (time_loop(st, run_l, &c, S->ncopies, why, sizeof why)) goto fail;
  counters(st, M, N, K, (double)(N * K) * (double)esz, (double)(M * K) * (double)esz, (double)(M * N) * (double)osz);
  if (kind == L_F16_F32)
    resq_bench_label(st, "impl=cublasGemmEx fp16, fp32 compute, default math mode (PyTorch default);copies=%d;device=%s",
                     S->ncopies, resq_cuda_device_name());
  else
    resq_bench_label(st, "baseline=gemm_f16_f32__cublas/M:%lld/N:%lld/K:%lld;impl=%s;copies=%d;device=%s", (long long)M,
                     (long long)N, (long long)K,
                     kind == L_S8 ? "cuBLASLt s8 x s8 -> s32, CUBLAS_COMPUTE_32I" : "cublasGemmEx fp16, fp16 compute",
                     S->ncopies, resq_cuda_device_name());
  goto done;
fail:
  if (strncmp(why, RESQ_BENCH_SKIP_PREFIX, strlen(RESQ_BENCH_SKIP_PREFIX)) == 0)
    resq_bench_skip(st, "%s", why + strlen(RESQ_BENCH_SKIP_PREFIX));
  else
    resq_bench_error(st, "%s", why);
done:
  free(x), free(y);
  resq_cuda_free(dx), resq_cuda_free(dy);
}

/* ======================================================================= main */
int main(int argc, char **argv) {
  rb_shapes sh;
  char why[512];
  static const char *const names[] = {"M", "N", "K"};
  static const int vars[RB_NVAR] = {RB_V_TOKEN, RB_V_GROUPED, RB_V_INT4}, libs[3] = {L_F16_F32, L_F16_F16, L_S8};
  if (rb_shapes_load(&sh) != 0) return 1;
  rb_context_common();
  g_cold = (size_t)256 << 20;
  if (resq_cuda_probe(why, sizeof why) != RESQ_OK) {
    snprintf(g_no_gpu, sizeof g_no_gpu, "%s", why);
    resq_bench_context("resq_cuda_device", "none");
    resq_bench_context("resq_cuda_skip_reason", why);
    fprintf(stderr, "bench_gemm_cuda: no usable GPU (%s): every benchmark is skipped\n", why);
  } else {
    int dev = 0, l2 = 0;
    cudaGetDevice(&dev);
    if (cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) == cudaSuccess && (size_t)l2 * 4 > g_cold)
      g_cold = (size_t)l2 * 4;
    if (cudaEventCreate(&g_e0) != cudaSuccess || cudaEventCreate(&g_e1) != cudaSuccess)
      snprintf(g_no_gpu, sizeof g_no_gpu, "cudaEventCreate failed");
    resq_bench_context("resq_cuda_device", resq_cuda_device_name());
    snprintf(why, sizeof why, "%zu", g_cold);
    resq_bench_context("resq_cuda_cold_bytes", why);
    fprintf(stderr, "bench_gemm_cuda: %s\n", resq_cuda_device_name());
  }
  for (int s = 0; s < sh.nshapes; s++) {
    char key[64];
    snprintf(key, sizeof key, "resq_layers_N%lld_K%lld", (long long)sh.shape[s].N, (long long)sh.shape[s].K);
    resq_bench_context(key, sh.shape[s].layers);
  }
  for (int s = 0; s < sh.nshapes; s++) {
    const char *layers = sh.shape[s].layers;
    for (int t = 0; t < sh.ntokens; t++) {
      int64_t a[3] = {sh.tokens[t], sh.shape[s].N, sh.shape[s].K};
      for (int l = 0; l < 3; l++)
        resq_bench_register_args(g_lfamily[l], bm_l, &libs[l], sizeof libs[l], RESQ_BENCH_MANUAL_TIME, names, a, 3);
      for (int vi = 0; vi < RB_NVAR; vi++) {
        if (vars[vi] == RB_V_GROUPED && !strstr(layers, "o_proj")) continue;
        if (vars[vi] == RB_V_INT4 && !strstr(layers, "down_proj") && !(rb_quick() && s == 0)) continue;
        resq_bench_register_args(g_family[vars[vi]], bm_q, &vars[vi], sizeof vars[vi], RESQ_BENCH_MANUAL_TIME, names,
                                 a, 3);
      }
    }
  }
  int rc = resq_bench_main(argc, argv);
  for (int v = 0; v < RB_NVAR; v++) qstate_drop(&g_q[v]);
  lstate_drop(&g_l[0]);
  lstate_drop(&g_l[1]);
  if (!g_no_gpu[0]) {
    resq_cublas_release();
    cudaEventDestroy(g_e0);
    cudaEventDestroy(g_e1);
  }
  return rc;
}
