// SPDX-License-Identifier: Apache-2.0
// CUDA Hadamard rotation: resq_hadamard_f32__cuda, resq_hadamard_f16__cuda.
//
// STATUS: COMPILED ONLY. Built with CUDA 13.0 for sm_80/86/89/90 on a machine
// without a GPU; these kernels have NEVER BEEN RUN. The host emulation test
// (verify/cuda_host_test.cu, runs everywhere) replays their data movement and
// arithmetic and matches the reference bit for bit; verify/cuda_hadamard_test.c
// checks the real kernels bit for bit once a GPU is available.
//
// Design (Dao-AILab fast_hadamard_transform lineage, rq_hadamard.cuh): one CTA
// per row (or several rows when a row needs fewer than 128 threads), fp32
// registers, ascending-stride butterflies in-thread -> __shfl_xor_sync ->
// shared-memory transpose, one multiply by inv, then the hadK mix in registers
// as FFMA(+-1, u, acc) chains (exact, fixed left-to-right order), signs from a
// shared-memory tile expanded from __constant__ bit masks.
#include "rq_hadamard_kernel.cuh"

extern "C" size_t resq_hadamard_workspace_size__cuda(int64_t n) {
  (void)n;
  return 0;
}

extern "C" resq_status resq_hadamard_supported__cuda(int64_t n) {
  rq_had_plan p = {};
  // rows = 0: only the size is checked (pointer and ld checks need rows > 0)
  return rq_had_check(0, n, NULL, n, NULL, n, &p);
}

template <class IO>
static resq_status rq_hadamard(int64_t rows, int64_t n, const void *x, int64_t ldx, void *y, int64_t ldy,
                               const int8_t *signs, const char *what) {
  rq_had_plan p = {};
  resq_status st = rq_had_check(rows, n, x, ldx, y, ldy, &p);
  if (st) return st;
  if (rows == 0) return RESQ_OK;
  const unsigned es = sizeof(typename IO::in_t);
  rq_had_args a = rq_had_args_for(p, rows, n, x, ldx, signs, es);
  a.y = y;
  a.ldy = ldy;
  a.vec_out = p.Q >= 8 && rq_aligned(y, 16) && (rows <= 1 || (ldy * (int64_t)es) % 16 == 0);
  return rq_had_run<IO>(p, a, what);
}

extern "C" resq_status resq_hadamard_f32__cuda(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y,
                                               int64_t ldy, const int8_t *signs, void *work, size_t work_size) {
  (void)work, (void)work_size;  // no workspace (cuda.h)
  return rq_hadamard<rq_io_f32>(rows, n, x, ldx, y, ldy, signs, "resq_hadamard_f32__cuda");
}

extern "C" resq_status resq_hadamard_f16__cuda(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                               uint16_t *y, int64_t ldy, const int8_t *signs, void *work,
                                               size_t work_size) {
  (void)work, (void)work_size;
  return rq_hadamard<rq_io_f16>(rows, n, x, ldx, y, ldy, signs, "resq_hadamard_f16__cuda");
}
