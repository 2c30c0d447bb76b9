/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_util.h -- what the C benchmark programs share: buffers, random
 * fills, the cold-weights rule, the quick/full sets, the layer shapes of
 * bench/shapes/, and the facts recorded in the JSON context.
 *
 * Environment (bench/run_all sets the first one):
 *   RESQ_BENCH_SET=quick|full     which sizes are registered (default full)
 *   RESQ_BENCH_SHAPES_DIR=<dir>   layer shape files (default: the source tree's bench/shapes)
 *   RESQ_BENCH_COLD_BYTES=<n>     working set of rotated weight copies
 *                                 (default max(256 MiB, 2 x last-level cache)) */
#ifndef RESQ_BENCH_UTIL_H
#define RESQ_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "resq/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RB_MIB ((size_t)1 << 20)

/* 64-byte aligned (2 MiB aligned with a transparent-huge-page hint above 4 MiB);
 * NULL on failure. Memory is not touched. */
void *rb_alloc(size_t bytes);
void rb_free(void *p);

/* Monotonic seconds. */
double rb_now(void);

/* Random fills (deterministic for a given rng state). */
void rb_fill_f32_uniform(resq_rng *r, float *x, size_t n, float lo, float hi);
void rb_fill_f16_normal(resq_rng *r, uint16_t *x, size_t n);        /* N(0,1) rounded to f16 */
void rb_fill_bf16_uniform(resq_rng *r, uint16_t *x, size_t n);      /* U(-1,1) rounded to bf16 */
void rb_fill_u8(resq_rng *r, uint8_t *x, size_t n);                 /* 0..255 */
void rb_fill_s8(resq_rng *r, int8_t *x, size_t n);                  /* -128..127 */

/* Size of the last-level cache in bytes (0 if unknown). */
size_t rb_llc_bytes(void);
/* The cold working set: RESQ_BENCH_COLD_BYTES or max(256 MiB, 2 x LLC). */
size_t rb_cold_bytes(void);
/* Number of weight copies of `bytes` each so that the copies together reach
 * rb_cold_bytes() (at least 1). */
int rb_copies_for(size_t bytes);

/* 1 in quick mode (RESQ_BENCH_SET=quick), else 0. */
int rb_quick(void);

/* Layer shapes (bench/shapes/<model>.txt: lines "name N K [quick]") and the
 * token counts (bench/shapes/tokens.conf: lines "<set> M..."). */
#define RB_MAX_SHAPES 64
#define RB_MAX_TOKENS 16
typedef struct rb_shape {
  int64_t N, K;
  char layers[256]; /* "llama2-7b:q_proj,k_proj;llama3-8b:q_proj" */
} rb_shape;
typedef struct rb_shapes {
  int nshapes;
  rb_shape shape[RB_MAX_SHAPES]; /* distinct (N, K) of the current set, in file order */
  int ntokens;
  int64_t tokens[RB_MAX_TOKENS]; /* M values of the current set */
} rb_shapes;
/* Load the shapes of the current set; on error prints why and returns -1. */
int rb_shapes_load(rb_shapes *out);

/* One line describing every thread of this process: "tid:cpus_allowed@last_cpu ...".
 * Returns the smallest number of CPUs any thread may run on. */
int rb_thread_placement(char *buf, size_t n);

/* Record the common context: set, compiler, cold working set, LLC, CPU
 * affinity of the process, the threading environment variables. */
void rb_context_common(void);

/* In-process DRAM read probe: `threads` pthreads sum 64-byte vectors
 * (AVX-512 where present) over the n buffers (each split between the threads),
 * `reps` times; returns the median bytes/s. Used right after a decode-sized
 * GEMM over its own weight copies, so that its bandwidth fraction is taken
 * against the host state it ran in (memory bandwidth of shared hosts moves
 * 2-4x within minutes). */
double rb_read_probe(void *const *bufs, const size_t *sizes, int n, int threads, int reps);

/* Paired timing of two calls A and B (each returns 0, or nonzero on failure):
 * n pairs, the side that goes first alternating. Each side of a pair runs
 * untimed calls for warm_s (at least one), then timed calls for block_s (at
 * least one: warm_s = block_s = 0 is one untimed and one timed call), and its
 * time is the mean of its timed calls; ratio_i = t(A) / t(B) of pair i, so a
 * value > 1 means B is faster. n: as many pairs as fit in budget_s seconds by
 * a first pair, odd, clamped to [nmin, nmax] (nmax <= RB_PAIRS_MAX). Fills
 * the median and quartiles of the n ratios and returns n, or returns -1 (the
 * failing side's status in *bad, stats untouched) if a call failed. Why: two
 * benchmarks of the same shape run seconds to minutes apart, and a shared
 * host's bandwidth and clock move between them more than most kernel changes;
 * the two calls of one pair run within milliseconds of each other. */
#define RB_PAIRS_MAX 201
typedef int (*rb_pair_fn)(void *ctx);
typedef struct rb_pair_stats {
  double med, q1, q3;
  int n;
} rb_pair_stats;
int rb_pair_times(rb_pair_fn a, void *actx, rb_pair_fn b, void *bctx, double warm_s, double block_s,
                  double budget_s, int nmin, int nmax, rb_pair_stats *out, int *bad);

/* The relative error bound gamma_K = K u / (1 - K u), u = 2^-24, of an fp32
 * sum of K terms in any order (ref/CONTRACT.md section 11: a GEMM result y
 * from a library must satisfy |y - y*| <= gamma_K * sum_k |x_k w_k|). */
double rb_gamma_f32(int64_t K);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_BENCH_UTIL_H */
