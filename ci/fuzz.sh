#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fuzz gate: libFuzzer (clang, with ASan + UBSan, every finding fatal) on
#   fuzz_npy  the NPY reader (ref/src/npy.c), in memory and through a file
#   fuzz_cli  the `resq` command's argument parsing and input validation
# for a bounded time each (both targets run at once, one per core), starting
# from the seed corpus in verify/fuzz/corpus/<target>/ and every earlier crash
# in verify/fuzz/regress/<target>/. A crash, leak, timeout or out-of-memory is
# copied into verify/fuzz/regress/<target>/ (commit it with the fix: the ctest
# entries fuzz_<target>_replay replay that directory in every normal build) and
# fails the gate with a REPRO line.
#
#   ci/fuzz.sh [--time S] [--target npy|cli] [--merge]
#     --time S     seconds per target (default 60; env FUZZ_SECONDS)
#     --target T   only one target (default both)
#     --merge      afterwards, add the new inputs that grew coverage to the
#                  committed seed corpus (minimized with -merge=1)
# Environment: BUILD_DIR (default build-fuzz), CC (default clang), JOBS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. ci/deps.sh
resq_need_packages clang libclang-rt-14-dev

SECS=${FUZZ_SECONDS:-60} TARGETS="npy cli" MERGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --time) SECS=$2; shift ;;
    --target) TARGETS=$2; shift ;;
    --merge) MERGE=1 ;;
    -h|--help) sed -n '3,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ci/fuzz.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
B=${BUILD_DIR:-build-fuzz}
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
JOBS=${JOBS:-$(nproc)}
CC=${CC:-clang}

# ---------------------------------------------------------------- build
# The suite's warning and numerics flags (CMakeLists.txt RESQ_C_FLAGS), -O1 -g
# for readable stacks; the library objects get coverage instrumentation
# (fuzzer-no-link), the targets link libFuzzer's main.
WARN="-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wno-missing-field-initializers -Werror"
NUM="-ffp-contract=off -fno-fast-math -fno-math-errno"
SAN="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer"
CFLAGS="$WARN $NUM $SAN -O1 -g -Iref/include -Iref/src"
mkdir -p "$B/obj/ref" "$B/obj/cli"
t0=$(date +%s)
compile() { # src obj extra-flags...
  local src=$1 obj=$2; shift 2
  "$CC" $CFLAGS -fsanitize=fuzzer-no-link "$@" -c "$src" -o "$obj"
}
export -f compile; export CC CFLAGS
# everything is rebuilt when any source, header or this script is newer than the last build
if [ ! -f "$B/.stamp" ] || [ -n "$(find ref verify/fuzz/*.c ci/fuzz.sh -newer "$B/.stamp" -print -quit)" ]; then
  rm -f "$B"/obj/ref/*.o "$B"/obj/cli/*.o "$B"/obj/*.o
  {
    for f in ref/src/*.c; do echo "$f $B/obj/ref/$(basename "${f%.c}").o"; done
    # the command's sources; resq.c itself through verify/fuzz/resq_main.c (main -> resq_main)
    for f in ref/cli/*.c; do
      [ "$(basename "$f")" = resq.c ] || echo "$f $B/obj/cli/$(basename "${f%.c}").o"
    done
    echo "verify/fuzz/resq_main.c $B/obj/cli/resq_main.o -DRESQ_VERSION_STRING=\\\"fuzz\\\""
    for t in npy cli; do echo "verify/fuzz/fuzz_$t.c $B/obj/fuzz_$t.o"; done
  } | xargs -P "$JOBS" -L 1 bash -c 'compile "$@"' _
  touch "$B/.stamp"
fi
"$CC" $CFLAGS -fsanitize=fuzzer "$B"/obj/ref/*.o "$B/obj/fuzz_npy.o" -lm -o "$B/fuzz_npy"
"$CC" $CFLAGS -fsanitize=fuzzer "$B"/obj/ref/*.o "$B"/obj/cli/*.o "$B/obj/fuzz_cli.o" -lm -o "$B/fuzz_cli"
echo "ci/fuzz.sh: built $B/fuzz_npy $B/fuzz_cli in $(( $(date +%s) - t0 ))s"

# ---------------------------------------------------------------- run
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
declare -A maxlen=([npy]=4096 [cli]=512)
pids=()
for t in $TARGETS; do
  [ -f "verify/fuzz/fuzz_$t.c" ] || { echo "ci/fuzz.sh: unknown target '$t'" >&2; exit 2; }
  rm -rf "$B/artifacts/$t"
  mkdir -p "$B/artifacts/$t" "$B/corpus/$t"
  # fuzz_cli changes into its sandbox directory: every path given here is absolute.
  # -close_fd_mask=3: the targets' own stdout/stderr are closed (the command prints one
  # error line per input); libFuzzer's reports and the sanitizers' still appear.
  "$B/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len="${maxlen[$t]}" \
    -dict="$ROOT/verify/fuzz/$t.dict" -artifact_prefix="$B/artifacts/$t/" -close_fd_mask=3 \
    -print_final_stats=1 "$B/corpus/$t" "$ROOT/verify/fuzz/corpus/$t" "$ROOT/verify/fuzz/regress/$t" \
    >"$B/fuzz_$t.log" 2>&1 &
  pids+=("$t:$!")
done
fail=0
for tp in "${pids[@]}"; do
  t=${tp%%:*} pid=${tp#*:}
  set +e; wait "$pid"; rc=$?; set -e
  # (no "cov:" line when the very first input crashes: || true, or pipefail ends the script)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/fuzz_$t.log" | tail -1 || true)
  cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*" "$B/fuzz_$t.log" | tail -1 || true)
  found=$(find "$B/artifacts/$t" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    fail=1
    echo "ci/fuzz.sh: fuzz_$t FAILED (exit $rc) after ${execs:-?} runs; log: $B/fuzz_$t.log"
    grep -E "ERROR: |runtime error:|property failed|SUMMARY" "$B/fuzz_$t.log" | head -5 | sed 's/^/  /'
    for f in $found; do
      cp "$f" "verify/fuzz/regress/$t/"
      echo "REPRO: $B/fuzz_$t verify/fuzz/regress/$t/$(basename "$f")   # or: ctest -R fuzz_${t}_replay (normal build)"
    done
  else
    echo "ci/fuzz.sh: fuzz_$t ok: ${execs:-?} runs in ${SECS}s, $cov (new corpus units: $B/corpus/$t)"
  fi
done
if [ "$MERGE" = 1 ] && [ "$fail" = 0 ]; then
  for t in $TARGETS; do
    "$B/fuzz_$t" -merge=1 -close_fd_mask=3 -max_len="${maxlen[$t]}" "$ROOT/verify/fuzz/corpus/$t" "$B/corpus/$t" \
      >"$B/merge_$t.log" 2>&1
    echo "ci/fuzz.sh: merged into verify/fuzz/corpus/$t: $(grep -oE 'MERGE-OUTER: [0-9]+ new files' "$B/merge_$t.log" | tail -1)"
  done
fi
exit $fail
