// SPDX-License-Identifier: Apache-2.0
// CUDA PCA basis (ref/CONTRACT.md section 13; resq/cuda.h "PCA basis"):
//   second moment by cublasDsyrk (double), damped covariance (exact given S),
//   eigendecomposition by cusolverDnDsyevd, per-head bases by
//   cusolverDnXsyevBatched (one call for all heads), then the contract's sign
//   convention on the device.
//
// STATUS: COMPILED ONLY (CUDA 13.0, sm_80/86/89/90, no GPU here); never run.
// verify/cuda_pca_test.c compares with the reference by the contract's bounds
// (S element-wise by the gamma bound of a double sum, the projector onto the
// top-r subspace by Davis-Kahan) once a GPU is available.
//
// Layouts: everything is row-major like the reference. A row-major symmetric
// matrix is its own column-major transpose, so the solvers read it directly
// (the reference's "lower triangle" is cuSOLVER's column-major upper); the
// eigenvectors come back as column-major columns, i.e. ROWS of the row-major
// array, and are transposed once.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cuda.h"
#include "rq_host.cuh"
#include "rq_lib.cuh"

namespace {

// ---- kernels ---------------------------------------------------------------------------------

template <class In>
__global__ void rq_widen_kernel(const In *x, int64_t ldx, int64_t T, int64_t d, double scale, double *out) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= T * d) return;
  const int64_t t = idx / d, i = idx - t * d;
  double v;
  if constexpr (sizeof(In) == 2)
    v = (double)__half2float(x[t * ldx + i]);  // exact widening
  else
    v = (double)x[t * ldx + i];
  out[idx] = scale == 1.0 ? v : __dmul_rn(scale, v);
}

// tr = sum_{i ascending} S[i][i] / T, one thread (the reference's order, bit for bit)
__global__ void rq_trace_kernel(const double *S, int64_t d, double T, double *tr) {
  if (blockIdx.x || threadIdx.x) return;
  double acc = 0.0;
  for (int64_t i = 0; i < d; i++) acc = __dadd_rn(acc, __ddiv_rn(S[i * d + i], T));
  *tr = acc;
}

// C[i][j] = C[j][i] = S[i][j] / T (j >= i), then C[i][i] += sh: the reference's operations
__global__ void rq_cov_kernel(const double *S, int64_t d, double T, double sh, double *C, int64_t ldc) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d * d) return;
  const int64_t i = idx / d, j = idx - i * d;
  if (j < i) return;
  const double c = __ddiv_rn(S[i * d + j], T);
  if (i == j) {
    C[i * ldc + i] = __dadd_rn(c, sh);
  } else {
    C[i * ldc + j] = c;
    C[j * ldc + i] = c;
  }
}

// dst[i*ldd + j] = src[j*lds + i] for batch matrices of order n (stride n*lds / n*ldd)
__global__ void rq_transpose_kernel(const double *src, int64_t lds, double *dst, int64_t ldd, int64_t n, int64_t batch) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= batch * n * n) return;
  const int64_t b = idx / (n * n), r = idx - b * n * n, i = r / n, j = r - i * n;
  dst[b * n * ldd + i * ldd + j] = src[b * n * lds + j * lds + i];
}

// Sign convention of column j (one block per (matrix, column)): the entry of
// largest magnitude, the first such row on ties, must be positive.
__global__ void rq_sign_kernel(double *A, int64_t lda, int64_t n) {
  __shared__ double bv[256];
  __shared__ int64_t bi[256];
  const int64_t j = blockIdx.x, b = blockIdx.y;
  double *M = A + b * n * lda;
  double best = -1.0;
  int64_t where = n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    double v = fabs(M[i * lda + j]);
    if (v > best) best = v, where = i;  // rows ascending per thread: the first maximum
  }
  bv[threadIdx.x] = best;
  bi[threadIdx.x] = where;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      double ov = bv[threadIdx.x + s];
      int64_t oi = bi[threadIdx.x + s];
      if (ov > bv[threadIdx.x] || (ov == bv[threadIdx.x] && oi < bi[threadIdx.x])) bv[threadIdx.x] = ov, bi[threadIdx.x] = oi;
    }
    __syncthreads();
  }
  const bool flip = bi[0] < n && M[bi[0] * lda + j] < 0.0;
  __syncthreads();
  if (flip)
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) M[i * lda + j] = -M[i * lda + j];
}

unsigned blocks_for(int64_t n, int th) { return (unsigned)((n + th - 1) / th); }

resq_status launch_ok(const char *what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}

resq_status check_accum(const resq_pca_accum *a, const char *what) {
  if (!a || !a->S || a->d < 1 || a->d > RESQ_PCA_MAX_D || a->count < 0)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: accumulator not initialized (resq_pca_accum_init__cuda)", what);
  return RESQ_OK;
}

// Tokens per dsyrk call: the widened block stays below 64 MiB.
int64_t block_tokens(int64_t d) {
  int64_t t = ((int64_t)64 << 20) / (8 * d);
  return t < 1 ? 1 : t > 8192 ? 8192 : t;
}

template <class In>
resq_status accumulate(resq_pca_accum *a, int64_t T, const In *x, int64_t ldx, const char *what) {
  resq_status st = check_accum(a, what);
  if (st) return st;
  const int64_t d = a->d;
  if (T < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: T=%lld < 0", what, (long long)T);
  if (T == 0) return RESQ_OK;
  if (!x) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL input", what);
  if (T > 1 && ldx < d) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldx=%lld < d=%lld", what, (long long)ldx, (long long)d);
  if (a->count > INT64_MAX - T) return resq_fail(RESQ_ERR_TOO_LARGE, "%s: token count overflows int64", what);
  cublasHandle_t h = rq_cublas(&st);
  if (!h) return st;
  const int64_t tb = block_tokens(d) < T ? block_tokens(d) : T;
  double *buf = nullptr;
  cudaError_t e = cudaMalloc(&buf, (size_t)(tb * d) * sizeof(double));
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  cudaStream_t s = rq_stream();
  const double one = 1.0;
  for (int64_t t0 = 0; t0 < T && !st; t0 += tb) {
    const int64_t nb = T - t0 < tb ? T - t0 : tb;
    rq_widen_kernel<In><<<blocks_for(nb * d, 256), 256, 0, s>>>(x + t0 * ldx, ldx, nb, d, 1.0, buf);
    if ((st = launch_ok(what))) break;
    // column-major view: buf is d x nb (lda d), S += buf buf^T in the LOWER
    // triangle of the column-major d x d = the reference's upper triangle
    cublasStatus_t bs = cublasDsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)d, (int)nb, &one, buf, (int)d, &one,
                                    a->S, (int)d);
    if (bs != CUBLAS_STATUS_SUCCESS) st = rq_cublas_fail(bs, what);
  }
  cudaStreamSynchronize(s);  // buf is freed below
  cudaFree(buf);
  if (st) return st;
  a->count += T;
  return RESQ_OK;
}

resq_status covariance(const resq_pca_accum *a, double damp, double *C, int64_t ldc, double *shift, const char *what) {
  resq_status st = check_accum(a, what);
  if (st) return st;
  const int64_t d = a->d;
  if (!C) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL output", what);
  if (ldc < d) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldc=%lld < d=%lld", what, (long long)ldc, (long long)d);
  if (!(damp >= 0.0) || !isfinite(damp))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: damp=%g must be finite and >= 0", what, damp);
  if (a->count == 0) return resq_fail(RESQ_ERR_DEGENERATE, "%s: no calibration tokens (count is 0)", what);
  const double T = (double)a->count;
  cudaStream_t s = rq_stream();
  double *dtr = nullptr, tr = 0.0;
  cudaError_t e = cudaMalloc(&dtr, sizeof(double));
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  rq_trace_kernel<<<1, 1, 0, s>>>(a->S, d, T, dtr);
  e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaMemcpyAsync(&tr, dtr, sizeof tr, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  cudaFree(dtr);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  if (!(tr > 0.0))
    return resq_fail(RESQ_ERR_DEGENERATE,
                     "%s: the calibration data is all zero (%lld tokens, trace of the second moment 0): no basis", what,
                     (long long)a->count);
  const double mean = tr / (double)d;  // host: the same two IEEE operations as the reference
  const double sh = damp * mean;
  rq_cov_kernel<<<blocks_for(d * d, 256), 256, 0, s>>>(a->S, d, T, sh, C, ldc);
  if ((st = launch_ok(what))) return st;
  if (shift) *shift = sh;
  return RESQ_OK;
}

// cuSOLVER workspace (bytes) of a syevd / XsyevBatched of order n.
size_t syevd_bytes(int64_t n) {
  resq_status st;
  cusolverDnHandle_t h = rq_cusolver(&st);
  if (!h) return 0;
  int lwork = 0;
  if (cusolverDnDsyevd_bufferSize(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, (int)n, nullptr, (int)n, nullptr,
                                  &lwork) != CUSOLVER_STATUS_SUCCESS)
    return 0;
  return (size_t)lwork * sizeof(double);
}

struct batched_ws {
  size_t dev, host;
};
batched_ws xsyev_batched_bytes(int64_t batch, int64_t n) {
  batched_ws w = {0, 0};
  resq_status st;
  cusolverDnHandle_t h = rq_cusolver(&st);
  if (!h) return w;
  cusolverDnParams_t prm;
  if (cusolverDnCreateParams(&prm) != CUSOLVER_STATUS_SUCCESS) return w;
  if (cusolverDnXsyevBatched_bufferSize(h, prm, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_64F, nullptr,
                                        n, CUDA_R_64F, nullptr, CUDA_R_64F, &w.dev, &w.host,
                                        batch) != CUSOLVER_STATUS_SUCCESS)
    w.dev = w.host = 0;
  cusolverDnDestroyParams(prm);
  return w;
}

// Workspace layout of eigh (batch matrices of order n): copies of the matrices
// and eigenvalues, the infos, the solver's buffer.
size_t eigh_bytes(int64_t batch, int64_t n, int use_batched) {
  size_t solver = use_batched ? xsyev_batched_bytes(batch, n).dev : syevd_bytes(n);
  if (solver == 0 && use_batched) solver = syevd_bytes(n);  // the fallback loop
  if (solver == 0) return 0;
  return (size_t)(batch * n * n) * 8 + (size_t)(batch * n) * 8 + (size_t)batch * 4 + solver + 4 * 256;
}

resq_status eigh(int64_t batch, int64_t n, double *A, int64_t lda, double *w, void *work, size_t work_size,
                 int use_batched, const char *what) {
  if (batch < 1 || n < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: batch=%lld, n=%lld must be >= 1", what,
                                           (long long)batch, (long long)n);
  if (n > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "%s: n=%lld exceeds %lld", what, (long long)n, (long long)RESQ_PCA_MAX_D);
  if (!A || !w) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL matrix or eigenvalues", what);
  if (lda < n) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: lda=%lld < n=%lld", what, (long long)lda, (long long)n);
  const size_t need = eigh_bytes(batch, n, use_batched);
  if (need == 0) return resq_fail(RESQ_ERR_DEVICE, "%s: cannot size the cuSOLVER workspace", what);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: workspace of %zu bytes given, %zu needed", what, work_size, need);
  resq_status st;
  cusolverDnHandle_t h = rq_cusolver(&st);
  if (!h) return st;
  cudaStream_t s = rq_stream();
  rq_carve c = {(char *)work, work_size, 0};
  double *M = (double *)c.take((size_t)(batch * n * n) * 8), *wv = (double *)c.take((size_t)(batch * n) * 8);
  int *info = (int *)c.take((size_t)batch * 4);
  size_t solver_bytes = work_size - c.used - 256;
  void *sw = c.take(solver_bytes);
  if (!sw) return resq_fail(RESQ_ERR_INTERNAL, "%s: workspace accounting", what);
  // work on a contiguous copy: a failure leaves A and w untouched
  cudaError_t e = cudaMemcpy2DAsync(M, (size_t)n * 8, A, (size_t)lda * 8, (size_t)n * 8, (size_t)(batch * n),
                                    cudaMemcpyDeviceToDevice, s);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  cusolverStatus_t cs = CUSOLVER_STATUS_NOT_SUPPORTED;
  void *hostbuf = nullptr;
  if (use_batched) {  // all matrices in one call
    batched_ws bw = xsyev_batched_bytes(batch, n);
    cusolverDnParams_t prm;
    if (bw.dev > 0 && bw.dev <= solver_bytes && cusolverDnCreateParams(&prm) == CUSOLVER_STATUS_SUCCESS) {
      hostbuf = bw.host ? malloc(bw.host) : nullptr;
      if (!bw.host || hostbuf)
        cs = cusolverDnXsyevBatched(h, prm, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_64F, M, n,
                                    CUDA_R_64F, wv, CUDA_R_64F, sw, bw.dev, hostbuf, bw.host, info, batch);
      cusolverDnDestroyParams(prm);
    }
  }
  if (cs != CUSOLVER_STATUS_SUCCESS) {  // one syevd per matrix (also the fallback of the batched form)
    const int lwork = (int)(solver_bytes / 8 > (size_t)0x7fffffff ? 0x7fffffff : solver_bytes / 8);
    for (int64_t b = 0; b < batch; b++) {
      cs = cusolverDnDsyevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, (int)n, M + b * n * n, (int)n, wv + b * n,
                            (double *)sw, lwork, info + b);
      if (cs != CUSOLVER_STATUS_SUCCESS) break;
    }
  }
  e = cudaStreamSynchronize(s);
  free(hostbuf);
  if (cs != CUSOLVER_STATUS_SUCCESS) return rq_cusolver_fail(cs, what);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  int *hinfo = (int *)malloc((size_t)batch * sizeof(int));
  if (!hinfo) return resq_fail(RESQ_ERR_NOMEM, "%s: out of memory", what);
  e = cudaMemcpy(hinfo, info, (size_t)batch * sizeof(int), cudaMemcpyDeviceToHost);
  int64_t bad = -1;
  for (int64_t b = 0; b < batch && e == cudaSuccess; b++)
    if (hinfo[b] != 0 && bad < 0) bad = b;
  int code = bad >= 0 ? hinfo[bad] : 0;
  free(hinfo);
  if (e != cudaSuccess) return rq_cuda_fail(e, what);
  if (bad >= 0)
    return code > 0 ? resq_fail(RESQ_ERR_DEGENERATE, "%s: matrix %lld: the eigensolver did not converge (info %d)", what,
                                (long long)bad, code)
                    : resq_fail(RESQ_ERR_INTERNAL, "%s: cuSOLVER rejected parameter %d", what, -code);
  // success: eigenvectors (rows of M) to the columns of A, the sign convention, eigenvalues
  rq_transpose_kernel<<<blocks_for(batch * n * n, 256), 256, 0, s>>>(M, n, A, lda, n, batch);
  if ((st = launch_ok(what))) return st;
  rq_sign_kernel<<<dim3((unsigned)n, (unsigned)batch), 256, 0, s>>>(A, lda, n);
  if ((st = launch_ok(what))) return st;
  e = cudaMemcpyAsync(w, wv, (size_t)(batch * n) * 8, cudaMemcpyDeviceToDevice, s);
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}

}  // namespace

extern "C" resq_status resq_pca_accum_init__cuda(resq_pca_accum *a, int64_t d) {
  if (!a) return resq_fail(RESQ_ERR_INVALID_ARG, "pca (cuda): NULL accumulator");
  memset(a, 0, sizeof *a);
  if (d < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "pca (cuda): d=%lld must be >= 1", (long long)d);
  if (d > RESQ_PCA_MAX_D)
    return resq_fail(RESQ_ERR_TOO_LARGE, "pca (cuda): d=%lld exceeds the maximum %lld", (long long)d,
                     (long long)RESQ_PCA_MAX_D);
  double *S = nullptr;
  cudaError_t e = cudaMalloc(&S, (size_t)d * (size_t)d * sizeof(double));
  if (e == cudaSuccess) e = cudaMemsetAsync(S, 0, (size_t)d * (size_t)d * sizeof(double), rq_stream());
  if (e != cudaSuccess) {
    if (S) cudaFree(S);
    return rq_cuda_fail(e, "pca (cuda): accumulator");
  }
  a->d = d;
  a->S = S;
  return RESQ_OK;
}

extern "C" void resq_pca_accum_free__cuda(resq_pca_accum *a) {
  if (!a) return;
  if (a->S) cudaFree(a->S);
  memset(a, 0, sizeof *a);
}

extern "C" resq_status resq_pca_accum_reset__cuda(resq_pca_accum *a) {
  resq_status st = check_accum(a, "pca reset (cuda)");
  if (st) return st;
  cudaError_t e = cudaMemsetAsync(a->S, 0, (size_t)a->d * (size_t)a->d * sizeof(double), rq_stream());
  if (e != cudaSuccess) return rq_cuda_fail(e, "pca reset (cuda)");
  a->count = 0;
  return RESQ_OK;
}

extern "C" resq_status resq_pca_accum_f32__cuda(resq_pca_accum *a, int64_t T, const float *x, int64_t ldx) {
  return accumulate<float>(a, T, x, ldx, "resq_pca_accum_f32__cuda");
}

extern "C" resq_status resq_pca_accum_f16__cuda(resq_pca_accum *a, int64_t T, const uint16_t *x, int64_t ldx) {
  return accumulate<__half>(a, T, reinterpret_cast<const __half *>(x), ldx, "resq_pca_accum_f16__cuda");
}

extern "C" resq_status resq_pca_covariance_f64__cuda(const resq_pca_accum *a, double damp, double *C, int64_t ldc,
                                                     double *shift) {
  return covariance(a, damp, C, ldc, shift, "resq_pca_covariance_f64__cuda");
}

extern "C" size_t resq_eigh_workspace_size__cuda(int64_t n) {
  if (n < 1 || n > RESQ_PCA_MAX_D) return 0;
  return eigh_bytes(1, n, 0);
}

extern "C" resq_status resq_eigh_f64__cuda(int64_t n, double *A, int64_t lda, double *w, void *work,
                                           size_t work_size) {
  return eigh(1, n, A, lda, w, work, work_size, 0, "resq_eigh_f64__cuda");
}

extern "C" size_t resq_eigh_batched_workspace_size__cuda(int64_t batch, int64_t n) {
  if (batch < 1 || n < 1 || n > RESQ_PCA_MAX_D) return 0;
  return eigh_bytes(batch, n, 1);
}

extern "C" resq_status resq_eigh_batched_f64__cuda(int64_t batch, int64_t n, double *A, int64_t lda, double *w,
                                                   void *work, size_t work_size) {
  return eigh(batch, n, A, lda, w, work, work_size, 1, "resq_eigh_batched_f64__cuda");
}

extern "C" size_t resq_pca_basis_workspace_size__cuda(int64_t d) {
  if (d < 1 || d > RESQ_PCA_MAX_D) return 0;
  size_t e = eigh_bytes(1, d, 0);
  return e ? (size_t)(d * d + d) * sizeof(double) + 512 + e : 0;
}

extern "C" resq_status resq_pca_basis_f64__cuda(const resq_pca_accum *a, double damp, double *eigvals, double *U,
                                                int64_t ldu, void *work, size_t work_size) {
  const char *what = "resq_pca_basis_f64__cuda";
  resq_status st = check_accum(a, what);
  if (st) return st;
  const int64_t d = a->d;
  if (!eigvals || !U) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL output", what);
  if (ldu < d) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldu=%lld < d=%lld", what, (long long)ldu, (long long)d);
  const size_t need = resq_pca_basis_workspace_size__cuda(d);
  if (!work || work_size < need)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: workspace of %zu bytes given, %zu needed", what, work_size, need);
  // C and its eigenvalues in the workspace: a failure leaves eigvals and U untouched
  rq_carve c = {(char *)work, work_size, 0};
  double *C = (double *)c.take((size_t)(d * d) * 8), *wv = (double *)c.take((size_t)d * 8);
  void *rest = (char *)work + c.used;
  if ((st = covariance(a, damp, C, d, nullptr, what))) return st;
  if ((st = eigh(1, d, C, d, wv, rest, work_size - c.used, 0, what))) return st;
  cudaStream_t s = rq_stream();
  cudaError_t e = cudaMemcpyAsync(eigvals, wv, (size_t)d * 8, cudaMemcpyDeviceToDevice, s);
  if (e == cudaSuccess)
    e = cudaMemcpy2DAsync(U, (size_t)ldu * 8, C, (size_t)d * 8, (size_t)d * 8, (size_t)d, cudaMemcpyDeviceToDevice, s);
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}
