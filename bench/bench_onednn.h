/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_onednn.h -- the oneDNN GEMM baselines (bench_gemm_baselines.c
 * built with RESQ_BENCH_ONEDNN and RESQ_BENCH_NO_MAIN) for a program that runs
 * them next to its own GEMM of the same shape (bench_gemm_cpu):
 *   gemm_bf16_f32__onednn/M/N/K   the 16-bit baseline
 *   gemm_u8s8_f32__onednn/M/N/K   the W8A8 peer
 * See bench_gemm_baselines.c for the method (cold weights, checks, counters). */
#ifndef RESQ_BENCH_ONEDNN_H
#define RESQ_BENCH_ONEDNN_H

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

#ifdef __cplusplus
}
#endif
#endif
