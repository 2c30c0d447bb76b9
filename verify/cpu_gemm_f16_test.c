/* SPDX-License-Identifier: Apache-2.0
 * CPU FP16 GEMM (resq_gemm_f16__cpu, resq/cpu.h) vs resq_gemm_f16__ref, bit
 * for bit (ref/CONTRACT.md section 11: every fp16 x fp16 product is exact in
 * fp32 and the reference sums k ascending; one FMA chain per output in that
 * order rounds identically):
 *  - shapes M = 0..30 and 64, 100 (one tile, two tiles, the blocked path), N
 *    not a multiple of the 32-column panel, K = 0, 1, 255..257 (block edges),
 *    1000; with and without bias; f16 and f32 outputs; ldy > N; outputs inside
 *    guard bands that must stay untouched; every dispatch path; 1 and 3 threads;
 *  - values that stress the rounding: wide exponent ranges (fp16 subnormals
 *    included), cancellation (sums near 0, signed zeros), outputs that
 *    overflow f16 (RNE to +-Inf as the reference);
 *  - argument errors: the reference's status codes, nothing written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cpu.h"
#include "resq/dtype.h"
#include "resq/gemm.h"
#include "resq/rng.h"
#include "resq_check.h"

#define GUARD 40
static int g_isas[3], g_nisa;

static uint16_t rand_f16(resq_rng *r, int kind) {
  double v;
  switch (kind) {
    case 0: v = resq_rng_normal(r); break;
    case 1: v = resq_rng_normal(r) * ldexp(1.0, (int)resq_rng_range(r, -26, 6)); break; /* subnormals .. 64 */
    case 2: v = (double)resq_rng_range(r, -2, 2) * 0.25; break;                         /* cancellation, zeros */
    default: v = resq_rng_normal(r) * 200.0; break;                                      /* f16 overflow of sums */
  }
  uint16_t h = resq_f32_to_f16((float)v);
  if (kind == 2 && resq_rng_below(r, 8) == 0) h = 0x8000; /* -0 */
  return h;
}

static void check_shape(resq_rng *r, int64_t M, int64_t N, int64_t K, int kind, int with_bias) {
  const int64_t ldx = K + 3, ldy = N + 5;
  uint16_t *x = (uint16_t *)calloc((size_t)(M * ldx + 1), 2), *w = (uint16_t *)calloc((size_t)(N * K + 1), 2);
  float *bias = with_bias ? (float *)calloc((size_t)N + 1, 4) : NULL;
  for (int64_t i = 0; i < M * ldx; i++) x[i] = rand_f16(r, kind);
  for (int64_t i = 0; i < N * K; i++) w[i] = rand_f16(r, kind);
  if (bias)
    for (int64_t n = 0; n < N; n++) bias[n] = (float)resq_rng_normal(r);
  const size_t ny = (size_t)(M > 0 ? (M - 1) * ldy + N : 0);
  uint16_t *want16 = (uint16_t *)calloc(ny + 1, 2), *y16 = (uint16_t *)malloc((ny + 2 * GUARD) * 2);
  float *want32 = (float *)calloc(ny + 1, 4), *y32 = (float *)malloc((ny + 2 * GUARD) * 4);
  RC_CHECK(resq_gemm_f16__ref(M, N, K, x, ldx, w, K, bias, want16, ldy) == RESQ_OK, "ref f16: %s", resq_last_error());
  RC_CHECK(resq_gemm_f16_f32__ref(M, N, K, x, ldx, w, K, bias, want32, ldy) == RESQ_OK, "ref f32: %s", resq_last_error());
  size_t bytes = 0;
  resq_gemm_f16_pack_weight_size__cpu(N, K, &bytes);
  void *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
  resq_wf16_cpu wc;
  if (!RC_CHECK(resq_gemm_f16_pack_weight__cpu(N, K, w, K, buf, bytes, &wc) == RESQ_OK, "pack: %s", resq_last_error()))
    goto out;
  for (int ii = 0; ii < g_nisa; ii++)
    for (int threads = 1; threads <= 3; threads += 2) {
      resq_cpu_set_isa((resq_cpu_isa)g_isas[ii]);
      resq_cpu_set_threads(threads);
      for (size_t i = 0; i < ny + 2 * GUARD; i++) y16[i] = 0xdead, memcpy(&y32[i], &(uint32_t){0x7fc0deadu}, 4);
      resq_status a = resq_gemm_f16__cpu(M, x, ldx, &wc, bias, y16 + GUARD, ldy);
      resq_status b = resq_gemm_f16_f32__cpu(M, x, ldx, &wc, bias, y32 + GUARD, ldy);
      RC_CHECK(a == RESQ_OK && b == RESQ_OK, "cpu: %s", resq_last_error());
      long bad16 = 0, bad32 = 0, canary = 0;
      for (size_t i = 0; i < ny + 2 * GUARD; i++) {
        const int64_t j = (int64_t)i - GUARD;
        if (j >= 0 && (size_t)j < ny && j % ldy < N) {
          bad16 += y16[i] != want16[j];
          bad32 += memcmp(&y32[i], &want32[j], 4) != 0;
        } else {
          canary += y16[i] != 0xdead || memcmp(&y32[i], &(uint32_t){0x7fc0deadu}, 4) != 0;
        }
      }
      RC_CHECK(bad16 == 0 && bad32 == 0 && canary == 0,
               "M=%lld N=%lld K=%lld kind %d bias %d isa %s threads %d: %ld f16 / %ld f32 outputs differ, %ld guard/gap "
               "entries written",
               (long long)M, (long long)N, (long long)K, kind, with_bias, resq_cpu_isa_name((resq_cpu_isa)g_isas[ii]),
               threads, bad16, bad32, canary);
    }
  resq_cpu_set_threads(0);
  resq_cpu_set_isa(RESQ_CPU_ISA_AUTO);
out:
  free(x), free(w), free(bias), free(want16), free(y16), free(want32), free(y32), free(buf);
}

static void case_shapes(void) {
  if (!rc_case("shapes_bit_exact")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t Ms[] = {1, 2, 3, 4, 5, 11, 12, 13, 24, 25, 30, 64, 100};
  static const int64_t NKs[][2] = {{1, 1}, {32, 16}, {33, 255}, {70, 256}, {64, 257}, {95, 1000}, {40, 0}, {7, 3}};
  for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
    for (size_t si = 0; si < sizeof NKs / sizeof NKs[0]; si++) {
      const int64_t M = Ms[mi], N = NKs[si][0], K = NKs[si][1];
      const int kind = (int)((mi + si) % 4);
      rc_note("M=%lld N=%lld K=%lld kind=%d", (long long)M, (long long)N, (long long)K, kind);
      check_shape(&r, M, N, K, kind, (int)(mi % 2));
    }
  /* every value kind on a blocked shape */
  for (int kind = 0; kind < 4; kind++) check_shape(&r, 37, 65, 600, kind, kind % 2);
}

static void case_errors(void) {
  if (!rc_case("argument_errors")) return;
  uint16_t x[64] = {0}, w[64] = {0}, y[64];
  float bias[8] = {0}, yf[64];
  size_t bytes = 0;
  RC_CHECK(resq_gemm_f16_pack_weight_size__cpu(-1, 4, &bytes) == RESQ_ERR_INVALID_ARG, "negative N");
  RC_CHECK(resq_gemm_f16_pack_weight_size__cpu(4, 4, NULL) == RESQ_ERR_INVALID_ARG, "NULL size");
  resq_gemm_f16_pack_weight_size__cpu(4, 8, &bytes);
  void *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
  resq_wf16_cpu wc, z;
  memset(&z, 0, sizeof z);
  RC_CHECK(resq_gemm_f16_pack_weight__cpu(4, 8, w, 8, buf, bytes - 1, &wc) == RESQ_ERR_INVALID_ARG, "small buffer");
  RC_CHECK(resq_gemm_f16_pack_weight__cpu(4, 8, w, 7, buf, bytes, &wc) == RESQ_ERR_INVALID_ARG, "ldw < K");
  RC_CHECK(resq_gemm_f16_pack_weight__cpu(4, 8, w, 8, (char *)buf + 4, bytes, &wc) == RESQ_ERR_INVALID_ARG, "unaligned");
  w[13] = 0x7e00; /* NaN */
  RC_CHECK(resq_gemm_f16_pack_weight__cpu(4, 8, w, 8, buf, bytes, &wc) == RESQ_ERR_NONFINITE, "NaN weight refused");
  w[13] = 0;
  RC_CHECK(resq_gemm_f16_pack_weight__cpu(4, 8, w, 8, buf, bytes, &wc) == RESQ_OK, "valid pack");
  for (int i = 0; i < 64; i++) y[i] = 0xdead, yf[i] = -7.0f;
  struct {
    resq_status cpu, ref;
    const char *what;
  } e[] = {
      {resq_gemm_f16__cpu(-1, x, 8, &wc, NULL, y, 4), resq_gemm_f16__ref(-1, 4, 8, x, 8, w, 8, NULL, y, 4), "M < 0"},
      {resq_gemm_f16__cpu(2, NULL, 8, &wc, NULL, y, 4), resq_gemm_f16__ref(2, 4, 8, NULL, 8, w, 8, NULL, y, 4), "NULL x"},
      {resq_gemm_f16__cpu(2, x, 8, &wc, NULL, NULL, 4), resq_gemm_f16__ref(2, 4, 8, x, 8, w, 8, NULL, NULL, 4), "NULL y"},
      {resq_gemm_f16__cpu(2, x, 7, &wc, NULL, y, 4), resq_gemm_f16__ref(2, 4, 8, x, 7, w, 8, NULL, y, 4), "ldx < K"},
      {resq_gemm_f16_f32__cpu(2, x, 8, &wc, NULL, yf, 3), resq_gemm_f16_f32__ref(2, 4, 8, x, 8, w, 8, NULL, yf, 3), "ldy < N"},
  };
  for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
    RC_CHECK(e[i].cpu == e[i].ref && e[i].cpu != RESQ_OK, "%s: cpu %s, ref %s", e[i].what, resq_status_name(e[i].cpu),
             resq_status_name(e[i].ref));
  bias[2] = INFINITY;
  RC_CHECK(resq_gemm_f16__cpu(2, x, 8, &wc, bias, y, 4) == RESQ_ERR_NONFINITE, "Inf bias refused");
  RC_CHECK(resq_gemm_f16__cpu(2, x, 8, &z, NULL, y, 4) == RESQ_ERR_INVALID_ARG, "unpacked weight refused");
  int untouched = 1;
  for (int i = 0; i < 64; i++) untouched &= y[i] == 0xdead && yf[i] == -7.0f;
  RC_CHECK(untouched, "failed calls wrote nothing");
  RC_CHECK(resq_gemm_f16__cpu(0, NULL, 0, &wc, NULL, NULL, 0) == RESQ_OK, "M = 0 is a no-op");
  free(buf);
}

int main(int argc, char **argv) {
  rc_init("cpu_gemm_f16_test", argc, argv);
  g_nisa = 0;
  g_isas[g_nisa++] = RESQ_CPU_ISA_GENERIC;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX2)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX2;
  if (resq_cpu_isa_available(RESQ_CPU_ISA_AVX512)) g_isas[g_nisa++] = RESQ_CPU_ISA_AVX512;
  case_shapes();
  case_errors();
  return rc_finish();
}
