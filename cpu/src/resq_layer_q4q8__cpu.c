/* SPDX-License-Identifier: Apache-2.0
 * The ResQ decoder layer on the CPU kernels (ref/CONTRACT.md section 14),
 * bit-identical to resq_layer_q4q8_forward__ref: the same op sequence on the
 * prepared layer, every op exact against its reference counterpart
 *   RMSNorm, attention, the K8 product     cpu_layer_ops.c (reference order)
 *   quantizers, mixed GEMMs, Hadamard      resq_quant_act_f32_q4q8__cpu,
 *                                          resq_gemm_q4q8_f16__cpu,
 *                                          resq_hadamard_f32__cpu (exact)
 *   RoPE, dequantization                   the reference's functions (O(T d))
 * The one structural change: q, k and v (and gate, up) share one quantization
 * of their common input instead of three (the reference quantizes inside each
 * GEMM call; the codes are a deterministic function of the input, so they are
 * the same bits).
 * The weights are repacked once into the CPU GEMM layout (resq_qweight_cpu). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_layer.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"

/* ------------------------------------------------------------------ a bump allocator over the workspace */

typedef struct {
  char *base;
  size_t cap, used;
} bump;

/* base NULL: a measuring pass (returns a non-NULL placeholder, never used) */
static void *take(bump *b, size_t bytes) {
  size_t off = (b->used + 63) & ~(size_t)63;
  if (b->base && off + bytes > b->cap) return NULL;
  b->used = off + bytes;
  return b->base ? (void *)(b->base + off) : (void *)b;
}
static float *take_f32(bump *b, int64_t n) { return (float *)take(b, (size_t)(n > 0 ? n : 1) * 4); }
static uint16_t *take_u16(bump *b, int64_t n) { return (uint16_t *)take(b, (size_t)(n > 0 ? n : 1) * 2); }

typedef struct {
  resq_qact q;
} qbuf;

static int take_q(bump *b, const resq_qact_params *p, int64_t M, qbuf *out) {
  resq_qact_layout L;
  if (resq_qact_check(p, &L)) return -1;
  const int64_t G = L.ngroups;
  out->q.q_lo = (uint8_t *)take(b, (size_t)(M * L.lo_bytes > 0 ? M * L.lo_bytes : 1));
  out->q.ld_lo = L.lo_bytes;
  out->q.q_hi = (uint8_t *)take(b, (size_t)(M * L.hi_bytes > 0 ? M * L.hi_bytes : 1));
  out->q.ld_hi = L.hi_bytes;
  out->q.scale_lo = take_f32(b, M * G);
  out->q.scale_hi = take_f32(b, M * G);
  out->q.zero_lo = (int32_t *)take_f32(b, M * G);
  out->q.zero_hi = (int32_t *)take_f32(b, M * G);
  return out->q.zero_hi ? 0 : -1;
}

/* ------------------------------------------------------------------ packing */

static int64_t round64(int64_t v) { return (v + 63) / 64 * 64; }

void resq_layer_q4q8_free__cpu(resq_layer_q4q8_cpu *L) {
  if (!L) return;
  free(L->mem_);
  memset(L, 0, sizeof *L);
}

resq_status resq_layer_q4q8_pack__cpu(const resq_layer_config *c, const resq_layer_q4q8 *L, resq_layer_q4q8_cpu *out) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (!L || !out) return resq_fail(RESQ_ERR_INVALID_ARG, "layer q4q8 pack (cpu): NULL argument");
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I, hd = c->hd;
  if (L->s_qkv.K != d || L->s_gu.K != d || L->s_o.K != qd || L->s_down.K != I || L->s_kv.K != kd ||
      L->s_qk8.K != hd || L->wq.N != qd || L->wk.N != kd || L->wv.N != kd || L->wo.N != d || L->wg.N != I ||
      L->wu.N != I || L->wd.N != d)
    return resq_fail(RESQ_ERR_SHAPE, "layer q4q8 pack (cpu): the prepared layer's splits/weights do not match the config");
  const resq_qweight *src[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
  const resq_qact_params *sp[7] = {&L->s_qkv, &L->s_qkv, &L->s_qkv, &L->s_o, &L->s_gu, &L->s_gu, &L->s_down};
  size_t sz[7], total = 0;
  for (int i = 0; i < 7; i++) {
    if ((st = resq_gemm_pack_weight_size__cpu(sp[i], src[i]->N, &sz[i]))) return st;
    total += (size_t)round64((int64_t)sz[i]);
  }
  const size_t k8_bytes = L->k8 ? (size_t)round64(hd * hd * 4) : 0;
  total += k8_bytes;
  char *mem = (char *)aligned_alloc(64, total > 0 ? total : 64);
  if (!mem) return resq_fail(RESQ_ERR_NOMEM, "layer q4q8 pack (cpu): cannot allocate %zu bytes", total);
  resq_layer_q4q8_cpu o;
  memset(&o, 0, sizeof o);
  resq_qweight_cpu *dst[7] = {&o.wq, &o.wk, &o.wv, &o.wo, &o.wg, &o.wu, &o.wd};
  size_t off = 0;
  for (int i = 0; i < 7; i++) {
    if ((st = resq_gemm_pack_weight__cpu(sp[i], src[i], mem + off, sz[i], dst[i]))) {
      free(mem);
      return st;
    }
    off += (size_t)round64((int64_t)sz[i]);
  }
  if (L->k8) {
    for (int64_t i = 0; i < hd * hd; i++)
      if (!isfinite(L->k8[i])) {
        free(mem);
        return resq_fail(RESQ_ERR_NONFINITE, "layer q4q8 pack (cpu): k8[%lld] is NaN or Inf", (long long)i);
      }
    memcpy(mem + off, L->k8, (size_t)(hd * hd) * 4);
    o.k8 = (const float *)(mem + off);
  }
  o.c = *c;
  o.s_qkv = L->s_qkv, o.s_o = L->s_o, o.s_gu = L->s_gu, o.s_down = L->s_down, o.s_kv = L->s_kv, o.s_qk8 = L->s_qk8;
  o.online_hadamard = L->online_hadamard;
  o.qk_rot_no_prequant = L->qk_rot_no_prequant;
  o.bytes = total;
  o.mem_ = mem;
  *out = o;
  return RESQ_OK;
}

/* ------------------------------------------------------------------ forward */

typedef struct {
  float *x, *a, *h1, *q, *k, *v, *o, *z, *deq;
  uint16_t *q16, *k16, *v16, *t16, *g16, *u16;
  qbuf qd, qo, qg, qdown, qkv, q8;
  void *hw;
  size_t hws;
} lbufs;

/* Lays the buffers out (b->base NULL: measure). Returns 0 on success. */
static int layout(const resq_layer_config *c, const resq_layer_q4q8_cpu *L, int64_t T, bump *b, lbufs *B) {
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  B->x = take_f32(b, T * d), B->a = take_f32(b, T * d), B->h1 = take_f32(b, T * d);
  B->q = take_f32(b, T * qd), B->k = take_f32(b, T * kd), B->v = take_f32(b, T * kd), B->o = take_f32(b, T * qd);
  B->z = take_f32(b, T * I);
  B->deq = take_f32(b, T * qd);
  B->q16 = take_u16(b, T * qd), B->k16 = take_u16(b, T * kd), B->v16 = take_u16(b, T * kd);
  B->t16 = take_u16(b, T * d), B->g16 = take_u16(b, T * I), B->u16 = take_u16(b, T * I);
  B->hws = resq_hadamard_workspace_size(I);
  B->hw = take(b, B->hws > 0 ? B->hws : 64);
  if (take_q(b, &L->s_qkv, T, &B->qd) || take_q(b, &L->s_o, T, &B->qo) || take_q(b, &L->s_gu, T, &B->qg) ||
      take_q(b, &L->s_down, T, &B->qdown) || take_q(b, &L->s_kv, T, &B->qkv) || take_q(b, &L->s_qk8, T * c->H, &B->q8))
    return -1;
  return B->hw ? 0 : -1;
}

size_t resq_layer_q4q8_workspace_size__cpu(const resq_layer_q4q8_cpu *L, int64_t T) {
  if (!L || !L->mem_ || T < 0 || resq_layer_config_check(&L->c)) {
    resq_clear_error();
    return 0;
  }
  bump b = {NULL, 0, 0};
  lbufs B;
  if (layout(&L->c, L, T, &b, &B)) return 0;
  return b.used + 64;
}

static resq_status quant_cpu(const resq_qact_params *p, int64_t M, const float *x, int64_t ldx, const resq_qact *q) {
  return resq_quant_act_f32_q4q8__cpu(p, M, x, ldx, q);
}

resq_status resq_layer_q4q8_forward__cpu(const resq_layer_config *c, const resq_layer_q4q8_cpu *L, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (T < 0 || !L || (T > 0 && (!h_in || !h_out))) return resq_fail(RESQ_ERR_INVALID_ARG, "layer q4q8: bad arguments");
  if (!L->mem_ || memcmp(&L->c, c, sizeof *c) != 0)
    return resq_fail(RESQ_ERR_SHAPE, "layer q4q8 (cpu): the packed layer was made for another configuration (or is not packed)");
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I, hd = c->hd;
  if (L->online_hadamard && (st = resq_hadamard_factor(I, NULL, NULL))) return st;
  const size_t need = resq_layer_q4q8_workspace_size__cpu(L, T);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer q4q8: workspace of %zu bytes, %zu needed (resq_layer_q4q8_workspace_size__cpu)",
                     work_size, need);
  for (int64_t i = 0; i < T * d; i++)
    if ((h_in[i] & 0x7c00u) == 0x7c00u)
      return resq_fail(RESQ_ERR_NONFINITE, "layer q4q8: h_in[%lld] is NaN or Inf", (long long)i);
  if (T == 0) return RESQ_OK;
  bump b = {(char *)work, work_size, 0};
  lbufs B;
  if (layout(c, L, T, &b, &B)) return resq_fail(RESQ_ERR_INTERNAL, "layer q4q8 (cpu): workspace accounting");
  resq_f16_to_f32_n(h_in, B.x, (size_t)(T * d));

  /* attention block: RMSNorm (unrounded) -> one quantization -> q, k, v GEMMs */
  resq_cpu_rmsnorm(T, d, B.x, NULL, c->eps, B.a);
  if ((st = quant_cpu(&L->s_qkv, T, B.a, d, &B.qd.q)) ||
      (st = resq_gemm_q4q8_f16__cpu(&L->s_qkv, T, &B.qd.q, &L->wq, NULL, B.q16, qd)) ||
      (st = resq_gemm_q4q8_f16__cpu(&L->s_qkv, T, &B.qd.q, &L->wk, NULL, B.k16, kd)) ||
      (st = resq_gemm_q4q8_f16__cpu(&L->s_qkv, T, &B.qd.q, &L->wv, NULL, B.v16, kd)))
    return st;
  resq_f16_to_f32_n(B.q16, B.q, (size_t)(T * qd));
  resq_f16_to_f32_n(B.k16, B.k, (size_t)(T * kd));
  resq_f16_to_f32_n(B.v16, B.v, (size_t)(T * kd));
  resq_rope_f32__ref(T, c->H, hd, c->rope_theta, 0, B.q);
  resq_rope_f32__ref(T, c->G, hd, c->rope_theta, 0, B.k);
  if (L->k8) { /* q, k <- fq8(.) K8 (ResQ) or . K8 (QuaRot, no pre-quantization) */
    float *xs[2] = {B.q, B.k};
    const int64_t nh[2] = {c->H, c->G};
    for (int s = 0; s < 2; s++) {
      const float *in = xs[s];
      if (!L->qk_rot_no_prequant) {
        if ((st = quant_cpu(&L->s_qk8, T * nh[s], xs[s], hd, &B.q8.q)) ||
            (st = resq_dequant_act_q4q8_f32__ref(&L->s_qk8, T * nh[s], &B.q8.q, B.deq, hd)))
          return st;
        in = B.deq;
      }
      if ((st = resq_cpu_rows_k8(T * nh[s], hd, in, L->k8, xs[s]))) return st;
    }
  }
  /* K and V caches: quantize-dequantize per head */
  if ((st = quant_cpu(&L->s_kv, T, B.k, kd, &B.qkv.q)) ||
      (st = resq_dequant_act_q4q8_f32__ref(&L->s_kv, T, &B.qkv.q, B.k, kd)) ||
      (st = quant_cpu(&L->s_kv, T, B.v, kd, &B.qkv.q)) ||
      (st = resq_dequant_act_q4q8_f32__ref(&L->s_kv, T, &B.qkv.q, B.v, kd)))
    return st;
  if ((st = resq_cpu_attention(T, c->H, c->G, hd, B.q, B.k, B.v, B.o))) return st;
  if ((st = quant_cpu(&L->s_o, T, B.o, qd, &B.qo.q)) ||
      (st = resq_gemm_q4q8_f16__cpu(&L->s_o, T, &B.qo.q, &L->wo, NULL, B.t16, d)))
    return st;
  for (int64_t i = 0; i < T * d; i++) B.h1[i] = resq_round_f16(B.x[i] + resq_f16_to_f32(B.t16[i]));

  /* MLP block */
  resq_cpu_rmsnorm(T, d, B.h1, NULL, c->eps, B.a);
  if ((st = quant_cpu(&L->s_gu, T, B.a, d, &B.qg.q)) ||
      (st = resq_gemm_q4q8_f16__cpu(&L->s_gu, T, &B.qg.q, &L->wg, NULL, B.g16, I)) ||
      (st = resq_gemm_q4q8_f16__cpu(&L->s_gu, T, &B.qg.q, &L->wu, NULL, B.u16, I)))
    return st;
  resq_cpu_silu_mul(T * I, B.g16, B.u16, B.z, NULL);
  if (L->online_hadamard && (st = resq_hadamard_f32__cpu(T, I, B.z, I, B.z, I, NULL, B.hw, B.hws))) return st;
  if ((st = quant_cpu(&L->s_down, T, B.z, I, &B.qdown.q)) ||
      (st = resq_gemm_q4q8_f16__cpu(&L->s_down, T, &B.qdown.q, &L->wd, NULL, B.t16, d)))
    return st;
  for (int64_t i = 0; i < T * d; i++) h_out[i] = resq_f32_to_f16(B.h1[i] + resq_f16_to_f32(B.t16[i]));
  return RESQ_OK;
}
