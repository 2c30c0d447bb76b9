#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's bad-input table ("Bad input"), row by row, through the `resq`
# command: every row id below (npy-truncated, npy-malformed, ..., out-write)
# is a row of that table. A refused input must give exit status 1 (2 for bad
# usage), exactly one "resq <stage>: error: ..." line that contains the
# expected words, and no file in the output directory; an accepted edge case
# must give the documented outputs (compared bit for bit where the contract
# makes them exact).
# usage: cli_badinput_test.sh <resq> <npy_tool> <npy-seed-dir>
#   <npy-seed-dir>: verify/fuzz/corpus/npy (hand-made malformed NPY files)
set -u
RESQ=$(realpath "$1") TOOL=$(realpath "$2") SEEDS=$(realpath "$3")   # the script works in a scratch directory
T=$(mktemp -d /tmp/resq_badinput.XXXXXX)
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
checks=0 fails=0
ok()   { checks=$((checks + 1)); echo "ok   $*"; }
fail() {
  checks=$((checks + 1)); fails=$((fails + 1))
  echo "FAIL: $*"
  echo "REPRO: bash $0 $RESQ $TOOL $SEEDS   # case: $*"
}

# refuse <row> <case> <want-exit> <stage> <expected-substring> <cmd...>
#   runs cmd with --out $T/out.<n> appended; checks exit status, the one error
#   line and its words, and that the output directory does not exist afterwards.
# refuse_at: the same with the --out given in cmd; <out> (if a directory) must stay as it was.
n_out=0
refuse() {
  local row=$1 name=$2 want=$3 stage=$4 words=$5; shift 5
  n_out=$((n_out + 1))
  refuse_at "$row" "$name" "$want" "$stage" "$words" "$T/out.$n_out" "$@" --out "$T/out.$n_out"
}
refuse_at() {
  local row=$1 name=$2 want=$3 stage=$4 words=$5 out=$6; shift 6
  local err rc lines before="" existed=0
  [ -e "$out" ] && existed=1
  [ -d "$out" ] && before=$(ls -A "$out")
  err=$("$@" 2>&1 >/dev/null); rc=$?
  lines=$(printf '%s\n' "$err" | grep -c .)
  if [ "$rc" -ne "$want" ]; then fail "$row: $name: exit $rc, want $want ($err)"; return; fi
  if [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -q "^resq $stage: error: "; then
    fail "$row: $name: stderr is not one 'resq $stage: error:' line: $err"; return
  fi
  if ! printf '%s' "$err" | grep -qiF -- "$words"; then fail "$row: $name: message lacks '$words': $err"; return; fi
  if [ -d "$out" ] && [ "$(ls -A "$out")" != "$before" ]; then
    fail "$row: $name: the output directory changed: $(ls -A "$out" | tr '\n' ' ')"; return
  fi
  if [ $existed = 0 ] && [ -e "$out" ]; then fail "$row: $name: left $out behind"; return; fi
  ok "$row: $name -> $err"
}

# accept <row> <case> <out-dir> <cmd...>: exit 0 expected (outputs checked by the caller)
accept() {
  local row=$1 name=$2 out=$3; shift 3
  local err
  if ! err=$("$@" --out "$out" 2>&1 >/dev/null); then fail "$row: $name: refused: $err"; return 1; fi
  return 0
}
info() { "$TOOL" info "$1" 2>/dev/null; }
same() { "$TOOL" cmp "$1" "$2" 2>/dev/null; }

cd "$T" || exit 1
# ---------------------------------------------------------------- inputs
"$TOOL" fill f16 4,64 randn:1 x.npy
"$TOOL" fill f16 4,128 randn:1 x128.npy
"$TOOL" fill f32 16,64 randn:2 w.npy
"$TOOL" fill f32 16,128 randn:2 w128.npy
"$TOOL" fill f16 16,64 randn:2 wh.npy
"$TOOL" fill i8 64 1 s64.npy
"$TOOL" fill f32 64 1 s64f.npy
"$TOOL" fill f32 16 0 b16.npy
"$TOOL" fill f32 15 0 b15.npy
"$TOOL" fill f16 16 0 b16h.npy
"$TOOL" fill u8 4,64 1 u8.npy
"$TOOL" fill f64 4,64 1 f64.npy
"$TOOL" fill f16 4,100 randn:3 x100.npy
"$TOOL" fill f16 3,96 randn:3 x96.npy
"$TOOL" fill f16 3,2,32 randn:4 kv3.npy
"$TOOL" fill f16 2,64 nan xnan.npy
"$TOOL" fill f32 2,64 inf xinf.npy
"$TOOL" fill u16 2,64 nan xnanb.npy        # bf16 NaN bit patterns (0x7fc0)
"$TOOL" fill f32 16,64 nan wnan.npy
"$TOOL" fill f16 16,64 inf whinf.npy
"$TOOL" fill f16 2,64 0 xzero.npy
"$TOOL" fill f16 2,64 1.5 xconst.npy
"$TOOL" fill f32 16,64 0 wzero.npy
"$TOOL" fill f16 0,64 0 x0.npy
"$TOOL" fill f32 0,64 0 w0.npy
"$TOOL" fill f16 0,3,64 0 xb0.npy           # 3-D calibration batch with B = 0 sequences
"$TOOL" fill f64 64,64 0.125 u64.npy           # a (non-orthogonal) basis for `resq fuse`: fusion needs no orthogonality
"$TOOL" fill f64 64,32 0.125 u64x32.npy
"$TOOL" fill f64 64,64 nan unan.npy
"$TOOL" fill f16 64,64 0.125 u64h.npy
"$TOOL" fill f64 2,16,16 0.25 uv.npy
"$RESQ" quant-act --x x.npy --out qa >/dev/null
"$RESQ" quant-act --x x.npy --group 32 --out qa_g32 >/dev/null
"$RESQ" quant-act --x x0.npy --out qa0 >/dev/null
"$RESQ" quant-weight --w w.npy --out qw >/dev/null
"$RESQ" quant-weight --w w128.npy --out qw128 >/dev/null
[ -f qa/q_lo.npy ] && [ -f qw/q_lo.npy ] && [ -f qa0/q_lo.npy ] || { echo "FAIL: cannot make the quantized operands"; exit 1; }

# ---------------------------------------------------------------- npy-truncated
head -c 300 x.npy > trunc_data.npy       # 128-byte header + 172 of 512 data bytes
head -c 40 x.npy > trunc_header.npy      # inside the header dict
head -c 9 x.npy > trunc_preamble.npy     # inside the preamble
: > empty.npy
"$TOOL" header f32 4,64 nodata.npy       # a header and no data at all
refuse npy-truncated "data cut (hadamard --x)" 1 hadamard "truncated NPY data" "$RESQ" hadamard --x trunc_data.npy
refuse npy-truncated "data cut (quant-weight --w)" 1 quant-weight "truncated NPY data" "$RESQ" quant-weight --w trunc_data.npy
refuse npy-truncated "header only (gptq --w)" 1 gptq "truncated NPY data" "$RESQ" gptq --w nodata.npy --x x.npy
refuse npy-truncated "header cut (pca, 2nd file)" 1 pca "truncated NPY header" "$RESQ" pca --x x.npy,trunc_header.npy
refuse npy-truncated "preamble cut (quant-kv)" 1 quant-kv "too short" "$RESQ" quant-kv --x trunc_preamble.npy --head-dim 32
refuse npy-truncated "empty file (quant-act)" 1 quant-act "too short" "$RESQ" quant-act --x empty.npy
cp -r qa qa_trunc && head -c 150 qa/q_hi.npy > qa_trunc/q_hi.npy
refuse npy-truncated "file inside --xq (gemm)" 1 gemm "truncated NPY data" "$RESQ" gemm --xq qa_trunc --wq qw --k 64

# ---------------------------------------------------------------- npy-malformed
printf '\x93NUMPY\x01\x00\x10\x00{garbage}      \n' > garbage.npy
echo "not an npy file" > text.npy
{ cat x.npy; printf 'x'; } > trailing.npy
mkdir adir.npy
refuse npy-malformed "bad magic (hadamard)" 1 hadamard "bad magic" "$RESQ" hadamard --x "$SEEDS/bad_magic.npy"
refuse npy-malformed "text file (quant-act)" 1 quant-act "bad magic" "$RESQ" quant-act --x text.npy
refuse npy-malformed "unparseable dict (quant-kv)" 1 quant-kv "header" "$RESQ" quant-kv --x garbage.npy --head-dim 32
refuse npy-malformed "trailing bytes (gptq --x)" 1 gptq "trailing" "$RESQ" gptq --w w.npy --x x.npy,trailing.npy
refuse npy-malformed "a directory as --x (pca)" 1 pca "Is a directory" "$RESQ" pca --x adir.npy
refuse npy-malformed "missing file (gemm --bias)" 1 gemm "cannot open" "$RESQ" gemm --xq qa --wq qw --k 64 --bias none.npy

# ---------------------------------------------------------------- npy-unsupported
refuse npy-unsupported "big-endian (hadamard)" 1 hadamard "big-endian" "$RESQ" hadamard --x "$SEEDS/f32_bigendian.npy"
refuse npy-unsupported "Fortran order (quant-act)" 1 quant-act "Fortran" "$RESQ" quant-act --x "$SEEDS/f32_fortran_2x3.npy"
refuse npy-unsupported "9 dimensions (quant-weight)" 1 quant-weight "dimensions" "$RESQ" quant-weight --w "$SEEDS/f32_9dims.npy"

# ---------------------------------------------------------------- dtype
refuse dtype "u8 activations (quant-act)" 1 quant-act "dtype u8 is not accepted" "$RESQ" quant-act --x u8.npy
refuse dtype "f64 weight (quant-weight)" 1 quant-weight "dtype f64 is not accepted" "$RESQ" quant-weight --w f64.npy
refuse dtype "f32 signs (hadamard)" 1 hadamard "expected i8" "$RESQ" hadamard --x x.npy --signs s64f.npy
refuse dtype "f16 bias (gemm)" 1 gemm "must be f32" "$RESQ" gemm --xq qa --wq qw --k 64 --bias b16h.npy
refuse dtype "f32 x in the FP16 GEMM" 1 gemm "needs f16" "$RESQ" gemm --x w.npy --w wh.npy
refuse dtype "swapped operand dirs (gemm)" 1 gemm "expected" "$RESQ" gemm --xq qw --wq qa --k 64
refuse dtype "f16 basis (fuse --u)" 1 fuse "dtype f16 is not accepted (f64, or f32" "$RESQ" fuse --w w.npy --u u64h.npy --side input

# ---------------------------------------------------------------- shape
refuse shape "signs length != n (hadamard)" 1 hadamard "shape must be [96]" "$RESQ" hadamard --x x96.npy --signs s64.npy
refuse shape "calibration files of different d (pca)" 1 pca "differs from d=64" "$RESQ" pca --x x.npy,x128.npy
refuse shape "calibration K != weight K (gptq)" 1 gptq "differs from the weight's K=64" "$RESQ" gptq --w w.npy --x x128.npy
refuse shape "X and W with different K (gemm FP16)" 1 gemm "same K" "$RESQ" gemm --x x128.npy --w wh.npy
refuse shape "operands quantized with different K (gemm)" 1 gemm "q_lo.npy: expected" "$RESQ" gemm --xq qa --wq qw128 --k 64
refuse shape "--k disagrees with the operands (gemm)" 1 gemm "expected" "$RESQ" gemm --xq qa --wq qw --k 128
refuse shape "bias length != N (gemm)" 1 gemm "expected f32 [16]" "$RESQ" gemm --xq qa --wq qw --k 64 --bias b15.npy
refuse shape "[T, H, HD] with HD != --head-dim (quant-kv)" 1 quant-kv "!= --head-dim" "$RESQ" quant-kv --x kv3.npy --head-dim 16
refuse shape "1-D weight (quant-weight)" 1 quant-weight "2-D" "$RESQ" quant-weight --w s64f.npy
refuse shape "U not square (fuse)" 1 fuse "U [64, 32] is not square" "$RESQ" fuse --w w.npy --u u64x32.npy --side input
refuse shape "U order != N of W (fuse --side output)" 1 fuse "needs n = N (the rows of W) = 16" "$RESQ" fuse --w w.npy --u u64.npy --side output
refuse shape "v_proj rows != G*hd (fuse)" 1 fuse "needs G*hd = 2*16 = 32" "$RESQ" fuse --w w.npy --u uv.npy --side v-proj --kv-heads 2 --head-dim 16

# ---------------------------------------------------------------- group
refuse group "K % group (quant-act)" 1 quant-act "group" "$RESQ" quant-act --x x.npy --group 48
refuse group "K % head-dim (quant-kv)" 1 quant-kv "not a multiple of --head-dim" "$RESQ" quant-kv --x x.npy --head-dim 48
refuse group "K % group (quant-weight packing)" 1 quant-weight "must be a multiple" "$RESQ" quant-weight --w w.npy --group 48
refuse group "K % group (gptq packing)" 1 gptq "must be a multiple" "$RESQ" gptq --w w.npy --x x.npy --group 48
refuse group "--group-size not dividing K-R (gptq)" 1 gptq "group" "$RESQ" gptq --w w.npy --x x.npy --bits-lo 3 --group-size 5
refuse group "--group disagrees with the operands (gemm)" 1 gemm "groups" "$RESQ" gemm --xq qa --wq qw --k 64 --group 32
refuse group "r larger than the group (quant-act)" 1 quant-act "r" "$RESQ" quant-act --x x.npy --group 32 --r 33
refuse group "H % G != 0 (fuse --side o-proj)" 1 fuse "--heads 3 is not a multiple of --kv-heads 2" "$RESQ" fuse --w w.npy --u uv.npy --side o-proj --heads 3 --kv-heads 2 --head-dim 16

# ---------------------------------------------------------------- hadamard-size
refuse hadamard-size "n = 100 (names 96 and 104)" 1 hadamard "nearest supported sizes are 96 and 104" "$RESQ" hadamard --x x100.npy
refuse hadamard-size "n = 100, offline weight form" 1 hadamard "nearest supported sizes" "$RESQ" hadamard --x x100.npy --weight input
"$TOOL" header f16 0,134217728 xhuge_n.npy   # zero rows of n = 2^27: nothing to read, n alone is refused
refuse hadamard-size "n = 2^27 > 2^26" 1 hadamard "exceeds the maximum" "$RESQ" hadamard --x xhuge_n.npy
"$TOOL" fill f32 64,100 randn:3 wd100.npy
refuse hadamard-size "down_proj I = 100 (fuse)" 1 fuse "nearest supported sizes are 96 and 104" "$RESQ" fuse --w wd100.npy --u u64.npy --side down-proj

# ---------------------------------------------------------------- nonfinite
refuse nonfinite "NaN activation (quant-act)" 1 quant-act "NaN" "$RESQ" quant-act --x xnan.npy
refuse nonfinite "Inf activation (hadamard)" 1 hadamard "Inf" "$RESQ" hadamard --x xinf.npy
refuse nonfinite "bf16 NaN activation (quant-kv)" 1 quant-kv "NaN" "$RESQ" quant-kv --x xnanb.npy --head-dim 32
refuse nonfinite "NaN activation (gemm FP16 x)" 1 gemm "NaN" "$RESQ" gemm --x xnan.npy --w wh.npy
refuse nonfinite "NaN weight (quant-weight)" 1 quant-weight "NaN" "$RESQ" quant-weight --w wnan.npy
refuse nonfinite "NaN weight (gptq --w)" 1 gptq "NaN" "$RESQ" gptq --w wnan.npy --x x.npy
refuse nonfinite "Inf weight (gemm FP16 w)" 1 gemm "NaN or Inf" "$RESQ" gemm --x x.npy --w whinf.npy
refuse nonfinite "NaN weight (hadamard --weight)" 1 hadamard "NaN" "$RESQ" hadamard --x wnan.npy --weight input
refuse nonfinite "NaN weight (fuse --w)" 1 fuse "W[0][0] is NaN or Inf" "$RESQ" fuse --w wnan.npy --u u64.npy --side input
refuse nonfinite "NaN basis (fuse --u)" 1 fuse "U[0][0] is NaN or Inf" "$RESQ" fuse --w w.npy --u unan.npy --side input
refuse nonfinite "NaN calibration, 2nd file (pca)" 1 pca "NaN" "$RESQ" pca --x x.npy,xnan.npy
refuse nonfinite "bf16 NaN calibration (pca)" 1 pca "NaN" "$RESQ" pca --x xnanb.npy
refuse nonfinite "NaN calibration (gptq --x)" 1 gptq "NaN" "$RESQ" gptq --w w.npy --x xnan.npy
# a finite input whose transform overflows f16: a constant row of 60000 gives y_0 = 64 * 60000 / 8
"$TOOL" fill f32 2,64 60000 xlarge.npy
refuse nonfinite "f16 output would overflow (hadamard)" 1 hadamard "overflows f16" "$RESQ" hadamard --x xlarge.npy --out-dtype f16

# ---------------------------------------------------------------- constant
# ref/CONTRACT.md s.3: an all-zero part gets mn=-1, mx=1, s = fp32(2/maxq), z = rint(1/s) = 7 (4-bit)
# and 127 (8-bit), and dequantizes to exactly 0.
if accept constant "all-zero rows, path A (quant-act)" c1 "$RESQ" quant-act --x xzero.npy; then
  "$TOOL" fill f32 2,64 0 y0.npy; "$TOOL" fill i32 2,1 7 z7.npy; "$TOOL" fill i32 2,1 127 z127.npy
  same c1/y.npy y0.npy && same c1/zero_lo.npy z7.npy && same c1/zero_hi.npy z127.npy \
    && ok "constant: all-zero rows -> y == 0 exactly, zero_lo 7, zero_hi 127" \
    || fail "constant: all-zero rows: y/zero differ from the contract's values"
fi
# a constant 1.5 row: mn = 0, mx = 1.5 (the range includes 0), lo part s = fp32(1.5/15), x/s rounds to 15,
# s*15 = 1.50000002 rounds to fp32 1.5: y == x exactly; the hi part likewise (1.5/255, code 255).
if accept constant "constant 1.5 rows, path A (quant-act)" c2 "$RESQ" quant-act --x xconst.npy; then
  "$TOOL" fill f32 2,64 1.5 y15.npy
  same c2/y.npy y15.npy && ok "constant: constant rows -> y == x exactly" || fail "constant: constant 1.5 rows do not dequantize to 1.5"
fi
refuse constant "constant part, upstream bf16 path B (quant-act)" 1 quant-act "bf16 scale is 0" "$RESQ" quant-act --x xconst.npy --mode path-b-bf16
# s.10: an all-zero weight row has amax clamped to 1e-5, so the codes are 0 and w_hat is exactly 0.
if accept constant "all-zero weight rows (quant-weight)" c3 "$RESQ" quant-weight --w wzero.npy; then
  "$TOOL" fill i8 16,64 0 c0.npy; "$TOOL" fill f32 16,64 0 wh0.npy
  same c3/codes.npy c0.npy && same c3/w_hat.npy wh0.npy && ok "constant: all-zero weight -> codes 0, w_hat 0" \
    || fail "constant: all-zero weight rows: codes/w_hat not zero"
fi
refuse constant "all-zero calibration data (pca)" 1 pca "all zero" "$RESQ" pca --x xzero.npy
refuse constant "all-zero calibration data (gptq)" 1 gptq "all-zero calibration" "$RESQ" gptq --w w.npy --x xzero.npy

# ---------------------------------------------------------------- zero-tokens
accept zero-tokens "hadamard, 0 rows" z1 "$RESQ" hadamard --x x0.npy && [ "$(info z1/y.npy)" = "f16 0,64" ] \
  && ok "zero-tokens: hadamard -> y f16 [0, 64]" || fail "zero-tokens: hadamard 0 rows"
accept zero-tokens "quant-act, 0 rows" z2 "$RESQ" quant-act --x x0.npy && [ "$(info z2/q_lo.npy)" = "u8 0,28" ] \
  && [ "$(info z2/y.npy)" = "f32 0,64" ] && ok "zero-tokens: quant-act -> q_lo u8 [0, 28], y [0, 64]" \
  || fail "zero-tokens: quant-act 0 rows"
accept zero-tokens "quant-kv, 0 tokens" z3 "$RESQ" quant-kv --x x0.npy --head-dim 32 && [ "$(info z3/q_lo.npy)" = "u8 0,2,14" ] \
  && ok "zero-tokens: quant-kv -> q_lo u8 [0, 2, 14]" || fail "zero-tokens: quant-kv 0 tokens"
accept zero-tokens "gemm, M = 0" z4 "$RESQ" gemm --xq qa0 --wq qw --k 64 && [ "$(info z4/y.npy)" = "f16 0,16" ] \
  && ok "zero-tokens: gemm M = 0 -> y f16 [0, 16]" || fail "zero-tokens: gemm M = 0"
accept zero-tokens "quant-weight, N = 0" z5 "$RESQ" quant-weight --w w0.npy && [ "$(info z5/codes.npy)" = "i8 0,64" ] \
  && ok "zero-tokens: quant-weight N = 0 -> codes i8 [0, 64]" || fail "zero-tokens: quant-weight N = 0"
refuse zero-tokens "no calibration token (pca)" 1 pca "no calibration tokens" "$RESQ" pca --x x0.npy
refuse zero-tokens "B = 0 sequences (gptq)" 1 gptq "no calibration sequence" "$RESQ" gptq --w w.npy --x xb0.npy
refuse zero-tokens "one empty sequence (gptq)" 1 gptq "calibration" "$RESQ" gptq --w w.npy --x x0.npy
refuse zero-tokens "0 channels (quant-act)" 1 quant-act "zero channels" "$RESQ" quant-act --x "$SEEDS/huge_zero_dim.npy"

# ---------------------------------------------------------------- absurd
# Absurd sizes are refused by a size check, with a message naming the limit, before any
# allocation. The refusals run under a 2 GiB address-space limit (ulimit -v) when the binary
# can start under one (a sanitizer build cannot: its shadow memory alone exceeds it), so an
# attempted multi-TiB allocation could not even be tried silently.
VLIM=2097152
if (ulimit -v $VLIM; "$RESQ" --version >/dev/null 2>&1); then LIMITED=(bash -c 'ulimit -v '$VLIM'; exec "$@"' _)
else LIMITED=(); echo "note: $RESQ cannot start under ulimit -v (sanitizer build?): absurd-size rows run without it"; fi
"$TOOL" header f32 1099511627776,1099511627776 absurd.npy
"$TOOL" header f16 0,1099511627776 k_absurd.npy
"$TOOL" fill f16 1,20000 1 d20000.npy
"$TOOL" fill f32 1,40000 1 k40000.npy
"$TOOL" fill f16 524289,1 randn:5 m_big.npy        # y [524289, 524288] f32 is > 1 TiB
"$TOOL" fill f16 524288,1 randn:6 n_big.npy
refuse absurd "header claims 2^80 elements (quant-act)" 1 quant-act "limit" "${LIMITED[@]}" "$RESQ" quant-act --x absurd.npy
printf '\x93NUMPY\x02\x00\xff\xff\xff\xff' > hdr4g.npy
refuse absurd "header claims 4 GiB of header (hadamard)" 1 hadamard "limit" "${LIMITED[@]}" "$RESQ" hadamard --x hdr4g.npy
refuse absurd "0 rows of K = 2^40 (quant-act)" 1 quant-act "refused before allocating" "${LIMITED[@]}" "$RESQ" quant-act --x k_absurd.npy
refuse absurd "d = 20000 > 16384 (pca)" 1 pca "exceeds the maximum 16384" "${LIMITED[@]}" "$RESQ" pca --x d20000.npy
refuse absurd "K = 40000 > 32768 (gptq)" 1 gptq "exceeds the maximum 32768" "${LIMITED[@]}" "$RESQ" gptq --w k40000.npy --x d20000.npy
refuse absurd "basis order 20000 > 16384 (fuse, before reading --u)" 1 fuse "exceeds the maximum 16384; refused before reading --u" "${LIMITED[@]}" "$RESQ" fuse --w d20000.npy --u absurd.npy --side input
refuse absurd "GEMM output > 1 TiB (gemm FP16)" 1 gemm "refused before allocating" "${LIMITED[@]}" "$RESQ" gemm --x m_big.npy --w n_big.npy
refuse absurd "2^40 x 2^40 x K=0 GEMM (gemm FP16)" 1 gemm "refused before allocating" "${LIMITED[@]}" "$RESQ" gemm --x "$SEEDS/huge_zero_dim.npy" --w "$SEEDS/huge_zero_dim.npy"
if [ ${#LIMITED[@]} -gt 0 ]; then
  # exactly at the 1 TiB limit the size check passes; the allocation then fails under the
  # 2 GiB limit and must say so (not exit silently, not crash)
  refuse absurd "allocation fails (gemm, 1 TiB y under ulimit -v)" 1 gemm "out of memory" "${LIMITED[@]}" "$RESQ" gemm --x n_big.npy --w n_big.npy
fi

# ---------------------------------------------------------------- out-dir
touch afile
refuse_at out-dir "--out is a file" 1 quant-act "not a directory" afile "$RESQ" quant-act --x x.npy --out afile
refuse_at out-dir "--out parent missing" 1 quant-act "cannot create directory" nodir "$RESQ" quant-act --x x.npy --out nodir/sub
refuse_at out-dir "--out not creatable (/proc)" 1 hadamard "cannot create directory" /proc/resq_no "$RESQ" hadamard --x x.npy --out /proc/resq_no
if [ "$(id -u)" -ne 0 ]; then
  mkdir ro && chmod 0555 ro
  refuse_at out-dir "--out without write permission" 1 quant-act "not writable" ro "$RESQ" quant-act --x x.npy --out ro
  chmod 0755 ro
else
  echo "note: running as root, permission bits do not stop writes: the read-only directory row is covered by the write-failure rows below"
fi

# ---------------------------------------------------------------- out-write
# A write that fails part-way (RLIMIT_FSIZE: the first outputs fit, y.npy does not; SIGXFSZ
# ignored so write(2) returns EFBIG): no file and no temporary is left, a directory the run
# created is removed, and the outputs of an earlier run in the directory are untouched.
"$TOOL" fill f16 64,4096 randn:7 xl.npy          # q_lo 112 KiB ... y 1 MiB
fsz() { bash -c 'trap "" XFSZ; ulimit -f 400; exec "$@"' _ "$@"; }
refuse out-write "write fails part-way (new directory)" 1 quant-act "File too large" fsz "$RESQ" quant-act --x xl.npy
mkdir prev && "$RESQ" quant-act --x x.npy --r 16 --out prev >/dev/null
before=$(cd prev && ls -A | sort && cat ./* | cksum)
err=$(fsz "$RESQ" quant-act --x xl.npy --out prev 2>&1); rc=$?
after=$(cd prev && ls -A | sort && cat ./* | cksum)
[ $rc -eq 1 ] && [ "$before" = "$after" ] && ok "out-write: failed write keeps the earlier outputs bit for bit, no temporaries ($err)" \
  || fail "out-write: earlier outputs changed by a failed run (exit $rc): $err"
# a final name that is a directory: refused before any rename, the earlier outputs survive
mkdir prev2 && "$RESQ" quant-act --x x.npy --out prev2 >/dev/null && rm prev2/y.npy && mkdir prev2/y.npy
before=$(cd prev2 && ls -A | sort && cat ./*.npy 2>/dev/null | cksum)
err=$("$RESQ" quant-act --x x.npy --r 16 --out prev2 2>&1); rc=$?
after=$(cd prev2 && ls -A | sort && cat ./*.npy 2>/dev/null | cksum)
[ $rc -eq 1 ] && [ "$before" = "$after" ] && printf '%s' "$err" | grep -q "is a directory" \
  && ok "out-write: output name taken by a directory -> refused, earlier outputs kept ($err)" \
  || fail "out-write: commit onto a directory name lost or changed files (exit $rc): $err"

echo "cli_badinput: $checks checks, $fails failures"
[ $checks -gt 0 ] && [ $fails -eq 0 ]
