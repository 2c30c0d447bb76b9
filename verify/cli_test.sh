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

# ---------------------------------------------------------------- fuse
# `resq fuse` (ref/CONTRACT.md s.13 fusion). fuse_cli_check (verify/fuse_cli_check.c) is built
# next to npy_tool: the library call for a bit-for-bit comparison, a transpose, a block-diagonal
# assembly, and the round-trip error bound derived in its source.
FCHK=$(dirname "$TOOL")/fuse_cli_check
if [ ! -x "$FCHK" ]; then
  fail "fuse: helper $FCHK not built (cmake --build <dir> --target fuse_cli_check)"
else
  F=$T/fuse; mkdir -p "$F"
  "$RESQ" fuse --help | grep -q "outputs" && ok || fail "resq fuse --help documents its outputs"
  "$RESQ" --help | grep -q "^  fuse " && ok || fail "resq --help lists fuse"
  "$TOOL" fill f32 200,64 randn:21 "$F/cal.npy"
  "$TOOL" fill f32 48,64 randn:22 "$F/w.npy"
  "$TOOL" fill f16 48,64 randn:23 "$F/wh.npy"
  "$TOOL" fill u16 32,64 randn:24 "$F/wb.npy"
  "$RESQ" pca --x "$F/cal.npy" --r 8 --seed 3 --out "$F/p" && [ "$("$TOOL" info "$F/p/U.npy")" = "f64 64,64" ] && ok \
    || fail "fuse: resq pca makes U.npy f64 [64, 64] for the fuse cases"
  # (1) input side with U from pca == the library call, bit for bit (f32, f16 and bf16 W)
  for wv in w wh wb; do
    "$RESQ" fuse --w "$F/$wv.npy" --u "$F/p/U.npy" --side input --out "$F/in_$wv" \
      && "$FCHK" ref input "$F/$wv.npy" "$F/p/U.npy" "$F/ref_in_$wv.npy" && "$TOOL" cmp "$F/in_$wv/w.npy" "$F/ref_in_$wv.npy" \
      && ok || fail "fuse: --side input ($wv.npy, U of pca) differs from resq_fuse_input_f32__ref"
  done
  # output side (W [64, 40]: n = N = 64) == the library call
  "$TOOL" fill f32 64,40 randn:25 "$F/wo.npy"
  "$RESQ" fuse --w "$F/wo.npy" --u "$F/p/U.npy" --side output --out "$F/out" \
    && "$FCHK" ref output "$F/wo.npy" "$F/p/U.npy" "$F/ref_out.npy" && "$TOOL" cmp "$F/out/w.npy" "$F/ref_out.npy" \
    && ok || fail "fuse: --side output differs from resq_fuse_output_f32__ref"
  # an f32 U is widened exactly: the same bits as the f64 U holding the same values
  "$FCHK" transpose "$F/p/U.npy" "$F/Ut.npy"
  "$TOOL" fill f32 64,64 randn:26 "$F/u32.npy"
  "$RESQ" fuse --w "$F/w.npy" --u "$F/u32.npy" --side input --out "$F/u32o" \
    && "$FCHK" ref input "$F/w.npy" "$F/u32.npy" "$F/ref_u32.npy" && "$TOOL" cmp "$F/u32o/w.npy" "$F/ref_u32.npy" \
    && ok || fail "fuse: f32 U differs from the library call on the widened U"
  # --out-dtype f16: the fp32 result rounded once, nearest-even
  "$RESQ" fuse --w "$F/w.npy" --u "$F/p/U.npy" --side input --out-dtype f16 --out "$F/in_h" \
    && "$FCHK" tof16 "$F/in_w/w.npy" "$F/ref_in_h.npy" && "$TOOL" cmp "$F/in_h/w.npy" "$F/ref_in_h.npy" \
    && ok || fail "fuse: --out-dtype f16 is not RNE(fp32 result)"
  # (2) orthogonal round trip: fuse with U, then with U^T, gives W back within the bound of fuse_cli_check.c
  if "$RESQ" fuse --w "$F/in_w/w.npy" --u "$F/Ut.npy" --side input --out "$F/rt" \
      && msg=$("$FCHK" roundtrip "$F/w.npy" "$F/p/U.npy" "$F/in_w/w.npy" "$F/rt/w.npy"); then
    ok; echo "ok   fuse round trip: $msg"
  else fail "fuse: input side with U then U^T does not give W back within the derived bound (${msg:-})"; fi
  # the bound can fail: W U itself is not W
  "$FCHK" roundtrip "$F/w.npy" "$F/p/U.npy" "$F/in_w/w.npy" "$F/in_w/w.npy" >/dev/null && fail "fuse: round-trip check accepts W U as W" || ok
  # v-proj (G = 2, hd = 16, W [32, 64]) == the output side with blockdiag(U_v[0], U_v[1]), bit for bit
  # (the zero blocks add exact zeros to nonzero sums); [G, hd, hd] and [G*hd, hd] bases agree
  "$TOOL" fill f64 2,16,16 randn:27 "$F/uv.npy"
  "$TOOL" fill f32 32,64 randn:28 "$F/wv.npy"
  "$FCHK" blockdiag "$F/uv.npy" 1 "$F/bd1.npy"
  "$RESQ" fuse --w "$F/wv.npy" --u "$F/uv.npy" --side v-proj --kv-heads 2 --head-dim 16 --out "$F/v" \
    && "$RESQ" fuse --w "$F/wv.npy" --u "$F/bd1.npy" --side output --out "$F/vbd" && "$TOOL" cmp "$F/v/w.npy" "$F/vbd/w.npy" \
    && ok || fail "fuse: --side v-proj differs from --side output with blockdiag(U_v)"
  "$TOOL" fill f64 32,16 randn:27 "$F/uv2d.npy"   # the same values as [G*hd, hd] (same generator stream)
  "$TOOL" cmpdata "$F/uv2d.npy" "$F/uv.npy" \
    && "$RESQ" fuse --w "$F/wv.npy" --u "$F/uv2d.npy" --side v-proj --kv-heads 2 --head-dim 16 --out "$F/v2" \
    && "$TOOL" cmp "$F/v/w.npy" "$F/v2/w.npy" && ok || fail "fuse: [G*hd, hd] value bases differ from [G, hd, hd]"
  # o-proj (H = 4, G = 2, hd = 16, W [48, 64]) == the input side with blockdiag(U_v[0], U_v[0], U_v[1], U_v[1])
  "$FCHK" blockdiag "$F/uv.npy" 2 "$F/bd2.npy"
  "$RESQ" fuse --w "$F/w.npy" --u "$F/uv.npy" --side o-proj --heads 4 --kv-heads 2 --head-dim 16 --out "$F/o" \
    && "$RESQ" fuse --w "$F/w.npy" --u "$F/bd2.npy" --side input --out "$F/obd" && "$TOOL" cmp "$F/o/w.npy" "$F/obd/w.npy" \
    && ok || fail "fuse: --side o-proj differs from --side input with blockdiag(U_v[h / (H/G)])"
  # down-proj (d = 64, I = 96, random signs) == --side output, then `resq hadamard --weight input --signs`
  "$TOOL" fill f32 64,96 randn:29 "$F/wd.npy"
  "$RESQ" hadamard --x "$F/wd.npy" --sign-seed 7 --weight input --out "$F/sg" >/dev/null
  "$RESQ" fuse --w "$F/wd.npy" --u "$F/p/U.npy" --side down-proj --signs "$F/sg/signs.npy" --out "$F/d" \
    && "$RESQ" fuse --w "$F/wd.npy" --u "$F/p/U.npy" --side output --out "$F/dout" \
    && "$RESQ" hadamard --x "$F/dout/w.npy" --weight input --signs "$F/sg/signs.npy" --out "$F/dh" \
    && "$TOOL" cmp "$F/d/w.npy" "$F/dh/y.npy" && ok || fail "fuse: --side down-proj differs from output side + offline Hadamard"
  # (3) bad input: exit 1 (2 for usage), one error line, nothing in the output directory
  "$TOOL" fill f64 64,32 0.5 "$F/u_rect.npy"
  "$TOOL" fill f64 32,32 0.5 "$F/u32x32.npy"
  "$TOOL" fill f16 64,64 0.5 "$F/u_f16.npy"
  "$TOOL" fill f64 64,64 nan "$F/u_nan.npy"
  "$TOOL" fill f32 48,64 nan "$F/w_nan.npy"
  "$TOOL" fill f32 64,100 randn:30 "$F/wd100.npy"
  "$TOOL" fill f32 1,20000 1 "$F/w20000.npy"
  "$TOOL" fill f32 2,64 60000 "$F/wbig.npy"
  "$TOOL" fill f64 64,64 2 "$F/u2.npy"
  expect_error "fuse: U not square"          1 " fuse: " "$F/b1" "$RESQ" fuse --w "$F/w.npy" --u "$F/u_rect.npy" --side input --out "$F/b1"
  expect_error "fuse: U order != K"          1 " fuse: " "$F/b2" "$RESQ" fuse --w "$F/w.npy" --u "$F/u32x32.npy" --side input --out "$F/b2"
  expect_error "fuse: U order != N (output)" 1 " fuse: " "$F/b3" "$RESQ" fuse --w "$F/w.npy" --u "$F/p/U.npy" --side output --out "$F/b3"
  expect_error "fuse: NaN in W"              1 " fuse: " "$F/b4" "$RESQ" fuse --w "$F/w_nan.npy" --u "$F/p/U.npy" --side input --out "$F/b4"
  expect_error "fuse: NaN in U"              1 " fuse: " "$F/b5" "$RESQ" fuse --w "$F/w.npy" --u "$F/u_nan.npy" --side input --out "$F/b5"
  expect_error "fuse: H % G != 0"            1 " fuse: " "$F/b6" "$RESQ" fuse --w "$F/w.npy" --u "$F/uv.npy" --side o-proj --heads 3 --kv-heads 2 --head-dim 16 --out "$F/b6"
  expect_error "fuse: v-proj rows != G*hd"   1 " fuse: " "$F/b7" "$RESQ" fuse --w "$F/w.npy" --u "$F/uv.npy" --side v-proj --kv-heads 2 --head-dim 16 --out "$F/b7"
  expect_error "fuse: value bases of wrong shape" 1 " fuse: " "$F/b8" "$RESQ" fuse --w "$F/wv.npy" --u "$F/p/U.npy" --side v-proj --kv-heads 2 --head-dim 16 --out "$F/b8"
  expect_error "fuse: f16 U"                 1 " fuse: " "$F/b9" "$RESQ" fuse --w "$F/w.npy" --u "$F/u_f16.npy" --side input --out "$F/b9"
  expect_error "fuse: down-proj I = 100"     1 " fuse: " "$F/b10" "$RESQ" fuse --w "$F/wd100.npy" --u "$F/p/U.npy" --side down-proj --out "$F/b10"
  expect_error "fuse: n = 20000 > 16384"     1 " fuse: " "$F/b11" "$RESQ" fuse --w "$F/w20000.npy" --u "$F/none.npy" --side input --out "$F/b11"
  expect_error "fuse: f16 output overflows"  1 " fuse: " "$F/b12" "$RESQ" fuse --w "$F/wbig.npy" --u "$F/u2.npy" --side input --out-dtype f16 --out "$F/b12"
  expect_error "fuse: signs shape"           1 " fuse: " "$F/b13" "$RESQ" fuse --w "$F/wd.npy" --u "$F/p/U.npy" --side down-proj --signs "$T/signs32.npy" --out "$F/b13"
  expect_error "fuse: unknown side"          2 " fuse: " "$F/b14" "$RESQ" fuse --w "$F/w.npy" --u "$F/p/U.npy" --side diagonal --out "$F/b14"
  expect_error "fuse: v-proj without --kv-heads" 2 " fuse: " "$F/b15" "$RESQ" fuse --w "$F/wv.npy" --u "$F/uv.npy" --side v-proj --head-dim 16 --out "$F/b15"
  expect_error "fuse: --signs on the input side" 2 " fuse: " "$F/b16" "$RESQ" fuse --w "$F/w.npy" --u "$F/p/U.npy" --side input --signs "$F/sg/signs.npy" --out "$F/b16"
  expect_error "fuse: missing --u"           2 " fuse: " "$F/b17" "$RESQ" fuse --w "$F/w.npy" --side input --out "$F/b17"
  "$RESQ" fuse --w "$F/w.npy" --u "$F/u_rect.npy" --side input --out "$F/b18" 2>&1 | grep -q "is not square" && ok \
    || fail "fuse: a non-square U is named as such"
  "$RESQ" fuse --w "$F/w.npy" --u "$F/uv.npy" --side o-proj --heads 3 --kv-heads 2 --head-dim 16 --out "$F/b19" 2>&1 \
    | grep -q "not a multiple of --kv-heads" && ok || fail "fuse: H % G != 0 is named as such"
fi

echo "cli_test: $checks checks, $fails failures"
[ $checks -gt 0 ] && [ $fails -eq 0 ]
