#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Accuracy gate: the error figures of every stage and backend on the golden cases
# (verify/golden_test, verify/golden_cpu_test) and on the generated cases
# (verify/golden_synth), and the layer error when `resq layer-error` exists,
# compared with the committed baseline ci/baselines/accuracy.tsv by the rules of
# ci/gate_accuracy.awk (documented in ci/README.md). Any regression fails with the
# case, the old and the new figure and a REPRO line.
#
#   ci/gate_accuracy.sh [--build DIR] [--baseline FILE] [--out FILE] [--update]
#     --build DIR     a configured and built tree (default $BUILD_DIR or build)
#     --out FILE      keep this run's figures (TSV)
#     --update        write this run's figures to the baseline instead of comparing
#                     (only after reviewing why they changed)
# Runs from the repository root; needs only bash, awk and the built programs.
set -euo pipefail
cd "$(dirname "$0")/.."

B=${BUILD_DIR:-build}
BASE=ci/baselines/accuracy.tsv
OUT=
UPDATE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) B=$2; shift 2 ;;
    --baseline) BASE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --update) UPDATE=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gate_accuracy: unknown argument $1" >&2; exit 2 ;;
  esac
done
for p in verify/golden_test verify/golden_cpu_test verify/golden_synth ref/resq; do
  if [ ! -x "$B/$p" ]; then
    echo "gate_accuracy: $B/$p is missing: configure and build first (cmake -S . -B $B ... && cmake --build $B)" >&2
    exit 2
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cur=$tmp/accuracy.tsv
printf 'stage\tbackend\tcase\tmetric\tvalue\tn\trepro\n' > "$cur"
failed=()

# run NAME CMD...: the program's own checks must pass too; its log tail is shown if not
run() {
  local name=$1
  shift
  if ! "$@" > "$tmp/$name.log" 2>&1; then
    failed+=("$name")
    echo "gate_accuracy: $name FAILED its checks:"
    grep -E "^(FAIL|REPRO)" "$tmp/$name.log" | head -20 || true
    tail -3 "$tmp/$name.log"
  fi
}

for st in hadamard_f16 quant_act_f16_q4q8 quant_kv_f16_q4q8 quant_weight_f32 gemm_q4q8_f16 gemm_f16 gptq_f64 pca_f64 \
          layer_fp16_f16 layer_q4q8_f16; do
  run "golden_test:$st" "$B/verify/golden_test" --golden golden --stage "$st" --metrics "$cur"
done
for st in hadamard_f16 quant_act_f16_q4q8 quant_kv_f16_q4q8 gemm_q4q8_f16 gemm_f16 layer_fp16_f16 layer_q4q8_f16; do
  run "golden_cpu_test:$st" "$B/verify/golden_cpu_test" --golden golden --stage "$st" --metrics "$cur"
done
run golden_synth "$B/verify/golden_synth" --metrics "$cur"

# The layer error of CONTRACT s.14 (ResQ / QuaRot-style / RTN vs FP16), once `resq
# layer-error` exists: its TSV (a header naming at least the columns method and err;
# config and tokens when present) becomes one figure per method.
if "$B/ref/resq" layer-error --help > /dev/null 2>&1; then
  le=$tmp/layer_error.tsv
  if "$B/ref/resq" layer-error --config test --tsv "$le" > "$tmp/layer_error.log" 2>&1 && [ -s "$le" ]; then
    awk -F'\t' -v prog="$B/ref/resq layer-error --config test" '
      NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
      !("method" in col) || !("err" in col) { print "bad header" > "/dev/stderr"; exit 1 }
      { cfg = ("config" in col) ? $col["config"] : "test"; tok = ("tokens" in col) ? $col["tokens"] : 0;
        printf("layer\tref\t%s\terr_%s\t%s\t%s\t%s\n", cfg, $col["method"], $col["err"], tok, prog) }' "$le" >> "$cur" ||
      failed+=("resq layer-error (unexpected TSV)")
  else
    failed+=("resq layer-error")
    tail -5 "$tmp/layer_error.log"
  fi
else
  echo "gate_accuracy: 'resq layer-error' is not built in this tree: no layer-error figures"
fi

[ -n "$OUT" ] && cp "$cur" "$OUT"
rows=$(($(wc -l < "$cur") - 1))
if [ "$UPDATE" = 1 ]; then
  if [ ${#failed[@]} -gt 0 ]; then
    echo "gate_accuracy: not updating the baseline: ${failed[*]} failed" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$BASE")"
  cut -f1-6 "$cur" > "$BASE"
  echo "gate_accuracy: wrote $rows figures to $BASE"
  exit 0
fi
if [ ! -f "$BASE" ]; then
  echo "gate_accuracy: no baseline $BASE (create it with --update)" >&2
  exit 1
fi
rc=0
# on a CPU without AVX-512 VNNI the cpu-avx512 figures cannot be measured: not a regression
noavx=0
grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null || noavx=1
awk -F'\t' -v noavx512="$noavx" -f ci/gate_accuracy.awk "$BASE" "$cur" || rc=1
if [ ${#failed[@]} -gt 0 ]; then
  echo "gate_accuracy: FAILED: ${failed[*]}"
  rc=1
fi
[ $rc = 0 ] && echo "gate_accuracy: PASSED ($rows figures)"
exit $rc
