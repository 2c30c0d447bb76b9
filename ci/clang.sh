#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Second-compiler gate: build ref/, cpu/, verify/ and the `resq` command with clang
# (Release, the suite's warnings as errors, -ffp-contract=off as in every build), then run
# the whole ctest suite on that build. The CPU backend's AVX-512/AVX2/AMX kernels take their
# target from pragmas that differ between GCC and clang (cpu/src/cpu_internal.h), clang checks
# intrinsics' immediates before inlining, and its warnings differ from GCC's: this gate keeps
# both compilers building the product, and bit-exact against the reference (the same tests).
#   ci/clang.sh [ctest args...]           e.g.  ci/clang.sh -L cpu
# Environment: BUILD_DIR (default build-clang), JOBS (default nproc).
# Not part of this build: CUDA (nvcc's host compiler stays GCC) and bench/ (C++ over
# Debian's libbenchmark, built by ci/test and bench/run_all with the default compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/deps.sh
resq_need_packages cmake ninja-build clang python3 python3-numpy liblapack-dev libopenblas-dev

BUILD_DIR=${BUILD_DIR:-build-clang}
JOBS=${JOBS:-$(nproc)}
clang --version | head -1
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESQ_WERROR=ON -DRESQ_CUDA=OFF \
  -DRESQ_BUILD_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
# golden_regen is Python only (nothing compiled by clang); every other test runs.
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j "$JOBS" -LE gpu -E "^golden_regen\$" "$@"
