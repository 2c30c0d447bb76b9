/* SPDX-License-Identifier: Apache-2.0
 * Internal interface of the CPU backend: dispatch state, the thread pool, the
 * per-call workspace, and the x86 target attribute used by the AVX-512 kernels. */
#ifndef RESQ_CPU_INTERNAL_H
#define RESQ_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "resq/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define RESQ_CPU_X86 1
/* Functions between RESQ_AVX512_BEGIN and RESQ_AVX512_END are compiled for the
 * AVX-512 path only; they run only after resq_cpu_active_isa() returned
 * RESQ_CPU_ISA_AVX512 (CPUID checked). -ffp-contract=off still applies there.
 * The AVX2 level's region is used when resq_cpu_active_isa() == RESQ_CPU_ISA_AVX2
 * (or AVX-512 CPUs told to use it); FMA is enabled for that target, not used:
 * the kernels multiply and add separately like the reference. The AMX region
 * holds the AMX level's kernels (resq_cpu_active_isa() == RESQ_CPU_ISA_AMX).
 * GCC takes the target from "#pragma GCC target"; clang ignores that pragma and
 * takes the same feature list as a target attribute pushed onto every function
 * of the region ("#pragma clang attribute"). The feature strings are the same. */
#define RESQ_TARGET_AVX512 "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,avx2,bmi,bmi2"
#define RESQ_TARGET_AVX2 "avx2,fma,f16c,bmi,bmi2"
#define RESQ_TARGET_AMX "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,avx2,bmi,bmi2,amx-tile,amx-int8"
#define RESQ_TARGET_PRAGMA_(x) _Pragma(#x)
#if defined(__clang__)
#define RESQ_TARGET_BEGIN_(features) \
  RESQ_TARGET_PRAGMA_(clang attribute push(__attribute__((target(features))), apply_to = function))
#define RESQ_TARGET_END_ _Pragma("clang attribute pop")
#else
#define RESQ_TARGET_BEGIN_(features) _Pragma("GCC push_options") RESQ_TARGET_PRAGMA_(GCC target(features))
#define RESQ_TARGET_END_ _Pragma("GCC pop_options")
#endif
#define RESQ_AVX512_BEGIN RESQ_TARGET_BEGIN_(RESQ_TARGET_AVX512)
#define RESQ_AVX512_END RESQ_TARGET_END_
#define RESQ_AVX2_BEGIN RESQ_TARGET_BEGIN_(RESQ_TARGET_AVX2)
#define RESQ_AVX2_END RESQ_TARGET_END_
#define RESQ_AMX_BEGIN RESQ_TARGET_BEGIN_(RESQ_TARGET_AMX)
#define RESQ_AMX_END RESQ_TARGET_END_
#else
#define RESQ_CPU_X86 0
#endif

/* The ISA to use for the call being made (reads RESQ_CPU_ISA once). */
resq_cpu_isa resq_cpu_active_isa(void);
/* 1 when the active ISA runs the AVX-512 kernels (RESQ_CPU_ISA_AVX512, or
 * RESQ_CPU_ISA_AMX, which differs from it only in the mixed GEMM's prefill). */
int resq_cpu_avx512_active(void);

#if RESQ_CPU_X86
/* len lo codes (two per byte, low nibble first) -> one byte each; returns their sum
 * (AVX-512 level; resq_gemm_q4q8_f16__cpu.c). */
int32_t resq_cpu_unpack_lo_avx512(const uint8_t *src, int64_t len, uint8_t *d);
/* The AMX level's mixed GEMM for one group (ngroups == 1), arguments already checked
 * (resq_gemm_q4q8_f16__cpu_amx.c). */
resq_status resq_cpu_gemm_q4q8_amx(const resq_qact_params *p, const resq_qact_layout *L, int64_t M,
                                   const resq_qact *x, const resq_qweight_cpu *w, const float *bias, float *yf,
                                   uint16_t *yh, int64_t ldy);
#endif

/* ---- thread pool ----
 * resq_cpu_parallel runs fn(arg, tid, nthreads) on nthreads threads (tid 0 is
 * the calling thread) and returns when all have finished. nthreads is clamped
 * to [1, resq_cpu_get_threads()]. Must be called between resq_cpu_lock() and
 * resq_cpu_unlock(). */
typedef void (*resq_cpu_task)(void *arg, int tid, int nthreads);
void resq_cpu_parallel(resq_cpu_task fn, void *arg, int nthreads);

/* Serialize calls (the pool and the workspace are shared). */
void resq_cpu_lock(void);
void resq_cpu_unlock(void);

/* Workspace of at least `bytes`, 64-byte aligned, valid until resq_cpu_unlock
 * (slots 0..5 are independent buffers: 0, 1 mixed GEMM; 2 Hadamard, FP16 GEMM;
 * 3 quantizer; 4 layer ops). NULL if the allocation fails. */
void *resq_cpu_workspace(int slot, size_t bytes);

/* Index of the first entry of a Hadamard sign vector that is not +1 or -1, or
 * -1. The first pass is a branch-free OR that the compiler vectorizes: +1 and
 * -1 are the only int8 values with (s + 1) & 0xFD == 0 (s + 1 = 2 or 0). A
 * compare-and-branch per entry took ~1.5 us of a 4096-wide call, as long as
 * the rotation of one row. */
static inline int64_t resq_cpu_first_bad_sign(const int8_t *s, int64_t n) {
  unsigned acc = 0;
  for (int64_t i = 0; i < n; i++) acc |= (unsigned)(uint8_t)(s[i] + 1) & 0xFDu;
  if (!acc) return -1;
  for (int64_t i = 0; i < n; i++)
    if (s[i] != 1 && s[i] != -1) return i;
  return -1;
}

/* A tuning override from the environment, read per call (tests set them
 * between calls; one getenv is ~25 ns here): the value of `name` when it is a
 * whole decimal integer >= min, else dflt (unset, empty, malformed or below
 * min: the default, never a half-parsed number). */
static inline int64_t resq_cpu_env_i64(const char *name, int64_t dflt, int64_t min) {
  const char *e = getenv(name);
  if (!e || !*e) return dflt;
  char *end;
  long long v = strtoll(e, &end, 10);
  return *end || v < min ? dflt : (int64_t)v;
}

/* Split [0, n) into nthreads contiguous ranges; range of thread tid. */
static inline void resq_cpu_range(int64_t n, int tid, int nthreads, int64_t *b, int64_t *e) {
  int64_t q = n / nthreads, rem = n % nthreads;
  *b = tid * q + (tid < rem ? tid : rem);
  *e = *b + q + (tid < rem ? 1 : 0);
}

#endif
