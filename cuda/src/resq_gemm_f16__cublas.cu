// SPDX-License-Identifier: Apache-2.0
// Library baselines for the mixed GEMM (resq/cuda_gemm.h):
//   resq_gemm_f16__cublas       FP16 GEMM, cublasGemmEx (fp32 or fp16 accumulation)
//   resq_gemm_s8_s32__cublaslt  W8A8 s8 x s8 -> s32 with cuBLASLt (integer tensor cores)
// Row-major Y[M,N] = X[M,K] W[N,K]^T is the column-major product Y^T = W X^T with W read as the
// transposed operand: cuBLAS m = N, n = M, k = K, A = W (op T, lda = ldw), B = X (op N,
// ldb = ldx), C = Y (ldc = ldy) -- the "TN" layout cuBLASLt's integer kernels require.
//
// STATUS: COMPILED ONLY (no GPU on the build machine); verify/gemm_cublas__cuda_test.c checks
// these wrappers against the reference where a GPU exists. cuBLAS and cuBLASLt are linked
// dynamically (the toolkit ships no static cuBLAS here); a binary still starts without a driver
// because nothing touches the libraries before the first call.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "resq/cuda.h"
#include "rq_host.cuh"

static cublasHandle_t g_blas = NULL;
static cublasLtHandle_t g_lt = NULL;
static void *g_lt_work = NULL;
static const size_t g_lt_work_size = (size_t)32 << 20;  // cuBLASLt's recommended ceiling for Hopper

static resq_status blas_fail(cublasStatus_t s, const char *what) {
  resq_status code = s == CUBLAS_STATUS_NOT_SUPPORTED ? RESQ_ERR_UNSUPPORTED
                     : s == CUBLAS_STATUS_NOT_INITIALIZED ? RESQ_ERR_NO_DEVICE
                                                          : RESQ_ERR_DEVICE;
  return resq_fail(code, "%s: %s (%s)", what, cublasGetStatusName(s), cublasGetStatusString(s));
}

static resq_status ensure_blas(const char *what) {
  if (g_blas) return RESQ_OK;
  cublasStatus_t s = cublasCreate(&g_blas);
  if (s != CUBLAS_STATUS_SUCCESS) {
    g_blas = NULL;
    return blas_fail(s, what);
  }
  return RESQ_OK;
}

static resq_status ensure_lt(const char *what) {
  if (g_lt) return RESQ_OK;
  cublasStatus_t s = cublasLtCreate(&g_lt);
  if (s != CUBLAS_STATUS_SUCCESS) {
    g_lt = NULL;
    return blas_fail(s, what);
  }
  cudaError_t e = cudaMalloc(&g_lt_work, g_lt_work_size);
  if (e != cudaSuccess) {
    cublasLtDestroy(g_lt);
    g_lt = NULL;
    g_lt_work = NULL;
    return rq_cuda_fail(e, what);
  }
  return RESQ_OK;
}

extern "C" void resq_cublas_release(void) {
  if (g_blas) cublasDestroy(g_blas);
  if (g_lt) cublasLtDestroy(g_lt);
  if (g_lt_work) cudaFree(g_lt_work);
  g_blas = NULL;
  g_lt = NULL;
  g_lt_work = NULL;
}

// The reference's argument rules (resq_gemm_f16__ref) plus cuBLAS's int dimensions.
static resq_status check_dims(int64_t M, int64_t N, int64_t K, const void *x, int64_t ldx, const void *w, int64_t ldw,
                              const void *y, int64_t ldy, const char *what) {
  if (M < 0 || N < 0 || K < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: negative size", what);
  if (M > 0 && N > 0 && ((K > 0 && (!x || !w)) || !y)) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL argument", what);
  if ((M > 1 && ldx < K) || (N > 1 && ldw < K) || (M > 1 && ldy < N))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: leading dimension too small", what);
  const int64_t lim = 0x7fffffffLL;
  if (M > lim || N > lim || K > lim || ldx > lim || ldw > lim || ldy > lim)
    return resq_fail(RESQ_ERR_TOO_LARGE, "%s: a size or leading dimension above 2^31 - 1 (cuBLAS int)", what);
  return RESQ_OK;
}

// K = 0: Y = 0 (the reference's empty sum), without calling the libraries.
static resq_status zero_rows(void *y, int64_t M, int64_t N, int64_t ldy, size_t es, const char *what) {
  cudaError_t e = cudaMemset2DAsync(y, (size_t)(M > 1 ? ldy : N) * es, 0, (size_t)N * es, (size_t)M, rq_stream());
  return e == cudaSuccess ? RESQ_OK : rq_cuda_fail(e, what);
}

// cuBLAS requires lda >= max(1, rows of the stored matrix) even where the reference ignores the
// stride of a single row: use the tight value then.
static int64_t fix_ld(int64_t ld, int64_t rows, int64_t min) { return rows <= 1 && ld < min ? min : ld; }

extern "C" resq_status resq_gemm_f16__cublas(int64_t M, int64_t N, int64_t K, const uint16_t *x, int64_t ldx,
                                             const uint16_t *w, int64_t ldw, uint16_t *y, int64_t ldy,
                                             resq_cublas_compute compute) {
  const char *what = "resq_gemm_f16__cublas";
  resq_status st = check_dims(M, N, K, x, ldx, w, ldw, y, ldy, what);
  if (st) return st;
  if (compute != RESQ_CUBLAS_F32 && compute != RESQ_CUBLAS_F32_PYTORCH && compute != RESQ_CUBLAS_F16)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: unknown compute mode %d", what, (int)compute);
  if (M == 0 || N == 0) return RESQ_OK;
  if (K == 0) return zero_rows(y, M, N, ldy, 2, what);
  if ((st = ensure_blas(what))) return st;
  cublasStatus_t s = cublasSetStream(g_blas, rq_stream());
  if (s == CUBLAS_STATUS_SUCCESS) {
    // RESQ_CUBLAS_F32: every addition in fp32 (split-K partials are not reduced in fp16);
    // RESQ_CUBLAS_F32_PYTORCH: cuBLAS's default, which PyTorch keeps (allow_fp16_reduced_
    // precision_reduction = True).
    cublasMath_t mode = compute == RESQ_CUBLAS_F32
                            ? (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
                            : CUBLAS_DEFAULT_MATH;
    s = cublasSetMathMode(g_blas, mode);
  }
  if (s != CUBLAS_STATUS_SUCCESS) return blas_fail(s, what);
  const int lda = (int)fix_ld(ldw, N, K), ldb = (int)fix_ld(ldx, M, K);
  const int ldc = (int)fix_ld(ldy, M, N);
  if (compute == RESQ_CUBLAS_F16) {
    const __half one = __float2half(1.0f), zero = __float2half(0.0f);
    s = cublasGemmEx(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w, CUDA_R_16F, lda, x, CUDA_R_16F,
                     ldb, &zero, y, CUDA_R_16F, ldc, CUBLAS_COMPUTE_16F, CUBLAS_GEMM_DEFAULT);
  } else {
    const float one = 1.0f, zero = 0.0f;
    s = cublasGemmEx(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w, CUDA_R_16F, lda, x, CUDA_R_16F,
                     ldb, &zero, y, CUDA_R_16F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
  return s == CUBLAS_STATUS_SUCCESS ? RESQ_OK : blas_fail(s, what);
}

extern "C" resq_status resq_gemm_s8_s32__cublaslt(int64_t M, int64_t N, int64_t K, const int8_t *x, int64_t ldx,
                                                  const int8_t *w, int64_t ldw, int32_t *y, int64_t ldy) {
  const char *what = "resq_gemm_s8_s32__cublaslt";
  resq_status st = check_dims(M, N, K, x, ldx, w, ldw, y, ldy, what);
  if (st) return st;
  if (M == 0 || N == 0) return RESQ_OK;
  if (K == 0) return zero_rows(y, M, N, ldy, 4, what);
  const int64_t lda = fix_ld(ldw, N, K), ldb = fix_ld(ldx, M, K), ldc = fix_ld(ldy, M, N);
  if (K % 4 || lda % 4 || ldb % 4 || ldc % 4 || !rq_aligned(x, 4) || !rq_aligned(w, 4) || !rq_aligned(y, 4))
    return resq_fail(RESQ_ERR_UNSUPPORTED,
                     "%s: cuBLASLt integer GEMM needs K and leading dimensions multiples of 4 and 4-byte aligned "
                     "pointers (K=%lld, ldx=%lld, ldw=%lld, ldy=%lld)",
                     what, (long long)K, (long long)ldb, (long long)lda, (long long)ldc);
  if ((st = ensure_lt(what))) return st;
  cublasLtMatmulDesc_t op = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasStatus_t s = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I);
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
  // column-major shapes as stored: A = W is K x N (ld ldw), B = X is K x M (ld ldx), C = Y^T N x M
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, (uint64_t)K, (uint64_t)N, lda);
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, (uint64_t)K, (uint64_t)M, ldb);
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&lc, CUDA_R_32I, (uint64_t)N, (uint64_t)M, ldc);
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t heur;
  int found = 0;
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulPreferenceCreate(&pref);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g_lt_work_size,
                                             sizeof g_lt_work_size);
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulAlgoGetHeuristic(g_lt, op, la, lb, lc, lc, pref, 1, &heur, &found);
  if (s == CUBLAS_STATUS_SUCCESS && found < 1) s = CUBLAS_STATUS_NOT_SUPPORTED;
  if (s == CUBLAS_STATUS_SUCCESS) {
    const int32_t one = 1, zero = 0;
    s = cublasLtMatmul(g_lt, op, &one, w, la, x, lb, &zero, y, lc, y, lc, &heur.algo, g_lt_work, g_lt_work_size,
                       rq_stream());
  }
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (lc) cublasLtMatrixLayoutDestroy(lc);
  if (lb) cublasLtMatrixLayoutDestroy(lb);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (op) cublasLtMatmulDescDestroy(op);
  return s == CUBLAS_STATUS_SUCCESS ? RESQ_OK : blas_fail(s, what);
}
