/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_layer_cpu.c -- one Llama decoder layer on the CPU backend,
 * ResQ form (resq_layer_q4q8_forward__cpu: mixed INT4/INT8 GEMMs, activation
 * and KV quantizers, K8, online Hadamard) against the 16-bit form
 * (resq_layer_fp16_forward__cpu: fp16 weights, fp32 accumulation, the CPU
 * backend's 16-bit GEMM; resq/cpu.h says why it is the layer baseline) on the
 * same weights:
 *
 *   layer_prefill_{q4q8,f16}__cpu/d/I/batch:B/seq:2048
 *       prefill of B sequences of 2048 tokens (full: B = 1, 4; quick: B = 1,
 *       seq 256), one timed call (RESQ_BENCH_ONCE: seconds per call). The CPU
 *       layer API runs one sequence per call (causal, positions 0..T-1), so a
 *       batch is B calls, each on its own sequence; B = 16 (the upper
 *       end) would take minutes per form on 2 cores and is not registered.
 *   layer_decode_{q4q8,f16}__cpu/d/I/batch:B/ctx:B
 *       the decode-sized proxy (B = 1, 4, 16, 64): one forward of B new tokens,
 *       so every GEMM has M = B and streams the whole layer's weights once, as
 *       a decode step of batch B does. It is NOT a decode step at context 2048:
 *       the CPU backend has no KV-cache API (attention sees the B tokens of
 *       the call, not a 2048-token cache; at Llama-3-8B and B = 64 the cache
 *       attention would add ~2 GFLOP to ~28 GFLOP of GEMM per layer). Weights
 *       are cold: packed copies of the layer are rotated, one per call, so that
 *       the copies together exceed rb_cold_bytes() (max(256 MiB, 2 x LLC)).
 *
 * The layer (config llama3-8b; quick: test, d 256):
 *   FP16 form   resq/layer_synth.h's synthetic LLM-like layer (f16 weights,
 *               RMSNorm gammas), packed by resq_layer_fp16_pack__cpu;
 *   ResQ form   the SAME f16 weights, gamma folded into q/k/v and gate/up, the
 *               o_proj columns in upstream's per-head order, the online
 *               Hadamard H_I folded into down_proj's input side, quantized by
 *               round-to-nearest (section 10) with ResQ's splits: r = d/8 hi
 *               columns for q/k/v/gate/up, per-head groups (hd, r_h = hd/8) for
 *               o_proj and the KV cache, pure INT4 down_proj; K8 from a random
 *               orthogonal head basis; packed by resq_layer_q4q8_pack__cpu.
 *               No PCA rotation: the reference pipeline (resq/layer_prepare.h)
 *               computes it in minutes at d = 4096 (scalar eigensolver and
 *               fusion), and a rotation changes the weights' values, not the
 *               work of the forward pass. The quality comparison of the methods
 *               is `resq layer-error` (the layer-error section of the report).
 * Checked before timing: both CPU forms against the reference forms
 * (resq_layer_{q4q8,fp16}_forward__ref) on the same layer and a 4-token
 * sequence, bit for bit (the CPU layer keeps the reference's operation order,
 * resq/cpu.h). Counter layer_err: the ResQ form's error against the FP16 form
 * on that sequence, ||y_resq - y_fp16||_F / ||y_fp16 - h_in||_F (section 14's
 * metric; informational, this layer is RTN without rotation).
 * Counters: ops = 2 x (layer weights) x tokens (the GEMMs; attention not
 * counted), wbytes = bytes of the layer's weights as the form stores them. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "resq/cpu.h"
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

enum { F_Q4Q8 = 0, F_F16 = 1 };
enum { P_PREFILL = 0, P_DECODE = 1 };

/* ---- the layer, built once ---- */
typedef struct layer_state {
  int ready, failed;
  char why[768];
  char config[32];
  resq_layer_config c;
  resq_layer_synth syn;
  /* ResQ form: canonical (reference) and the CPU copies */
  resq_layer_q4q8 q;
  rbl_qlayer Q; /* the canonical ResQ form's arrays (bench_layer_common.h) */
  int ncq, ncf;
  resq_layer_q4q8_cpu *cq;
  resq_layer_fp16_cpu *cf;
  double wbytes_q4q8, wbytes_f16, nweights;
  double layer_err;
} layer_state;
static layer_state g_L;


static int layer_fail(layer_state *S, const char *what, resq_status st) {
  snprintf(S->why, sizeof S->why, "%s: %s: %s", what, resq_status_name(st), resq_last_error());
  S->failed = 1;
  return -1;
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
  if ((st = rbl_build(&S->Q, c, w, resq_hadamard_f32__cpu, &bwhat)) != RESQ_OK) return layer_fail(S, bwhat, st);
  S->q = S->Q.q;
  resq_layer_q4q8 *q = &S->q;
  S->wbytes_q4q8 = S->Q.wbytes;
  S->nweights = S->Q.nweights;
  S->wbytes_f16 = 2.0 * S->nweights;
  /* ---- CPU packs: one copy for prefill; cold copies for decode */
  const int ncq = rb_copies_for((size_t)S->wbytes_q4q8), ncf = rb_copies_for((size_t)S->wbytes_f16);
  S->cq = calloc((size_t)ncq, sizeof *S->cq);
  S->cf = calloc((size_t)ncf, sizeof *S->cf);
  if (!S->cq || !S->cf) return layer_fail(S, "allocation", RESQ_ERR_NOMEM);
  for (int i = 0; i < ncq; i++) {
    if ((st = resq_layer_q4q8_pack__cpu(c, q, &S->cq[i])) != RESQ_OK) return layer_fail(S, "resq_layer_q4q8_pack__cpu", st);
    S->ncq = i + 1;
  }
  for (int i = 0; i < ncf; i++) {
    if ((st = resq_layer_fp16_pack__cpu(c, w, &S->cf[i])) != RESQ_OK) return layer_fail(S, "resq_layer_fp16_pack__cpu", st);
    S->ncf = i + 1;
  }
  /* ---- check: CPU forms vs reference forms on a CHECK_T-token sequence, bit for bit */
  {
    const int64_t T = CHECK_T;
    uint16_t *h = rb_alloc((size_t)(T * d) * 2), *yr = rb_alloc((size_t)(T * d) * 2), *yc = rb_alloc((size_t)(T * d) * 2),
             *yf = rb_alloc((size_t)(T * d) * 2);
    size_t wrq = resq_layer_q4q8_workspace_size(c, T), wrf = resq_layer_fp16_workspace_size(c, T);
    size_t wcq = resq_layer_q4q8_workspace_size__cpu(&S->cq[S->ncq - 1], T), wcf = resq_layer_fp16_workspace_size__cpu(&S->cf[S->ncf - 1], T);
    size_t wmax = wrq > wrf ? wrq : wrf;
    if (wcq > wmax) wmax = wcq;
    if (wcf > wmax) wmax = wcf;
    void *work = rb_alloc(wmax);
    const char *what = NULL;
    if (!h || !yr || !yc || !yf || !work) return layer_fail(S, "allocation", RESQ_ERR_NOMEM);
    if ((st = resq_layer_synth_sequence(&S->syn, RESQ_SYNTH_STREAM_EVAL, 0, T, h, d)) != RESQ_OK) what = "sequence";
    if (!what && (st = resq_layer_q4q8_forward__ref(c, q, T, h, yr, work, wrq)) != RESQ_OK) what = "resq_layer_q4q8_forward__ref";
    if (!what && (st = resq_layer_q4q8_forward__cpu(c, &S->cq[S->ncq - 1], T, h, yc, work, wcq)) != RESQ_OK)
      what = "resq_layer_q4q8_forward__cpu";
    if (what) return layer_fail(S, what, st);
    for (int64_t i = 0; i < T * d; i++)
      if (yr[i] != yc[i]) {
        snprintf(S->why, sizeof S->why,
                 "ResQ form: CPU output differs from the reference at token %lld channel %lld (0x%04x vs 0x%04x); "
                 "REPRO: RESQ_BENCH_SET=%s bench_layer_cpu", (long long)(i / d), (long long)(i % d), yc[i], yr[i],
                 quick ? "quick" : "full");
        S->failed = 1;
        return -1;
      }
    if ((st = resq_layer_fp16_forward__ref(c, w, T, h, yr, work, wrf)) != RESQ_OK) return layer_fail(S, "resq_layer_fp16_forward__ref", st);
    if ((st = resq_layer_fp16_forward__cpu(c, &S->cf[S->ncf - 1], T, h, yf, work, wcf)) != RESQ_OK)
      return layer_fail(S, "resq_layer_fp16_forward__cpu", st);
    for (int64_t i = 0; i < T * d; i++)
      if (yr[i] != yf[i]) {
        snprintf(S->why, sizeof S->why,
                 "16-bit form: CPU output differs from the reference at token %lld channel %lld (0x%04x vs 0x%04x); "
                 "REPRO: RESQ_BENCH_SET=%s bench_layer_cpu", (long long)(i / d), (long long)(i % d), yf[i], yr[i],
                 quick ? "quick" : "full");
        S->failed = 1;
        return -1;
      }
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < T * d; i++) {
      double a = resq_f16_to_f32(yc[i]), b = resq_f16_to_f32(yf[i]), x = resq_f16_to_f32(h[i]);
      num += (a - b) * (a - b);
      den += (b - x) * (b - x);
    }
    S->layer_err = den > 0 ? sqrt(num / den) : -1.0;
    rb_free(h), rb_free(yr), rb_free(yc), rb_free(yf), rb_free(work);
  }
  fprintf(stderr, "bench_layer_cpu: %s layer built and checked in %.1f s (ResQ %d copies of %.0f MB, 16-bit %d of %.0f MB)\n",
          S->config, rb_now() - t0, S->ncq, S->wbytes_q4q8 / 1e6, S->ncf, S->wbytes_f16 / 1e6);
  S->ready = 1;
  return 0;
}

static void layer_free(layer_state *S) {
  for (int i = 0; i < S->ncq; i++) resq_layer_q4q8_free__cpu(&S->cq[i]);
  for (int i = 0; i < S->ncf; i++) resq_layer_fp16_free__cpu(&S->cf[i]);
  free(S->cq), free(S->cf);
  rbl_free(&S->Q);
  resq_layer_synth_free(&S->syn);
  memset(S, 0, sizeof *S);
}

typedef struct lparams {
  int form, phase;
} lparams;

static void bm_layer(resq_bench_state *st, const void *params) {
  const lparams *P = params;
  layer_state *S = &g_L;
  if (layer_build(S)) {
    resq_bench_error(st, "%s", S->why);
    return;
  }
  const resq_layer_config *c = &S->c;
  const int64_t B = resq_bench_arg(st, 2), T = P->phase == P_PREFILL ? resq_bench_arg(st, 3) : B;
  const int64_t nseq = P->phase == P_PREFILL ? B : 1;
  const int q4 = P->form == F_Q4Q8;
  size_t ws = q4 ? resq_layer_q4q8_workspace_size__cpu(&S->cq[0], T) : resq_layer_fp16_workspace_size__cpu(&S->cf[0], T);
  uint16_t *h = rb_alloc((size_t)(nseq * T * c->d) * 2), *y = rb_alloc((size_t)(T * c->d) * 2);
  void *work = rb_alloc(ws);
  resq_status s = RESQ_OK;
  if (!h || !y || !work) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  for (int64_t b = 0; b < nseq && s == RESQ_OK; b++)
    s = resq_layer_synth_sequence(&S->syn, RESQ_SYNTH_STREAM_EVAL, (uint64_t)(1 + b), T, h + b * T * c->d, c->d);
  if (s != RESQ_OK) {
    resq_bench_error(st, "sequence: %s", resq_last_error());
    goto out;
  }
  /* prefill: one copy (compute-bound, weights reused by 2048 tokens); decode: cold copies */
  const int ncopies = P->phase == P_PREFILL ? 1 : (q4 ? S->ncq : S->ncf);
  int i = 0;
  while (resq_bench_keep_running(st, 1)) {
    for (int64_t b = 0; b < nseq; b++) {
      const uint16_t *hb = h + b * T * c->d;
      s = q4 ? resq_layer_q4q8_forward__cpu(c, &S->cq[i], T, hb, y, work, ws)
             : resq_layer_fp16_forward__cpu(c, &S->cf[i], T, hb, y, work, ws);
    }
    if (++i == ncopies) i = 0;
  }
  if (s != RESQ_OK) {
    resq_bench_error(st, "forward: %s: %s", resq_status_name(s), resq_last_error());
    goto out;
  }
  resq_bench_counter(st, "ops", 2.0 * S->nweights * (double)(nseq * T), RESQ_CTR_RATE);
  resq_bench_counter(st, "wbytes", q4 ? S->wbytes_q4q8 : S->wbytes_f16, RESQ_CTR_RATE);
  resq_bench_counter(st, "bytes", (q4 ? S->wbytes_q4q8 : S->wbytes_f16) + 4.0 * (double)(nseq * T * c->d), RESQ_CTR_RATE);
  resq_bench_counter(st, "tokens", (double)(nseq * T), RESQ_CTR_PLAIN);
  resq_bench_counter(st, "layer_err", S->layer_err, RESQ_CTR_PLAIN);
  {
    const char *ph = P->phase == P_PREFILL ? "prefill" : "decode";
    char base[160];
    if (P->phase == P_PREFILL)
      snprintf(base, sizeof base, "layer_prefill_f16__cpu/d:%lld/I:%lld/batch:%lld/seq:%lld", (long long)c->d,
               (long long)c->I, (long long)B, (long long)T);
    else
      snprintf(base, sizeof base, "layer_decode_f16__cpu/d:%lld/I:%lld/batch:%lld/ctx:%lld", (long long)c->d,
               (long long)c->I, (long long)B, (long long)T);
    if (q4)
      resq_bench_label(st, "baseline=%s;config=%s;phase=%s;impl=resq-cpu-%s-%dt RTN weights, ResQ splits;copies=%d", base,
                       S->config, ph, resq_cpu_isa_name(resq_cpu_get_isa()), resq_cpu_get_threads(), ncopies);
    else
      resq_bench_label(st, "config=%s;phase=%s;impl=resq-cpu-%s-%dt fp16 weights, fp32 accumulation;copies=%d", S->config,
                       ph, resq_cpu_isa_name(resq_cpu_get_isa()), resq_cpu_get_threads(), ncopies);
  }
out:
  rb_free(h), rb_free(y), rb_free(work);
}

int main(int argc, char **argv) {
  const int quick = rb_quick();
  static const lparams pq = {F_Q4Q8, P_PREFILL}, pf = {F_F16, P_PREFILL}, dq = {F_Q4Q8, P_DECODE}, df = {F_F16, P_DECODE};
  static const char *const pn[] = {"d", "I", "batch", "seq"}, *const dn[] = {"d", "I", "batch", "ctx"};
  static const int64_t full_pb[] = {1, 4}, full_db[] = {1, 4, 16, 64}, quick_db[] = {1, 16};
  resq_layer_config c;
  char buf[64];
  if (resq_layer_config_named(quick ? "test" : "llama3-8b", &c) != RESQ_OK) return 1;
  rb_context_common();
  resq_bench_context("resq_layer_config", quick ? "test" : "llama3-8b");
  resq_bench_context("resq_cpu_isa", resq_cpu_isa_name(resq_cpu_get_isa()));
  snprintf(buf, sizeof buf, "%d", resq_cpu_get_threads());
  resq_bench_context("resq_cpu_threads", buf);
  const int64_t seq = quick ? 256 : 2048;
  const int npb = quick ? 1 : 2, ndb = quick ? 2 : 4;
  const unsigned fl = RESQ_BENCH_REAL_TIME;
  /* back to back: the 16-bit form, then ResQ, at each size */
  for (int i = 0; i < ndb; i++) {
    int64_t a[4] = {c.d, c.I, quick ? quick_db[i] : full_db[i], 0};
    a[3] = a[2];
    resq_bench_register_args("layer_decode_f16__cpu", bm_layer, &df, sizeof df, fl, dn, a, 4);
    resq_bench_register_args("layer_decode_q4q8__cpu", bm_layer, &dq, sizeof dq, fl, dn, a, 4);
  }
  for (int i = 0; i < npb; i++) {
    int64_t a[4] = {c.d, c.I, full_pb[i], seq};
    /* a prefill call takes seconds (tens of seconds for the 16-bit form at batch 4 under load):
     * one timed call each, whatever the repetition count of the run */
    resq_bench_register_args("layer_prefill_f16__cpu", bm_layer, &pf, sizeof pf, fl | RESQ_BENCH_ONCE, pn, a, 4);
    resq_bench_register_args("layer_prefill_q4q8__cpu", bm_layer, &pq, sizeof pq, fl | RESQ_BENCH_ONCE, pn, a, 4);
  }
  int rc = resq_bench_main(argc, argv);
  layer_free(&g_L);
  return rc;
}
