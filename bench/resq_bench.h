/* SPDX-License-Identifier: Apache-2.0
 * bench/resq_bench.h -- a small C API over Google Benchmark, so that every
 * benchmark of the suite is written in C (the one C++ file is resq_bench_gb.cc).
 *
 * A benchmark is a C function that receives an opaque state and a private copy
 * of the parameter bytes given at registration:
 *
 *   static void bm_copy(resq_bench_state *st, const void *params) {
 *     const struct copy_params *p = params;
 *     ... allocate, check the result once against the reference ...
 *     if (wrong) { resq_bench_error(st, "mismatch at %d", i); return; }
 *     while (resq_bench_keep_running(st, 1)) memcpy(dst, src, p->bytes);
 *     resq_bench_counter(st, "bytes", 2.0 * p->bytes, RESQ_CTR_RATE);
 *   }
 *   ...
 *   static const char *const names[] = {"bytes"};
 *   int64_t v[] = {bytes};
 *   resq_bench_register_args("memcpy", bm_copy, &p, sizeof p, RESQ_BENCH_REAL_TIME, names, v, 1);
 *   -> benchmark "memcpy/bytes:<n>"
 *
 * Conventions of the suite (bench/run_all relies on them):
 *   - names follow `<stage>_<types>__<backend>/<param>:<value>/...`
 *     (hadamard_f16__ref/n:4096/rows:16, gemm_bf16_f32__onednn/M:1/N:4096/K:4096);
 *   - counters "bytes" (bytes moved per call: inputs + outputs, packed int4 as
 *     0.5 byte, scales and zero points included) and "ops" (2*M*N*K for a GEMM)
 *     are registered with RESQ_CTR_RATE, so the JSON holds bytes/s and ops/s;
 *   - the label is a ';'-separated list of key=value pairs: baseline=<name of
 *     the benchmark this one is compared against>, roof=<machine benchmark whose
 *     ops/s is this kernel's instruction ceiling>, impl=<what a library chose>.
 *
 * Skips: Google Benchmark 1.7.1 (Debian 12) has no State::SkipWithMessage (it
 * arrived in 1.8.0), only SkipWithError. resq_bench_skip() therefore reports an
 * error whose message starts with "skipped: "; bench/run_all lists those as
 * skipped (with the reason), every other error as a failure. */
#ifndef RESQ_BENCH_H
#define RESQ_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque: a benchmark::State behind the scenes. */
typedef struct resq_bench_state resq_bench_state;

/* The benchmark body. `params` points to the registration's private copy. */
typedef void (*resq_bench_fn)(resq_bench_state *st, const void *params);

/* Registration flags. */
enum {
  RESQ_BENCH_REAL_TIME = 1u << 0,  /* wall-clock time (use it for anything multi-threaded) */
  RESQ_BENCH_MANUAL_TIME = 1u << 1, /* time comes from resq_bench_set_iteration_time (CUDA events) */
  RESQ_BENCH_ONCE = 1u << 2         /* exactly one call, one repetition, whatever the command line says
                                       (offline stages that take seconds to minutes: PCA, GPTQ) */
};

/* Counter flags. */
enum {
  RESQ_CTR_PLAIN = 0,      /* reported as given */
  RESQ_CTR_RATE = 1u << 0, /* value per call; reported per second (bytes -> B/s, ops -> ops/s) */
  RESQ_CTR_AVG = 1u << 1   /* value summed over calls by the caller; reported per call */
};

/* The message prefix resq_bench_skip() uses (see the header comment). */
#define RESQ_BENCH_SKIP_PREFIX "skipped: "

/* Register `name`, running fn with a copy of params[0..params_size). */
void resq_bench_register(const char *name, resq_bench_fn fn, const void *params, size_t params_size,
                         unsigned flags);
/* Same, with named integer arguments appended to the name as /arg:value
 * (Google Benchmark's Args + ArgNames); read back with resq_bench_arg(). */
void resq_bench_register_args(const char *name, resq_bench_fn fn, const void *params,
                              size_t params_size, unsigned flags, const char *const *arg_names,
                              const int64_t *args, int nargs);

/* Argument i of a benchmark registered with resq_bench_register_args. */
int64_t resq_bench_arg(resq_bench_state *st, int i);
/* The timed loop: returns nonzero while another batch of `batch` calls is
 * wanted (KeepRunningBatch: one C call per batch, not per iteration). */
int resq_bench_keep_running(resq_bench_state *st, uint64_t batch);
/* Calls (iterations) done so far. */
uint64_t resq_bench_iterations(resq_bench_state *st);
/* With RESQ_BENCH_MANUAL_TIME: the measured time of the last iteration. */
void resq_bench_set_iteration_time(resq_bench_state *st, double seconds);
/* Stop/restart the clock around untimed work inside the loop (costly: avoid
 * in short iterations). */
void resq_bench_pause_timing(resq_bench_state *st);
void resq_bench_resume_timing(resq_bench_state *st);
/* Set counter `name` (see the RESQ_CTR_* flags). */
void resq_bench_counter(resq_bench_state *st, const char *name, double value, unsigned flags);
/* Free text shown next to the result and stored in the JSON as "label". */
void resq_bench_label(resq_bench_state *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Skip this benchmark with a reason (no device, unsupported shape): the body
 * must return without entering the timed loop. */
void resq_bench_skip(resq_bench_state *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Fail this benchmark (wrong result, library error); the body must return. */
void resq_bench_error(resq_bench_state *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Nonzero once resq_bench_skip/resq_bench_error was called. */
int resq_bench_failed(resq_bench_state *st);

/* A key/value pair for the "context" section of the JSON output (machine and
 * library facts: OpenBLAS core type, oneDNN ISA, thread placement). Call
 * before resq_bench_main. */
void resq_bench_context(const char *key, const char *value);

/* Parse Google Benchmark's flags (--benchmark_filter, --benchmark_out, ...),
 * run the selected benchmarks, shut down. Returns the process exit status:
 * 0, or 1 on an unrecognized argument. */
int resq_bench_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* RESQ_BENCH_H */
