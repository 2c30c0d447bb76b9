#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Performance gate: compare this machine's figures with the committed baseline
# ci/baselines/perf.tsv. Two kinds of rows:
#
#   ratio  t(kernel) / t(baseline benchmark), both measured in the same run of the
#          same bench program (bench/, Google Benchmark), e.g. the CPU Hadamard vs
#          a memcpy of the same bytes, the CPU mixed GEMM vs oneDNN's bf16 or u8s8
#          matmul. A ratio cancels most of the machine (clock, memory, load); the
#          CPU time of the benchmark thread (everything single-threaded here:
#          RESQ_CPU_THREADS=OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1) is used, not
#          wall time, because time-sharing with other jobs inflates wall time only
#          (column 'clock' = cpu; GPU rows use real = the CUDA-event manual time).
#          Each program runs REPS times (alternating with the other programs); a
#          benchmark's time is its minimum over the REPS runs (interference only
#          ever adds time). FAIL if ratio > committed * (1 + margin) in this
#          measurement and in a second one made to confirm it (the lower is judged).
#   instr  instructions executed inside one reference function (valgrind
#          --tool=callgrind --toggle-collect=<function>) for a fixed `resq`
#          invocation on fixed inputs: exact and repeatable for one binary, so the
#          reference kernels, whose timings are too noisy to gate on this host,
#          are gated on their work. FAIL if count > committed * (1 + margin).
#          The counts depend on the compiler: with a compiler other than the one
#          the baseline was recorded with (header line '# cc:') they are reported
#          but cannot fail.
# Ratios depend on the microarchitecture (a vpdpbusd kernel against oneDNN is not
# the same contest on Zen 5 and on Sapphire Rapids): they are judged only on the
# CPU the baseline was recorded on (header line '# cpu:', vendor/family/model
# from /proc/cpuinfo). On another CPU they are measured, printed and reported as
# 'not comparable'; record a baseline for that machine with --update
# --baseline FILE and point CI at it.
# Rows whose benchmark is skipped (no oneDNN; GPU rows on a machine without a
# GPU) or not built are reported as SKIP and do not fail; an error in a
# benchmark (e.g. its pre-timing check failed) fails.
#
#   ci/gate_perf.sh                  build (BUILD_DIR, default build-perf), measure, compare
#   ci/gate_perf.sh --study N        run the ratio rows N times (REPS runs each) and
#                                    print each row's spread: how the margins were set
#   ci/gate_perf.sh --update [N]     rewrite the values of ci/baselines/perf.tsv from
#                                    the median of N (default 5) measurements, and the
#                                    ratio margins as max(MARGIN_FLOOR, 1.5 x the largest
#                                    relative deviation from that median), rounded up to 5%,
#                                    never below the committed margin (a few agreeing runs
#                                    do not prove a row quiet); --reset-margins drops that
#   options: --reps R (default 5)  --only ratio|instr  --no-build  --baseline FILE
# Environment: BUILD_DIR, JOBS, RESQ_CUDA (default: AUTO if nvidia-smi sees a GPU, else OFF),
#              MARGIN_FLOOR (default 0.15).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

REPS=5 ONLY="" NO_BUILD=0 STUDY=0 UPDATE=0 RESET_MARGINS=0 BASE="$ROOT/ci/baselines/perf.tsv"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --no-build) NO_BUILD=1 ;;
    --study) STUDY=$2; shift ;;
    --update) UPDATE=5; case "${2:-}" in [0-9]*) UPDATE=$2; shift ;; esac ;;
    --reset-margins) RESET_MARGINS=1 ;;
    --baseline) BASE=$2; shift ;;
    -h|--help) sed -n '3,38p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gate_perf: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$BASE" ] || { echo "gate_perf: no baseline file $BASE" >&2; exit 2; }
MARGIN_FLOOR=${MARGIN_FLOOR:-0.15}
BUILD_DIR=${BUILD_DIR:-build-perf}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
JOBS=${JOBS:-$(nproc)}

. ci/deps.sh
resq_need_packages cmake ninja-build gcc g++ libbenchmark-dev libdnnl-dev libopenblas-dev liblapack-dev valgrind

# ---------------------------------------------------------------- build
if [ -z "${RESQ_CUDA:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then RESQ_CUDA=AUTO; else RESQ_CUDA=OFF; fi
fi
if [ "$NO_BUILD" = 0 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESQ_WERROR=ON -DRESQ_CUDA="$RESQ_CUDA" \
    -DRESQ_BUILD_BENCH=ON >"$BUILD_DIR.configure.log" 2>&1 || { cat "$BUILD_DIR.configure.log"; exit 1; }
  targets=(resq npy_tool)
  [ "$ONLY" = instr ] || targets+=(resq_bench_programs)
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}" >"$BUILD_DIR.build.log" 2>&1 \
    || { tail -30 "$BUILD_DIR.build.log"; echo "gate_perf: build failed" >&2; exit 1; }
fi
BIN=$BUILD_DIR/bench
W=$(mktemp -d /tmp/resq_gate_perf.XXXXXX)
trap 'rm -rf "$W"' EXIT

CC_NOW=$( (cc --version 2>/dev/null || echo unknown) | head -1)
CC_BASE=$(sed -n 's/^# cc: //p' "$BASE" | head -1)
# the CPU identity that ratio rows are valid for: vendor, family, model (not the
# stepping or the clock; the model name is informative only)
cpu_field() { awk -F': *' -v k="$1" '$1 ~ "^" k "[ \t]*$" { print $2; exit }' /proc/cpuinfo 2>/dev/null; }
CPU_NOW="$(cpu_field vendor_id) family $(cpu_field 'cpu family') model $(cpu_field model) ($(cpu_field 'model name'))"
CPU_BASE=$(sed -n 's/^# cpu: //p' "$BASE" | head -1)
cpu_key() { sed 's/ (.*//' <<<"$1"; }
CPU_SAME=0; [ -n "$CPU_BASE" ] && [ "$(cpu_key "$CPU_NOW")" = "$(cpu_key "$CPU_BASE")" ] && CPU_SAME=1
echo "gate_perf: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $CC_NOW; baseline $(basename "$BASE") (cc: ${CC_BASE:-?})"
echo "gate_perf: this CPU: $CPU_NOW; baseline CPU: ${CPU_BASE:-unrecorded}$([ "$CPU_SAME" = 1 ] || echo ' -> ratio rows are measured but not judged')"
[ -z "${RESQ_CPU_ISA:-}" ] || echo "gate_perf: note: RESQ_CPU_ISA=$RESQ_CPU_ISA is set and applies to the CPU-backend benchmarks"

# ---------------------------------------------------------------- ratio rows
# run_ratio <out.tsv>: measure every ratio row once (REPS runs per program) and write
#   name <TAB> status <TAB> value   (status ok | skip:<why> | error:<why>)
run_ratio() {
  local out=$1 prog names filt rep json
  : >"$out"
  : >"$W/times.tsv"
  mapfile -t PROGS < <(awk -F'\t' '$1 == "ratio" { print $2 }' "$BASE" | sort -u)
  for rep in $(seq "$REPS"); do
    for prog in "${PROGS[@]}"; do
      [ -x "$BIN/$prog" ] || continue
      # every benchmark the rows of this program name, as an anchored alternation
      filt=$(awk -F'\t' -v p="$prog" '$1 == "ratio" && $2 == p { print $3; print $4 }' "$BASE" | sort -u |
             sed 's/[][().*+?^$|\\]/\\&/g' | paste -sd'|')
      json="$W/$prog.$rep.json"
      # single-threaded everywhere; OpenMP programs with close binding, as bench/run_all does;
      # the GEMMs' rotated weight copies total 64 MiB (2x this machine's L3: M = 1 still reads
      # its weights from DRAM) instead of bench/'s 256 MiB, which would cost a minute of set-up
      env -u OPENBLAS_CORETYPE RESQ_BENCH_COLD_BYTES="${RESQ_BENCH_COLD_BYTES:-67108864}" RESQ_BENCH_SET=quick RESQ_CPU_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        OMP_PROC_BIND=close OMP_PLACES=cores \
        "$BIN/$prog" --benchmark_filter="^($filt)(/|\$)" --benchmark_min_time=0.1 --benchmark_repetitions=1 \
        --benchmark_out="$json" --benchmark_out_format=json --benchmark_format=console >"$W/$prog.$rep.log" 2>&1 || true
      [ -s "$json" ] && awk -v prog="$prog" -f bench/report/gbjson.awk "$json" |
        awk -F'\t' -v OFS='\t' '$1 == "B" && $4 == "iteration" { print $2, $3, $8, $9, $10, $11 }' >>"$W/times.tsv"
    done
  done
  # min wall and CPU time per (program, benchmark); an error in any run is kept
  awk -F'\t' -v OFS='\t' -v base="$BASE" '
    { k = $1 SUBSEP $2
      if ($5 == 1) { err[k] = $6; next }
      if (!(k in tr) || $3 < tr[k]) tr[k] = $3
      if (!(k in tc) || $4 < tc[k]) tc[k] = $4 }
    END {
      while ((getline line < base) > 0) {
        if (line ~ /^#/ || line == "") continue
        split(line, f, "\t")
        if (f[1] != "ratio") continue
        a = f[2] SUBSEP f[3]; b = f[2] SUBSEP f[4]; name = f[3] " / " f[4]
        if (a in err || b in err) {
          e = (a in err) ? err[a] : err[b]
          if (e ~ /^skipped/) print name, "skip:" e, "-"
          else print name, "error:" e, "-"
        } else if (!(a in tc) || !(b in tc)) print name, "skip:not built or not registered here", "-"
        else if (f[7] == "real") printf "%s\t%s\t%.6g\n", name, "ok", tr[a] / tr[b]
        else printf "%s\t%s\t%.6g\n", name, "ok", tc[a] / tc[b]
      } }' "$W/times.tsv" >"$out"
}

# ---------------------------------------------------------------- instr rows
make_inputs() {
  local T=$BUILD_DIR/verify/npy_tool
  mkdir -p "$W/in"
  (cd "$W/in" &&
   "$T" fill f16 4,4096 randn:11 x4096.npy &&
   "$T" fill f16 8,512 randn:12 x512.npy &&
   "$T" fill f32 64,512 randn:13 w512.npy &&
   "$T" fill f16 64,64 randn:14 x64.npy &&
   "$T" fill f32 32,64 randn:15 w64.npy &&
   "$BUILD_DIR/ref/resq" quant-act --x x512.npy --out qa512 >/dev/null &&
   "$BUILD_DIR/ref/resq" quant-weight --w w512.npy --out qw512 >/dev/null)
}
# run_instr <out.tsv>: name <TAB> ok <TAB> count
run_instr() {
  local out=$1 fn args n=0
  : >"$out"
  while IFS=$'\t' read -r kind prog fn args _; do
    [ "$kind" = instr ] || continue
    n=$((n + 1))
    rm -rf "$W/in/out"
    # shellcheck disable=SC2086 # args is a word list from the baseline file
    (cd "$W/in" && valgrind --tool=callgrind --callgrind-out-file="$W/cg.$n" --toggle-collect="$fn" \
       "$BUILD_DIR/ref/resq" $args --out out >/dev/null 2>"$W/cg.$n.log") || {
      printf '%s (%s)\terror:resq %s failed under callgrind (%s)\t-\n' "$fn" "$args" "$args" "$(grep -m1 error "$W/cg.$n.log")" >>"$out"
      continue
    }
    printf '%s (%s)\tok\t%s\n' "$fn" "$args" "$(sed -n 's/^totals: *//p' "$W/cg.$n" | awk '{ print $1 }')" >>"$out"
  done < <(grep -v '^#' "$BASE")
}

# ---------------------------------------------------------------- study / update
measure_all() { # <dir> <n>: n measurements into dir/ratio.<i>.tsv, dir/instr.<i>.tsv
  local d=$1 n=$2 i
  for i in $(seq "$n"); do
    [ "$ONLY" = instr ] || { run_ratio "$d/ratio.$i.tsv"; echo "  ratio measurement $i/$n done (load $(cut -d' ' -f1 /proc/loadavg))"; }
    [ "$ONLY" = ratio ] || { [ "$i" = 1 ] && make_inputs; run_instr "$d/instr.$i.tsv"; }
  done
}
stats() { # <files...>: name  n  min  median  max  maxdev (max |v/median - 1|)
  awk -F'\t' '$2 == "ok" { v[$1] = v[$1] " " $3; if (!($1 in o)) { o[$1] = ++no; nm[no] = $1 } }
    END { for (k = 1; k <= no; k++) { name = nm[k]; n = split(v[name], a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
            med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            dev = 0; for (i = 1; i <= n; i++) { d = a[i] / med - 1; if (d < 0) d = -d; if (d > dev) dev = d }
            printf "%s\t%d\t%.10g\t%.10g\t%.10g\t%.4f\n", name, n, a[1], med, a[n], dev } }' "$@"
}
if [ "$STUDY" -gt 0 ] || [ "$UPDATE" -gt 0 ]; then
  N=$STUDY; [ "$UPDATE" -gt 0 ] && N=$UPDATE
  echo "gate_perf: $N measurements, $REPS runs of each program per measurement"
  measure_all "$W" "$N"
  printf 'row\tn\tmin\tmedian\tmax\tmax_rel_dev\n'
  { [ "$ONLY" = instr ] || stats "$W"/ratio.*.tsv; [ "$ONLY" = ratio ] || stats "$W"/instr.*.tsv; } | tee "$W/stats.tsv"
  if [ "$UPDATE" -gt 0 ]; then
    awk -F'\t' -v OFS='\t' -v statf="$W/stats.tsv" -v floor="$MARGIN_FLOOR" -v cc="$CC_NOW" -v cpu="$CPU_NOW" -v only="$ONLY" \
        -v reset="$RESET_MARGINS" '
      BEGIN { while ((getline l < statf) > 0) { split(l, s, "\t"); med[s[1]] = s[4]; dev[s[1]] = s[6] } }
      /^# cc: / { print "# cc: " cc; if (!cpuput) print "# cpu: " cpu; cpuput = 1; next }
      /^# cpu: / { if (!cpuput) print "# cpu: " cpu; cpuput = 1; next }
      /^#/ || $0 == "" { print; next }
      { name = ($1 == "ratio") ? $3 " / " $4 : $3 " (" $4 ")"
        if (name in med && (only == "" || only == $1)) {
          $5 = med[name]
          if ($1 == "ratio") {
            m = 1.5 * dev[name]; if (m < floor) m = floor; m = int(m * 20 + 0.999) / 20
            if (!reset && m < $6 + 0) m = $6 + 0
            $6 = sprintf("%.2f", m) }
        }
        print }' "$BASE" >"$W/new.tsv"
    cp "$W/new.tsv" "$BASE"
    echo "gate_perf: wrote $BASE (review the diff, then commit it)"
  fi
  exit 0
fi

# ---------------------------------------------------------------- gate
# compare <now.tsv> <quiet>: print the verdict of every row (quiet=1: only the count of
# failing ratio rows, for the confirmation below); exit 1 on a failure
compare() {
  awk -F'\t' -v now="$1" -v quiet="$2" -v cc_same="$([ "$CC_NOW" = "$CC_BASE" ] && echo 1 || echo 0)" -v only="$ONLY" \
      -v cpu_same="$CPU_SAME" \
      -v confirmed="${3:-0}" '
  BEGIN { while ((getline l < now) > 0) { split(l, s, "\t"); st[s[1]] = s[2]; val[s[1]] = s[3] } }
  /^#/ || $0 == "" { next }
  only != "" && $1 != only { next }
  { name = ($1 == "ratio") ? $3 " / " $4 : $3 " (" $4 ")"
    base = $5; m = $6; v = val[name]; state = st[name]
    if (state == "") { verdict = "FAIL: not measured"; bad++ }
    else if (state ~ /^skip/) { verdict = "SKIP (" substr(state, 6) ")"; skip++; v = "-" }
    else if (state ~ /^error/) { verdict = "FAIL: " substr(state, 7); bad++; v = "-" }
    else if ($1 == "ratio" && !cpu_same) { verdict = sprintf("not judged: %+.1f%% against a baseline from another CPU", (v / base - 1) * 100); skip++ }
    else if (v > base * (1 + m)) {
      if ($1 == "instr" && !cc_same) { verdict = sprintf("not comparable: +%.1f%% with another compiler", (v / base - 1) * 100); skip++ }
      else { verdict = sprintf("FAIL: %.1f%% above the baseline (margin %.0f%%)%s", (v / base - 1) * 100, m * 100,
                               ($1 == "ratio" && confirmed) ? ", in both measurements" : ""); bad++; if ($1 == "ratio") rbad++ }
    } else if (v < base / (1 + m)) { verdict = sprintf("ok, %.1f%% better than the baseline: consider --update", (1 - v / base) * 100); good++ }
    else { verdict = "ok"; good++ }
    if (quiet) next
    printf "%-6s %-84s %12.6g %12.6g %6.0f%%  %s\n", $1, name, base, v, m * 100, verdict
    if (verdict ~ /^FAIL/) printf "REPRO: ci/gate_perf.sh --only %s   # row: %s (baseline %s, now %s)\n", $1, name, base, v }
  END { if (quiet) { print rbad + 0; exit 0 }
        printf "gate_perf: %d ok, %d skipped, %d failed\n", good, skip, bad; exit bad > 0 || good == 0 }' "$BASE"
}
[ "$ONLY" = instr ] || run_ratio "$W/ratio.tsv"
if [ "$ONLY" != ratio ]; then make_inputs; run_instr "$W/instr.tsv"; fi
touch "$W/ratio.tsv" "$W/instr.tsv" # (one of them is not measured with --only)
cat "$W/ratio.tsv" "$W/instr.tsv" >"$W/now.tsv"
CONFIRMED=0
if [ "$(compare "$W/now.tsv" 1)" -gt 0 ]; then
  # A ratio row above its margin is measured once more; the lower of the two ratios is
  # judged: a regression persists, an interference from other jobs rarely lasts two
  # measurements (the margins come from single measurements, see ci/README.md).
  echo "gate_perf: a ratio is above its margin: measuring all ratio rows a second time to confirm"
  run_ratio "$W/ratio2.tsv"
  awk -F'\t' -v OFS='\t' 'NR == FNR { if ($2 == "ok") v2[$1] = $3; next }
    $2 == "ok" && ($1 in v2) && v2[$1] < $3 { $3 = v2[$1] } { print }' "$W/ratio2.tsv" "$W/ratio.tsv" >"$W/ratio.min.tsv"
  cat "$W/ratio.min.tsv" "$W/instr.tsv" >"$W/now.tsv"
  CONFIRMED=1
fi
printf '%-6s %-84s %12s %12s %7s  %s\n' kind row baseline now margin verdict
compare "$W/now.tsv" 0 "$CONFIRMED"
