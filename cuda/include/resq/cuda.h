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

#include "resq/hadamard.h"
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
 *   K = 108, 140, 156, 172: m <= 256   (e.g. 11008 = 172*64)
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

#ifdef __cplusplus
}
#endif
#endif /* RESQ_CUDA_H */
