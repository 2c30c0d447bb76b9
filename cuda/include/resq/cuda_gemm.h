/* SPDX-License-Identifier: Apache-2.0
 * resq/cuda_gemm.h -- CUDA mixed INT4/INT8 GEMM and the cuBLAS/cuBLASLt baselines
 * (included by resq/cuda.h; conventions there: device pointers, the resq stream,
 * argument checks as in the reference, values not scanned).
 *
 * STATUS: COMPILED ONLY. Built for sm_80/86/89/90 with CUDA 13.0 on a machine
 * without a GPU; none of these functions has run on a GPU yet. The host-side
 * pieces (weight packing/unpacking) and the kernel's index, fragment and
 * epilogue arithmetic are checked on the CPU by verify/cuda_gemm_host_test.cu;
 * verify/gemm_q4q8_f16__cuda_test.c and verify/gemm_cublas__cuda_test.c check
 * the device code wherever a GPU exists.
 *
 * ---- Mixed GEMM (ref/CONTRACT.md section 11) -----------------------------------------------
 * Y[M, N] = X W^T, bit-identical to resq_gemm_q4q8_{f16,f32}__ref: X the
 * resq_qact output (u4 lo / u8 hi codes, per (row, group) scales and zeros,
 * device arrays, read in place), W packed offline into this backend's layout.
 * Every split the reference's GEMM accepts is supported: per token (q/k/v/up/
 * gate, r = K/8), pure INT4 (down_proj, r = 0), all-INT8 (r = group), grouped
 * o_proj (group = head_dim, per-(token, head) scales), any M, N, K within the
 * limits, any leading dimensions and alignments (activation rows that are not
 * 4-byte aligned take a slow synchronous load path).
 * Tile configurations: RESQ_GEMM_TILE_DECODE (16 x 64 outputs per CTA, 4 warps,
 * 128-byte k-stages, split-K over CTAs so every SM streams weights) and
 * RESQ_GEMM_TILE_PREFILL (128 x 128, 8 warps of 64 x 32, 64-byte k-stages).
 * AUTO picks PREFILL when M > 64 and its tiles fill every SM, DECODE otherwise;
 * split-K is a DECODE feature (the prefill kernel has no registers left for it).
 * Split-K reduces int32 partial sums with integer atomics in a workspace and
 * the last CTA of each tile applies the epilogue, so results do not depend on
 * the split (exact integers). The workspace is caller-provided device memory of
 * resq_gemm_workspace_size__cuda() bytes, ZERO-FILLED BEFORE ITS FIRST USE
 * (resq_cuda_memset); every call leaves it zero-filled again. One workspace
 * must not be used by two GEMMs running concurrently (different streams).
 * Outputs that are NaN (only possible when a*w overflows to Inf and meets a
 * zero integer sum) carry the device's canonical NaN, not necessarily the
 * reference's bit pattern.
 */
#ifndef RESQ_CUDA_GEMM_H
#define RESQ_CUDA_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "resq/gemm.h"
#include "resq/quant_act.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A weight in the kernel's layout: one block of `bytes` bytes (`data`) holding
 *   q         [Np/64][kblocks][64][128] bytes: row n's K stream (lo part packed s4, zero padded
 *             to steps_lo*32 bytes, then the hi part s8 padded to steps_hi*32 bytes, then to
 *             kblocks*128 bytes) in blocks of 64 rows x 128 bytes; rows >= N are zero;
 *   scale_lo, scale_hi   [Np] fp32 (0 for rows >= N);
 *   sum       [nseg][Np] int32 code sums of each segment (lo part of group g: plane g; hi part
 *             of group g: plane seg_lo + g), 0 for rows >= N.
 * The descriptor keeps byte offsets, so a byte copy of the block is a valid weight: pack on the
 * host (data = host buffer), copy the block to the device and set data to the copy, 16-byte
 * aligned (or use resq_gemm_upload_weight__cuda). */
typedef struct resq_qweight_cuda {
  uint32_t magic; /* RESQ_QWEIGHT_CUDA_MAGIC once packed */
  int64_t N, K, group, r;
  int bits_lo, bits_hi;
  int64_t Np, kblocks, steps_lo, steps_hi, nseg, seg_lo;
  size_t bytes, off_q, off_scale_lo, off_scale_hi, off_sum;
  void *data;
  int owned; /* data was allocated by resq_gemm_upload_weight__cuda */
} resq_qweight_cuda;

#define RESQ_QWEIGHT_CUDA_MAGIC 0x52513447u /* "RQ4G" */

/* Bytes of the packed block for N outputs of a split (validated as by resq_gemm_check). */
resq_status resq_gemm_pack_weight_size__cuda(const resq_qact_params *split, int64_t N, size_t *bytes);
/* HOST function: repack a canonical weight (resq_gemm_pack_weight's output, HOST arrays; codes,
 * scales and the group sums are validated as the reference's GEMM validates them, and an odd
 * K_lo's pad nibble must be 0) into the HOST buffer `buf` of `bytes` >= the size query (16-byte
 * aligned). Fills *out with out->data = buf. Nothing is written on failure. */
resq_status resq_gemm_pack_weight__cuda(const resq_qact_params *split, const resq_qweight *w, void *buf, size_t bytes,
                                        resq_qweight_cuda *out);
/* HOST function, the inverse: canonical layout (caller-allocated HOST arrays of `out`, out->N ==
 * w->N, leading dimensions >= the packed row sizes) from a packed weight whose data is in HOST
 * memory. */
resq_status resq_gemm_unpack_weight__cuda(const resq_qweight_cuda *w, const resq_qweight *out);
/* Pack on the host, allocate device memory, copy: out->data is then a device pointer owned by
 * out (free with resq_gemm_free_weight__cuda). */
resq_status resq_gemm_upload_weight__cuda(const resq_qact_params *split, const resq_qweight *w,
                                          resq_qweight_cuda *out);
void resq_gemm_free_weight__cuda(resq_qweight_cuda *w);

typedef enum resq_gemm_tile {
  RESQ_GEMM_TILE_AUTO = 0,
  RESQ_GEMM_TILE_DECODE = 1,  /* 16 x 64 */
  RESQ_GEMM_TILE_PREFILL = 2  /* 128 x 128 */
} resq_gemm_tile;

typedef struct resq_gemm_cuda_opts {
  resq_gemm_tile tile;
  int splits;       /* 0: automatic (split-K only with the DECODE tile and a large enough
                       workspace); 1: none; > 1: that many splits (capped at the number of
                       k-tiles; DECODE tile only), needs work */
  void *work;       /* split-K workspace (device, 16-byte aligned, zero-filled before first use) or NULL */
  size_t work_size; /* bytes */
} resq_gemm_cuda_opts;

/* Workspace bytes that allow any split of M rows (an upper bound over both tile configs). */
size_t resq_gemm_workspace_size__cuda(const resq_qweight_cuda *w, int64_t M);

/* The GEMM. split: the split the weight was packed with (else RESQ_ERR_SHAPE). x: device arrays;
 * w: packed, data on the device; bias: NULL or device [N] fp32; y: device, ldy elements between
 * rows. opts may be NULL (AUTO, no split-K). Status codes as resq_gemm_q4q8_f16__ref for the
 * argument checks; opts->splits > 1 with a missing/small workspace: RESQ_ERR_INVALID_ARG. */
resq_status resq_gemm_q4q8_f16__cuda(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                     const resq_qweight_cuda *w, const float *bias, uint16_t *y, int64_t ldy,
                                     const resq_gemm_cuda_opts *opts);
resq_status resq_gemm_q4q8_f32__cuda(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                     const resq_qweight_cuda *w, const float *bias, float *y, int64_t ldy,
                                     const resq_gemm_cuda_opts *opts);

/* ---- Library baselines (cuBLAS / cuBLASLt, linked dynamically) ------------------------------
 * Y[M, N] = X[M, K] W[N, K]^T, row-major, device pointers, the resq stream. The handles (and a
 * 32 MiB cuBLASLt workspace) are created on first use and kept; resq_cublas_release() frees
 * them. Not thread safe (one process-wide handle). */
typedef enum resq_cublas_compute {
  RESQ_CUBLAS_F32 = 0,         /* cublasGemmEx, CUBLAS_COMPUTE_32F, reduced-precision split-K
                                  reductions DISALLOWED: every addition in fp32 */
  RESQ_CUBLAS_F32_PYTORCH = 1, /* the same with cuBLAS's default math mode (PyTorch's default:
                                  fp16 reductions of split-K partials allowed) */
  RESQ_CUBLAS_F16 = 2          /* CUBLAS_COMPUTE_16F: fp16 accumulation (2x rate on GeForce) */
} resq_cublas_compute;
/* fp16 in/out. M, N, K >= 0; ldx >= K, ldw >= K, ldy >= N (for more than one row). */
resq_status resq_gemm_f16__cublas(int64_t M, int64_t N, int64_t K, const uint16_t *x, int64_t ldx, const uint16_t *w,
                                  int64_t ldw, uint16_t *y, int64_t ldy, resq_cublas_compute compute);
/* W8A8 reference: s8 x s8 -> exact s32 (cuBLASLt, CUBLAS_COMPUTE_32I, the "TN" IMMA layout).
 * cuBLASLt's integer kernels need K, ldx, ldw and ldy multiples of 4 and 4-byte aligned
 * pointers; other shapes fail with RESQ_ERR_UNSUPPORTED. */
resq_status resq_gemm_s8_s32__cublaslt(int64_t M, int64_t N, int64_t K, const int8_t *x, int64_t ldx, const int8_t *w,
                                       int64_t ldw, int32_t *y, int64_t ldy);
void resq_cublas_release(void);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_CUDA_GEMM_H */
