#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/tests/run_all_smoke_test.sh -- bench/run_all end to end on a few small
# benchmarks of every program in a build (quick set, 1 repetition, 8 MiB cold
# working set, no package installation, no layer error), so that a change in a
# kernel, a benchmark or the report scripts that breaks the main job fails ctest.
# Every benchmark still checks its result against the reference first (run_all
# exits non-zero on a failed check). Timing values are meaningless here.
# usage: run_all_smoke_test.sh <source dir> <build dir> <scratch dir>
set -euo pipefail
SRC=$1 BUILD=$2 W=$3
rm -rf "$W"
filter='M:1/N:1024/K:4096|/rows:1/|/rows:1$|/d:256/|/d:256$|/K:256/|/N:256/|/batch:1/ctx:1|^memcpy'
set +e
RESQ_BENCH_COLD_BYTES=8M RESQ_CUDA=OFF bash "$SRC/bench/run_all" --quick --no-build --no-deps --no-layer-error \
  --build-dir "$BUILD" --out "$W" --filter "$filter" --reps 1 --min-time 0.01 >"$W.log" 2>&1
rc=$?
set -e
tail -25 "$W.log"
fail=0
[ "$rc" -eq 0 ] || { echo "FAILED: run_all exited $rc (log $W.log)"; fail=1; }
# the families that must have run (not vacuous: the filter matched and the checks passed)
for fam in gemm_q4q8_f16__cpu gemm_bf16_f32__onednn gemm_u8s8_f32__onednn hadamard_f16__cpu quant_act_f16_q4q8__cpu \
           hadamard_quant_act_f16_q4q8__cpu pca_basis_f64__cpu gptq_f64__cpu layer_decode_q4q8__cpu layer_decode_f16__cpu; do
  [ -x "$BUILD/bench/bench_gemm_cpu" ] || break
  case "$fam" in *onednn) grep -q 'resq_gemm_baselines.*oneDNN bf16' "$W/context.tsv" 2>/dev/null || continue ;; esac
  # oneDNN 2.x has no bf16 matmul on CPUs without AVX-512 (AVX2 Zen 3 here): its
  # context probe (64 x 256 x 256) says so, and then a skip is the right outcome
  if [ "$fam" = gemm_bf16_f32__onednn ] &&
     awk -F'\t' '$2 == "onednn_impl_bf16" && $3 ~ /^skipped: oneDNN has no bf16 matmul/ { f = 1 } END { exit !f }' "$W/context.tsv"; then
    if awk -F'\t' -v f="$fam" '$3 == f && $7 == "skipped" { s = 1 } $3 == f && $7 != "skipped" { o = 1 } END { exit !(s && !o) }' "$W/results.tsv"; then
      echo "skipped (as it must be): $fam, this CPU has no oneDNN bf16 matmul ($(awk -F'\t' '$2 == "onednn_effective_isa" { print $3; exit }' "$W/context.tsv"))"
      continue
    fi
  fi
  if awk -F'\t' -v f="$fam" '$3 == f && $7 == "ok" { ok = 1 } END { exit !ok }' "$W/results.tsv" 2>/dev/null; then
    echo "ok: $fam ran and passed its check"
  else
    echo "FAILED: $fam did not run ok (results $W/results.tsv; REPRO: bench/tests/run_all_smoke_test.sh . $BUILD $W)"
    fail=1
  fi
done
for f in report.md gemm.tsv speedup.tsv layer.tsv; do
  [ -s "$W/$f" ] || { echo "FAILED: $W/$f missing or empty"; fail=1; }
done
[ "$fail" = 0 ] && echo "run_all_smoke_test: passed"
exit "$fail"
