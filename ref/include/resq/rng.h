/* SPDX-License-Identifier: Apache-2.0
 * resq/rng.h -- the suite's one deterministic PRNG.
 *
 * xoshiro256** (Blackman & Vigna), seeded through splitmix64. The stream is a
 * pure function of the 64-bit seed on every platform: integer draws are exact,
 * uniform floats take the top 24/53 bits, and gaussians use the Marsaglia polar
 * method whose only libm calls are log() and sqrt() (correctly rounded sqrt;
 * glibc's log is not guaranteed correctly rounded, so gaussian bits may differ
 * across libms -- tests print their seed and never compare gaussian draws
 * across machines).
 *
 * Tests derive their seed from their name (resq_seed_from_name), so a test's
 * data does not depend on which other tests ran, and the environment variable
 * RESQ_SEED (decimal or 0x-hex) overrides it for reproducing or widening a run.
 */
#ifndef RESQ_RNG_H
#define RESQ_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct resq_rng {
  uint64_t s[4];
  int have_spare;
  double spare;
} resq_rng;

void resq_rng_init(resq_rng *r, uint64_t seed);
uint64_t resq_rng_u64(resq_rng *r);
/* Uniform integer in [0, n) without modulo bias; n >= 1. */
uint64_t resq_rng_below(resq_rng *r, uint64_t n);
/* Uniform integer in [lo, hi] (inclusive). */
int64_t resq_rng_range(resq_rng *r, int64_t lo, int64_t hi);
/* Uniform in [0, 1) with 24 (float) or 53 (double) random bits. */
float resq_rng_uniform_f32(resq_rng *r);
double resq_rng_uniform_f64(resq_rng *r);
/* Standard normal (Marsaglia polar). */
double resq_rng_normal(resq_rng *r);

/* splitmix64 step: used for seeding and for hashing. */
uint64_t resq_splitmix64(uint64_t *state);
/* FNV-1a of the name, then one splitmix64 round. */
uint64_t resq_seed_from_name(const char *name);
/* resq_seed_from_name(name) unless RESQ_SEED is set (then that value; a value
 * that does not parse is reported on stderr and ignored). */
uint64_t resq_seed_for_test(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_RNG_H */
