/* SPDX-License-Identifier: Apache-2.0
 * The FP16 decoder layer (the baseline of ref/CONTRACT.md section 14) on the
 * CPU kernels, bit-identical to resq_layer_fp16_forward__ref: the FP16 GEMM of
 * resq_gemm_f16__cpu (exact against the reference: fp16 products are exact in
 * fp32, one FMA chain per output, k ascending), the shared ops of
 * cpu_layer_ops.c (the reference's double sequences), RoPE by the reference.
 * q, k, v (and gate, up) read the same f16 activations; nothing else differs
 * from the reference's sequence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_layer.h"
#include "resq/dtype.h"

typedef struct {
  char *base;
  size_t cap, used;
} bump;

static void *take(bump *b, size_t bytes) {
  size_t off = (b->used + 63) & ~(size_t)63;
  if (b->base && off + bytes > b->cap) return NULL;
  b->used = off + bytes;
  return b->base ? (void *)(b->base + off) : (void *)b;
}
static float *take_f32(bump *b, int64_t n) { return (float *)take(b, (size_t)(n > 0 ? n : 1) * 4); }
static uint16_t *take_u16(bump *b, int64_t n) { return (uint16_t *)take(b, (size_t)(n > 0 ? n : 1) * 2); }

static int64_t round64(int64_t v) { return (v + 63) / 64 * 64; }

void resq_layer_fp16_free__cpu(resq_layer_fp16_cpu *L) {
  if (!L) return;
  free(L->mem_);
  memset(L, 0, sizeof *L);
}

resq_status resq_layer_fp16_pack__cpu(const resq_layer_config *c, const resq_layer_fp16 *w, resq_layer_fp16_cpu *out) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (!w || !out) return resq_fail(RESQ_ERR_INVALID_ARG, "layer fp16 pack (cpu): NULL argument");
  if (!w->wq || !w->wk || !w->wv || !w->wo || !w->wg || !w->wu || !w->wd || !w->ln1 || !w->ln2)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer fp16: a weight is NULL");
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  const uint16_t *src[7] = {w->wq, w->wk, w->wv, w->wo, w->wg, w->wu, w->wd};
  const int64_t N[7] = {qd, kd, kd, d, I, I, d}, K[7] = {d, d, d, qd, d, d, I};
  size_t sz[7], total = (size_t)round64(2 * d * 4);
  for (int i = 0; i < 7; i++) {
    if ((st = resq_gemm_f16_pack_weight_size__cpu(N[i], K[i], &sz[i]))) return st;
    total += (size_t)round64((int64_t)sz[i]);
  }
  for (int64_t i = 0; i < d; i++)
    if (!isfinite(w->ln1[i]) || !isfinite(w->ln2[i]))
      return resq_fail(RESQ_ERR_NONFINITE, "layer fp16 pack (cpu): RMSNorm weight %lld is NaN or Inf", (long long)i);
  char *mem = (char *)aligned_alloc(64, total);
  if (!mem) return resq_fail(RESQ_ERR_NOMEM, "layer fp16 pack (cpu): cannot allocate %zu bytes", total);
  resq_layer_fp16_cpu o;
  memset(&o, 0, sizeof o);
  resq_wf16_cpu *dst[7] = {&o.wq, &o.wk, &o.wv, &o.wo, &o.wg, &o.wu, &o.wd};
  size_t off = 0;
  for (int i = 0; i < 7; i++) {
    if ((st = resq_gemm_f16_pack_weight__cpu(N[i], K[i], src[i], K[i], mem + off, sz[i], dst[i]))) {
      free(mem);
      return st;
    }
    off += (size_t)round64((int64_t)sz[i]);
  }
  float *ln = (float *)(mem + off);
  memcpy(ln, w->ln1, (size_t)d * 4);
  memcpy(ln + d, w->ln2, (size_t)d * 4);
  o.ln1 = ln, o.ln2 = ln + d;
  o.c = *c;
  o.bytes = total;
  o.mem_ = mem;
  *out = o;
  return RESQ_OK;
}

typedef struct {
  float *x, *a, *q, *k, *v, *o, *h1;
  uint16_t *a16, *q16, *k16, *v16, *o16, *t16, *g16, *u16;
} fbufs;

static int layout(const resq_layer_config *c, int64_t T, bump *b, fbufs *B) {
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  B->x = take_f32(b, T * d), B->a = take_f32(b, T * d), B->q = take_f32(b, T * qd), B->k = take_f32(b, T * kd);
  B->v = take_f32(b, T * kd), B->o = take_f32(b, T * qd), B->h1 = take_f32(b, T * d);
  B->a16 = take_u16(b, T * (d > I ? d : I)), B->q16 = take_u16(b, T * qd), B->k16 = take_u16(b, T * kd);
  B->v16 = take_u16(b, T * kd), B->o16 = take_u16(b, T * qd), B->t16 = take_u16(b, T * d);
  B->g16 = take_u16(b, T * I), B->u16 = take_u16(b, T * I);
  return B->u16 ? 0 : -1;
}

size_t resq_layer_fp16_workspace_size__cpu(const resq_layer_fp16_cpu *L, int64_t T) {
  if (!L || !L->mem_ || T < 0 || resq_layer_config_check(&L->c)) {
    resq_clear_error();
    return 0;
  }
  bump b = {NULL, 0, 0};
  fbufs B;
  if (layout(&L->c, T, &b, &B)) return 0;
  return b.used + 64;
}

resq_status resq_layer_fp16_forward__cpu(const resq_layer_config *c, const resq_layer_fp16_cpu *L, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size) {
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (T < 0 || !L || (T > 0 && (!h_in || !h_out))) return resq_fail(RESQ_ERR_INVALID_ARG, "layer fp16: bad arguments");
  if (!L->mem_ || memcmp(&L->c, c, sizeof *c) != 0)
    return resq_fail(RESQ_ERR_SHAPE, "layer fp16 (cpu): the packed layer was made for another configuration (or is not packed)");
  const size_t need = resq_layer_fp16_workspace_size__cpu(L, T);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "layer fp16: workspace of %zu bytes, %zu needed (resq_layer_fp16_workspace_size__cpu)",
                     work_size, need);
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  for (int64_t i = 0; i < T * d; i++)
    if ((h_in[i] & 0x7c00u) == 0x7c00u) return resq_fail(RESQ_ERR_NONFINITE, "layer fp16: h_in[%lld] is NaN or Inf", (long long)i);
  if (T == 0) return RESQ_OK;
  bump b = {(char *)work, work_size, 0};
  fbufs B;
  if (layout(c, T, &b, &B)) return resq_fail(RESQ_ERR_INTERNAL, "layer fp16 (cpu): workspace accounting");
  resq_f16_to_f32_n(h_in, B.x, (size_t)(T * d));
  /* attention block */
  resq_cpu_rmsnorm(T, d, B.x, L->ln1, c->eps, B.a);
  resq_f32_to_f16_n(B.a, B.a16, (size_t)(T * d));
  if ((st = resq_gemm_f16__cpu(T, B.a16, d, &L->wq, NULL, B.q16, qd)) ||
      (st = resq_gemm_f16__cpu(T, B.a16, d, &L->wk, NULL, B.k16, kd)) ||
      (st = resq_gemm_f16__cpu(T, B.a16, d, &L->wv, NULL, B.v16, kd)))
    return st;
  resq_f16_to_f32_n(B.q16, B.q, (size_t)(T * qd));
  resq_f16_to_f32_n(B.k16, B.k, (size_t)(T * kd));
  resq_f16_to_f32_n(B.v16, B.v, (size_t)(T * kd));
  resq_rope_f32__ref(T, c->H, c->hd, c->rope_theta, 0, B.q);
  resq_rope_f32__ref(T, c->G, c->hd, c->rope_theta, 0, B.k);
  if ((st = resq_cpu_attention(T, c->H, c->G, c->hd, B.q, B.k, B.v, B.o))) return st;
  resq_f32_to_f16_n(B.o, B.o16, (size_t)(T * qd));
  if ((st = resq_gemm_f16__cpu(T, B.o16, qd, &L->wo, NULL, B.t16, d))) return st;
  for (int64_t i = 0; i < T * d; i++) B.h1[i] = resq_round_f16(B.x[i] + resq_f16_to_f32(B.t16[i]));
  /* MLP block */
  resq_cpu_rmsnorm(T, d, B.h1, L->ln2, c->eps, B.a);
  resq_f32_to_f16_n(B.a, B.a16, (size_t)(T * d));
  if ((st = resq_gemm_f16__cpu(T, B.a16, d, &L->wg, NULL, B.g16, I)) ||
      (st = resq_gemm_f16__cpu(T, B.a16, d, &L->wu, NULL, B.u16, I)))
    return st;
  resq_cpu_silu_mul(T * I, B.g16, B.u16, NULL, B.a16); /* f16(round_f16(SiLU(g) u)) = f16(SiLU(g) u) */
  if ((st = resq_gemm_f16__cpu(T, B.a16, I, &L->wd, NULL, B.t16, d))) return st;
  for (int64_t i = 0; i < T * d; i++) h_out[i] = resq_f32_to_f16(B.h1[i] + resq_f16_to_f32(B.t16[i]));
  return RESQ_OK;
}
