/* SPDX-License-Identifier: Apache-2.0
 * xoshiro256** seeded by splitmix64; see resq/rng.h. */
#include "resq/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t resq_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void resq_rng_init(resq_rng *r, uint64_t seed) {
  uint64_t st = seed;
  for (int i = 0; i < 4; i++) r->s[i] = resq_splitmix64(&st);
  r->have_spare = 0;
  r->spare = 0.0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t resq_rng_u64(resq_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t resq_rng_below(resq_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  /* Rejection on the top of the range: the accepted values are an exact
   * multiple of n, so every residue is equally likely. */
  uint64_t limit = UINT64_MAX - (UINT64_MAX % n) - 1;
  uint64_t x;
  do {
    x = resq_rng_u64(r);
  } while (x > limit);
  return x % n;
}

int64_t resq_rng_range(resq_rng *r, int64_t lo, int64_t hi) {
  uint64_t span = (uint64_t)(hi - lo) + 1u;
  if (span == 0) return (int64_t)resq_rng_u64(r); /* full 64-bit range */
  return lo + (int64_t)resq_rng_below(r, span);
}

float resq_rng_uniform_f32(resq_rng *r) {
  return (float)(resq_rng_u64(r) >> 40) * 0x1.0p-24f;
}

double resq_rng_uniform_f64(resq_rng *r) {
  return (double)(resq_rng_u64(r) >> 11) * 0x1.0p-53;
}

double resq_rng_normal(resq_rng *r) {
  if (r->have_spare) {
    r->have_spare = 0;
    return r->spare;
  }
  double u, v, s;
  do {
    u = 2.0 * resq_rng_uniform_f64(r) - 1.0;
    v = 2.0 * resq_rng_uniform_f64(r) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  double m = sqrt(-2.0 * log(s) / s);
  r->spare = v * m;
  r->have_spare = 1;
  return u * m;
}

uint64_t resq_seed_from_name(const char *name) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
  for (const unsigned char *p = (const unsigned char *)name; p && *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  return resq_splitmix64(&h);
}

uint64_t resq_seed_for_test(const char *name) {
  const char *env = getenv("RESQ_SEED");
  if (env && *env) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(env, &end, 0);
    if (errno == 0 && end && *end == '\0') return (uint64_t)v;
    fprintf(stderr, "warning: RESQ_SEED='%s' is not an integer; using the seed derived from '%s'\n",
            env, name ? name : "");
  }
  return resq_seed_from_name(name);
}
