#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sanitizer gate: build ref/, cpu/, verify/ (and the `resq` command) with
# AddressSanitizer + UndefinedBehaviorSanitizer, every finding fatal
# (-fno-sanitize-recover=all), then run the whole ctest suite on that build.
#   ci/sanitize.sh [--quick] [ctest args...]       e.g.  ci/sanitize.sh -R npy
#   --quick: leave out the five tests that take over a minute under the sanitizers
#            (Hadamard/layer-prepare property sweeps, the CPU GEMM sweep, the layer CLI);
#            their code paths run in smaller cases of other tests. The full run is the
#            default. golden_regen (Python only: nothing instrumented) never runs here.
# Environment: BUILD_DIR (default build-sanitize), JOBS (default nproc),
#              CC (default gcc; clang works too).
# The CUDA backend and the benchmarks are not part of this build (RESQ_CUDA=OFF,
# RESQ_BUILD_BENCH=OFF): device code cannot run under ASan here, and bench/ is
# C++ over Google Benchmark (not instrumented in Debian's libbenchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
EXCLUDE="^golden_regen\$"
if [ "${1:-}" = --quick ]; then
  shift
  EXCLUDE="$EXCLUDE|^hadamard_f32__ref_props\$|^gemm_q4q8_f16__cpu\$|^layer_prepare_f32__ref_(props|bounds)\$|^layer_cli\$"
fi
. ci/deps.sh
resq_need_packages cmake ninja-build gcc python3 python3-numpy liblapack-dev libopenblas-dev

BUILD_DIR=${BUILD_DIR:-build-sanitize}
JOBS=${JOBS:-$(nproc)}
SAN="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
# GCC's -Wmaybe-uninitialized is unreliable on instrumented code (GCC documents that -fsanitize
# may cause false warnings; here it flags a malloc'd buffer filled right before use in
# ref/src/resq_layer_error_f64__ref.c): it stays a warning in this build. Every other warning
# is an error, and the normal build (ci/test, -Werror) keeps the check fatal.
SAN="$SAN -Wno-error=maybe-uninitialized"
# -O2 stays (each target sets it): the tests run at the optimization level
# they are shipped with, and ASan still sees every access at -O2.
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRESQ_WERROR=ON -DRESQ_CUDA=OFF \
  -DRESQ_BUILD_BENCH=OFF -DCMAKE_C_COMPILER="${CC:-gcc}" \
  -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined,float-cast-overflow" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"

# abort_on_error=0 + exitcode: a finding is a test failure with the report in the
# test's output; detect_leaks: leaks are findings too. UBSan prints the stack.
# (detect_stack_use_after_return stays off, the runtime's default: a fake stack frame per
# call is its costliest check; ASAN_OPTIONS=detect_stack_use_after_return=1 adds it)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=98${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j "$JOBS" -LE gpu -E "$EXCLUDE" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -cE "Test +#[0-9]+: .* Passed" "$log" || true)
findings=$(grep -cE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log" || true)
echo "ci/sanitize.sh: $passed passed, $findings sanitizer finding(s), ctest exit $rc"
if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then exit 1; fi
[ "$passed" -gt 0 ] || { echo "ci/sanitize.sh: FAILED: no test passed" >&2; exit 1; }
