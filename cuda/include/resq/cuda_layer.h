/* SPDX-License-Identifier: Apache-2.0
 * resq/cuda_layer.h -- the decoder layer on the GPU (ref/CONTRACT.md section 14;
 * resq/layer.h), included by resq/cuda.h. Conventions of resq/cuda.h (device
 * pointers, the resq stream, argument checks as in the reference, values not
 * scanned).
 *
 * STATUS: COMPILED ONLY. Built for sm_80/86/89/90 with CUDA 13.0 on a machine
 * without a GPU; never run. verify/cuda_layer_test.c checks every stage against
 * the reference function applied to the GPU's own input of that stage, and the
 * whole layer against the reference, wherever a GPU exists.
 *
 * Both forms run the SAME shared ops (RMSNorm, RoPE, attention, SiLU), so that a
 * ResQ-vs-FP16 comparison on the GPU measures quantization and the GEMMs only.
 *
 * Shared ops, and how close to the reference they are:
 *  - RoPE: cos/sin of (pos * theta^(-2i/hd)) computed on the HOST with the
 *    reference's double libm calls (a table per (theta, hd, positions), cached per
 *    device), rotation in fp32 without FMA: bit-identical to resq_rope_f32__ref.
 *  - attention, RESQ_ATTN_EXACT: the reference's algorithm and summation orders
 *    in double (dot products i ascending, softmax sum and value sum j ascending,
 *    max-subtracted exp), one CTA per (head, query). Only exp differs (CUDA's
 *    double exp vs the host libm, <= 1 ulp in double each), so an output differs
 *    from the reference's by at most one fp32 ulp, and only when its double value
 *    lies within ~1e-15 (relative) of an fp32 rounding boundary. Cost: double
 *    arithmetic, O(T^2 hd H): for verification, slow on GeForce parts (FP64 at
 *    1/64 rate). T * 8 bytes of shared memory per CTA (T <= 12,000 or so).
 *  - attention, RESQ_ATTN_FAST: fp32, one warp per (head, query), online softmax
 *    with expf; no tensor cores (not a flash-attention kernel). For timing both
 *    forms with the same attention. Not compared bit for bit (its error is fp32
 *    rounding of a softmax-weighted average, bounded in the test).
 *  - RMSNorm: resq_rmsnorm_f32__ref's fp32 steps, the double sum of squares in the
 *    quantizer's documented tree order (resq/cuda.h, fused RMSNorm + quantization).
 *  - SiLU: the host table of resq_silu_f32 (resq/cuda.h, fused SiLU kernel).
 *
 * ResQ form: the kernels of resq/cuda.h and the mixed GEMM of resq/cuda_gemm.h
 * in the reference's sequence (resq_layer_q4q8_forward__ref): fused RMSNorm +
 * quant -> q/k/v GEMMs -> RoPE -> (fq8 ->) K8 product (double sums, the
 * reference's order: exact) -> K/V per-head quantize-dequantize -> attention ->
 * grouped o quant + GEMM -> residual -> fused RMSNorm + quant -> gate/up GEMMs ->
 * fused SiLU*mul + Hadamard + 4-bit quant (without the online Hadamard: SiLU*mul,
 * then the quantizer) -> INT4 GEMM -> residual. Every step is the reference's
 * function bit for bit given its input, except the RMSNorm sum order and the
 * attention exp noted above.
 *
 * FP16 form: the same ops with f16 storage between them (as
 * resq_layer_fp16_forward__ref) and cuBLAS GEMMs (resq_gemm_f16__cublas,
 * RESQ_CUBLAS_F32: fp16 in/out, fp32 accumulation in cuBLAS's order; each GEMM
 * output within CONTRACT s.11's FP16-baseline bound of the reference's). */
#ifndef RESQ_CUDA_LAYER_H
#define RESQ_CUDA_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "resq/cuda_gemm.h"
#include "resq/layer.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resq_attn_mode {
  RESQ_ATTN_EXACT = 0, /* the reference's double algorithm (verification) */
  RESQ_ATTN_FAST = 1   /* fp32 online softmax (timing) */
} resq_attn_mode;

/* resq_rope_f32__ref on device data, bit for bit (host-computed table). */
resq_status resq_rope_f32__cuda(int64_t T, int64_t nheads, int64_t hd, double theta, int64_t pos0, float *x);
/* resq_attention_f32__ref's layout and arguments (causal, GQA); q, k, v, o device. EXACT needs
 * (T+8)*8 bytes of shared memory per CTA (RESQ_ERR_UNSUPPORTED beyond the device's limit). */
resq_status resq_attention_f32__cuda(int64_t T, int64_t H, int64_t G, int64_t hd, const float *q, const float *k,
                                     const float *v, float *o, resq_attn_mode mode);

/* ---- ResQ form ---- */
/* The device form of a prepared layer (resq_layer_q4q8): the splits, the seven weights packed for
 * the mixed GEMM and uploaded, K8 on the device. Owns its device memory. */
typedef struct resq_layer_q4q8_cuda {
  resq_qact_params s_qkv, s_o, s_gu, s_down, s_kv, s_qk8;
  resq_qweight_cuda wq, wk, wv, wo, wg, wu, wd;
  float *k8; /* [hd][hd] device, or NULL */
  int online_hadamard, qk_rot_no_prequant;
} resq_layer_q4q8_cuda;
/* Upload a prepared layer whose arrays are in HOST memory (resq_layer_prepare_f32__ref's L). */
resq_status resq_layer_q4q8_upload__cuda(const resq_layer_config *c, const resq_layer_q4q8 *L,
                                         resq_layer_q4q8_cuda *out);
void resq_layer_q4q8_free__cuda(resq_layer_q4q8_cuda *L);

/* Intermediates of the ResQ form (device fp32 [T][width], any may be NULL), for checking each stage
 * against the reference function on its actual input. Same meaning as resq_layer_q4q8_taps of
 * resq/layer.h except that the fused kernels' internal values (the RMSNorm outputs, the down_proj
 * quantizer input) do not exist here. */
typedef struct resq_layer_q4q8_taps_cuda {
  float *q, *k, *v;         /* q/k/v GEMM outputs (widened f16), before RoPE */
  float *q_rot, *k_rot;     /* after RoPE and the online rotation */
  float *k_cache, *v_cache; /* the dequantized caches attention reads */
  float *o;                 /* attention output (the o_proj quantizer's input) */
  float *t_o;               /* o_proj output (widened f16) */
  float *h_mid;             /* residual stream after the attention block (widened f16) */
  float *g, *u;             /* gate/up GEMM outputs (widened f16) */
  float *t_down;            /* down_proj output (widened f16) */
} resq_layer_q4q8_taps_cuda;

size_t resq_layer_q4q8_workspace_size__cuda(const resq_layer_config *c, const resq_layer_q4q8_cuda *L, int64_t T);
/* h_in, h_out: device f16 [T][d] in the layer's basis. taps: host struct of device pointers, or NULL.
 * work: device, resq_layer_q4q8_workspace_size__cuda bytes (any content). */
resq_status resq_layer_q4q8_forward__cuda(const resq_layer_config *c, const resq_layer_q4q8_cuda *L, int64_t T,
                                          const uint16_t *h_in, uint16_t *h_out, resq_attn_mode attn,
                                          const resq_layer_q4q8_taps_cuda *taps, void *work, size_t work_size);

/* ---- FP16 form ---- */
/* Intermediates of the FP16 form as stored between its ops (device; any may be NULL). */
typedef struct resq_layer_fp16_taps_cuda {
  uint16_t *a_attn;      /* [T][d]    f16 RMSNorm output (ln1) */
  uint16_t *q, *k, *v;   /* GEMM outputs */
  float *q_rot, *k_rot;  /* after RoPE (fp32) */
  uint16_t *o;           /* [T][H*hd] attention output rounded to f16 */
  uint16_t *t_o;         /* o_proj output */
  uint16_t *h_mid;       /* residual after the attention block */
  uint16_t *a_mlp;       /* f16 RMSNorm output (ln2) */
  uint16_t *g, *u;       /* gate/up GEMM outputs */
  uint16_t *z;           /* RNE_f16(silu(g) * u) */
  uint16_t *t_down;      /* down_proj output */
} resq_layer_fp16_taps_cuda;

size_t resq_layer_fp16_workspace_size__cuda(const resq_layer_config *c, int64_t T);
/* w: resq_layer_fp16 whose arrays are DEVICE pointers. */
resq_status resq_layer_fp16_forward__cuda(const resq_layer_config *c, const resq_layer_fp16 *w, int64_t T,
                                          const uint16_t *h_in, uint16_t *h_out, resq_attn_mode attn,
                                          const resq_layer_fp16_taps_cuda *taps, void *work, size_t work_size);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_CUDA_LAYER_H */
