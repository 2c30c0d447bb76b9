/* SPDX-License-Identifier: Apache-2.0
 * resq/layer.h -- a Llama decoder layer in FP16 and in ResQ form
 * (ref/CONTRACT.md section 14), and the ops they share.
 *
 * Both forms use the same RMSNorm, RoPE, attention and SiLU (below), so a
 * comparison measures quantization, not implementation differences. The ResQ
 * form runs on a prepared layer (rotated, fused, quantized, packed weights; see
 * resq_layer_prepare_f32__ref in resq/layer_prepare.h) with its residual stream in the
 * rotated basis h' = h U. One sequence of T tokens, causal, positions 0..T-1. */
#ifndef RESQ_LAYER_H
#define RESQ_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct resq_layer_config {
  int64_t d;          /* hidden size */
  int64_t H, G, hd;   /* query heads, KV heads, head dim (H*hd == d for Llama) */
  int64_t I;          /* intermediate size (a supported Hadamard size for ResQ) */
  double rope_theta;  /* 10000 (Llama-2), 500000 (Llama-3) */
  float eps;          /* RMSNorm epsilon */
} resq_layer_config;

/* Named configurations: "test" (d 256, H 4, G 2, hd 64, I 688), "llama3-8b",
 * "llama2-7b", "llama3-70b". RESQ_ERR_INVALID_ARG for an unknown name. */
resq_status resq_layer_config_named(const char *name, resq_layer_config *c);
resq_status resq_layer_config_check(const resq_layer_config *c);

/* ---- shared ops (fp32 math; reductions in double, one rounding) ---- */
/* y[t][i] = x[t][i] * rinv_t (* gamma[i]); ms_t = (float)(sum x^2 / d) in double, rinv = 1/sqrtf(ms + eps) */
resq_status resq_rmsnorm_f32__ref(int64_t T, int64_t d, const float *x, const float *gamma, float eps, float *y);
/* HF rotate_half RoPE in place on [T][nheads*hd], positions pos0.. */
resq_status resq_rope_f32__ref(int64_t T, int64_t nheads, int64_t hd, double theta, int64_t pos0, float *x);
/* causal GQA attention: o[t][h] = sum_j softmax_j(q.k_j / sqrt(hd)) v_j, double inside */
resq_status resq_attention_f32__ref(int64_t T, int64_t H, int64_t G, int64_t hd, const float *q, const float *k,
                                    const float *v, float *o);

/* ---- FP16 form (the baseline) ---- */
typedef struct resq_layer_fp16 {
  const uint16_t *wq, *wk, *wv; /* [H*hd, d], [G*hd, d], [G*hd, d] f16 */
  const uint16_t *wo;           /* [d, H*hd] */
  const uint16_t *wg, *wu;      /* [I, d] */
  const uint16_t *wd;           /* [d, I] */
  const float *ln1, *ln2;       /* [d] RMSNorm weights */
} resq_layer_fp16;

size_t resq_layer_fp16_workspace_size(const resq_layer_config *c, int64_t T);
resq_status resq_layer_fp16_forward__ref(const resq_layer_config *c, const resq_layer_fp16 *w, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size);

/* ---- ResQ form ---- */
typedef struct resq_layer_q4q8 {
  resq_qact_params s_qkv;  /* K = d, r = d/8 (0 for uniform 4-bit variants) */
  resq_qact_params s_o;    /* K = H*hd, group = hd, r = hd/8 */
  resq_qact_params s_gu;   /* K = d */
  resq_qact_params s_down; /* K = I, r = 0 */
  resq_qact_params s_kv;   /* K = G*hd, group = hd, r = hd/8: K and V caches */
  resq_qact_params s_qk8;  /* K = hd, r = hd, bits_hi 8: the 8-bit q/k quantizer before K8 */
  resq_qweight wq, wk, wv, wo, wg, wu, wd; /* packed (section 11); wo's columns permuted */
  const float *k8;         /* [hd][hd] fp32 online key/query rotation, or NULL */
  int online_hadamard;     /* 1: H_I on the down_proj input (ResQ, QuaRot); 0: none (RTN) */
  int qk_rot_no_prequant;  /* 0 (ResQ): q, k <- fq8(q) k8, fq8(k) k8 (8-bit fake quantization by s_qk8
                              first); 1 (QuaRot): q, k <- q k8, k k8 on the fp32 values (k8 = H_hd) */
} resq_layer_q4q8;

size_t resq_layer_q4q8_workspace_size(const resq_layer_config *c, int64_t T);
/* h_in, h_out: [T, d] f16 residual stream in the layer's basis (ResQ: h U). */
resq_status resq_layer_q4q8_forward__ref(const resq_layer_config *c, const resq_layer_q4q8 *L, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size);

/* Intermediates of the ResQ form, fp32 [T][width] (f16 GEMM outputs widened exactly), any may be NULL.
 * For checking a stage against its exact function at its actual input, and for diffing backends. They
 * are written as the pass proceeds: after a failure they may hold partial results (h_out is written
 * only on success). */
typedef struct resq_layer_q4q8_taps {
  float *a_attn;             /* [T][d]    RMSNorm output = the q/k/v quantizer's input */
  float *q, *k, *v;          /* [T][H*hd], [T][G*hd], [T][G*hd]  q/k/v GEMM outputs (before RoPE) */
  float *q_rot, *k_rot;      /* after RoPE and the online rotation (fq8 then k8, or k8 alone) */
  float *k_cache, *v_cache;  /* [T][G*hd] the dequantized caches attention reads */
  float *o;                  /* [T][H*hd] attention output = the o_proj quantizer's input, head-major */
  float *t_o;                /* [T][d]    o_proj output */
  float *h_mid;              /* [T][d]    residual stream after the attention block */
  float *a_mlp;              /* [T][d]    RMSNorm output = the gate/up quantizer's input */
  float *g, *u;              /* [T][I]    gate/up GEMM outputs */
  float *z;                  /* [T][I]    the down_proj quantizer's input (after the online Hadamard) */
  float *t_down;             /* [T][d]    down_proj output */
} resq_layer_q4q8_taps;

resq_status resq_layer_q4q8_forward_taps__ref(const resq_layer_config *c, const resq_layer_q4q8 *L, int64_t T,
                                              const uint16_t *h_in, uint16_t *h_out,
                                              const resq_layer_q4q8_taps *taps, void *work, size_t work_size);

#ifdef __cplusplus
}
#endif
#endif
