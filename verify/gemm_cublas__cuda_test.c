/* SPDX-License-Identifier: Apache-2.0
 * The library baselines of the mixed GEMM (resq/cuda_gemm.h) ON A GPU (label gpu; exit 77
 * without one). --lib f16: resq_gemm_f16__cublas in its three compute modes; --lib s8:
 * resq_gemm_s8_s32__cublaslt.
 *
 * f16 checks:
 *  - exact by construction: x, w small integers in [-2, 2] and K <= 512, so every partial sum is
 *    an integer of magnitude <= 4K <= 2048, exactly representable in fp16 and fp32: any
 *    summation order, split, accumulation precision (fp16 or fp32) and rounding mode (RN, or the
 *    RZ/truncation tensor cores use) gives the exact result, which equals the reference's bits.
 *    This is the only check of the fp16-accumulate and "PyTorch default" modes: cuBLAS does not
 *    specify the precision of their split-K reductions, so no bound can be derived for them.
 *  - RESQ_CUBLAS_F32 on random data within a derived bound (next to the comparison).
 * s8: s8 x s8 -> s32 is exact integer arithmetic: bit for bit against a host product,
 * including |y| near 2^31; shapes outside cuBLASLt's integer rules give RESQ_ERR_UNSUPPORTED. */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/rng.h"
#include "resq_check.h"
#include "resq_gpu.h"

static void *xmalloc(size_t n) {
  void *p = calloc(n + 64, 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}
static void *dalloc(size_t n) {
  void *p = NULL;
  if (resq_cuda_malloc(&p, n + 64) != RESQ_OK) {
    fprintf(stderr, "cudaMalloc: %s\n", resq_last_error());
    exit(2);
  }
  return p;
}

static const char *mode_name(resq_cublas_compute c) {
  return c == RESQ_CUBLAS_F32 ? "fp32" : c == RESQ_CUBLAS_F32_PYTORCH ? "fp32 (PyTorch default math)" : "fp16";
}

/* y = X W^T on the device (padded leading dimensions), copied back to yh [M][N]. */
static resq_status run_f16(int64_t M, int64_t N, int64_t K, const uint16_t *x, const uint16_t *w, uint16_t *yh,
                           resq_cublas_compute c) {
  const int64_t ldx = K + 8, ldw = K + 16, ldy = N + 4;
  uint16_t *xh = xmalloc((size_t)(M * ldx) * 2), *wh = xmalloc((size_t)(N * ldw) * 2);
  for (int64_t m = 0; m < M; m++) memcpy(xh + m * ldx, x + m * K, (size_t)K * 2);
  for (int64_t n = 0; n < N; n++) memcpy(wh + n * ldw, w + n * K, (size_t)K * 2);
  uint16_t *dx = dalloc((size_t)(M * ldx) * 2), *dw = dalloc((size_t)(N * ldw) * 2), *dy = dalloc((size_t)(M * ldy) * 2);
  resq_cuda_h2d(dx, xh, (size_t)(M * ldx) * 2);
  resq_cuda_h2d(dw, wh, (size_t)(N * ldw) * 2);
  resq_status st = resq_gemm_f16__cublas(M, N, K, dx, ldx, dw, ldw, dy, ldy, c);
  if (!st) st = resq_cuda_sync();
  if (!st) {
    uint16_t *t = xmalloc((size_t)(M * ldy) * 2);
    resq_cuda_d2h(t, dy, (size_t)(M * ldy) * 2);
    for (int64_t m = 0; m < M; m++) memcpy(yh + m * N, t + m * ldy, (size_t)N * 2);
    free(t);
  }
  resq_cuda_free(dx), resq_cuda_free(dw), resq_cuda_free(dy);
  free(xh), free(wh);
  return st;
}

static void case_f16_exact(void) {
  if (!rc_case("f16_exact_integers_all_modes")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t shapes[][3] = {{1, 64, 512}, {16, 4096, 256}, {7, 33, 100}, {130, 257, 512}, {512, 1024, 64},
                                      {3, 5, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    rc_note("M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
    uint16_t *x = xmalloc((size_t)(M * K) * 2), *w = xmalloc((size_t)(N * K) * 2);
    for (int64_t i = 0; i < M * K; i++) x[i] = resq_f32_to_f16((float)resq_rng_range(&r, -2, 2));
    for (int64_t i = 0; i < N * K; i++) w[i] = resq_f32_to_f16((float)resq_rng_range(&r, -2, 2));
    uint16_t *ref = xmalloc((size_t)(M * N) * 2), *got = xmalloc((size_t)(M * N) * 2);
    RC_CHECK(resq_gemm_f16__ref(M, N, K, x, K, w, K, NULL, ref, N) == RESQ_OK, "ref");
    for (int c = 0; c < 3; c++) {
      resq_status st = run_f16(M, N, K, x, w, got, (resq_cublas_compute)c);
      if (RC_CHECK(st == RESQ_OK, "%s: %s", mode_name((resq_cublas_compute)c), resq_last_error()))
        rc_equal_u16(got, ref, (size_t)(M * N), mode_name((resq_cublas_compute)c));
    }
    free(x), free(w), free(ref), free(got);
  }
}

static void case_f16_bound(void) {
  if (!rc_case("f16_fp32_accumulate_random_within_bound")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t shapes[][3] = {{1, 4096, 4096}, {16, 1024, 4096}, {128, 512, 14336}, {33, 100, 1000}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    rc_note("M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
    uint16_t *x = xmalloc((size_t)(M * K) * 2), *w = xmalloc((size_t)(N * K) * 2), *got = xmalloc((size_t)(M * N) * 2);
    for (int64_t i = 0; i < M * K; i++) x[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
    for (int64_t i = 0; i < N * K; i++) w[i] = resq_f32_to_f16((float)resq_rng_normal(&r) * 0.05f);
    resq_status st = run_f16(M, N, K, x, w, got, RESQ_CUBLAS_F32);
    if (RC_CHECK(st == RESQ_OK, "cublas: %s", resq_last_error())) {
      float *gf = xmalloc((size_t)(M * N) * 4);
      double *ref = xmalloc((size_t)(M * N) * 8), *tol = xmalloc((size_t)(M * N) * 8);
      /* Bound. Every product of two fp16 values is exact in fp32. Model of the fp32-accumulate
       * tensor-core path (Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor
       * cores", PeerJ CS 2021): addends aligned to the largest exponent with the shifted-out bits
       * truncated, then normalized with truncation -- at most 2 truncations of <= 2u each per
       * addition, so every addition of the sum (any order, any split; split-K partials are
       * reduced in fp32 in this mode) has relative error <= eps = 4u w.r.t. its exact result,
       * u = 2^-24. The standard analysis of a sum of K terms in any order then gives
       *   |s - y*| <= gamma_K(eps) * sum_k |x_k w_k|,   gamma_K = K eps / (1 - K eps),
       * and the final conversion to fp16 adds at most one fp16 ulp, 2 u16 |s| (u16 = 2^-11; RN
       * would give u16, the factor 2 also covers a truncating conversion), with |s| <= |y*| plus
       * that bound. */
      const double eps = 4.0 * ldexp(1.0, -24), u16 = 2.0 * ldexp(1.0, -11);
      const double gam = (double)K * eps / (1.0 - (double)K * eps);
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
          double sum = 0.0, abs = 0.0;
          for (int64_t k = 0; k < K; k++) {
            double p = (double)resq_f16_to_f32(x[m * K + k]) * (double)resq_f16_to_f32(w[n * K + k]);
            sum += p;
            abs += fabs(p);
          }
          double e = gam * abs;
          ref[m * N + n] = sum;
          tol[m * N + n] = e + u16 * (fabs(sum) + e) + ldexp(1.0, -24); /* + one fp16 ulp below 2^-14 */
          gf[m * N + n] = resq_f16_to_f32(got[m * N + n]);
        }
      rc_within(gf, ref, tol, 0.0, (size_t)(M * N), "cublas fp32-accumulate vs exact");
      free(gf), free(ref), free(tol);
    }
    free(x), free(w), free(got);
  }
}

static void case_s8(void) {
  if (!rc_case("s8_s32_exact")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* M, N, K, extreme (all -128: |y| = 16384 K) */
  static const int64_t shapes[][4] = {{1, 4096, 4096, 0}, {16, 4096, 4096, 0}, {128, 1024, 512, 0}, {7, 36, 100, 0},
                                      {33, 260, 64, 0},   {4, 8, 131068, 1},   {2048, 512, 4096, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    rc_note("M=%lld N=%lld K=%lld extreme=%lld", (long long)M, (long long)N, (long long)K, (long long)shapes[s][3]);
    const int64_t ldx = K + 4, ldw = K + 12, ldy = N + 4;
    int8_t *x = xmalloc((size_t)(M * ldx)), *w = xmalloc((size_t)(N * ldw));
    for (int64_t i = 0; i < M * ldx; i++) x[i] = (int8_t)(shapes[s][3] ? -128 : resq_rng_range(&r, -128, 127));
    for (int64_t i = 0; i < N * ldw; i++) w[i] = (int8_t)(shapes[s][3] ? -128 : resq_rng_range(&r, -128, 127));
    int32_t *want = xmalloc((size_t)(M * N) * 4), *got = xmalloc((size_t)(M * ldy) * 4);
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        int64_t acc = 0;
        for (int64_t k = 0; k < K; k++) acc += (int64_t)x[m * ldx + k] * w[n * ldw + k];
        want[m * N + n] = (int32_t)acc; /* |acc| <= 16384 K < 2^31 for these K */
      }
    int8_t *dx = dalloc((size_t)(M * ldx)), *dw = dalloc((size_t)(N * ldw));
    int32_t *dy = dalloc((size_t)(M * ldy) * 4);
    resq_cuda_h2d(dx, x, (size_t)(M * ldx));
    resq_cuda_h2d(dw, w, (size_t)(N * ldw));
    resq_status st = resq_gemm_s8_s32__cublaslt(M, N, K, dx, ldx, dw, ldw, dy, ldy);
    if (!st) st = resq_cuda_sync();
    if (RC_CHECK(st == RESQ_OK, "cublaslt: %s", resq_last_error())) {
      resq_cuda_d2h(got, dy, (size_t)(M * ldy) * 4);
      for (int64_t m = 0; m < M; m++) memmove(got + m * N, got + m * ldy, (size_t)N * 4);
      rc_equal_i32(got, want, (size_t)(M * N), "cublaslt s8 x s8 -> s32");
    }
    resq_cuda_free(dx), resq_cuda_free(dw), resq_cuda_free(dy);
    free(x), free(w), free(want), free(got);
  }
  /* shapes outside cuBLASLt's integer rules are refused, nothing launched */
  int8_t *d = dalloc(4096);
  RC_CHECK(resq_gemm_s8_s32__cublaslt(4, 4, 6, d, 6, d, 6, (int32_t *)d, 4) == RESQ_ERR_UNSUPPORTED, "K = 6");
  RC_CHECK(resq_gemm_s8_s32__cublaslt(4, 4, 8, d + 1, 8, d, 8, (int32_t *)d, 4) == RESQ_ERR_UNSUPPORTED, "unaligned");
  RC_CHECK(resq_gemm_s8_s32__cublaslt(-1, 4, 8, d, 8, d, 8, (int32_t *)d, 4) == RESQ_ERR_INVALID_ARG, "M < 0");
  resq_cuda_free(d);
}

int main(int argc, char **argv) {
  rc_init("gemm_cublas__cuda_test", argc, argv);
  rc_gpu_require("gemm_cublas__cuda_test");
  const char *lib = rc_arg("lib");
  if (!lib || strcmp(lib, "f16") == 0) {
    case_f16_exact();
    case_f16_bound();
  }
  if (!lib || strcmp(lib, "s8") == 0) case_s8();
  resq_cublas_release();
  return rc_finish();
}
