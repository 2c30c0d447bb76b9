/* SPDX-License-Identifier: Apache-2.0
 * The verify harness: cases, counted checks, repro lines, comparisons, sha256. */
#include "resq_check.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/rng.h"

static struct {
  const char *program; /* argv[0] */
  const char *name;    /* program name used for seeds */
  int argc;
  char **argv;
  const char *only;
  int force_seed;
  uint64_t seed_override;
  int list;
  char cur[128];
  uint64_t seed;
  char note[256];
  int repro_printed;
  long checks, failures, cases;
} g;

void rc_init(const char *program, int argc, char **argv) {
  memset(&g, 0, sizeof g);
  g.name = program;
  g.program = argc > 0 ? argv[0] : program;
  g.argc = argc;
  g.argv = argv;
  g.only = rc_arg("case");
  const char *s = rc_arg("seed");
  if (s) {
    g.force_seed = 1;
    g.seed_override = strtoull(s, NULL, 0);
  }
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--list") == 0) g.list = 1;
}

const char *rc_arg(const char *name) {
  for (int i = 1; i + 1 < g.argc; i++)
    if (strncmp(g.argv[i], "--", 2) == 0 && strcmp(g.argv[i] + 2, name) == 0) return g.argv[i + 1];
  return NULL;
}

const char *rc_golden_dir(void) {
  const char *d = rc_arg("golden");
  return d ? d : "golden";
}

int rc_case(const char *name) {
  if (g.list) {
    printf("%s\n", name);
    return 0;
  }
  if (g.only && strcmp(g.only, name) != 0) return 0;
  snprintf(g.cur, sizeof g.cur, "%s", name);
  char full[256];
  snprintf(full, sizeof full, "%s/%s", g.name, name);
  g.seed = g.force_seed ? g.seed_override : resq_seed_for_test(full);
  g.note[0] = '\0';
  g.repro_printed = 0;
  g.cases++;
  printf("[ RUN  ] %s (seed 0x%016" PRIx64 ")\n", name, g.seed);
  fflush(stdout);
  return 1;
}

uint64_t rc_seed(void) { return g.seed; }

void rc_note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g.note, sizeof g.note, fmt, ap);
  va_end(ap);
}

int rc_check_impl(int ok, const char *file, int line, const char *fmt, ...) {
  g.checks++;
  if (ok) return 1;
  g.failures++;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("FAIL %s:%d: [%s] %s\n", file, line, g.cur, msg);
  if (!g.repro_printed) {
    g.repro_printed = 1;
    const char *gd = rc_arg("golden");
    /* options that select what a program runs are part of the repro command */
    static const char *const sel[] = {"stage", "part", "isa"};
    char extra[256] = "";
    size_t off = 0;
    for (size_t i = 0; i < sizeof sel / sizeof sel[0]; i++) {
      const char *v = rc_arg(sel[i]);
      if (v && off < sizeof extra) off += (size_t)snprintf(extra + off, sizeof extra - off, " --%s %s", sel[i], v);
    }
    printf("REPRO: %s%s --case %s --seed 0x%016" PRIx64 "%s%s%s%s\n", g.program, extra, g.cur, g.seed,
           gd ? " --golden " : "", gd ? gd : "", g.note[0] ? "   # " : "", g.note);
  }
  fflush(stdout);
  return 0;
}

long rc_checks(void) { return g.checks; }
long rc_failures(void) { return g.failures; }

int rc_finish(void) {
  if (g.list) return 0;
  printf("%s: %ld cases, %ld checks, %ld failures\n", g.name, g.cases, g.checks, g.failures);
  if (g.checks == 0) {
    printf("%s: FAILED: no check ran%s\n", g.name, g.only ? " (does --case name an existing case?)" : "");
    return 1;
  }
  return g.failures ? 1 : 0;
}

/* ------------------------------------------------------------------ comparisons */

#define MAX_SHOWN 8

int rc_equal_bytes(const void *got, const void *want, size_t n, const char *what) {
  const unsigned char *a = (const unsigned char *)got, *b = (const unsigned char *)want;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) {
      if (bad < MAX_SHOWN) printf("  %s: byte %zu: got 0x%02x want 0x%02x\n", what, i, a[i], b[i]);
      bad++;
    }
  return RC_CHECK(bad == 0, "%s: %zu of %zu bytes differ", what, bad, n);
}

int rc_equal_u16(const uint16_t *got, const uint16_t *want, size_t n, const char *what) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (got[i] != want[i]) {
      if (bad < MAX_SHOWN) printf("  %s[%zu]: got 0x%04x want 0x%04x\n", what, i, got[i], want[i]);
      bad++;
    }
  return RC_CHECK(bad == 0, "%s: %zu of %zu values differ", what, bad, n);
}

int rc_equal_i32(const int32_t *got, const int32_t *want, size_t n, const char *what) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (got[i] != want[i]) {
      if (bad < MAX_SHOWN) printf("  %s[%zu]: got %" PRId32 " want %" PRId32 "\n", what, i, got[i], want[i]);
      bad++;
    }
  return RC_CHECK(bad == 0, "%s: %zu of %zu values differ", what, bad, n);
}

int rc_equal_f32_bits(const float *got, const float *want, size_t n, const char *what) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (memcmp(&got[i], &want[i], 4) != 0) {
      if (bad < MAX_SHOWN)
        printf("  %s[%zu]: got %a (%.9g) want %a (%.9g), %" PRIu64 " ulp\n", what, i, (double)got[i],
               (double)got[i], (double)want[i], (double)want[i], rc_ulp_f32(got[i], want[i]));
      bad++;
    }
  return RC_CHECK(bad == 0, "%s: %zu of %zu values differ bitwise", what, bad, n);
}

int rc_within(const float *got, const double *ref, const double *tol, double tol_scalar, size_t n,
              const char *what) {
  size_t bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double t = tol ? tol[i] : tol_scalar;
    double d = fabs((double)got[i] - ref[i]);
    if (!(d <= t)) { /* NaN fails too */
      if (bad < MAX_SHOWN) printf("  %s[%zu]: got %.9g ref %.17g |diff| %.3g > tol %.3g\n", what, i, (double)got[i],
                                  ref[i], d, t);
      bad++;
    }
    if (t > 0 && d / t > worst) worst = d / t;
  }
  return RC_CHECK(bad == 0, "%s: %zu of %zu outside the bound (worst |diff|/tol = %.3g)", what, bad, n, worst);
}

int rc_nontrivial_f32(const float *x, size_t n, double max_zero_frac, const char *what) {
  size_t zeros = 0, nonfinite = 0;
  double ss = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) nonfinite++;
    else if (x[i] == 0.0f) zeros++;
    else ss += (double)x[i] * x[i];
  }
  return RC_CHECK(n > 0 && nonfinite == 0 && ss > 0.0 && (double)zeros <= max_zero_frac * (double)n,
                  "%s is trivial: n=%zu, %zu non-finite, %zu zeros (cap %.0f%%), sum of squares %g", what, n,
                  nonfinite, zeros, 100 * max_zero_frac, ss);
}

int rc_nontrivial_bytes(const void *x, size_t n, const char *what) {
  const unsigned char *b = (const unsigned char *)x;
  size_t i = 1;
  while (i < n && b[i] == b[0]) i++;
  return RC_CHECK(n > 1 && i < n, "%s is trivial: all %zu bytes are 0x%02x", what, n, n ? b[0] : 0);
}

static int64_t ordered(float f) {
  int32_t i;
  memcpy(&i, &f, 4);
  return i < 0 ? (int64_t)INT32_MIN - (int64_t)i : (int64_t)i;
}

uint64_t rc_ulp_f32(float a, float b) {
  if (isnan(a) || isnan(b)) return UINT64_MAX;
  int64_t d = ordered(a) - ordered(b);
  return (uint64_t)(d < 0 ? -d : d);
}

uint64_t rc_max_ulp_f32(const float *a, const float *b, size_t n, size_t *where) {
  uint64_t m = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t u = rc_ulp_f32(a[i], b[i]);
    if (u > m) {
      m = u;
      if (where) *where = i;
    }
  }
  return m;
}

double rc_max_abs(const float *got, const double *ref, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]);
    if (d > m || isnan(d)) m = d;
  }
  return m;
}

double rc_max_rel(const float *got, const double *ref, size_t n, double floor) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]) / fmax(fabs(ref[i]), floor);
    if (d > m || isnan(d)) m = d;
  }
  return m;
}

double rc_nmse(const float *got, const double *ref, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? num / den : (num > 0 ? INFINITY : 0.0);
}

/* ------------------------------------------------------------------ sha256 (FIPS 180-4) */

static const uint32_t k_sha[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

typedef struct {
  uint32_t h[8];
  uint64_t len;
  unsigned char buf[64];
  size_t nbuf;
} sha_ctx;

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(sha_ctx *c, const unsigned char *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], gg = c->h[6], h = c->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & gg)) + k_sha[i] + w[i];
    uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
    h = gg;
    gg = f;
    f = e;
    e = d + t1;
    d = cc;
    cc = b;
    b = a;
    a = t1 + t2;
  }
  c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d;
  c->h[4] += e; c->h[5] += f; c->h[6] += gg; c->h[7] += h;
}

static void sha_init(sha_ctx *c) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, h0, sizeof h0);
  c->len = 0;
  c->nbuf = 0;
}

static void sha_update(sha_ctx *c, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  c->len += n;
  while (n) {
    size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
    memcpy(c->buf + c->nbuf, p, k);
    c->nbuf += k;
    p += k;
    n -= k;
    if (c->nbuf == 64) {
      sha_block(c, c->buf);
      c->nbuf = 0;
    }
  }
}

static void sha_final(sha_ctx *c, char hex[65]) {
  uint64_t bits = c->len * 8;
  unsigned char pad = 0x80;
  sha_update(c, &pad, 1);
  unsigned char z = 0;
  while (c->nbuf != 56) sha_update(c, &z, 1);
  unsigned char lenb[8];
  for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
  sha_update(c, lenb, 8);
  for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", c->h[i]);
}

void rc_sha256(const void *data, size_t n, char hex[65]) {
  sha_ctx c;
  sha_init(&c);
  sha_update(&c, data, n);
  sha_final(&c, hex);
}

int rc_sha256_file(const char *path, char hex[65]) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  sha_ctx c;
  sha_init(&c);
  unsigned char buf[65536];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, f)) > 0) sha_update(&c, buf, k);
  int err = ferror(f);
  fclose(f);
  if (err) return -1;
  sha_final(&c, hex);
  return 0;
}
