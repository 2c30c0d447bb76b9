/* SPDX-License-Identifier: Apache-2.0
 * resq/pca.h -- the PCA basis of ResQ and everything built from it
 * (ref/CONTRACT.md section 13):
 *
 *   1. streaming uncentered second moment  S = sum_t x_t x_t^T  (double, tokens
 *      in order, any number of batches, O(d^2) memory)
 *   2. C = S / T, damping C[i][i] += damp * mean(diag(C)), symmetric
 *      eigendecomposition (our own Householder + implicit QL solver), eigenvalues
 *      ascending, eigenvectors as columns with a deterministic sign
 *   3. Haar random orthogonal matrices (Householder QR of resq_rng gaussians +
 *      sign fix) and the assembled rotation U = U_pca * blockdiag(R_lo, R_hi)
 *   4. K8, the 8-bit symmetric per-tensor quantization of the key basis
 *   5. offline fusion of U (and the per-head value bases) into fp32 weights.
 *
 * Matrices are row-major with leading dimensions in elements; a basis has its
 * vectors in COLUMNS (U[i*ldu + j] is entry i of vector j), the top-variance
 * subspace is the LAST r columns. Every function validates all of its inputs
 * (sizes, pointers, NaN/Inf) before writing any output; functions that need
 * scratch memory take a caller-allocated workspace (size from the matching
 * *_workspace_size function).
 */
#ifndef RESQ_PCA_H
#define RESQ_PCA_H

#include <stddef.h>
#include <stdint.h>

#include "resq/rng.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest matrix order of every function here (Llama-3.1-405B's hidden size).
 * A d x d double matrix of this order is 2 GiB; larger orders are refused with
 * RESQ_ERR_TOO_LARGE before anything is allocated. */
#define RESQ_PCA_MAX_D ((int64_t)16384)
/* Default damping fraction (upstream perform_eigen_decomp). */
#define RESQ_PCA_DAMP_DEFAULT 0.01

/* ------------------------------------------------------------------ 1. second moment */

/* The accumulator. S holds the upper triangle (j >= i) of sum_t x_t x_t^T,
 * S[i*d + j]; the strictly lower triangle is never written (stays 0).
 * Each S[i][j] is a double sum of the exact products x_t[i]*x_t[j] (a product
 * of two fp32 values is exact in double) added token by token in token order,
 * so splitting the tokens into batches does not change a single bit. */
typedef struct resq_pca_accum {
  int64_t d;     /* channels */
  int64_t count; /* tokens accumulated */
  double *S;     /* [d][d], allocated by resq_pca_accum_init */
  double *buf;   /* private: one block of tokens widened to double */
} resq_pca_accum;

/* Allocate S (zeroed) and the block buffer. d in [1, RESQ_PCA_MAX_D] (larger:
 * RESQ_ERR_TOO_LARGE, refused before allocating). On failure *a is zeroed. */
resq_status resq_pca_accum_init(resq_pca_accum *a, int64_t d);
/* Free and zero; NULL-safe, safe on a zeroed struct. */
void resq_pca_accum_free(resq_pca_accum *a);
/* Reset S and count to 0 (keeps the allocation). */
void resq_pca_accum_reset(resq_pca_accum *a);

/* Add T tokens x[t*ldx + i] (t < T, i < d). The whole batch is checked first:
 * NaN/Inf -> RESQ_ERR_NONFINITE naming the element, and nothing is added.
 * T == 0 is fine (no change). */
resq_status resq_pca_accum_f32__ref(resq_pca_accum *a, int64_t T, const float *x, int64_t ldx);
/* Same, f16 bit patterns (widened exactly: the same S as the f32 entry on the
 * widened values). */
resq_status resq_pca_accum_f16__ref(resq_pca_accum *a, int64_t T, const uint16_t *x, int64_t ldx);

/* The damped covariance (full symmetric matrix) C = S / count with
 * C[i][i] += shift, shift = damp * mean(diag(S / count)) (CONTRACT s.13 gives
 * the exact operation order). *shift may be NULL. count == 0 or an all-zero
 * diagonal: RESQ_ERR_DEGENERATE. damp must be finite and >= 0. */
resq_status resq_pca_covariance_f64__ref(const resq_pca_accum *a, double damp, double *C, int64_t ldc,
                                         double *shift);

/* ------------------------------------------------------------------ 2. eigendecomposition */

size_t resq_eigh_workspace_size(int64_t n);
/* Symmetric eigendecomposition A = V diag(w) V^T in double. Reads only the
 * lower triangle (i >= j) of A. On success w[0..n) holds the eigenvalues
 * ascending and A is overwritten with V: column j (A[i*lda + j], i < n) is the
 * unit eigenvector of w[j], negated if needed so that its entry of largest
 * magnitude (the first such index on ties) is positive. Householder
 * tridiagonalization + implicit QL with Wilkinson shifts; at most 30*n QL
 * sweeps in total, otherwise RESQ_ERR_DEGENERATE (nothing written). */
resq_status resq_eigh_f64__ref(int64_t n, double *A, int64_t lda, double *w, void *work, size_t work_size);

/* C (resq_pca_covariance_f64__ref) and its eigendecomposition: eigvals [d]
 * ascending, U [d][d] with the eigenvectors as columns (ldu >= d). The
 * workspace is resq_pca_basis_workspace_size(d). */
size_t resq_pca_basis_workspace_size(int64_t d);
resq_status resq_pca_basis_f64__ref(const resq_pca_accum *a, double damp, double *eigvals, double *U, int64_t ldu,
                                    void *work, size_t work_size);

/* ------------------------------------------------------------------ 3. random rotations */

size_t resq_random_orthogonal_workspace_size(int64_t n);
/* A Haar-distributed orthogonal n x n matrix: n*n standard normals drawn from
 * *rng in row-major order into A, Householder QR A = QR, then column j of Q
 * multiplied by sign(R[j][j]) (+1 when R[j][j] == 0), so that Q is the Q factor
 * of the QR with a positive diagonal. Q is written with leading dimension ldq.
 * The generator is left after the last draw (the polar method's spare normal
 * carries over to the next call). */
resq_status resq_random_orthogonal_rng_f64__ref(resq_rng *rng, int64_t n, double *Q, int64_t ldq, void *work,
                                                size_t work_size);
/* Same with a fresh resq_rng seeded with `seed`. */
resq_status resq_random_orthogonal_f64__ref(uint64_t seed, int64_t n, double *Q, int64_t ldq, void *work,
                                            size_t work_size);

/* R = blockdiag(R_lo, R_hi) (d x d, zeros off the blocks): one resq_rng seeded
 * with `seed`, R_lo of order d - r drawn first, R_hi of order r second (from
 * the same stream). 0 <= r <= d; an empty block draws nothing. The workspace
 * is resq_random_orthogonal_workspace_size(d). */
resq_status resq_pca_blockdiag_f64__ref(uint64_t seed, int64_t d, int64_t r, double *R, int64_t ldr, void *work,
                                        size_t work_size);
/* U = U_pca * R for a block-diagonal R as above (only its two diagonal blocks
 * are read): U[i][j] = sum over k in j's block, ascending, of
 * U_pca[i][k] * R[k][j], in double. U must not overlap U_pca or R. */
resq_status resq_pca_apply_blockdiag_f64__ref(int64_t d, int64_t r, const double *U_pca, int64_t ldp,
                                              const double *R, int64_t ldr, double *U, int64_t ldu);

/* ------------------------------------------------------------------ 4. K8 */

/* The 8-bit online key/query rotation from the key basis Uk [hd][hd] (ldk):
 *   a = max(max_ij |Uk|, 1e-5),  s = a / 127,
 *   code_ij = clamp(rint(Uk_ij / s), -128, 127),  K8_ij = (float)(s * code_ij)
 * all in double (rint is half to even), K8 rounded once to fp32. Outputs are
 * contiguous [hd][hd]: codes (int8) and K8 (fp32); *scale = s. Any of codes,
 * scale, K8 may be NULL. */
resq_status resq_k8_f64__ref(int64_t hd, const double *Uk, int64_t ldk, int8_t *codes, double *scale, float *K8);

/* ------------------------------------------------------------------ 5. fusion into weights */

/* Workspace of every resq_fuse_* function for matrices of order n. */
size_t resq_fuse_workspace_size(int64_t n);

/* Input side: W [rows][n] (y = x W^T) -> Wout = W U, i.e.
 * Wout[a][j] = (float) sum_{k ascending} (double)W[a][k] * U[k][j].
 * Then (x U) Wout^T = x W^T. Wout may equal W (same ld) for in place; other
 * overlaps are not allowed. */
resq_status resq_fuse_input_f32__ref(int64_t rows, int64_t n, const float *W, int64_t ldw, const double *U,
                                     int64_t ldu, float *Wout, int64_t ldo, void *work, size_t work_size);
/* Output side: W [n][cols] -> Wout = U^T W, i.e.
 * Wout[i][b] = (float) sum_{k ascending} U[k][i] * (double)W[k][b].
 * Then x Wout^T = (x W^T) U. In place allowed as above. */
resq_status resq_fuse_output_f32__ref(int64_t n, int64_t cols, const float *W, int64_t ldw, const double *U,
                                      int64_t ldu, float *Wout, int64_t ldo, void *work, size_t work_size);
/* v_proj output rows, per KV head: W [G*hd][cols]; rows g*hd..g*hd+hd-1 get
 * U_v[g]^T (output side). Uv holds G contiguous hd x hd bases. The value of
 * KV head g becomes v_g Uv[g]. */
resq_status resq_fuse_v_proj_f32__ref(int64_t G, int64_t hd, int64_t cols, const float *W, int64_t ldw,
                                      const double *Uv, float *Wout, int64_t ldo, void *work, size_t work_size);
/* o_proj input columns, per query head: W [rows][H*hd]; columns h*hd..h*hd+hd-1
 * get Uv[h / (H/G)] on the input side (H % G == 0), undoing the rotation of
 * the value heads. Combine with resq_fuse_output_f32__ref for o_proj's output
 * side. */
resq_status resq_fuse_o_proj_f32__ref(int64_t rows, int64_t H, int64_t G, int64_t hd, const float *W,
                                      int64_t ldw, const double *Uv, float *Wout, int64_t ldo, void *work,
                                      size_t work_size);
/* down_proj: W [d][I] -> Wout = (U^T W) diag(s) H_I^T: the output side with U,
 * then the offline input-side Hadamard of section 2 (resq/hadamard.h; signs
 * may be NULL; hwork is resq_hadamard_workspace_size(I)). The online
 * activation gets the same Hadamard. */
resq_status resq_fuse_down_proj_f32__ref(int64_t d, int64_t I, const float *W, int64_t ldw, const double *U,
                                         int64_t ldu, const int8_t *signs, float *Wout, int64_t ldo, void *work,
                                         size_t work_size, void *hwork, size_t hwork_size);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_PCA_H */
