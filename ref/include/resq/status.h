/* SPDX-License-Identifier: Apache-2.0
 * resq/status.h -- status codes returned by every public resq function.
 *
 * Every public entry point returns a resq_status. On failure it also leaves a
 * one-line, human-readable explanation in a thread-local buffer that
 * resq_last_error() returns (for example "hadamard: n=100 is not supported;
 * nearest supported sizes are 96 and 104"). Functions never print and never
 * abort on bad input; they validate everything before writing any output, so a
 * failed call leaves caller-owned outputs untouched ("loses nothing").
 */
#ifndef RESQ_STATUS_H
#define RESQ_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resq_status {
  RESQ_OK = 0,
  RESQ_ERR_INVALID_ARG = 1,  /* NULL pointer, negative size, bad parameter value */
  RESQ_ERR_SHAPE = 2,        /* shapes of inputs disagree, K not divisible by a group */
  RESQ_ERR_UNSUPPORTED = 3,  /* valid request this implementation does not support (e.g. Hadamard n) */
  RESQ_ERR_NONFINITE = 4,    /* NaN or Inf in an input that must be finite */
  RESQ_ERR_DEGENERATE = 5,   /* input makes the method undefined (e.g. zero scale in parity mode) */
  RESQ_ERR_FORMAT = 6,       /* malformed file (NPY header, manifest) */
  RESQ_ERR_IO = 7,           /* open/read/write/rename failed */
  RESQ_ERR_TOO_LARGE = 8,    /* size beyond the documented limits, refused before allocating */
  RESQ_ERR_NOMEM = 9,        /* allocation failed */
  RESQ_ERR_NO_DEVICE = 10,   /* optimized backend has no usable device (no GPU, no driver) */
  RESQ_ERR_DEVICE = 11,      /* device runtime/library reported an error */
  RESQ_ERR_INTERNAL = 12     /* a check that should never fire; please report */
} resq_status;

/* Short constant name of a status, e.g. "RESQ_ERR_SHAPE". Never NULL. */
const char *resq_status_name(resq_status s);

/* Detail message of the last failing call on this thread ("" if none). */
const char *resq_last_error(void);

/* Record a detail message (printf-style) and return `s`. Used by all backends. */
resq_status resq_fail(resq_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clear the detail message. */
void resq_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_STATUS_H */
