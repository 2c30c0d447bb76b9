/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_stage_common.h -- the memcpy baseline the activation stages
 * (Hadamard, quantizers) are measured against, in the same binary.
 *
 *   memcpy/bytes:B   copies B bytes; "bytes" = 2B (read + write). A stage that
 *                    moves T bytes (inputs + outputs) is paired with B = ceil(T/2)
 *                    through its label "baseline=memcpy/bytes:B", so the two
 *                    move the same number of bytes and run_all's ratio
 *                    stage GB/s / memcpy GB/s is the stage's speed relative to
 *                    the fastest possible pass over its data. */
#ifndef RESQ_BENCH_STAGE_COMMON_H
#define RESQ_BENCH_STAGE_COMMON_H

#include <stdint.h>
#include <string.h>

#include "bench_util.h"
#include "resq_bench.h"

static void rb_bm_memcpy(resq_bench_state *st, const void *params) {
  (void)params;
  size_t bytes = (size_t)resq_bench_arg(st, 0);
  unsigned char *src = rb_alloc(bytes), *dst = rb_alloc(bytes);
  if (!src || !dst) {
    resq_bench_error(st, "cannot allocate 2 x %zu bytes", bytes);
  } else {
    resq_rng r;
    resq_rng_init(&r, resq_seed_from_name("memcpy"));
    rb_fill_u8(&r, src, bytes);
    memset(dst, 0, bytes);
    memcpy(dst, src, bytes);
    if (memcmp(dst, src, bytes) != 0) {
      resq_bench_error(st, "memcpy result differs from its source");
    } else {
      while (resq_bench_keep_running(st, 1)) memcpy(dst, src, bytes);
      resq_bench_counter(st, "bytes", 2.0 * (double)bytes, RESQ_CTR_RATE);
    }
  }
  rb_free(src);
  rb_free(dst);
}

/* Register memcpy/bytes:B once per program (B = ceil(stage_bytes / 2));
 * returns B for the stage's label. */
#define RB_MAX_MEMCPY 256
static int64_t rb_register_memcpy(int64_t stage_bytes) {
  static int64_t done[RB_MAX_MEMCPY];
  static int ndone;
  static const char *const names[] = {"bytes"};
  int64_t b = (stage_bytes + 1) / 2;
  for (int i = 0; i < ndone; i++)
    if (done[i] == b) return b;
  if (ndone < RB_MAX_MEMCPY) done[ndone++] = b;
  resq_bench_register_args("memcpy", rb_bm_memcpy, NULL, 0, RESQ_BENCH_REAL_TIME, names, &b, 1);
  return b;
}

#endif /* RESQ_BENCH_STAGE_COMMON_H */
