// SPDX-License-Identifier: Apache-2.0
// CUDA GPTQ (ref/CONTRACT.md section 12; resq/cuda.h "GPTQ"), double throughout
// like the reference:
//   Hessian          cublasDsyrk on sqrt(2/n)-scaled double tokens, mirrored
//   factorizations   cusolverDnDpotrf (H) -> cusolverDnDpotri (H^-1) -> cusolverDnDpotrf
//                    (upper factor U, H^-1 = U^T U), with the reference's single retry
//   block loop       one custom kernel for the in-block column loop (a warp per row of
//                    W, the block's columns in registers, the error broadcast by
//                    shuffles: the reference's exact sequence of IEEE operations on a
//                    row), cublasDgemm for the lazy update of the later columns
//   quantizer scales one kernel on the original W (section 10, the MSE search too)
//
// STATUS: COMPILED ONLY (CUDA 13.0, sm_80/86/89/90, no GPU here); never run.
// verify/cuda_gptq_test.c compares with resq_gptq_f64__ref by the GPTQ objective
// and code agreement once a GPU is available.
//
// What differs from the reference, and why it is small: cuSOLVER's Cholesky and
// inverse and cuBLAS's DGEMM/DSYRK round in other orders (and use FMA), so U and
// the lazily updated columns differ from the reference's by ~cond(H)*1e-16
// relative; everything inside a block is the reference's own operation
// sequence. A code can only differ where a value sits within that distance of a
// rounding boundary of its quantizer.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cuda.h"
#include "rq_host.cuh"
#include "rq_lib.cuh"

#define RQ_GPTQ_B 128    // columns per block of the loop (the result does not depend on it)
#define RQ_GPTQ_WPB 4    // warps (rows of W) per CTA of the block kernel

namespace {

unsigned blocks_for(int64_t n, int th) { return (unsigned)((n + th - 1) / th); }

resq_status launch_ok(const char *what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}

// ---- section-10 quantizer on the device (the reference's fp32 operations) --------------------
__device__ __forceinline__ int rq_wq_code(float w, float s, int bits) {
  const float maxq = (float)((1 << (bits - 1)) - 1);
  float q = rintf(__fdiv_rn(w, s));
  if (q < -maxq - 1.0f) q = -maxq - 1.0f;
  if (q > maxq) q = maxq;
  return (int)q;
}

// resq_wquant_scale_f32__ref of n values at w (stride 1) for one warp. The max
// of |w| is exact in any order; the MSE search's double error sums are added in
// a per-lane-then-butterfly order and use the device pow, so near-ties between
// two clip ratios (relative differences ~1e-16) can resolve differently.
__device__ float rq_wq_scale_warp(const float *w, int64_t n, int bits, int mse) {
  const int lane = threadIdx.x & 31;
  const float maxq = (float)((1 << (bits - 1)) - 1);
  float a = 0.0f;
  for (int64_t j = lane; j < n; j += 32) {
    float v = fabsf(w[j]);
    a = v > a ? v : a;
  }
  for (int k = 16; k > 0; k >>= 1) {
    float o = __shfl_xor_sync(0xffffffffu, a, k);
    a = o > a ? o : a;
  }
  if (a < 1e-5f) a = 1e-5f;
  float s = __fdiv_rn(a, maxq);
  if (!mse) return s;
  double best = INFINITY;
  for (int i = 0; i < 80; i++) {
    const float p = __double2float_rn(__dsub_rn(1.0, __ddiv_rn((double)i, 100.0)));
    const float s1 = __fdiv_rn(__fmul_rn(p, a), maxq);
    double err = 0.0;
    for (int64_t j = lane; j < n; j += 32) {
      const float q = __fmul_rn(s1, (float)rq_wq_code(w[j], s1, bits));
      err = __dadd_rn(err, pow(fabs((double)__fsub_rn(q, w[j])), 2.4));
    }
    for (int k = 16; k > 0; k >>= 1) err = __dadd_rn(err, __shfl_xor_sync(0xffffffffu, err, k));
    if (err < best) {
      best = err;
      s = s1;
    }
  }
  return s;
}

// ---- kernels -----------------------------------------------------------------------------------
template <class In>
__global__ void rq_scaled_kernel(const In *x, int64_t ldx, int64_t T, int64_t K, double c, double *out) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= T * K) return;
  const int64_t t = idx / K, i = idx - t * K;
  double v;
  if constexpr (sizeof(In) == 2)
    v = (double)__half2float(x[t * ldx + i]);
  else
    v = (double)x[t * ldx + i];
  out[idx] = __dmul_rn(c, v);  // the reference's X_i = c * (double)x_i
}

__global__ void rq_scale_matrix_kernel(double *H, int64_t n, double f) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < n) H[idx] = __dmul_rn(H[idx], f);
}

// row-major: lower triangle <- upper triangle (H[j][i] = H[i][j], j > i)
__global__ void rq_mirror_kernel(double *H, int64_t K) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= K * K) return;
  const int64_t i = idx / K, j = idx - i * K;
  if (j < i) H[i * K + j] = H[j * K + i];
}

// A[a][b] = damped, permuted H (both triangles); the reference's h_low and step 5
__global__ void rq_build_kernel(const double *H, int64_t K, const int64_t *perm, const uint8_t *dead, double damp,
                                double *A) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= K * K) return;
  const int64_t a = idx / K, b = idx - a * K, oa = perm[a], ob = perm[b];
  double v;
  if (a == b)
    v = __dadd_rn(dead[oa] ? 1.0 : H[oa * K + oa], damp);
  else
    v = oa >= ob ? H[oa * K + ob] : H[ob * K + oa];
  A[idx] = v;
}

__global__ void rq_add_diag_kernel(double *A, int64_t K, double v) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < K) A[i * K + i] = __dadd_rn(A[i * K + i], v);
}

// quantizer scales on the ORIGINAL W (step 2): one warp per row
__global__ void rq_scales_kernel(const float *W, int64_t ldw, int64_t N, int64_t K, int64_t r, int bits_lo, int bits_hi,
                                 int mse, int lo_once, float *slo, float *shi) {
  const int64_t n = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (n >= N) return;  // whole warps exit together
  const float *wr = W + n * ldw;
  const int64_t Klo = K - r;
  if (r > 0) {
    float s = rq_wq_scale_warp(wr + Klo, r, bits_hi, mse);
    if ((threadIdx.x & 31) == 0) shi[n] = s;
  }
  if (Klo > 0 && lo_once) {
    float s = rq_wq_scale_warp(wr, Klo, bits_lo, mse);
    if ((threadIdx.x & 31) == 0) slo[n] = s;
  }
}

// working W: permuted columns, dead columns 0
__global__ void rq_working_kernel(const float *W, int64_t ldw, int64_t N, int64_t K, const int64_t *perm,
                                  const uint8_t *dead, double *Wk) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= N * K) return;
  const int64_t n = idx / K, a = idx - n * K, o = perm[a];
  Wk[idx] = dead[o] ? 0.0 : (double)W[n * ldw + o];
}

struct rq_gptq_args {
  double *Wk;          // [N][K] permuted working W
  const double *U;     // [K][K] row-major upper factor
  double *E;           // [N][B] scaled errors of the block
  int8_t *codes;       // [N][K] original column order
  float *slo, *shi;    // [N][ngl], [N]
  const int64_t *perm;
  int64_t N, K, Klo, gs, ngl;
  int bits_lo, bits_hi;
  int64_t i1, nb;      // block [i1, i1 + nb)
  int *bad;            // set when an error is not finite
};

// The in-block column loop for one row per warp: lane l owns block columns
// i1 + l + 32k (k < 4). For c = i1..i1+nb-1 in order, the owner quantizes
// W[n][c] with the column's quantizer, e = (w - q) / U[c][c] is broadcast, and
// every later column j of the block gets w_j = w_j - e * U[c][j] (one rounded
// multiply, one rounded subtraction: resq_gptq_f64__ref's axpy_sub). Groups
// (gs > 0, no act-order, B % gs == 0) find their lo scale on the current
// values when the loop reaches their first column.
__global__ void __launch_bounds__(32 * RQ_GPTQ_WPB) rq_gptq_block_kernel(const rq_gptq_args a) {
  const int lane = threadIdx.x & 31;
  const int64_t n = (int64_t)blockIdx.x * RQ_GPTQ_WPB + (threadIdx.x >> 5);
  if (n >= a.N) return;  // whole warps
  double *wr = a.Wk + n * a.K;
  double w[RQ_GPTQ_B / 32];
#pragma unroll
  for (int k = 0; k < RQ_GPTQ_B / 32; k++) {
    const int64_t j = lane + 32 * k;
    w[k] = j < a.nb ? wr[a.i1 + j] : 0.0;
  }
  for (int64_t cc = 0; cc < a.nb; cc++) {
    const int64_t c = a.i1 + cc, o = a.perm[c];
    const int hi = o >= a.Klo;
    const int bits = hi ? a.bits_hi : a.bits_lo;
    const int64_t g = (!hi && a.gs > 0) ? o / a.gs : 0;
    float s;
    if (hi) {
      s = a.shi[n];
    } else if (a.gs > 0 && o % a.gs == 0) {
      // group scale on the current values of columns c .. c+gs-1 (all in this block)
      const float maxq = (float)((1 << (a.bits_lo - 1)) - 1);
      float m = 0.0f;
#pragma unroll
      for (int k = 0; k < RQ_GPTQ_B / 32; k++) {
        const int64_t j = lane + 32 * k;
        if (j >= cc && j < cc + a.gs && j < a.nb) {
          float v = fabsf((float)w[k]);
          m = v > m ? v : m;
        }
      }
      for (int k = 16; k > 0; k >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, m, k);
        m = ov > m ? ov : m;
      }
      if (m < 1e-5f) m = 1e-5f;
      s = __fdiv_rn(m, maxq);
      if (lane == 0) a.slo[n * a.ngl + g] = s;
      __syncwarp();
    } else if (a.gs > 0) {
      __syncwarp();
      s = a.slo[n * a.ngl + g];  // written by lane 0 at the group's first column
    } else {
      s = a.slo[n * a.ngl];
    }
    const int owner = (int)(cc & 31), slot = (int)(cc >> 5);
    double x = 0.0;
#pragma unroll
    for (int k = 0; k < RQ_GPTQ_B / 32; k++)
      if (k == slot) x = w[k];
    x = __shfl_sync(0xffffffffu, x, owner);
    const int code = rq_wq_code((float)x, s, bits);
    const double q = (double)__fmul_rn(s, (float)code);
    const double ucc = a.U[c * a.K + c];
    const double e = __ddiv_rn(__dsub_rn(x, q), ucc);
    if (lane == 0) {
      if (!isfinite(e)) atomicExch(a.bad, 1);
      a.codes[n * a.K + o] = (int8_t)code;
      a.E[n * RQ_GPTQ_B + cc] = e;
    }
    const double *Uc = a.U + c * a.K + a.i1;
#pragma unroll
    for (int k = 0; k < RQ_GPTQ_B / 32; k++) {
      const int64_t j = lane + 32 * k;
      if (j > cc && j < a.nb) w[k] = __dsub_rn(w[k], __dmul_rn(e, __ldg(Uc + j)));
    }
  }
}

// outputs in the original column order (step 8)
__global__ void rq_outputs_kernel(const int8_t *ctmp, const float *slo, const float *shi, int64_t N, int64_t K,
                                  int64_t Klo, int64_t gs, int64_t ngl, int8_t *codes, int64_t ldc, float *Q,
                                  int64_t ldq) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= N * K) return;
  const int64_t n = idx / K, k = idx - n * K;
  const int8_t code = ctmp[idx];
  codes[n * ldc + k] = code;
  if (Q) {
    const float s = k >= Klo ? shi[n] : slo[n * ngl + (gs > 0 ? k / gs : 0)];
    Q[n * ldq + k] = __fmul_rn(s, (float)code);
  }
}

// ---- host ------------------------------------------------------------------------------------
struct diag_idx {
  double d;
  int64_t i;
};
int cmp_diag_desc(const void *x, const void *y) {
  const diag_idx *a = (const diag_idx *)x, *b = (const diag_idx *)y;
  if (a->d > b->d) return -1;
  if (a->d < b->d) return 1;
  return a->i < b->i ? -1 : a->i > b->i;
}

struct gptq_ws {
  double *A, *Hc, *Wk, *E, *solver;
  int8_t *ctmp;
  float *slo, *shi;
  int64_t *perm;
  uint8_t *dead;
  int *info, *bad;
  size_t solver_bytes;
};

size_t solver_bytes(int64_t K) {
  resq_status st;
  cusolverDnHandle_t h = rq_cusolver(&st);
  if (!h) return 0;
  int l1 = 0, l2 = 0;
  if (cusolverDnDpotrf_bufferSize(h, CUBLAS_FILL_MODE_LOWER, (int)K, nullptr, (int)K, &l1) != CUSOLVER_STATUS_SUCCESS ||
      cusolverDnDpotri_bufferSize(h, CUBLAS_FILL_MODE_LOWER, (int)K, nullptr, (int)K, &l2) != CUSOLVER_STATUS_SUCCESS)
    return 0;
  return (size_t)(l1 > l2 ? l1 : l2) * sizeof(double) + 8;
}

// Lays the workspace out (base NULL: measure). 0 if the solver cannot be sized.
size_t ws_layout(const resq_gptq_params *p, int64_t N, char *base, size_t cap, gptq_ws *w) {
  const int64_t K = p->q.K, Klo = K - p->q.r;
  const int64_t ngl = Klo == 0 ? 1 : p->group_size > 0 ? Klo / p->group_size : 1;
  const size_t sb = solver_bytes(K);
  if (!sb) return 0;
  rq_carve c = {base ? base : (char *)256, base ? cap : (size_t)-1 / 2, 0};
  size_t sz[11] = {(size_t)(K * K) * 8, (size_t)(K * K) * 8, (size_t)(N * K) * 8, (size_t)(N * RQ_GPTQ_B) * 8, sb,
                   (size_t)(N * K), (size_t)(N * ngl) * 4 + 4, (size_t)N * 4 + 4, (size_t)K * 8, (size_t)K, 16};
  void *ptr[11];
  for (int i = 0; i < 11; i++) ptr[i] = c.take(sz[i]);
  if (w) {
    w->A = (double *)ptr[0], w->Hc = (double *)ptr[1], w->Wk = (double *)ptr[2], w->E = (double *)ptr[3];
    w->solver = (double *)ptr[4], w->solver_bytes = sb;
    w->ctmp = (int8_t *)ptr[5], w->slo = (float *)ptr[6], w->shi = (float *)ptr[7];
    w->perm = (int64_t *)ptr[8], w->dead = (uint8_t *)ptr[9];
    w->info = (int *)ptr[10], w->bad = (int *)ptr[10] + 1;
  }
  return c.used + 256;
}

resq_status check_hessian(const resq_gptq_hessian *h, const char *what) {
  if (!h || !h->H || h->K < 1 || h->K > RESQ_GPTQ_MAX_K || h->nsamples < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: Hessian not initialized (resq_gptq_hessian_init__cuda)", what);
  return RESQ_OK;
}

template <class In>
resq_status add_batch(resq_gptq_hessian *h, int64_t B, int64_t T, const In *x, int64_t ldx, const char *what) {
  resq_status st = check_hessian(h, what);
  if (st) return st;
  const int64_t K = h->K;
  if (B < 0 || T < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: B=%lld, T=%lld must be >= 0", what, (long long)B, (long long)T);
  if (B == 0) return RESQ_OK;
  if (T > INT64_MAX / B || h->nsamples > INT64_MAX - B || h->ntokens > INT64_MAX - B * T)
    return resq_fail(RESQ_ERR_TOO_LARGE, "%s: sample or token count overflows int64", what);
  const int64_t rows = B * T;
  if (rows > 0 && !x) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL calibration input", what);
  if (rows > 1 && ldx < K) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldx=%lld < K=%lld", what, (long long)ldx, (long long)K);
  cublasHandle_t hb = rq_cublas(&st);
  if (!hb) return st;
  cudaStream_t s = rq_stream();
  const int64_t n0 = h->nsamples, n1 = n0 + B;
  const double factor = (double)n0 / (double)n1, c = sqrt(2.0 / (double)n1);
  rq_scale_matrix_kernel<<<blocks_for(K * K, 256), 256, 0, s>>>(h->H, K * K, factor);
  if ((st = launch_ok(what))) return st;
  int64_t tb = ((int64_t)64 << 20) / (8 * K);
  tb = tb < 1 ? 1 : tb > 8192 ? 8192 : tb;
  if (tb > rows) tb = rows > 0 ? rows : 1;
  double *buf = nullptr;
  cudaError_t e = cudaMalloc(&buf, (size_t)(tb * K) * 8);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  const double one = 1.0;
  for (int64_t t0 = 0; t0 < rows && !st; t0 += tb) {
    const int64_t nb = rows - t0 < tb ? rows - t0 : tb;
    rq_scaled_kernel<In><<<blocks_for(nb * K, 256), 256, 0, s>>>(x + t0 * ldx, ldx, nb, K, c, buf);
    if ((st = launch_ok(what))) break;
    // column-major lower = row-major upper (j >= i), then mirrored below
    cublasStatus_t bs = cublasDsyrk(hb, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)K, (int)nb, &one, buf, (int)K, &one,
                                    h->H, (int)K);
    if (bs != CUBLAS_STATUS_SUCCESS) st = rq_cublas_fail(bs, what);
  }
  if (!st) {
    rq_mirror_kernel<<<blocks_for(K * K, 256), 256, 0, s>>>(h->H, K);
    st = launch_ok(what);
  }
  cudaStreamSynchronize(s);
  cudaFree(buf);
  if (st) return st;
  h->nsamples = n1;
  h->ntokens += rows;
  return RESQ_OK;
}

resq_status solver_info(const int *dinfo, int *info, const char *what) {
  cudaError_t e = cudaMemcpyAsync(info, dinfo, sizeof(int), cudaMemcpyDeviceToHost, rq_stream());
  if (e == cudaSuccess) e = cudaStreamSynchronize(rq_stream());
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}

}  // namespace

extern "C" resq_status resq_gptq_hessian_init__cuda(resq_gptq_hessian *h, int64_t K) {
  if (!h) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq (cuda): NULL Hessian");
  memset(h, 0, sizeof *h);
  if (K < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "gptq (cuda): K=%lld must be >= 1", (long long)K);
  if (K > RESQ_GPTQ_MAX_K)
    return resq_fail(RESQ_ERR_TOO_LARGE, "gptq (cuda): K=%lld exceeds the maximum %lld", (long long)K,
                     (long long)RESQ_GPTQ_MAX_K);
  double *H = nullptr;
  cudaError_t e = cudaMalloc(&H, (size_t)K * (size_t)K * 8);
  if (e == cudaSuccess) e = cudaMemsetAsync(H, 0, (size_t)K * (size_t)K * 8, rq_stream());
  if (e != cudaSuccess) {
    if (H) cudaFree(H);
    return rq_cuda_fail(e, "gptq (cuda): Hessian");
  }
  h->K = K;
  h->H = H;
  return RESQ_OK;
}

extern "C" void resq_gptq_hessian_free__cuda(resq_gptq_hessian *h) {
  if (!h) return;
  if (h->H) cudaFree(h->H);
  memset(h, 0, sizeof *h);
}

extern "C" resq_status resq_gptq_add_batch_f32__cuda(resq_gptq_hessian *h, int64_t B, int64_t T, const float *x,
                                                     int64_t ldx) {
  return add_batch<float>(h, B, T, x, ldx, "resq_gptq_add_batch_f32__cuda");
}

extern "C" resq_status resq_gptq_add_batch_f16__cuda(resq_gptq_hessian *h, int64_t B, int64_t T, const uint16_t *x,
                                                     int64_t ldx) {
  return add_batch<__half>(h, B, T, reinterpret_cast<const __half *>(x), ldx, "resq_gptq_add_batch_f16__cuda");
}

// The CUDA restrictions on the parameters (resq/cuda.h), after resq_gptq_check.
static resq_status rq_gptq_supported(const resq_gptq_params *p, const char *what) {
  if (p->group_size > 0 && (p->act_order || RQ_GPTQ_B % p->group_size || p->q.mse))
    return resq_fail(RESQ_ERR_UNSUPPORTED,
                     "%s: group_size=%lld needs act_order 0, mse 0 and a group size dividing %d on this backend", what,
                     (long long)p->group_size, RQ_GPTQ_B);
  return RESQ_OK;
}

extern "C" size_t resq_gptq_workspace_size__cuda(const resq_gptq_params *p, int64_t N) {
  resq_status st = resq_gptq_check(p, nullptr);
  if (!st) st = rq_gptq_supported(p, "gptq");
  resq_clear_error();
  if (st || N < 0) return 0;
  return ws_layout(p, N, nullptr, 0, nullptr);
}

extern "C" resq_status resq_gptq_f64__cuda(const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N,
                                           const float *W, int64_t ldw, int8_t *codes, int64_t ldc, float *scale_lo,
                                           float *scale_hi, float *Q, int64_t ldq, resq_gptq_info *info, void *work,
                                           size_t work_size) {
  const char *what = "resq_gptq_f64__cuda";
  int64_t ngl = 0;
  resq_status st = resq_gptq_check(p, &ngl);
  if (st) return st;
  if ((st = rq_gptq_supported(p, what))) return st;
  if ((st = check_hessian(h, what))) return st;
  const int64_t K = p->q.K, r = p->q.r, Klo = K - r, gs = p->group_size;
  if (h->K != K)
    return resq_fail(RESQ_ERR_SHAPE, "%s: the Hessian has K=%lld channels, the weight K=%lld", what, (long long)h->K,
                     (long long)K);
  if (N < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: N=%lld < 0", what, (long long)N);
  if (N > 0 && (!W || !codes || (Klo > 0 && !scale_lo) || (r > 0 && !scale_hi)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL input or output", what);
  if (N > 1 && (ldw < K || ldc < K || (Q && ldq < K)))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: leading dimension < K=%lld", what, (long long)K);
  const size_t need = ws_layout(p, N, nullptr, 0, nullptr);
  if (need == 0) return resq_fail(RESQ_ERR_DEVICE, "%s: cannot size the cuSOLVER workspace", what);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: workspace of %zu bytes given, %zu needed (resq_gptq_workspace_size__cuda)",
                     what, work_size, need);
  if (h->nsamples < 1) return resq_fail(RESQ_ERR_DEGENERATE, "%s: the Hessian has no calibration sequences", what);
  cudaStream_t s = rq_stream();
  // steps 3-5 on the host from diag(H): dead columns, act-order, damping (the reference's code)
  double *dg = (double *)malloc((size_t)K * 8);
  diag_idx *di = (diag_idx *)malloc((size_t)K * sizeof(diag_idx));
  int64_t *perm = (int64_t *)malloc((size_t)K * 8);
  uint8_t *dead = (uint8_t *)malloc((size_t)K);
  if (!dg || !di || !perm || !dead) {
    free(dg), free(di), free(perm), free(dead);
    return resq_fail(RESQ_ERR_NOMEM, "%s: out of memory", what);
  }
  cudaError_t e = cudaMemcpy2DAsync(dg, 8, h->H, (size_t)(K + 1) * 8, 8, (size_t)K, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  int64_t ndead = 0;
  double tr = 0.0;
  for (int64_t i = 0; i < K; i++) {
    dead[i] = dg[i] == 0.0;
    ndead += dead[i];
    perm[i] = i;
    tr += dead[i] ? 1.0 : dg[i];
  }
  if (p->act_order) {
    for (int64_t i = 0; i < K; i++) di[i].d = dead[i] ? 1.0 : dg[i], di[i].i = i;
    qsort(di, (size_t)K, sizeof *di, cmp_diag_desc);
    for (int64_t i = 0; i < K; i++) perm[i] = di[i].i;
  }
  const double damp = p->percdamp * (tr / (double)K);
  gptq_ws w;
  ws_layout(p, N, (char *)work, work_size, &w);
  if (e == cudaSuccess) e = cudaMemcpyAsync(w.perm, perm, (size_t)K * 8, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaMemcpyAsync(w.dead, dead, (size_t)K, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);  // the host arrays are freed below
  int64_t *perm_host = perm;
  free(dg), free(di), free(dead);
  if (e != cudaSuccess) {
    free(perm_host);
    return rq_cuda_fail(e, what);
  }
  if (ndead == K) {
    free(perm_host);
    return resq_fail(RESQ_ERR_DEGENERATE, "%s: every diagonal entry of H is 0 (all-zero calibration data)", what);
  }
  if (N == 0) {
    free(perm_host);
    if (info) info->dead = ndead, info->damp = 0.0, info->retried = 0;
    return RESQ_OK;
  }
  cusolverDnHandle_t hs = rq_cusolver(&st);
  cublasHandle_t hb = hs ? rq_cublas(&st) : nullptr;
  if (!hs || !hb) {
    free(perm_host);
    return st;
  }
  const int lwork = (int)(w.solver_bytes / 8);
  int hinfo = 0, retried = 0;
  // step 6: H = L L^T; H^-1 (lower, column-major = the row-major upper triangle);
  // H^-1 = L' L'^T whose row-major view L'^T is the reference's upper U
  rq_build_kernel<<<blocks_for(K * K, 256), 256, 0, s>>>(h->H, K, w.perm, w.dead, damp, w.A);
  st = launch_ok(what);
  cusolverStatus_t cs = CUSOLVER_STATUS_SUCCESS;
  if (!st) cs = cusolverDnDpotrf(hs, CUBLAS_FILL_MODE_LOWER, (int)K, w.A, (int)K, w.solver, lwork, w.info);
  if (!st && cs != CUSOLVER_STATUS_SUCCESS) st = rq_cusolver_fail(cs, what);
  if (!st) st = solver_info(w.info, &hinfo, what);
  if (!st && hinfo > 0)
    st = resq_fail(RESQ_ERR_DEGENERATE,
                   "%s: Cholesky of the damped Hessian failed at column %lld (percdamp %g): H is not positive definite",
                   what, (long long)perm_host[hinfo - 1], p->percdamp);
  if (!st) {
    cs = cusolverDnDpotri(hs, CUBLAS_FILL_MODE_LOWER, (int)K, w.A, (int)K, w.solver, lwork, w.info);
    if (cs != CUSOLVER_STATUS_SUCCESS) st = rq_cusolver_fail(cs, what);
    if (!st) st = solver_info(w.info, &hinfo, what);
    if (!st && hinfo > 0) st = resq_fail(RESQ_ERR_DEGENERATE, "%s: the damped Hessian is singular (potri info %d)", what, hinfo);
  }
  if (!st) {
    e = cudaMemcpyAsync(w.Hc, w.A, (size_t)(K * K) * 8, cudaMemcpyDeviceToDevice, s);
    if (e != cudaSuccess) st = rq_cuda_fail(e, what);
  }
  if (!st) {
    cs = cusolverDnDpotrf(hs, CUBLAS_FILL_MODE_LOWER, (int)K, w.A, (int)K, w.solver, lwork, w.info);
    if (cs != CUSOLVER_STATUS_SUCCESS) st = rq_cusolver_fail(cs, what);
    if (!st) st = solver_info(w.info, &hinfo, what);
    if (!st && hinfo > 0) {  // upstream's single retry on H^-1 + 1e-5 I
      retried = 1;
      e = cudaMemcpyAsync(w.A, w.Hc, (size_t)(K * K) * 8, cudaMemcpyDeviceToDevice, s);
      if (e != cudaSuccess) st = rq_cuda_fail(e, what);
      if (!st) {
        rq_add_diag_kernel<<<blocks_for(K, 256), 256, 0, s>>>(w.A, K, RESQ_GPTQ_RETRY_SHIFT);
        st = launch_ok(what);
      }
      if (!st) {
        cs = cusolverDnDpotrf(hs, CUBLAS_FILL_MODE_LOWER, (int)K, w.A, (int)K, w.solver, lwork, w.info);
        if (cs != CUSOLVER_STATUS_SUCCESS) st = rq_cusolver_fail(cs, what);
        if (!st) st = solver_info(w.info, &hinfo, what);
        if (!st && hinfo > 0)
          st = resq_fail(RESQ_ERR_DEGENERATE, "%s: Cholesky of H^-1 failed at column %lld, also after adding %g*I", what,
                         (long long)perm_host[hinfo - 1], RESQ_GPTQ_RETRY_SHIFT);
      }
    }
  }
  free(perm_host);
  if (st) return st;
  // step 2: scales on the original W; the working W
  rq_scales_kernel<<<blocks_for(N * 32, 256), 256, 0, s>>>(W, ldw, N, K, r, p->q.bits_lo, p->q.bits_hi, p->q.mse,
                                                           gs == 0, w.slo, w.shi);
  if ((st = launch_ok(what))) return st;
  rq_working_kernel<<<blocks_for(N * K, 256), 256, 0, s>>>(W, ldw, N, K, w.perm, w.dead, w.Wk);
  if ((st = launch_ok(what))) return st;
  if ((e = cudaMemsetAsync(w.bad, 0, sizeof(int), s)) != cudaSuccess) return rq_cuda_fail(e, what);
  // step 7: the block loop
  rq_gptq_args ga;
  ga.Wk = w.Wk, ga.U = w.A, ga.E = w.E, ga.codes = w.ctmp, ga.slo = w.slo, ga.shi = w.shi, ga.perm = w.perm;
  ga.N = N, ga.K = K, ga.Klo = Klo, ga.gs = gs, ga.ngl = ngl, ga.bits_lo = p->q.bits_lo, ga.bits_hi = p->q.bits_hi;
  ga.bad = w.bad;
  const double minus_one = -1.0, one = 1.0;
  for (int64_t i1 = 0; i1 < K; i1 += RQ_GPTQ_B) {
    const int64_t i2 = i1 + RQ_GPTQ_B < K ? i1 + RQ_GPTQ_B : K;
    ga.i1 = i1, ga.nb = i2 - i1;
    rq_gptq_block_kernel<<<blocks_for(N, RQ_GPTQ_WPB), 32 * RQ_GPTQ_WPB, 0, s>>>(ga);
    if ((st = launch_ok(what))) return st;
    if (i2 < K) {
      // column-major: Wk^T[i2:K, :] -= (U[i1:i2, i2:K])^T E^T
      cublasStatus_t bs = cublasDgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)(K - i2), (int)N, (int)(i2 - i1), &minus_one,
                                      w.A + i1 * K + i2, (int)K, w.E, RQ_GPTQ_B, &one, w.Wk + i2, (int)K);
      if (bs != CUBLAS_STATUS_SUCCESS) return rq_cublas_fail(bs, what);
    }
  }
  int bad = 0;
  e = cudaMemcpyAsync(&bad, w.bad, sizeof bad, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  if (bad)
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "%s: the error feedback overflowed (H is too ill-conditioned; raise percdamp)", what);
  // step 8: outputs
  rq_outputs_kernel<<<blocks_for(N * K, 256), 256, 0, s>>>(w.ctmp, w.slo, w.shi, N, K, Klo, gs, ngl, codes, ldc, Q, ldq);
  if ((st = launch_ok(what))) return st;
  if (Klo > 0) e = cudaMemcpyAsync(scale_lo, w.slo, (size_t)(N * ngl) * 4, cudaMemcpyDeviceToDevice, s);
  if (e == cudaSuccess && r > 0) e = cudaMemcpyAsync(scale_hi, w.shi, (size_t)N * 4, cudaMemcpyDeviceToDevice, s);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  if (info) info->dead = ndead, info->damp = damp, info->retried = retried;
  return RESQ_OK;
}
