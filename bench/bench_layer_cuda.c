/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_layer_cuda.c -- one Llama decoder layer on the CUDA backend
 * (resq/cuda_layer.h), ResQ form (resq_layer_q4q8_forward__cuda: mixed
 * INT4/INT8 GEMMs, fused RMSNorm + quantizers, K8, KV quantize-dequantize,
 * fused SiLU*mul + Hadamard + 4-bit quantizer) against the FP16 form
 * (resq_layer_fp16_forward__cuda: the same shared ops, cuBLAS fp16 GEMMs with
 * fp32 accumulation) on the same weights, timed with CUDA events (manual time):
 *
 *   layer_prefill_{q4q8,f16}__cuda/d/I/batch:B/seq:2048
 *       prefill of B sequences of 2048 tokens (full: B = 1, 4, 16; quick: B = 1,
 *       seq 256). The CUDA layer API runs one sequence per call (causal,
 *       positions 0..T-1), so a batch is B calls back to back, each on its own
 *       sequence, between two events. One weight copy (compute-bound: the
 *       weights are reused by 2048 tokens).
 *   layer_decode_{q4q8,f16}__cuda/d/I/batch:B/ctx:B
 *       the decode-sized proxy (B = 1, 4, 16, 64): one forward of B new tokens,
 *       so every GEMM has M = B and streams the whole layer's weights once, as
 *       a decode step of batch B does. It is NOT a decode step at context 2048:
 *       the CUDA layer API has no KV cache (attention sees the B tokens of the
 *       call, not a 2048-token cache; at Llama-3-8B and B = 64 the cache
 *       attention would add ~2 GFLOP and 64 x 2048 x 2 x 1024 x (cache bytes)
 *       of cache reads to ~28 GFLOP of GEMM per layer). The label says so.
 *       CUDA Graph: one forward is captured per weight copy (stream capture on
 *       a stream of this program, after an uncaptured warm-up call of the same
 *       size) and cudaGraphLaunch is timed. The forward is capturable after
 *       that warm-up (read in cuda/src/resq_layer_{q4q8,f16}__cuda.cu,
 *       resq_gemm_*.cu, rq_silu.cu, rq_hadamard_kernel.cuh): only kernel
 *       launches, cudaMemsetAsync / cudaMemcpyAsync on the resq stream and
 *       cuBLAS calls; the host tables (RoPE cos/sin, SiLU) are allocated and
 *       uploaded at the first call and only looked up afterwards; the
 *       cudaFuncSetAttribute / cudaDeviceGetAttribute calls are not stream
 *       work. If a capture fails anyway, the benchmark times direct launches
 *       and its label says graph=no with the CUDA error.
 *       Weights cold: one Llama-3-8B ResQ layer is ~120 MB and the FP16 layer
 *       ~436 MB, both above the L2 of any current GPU (H100/H200: 50-60 MB), so
 *       one forward already streams the layer from HBM; as bench_gemm_cuda.c,
 *       copies are rotated anyway until they reach max(256 MiB, 4 x L2)
 *       (ResQ: 3 copies of llama3-8b; FP16: 1), at most MAX_COPIES.
 *   Both forms use the FAST attention (fp32 online softmax, the same kernel in
 *   both forms: not a flash-attention kernel, so prefill times include an
 *   attention that a production stack would run faster on tensor cores).
 *   Stream: the program creates one (blocking) stream and installs it with
 *   resq_cuda_set_stream (the legacy default stream cannot be captured).
 *
 * The layer (config llama3-8b; quick: test, d 256): as bench_layer_cpu.c --
 *   FP16 form   resq/layer_synth.h's synthetic LLM-like layer (f16 weights,
 *               RMSNorm gammas), uploaded as is;
 *   ResQ form   the SAME f16 weights, gamma folded into q/k/v and gate/up, the
 *               o_proj columns in upstream's per-head order, the online
 *               Hadamard H_I folded into down_proj's input side, quantized by
 *               round-to-nearest (section 10) with ResQ's splits: r = d/8 hi
 *               columns for q/k/v/gate/up, per-head groups (hd, r_h = hd/8) for
 *               o_proj and the KV cache, pure INT4 down_proj; K8 from a random
 *               orthogonal head basis; uploaded by resq_layer_q4q8_upload__cuda.
 *               RTN weights, ResQ splits, NO PCA rotation (the reference's PCA
 *               pipeline takes minutes at d = 4096, and a rotation changes the
 *               weights' values, not the work of the forward pass).
 * Checked before timing, on the timed layer and a CHECK_T-token sequence, with
 * the EXACT attention (the timed FAST mode is checked against it by
 * verify/cuda_layer_test.c):
 *   - ResQ form vs resq_layer_q4q8_forward__ref, bit for bit. The backend
 *     differs from the reference in two documented places only (the RMSNorm
 *     double sum order, the device double exp in attention: resq/cuda_layer.h),
 *     each changing an fp32 rounding only when a value lies within ~1e-15
 *     (relative) of a rounding boundary, i.e. with probability ~1e-8 per
 *     value; the check is deterministic for a given layer, and a mismatch is a
 *     benchmark error naming the value (verify/cuda_layer_test.c locates the
 *     stage).
 *   - FP16 form, from its taps: each of the 7 cuBLAS GEMMs at NCHECK sampled
 *     outputs against the double dot product of the GPU's own f16 input and the
 *     host weight, |y - y*| <= gamma_K sum|x w| + u_16 |y*| (ref/CONTRACT.md
 *     section 11, as bench_gemm_cuda.c: strict fp32 reductions, one f16
 *     rounding), and both residual adds bit for bit (RNE_f16(a + b)); this
 *     validates the harness (each weight uploaded and used at its place). The
 *     end-to-end agreement with resq_layer_fp16_forward__ref is printed.
 * Counter layer_err: the GPU ResQ form's error against the GPU FP16 form on
 * that sequence, ||y_resq - y_fp16||_F / ||y_fp16 - h_in||_F (section 14's
 * metric; informational, RTN without rotation).
 * Counters: ops = 2 x (layer weights) x tokens (the GEMMs; attention not
 * counted), wbytes = bytes of the layer's weights as the form stores them,
 * bytes = wbytes + 4 d per token (f16 in and out), tokens.
 * Without a usable GPU every benchmark is skipped with the probe's reason.
 *
 * STATUS: COMPILED ONLY (CUDA 13.0, sm_90, on a machine without a GPU): it has
 * not run on a GPU unless a report in reports/ shows its results. */
#define _GNU_SOURCE
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "resq/cuda.h"
#include "resq/cuda_layer.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/layer_synth.h"
#include "resq/pca.h"
#include "resq/quant_act.h"
#include "resq/quant_weight.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"
#include "bench_layer_common.h"

#define CHECK_T 4
#define SYNTH_SEED 2024
#define NCHECK 64
#define MAX_COPIES 64
#define BATCH_TARGET_S 2e-3

enum { F_Q4Q8 = 0, F_F16 = 1 };
enum { P_PREFILL = 0, P_DECODE = 1 };

static char g_no_gpu[512];
static cudaStream_t g_stream;
static cudaEvent_t g_e0, g_e1;
static size_t g_cold = (size_t)256 << 20;

static void *dalloc(size_t bytes) {
  void *p = NULL;
  return resq_cuda_malloc(&p, bytes) == RESQ_OK ? p : NULL;
}

static int copies_for(size_t bytes) {
  size_t n = bytes ? (g_cold + bytes - 1) / bytes : 1;
  if (n < 1) n = 1;
  if (n > MAX_COPIES) n = MAX_COPIES;
  return (int)n;
}

/* ---- the layer, built once ---- */
typedef struct layer_state {
  int ready, failed;
  char why[768];
  char config[32];
  resq_layer_config c;
  resq_layer_synth syn;
  resq_layer_q4q8 q; /* host, canonical (reference) form */
  rbl_qlayer Q; /* the canonical ResQ form's arrays (bench_layer_common.h) */
  int ncq, ncf;
  resq_layer_q4q8_cuda *cq; /* device copies */
  resq_layer_fp16 *cf;      /* device copies (arrays are device pointers) */
  double wbytes_q4q8, wbytes_f16, nweights;
  double layer_err;
} layer_state;
static layer_state g_L;


static int layer_fail(layer_state *S, const char *what, resq_status st) {
  snprintf(S->why, sizeof S->why, "%s: %s: %s", what, resq_status_name(st), resq_last_error());
  S->failed = 1;
  return -1;
}

/* device copy of a host array (NULL on failure) */
static void *dup_h2d(const void *h, size_t bytes) {
  void *d = dalloc(bytes);
  if (d && resq_cuda_h2d(d, h, bytes) != RESQ_OK) {
    resq_cuda_free(d);
    d = NULL;
  }
  return d;
}

static int fp16_upload(const resq_layer_config *c, const resq_layer_fp16 *w, resq_layer_fp16 *out) {
  const int64_t d = c->d, I = c->I, qd = c->H * c->hd, kd = c->G * c->hd;
  memset(out, 0, sizeof *out);
  out->wq = dup_h2d(w->wq, (size_t)(qd * d) * 2);
  out->wk = dup_h2d(w->wk, (size_t)(kd * d) * 2);
  out->wv = dup_h2d(w->wv, (size_t)(kd * d) * 2);
  out->wo = dup_h2d(w->wo, (size_t)(d * qd) * 2);
  out->wg = dup_h2d(w->wg, (size_t)(I * d) * 2);
  out->wu = dup_h2d(w->wu, (size_t)(I * d) * 2);
  out->wd = dup_h2d(w->wd, (size_t)(d * I) * 2);
  out->ln1 = dup_h2d(w->ln1, (size_t)d * 4);
  out->ln2 = dup_h2d(w->ln2, (size_t)d * 4);
  return out->wq && out->wk && out->wv && out->wo && out->wg && out->wu && out->wd && out->ln1 && out->ln2 ? 0 : -1;
}

static void fp16_free_dev(resq_layer_fp16 *w) {
  const void *p[9] = {w->wq, w->wk, w->wv, w->wo, w->wg, w->wu, w->wd, w->ln1, w->ln2};
  for (int i = 0; i < 9; i++) resq_cuda_free((void *)p[i]);
  memset(w, 0, sizeof *w);
}

/* NCHECK sampled outputs of y[T][N] = x[T][K] w[N][K]^T (f16, host copies of the GPU's data) within
 * gamma_K sum|x w| + u_16 |y*| of the exact (double) product: fp32 accumulation in any order is
 * within gamma_K sum|x w| of the exact sum, and the result is rounded once to f16. */
static int gemm_sample_check(layer_state *S, const char *name, const uint16_t *x, const uint16_t *w, const uint16_t *y,
                             int64_t T, int64_t N, int64_t K) {
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name(name));
  const double g = rb_gamma_f32(K), u16 = 0x1.0p-11;
  for (int i = 0; i < NCHECK; i++) {
    int64_t m = i == 0 ? 0 : (i == 1 ? T - 1 : (int64_t)resq_rng_below(&r, (uint64_t)T));
    int64_t n = i == 0 ? 0 : (i == 1 ? N - 1 : (int64_t)resq_rng_below(&r, (uint64_t)N));
    double ref = 0.0, sa = 0.0;
    for (int64_t k = 0; k < K; k++) {
      double p = (double)resq_f16_to_f32(x[m * K + k]) * (double)resq_f16_to_f32(w[n * K + k]);
      ref += p;
      sa += fabs(p);
    }
    double got = resq_f16_to_f32(y[m * N + n]), bound = g * sa + u16 * fabs(ref);
    if (!(fabs(got - ref) <= bound)) {
      snprintf(S->why, sizeof S->why,
               "16-bit form: %s GEMM output %.9g at token %lld column %lld, exact %.9g, bound %.3g; "
               "REPRO: RESQ_BENCH_SET=%s bench_layer_cuda",
               name, got, (long long)m, (long long)n, ref, bound, rb_quick() ? "quick" : "full");
      S->failed = 1;
      return -1;
    }
  }
  return 0;
}

static int residual_check(layer_state *S, const char *name, const uint16_t *a, const uint16_t *b, const uint16_t *y,
                          int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (y[i] != resq_f32_to_f16(resq_f16_to_f32(a[i]) + resq_f16_to_f32(b[i]))) {
      snprintf(S->why, sizeof S->why,
               "16-bit form: %s at %lld is 0x%04x, RNE_f16(a + b) = 0x%04x; REPRO: RESQ_BENCH_SET=%s bench_layer_cuda",
               name, (long long)i, y[i], resq_f32_to_f16(resq_f16_to_f32(a[i]) + resq_f16_to_f32(b[i])),
               rb_quick() ? "quick" : "full");
      S->failed = 1;
      return -1;
    }
  return 0;
}

/* The FP16 form's check from its taps (see the header); yg: its output, downloaded. */
static int check_fp16(layer_state *S, const uint16_t *h, const uint16_t *dh, uint16_t *yg) {
  const resq_layer_config *c = &S->c;
  const int64_t T = CHECK_T, d = c->d, I = c->I, qd = c->H * c->hd, kd = c->G * c->hd;
  const resq_layer_fp16 *w = &S->syn.w;
  enum { A1, Q, K, V, O, TO, HM, A2, G, U, Z, TD, NT };
  const int64_t width[NT] = {d, qd, kd, kd, qd, d, d, d, I, I, I, d};
  uint16_t *dt[NT] = {0}, *ht[NT] = {0};
  uint16_t *dy = NULL;
  void *work = NULL;
  int rc = -1;
  for (int i = 0; i < NT; i++) {
    dt[i] = dalloc((size_t)(T * width[i]) * 2);
    ht[i] = malloc((size_t)(T * width[i]) * 2);
    if (!dt[i] || !ht[i]) {
      layer_fail(S, "16-bit check: allocation", RESQ_ERR_NOMEM);
      goto out;
    }
  }
  resq_layer_fp16_taps_cuda tp;
  memset(&tp, 0, sizeof tp);
  tp.a_attn = dt[A1], tp.q = dt[Q], tp.k = dt[K], tp.v = dt[V], tp.o = dt[O], tp.t_o = dt[TO], tp.h_mid = dt[HM];
  tp.a_mlp = dt[A2], tp.g = dt[G], tp.u = dt[U], tp.z = dt[Z], tp.t_down = dt[TD];
  const size_t ws = resq_layer_fp16_workspace_size__cuda(c, T);
  work = dalloc(ws);
  dy = dalloc((size_t)(T * d) * 2);
  if (!work || !dy) {
    layer_fail(S, "16-bit check: allocation", RESQ_ERR_NOMEM);
    goto out;
  }
  resq_status st = resq_layer_fp16_forward__cuda(c, &S->cf[S->ncf - 1], T, dh, dy, RESQ_ATTN_EXACT, &tp, work, ws);
  if (st == RESQ_OK) st = resq_cuda_sync();
  for (int i = 0; i < NT && st == RESQ_OK; i++) st = resq_cuda_d2h(ht[i], dt[i], (size_t)(T * width[i]) * 2);
  if (st == RESQ_OK) st = resq_cuda_d2h(yg, dy, (size_t)(T * d) * 2);
  if (st != RESQ_OK) {
    layer_fail(S, "resq_layer_fp16_forward__cuda", st);
    goto out;
  }
  if (gemm_sample_check(S, "q_proj", ht[A1], w->wq, ht[Q], T, qd, d) ||
      gemm_sample_check(S, "k_proj", ht[A1], w->wk, ht[K], T, kd, d) ||
      gemm_sample_check(S, "v_proj", ht[A1], w->wv, ht[V], T, kd, d) ||
      gemm_sample_check(S, "o_proj", ht[O], w->wo, ht[TO], T, d, qd) ||
      gemm_sample_check(S, "gate_proj", ht[A2], w->wg, ht[G], T, I, d) ||
      gemm_sample_check(S, "up_proj", ht[A2], w->wu, ht[U], T, I, d) ||
      gemm_sample_check(S, "down_proj", ht[Z], w->wd, ht[TD], T, d, I) ||
      residual_check(S, "h_mid", h, ht[TO], ht[HM], T * d) || residual_check(S, "h_out", ht[HM], ht[TD], yg, T * d))
    goto out;
  rc = 0;
out:
  for (int i = 0; i < NT; i++) resq_cuda_free(dt[i]), free(ht[i]);
  resq_cuda_free(dy), resq_cuda_free(work);
  return rc;
}

static int layer_build(layer_state *S) {
  if (S->ready) return 0;
  if (S->failed) return -1;
  const int quick = rb_quick();
  snprintf(S->config, sizeof S->config, "%s", quick ? "test" : "llama3-8b");
  resq_status st = resq_layer_config_named(S->config, &S->c);
  if (st != RESQ_OK) return layer_fail(S, "config", st);
  const resq_layer_config *c = &S->c;
  const int64_t d = c->d;
  const double t0 = rb_now();
  if ((st = resq_layer_synth_init(&S->syn, c, NULL, SYNTH_SEED)) != RESQ_OK) return layer_fail(S, "synthetic layer", st);
  const resq_layer_fp16 *w = &S->syn.w;
  /* ---- the ResQ form (bench_layer_common.h) */
  const char *bwhat = NULL;
  if ((st = rbl_build(&S->Q, c, w, resq_hadamard_f32__ref, &bwhat)) != RESQ_OK) return layer_fail(S, bwhat, st);
  S->q = S->Q.q;
  resq_layer_q4q8 *q = &S->q;
  S->wbytes_q4q8 = S->Q.wbytes;
  S->nweights = S->Q.nweights;
  S->wbytes_f16 = 2.0 * S->nweights;
  /* ---- device copies: one for prefill; cold copies for decode */
  const int ncq = copies_for((size_t)S->wbytes_q4q8), ncf = copies_for((size_t)S->wbytes_f16);
  S->cq = calloc((size_t)ncq, sizeof *S->cq);
  S->cf = calloc((size_t)ncf, sizeof *S->cf);
  if (!S->cq || !S->cf) return layer_fail(S, "allocation", RESQ_ERR_NOMEM);
  for (int i = 0; i < ncq; i++) {
    if ((st = resq_layer_q4q8_upload__cuda(c, q, &S->cq[i])) != RESQ_OK)
      return layer_fail(S, "resq_layer_q4q8_upload__cuda", st);
    S->ncq = i + 1;
  }
  for (int i = 0; i < ncf; i++) {
    S->ncf = i + 1; /* counted first: a partial upload is freed by layer_free */
    if (fp16_upload(c, w, &S->cf[i])) return layer_fail(S, "16-bit weights upload", RESQ_ERR_NOMEM);
  }
  /* ---- check (see the header): CHECK_T tokens, exact attention, the last copy of each form */
  {
    const int64_t T = CHECK_T;
    uint16_t *h = rb_alloc((size_t)(T * d) * 2), *yr = rb_alloc((size_t)(T * d) * 2), *yc = rb_alloc((size_t)(T * d) * 2),
             *yf = rb_alloc((size_t)(T * d) * 2);
    size_t wrq = resq_layer_q4q8_workspace_size(c, T), wrf = resq_layer_fp16_workspace_size(c, T);
    size_t wcq = resq_layer_q4q8_workspace_size__cuda(c, &S->cq[S->ncq - 1], T);
    void *work = rb_alloc(wrq > wrf ? wrq : wrf), *dwork = dalloc(wcq);
    uint16_t *dh = dalloc((size_t)(T * d) * 2), *dy = dalloc((size_t)(T * d) * 2);
    const char *what = NULL;
    if (!h || !yr || !yc || !yf || !work || !dwork || !dh || !dy) return layer_fail(S, "allocation", RESQ_ERR_NOMEM);
    if ((st = resq_layer_synth_sequence(&S->syn, RESQ_SYNTH_STREAM_EVAL, 0, T, h, d)) != RESQ_OK) what = "sequence";
    if (!what && (st = resq_cuda_h2d(dh, h, (size_t)(T * d) * 2)) != RESQ_OK) what = "upload";
    if (!what && (st = resq_layer_q4q8_forward__ref(c, q, T, h, yr, work, wrq)) != RESQ_OK) what = "resq_layer_q4q8_forward__ref";
    if (!what && (st = resq_layer_q4q8_forward__cuda(c, &S->cq[S->ncq - 1], T, dh, dy, RESQ_ATTN_EXACT, NULL, dwork,
                                                     wcq)) != RESQ_OK)
      what = "resq_layer_q4q8_forward__cuda";
    if (!what && ((st = resq_cuda_sync()) != RESQ_OK || (st = resq_cuda_d2h(yc, dy, (size_t)(T * d) * 2)) != RESQ_OK))
      what = "resq_layer_q4q8_forward__cuda (sync)";
    if (what) return layer_fail(S, what, st);
    for (int64_t i = 0; i < T * d; i++)
      if (yr[i] != yc[i]) {
        snprintf(S->why, sizeof S->why,
                 "ResQ form: GPU output differs from resq_layer_q4q8_forward__ref at token %lld channel %lld (0x%04x vs "
                 "0x%04x); verify/cuda_layer_test.c locates the stage; REPRO: RESQ_BENCH_SET=%s bench_layer_cuda",
                 (long long)(i / d), (long long)(i % d), yc[i], yr[i], quick ? "quick" : "full");
        S->failed = 1;
        return -1;
      }
    if (check_fp16(S, h, dh, yf)) return -1;
    if ((st = resq_layer_fp16_forward__ref(c, w, T, h, yr, work, wrf)) != RESQ_OK)
      return layer_fail(S, "resq_layer_fp16_forward__ref", st);
    double num = 0.0, den = 0.0, emax = 0.0;
    int64_t same = 0;
    for (int64_t i = 0; i < T * d; i++) {
      double a = resq_f16_to_f32(yc[i]), b = resq_f16_to_f32(yf[i]), x = resq_f16_to_f32(h[i]),
             r = resq_f16_to_f32(yr[i]);
      num += (a - b) * (a - b);
      den += (b - x) * (b - x);
      same += yf[i] == yr[i];
      if (fabs(b - r) > emax) emax = fabs(b - r);
    }
    S->layer_err = den > 0 ? sqrt(num / den) : -1.0;
    fprintf(stderr,
            "bench_layer_cuda: check passed: ResQ form bit-identical to the reference (%lld outputs); 16-bit form: GEMM "
            "bounds and residuals hold, %lld of %lld outputs bit-identical to resq_layer_fp16_forward__ref (max |diff| "
            "%.3g: cuBLAS's summation order)\n",
            (long long)(T * d), (long long)same, (long long)(T * d), emax);
    rb_free(h), rb_free(yr), rb_free(yc), rb_free(yf), rb_free(work);
    resq_cuda_free(dwork), resq_cuda_free(dh), resq_cuda_free(dy);
  }
  fprintf(stderr,
          "bench_layer_cuda: %s layer built and checked in %.1f s (ResQ %d copies of %.0f MB, 16-bit %d of %.0f MB)\n",
          S->config, rb_now() - t0, S->ncq, S->wbytes_q4q8 / 1e6, S->ncf, S->wbytes_f16 / 1e6);
  S->ready = 1;
  return 0;
}

static void layer_free(layer_state *S) {
  for (int i = 0; i < S->ncq; i++) resq_layer_q4q8_free__cuda(&S->cq[i]);
  for (int i = 0; i < S->ncf; i++) fp16_free_dev(&S->cf[i]);
  free(S->cq), free(S->cf);
  rbl_free(&S->Q);
  if (S->syn.w.wq) resq_layer_synth_free(&S->syn);
  memset(S, 0, sizeof *S);
}

/* ---- one forward of either form on copy i */
typedef struct fwd_ctx {
  const layer_state *S;
  int q4;
  int64_t T;
  uint16_t *y;
  void *work;
  size_t ws;
} fwd_ctx;

static resq_status forward(const fwd_ctx *f, int copy, const uint16_t *h) {
  const resq_layer_config *c = &f->S->c;
  return f->q4 ? resq_layer_q4q8_forward__cuda(c, &f->S->cq[copy], f->T, h, f->y, RESQ_ATTN_FAST, NULL, f->work, f->ws)
               : resq_layer_fp16_forward__cuda(c, &f->S->cf[copy], f->T, h, f->y, RESQ_ATTN_FAST, NULL, f->work, f->ws);
}

/* Capture one forward on g_stream into *exec. 0 on success; else -1 with the reason, the stream left
 * out of capture mode and the error state cleared. */
static int capture(const fwd_ctx *f, int copy, const uint16_t *h, cudaGraphExec_t *exec, char *why, size_t whylen) {
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    snprintf(why, whylen, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
    cudaGetLastError();
    return -1;
  }
  resq_status s = forward(f, copy, h);
  e = cudaStreamEndCapture(g_stream, &graph);
  if (s != RESQ_OK || e != cudaSuccess || !graph) {
    if (s != RESQ_OK) snprintf(why, whylen, "forward during capture: %s", resq_last_error());
    else snprintf(why, whylen, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    return -1;
  }
  e = cudaGraphInstantiate(exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    snprintf(why, whylen, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    cudaGetLastError();
    return -1;
  }
  return 0;
}

typedef struct lparams {
  int form, phase;
} lparams;

static void bm_layer(resq_bench_state *st, const void *params) {
  const lparams *P = params;
  layer_state *S = &g_L;
  if (g_no_gpu[0]) {
    resq_bench_skip(st, "no usable GPU: %s", g_no_gpu);
    return;
  }
  if (layer_build(S)) {
    resq_bench_error(st, "%s", S->why);
    return;
  }
  const resq_layer_config *c = &S->c;
  const int64_t B = resq_bench_arg(st, 2), T = P->phase == P_PREFILL ? resq_bench_arg(st, 3) : B;
  const int64_t nseq = P->phase == P_PREFILL ? B : 1;
  const int q4 = P->form == F_Q4Q8;
  /* prefill: one copy (compute-bound); decode: the cold copies */
  const int ncopies = P->phase == P_PREFILL ? 1 : (q4 ? S->ncq : S->ncf);
  fwd_ctx f = {S, q4, T, NULL, NULL, 0};
  f.ws = q4 ? resq_layer_q4q8_workspace_size__cuda(c, &S->cq[0], T) : resq_layer_fp16_workspace_size__cuda(c, T);
  uint16_t *h = rb_alloc((size_t)(nseq * T * c->d) * 2), *dh = dalloc((size_t)(nseq * T * c->d) * 2);
  f.y = dalloc((size_t)(T * c->d) * 2);
  f.work = dalloc(f.ws);
  cudaGraphExec_t *ex = P->phase == P_DECODE ? calloc((size_t)ncopies, sizeof *ex) : NULL;
  int nex = 0, graph = 0;
  char why[512] = "", gwhy[400] = "";
  resq_status s = RESQ_OK;
  if (!h || !dh || !f.y || !f.work || (P->phase == P_DECODE && !ex)) {
    snprintf(why, sizeof why, "out of memory");
    goto fail;
  }
  for (int64_t b = 0; b < nseq && s == RESQ_OK; b++)
    s = resq_layer_synth_sequence(&S->syn, RESQ_SYNTH_STREAM_EVAL, (uint64_t)(1 + b), T, h + b * T * c->d, c->d);
  if (s == RESQ_OK) s = resq_cuda_h2d(dh, h, (size_t)(nseq * T * c->d) * 2);
  if (s != RESQ_OK) {
    snprintf(why, sizeof why, "sequence: %s", resq_last_error());
    goto fail;
  }
  /* warm-up, uncaptured (the host tables of RoPE and SiLU, the kernels' attributes, cuBLAS's handle) */
  for (int i = 0; i < ncopies && s == RESQ_OK; i++) s = forward(&f, i, dh);
  if (s == RESQ_OK) s = resq_cuda_sync();
  if (s != RESQ_OK) {
    snprintf(why, sizeof why, "forward: %s: %s", resq_status_name(s), resq_last_error());
    goto fail;
  }
  float ms = 0.0f;
  if (P->phase == P_PREFILL) {
    /* B sequences back to back between two events, one iteration per batch */
    while (resq_bench_keep_running(st, 1)) {
      cudaEventRecord(g_e0, g_stream);
      for (int64_t b = 0; b < nseq; b++) s = forward(&f, 0, dh + b * T * c->d);
      cudaEventRecord(g_e1, g_stream);
      cudaEventSynchronize(g_e1);
      cudaEventElapsedTime(&ms, g_e0, g_e1);
      resq_bench_set_iteration_time(st, (double)ms * 1e-3);
    }
  } else {
    graph = 1;
    for (int i = 0; i < ncopies && graph; i++) {
      if (capture(&f, i, dh, &ex[i], gwhy, sizeof gwhy)) {
        graph = 0;
        fprintf(stderr, "bench_layer_cuda: %s: CUDA Graph capture failed (%s): timing direct launches\n",
                q4 ? "q4q8" : "f16", gwhy);
      } else {
        nex = i + 1;
      }
    }
    /* one call per copy (graph or direct), timed, to size the batch between two events */
    cudaEventRecord(g_e0, g_stream);
    for (int i = 0; i < ncopies; i++) {
      if (graph) cudaGraphLaunch(ex[i], g_stream);
      else s = forward(&f, i, dh);
    }
    cudaEventRecord(g_e1, g_stream);
    cudaEventSynchronize(g_e1);
    cudaEventElapsedTime(&ms, g_e0, g_e1);
    uint64_t batch = ms > 0 ? (uint64_t)(BATCH_TARGET_S / (ms * 1e-3 / ncopies)) : 100;
    if (batch < 1) batch = 1;
    if (batch > 2000) batch = 2000;
    int i = 0;
    while (resq_bench_keep_running(st, batch)) {
      cudaEventRecord(g_e0, g_stream);
      for (uint64_t k = 0; k < batch; k++) {
        if (graph) cudaGraphLaunch(ex[i], g_stream);
        else s = forward(&f, i, dh);
        if (++i == ncopies) i = 0;
      }
      cudaEventRecord(g_e1, g_stream);
      cudaEventSynchronize(g_e1);
      cudaEventElapsedTime(&ms, g_e0, g_e1);
      resq_bench_set_iteration_time(st, (double)ms * 1e-3);
    }
  }
  {
    cudaError_t e = cudaGetLastError();
    if (s != RESQ_OK || e != cudaSuccess) {
      snprintf(why, sizeof why, "during timing: %s", s != RESQ_OK ? resq_last_error() : cudaGetErrorString(e));
      goto fail;
    }
  }
  resq_bench_counter(st, "ops", 2.0 * S->nweights * (double)(nseq * T), RESQ_CTR_RATE);
  resq_bench_counter(st, "wbytes", q4 ? S->wbytes_q4q8 : S->wbytes_f16, RESQ_CTR_RATE);
  resq_bench_counter(st, "bytes", (q4 ? S->wbytes_q4q8 : S->wbytes_f16) + 4.0 * (double)(nseq * T * c->d), RESQ_CTR_RATE);
  resq_bench_counter(st, "tokens", (double)(nseq * T), RESQ_CTR_PLAIN);
  resq_bench_counter(st, "layer_err", S->layer_err, RESQ_CTR_PLAIN);
  {
    const char *ph = P->phase == P_PREFILL ? "prefill" : "decode";
    char base[160], gl[480], dl[200];
    if (P->phase == P_PREFILL) {
      snprintf(base, sizeof base, "layer_prefill_f16__cuda/d:%lld/I:%lld/batch:%lld/seq:%lld", (long long)c->d,
               (long long)c->I, (long long)B, (long long)T);
      snprintf(gl, sizeof gl, "graph=no (prefill: one stream of %lld forwards)", (long long)nseq);
      dl[0] = 0;
    } else {
      snprintf(base, sizeof base, "layer_decode_f16__cuda/d:%lld/I:%lld/batch:%lld/ctx:%lld", (long long)c->d,
               (long long)c->I, (long long)B, (long long)T);
      if (graph) snprintf(gl, sizeof gl, "graph=yes (one forward captured per weight copy, cudaGraphLaunch timed)");
      else snprintf(gl, sizeof gl, "graph=no (capture failed: %s)", gwhy);
      snprintf(dl, sizeof dl,
               ";decode=proxy: %lld new tokens, every GEMM at M = %lld, attention over those tokens, no KV cache "
               "(not a decode step at context 2048)",
               (long long)B, (long long)B);
    }
    for (char *p = gl; *p; p++)
      if (*p == ';') *p = ',';
    if (q4)
      resq_bench_label(st,
                       "baseline=%s;config=%s;phase=%s;impl=resq-cuda RTN weights, ResQ splits, fast attention;%s;"
                       "copies=%d;device=%s%s",
                       base, S->config, ph, gl, ncopies, resq_cuda_device_name(), dl);
    else
      resq_bench_label(st,
                       "config=%s;phase=%s;impl=resq-cuda fp16 weights, cuBLAS fp16 GEMMs with fp32 accumulation, fast "
                       "attention;%s;copies=%d;device=%s%s",
                       S->config, ph, gl, ncopies, resq_cuda_device_name(), dl);
  }
  goto done;
fail:
  resq_bench_error(st, "%s", why);
done:
  for (int i = 0; i < nex; i++) cudaGraphExecDestroy(ex[i]);
  free(ex);
  rb_free(h);
  resq_cuda_free(dh), resq_cuda_free(f.y), resq_cuda_free(f.work);
}

int main(int argc, char **argv) {
  const int quick = rb_quick();
  static const lparams pq = {F_Q4Q8, P_PREFILL}, pf = {F_F16, P_PREFILL}, dq = {F_Q4Q8, P_DECODE}, df = {F_F16, P_DECODE};
  static const char *const pn[] = {"d", "I", "batch", "seq"}, *const dn[] = {"d", "I", "batch", "ctx"};
  static const int64_t full_pb[] = {1, 4, 16}, full_db[] = {1, 4, 16, 64}, quick_db[] = {1, 16};
  resq_layer_config c;
  char buf[512];
  if (resq_layer_config_named(quick ? "test" : "llama3-8b", &c) != RESQ_OK) return 1;
  rb_context_common();
  resq_bench_context("resq_layer_config", quick ? "test" : "llama3-8b");
  if (resq_cuda_probe(buf, sizeof buf) != RESQ_OK) {
    snprintf(g_no_gpu, sizeof g_no_gpu, "%s", buf);
    resq_bench_context("resq_cuda_device", "none");
    resq_bench_context("resq_cuda_skip_reason", buf);
    fprintf(stderr, "bench_layer_cuda: no usable GPU (%s): every benchmark is skipped\n", buf);
  } else {
    int dev = 0, l2 = 0;
    cudaGetDevice(&dev);
    if (cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) == cudaSuccess && (size_t)l2 * 4 > g_cold)
      g_cold = (size_t)l2 * 4;
    /* a blocking stream: ordered with the synchronous copies of resq_cuda_h2d / d2h (legacy
     * stream), and capturable (the legacy default stream is not) */
    if (cudaStreamCreate(&g_stream) != cudaSuccess || cudaEventCreate(&g_e0) != cudaSuccess ||
        cudaEventCreate(&g_e1) != cudaSuccess)
      snprintf(g_no_gpu, sizeof g_no_gpu, "cudaStreamCreate / cudaEventCreate failed");
    else
      resq_cuda_set_stream(g_stream);
    resq_bench_context("resq_cuda_device", resq_cuda_device_name());
    snprintf(buf, sizeof buf, "%zu", g_cold);
    resq_bench_context("resq_cuda_cold_bytes", buf);
    fprintf(stderr, "bench_layer_cuda: %s\n", resq_cuda_device_name());
  }
  const int64_t seq = quick ? 256 : 2048;
  const int npb = quick ? 1 : 3, ndb = quick ? 2 : 4;
  const unsigned fl = RESQ_BENCH_MANUAL_TIME;
  /* back to back: the 16-bit form, then ResQ, at each size */
  for (int i = 0; i < ndb; i++) {
    int64_t a[4] = {c.d, c.I, quick ? quick_db[i] : full_db[i], 0};
    a[3] = a[2];
    resq_bench_register_args("layer_decode_f16__cuda", bm_layer, &df, sizeof df, fl, dn, a, 4);
    resq_bench_register_args("layer_decode_q4q8__cuda", bm_layer, &dq, sizeof dq, fl, dn, a, 4);
  }
  for (int i = 0; i < npb; i++) {
    int64_t a[4] = {c.d, c.I, full_pb[i], seq};
    resq_bench_register_args("layer_prefill_f16__cuda", bm_layer, &pf, sizeof pf, fl, pn, a, 4);
    resq_bench_register_args("layer_prefill_q4q8__cuda", bm_layer, &pq, sizeof pq, fl, pn, a, 4);
  }
  int rc = resq_bench_main(argc, argv);
  layer_free(&g_L);
  if (!g_no_gpu[0]) {
    resq_cublas_release();
    cudaEventDestroy(g_e0);
    cudaEventDestroy(g_e1);
    resq_cuda_set_stream(NULL);
    cudaStreamDestroy(g_stream);
  }
  return rc;
}
