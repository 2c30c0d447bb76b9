/* SPDX-License-Identifier: Apache-2.0
 * resq/hadamard.h -- the (randomized) Hadamard rotation y = x H_n^T.
 *
 * H_n = kron(hadK, S_m) / sqrt(n), n = K * m, m a power of two, S_m the
 * Sylvester matrix, hadK one of the +-1 matrices of order
 * K in {12,20,28,36,40,44,52,60,108,140,156,172} (K = 1: H_n = S_n/sqrt(n)).
 * K is chosen by upstream ResQ's get_hadK dispatch (first hit in the order
 * 172,156,140,108,60,52,36,28,44,40,20,12, then powers of two). The exact
 * operation order (ascending-stride fp32 butterflies, then the 1/sqrt(n)
 * multiply, then the hadK mix) is specified in ref/CONTRACT.md section 2.
 *
 * With a sign vector s (entries +1/-1) the transform is y = (x .* s) H_n^T,
 * i.e. the QuaRot-style randomized Hadamard H_n diag(s), still orthogonal.
 */
#ifndef RESQ_HADAMARD_H
#define RESQ_HADAMARD_H

#include <stddef.h>
#include <stdint.h>

#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RESQ_HADAMARD_MAX_N ((int64_t)1 << 26)

/* Factor n = K * m as upstream's get_hadK does. On failure the message names
 * the nearest supported sizes below and above n. */
resq_status resq_hadamard_factor(int64_t n, int *K, int64_t *m);
/* Largest supported size < n (0 if none) and smallest supported size > n
 * (0 if none up to RESQ_HADAMARD_MAX_N). */
void resq_hadamard_nearest(int64_t n, int64_t *below, int64_t *above);
/* Orders K > 1 for which a hadK matrix exists (ascending); returns count. */
int resq_hadamard_orders(const int **orders);
/* Entry (i, j) of hadK as +1/-1 (K == 1: always +1). i, j in [0, K). */
int resq_hadamard_k_entry(int K, int i, int j);
/* Entry (i, j) of the unscaled integer matrix kron(hadK, S_m) for n = K*m
 * (assumes n supported). */
int resq_hadamard_entry(int64_t n, int64_t i, int64_t j);
/* The fp32 multiplier used for 1/sqrt(n): (float)(1.0 / (double)sqrtf((float)n)). */
float resq_hadamard_scale_f32(int64_t n);
/* Signs drawn from resq_rng seeded with `seed`: s_i = +1 or -1, each with p = 1/2. */
resq_status resq_hadamard_random_signs(uint64_t seed, int64_t n, int8_t *signs);

/* Workspace in bytes needed by the transforms below for vectors of length n. */
size_t resq_hadamard_workspace_size(int64_t n);

/* Rows: for r in [0, rows): y[r*ldy + j] = ((x[r*ldx + .] .* s) H_n^T)_j.
 * fp32 in, fp32 out. x == y (same ld) is allowed. signs may be NULL. */
resq_status resq_hadamard_f32__ref(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y,
                                   int64_t ldy, const int8_t *signs, void *work, size_t work_size);
/* Same transform, f16 in (exactly widened), fp32 math, f16 out (one RNE rounding). */
resq_status resq_hadamard_f16__ref(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                   uint16_t *y, int64_t ldy, const int8_t *signs, void *work,
                                   size_t work_size);

typedef enum resq_had_side {
  RESQ_HAD_INPUT_SIDE = 0,  /* W[Nout, n]: W' = W diag(s) H_n^T (rows);  x' W'^T = x W^T for x' = x diag(s) H_n^T */
  RESQ_HAD_OUTPUT_SIDE = 1  /* W[n, Nin]:  W' = H_n diag(s) W (columns); y' = y diag(s) H_n^T = x W'^T */
} resq_had_side;

/* Offline form: rotate a weight matrix in place (fp32), W has `rows` x `cols`
 * elements with leading dimension ldw; n = cols (input side) or rows (output side). */
resq_status resq_hadamard_weight_f32__ref(resq_had_side side, int64_t rows, int64_t cols, float *W,
                                          int64_t ldw, const int8_t *signs, void *work,
                                          size_t work_size);

/* The transform of one strided vector: y[j*incy] = ((x[i*incx] .* s) H_n^T)_j.
 * The building block of the functions above (work: resq_hadamard_workspace_size). */
resq_status resq_hadamard_vec_f32__ref(int64_t n, const float *x, int64_t incx, float *y,
                                       int64_t incy, const int8_t *signs, void *work,
                                       size_t work_size);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_HADAMARD_H */
