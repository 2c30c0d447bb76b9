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

#ifdef __cplusplus
}
#endif
#endif /* RESQ_CUDA_H */
