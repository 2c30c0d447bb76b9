/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_quant.c -- the mixed 4/8-bit activation quantizer
 * (resq_quant_act_f16_q4q8__ref and, later, its optimized backends) against a
 * memcpy of the same bytes.
 *
 *   quant_act_f16_q4q8__<backend>/K:<K>/group:<g>/r:<r>/rows:<rows>
 *     per token, r = K/8   inputs of q/k/v/gate/up (group = K)
 *     per token, r = 0     input of down_proj (pure 4-bit)
 *     grouped, g = 128, r = 16   o_proj input (per head, head_dim 128)
 *   bytes = input rows*K*2 + outputs: per row and group, ceil((g-r)/2) bytes of
 *   packed 4-bit codes (0.5 byte each) + r bytes of 8-bit codes + 8 bytes
 *   (fp32 scale + int32 zero point) for each non-empty part.
 *   memcpy/bytes:<ceil(bytes/2)>   the same number of bytes through memcpy.
 *
 * Before timing, the reference is run twice and must give identical bits in
 * every output (codes, scales, zeros). Sets: quick K = 4096, rows 1, 16; full
 * K = 4096, 11008, 14336, rows 1, 16, 128, 2048. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stage_common.h"
#include "bench_util.h"
#include "resq/quant_act.h"
#include "resq/rng.h"
#include "resq/status.h"
#include "resq_bench.h"

typedef struct qbuf {
  resq_qact q;
  size_t lo, hi, sc; /* bytes of q_lo, q_hi; elements of each scale/zero array */
} qbuf;

static int qbuf_alloc(qbuf *b, const resq_qact_layout *L, int64_t rows) {
  memset(b, 0, sizeof *b);
  b->lo = (size_t)(L->lo_bytes * rows);
  b->hi = (size_t)(L->hi_bytes * rows);
  b->sc = (size_t)(L->ngroups * rows);
  b->q.q_lo = rb_alloc(b->lo);
  b->q.q_hi = rb_alloc(b->hi);
  b->q.ld_lo = L->lo_bytes;
  b->q.ld_hi = L->hi_bytes;
  b->q.scale_lo = rb_alloc(b->sc * 4);
  b->q.zero_lo = rb_alloc(b->sc * 4);
  b->q.scale_hi = rb_alloc(b->sc * 4);
  b->q.zero_hi = rb_alloc(b->sc * 4);
  if (!b->q.q_lo || !b->q.q_hi || !b->q.scale_lo || !b->q.zero_lo || !b->q.scale_hi || !b->q.zero_hi)
    return -1;
  memset(b->q.q_lo, 0, b->lo);
  memset(b->q.q_hi, 0, b->hi);
  memset(b->q.scale_lo, 0, b->sc * 4);
  memset(b->q.zero_lo, 0, b->sc * 4);
  memset(b->q.scale_hi, 0, b->sc * 4);
  memset(b->q.zero_hi, 0, b->sc * 4);
  return 0;
}

static void qbuf_free(qbuf *b) {
  rb_free(b->q.q_lo);
  rb_free(b->q.q_hi);
  rb_free(b->q.scale_lo);
  rb_free(b->q.zero_lo);
  rb_free(b->q.scale_hi);
  rb_free(b->q.zero_hi);
}

static int qbuf_equal(const qbuf *a, const qbuf *b) {
  return memcmp(a->q.q_lo, b->q.q_lo, a->lo) == 0 && memcmp(a->q.q_hi, b->q.q_hi, a->hi) == 0 &&
         memcmp(a->q.scale_lo, b->q.scale_lo, a->sc * 4) == 0 &&
         memcmp(a->q.zero_lo, b->q.zero_lo, a->sc * 4) == 0 &&
         memcmp(a->q.scale_hi, b->q.scale_hi, a->sc * 4) == 0 &&
         memcmp(a->q.zero_hi, b->q.zero_hi, a->sc * 4) == 0;
}

/* Bytes one call moves (see the header comment). */
static int64_t quant_bytes(const resq_qact_params *p, const resq_qact_layout *L, int64_t rows) {
  int64_t per_row = p->K * 2 + L->lo_bytes + L->hi_bytes;
  if (p->group - p->r > 0) per_row += 8 * L->ngroups;
  if (p->r > 0) per_row += 8 * L->ngroups;
  return per_row * rows;
}

static void bm_quant_ref(resq_bench_state *st, const void *params) {
  (void)params;
  const int64_t K = resq_bench_arg(st, 0), group = resq_bench_arg(st, 1), r = resq_bench_arg(st, 2),
                rows = resq_bench_arg(st, 3);
  resq_qact_params p = resq_qact_default(K);
  resq_qact_layout L;
  qbuf a, b;
  uint16_t *x = NULL;
  resq_status s;
  p.group = group;
  p.r = r;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if ((s = resq_qact_check(&p, &L)) != RESQ_OK) {
    resq_bench_skip(st, "unsupported parameters: %s", resq_last_error());
    return;
  }
  x = rb_alloc((size_t)(K * rows) * 2);
  if (!x || qbuf_alloc(&a, &L, rows) || qbuf_alloc(&b, &L, rows)) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  resq_rng rng;
  resq_rng_init(&rng, resq_seed_from_name("quant_act_f16_q4q8"));
  rb_fill_f16_normal(&rng, x, (size_t)(K * rows));
  memset(b.q.q_lo, 0xff, b.lo); /* so that an unwritten output cannot compare equal */
  if ((s = resq_quant_act_f16_q4q8__ref(&p, rows, x, K, &a.q)) != RESQ_OK ||
      (s = resq_quant_act_f16_q4q8__ref(&p, rows, x, K, &b.q)) != RESQ_OK) {
    resq_bench_error(st, "%s: %s", resq_status_name(s), resq_last_error());
    goto out;
  }
  if (!qbuf_equal(&a, &b)) {
    resq_bench_error(st, "two reference calls on the same input differ");
    goto out;
  }
  while (resq_bench_keep_running(st, 1)) resq_quant_act_f16_q4q8__ref(&p, rows, x, K, &a.q);
  int64_t bytes = quant_bytes(&p, &L, rows);
  resq_bench_counter(st, "bytes", (double)bytes, RESQ_CTR_RATE);
  resq_bench_label(st, "baseline=memcpy/bytes:%lld", (long long)((bytes + 1) / 2));
out:
  rb_free(x);
  qbuf_free(&a);
  qbuf_free(&b);
}

int main(int argc, char **argv) {
  static const int64_t full_K[] = {4096, 11008, 14336}, full_rows[] = {1, 16, 128, 2048};
  static const int64_t quick_K[] = {4096}, quick_rows[] = {1, 16};
  const int quick = rb_quick();
  const int64_t *Ks = quick ? quick_K : full_K, *rows = quick ? quick_rows : full_rows;
  const int nk = quick ? 1 : 3, nr = quick ? 2 : 4;
  static const char *const names[] = {"K", "group", "r", "rows"};
  rb_context_common();
  for (int i = 0; i < nk; i++) {
    const int64_t K = Ks[i];
    const int64_t variants[3][2] = {{K, K / 8}, {K, 0}, {128, 16}}; /* {group, r} */
    for (int v = 0; v < 3; v++)
      for (int j = 0; j < nr; j++) {
        resq_qact_params p = resq_qact_default(K);
        resq_qact_layout L;
        p.group = variants[v][0];
        p.r = variants[v][1];
        if (resq_qact_check(&p, &L) != RESQ_OK) continue;
        int64_t a[4] = {K, p.group, p.r, rows[j]};
        rb_register_memcpy(quant_bytes(&p, &L, rows[j]));
        resq_bench_register_args("quant_act_f16_q4q8__ref", bm_quant_ref, NULL, 0, RESQ_BENCH_REAL_TIME, names,
                                 a, 4);
      }
  }
  return resq_bench_main(argc, argv);
}
