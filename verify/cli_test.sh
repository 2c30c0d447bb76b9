#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The `resq` command end to end: every golden case run through the CLI must give
# the golden outputs byte for byte, and every bad input must give exit status 1
# or 2, one "resq <stage>: error:" line, and no files in the output directory.
# usage: cli_test.sh <resq> <npy_tool> <golden-dir>
set -u
RESQ=$1 TOOL=$2 GOLDEN=$3
T=$(mktemp -d /tmp/resq_cli_test.XXXXXX)
trap 'rm -rf "$T"' EXIT
checks=0 fails=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; echo "REPRO: $0 $RESQ $TOOL $GOLDEN   # case: $*"; }

# expect_error <name> <want-exit> <stage-tag> <out-dir> <cmd...>
expect_error() {
  local name=$1 want=$2 tag=$3 out=$4; shift 4
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  local lines; lines=$(printf '%s\n' "$err" | grep -c .)
  if [ "$rc" -ne "$want" ]; then fail "$name: exit $rc, want $want ($err)"; return; fi
  if [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -q "^resq${tag}error: "; then
    fail "$name: stderr is not one resq${tag}error: line: $err"; return; fi
  if [ -n "$out" ] && [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then fail "$name: left files in $out: $(ls -A "$out")"; return; fi
  ok; echo "ok   $name -> $err"
}

param() { printf '%s' "$1" | tr ';' '\n' | sed -n "s/^$2=//p"; }

# ---------------------------------------------------------------- help and usage
"$RESQ" --help | grep -q "quant-kv" && ok || fail "resq --help lists the stages"
for s in hadamard quant-act quant-kv; do
  "$RESQ" "$s" --help | grep -q "outputs" && ok || fail "resq $s --help documents its outputs"
done
"$RESQ" --version | grep -q "^resq " && ok || fail "resq --version"

# ---------------------------------------------------------------- golden cases through the CLI
manifest="$GOLDEN/MANIFEST.tsv"
[ -f "$manifest" ] || { echo "FAIL: no $manifest"; exit 1; }
ncase=0
while IFS=$'\t' read -r stage case file role dtype shape seed params sha; do
  [ "$role" = in ] || continue
  case "$(basename "$file")" in x.npy) ;; *) continue ;; esac
  dir=$GOLDEN/$(dirname "$file"); out=$T/$stage.$case
  mode=$(param "$params" mode); [ -n "$mode" ] || mode=path-a
  case $stage in
    hadamard_f16)
      args=(hadamard --x "$dir/x.npy"); [ -f "$dir/signs.npy" ] && args+=(--signs "$dir/signs.npy")
      "$RESQ" "${args[@]}" --out "$out.f32" --out-dtype f32 && "$RESQ" "${args[@]}" --out "$out.f16" \
        && "$TOOL" cmp "$out.f32/y.npy" "$dir/y_f32.npy" && "$TOOL" cmp "$out.f16/y.npy" "$dir/y_f16.npy" \
        && ok || fail "hadamard golden case $case through the CLI"
      ;;
    quant_act_f16_q4q8|quant_kv_f16_q4q8)
      common=(--r "$(param "$params" r)" --bits-lo "$(param "$params" bits_lo)" --bits-hi "$(param "$params" bits_hi)"
              --clip "$(param "$params" clip)" --mode "$mode" --out "$out")
      if [ "$stage" = quant_act_f16_q4q8 ]; then
        "$RESQ" quant-act --x "$dir/x.npy" --group "$(param "$params" group)" "${common[@]}" 2>"$out.err"
      else
        "$RESQ" quant-kv --x "$dir/x.npy" --head-dim "$(param "$params" hd)" "${common[@]}" 2>"$out.err"
      fi
      rc=$?
      good=$([ $rc -eq 0 ] && echo 1 || echo 0)
      for f in q_lo q_hi scale_lo zero_lo scale_hi zero_hi y order; do
        [ -f "$dir/$f.npy" ] || continue
        if [ "$stage" = quant_kv_f16_q4q8 ]; then
          # the CLI writes [T, H, .] arrays; the goldens are 2-D views of the same bytes
          "$TOOL" cmpdata "$out/$f.npy" "$dir/$f.npy" || good=0
        else
          "$TOOL" cmp "$out/$f.npy" "$dir/$f.npy" || good=0
        fi
      done
      [ $good = 1 ] && ok || fail "$stage golden case $case through the CLI ($(cat "$out.err"))"
      ;;
  esac
  ncase=$((ncase + 1))
done < <(tail -n +2 "$manifest")
[ $ncase -ge 10 ] && ok || fail "at least 10 golden cases ran through the CLI (got $ncase)"
echo "ran $ncase golden cases through the CLI"

# ---------------------------------------------------------------- bad inputs
"$TOOL" fill f16 4,64 randn:1 "$T/x64.npy"
"$TOOL" fill f16 4,100 randn:1 "$T/x100.npy"
"$TOOL" fill f16 2,64 nan "$T/nan.npy"
"$TOOL" fill f32 2,64 inf "$T/inf.npy"
"$TOOL" fill u8 4,64 1 "$T/u8.npy"
"$TOOL" fill i8 32 1 "$T/signs32.npy"
"$TOOL" fill f16 0,64 0 "$T/empty.npy"
"$TOOL" fill f16 3,96 randn:2 "$T/x96.npy"
"$TOOL" header f32 4,64 "$T/nodata.npy"
"$TOOL" header f32 1099511627776,1099511627776 "$T/absurd.npy"
head -c 100 "$T/x64.npy" > "$T/trunc.npy"
printf '\x93NUMPY\x01\x00\x10\x00{garbage}      \n' > "$T/garbage.npy"
echo "not an npy" > "$T/text.npy"
touch "$T/afile"

expect_error "missing input file"      1 " hadamard: " "$T/o1" "$RESQ" hadamard --x "$T/none.npy" --out "$T/o1"
expect_error "truncated NPY"           1 " hadamard: " "$T/o2" "$RESQ" hadamard --x "$T/trunc.npy" --out "$T/o2"
expect_error "header without data"     1 " hadamard: " "$T/o3" "$RESQ" hadamard --x "$T/nodata.npy" --out "$T/o3"
expect_error "malformed header"        1 " hadamard: " "$T/o4" "$RESQ" hadamard --x "$T/garbage.npy" --out "$T/o4"
expect_error "not an NPY file"         1 " quant-act: " "$T/o5" "$RESQ" quant-act --x "$T/text.npy" --out "$T/o5"
expect_error "absurd size"             1 " quant-act: " "$T/o6" "$RESQ" quant-act --x "$T/absurd.npy" --out "$T/o6"
expect_error "wrong dtype (u8 input)"  1 " quant-act: " "$T/o7" "$RESQ" quant-act --x "$T/u8.npy" --out "$T/o7"
expect_error "signs shape mismatch"    1 " hadamard: " "$T/o8" "$RESQ" hadamard --x "$T/x64.npy" --signs "$T/signs32.npy" --out "$T/o8"
expect_error "unsupported Hadamard n"  1 " hadamard: " "$T/o9" "$RESQ" hadamard --x "$T/x100.npy" --out "$T/o9"
"$RESQ" hadamard --x "$T/x100.npy" --out "$T/o9" 2>&1 | grep -q "nearest supported sizes are 96 and 104" && ok \
  || fail "unsupported n names the nearest sizes"
expect_error "NaN in activations"      1 " quant-act: " "$T/o10" "$RESQ" quant-act --x "$T/nan.npy" --out "$T/o10"
expect_error "Inf in activations"      1 " hadamard: " "$T/o11" "$RESQ" hadamard --x "$T/inf.npy" --out "$T/o11"
expect_error "NaN in the KV cache"     1 " quant-kv: " "$T/o12" "$RESQ" quant-kv --x "$T/nan.npy" --head-dim 32 --out "$T/o12"
expect_error "K not divisible by group" 1 " quant-act: " "$T/o13" "$RESQ" quant-act --x "$T/x64.npy" --group 48 --out "$T/o13"
expect_error "K not divisible by head-dim" 1 " quant-kv: " "$T/o14" "$RESQ" quant-kv --x "$T/x64.npy" --head-dim 48 --out "$T/o14"
expect_error "r larger than the group" 1 " quant-act: " "$T/o15" "$RESQ" quant-act --x "$T/x64.npy" --r 65 --out "$T/o15"
expect_error "bits out of range"       2 " quant-act: " "$T/o16" "$RESQ" quant-act --x "$T/x64.npy" --bits-lo 5 --out "$T/o16"
expect_error "clip out of range"       1 " quant-act: " "$T/o17" "$RESQ" quant-act --x "$T/x64.npy" --clip 2 --out "$T/o17"
expect_error "non-numeric integer"     2 " quant-act: " "$T/o18" "$RESQ" quant-act --x "$T/x64.npy" --r abc --out "$T/o18"
expect_error "unknown option"          2 " quant-act: " "$T/o19" "$RESQ" quant-act --x "$T/x64.npy" --bogus 1 --out "$T/o19"
expect_error "missing --x"             2 " quant-act: " "$T/o20" "$RESQ" quant-act --out "$T/o20"
expect_error "repeated option"         2 " hadamard: " "$T/o21" "$RESQ" hadamard --x "$T/x64.npy" --x "$T/x64.npy" --out "$T/o21"
expect_error "unknown mode"            2 " quant-kv: " "$T/o22" "$RESQ" quant-kv --x "$T/x64.npy" --head-dim 32 --mode fast --out "$T/o22"
expect_error "unknown stage"           2 ": " "" "$RESQ" frobnicate
expect_error "out is a file"           1 " quant-act: " "" "$RESQ" quant-act --x "$T/x64.npy" --out "$T/afile"
expect_error "out not creatable"       1 " quant-act: " "" "$RESQ" quant-act --x "$T/x64.npy" --out /proc/resq_cannot_create
# a constant non-zero part is degenerate in upstream's bf16 path B
"$TOOL" fill f16 2,64 1.5 "$T/const.npy"
expect_error "path-B constant part"    1 " quant-kv: " "$T/o23" "$RESQ" quant-kv --x "$T/const.npy" --head-dim 32 --mode path-b-bf16 --out "$T/o23"
"$RESQ" quant-kv --x "$T/const.npy" --head-dim 32 --out "$T/o24" && ok || fail "path A handles constant parts"
# a failure while committing (the final name of one output is a directory): nothing else is left behind
mkdir -p "$T/o25/y.npy"
"$RESQ" quant-act --x "$T/x64.npy" --out "$T/o25" 2>/dev/null; rc=$?
left=$(ls -A "$T/o25")
[ $rc -eq 1 ] && [ "$left" = "y.npy" ] && ok || fail "failed commit rolls back (exit $rc, left: $left)"

# ---------------------------------------------------------------- accepted edge cases
"$RESQ" quant-act --x "$T/empty.npy" --out "$T/e1" && [ "$("$TOOL" info "$T/e1/q_lo.npy")" = "u8 0,28" ] && ok \
  || fail "zero tokens give empty outputs"
"$RESQ" quant-act --x "$T/x96.npy" --group 32 --r 4 --out "$T/g1" && [ "$("$TOOL" info "$T/g1/order.npy")" = "i32 96" ] \
  && ok || fail "grouped quant-act writes the o_proj order"
"$TOOL" fill u16 2,64 randn:3 "$T/bf16.npy"
"$RESQ" hadamard --x "$T/bf16.npy" --out "$T/b1" && [ "$("$TOOL" info "$T/b1/y.npy")" = "f32 2,64" ] && ok \
  || fail "bf16 (u16 bit patterns) input is accepted"
"$RESQ" hadamard --x "$T/x64.npy" --sign-seed 5 --out "$T/s1" && [ "$("$TOOL" info "$T/s1/signs.npy")" = "i8 64" ] \
  && ok || fail "--sign-seed writes signs.npy"
"$TOOL" fill f32 64,5 randn:4 "$T/w.npy"
"$RESQ" hadamard --x "$T/w.npy" --weight output --out "$T/w1" && [ "$("$TOOL" info "$T/w1/y.npy")" = "f32 64,5" ] \
  && ok || fail "--weight output transforms columns of a [n, N] weight"
expect_error "--weight on a 1-D array" 1 " hadamard: " "$T/w2" "$RESQ" hadamard --x "$T/signs32.npy" --weight input --out "$T/w2"

echo "cli_test: $checks checks, $fails failures"
[ $checks -gt 0 ] && [ $fails -eq 0 ]
