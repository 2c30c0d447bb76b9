// SPDX-License-Identifier: Apache-2.0
// Fused down_proj-input kernels (resq/cuda.h):
//   resq_hadamard_quant_f16_q4__cuda        Hadamard (fp32) + 4-bit per-token quantization
//   resq_silu_hadamard_quant_f16_q4__cuda   z = SiLU(g)*u, Hadamard, 4-bit quantization
// Both are the Hadamard kernel template (rq_hadamard_kernel.cuh) with the
// quantizing epilogue; the SiLU input is a runtime mode of the same kernels (no
// extra instantiations).
//
// STATUS: COMPILED ONLY (CUDA 13.0, sm_80/86/89/90, no GPU here); never run.
// verify/cuda_host_test.cpp replays the fused epilogue on the host (cpu label);
// verify/cuda_quant_test.c compares the kernels with the reference composition
// bit for bit on a GPU.
#include "rq_hadamard_kernel.cuh"
#include "rq_silu.cuh"

namespace {

resq_status rq_fused_check(int64_t rows, int64_t n, const void *x, int64_t ldx, const resq_qact_params *p,
                           const resq_qact *out, rq_had_plan *plan, const char *what) {
  resq_status st = rq_had_check(rows, n, x, ldx, x, ldx, plan);
  if (st) return st;
  resq_qact_layout L;
  if ((st = resq_qact_check(p, &L))) return st;
  if (p->K != n) return resq_fail(RESQ_ERR_SHAPE, "%s: p->K=%lld but n=%lld", what, (long long)p->K, (long long)n);
  if (p->group != n || p->r != 0)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: only the per-token 4-bit form (group = n, r = 0) is fused", what);
  if (p->mode != RESQ_QMODE_PATH_A)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "%s: path B is a reference-only mode (CONTRACT s.4)", what);
  if (!out) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL output descriptor", what);
  if (rows > 0 && (!out->q_lo || !out->scale_lo || !out->zero_lo))
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: q_lo/scale_lo/zero_lo is NULL", what);
  if (rows > 1 && out->ld_lo < L.lo_bytes)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ld_lo=%lld < %lld bytes per row", what, (long long)out->ld_lo,
                     (long long)L.lo_bytes);
  return RESQ_OK;
}

rq_had_args rq_fused_args(const rq_had_plan &pl, int64_t rows, int64_t n, const void *x, int64_t ldx,
                          const int8_t *signs, const resq_qact_params *p, const resq_qact *out) {
  rq_had_args a = rq_had_args_for(pl, rows, n, x, ldx, signs, 2);
  a.q = out->q_lo;
  a.ldq = out->ld_lo;
  a.scale = out->scale_lo;
  a.zero = out->zero_lo;
  a.clip = p->clip;
  a.maxq = (float)resq_qmax_asym(p->bits_lo);
  // 4-byte code stores: runs of Q >= 8 codes start at byte multiples of 4
  a.vec_out = pl.Q >= 8 && rq_aligned(out->q_lo, 4) && (rows <= 1 || out->ld_lo % 4 == 0);
  return a;
}

}  // namespace

extern "C" resq_status resq_hadamard_quant_f16_q4__cuda(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                                        const int8_t *signs, const resq_qact_params *p,
                                                        const resq_qact *out) {
  const char *what = "resq_hadamard_quant_f16_q4__cuda";
  rq_had_plan pl = {};
  resq_status st = rq_fused_check(rows, n, x, ldx, p, out, &pl, what);
  if (st) return st;
  if (rows == 0) return RESQ_OK;
  rq_had_args a = rq_fused_args(pl, rows, n, x, ldx, signs, p, out);
  return rq_had_run<rq_io_q4>(pl, a, what);
}

extern "C" resq_status resq_silu_hadamard_quant_f16_q4__cuda(int64_t rows, int64_t n, const uint16_t *g,
                                                             int64_t ldg, const uint16_t *u, int64_t ldu,
                                                             const int8_t *signs, const resq_qact_params *p,
                                                             const resq_qact *out) {
  const char *what = "resq_silu_hadamard_quant_f16_q4__cuda";
  rq_had_plan pl = {};
  resq_status st = rq_fused_check(rows, n, g, ldg, p, out, &pl, what);
  if (st) return st;
  if (rows > 0 && !u) return resq_fail(RESQ_ERR_INVALID_ARG, "%s: NULL u", what);
  if (rows > 1 && ldu < n)
    return resq_fail(RESQ_ERR_INVALID_ARG, "%s: ldu=%lld < n=%lld", what, (long long)ldu, (long long)n);
  if (rows == 0) return RESQ_OK;
  const float *lut = rq_silu_table(&st);
  if (!lut) return st;
  rq_had_args a = rq_fused_args(pl, rows, n, g, ldg, signs, p, out);
  a.u = u;
  a.ldu = ldu;
  a.silu = lut;
  a.vec_in = a.vec_in && rq_aligned(u, 16) && (rows <= 1 || (ldu * 2) % 16 == 0);
  return rq_had_run<rq_io_q4>(pl, a, what);
}
