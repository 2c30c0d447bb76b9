/* SPDX-License-Identifier: Apache-2.0
 * resq/cpu.h -- the CPU backend: the reference API with the "__cpu" suffix,
 * optimized for x86-64 AVX-512 VNNI, with a portable fallback.
 *
 * Conventions (every resq_*__cpu function):
 *  - same arguments and semantics as the resq_*__ref function of the same name
 *    (host pointers), except that the mixed GEMM takes its weight in the CPU
 *    layout (resq_qweight_cpu, made once, offline, by resq_gemm_pack_weight__cpu
 *    from the canonical resq_qweight);
 *  - results are bit-identical to the reference on finite inputs
 *    (ref/CONTRACT.md: integer codes, the fixed fp32 operation orders, RNE to f16);
 *  - arguments (sizes, strides, pointers, parameters, per-row scales and zero
 *    points) are validated exactly as the reference does and give the same
 *    status codes; element VALUES are not scanned for NaN/Inf (ref/CONTRACT.md
 *    section 1: that would cost a full extra read of the input);
 *  - failures that can only be seen while computing are reported with the
 *    reference's status code: an f16 Hadamard output that overflows; a
 *    quantizer scale that underflows for f32 inputs with a range below
 *    maxq*2^-149; and, found without a scan, NaN/Inf inputs of the f16
 *    Hadamard and of the fused Hadamard + quantizer (every output sums every
 *    input, so output 0 of the row tells) and of the quantizers (a part's
 *    NaN or +-Inf range); not found: NaN/Inf inputs of the f32 Hadamard
 *    (outputs NaN/Inf) and a NaN in f32 quantizer input on the AVX-512 path
 *    (its min/max skip it; the reference finds it in its scan);
 *    rows before the failing one may already have been written (the
 *    reference writes nothing; matching that would cost a second pass);
 *  - work runs on a pool of resq_cpu_get_threads() threads (the calling thread
 *    plus workers); calls from several application threads are serialized.
 *
 * Dispatch: the AVX-512 kernels run when CPUID reports AVX512F, AVX512BW,
 * AVX512VL and AVX512_VNNI and the OS saves ZMM state (and, when CPUID also
 * reports AMX-TILE and AMX-INT8, XCR0 enables tile state and Linux grants it
 * to the process -- arch_prctl(ARCH_REQ_XCOMP_PERM), asked once at the first
 * call -- the AMX level: the same kernels plus an AMX prefill GEMM); else, with AVX2, FMA,
 * F16C and BMI2 (and YMM state), the AVX2 level (its own mixed and FP16 GEMM
 * kernels, portable C for the rest); otherwise the portable C kernels (same layout,
 * same bits everywhere). RESQ_CPU_ISA=generic|avx2|avx512|amx|auto in the
 * environment (read once, at the first call) or resq_cpu_set_isa() force a path;
 * RESQ_CPU_THREADS=<n> or resq_cpu_set_threads() set the thread count.
 * The header is plain C. */
#ifndef RESQ_CPU_H
#define RESQ_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "resq/gemm.h"
#include "resq/gptq.h"
#include "resq/hadamard.h"
#include "resq/layer.h"
#include "resq/pca.h"
#include "resq/quant_act.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- runtime: instruction-set dispatch and threads ---- */
typedef enum resq_cpu_isa {
  RESQ_CPU_ISA_AUTO = 0,    /* the best the CPU supports */
  RESQ_CPU_ISA_GENERIC = 1, /* portable C (auto-vectorized), any CPU */
  RESQ_CPU_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL + VNNI (vpdpbusd) */
  RESQ_CPU_ISA_AVX2 = 3,    /* AVX2 + FMA + F16C + BMI2, no VNNI (Zen 2/3, Haswell..Skylake client):
                               the mixed GEMM (vpmaddubsw, exact int16 partial sums) and the FP16
                               GEMM (8-wide FMA chains) have their own kernels; the other stages
                               run their portable C there */
  RESQ_CPU_ISA_AMX = 4      /* the AVX-512 level plus AMX-TILE/AMX-INT8 (Sapphire Rapids and later, with
                               Linux granting tile state): the mixed GEMM's prefill (per-token split,
                               M >= RESQ_CPU_AMX_MIN_M) runs on tdpbusd tiles; everything else as AVX512 */
} resq_cpu_isa;

/* The smallest M for which the AMX level's mixed GEMM uses tiles (below it the
 * vpdpbusd kernel streams the 4-bit weight directly; RESQ_CPU_GEMM_AMX_MIN_M
 * in the environment overrides, per call). */
#define RESQ_CPU_AMX_MIN_M 64

/* Best ISA this CPU (and OS) supports. */
resq_cpu_isa resq_cpu_detect(void);
/* Force a path (AUTO: back to detection). AVX512 on a CPU without it gives
 * RESQ_ERR_UNSUPPORTED and changes nothing. Not thread-safe against running calls. */
resq_status resq_cpu_set_isa(resq_cpu_isa isa);
/* The ISA the next call will use (never AUTO). */
resq_cpu_isa resq_cpu_get_isa(void);
const char *resq_cpu_isa_name(resq_cpu_isa isa); /* "auto", "generic", "avx2", "avx512-vnni", "avx512-amx" */
/* 1 when resq_cpu_set_isa(isa) would succeed on this CPU (AVX2 is available on
 * every CPU that has the AVX-512 level, AVX512 on every CPU that has AMX) */
int resq_cpu_isa_available(resq_cpu_isa isa);
/* Threads used per call (0: default = CPUs in the process affinity mask, at most 64). */
resq_status resq_cpu_set_threads(int n);
int resq_cpu_get_threads(void);

/* ---- mixed INT4/INT8 GEMM (ref/CONTRACT.md section 11) ---- */

/* Packed weight in the CPU layout. All arrays live in one caller-allocated,
 * 64-byte aligned block of resq_gemm_pack_weight_size__cpu() bytes; the
 * descriptor stores offsets into it, so a byte copy of the block is a valid
 * weight (copy the descriptor, set .data to the copy).
 *
 * Layout (ref/CONTRACT.md section 11 quantities; P = 32 output columns per panel):
 *   every part of every group ("term", in the GEMM's K order: the lo parts of
 *   groups 0..G-1, then the hi parts) is padded with zero codes to a multiple
 *   of 4 columns (lo_pad = roundup(group - r, 4), hi_pad = roundup(r, 4));
 *   N is padded with zero columns to a multiple of 32 (npanels = ceil(N/32));
 *   panel p (columns 32p..32p+31) is one contiguous run of panel_bytes:
 *     lo terms: for each step of 4 columns k..k+3, 64 bytes = 16 dwords; byte
 *       b of dword l holds column k+b of output 32p+l in its LOW nibble as
 *       u = w + 8 (0..15, i.e. the s4 nibble XOR 8) and of output 32p+16+l in
 *       its HIGH nibble (s4 two's complement), so the byte read as s8 is
 *       16 w_high + u_low;
 *     hi terms: for each step of 4 columns, 128 bytes = 32 dwords; byte b of
 *       dword l is the s8 code of column k+b of output 32p+l;
 *   scale_lo[npanels*32], scale_hi[npanels*32]   fp32 (0 in the padding)
 *   sum_lo[G][npanels*32], sum_hi[G][npanels*32] int32 column sums per group part.
 * The kernels stream panels front to back; per 64 lo weights they issue
 * vpdpbusd on the raw bytes and on the bytes AND 0xF0 (16 w_high): one vector
 * op, and the low outputs follow exactly in int32 as raw - masked - 8 sum(x)
 * (resq_gemm_q4q8_f16__cpu.c). */
typedef struct resq_qweight_cpu {
  uint32_t magic;   /* RESQ_QWEIGHT_CPU_MAGIC once packed */
  int64_t N, K, group, r;
  int bits_lo, bits_hi;
  int64_t ngroups, lo_pad, hi_pad, npanels;
  int64_t panel_bytes;                            /* bytes of one 32-column panel */
  size_t off_panels, off_scale_lo, off_scale_hi, off_sum_lo, off_sum_hi; /* into data */
  size_t bytes;                                   /* size of the block */
  void *data;
} resq_qweight_cpu;

#define RESQ_QWEIGHT_CPU_MAGIC 0x52513443u /* "RQ4C" */

/* Bytes of the packed block for N outputs of a split (validated as by resq_gemm_check). */
resq_status resq_gemm_pack_weight_size__cpu(const resq_qact_params *split, int64_t N, size_t *bytes);
/* Repack a canonical weight (resq_gemm_pack_weight's output: codes, scales and
 * the group sums, which are checked against the codes) into `buf` (64-byte
 * aligned, `bytes` >= the size query). Fills *out. */
resq_status resq_gemm_pack_weight__cpu(const resq_qact_params *split, const resq_qweight *w, void *buf,
                                       size_t bytes, resq_qweight_cpu *out);
/* Inverse: write the canonical layout (caller-allocated arrays of `out`,
 * out->N == w->N, leading dimensions as in resq_gemm.h) from a packed weight. */
resq_status resq_gemm_unpack_weight__cpu(const resq_qweight_cpu *w, const resq_qweight *out);

/* The mixed GEMM, bit-identical to resq_gemm_q4q8_{f16,f32}__ref on the same
 * codes (weight: the packed form of the reference's canonical weight). The split
 * must be the one the weight was packed with (else RESQ_ERR_SHAPE). */
resq_status resq_gemm_q4q8_f16__cpu(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight_cpu *w, const float *bias, uint16_t *y, int64_t ldy);
resq_status resq_gemm_q4q8_f32__cpu(const resq_qact_params *split, int64_t M, const resq_qact *x,
                                    const resq_qweight_cpu *w, const float *bias, float *y, int64_t ldy);

/* ---- Hadamard rotation (ref/CONTRACT.md section 2) ----
 * work/work_size are validated as by the reference (resq_hadamard_workspace_size);
 * the kernels use their own per-thread buffers. */
resq_status resq_hadamard_f32__cpu(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
                                   const int8_t *signs, void *work, size_t work_size);
resq_status resq_hadamard_f16__cpu(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                                   int64_t ldy, const int8_t *signs, void *work, size_t work_size);

/* ---- activation quantizer, path A (ref/CONTRACT.md section 3) ----
 * Path B (RESQ_QMODE_PATH_B_BF16, the upstream-parity mode) is not implemented
 * here: RESQ_ERR_UNSUPPORTED. */
resq_status resq_quant_act_f32_q4q8__cpu(const resq_qact_params *p, int64_t M, const float *x, int64_t ldx,
                                         const resq_qact *out);
resq_status resq_quant_act_f16_q4q8__cpu(const resq_qact_params *p, int64_t M, const uint16_t *x, int64_t ldx,
                                         const resq_qact *out);

/* ---- fused Hadamard + quantization (the down_proj input) ----
 * Defined as resq_hadamard_f32__ref on the widened f16 rows (n = p->K) followed
 * by resq_quant_act_f32_q4q8__ref with parameters p (upstream: r = 0, 4 bits),
 * bit for bit, without writing the rotated rows. */
resq_status resq_hadamard_quant_act_f16_q4q8__cpu(const resq_qact_params *p, int64_t M, const uint16_t *x,
                                                  int64_t ldx, const int8_t *signs, const resq_qact *out);

/* ---- calibration: PCA basis (ref/CONTRACT.md section 13) ----
 * OpenBLAS/LAPACK in double. These stages check element values like the
 * reference (NaN/Inf: RESQ_ERR_NONFINITE, nothing added or written): the scan
 * is O(1/d) of their work. OpenBLAS runs with resq_cpu_get_threads() threads
 * during the call (its previous thread count is restored afterwards).
 *
 * Speed depends on the kernels OpenBLAS picked when it was loaded: Debian's
 * OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not know CPUs newer than its release
 * (e.g. Intel family 6 model 207, Emerald Rapids) and falls back to its
 * Prescott (SSE3) kernels, several times slower; set OPENBLAS_CORETYPE=SkylakeX
 * (or Cooperlake) in the environment of such a process. The library cannot
 * change it after OpenBLAS has initialized; resq_cpu_blas_corename() reports
 * the choice (e.g. for benchmark reports).
 *
 * Second moment: the reference's accumulator (resq_pca_accum_init/free/reset,
 * resq_pca_covariance_f64__ref work on it unchanged), updated by dsyrk on
 * blocks of 256 tokens widened to double. Not bit-identical to the reference:
 * every S[i][j] is the same double sum of exact products in another order
 * (|S - S_exact| <= gamma_{T-1} sum_t |x_t[i] x_t[j]| for both), so batch
 * splits also change low bits. */
const char *resq_cpu_blas_corename(void); /* openblas_get_corename() */
resq_status resq_pca_accum_f32__cpu(resq_pca_accum *a, int64_t T, const float *x, int64_t ldx);
resq_status resq_pca_accum_f16__cpu(resq_pca_accum *a, int64_t T, const uint16_t *x, int64_t ldx);
/* Basis: the reference's covariance (same bits from the same S) and LAPACK
 * dsyevd; eigenvalues ascending, eigenvectors as columns of U with the
 * contract's sign convention. Agrees with resq_pca_basis_f64__ref up to the
 * two solvers' backward errors (eigenvalues: Weyl; top-r projector:
 * Davis-Kahan with the gap). Workspace: resq_pca_basis_workspace_size__cpu(d)
 * (about 3 d^2 doubles: the matrix and dsyevd's work). */
size_t resq_pca_basis_workspace_size__cpu(int64_t d);
resq_status resq_pca_basis_f64__cpu(const resq_pca_accum *a, double damp, double *eigvals, double *U, int64_t ldu,
                                    void *work, size_t work_size);

/* ---- calibration: GPTQ (ref/CONTRACT.md section 12) ----
 * The reference's algorithm and API; Cholesky/inverse by LAPACK dpotrf/dpotri,
 * the lazy block updates by dgemm, rows split over the pool. Results differ
 * from resq_gptq_f64__ref only by double rounding (rare code flips at rounding
 * boundaries, which the error feedback may carry along a row); the same
 * failures give the same status codes, nothing written. Workspace:
 * resq_gptq_workspace_size__cpu (about 2 K^2 + N K + N*blocksize doubles). */
size_t resq_gptq_workspace_size__cpu(const resq_gptq_params *p, int64_t N);
resq_status resq_gptq_f64__cpu(const resq_gptq_params *p, const resq_gptq_hessian *h, int64_t N, const float *W,
                               int64_t ldw, int8_t *codes, int64_t ldc, float *scale_lo, float *scale_hi, float *Q,
                               int64_t ldq, resq_gptq_info *info, void *work, size_t work_size);
/* The Hessian's add_batch with the reference's semantics (running average,
 * X = sqrt(2/n) x, both triangles written, bitwise symmetric), H += X^T X by
 * dsyrk on blocks of 256 tokens: another summation order than the reference's
 * token order (same gamma bound). */
resq_status resq_gptq_add_batch_f32__cpu(resq_gptq_hessian *h, int64_t B, int64_t T, const float *x, int64_t ldx);
resq_status resq_gptq_add_batch_f16__cpu(resq_gptq_hessian *h, int64_t B, int64_t T, const uint16_t *x,
                                         int64_t ldx);

/* ---- FP16 GEMM (ref/CONTRACT.md section 11's FP16 baseline) ----
 * Bit-identical to resq_gemm_f16__ref / resq_gemm_f16_f32__ref: y = sum_k x_k w_k
 * in fp32, k ascending, + bias, RNE to f16.
 * Why this is the 16-bit GEMM of the CPU backend (for the layer comparison):
 *  - the product of two fp16 values is exact in fp32, so vfmadd231ps with one
 *    accumulator per output and k ascending rounds exactly like the reference:
 *    the FP16 form of the layer runs bit-exact, with fp16 weights (2 bytes per
 *    weight, the decode bandwidth of any 16-bit GEMM);
 *  - vdpbf16ps (AVX512-BF16) doubles the peak flops but needs bf16 operands:
 *    rounding the fp16 activations and weights to bf16 (3 fewer significand
 *    bits) would make it a different, less accurate baseline than the
 *    reference's FP16 form; oneDNN's bf16 matmul stays the kernel baseline of
 *    bench/ for that reason;
 *  - OpenBLAS sgemm needs fp32 weights (4 bytes per weight: half the decode
 *    speed) and sums in its own order (not the reference's bits);
 *  - AVX512-FP16 (vfmadd*ph) accumulates in fp16, not the contract's fp32.
 * Its prefill ceiling is the fp32 FMA rate: half of the vdpbf16ps flop rate on
 * CPUs with full-rate BF16 dot products (AMD Zen 4/5), but twice it on the
 * Intel Emerald Rapids host measured for cpu/README.md (vdpbf16ps ~83 GFLOP/s
 * per core there, vfmadd231ps ~170); at decode it streams the fp16 weights
 * like any 16-bit GEMM (2 bytes per weight).
 * Layout: N padded to a multiple of 32, panel p = K steps of the 32 fp16
 * values w[32p + l][k] (64 bytes per step); one 64-byte aligned block of
 * resq_gemm_f16_pack_weight_size__cpu bytes (a byte copy is a valid weight). */
typedef struct resq_wf16_cpu {
  uint32_t magic; /* RESQ_WF16_CPU_MAGIC once packed */
  int64_t N, K, npanels;
  size_t bytes;
  void *data;
} resq_wf16_cpu;
#define RESQ_WF16_CPU_MAGIC 0x52513146u /* "RQ1F" */

resq_status resq_gemm_f16_pack_weight_size__cpu(int64_t N, int64_t K, size_t *bytes);
/* w: f16 [N][ldw]; NaN/Inf weights are refused here (RESQ_ERR_NONFINITE), once. */
resq_status resq_gemm_f16_pack_weight__cpu(int64_t N, int64_t K, const uint16_t *w, int64_t ldw, void *buf,
                                           size_t bytes, resq_wf16_cpu *out);
/* x: f16 [M][ldx]; bias NULL or [N] (finite, checked). */
resq_status resq_gemm_f16__cpu(int64_t M, const uint16_t *x, int64_t ldx, const resq_wf16_cpu *w, const float *bias,
                               uint16_t *y, int64_t ldy);
resq_status resq_gemm_f16_f32__cpu(int64_t M, const uint16_t *x, int64_t ldx, const resq_wf16_cpu *w,
                                   const float *bias, float *y, int64_t ldy);

/* ---- decoder layer (ref/CONTRACT.md section 14) ----
 * Both forms on the CPU kernels, bit-identical to resq_layer_{q4q8,fp16}_forward__ref
 * (same op order: the GEMMs, quantizers and Hadamard above are exact; RMSNorm,
 * attention, RoPE, K8 and SiLU keep the reference's double/fp32 sequences, only
 * vectorized across independent outputs and split over the pool).
 * The weights are packed into the CPU layouts once by *_pack__cpu, which
 * allocates one block (freed by *_free__cpu) and copies everything it needs
 * (the source layer may be freed afterwards). */
typedef struct resq_layer_q4q8_cpu {
  resq_layer_config c;
  resq_qact_params s_qkv, s_o, s_gu, s_down, s_kv, s_qk8;
  resq_qweight_cpu wq, wk, wv, wo, wg, wu, wd;
  const float *k8; /* [hd][hd] copy, or NULL */
  int online_hadamard, qk_rot_no_prequant;
  size_t bytes; /* of the block */
  void *mem_;   /* private */
} resq_layer_q4q8_cpu;

resq_status resq_layer_q4q8_pack__cpu(const resq_layer_config *c, const resq_layer_q4q8 *L, resq_layer_q4q8_cpu *out);
void resq_layer_q4q8_free__cpu(resq_layer_q4q8_cpu *L);
/* Workspace of the forward pass for T tokens (from the packed layer's splits). */
size_t resq_layer_q4q8_workspace_size__cpu(const resq_layer_q4q8_cpu *L, int64_t T);
/* h_in, h_out: [T, d] f16 in the layer's basis (as the reference). */
resq_status resq_layer_q4q8_forward__cpu(const resq_layer_config *c, const resq_layer_q4q8_cpu *L, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size);

typedef struct resq_layer_fp16_cpu {
  resq_layer_config c;
  resq_wf16_cpu wq, wk, wv, wo, wg, wu, wd;
  const float *ln1, *ln2; /* [d] copies */
  size_t bytes;
  void *mem_;
} resq_layer_fp16_cpu;

resq_status resq_layer_fp16_pack__cpu(const resq_layer_config *c, const resq_layer_fp16 *w, resq_layer_fp16_cpu *out);
void resq_layer_fp16_free__cpu(resq_layer_fp16_cpu *L);
size_t resq_layer_fp16_workspace_size__cpu(const resq_layer_fp16_cpu *L, int64_t T);
resq_status resq_layer_fp16_forward__cpu(const resq_layer_config *c, const resq_layer_fp16_cpu *L, int64_t T,
                                         const uint16_t *h_in, uint16_t *h_out, void *work, size_t work_size);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_CPU_H */
