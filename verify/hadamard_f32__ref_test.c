/* SPDX-License-Identifier: Apache-2.0
 * Properties of the reference Hadamard (ref/CONTRACT.md section 2):
 *  - kron(hadK, S_m) kron(hadK, S_m)^T = n I exactly, every order;
 *  - exact tier: n = 4^j and small-integer x make every butterfly exact (all
 *    partial sums are integers below 2^24) and 1/sqrt(n) = 2^-j exact, so y must
 *    equal the integer dense product times 2^-j bit for bit;
 *  - bound tier: any supported n vs a double-precision dense product, within the
 *    section-8 bound gamma_{d+K+2} * ||x||_1 / sqrt(n);
 *  - upstream's dispatch order, signs, the offline weight forms, strides, and
 *    failures that write nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/rng.h"
#include "resq_check.h"

static const double k_u = 0x1p-24;

static double gamma_k(int k) { return k * k_u / (1.0 - k * k_u); }

static double bound(int64_t n, const float *x) {
  int K;
  int64_t m;
  resq_hadamard_factor(n, &K, &m);
  int d = 0;
  while ((1ll << d) < m) d++;
  double l1 = 0;
  for (int64_t i = 0; i < n; i++) l1 += fabs((double)x[i]);
  return gamma_k(d + K + 2) * l1 / sqrt((double)n);
}

/* Row a of the integer matrix kron(hadK, S_m), written from the definition
 * (hadK entry times (-1)^popcount(i & j)); independent of the butterflies. */
static void dense_row(int64_t n, int64_t a, int8_t *row) {
  int K;
  int64_t m;
  resq_hadamard_factor(n, &K, &m);
  for (int64_t b = 0; b < n; b++) {
    int par = __builtin_parityll((unsigned long long)((a % m) & (b % m)));
    row[b] = (int8_t)(resq_hadamard_k_entry(K, (int)(a / m), (int)(b / m)) * (par ? -1 : 1));
  }
}

/* y* = (x .* s) H_n^T in double with the dense integer matrix. */
static void dense_ref(int64_t n, const float *x, const int8_t *s, double *y) {
  double inv = 1.0 / sqrt((double)n);
  int8_t *row = malloc((size_t)n);
  for (int64_t a = 0; a < n; a++) {
    dense_row(n, a, row);
    double acc = 0;
    for (int64_t b = 0; b < n; b++) acc += row[b] * (double)x[b] * (s ? s[b] : 1);
    y[a] = acc * inv;
  }
  free(row);
}

static void llm_like(resq_rng *r, float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)resq_rng_normal(r);
  /* a few outlier channels 50-1000x larger (assigned, never compounded: stays far below f16 max) */
  for (int k = 0; k < 3 && n > 8; k++)
    x[resq_rng_below(r, (uint64_t)n)] = (float)resq_rng_normal(r) * (50.0f + 950.0f * resq_rng_uniform_f32(r));
  for (int64_t i = 0; i < n; i++) x[i] = resq_round_f16(x[i]); /* stage inputs are f16 values */
}

static void case_orthogonality(void) {
  if (!rc_case("orthogonality_integer_all_orders")) return;
  const int *orders;
  int no = resq_hadamard_orders(&orders);
  RC_CHECK(no == 12, "12 non-power-of-two orders (%d)", no);
  for (int t = -1; t < no; t++) {
    int K = t < 0 ? 1 : orders[t];
    for (int64_t m = (t < 0 ? 1 : 1); m <= (t < 0 ? 256 : (K > 100 ? 4 : 8)); m *= 2) {
      int64_t n = K * m;
      int kk;
      int64_t mm;
      if (resq_hadamard_factor(n, &kk, &mm)) continue; /* e.g. 20*2 dispatches as 40 */
      int8_t *M = malloc((size_t)(n * n));
      long bad = 0, bad_entry = 0;
      for (int64_t i = 0; i < n; i++) dense_row(n, i, M + i * n);
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) bad_entry += resq_hadamard_entry(n, i, j) != M[i * n + j];
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
          int64_t dot = 0;
          for (int64_t k = 0; k < n; k++) dot += M[i * n + k] * M[j * n + k];
          bad += dot != (i == j ? n : 0);
        }
      free(M);
      RC_CHECK(bad_entry == 0, "n=%lld: resq_hadamard_entry disagrees with the definition", (long long)n);
      RC_CHECK(bad == 0, "n=%lld (K=%d): %ld entries of M M^T differ from n I", (long long)n, kk, bad);
    }
  }
}

static void case_dispatch(void) {
  if (!rc_case("dispatch_order_and_unsupported_sizes")) return;
  static const struct {
    int64_t n;
    int K;
  } ok[] = {{1, 1},     {2, 1},     {12, 12},  {24, 12},      {40, 40},     {80, 40},  {160, 40},
            {88, 44},   {56, 28},   {112, 28}, {4096, 1},     {11008, 172}, {14336, 28}, {3584, 28},
            {7168, 28}, {28672, 28}, {120, 60}, {1 << 26, 1}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int K = -1;
    int64_t m = -1;
    resq_status st = resq_hadamard_factor(ok[i].n, &K, &m);
    RC_CHECK(st == RESQ_OK && K == ok[i].K && K * m == ok[i].n, "n=%lld: got K=%d (%s), want K=%d",
             (long long)ok[i].n, K, resq_status_name(st), ok[i].K);
  }
  static const struct {
    int64_t n, lo, hi;
  } bad[] = {{3, 2, 4}, {100, 96, 104}, {180, 176, 192}, {1080, 1024, 1120}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    resq_status st = resq_hadamard_factor(bad[i].n, NULL, NULL);
    char want[64];
    snprintf(want, sizeof want, "nearest supported sizes are %lld and %lld", (long long)bad[i].lo,
             (long long)bad[i].hi);
    RC_CHECK(st == RESQ_ERR_UNSUPPORTED && strstr(resq_last_error(), want), "n=%lld: %s / '%s' (want '%s')",
             (long long)bad[i].n, resq_status_name(st), resq_last_error(), want);
  }
  RC_CHECK(resq_hadamard_factor(0, NULL, NULL) == RESQ_ERR_INVALID_ARG, "n=0 is invalid");
  RC_CHECK(resq_hadamard_factor(-4, NULL, NULL) == RESQ_ERR_INVALID_ARG, "n<0 is invalid");
  RC_CHECK(resq_hadamard_factor((int64_t)1 << 27, NULL, NULL) == RESQ_ERR_UNSUPPORTED, "n=2^27 exceeds the max");
}

static void case_exact_tier(void) {
  if (!rc_case("exact_tier_pow4_integer_inputs")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  for (int64_t n = 4; n <= 16384; n *= 4) {
    int rows = n >= 16384 ? 1 : 3;
    float *x = malloc(sizeof(float) * (size_t)(n * rows)), *y = malloc(sizeof(float) * (size_t)(n * rows));
    float *want = malloc(sizeof(float) * (size_t)(n * rows));
    void *w = malloc(resq_hadamard_workspace_size(n));
    for (int64_t i = 0; i < n * rows; i++) x[i] = (float)resq_rng_range(&r, -8, 8);
    int j = 0;
    while ((1ll << (2 * j)) < n) j++;
    int8_t *hr = malloc((size_t)n);
    for (int64_t a = 0; a < n; a++) {
      dense_row(n, a, hr);
      for (int row = 0; row < rows; row++) {
        int64_t acc = 0; /* |acc| <= 8n < 2^24: exact in fp32 at every partial sum */
        for (int64_t b = 0; b < n; b++) acc += hr[b] * (int64_t)x[row * n + b];
        want[row * n + a] = ldexpf((float)acc, -j);
      }
    }
    free(hr);
    rc_note("n=%lld rows=%d", (long long)n, rows);
    RC_CHECK(resq_hadamard_f32__ref(rows, n, x, n, y, n, NULL, w, resq_hadamard_workspace_size(n)) == RESQ_OK, "run");
    char what[64];
    snprintf(what, sizeof what, "y (n=%lld)", (long long)n);
    rc_equal_f32_bits(y, want, (size_t)(n * rows), what);
    rc_nontrivial_f32(y, (size_t)(n * rows), 0.5, what);
    free(x), free(y), free(want), free(w);
  }
}

static void check_bound_case(resq_rng *r, int64_t n, int rows, int with_signs) {
  float *x = malloc(sizeof(float) * (size_t)(n * rows)), *y = malloc(sizeof(float) * (size_t)(n * rows));
  double *ref = malloc(sizeof(double) * (size_t)n), *tol = malloc(sizeof(double) * (size_t)n);
  int8_t *s = with_signs ? malloc((size_t)n) : NULL;
  void *w = malloc(resq_hadamard_workspace_size(n));
  if (s) resq_hadamard_random_signs(resq_rng_u64(r), n, s);
  for (int row = 0; row < rows; row++) llm_like(r, x + row * n, n);
  rc_note("n=%lld rows=%d signs=%d", (long long)n, rows, with_signs);
  resq_status st = resq_hadamard_f32__ref(rows, n, x, n, y, n, s, w, resq_hadamard_workspace_size(n));
  RC_CHECK(st == RESQ_OK, "n=%lld: %s", (long long)n, resq_last_error());
  for (int row = 0; row < rows && st == RESQ_OK; row++) {
    dense_ref(n, x + row * n, s, ref);
    double b = bound(n, x + row * n);
    char what[64];
    snprintf(what, sizeof what, "y[%d] n=%lld signs=%d", row, (long long)n, with_signs);
    rc_within(y + row * n, ref, NULL, b, (size_t)n, what);
  }
  free(x), free(y), free(ref), free(tol), free(s), free(w);
}

static void case_bound_tier(void) {
  if (!rc_case("bound_tier_all_orders_vs_dense_double")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int *orders;
  int no = resq_hadamard_orders(&orders);
  for (int t = 0; t < no; t++)
    for (int64_t m = 1; m <= 16; m *= 4)
      if (!resq_hadamard_factor(orders[t] * m, NULL, NULL)) check_bound_case(&r, orders[t] * m, 2, 0);
  for (int64_t n = 1; n <= 2048; n *= 2) check_bound_case(&r, n, 2, 0);
  check_bound_case(&r, 11008, 1, 0); /* Llama-2-7B intermediate: 172 * 64 */
  check_bound_case(&r, 14336, 1, 0); /* Llama-3-8B intermediate: 28 * 512 */
  check_bound_case(&r, 4096, 1, 1);
  check_bound_case(&r, 28 * 16, 2, 1);
}

static void case_signs(void) {
  if (!rc_case("signs_equal_negated_inputs")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t n = 44 * 32;
  float *x = malloc(sizeof(float) * n), *xs = malloc(sizeof(float) * n), *y1 = malloc(sizeof(float) * n),
        *y2 = malloc(sizeof(float) * n);
  int8_t *s = malloc(n);
  void *w = malloc(resq_hadamard_workspace_size(n));
  llm_like(&r, x, n);
  RC_CHECK(resq_hadamard_random_signs(7, n, s) == RESQ_OK, "draw signs");
  int neg = 0;
  for (int64_t i = 0; i < n; i++) {
    xs[i] = s[i] < 0 ? -x[i] : x[i];
    neg += s[i] < 0;
  }
  RC_CHECK(neg > n / 4 && neg < 3 * n / 4, "signs are balanced (%d of %lld negative)", neg, (long long)n);
  resq_hadamard_f32__ref(1, n, x, n, y1, n, s, w, resq_hadamard_workspace_size(n));
  resq_hadamard_f32__ref(1, n, xs, n, y2, n, NULL, w, resq_hadamard_workspace_size(n));
  rc_equal_f32_bits(y1, y2, (size_t)n, "H(x .* s) vs H applied to negated x");
  int8_t *s2 = malloc(n);
  resq_hadamard_random_signs(7, n, s2);
  RC_CHECK(memcmp(s, s2, (size_t)n) == 0, "signs are a function of the seed");
  s2[5] = 0;
  RC_CHECK(resq_hadamard_f32__ref(1, n, x, n, y1, n, s2, w, resq_hadamard_workspace_size(n)) == RESQ_ERR_INVALID_ARG,
           "a sign of 0 is refused");
  free(x), free(xs), free(y1), free(y2), free(s), free(s2), free(w);
}

/* Offline forms: (x H^T)(W H^T)^T = x W^T and x (H W)^T = (x W^T) H^T. */
static void case_weight_forms(void) {
  if (!rc_case("weight_forms_preserve_the_layer")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t n = 28 * 8, N = 5, M = 3;
  size_t ws = resq_hadamard_workspace_size(n);
  void *w = malloc(ws);
  int8_t *s = malloc(n);
  resq_hadamard_random_signs(resq_rng_u64(&r), n, s);
  /* input side: W [N, n] */
  float *W = malloc(sizeof(float) * N * n), *Wr = malloc(sizeof(float) * N * n);
  float *x = malloc(sizeof(float) * M * n), *xr = malloc(sizeof(float) * M * n);
  for (int64_t i = 0; i < N * n; i++) W[i] = (float)resq_rng_normal(&r);
  for (int64_t i = 0; i < M; i++) llm_like(&r, x + i * n, n);
  memcpy(Wr, W, sizeof(float) * N * n);
  RC_CHECK(resq_hadamard_weight_f32__ref(RESQ_HAD_INPUT_SIDE, N, n, Wr, n, s, w, ws) == RESQ_OK, "input side");
  resq_hadamard_f32__ref(M, n, x, n, xr, n, s, w, ws);
  double *got = malloc(sizeof(double) * M * N), *want = malloc(sizeof(double) * M * N);
  double *tol = malloc(sizeof(double) * M * N);
  float *gotf = malloc(sizeof(float) * M * N);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double a = 0, b = 0, t = 0;
      double bx = bound(n, x + i * n), bw = bound(n, W + j * n);
      for (int64_t k = 0; k < n; k++) {
        a += (double)xr[i * n + k] * Wr[j * n + k];
        b += (double)x[i * n + k] * W[j * n + k];
        /* first-order propagation of the two transforms' bounds, plus the double sums */
        t += fabs(xr[i * n + k]) * bw + fabs(Wr[j * n + k]) * bx;
      }
      gotf[i * N + j] = (float)a;
      want[i * N + j] = b;
      /* the float cast of `a` adds half an fp32 ulp */
      tol[i * N + j] = t + fabs(a) * k_u + 1e-12 * n;
    }
  rc_within(gotf, want, tol, 0, (size_t)(M * N), "x' W'^T vs x W^T (input side)");
  /* output side: W [n, N]; y = x W^T with x [M, N] -> y [M, n]; y' = x W'^T must be y diag(s) H^T */
  float *Wo = malloc(sizeof(float) * n * N), *Wor = malloc(sizeof(float) * n * N);
  float *xo = malloc(sizeof(float) * M * N);
  for (int64_t i = 0; i < n * N; i++) Wo[i] = (float)resq_rng_normal(&r);
  for (int64_t i = 0; i < M * N; i++) xo[i] = (float)resq_rng_normal(&r);
  memcpy(Wor, Wo, sizeof(float) * n * N);
  RC_CHECK(resq_hadamard_weight_f32__ref(RESQ_HAD_OUTPUT_SIDE, n, N, Wor, N, s, w, ws) == RESQ_OK, "output side");
  float *yp = malloc(sizeof(float) * M * n);
  double *ystar = malloc(sizeof(double) * M * n), *tolo = malloc(sizeof(double) * M * n);
  float *col = malloc(sizeof(float) * n);
  double *colb = malloc(sizeof(double) * N);
  for (int64_t j = 0; j < N; j++) {
    for (int64_t k = 0; k < n; k++) col[k] = Wo[k * N + j];
    colb[j] = bound(n, col);
  }
  for (int64_t i = 0; i < M; i++) {
    double *y = malloc(sizeof(double) * n);
    for (int64_t k = 0; k < n; k++) {
      double acc = 0;
      for (int64_t j = 0; j < N; j++) acc += (double)xo[i * N + j] * Wo[k * N + j];
      y[k] = acc;
    }
    int8_t *hr = malloc((size_t)n);
    for (int64_t a = 0; a < n; a++) {
      double acc = 0, t = 0, yy = 0;
      dense_row(n, a, hr);
      for (int64_t b = 0; b < n; b++) acc += hr[b] * y[b] * s[b];
      ystar[i * n + a] = acc / sqrt((double)n);
      for (int64_t j = 0; j < N; j++) {
        yy += (double)xo[i * N + j] * Wor[a * N + j];
        t += fabs(xo[i * N + j]) * colb[j];
      }
      yp[i * n + a] = (float)yy;
      tolo[i * n + a] = t + fabs(yy) * k_u + 1e-12 * n;
    }
    free(hr);
    free(y);
  }
  rc_within(yp, ystar, tolo, 0, (size_t)(M * n), "x W'^T vs (x W^T) diag(s) H^T (output side)");
  free(W), free(Wr), free(x), free(xr), free(got), free(want), free(tol), free(gotf), free(Wo), free(Wor), free(xo);
  free(yp), free(ystar), free(tolo), free(col), free(colb), free(s), free(w);
}

static void case_f16_and_strides(void) {
  if (!rc_case("f16_entry_inplace_and_strides")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int64_t n = 20 * 16, rows = 3, ld = n + 5;
  size_t ws = resq_hadamard_workspace_size(n);
  void *w = malloc(ws);
  float *x = malloc(sizeof(float) * rows * ld), *y = malloc(sizeof(float) * rows * ld);
  uint16_t *xh = malloc(2 * rows * ld), *yh = malloc(2 * rows * ld);
  for (int64_t i = 0; i < rows; i++) llm_like(&r, x + i * ld, n);
  for (int64_t i = 0; i < rows * ld; i++) y[i] = -7.0f; /* sentinel in the padding */
  for (int64_t i = 0; i < rows * ld; i++) xh[i] = resq_f32_to_f16(x[i]);
  RC_CHECK(resq_hadamard_f32__ref(rows, n, x, ld, y, ld, NULL, w, ws) == RESQ_OK, "strided f32");
  int pad_ok = 1;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = n; j < ld; j++) pad_ok &= y[i * ld + j] == -7.0f;
  RC_CHECK(pad_ok, "padding between rows untouched");
  RC_CHECK(resq_hadamard_f16__ref(rows, n, xh, ld, yh, ld, NULL, w, ws) == RESQ_OK, "f16 entry");
  long bad = 0;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < n; j++) bad += yh[i * ld + j] != resq_f32_to_f16(y[i * ld + j]);
  RC_CHECK(bad == 0, "f16 entry = RNE_f16(f32 transform of the widened input): %ld differ", bad);
  float *z = malloc(sizeof(float) * rows * ld);
  memcpy(z, x, sizeof(float) * rows * ld);
  RC_CHECK(resq_hadamard_f32__ref(rows, n, z, ld, z, ld, NULL, w, ws) == RESQ_OK, "in place");
  bad = 0;
  for (int64_t i = 0; i < rows; i++) bad += memcmp(z + i * ld, y + i * ld, sizeof(float) * n) != 0;
  RC_CHECK(bad == 0, "in-place equals out-of-place");
  /* strided vector (a column of a row-major matrix) */
  float *col = malloc(sizeof(float) * n * 3), *out = malloc(sizeof(float) * n);
  for (int64_t i = 0; i < n; i++) col[i * 3] = x[i];
  RC_CHECK(resq_hadamard_vec_f32__ref(n, col, 3, out, 1, NULL, w, ws) == RESQ_OK, "vector with stride 3");
  RC_CHECK(memcmp(out, y, sizeof(float) * n) == 0, "strided vector equals row transform");
  free(w), free(x), free(y), free(xh), free(yh), free(z), free(col), free(out);
}

static void case_failures(void) {
  if (!rc_case("failures_write_nothing")) return;
  const int64_t n = 64;
  size_t ws = resq_hadamard_workspace_size(n);
  void *w = malloc(ws);
  float x[2 * 64], y[2 * 64];
  uint16_t xh[2 * 64], yh[2 * 64];
  for (int i = 0; i < 2 * 64; i++) {
    x[i] = (float)(i % 7) - 3.0f;
    y[i] = 123.0f;
    yh[i] = 0x1234;
  }
  x[127] = NAN;
  resq_status st = resq_hadamard_f32__ref(2, n, x, n, y, n, NULL, w, ws);
  int untouched = 1;
  for (int i = 0; i < 128; i++) untouched &= y[i] == 123.0f;
  RC_CHECK(st == RESQ_ERR_NONFINITE && untouched && strstr(resq_last_error(), "[1][63]"),
           "NaN in the last element: %s '%s', output untouched %d", resq_status_name(st), resq_last_error(), untouched);
  x[127] = INFINITY;
  RC_CHECK(resq_hadamard_f32__ref(2, n, x, n, y, n, NULL, w, ws) == RESQ_ERR_NONFINITE, "Inf refused");
  for (int i = 0; i < 128; i++) xh[i] = 0x7bff; /* 65504: y_0 = 8 * 65504 overflows f16 */
  st = resq_hadamard_f16__ref(2, n, xh, n, yh, n, NULL, w, ws);
  untouched = 1;
  for (int i = 0; i < 128; i++) untouched &= yh[i] == 0x1234;
  RC_CHECK(st == RESQ_ERR_NONFINITE && untouched, "f16 overflow refused (%s), output untouched %d",
           resq_status_name(st), untouched);
  x[127] = 1.0f;
  RC_CHECK(resq_hadamard_f32__ref(2, n, x, n, y, n, NULL, w, ws - 1) == RESQ_ERR_INVALID_ARG, "small workspace");
  RC_CHECK(resq_hadamard_f32__ref(2, n, x, n - 1, y, n, NULL, w, ws) == RESQ_ERR_INVALID_ARG, "ldx < n");
  RC_CHECK(resq_hadamard_f32__ref(-1, n, x, n, y, n, NULL, w, ws) == RESQ_ERR_INVALID_ARG, "rows < 0");
  RC_CHECK(resq_hadamard_f32__ref(0, n, x, n, y, n, NULL, w, ws) == RESQ_OK, "zero rows is fine");
  RC_CHECK(resq_hadamard_f32__ref(1, 100, x, n, y, n, NULL, w, ws) == RESQ_ERR_UNSUPPORTED, "n=100 unsupported");
  free(w);
}

int main(int argc, char **argv) {
  rc_init("hadamard_f32__ref_test", argc, argv);
  case_orthogonality();
  case_dispatch();
  case_exact_tier();
  case_bound_tier();
  case_signs();
  case_weight_forms();
  case_f16_and_strides();
  case_failures();
  return rc_finish();
}
