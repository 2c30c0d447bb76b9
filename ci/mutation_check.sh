#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Mutation check: do the tests and gates bite? Copies the working tree to a scratch
# directory, builds it once, then injects typical bugs ONE AT A TIME (literal edits
# written below), rebuilds incrementally and runs the checks. Every mutant must make
# ctest or a gate fail ("killed"); a surviving mutant fails this check.
#
#   ci/mutation_check.sh [--quick | --full] [--only NAME] [--list] [--keep] [--jobs N]
#     --quick   (default) the CI form: the mutants marked Q, each against the ctest
#               entries of its stage, then the gates only if those pass (a few minutes
#               on 2 cores)
#     --full    every mutant against the whole ctest (minus golden_regen, which runs
#               only the numpy generator) AND both gates; reports every check that
#               caught it
#     --only N  just mutant N (implies its full set of checks)
#     --keep    keep the scratch directory (printed)
# A mutation whose text is not found (the code changed) fails loudly: update the
# mutant, do not delete it. The unmutated copy must pass every check first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=quick
ONLY=
KEEP=0
LIST=0
JOBS=${JOBS:-$(nproc)}
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick; shift ;;
    --full) MODE=full; shift ;;
    --only) ONLY=$2; MODE=full; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --list) LIST=1; shift ;;
    --jobs) JOBS=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "mutation_check: unknown argument $1" >&2; exit 2 ;;
  esac
done

# ------------------------------------------------------------------ the mutants
# NAME~~Q or F (quick set or full only)~~FILE~~ctest regex of its stage~~FROM~~TO
# FROM is a literal string that must occur exactly once in FILE; TO replaces it.
# A mutant tagged avx512 in its name is skipped (reported) on a CPU without AVX-512 VNNI, one
# tagged amx on a CPU without AMX-TILE/AMX-INT8.
MUTANTS=$(cat <<'EOF'
quant_round_half_away~~Q~~ref/src/resq_quant_act_f32_q4q8__ref.c~~quant~~    c = nearbyintf(x / q->s) + q->z;~~    c = roundf(x / q->s) + q->z;
nibble_pack_off_by_one~~Q~~ref/src/resq_quant_act_f32_q4q8__ref.c~~quant~~dst[i / 2] |= (uint8_t)(i % 2 == 0 ? c : c << 4);~~dst[i / 2] |= (uint8_t)((i + 1) % 2 == 0 ? c : c << 4);
gemm_drop_zero_point~~Q~~ref/src/resq_gemm_q4q8_f16__ref.c~~gemm~~float t = (a * s) * (float)(acc - corr);~~float t = (a * s) * (float)(acc); (void)corr;
hadamard_wrong_scale~~Q~~ref/src/resq_hadamard_f32__ref.c~~hadamard~~  return (float)(1.0 / (double)s);~~  (void)s; return (float)(1.0 / sqrt((double)n));
gptq_skip_error_feedback~~Q~~ref/src/resq_gptq_f64__ref.c~~gptq~~        axpy_sub(i2 - c - 1, e, Uc + c + 1, wr + c + 1);~~        (void)Uc;
cpu_gemm_drop_zero_point_avx512~~Q~~cpu/src/resq_gemm_q4q8_f16__cpu.c~~gemm~~__m512 f0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(v0, _mm512_mullo_epi32(z, su0)));~~__m512 f0 = _mm512_cvtepi32_ps(v0);
cpu_hadamard_stream_tail_dropped_avx512~~Q~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~    for (; i + 32 <= n; i += 32) _mm512_stream_si512(~~    for (; i + 64 <= n; i += 32) _mm512_stream_si512(
cpu_gemm_lo_high_nibble_unsigned_amx~~Q~~cpu/src/resq_gemm_q4q8_f16__cpu_amx.c~~gemm~~v1 = _mm512_sub_epi8(_mm512_xor_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), c8), c8);~~v1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
cpu_gemm_c_tiles_not_reloaded_amx~~F~~cpu/src/resq_gemm_q4q8_f16__cpu_amx.c~~gemm~~              if (k0 == 0) {~~              if (1) {
cpu_hadamard_f9_upper_sign_avx512~~Q~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~finish(io, j + 16 * q, _mm512_sub_ps(a, v[q]), vinv, am, K1, Y);~~finish(io, j + 16 * q, _mm512_sub_ps(v[q], a), vinv, am, K1, Y);
cpu_hadamard_cross_sub_swapped_avx512~~F~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~          v[q + hs] = _mm512_fnmadd_ps(b, _mm512_set1_ps(1.0f), a);~~          v[q + hs] = _mm512_fnmadd_ps(a, _mm512_set1_ps(1.0f), b);
cpu_hadamard_first_pass_sub_swapped_avx512~~F~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~v[q + hs] = _mm512_fnmadd_ps(b, one, a);~~v[q + hs] = _mm512_fnmadd_ps(a, one, b);
cpu_hadamard_mix_add_rows_sign_dropped_avx512~~F~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~acc[ai][bi] = _mm512_add_ps(acc[ai][bi], _mm512_xor_ps(v[bi], zv));~~acc[ai][bi] = _mm512_add_ps(acc[ai][bi], v[bi]); (void)zv;
cpu_hadamard_mix28_class_stepped_twice_avx512~~Q~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~      if (HAD28_REP(a, c - 1) != a) continue;~~      if (HAD28_REP(a, c) != a) continue;
cpu_hadamard_mix28_new_class_sign_avx512~~F~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~      if ((HAD28_NM(a) >> c) & 1u) MIX28_SUB3(~~      if (!((HAD28_NM(a) >> c) & 1u)) MIX28_SUB3(
cpu_hadamard_mix28_fma_rows_sign_dropped_avx512~~F~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~        if (neg) MIX28_FNMA(acc[a], v, one);~~        if (neg) MIX28_FMA(acc[a], v, one);
cpu_hadamard_mix28_table_entry_avx512~~F~~cpu/src/resq_hadamard_f32__cpu.c~~hadamard~~0x4f293c8,~~0x4f293c9,
cpu_thread_range_drops_remainder~~Q~~cpu/src/cpu_internal.h~~cpu~~  *e = *b + q + (tid < rem ? 1 : 0);~~  *e = *b + q;
cpu_gemm_group_scale_of_group0_avx512~~F~~cpu/src/resq_gemm_q4q8_f16__cpu.c~~gemm~~    const float *xs = (hi ? a->xs_hi : a->xs_lo) + tm->g, *ws = hi ? a->ws_hi : a->ws_lo;~~    const float *xs = (hi ? a->xs_hi : a->xs_lo), *ws = hi ? a->ws_hi : a->ws_lo;
cpu_gemm_drop_zero_point_generic~~F~~cpu/src/resq_gemm_q4q8_f16__cpu.c~~gemm~~      float t = (av * ws[l]) * (float)(acc[i][l] - z * wsum[l]);~~      float t = (av * ws[l]) * (float)(acc[i][l]); (void)z;
cpu_quant_round_half_away_generic~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~  float c = nearbyintf(v / s) + z;~~  float c = roundf(v / s) + z;
cpu_quant_floor_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~_mm512_sub_epi32(mbits, _mm512_sllv_epi32(one_i, _mm512_sub_epi32(sh, one_i)))~~_mm512_sub_epi32(mbits, _mm512_setzero_si512())
cpu_quant_lo16_no_tie_fallback_avx512~~Q~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~  if (_mm512_testn_epi16_mask(wmin, _mm512_set1_epi16((short)0xFFFC)))~~  if (0 & _mm512_testn_epi16_mask(wmin, _mm512_set1_epi16((short)0xFFFC)))
cpu_quant_lo16_tie_min_three_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~_mm512_min_epu16(_mm512_min_epu16(y[0], y[1]), _mm512_min_epu16(y[2], y[3]))~~_mm512_min_epu16(_mm512_min_epu16(y[0], y[1]), y[2])
cpu_quant_lo16_no_half_offset_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~_mm512_add_ps(_mm512_set1_ps(192.0f), z), _mm512_set1_ps(0.5f)),~~_mm512_add_ps(_mm512_set1_ps(192.0f), z), _mm512_set1_ps(0.0f)),
cpu_quant_no_tie_fallback_general_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~  *near |= _mm512_testn_epi32_mask(u, k->t);~~  *near |= 0 & _mm512_testn_epi32_mask(u, k->t);
cpu_quant_g128_range_no_zero_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~sx = _mm512_max_epi16(reduce_g128_maxs16(vx), _mm512_setzero_si512());~~sx = reduce_g128_maxs16(vx);
cpu_quant_g128_range_lo_tail_dropped_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~    vn[g] = _mm512_inserti64x4(a3, n, 0);~~    vn[g] = _mm512_inserti64x4(a3, _mm256_max_epu16(_mm512_castsi512_si256(n3), _mm512_extracti64x4_epi64(n3, 1)), 0); (void)n;
cpu_quant_joint_folded_hi_unclamped_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~  c3 = _mm512_min_epi32(_mm512_max_epi32(c3, _mm512_setzero_si512()), _mm512_set1_epi32(255));~~  c3 = _mm512_min_epi32(c3, _mm512_set1_epi32(255));
cpu_quant_joint_folded_hi_tie_ignored_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~  if (_mm512_testn_epi16_mask(wmin, _mm512_set1_epi16((short)0xFFFC)) | near) {~~  if (_mm512_testn_epi16_mask(wmin, _mm512_set1_epi16((short)0xFFFC)) | (0 & near)) {
cpu_quant_lo16_pair_order_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~perm2 = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);~~perm2 = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 3, 7, 11, 15, 2, 6, 10, 14);
cpu_quant_joint_last_group_unmasked_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~        else _mm512_mask_storeu_epi8(dlo, (__mmask64)0x00FFFFFFFFFFFFFFull, o);~~        else _mm512_storeu_si512(dlo, o);
cpu_quant_logical_shift_avx512~~F~~cpu/src/resq_quant_act_f32_q4q8__cpu.c~~quant~~return _mm512_sra_epi32(u, k->sh);~~return _mm512_srl_epi32(u, k->sh);
f16_round_ties_away~~F~~ref/src/dtype.c~~dtype~~  if (rem > half || (rem == half && (q & 1u))) q++;~~  if (rem >= half) q++;
hadamard_descending_strides~~F~~ref/src/resq_hadamard_f32__ref.c~~hadamard~~    for (int64_t h = 1; h < m; h <<= 1)~~    for (int64_t h = m / 2; h >= 1; h >>= 1)
gemm_epilogue_hi_first~~F~~ref/src/resq_gemm_q4q8_f16__ref.c~~gemm~~      for (int part = 0; part < 2; part++)~~      for (int part = 1; part >= 0; part--)
qweight_mse_non_strict~~F~~ref/src/resq_quant_weight_f32__ref.c~~quant~~    if (err < best) {~~    if (err <= best) {
pca_no_damping~~F~~ref/src/resq_pca_f64__ref.c~~pca~~  const double sh = damp * mean;~~  const double sh = 0.0 * damp * mean;
EOF
)

if [ "$LIST" = 1 ]; then
  echo "$MUTANTS" | awk -F'~~' '{printf("%-36s %s  %-45s ctest -R %s\n", $1, $2 == "Q" ? "quick+full" : "full      ", $3, $4)}'
  exit 0
fi

have_avx512=0
grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null && have_avx512=1
have_amx=0
grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && grep -qw amx_tile /proc/cpuinfo && [ "$have_avx512" = 1 ] && have_amx=1

# ------------------------------------------------------------------ the scratch copy
SCR=$(mktemp -d "${TMPDIR:-/tmp}/resq-mutation.XXXXXX")
if [ "$KEEP" = 1 ]; then
  echo "mutation_check: scratch directory $SCR (kept)"
else
  trap 'rm -rf "$SCR"' EXIT
fi
# tracked and untracked-but-not-ignored files: the working tree as it is, without builds
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done |
    tar --null -T - -cf - | tar -xf - -C "$SCR"
else # not a git checkout (a source tarball): everything except build directories
  tar --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$SCR"
fi
BD=$SCR/build
t0=$(date +%s)
# RESQ_WERROR off: a mutant may leave a variable unused; bench off: not checked here
cmake -S "$SCR" -B "$BD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESQ_CUDA=OFF -DRESQ_BUILD_BENCH=OFF \
  -DRESQ_WERROR=OFF > "$SCR/configure.log" 2>&1 || { tail -20 "$SCR/configure.log"; exit 1; }
cmake --build "$BD" -j "$JOBS" > "$SCR/build.log" 2>&1 || { grep -E "error|FAILED" "$SCR/build.log" | head; exit 1; }
echo "mutation_check: scratch copy built in $(( $(date +%s) - t0 )) s ($MODE form)"

# checks: each returns 0 when it PASSES (the mutant survived it)
run_ctest() { # run_ctest REGEX|all LOG
  local sel=()
  [ "$1" != all ] && sel=(-R "$1")
  ctest --test-dir "$BD" -j "$JOBS" --timeout 600 -E golden_regen "${sel[@]}" --output-on-failure > "$2" 2>&1
}
run_acc() { (cd "$SCR" && ci/gate_accuracy.sh --build "$BD") > "$1" 2>&1; }
# the failed ctest entries (comma-separated) and the regression count of a log; never fail
failed_tests() { { grep -E '^[[:space:]]*[0-9]+ - ' "$1" || true; } | awk '{print $3}' | paste -sd, - || true; }
regressions() { grep -c '^REGRESSION' "$1" || true; }
run_det() { (cd "$SCR" && ci/gate_determinism.sh --build "$BD") > "$1" 2>&1; }

# the quick form checks the unmutated copy on the ctest entries its mutants use
base_sel=all
if [ "$MODE" = quick ] && [ -z "$ONLY" ]; then
  base_sel=$(echo "$MUTANTS" | awk -F'~~' '$2 == "Q" { print $4 }' | sort -u | paste -sd'|' -)
fi
echo "mutation_check: the unmutated copy must pass every check (ctest: $base_sel)"
run_ctest "$base_sel" "$SCR/base_ctest.log" || { echo "mutation_check: FAILED: ctest fails without any mutation"; grep -E "Failed|\*\*\*" "$SCR/base_ctest.log" | head; exit 1; }
run_acc "$SCR/base_acc.log" || { echo "mutation_check: FAILED: the accuracy gate fails without any mutation"; tail -20 "$SCR/base_acc.log"; exit 1; }
run_det "$SCR/base_det.log" || { echo "mutation_check: FAILED: the determinism gate fails without any mutation"; tail -20 "$SCR/base_det.log"; exit 1; }

killed=0
survived=0
skipped=0
errors=0
summary=()
# split a mutant line at "~~" (C code has "|" but never "~~")
split_line() {
  local s=$1
  F=()
  while [[ $s == *'~~'* ]]; do
    F+=("${s%%~~*}")
    s=${s#*~~}
  done
  F+=("$s")
}
# The quick form builds only the Q mutants, but it checks the text of every other one, so that a
# full-only mutant whose code changed fails here instead of rotting until the next full run
# (cpu_gemm_drop_zero_point_generic did: its line's indentation changed and no CI run noticed).
# mutant_applies NAME FILE FROM: the mutant's file exists and FROM occurs in it exactly once;
# otherwise it says why (update the mutant) and fails
mutant_applies() {
  if [ ! -f "$SCR/$2" ]; then
    echo "  ERROR    $1: $2 does not exist (update the mutant)"
    return 1
  fi
  local cnt
  cnt=$(FROM="$3" perl -0ne 'BEGIN { $n = 0 } $n += () = /\Q$ENV{FROM}\E/g; END { print $n }' "$SCR/$2")
  if [ "$cnt" != 1 ]; then
    echo "  ERROR    $1: the text to mutate occurs $cnt times in $2 (expected once; update the mutant):"
    echo "             $3"
    return 1
  fi
}
if [ "$MODE" = quick ] && [ -z "$ONLY" ]; then
  while IFS= read -r line; do
    [ -z "$line" ] && continue
    split_line "$line"
    [ ${#F[@]} = 6 ] && [ "${F[1]}" != Q ] || continue # bad lines and Q mutants: the loop below
    mutant_applies "${F[0]} (full set)" "${F[2]}" "${F[4]}" || errors=$((errors + 1))
  done <<< "$MUTANTS"
fi
while IFS= read -r line; do
  [ -z "$line" ] && continue
  split_line "$line"
  if [ ${#F[@]} != 6 ]; then
    echo "  ERROR    bad mutant line (6 fields separated by ~~): $line"
    errors=$((errors + 1))
    continue
  fi
  name=${F[0]} set=${F[1]} file=${F[2]} regex=${F[3]} from=${F[4]} to=${F[5]}
  if [ -n "$ONLY" ] && [ "$name" != "$ONLY" ]; then continue; fi
  if [ -z "$ONLY" ] && [ "$MODE" = quick ] && [ "$set" != Q ]; then continue; fi
  if [[ "$name" == *avx512* ]] && [ "$have_avx512" = 0 ]; then
    echo "  SKIP     $name: this CPU has no AVX-512 VNNI (the mutated path does not run)"
    skipped=$((skipped + 1))
    continue
  fi
  if [[ "$name" == *amx* ]] && [ "$have_amx" = 0 ]; then
    echo "  SKIP     $name: this CPU has no AMX-TILE/AMX-INT8 (the mutated path does not run)"
    skipped=$((skipped + 1))
    continue
  fi
  f=$SCR/$file
  if ! mutant_applies "$name" "$file" "$from"; then
    errors=$((errors + 1))
    continue
  fi
  cp -p "$f" "$SCR/orig"
  FROM="$from" TO="$to" perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$f"
  if cmp -s "$f" "$SCR/orig"; then
    echo "  ERROR    $name: the edit changed nothing"
    errors=$((errors + 1))
    continue
  fi
  t1=$(date +%s)
  caught=()
  if ! cmake --build "$BD" -j "$JOBS" > "$SCR/$name.build.log" 2>&1; then
    echo "  ERROR    $name: the mutant does not compile (a mutant must be a plausible bug that builds):"
    grep -E "error" "$SCR/$name.build.log" | head -3 | sed 's/^/             /'
    errors=$((errors + 1))
  else
    if [ "$MODE" = quick ] && [ -z "$ONLY" ]; then
      run_ctest "$regex" "$SCR/$name.ctest.log" || caught+=("ctest -R $regex")
      if [ ${#caught[@]} = 0 ]; then
        run_acc "$SCR/$name.acc.log" || caught+=("gate_accuracy")
      fi
      if [ ${#caught[@]} = 0 ]; then
        run_det "$SCR/$name.det.log" || caught+=("gate_determinism")
      fi
    else
      run_ctest all "$SCR/$name.ctest.log" || caught+=("ctest:$(failed_tests "$SCR/$name.ctest.log")")
      run_acc "$SCR/$name.acc.log" || caught+=("gate_accuracy($(regressions "$SCR/$name.acc.log") regressions)")
      run_det "$SCR/$name.det.log" || caught+=("gate_determinism")
    fi
    dt=$(( $(date +%s) - t1 ))
    if [ ${#caught[@]} -gt 0 ]; then
      killed=$((killed + 1))
      printf '  KILLED   %-36s %4ds  by %s\n' "$name" "$dt" "${caught[*]}"
      first=$(grep -h -m1 -E "^(REPRO|REGRESSION|gate_determinism: FAILED)" "$SCR/$name".*.log 2>/dev/null | head -1 || true)
      [ -n "$first" ] && echo "             e.g. $first"
    else
      survived=$((survived + 1))
      printf '  SURVIVED %-36s %4ds  (%s: %s -> %s)\n' "$name" "$dt" "$file" "$from" "$to"
      summary+=("$name")
    fi
  fi
  cp -p "$SCR/orig" "$f"
  touch "$f" # newer than the mutant's objects: the next build recompiles it
done <<< "$MUTANTS"
cmake --build "$BD" -j "$JOBS" > /dev/null 2>&1 || true

total=$((killed + survived))
echo "mutation_check: $killed of $total mutants killed, $survived survived, $skipped skipped, $errors broken mutant definitions ($(( $(date +%s) - t0 )) s)"
if [ "$total" = 0 ] && [ "$errors" = 0 ]; then
  echo "mutation_check: FAILED: no mutant ran${ONLY:+ (is '$ONLY' a mutant? --list)}"
  exit 1
fi
if [ "$survived" -gt 0 ] || [ "$errors" -gt 0 ]; then
  [ "$survived" -gt 0 ] && echo "mutation_check: FAILED: surviving mutants: ${summary[*]} (the tests and gates do not catch them)"
  [ "$errors" -gt 0 ] && echo "mutation_check: FAILED: $errors mutant definitions no longer apply (update them)"
  exit 1
fi
echo "mutation_check: PASSED"
