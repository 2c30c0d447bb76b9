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
 *
 * Before timing, every output (codes, scales, zeros) must equal the
 * reference's bit for bit (ref/CONTRACT.md sections 3 and 5; for the reference
 * itself: a second call). The fused stage's reference is its definition in
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

enum { B_REF = 0, B_CPU = 1, B_FUSED_CPU = 2 };
static const char *const g_family[] = {"quant_act_f16_q4q8__ref", "quant_act_f16_q4q8__cpu",
                                       "hadamard_quant_act_f16_q4q8__cpu"};
#define SIGN_SEED 1234

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
  x = rb_alloc((size_t)(K * rows) * 2);
  signs = rb_alloc((size_t)K);
  if (!x || !signs || qbuf_alloc(&a, &L, rows) || qbuf_alloc(&b, &L, rows)) {
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
  s = backend == B_FUSED_CPU ? fused_ref(&p, rows, x, signs, &a.q) : resq_quant_act_f16_q4q8__ref(&p, rows, x, K, &a.q);
  if (s != RESQ_OK) {
    resq_bench_error(st, "reference: %s: %s", resq_status_name(s), resq_last_error());
    goto out;
  }
  if ((s = run(backend, &p, rows, x, signs, &b.q)) != RESQ_OK) {
    resq_bench_error(st, "%s: %s: %s", g_family[backend], resq_status_name(s), resq_last_error());
    goto out;
  }
  if (!qbuf_equal(&a, &b)) {
    resq_bench_error(st, "%s differs from the reference (codes, scales or zeros); REPRO: bench_quant "
                     "--benchmark_filter='%s/K:%lld/group:%lld/r:%lld/rows:%lld$'", g_family[backend],
                     g_family[backend], (long long)K, (long long)group, (long long)r, (long long)rows);
    goto out;
  }
  while (resq_bench_keep_running(st, 1)) run(backend, &p, rows, x, signs, &a.q);
  int64_t bytes = quant_bytes(&p, &L, rows);
  resq_bench_counter(st, "bytes", (double)bytes, RESQ_CTR_RATE);
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
        for (int b = 0; b < 2; b++)
          resq_bench_register_args(g_family[backends[b]], bm_quant, &backends[b], sizeof backends[b],
                                   RESQ_BENCH_REAL_TIME, names, a, 4);
        /* the fused Hadamard + 4-bit quantizer: the down_proj input (K = I; quick: 4096) */
        if (v == 1 && (quick || K != 4096))
          resq_bench_register_args(g_family[B_FUSED_CPU], bm_quant, &backends[2], sizeof backends[2],
                                   RESQ_BENCH_REAL_TIME, names, a, 4);
      }
  }
  return resq_bench_main(argc, argv);
}
