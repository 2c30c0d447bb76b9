/* SPDX-License-Identifier: Apache-2.0
 * The PRNG: published xoshiro256** / splitmix64 values, determinism, seeding
 * from names, RESQ_SEED, and distribution sanity with 6-sigma bounds. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/rng.h"
#include "resq_check.h"

static void case_known(void) {
  if (!rc_case("splitmix64_known_values")) return;
  /* splitmix64 from state 0: first outputs of the reference implementation */
  uint64_t s = 0;
  RC_CHECK(resq_splitmix64(&s) == 0xe220a8397b1dcdafull, "splitmix64(0) #1");
  RC_CHECK(resq_splitmix64(&s) == 0x6e789e6aa1b965f4ull, "splitmix64(0) #2");
  RC_CHECK(resq_splitmix64(&s) == 0x06c45d188009454full, "splitmix64(0) #3");
}

static void case_determinism(void) {
  if (!rc_case("determinism_and_seeding")) return;
  resq_rng a, b;
  resq_rng_init(&a, 42);
  resq_rng_init(&b, 42);
  int same = 1;
  for (int i = 0; i < 1000; i++) same &= resq_rng_u64(&a) == resq_rng_u64(&b);
  RC_CHECK(same, "same seed gives the same stream");
  resq_rng_init(&b, 43);
  resq_rng_init(&a, 42);
  int diff = 0;
  for (int i = 0; i < 100; i++) diff += resq_rng_u64(&a) != resq_rng_u64(&b);
  RC_CHECK(diff > 95, "seeds 42 and 43 give different streams (%d of 100 differ)", diff);
  RC_CHECK(resq_seed_from_name("a/b") == resq_seed_from_name("a/b"), "name seed is a function");
  RC_CHECK(resq_seed_from_name("a/b") != resq_seed_from_name("a/c"), "different names, different seeds");
  const char *old = getenv("RESQ_SEED");
  char saved[64] = "";
  if (old) snprintf(saved, sizeof saved, "%s", old);
  setenv("RESQ_SEED", "0x1234", 1);
  RC_CHECK(resq_seed_for_test("anything") == 0x1234, "RESQ_SEED overrides the name seed");
  setenv("RESQ_SEED", "12x", 1);
  RC_CHECK(resq_seed_for_test("anything") == resq_seed_from_name("anything"), "bad RESQ_SEED is ignored");
  if (old) setenv("RESQ_SEED", saved, 1);
  else unsetenv("RESQ_SEED");
}

static void case_distributions(void) {
  if (!rc_case("distributions")) return;
  resq_rng r;
  resq_rng_init(&r, rc_seed());
  const int n = 1000000;
  double s = 0, s2 = 0, su = 0;
  long cnt[10] = {0};
  int in_range = 1;
  for (int i = 0; i < n; i++) {
    double z = resq_rng_normal(&r);
    s += z;
    s2 += z * z;
    double u = resq_rng_uniform_f64(&r);
    su += u;
    in_range &= u >= 0.0 && u < 1.0;
    uint64_t k = resq_rng_below(&r, 10);
    in_range &= k < 10;
    cnt[k]++;
    int64_t v = resq_rng_range(&r, -3, 3);
    in_range &= v >= -3 && v <= 3;
  }
  RC_CHECK(in_range, "uniform/below/range stay in range");
  /* mean of N(0,1): sd 1/sqrt(n); variance estimate: sd sqrt(2/n); U(0,1) mean: sd sqrt(1/12n) */
  RC_CHECK(fabs(s / n) < 6.0 / sqrt(n), "normal mean %g within 6 sigma", s / n);
  RC_CHECK(fabs(s2 / n - 1.0) < 6.0 * sqrt(2.0 / n), "normal variance %g within 6 sigma", s2 / n);
  RC_CHECK(fabs(su / n - 0.5) < 6.0 * sqrt(1.0 / (12.0 * n)), "uniform mean %g within 6 sigma", su / n);
  /* chi-square with 9 dof: P(chi2 > 40) < 1e-5 */
  double chi = 0;
  for (int k = 0; k < 10; k++) chi += (cnt[k] - n / 10.0) * (cnt[k] - n / 10.0) / (n / 10.0);
  RC_CHECK(chi < 40.0, "resq_rng_below(10) chi-square %g < 40", chi);
}

int main(int argc, char **argv) {
  rc_init("rng_test", argc, argv);
  case_known();
  case_determinism();
  case_distributions();
  return rc_finish();
}
