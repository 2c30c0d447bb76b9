/* SPDX-License-Identifier: Apache-2.0
 * resq/layer_synth.h -- a synthetic LLM-like decoder layer: FP16 weights and a
 * generator of residual-stream inputs (calibration and evaluation sequences)
 * with a few systematic outlier channels and heavy tails
 * (ref/CONTRACT.md section 14, "Synthetic layer").
 *
 * Residual stream, token t of a sequence (fp32, then rounded once to f16):
 *
 *   h_t[i] = tau_t * ( sum_{k < rank} f_tk sigma_k b_k[i] / n_b  +  noise * e_ti )
 *            + sum_{outlier j with c_j == i} s_j m_j (1 + 0.1 e'_tj)
 *
 *   b_k        [rank][d] standard normals (fixed per layer): dense, NOT axis
 *              aligned latent directions, so the activation covariance is
 *              anisotropic in a rotated basis (what PCA finds and a Hadamard
 *              does not)
 *   sigma_k    (1 + k)^-decay, n_b = sqrt(sum_k sigma_k^2): typical channel
 *              variance 1 (+ noise^2)
 *   f_tk       Student-t(tail_nu) draws scaled to unit variance (heavy tails)
 *   tau_t      exp(0.3 * N(0,1)): per-token scale
 *   c_j, m_j   n_outliers distinct channels with magnitudes log-uniform in
 *              [outlier_lo, outlier_hi] (default 50..1000 times the typical
 *              channel), random sign s_j, the same for every token
 *   RMSNorm gammas: exp(0.2 N(0,1)) per channel, and on the outlier channels
 *              uniform in [0.02, 0.1] (LLMs pair massive activations with small
 *              norm weights, so the outlier does not swamp q/k/v; the
 *              activation quantizer still sees it: gamma is folded into the
 *              weights, not into the activations)
 *   weights    W[n][k] = gain * z * c / sqrt(K) (K = input size), z standard
 *              normal, c = w_tail with probability 1/100 and 1 otherwise,
 *              divided by sqrt(0.99 + 0.01 w_tail^2) (unit variance, kurtosis
 *              about 8 for the default w_tail = 4: heavier tails than gaussian,
 *              like LLM weights). The gains are calibrated on a pilot sequence
 *              (32 tokens of stream RESQ_SYNTH_STREAM_PILOT) with the fp32 form
 *              of resq/layer_prepare.h, in four passes: q, k get rms qk_scale
 *              and v rms 1; then o_proj is scaled so that the attention update
 *              has rms out_gain * rms(h); gate and up get rms 1; down_proj so
 *              that the MLP update has rms out_gain * rms(h_mid). The outliers
 *              make RMSNorm divide the bulk channels by about rms(h); trained
 *              weights compensate, and so do these gains (without them every
 *              projection and the update would be ~1/rms(h) of the stream and
 *              the f16 rounding of the stream would dominate any error
 *              measurement). Gains are computed in double from the fp32 pilot
 *              and applied to the fp32 draws before the one rounding to f16
 *
 * Determinism: everything is a pure function of (params, config, seed) and,
 * for a sequence, of (stream, index, T). The weights and the activation model
 * come from two resq_rng streams derived from the seed; sequence `index` of
 * `stream` from its own generator seeded with splitmix64 of
 * (seed, stream, index), so sequences can be drawn in any order, one at a
 * time, and calibration (stream 0) and evaluation (stream 1) never share a
 * draw. Gaussians use libm's log (CONTRACT s.6), so bits are per platform.
 */
#ifndef RESQ_LAYER_SYNTH_H
#define RESQ_LAYER_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "resq/layer.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RESQ_SYNTH_STREAM_CALIB ((uint64_t)0)
#define RESQ_SYNTH_STREAM_EVAL ((uint64_t)1)
#define RESQ_SYNTH_STREAM_PILOT (~(uint64_t)0) /* the weights' gain calibration */

typedef struct resq_layer_synth_params {
  int64_t rank;                  /* latent directions, 1..d; 0: d/4 */
  double decay;                  /* sigma_k = (1 + k)^-decay, >= 0 (default 0.6) */
  double tail_nu;                /* Student-t degrees of freedom of f_tk, > 2 (default 4) */
  double noise;                  /* isotropic noise, >= 0 (default 0.1) */
  int64_t n_outliers;            /* outlier channels, 0..d (default -1: max(2, d/512)) */
  double outlier_lo, outlier_hi; /* outlier magnitudes, 1 <= lo <= hi (default 50, 1000) */
  double w_tail;                 /* weight contamination factor, >= 1 (default 4; 1: gaussian) */
  double qk_scale;               /* rms of q and k on the pilot, > 0 (default 1.5: attention logits
                                    of std about qk_scale^2, peaked as in LLMs) */
  double out_gain;               /* rms of each block's update relative to its input stream, > 0
                                    (default 0.5) */
} resq_layer_synth_params;

/* The defaults above (n_outliers = -1 means max(2, d/512) when the layer is made). */
resq_layer_synth_params resq_layer_synth_default(void);
resq_status resq_layer_synth_check(const resq_layer_synth_params *p);

/* A synthetic layer. Owns all of its arrays; `w` points into them and is what
 * resq_layer_fp16_forward__ref and resq_layer_prepare_f32__ref take. */
typedef struct resq_layer_synth {
  resq_layer_config c;
  resq_layer_synth_params p; /* as used (n_outliers and rank resolved) */
  uint64_t seed;
  resq_layer_fp16 w;         /* f16 weights [N][K] and fp32 RMSNorm gammas ln1, ln2 [d] */
  /* the activation model (read-only for users) */
  float *b;                  /* [rank][d] latent directions (standard normals) */
  float *sigma;              /* [rank] sigma_k / n_b */
  int64_t *out_idx;          /* [n_outliers] outlier channels, ascending */
  float *out_mag;            /* [n_outliers] signed magnitudes s_j m_j */
  double rms_h;              /* channel rms of the pilot sequence */
  double gain[7];            /* the calibrated gains of wq, wk, wv, wo, wg, wu, wd */
  void *mem_;                /* private */
} resq_layer_synth;

/* Make the layer for config c (resq_layer_config_check) and seed. p may be
 * NULL (defaults). On failure *s is zeroed and nothing is allocated. The
 * Llama-3-8B layer takes about 0.5 GB (f16 weights) plus rank*d*4 bytes. */
resq_status resq_layer_synth_init(resq_layer_synth *s, const resq_layer_config *c,
                                  const resq_layer_synth_params *p, uint64_t seed);
/* Free and zero; NULL-safe, safe on a zeroed struct. */
void resq_layer_synth_free(resq_layer_synth *s);

/* Sequence `index` of `stream` (RESQ_SYNTH_STREAM_CALIB, _EVAL or any other
 * number): T tokens of the residual stream, f16 [T][d] into h (ldh >= d
 * elements between rows). Tokens depend on (seed, stream, index) and on T only
 * through their position (a longer sequence extends a shorter one). Values
 * that would overflow f16 are impossible with valid parameters (checked:
 * RESQ_ERR_NONFINITE, nothing written). */
resq_status resq_layer_synth_sequence(const resq_layer_synth *s, uint64_t stream, uint64_t index, int64_t T,
                                      uint16_t *h, int64_t ldh);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_LAYER_SYNTH_H */
