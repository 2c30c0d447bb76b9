#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `resq layer` and `resq layer-error` end to end (ref/CONTRACT.md s.14):
#  - layer-error on the test config writes a table and a TSV (header + one row per method)
#    and --dump writes the synthetic layer as `resq layer` inputs;
#  - `resq layer` on the dumped files: FP16 form, and ResQ / fp32 whose err.npy equals the
#    layer-error row of the same method (same data, same seed, same pipeline) to 6 decimals;
#  - bad inputs: exit status 1 (bad data) or 2 (bad usage), one "resq <stage>: error:" line,
#    no files in the output directory.
# usage: layer_cli_test.sh <resq> <npy_tool>
set -u
RESQ=$1 TOOL=$2
T=$(mktemp -d /tmp/resq_layer_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
checks=0 fails=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; echo "REPRO: $0 $RESQ $TOOL   # case: $*"; }

# expect_error <name> <want-exit> <stage> <out-dir> <cmd...>
expect_error() {
  local name=$1 want=$2 stage=$3 out=$4; shift 4
  "$@" > /dev/null 2> "$T/stderr.txt"; local rc=$?
  local err; err=$(cat "$T/stderr.txt")
  local lines; lines=$(printf '%s\n' "$err" | grep -c .)
  if [ "$rc" -ne "$want" ]; then fail "$name: exit $rc, want $want ($err)"; return; fi
  if [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -q "^resq $stage: error: "; then
    fail "$name: stderr is not one 'resq $stage: error:' line: $err"; return; fi
  if [ -n "$out" ] && [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then fail "$name: left files in $out: $(ls -A "$out")"; return; fi
  ok; echo "ok   $name -> $err"
}

# the f64 value stored last in an NPY file, printed with 6 decimals
npy_last_f64() { od -An -t f8 -j $(( $(stat -c %s "$1") - 8 )) "$1" | awk '{printf "%.6f", $1}'; }

"$RESQ" layer --help | grep -q "^outputs" && ok || fail "resq layer --help documents its outputs"
"$RESQ" layer-error --help | grep -q "Columns: method config" && ok || fail "resq layer-error --help documents the TSV"
"$RESQ" --help | grep -q "layer-error" && ok || fail "resq --help lists layer-error"

# ---------------------------------------------------------------- layer-error + dump
if "$RESQ" layer-error --config test --tokens 16 --calib-seqs 2 --seed 0 --w-clip off --tsv "$T/le.tsv" \
     --dump "$T/dump" > "$T/le.out" 2> "$T/le.err"; then ok; else fail "layer-error on the test config: $(cat "$T/le.err")"; fi
cat "$T/le.out"
[ "$(head -1 "$T/le.tsv" | tr '\t' '\n' | wc -l)" -eq 17 ] && ok || fail "TSV header has 17 columns"
[ "$(tail -n +2 "$T/le.tsv" | wc -l)" -eq 4 ] && ok || fail "TSV has one row per method (4)"
awk -F'\t' 'NR > 1 && (NF != 17 || $15 + 0 != $15 || $15 < 0) { bad = 1 } END { exit bad }' "$T/le.tsv" \
  && ok || fail "every TSV row has 17 fields and a finite err >= 0"
for m in fp32 resq quarot rtn; do
  grep -q "^$m " "$T/le.out" && ok || fail "table row for $m"
done
for f in wq wk wv wo wg wu wd ln1 ln2 h calib; do
  [ -f "$T/dump/$f.npy" ] && ok || fail "--dump wrote $f.npy"
done
[ "$("$TOOL" info "$T/dump/calib.npy")" = "f16 2,16,256" ] && ok || fail "calib.npy is f16 [2, 16, 256] ($("$TOOL" info "$T/dump/calib.npy"))"
"$RESQ" layer-error --config test --tokens 16 --calib-seqs 2 --seed 0 --w-clip off --methods rtn --tsv "$T/le.tsv" \
  --append > /dev/null 2>&1 && [ "$(wc -l < "$T/le.tsv")" -eq 6 ] && ok || fail "--append adds one row without a header"

# ---------------------------------------------------------------- resq layer on the dump
W="$T/dump"
if "$RESQ" layer --weights "$W" --h "$W/h.npy" --config test --out "$T/o16" > /dev/null 2>&1 \
   && [ "$("$TOOL" info "$T/o16/h_out.npy")" = "f16 16,256" ]; then ok; else fail "resq layer fp16 writes h_out.npy f16 [16, 256]"; fi
if "$RESQ" layer --weights "$W" --h "$W/h.npy" --heads 4 --kv-heads 2 --out "$T/o16b" > /dev/null 2>&1 \
   && "$TOOL" cmp "$T/o16/h_out.npy" "$T/o16b/h_out.npy"; then ok; else fail "--heads/--kv-heads gives the same as --config test"; fi
for m in fp32 resq; do
  if "$RESQ" layer --weights "$W" --h "$W/h.npy" --calib "$W/calib.npy" --config test --method $m --seed 0 \
       --w-clip off --out "$T/o_$m" > "$T/o_$m.out" 2> "$T/o_$m.err"; then
    got=$(npy_last_f64 "$T/o_$m/err.npy")
    want=$(awk -F'\t' -v m=$m '$1 == m { print $15; exit }' "$T/le.tsv")
    [ "$got" = "$want" ] && ok || fail "resq layer --method $m err $got equals layer-error's $want"
  else
    fail "resq layer --method $m: $(cat "$T/o_$m.err")"
  fi
done
[ -f "$T/o_resq/U.npy" ] && [ "$("$TOOL" info "$T/o_resq/U.npy")" = "f64 256,256" ] && ok || fail "resq writes U.npy f64 [256, 256]"
[ "$("$TOOL" info "$T/o_resq/h_out_basis.npy")" = "f16 16,256" ] && ok || fail "resq writes h_out_basis.npy"

# ---------------------------------------------------------------- bad inputs
mkdir -p "$T/wmiss" "$T/wshape"
cp "$W"/*.npy "$T/wmiss/" && rm "$T/wmiss/wv.npy"
cp "$W"/*.npy "$T/wshape/" && cp "$W/wq.npy" "$T/wshape/wk.npy"
"$TOOL" fill f16 16,256 nan "$T/hnan.npy"
"$TOOL" fill f16 16,255 0.5 "$T/hshape.npy"
expect_error "missing wv.npy" 1 layer "$T/e1" "$RESQ" layer --weights "$T/wmiss" --h "$W/h.npy" --config test --out "$T/e1"
expect_error "wk.npy of wq's shape" 1 layer "$T/e2" "$RESQ" layer --weights "$T/wshape" --h "$W/h.npy" --config test --out "$T/e2"
expect_error "NaN input" 1 layer "$T/e3" "$RESQ" layer --weights "$W" --h "$T/hnan.npy" --config test --out "$T/e3"
expect_error "input with 255 channels" 1 layer "$T/e4" "$RESQ" layer --weights "$W" --h "$T/hshape.npy" --config test --out "$T/e4"
expect_error "config that does not match" 1 layer "$T/e5" "$RESQ" layer --weights "$W" --h "$W/h.npy" --config llama2-7b --out "$T/e5"
expect_error "resq without --calib" 2 layer "$T/e6" "$RESQ" layer --weights "$W" --h "$W/h.npy" --config test --method resq --out "$T/e6"
expect_error "unknown method" 2 layer "$T/e7" "$RESQ" layer --weights "$W" --h "$W/h.npy" --config test --method awq --out "$T/e7"
expect_error "NaN calibration" 1 layer "$T/e8" "$RESQ" layer --weights "$W" --h "$W/h.npy" --calib "$T/hnan.npy" --config test --method resq --out "$T/e8"
expect_error "unknown config" 2 layer-error "" "$RESQ" layer-error --config llama9
expect_error "unknown method in --methods" 2 layer-error "" "$RESQ" layer-error --methods resq,gptq
expect_error "--append without --tsv" 2 layer-error "" "$RESQ" layer-error --append

echo "layer_cli_test: $checks checks, $fails failures"
[ "$checks" -gt 0 ] && [ "$fails" -eq 0 ]
