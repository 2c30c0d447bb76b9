/* SPDX-License-Identifier: Apache-2.0
 * Internal: the per-row building blocks shared by the Hadamard, the quantizer
 * and the fused Hadamard + quantizer of the CPU backend. */
#ifndef RESQ_CPU_ROWS_H
#define RESQ_CPU_ROWS_H

#include <stdint.h>

#include "cpu_internal.h"

/* ---- Hadamard of one row (ref/CONTRACT.md section 2, bit-exact) ----
 * The input row is f32 (x32) or f16 (x16); the output goes to y32 (f32) or
 * y16 (f16, RNE; *overflow set when an output rounds to +-Inf, the row is then
 * partly written). t is scratch of t_len floats, nu of n, both 64-byte aligned.
 * next: the input row to be rotated after this one (prefetched into L2 while
 * this row is computed in L1), or NULL. */
typedef struct had_plan {
  int64_t n, m;
  int K, lm; /* n = K * m, m = 2^lm */
  float inv;
  /* t holds the K blocks of m elements ms floats apart: ms = m + 16 when
   * K > 1 and m >= 512. The mix reads the same 64 positions of all K blocks,
   * and blocks 2 KiB or more apart fall into at most 2 groups of L1 sets
   * (12 ways; K >= 28 blocks of 4 lines each); one extra line per block
   * spreads them (n = 14336 = 28 x 512: 3-4 % less time in alternating
   * calls). Smaller blocks already spread, and padding K = 172 blocks of 64
   * would push t (44 KiB) out of the 48 KiB L1. */
  int64_t ms, t_len;
  const uint8_t *neg; /* [K][K]: 1 where hadK[a][c] = -1 (NULL for K = 1) */
  /* hadK[a][c] as -1.0f / +1.0f in panels of 4 rows: sgn_p[(a / 4) 4K + 4c + a % 4]
   * (every K is a multiple of 4). The mix broadcasts the signs of 4 or 8
   * rows for one column at a time: adjacent here, and one sequential stream
   * per panel (K = 172: the table is 116 KiB, beyond L1; row-major it was 4
   * or 8 streams, column-major 1 line per column for 16 bytes). */
  const float *sgn_p;
  const float *sgz_p; /* the same signs as -0.0f / +0.0f (the sign bit alone), same layout */
  const int8_t *signs;
  int avx512;
  int avx2; /* the AVX2 row (resq_cpu_active_isa() == RESQ_CPU_ISA_AVX2 when planned) */
  /* K = 1 only: write the outputs with non-temporal stores (f16 rows staged
   * whole in nu first, so each store fills a line); the caller must sfence
   * before the rows are read by another thread. Set by the standalone
   * Hadamard for outputs that leave the L3 anyway (see HAD_NT_MIN_BYTES_PER_THREAD
   * in resq_hadamard_f32__cpu.c). */
  int nt;
  /* K = 1 only, ordinary stores: prefetch each row's output lines into L2
   * during its first pass (had_io.pfy; rows given a next row only). Set by
   * the standalone Hadamard (see HAD_PFO_MIN_BYTES_PER_THREAD). */
  int pfo;
  /* m = 512: 1 runs the ninth stage as its own pass over t instead of inside the
   * first pass (RESQ_CPU_HAD_F9=0 when planned; for A/B timing and the tests) */
  int no_f9;
  /* K = 28: the mix with its signs compiled in (mix28_all in resq_hadamard_f32__cpu.c);
   * RESQ_CPU_HAD_K28=0 when planned keeps the table-driven mix (A/B timing, the tests) */
  int k28;
} had_plan;

/* Position of element i of the row in t (its block c = i / m starts at c * ms) */
static inline int64_t had_tpos(const had_plan *hp, int64_t i) { return i + (i >> hp->lm) * (hp->ms - hp->m); }

/* Fill a plan (n must be supported; the table is cached per K). */
resq_status resq_cpu_had_plan(int64_t n, const int8_t *signs, int avx512, had_plan *hp);
void resq_cpu_had_row(const had_plan *hp, const float *x32, const uint16_t *x16, float *y32, uint16_t *y16,
                      float *t, float *nu, int *overflow, const void *next);

/* ---- path-A quantization of one row (ref/CONTRACT.md section 3, bit-exact) ----
 * Reads f32 (x32) or f16 (x16). Returns 0, or 1 when a part's scale is not a
 * positive finite number (then nothing of this row was written and *bad_* say
 * where). */
typedef struct quant_plan {
  int64_t K, group, r, lpg, lo_bpg, ngroups;
  int64_t ppg, nparts, p_al; /* parts per group (1 or 2), parts per row, rounded up to 16 */
  int bits_lo, bits_hi;
  float clip;
  float maxq16[16]; /* maxq of parts 16j + i (the pattern repeats every 16 parts) */
  int avx512;
  int avx2; /* the portable row with its range and code loops in AVX2 (RESQ_CPU_ISA_AVX2 when planned) */
} quant_plan;

typedef struct quant_fail {
  int64_t row, c0, c1;
  float mn, mx, s; /* the part's range (after the clip) and scale; a NaN or +-Inf range: the part holds one */
} quant_fail;

void resq_cpu_quant_plan(const resq_qact_params *p, const resq_qact_layout *L, int avx512, quant_plan *qp);
/* floats of the sc scratch of resq_cpu_quant_row (a multiple of 16) */
int64_t resq_cpu_quant_scratch(const quant_plan *qp);
/* sc: scratch of resq_cpu_quant_scratch() floats, 64-byte aligned (per-part
 * minima, maxima and parameters of the row). next: the row to be quantized
 * after this one (its bytes are prefetched into L2 during the codes pass), or
 * NULL. */
int resq_cpu_quant_row(const quant_plan *qp, const float *x32, const uint16_t *x16, int64_t m, const resq_qact *out,
                       float *sc, quant_fail *fail, const void *next);

#endif
