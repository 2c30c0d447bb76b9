#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# valgrind memcheck gate on the `resq` command: every stage on small valid
# inputs, and a set of bad inputs (malformed/truncated NPY, wrong dtype, shape
# mismatch, NaN, degenerate data, absurd sizes, failing output directory,
# failing writes, usage errors). Each run must be memcheck-clean: no invalid
# read/write, no use of uninitialised values, no definite or indirect leak
# (valgrind --error-exitcode), and must exit with the status the README gives
# (0 ok, 1 bad data, 2 bad usage).
#   ci/valgrind.sh            build (BUILD_DIR, default build-valgrind) and run all cases
# Environment: BUILD_DIR, JOBS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. ci/deps.sh
resq_need_packages cmake ninja-build gcc valgrind

BUILD_DIR=${BUILD_DIR:-build-valgrind}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
JOBS=${JOBS:-$(nproc)}
# RelWithDebInfo: the shipped -O2 of every target plus -g for readable reports
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRESQ_WERROR=ON -DRESQ_CUDA=OFF \
  -DRESQ_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" --target resq npy_tool
RESQ=$BUILD_DIR/ref/resq TOOL=$BUILD_DIR/verify/npy_tool

W=$(mktemp -d /tmp/resq_valgrind.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
VG=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --track-origins=yes --track-fds=no --quiet)
n=0 bad=0
# vg <want-exit> <name> resq-args...   (the valgrind log is shown on a failure)
vg() {
  local want=$1 name=$2; shift 2
  n=$((n + 1))
  local log="$W/vg.$n.log" rc
  set +e; "${VG[@]}" --log-file="$log" "$RESQ" "$@" >/dev/null 2>"$W/err.$n"; rc=$?; set -e
  if [ "$rc" -eq 99 ] || [ -s "$log" ]; then
    bad=$((bad + 1)); echo "FAIL (memcheck): $name"; sed 's/^/    /' "$log" | head -40
    echo "REPRO: (cd <inputs of ci/valgrind.sh> && valgrind --leak-check=full $RESQ $*)"
  elif [ "$rc" -ne "$want" ]; then
    bad=$((bad + 1)); echo "FAIL (exit $rc, want $want): $name: $(cat "$W/err.$n")"
    echo "REPRO: (cd <inputs of ci/valgrind.sh> && $RESQ $*)"
  else
    echo "ok   $name (exit $rc)"
  fi
}

# ---------------------------------------------------------------- inputs
"$TOOL" fill f16 8,128 randn:1 x.npy
"$TOOL" fill f32 8,128 randn:2 xf.npy
"$TOOL" fill u16 4,128 randn:3 xb.npy
"$TOOL" fill f16 6,96 randn:4 x96.npy
"$TOOL" fill f16 4,4,32 randn:5 kv.npy
"$TOOL" fill f32 32,128 randn:6 w.npy
"$TOOL" fill f16 32,128 randn:7 wh.npy
"$TOOL" fill i8 128 1 s.npy
"$TOOL" fill f32 32 0.5 b.npy
"$TOOL" fill f16 4,100 randn:8 x100.npy
"$TOOL" fill f16 2,128 nan xnan.npy
"$TOOL" fill f16 2,128 1.5 xc.npy
"$TOOL" fill f16 2,128 0 xz.npy
"$TOOL" fill f16 0,128 0 x0.npy
"$TOOL" fill f16 4,64 randn:9 x64.npy
"$TOOL" header f32 1099511627776,1099511627776 absurd.npy
"$TOOL" fill f16 524289,1 randn:10 mbig.npy
head -c 200 x.npy > trunc.npy
printf '\x93NUMPY\x01\x00\x10\x00{garbage}      \n' > garbage.npy
touch afile
mkdir -p taken/y.npy

# ---------------------------------------------------------------- good
vg 0 "hadamard f16"                 hadamard --x x.npy --out o1
vg 0 "hadamard f32 -> f16, signs"   hadamard --x xf.npy --signs s.npy --out-dtype f16 --out o2
vg 0 "hadamard bf16, n = 96"        hadamard --x x96.npy --sign-seed 3 --out o3
vg 0 "hadamard --weight output"     hadamard --x w.npy --weight input --out o4
vg 0 "quant-act per token"          quant-act --x x.npy --out qa
vg 0 "quant-act grouped, f32"       quant-act --x xf.npy --group 32 --r 4 --out o5
vg 0 "quant-act bf16 path B"        quant-act --x xb.npy --mode path-b-bf16 --out o6
vg 0 "quant-act zero tokens"        quant-act --x x0.npy --out o7
vg 0 "quant-act constant rows"      quant-act --x xc.npy --out o8
vg 0 "quant-kv 3-D"                 quant-kv --x kv.npy --head-dim 32 --out o9
vg 0 "quant-weight"                 quant-weight --w w.npy --out qw
vg 0 "quant-weight --mse"           quant-weight --w w.npy --mse --r 0 --out o10
vg 0 "gemm mixed"                   gemm --xq qa --wq qw --k 128 --bias b.npy --out o11
vg 0 "gemm FP16"                    gemm --x x.npy --w wh.npy --out-dtype f32 --out o12
vg 0 "pca two files"                pca --x x.npy,xb.npy --r 16 --seed 2 --out o13
vg 0 "gptq act-order"               gptq --w w.npy --x x.npy,xf.npy --act-order --out o14
vg 0 "gptq group-size, mse"         gptq --w w.npy --x x.npy --group-size 16 --bits-lo 3 --mse --out o15
vg 0 "fuse input side, U of pca"   fuse --w w.npy --u o13/U.npy --side input --out o16
vg 0 "help"                         --help
vg 0 "stage help"                   gptq --help
vg 0 "version"                      --version
# ---------------------------------------------------------------- bad data (exit 1)
vg 1 "missing file"                 hadamard --x none.npy --out b1
vg 1 "truncated NPY"                quant-act --x trunc.npy --out b2
vg 1 "malformed header"             quant-kv --x garbage.npy --head-dim 32 --out b3
vg 1 "absurd shape"                 pca --x absurd.npy --out b4
vg 1 "wrong dtype (i8 as x)"        quant-act --x s.npy --out b5
vg 1 "unsupported n"                hadamard --x x100.npy --out b6
vg 1 "signs shape mismatch"         hadamard --x x96.npy --signs s.npy --out b7
vg 1 "NaN activations"              quant-act --x xnan.npy --out b8
vg 1 "NaN calibration (2nd file)"   gptq --w w.npy --x x.npy,xnan.npy --out b9
vg 1 "K differs (pca)"              pca --x x.npy,x64.npy --out b10
vg 1 "K % group"                    quant-act --x x.npy --group 48 --out b11
vg 1 "path-B constant part"         quant-act --x xc.npy --mode path-b-bf16 --out b12
vg 1 "all-zero calibration"         pca --x xz.npy --out b13
vg 1 "no tokens (pca)"              pca --x x0.npy --out b14
vg 1 "gemm output > 1 TiB"          gemm --x mbig.npy --w mbig.npy --out b15
vg 1 "gemm operands disagree"       gemm --xq qa --wq qw --k 64 --out b16
vg 1 "--out is a file"              quant-act --x x.npy --out afile
vg 1 "--out not creatable"          quant-act --x x.npy --out /proc/resq_no
vg 1 "commit onto a directory name" quant-act --x x.npy --out taken
# ---------------------------------------------------------------- bad usage (exit 2)
vg 2 "unknown stage"                frobnicate
vg 2 "unknown option"               quant-act --x x.npy --bogus 1 --out u1
vg 2 "missing value"                hadamard --x
vg 2 "repeated option"              hadamard --x x.npy --x x.npy --out u2
vg 2 "out-of-range integer"         quant-act --x x.npy --bits-lo 9 --out u3
vg 2 "empty file list entry"        pca --x x.npy,,x.npy --out u4

echo "ci/valgrind.sh: $n runs, $bad failure(s)"
[ "$bad" -eq 0 ] && [ "$n" -gt 0 ]
