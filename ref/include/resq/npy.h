/* SPDX-License-Identifier: Apache-2.0
 * resq/npy.h -- reading and writing NumPy .npy files (format versions 1, 2, 3).
 *
 * Supported element types (little endian, C order):
 *   descr  '<f2' f16   '<f4' f32   '<f8' f64   '|i1' i8   '|u1' u8
 *          '<i2' i16   '<u2' u16   '<i4' i32   '<i8' i64
 *          '<V2' or '|V2'  bf16  (what a 2-byte opaque void array looks like)
 * bf16 convention: numpy has no bfloat16, so the suite's stages that accept a
 * 16-bit float input read a u16 array as bf16 *bit patterns* (save a torch
 * bfloat16 tensor with t.view(torch.uint16).numpy()); '<V2' arrays are bf16
 * without any convention. Files written by the suite never use bf16.
 *
 * Everything in a file is validated before anything is allocated from it: magic,
 * version, header length (at most RESQ_NPY_MAX_HEADER bytes), the header dict
 * (exactly the keys descr/fortran_order/shape, Python-literal syntax), shape
 * (at most RESQ_NPY_MAX_DIM dims, no negative dims, no size overflow), and the
 * file size (data must be exactly numel*itemsize bytes: truncated files and
 * trailing bytes are errors). Big-endian data and Fortran order with more than
 * one non-unit dimension are refused with RESQ_ERR_UNSUPPORTED.
 */
#ifndef RESQ_NPY_H
#define RESQ_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "resq/dtype.h"
#include "resq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RESQ_NPY_MAX_DIM 8
#define RESQ_NPY_MAX_HEADER (1u << 20)          /* 1 MiB; numpy writes < 1 KiB */
#define RESQ_NPY_MAX_BYTES ((uint64_t)1 << 40)  /* 1 TiB of data: refused above */

/* An owned n-dimensional array (C order, contiguous). */
typedef struct resq_array {
  resq_dtype dtype;
  int ndim;
  int64_t shape[RESQ_NPY_MAX_DIM];
  void *data;    /* malloc'd; NULL when numel == 0 */
  size_t nbytes; /* numel * itemsize */
} resq_array;

int64_t resq_array_numel(const resq_array *a);
void resq_array_free(resq_array *a); /* frees data, zeroes the struct; NULL-safe */
/* Allocate a zero-filled array (checks the size limit before allocating). */
resq_status resq_array_alloc(resq_array *a, resq_dtype t, int ndim, const int64_t *shape);

/* Parse an in-memory .npy image. On failure `out` is zeroed and nothing leaks. */
resq_status resq_npy_parse(const void *buf, size_t len, resq_array *out);
/* Read a file. The error message names the path. */
resq_status resq_npy_read(const char *path, resq_array *out);

/* Build the version-1 (or 2, if needed) header for an array into `buf`
 * (capacity `cap`); the header is padded so data starts 64-byte aligned. */
resq_status resq_npy_header(resq_dtype t, int ndim, const int64_t *shape, char *buf, size_t cap,
                            size_t *len);
/* Write `path` directly (the caller makes it atomic, see resq_out_*). On
 * failure the partial file is removed. */
resq_status resq_npy_write(const char *path, resq_dtype t, int ndim, const int64_t *shape,
                           const void *data);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_NPY_H */
