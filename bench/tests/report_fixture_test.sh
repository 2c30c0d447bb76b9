#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/tests/report_fixture_test.sh -- the report pipeline of bench/run_all
# (report/gbjson.awk -> results.awk -> tables.awk -> report.sh, charts.sh) on
# hand-written Google Benchmark JSON whose answers are known:
#   - 3 repetitions with aggregates: the median aggregate is the value used;
#   - a ResQ GEMM at 250 us against bf16 at 1000 us and int8 at 500 us in the
#     same program: x bf16 = 4, x int8 = 2, same_process = yes;
#   - its paired ratio over int8 (counters paired_vs_peer, paired_peer_q1/_q3/_n)
#     carried to gemm.tsv's last four columns and shown in report.md; a ResQ GEMM
#     at M = 64 without those counters leaves them empty;
#   - a stage moving 2e9 B/s against a memcpy of the same bytes at 8e9 B/s: 0.25,
#     and its paired ratio counter carried to the table;
#   - "skipped: ..." errors are skips (with the reason), other errors failures;
#   - RESQ_BENCH_ONCE names (/iterations:1/repeats:1) are stripped;
#   - runs of interleaved repetitions come out in registration order;
#   - the offline and layer tables pick up their rows; report.sh runs to the end.
# usage: report_fixture_test.sh <bench source dir> <scratch dir>
set -euo pipefail
SRC=$1
W=$2
RPT="$SRC/report"
rm -rf "$W"
mkdir -p "$W/raw"
fail=0
check() { # check <what> <got> <want>
  if [ "$2" = "$3" ]; then echo "ok: $1 = $2"
  else echo "FAILED: $1: got '$2', want '$3'; REPRO: bench/tests/report_fixture_test.sh bench $W"; fail=1; fi
}

bm() { # bm name run_type aggregate rep real_time(us) counters("k=v k=v") label [error]
  local err="" ctrs="" kv unit=""
  [ -n "${8:-}" ] && err="\"error_occurred\": true,
      \"error_message\": \"$8\","
  for kv in $6; do ctrs="$ctrs\"${kv%%=*}\": ${kv#*=},
      "; done
  [ "$3" = cv ] && unit="\"aggregate_unit\": \"percentage\","
  cat <<EOF
    {
      "name": "$1",
      "run_name": "$1",
      "run_type": "$2",
      ${3:+\"aggregate_name\": \"$3\",}
      $unit
      "repetitions": 3,
      "repetition_index": $4,
      "threads": 1,
      $err
      "iterations": 10,
      "real_time": $5,
      "cpu_time": $5,
      "time_unit": "us",
      $ctrs"label": "$7"
    },
EOF
}
json() { # json <file> <context lines> <benchmarks...>
  local f=$1 ctx=$2
  shift 2
  { printf '{\n  "context": {\n    "date": "x",\n%s\n    "resq_set": "full"\n  },\n  "benchmarks": [\n' "$ctx"
    printf '%s\n' "$@" | sed '$ s/},$/}/'
    printf '  ]\n}\n'; } >"$f"
}

G=gemm_q4q8_f16__cpu/M:1/N:64/K:64/real_time
B=gemm_bf16_f32__onednn/M:1/N:64/K:64/real_time
I=gemm_u8s8_f32__onednn/M:1/N:64/K:64/real_time
G64=gemm_q4q8_f16__cpu/M:64/N:64/K:64/real_time
c="ops=1.0e9 bytes=1.0e9 wbytes=1.0e9 probe_bw=2.0e9"
cp="$c paired_vs_peer=1.9 paired_peer_q1=1.8 paired_peer_q3=2.1 paired_peer_n=4.1000000000000000e+01"
json "$W/raw/bench_gemm_cpu.json" '    "resq_layers_N64_K64": "toy:q_proj",' \
  "$(bm $B iteration "" 0 900 "$c" "roof=machine_peak_dpbf16;impl=brg")" \
  "$(bm $B iteration "" 1 1000 "$c" "roof=machine_peak_dpbf16;impl=brg")" \
  "$(bm $B iteration "" 2 1100 "$c" "roof=machine_peak_dpbf16;impl=brg")" \
  "$(bm $B aggregate median 0 1000 "$c" "roof=machine_peak_dpbf16;impl=brg")" \
  "$(bm $I iteration "" 0 500 "$c" "baseline=gemm_bf16_f32__onednn/M:1/N:64/K:64;roof=machine_peak_dpbusd")" \
  "$(bm $G iteration "" 0 260 "$cp" "baseline=gemm_bf16_f32__onednn/M:1/N:64/K:64;peer=gemm_u8s8_f32__onednn/M:1/N:64/K:64;roof=machine_peak_dpbusd;impl=resq")" \
  "$(bm $G iteration "" 1 240 "$cp" "baseline=gemm_bf16_f32__onednn/M:1/N:64/K:64;peer=gemm_u8s8_f32__onednn/M:1/N:64/K:64;roof=machine_peak_dpbusd;impl=resq")" \
  "$(bm $G aggregate median 0 250 "$cp" "baseline=gemm_bf16_f32__onednn/M:1/N:64/K:64;peer=gemm_u8s8_f32__onednn/M:1/N:64/K:64;roof=machine_peak_dpbusd;impl=resq")" \
  "$(bm $G aggregate cv 0 0.05 "$c" "")" \
  "$(bm $G64 iteration "" 0 1000 "$c" "roof=machine_peak_dpbusd;impl=resq")"
json "$W/raw/bench_quant.json" "" \
  "$(bm memcpy/bytes:1000/real_time iteration "" 0 1 'bytes=8.0e9' "")" \
  "$(bm quant_act_f16_q4q8__cpu/K:64/group:64/r:8/rows:1/real_time iteration "" 0 4 'bytes=2.0e9 paired_vs_memcpy=0.3 paired_q1=0.2 paired_q3=0.4 paired_n=1.1000000000000000e+01' "baseline=memcpy/bytes:1000")" \
  "$(bm hadamard_f16__cuda/n:64/rows:1/manual_time iteration "" 0 0 "" "" "skipped: no usable GPU: test")" \
  "$(bm quant_act_f16_q4q8__ref/K:64/group:64/r:8/rows:1/real_time iteration "" 0 0 "" "" "wrong result at row 0")"
json "$W/raw/bench_pca_gptq.json" "" \
  "$(bm gptq_f64__cpu/N:64/K:64/tokens:128/iterations:1/repeats:1/real_time iteration "" 0 2500000 'ops=1.0e9 obj_vs_rtn=0.5' "impl=cpu")"
json "$W/raw/bench_layer_cpu.json" "" \
  "$(bm layer_decode_f16__cpu/d:64/I:128/batch:1/ctx:1/real_time iteration "" 0 3000 'tokens=1' "config=toy;phase=decode")" \
  "$(bm layer_decode_q4q8__cpu/d:64/I:128/batch:1/ctx:1/real_time iteration "" 0 1000 'tokens=1 layer_err=0.1' "baseline=layer_decode_f16__cpu/d:64/I:128/batch:1/ctx:1;config=toy;phase=decode")"
json "$W/raw/bench_machine@start.json" "" \
  "$(bm machine_read_bw/threads:2/MiB:8/real_time iteration "" 0 1000 'bytes=1.0e10' "")" \
  "$(bm machine_peak_dpbusd/threads:2/real_time iteration "" 0 1 'ops=1.0e12' "")"

: >"$W/raw/flat.tsv"
for p in bench_machine@start bench_gemm_cpu bench_quant bench_pca_gptq bench_layer_cpu; do
  awk -v prog="$p" -f "$RPT/gbjson.awk" "$W/raw/$p.json" >>"$W/raw/flat.tsv"
done
awk -f "$RPT/results.awk" "$W/raw/flat.tsv" >"$W/results.tsv"
awk -F'\t' -v OFS='\t' 'BEGIN { print "prog", "key", "value" } $1 == "C" { print $2, $3, $4 }' "$W/raw/flat.tsv" >"$W/context.tsv"
awk -f "$RPT/tables.awk" -v out="$W" -v threads=2 "$W/results.tsv" "$W/context.tsv"

col() { # col <tsv> <row-match regex on the whole line> <column name>
  awk -F'\t' -v re="$2" -v name="$3" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } $0 ~ re { print $(c[name]); exit }' "$1"
}
check "median aggregate of bf16 (us)" "$(col "$W/gemm.tsv" 'gemm_bf16' time_us)" 1000
check "ResQ GEMM time (us)" "$(col "$W/gemm.tsv" 'gemm_q4q8' time_us)" 250
check "ResQ GEMM x bf16" "$(col "$W/gemm.tsv" 'gemm_q4q8' vs_baseline)" 4
check "ResQ GEMM x int8" "$(col "$W/gemm.tsv" 'gemm_q4q8' vs_peer)" 2
check "ResQ GEMM same process" "$(col "$W/gemm.tsv" 'gemm_q4q8' same_process)" yes
check "ResQ GEMM cv" "$(col "$W/results.tsv" 'gemm_q4q8' cv)" 0.050000
check "speedup.tsv peer row" "$(col "$W/speedup.tsv" 'gemm_q4q8.*peer' speedup)" 2
check "fraction of in-process probe" "$(col "$W/gemm.tsv" 'gemm_q4q8' frac_probe)" 0.5
# the paired ratio over int8: appended after same_process, so that every other column keeps its number
check "gemm.tsv last columns" "$(head -1 "$W/gemm.tsv" | cut -f26-)" "$(printf 'same_process\tpaired_vs_peer\tpaired_q1\tpaired_q3\tpaired_n')"
check "ResQ GEMM x int8, paired" "$(col "$W/gemm.tsv" 'gemm_q4q8.*\t1\t' paired_vs_peer)" 1.9
check "ResQ GEMM paired, lower quartile" "$(col "$W/gemm.tsv" 'gemm_q4q8' paired_q1)" 1.8
check "ResQ GEMM paired, upper quartile" "$(col "$W/gemm.tsv" 'gemm_q4q8' paired_q3)" 2.1
check "ResQ GEMM pairs" "$(col "$W/gemm.tsv" 'gemm_q4q8' paired_n)" 41
check "ResQ GEMM at M=64 without the counters: paired empty" \
  "$(awk -F'\t' '$3 == 64 && $5 == "gemm_q4q8_f16__cpu" { print "[" $27 "|" $28 "|" $29 "|" $30 "]", NF }' "$W/gemm.tsv")" "[|||] 30"
check "int8 peer row: paired empty" "$(col "$W/gemm.tsv" 'gemm_u8s8' paired_vs_peer)" ""
check "stage vs memcpy" "$(col "$W/stages_vs_memcpy.tsv" 'quant_act' vs_memcpy)" 0.25
check "stage vs memcpy, paired" "$(col "$W/stages_vs_memcpy.tsv" 'quant_act' paired_vs_memcpy)" 0.3
check "stage pairs" "$(col "$W/stages_vs_memcpy.tsv" 'quant_act' paired_n)" 11
check "stage pairs, upper quartile" "$(col "$W/stages_vs_memcpy.tsv" 'quant_act' paired_q3)" 0.4
check "skip status" "$(col "$W/skipped.tsv" 'hadamard_f16__cuda' status)" skipped
check "skip reason" "$(col "$W/skipped.tsv" 'hadamard_f16__cuda' reason)" "no usable GPU: test"
check "error status" "$(col "$W/skipped.tsv" 'quant_act_f16_q4q8__ref' status)" error
check "ONCE suffix stripped" "$(col "$W/offline.tsv" 'gptq' params)" "N:64/K:64/tokens:128"
check "offline seconds" "$(col "$W/offline.tsv" 'gptq' seconds)" 2.5
check "layer speedup" "$(col "$W/layer.tsv" 'decode' speedup)" 3
check "layer tokens/s" "$(col "$W/layer.tsv" 'decode' resq_tok_s)" 1000
check "read bandwidth" "$(awk -F'\t' '$1 == "read_bw_GBps" { print $2 }' "$W/machine_summary.tsv")" 10

# interleaved repetitions (run_all --interleave): the JSON lists runs in the order they finished;
# gbjson.awk writes them in registration order (family_index, per_family_instance_index),
# each benchmark's own lines in their original order
printf '{\n  "context": {\n    "date": "x"\n  },\n  "benchmarks": [\n%s\n  ]\n}\n' \
  "$(for e in 2:0:c:0 0:0:a:0 1:1:b2:0 2:0:c:1 1:0:b1:0 0:0:a:1; do
       IFS=: read -r fam inst nm rep <<<"$e"
       printf '    {\n      "name": "%s",\n      "family_index": %s,\n      "per_family_instance_index": %s,\n' "$nm" "$fam" "$inst"
       printf '      "run_type": "iteration",\n      "repetition_index": %s,\n      "real_time": 1,\n      "time_unit": "ns"\n    },\n' "$rep"
     done | sed '$ s/},$/}/')" >"$W/raw/interleaved.json"
check "interleaved runs in registration order" \
  "$(awk -v prog=p -f "$RPT/gbjson.awk" "$W/raw/interleaved.json" | awk -F'\t' '$1 == "B" { printf "%s%s.%s", (n++ ? " " : ""), $3, $6 }')" \
  "a.0 a.1 b1.0 b2.0 c.0 c.1"

# report.sh must run to the end on these tables (set -u: every variable it uses is set)
mkdir -p "$W/charts"
printf 'prog\tstatus\tbenchmarks\tseconds\tload_before\tload_after\nbench_gemm_cpu\tok\t9\t1.0\t0.1\t0.1\n' >"$W/programs.tsv"
printf '## lscpu\nModel name: test\n## gpu\nnvidia-smi: not found\n' >"$W/raw/system.txt"
OUT=$W RAW=$W/raw RPT=$RPT SET=full REPS=3 MIN_TIME=0.2 THREADS=2 FILTER= CMDLINE=test CORE_USED= CORE_AUTO= \
  CORE_WHY= ORIG_CORETYPE= ORIG_PROC_BIND= INTERLEAVE=1 START_EPOCH=0 END_EPOCH=60 BUILD_DIR=$W TAG=test QUICK=0 \
  bash "$RPT/report.sh" >"$W/report.md"
# (the fixture's context has no oneDNN or OpenBLAS keys, as a filtered run that ran neither)
for h in "## Headline" "## ResQ mixed GEMM on the CPU vs oneDNN" "## Decoder layer" "## GPU" "| toy:q_proj |" \
  "| \`gemm_q4q8_f16__cpu\` (1) | 4.00x / 2.00x (paired 1.90x) | - / - |" "### Against oneDNN int8, paired in interleaved blocks (M <= 16)" \
  "| 64 | 64 | 1 | \`gemm_q4q8_f16__cpu\` | 2 | **1.9** | 1.8 | 2.1 | 41 |" \
  "| oneDNN | libdnnl-dev ?; no benchmark that uses it ran" "| OpenBLAS | libopenblas-dev ?; no benchmark that reports it"; do
  if grep -qF "$h" "$W/report.md"; then echo "ok: report.md has '$h'"
  else echo "FAILED: report.md lacks '$h'; REPRO: bench/tests/report_fixture_test.sh bench $W"; fail=1; fi
done
if [ "$fail" = 0 ]; then echo "report_fixture_test: all checks passed"; fi
exit "$fail"
