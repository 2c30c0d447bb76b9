/* SPDX-License-Identifier: Apache-2.0
 * verify/cuda_test_util.h -- small device-memory helpers of the CUDA (GPU)
 * tests: every failure is a counted check (resq_check.h), and a device buffer
 * that cannot be allocated aborts the program with a repro line, since every
 * later check would be meaningless. */
#ifndef RESQ_VERIFY_CUDA_TEST_UTIL_H
#define RESQ_VERIFY_CUDA_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cuda.h"
#include "resq/quant_act.h"
#include "resq_check.h"

/* device copy of n bytes of host memory (n may be 0) */
static inline void *dup_h2d(const void *h, size_t n) {
  void *d = NULL;
  if (resq_cuda_malloc(&d, n) != RESQ_OK) {
    RC_FAIL("cudaMalloc of %zu bytes: %s", n, resq_last_error());
    exit(rc_finish());
  }
  if (n && resq_cuda_h2d(d, h, n) != RESQ_OK) RC_FAIL("H2D: %s", resq_last_error());
  return d;
}
/* device buffer of n bytes, every byte = fill */
static inline void *dev_fill(size_t n, int fill) {
  void *d = NULL;
  if (resq_cuda_malloc(&d, n) != RESQ_OK) {
    RC_FAIL("cudaMalloc of %zu bytes: %s", n, resq_last_error());
    exit(rc_finish());
  }
  if (resq_cuda_memset(d, fill, n) != RESQ_OK) RC_FAIL("memset: %s", resq_last_error());
  return d;
}
static inline void d2h_sync(void *h, const void *d, size_t n) {
  if (resq_cuda_sync() != RESQ_OK) RC_FAIL("sync: %s", resq_last_error());
  if (n && resq_cuda_d2h(h, d, n) != RESQ_OK) RC_FAIL("D2H: %s", resq_last_error());
}

/* A quantizer output (host or device): every array starts as bytes 0xa5 and
 * has guard bytes: `extra` bytes at the end of every code row and one spare
 * scale/zero entry, so that writes outside the layout are seen. */
typedef struct {
  resq_qact q;
  size_t nlo, nhi, ng;
  int dev;
} tq_buf;

static inline void tq_alloc(tq_buf *b, const resq_qact_layout *L, int64_t M, int64_t extra, int dev) {
  b->dev = dev;
  b->q.ld_lo = L->lo_bytes + extra;
  b->q.ld_hi = L->hi_bytes + extra;
  b->nlo = (size_t)(M * b->q.ld_lo) + 8;
  b->nhi = (size_t)(M * b->q.ld_hi) + 8;
  b->ng = (size_t)(M * L->ngroups) + 2;
  void *p[6];
  size_t sz[6] = {b->nlo, b->nhi, b->ng * 4, b->ng * 4, b->ng * 4, b->ng * 4};
  for (int i = 0; i < 6; i++) {
    if (dev) {
      p[i] = dev_fill(sz[i], 0xa5);
    } else {
      p[i] = malloc(sz[i]);
      memset(p[i], 0xa5, sz[i]);
    }
  }
  b->q.q_lo = (uint8_t *)p[0];
  b->q.q_hi = (uint8_t *)p[1];
  b->q.scale_lo = (float *)p[2];
  b->q.zero_lo = (int32_t *)p[3];
  b->q.scale_hi = (float *)p[4];
  b->q.zero_hi = (int32_t *)p[5];
}

static inline void tq_free(tq_buf *b) {
  void *p[6] = {b->q.q_lo, b->q.q_hi, b->q.scale_lo, b->q.zero_lo, b->q.scale_hi, b->q.zero_hi};
  for (int i = 0; i < 6; i++) {
    if (b->dev)
      resq_cuda_free(p[i]);
    else
      free(p[i]);
  }
  memset(b, 0, sizeof *b);
}

/* host copy of a device buffer (same layout) */
static inline void tq_download(tq_buf *h, const tq_buf *d, const resq_qact_layout *L, int64_t M, int64_t extra) {
  tq_alloc(h, L, M, extra, 0);
  d2h_sync(h->q.q_lo, d->q.q_lo, d->nlo);
  d2h_sync(h->q.q_hi, d->q.q_hi, d->nhi);
  d2h_sync(h->q.scale_lo, d->q.scale_lo, d->ng * 4);
  d2h_sync(h->q.zero_lo, d->q.zero_lo, d->ng * 4);
  d2h_sync(h->q.scale_hi, d->q.scale_hi, d->ng * 4);
  d2h_sync(h->q.zero_hi, d->q.zero_hi, d->ng * 4);
}

/* every byte of both buffers, guard bytes included */
static inline int tq_compare(const tq_buf *got, const tq_buf *want, const char *tag) {
  char w[200];
  int ok = 1;
  snprintf(w, sizeof w, "%s: q_lo", tag);
  ok &= rc_equal_bytes(got->q.q_lo, want->q.q_lo, want->nlo, w);
  snprintf(w, sizeof w, "%s: q_hi", tag);
  ok &= rc_equal_bytes(got->q.q_hi, want->q.q_hi, want->nhi, w);
  snprintf(w, sizeof w, "%s: scale_lo", tag);
  ok &= rc_equal_f32_bits(got->q.scale_lo, want->q.scale_lo, want->ng, w);
  snprintf(w, sizeof w, "%s: zero_lo", tag);
  ok &= rc_equal_i32(got->q.zero_lo, want->q.zero_lo, want->ng, w);
  snprintf(w, sizeof w, "%s: scale_hi", tag);
  ok &= rc_equal_f32_bits(got->q.scale_hi, want->q.scale_hi, want->ng, w);
  snprintf(w, sizeof w, "%s: zero_hi", tag);
  ok &= rc_equal_i32(got->q.zero_hi, want->q.zero_hi, want->ng, w);
  return ok;
}

#endif
