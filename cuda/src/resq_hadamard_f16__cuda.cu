// SPDX-License-Identifier: Apache-2.0
// CUDA Hadamard rotation, f16 in and out (fp32 math, one RNE rounding):
// resq_hadamard_f16__cuda. Kernel template and design: rq_hadamard_kernel.cuh,
// resq_hadamard_f32__cuda.cu.
//
// STATUS: COMPILED ONLY (CUDA 13.0, sm_80/86/89/90, no GPU here); never run.
#include "rq_hadamard_kernel.cuh"

extern "C" resq_status resq_hadamard_f16__cuda(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                               uint16_t *y, int64_t ldy, const int8_t *signs, void *work,
                                               size_t work_size) {
  (void)work, (void)work_size;
  const char *what = "resq_hadamard_f16__cuda";
  rq_had_plan p = {};
  resq_status st = rq_had_check(rows, n, x, ldx, y, ldy, &p);
  if (st) return st;
  if (rows == 0) return RESQ_OK;
  rq_had_args a = rq_had_args_for(p, rows, n, x, ldx, signs, 2);
  a.y = y;
  a.ldy = ldy;
  a.vec_out = p.Q >= 8 && rq_aligned(y, 16) && (rows <= 1 || (ldy * 2) % 16 == 0);
  return rq_had_run<rq_io_f16>(p, a, what);
}
