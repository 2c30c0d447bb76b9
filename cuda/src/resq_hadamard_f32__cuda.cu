// SPDX-License-Identifier: Apache-2.0
// CUDA Hadamard rotation, fp32: resq_hadamard_f32__cuda (+ the size queries).
// The f16 entry point is resq_hadamard_f16__cuda.cu, the fused Hadamard +
// 4-bit quantization resq_hadamard_quant_f16_q4__cuda.cu: one I/O policy per
// translation unit, so that the three compile in parallel.
//
// STATUS: COMPILED ONLY. Built with CUDA 13.0 for sm_80/86/89/90 on a machine
// without a GPU; these kernels have NEVER BEEN RUN. The host emulation test
// (verify/cuda_host_test.cpp, runs everywhere) replays their data movement and
// arithmetic and matches the reference bit for bit; verify/cuda_hadamard_test.c
// checks the real kernels bit for bit once a GPU is available.
//
// Design (Dao-AILab fast_hadamard_transform lineage, rq_hadamard.cuh): one CTA
// per row (or several rows when a row needs fewer than 128 threads), fp32
// registers, ascending-stride butterflies in-thread -> __shfl_xor_sync ->
// shared-memory transpose, one multiply by inv, then the hadK mix as
// FFMA(+-1, u, acc) chains (exact, fixed left-to-right order): from registers
// for K <= 60, from a shared-memory copy of the row for K >= 108; signs from a
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

extern "C" resq_status resq_hadamard_f32__cuda(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y,
                                               int64_t ldy, const int8_t *signs, void *work, size_t work_size) {
  (void)work, (void)work_size;  // no workspace (cuda.h)
  const char *what = "resq_hadamard_f32__cuda";
  rq_had_plan p = {};
  resq_status st = rq_had_check(rows, n, x, ldx, y, ldy, &p);
  if (st) return st;
  if (rows == 0) return RESQ_OK;
  rq_had_args a = rq_had_args_for(p, rows, n, x, ldx, signs, 4);
  a.y = y;
  a.ldy = ldy;
  a.vec_out = p.Q >= 8 && rq_aligned(y, 16) && (rows <= 1 || (ldy * 4) % 16 == 0);
  return rq_had_run<rq_io_f32>(p, a, what);
}
