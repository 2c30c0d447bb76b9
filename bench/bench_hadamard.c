/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_hadamard.c -- the randomized Hadamard rotation y = (x .* s) H_n^T
 * on f16 rows at the Llama activation widths, every CPU-side backend present
 * (resq_hadamard_f16__ref, resq_hadamard_f16__cpu), against a memcpy of the
 * same bytes.
 *
 *   hadamard_f16__<backend>/n:<n>/rows:<rows>
 *     bytes = rows*n*2 (x) + rows*n*2 (y); the signs and the workspace are
 *     small and cache resident, not counted.
 *   memcpy/bytes:<rows*n*2>   the same 4*rows*n bytes through memcpy.
 *   Counter paired_vs_memcpy (CPU backend): the same ratio from alternating
 *   pairs of calls (bench_stage_common.h).
 *
 * Before timing: the reference is run twice on the same input and must give
 * identical bits (and a non-zero result); the CPU backend must give the
 * reference's bits exactly (ref/CONTRACT.md section 2: fixed butterfly order,
 * one RNE rounding to f16), on every row up to 64 rows, else on the first and
 * last 32 (rows are independent). The scalar reference itself is timed up to
 * 128 rows (at 2048 rows of 14336 it takes seconds per call). Sets: quick n = 4096, rows 1, 16; full n = 4096
 * (d of Llama-2-7B/3-8B), 11008 and 14336 (their intermediate sizes; the
 * down_proj input is rotated online), rows 1, 16, 128, 2048. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stage_common.h"
#include "bench_util.h"
#include "resq/cpu.h"
#include "resq/hadamard.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"

enum { B_REF = 0, B_CPU = 1 };
#define CHECK_ALL 64   /* up to this many rows every row is checked */
#define CHECK_BLOCK 32 /* else the first and last CHECK_BLOCK rows */
#define REF_MAX_ROWS 128 /* the scalar reference is timed up to this many rows (full set) */
static const char *const g_family[] = {"hadamard_f16__ref", "hadamard_f16__cpu"};

static resq_status run(int backend, int64_t rows, int64_t n, const uint16_t *x, uint16_t *y, const int8_t *signs,
                       void *work, size_t ws) {
  return backend == B_CPU ? resq_hadamard_f16__cpu(rows, n, x, n, y, n, signs, work, ws)
                          : resq_hadamard_f16__ref(rows, n, x, n, y, n, signs, work, ws);
}

/* one timed call for rb_paired_vs_memcpy */
typedef struct had_call_ctx {
  int backend;
  int64_t rows, n;
  const uint16_t *x;
  uint16_t *y;
  const int8_t *signs;
  void *work;
  size_t ws;
} had_call_ctx;
static resq_status had_call(const void *ctx) {
  const had_call_ctx *c = (const had_call_ctx *)ctx;
  return run(c->backend, c->rows, c->n, c->x, c->y, c->signs, c->work, c->ws);
}

static void bm_hadamard(resq_bench_state *st, const void *params) {
  const int backend = *(const int *)params;
  const int64_t n = resq_bench_arg(st, 0), rows = resq_bench_arg(st, 1);
  const size_t elems = (size_t)(n * rows);
  uint16_t *x = rb_alloc(elems * 2), *y = rb_alloc(elems * 2), *y2 = rb_alloc(elems * 2);
  int8_t *signs = rb_alloc((size_t)n);
  size_t ws = resq_hadamard_workspace_size(n);
  void *work = rb_alloc(ws);
  resq_status s;
  if (!x || !y || !y2 || !signs || !work) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  resq_rng r;
  resq_rng_init(&r, resq_seed_from_name("hadamard_f16"));
  rb_fill_f16_normal(&r, x, elems);
  memset(y, 0, elems * 2);
  memset(y2, 0xff, elems * 2);
  if ((s = resq_hadamard_random_signs(1234, n, signs)) != RESQ_OK ||
      (s = run(backend, rows, n, x, y2, signs, work, ws)) != RESQ_OK) {
    resq_bench_error(st, "%s: %s", resq_status_name(s), resq_last_error());
    goto out;
  }
  /* check: the backend gives the reference's bits (for the reference: a
   * second call gives the same bits) and the result is not vacuous. Rows are
   * independent, so beyond CHECK_ALL rows the reference is computed on the
   * first and last CHECK_BLOCK rows only (the scalar reference at 2048 rows of
   * 14336 takes seconds per call). */
  for (int blk = 0; blk < 2; blk++) {
    const int64_t r0 = rows <= CHECK_ALL ? (blk ? rows : 0) : (blk ? rows - CHECK_BLOCK : 0);
    const int64_t nr = rows <= CHECK_ALL ? (blk ? 0 : rows) : CHECK_BLOCK;
    if (nr == 0) continue;
    if ((s = resq_hadamard_f16__ref(nr, n, x + r0 * n, n, y + r0 * n, n, signs, work, ws)) != RESQ_OK) {
      resq_bench_error(st, "reference: %s: %s", resq_status_name(s), resq_last_error());
      goto out;
    }
    const size_t b0 = (size_t)(r0 * n), be = (size_t)((r0 + nr) * n);
    for (size_t i = b0; i < be; i++)
      if (y[i] != y2[i]) {
        resq_bench_error(st, "%s differs from the reference at row %zu column %zu (0x%04x, reference 0x%04x); REPRO: "
                         "bench_hadamard --benchmark_filter='%s/n:%lld/rows:%lld$'", g_family[backend], i / (size_t)n,
                         i % (size_t)n, y2[i], y[i], g_family[backend], (long long)n, (long long)rows);
        goto out;
      }
  }
  size_t nonzero = 0;
  for (size_t i = 0; i < elems; i++) nonzero += (y2[i] & 0x7fff) != 0;
  if (nonzero < elems / 2) {
    resq_bench_error(st, "vacuous result: only %zu of %zu outputs are non-zero", nonzero, elems);
    goto out;
  }
  while (resq_bench_keep_running(st, 1)) run(backend, rows, n, x, y, signs, work, ws);
  resq_bench_counter(st, "bytes", 4.0 * (double)elems, RESQ_CTR_RATE);
  if (backend == B_CPU) { /* the target is a ratio to memcpy: also measured in pairs */
    const had_call_ctx c = {backend, rows, n, x, y, signs, work, ws};
    char id[96];
    snprintf(id, sizeof id, "%s/%lld/%lld", g_family[backend], (long long)n, (long long)rows);
    rb_paired_vs_memcpy(st, id, 4 * (int64_t)elems, had_call, &c);
  }
  resq_bench_label(st, "baseline=memcpy/bytes:%lld", (long long)(2 * (int64_t)elems));
out:
  rb_free(x);
  rb_free(y);
  rb_free(y2);
  rb_free(signs);
  rb_free(work);
}

int main(int argc, char **argv) {
  static const int64_t full_n[] = {4096, 11008, 14336}, full_rows[] = {1, 16, 128, 2048};
  static const int64_t quick_n[] = {4096}, quick_rows[] = {1, 16};
  const int quick = rb_quick();
  const int64_t *ns = quick ? quick_n : full_n, *rows = quick ? quick_rows : full_rows;
  const int nn = quick ? 1 : 3, nr = quick ? 2 : 4;
  static const char *const names[] = {"n", "rows"};
  static const int backends[] = {B_REF, B_CPU};
  char buf[4096];
  rb_context_common();
  resq_bench_context("resq_cpu_isa", resq_cpu_isa_name(resq_cpu_get_isa()));
  snprintf(buf, sizeof buf, "%d", resq_cpu_get_threads());
  resq_bench_context("resq_cpu_threads", buf);
  for (int i = 0; i < nn; i++)
    for (int j = 0; j < nr; j++) {
      int64_t a[2] = {ns[i], rows[j]};
      rb_register_memcpy(4 * ns[i] * rows[j]);
      for (int b = 0; b < 2; b++) {
        if (backends[b] == B_REF && rows[j] > REF_MAX_ROWS) continue;
        resq_bench_register_args(g_family[backends[b]], bm_hadamard, &backends[b], sizeof backends[b],
                                 RESQ_BENCH_REAL_TIME, names, a, 2);
      }
    }
  return resq_bench_main(argc, argv);
}
