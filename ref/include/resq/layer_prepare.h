/* SPDX-License-Identifier: Apache-2.0
 * resq/layer_prepare.h -- the reference pipeline that turns FP16 layer weights
 * and calibration sequences into a prepared layer (resq_layer_q4q8 of
 * resq/layer.h), the unquantized fp32 form it calibrates on, and the layer
 * error of ref/CONTRACT.md section 14.
 *
 * Methods (section 14 states every step and its order):
 *   RESQ    gamma folding; PCA basis U_A of this layer's attn + mlp RMSNorm
 *           outputs (upstream shares one U_A across all layers; with a single
 *           layer it is this layer's); per-KV-head value bases U_v[g]; the
 *           post-RoPE key basis U_k -> K8; Haar rotations inside each subspace;
 *           fusion (section 13); GPTQ (section 12) on the Hessians of every
 *           linear layer's inputs in the rotated, unquantized fp32 model
 *           (uniform 4-bit down_proj); packing (section 11); the online
 *           Hadamard on the down_proj input. r = d/8, r_h = hd/8.
 *   QUAROT  the same with a randomized Hadamard in place of U (d) and of U_v
 *           (hd, one sign vector for all heads), the online Hadamard H_hd on q
 *           and k after RoPE (fp32, no 8-bit pre-quantization), r = 0
 *           everywhere (uniform 4-bit activations, weights and KV cache).
 *   RTN     no rotation at all (gamma still folded), r = 0 everywhere,
 *           round-to-nearest weights, no online Hadamard.
 *
 * The prepared layer runs on the residual stream in its own basis h' = h U
 * (U = identity for RTN): resq_layer_to_basis__ref maps f16 inputs into it,
 * resq_layer_from_basis__ref maps outputs back.
 *
 * Cost (scalar reference, one core): the fp32 form is ~0.07 s per token at
 * Llama-3-8B size (one pass per calibration sequence for the bases, one more
 * for the Hessians); GPTQ is O(K^3) in double (about 20 min for down_proj's
 * K = 14336) and the MSE clip search ~15 min per method over all 218M
 * weights. A prepared layer only for timing kernels (values irrelevant):
 * RESQ with wquant = RESQ_WQUANT_RTN, w_clip = 0 and one short calibration
 * sequence (the d x d eigensolver, ~2 min at d = 4096, remains).
 */
#ifndef RESQ_LAYER_PREPARE_H
#define RESQ_LAYER_PREPARE_H

#include <stddef.h>
#include <stdint.h>

#include "resq/layer.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ the fp32 form */

/* Unquantized fp32 layer: fp32 weights [N][K]; ln1/ln2 NULL when gamma is
 * folded into the weights (then RMSNorm has no gamma); online_hadamard: z <-
 * z H_I^T (section 2, fp32, no signs) before down_proj (whose weight must then
 * carry H_I on its input side). */
typedef struct resq_layer_f32 {
  const float *wq, *wk, *wv, *wo, *wg, *wu, *wd;
  const float *ln1, *ln2;
  int online_hadamard;
} resq_layer_f32;

/* Intermediate activations of one forward pass, [T][width], any may be NULL:
 * the inputs of every linear layer (what GPTQ's Hessians and the PCA bases
 * are computed from) and the values attention sees. */
typedef struct resq_layer_taps {
  float *a_attn; /* [T][d]   RMSNorm output = q/k/v input */
  float *q;      /* [T][H*hd] queries after RoPE */
  float *k;      /* [T][G*hd] keys after RoPE (the key basis is computed from these) */
  float *v;      /* [T][G*hd] v_proj output (per-KV-head value bases) */
  float *o;      /* [T][H*hd] attention output = o_proj input, head-major (unpermuted) */
  float *h_mid;  /* [T][d]   residual stream after the attention block */
  float *a_mlp;  /* [T][d]   RMSNorm output = gate/up input */
  float *g, *u;  /* [T][I]   gate and up projections */
  float *z;      /* [T][I]   down_proj input: SiLU(g) u, after the online Hadamard when on */
} resq_layer_taps;

/* Every GEMM is y[n] = (float) sum_{k ascending} (double)x[k] * w[n][k] (one
 * rounding); activations stay fp32 (no f16 anywhere); RMSNorm, RoPE,
 * attention and SiLU are the shared ops of resq/layer.h; residual adds are
 * fp32. h_in, h_out: [T][d] fp32 (h_out may equal h_in). */
size_t resq_layer_f32_workspace_size(const resq_layer_config *c, int64_t T);
resq_status resq_layer_f32_forward__ref(const resq_layer_config *c, const resq_layer_f32 *w, int64_t T,
                                        const float *h_in, float *h_out, const resq_layer_taps *taps, void *work,
                                        size_t work_size);

/* ------------------------------------------------------------------ preparation */

typedef enum resq_layer_method {
  RESQ_LAYER_RESQ = 0,
  RESQ_LAYER_QUAROT = 1,
  RESQ_LAYER_RTN = 2
} resq_layer_method;

typedef enum resq_layer_wquant {
  RESQ_WQUANT_GPTQ = 0, /* GPTQ (section 12) on calibration Hessians */
  RESQ_WQUANT_RTN = 1   /* round-to-nearest (section 10); no Hessians needed */
} resq_layer_wquant;

typedef struct resq_layer_prepare_params {
  resq_layer_method method;
  resq_layer_wquant wquant; /* RTN method: always round-to-nearest */
  uint64_t seed;            /* the Haar rotations (ResQ) or Hadamard signs (QuaRot) */
  double high_fraction;     /* ResQ: r = (int)(hf * d), r_h = (int)(hf * hd); in [0, 1]
                               (default 0.125; 1 = every activation, weight and the KV cache
                               at 8 bits). QuaRot and RTN: ignored (0) */
  int int8_down_proj;       /* 1: down_proj input and weight at 8 bits (upstream --int8_down_proj);
                               default 0: uniform 4 bits */
  int w_clip;               /* 1: MSE clip search on every weight scale (upstream --w_clip, on in
                               the paper's scripts); default 1 */
  double pca_damp;          /* section 13 damping (default 0.01) */
  double percdamp;          /* GPTQ damping (default 0.01) */
} resq_layer_prepare_params;

resq_layer_prepare_params resq_layer_prepare_default(resq_layer_method method);
resq_status resq_layer_prepare_check(const resq_layer_prepare_params *p);
/* "resq", "quarot", "rtn" (NULL for an invalid value) and back
 * (RESQ_ERR_INVALID_ARG for an unknown name). */
const char *resq_layer_method_name(resq_layer_method m);
resq_status resq_layer_method_from_name(const char *name, resq_layer_method *m);

/* Per-weight diagnostics, index 0..6 = q, k, v, o, gate, up, down. */
enum { RESQ_LW_Q = 0, RESQ_LW_K, RESQ_LW_V, RESQ_LW_O, RESQ_LW_GATE, RESQ_LW_UP, RESQ_LW_DOWN, RESQ_LW_COUNT };
typedef struct resq_layer_prepare_info {
  double obj_gptq[RESQ_LW_COUNT]; /* tr((W-Q) H (W-Q)^T) of the weights used, on the calibration */
  double obj_rtn[RESQ_LW_COUNT];  /*   Hessian; and of round-to-nearest. -1 where no Hessian exists */
  int64_t dead[RESQ_LW_COUNT];    /* GPTQ dead columns */
  int64_t calib_tokens;           /* tokens the bases / Hessians saw */
  double seconds_basis, seconds_hessian, seconds_quant; /* wall time of the three phases */
} resq_layer_prepare_info;

/* A prepared layer. Owns every array; free with resq_layer_prepared_free. */
typedef struct resq_layer_prepared {
  resq_layer_config c;
  resq_layer_prepare_params p;
  int64_t r, r_h, r_down;  /* hi channels: q/k/v/gate/up input (d), per head (o input, KV cache), down input */
  resq_layer_q4q8 L;       /* run it with resq_layer_q4q8_forward__ref */
  resq_layer_f32 rot;      /* the fused, UNQUANTIZED fp32 weights (gamma folded, rotated; o_proj
                              columns in head-major order, i.e. NOT permuted) */
  const int32_t *o_order;  /* [H*hd] the o_proj column order (resq_oproj_column_order) L.wo uses */
  const double *U;         /* [d][d] residual basis h' = h U; NULL for RTN (identity) */
  const double *Uv;        /* [G][hd][hd] value bases (rotated); NULL for RTN */
  const double *Uk;        /* [hd][hd] ResQ key basis (rotated, before K8); NULL otherwise */
  const double *eig_attn_mlp; /* [d] ascending eigenvalues of the U_A covariance (ResQ), else NULL */
  resq_layer_prepare_info info;
  void *mem_;              /* private */
} resq_layer_prepared;

/* The pipeline. w: the FP16 layer (f16 weights, fp32 gammas). Calibration:
 * nseq sequences of T tokens, f16 [nseq][T][d] contiguous (upstream: the
 * layer's inputs, one sequence per add_batch call). ResQ needs nseq, T >= 1;
 * QuaRot needs them with GPTQ; RTN ignores them (may be 0 / NULL).
 * Everything is validated (sizes, Hadamard sizes d, hd, I where needed,
 * NaN/Inf in weights, gammas and calibration) before *out is written; on
 * failure *out is untouched and nothing stays allocated. Memory at
 * Llama-3-8B: about 7 GB at the peak (the down_proj Hessian and GPTQ's two
 * 14336^2 double matrices). */
resq_status resq_layer_prepare_f32__ref(const resq_layer_config *c, const resq_layer_fp16 *w, int64_t nseq,
                                        int64_t T, const uint16_t *calib, const resq_layer_prepare_params *p,
                                        resq_layer_prepared *out);
/* Free and zero; NULL-safe, safe on a zeroed struct. */
void resq_layer_prepared_free(resq_layer_prepared *P);

/* h' = h U for T rows of d f16 values: (float) of the double sum over i
 * ascending of h[i] * U[i][j], then rounded to f16 (exact copy for RTN).
 * Overflow of f16 fails with RESQ_ERR_NONFINITE, nothing written. */
resq_status resq_layer_to_basis__ref(const resq_layer_prepared *P, int64_t T, const uint16_t *h, uint16_t *h_rot);
/* The same into fp32 (no f16 rounding): the input of the fp32 form P->rot. */
resq_status resq_layer_to_basis_f32__ref(const resq_layer_prepared *P, int64_t T, const float *h, float *h_rot);
/* h = h' U^T in double: y[i] = sum_{j ascending} h'[j] * U[i][j] (h' f16 or fp32 bits widened). */
resq_status resq_layer_from_basis__ref(const resq_layer_prepared *P, int64_t T, const uint16_t *h_rot, double *h);
resq_status resq_layer_from_basis_f32__ref(const resq_layer_prepared *P, int64_t T, const float *h_rot, double *h);

/* ------------------------------------------------------------------ layer error */

/* The section-14 error of a prepared layer on one sequence h_in [T][d] (f16,
 * original basis), against the FP16 form on w (the weights P was prepared
 * from):
 *   err = || from_basis(q4q8_forward(to_basis(h_in))) - fp16_forward(h_in) ||_F
 *         / || fp16_forward(h_in) - h_in ||_F
 * in double. Allocates its own workspaces (RESQ_ERR_NOMEM). h_out_method
 * (double [T][d], original basis) and h_out_fp16 (f16 [T][d]) may be NULL.
 * An update of zero norm: RESQ_ERR_DEGENERATE. */
resq_status resq_layer_error_f64__ref(const resq_layer_fp16 *w, const resq_layer_prepared *P, int64_t T,
                                      const uint16_t *h_in, double *err, double *h_out_method, uint16_t *h_out_fp16);
/* The same for the fp32 form: err of resq_layer_f32_forward__ref on
 * (c, w32) with input h_in widened, against the FP16 form (the floor
 * set by the FP16 baseline's own roundings). */
resq_status resq_layer_error_f32_form_f64__ref(const resq_layer_config *c, const resq_layer_fp16 *w,
                                               const resq_layer_f32 *w32, int64_t T, const uint16_t *h_in,
                                               double *err);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_LAYER_PREPARE_H */
