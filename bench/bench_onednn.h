/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_onednn.h -- the oneDNN GEMM baselines (bench_gemm_baselines.c
 * built with RESQ_BENCH_ONEDNN and RESQ_BENCH_NO_MAIN) for a program that runs
 * them next to its own GEMM of the same shape (bench_gemm_cpu):
 *   gemm_bf16_f32__onednn/M/N/K   the 16-bit baseline
 *   gemm_u8s8_f32__onednn/M/N/K   the W8A8 peer
 * See bench_gemm_baselines.c for the method (cold weights, checks, counters). */
#ifndef RESQ_BENCH_ONEDNN_H
#define RESQ_BENCH_ONEDNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Engine, stream, JSON context (version, ISA, implementations, placement);
 * nonzero on failure (message on stderr). */
int rb_onednn_init(void);
void rb_onednn_fini(void);
/* Register the bf16 and u8s8 benchmarks of one shape. */
void rb_onednn_register(int64_t M, int64_t N, int64_t K);

/* The u8 x s8 matmul of (M, N, K) exactly as its benchmark runs it (same
 * operands, the same rotated cold weight copies), for a measurement paired
 * with the caller's own GEMM in this process (bench_gemm_cpu: paired_vs_peer).
 * open: NULL on failure with why (prefixed RESQ_BENCH_SKIP_PREFIX where oneDNN
 * has no such matmul); call: one call on the next copy, 0 or -1; its results
 * are not checked here (the benchmark of the same shape checks them). */
typedef struct rb_onednn_mm rb_onednn_mm;
rb_onednn_mm *rb_onednn_int8_open(int64_t M, int64_t N, int64_t K, char *why, size_t whylen);
int rb_onednn_int8_call(rb_onednn_mm *m);
void rb_onednn_int8_close(rb_onednn_mm *m);

#ifdef __cplusplus
}
#endif
#endif
