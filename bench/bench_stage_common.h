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
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "resq/status.h"
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

/* The paired ratio: counter "paired_vs_memcpy" = the median over n pairs of
 * t(memcpy of B bytes) / t(stage call), B = ceil(stage_bytes / 2): stage
 * speed / memcpy speed, as run_all's vs_memcpy, but with the two sides of each
 * pair measured within milliseconds of each other instead of in two
 * benchmarks minutes apart; "paired_q1" / "paired_q3" are the quartiles of the
 * n ratios, so the report shows how much the host moved a single pair. The
 * side that goes first alternates, and each timed call follows one untimed
 * call of its own side. Where the two working sets together exceed the LLC
 * (2048 rows of K = 4096: 21 + 21 MB against 32 MiB of L3) that untimed call
 * does not restore either side's back-to-back state fully, so there the
 * paired figure measures a partly colder cache than the two loops do.
 * n: as many pairs as fit in RB_PAIRED_S seconds, odd, 5 to 201. Measured
 * once per process and configuration (key: the caller's id) and reported by
 * every invocation, because Google Benchmark calls a benchmark several times
 * per repetition to size its loop. Counter "paired_n" = n. The stage calls of
 * the CPU backend use every thread of its pool and the memcpy runs on one, as
 * in the two benchmarks compared. A stage call that fails (it passed the same
 * call's check just before) ends the pairing with an error. The pairs are
 * rb_pair_times's (bench_util.h) with single calls per side. */
#define RB_PAIRED_S 0.25
#define RB_MAX_PAIRED 512
typedef resq_status (*rb_stage_fn)(const void *ctx); /* one stage call; RESQ_OK or its failure */
typedef struct rb_memcpy_side {
  unsigned char *dst;
  const unsigned char *src;
  size_t bytes;
} rb_memcpy_side;
typedef struct rb_stage_side {
  rb_stage_fn call;
  const void *ctx;
} rb_stage_side;
static int rb_side_memcpy(void *ctx) {
  const rb_memcpy_side *m = (const rb_memcpy_side *)ctx;
  memcpy(m->dst, m->src, m->bytes);
  return 0;
}
static int rb_side_stage(void *ctx) {
  const rb_stage_side *s = (const rb_stage_side *)ctx;
  return (int)s->call(s->ctx);
}
static void rb_paired_vs_memcpy(resq_bench_state *st, const char *id, int64_t stage_bytes, rb_stage_fn call,
                                const void *ctx) {
  static char ids[RB_MAX_PAIRED][96];
  static rb_pair_stats ps[RB_MAX_PAIRED];
  static int nids;
  int slot = -1;
  for (int i = 0; i < nids; i++)
    if (strcmp(ids[i], id) == 0) slot = i;
  if (slot < 0) {
    const size_t bytes = (size_t)((stage_bytes + 1) / 2);
    unsigned char *src = rb_alloc(bytes), *dst = rb_alloc(bytes);
    if (!src || !dst || nids >= RB_MAX_PAIRED || strlen(id) >= sizeof ids[0]) {
      rb_free(src);
      rb_free(dst);
      return; /* no counter: run_all leaves the column empty */
    }
    memset(src, 0x5a, bytes);
    memset(dst, 0, bytes);
    rb_memcpy_side ms = {dst, src, bytes};
    rb_stage_side ss = {call, ctx};
    int bad = 0;
    const int n =
        rb_pair_times(rb_side_memcpy, &ms, rb_side_stage, &ss, 0.0, 0.0, RB_PAIRED_S, 5, 201, &ps[nids], &bad);
    rb_free(src);
    rb_free(dst);
    if (n < 0) {
      resq_bench_error(st, "%s: a stage call of the paired measurement failed: %s: %s", id,
                       resq_status_name((resq_status)bad), resq_last_error());
      return;
    }
    slot = nids++;
    strcpy(ids[slot], id);
  }
  resq_bench_counter(st, "paired_vs_memcpy", ps[slot].med, RESQ_CTR_PLAIN);
  resq_bench_counter(st, "paired_q1", ps[slot].q1, RESQ_CTR_PLAIN);
  resq_bench_counter(st, "paired_q3", ps[slot].q3, RESQ_CTR_PLAIN);
  resq_bench_counter(st, "paired_n", (double)ps[slot].n, RESQ_CTR_PLAIN);
}

#endif /* RESQ_BENCH_STAGE_COMMON_H */
