// SPDX-License-Identifier: Apache-2.0
// CUDA activation quantizer, path A (ref/CONTRACT.md sections 3 and 5):
//   resq_quant_act_{f32,f16}_q4q8__cuda      per token / per head / grouped o_proj
//   resq_dequant_act_q4q8_{f32,f16}__cuda
//   resq_rmsnorm_quant_act_f16_q4q8__cuda    fused RMSNorm + quantization (per token)
//   resq_kv_cache_append_f16__cuda           K and V slices into a quantized cache
//
// STATUS: COMPILED ONLY. Built with CUDA 13.0 for sm_80/86/89/90 on a machine
// without a GPU; these kernels have NEVER BEEN RUN. The host emulation test
// (verify/cuda_host_test.cpp, ctest label cpu) replays their work split, the
// reductions and the packing with the same rq_quant.cuh functions and matches
// the reference bit for bit; verify/cuda_quant_test.c checks the real kernels
// once a GPU is available.
//
// Design (rq_quant.cuh): an item is one (row, group); TG threads per item, each
// owning chunks of 8 consecutive channels (t, t+TG, ...), up to RQ_QA_CH chunks
// kept in registers between the min/max pass and the code pass. 16-byte loads
// and 4/8-byte packed stores when every address is aligned (part lengths
// multiples of 8 and aligned pointers/leading dimensions), a scalar path
// otherwise. Per-part min/max are reduced with xor shuffles, then through
// shared memory across the warps of an item; they are exact, so any order gives
// the reference's values, and everything after them is per element.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <string.h>

#include "resq/cuda.h"
#include "rq_host.cuh"
#include "rq_quant.cuh"
#include "rq_reduce.cuh"

namespace {

// One input/output set; the KV-cache append runs two (K and V) in one launch.
struct rq_qa_side {
  const void *x;
  int64_t ldx;
  resq_qact out;  // row 0 of this launch's output rows
};

struct rq_qa_args {
  rq_qa_side side[2];
  int nsides;
  int64_t M;          // rows per side
  int64_t items;      // items per side = M * ngroups
  int64_t item0;      // first item (over both sides) of this launch
  int64_t K, group, r, lo, ngroups, lo_bpg, nlo_ch, nch;
  int log_tg, ipc, fast;
  float maxq_lo, maxq_hi, clip;
  // fused RMSNorm (group == K)
  const float *gamma;
  float eps;
};

// Load one chunk of cnt (<= 8) values starting at p (fast: 16-byte aligned, cnt == 8).
template <class In>
__device__ __forceinline__ void rq_qa_load8(const In *p, int cnt, bool fast, float (&o)[8]);
template <>
__device__ __forceinline__ void rq_qa_load8<float>(const float *p, int cnt, bool fast, float (&o)[8]) {
  if (fast) {
    float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
    return;
  }
#pragma unroll
  for (int k = 0; k < 8; k++) o[k] = k < cnt ? p[k] : 0.0f;
}
template <>
__device__ __forceinline__ void rq_qa_load8<__half>(const __half *p, int cnt, bool fast, float (&o)[8]) {
  if (fast) {
    uint4 w = *reinterpret_cast<const uint4 *>(p);
    const __half2 *h = reinterpret_cast<const __half2 *>(&w);
#pragma unroll
    for (int k = 0; k < 4; k++) {
      float2 f = __half22float2(h[k]);
      o[2 * k] = f.x, o[2 * k + 1] = f.y;
    }
    return;
  }
#pragma unroll
  for (int k = 0; k < 8; k++) o[k] = k < cnt ? __half2float(p[k]) : 0.0f;
}

// Reduce v over the TG = 2^log_tg threads of an item (consecutive tids): xor
// shuffles over the low bits, then the item's warps through shared memory.
// op 0: min, 1: max (exact, order independent). Called by every thread.
__device__ __forceinline__ void rq_qa_reduce4(float (&v)[4], int log_tg, int tid, float (*red)[32]) {
  const int lb = log_tg < 5 ? log_tg : 5;
#pragma unroll 1
  for (int k = 0; k < lb; k++) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float o = __shfl_xor_sync(0xffffffffu, v[i], 1 << k);
      v[i] = (i & 1) ? rq_max(v[i], o) : rq_min(v[i], o);
    }
  }
  if (log_tg > 5) {
    const int W = 1 << (log_tg - 5), w0 = (tid >> 5) & ~(W - 1);
    __syncthreads();  // red free (an earlier use finished)
    if ((tid & 31) == 0)
#pragma unroll
      for (int i = 0; i < 4; i++) red[i][tid >> 5] = v[i];
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; i++) v[i] = 0.0f;
    for (int w = 0; w < W; w++)
#pragma unroll
      for (int i = 0; i < 4; i++) v[i] = (i & 1) ? rq_max(v[i], red[i][w0 + w]) : rq_min(v[i], red[i][w0 + w]);
  }
}

// CH: chunks kept in registers per thread (1 when every thread has at most one
// chunk, i.e. groups up to 8*RQ_QA_MAX_TG = 4096 channels; else RQ_QA_CH).
template <class In, bool RMS, int CH>
__global__ void __launch_bounds__(RQ_QA_MAX_TG, 1) rq_qa_kernel(const rq_qa_args a) {
  __shared__ float red[4][32];
  __shared__ double dred[32];
  const int tid = threadIdx.x;
  const int TG = 1 << a.log_tg;
  const int t = tid & (TG - 1);
  const int64_t gitem = a.item0 + (int64_t)blockIdx.x * a.ipc + (tid >> a.log_tg);
  const bool valid = gitem < (int64_t)a.nsides * a.items;
  const int sd = valid && gitem >= a.items ? 1 : 0;
  const int64_t item = valid ? gitem - (int64_t)sd * a.items : 0;
  const int64_t row = item / a.ngroups, g = item - row * a.ngroups;
  const rq_qa_side &S = a.side[sd];
  const In *xr = static_cast<const In *>(S.x) + row * S.ldx + g * a.group;
  const bool fast = a.fast != 0;

  rq_qa_plan p;  // the fields rq_qa_chunk / byte offsets read
  p.lo = a.lo;
  p.r = a.r;
  p.nlo_ch = a.nlo_ch;
  p.lo_bpg = a.lo_bpg;

  // RMSNorm: the row's rinv first (every chunk of the row, any register state)
  float rinv = 1.0f;
  if constexpr (RMS) {
    double ss = 0.0;
    for (int64_t j = t; j < a.nch; j += TG) {
      int hi, cnt;
      int64_t e0, col;
      rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
      float xv[8];
      if (valid) rq_qa_load8<In>(xr + col, cnt, fast, xv);
#pragma unroll
      for (int k = 0; k < 8; k++)
        if (valid && k < cnt) ss = rq_rms_add(ss, rq_rms_sq(xv[k]));
    }
    ss = rq_reduce_ss(ss, a.log_tg, tid, dred);
    rinv = rq_rms_rinv(ss, a.K, a.eps);
  }
  // value of channel col (within the group) from its loaded input
  auto value = [&](float x, int64_t col) -> float {
    if constexpr (RMS) {
      float v = rq_mul(x, rinv);
      return a.gamma ? rq_mul(v, __ldg(a.gamma + g * a.group + col)) : v;
    } else {
      (void)col;
      return x;
    }
  };

  // pass 1: exact per-part min/max (registers keep the first CH chunks); the
  // parts are selected with branches, not by indexing mm (which would put it in
  // local memory)
  float keep[CH][8];
  float mm[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // mn_lo, mx_lo, mn_hi, mx_hi (start at +0)
#pragma unroll
  for (int i = 0; i < CH; i++) {
    const int64_t j = t + (int64_t)i * TG;
    if (valid && j < a.nch) {
      int hi, cnt;
      int64_t e0, col;
      rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
      rq_qa_load8<In>(xr + col, cnt, fast, keep[i]);
      float lo_mn = mm[0], lo_mx = mm[1], hi_mn = mm[2], hi_mx = mm[3];
#pragma unroll
      for (int k = 0; k < 8; k++) {
        if (k < cnt) {
          float v = value(keep[i][k], col + k);
          keep[i][k] = v;
          lo_mn = rq_min(lo_mn, v), lo_mx = rq_max(lo_mx, v);
          hi_mn = rq_min(hi_mn, v), hi_mx = rq_max(hi_mx, v);
        }
      }
      if (hi) mm[2] = hi_mn, mm[3] = hi_mx;
      else mm[0] = lo_mn, mm[1] = lo_mx;
    }
  }
  for (int64_t j = t + (int64_t)CH * TG; valid && j < a.nch; j += TG) {
    int hi, cnt;
    int64_t e0, col;
    rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
    float xv[8];
    rq_qa_load8<In>(xr + col, cnt, fast, xv);
    float lo_mn = mm[0], lo_mx = mm[1], hi_mn = mm[2], hi_mx = mm[3];
#pragma unroll
    for (int k = 0; k < 8; k++) {
      if (k < cnt) {
        float v = value(xv[k], col + k);
        lo_mn = rq_min(lo_mn, v), lo_mx = rq_max(lo_mx, v);
        hi_mn = rq_min(hi_mn, v), hi_mx = rq_max(hi_mx, v);
      }
    }
    if (hi) mm[2] = hi_mn, mm[3] = hi_mx;
    else mm[0] = lo_mn, mm[1] = lo_mx;
  }
  rq_qa_reduce4(mm, a.log_tg, tid, red);

  // parameters of both parts (every thread of the item computes the same)
  float s_lo = 1.0f, z_lo = 0.0f, s_hi = 1.0f, z_hi = 0.0f;
  if (a.lo > 0) rq_qa_params(mm[0], mm[1], a.clip, a.maxq_lo, &s_lo, &z_lo);
  if (a.r > 0) rq_qa_params(mm[2], mm[3], a.clip, a.maxq_hi, &s_hi, &z_hi);
  if (!valid) return;  // no barrier or shuffle below
  if (t == 0) {
    if (a.lo > 0) {
      S.out.scale_lo[item] = s_lo;
      S.out.zero_lo[item] = (int32_t)z_lo;
    }
    if (a.r > 0) {
      S.out.scale_hi[item] = s_hi;
      S.out.zero_hi[item] = (int32_t)z_hi;
    }
  }

  // pass 2: codes and packed stores
  uint8_t *qlo = S.out.q_lo + row * S.out.ld_lo;
  uint8_t *qhi = S.out.q_hi + row * S.out.ld_hi;
  auto emit = [&](int64_t j, const float (&v)[8]) {
    int hi, cnt;
    int64_t e0, col;
    rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
    int c[8];
#pragma unroll
    for (int k = 0; k < 8; k++) c[k] = k < cnt ? (hi ? rq_qa_code(v[k], s_hi, z_hi, a.maxq_hi) : rq_qa_code(v[k], s_lo, z_lo, a.maxq_lo)) : 0;
    if (!hi) {
      uint32_t w = rq_qa_pack_lo(c, cnt);
      uint8_t *d = qlo + rq_qa_lo_byte(p, g, e0);
      if (fast) {
        *reinterpret_cast<uint32_t *>(d) = w;
      } else {
        const int nb = (cnt + 1) / 2;
        for (int b = 0; b < nb; b++) d[b] = (uint8_t)(w >> (8 * b));
      }
    } else {
      uint32_t w0, w1;
      rq_qa_pack_hi(c, cnt, &w0, &w1);
      uint8_t *d = qhi + g * a.r + e0;
      if (fast) {
        *reinterpret_cast<uint2 *>(d) = make_uint2(w0, w1);
      } else {
        for (int b = 0; b < cnt; b++) d[b] = (uint8_t)((b < 4 ? w0 : w1) >> (8 * (b & 3)));
      }
    }
  };
#pragma unroll
  for (int i = 0; i < CH; i++) {
    const int64_t j = t + (int64_t)i * TG;
    if (j < a.nch) emit(j, keep[i]);
  }
  for (int64_t j = t + (int64_t)CH * TG; j < a.nch; j += TG) {
    int hi, cnt;
    int64_t e0, col;
    rq_qa_chunk(p, j, &hi, &e0, &cnt, &col);
    float xv[8];
    rq_qa_load8<In>(xr + col, cnt, fast, xv);
#pragma unroll
    for (int k = 0; k < 8; k++) xv[k] = k < cnt ? value(xv[k], col + k) : 0.0f;
    emit(j, xv);
  }
}

// Dequantization: one thread per output element (not a hot kernel: the layer's
// fake-quantized KV cache and the tests).
template <class Out>
__global__ void rq_dq_kernel(rq_qa_plan p, int64_t M, resq_qact in, Out *y, int64_t ldy, float *dummy) {
  (void)dummy;
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= M * p.K) return;
  const int64_t row = idx / p.K, col = idx - row * p.K;
  int64_t g, byte;
  int hi, nib;
  rq_dq_locate(p, col, &g, &hi, &byte, &nib);
  float v;
  if (!hi) {
    const int code = (in.q_lo[row * in.ld_lo + byte] >> (4 * nib)) & 15;
    v = rq_dq_value(code, in.scale_lo[row * p.ngroups + g], in.zero_lo[row * p.ngroups + g]);
  } else {
    const int code = in.q_hi[row * in.ld_hi + byte];
    v = rq_dq_value(code, in.scale_hi[row * p.ngroups + g], in.zero_hi[row * p.ngroups + g]);
  }
  if constexpr (sizeof(Out) == 2)
    y[row * ldy + col] = __float2half_rn(v);
  else
    y[row * ldy + col] = v;
}

// The reference's output-descriptor checks (resq_quant_act_f32_q4q8__ref check_out).
resq_status rq_check_out(const resq_qact_layout &L, int64_t M, const resq_qact *o, const char *what) {
  if (!o) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL output descriptor", what);
  if (M > 0 && L.lo_bytes > 0) {
    if (!o->q_lo || !o->scale_lo || !o->zero_lo)
      return resq_fail(RESQ_ERR_INVALID_ARG, "%s: lo part present but q_lo/scale_lo/zero_lo is NULL", what);
    if (M > 1 && o->ld_lo < L.lo_bytes)
      return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ld_lo=%lld < %lld bytes per row", what, (long long)o->ld_lo,
                       (long long)L.lo_bytes);
  }
  if (M > 0 && L.hi_bytes > 0) {
    if (!o->q_hi || !o->scale_hi || !o->zero_hi)
      return resq_fail(RESQ_ERR_INVALID_ARG, "%s: hi part present but q_hi/scale_hi/zero_hi is NULL", what);
    if (M > 1 && o->ld_hi < L.hi_bytes)
      return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ld_hi=%lld < %lld bytes per row", what, (long long)o->ld_hi,
                       (long long)L.hi_bytes);
  }
  return RESQ_OK;
}

// Parameters + input checks in the reference's order (quantize()).
resq_status rq_qa_check(const resq_qact_params *p, int64_t M, const void *x, int64_t ldx, const resq_qact *out,
                        resq_qact_layout *L, const char *what) {
  resq_status st = resq_qact_check(p, L);
  if (st) return st;
  if (M < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: M=%lld < 0", what, (long long)M);
  if (M > 0 && !x) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL input", what);
  if (M > 1 && ldx < p->K)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldx=%lld < K=%lld", what, (long long)ldx, (long long)p->K);
  st = rq_check_out(*L, M, out, what);
  if (st) return st;
  if (p->mode != RESQ_QMODE_PATH_A)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: path B (upstream bf16 parity) is a reference-only mode (CONTRACT s.4)",
                     what);
  return RESQ_OK;
}

// 16-byte loads / 4- and 8-byte stores: every chunk full (part lengths multiples
// of 8) and every row start aligned.
int rq_qa_side_fast(const rq_qa_plan &pl, int64_t M, const void *x, int64_t ldx, unsigned esize,
                    const resq_qact *o) {
  if (pl.lo % 8 || pl.r % 8) return 0;
  if (!rq_aligned(x, 16) || (M > 1 && (ldx * (int64_t)esize) % 16)) return 0;
  if (pl.lo > 0 && (!rq_aligned(o->q_lo, 4) || (M > 1 && o->ld_lo % 4))) return 0;
  if (pl.r > 0 && (!rq_aligned(o->q_hi, 8) || (M > 1 && o->ld_hi % 8))) return 0;
  return 1;
}

void rq_qa_fill(rq_qa_args *a, const rq_qa_plan &pl, int64_t M) {
  a->M = M;
  a->K = pl.K;
  a->group = pl.group;
  a->r = pl.r;
  a->lo = pl.lo;
  a->ngroups = pl.ngroups;
  a->lo_bpg = pl.lo_bpg;
  a->nlo_ch = pl.nlo_ch;
  a->nch = pl.nch;
  a->log_tg = pl.log_tg;
  a->ipc = pl.ipc;
  a->items = M * pl.ngroups;
  a->maxq_lo = pl.maxq_lo;
  a->maxq_hi = pl.maxq_hi;
  a->clip = pl.clip;
}

template <class In, bool RMS>
resq_status rq_qa_run(const rq_qa_plan &pl, rq_qa_args a, const char *what) {
  const int64_t total = a.items * a.nsides;
  cudaStream_t st = rq_stream();
  for (int64_t i0 = 0; i0 < total; i0 += RQ_MAX_GRID * pl.ipc) {
    int64_t ctas = (total - i0 + pl.ipc - 1) / pl.ipc;
    if (ctas > RQ_MAX_GRID) ctas = RQ_MAX_GRID;
    a.item0 = i0;
    if (pl.nch <= pl.tg)
      rq_qa_kernel<In, RMS, 1><<<(unsigned)ctas, pl.cta, 0, st>>>(a);
    else
      rq_qa_kernel<In, RMS, RQ_QA_CH><<<(unsigned)ctas, pl.cta, 0, st>>>(a);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
  }
  return RESQ_OK;
}

template <class In>
resq_status rq_quant_act(const resq_qact_params *p, int64_t M, const void *x, int64_t ldx, const resq_qact *out,
                         const char *what) {
  resq_qact_layout L;
  resq_status st = rq_qa_check(p, M, x, ldx, out, &L, what);
  if (st) return st;
  if (M == 0) return RESQ_OK;
  rq_qa_plan pl;
  rq_qa_make_plan(p->K, p->group, p->r, p->bits_lo, p->bits_hi, p->clip, &pl);
  rq_qa_args a;
  memset(&a, 0, sizeof a);
  a.side[0].x = x;
  a.side[0].ldx = ldx;
  a.side[0].out = *out;
  a.nsides = 1;
  rq_qa_fill(&a, pl, M);
  a.fast = rq_qa_side_fast(pl, M, x, ldx, sizeof(In), out);
  return rq_qa_run<In, false>(pl, a, what);
}

template <class Out>
resq_status rq_dequant(const resq_qact_params *p, int64_t M, const resq_qact *in, Out *y, int64_t ldy,
                       const char *what) {
  resq_qact_layout L;
  resq_status st = resq_qact_check(p, &L);
  if (st) return st;
  if (M < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: M=%lld < 0", what, (long long)M);
  st = rq_check_out(L, M, in, what);
  if (st) return st;
  if (M > 0 && !y) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL output", what);
  if (M > 1 && ldy < p->K) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldy < K", what);
  if (p->mode != RESQ_QMODE_PATH_A)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: path B is a reference-only mode (CONTRACT s.4)", what);
  if (M == 0) return RESQ_OK;
  rq_qa_plan pl;
  rq_qa_make_plan(p->K, p->group, p->r, p->bits_lo, p->bits_hi, p->clip, &pl);
  const int64_t n = M * p->K;
  const int th = 256;
  cudaStream_t s = rq_stream();
  for (int64_t r0 = 0; r0 < M;) {  // rows per launch so that the grid stays below 2^30 blocks
    int64_t rows = ((RQ_MAX_GRID * th) / p->K);
    if (rows < 1) rows = 1;
    if (rows > M - r0) rows = M - r0;
    resq_qact sub = *in;
    sub.q_lo = in->q_lo ? in->q_lo + r0 * in->ld_lo : NULL;
    sub.q_hi = in->q_hi ? in->q_hi + r0 * in->ld_hi : NULL;
    sub.scale_lo = in->scale_lo ? in->scale_lo + r0 * pl.ngroups : NULL;
    sub.zero_lo = in->zero_lo ? in->zero_lo + r0 * pl.ngroups : NULL;
    sub.scale_hi = in->scale_hi ? in->scale_hi + r0 * pl.ngroups : NULL;
    sub.zero_hi = in->zero_hi ? in->zero_hi + r0 * pl.ngroups : NULL;
    const int64_t cnt = rows * p->K;
    rq_dq_kernel<Out><<<(unsigned)((cnt + th - 1) / th), th, 0, s>>>(pl, rows, sub, y + r0 * ldy, ldy, NULL);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
    r0 += rows;
  }
  (void)n;
  return RESQ_OK;
}

}  // namespace

extern "C" resq_status resq_quant_act_f32_q4q8__cuda(const resq_qact_params *p, int64_t M, const float *x,
                                                     int64_t ldx, const resq_qact *out) {
  return rq_quant_act<float>(p, M, x, ldx, out, "resq_quant_act_f32_q4q8__cuda");
}

extern "C" resq_status resq_quant_act_f16_q4q8__cuda(const resq_qact_params *p, int64_t M, const uint16_t *x,
                                                     int64_t ldx, const resq_qact *out) {
  return rq_quant_act<__half>(p, M, x, ldx, out, "resq_quant_act_f16_q4q8__cuda");
}

extern "C" resq_status resq_dequant_act_q4q8_f32__cuda(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                                       float *y, int64_t ldy) {
  return rq_dequant<float>(p, M, in, y, ldy, "resq_dequant_act_q4q8_f32__cuda");
}

extern "C" resq_status resq_dequant_act_q4q8_f16__cuda(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                                       uint16_t *y, int64_t ldy) {
  return rq_dequant<__half>(p, M, in, reinterpret_cast<__half *>(y), ldy, "resq_dequant_act_q4q8_f16__cuda");
}

extern "C" resq_status resq_rmsnorm_quant_act_f16_q4q8__cuda(const resq_qact_params *p, int64_t M,
                                                             const uint16_t *x, int64_t ldx, const float *gamma,
                                                             float eps, const resq_qact *out) {
  const char *what = "resq_rmsnorm_quant_act_f16_q4q8__cuda";
  resq_qact_layout L;
  resq_status st = rq_qa_check(p, M, x, ldx, out, &L, what);
  if (st) return st;
  if (p->group != p->K)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: only the per-token split (group == K) is fused with RMSNorm", what);
  if (!(eps > 0.0f) || eps > 3.0e38f) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: eps must be > 0 and finite", what);
  if (M == 0) return RESQ_OK;
  rq_qa_plan pl;
  rq_qa_make_plan(p->K, p->group, p->r, p->bits_lo, p->bits_hi, p->clip, &pl);
  rq_qa_args a;
  memset(&a, 0, sizeof a);
  a.side[0].x = x;
  a.side[0].ldx = ldx;
  a.side[0].out = *out;
  a.nsides = 1;
  rq_qa_fill(&a, pl, M);
  a.fast = rq_qa_side_fast(pl, M, x, ldx, 2, out);
  a.gamma = gamma;
  a.eps = eps;
  return rq_qa_run<__half, true>(pl, a, what);
}

extern "C" resq_status resq_kv_cache_append_f16__cuda(const resq_kv_cache *c, int64_t pos, int64_t T,
                                                      const uint16_t *k, int64_t ldk, const uint16_t *v,
                                                      int64_t ldv) {
  const char *what = "resq_kv_cache_append_f16__cuda";
  if (!c) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL cache", what);
  resq_qact_layout L;
  resq_status st = resq_qact_check(&c->p, &L);
  if (st) return st;
  if (T < 0 || pos < 0 || c->capacity < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: pos=%lld, T=%lld, capacity=%lld must be >= 0", what, (long long)pos,
                     (long long)T, (long long)c->capacity);
  if (pos > c->capacity - T)
    return resq_fail(RESQ_ERR_SHAPE, "%s: tokens [%lld, %lld) exceed the capacity %lld", what, (long long)pos,
                     (long long)(pos + T), (long long)c->capacity);
  // the cache arrays hold `capacity` rows: their descriptors are checked for that many
  if ((st = rq_check_out(L, c->capacity, &c->k, what)) || (st = rq_check_out(L, c->capacity, &c->v, what))) return st;
  if (T > 0 && (!k || !v)) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL input", what);
  if (T > 1 && (ldk < c->p.K || ldv < c->p.K))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldk=%lld / ldv=%lld < K=%lld", what, (long long)ldk, (long long)ldv,
                     (long long)c->p.K);
  if (c->p.mode != RESQ_QMODE_PATH_A)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: path B (upstream's V-cache parity mode) is reference-only", what);
  if (T == 0) return RESQ_OK;
  rq_qa_plan pl;
  rq_qa_make_plan(c->p.K, c->p.group, c->p.r, c->p.bits_lo, c->p.bits_hi, c->p.clip, &pl);
  rq_qa_args a;
  memset(&a, 0, sizeof a);
  const resq_qact *src[2] = {&c->k, &c->v};
  const uint16_t *in[2] = {k, v};
  const int64_t ld[2] = {ldk, ldv};
  int fast = 1;
  for (int i = 0; i < 2; i++) {
    resq_qact o = *src[i];
    if (o.q_lo) o.q_lo += pos * o.ld_lo;
    if (o.q_hi) o.q_hi += pos * o.ld_hi;
    if (o.scale_lo) o.scale_lo += pos * pl.ngroups, o.zero_lo += pos * pl.ngroups;
    if (o.scale_hi) o.scale_hi += pos * pl.ngroups, o.zero_hi += pos * pl.ngroups;
    a.side[i].x = in[i];
    a.side[i].ldx = ld[i];
    a.side[i].out = o;
    fast = fast && rq_qa_side_fast(pl, T, in[i], ld[i], 2, &o);
  }
  a.nsides = 2;
  rq_qa_fill(&a, pl, T);
  a.fast = fast;
  return rq_qa_run<__half, false>(pl, a, what);
}
