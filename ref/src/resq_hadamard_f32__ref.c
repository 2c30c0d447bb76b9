/* SPDX-License-Identifier: Apache-2.0
 * Reference Hadamard rotation y = (x .* s) H_n^T (ref/CONTRACT.md section 2).
 *
 * The order of floating-point operations is the specification, because the
 * CUDA and CPU kernels must reproduce it bit for bit:
 *   1. t = x .* s                       exact (sign flips)
 *   2. per block c of m = n/K elements: radix-2 butterflies (a,b) -> (a+b, a-b)
 *      with strides h = 1, 2, 4, ..., m/2 (ascending) in fp32. This equals
 *      Dao-AILab fast_hadamard_transform, the kernel upstream ResQ uses.
 *   3. u = fp32(t * inv), inv = (float)(1.0 / (double)sqrtf((float)n)),
 *      upstream's "Y / torch.tensor(n).sqrt()" on CUDA (multiply by reciprocal).
 *   4. K > 1: y[a*m+b] = sum_{c=0..K-1} hadK[a][c] * u[c*m+b], summed in fp32
 *      left to right (acc = +-u[b]; acc = acc +- u[c*m+b] for c = 1..K-1).
 *      Upstream does this with a cuBLAS GEMM of unspecified order; we fix one.
 */
#include <math.h>
#include <string.h>

#include "hadamard_tables.h"
#include "resq/dtype.h"
#include "resq/hadamard.h"
#include "resq/rng.h"

/* upstream get_hadK test order (orders without a committed matrix omitted) */
static const int k_dispatch[] = {172, 156, 140, 108, 60, 52, 36, 28, 44, 40, 20, 12};
static const int k_orders[] = {12, 20, 28, 36, 40, 44, 52, 60, 108, 140, 156, 172};

static int is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

static const resq_had_table *find_table(int K) {
  for (int i = 0; i < RESQ_HAD_NTABLES; i++)
    if (resq_had_tables[i].order == K) return &resq_had_tables[i];
  return NULL;
}

/* Upstream's rule without error reporting: 0 = unsupported. */
static int factor_raw(int64_t n, int *K, int64_t *m) {
  if (n < 1 || n > RESQ_HADAMARD_MAX_N) return 0;
  for (size_t i = 0; i < sizeof k_dispatch / sizeof k_dispatch[0]; i++) {
    if (n % k_dispatch[i] == 0) {
      /* first divisor wins; a non-power-of-two quotient is an upstream assert */
      if (!is_pow2(n / k_dispatch[i])) return 0;
      *K = k_dispatch[i];
      *m = n / k_dispatch[i];
      return 1;
    }
  }
  if (!is_pow2(n)) return 0;
  *K = 1;
  *m = n;
  return 1;
}

void resq_hadamard_nearest(int64_t n, int64_t *below, int64_t *above) {
  int64_t lo = 0, hi = 0;
  /* Every supported size is K * 2^j; enumerate them all (a few hundred). */
  for (int t = -1; t < (int)(sizeof k_orders / sizeof k_orders[0]); t++) {
    int64_t K = t < 0 ? 1 : k_orders[t];
    for (int64_t v = K; v <= RESQ_HADAMARD_MAX_N; v *= 2) {
      int kk;
      int64_t mm;
      if (!factor_raw(v, &kk, &mm)) continue;
      if (v < n && v > lo) lo = v;
      if (v > n && (hi == 0 || v < hi)) hi = v;
    }
  }
  if (below) *below = lo;
  if (above) *above = hi;
}

resq_status resq_hadamard_factor(int64_t n, int *K, int64_t *m) {
  int kk;
  int64_t mm;
  if (factor_raw(n, &kk, &mm)) {
    if (K) *K = kk;
    if (m) *m = mm;
    return RESQ_OK;
  }
  if (n < 1) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: n=%lld must be >= 1", (long long)n);
  if (n > RESQ_HADAMARD_MAX_N)
    return resq_fail(RESQ_ERR_UNSUPPORTED, "hadamard: n=%lld exceeds the maximum %lld", (long long)n,
                     (long long)RESQ_HADAMARD_MAX_N);
  int64_t lo, hi;
  resq_hadamard_nearest(n, &lo, &hi);
  return resq_fail(RESQ_ERR_UNSUPPORTED,
                   "hadamard: n=%lld is not K*2^j for a supported K (1,12,20,28,36,40,44,52,60,108,"
                   "140,156,172 in upstream dispatch order); nearest supported sizes are %lld and %lld",
                   (long long)n, (long long)lo, (long long)hi);
}

int resq_hadamard_orders(const int **orders) {
  if (orders) *orders = k_orders;
  return (int)(sizeof k_orders / sizeof k_orders[0]);
}

int resq_hadamard_k_entry(int K, int i, int j) {
  if (K == 1) return 1;
  const resq_had_table *t = find_table(K);
  return t->rows[i][j] == '+' ? 1 : -1;
}

static int sylvester_entry(int64_t i, int64_t j) {
  /* S_m[i][j] = (-1)^popcount(i & j) */
  uint64_t v = (uint64_t)(i & j);
  int par = 0;
  while (v) {
    par ^= 1;
    v &= v - 1;
  }
  return par ? -1 : 1;
}

int resq_hadamard_entry(int64_t n, int64_t i, int64_t j) {
  int K;
  int64_t m;
  if (!factor_raw(n, &K, &m)) return 0;
  return resq_hadamard_k_entry(K, (int)(i / m), (int)(j / m)) * sylvester_entry(i % m, j % m);
}

float resq_hadamard_scale_f32(int64_t n) {
  float s = sqrtf((float)n);
  return (float)(1.0 / (double)s);
}

resq_status resq_hadamard_random_signs(uint64_t seed, int64_t n, int8_t *signs) {
  if (n < 0 || (n > 0 && !signs)) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard signs: bad arguments");
  resq_rng r;
  resq_rng_init(&r, seed);
  for (int64_t i = 0; i < n; i++) signs[i] = (resq_rng_u64(&r) >> 63) ? -1 : 1;
  return RESQ_OK;
}

size_t resq_hadamard_workspace_size(int64_t n) {
  if (n < 1) return 0;
  return (size_t)n * 2 * sizeof(float);
}

static resq_status check_signs(int64_t n, const int8_t *signs) {
  if (!signs) return RESQ_OK;
  for (int64_t i = 0; i < n; i++)
    if (signs[i] != 1 && signs[i] != -1)
      return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: signs[%lld] = %d (must be +1 or -1)", (long long)i,
                       signs[i]);
  return RESQ_OK;
}

static resq_status check_common(int64_t n, const int8_t *signs, void *work, size_t work_size, int *K,
                                int64_t *m) {
  resq_status st = resq_hadamard_factor(n, K, m);
  if (st) return st;
  if (!work || work_size < resq_hadamard_workspace_size(n))
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: workspace of %zu bytes given, %zu needed", work_size,
                     resq_hadamard_workspace_size(n));
  return check_signs(n, signs);
}

/* Steps 1-4 on a contiguous copy t[0..n) (clobbered); result into u[0..n). */
static void transform_core(int K, int64_t m, int64_t n, float *t, float *u) {
  /* 2. ascending-stride butterflies within each block */
  for (int c = 0; c < K; c++) {
    float *v = t + (int64_t)c * m;
    for (int64_t h = 1; h < m; h <<= 1)
      for (int64_t i = 0; i < m; i += 2 * h)
        for (int64_t j = i; j < i + h; j++) {
          float a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
  }
  /* 3. one fp32 multiply by the rounded reciprocal square root */
  float inv = resq_hadamard_scale_f32(n);
  for (int64_t i = 0; i < n; i++) t[i] *= inv;
  /* 4. mix the K blocks with hadK, summed left to right */
  if (K == 1) {
    memcpy(u, t, (size_t)n * sizeof(float));
    return;
  }
  const resq_had_table *tab = find_table(K);
  for (int a = 0; a < K; a++) {
    const char *row = tab->rows[a];
    for (int64_t b = 0; b < m; b++) {
      float acc = row[0] == '+' ? t[b] : -t[b];
      for (int c = 1; c < K; c++) {
        float v = t[(int64_t)c * m + b];
        acc = row[c] == '+' ? acc + v : acc - v;
      }
      u[(int64_t)a * m + b] = acc;
    }
  }
}

static resq_status nonfinite_at(const char *what, long long r, long long j) {
  return resq_fail(RESQ_ERR_NONFINITE, "hadamard: %s[%lld][%lld] is NaN or Inf", what, r, j);
}

resq_status resq_hadamard_vec_f32__ref(int64_t n, const float *x, int64_t incx, float *y,
                                       int64_t incy, const int8_t *signs, void *work,
                                       size_t work_size) {
  int K;
  int64_t m;
  resq_status st = check_common(n, signs, work, work_size, &K, &m);
  if (st) return st;
  if (!x || !y || incx == 0 || incy == 0) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: NULL vector or zero stride");
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i * incx])) return nonfinite_at("x", 0, (long long)i);
  float *t = (float *)work, *u = t + n;
  for (int64_t i = 0; i < n; i++) t[i] = signs && signs[i] < 0 ? -x[i * incx] : x[i * incx];
  transform_core(K, m, n, t, u);
  for (int64_t i = 0; i < n; i++) y[i * incy] = u[i];
  return RESQ_OK;
}

static resq_status check_rows(int64_t rows, int64_t n, const void *x, int64_t ldx, const void *y,
                              int64_t ldy) {
  if (rows < 0) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: rows=%lld < 0", (long long)rows);
  if (rows > 0 && (!x || !y)) return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: NULL input or output");
  if (rows > 1 && (ldx < n || ldy < n))
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard: leading dimensions (%lld, %lld) smaller than n=%lld",
                     (long long)ldx, (long long)ldy, (long long)n);
  return RESQ_OK;
}

resq_status resq_hadamard_f32__ref(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y,
                                   int64_t ldy, const int8_t *signs, void *work, size_t work_size) {
  int K;
  int64_t m;
  resq_status st = check_common(n, signs, work, work_size, &K, &m);
  if (!st) st = check_rows(rows, n, x, ldx, y, ldy);
  if (st) return st;
  for (int64_t r = 0; r < rows; r++) /* validate everything before writing anything */
    for (int64_t j = 0; j < n; j++)
      if (!isfinite(x[r * ldx + j])) return nonfinite_at("x", (long long)r, (long long)j);
  float *t = (float *)work, *u = t + n;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * ldx;
    for (int64_t i = 0; i < n; i++) t[i] = signs && signs[i] < 0 ? -xr[i] : xr[i];
    transform_core(K, m, n, t, u);
    memcpy(y + r * ldy, u, (size_t)n * sizeof(float));
  }
  return RESQ_OK;
}

resq_status resq_hadamard_f16__ref(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                   uint16_t *y, int64_t ldy, const int8_t *signs, void *work,
                                   size_t work_size) {
  int K;
  int64_t m;
  resq_status st = check_common(n, signs, work, work_size, &K, &m);
  if (!st) st = check_rows(rows, n, x, ldx, y, ldy);
  if (st) return st;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++)
      if ((x[r * ldx + j] & 0x7c00u) == 0x7c00u) return nonfinite_at("x", (long long)r, (long long)j);
  float *t = (float *)work, *u = t + n;
  /* Two passes so that a failure leaves y untouched (y may alias x): pass 0
   * only checks that the single final rounding to f16 stays finite -- an
   * orthogonal transform can still exceed 65504 (all-65504 input gives
   * y_0 = sqrt(n) * 65504) -- pass 1 writes. */
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t r = 0; r < rows; r++) {
      const uint16_t *xr = x + r * ldx;
      for (int64_t i = 0; i < n; i++) {
        float v = resq_f16_to_f32(xr[i]);
        t[i] = signs && signs[i] < 0 ? -v : v;
      }
      transform_core(K, m, n, t, u);
      if (pass == 0) {
        for (int64_t i = 0; i < n; i++)
          if (!isfinite(resq_round_f16(u[i])))
            return resq_fail(RESQ_ERR_NONFINITE, "hadamard: output[%lld][%lld] = %g overflows f16",
                             (long long)r, (long long)i, (double)u[i]);
      } else {
        for (int64_t i = 0; i < n; i++) y[r * ldy + i] = resq_f32_to_f16(u[i]);
      }
    }
  }
  return RESQ_OK;
}

resq_status resq_hadamard_weight_f32__ref(resq_had_side side, int64_t rows, int64_t cols, float *W,
                                          int64_t ldw, const int8_t *signs, void *work,
                                          size_t work_size) {
  if (side != RESQ_HAD_INPUT_SIDE && side != RESQ_HAD_OUTPUT_SIDE)
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard weight: bad side %d", (int)side);
  if (rows < 0 || cols < 0 || (rows > 0 && cols > 0 && !W) || (rows > 1 && ldw < cols))
    return resq_fail(RESQ_ERR_INVALID_ARG, "hadamard weight: bad shape/leading dimension");
  int64_t n = side == RESQ_HAD_INPUT_SIDE ? cols : rows;
  int64_t count = side == RESQ_HAD_INPUT_SIDE ? rows : cols;
  int K;
  int64_t m;
  resq_status st = check_common(n, signs, work, work_size, &K, &m);
  if (st) return st;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++)
      if (!isfinite(W[r * ldw + j])) return nonfinite_at("W", (long long)r, (long long)j);
  int64_t inc = side == RESQ_HAD_INPUT_SIDE ? 1 : ldw;  /* element stride along the vector */
  int64_t step = side == RESQ_HAD_INPUT_SIDE ? ldw : 1; /* stride between vectors */
  for (int64_t v = 0; v < count; v++) {
    st = resq_hadamard_vec_f32__ref(n, W + v * step, inc, W + v * step, inc, signs, work, work_size);
    if (st) return st;
  }
  return RESQ_OK;
}
