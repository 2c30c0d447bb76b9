/* SPDX-License-Identifier: Apache-2.0
 * resq/cuda.h -- the CUDA backend: the reference API with the "__cuda" suffix.
 *
 * Conventions (every resq_*__cuda function):
 *  - same arguments as the resq_*__ref function of the same name, but every
 *    array argument is a DEVICE pointer (cudaMalloc'd); parameter structs and
 *    scalars are host values;
 *  - work is enqueued on the stream set by resq_cuda_set_stream (default: the
 *    legacy default stream) and is asynchronous: synchronize before reading;
 *  - arguments (sizes, strides, pointers, parameters) are validated exactly as
 *    the reference does and give the same status codes; element VALUES are not
 *    scanned (a NaN scan would cost a full extra read of the input): finite
 *    inputs are the caller's responsibility (ref/CONTRACT.md section 1);
 *  - a CUDA error is returned as RESQ_ERR_DEVICE with cudaGetErrorString in
 *    resq_last_error(); no usable device is RESQ_ERR_NO_DEVICE.
 * The header is plain C so verify/ and bench/ stay C.
 */
#ifndef RESQ_CUDA_H
#define RESQ_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "resq/gptq.h"
#include "resq/hadamard.h"
#include "resq/pca.h"
#include "resq/quant_act.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RESQ_OK if a usable CUDA device exists (driver present, >= 1 device, a
 * context can be created); otherwise RESQ_ERR_NO_DEVICE and the reason (the
 * CUDA error is checked before the device count: without a driver
 * cudaGetDeviceCount fails and leaves the count untouched). */
resq_status resq_cuda_probe(char *why, size_t cap);
/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" or "" without a device. */
const char *resq_cuda_device_name(void);
void resq_cuda_set_stream(void *stream); /* a cudaStream_t */
void *resq_cuda_get_stream(void);

/* Device memory helpers for C callers (tests and benchmarks). */
resq_status resq_cuda_malloc(void **p, size_t bytes);
void resq_cuda_free(void *p);
resq_status resq_cuda_h2d(void *dst, const void *src, size_t bytes);
resq_status resq_cuda_d2h(void *dst, const void *src, size_t bytes);
resq_status resq_cuda_memset(void *dst, int value, size_t bytes);
resq_status resq_cuda_sync(void);

/* ---- Hadamard rotation (ref/CONTRACT.md section 2; resq/hadamard.h) ------------------------
 * Bit-identical to resq_hadamard_f32__ref / resq_hadamard_f16__ref for every supported n.
 * x, y, signs: device pointers (signs may be NULL; any negative entry flips the sign, entries
 * are not scanned for +-1 -- the reference's INVALID_ARG on a bad sign value is not
 * reproduced). x == y with ldx == ldy (in place) is allowed.
 * Workspace rule: the kernels keep each row in registers and shared memory and need NO
 * workspace; work and work_size are ignored (NULL / 0 are fine) -- the reference's
 * INVALID_ARG for a missing workspace does not apply here (resq_hadamard_workspace_size__cuda
 * returns 0).
 * Size limits of this backend (n = K * m, K from upstream's dispatch, m = 2^j):
 *   K = 1 (powers of two):  n <= 32768
 *   K = 12, 20, 28:        m <= 1024   (e.g. 14336 = 28*512, 28672 = 28*1024)
 *   K = 36, 40, 44, 52, 60: m <= 512
 *   K = 108, 140, 156, 172: m <= 128   (e.g. 11008 = 172*64; the row is kept in shared
 *                                       memory for the mix: up to 99,072 bytes per CTA)
 * Larger supported n fail with RESQ_ERR_UNSUPPORTED (message names the limit); n the
 * reference does not support fail exactly as there.
 * f16 output: one RNE rounding (__float2half_rn); an output beyond the f16 range becomes
 * +-Inf (the reference fails with RESQ_ERR_NONFINITE instead: detecting it would need a
 * second pass over the data, a value check this backend does not do). */
size_t resq_hadamard_workspace_size__cuda(int64_t n);
/* RESQ_OK if this backend supports n, else the status the functions below return for it. */
resq_status resq_hadamard_supported__cuda(int64_t n);
resq_status resq_hadamard_f32__cuda(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y,
                                    int64_t ldy, const int8_t *signs, void *work, size_t work_size);
resq_status resq_hadamard_f16__cuda(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                    uint16_t *y, int64_t ldy, const int8_t *signs, void *work,
                                    size_t work_size);

/* ---- Activation quantizer, path A (ref/CONTRACT.md sections 3 and 5; resq/quant_act.h) -----
 * Bit-identical codes, scales and zeros to resq_quant_act_*_q4q8__ref for every parameter set
 * the reference accepts in path A (any K, group, r, bits, clip; any alignment -- aligned
 * layouts take a 16-byte vector path). Parameters are validated as in the reference, then
 * mode = RESQ_QMODE_PATH_B_BF16 fails with RESQ_ERR_UNSUPPORTED (path B is a reference-only
 * parity mode, CONTRACT.md section 4).
 * Values are not scanned: the reference's RESQ_ERR_DEGENERATE (an f32 part whose scale is not
 * a positive finite fp32 number: range below maxq*2^-149 or above FLT_MAX; impossible for f16
 * inputs) is not detected, the outputs for such a part are unspecified. */
resq_status resq_quant_act_f32_q4q8__cuda(const resq_qact_params *p, int64_t M, const float *x,
                                          int64_t ldx, const resq_qact *out);
resq_status resq_quant_act_f16_q4q8__cuda(const resq_qact_params *p, int64_t M, const uint16_t *x,
                                          int64_t ldx, const resq_qact *out);
/* y = s * (float)(q - z) (path A; path B -> RESQ_ERR_UNSUPPORTED); f16: one RNE rounding. */
resq_status resq_dequant_act_q4q8_f32__cuda(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                            float *y, int64_t ldy);
resq_status resq_dequant_act_q4q8_f16__cuda(const resq_qact_params *p, int64_t M, const resq_qact *in,
                                            uint16_t *y, int64_t ldy);

/* ---- Fused Hadamard + 4-bit quantization of the down_proj input ---------------------------
 * Defined as exactly the composition (bit for bit):
 *     t = resq_hadamard_f32__ref(rows, n, widen_f16(x), signs)        (fp32, never rounded to f16)
 *     resq_quant_act_f32_q4q8__ref(p, rows, t, out)                    (path A, r = 0, per token)
 * p must describe that quantizer: p->K == n (else RESQ_ERR_SHAPE), p->group == n and p->r == 0
 * (else RESQ_ERR_UNSUPPORTED: only the per-token 4-bit form is fused), mode path A (path B:
 * RESQ_ERR_UNSUPPORTED); bits_lo and clip are free (resq_qact_check rules). Outputs: out->q_lo
 * (ceil(n/2) bytes per row, ld_lo), out->scale_lo[rows], out->zero_lo[rows]; the hi fields
 * are unused. Argument checks: the Hadamard's (same codes as resq_hadamard_f16__ref, limits
 * above), then resq_qact_check, then the output pointers as in the quantizer.
 * Hadamard outputs of f16 inputs are finite and their parts never degenerate. */
resq_status resq_hadamard_quant_f16_q4__cuda(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                             const int8_t *signs, const resq_qact_params *p,
                                             const resq_qact *out);

/* ---- Fused SiLU*mul + Hadamard + 4-bit quantization (the down_proj input of the layer) -----
 * Defined as exactly the composition (bit for bit):
 *     z[i][j] = resq_silu_f32(widen(g[i][j])) * widen(u[i][j])    (fp32, one multiply; the
 *               reference layer's SiLU, ref/src/layer_internal.h: g / (1 + expf(-g)))
 *     t = resq_hadamard_f32__ref(rows, n, z, signs)                (fp32, never rounded)
 *     resq_quant_act_f32_q4q8__ref(p, rows, t, out)                 (path A, r = 0, per token)
 * i.e. the ResQ layer's down_proj input (CONTRACT s.14) with signs == NULL. silu(g) comes from
 * a table of all 65536 f16 patterns computed on the host with the reference's function (the
 * device expf is not bit-identical to the host libm); the table is built at the first call
 * (256 KiB of device memory per device, kept until the process exits).
 * Same parameter rules and checks as resq_hadamard_quant_f16_q4__cuda (g takes x's place),
 * then u != NULL and ldu >= n (rows > 1). */
resq_status resq_silu_hadamard_quant_f16_q4__cuda(int64_t rows, int64_t n, const uint16_t *g, int64_t ldg,
                                                  const uint16_t *u, int64_t ldu, const int8_t *signs,
                                                  const resq_qact_params *p, const resq_qact *out);

/* ---- Fused RMSNorm + quantization (the q/k/v and gate/up inputs of the layer) --------------
 * Defined as the composition
 *     a = resq_rmsnorm_f32__ref(M, K, widen(x), gamma, eps)        (fp32, never rounded)
 *     resq_quant_act_f32_q4q8__ref(p, M, a, out)                    (path A)
 * with ONE difference: the double sum of squares of a row is added in this kernel's fixed
 * tree order (cuda/src/rq_quant.cuh, "Fused RMSNorm"), not strictly left to right. The
 * squares are exact in double, so the sums differ by a few 1e-16 relative and
 * ms = (float)(ss/K) differs only when ss/K lies that close to an fp32 rounding boundary
 * (CONTRACT s.14 anticipates exactly this for other backends). Everything else is the
 * reference's fp32 sequence: rinv = 1/sqrtf(ms + eps), a = x*rinv (then *gamma).
 * gamma: device [K] or NULL (the ResQ layer folds gamma into the weights). Checks: as
 * resq_quant_act_f16_q4q8__cuda, then p->group == K (else RESQ_ERR_UNSUPPORTED: only the
 * per-token split is fused), eps > 0 and finite (RESQ_ERR_INVALID_ARG). */
resq_status resq_rmsnorm_quant_act_f16_q4q8__cuda(const resq_qact_params *p, int64_t M, const uint16_t *x,
                                                  int64_t ldx, const float *gamma, float eps,
                                                  const resq_qact *out);

/* ---- Quantized KV cache (CONTRACT s.5 "per head, KV cache") --------------------------------
 * A token-major cache of `capacity` tokens: k and v are resq_qact descriptors of capacity rows
 * of the per-head split p (K = G*hd, group = hd, r = hd/8 in the ResQ layer): q_lo
 * [capacity][G][ceil((hd-r)/2)] (ld_lo bytes per token), q_hi [capacity][G][r], and SEPARATE
 * scale/zero arrays [capacity][G] per part (device memory, caller-allocated). */
typedef struct resq_kv_cache {
  resq_qact_params p;
  int64_t capacity;
  resq_qact k, v;
} resq_kv_cache;
/* Quantize T tokens of K and V (f16 [T][K], ldk/ldv elements apart) into cache rows
 * pos..pos+T-1, in one launch. Defined as resq_quant_act_f16_q4q8__ref(&c->p, T, k, ldk, K rows
 * pos..) and the same for v, bit for bit. Checks: resq_qact_check(&c->p); pos, T >= 0 and
 * pos + T <= capacity (else RESQ_ERR_SHAPE); the descriptors as the quantizer checks them for
 * `capacity` rows; path B -> RESQ_ERR_UNSUPPORTED. Read the cache back with
 * resq_dequant_act_q4q8_*__cuda on the descriptors (offset by a token position). */
resq_status resq_kv_cache_append_f16__cuda(const resq_kv_cache *c, int64_t pos, int64_t T, const uint16_t *k,
                                           int64_t ldk, const uint16_t *v, int64_t ldv);

/* ---- PCA basis (CONTRACT s.13; resq/pca.h): cuBLAS DSYRK + cuSOLVER syevd, double -------------
 * The accumulator is resq_pca_accum with a DEVICE S ([d][d] doubles, the upper triangle j >= i
 * as in the reference; buf unused, NULL); init/free/reset with the __cuda functions below.
 * Not bit-identical to the reference, by the contract's own allowance:
 *  - S: every entry is the same double sum of exact products in cuBLAS's order (FMA-based):
 *    |S - S_exact| <= gamma_{T} sum_t |x_t[i] x_t[j]| for both implementations;
 *  - the covariance and damping are the reference's operations, bit for bit GIVEN S (the
 *    trace is summed by one thread in index order, the mean and shift on the host);
 *  - eigenvalues ascending and eigenvectors as columns with the contract's sign convention
 *    (largest-magnitude entry positive, the first on ties), from cusolverDnDsyevd: equal to
 *    the reference up to the solvers' backward errors (Weyl; top-r projectors by
 *    Davis-Kahan with the gap, verify/cuda_pca_test.c).
 * Values are not scanned for NaN/Inf (backend convention). Failures (no convergence: info > 0
 * -> RESQ_ERR_DEGENERATE) leave the outputs untouched: the solvers work on workspace copies.
 * Workspace sizes query cuSOLVER and need a device (0 without one). */
resq_status resq_pca_accum_init__cuda(resq_pca_accum *a, int64_t d);
void resq_pca_accum_free__cuda(resq_pca_accum *a);
resq_status resq_pca_accum_reset__cuda(resq_pca_accum *a);
resq_status resq_pca_accum_f32__cuda(resq_pca_accum *a, int64_t T, const float *x, int64_t ldx);
resq_status resq_pca_accum_f16__cuda(resq_pca_accum *a, int64_t T, const uint16_t *x, int64_t ldx);
/* C device [d][ldc]; *shift is a host double (may be NULL). */
resq_status resq_pca_covariance_f64__cuda(const resq_pca_accum *a, double damp, double *C, int64_t ldc,
                                          double *shift);
size_t resq_eigh_workspace_size__cuda(int64_t n);
/* resq_eigh_f64__ref's contract (reads the lower triangle, A overwritten with V, w ascending). */
resq_status resq_eigh_f64__cuda(int64_t n, double *A, int64_t lda, double *w, void *work, size_t work_size);
/* The per-head bases: `batch` matrices of order n, matrix b at A + b*n*lda (rows lda apart),
 * eigenvalues at w + b*n; one cusolverDnXsyevBatched call (a loop of syevd if the library
 * refuses the batched form). Same per-matrix contract as resq_eigh_f64__cuda. */
size_t resq_eigh_batched_workspace_size__cuda(int64_t batch, int64_t n);
resq_status resq_eigh_batched_f64__cuda(int64_t batch, int64_t n, double *A, int64_t lda, double *w, void *work,
                                        size_t work_size);
size_t resq_pca_basis_workspace_size__cuda(int64_t d);
resq_status resq_pca_basis_f64__cuda(const resq_pca_accum *a, double damp, double *eigvals, double *U, int64_t ldu,
                                     void *work, size_t work_size);

/* ---- GPTQ (CONTRACT s.12; resq/gptq.h): cuSOLVER Cholesky + one kernel + cuBLAS, double ------
 * The Hessian is resq_gptq_hessian with a DEVICE H (full symmetric [K][K]; buf unused, NULL).
 * add_batch: the reference's running average (H *= n/(n+B), X = sqrt(2/n) x) with H += X X^T
 * by cublasDsyrk on blocks of tokens, mirrored: the same sums in another order.
 * resq_gptq_f64__cuda: the reference's algorithm and API (device W, codes, scales, Q; info is
 * host memory): dead columns, act-order, damping and the quantizer scales are the reference's
 * operations exactly (the diagonal is read back to the host; the scales are found on the
 * device: bit for bit without the MSE search; with it, the error sums use another order and
 * the device pow, so a near-tie between two clip ratios may resolve differently); H = L L^T,
 * H^-1 and its upper factor U by cusolverDnDpotrf/potri/potrf (with the reference's single
 * retry on H^-1 + 1e-5 I); the in-block column loop is one kernel that performs the
 * reference's operations on every row exactly (quantize, e = (w - q)/U[c][c], w_j -= e*U[c][j]);
 * the lazy update of the later columns is cublasDgemm. Blocks of 128 columns whatever
 * p->blocksize says (the reference's result does not depend on it either). Codes differ from
 * the reference only where a value lies within the two implementations' rounding difference
 * (~cond(H) * 1e-16 relative) of a quantizer boundary; compare by the objective
 * (resq_gptq_objective_f64__ref) and code agreement, as verify/cuda_gptq_test.c does.
 * Restrictions (RESQ_ERR_UNSUPPORTED): group_size > 0 needs act_order = 0, q.mse = 0 and
 * 128 % group_size == 0. Values are not scanned for NaN/Inf; a non-finite error feedback is
 * RESQ_ERR_DEGENERATE as in the reference; failures write no output. */
resq_status resq_gptq_hessian_init__cuda(resq_gptq_hessian *h, int64_t K);
void resq_gptq_hessian_free__cuda(resq_gptq_hessian *h);
resq_status resq_gptq_add_batch_f32__cuda(resq_gptq_hessian *h, int64_t B, int64_t T, const float *x,
                                          int64_t ldx);
resq_status resq_gptq_add_batch_f16__cuda(resq_gptq_hessian *h, int64_t B, int64_t T, const uint16_t *x,
                                          int64_t ldx);
size_t resq_gptq_workspace_size__cuda(const resq_gptq_params *p, int64_t N);
resq_status resq_gptq_f64__cuda(const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N, const float *W,
                                int64_t ldw, int8_t *codes, int64_t ldc, float *scale_lo, float *scale_hi, float *Q,
                                int64_t ldq, resq_gptq_info *info, void *work, size_t work_size);

#ifdef __cplusplus
}
#endif

#include "resq/cuda_gemm.h" /* mixed GEMM, weight packing, cuBLAS/cuBLASLt baselines */
#include "resq/cuda_layer.h" /* the decoder layer on the GPU (ResQ and FP16 forms) */
#endif /* RESQ_CUDA_H */
