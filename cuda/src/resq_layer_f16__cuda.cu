// SPDX-License-Identifier: Apache-2.0
// The decoder layer's shared ops on the GPU (RMSNorm, RoPE, attention, SiLU*mul,
// residual adds, the K8 product) and the FP16 form (resq/cuda_layer.h).
//
// STATUS: COMPILED ONLY (CUDA 13.0, sm_80/86/89/90, no GPU here); never run.
// verify/cuda_layer_test.c checks each op against the reference on a GPU.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#include <mutex>
#include <vector>

#include "resq/cuda.h"
#include "rq_host.cuh"
#include "rq_layer.cuh"
#include "rq_lib.cuh"
#include "rq_quant.cuh"
#include "rq_reduce.cuh"
#include "rq_silu.cuh"

namespace {

unsigned blocks_for(int64_t n, int th) { return (unsigned)((n + th - 1) / th); }
resq_status launch_ok(const char *what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}

// ---- RMSNorm (f16 in, f16 out; the FP16 form) ----------------------------------------------
// One CTA of TG threads per row; the sum of squares in the quantizer's order for r = 0
// (chunks of 8 channels, chunk j to thread j mod TG), then the reference's fp32 steps.
__global__ void rq_rmsnorm_kernel(const __half *x, int64_t d, int64_t nch, int log_tg, const float *gamma, float eps,
                                  __half *y) {
  __shared__ double dred[32];
  const int64_t row = blockIdx.x;
  const int t = threadIdx.x, TG = 1 << log_tg;
  const __half *xr = x + row * d;
  double ss = 0.0;
  for (int64_t j = t; j < nch; j += TG) {
    const int64_t e0 = 8 * j, cnt = d - e0 < 8 ? d - e0 : 8;
    for (int64_t k = 0; k < cnt; k++) ss = rq_rms_add(ss, rq_rms_sq(__half2float(xr[e0 + k])));
  }
  ss = rq_reduce_ss(ss, log_tg, t, dred);
  const float rinv = rq_rms_rinv(ss, d, eps);
  for (int64_t i = t; i < d; i += TG) {
    float v = __fmul_rn(__half2float(xr[i]), rinv);
    if (gamma) v = __fmul_rn(v, gamma[i]);
    y[row * d + i] = __float2half_rn(v);
  }
}

__global__ void rq_residual_kernel(int64_t n, const __half *a, const __half *b, __half *dst) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2half_rn(__fadd_rn(__half2float(a[i]), __half2float(b[i])));
}

__global__ void rq_widen_kernel(int64_t n, const __half *x, float *y) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __half2float(x[i]);
}

__global__ void rq_narrow_kernel(int64_t n, const float *x, __half *y) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2half_rn(x[i]);
}

__global__ void rq_silu_mul_kernel(int64_t n, const __half *g, const __half *u, const float *lut, float *z, __half *z16) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = __fmul_rn(__ldg(lut + __half_as_ushort(g[i])), __half2float(u[i]));
  if (z) z[i] = v;
  if (z16) z16[i] = __float2half_rn(v);
}

// dst[row][j] = (float) sum_{i ascending} (double)src[row][i] * (double)k8[i][j]
__global__ void rq_k8_kernel(int64_t hd, const float *src, const float *k8, float *dst) {
  extern __shared__ float rowbuf[];
  const int64_t row = blockIdx.x;
  for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) rowbuf[i] = src[row * hd + i];
  __syncthreads();
  for (int64_t j = threadIdx.x; j < hd; j += blockDim.x) {
    double acc = 0.0;
    for (int64_t i = 0; i < hd; i++) acc = __dadd_rn(acc, __dmul_rn((double)rowbuf[i], (double)k8[i * hd + j]));
    dst[row * hd + j] = __double2float_rn(acc);
  }
}

// ---- RoPE -------------------------------------------------------------------------------------
// x[t][h][i], x[t][h][i + hd/2] rotated by the angle of (pos0 + t, i): cs[2*(p*half + i)] = cos,
// +1 = sin, fp32 products and one subtraction/addition each (no FMA), as the reference.
__global__ void rq_rope_kernel(int64_t T, int64_t nheads, int64_t hd, int64_t pos0, const float *cs, float *x) {
  const int64_t half = hd / 2;
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= T * nheads * half) return;
  const int64_t t = idx / (nheads * half), rem = idx - t * nheads * half, h = rem / half, i = rem - h * half;
  const float c = cs[2 * ((pos0 + t) * half + i)], s = cs[2 * ((pos0 + t) * half + i) + 1];
  float *v = x + t * nheads * hd + h * hd;
  const float a = v[i], b = v[i + half];
  v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
  v[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
}

// The cos/sin table of positions [0, P) for (theta, hd), computed on the host with the
// reference's expressions (resq_rope_f32__ref) and cached per device.
struct rope_cache {
  double theta = 0;
  int64_t hd = 0, P = 0;
  float *dev = nullptr;
};
std::mutex g_rope_mu;
rope_cache g_rope[RQ_MAX_DEVICES];

const float *rope_table(double theta, int64_t hd, int64_t P, resq_status *st) {
  int dev = 0;
  if ((*st = rq_device_slot(&dev, "rope table")) != RESQ_OK) return nullptr;
  std::lock_guard<std::mutex> lock(g_rope_mu);
  rope_cache &c = g_rope[dev];
  if (c.dev && c.theta == theta && c.hd == hd && c.P >= P) return c.dev;
  // grow geometrically for the same (theta, hd): decode steps add one position at a time
  const int64_t half = hd / 2;
  int64_t Pn = P;
  if (c.dev && c.theta == theta && c.hd == hd && 2 * c.P > Pn) Pn = 2 * c.P;
  std::vector<float> h((size_t)(2 * Pn * half));
  for (int64_t i = 0; i < half; i++) {
    const double inv_freq = pow(theta, -2.0 * (double)i / (double)hd);
    for (int64_t p = 0; p < Pn; p++) {
      const double ang = (double)p * inv_freq;
      h[(size_t)(2 * (p * half + i))] = (float)cos(ang);
      h[(size_t)(2 * (p * half + i) + 1)] = (float)sin(ang);
    }
  }
  float *d = nullptr;
  cudaError_t e = cudaMalloc(&d, h.size() * sizeof(float));
  if (e == cudaSuccess) e = cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    if (d) cudaFree(d);
    *st = rq_cuda_fail(e, "rope table");
    return nullptr;
  }
  if (c.dev) {
    cudaDeviceSynchronize();  // the old table may still be read by queued kernels
    cudaFree(c.dev);
  }
  c.dev = d, c.theta = theta, c.hd = hd, c.P = Pn;
  *st = RESQ_OK;
  return d;
}

// ---- attention ------------------------------------------------------------------------------
// EXACT: one CTA per (head h, query t); p[] in shared memory (t+1 doubles).
__global__ void rq_attn_exact_kernel(int64_t T, int64_t H, int64_t G, int64_t hd, double scale, const float *q,
                                     const float *k, const float *v, float *o) {
  extern __shared__ double p[];
  __shared__ double red[256];
  __shared__ double zsum;
  const int64_t h = blockIdx.x % H, t = blockIdx.x / H, g = h / (H / G);
  const float *qt = q + t * H * hd + h * hd;
  // scores s_j = (sum_i q_i k_ji) * scale, i ascending, one key per thread
  double mx = -INFINITY;
  for (int64_t j = threadIdx.x; j <= t; j += blockDim.x) {
    const float *kj = k + j * G * hd + g * hd;
    double s = 0.0;
    for (int64_t i = 0; i < hd; i++) s = __dadd_rn(s, __dmul_rn((double)qt[i], (double)kj[i]));
    p[j] = __dmul_rn(s, scale);
    mx = p[j] > mx ? p[j] : mx;
  }
  red[threadIdx.x] = mx;  // the max is exact in any order
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s && red[threadIdx.x + s] > red[threadIdx.x]) red[threadIdx.x] = red[threadIdx.x + s];
    __syncthreads();
  }
  mx = red[0];
  for (int64_t j = threadIdx.x; j <= t; j += blockDim.x) p[j] = exp(__dsub_rn(p[j], mx));
  __syncthreads();
  if (threadIdx.x == 0) {  // z = sum_j p_j, j ascending (the reference's order)
    double z = 0.0;
    for (int64_t j = 0; j <= t; j++) z = __dadd_rn(z, p[j]);
    zsum = z;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {  // acc_i = sum_j p_j v_ji, j ascending
    double acc = 0.0;
    for (int64_t j = 0; j <= t; j++) acc = __dadd_rn(acc, __dmul_rn(p[j], (double)v[j * G * hd + g * hd + i]));
    o[t * H * hd + h * hd + i] = __double2float_rn(__ddiv_rn(acc, zsum));
  }
}

// FAST: one warp per (head, query), lanes own hd/32 (<= 8) dims; online softmax in fp32.
#define RQ_ATTN_MAXD 8
__global__ void rq_attn_fast_kernel(int64_t T, int64_t H, int64_t G, int64_t hd, float scale, const float *q,
                                    const float *k, const float *v, float *o) {
  const int64_t w = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (w >= T * H) return;
  const int lane = threadIdx.x & 31;
  const int64_t h = w % H, t = w / H, g = h / (H / G);
  const int nd = (int)((hd + 31) / 32);
  float qv[RQ_ATTN_MAXD], acc[RQ_ATTN_MAXD];
#pragma unroll
  for (int e = 0; e < RQ_ATTN_MAXD; e++) {
    const int64_t i = lane + 32 * e;
    qv[e] = e < nd && i < hd ? q[t * H * hd + h * hd + i] : 0.0f;
    acc[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = 0; j <= t; j++) {
    const float *kj = k + j * G * hd + g * hd, *vj = v + j * G * hd + g * hd;
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < RQ_ATTN_MAXD; e++) {
      const int64_t i = lane + 32 * e;
      if (e < nd && i < hd) s += qv[e] * kj[i];
    }
    for (int x = 16; x > 0; x >>= 1) s += __shfl_xor_sync(0xffffffffu, s, x);
    s *= scale;
    const float mn = s > m ? s : m, corr = expf(m - mn), pj = expf(s - mn);
    l = l * corr + pj;
#pragma unroll
    for (int e = 0; e < RQ_ATTN_MAXD; e++) {
      const int64_t i = lane + 32 * e;
      if (e < nd && i < hd) acc[e] = acc[e] * corr + pj * vj[i];
    }
    m = mn;
  }
#pragma unroll
  for (int e = 0; e < RQ_ATTN_MAXD; e++) {
    const int64_t i = lane + 32 * e;
    if (e < nd && i < hd) o[t * H * hd + h * hd + i] = acc[e] / l;
  }
}

}  // namespace

// ---- rq_layer.cuh launchers ---------------------------------------------------------------
resq_status rq_rmsnorm_f16(int64_t T, int64_t d, const uint16_t *x, const float *gamma, float eps, uint16_t *y16) {
  if (T == 0) return RESQ_OK;
  rq_qa_plan pl;
  rq_qa_make_plan(d, d, 0, 4, 8, 1.0f, &pl);
  rq_rmsnorm_kernel<<<(unsigned)T, pl.tg, 0, rq_stream()>>>(reinterpret_cast<const __half *>(x), d, pl.nch, pl.log_tg,
                                                           gamma, eps, reinterpret_cast<__half *>(y16));
  return launch_ok("rmsnorm (cuda)");
}

resq_status rq_residual_f16(int64_t n, const uint16_t *a16, const uint16_t *b16, uint16_t *dst) {
  if (n == 0) return RESQ_OK;
  rq_residual_kernel<<<blocks_for(n, 256), 256, 0, rq_stream()>>>(n, reinterpret_cast<const __half *>(a16),
                                                                  reinterpret_cast<const __half *>(b16),
                                                                  reinterpret_cast<__half *>(dst));
  return launch_ok("residual (cuda)");
}

resq_status rq_widen(int64_t n, const uint16_t *x16, float *y) {
  if (n == 0) return RESQ_OK;
  rq_widen_kernel<<<blocks_for(n, 256), 256, 0, rq_stream()>>>(n, reinterpret_cast<const __half *>(x16), y);
  return launch_ok("widen (cuda)");
}

resq_status rq_narrow(int64_t n, const float *x, uint16_t *y16) {
  if (n == 0) return RESQ_OK;
  rq_narrow_kernel<<<blocks_for(n, 256), 256, 0, rq_stream()>>>(n, x, reinterpret_cast<__half *>(y16));
  return launch_ok("narrow (cuda)");
}

resq_status rq_silu_mul(int64_t T, int64_t I, const uint16_t *g, const uint16_t *u, float *z, uint16_t *z16) {
  if (T * I == 0) return RESQ_OK;
  resq_status st;
  const float *lut = rq_silu_table(&st);
  if (!lut) return st;
  rq_silu_mul_kernel<<<blocks_for(T * I, 256), 256, 0, rq_stream()>>>(
      T * I, reinterpret_cast<const __half *>(g), reinterpret_cast<const __half *>(u), lut, z,
      reinterpret_cast<__half *>(z16));
  return launch_ok("silu*mul (cuda)");
}

resq_status rq_k8_rotate(int64_t rows, int64_t hd, const float *src, const float *k8, float *dst) {
  if (rows == 0) return RESQ_OK;
  const int th = hd < 256 ? (int)((hd + 31) / 32 * 32) : 256;
  rq_k8_kernel<<<(unsigned)rows, th, (size_t)hd * sizeof(float), rq_stream()>>>(hd, src, k8, dst);
  return launch_ok("k8 rotation (cuda)");
}

// ---- public shared ops ------------------------------------------------------------------------
extern "C" resq_status resq_rope_f32__cuda(int64_t T, int64_t nheads, int64_t hd, double theta, int64_t pos0,
                                           float *x) {
  if (T < 0 || nheads < 1 || hd < 2 || hd % 2 || pos0 < 0 || (T > 0 && !x))
    return resq_fail(RESQ_ERR_INVALID_ARG, "rope (cuda): bad arguments");
  if (T == 0) return RESQ_OK;
  resq_status st;
  const float *cs = rope_table(theta, hd, pos0 + T, &st);
  if (!cs) return st;
  rq_rope_kernel<<<blocks_for(T * nheads * (hd / 2), 256), 256, 0, rq_stream()>>>(T, nheads, hd, pos0, cs, x);
  return launch_ok("rope (cuda)");
}

extern "C" resq_status resq_attention_f32__cuda(int64_t T, int64_t H, int64_t G, int64_t hd, const float *q,
                                                const float *k, const float *v, float *o, resq_attn_mode mode) {
  const char *what = "attention (cuda)";
  if (T < 0 || H < 1 || G < 1 || H % G || hd < 1 || (T > 0 && (!q || !k || !v || !o)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: bad arguments", what);
  if (mode != RESQ_ATTN_EXACT && mode != RESQ_ATTN_FAST) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: mode %d", what, (int)mode);
  if (T == 0) return RESQ_OK;
  cudaStream_t s = rq_stream();
  if (mode == RESQ_ATTN_FAST) {
    if (hd > 32 * RQ_ATTN_MAXD)
      return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: the fast mode supports hd <= %d", what, 32 * RQ_ATTN_MAXD);
    rq_attn_fast_kernel<<<blocks_for(T * H, 8), 256, 0, s>>>(T, H, G, hd, (float)(1.0 / sqrt((double)hd)), q, k, v, o);
    return launch_ok(what);
  }
  const size_t smem = (size_t)(T + 8) * sizeof(double);
  if (smem > 48 * 1024) {
    int dev = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
    if (smem + 2200 > (size_t)optin)
      return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: T=%lld needs %zu bytes of shared memory in the exact mode", what,
                       (long long)T, smem);
    e = cudaFuncSetAttribute(rq_attn_exact_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return rq_cuda_fail(e, what);
  }
  const double scale = 1.0 / sqrt((double)hd);  // host: the reference's expression
  if (T * H > 0x7fffffff) return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: T*H=%lld CTAs exceed the grid", what, (long long)(T * H));
  rq_attn_exact_kernel<<<(unsigned)(T * H), 256, smem, s>>>(T, H, G, hd, scale, q, k, v, o);
  return launch_ok(what);
}

// ---- FP16 form ------------------------------------------------------------------------------
namespace {
struct fp16_ws {
  uint16_t *a16, *q16, *k16, *v16, *o16, *t16, *h1, *g16, *u16, *z16;
  float *q, *k, *v, *o;
};
size_t fp16_layout(const resq_layer_config *c, int64_t T, char *base, size_t cap, fp16_ws *w) {
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I;
  rq_carve cv = {base ? base : (char *)256, base ? cap : (size_t)-1 / 2, 0};
  fp16_ws x;
  x.a16 = (uint16_t *)cv.take((size_t)(T * d) * 2);
  x.q16 = (uint16_t *)cv.take((size_t)(T * qd) * 2);
  x.k16 = (uint16_t *)cv.take((size_t)(T * kd) * 2);
  x.v16 = (uint16_t *)cv.take((size_t)(T * kd) * 2);
  x.o16 = (uint16_t *)cv.take((size_t)(T * qd) * 2);
  x.t16 = (uint16_t *)cv.take((size_t)(T * d) * 2);
  x.h1 = (uint16_t *)cv.take((size_t)(T * d) * 2);
  x.g16 = (uint16_t *)cv.take((size_t)(T * I) * 2);
  x.u16 = (uint16_t *)cv.take((size_t)(T * I) * 2);
  x.z16 = (uint16_t *)cv.take((size_t)(T * I) * 2);
  x.q = (float *)cv.take((size_t)(T * qd) * 4);
  x.k = (float *)cv.take((size_t)(T * kd) * 4);
  x.v = (float *)cv.take((size_t)(T * kd) * 4);
  x.o = (float *)cv.take((size_t)(T * qd) * 4);
  if (w) *w = x;
  return cv.used + 256;
}

resq_status tap16(uint16_t *dst, const uint16_t *src, int64_t n) {
  if (!dst || n == 0) return RESQ_OK;
  cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * 2, cudaMemcpyDeviceToDevice, rq_stream());
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, "layer tap");
}
resq_status tap32(float *dst, const float *src, int64_t n) {
  if (!dst || n == 0) return RESQ_OK;
  cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, rq_stream());
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, "layer tap");
}
}  // namespace

extern "C" size_t resq_layer_fp16_workspace_size__cuda(const resq_layer_config *c, int64_t T) {
  if (resq_layer_config_check(c) || T < 0) {
    resq_clear_error();
    return 0;
  }
  return fp16_layout(c, T, nullptr, 0, nullptr);
}

extern "C" resq_status resq_layer_fp16_forward__cuda(const resq_layer_config *c, const resq_layer_fp16 *w, int64_t T,
                                                     const uint16_t *h_in, uint16_t *h_out, resq_attn_mode attn,
                                                     const resq_layer_fp16_taps_cuda *taps, void *work,
                                                     size_t work_size) {
  const char *what = "resq_layer_fp16_forward__cuda";
  resq_status st = resq_layer_config_check(c);
  if (st) return st;
  if (T < 0 || !w || (T > 0 && (!h_in || !h_out))) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: bad arguments", what);
  if (!w->wq || !w->wk || !w->wv || !w->wo || !w->wg || !w->wu || !w->wd || !w->ln1 || !w->ln2)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: a weight is NULL", what);
  const size_t need = resq_layer_fp16_workspace_size__cuda(c, T);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: workspace of %zu bytes, %zu needed", what, work_size, need);
  if (T == 0) return RESQ_OK;
  const resq_layer_fp16_taps_cuda none = {};
  const resq_layer_fp16_taps_cuda *tp = taps ? taps : &none;
  const int64_t d = c->d, qd = c->H * c->hd, kd = c->G * c->hd, I = c->I, hd = c->hd;
  fp16_ws b;
  fp16_layout(c, T, (char *)work, work_size, &b);
  const resq_cublas_compute cc = RESQ_CUBLAS_F32;
#define RQ_TRY(x) \
  if ((st = (x))) return st
  /* attention block */
  RQ_TRY(rq_rmsnorm_f16(T, d, h_in, w->ln1, c->eps, b.a16));
  RQ_TRY(tap16(tp->a_attn, b.a16, T * d));
  RQ_TRY(resq_gemm_f16__cublas(T, qd, d, b.a16, d, w->wq, d, b.q16, qd, cc));
  RQ_TRY(resq_gemm_f16__cublas(T, kd, d, b.a16, d, w->wk, d, b.k16, kd, cc));
  RQ_TRY(resq_gemm_f16__cublas(T, kd, d, b.a16, d, w->wv, d, b.v16, kd, cc));
  RQ_TRY(tap16(tp->q, b.q16, T * qd));
  RQ_TRY(tap16(tp->k, b.k16, T * kd));
  RQ_TRY(tap16(tp->v, b.v16, T * kd));
  RQ_TRY(rq_widen(T * qd, b.q16, b.q));
  RQ_TRY(rq_widen(T * kd, b.k16, b.k));
  RQ_TRY(rq_widen(T * kd, b.v16, b.v));
  RQ_TRY(resq_rope_f32__cuda(T, c->H, hd, c->rope_theta, 0, b.q));
  RQ_TRY(resq_rope_f32__cuda(T, c->G, hd, c->rope_theta, 0, b.k));
  RQ_TRY(tap32(tp->q_rot, b.q, T * qd));
  RQ_TRY(tap32(tp->k_rot, b.k, T * kd));
  RQ_TRY(resq_attention_f32__cuda(T, c->H, c->G, hd, b.q, b.k, b.v, b.o, attn));
  RQ_TRY(rq_narrow(T * qd, b.o, b.o16));
  RQ_TRY(tap16(tp->o, b.o16, T * qd));
  RQ_TRY(resq_gemm_f16__cublas(T, d, qd, b.o16, qd, w->wo, qd, b.t16, d, cc));
  RQ_TRY(tap16(tp->t_o, b.t16, T * d));
  RQ_TRY(rq_residual_f16(T * d, h_in, b.t16, b.h1));
  RQ_TRY(tap16(tp->h_mid, b.h1, T * d));
  /* MLP block */
  RQ_TRY(rq_rmsnorm_f16(T, d, b.h1, w->ln2, c->eps, b.a16));
  RQ_TRY(tap16(tp->a_mlp, b.a16, T * d));
  RQ_TRY(resq_gemm_f16__cublas(T, I, d, b.a16, d, w->wg, d, b.g16, I, cc));
  RQ_TRY(resq_gemm_f16__cublas(T, I, d, b.a16, d, w->wu, d, b.u16, I, cc));
  RQ_TRY(tap16(tp->g, b.g16, T * I));
  RQ_TRY(tap16(tp->u, b.u16, T * I));
  RQ_TRY(rq_silu_mul(T, I, b.g16, b.u16, nullptr, b.z16));
  RQ_TRY(tap16(tp->z, b.z16, T * I));
  RQ_TRY(resq_gemm_f16__cublas(T, d, I, b.z16, I, w->wd, I, b.t16, d, cc));
  RQ_TRY(tap16(tp->t_down, b.t16, T * d));
  RQ_TRY(rq_residual_f16(T * d, b.h1, b.t16, h_out));
#undef RQ_TRY
  return RESQ_OK;
}
