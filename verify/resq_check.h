/* SPDX-License-Identifier: Apache-2.0
 * verify/resq_check.h -- the suite's tiny test harness.
 *
 * A test program has named cases; each case gets its own seed derived from
 * "<program>/<case>" (resq_seed_for_test: RESQ_SEED overrides), so a case's
 * data does not depend on the other cases. Every check is counted; a failure
 * prints file:line, the message and -- once per case -- a one-line repro:
 *   REPRO: <binary> --case <case> --seed 0x<seed>   [<shape note>]
 * rc_finish() fails the program when any check failed OR when no check ran
 * (a vacuous pass is a failure).
 *
 * Common options of every test program:
 *   --case NAME    run only that case          --seed N   force the seed
 *   --golden DIR   golden data directory       --list     list the cases
 */
#ifndef RESQ_VERIFY_CHECK_H
#define RESQ_VERIFY_CHECK_H

#include <stddef.h>
#include <stdint.h>

void rc_init(const char *program, int argc, char **argv);
/* Start case `name`; returns 0 if it is filtered out (then skip it). */
int rc_case(const char *name);
uint64_t rc_seed(void);
/* Free-form shape/parameter note printed in the repro line of this case. */
void rc_note(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Value of "--name VALUE" on the command line, or NULL. */
const char *rc_arg(const char *name);
const char *rc_golden_dir(void);

int rc_check_impl(int ok, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
#define RC_CHECK(cond, ...) rc_check_impl(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* A check that always counts and fails: for "should not happen" branches. */
#define RC_FAIL(...) rc_check_impl(0, __FILE__, __LINE__, __VA_ARGS__)

int rc_finish(void); /* exit status for main */
long rc_checks(void);
long rc_failures(void);

/* ---- comparisons: each is one counted check; failures print the first mismatches ---- */
int rc_equal_bytes(const void *got, const void *want, size_t n, const char *what);
int rc_equal_u16(const uint16_t *got, const uint16_t *want, size_t n, const char *what);
int rc_equal_i32(const int32_t *got, const int32_t *want, size_t n, const char *what);
/* bitwise equality of floats (so -0 != +0 and NaN payloads count); prints %a */
int rc_equal_f32_bits(const float *got, const float *want, size_t n, const char *what);
/* |got_i - ref_i| <= tol_i for every i (tol may be NULL: then tol_scalar). */
int rc_within(const float *got, const double *ref, const double *tol, double tol_scalar, size_t n,
              const char *what);
/* finite, ||x|| > 0, and at most max_zero_frac of the entries exactly 0 */
int rc_nontrivial_f32(const float *x, size_t n, double max_zero_frac, const char *what);
int rc_nontrivial_bytes(const void *x, size_t n, const char *what); /* not all bytes equal */

/* metrics (no check) */
uint64_t rc_ulp_f32(float a, float b); /* distance in representable fp32 steps */
uint64_t rc_max_ulp_f32(const float *a, const float *b, size_t n, size_t *where);
double rc_max_abs(const float *got, const double *ref, size_t n);
double rc_max_rel(const float *got, const double *ref, size_t n, double floor);
double rc_nmse(const float *got, const double *ref, size_t n); /* sum (g-r)^2 / sum r^2 */

/* ---- sha256 (for the golden manifest) ---- */
void rc_sha256(const void *data, size_t n, char hex[65]);
int rc_sha256_file(const char *path, char hex[65]); /* 0 on success */

#endif
