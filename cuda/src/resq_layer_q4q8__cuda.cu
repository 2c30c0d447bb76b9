// SPDX-License-Identifier: Apache-2.0
// The ResQ decoder layer on the GPU (resq/cuda_layer.h): the reference's sequence
// (resq_layer_q4q8_forward__ref) built from the backend's quantizers, fused
// kernels and E1's mixed GEMM (resq/cuda_gemm.h).
//
// STATUS: COMPILED ONLY (CUDA 13.0, sm_80/86/89/90, no GPU here); never run.
// verify/cuda_layer_test.c checks every stage on a GPU.
#include <cuda_runtime.h>
#include <string.h>

#include "resq/cuda.h"
#include "rq_host.cuh"
#include "rq_layer.cuh"
#include "rq_lib.cuh"

namespace {

// a quantized-activation buffer of one split for M rows, carved from the workspace
struct qb {
  resq_qact q;
};
void qb_take(rq_carve &cv, const resq_qact_params &p, int64_t M, qb *b) {
  resq_qact_layout L;
  resq_qact_check(&p, &L);
  const int64_t G = L.ngroups;
  b->q.q_lo = (uint8_t *)cv.take((size_t)(M * L.lo_bytes) + 16);
  b->q.ld_lo = L.lo_bytes;
  b->q.q_hi = (uint8_t *)cv.take((size_t)(M * L.hi_bytes) + 16);
  b->q.ld_hi = L.hi_bytes;
  b->q.scale_lo = (float *)cv.take((size_t)(M * G) * 4 + 4);
  b->q.zero_lo = (int32_t *)cv.take((size_t)(M * G) * 4 + 4);
  b->q.scale_hi = (float *)cv.take((size_t)(M * G) * 4 + 4);
  b->q.zero_hi = (int32_t *)cv.take((size_t)(M * G) * 4 + 4);
}

struct q4q8_ws {
  qb qkv, qo, gu, down, kv, q8;
  uint16_t *q16, *k16, *v16, *t16, *h1, *g16, *u16;
  float *q, *k, *v, *deq, *o, *z;
  void *gemm;
  size_t gemm_bytes;
};

// the fused SiLU*mul + Hadamard + 4-bit kernel applies: online Hadamard, per-token r = 0
bool fused_down(const resq_layer_q4q8_cuda *L) {
  return L->online_hadamard && L->s_down.r == 0 && L->s_down.group == L->s_down.K;
}

size_t gemm_ws_bytes(const resq_layer_q4q8_cuda *L, int64_t T) {
  const resq_qweight_cuda *w[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
  size_t m = 0;
  for (int i = 0; i < 7; i++) {
    size_t b = resq_gemm_workspace_size__cuda(w[i], T);
    m = b > m ? b : m;
  }
  return m;
}

size_t q4q8_layout(const resq_layer_config *c, const resq_layer_q4q8_cuda *L, int64_t T, char *base, size_t cap,
                   q4q8_ws *w) {
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I, hd = c->hd;
  rq_carve cv = {base ? base : (char *)256, base ? cap : (size_t)-1 / 2, 0};
  q4q8_ws x;
  qb_take(cv, L->s_qkv, T, &x.qkv);
  qb_take(cv, L->s_o, T, &x.qo);
  qb_take(cv, L->s_gu, T, &x.gu);
  qb_take(cv, L->s_down, T, &x.down);
  qb_take(cv, L->s_kv, T, &x.kv);
  qb_take(cv, L->s_qk8, T * c->H, &x.q8);
  x.q16 = (uint16_t *)cv.take((size_t)(T * qd) * 2);
  x.k16 = (uint16_t *)cv.take((size_t)(T * kd) * 2);
  x.v16 = (uint16_t *)cv.take((size_t)(T * kd) * 2);
  x.t16 = (uint16_t *)cv.take((size_t)(T * d) * 2);
  x.h1 = (uint16_t *)cv.take((size_t)(T * d) * 2);
  x.g16 = (uint16_t *)cv.take((size_t)(T * I) * 2);
  x.u16 = (uint16_t *)cv.take((size_t)(T * I) * 2);
  x.q = (float *)cv.take((size_t)(T * qd) * 4);
  x.k = (float *)cv.take((size_t)(T * kd) * 4);
  x.v = (float *)cv.take((size_t)(T * kd) * 4);
  x.deq = (float *)cv.take((size_t)(T * c->H * hd) * 4);
  x.o = (float *)cv.take((size_t)(T * qd) * 4);
  x.z = fused_down(L) ? nullptr : (float *)cv.take((size_t)(T * I) * 4);
  x.gemm_bytes = gemm_ws_bytes(L, T);
  x.gemm = cv.take(x.gemm_bytes ? x.gemm_bytes : 1);
  if (w) *w = x;
  return cv.used + 256;
}

resq_status tap32(float *dst, const float *src, int64_t n) {
  if (!dst || n == 0) return RESQ_OK;
  cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, rq_stream());
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, "layer tap");
}
resq_status tap16(float *dst, const uint16_t *src, int64_t n) { return dst && n ? rq_widen(n, src, dst) : RESQ_OK; }

// x[rows][hd] <- dequant(quant8(x)) . K8 (p8 NULL: x . K8), the reference's fq8_rotate
resq_status fq8_rotate(const resq_qact_params *p8, const float *k8, int64_t rows, int64_t hd, float *x, qb *q,
                       float *deq) {
  resq_status st;
  const float *src = x;
  if (p8) {
    if ((st = resq_quant_act_f32_q4q8__cuda(p8, rows, x, hd, &q->q))) return st;
    if ((st = resq_dequant_act_q4q8_f32__cuda(p8, rows, &q->q, deq, hd))) return st;
    src = deq;
  } else {
    cudaError_t e = cudaMemcpyAsync(deq, x, (size_t)(rows * hd) * 4, cudaMemcpyDeviceToDevice, rq_stream());
    if (e != cudaSuccess) return rq_cuda_fail(e, "fq8 rotation");
    src = deq;
  }
  return rq_k8_rotate(rows, hd, src, k8, x);
}

// the mixed GEMM with the layer's split-K workspace
resq_status qgemm(const resq_qact_params *p, int64_t T, const resq_qact *x, const resq_qweight_cuda *w, uint16_t *y,
                  const q4q8_ws &b) {
  resq_gemm_cuda_opts o;
  memset(&o, 0, sizeof o);
  o.tile = RESQ_GEMM_TILE_AUTO;
  o.splits = 0;
  o.work = b.gemm_bytes ? b.gemm : nullptr;
  o.work_size = b.gemm_bytes;
  return resq_gemm_q4q8_f16__cuda(p, T, x, w, nullptr, y, w->N, &o);
}

}  // namespace

extern "C" resq_status resq_layer_q4q8_upload__cuda(const resq_layer_config *c, const resq_layer_q4q8 *L,
                                                    resq_layer_q4q8_cuda *out) {
  const char *what = "resq_layer_q4q8_upload__cuda";
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (!L || !out) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL layer", what);
  memset(out, 0, sizeof *out);
  out->s_qkv = L->s_qkv, out->s_o = L->s_o, out->s_gu = L->s_gu, out->s_down = L->s_down;
  out->s_kv = L->s_kv, out->s_qk8 = L->s_qk8;
  out->online_hadamard = L->online_hadamard;
  out->qk_rot_no_prequant = L->qk_rot_no_prequant;
  const resq_qact_params *sp[7] = {&L->s_qkv, &L->s_qkv, &L->s_qkv, &L->s_o, &L->s_gu, &L->s_gu, &L->s_down};
  const resq_qweight *src[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
  resq_qweight_cuda *dst[7] = {&out->wq, &out->wk, &out->wv, &out->wo, &out->wg, &out->wu, &out->wd};
  for (int i = 0; i < 7 && !st; i++) st = resq_gemm_upload_weight__cuda(sp[i], src[i], dst[i]);
  if (!st && L->k8) {
    const size_t n = (size_t)(c->hd * c->hd) * 4;
    cudaError_t e = cudaMalloc(&out->k8, n);
    if (e == cudaSuccess) e = cudaMemcpy(out->k8, L->k8, n, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) st = rq_cuda_fail(e, what);
  }
  if (st) resq_layer_q4q8_free__cuda(out);
  return st;
}

extern "C" void resq_layer_q4q8_free__cuda(resq_layer_q4q8_cuda *L) {
  if (!L) return;
  resq_qweight_cuda *w[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
  for (int i = 0; i < 7; i++)
    if (w[i]->owned) resq_gemm_free_weight__cuda(w[i]);
  if (L->k8) cudaFree(L->k8);
  memset(L, 0, sizeof *L);
}

extern "C" size_t resq_layer_q4q8_workspace_size__cuda(const resq_layer_config *c, const resq_layer_q4q8_cuda *L,
                                                       int64_t T) {
  if (!L || T < 0 || resq_layer_config_check(c)) {
    resq_clear_error();
    return 0;
  }
  return q4q8_layout(c, L, T, nullptr, 0, nullptr);
}

extern "C" resq_status resq_layer_q4q8_forward__cuda(const resq_layer_config *c, const resq_layer_q4q8_cuda *L,
                                                     int64_t T, const uint16_t *h_in, uint16_t *h_out,
                                                     resq_attn_mode attn, const resq_layer_q4q8_taps_cuda *taps,
                                                     void *work, size_t work_size) {
  const char *what = "resq_layer_q4q8_forward__cuda";
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (T < 0 || !L || (T > 0 && (!h_in || !h_out))) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: bad arguments", what);
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I, hd = c->hd;
  if (L->s_qkv.K != d || L->s_gu.K != d || L->s_o.K != qd || L->s_down.K != I || L->s_kv.K != kd ||
      L->s_qk8.K != hd || L->wq.N != qd || L->wk.N != kd || L->wv.N != kd || L->wo.N != d || L->wg.N != I ||
      L->wu.N != I || L->wd.N != d)
    return resq_fail(RESQ_ERR_SHAPE, "%s: the layer's splits/weights do not match the config", what);
  const size_t need = resq_layer_q4q8_workspace_size__cuda(c, L, T);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: workspace of %zu bytes, %zu needed", what, work_size, need);
  if (T == 0) return RESQ_OK;
  const resq_layer_q4q8_taps_cuda none = {};
  const resq_layer_q4q8_taps_cuda *tp = taps ? taps : &none;
  q4q8_ws b;
  q4q8_layout(c, L, T, (char *)work, work_size, &b);
  cudaStream_t s = rq_stream();
  // E1's split-K workspace must be zero before a call (every call leaves it zero again)
  if (b.gemm_bytes) {
    cudaError_t e = cudaMemsetAsync(b.gemm, 0, b.gemm_bytes, s);
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
  }
#define RQ_TRY(x) \
  if ((st = (x))) return st
  /* attention block: RMSNorm fused into the per-token quantizer (gamma folded into the weights) */
  RQ_TRY(resq_rmsnorm_quant_act_f16_q4q8__cuda(&L->s_qkv, T, h_in, d, nullptr, c->eps, &b.qkv.q));
  RQ_TRY(qgemm(&L->s_qkv, T, &b.qkv.q, &L->wq, b.q16, b));
  RQ_TRY(qgemm(&L->s_qkv, T, &b.qkv.q, &L->wk, b.k16, b));
  RQ_TRY(qgemm(&L->s_qkv, T, &b.qkv.q, &L->wv, b.v16, b));
  RQ_TRY(rq_widen(T * qd, b.q16, b.q));
  RQ_TRY(rq_widen(T * kd, b.k16, b.k));
  RQ_TRY(rq_widen(T * kd, b.v16, b.v));
  RQ_TRY(tap32(tp->q, b.q, T * qd));
  RQ_TRY(tap32(tp->k, b.k, T * kd));
  RQ_TRY(tap32(tp->v, b.v, T * kd));
  RQ_TRY(resq_rope_f32__cuda(T, c->H, hd, c->rope_theta, 0, b.q));
  RQ_TRY(resq_rope_f32__cuda(T, c->G, hd, c->rope_theta, 0, b.k));
  if (L->k8) {
    const resq_qact_params *p8 = L->qk_rot_no_prequant ? nullptr : &L->s_qk8;
    RQ_TRY(fq8_rotate(p8, L->k8, T * c->H, hd, b.q, &b.q8, b.deq));
    RQ_TRY(fq8_rotate(p8, L->k8, T * c->G, hd, b.k, &b.q8, b.deq));
  }
  RQ_TRY(tap32(tp->q_rot, b.q, T * qd));
  RQ_TRY(tap32(tp->k_rot, b.k, T * kd));
  /* the KV cache as attention reads it: per-head quantize-dequantize (in place) */
  RQ_TRY(resq_quant_act_f32_q4q8__cuda(&L->s_kv, T, b.k, kd, &b.kv.q));
  RQ_TRY(resq_dequant_act_q4q8_f32__cuda(&L->s_kv, T, &b.kv.q, b.k, kd));
  RQ_TRY(resq_quant_act_f32_q4q8__cuda(&L->s_kv, T, b.v, kd, &b.kv.q));
  RQ_TRY(resq_dequant_act_q4q8_f32__cuda(&L->s_kv, T, &b.kv.q, b.v, kd));
  RQ_TRY(tap32(tp->k_cache, b.k, T * kd));
  RQ_TRY(tap32(tp->v_cache, b.v, T * kd));
  RQ_TRY(resq_attention_f32__cuda(T, c->H, c->G, hd, b.q, b.k, b.v, b.o, attn));
  RQ_TRY(tap32(tp->o, b.o, T * qd));
  /* o_proj: grouped quantization (its q_lo / q_hi are the permuted column order) */
  RQ_TRY(resq_quant_act_f32_q4q8__cuda(&L->s_o, T, b.o, qd, &b.qo.q));
  RQ_TRY(qgemm(&L->s_o, T, &b.qo.q, &L->wo, b.t16, b));
  RQ_TRY(tap16(tp->t_o, b.t16, T * d));
  RQ_TRY(rq_residual_f16(T * d, h_in, b.t16, b.h1));
  RQ_TRY(tap16(tp->h_mid, b.h1, T * d));
  /* MLP block */
  RQ_TRY(resq_rmsnorm_quant_act_f16_q4q8__cuda(&L->s_gu, T, b.h1, d, nullptr, c->eps, &b.gu.q));
  RQ_TRY(qgemm(&L->s_gu, T, &b.gu.q, &L->wg, b.g16, b));
  RQ_TRY(qgemm(&L->s_gu, T, &b.gu.q, &L->wu, b.u16, b));
  RQ_TRY(tap16(tp->g, b.g16, T * I));
  RQ_TRY(tap16(tp->u, b.u16, T * I));
  if (fused_down(L)) {
    RQ_TRY(resq_silu_hadamard_quant_f16_q4__cuda(T, I, b.g16, I, b.u16, I, nullptr, &L->s_down, &b.down.q));
  } else {  // no online Hadamard (RTN), or an 8-bit / grouped down_proj input: the unfused sequence
    RQ_TRY(rq_silu_mul(T, I, b.g16, b.u16, b.z, nullptr));
    if (L->online_hadamard) RQ_TRY(resq_hadamard_f32__cuda(T, I, b.z, I, b.z, I, nullptr, nullptr, 0));
    RQ_TRY(resq_quant_act_f32_q4q8__cuda(&L->s_down, T, b.z, I, &b.down.q));
  }
  RQ_TRY(qgemm(&L->s_down, T, &b.down.q, &L->wd, b.t16, b));
  RQ_TRY(tap16(tp->t_down, b.t16, T * d));
  RQ_TRY(rq_residual_f16(T * d, b.h1, b.t16, h_out));
#undef RQ_TRY
  return RESQ_OK;
}
