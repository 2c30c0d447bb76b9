# SPDX-License-Identifier: Apache-2.0
# bench/report/tables.awk -- the report's tables, from results.tsv (one row per
# benchmark, results.awk) and context.tsv (prog, key, value):
#   awk -f tables.awk -v out=DIR results.tsv context.tsv
# writes into DIR (each only when it has rows):
#   machine.tsv           the machine probes (bandwidth GB/s, instruction ceilings GOPS)
#   machine_summary.tsv   key/value: read_bw (the highest all-thread read bandwidth
#                         bench_machine measured in the run: the denominator of the
#                         bandwidth and roofline fractions),
#                         copy_bw, and each peak at the most threads
#   stages_vs_memcpy.tsv  every benchmark whose label says baseline=memcpy[__<backend>]/...
#                         (frac_read_bw: of the CPU read bandwidth; for CUDA stages of
#                         the device copy bandwidth machine_gpu_copy_bw, same run)
#   gemm.tsv              every gemm_*/gemv_* benchmark: GOPS, GB/s, ratio to its
#                         baseline (the 16-bit GEMM of the same shape) and to its
#                         peer (label peer=: the W8A8 GEMM), fraction of
#                         bandwidth (bench_machine's, and for M <= 16 the in-process
#                         probe over the same weights) and of the roofline; last, for
#                         the ResQ GEMMs at M <= 16, paired_vs_peer/_q1/_q3/_n: the
#                         ratio to the peer as the median (and quartiles) over n
#                         alternating pairs of ~25 ms blocks of peer and ResQ calls
#                         (counters paired_vs_peer, paired_peer_q1/_q3/_n; empty without them)
#   speedup.tsv           every benchmark with a baseline= or peer= label: time ratio
#                         (kind = baseline | peer; same_process = measured back to back)
#   offline.tsv           the offline stages (pca_*, gptq_*): seconds per call and checks
#   layer.tsv             the decoder layer: ResQ form vs the 16-bit form (label baseline=)
#   roofline.tsv          every benchmark with a roof= label
#   skipped.tsv           every benchmark that was skipped or failed, with the reason
# The conventions (names, counters, labels) are in bench/resq_bench.h.
BEGIN { FS = OFS = "\t" }
function par(params, key,   n, a, i, c) {
  n = split(params, a, "/")
  for (i = 1; i <= n; i++) {
    c = index(a[i], ":")
    if (c && substr(a[i], 1, c - 1) == key) return substr(a[i], c + 1)
  }
  return ""
}
function lab(label, key,   n, a, i, c) {
  n = split(label, a, ";")
  for (i = 1; i <= n; i++) {
    c = index(a[i], "=")
    if (c && substr(a[i], 1, c - 1) == key) return substr(a[i], c + 1)
  }
  return ""
}
function ctr(c, key,   n, a, i, kv) {
  n = split(c, a, ",")
  for (i = 1; i <= n; i++) {
    kv = index(a[i], "=")
    if (substr(a[i], 1, kv - 1) == key) return substr(a[i], kv + 1)
  }
  return ""
}
# row of benchmark `name`, preferring one measured in the same program as row r
function find(r, name) {
  if (name == "") return ""
  if ((R[r, 1], name) in byprogname) return byprogname[R[r, 1], name]
  return (name in byname) ? byname[name] : ""
}
function g4(x) { return x == "" ? "" : sprintf("%.4g", x) }
function g3(x) { return x == "" ? "" : sprintf("%.3g", x) }
function min2(a, b) { return a < b ? a : b }
FNR == 1 { file++; next }
file == 1 {
  nr++
  for (c = 1; c <= NF; c++) R[nr, c] = $c
  # 1 prog 2 name 3 family 4 stage 5 backend 6 params 7 status 8 message 9 time_ns 10 cv
  # 11 reps 12 bytes_s 13 ops_s 14 wbytes_s 15 relerr 16 label 17 probe_bw 18 counters
  if ($7 == "ok" && $1 !~ /^bench_machine@/) {
    if (!(($2) in byname)) byname[$2] = nr
    byprogname[$1, $2] = nr
  }
  next
}
file == 2 {
  if ($2 ~ /^resq_layers_N[0-9]+_K[0-9]+$/) layers[$2] = $3
  next
}
END {
  # ---- machine
  maxthr = 0
  for (r = 1; r <= nr; r++)
    if (R[r, 1] ~ /^bench_machine@/ && R[r, 7] == "ok" && par(R[r, 6], "threads") + 0 > maxthr)
      maxthr = par(R[r, 6], "threads") + 0
  f = out "/machine.tsv"
  nm = 0
  for (r = 1; r <= nr; r++) {
    if (R[r, 1] !~ /^bench_machine@/) continue
    if (!nm++) print "probe", "benchmark", "threads", "value", "unit", "cv", "status" > f
    probe = substr(R[r, 1], index(R[r, 1], "@") + 1)
    thr = par(R[r, 6], "threads")
    isbw = R[r, 3] ~ /_bw$/
    v = R[r, 7] != "ok" ? "" : (isbw ? R[r, 12] / 1e9 : R[r, 13] / 1e9)
    print probe, R[r, 3], thr, g4(v), (isbw ? "GB/s" : "GOPS"), g3(R[r, 10]),
          (R[r, 7] == "ok" ? "ok" : R[r, 7] ": " R[r, 8]) > f
    if (R[r, 7] != "ok" || thr + 0 != maxthr) continue
    key = R[r, 3]
    if (isbw) {
      if (R[r, 12] + 0 > M[key]) M[key] = R[r, 12] + 0
      Mp[key, probe] = R[r, 12] + 0
    } else if (R[r, 13] + 0 > M[key]) M[key] = R[r, 13] + 0
  }
  BW = M["machine_read_bw"] + 0
  f = out "/machine_summary.tsv"
  print "key", "value" > f
  print "threads", maxthr > f
  print "read_bw_GBps", g4(BW / 1e9) > f
  print "read_bw_start_GBps", g4(Mp["machine_read_bw", "start"] / 1e9) > f
  print "read_bw_end_GBps", g4(Mp["machine_read_bw", "end"] / 1e9) > f
  print "copy_bw_GBps", g4(M["machine_copy_bw"] / 1e9) > f
  print "copy_bw_start_GBps", g4(Mp["machine_copy_bw", "start"] / 1e9) > f
  print "copy_bw_end_GBps", g4(Mp["machine_copy_bw", "end"] / 1e9) > f
  for (k in M) if (k ~ /^machine_peak_/) print k "_GOPS", g4(M[k] / 1e9) > f
  GBW = 0
  for (r = 1; r <= nr; r++)
    if (R[r, 3] == "machine_gpu_copy_bw" && R[r, 7] == "ok" && R[r, 12] + 0 > GBW) GBW = R[r, 12] + 0
  if (GBW > 0) print "gpu_copy_bw_GBps", g4(GBW / 1e9) > f

  # ---- stages against memcpy
  f = out "/stages_vs_memcpy.tsv"
  ns = 0
  for (r = 1; r <= nr; r++) {
    base = lab(R[r, 16], "baseline")
    if (R[r, 7] != "ok" || base !~ /^memcpy(__[a-z0-9_]+)?\//) continue
    b = ((R[r, 1], base) in byprogname) ? byprogname[R[r, 1], base] : ""
    if (!ns++) print "stage", "backend", "config", "width", "rows", "time_us", "GBps", "memcpy_GBps", "vs_memcpy",
                     "frac_read_bw", "memcpy", "paired_vs_memcpy", "paired_q1", "paired_q3", "paired_n" > f
    config = R[r, 6]
    sub(/\/?rows:[0-9]+/, "", config)
    width = par(R[r, 6], "n") != "" ? par(R[r, 6], "n") : par(R[r, 6], "K")
    gb = R[r, 12] / 1e9
    den = (R[r, 5] ~ /cuda/) ? GBW : BW # GPU stages: the device copy bandwidth measured in the run
    mgb = b == "" ? "" : R[b, 12] / 1e9
    print R[r, 4], R[r, 5], config, width, par(R[r, 6], "rows"), g4(R[r, 9] / 1e3), g4(gb), g4(mgb),
          (mgb == "" ? "" : g3(gb / mgb)), (den > 0 ? g3(R[r, 12] / den) : ""), base,
          g3(ctr(R[r, 18], "paired_vs_memcpy")), g3(ctr(R[r, 18], "paired_q1")), g3(ctr(R[r, 18], "paired_q3")),
          (ctr(R[r, 18], "paired_n") == "" ? "" : sprintf("%d", ctr(R[r, 18], "paired_n") + 0)) > f
  }

  # ---- GEMMs
  for (r = 1; r <= nr; r++) { # families other benchmarks name as their baseline
    base = lab(R[r, 16], "baseline")
    if (base != "") { sub(/\/.*/, "", base); isbase[base] = 1 }
  }
  f = out "/gemm.tsv"
  ng = 0
  for (r = 1; r <= nr; r++) {
    if (R[r, 7] != "ok" || R[r, 3] !~ /^gem[mv]_/) continue
    if (!ng++) print "N", "K", "M", "layers", "family", "backend", "impl", "GOPS", "GBps", "wGBps", "time_us", "cv",
                     "vs_baseline", "baseline", "frac_read_bw", "roof", "roof_GOPS", "attainable_GOPS",
                     "frac_roof", "check_relerr", "copies", "probe_GBps", "frac_probe", "vs_peer", "peer",
                     "same_process", "paired_vs_peer", "paired_q1", "paired_q3", "paired_n" > f
    N = par(R[r, 6], "N"); K = par(R[r, 6], "K"); Mt = par(R[r, 6], "M")
    base = lab(R[r, 16], "baseline")
    vs = ""; same = ""
    b = find(r, base)
    if (b != "") { vs = R[b, 9] / R[r, 9]; same = (R[b, 1] == R[r, 1]) ? "yes" : "no" }
    else if (R[r, 3] in isbase) { vs = 1; base = "(itself)" }
    peer = lab(R[r, 16], "peer")
    vp = ""
    b = find(r, peer)
    if (b != "") vp = R[b, 9] / R[r, 9]
    roof = lab(R[r, 16], "roof")
    peak = (roof in M) ? M[roof] : ""
    att = ""
    if (peak != "" && BW > 0 && R[r, 12] > 0) att = min2(peak, BW * R[r, 13] / R[r, 12])
    L = layers["resq_layers_N" N "_K" K]
    print N, K, Mt, (L == "" ? "-" : L), R[r, 3], R[r, 5], lab(R[r, 16], "impl"), g4(R[r, 13] / 1e9),
          g4(R[r, 12] / 1e9), g4(R[r, 14] / 1e9), g4(R[r, 9] / 1e3), g3(R[r, 10]), g3(vs), base,
          (BW > 0 ? g3(R[r, 12] / BW) : ""), roof, (peak == "" ? "" : g4(peak / 1e9)),
          (att == "" ? "" : g4(att / 1e9)), (att == "" ? "" : g3(R[r, 13] / att)), g3(R[r, 15]),
          lab(R[r, 16], "copies"), (R[r, 17] == "" ? "" : g4(R[r, 17] / 1e9)),
          (R[r, 17] + 0 > 0 ? g3(R[r, 12] / R[r, 17]) : ""), g3(vp), peer, same,
          g3(ctr(R[r, 18], "paired_vs_peer")), g3(ctr(R[r, 18], "paired_peer_q1")), g3(ctr(R[r, 18], "paired_peer_q3")),
          (ctr(R[r, 18], "paired_peer_n") == "" ? "" : sprintf("%d", ctr(R[r, 18], "paired_peer_n") + 0)) > f
  }

  # ---- generic: every baseline pair, every roofline point
  f = out "/speedup.tsv"
  np = 0
  for (r = 1; r <= nr; r++) {
    if (R[r, 7] != "ok") continue
    for (kind = 1; kind <= 2; kind++) {
      base = lab(R[r, 16], kind == 1 ? "baseline" : "peer")
      if (base == "") continue
      b = find(r, base)
      if (!np++) print "benchmark", "kind", "baseline", "time_us", "baseline_time_us", "speedup", "same_process" > f
      print R[r, 2], (kind == 1 ? "baseline" : "peer"), base, g4(R[r, 9] / 1e3), (b == "" ? "missing" : g4(R[b, 9] / 1e3)),
            (b == "" ? "" : g3(R[b, 9] / R[r, 9])), (b != "" && R[b, 1] == R[r, 1] ? "yes" : "no") > f
    }
  }

  # ---- offline stages (PCA, GPTQ): one timed call each
  f = out "/offline.tsv"
  no = 0
  for (r = 1; r <= nr; r++) {
    if (R[r, 7] != "ok" || R[r, 4] !~ /^(pca|gptq)/) continue
    if (!no++) print "stage", "backend", "params", "seconds", "GOPS", "impl", "checks" > f
    chk = ""
    n = split(R[r, 18], cc, ",")
    for (i = 1; i <= n; i++) if (cc[i] ~ /^(check_|obj_vs_rtn|top_eig|t_)/) {
      kv = index(cc[i], "="); v = substr(cc[i], kv + 1)
      chk = chk (chk == "" ? "" : " ") substr(cc[i], 1, kv - 1) "=" g3(v)
    }
    print R[r, 4], R[r, 5], R[r, 6], g4(R[r, 9] / 1e9), (R[r, 13] > 0 ? g4(R[r, 13] / 1e9) : ""), lab(R[r, 16], "impl"),
          chk > f
  }

  f = out "/roofline.tsv"
  nf = 0
  for (r = 1; r <= nr; r++) {
    roof = lab(R[r, 16], "roof")
    if (R[r, 7] != "ok" || roof == "" || R[r, 12] <= 0) continue
    peak = (roof in M) ? M[roof] : ""
    if (!nf++) print "benchmark", "family", "M", "intensity_ops_per_byte", "GOPS", "roof", "peak_GOPS",
                     "bw_roof_GOPS", "attainable_GOPS", "frac" > f
    inten = R[r, 13] / R[r, 12]
    att = peak == "" ? BW * inten : min2(peak, BW * inten)
    print R[r, 2], R[r, 3], par(R[r, 6], "M"), g4(inten), g4(R[r, 13] / 1e9), roof, (peak == "" ? "" : g4(peak / 1e9)),
          g4(BW * inten / 1e9), g4(att / 1e9), (att > 0 ? g3(R[r, 13] / att) : "") > f
  }

  # ---- decoder layer: ResQ form vs its 16-bit baseline (bench_layer_cpu, bench_layer_cuda)
  f = out "/layer.tsv"
  nl = 0
  for (r = 1; r <= nr; r++) {
    if (R[r, 7] != "ok" || R[r, 3] !~ /^layer_(prefill|decode)_q4q8__/) continue
    base = lab(R[r, 16], "baseline")
    b = find(r, base)
    if (!nl++) print "phase", "config", "shape", "tokens", "resq_ms", "base_ms", "speedup", "baseline", "batch",
                     "resq_tok_s", "base_tok_s", "layer_err", "same_process", "backend" > f
    ph = lab(R[r, 16], "phase"); B = par(R[r, 6], "batch")
    shape = ph == "prefill" ? "batch " B " x seq " par(R[r, 6], "seq") : "batch " B " (B new tokens, no KV cache)"
    tok = ctr(R[r, 18], "tokens") + 0
    print ph, lab(R[r, 16], "config"), shape, sprintf("%d", tok), g4(R[r, 9] / 1e6), (b == "" ? "" : g4(R[b, 9] / 1e6)),
          (b == "" ? "" : g3(R[b, 9] / R[r, 9])), base, B, g4(tok / (R[r, 9] / 1e9)),
          (b == "" ? "" : g4(tok / (R[b, 9] / 1e9))), g3(ctr(R[r, 18], "layer_err")),
          (b != "" && R[b, 1] == R[r, 1] ? "yes" : "no"), R[r, 5] > f
  }

  # ---- what did not run
  f = out "/skipped.tsv"
  print "prog", "benchmark", "status", "reason" > f
  for (r = 1; r <= nr; r++)
    if (R[r, 7] != "ok" || R[r, 8] != "") print R[r, 1], R[r, 2], R[r, 7], R[r, 8] > f
}
