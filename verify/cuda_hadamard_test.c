/* SPDX-License-Identifier: Apache-2.0
 * GPU test: resq_hadamard_{f32,f16}__cuda vs resq_hadamard_{f32,f16}__ref,
 * bit for bit (ref/CONTRACT.md section 2 is exact), for EVERY size the CUDA
 * backend supports (every hadK order, every block length up to the documented
 * limit), with and without signs, vector (aligned) and scalar (odd leading
 * dimension) paths, in place, many rows (multi-CTA grids), guard bands after
 * every row; the argument checks and the documented limits; the f16 overflow
 * behaviour documented in resq/cuda.h (+-Inf where the reference refuses).
 * Exits 77 without a usable GPU (RESQ_REQUIRE_GPU=1: failure). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "resq/cuda.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/rng.h"
#include "resq_check.h"
#include "resq_gpu.h"

static void fill(resq_rng *r, uint16_t *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double v = resq_rng_normal(r);
    uint64_t k = resq_rng_below(r, 64);
    if (k == 0) v *= 300.0;
    if (k == 1) v = 0.0;
    if (k == 2) v = ldexp(v, -20); /* f16 subnormal */
    x[i] = resq_f32_to_f16((float)v);
  }
}

/* One size: rows x n with leading dimension ld (>= n; odd ld: scalar path). */
static void check_size(resq_rng *r, int64_t n, int64_t rows, int64_t ld, int with_signs, int in_place) {
  rc_note("n=%lld rows=%lld ld=%lld signs=%d in_place=%d", (long long)n, (long long)rows, (long long)ld, with_signs,
          in_place);
  const size_t cnt = (size_t)(rows * ld);
  uint16_t *x16 = malloc(cnt * 2), *y16 = malloc(cnt * 2), *w16 = malloc(cnt * 2);
  float *x32 = malloc(cnt * 4), *y32 = malloc(cnt * 4), *w32 = malloc(cnt * 4);
  int8_t *s = malloc((size_t)n);
  fill(r, x16, cnt);
  for (size_t i = 0; i < cnt; i++) x32[i] = resq_f16_to_f32(x16[i]);
  resq_hadamard_random_signs(resq_rng_u64(r), n, s);
  const int8_t *sg = with_signs ? s : NULL;
  size_t ws = resq_hadamard_workspace_size(n);
  void *work = malloc(ws);
  /* expected: guard values between rows stay as they were (x for in place) */
  memcpy(w32, x32, cnt * 4);
  memcpy(w16, x16, cnt * 2);
  if (!in_place) {
    for (size_t i = 0; i < cnt; i++) w32[i] = -1234.5f, w16[i] = 0x7bff;
  }
  RC_CHECK(resq_hadamard_f32__ref(rows, n, x32, ld, w32, ld, sg, work, ws) == RESQ_OK, "ref f32: %s", resq_last_error());
  resq_status st16 = resq_hadamard_f16__ref(rows, n, x16, ld, w16, ld, sg, work, ws);
  RC_CHECK(st16 == RESQ_OK, "ref f16: %s", resq_last_error());
  int8_t *ds = with_signs ? dup_h2d(s, (size_t)n) : NULL;
  float *dx32 = dup_h2d(x32, cnt * 4), *dy32 = in_place ? dx32 : dev_fill(cnt * 4, 0);
  uint16_t *dx16 = dup_h2d(x16, cnt * 2), *dy16 = in_place ? dx16 : dev_fill(cnt * 2, 0);
  if (!in_place) {
    for (size_t i = 0; i < cnt; i++) y32[i] = -1234.5f, y16[i] = 0x7bff;
    resq_cuda_h2d(dy32, y32, cnt * 4);
    resq_cuda_h2d(dy16, y16, cnt * 2);
  }
  RC_CHECK(resq_hadamard_f32__cuda(rows, n, dx32, ld, dy32, ld, ds, NULL, 0) == RESQ_OK, "cuda f32: %s", resq_last_error());
  RC_CHECK(resq_hadamard_f16__cuda(rows, n, dx16, ld, dy16, ld, ds, NULL, 0) == RESQ_OK, "cuda f16: %s", resq_last_error());
  d2h_sync(y32, dy32, cnt * 4);
  d2h_sync(y16, dy16, cnt * 2);
  rc_equal_f32_bits(y32, w32, cnt, "f32 output (guards included)");
  rc_equal_u16(y16, w16, cnt, "f16 output (guards included)");
  resq_cuda_free(ds), resq_cuda_free(dx32), resq_cuda_free(dx16);
  if (!in_place) resq_cuda_free(dy32), resq_cuda_free(dy16);
  free(x16), free(y16), free(w16), free(x32), free(y32), free(w32), free(s), free(work);
}

/* every (K, m) of upstream's dispatch up to this backend's limit (resq/cuda.h) */
static void case_all_sizes(void) {
  if (!rc_case("all_supported_sizes_vs_ref")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int *orders;
  int no = resq_hadamard_orders(&orders), sizes = 0;
  for (int oi = -1; oi < no; oi++) {
    int K = oi < 0 ? 1 : orders[oi];
    for (int64_t m = 1; m <= 32768; m *= 2) {
      int64_t n = (int64_t)K * m, m2;
      int K2;
      if (resq_hadamard_factor(n, &K2, &m2) != RESQ_OK || K2 != K) continue;
      if (resq_hadamard_supported__cuda(n) != RESQ_OK) {
        RC_CHECK(resq_hadamard_supported__cuda(n) == RESQ_ERR_UNSUPPORTED, "n=%lld: %s", (long long)n, resq_last_error());
        break; /* every larger m of this order is beyond the limit too */
      }
      int64_t rows = n <= 64 ? 300 : n <= 2048 ? 33 : 3;
      check_size(&r, n, rows, n, sizes & 1, 0);            /* aligned: vector path for K = 1 */
      check_size(&r, n, rows > 4 ? 4 : rows, n + 1, (sizes + 1) & 1, 0); /* odd ld: scalar path */
      sizes++;
    }
  }
  printf("  %d sizes\n", sizes);
  RC_CHECK(sizes >= 100, "only %d supported sizes found", sizes);
}

static void case_model_sizes(void) {
  if (!rc_case("model_sizes_many_rows")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  static const int64_t ns[] = {4096, 11008, 14336, 28672, 3584, 7168, 5120, 13824, 8192, 128};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    check_size(&r, ns[i], ns[i] <= 8192 ? 512 : 96, ns[i], 1, 0);
    check_size(&r, ns[i], 5, ns[i], 1, 1); /* in place */
  }
  check_size(&r, 128, 70000, 128, 1, 0); /* 70000 rows, 1 row per 16 threads: many CTAs */
}

static void case_errors(void) {
  if (!rc_case("argument_errors_and_limits")) return;
  float *d = dev_fill(4096 * 4, 0);
  char why[256];
  /* sizes the reference does not support: same status */
  RC_CHECK(resq_hadamard_f32__cuda(1, 100, d, 100, d, 100, NULL, NULL, 0) == RESQ_ERR_UNSUPPORTED, "n=100");
  RC_CHECK(resq_hadamard_f32__cuda(1, 0, d, 1, d, 1, NULL, NULL, 0) != RESQ_OK, "n=0");
  /* supported by the reference, beyond this backend's limits */
  RC_CHECK(resq_hadamard_supported__cuda(65536) == RESQ_ERR_UNSUPPORTED, "2^16");
  RC_CHECK(resq_hadamard_supported__cuda(172 * 256) == RESQ_ERR_UNSUPPORTED, "172*256");
  RC_CHECK(resq_hadamard_supported__cuda(12 * 2048) == RESQ_ERR_UNSUPPORTED, "12*2048");
  snprintf(why, sizeof why, "%s", resq_last_error());
  RC_CHECK(strstr(why, "limit") != NULL, "message names the limit: '%s'", why);
  RC_CHECK(resq_hadamard_supported__cuda(172 * 128) == RESQ_OK, "172*128 is documented as supported");
  RC_CHECK(resq_hadamard_supported__cuda(28 * 1024) == RESQ_OK, "28*1024 is documented as supported");
  RC_CHECK(resq_hadamard_supported__cuda(32768) == RESQ_OK, "2^15 is documented as supported");
  /* arguments */
  RC_CHECK(resq_hadamard_f32__cuda(-1, 64, d, 64, d, 64, NULL, NULL, 0) == RESQ_ERR_INVALID_ARG, "rows < 0");
  RC_CHECK(resq_hadamard_f32__cuda(2, 64, NULL, 64, d, 64, NULL, NULL, 0) == RESQ_ERR_INVALID_ARG, "NULL x");
  RC_CHECK(resq_hadamard_f16__cuda(2, 64, (uint16_t *)d, 63, (uint16_t *)d, 64, NULL, NULL, 0) == RESQ_ERR_INVALID_ARG,
           "ldx < n");
  RC_CHECK(resq_hadamard_f32__cuda(0, 64, NULL, 0, NULL, 0, NULL, NULL, 0) == RESQ_OK, "rows = 0 is a no-op");
  RC_CHECK(resq_hadamard_workspace_size__cuda(4096) == 0, "no workspace");
  resq_cuda_free(d);
}

/* f16 overflow: the reference refuses (NONFINITE); this backend writes +-Inf (resq/cuda.h) */
static void case_overflow(void) {
  if (!rc_case("f16_overflow_is_inf")) return;
  const int64_t n = 64;
  uint16_t x[64], y[64], w[64];
  for (int i = 0; i < n; i++) x[i] = 0x7bff; /* 65504: y_0 = 8 * 65504 overflows */
  size_t ws = resq_hadamard_workspace_size(n);
  void *work = malloc(ws);
  RC_CHECK(resq_hadamard_f16__ref(1, n, x, n, w, n, NULL, work, ws) == RESQ_ERR_NONFINITE, "reference refuses");
  uint16_t *dx = dup_h2d(x, sizeof x);
  RC_CHECK(resq_hadamard_f16__cuda(1, n, dx, n, dx, n, NULL, NULL, 0) == RESQ_OK, "cuda: %s", resq_last_error());
  d2h_sync(y, dx, sizeof y);
  RC_CHECK(y[0] == 0x7c00, "y[0] = 0x%04x, expected +Inf", y[0]);
  int zeros = 0;
  for (int i = 1; i < n; i++) zeros += y[i] == 0;
  RC_CHECK(zeros == n - 1, "the other outputs of a constant row are 0 (%d of %lld)", zeros, (long long)n - 1);
  resq_cuda_free(dx);
  free(work);
}

int main(int argc, char **argv) {
  rc_init("cuda_hadamard_test", argc, argv);
  rc_gpu_require("cuda_hadamard_test");
  case_all_sizes();
  case_model_sizes();
  case_errors();
  case_overflow();
  return rc_finish();
}
