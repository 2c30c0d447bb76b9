// SPDX-License-Identifier: Apache-2.0
// CUDA mixed INT4/INT8 GEMM: resq_gemm_q4q8_{f16,f32}__cuda, the offline weight
// packing into the kernel's layout and its inverse (resq/cuda_gemm.h).
//
// STATUS: COMPILED ONLY. Built with CUDA 13.0 for sm_80/86/89/90 on a machine
// without a GPU; the kernels have NEVER BEEN RUN. verify/cuda_gemm_host_test.cu
// (runs everywhere) replays both tile configurations on the CPU -- chunk
// assignment, swizzled shared memory, ldmatrix lane addresses, the PTX fragment
// layouts of mma m16n8k64 u4.s4 / m16n8k32 u8.s8, the sm_90 unpacking, segment
// masks, split-K and the epilogue -- and matches the reference bit for bit;
// verify/gemm_q4q8_f16__cuda_test.c checks the real kernels once a GPU exists.
//
// Two kernel instantiations only (decode 16x64 and prefill 128x128): every
// variant (per token, pure INT4, all INT8, grouped o_proj), both output types,
// bias, split-K and every alignment are runtime parameters of the same code, so
// the CUDA build stays short (CI compiles this file for four architectures).
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>

#include "resq/cuda.h"
#include "rq_gemm_kernel.cuh"
#include "rq_host.cuh"

extern "C" __global__ void __launch_bounds__(RqGemmShape<RqGemmDecode>::THREADS)
    rq_gemm_q4q8_decode(const __grid_constant__ RqGemmPlan P) {
  rq_gemm_cta<RqGemmDecode>(P);
}
extern "C" __global__ void __launch_bounds__(RqGemmShape<RqGemmPrefill>::THREADS, 1)
    rq_gemm_q4q8_prefill(const __grid_constant__ RqGemmPlan P) {
  rq_gemm_cta<RqGemmPrefill>(P);
}

// ---- weight packing (host) --------------------------------------------------------------------

static int s4_at(const uint8_t *row, int64_t i) {
  int v = (i & 1) ? row[i / 2] >> 4 : row[i / 2] & 15;
  return v >= 8 ? v - 16 : v;
}

extern "C" resq_status resq_gemm_pack_weight_size__cuda(const resq_qact_params *split, int64_t N, size_t *bytes) {
  resq_qact_layout L;
  resq_status st = resq_gemm_check(split, &L);
  if (st) return st;
  if (N < 0 || !bytes) return resq_fail(RESQ_ERR_INVALID_ARG, "gemm cuda pack size: N < 0 or NULL result");
  resq_qweight_cuda d;
  memset(&d, 0, sizeof d);
  rq_wlayout(split, &L, N, &d);
  *bytes = d.bytes;
  return RESQ_OK;
}

// The checks the reference's GEMM applies to a weight (pointers, strides, finite scales, code
// sums), plus the zero pad nibble this layout relies on.
static resq_status check_canonical(const resq_qact_params *p, const resq_qact_layout *L, const resq_qweight *w,
                                   const char *what) {
  const int64_t lpg = L->lo_per_group, r = p->r, N = w ? w->N : -1;
  if (!w || N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL weight or N < 0", what);
  if (N > 0 && ((lpg > 0 && (!w->q_lo || !w->scale_lo || !w->sum_lo)) || (r > 0 && (!w->q_hi || !w->scale_hi || !w->sum_hi))))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: a weight array of a present part is NULL", what);
  if (N > 1 && ((lpg > 0 && w->ld_lo < L->lo_bytes) || (r > 0 && w->ld_hi < L->hi_bytes)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: a leading dimension is smaller than the packed row", what);
  return RESQ_OK;
}

static resq_status check_canonical_values(const resq_qact_params *p, const resq_qact_layout *L, const resq_qweight *w,
                                          const char *what) {
  const int64_t G = L->ngroups, lpg = L->lo_per_group, r = p->r;
  for (int64_t n = 0; n < w->N; n++) {
    if ((lpg > 0 && !std::isfinite(w->scale_lo[n])) || (r > 0 && !std::isfinite(w->scale_hi[n])))
      return resq_fail(RESQ_ERR_NONFINITE, "%s: weight scale of row %lld is NaN or Inf", what, (long long)n);
    for (int64_t g = 0; g < G; g++) {
      int32_t slo = 0, shi = 0;
      const uint8_t *lo = w->q_lo ? w->q_lo + n * w->ld_lo + g * L->lo_bytes_per_group : NULL;
      for (int64_t i = 0; i < lpg; i++) slo += s4_at(lo, i);
      for (int64_t i = 0; i < r; i++) shi += w->q_hi[n * w->ld_hi + g * r + i];
      if ((lpg > 0 && slo != w->sum_lo[n * G + g]) || (r > 0 && shi != w->sum_hi[n * G + g]))
        return resq_fail(RESQ_ERR_INVALID_ARG, "%s: weight row %lld group %lld: stored code sums do not match the codes",
                         what, (long long)n, (long long)g);
      if (lpg % 2 && (lo[lpg / 2] >> 4) != 0)
        return resq_fail(RESQ_ERR_INVALID_ARG, "%s: weight row %lld: the pad nibble after an odd lo part is not 0",
                         what, (long long)n);
    }
  }
  return RESQ_OK;
}

extern "C" resq_status resq_gemm_pack_weight__cuda(const resq_qact_params *split, const resq_qweight *w, void *buf,
                                                   size_t bytes, resq_qweight_cuda *out) {
  const char *what = "resq_gemm_pack_weight__cuda";
  resq_qact_layout L;
  resq_status st = resq_gemm_check(split, &L);
  if (st) return st;
  if ((st = check_canonical(split, &L, w, what))) return st;
  if (!out || !buf) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL buffer or descriptor", what);
  if (!rq_aligned(buf, 16)) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: buffer not 16-byte aligned", what);
  resq_qweight_cuda d;
  memset(&d, 0, sizeof d);
  rq_wlayout(split, &L, w->N, &d);
  if (bytes < d.bytes)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: buffer of %zu bytes, %zu needed", what, bytes, d.bytes);
  if ((st = check_canonical_values(split, &L, w, what))) return st;
  const int64_t G = L.ngroups, lpg = L.lo_per_group, r = split->r;
  uint8_t *b = (uint8_t *)buf;
  memset(b, 0, d.bytes);
  float *slo = (float *)(b + d.off_scale_lo), *shi = (float *)(b + d.off_scale_hi);
  int32_t *sum = (int32_t *)(b + d.off_sum);
  const int64_t hi0 = d.steps_lo * 32;  // stream byte of the hi part
  for (int64_t n = 0; n < w->N; n++) {
    if (lpg > 0) {
      const uint8_t *src = w->q_lo + n * w->ld_lo;
      for (int64_t k = 0; k < L.lo_bytes; k++) {
        uint8_t v = src[k];
        if (G == 1 && lpg % 2 && k == L.lo_bytes - 1) v &= 15;  // pad nibble (checked 0 above)
        b[rq_w_offset(n, k, d.kblocks)] = v;
      }
      slo[n] = w->scale_lo[n];
      for (int64_t g = 0; g < G; g++) sum[g * d.Np + n] = w->sum_lo[n * G + g];
    }
    if (r > 0) {
      const int8_t *src = w->q_hi + n * w->ld_hi;
      for (int64_t k = 0; k < L.hi_bytes; k++) b[rq_w_offset(n, hi0 + k, d.kblocks)] = (uint8_t)src[k];
      shi[n] = w->scale_hi[n];
      for (int64_t g = 0; g < G; g++) sum[(d.seg_lo + g) * d.Np + n] = w->sum_hi[n * G + g];
    }
  }
  d.magic = RESQ_QWEIGHT_CUDA_MAGIC;
  d.data = buf;
  d.owned = 0;
  *out = d;
  return RESQ_OK;
}

extern "C" resq_status resq_gemm_unpack_weight__cuda(const resq_qweight_cuda *w, const resq_qweight *out) {
  const char *what = "resq_gemm_unpack_weight__cuda";
  if (!w || w->magic != RESQ_QWEIGHT_CUDA_MAGIC || !w->data)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: not a packed weight", what);
  resq_qact_params p = resq_qact_default(w->K);
  p.group = w->group;
  p.r = w->r;
  p.bits_lo = w->bits_lo;
  p.bits_hi = w->bits_hi;
  resq_qact_layout L;
  resq_status st = resq_gemm_check(&p, &L);
  if (st) return st;
  if ((st = check_canonical(&p, &L, out, what))) return st;
  if (out->N != w->N) return resq_fail(RESQ_ERR_SHAPE, "%s: N %lld != packed N %lld", what, (long long)out->N, (long long)w->N);
  const int64_t G = L.ngroups, lpg = L.lo_per_group, r = p.r;
  const uint8_t *b = (const uint8_t *)w->data;
  const float *slo = (const float *)(b + w->off_scale_lo), *shi = (const float *)(b + w->off_scale_hi);
  const int32_t *sum = (const int32_t *)(b + w->off_sum);
  const int64_t hi0 = w->steps_lo * 32;
  for (int64_t n = 0; n < w->N; n++) {
    if (lpg > 0) {
      for (int64_t k = 0; k < L.lo_bytes; k++) out->q_lo[n * out->ld_lo + k] = b[rq_w_offset(n, k, w->kblocks)];
      out->scale_lo[n] = slo[n];
      for (int64_t g = 0; g < G; g++) out->sum_lo[n * G + g] = sum[g * w->Np + n];
    }
    if (r > 0) {
      for (int64_t k = 0; k < L.hi_bytes; k++) out->q_hi[n * out->ld_hi + k] = (int8_t)b[rq_w_offset(n, hi0 + k, w->kblocks)];
      out->scale_hi[n] = shi[n];
      for (int64_t g = 0; g < G; g++) out->sum_hi[n * G + g] = sum[(w->seg_lo + g) * w->Np + n];
    }
  }
  return RESQ_OK;
}

extern "C" resq_status resq_gemm_upload_weight__cuda(const resq_qact_params *split, const resq_qweight *w,
                                                     resq_qweight_cuda *out) {
  size_t bytes = 0;
  resq_status st = resq_gemm_pack_weight_size__cuda(split, w ? w->N : 0, &bytes);
  if (st) return st;
  if (!out) return resq_fail(RESQ_ERR_INVALID_ARG, "resq_gemm_upload_weight__cuda: NULL descriptor");
  void *host = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!host) return resq_fail(RESQ_ERR_NOMEM, "resq_gemm_upload_weight__cuda: %zu bytes", bytes);
  resq_qweight_cuda d;
  st = resq_gemm_pack_weight__cuda(split, w, host, bytes, &d);
  if (!st) {
    void *dev = NULL;
    cudaError_t e = cudaMalloc(&dev, d.bytes);
    if (e == cudaSuccess) e = cudaMemcpy(dev, host, d.bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
      if (dev) cudaFree(dev);
      st = rq_cuda_fail(e, "resq_gemm_upload_weight__cuda");
    } else {
      d.data = dev;
      d.owned = 1;
      *out = d;
    }
  }
  free(host);
  return st;
}

extern "C" void resq_gemm_free_weight__cuda(resq_qweight_cuda *w) {
  if (!w) return;
  if (w->owned && w->data) cudaFree(w->data);
  memset(w, 0, sizeof *w);
}

extern "C" size_t resq_gemm_workspace_size__cuda(const resq_qweight_cuda *w, int64_t M) {
  if (!w || w->magic != RESQ_QWEIGHT_CUDA_MAGIC || M <= 0) return 0;
  return (size_t)rq_ws_bytes(w, M);
}

// ---- the GEMM ---------------------------------------------------------------------------------

// Argument checks in the reference's order and with its status codes (check_inputs in
// ref/src/resq_gemm_q4q8_f16__ref.c), on pointers and sizes only.
static resq_status check_args(const resq_qact_params *p, const resq_qact_layout *L, int64_t M, const resq_qact *x,
                              const resq_qweight_cuda *w, const void *y, int64_t ldy, const char *what) {
  const int64_t lpg = L->lo_per_group, r = p->r;
  if (M < 0 || !x || !w) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: bad M, activations or weight", what);
  if (w->magic != RESQ_QWEIGHT_CUDA_MAGIC)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: the weight was not packed by resq_gemm_pack_weight__cuda", what);
  if (w->K != p->K || w->group != p->group || w->r != p->r || w->bits_lo != p->bits_lo || w->bits_hi != p->bits_hi)
    return resq_fail(RESQ_ERR_SHAPE, "%s: the weight was packed for K=%lld group=%lld r=%lld, not K=%lld group=%lld r=%lld",
                     what, (long long)w->K, (long long)w->group, (long long)w->r, (long long)p->K, (long long)p->group,
                     (long long)p->r);
  const int64_t N = w->N;
  if (M > 0 && N > 0 && !y) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL output", what);
  if (M > 1 && ldy < N) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldy < N", what);
  if (lpg > 0 && M > 0 && (!x->q_lo || !x->scale_lo || !x->zero_lo))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: lo part present but a lo array is NULL", what);
  if (r > 0 && M > 0 && (!x->q_hi || !x->scale_hi || !x->zero_hi))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: hi part present but a hi array is NULL", what);
  if (N > 0 && !w->data) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: packed weight without data", what);
  if (N > 0 && !rq_aligned(w->data, 16))  // cp.async.cg reads 16-byte chunks of it
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: packed weight data not 16-byte aligned", what);
  if (M > 1 && ((lpg > 0 && x->ld_lo < L->lo_bytes) || (r > 0 && x->ld_hi < L->hi_bytes)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: a leading dimension is smaller than the packed row", what);
  return RESQ_OK;
}

template <class C>
static resq_status launch(void (*kernel)(const RqGemmPlan), const RqGemmPlan &P, const char *what) {
  typedef RqGemmShape<C> S;
  // the opt-in above 48 KiB of dynamic shared memory, once per device (devices 0..63)
  static unsigned long long configured = 0;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  const unsigned long long bit = dev < 64 ? 1ull << dev : 0ull;
  if (!(configured & bit)) {
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)S::SMEM);
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
    configured |= bit;
  }
  dim3 grid((unsigned)(P.tiles_m * P.tiles_n), (unsigned)P.splits);
  kernel<<<grid, S::THREADS, S::SMEM, rq_stream()>>>(P);
  e = cudaGetLastError();
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}

static resq_status gemm(const resq_qact_params *p, int64_t M, const resq_qact *x, const resq_qweight_cuda *w,
                        const float *bias, void *y, int64_t ldy, int out_f32, const resq_gemm_cuda_opts *opts,
                        const char *what) {
  resq_qact_layout L;
  resq_status st = resq_gemm_check(p, &L);
  if (st) return st;
  if ((st = check_args(p, &L, M, x, w, y, ldy, what))) return st;
  if (M == 0 || w->N == 0) return RESQ_OK;
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  RqGemmPlan P;
  int cfg = 0;
  if ((st = rq_gemm_make_plan(p, &L, M, x, w, bias, y, ldy, out_f32, opts, sms, &cfg, &P))) return st;
  if (cfg == RqGemmDecode::ID) return launch<RqGemmDecode>(rq_gemm_q4q8_decode, P, what);
  return launch<RqGemmPrefill>(rq_gemm_q4q8_prefill, P, what);
}

extern "C" resq_status resq_gemm_q4q8_f16__cuda(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                                const resq_qweight_cuda *w, const float *bias, uint16_t *y,
                                                int64_t ldy, const resq_gemm_cuda_opts *opts) {
  return gemm(split, M, x, w, bias, y, ldy, 0, opts, "resq_gemm_q4q8_f16__cuda");
}

extern "C" resq_status resq_gemm_q4q8_f32__cuda(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                                const resq_qweight_cuda *w, const float *bias, float *y, int64_t ldy,
                                                const resq_gemm_cuda_opts *opts) {
  return gemm(split, M, x, w, bias, y, ldy, 1, opts, "resq_gemm_q4q8_f32__cuda");
}
