// SPDX-License-Identifier: Apache-2.0
// bench/resq_bench_gb.cc -- the implementation of bench/resq_bench.h on top of
// Google Benchmark (the suite's only C++ source). Each registration keeps its
// own copy of the parameter bytes; the C body receives the benchmark::State as
// an opaque pointer.
#include "resq_bench.h"

#include <benchmark/benchmark.h>

#include <cstdarg>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

benchmark::State &S(resq_bench_state *st) { return *reinterpret_cast<benchmark::State *>(st); }

std::string vformat(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return std::string(fmt);
  std::vector<char> buf(static_cast<size_t>(n) + 1);
  std::vsnprintf(buf.data(), buf.size(), fmt, ap);
  return std::string(buf.data(), static_cast<size_t>(n));
}

benchmark::internal::Benchmark *do_register(const char *name, resq_bench_fn fn, const void *params,
                                            size_t params_size, unsigned flags) {
  // The copy lives as long as the registration (shared by the lambda copies
  // Google Benchmark makes).
  auto copy = std::make_shared<std::vector<unsigned char>>(params_size);
  if (params_size) {
    const unsigned char *p = static_cast<const unsigned char *>(params);
    copy->assign(p, p + params_size);
  }
  benchmark::internal::Benchmark *b = benchmark::RegisterBenchmark(
      name, [fn, copy](benchmark::State &state) {
        fn(reinterpret_cast<resq_bench_state *>(&state), copy->empty() ? nullptr : copy->data());
      });
  if (flags & RESQ_BENCH_MANUAL_TIME)
    b->UseManualTime();
  else if (flags & RESQ_BENCH_REAL_TIME)
    b->UseRealTime();
  if (flags & RESQ_BENCH_ONCE) {
    // a per-benchmark repetition count overrides --benchmark_repetitions
    b->Iterations(1);
    b->Repetitions(1);
  }
  b->Unit(benchmark::kMicrosecond);
  return b;
}

}  // namespace

extern "C" {

void resq_bench_register(const char *name, resq_bench_fn fn, const void *params, size_t params_size,
                         unsigned flags) {
  do_register(name, fn, params, params_size, flags);
}

void resq_bench_register_args(const char *name, resq_bench_fn fn, const void *params,
                              size_t params_size, unsigned flags, const char *const *arg_names,
                              const int64_t *args, int nargs) {
  benchmark::internal::Benchmark *b = do_register(name, fn, params, params_size, flags);
  if (nargs > 0) {
    std::vector<int64_t> a(args, args + nargs);
    std::vector<std::string> n;
    for (int i = 0; i < nargs; i++) n.emplace_back(arg_names ? arg_names[i] : "");
    b->Args(a);
    if (arg_names) b->ArgNames(n);
  }
}

int64_t resq_bench_arg(resq_bench_state *st, int i) { return S(st).range(static_cast<size_t>(i)); }

int resq_bench_keep_running(resq_bench_state *st, uint64_t batch) {
  return S(st).KeepRunningBatch(static_cast<benchmark::IterationCount>(batch ? batch : 1)) ? 1 : 0;
}

uint64_t resq_bench_iterations(resq_bench_state *st) {
  return static_cast<uint64_t>(S(st).iterations());
}

void resq_bench_set_iteration_time(resq_bench_state *st, double seconds) {
  S(st).SetIterationTime(seconds);
}

void resq_bench_pause_timing(resq_bench_state *st) { S(st).PauseTiming(); }
void resq_bench_resume_timing(resq_bench_state *st) { S(st).ResumeTiming(); }

void resq_bench_counter(resq_bench_state *st, const char *name, double value, unsigned flags) {
  benchmark::Counter::Flags f = benchmark::Counter::kDefaults;
  if (flags & RESQ_CTR_RATE)
    f = benchmark::Counter::kIsIterationInvariantRate;
  else if (flags & RESQ_CTR_AVG)
    f = benchmark::Counter::kAvgIterations;
  S(st).counters[name] = benchmark::Counter(value, f);
}

void resq_bench_label(resq_bench_state *st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vformat(fmt, ap);
  va_end(ap);
  S(st).SetLabel(s.c_str());
}

void resq_bench_skip(resq_bench_state *st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = RESQ_BENCH_SKIP_PREFIX + vformat(fmt, ap);
  va_end(ap);
  S(st).SkipWithError(s.c_str());
}

void resq_bench_error(resq_bench_state *st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vformat(fmt, ap);
  va_end(ap);
  S(st).SkipWithError(s.c_str());
}

int resq_bench_failed(resq_bench_state *st) { return S(st).error_occurred() ? 1 : 0; }

void resq_bench_context(const char *key, const char *value) {
  benchmark::AddCustomContext(key, value ? value : "");
}

int resq_bench_main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // extern "C"
