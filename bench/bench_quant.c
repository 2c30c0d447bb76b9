/* SPDX-License-Identifier: Apache-2.0
 * bench/bench_quant.c -- the mixed 4/8-bit activation quantizer on every
 * CPU-side backend present (resq_quant_act_f16_q4q8__ref, __cpu) and the CPU
 * backend's fused Hadamard + quantizer of the down_proj input, against a
 * memcpy of the same bytes.
 *
 *   quant_act_f16_q4q8__<backend>/K:<K>/group:<g>/r:<r>/rows:<rows>
 *     per token, r = K/8   inputs of q/k/v/gate/up (group = K)
 *     per token, r = 0     input of down_proj (pure 4-bit)
 *     grouped, g = 128, r = 16   o_proj input (per head, head_dim 128)
 *   hadamard_quant_act_f16_q4q8__cpu/K:<K>/group:<K>/r:0/rows:<rows>
 *     y = quant(H_K (x .* s)) without writing the rotated rows (resq/cpu.h),
 *     at the intermediate sizes K = 11008, 14336 (quick: 4096)
 *   bytes = input rows*K*2 + outputs: per row and group, ceil((g-r)/2) bytes of
 *   packed 4-bit codes (0.5 byte each) + r bytes of 8-bit codes + 8 bytes
 *   (fp32 scale + int32 zero point) for each non-empty part.
 *   memcpy/bytes:<ceil(bytes/2)>   the same number of bytes through memcpy.
 *   Counter paired_vs_memcpy (CPU backend): the same ratio from alternating
 *   pairs of calls (bench_stage_common.h).
 *
 * Before timing, every output (codes, scales, zeros) must equal the
 * reference's bit for bit (ref/CONTRACT.md sections 3 and 5; for the reference
 * itself: a second call), on every row up to 64 rows, else on the first and
 * last 32 (rows are quantized independently). The scalar reference itself is
 * timed up to 128 rows. The fused stage's reference is its definition in
 * resq/cpu.h: resq_hadamard_f32__ref on the widened f16 rows, then
 * resq_quant_act_f32_q4q8__ref. Sets: quick K = 4096, rows 1, 16; full K =
 * 4096, 11008, 14336, rows 1, 16, 128, 2048. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stage_common.h"
#include "bench_util.h"
#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
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

/* rows r0.. of q as a descriptor of its own */
static resq_qact qrows(const resq_qact *q, const resq_qact_layout *L, int64_t r0) {
  const int64_t G = L->ngroups;
  resq_qact v = {q->q_lo + r0 * q->ld_lo, q->ld_lo, q->q_hi + r0 * q->ld_hi, q->ld_hi,
                 q->scale_lo + r0 * G,    q->zero_lo + r0 * G, q->scale_hi + r0 * G, q->zero_hi + r0 * G};
  return v;
}

/* nr rows of a (from ar0) and b (from br0) equal in every output */
static int qrows_equal(const resq_qact *a, int64_t ar0, const resq_qact *b, int64_t br0, int64_t nr,
                       const resq_qact_layout *L) {
  const resq_qact x = qrows(a, L, ar0), y = qrows(b, L, br0);
  const size_t G = (size_t)L->ngroups * (size_t)nr * 4;
  return memcmp(x.q_lo, y.q_lo, (size_t)(L->lo_bytes * nr)) == 0 && memcmp(x.q_hi, y.q_hi, (size_t)(L->hi_bytes * nr)) == 0 &&
         memcmp(x.scale_lo, y.scale_lo, G) == 0 && memcmp(x.zero_lo, y.zero_lo, G) == 0 &&
         memcmp(x.scale_hi, y.scale_hi, G) == 0 && memcmp(x.zero_hi, y.zero_hi, G) == 0;
}

/* Bytes one call moves (see the header comment). */
static int64_t quant_bytes(const resq_qact_params *p, const resq_qact_layout *L, int64_t rows) {
  int64_t per_row = p->K * 2 + L->lo_bytes + L->hi_bytes;
  if (p->group - p->r > 0) per_row += 8 * L->ngroups;
  if (p->r > 0) per_row += 8 * L->ngroups;
  return per_row * rows;
}

enum { B_REF = 0, B_CPU = 1, B_FUSED_CPU = 2 };
static const char *const g_family[] = {"quant_act_f16_q4q8__ref", "quant_act_f16_q4q8__cpu",
                                       "hadamard_quant_act_f16_q4q8__cpu"};
#define SIGN_SEED 1234
#define CHECK_ALL 64     /* up to this many rows every row is checked */
#define CHECK_BLOCK 32   /* else the first and last CHECK_BLOCK rows */
#define REF_MAX_ROWS 128 /* the scalar reference is timed up to this many rows (full set) */

static resq_status run(int backend, const resq_qact_params *p, int64_t rows, const uint16_t *x, const int8_t *signs,
                       const resq_qact *q) {
  switch (backend) {
    case B_CPU: return resq_quant_act_f16_q4q8__cpu(p, rows, x, p->K, q);
    case B_FUSED_CPU: return resq_hadamard_quant_act_f16_q4q8__cpu(p, rows, x, p->K, signs, q);
    default: return resq_quant_act_f16_q4q8__ref(p, rows, x, p->K, q);
  }
}

/* The reference of the fused stage: its definition (resq/cpu.h). */
static resq_status fused_ref(const resq_qact_params *p, int64_t rows, const uint16_t *x, const int8_t *signs,
                             const resq_qact *q) {
  const int64_t K = p->K;
  const size_t elems = (size_t)(rows * K), ws = resq_hadamard_workspace_size(K);
  float *xf = rb_alloc(elems * 4), *t = rb_alloc(elems * 4);
  void *work = rb_alloc(ws);
  resq_status s = RESQ_ERR_NOMEM;
  if (xf && t && work) {
    for (size_t i = 0; i < elems; i++) xf[i] = resq_f16_to_f32(x[i]);
    s = resq_hadamard_f32__ref(rows, K, xf, K, t, K, signs, work, ws);
    if (s == RESQ_OK) s = resq_quant_act_f32_q4q8__ref(p, rows, t, K, q);
  }
  rb_free(xf);
  rb_free(t);
  rb_free(work);
  return s;
}

/* one timed call for rb_paired_vs_memcpy */
typedef struct quant_call_ctx {
  int backend;
  const resq_qact_params *p;
  int64_t rows;
  const uint16_t *x;
  const int8_t *signs;
  const resq_qact *q;
} quant_call_ctx;
static resq_status quant_call(const void *ctx) {
  const quant_call_ctx *c = (const quant_call_ctx *)ctx;
  return run(c->backend, c->p, c->rows, c->x, c->signs, c->q);
}

static void bm_quant(resq_bench_state *st, const void *params) {
  const int backend = *(const int *)params;
  const int64_t K = resq_bench_arg(st, 0), group = resq_bench_arg(st, 1), r = resq_bench_arg(st, 2),
                rows = resq_bench_arg(st, 3);
  resq_qact_params p = resq_qact_default(K);
  resq_qact_layout L;
  qbuf a, b;
  uint16_t *x = NULL;
  int8_t *signs = NULL;
  resq_status s;
  p.group = group;
  p.r = r;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if ((s = resq_qact_check(&p, &L)) != RESQ_OK) {
    resq_bench_skip(st, "unsupported parameters: %s", resq_last_error());
    return;
  }
  /* rows are independent: beyond CHECK_ALL rows the reference is computed on
   * the first and last CHECK_BLOCK rows only (a holds them, b every row) */
  const int64_t crows = rows <= CHECK_ALL ? rows : 2 * CHECK_BLOCK;
  x = rb_alloc((size_t)(K * rows) * 2);
  signs = rb_alloc((size_t)K);
  if (!x || !signs || qbuf_alloc(&a, &L, crows) || qbuf_alloc(&b, &L, rows)) {
    resq_bench_error(st, "out of memory");
    goto out;
  }
  resq_rng rng;
  resq_rng_init(&rng, resq_seed_from_name("quant_act_f16_q4q8"));
  rb_fill_f16_normal(&rng, x, (size_t)(K * rows));
  if ((s = resq_hadamard_random_signs(SIGN_SEED, K, signs)) != RESQ_OK) {
    resq_bench_error(st, "signs: %s: %s", resq_status_name(s), resq_last_error());
    goto out;
  }
  memset(b.q.q_lo, 0xff, b.lo); /* so that an unwritten output cannot compare equal */
  int equal = 1;
  for (int blk = 0; blk < (rows <= CHECK_ALL ? 1 : 2) && equal; blk++) {
    const int64_t nr = rows <= CHECK_ALL ? rows : CHECK_BLOCK, r0 = blk ? rows - CHECK_BLOCK : 0;
    const resq_qact dst = qrows(&a.q, &L, blk * CHECK_BLOCK);
    s = backend == B_FUSED_CPU ? fused_ref(&p, nr, x + r0 * K, signs, &dst)
                               : resq_quant_act_f16_q4q8__ref(&p, nr, x + r0 * K, K, &dst);
    if (s != RESQ_OK) {
      resq_bench_error(st, "reference: %s: %s", resq_status_name(s), resq_last_error());
      goto out;
    }
    if (blk == 0 && (s = run(backend, &p, rows, x, signs, &b.q)) != RESQ_OK) {
      resq_bench_error(st, "%s: %s: %s", g_family[backend], resq_status_name(s), resq_last_error());
      goto out;
    }
    equal = qrows_equal(&a.q, blk * CHECK_BLOCK, &b.q, r0, nr, &L);
  }
  if (!equal) {
    resq_bench_error(st, "%s differs from the reference (codes, scales or zeros); REPRO: bench_quant "
                     "--benchmark_filter='%s/K:%lld/group:%lld/r:%lld/rows:%lld$'", g_family[backend],
                     g_family[backend], (long long)K, (long long)group, (long long)r, (long long)rows);
    goto out;
  }
  while (resq_bench_keep_running(st, 1)) run(backend, &p, rows, x, signs, &b.q);
  int64_t bytes = quant_bytes(&p, &L, rows);
  resq_bench_counter(st, "bytes", (double)bytes, RESQ_CTR_RATE);
  if (backend != B_REF) { /* the optimized stages' targets are ratios to memcpy: also measured in pairs */
    const quant_call_ctx c = {backend, &p, rows, x, signs, &b.q};
    char id[96];
    snprintf(id, sizeof id, "%s/%lld/%lld/%lld/%lld", g_family[backend], (long long)K, (long long)group, (long long)r,
             (long long)rows);
    rb_paired_vs_memcpy(st, id, bytes, quant_call, &c);
  }
  resq_bench_label(st, "baseline=memcpy/bytes:%lld", (long long)((bytes + 1) / 2));
out:
  rb_free(x);
  rb_free(signs);
  qbuf_free(&a);
  qbuf_free(&b);
}

int main(int argc, char **argv) {
  static const int64_t full_K[] = {4096, 11008, 14336}, full_rows[] = {1, 16, 128, 2048};
  static const int64_t quick_K[] = {4096}, quick_rows[] = {1, 16};
  static const int backends[] = {B_REF, B_CPU, B_FUSED_CPU};
  const int quick = rb_quick();
  const int64_t *Ks = quick ? quick_K : full_K, *rows = quick ? quick_rows : full_rows;
  const int nk = quick ? 1 : 3, nr = quick ? 2 : 4;
  static const char *const names[] = {"K", "group", "r", "rows"};
  char buf[64];
  rb_context_common();
  resq_bench_context("resq_cpu_isa", resq_cpu_isa_name(resq_cpu_get_isa()));
  snprintf(buf, sizeof buf, "%d", resq_cpu_get_threads());
  resq_bench_context("resq_cpu_threads", buf);
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
        for (int b = 0; b < 2; b++) {
          if (backends[b] == B_REF && rows[j] > REF_MAX_ROWS) continue;
          resq_bench_register_args(g_family[backends[b]], bm_quant, &backends[b], sizeof backends[b],
                                   RESQ_BENCH_REAL_TIME, names, a, 4);
        }
        /* the fused Hadamard + 4-bit quantizer: the down_proj input (K = I; quick: 4096) */
        if (v == 1 && (quick || K != 4096))
          resq_bench_register_args(g_family[B_FUSED_CPU], bm_quant, &backends[2], sizeof backends[2],
                                   RESQ_BENCH_REAL_TIME, names, a, 4);
      }
  }
  return resq_bench_main(argc, argv);
}
