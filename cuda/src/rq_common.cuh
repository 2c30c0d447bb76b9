// SPDX-License-Identifier: Apache-2.0
// Internal helpers shared by the CUDA kernels (device) and by the host emulation
// test verify/cuda_host_test.cu (host). Everything here is __host__ __device__ so
// that the host test runs the very index/arithmetic code the kernels run.
//
// Exact arithmetic: ref/CONTRACT.md section 1 fixes one IEEE binary32 rounding
// per written operation, round-to-nearest-even, no contraction. On the device the
// intrinsics below make that explicit (the library is also built with
// --fmad=false -prec-div=true); on the host the plain operators are IEEE binary32
// on x86-64/aarch64 as long as the translation unit is compiled with
// -ffp-contract=off (verify/gpu.cmake does that for the host test).
#ifndef RESQ_CUDA_RQ_COMMON_CUH
#define RESQ_CUDA_RQ_COMMON_CUH

#include <stdint.h>

#include <cmath>

#if defined(__CUDACC__)
#define RQ_HD __host__ __device__ __forceinline__
#else
#define RQ_HD inline
#endif
// "#pragma unroll" only where nvcc compiles device code: the host compiler
// (gcc -Wall) rejects unknown pragmas in the __host__ __device__ functions.
#if defined(__CUDA_ARCH__)
#define RQ_UNROLL _Pragma("unroll")
#else
#define RQ_UNROLL
#endif

RQ_HD float rq_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
RQ_HD float rq_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
RQ_HD float rq_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
RQ_HD float rq_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
// s * u + acc with ONE rounding. Used only with s = +1.0f or -1.0f: the product
// is then exact (a sign flip), so the result is exactly the rounded acc + u or
// acc - u of the contract (IEEE defines x - y as x + (-y), signed zeros
// included). One FFMA instead of a sign select plus an FADD.
RQ_HD float rq_fma_sign(float s, float u, float acc) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(s, u, acc);
#else
  return std::fma(s, u, acc);
#endif
}
// round half to even (rint in the default rounding mode)
RQ_HD float rq_rint(float v) {
#if defined(__CUDA_ARCH__)
  return rintf(v);
#else
  return std::nearbyint(v);
#endif
}

RQ_HD int rq_log2i(int64_t v) {  // v a power of two
  int l = 0;
  while ((int64_t(1) << l) < v) l++;
  return l;
}
RQ_HD int64_t rq_pow2ceil(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// min/max with the reference's semantics: "if (v < mn) mn = v" starting from
// +0. Written as selects on < / >, never fminf/fmaxf: fminf(-0, +0) may return
// -0, while the reference keeps the +0 it started from. With these selects the
// result is the same for every reduction order (the value is the true min/max;
// a zero result is always the +0 the accumulators start from), so any
// shuffle/shared-memory tree reproduces the reference's sequential loop.
RQ_HD float rq_min(float acc, float v) { return v < acc ? v : acc; }
RQ_HD float rq_max(float acc, float v) { return v > acc ? v : acc; }

#endif
