/* SPDX-License-Identifier: Apache-2.0
 * resq/gptq.h -- GPTQ with ResQ's mixed lo/hi weight quantizer
 * (ref/CONTRACT.md section 12, built on the section-10 quantizer of
 * resq/quant_weight.h). All arithmetic is double (Deviation D9).
 *
 *   1. Hessian: upstream's running average over calibration calls,
 *      H = (2/N) sum over every token of N sequences of x x^T
 *      (resq_gptq_hessian + resq_gptq_add_batch_*).
 *   2. resq_gptq_f64__ref: dead columns, optional act-order, damping,
 *      Cholesky -> inverse -> upper Cholesky (with upstream's single retry),
 *      the blocked column loop with error feedback; each column quantized by
 *      the quantizer of its ORIGINAL position (lo: first K-r columns, hi: last r;
 *      Deviation D10), optionally per group of `group_size` lo columns.
 *   3. resq_gptq_rtn_f32__ref: round-to-nearest with the same quantizers and the
 *      same output layout (the baseline GPTQ is compared with).
 *   4. resq_gptq_objective_f64__ref: L(Q) = tr((W - Q) H (W - Q)^T).
 *
 * Matrices are row-major with leading dimensions in elements; W is [N][K]
 * (nn.Linear layout, y = x W^T); H is [K][K] with leading dimension K. Every
 * function validates all of its inputs (sizes, pointers, NaN/Inf) before
 * writing any output, and GPTQ, whose Cholesky failures can only be found
 * while computing, works in a caller-allocated workspace
 * (resq_gptq_workspace_size) and writes its outputs only after success.
 */
#ifndef RESQ_GPTQ_H
#define RESQ_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "resq/quant_weight.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest K (Llama-3-70B's down_proj has 28672). GPTQ's workspace holds two
 * K x K double matrices (2 x 8 GiB at this size); larger K is refused with
 * RESQ_ERR_TOO_LARGE before anything is allocated. */
#define RESQ_GPTQ_MAX_K ((int64_t)32768)
#define RESQ_GPTQ_BLOCKSIZE_DEFAULT 128
#define RESQ_GPTQ_PERCDAMP_DEFAULT 0.01
/* Added to the diagonal of H^-1 when its Cholesky fails (upstream, absolute). */
#define RESQ_GPTQ_RETRY_SHIFT 1e-5

/* ------------------------------------------------------------------ 1. Hessian */

/* The running-average Hessian (upstream GPTQ.add_batch). H is the full
 * symmetric K x K matrix (both triangles written, bitwise symmetric),
 * H[i*K + j]. nsamples is upstream's n: it counts SEQUENCES, not tokens.
 * To run GPTQ on a Hessian computed elsewhere, fill K, nsamples (>= 1, only
 * checked to be >= 1) and H yourself (GPTQ and the objective read only the
 * lower triangle i >= j) and leave buf NULL; never pass such a struct to
 * resq_gptq_hessian_free or add_batch. */
typedef struct resq_gptq_hessian {
  int64_t K;        /* input channels */
  int64_t nsamples; /* n: sequences accumulated */
  int64_t ntokens;  /* tokens accumulated (informational) */
  double *H;        /* [K][K], allocated by resq_gptq_hessian_init */
  double *buf;      /* private: one block of scaled tokens */
} resq_gptq_hessian;

/* Allocate H (zeroed) and the block buffer. K in [1, RESQ_GPTQ_MAX_K]
 * (larger: RESQ_ERR_TOO_LARGE before allocating). On failure *h is zeroed. */
resq_status resq_gptq_hessian_init(resq_gptq_hessian *h, int64_t K);
/* Free and zero; NULL-safe, safe on a zeroed struct. */
void resq_gptq_hessian_free(resq_gptq_hessian *h);

/* One upstream add_batch call with B sequences of T tokens each: x holds the
 * B*T token rows in order (row b*T + t at x + (b*T + t)*ldx, K values each).
 *   H <- H * (n / (n + B))            factor = (double)n / (double)(n + B)
 *   n <- n + B
 *   c  = sqrt(2.0 / n)
 *   for each token row, in order:  X_i = c * (double)x_i ;  H[i][j] += X_i * X_j
 * (each entry accumulated token by token in token order; computed for j >= i
 * and mirrored). The result is (2/N) sum x x^T over every token of all N
 * sequences, up to rounding. The whole batch is checked first: NaN/Inf ->
 * RESQ_ERR_NONFINITE naming the element, and nothing changes. B == 0 is a
 * no-op; B >= 1 with T == 0 only rescales (upstream does the same). */
resq_status resq_gptq_add_batch_f32__ref(resq_gptq_hessian *h, int64_t B, int64_t T, const float *x, int64_t ldx);
/* Same, f16 bit patterns (widened exactly: the same H as the f32 entry on the
 * widened values). */
resq_status resq_gptq_add_batch_f16__ref(resq_gptq_hessian *h, int64_t B, int64_t T, const uint16_t *x,
                                         int64_t ldx);

/* ------------------------------------------------------------------ 2. GPTQ */

typedef struct resq_gptq_params {
  resq_wquant_params q; /* K, r (hi columns at the end), bits_lo, bits_hi, mse: section 10 */
  int64_t group_size;   /* 0: one lo scale per row; > 0: one lo scale per row and group of
                           group_size lo columns (must divide K - r), found during the loop */
  int64_t blocksize;    /* >= 1 (default 128); changes the memory access pattern only:
                           the result is bitwise the same for every blocksize */
  double percdamp;      /* finite, >= 0 (default 0.01) */
  int act_order;        /* 1: columns in descending diag(H) order (stable) */
} resq_gptq_params;

/* q = resq_wquant_default(K) (r = K/8, 4/8 bits, no MSE), no groups,
 * blocksize 128, percdamp 0.01, act_order 0. */
resq_gptq_params resq_gptq_default(int64_t K);
/* Validate parameters; *ngroups_lo (may be NULL) gets the number of lo scales
 * per row: (K - r) / group_size with groups, 1 without (0 when r == K).
 * group_size not dividing K - r: RESQ_ERR_SHAPE. */
resq_status resq_gptq_check(const resq_gptq_params *p, int64_t *ngroups_lo);

typedef struct resq_gptq_info {
  int64_t dead;  /* columns with H[i][i] == 0 (zeroed in W) */
  double damp;   /* percdamp * mean(diag(H)) added to the diagonal */
  int retried;   /* 1 when the Cholesky of H^-1 needed the +1e-5*I retry */
} resq_gptq_info;

/* Bytes of workspace for N rows (0 if the parameters are invalid or the size
 * overflows). About (2*K*K + N*K + N*min(blocksize, K)) doubles + N*K bytes. */
size_t resq_gptq_workspace_size(const resq_gptq_params *p, int64_t N);

/* GPTQ of W [N][K] (ldw) with the Hessian h (h->K must equal p->q.K, else
 * RESQ_ERR_SHAPE). Outputs, caller-allocated, written only on success:
 *   codes     int8 [N][ldc]: codes[n][k] in the range of column k's quantizer
 *             (lo: [-2^(bits_lo-1), 2^(bits_lo-1)-1], hi likewise), in the
 *             ORIGINAL column order (also with act-order)
 *   scale_lo  fp32 [N][ngroups_lo] contiguous (NULL allowed when r == K)
 *   scale_hi  fp32 [N] (NULL allowed when r == 0)
 *   Q         fp32 [N][ldq], Q[n][k] = s * code (one fp32 multiply), or NULL
 *   info      may be NULL
 * Fails (writing nothing) on: bad arguments; NaN/Inf in W or in the lower
 * triangle of H (RESQ_ERR_NONFINITE); every diagonal entry of H zero (no
 * calibration signal) or a failed Cholesky (RESQ_ERR_DEGENERATE). */
resq_status resq_gptq_f64__ref(const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N, const float *W,
                               int64_t ldw, int8_t *codes, int64_t ldc, float *scale_lo, float *scale_hi, float *Q,
                               int64_t ldq, resq_gptq_info *info, void *work, size_t work_size);

/* ------------------------------------------------------------------ 3. RTN */

/* Round-to-nearest with GPTQ's quantizers and output layout: section 10 on
 * the original W; with group_size > 0 the lo scale of group g is
 * resq_wquant_scale_f32__ref on W[n][g*gs .. g*gs+gs). (percdamp, blocksize
 * and act_order are ignored.) Equals resq_gptq_f64__ref for a diagonal H
 * without dead columns, bit for bit. */
resq_status resq_gptq_rtn_f32__ref(const resq_gptq_params *p, int64_t N, const float *W, int64_t ldw, int8_t *codes,
                                   int64_t ldc, float *scale_lo, float *scale_hi, float *Q, int64_t ldq);

/* ------------------------------------------------------------------ 4. objective */

/* L(Q) = tr((W - Q) H (W - Q)^T) in double, from the lower triangle of H
 * (undamped, as accumulated). Per row n, with d_j = (double)W[n][j] - (double)Q[n][j]:
 *   a_i = sum_{j < i, ascending} H[i][j] * d_j
 *   L_n = sum_{i ascending} d_i * (H[i][i] * d_i + 2 * a_i)
 * and *obj = sum_{n ascending} L_n. row_obj (may be NULL) gets L_n [N].
 * h->K is the K of W and Q. */
resq_status resq_gptq_objective_f64__ref(const resq_gptq_hessian *h, int64_t N, const float *W, int64_t ldw,
                                         const float *Q, int64_t ldq, double *obj, double *row_obj);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_GPTQ_H */
