/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_layer_common.h -- the timing layer's ResQ form, shared by
 * bench_layer_cpu.c and bench_layer_cuda.c (header-only, static functions).
 *
 * From resq/layer_synth.h's f16 weights: gamma folded into q/k/v and gate/up,
 * o_proj columns in upstream's per-head order, the online Hadamard H_I folded
 * into down_proj's input side, round-to-nearest weights (section 10) with
 * ResQ's splits (r = d/8 hi columns for q/k/v/gate/up, per-head groups (hd,
 * hd/8) for o_proj and the KV cache, pure INT4 down_proj), K8 from a random
 * orthogonal head basis. No PCA rotation: the values differ from a calibrated
 * layer, the work of the forward pass does not (see the programs' headers).
 */
#ifndef RESQ_BENCH_LAYER_COMMON_H
#define RESQ_BENCH_LAYER_COMMON_H

#include <stdint.h>
#include <string.h>

#include "bench_util.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/pca.h"
#include "resq/quant_act.h"
#include "resq/quant_weight.h"
#include "resq/status.h"

/* the canonical ResQ layer's arrays (freed by rbl_free) */
typedef struct rbl_qlayer {
  resq_layer_q4q8 q;
  void *mem[64];
  int nmem;
  float *k8;
  double wbytes; /* packed weight bytes (codes, scales, sums): the decode stream */
  double nweights;
} rbl_qlayer;

/* W <- W H_I^T for down_proj's input side: the CPU backend's Hadamard (bit-exact with the
 * reference) where it is linked, the reference's on a GPU host that may lack AVX-512 */
typedef resq_status (*rbl_hadamard_fn)(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
                                       const int8_t *signs, void *work, size_t work_size);

static void *rbl_own(rbl_qlayer *S, size_t bytes) {
  if (S->nmem == 64) return NULL;
  void *p = rb_alloc(bytes ? bytes : 64);
  if (p) S->mem[S->nmem++] = p;
  return p;
}

/* Quantize one weight [N][K] (fp32, GEMM K order) with split sp into the canonical layout. */
static resq_status rbl_quant_pack(rbl_qlayer *S, const resq_qact_params *sp, int64_t N, int64_t K, const float *W,
                                  resq_qweight *out, double *wbytes) {
  resq_qact_layout L;
  resq_status st = resq_gemm_check(sp, &L);
  if (st != RESQ_OK) return st;
  resq_wquant_params wp = resq_wquant_default(K);
  wp.r = sp->r * L.ngroups; /* the hi columns of the whole row (after the o_proj permutation: the last ngroups*r) */
  wp.bits_lo = sp->bits_lo;
  wp.bits_hi = sp->bits_hi;
  int8_t *codes = rb_alloc((size_t)(N * K));
  float *sl = rb_alloc((size_t)N * 4), *sh = rb_alloc((size_t)N * 4);
  out->N = N;
  out->q_lo = rbl_own(S, (size_t)(N * L.lo_bytes));
  out->ld_lo = L.lo_bytes;
  out->q_hi = rbl_own(S, (size_t)(N * L.hi_bytes));
  out->ld_hi = L.hi_bytes;
  out->scale_lo = rbl_own(S, (size_t)N * 4);
  out->scale_hi = rbl_own(S, (size_t)N * 4);
  out->sum_lo = rbl_own(S, (size_t)(N * L.ngroups) * 4);
  out->sum_hi = rbl_own(S, (size_t)(N * L.ngroups) * 4);
  if (!codes || !sl || !sh || !out->q_lo || !out->q_hi || !out->scale_lo || !out->scale_hi || !out->sum_lo ||
      !out->sum_hi)
    st = RESQ_ERR_NOMEM;
  if (st == RESQ_OK) st = resq_quant_weight_f32__ref(&wp, N, W, K, codes, K, sl, sh);
  if (st == RESQ_OK) st = resq_gemm_pack_weight(sp, N, codes, K, sl, sh, out);
  rb_free(codes), rb_free(sl), rb_free(sh);
  const int64_t klo = L.ngroups * L.lo_per_group, khi = L.ngroups * sp->r;
  *wbytes += (double)N * (0.5 * (double)klo + (double)khi) + (klo ? 4.0 * (double)N * (1.0 + (double)L.ngroups) : 0) +
             (khi ? 4.0 * (double)N * (1.0 + (double)L.ngroups) : 0);
  return st;
}

static resq_status rbl_fail(const char **what, const char *w, resq_status st) {
  *what = w;
  return st;
}

/* Build S (zeroed first) for configuration c from the synthetic layer's weights w. On failure
 * *what names the step; the arrays made so far stay in S for rbl_free. */
static resq_status rbl_build(rbl_qlayer *S, const resq_layer_config *c, const resq_layer_fp16 *w, rbl_hadamard_fn had,
                             const char **what) {
  memset(S, 0, sizeof *S);
  resq_status st = RESQ_OK;
  resq_layer_q4q8 *q = &S->q;
  const int64_t d = c->d, I = c->I, hd = c->hd, H = c->H, G = c->G, qd = H * hd, kd = G * hd;
  /* ---- the splits (as resq/layer_prepare.h's ResQ method) */
  q->s_qkv = resq_qact_default(d);
  q->s_gu = resq_qact_default(d);
  q->s_o = resq_qact_default(qd);
  q->s_o.group = hd, q->s_o.r = hd / 8;
  q->s_down = resq_qact_default(I);
  q->s_down.r = 0;
  q->s_kv = resq_qact_default(kd);
  q->s_kv.group = hd, q->s_kv.r = hd / 8;
  q->s_qk8 = resq_qact_default(hd);
  q->s_qk8.r = hd;
  q->online_hadamard = 1;
  q->qk_rot_no_prequant = 0;
  /* ---- the weights, quantized (see the header) */
  struct {
    const uint16_t *w;
    int64_t N, K;
    const float *gamma;
    const resq_qact_params *sp;
    resq_qweight *out;
    int kind; /* 0 plain, 1 o_proj permutation, 2 down_proj Hadamard */
  } ws[7] = {{w->wq, qd, d, w->ln1, &q->s_qkv, &q->wq, 0}, {w->wk, kd, d, w->ln1, &q->s_qkv, &q->wk, 0},
             {w->wv, kd, d, w->ln1, &q->s_qkv, &q->wv, 0}, {w->wo, d, qd, NULL, &q->s_o, &q->wo, 1},
             {w->wg, I, d, w->ln2, &q->s_gu, &q->wg, 0},   {w->wu, I, d, w->ln2, &q->s_gu, &q->wu, 0},
             {w->wd, d, I, NULL, &q->s_down, &q->wd, 2}};
  int32_t *order = rb_alloc((size_t)qd * 4);
  if (!order) return rbl_fail(what, "allocation", RESQ_ERR_NOMEM);
  if ((st = resq_oproj_column_order(H, hd, hd / 8, order)) != RESQ_OK) {
    rb_free(order);
    return rbl_fail(what, "o_proj order", st);
  }
  for (int i = 0; i < 7 && st == RESQ_OK; i++) {
    const int64_t N = ws[i].N, K = ws[i].K;
    float *W = rb_alloc((size_t)(N * K) * 4);
    if (!W) {
      rb_free(order);
      return rbl_fail(what, "allocation", RESQ_ERR_NOMEM);
    }
    for (int64_t n = 0; n < N; n++)
      for (int64_t k = 0; k < K; k++) {
        int64_t src = ws[i].kind == 1 ? order[k] : k;
        float v = resq_f16_to_f32(ws[i].w[n * K + src]);
        W[n * K + k] = ws[i].gamma ? v * ws[i].gamma[k] : v;
      }
    if (ws[i].kind == 2) { /* W <- W H_I^T: the online z H_I^T then gives z W^T */
      size_t hw = resq_hadamard_workspace_size(K);
      void *work = rb_alloc(hw);
      st = work ? had(N, K, W, K, W, K, NULL, work, hw) : RESQ_ERR_NOMEM;
      rb_free(work);
    }
    if (st == RESQ_OK) st = rbl_quant_pack(S, ws[i].sp, N, K, W, ws[i].out, &S->wbytes);
    S->nweights += (double)(N * K);
    rb_free(W);
  }
  rb_free(order);
  if (st != RESQ_OK) return rbl_fail(what, "ResQ weights", st);
  /* K8 of a random orthogonal head basis */
  {
    double *Uk = rb_alloc((size_t)(hd * hd) * 8);
    size_t wr = resq_random_orthogonal_workspace_size(hd);
    void *work = rb_alloc(wr);
    S->k8 = rbl_own(S, (size_t)(hd * hd) * 4);
    st = Uk && work && S->k8 ? resq_random_orthogonal_f64__ref(0x6b38ull, hd, Uk, hd, work, wr) : RESQ_ERR_NOMEM;
    if (st == RESQ_OK) st = resq_k8_f64__ref(hd, Uk, hd, NULL, NULL, S->k8);
    rb_free(Uk), rb_free(work);
    if (st != RESQ_OK) return rbl_fail(what, "K8", st);
    q->k8 = S->k8;
  }
  return RESQ_OK;
}

static void rbl_free(rbl_qlayer *S) {
  for (int i = 0; i < S->nmem; i++) rb_free(S->mem[i]);
  S->nmem = 0;
  S->k8 = NULL;
}

#endif /* RESQ_BENCH_LAYER_COMMON_H */
