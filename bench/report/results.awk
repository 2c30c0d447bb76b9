# SPDX-License-Identifier: Apache-2.0
# bench/report/results.awk -- reduce the B lines of gbjson.awk (any number of
# programs) to one row per benchmark: the median over repetitions (Google
# Benchmark's "median" aggregate when there is one, else the median of the
# iteration rows), its coefficient of variation, and the status.
#   awk -f results.awk flat.tsv > results.tsv
# The last column holds every counter of the chosen row ("k=v,k=v").
# A benchmark is "skipped" when its error message starts with "skipped: "
# (bench/resq_bench.h), "error" for any other error, else "ok".
BEGIN {
  FS = OFS = "\t"
  print "prog", "name", "family", "stage", "backend", "params", "status", "message", "time_ns", "cv", "reps",
        "bytes_s", "ops_s", "wbytes_s", "relerr", "label", "probe_bw", "counters"
}
function ctr(c, key,   n, a, i, kv) {
  n = split(c, a, ",")
  for (i = 1; i <= n; i++) {
    kv = index(a[i], "=")
    if (substr(a[i], 1, kv - 1) == key) return substr(a[i], kv + 1)
  }
  return ""
}
$1 == "B" {
  key = $2 SUBSEP $3
  if (!(key in seen)) { seen[key] = 1; order[++nkeys] = key; prog[key] = $2; nm[key] = $3 }
  if ($4 == "aggregate") {
    if ($5 == "median") { med_t[key] = $8; med_c[key] = $13; med_l[key] = $12 }
    else if ($5 == "cv") cv[key] = $8
    next
  }
  if ($10 == 1) { err[key] = $11; nerr[key]++; next }
  k = ++nit[key]
  it_t[key, k] = $8; it_c[key, k] = $13; it_l[key, k] = $12
}
END {
  for (o = 1; o <= nkeys; o++) {
    key = order[o]
    name = nm[key]
    slash = index(name, "/")
    family = slash ? substr(name, 1, slash - 1) : name
    params = slash ? substr(name, slash + 1) : ""
    us = index(family, "__")
    stage = us ? substr(family, 1, us - 1) : family
    backend = us ? substr(family, us + 2) : "-"
    n = nit[key] + 0
    status = "ok"; msg = ""; t = ""; c = ""; l = ""
    if (n == 0) {
      msg = err[key]
      status = (msg ~ /^skipped: /) ? "skipped" : "error"
      if (status == "skipped") msg = substr(msg, 10)
    } else if (key in med_t) {
      t = med_t[key]; c = med_c[key]; l = med_l[key]
    } else {
      # median of the iteration rows (lower middle for an even count)
      for (i = 1; i <= n; i++) idx[i] = i
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && it_t[key, idx[j - 1]] + 0 > it_t[key, idx[j]] + 0; j--) {
          tmp = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = tmp
        }
      m = idx[int((n + 1) / 2)]
      t = it_t[key, m]; c = it_c[key, m]; l = it_l[key, m]
    }
    if (n > 0 && nerr[key] > 0) msg = nerr[key] " of " (n + nerr[key]) " repetitions failed: " err[key]
    print prog[key], name, family, stage, backend, params, status, msg, t, (key in cv ? cv[key] : ""),
          n + nerr[key], ctr(c, "bytes"), ctr(c, "ops"), ctr(c, "wbytes"), ctr(c, "check_relerr"), l,
          ctr(c, "probe_bw"), c
  }
}
