/* SPDX-License-Identifier: Apache-2.0
 * The ResQ decoder layer on a prepared (rotated, fused, quantized) layer
 * (ref/CONTRACT.md section 14, upstream section 7.3):
 *   a = RMSNorm(h')                    fp32, gamma folded into the next weights
 *   q,k,v = mixed GEMM(quant(a))       per-token 4/8 split, r = d/8
 *   RoPE; q,k <- fq8(q,k) . K8         8-bit per (token, head), then the online rotation
 *   K, V caches quantized per head     4/8 split r_h = hd/8, attention on the dequantized cache
 *   o_proj: grouped quant + permuted-column mixed GEMM;   h' += .
 *   m = RMSNorm(h'); gate/up mixed GEMMs; z = SiLU(g) u
 *   z <- z H_I^T (online Hadamard, fp32); 4-bit per-token quant; INT4 GEMM; h' += .
 * Activations between GEMMs are the GEMMs' fp16 outputs; everything else fp32. */
#include <math.h>
#include <string.h>

#include "layer_internal.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/layer.h"

typedef struct {
  resq_qact q;
  resq_qact_layout L;
} qbuf;

static int qbuf_take(bump *b, const resq_qact_params *p, int64_t M, qbuf *out) {
  if (resq_qact_check(p, &out->L)) return -1;
  int64_t G = out->L.ngroups;
  out->q.q_lo = bump_u8(b, M * out->L.lo_bytes);
  out->q.ld_lo = out->L.lo_bytes;
  out->q.q_hi = bump_u8(b, M * out->L.hi_bytes);
  out->q.ld_hi = out->L.hi_bytes;
  out->q.scale_lo = bump_f32(b, M * G);
  out->q.scale_hi = bump_f32(b, M * G);
  out->q.zero_lo = (int32_t *)bump_f32(b, M * G);
  out->q.zero_hi = (int32_t *)bump_f32(b, M * G);
  return out->q.zero_hi ? 0 : -1;
}

static size_t qbuf_bytes(const resq_qact_params *p, int64_t M) {
  resq_qact_layout L;
  if (resq_qact_check(p, &L)) return 0;
  return (size_t)(M * (L.lo_bytes + L.hi_bytes) + 4 * M * L.ngroups * 4) + 6 * 32 + 6 * 4;
}

size_t resq_layer_q4q8_workspace_size(const resq_layer_config *c, int64_t T) {
  if (resq_layer_config_check(c) || T < 0) return 0;
  int64_t qd = c->H * c->hd, kd = c->G * c->hd, d = c->d, I = c->I;
  int64_t f32 = T * (d * 3 + qd * 3 + kd * 4 + I * 2) + 2 * I + (T > 0 ? T : 1) * 0;
  int64_t f16 = T * (qd + kd * 2 + d + I * 2);
  /* one quantized buffer per split, sized for the largest row count */
  resq_qact_params pd = resq_qact_default(d), pi = resq_qact_default(I), po = resq_qact_default(qd),
                   pk = resq_qact_default(kd), ph = resq_qact_default(c->hd);
  pd.r = d, pi.r = 0, po.group = c->hd, po.r = c->hd / 8, pk.group = c->hd, ph.r = c->hd;
  size_t q = qbuf_bytes(&pd, T) * 2 + qbuf_bytes(&pi, T) + qbuf_bytes(&po, T) + qbuf_bytes(&pk, T) * 2 +
             qbuf_bytes(&ph, T * c->H) * 2;
  return (size_t)(f32 * 4 + f16 * 2) + q + resq_hadamard_workspace_size(I) + 64 * 64;
}

/* x[t][h][:] <- dequant(quant8(x[t][h][:])) . K8 for nheads heads (K8 in fp32,
 * products accumulated in double, one rounding). p8 == NULL: no quantization,
 * x[t][h][:] <- x[t][h][:] . K8 (QuaRot's online Hadamard on q and k). */
static resq_status fq8_rotate(const resq_qact_params *p8, const float *k8, int64_t T, int64_t nheads, int64_t hd,
                              float *x, bump *b) {
  size_t mark = b->used;
  qbuf q;
  float *deq = bump_f32(b, T * nheads * hd);
  if (!deq || (p8 && qbuf_take(b, p8, T * nheads, &q))) return resq_fail(RESQ_ERR_INTERNAL, "layer: workspace accounting");
  resq_status st = RESQ_OK;
  if (p8) {
    st = resq_quant_act_f32_q4q8__ref(p8, T * nheads, x, hd, &q.q);
    if (!st) st = resq_dequant_act_q4q8_f32__ref(p8, T * nheads, &q.q, deq, hd);
  } else {
    memcpy(deq, x, sizeof(float) * (size_t)(T * nheads * hd));
  }
  if (st) return st;
  for (int64_t row = 0; row < T * nheads; row++)
    for (int64_t j = 0; j < hd; j++) {
      double acc = 0.0;
      for (int64_t i = 0; i < hd; i++) acc += (double)deq[row * hd + i] * k8[i * hd + j];
      x[row * hd + j] = (float)acc;
    }
  b->used = mark;
  return RESQ_OK;
}

/* y = quantize(x) -> mixed GEMM -> f16 [T, N]; x is fp32 [T, K]. */
static resq_status qgemm(const resq_qact_params *p, const resq_qweight *w, int64_t T, const float *x, uint16_t *y,
                         bump *b) {
  size_t mark = b->used;
  qbuf q;
  if (qbuf_take(b, p, T, &q)) return resq_fail(RESQ_ERR_INTERNAL, "layer: workspace accounting");
  resq_status st = resq_quant_act_f32_q4q8__ref(p, T, x, p->K, &q.q);
  if (!st) st = resq_gemm_q4q8_f16__ref(p, T, &q.q, w, NULL, y, w->N);
  b->used = mark;
  return st;
}

/* quantize-dequantize per head (the KV cache as attention reads it) */
static resq_status fake_quant(const resq_qact_params *p, int64_t T, float *x, bump *b) {
  size_t mark = b->used;
  qbuf q;
  if (qbuf_take(b, p, T, &q)) return resq_fail(RESQ_ERR_INTERNAL, "layer: workspace accounting");
  resq_status st = resq_quant_act_f32_q4q8__ref(p, T, x, p->K, &q.q);
  if (!st) st = resq_dequant_act_q4q8_f32__ref(p, T, &q.q, x, p->K);
  b->used = mark;
  return st;
}

static void tap(float *dst, const float *src, int64_t n) {
  if (dst) memcpy(dst, src, sizeof(float) * (size_t)n);
}

static void tap16(float *dst, const uint16_t *src, int64_t n) {
  if (dst) resq_f16_to_f32_n(src, dst, (size_t)n);
}

resq_status resq_layer_q4q8_forward__ref(const resq_layer_config *c, const resq_layer_q4q8 *L, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size) {
  return resq_layer_q4q8_forward_taps__ref(c, L, T, h_in, h_out, NULL, work, work_size);
}

resq_status resq_layer_q4q8_forward_taps__ref(const resq_layer_config *c, const resq_layer_q4q8 *L, int64_t T,
                                              const uint16_t *h_in, uint16_t *h_out,
                                              const resq_layer_q4q8_taps *taps, void *work, size_t work_size) {
  const resq_layer_q4q8_taps none = {0};
  const resq_layer_q4q8_taps *tp = taps ? taps : &none;
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (T < 0 || !L || (T > 0 && (!h_in || !h_out))) return resq_fail(RESQ_ERR_INVALID_ARG, "layer q4q8: bad arguments");
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I, hd = c->hd;
  if (L->s_qkv.K != d || L->s_gu.K != d || L->s_o.K != qd || L->s_down.K != I || L->s_kv.K != kd ||
      L->s_qk8.K != hd || L->wq.N != qd || L->wk.N != kd || L->wv.N != kd || L->wo.N != d || L->wg.N != I ||
      L->wu.N != I || L->wd.N != d)
    return resq_fail(RESQ_ERR_SHAPE, "layer q4q8: the prepared layer's splits/weights do not match the config");
  if (L->online_hadamard && (st = resq_hadamard_factor(I, NULL, NULL))) return st;
  if (!work || work_size < resq_layer_q4q8_workspace_size(c, T))
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer q4q8: workspace of %zu bytes, %zu needed", work_size,
                     resq_layer_q4q8_workspace_size(c, T));
  for (int64_t i = 0; i < T * d; i++)
    if ((h_in[i] & 0x7c00u) == 0x7c00u) return resq_fail(RESQ_ERR_NONFINITE, "layer q4q8: h_in[%lld] is NaN or Inf", (long long)i);
  bump b = {(char *)work, work_size, 0};
  float *x = bump_f32(&b, T * d), *a = bump_f32(&b, T * d), *h1 = bump_f32(&b, T * d);
  float *q = bump_f32(&b, T * qd), *k = bump_f32(&b, T * kd), *v = bump_f32(&b, T * kd), *o = bump_f32(&b, T * qd);
  float *z = bump_f32(&b, T * I), *uu = bump_f32(&b, T * I);
  uint16_t *q16 = bump_u16(&b, T * qd), *k16 = bump_u16(&b, T * kd), *v16 = bump_u16(&b, T * kd);
  uint16_t *t16 = bump_u16(&b, T * d), *g16 = bump_u16(&b, T * I), *u16 = bump_u16(&b, T * I);
  size_t hws = resq_hadamard_workspace_size(I);
  void *hw = bump_take(&b, hws);
  if (!hw) return resq_fail(RESQ_ERR_INTERNAL, "layer q4q8: workspace accounting");
  resq_f16_to_f32_n(h_in, x, (size_t)(T * d));

  /* attention block: the RMSNorm output goes to the quantizer unrounded (fused kernel) */
  resq_rmsnorm_f32__ref(T, d, x, NULL, c->eps, a);
  tap(tp->a_attn, a, T * d);
  if ((st = qgemm(&L->s_qkv, &L->wq, T, a, q16, &b)) || (st = qgemm(&L->s_qkv, &L->wk, T, a, k16, &b)) ||
      (st = qgemm(&L->s_qkv, &L->wv, T, a, v16, &b)))
    return st;
  resq_f16_to_f32_n(q16, q, (size_t)(T * qd));
  resq_f16_to_f32_n(k16, k, (size_t)(T * kd));
  resq_f16_to_f32_n(v16, v, (size_t)(T * kd));
  tap(tp->q, q, T * qd), tap(tp->k, k, T * kd), tap(tp->v, v, T * kd);
  resq_rope_f32__ref(T, c->H, hd, c->rope_theta, 0, q);
  resq_rope_f32__ref(T, c->G, hd, c->rope_theta, 0, k);
  if (L->k8) {
    const resq_qact_params *p8 = L->qk_rot_no_prequant ? NULL : &L->s_qk8;
    if ((st = fq8_rotate(p8, L->k8, T, c->H, hd, q, &b)) || (st = fq8_rotate(p8, L->k8, T, c->G, hd, k, &b)))
      return st;
  }
  tap(tp->q_rot, q, T * qd), tap(tp->k_rot, k, T * kd);
  if ((st = fake_quant(&L->s_kv, T, k, &b)) || (st = fake_quant(&L->s_kv, T, v, &b))) return st;
  tap(tp->k_cache, k, T * kd), tap(tp->v_cache, v, T * kd);
  if ((st = resq_attention_f32__ref(T, c->H, c->G, hd, q, k, v, o))) return st;
  tap(tp->o, o, T * qd);
  if ((st = qgemm(&L->s_o, &L->wo, T, o, t16, &b))) return st;
  tap16(tp->t_o, t16, T * d);
  for (int64_t i = 0; i < T * d; i++) h1[i] = resq_round_f16(x[i] + resq_f16_to_f32(t16[i]));
  tap(tp->h_mid, h1, T * d);

  /* MLP block */
  resq_rmsnorm_f32__ref(T, d, h1, NULL, c->eps, a);
  tap(tp->a_mlp, a, T * d);
  if ((st = qgemm(&L->s_gu, &L->wg, T, a, g16, &b)) || (st = qgemm(&L->s_gu, &L->wu, T, a, u16, &b))) return st;
  tap16(tp->g, g16, T * I), tap16(tp->u, u16, T * I);
  for (int64_t i = 0; i < T * I; i++) z[i] = resq_silu_f32(resq_f16_to_f32(g16[i])) * resq_f16_to_f32(u16[i]);
  if (L->online_hadamard && (st = resq_hadamard_f32__ref(T, I, z, I, z, I, NULL, hw, hws))) return st;
  tap(tp->z, z, T * I);
  if ((st = qgemm(&L->s_down, &L->wd, T, z, t16, &b))) return st;
  tap16(tp->t_down, t16, T * d);
  for (int64_t i = 0; i < T * d; i++) h_out[i] = resq_f32_to_f16(h1[i] + resq_f16_to_f32(t16[i]));
  (void)uu;
  return RESQ_OK;
}
