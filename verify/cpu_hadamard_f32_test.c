/* SPDX-License-Identifier: Apache-2.0
 * CPU Hadamard rotation (resq/cpu.h) vs the reference, bit for bit
 * (ref/CONTRACT.md section 2 is exact): every hadK order with several block
 * sizes m, powers of two up to 2^16, rows 1..9 with leading dimensions > n,
 * with and without signs, f32 and f16, in place, every dispatch path, 1 and
 * 3 threads, outputs inside guard bands; large outputs (non-temporal stores)
 * aligned and not; f16 overflow (one output of a row included), NaN/Inf
 * inputs and argument errors give the reference's status codes, and the
 * caller's floating-point flags survive. */
#define _POSIX_C_SOURCE 200112L /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/rng.h"
#include "resq_check.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h> /* _mm_getcsr: the MXCSR flags */
#endif

#define GUARD 48
static int g_isas[3], g_nisa;

static void fill(resq_rng *r, float *x, int64_t n, int kind) {
  for (int64_t i = 0; i < n; i++) {
    double v = resq_rng_normal(r);
    if (kind == 1 && resq_rng_below(r, 64) == 0) v *= 300; /* LLM-like outliers */
    if (kind == 2) v = (double)resq_rng_range(r, -3, 3);   /* small integers: many exact zeros and ties */
    x[i] = resq_round_f16((float)v);
  }
}

/* One shape: reference f32/f16 once, then every ISA and thread count. */
static void check_shape(resq_rng *r, int64_t rows, int64_t n, int64_t extra, int with_signs, int kind) {
  int64_t ld = n + extra;
  size_t tot = (size_t)(rows * ld) + 2 * GUARD;
  float *x = calloc(tot, 4), *want32 = calloc((size_t)(rows * n) + 1, 4), *y32 = malloc(tot * 4);
  uint16_t *x16 = calloc(tot, 2), *want16 = calloc((size_t)(rows * n) + 1, 2), *y16 = malloc(tot * 2);
  int8_t *s = with_signs ? malloc((size_t)n) : NULL;
  size_t ws = resq_hadamard_workspace_size(n);
  void *work = malloc(ws);
  for (int64_t i = 0; i < rows; i++) fill(r, x + GUARD + i * ld, n, kind);
  for (size_t i = 0; i < tot; i++) x16[i] = resq_f32_to_f16(x[i]);
  if (s) resq_hadamard_random_signs(resq_rng_u64(r), n, s);
  RC_CHECK(resq_hadamard_f32__ref(rows, n, x + GUARD, ld, want32, n, s, work, ws) == RESQ_OK, "ref f32: %s", resq_last_error());
  RC_CHECK(resq_hadamard_f16__ref(rows, n, x16 + GUARD, ld, want16, n, s, work, ws) == RESQ_OK, "ref f16: %s",
           resq_last_error());
  for (int i = 0; i < g_nisa; i++)
    for (int threads = 0; threads <= 3; threads += 3) {
      resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
      resq_cpu_set_threads(threads);
      for (size_t k = 0; k < tot; k++) {
        memcpy(&y32[k], &(uint32_t){0x7fc0deadu}, 4);
        y16[k] = 0xdead;
      }
      resq_status a = resq_hadamard_f32__cpu(rows, n, x + GUARD, ld, y32 + GUARD, ld, s, work, ws);
      resq_status b = resq_hadamard_f16__cpu(rows, n, x16 + GUARD, ld, y16 + GUARD, ld, s, work, ws);
      RC_CHECK(a == RESQ_OK && b == RESQ_OK, "cpu status %d %d: %s", a, b, resq_last_error());
      long bad32 = 0, bad16 = 0, canary = 0;
      for (size_t k = 0; k < tot; k++) {
        int64_t j = (int64_t)k - GUARD;
        if (j >= 0 && j < rows * ld && j % ld < n) {
          int64_t o = (j / ld) * n + j % ld;
          bad32 += memcmp(&y32[k], &want32[o], 4) != 0;
          bad16 += y16[k] != want16[o];
        } else {
          canary += y16[k] != 0xdead || memcmp(&y32[k], &(uint32_t){0x7fc0deadu}, 4) != 0;
        }
      }
      RC_CHECK(bad32 == 0 && bad16 == 0 && canary == 0, "%s, %d threads: %ld f32 / %ld f16 outputs differ, %ld guard elements written",
               resq_cpu_isa_name(resq_cpu_get_isa()), threads, bad32, bad16, canary);
      /* in place (x == y, same ld) */
      float *xi = malloc(tot * 4);
      uint16_t *xi16 = malloc(tot * 2);
      memcpy(xi, x, tot * 4);
      memcpy(xi16, x16, tot * 2);
      RC_CHECK(resq_hadamard_f32__cpu(rows, n, xi + GUARD, ld, xi + GUARD, ld, s, work, ws) == RESQ_OK &&
                   resq_hadamard_f16__cpu(rows, n, xi16 + GUARD, ld, xi16 + GUARD, ld, s, work, ws) == RESQ_OK,
               "in place: %s", resq_last_error());
      long badi = 0;
      for (int64_t rr = 0; rr < rows; rr++)
        for (int64_t j = 0; j < n; j++) {
          badi += memcmp(&xi[GUARD + rr * ld + j], &want32[rr * n + j], 4) != 0;
          badi += xi16[GUARD + rr * ld + j] != want16[rr * n + j];
        }
      RC_CHECK(badi == 0, "in place: %ld outputs differ", badi);
      free(xi), free(xi16);
    }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  resq_cpu_set_threads(0);
  free(x), free(want32), free(y32), free(x16), free(want16), free(y16), free(s), free(work);
}

/* m = 512 rows in both forms: the ninth stage inside the first pass (default) and as
 * its own pass over the scratch (RESQ_CPU_HAD_F9=0); in the same two passes K = 28
 * with the compiled-in mix (default) and the table-driven one (RESQ_CPU_HAD_K28=0) */
static int g_f9 = 1;
static void set_f9(int v) {
  g_f9 = v;
  setenv("RESQ_CPU_HAD_F9", v ? "1" : "0", 1);
  /* and K = 28 (n = 28 x 2^k) with its compiled-in mix (default) or the table-driven one */
  setenv("RESQ_CPU_HAD_K28", v ? "1" : "0", 1);
}

static void case_orders(void) {
  if (!rc_case(g_f9 ? "every_order_vs_ref" : "every_order_vs_ref_f9pass")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int *orders;
  int no = resq_hadamard_orders(&orders);
  for (int i = 0; i < no; i++) {
    int64_t ms[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}; /* 512: the fused ninth stage */
    for (size_t j = 0; j < sizeof ms / sizeof ms[0]; j++) {
      int64_t n = orders[i] * ms[j], m;
      int K;
      if (resq_hadamard_factor(n, &K, &m) != RESQ_OK) continue; /* e.g. 60*... taken by another order */
      rc_note("n=%lld (K=%d, m=%lld) RESQ_CPU_HAD_F9=%d RESQ_CPU_HAD_K28=%d", (long long)n, K, (long long)m, g_f9, g_f9);
      check_shape(&r, (int64_t)(1 + j % 3), n, (int64_t)(j % 2) * 5, (int)(j % 2), (int)(j % 3));
    }
  }
}

static void case_llm_sizes(void) {
  if (!rc_case(g_f9 ? "llm_sizes_vs_ref" : "llm_sizes_vs_ref_f9pass")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  /* hidden/intermediate sizes (Llama-2/3 7B/8B/13B/70B), head_dim, powers of two */
  static const int64_t ns[][2] = {{4096, 5},  {14336, 3}, {11008, 3}, {128, 9},  {5120, 3}, {13824, 2},
                                  {8192, 2},  {28672, 1}, {32768, 2}, {65536, 1}, {16, 4},  {64, 7},
                                  {1, 3},     {2, 3},     {4, 2},     {8, 2},    {12, 3},  {24, 2},
                                  /* K = 1 around the joint first pass (m >= 256): it ends the butterflies
                                   * (256), then 1 or 3 more strides */
                                  {256, 3},   {512, 2},   {2048, 2}};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    rc_note("n=%lld rows=%lld RESQ_CPU_HAD_F9=%d RESQ_CPU_HAD_K28=%d", (long long)ns[i][0], (long long)ns[i][1], g_f9, g_f9);
    check_shape(&r, ns[i][1], ns[i][0], 3, (int)(i % 2), 1);
    check_shape(&r, ns[i][1], ns[i][0], 0, (int)((i + 1) % 2), 2);
  }
}

static void case_errors(void) {
  if (!rc_case("overflow_and_argument_errors")) return;
  const int64_t n = 4096;
  size_t ws = resq_hadamard_workspace_size(n);
  void *work = malloc(ws);
  uint16_t *x = malloc(2 * n * 2), *y = malloc(2 * n * 2), *yr = malloc(2 * n * 2);
  for (int64_t i = 0; i < 2 * n; i++) x[i] = resq_f32_to_f16(0.5f);
  for (int64_t i = 0; i < n; i++) x[n + i] = 0x7bff; /* row 1: all 65504: y_0 = 64 * 65504 overflows */
  int8_t s[4096];
  for (int i = 0; i < n; i++) s[i] = 1;
  for (int i = 0; i < g_nisa; i++) {
    resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
#define SAME(call_ref, call_cpu, what)                                                                        \
  do {                                                                                                        \
    resq_status a_ = (call_ref), b_ = (call_cpu);                                                             \
    RC_CHECK(a_ == b_ && a_ != RESQ_OK, "%s: ref %s, cpu %s (%s)", what, resq_status_name(a_), resq_status_name(b_), \
             resq_last_error());                                                                              \
  } while (0)
    SAME(resq_hadamard_f16__ref(2, n, x, n, yr, n, s, work, ws), resq_hadamard_f16__cpu(2, n, x, n, y, n, s, work, ws),
         "f16 overflow");
    SAME(resq_hadamard_f16__ref(2, 100, x, n, yr, n, NULL, work, ws), resq_hadamard_f16__cpu(2, 100, x, n, y, n, NULL, work, ws),
         "unsupported n = 100");
    SAME(resq_hadamard_f16__ref(2, 0, x, n, yr, n, NULL, work, ws), resq_hadamard_f16__cpu(2, 0, x, n, y, n, NULL, work, ws),
         "n = 0");
    SAME(resq_hadamard_f16__ref(2, n, x, n, yr, n, NULL, work, ws - 1), resq_hadamard_f16__cpu(2, n, x, n, y, n, NULL, work, ws - 1),
         "small workspace");
    SAME(resq_hadamard_f16__ref(2, n, x, n, yr, n, NULL, NULL, ws), resq_hadamard_f16__cpu(2, n, x, n, y, n, NULL, NULL, ws),
         "NULL workspace");
    /* every kind of bad sign, the first of two reported (the cpu check is a vectorized OR, then a scan) */
    static const int8_t bad[] = {0, 2, -2, 3, 127, -128};
    for (size_t b = 0; b < sizeof bad; b++) {
      s[77] = bad[b];
      s[3000] = 0;
      char want[256];
      SAME(resq_hadamard_f16__ref(2, n, x, n, yr, n, s, work, ws), resq_hadamard_f16__cpu(2, n, x, n, y, n, s, work, ws),
           "bad sign");
      snprintf(want, sizeof want, "hadamard: signs[77] = %d (must be +1 or -1)", bad[b]);
      RC_CHECK(strstr(resq_last_error(), want) != NULL, "sign %d: message '%s', want '%s'", bad[b], resq_last_error(), want);
    }
    s[77] = 1;
    s[3000] = 1;
    SAME(resq_hadamard_f16__ref(-1, n, x, n, yr, n, s, work, ws), resq_hadamard_f16__cpu(-1, n, x, n, y, n, s, work, ws),
         "rows < 0");
    SAME(resq_hadamard_f16__ref(2, n, x, n - 1, yr, n, s, work, ws), resq_hadamard_f16__cpu(2, n, x, n - 1, y, n, s, work, ws),
         "ldx < n");
    SAME(resq_hadamard_f32__ref(2, n, NULL, n, (float *)yr, n, s, work, ws),
         resq_hadamard_f32__cpu(2, n, NULL, n, (float *)y, n, s, work, ws), "NULL x");
    RC_CHECK(resq_hadamard_f16__cpu(0, n, x, n, y, n, s, work, ws) == RESQ_OK, "rows = 0");
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  free(work), free(x), free(y), free(yr);
}

/* f16 rows of finite values at the edges of the rotation's arithmetic (the
 * backend is bit-exact on finite inputs, resq/cpu.h): subnormals down to
 * 2^-24 among normal values of every exponent, values up to 60000 (large
 * sums), a few of +-65504 among normal values, and rows of +0.0 / -0.0 only
 * (signed zeros through the butterflies); with signs, 4 rows per call, 1 and
 * 2 threads, every output bit compared with the reference. */
static void case_special_values(void) {
  if (!rc_case("special_values_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t ns[] = {256, 1024, 2048, 4096, 16384, 14336};
  const int64_t rows = 4;
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    const int64_t n = ns[k];
    uint16_t *x = malloc((size_t)(rows * n) * 2), *want = malloc((size_t)(rows * n) * 2), *got = malloc((size_t)(rows * n) * 2);
    int8_t *sg = malloc((size_t)n);
    size_t ws = resq_hadamard_workspace_size(n);
    void *work = malloc(ws);
    resq_hadamard_random_signs(resq_rng_u64(&r), n, sg);
    for (int64_t i = 0; i < n; i++) {
      const uint16_t sub = (uint16_t)(resq_rng_range(&r, 1, 0x3ff) | (resq_rng_below(&r, 2) ? 0x8000 : 0));
      x[i] = resq_rng_below(&r, 2) ? sub : resq_f32_to_f16((float)ldexp(resq_rng_normal(&r), resq_rng_range(&r, -14, 4)));
      x[n + i] = resq_rng_below(&r, 256) == 0 ? resq_f32_to_f16(resq_rng_below(&r, 2) ? 60000.0f : -60000.0f)
                                              : resq_f32_to_f16((float)resq_rng_normal(&r));
      x[2 * n + i] = resq_f32_to_f16((float)resq_rng_normal(&r));
      x[3 * n + i] = resq_rng_below(&r, 2) ? 0x8000 : 0x0000;
    }
    for (int j = 0; j < 8; j++) x[2 * n + resq_rng_below(&r, (uint64_t)n)] = resq_rng_below(&r, 2) ? 0x7bff : 0xfbff; /* +-65504 */
    RC_CHECK(resq_hadamard_f16__ref(rows, n, x, n, want, n, sg, work, ws) == RESQ_OK, "ref: %s", resq_last_error());
    for (int i = 0; i < g_nisa; i++)
      for (int threads = 1; threads <= 2; threads++) {
        resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
        resq_cpu_set_threads(threads);
        memset(got, 0xee, (size_t)(rows * n) * 2);
        RC_CHECK(resq_hadamard_f16__cpu(rows, n, x, n, got, n, sg, work, ws) == RESQ_OK, "cpu: %s", resq_last_error());
        long bad[4] = {0, 0, 0, 0};
        int64_t first = -1;
        for (int64_t j = 0; j < rows * n; j++)
          if (got[j] != want[j]) bad[j / n]++, first = first < 0 ? j : first;
        if (first >= 0) rc_note("first difference at row %lld col %lld: 0x%04x, want 0x%04x", (long long)(first / n), (long long)(first % n), got[first], want[first]);
        RC_CHECK(bad[0] + bad[1] + bad[2] + bad[3] == 0,
                 "n=%lld %s, %d threads: outputs differ per row (subnormals, large, +-65504, zeros): %ld %ld %ld %ld",
                 (long long)n, resq_cpu_isa_name(resq_cpu_get_isa()), threads, bad[0], bad[1], bad[2], bad[3]);
      }
    free(x), free(want), free(got), free(sg), free(work);
  }
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  resq_cpu_set_threads(0);
}

/* Large K = 1 outputs, the non-temporal path of the AVX-512 row (f16 rows
 * finished in the L1 scratch and streamed in order, f32 vectors streamed
 * directly; cpu/src/resq_hadamard_f32__cpu.c, HAD_NT_MIN_BYTES_PER_THREAD):
 * 64-byte aligned rows with ld = n and ld = n + 32, the same rows 16 elements
 * off alignment (ordinary stores), in place, 1 and 2 threads, a guard band
 * after the last row. n = 16 streams its single half line through the
 * 32-byte tail store. The default threshold (12 MiB of output per thread)
 * would need 50-100 MiB per shape here, so RESQ_CPU_HAD_NT lowers it to
 * 2 MiB: every shape below streams on 1 and 2 threads in f16 and f32
 * (4.5-5.2 MiB of f16 output each); ci/mutation_check.sh's
 * cpu_hadamard_stream_tail_dropped_avx512 checks that the override takes.
 * The rows off alignment take ordinary stores with the output-line prefetch
 * (had_plan.pfo), so that path is compared here too. */
static void case_streamed(void) {
  if (!rc_case("streamed_outputs_vs_ref")) return;
  const char *saved = getenv("RESQ_CPU_HAD_NT");
  char keep[64] = "";
  if (saved) snprintf(keep, sizeof keep, "%s", saved);
  setenv("RESQ_CPU_HAD_NT", "2097152", 1);
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t shapes[][2] = {{4096, 600}, {256, 9000}, {65536, 40}, {16, 140000}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
    for (int v = 0; v < 3; v++) { /* 0: ld = n, aligned; 1: ld = n + 32, aligned; 2: ld = n, y 16 elements off */
      const int64_t n = shapes[k][0], rows = shapes[k][1], ld = v == 1 ? n + 32 : n, off = v == 2 ? 16 : 0;
      const size_t tot = (size_t)(rows * ld + off + GUARD);
      float *x = aligned_alloc(64, (tot * 4 + 63) / 64 * 64), *y32 = aligned_alloc(64, (tot * 4 + 63) / 64 * 64);
      float *want32 = malloc((size_t)(rows * n) * 4);
      uint16_t *x16 = aligned_alloc(64, (tot * 2 + 63) / 64 * 64), *y16 = aligned_alloc(64, (tot * 2 + 63) / 64 * 64);
      uint16_t *want16 = malloc((size_t)(rows * n) * 2);
      int8_t *sg = malloc((size_t)n);
      size_t ws = resq_hadamard_workspace_size(n);
      void *work = malloc(ws);
      resq_hadamard_random_signs(resq_rng_u64(&r), n, sg);
      for (size_t i = 0; i < tot; i++) {
        x[i] = resq_round_f16((float)resq_rng_normal(&r));
        x16[i] = resq_f32_to_f16(x[i]);
      }
      RC_CHECK(resq_hadamard_f32__ref(rows, n, x + off, ld, want32, n, sg, work, ws) == RESQ_OK &&
                   resq_hadamard_f16__ref(rows, n, x16 + off, ld, want16, n, sg, work, ws) == RESQ_OK,
               "ref: %s", resq_last_error());
      for (int i = 0; i < g_nisa; i++)
        for (int threads = 1; threads <= 2; threads++)
          for (int inplace = 0; inplace < 2; inplace++) {
            resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
            resq_cpu_set_threads(threads);
            if (inplace) {
              memcpy(y32, x, tot * 4);
              memcpy(y16, x16, tot * 2);
            } else {
              for (size_t j = 0; j < tot; j++) {
                memcpy(&y32[j], &(uint32_t){0x7fc0deadu}, 4);
                y16[j] = 0xdead;
              }
            }
            const float *in32 = inplace ? y32 + off : x + off;
            const uint16_t *in16 = inplace ? y16 + off : x16 + off;
            resq_status a = resq_hadamard_f32__cpu(rows, n, in32, ld, y32 + off, ld, sg, work, ws);
            resq_status b = resq_hadamard_f16__cpu(rows, n, in16, ld, y16 + off, ld, sg, work, ws);
            RC_CHECK(a == RESQ_OK && b == RESQ_OK, "cpu status %d %d: %s", a, b, resq_last_error());
            long bad32 = 0, bad16 = 0, guard = 0;
            for (int64_t rr = 0; rr < rows; rr++)
              for (int64_t j = 0; j < n; j++) {
                bad32 += memcmp(&y32[off + rr * ld + j], &want32[rr * n + j], 4) != 0;
                bad16 += y16[off + rr * ld + j] != want16[rr * n + j];
              }
            for (size_t j = (size_t)(off + rows * ld); j < tot; j++) /* past the last row: untouched */
              guard += inplace ? (y16[j] != x16[j] || memcmp(&y32[j], &x[j], 4) != 0)
                               : (y16[j] != 0xdead || memcmp(&y32[j], &(uint32_t){0x7fc0deadu}, 4) != 0);
            RC_CHECK(bad32 == 0 && bad16 == 0 && guard == 0,
                     "n=%lld rows=%lld ld=%lld y offset %lld %s, %d threads%s: %ld f32 / %ld f16 outputs differ, %ld guard elements written",
                     (long long)n, (long long)rows, (long long)ld, (long long)off, resq_cpu_isa_name(resq_cpu_get_isa()), threads,
                     inplace ? ", in place" : "", bad32, bad16, guard);
          }
      free(x), free(y32), free(want32), free(x16), free(y16), free(want16), free(sg), free(work);
    }
  if (saved) setenv("RESQ_CPU_HAD_NT", keep, 1);
  else unsetenv("RESQ_CPU_HAD_NT");
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  resq_cpu_set_threads(0);
}

/* f16 outputs that are +-Inf or NaN, and the floating-point flags. The
 * AVX-512 rows find an output that rounds to +-Inf from the max |output| of
 * the row, and a NaN or Inf input from output 0 (every output sums every
 * input); the portable rows test every output. Per ISA, 1 and 2 threads, ordinary and streamed stores: a row with
 * ONE overflowing output, in its last vector (n = 4096: x = 65504 * 64 * the
 * rotation of e_j, so y = 65504 * 64 * e_j), rows of +-65504 (hadK sizes
 * too), and a NaN, +Inf or -Inf at a random position of the middle row; each
 * must fail as the reference does (RESQ_ERR_NONFINITE). The MXCSR overflow
 * flag is the caller's (a kernel that read it to find overflows would have
 * to clear and restore it): set before a clean call, it must neither fail the
 * call nor be cleared; clear before, it must stay clear. */
static void case_nonfinite(void) {
  if (!rc_case("nonfinite_outputs_and_fp_flags")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t ns[] = {64, 4096, 14336, 11008};
  const int64_t rows = 3;
  const char *saved = getenv("RESQ_CPU_HAD_NT");
  char keep[64] = "";
  if (saved) snprintf(keep, sizeof keep, "%s", saved);
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    const int64_t n = ns[k];
    uint16_t *x = aligned_alloc(64, (size_t)(rows * n) * 2), *y = aligned_alloc(64, (size_t)(rows * n) * 2);
    uint16_t *yr = malloc((size_t)(rows * n) * 2);
    float *e = calloc((size_t)n, 4), *he = malloc((size_t)n * 4);
    int8_t *sg = malloc((size_t)n);
    size_t ws = resq_hadamard_workspace_size(n);
    void *work = malloc(ws);
    resq_hadamard_random_signs(resq_rng_u64(&r), n, sg);
    for (int kind = 0; kind < 5; kind++) { /* 0 one overflowing output, 1 rows of +-65504, 2 NaN, 3 +Inf, 4 -Inf */
      if (kind == 0 && n != 4096) continue;
      for (int64_t i = 0; i < rows * n; i++) x[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
      const int8_t *use_sg = sg;
      if (kind == 0) { /* rotation of e_j (no signs): +-1/64, times 65504 * 64 is +-65504 */
        const int64_t j = n - 1 - resq_rng_below(&r, 16);
        e[j] = 1.0f;
        RC_CHECK(resq_hadamard_f32__ref(1, n, e, n, he, n, NULL, work, ws) == RESQ_OK, "ref: %s", resq_last_error());
        e[j] = 0.0f;
        for (int64_t i = 0; i < n; i++) x[n + i] = resq_f32_to_f16(he[i] * 65504.0f * 64.0f);
        use_sg = NULL;
      } else if (kind == 1) {
        for (int64_t i = 0; i < n; i++) x[n + i] = resq_rng_below(&r, 2) ? 0x7bff : 0xfbff;
      } else {
        static const uint16_t bad[3] = {0x7e00, 0x7c00, 0xfc00};
        x[n + resq_rng_below(&r, (uint64_t)n)] = bad[kind - 2];
      }
      resq_status want = resq_hadamard_f16__ref(rows, n, x, n, yr, n, use_sg, work, ws);
      RC_CHECK(want == RESQ_ERR_NONFINITE, "n=%lld kind %d: the reference gives %s, the case is not what it claims",
               (long long)n, kind, resq_status_name(want));
      for (int i = 0; i < g_nisa; i++)
        for (int threads = 1; threads <= 2; threads++)
          for (int stream = 0; stream < 2; stream++) {
            resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
            resq_cpu_set_threads(threads);
            if (stream) setenv("RESQ_CPU_HAD_NT", "0", 1);
            else unsetenv("RESQ_CPU_HAD_NT");
            resq_status got = resq_hadamard_f16__cpu(rows, n, x, n, y, n, use_sg, work, ws);
            RC_CHECK(got == want, "n=%lld kind %d (0 one overflow, 1 +-65504, 2 NaN, 3 +Inf, 4 -Inf) %s, %d threads%s: "
                     "cpu %s, ref %s", (long long)n, kind, resq_cpu_isa_name(resq_cpu_get_isa()), threads,
                     stream ? ", streamed" : "", resq_status_name(got), resq_status_name(want));
          }
    }
#if defined(__x86_64__) || defined(__i386__)
    /* clean rows with the caller's overflow flag set, then clear */
    for (int64_t i = 0; i < rows * n; i++) x[i] = resq_f32_to_f16((float)resq_rng_normal(&r));
    for (int i = 0; i < g_nisa; i++)
      for (int pre = 0; pre < 2; pre++) {
        resq_cpu_set_isa((resq_cpu_isa)g_isas[i]);
        resq_cpu_set_threads(2);
        unsetenv("RESQ_CPU_HAD_NT");
        const unsigned csr = _mm_getcsr();
        _mm_setcsr(pre ? csr | 0x8u : csr & ~0x8u);
        resq_status got = resq_hadamard_f16__cpu(rows, n, x, n, y, n, sg, work, ws);
        const unsigned after = _mm_getcsr();
        _mm_setcsr(csr);
        RC_CHECK(got == RESQ_OK && ((after & 0x8u) != 0) == pre,
                 "n=%lld %s: caller's overflow flag %s before a clean call: status %s, flag %s after", (long long)n,
                 resq_cpu_isa_name(resq_cpu_get_isa()), pre ? "set" : "clear", resq_status_name(got),
                 (after & 0x8u) ? "set" : "clear");
      }
#endif
    free(x), free(y), free(yr), free(e), free(he), free(sg), free(work);
  }
  if (saved) setenv("RESQ_CPU_HAD_NT", keep, 1);
  else unsetenv("RESQ_CPU_HAD_NT");
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
  resq_cpu_set_threads(0);
}

int main(int argc, char **argv) {
  rc_init("cpu_hadamard_f32_test", argc, argv);
  g_isas[g_nisa++] = RESQ_CPU_ISA_GENERIC;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX2)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX2;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX512)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX512;
  for (int v = 1; v >= 0; v--) {
    set_f9(v);
    case_orders();
    case_llm_sizes();
  }
  unsetenv("RESQ_CPU_HAD_F9");
  unsetenv("RESQ_CPU_HAD_K28");
  case_errors();
  case_special_values();
  case_streamed();
  case_nonfinite();
  return rc_finish();
}
