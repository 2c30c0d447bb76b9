# SPDX-License-Identifier: Apache-2.0
# bench/report/gbjson.awk -- flatten one Google Benchmark JSON file (1.7.x,
# --benchmark_out_format=json, one key per line as it writes them) into TSV.
#   awk -v prog=<program> -f gbjson.awk file.json
# Output lines (tab separated):
#   C  prog  key  value                                   context entries
#   B  prog  name  run_type  aggregate  rep  iterations  real_ns  cpu_ns  error  error_message  label  counters
# name is the run name without Google Benchmark's "/real_time",
# "/manual_time", "/iterations:N" and "/repeats:N" suffixes; counters is "k=v,k=v" (rates are per second); times
# are in ns, except for the "cv" aggregate (a ratio, as written).
# Plain POSIX awk (mawk): no gawk extensions.
function unq(v) {
  sub(/,$/, "", v)
  if (v ~ /^".*"$/) {
    v = substr(v, 2, length(v) - 2)
    gsub(/\\"/, "\"", v)
    gsub(/\\\\/, "\\", v)
    gsub(/\t/, " ", v)
  }
  return v
}
function tons(v, u) {
  if (u == "ns") return v
  if (u == "us") return v * 1e3
  if (u == "ms") return v * 1e6
  if (u == "s") return v * 1e9
  return v
}
function reset() {
  split("", f)
  ctrs = ""
}
function emit(   name, key, line) {
  name = f["run_name"] != "" ? f["run_name"] : f["name"]
  sub(/\/(real|manual)_time$/, "", name)
  # RESQ_BENCH_ONCE benchmarks carry Google Benchmark's fixed-count suffixes
  sub(/\/iterations:[0-9]+/, "", name)
  sub(/\/repeats:[0-9]+/, "", name)
  line = sprintf("B\t%s\t%s\t%s\t%s\t%s\t%s\t%.6f\t%.6f\t%s\t%s\t%s\t%s\n", prog, name, f["run_type"],
    f["aggregate_name"], f["repetition_index"], f["iterations"],
    (f["aggregate_unit"] == "percentage" ? f["real_time"] : tons(f["real_time"], f["time_unit"])),
    (f["aggregate_unit"] == "percentage" ? f["cpu_time"] : tons(f["cpu_time"], f["time_unit"])), (f["error_occurred"] == "true" ? 1 : 0), f["error_message"],
    f["label"], ctrs)
  # held until the end: with random interleaving the runs are written in the
  # order they finished; the tables keep the programs' registration order
  key = (f["family_index"] + 0) * 1000000 + (f["per_family_instance_index"] + 0)
  if (!(key in held)) { keys[++nkeys] = key; held[key] = "" }
  held[key] = held[key] line
}
BEGIN {
  split("name family_index per_family_instance_index run_name run_type repetitions repetition_index " \
        "threads iterations real_time cpu_time time_unit error_occurred error_message label " \
        "aggregate_name aggregate_unit big_o rms", std, " ")
  for (i in std) isstd[std[i]] = 1
  sec = ""
  skiparr = 0
  nkeys = 0
  reset()
}
{
  line = $0
  sub(/^[ \t]+/, "", line)
  sub(/[ \t\r]+$/, "", line)
}
line ~ /^"context": *\{/ { sec = "ctx"; next }
line ~ /^"benchmarks": *\[/ { sec = "bm"; next }
sec == "ctx" && skiparr { if (line ~ /^\],?$/) skiparr = 0; next }
sec == "ctx" && line ~ /^"[^"]*": *\[/ {
  if (line !~ /\]/) skiparr = 1
  next
}
sec == "ctx" && line ~ /^\},?$/ { sec = ""; next }
sec == "ctx" && line ~ /^"/ {
  k = substr(line, 2)
  k = substr(k, 1, index(k, "\"") - 1)
  v = substr(line, index(line, "\": ") + 3)
  printf "C\t%s\t%s\t%s\n", prog, k, unq(v)
  next
}
sec == "bm" && line ~ /^\{$/ { reset(); next }
sec == "bm" && line ~ /^\},?$/ { emit(); reset(); next }
sec == "bm" && line ~ /^\]/ { sec = ""; next }
sec == "bm" && line ~ /^"/ {
  k = substr(line, 2)
  k = substr(k, 1, index(k, "\"") - 1)
  v = unq(substr(line, index(line, "\": ") + 3))
  f[k] = v
  if (!(k in isstd)) ctrs = ctrs (ctrs == "" ? "" : ",") k "=" v
  next
}
END {
  for (i = 2; i <= nkeys; i++) for (j = i; j > 1 && keys[j - 1] > keys[j]; j--) { t = keys[j]; keys[j] = keys[j - 1]; keys[j - 1] = t }
  for (i = 1; i <= nkeys; i++) printf "%s", held[keys[i]]
}
